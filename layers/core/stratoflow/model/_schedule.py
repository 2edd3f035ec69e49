"""Schedule expressions: Unix cron, EventBridge ``cron(...)`` and ``rate(...)``, with EventBridge
Scheduler's time-zone and daylight-saving semantics.

Pure: nothing here reads the clock or does I/O. Every instant returned is an aware UTC datetime.

Accepted inputs (see :func:`parse_schedule`):

* a 5-field Unix cron expression ``m h dom mon dow`` (or an alias such as ``@daily``), converted
  to the equivalent 6-field EventBridge expression;
* an EventBridge cron expression ``cron(m h dom mon dow year)``;
* an EventBridge rate expression ``rate(N minutes|hours|days)``.

Field semantics of EventBridge cron (day-of-week 1 = Sunday, ``?``, ``L``, ``W``, ``#``, the year
field) come from the ``aws_croniter`` library, which works on UTC only. Here it is fed *wall-clock*
times of the schedule's time zone disguised as UTC, and each wall-clock answer is mapped back to a
real instant with :mod:`zoneinfo`. Daylight-saving time follows EventBridge Scheduler, whose User
Guide ("Daylight savings time on EventBridge Scheduler",
https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html#daylist-savings-time)
says:

    "When time shifts forward in the Spring, if a cron expression falls on a non-existent date and
    time, your schedule invocation is skipped. When time shifts backwards in the Fall, your
    schedule runs only once and does not repeat its invocation."

and, for rate expressions, that ``days`` "represents a 24-hour duration on the clock".

So: a cron wall-clock time inside a spring-forward gap does not fire at all (it is *not* moved to
the next valid minute); a wall-clock time repeated by a fall-back fires once, at its first
(daylight-time) instance. ``rate()`` schedules are fixed intervals of absolute time and ignore the
time zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:  # _workflow imports this module
    from stratoflow.model._workflow import Schedule

__all__ = [
    "MAX_FIRE_TIMES",
    "MAX_FIRINGS_PER_TICK",
    "ScheduleError",
    "ScheduleExpression",
    "catchup_start_problem",
    "due_firings",
    "fires_within",
    "never_fires",
    "next_firing",
    "parse_schedule",
    "same_times",
    "schedule_window",
    "validate_timezone",
]

MAX_FIRE_TIMES = 100_000
"""The most fire times :meth:`ScheduleExpression.fire_times` returns before giving up."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC_ZONE = ZoneInfo("UTC")
_TICK = timedelta(microseconds=1)
# Wall-clock candidates skipped in one search: a DST gap or repeated stretch holds at most a few
# hundred minutes, so reaching this means a bug, not a sparse schedule.
_MAX_SKIPPED_CANDIDATES = 10_000

_ACCEPTED_FORMS = (
    "expected a 5-field Unix cron expression ('m h dom mon dow', e.g. '0 2 * * *'), "
    "an alias (@hourly, @daily, @weekly, @monthly, @yearly, @annually), "
    "an EventBridge cron expression ('cron(m h dom mon dow year)', e.g. 'cron(0 2 * * ? *)') "
    "or an EventBridge rate expression ('rate(N minutes|hours|days)', e.g. 'rate(5 minutes)')"
)

_ALIASES: Mapping[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_RATE_UNITS: Mapping[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}

_MONTH_NAMES: Mapping[str, int] = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
# Unix numbering: 0 (and 7) = Sunday. EventBridge numbers 1 = Sunday, so days are emitted as names.
_DOW_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_UNIX_DOW: Mapping[str, int] = {name: number for number, name in enumerate(_DOW_NAMES)}

_EB_FIELDS = ("minutes", "hours", "day-of-month", "month", "day-of-week", "year")
_NUMBER = re.compile(r"[0-9]+")
_SECONDS = re.compile(r"[0-9*][0-9*/,-]*")  # a Quartz seconds field: 0, 30, 0/30, */10, 0,30


class ScheduleError(ValueError):
    """An invalid schedule expression or time zone; the message names the problem."""


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleExpression:
    """A parsed, validated schedule.

    ``source`` is what the user wrote; ``eventbridge`` is the equivalent EventBridge Scheduler
    expression (``cron(0 2 * * ? *)`` or ``rate(1 hour)``); ``rate`` is the interval of a
    ``rate()`` schedule and ``None`` for cron.

    Datetime arguments of the methods: ``after``, ``until`` and ``at`` may be aware (any zone)
    or naive, and a naive one is read as **UTC**. ``start`` may be aware or naive, and a naive
    ``start`` is read as wall-clock time in the schedule's time zone ``tz`` (with ``fold=0``).
    ``tz`` is an IANA zone name; cron fields are evaluated on that zone's wall clock. Every
    returned datetime is aware UTC.

    ``start`` bounds the schedule from below: for cron, fire times are the matching instants at
    or after ``start`` (EventBridge invocations "might occur on, or after, the StartDate"); for
    ``rate()``, fire times are ``start + k * rate`` for ``k >= 0`` ("you use the StartDate
    property to set the first occurrence of the schedule"). A ``rate()`` schedule without
    ``start`` is aligned to the Unix epoch (``1970-01-01T00:00Z + k * rate``) so that the answer
    is deterministic.
    """

    kind: Literal["cron", "rate"]
    source: str
    eventbridge: str
    rate: timedelta | None

    def next_after(
        self, after: datetime, tz: str = "UTC", start: datetime | None = None
    ) -> datetime:
        """The first fire time strictly after ``after`` (aware UTC).

        Raises :class:`ScheduleError` if the schedule never fires after ``after`` (for example a
        cron expression whose year field has passed).
        """
        zone = _zone(tz)
        after_utc = _as_utc(after)
        found = self._next(after_utc, zone, _start_utc(start, zone))
        if found is None:
            raise ScheduleError(
                f"schedule {self.source!r} has no fire time after {after_utc.isoformat()}"
            )
        return found

    def grid_after(
        self, after: datetime, tz: str = "UTC", start: datetime | None = None
    ) -> datetime:
        """The first of the schedule's times strictly after ``after`` (aware UTC), with
        ``start`` not a bound: a ``rate()`` schedule's grid ``start + k * rate`` for every
        integer ``k``, negative too (the epoch's without ``start``), and a cron schedule's
        every match. A backfill's dates: a date before ``start`` is asked for on purpose.
        The schedule's own firing (``next_after``) never fires before ``start``.

        Raises :class:`ScheduleError` if there is no such time."""
        zone = _zone(tz)
        after_utc = _as_utc(after)
        if self.rate is None:
            found = next(_evaluator(self.eventbridge).after(zone, after_utc), None)
        else:
            found = _rate_next(after_utc, _start_utc(start, zone) or _EPOCH, self.rate)
        if found is None:
            raise ScheduleError(
                f"schedule {self.source!r} has no fire time after {after_utc.isoformat()}"
            )
        return found

    def fire_times(
        self,
        after: datetime,
        until: datetime,
        tz: str = "UTC",
        start: datetime | None = None,
    ) -> list[datetime]:
        """Every fire time ``t`` with ``after < t <= until``, oldest first (aware UTC).

        Raises :class:`ScheduleError` rather than build a list of more than
        :data:`MAX_FIRE_TIMES` (100 000) entries.
        """
        zone = _zone(tz)
        after_utc = _as_utc(after)
        until_utc = _as_utc(until)
        start_utc = _start_utc(start, zone)
        if until_utc <= after_utc:
            return []
        if self.rate is not None:
            return self._rate_fire_times(after_utc, until_utc, start_utc, self.rate)
        times: list[datetime] = []
        for found in _evaluator(self.eventbridge).after(zone, _lower_bound(after_utc, start_utc)):
            if found > until_utc:
                break
            if len(times) == MAX_FIRE_TIMES:
                raise self._too_many(after_utc, until_utc)
            times.append(found)
        return times

    def previous_at_or_before(
        self, at: datetime, tz: str = "UTC", start: datetime | None = None
    ) -> datetime | None:
        """The last fire time ``t <= at`` (aware UTC), or ``None`` if there is none."""
        zone = _zone(tz)
        at_utc = _as_utc(at)
        start_utc = _start_utc(start, zone)
        if start_utc is not None and at_utc < start_utc:
            return None
        if self.rate is not None:
            anchor = _EPOCH if start_utc is None else start_utc
            try:
                return anchor + ((at_utc - anchor) // self.rate) * self.rate
            except OverflowError:  # before datetime.min
                return None
        found = _evaluator(self.eventbridge).previous(zone, at_utc)
        if found is None or (start_utc is not None and found < start_utc):
            return None
        return found

    # ----------------------------------------------------------------------------------------

    def _next(
        self, after_utc: datetime, zone: ZoneInfo, start_utc: datetime | None
    ) -> datetime | None:
        if self.rate is not None:
            if start_utc is not None and after_utc < start_utc:
                return start_utc
            return _rate_next(after_utc, _EPOCH if start_utc is None else start_utc, self.rate)
        fire_times = _evaluator(self.eventbridge).after(zone, _lower_bound(after_utc, start_utc))
        return next(fire_times, None)

    def _rate_fire_times(
        self,
        after_utc: datetime,
        until_utc: datetime,
        start_utc: datetime | None,
        rate: timedelta,
    ) -> list[datetime]:
        first = self._next(after_utc, _UTC_ZONE, start_utc)
        if first is None or first > until_utc:
            return []
        count = (until_utc - first) // rate + 1
        if count > MAX_FIRE_TIMES:
            raise self._too_many(after_utc, until_utc)
        return [first + index * rate for index in range(count)]

    def _too_many(self, after_utc: datetime, until_utc: datetime) -> ScheduleError:
        return ScheduleError(
            f"schedule {self.source!r} fires more than {MAX_FIRE_TIMES} times between "
            f"{after_utc.isoformat()} and {until_utc.isoformat()}; ask for a shorter window"
        )


def parse_schedule(expr: str) -> ScheduleExpression:
    """Parse and validate a schedule expression.

    Accepts a 5-field Unix cron expression (``m h dom mon dow``; day-of-week 0-7 with 0 and 7 =
    Sunday; names ``JAN``-``DEC`` and ``SUN``-``SAT``; lists, ranges and steps) or one of the
    aliases ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``, ``@yearly`` and
    ``@annually``; an EventBridge ``cron(m h dom mon dow year)`` expression (the year may be left
    out, as the EventBridge Scheduler guide allows, and defaults to ``*``); or an EventBridge
    ``rate(N minute|minutes|hour|hours|day|days)`` expression.

    Raises :class:`ScheduleError` naming the problem.
    """
    text = expr.strip()
    lowered = text.lower()
    if lowered.startswith("cron(") or lowered.startswith("rate("):
        if not text.endswith(")"):
            raise ScheduleError(f"invalid schedule expression {expr!r}: missing closing ')'")
        inner = text[5:-1]
        if lowered.startswith("cron("):
            return _parse_eventbridge_cron(expr, inner)
        return _parse_rate(expr, inner)
    if text.startswith("@"):
        unix = _ALIASES.get(lowered)
        if unix is None:
            raise ScheduleError(
                f"invalid schedule expression {expr!r}: unknown alias; use one of "
                + ", ".join(_ALIASES)
            )
        return _parse_unix_cron(expr, unix)
    fields = text.split()
    if len(fields) == 5 and not any(ch.isalpha() for ch in fields[0] + fields[1]):
        return _parse_unix_cron(expr, text)
    quartz = _quartz_form(fields)
    if quartz is not None:
        seconds = fields[0]
        looks = (
            f"invalid schedule expression {expr!r}: {len(fields)} fields look like a cron "
            "expression whose first field is seconds"
        )
        eventbridge = _eventbridge_reading(fields)
        other = (
            ""
            if eventbridge is None
            else "; read as EventBridge's fields instead (minutes hours day-of-month month "
            f"day-of-week year, '?' for one day field) they are {eventbridge!r}, which fires "
            "at other times: write the one you mean"
        )
        if seconds in ("0", "00"):
            raise ScheduleError(
                f"{looks} (Quartz's, as DolphinScheduler writes them, or Spring's); schedules "
                f"fire on whole minutes: write {quartz!r}{other}"
            )
        raise ScheduleError(
            f"{looks} ({seconds!r}), as Quartz's (DolphinScheduler's) or Spring's are; "
            "schedules fire at second 0 of whole minutes, so those seconds cannot be kept: "
            f"at second 0 it is {quartz!r}{other}"
        )
    if len(fields) == 6 and not any(ch.isalpha() for ch in fields[0] + fields[1]):
        # both day fields '*' (as Unix cron has it): EventBridge wants one '?'
        wrapped = _eventbridge_reading(fields) or f"cron({' '.join(fields)})"
        raise ScheduleError(
            f"invalid schedule expression {expr!r}: 6 fields look like an EventBridge cron "
            f"expression; write it as {wrapped!r}, or use 5 fields for Unix cron"
        )
    raise ScheduleError(f"invalid schedule expression {expr!r}: {_ACCEPTED_FORMS}")


def _eventbridge_reading(fields: list[str]) -> str | None:
    """What six fields with both day fields ``*`` mean as EventBridge's (``30 2 * * * *``:
    02:30 every day, ``cron(30 2 * * ? *)``), where EventBridge wants one of them ``?``;
    ``None`` for any other fields, or when that reading is no valid expression."""
    if len(fields) != 6 or fields[2] != "*" or fields[4] != "*":
        return None
    written = f"cron({' '.join([*fields[:4], '?', fields[5]])})"
    try:
        return parse_schedule(written).eventbridge
    except ScheduleError:
        return None


def _quartz_form(fields: list[str]) -> str | None:
    """The expression a cron expression with a seconds field first (Quartz's, as
    DolphinScheduler writes them: ``sec min hour dom month dow [year]``; Spring's six) means,
    at second 0, when ``fields`` read as EventBridge's six fields are refused; else ``None``.
    A seconds field other than 0 (``30``, ``0/30``) is one of digits and ``*/,-``."""
    if len(fields) not in (6, 7) or _SECONDS.fullmatch(fields[0]) is None:
        return None
    if len(fields) == 6:
        try:
            _parse_eventbridge_cron("", " ".join(fields))
        except ScheduleError:
            pass
        else:
            return None  # a valid EventBridge expression without its cron( ) wrapper
    rest = " ".join(fields[1:])
    # Quartz's form (a day field is '?') as EventBridge's; Spring's six, a Unix cron after them
    candidates = [f"cron({rest})", rest] if len(fields) == 6 else [f"cron({rest})"]
    for written in candidates:
        try:
            parsed = parse_schedule(written)
        except ScheduleError:
            continue
        return parsed.eventbridge if written.startswith("cron(") else written
    return None


# Files of the system's zoneinfo directory that ZoneInfo reads but that are no IANA time zone
# name: "localtime" is the machine's own zone (Debian links it to /etc/localtime), "posixrules"
# the rules POSIX TZ strings borrow (New York's), posix/ and right/ copies of the database
# (right/ counting leap seconds). EventBridge Scheduler refuses them, and what they mean
# depends on the machine. (zoneinfo.available_timezones() leaves out all but "localtime", but
# reads the whole directory to say so.)
_HOST_ZONE_FILES = frozenset({"localtime", "posixrules"})
_HOST_ZONE_DIRS = ("posix/", "right/")


def validate_timezone(name: str) -> str:
    """Return ``name`` if it is a known IANA time zone; raise :class:`ScheduleError` otherwise."""
    if name in _HOST_ZONE_FILES or name.startswith(_HOST_ZONE_DIRS):
        raise ScheduleError(
            f"unknown time zone {name!r}: not an IANA time zone name but a file of this "
            "machine's zone database; write the zone's IANA name, e.g. 'Europe/Berlin'"
        )
    try:
        _zone(name)
    except ScheduleError as exc:
        hint = _zone_hint(name)
        if hint is None:
            raise
        raise ScheduleError(f"{exc}: {hint}") from None
    return name


_OFFSET = re.compile(r"(?:UTC|GMT)?\s*([+-])([0-9]{1,2})(?::?([0-9]{2}))?", re.IGNORECASE)
_ABBREVIATION = re.compile(r"[A-Z]{2,5}")
_IANA_EXAMPLES = "such as 'Asia/Shanghai', 'Europe/Paris' or 'America/New_York'"


def _zone_hint(name: str) -> str | None:
    """What to write instead of an unknown time zone that is a UTC offset (``+08:00``,
    ``UTC+8``) or an abbreviation (``CST``), as users of pendulum or DolphinScheduler's UI
    write them; ``None`` for any other name."""
    offset = _OFFSET.fullmatch(name.strip())
    if offset is not None:
        sign, hours, minutes = offset.group(1), int(offset.group(2)), int(offset.group(3) or 0)
        hint = (
            "a UTC offset is no time zone name; write the IANA name of the place "
            f"({_IANA_EXAMPLES}), whose daylight-saving rules the schedule then follows"
        )
        if minutes == 0 and hours <= (14 if sign == "+" else 12):
            fixed = f"Etc/GMT{'-' if sign == '+' else '+'}{hours}" if hours else "UTC"
            written = f"{sign}{hours:02d}:00"
            hint += f", or {fixed!r} for a fixed offset of {written}"
            if hours:
                hint += " (its sign inverted, as POSIX writes it)"
        return hint
    if _ABBREVIATION.fullmatch(name) is not None:
        return (
            "an abbreviation is no time zone name (one can mean several zones: CST is "
            "China's and the US's), nor does it say when daylight-saving time applies; write "
            f"an IANA name {_IANA_EXAMPLES}"
        )
    return None


# --------------------------------------------------------------------------------------------
# Firing a workflow's schedule: what is due, given a cursor (the last logical date fired).
# One meaning for both runtimes: the local cron loop and the AWS trigger function use these.
# A firing's logical date is its fire time (not the start of the interval before it).
# --------------------------------------------------------------------------------------------

MAX_FIRINGS_PER_TICK = 500
"""Catchup over a long window proceeds in bounded steps of at most this many firings."""


def schedule_window(schedule: Schedule) -> tuple[datetime | None, datetime | None]:
    """The schedule's ``start`` and ``end`` as aware UTC instants (``None`` where unset). A naive
    one is wall-clock time in the schedule's time zone."""
    zone = _zone(schedule.timezone)
    return _start_utc(schedule.start, zone), _start_utc(schedule.end, zone)


def due_firings(
    schedule: Schedule, cursor: datetime | None, now: datetime, room: int | None = None
) -> tuple[list[datetime], datetime]:
    """Logical dates to fire now, and the new cursor.

    First sight (no cursor): with ``catchup`` and a ``start``, every time since start is due;
    otherwise nothing in the past is, and the cursor starts at ``now``. Later: with catchup,
    every time missed since the cursor (oldest first, at most :data:`MAX_FIRINGS_PER_TICK`;
    the cursor then stops at the last one, so the next call resumes there); without, only the
    latest missed time, and none when the schedule's latest time is after its window's end.

    ``room`` bounds a catch-up by the runs its workflow may still have (its effective
    ``max_active_runs`` less its queued and active runs; ``None``: no bound): at most ``room``
    of the due times are taken (the oldest), the cursor stopping at the last one taken, so the
    backlog is created as runs end, not all at once. The schedule's on-time firing is no
    exception: with no room (``room <= 0``) nothing is taken and the cursor stays, so a
    workflow at its ``max_active_runs`` gets no run queued per firing (Airflow creates no
    DagRun then) and the time stays due, to be taken in its turn when a run ends.
    """
    expr = parse_schedule(schedule.cron)
    start, end = schedule_window(schedule)
    until = min(now, end) if end is not None else now
    if cursor is None:
        if not (schedule.catchup and start is not None):
            return [], now
        cursor = start - timedelta(microseconds=1)
    if until <= cursor:
        return [], cursor
    if schedule.catchup:
        most = MAX_FIRINGS_PER_TICK if room is None else min(max(room, 0), MAX_FIRINGS_PER_TICK)
        times: list[datetime] = []
        t = cursor
        more = False  # a due time left beyond those taken
        while True:
            try:
                t = expr.next_after(t, schedule.timezone, start)
            except ScheduleError:  # the expression has no more fire times (its years passed)
                break
            if t > until:
                break
            if len(times) == most:
                more = True
                break
            times.append(t)
        if more:  # a due time left: the cursor stops at the last one taken, or stays
            return times, times[-1] if times else cursor
        return times, until
    # the schedule's latest time by now, its window's end no bound (Airflow's latest interval):
    # after the end, the window is over and its last time is not fired late
    latest = expr.previous_at_or_before(now, schedule.timezone, start)
    if latest is None or latest <= cursor or (end is not None and latest > end):
        return [], until
    return [latest], until


def same_times(before: Schedule, after: Schedule) -> bool:
    """Whether two schedules fire at the same times after a moment inside both windows: a
    cron schedule the same expression (in its EventBridge form) on the same time zone's wall
    clock; a ``rate()`` schedule the same interval on the same grid (its ``start``; the time
    zone it ignores). ``end`` and ``catchup`` change which times are fired, not what they are."""
    first, second = parse_schedule(before.cron), parse_schedule(after.cron)
    if first.rate is not None or second.rate is not None:
        return first.rate == second.rate and schedule_window(before)[0] == schedule_window(after)[0]
    return first.eventbridge == second.eventbridge and before.timezone == after.timezone


def next_firing(schedule: Schedule, cursor: datetime) -> datetime | None:
    """The first fire time after ``cursor`` inside the schedule's window, or ``None``."""
    expr = parse_schedule(schedule.cron)
    start, end = schedule_window(schedule)
    try:
        t = expr.next_after(cursor, schedule.timezone, start)
    except ScheduleError:  # no more fire times
        return None
    return None if end is not None and t > end else t


MAX_PREVIEW = 100
"""Most fire times :func:`upcoming_firings` lists."""


def upcoming_firings(schedule: Schedule, now: datetime, count: int) -> list[datetime]:
    """The next ``count`` (at most :data:`MAX_PREVIEW`) times the schedule fires after
    ``now``, its window (``start``/``end``) applied, oldest first (aware UTC): the logical
    dates of the runs it will make, as the cron loop computes them (``next_firing``).
    Fewer when its window ends or its expression runs out of times first."""
    if not 0 <= count <= MAX_PREVIEW:
        raise ValueError(f"count must be 0 to {MAX_PREVIEW}, not {count}")
    times: list[datetime] = []
    cursor = _as_utc(now)
    while len(times) < count:
        found = next_firing(schedule, cursor)
        if found is None:
            break
        times.append(found)
        cursor = found
    return times


def fires_within(schedule: Schedule, start: datetime, end: datetime) -> bool:
    """Whether the schedule's expression has a fire time ``t`` with ``start <= t < end``.

    What its times are, not whether it fires them now: the window (``start``/``end``) bounds
    nothing here, since a backfill makes the runs of times outside it; a ``rate()`` schedule
    keeps its grid (``start + k * rate`` for any ``k``, or the Unix epoch's). An interval where
    it has none (a spring-forward gap its wall-clock time falls in, the second pass of an hour
    a fall-back repeats, which fires once, a day its fields skip) is one a run of it is never
    made for by its schedule (a dependency on it does not wait for it)."""
    start_utc, end_utc = _as_utc(start), _as_utc(end)
    if end_utc <= start_utc:
        return False
    expr = parse_schedule(schedule.cron)
    if expr.rate is not None:
        anchor = schedule_window(schedule)[0] or _EPOCH
        try:
            first = anchor + ((start_utc - anchor - _TICK) // expr.rate + 1) * expr.rate
        except OverflowError:  # beyond the calendar
            return False
        return first < end_utc
    try:
        found = expr.next_after(start_utc - _TICK, schedule.timezone)
    except (ScheduleError, OverflowError):  # no fire time after it (its years have passed)
        return False
    return found < end_utc


CRON_FIRST_YEAR = 1970
"""Cron schedules fire from this year on (EventBridge's year field is 1970-2199)."""


def catchup_start_problem(schedule: Schedule) -> str | None:
    """Why a catch-up from ``schedule.start`` cannot be honoured, or ``None``.

    A cron expression has no fire time before 1970-01-01 on its time zone's wall clock (the
    EventBridge cron year field, and so ``aws_croniter``, spans 1970-2199): a catch-up from
    an earlier start would silently begin at 1970. ``rate()`` schedules count from any start.
    """
    if not schedule.catchup or schedule.start is None:
        return None
    if parse_schedule(schedule.cron).kind != "cron":
        return None
    zone = _zone(schedule.timezone)
    start_utc = _start_utc(schedule.start, zone)
    assert start_utc is not None
    if _wall(start_utc, zone) >= datetime(CRON_FIRST_YEAR, 1, 1):
        return None
    return (
        f"start {schedule.start.isoformat()} is before {CRON_FIRST_YEAR}-01-01T00:00 "
        f"({schedule.timezone}): a cron schedule has no fire time before then (cron years are "
        f"{CRON_FIRST_YEAR}-2199), so its catch-up could not begin at that start; use a start "
        f"from {CRON_FIRST_YEAR}-01-01 on, or a rate() schedule"
    )


def never_fires(schedule: Schedule, now: datetime) -> str | None:
    """Why ``schedule`` can never fire, or ``None`` when it can.

    While its window is open, it must have a fire time after ``now`` inside the window: an
    impossible date (``0 0 30 2 *``), a year that has passed (``cron(0 0 1 1 ? 1999)``) or a
    time that a DST gap always skips in ``schedule.timezone`` have none. A window that has
    ended is a schedule that is over, not a mistake (re-applying its file stays possible); its
    expression must only have been able to fire at some time. The search is bounded by the
    expression's year field (EventBridge's years end in 2199)."""
    start, end = schedule_window(schedule)
    ended = end is not None and end <= _as_utc(now)
    try:
        if ended:
            expr = parse_schedule(schedule.cron)
            since = start or datetime(1970, 1, 1, tzinfo=UTC)
            found: datetime | None = expr.next_after(
                since - timedelta(microseconds=1), schedule.timezone, start
            )
        else:
            found = next_firing(schedule, now)
    except ScheduleError:  # no fire time at all (an invalid expression is reported elsewhere)
        found = None
    except (OverflowError, ValueError):  # out of datetime's range: nothing representable
        found = None
    if found is not None:
        return None
    zone = "" if schedule.timezone == "UTC" else f" in {schedule.timezone}"
    if ended:
        return f"schedule {schedule.cron!r} never fires{zone}"
    window = "" if end is None else f" before its end {end.isoformat()}"
    return (
        f"schedule {schedule.cron!r} never fires{zone}: it has no fire time after "
        f"{_as_utc(now).isoformat()}{window}"
    )


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _cron_error(source: str, problem: str) -> ScheduleError:
    return ScheduleError(f"invalid cron expression {source!r}: {problem}")


def _parse_rate(source: str, inner: str) -> ScheduleExpression:
    def fail(problem: str) -> ScheduleError:
        return ScheduleError(f"invalid rate expression {source!r}: {problem}")

    parts = inner.split()
    if len(parts) != 2:
        raise fail("expected rate(value unit), e.g. rate(5 minutes) or rate(1 hour)")
    value_text, unit_text = parts
    if _NUMBER.fullmatch(value_text) is None:
        raise fail(f"value {value_text!r} must be a positive integer")
    value = int(value_text)
    if value == 0:
        raise fail("value must be a positive integer, got 0")
    unit = unit_text.lower()
    singular = unit.removesuffix("s")
    if singular not in _RATE_UNITS:
        raise fail(f"unit {unit_text!r} is not supported; use minute(s), hour(s) or day(s)")
    # EventBridge: "If the value is equal to 1, then the unit must be singular. If the value is
    # greater than 1, the unit must be plural" -- it rejects rate(1 minutes) and rate(5 minute).
    if value == 1 and unit != singular:
        raise fail(
            f"use the singular unit '{singular}' when the value is 1 "
            f"(EventBridge rejects 'rate(1 {unit})')"
        )
    if value != 1 and unit == singular:
        raise fail(
            f"use the plural unit '{singular}s' when the value is not 1 "
            f"(EventBridge rejects 'rate({value} {singular})')"
        )
    try:
        interval = value * _RATE_UNITS[singular]
    except OverflowError:
        raise fail(f"value {value} is too large") from None
    return ScheduleExpression(
        kind="rate", source=source, eventbridge=f"rate({value} {unit})", rate=interval
    )


def _parse_eventbridge_cron(source: str, inner: str) -> ScheduleExpression:
    fields = inner.split()
    if len(fields) == 5:
        fields.append("*")  # "one optional field, year" (EventBridge Scheduler User Guide)
    if len(fields) != 6:
        raise _cron_error(
            source,
            f"expected 6 fields inside cron(...) ({' '.join(_EB_FIELDS)}), got {len(fields)}",
        )
    dom, dow = fields[2], fields[4]
    if (dom == "?") == (dow == "?"):
        raise _cron_error(
            source,
            f"exactly one of day-of-month ({dom!r}) and day-of-week ({dow!r}) must be '?'",
        )
    if dom.upper() == "LW":
        raise _cron_error(
            source, "day-of-month 'LW' (last weekday of the month) is not supported here"
        )
    _validate_with_croniter(source, " ".join(fields))  # its errors quote what was written
    # EventBridge documents an increment as start/step ("1/10"): a '*/n' item is sent with
    # the field's first value (the day-of-week and year fields take no '*/n' here)
    for index, first in _STEP_STARTS.items():
        fields[index] = ",".join(
            f"{first}/{item[2:]}" if item.startswith("*/") else item
            for item in fields[index].split(",")
        )
    body = " ".join(fields)
    return ScheduleExpression(kind="cron", source=source, eventbridge=f"cron({body})", rate=None)


_STEP_STARTS: Mapping[int, int] = {0: 0, 1: 0, 2: 1, 3: 1}  # minutes, hours, day, month


def _validate_with_croniter(source: str, body: str) -> None:
    try:
        _evaluator(body)
    except ValueError as exc:  # aws_croniter's errors subclass ValueError
        problem = str(exc).strip().rstrip(".")
        problem = problem[:1].lower() + problem[1:]
        raise _cron_error(source, problem) from None


@dataclass(frozen=True)
class _UnixField:
    name: str
    low: int
    high: int
    names: Mapping[str, int]


_UNIX_FIELDS = (
    _UnixField("minute", 0, 59, {}),
    _UnixField("hour", 0, 23, {}),
    _UnixField("day-of-month", 1, 31, {}),
    _UnixField("month", 1, 12, _MONTH_NAMES),
    _UnixField("day-of-week", 0, 7, _UNIX_DOW),
)


@dataclass(frozen=True)
class _UnixParsed:
    values: frozenset[int]
    eventbridge: str  # the same set in EventBridge syntax (not used for day-of-week)
    unrestricted: bool  # '*' (or '*/1'): every value of the field


def _parse_unix_cron(source: str, text: str) -> ScheduleExpression:
    fields = text.split()
    if len(fields) != 5:
        raise _cron_error(
            source,
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}",
        )
    minute, hour, dom, month, dow = (
        _parse_unix_field(source, field, spec)
        for field, spec in zip(fields, _UNIX_FIELDS, strict=True)
    )
    if not dom.unrestricted and not dow.unrestricted:
        raise _cron_error(
            source,
            f"it restricts both day-of-month ({fields[2]!r}) and day-of-week ({fields[4]!r}), "
            "which Unix cron combines with OR; EventBridge cannot restrict both day-of-month and "
            "day-of-week, so restrict only one of them and set the other to '*'",
        )
    if dow.unrestricted or dow.values >= frozenset(range(7)):
        eb_dom, eb_dow = dom.eventbridge, "?"
    else:
        eb_dom, eb_dow = "?", _eventbridge_days(dow.values)
    body = f"{minute.eventbridge} {hour.eventbridge} {eb_dom} {month.eventbridge} {eb_dow} *"
    _validate_with_croniter(source, body)
    return ScheduleExpression(kind="cron", source=source, eventbridge=f"cron({body})", rate=None)


def _parse_unix_field(source: str, text: str, spec: _UnixField) -> _UnixParsed:
    is_dow = spec.names is _UNIX_DOW
    values: set[int] = set()
    pieces: list[str] = []
    elements = text.split(",")
    for element in elements:
        element_values, piece = _parse_unix_element(source, element, spec)
        values.update(value % 7 if is_dow else value for value in element_values)  # 7 = Sunday
        pieces.append(piece)
    every = frozenset(range(7)) if is_dow else frozenset(range(spec.low, spec.high + 1))
    # Like Unix cron, only a field written with '*' counts as unrestricted ('*', '*/1', '*,5').
    unrestricted = "*" in pieces or (
        len(elements) == 1 and text.startswith("*") and values >= every
    )
    return _UnixParsed(
        values=frozenset(values),
        eventbridge="*" if unrestricted else ",".join(pieces),
        unrestricted=unrestricted,
    )


def _parse_unix_element(source: str, element: str, spec: _UnixField) -> tuple[list[int], str]:
    """One list item (``*``, ``*/s``, ``a``, ``a-b``, ``a-b/s`` or ``a/s``): its values, and the
    item in EventBridge syntax (steps EventBridge cannot write are spelled out as a list)."""
    if not element:
        raise _cron_error(source, f"empty list item in {spec.name} field")
    base, slash, step_text = element.partition("/")
    step: int | None = None
    if slash:
        if _NUMBER.fullmatch(step_text) is None or int(step_text) == 0:
            raise _cron_error(source, f"{spec.name} step {step_text!r} must be a positive integer")
        step = int(step_text)
    if base == "*":
        start, end = spec.low, spec.high
        # EventBridge documents an increment as start/step ("1/10"), so '*/15' is written
        # with the field's first value: 0/15
        piece = "*" if step is None else f"{start}/{step}"
    elif "-" in base:
        first, _, last = base.partition("-")
        start = _unix_value(source, first, spec)
        end = _unix_value(source, last, spec)
        if start > end:
            raise _cron_error(
                source, f"{spec.name} range {base!r} is reversed (its start is after its end)"
            )
        piece = f"{start}-{end}" if step is None else f"{start}-{end}/{step}"
    else:
        start = _unix_value(source, base, spec)
        end = spec.high if step is not None else start
        piece = str(start) if step is None else f"{start}/{step}"
    values = list(range(start, end + 1, step or 1))
    if step is not None and step > spec.high:
        # EventBridge only takes an increment that is itself a valid field value.
        piece = ",".join(str(value) for value in values)
    return values, piece


def _unix_value(source: str, token: str, spec: _UnixField) -> int:
    named = spec.names.get(token.upper())
    if named is not None:
        return named
    if _NUMBER.fullmatch(token) is None:
        problem = f"{spec.name} value {token!r} is not a number"
        if spec.names:
            names = list(spec.names)
            problem += f" or a name {names[0]}-{names[-1]}"
        if any(mark in token.upper() for mark in "?LW#"):
            problem += "; use cron(...) for EventBridge's ?, L, W and # forms"
        raise _cron_error(source, problem)
    value = int(token)
    if not spec.low <= value <= spec.high:
        raise _cron_error(source, f"{spec.name} value {value} out of range {spec.low}-{spec.high}")
    return value


def _eventbridge_days(days: frozenset[int]) -> str:
    """Unix days (0 = Sunday) as EventBridge day names: runs of 3+ as ranges (MON-FRI)."""
    if days >= frozenset(range(7)):
        return "*"
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{_DOW_NAMES[run[0]]}-{_DOW_NAMES[run[-1]]}")
        else:
            parts.extend(_DOW_NAMES[day] for day in run)
    return ",".join(parts)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(f"unknown time zone {name!r}") from None


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _lower_bound(after_utc: datetime, start_utc: datetime | None) -> datetime:
    """The instant that cron fire times must be strictly after: ``after``, or just before
    ``start`` (cron schedules fire at or after their start)."""
    if start_utc is not None and after_utc < start_utc:
        return start_utc - timedelta(microseconds=1)
    return after_utc


def _rate_next(after_utc: datetime, anchor: datetime, rate: timedelta) -> datetime | None:
    """The first ``anchor + k * rate`` strictly after ``after_utc``, for any integer ``k``."""
    try:
        return anchor + ((after_utc - anchor) // rate + 1) * rate
    except OverflowError:  # past datetime.max (or before datetime.min)
        return None


def _start_utc(start: datetime | None, zone: ZoneInfo) -> datetime | None:
    if start is None:
        return None
    if start.tzinfo is None:
        return start.replace(tzinfo=zone).astimezone(UTC)
    return start.astimezone(UTC)


@lru_cache(maxsize=1024)
def _evaluator(eventbridge: str) -> _CronEvaluator:
    """The evaluator of an EventBridge cron expression (with or without ``cron(...)``)."""
    return _CronEvaluator(eventbridge.removeprefix("cron(").removesuffix(")"))


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock reading of ``moment`` in ``zone``."""
    return moment.astimezone(zone).replace(tzinfo=None, fold=0)


def _instant(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The UTC instant at which EventBridge Scheduler runs a wall-clock reading of ``zone``.

    EventBridge Scheduler User Guide, "Daylight savings time on EventBridge Scheduler": "When time
    shifts forward in the Spring, if a cron expression falls on a non-existent date and time, your
    schedule invocation is skipped. When time shifts backwards in the Fall, your schedule runs only
    once and does not repeat its invocation."

    So a reading in a spring-forward gap has no instant (``None``: skipped, not moved to the next
    valid minute), and a reading that a fall-back repeats names only its first (``fold=0``,
    daylight-time) instant.
    """
    moment = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(moment, zone) != wall:
        return None  # the round trip moved it: the reading does not exist
    return moment


def _next_month(moment: datetime) -> datetime:
    if moment.month == 12:
        return datetime(moment.year + 1, 1, 1)
    return datetime(moment.year, moment.month + 1, 1)


class _CronEvaluator:
    """EventBridge cron semantics from ``aws_croniter``, applied to a time zone's wall clock.

    ``aws_croniter`` only knows UTC, so it is given wall-clock readings disguised as UTC and its
    wall-clock answers are mapped back to instants with :func:`_instant`. Wall-clock readings map
    to instants monotonically (gap readings have none, repeated readings their first), so the
    fire times after an instant are the candidates from its wall reading on whose instants are
    later, in order.
    """

    def __init__(self, body: str) -> None:
        fields = body.split(" ")
        if len(fields) == 6 and fields[4].upper() == "L":
            # Day-of-week 'L' alone is the last day of the week, Saturday; aws_croniter would
            # never match it.
            fields[4] = "SAT"
        # imported with the first cron expression (evaluators are cached, _evaluator): a
        # workflow without one (every `stratoflow run` of an unscheduled file) never needs it,
        # and it costs a start ~7 ms (with dateutil and six: 25 M instructions)
        from aws_croniter import AwsCroniter

        self.body = body
        self._cron: Any = AwsCroniter(" ".join(fields))
        years: list[int] = self._cron.years
        months: list[int] = self._cron.months
        self._first_year = min(years)
        self._last_year = max(years)
        self._months = frozenset(months)

    def _wall_next(self, wall: datetime, *, inclusive: bool) -> datetime | None:
        """The first named wall-clock minute after (or at) the whole minute ``wall``."""
        cursor = wall
        while cursor.year <= self._last_year:
            found: datetime | None = self._cron.get_next(
                cursor.replace(tzinfo=UTC), inclusive=inclusive
            )[0]
            if found is not None:
                return found.replace(tzinfo=None)
            # aws_croniter gives up after ten internal steps, which a sparse but valid expression
            # (e.g. MON#5 in February) can use up. It always searches the rest of the cursor's
            # month first, so resume at the start of the next month it allows.
            cursor, inclusive = _next_month(cursor), True
            while cursor.month not in self._months:
                cursor = _next_month(cursor)
        return None

    def _wall_previous(self, wall: datetime, *, inclusive: bool) -> datetime | None:
        """The last named wall-clock minute before (or at) the whole minute ``wall``."""
        cursor = wall
        while cursor.year >= self._first_year:
            found: datetime | None = self._cron.get_prev(
                cursor.replace(tzinfo=UTC), inclusive=inclusive
            )[0]
            if found is not None:
                return found.replace(tzinfo=None)
            # As in _wall_next: the cursor's month was searched; resume at the end of the
            # previous month it allows.
            cursor, inclusive = datetime(cursor.year, cursor.month, 1) - timedelta(minutes=1), True
            while cursor.month not in self._months:
                cursor = datetime(cursor.year, cursor.month, 1) - timedelta(minutes=1)
        return None

    def after(self, zone: ZoneInfo, after_utc: datetime) -> Iterator[datetime]:
        """The fire instants strictly after ``after_utc``, in order."""
        if after_utc.year > self._last_year:
            return
        # (Searching from before the first allowed year also keeps clear of datetime.min.)
        search_from = max(after_utc, datetime(self._first_year - 1, 1, 1, tzinfo=UTC))
        cursor = _wall(search_from, zone).replace(second=0, microsecond=0)
        skipped = 0
        while True:
            candidate = self._wall_next(cursor, inclusive=False)
            if candidate is None:
                return
            cursor = candidate
            moment = _instant(candidate, zone)
            if moment is not None and moment > after_utc:
                skipped = 0
                yield moment
                continue
            # A reading in a DST gap, or the first instance of one repeated before `after`.
            skipped += 1
            if skipped > _MAX_SKIPPED_CANDIDATES:
                raise ScheduleError(
                    f"cron expression 'cron({self.body})' could not be evaluated in {zone.key}"
                )

    def previous(self, zone: ZoneInfo, at_utc: datetime) -> datetime | None:
        """The last fire instant at or before ``at_utc``."""
        if at_utc.year < self._first_year:
            return None
        # (Searching from after the last allowed year also keeps clear of datetime.max.)
        search_from = min(at_utc, datetime(self._last_year + 1, 12, 1, tzinfo=UTC))
        wall = _wall(search_from, zone)
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if first < search_from:
            # `at` is in the second pass of a repeated stretch: every reading up to the end of
            # the stretch has its (first) instant before `at`, so search back from that far.
            wall += search_from - first
        cursor = wall.replace(second=0, microsecond=0)
        inclusive = True
        for _ in range(_MAX_SKIPPED_CANDIDATES):
            candidate = self._wall_previous(cursor, inclusive=inclusive)
            if candidate is None:
                return None
            moment = _instant(candidate, zone)
            if moment is not None and moment <= at_utc:
                return moment
            cursor, inclusive = candidate, False
        raise ScheduleError(
            f"cron expression 'cron({self.body})' could not be evaluated in {zone.key}"
        )
