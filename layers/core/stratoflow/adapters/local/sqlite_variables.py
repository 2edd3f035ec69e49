"""A project's variables in the SQLite state file (a mixin of ``SqliteStore``: it shares its
connection and transactions)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from stratoflow.ports import VariableStore
from stratoflow.variables import MAX_VARIABLES, Variable, too_many

VARIABLE_SCHEMA = """
CREATE TABLE IF NOT EXISTS variables (
    project TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    updated_at TEXT NOT NULL, updated_by TEXT NOT NULL, PRIMARY KEY (project, name)
) WITHOUT ROWID;
"""

_BATCH = 500  # names per IN (...) query, well under SQLite's bound of parameters


def _variable(row: sqlite3.Row) -> Variable:
    return Variable(
        row["project"], row["name"], row["value"], datetime.fromisoformat(row["updated_at"]),
        row["updated_by"],
    )  # fmt: skip


class SqliteVariables(VariableStore):
    def _x(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        raise NotImplementedError  # pragma: no cover - SqliteStore's

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError  # pragma: no cover - SqliteStore's

    def put_variable(self, variable: Variable) -> bool:
        with self.transaction():
            exists = self._x(
                "SELECT 1 FROM variables WHERE project=? AND name=?",
                (variable.project, variable.name),
            ).fetchone()
            if not exists:
                (count,) = self._x(
                    "SELECT count(*) FROM variables WHERE project=?", (variable.project,)
                ).fetchone()
                if count >= MAX_VARIABLES:
                    raise too_many(variable.project)
            self._x(
                "INSERT OR REPLACE INTO variables VALUES (?, ?, ?, ?, ?)",
                (variable.project, variable.name, variable.value,
                 variable.updated_at.isoformat(), variable.updated_by),
            )  # fmt: skip
        return not exists

    def get_variable(self, project: str, name: str) -> Variable | None:
        row = self._x(
            "SELECT * FROM variables WHERE project=? AND name=?", (project, name)
        ).fetchone()
        return None if row is None else _variable(row)

    def variable_values(self, project: str, names: Collection[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(sorted(set(names)), _BATCH):
            marks = ",".join("?" * len(chunk))
            rows = self._x(
                f"SELECT name, value FROM variables WHERE project=? AND name IN ({marks})",  # noqa: S608
                (project, *chunk),
            )
            found.update((r["name"], r["value"]) for r in rows)
        return found

    def list_variables(self, project: str) -> list[Variable]:
        rows = self._x("SELECT * FROM variables WHERE project=? ORDER BY name", (project,))
        return [_variable(r) for r in rows]

    def delete_variable(self, project: str, name: str) -> bool:
        with self.transaction():
            gone = self._x(
                "DELETE FROM variables WHERE project=? AND name=?", (project, name)
            ).rowcount
        return bool(gone)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
