"""Run and task state as the engine sees it: plain immutable values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Self, TypeVar

_V = TypeVar("_V")


def _with(value: _V, changes: dict[str, Any]) -> _V:
    """A copy of a frozen dataclass value (no ``__post_init__``, no init-only fields) with
    ``changes``: what ``dataclasses.replace`` makes, without calling ``__init__`` through
    a getattr per field (the scheduler copies task values ~5 times per task)."""
    names = _FIELDS.get(type(value))
    if names is None:
        if hasattr(type(value), "__post_init__"):  # its __init__ must run: the slow way
            return replace(value, **changes)  # type: ignore[type-var]
        names = _FIELDS[type(value)] = frozenset(f.name for f in fields(value))  # type: ignore[arg-type]
    if not changes.keys() <= names:
        raise TypeError(f"{type(value).__name__} has no field {sorted(changes.keys() - names)}")
    new: _V = object.__new__(type(value))
    new.__dict__.update(value.__dict__, **changes)
    return new


_FIELDS: dict[type, frozenset[str]] = {}


class TaskState(StrEnum):
    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    UP_FOR_RETRY = "up_for_retry"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    STOPPED = "stopped"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_TASK


_TERMINAL_TASK = frozenset(
    {
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.SKIPPED,
        TaskState.UPSTREAM_FAILED,
        TaskState.STOPPED,
    }
)


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def terminal(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.STOPPED)

    @property
    def active(self) -> bool:
        """Counts against ``max_active_runs``."""
        return self in (RunState.RUNNING, RunState.PAUSED)


class AttemptStatus(StrEnum):
    """How one attempt ended, as an executor reports it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    STOPPED = "stopped"
    LOST = "lost"  # the process vanished without a result (e.g. the machine rebooted)


@dataclass(frozen=True)
class Upstream:
    """How many parents ended which way. Failed counts failed, upstream_failed and stopped."""

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.skipped

    def plus(self, outcome: TaskState) -> Upstream:
        if outcome is TaskState.SUCCEEDED:
            return replace(self, succeeded=self.succeeded + 1)
        if outcome is TaskState.SKIPPED:
            return replace(self, skipped=self.skipped + 1)
        return replace(self, failed=self.failed + 1)


@dataclass(frozen=True)
class TaskInstance:
    run_id: str
    task_id: str
    state: TaskState = TaskState.WAITING
    attempt: int = 0  # attempts started so far; the running one is ``attempt``
    attempt_base: int = 0  # attempts made before the last rerun reset the retry budget
    upstream: Upstream = field(default_factory=Upstream)
    ready_at: datetime | None = None  # up_for_retry: when it may run again
    deadline: datetime | None = None  # running: when it times out
    started_at: datetime | None = None
    ended_at: datetime | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    priority: int = 0
    # The task ended but its children may not all have counted that end yet: a durable intent
    # on stores that cannot apply a whole turn at once (DynamoDB). Whoever comes next (the
    # redelivered outcome, the reconciler) finishes the propagation; it is cleared after.
    propagating: bool = False
    # Pools (engine/pools.py): the key of the pool the task waits in (``pool_rank`` set,
    # state QUEUED) or holds ``pool_slots`` of (state RUNNING); None otherwise.
    pool: str | None = None
    pool_rank: int | None = None
    pool_slots: int = 0
    # A sub-workflow task that a rerun asked to run again whole (``--from`` it or a task
    # upstream of it, a backfill's ``--rerun all``): the first attempt after that rerun runs
    # its child run again, all of it, where a child that had succeeded would otherwise stand
    # (``engine.subworkflow.on_claim``). Kept until that attempt is made.
    rerun_child: bool = False
    # A sub-workflow task that ended with its child run's end (``engine.subworkflow``): when
    # that child run ended. The task follows its child from then on: a later end of the
    # same child run (the child marked or rerun on its own) is the task's new outcome
    # (``engine.subworkflow.takes_end``), an end not later is one it has taken. None for
    # every other task, and for one that ended otherwise (stopped, timed out, or marked
    # while its child ran, which stops the child) or was reset by a rerun of its own run.
    child_end: datetime | None = None

    @property
    def try_number(self) -> int:
        """Which try of the current budget the latest attempt is (1 = first)."""
        return self.attempt - self.attempt_base

    def with_(self, **changes: Any) -> Self:
        return _with(self, changes)


@dataclass(frozen=True)
class Run:
    id: str
    workflow: str
    project: str
    version: int
    state: RunState
    params: dict[str, Any]
    logical_date: datetime
    created_at: datetime
    trigger: str = "manual"  # manual | schedule | backfill | api
    started_at: datetime | None = None
    ended_at: datetime | None = None
    n_tasks: int = 0
    n_done: int = 0  # tasks in a terminal state
    n_failed: int = 0  # tasks that ended failed
    n_running: int = 0  # attempts dispatched and not yet finished
    error: str | None = None
    parent: str | None = None  # a sub-workflow's run: "<parent run id>/<task id>"
    # PAUSED because its parent run was (a cascade, undone when the parent resumes), not by
    # an operator's own pause of this run
    paused_by_parent: bool = False
    # how many whole-run plans (``StateStore.apply_plan``) the store had applied to the run
    # when it was read: a plan decided from this read applies only while it is still this
    # many, so of two plans decided from one read one applies, and the other is refused (its
    # caller decides it again). Store bookkeeping: not part of the run's value (equality)
    plan_gen: int = field(default=0, compare=False)

    def with_(self, **changes: Any) -> Self:
        return _with(self, changes)


@dataclass(frozen=True)
class PoolDelta:
    """Add ``slots`` to pool ``key``'s ``used`` counter. An acquisition (``slots > 0``) with a
    ``limit`` applies only if ``used + slots <= limit`` (the decision holding it fails
    otherwise); a release applies always (a pool deleted meanwhile: nothing to change).
    ``retries``: tasks of the release that enter their retry wait, whose next attempt asks for
    the pool again (they hold none of its slots meanwhile): a store whose pool deletion cannot
    see them atomically notes them on the pool (``PoolStore.delete_pool``)."""

    key: str
    slots: int
    limit: int | None = None
    retries: int = 0


@dataclass(frozen=True)
class AttemptResult:
    """What an executor reports for (run, task, attempt)."""

    status: AttemptStatus
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    exit_code: int | None = None
    retryable: bool = True  # a template error is not worth retrying
    # a killed attempt (timed out) whose processes may live on until then (the executor's
    # SIGTERM-to-SIGKILL grace): its retry is not due before, so two never run at once
    retry_not_before: datetime | None = None
    # when it ended, where the executor knows that to be before its report: an end found
    # after a restart (the scheduler was down when it happened). None: when reported.
    ended_at: datetime | None = None
    # a sub-workflow task's result: when the child run it reports ended (the task keeps it:
    # ``TaskInstance.child_end``)
    child_end: datetime | None = None
    # the attempt never started: a retry claimed before its delay ran out (a dispatcher that
    # waits the delay out itself: AWS) whose executor, when the delay ran out, found its run
    # paused. The claim is taken back as a pause takes it back (``held_retry``): the retry
    # waits for the resume, not STOPPED (status says stopped: the attempt's record)
    held: bool = False


HELD_RETRY_ERROR = (
    "not started: its run was paused during the retry's delay; the retry waits for the resume"
)
