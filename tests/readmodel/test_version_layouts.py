"""A workflow version's stored layout in the read model (SQLite and the real PostgreSQL):
kept compressed, once per (project, workflow, version, digest), never replaced, and added to
a database migrated before the table existed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from stratoflow.readmodel import Database, ReadModel
from stratoflow.readmodel._migrations import load_migrations, migrate

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DIGEST = "0" * 32


def _layout(n: int, shift: float = 0.0) -> str:
    tasks = [f"task_{i:05d}" for i in range(n)]
    return json.dumps({"format": 1, "tasks": tasks, "x": [i * 10.5 + shift for i in range(n)]})


def test_a_stored_layout_reads_back_as_written(rm: ReadModel) -> None:
    text = _layout(2000)
    assert rm.version_layout("p", "etl", 1, DIGEST) is None
    assert rm.store_version_layout("p", "etl", 1, DIGEST, text, AT) is True
    assert rm.version_layout("p", "etl", 1, DIGEST) == text


def test_the_column_holds_it_compressed(rm: ReadModel) -> None:
    text = _layout(2000)
    rm.store_version_layout("p", "etl", 1, DIGEST, text, AT)
    [row] = rm.db.query("SELECT layout, chars FROM version_layouts")
    assert int(row["chars"]) == len(text)
    assert len(row["layout"]) < len(text) / 3  # base64 of zlib: far smaller than the JSON


def test_a_second_write_keeps_the_first(rm: ReadModel) -> None:
    first, second = _layout(10), _layout(10, shift=1.0)
    assert rm.store_version_layout("p", "etl", 1, DIGEST, first, AT)
    assert rm.store_version_layout("p", "etl", 1, DIGEST, second, AT) is False
    assert rm.version_layout("p", "etl", 1, DIGEST) == first


def test_each_key_part_names_another_layout(rm: ReadModel) -> None:
    rm.store_version_layout("p", "etl", 1, DIGEST, _layout(3), AT)
    assert rm.version_layout("q", "etl", 1, DIGEST) is None
    assert rm.version_layout("p", "other", 1, DIGEST) is None
    assert rm.version_layout("p", "etl", 2, DIGEST) is None
    assert rm.version_layout("p", "etl", 1, "1" * 32) is None
    assert rm.store_version_layout("p", "etl", 2, DIGEST, _layout(4), AT)
    assert rm.version_layout("p", "etl", 2, DIGEST) == _layout(4)
    assert rm.version_layout("p", "etl", 1, DIGEST) == _layout(3)


def test_the_migration_adds_the_table_to_an_older_database(db: Database) -> None:
    # GIVEN a database migrated up to the migration before this one
    migrations = load_migrations()
    [mine] = [m for m in migrations if m.name == "version_layouts"]
    migrate(db, migrations[: mine.version - 1])
    assert "version_layouts" not in _tables(db)
    # WHEN the rest is applied, THEN the table is there and keeps a layout
    assert mine.version in migrate(db)
    rm = ReadModel(db)
    assert rm.store_version_layout("p", "etl", 1, DIGEST, _layout(2), AT)
    assert rm.version_layout("p", "etl", 1, DIGEST) == _layout(2)


def _tables(db: Database) -> set[str]:
    if db.dialect == "sqlite":
        rows = db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = db.query("SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'")
    return {r["name"] for r in rows}
