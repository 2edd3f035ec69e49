"""The ``/connections`` routes over the alert table on moto (what the API function serves on
AWS): connections kept as the local server keeps them, next to the alert channels without
touching them; a literal password refused naming the setting with nothing stored; a missing
connection a 404 naming it. A test runs in the project's runner, as the project's role: the
API function asks the advance function (``handlers.check_connection``), which makes the
project's identity ready and invokes its runner (``runner.check_connection``); here each
function is its handler, called in turn with the JSON its invocation would carry."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.athena.models import athena_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.redshiftdata.models import redshiftdata_backends

from stratoflow.adapters.aws import handlers, runner
from stratoflow.adapters.aws.connections import (
    AwsConnectionsApi,
    DynamoConnectionStore,
    sync_invoker,
)
from stratoflow.adapters.aws.projects import PodIdentity, TaskIdentity, project_digest
from stratoflow.adapters.aws.secrets import SecretsManagerSource
from stratoflow.api.app import create_app
from stratoflow.connections import Connection
from tests.aws_alerts.test_alert_function import REGION, Stack
from tests.unit.test_api_app import Api


@pytest.fixture
def api(stack: Stack, tmp_path: Path) -> Api:
    store = DynamoConnectionStore(stack.alerts.table, stack.alerts.client)
    app = create_app(stack.scheduler, connections=AwsConnectionsApi(store, stack.clock))
    return Api(app, stack.scheduler, stack.dispatcher, tmp_path)  # type: ignore[arg-type]


def test_connections_round_trip_beside_the_channels(stack: Stack, api: Api) -> None:
    channels = [c.name for c in stack.alerts.list_channels("default")]
    literal = api.call("PUT", "/connections/wh", {"type": "postgresql", "settings": {
        "url": "postgresql://etl:hunter2@db.example:5432/dw"}})  # fmt: skip
    assert literal.status == 400
    assert "settings.url" in literal.text
    assert "hunter2" not in literal.text
    assert api.call("GET", "/connections").body == {"connections": []}
    body = {"type": "postgresql", "settings": {"url": "postgresql://etl@db.example:5432/dw",
                                               "password": "{{ secrets.wh_pw }}"}}  # fmt: skip
    assert api.call("PUT", "/connections/wh", body).status == 201
    assert api.call("PUT", "/connections/wh", body).status == 200
    lake = {"type": "athena", "settings": {"database": "sales", "workgroup": "etl"}}
    assert api.call("PUT", "/connections/lake", lake).status == 201
    listed = api.call("GET", "/connections").body["connections"]
    assert [(c["name"], c["type"]) for c in listed] == [("lake", "athena"), ("wh", "postgresql")]
    assert api.call("GET", "/connections/wh").body["settings"] == body["settings"]
    # the channels are where they were; the connections are not channels
    assert [c.name for c in stack.alerts.list_channels("default")] == channels
    tested = api.call("POST", "/connections/wh/test")
    assert tested.status == 200
    assert tested.body["ok"] is False
    assert "no advance function" in tested.body["message"]  # this api was given none
    assert api.call("DELETE", "/connections/wh").status == 200
    gone = api.call("GET", "/connections/wh")
    assert gone.status == 404
    assert "connection 'wh' is not defined in project 'default'" in gone.text
    assert api.call("DELETE", "/connections/wh").status == 404
    assert api.call("GET", "/connections", query={"project": "other"}).body == {"connections": []}


def _json(value: Mapping[str, Any]) -> dict[str, Any]:
    """What an invocation carries: the payload as JSON, and back."""
    return dict(json.loads(json.dumps(value)))


class Finishing:
    """moto's Redshift Data API, whose statements never end by themselves: each one
    finishes when it is first described, as a quick SELECT 1 does on Redshift."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def describe_statement(self, **kwargs: Any) -> Any:
        redshiftdata_backends[DEFAULT_ACCOUNT_ID][REGION].statements[
            kwargs["Id"]
        ].status = "FINISHED"
        return self._client.describe_statement(**kwargs)


class Runners:
    """The advance function's project identities and the runner functions they make: one per
    project, named as ``ProjectIdentities`` names it, whose invocation runs the runner's
    handler with its own project (``STRATOFLOW_PROJECT``) and Secrets Manager on moto."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.made: dict[str, str] = {}  # function name -> project
        self.invoked: list[str] = []
        self.secrets = SecretsManagerSource(boto3.client("secretsmanager", region_name=REGION))
        self.redshift = Finishing(boto3.client("redshift-data", region_name=REGION))

    def ensure(self, project: str) -> TaskIdentity:
        name = f"stack-r-{project_digest(project)}"
        self.made[name] = project
        return TaskIdentity(name, None)

    def ensure_pods(self, project: str, namespace: str | None) -> PodIdentity:
        raise AssertionError("a connection test makes no pod identity")

    def invoke(self, function: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        self.invoked.append(function)
        with self.monkeypatch.context() as env:
            env.setenv("STRATOFLOW_PROJECT", self.made[function])
            return runner.handle(_json(payload), lambda: 60.0, s3=None, secrets=self.secrets,
                                 redshift_client=self.redshift)  # fmt: skip

    def advance(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The advance function, invoked by the API function with ``request``."""
        event = _json(request)
        assert event["action"] == handlers.TEST_CONNECTION
        return handlers.check_connection(event, self, self.invoke)


@pytest.fixture
def runners(monkeypatch: pytest.MonkeyPatch) -> Runners:
    return Runners(monkeypatch)


@pytest.fixture
def tested(stack: Stack, runners: Runners, tmp_path: Path) -> Api:
    store = DynamoConnectionStore(stack.alerts.table, stack.alerts.client)
    api = AwsConnectionsApi(store, stack.clock, tester=runners.advance)
    app = create_app(stack.scheduler, connections=api)
    return Api(app, stack.scheduler, stack.dispatcher, tmp_path)  # type: ignore[arg-type]


ARN = f"arn:aws:rds:{REGION}:123456789012:cluster:dw"
DW_SECRET = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:dw-AbCdEf"


def test_athena_redshift_and_aurora_connections_are_tested_by_the_projects_runner(
    tested: Api, runners: Runners
) -> None:
    boto3.client("athena", region_name=REGION).create_work_group(Name="etl")
    for name, type_, settings in (
        ("lake", "athena", {"workgroup": "etl", "database": "raw", "region": REGION,
                            "output_location": "s3://out/q/"}),
        ("wh", "redshift-data", {"database": "dev", "cluster_identifier": "etl",
                                 "region": REGION}),
        ("aurora", "aurora-data-api", {"resource_arn": ARN, "secret_arn": DW_SECRET,
                                       "database": "app", "region": REGION}),
    ):  # fmt: skip
        put = tested.call("PUT", f"/connections/{name}", {"type": type_, "settings": settings})
        assert put.status == 201, put.text
    lake = tested.call("POST", "/connections/lake/test")
    assert (lake.status, lake.body["ok"]) == (200, True), lake.body
    [query] = athena_backends[DEFAULT_ACCOUNT_ID][REGION].executions.values()
    assert (query.query, query.workgroup.name) == ("SELECT 1", "etl")
    assert (
        f"workgroup etl (ENABLED) ran SELECT 1 in database raw (query {query.id})"
        == (lake.body["message"])
    )
    wh = tested.call("POST", "/connections/wh/test")
    assert wh.body["ok"] is True, wh.body
    [statement] = redshiftdata_backends[DEFAULT_ACCOUNT_ID][REGION].statements.values()
    assert (statement.query_string, statement.cluster_identifier) == ("SELECT 1", "etl")
    assert wh.body["message"] == f"ran SELECT 1 on etl, database dev ({statement.id})"
    aurora = tested.call("POST", "/connections/aurora/test")
    assert aurora.body == {"project": "default", "name": "aurora", "ok": True,
                           "message": f"ran SELECT 1 on {ARN} through the Data API"}  # fmt: skip
    # each ran in the project's own runner function, which advance made ready
    runner_of_default = f"stack-r-{project_digest('default')}"
    assert runners.invoked == [runner_of_default] * 3
    assert runners.made == {runner_of_default: "default"}


def test_a_redshift_test_that_fails_says_what_redshift_said(tested: Api, runners: Runners) -> None:
    class Failing(Finishing):
        def describe_statement(self, **kwargs: Any) -> Any:
            redshiftdata_backends[DEFAULT_ACCOUNT_ID][REGION].statements[
                kwargs["Id"]
            ].status = "FAILED"
            # as Redshift says it (moto's answer has no Error)
            answer = self._client.describe_statement(**kwargs)
            return {**answer, "Error": "permission denied for database dev"}

    runners.redshift = Failing(boto3.client("redshift-data", region_name=REGION))
    settings = {"database": "dev", "workgroup_name": "serverless", "region": REGION}
    tested.call("PUT", "/connections/wh", {"type": "redshift-data", "settings": settings})
    got = tested.call("POST", "/connections/wh/test").body
    assert got["ok"] is False
    assert got["message"].startswith("cannot connect: Redshift statement ")
    assert "permission denied for database dev" in got["message"]


def test_a_missing_secret_is_named_and_a_present_one_is_used_and_never_shown(
    stack: Stack, tested: Api
) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/postgres"
    missing = {"type": "postgresql", "settings": {"url": url, "password": "{{ secrets.nopw }}"}}
    assert tested.call("PUT", "/connections/pg", missing).status == 201
    got = tested.call("POST", "/connections/pg/test").body
    assert got["ok"] is False
    assert "nopw" in got["message"]
    # the real PostgreSQL server (trust auth: the password is sent, and not needed)
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="stratoflow/default/pg_pw", SecretString="canary-pg-pw"
    )
    present = {"type": "postgresql", "settings": {"url": url, "password": "{{ secrets.pg_pw }}"}}
    tested.call("PUT", "/connections/pg", present)
    got = tested.call("POST", "/connections/pg/test").body
    assert got["ok"] is True, got
    assert got["message"].startswith("connected and ran SELECT 1")
    # unreachable: what the driver says, masked
    down = {"url": "postgresql://postgres@127.0.0.1:1/postgres", "password": "{{ secrets.pg_pw }}"}
    tested.call("PUT", "/connections/pg", {"type": "postgresql", "settings": down})
    got = tested.call("POST", "/connections/pg/test").body
    assert got["ok"] is False
    assert got["message"].startswith("cannot connect: ")
    assert "canary-pg-pw" not in json.dumps(got)


def test_another_projects_connection_is_not_tested(
    stack: Stack, tested: Api, runners: Runners, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = {"type": "athena", "settings": {"database": "raw", "region": REGION}}
    assert tested.call("PUT", "/connections/lake", lake, query={"project": "other"}).status == 201
    # asked as project default: not one of its connections, and no runner is asked
    got = tested.call("POST", "/connections/lake/test")
    assert got.status == 404
    assert "connection 'lake' is not defined in project 'default'" in got.text
    assert runners.invoked == []
    # a request that reached another project's runner (only advance may invoke one, and it
    # picks the runner of the connection's project) is refused there, nothing resolved
    monkeypatch.setenv("STRATOFLOW_PROJECT", "default")
    request = {"action": "test_connection", "project": "other",
               "connection": {"name": "lake", "type": "athena", "settings": lake["settings"]}}  # fmt: skip
    answer = runner.handle(request, None, s3=None)
    assert answer == {"ok": False, "message": "a connection of project 'other' cannot be tested "
                      "by project 'default''s runner"}  # fmt: skip
    assert not athena_backends[DEFAULT_ACCOUNT_ID][REGION].executions


def test_advance_answers_a_malformed_or_unreachable_test_with_why() -> None:
    class NoRunner:
        def ensure(self, project: str) -> TaskIdentity:
            raise RuntimeError("iam:CreateRole throttled")

        def ensure_pods(self, project: str, namespace: str | None) -> PodIdentity:
            raise AssertionError

    def never(function: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        raise AssertionError("not invoked")

    assert handlers.check_connection({"action": "test_connection"}, NoRunner(), never) == {
        "ok": False, "message": "a connection test names a project and a connection"}  # fmt: skip
    request = {"action": "test_connection", "project": "p", "connection": {"name": "x"}}
    got = handlers.check_connection(request, NoRunner(), never)
    assert got == {"ok": False,
                   "message": "project 'p''s runner is not ready: iam:CreateRole throttled"}  # fmt: skip


def test_the_invocations_are_synchronous_and_a_function_error_is_an_error() -> None:
    class Client:
        def __init__(self, answer: dict[str, Any]) -> None:
            self.answer, self.calls = answer, []  # type: list[dict[str, Any]]

        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            self.calls.append(kwargs)
            return self.answer

    ok = Client({"Payload": io.BytesIO(b'{"ok": true, "message": "fine"}')})
    assert sync_invoker(ok)("stack-advance", {"action": "test_connection"}) == {
        "ok": True, "message": "fine"}  # fmt: skip
    assert ok.calls == [{"FunctionName": "stack-advance",
                         "Payload": b'{"action": "test_connection"}'}]  # fmt: skip
    assert "InvocationType" not in ok.calls[0]  # RequestResponse: the answer comes back
    broken = Client({"FunctionError": "Unhandled", "Payload": io.BytesIO(b'{"errorMessage": "x"}')})
    with pytest.raises(RuntimeError, match=re.escape('Unhandled: {"errorMessage": "x"}')):
        sync_invoker(broken)("stack-advance", {})
    broken = Client({"FunctionError": "Unhandled", "Payload": io.BytesIO(b"Task timed out")})
    tester = partial(sync_invoker(broken), "stack-advance")
    failing = AwsConnectionsApi(None, None, tester=tester)  # type: ignore[arg-type]
    outcome = failing.test(Connection("default", "wh", "athena", {"database": "d"}))
    assert outcome.ok is False
    assert outcome.message == "the test could not be run: Unhandled: Task timed out"
