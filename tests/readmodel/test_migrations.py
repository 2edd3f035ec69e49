"""Migrations: applied in order, recorded, idempotent, atomic, and safe to run concurrently.

Parametrised over SQLite and the real PostgreSQL server (see conftest.py).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from stratoflow.readmodel import Database, MigrationError, connect, load_migrations, migrate

TABLES = ["workflows", "workflow_versions", "runs", "task_instances", "attempts", "audit_log"]


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_fresh_database_gets_every_migration_once(db: Database) -> None:
    # GIVEN an empty database WHEN migrated twice
    first = migrate(db)
    second = migrate(db)
    # THEN the package's migrations were applied once, in order, and recorded
    shipped = load_migrations()
    assert first == [m.version for m in shipped] == list(range(1, len(shipped) + 1))
    assert second == []
    rows = db.query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"], r["checksum"]) for r in rows] == [
        (m.version, m.name, m.checksum) for m in shipped
    ]
    for table in TABLES:
        assert db.query(f"SELECT COUNT(*) AS n FROM {table}") == [{"n": 0}]


def test_migrations_apply_in_number_order(db: Database, tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "m",
        {
            "0002_add.sql": "ALTER TABLE t ADD COLUMN b TEXT;\n",
            "0001_create.sql": "CREATE TABLE t (a TEXT);\n-- a comment; with a semicolon\n",
        },
    )
    assert migrate(db, load_migrations(folder)) == [1, 2]
    db.execute("INSERT INTO t (a, b) VALUES (:a, :b)", {"a": "x", "b": "y"})
    assert db.query("SELECT a, b FROM t") == [{"a": "x", "b": "y"}]


def test_a_failing_migration_changes_nothing_and_names_its_file(
    db: Database, tmp_path: Path
) -> None:
    folder = _write(
        tmp_path / "m",
        {
            "0001_ok.sql": "CREATE TABLE t (a TEXT);\n",
            "0002_bad.sql": "CREATE TABLE u (a TEXT);\nINSERT INTO no_such_table VALUES (1);\n",
        },
    )
    with pytest.raises(MigrationError, match=r"0002_bad\.sql"):
        migrate(db, load_migrations(folder))
    # 0001 stays applied; 0002's first statement was rolled back with it
    assert [r["version"] for r in db.query("SELECT version FROM schema_migrations")] == [1]
    with pytest.raises(Exception):  # noqa: B017 - each driver has its own error type
        db.query("SELECT * FROM u")


def test_an_edited_migration_is_refused(db: Database, tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", {"0001_create.sql": "CREATE TABLE t (a TEXT);\n"})
    migrate(db, load_migrations(folder))
    (folder / "0001_create.sql").write_text("CREATE TABLE t (a TEXT, b TEXT);\n")
    with pytest.raises(MigrationError, match=r"0001_create\.sql was changed"):
        migrate(db, load_migrations(folder))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"1_x.sql": "SELECT 1;\n"}, "named NNNN_name.sql"),
        (
            {"0001_a.sql": "SELECT 1;\n", "0003_c.sql": "SELECT 1;\n"},
            r"without gaps, found \[1, 3\]",
        ),
    ],
)
def test_badly_named_or_numbered_files_are_refused(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    with pytest.raises(MigrationError, match=message):
        load_migrations(_write(tmp_path / "m", files))


def test_a_statement_without_its_semicolon_is_refused(tmp_path: Path) -> None:
    (migration,) = load_migrations(_write(tmp_path / "m", {"0001_a.sql": "SELECT 1;\nSELECT 2\n"}))
    with pytest.raises(MigrationError, match="does not end with ';'"):
        migration.statements()


def test_two_processes_migrating_together_apply_each_file_once(db_url: str) -> None:
    # GIVEN two independent connections (as two server processes would have)
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        database = connect(db_url)
        try:
            barrier.wait()
            results.append(migrate(database))
        except BaseException as exc:
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # THEN neither failed and, between them, each migration was applied exactly once
    assert errors == []
    assert sorted(v for r in results for v in r) == [m.version for m in load_migrations()]
