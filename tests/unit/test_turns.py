"""A loop turn decides in one commit and acts after it: results, retries, timeouts, queued runs
and claims (with the claimed attempts' history rows) are committed together, and only then
are attempts started, attempts killed and events emitted."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeClock, Key, RecordingDispatcher

from stratoflow.adapters.local.sqlite_store import SqliteStore, StoreChanges
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskInstance, TaskState
from stratoflow.ports import AttemptSpec, EventSink
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

CHAIN = """
name: chain
tasks:
  a: {type: shell, command: "true"}
  b: {type: shell, command: "true", depends_on: [a]}
"""
ONE = """
name: one
tasks:
  job: {type: shell, command: "true"}
"""
OK = AttemptResult(AttemptStatus.SUCCEEDED)


class PlannedLogs(RecordingDispatcher):
    """Knows where each log will be before it starts the attempt (as the local executor)."""

    def log_location(self, spec: AttemptSpec) -> str:
        return f"logs/{spec.run_id}/{spec.task_id}.{spec.attempt}.log"

    def dispatch(self, spec: AttemptSpec) -> str | None:
        super().dispatch(spec)
        return self.log_location(spec)


class LateLogs(RecordingDispatcher):
    """Learns where a log is only by starting the attempt."""

    def dispatch(self, spec: AttemptSpec) -> str | None:
        super().dispatch(spec)
        return f"started/{spec.task_id}.{spec.attempt}"


class Events(EventSink):
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        self.kinds.append(kind)


class FailingClaims(SqliteStore):
    """Fails the next turn's claim query, after the turn has applied its results."""

    fail = False

    def queued_tasks(self, limit: int) -> list[TaskInstance]:
        if self.fail:
            self.fail = False
            raise RuntimeError("store unavailable")
        return super().queued_tasks(limit)


class NonAtomic(FailingClaims):
    """A store without multi-item transactions (as DynamoDB): every write stands alone."""

    atomic = False

    def transaction(self) -> AbstractContextManager[None]:
        return nullcontext()


@pytest.fixture
def commits(tmp_path: Path) -> Iterator[tuple[SqliteStore, list[StoreChanges]]]:
    store = SqliteStore(tmp_path / "state.db")
    seen: list[StoreChanges] = []
    store.on_commit.append(seen.append)
    yield store, seen
    store.close()


def pending(dispatcher: RecordingDispatcher) -> list[Key]:
    keys = list(dispatcher.pending)
    dispatcher.pending.clear()
    return keys


def test_a_result_and_the_claim_it_enables_share_one_commit(
    commits: tuple[SqliteStore, list[StoreChanges]],
) -> None:
    store, seen = commits
    dispatcher = PlannedLogs()
    scheduler = Scheduler(store, store, dispatcher, FakeClock(T0))
    scheduler.apply(CHAIN)
    run, _ = scheduler.trigger("default", "chain")
    scheduler.step()
    [a] = pending(dispatcher)
    seen.clear()

    scheduler.step([Finished(*a, OK)])

    [b] = pending(dispatcher)
    assert b == (run.id, "b", 1)
    assert len(seen) == 1, "the result, b's claim and b's history row: one commit"
    assert {(run.id, "a"), (run.id, "b")} <= seen[0].tasks
    assert (run.id, "b", 1) in seen[0].attempts
    [row] = store.list_attempts(run.id, "b")
    assert (row.state, row.log) == ("running", f"logs/{run.id}/b.1.log")


def test_a_log_known_only_after_the_start_is_recorded_in_a_commit_after_it(
    commits: tuple[SqliteStore, list[StoreChanges]],
) -> None:
    store, seen = commits
    dispatcher = LateLogs()
    scheduler = Scheduler(store, store, dispatcher, FakeClock(T0))
    scheduler.apply(ONE)
    run, _ = scheduler.trigger("default", "one")
    seen.clear()

    scheduler.step()

    assert pending(dispatcher) == [(run.id, "job", 1)]
    assert [bool(c.tasks) for c in seen] == [True, False], "claim, then the history row"
    assert (run.id, "job", 1) in seen[1].attempts
    [row] = store.list_attempts(run.id, "job")
    assert row.log == "started/job.1"


def one_running(store: FailingClaims) -> tuple[Scheduler, Events, str, Key]:
    """A run of ONE whose only attempt is running; its events so far forgotten."""
    events = Events()
    dispatcher = PlannedLogs()
    scheduler = Scheduler(store, store, dispatcher, FakeClock(T0), events)
    scheduler.apply(ONE)
    run, _ = scheduler.trigger("default", "one")
    scheduler.step()
    [job] = pending(dispatcher)
    events.kinds.clear()
    return scheduler, events, run.id, job


def test_a_failed_turn_rolls_back_and_acts_on_nothing(tmp_path: Path) -> None:
    store = FailingClaims(tmp_path / "state.db")
    scheduler, events, run_id, job = one_running(store)

    store.fail = True
    with pytest.raises(RuntimeError, match="store unavailable"):
        scheduler.step([Finished(*job, OK)])

    assert store.get_run(run_id).state is RunState.RUNNING
    assert store.get_task(run_id, "job").state is TaskState.RUNNING
    assert events.kinds == [], "nothing was committed, so nothing is announced"

    scheduler.step([Finished(*job, OK)])  # the report is delivered again

    assert store.get_run(run_id).state is RunState.SUCCEEDED
    assert events.kinds == ["run.succeeded"]
    store.close()


def test_without_transactions_what_was_written_before_a_failure_still_acts(
    tmp_path: Path,
) -> None:
    store = NonAtomic(tmp_path / "state.db")
    scheduler, events, run_id, job = one_running(store)

    store.fail = True
    with pytest.raises(RuntimeError, match="store unavailable"):
        scheduler.step([Finished(*job, OK)])

    assert store.get_run(run_id).state is RunState.SUCCEEDED  # that write stands
    assert events.kinds == ["run.succeeded"], "so its event is not lost with the turn"
    scheduler.step([Finished(*job, OK)])  # a redelivery changes nothing
    assert events.kinds == ["run.succeeded"]
    store.close()


def test_a_timeout_is_committed_before_the_attempt_is_killed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    clock = FakeClock(T0)
    killed_after: list[TaskState] = []

    class Killer(PlannedLogs):
        def kill(self, run_id: str, task_id: str, attempt: int) -> None:
            super().kill(run_id, task_id, attempt)
            # read on another connection: sees only what is committed
            reader = SqliteStore(tmp_path / "state.db")
            killed_after.append(reader.get_task(run_id, task_id).state)
            reader.close()

    dispatcher = Killer()
    scheduler = Scheduler(store, store, dispatcher, clock)
    scheduler.apply(ONE.replace('command: "true"}', 'command: "true", timeout: 30s}'))
    run, _ = scheduler.trigger("default", "one")
    scheduler.step()
    clock.advance(31)

    scheduler.step()

    assert dispatcher.killed == [(run.id, "job", 1)]
    assert killed_after == [TaskState.FAILED]
    store.close()


def test_a_timed_out_attempt_s_retry_is_due_after_the_executor_s_kill_grace(
    tmp_path: Path,
) -> None:
    # GIVEN an executor whose killed attempts may run 5 s after the kill, and a task with a
    # 30 s timeout, one retry and no retry delay
    store = SqliteStore(tmp_path / "state.db")
    clock = FakeClock(T0)

    class Graceful(PlannedLogs):
        def kill_grace(self) -> timedelta:
            return timedelta(seconds=5)

    dispatcher = Graceful()
    scheduler = Scheduler(store, store, dispatcher, clock)
    scheduler.apply(
        ONE.replace(
            'command: "true"}', 'command: "true", timeout: 30s, retries: 1, retry_delay: 0}'
        )
    )
    run, _ = scheduler.trigger("default", "one")
    scheduler.step()
    clock.advance(31)
    # WHEN its attempt times out
    scheduler.step()
    # THEN the retry waits for the grace, not for the (zero) delay: attempt 2 is not started
    task = store.get_task(run.id, "job")
    assert (task.state, task.ready_at) == (TaskState.UP_FOR_RETRY, T0 + timedelta(seconds=36))
    assert list(dispatcher.dispatched) == [(run.id, "job", 1)]
    clock.advance(5)
    scheduler.step()
    assert list(dispatcher.dispatched) == [(run.id, "job", 1), (run.id, "job", 2)]
    store.close()


CASCADE = """
name: cascade
tasks:
  t0: {type: shell, command: "false"}
  t1: {type: shell, command: "true", depends_on: [t0]}
  t2: {type: shell, command: "true", depends_on: [t0, t1], trigger_rule: one_success}
"""


def test_a_failure_that_ends_every_child_in_one_propagation_ends_the_run(
    commits: tuple[SqliteStore, list[StoreChanges]],
) -> None:
    """t2 (one_success) is seen still waiting while t0's end is counted (t1 has not been told
    yet), then ends in the same propagation once t1 is told: nobody else will end after this,
    so this turn must settle the run. (A shortcut that skipped the run's settle whenever a child had been
    seen unended left such a run RUNNING for ever; the event storm found it.)"""
    store, _ = commits
    dispatcher = PlannedLogs()
    scheduler = Scheduler(store, store, dispatcher, FakeClock(T0))
    scheduler.apply(CASCADE)
    run, _ = scheduler.trigger("default", "cascade")
    scheduler.step()
    [t0] = pending(dispatcher)

    # the report alone, as advance applies it on AWS (no loop turn after it to catch up)
    scheduler.on_finished([Finished(*t0, AttemptResult(AttemptStatus.FAILED, error="exit 1"))])

    states = {t.task_id: t.state for t in store.get_tasks(run.id)}
    assert states == {
        "t0": TaskState.FAILED,
        "t1": TaskState.UPSTREAM_FAILED,
        "t2": TaskState.UPSTREAM_FAILED,
    }
    assert store.get_run(run.id).state is RunState.FAILED
    assert pending(dispatcher) == []


TIMED = """
name: timed
tasks:
  slow: {type: shell, command: "true", timeout: 10m}
  flaky: {type: shell, command: "true", retries: 1, retry_delay: 30s}
"""


@pytest.mark.parametrize("dispatcher", [PlannedLogs, LateLogs])
def test_a_step_says_when_timed_work_is_next_due_as_the_store_does_after_it(
    tmp_path: Path, dispatcher: type[RecordingDispatcher]
) -> None:
    """``step`` reads the next retry or deadline in its turn's commit (or after what acted
    on it): what it returns is what the store says once the step is over, through claims
    that set deadlines, a failure that schedules a retry (its event acts after the commit),
    the retry's promotion and the ends that leave nothing timed."""
    store = SqliteStore(tmp_path / "state.db")
    clock = FakeClock(T0)
    events = Events()
    started = dispatcher()
    scheduler = Scheduler(store, store, started, clock, events)
    scheduler.apply(TIMED)
    run, _ = scheduler.trigger("default", "timed")
    deadline = T0 + timedelta(minutes=10)

    assert scheduler.step() == store.next_wakeup() == deadline  # claimed: slow's deadline
    keys = {k[1]: k for k in pending(started)}

    wake = scheduler.step([Finished(*keys["flaky"], AttemptResult(AttemptStatus.FAILED))])
    assert "task.retrying" in events.kinds
    assert wake == store.next_wakeup() == T0 + timedelta(seconds=30)  # the retry's

    clock.advance(30)
    assert scheduler.step() == store.next_wakeup() == deadline  # promoted and claimed
    [retry] = pending(started)
    assert retry == (run.id, "flaky", 2)

    assert scheduler.step([Finished(*keys["slow"], OK), Finished(*retry, OK)]) is None
    assert store.next_wakeup() is None
    assert store.get_run(run.id).state is RunState.SUCCEEDED
    store.close()
