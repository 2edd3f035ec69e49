"""A Lambda answer is at most 6 MB (6,291,456 bytes: the proxy response as the python3.12
runtime serialises it, the body a JSON string inside it). Every request the API accepts is
answered within it: a large workflow with text JSON would escape, a log of bytes that are not
UTF-8; an answer that would still not fit is a clear error, not API Gateway's 502."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .harness import api_event as _event
from .harness import aws_stack

LAMBDA_MAX = 6 * 1024 * 1024
CJK = "数据仓库每日同步任务说明" * 50000  # 600,000 characters, 1.8 MB of UTF-8


def _payload(response: dict[str, Any]) -> int:
    """The bytes of the response as the python3.12 Lambda runtime sends it (no \\u escapes)."""
    return len(json.dumps(response, ensure_ascii=False).encode())


def test_a_large_workflow_is_answered_within_lambda_s_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = f'name: big_cn\ndescription: "{CJK}"\ntasks:\n  a: {{type: shell, command: echo}}\n'
    with aws_stack(monkeypatch) as stack:
        answers = [
            stack.call("api", _event("POST", "/workflows", {"source": source})),
            stack.call("api", _event("GET", "/workflows/big_cn")),
            stack.call("api", _event("GET", "/workflows/big_cn/versions/1")),
        ]
        for response, status in zip(answers, (201, 200, 200), strict=True):
            assert response["statusCode"] == status, response["body"][:300]
            assert _payload(response) <= LAMBDA_MAX, _payload(response)
            body = json.loads(response["body"])
            assert body["document"]["description"] == CJK
            assert body["source"] == source
        listed = stack.call("api", _event("GET", "/workflows"))
        assert _payload(listed) <= LAMBDA_MAX


LOG_SOURCE = """
name: chatty
tasks:
  log:
    type: shell
    command: 'head -c 4500000 /dev/urandom'
"""


def test_a_log_that_needs_escaping_is_paged_within_lambda_s_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with aws_stack(monkeypatch) as stack:
        stack.apply_with_runner(LOG_SOURCE)
        status, body = stack.api("POST", "/workflows/chatty/runs", {"run_id": "r"})
        assert status == 201, body
        run_id = body["run"]["id"]
        assert stack.run_ends(run_id) == "succeeded"
        path = f"/runs/{run_id}/tasks/log/attempts/1/log"
        offset, pages = 0, 0
        while True:  # as `stratoflow logs` reads it (Client.follow): by X-Next-Offset
            query = {"offset": str(offset)} if offset else None
            response = stack.call("api", _event("GET", path, query=query))
            assert response["statusCode"] == 200, response["body"][:300]
            assert _payload(response) <= LAMBDA_MAX, (offset, _payload(response))
            headers = {k: v[-1] for k, v in response["multiValueHeaders"].items()}
            size, nxt = int(headers["X-Log-Size"]), int(headers["X-Next-Offset"])
            assert size == 4_500_000
            assert nxt > offset
            offset, pages = nxt, pages + 1
            if offset >= size:
                break
        assert pages >= 2


QUOTED = (
    '"' * 1_500_000
)  # each quote is \\" in a JSON body, and \\\\\\" once the proxy response holds it
HEAVY = f"name: quoted\ndescription: '{QUOTED}'\ntasks:\n  a: {{type: shell, command: echo}}\n"


def test_a_workflow_whose_answer_cannot_fit_is_refused_when_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with aws_stack(monkeypatch) as stack:
        response = stack.call("api", _event("POST", "/workflows", {"source": HEAVY}))
        assert response["statusCode"] == 400, response["body"][:300]
        body = json.loads(response["body"])
        assert body["problems"][0]["path"] == "source"
        assert "as the API answers it" in body["message"]
        assert "make it smaller" in body["message"]
        status, _ = stack.api("GET", "/workflows/quoted")
        assert status == 404  # nothing stored


def test_an_answer_too_large_for_lambda_is_a_clear_error_not_a_502(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with aws_stack(monkeypatch) as stack:
        stack.scheduler.apply(HEAVY)  # stored by a path the API's check does not guard
        response = stack.call("api", _event("GET", "/workflows/quoted/versions/1"))
        assert _payload(response) <= LAMBDA_MAX
        assert response["statusCode"] == 500
        body = json.loads(response["body"])
        assert body["error"] == "response_too_large"
        assert "GET /workflows/quoted/versions/1" in body["message"]
        assert "at most 6,291,456" in body["message"]
        assert "ask for less" in body["message"]
