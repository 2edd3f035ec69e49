"""The BackfillStore contract (``stratoflow.ports.BackfillStore``), for every store in
conftest: one document per backfill, written only from the revision read, listed newest
first, found by workflow while active and no more once it ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stratoflow.engine.backfill import (
    Backfill,
    BackfillState,
    DateState,
    Order,
    Rerun,
    new_backfill,
)
from stratoflow.errors import NotFound
from stratoflow.model import load_workflow
from stratoflow.ports import BackfillStore, StateStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def made(n: int, *, name: str = "wf", project: str = "p", dates: int = 3) -> Backfill:
    spec = load_workflow(
        f"name: {name}\nproject: {project}\ntasks:\n  t: {{type: shell, command: 'true'}}\n"
    )
    logical = [T0 + timedelta(days=i) for i in range(dates)]
    return new_backfill(
        backfill_id=f"{project}.backfill-{name}-{n}", spec=spec, version=1,
        logical_dates=logical, run_ids=[f"{project}.{name}-scheduled-{i}" for i in range(dates)],
        params={"region": "eu", "n": n}, parallel=2, order=Order.DESC, rerun=Rerun.FAILED,
        now=T0 + timedelta(minutes=n),
    )  # fmt: skip


@pytest.fixture
def backfills(store: StateStore) -> BackfillStore:
    assert isinstance(store, BackfillStore)
    return store


def test_created_once_and_read_back_equal(backfills: BackfillStore) -> None:
    bf = made(1)
    assert backfills.create_backfill(bf)
    assert not backfills.create_backfill(bf.with_(params={"other": 1}))
    assert backfills.get_backfill(bf.id) == bf
    with pytest.raises(NotFound):
        backfills.get_backfill("p.backfill-none")


def test_writes_are_conditional_on_the_revision_read(backfills: BackfillStore) -> None:
    bf = made(1)
    backfills.create_backfill(bf)
    first = bf.with_(dates=(bf.dates[0].with_(state=DateState.RUNNING, lane=0), *bf.dates[1:]))
    assert backfills.put_backfill(first, 0)
    stale = bf.with_(state=BackfillState.PAUSED)
    assert not backfills.put_backfill(stale, 0)  # decided from revision 0: loses
    stored = backfills.get_backfill(bf.id)
    assert stored.revision == 1
    assert stored.dates[0].state is DateState.RUNNING
    assert stored.state is BackfillState.RUNNING


def test_a_thousand_dates_fit(backfills: BackfillStore) -> None:
    bf = made(1, dates=1000)
    assert backfills.create_backfill(bf)
    assert len(backfills.get_backfill(bf.id).dates) == 1000


def test_listed_newest_first_by_project_and_workflow(backfills: BackfillStore) -> None:
    for n, name in ((1, "a"), (2, "b"), (3, "a")):
        backfills.create_backfill(made(n, name=name))
    backfills.create_backfill(made(4, name="a", project="q"))
    assert [b.id for b in backfills.list_backfills("p")] == [
        "p.backfill-a-3", "p.backfill-b-2", "p.backfill-a-1",
    ]  # fmt: skip
    assert [b.id for b in backfills.list_backfills("p", "a")] == [
        "p.backfill-a-3",
        "p.backfill-a-1",
    ]
    assert [b.id for b in backfills.list_backfills("p", limit=1)] == ["p.backfill-a-3"]
    assert [b.id for b in backfills.list_backfills("q")] == ["q.backfill-a-4"]


def test_active_ones_are_found_by_workflow_until_they_end(backfills: BackfillStore) -> None:
    one, two, other = made(1), made(2), made(3, name="other")
    for bf in (one, two, other):
        backfills.create_backfill(bf)
    assert {b.id for b in backfills.active_backfills("p", "wf")} == {one.id, two.id}
    assert backfills.put_backfill(one.with_(state=BackfillState.PAUSED), 0)
    assert backfills.put_backfill(two.with_(state=BackfillState.SUCCEEDED), 0)
    assert [b.id for b in backfills.active_backfills("p", "wf")] == [one.id]
    assert {b.id for b in backfills.all_active_backfills()} == {one.id, other.id}
    assert {b.id for b in backfills.list_backfills("p")} == {one.id, two.id, other.id}


def test_the_backfills_waiting_for_a_run_are_found_by_its_id(backfills: BackfillStore) -> None:
    one, two, other = made(1), made(2, dates=1), made(3, name="other")
    for bf in (one, two, other):
        backfills.create_backfill(bf)
    run_id = one.dates[0].run_id  # also the first date of two (and of other, another workflow)
    assert sorted(backfills.backfills_waiting_for("p", "wf", run_id)) == [one.id, two.id]
    assert backfills.backfills_waiting_for("p", "wf", one.dates[2].run_id) == [one.id]
    assert backfills.backfills_waiting_for("p", "wf", "p.wf-scheduled-none") == []
    assert backfills.put_backfill(two.with_(state=BackfillState.CANCELLED), 0)
    assert backfills.backfills_waiting_for("p", "wf", run_id) == [one.id]


def test_a_read_after_a_write_is_the_write(backfills: BackfillStore) -> None:
    bf = made(1)
    backfills.create_backfill(bf)
    first = backfills.get_backfill(bf.id)
    changed = first.with_(state=BackfillState.PAUSED)
    assert backfills.put_backfill(changed, first.revision)
    assert backfills.get_backfill(bf.id) == changed.with_(revision=1)
    assert backfills.get_backfill(bf.id).state is BackfillState.PAUSED


def test_dependent_mode_links_are_kept(backfills: BackfillStore) -> None:
    root = made(1).with_(dependents=("p.backfill-b-2", "q.backfill-c-3"))
    child = made(2, name="b").with_(parent=root.id)
    assert backfills.create_backfill(child)
    assert backfills.create_backfill(root)
    assert backfills.get_backfill(root.id).dependents == ("p.backfill-b-2", "q.backfill-c-3")
    assert backfills.get_backfill(child.id).parent == root.id
    assert backfills.put_backfill(child.with_(state=BackfillState.PAUSED), 0)
    assert backfills.get_backfill(child.id).parent == root.id
