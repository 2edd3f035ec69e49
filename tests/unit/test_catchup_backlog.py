"""A catch-up from far in the past makes its missed runs only while its workflow has room
(its effective ``max_active_runs`` less its queued and active runs), oldest first, and works
through the backlog in order as runs end: one schedule cannot fill the disk with queued runs,
nor keep other projects' runs from starting. On both stores and both paths that fire
schedules (SQLite fired by the local cron loop, DynamoDB on moto fired as EventBridge
Scheduler fires the trigger function), with a fake clock. And a cron catch-up from before
1970 (when cron schedules begin) is refused on apply, naming it, while ``rate()`` honours it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store

from stratoflow.adapters.aws.firing import fire
from stratoflow.adapters.aws.handlers import reconcile
from stratoflow.adapters.local.cron import CronLoop
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, Run, RunState
from stratoflow.errors import InvalidInput
from stratoflow.model import load_workflow
from stratoflow.model._schedule import due_firings
from stratoflow.ports import RunQuery
from stratoflow.service import Finished, Scheduler

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
START = datetime(2000, 1, 1, tzinfo=UTC)  # 13.8 million minutes before NOW

CU = (
    "name: cu\n"
    "project: pa\n"
    "max_active_runs: 2\n"
    'schedule: {cron: "* * * * *", start: "2000-01-01T00:00:00", catchup: true}\n'
    'tasks: {t: {type: shell, command: "true"}}\n'
)
OTHER = "name: other\nproject: pb\ntasks: {t: {type: shell, command: 'true'}}\n"


@dataclass
class Backlog:
    scheduler: Scheduler
    dispatcher: RecordingDispatcher
    clock: FakeClock
    fire_due: Callable[[], None]  # what the runtime does when the schedule is due now

    def runs(self, project: str = "pa", name: str = "cu") -> list[Run]:
        found = self.scheduler.store.list_runs(
            RunQuery(project=project, workflow=name, limit=10_000)
        )
        return sorted(found, key=lambda run: run.logical_date)

    def end(self, run_id: str) -> None:
        """The run's one task succeeds, then a turn."""
        self.scheduler.step()
        key = (run_id, "t", 1)
        assert key in self.dispatcher.pending, f"{run_id} was never dispatched"
        del self.dispatcher.pending[key]
        ok = AttemptResult(AttemptStatus.SUCCEEDED)
        self.scheduler.on_finished([Finished(run_id, "t", 1, ok)])
        self.scheduler.step()

    def minute_later(self) -> None:
        self.clock.advance(60)
        self.fire_due()
        self.scheduler.step()


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backlog]:
    clock = FakeClock(NOW)
    dispatcher = RecordingDispatcher()
    with state_store(request.param, tmp_path) as store:
        scheduler = Scheduler(store, store, dispatcher, clock)
        if request.param == "sqlite":  # the local runtime: the server's cron loop ticks
            loop = CronLoop(scheduler, store)

            def fire_due() -> None:
                loop.tick(clock.now())

        else:  # AWS: EventBridge Scheduler invokes the trigger function each minute

            def fire_due() -> None:
                at = clock.now().replace(second=0, microsecond=0)
                event = {
                    "project": "pa",
                    "workflow": "cu",
                    "scheduled_time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                fire(scheduler, event)

        yield Backlog(scheduler, dispatcher, clock, fire_due)


def test_a_catchup_from_long_ago_makes_only_the_runs_its_workflow_has_room_for(
    h: Backlog,
) -> None:
    # GIVEN a minute schedule catching up from 2000 with max_active_runs: 2
    h.scheduler.apply(CU)
    # WHEN it fires, and fires again every minute while its runs go on
    h.fire_due()
    h.scheduler.step()
    for _ in range(5):
        h.minute_later()
    # THEN only two runs exist, the two oldest intervals, both running: nothing queued
    runs = h.runs()
    assert [r.logical_date for r in runs] == [START, START + timedelta(minutes=1)]
    assert [r.state for r in runs] == [RunState.RUNNING] * 2


def test_the_backlog_is_worked_through_in_order_as_runs_end(h: Backlog) -> None:
    h.scheduler.apply(CU)
    h.fire_due()
    h.scheduler.step()
    # WHEN the oldest run ends, again and again, with a firing after each end
    for done in range(6):
        oldest = next(r for r in h.runs() if r.state is RunState.RUNNING)
        h.end(oldest.id)
        h.minute_later()
        runs = h.runs()
        # THEN each end makes room for exactly the next interval, in order
        assert [r.logical_date for r in runs] == [
            START + timedelta(minutes=i) for i in range(done + 3)
        ]
        assert sum(1 for r in runs if not r.state.terminal) == 2
        assert not any(r.state is RunState.QUEUED for r in runs)


def test_applying_the_same_file_again_keeps_the_backlog(h: Backlog) -> None:
    """Applying an unchanged file (a deploy that applies every file) changes no schedule: the
    catch-up goes on from where it was, not from the apply (which would drop the backlog)."""
    h.scheduler.apply(CU)
    h.fire_due()
    h.scheduler.step()
    h.clock.advance(3600)
    _, created = h.scheduler.apply(CU)
    assert not created
    for _ in range(2):
        oldest = next(r for r in h.runs() if r.state is RunState.RUNNING)
        h.end(oldest.id)
        h.minute_later()
    assert [r.logical_date for r in h.runs()] == [START + timedelta(minutes=i) for i in range(4)]


def test_applying_the_same_file_again_keeps_the_backlog_of_a_schedule_added_later(
    h: Backlog,
) -> None:
    """The same when the schedule came with a later version (the workflow had none before):
    its first apply caught up from ``start`` as a first version's does, and a deploy that
    applies the unchanged file again must not move its cursor up to the version's creation,
    which dropped the backlog (the unchanged apply compares with the version before, which
    has no schedule, and took that for a schedule given back)."""
    unscheduled = "".join(line for line in CU.splitlines(True) if "schedule:" not in line)
    h.scheduler.apply(unscheduled)
    h.clock.advance(3600)
    version, created = h.scheduler.apply(CU)
    assert (version.version, created) == (2, True)
    h.fire_due()
    h.scheduler.step()
    assert [r.logical_date for r in h.runs()] == [START, START + timedelta(minutes=1)]
    h.clock.advance(3600)
    _, created = h.scheduler.apply(CU)
    assert not created
    for _ in range(2):
        oldest = next(r for r in h.runs() if r.state is RunState.RUNNING)
        h.end(oldest.id)
        h.minute_later()
    assert [r.logical_date for r in h.runs()] == [START + timedelta(minutes=i) for i in range(4)]


def test_another_projects_manual_run_starts_while_a_backlog_exists(h: Backlog) -> None:
    # GIVEN a catch-up with millions of missed intervals, fired for a while
    h.scheduler.apply(CU)
    h.scheduler.apply(OTHER)
    h.fire_due()
    for _ in range(3):
        h.minute_later()
    # WHEN another project's workflow is triggered by hand
    run, _ = h.scheduler.trigger("pb", "other")
    h.scheduler.step()
    # THEN it starts at once
    assert h.scheduler.store.get_run(run.id).state is RunState.RUNNING


# ------------------------------------------------------------------ the start before 1970


def test_a_cron_catchup_from_before_1970_is_refused_naming_the_start(h: Backlog) -> None:
    text = CU.replace("2000-01-01T00:00:00", "1900-01-02T00:00:00")
    with pytest.raises(InvalidInput) as raised:
        h.scheduler.apply(text)
    message = str(raised.value)
    assert "start 1900-01-02T00:00:00 is before 1970-01-01T00:00" in message
    assert "rate()" in message
    # AND nothing was stored
    assert [v.name for v in h.scheduler.catalog.list_workflows()] == []


def test_a_rate_catchup_from_1900_begins_at_its_start(h: Backlog) -> None:
    text = CU.replace('"* * * * *"', '"rate(1 minute)"').replace(
        "2000-01-01T00:00:00", "1900-01-02T00:00:00"
    )
    h.scheduler.apply(text)
    h.fire_due()
    h.scheduler.step()
    first = datetime(1900, 1, 2, tzinfo=UTC)
    assert [r.logical_date for r in h.runs()] == [first, first + timedelta(minutes=1)]


def test_without_catchup_a_start_before_1970_is_accepted() -> None:
    text = CU.replace("2000-01-01T00:00:00", "1900-01-02T00:00:00").replace(
        "catchup: true", "catchup: false"
    )
    schedule = load_workflow(text, now=NOW).workflow.schedule
    assert schedule is not None
    assert schedule.start == datetime(1900, 1, 2)


# ------------------------------------------------------------------ the pure rule


@pytest.mark.parametrize(("room", "taken"), [(0, 0), (1, 1), (2, 2), (-3, 0)])
def test_due_firings_takes_at_most_the_room_of_a_backlog(room: int, taken: int) -> None:
    schedule = load_workflow(CU, now=NOW).workflow.schedule
    assert schedule is not None
    cursor = START - timedelta(minutes=1)
    times, new_cursor = due_firings(schedule, cursor, NOW, room)
    assert times == [START + timedelta(minutes=i) for i in range(taken)]
    # the cursor stops at the last one taken (or stays), so the next call resumes there
    assert new_cursor == (times[-1] if times else cursor)


@pytest.mark.parametrize("room", [0, -1])
def test_due_firings_takes_not_even_the_on_time_firing_without_room(room: int) -> None:
    """Airflow makes no run while a DAG is at max_active_runs; with catchup the interval is
    run later, in its turn: nothing is taken and the cursor stays, so the time stays due."""
    schedule = load_workflow(CU, now=NOW).workflow.schedule
    assert schedule is not None
    cursor = NOW - timedelta(minutes=1)
    assert due_firings(schedule, cursor, NOW, room) == ([], cursor)


@pytest.mark.parametrize("room", [1, 5, None])
def test_due_firings_takes_the_on_time_firing_with_room(room: int | None) -> None:
    schedule = load_workflow(CU, now=NOW).workflow.schedule
    assert schedule is not None
    assert due_firings(schedule, NOW - timedelta(minutes=1), NOW, room) == ([NOW], NOW)


def test_due_firings_without_room_moves_the_cursor_when_nothing_is_due() -> None:
    schedule = load_workflow(CU, now=NOW).workflow.schedule
    assert schedule is not None
    later = NOW + timedelta(seconds=30)
    assert due_firings(schedule, NOW, later, 0) == ([], later)


# ------------------------------------------------------------------ a run that never ends

STUCK = CU.replace("max_active_runs: 2", "max_active_runs: 1").replace(
    "2000-01-01T00:00:00", NOW.strftime("%Y-%m-%dT%H:%M:%S")
)  # a minute schedule catching up from NOW: each firing is on time


def made(h: Backlog) -> list[datetime]:
    """The logical dates of the workflow's runs, each once (run ids come from them)."""
    runs = h.runs()
    assert len({r.id for r in runs}) == len(runs)
    return [r.logical_date for r in runs]


def test_a_run_that_never_ends_keeps_a_catchup_within_max_active_runs(h: Backlog) -> None:
    """The firings while the workflow is full make no run (not one queued run a minute, as
    before: 119 after 120 minutes); the cursor stays at the last time made."""
    # GIVEN a minute schedule with catchup and max_active_runs: 1 whose first run never ends
    h.scheduler.apply(STUCK)
    h.fire_due()
    h.scheduler.step()
    # WHEN it fires every minute for half an hour
    for _ in range(30):
        h.minute_later()
        # THEN its one run is all there is: nothing queued
        runs = h.runs()
        assert [(r.logical_date, r.state) for r in runs] == [(NOW, RunState.RUNNING)]
    assert h.scheduler.catalog.get_cursor("pa", "cu") == NOW


def test_when_the_stuck_run_ends_each_missed_time_is_made_once_oldest_first(
    h: Backlog,
) -> None:
    # GIVEN a catch-up whose first run was stuck for 8 minutes of firings
    h.scheduler.apply(STUCK)
    h.fire_due()
    h.scheduler.step()
    for _ in range(8):
        h.minute_later()
    minutes = [NOW + timedelta(minutes=i) for i in range(9)]
    assert made(h) == minutes[:1]
    # WHEN each run ends in turn, the runtime passing after each end, within the minute (the
    # local loop rechecks a waiting catch-up; on AWS the reconciler passes, and EventBridge
    # delivers the minute's firing again)
    for count in range(2, len(minutes) + 1):
        (running,) = [r for r in h.runs() if not r.state.terminal]
        h.end(running.id)
        h.clock.advance(1)
        runtime_pass(h)
        # THEN the next missed minute is made, and only it: in order, none skipped or twice
        assert made(h) == minutes[:count]
        assert sum(1 for r in h.runs() if not r.state.terminal) == 1
    # AND with the backlog done, a pass makes nothing more before the next minute
    (running,) = [r for r in h.runs() if not r.state.terminal]
    h.end(running.id)
    h.clock.advance(1)
    runtime_pass(h)
    assert made(h) == minutes


# ------------------------------------------------------------------ AWS, a firing without room

DAILY_STUCK = STUCK.replace('"* * * * *"', '"0 0 * * *"').replace(
    NOW.strftime("%Y-%m-%dT%H:%M:%S"), "2026-06-01T00:00:00"
)
DAY = timedelta(days=1)
DAY0 = datetime(2026, 6, 1, tzinfo=UTC)


def firing(at: datetime) -> dict[str, str]:
    return {"project": "pa", "workflow": "cu", "scheduled_time": at.strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_on_aws_a_firing_without_room_is_made_later_by_the_reconciler_once(
    h: Backlog,
) -> None:
    # GIVEN a daily catch-up whose first day's run does not end
    h.scheduler.apply(DAILY_STUCK)
    fire(h.scheduler, firing(DAY0))
    h.scheduler.step()
    # WHEN the next two days' firings come while it runs
    for day in (1, 2):
        h.clock.current = DAY0 + day * DAY
        # THEN they make no run (the trigger function creates nothing), and passes nothing
        assert fire(h.scheduler, firing(DAY0 + day * DAY)) is None
        assert reconcile(h.scheduler)["catchups"] == 0
    assert made(h) == [DAY0]
    assert h.scheduler.catalog.get_cursor("pa", "cu") == DAY0
    # WHEN the first run ends: the reconciler's next pass makes the first missed day
    h.end(h.runs()[0].id)
    h.clock.advance(300)
    assert reconcile(h.scheduler)["catchups"] == 1
    assert made(h) == [DAY0, DAY0 + DAY]
    # AND a retry of that day's firing (EventBridge delivers at least once) finds that run
    again = fire(h.scheduler, firing(DAY0 + DAY))
    assert again is not None
    run, created = again
    assert (run.logical_date, created) == (DAY0 + DAY, False)
    # AND while it runs, passes make nothing; when it ends, the next day is made, once
    assert reconcile(h.scheduler)["catchups"] == 0
    h.end(h.runs()[1].id)
    h.clock.advance(300)
    reconcile(h.scheduler)
    reconcile(h.scheduler)
    assert made(h) == [DAY0, DAY0 + DAY, DAY0 + 2 * DAY]


def test_on_aws_a_first_firing_without_room_is_not_lost(h: Backlog) -> None:
    """A catch-up without a start has no cursor before its first firing (the reconciler
    leaves such a workflow to it): a first firing that finds the workflow full (a run
    triggered by hand holds its slot) keeps its time due, and the reconciler makes it."""
    hourly = STUCK.replace('"* * * * *"', '"0 * * * *"').replace(
        f', start: "{NOW.strftime("%Y-%m-%dT%H:%M:%S")}"', ""
    )
    h.scheduler.apply(hourly)
    manual, _ = h.scheduler.trigger("pa", "cu")
    h.scheduler.step()
    one = NOW + timedelta(hours=1)
    h.clock.current = one
    assert fire(h.scheduler, firing(one)) is None
    assert made(h) == [manual.logical_date]
    h.end(manual.id)
    h.clock.advance(300)
    assert reconcile(h.scheduler)["catchups"] == 1
    assert made(h) == [manual.logical_date, one]


# ------------------------------------------------------------------ AWS, between firings


def test_the_reconciler_goes_on_with_a_backlog_between_firings(h: Backlog) -> None:
    # GIVEN a daily catch-up from 30 days ago, full after its first firing: EventBridge
    # fires it again only tomorrow
    daily = CU.replace('"* * * * *"', '"0 0 * * *"').replace(
        "2000-01-01T00:00:00", "2026-05-02T00:00:00"
    )
    h.scheduler.apply(daily)
    event = {"project": "pa", "workflow": "cu", "scheduled_time": "2026-06-01T00:00:00Z"}
    fire(h.scheduler, event)
    h.scheduler.step()
    first = datetime(2026, 5, 2, tzinfo=UTC)
    assert [r.logical_date for r in h.runs()] == [first, first + timedelta(days=1)]
    # WHEN a run ends and the reconciler's pass runs, the same day
    h.end(h.runs()[0].id)
    h.clock.advance(300)
    handled = reconcile(h.scheduler)
    # THEN the next missed day is made, in order, without waiting for tomorrow's firing
    assert [r.logical_date for r in h.runs()] == [first + timedelta(days=i) for i in range(3)]
    assert handled["catchups"] == 1
    # AND while the workflow is full, a pass makes nothing more
    assert reconcile(h.scheduler)["catchups"] == 0
    assert len(h.runs()) == 3


# ------------------------------------------------------------------ a window that has ended

ENDED = CU.replace('"* * * * *"', '"0 * * * *"').replace(
    'start: "2000-01-01T00:00:00"', 'start: "2026-06-01T00:00:00", end: "2026-06-01T05:00:00"'
)  # hourly, 00:00 to 05:00 on the day NOW (12:00) is in: its window is over


def runtime_pass(h: Backlog) -> None:
    """What the runtime does as time goes by: the local cron loop ticks; on AWS, EventBridge
    has no schedule to fire (no fire time is left in the window: ``desired`` is None), and
    the reconciler passes."""
    h.fire_due()
    if not isinstance(h.scheduler.store, SqliteStore):
        reconcile(h.scheduler)
    h.scheduler.step()


def test_a_window_that_ended_is_caught_up_on_both_runtimes_as_runs_end(h: Backlog) -> None:
    """Airflow's start_date/end_date in the past with catchup=True: every interval of the
    window runs. Locally the cron loop makes them; on AWS no firing will ever come, so the
    reconciler must (and must go on past the window's end)."""
    hours = [datetime(2026, 6, 1, hour, tzinfo=UTC) for hour in range(6)]
    # GIVEN a catch-up whose whole window is past, applied with max_active_runs: 2
    h.scheduler.apply(ENDED)
    # WHEN the runtime passes
    runtime_pass(h)
    # THEN the two oldest hours run
    assert [r.logical_date for r in h.runs()] == hours[:2]
    # AND as runs end, the rest of the window is made, in order, and nothing after its end
    for made in range(3, 7):
        oldest = next(r for r in h.runs() if r.state is RunState.RUNNING)
        h.end(oldest.id)
        h.clock.advance(300)
        runtime_pass(h)
        assert [r.logical_date for r in h.runs()] == hours[:made]
    for run in [r for r in h.runs() if r.state is RunState.RUNNING]:
        h.end(run.id)
    h.clock.advance(3600)
    runtime_pass(h)
    assert [r.logical_date for r in h.runs()] == hours


def test_a_schedule_given_back_before_it_ever_fired_counts_from_that_apply_once(
    h: Backlog,
) -> None:
    """A schedule that never fired (its workflow paused from its first apply), removed and
    given back by a later version, is new at that apply, as a schedule given back after
    firing is: a catch-up counts from that apply, not from ``start``, and applying the same
    file again changes nothing. Before, having no cursor, it caught up from ``start``, and
    the unchanged re-apply (a deploy applying every file) then moved its cursor to the
    version's creation: the backlog it was working through was dropped half-way."""
    unscheduled = "".join(line for line in CU.splitlines(True) if "schedule:" not in line)
    h.scheduler.apply(CU)
    h.scheduler.set_paused("pa", "cu", True)
    h.fire_due()  # paused: fires nothing
    h.clock.advance(3600)
    h.scheduler.apply(unscheduled)
    h.clock.advance(3600)
    version, created = h.scheduler.apply(CU)
    assert (version.version, created) == (3, True)
    given_back = version.created_at
    h.scheduler.set_paused("pa", "cu", False)
    h.clock.advance(300)  # five minutes of the schedule given back
    h.fire_due()
    h.scheduler.step()
    first = [r.logical_date for r in h.runs()]
    assert first, "the schedule given back fires"
    assert min(first) > given_back - timedelta(minutes=1)  # nothing from 2000 on
    # WHEN the same file is applied again and the runs go on
    h.clock.advance(60)
    _, created = h.scheduler.apply(CU)
    assert not created
    for _ in range(3):
        for run in [r for r in h.runs() if r.state is RunState.RUNNING]:
            h.end(run.id)
        h.minute_later()
    # THEN every minute since the schedule came back is made, in order, none skipped
    dates = [r.logical_date for r in h.runs()]
    assert dates[: len(first)] == first
    assert dates == [dates[0] + timedelta(minutes=i) for i in range(len(dates))]
