"""A pause during a retry's delay on AWS survives any single failure: every write of the
pause, of ``advance`` applying the retry's ``held`` report, and of the resume fails once, before
it applies and after (the caller sees an error), and separately the process dies there; the
retry never starts while its run is paused and runs exactly once after the resume, whether
the resume comes after the retry's wake, between the runner's look and its report's
application, or before the wake; with the stops of the waiting executions done or lost.

The state is DynamoDB (moto); the scheduler is the one the AWS functions run (every retry
claimed at once, ``retry_lead``); each waiting execution is modelled as the state machine
runs it: when its delay runs out (unless it was stopped) the runner's own code decides
(``runner.run_attempt`` with its stop watch and its look at the run, on the real table), and
its outcome goes through ``results.parse_outcome`` to ``Scheduler.advance``, delivered again
while it fails (SQS), to a fresh process after a death."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from stratoflow.adapters.aws import runner
from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.adapters.aws.results import parse_outcome
from stratoflow.engine import RunState, TaskInstance, TaskState
from stratoflow.errors import Conflict
from stratoflow.ports import AttemptSpec, Recovery
from stratoflow.service import Finished, Scheduler
from tests.fakes import FakeClock, Key, RecordingDispatcher

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
RUN = "default.flaky-run-1"
WORKFLOW = """
name: flaky
tasks:
  t: {type: shell, command: "exit 1", retries: 1, retry_delay: 30s}
"""
WRITES = frozenset(
    {"put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"}
)
PHASES = ("pause", "held", "resume")
# when the operator's resume comes: after the retry's execution woke and its report was
# applied; between the runner's look (run paused) and the report's application; before the
# execution wakes
ORDERS = ("after_wake", "between_look_and_report", "before_wake")


class ProcessDied(BaseException):
    """The process (a Lambda container) ends at this write: nothing after it runs there."""


@dataclass(frozen=True)
class Fault:
    phase: str
    at: int  # the at-th write of the phase (1-based)
    after: bool  # the write applies, then the caller sees the failure
    dies: bool  # the process dies there (else the write raises, a throttle or a timeout)


@dataclass
class Writes:
    """Counts the writes of each phase; fails each of ``faults`` once."""

    faults: tuple[Fault, ...] = ()
    phase: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    trail: dict[str, list[str]] = field(default_factory=lambda: {p: [] for p in PHASES})
    fired: list[Fault] = field(default_factory=list)

    def write(self, perform: Callable[[], Any], name: str) -> Any:
        if self.phase is None:
            return perform()
        self.counts[self.phase] += 1
        self.trail[self.phase].append(name)
        here = (self.phase, self.counts[self.phase])
        f = next((f for f in self.faults if (f.phase, f.at) == here), None)
        if f is None:
            return perform()
        self.fired.append(f)
        if f.after:
            perform()
        if f.dies:
            raise ProcessDied
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}},
            name,
        )


class Faulty:
    """A DynamoDB client whose writes go through ``Writes``."""

    def __init__(self, client: Any, writes: Writes) -> None:
        self._client, self._writes = client, writes

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name not in WRITES:
            return attr
        return lambda *a, **kw: self._writes.write(lambda: attr(*a, **kw), name)


class Executions(RecordingDispatcher):
    """The task-attempt executions: each dispatched one waits out its ``start_at`` (the
    dispatcher sets it for a retry whose delay is still to run, as ``StepFunctionsDispatcher``
    does); a stop ends a waiting one, unless stops are ``lost``."""

    def __init__(self, clock: FakeClock, *, lost: bool) -> None:
        super().__init__()
        self.clock, self.lost = clock, lost
        self.start_at: dict[Key, datetime | None] = {}

    def dispatch(self, spec: AttemptSpec) -> str | None:
        waits = spec.not_before is not None and spec.not_before > self.clock.now()
        self.start_at[(spec.run_id, spec.task_id, spec.attempt)] = (
            spec.not_before if waits else None
        )
        return super().dispatch(spec)

    def kill(self, run_id: str, task_id: str, attempt: int) -> None:
        if not self.lost:
            super().kill(run_id, task_id, attempt)
            self.pending.pop((run_id, task_id, attempt), None)  # stopped: it reports nothing

    def recover(self, running: Sequence[TaskInstance]) -> Recovery:
        """The reconciler's look (as ``tests.faultinject.Executor``'s): a claim that was
        never dispatched (its process died first) is reported not started."""
        return Recovery(
            not_started=[
                t for t in running if (t.run_id, t.task_id, t.attempt) not in self.dispatched
            ]
        )

    def due(self) -> list[Key]:
        now = self.clock.now()
        return [k for k in self.pending if (self.start_at[k] or now) <= now]


@pytest.fixture(scope="module")
def tables() -> Iterator[Callable[[], tuple[Any, str]]]:
    with mock_aws():
        client = boto3.client(
            "dynamodb", region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        made = [0]

        def table() -> tuple[Any, str]:
            made[0] += 1
            name = f"state-{made[0]}"
            create_table(client, name, stream=False)
            return client, name

        yield table


@dataclass
class Drive:
    counts: dict[str, int]
    trail: dict[str, list[str]]
    fired: list[Fault]
    started: list[tuple[int, RunState]]  # each attempt that started, with its run's state
    attempts: list[tuple[int, str]]
    state: RunState


def drive(
    tables: Callable[[], tuple[Any, str]],
    order: str,
    faults: tuple[Fault, ...] = (),
    *,
    lost_stops: bool = False,
) -> Drive:
    client, table = tables()
    writes = Writes(faults)
    store = DynamoStore(table, client=Faulty(client, writes), lease=timedelta(0))
    clock = FakeClock(T0)
    executions = Executions(clock, lost=lost_stops)
    started: list[tuple[int, RunState]] = []
    processes = [Scheduler(store, store, executions, clock, retry_lead=timedelta(days=366))]

    def process() -> Scheduler:
        return processes[-1]

    def replaced() -> None:  # a fresh container (a new process: nothing of the old one)
        processes.append(Scheduler(store, store, executions, clock, retry_lead=timedelta(days=366)))

    def delivered(call: Callable[[Scheduler], Any]) -> None:
        """An SQS message's handling: delivered again while it fails."""
        for _ in range(4):
            try:
                call(process())
                return
            except (ClientError, ProcessDied):
                replaced()
        raise AssertionError("a message failed four times")

    def operate(call: Callable[[Scheduler], Any], wanted: RunState) -> None:
        """An API request (then its kick, an SQS message): repeated by the operator while
        the run is not ``wanted`` (a request that failed before its write)."""
        for _ in range(3):
            try:
                call(process())
            except (ClientError, ProcessDied, Conflict):
                replaced()
            if store.get_run(RUN).state is wanted:
                break
        else:
            raise AssertionError(f"the run never became {wanted}")
        delivered(lambda s: s.advance((), runs=[RUN]))

    def reconcile(s: Scheduler) -> None:
        """The reconciler's pass (every 5 minutes)."""
        store.complete_pending_plans()
        s.recover()
        s.step()

    def look(key: Key) -> str:
        """The execution wakes: the runner's own decision, its outcome as the state machine
        sends it."""
        executions.pending.pop(key)
        spec = executions.dispatched[key]
        attempt: dict[str, Any] = {
            "run_id": spec.run_id, "task_id": spec.task_id, "attempt": spec.attempt,
            "type": "shell", "task": {"command": f"test {spec.attempt} -gt 1"},
            "timeout_seconds": 60,
        }  # fmt: skip
        start_at = executions.start_at[key]
        if start_at is not None:
            attempt["start_at"] = start_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        outcome = runner.run_attempt(
            attempt,
            s3=None,
            still_wanted=runner.task_watch(client, table, attempt),
            paused=runner.run_paused(client, table, attempt),
        )
        if outcome["status"] not in ("stopped", "held"):
            started.append((spec.attempt, store.get_run(RUN).state))
        return json.dumps({**{k: attempt[k] for k in ("run_id", "task_id", "attempt")}, **outcome})

    def report(body: str) -> None:
        finished: Finished = parse_outcome(body, lambda _: {})
        delivered(lambda s: s.advance([finished]))

    def wake_and_report(phase: str | None = None) -> None:
        for key in executions.due():
            body = look(key)
            writes.phase = phase
            report(body)
            writes.phase = None

    process().apply(WORKFLOW)
    process().trigger("default", "flaky", run_id=RUN)
    delivered(lambda s: s.advance((), runs=[RUN]))
    wake_and_report()  # attempt 1 fails; its retry is claimed at once, waiting 30 s
    assert store.get_task(RUN, "t").state is TaskState.RUNNING
    assert [k[2] for k in executions.pending] == [2]
    clock.advance(5)

    def pause() -> None:
        writes.phase = "pause"
        operate(lambda s: s.pause(RUN), RunState.PAUSED)
        writes.phase = None

    def resume() -> None:
        writes.phase = "resume"
        operate(lambda s: s.resume(RUN), RunState.RUNNING)
        writes.phase = None

    pause()
    if order == "before_wake":
        resume()
    clock.advance(30)  # the delay has run out
    if order == "between_look_and_report":
        bodies = [look(key) for key in executions.due()]
        resume()
        writes.phase = "held"
        for body in bodies:
            report(body)
        writes.phase = None
    else:
        wake_and_report("held")
    if order == "after_wake":
        assert store.get_run(RUN).state is RunState.PAUSED
        assert store.get_task(RUN, "t").state is TaskState.UP_FOR_RETRY
        resume()
    for _ in range(10):  # the run goes on, executions wake when due, the reconciler passes
        if store.get_run(RUN).state.terminal:
            break
        if not executions.due():
            clock.advance(31)
        if not executions.due():
            delivered(reconcile)
        wake_and_report()
    run = store.get_run(RUN)
    attempts = [(a.attempt, a.state) for a in store.list_attempts(RUN, "t")]
    return Drive(writes.counts, writes.trail, writes.fired, started, attempts, run.state)


# the pause's process dies at its second write, before it applies: the hold of the retry
# (its first is the run's), so the retry's execution wakes with its task still RUNNING
HOLD_NEVER_MADE = Fault("pause", 2, after=False, dies=True)


@pytest.mark.parametrize("order", ORDERS)
def test_without_a_fault_the_retry_waits_for_the_resume(
    tables: Callable[[], tuple[Any, str]], order: str
) -> None:
    got = drive(tables, order)
    assert got.state is RunState.SUCCEEDED
    assert [n for n, _ in got.started] == [1, 3], got
    assert got.attempts == [(1, "failed"), (2, "stopped"), (3, "succeeded")]
    # the run's write, then the hold's (one transaction: the task and its attempt's record)
    assert got.trail["pause"] == ["update_item", "transact_write_items"], got.trail


@pytest.mark.parametrize("order", ORDERS)
def test_a_hold_never_made_is_made_when_the_delay_runs_out(
    tables: Callable[[], tuple[Any, str]], order: str
) -> None:
    got = drive(tables, order, (HOLD_NEVER_MADE,))
    assert got.fired == [HOLD_NEVER_MADE]
    assert got.state is RunState.SUCCEEDED
    assert all(s is RunState.RUNNING for _, s in got.started), got
    if order == "before_wake":  # resumed before the wake: the claim it kept starts, once
        assert [n for n, _ in got.started] == [1, 2], got
        assert got.attempts == [(1, "failed"), (2, "succeeded")]
    else:  # its runner held it (the report's transaction: the task and the attempt's record)
        assert [n for n, _ in got.started] == [1, 3], got
        assert got.attempts == [(1, "failed"), (2, "stopped"), (3, "succeeded")]
        assert got.trail["held"][0] == "transact_write_items", got.trail


def check_sweep(
    tables: Callable[[], tuple[Any, str]],
    order: str,
    phase: str,
    dies: bool,
    given: tuple[Fault, ...] = (),
    *,
    lost_stops: bool = False,
) -> int:
    """Fail each write of ``phase`` once (before it applies, after; raising or dying) on top
    of ``given``: the retry never starts while its run is paused, and runs once after the
    resume. Returns how many faults it checked."""
    baseline = drive(tables, order, given, lost_stops=lost_stops)
    assert baseline.counts[phase] > 0, f"{order}: no write in {phase}"
    checked = 0
    for at in range(1, baseline.counts[phase] + 1):
        for after in (False, True):
            fault = Fault(phase, at, after, dies)
            got = drive(tables, order, (*given, fault), lost_stops=lost_stops)
            where = f"{order}, {fault}, lost stops: {lost_stops}"
            assert fault in got.fired, f"{where}: the fault never fired"
            paused = [n for n, s in got.started if s is not RunState.RUNNING]
            assert not paused, f"{where}: started while paused: {got.started}"
            # the first try, then the retry once (whatever attempt number it has)
            assert len(got.started) == 2, f"{where}: {got.started}"
            assert got.state is RunState.SUCCEEDED, f"{where}: {got.state}"
            assert [s for _, s in got.attempts].count("succeeded") == 1, f"{where}: {got}"
            assert got.attempts[-1][1] == "succeeded", f"{where}: {got.attempts}"
            checked += 1
    return checked


@pytest.mark.parametrize("dies", [False, True], ids=["fails", "dies"])
@pytest.mark.parametrize("lost_stops", [False, True], ids=["stops", "lost-stops"])
@pytest.mark.parametrize("order", ORDERS)
def test_every_write_of_the_pause_fails_once(
    tables: Callable[[], tuple[Any, str]], order: str, lost_stops: bool, dies: bool
) -> None:
    assert check_sweep(tables, order, "pause", dies, lost_stops=lost_stops) == 4


@pytest.mark.parametrize("dies", [False, True], ids=["fails", "dies"])
@pytest.mark.parametrize("phase", ["held", "resume"])
@pytest.mark.parametrize("order", ORDERS)
def test_every_write_after_a_hold_never_made_fails_once(
    tables: Callable[[], tuple[Any, str]], order: str, phase: str, dies: bool
) -> None:
    """The pause died before its hold: every write of the retry's report being applied
    (``held``; resumed before the wake: its run), and of the resume, fails once."""
    assert check_sweep(tables, order, phase, dies, (HOLD_NEVER_MADE,)) >= 2
