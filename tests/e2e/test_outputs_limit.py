"""Outputs over the limit a task may pass on fail the task, in a real local run: nothing of
them is stored, the downstream task does not run on part of them. The limit is made small
here (``MAX_RESULT_BYTES``, read when an attempt ends, in this process) so the files are."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratoflow import taskexec
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.engine import RunState, TaskState

pytestmark = pytest.mark.e2e

LIMIT = 64 << 10  # 64 KiB


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRuntime]:
    monkeypatch.setattr(taskexec, "MAX_RESULT_BYTES", LIMIT)
    rt = LocalRuntime(tmp_path / "home")
    yield rt
    rt.close()


def run(rt: LocalRuntime, text: str, timeout: float = 60) -> tuple[str, RunState]:
    version, _ = rt.scheduler.apply(text)
    run, _ = rt.scheduler.trigger(version.project, version.name)
    deadline = time.monotonic() + timeout
    rt.run_until(lambda: rt.store.get_run(run.id).state.terminal or time.monotonic() > deadline)
    return run.id, rt.store.get_run(run.id).state


def workflow(name: str, producer: str) -> str:
    return f"""
name: {name}
tasks:
  make:
{producer}
  use:
    type: shell
    depends_on: [make]
    command: echo "small={{{{ tasks.make.outputs.small }}}}"
"""


SHELL = """    type: shell
    command: |
      printf 'k=' >> "$STRATOFLOW_OUTPUT"
      head -c {size} /dev/zero | tr '\\0' v >> "$STRATOFLOW_OUTPUT"
      printf '\\nsmall=1\\n' >> "$STRATOFLOW_OUTPUT"
"""
PYTHON = """    type: python
    code: |
      outputs["x"] = "y" * {size}
      outputs["small"] = 1
"""


@pytest.mark.parametrize(
    ("producer", "size", "written"),
    [
        (SHELL, 2 * LIMIT, 2 * LIMIT + len("k=\nsmall=1\n")),
        (PYTHON, 2 * LIMIT, len(f'{{"x": "{"y" * 2 * LIMIT}", "small": 1}}')),
    ],
    ids=["shell", "python"],
)
def test_outputs_over_the_limit_fail_the_task_and_store_none(
    runtime: LocalRuntime, producer: str, size: int, written: int
) -> None:
    # GIVEN a task whose outputs are twice the limit, and a task that reads one of them
    # WHEN it runs
    run_id, state = run(runtime, workflow("too_big", producer.format(size=size)))
    # THEN it fails naming the size written and the limit; nothing of its outputs is kept,
    # and the downstream task never runs on part of them
    assert state is RunState.FAILED
    make = runtime.store.get_task(run_id, "make")
    assert make.state is TaskState.FAILED
    assert make.outputs == {}
    assert make.error == (
        f"outputs: {written:,} bytes written, more than the 64 KiB a task may pass on; "
        "write large data to a file or object store and pass its path"
    )
    assert runtime.store.get_task(run_id, "use").state is not TaskState.SUCCEEDED


@pytest.mark.parametrize(
    ("producer", "size"),
    [
        (SHELL, LIMIT - len("k=\nsmall=1\n")),
        (PYTHON, LIMIT - len('{"x": "", "small": 1}')),
    ],
    ids=["shell", "python"],
)
def test_outputs_just_under_the_limit_are_passed_on_whole(
    runtime: LocalRuntime, producer: str, size: int
) -> None:
    # GIVEN a task whose outputs file is exactly the limit
    # WHEN it runs
    run_id, state = run(runtime, workflow("fits", producer.format(size=size)))
    # THEN it and the task reading its last output succeed, its big value whole
    assert state is RunState.SUCCEEDED
    outputs = runtime.store.get_task(run_id, "make").outputs
    big = outputs.get("k", outputs.get("x"))
    assert isinstance(big, str)
    assert len(big) == size
    assert str(outputs["small"]) == "1"
