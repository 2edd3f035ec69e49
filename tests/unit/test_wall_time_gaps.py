"""A wall time that a daylight-saving change skips names no instant: a trigger's logical date
and a backfill's start, end or dates written so are refused, naming the field, not moved.

Python reads 02:30 on the night Paris goes from 02:00 to 03:00 with the offset before the
change (01:30Z), an instant whose wall time is 03:30: a run of a date nobody asked for, with
the id of the run a "30 3 * * *" schedule makes that night. A wall time a fall-back repeats
is its first instance, where the schedule fires it (EventBridge Scheduler fires it once)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tests.unit.test_api_app import Api, _build, assert_error

from stratoflow.engine.backfill import backfill_dates, parse_moment
from stratoflow.errors import InvalidInput
from stratoflow.model import Schedule
from stratoflow.ports import RunQuery

PARIS = ZoneInfo("Europe/Paris")
# 2025-03-30: Paris clocks go from 02:00 CET to 03:00 CEST; 2025-10-26: from 03:00 back to 02:00
GAP = "2025-03-30T02:30:00"
REPEATED = "2025-10-26T02:30:00"

PARIS_DAILY = """\
name: paris_daily
schedule: {cron: "30 3 * * *", timezone: Europe/Paris}
tasks:
  a: {type: shell, command: "echo {{ ts }}"}
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = _build(tmp_path)  # StepClock: 2026-03-01T12:00Z
    built.apply(PARIS_DAILY)
    yield built
    built.scheduler.store.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("field", ["start", "end", "logical_date"])
def test_a_wall_time_in_a_spring_forward_gap_is_refused_naming_it(field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_moment(GAP, field, PARIS, end=field == "end")
    [problem] = caught.value.problems
    assert problem.path == field
    assert GAP in problem.message
    assert "does not exist in Europe/Paris" in problem.message
    assert "offset" in problem.message  # what to write instead


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # a fall-back's repeated wall time: its first (daylight-time) instance
        (REPEATED, datetime(2025, 10, 26, 0, 30, tzinfo=UTC)),
        # the same wall time with an offset names either instance
        ("2025-03-30T02:30:00+01:00", datetime(2025, 3, 30, 1, 30, tzinfo=UTC)),
        ("2025-10-26T02:30:00+01:00", datetime(2025, 10, 26, 1, 30, tzinfo=UTC)),
        # the day of the change is its first instant, as on any day
        ("2025-03-30", datetime(2025, 3, 29, 23, tzinfo=UTC)),
        ("2025-03-30T03:00:00", datetime(2025, 3, 30, 1, tzinfo=UTC)),
        ("2025-03-30T01:59:59", datetime(2025, 3, 30, 0, 59, 59, tzinfo=UTC)),
    ],
)
def test_wall_times_that_exist_are_read_as_before(given: str, expected: datetime) -> None:
    assert parse_moment(given, "start", PARIS) == expected


def test_a_day_whose_midnight_a_change_skips_is_its_first_instant() -> None:
    # Santiago moves from 00:00 to 01:00 on 2026-09-06: the day starts at 01:00 (-03)
    moment = parse_moment("2026-09-06", "start", ZoneInfo("America/Santiago"))
    assert moment == datetime(2026, 9, 6, 4, tzinfo=UTC)


def test_a_backfill_date_in_a_gap_is_refused_naming_its_place() -> None:
    schedule = Schedule(cron="30 3 * * *", timezone="Europe/Paris")
    with pytest.raises(InvalidInput) as caught:
        backfill_dates(schedule, dates=["2025-03-29T03:30:00", GAP])
    assert [p.path for p in caught.value.problems] == ["dates[1]"]


def test_a_trigger_in_a_gap_is_422_and_makes_no_run(api: Api) -> None:
    before = list(api.changes)
    reply = api.call("POST", "/workflows/paris_daily/runs", {"logical_date": GAP})
    body = assert_error(reply, 422, "invalid_request", "logical_date")
    assert "does not exist in Europe/Paris" in reply.text
    assert [p["path"] for p in body["problems"]] == ["logical_date"]
    assert api.scheduler.store.list_runs(RunQuery()) == []
    assert api.changes == before
