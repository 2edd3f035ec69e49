"""Backfill on the AWS runtime, in moto: the api function creates it, the real state machine
runs each attempt, the advance function moves the lanes on when a run ends, the reconciler
completes what a lost run end left undone. See harness.py for what stands in for compute."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stratoflow.adapters.aws import runner as aws_runner
from stratoflow.backfills import Backfills
from stratoflow.engine import RunState
from stratoflow.ports import RunQuery
from tests.aws_e2e.harness import Stack, aws_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

DAILY = """
name: daily
schedule: {cron: "0 2 * * *", timezone: UTC}
tasks:
  load: {type: shell, command: 'test "{{ ds }}" != "2026-01-03"'}
"""
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        s3 = built.counted_client("s3")
        built.lambdas.handlers["RunnerFunction"] = lambda attempt: aws_runner.handle(
            attempt, None, s3=s3
        )
        status, body = built.api("POST", "/workflows", {"source": DAILY})
        assert status in (200, 201), body
        yield built


def backfill(stack: Stack, **body: Any) -> dict[str, Any]:
    status, made = stack.api("POST", "/workflows/daily/backfills", body)
    assert status == 201, made
    stack.deliver_kicks()
    return made


def show(stack: Stack, backfill_id: str) -> dict[str, Any]:
    status, body = stack.api("GET", f"/backfills/{backfill_id}")
    assert status == 200, body
    return body


def ended(stack: Stack, backfill_id: str) -> dict[str, Any]:
    stack.pump(lambda: show(stack, backfill_id)["state"] in TERMINAL)
    return show(stack, backfill_id)


def run_ids(stack: Stack) -> list[str]:
    status, page = stack.api("GET", "/runs", query={"workflow": "daily", "limit": "100"})
    assert status == 200, page
    return sorted(r["id"] for r in page["runs"])


def test_serial_backfill_stops_at_its_first_failure(stack: Stack) -> None:
    made = backfill(stack, start="2026-01-01", end="2026-01-05")
    body = ended(stack, made["id"])
    assert body["state"] == "failed"
    assert [d["state"] for d in body["dates"]] == [
        "succeeded", "succeeded", "failed", "not_run", "not_run",
    ]  # fmt: skip
    assert run_ids(stack) == sorted(d["run_id"] for d in body["dates"][:3])
    # each attempt was one execution of the real state machine, started once
    assert len(stack.starts) == 3
    assert set(stack.starts.values()) == {1}


def test_a_repeated_backfill_and_a_schedule_firing_add_nothing(stack: Stack) -> None:
    first = ended(stack, backfill(stack, start="2026-01-01", end="2026-01-02", parallel=2)["id"])
    assert first["state"] == "succeeded"
    before = run_ids(stack)
    again = ended(stack, backfill(stack, start="2026-01-01", end="2026-01-02")["id"])
    assert [d["state"] for d in again["dates"]] == ["skipped", "skipped"]
    firing = {"project": "default", "workflow": "daily", "scheduled_time": "2026-01-02T02:00:00Z"}
    assert stack.call("trigger", firing) == {
        "run_id": first["dates"][1]["run_id"],
        "created": False,
    }
    assert run_ids(stack) == before
    assert len(stack.starts) == 2


def test_the_reconciler_moves_a_lane_on_when_the_run_end_was_lost(stack: Stack) -> None:
    with pytest.MonkeyPatch.context() as lost:
        # the advance function dies right after it wrote the first run's end
        lost.setattr(Backfills, "run_ended", lambda self, run: None)
        made = backfill(stack, start="2026-01-01", end="2026-01-02")
        first_run = made["dates"][0]["run_id"]
        assert stack.run_ends(first_run) == "succeeded"
        assert [d["state"] for d in show(stack, made["id"])["dates"]] == ["running", "pending"]
    stack.call("reconciler", {})
    stack.call("reconciler", {})  # idempotent: still one run per date
    body = ended(stack, made["id"])
    assert body["state"] == "succeeded"
    assert len(run_ids(stack)) == 2
    assert set(stack.starts.values()) == {1}


def test_a_parallel_backfill_keeps_exactly_n_runs_going(stack: Stack) -> None:
    made = backfill(stack, start="2026-01-04", end="2026-01-08", parallel=2)
    running: list[int] = []

    def done() -> bool:
        query = RunQuery(workflow="daily", state=RunState.RUNNING, limit=100)
        running.append(len(stack.observer.list_runs(query)))
        return show(stack, made["id"])["state"] in TERMINAL

    stack.pump(done)
    body = show(stack, made["id"])
    assert body["state"] == "succeeded"
    assert [d["state"] for d in body["dates"]] == ["succeeded"] * 5
    assert max(running) == 2
    assert {d["lane"] for d in body["dates"]} == {0, 1}
    assert set(stack.starts.values()) == {1}
