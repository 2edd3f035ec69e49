"""The SQLite store builds a task read from its row without the dataclass's ``__init__``
(the hot path decodes ~5 rows a task); what it builds is what ``__init__`` builds."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import Run, RunState, TaskInstance, TaskState, Upstream
from stratoflow.errors import NotFound

NOW = datetime(2026, 1, 1, 8, 30, 15, 123456, tzinfo=UTC)

TASKS = [
    TaskInstance("r", "plain"),
    TaskInstance(
        "r", "full", TaskState.RUNNING, attempt=3, attempt_base=1,
        upstream=Upstream(succeeded=2, failed=1, skipped=4), ready_at=NOW, deadline=NOW,
        started_at=NOW, ended_at=NOW, outputs={"rows": 7, "names": ["a"]}, error="boom",
        priority=-5, propagating=True, pool="default/db", pool_rank=None, pool_slots=2,
    ),
    TaskInstance("r", "pooled", TaskState.QUEUED, pool="/gpu", pool_rank=3, pool_slots=1),
]  # fmt: skip


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.task_id)
def test_a_task_read_back_is_the_task_written(tmp_path: Path, task: TaskInstance) -> None:
    store = SqliteStore(tmp_path / "state.db")
    try:
        run = Run("r", "wf", "default", 1, RunState.RUNNING, {}, NOW, NOW, n_tasks=1)
        assert store.create_run(run, [task], concurrency=None)
        read = store.get_task("r", task.task_id)
        assert read == task
        assert hash(read.upstream) == hash(task.upstream)
        assert type(read) is TaskInstance
        assert type(read.state) is TaskState
        assert vars(read) == vars(task)  # every field set, nothing else
        # and it behaves as one: copies, frozen
        assert read.with_(attempt=9).attempt == 9
        with pytest.raises(AttributeError):
            read.attempt = 1  # type: ignore[misc]
    finally:
        store.close()


def test_a_time_is_written_as_its_utc_text_whether_remembered_or_not() -> None:
    """``_ts`` remembers the text of the times it wrote lately: an instant has one text in
    any zone, a naive time is still refused, and forgetting (when full) changes nothing."""
    from datetime import timedelta, timezone

    from stratoflow.adapters.local import sqlite_store

    at = datetime(2026, 1, 1, 10, 0, 0, 5, tzinfo=UTC)
    assert sqlite_store._ts(at) == "2026-01-01T10:00:00.000005Z"
    plus_two = at.astimezone(timezone(timedelta(hours=2)))
    assert sqlite_store._ts(plus_two) == "2026-01-01T10:00:00.000005Z"
    with pytest.raises(ValueError, match="naive"):
        sqlite_store._ts(at.replace(tzinfo=None))
    texts = [sqlite_store._ts(at + timedelta(seconds=i)) for i in range(sqlite_store._TS_KEPT + 10)]
    assert len(sqlite_store._TS_TEXT) <= sqlite_store._TS_KEPT
    assert texts[-1] == (at + timedelta(seconds=sqlite_store._TS_KEPT + 9)).isoformat(
        timespec="microseconds"
    ).replace("+00:00", "Z")
    assert sqlite_store._ts(at) == "2026-01-01T10:00:00.000005Z"


def test_a_runs_state_read_alone_is_the_state_of_the_run_read_whole(tmp_path: Path) -> None:
    """``run_state`` (what ``stratoflow run`` polls after every turn) answers what
    ``get_run`` does, in and out of a transaction, and refuses an unknown run alike."""
    store = SqliteStore(tmp_path / "state.db")
    try:
        run = Run("r", "wf", "default", 1, RunState.RUNNING, {}, NOW, NOW, n_tasks=1)
        assert store.create_run(run, [TaskInstance("r", "t")], concurrency=None)
        assert store.run_state("r") is store.get_run("r").state is RunState.RUNNING
        ended = run.with_(state=RunState.SUCCEEDED, ended_at=NOW)
        with store.transaction():
            store.get_run("r")  # cached in the transaction, then written
            assert store.put_run(ended, RunState.RUNNING)
            assert store.run_state("r") is RunState.SUCCEEDED
        assert store.run_state("r") is store.get_run("r").state is RunState.SUCCEEDED
        for state in RunState:  # every state's text reads back as that state
            store._x("UPDATE runs SET state=? WHERE id='r'", (state.value,))
            assert store.run_state("r") is state
        with pytest.raises(NotFound):
            store.run_state("missing")
        with pytest.raises(NotFound):
            store.get_run("missing")
    finally:
        store.close()
