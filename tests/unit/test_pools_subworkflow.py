"""A pool shared by a sub-workflow task and its child run (Airflow's SubDag-and-pool deadlock).

A ``type: workflow`` task holds its pool's slots until its child run ends; a child's task in
the same pool that could never fit beside them (``held + pool_slots > slots``) fails when it
would join the pool's queue, naming the pool and the cause, and the parent's task fails with
it: nothing waits for ever. With enough slots the child's task waits and runs as usual. On
both stores: the rule is the service's, the same for both runtimes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store
from tests.unit.test_subworkflow import Harness, succeed

from stratoflow.engine import AttemptStatus, RunState, TaskInstance, TaskState
from stratoflow.engine import pools as engine_pools
from stratoflow.engine import subworkflow as rules
from stratoflow.service import Scheduler

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def child(slots: int = 1) -> str:
    return (
        "name: pchild\ntasks:\n"
        "  a: {type: shell, command: echo a}\n"
        f"  c: {{type: shell, depends_on: [a], command: echo c, pool: p1, pool_slots: {slots}}}\n"
    )


def parent(slots: int = 1, *, name: str = "pparent", target: str = "pchild") -> str:
    return (
        f"name: {name}\ntasks:\n"
        f"  k: {{type: workflow, workflow: {target}, pool: p1, pool_slots: {slots}}}\n"
        "  after: {type: shell, depends_on: [k], command: echo after}\n"
    )


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    dispatcher = RecordingDispatcher()
    clock = FakeClock(T0)
    with state_store(request.param, tmp_path) as store:
        yield Harness(Scheduler(store, store, dispatcher, clock), store, dispatcher, clock)


def child_id(run_id: str, task: str = "k", target: str = "pchild") -> str:
    return rules.child_run_id(run_id, task, ("default", target))


def used(h: Harness) -> int:
    pool = h.store.get_pool("/p1")
    assert pool is not None
    return pool.used


def test_a_child_task_that_could_never_get_a_slot_fails_naming_the_pool(h: Harness) -> None:
    # GIVEN a pool of 1 slot held by the parent's workflow task, which the child needs too
    h.scheduler.set_pool("p1", 1)
    h.scheduler.apply(child())
    h.scheduler.apply(parent())
    run, _ = h.scheduler.trigger("default", "pparent")
    # WHEN it runs
    h.finish(succeed)
    # THEN the child's task fails with the cause, the child run fails, so does the parent's task
    c = h.store.get_task(child_id(run.id), "c")
    assert c.state is TaskState.FAILED
    assert "pool 'p1' can never start task c" in (c.error or "")
    assert f"{run.id}/k" in (c.error or "")
    assert "deadlock" in (c.error or "")
    assert "stratoflow pools set p1 --slots 2" in (c.error or "")
    assert c.attempt == 1  # not retried: waiting longer cannot help
    assert h.store.get_run(child_id(run.id)).state is RunState.FAILED
    k = h.store.get_task(run.id, "k")
    assert k.state is TaskState.FAILED
    assert "pool 'p1' can never start task c" in (k.error or "")
    assert h.store.get_run(run.id).state is RunState.FAILED
    # AND nothing is left holding or waiting for the pool
    assert used(h) == 0
    assert h.store.pool_waiting("/p1", 10) == []
    assert (child_id(run.id), "c", 1) not in h.dispatcher.dispatched


def test_with_enough_slots_the_child_shares_the_pool(h: Harness) -> None:
    # 2 slots: the parent holds 1, the child's task takes the other
    h.scheduler.set_pool("p1", 2)
    h.scheduler.apply(child())
    h.scheduler.apply(parent())
    run, _ = h.scheduler.trigger("default", "pparent")
    h.finish(succeed)
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED
    assert h.store.get_task(child_id(run.id), "c").state is TaskState.SUCCEEDED
    assert used(h) == 0


def test_pool_slots_wider_than_one_count(h: Harness) -> None:
    # 3 slots: the parent holds 2, a child's task needing 2 can never fit; needing 1 can
    h.scheduler.set_pool("p1", 3)
    h.scheduler.apply(child(slots=2))
    h.scheduler.apply(parent(slots=2))
    run, _ = h.scheduler.trigger("default", "pparent")
    h.finish(succeed)
    c = h.store.get_task(child_id(run.id), "c")
    assert "needs 2 of the pool's 3 slot(s), and 2 are held" in (c.error or "")
    assert h.store.get_run(run.id).state is RunState.FAILED

    h.scheduler.apply(child(slots=1))
    second, _ = h.scheduler.trigger("default", "pparent")
    h.finish(succeed)
    assert h.store.get_run(second.id).state is RunState.SUCCEEDED
    assert used(h) == 0


def test_nested_sub_workflows_count_every_ancestor(h: Harness) -> None:
    # top -k-> pmid -k-> pchild: top's k and pmid's k hold 1 slot each of the same pool
    h.scheduler.set_pool("p1", 2)
    h.scheduler.apply(child())
    h.scheduler.apply(parent(name="pmid"))
    h.scheduler.apply(parent(name="top", target="pmid"))
    run, _ = h.scheduler.trigger("default", "top")
    h.finish(succeed)
    mid = child_id(run.id, target="pmid")
    c = h.store.get_task(child_id(mid), "c")
    assert c.state is TaskState.FAILED
    assert (
        f"2 are held until this run ends by the sub-workflow task(s) that started it ({mid}/k, {run.id}/k)"
        in (c.error or "")
    )
    assert h.store.get_run(run.id).state is RunState.FAILED
    assert used(h) == 0
    # with a third slot the grandchild's task fits
    h.scheduler.set_pool("p1", 3)
    again, _ = h.scheduler.trigger("default", "top")
    h.finish(succeed)
    assert h.store.get_run(again.id).state is RunState.SUCCEEDED
    assert used(h) == 0


def test_a_grandparent_alone_holding_the_pool_is_enough_to_fail(h: Harness) -> None:
    # top's k holds the only slot; pmid's k names no pool; the grandchild's task needs it
    h.scheduler.set_pool("p1", 1)
    h.scheduler.apply(child())
    h.scheduler.apply("name: pmid\ntasks:\n  k: {type: workflow, workflow: pchild}\n")
    h.scheduler.apply(parent(name="top", target="pmid"))
    run, _ = h.scheduler.trigger("default", "top")
    h.finish(succeed)
    c = h.store.get_task(child_id(child_id(run.id, target="pmid")), "c")
    assert f"({run.id}/k)" in (c.error or "")
    assert h.store.get_run(run.id).state is RunState.FAILED
    assert used(h) == 0


def test_the_rule() -> None:
    pool = engine_pools.Pool("", "p1", 2, used=2)
    holding = TaskInstance("r", "k", TaskState.RUNNING, pool="/p1", pool_slots=1)
    other_pool = TaskInstance("r", "j", TaskState.RUNNING, pool="/p2", pool_slots=5)
    ended = TaskInstance("r0", "k", TaskState.SUCCEEDED, pool="/p1", pool_slots=1)
    assert engine_pools.starved_by_ancestors(pool, "c", 1, [holding]) is None
    assert engine_pools.starved_by_ancestors(pool, "c", 1, [other_pool, ended]) is None
    assert engine_pools.starved_by_ancestors(pool, "c", 2, []) is None  # no ancestor holds
    why = engine_pools.starved_by_ancestors(pool, "c", 2, [holding])
    assert why is not None
    assert "r/k" in why
    project = engine_pools.Pool("sales", "p1", 1)
    why = engine_pools.starved_by_ancestors(
        project, "c", 1, [TaskInstance("r", "k", TaskState.RUNNING, pool="sales/p1", pool_slots=1)]
    )
    assert why is not None
    assert "--slots 2 --project sales" in why


def test_a_plain_holder_frees_its_slot_so_the_child_waits(h: Harness) -> None:
    # the parent's k holds 1 of 2 slots, a plain task of another run the other: the child's
    # task waits for the plain task, not a deadlock
    h.scheduler.set_pool("p1", 2)
    h.scheduler.apply(child())
    h.scheduler.apply(parent())
    h.scheduler.apply("name: plain\ntasks:\n  t: {type: shell, command: 'true', pool: p1}\n")
    other, _ = h.scheduler.trigger("default", "plain")
    h.scheduler.step()
    assert h.store.get_task(other.id, "t").state is TaskState.RUNNING
    run, _ = h.scheduler.trigger("default", "pparent")
    h.finish(lambda s: AttemptStatus.SUCCEEDED if s.task_id != "t" else AttemptStatus.FAILED)
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED
    assert h.store.get_run(other.id).state is RunState.FAILED
    assert used(h) == 0
