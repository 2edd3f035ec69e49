"""Sub-workflows end to end on the local runtime: real task processes and the real loop. The
child's outputs reach the parent; a failed child fails the parent's task; a rerun of the
parent reruns the same child run from its failed tasks; a child repaired on its own reopens
its failed parent; stop, pause and resume of the parent reach the child; and a child nested
two levels deep across projects works the same."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.engine import RunState, TaskState
from stratoflow.engine import subworkflow as rules
from stratoflow.errors import NotFound
from tests.e2e import test_runtime
from tests.e2e.test_backfill import until

pytestmark = pytest.mark.e2e
runtime = test_runtime.runtime  # the local runtime fixture, in a fresh home per test


def child_text(flag: Path, *, hold: Path | None = None) -> str:
    """``load`` fails until ``flag`` exists; with ``hold``, ``extract`` waits until that
    file exists (a child that runs until the test lets it go)."""
    wait = (  # bounded (~2 min): a failed test leaves no task behind
        f"i=0; while [ ! -e {hold} ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done; [ -e {hold} ]"
        if hold
        else "true"
    )
    return f"""
name: load_region
params: {{region: us}}
tasks:
  extract:
    type: shell
    command: |
      {wait}
      echo "rows=42" >> "$STRATOFLOW_OUTPUT"
      echo "region={{{{ params.region }}}}" >> "$STRATOFLOW_OUTPUT"
  load:
    type: shell
    depends_on: [extract]
    command: test -e {flag}
"""


PARENT = """
name: parent
params: {region: eu}
tasks:
  child:
    type: workflow
    workflow: load_region
    params: {region: "{{ params.region }}"}
  report:
    type: shell
    depends_on: [child]
    command: |
      echo "seen={{ tasks.child.outputs.extract.rows }}-{{ tasks.child.outputs.extract.region }}" >> "$STRATOFLOW_OUTPUT"
"""


def child_id(run_id: str) -> str:
    return rules.child_run_id(run_id, "child", ("default", "load_region"))


def ended(rt: LocalRuntime, run_id: str) -> RunState:
    until(rt, lambda: rt.store.get_run(run_id).state.terminal)
    return rt.store.get_run(run_id).state


def test_child_outputs_reach_the_parent(runtime: LocalRuntime, shared_dir: Path) -> None:
    flag = shared_dir / "ok"
    flag.touch()
    runtime.scheduler.apply(child_text(flag))
    runtime.scheduler.apply(PARENT)
    run, _ = runtime.scheduler.trigger("default", "parent")
    assert ended(runtime, run.id) is RunState.SUCCEEDED
    child = runtime.store.get_run(child_id(run.id))
    assert child.state is RunState.SUCCEEDED
    assert child.parent == f"{run.id}/child"
    assert runtime.store.get_task(run.id, "report").outputs == {"seen": "42-eu"}


def test_failed_child_fails_the_task_and_a_rerun_reruns_the_same_child(
    runtime: LocalRuntime, shared_dir: Path
) -> None:
    flag = shared_dir / "ok"
    runtime.scheduler.apply(child_text(flag))
    runtime.scheduler.apply(PARENT)
    run, _ = runtime.scheduler.trigger("default", "parent")
    assert ended(runtime, run.id) is RunState.FAILED
    task = runtime.store.get_task(run.id, "child")
    assert task.state is TaskState.FAILED
    assert child_id(run.id) in (task.error or "")
    assert runtime.store.get_run(child_id(run.id)).state is RunState.FAILED

    flag.touch()
    runtime.scheduler.rerun(run.id)
    assert ended(runtime, run.id) is RunState.SUCCEEDED
    child_tasks = {t.task_id: t for t in runtime.store.get_tasks(child_id(run.id))}
    assert child_tasks["extract"].attempt == 1  # kept: it had succeeded
    assert child_tasks["load"].attempt == 2  # rerun from its failure
    assert runtime.store.get_task(run.id, "report").outputs == {"seen": "42-eu"}


def test_a_child_repaired_on_its_own_reopens_its_failed_parent(
    runtime: LocalRuntime, shared_dir: Path
) -> None:
    """DolphinScheduler's "recover failed" of a sub-process instance, Airflow's clearing of
    a triggered DAG run: the child run is rerun (or its failed task marked) on its own, and
    its parent's task takes the child's new end, so the parent run runs on."""
    flag = shared_dir / "ok"
    runtime.scheduler.apply(child_text(flag))
    runtime.scheduler.apply(PARENT)
    rerun, _ = runtime.scheduler.trigger("default", "parent")
    marked, _ = runtime.scheduler.trigger("default", "parent")
    assert ended(runtime, rerun.id) is RunState.FAILED
    assert ended(runtime, marked.id) is RunState.FAILED

    flag.touch()
    runtime.scheduler.rerun(child_id(rerun.id))
    runtime.scheduler.mark(child_id(marked.id), "load", TaskState.SUCCEEDED)
    for run in (rerun, marked):
        # the parent stays failed until its child ends: its task takes that end in the
        # child's end's own commit, which reopens it
        assert ended(runtime, child_id(run.id)) is RunState.SUCCEEDED
        assert ended(runtime, run.id) is RunState.SUCCEEDED
        task = runtime.store.get_task(run.id, "child")
        assert (task.state, task.attempt) == (TaskState.SUCCEEDED, 1)
        report = runtime.store.get_task(run.id, "report")
        assert (report.attempt, report.outputs) == (1, {"seen": "42-eu"})
    assert runtime.store.get_task(child_id(rerun.id), "load").attempt == 2
    assert runtime.store.get_task(child_id(marked.id), "load").attempt == 1


def test_stop_pause_and_resume_of_the_parent_reach_the_child(
    runtime: LocalRuntime, shared_dir: Path
) -> None:
    flag, hold = shared_dir / "ok", shared_dir / "go"
    flag.touch()
    runtime.scheduler.apply(child_text(flag, hold=hold))
    runtime.scheduler.apply(PARENT)
    run, _ = runtime.scheduler.trigger("default", "parent")
    cid = child_id(run.id)

    until(runtime, lambda: _running(runtime, cid))
    runtime.scheduler.pause(run.id)
    assert runtime.store.get_run(cid).state is RunState.PAUSED
    hold.touch()  # extract ends while paused; load must wait for the resume
    until(runtime, lambda: runtime.store.get_task(cid, "extract").state.terminal)
    settle = time.monotonic() + 0.5
    runtime.run_until(lambda: time.monotonic() > settle)  # turns go by; nothing may start
    assert runtime.store.get_task(cid, "load").state is TaskState.QUEUED
    runtime.scheduler.resume(run.id)
    assert runtime.store.get_run(cid).state is RunState.RUNNING
    assert ended(runtime, run.id) is RunState.SUCCEEDED

    hold.unlink()
    second, _ = runtime.scheduler.trigger("default", "parent")
    until(runtime, lambda: _running(runtime, child_id(second.id)))
    runtime.scheduler.stop(second.id)
    assert ended(runtime, child_id(second.id)) is RunState.STOPPED
    assert runtime.store.get_run(second.id).state is RunState.STOPPED
    assert runtime.store.get_task(second.id, "child").state is TaskState.STOPPED


def _running(rt: LocalRuntime, run_id: str) -> bool:
    try:
        return rt.store.get_task(run_id, "extract").state is TaskState.RUNNING
    except NotFound:
        return False


def test_nested_across_projects(runtime: LocalRuntime, shared_dir: Path) -> None:
    flag = shared_dir / "ok"
    flag.touch()
    runtime.scheduler.apply(child_text(flag))
    runtime.scheduler.apply(PARENT)
    runtime.scheduler.apply(
        "project: ops\nname: top\ntasks:\n"
        "  mid: {type: workflow, workflow: default/parent, params: {region: ap}}\n"
        "  after:\n    type: shell\n    depends_on: [mid]\n"
        '    command: test "{{ tasks.mid.outputs.report.seen }}" = 42-ap\n'
    )
    run, _ = runtime.scheduler.trigger("ops", "top")
    assert ended(runtime, run.id) is RunState.SUCCEEDED
    mid = runtime.store.get_run(rules.child_run_id(run.id, "mid", ("default", "parent")))
    assert mid.parent == f"{run.id}/mid"
    assert runtime.store.get_run(child_id(mid.id)).params == {"region": "ap"}
