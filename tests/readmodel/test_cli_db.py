"""``stratoflow server --db``: the option's wiring, its errors, and a real server on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from stratoflow.cli import main
from stratoflow.engine import RunState
from stratoflow.readmodel import ReadModel, RunFilter, carries_password
from tests.e2e.server_process import first_admin_token, free_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "etl_chain.yaml"


def test_an_unsupported_scheme_is_invalid_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["server", "--home", str(tmp_path), "--db", "mysql://x/y"])
    assert result.exit_code == 2
    assert "--db: unsupported read-model database URL mysql://" in result.output
    assert "postgresql://" in result.output


def test_an_unreachable_database_fails_with_the_drivers_reason(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1
    result = CliRunner().invoke(main, ["server", "--home", str(tmp_path), "--db", url])
    assert result.exit_code == 1
    assert "--db: cannot open the read-model database" in result.output
    assert "127.0.0.1" in result.output


SECRET = "pw-9c1e-not-for-argv"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:{SECRET}@127.0.0.1:1/nowhere",
        f"postgres://postgres:{SECRET}@h1.invalid:5432,h2.invalid:5433/db?sslmode=require",
        f"postgresql://127.0.0.1:1/db?sslmode=prefer&password={SECRET}",
        f"postgresql://u:{SECRET}?x@host/db",  # libpq's user info ends at the first @
        f"mysql://u:{SECRET}@x/y",  # a password is refused before the scheme is looked at
    ],
)
def test_a_password_on_the_command_line_is_refused_before_anything_starts(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /proc/PID/cmdline is readable by every uid, the server's tasks included: the server
    # must not run with the database's password in its argv
    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server started")  # (without the check: fail, never serve)

    monkeypatch.setattr("stratoflow.adapters.local.runtime.LocalRuntime", started)
    home = tmp_path / "home"
    result = CliRunner().invoke(
        main, ["server", "--home", str(home), "--db", url], env={"STRATOFLOW_DB": None}
    )
    assert result.exit_code == 2, result.output
    assert "'--db': the URL carries a password" in result.output
    assert "/proc/PID/cmdline" in result.output
    assert "$STRATOFLOW_DB" in result.output
    assert "PGPASSWORD" in result.output
    assert SECRET not in result.output  # the refusal does not repeat it
    assert not home.exists()  # refused as the options were read: nothing was made


@pytest.fixture
def never_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that got as far as listening fails the test instead of serving for ever."""

    def listen(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server was about to listen")

    monkeypatch.setattr("stratoflow.api.local_server.start_in_thread", listen)


@pytest.mark.usefixtures("never_served")
def test_the_same_url_in_stratoflow_db_is_taken_and_used(tmp_path: Path) -> None:
    # the environment is the server uid's alone (/proc/PID/environ is 0400): a password there
    # is fine; the URL is used (nothing listens on port 1: the driver's reason says so)
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:1/nowhere"
    result = CliRunner().invoke(
        main, ["server", "--home", str(tmp_path / "home")], env={"STRATOFLOW_DB": url}
    )
    assert result.exit_code == 1, result.output
    assert "$STRATOFLOW_DB: cannot open the read-model database" in result.output
    assert "127.0.0.1" in result.output
    assert "port 1 " in result.output
    assert SECRET not in result.output


@pytest.mark.usefixtures("never_served")
def test_a_url_without_a_password_on_the_command_line_is_taken(tmp_path: Path) -> None:
    # libpq then takes the password from PGPASSWORD or ~/.pgpass, as it would for psql
    url = "postgresql://postgres@127.0.0.1:1/nowhere?sslmode=disable&password="
    result = CliRunner().invoke(
        main, ["server", "--home", str(tmp_path / "home"), "--db", url],
        env={"STRATOFLOW_DB": None},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "--db: cannot open the read-model database" in result.output


def test_the_help_says_where_a_password_goes() -> None:
    result = CliRunner().invoke(main, ["server", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "[env var: STRATOFLOW_DB]" in result.output
    assert "Never a password here" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("url", "carries"),
    [
        ("postgresql://u:pw@h/db", True),
        ("postgresql://u:p%40w@h/db", True),
        ("postgresql://u:pw@[::1]:5432/db", True),
        ("postgresql://u:pw@[::1/db", True),  # urllib.parse would raise on it; libpq reads it
        ("postgresql://u:p/w@h/db", False),  # libpq: no @ before the first /: host "u", port "p"
        ("postgresql://h/db?password=pw", True),
        ("postgresql://h/db?application_name=a&%70assword=pw", True),  # libpq decodes keys
        ("postgresql://u@h/db", False),
        ("postgresql://u:@h/db", False),  # an empty password is none
        ("postgresql://h/db?password=", False),
        ("postgresql://h/db?passfile=/etc/pgpass", False),
        ("sqlite:///tmp/a:b@c.db", False),
        ("/tmp/user:pw@host.db", False),  # a SQLite path
    ],
)
def test_carries_password(url: str, carries: bool) -> None:
    assert carries_password(url) is carries


@pytest.mark.e2e
def test_a_server_with_db_projects_its_runs_into_postgresql(tmp_path: Path, pg_url: str) -> None:
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stratoflow", "server", "--home", str(tmp_path / "home"),
         "--port", str(port), "--apply", str(EXAMPLE), "--db", pg_url],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        token = first_admin_token(tmp_path / "server.log")
        run_id = httpx.post(
            f"{api}/workflows/etl_chain/runs",
            json={},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()["run"]["id"]
        rm = ReadModel.open(pg_url)
        try:
            deadline = time.monotonic() + 60
            while True:
                page = rm.list_runs(RunFilter(workflow="etl_chain"))
                if page.items and page.items[0].state.terminal:
                    break
                assert time.monotonic() < deadline, "the run never reached the read model"
                time.sleep(0.2)
            (run,) = page.items
            assert (run.id, run.state) == (run_id, RunState.SUCCEEDED)
            assert {t.task_id for t in rm.tasks(run_id)} >= {"extract", "transform"}
            assert rm.workflow("default", "etl_chain").description == (
                "Extract rows, transform them in Python, load a summary"
            )
        finally:
            rm.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
