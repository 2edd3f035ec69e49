"""Responses bounded in size: a run view cuts outputs too large to show, says so, and names
the path that pages through the whole value; long errors are cut with a marker too."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.unit import test_api_app
from tests.unit.test_api_app import Api, assert_error

from stratoflow.engine import AttemptStatus
from stratoflow.views import MAX_ERROR_CHARS, MAX_OUTPUT_CHARS, MAX_OUTPUTS_CHARS, TRUNCATED

api = test_api_app.api  # the fixture

BIG = "é" * 1_250_000 + "end"  # 2.5 MB of UTF-8, two bytes a character


def _follow(api: Api, path: str, limit: int) -> tuple[str, int]:
    """Every page of an output value; the text and how many pages it took."""
    url = urlsplit(path)
    query = dict(parse_qsl(url.query))
    text, offset, pages = "", 0, 0
    while True:
        reply = api.call(
            "GET", url.path, query={**query, "offset": str(offset), "limit": str(limit)}
        )
        assert reply.status == 200, reply.text
        assert reply.headers["Content-Type"].startswith("text/plain")
        size = int(reply.headers["X-Output-Size"])
        text += reply.text
        offset = int(reply.headers["X-Next-Offset"])
        pages += 1
        if offset >= size:
            return text, pages


def test_a_large_output_is_cut_in_the_run_view_and_paged_whole(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    api.finish(run_id, "extract", outputs={"rows": "42", "big": BIG, "list": list(range(10_000))})
    reply = api.call("GET", f"/runs/{run_id}")
    assert reply.status == 200
    assert len(reply.text.encode()) < 2 * MAX_OUTPUTS_CHARS  # not 10 MB
    task = reply.body["tasks"]["extract"]
    assert task["outputs"]["rows"] == "42"  # small values are untouched
    assert task["outputs"]["big"].endswith(TRUNCATED)
    assert len(task["outputs"]["big"]) == MAX_OUTPUT_CHARS + len(TRUNCATED)
    cut = task["outputs_truncated"]["big"]
    assert cut["size"] == len(BIG.encode())
    assert cut["shown"] == MAX_OUTPUT_CHARS
    assert "rows" not in task["outputs_truncated"]
    # the attempt in the history links to its own copy
    history = task["history"][0]
    assert history["outputs_truncated"]["big"]["path"].endswith("/outputs/big?attempt=1")
    # THEN the path pages through the whole value, on character boundaries
    text, pages = _follow(api, cut["path"], limit=1_000_001)
    assert text == BIG
    assert pages == 3  # 2,500,003 bytes in pages cut back to 1,000,000 (a whole character)
    listed, _ = _follow(api, task["outputs_truncated"]["list"]["path"], limit=4096)
    assert json.loads(listed) == list(range(10_000))
    attempt_text, _ = _follow(api, history["outputs_truncated"]["big"]["path"], limit=4_000_000)
    assert attempt_text == BIG


def test_many_large_outputs_share_one_budget_per_view(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    outputs = {f"k{i}": "x" * (MAX_OUTPUT_CHARS - 10) for i in range(100)}
    api.finish(run_id, "extract", outputs=outputs)
    reply = api.call("GET", f"/runs/{run_id}")
    task = reply.body["tasks"]["extract"]
    shown = sum(len(v) for v in task["outputs"].values())
    shown += sum(len(v) for a in task["history"] for v in a["outputs"].values())
    assert shown <= MAX_OUTPUTS_CHARS + 200 * len(TRUNCATED)
    assert task["outputs_truncated"]  # the budget ran out: some are cut, and say so
    assert len(reply.text.encode()) < 2 * MAX_OUTPUTS_CHARS
    task_only = api.call("GET", f"/runs/{run_id}/tasks/extract").body
    assert set(task_only["outputs"]) == set(outputs)


def test_a_long_error_is_cut_with_a_marker(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    api.scheduler.dispatch_ready()
    task = api.task(run_id, "extract")
    from stratoflow.engine import AttemptResult
    from stratoflow.service import Finished

    result = AttemptResult(AttemptStatus.FAILED, {}, error="E" * 1_000_000, exit_code=1)
    api.scheduler.on_finished([Finished(run_id, "extract", task.attempt, result, None)])
    body = api.call("GET", f"/runs/{run_id}").body
    error = body["tasks"]["extract"]["history"][0]["error"]
    assert error.startswith("E" * MAX_ERROR_CHARS + TRUNCATED)
    assert "1000000 characters in all" in error


def test_output_paging_errors(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    api.finish(run_id, "extract", outputs={"rows": "42"})
    base = f"/runs/{run_id}/tasks/extract/outputs"
    whole = api.call("GET", f"{base}/rows")
    assert (whole.status, whole.text, whole.headers["X-Output-Size"]) == (200, "42", "2")
    past: Any = api.call("GET", f"{base}/rows", query={"offset": "99"})
    assert (past.status, past.text, past.headers["X-Next-Offset"]) == (200, "", "2")
    assert_error(api.call("GET", f"{base}/nope"), 404, "not_found", "no output 'nope'")
    assert_error(
        api.call("GET", f"{base}/rows", query={"attempt": "7"}), 404, "not_found", "no attempt 7"
    )
    assert_error(api.call("GET", "/runs/nope/tasks/extract/outputs/rows"), 404, "not_found")
