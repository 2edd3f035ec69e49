"""Resource files on the whole AWS stack (moto): uploaded through the api function as bytes
(base64, as API Gateway hands over an application/octet-stream body), a run that pins the
version it was created with while a newer one is uploaded before its task starts, the
runner fetching that version, the download of an old version, and a trigger refused for a
file that does not exist."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from tests.aws_e2e.harness import ACCOUNT, OPS_SESSION, REGION, Stack, aws_stack

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:No application metrics")]

WORKFLOW = """
name: uses_files
tasks:
  show:
    type: shell
    resources: [data/rows.csv]
    command: echo "seen=$(cat data/rows.csv)" >> "$STRATOFLOW_OUTPUT"
"""


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        monkeypatch.setenv("STRATOFLOW_PROJECT", "default")  # the project's runner function
        built.apply_with_runner(WORKFLOW)
        yield built


def raw(
    stack: Stack, method: str, path: str, query: dict[str, str], data: bytes | None = None
) -> dict[str, Any]:
    """A request with a binary body, as API Gateway hands it over (BinaryMediaTypes)."""
    event = {
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"},
        "multiValueHeaders": {}, "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()},
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "requestContext": {"httpMethod": method, "path": path, "stage": "prod",
                           "identity": {"userArn": OPS_SESSION}},
        "body": None if data is None else base64.b64encode(data).decode(),
        "isBase64Encoded": data is not None,
    }  # fmt: skip
    stack.invocations["api"] += 1
    context = SimpleNamespace(
        function_name="stratoflow-api", memory_limit_in_mb=512,
        invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stratoflow-api",
        aws_request_id=f"req-{time.monotonic_ns()}",
    )  # fmt: skip
    reply: dict[str, Any] = stack.functions["api"].handler(event, context)
    return reply


def test_a_run_on_aws_uses_the_version_it_pinned(stack: Stack) -> None:
    put = raw(
        stack, "PUT", "/resources/file", {"project": "default", "path": "data/rows.csv"}, b"old\xff"
    )
    assert put["statusCode"] == 201, put
    status, run = stack.api("POST", "/workflows/uses_files/runs", {})
    assert status == 201, run
    run_id = run["run"]["id"]
    # a newer version, uploaded after the run was created and before its task starts
    again = raw(
        stack, "PUT", "/resources/file", {"project": "default", "path": "data/rows.csv"}, b"new"
    )
    assert again["statusCode"] == 200, again
    assert stack.deliver_kicks() == 1
    assert stack.run_ends(run_id) == "succeeded"
    status, detail = stack.api("GET", f"/runs/{run_id}")
    assert detail["tasks"]["show"]["outputs"] == {"seen": "old\ufffd"}  # the old bytes

    status, versions = stack.api(
        "GET", "/resources/versions", query={"project": "default", "path": "data/rows.csv"}
    )
    assert status == 200
    old_version = versions["versions"][-1]["version"]
    got = raw(
        stack,
        "GET",
        "/resources/file",
        {"project": "default", "path": "data/rows.csv", "version": old_version},
    )
    assert got["statusCode"] == 200
    assert got["isBase64Encoded"]
    assert base64.b64decode(got["body"]) == b"old\xff"


def test_a_missing_file_refuses_the_trigger(stack: Stack) -> None:
    status, body = stack.api("POST", "/workflows/uses_files/runs", {})
    assert status == 400, body
    assert "resource 'data/rows.csv' not found in project 'default'" in body["message"]
