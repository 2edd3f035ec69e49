"""Numbered SQL migrations, shipped as package data and applied in order.

``migrations/NNNN_name.sql`` files are applied in number order, each in its own transaction
together with its row in ``schema_migrations`` (version, name, checksum, applied_at), under
the dialect's migration lock, so two processes starting together apply each file once.
Applying again is a no-op. A file changed after it was applied is refused (its checksum no
longer matches): write a new migration instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from importlib.resources.abc import Traversable

from stratoflow.readmodel._db import Database

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

SCHEMA_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL PRIMARY KEY, "
    "name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


class MigrationError(RuntimeError):
    """A migration cannot be applied; the message names the file."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """Split on ';' at the end of a line (the Data API runs one statement per call)."""
        lines = [ln for ln in self.sql.splitlines() if not ln.lstrip().startswith("--")]
        out, current = [], []
        for line in lines:
            current.append(line)
            if line.rstrip().endswith(";"):
                out.append("\n".join(current).strip().removesuffix(";").strip())
                current = []
        if "\n".join(current).strip():
            raise MigrationError(f"{self.filename}: the last statement does not end with ';'")
        return [s for s in out if s]

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def load_migrations(folder: Traversable | None = None) -> list[Migration]:
    """The migrations in ``folder`` (default: the package's ``migrations/``), in order."""
    found: list[Migration] = []
    root = folder if folder is not None else resources.files("stratoflow.readmodel") / "migrations"
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE.match(entry.name)
        if match is None:
            raise MigrationError(f"{entry.name}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


def applied(db: Database) -> dict[int, str]:
    """version -> checksum of what this database has applied."""
    db.execute(SCHEMA_MIGRATIONS)
    rows = db.query("SELECT version, checksum FROM schema_migrations")
    return {int(r["version"]): str(r["checksum"]) for r in rows}


def migrate(db: Database, migrations: list[Migration] | None = None) -> list[int]:
    """Apply what is missing, in order; returns the versions applied now."""
    todo = load_migrations() if migrations is None else migrations
    done: list[int] = []
    for migration in todo:
        with db.transaction():
            db.lock_for_migrations()
            have = applied(db)
            if migration.version in have:
                if have[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"{migration.filename} was changed after it was applied "
                        "(checksum differs); add a new migration instead"
                    )
                continue
            for statement in migration.statements():
                try:
                    db.execute(statement)
                except Exception as exc:
                    raise MigrationError(f"{migration.filename}: {exc}") from exc
            db.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                "VALUES (:version, :name, :checksum, :at)",
                {
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                    "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                },
            )
            done.append(migration.version)
    return done
