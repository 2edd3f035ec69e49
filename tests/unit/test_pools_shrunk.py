"""A pool shrunk below a task's ``pool_slots`` after its workflow was applied: the task can
never start, so it fails at once (not retried), naming the pool, both sizes and the fix,
through the one write from QUEUED that a deleted pool's task takes: when it would join the
pool's queue, and when a pass over the queue finds it waiting since before the shrink. Its
dependents go on as after any failure. On both stores (SQLite, DynamoDB on moto), shaped as
locally (``step``) and as on AWS (an api scheduler that kicks, ``advance`` that takes turns)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.faultinject import Faults, dynamodb_tables
from tests.unit.test_pools_served_at_once import Aws

from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import Run, RunState, TaskInstance, TaskState
from stratoflow.engine import pools as engine_pools
from stratoflow.model import load_workflow


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


WIDE = """
name: wide
tasks:
  wide: {type: shell, pool: p4, pool_slots: 3, command: echo wide}
  after: {type: shell, depends_on: [wide], trigger_rule: all_done, command: echo after}
"""

FIX = "give the pool more slots (stratoflow pools set p4 --slots 3)"


def assert_failed_for_want_of_slots(aws: Aws, run_id: str) -> None:
    wide = aws.store.get_task(run_id, "wide")
    assert wide.state is TaskState.FAILED
    assert wide.error is not None
    assert "pool 'p4' can never start task wide" in wide.error
    assert "needs 3 slot(s) (pool_slots: 3) and the pool has 2" in wide.error
    assert FIX in wide.error
    assert wide.attempt == 1  # not retried: waiting longer cannot help
    assert (run_id, "wide", 1) not in aws.dispatcher.dispatched
    [attempt] = aws.store.list_attempts(run_id, "wide")
    assert (attempt.state, attempt.error) == ("failed", wide.error)
    pool = aws.store.get_pool("/p4")
    assert (pool.slots, pool.used) == (2, 0)
    assert aws.store.pool_waiting("/p4", 10) == []


def test_a_task_wider_than_its_shrunk_pool_fails_when_it_would_join_it(store: Any) -> None:
    # GIVEN a workflow applied while its pool had 3 slots, then the pool shrunk to 2
    aws = Aws(store)
    aws.api.set_pool("p4", 3)
    aws.api.apply(WIDE)
    aws.api.set_pool("p4", 2)
    # WHEN it is triggered
    run = aws.api.trigger("default", "wide")[0].id
    aws.hand_over()
    # THEN the wide task fails at once, saying why and how to fix it; its dependent runs
    assert_failed_for_want_of_slots(aws, run)
    assert aws.state(run, "after") is TaskState.RUNNING
    aws.finish(run, "after")
    assert aws.store.get_run(run).state is RunState.FAILED


def test_the_same_locally(store: Any) -> None:
    aws = Aws(store)
    aws.api.set_pool("p4", 3)
    aws.api.apply(WIDE)
    aws.api.set_pool("p4", 2)
    run, _ = aws.api.trigger("default", "wide")
    aws.api.step()
    assert_failed_for_want_of_slots(aws, run.id)
    assert (run.id, "after", 1) in aws.dispatcher.pending  # dispatched in the same turns


def test_a_task_waiting_when_its_pool_shrinks_below_it_fails(store: Any) -> None:
    # GIVEN the wide task waiting in a pool of 3 slots, 1 of them held by another task
    aws = Aws(store)
    aws.api.set_pool("p4", 3)
    aws.api.apply(WIDE)
    aws.api.apply("name: narrow\ntasks:\n  n: {type: shell, pool: p4, command: echo n}\n")
    narrow = aws.api.trigger("default", "narrow")[0].id
    aws.hand_over()
    assert aws.state(narrow, "n") is TaskState.RUNNING
    run = aws.api.trigger("default", "wide")[0].id
    aws.hand_over()
    assert aws.state(run, "wide") is TaskState.QUEUED
    assert [t.task_id for t in aws.store.pool_waiting("/p4", 10)] == ["wide"]
    # WHEN the pool shrinks to 2 (the api's kick has advance serve the pool's queue)
    aws.api.set_pool("p4", 2)
    aws.hand_over()
    # THEN the waiting task fails at once, as if it had come to join the smaller pool
    wide = aws.store.get_task(run, "wide")
    assert wide.state is TaskState.FAILED
    assert "needs 3 slot(s) (pool_slots: 3) and the pool has 2" in (wide.error or "")
    assert aws.store.pool_waiting("/p4", 10) == []
    assert aws.state(run, "after") is TaskState.RUNNING
    # AND the task holding a slot goes on untouched
    assert aws.state(narrow, "n") is TaskState.RUNNING
    assert aws.store.get_pool("/p4").used == 1


def test_the_rule() -> None:
    pool = engine_pools.Pool("sales", "p4", 2)
    assert engine_pools.too_small(pool, "t", 2) is None
    why = engine_pools.too_small(pool, "t", 3)
    assert why is not None
    assert "(stratoflow pools set p4 --slots 3 --project sales)" in why
    assert "lower the task's pool_slots to 2" in why
    spec = load_workflow(WIDE.replace("name: wide", "name: wide\nproject: sales"))
    now = datetime(2026, 3, 1, tzinfo=UTC)
    queued = TaskInstance("r1", "wide", TaskState.QUEUED)
    waiting = engine_pools.enqueue(queued, pool.key, now).tasks[0].task
    running = Run("r1", "wide", "sales", 1, RunState.RUNNING, {}, now, now, n_tasks=2)
    found = engine_pools.too_small_waiting(pool, [waiting], {"r1": (running, spec)})
    assert [(t.task_id, w) for t, w in found] == [("wide", why.replace("task t", "task wide"))]
    # a paused run's task fails once the run is resumed and the queue served again
    paused = running.with_(state=RunState.PAUSED)
    assert engine_pools.too_small_waiting(pool, [waiting], {"r1": (paused, spec)}) == []
    wider = replace(pool, slots=3)
    assert engine_pools.too_small_waiting(wider, [waiting], {"r1": (running, spec)}) == []
