"""A schedule without catchup keeps one run waiting, its latest: a firing while the workflow is
at ``max_active_runs`` supersedes the scheduled run still queued (it ends stopped, naming the
newer one) instead of queueing behind it, so a slow minute schedule does not pile up runs of
stale dates (Airflow makes no scheduled run while a DAG is at max_active_runs and, with
catchup=False, then runs the latest interval). Manual and backfill runs stay queued; a schedule
with catchup supersedes nothing: a firing while its workflow is full makes no run, and its time
is made later, in its turn. On both stores (SQLite fired by the local cron loop, DynamoDB on
moto fired as EventBridge Scheduler fires the trigger function), with a fake clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store

from stratoflow.adapters.aws.firing import fire
from stratoflow.adapters.local.cron import CronLoop
from stratoflow.engine import AttemptResult, AttemptStatus, Run, RunState, TaskState
from stratoflow.ports import RunQuery
from stratoflow.service import Finished, Scheduler, scheduled_run_id

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def minutely(*, catchup: bool = False) -> str:
    return (
        "name: slow\n"
        "schedule:\n"
        '  cron: "* * * * *"\n'
        f"  catchup: {'true' if catchup else 'false'}\n"
        f"  start: {(NOW - timedelta(minutes=1)).strftime('%Y-%m-%dT%H:%M:%S')}\n"
        "max_active_runs: 1\n"
        "tasks:\n"
        "  t: {type: shell, command: sleep 150}\n"
    )


@dataclass
class H:
    scheduler: Scheduler
    dispatcher: RecordingDispatcher
    clock: FakeClock
    fire_at: Callable[[datetime], None]  # the runtime's firing of the schedule at that time

    def minutes(self, count: int) -> None:
        """``count`` minutes go by, the schedule firing at each, a turn after each."""
        for _ in range(count):
            self.clock.advance(60)
            self.fire_at(self.clock.now())
            self.scheduler.step()

    def runs(self) -> list[Run]:
        found = self.scheduler.store.list_runs(RunQuery(workflow="slow", limit=1000))
        return sorted(found, key=lambda run: (run.logical_date, run.id))

    def of(self, state: RunState, trigger: str = "schedule") -> list[Run]:
        return [r for r in self.runs() if r.state is state and r.trigger == trigger]

    def end(self, run_id: str) -> None:
        key = (run_id, "t", 1)
        del self.dispatcher.pending[key]
        ok = AttemptResult(AttemptStatus.SUCCEEDED)
        self.scheduler.on_finished([Finished(run_id, "t", 1, ok)])
        self.scheduler.step()


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[H]:
    clock = FakeClock(NOW)
    dispatcher = RecordingDispatcher()
    with state_store(request.param, tmp_path) as store:
        scheduler = Scheduler(store, store, dispatcher, clock)
        if request.param == "sqlite":  # the local runtime: the server's cron loop ticks
            loop = CronLoop(scheduler, store)

            def fire_at(when: datetime) -> None:
                loop.invalidate()
                loop.tick(when)

        else:  # AWS: EventBridge Scheduler invokes the trigger function at each fire time

            def fire_at(when: datetime) -> None:
                event = {
                    "project": "default",
                    "workflow": "slow",
                    "scheduled_time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                fire(scheduler, event)

        scheduler.apply(minutely())
        fire_at(NOW)  # its first sight (the cron loop starts its cursor; AWS fires NOW's)
        scheduler.step()
        yield H(scheduler, dispatcher, clock, fire_at)


def test_a_firing_supersedes_the_scheduled_run_still_queued(h: H) -> None:
    # GIVEN a minute schedule, max_active_runs 1, its run taking 150 s: 12 minutes go by
    h.minutes(12)
    # THEN one run runs and one waits, of the latest minute; no backlog of stale dates
    (running,) = h.of(RunState.RUNNING)
    (queued,) = h.of(RunState.QUEUED)
    assert queued.logical_date == NOW + timedelta(minutes=12)
    assert queued.id == scheduled_run_id("default", "slow", queued.logical_date)
    # AND each run that waited before it ended stopped, naming the run that replaced it
    stopped = h.of(RunState.STOPPED)
    assert len(stopped) == 11 - (running.logical_date - NOW) // timedelta(minutes=1)
    for old, new in zip(stopped, [*stopped[1:], queued], strict=True):
        assert old.started_at is None
        assert old.error is not None
        assert old.error.startswith(f"superseded by run {new.id} ({new.logical_date.isoformat()})")
        assert "without catchup" in old.error
        task = h.scheduler.store.get_task(old.id, "t")
        assert (task.state, task.error) == (TaskState.STOPPED, old.error)
    # AND when the running one ends, the latest minute's run takes its slot
    h.end(running.id)
    assert h.scheduler.store.get_run(queued.id).state is RunState.RUNNING


def test_a_repeated_firing_of_a_superseded_minute_makes_nothing(h: H) -> None:
    h.minutes(3)
    stopped = h.of(RunState.STOPPED)[-1]
    (queued,) = h.of(RunState.QUEUED)
    h.fire_at(stopped.logical_date)  # EventBridge delivers at least once, late too
    h.fire_at(queued.logical_date)
    h.scheduler.step()
    assert h.scheduler.store.get_run(stopped.id).state is RunState.STOPPED
    assert h.of(RunState.QUEUED) == [h.scheduler.store.get_run(queued.id)]


def test_manual_and_backfill_runs_stay_queued(h: H) -> None:
    h.minutes(1)
    manual, _ = h.scheduler.trigger("default", "slow")
    backfilled, _ = h.scheduler.trigger(
        "default", "slow", logical_date=NOW - timedelta(days=1), trigger="backfill",
        run_id="default.slow-backfill-1",
    )  # fmt: skip
    h.minutes(3)
    assert h.scheduler.store.get_run(manual.id).state is RunState.QUEUED
    assert h.scheduler.store.get_run(backfilled.id).state is RunState.QUEUED
    (queued,) = h.of(RunState.QUEUED)  # of the schedule's own: the latest
    assert queued.logical_date == NOW + timedelta(minutes=4)


def test_a_queued_run_a_backfill_adopted_is_not_superseded(h: H) -> None:
    """A date a user backfilled is a date they asked to run: a backfill that adopted the
    scheduled run still queued for it (the run has the date's id, so the backfill waits for
    it rather than make another) keeps it from being superseded; it runs in its turn and the
    date succeeds (as Airflow, whose catchup=False never drops a backfill's runs)."""
    # GIVEN a minute's run queued behind the running one, and a backfill adopting it
    h.minutes(2)
    (running,) = h.of(RunState.RUNNING)
    (queued,) = h.of(RunState.QUEUED)
    minute = queued.logical_date.strftime("%Y-%m-%dT%H:%M:%S")
    backfill = h.scheduler.backfills.create("default", "slow", dates=[minute])
    assert [(d.run_id, d.state.value) for d in backfill.dates] == [(queued.id, "running")]
    # WHEN the schedule fires again (which supersedes the schedule's older queued runs)
    h.minutes(1)
    # THEN the backfilled minute's run still waits, and runs when the running one ends
    assert h.scheduler.store.get_run(queued.id).state is RunState.QUEUED
    h.end(running.id)
    assert h.scheduler.store.get_run(queued.id).state is RunState.RUNNING
    h.end(queued.id)
    done = h.scheduler.backfills.get(backfill.id)
    assert [d.state.value for d in done.dates] == ["succeeded"]
    assert done.state.value == "succeeded"
    # AND the schedule's own latest run, which waited behind it, runs next
    latest = h.runs()[-1]
    assert latest.logical_date == NOW + timedelta(minutes=3)
    assert latest.state is RunState.RUNNING


def test_with_catchup_a_full_workflow_queues_nothing_and_its_minutes_run_in_turn(h: H) -> None:
    """With catchup nothing is superseded: a firing while the workflow is at its
    max_active_runs makes no run at all (Airflow creates no DagRun then), and the minutes it
    missed are made later, oldest first, as runs end."""
    h.scheduler.apply(minutely(catchup=True))
    h.minutes(4)
    # THEN its first run (the local loop's first minute after its first sight, NOW's on AWS)
    # is all there is: nothing queued, nothing stopped
    (running,) = h.runs()
    assert running.state is RunState.RUNNING
    first = running.logical_date
    assert first in (NOW, NOW + timedelta(minutes=1))
    # WHEN it ends, the next firing makes the oldest minute missed, not its own
    h.end(running.id)
    h.minutes(1)
    assert [r.logical_date for r in h.runs()] == [first, first + timedelta(minutes=1)]
    assert h.of(RunState.STOPPED) == h.of(RunState.QUEUED) == []


HOURLY = f"""\
name: up
schedule: {{cron: "0 * * * *", catchup: false, start: "{(NOW - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")}"}}
max_active_runs: 1
tasks:
  t: {{type: shell, command: sleep 5000}}
"""
DOWN = """\
name: down
tasks:
  wait:
    type: dependency
    all: [{workflow: up, date: currentHour}]
    check_interval: 5s
    timeout: 60s
"""


def fire_up(scheduler: Scheduler, clock: FakeClock, every: int) -> None:
    """``up``'s schedule fires three times, ``every`` seconds apart, as EventBridge would."""
    for n in range(3):
        if n:
            clock.advance(every)
        when = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        fire(scheduler, {"project": "default", "workflow": "up", "scheduled_time": when})
        scheduler.step()


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_a_dependency_on_a_superseded_interval_is_not_failed_by_it(
    tmp_path: Path, kind: str
) -> None:
    """The superseded run is its interval's only run (its id comes from its date) and it
    ended stopped: a dependency on that interval failed ('run ... stopped'), and one on the
    workflow's own previous interval failed every run after. The interval is skipped, as
    one the schedule does not fire in, and the task's message says why."""
    clock = FakeClock(NOW)
    dispatcher = RecordingDispatcher()
    with state_store(kind, tmp_path) as store:
        scheduler = Scheduler(store, store, dispatcher, clock)
        scheduler.apply(HOURLY)
        scheduler.apply(DOWN)
        fire_up(scheduler, clock, 3600)  # 12:00 runs; 13:00 waits, then 14:00 supersedes it
        superseded = store.get_run(scheduled_run_id("default", "up", NOW + timedelta(hours=1)))
        assert superseded.state is RunState.STOPPED
        assert superseded.error is not None
        assert superseded.error.startswith("superseded by run")

        run, _ = scheduler.trigger(
            "default", "down", logical_date=NOW + timedelta(hours=1, minutes=30)
        )
        scheduler.step()
        wait = store.get_task(run.id, "wait")
        assert wait.state is TaskState.SUCCEEDED, wait.error
        assert "superseded by a later firing" in str(wait.outputs)


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_a_superseded_run_does_not_decide_an_interval_another_run_is_in(
    tmp_path: Path, kind: str
) -> None:
    """A schedule firing twice an hour: 12:00 runs, 12:30 waits and 13:00 supersedes it.
    The dependency on 12:00-13:00 took the latest run of the hour, the superseded one, and
    skipped the hour while 12:00 was still running."""
    clock = FakeClock(NOW)
    dispatcher = RecordingDispatcher()
    with state_store(kind, tmp_path) as store:
        scheduler = Scheduler(store, store, dispatcher, clock)
        scheduler.apply(HOURLY.replace('"0 * * * *"', '"0,30 * * * *"'))
        scheduler.apply(DOWN)
        fire_up(scheduler, clock, 1800)  # 12:00 runs; 12:30 waits, then 13:00 supersedes it
        assert store.get_run(scheduled_run_id("default", "up", NOW)).state is RunState.RUNNING
        half = store.get_run(scheduled_run_id("default", "up", NOW + timedelta(minutes=30)))
        assert half.state is RunState.STOPPED

        run, _ = scheduler.trigger("default", "down", logical_date=NOW + timedelta(minutes=45))
        scheduler.step()
        wait = store.get_task(run.id, "wait")
        assert wait.state is not TaskState.SUCCEEDED, wait.outputs
        assert not wait.state.terminal
