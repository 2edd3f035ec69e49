"""``SqliteStore.attempts_of``: a delta's attempts in one read (``RunChangeLog``), the same as
``list_attempts`` asked once per task."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.contract.test_state_store import at, seed

from stratoflow.adapters.local import sqlite_store
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.ports import Attempt


@pytest.mark.parametrize("chunk", [500, 2])  # one IN list; several, merged in order
def test_attempts_of_some_tasks_are_those_list_attempts_gives_task_by_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(sqlite_store, "_CHUNK", chunk)
    store = SqliteStore(tmp_path / "state.db")
    tasks = ["e", "a", "d", "b", "c"]
    seed(store, "run-1", tasks)
    seed(store, "run-2", ["a"])
    for i, task in enumerate(tasks):
        for n in range(1, 4 - i % 3):  # 3, 2 or 1 failed attempts, then one running
            store.finish_attempt(
                Attempt("run-1", task, n, "failed", at(n), ended_at=at(n + 0.5), exit_code=1)
            )
        store.start_attempt(Attempt("run-1", task, 4 - i % 3, "running", at(5)))
    store.start_attempt(Attempt("run-2", "a", 1, "running", at(5)))
    try:
        asked = ["d", "a", "c", "nothing"]
        expected = [a for t in sorted(asked) for a in store.list_attempts("run-1", t)]
        assert len(expected) == 8
        assert store.attempts_of("run-1", asked) == expected
        assert store.attempts_of("run-1", []) == []
        assert store.attempts_of("run-3", ["a"]) == []
        assert store.attempts_of("run-1", tasks) == store.list_attempts("run-1")
    finally:
        store.close()
