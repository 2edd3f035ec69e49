"""Run views over the DynamoDB store (the AWS API's): it keeps no run revisions, so a view
is always whole, but its ETag still spares an unchanged poll the body. DynamoStore on moto,
the real Scheduler and resolver, synthetic API Gateway events."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratoflow.api.app import create_app
from stratoflow.service import Scheduler
from tests.unit.test_api_app import ETL, Api, FakeDispatcher, StepClock
from tests.unit.test_dynamodb import Env
from tests.unit.test_dynamodb import env as dynamodb_env

env = pytest.fixture(dynamodb_env.__wrapped__, name="env")  # the DynamoStore on moto


@pytest.fixture
def api(env: Env, tmp_path: Path) -> Api:
    dispatcher = FakeDispatcher()
    scheduler = Scheduler(env.store, env.store, dispatcher, StepClock())
    logs = tmp_path / "logs"
    logs.mkdir()
    built = Api(None, scheduler, dispatcher, logs)
    built.app = create_app(scheduler)
    return built


def test_an_unchanged_run_is_304_and_a_changed_one_whole(api: Api) -> None:
    api.apply(ETL)
    run_id = api.trigger("etl")
    first = api.call("GET", f"/runs/{run_id}")
    assert first.status == 200
    assert first.body["full"] is True
    assert first.body["revision"] is None  # this store numbers no changes
    tag = first.headers["ETag"]

    same = api.call("GET", f"/runs/{run_id}", headers={"If-None-Match": tag})
    assert same.status == 304
    assert same.text == ""

    api.finish(run_id, "extract", outputs={"rows": 42})
    changed = api.call("GET", f"/runs/{run_id}", headers={"If-None-Match": tag})
    assert changed.status == 200
    assert changed.headers["ETag"] != tag
    assert changed.body["tasks"]["extract"]["state"] == "succeeded"
    # a delta is asked for, the whole view comes, and says so
    since = api.call("GET", f"/runs/{run_id}", query={"since": "0"})
    assert since.body["full"] is True
    assert set(since.body["tasks"]) == {
        "extract",
        "transform",
        "load",
    }

    timeline = api.call("GET", f"/runs/{run_id}/timeline")
    assert timeline.status == 200
    again = api.call(
        "GET", f"/runs/{run_id}/timeline", headers={"If-None-Match": timeline.headers["ETag"]}
    )
    assert again.status == 304
