"""Applying a workflow whose ``dependency`` task names a ``task:`` of another workflow: when
that upstream workflow exists in its project and has no such task, the apply is refused,
naming the dependency, the upstream workflow and the missing task, and nothing is stored (it
used to be accepted and fail at run time: ``run ... has no task ...``). An upstream workflow
that does not exist yet is still accepted (it may be applied later; the task fails at run
time if it is not), as before.

The API over SQLite, and the service on both stores (SQLite, DynamoDB on moto); the AWS
API: tests/aws_unit/test_trigger_apply_aws.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store
from tests.unit.test_api_app import Api, _build, assert_error

from stratoflow.adapters.aws.dynamodb import DynamoStore
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.errors import InvalidInput, NotFound
from stratoflow.ports import RunQuery
from stratoflow.service import Scheduler

SALES = """\
name: sales_daily
project: analytics
tasks:
  extract: {type: shell, command: echo extract}
  publish: {type: shell, depends_on: [extract], command: echo publish}
"""


def report(task: str, workflow: str = "sales_daily", *, name: str = "report") -> str:
    return f"""\
name: {name}
project: analytics
tasks:
  prepare: {{type: shell, command: echo prepare}}
  wait_for_sales:
    type: dependency
    all:
      - {{workflow: {workflow}, date: today}}
      - {{workflow: {workflow}, task: {task}, date: today}}
  load: {{type: shell, depends_on: [wait_for_sales], command: echo load}}
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = _build(tmp_path)
    built.apply(SALES)
    yield built
    built.scheduler.store.close()  # type: ignore[attr-defined]


def _versions(api: Api, project: str, name: str) -> int:
    try:
        return len(api.scheduler.catalog.list_versions(project, name))
    except NotFound:
        return 0


def test_apply_refuses_a_dependency_on_a_task_the_upstream_does_not_have(api: Api) -> None:
    before = list(api.changes)
    reply = api.call("POST", "/workflows", {"source": report("publsh")})
    body = assert_error(
        reply, 400, "invalid_input",
        "wait_for_sales", "analytics/sales_daily", "'publsh'", "extract, publish",
    )  # fmt: skip
    assert [p["path"] for p in body["problems"]] == ["tasks.wait_for_sales.all.1.task"]
    # nothing stored: no version, no audit of a change, no run possible
    assert _versions(api, "analytics", "report") == 0
    assert api.call("GET", "/workflows/report", query={"project": "analytics"}).status == 404
    assert api.changes == before
    assert api.scheduler.store.list_runs(RunQuery()) == []
    # the same workflow naming a task the upstream has is applied
    assert api.call("POST", "/workflows", {"source": report("publish")}).status == 201


def test_a_new_version_with_a_missing_upstream_task_is_refused_and_the_old_one_kept(
    api: Api,
) -> None:
    api.apply(report("publish"))
    reply = api.call("POST", "/workflows", {"source": report("nope")})
    assert_error(reply, 400, "invalid_input", "'nope'", "analytics/sales_daily")
    assert _versions(api, "analytics", "report") == 1


def test_an_upstream_that_does_not_exist_yet_is_accepted_as_before(api: Api) -> None:
    """It may be applied later (the dependency task fails at once at run time if it is
    still missing then); its tasks cannot be checked now."""
    reply = api.call("POST", "/workflows", {"source": report("anything", "not_yet")})
    assert reply.status == 201, reply.text
    # once it exists, a new version is checked against it
    api.apply(SALES.replace("sales_daily", "not_yet"))
    refused = api.call("POST", "/workflows", {"source": report("other", "not_yet")})
    assert_error(refused, 400, "invalid_input", "analytics/not_yet", "'other'")


def test_another_projects_upstream_is_checked_in_that_project(api: Api) -> None:
    text = report("publsh", "analytics/sales_daily").replace("project: analytics", "project: ops")
    reply = api.call("POST", "/workflows", {"source": text})
    assert_error(reply, 400, "invalid_input", "analytics/sales_daily", "'publsh'")
    assert _versions(api, "ops", "report") == 0
    # the same name in another project is another workflow: one that does not exist here
    elsewhere = report("publsh", "ops/sales_daily").replace("project: analytics", "project: ops")
    assert api.call("POST", "/workflows", {"source": elsewhere}).status == 201


def test_a_dependency_on_its_own_workflow_is_checked_against_the_version_applied(
    api: Api,
) -> None:
    """``{workflow: report, task: load}`` in ``report`` itself: the tasks it will have are
    those of the version being applied (its first version included)."""
    own = report("load", "report")
    assert api.call("POST", "/workflows", {"source": own}).status == 201
    renamed = own.replace("  load: {", "  store: {")
    reply = api.call("POST", "/workflows", {"source": renamed})
    assert_error(reply, 400, "invalid_input", "analytics/report", "'load'", "prepare, store")
    assert _versions(api, "analytics", "report") == 1


# ------------------------------------------------------------------ the service, both stores
@pytest.fixture(params=STORE_KINDS)
def scheduler(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Scheduler]:
    clock = FakeClock(datetime(2026, 6, 1, tzinfo=UTC))
    store: SqliteStore | DynamoStore
    with state_store(request.param, tmp_path) as store:
        yield Scheduler(store, store, RecordingDispatcher(), clock)


def test_the_service_refuses_it_on_either_store(scheduler: Scheduler) -> None:
    scheduler.apply(SALES)
    with pytest.raises(InvalidInput) as err:
        scheduler.apply(report("publsh"))
    (problem,) = err.value.problems
    assert problem.path == "tasks.wait_for_sales.all.1.task"
    assert "analytics/sales_daily" in problem.message
    assert "'publsh'" in problem.message
    with pytest.raises(NotFound):
        scheduler.catalog.get_version("analytics", "report")
    assert scheduler.apply(report("anything", "not_yet"))[1]  # unknown upstream: accepted
    assert scheduler.apply(report("publish"))[1]
