"""Dependency tasks' reads and wake-up index in the SQLite state file. A mixin of
``SqliteStore`` (it shares its connection, so a wait recorded in a turn commits with it)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from stratoflow.engine import Run
from stratoflow.ports import DependencyStore

DEPENDENCY_SCHEMA = """
CREATE INDEX IF NOT EXISTS runs_by_logical_date ON runs (project, workflow, logical_date);
CREATE TABLE IF NOT EXISTS dependency_waits (
    project TEXT NOT NULL, workflow TEXT NOT NULL, run_id TEXT NOT NULL, task_id TEXT NOT NULL,
    PRIMARY KEY (project, workflow, run_id, task_id)
) WITHOUT ROWID;
"""


class SqliteDependencies(DependencyStore):
    _local: threading.local  # SqliteStore's: ``waiters``, this transaction's reads, or None

    def _x(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        raise NotImplementedError  # pragma: no cover - SqliteStore's

    def _forget_waiters(self) -> None:
        """Before a write to the waits: drop what this transaction read of them."""
        waiters: dict[Any, list[tuple[str, str]]] | None = getattr(self._local, "waiters", None)
        if waiters:
            waiters.clear()

    def runs_by_logical_date(
        self, project: str, workflow: str, start: datetime, end: datetime, limit: int
    ) -> list[Run]:
        from stratoflow.adapters.local.sqlite_store import _RUN_COLS, _run, _ts

        rows = self._x(
            f"SELECT {_RUN_COLS} FROM runs WHERE project=? AND workflow=? "  # noqa: S608
            "AND logical_date>=? AND logical_date<? ORDER BY created_at DESC, seq DESC LIMIT ?",
            (project, workflow, _ts(start), _ts(end), limit),
        ).fetchall()
        return [_run(r) for r in rows]

    def add_dependency_waits(
        self, run_id: str, task_id: str, upstreams: Sequence[tuple[str, str]]
    ) -> None:
        self._forget_waiters()
        for project, workflow in upstreams:
            self._x(
                "INSERT OR IGNORE INTO dependency_waits VALUES (?, ?, ?, ?)",
                (project, workflow, run_id, task_id),
            )

    def dependency_waiters(self, project: str, workflow: str, limit: int) -> list[tuple[str, str]]:
        # read once per transaction (a turn asks after every task's end: most find nobody)
        waiters: dict[Any, list[tuple[str, str]]] | None = getattr(self._local, "waiters", None)
        key = (project, workflow, limit)
        if waiters is not None and (cached := waiters.get(key)) is not None:
            return list(cached)
        rows = self._x(
            "SELECT run_id, task_id FROM dependency_waits WHERE project=? AND workflow=? LIMIT ?",
            (project, workflow, limit),
        ).fetchall()
        found = [(r["run_id"], r["task_id"]) for r in rows]
        if waiters is not None:
            waiters[key] = found
        return list(found)

    def remove_dependency_waits(
        self, run_id: str, task_id: str, upstreams: Sequence[tuple[str, str]]
    ) -> None:
        self._forget_waiters()
        for project, workflow in upstreams:
            self._x(
                "DELETE FROM dependency_waits WHERE project=? AND workflow=? AND run_id=? "
                "AND task_id=?",
                (project, workflow, run_id, task_id),
            )
