"""Fixtures of the sql task tests: a scratch database on the real PostgreSQL server
(127.0.0.1:5432, see tests/readmodel/conftest.py) and on the real MariaDB server (127.0.0.1:3306,
root without a password; override with STRATOFLOW_TEST_MYSQL, a mysql:// URL). Locally a server
that cannot be reached skips its tests; with CI=true it fails them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.connections import validate_connection
from tests.readmodel.conftest import ADMIN_URL, admin_connection, scratch_url

MYSQL_URL = os.environ.get("STRATOFLOW_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")


def _unreachable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: the sql tests must run, not skip)")
    pytest.skip(message)


@pytest.fixture
def pg_db() -> Iterator[str]:
    """A fresh PostgreSQL database (its URL, no password: trust auth), dropped afterwards."""
    admin = admin_connection()
    name = f"sf_sql_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    try:
        yield scratch_url(ADMIN_URL, name)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


def mysql_admin() -> object:
    import pymysql

    parts = urlsplit(MYSQL_URL)
    try:
        return pymysql.connect(
            host=parts.hostname, port=parts.port or 3306, user=parts.username or "root",
            password=parts.password or "", connect_timeout=3, autocommit=True,
        )  # fmt: skip
    except pymysql.err.OperationalError as exc:
        _unreachable(f"MySQL/MariaDB at {parts.hostname}:{parts.port} is unreachable: {exc}")
        raise


@pytest.fixture
def mysql_db() -> Iterator[str]:
    """A fresh MariaDB database (its mysql:// URL), dropped afterwards."""
    admin = mysql_admin()
    name = f"sf_sql_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(f"CREATE DATABASE `{name}`")
    parts = urlsplit(MYSQL_URL)
    try:
        yield f"mysql://{parts.username or 'root'}@{parts.hostname}:{parts.port or 3306}/{name}"
    finally:
        with admin.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()  # type: ignore[attr-defined]


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(tmp_path / "home")
    yield rt
    rt.close()


def add_connection(rt: LocalRuntime, name: str, type_: str, **settings: str) -> None:
    connection = validate_connection("default", name, type_, settings)
    rt.connections.put(connection, rt.clock.now())
