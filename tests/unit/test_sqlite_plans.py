"""The SQLite store's hot queries stay O(what they return) as a run grows: each walks a small
partial index instead of a run's whole task list (what W4's flat per-task cost rests on)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import Run, RunState, TaskInstance, TaskState

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "state.db")


def query_plans(store: SqliteStore, call: Callable[[], object]) -> list[list[str]]:
    """The plans SQLite chooses for the statements ``call`` runs, in order."""
    seen: list[tuple[str, Sequence[Any]]] = []
    real = store._x
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "_x", lambda sql, args=(): seen.append((sql, args)) or real(sql, args))
        call()
    return [
        [row[3] for row in real(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()] for sql, args in seen
    ]


def query_plan(store: SqliteStore, call: Callable[[], object]) -> list[str]:
    """The plan SQLite chooses for the one statement ``call`` runs."""
    [plan] = query_plans(store, call)
    return plan


def test_the_queue_is_read_in_order_from_its_index_and_stops_at_the_limit(
    store: SqliteStore,
) -> None:
    # GIVEN a running run with a free slot and a queued task (else the queue is not read)
    run = Run("r", "wf", "default", 1, RunState.RUNNING, {}, NOW, NOW, n_tasks=1)
    assert store.create_run(run, [TaskInstance("r", "t", TaskState.QUEUED)], concurrency=8)
    slots, steps = query_plans(store, lambda: store.queued_tasks(10))
    # the free slots first: the running runs, from their index
    assert slots == ["SEARCH runs USING INDEX runs_by_state (state=?)"], slots
    assert steps[0].startswith("SCAN t USING INDEX tasks_ready"), steps
    assert not any("TEMP B-TREE" in step for step in steps), "no sort: the index is the order"
    assert not any(step.startswith("SEARCH t USING PRIMARY KEY") for step in steps), steps


@pytest.mark.parametrize(
    ("method", "index"), [("due_retries", "tasks_retry"), ("expired_tasks", "tasks_running")]
)
def test_timed_work_is_found_through_its_partial_index(
    store: SqliteStore, method: str, index: str
) -> None:
    steps = query_plan(store, lambda: getattr(store, method)(NOW, 10))
    assert any(f"USING INDEX {index}" in step for step in steps), steps


def test_whether_timed_work_or_queued_runs_wait_is_one_read_through_their_indexes(
    store: SqliteStore,
) -> None:
    steps = query_plan(store, lambda: store.periodic_due(NOW, NOW))
    for index in ("tasks_retry", "tasks_running", "runs_by_state"):
        assert any(f"INDEX {index} " in step for step in steps), steps
    assert not any(step.startswith(("SCAN tasks", "SCAN runs")) for step in steps), steps


def test_periodic_due_says_what_the_three_reads_would_find(store: SqliteStore) -> None:
    """Each flag of ``periodic_due`` is whether its read (``due_retries``, ``expired_tasks``,
    ``queued_runs``) finds something, at the same times."""

    def flags(due: datetime, overdue: datetime) -> tuple[bool, bool, bool]:
        expected = (
            bool(store.due_retries(due, 10)),
            bool(store.expired_tasks(overdue, 10)),
            bool(store.queued_runs(10)),
        )
        assert store.periodic_due(due, overdue) == expected
        return expected

    later = NOW + timedelta(minutes=5)
    assert flags(later, later) == (False, False, False)
    run = Run("r", "wf", "default", 1, RunState.RUNNING, {}, NOW, NOW, n_tasks=3)
    tasks = [
        TaskInstance("r", "retry", TaskState.UP_FOR_RETRY, attempt=1, ready_at=NOW),
        TaskInstance("r", "slow", TaskState.RUNNING, attempt=1, deadline=later),
        TaskInstance("r", "plain", TaskState.RUNNING, attempt=1),  # no deadline
    ]
    assert store.create_run(run, tasks, concurrency=None)
    assert flags(NOW - timedelta(seconds=1), NOW) == (False, False, False)
    assert flags(NOW, NOW) == (True, False, False)
    assert flags(NOW, later) == (True, True, False)
    waiting = Run("q", "wf", "default", 1, RunState.QUEUED, {}, NOW, NOW, n_tasks=1)
    assert store.create_run(waiting, [TaskInstance("q", "t")], concurrency=None)
    assert flags(NOW - timedelta(seconds=1), NOW) == (False, False, True)


def test_the_queue_read_stops_once_every_free_slot_has_a_task_and_keeps_its_order(
    store: SqliteStore,
) -> None:
    # GIVEN a run at `concurrency: 3` with one attempt running (2 free slots) and 50 queued
    # tasks, queued before another run's tasks
    capped = Run("capped", "wf", "default", 1, RunState.RUNNING, {}, NOW, NOW, n_tasks=50)
    queued = [TaskInstance("capped", f"t{i:02d}", TaskState.QUEUED) for i in range(50)]
    assert store.create_run(capped, queued, concurrency=3)
    store.add_counters("capped", running=1)
    statements: list[str] = []
    store._conn().set_trace_callback(statements.append)

    # THEN only its first two are offered
    assert [t.task_id for t in store.queued_tasks(256)] == ["t00", "t01"]

    # WHEN an unlimited run queues tasks too THEN its tasks all come, after the first two, in
    # queue order, and the capped run's others still do not
    free = Run("free", "wf", "default", 1, RunState.RUNNING, {}, NOW, NOW, n_tasks=3)
    assert store.create_run(
        free, [TaskInstance("free", f"u{i}", TaskState.QUEUED) for i in range(3)], None
    )
    assert [(t.run_id, t.task_id) for t in store.queued_tasks(256)] == [
        ("capped", "t00"), ("capped", "t01"), ("free", "u0"), ("free", "u1"), ("free", "u2"),
    ]  # fmt: skip

    # WHEN the capped run's slots are all taken and the unlimited run ends THEN nothing is
    # offered, and the queue is not read at all
    store.add_counters("capped", running=2)
    assert store.put_run(free.with_(state=RunState.SUCCEEDED), RunState.RUNNING)
    statements.clear()
    assert store.queued_tasks(256) == []
    assert len(statements) == 1, statements  # the count of free slots only


def test_reading_a_capped_runs_queue_costs_the_same_whatever_its_length(tmp_path: Path) -> None:
    """At `concurrency: 8` a layer of hundreds of queued tasks is not walked on every turn."""

    def steps_to_offer(queued: int) -> int:
        store = SqliteStore(tmp_path / f"{queued}.db")
        run = Run("r", "wf", "default", 1, RunState.RUNNING, {}, NOW, NOW, n_tasks=queued)
        tasks = [TaskInstance("r", f"t{i:04d}", TaskState.QUEUED) for i in range(queued)]
        assert store.create_run(run, tasks, concurrency=8)
        ops = [0]

        def count() -> int:
            ops[0] += 1
            return 0

        store._conn().set_progress_handler(count, 10)  # every 10 VM instructions
        assert len(store.queued_tasks(256)) == 8
        return ops[0]

    assert steps_to_offer(1000) <= 1.2 * steps_to_offer(20)
