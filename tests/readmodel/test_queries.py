"""ReadModel queries: filters, keyset pagination, project scoping (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from stratoflow.engine import Run, RunState, TaskState
from stratoflow.errors import InvalidInput, NotFound
from stratoflow.readmodel import AuditEntry, Change, ReadModel, RunFilter
from tests.readmodel import factories as f


def _runs(rm: ReadModel) -> list[Run]:
    """12 runs: etl (default) x8, load (default) x2, etl (other) x2; created_at has ties."""
    runs = []
    for i in range(8):
        state = [RunState.SUCCEEDED, RunState.FAILED, RunState.RUNNING][i % 3]
        # runs 4 and 5 share a creation instant: the id breaks the tie
        runs.append(f.run(f"etl-{i:02d}", state=state, minute=min(i, 4) if i < 6 else i))
    runs += [f.run(f"load-{i}", workflow="load", minute=20 + i) for i in range(2)]
    runs += [f.run(f"oth-{i}", project="other", minute=30 + i) for i in range(2)]
    rm.apply(
        [Change(1, v) for v in (f.version(), f.version("load"), f.version(project="other"))]
        + [Change(1, r) for r in runs]
    )
    return runs


def _newest_first(runs: list[Run]) -> list[str]:
    return [r.id for r in sorted(runs, key=lambda r: (r.created_at, r.id), reverse=True)]


def _walk(rm: ReadModel, query: RunFilter, limit: int) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        page = rm.list_runs(query, limit=limit, cursor=cursor)
        assert len(page.items) <= limit
        ids += [r.id for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return ids
    raise AssertionError("pagination did not end")


def test_list_runs_newest_first_with_every_filter(rm: ReadModel) -> None:
    runs = _runs(rm)
    etl = [r for r in runs if r.workflow == "etl" and r.project == "default"]
    assert [r.id for r in rm.list_runs(limit=100).items] == _newest_first(runs)
    q = RunFilter(project="default", workflow="etl")
    assert [r.id for r in rm.list_runs(q).items] == _newest_first(etl)
    q = RunFilter(project="default", workflow="etl", states=[RunState.FAILED])
    assert [r.id for r in rm.list_runs(q).items] == _newest_first(
        [r for r in etl if r.state is RunState.FAILED]
    )
    q = RunFilter(states=[RunState.FAILED, RunState.RUNNING])
    assert {r.id for r in rm.list_runs(q).items} == {
        r.id for r in runs if r.state in (RunState.FAILED, RunState.RUNNING)
    }
    lo, hi = f.T0 + timedelta(minutes=2), f.T0 + timedelta(minutes=6)
    q = RunFilter(created_from=lo, created_to=hi)
    assert [r.id for r in rm.list_runs(q).items] == _newest_first(
        [r for r in runs if lo <= r.created_at < hi]
    )
    lo, hi = f.T0 + timedelta(days=1), f.T0 + timedelta(days=3)
    q = RunFilter(workflow="etl", logical_from=lo, logical_to=hi, order="logical_date")
    expected = [r for r in runs if r.workflow == "etl" and lo <= r.logical_date < hi]
    assert [r.id for r in rm.list_runs(q).items] == [
        r.id for r in sorted(expected, key=lambda r: (r.logical_date, r.id), reverse=True)
    ]


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_keyset_pages_cover_every_run_once_in_order(rm: ReadModel, limit: int) -> None:
    runs = _runs(rm)
    assert _walk(rm, RunFilter(), limit) == _newest_first(runs)
    etl = [r for r in runs if r.workflow == "etl" and r.project == "default"]
    assert _walk(rm, RunFilter(project="default", workflow="etl"), limit) == _newest_first(etl)
    by_logical = sorted(runs, key=lambda r: (r.logical_date, r.id), reverse=True)
    assert _walk(rm, RunFilter(order="logical_date"), limit) == [r.id for r in by_logical]


def test_a_page_is_stable_while_new_runs_arrive(rm: ReadModel) -> None:
    runs = _runs(rm)
    first = rm.list_runs(limit=4)
    rm.apply([Change(2, f.run("newest", minute=99))])
    second = rm.list_runs(limit=4, cursor=first.next_cursor)
    assert [r.id for r in first.items + second.items] == _newest_first(runs)[:8]


def test_project_scoping_hides_other_projects(rm: ReadModel) -> None:
    _runs(rm)
    visible = rm.list_runs(RunFilter(projects=["other"]), limit=100).items
    assert {r.project for r in visible} == {"other"}
    assert rm.list_runs(RunFilter(projects=[])).items == []
    assert rm.run("oth-0", projects=["other"]).project == "other"
    with pytest.raises(NotFound, match="oth-0"):
        rm.run("oth-0", projects=["default"])
    with pytest.raises(NotFound):
        rm.tasks("oth-0", projects=["default"])
    with pytest.raises(NotFound):
        rm.attempts("oth-0", projects=["default"])
    with pytest.raises(NotFound):
        rm.workflow("other", "etl", projects=["default"])
    names = [(w.project, w.name) for w in rm.list_workflows(projects=["default"]).items]
    assert names == [("default", "etl"), ("default", "load")]


def test_bad_cursor_and_limit_are_clear_errors(rm: ReadModel) -> None:
    _runs(rm)
    with pytest.raises(InvalidInput, match="cursor: not a cursor this API returned"):
        rm.list_runs(cursor="!!!")
    with pytest.raises(InvalidInput, match="cursor"):
        rm.list_runs(cursor="WzEsMl0")  # valid base64 JSON, but [1, 2]
    with pytest.raises(InvalidInput, match="limit: must be between 1 and 500, got 0"):
        rm.list_runs(limit=0)
    with pytest.raises(InvalidInput, match="limit"):
        rm.list_audit(limit=501)


def test_workflows_list_carries_the_last_run(rm: ReadModel) -> None:
    _runs(rm)
    rm.apply([Change(1, f.version("idle")), Change(2, replace(f.version(number=2), paused=True))])
    page = rm.list_workflows()
    summary = {(w.project, w.name): w for w in page.items}
    assert list(summary) == [
        ("default", "etl"),
        ("default", "idle"),
        ("default", "load"),
        ("other", "etl"),
    ]
    etl = summary[("default", "etl")]
    assert etl.last_run is not None
    assert etl.last_run.id == "etl-07"
    assert (etl.latest_version, etl.paused, etl.description) == (2, True, "etl v2")
    assert etl.document["name"] == "etl"
    assert summary[("default", "idle")].last_run is None
    assert summary[("other", "etl")].last_run.id == "oth-1"  # type: ignore[union-attr]
    # pages of one
    seen, cursor = [], None
    while True:
        p = rm.list_workflows(limit=1, cursor=cursor)
        seen += [(w.project, w.name) for w in p.items]
        if (cursor := p.next_cursor) is None:
            break
    assert seen == list(summary)
    assert rm.list_workflows(project="other").items[0].name == "etl"
    with pytest.raises(NotFound, match="nope"):
        rm.workflow("default", "nope")
    with pytest.raises(NotFound, match="no version 7"):
        rm.version("default", "etl", 7)
    assert rm.version("default", "etl").version == 2


def test_tasks_and_attempts_of_a_run(rm: ReadModel) -> None:
    rm.apply(
        [
            Change(1, f.run()),
            Change(1, f.task(tid="b", state=TaskState.WAITING)),
            Change(1, f.task(tid="a", state=TaskState.FAILED, attempt=2, error="exit 1", outputs={"k": "v"})),
            Change(1, f.attempt(tid="a", number=2, state="failed", exit_code=1, ended_at=f.T0, log="/l/2")),
            Change(1, f.attempt(tid="a", number=1, state="failed", exit_code=1)),
            Change(1, f.attempt(tid="b", number=1)),
        ]
    )  # fmt: skip
    tasks = rm.tasks("r1")
    assert [(t.task_id, t.state, t.attempt, t.outputs) for t in tasks] == [
        ("a", TaskState.FAILED, 2, {"k": "v"}),
        ("b", TaskState.WAITING, 0, {}),
    ]
    assert [(a.task_id, a.attempt) for a in rm.attempts("r1")] == [("a", 1), ("a", 2), ("b", 1)]
    (second,) = [a for a in rm.attempts("r1", "a") if a.attempt == 2]
    assert second == f.attempt(
        tid="a", number=2, state="failed", exit_code=1, ended_at=f.T0, log="/l/2"
    )
    with pytest.raises(NotFound, match="nope"):
        rm.tasks("nope")


def test_audit_log_filters_and_pages(rm: ReadModel) -> None:
    entries = [
        AuditEntry(f"e{i}", f.T0 + timedelta(seconds=i // 2), ["ann", "bob"][i % 2],
                   "run.stop", f"run/r{i % 3}", ["default", "other", None][i % 3], {"i": i})
        for i in range(9)
    ]  # fmt: skip
    for e in entries:
        rm.record_audit(e)
    newest = sorted(entries, key=lambda e: (e.at, e.id), reverse=True)
    seen, cursor = [], None
    while True:
        page = rm.list_audit(limit=2, cursor=cursor)
        seen += page.items
        if (cursor := page.next_cursor) is None:
            break
    assert seen == newest
    assert rm.list_audit(actor="bob").items == [e for e in newest if e.actor == "bob"]
    assert rm.list_audit(projects=["other"]).items == [e for e in newest if e.project == "other"]
    assert rm.list_audit(project="default", target="run/r0").items == [
        e for e in newest if e.project == "default" and e.target == "run/r0"
    ]
    lo, hi = f.T0 + timedelta(seconds=1), f.T0 + timedelta(seconds=3)
    assert rm.list_audit(since=lo, until=hi).items == [e for e in newest if lo <= e.at < hi]
