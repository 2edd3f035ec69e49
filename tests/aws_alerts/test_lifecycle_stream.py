"""Lifecycle events published from the state table's stream (stratoflow.adapters.aws.lifecycle),
on moto, through the alert stack of test_alert_function: whatever dies after a commit, the
failure alert reaches each channel exactly once; a redelivered stream batch sends nothing
twice; the template's stream filters let through every record that makes an event."""

from __future__ import annotations

import json
import textwrap
from base64 import b64encode
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto.events.models import EventPattern
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

from stratoflow.adapters.aws.dynamodb import DynamoStore
from stratoflow.adapters.aws.lifecycle import STREAM_FILTERS, StreamPublished, derive
from stratoflow.adapters.aws.projector import StreamRecord
from stratoflow.engine import HELD_RETRY_ERROR, AttemptResult, AttemptStatus, TaskState
from stratoflow.service import Finished, Scheduler
from tests.aws_alerts.test_alert_function import REGION, ROOT, Stack
from tests.fakes import RecordingDispatcher
from tests.faultinject import Executor, Faults, FaultyClient


def failure_alerts(stack: Stack, run_id: str) -> list[Any]:
    return [
        r
        for r in stack.recorder.on("/hook")
        if r.body["event"] == "failure" and run_id in r.headers["idempotency-key"]
    ]


def deliver_all(stack: Stack) -> list[dict[str, Any]]:
    events = stack.delivered_events()
    for event in events:
        stack.invoke(event)
    return events


def test_the_deciding_scheduler_publishes_nothing_and_the_stream_publishes_each_event_once(
    stack: Stack,
) -> None:
    failed = stack.run(ok=False)
    events = deliver_all(stack)  # the stream's records, published
    records = stack.stream.seen
    assert records
    made = [d for d in (derive(StreamRecord.parse(r)) for r in records) if d is not None]
    kinds = [d.kind for d in made]
    assert kinds.count("run.started") == 1
    assert kinds.count("run.failed") == 1
    assert kinds.count("task.failed") == 1
    assert sorted(e["detail"]["kind"] for e in events) == [
        "run.failed",
        "run.started",
        "task.failed",
    ]
    (run_failed,) = [e for e in events if e["detail"]["kind"] == "run.failed"]
    assert run_failed["detail"]["run_id"] == failed.id
    assert run_failed["detail"]["run_state"] == "failed"
    assert run_failed["detail"]["workflow_version"] == failed.version
    assert len(failure_alerts(stack, failed.id)) == 1


def test_a_redelivered_stream_batch_sends_no_alert_twice(stack: Stack) -> None:
    failed = stack.run(ok=False)
    records = stack.publish_stream()
    deliver_all(stack)
    sent = len(stack.recorder.requests)
    assert len(failure_alerts(stack, failed.id)) == 1
    assert stack.emails_sent() == 1
    # Lambda hands the same batch again (a timeout after the PutEvents, a retried shard)
    result = stack.publisher.handle({"Records": records})
    assert result.failed == []
    assert result.kinds == {"run.started": 1, "run.failed": 1, "task.failed": 1}
    again = stack.delivered_events()
    assert sorted(e["detail"]["kind"] for e in again) == [
        "run.failed",
        "run.started",
        "task.failed",
    ]
    for event in again:
        stack.invoke(event)
    assert len(stack.recorder.requests) == sent
    assert stack.emails_sent() == 1
    assert len(stack.alerts.list_deliveries("default")[0]) == 4


def test_a_batch_whose_put_fails_reports_its_records_and_its_retry_publishes_them(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.run(ok=False)
    records = stack.stream.read()
    calls: list[int] = []

    def refuse(entries: Any) -> None:
        calls.append(len(entries))
        raise RuntimeError("EventBridge unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(stack.publisher.events, "publish", refuse)
        result = stack.publisher.handle({"Records": records})
    assert calls
    first = next(
        i for i, r in enumerate(records) if derive(StreamRecord.parse(r)) is not None
    )  # nothing before the first event's record is retried
    assert result.failed == [r["dynamodb"]["SequenceNumber"] for r in records[first:]]
    assert result.published == 0
    retried = stack.publisher.handle({"Records": records[first:]})
    assert retried.failed == []
    assert retried.published == 3
    for event in stack.delivered_events():
        stack.invoke(event)
    assert len([r for r in stack.recorder.on("/hook") if r.body["event"] == "failure"]) == 1


FLAKY = """
name: flaky
alerts:
  - on: [retry]
    group: oncall
tasks:
  t: {type: shell, command: "exit 1", retries: 2, retry_delay: 30s}
"""


@pytest.mark.parametrize("held_by", ["pause", "runner"])
def test_a_pause_holding_a_retry_sends_no_retry_event_and_no_retry_alert(
    stack: Stack, held_by: str
) -> None:
    """GIVEN a task whose failed attempt 1 is retried, the retry claimed at once (AWS: it
    waits out its delay in its execution), WHEN the run is paused during the delay (the
    pause takes the claim back; or, its hold not made, the runner finds the run paused at
    its wake and reports ``held``) and resumed, and attempt 3 fails too, THEN "Task
    Retrying" is published for attempts 1 and 3 only, and the on-retry alert goes out twice:
    a hold is not a retry (the local runtime's retries wait through a pause, emitting
    nothing), nor is the resume's new claim of it."""
    dispatcher = RecordingDispatcher()
    aws = Scheduler(stack.store, stack.store, dispatcher, stack.clock, StreamPublished(),
                    retry_lead=timedelta(days=366))  # fmt: skip
    aws.apply(textwrap.dedent(FLAKY))
    run, _ = aws.trigger("default", "flaky")
    aws.advance((), runs=[run.id])

    def report(attempt: int, result: AttemptResult) -> None:
        key = (run.id, "t", attempt)
        assert key in dispatcher.pending, (key, dispatcher.pending)
        del dispatcher.pending[key]
        aws.advance([Finished(*key, result, log="s3://logs/x")])

    failed = AttemptResult(AttemptStatus.FAILED, error="exit code 1", exit_code=1)
    report(1, failed)
    assert stack.store.get_task(run.id, "t").state is TaskState.RUNNING  # claimed early
    stack.clock.advance(5)
    if held_by == "pause":
        aws.pause(run.id)
        dispatcher.pending.pop((run.id, "t", 2))  # stopped: its execution reports nothing
    else:  # a pause whose hold was never made: the runner holds it at the wake
        stack.scheduler.pause(run.id)  # (a scheduler that dispatches nothing early)
        stack.clock.advance(30)
        report(2, AttemptResult(AttemptStatus.STOPPED, error=HELD_RETRY_ERROR, held=True))
    assert stack.store.get_task(run.id, "t").state is TaskState.UP_FOR_RETRY
    aws.resume(run.id)
    aws.advance((), runs=[run.id])
    report(3, failed)
    stack.clock.advance(60)
    events = deliver_all(stack)
    retrying = [e["detail"] for e in events if e["detail-type"] == "Task Retrying"]
    assert [(d["task_id"], d["attempt"]) for d in retrying] == [("t", 1), ("t", 3)]
    assert [d["error"] for d in retrying] == ["exit code 1", "exit code 1"]
    retries = [r for r in stack.recorder.on("/hook") if r.body["event"] == "retry"]
    assert len(retries) == 2


def drive_with_crash(stack: Stack, faults: Faults) -> str:
    """The failing run, with the ``faults.at``-th write of the scheduler's turns performed
    and then failing (the function died right after that commit): each time, the process is
    replaced (a fresh scheduler on the table), the delivery comes again and the reconciler
    passes, until the run has ended."""
    faulty = FaultyClient(boto3.client("dynamodb", region_name=REGION), faults)
    dispatcher = Executor()  # what a reconciler's recovery finds claimed and never started

    def fresh() -> Scheduler:
        # a dead creation's lease runs out at once (as tests/faultinject does it)
        store = DynamoStore(stack.state_table, client=faulty, lease=timedelta(0))
        return Scheduler(store, store, dispatcher, stack.clock, StreamPublished())

    scheduler = fresh()
    faults.armed = True
    run_id = f"default.nightly-crash-{faults.at}"
    triggered = False
    report: Finished | None = None
    for _ in range(40):
        try:
            if not triggered:  # the caller retries with the run's id: one run, ever
                scheduler.trigger("default", "nightly", run_id=run_id)
                triggered = True
            if report is not None:
                scheduler.on_finished([report])
                report = None
            scheduler.recover()
            scheduler.step()
            scheduler.dispatch_ready()
            if dispatcher.pending:
                key = next(iter(dispatcher.pending))
                del dispatcher.pending[key]
                result = AttemptResult(AttemptStatus.FAILED, error="load broke", exit_code=1)
                report = Finished(*key, result, log="s3://logs/x")
                scheduler.on_finished([report])
                report = None
        except Exception:
            scheduler = fresh()  # a new container; ``report`` (if any) is delivered again
            continue
        if stack.store.get_run(run_id).state.terminal:
            break
    return run_id


# the failing run's whole drive makes 9 writes today; the last ``at`` must reach past them
SWEEP = 15


@pytest.mark.parametrize("at", range(1, SWEEP + 1))
def test_whatever_write_the_function_dies_after_the_failure_alert_is_sent_once(
    stack: Stack, at: int
) -> None:
    faults = Faults(at=at, after=True)
    run_id = drive_with_crash(stack, faults)
    assert stack.store.get_run(run_id).state.value == "failed"
    events = stack.delivered_events()
    started = [e for e in events if e["detail"]["kind"] == "run.started"]
    assert started, f"fault at write {at}: run.started was lost"
    for event in started:  # the run's SLA deadline becomes a one-time schedule
        stack.invoke(event)
    (schedule,) = stack.schedules()
    assert json.loads(schedule["Target"]["Input"])["run_id"] == run_id
    for event in events:
        if event not in started:
            stack.invoke(event)
    assert stack.schedules() == []  # the run ended: its deadline is dropped
    assert len(failure_alerts(stack, run_id)) == 1, f"fault at write {at}"
    statuses = {d.channel: d.status for d in stack.alerts.list_deliveries("default")[0]}
    assert statuses == {"pd": "sent", "hook": "sent", "mail": "sent", "topic": "sent"}
    # and the whole stream once more (a shard replayed from its start) sends nothing more
    sent = len(stack.recorder.requests)
    assert stack.publisher.handle({"Records": stack.stream.seen}).failed == []
    for event in stack.delivered_events():
        stack.invoke(event)
    assert len(stack.recorder.requests) == sent
    if at == SWEEP:
        assert not faults.fired, "the drive writes more than SWEEP times now: widen the sweep"


def template_filters() -> list[dict[str, Any]]:
    sam = yaml_parse((ROOT / "template.yaml").read_text())
    props = sam["Resources"]["LifecycleFunction"]["Properties"]["Events"]["StateStream"]
    return [json.loads(f["Pattern"]) for f in props["Properties"]["FilterCriteria"]["Filters"]]


def test_the_template_filters_are_the_publishers_and_let_every_event_record_through(
    stack: Stack,
) -> None:
    assert template_filters() == STREAM_FILTERS
    assert len(STREAM_FILTERS) <= 5  # Lambda's default quota of filters per mapping
    stack.run(ok=False)
    stack.run(ok=True)
    records = stack.stream.read()
    patterns = [EventPattern.load(json.dumps(f)) for f in STREAM_FILTERS]
    passed = 0
    for record in records:
        # as Lambda sees it: JSON, binary attributes in base64
        body = json.loads(json.dumps(record["dynamodb"], default=lambda b: b64encode(b).decode()))
        matched = any(p.matches_event({"dynamodb": body}) for p in patterns)
        passed += matched
        if derive(StreamRecord.parse(record)) is not None:
            assert matched, record["dynamodb"]["Keys"]
    # the filters spare the function most of the hot path's records
    assert passed < len(records) / 2
