"""Backfills in the SQLite state file: one row per backfill, its document as JSON, and the
columns its indexes need. A mixin of ``SqliteStore`` (it shares its connection, so a backfill
written in a turn commits with the turn)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from stratoflow.engine.backfill import Backfill, backfill_document, backfill_from_document
from stratoflow.errors import NotFound
from stratoflow.ports import BackfillStore

BACKFILL_SCHEMA = """
CREATE TABLE IF NOT EXISTS backfills (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, workflow TEXT NOT NULL, state TEXT NOT NULL,
    revision INTEGER NOT NULL, document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS backfills_by_workflow ON backfills (project, workflow);
CREATE INDEX IF NOT EXISTS backfills_active ON backfills (project, workflow)
    WHERE state IN ('running', 'paused');
"""


def _row_values(backfill: Backfill) -> tuple[str, str, str, str, int, str]:
    document = json.dumps(backfill_document(backfill), separators=(",", ":"))
    return (
        backfill.id, backfill.project, backfill.workflow, backfill.state.value,
        backfill.revision, document,
    )  # fmt: skip


def _backfill(row: sqlite3.Row) -> Backfill:
    return backfill_from_document(json.loads(row["document"]))


class SqliteBackfills(BackfillStore):
    def _x(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        raise NotImplementedError  # pragma: no cover - SqliteStore's

    def create_backfill(self, backfill: Backfill) -> bool:
        cursor = self._x(
            "INSERT OR IGNORE INTO backfills (id, project, workflow, state, revision, document) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            _row_values(backfill),
        )
        return cursor.rowcount == 1

    def get_backfill(self, backfill_id: str) -> Backfill:
        row = self._x("SELECT document FROM backfills WHERE id=?", (backfill_id,)).fetchone()
        if row is None:
            raise NotFound(f"backfill {backfill_id!r} not found")
        return _backfill(row)

    def put_backfill(self, backfill: Backfill, expect_revision: int) -> bool:
        backfill = backfill.with_(revision=expect_revision + 1)
        bid, _, _, state, revision, document = _row_values(backfill)
        cursor = self._x(
            "UPDATE backfills SET state=?, revision=?, document=? WHERE id=? AND revision=?",
            (state, revision, document, bid, expect_revision),
        )
        return cursor.rowcount == 1

    def list_backfills(
        self, project: str, workflow: str | None = None, limit: int = 50
    ) -> list[Backfill]:
        if workflow is None:
            rows = self._x(
                "SELECT document FROM backfills WHERE project=? ORDER BY rowid DESC LIMIT ?",
                (project, limit),
            ).fetchall()
        else:
            rows = self._x(
                "SELECT document FROM backfills WHERE project=? AND workflow=? "
                "ORDER BY rowid DESC LIMIT ?",
                (project, workflow, limit),
            ).fetchall()
        return [_backfill(r) for r in rows]

    def active_backfills(self, project: str, workflow: str) -> list[Backfill]:
        rows = self._x(
            "SELECT document FROM backfills WHERE project=? AND workflow=? "
            "AND state IN ('running', 'paused')",
            (project, workflow),
        ).fetchall()
        return [_backfill(r) for r in rows]

    def all_active_backfills(self) -> list[Backfill]:
        rows = self._x(
            "SELECT document FROM backfills WHERE state IN ('running', 'paused') ORDER BY rowid"
        ).fetchall()
        return [_backfill(r) for r in rows]
