"""Schedules of other schedulers, converted by ``stratoflow import``, fire at the same times:
checked against croniter (an independent cron evaluator) over a whole year, in time zones with
daylight-saving changes, with EventBridge's rule for the changes (a wall time in the spring gap
does not fire; one repeated in the fall fires once, the first time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from stratoflow.importers import airflow_schedule, quartz_to_schedule
from stratoflow.importers._cron import interval_before
from stratoflow.model import parse_schedule

YEAR_START = datetime(2026, 1, 1)
YEAR_END = datetime(2027, 1, 1)
# Quartz numbers the days 1 = Sunday; croniter reads Unix numbers (0 = Sunday): the oracle is
# given names, so it does not share the converter's reading of numbers
_QUARTZ_DAYS = {
    str(i + 1): name for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
}


def _oracle_dow(field: str) -> str:
    out = []
    for part in field.split(","):
        head, sep, tail = part.partition("#")
        lo, dash, hi = head.partition("-")
        head = _QUARTZ_DAYS.get(lo, lo) + (dash + _QUARTZ_DAYS.get(hi, hi) if dash else "")
        out.append(head + sep + tail)
    return ",".join(out)


def _wall_times(expression: str, start: datetime, end: datetime) -> list[datetime]:
    it = croniter(expression, start - timedelta(seconds=1), second_at_beginning=True)
    times = []
    while (t := it.get_next(datetime)) < end:
        times.append(t)
    return times


def _instants(walls: list[datetime], tz: str) -> list[datetime]:
    """EventBridge's reading of wall-clock fire times: a time in a gap is skipped, a repeated
    time fires once (its first instance)."""
    zone = ZoneInfo(tz)
    out = []
    for wall in walls:
        instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) != wall:
            continue  # does not exist on this day
        out.append(instant)
    return out


def _fire_times(cron: str, tz: str) -> list[datetime]:
    zone = ZoneInfo(tz)
    after = YEAR_START.replace(tzinfo=zone) - timedelta(seconds=1)
    until = YEAR_END.replace(tzinfo=zone) - timedelta(seconds=1)
    return parse_schedule(cron).fire_times(after, until, tz)


QUARTZ = [
    "0 0 2 * * ? *",
    "0 30 0 * * ?",  # six fields: no year
    "0 15 10 ? * MON-FRI",
    "0 0 12 L * ? *",
    "0 0 9 15W * ? *",
    "0 0 9 ? * 6#3 *",  # the third Friday (Quartz 6 = Friday)
    "0 0/15 8-18 ? * 2-6 *",  # numbers: 2-6 = Monday to Friday
    "0 30 2 * * ? *",  # in New York's spring gap on 2026-03-08
    "0 30 1 * * ? *",  # repeated in New York on 2026-11-01
    "0 0 0 1 1/3 ? *",
    "0 0 6 ? * 1,7 *",
]


@pytest.mark.parametrize("tz", ["America/New_York", "Europe/Berlin", "Asia/Shanghai"])
@pytest.mark.parametrize("quartz", QUARTZ)
def test_quartz_fires_when_croniter_says_over_a_year(quartz: str, tz: str) -> None:
    # GIVEN a DolphinScheduler (Quartz) cron expression
    fields = quartz.split()
    # WHEN it is converted
    converted = quartz_to_schedule(quartz)
    assert converted.cron is not None, converted.problem
    # THEN the Stratoflow schedule fires exactly when an independent evaluator says, in the zone
    fields[5] = _oracle_dow(fields[5])
    oracle = " ".join(fields[:6] + ([fields[6]] if len(fields) == 7 else ["*"]))
    expected = _instants(_wall_times(oracle, YEAR_START, YEAR_END), tz)
    assert expected, "the oracle found no fire time: a broken case"
    assert _fire_times(converted.cron, tz) == expected


def test_daylight_saving_changes_follow_eventbridge() -> None:
    # GIVEN a daily 02:30 and a daily 01:30 in New York
    gap = _fire_times(quartz_to_schedule("0 30 2 * * ? *").cron or "", "America/New_York")
    overlap = _fire_times(quartz_to_schedule("0 30 1 * * ? *").cron or "", "America/New_York")
    # THEN 2026-03-08 02:30 does not exist and does not fire; 2026-11-01 01:30 fires once (EDT)
    assert len(gap) == 364
    assert datetime(2026, 3, 8, 7, 30, tzinfo=UTC) not in gap
    assert datetime(2026, 3, 9, 6, 30, tzinfo=UTC) in gap  # the next day, already EDT
    assert len(overlap) == 365
    assert datetime(2026, 11, 1, 5, 30, tzinfo=UTC) in overlap
    assert datetime(2026, 11, 1, 6, 30, tzinfo=UTC) not in overlap


@pytest.mark.parametrize(
    ("quartz", "problem"),
    [
        ("30 0 2 * * ? *", "fires on second '30'"),
        ("* 0 2 * * ? *", "fires on second '*'"),
        ("0 0 2 15 * MON *", "one of them must be '?'"),
        ("0 0 2 LW * ? *", "LW"),
        ("0 0 2 * *", "not a Quartz cron expression"),
        ("0 0 25 * * ? *", "no exact equivalent"),
    ],
)
def test_what_has_no_exact_equivalent_is_reported(quartz: str, problem: str) -> None:
    converted = quartz_to_schedule(quartz)
    assert converted.cron is None
    assert problem in (converted.problem or "")


PRESETS = {
    "@hourly": "@hourly",
    "@daily": "@daily",
    "@midnight": "@daily",
    "@weekly": "@weekly",
    "@monthly": "@monthly",
    "@yearly": "@yearly",
    "@quarterly": "0 0 1 */3 *",
    "15 3 * * 1-5": "15 3 * * 1-5",
}


@pytest.mark.parametrize("tz", ["Europe/Berlin", "UTC"])
@pytest.mark.parametrize(("airflow", "oracle"), PRESETS.items())
def test_airflow_presets_fire_when_croniter_says(airflow: str, oracle: str, tz: str) -> None:
    converted = airflow_schedule(airflow)
    assert converted.cron is not None
    walls = []
    it = croniter(oracle, YEAR_START - timedelta(seconds=1))
    while (t := it.get_next(datetime)) < YEAR_END:
        walls.append(t)
    assert _fire_times(converted.cron, tz) == _instants(walls, tz)


def test_airflow_schedules_without_cron() -> None:
    assert airflow_schedule(None).cron is None
    assert airflow_schedule(None).problem is None
    assert airflow_schedule("@once").cron is None
    assert airflow_schedule("@once").remark
    assert airflow_schedule("@continuous").problem
    every = airflow_schedule({"__type__": "datetime.timedelta", "hours": 6})
    assert every.cron == "rate(6 hours)"
    assert airflow_schedule({"__type__": "datetime.timedelta", "seconds": 30}).problem
    timetable = {
        "__type__": "airflow.timetables.trigger.CronTriggerTimetable",
        "__args__": ["0 1 * * 3"],
    }
    assert airflow_schedule(timetable).cron == "0 1 * * 3"
    assert "no equivalent" in (airflow_schedule({"datasets": ["s3://x"]}).problem or "")
    assert "schedule '0 0 * *'" in (airflow_schedule("0 0 * *").problem or "")


def test_airflow2_interval_start_is_one_interval_back() -> None:
    assert interval_before("0 3 * * *") == (-1, 0)
    assert interval_before("15 * * * *") == (0, -60)
    assert interval_before("0 0 * * 1") == (-7, 0)
    assert interval_before("0 0 1 * *") is None  # months differ in length
    assert interval_before("*/15 * * * *") == (0, -15)
    assert interval_before("0/20 * * * *") == (0, -20)
    assert interval_before("*/7 * * * *") is None  # :56 to :00 is 4 minutes
    assert interval_before("30 */6 * * *") == (0, -360)
    assert interval_before("0 */5 * * *") is None  # 20:00 to 00:00 is 4 hours
    # a wall-clock step of hours is no fixed length across a DST change
    assert interval_before("0 */6 * * *", "Europe/Berlin") is None
