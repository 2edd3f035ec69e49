"""``stratoflow trigger --wait`` and ``stratoflow backfill --wait`` ride out a server restart.

GIVEN a run (or a backfill) made with ``--wait``,
WHEN  the server goes away while the client waits (killed and started again: connections
      dropped, then refused),
THEN  the client tries again until the server is back, and exits with the run's end (not 3,
      "cannot be reached", while the run goes on); a server that stays away is reported
      with the run's id, so the user knows which run to look at.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from stratoflow import cli, cli_backfill

RUN_ID = "default.w.x"


def _detail(state: str) -> dict[str, Any]:
    return {
        "run": {
            "id": RUN_ID, "workflow": "w", "project": "default", "version": 1, "state": state,
            "tasks_total": 1, "tasks_done": int(state != "running"), "tasks_failed": 0,
            "tasks_running": int(state == "running"),
        },
        "tasks": {}, "revision": 1, "full": True,
    }  # fmt: skip


BACKFILL_ID = "bf-1"


def _backfill(state: str) -> dict[str, Any]:
    return {
        "id": BACKFILL_ID, "state": state, "project": "default", "workflow": "w",
        "version": 1, "parallel": 1, "rerun": False, "counts": {state: 1}, "dates": [],
        "dependents": [],
    }  # fmt: skip


@contextmanager
def flaky_server(drops: int, detail: Any = _detail) -> Iterator[tuple[str, list[str]]]:
    """Answers the POST (a trigger, a backfill), then drops the next ``drops`` GETs without
    a reply (a server killed mid-request), then says it succeeded."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            if length:
                self.rfile.read(length)
            seen.append(f"{self.command} {self.path}")
            if self.command == "POST":
                status, body = 201, detail("running")
            elif len(seen) <= 1 + drops:
                self.close_connection = True  # no reply: "Server disconnected"
                return
            else:
                status, body = 200, detail("succeeded")
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "WAIT_RECONNECT_FIRST_SECONDS", 0.05, raising=False)
    monkeypatch.setattr(cli_backfill, "BACKFILL_POLL_SECONDS", 0.01)
    monkeypatch.setenv("STRATOFLOW_TOKEN", "sft_test")


def test_a_wait_goes_on_through_a_server_restart() -> None:
    with flaky_server(drops=3) as (url, seen):
        result = CliRunner().invoke(
            cli.main, ["trigger", "w", "--wait", "--output", "json", "--api", url]
        )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run"]["state"] == "succeeded"
    assert len([s for s in seen if s.startswith("GET")]) == 4  # 3 dropped, then the end
    assert f"waiting for run {RUN_ID}" in result.stderr


def test_a_server_that_stays_away_is_reported_with_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "WAIT_RECONNECT_SECONDS", 0.5, raising=False)
    with flaky_server(drops=10_000) as (url, _seen):
        result = CliRunner().invoke(cli.main, ["trigger", "w", "--wait", "--api", url])
    assert result.exit_code == cli.EXIT_UNREACHABLE
    assert RUN_ID in result.stderr
    assert f"stratoflow runs show {RUN_ID}" in result.stderr


BACKFILL = ["backfill", "w", "--start", "2026-01-01", "--end", "2026-01-01", "--wait"]


def test_a_backfill_wait_goes_on_through_a_server_restart() -> None:
    with flaky_server(drops=3, detail=_backfill) as (url, seen):
        result = CliRunner().invoke(cli.main, [*BACKFILL, "--output", "json", "--api", url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "succeeded"
    assert len([s for s in seen if s.startswith("GET")]) == 4
    assert f"waiting for backfill {BACKFILL_ID}" in result.stderr


def test_a_backfill_whose_server_stays_away_is_reported_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "WAIT_RECONNECT_SECONDS", 0.5, raising=False)
    with flaky_server(drops=10_000, detail=_backfill) as (url, _seen):
        result = CliRunner().invoke(cli.main, [*BACKFILL, "--api", url])
    assert result.exit_code == cli.EXIT_UNREACHABLE
    assert f"stratoflow backfills show {BACKFILL_ID}" in result.stderr


def _pasted(stderr: str) -> list[str]:
    """The arguments of the command the message says to run once the server is back."""
    command = stderr.split("started: `", 1)[1].split("`", 1)[0]
    words = shlex.split(command)
    assert words[0] == "stratoflow"
    return words[1:]


@pytest.mark.parametrize("backfill", [False, True], ids=["run", "backfill"])
def test_the_command_named_for_an_id_starting_with_a_dash_runs_as_printed(
    monkeypatch: pytest.MonkeyPatch, backfill: bool
) -> None:
    """A project's name may start with '-', and so do its run and backfill ids: the command
    printed, `stratoflow runs show -p.w-...`, was click's "No such option: -p" (exit 2)."""
    monkeypatch.setattr(cli, "WAIT_RECONNECT_SECONDS", 0.3, raising=False)
    the_id = "-p.w.k" if not backfill else "-p.backfill-w-20260101T000000-abcdef"

    def detail(state: str) -> dict[str, Any]:
        body = _backfill(state) if backfill else _detail(state)
        if backfill:
            return {**body, "id": the_id, "project": "-p"}
        return {**body, "run": {**body["run"], "id": the_id, "project": "-p"}}

    args = [*BACKFILL, "--project=-p"] if backfill else ["trigger", "w", "--project=-p", "--wait"]
    with flaky_server(drops=10_000, detail=detail) as (url, _seen):
        result = CliRunner().invoke(cli.main, [*args, "--api", url])
    assert result.exit_code == cli.EXIT_UNREACHABLE, result.output
    pasted = _pasted(result.stderr)
    assert pasted == ["backfills" if backfill else "runs", "show", "--", the_id]
    # as pasted it names the id (no server there now: 'cannot reach', not 'no such option')
    monkeypatch.setenv("STRATOFLOW_API", "http://127.0.0.1:9")
    again = CliRunner().invoke(cli.main, pasted)
    assert again.exit_code == cli.EXIT_UNREACHABLE, again.output
