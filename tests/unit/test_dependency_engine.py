"""The dependency task's pure rules: every date value's intervals (DST days, month ends,
weeks starting on Monday), the latest run per interval, and the all/any decision."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from stratoflow.engine import RunState, TaskState
from stratoflow.engine.dependency import (
    DependencyCheck,
    Interval,
    ItemStatus,
    Outcome,
    UpstreamRun,
    combine,
    date_intervals,
    decide,
    item_status,
    latest_in,
    settles,
    unknown_upstream,
)
from stratoflow.errors import InvalidInput
from stratoflow.model import DateValue, DependencyItem, DependencyTask, load_workflow

UTCZ = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def days(intervals: list[Interval]) -> list[str]:
    return [i.label for i in intervals]


def local(d: int, h: int, zone: ZoneInfo, *, month: int = 3, year: int = 2026) -> datetime:
    return datetime(year, month, d, h, 30, tzinfo=zone)


# ------------------------------------------------------------------ date values
# 2026-03-11 is a Wednesday
WED = datetime(2026, 3, 11, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (DateValue.TODAY, ["2026-03-11"]),
        (DateValue.LAST_1_DAYS, ["2026-03-10"]),
        (DateValue.LAST_2_DAYS, ["2026-03-09", "2026-03-10"]),
        (DateValue.LAST_3_DAYS, ["2026-03-08", "2026-03-09", "2026-03-10"]),
        (DateValue.LAST_7_DAYS, [f"2026-03-{d:02d}" for d in range(4, 11)]),
        (DateValue.THIS_WEEK, ["2026-03-09", "2026-03-10", "2026-03-11"]),
        (DateValue.LAST_WEEK, [f"2026-03-{d:02d}" for d in range(2, 9)]),
        (DateValue.LAST_MONDAY, ["2026-03-02"]),
        (DateValue.LAST_TUESDAY, ["2026-03-03"]),
        (DateValue.LAST_WEDNESDAY, ["2026-03-04"]),
        (DateValue.LAST_THURSDAY, ["2026-03-05"]),
        (DateValue.LAST_FRIDAY, ["2026-03-06"]),
        (DateValue.LAST_SATURDAY, ["2026-03-07"]),
        (DateValue.LAST_SUNDAY, ["2026-03-08"]),
        (DateValue.THIS_MONTH, [f"2026-03-{d:02d}" for d in range(1, 12)]),
        (DateValue.LAST_MONTH, [f"2026-02-{d:02d}" for d in range(1, 29)]),
        (DateValue.THIS_MONTH_BEGIN, ["2026-03-01"]),
        (DateValue.LAST_MONTH_BEGIN, ["2026-02-01"]),
        (DateValue.LAST_MONTH_END, ["2026-02-28"]),
    ],
)
def test_day_values(value: DateValue, expected: list[str]) -> None:
    got = date_intervals(value, WED, UTCZ)
    assert days(got) == expected
    for interval in got:  # whole UTC days, contiguous
        assert interval.end - interval.start == timedelta(days=1)
        assert interval.start.time().hour == 0
    assert all(a.end == b.start for a, b in pairwise(got))


@pytest.mark.parametrize(
    ("value", "hours"),
    [
        (DateValue.CURRENT_HOUR, [10]),
        (DateValue.LAST_1_HOURS, [9]),
        (DateValue.LAST_2_HOURS, [8, 9]),
        (DateValue.LAST_3_HOURS, [7, 8, 9]),
    ],
)
def test_hour_values(value: DateValue, hours: list[int]) -> None:
    got = date_intervals(value, WED, UTCZ)
    assert [i.start.hour for i in got] == hours
    assert all(i.end - i.start == timedelta(hours=1) for i in got)
    assert all(i.start.minute == 0 for i in got)


def test_last24hours_is_the_24_hours_before_the_logical_hour() -> None:
    got = date_intervals(DateValue.LAST_24_HOURS, WED, UTCZ)
    assert len(got) == 24
    assert got[0].start == datetime(2026, 3, 10, 10, tzinfo=UTC)
    assert got[-1].end == datetime(2026, 3, 11, 10, tzinfo=UTC)


def test_every_date_value_is_handled() -> None:
    for value in DateValue:
        assert date_intervals(value, WED, BERLIN), value


def test_week_starts_on_monday_and_sunday_belongs_to_its_week() -> None:
    sunday = datetime(2026, 3, 15, 12, tzinfo=UTC)
    assert days(date_intervals(DateValue.THIS_WEEK, sunday, UTCZ))[0] == "2026-03-09"
    assert len(date_intervals(DateValue.THIS_WEEK, sunday, UTCZ)) == 7
    assert days(date_intervals(DateValue.LAST_SUNDAY, sunday, UTCZ)) == ["2026-03-08"]
    monday = datetime(2026, 3, 16, 0, 0, tzinfo=UTC)
    assert days(date_intervals(DateValue.THIS_WEEK, monday, UTCZ)) == ["2026-03-16"]
    assert days(date_intervals(DateValue.LAST_WEEK, monday, UTCZ))[-1] == "2026-03-15"


def test_month_ends_and_years() -> None:
    first = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert days(date_intervals(DateValue.LAST_MONTH_END, first, UTCZ)) == ["2025-12-31"]
    assert days(date_intervals(DateValue.LAST_MONTH_BEGIN, first, UTCZ)) == ["2025-12-01"]
    assert len(date_intervals(DateValue.LAST_MONTH, first, UTCZ)) == 31
    assert days(date_intervals(DateValue.LAST_1_DAYS, first, UTCZ)) == ["2025-12-31"]
    assert days(date_intervals(DateValue.THIS_MONTH, first, UTCZ)) == ["2026-01-01"]
    leap = datetime(2024, 3, 31, tzinfo=UTC)
    assert days(date_intervals(DateValue.LAST_MONTH_END, leap, UTCZ)) == ["2024-02-29"]
    assert len(date_intervals(DateValue.LAST_MONTH, leap, UTCZ)) == 29
    may31 = datetime(2026, 5, 31, 23, tzinfo=UTC)
    assert days(date_intervals(DateValue.LAST_MONTH_END, may31, UTCZ)) == ["2026-04-30"]
    assert len(date_intervals(DateValue.THIS_MONTH, may31, UTCZ)) == 31


def test_the_day_is_the_time_zones_day() -> None:
    # 23:30 UTC on the 10th is already the 11th in Berlin
    late = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    assert days(date_intervals(DateValue.TODAY, late, UTCZ)) == ["2026-03-10"]
    (berlin,) = date_intervals(DateValue.TODAY, late, BERLIN)
    assert berlin.label == "2026-03-11"
    assert berlin.start == datetime(2026, 3, 10, 23, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "spring", "autumn"),
    [
        (BERLIN, date(2026, 3, 29), date(2026, 10, 25)),
        (NEW_YORK, date(2026, 3, 8), date(2026, 11, 1)),
    ],
)
def test_dst_days_are_calendar_days(zone: ZoneInfo, spring: date, autumn: date) -> None:
    """DolphinScheduler #18015 computed '-1 day' as 24 hours: the day after a DST change then
    pointed at the wrong day. Here a day is the calendar day: 23 or 25 hours long."""
    after_spring = datetime.combine(spring + timedelta(days=1), datetime.min.time(), zone)
    after_spring = after_spring.replace(hour=0, minute=30)
    (yesterday,) = date_intervals(DateValue.LAST_1_DAYS, after_spring, zone)
    assert yesterday.label == spring.isoformat()
    assert yesterday.end - yesterday.start == timedelta(hours=23)
    assert yesterday.start.astimezone(zone).hour == 0
    assert yesterday.end.astimezone(zone).hour == 0
    after_autumn = datetime.combine(autumn + timedelta(days=1), datetime.min.time(), zone)
    after_autumn = after_autumn.replace(hour=0, minute=30)
    (yesterday,) = date_intervals(DateValue.LAST_1_DAYS, after_autumn, zone)
    assert yesterday.label == autumn.isoformat()
    assert yesterday.end - yesterday.start == timedelta(hours=25)
    # a week across the change: 7 calendar days, contiguous, each starting at local midnight
    week = date_intervals(DateValue.LAST_7_DAYS, after_spring + timedelta(days=3), zone)
    assert len(week) == 7
    assert all(a.end == b.start for a, b in pairwise(week))
    assert all(i.start.astimezone(zone).hour == 0 for i in week)
    assert sum((i.end - i.start for i in week), timedelta()) == timedelta(hours=7 * 24 - 1)


def test_hours_across_dst_are_real_hours() -> None:
    # Berlin 2026-03-29: 02:00-03:00 does not exist; at 04:30 CEST (02:30Z) the last 2 hours
    # are 01:00 CET (00:00Z) and 03:00 CEST (01:00Z), not a missing 02:00
    at = datetime(2026, 3, 29, 4, 30, tzinfo=BERLIN)
    got = date_intervals(DateValue.LAST_2_HOURS, at, BERLIN)
    assert [i.start for i in got] == [
        datetime(2026, 3, 29, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 1, tzinfo=UTC),
    ]
    assert [i.label for i in got] == ["2026-03-29T01:00+01:00", "2026-03-29T03:00+02:00"]
    # New York 2026-11-01: 01:00-02:00 happens twice; the second 01:30 (fold=1) is its own hour
    second = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK)
    (current,) = date_intervals(DateValue.CURRENT_HOUR, second, NEW_YORK)
    assert current.start == datetime(2026, 11, 1, 6, tzinfo=UTC)
    (previous,) = date_intervals(DateValue.LAST_1_HOURS, second, NEW_YORK)
    assert previous.start == datetime(2026, 11, 1, 5, tzinfo=UTC)
    assert previous.label == "2026-11-01T01:00-04:00"


def test_half_hour_zone_hours_start_at_local_hours() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    (hour,) = date_intervals(DateValue.CURRENT_HOUR, WED, kolkata)  # 16:00 IST
    assert hour.start == datetime(2026, 3, 11, 10, 30, tzinfo=UTC)


def test_naive_logical_date_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        date_intervals(DateValue.TODAY, datetime(2026, 1, 1), UTCZ)


# ------------------------------------------------------------------ decisions
T0 = datetime(2026, 3, 11, 6, tzinfo=UTC)


def run(
    day: int,
    state: RunState,
    *,
    created: int = 0,
    task_state: TaskState | None = None,
    rid: str | None = None,
) -> UpstreamRun:
    return UpstreamRun(
        rid or f"up-{day}-{created}",
        state,
        datetime(2026, 3, day, 2, tzinfo=UTC),
        T0 + timedelta(minutes=created),
        task_state,
    )


def week_status(
    runs: dict[int, UpstreamRun | None], item: DependencyItem | None = None
) -> ItemStatus:
    item = item or DependencyItem(workflow="sales", date=DateValue.LAST_7_DAYS)
    intervals = date_intervals(item.date, WED, UTCZ)
    latest = [runs.get(int(i.label[-2:])) for i in intervals]
    return item_status(item, "default", intervals, latest)


def test_latest_created_run_in_an_interval_decides() -> None:
    (day,) = date_intervals(DateValue.LAST_1_DAYS, WED, UTCZ)
    old = run(10, RunState.FAILED, created=0)
    new = run(10, RunState.SUCCEEDED, created=5)
    outside = run(11, RunState.FAILED, created=9)
    assert latest_in(day, [old, new, outside]) is new
    assert latest_in(day, [outside]) is None


def test_item_succeeds_only_when_every_interval_succeeded() -> None:
    six = {d: run(d, RunState.SUCCEEDED) for d in range(4, 10)}
    waiting = week_status(six)
    assert waiting.outcome is Outcome.WAITING
    assert "2026-03-10: no run" in waiting.detail
    assert week_status({**six, 10: run(10, RunState.RUNNING)}).outcome is Outcome.WAITING
    done = week_status({**six, 10: run(10, RunState.SUCCEEDED)})
    assert done.outcome is Outcome.SUCCEEDED


def test_item_fails_at_once_when_one_interval_failed() -> None:
    failed = week_status({5: run(5, RunState.FAILED, rid="up-5")})
    assert failed.outcome is Outcome.FAILED
    assert failed.detail == "sales (last7Days) 2026-03-05: run up-5 failed"
    assert week_status({6: run(6, RunState.STOPPED)}).outcome is Outcome.FAILED


def test_task_items_read_the_task_state() -> None:
    item = DependencyItem(workflow="other/sales", task="publish", date=DateValue.LAST_1_DAYS)
    ok = run(10, RunState.RUNNING, task_state=TaskState.SUCCEEDED)
    assert week_status({10: ok}, item).outcome is Outcome.SUCCEEDED  # the run still runs
    bad = run(10, RunState.RUNNING, task_state=TaskState.UPSTREAM_FAILED)
    status = week_status({10: bad}, item)
    assert status.outcome is Outcome.FAILED
    assert status.detail.startswith("other/sales (last1Days)")
    assert "task publish" in status.detail
    assert (
        week_status({10: run(10, RunState.RUNNING, task_state=TaskState.WAITING)}, item).outcome
        is Outcome.WAITING
    )
    gone = week_status({10: run(10, RunState.SUCCEEDED)}, item)  # ended, no such task
    assert gone.outcome is Outcome.FAILED
    assert "has no task publish" in gone.detail


S, F, W = (
    ItemStatus(Outcome.SUCCEEDED, "s"),
    ItemStatus(Outcome.FAILED, "f"),
    ItemStatus(Outcome.WAITING, "w"),
)


@pytest.mark.parametrize(
    ("mode", "statuses", "expected"),
    [
        ("all", [S, S], Outcome.SUCCEEDED),
        ("all", [S, W], Outcome.WAITING),
        ("all", [W, F], Outcome.FAILED),  # DolphinScheduler #15229 waited for ever here
        ("all", [F, S], Outcome.FAILED),
        ("any", [W, S], Outcome.SUCCEEDED),  # one success is enough, at once
        ("any", [F, W], Outcome.WAITING),
        ("any", [F, F], Outcome.FAILED),
        ("any", [S, F], Outcome.SUCCEEDED),
    ],
)
def test_combine(mode: str, statuses: list[ItemStatus], expected: Outcome) -> None:
    assert combine(mode, statuses) is expected


def dep_task(**extra: object) -> DependencyTask:
    doc = {
        "name": "report",
        "tasks": {
            "wait": {
                "type": "dependency",
                "all": [{"workflow": "sales", "date": "last7Days"}],
                "check_interval": "30s",
                **extra,
            }
        },
    }
    import yaml

    task = load_workflow(yaml.safe_dump(doc)).workflow.tasks["wait"]
    assert isinstance(task, DependencyTask)
    return task


def test_decide_waits_then_times_out_naming_what_is_missing() -> None:
    task = dep_task(timeout="1h")
    status = week_status({d: run(d, RunState.SUCCEEDED) for d in range(4, 10)})
    check = decide(task, [status], started_at=T0, timeout=timedelta(hours=1), now=T0)
    assert check == DependencyCheck(
        Outcome.WAITING,
        "waiting for: sales (last7Days) 2026-03-10: no run",
        T0 + timedelta(seconds=30),
    )
    late = T0 + timedelta(minutes=59, seconds=50)
    near = decide(task, [status], started_at=T0, timeout=timedelta(hours=1), now=late)
    assert near.next_check == T0 + timedelta(hours=1)  # never past the timeout
    over = decide(
        task, [status], started_at=T0, timeout=timedelta(hours=1), now=T0 + timedelta(hours=1)
    )
    assert over.outcome is Outcome.FAILED
    assert over.message == "timed out after 1h waiting for: sales (last7Days) 2026-03-10: no run"


def test_decide_without_timeout_waits() -> None:
    check = decide(dep_task(), [W], started_at=T0, timeout=None, now=T0 + timedelta(days=300))
    assert check.outcome is Outcome.WAITING


def test_decide_failure_names_the_failed_upstream() -> None:
    check = decide(dep_task(), [S, F], started_at=T0, timeout=None, now=T0)
    assert check == DependencyCheck(Outcome.FAILED, "upstream failed: f")


def test_a_missing_upstream_workflow_is_named_as_missing_not_as_failed() -> None:
    """A workflow that does not exist has no run that failed: its item's failure said
    "upstream failed: workflow p/nosuch does not exist"; it says the workflow is missing,
    naming it and its project, apart from an upstream that did fail."""
    item = DependencyItem(workflow="p/nosuch", date=DateValue.TODAY)
    missing = unknown_upstream(item, "default")
    alone = decide(dep_task(), [S, missing], started_at=T0, timeout=None, now=T0)
    assert alone == DependencyCheck(
        Outcome.FAILED,
        "the workflow this task depends on does not exist: nosuch in project p "
        "(apply it first, or correct the name)",
    )
    source = "name: r\ntasks:\n  wait: {type: dependency, any: [{workflow: x, date: today}]}\n"
    anyone = load_workflow(source).workflow.tasks["wait"]
    assert isinstance(anyone, DependencyTask)
    assert anyone.mode == "any"
    both = decide(anyone, [missing, F], started_at=T0, timeout=None, now=T0)
    assert both.outcome is Outcome.FAILED
    assert both.message == (
        "the workflow this task depends on does not exist: nosuch in project p "
        "(apply it first, or correct the name); upstream failed: f"
    )


# ------------------------------------------------------------------ the model
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"any": [{"workflow": "x", "date": "today"}]}, "exactly one of 'all' or 'any'"),
        ({"all": None}, "exactly one of 'all' or 'any'"),
        ({"all": [{"workflow": "x", "date": "yesterday"}]}, "currentHour"),
        ({"all": [{"workflow": "A/b", "date": "today"}]}, "must be a workflow name"),
        ({"all": [{"workflow": "a/b/c", "date": "today"}]}, "must be a workflow name"),
        ({"all": [{"workflow": "x", "date": "today", "task": "a b"}]}, "invalid task id"),
        ({"all": []}, "at least 1"),
        ({"all": [{"workflow": "x", "date": "today"}] * 21}, "at most 20"),
        ({"check_interval": "1s"}, "check_interval must be from 5s"),
        ({"check_interval": "2d"}, "check_interval must be from 5s"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_dependency_tasks_are_refused(extra: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        dep_task(**extra)
    assert message in str(info.value)


def test_upstream_project() -> None:
    assert DependencyItem(workflow="a", date=DateValue.TODAY).upstream("p") == ("p", "a")
    assert DependencyItem(workflow="q/a", date=DateValue.TODAY).upstream("p") == ("q", "a")


def test_settles_names_the_decisive_status() -> None:
    assert [settles("all", x) for x in (S, F, W)] == [False, True, False]
    assert [settles("any", x) for x in (S, F, W)] == [True, False, False]
