"""Named connections on the local runtime: a table of the home's state database, made the way
the alert tables are (``CREATE ... IF NOT EXISTS`` on open, one transaction per change)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

from stratoflow.adapters.local._sqlite import SqliteFile
from stratoflow.connections import (
    LOCAL_TYPES,
    MAX_CONNECTIONS,
    Connection,
    MissingConnection,
    TestOutcome,
)
from stratoflow.errors import InvalidInput, Problem
from stratoflow.ports import Clock
from stratoflow.secrets import Masker, MissingSecret, SecretSource, SecretUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS connections (
    project TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, settings TEXT NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (project, name)
);
"""


def _connection(row: sqlite3.Row) -> Connection:
    return Connection(row["project"], row["name"], row["type"], json.loads(row["settings"]))


class ConnectionStore(SqliteFile):
    """The ``connections`` table of a home's state database."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, SCHEMA)

    def put(self, connection: Connection, now: datetime) -> bool:
        """Create or replace; True if it is new."""
        with self._tx() as conn:
            exists = conn.execute(
                "SELECT 1 FROM connections WHERE project=? AND name=?",
                (connection.project, connection.name),
            ).fetchone()
            if not exists:
                (count,) = conn.execute(
                    "SELECT count(*) FROM connections WHERE project=?", (connection.project,)
                ).fetchone()
                if count >= MAX_CONNECTIONS:
                    raise InvalidInput(
                        [Problem("name", f"project {connection.project} has {count} "
                                 f"connections; at most {MAX_CONNECTIONS}")]
                    )  # fmt: skip
            conn.execute(
                "INSERT OR REPLACE INTO connections VALUES (?, ?, ?, ?, ?)",
                (connection.project, connection.name, connection.type,
                 json.dumps(dict(connection.settings)), now.isoformat()),
            )  # fmt: skip
        return not exists

    def get(self, project: str, name: str) -> Connection:
        row = (
            self._conn()
            .execute("SELECT * FROM connections WHERE project=? AND name=?", (project, name))
            .fetchone()
        )
        if row is None:
            raise MissingConnection(project, name)
        return _connection(row)

    def list(self, project: str) -> list[Connection]:
        rows = self._conn().execute(
            "SELECT * FROM connections WHERE project=? ORDER BY name", (project,)
        )
        return [_connection(r) for r in rows]

    def delete(self, project: str, name: str) -> None:
        with self._tx() as conn:
            gone = conn.execute(
                "DELETE FROM connections WHERE project=? AND name=?", (project, name)
            ).rowcount
        if not gone:
            raise MissingConnection(project, name)


class LocalConnections:
    """The connections of a local runtime as the API serves them: the store, and the test
    (run here, in the server, which is where the local runtime's sql tasks connect from)."""

    def __init__(self, store: ConnectionStore, secrets: SecretSource, clock: Clock) -> None:
        self.store = store
        self._secrets = secrets
        self._clock = clock

    def now(self) -> datetime:
        return self._clock.now()

    def test(self, connection: Connection) -> TestOutcome:
        from stratoflow.taskexec import sql  # the drivers: only when a test asks for them

        if connection.type not in LOCAL_TYPES:
            return TestOutcome(
                False, f"connections of type {connection.type!r} cannot be tested here: the "
                "local runtime runs postgresql and mysql connections"
            )  # fmt: skip
        try:
            settings = connection.resolved(self._secrets)
        except (MissingSecret, SecretUnavailable) as exc:
            return TestOutcome(False, str(exc))
        masker = Masker(v for k, v in settings.items() if k == "password" and v)
        try:
            # in_server: never with the password of the server's own database (PGPASSWORD,
            # ~/.pgpass), which libpq would send to the host this connection names
            return TestOutcome(True, sql.check(connection.type, settings, in_server=True))
        except Exception as exc:  # what the driver says is the answer, not a server error
            text = " ".join(str(exc).split())[:2000] or type(exc).__name__
            return TestOutcome(False, masker.text(f"cannot connect: {text}"))
