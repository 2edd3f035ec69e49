"""A trigger's logical date, as a user gives it (API ``logical_date``, the CLI's
``--logical-date``): a naive date or date-time is read as a backfill reads its ``start`` (wall
time in the workflow schedule's time zone, UTC without a schedule), a zoned one is that
instant, a malformed one is a 422 naming the field; and a date later than now (beyond a
small clock-skew allowance) is refused, as Airflow refuses one unless
``allow_trigger_in_future``, since such a run could satisfy a dependency window early. The
scheduler's own firings, backfills and sub-workflow child runs are never refused by it.

The API over SQLite here (the DynamoDB store's API: tests/aws_unit/test_trigger_apply_aws.py),
the service on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.stores import STORE_KINDS
from tests.unit.test_api_app import Api, _build, assert_error
from tests.unit.test_subworkflow import CHILD, PARENT, T0, Harness

from stratoflow.engine import AttemptResult, AttemptStatus
from stratoflow.engine import subworkflow as rules
from stratoflow.engine.backfill import parse_moment
from stratoflow.errors import InvalidInput
from stratoflow.ports import RunQuery
from stratoflow.service import Finished

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


# ------------------------------------------------------------------ dates that have not come
@pytest.mark.parametrize(
    "given",
    [
        "2026-03-01T13:00:00Z",  # an hour after now
        "2026-03-02",  # tomorrow, in Shanghai: 2026-03-01T16:00Z
        "2026-03-01T20:02:00",  # Shanghai wall time: 12:02Z, past the allowance
        "2027-01-01T00:00:00+00:00",
    ],
)
def test_a_future_logical_date_is_refused_422_naming_the_field_and_changes_nothing(
    api: Api, given: str
) -> None:
    before = list(api.changes)
    reply = api.call("POST", "/workflows/tz_daily/runs", {"logical_date": given})
    body = assert_error(reply, 422, "invalid_request", "logical_date", "after now")
    assert [p["path"] for p in body["problems"]] == ["logical_date"]
    assert _runs(api) == []
    assert api.changes == before
    # a key makes no difference: nothing is made under it either
    keyed = api.call("POST", "/workflows/tz_daily/runs", {"logical_date": given, "run_id": "k"})
    assert_error(keyed, 422, "invalid_request", "logical_date", "after now")
    assert _runs(api) == []


def test_a_logical_date_within_the_clock_skew_allowance_is_accepted(api: Api) -> None:
    """A client whose clock is a little ahead of the server's (``--logical-date`` of its own
    now) is not refused: up to a minute ahead is accepted."""
    soon = api.call("POST", "/workflows/plain/runs", {"logical_date": "2026-03-01T12:00:30Z"})
    assert _logical(soon) == datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
    now = api.call("POST", "/workflows/plain/runs", {})  # no logical date: now, as before
    assert _logical(now) <= datetime(2026, 3, 1, 12, 1, tzinfo=UTC)


def test_the_allowance_is_a_minute_and_refuses_beyond_it() -> None:
    from stratoflow.engine.triggering import FUTURE_ALLOWANCE, refuse_future_logical_date

    assert timedelta(0) < FUTURE_ALLOWANCE == timedelta(seconds=60)
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    refuse_future_logical_date(now + FUTURE_ALLOWANCE, now)  # at the edge: accepted
    with pytest.raises(InvalidInput) as err:
        refuse_future_logical_date(now + FUTURE_ALLOWANCE + timedelta(microseconds=1), now)
    assert err.value.problems[0].path == "logical_date"
    assert "2026-03-01T12:01:00.000001Z is after now (2026-03-01T12:00:00Z)" in str(err.value)


# ------------------------------------------------------------------ the service, both stores
SCHEDULED_PARENT = PARENT + 'schedule: {cron: "0 6 * * *"}\n'


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with Harness.opened(request.param, tmp_path, CHILD, SCHEDULED_PARENT) as harness:
        yield harness


def test_a_manual_trigger_in_the_service_refuses_a_future_date_and_makes_nothing(
    h: Harness,
) -> None:
    """``stratoflow run`` triggers through the service itself (trigger "manual"), as the API
    does ("api"): the same refusal, before anything is written."""
    later = T0 + timedelta(days=1)
    for trigger in ("manual", "api"):
        with pytest.raises(InvalidInput) as err:
            h.scheduler.trigger("default", "parent", logical_date=later, trigger=trigger)
        assert err.value.problems[0].path == "logical_date"
        assert "after now" in str(err.value)
    assert h.store.list_runs(RunQuery()) == []


def test_firings_backfills_and_child_runs_are_never_refused_a_future_date(h: Harness) -> None:
    """The schedule's firing of a time ahead of this clock (an EventBridge firing read by a
    clock a little behind), a backfill's run and a sub-workflow's child run (which takes its
    parent's logical date) are made whatever their logical date."""
    ahead = T0 + timedelta(hours=6)
    latest = h.scheduler.catalog.get_version("default", "parent")
    ((fired, created),) = h.scheduler.fire(latest, [ahead], None, ahead)
    assert created
    assert fired.logical_date == ahead
    assert fired.trigger == "schedule"
    # its sub-workflow task starts the child run, with the parent's logical date
    h.scheduler.step()
    h.dispatcher.pending.clear()
    h.scheduler.on_finished(
        [Finished(fired.id, "prepare", 1, AttemptResult(AttemptStatus.SUCCEEDED))]
    )
    h.scheduler.step()
    child = h.store.get_run(rules.child_run_id(fired.id, "child", ("default", "load_region")))
    assert child.logical_date == ahead
    assert child.trigger == "workflow"
    assert h.store.get_task(fired.id, "child").state.value == "running"
    # a backfill's run (a backfill refuses dates after now itself, before it makes a run)
    made, created = h.scheduler.trigger(
        "default", "load_region", logical_date=ahead, run_id="bf", trigger="backfill"
    )
    assert created
    assert made.logical_date == ahead
