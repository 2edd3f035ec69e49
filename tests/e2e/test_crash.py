"""Killing the scheduler with SIGKILL at any moment loses no run and runs no task body twice.

GIVEN a server with several runs in flight, whose task bodies each append one line to a
      shared ledger and take a little while,
WHEN  the server is killed with SIGKILL at random moments and restarted, again and again,
THEN  every run finishes succeeded and the ledger holds each (run, task) exactly once.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]


def crash_workflow(ledger: Path) -> str:
    """A diamond-shaped DAG: 1 -> 12 parallel -> 1, plus a python task, each body logged."""
    body = (
        'sleep "0.$(( RANDOM % 4 ))"; '
        f'echo "$STRATOFLOW_RUN_ID $STRATOFLOW_TASK_ID $STRATOFLOW_ATTEMPT" >> {ledger}'
    )
    lines = [
        "name: crashy",
        "tasks:",
        "  start:",
        "    type: shell",
        f"    command: '{body}'",
    ]
    for i in range(12):
        lines += [
            f"  mid_{i}:",
            "    type: shell",
            "    depends_on: [start]",
            f"    command: '{body}'",
        ]
    lines += [
        "  pyjoin:",
        "    type: python",
        f"    depends_on: [{', '.join(f'mid_{i}' for i in range(12))}]",
        "    code: |",
        "      import os, time",
        "      time.sleep(0.2)",
        f"      with open({str(ledger)!r}, 'a') as fh:",
        "          fh.write(f\"{os.environ['STRATOFLOW_RUN_ID']} pyjoin {os.environ['STRATOFLOW_ATTEMPT']}\\n\")",
        "  end:",
        "    type: shell",
        "    depends_on: [pyjoin]",
        f"    command: '{body}'",
    ]
    return "\n".join(lines) + "\n"


def test_sigkill_loses_nothing_and_runs_nothing_twice(tmp_path: Path, shared_dir: Path) -> None:
    ledger = shared_dir / "ledger.txt"
    ledger.touch()
    server = ServerProcess(tmp_path / "home")
    server.start()
    rng = random.Random(20261120)
    try:
        applied = httpx.post(
            f"{server.url}/workflows",
            json={"source": crash_workflow(ledger)},
            headers=server.headers,
            timeout=10,
        )
        assert applied.status_code == 201, applied.text
        run_ids = []
        for _ in range(3):
            created = httpx.post(
                f"{server.url}/workflows/crashy/runs", json={}, headers=server.headers, timeout=10
            )
            assert created.status_code == 201, created.text
            run_ids.append(created.json()["run"]["id"])

        # WHEN the scheduler is killed mid-run, repeatedly
        kills = 0
        for _ in range(6):
            time.sleep(rng.uniform(0.2, 0.9))
            server.kill()
            kills += 1
            time.sleep(rng.uniform(0.0, 0.5))  # task processes keep running meanwhile
            server.start()

        deadline = time.monotonic() + 120
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {
                rid: httpx.get(
                    f"{server.url}/runs/{rid}", headers=server.headers, timeout=10
                ).json()["run"]["state"]
                for rid in run_ids
            }
            if all(s in ("succeeded", "failed", "stopped") for s in states.values()):
                break
            time.sleep(0.25)
    finally:
        server.stop()

    # THEN every run finished, and succeeded
    assert kills == 6
    assert states == dict.fromkeys(run_ids, "succeeded"), server.log.read_text()[-3000:]
    # AND each task body ran exactly once, at its first attempt
    entries = [tuple(line.split()) for line in ledger.read_text().splitlines() if line.strip()]
    per_task = Counter((run, task) for run, task, _attempt in entries)
    expected = {
        (rid, t)
        for rid in run_ids
        for t in ["start", *(f"mid_{i}" for i in range(12)), "pyjoin", "end"]
    }
    assert set(per_task) == expected
    assert all(n == 1 for n in per_task.values()), [k for k, n in per_task.items() if n != 1]
    assert {attempt for _run, _task, attempt in entries} == {"1"}
