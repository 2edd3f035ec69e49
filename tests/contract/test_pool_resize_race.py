"""A pool shrunk between a claim's read of it and the claim's write: the claim is checked
against the slots the pool has when it is written (DynamoDB: the claim's conditional counter
requires ``slots`` unchanged on the item the resize writes; SQLite: ``used + n <= slots`` in
the claim's own statement), so the pool is never over-filled, for every store adapter."""

from __future__ import annotations

from tests.contract.test_pool_store import _claim, pools_of
from tests.contract.test_state_store import a_run

from stratoflow.engine import TaskInstance, TaskState
from stratoflow.ports import StateStore


def test_a_claim_decided_on_the_old_size_fails_after_a_shrink(store: StateStore) -> None:
    pools = pools_of(store)
    pools.set_pool("", "wh", 2)
    tasks = [TaskInstance("r1", t, TaskState.QUEUED) for t in ("a", "b", "c")]
    assert store.create_run(a_run("r1", n_tasks=3), tasks, None)
    assert store.apply(_claim("r1", "a", "/wh", 1, 2))  # 1 of 2 used
    # the scheduler read slots=2, used=1 and decides to claim "b"; the pool shrinks to 1
    pools.set_pool("", "wh", 1)
    assert not store.apply(_claim("r1", "b", "/wh", 1, 2))
    assert store.get_task("r1", "b").state is TaskState.QUEUED
    assert store.get_run("r1").n_running == 1
    pool = pools.get_pool("/wh")
    assert pool is not None
    assert (pool.slots, pool.used) == (1, 1)


def test_a_claim_decided_on_the_new_size_goes_through(store: StateStore) -> None:
    pools = pools_of(store)
    pools.set_pool("", "wh", 3)
    tasks = [TaskInstance("r1", t, TaskState.QUEUED) for t in ("a", "b")]
    assert store.create_run(a_run("r1", n_tasks=2), tasks, None)
    assert store.apply(_claim("r1", "a", "/wh", 2, 3))
    pools.set_pool("", "wh", 2)
    assert not store.apply(_claim("r1", "b", "/wh", 1, 3))  # decided on 3: retried
    pools.set_pool("", "wh", 4)  # grown: the retry, decided on 4, fits
    assert store.apply(_claim("r1", "b", "/wh", 1, 4))
    pool = pools.get_pool("/wh")
    assert pool is not None
    assert (pool.slots, pool.used) == (4, 3)
