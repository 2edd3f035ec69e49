"""The AWS API's trigger and apply (the real Scheduler and resolver over the DynamoDB store on
moto) behave as the local one's (tests/unit/test_trigger_logical_date.py,
tests/unit/test_dependency_apply.py): a naive logical date is read in the schedule's time zone,
a malformed or future one is a 422 naming ``logical_date`` that makes no run, and a dependency
on a task its existing upstream lacks is refused at apply with no version stored. An
EventBridge firing of a time ahead of the function's clock still makes its run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stratoflow.adapters.aws.firing import fire
from stratoflow.api.app import create_app
from stratoflow.errors import NotFound
from stratoflow.ports import RunQuery
from stratoflow.service import Scheduler
from tests.unit.test_api_app import Api, FakeDispatcher, StepClock, assert_error
from tests.unit.test_dependency_apply import SALES, report
from tests.unit.test_dynamodb import Env
from tests.unit.test_dynamodb import env as dynamodb_env
from tests.unit.test_trigger_logical_date import SHANGHAI

env = pytest.fixture(dynamodb_env.__wrapped__, name="env")  # the DynamoStore on moto


@pytest.fixture
def api(env: Env, tmp_path: Path) -> Api:
    dispatcher = FakeDispatcher()
    scheduler = Scheduler(env.store, env.store, dispatcher, StepClock())  # 2026-03-01T12:00Z
    logs = tmp_path / "logs"
    logs.mkdir()
    built = Api(None, scheduler, dispatcher, logs)
    built.app = create_app(scheduler)
    return built


def test_a_naive_logical_date_is_read_in_the_schedule_zone(api: Api) -> None:
    api.apply(SHANGHAI)
    reply = api.call("POST", "/workflows/tz_daily/runs", {"logical_date": "2026-01-05T06:00:00"})
    assert reply.status == 201, reply.text
    logical = datetime.fromisoformat(reply.body["run"]["logical_date"])
    assert logical == datetime(2026, 1, 4, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "needle"), [("yesterday", "is not a date"), ("2026-03-02", "after now")]
)
def test_a_malformed_or_future_logical_date_is_422_and_makes_no_run(
    api: Api, given: str, needle: str
) -> None:
    api.apply(SHANGHAI)
    reply = api.call("POST", "/workflows/tz_daily/runs", {"logical_date": given})
    body = assert_error(reply, 422, "invalid_request", "logical_date", needle)
    assert [p["path"] for p in body["problems"]] == ["logical_date"]
    assert api.scheduler.store.list_runs(RunQuery()) == []


def test_a_firing_ahead_of_the_clock_is_not_refused(api: Api) -> None:
    api.apply(SHANGHAI)
    ahead = datetime(2026, 3, 1, 22, tzinfo=UTC)  # 06:00 in Shanghai, ten hours from now
    fired = fire(
        api.scheduler,
        {"project": "default", "workflow": "tz_daily", "scheduled_time": "2026-03-01T22:00:00Z"},
    )
    assert fired is not None
    run, created = fired
    assert created
    assert run.logical_date == ahead
    assert run.trigger == "schedule"
    assert run.logical_date - api.scheduler.clock.now() > timedelta(hours=9)


def test_apply_refuses_a_dependency_on_a_missing_upstream_task(api: Api) -> None:
    api.apply(SALES)
    reply = api.call("POST", "/workflows", {"source": report("publsh")})
    assert_error(reply, 400, "invalid_input", "wait_for_sales", "analytics/sales_daily", "'publsh'")
    with pytest.raises(NotFound):
        api.scheduler.catalog.get_version("analytics", "report")
    assert api.call("POST", "/workflows", {"source": report("x", "not_yet")}).status == 201
    assert api.call("POST", "/workflows", {"source": report("publish")}).status == 201
