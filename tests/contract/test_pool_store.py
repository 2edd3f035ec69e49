"""The PoolStore contract (``stratoflow.ports.PoolStore``) and the pool parts of
``StateStore.apply``/``apply_plan``, for every store adapter in conftest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tests.contract.test_state_store import a_run

from stratoflow.engine import Decision, Plan, PoolDelta, TaskInstance, TaskState, TaskWrite
from stratoflow.errors import NotFound
from stratoflow.ports import PoolStore, StateStore

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def pools_of(store: StateStore) -> PoolStore:
    assert isinstance(store, PoolStore)
    return store


def test_set_list_get_delete(store: StateStore) -> None:
    pools = pools_of(store)
    assert pools.list_pools() == []
    assert pools.get_pool("/wh") is None
    made = pools.set_pool("", "wh", 2)
    assert (made.key, made.slots, made.used) == ("/wh", 2, 0)
    pools.set_pool("analytics", "wh", 3)
    pools.set_pool("other", "x", 1)
    assert [p.key for p in pools.list_pools("analytics")] == ["/wh", "analytics/wh"]
    assert [p.key for p in pools.list_pools()] == ["/wh", "analytics/wh", "other/x"]
    assert pools.set_pool("", "wh", 5).slots == 5
    assert pools.delete_pool("other/x") is True
    with pytest.raises(NotFound):
        pools.delete_pool("other/x")


def _claim(run_id: str, task_id: str, key: str, slots: int, limit: int | None) -> Decision:
    running = TaskInstance(
        run_id, task_id, TaskState.RUNNING, attempt=1, started_at=T0, pool=key, pool_slots=slots
    )
    return Decision(
        run_id, (TaskWrite(running, TaskState.QUEUED, 0),), running=1,
        pools=(PoolDelta(key, slots, limit),),
    )  # fmt: skip


def test_claims_are_conditional_on_free_slots_and_ends_release(store: StateStore) -> None:
    pools = pools_of(store)
    pools.set_pool("", "wh", 2)
    tasks = [TaskInstance("r1", t, TaskState.QUEUED) for t in ("a", "b", "c")]
    assert store.create_run(a_run("r1", n_tasks=3), tasks, None)
    assert store.apply(_claim("r1", "a", "/wh", 2, 2))
    # full: a claim of the next task fails whole (task untouched, run counters unchanged)
    assert not store.apply(_claim("r1", "b", "/wh", 1, 2))
    assert store.get_task("r1", "b").state is TaskState.QUEUED
    assert store.get_run("r1").n_running == 1
    # a force start (no limit) over-fills it
    assert store.apply(_claim("r1", "b", "/wh", 1, None))
    assert pools.get_pool("/wh").used == 3  # type: ignore[union-attr]
    assert {t.task_id for t in pools.pool_running("/wh", 10)} == {"a", "b"}
    # in use: not deleted
    assert pools.delete_pool("/wh") is False
    # an end releases in the same decision
    ended = store.get_task("r1", "a").with_(state=TaskState.SUCCEEDED, pool=None, pool_slots=0)
    assert store.apply(
        Decision("r1", (TaskWrite(ended, TaskState.RUNNING, 1),), done=1, running=-1,
                 pools=(PoolDelta("/wh", -2),))
    )  # fmt: skip
    assert pools.get_pool("/wh").used == 1  # type: ignore[union-attr]
    # a stop's plan frees what still runs that attempt, once
    b = store.get_task("r1", "b")
    stopped = b.with_(state=TaskState.STOPPED, pool=None, pool_slots=0)
    plan = Plan(store.get_run("r1"), {"b": stopped}, kill=[b], pool_releases=[b])
    assert store.apply_plan(plan, store.get_run("r1").state)
    assert pools.get_pool("/wh").used == 0  # type: ignore[union-attr]


def test_the_pool_queue_is_in_rank_order_across_runs(store: StateStore) -> None:
    pools = pools_of(store)
    pools.set_pool("p", "q", 1)
    for run_id, rank in (("r1", 30), ("r2", 10), ("r3", 20)):
        task = TaskInstance(run_id, "t", TaskState.QUEUED)
        assert store.create_run(a_run(run_id, n_tasks=1), [task], None)
        joined = task.with_(pool="p/q", pool_rank=rank)
        assert store.apply(Decision(run_id, (TaskWrite(joined, TaskState.QUEUED, 0),)))
    assert [t.run_id for t in pools.pool_waiting("p/q", 10)] == ["r2", "r3", "r1"]
    assert pools.pools_with_waiting(10) == ["p/q"]
    # a task waiting in a pool is not in its run's queue
    assert store.run_queue("r1", 10) == []
    assert pools.delete_pool("p/q") is False
