"""A turn's writes as one value: what the engine decided, for a store to apply all or nothing.

A :class:`Decision` holds conditional task writes (each names the state and attempt it
expects), counter changes and at most one conditional run write. A store applies it
atomically (SQLite: inside the turn's transaction; DynamoDB: one TransactWriteItems) or not
at all, and says which. The functions here build the decisions of the hot path from the slice
the service read; they are pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from stratoflow.engine._engine import (
    AttemptDecision,
    child_state,
    claim,
    dispatch_slots,
    held_claim,
    on_attempt_finished,
    skipped_by_switch,
)
from stratoflow.engine._states import (
    AttemptResult,
    AttemptStatus,
    PoolDelta,
    Run,
    RunState,
    TaskInstance,
    TaskState,
    Upstream,
)
from stratoflow.errors import Conflict
from stratoflow.model import WorkflowSpec

# A decision a store can apply as one DynamoDB transaction (100 items): writes of up to this
# many tasks, plus the counters and the run.
MAX_DECISION_TASKS = 64


@dataclass(frozen=True)
class CountAlong:
    """A parent's end counted in the write that claims or queues its child (the count that
    made it ready), instead of in a write of its own before it: the write then also adds
    ``outcome`` to the child's counts and ``parent`` to the parents it counted, and applies
    only if the child has not counted ``parent`` yet, its counts are still ``seen`` and its
    upstream ``generation`` (a store's counter of count resets: a rerun moves it) is still
    the one read. A write that does not apply counts nothing."""

    parent: str
    outcome: TaskState
    seen: Upstream
    generation: int


@dataclass(frozen=True)
class TaskWrite:
    """Write ``task``'s own fields (never its upstream counts) if the stored task is still in
    state ``expect`` at attempt ``expect_attempt``: of the writers racing for one
    transition, exactly one wins. ``count``: a parent's end counted in the same write (a
    store that ``counts_with_claims``; the others are never given one)."""

    task: TaskInstance
    expect: TaskState
    expect_attempt: int
    count: CountAlong | None = None

    @property
    def ended_attempt(self) -> int | None:
        """The attempt whose end this write records, if it ends one: an end takes its task
        from RUNNING at that attempt; a task that can never start goes from QUEUED to its end
        at its next attempt in one write (``never_started``). None: it ends no attempt."""
        if self.expect is TaskState.RUNNING:
            return self.expect_attempt
        if self.starts_and_ends:
            return self.task.attempt
        return None

    @property
    def starts_and_ends(self) -> bool:
        """Whether this write is ``never_started``'s: from QUEUED straight to an end, at the
        next attempt (an attempt that exists only if the write applies)."""
        return (
            self.expect is TaskState.QUEUED
            and self.task.state.terminal
            and self.task.attempt == self.expect_attempt + 1
        )


@dataclass(frozen=True)
class Decision:
    """Writes to one run, applied all or nothing. Counter fields are deltas."""

    run_id: str
    tasks: tuple[TaskWrite, ...] = ()
    done: int = 0
    failed: int = 0
    running: int = 0
    run: Run | None = None  # written (state fields only) if the stored state is ``run_expect``
    run_expect: RunState | None = None
    pools: tuple[PoolDelta, ...] = ()  # pool counters (engine/pools.py), applied with the rest

    @property
    def counters(self) -> bool:
        return bool(self.done or self.failed or self.running)


def _ended(spec: WorkflowSpec, task: TaskInstance, *, intent: bool) -> TaskInstance:
    """A task that just ended carries the propagation intent if it has children to tell and
    the store needs one (``intent``: the turn is not applied in one piece)."""
    return task.with_(propagating=intent and bool(spec.dag.children[task.task_id]))


def attempt_finished(
    spec: WorkflowSpec,
    ti: TaskInstance,
    attempt: int,
    result: AttemptResult,
    now: datetime,
    *,
    intent: bool,
) -> tuple[Decision, AttemptDecision] | None:
    """The turn of an attempt's end: the task's transition and the run's counters together.
    ``None``: stale or duplicate (the task is no longer running that attempt)."""
    made = on_attempt_finished(spec, ti, attempt, result, now)
    if made is None:
        return None
    new = made.task
    # the attempt's end frees the pool slots it held (engine/pools.py), in the same decision;
    # a retry's next attempt asks for them again (``PoolDelta.retries``)
    retries = int(new.state is TaskState.UP_FOR_RETRY)
    released = (
        (PoolDelta(ti.pool, -ti.pool_slots, retries=retries),)
        if ti.pool and ti.pool_slots > 0
        else ()
    )
    if ti.pool is not None or ti.pool_rank is not None:
        new = new.with_(pool=None, pool_rank=None, pool_slots=0)
        made = AttemptDecision(new, made.retrying)
    terminal = new.state.terminal
    if terminal:
        new = _ended(spec, new, intent=intent)
        made = AttemptDecision(new, made.retrying)
    decision = Decision(
        ti.run_id,
        (TaskWrite(new, TaskState.RUNNING, attempt),),
        done=int(terminal),
        failed=int(new.state is TaskState.FAILED),
        running=-1,
        pools=released,
    )
    return decision, made


def never_started(
    spec: WorkflowSpec, ti: TaskInstance, error: str, now: datetime, *, intent: bool
) -> tuple[Decision, AttemptDecision]:
    """The turn of a QUEUED task that can never start (its pool is gone, or its ancestors
    hold the pool's slots it needs: engine/pools.py): its next attempt fails, not retried,
    in one write from QUEUED, as if claimed and failed at once. Nothing is left claimed
    with nothing to run it (which recovery would start), whatever dies when: the write
    applies with the task's end (the failed counter, the propagation intent) or not at all.
    The running counter does not move (no slot of the run was ever taken), nor does any
    pool's (a queued task holds no slots)."""
    started = claim(spec, ti, now).with_(started_at=now, pool=None, pool_rank=None, pool_slots=0)
    result = AttemptResult(AttemptStatus.FAILED, error=error, retryable=False)
    made = attempt_finished(spec, started, started.attempt, result, now, intent=intent)
    assert made is not None  # the attempt it just claimed
    ended, transition = made
    write = TaskWrite(transition.task, TaskState.QUEUED, ti.attempt)
    return replace(ended, tasks=(write,), running=0, pools=()), transition


def held_retry(ti: TaskInstance, now: datetime) -> Decision | None:
    """A retry claimed before its delay ran out (a dispatcher that waits the delay out itself,
    as the AWS state machine does), its run just paused: back to UP_FOR_RETRY, due when it
    was, so that it waits for the resume as a retry does where nothing is dispatched early.
    Its claimed attempt, which never started, ends here (``held_claim``). None for a task
    that is not such a claim. (A pause that died before this, or whose write of it failed,
    is completed by the retry's executor: when the delay runs out it finds the run paused,
    starts nothing and reports the attempt ``AttemptResult.held``, the same transition.)"""
    if ti.state is not TaskState.RUNNING or ti.started_at is None or ti.started_at <= now:
        return None
    held = held_claim(ti)
    return Decision(ti.run_id, (TaskWrite(held, TaskState.RUNNING, ti.attempt),), running=-1)


def parent_heard(
    spec: WorkflowSpec, parent: TaskInstance, child: TaskInstance, now: datetime, *, intent: bool
) -> Decision | None:
    """``child`` has counted ``parent``'s end (its upstream counts include it): move it if
    its trigger rule now decides, with the run's counters. ``None``: it keeps waiting (or has
    moved already). Idempotent: deciding again from the same counts gives the same write."""
    unchosen = skipped_by_switch(spec, parent.task_id, parent.state, parent.outputs, child.task_id)
    nxt = child_state(spec, child, unchosen=unchosen)
    if nxt is None:
        return None
    moved = child.with_(state=nxt, ended_at=now if nxt.terminal else None)
    if nxt.terminal:
        moved = _ended(spec, moved, intent=intent)
    return Decision(
        child.run_id,
        (TaskWrite(moved, TaskState.WAITING, child.attempt),),
        done=int(nxt.terminal),
    )


def propagated(parent: TaskInstance) -> Decision:
    """Every child has counted ``parent``'s end: retire its propagation intent."""
    return Decision(
        parent.run_id,
        (TaskWrite(parent.with_(propagating=False), parent.state, parent.attempt),),
    )


def claims(
    spec: WorkflowSpec,
    run: Run,
    queued: Sequence[TaskInstance],
    now: datetime,
    *,
    ready: Sequence[TaskInstance] = (),
    processes: int | None = None,
) -> list[Decision]:
    """Claim as many of ``queued`` (this run's, in dispatch order) as the run has free slots:
    QUEUED -> RUNNING with the next attempt number, and the running counter with them, in
    decisions small enough for one transaction each.

    ``ready``: WAITING tasks whose counts this turn made ready (``child_state`` says QUEUED),
    claimed straight from WAITING after the queued ones, so a task that has a free slot when
    it becomes ready is never written QUEUED first. The caller passes them only when the run
    has a slot for every task of both lists (so no queued task is passed over).

    ``processes``: how many more task processes may start (the scheduler's ``parallelism``
    left; None: no such limit). Only tasks that run a process count (``runs_process``); the
    claims stop at the first that would exceed it, so none is passed over."""
    for ti in ready:
        if child_state(spec, ti) is not TaskState.QUEUED:
            raise Conflict(f"task {ti.task_id} is not ready to claim from {ti.state}")
    free = dispatch_slots(spec, run)
    picks = [(ti, TaskState.QUEUED) for ti in queued]
    picks += [(ti.with_(state=TaskState.QUEUED), TaskState.WAITING) for ti in ready]
    picks = picks[:free]
    if processes is not None:
        picks = picks[: within_processes(spec, [ti.task_id for ti, _ in picks], processes)]
    writes = [TaskWrite(claim(spec, ti, now), expect, ti.attempt) for ti, expect in picks]
    return [
        Decision(run.id, tuple(part), running=len(part))
        for part in (
            writes[i : i + MAX_DECISION_TASKS] for i in range(0, len(writes), MAX_DECISION_TASKS)
        )
    ]


def unclaimed(before: TaskInstance, claimed: TaskInstance) -> Decision:
    """A claim given back before its attempt was prepared (the turn's render budget ran out,
    ``Scheduler``): the task as it was before the claim, QUEUED (one claimed straight from
    WAITING joins its run's queue), at the attempt it had, conditional on the claim still
    standing; the run's running counter and the pool slots the claim took with it. The
    attempt never existed: the next claim takes the same number, so its dispatch key too."""
    released = (
        (PoolDelta(claimed.pool, -claimed.pool_slots),)
        if claimed.pool and claimed.pool_slots > 0
        else ()
    )
    back = before.with_(state=TaskState.QUEUED)
    return Decision(
        claimed.run_id,
        (TaskWrite(back, TaskState.RUNNING, claimed.attempt),),
        running=-1,
        pools=released,
    )


# Task types that run no process of their own: the scheduler decides a switch, checks a
# dependency and starts a sub-workflow's child run itself. They take no part of a
# ``parallelism`` limit: a sub-workflow task waiting on its child, or a dependency task on
# another run, counted there could hold every process slot its awaited tasks need.
NO_PROCESS_TYPES = frozenset({"switch", "dependency", "workflow"})


def runs_process(spec: WorkflowSpec, task_id: str) -> bool:
    """Whether an attempt of the task runs a process (counts against ``parallelism``)."""
    return spec.workflow.tasks[task_id].type not in NO_PROCESS_TYPES


def within_processes(spec: WorkflowSpec, task_ids: Sequence[str], processes: int) -> int:
    """How many of ``task_ids`` (in claim order) may be claimed with ``processes`` more task
    processes allowed: up to, not including, the first process task past the limit."""
    for i, task_id in enumerate(task_ids):
        if runs_process(spec, task_id):
            if processes <= 0:
                return i
            processes -= 1
    return len(task_ids)


def together(decisions: Sequence[Decision]) -> list[tuple[Decision, tuple[int, ...]]]:
    """The decisions of one batch (a turn's attempt ends) merged per run, for a store that
    bills each decision as a transaction with the run's counters in it: one decision per run
    (per ``MAX_DECISION_TASKS`` writes) with the writes of its parts and the sum of their
    counter deltas, each with the indexes of the parts it holds. A part is merged only if it
    writes no run and touches no task another merged part touches (a duplicate report); the
    others stand alone. Applying a merged decision applies exactly its parts, all or none."""
    groups: dict[str, list[int]] = {}
    alone: list[int] = []
    seen: dict[str, set[str]] = {}
    for i, d in enumerate(decisions):
        ids = {w.task.task_id for w in d.tasks}
        run_seen = seen.setdefault(d.run_id, set())
        if d.run is not None or len(ids) != len(d.tasks) or ids & run_seen:
            alone.append(i)
            continue
        run_seen |= ids
        groups.setdefault(d.run_id, []).append(i)
    merged: list[tuple[Decision, tuple[int, ...]]] = []
    for run_id, parts in groups.items():
        chunk: list[int] = []
        size = 0
        for i in [*parts, -1]:
            if i >= 0 and size + len(decisions[i].tasks) <= MAX_DECISION_TASKS:
                chunk.append(i)
                size += len(decisions[i].tasks)
                continue
            if chunk:
                merged.append((_merge(run_id, [decisions[j] for j in chunk]), tuple(chunk)))
            chunk, size = ([i], len(decisions[i].tasks)) if i >= 0 else ([], 0)
    merged += [(decisions[i], (i,)) for i in alone]
    return merged


def _merge(run_id: str, parts: Sequence[Decision]) -> Decision:
    if len(parts) == 1:
        return parts[0]
    return Decision(
        run_id,
        tuple(w for d in parts for w in d.tasks),
        done=sum(d.done for d in parts),
        failed=sum(d.failed for d in parts),
        running=sum(d.running for d in parts),
        pools=tuple(p for d in parts for p in d.pools),
    )
