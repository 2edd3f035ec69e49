"""A mark (or a rerun) that ends an ended run again in another state says so: the run-end
event is emitted once, as when the run ends after running again (docs/events.md), and what
follows a run's end (dependents, backfills, parents) hears of it. An end that stays what it
was (a failed run still failed after a mark) emits nothing more. A mark failed, and a rerun
of a run that goes on, as Airflow's *Mark Failed* and *Clear*."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeClock, RecordingDispatcher

from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.errors import Conflict
from stratoflow.ports import EventSink
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ONE = """
name: one
tasks:
  a: {type: shell, command: "exit 1"}
"""
PAIR = """
name: pair
tasks:
  a: {type: shell, command: "exit 1"}
  b: {type: shell, command: "exit 1"}
"""
CHAIN = """
name: chain
tasks:
  a: {type: shell, command: "exit 1"}
  b: {type: shell, command: "true", depends_on: [a]}
"""
FAILED = AttemptResult(AttemptStatus.FAILED, error="exit code 1", exit_code=1)
OK = AttemptResult(AttemptStatus.SUCCEEDED)


class Events(EventSink):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        self.seen.append((kind, str(detail.get("state"))))

    def runs(self) -> list[tuple[str, str]]:
        return [(k, s) for k, s in self.seen if k.startswith("run.")]


class World:
    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path)
        self.dispatcher = RecordingDispatcher()
        self.clock = FakeClock(T0)
        self.events = Events()
        self.scheduler = Scheduler(self.store, self.store, self.dispatcher, self.clock, self.events)

    def run(self, text: str, name: str, result: AttemptResult = FAILED) -> str:
        """Trigger ``name`` and end every attempt it starts with ``result``."""
        self.scheduler.apply(text)
        run, _ = self.scheduler.trigger("default", name)
        self.finish(result)
        return run.id

    def finish(self, result: AttemptResult = OK) -> None:
        for _ in range(10):
            self.clock.advance(1)
            self.scheduler.step()
            if not self.dispatcher.pending:
                return
            keys = list(self.dispatcher.pending)
            self.dispatcher.pending.clear()
            self.scheduler.step([Finished(*k, result) for k in keys])


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path / "state.db")
    yield world
    world.store.close()


@pytest.mark.parametrize("mark", [TaskState.SUCCEEDED, TaskState.SKIPPED])
def test_marking_the_last_failed_task_ends_the_failed_run_succeeded_with_its_event(
    w: World, mark: TaskState
) -> None:
    run_id = w.run(ONE, "one")
    assert w.store.get_run(run_id).state is RunState.FAILED
    assert w.events.runs() == [("run.started", "running"), ("run.failed", "failed")]
    w.clock.advance(60)
    at = w.clock.now()

    marked = w.scheduler.mark(run_id, "a", mark)
    w.finish()

    assert marked.state is RunState.SUCCEEDED
    assert marked.ended_at == at  # a new end: the alerts it makes are keyed by it
    assert w.events.runs()[2:] == [("run.succeeded", "succeeded")]


def test_a_mark_that_leaves_the_run_failed_emits_no_second_end(w: World) -> None:
    run_id = w.run(PAIR, "pair")
    assert w.events.runs()[-1] == ("run.failed", "failed")
    before = len(w.events.seen)

    still = w.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)
    w.finish()
    assert still.state is RunState.FAILED
    assert w.events.seen[before:] == []

    done = w.scheduler.mark(run_id, "b", TaskState.SUCCEEDED)
    w.finish()
    assert done.state is RunState.SUCCEEDED
    assert w.events.runs()[-1:] == [("run.succeeded", "succeeded")]
    assert [k for k, _ in w.events.seen[before:]] == ["run.succeeded"]


def test_a_stopped_run_marked_done_ends_succeeded_with_its_event_once(w: World) -> None:
    w.scheduler.apply(PAIR)
    run, _ = w.scheduler.trigger("default", "pair")
    w.scheduler.step()
    w.scheduler.stop(run.id)
    w.dispatcher.pending.clear()  # the killed attempts' reports come late: nothing changes
    assert w.events.runs()[-1] == ("run.stopped", "stopped")
    before = len(w.events.seen)

    # b is still stopped: the run did not succeed, and stays as it ended (no new end)
    still = w.scheduler.mark(run.id, "a", TaskState.SUCCEEDED)
    assert still.state is RunState.STOPPED
    assert w.store.get_run(run.id).state is RunState.STOPPED
    assert w.events.seen[before:] == []
    w.scheduler.mark(run.id, "b", TaskState.SKIPPED)  # nothing stopped is left

    assert w.store.get_run(run.id).state is RunState.SUCCEEDED
    assert w.events.runs()[-1] == ("run.succeeded", "succeeded")
    assert [k for k, _ in w.events.runs()].count("run.succeeded") == 1


SPLIT = """
name: split
tasks:
  x: {type: shell, command: "true"}
  y: {type: shell, command: "true", depends_on: [x]}
  z: {type: shell, command: "true"}
"""


def test_a_run_reopened_by_a_mark_with_a_task_still_stopped_ends_stopped_not_succeeded(
    w: World,
) -> None:
    """Stop a run while x and z run, mark x succeeded: y runs, and when it has run every
    task has ended, none failed, but z was stopped and never ran: the run is stopped
    again, not succeeded (as Airflow would not call a DAG run with an unfinished task a
    success)."""
    w.scheduler.apply(SPLIT)
    run, _ = w.scheduler.trigger("default", "split")
    w.scheduler.step()
    w.scheduler.stop(run.id)
    w.dispatcher.pending.clear()

    reopened = w.scheduler.mark(run.id, "x", TaskState.SUCCEEDED)
    assert reopened.state is RunState.RUNNING
    w.finish()  # y runs and succeeds

    tasks = {t.task_id: t.state for t in w.store.get_tasks(run.id)}
    assert tasks == {"x": TaskState.SUCCEEDED, "y": TaskState.SUCCEEDED, "z": TaskState.STOPPED}
    assert w.store.get_run(run.id).state is RunState.STOPPED
    kinds = [k for k, _ in w.events.runs()]
    assert kinds == ["run.started", "run.stopped", "run.started", "run.stopped"]


def test_a_rerun_from_one_branch_of_a_stopped_run_leaves_it_stopped(w: World) -> None:
    w.scheduler.apply(SPLIT)
    run, _ = w.scheduler.trigger("default", "split")
    w.scheduler.step()
    w.scheduler.stop(run.id)
    w.dispatcher.pending.clear()

    w.scheduler.rerun(run.id, from_task="x")
    w.finish()

    assert w.store.get_task(run.id, "z").state is TaskState.STOPPED
    assert w.store.get_run(run.id).state is RunState.STOPPED


def test_a_mark_that_lets_a_task_run_ends_the_run_once_when_it_has_run(w: World) -> None:
    run_id = w.run(CHAIN, "chain")
    assert w.events.runs()[-1] == ("run.failed", "failed")

    rerunning = w.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)
    assert rerunning.state is RunState.RUNNING
    w.finish()

    assert w.store.get_run(run_id).state is RunState.SUCCEEDED
    kinds = [k for k, _ in w.events.runs()]
    # made to run again by the mark: started again (as on AWS, from the run item's change)
    assert kinds == ["run.started", "run.failed", "run.started", "run.succeeded"]


def _end(w: World, task_id: str, result: AttemptResult) -> tuple[str, str, int]:
    """End the pending attempt of ``task_id`` with ``result``; its key."""
    key = next(k for k in w.dispatcher.pending if k[1] == task_id)
    del w.dispatcher.pending[key]
    w.scheduler.step([Finished(*key, result)])
    return key


RETRIED = """
name: retried
defaults: {retries: 3}
tasks:
  a: {type: shell, command: "sleep 60"}
  b: {type: shell, command: "true", depends_on: [a]}
  c: {type: shell, command: "true", depends_on: [a], trigger_rule: all_done}
"""


def test_a_running_task_marked_failed_is_killed_not_retried_and_sends_task_failed(
    w: World,
) -> None:
    """Airflow's *Mark Failed*: the attempt is killed, its later report changes nothing, the
    task's 3 retries do not apply (the operator decided): b (all_success) is
    upstream_failed, c (all_done) runs, and the run ends failed once c ends, with
    ``task.failed`` for a and one run end."""
    w.scheduler.apply(RETRIED)
    run, _ = w.scheduler.trigger("default", "retried")
    w.scheduler.step()
    attempt = next(iter(w.dispatcher.pending))
    assert attempt[1:] == ("a", 1)

    marked = w.scheduler.mark(run.id, "a", TaskState.FAILED)

    assert marked.state is RunState.RUNNING
    assert [k[1:] for k in w.dispatcher.killed] == [("a", 1)]
    a = w.store.get_task(run.id, "a")
    assert (a.state, a.attempt, a.error) == (TaskState.FAILED, 1, "marked failed")
    assert ("task.failed", "running") in w.events.seen
    # the killed attempt's report comes late: it changes nothing (no retry)
    assert _end(w, "a", FAILED) == attempt
    assert w.store.get_task(run.id, "a").state is TaskState.FAILED
    w.finish()  # c runs and succeeds
    states = {t.task_id: t.state for t in w.store.get_tasks(run.id)}
    assert states == {
        "a": TaskState.FAILED, "b": TaskState.UPSTREAM_FAILED, "c": TaskState.SUCCEEDED,
    }  # fmt: skip
    assert w.store.get_run(run.id).state is RunState.FAILED
    assert w.events.runs() == [("run.started", "running"), ("run.failed", "failed")]
    assert [k for k, _ in w.events.seen].count("task.failed") == 1


def test_a_task_marked_failed_stops_a_run_whose_workflow_stops_on_failure(w: World) -> None:
    """``on_failure: stop`` applies to a marked failure at once, as to any failure: the
    run does not wait for the killed attempt's report to be stopped."""
    w.scheduler.apply(RETRIED.replace("name: retried\n", "name: stops\non_failure: stop\n"))
    run, _ = w.scheduler.trigger("default", "stops")
    w.scheduler.step()

    marked = w.scheduler.mark(run.id, "a", TaskState.FAILED)

    assert marked.state is RunState.FAILED
    states = {t.task_id: t.state for t in w.store.get_tasks(run.id)}
    assert states == {
        "a": TaskState.FAILED, "b": TaskState.UPSTREAM_FAILED, "c": TaskState.STOPPED,
    }  # fmt: skip
    assert w.events.runs() == [("run.started", "running"), ("run.failed", "failed")]


# ------------------------------------------------------------------ a rerun of a run that goes on
BRANCHES = """
name: branches
tasks:
  a: {type: shell, command: "exit 1"}
  b: {type: shell, command: "sleep 60"}
  c: {type: shell, command: "true", depends_on: [a]}
"""


def test_a_failed_branch_of_a_running_run_is_rerun_while_the_run_goes_on(w: World) -> None:
    """Airflow's *Clear* of a failed task in a running DAG run: a failed while b still runs;
    rerun now, a runs again (its second attempt), c after it, and the run, which never
    stopped running, succeeds once b ends: one ``run.started``, one end."""
    w.scheduler.apply(BRANCHES)
    run, _ = w.scheduler.trigger("default", "branches")
    w.scheduler.step()
    _end(w, "a", FAILED)
    assert w.store.get_task(run.id, "c").state is TaskState.UPSTREAM_FAILED
    assert w.store.get_run(run.id).state is RunState.RUNNING  # b runs

    # a rerun of the run's end as read (a backfill's, a parent task's) finds no such end
    with pytest.raises(Conflict, match="is running: it no longer ends as read"):
        w.scheduler.rerun(run.id, if_ended_at=T0)
    assert w.store.get_task(run.id, "a").state is TaskState.FAILED

    again = w.scheduler.rerun(run.id)

    assert again.state is RunState.RUNNING
    assert w.dispatcher.killed == []  # b goes on
    w.scheduler.step()
    assert _end(w, "a", OK)[2] == 2
    _end(w, "c", OK)
    assert w.store.get_run(run.id).state is RunState.RUNNING
    _end(w, "b", OK)
    assert w.store.get_run(run.id).state is RunState.SUCCEEDED
    assert w.events.runs() == [("run.started", "running"), ("run.succeeded", "succeeded")]
    # counted once each: 3 done, none failed, none running
    counts = w.store.get_run(run.id)
    assert (counts.n_done, counts.n_failed, counts.n_running) == (3, 0, 0)


def test_a_rerun_from_a_task_of_a_running_run_kills_what_runs_downstream(w: World) -> None:
    w.scheduler.apply(BRANCHES)
    run, _ = w.scheduler.trigger("default", "branches")
    w.scheduler.step()
    _end(w, "a", OK)
    w.scheduler.step()
    c_first = next(k for k in w.dispatcher.pending if k[1] == "c")

    w.scheduler.rerun(run.id, from_task="a")

    assert w.dispatcher.killed == [c_first]
    assert _end(w, "c", FAILED) == c_first  # the killed attempt's late report
    assert w.store.get_task(run.id, "c").state is TaskState.WAITING
    w.scheduler.step()
    assert _end(w, "a", OK)[2] == 2
    assert _end(w, "c", OK)[2] == 2
    _end(w, "b", OK)
    ended = w.store.get_run(run.id)
    assert (ended.state, ended.n_done, ended.n_failed, ended.n_running) == (
        RunState.SUCCEEDED, 3, 0, 0,
    )  # fmt: skip


def test_a_rerun_of_a_running_run_frees_the_pool_slot_of_what_it_kills(w: World) -> None:
    """h, after a failed (all_done), holds the only slot of its pool when a is rerun: killed,
    h gives the slot back at once (not when its late report comes), so h's next attempt
    takes it once a has passed, and every slot is free once the run ends."""
    w.scheduler.set_pool("p", 1)
    w.scheduler.apply(
        "name: pooled\ntasks:\n"
        '  a: {type: shell, command: "exit 1"}\n'
        '  h: {type: shell, command: "sleep 60", depends_on: [a], trigger_rule: all_done,'
        " pool: p}\n"
    )
    run, _ = w.scheduler.trigger("default", "pooled")
    w.scheduler.step()
    _end(w, "a", FAILED)
    w.scheduler.step()
    held = next(k for k in w.dispatcher.pending if k[1] == "h")
    assert [p.used for p in w.store.list_pools()] == [1]

    w.scheduler.rerun(run.id)

    assert w.dispatcher.killed == [held]
    assert [p.used for p in w.store.list_pools()] == [0]
    assert _end(w, "h", FAILED) == held  # the late report gives back nothing more
    assert [p.used for p in w.store.list_pools()] == [0]
    w.scheduler.step()
    _end(w, "a", OK)
    w.scheduler.step()
    assert [p.used for p in w.store.list_pools()] == [1]
    assert _end(w, "h", OK)[2] == 2
    assert w.store.get_run(run.id).state is RunState.SUCCEEDED
    assert [p.used for p in w.store.list_pools()] == [0]
