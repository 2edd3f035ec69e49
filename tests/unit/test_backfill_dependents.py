"""Dependent mode's planning rule (``plan_dependents``): which downstream workflows a backfill
includes (transitively, only those the caller may trigger), each once even through a diamond
(DolphinScheduler #17540 ran one twice), and which dates (each one's own schedule in the
range)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratoflow.engine.backfill import (
    MAX_BACKFILL_DEPENDENTS,
    Backfill,
    Order,
    Rerun,
    backfill_document,
    backfill_from_document,
    new_backfill,
    plan_dependents,
    upstreams_of,
)
from stratoflow.errors import InvalidInput
from stratoflow.model import WorkflowSpec, load_workflow


def spec(
    name: str, *upstreams: str, project: str = "default", cron: str | None = None
) -> WorkflowSpec:
    text = f"name: {name}\nproject: {project}\n"
    if cron:
        text += f"schedule: {{cron: '{cron}', timezone: UTC}}\n"
    text += "tasks:\n  t: {type: shell, command: 'true'}\n"
    if upstreams:
        items = ", ".join(f"{{workflow: '{u}', date: today}}" for u in upstreams)
        text += f"  wait: {{type: dependency, all: [{items}]}}\n"
    return load_workflow(text)


def catalog(*specs: WorkflowSpec) -> dict[tuple[str, str], WorkflowSpec]:
    return {(s.project, s.name): s for s in specs}


ROOT = ("default", "a")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_upstreams_resolve_names_relative_to_the_project() -> None:
    s = spec("b", "a", "other/x", project="p")
    assert upstreams_of(s) == {("p", "a"), ("other", "x")}
    assert upstreams_of(spec("a")) == set()


def test_a_diamond_plans_each_workflow_once_after_an_upstream() -> None:
    wfs = catalog(spec("a"), spec("b", "a"), spec("c", "a"), spec("d", "b", "c"), spec("e"))
    plans = plan_dependents(ROOT, wfs, start="2026-01-01", end="2026-01-03")
    assert [p.workflow for p in plans] == ["b", "c", "d"]
    assert plans[2].via in {("default", "b"), ("default", "c")}
    for p in plans:  # daily without a schedule: the same three dates, each once
        assert p.logical_dates == (utc(2026, 1, 1), utc(2026, 1, 2), utc(2026, 1, 3))


def test_transitive_dependents_and_a_cycle_back_to_the_root_ends_there() -> None:
    wfs = catalog(spec("a", "c"), spec("b", "a"), spec("c", "b"))
    plans = plan_dependents(ROOT, wfs, start="2026-01-01", end="2026-01-01")
    assert [(p.workflow, p.via) for p in plans] == [
        ("b", ("default", "a")),
        ("c", ("default", "b")),
    ]


def test_only_workflows_the_caller_may_trigger_and_not_what_only_they_lead_to() -> None:
    # x (in a project not given) depends on a; y depends only on x: neither is included
    wfs = catalog(spec("a"), spec("b", "a"), spec("y", "secret/x"))
    plans = plan_dependents(ROOT, wfs, start="2026-01-01", end="2026-01-01")
    assert [p.workflow for p in plans] == ["b"]
    # another project's workflow is included when given (the caller may trigger it)
    wfs[("other", "z")] = spec("z", "default/a", project="other")
    plans = plan_dependents(ROOT, wfs, start="2026-01-01", end="2026-01-01")
    assert {(p.project, p.workflow) for p in plans} == {("default", "b"), ("other", "z")}


def test_each_dependent_takes_its_own_schedules_dates_in_the_range() -> None:
    wfs = catalog(
        spec("a"), spec("b", "a", cron="0 6,18 * * *"), spec("c", "a", cron="0 0 1 * *"),
        spec("d", "c"),
    )  # fmt: skip
    plans = plan_dependents(ROOT, wfs, start="2026-01-02", end="2026-01-03", order=Order.DESC)
    # c fires monthly: not in the range, left out; d (daily, on c) is still included
    assert [p.workflow for p in plans] == ["b", "d"]
    assert plans[0].logical_dates == (
        utc(2026, 1, 3, 18),
        utc(2026, 1, 3, 6),
        utc(2026, 1, 2, 18),
        utc(2026, 1, 2, 6),
    )
    assert plans[1].logical_dates == (utc(2026, 1, 3), utc(2026, 1, 2))


def test_a_list_of_dates_gives_dependents_those_days() -> None:
    wfs = catalog(spec("a"), spec("b", "a", cron="0 12 * * *"))
    plans = plan_dependents(ROOT, wfs, dates=["2026-01-05", "2026-01-07T03:00:00"])
    assert plans[0].logical_dates == (utc(2026, 1, 5, 12), utc(2026, 1, 7, 12))


def test_no_dependents_plans_nothing_and_too_many_are_refused() -> None:
    assert (
        plan_dependents(ROOT, catalog(spec("a"), spec("b")), start="2026-01-01", end="2026-01-01")
        == []
    )
    many = catalog(spec("a"), *(spec(f"w{i}", "a") for i in range(MAX_BACKFILL_DEPENDENTS + 1)))
    with pytest.raises(InvalidInput) as err:
        plan_dependents(ROOT, many, start="2026-01-01", end="2026-01-01")
    assert err.value.problems[0].path == "dependents"


def test_parent_and_dependents_survive_the_stored_form() -> None:
    made = new_backfill(
        backfill_id="default.backfill-a-1", spec=spec("a"), version=1,
        logical_dates=[utc(2026, 1, 1)], run_ids=["r"], params={}, parallel=1,
        order=Order.ASC, rerun=Rerun.NONE,
        now=utc(2026, 6, 1), dependents=["default.backfill-b-1"],
    )  # fmt: skip
    back: Backfill = backfill_from_document(backfill_document(made))
    assert back == made
    assert back.dependents == ("default.backfill-b-1",)
    old = backfill_document(made)
    del old["parent"], old["dependents"]  # a backfill stored before dependent mode
    assert backfill_from_document(old).dependents == ()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=20))
def test_any_dependency_graph_plans_each_reachable_workflow_exactly_once(
    edges: list[tuple[int, int]],
) -> None:
    """For any graph (cycles and diamonds included): every workflow that waits on the root,
    directly or through others, is planned once, after one of its upstreams; nothing else."""
    ups: dict[int, set[int]] = {i: set() for i in range(7)}
    for up, down in edges:
        if up != down:
            ups[down].add(up)
    wfs = catalog(*(spec(f"w{i}", *(f"w{u}" for u in sorted(ups[i]))) for i in range(7)))
    plans = plan_dependents(("default", "w0"), wfs, start="2026-01-01", end="2026-01-01")
    reach: set[int] = set()
    frontier = {0}
    while frontier:
        frontier = {d for d in range(7) if ups[d] & frontier and d not in reach and d != 0}
        reach |= frontier
    names = [p.workflow for p in plans]
    assert len(names) == len(set(names))
    assert set(names) == {f"w{i}" for i in reach}
    seen = {"w0"}
    for p in plans:
        assert p.via[1] in seen  # planned after the upstream it was reached through
        assert p.via[1] in {f"w{u}" for u in ups[int(p.workflow[1:])]}
        seen.add(p.workflow)
