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
from stratoflow.readmodel import ReadModel, RunFilter
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
