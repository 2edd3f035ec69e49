"""A sub-workflow's child run follows its parent's pause and resume, even through a crash:
the rules (``align``, ``starts_paused``), an operator's own pause of a child kept across its
parent's pause and resume, ``recover`` pausing or resuming a child its parent's operation
died before reaching, and a child that leaves its queue while its parent is paused starting
paused — on both stores (SQLite, DynamoDB on moto)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from tests.fakes import FakeClock, RecordingDispatcher

from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, Run, RunState, TaskInstance, TaskState
from stratoflow.engine import subworkflow as rules
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 6, 1, tzinfo=UTC)

CHILD = """\
name: leaf
max_active_runs: 1
tasks:
  x: {type: shell, command: "true"}
  y: {type: shell, command: "true", depends_on: [x]}
"""

PARENT = """\
name: top
tasks:
  sub: {type: workflow, workflow: leaf}
"""


# ---------------------------------------------------------------- the rules
def _run(state: RunState, *, by_parent: bool = False) -> Run:
    return Run("r", "w", "default", 1, state, {}, T0, T0, paused_by_parent=by_parent)


def _task(state: TaskState) -> TaskInstance:
    return TaskInstance("p", "sub", state)


def test_align_pauses_or_resumes_only_what_the_parent_decides() -> None:
    running, paused = _run(RunState.RUNNING), _run(RunState.PAUSED)
    cascaded = _run(RunState.PAUSED, by_parent=True)
    task = _task(TaskState.RUNNING)
    assert rules.align(paused, task, running) is rules.Align.PAUSE
    assert rules.align(running, task, cascaded) is rules.Align.RESUME
    assert rules.align(running, task, paused) is None  # an operator's own pause is kept
    assert rules.align(paused, task, cascaded) is None
    assert rules.align(running, task, running) is None
    # a parent task no longer running (or gone) is stop_orphans' business
    assert rules.align(paused, _task(TaskState.STOPPED), running) is None
    assert rules.align(None, None, running) is None


def test_a_queued_child_starts_paused_only_under_a_paused_parent() -> None:
    assert rules.starts_paused(_run(RunState.PAUSED))
    assert not rules.starts_paused(_run(RunState.RUNNING))
    assert not rules.starts_paused(None)


# ---------------------------------------------------------------- the service
@dataclass
class World:
    scheduler: Scheduler
    store: SqliteStore | DynamoStore
    dispatcher: RecordingDispatcher

    def child_of(self, run_id: str) -> Run:
        return self.store.get_run(rules.child_run_id(run_id, "sub", ("default", "leaf")))

    def end(self, run_id: str, task_id: str) -> None:
        self.dispatcher.pending.pop((run_id, task_id, 1), None)
        ok = AttemptResult(AttemptStatus.SUCCEEDED)
        self.scheduler.on_finished([Finished(run_id, task_id, 1, ok)])
        self.scheduler.step()

    def started(self) -> tuple[Run, Run]:
        """A parent run whose child's x runs."""
        run, _ = self.scheduler.trigger("default", "top")
        self.scheduler.step()
        child = self.child_of(run.id)
        assert child.state is RunState.RUNNING
        assert (child.id, "x", 1) in self.dispatcher.pending
        return run, child


@pytest.fixture(params=["sqlite", "dynamodb"])
def w(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    dispatcher = RecordingDispatcher()
    with ExitStack() as stack:
        store: SqliteStore | DynamoStore
        if request.param == "sqlite":
            store = SqliteStore(tmp_path / "state.db")
            stack.callback(store.close)
        else:
            stack.enter_context(mock_aws())
            client = boto3.client(
                "dynamodb", region_name="us-east-1",
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )  # fmt: skip
            create_table(client, "stratoflow-state", stream=False)
            store = DynamoStore("stratoflow-state", client=client)
        scheduler = Scheduler(store, store, dispatcher, FakeClock(T0))
        scheduler.apply(CHILD)
        scheduler.apply(PARENT)
        yield World(scheduler, store, dispatcher)


def test_the_parent_pause_marks_the_child_and_its_resume_clears_it(w: World) -> None:
    run, _ = w.started()
    w.scheduler.pause(run.id)
    paused = w.child_of(run.id)
    assert (paused.state, paused.paused_by_parent) == (RunState.PAUSED, True)
    w.scheduler.resume(run.id)
    resumed = w.child_of(run.id)
    assert (resumed.state, resumed.paused_by_parent) == (RunState.RUNNING, False)


def test_an_operator_pause_of_the_child_outlives_the_parent_pause_and_resume(w: World) -> None:
    run, child = w.started()
    w.scheduler.pause(child.id)  # the operator's own
    w.scheduler.pause(run.id)
    w.scheduler.resume(run.id)
    kept = w.child_of(run.id)
    assert (kept.state, kept.paused_by_parent) == (RunState.PAUSED, False)
    w.scheduler.recover()  # nor does the reconciler resume it
    assert w.child_of(run.id).state is RunState.PAUSED


def test_recover_pauses_the_child_a_crashed_pause_left_running(w: World) -> None:
    run, child = w.started()
    # the parent's pause was written, then the process died before it reached the child
    parent = w.store.get_run(run.id)
    assert w.store.put_run(parent.with_(state=RunState.PAUSED), RunState.RUNNING)
    w.scheduler.recover()
    paused = w.child_of(run.id)
    assert (paused.state, paused.paused_by_parent) == (RunState.PAUSED, True)
    w.end(child.id, "x")
    assert (child.id, "y", 1) not in w.dispatcher.dispatched  # paused: y waits


def test_recover_resumes_the_child_a_crashed_resume_left_paused(w: World) -> None:
    run, child = w.started()
    w.scheduler.pause(run.id)
    # the parent's resume was written, then the process died before it reached the child
    parent = w.store.get_run(run.id)
    assert w.store.put_run(parent.with_(state=RunState.RUNNING), RunState.PAUSED)
    w.scheduler.recover()
    resumed = w.child_of(run.id)
    assert (resumed.state, resumed.paused_by_parent) == (RunState.RUNNING, False)
    w.end(child.id, "x")
    w.end(child.id, "y")
    assert w.store.get_run(run.id).state is RunState.SUCCEEDED


def test_a_child_queued_behind_max_active_runs_starts_paused_under_a_paused_parent(
    w: World,
) -> None:
    blocker, _ = w.scheduler.trigger("default", "leaf")  # holds leaf's only slot
    w.scheduler.step()
    run, _ = w.scheduler.trigger("default", "top")
    w.scheduler.step()
    assert w.child_of(run.id).state is RunState.QUEUED
    w.scheduler.pause(run.id)
    w.end(blocker.id, "x")
    w.end(blocker.id, "y")  # the blocker ends: the child leaves its queue
    child = w.child_of(run.id)
    assert (child.state, child.paused_by_parent) == (RunState.PAUSED, True)
    assert (child.id, "x", 1) not in w.dispatcher.dispatched
    w.scheduler.resume(run.id)
    w.scheduler.step()
    assert w.child_of(run.id).state is RunState.RUNNING
    w.end(child.id, "x")
    w.end(child.id, "y")
    assert w.store.get_run(run.id).state is RunState.SUCCEEDED
