"""The DependencyStore contract (``stratoflow.ports.DependencyStore``), for every store in
conftest: runs found by workflow and logical date in a half-open window, latest created
first, other projects' and workflows' runs apart; waits recorded, listed by upstream and
forgotten, each idempotently."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.contract.test_state_store import a_run, at

from stratoflow.engine import RunState
from stratoflow.ports import DependencyStore, StateStore


@pytest.fixture
def deps(store: StateStore) -> DependencyStore:
    assert isinstance(store, DependencyStore)
    return store


def test_runs_by_logical_date_in_a_half_open_window(
    store: StateStore, deps: DependencyStore
) -> None:
    day = at(0)
    made = [
        a_run("before", logical_date=day - timedelta(microseconds=1), created=1),
        a_run("start", logical_date=day, created=2),
        a_run("inside-old", logical_date=day + timedelta(hours=5), created=3),
        a_run("inside-new", logical_date=day + timedelta(hours=5), created=9),
        a_run("end", logical_date=day + timedelta(days=1), created=4),
        a_run("other-flow", workflow="orders", logical_date=day, created=5),
        a_run("other-project", project="finance", logical_date=day, created=6),
        a_run("done", logical_date=day + timedelta(hours=23), created=7, state=RunState.FAILED),
    ]
    for run in made:
        assert store.create_run(run, [], None)
    got = deps.runs_by_logical_date(
        "analytics", "sales_daily", day, day + timedelta(days=1), limit=10
    )
    assert [r.id for r in got] == ["inside-new", "done", "inside-old", "start"]
    assert got[1].state is RunState.FAILED
    assert got[0].logical_date == day + timedelta(hours=5)
    assert got[0].created_at == at(9)
    limited = deps.runs_by_logical_date(
        "analytics", "sales_daily", day, day + timedelta(days=1), limit=2
    )
    assert [r.id for r in limited] == ["inside-new", "done"]  # the latest created are kept
    assert deps.runs_by_logical_date("finance", "sales_daily", day, day + timedelta(days=1), 10)
    assert not deps.runs_by_logical_date("analytics", "nothing", day, day + timedelta(days=1), 9)


def test_a_runs_later_state_is_what_is_read(store: StateStore, deps: DependencyStore) -> None:
    run = a_run("r1", logical_date=at(0))
    store.create_run(run, [], None)
    assert store.put_run(run.with_(state=RunState.SUCCEEDED, ended_at=at(5)), RunState.RUNNING)
    (got,) = deps.runs_by_logical_date("analytics", "sales_daily", at(-1), at(1), 5)
    assert got.state is RunState.SUCCEEDED


def test_waits_are_recorded_listed_by_upstream_and_forgotten(deps: DependencyStore) -> None:
    ups = [("analytics", "sales_daily"), ("finance", "ledger")]
    deps.add_dependency_waits("run-1", "wait", ups)
    deps.add_dependency_waits("run-1", "wait", ups)  # idempotent
    deps.add_dependency_waits("run-2", "check", [("analytics", "sales_daily")])
    assert sorted(deps.dependency_waiters("analytics", "sales_daily", 10)) == [
        ("run-1", "wait"),
        ("run-2", "check"),
    ]
    assert deps.dependency_waiters("finance", "ledger", 10) == [("run-1", "wait")]
    assert len(deps.dependency_waiters("analytics", "sales_daily", 1)) == 1
    assert deps.dependency_waiters("analytics", "ledger", 10) == []
    deps.remove_dependency_waits("run-1", "wait", ups)
    deps.remove_dependency_waits("run-1", "wait", ups)  # idempotent
    assert deps.dependency_waiters("analytics", "sales_daily", 10) == [("run-2", "check")]
    assert deps.dependency_waiters("finance", "ledger", 10) == []
