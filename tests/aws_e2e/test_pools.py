"""A pool of 2 slots shared by 3 workflows on the AWS stack in moto (the real task-attempt
state machine, the api and advance handlers, DynamoDB's conditional pool counter): never more
than 2 of its tasks run at once, and the freed slots go to the waiting tasks by priority,
each handed on by the advance turn that freed it, whatever run the next task belongs to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from stratoflow.adapters.aws import runner as aws_runner
from tests.aws_e2e.harness import Stack, aws_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]


def flow(name: str, priority: int, seconds: float) -> str:
    return f"""
name: {name}
priority: {priority}
tasks:
  t1: {{type: shell, command: "sleep {seconds}", pool: shared}}
  t2: {{type: shell, command: "sleep {seconds}", pool: shared}}
"""


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        yield built


def test_a_pool_of_two_shared_by_three_workflows(stack: Stack) -> None:
    s3 = stack.counted_client("s3")
    lock = threading.Lock()
    running: list[str] = []
    peak = 0
    order: list[str] = []

    def run_it(attempt: dict[str, Any]) -> dict[str, Any]:
        nonlocal peak
        who = str(attempt["run_id"]).split(".", 1)[1].split("-", 1)[0]
        with lock:
            running.append(who)
            peak = max(peak, len(running))
            order.append(who)
        try:
            return aws_runner.handle(attempt, None, s3=s3)
        finally:
            with lock:
                running.remove(who)

    stack.lambdas.handlers["RunnerFunction"] = run_it
    # apply refuses a pool the project does not have
    status, body = stack.api("POST", "/workflows", {"source": flow("blocker", 0, 2)})
    assert status == 400, body
    assert "unknown pool 'shared'" in body["message"]
    status, body = stack.api("PUT", "/pools/shared", {"slots": 2}, {"project": "default"})
    assert status == 200, body
    runs = []
    for name, prio, secs in (
        ("blocker", 0, 12),
        ("low", 0, 0.2),
        ("high", 9, 0.2),
        ("mid", 5, 0.2),
    ):
        status, body = stack.api("POST", "/workflows", {"source": flow(name, prio, secs)})
        assert status in (200, 201), body
        status, body = stack.api("POST", f"/workflows/{name}/runs", {})
        assert status == 201, body
        runs.append(str(body["run"]["id"]))
        # advance: the tasks join the pool's queue, the free slots go (the blocker holds both
        # for 12 s: its outcomes come after every kick was delivered, so the harness's kick
        # delivery never receives them and leaves them to the pump)
        stack.deliver_kicks()
    for run_id in runs:
        assert stack.run_ends(run_id) == "succeeded"
    assert peak == 2
    assert order == ["blocker", "blocker", "high", "high", "mid", "mid", "low", "low"]
    status, body = stack.api("GET", "/pools/shared", query={"project": "default"})
    assert (body["used"], body["waiting"]) == (0, 0), body
