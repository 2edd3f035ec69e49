"""A run triggered by a user (the API's ``POST /workflows/{name}/runs``, the CLI's ``trigger``
and ``run``): how the logical date it gives is read, and which ones are refused. Pure.

- **Reading**: as a backfill reads its ``start`` (``engine.backfill.parse_moment``): a day
  (YYYY-MM-DD) is 00:00 of it, a date-time without an offset is wall time, both in the
  workflow schedule's time zone (UTC without a schedule); one with an offset is that instant.
- **Dates that have not come** are refused (Airflow refuses them unless
  ``allow_trigger_in_future``): a run of a later date would let a ``dependency`` task that
  waits for that date's window succeed before its time. Up to ``FUTURE_ALLOWANCE`` ahead of
  the scheduler's clock is accepted, for a client whose clock runs a little ahead (a
  ``--logical-date`` of its own now). Only user triggers (``USER_TRIGGERS``) are checked:
  the schedule's firings (an EventBridge firing may be read by a clock a little behind it),
  backfills (which refuse dates after now themselves, before making anything) and the child
  runs of sub-workflow tasks (which take their parent's logical date) never are.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from stratoflow.engine.backfill import parse_moment, schedule_zone, utc_text
from stratoflow.errors import InvalidInput, Problem, UnprocessableInput
from stratoflow.model import Schedule

FIELD = "logical_date"
FUTURE_ALLOWANCE = timedelta(seconds=60)
USER_TRIGGERS = frozenset({"manual", "api"})  # `stratoflow run`; the API (and its CLI, UI)


def read_logical_date(text: str, schedule: Schedule | None, field_name: str = FIELD) -> datetime:
    """``text`` as an aware UTC instant, read in ``schedule``'s time zone when it has no
    offset (UnprocessableInput, naming ``field_name``, when it is not a date or date-time
    between 1900 and 9999)."""
    try:
        return parse_moment(text, field_name, schedule_zone(schedule))
    except InvalidInput as exc:
        raise UnprocessableInput(exc.problems) from None


def refuse_future_logical_date(
    logical_date: datetime, now: datetime, field_name: str = FIELD
) -> None:
    """UnprocessableInput, naming ``field_name``, when ``logical_date`` is more than
    ``FUTURE_ALLOWANCE`` after ``now``."""
    if logical_date <= now + FUTURE_ALLOWANCE:
        return
    allowance = int(FUTURE_ALLOWANCE.total_seconds())
    raise UnprocessableInput(
        [
            Problem(
                field_name,
                f"{utc_text(logical_date)} is after now ({utc_text(now.replace(microsecond=0))}): "
                "a run's logical date must have come (up to "
                f"{allowance} s ahead is accepted, for clock skew), else the run could satisfy "
                "a dependency's window before its time; the schedule runs later dates when "
                "they come",
            )
        ]
    )
