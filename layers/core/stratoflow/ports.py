"""Ports: the small interfaces the service needs from the outside world.

Each adapter implements a port in one module (``adapters/local``, later ``adapters/aws``).
The contract suite in ``tests/contract`` runs against every StateStore implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from stratoflow.auth import Principal, Role
from stratoflow.engine import (
    AttemptResult,
    Decision,
    Plan,
    RenderedTask,
    Run,
    RunState,
    TaskInstance,
    TaskState,
    TaskWrite,
)
from stratoflow.engine.backfill import Backfill
from stratoflow.engine.pools import Pool
from stratoflow.errors import NotFound
from stratoflow.model import Task, WorkflowSpec
from stratoflow.variables import Variable


@dataclass(frozen=True)
class WorkflowVersion:
    project: str
    name: str
    version: int
    digest: str
    document: dict[str, Any]
    source: str  # the text as applied (YAML), for the UI and diffs
    created_at: datetime
    paused: bool = False
    schedule_error: str | None = None  # why its schedule cannot fire (the cron loop said)


@dataclass(frozen=True)
class Attempt:
    run_id: str
    task_id: str
    attempt: int
    state: str  # running | succeeded | failed | timed_out | stopped | lost
    started_at: datetime
    ended_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    log: str | None = None  # where the executor keeps the log (a path or URI)
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LogRange:
    """Part of an attempt's log: ``data`` holds its bytes from ``start`` on (at most as many as
    were asked for); ``size`` is the length of the whole log when it was read."""

    data: bytes
    start: int
    size: int


@dataclass(frozen=True)
class RunQuery:
    project: str | None = None
    workflow: str | None = None
    state: RunState | None = None
    limit: int = 50
    before: str | None = None  # cursor: a run id; returns runs created before it


class Catalog(ABC):
    """Immutable workflow versions."""

    @abstractmethod
    def put_version(
        self, spec: WorkflowSpec, source: str, now: datetime
    ) -> tuple[WorkflowVersion, bool]:
        """Store a new version unless it equals the latest; returns (version, created)."""

    @abstractmethod
    def get_version(self, project: str, name: str, version: int | None = None) -> WorkflowVersion:
        """The given version, or the latest. Raises NotFound."""

    def latest_version(self, project: str, name: str) -> int:
        """The number of the workflow's latest version (whose ``max_active_runs`` governs
        every run of it). Raises NotFound. By default read with the version's document; a
        store may read the number alone."""
        return self.get_version(project, name).version

    @abstractmethod
    def list_workflows(
        self, project: str | None = None, *, after: str | None = None, limit: int | None = None
    ) -> list[WorkflowVersion]:
        """The latest version of every workflow (of ``project``), by project and name. A
        page of one project's: the first ``limit`` whose names sort after ``after``, read
        alone (each version holds its source and document: up to 2 MiB apiece)."""

    @abstractmethod
    def list_versions(
        self, project: str, name: str, *, before: int | None = None, limit: int | None = None
    ) -> list[WorkflowVersion]:
        """A workflow's versions, newest first: at most ``limit`` of them, each older than
        ``before``, read alone (every version ever applied is kept)."""

    @abstractmethod
    def set_paused(self, project: str, name: str, paused: bool) -> None:
        """Pause or unpause a workflow's schedule."""

    @abstractmethod
    def get_cursor(self, project: str, name: str) -> datetime | None:
        """The last logical date the cron loop fired for this workflow."""

    @abstractmethod
    def set_cursor(self, project: str, name: str, logical_date: datetime) -> None:
        """Move the cursor forward to ``logical_date``; never back (one conditional write: a
        date not after the stored one changes nothing). Its writers each read it and write
        a later one (a firing, an apply restarting a changed schedule at its time): the one
        that read first, writing last, must not undo the other's move."""

    @abstractmethod
    def set_schedule_error(self, project: str, name: str, error: str | None) -> None:
        """Record why the workflow's schedule cannot be computed or fired (``None``: it fires
        again). Read back as ``WorkflowVersion.schedule_error`` of its latest version."""


class StateStore(ABC):
    """Runs and task instances. Every write that a race could lose is a conditional write.

    The port is narrow: a store creates runs, applies decisions (``apply``, and
    ``apply_plan`` for whole-run operations), counts a parent once (``record_upstream``),
    keeps attempts' history, and finds things by index and reads slices. It holds no
    scheduling rule: what to write is the engine's."""

    atomic: ClassVar[bool] = True  # False: ``transaction`` is a no-op (see there)

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Group writes. SQLite: one atomic transaction. Stores without multi-item
        transactions make this a no-op: every write below is then individually atomic and
        idempotent, and the reconciler completes a half-applied step."""

    # runs
    @abstractmethod
    def create_run(self, run: Run, tasks: Sequence[TaskInstance], concurrency: int | None) -> bool:
        """Create a run and its tasks; False (and nothing written) if the id exists."""

    @abstractmethod
    def get_run(self, run_id: str) -> Run:
        """Raises NotFound."""

    @abstractmethod
    def list_runs(self, query: RunQuery) -> list[Run]:
        """Newest first."""

    @abstractmethod
    def count_active_runs(self, project: str, workflow: str) -> int: ...

    @abstractmethod
    def count_queued_runs(self, project: str, workflow: str) -> int:
        """How many of the workflow's runs are QUEUED (a catch-up's room counts them)."""

    @abstractmethod
    def queued_runs(self, limit: int, skip: Collection[tuple[str, str]] = ()) -> list[Run]:
        """QUEUED runs, oldest first, but none of the (project, workflow)s in ``skip`` (full
        workflows, whose queued runs would otherwise hide the younger runs of others)."""

    @abstractmethod
    def queued_runs_of(self, project: str, workflow: str, trigger: str) -> list[Run]:
        """The workflow's QUEUED runs made by ``trigger`` (``schedule``: its firings), oldest
        first (a schedule without catchup keeps one of them: ``Scheduler.fire``)."""

    @abstractmethod
    def runs_in_states(self, states: Sequence[RunState]) -> Iterator[Run]: ...

    # tasks
    @abstractmethod
    def get_task(self, run_id: str, task_id: str) -> TaskInstance: ...

    @abstractmethod
    def get_tasks(
        self, run_id: str, task_ids: Sequence[str] | None = None
    ) -> list[TaskInstance]: ...

    def task_states(self, run_id: str) -> dict[str, TaskState]:
        """Each of the run's tasks' state, and nothing else (a run page's first paint). This
        default reads the whole tasks; a store may read the states alone."""
        return {t.task_id: t.state for t in self.get_tasks(run_id)}

    def states_present(self, run_id: str, states: Collection[TaskState]) -> set[TaskState]:
        """Which of ``states`` at least one of the run's tasks is in (read once, when a run
        whose tasks all ended, none failed, ends: it did not succeed if one was stopped).
        This default reads every task's state; a store may ask for those states alone."""
        wanted = set(states)
        return {s for s in self.task_states(run_id).values() if s in wanted}

    @abstractmethod
    def apply(self, decision: Decision) -> bool:
        """Apply a turn's decision all or nothing: every task write whose stored (state,
        attempt) is the expected one, the run write if its state is the expected one, and
        the counter deltas. False (and nothing written) if any condition failed."""

    #: whether ``apply_end`` records an attempt's end in its task's transition (one write)
    history_on_tasks: bool = False

    def apply_end(self, decision: Decision, history: Sequence[Attempt]) -> bool:
        """Apply ``decision``, the transitions of attempts that ended, recording ``history``
        (those attempts' ends) with it. Only the attempts whose task transition applies are
        sure to be recorded: the caller records the others with ``finish_attempt``. By
        default each end is recorded first, as ``finish_attempt`` does; but the end of an
        attempt that never started (``TaskWrite.starts_and_ends``) exists only if its write
        applies, so it is recorded after, and only then (a stale write records nothing)."""
        never = {(w.task.task_id, w.ended_attempt) for w in decision.tasks if w.starts_and_ends}
        after = [a for a in history if (a.task_id, a.attempt) in never]
        for attempt in history:
            if (attempt.task_id, attempt.attempt) not in never:
                self.finish_attempt(attempt)
        applied = self.apply(decision)
        if applied:
            for attempt in after:
                self.finish_attempt(attempt)
        return applied

    #: whether ``apply_each`` is cheaper than ``apply`` of the same writes in one decision
    applies_each: ClassVar[bool] = False

    def apply_each(
        self, decisions: Sequence[Decision], history: Sequence[Attempt] = ()
    ) -> list[bool]:
        """Apply each of ``decisions`` on its own (each one task write of one run, with its
        counter deltas; no run write, no pool), recording ``history`` as ``apply_end`` does:
        which of them applied, in order. The counters end as if each had been applied alone.
        Unlike ``apply`` of them merged, some may apply and others not (their conditions
        failed): the caller looks at each. By default each is applied alone."""
        out = []
        for decision in decisions:
            # the attempts its writes end (a never-started one's is the next: TaskWrite)
            keys = {(w.task.task_id, w.ended_attempt or w.expect_attempt) for w in decision.tasks}
            mine = [a for a in history if (a.task_id, a.attempt) in keys]
            out.append(self.apply_end(decision, mine) if mine else self.apply(decision))
        return out

    # conveniences: one-write decisions
    def put_task(self, task: TaskInstance, expect: TaskState, expect_attempt: int) -> bool:
        """Conditional write: only if the stored (state, attempt) is still the expected one.
        Exactly one writer wins a transition; only the winner acts on it. Writes the task's
        own fields, never its upstream counts (``record_upstream`` owns those)."""
        return self.apply(Decision(task.run_id, (TaskWrite(task, expect, expect_attempt),)))

    def put_run(self, run: Run, expect: RunState) -> bool:
        """Write state, started_at, ended_at and error if the state is still ``expect``.
        Never the counters: those change only by deltas (and ``apply_plan``)."""
        return self.apply(Decision(run.id, run=run, run_expect=expect))

    def add_counters(self, run_id: str, *, done: int = 0, failed: int = 0, running: int = 0) -> Run:
        """Atomically add to the run's counters; returns the run after."""
        if not self.apply(Decision(run_id, done=done, failed=failed, running=running)):
            raise NotFound(f"run {run_id!r} not found")  # pragma: no cover - no condition
        return self.get_run(run_id)

    @abstractmethod
    def pending_propagations(self, limit: int) -> list[TaskInstance]:
        """Tasks that carry a propagation intent (``TaskInstance.propagating``), oldest
        first: for the reconciler to finish what a turn that died part-way began."""

    @abstractmethod
    def apply_plan(
        self, plan: Plan, expect: RunState, *, if_ended_at: datetime | None = None
    ) -> bool:
        """Write a whole-run operation (stop, rerun, mark) if the run is still ``expect``
        and, with ``if_ended_at``, still ended at that instant (one conditional write: a
        rerun decided from one end of the run applies to that end only, once). The run
        write sets its state, times, error, pause flag and counters, and its params only
        when ``plan.new_params`` says so (in the same write). With ``plan.deltas`` the
        counters are not set but changed by those deltas (a run that goes on: other tasks'
        ends written meanwhile stand), and the plan applies only while every task of
        ``plan.if_unchanged`` is still as read. Plans of a run apply one at a time: each
        only while the run's plan generation is still ``plan.run.plan_gen`` (the one it was
        read with), which it moves on, so of two plans decided from one read the second is
        refused, however many tasks either writes."""

    def start_queued_run(self, plan: Plan, max_active: int | None) -> bool:
        """Start a QUEUED run (``plan``: ``engine.start_plan``) if its workflow then has fewer
        than ``max_active`` active runs (None: no limit); False, and nothing written, if it
        is no longer QUEUED or the workflow has no slot free. By default the caller's count
        of active runs stands, and this is ``apply_plan(plan, QUEUED)``: a store with one
        writer, whose scheduler counted under its lock. A store that concurrent schedulers
        write makes the count and the start one conditional write."""
        return self.apply_plan(plan, RunState.QUEUED)

    @abstractmethod
    def record_upstream(
        self, run_id: str, child: str, parent: str, outcome: TaskState
    ) -> TaskInstance | None:
        """Count ``parent``'s end in ``child``'s upstream, once. Returns the child after the
        update, or None if this (child, parent) was already counted (a duplicate)."""

    def record_upstreams(
        self, run_id: str, parent: str, outcomes: Sequence[tuple[str, TaskState]]
    ) -> list[TaskInstance | None]:
        """``record_upstream`` of one parent in each of its children: ``outcomes`` holds
        (child, outcome) pairs; the result holds, in the same order, each child after its
        count or None where it was counted before. A store may do it in fewer requests
        (one transaction, like each count alone: a crash leaves any prefix counted)."""
        return [self.record_upstream(run_id, child, parent, o) for child, o in outcomes]

    #: whether a ``TaskWrite`` may carry a parent's count (``CountAlong``): then
    #: ``children_to_count`` reads what that count is decided from
    counts_with_claims: ClassVar[bool] = False

    def children_to_count(
        self, run_id: str, parent: str, children: Sequence[str]
    ) -> dict[str, tuple[TaskInstance, int]]:
        """Of ``children``, those that have not counted ``parent``'s end yet, as they are now
        (a strongly consistent read), each with its upstream generation (``CountAlong``): for
        a count made in the write that claims the child. Those left out are counted with
        ``record_upstream``. By default none (a store that cannot count in a task write)."""
        return {}

    #: ``record_upstream_group`` counts several parents in one write (else it counts none)
    counts_parents_together: ClassVar[bool] = False

    def record_upstream_group(
        self, run_id: str, child: str, parents: Sequence[tuple[str, TaskState]]
    ) -> TaskInstance | None:
        """Count the ends of several ``parents`` ((parent, outcome) pairs) in ``child`` in
        one write, all or none. Returns the child after the count, or None when nothing was
        counted (one of them was counted before, the count would not fit, or the store
        cannot): the caller then counts each with ``record_upstream``."""
        return None

    @abstractmethod
    def queued_tasks(self, limit: int) -> list[TaskInstance]:
        """QUEUED tasks of RUNNING runs that have a free slot, by priority then FIFO (a store
        may leave out those of a run beyond its free slots: they could not be claimed)."""

    @abstractmethod
    def run_queue(self, run_id: str, limit: int) -> list[TaskInstance]:
        """One run's QUEUED tasks, by priority then FIFO (whatever its state and slots)."""

    @abstractmethod
    def due_retries(self, now: datetime, limit: int) -> list[TaskInstance]: ...

    @abstractmethod
    def expired_tasks(self, now: datetime, limit: int) -> list[TaskInstance]:
        """RUNNING tasks whose deadline has passed."""

    def periodic_due(self, due: datetime, overdue: datetime) -> tuple[bool, bool, bool]:
        """Whether a periodic pass may find retries due by ``due`` (``due_retries``),
        attempts past their deadline by ``overdue`` (``expired_tasks``) and queued runs
        (``queued_runs``): each False only where there is surely none. A store that can
        answer all three in one read saves a turn the reads that find nothing; by default
        each is looked for."""
        return True, True, True

    @abstractmethod
    def running_tasks(self) -> list[TaskInstance]: ...

    def unended_attempts(self, run_id: str | None = None) -> list[tuple[str, str, int]]:
        """The (run, task, attempt) of attempts (of every run, or of ``run_id``) whose end is
        not recorded though their task has moved on from them: killed by a stop or a mark,
        their end not reported yet, or never if the process that killed them died first.
        Recovery ends those (``Dispatcher.stopped_while_down``). Default: none (a store
        whose attempts' ends are recorded otherwise)."""
        return []

    @abstractmethod
    def next_wakeup(self) -> datetime | None:
        """The earliest retry or deadline time, so a loop can sleep until then."""

    # attempts
    @abstractmethod
    def start_attempt(self, attempt: Attempt) -> None:
        """Record an attempt's start; repeated, it only fills in a log location."""

    def start_attempts(self, attempts: Sequence[Attempt]) -> None:
        """``start_attempt`` of each (a store may write them in fewer requests)."""
        for attempt in attempts:
            self.start_attempt(attempt)

    @abstractmethod
    def finish_attempt(self, attempt: Attempt) -> None:
        """Record how an attempt ended; only its first end counts."""

    def finish_late_attempt(self, attempt: Attempt) -> None:
        """``finish_attempt`` for an end whose task transition did not apply (a duplicate
        report, an exit after a timeout, a task stopped meanwhile): only its first end counts,
        an end already recorded with its task's transition (``apply_end``) included."""
        self.finish_attempt(attempt)

    @abstractmethod
    def list_attempts(self, run_id: str, task_id: str | None = None) -> list[Attempt]: ...


class PoolStore(ABC):
    """Pools (``stratoflow.engine.pools``): their sizes, ``used`` counters and queues. The
    counters change only inside ``StateStore.apply`` / ``apply_plan`` (``Decision.pools``,
    ``Plan.pool_releases``), atomically with the task transitions that take or free slots."""

    @abstractmethod
    def set_pool(self, scope: str, name: str, slots: int) -> Pool:
        """Create the pool or change its size (its ``used`` counter is kept)."""

    @abstractmethod
    def get_pool(self, key: str) -> Pool | None: ...

    @abstractmethod
    def list_pools(self, project: str | None = None) -> list[Pool]:
        """Every pool (``project``: the global ones and that project's), by scope and name."""

    @abstractmethod
    def delete_pool(self, key: str, check: Callable[[], None] | None = None) -> bool:
        """Delete the pool if no task holds or waits for its slots; False otherwise (nothing
        changed). Raises NotFound for an unknown pool. ``check``: the caller's look for what
        the store's queue does not show (a retry waiting out its delay, a paused run's ready
        task), which raises to refuse; made so that nothing it looks for can appear between
        it and the delete unnoticed (a task entering its retry wait meanwhile, in another
        process, makes the delete return False: ``PoolDelta.retries``)."""

    @abstractmethod
    def pool_waiting(self, key: str, limit: int) -> list[TaskInstance]:
        """The pool's queue: QUEUED tasks that joined it, by rank then FIFO."""

    @abstractmethod
    def pool_running(self, key: str, limit: int) -> list[TaskInstance]:
        """RUNNING tasks holding slots of the pool."""

    @abstractmethod
    def pools_with_waiting(self, limit: int) -> list[str]:
        """Keys of pools with a non-empty queue (for the periodic pass)."""


class VariableStore(ABC):
    """A project's variables (:mod:`stratoflow.variables`): named text values that templates
    read when a task is rendered. Names and values are checked before they reach a store."""

    @abstractmethod
    def put_variable(self, variable: Variable) -> bool:
        """Create or replace; True if it is new. A new one past ``MAX_VARIABLES`` of its
        project raises InvalidInput (nothing changed)."""

    @abstractmethod
    def get_variable(self, project: str, name: str) -> Variable | None: ...

    @abstractmethod
    def variable_values(self, project: str, names: Collection[str]) -> dict[str, str]:
        """The values of those of ``names`` that are set (what a render reads)."""

    @abstractmethod
    def list_variables(self, project: str) -> list[Variable]:
        """Every variable of the project, by name."""

    @abstractmethod
    def delete_variable(self, project: str, name: str) -> bool:
        """False if there was none."""


class BackfillStore(ABC):
    """Backfills (``stratoflow.engine.backfill``), each one stored document. Every change is a
    write conditional on the revision read, so two writers that decided from the same
    revision cannot both win (the loser reads again and decides again)."""

    @abstractmethod
    def create_backfill(self, backfill: Backfill) -> bool:
        """Store a new backfill (its revision as given); False if the id exists."""

    @abstractmethod
    def get_backfill(self, backfill_id: str) -> Backfill:
        """Raises NotFound."""

    @abstractmethod
    def put_backfill(self, backfill: Backfill, expect_revision: int) -> bool:
        """Write ``backfill`` with revision ``expect_revision + 1`` if the stored revision is
        still ``expect_revision``; False (nothing written) otherwise."""

    @abstractmethod
    def list_backfills(
        self, project: str, workflow: str | None = None, limit: int = 50
    ) -> list[Backfill]:
        """The project's (and workflow's, if given) backfills, newest first."""

    @abstractmethod
    def active_backfills(self, project: str, workflow: str) -> list[Backfill]:
        """The workflow's backfills that are running or paused (whose lanes a run's end may
        move on). May be a moment behind (an index): the dates' run ids are what callers
        match, and those never change."""

    @abstractmethod
    def backfills_waiting_for(self, project: str, workflow: str, run_id: str) -> list[str]:
        """The ids of the workflow's running or paused backfills that have a date with this
        run id (what a run's end looks up: cheap, no backfill is decoded whole). Like
        ``active_backfills`` it may be a moment behind."""

    @abstractmethod
    def all_active_backfills(self) -> list[Backfill]:
        """Every running or paused backfill (for the reconciler)."""


class DependencyStore(ABC):
    """What dependency tasks read and the index that wakes them (``stratoflow.dependencies``).
    Waits are a lookup, not state: a stale one (its task no longer waits) is harmless, and the
    task's own deadline re-checks it if a wait was lost."""

    @abstractmethod
    def runs_by_logical_date(
        self, project: str, workflow: str, start: datetime, end: datetime, limit: int
    ) -> list[Run]:
        """Up to ``limit`` runs of the workflow whose logical date is in [start, end), the
        latest created first."""

    @abstractmethod
    def add_dependency_waits(
        self, run_id: str, task_id: str, upstreams: Sequence[tuple[str, str]]
    ) -> None:
        """Record that (run, task) waits on each (project, workflow) of ``upstreams``
        (idempotent)."""

    @abstractmethod
    def dependency_waiters(self, project: str, workflow: str, limit: int) -> list[tuple[str, str]]:
        """(run id, task id) of the dependency tasks waiting on the workflow (may be stale)."""

    @abstractmethod
    def remove_dependency_waits(
        self, run_id: str, task_id: str, upstreams: Sequence[tuple[str, str]]
    ) -> None:
        """Forget the waits ``add_dependency_waits`` recorded (idempotent)."""


class RunChangeLog(ABC):
    """A store that numbers the changes of its runs' tasks, so a run view can be sent as a
    delta: what changed since a revision the reader already has (``GET /runs/{id}?since=``).
    Optional: the API sends whole views (still with an ETag) for a store without it."""

    @abstractmethod
    def run_revision(self, run_id: str) -> int:
        """The run's revision: it grows whenever a task's state, times, attempts, outputs or
        error change (0: none has changed since the run was created)."""

    @abstractmethod
    def changed_since(self, run_id: str, revision: int) -> list[str]:
        """The ids of the run's tasks changed after ``revision`` (each once)."""

    @abstractmethod
    def attempts_of(self, run_id: str, task_ids: Sequence[str]) -> list[Attempt]:
        """The attempts of these tasks of the run, as ``list_attempts`` lists them (by task,
        then attempt), in one read however many tasks: a delta's attempts."""


@dataclass(frozen=True)
class AttemptSpec:
    """Everything an executor needs for one attempt. Its key is deterministic, so a repeated
    dispatch of the same attempt is recognised and does not run the task again."""

    run_id: str
    task_id: str
    attempt: int
    task: RenderedTask
    logical_date: datetime
    workflow: str
    project: str
    # a retry dispatched before its delay ran out: the executor waits until then to start it
    not_before: datetime | None = None
    # the task's timeout, for executors that enforce it themselves (the AWS state machine)
    timeout: timedelta | None = None

    @property
    def key(self) -> str:
        return f"{self.run_id}/{self.task_id}/{self.attempt}"


class Dispatcher(ABC):
    """Starts attempts somewhere and reports how they end."""

    @abstractmethod
    def dispatch(self, spec: AttemptSpec) -> str | None:
        """Start the attempt (idempotent per key). Returns where its log will be."""

    def dispatch_many(self, specs: Sequence[AttemptSpec]) -> list[str | None]:
        """Start a batch of attempts (an adapter may start them together)."""
        return [self.dispatch(spec) for spec in specs]

    def log_location(self, spec: AttemptSpec) -> str | None:
        """Where the attempt's log will be, if that is known before it is dispatched (then
        ``dispatch`` returns the same); None: only ``dispatch`` can say."""
        return None

    def looks_before_start(self, task: Task) -> bool:
        """Whether an attempt of ``task`` dispatched before its retry delay ran out (a
        runtime that waits the delay out in the executor: ``Scheduler.retry_lead``) reads its
        run when the delay ends and starts nothing in a paused run (AWS: the runner's look,
        ``runner.run_paused``). A retry of a task whose executor does not is not sent early:
        it waits UP_FOR_RETRY (``Scheduler._waits_unsent``), so that a pause whose own hold
        of it failed cannot let it start."""
        return True

    def refusal(self, spec: AttemptSpec) -> str | None:
        """Why this executor cannot run the rendered attempt at all (e.g. a secret reference
        where nothing of Stratoflow's runs to resolve it): the task then fails with this
        message and is not retried. None: it can."""
        return None

    @abstractmethod
    def kill(self, run_id: str, task_id: str, attempt: int) -> None:
        """Stop a running attempt and everything it started."""

    def live_attempts(self) -> int | None:
        """How many attempts this dispatcher is starting or running now, each a process (for
        a scheduler's ``parallelism``); None: it cannot say (AWS: Lambda, Batch and EKS
        scale out, and limit themselves)."""
        return None

    def kill_grace(self) -> timedelta:
        """How long a killed attempt's processes may still run after ``kill`` (the local
        executor's SIGTERM-to-SIGKILL grace): a timed-out attempt's retry is not due before
        it ends. An executor that is asked to start the next attempt of a task while it
        knows the previous one alive must wait for it all the same (the local one does)."""
        return timedelta(0)

    def timed_out_grace(self, spec: WorkflowSpec, ti: TaskInstance, *, killed: bool) -> timedelta:
        """How long after its timeout is recorded (now) the timed-out attempt ``ti`` may
        still run: its retry is not due before, so two attempts of a task never run at once.
        ``killed``: the scheduler ended it at its deadline and kills it (``kill`` follows);
        otherwise its executor reported the timeout. The default: ``kill_grace`` for a killed
        attempt, nothing for a reported one (an executor that reports a timeout has ended
        the attempt itself). An executor whose targets outlive a timeout (AWS: a Batch job,
        a user's Lambda function) says how long, per attempt."""
        return self.kill_grace() if killed else timedelta(0)

    @abstractmethod
    def recover(self, running: Sequence[TaskInstance]) -> Recovery:
        """After a restart: re-attach to attempts still running, kill attempts whose task is
        no longer running, and report what ended or never started while nobody watched."""

    def stopped_while_down(
        self, attempts: Sequence[tuple[str, str, int]]
    ) -> dict[tuple[str, str, int], AttemptResult]:
        """After ``recover``: how these attempts ended, each killed (its task stopped or
        marked) by a scheduler that died before their end was reported
        (``StateStore.unended_attempts``); ``recover`` killed what still ran of them. Default:
        none (a dispatcher whose attempts report their end wherever the scheduler is)."""
        return {}


@dataclass
class Recovery:
    # (run, task, attempt) -> how it ended while the scheduler was down
    results: dict[tuple[str, str, int], AttemptResult] = field(default_factory=dict)
    # claimed attempts with no trace of a start: dispatch them (the key makes it safe)
    not_started: list[TaskInstance] = field(default_factory=list)


class Schedules(ABC):
    """Where workflow schedules fire from. Locally the cron loop reads the catalog itself, so
    there is nothing to keep in step (``NullSchedules``); on AWS every scheduled workflow has
    an EventBridge Scheduler schedule that must follow its latest version."""

    @abstractmethod
    def sync(self, spec: WorkflowSpec, *, paused: bool) -> None:
        """Make the workflow's schedule match ``spec``: create or update it, delete it when
        ``spec`` has no schedule, keep it disabled while the workflow is paused. Idempotent."""


class NullSchedules(Schedules):
    def sync(self, spec: WorkflowSpec, *, paused: bool) -> None:
        return None


class EventSink(ABC):
    """Lifecycle events (run started/succeeded/failed/stopped, task failed/retrying)."""

    @abstractmethod
    def emit(self, kind: str, detail: Mapping[str, Any]) -> None: ...


class NullEvents(EventSink):
    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        return None


class Clock(ABC):
    @abstractmethod
    def now(self) -> datetime:
        """Timezone-aware UTC."""


@dataclass(frozen=True)
class User:
    name: str
    superuser: bool
    created_at: datetime
    roles: dict[str, Role] = field(default_factory=dict)  # project -> role

    @property
    def principal(self) -> Principal:
        return Principal(self.name, dict(self.roles), self.superuser)


@dataclass(frozen=True)
class ApiToken:
    """A token's record; the secret itself is shown once, at creation, and stored hashed."""

    id: str
    user: str
    label: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked: bool = False


class Identities(ABC):
    """Users, their role per project, and their API tokens (the local runtime's identity
    source; on AWS the API's authorizer vouches for callers instead)."""

    @abstractmethod
    def create_user(self, name: str, *, superuser: bool, now: datetime) -> User:
        """Raises Conflict if the name is taken, InvalidInput if it is not a valid name."""

    @abstractmethod
    def get_user(self, name: str) -> User:
        """Raises NotFound."""

    @abstractmethod
    def list_users(self) -> list[User]: ...

    @abstractmethod
    def set_role(self, name: str, project: str, role: Role | None) -> User:
        """Grant ``role`` in ``project`` (replacing any other), or revoke with None."""

    @abstractmethod
    def create_token(self, user: str, label: str, now: datetime) -> tuple[ApiToken, str]:
        """A new token for ``user``: its record and the secret to hand over (once)."""

    @abstractmethod
    def list_tokens(self, user: str | None = None) -> list[ApiToken]: ...

    @abstractmethod
    def revoke_token(self, token_id: str) -> ApiToken:
        """Raises NotFound. Revoking twice is not an error."""

    @abstractmethod
    def authenticate(self, secret: str, now: datetime) -> Principal:
        """The principal a token secret stands for. Raises Unauthenticated."""
