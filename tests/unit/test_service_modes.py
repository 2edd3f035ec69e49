"""The scheduler's knobs for runtimes whose executors wait and time out on their own (AWS),
and its duty to keep a workflow's trigger schedule in step with the catalog."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.fakes import FakeClock, RecordingDispatcher

from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, TaskState
from stratoflow.model import WorkflowSpec
from stratoflow.ports import Schedules
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

FLAKY = """
name: flaky
tasks:
  job:
    type: shell
    command: exit 1
    retries: 2
    retry_delay: 60s
    timeout: 5m
"""


@dataclass
class RecordingSchedules(Schedules):
    calls: list[tuple[str, str | None, bool]] = field(default_factory=list)

    def sync(self, spec: WorkflowSpec, *, paused: bool) -> None:
        schedule = spec.workflow.schedule
        self.calls.append((spec.name, schedule.cron if schedule else None, paused))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "state.db")
    yield opened
    opened.close()


def fail(scheduler: Scheduler, dispatcher: RecordingDispatcher) -> None:
    """Report every pending attempt as failed."""
    reports = [
        Finished(run, task, attempt, AttemptResult(AttemptStatus.FAILED, error="exit 1"))
        for run, task, attempt in dispatcher.pending
    ]
    dispatcher.pending.clear()
    scheduler.on_finished(reports)


def test_without_lead_a_retry_waits_in_the_store_until_due(store: SqliteStore) -> None:
    clock, dispatcher = FakeClock(T0), RecordingDispatcher()
    scheduler = Scheduler(store, store, dispatcher, clock)
    scheduler.apply(FLAKY)
    run, _ = scheduler.trigger("default", "flaky")
    scheduler.step()
    fail(scheduler, dispatcher)
    scheduler.step()
    assert store.get_task(run.id, "job").state is TaskState.UP_FOR_RETRY
    assert len(dispatcher.dispatched) == 1
    clock.advance(60)
    scheduler.step()
    second = dispatcher.dispatched[(run.id, "job", 2)]
    assert second.not_before is None
    assert store.get_task(run.id, "job").started_at == T0 + timedelta(seconds=60)


def test_with_lead_a_retry_is_dispatched_at_once_to_start_when_its_delay_ends(
    store: SqliteStore,
) -> None:
    clock, dispatcher = FakeClock(T0), RecordingDispatcher()
    scheduler = Scheduler(store, store, dispatcher, clock, retry_lead=timedelta(days=365))
    scheduler.apply(FLAKY)
    run, _ = scheduler.trigger("default", "flaky")
    scheduler.step()
    fail(scheduler, dispatcher)
    scheduler.step()  # no time passes: the retry goes out now, carrying its start time
    due = T0 + timedelta(seconds=60)
    second = dispatcher.dispatched[(run.id, "job", 2)]
    assert second.not_before == due
    task = store.get_task(run.id, "job")
    assert (task.state, task.attempt, task.started_at) == (TaskState.RUNNING, 2, due)
    assert task.deadline == due + timedelta(minutes=5), "the timeout counts from the start"
    # before the attempt even starts, step() must not time it out
    clock.advance(5 * 60)
    scheduler.step()
    assert store.get_task(run.id, "job").state is TaskState.RUNNING
    assert dispatcher.killed == []


def test_timeout_grace_lets_the_executor_report_its_own_timeout_first(
    store: SqliteStore,
) -> None:
    clock, dispatcher = FakeClock(T0), RecordingDispatcher()
    scheduler = Scheduler(store, store, dispatcher, clock, timeout_grace=timedelta(minutes=2))
    scheduler.apply(FLAKY)
    run, _ = scheduler.trigger("default", "flaky")
    scheduler.step()
    clock.advance(5 * 60 + 60)  # past the deadline, inside the grace
    scheduler.step()
    assert store.get_task(run.id, "job").state is TaskState.RUNNING
    clock.advance(61)  # past deadline + grace: the scheduler times it out and kills it
    scheduler.step()
    task = store.get_task(run.id, "job")
    assert task.state is TaskState.UP_FOR_RETRY
    assert dispatcher.killed == [(run.id, "job", 1)]


SCHEDULED = """
name: nightly
schedule: {cron: "0 2 * * *"}
tasks:
  a: {type: shell, command: "true"}
"""


def test_apply_and_pause_keep_the_schedule_in_step(store: SqliteStore) -> None:
    schedules = RecordingSchedules()
    scheduler = Scheduler(store, store, RecordingDispatcher(), FakeClock(T0), schedules=schedules)
    scheduler.apply(SCHEDULED)
    scheduler.apply(SCHEDULED)  # unchanged: no new version, but the sync repairs drift
    scheduler.set_paused("default", "nightly", True)
    scheduler.set_paused("default", "nightly", False)
    scheduler.apply(SCHEDULED.replace('schedule: {cron: "0 2 * * *"}\n', ""))
    assert schedules.calls == [
        ("nightly", "0 2 * * *", False),
        ("nightly", "0 2 * * *", False),
        ("nightly", "0 2 * * *", True),
        ("nightly", "0 2 * * *", False),
        ("nightly", None, False),
    ]
    assert store.get_version("default", "nightly").version == 2


def test_without_start_rows_an_attempt_is_recorded_once_at_its_end(store: SqliteStore) -> None:
    """AWS mode: no history row at dispatch (one write fewer); the views show the running
    attempt from its task, and the row written at the end is whole."""
    from stratoflow.views import task_view

    clock, dispatcher = FakeClock(T0), RecordingDispatcher()
    scheduler = Scheduler(store, store, dispatcher, clock, record_attempt_starts=False)
    scheduler.apply(FLAKY)
    run, _ = scheduler.trigger("default", "flaky")
    scheduler.step()
    assert store.list_attempts(run.id) == []
    running = task_view(store.get_task(run.id, "job"), store.list_attempts(run.id))
    assert [(h["attempt"], h["state"], h["started_at"]) for h in running["history"]] == [
        (1, "running", T0.isoformat())
    ]
    clock.advance(5)
    scheduler.on_finished(
        [
            Finished(
                run.id, "job", 1, AttemptResult(AttemptStatus.FAILED, error="exit 1"), "s3://b/l"
            )
        ]
    )
    (row,) = store.list_attempts(run.id)
    assert (row.attempt, row.state, row.started_at, row.log) == (1, "failed", T0, "s3://b/l")
    assert row.ended_at == T0 + timedelta(seconds=5)
