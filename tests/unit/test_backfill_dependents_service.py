"""Dependent mode on the scheduler service (both stores): a backfill of A also backfills B
and C (on A) and D (on B and C) with one run of D per date, even when two dependent-mode
backfills reach D at once; a downstream run waits for its upstream runs itself; pause,
resume and cancel reach the included backfills; the API shows progress by workflow and
date and includes only workflows of projects the caller may trigger."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store
from tests.unit.test_backfill_service import AuditLog, Events, Harness, call, fails_on

from stratoflow import cli_backfill
from stratoflow.api.app import create_app
from stratoflow.auth import Principal, Role
from stratoflow.engine import AttemptResult, AttemptStatus, RunState
from stratoflow.engine.backfill import Backfill, BackfillState
from stratoflow.errors import Conflict, InvalidInput
from stratoflow.ports import RunQuery
from stratoflow.service import Finished, Scheduler, scheduled_run_id


def wf(name: str, *upstreams: str, cron: str = "0 2 * * *") -> str:
    text = f"name: {name}\nschedule: {{cron: '{cron}', timezone: UTC}}\ntasks:\n"
    text += "  extract: {type: shell, command: 'echo {{ ds }}'}\n"
    if upstreams:
        items = ", ".join(f"{{workflow: {u}, date: today}}" for u in upstreams)
        text += f"  wait: {{type: dependency, all: [{items}]}}\n"
        text += "  load: {type: shell, depends_on: [wait, extract], command: echo load}\n"
    return text


DIAMOND = [wf("a"), wf("b", "a"), wf("c", "a", cron="0 3 * * *"), wf("d", "b", "c"), wf("e")]


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    events = Events()
    dispatcher = RecordingDispatcher()
    clock = FakeClock(datetime(2026, 6, 1, tzinfo=UTC))
    with state_store(request.param, tmp_path) as store:
        scheduler = Scheduler(store, store, dispatcher, clock, events)
        for text in DIAMOND:
            scheduler.apply(text)
        yield Harness(scheduler, store, dispatcher, events, clock)


def runs_of(h: Harness, workflow: str) -> list[str]:
    return [r.id for r in h.store.list_runs(RunQuery(workflow=workflow, limit=1000))]


def test_a_diamond_makes_one_run_of_each_workflow_per_date(h: Harness) -> None:
    root = h.backfills.create(
        "default", "a", start="2026-01-01", end="2026-01-03", parallel=2, dependents=True
    )
    group = h.backfills.group(root)
    assert [b.workflow for b in group] == ["b", "c", "d"]  # e depends on nothing: left out
    assert {b.parent for b in group} == {root.id}
    c = group[1]
    assert [d.logical_date.hour for d in c.dates] == [3, 3, 3]  # c's own schedule
    # a second dependent-mode backfill reaching d through c, at the same time
    other = h.backfills.create(
        "default", "c", start="2026-01-01", end="2026-01-03", parallel=3, dependents=True
    )
    assert [b.workflow for b in h.backfills.group(other)] == ["d"]
    h.drive()
    for b in [root, *group, other, *h.backfills.group(other)]:
        assert h.get(b).state is BackfillState.SUCCEEDED, h.get(b)
    for name in "abcd":
        made = runs_of(h, name)
        assert len(made) == 3, (name, made)  # one per date, never two
        assert Counter(made).most_common(1)[0][1] == 1
    d_runs = set(runs_of(h, "d"))
    assert d_runs == {
        scheduled_run_id("default", "d", datetime(2026, 1, day, 2, tzinfo=UTC)) for day in (1, 2, 3)
    }
    assert runs_of(h, "e") == []
    # the downstream runs were made alongside, and their dependency tasks waited for a's
    for run_id in d_runs:
        wait = h.store.get_task(run_id, "wait")
        assert wait.state.value == "succeeded"


def test_a_serial_root_failure_fails_the_dependents_at_that_date(h: Harness) -> None:
    root = h.backfills.create("default", "a", start="2026-01-01", end="2026-01-03", dependents=True)
    h.drive(fails_on("2026-01-02"))
    assert [d.state.value for d in h.get(root).dates] == ["succeeded", "failed", "not_run"]
    for child in h.backfills.group(root):
        states = [d.state.value for d in child.dates]
        assert states == ["succeeded", "failed", "not_run"], (child.workflow, states)
    # b's second run failed because its dependency on a failed (at once, not by a timeout)
    b_run = scheduled_run_id("default", "b", datetime(2026, 1, 2, 2, tzinfo=UTC))
    assert h.store.get_task(b_run, "wait").state.value == "failed"


def test_pause_resume_and_cancel_reach_the_included_backfills(h: Harness) -> None:
    root = h.backfills.create("default", "a", start="2026-01-01", end="2026-01-04", dependents=True)
    h.backfills.pause(root.id)
    assert {b.state for b in h.backfills.group(root)} == {BackfillState.PAUSED}
    h.backfills.resume(root.id)
    assert {b.state for b in h.backfills.group(root)} == {BackfillState.RUNNING}
    h.scheduler.step()
    h.backfills.cancel(root.id)
    assert h.get(root).state is BackfillState.CANCELLED
    assert {b.state for b in h.backfills.group(root)} == {BackfillState.CANCELLED}
    h.drive()
    assert all(r.state.terminal for r in h.store.list_runs(RunQuery(limit=1000)))
    assert RunState.STOPPED in {r.state for r in h.store.list_runs(RunQuery(limit=1000))}


def test_api_dependents_progress_by_workflow_and_date(h: Harness) -> None:
    audit = AuditLog()
    app = create_app(h.scheduler, readmodel=audit)  # type: ignore[arg-type]
    status, made = call(
        app, "POST", "/workflows/a/backfills",
        {"start": "2026-01-01", "end": "2026-01-02", "dependents": True},
    )  # fmt: skip
    assert status == 201, made
    assert [d["workflow"] for d in made["dependents"]] == ["b", "c", "d"]
    assert all(len(d["dates"]) == 2 and d["parent"] == made["id"] for d in made["dependents"])
    ids = [d["id"] for d in made["dependents"]]
    assert audit.entries[-1].details["dependents"] == ids
    assert call(app, "POST", f"/backfills/{made['id']}/pause")[0] == 200
    assert audit.entries[-1].details["dependents"] == ids  # the pause reached them all
    assert call(app, "POST", f"/backfills/{made['id']}/resume")[0] == 200
    h.drive()
    status, shown = call(app, "GET", f"/backfills/{made['id']}")
    assert status == 200
    assert shown["state"] == "succeeded"
    assert {d["workflow"]: d["counts"]["succeeded"] for d in shown["dependents"]} == {
        "b": 2, "c": 2, "d": 2,
    }  # fmt: skip
    status, listed = call(app, "GET", "/backfills", query={"project": "default", "workflow": "d"})
    assert listed["backfills"][0]["parent"] == made["id"]
    # without dependents: only the workflow itself
    status, alone = call(app, "POST", "/workflows/a/backfills", {"dates": ["2026-01-05"]})
    assert alone["dependents"] == []


def test_api_includes_only_workflows_of_projects_the_caller_may_trigger(h: Harness) -> None:
    other = wf("z", "default/a").replace("name: z\n", "name: z\nproject: other\n")
    h.scheduler.apply(other)
    viewer = Principal("op", {"default": Role.OPERATOR, "other": Role.VIEWER})
    app = create_app(h.scheduler, authenticate=lambda _: viewer)
    status, made = call(
        app, "POST", "/workflows/a/backfills",
        {"dates": ["2026-01-01"], "dependents": True},
    )  # fmt: skip
    assert status == 201, made
    assert [(d["project"], d["workflow"]) for d in made["dependents"]] == [
        ("default", "b"), ("default", "c"), ("default", "d"),
    ]  # fmt: skip
    assert h.backfills.list_backfills("other") == []
    operator = Principal("op2", {"default": Role.OPERATOR, "other": Role.OPERATOR})
    app = create_app(h.scheduler, authenticate=lambda _: operator)
    status, made = call(
        app, "POST", "/workflows/a/backfills",
        {"dates": ["2026-01-01"], "dependents": True},
    )  # fmt: skip
    assert ("other", "z") in {(d["project"], d["workflow"]) for d in made["dependents"]}
    # one who cannot see project other is not shown its backfill under the root
    status, shown = call(
        create_app(h.scheduler, authenticate=lambda _: Principal("v", {"default": Role.VIEWER})),
        "GET", f"/backfills/{made['id']}",
    )  # fmt: skip
    assert status == 200
    assert [d["workflow"] for d in shown["dependents"]] == ["b", "c", "d"]


@pytest.mark.parametrize("dies_at", [0, 1, 3])
def test_a_crash_while_creating_leaves_no_root_naming_a_missing_backfill(
    h: Harness, dies_at: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies at the ``dies_at``-th backfill write (the dependents are written
    first, the root last): no root names a backfill that does not exist; what was stored
    goes on (its runs' dependency tasks wait for upstream runs), and the request repeated
    makes the rest: every backfill ends, with one run per workflow and date in all."""
    store = h.store
    real = type(store).create_backfill
    written: list[str] = []

    def dying(self: object, backfill: Backfill) -> bool:
        if len(written) == dies_at:
            raise OSError("the process died")
        written.append(backfill.id)
        return real(store, backfill)

    monkeypatch.setattr(type(store), "create_backfill", dying)
    with pytest.raises(OSError, match="died"):
        h.backfills.create("default", "a", start="2026-01-01", end="2026-01-02", dependents=True)
    monkeypatch.undo()
    stored = [store.get_backfill(b) for b in written]
    assert all(b.parent is not None for b in stored)  # the root is the last write: not made
    h.backfills.reconcile()
    h.drive()
    again = h.backfills.create(
        "default", "a", start="2026-01-01", end="2026-01-02", dependents=True
    )
    h.drive()
    for b in [again, *h.backfills.group(again), *stored]:
        assert h.get(b).state is BackfillState.SUCCEEDED, h.get(b)
    for name in "abcd":
        assert len(runs_of(h, name)) == 2, name


def test_a_dependent_date_after_now_is_refused_before_anything_is_made(h: Harness) -> None:
    """The root's dates have all come, but c's own schedule fires at 03:00 on the last day,
    which has not: refused, naming c, and no backfill nor run of any of them is made."""
    h.clock.advance(2 * 3600 + 1800)  # 2026-06-01T02:30Z: a's 02:00 has come, c's 03:00 not
    with pytest.raises(InvalidInput) as err:
        h.backfills.create("default", "a", start="2026-05-31", end="2026-06-01", dependents=True)
    problem = err.value.problems[0]
    assert problem.path == "dependents"
    assert problem.message.startswith("default/c: end: logical date 2026-06-01T03:00:00Z is after")
    assert h.backfills.list_backfills("default") == []
    assert h.store.list_runs(RunQuery(limit=10)) == []


def finish_only(h: Harness, workflow: str) -> None:
    """End every attempt of ``workflow``'s runs (and only those) until none is left."""
    h.scheduler.step()
    for _ in range(200):
        mine = [s for s in h.dispatcher.pending.values() if s.workflow == workflow]
        if not mine:
            return
        spec = mine[0]
        del h.dispatcher.pending[(spec.run_id, spec.task_id, spec.attempt)]
        result = AttemptResult(AttemptStatus.SUCCEEDED)
        h.scheduler.on_finished([Finished(spec.run_id, spec.task_id, spec.attempt, result)])
        h.scheduler.step()
    raise AssertionError(f"the runs of {workflow} never ended")


def test_pause_resume_and_cancel_reach_the_dependents_once_the_parents_dates_are_done(
    h: Harness,
) -> None:
    """The root's own dates all succeeded while its dependents still go on: pause, resume
    and cancel of the root still reach them (they answered "already succeeded" and left
    them going); refused only when no included backfill could take it, saying so."""
    root = h.backfills.create(
        "default", "a", start="2026-01-01", end="2026-01-02", parallel=2, dependents=True
    )
    finish_only(h, "a")
    assert h.get(root).state is BackfillState.SUCCEEDED
    group = h.backfills.group(root)
    assert {b.state for b in group} == {BackfillState.RUNNING}
    assert h.backfills.pause(root.id).state is BackfillState.SUCCEEDED
    assert {b.state for b in h.backfills.group(root)} == {BackfillState.PAUSED}
    with pytest.raises(
        Conflict, match=re.escape("none of the 3 backfill(s) it included is running")
    ):
        h.backfills.pause(root.id)
    reached: list[str] = []
    h.backfills.resume(root.id, reached=reached)
    assert reached == [b.id for b in group]
    assert {b.state for b in h.backfills.group(root)} == {BackfillState.RUNNING}
    # an operator of another project only: none of them is reached, and it says why
    with pytest.raises(Conflict, match="none of the 0 of its 3 included"):
        h.backfills.cancel(root.id, may_operate=lambda p: p == "other")
    assert h.backfills.cancel(root.id).state is BackfillState.SUCCEEDED
    assert {b.state for b in h.backfills.group(root)} == {BackfillState.CANCELLED}
    h.drive()
    assert {r.state for r in h.store.list_runs(RunQuery(workflow="b", limit=100))} == {
        RunState.STOPPED
    }
    assert h.get(root).state is BackfillState.SUCCEEDED  # its own end stands
    with pytest.raises(Conflict, match="already succeeded, and none of the 3"):
        h.backfills.cancel(root.id)


def test_api_cancel_of_a_parent_whose_dates_are_done_cancels_its_dependents(h: Harness) -> None:
    audit = AuditLog()
    app = create_app(h.scheduler, readmodel=audit)  # type: ignore[arg-type]
    status, made = call(
        app, "POST", "/workflows/a/backfills",
        {"start": "2026-01-01", "end": "2026-01-02", "parallel": 2, "dependents": True},
    )  # fmt: skip
    assert status == 201, made
    finish_only(h, "a")
    ids = [d["id"] for d in made["dependents"]]
    status, body = call(app, "POST", f"/backfills/{made['id']}/pause")
    assert status == 200, body
    assert (body["state"], body["reached"]) == ("succeeded", ids)
    assert {d["state"] for d in body["dependents"]} == {"paused"}
    status, body = call(app, "POST", f"/backfills/{made['id']}/cancel")
    assert status == 200, body
    assert body["reached"] == ids
    assert {d["state"] for d in body["dependents"]} == {"cancelled"}
    assert audit.entries[-1].action == "backfill.cancel"
    assert audit.entries[-1].details["dependents"] == ids
    status, body = call(app, "POST", f"/backfills/{made['id']}/cancel")
    assert status == 409, body
    assert "none of the 3 backfill(s) it included still goes on" in json.dumps(body)


def test_cli_operation_says_what_it_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    body = {
        "id": "default.backfill-a-1", "state": "succeeded", "reached": ["default.backfill-b-1"],
        "dependents": [
            {"id": "default.backfill-b-1", "state": "cancelled"},
            {"id": "default.backfill-c-1", "state": "failed"},
        ],
    }  # fmt: skip

    class FakeClient:
        def __init__(self, api: str) -> None:
            pass

        def call(self, method: str, path: str, **kwargs: Any) -> Any:
            return body

    monkeypatch.setattr(cli_backfill, "Client", FakeClient)
    out = CliRunner().invoke(cli_backfill.backfills, ["cancel", "x", "--api", "http://x"]).output
    assert out.splitlines() == [
        "default.backfill-a-1: succeeded (unchanged; it reached its dependents)",
        "  dependent default.backfill-b-1: cancelled",
    ]


def test_the_audit_line_names_no_backfill_of_another_project(h: Harness) -> None:
    """A dependent-mode backfill's audit line is shown to the admins of its project, who may
    have no role in the other projects it reached: it names none of their backfills (an id
    holds its project and workflow), as the backfill's own view does not."""
    h.scheduler.apply(wf("z", "default/a").replace("name: z\n", "name: z\nproject: other\n"))
    audit = AuditLog()
    operator = Principal("op", {"default": Role.OPERATOR, "other": Role.OPERATOR})
    app = create_app(h.scheduler, readmodel=audit, authenticate=lambda _: operator)  # type: ignore[arg-type]
    status, made = call(
        app, "POST", "/workflows/a/backfills", {"dates": ["2026-01-01"], "dependents": True}
    )
    assert status == 201, made
    assert ("other", "z") in {(d["project"], d["workflow"]) for d in made["dependents"]}
    mine = [d["id"] for d in made["dependents"] if d["project"] == "default"]
    assert call(app, "POST", f"/backfills/{made['id']}/pause")[0] == 200
    shown = [e for e in audit.entries if e.project == "default"]
    assert [(e.action, e.project, e.details["dependents"]) for e in shown] == [
        ("backfill.create", "default", mine),
        ("backfill.pause", "default", mine),
    ]


def test_a_project_a_dependent_backfill_reached_has_its_own_line(h: Harness) -> None:
    """The backfills made (or paused) in another project by a dependent-mode backfill are a
    change there too: that project's log has its line, naming only its own backfills."""
    h.scheduler.apply(wf("z", "default/a").replace("name: z\n", "name: z\nproject: other\n"))
    audit = AuditLog()
    operator = Principal("op", {"default": Role.OPERATOR, "other": Role.OPERATOR})
    app = create_app(h.scheduler, readmodel=audit, authenticate=lambda _: operator)  # type: ignore[arg-type]
    status, made = call(
        app, "POST", "/workflows/a/backfills", {"dates": ["2026-01-01"], "dependents": True}
    )
    assert status == 201, made
    theirs = [d["id"] for d in made["dependents"] if d["project"] == "other"]
    assert len(theirs) == 1
    assert call(app, "POST", f"/backfills/{made['id']}/pause")[0] == 200
    elsewhere = [
        (e.action, e.target, e.details["dependents"], e.actor)
        for e in audit.entries
        if e.project == "other"
    ]
    assert elsewhere == [
        ("backfill.create", f"backfill/{made['id']}", theirs, "op"),
        ("backfill.pause", f"backfill/{made['id']}", theirs, "op"),
    ]
    assert len({e.id for e in audit.entries}) == len(audit.entries) == 4  # kept apart by id
