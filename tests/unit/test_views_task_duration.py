"""A task's ``duration_seconds`` in the run and task views is how long its last attempt ran, not
its ``started_at`` to ``ended_at``: a mark ends a task at the mark, and a failed attempt of
3 ms marked succeeded 81 s later showed as ``1m 21s`` on the run page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeClock, RecordingDispatcher

from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.service import Finished, Scheduler
from stratoflow.views import run_detail, task_view

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CHAIN = """
name: chain
tasks:
  a: {type: shell, command: "exit 1"}
  b: {type: shell, command: "true", depends_on: [a]}
"""
FAILED = AttemptResult(AttemptStatus.FAILED, error="exit code 1", exit_code=1)


class World:
    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path)
        self.dispatcher = RecordingDispatcher()
        self.clock = FakeClock(T0)
        self.scheduler = Scheduler(self.store, self.store, self.dispatcher, self.clock)

    def start(self) -> str:
        """Trigger ``chain``: its first task's attempt is dispatched, at T0."""
        self.scheduler.apply(CHAIN)
        run, _ = self.scheduler.trigger("default", "chain")
        self.scheduler.step()
        assert list(self.dispatcher.pending) == [(run.id, "a", 1)]
        return run.id

    def end_attempts(self, result: AttemptResult, after: float) -> None:
        self.clock.advance(after)
        keys = list(self.dispatcher.pending)
        self.dispatcher.pending.clear()
        self.scheduler.step([Finished(*k, result) for k in keys])

    def tasks(self, run_id: str) -> dict[str, Any]:
        run = self.store.get_run(run_id)
        detail = run_detail(run, self.store.get_tasks(run_id), self.store.list_attempts(run_id))
        tasks: dict[str, Any] = detail["tasks"]
        return tasks


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path / "state.db")
    yield world
    world.store.close()


@pytest.mark.parametrize("mark", [TaskState.SUCCEEDED, TaskState.SKIPPED])
def test_a_marked_task_shows_how_long_its_last_attempt_ran(w: World, mark: TaskState) -> None:
    run_id = w.start()
    w.end_attempts(FAILED, after=0.003)
    assert w.store.get_run(run_id).state is RunState.FAILED
    w.clock.advance(81)

    w.scheduler.mark(run_id, "a", mark)

    a = w.tasks(run_id)["a"]
    assert a["state"] == mark.value
    assert a["history"][-1]["duration_seconds"] == 0.003
    assert a["duration_seconds"] == 0.003  # was 81.003: from the attempt's start to the mark
    # the task's times still say when it last started and when it reached its state
    assert a["ended_at"] == w.clock.now().isoformat()
    # the same in the task's own view (GET /runs/{id}/tasks/{task})
    task = w.store.get_task(run_id, "a")
    assert task_view(task, w.store.list_attempts(run_id, "a"))["duration_seconds"] == 0.003


def test_a_task_that_never_ran_has_no_duration_even_when_marked(w: World) -> None:
    run_id = w.start()
    w.scheduler.stop(run_id)  # b never ran: stopped while it waited on a
    w.dispatcher.pending.clear()
    w.clock.advance(5)

    w.scheduler.mark(run_id, "b", TaskState.SKIPPED)

    b = w.tasks(run_id)["b"]
    assert (b["state"], b["history"], b["duration_seconds"]) == ("skipped", [], None)


def test_a_task_waiting_to_retry_shows_its_failed_attempt_and_a_running_one_none(
    w: World,
) -> None:
    w.scheduler.apply(CHAIN.replace('"exit 1"}', '"exit 1", retries: 1, retry_delay: 10s}', 1))
    run, _ = w.scheduler.trigger("default", "chain")
    w.scheduler.step()
    w.end_attempts(FAILED, after=2)
    a = w.tasks(run.id)["a"]
    assert (a["state"], a["duration_seconds"]) == ("up_for_retry", 2.0)

    w.clock.advance(10)
    w.scheduler.step()  # the retry starts
    a = w.tasks(run.id)["a"]
    assert (a["state"], a["attempts"], a["duration_seconds"]) == ("running", 2, None)


def test_a_task_marked_while_it_ran_shows_its_attempt_until_the_mark(w: World) -> None:
    run_id = w.start()
    w.clock.advance(4)

    w.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)  # its attempt is killed

    # no record of the attempt's end yet: until the mark, which killed it
    assert w.tasks(run_id)["a"]["duration_seconds"] == 4.0
    w.end_attempts(AttemptResult(AttemptStatus.STOPPED), after=1)  # the kill's late report
    a = w.tasks(run_id)["a"]
    assert (a["state"], a["history"][-1]["state"]) == ("succeeded", "stopped")
    assert a["duration_seconds"] == 5.0  # what ran: the attempt, until the kill took
