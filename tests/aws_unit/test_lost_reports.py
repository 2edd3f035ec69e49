"""``StepFunctionsDispatcher.recover`` for an execution that SUCCEEDED while its task is still
RUNNING: within the grace its report may still be on the queue (nothing is done); past it the
outcome is read back from the execution's history; an unreadable history changes nothing.
A stub Step Functions client answers in the API's shapes (the same path runs on moto in
tests/aws_e2e/test_recovery.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stratoflow.adapters.aws.dispatch import REPORT_GRACE, StepFunctionsDispatcher
from stratoflow.engine import AttemptStatus, TaskInstance, TaskState

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:sf-task-attempt"
SENT = {"run_id": "r", "task_id": "t", "attempt": 1, "status": "succeeded", "exit_code": 0,
        "error": None, "outputs": {"rows": "3"}, "log": "s3://b/logs/r/t/1.log"}  # fmt: skip


class StubSfn:
    def __init__(self, stopped: datetime, history: list[dict[str, Any]] | Exception) -> None:
        self.stopped = stopped
        self.history = history
        self.history_reads = 0

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        return {"executionArn": executionArn, "status": "SUCCEEDED", "stopDate": self.stopped}

    def get_paginator(self, name: str) -> Any:
        assert name == "get_execution_history"
        stub = self

        class Pages:
            def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
                assert kwargs["reverseOrder"] is True
                stub.history_reads += 1
                if isinstance(stub.history, Exception):
                    raise stub.history
                yield {"events": stub.history}

        return Pages()


def scheduled(event_id: int, resource_type: str, resource: str, params: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "TaskScheduled",
        "taskScheduledEventDetails": {
            "resourceType": resource_type,
            "resource": resource,
            "parameters": json.dumps(params),
        },
    }


HISTORY = [
    {"id": 9, "type": "ExecutionSucceeded"},
    scheduled(7, "sqs", "sendMessage", {"QueueUrl": "q", "MessageBody": SENT}),
    scheduled(3, "lambda", "invoke", {"FunctionName": "runner", "Payload": {}}),
]
RUNNING = [TaskInstance("r", "t", TaskState.RUNNING, attempt=1, started_at=NOW)]


def dispatcher(sfn: StubSfn) -> StepFunctionsDispatcher:
    return StepFunctionsDispatcher(MACHINE, client=sfn, now=lambda: NOW, read_json=lambda _: {})


def test_within_the_grace_nothing_is_read() -> None:
    sfn = StubSfn(NOW - REPORT_GRACE + timedelta(seconds=5), HISTORY)
    assert dispatcher(sfn).recover(RUNNING).results == {}
    assert sfn.history_reads == 0


def test_past_the_grace_the_sent_outcome_is_applied() -> None:
    sfn = StubSfn(NOW - REPORT_GRACE - timedelta(seconds=1), HISTORY)
    result = dispatcher(sfn).recover(RUNNING).results[("r", "t", 1)]
    assert result.status is AttemptStatus.SUCCEEDED
    assert result.outputs == {"rows": "3"}
    assert result.exit_code == 0


@pytest.mark.parametrize(
    "history",
    [
        ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "History"),
        [scheduled(3, "lambda", "invoke", {"Payload": {}})],  # no report was ever sent
        [scheduled(7, "sqs", "sendMessage", {"MessageBody": {"status": "exploded"}})],
    ],
)
def test_an_unreadable_history_changes_nothing(history: Any) -> None:
    sfn = StubSfn(NOW - timedelta(hours=1), history)
    assert dispatcher(sfn).recover(RUNNING).results == {}
