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

DECODED_MAX = 64  # decoded backfills kept (active ones are few)
BACKFILL_SCHEMA = """
CREATE TABLE IF NOT EXISTS backfills (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, workflow TEXT NOT NULL, state TEXT NOT NULL,
    revision INTEGER NOT NULL, document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS backfills_by_workflow ON backfills (project, workflow);
DROP INDEX IF EXISTS backfills_active;
CREATE INDEX IF NOT EXISTS backfills_unended ON backfills (project, workflow)
    WHERE state IN ('running', 'paused', 'cancelling');
"""
# the states of a backfill until it ends (``BackfillState.terminal``), in the queries below: a
# cancelling one still stops its runs, so a run's end and the reconciler's pass find it


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
        text: str = row["document"]
        cached = self._decoded().get(backfill_id)
        if cached is not None and cached[0] == text:
            return cached[1]  # the same document: the same backfill, not decoded again
        return self._remember(text, backfill_from_document(json.loads(text)))

    def _decoded(self) -> dict[str, tuple[str, Backfill]]:
        """The backfills last read or written, by id, with their documents: each is decoded
        once per change (its document is the whole backfill, and a run's end reads it)."""
        cache: dict[str, tuple[str, Backfill]] | None = self.__dict__.get("_backfills_decoded")
        if cache is None:
            cache = self.__dict__.setdefault("_backfills_decoded", {})
        return cache

    def _remember(self, text: str, backfill: Backfill) -> Backfill:
        cache = self._decoded()
        if len(cache) >= DECODED_MAX and backfill.id not in cache:
            cache.clear()
        cache[backfill.id] = (text, backfill)
        return backfill

    def put_backfill(self, backfill: Backfill, expect_revision: int) -> bool:
        backfill = backfill.with_(revision=expect_revision + 1)
        bid, _, _, state, revision, document = _row_values(backfill)
        cursor = self._x(
            "UPDATE backfills SET state=?, revision=?, document=? WHERE id=? AND revision=?",
            (state, revision, document, bid, expect_revision),
        )
        if cursor.rowcount != 1:
            return False
        self._remember(document, backfill)
        return True

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
            "AND state IN ('running', 'paused', 'cancelling')",
            (project, workflow),
        ).fetchall()
        return [_backfill(r) for r in rows]

    def backfills_waiting_for(self, project: str, workflow: str, run_id: str) -> list[str]:
        rows = self._x(
            "SELECT DISTINCT b.id FROM backfills b, json_each(b.document, '$.dates') d "
            "WHERE b.project=? AND b.workflow=? "
            "AND b.state IN ('running', 'paused', 'cancelling') "
            "AND json_extract(d.value, '$.run_id') = ?",
            (project, workflow, run_id),
        ).fetchall()
        return [r[0] for r in rows]

    def all_active_backfills(self) -> list[Backfill]:
        rows = self._x(
            "SELECT document FROM backfills WHERE state IN ('running', 'paused', 'cancelling') "
            "ORDER BY rowid"
        ).fetchall()
        return [_backfill(r) for r in rows]
