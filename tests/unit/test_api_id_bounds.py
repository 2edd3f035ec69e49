"""A run id, backfill id, task id or workflow name in a request's path longer than any can be
is refused before any work, naming the parameter and its limit, on both stores alike. On the
DynamoDB store (the AWS API's) each is part of a key, and DynamoDB refuses a key past its limit
(2,048 bytes for a partition key, 1,024 for a sort key) with a ValidationException that nothing
maps, a 500, where SQLite said 404 (moto does not enforce the limit: its store says 404 too,
so what is shown here is the bound, on both). An id at the limit is still looked up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_api_app import ETL, Api, FakeDispatcher, StepClock, assert_error
from tests.unit.test_dynamodb import env as dynamodb_env

from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.api.app import create_app
from stratoflow.api.models import MAX_ID_CHARS, MAX_NAME_CHARS
from stratoflow.service import Scheduler

env = pytest.fixture(dynamodb_env.__wrapped__, name="env")  # the DynamoStore on moto
LIMITS = {
    "run_id": MAX_ID_CHARS, "backfill_id": MAX_ID_CHARS,
    "task_id": MAX_NAME_CHARS, "name": MAX_NAME_CHARS,
}  # fmt: skip


@pytest.fixture(params=["sqlite", "dynamodb"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    if request.param == "sqlite":
        store: Any = SqliteStore(tmp_path / "state.db")
    else:
        store = request.getfixturevalue("env").store
    scheduler = Scheduler(store, store, FakeDispatcher(), StepClock())
    logs = tmp_path / "logs"
    logs.mkdir()
    built = Api(create_app(scheduler), scheduler, FakeDispatcher(), logs)
    built.apply(ETL)
    yield built
    if request.param == "sqlite":
        store.close()


def _operations(api: Api) -> list[tuple[str, str, list[str]]]:
    """(method, path template, its path parameters) of every operation with a bounded one."""
    document = api.call("GET", "/openapi.json").body
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            names = [p["name"] for p in operation.get("parameters") or [] if p["in"] == "path"]
            if set(names) & set(LIMITS):
                found.append((method.upper(), path, names))
    return found


def _fill(path: str, names: list[str], long: str, value: str) -> str:
    for name in names:
        given = value if name == long else ("1" if name in ("version", "attempt") else "x")
        path = path.replace("{" + name + "}", given)
    return path


def test_every_id_in_a_path_is_bounded(api: Api) -> None:
    operations = _operations(api)
    assert len(operations) >= 20, operations
    for method, path, names in operations:
        for name in set(names) & set(LIMITS):
            limit = LIMITS[name]
            # 2,100 ASCII characters: past DynamoDB's partition key limit too
            for value in ("a" * (limit + 1), "a" * 2_100, "é" * (limit + 1)):
                reply = api.call(method, _fill(path, names, name, value), body={})
                body = assert_error(reply, 422, "invalid_request", f"path.{name}")
                assert f"at most {limit} characters" in body["message"], (method, path)


@pytest.mark.parametrize(
    "path",
    [f"/runs/{'a' * MAX_ID_CHARS}", f"/backfills/{'é' * MAX_ID_CHARS}",
     f"/workflows/{'a' * MAX_NAME_CHARS}", f"/runs/x/tasks/{'é' * MAX_NAME_CHARS}"],
)  # fmt: skip
def test_an_id_at_the_limit_is_looked_up(api: Api, path: str) -> None:
    assert_error(api.call("GET", path), 404, "not_found")


def test_the_longest_ids_stratoflow_makes_are_within_the_bound() -> None:
    from datetime import UTC, datetime

    from stratoflow.backfills import backfill_id
    from stratoflow.service import new_run_id, scheduled_run_id

    now = datetime(2026, 1, 1, tzinfo=UTC)
    longest = "x" * 128  # a project's and a workflow's name
    made = [backfill_id(longest, longest, now), scheduled_run_id(longest, longest, now),
            new_run_id(longest, longest, now)]  # fmt: skip
    assert max(len(i) for i in made) <= MAX_ID_CHARS
    # in 4-byte characters, with the key's prefix: within DynamoDB's key limits
    assert len(b"BACKFILL#") + 4 * MAX_ID_CHARS <= 2_048
    assert len(b"T#") + 4 * MAX_NAME_CHARS <= 1_024
