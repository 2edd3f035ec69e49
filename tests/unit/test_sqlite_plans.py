"""The SQLite store's hot queries stay O(what they return) as a run grows: each walks a small
partial index instead of a run's whole task list (what W4's flat per-task cost rests on)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.local.sqlite_store import SqliteStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "state.db")


def query_plan(store: SqliteStore, call: Callable[[], object]) -> list[str]:
    """The plan SQLite chooses for the one statement ``call`` runs."""
    seen: list[tuple[str, Sequence[Any]]] = []
    real = store._x
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "_x", lambda sql, args=(): seen.append((sql, args)) or real(sql, args))
        call()
    [(sql, args)] = seen
    return [row[3] for row in real(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()]


def test_the_queue_is_read_in_order_from_its_index_and_stops_at_the_limit(
    store: SqliteStore,
) -> None:
    steps = query_plan(store, lambda: store.queued_tasks(10))
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
