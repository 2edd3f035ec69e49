"""``parallelism``: at most that many task processes at once on one scheduler, across runs
and projects (Airflow's ``parallelism``; the local runtime's ``--parallelism``, 32 by
default). Tasks past it stay QUEUED, in their order, until one ends; a switch, a dependency
task and a sub-workflow task run no process and take none (counted, a parent waiting on its
child would hold the slot its child's tasks need)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.fakes import FakeClock, RecordingDispatcher

from stratoflow import engine
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState, subworkflow
from stratoflow.model import load_workflow
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def fan(width: int, pool: str | None = None) -> str:
    extra = f", pool: {pool}" if pool else ""
    wide = "\n".join(
        f"  w{i}: {{type: shell, command: 'true', depends_on: [root]{extra}}}" for i in range(width)
    )
    return f"name: fan\ntasks:\n  root: {{type: shell, command: 'true'}}\n{wide}\n"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    s.close()


def scheduler(store: SqliteStore, parallelism: int | None) -> Scheduler:
    return Scheduler(store, store, RecordingDispatcher(), FakeClock(T0), parallelism=parallelism)


def pending(s: Scheduler) -> list[str]:
    dispatcher = s.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    return [task for _, task, _ in dispatcher.pending]


def end(s: Scheduler, run_id: str, task: str) -> None:
    dispatcher = s.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    del dispatcher.pending[(run_id, task, 1)]
    s.on_finished([Finished(run_id, task, 1, AttemptResult(AttemptStatus.SUCCEEDED))])
    s.step()


def test_tasks_past_the_limit_wait_queued_in_their_order_for_one_to_end(
    store: SqliteStore,
) -> None:
    s = scheduler(store, 3)
    s.apply(fan(6))
    run, _ = s.trigger("default", "fan")
    s.step()
    end(s, run.id, "root")
    assert pending(s) == ["w0", "w1", "w2"]
    states = {t.task_id: t.state for t in store.get_tasks(run.id)}
    assert [states[f"w{i}"] for i in range(3, 6)] == [TaskState.QUEUED] * 3
    end(s, run.id, "w1")
    assert pending(s) == ["w0", "w2", "w3"]
    for task in ("w0", "w2", "w3", "w4", "w5"):
        assert len(pending(s)) <= 3
        end(s, run.id, task)
    assert store.get_run(run.id).state is RunState.SUCCEEDED


def test_the_limit_spans_runs(store: SqliteStore) -> None:
    s = scheduler(store, 4)
    s.apply(fan(3))
    first, _ = s.trigger("default", "fan")
    second, _ = s.trigger("default", "fan")
    s.step()
    end(s, first.id, "root")
    end(s, second.id, "root")
    assert len(pending(s)) == 4
    assert len(store.get_tasks(first.id)) + len(store.get_tasks(second.id)) == 8


def test_without_a_limit_every_ready_task_starts(store: SqliteStore) -> None:
    s = scheduler(store, None)
    s.apply(fan(6))
    run, _ = s.trigger("default", "fan")
    s.step()
    end(s, run.id, "root")
    assert len(pending(s)) == 6


def test_a_pools_queue_is_served_within_the_limit(store: SqliteStore) -> None:
    s = scheduler(store, 2)
    s.set_pool("p", 5)
    s.apply(fan(4, pool="p"))
    run, _ = s.trigger("default", "fan")
    s.step()
    end(s, run.id, "root")
    assert pending(s) == ["w0", "w1"]
    end(s, run.id, "w0")
    assert pending(s) == ["w1", "w2"]
    assert [p.used for p in store.list_pools() if p.name == "p"] == [2]


def test_a_sub_workflow_task_takes_no_process_so_its_child_can_run(store: SqliteStore) -> None:
    """With room for one process, the parent's workflow task waits on its child run while
    the child's task runs: counted as a process, it would hold the only slot for ever."""
    s = scheduler(store, 1)
    s.apply("name: child\ntasks:\n  work: {type: shell, command: 'true'}\n")
    s.apply("name: parent\ntasks:\n  sub: {type: workflow, workflow: child}\n")
    run, _ = s.trigger("default", "parent")
    s.step()
    assert store.get_task(run.id, "sub").state is TaskState.RUNNING
    (child,) = subworkflow.children(s.spec("default", "parent", 1), run.id).values()
    s.step()
    assert pending(s) == ["work"]
    end(s, child, "work")
    s.step()
    assert store.get_run(run.id).state is RunState.SUCCEEDED


def test_which_tasks_take_a_process() -> None:
    spec = load_workflow(
        "name: kinds\ntasks:\n"
        "  sh: {type: shell, command: 'true', depends_on: [pick]}\n"
        "  py: {type: python, code: 'pass'}\n"
        "  web: {type: http, url: 'http://example.invalid/'}\n"
        "  pick: {type: switch, cases: [{when: 'true', next: [sh]}]}\n"
        "  sub: {type: workflow, workflow: other}\n"
        "  wait: {type: dependency, all: [{workflow: other, date: today}]}\n"
    )
    takes = {t: engine.runs_process(spec, t) for t in spec.workflow.tasks}
    assert takes == {
        "sh": True, "py": True, "web": True, "pick": False, "sub": False, "wait": False
    }  # fmt: skip
    # claims stop at the first process task past the limit; others pass freely before it
    assert engine.within_processes(spec, ["pick", "sh", "sub", "py", "web"], 1) == 3
    assert engine.within_processes(spec, ["sh", "py"], 0) == 0
    assert engine.within_processes(spec, ["sub", "wait"], 0) == 2


def test_a_limit_below_one_or_a_dispatcher_that_cannot_count_is_refused(
    store: SqliteStore,
) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        scheduler(store, 0)

    class Uncounted(RecordingDispatcher):
        def live_attempts(self) -> None:  # type: ignore[override]
            return None

    with pytest.raises(ValueError, match="cannot count"):
        Scheduler(store, store, Uncounted(), FakeClock(T0), parallelism=2)


@pytest.mark.parametrize("command", ["run", "server"])
@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("99999999999999999999999", "99999999999999999999999 is more than 10,000"),
        ("10001", "10001 is more than 10,000"),
        ("-1", "-1 is negative"),
    ],
)
def test_the_cli_refuses_a_parallelism_past_its_bounds(
    tmp_path: Path, command: str, value: str, words: str
) -> None:
    """`--parallelism 99999999999999999999999` was taken: 1 to 10,000 (0: no limit), and
    nothing is started or created (the home stays empty)."""
    from click.testing import CliRunner

    from stratoflow.cli import main

    home = tmp_path / "home"
    args = ["--home", str(home), "--parallelism", value]
    result = CliRunner().invoke(main, [command, *(["x.yaml"] if command == "run" else []), *args])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "give 1 to 10,000, or 0 for no limit" in result.output
    assert not home.exists()


def test_the_parallelism_help_gives_its_bounds() -> None:
    from click.testing import CliRunner

    from stratoflow.cli import main

    for command in ("run", "server"):
        shown = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
        assert "1 to 10,000; 0: no limit" in shown
