"""Nothing lost on AWS (issue 8, item 4), end to end on moto: the real state machine, the real
handlers (advance, reconciler, api), DynamoDB, SQS with its redrive policy, S3.

- An outcome that ``advance`` keeps failing on reaches the dead-letter queue (the harness's
  results queue moves a message there after 3 receives); the reconciler replays it and the
  run ends as it would have.
- A poison message on the dead-letter queue is logged and kept there, never crashing the
  reconciler or blocking the good messages.
- A report lost after its execution SUCCEEDED (deleted undelivered) is read back from the
  execution's history by the reconciler's recovery, outputs included.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from stratoflow.adapters.aws.dispatch import StepFunctionsDispatcher
from tests.aws_e2e.harness import Stack, aws_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

CHAIN = """
name: chain
tasks:
  a: {type: shell, command: "echo rows=3 >> $STRATOFLOW_OUTPUT"}
  b: {type: shell, depends_on: [a], command: "echo {{ tasks.a.outputs.rows }}"}
  c: {type: shell, depends_on: [a], command: echo c}
"""
NOTHING = {"replayed": 0, "poison": 0, "failed": 0}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        built.apply_with_runner(CHAIN)
        yield built


def trigger(stack: Stack) -> str:
    status, body = stack.api("POST", "/workflows/chain/runs", {})
    assert status == 201, body
    assert stack.deliver_kicks() == 1  # advance dispatches a
    return str(body["run"]["id"])


def dlq_url(stack: Stack) -> str:
    return stack.settings.results_dlq_url


def dlq_depth(stack: Stack) -> tuple[int, int]:
    """(visible, hidden) messages on the dead-letter queue."""
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=dlq_url(stack),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"]),
        int(attrs["ApproximateNumberOfMessagesNotVisible"]),
    )


def outcome_of_a(stack: Stack) -> list[dict[str, Any]]:
    stack.wait_messages(lambda: False)
    messages = stack.receive()
    assert [json.loads(m["Body"])["task_id"] for m in messages] == ["a"]
    return messages


def dead_letter_it(stack: Stack) -> None:
    """Deliver a's outcome to an ``advance`` that fails on it (a store throttled for
    minutes, a bug) until SQS's redrive policy moves it to the dead-letter queue."""
    scheduler = stack.functions["advance"].function.scheduler

    def broken(reports: Any) -> None:
        raise ConnectionError("DynamoDB unreachable (injected by the test)")

    scheduler.advance = broken  # an instance attribute: ``del`` puts the method back
    messages = outcome_of_a(stack)
    deadline = time.monotonic() + 30
    while dlq_depth(stack) == (0, 0):
        assert time.monotonic() < deadline, "the outcome never reached the dead-letter queue"
        if messages:
            response = stack.deliver(messages)
            assert len(response["batchItemFailures"]) == len(messages)
        time.sleep(0.3)  # the queue's visibility timeout is 1 s
        messages = stack.receive()
    del scheduler.advance
    assert stack.receive_peek() == 0


def test_a_dead_lettered_outcome_is_replayed_and_poison_is_kept(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """One stack for the three cases (a stack costs 15-25 s to build here)."""
    run_id = trigger(stack)
    dead_letter_it(stack)
    # stuck as issue 8 found it: the execution SUCCEEDED, the task is RUNNING for ever
    assert stack.task_state(run_id, "a") == "running"
    assert set(stack.executions().values()) == {"SUCCEEDED"}
    [dead] = stack.sqs.receive_message(QueueUrl=dlq_url(stack), VisibilityTimeout=0)["Messages"]
    # and poison beside it: not an outcome, not even JSON
    stack.sqs.send_message(QueueUrl=dlq_url(stack), MessageBody='{"run_id": "r", "status": "?"}')
    stack.sqs.send_message(QueueUrl=dlq_url(stack), MessageBody="not json at all")

    with caplog.at_level(logging.ERROR, logger="stratoflow.handlers"):
        result = stack.call("reconciler", {})

    # the outcome was applied, then deleted; the poison logged and kept, hidden
    assert result["dead_letters"] == {"replayed": 1, "poison": 2, "failed": 0}
    poison_logs = [r for r in caplog.records if "is not an outcome" in r.getMessage()]
    assert len(poison_logs) == 2
    assert dlq_depth(stack) == (0, 2)
    assert stack.task_state(run_id, "a") == "succeeded"
    assert stack.run_ends(run_id) == "succeeded"
    # the replayed outputs reached the child, and nothing ran twice
    status, text = stack.api("GET", f"/runs/{run_id}/tasks/b/attempts/1/log")
    assert (status, text) == (200, "3\n")
    assert len(stack.starts) == 3
    assert max(stack.starts.values()) == 1

    # the next pass reads nothing again; a duplicate of the outcome changes nothing
    assert stack.call("reconciler", {})["dead_letters"] == NOTHING
    before = stack.observer.get_tasks(run_id)
    stack.sqs.send_message(QueueUrl=dlq_url(stack), MessageBody=dead["Body"])
    assert stack.call("reconciler", {})["dead_letters"] == {**NOTHING, "replayed": 1}
    assert dlq_depth(stack) == (0, 2)
    assert stack.observer.get_tasks(run_id) == before
    assert stack.run_state(run_id) == "succeeded"
    assert max(stack.starts.values()) == 1


def test_a_report_lost_after_its_execution_succeeded_is_read_from_its_history(
    stack: Stack,
) -> None:
    """The outcome left the execution and vanished (expired on the queue, or deleted by
    hand from the dead-letter queue): recovery no longer takes SUCCEEDED for "reported"
    while the task is still RUNNING: it reads the message the execution sent."""
    run_id = trigger(stack)
    for message in outcome_of_a(stack):  # lost, never delivered
        stack.sqs.delete_message(
            QueueUrl=stack.settings.results_queue_url, ReceiptHandle=message["ReceiptHandle"]
        )
    assert stack.call("reconciler", {})["dead_letters"] == NOTHING
    # within the grace the report may still be on its way: nothing applied yet
    assert stack.task_state(run_id, "a") == "running"

    dispatcher = stack.functions["reconciler"].function.scheduler.dispatcher.inner
    assert isinstance(dispatcher, StepFunctionsDispatcher)
    dispatcher.report_grace = timedelta(0)  # as if the grace had passed
    stack.call("reconciler", {})

    assert stack.task_state(run_id, "a") == "succeeded"
    assert stack.run_ends(run_id) == "succeeded"
    status, text = stack.api("GET", f"/runs/{run_id}/tasks/b/attempts/1/log")
    assert (status, text) == (200, "3\n")  # a's outputs came back with it
    assert max(stack.starts.values()) == 1
