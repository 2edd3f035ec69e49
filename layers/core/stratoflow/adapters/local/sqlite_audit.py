"""The audit journal in the SQLite state file (a mixin of ``SqliteStore``: it shares its
connection and transactions). See :mod:`stratoflow.audit`.

``seq`` grows with every entry settled (AUTOINCREMENT: never reused, even after a delete),
so the local feed projects the settled entries past the position it recorded, in the same
read model transaction as that position: a read model that was down, or a process that died
before projecting, loses none. A pending intent has ``expires`` set (UTC, fixed width: the
text sorts as the instants do); settling clears it and takes a new ``seq``.

The journal is bounded: once the read model's transaction that records the feed's position
has committed, the settled entries at or below it are removed (``audit_forget``); an entry
not yet projected is never removed. If the removal fails or the process dies before it, the
entries stay below the position (never projected twice; a duplicate would be kept once by
id anyway) and the next pass of the feed removes them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from stratoflow.audit import INTENT_TTL, encode_entry
from stratoflow.readmodel import AuditEntry

AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, entry TEXT NOT NULL,
    expires TEXT
);
CREATE INDEX IF NOT EXISTS audit_journal_pending ON audit_journal (expires)
WHERE expires IS NOT NULL;
"""


def _when(value: datetime) -> str:
    """An instant as text that sorts as instants do, whatever offset the clock gave (text of
    ``+05:00`` and ``+00:00`` times does not): UTC, always with microseconds."""
    if value.tzinfo is None:
        raise ValueError("naive datetime reached the audit journal")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


class SqliteAudit:
    def _x(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        raise NotImplementedError  # pragma: no cover - SqliteStore's

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError  # pragma: no cover - SqliteStore's

    def _tuples(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # pragma: no cover - SqliteStore's

    def _changed(self, kind: str, key: Any, *also: str) -> None:
        raise NotImplementedError  # pragma: no cover - SqliteStore's

    def audit_begin(self, intent: AuditEntry) -> None:
        text = encode_entry(intent)
        with self.transaction():
            self._x(
                "INSERT OR IGNORE INTO audit_journal (id, entry, expires) VALUES (?, ?, ?)",
                (intent.id, text, _when(intent.at + INTENT_TTL)),
            )

    def audit_settle(self, entry: AuditEntry) -> None:
        text = encode_entry(entry)
        with self.transaction():
            self._x("DELETE FROM audit_journal WHERE id=? AND expires IS NOT NULL", (entry.id,))
            self._x(
                "INSERT OR IGNORE INTO audit_journal (id, entry) VALUES (?, ?)", (entry.id, text)
            )
            self._changed("audit", entry.id)  # the local feed projects it

    def audit_withdraw(self, entry_id: str) -> None:
        with self.transaction():
            self._x("DELETE FROM audit_journal WHERE id=? AND expires IS NOT NULL", (entry_id,))

    def audit_settle_expired(self, now: datetime) -> int:
        """Settle, as they stand ("outcome unknown"), the intents pending past their expiry:
        their request's process died or could not record the outcome. Returns how many."""
        when = _when(now)
        if not self._tuples(
            "SELECT 1 FROM audit_journal WHERE expires IS NOT NULL AND expires < ? LIMIT 1",
            (when,),
        ):
            return 0  # the usual case: a read, no write lock taken
        with self.transaction():
            rows = self._x(
                "SELECT id, entry FROM audit_journal WHERE expires IS NOT NULL AND expires < ?",
                (when,),
            ).fetchall()
            for entry_id, text in rows:
                self._x("DELETE FROM audit_journal WHERE id=?", (entry_id,))
                self._x("INSERT INTO audit_journal (id, entry) VALUES (?, ?)", (entry_id, text))
        return len(rows)

    def audit_forget(self, upto: int) -> int:
        """Remove the settled entries at or below ``upto``, the position the read model has
        recorded (in the transaction that wrote them): it has them, the journal no longer
        needs them. Pending intents stay. Returns how many were removed."""
        if not self._tuples(
            "SELECT 1 FROM audit_journal WHERE seq <= ? AND expires IS NULL LIMIT 1", (upto,)
        ):
            return 0  # the usual case between writes: a read, no write lock taken
        with self.transaction():
            return int(
                self._x(
                    "DELETE FROM audit_journal WHERE seq <= ? AND expires IS NULL", (upto,)
                ).rowcount
            )

    def feed_audit(self, after: int, limit: int) -> tuple[int, list[str], bool]:
        """Settled entries past ``after`` (their JSON text, at most ``limit``): the position
        reached (from 0 if the journal has never reached ``after``: a position of another
        store), the entries, and whether more follow."""
        # the highest seq ever given (AUTOINCREMENT's), not max(seq): the entries below the
        # position are removed once projected
        end = self._audit_end()
        if end < after:
            after = 0
        rows = self._tuples(
            "SELECT seq, entry FROM audit_journal WHERE seq > ? AND expires IS NULL "
            "ORDER BY seq LIMIT ?",
            (after, limit),
        )
        if not rows:
            return after, [], False
        last = int(rows[-1][0])
        return last, [r[1] for r in rows], len(rows) == limit and last < end

    def _audit_end(self) -> int:
        rows = self._tuples("SELECT seq FROM sqlite_sequence WHERE name='audit_journal'")
        return int(rows[0][0] or 0) if rows else 0
