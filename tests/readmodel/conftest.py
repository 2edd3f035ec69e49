"""Fixtures of the read-model tests: the same tests on SQLite and on the real PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432 (trust auth, user postgres; override with
STRATOFLOW_TEST_PG, a libpq URL of a database the user may CREATE DATABASE from). Each test
gets its own scratch database, dropped afterwards. If the server cannot be reached the
PostgreSQL cases are skipped locally, but fail when CI=true: a skip in CI would hide that
the SQL was never run against PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from stratoflow.readmodel import Database, ReadModel, connect

ADMIN_URL = os.environ.get("STRATOFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def admin_connection(url: str = ADMIN_URL) -> object:
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {url} is unreachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the PostgreSQL tests must run, not skip)")
        pytest.skip(message)


def scratch_url(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (its URL), dropped after the test."""
    admin = admin_connection()
    name = f"sf_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield scratch_url(ADMIN_URL, name)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "readmodel.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = connect(db_url)
    yield database
    database.close()


@pytest.fixture
def rm(db: Database) -> ReadModel:
    return ReadModel(db)
