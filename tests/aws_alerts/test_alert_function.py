"""Alerts on AWS, on moto, wired as template.yaml wires them: the real Scheduler commits its
turns to a state table with a stream and publishes nothing itself (``StreamPublished``); the
lifecycle function's publisher reads the stream and puts the lifecycle events on an
EventBridge bus; a rule with the template's own pattern (``AlertFunction`` / ``Lifecycle``)
routes them; the real handler of functions/alert/app.py receives what the rule delivered. Channels send to a local HTTP stub
(PagerDuty, a webhook), SES and SNS on moto; secrets come from Secrets Manager on moto.

moto's Lambda cannot run our code without Docker, so the rule's target here is an SQS queue
and the test hands each delivered event to the handler, as Lambda would.
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

from stratoflow.adapters.aws.alerts import ALERT_TABLE_SCHEMA, DynamoAlertStore
from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.adapters.aws.events import EventBridgeEvents
from stratoflow.adapters.aws.lifecycle import LifecyclePublisher, StreamPublished, spec_reader
from stratoflow.alerts import AlertFacts, Planned, validate_channel
from stratoflow.engine import AttemptResult, AttemptStatus, Run, RunState, TaskState
from stratoflow.service import Finished, Scheduler
from tests.alerts.conftest import Recorder
from tests.aws_projector.conftest import Stream
from tests.fakes import FakeClock, RecordingDispatcher

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
GROUP = "stack"
SENDER = "alerts@example.com"
WORKFLOW = """
name: nightly
sla: 2h
params: {ok: "no"}
alerts:
  - on: [failure, recovered, sla_miss]
    group: oncall
tasks:
  load: {type: shell, command: "true"}
"""


def template_pattern() -> dict[str, Any]:
    sam = yaml_parse((ROOT / "template.yaml").read_text())
    events = sam["Resources"]["AlertFunction"]["Properties"]["Events"]
    return dict(events["Lifecycle"]["Properties"]["Pattern"])


@dataclass
class Context:  # what the powertools decorators read of a LambdaContext
    function_name: str = "stack-alert"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:stack-alert"
    aws_request_id: str = "req"


class Stack:
    def __init__(self, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.recorder = recorder
        ddb = boto3.client("dynamodb", region_name=REGION)
        state_table, alert_table = f"state-{suffix}", f"alerts-{suffix}"
        create_table(ddb, state_table)
        self.state_table = state_table
        ddb.create_table(**ALERT_TABLE_SCHEMA, TableName=alert_table)
        self.alerts = DynamoAlertStore(alert_table, ddb)
        # the bus, and the template's rule on it (an SQS queue stands for the function)
        events = boto3.client("events", region_name=REGION)
        bus = events.create_event_bus(Name=f"{GROUP}-events")["EventBusArn"]
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.inbox = self.sqs.create_queue(QueueName="alert-function")["QueueUrl"]
        inbox_arn = self.sqs.get_queue_attributes(QueueUrl=self.inbox, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name="alerts", EventBusName=bus, EventPattern=json.dumps(template_pattern())
        )
        events.put_targets(Rule="alerts", EventBusName=bus,
                           Targets=[{"Id": "fn", "Arn": inbox_arn}])  # fmt: skip
        # the other rule-less noise on the bus must not reach the function
        self.scheduler_client = boto3.client("scheduler", region_name=REGION)
        self.scheduler_client.create_schedule_group(Name=GROUP)
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secrets.create_secret(Name="stratoflow/default/pd", SecretString="PDKEY-canary")
        secrets.create_secret(Name="stratoflow/default/hook", SecretString=f"{recorder.url}/hook")
        self.ses = boto3.client("ses", region_name=REGION)
        self.ses.verify_email_identity(EmailAddress=SENDER)
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="oncall")["TopicArn"]
        self.topic_inbox = self.sqs.create_queue(QueueName="topic")["QueueUrl"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=self.sqs.get_queue_attributes(
            QueueUrl=self.topic_inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])  # fmt: skip
        now = datetime.now(UTC)
        for name, type_, settings in (
            ("pd", "pagerduty", {"routing_key": "{{ secrets.pd }}", "base_url": recorder.url}),
            ("hook", "webhook", {"url": "{{ secrets.hook }}"}),
            ("mail", "email", {"host": "ses", "from": SENDER, "to": "oncall@example.com"}),
            ("topic", "sns", {"topic_arn": topic, "region": REGION}),
        ):
            self.alerts.put_channel(validate_channel("default", name, type_, settings), now)
        self.alerts.set_group("default", "oncall", ["pd", "hook", "mail", "topic"], now)
        # the scheduler as on AWS: its events go out from the state table's stream
        self.store = DynamoStore(state_table, client=ddb)
        self.stream = Stream(ddb, state_table)
        self.publisher = LifecyclePublisher(
            self.store, EventBridgeEvents(f"{GROUP}-events", client=events), spec_reader(self.store)
        )
        self.dispatcher = RecordingDispatcher()
        # the function reads the real clock: the scheduler's starts there too (a success
        # resolves the incidents opened before it ended)
        self.clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
        self.scheduler = Scheduler(self.store, self.store, self.dispatcher, self.clock,
                                   StreamPublished())  # fmt: skip
        self.scheduler.apply(textwrap.dedent(WORKFLOW))
        for name, value in {
            "STRATOFLOW_TABLE": state_table, "STRATOFLOW_ALERT_TABLE": alert_table,
            "STRATOFLOW_ALERT_SCHEDULE_GROUP": GROUP,
            "STRATOFLOW_ALERT_FUNCTION_ARN": Context.invoked_function_arn,
            "STRATOFLOW_ALERT_SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/alert-sched",
            "POWERTOOLS_SERVICE_NAME": "stratoflow", "POWERTOOLS_METRICS_NAMESPACE": "Stratoflow",
            "POWERTOOLS_TRACE_DISABLED": "1",
        }.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        self.function = load_handler()

    def run(self, ok: bool) -> Run:
        run, _ = self.scheduler.trigger("default", "nightly")
        for _ in range(20):
            self.scheduler.step()
            self.scheduler.dispatch_ready()
            if not self.dispatcher.pending:
                break
            key = next(iter(self.dispatcher.pending))
            del self.dispatcher.pending[key]
            status = AttemptStatus.SUCCEEDED if ok else AttemptStatus.FAILED
            result = AttemptResult(status, error=None if ok else "load broke", exit_code=0)
            self.scheduler.on_finished([Finished(*key, result, log="s3://logs/x")])
        self.clock.advance(60)
        return self.store.get_run(run.id)

    def publish_stream(self) -> list[dict[str, Any]]:
        """Hand the stream records written since the last call to the lifecycle publisher,
        as Lambda does (in batches of 100, the template's BatchSize); returns the records."""
        records = self.stream.read()
        for start in range(0, len(records), 100):
            result = self.publisher.handle({"Records": records[start : start + 100]})
            assert result.failed == []
        return records

    def delivered_events(self) -> list[dict[str, Any]]:
        """What the rule delivered since the last call, as the function receives it (the
        stream's new records are published first)."""
        self.publish_stream()
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10)
            for message in got.get("Messages", []):
                out.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.inbox,
                                        ReceiptHandle=message["ReceiptHandle"])  # fmt: skip
            if not got.get("Messages"):
                return out

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.function.handler(event, Context())
        return result

    def topic_messages(self) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(QueueUrl=self.topic_inbox, MaxNumberOfMessages=10)
        for message in got.get("Messages", []):
            self.sqs.delete_message(QueueUrl=self.topic_inbox,
                                    ReceiptHandle=message["ReceiptHandle"])  # fmt: skip
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]

    def emails_sent(self) -> int:
        return int(self.ses.get_send_quota()["SentLast24Hours"])

    def schedules(self) -> list[dict[str, Any]]:
        listed = self.scheduler_client.list_schedules(GroupName=GROUP)["Schedules"]
        return [dict(self.scheduler_client.get_schedule(Name=s["Name"], GroupName=GROUP))
                for s in listed]  # fmt: skip


def load_handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"alert_app_{uuid.uuid4().hex[:6]}", ROOT / "functions" / "alert" / "app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stack(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",  # what moto's stream API needs
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield Stack(recorder, monkeypatch)


def test_a_failing_run_alerts_each_channel_once_and_a_redelivery_sends_nothing_more(
    stack: Stack,
) -> None:
    failed = stack.run(ok=False)
    assert failed.state.value == "failed"
    events = stack.delivered_events()
    kinds = [e["detail"]["kind"] for e in events]
    assert "run.started" in kinds
    assert "run.failed" in kinds
    for event in events:
        stack.invoke(event)

    (trigger,) = stack.recorder.on("/v2/enqueue")
    assert trigger.body["event_action"] == "trigger"
    assert trigger.body["routing_key"] == "PDKEY-canary"
    assert trigger.body["dedup_key"] == f"stratoflow/default/nightly/{failed.id}"
    (hook,) = stack.recorder.on("/hook")
    assert hook.body["event"] == "failure"
    assert hook.headers["idempotency-key"].startswith(f"failure:{failed.id}:")
    assert stack.emails_sent() == 1
    (published,) = stack.topic_messages()
    assert published["Subject"] == "[FAILURE] default/nightly failed"
    statuses = {d.channel: d.status for d in stack.alerts.list_deliveries("default")[0]}
    assert statuses == {"pd": "sent", "hook": "sent", "mail": "sent", "topic": "sent"}

    # the rule delivers again (at least once), or Lambda retries the invocation
    for event in events:
        stack.invoke(event)
    assert len(stack.recorder.requests) == 2
    assert stack.emails_sent() == 1
    assert stack.topic_messages() == []
    assert len(stack.alerts.list_deliveries("default")[0]) == 4


def test_the_next_success_resolves_the_incident_with_the_same_dedup_key(stack: Stack) -> None:
    failed = stack.run(ok=False)
    for event in stack.delivered_events():
        stack.invoke(event)
    succeeded = stack.run(ok=True)
    assert succeeded.state.value == "succeeded"
    for event in stack.delivered_events():
        stack.invoke(event)
    pd = stack.recorder.on("/v2/enqueue")
    assert [r.body["event_action"] for r in pd] == ["trigger", "trigger", "resolve"]
    assert {r.body["dedup_key"] for r in pd} == {f"stratoflow/default/nightly/{failed.id}"}
    recovered = [r for r in stack.recorder.on("/hook") if r.body["event"] == "recovered"]
    assert len(recovered) == 1


def test_sla_deadline_is_a_one_time_schedule_set_at_start_and_deleted_at_the_end(
    stack: Stack,
) -> None:
    run, _ = stack.scheduler.trigger("default", "nightly")
    stack.scheduler.step()
    (started,) = [e for e in stack.delivered_events() if e["detail"]["kind"] == "run.started"]
    stack.invoke(started)
    stack.invoke(started)  # redelivered: still one schedule
    (schedule,) = stack.schedules()
    due = (stack.store.get_run(run.id).started_at or run.created_at) + timedelta(hours=2)
    assert schedule["ScheduleExpression"] == f"at({due.replace(tzinfo=None).isoformat()})"
    assert schedule["Target"]["Arn"] == Context.invoked_function_arn
    payload = json.loads(schedule["Target"]["Input"])
    assert payload["action"] == "sla"
    assert payload["run_id"] == run.id

    # the deadline fires while the run is still going: one sla_miss per channel, once
    stack.invoke(payload)
    stack.invoke(payload)
    misses = [r for r in stack.recorder.on("/hook") if r.body["event"] == "sla_miss"]
    assert len(misses) == 1
    assert stack.emails_sent() == 1

    # a run that ends deletes its deadline
    stack.scheduler.dispatch_ready()
    key = next(iter(stack.dispatcher.pending))
    stack.scheduler.on_finished(
        [Finished(*key, AttemptResult(AttemptStatus.SUCCEEDED, exit_code=0), log="s3://l/x")]
    )
    stack.scheduler.step()
    for event in stack.delivered_events():
        stack.invoke(event)
    assert stack.schedules() == []


TASK_SLA = """
name: staged
alerts: [{on: [sla_miss], group: oncall}]
tasks:
  slow: {type: shell, command: "true", sla: 30m}
  quick: {type: shell, command: "true", sla: 30m}
"""


def test_each_tasks_sla_is_a_schedule_of_its_own_and_only_a_late_task_alerts(
    stack: Stack,
) -> None:
    stack.scheduler.apply(textwrap.dedent(TASK_SLA))
    run, _ = stack.scheduler.trigger("default", "staged")
    stack.scheduler.step()
    stack.scheduler.dispatch_ready()
    quick = next(k for k in stack.dispatcher.pending if k[1] == "quick")
    del stack.dispatcher.pending[quick]
    stack.scheduler.on_finished(
        [Finished(*quick, AttemptResult(AttemptStatus.SUCCEEDED, exit_code=0), log="s3://l/x")]
    )
    stack.scheduler.step()
    for event in stack.delivered_events():
        stack.invoke(event)
    schedules = stack.schedules()
    payloads = {json.loads(s["Target"]["Input"])["task_id"]: s for s in schedules}
    assert set(payloads) == {"slow", "quick"}  # the workflow has no sla of its own
    due = (stack.store.get_run(run.id).started_at or run.created_at) + timedelta(minutes=30)
    for schedule in schedules:
        assert schedule["ScheduleExpression"] == f"at({due.replace(tzinfo=None).isoformat()})"

    # both deadlines fire: quick was done in time, slow was not
    for schedule in schedules:
        stack.invoke(json.loads(schedule["Target"]["Input"]))
    (miss,) = [r for r in stack.recorder.on("/hook") if r.body["event"] == "sla_miss"]
    assert (miss.body["run_id"], miss.body["task_id"]) == (run.id, "slow")
    (page,) = stack.recorder.on("/v2/enqueue")
    assert page.body["dedup_key"] == f"stratoflow/default/staged/{run.id}/slow"


def test_a_failed_send_is_retried_by_a_one_time_schedule_until_it_goes_through(
    stack: Stack,
) -> None:
    stack.recorder.answer((503, {"error": "busy"}), (200, {"ok": True}))
    stack.run(ok=False)
    for event in stack.delivered_events():
        stack.invoke(event)
    by_channel = {d.channel: d for d in stack.alerts.list_deliveries("default")[0]}
    # the first request the stub saw got the 503 (PagerDuty is sent first)
    assert by_channel["pd"].status == "retrying"
    assert by_channel["pd"].last_error is not None
    assert "HTTP 503" in by_channel["pd"].last_error
    assert "PDKEY-canary" not in by_channel["pd"].last_error
    (retry,) = [s for s in stack.schedules() if s["Name"].startswith("alert-deliver-")]
    payload = json.loads(retry["Target"]["Input"])
    assert (payload["channel"], payload["action"]) == ("pd", "deliver")
    next_at = by_channel["pd"].next_at
    assert next_at is not None
    assert (
        retry["ScheduleExpression"]
        == f"at({next_at.replace(microsecond=0, tzinfo=None).isoformat()})"
    )
    # never sooner than Scheduler can fire (a minute), though the backoff's first step is 5 s
    assert next_at - by_channel["pd"].created_at >= timedelta(minutes=1)
    assert stack.invoke(payload) == {"tried": 1}
    assert stack.alerts.get(payload["key"], "default", "pd").status == "sent"
    assert stack.invoke(payload) == {"tried": 0}  # the schedule fired twice: nothing more
    assert len(stack.recorder.on("/v2/enqueue")) == 2


def test_a_deadline_already_due_when_the_run_start_is_handled_is_checked_at_once(
    stack: Stack,
) -> None:
    stack.scheduler.apply(textwrap.dedent(WORKFLOW).replace("sla: 2h", "sla: 30s"))
    stack.scheduler.trigger("default", "nightly")
    stack.scheduler.step()
    (started,) = [e for e in stack.delivered_events() if e["detail"]["kind"] == "run.started"]
    stack.invoke(started)
    assert stack.schedules() == []  # less than Scheduler's minute away: not scheduled
    misses = [r for r in stack.recorder.on("/hook") if r.body["event"] == "sla_miss"]
    assert len(misses) == 1


def test_a_send_that_died_with_its_invocation_is_sent_once_after_its_lease(
    stack: Stack,
) -> None:
    """The function died after it claimed a record and before it sent (a timeout, a crash):
    Lambda's retry finds the lease, sends nothing, and leaves a one-time schedule that looks
    again once the lease has run out."""
    failed = stack.run(ok=False)
    events = stack.delivered_events()
    (ended,) = [e for e in events if e["detail"]["kind"] == "run.failed"]
    ended_at = stack.store.get_run(failed.id).ended_at
    assert ended_at is not None
    key = f"failure:{failed.id}:{ended_at.isoformat()}"
    facts = AlertFacts("failure", "default", "nightly", run_id=failed.id)
    stack.alerts.add(Planned(key, "oncall", facts), "hook", datetime.now(UTC))
    assert stack.alerts.claim(key, "default", "hook", datetime.now(UTC)) is not None  # then died
    stack.invoke(ended)  # Lambda's retry of the event
    assert stack.recorder.on("/hook") == []
    (look,) = [s for s in stack.schedules() if s["Name"].startswith("alert-deliver-")]
    payload = json.loads(look["Target"]["Input"])
    assert stack.invoke(payload) == {"tried": 0}  # the lease still holds
    stack.alerts.client.update_item(  # ... until it has run out
        TableName=stack.alerts.table,
        Key={"pk": {"S": "D#default"}, "sk": {"S": f"{key}#hook"}},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": {"S": "2000-01-01T00:00:00.000000Z"}},
    )
    assert stack.invoke(payload) == {"tried": 1}
    assert stack.invoke(payload) == {"tried": 0}
    (hook,) = stack.recorder.on("/hook")
    assert hook.body["event"] == "failure"


def test_the_channel_secret_is_in_no_record_event_or_log(
    stack: Stack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    stack.recorder.answer((500, {"error": "PDKEY-canary rejected"}), (200, {"ok": True}))
    stack.run(ok=False)
    events = stack.delivered_events()
    for event in events:
        stack.invoke(event)
    (trigger,) = stack.recorder.on("/v2/enqueue")
    assert trigger.body["routing_key"] == "PDKEY-canary"  # it was used...
    ddb = boto3.client("dynamodb", region_name=REGION)
    stored = json.dumps(ddb.scan(TableName=stack.alerts.table)["Items"])
    assert "retrying" in stored
    assert "*** rejected" in stored  # the provider echoed the key: scrubbed
    assert "PDKEY-canary" not in stored  # ...and is kept nowhere
    assert "PDKEY-canary" not in json.dumps(events)
    assert "PDKEY-canary" not in json.dumps(stack.schedules(), default=str)
    out = capsys.readouterr()
    assert "PDKEY-canary" not in out.out + out.err + caplog.text


def test_an_event_no_alert_comes_of_is_taken_quietly(stack: Stack) -> None:
    backfill = {"source": "stratoflow", "detail-type": "Backfill Started",
                "detail": {"schema_version": 1, "kind": "backfill.started"}}  # fmt: skip
    assert stack.invoke(backfill) == {"tried": 0}
    with pytest.raises(ValueError, match="not a Stratoflow lifecycle event"):
        stack.invoke({"detail-type": "Something Else", "detail": {}})


def test_a_failed_run_marked_succeeded_resolves_its_incident_once(stack: Stack) -> None:
    """The mark ends the run at once (nothing left to run): its run item goes from failed
    to succeeded, the stream publishes run.succeeded, and the incident the failure opened
    is resolved; a redelivery sends nothing more."""
    failed = stack.run(ok=False)
    for event in stack.delivered_events():
        stack.invoke(event)
    (trigger,) = stack.recorder.on("/v2/enqueue")

    marked = stack.scheduler.mark(failed.id, "load", TaskState.SUCCEEDED)
    assert marked.state is RunState.SUCCEEDED
    events = stack.delivered_events()
    assert [e["detail"]["kind"] for e in events] == ["run.succeeded"]
    assert events[0]["detail"]["run_state"] == "succeeded"
    for event in events:
        stack.invoke(event)

    pd = stack.recorder.on("/v2/enqueue")
    assert [r.body["event_action"] for r in pd] == ["trigger", "resolve"]
    assert pd[1].body["dedup_key"] == trigger.body["dedup_key"]
    for event in events:  # delivered again
        stack.invoke(event)
    assert len(stack.recorder.on("/v2/enqueue")) == 2
