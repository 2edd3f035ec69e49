"""Killing the server between the event and the send still delivers exactly one alert
(issue 12, "How we will know").

GIVEN a real ``stratoflow server`` whose alert group's only channel is a webhook at an address
      where nothing listens yet,
WHEN  a run fails (its failure alert is in the outbox, its first send refused: the endpoint
      got nothing) and the server is killed with SIGKILL, then the endpoint comes up and the
      server is started again (and once more after that),
THEN  the endpoint receives the failure alert exactly once, and the delivery log shows one
      row, sent on its second try.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stratoflow.cli import main
from tests.e2e.http_stub import json_stub
from tests.e2e.server_process import ServerProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

WORKFLOW = """
name: breaks
alerts: [{on: [failure], group: oncall}]
tasks:
  load: {type: shell, command: "exit 3"}
"""
RUNNING = "Stratoflow is running at"  # printed once the alert worker has caught up


def cli(server: ServerProcess, *args: str, stdin: str | None = None) -> Any:
    result = CliRunner().invoke(
        main, [*args, "--api", server.url], input=stdin, env={"STRATOFLOW_TOKEN": server.token}
    )
    assert result.exit_code in (0, 1), result.output
    return result


def deliveries(server: ServerProcess, run_id: str) -> list[dict[str, Any]]:
    listed = cli(server, "alerts", "list", "--run", run_id, "--output", "json")
    return list(json.loads(listed.output)["deliveries"])


def wait_for(what: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def start(server: ServerProcess) -> None:
    """Start it and wait until its alert worker has caught up (the API answers earlier).
    Generous: a start on the shared, loaded test machine has taken over 30 s."""
    before = server.log.read_text().count(RUNNING) if server.log.exists() else 0
    server.start(timeout=120)
    wait_for(lambda: server.log.read_text().count(RUNNING) > before)


def test_a_server_killed_between_the_event_and_the_send_delivers_once(tmp_path: Path) -> None:
    port = free_port()  # the endpoint's address, where nothing listens yet
    server = ServerProcess(tmp_path / "home")
    start(server)
    try:
        cli(server, "secrets", "set", "hook", stdin=f"http://127.0.0.1:{port}/hook")
        cli(server, "alerts", "channels", "add", "hook", "--type", "webhook",
            "--url", "{{ secrets.hook }}")  # fmt: skip
        cli(server, "alerts", "groups", "set", "oncall", "--channels", "hook")
        source = tmp_path / "breaks.yaml"
        source.write_text(WORKFLOW)
        cli(server, "apply", str(source))
        waited = cli(server, "trigger", "breaks", "--wait", "--output", "json")
        assert waited.exit_code == 1, waited.output
        run_id = json.loads(waited.output)["run"]["id"]
        # the failure alert is in the outbox; its first send was refused
        wait_for(lambda: [d["status"] for d in deliveries(server, run_id)] == ["retrying"])
        server.kill()

        received: list[Any] = []

        def respond(method: str, path: str, body: Any, headers: Any) -> tuple[int, Any]:
            received.append((method, path, body))
            return 200, {"ok": True}

        with json_stub(respond, port=port):
            start(server)
            wait_for(lambda: [d["status"] for d in deliveries(server, run_id)] == ["sent"])
            server.kill()  # again, after the send: the restart's catch-up adds nothing
            start(server)
            (row,) = deliveries(server, run_id)
        assert (row["event"], row["channel"], row["status"], row["attempts"]) == (
            "failure", "hook", "sent", 2,
        )  # fmt: skip
        [(method, path, body)] = received
        assert (method, path) == ("POST", "/hook")
        assert (body["event"], body["run_id"]) == ("failure", run_id)
    finally:
        server.stop()
