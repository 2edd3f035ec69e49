"""A trigger's logical date, as a user gives it (API ``logical_date``, the CLI's
``--logical-date``): a naive date or date-time is read as a backfill reads its ``start`` (wall
time in the workflow schedule's time zone, UTC without a schedule), a zoned one is that
instant, a malformed one is a 422 naming the field.

The API over SQLite here (the DynamoDB store's API: tests/aws_unit/test_trigger_apply_aws.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.unit.test_api_app import Api, _build, assert_error

from stratoflow.engine.backfill import parse_moment
from stratoflow.ports import RunQuery

SHANGHAI = """\
name: tz_daily
schedule: {cron: "0 6 * * *", timezone: Asia/Shanghai}
tasks:
  a: {type: shell, command: "echo {{ ds }}"}
"""

PLAIN = """\
name: plain
tasks:
  a: {type: shell, command: echo a}
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = _build(tmp_path)  # StepClock: 2026-03-01T12:00Z, 10 ms later at each reading
    built.apply(SHANGHAI)
    built.apply(PLAIN)
    yield built
    built.scheduler.store.close()  # type: ignore[attr-defined]


def _logical(reply: Any) -> datetime:
    assert reply.status == 201, reply.text
    return datetime.fromisoformat(reply.body["run"]["logical_date"])


def _runs(api: Api) -> list[Any]:
    return api.scheduler.store.list_runs(RunQuery())


# ------------------------------------------------------------------ reading the value
@pytest.mark.parametrize(
    ("workflow", "given", "expected"),
    [
        # a day: 00:00 of it in the schedule's zone (Asia/Shanghai is UTC+8)
        ("tz_daily", "2026-01-05", datetime(2026, 1, 4, 16, tzinfo=UTC)),
        # a date-time without offset: wall time in the schedule's zone
        ("tz_daily", "2026-01-05T06:00:00", datetime(2026, 1, 4, 22, tzinfo=UTC)),
        ("tz_daily", "2026-01-05 06:30", datetime(2026, 1, 4, 22, 30, tzinfo=UTC)),
        # an offset wins over the zone, as before
        ("tz_daily", "2026-01-05T06:00:00Z", datetime(2026, 1, 5, 6, tzinfo=UTC)),
        ("tz_daily", "2026-01-05T06:00:00+02:00", datetime(2026, 1, 5, 4, tzinfo=UTC)),
        # no schedule: UTC
        ("plain", "2026-01-05", datetime(2026, 1, 5, tzinfo=UTC)),
        ("plain", "2026-01-05T06:00:00", datetime(2026, 1, 5, 6, tzinfo=UTC)),
    ],
)
def test_trigger_reads_a_naive_logical_date_as_a_backfill_reads_its_start(
    api: Api, workflow: str, given: str, expected: datetime
) -> None:
    reply = api.call("POST", f"/workflows/{workflow}/runs", {"logical_date": given})
    assert _logical(reply) == expected
    zone = ZoneInfo("Asia/Shanghai" if workflow == "tz_daily" else "UTC")
    assert parse_moment(given, "start", zone) == expected  # what a backfill makes of it


def test_a_keyed_trigger_compares_the_instant_a_naive_value_means(api: Api) -> None:
    """An idempotency key repeated with the same instant written another way is the same
    request: the naive value is read before the runs are compared."""
    first = {"run_id": "k1", "logical_date": "2026-01-05T06:00:00"}
    assert api.call("POST", "/workflows/tz_daily/runs", first).status == 201
    same = {"run_id": "k1", "logical_date": "2026-01-04T22:00:00Z"}
    assert api.call("POST", "/workflows/tz_daily/runs", same).status == 200
    assert len(_runs(api)) == 1


@pytest.mark.parametrize("given", ["yesterday", "2026-13-01", "2026-01-05T25:00", "", "1899-12-31"])
def test_a_malformed_logical_date_is_422_naming_the_field_and_changes_nothing(
    api: Api, given: str
) -> None:
    before = list(api.changes)
    reply = api.call("POST", "/workflows/tz_daily/runs", {"logical_date": given})
    body = assert_error(reply, 422, "invalid_request", "logical_date")
    assert [p["path"] for p in body["problems"]] == ["logical_date"]
    assert "Traceback" not in reply.text
    assert _runs(api) == []
    assert api.changes == before
