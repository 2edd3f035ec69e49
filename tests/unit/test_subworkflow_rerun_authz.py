"""Rerunning a run, marking its tasks and backfilling with ``--rerun`` (re)start its
sub-workflow tasks, and so runs in the projects they reach: like triggering it, they need
the operator role in each of those projects (README section 12). A caller without it gets
403 naming the project, and nothing changes. Through the API, with real roles: ``operator``
is operator in project ``a`` only (no role in ``b``); ``root`` is a superuser."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.unit.test_authorization_matrix import World, world  # noqa: F401

from stratoflow.engine import AttemptResult, AttemptStatus, RunState
from stratoflow.engine import subworkflow as rules
from stratoflow.ports import RunQuery
from stratoflow.service import Finished, scheduled_run_id

SUBX = "name: subx\nproject: a\ntasks: {t: {type: workflow, workflow: b/flow}}\n"
GATED = """\
name: gated
project: a
tasks:
  u: {type: shell, command: "true"}
  t: {type: workflow, workflow: b/flow, depends_on: [u]}
"""


def fail(world: World, run_id: str, task_id: str) -> None:  # noqa: F811
    scheduler = world.api.scheduler
    scheduler.step()
    task = world.store.get_task(run_id, task_id)
    failed = AttemptResult(AttemptStatus.FAILED)
    scheduler.on_finished([Finished(run_id, task_id, task.attempt, failed)])
    for _ in range(3):
        scheduler.step()


def state(world: World) -> Any:  # noqa: F811
    """Every run and task state, and how many runs there are."""
    runs = world.store.list_runs(RunQuery(limit=1000))
    return sorted(
        (r.id, r.state, tuple((t.task_id, t.state, t.attempt) for t in world.store.get_tasks(r.id)))
        for r in runs
    )


def refused(world: World, path: str, body: Any, doing: str) -> None:  # noqa: F811
    before = state(world)
    reply = world.call("operator", "POST", path, body)
    assert reply.status == 403, reply.text
    message = reply.body["message"]
    assert "may not trigger runs in project b" in message
    assert doing in message
    assert state(world) == before  # nothing changed


def failed_subx(world: World) -> tuple[str, str]:  # noqa: F811
    """A run of subx whose child run in b failed, so the parent failed too."""
    assert world.call("root", "POST", "/workflows", {"source": SUBX}).status == 201
    made = world.call("root", "POST", "/workflows/subx/runs", {}, project="a")
    run_id = made.body["run"]["id"]
    world.api.scheduler.step()
    child = rules.child_run_id(run_id, "t", ("b", "flow"))
    fail(world, child, "first")
    assert world.store.get_run(child).state is RunState.FAILED
    assert world.store.get_run(run_id).state is RunState.FAILED
    return run_id, child


def test_rerun_from_the_subworkflow_task_needs_operator_in_its_project(
    world: World,  # noqa: F811
) -> None:
    run_id, child = failed_subx(world)
    refused(world, f"/runs/{run_id}/rerun", {"from": "t"}, "rerunning it")
    # AND a caller who may trigger in b may (here a superuser): the child runs again
    assert world.call("root", "POST", f"/runs/{run_id}/rerun", {"from": "t"}).status == 200
    world.api.scheduler.step()
    assert world.store.get_run(child).state is RunState.RUNNING


def test_rerun_of_the_failed_tasks_needs_operator_in_its_project(
    world: World,  # noqa: F811
) -> None:
    run_id, _ = failed_subx(world)
    refused(world, f"/runs/{run_id}/rerun", {}, "rerunning it")


def test_marking_a_task_that_gates_a_subworkflow_needs_operator_in_its_project(
    world: World,  # noqa: F811
) -> None:
    assert world.call("root", "POST", "/workflows", {"source": GATED}).status == 201
    run_id = world.call("root", "POST", "/workflows/gated/runs", {}, project="a").body["run"]["id"]
    fail(world, run_id, "u")
    assert world.store.get_run(run_id).state is RunState.FAILED
    # marking u succeeded would start t, and so a run in b
    refused(world, f"/runs/{run_id}/tasks/u/mark", {"state": "succeeded"}, "marking its tasks")
    # AND a caller who may trigger in b may: the child run in b is made
    ok = world.call("root", "POST", f"/runs/{run_id}/tasks/u/mark", {"state": "succeeded"})
    assert ok.status == 200, ok.text
    world.api.scheduler.step()
    world.store.get_run(rules.child_run_id(run_id, "t", ("b", "flow")))


def test_a_backfill_that_reruns_an_older_version_needs_operator_where_it_reaches(
    world: World,  # noqa: F811
) -> None:
    # GIVEN a daily workflow whose version 1 starts a sub-workflow in b, and a failed run
    # of that version for 2026-01-01
    schedule = "schedule: {cron: '0 0 * * *', start: 2026-01-01T00:00:00}\n"
    v1 = "name: daily\nproject: a\n" + schedule + "tasks: {t: {type: workflow, workflow: b/flow}}\n"
    assert world.call("root", "POST", "/workflows", {"source": v1}).status == 201
    day = datetime(2026, 1, 1, tzinfo=UTC)
    run, _ = world.api.scheduler.trigger(
        "a", "daily", logical_date=day, run_id=scheduled_run_id("a", "daily", day),
        trigger="backfill",
    )  # fmt: skip
    world.api.scheduler.step()
    fail(world, rules.child_run_id(run.id, "t", ("b", "flow")), "first")
    assert world.store.get_run(run.id).state is RunState.FAILED
    # AND version 2 (the latest) reaches no other project
    v2 = "name: daily\nproject: a\n" + schedule + "tasks: {t: {type: shell, command: 'true'}}\n"
    assert world.call("root", "POST", "/workflows", {"source": v2}).status == 201
    # WHEN an operator of a only backfills that day with --rerun failed: the run reruns
    # under version 1, whose sub-workflow starts a run in b
    body = {"start": "2026-01-01", "end": "2026-01-01", "rerun": "failed"}
    before = state(world)
    reply = world.call("operator", "POST", "/workflows/daily/backfills", body, project="a")
    # THEN it is refused, naming b, and nothing changed (no backfill either)
    assert reply.status == 403, reply.text
    assert "may not trigger runs in project b" in reply.body["message"]
    assert "--rerun" in reply.body["message"]
    assert state(world) == before
    assert world.store.list_backfills("a") == []
    # AND without --rerun (new runs are the latest version's) the same operator may
    plain = {"start": "2026-01-02", "end": "2026-01-02"}
    made = world.call("operator", "POST", "/workflows/daily/backfills", plain, project="a")
    assert made.status == 201, made.text


UP = """\
name: up
project: b
tasks:
  t: {type: workflow, workflow: a/flow}
  after: {type: shell, command: "true", depends_on: [t]}
"""


def test_repairing_a_child_run_needs_operator_where_its_parent_takes_the_new_end(
    world: World,  # noqa: F811
) -> None:
    # GIVEN a run of b/up whose child run in a failed, so the parent failed with it
    assert world.call("root", "POST", "/workflows", {"source": UP}).status == 201
    run_id = world.call("root", "POST", "/workflows/up/runs", {}, project="b").body["run"]["id"]
    world.api.scheduler.step()
    child = rules.child_run_id(run_id, "t", ("a", "flow"))
    fail(world, child, "first")
    assert world.store.get_run(run_id).state is RunState.FAILED
    # WHEN an operator of a only reruns the child or marks its failed task (each would end
    # it again, and its parent in b would take that end and run again), THEN 403 naming b
    for path, body, doing in (
        (f"/runs/{child}/rerun", {}, "rerunning it"),
        (f"/runs/{child}/tasks/first/mark", {"state": "succeeded"}, "marking its tasks"),
    ):
        before = state(world)
        reply = world.call("operator", "POST", path, body)
        assert reply.status == 403, reply.text
        assert "may not operate runs in project b" in reply.body["message"]
        assert doing in reply.body["message"]
        assert state(world) == before
    # AND a caller who may operate in b may: the parent takes the child's new end
    ok = world.call("root", "POST", f"/runs/{child}/tasks/first/mark", {"state": "succeeded"})
    assert ok.status == 200, ok.text
    assert world.store.get_task(run_id, "t").state.value == "failed"  # second still to run
    scheduler = world.api.scheduler
    scheduler.step()
    second = world.store.get_task(child, "second")
    done = AttemptResult(AttemptStatus.SUCCEEDED)
    scheduler.on_finished([Finished(child, "second", second.attempt, done)])
    scheduler.step()
    assert world.store.get_run(child).state is RunState.SUCCEEDED
    assert world.store.get_task(run_id, "t").state.value == "succeeded"
    assert world.store.get_run(run_id).state is RunState.RUNNING  # after runs now


def test_marking_a_task_whose_child_was_rerun_on_its_own_stops_the_child(
    world: World,  # noqa: F811
) -> None:
    # GIVEN a run of a/subx whose child run in b failed, then was rerun on its own (by a
    # caller who may): the parent's task follows it, and a mark of that task stops it
    run_id, child = failed_subx(world)
    assert world.call("root", "POST", f"/runs/{child}/rerun", {}).status == 200
    world.api.scheduler.step()
    assert world.store.get_run(child).state is RunState.RUNNING
    # WHEN an operator of a only marks the parent's task, THEN 403 naming b (as for any
    # mark of a run whose sub-workflows reach b), nothing changed
    refused(world, f"/runs/{run_id}/tasks/t/mark", {"state": "skipped"}, "marking its tasks")
    # AND a caller who may operate in b may: the child is stopped, the mark stands
    ok = world.call("root", "POST", f"/runs/{run_id}/tasks/t/mark", {"state": "skipped"})
    assert ok.status == 200, ok.text
    assert world.store.get_run(child).state is RunState.STOPPED
    assert world.store.get_task(run_id, "t").state.value == "skipped"
