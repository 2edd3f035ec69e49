"""Schedule expressions: parsing, Unix -> EventBridge conversion, time zones and DST.

America/New_York in 2024: clocks spring forward on 2024-03-10 at 02:00 EST (07:00Z) to 03:00
EDT, and fall back on 2024-11-03 at 02:00 EDT (06:00Z) to 01:00 EST, so 01:00-01:59 happens twice.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stratoflow.model import Schedule, _schedule
from stratoflow.model._schedule import (
    ScheduleError,
    ScheduleExpression,
    parse_schedule,
    validate_timezone,
)

NY = "America/New_York"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def hhmm(times: list[datetime], tz: str) -> list[str]:
    return [t.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M %Z") for t in times]


# --------------------------------------------------------------------------------------------
# Parsing: accepted forms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unix", "eventbridge"),
    [
        ("0 2 * * *", "cron(0 2 * * ? *)"),
        # EventBridge's increments are documented as start/step ("1/10"): '*/15' starts at 0
        ("*/15 9-17 * * 1-5", "cron(0/15 9-17 ? * MON-FRI *)"),
        ("*/15 9-17 * * MON-FRI", "cron(0/15 9-17 ? * MON-FRI *)"),
        ("0 */6 * * *", "cron(0 0/6 * * ? *)"),
        ("0 0 */2 * *", "cron(0 0 1/2 * ? *)"),
        ("0 0 1 */3 *", "cron(0 0 1 1/3 ? *)"),
        ("0 0 * * mon-fri", "cron(0 0 ? * MON-FRI *)"),
        ("0 0 * * 0", "cron(0 0 ? * SUN *)"),
        ("0 0 * * 7", "cron(0 0 ? * SUN *)"),
        ("0 0 * * 6,0", "cron(0 0 ? * SUN,SAT *)"),
        ("0 0 * * 5-7", "cron(0 0 ? * SUN,FRI,SAT *)"),
        ("0 0 * * 1-5/2", "cron(0 0 ? * MON,WED,FRI *)"),
        ("0 0 * * */2", "cron(0 0 ? * SUN,TUE,THU,SAT *)"),
        ("0 12 * * 0-6", "cron(0 12 * * ? *)"),
        ("0 0 1 * *", "cron(0 0 1 * ? *)"),
        ("0 0 */1 * 1", "cron(0 0 ? * MON *)"),
        ("30 4 1-10/2 JAN-MAR *", "cron(30 4 1-10/2 1-3 ? *)"),
        ("0,30 0-23/6 * * *", "cron(0,30 0-23/6 * * ? *)"),
        ("5/15 * * * *", "cron(5/15 * * * ? *)"),
        ("*/90 * * * *", "cron(0 * * * ? *)"),  # EventBridge needs the step to be a field value
        ("05 02 * * *", "cron(5 2 * * ? *)"),
        ("  0   2 * *   *  ", "cron(0 2 * * ? *)"),
        ("@hourly", "cron(0 * * * ? *)"),
        ("@daily", "cron(0 0 * * ? *)"),
        ("@midnight", "cron(0 0 * * ? *)"),
        ("@weekly", "cron(0 0 ? * SUN *)"),
        ("@monthly", "cron(0 0 1 * ? *)"),
        ("@yearly", "cron(0 0 1 1 ? *)"),
        ("@annually", "cron(0 0 1 1 ? *)"),
    ],
)
def test_unix_cron_converts_to_eventbridge(unix: str, eventbridge: str) -> None:
    parsed = parse_schedule(unix)
    assert parsed == ScheduleExpression(
        kind="cron", source=unix, eventbridge=eventbridge, rate=None
    )


@pytest.mark.parametrize(
    ("expr", "eventbridge"),
    [
        ("cron(0 2 * * ? *)", "cron(0 2 * * ? *)"),
        ("cron(15 10 ? * 6L 2022-2023)", "cron(15 10 ? * 6L 2022-2023)"),
        ("cron(0 12 ? * MON#1 *)", "cron(0 12 ? * MON#1 *)"),
        ("cron(0 8 15W * ? *)", "cron(0 8 15W * ? *)"),
        ("cron(0 0 L * ? *)", "cron(0 0 L * ? *)"),
        ("cron(0/10 * ? * MON-FRI *)", "cron(0/10 * ? * MON-FRI *)"),
        ("  cron(0  2 * *  ? *) ", "cron(0 2 * * ? *)"),
        ("cron(0 2 * * ?)", "cron(0 2 * * ? *)"),  # the year is optional in EventBridge Scheduler
    ],
)
def test_eventbridge_cron_is_accepted(expr: str, eventbridge: str) -> None:
    parsed = parse_schedule(expr)
    assert (parsed.kind, parsed.source, parsed.eventbridge, parsed.rate) == (
        "cron",
        expr,
        eventbridge,
        None,
    )


@pytest.mark.parametrize(
    ("expr", "interval"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
    ],
)
def test_rate_is_accepted(expr: str, interval: timedelta) -> None:
    assert parse_schedule(expr) == ScheduleExpression(
        kind="rate", source=expr, eventbridge=expr, rate=interval
    )


# --------------------------------------------------------------------------------------------
# Parsing: rejections name the problem
# --------------------------------------------------------------------------------------------


def test_bad_field_value_message_is_exact() -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule("61 * * * *")
    assert str(info.value) == (
        "invalid cron expression '61 * * * *': minute value 61 out of range 0-59"
    )


def refusal(expr: str, kind: str) -> str:
    """``parse_schedule``'s message refusing ``expr``, checked to start by naming it a bad
    ``kind`` ("cron", "rate", "schedule") expression."""
    with pytest.raises(ScheduleError) as info:
        parse_schedule(expr)
    message = str(info.value)
    assert message.startswith(f"invalid {kind} expression {expr!r}: ")
    return message


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("0 24 * * *", "hour value 24 out of range 0-23"),
        ("0 0 32 * *", "day-of-month value 32 out of range 1-31"),
        ("0 0 0 * *", "day-of-month value 0 out of range 1-31"),
        ("0 0 * 13 *", "month value 13 out of range 1-12"),
        ("0 0 * * 8", "day-of-week value 8 out of range 0-7"),
        ("0 0 * FOO *", "month value 'FOO' is not a number or a name JAN-DEC"),
        ("0 0 * * FUN", "day-of-week value 'FUN' is not a number or a name SUN-SAT"),
        ("0 10-5 * * *", "hour range '10-5' is reversed"),
        ("*/0 * * * *", "minute step '0' must be a positive integer"),
        ("0 0 1,,2 * *", "empty list item in day-of-month field"),
        ("0 0 L * *", "use cron(...) for EventBridge's ?, L, W and # forms"),
        ("0 0 1 * 1", "EventBridge cannot restrict both day-of-month and day-of-week"),
        ("0 0 1-15 * MON-FRI", "restrict only one of them"),
    ],
)
def test_unix_rejections(expr: str, fragment: str) -> None:
    assert fragment in refusal(expr, "cron")


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("cron(61 2 * * ? *)", "invalid minute value '61'"),
        ("cron(0 2 * 13 ? *)", "invalid month value '13'"),
        ("cron(0 2 ? * 8 *)", "invalid day-of-week value '8'"),
        ("cron(0 2 * * ? 2300)", "invalid year value '2300'"),
        ("cron(0 0 ? * 3#1,6#3 *)", "invalid day-of-week value '3#1,6#3'"),
        (
            "cron(0 2 * * * *)",
            "exactly one of day-of-month ('*') and day-of-week ('*') must be '?'",
        ),
        ("cron(0 2 ? * ? *)", "must be '?'"),
        ("cron(0 2 * *)", "expected 6 fields inside cron(...)"),
        ("cron(0 2 * * ? * *)", "got 7"),
        ("cron(*/0 * * * ? *)", "step must be positive"),
        ("cron(0 2 LW * ? *)", "'LW'"),
    ],
)
def test_eventbridge_cron_rejections(expr: str, fragment: str) -> None:
    assert fragment in refusal(expr, "cron")


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("rate(0 minutes)", "value must be a positive integer, got 0"),
        ("rate(5 minute)", "use the plural unit 'minutes' when the value is not 1"),
        ("rate(2 hour)", "use the plural unit 'hours'"),
        ("rate(1 minutes)", "use the singular unit 'minute' when the value is 1"),
        ("rate(1 days)", "use the singular unit 'day'"),
        ("rate(1.5 hours)", "value '1.5' must be a positive integer"),
        ("rate(-1 hours)", "value '-1' must be a positive integer"),
        ("rate(2 weeks)", "unit 'weeks' is not supported"),
        ("rate(30 seconds)", "unit 'seconds' is not supported"),
        ("rate(5)", "expected rate(value unit)"),
        ("rate()", "expected rate(value unit)"),
    ],
)
def test_rate_rejections(expr: str, fragment: str) -> None:
    assert fragment in refusal(expr, "rate")


@pytest.mark.parametrize(
    "expr",
    ["", "   ", "hello", "every day at noon please", "0 2 * *", "*/5", "at(2024-01-01T00:00:00)"],
)
def test_garbage_names_the_accepted_forms(expr: str) -> None:
    message = refusal(expr, "schedule")
    for form in ("5-field Unix cron", "@daily", "cron(m h dom mon dow year)", "rate(N minutes"):
        assert form in message


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("@reboot", "unknown alias; use one of @hourly"),
        ("cron(0 2 * * ? *", "missing closing ')'"),
        ("0 2 * * ? *", "write it as 'cron(0 2 * * ? *)'"),
    ],
)
def test_other_rejections(expr: str, fragment: str) -> None:
    with pytest.raises(ScheduleError, match="invalid schedule expression") as info:
        parse_schedule(expr)
    assert fragment in str(info.value)


def test_schedule_error_is_a_value_error() -> None:
    assert issubclass(ScheduleError, ValueError)


# --------------------------------------------------------------------------------------------
# Time zones
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["UTC", "Europe/Paris", NY, "Asia/Shanghai"])
def test_validate_timezone_returns_the_name(name: str) -> None:
    assert validate_timezone(name) == name


def test_unknown_time_zone_message() -> None:
    with pytest.raises(ScheduleError) as info:
        validate_timezone("Mars/Base")
    assert str(info.value) == "unknown time zone 'Mars/Base'"


@pytest.mark.parametrize("name", ["", "../../etc/passwd", "/usr/share/zoneinfo/UTC", "Not a zone"])
def test_other_bad_time_zones(name: str) -> None:
    with pytest.raises(ScheduleError, match="unknown time zone"):
        validate_timezone(name)


@pytest.mark.parametrize(
    "name", ["localtime", "posixrules", "posix/Europe/Berlin", "right/UTC", "right/Europe/Paris"]
)
def test_zoneinfo_files_that_are_no_iana_name_are_refused(name: str) -> None:
    """ZoneInfo reads every file of the system's zoneinfo directory: ``localtime`` is the
    machine's own zone, ``posixrules`` New York's rules, ``right/`` counts leap seconds. None
    is an IANA name, EventBridge Scheduler refuses them, and what they mean depends on the
    machine: a schedule would fire at other times locally and on AWS."""
    with pytest.raises(ScheduleError, match=f"unknown time zone '{name}': not an IANA"):
        validate_timezone(name)
    with pytest.raises(ValidationError, match="not an IANA"):
        Schedule(cron="0 2 * * *", timezone=name)


@pytest.mark.parametrize(
    ("name", "fixed"),
    [
        ("+08:00", "'Etc/GMT-8'"),  # Airflow/pendulum and ISO-8601 users write offsets
        ("UTC+8", "'Etc/GMT-8'"),
        ("GMT-5", "'Etc/GMT+5'"),
        ("+0530", None),  # no Etc zone for a half hour: only the IANA name is offered
        ("utc-03:30", None),
    ],
)
def test_an_offset_as_time_zone_is_refused_naming_what_to_write(
    name: str, fixed: str | None
) -> None:
    """An offset is no IANA name (EventBridge Scheduler refuses it too): the error says so
    and what to write, the place's IANA name, or the Etc zone of a whole-hour offset with
    its inverted POSIX sign (Etc/GMT-8 is UTC+8), which a user would not guess."""
    with pytest.raises(ScheduleError) as info:
        validate_timezone(name)
    message = str(info.value)
    assert message.startswith(f"unknown time zone {name!r}: a UTC offset is no time zone name")
    assert "IANA name" in message
    if fixed is not None:
        assert f"{fixed} for a fixed offset" in message
        validate_timezone(fixed.strip("'"))  # what it offers is accepted
    else:
        assert "Etc/GMT" not in message


@pytest.mark.parametrize("name", ["CST", "CEST", "PST", "IST"])
def test_an_abbreviation_as_time_zone_is_refused_naming_what_to_write(name: str) -> None:
    with pytest.raises(ScheduleError) as info:
        validate_timezone(name)
    assert str(info.value).startswith(
        f"unknown time zone {name!r}: an abbreviation is no time zone name"
    )
    assert "IANA name such as 'Asia/Shanghai'" in str(info.value)


@pytest.mark.parametrize("name", ["US/Eastern", "EST", "Etc/GMT+5", "Etc/UTC", "Zulu"])
def test_iana_links_and_fixed_zones_are_accepted(name: str) -> None:
    assert validate_timezone(name) == name


def test_methods_reject_unknown_time_zones() -> None:
    daily = parse_schedule("0 2 * * *")
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Base'"):
        daily.next_after(utc(2024, 1, 1), tz="Mars/Base")
    with pytest.raises(ScheduleError, match="unknown time zone"):
        parse_schedule("rate(1 hour)").fire_times(utc(2024, 1, 1), utc(2024, 1, 2), tz="Nowhere")


# --------------------------------------------------------------------------------------------
# next_after / previous_at_or_before / fire_times
# --------------------------------------------------------------------------------------------


def test_next_after_in_utc() -> None:
    daily = parse_schedule("0 2 * * *")
    assert daily.next_after(utc(2024, 1, 15, 1)) == utc(2024, 1, 15, 2)
    assert daily.next_after(utc(2024, 1, 15, 2)) == utc(2024, 1, 16, 2)  # strictly after
    assert daily.next_after(utc(2024, 1, 15, 1, 59, 59, 999_999)) == utc(2024, 1, 15, 2)
    assert daily.next_after(utc(2024, 12, 31, 3)) == utc(2025, 1, 1, 2)
    result = daily.next_after(utc(2024, 1, 15, 1))
    assert result.tzinfo is UTC


def test_naive_and_foreign_after_values() -> None:
    daily = parse_schedule("0 2 * * *")
    assert daily.next_after(datetime(2024, 1, 15, 1)) == utc(2024, 1, 15, 2)  # naive = UTC
    plus8 = timezone(timedelta(hours=8))
    # 09:30 at +08:00 is 01:30Z
    assert daily.next_after(datetime(2024, 1, 15, 9, 30, tzinfo=plus8)) == utc(2024, 1, 15, 2)


def test_next_after_in_asia_shanghai() -> None:
    nine = parse_schedule("0 9 * * *")
    assert nine.next_after(utc(2024, 6, 1), tz="Asia/Shanghai") == utc(2024, 6, 1, 1)
    assert nine.next_after(utc(2024, 6, 1, 1), tz="Asia/Shanghai") == utc(2024, 6, 2, 1)
    # 23:30Z on the 1st is already 07:30 on the 2nd in Shanghai.
    assert nine.next_after(utc(2024, 6, 1, 23, 30), tz="Asia/Shanghai") == utc(2024, 6, 2, 1)


def test_next_after_in_new_york_follows_the_offset() -> None:
    weekdays = parse_schedule("30 8 * * 1-5")
    # Friday 2024-06-07 after 09:00 EDT -> Monday 08:30 EDT (UTC-4)
    assert weekdays.next_after(utc(2024, 6, 7, 13), tz=NY) == utc(2024, 6, 10, 12, 30)
    # January is EST (UTC-5)
    assert weekdays.next_after(utc(2024, 1, 15), tz=NY) == utc(2024, 1, 15, 13, 30)


def test_daily_0230_on_spring_forward_day_is_skipped() -> None:
    daily = parse_schedule("30 2 * * *")
    times = daily.fire_times(utc(2024, 3, 8), utc(2024, 3, 12), tz=NY)
    assert times == [utc(2024, 3, 8, 7, 30), utc(2024, 3, 9, 7, 30), utc(2024, 3, 11, 6, 30)]
    # skipped, not moved to 03:00 EDT (07:00Z) or 03:30 EDT
    assert daily.next_after(utc(2024, 3, 9, 7, 30), tz=NY) == utc(2024, 3, 11, 6, 30)
    assert daily.previous_at_or_before(utc(2024, 3, 10, 12), tz=NY) == utc(2024, 3, 9, 7, 30)


def test_daily_0230_on_fall_back_day() -> None:
    daily = parse_schedule("30 2 * * *")
    times = daily.fire_times(utc(2024, 11, 1, 12), utc(2024, 11, 4, 12), tz=NY)
    assert times == [utc(2024, 11, 2, 6, 30), utc(2024, 11, 3, 7, 30), utc(2024, 11, 4, 7, 30)]


def test_repeated_wall_time_runs_once_at_its_first_instance() -> None:
    daily = parse_schedule("30 1 * * *")
    times = daily.fire_times(utc(2024, 11, 2), utc(2024, 11, 5), tz=NY)
    # 01:30 EDT = 05:30Z on the 3rd; 01:30 EST (06:30Z) does not run
    assert times == [utc(2024, 11, 2, 5, 30), utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]
    assert daily.next_after(utc(2024, 11, 3, 5, 30), tz=NY) == utc(2024, 11, 4, 6, 30)
    assert daily.next_after(utc(2024, 11, 3, 6, 0), tz=NY) == utc(2024, 11, 4, 6, 30)


def test_hourly_on_spring_forward_day() -> None:
    hourly = parse_schedule("0 * * * *")
    times = hourly.fire_times(utc(2024, 3, 10, 3, 30), utc(2024, 3, 10, 9), tz=NY)
    assert times == [utc(2024, 3, 10, hour) for hour in (4, 5, 6, 7, 8, 9)]
    assert hhmm(times, NY) == [
        "03-09 23:00 EST",
        "03-10 00:00 EST",
        "03-10 01:00 EST",
        "03-10 03:00 EDT",  # 02:00 does not exist
        "03-10 04:00 EDT",
        "03-10 05:00 EDT",
    ]


def test_hourly_on_fall_back_day() -> None:
    hourly = parse_schedule("0 * * * *")
    times = hourly.fire_times(utc(2024, 11, 3, 3, 30), utc(2024, 11, 3, 9), tz=NY)
    assert times == [utc(2024, 11, 3, hour) for hour in (4, 5, 7, 8, 9)]  # not 06:00Z
    assert hhmm(times, NY) == [
        "11-03 00:00 EDT",
        "11-03 01:00 EDT",
        "11-03 02:00 EST",  # 01:00 EST repeats 01:00 and does not run
        "11-03 03:00 EST",
        "11-03 04:00 EST",
    ]
    assert hourly.next_after(utc(2024, 11, 3, 5), tz=NY) == utc(2024, 11, 3, 7)
    assert hourly.next_after(utc(2024, 11, 3, 6, 30), tz=NY) == utc(2024, 11, 3, 7)


def test_quarter_hourly_through_the_repeated_hour() -> None:
    quarter = parse_schedule("*/15 * * * *")
    times = quarter.fire_times(utc(2024, 11, 3, 4, 50), utc(2024, 11, 3, 7, 15), tz=NY)
    assert times == [
        utc(2024, 11, 3, 5, 0),
        utc(2024, 11, 3, 5, 15),
        utc(2024, 11, 3, 5, 30),
        utc(2024, 11, 3, 5, 45),
        utc(2024, 11, 3, 7, 0),
        utc(2024, 11, 3, 7, 15),
    ]


def test_previous_inside_the_repeated_hour() -> None:
    # 06:10Z is 01:10 EST, the second pass; 01:45 EDT (05:45Z) was earlier that morning.
    at = utc(2024, 11, 3, 6, 10)
    assert parse_schedule("45 1 * * *").previous_at_or_before(at, tz=NY) == utc(2024, 11, 3, 5, 45)
    assert parse_schedule("*/15 * * * *").previous_at_or_before(at, tz=NY) == utc(
        2024, 11, 3, 5, 45
    )
    assert parse_schedule("5 2 * * *").previous_at_or_before(at, tz=NY) == utc(2024, 11, 2, 6, 5)
    hourly = parse_schedule("0 * * * *")
    assert hourly.previous_at_or_before(utc(2024, 11, 3, 7, 10), tz=NY) == utc(2024, 11, 3, 7)


def test_midnight_gap_skips_only_that_midnight() -> None:
    # America/Santiago springs forward from 24:00 to 01:00 (2024-09-08 00:00 does not exist).
    midnight = parse_schedule("0 0 * * *")
    times = midnight.fire_times(utc(2024, 9, 6), utc(2024, 9, 10), tz="America/Santiago")
    assert hhmm(times, "America/Santiago") == [
        "09-06 00:00 -04",
        "09-07 00:00 -04",
        "09-09 00:00 -03",
    ]


def test_last_day_of_month() -> None:
    last = parse_schedule("cron(0 12 L * ? *)")
    times = last.fire_times(utc(2024, 1, 1), utc(2024, 5, 1))
    assert times == [
        utc(2024, 1, 31, 12),
        utc(2024, 2, 29, 12),
        utc(2024, 3, 31, 12),
        utc(2024, 4, 30, 12),
    ]


def test_last_day_of_month_is_the_local_date() -> None:
    # 23:00 on Jan 31 in New York is 04:00Z on Feb 1.
    last = parse_schedule("cron(0 23 L * ? *)")
    assert last.next_after(utc(2024, 1, 15), tz=NY) == utc(2024, 2, 1, 4)


def test_nearest_weekday() -> None:
    fifteenth = parse_schedule("cron(0 12 15W * ? *)")
    # 2024-06-15 is a Saturday -> Friday the 14th; 2024-09-15 is a Sunday -> Monday the 16th
    assert fifteenth.next_after(utc(2024, 6, 1)) == utc(2024, 6, 14, 12)
    assert fifteenth.next_after(utc(2024, 9, 1)) == utc(2024, 9, 16, 12)
    assert fifteenth.next_after(utc(2024, 5, 1)) == utc(2024, 5, 15, 12)  # a Wednesday


def test_last_weekday_of_week_and_nth_weekday() -> None:
    last_friday = parse_schedule("cron(0 12 ? * 6L *)")
    assert last_friday.fire_times(utc(2024, 1, 1), utc(2024, 4, 1)) == [
        utc(2024, 1, 26, 12),
        utc(2024, 2, 23, 12),
        utc(2024, 3, 29, 12),
    ]
    first_monday = parse_schedule("cron(0 12 ? * MON#1 *)")
    assert first_monday.fire_times(utc(2024, 1, 1), utc(2024, 4, 1)) == [
        utc(2024, 1, 1, 12),
        utc(2024, 2, 5, 12),
        utc(2024, 3, 4, 12),
    ]
    second_tuesday = parse_schedule("cron(0 12 ? * 3#2 *)")  # 3 = Tuesday in EventBridge
    assert second_tuesday.next_after(utc(2024, 1, 1)) == utc(2024, 1, 9, 12)


def test_day_of_week_numbering_is_eventbridge_in_cron_and_unix_in_five_fields() -> None:
    # EventBridge 1 = Sunday; Unix 1 = Monday. 2024-01-07 is a Sunday.
    assert parse_schedule("cron(0 0 ? * 1 *)").next_after(utc(2024, 1, 3)) == utc(2024, 1, 7)
    assert parse_schedule("0 0 * * 1").next_after(utc(2024, 1, 3)) == utc(2024, 1, 8)
    assert parse_schedule("0 0 * * 0").next_after(utc(2024, 1, 3)) == utc(2024, 1, 7)


def test_day_of_week_l_alone_is_saturday() -> None:
    saturdays = parse_schedule("cron(0 0 ? * L *)")
    assert saturdays.fire_times(utc(2024, 1, 1), utc(2024, 1, 21)) == [
        utc(2024, 1, 6),
        utc(2024, 1, 13),
        utc(2024, 1, 20),
    ]


def test_sparse_expressions_are_found() -> None:
    # a fifth Monday in February happens only when Feb 1 is a Monday in a leap year
    rare = parse_schedule("cron(0 0 ? 2 MON#5 *)")
    assert rare.next_after(utc(2024, 1, 1)) == utc(2044, 2, 29)
    assert rare.previous_at_or_before(utc(2040, 1, 1)) == utc(2016, 2, 29)


def test_year_field_and_exhausted_schedules() -> None:
    once = parse_schedule("cron(0 0 1 1 ? 2030)")
    assert once.next_after(utc(2024, 6, 1)) == utc(2030, 1, 1)
    assert once.previous_at_or_before(utc(2029, 1, 1)) is None
    assert once.previous_at_or_before(utc(2031, 1, 1)) == utc(2030, 1, 1)
    assert once.fire_times(utc(2030, 1, 2), utc(2040, 1, 1)) == []
    with pytest.raises(ScheduleError, match="has no fire time after 2030-01-02T00:00:00"):
        once.next_after(utc(2030, 1, 2))
    never = parse_schedule("cron(0 0 30 2 ? *)")
    with pytest.raises(ScheduleError, match="no fire time"):
        never.next_after(utc(2024, 1, 1))


@pytest.mark.parametrize("expr", ["0 2 * * *", "cron(0 0 1 1 ? 2030)", "rate(5 minutes)"])
@pytest.mark.parametrize("tz", ["UTC", NY, "Asia/Shanghai"])
def test_extreme_datetimes_do_not_overflow(expr: str, tz: str) -> None:
    schedule = parse_schedule(expr)
    with pytest.raises(ScheduleError, match="no fire time"):
        schedule.next_after(datetime.max.replace(tzinfo=UTC), tz=tz)
    assert schedule.next_after(datetime.min.replace(tzinfo=UTC), tz=tz) > datetime.min.replace(
        tzinfo=UTC
    )
    assert schedule.previous_at_or_before(datetime.max.replace(tzinfo=UTC), tz=tz) is not None
    if schedule.kind == "cron":
        assert schedule.previous_at_or_before(datetime.min.replace(tzinfo=UTC), tz=tz) is None


def test_fire_times_bounds_and_order() -> None:
    quarter = parse_schedule("*/15 * * * *")
    times = quarter.fire_times(utc(2024, 1, 1), utc(2024, 1, 1, 1))
    # `after` excluded, `until` included
    assert times == [
        utc(2024, 1, 1, 0, 15),
        utc(2024, 1, 1, 0, 30),
        utc(2024, 1, 1, 0, 45),
        utc(2024, 1, 1, 1),
    ]
    assert quarter.fire_times(utc(2024, 1, 1, 1), utc(2024, 1, 1)) == []
    assert quarter.fire_times(utc(2024, 1, 1), utc(2024, 1, 1)) == []
    assert quarter.fire_times(utc(2024, 1, 1, 0, 1), utc(2024, 1, 1, 0, 14)) == []


def test_previous_at_or_before_includes_at() -> None:
    quarter = parse_schedule("*/15 * * * *")
    assert quarter.previous_at_or_before(utc(2024, 1, 1, 0, 15)) == utc(2024, 1, 1, 0, 15)
    assert quarter.previous_at_or_before(utc(2024, 1, 1, 0, 14, 59)) == utc(2024, 1, 1)
    assert quarter.previous_at_or_before(datetime(2024, 1, 1, 0, 29)) == utc(2024, 1, 1, 0, 15)


def test_cron_start_is_inclusive_lower_bound() -> None:
    quarter = parse_schedule("*/15 * * * *")
    start = utc(2024, 1, 1, 0, 30)
    assert quarter.fire_times(utc(2024, 1, 1), utc(2024, 1, 1, 1), start=start) == [
        utc(2024, 1, 1, 0, 30),
        utc(2024, 1, 1, 0, 45),
        utc(2024, 1, 1, 1),
    ]
    assert quarter.next_after(utc(2024, 1, 1), start=start) == start
    assert quarter.previous_at_or_before(utc(2024, 1, 1, 0, 29), start=start) is None
    assert quarter.previous_at_or_before(utc(2024, 1, 1, 0, 40), start=start) == start
    # a naive start is wall time in the schedule's zone: 00:30 in Shanghai is 16:30Z the day before
    naive = datetime(2024, 1, 2, 0, 30)
    assert quarter.next_after(utc(2024, 1, 1), tz="Asia/Shanghai", start=naive) == utc(
        2024, 1, 1, 16, 30
    )


def test_fire_times_refuses_huge_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    every_minute = parse_schedule("rate(1 minute)")
    start = utc(2024, 1, 1)
    exact = every_minute.fire_times(start, start + timedelta(minutes=100_000))
    assert len(exact) == 100_000
    assert exact[0] == start + timedelta(minutes=1)
    assert exact[-1] == start + timedelta(minutes=100_000)
    with pytest.raises(ScheduleError, match="fires more than 100000 times"):
        every_minute.fire_times(start, start + timedelta(minutes=100_001))

    monkeypatch.setattr(_schedule, "MAX_FIRE_TIMES", 10)
    cron = parse_schedule("* * * * *")
    assert len(cron.fire_times(start, start + timedelta(minutes=10))) == 10
    with pytest.raises(ScheduleError, match="fires more than 10 times"):
        cron.fire_times(start, start + timedelta(minutes=11))


# --------------------------------------------------------------------------------------------
# rate()
# --------------------------------------------------------------------------------------------


def test_rate_without_start_is_aligned_to_the_epoch() -> None:
    hourly = parse_schedule("rate(1 hour)")
    assert hourly.next_after(utc(2024, 1, 1, 0, 30)) == utc(2024, 1, 1, 1)
    assert hourly.next_after(utc(2024, 1, 1, 1)) == utc(2024, 1, 1, 2)
    assert hourly.previous_at_or_before(utc(2024, 1, 1, 1)) == utc(2024, 1, 1, 1)
    weekly = parse_schedule("rate(7 days)")
    # 1970-01-01 was a Thursday, and so is 2024-01-04
    assert weekly.next_after(utc(2024, 1, 1)) == utc(2024, 1, 4)
    seven_minutes = parse_schedule("rate(7 minutes)")
    assert seven_minutes.next_after(utc(2024, 1, 1)) == _schedule._EPOCH + timedelta(
        minutes=7 * ((utc(2024, 1, 1) - _schedule._EPOCH) // timedelta(minutes=7) + 1)
    )


def test_rate_with_start() -> None:
    five = parse_schedule("rate(5 minutes)")
    start = utc(2024, 1, 1, 0, 2)
    assert five.next_after(utc(2024, 1, 1), start=start) == start  # start is the first occurrence
    assert five.next_after(start, start=start) == utc(2024, 1, 1, 0, 7)
    assert five.next_after(utc(2024, 1, 1, 0, 3), start=start) == utc(2024, 1, 1, 0, 7)
    assert five.previous_at_or_before(utc(2024, 1, 1, 0, 6), start=start) == start
    assert five.previous_at_or_before(utc(2024, 1, 1, 0, 1), start=start) is None
    assert five.fire_times(utc(2024, 1, 1), utc(2024, 1, 1, 0, 17), start=start) == [
        utc(2024, 1, 1, 0, 2),
        utc(2024, 1, 1, 0, 7),
        utc(2024, 1, 1, 0, 12),
        utc(2024, 1, 1, 0, 17),
    ]


def test_rate_start_zones() -> None:
    hourly = parse_schedule("rate(1 hour)")
    # naive start = wall time in tz: 09:30 in Shanghai is 01:30Z
    naive = datetime(2024, 6, 1, 9, 30)
    assert hourly.next_after(utc(2024, 6, 1, 5), tz="Asia/Shanghai", start=naive) == utc(
        2024, 6, 1, 5, 30
    )
    aware = datetime(2024, 6, 1, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert hourly.next_after(utc(2024, 6, 1, 5), start=aware) == utc(2024, 6, 1, 5, 30)


def test_rate_days_are_24_hours_across_dst() -> None:
    daily = parse_schedule("rate(1 day)")
    start = datetime(2024, 3, 9, 12, 0)  # noon EST = 17:00Z
    times = daily.fire_times(utc(2024, 3, 8), utc(2024, 3, 12), tz=NY, start=start)
    assert times == [utc(2024, 3, day, 17) for day in (9, 10, 11)]
    assert hhmm(times, NY) == ["03-09 12:00 EST", "03-10 13:00 EDT", "03-11 13:00 EDT"]


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def _field(
    low: int, high: int, names: list[str] | None = None, star_high: int | None = None
) -> st.SearchStrategy[tuple[str, frozenset[int]]]:
    """A Unix cron field (text) with the set of values it names.

    Values are drawn from ``low``-``high``; ``*/k`` covers the field's real range up to
    ``star_high`` (31 for day-of-month even when other values stop at 28).
    """
    value = st.integers(low, high)
    single = value.map(lambda v: (str(v), frozenset([v])))
    if names is not None:
        offset = 1 if low == 1 else 0
        named = st.sampled_from(names).map(lambda n: (n, frozenset([names.index(n) + offset])))
        single = st.one_of(single, named)
    pair = st.tuples(value, value).map(sorted)
    span = pair.map(lambda ab: (f"{ab[0]}-{ab[1]}", frozenset(range(ab[0], ab[1] + 1))))
    top = high if star_high is None else star_high
    every = st.integers(1, high).map(lambda k: (f"*/{k}", frozenset(range(low, top + 1, k))))
    stepped = st.tuples(pair, st.integers(1, high)).map(
        lambda p: (f"{p[0][0]}-{p[0][1]}/{p[1]}", frozenset(range(p[0][0], p[0][1] + 1, p[1])))
    )
    return st.lists(st.one_of(single, span, every, stepped), min_size=1, max_size=3).map(
        lambda items: (",".join(t for t, _ in items), frozenset().union(*(v for _, v in items)))
    )


@st.composite
def _unix_cron(draw: st.DrawFn) -> tuple[str, tuple[frozenset[int], ...]]:
    minute = draw(st.one_of(st.just(("*", frozenset(range(60)))), _field(0, 59)))
    hour = draw(st.one_of(st.just(("*", frozenset(range(24)))), _field(0, 23)))
    month = draw(st.one_of(st.just(("*", frozenset(range(1, 13)))), _field(1, 12, _MONTHS)))
    everyday = ("*", frozenset(range(1, 32)))
    every_weekday = ("*", frozenset(range(7)))
    which = draw(st.sampled_from(["neither", "dom", "dow"]))
    # days of month up to 28 so that every drawn expression fires every year
    dom = draw(_field(1, 28, star_high=31)) if which == "dom" else everyday
    dow = draw(_field(0, 7, _DAYS)) if which == "dow" else every_weekday
    dow = (dow[0], frozenset(d % 7 for d in dow[1]))
    text = " ".join(f[0] for f in (minute, hour, dom, month, dow))
    return text, (minute[1], hour[1], dom[1], month[1], dow[1])


_ZONES = [
    "UTC",
    NY,
    "Asia/Shanghai",
    "Europe/London",
    "Australia/Lord_Howe",  # half-hour DST shift
    "America/Santiago",  # DST gap at midnight
    "Asia/Kolkata",
]
_AFTER = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1))
_SETTINGS = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@_SETTINGS
@given(cron=_unix_cron(), after=_AFTER, tz=st.sampled_from(_ZONES))
def test_property_fire_times_strictly_increase(
    cron: tuple[str, tuple[frozenset[int], ...]], after: datetime, tz: str
) -> None:
    schedule = parse_schedule(cron[0])
    times: list[datetime] = []
    moment = after.replace(tzinfo=UTC)
    for _ in range(5):
        following = schedule.next_after(moment, tz=tz)
        assert following > moment
        assert following.tzinfo is UTC
        times.append(following)
        moment = following
    assert times == sorted(set(times))
    assert schedule.fire_times(after, times[-1], tz=tz) == times
    for t in times:
        assert schedule.previous_at_or_before(t, tz=tz) == t
    before_first = schedule.previous_at_or_before(times[0] - timedelta(microseconds=1), tz=tz)
    assert before_first is not None
    assert before_first <= after.replace(tzinfo=UTC)


@settings(
    max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(cron=_unix_cron(), day=st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 1, 1)))
def test_property_conversion_matches_unix_semantics(
    cron: tuple[str, tuple[frozenset[int], ...]], day: date
) -> None:
    """In UTC, the converted expression fires on exactly the minutes the Unix fields name."""
    minutes, hours, doms, months, dows = cron[1]
    start = utc(day.year, day.month, day.day)
    until = start + timedelta(days=1)
    expected = []
    moment = start + timedelta(minutes=1)
    while moment <= until:
        if (
            moment.minute in minutes
            and moment.hour in hours
            and moment.day in doms
            and moment.month in months
            and (moment.weekday() + 1) % 7 in dows
        ):
            expected.append(moment)
        moment += timedelta(minutes=1)
    assert parse_schedule(cron[0]).fire_times(start, until) == expected


# --------------------------------------------------------------------------------------------
# The window: start and end are instants, whatever offsets they are written with
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "timezone"),
    [
        # 10:00+09:00 is 01:00Z: an end at 05:00Z is four hours after it
        ("2026-01-01T10:00:00+09:00", "2026-01-01T05:00:00Z", "UTC"),
        # a naive start is wall time in the schedule's zone: 10:00 Tokyo is 01:00Z
        ("2026-01-01T10:00:00", "2026-01-01T05:00:00Z", "Asia/Tokyo"),
    ],
)
def test_an_end_after_the_start_as_instants_is_accepted(
    start: str, end: str, timezone: str
) -> None:
    schedule = Schedule.model_validate(
        {"cron": "0 * * * *", "timezone": timezone, "start": start, "end": end}
    )
    assert schedule.end is not None


@pytest.mark.parametrize(
    ("start", "end", "timezone"),
    [
        # 05:00Z, then 10:00+09:00 = 01:00Z: the end is four hours *before* the start
        ("2026-01-01T05:00:00Z", "2026-01-01T10:00:00+09:00", "UTC"),
        # a naive end is wall time in the zone: 10:00 Tokyo = 01:00Z, before 05:00Z
        ("2026-01-01T05:00:00Z", "2026-01-01T10:00:00", "Asia/Tokyo"),
        # the same instant written two ways is no window
        ("2026-01-01T05:00:00Z", "2026-01-01T14:00:00+09:00", "UTC"),
    ],
)
def test_an_end_not_after_the_start_as_instants_is_refused(
    start: str, end: str, timezone: str
) -> None:
    with pytest.raises(ValidationError, match="end must be after start"):
        Schedule.model_validate(
            {"cron": "0 * * * *", "timezone": timezone, "start": start, "end": end}
        )


@pytest.mark.parametrize(
    ("before", "after", "same"),
    [
        ({"cron": "0 2 * * *"}, {"cron": "cron(0 2 * * ? *)"}, True),  # one expression, two forms
        ({"cron": "0 2 * * *"}, {"cron": "0 2 * * *", "catchup": True}, True),
        ({"cron": "0 2 * * *"}, {"cron": "0 2 * * *", "end": "2027-01-01T00:00:00"}, True),
        ({"cron": "0 2 * * *"}, {"cron": "0 2 * * *", "start": "2026-01-01T00:00:00"}, True),
        ({"cron": "0 2 * * *"}, {"cron": "0 * * * *"}, False),
        ({"cron": "0 2 * * *"}, {"cron": "0 2 * * *", "timezone": "Asia/Tokyo"}, False),
        ({"cron": "rate(1 hour)"}, {"cron": "rate(60 minutes)"}, True),
        ({"cron": "rate(1 hour)"}, {"cron": "rate(1 hour)", "timezone": "Asia/Tokyo"}, True),
        ({"cron": "rate(1 hour)"}, {"cron": "0 * * * *"}, False),
        (
            {"cron": "rate(1 hour)", "start": "2026-01-01T00:00:00"},
            {"cron": "rate(1 hour)", "start": "2026-01-01T00:30:00"},
            False,  # the grid moved
        ),
    ],
)
def test_same_times_compares_what_a_schedule_fires_at(
    before: dict[str, str], after: dict[str, str], same: bool
) -> None:
    assert _schedule.same_times(Schedule(**before), Schedule(**after)) is same


@pytest.mark.parametrize(
    ("quartz", "written"),
    [
        ("0 0 2 * * ?", "cron(0 2 * * ? *)"),  # Quartz / Spring: seconds first, no year
        ("0 0 2 * * ? *", "cron(0 2 * * ? *)"),  # DolphinScheduler's: seconds and year
        ("0 30 2 ? * MON-FRI", "cron(30 2 ? * MON-FRI *)"),
        ("0 15 10 ? * 6L 2026-2027", "cron(15 10 ? * 6L 2026-2027)"),
    ],
)
def test_a_quartz_expression_with_seconds_is_refused_with_its_minute_form(
    quartz: str, written: str
) -> None:
    """A DolphinScheduler or Quartz user writes the seconds field first: the error says so
    and gives the expression to write, rather than offering cron(<the same six fields>),
    which reads the seconds as minutes and is itself refused."""
    with pytest.raises(ScheduleError) as info:
        parse_schedule(quartz)
    message = str(info.value)
    assert "seconds" in message
    assert repr(written) in message
    parse_schedule(written)  # and what it says to write is accepted


@pytest.mark.parametrize(
    ("quartz", "seconds", "written"),
    [
        ("30 0 2 * * ?", "30", "cron(0 2 * * ? *)"),  # Quartz: 02:00:30 every day
        ("30 0 2 * * ? *", "30", "cron(0 2 * * ? *)"),  # DolphinScheduler's, with a year
        ("0/30 * * * * ? *", "0/30", "cron(* * * * ? *)"),  # every 30 seconds
        ("15 0 * * * *", "15", "0 * * * *"),  # Spring: hourly at :00:15
    ],
)
def test_a_quartz_expression_off_second_zero_is_refused_naming_its_seconds(
    quartz: str, seconds: str, written: str
) -> None:
    """Seconds other than 0 cannot be kept (schedules fire on whole minutes): the error says
    that the first field is seconds and which, and what the expression is at second 0; it
    does not offer cron(<the same six fields>), which reads the seconds as minutes and is
    itself refused, nor only the list of accepted forms."""
    with pytest.raises(ScheduleError) as info:
        parse_schedule(quartz)
    message = str(info.value)
    assert f"first field is seconds ({seconds!r})" in message
    assert repr(written) in message
    assert f"cron({quartz})" not in message
    parse_schedule(written)  # and what it says to write is accepted


def test_a_six_field_eventbridge_expression_is_still_told_to_use_cron() -> None:
    with pytest.raises(ScheduleError, match=r"write it as 'cron\(0 2 \* \* \? \*\)'"):
        parse_schedule("0 2 * * ? *")


@pytest.mark.parametrize(
    ("written", "quartz", "eventbridge"),
    [
        ("30 2 * * * *", "2 * * * *", "cron(30 2 * * ? *)"),  # meant: 02:30 every day
        ("0 2 * * * *", "2 * * * *", "cron(0 2 * * ? *)"),  # meant: 02:00 every day
        ("0 0 * * * *", "0 * * * *", "cron(0 0 * * ? *)"),  # hourly (Spring) or midnight?
        ("15 0 * * * 2027", None, "cron(15 0 * * ? 2027)"),  # a year: EventBridge's only
    ],
)
def test_six_fields_with_both_days_star_name_their_eventbridge_reading_too(
    written: str, quartz: str | None, eventbridge: str
) -> None:
    """An EventBridge user types its six fields without the wrapper and, as Unix cron has
    it, '*' in both day fields (EventBridge wants one '?'). Read as Quartz's or Spring's,
    seconds first, ``30 2 * * * *`` is minute 2 of every hour; offering only that would
    make a daily schedule fire 24 times a day. The error gives both readings."""
    with pytest.raises(ScheduleError) as info:
        parse_schedule(written)
    message = str(info.value)
    assert repr(eventbridge) in message
    if quartz is not None:
        assert repr(quartz) in message
    assert parse_schedule(eventbridge).eventbridge == eventbridge  # and it is accepted


def test_a_spring_expression_with_seconds_is_refused_with_its_unix_form() -> None:
    with pytest.raises(ScheduleError, match=r"first field is seconds.*write '0 \* \* \* \*'"):
        parse_schedule("0 0 * * * *")  # Spring: every hour, on the hour


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("cron(*/15 * * * ? *)", "cron(0/15 * * * ? *)"),
        ("cron(0 */6 * * ? *)", "cron(0 0/6 * * ? *)"),
        ("cron(0 0 */2 * ? *)", "cron(0 0 1/2 * ? *)"),
        ("cron(0 0 1 */3 ? *)", "cron(0 0 1 1/3 ? *)"),
        ("cron(*/5,7 * * * ? *)", "cron(0/5,7 * * * ? *)"),
    ],
)
def test_an_eventbridge_step_from_star_is_sent_in_its_documented_form(
    written: str, sent: str
) -> None:
    parsed = parse_schedule(written)
    assert parsed.eventbridge == sent
    assert parsed.source == written
    t0 = utc(2026, 1, 1)
    assert parsed.fire_times(t0, t0 + timedelta(days=100)) == parse_schedule(sent).fire_times(
        t0, t0 + timedelta(days=100)
    )
