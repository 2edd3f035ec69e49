"""Pools and priorities as pure engine rules (stratoflow/engine/pools.py)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from stratoflow import engine
from stratoflow.engine import (
    AttemptResult,
    AttemptStatus,
    PoolDelta,
    Run,
    RunState,
    TaskInstance,
    TaskState,
    pools,
)
from stratoflow.engine.pools import AGING, Pool
from stratoflow.errors import Conflict
from stratoflow.model import WorkflowSpec, load_workflow

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def spec_of(text: str) -> WorkflowSpec:
    return load_workflow(textwrap.dedent(text))


SPEC = spec_of(
    """
    name: wf
    project: p
    priority: 3
    tasks:
      a: {type: shell, command: "true", pool: wh, priority: 2}
      b: {type: shell, command: "true", pool: wh, pool_slots: 2}
      c: {type: shell, command: "true"}
    """
)


def run_of(spec: WorkflowSpec, rid: str = "r1", state: RunState = RunState.RUNNING) -> Run:
    return Run(
        rid, spec.name, spec.project, 1, state, {}, NOW, NOW, n_tasks=len(spec.workflow.tasks)
    )


def waiting(rid: str, tid: str, key: str, at: datetime, priority: int = 0) -> TaskInstance:
    ti = TaskInstance(rid, tid, TaskState.QUEUED, priority=priority)
    return engine.pools.enqueue(ti, key, at).tasks[0].task


def test_task_priority_adds_the_workflows_and_new_run_records_it() -> None:
    assert pools.task_priority(SPEC, "a") == 5
    _, tasks = engine.new_run(SPEC, run_id="r", version=1, params={}, logical_date=NOW, now=NOW)
    assert {t.task_id: t.priority for t in tasks} == {"a": 5, "b": 3, "c": 3}


def test_pool_fields_are_bounded_and_not_passed_to_executors() -> None:
    with pytest.raises(Exception, match="priority"):
        spec_of("name: x\npriority: 101\ntasks: {a: {type: shell, command: 'true'}}")
    with pytest.raises(Exception, match="pool_slots"):
        spec_of("name: x\ntasks: {a: {type: shell, command: 'true', pool: p, pool_slots: 0}}")
    with pytest.raises(Exception, match="pool"):
        spec_of("name: x\ntasks: {a: {type: shell, command: 'true', pool: 'Bad Name'}}")
    run = run_of(SPEC)
    rendered = engine.render_task(SPEC, run, "a", {})
    assert not {"pool", "pool_slots", "priority"} & set(rendered.fields)


def test_check_refuses_unknown_pools_and_too_wide_tasks() -> None:
    known = {"/wh": Pool("", "wh", 1)}
    problems = pools.check(SPEC, known.get)
    assert [p.path for p in problems] == ["tasks.b.pool_slots"]
    assert "more than the 1 slots of global pool 'wh'" in problems[0].message
    problems = pools.check(SPEC, {}.get)
    assert [p.path for p in problems] == ["tasks.a.pool", "tasks.b.pool"]
    assert "unknown pool 'wh' in project 'p'" in problems[0].message
    # a project's pool shadows a global one of the same name
    known = {"/wh": Pool("", "wh", 1), "p/wh": Pool("p", "wh", 4)}
    assert pools.check(SPEC, known.get) == []
    assert pools.find(SPEC, "a", known.get) == Pool("p", "wh", 4)
    assert pools.find(SPEC, "a", {"/wh": known["/wh"]}.get) == Pool("", "wh", 1)
    assert pools.find(SPEC, "a", {}.get) is None
    assert pools.find(SPEC, "c", known.get) is None


def test_split_sends_pooled_tasks_to_their_pool_queue_once() -> None:
    q = [TaskInstance("r1", t, TaskState.QUEUED) for t in ("a", "b", "c")]
    plain, pooled = pools.split(SPEC, q)
    assert [t.task_id for t in plain] == ["c"]
    assert [t.task_id for t in pooled] == ["a", "b"]
    joined = waiting("r1", "a", "p/wh", NOW)
    assert pools.split(SPEC, [joined]) == ([], [])  # claimed from the pool, never the run


def test_rank_orders_by_priority_then_fifo_and_ages() -> None:
    assert pools.rank(5, NOW) < pools.rank(4, NOW)  # higher priority first
    assert pools.rank(0, NOW) < pools.rank(0, NOW + timedelta(milliseconds=1))  # FIFO
    # a task of priority 0 waiting k agings ranks with one of priority k arriving now
    assert pools.rank(0, NOW) == pools.rank(10, NOW + 10 * AGING)
    assert pools.rank(0, NOW) < pools.rank(10, NOW + 10 * AGING + timedelta(milliseconds=1))


def test_the_starvation_bound() -> None:
    """A task of the lowest priority is overtaken by no task (of any priority) that joins
    more than (max - min priority) agings after it."""
    low = pools.rank(-200, NOW)
    later = NOW + 400 * AGING + timedelta(milliseconds=1)
    assert pools.rank(200, later) > low
    assert pools.rank(200, later - timedelta(milliseconds=2)) < low


def runs_for(*rids: str, spec: WorkflowSpec = SPEC) -> dict[str, tuple[Run, WorkflowSpec]]:
    return {rid: (run_of(spec, rid), spec) for rid in rids}


def test_serve_claims_in_queue_order_within_free_slots() -> None:
    pool = Pool("p", "wh", slots=2, used=0)
    q = [
        waiting("r1", "a", pool.key, NOW),
        waiting("r2", "a", pool.key, NOW + timedelta(seconds=1)),
        waiting("r3", "a", pool.key, NOW + timedelta(seconds=2)),
    ]
    decisions = pools.serve(pool, q, runs_for("r1", "r2", "r3"), NOW)
    assert [d.run_id for d in decisions] == ["r1", "r2"]
    d = decisions[0]
    assert d.running == 1
    assert d.pools == (PoolDelta("p/wh", 1, 2),)
    w = d.tasks[0]
    assert w.expect is TaskState.QUEUED
    assert w.task.state is TaskState.RUNNING
    assert (w.task.pool, w.task.pool_slots, w.task.pool_rank, w.task.attempt) == (
        "p/wh",
        1,
        None,
        1,
    )
    # one slot used: only the head
    assert [
        d.run_id for d in pools.serve(Pool("p", "wh", 2, 1), q, runs_for("r1", "r2", "r3"), NOW)
    ] == ["r1"]
    assert pools.serve(Pool("p", "wh", 2, 2), q, runs_for("r1", "r2", "r3"), NOW) == []
    # over-full after a force start or a shrink: nothing
    assert pools.serve(Pool("p", "wh", 2, 5), q, runs_for("r1", "r2", "r3"), NOW) == []


def test_serve_head_of_line_blocks_narrower_tasks_but_skips_runs_that_cannot_start() -> None:
    pool = Pool("p", "wh", slots=2, used=1)
    wide = waiting("r1", "b", pool.key, NOW)  # needs 2
    narrow = waiting("r2", "a", pool.key, NOW + timedelta(seconds=1))
    assert pools.serve(pool, [wide, narrow], runs_for("r1", "r2"), NOW) == []
    # a paused run's task is passed over
    runs = runs_for("r1", "r2")
    runs["r1"] = (run_of(SPEC, "r1", RunState.PAUSED), SPEC)
    assert [d.run_id for d in pools.serve(pool, [wide, narrow], runs, NOW)] == ["r2"]
    # a task wider than the whole (shrunk) pool does not block
    small = Pool("p", "wh", slots=1, used=0)
    assert [d.run_id for d in pools.serve(small, [wide, narrow], runs_for("r1", "r2"), NOW)] == [
        "r2"
    ]


def test_serve_respects_run_concurrency() -> None:
    spec = spec_of(
        """
        name: wf
        project: p
        concurrency: 1
        tasks:
          a: {type: shell, command: "true", pool: wh}
          b: {type: shell, command: "true", pool: wh}
        """
    )
    pool = Pool("p", "wh", slots=5)
    q = [waiting("r1", "a", pool.key, NOW), waiting("r1", "b", pool.key, NOW)]
    runs = {"r1": (run_of(spec, "r1"), spec)}
    assert [d.tasks[0].task.task_id for d in pools.serve(pool, q, runs, NOW)] == ["a"]


def test_an_attempts_end_releases_its_slots_in_the_same_decision() -> None:
    pool = Pool("p", "wh", slots=2)
    (claim,) = pools.serve(pool, [waiting("r1", "b", pool.key, NOW)], runs_for("r1"), NOW)
    running = claim.tasks[0].task
    for status in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED, AttemptStatus.STOPPED):
        made = engine.attempt_finished(
            SPEC, running, running.attempt, AttemptResult(status), NOW, intent=False
        )
        assert made is not None
        decision, _ = made
        assert decision.pools == (PoolDelta("p/wh", -2),)
        assert (decision.tasks[0].task.pool, decision.tasks[0].task.pool_slots) == (None, 0)
    # a duplicate report releases nothing
    assert engine.attempt_finished(
        SPEC, running.with_(state=TaskState.SUCCEEDED), running.attempt,
        AttemptResult(AttemptStatus.SUCCEEDED), NOW, intent=False,
    ) is None  # fmt: skip
    # a plain task's end has no pool delta
    plain = engine.claim(SPEC, TaskInstance("r1", "c", TaskState.QUEUED), NOW)
    made = engine.attempt_finished(
        SPEC, plain, plain.attempt, AttemptResult(AttemptStatus.SUCCEEDED), NOW, intent=False
    )
    assert made is not None
    assert made[0].pools == ()


def test_merged_decisions_keep_their_pool_deltas() -> None:
    a = engine.Decision("r1", (), running=-1, pools=(PoolDelta("/x", -1),))
    b = engine.Decision("r1", (), running=-1, pools=(PoolDelta("/x", -2),))
    ((merged, parts),) = engine.together([a, b])
    assert parts == (0, 1)
    assert merged.pools == (PoolDelta("/x", -1), PoolDelta("/x", -2))


def test_stop_releases_running_slots_and_leaves_the_queue() -> None:
    pool = Pool("p", "wh", slots=2)
    (claim,) = pools.serve(pool, [waiting("r1", "a", pool.key, NOW)], runs_for("r1"), NOW)
    running = claim.tasks[0].task
    queued_b = waiting("r1", "b", pool.key, NOW)
    plan = pools.settle_plan(
        engine.stop(run_of(SPEC), [running, queued_b, TaskInstance("r1", "c")], NOW)
    )
    assert plan.pool_releases == [running]
    assert all(t.pool is None and t.pool_rank is None for t in plan.tasks.values())


def test_a_rerun_of_a_running_run_leaves_the_pool_queue_of_a_task_it_resets() -> None:
    """y waits in its pool's queue when the run is rerun from x: reset, y leaves the queue,
    which the plan says (``queues_left``), so the queue behind it is served again."""
    spec = spec_of(
        """
        name: chain
        project: p
        tasks:
          x: {type: shell, command: "true"}
          y: {type: shell, command: "true", pool: wh, depends_on: [x]}
        """
    )
    x = TaskInstance("r1", "x", TaskState.SUCCEEDED, attempt=1, ended_at=NOW)
    y = waiting("r1", "y", "p/wh", NOW)
    assert y.pool_rank is not None
    plan = pools.settle_plan(engine.rerun_from(spec, run_of(spec), [x, y], "x", NOW))
    assert {t: ti.state for t, ti in plan.tasks.items()} == {
        "x": TaskState.QUEUED, "y": TaskState.WAITING,
    }  # fmt: skip
    assert plan.queues_left == frozenset({"p/wh"})


def test_force_start_ignores_the_queue_and_the_free_slots() -> None:
    ti = waiting("r1", "b", "p/wh", NOW)
    d = pools.force_start(SPEC, run_of(SPEC), ti, NOW)
    assert d.pools == (PoolDelta("p/wh", 2, None),)
    assert d.running == 1
    assert d.tasks[0].task.state is TaskState.RUNNING
    with pytest.raises(Conflict, match="not waiting in a pool"):
        pools.force_start(SPEC, run_of(SPEC), TaskInstance("r1", "c", TaskState.QUEUED), NOW)
    with pytest.raises(Conflict, match="paused"):
        pools.force_start(SPEC, run_of(SPEC, state=RunState.PAUSED), ti, NOW)


def test_a_task_that_can_never_start_fails_in_one_write_from_queued() -> None:
    """No claim written on its own (a crash after it would leave an attempt that recovery
    starts): the task goes from QUEUED to FAILED at its next attempt in one conditional write,
    with the failed and done counters, not retried whatever its retries, holding no slot."""
    spec = spec_of(
        """
        name: wf
        project: p
        defaults: {retries: 3}
        tasks:
          a: {type: shell, command: "true", pool: wh}
          b: {type: shell, command: "true", depends_on: [a]}
        """
    )
    queued = TaskInstance("r1", "a", TaskState.QUEUED, attempt=1, ready_at=NOW + timedelta(1))
    decision, made = engine.never_started(
        spec, queued, "pool 'wh' does not exist", NOW, intent=True
    )
    (write,) = decision.tasks
    assert (write.expect, write.expect_attempt) == (TaskState.QUEUED, 1)
    assert write.task is made.task
    assert not made.retrying
    failed = made.task
    assert (failed.state, failed.attempt, failed.error) == (
        TaskState.FAILED, 2, "pool 'wh' does not exist",
    )  # fmt: skip
    assert (failed.started_at, failed.ended_at, failed.deadline) == (NOW, NOW, None)
    assert (failed.pool, failed.pool_rank, failed.pool_slots) == (None, None, 0)
    assert failed.propagating  # b hears of it through the intent where a turn is not atomic
    assert (decision.done, decision.failed, decision.running, decision.pools) == (1, 1, 0, ())
    assert not engine.never_started(spec, queued, "x", NOW, intent=False)[1].task.propagating
    with pytest.raises(Conflict, match="not queued"):
        engine.never_started(spec, failed, "x", NOW, intent=False)


def test_drift_names_pools_whose_counter_differs() -> None:
    held = TaskInstance("r", "a", TaskState.RUNNING, pool="/x", pool_slots=2)
    assert pools.drift({"/x": 2}, [held]) == {}
    assert pools.drift({"/x": 1}, [held]) == {"/x": (1, 2)}
    assert pools.drift({"/x": 0, "/y": 1}, []) == {"/y": (1, 0)}
