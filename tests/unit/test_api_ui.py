"""API additions the web UI needs: the run timeline, version diffs, paging of workflows and
versions (with each workflow's last run and next scheduled time), ``GET /me``, and serving
the built UI (index and hashed assets) from the same resolver. Called directly with
synthetic API Gateway events, as in ``test_api_app``; the static files are a small tree in
``tmp_path`` standing in for ``npm run build``'s output."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_api_app import ETL, Api, _build, assert_error
from tests.unit.test_text_diff import patched

from stratoflow.api.app import ACTIONS, ASSET_CACHE, INDEX_CACHE, create_app, ui_actions
from stratoflow.auth import Principal, Role
from stratoflow.engine import AttemptStatus


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = _build(tmp_path)
    yield built
    built.scheduler.store.close()  # type: ignore[attr-defined]


def _ui_tree(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(
        '<!doctype html><script type="module" src="./assets/index-abc123.js"></script>',
        encoding="utf-8",
    )
    (root / "assets" / "index-abc123.js").write_text("console.log('é')", encoding="utf-8")
    (root / "assets" / "index-abc123.css").write_text("body{margin:0}", encoding="utf-8")
    (root / "assets" / "logo-1.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    (root / "secret.txt").write_text("outside assets", encoding="utf-8")
    return root


# ------------------------------------------------------------------ timeline
def test_timeline_lists_each_attempt_in_workflow_order_with_bounds(api: Api) -> None:
    api.apply(ETL.replace("name: etl", "name: etl\ndefaults: {retries: 1, retry_delay: 0}"))
    run_id = api.trigger()
    api.finish(run_id, "extract")
    api.finish(run_id, "transform", AttemptStatus.FAILED)  # retried: attempt 2 is queued
    api.scheduler.step()  # promote the retry (no delay)

    reply = api.call("GET", f"/runs/{run_id}/timeline")
    assert reply.status == 200, reply.text
    body = reply.body
    assert body["run"]["id"] == run_id
    tasks = body["tasks"]
    assert [t["task_id"] for t in tasks] == ["extract", "transform", "load"]
    extract, transform, load = tasks
    assert extract["state"] == "succeeded"
    assert [(a["attempt"], a["state"]) for a in extract["attempts"]] == [(1, "succeeded")]
    assert transform["state"] == "running"  # attempt 2 was dispatched by step()
    assert [(a["attempt"], a["state"]) for a in transform["attempts"]] == [
        (1, "failed"),
        (2, "running"),
    ]
    assert transform["attempts"][1]["ended_at"] is None
    assert load["attempts"] == []
    first = datetime.fromisoformat(extract["attempts"][0]["started_at"])
    assert datetime.fromisoformat(body["start"]) == first
    # an attempt still runs, so the chart's right edge is "now", after every recorded end
    ends = [
        datetime.fromisoformat(a["ended_at"]) for t in tasks for a in t["attempts"] if a["ended_at"]
    ]
    assert datetime.fromisoformat(body["end"]) > max(ends)
    for task in tasks:
        for attempt in task["attempts"]:
            if attempt["ended_at"]:
                start = datetime.fromisoformat(attempt["started_at"])
                end = datetime.fromisoformat(attempt["ended_at"])
                assert attempt["duration_seconds"] == round((end - start).total_seconds(), 3)


def test_timeline_of_a_finished_run_ends_at_its_last_attempt(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    for task in ("extract", "transform", "load"):
        api.finish(run_id, task)
    body = api.call("GET", f"/runs/{run_id}/timeline").body
    assert body["run"]["state"] == "succeeded"
    last_end = body["tasks"][-1]["attempts"][-1]["ended_at"]
    assert body["end"] == last_end


def test_timeline_before_any_attempt_and_of_an_unknown_run(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    body = api.call("GET", f"/runs/{run_id}/timeline").body
    assert all(t["attempts"] == [] for t in body["tasks"])
    assert body["start"] == body["run"]["started_at"]
    assert body["end"] is None
    assert_error(api.call("GET", "/runs/nope/timeline"), 404, "not_found", "nope")


# ------------------------------------------------------------------ diff
def test_diff_of_two_versions_is_a_unified_diff_of_the_sources(api: Api) -> None:
    api.apply()
    api.apply(ETL.replace("three steps", "four steps").replace("echo load", "echo load2"))
    reply = api.call("GET", "/workflows/etl/diff")  # default: latest against the one before
    assert reply.status == 200, reply.text
    body = reply.body
    assert (body["from"], body["to"], body["changed"]) == (1, 2, True)
    lines = body["diff"].splitlines()
    assert lines[0] == "--- etl v1"
    assert lines[1] == "+++ etl v2"
    assert "-description: three steps" in lines
    assert "+description: four steps" in lines
    assert "-    command: echo load" in lines
    assert "+    command: echo load2" in lines

    backwards = api.call("GET", "/workflows/etl/diff", query={"from": "2", "to": "1"}).body
    assert "+description: three steps" in backwards["diff"].splitlines()

    same = api.call("GET", "/workflows/etl/diff", query={"from": "1", "to": "1"}).body
    assert same["changed"] is False
    assert same["diff"] == ""


def test_diff_errors_name_the_problem(api: Api) -> None:
    api.apply()
    body = assert_error(api.call("GET", "/workflows/etl/diff"), 400, "invalid_input", "only")
    assert body["problems"][0]["path"] == "from"
    assert_error(
        api.call("GET", "/workflows/etl/diff", query={"from": "7", "to": "1"}), 404, "not_found"
    )
    assert_error(api.call("GET", "/workflows/nope/diff"), 404, "not_found", "nope")
    assert_error(
        api.call("GET", "/workflows/etl/diff", query={"from": "0"}),
        422,
        "invalid_request",
        "query.from",
    )


def test_diff_of_sources_without_a_final_newline_keeps_lines_apart(api: Api) -> None:
    api.apply(ETL.rstrip("\n"))
    api.apply(ETL.replace("echo load", "echo unload").rstrip("\n"))
    diff = api.call("GET", "/workflows/etl/diff").body["diff"]
    assert "-    command: echo load\n+    command: echo unload\n" in diff


def test_a_diff_of_versions_whose_lines_repeat_is_bounded_and_still_a_diff(api: Api) -> None:
    """difflib's matching grows with the square of the lines and more when lines repeat
    just under its "popular" cut: two 110 KB versions took half a minute of the API's one
    worker thread (a 2 MiB pair, hours; every other request waited). The diff is still one
    that turns the old version into the new."""
    n, kinds = 16_000, 101
    head = "name: big\ntasks:\n  a: {type: shell, command: echo}\ndescription: |\n"
    old = head + "".join(f"  k{i % kinds} v\n" for i in range(n))
    new = head + "".join(f"  k{(i * 7 + 3) % kinds} {'w' if i % 2 else 'v'}\n" for i in range(n))
    api.apply(old)
    api.apply(new)
    started = time.process_time()
    reply = api.call("GET", "/workflows/big/diff")
    assert time.process_time() - started < 8, "the diff was not bounded"
    assert reply.status == 200, reply.text
    assert reply.body["changed"] is True
    assert patched(old, reply.body["diff"]) == new
    assert reply.body["diff"].startswith(
        "--- big v1\n+++ big v2\n@@ -2,"
    )  # 3 lines of context kept


# ------------------------------------------------------------------ paging
def test_workflows_page_by_name_with_last_run_and_next_schedule(api: Api) -> None:
    for name in ("a", "b", "c", "d", "e"):
        api.apply(ETL.replace("name: etl", f"name: {name}"))
    api.apply(ETL.replace("name: etl", 'name: f\nschedule: {cron: "0 2 * * *", timezone: UTC}'))
    run_id = api.trigger("b")

    first = api.call("GET", "/workflows", query={"limit": "2"}).body
    assert [w["name"] for w in first["workflows"]] == ["a", "b"]
    assert first["next"] == "b"
    assert first["workflows"][0]["last_run"] is None
    last_run = first["workflows"][1]["last_run"]
    assert (last_run["id"], last_run["state"]) == (run_id, "running")

    names, cursor = [], None
    while True:
        query = {"limit": "2"} | ({"after": cursor} if cursor else {})
        page = api.call("GET", "/workflows", query=query).body
        names += [w["name"] for w in page["workflows"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert names == ["a", "b", "c", "d", "e", "f"]

    everything = api.call("GET", "/workflows").body
    assert everything["next"] is None
    by_name = {w["name"]: w for w in everything["workflows"]}
    assert by_name["a"]["next_run_at"] is None  # no schedule
    # the test clock is at 2026-03-01T12:00Z; "0 2 * * *" next fires the day after at 02:00
    assert by_name["f"]["next_run_at"] == "2026-03-02T02:00:00+00:00"
    api.call("POST", "/workflows/f/pause")
    paused = api.call("GET", "/workflows", query={"after": "e"}).body["workflows"]
    assert paused[0]["next_run_at"] is None  # a paused schedule does not fire

    assert_error(
        api.call("GET", "/workflows", query={"limit": "0"}), 422, "invalid_request", "limit"
    )


def test_next_run_at_follows_the_cron_cursor(api: Api) -> None:
    api.apply(
        ETL.replace("name: etl", 'name: hourly\nschedule: {cron: "0 * * * *", timezone: UTC}')
    )
    store = api.scheduler.catalog
    # a cursor ahead of now (fired already for 15:00): the next firing is after it
    store.set_cursor("default", "hourly", datetime.fromisoformat("2026-03-01T15:00:00+00:00"))
    body = api.call("GET", "/workflows").body
    assert body["workflows"][0]["next_run_at"] == "2026-03-01T16:00:00+00:00"


def test_versions_page_newest_first(api: Api) -> None:
    for i in range(5):
        api.apply(ETL.replace("three steps", f"take {i}"))
    first = api.call("GET", "/workflows/etl/versions", query={"limit": "2"}).body
    assert [v["version"] for v in first["versions"]] == [5, 4]
    assert first["next"] == 4
    second = api.call("GET", "/workflows/etl/versions", query={"limit": "2", "before": "4"}).body
    assert [v["version"] for v in second["versions"]] == [3, 2]
    third = api.call(
        "GET", "/workflows/etl/versions", query={"limit": "2", "before": str(second["next"])}
    ).body
    assert [v["version"] for v in third["versions"]] == [1]
    assert third["next"] is None


def test_a_page_of_versions_or_workflows_reads_that_page_not_all(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every version ever applied is kept, each with its source and document (2 MiB at
    most): a page of one (a viewer's `?limit=1`) decoded all of them, as a page of
    workflows decoded every workflow of the project."""
    for i in range(30):
        api.apply(ETL.replace("three steps", f"take {i}"))
    for name in ("a", "b", "c", "d", "e", "f"):
        api.apply(ETL.replace("name: etl", f"name: {name}"))
    store = api.scheduler.store
    decoded: list[tuple[str, int]] = []
    made = type(store)._version

    def counting(self: Any, row: Any, *args: Any) -> Any:
        decoded.append((row["name"], row["version"]))
        return made(self, row, *args)

    monkeypatch.setattr(type(store), "_version", counting)
    page = api.call("GET", "/workflows/etl/versions", query={"limit": "2", "before": "20"})
    assert [v["version"] for v in page.body["versions"]] == [19, 18]
    assert page.body["next"] == 18
    assert len(decoded) <= 4, decoded  # the page, one more (is there a next?), the head
    decoded.clear()
    listed = api.call("GET", "/workflows", query={"limit": "2", "after": "b"})
    assert [w["name"] for w in listed.body["workflows"]] == ["c", "d"]
    assert listed.body["next"] == "d"
    assert len(decoded) <= 3, decoded


def test_runs_filter_by_state_and_workflow_and_page(api: Api) -> None:
    api.apply()
    api.apply(ETL.replace("name: etl", "name: other"))
    done = api.trigger()
    for task in ("extract", "transform", "load"):
        api.finish(done, task)
    running = [api.trigger() for _ in range(3)]
    api.trigger("other")
    runs = api.call("GET", "/runs", query={"workflow": "etl", "state": "running"}).body
    assert {r["id"] for r in runs["runs"]} == set(running)
    page = api.call("GET", "/runs", query={"workflow": "etl", "limit": "3"}).body
    assert [r["id"] for r in page["runs"]] == running[::-1]
    rest = api.call(
        "GET", "/runs", query={"workflow": "etl", "limit": "3", "before": page["next"]}
    ).body
    assert [r["id"] for r in rest["runs"]] == [done]
    assert rest["next"] is None


# ------------------------------------------------------------------ me
def test_me_allows_every_action_locally(api: Api) -> None:
    body = api.call("GET", "/me", query={"project": "team"}).body
    assert (body["user"], body["project"], body["role"]) == ("local", "team", "admin")
    assert set(body["actions"]) == set(ACTIONS)
    assert {"run.trigger", "run.stop", "run.rerun", "task.mark"} <= set(body["actions"])


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (None, set()),
        (Role.VIEWER, set()),
        (
            Role.OPERATOR,
            {
                "workflow.pause",
                "run.trigger",
                "run.pause",
                "run.resume",
                "run.stop",
                "run.rerun",
                "task.mark",
                "task.force_start",
                "alerts.test",
                "connections.test",
            },
        ),
        (Role.EDITOR, set(ACTIONS) - {"alerts.edit", "connections.edit"}),
        (Role.ADMIN, set(ACTIONS)),
    ],
)
def test_ui_actions_follow_the_role_in_the_project(role: Role | None, expected: set[str]) -> None:
    principal = Principal("someone", {"a": role} if role is not None else {})
    assert set(ui_actions(principal, "a")) == expected
    assert ui_actions(principal, "b") == []  # no role in another project: nothing
    assert "workflow.apply" in ACTIONS


def test_openapi_documents_the_additions(api: Api) -> None:
    doc = api.call("GET", "/openapi.json").body
    paths = doc["paths"]
    assert "/" not in paths
    assert "/assets/{name}" not in paths
    timeline = paths["/runs/{run_id}/timeline"]["get"]["responses"]["200"]
    assert timeline["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Timeline"
    }
    diff_params = {p["name"] for p in paths["/workflows/{name}/diff"]["get"]["parameters"]}
    assert diff_params == {"name", "project", "from", "to"}
    wf_params = {p["name"] for p in paths["/workflows"]["get"]["parameters"]}
    assert wf_params == {"project", "limit", "after"}
    v_params = {p["name"] for p in paths["/workflows/{name}/versions"]["get"]["parameters"]}
    assert v_params == {"name", "project", "limit", "before"}
    schemas = doc["components"]["schemas"]
    assert {"last_run", "next_run_at"} <= set(schemas["WorkflowSummary"]["properties"])
    assert "from" in schemas["VersionDiff"]["properties"]
    assert "/me" in paths


# ------------------------------------------------------------------ static UI
@pytest.fixture
def ui_api(tmp_path: Path) -> Iterator[Api]:
    built = _build(tmp_path)
    built.app = create_app(built.scheduler, static_dir=_ui_tree(tmp_path / "static"))
    yield built
    built.scheduler.store.close()  # type: ignore[attr-defined]


def test_index_is_html_and_revalidated(ui_api: Api) -> None:
    reply = ui_api.call("GET", "/")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    assert reply.headers["Cache-Control"] == INDEX_CACHE
    assert "index-abc123.js" in reply.text


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("index-abc123.js", "text/javascript; charset=utf-8"),
        ("index-abc123.css", "text/css; charset=utf-8"),
    ],
)
def test_assets_have_their_type_and_are_cached_for_good(
    ui_api: Api, name: str, content_type: str
) -> None:
    reply = ui_api.call("GET", f"/assets/{name}")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == content_type
    assert reply.headers["Cache-Control"] == ASSET_CACHE
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    expected = (ui_api.logs.parent / "static" / "assets" / name).read_text(encoding="utf-8")
    assert reply.text == expected


def test_binary_assets_are_base64_for_api_gateway(ui_api: Api) -> None:
    event_reply = ui_api.app.resolve(
        {
            "resource": "/{proxy+}",
            "path": "/assets/logo-1.png",
            "httpMethod": "GET",
            "headers": {},
            "multiValueHeaders": {},
            "queryStringParameters": None,
            "multiValueQueryStringParameters": None,
            "pathParameters": {"proxy": "assets/logo-1.png"},
            "stageVariables": None,
            "body": None,
            "isBase64Encoded": False,
            "requestContext": {"stage": "test", "requestId": "r", "path": "/assets/logo-1.png"},
        },
        None,
    )
    assert event_reply["statusCode"] == 200
    assert event_reply["isBase64Encoded"] is True
    assert base64.b64decode(event_reply["body"]) == b"\x89PNG\r\n\x1a\n\x00\xff"


def test_only_files_under_assets_are_served(ui_api: Api) -> None:
    assert_error(ui_api.call("GET", "/assets/missing.js"), 404, "not_found", "missing.js")
    assert_error(ui_api.call("GET", "/assets/.."), 404, "not_found")
    assert_error(ui_api.call("GET", "/assets/%2e%2e%2fsecret.txt"), 404, "not_found")
    assert_error(ui_api.call("GET", "/secret.txt"), 404, "not_found")
    # the API is unaffected
    assert ui_api.call("GET", "/health").body == {"status": "ok"}


def test_an_unbuilt_ui_says_how_to_build_it(api: Api, tmp_path: Path) -> None:
    api.app = create_app(api.scheduler, static_dir=tmp_path / "no-ui")
    body = assert_error(api.call("GET", "/"), 404, "not_found", "make install")
    assert "npm run build" in body["message"]


# ------------------------------------------------------------------ log pages
def test_a_log_read_in_small_pages_reassembles_exactly(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    text = "".join(f"line {i} é€\n" for i in range(50))  # 1-, 2- and 3-byte characters
    api.finish(run_id, "extract", log=text)
    path = f"/runs/{run_id}/tasks/extract/attempts/1/log"
    pieces, offset, pages = [], 0, 0
    size = len(text.encode("utf-8"))
    while offset < size:
        reply = api.call("GET", path, query={"offset": str(offset), "limit": "7"})
        assert reply.status == 200, reply.text
        assert reply.headers["X-Log-Size"] == str(size)
        chunk = reply.text
        assert 0 < len(chunk.encode("utf-8")) <= 7
        pieces.append(chunk)
        offset = int(reply.headers["X-Next-Offset"])
        pages += 1
    assert "".join(pieces) == text
    assert pages >= size // 7


def test_a_log_limit_inside_a_character_returns_that_character(api: Api) -> None:
    api.apply()
    run_id = api.trigger()
    api.finish(run_id, "extract", log="€x")  # € is 3 bytes
    path = f"/runs/{run_id}/tasks/extract/attempts/1/log"
    reply = api.call("GET", path, query={"limit": "1"})
    assert reply.text == "€"
    assert reply.headers["X-Next-Offset"] == "3"
    assert api.call("GET", path, query={"offset": "3", "limit": "1"}).text == "x"
    assert_error(api.call("GET", path, query={"limit": "0"}), 422, "invalid_request", "limit")
    assert_error(
        api.call("GET", path, query={"limit": str(10**9)}), 422, "invalid_request", "limit"
    )
