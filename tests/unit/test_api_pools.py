"""``/pools`` and force-start over the REST API (SQLite store, no processes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.test_api_app import Api, _build, assert_error

POOLED = """
name: pooled
tasks:
  a: {type: shell, command: "true", pool: wh, priority: 1}
  b: {type: shell, command: "true", pool: wh}
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = _build(tmp_path)
    yield built
    built.scheduler.store.close()  # type: ignore[attr-defined]


def test_pools_are_set_listed_viewed_and_deleted(api: Api) -> None:
    # an unknown pool is refused at apply, naming the task's field
    reply = api.call("POST", "/workflows", {"source": POOLED})
    body = assert_error(reply, 400, "invalid_input", "unknown pool 'wh'")
    assert "tasks.a.pool" in str(body)
    # bad sizes and names change nothing
    assert api.call("PUT", "/pools/wh", {"slots": 0}).status == 422
    assert_error(api.call("PUT", "/pools/wh", {"slots": True}), 422, "invalid_request",
                 "body.slots", "valid integer")  # fmt: skip
    assert api.call("PUT", "/pools/Bad Name", {"slots": 1}).status in (400, 404, 422)
    assert api.call("GET", "/pools").body == {"pools": []}
    # a project pool
    reply = api.call("PUT", "/pools/wh", {"slots": 1}, query={"project": "default"})
    assert reply.status == 200, reply.text
    assert reply.body == {
        "name": "wh",
        "project": "default",
        "slots": 1,
        "used": 0,
        "waiting": None,
        "warnings": [],
    }
    api.call("PUT", "/pools/other", {"slots": 3})  # global
    listed = api.call("GET", "/pools", query={"project": "default"}).body["pools"]
    assert [(p["project"], p["name"]) for p in listed] == [(None, "other"), ("default", "wh")]
    # a run whose two tasks share the one slot
    api.apply(POOLED)
    run_id = api.trigger("pooled")
    api.scheduler.dispatch_ready()
    view = api.call("GET", "/pools/wh", query={"project": "default"}).body
    assert view["used"] == 1
    assert view["waiting"] == 1
    assert view["hidden"] == 0
    assert [t["task_id"] for t in view["running_tasks"]] == ["a"]  # priority 1 first
    assert [t["task_id"] for t in view["waiting_tasks"]] == ["b"]
    # in use: not deleted
    reply = api.call("DELETE", "/pools/wh", query={"project": "default"})
    assert_error(reply, 409, "conflict", "in use")
    # force start the waiting task
    reply = api.call("POST", f"/runs/{run_id}/tasks/b/force-start")
    assert reply.status == 200, reply.text
    assert reply.body["state"] == "running"
    assert_error(api.call("POST", f"/runs/{run_id}/tasks/b/force-start"), 409, "conflict")
    view = api.call("GET", "/pools/wh", query={"project": "default"}).body
    assert (view["used"], view["waiting"]) == (2, 0)
    api.finish(run_id, "a")
    api.finish(run_id, "b")
    assert api.call("GET", "/pools/wh", query={"project": "default"}).body["used"] == 0
    assert api.call("DELETE", "/pools/wh", query={"project": "default"}).status == 200
    assert_error(api.call("GET", "/pools/wh", query={"project": "default"}), 404, "not_found")
    assert "/pools/{name}" in api.call("GET", "/openapi.json").body["paths"]


def test_a_task_whose_pool_was_deleted_after_apply_fails_saying_so(api: Api) -> None:
    api.call("PUT", "/pools/gone", {"slots": 1})
    api.apply(
        "name: late\ntasks:\n  a: {type: shell, command: 'true'}\n"
        "  b: {type: shell, command: 'true', pool: gone, depends_on: [a]}\n"
    )
    assert api.call("DELETE", "/pools/gone").status == 200  # nothing holds or waits for it yet
    run_id = api.trigger("late")
    api.finish(run_id, "a")
    api.scheduler.dispatch_ready()
    b = api.task(run_id, "b")
    assert b.state.value == "failed"
    assert b.error == "pool 'gone' does not exist"
    assert api.scheduler.store.get_run(run_id).state.value == "failed"


def test_a_pool_a_paused_run_s_ready_task_waits_for_is_not_deleted(api: Api) -> None:
    """A paused run's ready task is queued in its run, not yet in its pool's queue: the
    pool showed '0 waiting', its delete was accepted, and the task failed when the run
    resumed ('pool does not exist'), where a running run's would have held the delete."""
    api.call("PUT", "/pools/p4", {"slots": 1})
    api.apply(
        "name: paused\ntasks:\n  a: {type: shell, command: 'true'}\n"
        "  t2: {type: shell, command: 'true', pool: p4, depends_on: [a]}\n"
    )
    run_id = api.trigger("paused")
    api.scheduler.dispatch_ready()
    assert api.call("POST", f"/runs/{run_id}/pause").status == 200
    api.finish(run_id, "a")
    assert api.task(run_id, "t2").state.value == "queued"

    reply = api.call("DELETE", "/pools/p4")
    assert_error(reply, 409, "conflict", "in use", f"task t2 of run {run_id}", "paused")
    assert api.call("GET", "/pools/p4").status == 200

    assert api.call("POST", f"/runs/{run_id}/resume").status == 200
    api.scheduler.dispatch_ready()
    api.finish(run_id, "t2")
    assert api.scheduler.store.get_run(run_id).state.value == "succeeded"
    assert api.call("DELETE", "/pools/p4").status == 200  # nothing waits for it now


def test_shrinking_a_pool_below_what_tasks_need_warns_naming_them(api: Api) -> None:
    # GIVEN a global pool of 3 used by a task needing 3 and one needing 2, and a project with
    # a pool of its own of the same name (its tasks use that one)
    api.call("PUT", "/pools/p4", {"slots": 3})
    api.call("PUT", "/pools/p4", {"slots": 5}, query={"project": "sales"})
    wide = "name: wide\n{project}tasks:\n  w: {{type: shell, command: 'true', pool: p4, pool_slots: 3}}\n"
    api.apply(wide.format(project=""))
    api.apply(wide.format(project="project: sales\n"))
    api.apply("name: fits\ntasks:\n  f: {type: shell, command: 'true', pool: p4, pool_slots: 2}\n")
    # WHEN the global pool shrinks to 2 THEN it is changed, with a warning naming the task
    # that no longer fits (not the project's, which uses its own pool)
    reply = api.call("PUT", "/pools/p4", {"slots": 2})
    assert reply.status == 200, reply.text
    assert reply.body["slots"] == 2
    assert reply.body["warnings"] == [
        "workflow default/wide: task w needs 3 slot(s) (pool_slots: 3) of pool 'p4', which has "
        "2 now: it fails when it becomes ready (one waiting already, at the next pass over the "
        "queue) until the pool has 3 again or the task's pool_slots is lowered"
    ]
    # AND the task then fails at once, saying why
    run_id = api.trigger("wide")
    api.scheduler.dispatch_ready()
    w = api.task(run_id, "w")
    assert w.state.value == "failed"
    assert "the task needs 3 slot(s) (pool_slots: 3) and the pool has 2" in (w.error or "")
    # a pool grown, or set to the same size, warns of nothing (and reads no workflow)
    assert api.call("PUT", "/pools/p4", {"slots": 3}).body["warnings"] == []
    # the project's pool shrunk: its own workflow's task
    reply = api.call("PUT", "/pools/p4", {"slots": 1}, query={"project": "sales"})
    assert [w.split(":")[0] for w in reply.body["warnings"]] == ["workflow sales/wide"]
