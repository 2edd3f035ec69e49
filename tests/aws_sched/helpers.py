"""What the AWS schedule/event tests share: fixed names, a request log, a scheduler factory."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stratoflow.ports import Clock, EventSink, Schedules
from stratoflow.service import Scheduler
from tests.fakes import FakeClock, RecordingDispatcher

REGION = "us-east-1"
GROUP = "stratoflow-test"
TRIGGER_ARN = "arn:aws:lambda:us-east-1:123456789012:function:stratoflow-trigger"
ROLE_ARN = "arn:aws:iam::123456789012:role/stratoflow-scheduler"


class CallLog:
    """The API operations a boto3 client really made (recorded by botocore's own event hook,
    so what is counted is what was sent to the service)."""

    def __init__(self, client: Any, service: str) -> None:
        self.calls: list[str] = []
        client.meta.events.register(f"before-call.{service}", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def writes(self) -> list[str]:
        return [call for call in self.calls if not call.startswith(("Get", "List"))]


def make_scheduler(
    store: Any,  # a StateStore that is also the Catalog (SQLite, DynamoDB)
    *,
    clock: Clock | None = None,
    schedules: Schedules | None = None,
    events: EventSink | None = None,
    dispatcher: RecordingDispatcher | None = None,
) -> Scheduler:
    return Scheduler(
        store,
        store,
        dispatcher or RecordingDispatcher(),
        clock or FakeClock(datetime.now(UTC)),
        events,
        schedules=schedules,
    )
