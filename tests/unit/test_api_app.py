"""The REST resolver, called directly with synthetic API Gateway (REST v1) events: every
route, every error class, and the OpenAPI document. No sockets, no subprocesses: a fake
dispatcher records what would run and the tests report how attempts end."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import text_logs

from stratoflow.adapters.local.secrets import LocalSecrets
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.api.app import MAX_LOG_CHUNK, ReadLog, create_app, read_log_file
from stratoflow.engine import (
    MAX_PARAM_DEPTH,
    MAX_PARAMS_BYTES,
    AttemptResult,
    AttemptStatus,
    TaskInstance,
)
from stratoflow.ports import Attempt, AttemptSpec, Clock, Dispatcher, LogRange, Recovery
from stratoflow.service import Finished, Scheduler

ETL = """\
name: etl
description: three steps
params: {region: eu}
tasks:
  extract:
    type: shell
    command: echo "rows=42" >> "$STRATOFLOW_OUTPUT"
  transform:
    type: shell
    depends_on: [extract]
    command: echo transform {{ params.region }}
  load:
    type: shell
    depends_on: [transform]
    command: echo load
"""

CYCLE = """\
name: loop
tasks:
  first: {type: shell, command: echo 1, depends_on: [second]}
  second: {type: shell, command: echo 2, depends_on: [first]}
"""


class FakeDispatcher(Dispatcher):
    def __init__(self) -> None:
        self.dispatched: list[AttemptSpec] = []
        self.killed: list[tuple[str, str, int]] = []

    def dispatch(self, spec: AttemptSpec) -> str | None:
        self.dispatched.append(spec)
        return None

    def kill(self, run_id: str, task_id: str, attempt: int) -> None:
        self.killed.append((run_id, task_id, attempt))

    def recover(self, running: Any) -> Recovery:
        return Recovery()


class StepClock(Clock):
    def __init__(self) -> None:
        self.time = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        self.time += timedelta(milliseconds=10)
        return self.time


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def body(self) -> Any:
        assert self.headers["Content-Type"].startswith("application/json"), self.headers
        return json.loads(self.text)


@dataclass
class Api:
    app: Any
    scheduler: Scheduler
    dispatcher: FakeDispatcher
    logs: Path
    changes: list[int] = field(default_factory=list)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        raw: str | None = None,
        headers: dict[str, str] | None = None,
        base64_body: bool = False,
    ) -> Reply:
        text = raw if raw is not None else (None if body is None else json.dumps(body))
        hdrs = {"Content-Type": "application/json"} if headers is None else headers
        event = {
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": hdrs,
            "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
            "queryStringParameters": query,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()}
            if query
            else None,
            "pathParameters": {"proxy": path.lstrip("/")},
            "stageVariables": None,
            "body": text,
            "isBase64Encoded": base64_body,
            "requestContext": {"stage": "test", "requestId": "req-1", "path": path},
        }
        response = self.app.resolve(event, None)
        merged = {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}
        merged.update(response.get("headers") or {})
        raw_body = response.get("body") or ""
        if response.get("isBase64Encoded"):
            raw_body = base64.b64decode(raw_body).decode()
        return Reply(response["statusCode"], merged, raw_body)

    # driving runs without processes
    def apply(self, source: str = ETL) -> dict[str, Any]:
        reply = self.call("POST", "/workflows", {"source": source})
        assert reply.status in (200, 201), reply.text
        return reply.body  # type: ignore[no-any-return]

    def trigger(self, name: str = "etl", **body: Any) -> str:
        reply = self.call("POST", f"/workflows/{name}/runs", body)
        assert reply.status == 201, reply.text
        return reply.body["run"]["id"]  # type: ignore[no-any-return]

    def task(self, run_id: str, task_id: str) -> TaskInstance:
        return self.scheduler.store.get_task(run_id, task_id)

    def finish(
        self,
        run_id: str,
        task_id: str,
        status: AttemptStatus = AttemptStatus.SUCCEEDED,
        outputs: dict[str, Any] | None = None,
        log: str | None = "",
    ) -> None:
        """Dispatch what is ready, then report how ``task_id``'s running attempt ended."""
        self.scheduler.dispatch_ready()
        task = self.task(run_id, task_id)
        assert task.state.value == "running", (task_id, task.state)
        path = None
        if log is not None:
            file = self.logs / f"{run_id}.{task_id}.{task.attempt}.log"
            file.write_text(log, encoding="utf-8")
            path = str(file)
        result = AttemptResult(
            status,
            outputs or {},
            error=None if status is AttemptStatus.SUCCEEDED else "exit code 1",
            exit_code=0 if status is AttemptStatus.SUCCEEDED else 1,
        )
        self.scheduler.on_finished([Finished(run_id, task_id, task.attempt, result, path)])


def _build(tmp_path: Path, read_log: ReadLog | None = None, **extra: Any) -> Api:
    store = SqliteStore(tmp_path / "state.db")
    dispatcher = FakeDispatcher()
    scheduler = Scheduler(store, store, dispatcher, StepClock())
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    api = Api(None, scheduler, dispatcher, logs)
    api.app = create_app(
        scheduler, on_change=lambda: api.changes.append(1), read_log=read_log, **extra
    )
    return api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = _build(tmp_path)
    yield built
    built.scheduler.store.close()  # type: ignore[attr-defined]


def assert_error(reply: Reply, status: int, error: str, *needles: str) -> dict[str, Any]:
    assert reply.status == status, reply.text
    body = reply.body
    assert body["error"] == error
    assert isinstance(body["message"], str)
    assert body["message"]
    for needle in needles:
        assert needle in body["message"], (needle, body["message"])
    assert "Traceback" not in reply.text
    return body  # type: ignore[no-any-return]


# ------------------------------------------------------------------ meta
def test_health(api: Api) -> None:
    reply = api.call("GET", "/health")
    assert reply.status == 200
    assert reply.body == {"status": "ok"}


EXPECTED_OPERATIONS = {
    ("get", "/health"),
    ("get", "/openapi.json"),
    ("get", "/schema/workflow.json"),
    ("get", "/audit"),
    ("post", "/workflows"),
    ("get", "/workflows"),
    ("get", "/workflows/{name}"),
    ("get", "/workflows/{name}/versions"),
    ("get", "/workflows/{name}/versions/{version}"),
    ("post", "/workflows/{name}/pause"),
    ("post", "/workflows/{name}/unpause"),
    ("post", "/workflows/{name}/runs"),
    ("get", "/runs"),
    ("get", "/runs/{run_id}"),
    ("get", "/runs/{run_id}/tasks/{task_id}"),
    ("get", "/runs/{run_id}/tasks/{task_id}/attempts/{attempt}/log"),
    ("get", "/runs/{run_id}/tasks/{task_id}/outputs/{key}"),
    ("post", "/runs/{run_id}/pause"),
    ("post", "/runs/{run_id}/resume"),
    ("post", "/runs/{run_id}/stop"),
    ("post", "/runs/{run_id}/rerun"),
    ("post", "/runs/{run_id}/tasks/{task_id}/mark"),
    # added for the web UI (tests in test_api_ui.py)
    ("get", "/me"),
    ("get", "/workflows/{name}/diff"),
    ("get", "/runs/{run_id}/timeline"),
    # backfills (tests in test_backfill_service.py)
    ("post", "/workflows/{name}/backfills"),
    ("get", "/backfills"),
    ("get", "/backfills/{backfill_id}"),
    ("post", "/backfills/{backfill_id}/pause"),
    ("post", "/backfills/{backfill_id}/resume"),
    ("post", "/backfills/{backfill_id}/cancel"),
    # the graph's layout, once per version (tests in test_api_layout.py)
    ("get", "/runs/{run_id}/layout"),
    ("get", "/workflows/{name}/versions/{version}/layout"),
    ("put", "/workflows/{name}/versions/{version}/layout"),
    # a run page's first paint: the task states alone (tests in test_api_run_states.py)
    ("get", "/runs/{run_id}/states"),
    # pools, on a store that has them (tests in test_api_pools.py)
    ("get", "/pools"),
    ("get", "/pools/{name}"),
    ("put", "/pools/{name}"),
    ("delete", "/pools/{name}"),
    ("post", "/runs/{run_id}/tasks/{task_id}/force-start"),
    # variables, on a store that has them (tests in test_api_variables.py)
    ("get", "/variables"),
    ("get", "/variables/{name}"),
    ("put", "/variables/{name}"),
    ("delete", "/variables/{name}"),
}


def test_openapi_document_lists_every_route_and_our_error_shape(api: Api) -> None:
    reply = api.call("GET", "/openapi.json")
    assert reply.status == 200
    doc = reply.body
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "Stratoflow"
    operations = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert operations == EXPECTED_OPERATIONS
    schemas = doc["components"]["schemas"]
    assert {"ApplyRequest", "TriggerRequest", "RerunRequest", "MarkRequest", "ErrorView"} <= set(
        schemas
    )
    assert "ResponseValidationError" not in schemas
    error_ref = {"$ref": "#/components/schemas/ErrorView"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            assert "200" in responses, (method, path)
            assert responses["422"]["content"]["application/json"]["schema"] == error_ref
            assert responses["500"]["content"]["application/json"]["schema"] == error_ref
    runs_post = doc["paths"]["/workflows/{name}/runs"]["post"]
    assert runs_post["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RunDetail"
    }
    assert set(runs_post["responses"]) >= {"200", "201", "400", "404", "422"}
    log_op = doc["paths"]["/runs/{run_id}/tasks/{task_id}/attempts/{attempt}/log"]["get"]
    assert "text/plain" in log_op["responses"]["200"]["content"]
    assert "from" in schemas["RerunRequest"]["properties"]
    assert schemas["MarkRequest"]["properties"]["state"]["enum"] == [
        "succeeded", "skipped", "failed",
    ]  # fmt: skip
    list_params = {p["name"] for p in doc["paths"]["/runs"]["get"]["parameters"]}
    assert list_params == {
        "project",
        "workflow",
        "state",
        "limit",
        "before",
        "logical_from",
        "logical_to",
    }


def test_unknown_route_is_a_json_404(api: Api) -> None:
    assert_error(api.call("GET", "/nothing/here"), 404, "not_found", "GET /nothing/here")
    assert_error(api.call("DELETE", "/runs"), 404, "not_found", "DELETE /runs")


# ------------------------------------------------------------------ workflows
def test_apply_creates_a_version_then_is_idempotent(api: Api) -> None:
    first = api.call("POST", "/workflows", {"source": ETL})
    assert first.status == 201
    body = first.body
    assert body["created"] is True
    assert (body["project"], body["name"], body["version"]) == ("default", "etl", 1)
    assert body["source"] == ETL
    assert body["document"]["params"] == {"region": "eu"}
    assert body["tasks"] == 3
    assert body["description"] == "three steps"
    assert api.changes == [1]

    again = api.call("POST", "/workflows", {"source": ETL})
    assert again.status == 200
    assert again.body["created"] is False
    assert again.body["version"] == 1

    changed = api.call("POST", "/workflows", {"source": ETL.replace("three steps", "3 steps")})
    assert changed.status == 201
    assert changed.body["version"] == 2


def test_apply_a_cycle_is_400_naming_the_tasks_and_stores_nothing(api: Api) -> None:
    body = assert_error(api.call("POST", "/workflows", {"source": CYCLE}), 400, "invalid_input")
    assert "first" in body["message"]
    assert "second" in body["message"]
    assert "cycle" in body["message"]
    assert body["problems"], body
    problem = body["problems"][0]
    assert problem["path"].startswith("tasks.")
    assert "first" in problem["message"]
    assert "second" in problem["message"]
    assert isinstance(problem["line"], int)
    assert api.call("GET", "/workflows").body == {"workflows": [], "next": None}
    assert api.changes == []


def test_apply_invalid_fields_name_each_field(api: Api) -> None:
    source = "name: Bad Name\ntasks:\n  a: {type: shell}\n"
    body = assert_error(api.call("POST", "/workflows", {"source": source}), 400, "invalid_input")
    paths = {p["path"] for p in body["problems"]}
    assert "name" in paths
    assert any(p.startswith("tasks.a") for p in paths), paths


def test_apply_names_a_filter_that_does_not_exist(api: Api) -> None:
    """It was a 500: Jinja's error escaped validation's scoping pass."""
    source = "name: uf\ntasks:\n  a: {type: shell, command: 'echo {{ x | ds_nodash }}'}\n"
    body = assert_error(api.call("POST", "/workflows", {"source": source}), 400, "invalid_input")
    assert "the filter 'ds_nodash'" in body["message"]


@pytest.mark.parametrize(
    ("body", "raw", "field_path"),
    [
        ({}, None, "body.source"),
        ({"source": 12}, None, "body.source"),
        ({"source": ""}, None, "body.source"),
        ({"source": ETL, "sorce": ETL}, None, "body.sorce"),
        (None, None, "body"),
        (None, "{not json", "body"),
        (None, "[1, 2]", "body"),
        (None, '{"source": NaN}', "body"),
        (None, "[" * 50_000 + "]" * 50_000, "body"),
    ],
)
def test_apply_malformed_request_is_422_naming_the_field(
    api: Api, body: Any, raw: str | None, field_path: str
) -> None:
    reply = api.call("POST", "/workflows", body, raw=raw)
    error = assert_error(reply, 422, "invalid_request", field_path)
    assert field_path in {p["path"] for p in error["problems"]}
    assert api.changes == []


@pytest.mark.parametrize("sign", ["", "-"])
def test_an_integer_too_long_to_read_is_422_in_the_caller_s_words(api: Api, sign: str) -> None:
    """Its error told the caller to call ``sys.set_int_max_str_digits()`` on a server they
    do not run."""
    api.apply()
    raw = '{"params": {"region": ' + sign + "9" * 5000 + "}}"
    error = assert_error(api.call("POST", "/workflows/etl/runs", raw=raw), 422, "invalid_request")
    assert "an integer of 5000 digits (at most 4300)" in error["message"], error["message"]
    assert "sys." not in error["message"]
    assert api.call("GET", "/runs").body["runs"] == []
    longest = '{"params": {"region": ' + sign + "9" * 4300 + "}}"
    assert api.call("POST", "/workflows/etl/runs", raw=longest).status != 422


def test_integers_are_read_when_python_reads_integers_of_any_length(api: Api) -> None:
    """A server run with the digit limit off (``PYTHONINTMAXSTRDIGITS=0``, or
    ``sys.set_int_max_str_digits(0)``: 0 means no limit) still reads every integer: the
    limit's check must not read 0 as "at most 0 digits" and refuse a body's every number."""
    api.apply()
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # as PYTHONINTMAXSTRDIGITS=0 does
    try:
        raw = '{"params": {"region": 7}, "run_id": "r-any-length"}'
        created = api.call("POST", "/workflows/etl/runs", raw=raw)
    finally:
        sys.set_int_max_str_digits(limit)
    assert created.status in (200, 201, 202), created.body


def test_request_errors_never_echo_the_input(api: Api) -> None:
    api.apply()
    secret = "hunter2-do-not-echo"
    reply = api.call("POST", "/workflows/etl/runs", {"params": secret})
    assert_error(reply, 422, "invalid_request", "body.params")
    assert secret not in reply.text
    reply = api.call("POST", "/workflows/etl/runs", {"run_id": secret + "/x"})
    assert_error(reply, 422, "invalid_request", "body.run_id")
    assert secret not in reply.text


def test_non_json_content_type_is_415(api: Api) -> None:
    reply = api.call("POST", "/workflows", raw="name: x", headers={"Content-Type": "text/yaml"})
    assert_error(reply, 415, "unsupported_media_type", "application/json")


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ("notjson", FORM),  # curl -d notjson
        (ETL, FORM),  # curl --data-binary @etl.yaml: curl's default content type
        ("source=" + ETL.replace("\n", "%0A"), FORM),  # a form with a source field
        (
            "--b\r\nContent-Disposition: form-data; name=source\r\n\r\nname: x\r\n--b--\r\n",
            {"Content-Type": "multipart/form-data; boundary=b"},
        ),
    ],
)
def test_a_form_posted_to_workflows_is_415_saying_what_the_body_must_be(
    api: Api, body: str, headers: dict[str, str]
) -> None:
    """Powertools parses a form-encoded (or multipart) body into fields, so a form POST
    /workflows answered 422 "body.notjson: Extra inputs are not permitted" (or a field named
    after a line of the YAML): a form is not what the route reads. It is a 415 saying the body
    is JSON {"source": <the workflow's YAML>} and naming the content type sent; nothing is
    stored, and no line of the body is echoed."""
    reply = api.call("POST", "/workflows", raw=body, headers=headers)
    sent = headers["Content-Type"].split(";")[0]
    found = assert_error(
        reply, 415, "unsupported_media_type", '{"source": ', "Content-Type: application/json", sent
    )
    assert found["problems"] == []
    assert "notjson" not in reply.text
    assert "tasks" not in reply.text
    assert api.call("GET", "/workflows").body["workflows"] == []
    assert api.changes == []


@pytest.mark.parametrize("headers", [{"Content-Type": "application/json"}, {}])
def test_raw_yaml_posted_to_workflows_says_the_yaml_goes_in_source(
    api: Api, headers: dict[str, str]
) -> None:
    """The YAML file sent as the body (as JSON, or with no content type) was "body: the body
    is not valid JSON (Expecting value)": it says where the YAML goes."""
    reply = api.call("POST", "/workflows", raw=ETL, headers=headers)
    body = assert_error(reply, 422, "invalid_request", "not valid JSON", '{"source": ')
    assert body["problems"][0]["path"] == "body"
    assert api.changes == []


def test_a_form_to_any_json_route_is_415(api: Api) -> None:
    api.apply()
    reply = api.call("POST", "/workflows/etl/runs", raw="params=1", headers=FORM)
    assert_error(
        reply, 415, "unsupported_media_type", "Content-Type: application/json", FORM["Content-Type"]
    )
    assert api.call("GET", "/runs").body["runs"] == []


def test_an_empty_form_body_is_no_body(api: Api) -> None:
    """`curl -X POST .../runs -d ''` sends an empty form: there is nothing in it to misread,
    so a trigger goes on as with no body at all."""
    api.apply()
    reply = api.call("POST", "/workflows/etl/runs", raw="", headers=FORM)
    assert reply.status == 201, reply.text


def test_body_that_is_not_utf8_is_422(api: Api) -> None:
    raw = base64.b64encode(b"\xff\xfe{").decode()
    reply = api.call("POST", "/workflows", raw=raw, base64_body=True)
    assert_error(reply, 422, "invalid_request", "UTF-8")


def test_list_and_get_workflows(api: Api) -> None:
    api.apply()
    api.apply(ETL.replace("three steps", "v2"))
    api.apply(ETL.replace("name: etl", "name: other\nproject: team"))

    listed = api.call("GET", "/workflows").body["workflows"]
    assert [(w["name"], w["version"]) for w in listed] == [("etl", 2)]
    assert "source" not in listed[0]
    team = api.call("GET", "/workflows", query={"project": "team"}).body["workflows"]
    assert [(w["project"], w["name"]) for w in team] == [("team", "other")]

    latest = api.call("GET", "/workflows/etl")
    assert latest.status == 200
    assert latest.body["version"] == 2
    assert latest.body["description"] == "v2"
    assert latest.body["source"].startswith("name: etl")

    versions = api.call("GET", "/workflows/etl/versions").body["versions"]
    assert [v["version"] for v in versions] == [2, 1]

    one = api.call("GET", "/workflows/etl/versions/1")
    assert one.status == 200
    assert one.body["description"] == "three steps"

    assert_error(api.call("GET", "/workflows/nope"), 404, "not_found", "nope")
    assert_error(api.call("GET", "/workflows/other"), 404, "not_found", "other")  # other project
    assert_error(api.call("GET", "/workflows/nope/versions"), 404, "not_found", "nope")
    assert_error(api.call("GET", "/workflows/etl/versions/9"), 404, "not_found", "9")
    assert_error(
        api.call("GET", "/workflows/etl/versions/abc"), 422, "invalid_request", "path.version"
    )
    assert_error(
        api.call("GET", "/workflows/etl/versions/99999999999999999999"),
        422,
        "invalid_request",
        "path.version",
    )


def test_pause_and_unpause_a_workflow_schedule(api: Api) -> None:
    api.apply()
    paused = api.call("POST", "/workflows/etl/pause")
    assert paused.status == 200
    assert paused.body["paused"] is True
    assert api.call("GET", "/workflows/etl").body["paused"] is True
    unpaused = api.call("POST", "/workflows/etl/unpause")
    assert unpaused.body["paused"] is False
    assert api.call("GET", "/workflows").body["workflows"][0]["paused"] is False
    assert len(api.changes) == 3  # apply, pause, unpause
    assert_error(api.call("POST", "/workflows/nope/pause"), 404, "not_found", "nope")


# ------------------------------------------------------------------ trigger
def test_trigger_returns_the_run_with_tasks_in_workflow_order(api: Api) -> None:
    api.apply()
    reply = api.call(
        "POST",
        "/workflows/etl/runs",
        {"params": {"region": "us"}, "logical_date": "2026-01-02T03:04:05+08:00"},
    )
    assert reply.status == 201
    run = reply.body["run"]
    assert run["workflow"] == "etl"
    assert run["state"] == "running"
    assert run["trigger"] == "api"
    assert run["params"] == {"region": "us"}
    assert datetime.fromisoformat(run["logical_date"]) == datetime(2026, 1, 1, 19, 4, 5, tzinfo=UTC)
    assert list(reply.body["tasks"]) == ["extract", "transform", "load"]
    assert reply.body["tasks"]["extract"]["state"] == "queued"
    assert reply.body["tasks"]["load"]["state"] == "waiting"
    assert api.changes == [1, 1]


def test_trigger_with_a_run_id_is_idempotent(api: Api) -> None:
    api.apply()
    first = api.call("POST", "/workflows/etl/runs", {"run_id": "etl-manual-1"})
    assert first.status == 201
    again = api.call("POST", "/workflows/etl/runs", {"run_id": "etl-manual-1"})
    assert again.status == 200
    assert again.body["run"]["id"] == "default.etl.etl-manual-1"
    assert len(api.call("GET", "/runs").body["runs"]) == 1


def test_a_run_id_returns_its_run_only_to_the_same_request(api: Api) -> None:
    """An idempotency key repeated with other params or another logical date is a 409 that
    names the run and what differs, and changes nothing; the same request (or one that asks
    for the same values) gets the run back."""
    api.apply()
    body = {"run_id": "k1", "params": {"region": "us"}, "logical_date": "2026-01-02T00:00:00Z"}
    assert api.call("POST", "/workflows/etl/runs", body).status == 201
    assert api.call("POST", "/workflows/etl/runs", body).status == 200
    same_instant = {**body, "logical_date": "2026-01-02T08:00:00+08:00"}
    assert api.call("POST", "/workflows/etl/runs", same_instant).status == 200
    changes = list(api.changes)

    differing = [
        ({**body, "params": {"region": "ap"}}, ["params.region"]),
        ({**body, "params": {}}, ["params.region"]),  # the default, not the run's "us"
        ({**body, "logical_date": "2026-01-03T00:00:00Z"}, ["logical_date"]),
        ({"run_id": "k1", "params": {"region": "us"}}, ["logical_date"]),  # now, not the run's
        ({"run_id": "k1"}, ["params.region, logical_date"]),
    ]
    for request, named in differing:
        assert_error(
            api.call("POST", "/workflows/etl/runs", request),
            409, "conflict", "'default.etl.k1'", *named,
        )  # fmt: skip
    run = api.call("GET", "/runs/default.etl.k1").body["run"]
    assert run["params"] == {"region": "us"}
    assert datetime.fromisoformat(run["logical_date"]) == datetime(2026, 1, 2, tzinfo=UTC)
    assert len(api.call("GET", "/runs").body["runs"]) == 1
    assert api.changes == changes  # nothing was changed


def test_a_run_id_compares_the_values_the_request_asks_for(api: Api) -> None:
    """Without a logical date a request asks for the trigger's time: a repeat without one is
    the same request. Params compare as the values they give over the defaults of the run's
    version (not of a version applied since), and as JSON: 1 is not true, nor 1.0; text
    given for a typed param is read as the run's was (``-p n=1`` is 1, a retry of it the
    same request)."""
    api.apply(ETL.replace("params: {region: eu}", "params: {region: eu, n: 1}"))
    assert api.call("POST", "/workflows/etl/runs", {"run_id": "k2"}).status == 201
    assert api.call("POST", "/workflows/etl/runs", {"run_id": "k2"}).status == 200
    spelled_out = {"run_id": "k2", "params": {"region": "eu", "n": 1}}
    assert api.call("POST", "/workflows/etl/runs", spelled_out).status == 200
    api.apply(ETL.replace("params: {region: eu}", "params: {region: us, n: 1}"))  # v2
    assert api.call("POST", "/workflows/etl/runs", {"run_id": "k2"}).status == 200
    assert (
        api.call("POST", "/workflows/etl/runs", {"run_id": "k2", "params": {"n": "1"}}).status
        == 200
    )
    for other in ("2", True, 1.5):
        assert_error(
            api.call("POST", "/workflows/etl/runs", {"run_id": "k2", "params": {"n": other}}),
            409, "conflict", "params.n",
        )  # fmt: skip
    typed = {"run_id": "k3", "params": {"n": "5"}}
    assert api.call("POST", "/workflows/etl/runs", typed).status == 201
    assert api.call("POST", "/workflows/etl/runs", typed).status == 200  # a retry, as sent
    assert (
        api.call("POST", "/workflows/etl/runs", {"run_id": "k3", "params": {"n": 5}}).status == 200
    )


def test_trigger_without_a_body_uses_the_defaults(api: Api) -> None:
    api.apply()
    reply = api.call("POST", "/workflows/etl/runs")
    assert reply.status == 201
    assert reply.body["run"]["params"] == {"region": "eu"}


def test_trigger_errors(api: Api) -> None:
    api.apply()
    body = assert_error(
        api.call("POST", "/workflows/etl/runs", {"params": {"regoin": "us"}}),
        400,
        "invalid_input",
        "regoin",
    )
    assert body["problems"][0]["path"] == "params.regoin"
    assert "region" in body["problems"][0]["message"]  # names the declared params
    # a naive logical date is read in the schedule's zone (tests/unit/test_trigger_logical_date.py);
    # one that is not a date, or has not come, is a 422 naming the field
    assert_error(
        api.call("POST", "/workflows/etl/runs", {"logical_date": "2027-01-01T00:00:00"}),
        422,
        "invalid_request",
        "logical_date",
        "after now",
    )
    assert_error(
        api.call("POST", "/workflows/etl/runs", {"logical_date": "yesterday"}),
        422,
        "invalid_request",
        "logical_date",
        "is not a date",
    )
    assert_error(api.call("POST", "/workflows/nope/runs", {}), 404, "not_found", "nope")
    assert api.call("GET", "/runs").body["runs"] == []
    assert api.changes == [1]  # only the apply


def test_an_error_reply_lists_the_first_problems_and_counts_the_rest(api: Api) -> None:
    """300,000 unknown params in 5.4 MB were answered with a 51.7 MB 400: each problem in
    ``message`` and again in ``problems``. The reply lists the first 100 and counts the rest."""
    api.apply()
    params = {f"unknown_{i}": 1 for i in range(3000)}
    reply = api.call("POST", "/workflows/etl/runs", {"params": params})
    body = assert_error(reply, 400, "invalid_input", "3,000 problems", "and 2,900 more")
    assert len(body["problems"]) == 100
    assert body["problems"][0]["path"] == "params.unknown_0"
    assert reply.text.count("unknown parameter") == 200  # the same 100 in each
    assert len(reply.text) < 40_000
    assert api.call("GET", "/runs").body["runs"] == []


def nest(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_trigger_refuses_params_too_deep_or_not_finite_and_creates_nothing(api: Api) -> None:
    """A param 500 levels deep answered 500 yet created the run, whose rendering then failed
    on every turn of the scheduler (every project's runs waited); 1e999 became null."""
    api.apply()
    for value, words in [
        (json.dumps(nest(MAX_PARAM_DEPTH + 1)), f"nests deeper than {MAX_PARAM_DEPTH} levels"),
        (json.dumps(nest(500)), f"nests deeper than {MAX_PARAM_DEPTH} levels"),
        ('{"ok": [1.5, 1e999]}', "inf is not a finite number"),  # a number JSON cannot hold
        ("-1e999", "-inf is not a finite number"),
    ]:
        raw = '{"params": {"region": ' + value + "}}"
        body = assert_error(
            api.call("POST", "/workflows/etl/runs", raw=raw), 400, "invalid_input", "params.region"
        )
        assert words in body["problems"][0]["message"]
    assert api.call("GET", "/runs").body["runs"] == []
    deep_enough = api.call("POST", "/workflows/etl/runs", {"params": {"region": nest(31)}})
    assert deep_enough.status == 201


def test_trigger_refuses_params_too_big_or_not_text_and_creates_nothing(api: Api) -> None:
    """A 9 MB param was accepted, and every view of the run (the runs list too) returned it
    whole; a lone surrogate was accepted and made the run's views answer 500; a NUL was
    accepted and the task failed at its start."""
    api.apply()
    for raw, path, words in [
        ('{"params": {"region": "' + "y" * MAX_PARAMS_BYTES + '"}}', "params", "over 65,536"),
        ('{"params": {"region": "\\ud800"}}', "params.region", "lone surrogate"),
        ('{"params": {"region": ["a", {"k\\udfff": 1}]}}', "params.region", "lone surrogate"),
        ('{"params": {"region": "a\\u0000b"}}', "params.region", "NUL"),
    ]:
        body = assert_error(
            api.call("POST", "/workflows/etl/runs", raw=raw), 400, "invalid_input", path
        )
        assert words in body["problems"][0]["message"]
    assert api.call("GET", "/runs").body["runs"] == []
    room = "y" * (MAX_PARAMS_BYTES - len('{"region":""}'))
    assert api.call("POST", "/workflows/etl/runs", {"params": {"region": room}}).status == 201


# ------------------------------------------------------------------ reading runs
def test_list_runs_pages_newest_first_and_filters(api: Api) -> None:
    api.apply()
    ids = [api.trigger() for _ in range(3)]
    api.finish(ids[0], "extract", AttemptStatus.FAILED)  # run 0 fails (load/transform skip)

    page = api.call("GET", "/runs", query={"limit": "2"}).body
    assert [r["id"] for r in page["runs"]] == [ids[2], ids[1]]
    assert page["next"] == ids[1]
    rest = api.call("GET", "/runs", query={"limit": "2", "before": page["next"]}).body
    assert [r["id"] for r in rest["runs"]] == [ids[0]]
    assert rest["next"] is None

    failed = api.call("GET", "/runs", query={"state": "failed"}).body["runs"]
    assert [r["id"] for r in failed] == [ids[0]]
    assert failed[0]["tasks_failed"] == 1
    assert api.call("GET", "/runs", query={"workflow": "other"}).body["runs"] == []
    assert api.call("GET", "/runs", query={"project": "team"}).body["runs"] == []

    assert_error(
        api.call("GET", "/runs", query={"state": "bogus"}), 422, "invalid_request", "state"
    )
    for limit in ("0", "501", "100000000000000000000", "ten"):
        assert_error(
            api.call("GET", "/runs", query={"limit": limit}), 422, "invalid_request", "query.limit"
        )
    # as the read model (the local server's listing) answers a cursor it did not return
    body = assert_error(
        api.call("GET", "/runs", query={"before": "no-such-run"}), 400, "invalid_input", "cursor"
    )
    assert body["message"] == "cursor: not a cursor this API returned"
    assert body["problems"][0]["path"] == "cursor"


def test_run_detail_task_view_and_log(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    api.finish(run_id, "extract", outputs={"rows": "42"}, log="extracting\nrows=42\n")

    detail = api.call("GET", f"/runs/{run_id}").body
    extract = detail["tasks"]["extract"]
    assert extract["state"] == "succeeded"
    assert extract["outputs"] == {"rows": "42"}
    assert [a["state"] for a in extract["history"]] == ["succeeded"]
    assert detail["tasks"]["transform"]["state"] == "queued"
    assert detail["run"]["tasks_done"] == 1

    task = api.call("GET", f"/runs/{run_id}/tasks/extract")
    assert task.status == 200
    assert task.body["attempts"] == 1
    assert task.body["history"][0]["exit_code"] == 0
    assert task.body["history"][0]["outputs"] == {"rows": "42"}

    log = api.call("GET", f"/runs/{run_id}/tasks/extract/attempts/1/log")
    assert log.status == 200
    assert log.headers["Content-Type"].startswith("text/plain")
    assert log.text == "extracting\nrows=42\n"
    assert log.headers["X-Next-Offset"] == str(len(log.text))
    tail = api.call("GET", f"/runs/{run_id}/tasks/extract/attempts/1/log", query={"offset": "11"})
    assert tail.text == "rows=42\n"
    past = api.call("GET", f"/runs/{run_id}/tasks/extract/attempts/1/log", query={"offset": "9999"})
    assert past.status == 200
    assert past.text == ""
    assert past.headers["X-Next-Offset"] == str(len(log.text))

    assert_error(api.call("GET", "/runs/nope"), 404, "not_found", "nope")
    assert_error(api.call("GET", f"/runs/{run_id}/tasks/nope"), 404, "not_found", "nope")
    assert_error(api.call("GET", "/runs/nope/tasks/extract"), 404, "not_found", "nope")
    assert_error(
        api.call("GET", f"/runs/{run_id}/tasks/extract/attempts/2/log"),
        404,
        "not_found",
        "attempt 2",
    )
    assert_error(
        api.call("GET", f"/runs/{run_id}/tasks/extract/attempts/1/log", query={"offset": "-1"}),
        422,
        "invalid_request",
        "query.offset",
    )
    # transform is running: its attempt exists but has no log yet
    api.scheduler.dispatch_ready()
    assert_error(
        api.call("GET", f"/runs/{run_id}/tasks/transform/attempts/1/log"),
        404,
        "not_found",
        "no log",
    )


ODD_KEYS = {"a?b": "q", "a#b": "h", "a/b": "s", 'a"b': "d", "a\\b": "bs", "a`b": "bt", "€": "e"}


def test_an_output_key_with_any_character_a_task_may_write_is_read(api: Api) -> None:
    """The route's key stopped at '?', '#', '/' and other characters Powertools' pattern
    lacks: a key a task wrote and the run view lists was "no route for GET .../a?b"."""
    api.apply()
    run_id = api.trigger()
    api.finish(run_id, "extract", outputs=ODD_KEYS)
    for key, value in ODD_KEYS.items():
        reply = api.call("GET", f"/runs/{run_id}/tasks/extract/outputs/{key}")
        assert (reply.status, reply.text) == (200, value), (key, reply.text)
    missing = api.call("GET", f"/runs/{run_id}/tasks/extract/outputs/x?y")
    assert_error(missing, 404, "not_found", "'x?y'")


@pytest.mark.parametrize("key", [".", "..", "a?b", "a/b"])
def test_the_path_a_view_lists_for_a_cut_output_survives_an_http_client(api: Api, key: str) -> None:
    """A view lists a cut value's path; with '.' or '..' as the key it ended '/outputs/..',
    which an HTTP client (httpx, a browser's fetch) resolves away to another route. A dot
    segment is escaped; decoded as a server does, the path reads the value."""
    import httpx

    from stratoflow.api.paths import request_path
    from stratoflow.views import output_path

    api.apply()
    run_id = api.trigger()
    api.finish(run_id, "extract", outputs={key: "v"})
    path = output_path(run_id, "extract", key)
    assert httpx.URL("http://h" + path).raw_path.decode() == path  # nothing resolved away
    reply = api.call("GET", request_path(path))
    assert (reply.status, reply.text) == (200, "v")


@pytest.mark.parametrize("name", ["a?b", "a#b", 'a"b', "a\\b", "a`b", "€"])
def test_a_workflow_name_no_route_pattern_held_is_named_as_not_found(api: Api, name: str) -> None:
    """It was "no route for GET /workflows/a?b" (and for its runs, pause, backfills): the
    route is found, and the answer names the workflow and its project."""
    for method, suffix in (("GET", ""), ("POST", "/runs"), ("POST", "/pause")):
        reply = api.call(method, f"/workflows/{name}{suffix}", {} if method == "POST" else None)
        body = assert_error(reply, 404, "not_found", f"workflow {name!r} not found in project")
        assert "no route" not in body["message"]
    assert api.changes == []


def test_a_trailing_newline_matches_no_route_and_is_named(api: Api) -> None:
    """'$' matched before a trailing newline: GET /workflows/etl%0A read workflow 'etl'."""
    api.apply()
    body = assert_error(
        api.call("GET", "/workflows/etl\n"), 422, "invalid_request", "control character \\n"
    )
    assert body["problems"][0]["path"] == "path"


def test_a_path_of_slashes_is_matched_in_linear_time(api: Api) -> None:
    """The output key's route takes the rest of the path, '/' included, and every route may
    end in '/'s: the key and the trailing '/'s split a run of '/' every way there is before
    a character no key holds fails the match, quadratic in its length. One request of
    40,000 '/' then a NUL (the local server reads request lines of up to 64 KiB, before any
    token is checked) held the API for 4 s (0.27 s at 8,000, 18 s at 64 KiB)."""
    import time

    path = "/runs/r/tasks/t/outputs/" + "/" * 40_000 + "\x00"
    started = time.perf_counter()
    reply = api.call("GET", path)
    took = time.perf_counter() - started
    assert_error(reply, 422, "invalid_request", "control character \\x00")
    assert took < 1.0, f"{took:.2f} s"


def test_the_log_or_output_of_an_attempt_a_task_does_not_have_says_why(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    api.finish(run_id, "extract", AttemptStatus.FAILED, log="broke\n")
    assert api.task(run_id, "transform").state.value == "upstream_failed"

    for path in (
        f"/runs/{run_id}/tasks/transform/attempts/1/log",
        f"/runs/{run_id}/tasks/transform/outputs/rows",
    ):
        query = {"attempt": "1"} if "outputs" in path else None
        body = assert_error(api.call("GET", path, query=query), 404, "not_found")
        assert body["message"] == (
            f"task 'transform' of run '{run_id}' has no attempt yet (state: upstream_failed)"
        )
    body = assert_error(
        api.call("GET", f"/runs/{run_id}/tasks/extract/attempts/3/log"), 404, "not_found"
    )
    assert body["message"] == (
        f"task 'extract' of run '{run_id}' has no attempt 3 (its latest is attempt 1)"
    )
    # attempt 0 is no attempt: refused by the path's bounds, naming the field
    for attempt in ("0", "-1"):
        body = assert_error(
            api.call("GET", f"/runs/{run_id}/tasks/extract/attempts/{attempt}/log"),
            422,
            "invalid_request",
        )
        assert body["problems"][0]["path"] == "path.attempt"
        assert "greater than or equal to 1" in body["message"]


def test_log_is_chunked_on_character_boundaries(tmp_path: Path) -> None:
    text = "é" * MAX_LOG_CHUNK  # two bytes each: the log is twice the chunk size
    api = _build(
        tmp_path, read_log=text_logs(lambda attempt: text if attempt.attempt == 1 else None)
    )
    api.apply()
    run_id = api.trigger()
    api.finish(run_id, "extract", log=None)
    url = f"/runs/{run_id}/tasks/extract/attempts/1/log"
    first = api.call("GET", url)
    assert first.status == 200
    assert first.headers["X-Log-Size"] == str(2 * MAX_LOG_CHUNK)
    assert first.text == "é" * (MAX_LOG_CHUNK // 2)
    second = api.call("GET", url, query={"offset": first.headers["X-Next-Offset"]})
    assert second.text == "é" * (MAX_LOG_CHUNK // 2)
    assert second.headers["X-Next-Offset"] == str(2 * MAX_LOG_CHUNK)
    odd = api.call("GET", url, query={"offset": "1"})  # starts inside a character
    assert odd.status == 200
    assert odd.text.startswith("\ufffd")


def test_a_log_of_stray_continuation_bytes_is_paged_promptly(tmp_path: Path) -> None:
    # bytes 0x80-0xBF that are no character (a binary dump): each is U+FFFD, 3 bytes in the
    # answer. A page must stop near its limit, not run on over every such byte after it
    # (the page was then the whole window at any length asked, and shrinking it to fit an
    # answer took a step a byte, each decoding megabytes)
    data = b"\x80" * (3 * MAX_LOG_CHUNK)
    asked: list[int] = []

    def read(attempt: Attempt, offset: int, length: int) -> LogRange | None:
        asked.append(length)
        assert len(asked) < 100, "the page is re-cut without end"
        start = min(offset, len(data))
        return LogRange(data[start : start + length], start, len(data))

    api = _build(tmp_path, read_log=read)
    api.apply()
    run_id = api.trigger()
    api.finish(run_id, "extract", log=None)
    url = f"/runs/{run_id}/tasks/extract/attempts/1/log"
    offset, pages = 0, 0
    while offset < len(data):
        page = api.call("GET", url, query={"offset": str(offset), "limit": str(1024)})
        assert page.status == 200
        nxt = int(page.headers["X-Next-Offset"])
        assert offset < nxt <= offset + 1024
        assert page.text == "\ufffd" * (nxt - offset)
        offset, pages = nxt, pages + 1
        if pages == 3:
            break
    big = api.call("GET", url)
    assert big.status == 200
    assert len(json.dumps(big.text, ensure_ascii=False).encode()) <= 5 * 1024 * 1024
    assert int(big.headers["X-Next-Offset"]) > 0


def test_a_log_page_reads_only_its_range(tmp_path: Path) -> None:
    asked: list[tuple[int, int]] = []
    text = "line\n" * 1000

    def reader(attempt: Attempt, offset: int, length: int) -> LogRange | None:
        asked.append((offset, length))
        return text_logs(lambda _: text)(attempt, offset, length)

    api = _build(tmp_path, read_log=reader)
    api.apply()
    run_id = api.trigger()
    api.finish(run_id, "extract", log=None)
    page = api.call(
        "GET",
        f"/runs/{run_id}/tasks/extract/attempts/1/log",
        query={"offset": "4995", "limit": "7"},
    )
    assert page.text == "line\n"  # the last line: the log ends before the limit
    assert (page.headers["X-Next-Offset"], page.headers["X-Log-Size"]) == ("5000", "5000")
    assert asked == [(4995, 10)], "the page and at most 3 bytes more (to end on a character)"


SECRET = "hunter2-canary-value"


def test_a_live_log_ends_its_page_at_the_same_place_whatever_its_tail_holds(
    tmp_path: Path,
) -> None:
    """While a task runs, where a page of its log ends (X-Next-Offset against X-Log-Size)
    does not say whether the text it printed last (a param a caller passed) is the start of
    one of the project's secrets."""
    secrets = LocalSecrets(tmp_path / "home")
    secrets.put("default", "pw", SECRET)
    printed: dict[str, str] = {}
    api = _build(
        tmp_path,
        read_log=text_logs(lambda attempt: printed.get(attempt.task_id)),
        secret_source=secrets,
    )
    api.apply()
    run_id = api.trigger()
    api.scheduler.dispatch_ready()  # extract runs: its log is still being written
    url = f"/runs/{run_id}/tasks/extract/attempts/1/log"
    ends = {}
    for guess in ("hunter2-c", "hunter2-x", "zzzzzzzzz"):
        printed["extract"] = "x" * 100 + "\nparam=" + guess
        page = api.call("GET", url)
        assert page.status == 200
        size = int(page.headers["X-Log-Size"])
        ends[guess] = size - int(page.headers["X-Next-Offset"])
        assert page.headers["X-Log-Held"] == "63"
    assert len(set(ends.values())) == 1, ends
    printed["extract"] = f"password is {SECRET} ok\nparam=hunter2-c"
    api.finish(run_id, "extract", log=None)  # it ended: the whole log, masked
    page = api.call("GET", url)
    assert page.text == "password is *** ok\nparam=hunter2-c"
    assert page.headers["X-Next-Offset"] == page.headers["X-Log-Size"]
    assert "X-Log-Held" not in page.headers


@pytest.mark.parametrize("ended", [True, False])
def test_a_log_page_asked_from_inside_a_secret_shows_none_of_it(
    tmp_path: Path, ended: bool
) -> None:
    """Masking found only whole values inside the page it read: a page asked one byte into a
    secret (any reader chooses the offset, a viewer too) found nothing to mask and showed
    the rest of the value. Read from every offset, with small and large limits, and paged
    to the end: no four bytes of the value are ever shown."""
    secrets = LocalSecrets(tmp_path / "home")
    secrets.put("default", "pw", SECRET)
    text = f"password={SECRET} ok\nagain {SECRET}\n" + "tail " * 30
    api = _build(tmp_path, read_log=text_logs(lambda _: text), secret_source=secrets)
    api.apply()
    run_id = api.trigger()
    api.scheduler.dispatch_ready()
    if ended:
        api.finish(run_id, "extract", log=None)
    url = f"/runs/{run_id}/tasks/extract/attempts/1/log"
    pieces = {SECRET[i : i + 4] for i in range(len(SECRET) - 3)}
    for offset in range(len(text)):
        for limit in (5, 4096):
            at, shown = offset, []
            for _ in range(200):
                page = api.call("GET", url, query={"offset": str(at), "limit": str(limit)})
                assert page.status == 200
                shown.append(page.text)
                nxt = int(page.headers["X-Next-Offset"])
                if nxt == at:  # the end (or, while it runs, the tail held back)
                    break
                at = nxt
            joined = "".join(shown)
            leaked = [p for p in pieces if p in joined]
            assert not leaked, (offset, limit, joined[:80])
    whole = api.call("GET", url).text
    if ended:
        assert whole.startswith("password=*** ok\nagain ***\n")


def test_a_secrets_file_that_cannot_be_used_is_a_503_naming_it(tmp_path: Path) -> None:
    secrets = LocalSecrets(tmp_path / "home")
    secrets.put("default", "pw", SECRET)
    secrets.path("default").chmod(0o644)
    api = _build(tmp_path, secrets=secrets, secret_source=secrets)
    for reply in (
        api.call("GET", "/secrets", query={"project": "default"}),
        api.call("PUT", "/secrets/other", {"value": "another-value"}, query={"project": "default"}),
    ):
        assert_error(reply, 503, "secrets_unavailable", "readable by others", "chmod 600")
        assert SECRET not in reply.text


def test_the_local_reader_reads_a_range_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_bytes(b"x" * 1_000_000 + "é!".encode())

    def attempt(log: str | None) -> Attempt:
        return Attempt("r", "t", 1, "running", started_at=datetime(2026, 3, 1, tzinfo=UTC), log=log)

    window = read_log_file(attempt(str(path)), 1_000_000, 2)
    assert window == LogRange("é".encode(), 1_000_000, 1_000_003)
    assert read_log_file(attempt(str(path)), 5_000_000, 10) == LogRange(b"", 1_000_003, 1_000_003)
    assert read_log_file(attempt(str(tmp_path / "missing.log")), 0, 10) is None
    assert read_log_file(attempt(None), 0, 10) is None


# ------------------------------------------------------------------ operations
def test_pause_and_resume_a_run(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    paused = api.call("POST", f"/runs/{run_id}/pause")
    assert paused.status == 200
    assert paused.body["state"] == "paused"
    assert paused.body["id"] == run_id
    api.scheduler.dispatch_ready()
    assert api.dispatcher.dispatched == []  # a paused run dispatches nothing new
    assert_error(api.call("POST", f"/runs/{run_id}/pause"), 409, "conflict", "paused")
    resumed = api.call("POST", f"/runs/{run_id}/resume")
    assert resumed.status == 200
    assert resumed.body["state"] == "running"
    api.scheduler.dispatch_ready()
    assert [d.task_id for d in api.dispatcher.dispatched] == ["extract"]


def test_resume_a_running_run_is_409(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    changes = len(api.changes)
    body = assert_error(api.call("POST", f"/runs/{run_id}/resume"), 409, "conflict", "running")
    assert "paused" in body["message"]
    assert len(api.changes) == changes
    assert_error(api.call("POST", "/runs/nope/resume"), 404, "not_found", "nope")


def test_stop_kills_what_runs(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    api.scheduler.dispatch_ready()
    stopped = api.call("POST", f"/runs/{run_id}/stop")
    assert stopped.status == 200
    assert stopped.body["state"] == "stopped"
    assert api.dispatcher.killed == [(run_id, "extract", 1)]
    tasks = api.call("GET", f"/runs/{run_id}").body["tasks"]
    assert tasks["extract"]["state"] == "stopped"
    assert_error(api.call("POST", f"/runs/{run_id}/stop"), 409, "conflict", "stopped")


def test_rerun_failed_then_from_a_task(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    api.finish(run_id, "extract")
    api.finish(run_id, "transform", AttemptStatus.FAILED)
    detail = api.call("GET", f"/runs/{run_id}").body
    assert detail["run"]["state"] == "failed"
    assert detail["tasks"]["load"]["state"] == "upstream_failed"

    assert_error(
        api.call("POST", f"/runs/{run_id}/rerun", {"from": "nope"}),
        400,
        "invalid_input",
        "nope",
    )
    rerun = api.call("POST", f"/runs/{run_id}/rerun", {"from": None})
    assert rerun.status == 200
    assert rerun.body["state"] == "running"
    tasks = api.call("GET", f"/runs/{run_id}").body["tasks"]
    assert tasks["extract"]["state"] == "succeeded"  # kept
    assert tasks["transform"]["state"] == "queued"
    assert tasks["load"]["state"] == "waiting"
    # the run goes on, with nothing failed left in it: nothing to rerun
    assert_error(api.call("POST", f"/runs/{run_id}/rerun"), 409, "conflict", "no failed")

    api.finish(run_id, "transform")
    api.finish(run_id, "load")
    assert api.call("GET", f"/runs/{run_id}").body["run"]["state"] == "succeeded"
    again = api.call("POST", f"/runs/{run_id}/rerun", {"from": "transform"})
    assert again.status == 200
    tasks = api.call("GET", f"/runs/{run_id}").body["tasks"]
    assert tasks["extract"]["state"] == "succeeded"
    assert tasks["transform"]["state"] == "queued"
    assert tasks["load"]["state"] == "waiting"
    assert_error(
        api.call("POST", f"/runs/{run_id}/rerun", {"from_task": "x"}),
        422,
        "invalid_request",
        "body.from_task",
    )


def test_mark_a_failed_task_succeeded_lets_downstream_run(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    api.finish(run_id, "extract", AttemptStatus.FAILED)
    assert api.call("GET", f"/runs/{run_id}").body["run"]["state"] == "failed"

    assert_error(
        api.call("POST", f"/runs/{run_id}/tasks/extract/mark", {"state": "running"}),
        422,
        "invalid_request",
        "body.state",
    )
    assert_error(
        api.call("POST", f"/runs/{run_id}/tasks/extract/mark", {}),
        422,
        "invalid_request",
        "body.state",
    )
    assert_error(
        api.call("POST", f"/runs/{run_id}/tasks/nope/mark", {"state": "succeeded"}),
        404,
        "not_found",
        "nope",
    )
    marked = api.call("POST", f"/runs/{run_id}/tasks/extract/mark", {"state": "succeeded"})
    assert marked.status == 200
    assert marked.body["id"] == run_id
    tasks = api.call("GET", f"/runs/{run_id}").body["tasks"]
    assert tasks["extract"]["state"] == "succeeded"
    assert tasks["transform"]["state"] == "queued"
    assert_error(
        api.call("POST", f"/runs/{run_id}/tasks/extract/mark", {"state": "succeeded"}),
        409,
        "conflict",
        "already",
    )
    skipped = api.call("POST", f"/runs/{run_id}/tasks/load/mark", {"state": "skipped"})
    assert skipped.status == 200
    assert api.call("GET", f"/runs/{run_id}/tasks/load").body["state"] == "skipped"
    failed = api.call("POST", f"/runs/{run_id}/tasks/transform/mark", {"state": "failed"})
    assert failed.status == 200
    transform = api.call("GET", f"/runs/{run_id}/tasks/transform").body
    assert (transform["state"], transform["error"]) == ("failed", "marked failed")
    assert api.call("GET", f"/runs/{run_id}").body["run"]["state"] == "failed"


# ------------------------------------------------------------------ failures inside
def test_an_internal_error_is_500_without_details(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(run_id: str) -> None:
        raise RuntimeError("db password is hunter2")

    assert api.call("POST", "/workflows", {"source": ETL}).status == 201
    run_id = api.call("POST", "/workflows/etl/runs", {}).body["run"]["id"]
    api.changes.clear()
    monkeypatch.setattr(api.scheduler, "pause", broken)
    reply = api.call("POST", f"/runs/{run_id}/pause")
    body = assert_error(reply, 500, "internal")
    assert "hunter2" not in reply.text
    assert body["problems"] == []
    assert api.changes == []


def test_a_failing_on_change_hook_does_not_fail_the_write(tmp_path: Path) -> None:
    api = _build(tmp_path)

    def boom() -> None:
        raise OSError("wake failed")

    api.app = create_app(api.scheduler, on_change=boom)
    assert api.call("POST", "/workflows", {"source": ETL}).status == 201


def test_a_logical_date_out_of_range_is_refused_and_creates_nothing(api: Api) -> None:
    api.apply()
    reply = api.call("POST", "/workflows/etl/runs", {"logical_date": "0341-05-16T02:43:09Z"})
    assert_error(reply, 422, "invalid_request", "logical_date", "must be between 1900-01-02")
    assert api.call("GET", "/runs").body["runs"] == []


def test_a_body_in_an_unreadable_form_is_415_not_500(api: Api) -> None:
    reply = api.call(
        "POST", "/workflows", raw="--x\r\n", headers={"Content-Type": "multipart/form-data"}
    )
    assert_error(reply, 415, "unsupported_media_type", "send the body as JSON")


def test_a_value_error_of_our_own_is_still_a_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("a bug of ours")

    monkeypatch.setattr(api.scheduler, "apply", broken)
    reply = api.call("POST", "/workflows", {"source": ETL})
    assert_error(reply, 500, "internal")
    assert "a bug of ours" not in reply.text


def test_date_filters_need_the_read_model(api: Api) -> None:
    reply = api.call("GET", "/runs", query={"logical_from": "2026-01-01T00:00:00Z"})
    assert_error(reply, 400, "invalid_input", "read model")


@pytest.mark.parametrize(
    ("path", "shown"),
    [("/pools/a\nb", "\\n"), ("/secrets/a\x1b[31m", "\\x1b"), ("/connections/a\u202eb", "\\u202e")],
)
def test_a_name_with_a_control_character_is_refused_naming_it(
    api: Api, path: str, shown: str
) -> None:
    """It matched no route's pattern, so the answer was 404 'no route for PUT /pools/a' and
    a raw newline: the character is named instead, and nothing changes."""
    body = assert_error(
        api.call("PUT", path, {"slots": 2}), 422, "invalid_request", "control character"
    )
    assert body["problems"][0]["path"] == "path"
    assert shown in body["message"]
    assert api.changes == []
