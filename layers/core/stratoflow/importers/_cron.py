"""Schedules of other schedulers as Stratoflow schedule expressions.

* Quartz (DolphinScheduler): ``sec min hour day-of-month month day-of-week [year]``. Quartz
  numbers the days of the week 1 = Sunday ... 7 = Saturday, as EventBridge does, and both know
  ``?``, ``L``, ``W`` and ``#``; so a Quartz expression whose seconds field is ``0`` becomes
  ``cron(min hour dom month dow year)`` field for field, and Stratoflow's own parser (the one
  that validates workflow files) decides whether it accepts the result. What it does not
  accept (``LW``, seconds other than 0, both day fields set) is reported, never guessed.
* Airflow: 5-field cron text (kept: the format reads it), presets (``@daily`` ...), ``None``
  and ``@once`` (no schedule), ``datetime.timedelta`` objects (``rate(...)``) and
  ``CronTriggerTimetable`` objects (cron and time zone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from stratoflow.model import ScheduleError, parse_schedule

AIRFLOW_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_NO_SCHEDULE = {"@once", "none", "null", ""}
_MAX_EXPRESSION = 200


@dataclass(frozen=True)
class Converted:
    """``cron`` is the Stratoflow schedule text, or None when there is none (or none could be
    made: then ``problem`` says why). ``remark`` notes a change of form worth reviewing."""

    cron: str | None
    problem: str | None = None
    remark: str | None = None


def quartz_to_schedule(expression: str) -> Converted:
    """A Quartz cron expression (6 or 7 fields) as an EventBridge ``cron(...)`` expression."""
    text = " ".join(str(expression).split())
    if len(text) > _MAX_EXPRESSION:
        return Converted(None, f"the cron expression is over {_MAX_EXPRESSION} characters")
    fields = text.split(" ")
    if len(fields) not in (6, 7):
        return Converted(
            None, f"{text!r} is not a Quartz cron expression (6 or 7 fields, seconds first)"
        )
    seconds, minute, hour, dom, month, dow = fields[:6]
    year = fields[6] if len(fields) == 7 else "*"
    if seconds not in ("0", "00"):
        return Converted(
            None,
            f"{text!r} fires on second {seconds!r}; Stratoflow schedules fire on whole minutes "
            "(set the seconds field to 0)",
        )
    dom, dow = dom.upper(), dow.upper()
    if dom == "*" and dow == "*":
        dow = "?"
    elif dom == "*" and dow != "?":
        dom = "?"
    elif dow == "*" and dom != "?":
        dow = "?"
    if dom != "?" and dow != "?":
        return Converted(
            None,
            f"{text!r} sets both day-of-month and day-of-week; one of them must be '?'",
        )
    cron = f"cron({minute} {hour} {dom} {month.upper()} {dow} {year})"
    try:
        parse_schedule(cron)
    except ScheduleError as exc:
        return Converted(None, f"{text!r} has no exact equivalent: {exc}")
    return Converted(cron)


def _timedelta_rate(delta: timedelta) -> Converted:
    seconds = int(delta.total_seconds())
    if seconds <= 0 or seconds != delta.total_seconds():
        return Converted(
            None, f"a schedule every {delta} is not a positive whole number of seconds"
        )
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return Converted(f"rate({n} {unit}{'s' if n != 1 else ''})")
    return Converted(None, f"a schedule every {delta} is finer than a minute")


_TIMEDELTA_KEYS = ("weeks", "days", "hours", "minutes", "seconds")


def airflow_schedule(value: Any) -> Converted:
    """An Airflow ``schedule`` / ``schedule_interval`` value as dag-factory writes it."""
    if value is None or value is False:
        return Converted(None)
    if isinstance(value, str):
        text = " ".join(value.split())
        if text.lower() in _NO_SCHEDULE:
            remark = "@once: runs only when triggered" if text.lower() == "@once" else None
            return Converted(None, remark=remark)
        if text.lower() == "@continuous":
            return Converted(None, "@continuous (a new run as soon as one ends) has no equivalent")
        cron = AIRFLOW_PRESETS.get(text.lower(), text)
        try:
            parse_schedule(cron)
        except ScheduleError as exc:
            return Converted(None, f"schedule {text!r}: {exc}")
        return Converted(cron)
    if isinstance(value, dict):
        kind = str(value.get("__type__", ""))
        if kind == "datetime.timedelta":
            amounts = {k: value.get(k, 0) for k in _TIMEDELTA_KEYS}
            if not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in amounts.values()
            ):
                return Converted(None, f"a timedelta schedule with non-numeric fields: {value}")
            try:
                delta = timedelta(**{k: float(v) for k, v in amounts.items()})
            except OverflowError:
                return Converted(None, f"the timedelta schedule {value} is out of range")
            return _timedelta_rate(delta)
        if kind.endswith("CronTriggerTimetable") or kind.endswith("CronDataIntervalTimetable"):
            args = value.get("__args__") or [value.get("cron")]
            converted = airflow_schedule(args[0] if args else None)
            if converted.cron is None:
                return converted
            return Converted(converted.cron, remark=f"{kind.rsplit('.', 1)[-1]} read as its cron")
        if "datasets" in value or "assets" in value or "file" in value:
            return Converted(None, "a dataset/asset-triggered schedule has no equivalent")
        return Converted(None, f"a schedule of type {kind or 'mapping'} has no equivalent")
    if isinstance(value, list):
        return Converted(None, "a dataset/asset-triggered schedule has no equivalent")
    return Converted(None, f"schedule {value!r} is not understood")


_FIXED = re.compile(r"[0-9]+")


_RATE = re.compile(r"rate\(\s*([0-9]+)\s+(minute|hour|day)s?\s*\)")
_RATE_MINUTES = {"minute": 1, "hour": 60, "day": 1440}


_STEP = re.compile(r"(?:\*|0)/([0-9]+)")


def _even_step(field: str, cycle: int) -> int | None:
    """``*/n`` (or ``0/n``) when ``n`` divides ``cycle`` (60 minutes, 24 hours), so that
    every step is of one length, the last one of the cycle too; None otherwise."""
    step = _STEP.fullmatch(field)
    if step is None:
        return None
    n = int(step.group(1))
    return n if 0 < n < cycle and cycle % n == 0 else None


def interval_before(cron: str, tz: str = "UTC") -> tuple[int, int] | None:
    """For an Airflow 2 schedule (a run's logical date is the *start* of the interval that
    ends at its fire time): the (days, minutes) from fire time back to that start, when it
    is a constant: daily, hourly and weekly crons, even steps of minutes (``*/15``) and, in
    UTC, of hours (``0 */6``: elsewhere a DST change makes one step shorter or longer), and
    a timedelta's ``rate()`` (Airflow 2's DeltaDataIntervalTimetable: elapsed time). None
    otherwise."""
    rate = _RATE.fullmatch(cron)
    if rate is not None:
        return (0, -int(rate.group(1)) * _RATE_MINUTES[rate.group(2)])
    fields = cron.split()
    if len(fields) != 5:
        return None
    minute, hour, dom, month, dow = fields
    if month != "*" or dom != "*":
        return None
    minutes = _even_step(minute, 60)
    if minutes is not None:
        return (0, -minutes) if hour == "*" and dow == "*" else None
    hours = _even_step(hour, 24)
    if _FIXED.fullmatch(minute) and hours is not None and dow == "*":
        return (0, -60 * hours) if tz == "UTC" else None
    if not _FIXED.fullmatch(minute):
        return None
    if hour == "*" and dow == "*":
        return (0, -60)
    if _FIXED.fullmatch(hour) and dow == "*":
        return (-1, 0)
    if _FIXED.fullmatch(hour) and _FIXED.fullmatch(dow):
        return (-7, 0)
    return None
