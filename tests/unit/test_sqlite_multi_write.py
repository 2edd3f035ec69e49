"""A decision writing several tasks is one multi-row ``UPDATE ... FROM (VALUES ...)`` per 32
tasks in the SQLite store: each row keeps its condition (the state and attempt it must still
be in), and one lost condition fails the whole decision and writes nothing, as when the
writes were one statement each."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratoflow.adapters.local.sqlite_store import _MULTI_MIN, SqliteStore
from stratoflow.engine import Decision, Run, RunState, TaskInstance, TaskState, TaskWrite

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def make_store(tmp_path: Path, n: int, state: TaskState = TaskState.QUEUED) -> SqliteStore:
    store = SqliteStore(tmp_path / "state.db")
    run = Run("r", "wf", "default", 1, RunState.RUNNING, {}, NOW, NOW, n_tasks=n)
    tasks = [TaskInstance("r", f"t{i:02}", state) for i in range(n)]
    assert store.create_run(run, tasks, concurrency=None)
    return store


def claims(store: SqliteStore, n: int) -> Decision:
    writes = tuple(
        TaskWrite(
            store.get_task("r", f"t{i:02}").with_(
                state=TaskState.RUNNING, attempt=1, started_at=NOW
            ),
            TaskState.QUEUED,
            0,
        )
        for i in range(n)
    )
    return Decision("r", writes, running=n)


def snapshot(store: SqliteStore) -> tuple[object, ...]:
    return (
        [(t.task_id, t.state, t.attempt, t.started_at) for t in store.get_tasks("r")],
        store.get_run("r").n_running,
        store.run_revision("r"),
    )


def update_statements(store: SqliteStore, patch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = store._x
    patch.setattr(store, "_x", lambda sql, args=(): seen.append(sql) or real(sql, args))
    return seen


@pytest.mark.parametrize("n", [2, 3, 4, 40])  # 2, 3: one statement a task; 40: 32 rows and 8
@pytest.mark.parametrize("lost_at", ["first", "middle", "last"])
@pytest.mark.parametrize("lost", ["state", "attempt"])
def test_one_lost_condition_fails_the_whole_multi_row_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int, lost_at: str, lost: str
) -> None:
    # GIVEN queued tasks, and a claim of them all read while they were queued
    store = make_store(tmp_path, n)
    decision = claims(store, n)
    # AND one of them moved on since (another claimer won it, or it was retried meanwhile)
    i = {"first": 0, "middle": n // 2, "last": n - 1}[lost_at]
    other = store.get_task("r", f"t{i:02}")
    change = {"state": TaskState.SKIPPED} if lost == "state" else {"attempt": 5}
    assert store.apply(Decision("r", (TaskWrite(other.with_(**change), TaskState.QUEUED, 0),)))
    before = snapshot(store)
    statements = update_statements(store, monkeypatch)
    # WHEN the claim is applied
    applied = store.apply(decision)
    # THEN it reports it did not apply, and nothing of it was written: no task, no counter,
    # no change row for the run-delta readers
    assert applied is False
    assert snapshot(store) == before
    updates = [s for s in statements if s.startswith("UPDATE tasks")]
    if n < _MULTI_MIN:
        # AND a few tasks were written one statement each, up to the lost one (rolled back)
        assert len(updates) == i + 1, updates
        assert not any("FROM (VALUES" in s for s in updates), updates
        return
    # AND from _MULTI_MIN tasks it was the multi-row path: one statement per 32 tasks
    assert len(updates) == (n + 31) // 32, updates
    assert all("FROM (VALUES" in s for s in updates), updates


@pytest.mark.parametrize("n", [2, 5])  # one statement each; one multi-row statement
def test_a_multi_row_decision_writes_every_task_and_records_each_change(
    tmp_path: Path, n: int
) -> None:
    store = make_store(tmp_path, n)
    revision = store.run_revision("r")
    assert store.apply(claims(store, n))
    tasks = store.get_tasks("r")
    assert [(t.state, t.attempt, t.started_at) for t in tasks] == [(TaskState.RUNNING, 1, NOW)] * n
    assert store.get_run("r").n_running == n
    assert sorted(store.changed_since("r", revision)) == [t.task_id for t in tasks]


@pytest.mark.parametrize("order", [["t03", "t00", "t04", "t01", "t02"], ["t03", "t00", "t04"]])
def test_tasks_queued_by_one_multi_row_decision_keep_the_order_of_its_writes(
    tmp_path: Path, order: list[str]
) -> None:
    # GIVEN a task queued first, then waiting tasks made ready by one decision, out of name order
    store = make_store(tmp_path, 6, TaskState.WAITING)
    first = store.get_task("r", "t05")
    assert store.apply(
        Decision("r", (TaskWrite(first.with_(state=TaskState.QUEUED), TaskState.WAITING, 0),))
    )
    writes = tuple(
        TaskWrite(store.get_task("r", t).with_(state=TaskState.QUEUED), TaskState.WAITING, 0)
        for t in order
    )
    assert store.apply(Decision("r", writes))
    # THEN the queue holds them after the first, in the order they were written
    assert [t.task_id for t in store.run_queue("r", 10)] == ["t05", *order]
    # AND a task queued later comes after them all (the counter moved past the batch)
    assert store.create_run(
        Run("s", "wf", "default", 1, RunState.RUNNING, {}, NOW, NOW, n_tasks=1),
        [TaskInstance("s", "u", TaskState.QUEUED)],
        concurrency=None,
    )
    rows = store._x("SELECT task_id FROM tasks WHERE state='queued' ORDER BY queued_seq").fetchall()
    assert [r[0] for r in rows] == ["t05", *order, "u"]


def test_a_decision_writing_one_task_twice_applies_its_writes_in_order(tmp_path: Path) -> None:
    # a multi-row statement writes a row once: such a decision keeps one statement per write
    store = make_store(tmp_path, 1)
    task = store.get_task("r", "t00")
    running = task.with_(state=TaskState.RUNNING, attempt=1)
    done = running.with_(state=TaskState.SUCCEEDED, ended_at=NOW)
    decision = Decision(
        "r", (TaskWrite(running, TaskState.QUEUED, 0), TaskWrite(done, TaskState.RUNNING, 1))
    )
    assert store.apply(decision)
    assert store.get_task("r", "t00").state is TaskState.SUCCEEDED
