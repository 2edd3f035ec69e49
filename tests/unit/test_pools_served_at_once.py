"""What un-blocks a task waiting in a pool has it served in the same turn, not at the next
periodic pass: a resume, a pool grown (``pools set``), a ``concurrency`` slot of its run freed.
Shaped as on AWS, where nothing polls: one scheduler takes requests (the api function: it
records and hands the dispatch over with kicks), another takes turns only through
``advance`` (the advance function), both over one store — SQLite, and DynamoDB on moto."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.faultinject import Faults, dynamodb_tables

from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, TaskState
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "state.db")
        yield opened
        opened.close()
        return
    with ExitStack() as stack:
        open_store = stack.enter_context(dynamodb_tables())
        yield stack.enter_context(open_store(Faults(armed=False)))


class Aws:
    """An api scheduler and an advance scheduler over one store; kicks carried by hand."""

    def __init__(self, store: Any) -> None:
        self.clock = FakeClock(T0)
        self.dispatcher = RecordingDispatcher()
        self.api = Scheduler(store, store, self.dispatcher, self.clock)
        self.adv = Scheduler(store, store, self.dispatcher, self.clock)
        self.store = store

    def hand_over(self) -> None:
        """The api's kicks, delivered to ``advance`` (no periodic pass anywhere)."""
        self.adv.advance([], runs=self.api.take_runs_to_dispatch())

    def finish(self, run_id: str, task_id: str) -> None:
        self.dispatcher.pending.pop((run_id, task_id, 1))
        ok = AttemptResult(AttemptStatus.SUCCEEDED)
        self.adv.advance([Finished(run_id, task_id, 1, ok)])

    def state(self, run_id: str, task_id: str) -> TaskState:
        return self.store.get_task(run_id, task_id).state


TWO_POOLED = """
name: w
tasks:
  a: {type: shell, command: "true", pool: wh}
  b: {type: shell, command: "true", pool: wh}
"""


def test_a_resumed_runs_waiting_task_is_served_by_the_resumes_kick(store: Any) -> None:
    aws = Aws(store)
    aws.api.set_pool("wh", 1)
    aws.api.apply(TWO_POOLED)
    run = aws.api.trigger("default", "w")[0].id
    aws.hand_over()
    running = [t for t in ("a", "b") if aws.state(run, t) is TaskState.RUNNING]
    assert len(running) == 1
    waiting = "b" if running == ["a"] else "a"
    # the run is paused while one task runs; its end frees the slot, but the run cannot take it
    aws.api.pause(run)
    aws.finish(run, running[0])
    assert aws.state(run, waiting) is TaskState.QUEUED
    # WHEN it is resumed THEN the resume's kick serves the pool: the task starts at once
    aws.api.resume(run)
    aws.hand_over()
    assert aws.state(run, waiting) is TaskState.RUNNING
    assert (run, waiting, 1) in aws.dispatcher.pending


def test_a_pool_grown_serves_its_queue_at_once(store: Any) -> None:
    aws = Aws(store)
    aws.api.set_pool("wh", 1)
    aws.api.apply(TWO_POOLED)
    run = aws.api.trigger("default", "w")[0].id
    aws.hand_over()
    states = sorted(aws.state(run, t) for t in ("a", "b"))
    assert states == sorted([TaskState.RUNNING, TaskState.QUEUED])
    # WHEN the pool grows to 2 THEN the waiting task starts in the turn the change kicked
    aws.api.set_pool("wh", 2)
    aws.hand_over()
    assert [aws.state(run, t) for t in ("a", "b")] == [TaskState.RUNNING] * 2
    pool = store.get_pool("/wh")
    assert (pool.slots, pool.used) == (2, 2)


def test_a_concurrency_slot_freed_serves_the_runs_pooled_task(store: Any) -> None:
    aws = Aws(store)
    aws.api.set_pool("wh", 5)
    aws.api.apply("""
name: c
concurrency: 1
tasks:
  plain: {type: shell, command: "true", priority: 10}
  pooled: {type: shell, command: "true", pool: wh}
""")
    run = aws.api.trigger("default", "c")[0].id
    aws.hand_over()
    assert aws.state(run, "plain") is TaskState.RUNNING
    assert aws.state(run, "pooled") is TaskState.QUEUED  # in the pool: its run is at 1
    # WHEN the unpooled task ends (it held no slot of the pool) THEN its run's freed slot
    # lets the pooled task start in the same turn
    aws.finish(run, "plain")
    assert aws.state(run, "pooled") is TaskState.RUNNING


HOLD = "name: hold\ntasks:\n  h: {type: shell, command: 'true', pool: wh}\n"
WIDE = "name: wide\npriority: 10\ntasks:\n  w: {type: shell, command: 'true', pool: wh, pool_slots: 2}\n"
NARROW = "name: narrow\ntasks:\n  n: {type: shell, command: 'true', pool: wh}\n"


@pytest.mark.parametrize("operation", ["stop", "mark", "pause"])
def test_a_wide_task_taken_off_the_head_of_the_queue_lets_the_next_start_at_once(
    store: Any, operation: str
) -> None:
    """A wide task at the head of a pool's queue blocks the narrow ones behind it (a narrow
    one does not starve it). When an operator takes it out of the way (stops its run, marks
    it skipped, or pauses its run, whose tasks the queue then passes over), the narrow task
    that fits the free slot starts in the turn the operation kicked: on AWS nothing else
    serves the queue before the reconciler's pass (5 min)."""
    aws = Aws(store)
    aws.api.set_pool("wh", 2)
    for text in (HOLD, WIDE, NARROW):
        aws.api.apply(text)
    hold = aws.api.trigger("default", "hold")[0].id
    aws.hand_over()
    wide = aws.api.trigger("default", "wide")[0].id
    aws.hand_over()
    narrow = aws.api.trigger("default", "narrow")[0].id
    aws.hand_over()
    assert aws.state(hold, "h") is TaskState.RUNNING  # 1 of the 2 slots
    assert aws.state(wide, "w") is TaskState.QUEUED  # needs both: heads the queue
    assert aws.state(narrow, "n") is TaskState.QUEUED  # fits, but waits behind it
    # WHEN the operator takes the wide task out of the way
    if operation == "stop":
        aws.api.stop(wide)
    elif operation == "mark":
        aws.api.mark(wide, "w", TaskState.SKIPPED)
    else:
        aws.api.pause(wide)
    aws.hand_over()
    # THEN the narrow one starts in that kicked turn
    assert aws.state(narrow, "n") is TaskState.RUNNING
    assert (narrow, "n", 1) in aws.dispatcher.pending
    assert store.get_pool("/wh").used == 2
