"""An attempt that ends while the server is down is recorded as ending when it ended, not
when the server came back.

GIVEN a real ``stratoflow server`` running a run whose tasks take a few seconds (one
      succeeds; one fails its first attempt and is retried), each writing the time it ends
      to a ledger,
WHEN  the server is killed with SIGKILL while they run, and started again only well after
      they have ended,
THEN  each attempt's and task's ``ended_at`` is the time its body ended (the log's last
      write, the wrapper's exit record), not the restart: a 3 s task lasts about 3 s, and
      the retry waits its delay from that end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

SECONDS = 3  # how long each task body runs
OUTAGE = 4  # seconds the server stays down after the bodies ended
SLACK = 1.0  # the wrapper's exit record after the body's last line, and clock reads
COARSE = 0.05  # a file's mtime comes from the kernel's coarse clock: a tick behind `date`


def workflow(ledger: Path) -> str:
    ended = f'echo "$STRATOFLOW_TASK_ID $STRATOFLOW_ATTEMPT $(date +%s.%N)" >> {ledger}'
    return f"""
name: outlives
tasks:
  slow:
    type: shell
    command: 'sleep {SECONDS}; {ended}'
  flaky:
    type: shell
    retries: 1
    retry_delay: 1s
    command: 'sleep {SECONDS}; {ended}; [ "$STRATOFLOW_ATTEMPT" != 1 ]'
"""


def wait_for(what: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def get(server: ServerProcess, path: str) -> Any:
    reply = httpx.get(f"{server.url}{path}", headers=server.headers, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_an_attempt_that_ended_while_the_server_was_down_keeps_its_end(
    tmp_path: Path, shared_dir: Path
) -> None:
    ledger = shared_dir / "ended.txt"
    ledger.touch()
    server = ServerProcess(tmp_path / "home")
    server.start()
    try:
        applied = httpx.post(
            f"{server.url}/workflows",
            json={"source": workflow(ledger)},
            headers=server.headers,
            timeout=10,
        )
        assert applied.status_code == 201, applied.text
        created = httpx.post(
            f"{server.url}/workflows/outlives/runs", json={}, headers=server.headers, timeout=10
        )
        assert created.status_code == 201, created.text
        run_id = created.json()["run"]["id"]

        def both_running() -> bool:
            tasks = get(server, f"/runs/{run_id}")["tasks"]
            return all(tasks[t]["state"] == "running" for t in ("slow", "flaky"))

        wait_for(both_running)
        server.kill()
        # the bodies end while the server is down; it stays down a while after
        wait_for(lambda: len(ledger.read_text().splitlines()) == 2, timeout=60)
        time.sleep(OUTAGE)
        restarted = datetime.now(UTC).timestamp()
        server.start()
        wait_for(lambda: get(server, f"/runs/{run_id}")["run"]["state"] == "succeeded")
        slow = get(server, f"/runs/{run_id}/tasks/slow")
        flaky = get(server, f"/runs/{run_id}/tasks/flaky")
    finally:
        server.stop()

    ends = {
        (task, int(attempt)): float(when)
        for task, attempt, when in (line.split() for line in ledger.read_text().splitlines())
    }
    # THEN the task that succeeded ended when its body did, seconds before the restart
    assert slow["state"] == "succeeded"
    (attempt,) = slow["history"]
    for ended_at in (slow["ended_at"], attempt["ended_at"]):
        assert ends[("slow", 1)] - COARSE <= at(ended_at) < ends[("slow", 1)] + SLACK, ended_at
        assert at(ended_at) < restarted
    assert SECONDS - COARSE <= slow["duration_seconds"] < SECONDS + SLACK + 1  # + its start
    # AND the failed first attempt of the other too; its retry ran after the restart
    first, second = sorted(flaky["history"], key=lambda a: a["attempt"])
    assert (first["state"], second["state"]) == ("failed", "succeeded")
    assert ends[("flaky", 1)] - COARSE <= at(first["ended_at"]) < ends[("flaky", 1)] + SLACK
    assert at(second["started_at"]) >= restarted
    assert ends[("flaky", 2)] - COARSE <= at(flaky["ended_at"]) < ends[("flaky", 2)] + SLACK
