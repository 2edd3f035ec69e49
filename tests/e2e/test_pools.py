"""Pools on the local runtime: real processes share a pool's slots across workflows."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.engine import RunState, TaskState
from stratoflow.errors import Conflict, InvalidInput
from tests.e2e import test_runtime
from tests.e2e.test_backfill import until

pytestmark = pytest.mark.e2e
runtime = test_runtime.runtime  # the local runtime fixture, in a fresh home per test


def workflow(name: str, priority: int, tasks: dict[str, float], log: Path) -> str:
    body = "\n".join(
        f"""  {tid}:
    type: shell
    pool: shared
    command: |
      echo "start {name}.{tid} $(date +%s.%N)" >> {log}
      sleep {secs}
      echo "end {name}.{tid} $(date +%s.%N)" >> {log}"""
        for tid, secs in tasks.items()
    )
    return f"name: {name}\npriority: {priority}\ntasks:\n{body}\n"


def finish(rt: LocalRuntime, run_ids: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    rt.run_until(
        lambda: (
            all(rt.store.get_run(r).state.terminal for r in run_ids) or time.monotonic() > deadline
        )
    )


def test_a_pool_of_two_shared_by_three_workflows(runtime: LocalRuntime, shared_dir: Path) -> None:
    log = shared_dir / "log"
    sched = runtime.scheduler
    # GIVEN a global pool of 2 slots, and a workflow that names it before it exists: refused
    text = workflow("blocker", 0, {"b1": 1.5, "b2": 1.5}, log)
    with pytest.raises(InvalidInput, match="unknown pool 'shared'"):
        sched.apply(text)
    sched.set_pool("shared", 2)
    # AND three workflows of priorities 0, 5 and 10 whose tasks all use it
    runs = []
    sched.apply(text)
    runs.append(sched.trigger("default", "blocker")[0].id)
    runtime.run_until(
        lambda: sum(t.state is TaskState.RUNNING for t in runtime.store.get_tasks(runs[0])) == 2
    )
    for name, prio in (("low", 0), ("high", 10), ("mid", 5)):
        sched.apply(workflow(name, prio, {"t1": 0.3, "t2": 0.3}, log))
        runs.append(sched.trigger("default", name)[0].id)
    # WHEN they run
    finish(runtime, runs)
    # THEN all succeed, never more than 2 tasks ran at once, and the pool was full at times
    assert [runtime.store.get_run(r).state for r in runs] == [RunState.SUCCEEDED] * 4
    events = sorted(
        (float(ts), kind, who)
        for kind, who, ts in (line.split() for line in log.read_text().splitlines())
    )
    running, peak, starts = 0, 0, []
    for _, kind, who in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
        if kind == "start":
            starts.append(who.split(".")[0])
    assert peak == 2
    # AND the waiting tasks got the freed slots by priority: high, then mid, then low
    assert starts == ["blocker", "blocker", "high", "high", "mid", "mid", "low", "low"]
    # AND every slot came back
    pool = runtime.store.get_pool("/shared")
    assert pool is not None
    assert pool.used == 0


def test_force_start_and_pool_management(runtime: LocalRuntime, shared_dir: Path) -> None:
    log = shared_dir / "log"
    sched = runtime.scheduler
    sched.set_pool("shared", 1, project="default")
    with pytest.raises(InvalidInput, match="slots"):
        sched.set_pool("shared", 0)
    sched.apply(workflow("one", 0, {"a": 5, "b": 0.1}, log))
    rid = sched.trigger("default", "one")[0].id
    runtime.run_until(
        lambda: (
            runtime.store.get_tasks(rid, ["a", "b"])[0].state.value != "queued"
            and any(t.pool_rank is not None for t in runtime.store.get_tasks(rid))
        )
    )
    pool, running, waiting = sched.pool_view("default/shared")
    assert (pool.used, len(running), len(waiting)) == (1, 1, 1)
    # a pool in use cannot be deleted
    with pytest.raises(Conflict, match="in use"):
        sched.delete_pool("shared", project="default")
    # WHEN the operator force-starts the waiting task
    forced = sched.force_start(rid, waiting[0].task_id)
    assert forced.state is TaskState.RUNNING
    # THEN it runs beside the other (the pool is over-full until they end)
    pool, running, waiting = sched.pool_view("default/shared")
    assert (pool.used, len(running), len(waiting)) == (2, 2, 0)
    sched.stop(rid)
    pool = runtime.store.get_pool("default/shared")
    assert pool is not None
    assert pool.used == 0
    sched.delete_pool("shared", project="default")
    assert runtime.store.list_pools() == []


# a pool shared by a sub-workflow task and its child run (Airflow's SubDag-and-pool deadlock)
PCHILD = """
name: pchild
tasks:
  c: {type: shell, pool: p1, command: 'echo "done=yes" >> "$STRATOFLOW_OUTPUT"'}
"""
PPARENT = """
name: pparent
tasks:
  k: {type: workflow, workflow: pchild, pool: p1}
"""


@pytest.mark.timeout(90)
def test_a_pool_a_sub_workflow_task_holds_fails_its_child_clearly(runtime: LocalRuntime) -> None:
    sched = runtime.scheduler
    # GIVEN a pool of 1 slot named by the parent's workflow task and by the child's task
    sched.set_pool("p1", 1)
    sched.apply(PCHILD)
    sched.apply(PPARENT)
    run, _ = sched.trigger("default", "pparent")
    # WHEN it runs: it ends (it used to wait for ever), failed, saying why
    until(runtime, lambda: runtime.store.get_run(run.id).state.terminal, timeout=30)
    assert runtime.store.get_run(run.id).state is RunState.FAILED
    k = runtime.store.get_task(run.id, "k")
    assert k.state is TaskState.FAILED
    assert "pool 'p1' can never start task c" in (k.error or "")
    assert f"held until this run ends by the sub-workflow task(s) that started it ({run.id}/k)" in (
        k.error or ""
    )
    # AND nothing holds or waits for the pool
    pool, running, waiting = sched.pool_view("/p1")
    assert (pool.used, running, waiting) == (0, [], [])
    # WHEN the pool has a slot for each: the same workflows share it and succeed
    sched.set_pool("p1", 2)
    second, _ = sched.trigger("default", "pparent")
    until(runtime, lambda: runtime.store.get_run(second.id).state.terminal, timeout=30)
    assert runtime.store.get_run(second.id).state is RunState.SUCCEEDED
    assert runtime.store.get_task(second.id, "k").outputs == {"c": {"done": "yes"}}
    pool = sched.pool_view("/p1")[0]
    assert pool.used == 0
