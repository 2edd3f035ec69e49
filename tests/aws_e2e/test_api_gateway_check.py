"""Issue 8, item 6: the api function refuses an event that did not come through this stack's
API Gateway (a direct Lambda invoke with a forged identity), calling its handler directly
with STRATOFLOW_API_ID set as the template sets it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .harness import ACCOUNT, OPS_SESSION, aws_stack

API_ID = "a1b2c3d4e5"


def _event(context: dict[str, Any], path: str = "/runs") -> dict[str, Any]:
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "GET",
        "headers": {},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": context,
        "body": None,
        "isBase64Encoded": False,
    }


def test_a_forged_direct_invoke_is_refused_and_a_gateway_event_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATOFLOW_API_ID", API_ID)
    monkeypatch.setenv("STRATOFLOW_API_STAGE", "v1")
    identity = {"userArn": OPS_SESSION, "accountId": ACCOUNT}
    gateway = {"apiId": API_ID, "stage": "v1", "httpMethod": "GET", "identity": identity}
    with aws_stack(monkeypatch) as stack:
        ok = stack.call("api", _event(gateway))
        assert ok["statusCode"] == 200, ok

        forged = [
            # what a lambda task could send: a superuser's ARN, no API Gateway fields
            {"identity": {"userArn": OPS_SESSION}},
            {**gateway, "apiId": "zzzzzzzzzz"},
            {**gateway, "stage": "test-invoke-stage"},
            {**gateway, "identity": {"userArn": OPS_SESSION}},
            {**gateway, "identity": {"userArn": OPS_SESSION, "accountId": "999999999999"}},
        ]
        for context in forged:
            for path in ("/runs", "/"):  # public routes (the UI) too
                response = stack.call("api", _event(context, path))
                assert response["statusCode"] == 403, (context, response)
                body = json.loads(response["body"])
                assert body["error"] == "forbidden", body
                assert body["message"], body
        no_context = _event(gateway)
        del no_context["requestContext"]
        assert stack.call("api", no_context)["statusCode"] == 403
