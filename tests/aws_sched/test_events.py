"""Lifecycle events reach an EventBridge bus with the documented schema and no secrets.

moto delivers what is put on the bus through real rules to SQS queues, and the tests read the
events back from the queues: what a subscriber of the bus would get. The runs are driven by
the real scheduler over SQLite, so the events are the ones the service emits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from jsonschema import Draft202012Validator

from stratoflow.adapters.aws.events import (
    DETAIL_TYPES,
    ERROR_LIMIT,
    MAX_BATCH,
    PUT_ATTEMPTS,
    EventBridgeEvents,
    EventPublishError,
    event_detail,
)
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.engine.backfill import BackfillState, DateState
from stratoflow.service import Finished, Scheduler
from tests.aws_sched.helpers import REGION, make_scheduler
from tests.fakes import FakeClock, RecordingDispatcher

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMA = json.loads((DOCS / "events.schema.json").read_text())
BUS = "stratoflow-test-events"
PARAM_SECRET = "PARAM-SECRET-7f3a"
OUTPUT_SECRET = "OUTPUT-SECRET-91c2"

WORKFLOW = """
name: nightly
project: analytics
params:
  token: default
tasks:
  ok:
    type: shell
    command: echo "{{ params.token }}"
  bad:
    type: shell
    command: exit 1
    retries: 1
    retry_delay: 30s
"""


def failed_runs_pattern() -> dict[str, Any]:
    """The rule pattern docs/events.md gives for alerting on failed runs (the block after its
    marker comment), so the documentation is what is tested."""
    text = (DOCS / "events.md").read_text()
    found = re.search(r"<!-- failed-runs-pattern:.*?-->\s*```json\n(.*?)```", text, re.DOTALL)
    assert found, "docs/events.md lost its failed-runs pattern block"
    pattern: dict[str, Any] = json.loads(found.group(1))
    return pattern


@dataclass
class Bus:
    events: Any
    sqs: Any
    queues: dict[str, str] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)  # entries per PutEvents request sent

    def subscribe(self, name: str, pattern: dict[str, Any]) -> None:
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.events.put_rule(Name=name, EventBusName=BUS, EventPattern=json.dumps(pattern))
        self.events.put_targets(Rule=name, EventBusName=BUS, Targets=[{"Id": name, "Arn": arn}])
        self.queues[name] = url

    def received(self, name: str) -> list[dict[str, Any]]:
        """Every message on the queue (raw bodies parsed), in arrival order."""
        bodies: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queues[name], MaxNumberOfMessages=10)
            messages = got.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.queues[name], ReceiptHandle=message["ReceiptHandle"]
                )

    def raw(self, name: str) -> list[str]:
        return [json.dumps(body) for body in self.received(name)]


@pytest.fixture
def bus(aws: None) -> Bus:
    events = boto3.client("events", region_name=REGION)
    events.create_event_bus(Name=BUS)
    found = Bus(events, boto3.client("sqs", region_name=REGION))

    def count(params: dict[str, Any], **_: Any) -> None:
        found.sizes.append(len(params["Entries"]))

    events.meta.events.register("provide-client-params.events.PutEvents", count)
    found.subscribe("everything", {"source": ["stratoflow"]})
    found.subscribe("failed-runs", failed_runs_pattern())
    return found


def fail_pending(scheduler: Scheduler, dispatcher: RecordingDispatcher, task: str) -> None:
    for key in [k for k in dispatcher.pending if k[1] == task]:
        dispatcher.pending.pop(key)
        scheduler.on_finished(
            [Finished(*key, AttemptResult(AttemptStatus.FAILED, exit_code=1, error="exit 1"))]
        )


def succeed_pending(scheduler: Scheduler, dispatcher: RecordingDispatcher, task: str) -> None:
    for key in [k for k in dispatcher.pending if k[1] == task]:
        dispatcher.pending.pop(key)
        outputs = {"token_seen": OUTPUT_SECRET}
        scheduler.on_finished([Finished(*key, AttemptResult(AttemptStatus.SUCCEEDED, outputs))])


def test_a_runs_lifecycle_arrives_on_the_bus_in_the_documented_schema_without_secrets(
    bus: Bus, store: SqliteStore
) -> None:
    # GIVEN the scheduler publishing to the bus
    clock = FakeClock(datetime(2026, 11, 21, 2, 0, tzinfo=UTC))
    dispatcher = RecordingDispatcher()
    sink = EventBridgeEvents(BUS, client=bus.events)
    scheduler = make_scheduler(store, clock=clock, events=sink, dispatcher=dispatcher)
    scheduler.apply(WORKFLOW)
    # WHEN a run with a secret parameter fails (a retry, then no retries left), while a task
    # that returns a secret output succeeds
    run, _ = scheduler.trigger("analytics", "nightly", params={"token": PARAM_SECRET})
    scheduler.dispatch_ready()
    succeed_pending(scheduler, dispatcher, "ok")
    fail_pending(scheduler, dispatcher, "bad")
    clock.advance(31)
    scheduler.step()
    fail_pending(scheduler, dispatcher, "bad")
    # AND another run is stopped, and a third succeeds
    stopped, _ = scheduler.trigger("analytics", "nightly")
    scheduler.stop(stopped.id)
    won, _ = scheduler.trigger("analytics", "nightly")
    scheduler.dispatch_ready()
    with sink.batch():
        scheduler.mark(won.id, "bad", TaskState.SUCCEEDED)
        succeed_pending(scheduler, dispatcher, "ok")
    assert store.get_run(won.id).state is RunState.SUCCEEDED
    # THEN a subscriber to the bus got every lifecycle event, in order
    got = bus.received("everything")
    assert [(e["detail"]["kind"], e["detail"]["run_id"]) for e in got] == [
        ("run.started", run.id),
        ("task.retrying", run.id),
        ("task.failed", run.id),
        ("run.failed", run.id),
        ("run.started", stopped.id),
        ("run.stopped", stopped.id),
        ("run.started", won.id),
        ("run.succeeded", won.id),
    ]
    # AND each has the source, the kind's detail-type and a detail valid against the schema
    validator = Draft202012Validator(SCHEMA)
    for envelope in got:
        detail = envelope["detail"]
        assert envelope["source"] == "stratoflow"
        assert envelope["detail-type"] == DETAIL_TYPES[detail["kind"]]
        assert list(validator.iter_errors(detail)) == []
        assert datetime.fromisoformat(detail["logical_date"]).tzinfo is not None
    retrying = got[1]["detail"]
    assert retrying == {
        "schema_version": 1,
        "kind": "task.retrying",
        "run_id": run.id,
        "project": "analytics",
        "workflow": "nightly",
        "workflow_version": 1,
        "run_state": "running",
        "logical_date": "2026-11-21T02:00:00+00:00",
        "task_id": "bad",
        "attempt": 1,
        "task_state": "up_for_retry",
        "error": "exit 1",
    }
    # AND no parameter or output appears anywhere in what was delivered
    raw = json.dumps(got)
    assert PARAM_SECRET not in raw
    assert OUTPUT_SECRET not in raw
    assert "token" not in raw
    # AND the documented alerting rule matched only the failed run
    alerts = bus.received("failed-runs")
    assert [(e["detail-type"], e["detail"]["run_id"]) for e in alerts] == [("Run Failed", run.id)]


def test_inside_a_batch_events_go_ten_per_request_and_the_rest_at_the_end(
    bus: Bus,
) -> None:
    sink = EventBridgeEvents(BUS, client=bus.events)
    with sink.batch():
        for n in range(23):
            sink.emit("run.started", run_detail(f"r{n}"))
        with sink.batch():  # a nested block leaves sending to the outer one
            sink.emit("run.started", run_detail("nested"))
        assert bus.sizes == [10, 10]
    assert bus.sizes == [10, 10, 4]
    assert len(bus.received("everything")) == 24
    # outside a batch every event is sent at once
    sink.emit("run.failed", run_detail("alone", state="failed"))
    assert bus.sizes[-1] == 1
    assert [e["detail"]["run_id"] for e in bus.received("failed-runs")] == ["alone"]


def test_a_batch_that_raises_still_sends_what_was_emitted(bus: Bus) -> None:
    sink = EventBridgeEvents(BUS, client=bus.events)

    def handler() -> None:
        with sink.batch():
            sink.emit("run.started", run_detail("before-crash"))
            raise RuntimeError("handler crashed after its state was written")

    with pytest.raises(RuntimeError):
        handler()
    assert [e["detail"]["run_id"] for e in bus.received("everything")] == ["before-crash"]


def test_entries_eventbridge_keeps_refusing_are_retried_then_raised(bus: Bus) -> None:
    """moto refuses an entry whose Detail is not JSON on every attempt (FailedEntryCount 1):
    the good entries of the request are delivered once, the bad one is sent again and then
    named in the error."""
    sink = EventBridgeEvents(BUS, client=bus.events, sleep=(slept := []).append)
    good = [sink.entry("run.started", run_detail(f"ok{n}")) for n in range(2)]
    broken = {**good[0], "Detail": "{not json"}
    with pytest.raises(EventPublishError) as error:
        sink.publish([good[0], broken, good[1]])
    assert "MalformedDetail" in str(error.value)
    assert BUS in str(error.value)
    assert bus.sizes == [3] + [1] * (PUT_ATTEMPTS - 1)
    assert len(slept) == PUT_ATTEMPTS - 1
    assert [e["detail"]["run_id"] for e in bus.received("everything")] == ["ok0", "ok1"]


class ThrottleOnce:
    """The real (moto) client, except that the first PutEvents withholds its second entry and
    reports it as throttled, as EventBridge may; moto itself never fails an entry
    transiently, so the partial failure is injected at the client boundary. Everything else,
    including the retry, goes to moto."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.throttled = False

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self.throttled or len(Entries) < 2:
            result: dict[str, Any] = self.client.put_events(Entries=Entries)
            return result
        self.throttled = True
        sent = self.client.put_events(Entries=[Entries[0], *Entries[2:]])["Entries"]
        refused = {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}
        return {"FailedEntryCount": 1, "Entries": [sent[0], refused, *sent[1:]]}


def test_an_entry_refused_once_is_sent_again_and_arrives_once(bus: Bus) -> None:
    sink = EventBridgeEvents(BUS, client=ThrottleOnce(bus.events), sleep=lambda _: None)
    with sink.batch():
        for n in range(3):
            sink.emit("run.started", run_detail(f"r{n}"))
    assert bus.sizes == [2, 1]  # the first request sent two of three; the retry the third
    assert sorted(e["detail"]["run_id"] for e in bus.received("everything")) == ["r0", "r1", "r2"]


# ------------------------------------------------------------------ the detail itself


def run_detail(run_id: str, *, state: str = "running") -> dict[str, Any]:
    return {
        "run_id": run_id,
        "workflow": "nightly",
        "project": "analytics",
        "version": 2,
        "state": state,
        "logical_date": "2026-11-21T02:00:00+00:00",
    }


def test_the_detail_is_an_allow_list_and_long_errors_are_trimmed() -> None:
    detail = {
        **run_detail("r1"),
        "params": {"password": "hunter2"},
        "outputs": {"key": "value"},
        "task_id": "load",
        "attempt": 3,
        "task_state": "failed",
        "error": "x" * 5000,
    }
    published = event_detail("task.failed", detail)
    assert "params" not in published
    assert "outputs" not in published
    assert len(published["error"]) == ERROR_LIMIT
    assert published["error"].endswith("…")
    assert list(Draft202012Validator(SCHEMA).iter_errors(published)) == []
    # a run event carries no task fields even if it was given some
    assert "task_id" not in event_detail("run.failed", detail)


def test_an_unknown_kind_or_a_missing_field_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown lifecycle event kind 'run\.paused'"):
        event_detail("run.paused", run_detail("r1"))
    with pytest.raises(ValueError, match=r"task\.failed event detail is missing attempt, error"):
        event_detail("task.failed", {**run_detail("r1"), "task_id": "t", "task_state": "failed"})


def test_the_schema_names_exactly_what_the_code_publishes() -> None:
    properties = SCHEMA["properties"]
    assert properties["kind"]["enum"] == list(DETAIL_TYPES)
    assert properties["run_state"]["enum"] == [state.value for state in RunState]
    assert properties["task_state"]["enum"] == [state.value for state in TaskState]
    assert properties["error"]["maxLength"] == ERROR_LIMIT
    task = event_detail(
        "task.retrying",
        {
            **run_detail("r"),
            "task_id": "t",
            "attempt": 1,
            "task_state": "up_for_retry",
            "error": None,
            "parent_run": "p",  # a sub-workflow's run names its parent
            "parent_task": "sub",
        },
    )
    backfill = event_detail("backfill.started", BACKFILL)
    assert set(properties) == set(task) | set(backfill)
    assert properties["backfill_state"]["enum"] == [state.value for state in BackfillState]
    assert set(properties["dates"]["properties"]) == {state.value for state in DateState}
    assert MAX_BATCH == 10


BACKFILL = {
    "backfill_id": "default.backfill-daily-20260101T000000-abcdef",
    "project": "default",
    "workflow": "daily",
    "state": "running",
    "dates": {
        "pending": 2,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "stopped": 0,
        "skipped": 0,
        "not_run": 0,
    },
    "params": {"password": "hunter2"},
    "parent": None,
}


def test_a_backfill_event_is_published_from_its_own_allow_list() -> None:
    published = event_detail("backfill.failed", BACKFILL)
    assert published["backfill_state"] == "running"
    assert "params" not in published
    assert "run_id" not in published
    assert list(Draft202012Validator(SCHEMA).iter_errors(published)) == []
    # a backfill event with run fields, or a run event with backfill fields, is refused
    mixed = {**published, "run_id": "r"}
    assert list(Draft202012Validator(SCHEMA).iter_errors(mixed))
    with pytest.raises(ValueError, match="missing dates"):
        event_detail("backfill.started", {k: v for k, v in BACKFILL.items() if k != "dates"})


def test_the_schema_rejects_a_detail_with_a_field_it_does_not_name() -> None:
    leaked = {**event_detail("run.started", run_detail("r")), "params": {"a": 1}}
    assert list(Draft202012Validator(SCHEMA).iter_errors(leaked))
    missing_task = {**event_detail("run.started", run_detail("r")), "kind": "task.failed"}
    assert list(Draft202012Validator(SCHEMA).iter_errors(missing_task))


def test_the_documented_example_event_is_valid() -> None:
    text = (DOCS / "events.md").read_text()
    found = re.search(r"Example \(`Task Retrying`\):\s*```json\n(.*?)```", text, re.DOTALL)
    assert found, "docs/events.md lost its example event"
    example = json.loads(found.group(1))
    assert list(Draft202012Validator(SCHEMA).iter_errors(example["detail"])) == []
    assert example["detail-type"] == DETAIL_TYPES[example["detail"]["kind"]]
    assert datetime.fromisoformat(example["detail"]["logical_date"]).tzinfo is not None
