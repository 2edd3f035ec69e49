"""Reading a moment as a user writes one (a backfill's ``start``/``end``/``dates``, a trigger's
logical date): the standard library only, so that the CLI can check the syntax of one before
it sends it, without importing the model (docs/benchmarks.md, "the CLI's start-up")."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

DATE_CHARS = 10  # YYYY-MM-DD


def read_moment(text: str, zone: tzinfo, *, end: bool = False) -> datetime:
    """``text`` as an aware UTC instant: a date (YYYY-MM-DD) is its first instant in ``zone``
    (with ``end``: its last), a date-time without an offset is wall time in ``zone``, one
    with an offset is that instant. Raises ValueError (OverflowError at the calendar's
    edges) when it is neither."""
    value = text.strip()
    if len(value) == DATE_CHARS:
        day = date.fromisoformat(value)
        if end:
            after = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
            return after.astimezone(UTC) - timedelta(microseconds=1)
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def is_date(text: str) -> bool:
    """Whether ``text`` is written as a day (YYYY-MM-DD) rather than a date-time."""
    return len(text.strip()) == DATE_CHARS
