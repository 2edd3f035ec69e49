"""Inside one transaction the SQLite store reads a run's row and a workflow's dependency waits
once (a turn asks for them after every task's end), and its own writes keep what it read
true; the copy never outlives the transaction: a rollback, a savepoint rolled back and the
next transaction all read the stored row again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import (
    Decision,
    PoolDelta,
    Run,
    RunState,
    TaskInstance,
    TaskState,
    TaskWrite,
)
from stratoflow.engine.pools import pool_key

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "state.db")
    run = Run("r", "wf", "default", 1, RunState.RUNNING, {}, NOW, NOW, n_tasks=2)
    tasks = [TaskInstance("r", t, TaskState.QUEUED) for t in ("a", "b")]
    assert store.create_run(run, tasks, concurrency=8)
    yield store
    store.close()


def run_reads(store: SqliteStore) -> list[str]:
    """Start counting the statements that read a run's row (on this thread's connection)."""
    seen: list[str] = []
    store._conn().set_trace_callback(
        lambda sql: seen.append(sql) if sql.startswith("SELECT id, project") else None
    )
    return seen


def other(store: SqliteStore) -> SqliteStore:
    """The same file through another connection (another process, as far as SQLite knows)."""
    return SqliteStore(store.path)


def claim(task: str) -> Decision:
    started = TaskInstance("r", task, TaskState.RUNNING, attempt=1, started_at=NOW)
    return Decision("r", (TaskWrite(started, TaskState.QUEUED, 0),), running=1)


def test_a_transaction_reads_a_run_once_and_sees_its_own_writes(store: SqliteStore) -> None:
    reads = run_reads(store)
    with store.transaction():
        assert store.get_run("r").n_running == 0
        assert store.apply(claim("a"))  # counters: +1 running
        assert store.get_run("r").n_running == 1
        paused = store.get_run("r").with_(state=RunState.PAUSED)
        assert store.put_run(paused, RunState.RUNNING)
        after = store.get_run("r")
        assert (after.state, after.n_running) == (RunState.PAUSED, 1)
    assert len(reads) == 1, reads
    # and what it kept is what is stored
    assert store.get_run("r") == after
    assert len(reads) == 2  # outside a transaction: read each time


def test_a_run_read_in_one_transaction_is_read_again_in_the_next(store: SqliteStore) -> None:
    with store.transaction():
        assert store.get_run("r").n_done == 0
    writer = other(store)
    try:
        writer.add_counters("r", done=1)
    finally:
        writer.close()
    with store.transaction():
        assert store.get_run("r").n_done == 1


def test_a_rollback_drops_what_the_transaction_cached(store: SqliteStore) -> None:
    def failed_turn() -> None:
        with store.transaction():
            assert store.apply(claim("a"))
            assert store.get_run("r").n_running == 1
            raise RuntimeError("the turn failed")

    with pytest.raises(RuntimeError, match="the turn failed"):
        failed_turn()
    with store.transaction():
        assert store.get_run("r").n_running == 0
        assert store.get_task("r", "a").state is TaskState.QUEUED


def test_a_decision_rolled_back_to_its_savepoint_leaves_the_run_as_stored(
    store: SqliteStore,
) -> None:
    """A decision whose run write and counters applied before its last condition failed
    (a pool with no slot) is undone: neither is in what the transaction reads after."""
    with store.transaction():
        run = store.get_run("r")
        paused = run.with_(state=RunState.PAUSED)
        full = PoolDelta(pool_key("default", "none"), 1, limit=1)  # no such pool: no slot
        decision = Decision(
            "r", claim("a").tasks, running=1, run=paused, run_expect=RunState.RUNNING,
            pools=(full,),
        )  # fmt: skip
        assert not store.apply(decision)
        assert store.get_run("r") == run
        assert store.get_task("r", "a").state is TaskState.QUEUED
        assert store.apply(claim("a"))
        assert store.get_run("r").n_running == 1
    assert store.get_run("r").n_running == 1
    assert store.get_run("r").state is RunState.RUNNING


def test_a_write_that_fails_after_it_was_made_leaves_no_stale_copy(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A counters update that reached the file but raised (a fault after the write): the
    transaction, if it goes on, reads the row again instead of trusting the old copy."""
    real = store._x

    def fail_after(sql: str, args: object = ()) -> object:
        cur = real(sql, args)  # type: ignore[arg-type]
        if sql.startswith("UPDATE runs"):
            raise OSError("injected after the write")
        return cur

    with store.transaction():
        assert store.get_run("r").n_running == 0
        monkeypatch.setattr(store, "_x", fail_after)
        with pytest.raises(OSError):
            store.apply(Decision("r", running=1))
        monkeypatch.setattr(store, "_x", real)
        assert store.get_run("r").n_running == 1


def test_dependency_waits_are_read_once_and_follow_the_transactions_writes(
    store: SqliteStore,
) -> None:
    seen: list[str] = []
    store._conn().set_trace_callback(
        lambda sql: seen.append(sql) if "FROM dependency_waits" in sql else None
    )
    with store.transaction():
        assert store.dependency_waiters("p", "up", 10) == []
        assert store.dependency_waiters("p", "up", 10) == []
        assert len(seen) == 1
        store.add_dependency_waits("r", "a", [("p", "up")])
        assert store.dependency_waiters("p", "up", 10) == [("r", "a")]
        store.remove_dependency_waits("r", "a", [("p", "up")])
        assert store.dependency_waiters("p", "up", 10) == []
    writer = other(store)
    try:
        writer.add_dependency_waits("r", "b", [("p", "up")])
    finally:
        writer.close()
    with store.transaction():
        assert store.dependency_waiters("p", "up", 10) == [("r", "b")]


def queue_order(store: SqliteStore) -> list[str]:
    return [t.task_id for t in store.run_queue("q", 100)]


@pytest.fixture
def waiting(store: SqliteStore) -> SqliteStore:
    """A second run, all of whose tasks wait to be queued."""
    run = Run("q", "wf", "default", 1, RunState.RUNNING, {}, NOW, NOW, n_tasks=6)
    tasks = [TaskInstance("q", t, TaskState.WAITING) for t in "uvwxyz"]
    assert store.create_run(run, tasks, concurrency=8)
    return store


def enqueue(task: str) -> Decision:
    return Decision(
        "q", (TaskWrite(TaskInstance("q", task, TaskState.QUEUED), TaskState.WAITING, 0),)
    )


def test_a_transaction_numbers_its_queued_tasks_from_one_reservation(
    waiting: SqliteStore,
) -> None:
    store = waiting
    updates: list[str] = []
    store._conn().set_trace_callback(
        lambda sql: updates.append(sql) if sql.startswith("UPDATE counters") else None
    )
    with store.transaction():
        for task in "wvu":
            assert store.apply(enqueue(task))
    assert len(updates) == 1, updates
    # another writer's transaction after it queues after it, and so does the next one here
    writer = other(store)
    try:
        with writer.transaction():
            assert writer.apply(enqueue("z"))
    finally:
        writer.close()
    with store.transaction():
        assert store.apply(enqueue("x"))
    assert queue_order(store) == ["w", "v", "u", "z", "x"]


def test_queue_numbers_reserved_in_a_savepoint_rolled_back_are_not_given_twice(
    waiting: SqliteStore,
) -> None:
    """The first decision reserves the block, then fails its last condition: its savepoint
    takes the reservation back, so the tasks queued after it must reserve again."""
    store = waiting
    with store.transaction():
        no_slot = PoolDelta(pool_key("default", "none"), 1, limit=1)
        assert not store.apply(Decision("q", enqueue("u").tasks, pools=(no_slot,)))
        assert store.apply(enqueue("v"))
        assert store.apply(enqueue("w"))
    with store.transaction():
        assert store.apply(enqueue("u"))
    assert queue_order(store) == ["v", "w", "u"]
    seqs = [
        row[0]
        for row in store._x("SELECT queued_seq FROM tasks WHERE run_id='q' AND state='queued'")
    ]
    assert len(set(seqs)) == len(seqs)
