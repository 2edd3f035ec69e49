"""Every operation that acts on a child run in another project, or will start one there,
needs the operator role in that project, like triggering (README section 12): stopping,
pausing or resuming a parent run (each cascades into its child runs), force-starting a
sub-workflow task waiting in a pool, unpausing the schedule of a workflow whose runs start
runs there, and resuming or cancelling a backfill of one. A caller without it gets 403
naming the project, and nothing changes; a pause, resume or stop is checked against the
unfinished child runs themselves too (one may have pinned an older version that reaches
further than the latest). Pausing a schedule or a backfill only holds things back: an
operator of the parent's project alone may. Through the API, with real roles: ``operator``
is operator in project ``a`` only (no role in ``b``); ``both`` is operator in ``a`` and
``b``, and may. The checks read the store through its port: the last test runs them on
the local store and on DynamoDB (the AWS API's)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store
from tests.unit.test_authorization_matrix import World, world  # noqa: F401
from tests.unit.test_subworkflow_rerun_authz import SUBX, fail, state

from stratoflow.adapters.local.identity import SqliteIdentities
from stratoflow.auth import Forbidden, Principal, Role
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.engine import subworkflow as rules
from stratoflow.engine.backfill import BackfillState
from stratoflow.service import Finished, Scheduler

CHILD = ("b", "flow")
T0 = datetime(2026, 6, 1, tzinfo=UTC)
DAILY = """\
name: daily
project: a
schedule: {cron: '0 0 * * *', start: 2026-01-01T00:00:00}
tasks: {t: {type: workflow, workflow: b/flow}}
"""
ONE_DAY = {"start": "2026-01-01", "end": "2026-01-01"}
POOLED = """\
name: pooledsub
project: a
tasks:
  hold: {type: shell, command: "true", pool: wh, priority: 1}
  t: {type: workflow, workflow: b/flow, pool: wh}
"""


@pytest.fixture
def w(world: World, tmp_path: Path) -> World:  # noqa: F811
    """The world, with ``both``: operator in ``a`` and in ``b`` (no superuser)."""
    identities = SqliteIdentities(tmp_path / "state.db")
    now = world.api.scheduler.clock.now()
    identities.create_user("both", superuser=False, now=now)
    identities.set_role("both", "a", Role.OPERATOR)
    identities.set_role("both", "b", Role.OPERATOR)
    world.tokens["both"] = identities.create_token("both", "t", now)[1]
    identities.close()
    return world


def refused(w: World, path: str, doing: str, **query: str) -> None:
    before = state(w), paused(w)
    reply = w.call("operator", "POST", path, None, **query)
    assert reply.status == 403, reply.text
    message = reply.body["message"]
    assert "may not trigger runs in project b" in message
    assert doing in message
    assert (state(w), paused(w)) == before  # nothing changed, in a or in b


def allowed(w: World, path: str, **query: str) -> Any:
    reply = w.call("both", "POST", path, None, **query)
    assert reply.status in (200, 201), reply.text
    return reply.body


def paused(w: World) -> dict[str, bool]:
    return {v.name: v.paused for v in w.store.list_workflows("a")}


def running_subx(w: World) -> tuple[str, str]:
    """A run of subx in a whose child run in b runs."""
    assert w.call("root", "POST", "/workflows", {"source": SUBX}).status == 201
    run_id = w.call("root", "POST", "/workflows/subx/runs", {}, project="a").body["run"]["id"]
    w.api.scheduler.step()
    child = rules.child_run_id(run_id, "t", CHILD)
    assert w.store.get_run(child).state is RunState.RUNNING
    return run_id, child


def test_stopping_a_parent_run_needs_operator_where_its_child_runs(w: World) -> None:
    run_id, child = running_subx(w)
    refused(w, f"/runs/{run_id}/stop", "stopping it")
    assert w.store.get_run(child).state is RunState.RUNNING
    allowed(w, f"/runs/{run_id}/stop")
    w.api.scheduler.step()
    assert w.store.get_run(run_id).state is RunState.STOPPED
    assert w.store.get_run(child).state is RunState.STOPPED


def test_pausing_and_resuming_a_parent_run_need_operator_where_its_child_runs(
    w: World,
) -> None:
    run_id, child = running_subx(w)
    refused(w, f"/runs/{run_id}/pause", "pausing it")
    assert w.store.get_run(child).state is RunState.RUNNING
    allowed(w, f"/runs/{run_id}/pause")
    assert w.store.get_run(child).state is RunState.PAUSED
    refused(w, f"/runs/{run_id}/resume", "resuming it")
    assert w.store.get_run(child).state is RunState.PAUSED
    allowed(w, f"/runs/{run_id}/resume")
    assert w.store.get_run(run_id).state is RunState.RUNNING
    assert w.store.get_run(child).state is RunState.RUNNING


def test_unpausing_a_schedule_that_starts_runs_in_another_project_needs_operator_there(
    w: World,
) -> None:
    assert w.call("root", "POST", "/workflows", {"source": DAILY}).status == 201
    assert w.call("root", "POST", "/workflows/daily/pause", None, project="a").status == 200
    refused(w, "/workflows/daily/unpause", "unpausing its schedule", project="a")
    assert paused(w)["daily"] is True
    allowed(w, "/workflows/daily/unpause", project="a")
    assert paused(w)["daily"] is False
    # pausing it only holds runs back: the operator of a alone may
    reply = w.call("operator", "POST", "/workflows/daily/pause", None, project="a")
    assert reply.status == 200, reply.text
    assert paused(w)["daily"] is True


def test_force_starting_a_subworkflow_task_needs_operator_in_its_project(w: World) -> None:
    # GIVEN a run in a whose sub-workflow task t waits in pool wh for the slot hold holds
    w.api.scheduler.set_pool("wh", 1, "a")
    assert w.call("root", "POST", "/workflows", {"source": POOLED}).status == 201
    made = w.call("root", "POST", "/workflows/pooledsub/runs", {}, project="a")
    run_id = made.body["run"]["id"]
    w.api.scheduler.step()
    assert w.store.get_task(run_id, "hold").state is TaskState.RUNNING
    assert w.store.get_task(run_id, "t").state is not TaskState.RUNNING
    child = rules.child_run_id(run_id, "t", CHILD)
    # WHEN the operator of a only force-starts t (it would start a run in b): refused
    refused(w, f"/runs/{run_id}/tasks/t/force-start", "force-starting its tasks")
    # AND an operator of both may: the child run in b is made
    allowed(w, f"/runs/{run_id}/tasks/t/force-start")
    w.api.scheduler.step()
    assert w.store.get_run(child).state is RunState.RUNNING


def daily_backfill(w: World) -> str:
    assert w.call("root", "POST", "/workflows", {"source": DAILY}).status == 201
    body = {"start": "2026-01-01", "end": "2026-01-03"}
    made = w.call("root", "POST", "/workflows/daily/backfills", body, project="a")
    assert made.status == 201, made.text
    return str(made.body["id"])


def test_cancelling_a_backfill_whose_runs_start_child_runs_needs_operator_there(
    w: World,
) -> None:
    backfill_id = daily_backfill(w)
    w.api.scheduler.step()
    refused(w, f"/backfills/{backfill_id}/cancel", "cancelling backfill")
    assert w.store.get_backfill(backfill_id).state is BackfillState.RUNNING
    allowed(w, f"/backfills/{backfill_id}/cancel")
    assert w.store.get_backfill(backfill_id).state is BackfillState.CANCELLED


def test_resuming_a_backfill_whose_runs_start_child_runs_needs_operator_there(
    w: World,
) -> None:
    backfill_id = daily_backfill(w)
    # pausing only holds its dates back: the operator of a alone may
    assert w.call("operator", "POST", f"/backfills/{backfill_id}/pause").status == 200
    refused(w, f"/backfills/{backfill_id}/resume", "resuming backfill")
    assert w.store.get_backfill(backfill_id).state is BackfillState.PAUSED
    allowed(w, f"/backfills/{backfill_id}/resume")
    assert w.store.get_backfill(backfill_id).state is BackfillState.RUNNING


def test_a_dependent_backfill_leaves_out_a_workflow_whose_subworkflows_reach_elsewhere(
    w: World,
) -> None:
    # GIVEN plain in a, and down in a: it waits on plain and its sub-workflow
    # starts a run in b
    schedule = "schedule: {cron: '0 0 * * *', start: 2026-01-01T00:00:00}\n"
    plain = "name: plain\nproject: a\n" + schedule + "tasks: {t: {type: shell, command: 'true'}}\n"
    down = (
        "name: down\nproject: a\n" + schedule + "tasks:\n"
        "  wait: {type: dependency, all: [{workflow: plain, date: today}]}\n"
        "  t: {type: workflow, workflow: b/flow, depends_on: [wait]}\n"
    )
    for source in (plain, down):
        assert w.call("root", "POST", "/workflows", {"source": source}).status == 201
    body = {"start": "2026-01-01", "end": "2026-01-01", "dependents": True}
    # WHEN the operator of a only backfills plain with its dependents: down is left out, as
    # a workflow of a project the operator may not trigger in would be
    made = w.call("operator", "POST", "/workflows/plain/backfills", body, project="a")
    assert made.status == 201, made.text
    assert made.body["dependents"] == []
    assert [b.workflow for b in w.store.list_backfills("a")] == ["plain"]
    # AND an operator of both gets down's backfill too
    made = w.call("both", "POST", "/workflows/plain/backfills", body, project="a")
    assert made.status == 201, made.text
    assert [d["workflow"] for d in made.body["dependents"]] == ["down"]


def outer_over_old_mid(w: World) -> tuple[str, str]:
    """outer in a, whose sub-workflow runs a/mid, whose version 1 starts b/flow: a run of
    outer, its child run of mid and that one's child run in b all running; then mid's
    version 2, which no longer reaches b (its run goes on under version 1)."""
    mid1 = "name: mid\nproject: a\ntasks: {t: {type: workflow, workflow: b/flow}}\n"
    outer = "name: outer\nproject: a\ntasks: {m: {type: workflow, workflow: mid}}\n"
    for source in (mid1, outer):
        assert w.call("root", "POST", "/workflows", {"source": source}).status == 201
    run_id = w.call("root", "POST", "/workflows/outer/runs", {}, project="a").body["run"]["id"]
    for _ in range(3):
        w.api.scheduler.step()
    mid = rules.child_run_id(run_id, "m", ("a", "mid"))
    grandchild = rules.child_run_id(mid, "t", CHILD)
    assert w.store.get_run(grandchild).state is RunState.RUNNING
    mid2 = "name: mid\nproject: a\ntasks: {t: {type: shell, command: 'true'}}\n"
    assert w.call("root", "POST", "/workflows", {"source": mid2}).status == 201
    return run_id, grandchild


def test_stopping_reaches_the_child_runs_of_older_versions_too(w: World) -> None:
    run_id, grandchild = outer_over_old_mid(w)
    # WHEN the operator of a only stops, or pauses, outer: refused, naming b's run
    for op, doing in (("stop", "stopping it"), ("pause", "pausing it")):
        before = state(w)
        reply = w.call("operator", "POST", f"/runs/{run_id}/{op}")
        assert reply.status == 403, reply.text
        assert "may not operate runs in project b" in reply.body["message"]
        assert grandchild in reply.body["message"]
        assert doing in reply.body["message"]
        assert state(w) == before
    # AND an operator of both may: the run in b is stopped with them
    allowed(w, f"/runs/{run_id}/stop")
    for _ in range(3):
        w.api.scheduler.step()
    assert w.store.get_run(grandchild).state is RunState.STOPPED


def test_marking_a_running_subworkflow_task_checks_the_child_runs_it_stops(w: World) -> None:
    run_id, grandchild = outer_over_old_mid(w)
    before = state(w)
    path = f"/runs/{run_id}/tasks/m/mark"
    reply = w.call("operator", "POST", path, {"state": "succeeded"})
    assert reply.status == 403, reply.text
    assert reply.body["message"] == (
        "operator may not trigger runs in project b, where a sub-workflow of a/mid starts one; "
        "marking its tasks needs operator there"
    )
    assert state(w) == before
    assert w.call("both", "POST", path, {"state": "succeeded"}).status == 200
    for _ in range(3):
        w.api.scheduler.step()
    assert w.store.get_run(grandchild).state is RunState.STOPPED


def test_cancelling_a_backfill_checks_the_versions_its_runs_rerun_under(w: World) -> None:
    # GIVEN a daily workflow whose version 1 starts a sub-workflow in b, and a failed run of
    # that version for 2026-01-01
    assert w.call("root", "POST", "/workflows", {"source": DAILY}).status == 201
    made = w.call("root", "POST", "/workflows/daily/backfills", ONE_DAY, project="a")
    w.api.scheduler.step()
    run_id = made.body["dates"][0]["run_id"]
    fail(w, rules.child_run_id(run_id, "t", CHILD), "first")
    assert w.store.get_run(run_id).state is RunState.FAILED
    # AND version 2 (the latest) reaches no other project; a backfill of it reruns that run
    # under version 1, so its child run in b runs again
    v2 = DAILY.replace(
        "{t: {type: workflow, workflow: b/flow}}", "{t: {type: shell, command: 'true'}}"
    )
    assert w.call("root", "POST", "/workflows", {"source": v2}).status == 201
    rerun = {**ONE_DAY, "rerun": "failed"}
    made = w.call("root", "POST", "/workflows/daily/backfills", rerun, project="a")
    assert made.status == 201, made.text
    w.api.scheduler.step()
    child = rules.child_run_id(run_id, "t", CHILD)
    assert w.store.get_run(child).state is RunState.RUNNING
    # WHEN the operator of a only cancels it: refused (it would stop the run in b)
    refused(w, f"/backfills/{made.body['id']}/cancel", "cancelling backfill")
    assert w.store.get_run(child).state is RunState.RUNNING
    # AND an operator of both may
    allowed(w, f"/backfills/{made.body['id']}/cancel")
    w.api.scheduler.step()
    assert w.store.get_run(child).state is RunState.STOPPED


@pytest.fixture(params=STORE_KINDS)
def scheduler(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Scheduler]:
    with state_store(request.param, tmp_path) as store:
        yield Scheduler(store, store, RecordingDispatcher(), FakeClock(T0))


def test_the_checks_read_the_child_runs_on_both_stores(scheduler: Scheduler) -> None:
    # GIVEN outer -> a/mid (version 1) -> b/flow, all running, then mid's version 2 that
    # no longer reaches b: on the local store and on DynamoDB (the AWS API's)
    scheduler.apply("name: flow\nproject: b\ntasks: {x: {type: shell, command: 'true'}}\n")
    scheduler.apply("name: mid\nproject: a\ntasks: {t: {type: workflow, workflow: b/flow}}\n")
    scheduler.apply("name: outer\nproject: a\ntasks: {m: {type: workflow, workflow: mid}}\n")
    run, _ = scheduler.trigger("a", "outer")
    for _ in range(3):
        scheduler.step()
    mid = rules.child_run_id(run.id, "m", ("a", "mid"))
    assert scheduler.store.get_run(rules.child_run_id(mid, "t", CHILD)).state is RunState.RUNNING
    scheduler.apply("name: mid\nproject: a\ntasks: {t: {type: shell, command: 'true'}}\n")
    only_a = Principal("carol", {"a": Role.OPERATOR})
    both = Principal("dave", {"a": Role.OPERATOR, "b": Role.OPERATOR})
    subworkflows = scheduler.subworkflows
    # THEN the latest versions reach only a, but the running child run in b is found, and
    # so is the version of mid its child run pinned (what a rerun would run again)
    subworkflows.check_caller_run(only_a, run, "stopping it")
    with pytest.raises(Forbidden, match="may not operate runs in project b"):
        subworkflows.check_caller_children(only_a, run, "stopping it")
    pinned = "carol may not trigger runs in project b, where a sub-workflow of a/mid starts one"
    with pytest.raises(Forbidden, match=pinned):
        subworkflows.check_caller_rerun(only_a, run, "rerunning it")
    subworkflows.check_caller_run(both, run, "stopping it")
    subworkflows.check_caller_children(both, run, "stopping it")
    subworkflows.check_caller_rerun(both, run, "rerunning it")


DEEP = "name: deep\nproject: c\ntasks: {first: {type: shell, command: 'true'}}\n"
MID_V1 = "name: mid\nproject: b\ntasks: {t: {type: workflow, workflow: c/deep}}\n"
MID_V2 = "name: mid\nproject: b\ntasks: {t: {type: shell, command: 'true'}}\n"
TOP = "name: top\nproject: a\ntasks: {t: {type: workflow, workflow: b/mid}}\n"


def failed_top(w: World) -> tuple[str, str]:
    """A failed run of a/top whose child run of b/mid (v1) failed with its child run of
    c/deep; b/mid's latest version (v2) then reaches no other project."""
    for source in (DEEP, MID_V1, TOP):
        assert w.call("root", "POST", "/workflows", {"source": source}).status == 201
    top = w.call("root", "POST", "/workflows/top/runs", {}, project="a").body["run"]["id"]
    w.api.scheduler.step()
    mid = rules.child_run_id(top, "t", ("b", "mid"))
    w.api.scheduler.step()
    deep = rules.child_run_id(mid, "t", ("c", "deep"))
    fail(w, deep, "first")
    assert [w.store.get_run(r).state for r in (deep, mid, top)] == [RunState.FAILED] * 3
    assert w.call("root", "POST", "/workflows", {"source": MID_V2}).status == 201
    return top, deep


def test_rerunning_a_run_is_checked_against_the_versions_its_child_runs_pinned(
    w: World,
) -> None:
    """A rerun of ``a/top`` reruns its child run of ``b/mid``, in the version that child
    pinned (v1, whose sub-workflow starts runs in ``c``), not in ``b/mid``'s latest (v2,
    which reaches no other project): operator in ``a`` and ``b`` is not enough to restart
    a run in ``c``."""
    top, deep = failed_top(w)
    before = state(w)
    reply = w.call("both", "POST", f"/runs/{top}/rerun", {"from": "t"})
    assert reply.status == 403, reply.text
    assert reply.body["message"] == (
        "both may not trigger runs in project c, where a sub-workflow of b/mid starts one; "
        "rerunning it needs operator there"
    )
    assert state(w) == before  # nothing changed, in a, b or c
    # the same rerun by a superuser restarts all three
    assert w.call("root", "POST", f"/runs/{top}/rerun", {"from": "t"}).status == 200
    for _ in range(3):
        w.api.scheduler.step()
    assert w.store.get_run(deep).state in (RunState.RUNNING, RunState.QUEUED)


def test_a_run_with_more_child_runs_than_are_checked_is_refused_but_to_a_superuser(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stratoflow import subworkflows

    top, _ = failed_top(w)  # top -> mid -> deep: two child runs to read
    identities = SqliteIdentities(w.store.path)
    now = w.api.scheduler.clock.now()
    identities.create_user("all", superuser=False, now=now)
    for project in ("a", "b", "c"):
        identities.set_role("all", project, Role.OPERATOR)
    w.tokens["all"] = identities.create_token("all", "t", now)[1]
    identities.close()
    monkeypatch.setattr(subworkflows, "MAX_CHILD_RUNS_CHECKED", 1)
    before = state(w)
    reply = w.call("all", "POST", f"/runs/{top}/rerun", {"from": "t"})
    assert reply.status == 403, reply.text
    assert reply.body["message"] == (
        f"run {top} has more than 1 sub-workflow child runs to check for the projects they "
        "reach; rerunning it needs a superuser"
    )
    assert state(w) == before
    assert w.call("root", "POST", f"/runs/{top}/rerun", {"from": "t"}).status == 200


def test_a_backfill_rerun_is_checked_against_the_versions_its_child_runs_pinned(
    w: World,
) -> None:
    """``POST /backfills`` with ``rerun`` reruns the existing runs of its dates, and so
    their child runs in the versions they pinned: refused as the run's own rerun is."""
    daily_top = TOP.replace("name: top", "name: dtop").replace(
        "tasks:", "schedule: {cron: '0 0 * * *', start: 2026-01-01T00:00:00}\ntasks:"
    )
    for source in (DEEP, MID_V1, daily_top):
        assert w.call("root", "POST", "/workflows", {"source": source}).status == 201
    made = w.call("root", "POST", "/workflows/dtop/backfills", ONE_DAY, project="a")
    assert made.status == 201, made.text
    top = made.body["dates"][0]["run_id"]
    w.api.scheduler.step()
    mid = rules.child_run_id(top, "t", ("b", "mid"))
    w.api.scheduler.step()
    fail(w, rules.child_run_id(mid, "t", ("c", "deep")), "first")
    assert w.store.get_run(top).state is RunState.FAILED
    assert w.call("root", "POST", "/workflows", {"source": MID_V2}).status == 201
    before = state(w)
    again = {**ONE_DAY, "rerun": "failed"}
    reply = w.call("both", "POST", "/workflows/dtop/backfills", again, project="a")
    assert reply.status == 403, reply.text
    assert reply.body["message"] == (
        "both may not trigger runs in project c, where a sub-workflow of b/mid starts one; "
        "backfilling it with --rerun needs operator there"
    )
    assert state(w) == before
    allowed = w.call("root", "POST", "/workflows/dtop/backfills", again, project="a")
    assert allowed.status == 201, allowed.text


def test_a_dependent_backfill_leaves_out_a_workflow_whose_runs_child_runs_reach_elsewhere(
    w: World,
) -> None:
    """With ``rerun`` and ``dependents``, a dependent workflow whose existing runs would be
    rerun, with the child runs they made in the versions those pinned, is left out where
    those reach a project the caller may not trigger in (as one whose latest version
    reaches there is); the root's own runs are checked as a plain backfill's."""
    schedule = "schedule: {cron: '0 0 * * *', start: 2026-01-01T00:00:00}\n"
    plain = "name: plain\nproject: a\n" + schedule + "tasks: {t: {type: shell, command: 'true'}}\n"
    down = (
        "name: down\nproject: a\n" + schedule + "tasks:\n"
        "  wait: {type: dependency, all: [{workflow: plain, date: today}]}\n"
        "  t: {type: workflow, workflow: b/mid, depends_on: [wait]}\n"
    )
    for source in (DEEP, MID_V1, plain, down):
        assert w.call("root", "POST", "/workflows", {"source": source}).status == 201
    body: dict[str, Any] = {"start": "2026-01-01", "end": "2026-01-01", "dependents": True}
    made = w.call("root", "POST", "/workflows/plain/backfills", body, project="a")
    assert made.status == 201, made.text
    (down_backfill,) = made.body["dependents"]
    scheduler = w.api.scheduler
    plain_run = made.body["dates"][0]["run_id"]
    scheduler.step()
    ok = AttemptResult(AttemptStatus.SUCCEEDED)
    scheduler.on_finished([Finished(plain_run, "t", 1, ok)])
    down_run = w.store.get_backfill(down_backfill["id"]).dates[0].run_id
    for _ in range(4):  # down's wait sees plain succeeded, its sub-workflow starts mid, deep
        scheduler.step()
    mid = rules.child_run_id(down_run, "t", ("b", "mid"))
    fail(w, rules.child_run_id(mid, "t", ("c", "deep")), "first")
    assert w.store.get_run(down_run).state is RunState.FAILED
    assert w.call("root", "POST", "/workflows", {"source": MID_V2}).status == 201
    # WHEN an operator of a and b backfills plain again with --rerun and its dependents
    again = {**body, "rerun": "all"}
    made = w.call("both", "POST", "/workflows/plain/backfills", again, project="a")
    # THEN plain is backfilled, down left out: rerunning its run would restart a run in c
    assert made.status == 201, made.text
    assert made.body["dependents"] == []
    # AND a superuser gets down's too
    made = w.call("root", "POST", "/workflows/plain/backfills", again, project="a")
    assert made.status == 201, made.text
    assert [d["workflow"] for d in made.body["dependents"]] == ["down"]
