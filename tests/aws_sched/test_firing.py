"""A schedule firing becomes a run, once, with the logical date the local cron loop would use.

The scheduler is the real one over the SQLite store (the DynamoDB store is tested through the
same service by its own suite); the dispatcher records starts and fails a test on a second
start of one attempt. Firings are the target input EventBridge Scheduler would send: the
schedule's own ``Input`` read back from moto, with the scheduled time filled in as
EventBridge does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from stratoflow.adapters.aws.dynamodb import TABLE_SCHEMA, DynamoStore
from stratoflow.adapters.aws.firing import continue_catchups, fire, logical_date
from stratoflow.adapters.aws.schedules import SCHEDULED_TIME, EventBridgeSchedules
from stratoflow.adapters.local.cron import CronLoop
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import Run
from stratoflow.errors import InvalidInput, NotFound
from stratoflow.model import MAX_FIRINGS_PER_TICK, Schedule
from stratoflow.ports import RunQuery, StateStore
from stratoflow.service import Scheduler, scheduled_run_id
from tests.aws_sched.helpers import GROUP, REGION, ROLE_ARN, TRIGGER_ARN, make_scheduler
from tests.fakes import FakeClock, RecordingDispatcher


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def workflow(schedule: str | None, *, name: str = "sales_daily") -> str:
    text = (
        f"name: {name}\nproject: analytics\ntasks:\n  extract: {{type: shell, command: echo hi}}\n"
    )
    if schedule is not None:
        text += "schedule:\n" + "".join(f"  {line}\n" for line in schedule.strip().splitlines())
    return text


def event(when: datetime | str, *, workflow: str = "sales_daily") -> dict[str, Any]:
    scheduled = when if isinstance(when, str) else when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"project": "analytics", "workflow": workflow, "scheduled_time": scheduled}


def runs(store: Any, name: str = "sales_daily") -> list[Run]:
    """The workflow's runs in the order they were created (the clock ticks on every read)."""
    found = store.list_runs(RunQuery(workflow=name, limit=10_000))
    return sorted(found, key=lambda run: run.created_at)


class TickingClock(FakeClock):
    """A fake clock that moves a millisecond every time it is read, so the runs' created_at
    orders them the way they were created on any store."""

    def now(self) -> datetime:
        self.current += timedelta(milliseconds=1)
        return self.current


def dates(store: Any, name: str = "sales_daily") -> list[datetime]:
    return [run.logical_date for run in runs(store, name)]


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path, aws: None) -> Iterator[StateStore]:
    """The firing tests run on both stores: SQLite, and DynamoDB on moto (its table made from
    ``TABLE_SCHEMA``)."""
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "state.db")
        yield opened
        opened.close()
        return
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(**TABLE_SCHEMA, TableName="stratoflow-firing")
    yield DynamoStore("stratoflow-firing", client=client)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "big.db")
    yield opened
    opened.close()


@pytest.fixture
def clock() -> FakeClock:
    return TickingClock(utc(2026, 11, 21, 2, 0, 5))


@pytest.fixture
def scheduler(store: Any, clock: FakeClock) -> Scheduler:
    return make_scheduler(store, clock=clock)


def test_the_schedules_own_input_fires_one_run_and_a_duplicate_firing_none(
    scheduler_client: Any, store: Any, clock: FakeClock
) -> None:
    # GIVEN a workflow applied with its EventBridge schedule (moto)
    dispatcher = RecordingDispatcher()
    schedules = EventBridgeSchedules(
        GROUP, role_arn=ROLE_ARN, target_arn=TRIGGER_ARN, client=scheduler_client
    )
    scheduler = make_scheduler(store, clock=clock, schedules=schedules, dispatcher=dispatcher)
    scheduler.apply(workflow('cron: "0 2 * * *"'))
    target = scheduler_client.get_schedule(Name="analytics.sales_daily", GroupName=GROUP)["Target"]
    # WHEN EventBridge fires it for 02:00 UTC (it fills in the scheduled time)
    firing = json.loads(target["Input"].replace(SCHEDULED_TIME, "2026-11-21T02:00:00Z"))
    result = fire(scheduler, firing)
    # THEN one run exists, for that logical date, under the deterministic scheduled id
    assert result is not None
    run, created = result
    assert created
    assert (
        run.id
        == scheduled_run_id("analytics", "sales_daily", utc(2026, 11, 21, 2))
        == "analytics.sales_daily-scheduled-20261121T020000Z"
    )
    assert (run.logical_date, run.trigger, run.version) == (utc(2026, 11, 21, 2), "schedule", 1)
    # AND the same firing delivered again (EventBridge is at-least-once) returns that run
    again = fire(scheduler, firing)
    assert again is not None
    assert again[0].id == run.id
    assert again[1] is False
    assert [r.id for r in runs(store)] == [run.id]
    # AND its task starts once, however often dispatch runs
    scheduler.dispatch_ready()
    scheduler.dispatch_ready()
    assert list(dispatcher.dispatched) == [(run.id, "extract", 1)]
    assert store.get_cursor("analytics", "sales_daily") == utc(2026, 11, 21, 2)


def test_catchup_creates_the_missed_runs_oldest_first_then_continues_from_the_cursor(
    scheduler: Scheduler, store: Any
) -> None:
    # GIVEN an hourly schedule with catchup, starting at 02:00
    scheduler.apply(workflow('cron: "0 * * * *"\nstart: 2026-11-21T02:00:00\ncatchup: true'))
    # WHEN it first fires at 05:00 (EventBridge Scheduler does not backfill)
    result = fire(scheduler, event(utc(2026, 11, 21, 5)))
    # THEN the runs since the start exist, oldest first, and the firing's own is the last
    assert result is not None
    assert result[0].logical_date == utc(2026, 11, 21, 5)
    assert dates(store) == [utc(2026, 11, 21, h) for h in (2, 3, 4, 5)]
    assert all(run.trigger == "schedule" for run in runs(store))
    assert store.get_cursor("analytics", "sales_daily") == utc(2026, 11, 21, 5)
    # WHEN the next firing to arrive is 08:00 (06:00 and 07:00 were never delivered)
    fire(scheduler, event(utc(2026, 11, 21, 8)))
    # THEN the gap is filled, in order, and nothing earlier is created twice
    assert dates(store) == [utc(2026, 11, 21, h) for h in (2, 3, 4, 5, 6, 7, 8)]
    # AND a late duplicate of 06:00 creates nothing and does not move the cursor back
    late = fire(scheduler, event(utc(2026, 11, 21, 6)))
    assert late is not None
    assert late[1] is False
    assert len(runs(store)) == 7
    assert store.get_cursor("analytics", "sales_daily") == utc(2026, 11, 21, 8)


def test_catchup_without_a_start_creates_only_the_firings_own_run_at_first(
    scheduler: Scheduler, store: Any
) -> None:
    scheduler.apply(workflow('cron: "0 * * * *"\ncatchup: true'))
    fire(scheduler, event(utc(2026, 11, 21, 5)))
    assert dates(store) == [utc(2026, 11, 21, 5)]


def test_a_long_catchup_is_bounded_per_firing_and_resumes_at_the_next(
    sqlite_store: SqliteStore, clock: FakeClock
) -> None:
    store = sqlite_store  # 500 runs: SQLite only, to keep the suite quick
    scheduler = make_scheduler(store, clock=clock)
    # GIVEN a minutely schedule with catchup that started a day before its first firing, and
    # room for more runs than one firing makes
    scheduler.apply(
        workflow('cron: "* * * * *"\nstart: 2026-11-20T02:00:00\ncatchup: true')
        + "max_active_runs: 1000\n"
    )
    first = utc(2026, 11, 21, 2)
    fire(scheduler, event(first))
    # THEN one firing creates the oldest MAX_FIRINGS_PER_TICK missed runs; its own waits its
    # turn behind the rest of the backlog
    created = dates(store)
    oldest = [utc(2026, 11, 20, 2) + timedelta(minutes=i) for i in range(MAX_FIRINGS_PER_TICK)]
    assert created == oldest
    assert store.get_cursor("analytics", "sales_daily") == oldest[-1]
    # AND the next firing resumes right after the last one created
    fire(scheduler, event(first + timedelta(minutes=1)))
    assert dates(store)[len(created)] == oldest[-1] + timedelta(minutes=1)


def test_without_catchup_each_firing_creates_its_own_run_even_out_of_order(
    scheduler: Scheduler, store: Any
) -> None:
    scheduler.apply(workflow('cron: "0 * * * *"\nstart: 2026-11-20T00:00:00'))
    fire(scheduler, event(utc(2026, 11, 21, 8)))
    fire(scheduler, event(utc(2026, 11, 21, 7)))  # delivered late, after a retry
    assert dates(store) == [utc(2026, 11, 21, 8), utc(2026, 11, 21, 7)]
    assert store.get_cursor("analytics", "sales_daily") == utc(2026, 11, 21, 8)


def test_same_named_workflows_of_two_projects_firing_together_get_a_run_each(
    scheduler: Scheduler, store: Any
) -> None:
    text = workflow('cron: "0 2 * * *"')
    scheduler.apply(text)
    scheduler.apply(text.replace("project: analytics", "project: finance"))
    at = utc(2026, 11, 21, 2)
    first = fire(scheduler, event(at))
    second = fire(scheduler, {**event(at), "project": "finance"})
    assert first is not None
    assert second is not None
    assert second[1], "finance's firing must not be mistaken for analytics' duplicate"
    assert {first[0].project, second[0].project} == {"analytics", "finance"}
    assert first[0].id != second[0].id


def test_a_paused_workflow_or_a_removed_schedule_fires_nothing(
    scheduler: Scheduler, store: Any
) -> None:
    scheduler.apply(workflow('cron: "0 * * * *"\ncatchup: true\nstart: 2026-11-21T00:00:00'))
    scheduler.set_paused("analytics", "sales_daily", True)
    assert fire(scheduler, event(utc(2026, 11, 21, 5))) is None
    assert runs(store) == []
    assert store.get_cursor("analytics", "sales_daily") is None
    # a schedule removed (its EventBridge schedule deleted by the same apply) fires nothing
    scheduler.set_paused("analytics", "sales_daily", False)
    scheduler.apply(workflow(None))
    assert fire(scheduler, event(utc(2026, 11, 21, 5))) is None
    assert runs(store) == []


def test_a_firing_outside_the_window_fires_nothing(scheduler: Scheduler, store: Any) -> None:
    scheduler.apply(
        workflow('cron: "0 * * * *"\nstart: 2026-11-21T03:00:00\nend: 2026-11-21T06:00:00')
    )
    assert fire(scheduler, event(utc(2026, 11, 21, 2))) is None  # before the start
    assert fire(scheduler, event(utc(2026, 11, 21, 7))) is None  # after the end
    # the end itself is inside (EndDate is set just after it)
    assert fire(scheduler, event(utc(2026, 11, 21, 6))) is not None
    assert dates(store) == [utc(2026, 11, 21, 6)]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"workflow": "sales_daily", "scheduled_time": "2026-11-21T02:00:00Z"}, "project"),
        ({"project": "analytics", "scheduled_time": "2026-11-21T02:00:00Z"}, "workflow"),
        ({"project": "analytics", "workflow": 7, "scheduled_time": "x"}, "workflow"),
        ({"project": " ", "workflow": "sales_daily", "scheduled_time": "x"}, "project"),
        (event("2026-11-21T02:00:00"), "scheduled_time: '2026-11-21T02:00:00' has no time zone"),
        (event("yesterday"), "scheduled_time: 'yesterday' is not an ISO 8601 time"),
        (event(SCHEDULED_TIME), "scheduled_time"),  # a placeholder EventBridge did not fill
        ({"project": "analytics", "workflow": "sales_daily"}, "scheduled_time: required"),
        ("not json", "expected a JSON object"),
        ([event(utc(2026, 11, 21, 2))], "got list"),
    ],
)
def test_a_garbled_firing_is_refused_naming_the_field_and_creates_nothing(
    scheduler: Scheduler, store: Any, bad: Any, field: str
) -> None:
    scheduler.apply(workflow('cron: "0 * * * *"'))
    with pytest.raises(InvalidInput) as error:
        fire(scheduler, bad)
    assert field in str(error.value)
    assert str(error.value).startswith("schedule firing: ")
    assert runs(store) == []
    assert store.get_cursor("analytics", "sales_daily") is None


def test_a_firing_for_an_unknown_workflow_is_not_found(scheduler: Scheduler) -> None:
    with pytest.raises(NotFound):
        fire(scheduler, event(utc(2026, 11, 21, 2), workflow="nope"))


def test_a_firing_off_the_rate_grid_gets_the_grid_date_the_local_loop_uses(
    scheduler: Scheduler, store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN rate(1 hour) from 00:30: the local loop's logical dates are HH:30
    scheduler.apply(workflow('cron: "rate(1 hour)"\nstart: 2026-11-21T00:30:00'))
    # WHEN EventBridge fires at 05:30:07 (an interval anchored a few seconds off)
    with caplog.at_level(logging.WARNING, logger="stratoflow.firing"):
        result = fire(scheduler, event("2026-11-21T05:30:07Z"))
    # THEN the run's logical date is the grid's 05:30, and the difference is logged
    assert result is not None
    assert result[0].logical_date == utc(2026, 11, 21, 5, 30)
    assert "not a fire time" in caplog.text


@pytest.mark.parametrize(
    "change",
    [
        pytest.param('cron: "0 2 * * *"\ntimezone: Asia/Tokyo', id="time-zone-changed"),
        pytest.param('cron: "30 1 * * *"', id="time-changed"),
    ],
)
def test_a_retried_firing_of_the_schedule_an_apply_replaced_creates_nothing(
    scheduler: Scheduler, store: Any, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    # GIVEN a daily 02:00 UTC schedule that fired on the 20th
    scheduler.apply(workflow('cron: "0 2 * * *"'))
    fire(scheduler, event(utc(2026, 11, 20, 2)))
    # AND its firing of the 21st failed and is being retried by EventBridge when an apply
    # changes the schedule (UpdateSchedule: the old times fire no more, but a retry of one
    # already due still arrives)
    scheduler.apply(workflow(change))
    cursor = store.get_cursor("analytics", "sales_daily")
    # WHEN the retry of the old 02:00Z firing is delivered
    with caplog.at_level(logging.WARNING, logger="stratoflow.firing"):
        result = fire(scheduler, event(utc(2026, 11, 21, 2)))
    # THEN it creates nothing: 02:00Z is none of the new schedule's times, and the new
    # schedule's last time before it (17:00Z on the 20th, 01:30Z on the 21st) is a date the
    # local cron loop never fires (its cursor had passed it when the apply came)
    assert result is None
    assert dates(store) == [utc(2026, 11, 20, 2)]
    assert store.get_cursor("analytics", "sales_daily") == cursor
    assert "not a fire time" in caplog.text


def test_a_fall_back_firing_at_the_second_pass_of_the_hour_is_that_fire_time(
    scheduler: Scheduler, store: Any
) -> None:
    """EventBridge runs a time a fall-back repeats once, without saying at which pass: a
    firing at the second (02:30 CET = 01:30Z on 2026-10-25) is the fire time of the first
    (02:30 CEST = 00:30Z), as the local loop dates it, not a stale firing."""
    scheduler.apply(workflow('cron: "30 2 * * *"\ntimezone: Europe/Berlin'))
    result = fire(scheduler, event(utc(2026, 10, 25, 1, 30)))
    assert result is not None
    assert result[0].logical_date == utc(2026, 10, 25, 0, 30)


def test_a_schedule_changed_by_an_apply_catches_up_from_the_apply_on_both_runtimes(
    store: Any, tmp_path: Path
) -> None:
    """Catchup makes the runs a schedule missed. The hours between the last daily run and an
    apply that makes the schedule hourly were never its times: the local loop (whose cursor
    is the last instant it looked at) does not make them, and neither may the trigger
    (whose cursor is the last date it fired)."""
    old = workflow('cron: "0 2 * * *"\ncatchup: true')
    new = workflow('cron: "0 * * * *"\ncatchup: true')
    fired, applied = utc(2026, 11, 20, 2), utc(2026, 11, 20, 10, 30)
    # AWS: the daily firing at 02:00, the apply at 10:30, the reconciler's pass, the 11:00 firing
    aws_clock = FakeClock(fired)
    aws = make_scheduler(store, clock=aws_clock)
    aws.apply(old)
    fire(aws, event(fired))
    aws_clock.current = applied
    aws.apply(new)
    aws_clock.current = applied + timedelta(minutes=1)
    continue_catchups(aws)
    aws_clock.current = utc(2026, 11, 20, 11, 0, 2)
    fire(aws, event(utc(2026, 11, 20, 11)))
    # local: the cron loop ticks every minute throughout
    local_store = SqliteStore(tmp_path / "local.db")
    local_clock = FakeClock(fired - timedelta(minutes=1))
    local = make_scheduler(local_store, clock=local_clock)
    local.apply(old)
    loop = CronLoop(local, local_store)
    while local_clock.now() <= utc(2026, 11, 20, 11, 0, 30):
        if local_clock.now() == applied:
            local.apply(new)
            loop.invalidate()
        loop.tick(local_clock.now())
        local_clock.advance(60)
    assert dates(local_store) == [fired, utc(2026, 11, 20, 11)]
    assert dates(store) == [fired, utc(2026, 11, 20, 11)]
    local_store.close()


def test_an_apply_retried_after_its_cursor_write_failed_still_counts_the_new_times_from_it(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The apply stores the version, then moves the cursor; when that second write fails (a
    throttle, a process that dies), the same file applied again (unchanged: no new version)
    must still move it, to when the version was made. Else the catch-up makes runs for the
    hours 03:00-10:00, times no schedule ever had."""
    old = workflow('cron: "0 2 * * *"\ncatchup: true')
    new = workflow('cron: "0 * * * *"\ncatchup: true')
    fired, applied = utc(2026, 11, 20, 2), utc(2026, 11, 20, 10, 30)
    clock = FakeClock(fired)
    scheduler = make_scheduler(store, clock=clock)
    scheduler.apply(old)
    fire(scheduler, event(fired))
    clock.current = applied
    real_set_cursor = store.set_cursor
    failed: list[datetime] = []

    def set_cursor_failing_once(project: str, name: str, when: datetime) -> None:
        if not failed:
            failed.append(when)
            raise RuntimeError("throttled")
        real_set_cursor(project, name, when)

    monkeypatch.setattr(store, "set_cursor", set_cursor_failing_once)
    with pytest.raises(RuntimeError, match="throttled"):
        scheduler.apply(new)
    clock.current = applied + timedelta(hours=1)  # retried an hour later
    _, created = scheduler.apply(new)
    assert not created
    continue_catchups(scheduler)
    assert dates(store) == [fired, utc(2026, 11, 20, 11)]


def test_a_firing_that_read_the_cursor_before_an_apply_restarted_it_does_not_move_it_back(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A late firing of the old daily schedule (EventBridge retries one for a day) and an
    apply making it hourly, in two functions at once: the firing reads the cursor, the apply
    moves it up to the apply, then the firing writes its own, earlier. Written as it was, the
    restart was undone and the catch-up made runs for 03:00-10:00, times no schedule had."""
    old = workflow('cron: "0 2 * * *"\ncatchup: true')
    new = workflow('cron: "0 * * * *"\ncatchup: true')
    first, late, applied = utc(2026, 11, 19, 2), utc(2026, 11, 20, 2), utc(2026, 11, 20, 10, 30)
    clock = FakeClock(first)
    scheduler = make_scheduler(store, clock=clock)
    scheduler.apply(old)
    fire(scheduler, event(first))
    clock.current = applied
    applying = make_scheduler(store, clock=clock)  # the API function, meanwhile
    real_get_cursor = store.get_cursor
    reads: list[datetime | None] = []

    def get_cursor_then_the_apply(project: str, name: str) -> datetime | None:
        cursor = real_get_cursor(project, name)
        if not reads:  # the firing's read: the apply comes right after it
            reads.append(cursor)
            applying.apply(new)
        return cursor

    monkeypatch.setattr(store, "get_cursor", get_cursor_then_the_apply)
    fire(scheduler, event(late))
    monkeypatch.undo()
    assert reads == [first]
    assert store.get_cursor("analytics", "sales_daily") == applied
    clock.current = applied + timedelta(hours=1)
    continue_catchups(scheduler)
    assert dates(store) == [first, late, utc(2026, 11, 20, 11)]


def test_unpausing_without_catchup_fires_the_latest_missed_time_at_once_on_both_runtimes(
    store: Any, tmp_path: Path
) -> None:
    """As Airflow does when a DAG without catchup is unpaused: the latest interval missed
    while paused runs at once, the earlier ones not at all. Locally the cron loop's next
    tick does it; on AWS no firing comes until the next time, so the unpause must."""
    text = workflow('cron: "0 * * * *"')
    fired, paused, unpaused = (
        utc(2026, 11, 20, 5),
        utc(2026, 11, 20, 5, 30),
        utc(2026, 11, 20, 8, 30),
    )
    # AWS: the 05:00 firing, the pause, the unpause (no firing while paused: DISABLED)
    aws_clock = FakeClock(fired)
    aws = make_scheduler(store, clock=aws_clock)
    aws.apply(text)
    fire(aws, event(fired))
    aws_clock.current = paused
    aws.set_paused("analytics", "sales_daily", True)
    aws_clock.current = unpaused
    aws.set_paused("analytics", "sales_daily", False)
    # local: the cron loop ticks every minute throughout
    local_store = SqliteStore(tmp_path / "local.db")
    local_clock = FakeClock(fired - timedelta(minutes=1))
    local = make_scheduler(local_store, clock=local_clock)
    local.apply(text)
    loop = CronLoop(local, local_store)
    while local_clock.now() <= unpaused + timedelta(minutes=1):
        if local_clock.now() in (paused, unpaused):
            local.set_paused("analytics", "sales_daily", local_clock.now() == paused)
            loop.invalidate()
        loop.tick(local_clock.now())
        local_clock.advance(60)
    # THEN both have the 05:00 run and the latest missed hour's, 08:00, and no other
    assert dates(local_store) == [fired, utc(2026, 11, 20, 8)]
    assert dates(store) == [fired, utc(2026, 11, 20, 8)]
    # AND on AWS the next firing goes on as usual
    aws_clock.current = utc(2026, 11, 20, 9, 0, 2)
    fire(aws, event(utc(2026, 11, 20, 9)))
    assert dates(store) == [fired, utc(2026, 11, 20, 8), utc(2026, 11, 20, 9)]
    local_store.close()


# ------------------------------------------------------------------ daylight-saving time

# EventBridge Scheduler User Guide, "Daylight savings time": "When time shifts forward in the
# Spring, if a cron expression falls on a non-existent date and time, your schedule invocation
# is skipped. When time shifts backwards in the Fall, your schedule runs only once."
# Europe/Berlin springs forward on 2026-03-29 (02:00 CET -> 03:00 CEST) and falls back on
# 2026-10-25 (03:00 CEST -> 02:00 CET). The instants below are what EventBridge invokes at,
# worked out by hand from those rules, not by the code under test.
BERLIN_CASES = [
    pytest.param(
        "30 2 * * *",
        "2026-03-27T00:00:00",
        # 02:30 CET = 01:30Z; 2026-03-29 02:30 does not exist: skipped; then 02:30 CEST = 00:30Z
        [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30), utc(2026, 3, 30, 0, 30)],
        id="spring-forward-gap-skipped",
    ),
    pytest.param(
        "0 3 * * *",
        "2026-03-28T00:00:00",
        # 03:00 CET = 02:00Z; on the 29th 03:00 exists (CEST) = 01:00Z
        [utc(2026, 3, 28, 2), utc(2026, 3, 29, 1), utc(2026, 3, 30, 1)],
        id="spring-forward-day",
    ),
    pytest.param(
        "30 2 * * *",
        "2026-10-24T00:00:00",
        # 02:30 CEST = 00:30Z; on the 25th 02:30 happens twice: once, at its first (CEST)
        # instance, 00:30Z; then 02:30 CET = 01:30Z
        [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        id="fall-back-repeat-once",
    ),
]


@pytest.mark.parametrize(("cron", "start", "firings"), BERLIN_CASES)
@pytest.mark.parametrize("catchup", [False, True])
def test_across_dst_in_berlin_aws_firings_and_the_local_loop_create_the_same_runs(
    tmp_path: Any, cron: str, start: str, firings: list[datetime], catchup: bool
) -> None:
    text = workflow(
        f'cron: "{cron}"\ntimezone: Europe/Berlin\nstart: {start}\ncatchup: {str(catchup).lower()}'
    )
    # AWS: EventBridge fires at each instant; the trigger creates the runs
    aws_store = SqliteStore(tmp_path / "aws.db")
    aws_clock = FakeClock(firings[0])
    aws = make_scheduler(aws_store, clock=aws_clock)
    aws.apply(text)
    # local: the cron loop ticks at the same instants (its first tick starts its cursor)
    local_store = SqliteStore(tmp_path / "local.db")
    local_clock = FakeClock(firings[0] - timedelta(minutes=1))
    local = make_scheduler(local_store, clock=local_clock)
    local.apply(text)
    loop = CronLoop(local, local_store)
    loop.tick(local_clock.now())
    for when in firings:
        aws_clock.current = local_clock.current = when
        result = fire(aws, event(when))
        assert result is not None
        assert result[0].logical_date == when
        loop.tick(when)
    aws_runs = [(run.id, run.logical_date) for run in runs(aws_store)]
    local_runs = [(run.id, run.logical_date) for run in runs(local_store)]
    assert [date for _, date in aws_runs] == firings
    assert aws_runs == local_runs
    aws_store.close()
    local_store.close()


def test_a_firing_at_the_skipped_days_usual_utc_time_maps_to_the_fire_time_before_it() -> None:
    """EventBridge skips 02:30 on the spring-forward day. A firing claiming 01:30Z that day
    (02:30 at the winter offset; really 03:30 CEST) is no fire time: it gets the last real one,
    the day before, whose run already exists, so the duplicate-run guard absorbs it."""
    schedule = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    assert logical_date(schedule, utc(2026, 3, 29, 1, 30)) == utc(2026, 3, 28, 1, 30)
    assert logical_date(schedule, utc(2026, 3, 30, 0, 30)) == utc(2026, 3, 30, 0, 30)


@pytest.mark.parametrize("catchup", [True, False], ids=["catchup", "no-catchup"])
def test_a_schedule_removed_then_added_again_counts_its_times_from_the_apply_that_adds_it(
    store: Any, tmp_path: Path, catchup: bool
) -> None:
    """A schedule removed by one apply and given back by a later one did not exist in
    between: as any apply that changes a schedule's times, the one that adds it back counts
    them from itself. Else the trigger's catch-up made runs for the hours since the daily
    schedule last fired (03:00-10:00, when the workflow had no schedule), and without catchup
    both runtimes fired 10:00 at the apply, a time no schedule had, which a schedule first
    added at 10:30 does not do."""
    daily = workflow(f'cron: "0 2 * * *"\ncatchup: {str(catchup).lower()}')
    none = workflow(None)
    hourly = workflow(f'cron: "0 * * * *"\ncatchup: {str(catchup).lower()}')
    fired, removed, added = utc(2026, 11, 20, 2), utc(2026, 11, 20, 5), utc(2026, 11, 20, 10, 30)
    # AWS: the daily firing at 02:00, the applies, the reconciler's pass, the 11:00 firing
    aws_clock = FakeClock(fired)
    aws = make_scheduler(store, clock=aws_clock)
    aws.apply(daily)
    fire(aws, event(fired))
    aws_clock.current = removed
    aws.apply(none)
    aws_clock.current = added
    aws.apply(hourly)
    aws_clock.current = added + timedelta(minutes=1)
    continue_catchups(aws)
    aws_clock.current = utc(2026, 11, 20, 11, 0, 2)
    fire(aws, event(utc(2026, 11, 20, 11)))
    # local: the cron loop ticks every minute throughout
    local_store = SqliteStore(tmp_path / "local.db")
    local_clock = FakeClock(fired - timedelta(minutes=1))
    local = make_scheduler(local_store, clock=local_clock)
    local.apply(daily)
    loop = CronLoop(local, local_store)
    while local_clock.now() <= utc(2026, 11, 20, 11, 0, 30):
        for at, text in ((removed, none), (added, hourly)):
            if local_clock.now() == at:
                local.apply(text)
                loop.invalidate()
        loop.tick(local_clock.now())
        local_clock.advance(60)
    assert dates(local_store) == [fired, utc(2026, 11, 20, 11)]
    assert dates(store) == [fired, utc(2026, 11, 20, 11)]
    local_store.close()
