"""A task waiting out its retry delay holds no slot, on both runtimes: not its pool's (another
run's pooled task takes it meanwhile), nor one of its run's ``concurrency`` (another task of
the run starts meanwhile). Locally the retry waits UP_FOR_RETRY and the loop queues it when it
is due; on AWS (the scheduler dispatches retries early, ``RETRY_LEAD``, for the state machine
to wait out) a slot-bound retry waits the same way, and its run is woken by a delayed kick
when the delay runs out (``take_retry_wakes``, ``advance(wakes=...)``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import state_store

from stratoflow.adapters.aws import handlers
from stratoflow.adapters.aws.dynamodb import RETRY_INDEX_SETTLE_SECONDS
from stratoflow.adapters.aws.results import MAX_DELAY_S, send_retry_wakes
from stratoflow.adapters.aws.runtime import RETRY_LEAD
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.errors import Conflict
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FLAKY = """\
name: flaky
tasks:
  load: {type: shell, command: 'false', pool: wh, retries: 1, retry_delay: 1h}
"""
OTHER = "name: other\ntasks:\n  load: {type: shell, command: 'true', pool: wh}\n"
NARROW = """\
name: narrow
concurrency: 1
tasks:
  flaky: {type: shell, command: 'false', retries: 1, retry_delay: 1h}
  steady: {type: shell, command: 'true'}
"""
FAILED = AttemptResult(AttemptStatus.FAILED, error="exit 1", exit_code=1)
OK = AttemptResult(AttemptStatus.SUCCEEDED, exit_code=0)


class Runtime:
    """A scheduler as the runtime drives it: locally ``step`` (the loop), on AWS ``advance``
    (the advance function) with the retry lead, its wakes delivered when due."""

    def __init__(self, kind: str, store: object, clock: FakeClock) -> None:
        self.aws = kind == "dynamodb"
        self.clock = clock
        self.dispatcher = RecordingDispatcher()
        self.scheduler = Scheduler(
            store, store, self.dispatcher, clock,  # type: ignore[arg-type]
            retry_lead=RETRY_LEAD if self.aws else timedelta(0),
        )  # fmt: skip
        self.wakes: dict[str, datetime] = {}

    def deliver(self, *ends: Finished) -> None:
        if self.aws:
            self.scheduler.advance(list(ends))
            self.wakes.update(self.scheduler.take_retry_wakes())
        else:
            self.scheduler.step(list(ends))

    def later(self, seconds: float) -> None:
        """Time goes by: the local loop turns; on AWS the delayed kicks due arrive."""
        self.clock.advance(seconds)
        if not self.aws:
            self.scheduler.step()
            return
        due = {r: w for r, w in self.wakes.items() if w <= self.clock.now()}
        for run_id in due:
            del self.wakes[run_id]
        if due:
            self.scheduler.advance((), wakes=due)
            self.wakes.update(self.scheduler.take_retry_wakes())

    def end(self, run_id: str, task_id: str, attempt: int, result: AttemptResult) -> None:
        del self.dispatcher.pending[(run_id, task_id, attempt)]
        self.deliver(Finished(run_id, task_id, attempt, result))


@pytest.mark.parametrize("kind", ["sqlite", "dynamodb"])
def test_a_pooled_retry_waiting_out_its_delay_frees_its_pool_slot(
    kind: str, tmp_path: Path
) -> None:
    clock = FakeClock(T0)
    with state_store(kind, tmp_path) as store:
        rt = Runtime(kind, store, clock)
        s = rt.scheduler
        s.set_pool("wh", 1)
        s.apply(FLAKY)
        s.apply(OTHER)
        s.trigger("default", "flaky", run_id="f")
        s.step()
        s.trigger("default", "other", run_id="o")
        s.step()
        assert sorted(rt.dispatcher.dispatched) == [("f", "load", 1)]  # o waits for the slot
        # WHEN flaky's attempt fails, its retry an hour away
        rt.end("f", "load", 1, FAILED)
        rt.later(60)
        # THEN the slot is other's meanwhile; flaky waits, holding nothing
        assert ("o", "load", 1) in rt.dispatcher.dispatched
        assert ("f", "load", 2) not in rt.dispatcher.dispatched
        assert store.get_task("f", "load").state is TaskState.UP_FOR_RETRY
        assert store.get_pool("/wh").used == 1
        # AND when other ends within the hour, the slot goes to the next that can run now,
        # not to the retry that would hold it idle for the rest of its delay
        s.trigger("default", "other", run_id="o2")
        s.step()
        rt.end("o", "load", 1, OK)
        rt.later(60)
        assert ("o2", "load", 1) in rt.dispatcher.dispatched
        assert ("f", "load", 2) not in rt.dispatcher.dispatched
        rt.end("o2", "load", 1, OK)
        assert store.get_pool("/wh").used == 0
        # AND once the hour is over, the retry takes the slot
        rt.later(3600)
        assert ("f", "load", 2) in rt.dispatcher.dispatched
        assert rt.dispatcher.dispatched[("f", "load", 2)].not_before is None  # due: no wait
        assert store.get_pool("/wh").used == 1


@pytest.mark.parametrize("kind", ["sqlite", "dynamodb"])
def test_a_retry_waiting_out_its_delay_frees_its_runs_concurrency_slot(
    kind: str, tmp_path: Path
) -> None:
    clock = FakeClock(T0)
    with state_store(kind, tmp_path) as store:
        rt = Runtime(kind, store, clock)
        s = rt.scheduler
        s.apply(NARROW)
        s.trigger("default", "narrow", run_id="n")
        s.step()
        (first,) = rt.dispatcher.pending  # concurrency 1: one of its two tasks runs
        if first[1] == "steady":  # the other order: steady ends first, then flaky starts
            rt.end("n", "steady", 1, OK)
            rt.later(1)
        assert ("n", "flaky", 1) in rt.dispatcher.pending
        rt.end("n", "flaky", 1, FAILED)
        rt.later(60)
        if first[1] == "flaky":  # the slot is free while flaky waits: steady runs now
            assert ("n", "steady", 1) in rt.dispatcher.dispatched
            rt.end("n", "steady", 1, OK)
        assert ("n", "flaky", 2) not in rt.dispatcher.dispatched
        assert store.get_task("n", "flaky").state is TaskState.UP_FOR_RETRY
        rt.later(3600)
        assert ("n", "flaky", 2) in rt.dispatcher.pending
        rt.end("n", "flaky", 2, OK)
        assert store.get_run("n").state.value == "succeeded"


class Sqs:
    """The results queue's client as ``send_retry_wakes`` calls it: what was sent, each with
    its delay."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.sent += [(e["MessageBody"], e["DelaySeconds"]) for e in Entries]
        return {}


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{n}", "receiptHandle": f"h{n}", "body": body, "attributes": {},
                "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:results",
                "awsRegion": "us-east-1",
            }
            for n, body in enumerate(bodies)
        ]
    }  # fmt: skip


def test_on_aws_a_delayed_kick_wakes_the_run_when_the_retry_is_due(tmp_path: Path) -> None:
    """The wake goes through the results queue as the advance function sends and reads it:
    SQS delays a message 15 minutes at most, so a wake an hour away arrives early four
    times and is sent again each time, until the retry is due; then it is queued and claimed
    (a due retry is dispatched without a wait)."""
    clock = FakeClock(T0)
    with state_store("dynamodb", tmp_path) as store:
        rt = Runtime("dynamodb", store, clock)
        s = rt.scheduler
        s.set_pool("wh", 1)
        s.apply(FLAKY)
        s.trigger("default", "flaky", run_id="f")
        s.step()
        del rt.dispatcher.pending[("f", "load", 1)]
        s.advance([Finished("f", "load", 1, FAILED)])
        sqs = Sqs()
        deliveries = 0
        while ("f", "load", 2) not in rt.dispatcher.dispatched:
            wakes = s.take_retry_wakes()
            assert list(wakes) == ["f"], "a wake is sent until the retry is due"
            send_retry_wakes(sqs, "url", wakes, clock.now())
            body, delay = sqs.sent[-1]
            assert delay == min(MAX_DELAY_S, (T0 + timedelta(hours=1) - clock.now()).seconds)
            clock.advance(delay)
            assert handlers.advance(s, sqs_event(body), lambda _: {}) == {"batchItemFailures": []}
            assert store.get_pool("/wh").used == (
                1 if clock.now() >= T0 + timedelta(hours=1) else 0
            )
            deliveries += 1
        assert deliveries == 4  # 60 minutes in waits of at most 15
        assert rt.dispatcher.dispatched[("f", "load", 2)].not_before is None
        assert s.take_retry_wakes() == {}


@pytest.mark.parametrize("kind", ["sqlite", "dynamodb"])
def test_a_pool_a_retry_waits_to_take_again_is_not_deleted(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pools delete` is refused while tasks hold or wait for the pool: a pooled task waiting
    out its retry delay holds no slot, but its next attempt asks for the pool. Deleted, the
    retry failed for good (``pool 'wh' does not exist``), and its run with it."""
    clock = FakeClock(T0)
    with state_store(kind, tmp_path) as store:
        rt = Runtime(kind, store, clock)
        s = rt.scheduler
        s.set_pool("wh", 1)
        s.apply(FLAKY)
        s.trigger("default", "flaky", run_id="f")
        s.step()
        rt.end("f", "load", 1, FAILED)
        assert store.get_task("f", "load").state is TaskState.UP_FOR_RETRY
        assert store.get_pool("/wh").used == 0
        # WHEN the pool is deleted while the retry waits THEN it is refused, naming the task
        with pytest.raises(Conflict, match="task load of run f waits out its retry delay"):
            s.delete_pool("wh")
        assert store.get_pool("/wh") is not None
        # AND the retry takes the pool when due, as if nobody had tried
        rt.later(3600)
        assert ("f", "load", 2) in rt.dispatcher.dispatched
        rt.end("f", "load", 2, OK)
        assert store.get_run("f").state is RunState.SUCCEEDED
        if kind == "dynamodb":  # (its clock is the wall's) the retry index has had its time
            later = time.time() + RETRY_INDEX_SETTLE_SECONDS
            monkeypatch.setattr(store, "_clock", lambda: later)
        s.delete_pool("wh")  # nobody holds or waits for it now
        assert store.get_pool("/wh") is None


def test_a_retry_entering_its_wait_during_a_pool_deletion_keeps_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On DynamoDB the deletion's look for waiting retries (an index read) and its delete are
    two requests: a pooled task of another process (the results function) that enters its
    retry wait between them changes the pool's item (``PoolDelta.retries``, in the write
    that frees its slot), and the delete, conditional on the item as it was before the look,
    is refused. Deleted, the retry would have failed for good when due."""
    clock = FakeClock(T0)
    with state_store("dynamodb", tmp_path) as store:
        rt = Runtime("dynamodb", store, clock)
        s = rt.scheduler
        s.set_pool("wh", 1)
        s.apply(FLAKY)
        s.trigger("default", "flaky", run_id="f")
        s.step()
        assert ("f", "load", 1) in rt.dispatcher.dispatched
        other = Scheduler(store, store, RecordingDispatcher(), clock, retry_lead=RETRY_LEAD)
        look = s._retrying_for

        def look_then_the_retry_enters(key: str) -> str | None:
            found = look(key)  # nothing waits yet
            other.advance([Finished("f", "load", 1, FAILED)])
            return found

        monkeypatch.setattr(s, "_retrying_for", look_then_the_retry_enters)
        # WHEN the retry enters its wait between the deletion's look and its delete
        with pytest.raises(Conflict, match="in use"):
            s.delete_pool("wh")
        # THEN the pool stays, for the retry to take when due
        assert store.get_task("f", "load").state is TaskState.UP_FOR_RETRY
        assert store.get_pool("/wh") is not None
        monkeypatch.undo()
        # AND a deletion asked again sees the retry, naming it
        with pytest.raises(Conflict, match="task load of run f waits out its retry delay"):
            s.delete_pool("wh")


def test_a_retry_that_entered_its_wait_just_before_a_deletion_keeps_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN a pooled task that entered its retry wait a moment before the pool's deletion
    (another function's end: rgen moved, the task written UP_FOR_RETRY), whose entry on the
    retry index (a GSI: eventually consistent, moto's is not) has not propagated yet. The
    delete, conditional on rgen as read after that move, went through (found in review)."""
    clock = FakeClock(T0)
    with state_store("dynamodb", tmp_path) as store:
        rt = Runtime("dynamodb", store, clock)
        s = rt.scheduler
        s.set_pool("wh", 1)
        s.apply(FLAKY)
        s.trigger("default", "flaky", run_id="f")
        s.step()
        other = Scheduler(store, store, RecordingDispatcher(), clock, retry_lead=RETRY_LEAD)
        other.advance([Finished("f", "load", 1, FAILED)])
        assert store.get_task("f", "load").state is TaskState.UP_FOR_RETRY
        # the retry index as a GSI read may still show it a moment after the write: empty
        monkeypatch.setattr(store, "due_retries", lambda *_a, **_k: [])
        # WHEN the pool is deleted THEN it is refused: the retry needs it when due (the age is
        # the store's wall clock: a second or more on a busy machine, never the settle time)
        with pytest.raises(Conflict, match=r"entered its retry wait [0-9] s ago"):
            s.delete_pool("wh")
        assert store.get_pool("/wh") is not None
        # AND once the index has had its time (the item says when the retry entered), the
        # index's own look refuses it
        monkeypatch.undo()
        later = store._clock() + RETRY_INDEX_SETTLE_SECONDS + 1
        monkeypatch.setattr(store, "_clock", lambda: later)
        with pytest.raises(Conflict, match="waits out its retry delay"):
            s.delete_pool("wh")
        assert store.get_pool("/wh") is not None
