"""A run triggered by a user (the API's ``POST /workflows/{name}/runs``, the CLI's ``trigger``
and ``run``): how the logical date it gives is read. Pure.

- **Reading**: as a backfill reads its ``start`` (``engine.backfill.parse_moment``): a day
  (YYYY-MM-DD) is 00:00 of it, a date-time without an offset is wall time, both in the
  workflow schedule's time zone (UTC without a schedule); one with an offset is that instant.
"""

from __future__ import annotations

from datetime import datetime

from stratoflow.engine.backfill import _zone, parse_moment
from stratoflow.errors import InvalidInput, UnprocessableInput
from stratoflow.model import Schedule

FIELD = "logical_date"


def read_logical_date(text: str, schedule: Schedule | None, field_name: str = FIELD) -> datetime:
    """``text`` as an aware UTC instant, read in ``schedule``'s time zone when it has no
    offset (UnprocessableInput, naming ``field_name``, when it is not a date or date-time
    between 1900 and 9999)."""
    try:
        return parse_moment(text, field_name, _zone(schedule))
    except InvalidInput as exc:
        raise UnprocessableInput(exc.problems) from None
