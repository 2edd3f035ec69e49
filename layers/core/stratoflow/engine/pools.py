"""Pools and priorities (DolphinScheduler's task groups, Airflow's pools), as pure rules.

A pool is a named number of slots, global or per project, shared by every run. A task that
names a pool (``pool``, ``pool_slots``) and becomes ready does not start at once: it *joins
the pool's queue* (a conditional write of its ``pool`` key and ``pool_rank``), and is claimed
from that queue only when its slots are free, by whichever turn frees them or notices them
free, whatever run it belongs to. A claim holds its slots until the attempt ends (any end:
success, failure, retry, timeout, stop), and the pool's ``used`` counter changes in the same
atomic write as the task's transition (``Decision.pools``, ``Plan.pool_releases``), so the
counter never drifts from the slots the running tasks hold, whatever dies when.

Order in a pool's queue: its ``pool_rank``, lowest first, then FIFO. A task's priority is its
workflow's ``priority`` plus its own (``TaskInstance.priority``, each in [-100, 100]). To
keep low priorities from starving, a waiting task *ages*: its effective priority rises by one
for every ``AGING`` it has waited. Ordering by effective priority at any instant is the same
as ordering by ``enqueue time - priority * AGING``, which does not change while the task
waits: that constant is the rank, so the queue is a plain sorted index (O(log n) per enqueue
and per claim, no rescan as time passes).

The bound (documented in the README): a task of priority ``p`` that joined the queue at
``t`` is served before every task that joins after ``t + (q - p) * AGING`` with priority
``q``. With priorities in [-200, 200] no task is ever overtaken by work that arrived more than
``400 * AGING`` (6 h 40 min) after it: it waits at most for what arrived before that.

Head of line: the queue is served in rank order while the head fits the free slots; a head
needing more slots than are free blocks those behind it (so a wide task is not starved by
narrow ones). Skipped without blocking: a task whose run cannot start it now (paused, at its
``concurrency``), and one needing more slots than the pool has at all.

A pool shrunk below a task's ``pool_slots`` after its workflow was applied: the task can never
start (apply refuses such a workflow, so it is a stale one). It fails instead of waiting for
ever, naming the pool, both sizes and the fix (``too_small``): when it would join the queue,
and, if it was waiting already, when a pass over the queue finds it (``too_small_waiting``).

Sub-workflows: a ``type: workflow`` task that names a pool holds its slots until its child
run ends. A task of that child (at any depth) in the same pool that could never fit beside
what its ancestors hold (``held + pool_slots > slots``) fails when it would join the queue,
naming the pool and the cause (``starved_by_ancestors``), instead of waiting for ever. Not
detected: several runs' sub-workflow tasks together holding every slot their children wait
for (two runs of such a parent on a pool of 2 slots): those wait until a slot is freed by
hand (a stop, a larger pool).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from stratoflow.engine._decision import Decision, TaskWrite, runs_process
from stratoflow.engine._engine import Plan, claim, dispatch_slots
from stratoflow.engine._states import PoolDelta, Run, RunState, TaskInstance, TaskState
from stratoflow.errors import Conflict, Problem
from stratoflow.model import WorkflowSpec
from stratoflow.model._workflow import MAX_POOL_SLOTS, pools_set_command

AGING = timedelta(minutes=1)  # one priority point per minute waited
_AGING_MS = int(AGING.total_seconds() * 1000)
MAX_POOLS_PER_PASS = 64  # waiting tasks one pass over a pool's queue reads
_NAME = re.compile(r"[a-z0-9_-]+")


def pool_key(scope: str, name: str) -> str:
    """The key a pool goes by: ``project/name``, or ``/name`` for a global pool."""
    return f"{scope}/{name}"


def split_key(key: str) -> tuple[str, str]:
    scope, _, name = key.partition("/")
    return scope, name


@dataclass(frozen=True)
class Pool:
    scope: str  # a project, or "" for a global pool
    name: str
    slots: int
    used: int = 0  # slots held by running tasks

    @property
    def key(self) -> str:
        return pool_key(self.scope, self.name)

    @property
    def free(self) -> int:
        return max(self.slots - self.used, 0)


def task_priority(spec: WorkflowSpec, task_id: str) -> int:
    """A task's priority: its workflow's plus its own."""
    return spec.workflow.priority + spec.workflow.tasks[task_id].priority


def pool_of(spec: WorkflowSpec, task_id: str) -> str | None:
    """The pool name a task asks for (None: no pool)."""
    return spec.workflow.tasks[task_id].pool


def find(spec: WorkflowSpec, task_id: str, lookup: Callable[[str], Pool | None]) -> Pool | None:
    """The pool a task uses: its project's pool of that name if there is one, else the
    global one, as ``lookup`` reads it; None if neither exists (or the task names no pool)."""
    name = pool_of(spec, task_id)
    if name is None:
        return None
    for key in (pool_key(spec.project, name), pool_key("", name)):
        if (pool := lookup(key)) is not None:
            return pool
    return None


def too_small(pool: Pool, task_id: str, need: int) -> str | None:
    """Why a task needing ``need`` slots can never start in ``pool`` (the pool was shrunk
    below its ``pool_slots`` after its workflow was applied), or None if it fits."""
    if need <= pool.slots:
        return None
    project = [f"--project {pool.scope}"] if pool.scope else []
    return (
        f"pool {pool.name!r} can never start task {task_id}: the task needs {need} slot(s) "
        f"(pool_slots: {need}) and the pool has {pool.slots}; give the pool more slots "
        f"({pools_set_command(pool.name, f'--slots {need}', *project)}) or lower the task's "
        f"pool_slots to {pool.slots} and apply the workflow again"
    )


def too_small_waiting(
    pool: Pool,
    waiting: Sequence[TaskInstance],
    runs: Mapping[str, tuple[Run, WorkflowSpec]],
) -> list[tuple[TaskInstance, str]]:
    """The waiting tasks (as read, with their runs) that need more slots than the pool has,
    each with why (``too_small``): those of running runs only (a paused run's task fails
    once its run is resumed and the queue served again)."""
    out: list[tuple[TaskInstance, str]] = []
    for ti in waiting:
        if ti.state is not TaskState.QUEUED or ti.pool != pool.key or ti.run_id not in runs:
            continue
        run, spec = runs[ti.run_id]
        if run.state is not RunState.RUNNING:
            continue
        why = too_small(pool, ti.task_id, spec.workflow.tasks[ti.task_id].pool_slots)
        if why is not None:
            out.append((ti, why))
    return out


def outgrown(pool: Pool, spec: WorkflowSpec) -> list[str]:
    """What a resize of ``pool`` to fewer slots than tasks of ``spec`` (a version whose
    tasks use it) need means for them, one line each: they will fail (``too_small``)."""
    return [
        f"workflow {spec.project}/{spec.name}: task {task_id} needs {task.pool_slots} slot(s) "
        f"(pool_slots: {task.pool_slots}) of pool {pool.name!r}, which has {pool.slots} now: "
        "it fails when it becomes ready (one waiting already, at the next pass over the queue) "
        f"until the pool has {task.pool_slots} again or the task's pool_slots is lowered"
        for task_id, task in spec.workflow.tasks.items()
        if task.pool == pool.name and task.pool_slots > pool.slots
    ]


def check(spec: WorkflowSpec, lookup: Callable[[str], Pool | None]) -> list[Problem]:
    """Apply-time checks: every pool a task names exists for its project, and is wide
    enough for the task's ``pool_slots``."""
    problems: list[Problem] = []
    for task_id, task in spec.workflow.tasks.items():
        if task.pool is None:
            continue
        pool = find(spec, task_id, lookup)
        if pool is None:
            problems.append(
                Problem(
                    f"tasks.{task_id}.pool",
                    f"unknown pool {task.pool!r} in project {spec.project!r} (create it first: "
                    f"{pools_set_command(task.pool, '--slots N', f'[--project {spec.project}]')})",
                )
            )
        elif task.pool_slots > pool.slots:
            where = "global pool" if not pool.scope else "pool"
            problems.append(
                Problem(
                    f"tasks.{task_id}.pool_slots",
                    f"{task.pool_slots} is more than the {pool.slots} slots of {where} "
                    f"{task.pool!r}",
                )
            )
    return problems


def candidate_keys(spec: WorkflowSpec) -> frozenset[str]:
    """Every pool key a task of ``spec`` may wait in (its project's pool of each name, and
    the global one): the queues to serve when one of its runs may take a waiting task again
    (resumed, a ``concurrency`` slot freed). A key with no pool behind it serves nothing."""
    return frozenset(
        key
        for task in spec.workflow.tasks.values()
        if task.pool is not None
        for key in (pool_key(spec.project, task.pool), pool_key("", task.pool))
    )


def split(
    spec: WorkflowSpec, queued: Sequence[TaskInstance]
) -> tuple[list[TaskInstance], list[TaskInstance]]:
    """A run's queued tasks: those that claim as usual, and those that must join a pool's
    queue first (a task already in one is claimed from there, never from the run's queue)."""
    plain: list[TaskInstance] = []
    pooled: list[TaskInstance] = []
    for ti in queued:
        if ti.pool_rank is not None:
            continue
        (plain if pool_of(spec, ti.task_id) is None else pooled).append(ti)
    return plain, pooled


def rank(priority: int, now: datetime) -> int:
    """Where a task joining a pool's queue now goes: lower first (see the module doc)."""
    return int(now.timestamp() * 1000) - priority * _AGING_MS


def enqueue(ti: TaskInstance, key: str, now: datetime) -> Decision:
    """A ready task joins pool ``key``'s queue."""
    if ti.state is not TaskState.QUEUED:
        raise Conflict(f"task {ti.task_id} is {ti.state}, not queued")
    joined = ti.with_(pool=key, pool_rank=rank(ti.priority, now), pool_slots=0)
    return Decision(ti.run_id, (TaskWrite(joined, TaskState.QUEUED, ti.attempt),))


def _claim(
    spec: WorkflowSpec, ti: TaskInstance, key: str, now: datetime, limit: int | None
) -> Decision:
    need = spec.workflow.tasks[ti.task_id].pool_slots
    started = claim(spec, ti, now).with_(pool=key, pool_rank=None, pool_slots=need)
    return Decision(
        ti.run_id,
        (TaskWrite(started, TaskState.QUEUED, ti.attempt),),
        running=1,
        pools=(PoolDelta(key, need, limit),),
    )


def serve(
    pool: Pool,
    waiting: Sequence[TaskInstance],
    runs: Mapping[str, tuple[Run, WorkflowSpec]],
    now: datetime,
    *,
    processes: int | None = None,
) -> list[Decision]:
    """Which of a pool's waiting tasks (in queue order) to claim now, one decision each:
    the task QUEUED -> RUNNING, its run's running counter and the pool's ``used`` counter,
    conditional on the slots being free when it is applied. ``runs``: each waiting task's
    run and spec, as read. ``processes``: how many more task processes may start (the
    scheduler's ``parallelism`` left; None: no limit); the first task that runs a process
    past it stops the pass, as a slot short does."""
    free = pool.free
    run_free = {rid: dispatch_slots(spec, run) for rid, (run, spec) in runs.items()}
    out: list[Decision] = []
    for ti in waiting:
        if free <= 0:
            break
        if ti.state is not TaskState.QUEUED or ti.pool != pool.key or ti.run_id not in runs:
            continue
        spec = runs[ti.run_id][1]
        need = spec.workflow.tasks[ti.task_id].pool_slots
        if need > pool.slots:
            continue  # can never fit (too_small_waiting): does not block the others
        if run_free.get(ti.run_id, 0) <= 0:
            continue  # its run cannot start it now (paused, at its concurrency)
        if need > free:
            break  # head of line: narrower tasks behind it do not overtake it
        if processes is not None and runs_process(spec, ti.task_id):
            if processes <= 0:
                break  # nor does a task behind it take the process it waits for
            processes -= 1
        out.append(_claim(spec, ti, pool.key, now, pool.slots))
        free -= need
        run_free[ti.run_id] -= 1
    return out


def _holding(key: str, ancestors: Sequence[TaskInstance]) -> list[TaskInstance]:
    """The running sub-workflow tasks among a run's ancestors that hold slots of pool ``key``."""
    return [t for t in ancestors if t.state is TaskState.RUNNING and t.pool == key]


def held_by_ancestors(key: str, ancestors: Sequence[TaskInstance]) -> int:
    """The slots of pool ``key`` that a run's ancestors hold: the running sub-workflow tasks
    (its parent's, its grandparent's, ...) that wait for it to end."""
    return sum(t.pool_slots for t in _holding(key, ancestors))


def starved_by_ancestors(
    pool: Pool, task_id: str, need: int, ancestors: Sequence[TaskInstance]
) -> str | None:
    """Why a task of a child run can never get its slots, or None if it can.

    A sub-workflow task holds its pool's slots until its child run ends; a task of that child
    (or of a grandchild) in the same pool needs slots the ancestors will not free while it
    waits. When the ancestors hold so many that ``need`` can never fit (``held + need >
    slots``) the task would wait for ever (Airflow's SubDag-and-pool deadlock): the message
    says so, naming the pool, and the task fails instead. With enough slots (2 slots, the
    parent holds 1, the child needs 1) it waits like any other task."""
    holding = _holding(pool.key, ancestors)
    held = sum(t.pool_slots for t in holding)
    if not held or held + need <= pool.slots:
        return None
    holders = ", ".join(f"{t.run_id}/{t.task_id}" for t in holding)
    project = [f"--project {pool.scope}"] if pool.scope else []
    command = pools_set_command(pool.name, f"--slots {held + need}", *project)
    return (
        f"pool {pool.name!r} can never start task {task_id}: it needs {need} of the pool's "
        f"{pool.slots} slot(s), and {held} are held until this run ends by the sub-workflow "
        f"task(s) that started it ({holders}), a deadlock; give the pool more slots "
        f"({command}) or take the pool "
        "off one of the two tasks"
    )


def force_start(spec: WorkflowSpec, run: Run, ti: TaskInstance, now: datetime) -> Decision:
    """An operator starts one waiting task now, ahead of the queue and whatever the free
    slots: it holds its slots like any other (``used`` may exceed the pool's size until
    enough running tasks end), so the counts stay true."""
    if ti.state is not TaskState.QUEUED or ti.pool_rank is None or ti.pool is None:
        raise Conflict(f"task {ti.task_id} of run {run.id} is not waiting in a pool")
    if run.state is not RunState.RUNNING:
        raise Conflict(f"run {run.id} is {run.state}; only a running run's task can start")
    return _claim(spec, ti, ti.pool, now, None)


def cleared(ti: TaskInstance) -> TaskInstance:
    """A task that holds or waits for nothing any more."""
    if ti.pool is None and ti.pool_rank is None and not ti.pool_slots:
        return ti
    return ti.with_(pool=None, pool_rank=None, pool_slots=0)


def settle_plan(plan: Plan) -> Plan:
    """A whole-run operation (stop, mark, rerun) frees the slots of the running attempts it
    ends (each released only if it is still running that attempt when the plan applies: an
    end reported meanwhile has released it already) and takes the tasks it moves out of
    their pools' queues (``queues_left``: the queue behind each may move now)."""
    tasks = {
        tid: cleared(t) if t.state is not TaskState.RUNNING else t for tid, t in plan.tasks.items()
    }
    holding = [t for t in plan.kill if t.pool is not None and t.pool_slots > 0]
    left = frozenset(
        t.pool
        for t in plan.tasks.values()
        if t.pool is not None and t.pool_rank is not None and t.state is not TaskState.QUEUED
    ) | frozenset(  # as read, on a run that goes on: one a reset (its pool fields gone) takes out
        t.pool
        for t in plan.if_unchanged
        if t.pool is not None and t.pool_rank is not None and plan.tasks[t.task_id].pool is None
    )
    return replace(plan, tasks=tasks, pool_releases=holding, queues_left=left)


def drift(pools: Mapping[str, int], running: Sequence[TaskInstance]) -> dict[str, tuple[int, int]]:
    """Pools whose ``used`` counter differs from the slots their running tasks hold:
    key -> (counter, held). Empty when the counts are consistent (what tests check)."""
    held: dict[str, int] = {}
    for t in running:
        if t.state is TaskState.RUNNING and t.pool is not None:
            held[t.pool] = held.get(t.pool, 0) + t.pool_slots
    return {
        k: (pools.get(k, 0), held.get(k, 0))
        for k in set(pools) | set(held)
        if pools.get(k, 0) != held.get(k, 0)
    }


def check_pool(name: str, slots: int, project: str | None) -> list[Problem]:
    """A pool definition's bounds."""
    problems: list[Problem] = []
    if not _NAME.fullmatch(name) or len(name) > 128:
        problems.append(Problem("name", "a pool name is [a-z0-9_-]+, at most 128 characters"))
    if project is not None and (not _NAME.fullmatch(project) or len(project) > 128):
        problems.append(Problem("project", "a project name is [a-z0-9_-]+"))
    if not 1 <= slots <= MAX_POOL_SLOTS:
        problems.append(Problem("slots", f"slots must be between 1 and {MAX_POOL_SLOTS}"))
    return problems
