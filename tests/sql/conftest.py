"""Fixtures of the sql task tests: a scratch database on the real PostgreSQL server
(127.0.0.1:5432, see tests/readmodel/conftest.py) and on a real MariaDB server that the tests
start themselves, once per session, from Debian's ``mariadb-server`` (``mariadb-install-db``
into a temporary directory, then ``mariadbd`` on a free port of 127.0.0.1, root without a
password; ``make test`` installs those binaries, ``mariadb-server-core``, when they are
missing). STRATOFLOW_TEST_MYSQL, a mysql:// URL of a server the user may CREATE DATABASE on,
uses that server instead. Locally a server that cannot be reached or started skips its tests;
with CI=true it fails them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.connections import validate_connection
from tests.readmodel.conftest import ADMIN_URL, admin_connection, scratch_url

MYSQL_URL = os.environ.get("STRATOFLOW_TEST_MYSQL", "")
# where Debian's mariadb-server(-core) puts them; /usr/sbin is not on every user's PATH
SERVER_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])


def _unreachable(message: str) -> NoReturn:
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _connect(url: str) -> object:
    import pymysql

    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname, port=parts.port or 3306, user=parts.username or "root",
        password=parts.password or "", connect_timeout=3, autocommit=True,
    )  # fmt: skip


def _start_mariadb(base: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Initialise a data directory under ``base`` and start ``mariadbd`` on it: the server's
    process and its URL, once it answers."""
    import pymysql

    server = shutil.which("mariadbd", path=SERVER_PATH) or shutil.which("mysqld", path=SERVER_PATH)
    install = shutil.which("mariadb-install-db", path=SERVER_PATH)
    if server is None or install is None:
        _unreachable(
            "MariaDB cannot be started: Debian's mariadb-server is not installed "
            "(`make mariadb`: apt-get install mariadb-server-core; or set STRATOFLOW_TEST_MYSQL)"
        )
    data, log = base / "data", base / "mariadb.log"
    # mariadbd refuses to run as root unless told to; as anyone else it runs as that user
    user = ["--user=root"] if os.geteuid() == 0 else []
    common = ["--no-defaults", f"--datadir={data}", *user]
    with log.open("ab") as out:
        done = subprocess.run(
            [install, *common, "--auth-root-authentication-method=normal", "--skip-test-db"],
            stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        _unreachable(f"mariadb-install-db failed ({done.returncode}): {log.read_text()[-2000:]}")
    port = _free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [server, *common, f"--port={port}", "--bind-address=127.0.0.1",
             f"--socket={base / 'mariadb.sock'}", f"--pid-file={base / 'mariadb.pid'}",
             "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=32M"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    url = f"mysql://root@127.0.0.1:{port}/mysql"
    deadline = time.monotonic() + 60  # a first start on a loaded machine, not a measurement
    while True:
        try:
            _connect(url).close()  # type: ignore[attr-defined]
            return proc, url
        except pymysql.err.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                _unreachable(f"mariadbd did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: a clean shutdown
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[str]:
    """The URL of the MariaDB server of this session: STRATOFLOW_TEST_MYSQL's, else one started
    here (and stopped, its data directory removed, when the session ends)."""
    if MYSQL_URL:
        yield MYSQL_URL
        return
    with tempfile.TemporaryDirectory(prefix="sf-mariadb-") as base:
        proc, url = _start_mariadb(Path(base))
        try:
            yield url
        finally:
            _stop(proc)


def mysql_admin(url: str) -> object:
    """A connection to the server of ``url`` (autocommit)."""
    import pymysql

    try:
        return _connect(url)
    except pymysql.err.OperationalError as exc:
        parts = urlsplit(url)
        _unreachable(f"MySQL/MariaDB at {parts.hostname}:{parts.port} is unreachable: {exc}")


@pytest.fixture
def mysql_db(mysql_server: str) -> Iterator[str]:
    """A fresh database on the session's MariaDB server (its mysql:// URL), dropped afterwards."""
    admin = mysql_admin(mysql_server)
    name = f"sf_sql_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(f"CREATE DATABASE `{name}`")
    parts = urlsplit(mysql_server)
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
