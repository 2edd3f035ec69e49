"""A stop reaches an Express attempt's running task (issue 8, item 4), end to end on moto: the
real Express state machine, the real runner code with the stack's DynamoDB, the API's stop.
No API stops an Express execution, so the runner notices the stop itself (it reads its
task's state every few seconds) and kills its task; the execution then reports ``stopped``,
which ``advance`` ignores, the task being STOPPED already."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from stratoflow.adapters.aws import runner as aws_runner
from tests.aws_e2e.harness import Stack, aws_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

SLOW = """
name: slow
tasks:
  nap: {type: shell, command: "echo napping; sleep 60; echo woke", timeout: 120s}
"""


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("STRATOFLOW_STOP_POLL_SECONDS", "0.5")
    with aws_stack(monkeypatch) as built:
        yield built


def test_a_stop_ends_the_task_of_an_express_attempt(stack: Stack) -> None:
    s3 = stack.counted_client("s3")
    ddb = stack.counted_client("dynamodb")
    started = threading.Event()
    outcomes: list[dict[str, object]] = []

    def run_it(attempt: dict[str, object]) -> dict[str, object]:
        started.set()
        outcome = aws_runner.handle(attempt, None, s3=s3, dynamodb=ddb, table=stack.settings.table)
        outcomes.append(outcome)
        return outcome

    stack.lambdas.handlers["RunnerFunction"] = run_it
    status, body = stack.api("POST", "/workflows", {"source": SLOW})
    assert status in (200, 201), body
    status, body = stack.api("POST", "/workflows/slow/runs", {})
    assert status == 201, body
    run_id = str(body["run"]["id"])
    assert stack.deliver_kicks() == 1  # advance dispatches the task
    assert started.wait(30), "the runner was never invoked"
    assert len(stack.express_executions()) == 1  # 120 s fits Express

    began = time.monotonic()
    status, body = stack.api("POST", f"/runs/{run_id}/stop")
    assert status == 200, body
    assert body["state"] == "stopped"
    stack.wait_messages(lambda: bool(outcomes), timeout=30)

    assert time.monotonic() - began < 20  # not the task's 60 s
    [outcome] = outcomes
    assert outcome["status"] == "stopped"
    # it reported: the execution ends once its report is sent (in moto's own thread)
    ended = time.monotonic() + 30
    while list(stack.express_executions().values()) != ["SUCCEEDED"]:
        assert time.monotonic() < ended, stack.express_executions()
        time.sleep(0.2)
    messages = stack.receive()
    assert [json.loads(m["Body"])["status"] for m in messages] == ["stopped"]
    stack.deliver(messages)  # the late report changes nothing
    assert stack.run_state(run_id) == "stopped"
    assert stack.task_state(run_id, "nap") == "stopped"
    status, text = stack.api("GET", f"/runs/{run_id}/tasks/nap/attempts/1/log")
    assert (status, text) == (200, "napping\n")  # what ran before the stop, kept
