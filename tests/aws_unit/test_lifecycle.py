"""Which stream record makes which lifecycle event (stratoflow.adapters.aws.lifecycle.derive),
from images the store's own codec writes; every record that makes one passes the event source
mapping's filters (checked with moto's EventBridge pattern matcher: Lambda's filters use the
same rules); the publisher's warn_fail check and its handling of a run that is gone."""

from __future__ import annotations

import json
from base64 import b64encode
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.events.models import EventPattern

from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws.dynamo_backfills import _item as backfill_item
from stratoflow.adapters.aws.lifecycle import (
    STREAM_FILTERS,
    LifecyclePublisher,
    derive,
)
from stratoflow.adapters.aws.projector import StreamRecord
from stratoflow.engine import (
    HELD_RETRY_ERROR,
    AttemptResult,
    AttemptStatus,
    Run,
    RunState,
    TaskInstance,
    TaskState,
    claim,
    held_retry,
    on_attempt_finished,
)
from stratoflow.engine.backfill import BackfillState
from stratoflow.errors import NotFound
from stratoflow.model import WorkflowSpec, load_workflow
from tests.contract.test_backfill_store import made as a_backfill

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
RUN = Run("p.w-1", "w", "p", 3, RunState.QUEUED, {}, T0, T0)
Item = dict[str, Any]
_seq = iter(range(1000, 10**6))


def record(old: Item | None, new: Item | None) -> dict[str, Any]:
    some = new if new is not None else old
    assert some is not None
    body: dict[str, Any] = {
        "Keys": {"pk": some["pk"], "sk": some["sk"]},
        "SequenceNumber": str(next(_seq)),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        body["NewImage"] = new
    if old is not None:
        body["OldImage"] = old
    event = "REMOVE" if new is None else ("INSERT" if old is None else "MODIFY")
    return {"eventName": event, "dynamodb": body}


def run_item(state: RunState) -> Item:
    return it.run_attributes(RUN.with_(state=state), None)


def task_item(
    state: TaskState, attempt: int = 1, deadline: datetime | None = None, error: str | None = None
) -> Item:
    task = TaskInstance(RUN.id, "load", state, attempt=attempt, deadline=deadline, error=error)
    return it.task_item(task, "0001" if state is TaskState.QUEUED else None)


def attempt_item(state: str) -> Item:
    return {
        **it.key(it.run_pk(RUN.id), it.attempt_sk("load", 2)),
        "run": {"S": RUN.id}, "task": {"S": "load"}, "attempt": {"N": "2"},
        "st": {"S": state}, "started_at": {"S": it.ts(T0)}, "outputs": {"S": "{}"},
    }  # fmt: skip


def kind_of(raw: dict[str, Any]) -> str | None:
    made = derive(StreamRecord.parse(raw))
    return None if made is None else made.kind


def passes_filters(raw: dict[str, Any]) -> bool:
    body = json.loads(json.dumps(raw["dynamodb"], default=lambda b: b64encode(b).decode()))
    return any(
        EventPattern.load(json.dumps(f)).matches_event({"dynamodb": body}) for f in STREAM_FILTERS
    )


LOCK = {**it.key(it.run_pk(RUN.id), it.RUN_SK), "lock": {"S": "t"}, "lease": {"N": "1"}}
DL = T0 + timedelta(hours=1)
CASES: list[tuple[str, Item | None, Item | None, str | None]] = [
    ("created queued", LOCK, run_item(RunState.QUEUED), None),
    ("created running", LOCK, run_item(RunState.RUNNING), "run.started"),
    ("started", run_item(RunState.QUEUED), run_item(RunState.RUNNING), "run.started"),
    ("paused", run_item(RunState.RUNNING), run_item(RunState.PAUSED), None),
    ("resumed", run_item(RunState.PAUSED), run_item(RunState.RUNNING), None),
    ("same state", run_item(RunState.RUNNING), run_item(RunState.RUNNING), None),
    ("failed", run_item(RunState.RUNNING), run_item(RunState.FAILED), "run.failed"),
    ("succeeded", run_item(RunState.RUNNING), run_item(RunState.SUCCEEDED), "run.succeeded"),
    ("stopped while paused", run_item(RunState.PAUSED), run_item(RunState.STOPPED),
     "run.stopped"),
    ("rerun", run_item(RunState.FAILED), run_item(RunState.RUNNING), "run.started"),
    # a failed (or stopped) run a mark ends at once in another state: a new end
    ("marked succeeded", run_item(RunState.FAILED), run_item(RunState.SUCCEEDED),
     "run.succeeded"),
    ("stopped, marked", run_item(RunState.STOPPED), run_item(RunState.FAILED), "run.failed"),
    ("ended the same again", run_item(RunState.FAILED), run_item(RunState.FAILED), None),
    ("removed", run_item(RunState.FAILED), None, None),
    ("claimed", task_item(TaskState.QUEUED, 0), task_item(TaskState.RUNNING, 1, DL), None),
    ("task succeeded", task_item(TaskState.RUNNING), task_item(TaskState.SUCCEEDED), None),
    ("task failed", task_item(TaskState.RUNNING), task_item(TaskState.FAILED), "task.failed"),
    ("intent retired", task_item(TaskState.FAILED), task_item(TaskState.FAILED), None),
    ("retrying", task_item(TaskState.RUNNING), task_item(TaskState.UP_FOR_RETRY),
     "task.retrying"),
    ("retry queued", task_item(TaskState.UP_FOR_RETRY), task_item(TaskState.QUEUED), None),
    ("upstream failed", task_item(TaskState.WAITING, 0),
     task_item(TaskState.UPSTREAM_FAILED, 0), None),
    ("warned", task_item(TaskState.RUNNING, 1, DL), task_item(TaskState.RUNNING, 1),
     "task.timeout"),
    # a dependency task's on_timeout: warn keeps its deadline (its next check): its error says
    ("dependency warned", task_item(TaskState.RUNNING, 1, DL),
     task_item(TaskState.RUNNING, 1, DL + timedelta(minutes=1), "timed out after 1h"),
     "task.timeout"),
    ("dependency checked again after its warning",
     task_item(TaskState.RUNNING, 1, DL, "timed out after 1h"),
     task_item(TaskState.RUNNING, 1, DL + timedelta(minutes=1), "timed out after 1h"), None),
    ("retry claimed", task_item(TaskState.QUEUED, 1, None, "exit 1"),
     task_item(TaskState.RUNNING, 2, DL), None),
    ("attempt timed out", None, attempt_item("timed_out"), "task.timeout"),
    ("attempt failed", None, attempt_item("failed"), None),
    ("attempt ttl", attempt_item("timed_out"), attempt_item("timed_out"), None),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "kind"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_change_makes_the_event_the_scheduler_decided(
    old: Item | None, new: Item | None, kind: str | None
) -> None:
    raw = record(old, new)
    assert kind_of(raw) == kind
    if kind is not None:
        assert passes_filters(raw)


def retry_images() -> dict[str, TaskInstance]:
    """A task's retry as the engine moves it on AWS (retries dispatched early): attempt 1
    fails, its retry is claimed at once (attempt 2, starting when the delay runs out), a
    pause takes that claim back (the pause itself, or the runner's ``held`` report at the
    wake: the same transition), the resume claims it again (attempt 3), which fails too."""
    flaky = load_workflow(
        "name: w\ntasks:\n  load: {type: shell, command: 'false', retries: 2, retry_delay: 30s}\n"
    )
    failed = AttemptResult(AttemptStatus.FAILED, error="exit code 1", exit_code=1)
    held = AttemptResult(AttemptStatus.STOPPED, error=HELD_RETRY_ERROR, held=True)

    def ended(ti: TaskInstance, result: AttemptResult, at: datetime) -> TaskInstance:
        made = on_attempt_finished(flaky, ti, ti.attempt, result, at)
        assert made is not None
        return made.task

    first = claim(flaky, TaskInstance(RUN.id, "load", TaskState.QUEUED), T0)
    retrying = ended(first, failed, T0 + timedelta(seconds=10))
    early = claim(flaky, retrying.with_(state=TaskState.QUEUED), T0 + timedelta(seconds=10))
    assert early.started_at == retrying.ready_at  # it waits out the delay in its executor
    (paused,) = held_retry(early, T0 + timedelta(seconds=15)).tasks
    at_wake = ended(early, held, T0 + timedelta(seconds=40))
    again = claim(flaky, paused.task.with_(state=TaskState.QUEUED), T0 + timedelta(minutes=1))
    return {
        "running": first, "retrying": retrying, "early": early, "paused": paused.task,
        "at_wake": at_wake, "again": again,
        "retrying again": ended(again, failed, T0 + timedelta(minutes=2)),
    }  # fmt: skip


RETRY = retry_images()
RETRY_CASES: list[tuple[str, str, str, str | None]] = [
    ("a failed attempt", "running", "retrying", "task.retrying"),
    ("the retry claimed early", "retrying", "early", None),
    ("a pause holds the claim", "early", "paused", None),
    ("the runner holds it at its wake", "early", "at_wake", None),
    ("the resume claims it again", "paused", "again", None),
    ("the released retry fails", "again", "retrying again", "task.retrying"),
]


@pytest.mark.parametrize(
    ("old", "new", "kind"), [c[1:] for c in RETRY_CASES], ids=[c[0] for c in RETRY_CASES]
)
def test_a_retry_is_announced_when_an_attempt_fails_not_when_a_pause_holds_it(
    old: str, new: str, kind: str | None
) -> None:
    raw = record(it.task_item(RETRY[old], None), it.task_item(RETRY[new], None))
    made = derive(StreamRecord.parse(raw))
    assert (None if made is None else made.kind) == kind
    if made is not None:
        assert made.detail["attempt"] == RETRY[new].attempt
        assert made.detail["error"] == "exit code 1"
        assert passes_filters(raw)


def test_the_hot_paths_task_writes_pass_no_filter() -> None:
    for old, new in (
        (task_item(TaskState.QUEUED, 0), task_item(TaskState.RUNNING, 1, DL)),
        (task_item(TaskState.RUNNING, 1, DL), task_item(TaskState.SUCCEEDED)),
        (task_item(TaskState.WAITING, 0), task_item(TaskState.QUEUED, 0)),
        (None, attempt_item("succeeded")),
    ):
        assert not passes_filters(record(old, new))


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (None, BackfillState.RUNNING, "backfill.started"),
        (BackfillState.RUNNING, BackfillState.PAUSED, "backfill.paused"),
        (BackfillState.PAUSED, BackfillState.RUNNING, "backfill.resumed"),
        (BackfillState.PAUSED, BackfillState.CANCELLED, "backfill.cancelled"),
        (BackfillState.RUNNING, BackfillState.SUCCEEDED, "backfill.succeeded"),
        (BackfillState.RUNNING, BackfillState.FAILED, "backfill.failed"),
        (BackfillState.RUNNING, BackfillState.RUNNING, None),  # a lane moved on
    ],
)
def test_a_backfill_change_makes_its_event(
    before: BackfillState | None, after: BackfillState, kind: str | None
) -> None:
    backfill = a_backfill(1)
    old = None if before is None else backfill_item(backfill.with_(state=before))
    raw = record(old, backfill_item(backfill.with_(state=after)))
    made = derive(StreamRecord.parse(raw))
    assert (None if made is None else made.kind) == kind
    if made is not None:
        assert made.detail["backfill_id"] == backfill.id
        assert made.detail["state"] == after.value
        assert passes_filters(raw)


class FakeEvents:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def entry(self, kind: str, detail: Any) -> Any:
        return (kind, dict(detail))

    def publish(self, entries: Any) -> None:
        self.sent += entries


class FakeStore:
    def __init__(self, run: Run | None) -> None:
        self.run = run
        self.reads = 0

    def get_run(self, run_id: str) -> Run:
        self.reads += 1
        if self.run is None:
            raise NotFound(run_id)
        return self.run


def spec(on_timeout: str) -> WorkflowSpec:
    return load_workflow(
        f"name: w\ntasks:\n  load: {{type: shell, command: 'true', timeout: 1m, "
        f"on_timeout: {on_timeout}}}\n"
    )


@pytest.mark.parametrize(("mode", "published"), [("warn_fail", 1), ("fail", 0)])
def test_a_timed_out_attempt_warns_only_for_warn_fail(mode: str, published: int) -> None:
    events, store = FakeEvents(), FakeStore(RUN.with_(state=RunState.RUNNING))
    publisher = LifecyclePublisher(
        store,  # type: ignore[arg-type]
        events,  # type: ignore[arg-type]
        lambda *_: spec(mode),
    )
    result = publisher.handle({"Records": [record(None, attempt_item("timed_out"))]})
    assert (result.published, result.failed) == (published, [])
    if published:
        ((kind, detail),) = events.sent
        assert kind == "task.timeout"
        assert (detail["run_id"], detail["task_id"], detail["attempt"]) == (RUN.id, "load", 2)
        assert detail["state"] == "running"


def test_task_events_read_their_run_once_per_batch_and_one_of_a_gone_run_is_dropped() -> None:
    failed = record(task_item(TaskState.RUNNING), task_item(TaskState.FAILED))
    retry = record(task_item(TaskState.RUNNING), task_item(TaskState.UP_FOR_RETRY))
    events, store = FakeEvents(), FakeStore(RUN.with_(state=RunState.RUNNING))
    publisher = LifecyclePublisher(store, events, lambda *_: spec("fail"))  # type: ignore[arg-type]
    assert publisher.handle({"Records": [failed, retry]}).published == 2
    assert store.reads == 1
    assert [d["project"] for _, d in events.sent] == ["p", "p"]
    gone = LifecyclePublisher(FakeStore(None), FakeEvents(), lambda *_: spec("fail"))  # type: ignore[arg-type]
    result = gone.handle({"Records": [failed]})
    assert (result.published, result.failed) == (0, [])


def test_an_undecodable_record_stops_the_batch_there() -> None:
    good = record(run_item(RunState.QUEUED), run_item(RunState.RUNNING))
    bad = {"eventName": "MODIFY", "dynamodb": {"SequenceNumber": "77", "Keys": {}}}
    later = record(run_item(RunState.RUNNING), run_item(RunState.FAILED))
    events = FakeEvents()
    publisher = LifecyclePublisher(FakeStore(None), events, lambda *_: spec("fail"))  # type: ignore[arg-type]
    result = publisher.handle({"Records": [good, bad, later]})
    assert [k for k, _ in events.sent] == ["run.started"]
    assert result.failed == ["77", later["dynamodb"]["SequenceNumber"]]
    assert result.response()["batchItemFailures"][0] == {"itemIdentifier": "77"}
