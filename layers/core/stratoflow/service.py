"""The scheduler service: sequences store reads, engine decisions, store writes and dispatch.

It is written against the ports only, so the local runtime and the AWS handlers share it.
Order of work for every event: read the slice, ask the engine, persist with a conditional
write, and only then act (dispatch, kill, emit). A crash between two steps leaves a state
the next event or ``recover`` completes; a duplicate event loses its conditional write.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from stratoflow import engine
from stratoflow.backfills import Backfills
from stratoflow.dependencies import Dependencies
from stratoflow.engine import (
    AttemptResult,
    AttemptStatus,
    Plan,
    Run,
    RunState,
    TaskInstance,
    TaskState,
)
from stratoflow.engine import pools as engine_pools
from stratoflow.engine.backfill import awaited_runs, rerun_all
from stratoflow.engine.dependency import SUPERSEDED, unknown_upstream_tasks
from stratoflow.engine.subworkflow import follows, parent_of, targets
from stratoflow.engine.triggering import (
    USER_TRIGGERS,
    read_logical_date,
    refuse_future_logical_date,
)
from stratoflow.errors import Conflict, InvalidInput, NotFound, Problem, StratoflowError
from stratoflow.model import (
    OnTimeout,
    Schedule,
    ScheduleError,
    WorkflowSpec,
    due_firings,
    load_workflow,
    same_times,
    spec_from_document,
)
from stratoflow.ports import (
    Attempt,
    AttemptSpec,
    BackfillStore,
    Catalog,
    Clock,
    Dispatcher,
    EventSink,
    NullEvents,
    NullSchedules,
    PoolStore,
    Schedules,
    StateStore,
    VariableStore,
    WorkflowVersion,
)
from stratoflow.resources import ResourceStore, workflow_resources
from stratoflow.subworkflows import SubWorkflows
from stratoflow.templating import TemplateError

log = logging.getLogger("stratoflow.scheduler")

DISPATCH_BATCH = 256
# logical dates a run may have: wide enough for any backfill, narrow enough that every time
# derived from one (ds, the schedule's window, time zones) stays a valid date
MIN_LOGICAL_DATE = datetime(1900, 1, 1, tzinfo=UTC)
MAX_LOGICAL_DATE = datetime(9999, 12, 30, tzinfo=UTC)
# a pool's deletion looks at every retry waiting out its delay (``Scheduler._retrying_for``):
# due before this, that is whenever; at most this many (a rare operator's request)
_EVER = MAX_LOGICAL_DATE
RETRIES_READ = 10_000


class _Claimed(list[tuple[AttemptSpec, TaskInstance]]):
    """Attempts claimed and rendered in one commit, to start once it is committed."""

    claimed = 0  # tasks claimed, including those that ended at once (switch, template error)
    more = False  # whether another pass may find work
    unrecorded: tuple[int, ...] = ()  # positions whose history row waits for the start's log
    # when timed work is next due, read in the turn's commit (``step``); None: not read there
    wakeup: tuple[datetime | None] | None = None


class _Ended(NamedTuple):
    """An attempt's end, recorded in its history, with the task's transition decided (None:
    the report is stale or a duplicate)."""

    report: Finished
    task: TaskInstance
    spec: WorkflowSpec
    now: datetime
    made: tuple[engine.Decision, engine.AttemptDecision] | None
    #: the attempt's end when it is not recorded yet: it goes with the task's transition
    #: (``StateStore.apply_end``), or on its own if that transition does not apply
    history: Attempt | None = None


# how often a stop (an operator's, or a failure's) is decided again from a new read when
# another plan of its run applied between its read and its write (``PlanRefused``): a stop
# stops whatever the run has then, so it need not be refused to its caller
_STOP_TRIES = 3

# A child with at most this many parents has the count that makes it ready made in the write
# that claims or queues it (``Scheduler._counts_along``), on a store that
# ``counts_with_claims``. To know which count that is, every parent's end reads the child
# first (strongly consistent: 1 RRU, $0.25 per million), and the last one saves the count's
# own write (1 WRU, $1.25 per million). With k parents that end in separate turns: k reads
# for one write, a saving while 0.25 k < 1.25, so k <= 4; a child with more parents is
# counted alone, as before (and no read is made for it).
MERGE_MAX_PARENTS = 4


class PlanRefused(Conflict):
    """A whole-run operation's conditional write was refused (``Scheduler._apply``): the run,
    or a task it was decided from, moved since it was read. Nothing of it was written."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} changed while the operation was applied; try again")
        self.run_id = run_id


@dataclass(frozen=True)
class Finished:
    """An executor's report that (run, task, attempt) ended."""

    run_id: str
    task_id: str
    attempt: int
    result: AttemptResult
    log: str | None = None


def new_run_id(project: str, name: str, now: datetime) -> str:
    """``<project>.<name>-<time>-<random>``: like every run id, it starts with its project
    ('.' cannot occur in a name), which is what lets IAM tell one project's runs from
    another's (a project role's stop polls read ``RUN#<project>.*`` only)."""
    return f"{project}.{name}-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def scheduled_run_id(project: str, name: str, logical_date: datetime) -> str:
    """Deterministic, so a schedule that fires twice for one date creates one run. The
    project is part of it ('.' cannot occur in a name), so two projects' same-named
    workflows firing at one instant get two runs."""
    return f"{project}.{name}-scheduled-{logical_date:%Y%m%dT%H%M%SZ}"


def schedule_error_message(exc: BaseException) -> str:
    """What a workflow's ``schedule_error`` says: the error's kind and its message."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, (StratoflowError, ScheduleError)):
        return text[:1000]
    return f"{type(exc).__name__}: {text}"[:1000]


RENDER_BUDGET_SECONDS = 1.0
"""How long one turn (``step``, ``advance``, ``dispatch_ready``) may spend rendering the
templates of the attempts it claimed (a task's fields, a switch's conditions, a sub-workflow
task's params), all runs together; the store's reads and writes are not counted."""
BEHIND_RUNS = 1024
"""Runs remembered as having spent a turn's render budget (``Scheduler._behind``)."""

QUEUED_PAGE = 100
"""Queued runs read at once by the start loop."""
QUEUED_PAGES = 10
"""Pages the start loop reads in one pass, each without the workflows found full before."""


class Scheduler:
    def __init__(
        self,
        store: StateStore,
        catalog: Catalog,
        dispatcher: Dispatcher,
        clock: Clock,
        events: EventSink | None = None,
        *,
        schedules: Schedules | None = None,
        retry_lead: timedelta = timedelta(0),
        timeout_grace: timedelta = timedelta(0),
        record_attempt_starts: bool = True,
        resources: ResourceStore | None = None,
        alert_groups: Callable[[str, str], bool] | None = None,
        parallelism: int | None = None,
        render_budget: float | None = RENDER_BUDGET_SECONDS,
        render_clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``retry_lead``: dispatch a retry this long before its delay runs out, for a
        dispatcher that waits out the rest itself (``AttemptSpec.not_before``); AWS, where
        nothing polls, dispatches every retry at once. ``timeout_grace``: how long past its
        deadline an attempt may run before ``step`` times it out, for executors that enforce
        the timeout themselves and should report first. ``record_attempt_starts``: write each
        attempt's history row when it starts (where its log is, readable while it runs);
        without, the row is written when it ends — one write fewer per attempt, for
        executors whose log only exists at the end (the AWS runner), and the views show a
        running attempt from its task. ``alert_groups(project, group)``: whether the
        runtime's alert configuration has that group (a workflow whose ``alerts`` name one it
        has not is refused at apply; None: a runtime without alerts, nothing to check).
        ``parallelism``: at most this many task processes at once, across every run and
        project (Airflow's ``parallelism``): queued tasks past it wait, in their order, for
        one to end; tasks that run no process (switch, dependency, sub-workflow) take none.
        It needs a dispatcher that counts its live attempts (``live_attempts``).
        ``render_budget``: seconds one turn may spend rendering the templates of what it
        claimed (each task's render is bounded on its own: ``templating.Limits.seconds``),
        measured on ``render_clock``; the claims past it are given back to their queues
        and the turn ends, so the lock is released between turns (None: no budget)."""
        if parallelism is not None:
            if parallelism < 1:
                raise ValueError(f"parallelism must be at least 1, not {parallelism}")
            if dispatcher.live_attempts() is None:
                raise ValueError("this dispatcher cannot count its attempts: no parallelism")
        self.parallelism = parallelism
        # task processes this claim pass may still start (None: no parallelism)
        self._processes: int | None = None
        self.store = store
        self.alert_groups = alert_groups
        # where a run pins the versions of the resource files its tasks list, when it is
        # created (None: a workflow that lists some cannot be triggered)
        self.resources = resources
        self.catalog = catalog
        self.dispatcher = dispatcher
        self.clock = clock
        self.events = events or NullEvents()
        self.schedules = schedules or NullSchedules()
        self.retry_lead = retry_lead
        self.timeout_grace = timeout_grace
        self.record_attempt_starts = record_attempt_starts
        self._specs: dict[tuple[str, str, int], WorkflowSpec] = {}
        self._lock = threading.RLock()
        self._after_commit: list[Callable[[], None]] = []  # acts wait for their state to commit
        self._batching = False
        self._run_keys: dict[str, tuple[str, str, int]] = {}  # unfinished run -> pinned version
        # runs with tasks made ready since the last turn: started (their roots queued), resumed,
        # rerun or marked; a turn claims from them (``advance``) and forgets them
        self._started_runs: list[str] = []
        # claims at readiness (``advance`` on a store that applies each decision alone): the
        # children its results made ready, still WAITING, are claimed straight from WAITING in
        # the turn's claim when their run has a slot (else queued then), and the intents of the
        # parents that made them ready are retired only after that
        self._deferring = False
        self._ready_now: dict[str, dict[str, tuple[TaskInstance, engine.Decision]]] = {}
        self._retire_later: list[TaskInstance] = []
        self._claim_again = False  # some of them queued for want of a slot for all
        # of those, the ones whose last count goes in the write that claims or queues them
        # (``_counts_along``): (run, child) -> the spec, the parent and its count; and those
        # whose write with the count applied. The others are counted alone before the
        # parents' intents are retired (``_queue_unclaimed``)
        self._along: dict[
            tuple[str, str], tuple[WorkflowSpec, TaskInstance, engine.CountAlong]
        ] = {}
        self._counted_along: set[tuple[str, str]] = set()
        # parents of one child that ended in one batch of outcomes, counted in one write
        # (``_plan_counts_together``): (run, child) -> its (parent, outcome) pairs, until the
        # first of them propagates; then (run, child, parent) of the others, which skip it
        self._together: dict[tuple[str, str], list[tuple[str, TaskState]]] = {}
        self._counted_by_another: set[tuple[str, str, str]] = set()
        self.backfills = Backfills(self)  # their lanes move on when a run ends (_run_ended)
        self.dependencies = Dependencies(self)  # checked by the scheduler, never dispatched
        self.subworkflows = SubWorkflows(self)  # a child's end completes its parent's task
        # pools (engine/pools.py): None on a store without them (a workflow naming one is
        # refused at apply); the keys of pools whose queue a turn must serve (slots freed,
        # tasks joined)
        self.pools: PoolStore | None = store if isinstance(store, PoolStore) else None
        # the projects' variables, read when a task whose templates name some is rendered
        # (None: a store without them; such a task then fails naming the variable)
        self.variables: VariableStore | None = store if isinstance(store, VariableStore) else None
        self._pools_due: set[str] = set()
        self._spec_pools: dict[int, tuple[WorkflowSpec, frozenset[str]]] = {}  # _wake_pools
        # the render budget (``_prepare_claimed``): what this turn has left of it; each claim's
        # task as it was before the claim (to give it back); the runs that spent the budget,
        # least recently first, whose claims are prepared after every other run's; the runs
        # whose claims were given back, for ``take_left_over``
        self.render_budget = render_budget
        self._render_clock = render_clock
        self._render_left = math.inf
        self._before_claim: dict[tuple[str, str], TaskInstance] = {}
        self._behind: dict[str, None] = {}
        self._left_over: set[str] = set()
        # runs whose retry waits out its delay UP_FOR_RETRY (``_promote_early``), by when
        self._retry_wakes: dict[str, datetime] = {}

    # ------------------------------------------------------------ workflows
    def spec(
        self, project: str, name: str, version: int, *, known: WorkflowSpec | None = None
    ) -> WorkflowSpec:
        """A version's spec, cached. ``known``: one the caller holds (a file being applied),
        taken as the version's when the stored digest is its own (the same document), instead
        of validating the stored document again (~40 ms of CPU at 2,000 tasks)."""
        key = (project, name, version)
        spec = self._specs.get(key)
        if spec is None:
            stored = self.catalog.get_version(project, name, version)
            if known is not None and stored.digest == known.digest:
                spec = known
            else:
                spec = spec_from_document(stored.document)
            self._specs[key] = spec
        return spec

    def _run_spec(self, run: Run) -> WorkflowSpec:
        return self.spec(run.project, run.workflow, run.version)

    def current_spec(self, project: str, name: str) -> WorkflowSpec:
        """The workflow's latest version, whose ``max_active_runs`` governs every run of it,
        queued ones made from older versions included (as Airflow's DAG-level setting): a
        run pins everything else of its version. One small read (the version's number); the
        spec itself is cached."""
        return self.spec(project, name, self.catalog.latest_version(project, name))

    def apply(
        self, text: str, *, source: str | None = None, spec: WorkflowSpec | None = None
    ) -> tuple[WorkflowVersion, bool]:
        """Validate and store a workflow; a changed definition becomes a new version.
        ``spec``: ``text`` already parsed by the caller (``load_workflow(text, now=...)``)."""
        if spec is None:
            spec = load_workflow(text, source=source, now=self.clock.now())
        self._check_pools(spec)
        self._check_alert_groups(spec)
        self._check_upstream_tasks(spec)
        self._check_subworkflow_params(spec)
        with self._lock:
            self.subworkflows.check_apply(spec)
            before = self._schedule_of(spec, None)  # the latest's, before this apply
            now = self.clock.now()
            version, created = self.catalog.put_version(spec, text, now)
            self._specs[(spec.project, spec.name, version.version)] = spec
            if created:  # a changed max_active_runs governs the runs already queued at once
                self._start_queued_runs()
            after = spec.workflow.schedule
            if after is not None:
                # an unchanged apply compares with the version before the latest: one that
                # retries an apply whose cursor write failed after its version was stored
                # one given back after a version without any (removed) is new as well: it had
                # no times in between; the first version has none before it (its catch-up
                # from start is the one asked for, so its cursor stays)
                prior = before if created else self._schedule_of(spec, version.version - 1)
                if prior is not None:
                    changed = not same_times(prior, after)
                elif created:
                    changed = version.version > 1
                else:
                    # its apply moved the cursor only if there was one: a schedule given
                    # back; one first added by it caught up from start since, as a first
                    # version's does, and moving its cursor now would drop that backlog
                    changed = self._scheduled_before(spec, version.version - 1)
                if changed:
                    # a schedule that existed before (changed, or given back) is new at this
                    # apply even when it never fired; one first added by it is not
                    had_one = prior is not None or self._scheduled_before(spec, version.version)
                    self._restart_schedule(spec, version.created_at, had_one=had_one)
        # every apply, not only a new version: a schedule lost or changed by hand is repaired
        self.schedules.sync(spec, paused=version.paused)
        return version, created

    def _schedule_of(self, spec: WorkflowSpec, version: int | None) -> Schedule | None:
        """The schedule of ``version`` of ``spec``'s workflow, of its latest when None
        (``None``: none, no such version or workflow (version 0: none before the first), or
        a stored document this scheduler cannot read, whose schedule it never fired)."""
        try:
            if version is None:
                version = self.catalog.latest_version(spec.project, spec.name)
            if version < 1:
                return None
            # an unchanged re-apply's latest version is ``spec`` itself: not validated again
            return self.spec(spec.project, spec.name, version, known=spec).workflow.schedule
        except (NotFound, ValueError):  # ValueError: pydantic's ValidationError among them
            return None

    def _scheduled_before(self, spec: WorkflowSpec, version: int) -> bool:
        """Whether a version of ``spec``'s workflow before ``version`` had a schedule (read
        back from ``version - 1``: the one it was removed from is nearly always the first)."""
        return any(self._schedule_of(spec, v) is not None for v in range(version - 1, 0, -1))

    def _restart_schedule(self, spec: WorkflowSpec, applied_at: datetime, *, had_one: bool) -> None:
        """A schedule whose times an apply changed counts them from that apply: its cursor
        moves up to ``applied_at`` (the version's creation: the same whichever attempt of the
        apply gets here), so a catch-up makes no run for a time of the new schedule from
        before it existed (the hours since the last daily run, when a daily schedule is made
        hourly). The local cron loop's cursor is already about then (the last instant it
        looked at); the AWS trigger's is the last date it fired, which made those runs.

        ``had_one``: a version before had a schedule (this one changes it or gives it back).
        Such a schedule that never fired (paused, or removed before its first firing) has no
        cursor yet, and gets one at ``applied_at`` all the same: left without, it caught up
        from ``start`` until an unchanged re-apply of the same file (a deploy applying every
        file) found its cursor and moved it here, dropping the rest of that backlog. A
        schedule first added by a later version keeps no cursor: it catches up from
        ``start`` as a first version's does."""
        cursor = self.catalog.get_cursor(spec.project, spec.name)
        if (cursor is None and had_one) or (cursor is not None and cursor < applied_at):
            self.catalog.set_cursor(spec.project, spec.name, applied_at)

    def _check_pools(self, spec: WorkflowSpec) -> None:
        """Refuse a workflow whose tasks name a pool unknown to its project, or wider than
        its pool (DolphinScheduler refuses a task group it does not know at save)."""
        if not any(t.pool for t in spec.workflow.tasks.values()):
            return
        if self.pools is None:
            raise InvalidInput([Problem("tasks", "this runtime's store has no pools yet")])
        if problems := engine_pools.check(spec, self.pools.get_pool):
            raise InvalidInput(problems)

    def _check_upstream_tasks(self, spec: WorkflowSpec) -> None:
        """Refuse a workflow whose dependency tasks wait for a task that their upstream
        workflow, where it exists, does not have (``unknown_upstream_tasks``): the wait could
        only fail, at run time. One read of each upstream's latest version named with a
        ``task:``; an upstream not applied yet is accepted."""

        def tasks_of(project: str, name: str) -> Collection[str] | None:
            try:
                latest = self.catalog.get_version(project, name)
            except NotFound:
                return None
            return self.spec(project, name, latest.version).workflow.tasks.keys()

        if problems := unknown_upstream_tasks(spec, tasks_of):
            raise InvalidInput(problems)

    def _check_subworkflow_params(self, spec: WorkflowSpec) -> None:
        """Refuse a workflow whose sub-workflow tasks pass a param that their child
        workflow, where it exists, does not declare: every run of it would fail that task
        with "unknown parameter". One read of each such child's latest version (the one a
        run starts); a child not applied yet is accepted. A child in another project is
        named, not its params (the caller may not read that project)."""
        problems: list[Problem] = []
        for task_id, (project, name) in targets(spec).items():
            given = spec.workflow.tasks[task_id].params
            if not given:
                continue
            try:
                latest = self.catalog.get_version(project, name)
            except NotFound:
                continue
            declared = self.spec(project, name, latest.version).workflow.params
            known = (
                f" (its params: {', '.join(sorted(declared)) or 'none declared'})"
                if project == spec.project
                else ""
            )
            problems += [
                Problem(
                    f"tasks.{task_id}.params.{param}",
                    f"workflow {project}/{name} has no parameter {param!r}{known}",
                )
                for param in sorted(set(given) - set(declared))
            ]
        if problems:
            raise InvalidInput(problems)

    def _check_alert_groups(self, spec: WorkflowSpec) -> None:
        """Refuse a workflow whose ``alerts`` (its own or a task's) name a group its project
        does not have, as an unknown pool is (``_check_pools``): its alerts would go nowhere.
        A group deleted later is recorded at alert time as a failed delivery naming it."""
        exists = self.alert_groups
        if exists is None:
            return
        workflow = spec.workflow
        named = [(f"alerts.{i}.group", rule.group) for i, rule in enumerate(workflow.alerts)]
        for task_id, task in workflow.tasks.items():
            named += [
                (f"tasks.{task_id}.alerts.{i}.group", rule.group)
                for i, rule in enumerate(task.alerts)
            ]
        missing = {g for g in {group for _, group in named} if not exists(spec.project, g)}
        problems = [
            Problem(
                field,
                f"unknown alert group {group!r} in project {spec.project!r} (create it first: "
                f"stratoflow alerts groups set {group} --channels NAME[,NAME...] "
                f"[--project {spec.project}])",
            )
            for field, group in named
            if group in missing
        ]
        if problems:
            raise InvalidInput(problems)

    # ------------------------------------------------------------ variables
    def variables_for(self, spec: WorkflowSpec, run: Run, task_id: str) -> dict[str, str]:
        """The values of the variables of the run's project that the task's templates read
        and that are set (the render fails naming one that is not): read when the task is
        rendered, so a change applies to every task rendered after it."""
        names = spec.dag.variables.get(task_id)
        if not names or self.variables is None:
            return {}
        return self.variables.variable_values(run.project, names)

    # ------------------------------------------------------------ pools
    def set_pool(self, name: str, slots: int, project: str | None = None) -> engine_pools.Pool:
        store = self.pool_store()
        problems = engine_pools.check_pool(name, slots, project)
        if problems:
            raise InvalidInput(problems)
        with self._lock:
            pool = store.set_pool(project or "", name, slots)
            self._pools_due.add(pool.key)  # grown: its queue may move now
            if head := store.pool_waiting(pool.key, 1):
                # where another process takes the turns (AWS's api kicks ``advance``): the
                # kick of a run waiting in it has that turn serve the pool's queue
                self.made_ready(head[0].run_id)
        return pool

    def outgrown_pool(self, pool: engine_pools.Pool) -> list[str]:
        """After a resize: the tasks of the latest versions of the workflows that use
        ``pool`` (a project's pool: that project's; a global one: every project without its
        own pool of that name) needing more slots than it has, one warning each
        (``engine.pools.outgrown``). Reads every such workflow's latest version: for a
        resize that shrank the pool, not for a turn."""
        store = self.pool_store()
        shadowed: dict[str, bool] = {}  # project -> it has its own pool of this name
        warnings: list[str] = []
        for latest in self.catalog.list_workflows(pool.scope or None):
            project = latest.project
            if not pool.scope and project not in shadowed:
                own = store.get_pool(engine_pools.pool_key(project, pool.name))
                shadowed[project] = own is not None
            if shadowed.get(project):
                continue
            spec = self.spec(project, latest.name, latest.version)
            warnings += engine_pools.outgrown(pool, spec)
        return warnings

    def delete_pool(self, name: str, project: str | None = None) -> None:
        store = self.pool_store()
        key = engine_pools.pool_key(project or "", name)

        def check() -> None:
            if waiting := self._paused_waiting_for(key):
                raise Conflict(
                    f"pool {name!r} is in use: {waiting} waits for its slots in a paused run "
                    "(it joins the pool's queue when the run resumes); delete it once done"
                )
            if retrying := self._retrying_for(key):
                raise Conflict(
                    f"pool {name!r} is in use: {retrying} waits out its retry delay (its "
                    "next attempt joins the pool's queue); delete it once done"
                )

        with self._lock:
            # the store looks with ``check`` so that a retry entering its wait in another
            # process after the look cannot go unnoticed (``PoolStore.delete_pool``)
            if not store.delete_pool(key, check):
                raise Conflict(
                    f"pool {name!r} is in use (tasks hold or wait for its slots); "
                    "delete it once they are done"
                )

    def _paused_waiting_for(self, key: str) -> str | None:
        """A ready task ("<run id>/<task id>") of a paused run that will ask for pool
        ``key`` when the run resumes (a paused run's ready tasks are queued in their run,
        not yet in their pool's queue, which the store's delete looks at), or None. Reads
        every paused run's task states: for a pool's deletion, not for a turn."""
        store = self.pool_store()
        for run in self.store.runs_in_states([RunState.PAUSED]):
            states = self.store.task_states(run.id)
            queued = [t for t, state in states.items() if state is TaskState.QUEUED]
            if not queued:
                continue
            spec = self._run_spec(run)
            for task_id in queued:
                pool = engine_pools.find(spec, task_id, store.get_pool)
                if pool is not None and pool.key == key:
                    return f"task {task_id} of run {run.id}"
        return None

    def _retrying_for(self, key: str) -> str | None:
        """A task waiting out its retry delay ("task <task id> of run <run id>") whose next
        attempt will ask for pool ``key`` (it holds no slot meanwhile, so neither the
        pool's count nor its queue shows it), or None. Reads the store's retry index, every
        task on it: for a pool's deletion, not for a turn."""
        store = self.pool_store()
        for ti in self.store.due_retries(_EVER, RETRIES_READ):
            pool = engine_pools.find(self._spec_of(ti.run_id), ti.task_id, store.get_pool)
            if pool is not None and pool.key == key:
                return f"task {ti.task_id} of run {ti.run_id}"
        return None

    def pool_store(self) -> PoolStore:
        if self.pools is None:
            raise Conflict("this runtime's store has no pools yet")
        return self.pools

    def pool_view(
        self, key: str, limit: int = 100
    ) -> tuple[engine_pools.Pool, list[TaskInstance], list[TaskInstance]]:
        """A pool, its running tasks and its queue (in the order it is served)."""
        store = self.pool_store()
        pool = store.get_pool(key)
        if pool is None:
            raise NotFound(f"pool {engine_pools.split_key(key)[1]!r} not found")
        return pool, store.pool_running(key, limit), store.pool_waiting(key, limit)

    def force_start(self, run_id: str, task_id: str) -> TaskInstance:
        """Start one task waiting in a pool now, whatever its place and the free slots."""
        with self._lock:
            run, spec = self._load(run_id)
            ti = self.store.get_task(run_id, task_id)
            decision = engine_pools.force_start(spec, run, ti, self.clock.now())
            ready = _Claimed()
            with self._deciding():
                if not self.store.apply(decision):
                    raise Conflict(f"task {task_id} of run {run_id} changed; try again")
                started = decision.tasks[0].task
                self._emit("task.force_started", run, task=started)
                if (prepared := self._prepare(spec, run, started)) is not None:
                    ready.append(prepared)
                self._record_starts(ready)
            self._start(ready)
            return self.store.get_task(run_id, task_id)

    def _join_pools(
        self, spec: WorkflowSpec, run: Run, pooled: list[TaskInstance], now: datetime
    ) -> None:
        """Ready tasks that name a pool join its queue (served by ``_serve_pool``). One that
        could never start there fails at once, saying why (``_fail_unstarted``): its pool is
        gone (deleted after the workflow was applied), the pool has fewer slots than its
        ``pool_slots`` (shrunk after: ``engine.pools.too_small``), or it is a child run's task
        whose pool its ancestors' sub-workflow tasks hold too much of for it ever to start
        (``engine.pools.starved_by_ancestors``: a deadlock otherwise). The pool read to find
        it is the one these are decided from: no read more."""
        store = self.pools
        ancestors: list[TaskInstance] | None = None  # read once, for a child run only
        for ti in pooled:
            pool = None if store is None else engine_pools.find(spec, ti.task_id, store.get_pool)
            error: str | None
            if pool is None:
                error = f"pool {engine_pools.pool_of(spec, ti.task_id)!r} does not exist"
            else:
                need = spec.workflow.tasks[ti.task_id].pool_slots
                error = engine_pools.too_small(pool, ti.task_id, need)
                if error is None and run.parent:
                    if ancestors is None:
                        ancestors = self.subworkflows.ancestors(run)
                    error = engine_pools.starved_by_ancestors(pool, ti.task_id, need, ancestors)
            if error is not None:
                self._fail_unstarted(spec, run, ti, error, now)
            elif pool is not None and self.store.apply(engine_pools.enqueue(ti, pool.key, now)):
                self._pools_due.add(pool.key)

    def _wake_pools(self, spec: WorkflowSpec) -> None:
        """A run of ``spec`` may take tasks waiting in its pools again (resumed, a
        ``concurrency`` slot freed), or its tasks there are passed over now (paused): the
        next turn serves those pools' queues."""
        self._pools_due |= self._pool_keys(spec)

    def _pool_keys(self, spec: WorkflowSpec) -> frozenset[str]:
        """The keys of the pools the tasks of ``spec`` may wait in (none without pools)."""
        if self.pools is None:
            return frozenset()
        cached = self._spec_pools.get(id(spec))
        if cached is None or cached[0] is not spec:
            cached = self._spec_pools[id(spec)] = (spec, engine_pools.candidate_keys(spec))
        return cached[1]

    def _serve_pools(
        self, now: datetime, *, every: bool
    ) -> list[tuple[Run, WorkflowSpec, TaskInstance]]:
        """Claim from the queues of the pools that freed slots or gained waiting tasks this
        turn (``every``: of every pool with a queue, the periodic pass)."""
        if self.pools is None:
            return []
        keys, self._pools_due = self._pools_due, set()
        if every:
            keys |= set(self.pools.pools_with_waiting(DISPATCH_BATCH))
        claimed: list[tuple[Run, WorkflowSpec, TaskInstance]] = []
        for key in sorted(keys):
            claimed += self._serve_pool(self.pools, key, now)
        return claimed

    def _fail_unstarted(
        self, spec: WorkflowSpec, run: Run, ti: TaskInstance, error: str, now: datetime
    ) -> None:
        """A QUEUED task (in a pool's queue or joining one) that can never start ends failed,
        not retried, in one write from QUEUED (``engine.never_started``), its attempt recorded
        with it (``apply_end``: never by a write that did not apply): a claim written apart
        from the failure, then a crash, would leave an attempt that recovery starts (outside
        its pool). Then it goes on as any attempt's end: the event, the children, the run's
        end."""
        with self._deciding():
            decision, made = engine.never_started(spec, ti, error, now, intent=self._intent)
            failed = made.task
            end = Attempt(
                run_id=run.id, task_id=ti.task_id, attempt=failed.attempt,
                state=AttemptStatus.FAILED.value, started_at=now, ended_at=now, error=error,
            )  # fmt: skip
            applied = self.store.apply_end(decision, [end])  # recorded only if it applied
            report = Finished(run.id, ti.task_id, failed.attempt, AttemptResult(
                AttemptStatus.FAILED, error=error, retryable=False))  # fmt: skip
            self._after_end(_Ended(report, ti, spec, now, (decision, made)), applied)
        # decided inside a claim, after its run's queue was read: a dependent its end queued
        # (trigger_rule all_done, ...) is claimed by another pass of this turn's caller
        self.made_ready(run.id)
        self._claim_again = True

    def _serve_pool(
        self, store: PoolStore, key: str, now: datetime
    ) -> list[tuple[Run, WorkflowSpec, TaskInstance]]:
        pool = store.get_pool(key)
        if pool is None or pool.free <= 0:
            return []
        waiting = store.pool_waiting(key, engine_pools.MAX_POOLS_PER_PASS)
        runs: dict[str, tuple[Run, WorkflowSpec]] = {}
        for ti in waiting:
            if ti.run_id not in runs:
                run = self.store.get_run(ti.run_id)
                runs[ti.run_id] = (run, self._run_spec(run))
        for ti, error in engine_pools.too_small_waiting(pool, waiting, runs):
            # waiting since before the pool shrank below its pool_slots: it can never start
            run, spec = runs[ti.run_id]
            self._fail_unstarted(spec, run, ti, error, now)
        claimed: list[tuple[Run, WorkflowSpec, TaskInstance]] = []
        origins = {(ti.run_id, ti.task_id): ti for ti in waiting}
        for decision in engine_pools.serve(pool, waiting, runs, now, processes=self._processes):
            if not self.store.apply(decision):
                break  # another claimer took slots meanwhile: the next pass goes on
            run, spec = runs[decision.run_id]
            task = decision.tasks[0].task
            claimed.append((run, spec, task))
            self._before_claim[(run.id, task.task_id)] = origins[(run.id, task.task_id)]
        self._took_processes(claimed)
        return claimed

    def set_paused(self, project: str, name: str, paused: bool) -> WorkflowVersion:
        """Pause or unpause a workflow's schedule (its runs are not affected)."""
        with self._lock:
            self.catalog.set_paused(project, name, paused)
            latest = self.catalog.get_version(project, name)
        spec = self.spec(project, name, latest.version)
        self.schedules.sync(spec, paused=latest.paused)
        if not latest.paused:
            self._fire_latest_missed(latest, spec)
        return latest

    def _fire_latest_missed(self, latest: WorkflowVersion, spec: WorkflowSpec) -> None:
        """Unpaused, a schedule without catchup fires at once the latest time it missed while
        paused (none before it), as Airflow does and as the local cron loop's next tick
        would: on AWS no firing comes before the schedule's next time. One that has never
        fired waits for its first firing; with catchup, the missed times are made as room
        allows (the cron loop's ticks, the reconciler's passes)."""
        schedule = spec.workflow.schedule
        if schedule is None or schedule.catchup:
            return
        cursor = self.catalog.get_cursor(latest.project, latest.name)
        if cursor is None:
            return
        try:
            times, new_cursor = due_firings(schedule, cursor, self.clock.now())
            if times:
                self.fire(latest, times, cursor, new_cursor)
        except Exception as exc:  # its schedule cannot be computed: marked, as a firing would
            self.schedule_failed(latest, exc)

    # ------------------------------------------------------------ schedules
    def fire(
        self,
        latest: WorkflowVersion,
        logical_dates: Sequence[datetime],
        cursor: datetime | None,
        new_cursor: datetime,
    ) -> list[tuple[Run, bool]]:
        """A schedule's firings, the same wherever they come from (the local cron loop, an
        EventBridge Scheduler firing): one run per logical date, oldest first, its id derived
        from (project, workflow, date) so a repeated firing finds the run it made, pinned to
        the version the firing read; then the cursor moves forward (never back: a late or
        duplicate firing leaves it where it is). A workflow that fires again loses its
        schedule error.

        A schedule without catchup keeps one run of its own waiting, the latest: a firing
        supersedes the runs of earlier firings still queued behind ``max_active_runs``
        (``_supersede_queued``), rather than queue behind them a backlog the user turned off
        (Airflow makes no scheduled run while a DAG is at max_active_runs, and then only the
        latest interval's)."""
        project, name = latest.project, latest.name
        made = [
            self.trigger(
                project,
                name,
                logical_date=logical,
                run_id=scheduled_run_id(project, name, logical),
                trigger="schedule",
                version=latest.version,
            )
            for logical in logical_dates
        ]
        schedule = self.spec(project, name, latest.version).workflow.schedule
        # only a run that had to wait (every max_active_runs slot taken) can have one of its
        # schedule's before it still waiting: else nothing is read (on DynamoDB that read is
        # of the queued runs' index, every workflow's)
        if made and schedule is not None and not schedule.catchup:
            fired = made[-1][0]
            if fired.state is RunState.QUEUED:
                self._supersede_queued(project, name, fired)
        if cursor is None or new_cursor > cursor:
            self.catalog.set_cursor(project, name, new_cursor)
        if latest.schedule_error is not None:
            log.info("schedule of %s/%s fires again", project, name)
            self.catalog.set_schedule_error(project, name, None)
        return made

    def _supersede_queued(self, project: str, name: str, fired: Run) -> None:
        """Without catchup, after a firing made (or found) ``fired``: the runs of the
        workflow's schedule still QUEUED (every ``max_active_runs`` slot taken) but the one of
        the latest logical date end STOPPED, their error naming it. Run ids are derived from
        logical dates and runs are kept, so the superseded ones stay, ended, in the history
        (a repeated firing of their date finds them and makes nothing). Manual, API and
        backfill runs are never touched, nor a scheduled run a running or paused backfill
        adopted or will take (``awaited_runs``): its date is one a user asked to run, and
        its run id is the date's, so no other run could run it. Idempotent: a run that
        started meanwhile is left to run (the stop is a write conditional on QUEUED)."""
        queued = {r.id: r for r in self.store.queued_runs_of(project, name, "schedule")}
        if fired.state is RunState.QUEUED:
            queued.setdefault(fired.id, fired)  # an index that does not show it yet
        if len(queued) < 2:
            return
        if isinstance(self.store, BackfillStore):  # a Query of an index, empty as a rule
            for run_id in awaited_runs(self.store.active_backfills(project, name)):
                if run_id != fired.id:
                    queued.pop(run_id, None)
            if len(queued) < 2:
                return
        keep = max(queued.values(), key=lambda r: (r.logical_date, r.id))
        reason = (
            f"{SUPERSEDED}{keep.id} ({keep.logical_date.isoformat()}), made by a later "
            "firing while this one was still queued behind max_active_runs: a schedule "
            "without catchup keeps only its latest run waiting"
        )
        for run in queued.values():
            if run.id == keep.id or run.logical_date >= keep.logical_date:
                continue
            with self._lock:
                try:
                    current = self.store.get_run(run.id)
                    if current.state is not RunState.QUEUED:
                        continue
                    tasks = self.store.get_tasks(run.id)
                    plan = engine.stop(current, tasks, self.clock.now(), reason=reason)
                    plan.run = plan.run.with_(error=reason)
                    self._apply(plan, RunState.QUEUED)
                except (Conflict, NotFound):
                    continue  # it started, or ended, meanwhile: left as it is
            log.info("run %s of %s/%s %s", run.id, project, name, reason)

    def catchup_room(self, latest: WorkflowVersion) -> int | None:
        """How many runs a catch-up of the workflow may create now, missed or on time
        (``due_firings``'s ``room``): its effective ``max_active_runs`` less its queued and
        active runs, so a backlog (minute intervals since 1970 are millions) is created as
        runs end, not all at once, and a firing while the workflow is full creates none (a
        run that never ends would otherwise gather one queued run per firing). ``None`` (no
        bound) for a schedule without catchup."""
        spec = self.spec(latest.project, latest.name, latest.version)
        schedule = spec.workflow.schedule
        limit = spec.workflow.effective_max_active_runs
        if schedule is None or not schedule.catchup or limit is None:
            return None
        project, name = latest.project, latest.name
        used = self.store.count_queued_runs(project, name)
        if used < limit:
            used += self.store.count_active_runs(project, name)
        return max(limit - used, 0)

    def schedule_failed(self, latest: WorkflowVersion, exc: BaseException) -> None:
        """A workflow whose schedule cannot be computed or fired is marked in error (shown by
        the API and the UI) and skipped; the others go on. Recorded and logged once: the same
        error again changes nothing."""
        error = schedule_error_message(exc)
        if error == latest.schedule_error:
            return
        log.error(
            "schedule of %s/%s cannot fire, skipped until it can: %s",
            latest.project, latest.name, error,
            exc_info=not isinstance(exc, (StratoflowError, ScheduleError)),
        )  # fmt: skip
        try:
            self.catalog.set_schedule_error(latest.project, latest.name, error)
        except Exception:  # the catalog itself failing: logged; the others still fire
            log.exception(
                "recording the schedule error of %s/%s failed", latest.project, latest.name
            )

    # ------------------------------------------------------------ runs
    def trigger(
        self,
        project: str,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        logical_date: datetime | str | None = None,
        run_id: str | None = None,
        trigger: str = "manual",
        version: int | None = None,
        parent: str | None = None,
        keyed: bool = False,
    ) -> tuple[Run, bool]:
        """Create a run (QUEUED; it starts when ``max_active_runs`` allows). Returns the run
        and whether it was created: a repeated ``run_id`` returns the existing run.
        ``parent``: the sub-workflow task that starts it ("<run id>/<task id>").
        ``keyed``: ``run_id`` is a caller's idempotency key, which returns the existing run
        only to the same request (params and logical date): another is a Conflict naming
        what differs, and changes nothing. (A schedule's, a backfill's or a sub-workflow's
        own ids are not keys: a repeat finds its run whatever the params' defaults now are.)
        ``logical_date`` as text (what a user wrote) is read as a backfill reads its start, in
        the time zone of the schedule of the version the run pins (``read_logical_date``).
        A user's trigger (``USER_TRIGGERS``) of a logical date that has not come is refused
        (``refuse_future_logical_date``); the schedule's, a backfill's and a sub-workflow's
        never are. Both refusals change nothing.
        """
        now = self.clock.now()
        # the version's number alone: its document is read and decoded only when its spec is
        # not cached (``spec``), not for every trigger (~11 ms of CPU at 2,000 tasks)
        number = self.catalog.latest_version(project, name) if version is None else version
        spec = self.spec(project, name, number)
        if isinstance(logical_date, str):
            logical_date = read_logical_date(logical_date, spec.workflow.schedule)
        if logical_date is not None and logical_date.tzinfo is None:
            raise InvalidInput([Problem("logical_date", "must include a time zone (e.g. Z)")])
        if logical_date is not None and not MIN_LOGICAL_DATE <= logical_date <= MAX_LOGICAL_DATE:
            raise InvalidInput(
                [Problem("logical_date", "must be between 1900-01-01 and 9999-12-30 (UTC)")]
            )
        if logical_date is not None and trigger in USER_TRIGGERS:
            refuse_future_logical_date(logical_date, now)
        logical = logical_date or now
        rid = run_id or new_run_id(project, name, now)
        self._pin_resources(spec, project, rid)
        run, tasks = engine.new_run(
            spec, run_id=rid, version=number, params=params or {},
            logical_date=logical, now=now, trigger=trigger,
        )  # fmt: skip
        if parent is not None:
            run = run.with_(parent=parent)
        with self._lock:
            created = self.store.create_run(run, tasks, spec.workflow.concurrency)
            if created:
                self._start_queued_runs()
            now_run = self.store.get_run(rid)
            if created and now_run.state is RunState.QUEUED:
                # a run waiting for its own workflow's may wait for this one, which cannot
                # start while it waits: it looks now, not at its next check
                self.dependencies.run_queued(now_run)
        if keyed and not created:
            differ = engine.trigger_differences(
                self._run_spec(now_run), now_run, params or {}, logical_date
            )
            if differ:
                raise Conflict(
                    f"run_id: run {rid!r} already exists and this request differs from it "
                    f"in {', '.join(differ)}; the same run_id returns the run only to the "
                    "same request (choose another run_id for another run)"
                )
        return now_run, created

    def _pin_resources(self, spec: WorkflowSpec, project: str, run_id: str) -> None:
        """Record the newest version of each resource file the workflow's tasks list, before
        the run exists (a repeated trigger of the same run keeps its first pins); a file that
        does not exist refuses the trigger, naming it."""
        paths = workflow_resources(spec.workflow.tasks)
        if not paths:
            return
        if self.resources is None:
            raise InvalidInput([Problem("resources", "this runtime keeps no resource files")])
        self.resources.pin(run_id, project, paths)

    def _start_queued_runs(self) -> None:
        """Start queued runs, oldest first, while their workflow has an active slot free. The
        workflow's current effective ``max_active_runs`` (``current_spec``; 16 when it sets
        none and its schedule catches up) decides for every queued run of it, whatever
        version the run was made from, so a run never starts ahead of an older queued run of
        its workflow. Reads per workflow with queued runs, not per run:
        its latest version's number and its active runs.

        Runs are read a page (``QUEUED_PAGE``) at a time. A full page whose workflows were
        found full is followed by the next page without them (at most ``QUEUED_PAGES``), so
        one workflow's long queue cannot hide another workflow's younger run for ever."""
        now = self.clock.now()
        admission: dict[tuple[str, str], tuple[WorkflowSpec, int]] = {}  # (current, active)
        full: set[tuple[str, str]] = set()
        for _ in range(QUEUED_PAGES):
            page = self.store.queued_runs(QUEUED_PAGE, skip=full)
            progress = False
            for run in page:
                workflow = (run.project, run.workflow)
                if workflow in full:
                    continue
                if workflow not in admission:
                    admission[workflow] = (
                        self.current_spec(*workflow),
                        self.store.count_active_runs(*workflow),
                    )
                current, active = admission[workflow]
                if not engine.may_start(current, active):
                    full.add(workflow)
                    progress = True
                    continue
                if self._start_queued(run, current, active, now, admission):
                    progress = True
            if len(page) < QUEUED_PAGE or not progress:
                return

    def _start_queued(
        self,
        run: Run,
        current: WorkflowSpec,
        active: int,
        now: datetime,
        admission: dict[tuple[str, str], tuple[WorkflowSpec, int]],
    ) -> bool:
        """Start one queued run whose workflow has a slot free; False if the store refused."""
        workflow = (run.project, run.workflow)
        spec = self._run_spec(run)
        roots = self.store.get_tasks(run.id, list(spec.dag.roots))
        plan = engine.start_plan(spec, run, roots, now)
        if self.subworkflows.starts_paused(run):  # its parent was paused while it waited
            plan.run = engine.pause(plan.run, by_parent=True)
        # the store has the last word: on one written by concurrent schedulers, the
        # count read above may already be stale
        limit = current.workflow.effective_max_active_runs
        if not self.store.start_queued_run(plan, limit):
            if limit is not None:
                # refused: the workflow is full after all, or another scheduler started
                # a run of it meanwhile. Its younger runs wait for the next pass rather
                # than each be tried now (and one start ahead of this older run)
                admission[workflow] = (current, limit)
            return False
        admission[workflow] = (current, active + 1)
        self._started_runs.append(run.id)
        self._emit("run.started", plan.run)
        return True

    # ------------------------------------------------------------ the hot path
    def on_finished(self, reports: Iterable[Finished]) -> None:
        """Apply attempt results (idempotent: duplicates and late reports change nothing)."""
        with self._lock, self._deciding():
            for report in reports:
                self._apply_result(report)

    @contextmanager
    def _deciding(self) -> Iterator[None]:
        """One commit for everything decided inside; what acts on it (kills, events) runs
        once it is committed. Nested uses join the outer commit. If the block fails, an
        atomic store rolls back, so nothing was decided and nothing acts; a store without
        transactions keeps every write that succeeded, so what they decided still acts."""
        if self._batching:
            yield
            return
        self._batching = True
        try:
            with self.store.transaction():
                yield
        except BaseException:
            if self.store.atomic:
                self._after_commit.clear()
            else:
                self._run_after_commit()
            raise
        finally:
            self._batching = False
        self._run_after_commit()

    def _run_after_commit(self) -> None:
        actions, self._after_commit = self._after_commit, []
        for action in actions:
            action()

    def _apply_result(self, report: Finished) -> None:
        """One attempt's end, as one turn: the task's transition and the run's counters in
        one decision; then its children hear of it, and the run stops or ends if it should.
        A stale or duplicate report changes nothing, except that it finishes what a turn
        that died part-way left undone (its propagation intent, the run's end)."""
        ended = self._end_of(report)
        if ended is not None:
            made = ended.made
            self._after_end(ended, made is not None and self._apply_ends(made[0], [ended]))

    def _apply_results(self, reports: Iterable[Finished]) -> None:
        """A batch of attempt ends. On a store that applies each decision on its own (one
        DynamoDB transaction, billed per item), the ends of one run are applied as one
        decision, their counter deltas summed: the counters item is written once per run
        and batch, not once per end. If that decision does not apply (one of its ends was
        stale), each end is applied alone. Then each end goes on as ``_apply_result``'s."""
        if self.store.atomic:  # one commit for the whole turn already
            for report in reports:
                self._apply_result(report)
            return
        ended = [e for r in reports if (e := self._end_of(r)) is not None]
        decided = [(i, e.made[0]) for i, e in enumerate(ended) if e.made is not None]
        applied: set[int] = set()
        for merged, parts in engine.together([d for _, d in decided]):
            alone = parts
            if len(parts) > 1 and self._each(merged):
                # each end written alone, the counters once (StateStore.apply_each)
                history = [h for p in parts if (h := ended[decided[p][0]].history) is not None]
                oks = self.store.apply_each([decided[p][1] for p in parts], history)
                applied.update(decided[p][0] for p, ok in zip(parts, oks, strict=True) if ok)
                # the others alone, as below: stale (nothing written), or fenced off by a
                # recovery that took this writer for dead (then alone they apply)
                alone = tuple(p for p, ok in zip(parts, oks, strict=True) if not ok)
            elif len(parts) > 1 and self._apply_ends(merged, [ended[decided[p][0]] for p in parts]):
                applied.update(decided[p][0] for p in parts)
                continue
            applied.update(
                decided[p][0]
                for p in alone
                if self._apply_ends(decided[p][1], [ended[decided[p][0]]])
            )
        self._plan_counts_together([e for i, e in enumerate(ended) if i in applied])
        try:
            for i, e in enumerate(ended):
                self._after_end(e, i in applied)
        finally:
            self._together, self._counted_by_another = {}, set()

    def _plan_counts_together(self, applied: Sequence[_Ended]) -> None:
        """Before the children of a batch's ends hear of them: the parents of one child that
        ended in the batch are counted in one write (``StateStore.record_upstream_group``),
        by the first of them to propagate, which then decides the child; the others skip
        it. Every one of them ended with its propagation intent in this batch, so a crash
        anywhere leaves each to count (a no-op) and decide the child again. A switch that
        did not choose the child counts alone (its decision skips the child)."""
        if not self.store.counts_parents_together:
            return
        parents: dict[tuple[str, str], list[tuple[str, TaskState]]] = {}
        for e in applied:
            task = None if e.made is None else e.made[1].task
            if task is None or not task.state.terminal or not task.propagating:
                continue
            for child in e.spec.dag.children[task.task_id]:
                if engine.skipped_by_switch(e.spec, task.task_id, task.state, task.outputs, child):
                    continue
                outcome = engine.edge_outcome(e.spec, task.task_id, task.state, task.outputs, child)
                parents.setdefault((task.run_id, child), []).append((task.task_id, outcome))
        self._together = {k: v for k, v in parents.items() if len(v) > 1}

    def _count_together(self, parent: TaskInstance, children: Sequence[str]) -> dict[str, Any]:
        """The children of ``parent`` counted with other parents of this batch: the child
        after the one write that counted them all (this parent decides it), or None where
        another parent's write counted this one (that parent decided it)."""
        out: dict[str, Any] = {}
        run = parent.run_id
        for child in children:
            if (run, child, parent.task_id) in self._counted_by_another:
                out[child] = None
                continue
            group = self._together.get((run, child))
            if group is None or all(p != parent.task_id for p, _ in group):
                continue
            del self._together[(run, child)]
            after = self.store.record_upstream_group(run, child, group)
            if after is None:  # not counted: each parent counts alone
                continue
            out[child] = after
            self._counted_by_another.update((run, child, p) for p, _ in group)
            self._counted_by_another.discard((run, child, parent.task_id))
        return out

    def _end_of(self, report: Finished) -> _Ended | None:
        """Record the attempt's end in its history and decide the task's transition (None:
        the task is unknown)."""
        now = self.clock.now()
        try:
            ti = self.store.get_task(report.run_id, report.task_id)
            spec = self._spec_of(report.run_id)
        except NotFound:
            log.warning("result for unknown task %s/%s ignored", report.run_id, report.task_id)
            return None
        ti = self._warned_at_end(spec, ti, report, now)
        result = self._held(report.result, spec, ti, report.attempt, now)
        attempt = Attempt(
            run_id=report.run_id, task_id=report.task_id, attempt=report.attempt,
            state=result.status.value, started_at=ti.started_at or now,
            ended_at=engine.attempt_end(ti, result, now),
            exit_code=result.exit_code, error=result.error, log=report.log,
            outputs=dict(result.outputs),
        )  # fmt: skip
        made = engine.attempt_finished(spec, ti, report.attempt, result, now, intent=self._intent)
        if made is None:  # the task has moved on from this attempt: a late end
            self.store.finish_late_attempt(attempt)
            return _Ended(report, ti, spec, now, made)
        if not self.store.history_on_tasks:
            self.store.finish_attempt(attempt)
            return _Ended(report, ti, spec, now, made)
        return _Ended(report, ti, spec, now, made, attempt)

    def _held(
        self,
        result: AttemptResult,
        spec: WorkflowSpec,
        ti: TaskInstance,
        attempt: int,
        now: datetime,
    ) -> AttemptResult:
        """A timeout its executor reported (on AWS: the attempt's state timed out) while the
        attempt's work may go on (a Batch job until Batch ends it, a user's Lambda function
        until its own timeout): its retry is held until the dispatcher says the work is gone
        (``Dispatcher.timed_out_grace``; the engine keeps the later of that and the retry
        delay). A stale report, or one that already says when, is left as it is."""
        if (
            result.status is not AttemptStatus.TIMED_OUT
            or result.retry_not_before is not None
            or not result.retryable
            or ti.state is not TaskState.RUNNING
            or ti.attempt != attempt
            # its child run is stopped; a dependency task's wait is the scheduler's own
            or spec.workflow.tasks[ti.task_id].type in ("workflow", "dependency")
        ):
            return result
        grace = self.dispatcher.timed_out_grace(spec, ti, killed=False)
        if grace <= timedelta(0):
            return result
        return replace(result, retry_not_before=now + grace)

    def _each(self, decision: engine.Decision) -> bool:
        """Whether the writes of ``decision`` (several, merged from a batch) go to the store
        one by one (``StateStore.apply_each``): where the store says it is cheaper, and the
        decision writes no run and no pool (those stay in one transaction)."""
        return self.store.applies_each and decision.run is None and not decision.pools

    def _apply_ends(self, decision: engine.Decision, ended: Sequence[_Ended]) -> bool:
        """Apply the transitions of ended attempts, their ends recorded with them where the
        store can (``StateStore.apply_end``)."""
        history = [e.history for e in ended if e.history is not None]
        if not history:
            return self.store.apply(decision)
        return self.store.apply_end(decision, history)

    def _after_end(self, ended: _Ended, applied: bool) -> None:
        report, ti, spec, now, made, history = ended
        if history is not None and (made is None or not applied):
            # the transition did not apply (another end or a stop moved the task first):
            # the end is recorded on its own, as the first end of its attempt only
            self.store.finish_late_attempt(history)
        if made is not None and applied:
            self._pools_due.update(d.key for d in made[0].pools)  # freed: serve the queue
            if spec.workflow.concurrency is not None:
                self._wake_pools(spec)  # a run slot freed: its tasks waiting in pools may go
        if made is None or not applied:
            # someone else already moved this attempt on; finish what its turn left undone
            current = ti if made is None else self.store.get_task(ti.run_id, ti.task_id)
            if report.result.held:  # the hold applied before, by a delivery that died after
                self._release_if_resumed(spec, report, now)
            if current.propagating:
                self._propagate(spec, current, now)
            if current.state.terminal:
                self._settle(spec, current, now)
            return
        new = made[1].task
        if report.result.held:
            self._release_if_resumed(spec, report, now)
            return
        if made[1].retrying:
            self._emit("task.retrying", self.store.get_run(report.run_id), task=new)
            self._promote_early(spec, new, now)
        elif new.state is TaskState.FAILED:
            self._emit("task.failed", self.store.get_run(report.run_id), task=new)
        if new.state.terminal:
            self._propagate(spec, new, now)
            self._settle(spec, new, now)

    @property
    def _intent(self) -> bool:
        """Whether a turn's end must leave a propagation intent: on a store that cannot
        apply the whole turn at once, so that whoever comes next can finish it."""
        return not self.store.atomic

    def _spec_of(self, run_id: str) -> WorkflowSpec:
        """The spec a run pinned (cached while the run is unfinished: it never changes)."""
        key = self._run_keys.get(run_id)
        if key is None:
            run = self.store.get_run(run_id)
            key = self._run_keys[run_id] = (run.project, run.workflow, run.version)
        return self.spec(*key)

    def _propagate(self, spec: WorkflowSpec, done: TaskInstance, now: datetime) -> None:
        """Tell the children of an ended task, and theirs for what that ends; O(out-degree),
        plus whatever it skips. Every step is idempotent: a parent is counted once per child
        (``record_upstreams``), a child moves by a conditional write of a decision made from
        its counts, and the parent's propagation intent is retired only once every child has
        heard. A repeat after a crash anywhere in between completes the work."""
        work = [done]
        ended = [done.task_id]  # this end and those it cascaded to: dependency tasks may wait
        while work:
            parent = work.pop()
            children = spec.dag.children[parent.task_id]
            together = (
                self._count_together(parent, children)
                if self._together or self._counted_by_another
                else {}
            )
            read = self._children_to_count(spec, parent, [c for c in children if c not in together])
            alone = [c for c in children if c not in together and c not in read]
            counted = dict(
                zip(
                    alone,
                    self.store.record_upstreams(
                        parent.run_id,
                        parent.task_id,
                        [
                            (c, engine.edge_outcome(spec, parent.task_id, parent.state,
                                                    parent.outputs, c))
                            for c in alone
                        ],
                    ),
                    strict=True,
                )
            )  # fmt: skip
            deferred = False
            for child_id in children:
                if child_id in together:
                    after = together[child_id]
                    if after is None:  # counted, and decided, with another parent of the batch
                        continue
                elif child_id in read:
                    if self._counts_along(spec, parent, read[child_id], now):
                        deferred = True
                        continue
                    # this count does not make it ready to claim: counted alone, as before
                    after = self.store.record_upstream(
                        parent.run_id, child_id, parent.task_id, read[child_id][1].outcome
                    )
                else:
                    after = counted[child_id]
                if after is not None:
                    child = after
                elif parent.propagating:
                    # counted before, by a turn that may have died before the child moved:
                    # decide it again
                    child = self.store.get_task(parent.run_id, child_id)
                else:  # counted before
                    continue
                decision = engine.parent_heard(spec, parent, child, now, intent=self._intent)
                if decision is None:
                    continue
                if self._claims_at_readiness(spec, parent, decision):
                    self._ready_now.setdefault(parent.run_id, {})[child_id] = (child, decision)
                    deferred = True
                    continue
                if self.store.apply(decision):
                    moved = decision.tasks[0].task
                    if moved.state.terminal:
                        work.append(moved)
                        ended.append(moved.task_id)
            if deferred:  # retired once its ready children are claimed or queued
                self._retire_later.append(parent)
            elif parent.propagating:
                self.store.apply(engine.propagated(parent))
        self.dependencies.tasks_ended(spec, done.run_id, ended)  # those naming a task: now

    def _children_to_count(
        self, spec: WorkflowSpec, parent: TaskInstance, children: Sequence[str]
    ) -> dict[str, tuple[TaskInstance, engine.CountAlong]]:
        """The children whose count this parent's end may make in the write that claims or
        queues them (``_counts_along``), read (``StateStore.children_to_count``: those that
        have not counted it), each with the count it would carry. Only in ``advance`` on a
        store that counts with claims, for a parent carrying its intent (which stays until
        the child is claimed or queued), and for a child of at most ``MERGE_MAX_PARENTS``
        parents not made ready by another end of this turn (that one is counted alone)."""
        if not (self._deferring and parent.propagating and self.store.counts_with_claims):
            return {}
        ready = self._ready_now.get(parent.run_id, {})
        small = [
            c
            for c in children
            if len(spec.dag.parents[c]) <= MERGE_MAX_PARENTS
            and c not in ready
            and (parent.run_id, c) not in self._along
        ]
        if not small:
            return {}
        out: dict[str, tuple[TaskInstance, engine.CountAlong]] = {}
        for child_id, (child, gen) in self.store.children_to_count(
            parent.run_id, parent.task_id, small
        ).items():
            outcome = engine.edge_outcome(
                spec, parent.task_id, parent.state, parent.outputs, child_id
            )
            out[child_id] = (child, engine.CountAlong(parent.task_id, outcome, child.upstream, gen))
        return out

    def _counts_along(
        self,
        spec: WorkflowSpec,
        parent: TaskInstance,
        read: tuple[TaskInstance, engine.CountAlong],
        now: datetime,
    ) -> bool:
        """Decide ``read``'s child as if ``parent``'s end were counted in it. If that count
        makes it ready to claim (``_claims_at_readiness``), it is held for the turn's claim
        with the count, which goes in the write that claims it or else queues it (a write
        conditional on the child as read: ``engine.CountAlong``), and True; otherwise
        nothing is written (the caller counts it alone)."""
        child, count = read
        counted = replace(child, upstream=child.upstream.plus(count.outcome))
        decision = engine.parent_heard(spec, parent, counted, now, intent=self._intent)
        if decision is None or not self._claims_at_readiness(spec, parent, decision):
            return False
        self._ready_now.setdefault(parent.run_id, {})[child.task_id] = (counted, decision)
        self._along[(parent.run_id, child.task_id)] = (spec, parent, count)
        return True

    def _with_counts(self, decision: engine.Decision) -> engine.Decision:
        """``decision`` with the counts held for its children (``_counts_along``) in the
        writes that claim or queue them from WAITING."""
        writes = tuple(
            replace(w, count=along[2])
            if w.expect is TaskState.WAITING
            and (along := self._along.get((decision.run_id, w.task.task_id))) is not None
            else w
            for w in decision.tasks
        )
        return decision if writes == decision.tasks else replace(decision, tasks=writes)

    def _applied_counts(self, run_id: str, writes: Iterable[engine.TaskWrite]) -> None:
        """Note the counts that went in ``writes``, which applied."""
        self._counted_along.update((run_id, w.task.task_id) for w in writes if w.count)

    def _count_the_rest(self, now: datetime) -> None:
        """After the claims and queue writes: count alone each held count whose write did
        not apply (the child moved, was counted by another end, or was reset since it was
        read), and decide the child again, as ``_propagate`` does a child counted before
        (its parent's intent is retired only after this). Not if the parent no longer has
        the end it propagates, with its intent (read again: a stop and rerun reset it since,
        and its next end is counted instead; or another delivery finished its propagation)."""
        along, self._along = self._along, {}
        counted, self._counted_along = self._counted_along, set()
        still: dict[tuple[str, str], bool] = {}
        for (run_id, child_id), (spec, parent, count) in along.items():
            if (run_id, child_id) in counted:
                continue
            if (run_id, parent.task_id) not in still:
                now_is = self.store.get_task(run_id, parent.task_id)
                still[(run_id, parent.task_id)] = now_is.propagating and (
                    now_is.state,
                    now_is.attempt,
                ) == (parent.state, parent.attempt)
            if not still[(run_id, parent.task_id)]:
                continue
            after = self.store.record_upstream(run_id, child_id, parent.task_id, count.outcome)
            child = self.store.get_task(run_id, child_id) if after is None else after
            decision = engine.parent_heard(spec, parent, child, now, intent=self._intent)
            if decision is not None and self.store.apply(decision):
                moved = decision.tasks[0].task
                if moved.state.terminal:
                    self._propagate(spec, moved, now)
                elif moved.state is TaskState.QUEUED:
                    self._claim_again = True  # after this turn's claims: another pass claims it

    def _claims_at_readiness(
        self, spec: WorkflowSpec, parent: TaskInstance, decision: engine.Decision
    ) -> bool:
        """Whether the child ``decision`` queues waits for this turn's claim instead: in
        ``advance`` on a store that applies each decision alone, for a child outside pools,
        made ready by a parent whose propagation intent stays until the claim (a crash before
        it leaves the child WAITING with its counts, decided again from the intent)."""
        moved = decision.tasks[0].task
        return (
            self._deferring
            and parent.propagating
            and moved.state is TaskState.QUEUED
            and engine_pools.pool_of(spec, moved.task_id) is None
        )

    def _queue_unclaimed(self, now: datetime) -> None:
        """After a turn's claims: queue the children made ready in it that were not claimed
        (their run had no slot for all, or another writer moved them), with the counts held
        for them (``_counts_along``); count alone those whose write did not apply; then
        retire the intents of the parents that made them ready."""
        ready, self._ready_now = self._ready_now, {}
        for run_id, children in ready.items():
            for _child, made in children.values():
                decision = self._with_counts(made)
                if self.store.apply(decision):  # conditional on WAITING: a claimed one stays
                    self._applied_counts(run_id, decision.tasks)
        self._count_the_rest(now)
        retire, self._retire_later = self._retire_later, []
        for parent in retire:
            self.store.apply(engine.propagated(parent))

    def _settle(self, spec: WorkflowSpec, ended: TaskInstance, now: datetime) -> None:
        """After a task's end (idempotent): stop the run if the failure stops it, else end
        the run if every task has ended."""

        def stop(run: Run) -> Plan | None:
            if not engine.stops_run_on_failure(spec, ended.state) or run.state.terminal:
                return None
            return engine.stop(
                run, self.store.get_tasks(run.id), now, end_state=RunState.FAILED,
                reason=f"task {ended.task_id} failed and on_failure is stop",
            )  # fmt: skip

        run, stopped = self._stop_from_new_read(ended.run_id, stop)
        if not stopped:
            self._maybe_finish(spec, run, now)

    def _stop_from_new_read(
        self, run_id: str, decide: Callable[[Run], Plan | None]
    ) -> tuple[Run, bool]:
        """Apply the stop ``decide`` makes of a fresh read of the run (None: no stop), decided
        again from a new read when another plan of the run applied between its read and its
        write (``PlanRefused``), up to ``_STOP_TRIES`` times: a stop stops whatever the run
        has then. The run as the stop left it, or as read when there was none to apply, and
        whether one applied."""
        for tries_left in reversed(range(_STOP_TRIES)):
            run = self.store.get_run(run_id)
            plan = decide(run)
            if plan is None:
                return run, False
            try:
                return self._apply(plan, run.state), True
            except PlanRefused:
                if not tries_left:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _maybe_finish(self, spec: WorkflowSpec, run: Run | str, now: datetime) -> None:
        """End the run if every task has ended. ``run`` is a fresh read (or an id to read)."""
        if isinstance(run, str):
            run = self.store.get_run(run)
        end = engine.run_finished_state(spec, run)
        if end is RunState.SUCCEEDED:  # unless a task was stopped: read for that, once
            present = self.store.states_present(run.id, engine.SHORT_OF_SUCCESS)
            end = engine.run_finished_state(spec, run, present)
        if end is None:
            return
        self._end_run(run.with_(state=end, ended_at=now), run.state)

    def _end_run(self, ended: Run, was: RunState) -> bool:
        """Write a run's end (conditional on its state being ``was``), then go on from it.
        A sub-workflow child whose parent's ended task follows it has that task take this
        end first (``SubWorkflows.before_end``): a crash between the two writes leaves the
        child unfinished with every task ended, which the next delivery or recovery ends
        (the task first again, which does not take an end twice). False: another writer
        ended it first."""
        if ended.parent:
            self.subworkflows.before_end(ended)
        if not self.store.put_run(ended, was):
            return False
        self._run_ended(ended)
        return True

    def _run_ended(self, run: Run) -> None:
        """What follows a run's end, however it ended: forget its pinned version, say so,
        and start the runs that waited for a slot."""
        self._run_keys.pop(run.id, None)
        self._behind.pop(run.id, None)
        self._emit(f"run.{run.state.value}", run)
        self.backfills.run_ended(run)
        self.dependencies.run_ended(run)  # dependency tasks waiting on this workflow
        self.subworkflows.run_ended(run)
        self._start_queued_runs()

    # ------------------------------------------------------------ periodic work
    def step(self, reports: Iterable[Finished] = ()) -> datetime | None:
        """One turn of the loop. Apply ``reports``, promote due retries, time out overdue
        attempts, start waiting runs and claim what is ready, all in one commit; then act on
        it: kill what timed out, emit events, start the claimed attempts. Returns when it
        next has timed work to do (a retry or a deadline)."""
        with self._lock:
            self._new_render_budget()
            self._left_over = set()  # this turn claims from every queue: theirs too
            ready = self._turn(reports, wakeup=True)
            more = self._start(ready)
            while more:  # a full batch, or a switch that made more ready: dispatch only
                ready = self._turn((), periodic=False, wakeup=True)
                more = self._start(ready)
            if self._render_left <= 0:  # claims were given back: the next turn takes them
                return self.clock.now()
        return ready.wakeup[0] if ready.wakeup is not None else self.store.next_wakeup()

    def advance(
        self,
        reports: Iterable[Finished],
        *,
        runs: Iterable[str] = (),
        wakes: Mapping[str, datetime] | None = None,
    ) -> None:
        """The hot path where nothing polls (AWS): apply outcomes, then claim and start what
        they made ready in their own runs (and in runs that their runs' ends let start). Its
        requests grow with the out-degree of what finished, never with the number of runs in
        flight: retries, deadlines and other runs' queues are the reconciler's ``step``.
        ``runs``: also start what is ready in these (a kick, after a trigger or a rerun was
        recorded elsewhere); a run with nothing queued costs one read. ``wakes``: runs whose
        slot-bound retry waited out its delay (``take_retry_wakes``), by when: those due now
        are queued (one read of the due retries) and claimed like ``runs``; one woken early
        (a wake's delay is bounded) is woken again (``take_retry_wakes``)."""
        reports, runs = list(reports), list(runs)
        with self._lock:
            self._new_render_budget()
            if wakes:
                now = self.clock.now()
                due = [run_id for run_id, when in wakes.items() if when <= now]
                for run_id, when in wakes.items():
                    if when > now:
                        self._wake_retry(run_id, when)
                if due:
                    self._promote_retries(now, now)
                    if any(self._warns_only(r) for r in due):  # a warn deadline woke it
                        with self._deciding():
                            self._time_out(now)
                    runs += [r for r in due if r not in runs]
            for run_id in runs:  # a kick (resume, pools set): serve its runs' pools too
                with suppress(NotFound):
                    self._wake_pools(self._spec_of(run_id))
            targets = list(dict.fromkeys([*(r.run_id for r in reports), *runs]))
            more = self._start(self._turn(reports, periodic=False, runs=targets))
            while more:  # a full batch, or a switch that made more ready
                more = self._start(self._turn((), periodic=False, runs=targets))
            if self._render_left <= 0:  # what they still have ready waits for another turn
                self._left_over.update(targets)

    @contextmanager
    def rendering(self) -> Iterator[None]:
        """Count the time spent inside (rendering a claimed task's templates) against the
        turn's render budget (``_prepare_claimed``)."""
        started = self._render_clock()
        try:
            yield
        finally:
            self._render_left -= max(self._render_clock() - started, 0.0)

    def _new_render_budget(self) -> None:
        """A turn starts: its render budget is whole again."""
        self._render_left = math.inf if self.render_budget is None else self.render_budget

    def take_left_over(self) -> list[str]:
        """The runs whose ready tasks turns left queued when their render budget ran out
        (claimed and given back, or not claimed), since the last call or the last ``step``
        (which claims from every queue: it starts by taking what earlier turns left),
        forgotten here: for a caller whose next turn is another process's (AWS: a kick of
        ``advance`` for each, a turn with a budget of its own)."""
        with self._lock:
            left, self._left_over = self._left_over, set()
        return sorted(left)

    def made_ready(self, run_id: str) -> None:
        """``run_id`` has tasks made ready outside a turn's own work: the next turn claims
        from it (``advance`` too, which claims only from the runs it is told of)."""
        self._started_runs.append(run_id)

    def take_runs_to_dispatch(self) -> list[str]:
        """The runs with tasks made ready since the last turn (a trigger's run, a queued run a
        stop let start, a run resumed, rerun or marked), forgotten here: for a caller that
        leaves their dispatch to another process (AWS's api and trigger functions kick
        ``advance``) and so takes no turn itself."""
        with self._lock:
            started, self._started_runs = self._started_runs, []
        return list(dict.fromkeys(started))

    def dispatch_ready(self) -> int:
        """Claim queued tasks (one conditional write each, exactly one winner), commit, then
        start them. Returns how many were claimed."""
        with self._lock:
            self._new_render_budget()
            ready = self._turn((), periodic=False)
            self._start(ready)
        return ready.claimed

    def _turn(
        self,
        reports: Iterable[Finished],
        *,
        periodic: bool = True,
        runs: list[str] | None = None,
        wakeup: bool = False,
    ) -> _Claimed:
        """Decide one turn's worth in one commit; return the attempts to start after it.
        ``runs``: claim from these runs' queues (and those of runs started meanwhile) only,
        instead of from every running run's. ``wakeup``: also read when timed work is next
        due, as the turn's last read, in its commit (not in a read transaction of its own
        after it), unless something acts on the commit (a kill, an event: a stopped child
        run may make its parent's task retry), when ``step`` reads it once that acted."""
        now = self.clock.now()
        with self._deciding():
            self._ready_now, self._retire_later, self._claim_again = {}, [], False
            self._along, self._counted_along = {}, set()
            self._deferring = runs is not None and not self.store.atomic
            try:
                self._apply_results(reports)
            finally:
                self._deferring = False
            if periodic:
                # what none of these three finds is not looked for (one read, where the
                # store can): promoting retries makes no deadline and starts no run, and a
                # run that a timeout ends starts the queued runs itself (``_run_ended``)
                due = now + self.retry_lead
                retries, expired, queued = self.store.periodic_due(due, now)
                if retries:
                    self._promote_retries(now, due)
                if expired:
                    self._time_out(now)
                if queued:
                    self._start_queued_runs()
            started, self._started_runs = self._started_runs, []
            if runs is None:
                ready = self._claim(now)
            else:
                runs += [r for r in [*started, *self._ready_now] if r not in runs]
                ready = self._claim(now, runs)
            if wakeup and not self._after_commit:
                ready.wakeup = (self.store.next_wakeup(),)
            return ready

    def _promote_retries(self, now: datetime, due: datetime) -> None:
        """Queue the retries due by ``due`` (``now`` + the retry lead), but a slot-bound
        one or a sub-workflow task's (``_waits_unsent``) only once its delay has run out."""
        for ti in self.store.due_retries(due, DISPATCH_BATCH):
            by = now if due > now and self._waits_unsent(self._spec_of(ti.run_id), ti) else due
            if engine.retry_due(ti, by):  # the index finds them; the engine decides
                self._promote(ti, now)

    def _promote(self, ti: TaskInstance, now: datetime) -> None:
        """UP_FOR_RETRY -> QUEUED. A retry promoted before its delay ran out keeps its
        ``ready_at``: the dispatcher waits until then to start it."""
        early = ti.ready_at is not None and ti.ready_at > now
        self.store.put_task(
            ti.with_(state=TaskState.QUEUED, ready_at=ti.ready_at if early else None),
            TaskState.UP_FOR_RETRY,
            ti.attempt,
        )

    def _promote_early(self, spec: WorkflowSpec, ti: TaskInstance, now: datetime) -> None:
        """A retry the dispatcher may wait out itself is queued in the turn that decided it
        (on AWS, where nothing polls for due retries between reconciler passes): its attempt
        starts at once and waits for ``not_before``. Not one that would hold a slot while it
        waits, nor a sub-workflow task's (``_waits_unsent``): it waits UP_FOR_RETRY, as
        locally, and its run is woken when the delay runs out (``take_retry_wakes``: on AWS a
        delayed kick; the reconciler's pass queues it too)."""
        lead = self.retry_lead
        if lead <= timedelta(0) or (ti.ready_at is not None and ti.ready_at > now + lead):
            return
        if ti.ready_at is not None and ti.ready_at > now and self._waits_unsent(spec, ti):
            self._wake_retry(ti.run_id, ti.ready_at)
            return
        self._promote(ti, now)

    def _waits_unsent(self, spec: WorkflowSpec, ti: TaskInstance) -> bool:
        """Whether a retry of ``ti`` waits out its delay UP_FOR_RETRY even where retries are
        dispatched early: one that would hold a slot (``_holds_slot``), a sub-workflow
        task's, whose claim starts its child run at once (no dispatcher waits for it), or
        one whose executor would not look at its run when the delay ends
        (``Dispatcher.looks_before_start``: a pause that failed to hold it could not stop it)."""
        task = spec.workflow.tasks.get(ti.task_id)
        return (
            self._holds_slot(spec, ti)
            or (task is not None and task.type == "workflow")
            or (task is not None and not self.dispatcher.looks_before_start(task))
        )

    @staticmethod
    def _holds_slot(spec: WorkflowSpec, ti: TaskInstance) -> bool:
        """Whether a started attempt of ``ti`` takes a slot others wait for: a pool's, or
        one of its run's ``concurrency``."""
        task = spec.workflow.tasks.get(ti.task_id)
        return (task is not None and task.pool is not None) or spec.workflow.concurrency is not None

    def _warns_only(self, run_id: str) -> bool:
        """Whether a task of ``run_id``'s workflow has a timeout that only warns (its run is
        woken at that deadline: the wake's ``advance`` looks for deadlines passed, one read
        that a wake for a retry alone does not need)."""
        try:
            tasks = self._spec_of(run_id).workflow.tasks.values()
        except NotFound:
            return False
        return any(t.on_timeout is OnTimeout.WARN for t in tasks)

    def _wake_retry(self, run_id: str, when: datetime) -> None:
        known = self._retry_wakes.get(run_id)
        if known is None or when < known:
            self._retry_wakes[run_id] = when

    def take_retry_wakes(self) -> dict[str, datetime]:
        """The runs to wake (``advance``'s ``wakes``) when a slot-bound retry's delay runs
        out, by when, since the last call (forgotten here): for a runtime that dispatches
        retries early (``retry_lead``: AWS sends each a delayed kick)."""
        with self._lock:
            wakes, self._retry_wakes = self._retry_wakes, {}
            return wakes

    def _time_out(self, now: datetime) -> None:
        """Act on the deadlines passed by ``now``: a timeout that only warns (``on_timeout:
        warn``, which no executor enforces) at once; the others, and a dependency task's
        next check, once they are ``timeout_grace`` past (on AWS the state machine enforces
        a timeout itself, and its report should come first)."""
        overdue = now - self.timeout_grace
        for ti in self.store.expired_tasks(now, DISPATCH_BATCH):
            spec = self._spec_of(ti.run_id)
            # a dependency task's deadline is its next check, filed ``timeout_grace`` early
            # (whatever its on_timeout): it is due once that grace is past
            dependency = self.dependencies.handles(spec, ti.task_id)
            at = now if self._only_warns(spec, ti.task_id) else overdue
            if ti.deadline is None or ti.deadline > at:
                continue  # within the grace: the executor's own report comes first
            if dependency:  # its next check, or its timeout
                self.dependencies.due(spec, ti)
                continue
            outcome = engine.on_deadline(spec, ti, at)  # the index finds; the engine decides
            if outcome is None:
                continue
            if outcome.keep_running is not None:  # on_timeout: warn
                self._warn(ti, outcome.keep_running)
                continue
            if outcome.warn:  # on_timeout: warn_fail (said before the failure it causes)
                self._emit("task.timeout", self.store.get_run(ti.run_id), task=ti)
            timeout = spec.workflow.timeout(ti.task_id)
            # the kill lets its processes run this much longer: the retry waits it out (a
            # sub-workflow's child run is stopped, not killed by the dispatcher)
            subworkflow = spec.workflow.tasks[ti.task_id].type == "workflow"
            grace = (
                timedelta(0)
                if subworkflow
                else self.dispatcher.timed_out_grace(spec, ti, killed=True)
            )
            gone_by = self.clock.now() + grace if grace > timedelta(0) else None
            # record the timeout first, then kill: the killed process's own report is stale
            self._apply_result(
                Finished(ti.run_id, ti.task_id, ti.attempt,
                         AttemptResult(AttemptStatus.TIMED_OUT, error=f"timed out after {timeout}",
                                       retry_not_before=gone_by))
            )  # fmt: skip
            self._kill(ti)

    def _only_warns(self, spec: WorkflowSpec, task_id: str) -> bool:
        """Whether ``task_id``'s deadline is a timeout that only warns (``on_timeout:
        warn``), which no executor enforces and the scheduler says itself: not a dependency
        task's, whose deadline is its next check."""
        task = spec.workflow.tasks.get(task_id)
        return (
            task is not None
            and task.on_timeout is OnTimeout.WARN
            and not self.dependencies.handles(spec, task_id)
        )

    def _warn(self, ti: TaskInstance, keep_running: TaskInstance) -> TaskInstance | None:
        """Say that ``ti``'s timeout passed and let it run (``on_timeout: warn``): its
        deadline cleared, so it is said once; the task as written, None if it moved."""
        if not self.store.put_task(keep_running, TaskState.RUNNING, ti.attempt):
            return None
        self._emit("task.timeout", self.store.get_run(ti.run_id), task=ti)
        return keep_running

    def _warned_at_end(
        self, spec: WorkflowSpec, ti: TaskInstance, report: Finished, now: datetime
    ) -> TaskInstance:
        """An attempt whose timeout only warns, ending after its deadline that nobody said yet
        (the deadline check had not come round: the loop's next turn, AWS's wake or its
        reconciler's pass): the warning is said now, before its end is recorded, as it would
        have been at the deadline. Otherwise ``ti`` as it is (a deadline-less task costs one
        attribute read)."""
        if ti.deadline is None or ti.attempt != report.attempt:
            return ti
        if not self._only_warns(spec, ti.task_id):
            return ti
        outcome = engine.on_deadline(spec, ti, engine.attempt_end(ti, report.result, now))
        if outcome is None or outcome.keep_running is None:
            return ti
        return self._warn(ti, outcome.keep_running) or ti

    def _kill(self, ti: TaskInstance) -> None:
        """Kill a running attempt once its end is committed (a sub-workflow's: stop its child)."""
        if not self.subworkflows.kill(self._spec_of(ti.run_id), ti):
            self._act(partial(self.dispatcher.kill, ti.run_id, ti.task_id, ti.attempt))

    def _claim(self, now: datetime, runs: list[str] | None = None) -> _Claimed:
        """Claim up to a batch of queued tasks (a conditional write each: exactly one winner)
        and render them. A switch, or a task whose templates fail, ends here; its result may
        make others ready, and so may a full batch: then ``more`` asks for another pass."""
        by_run: dict[str, list[TaskInstance]] = {}
        if self.parallelism is not None:
            self._processes = max(self.parallelism - (self.dispatcher.live_attempts() or 0), 0)
        if runs is None:
            for ti in self.store.queued_tasks(DISPATCH_BATCH):
                by_run.setdefault(ti.run_id, []).append(ti)
        else:
            for run_id in runs:
                queue = self.store.run_queue(run_id, DISPATCH_BATCH)
                if queue or run_id in self._ready_now:
                    by_run[run_id] = queue
        claimed: list[tuple[Run, WorkflowSpec, TaskInstance]] = []
        for run_id, queued in by_run.items():
            made_ready = list(self._ready_now.get(run_id, {}).values())
            claimed += self._claim_run(run_id, queued, now, made_ready)
        self._queue_unclaimed(now)
        claimed += self._serve_pools(now, every=runs is None)
        again, self._claim_again = self._claim_again, False
        ready, prepared = self._prepare_claimed(claimed)
        ready.claimed = len(claimed)
        ready.more = self._render_left > 0 and (
            again or len(claimed) >= DISPATCH_BATCH or len(ready) < prepared
        )
        self._record_starts(ready)
        return ready

    def _prepare_claimed(
        self, claimed: Sequence[tuple[Run, WorkflowSpec, TaskInstance]]
    ) -> tuple[_Claimed, int]:
        """Prepare the claims (``_prepare``) within what is left of the turn's render budget,
        the runs that spent it last (``_behind``) after every other; give back the claims
        past it (``engine.unclaimed``: QUEUED again at their attempt, in this turn's commit),
        so that a turn of slow templates ends and releases the lock, and the next turn
        starts with the others' tasks. Returns the attempts to start and how many claims
        were prepared."""
        before, self._before_claim = self._before_claim, {}
        behind = self._behind
        if behind:  # stable: in claim order otherwise
            rank = {run_id: i for i, run_id in enumerate(behind)}
            claimed = sorted(claimed, key=lambda c: rank.get(c[0].id, -1))
        ready = _Claimed()
        spent: dict[str, float] = {}
        given_back: list[tuple[Run, TaskInstance]] = []
        for run, spec, task in claimed:
            if self._render_left <= 0 and (run.id, task.task_id) in before:
                given_back.append((run, task))
                continue
            left = self._render_left
            try:
                if (attempt := self._prepare(spec, run, task)) is not None:
                    ready.append(attempt)
            finally:
                spent[run.id] = spent.get(run.id, 0.0) + left - self._render_left
        for run, task in given_back:  # (a claim whose origin is unknown is prepared anyway)
            self.store.apply(engine.unclaimed(before[(run.id, task.task_id)], task))
            self._left_over.add(run.id)
        slowest = None
        if self._render_left <= 0 and spent:
            # the run that spent most of the budget goes after every other run next time
            slowest = max(spent, key=lambda r: spent[r])
            behind.pop(slowest, None)
            behind[slowest] = None
            while len(behind) > BEHIND_RUNS:
                behind.pop(next(iter(behind)))
        for run_id in spent.keys() - {r.id for r, _ in given_back} - {slowest}:
            behind.pop(run_id, None)  # its claims all prepared: no longer behind
        return ready, len(claimed) - len(given_back)

    def _claim_run(
        self,
        run_id: str,
        queued: list[TaskInstance],
        now: datetime,
        ready: Sequence[tuple[TaskInstance, engine.Decision]] = (),
    ) -> list[tuple[Run, WorkflowSpec, TaskInstance]]:
        """Claim what the run's free slots allow of ``queued``: each task QUEUED -> RUNNING
        with the running counter, in one decision. If another claimer won one of them, the
        rest are claimed one by one. ``ready``: children this turn made ready, still WAITING,
        claimed with them straight from WAITING if the run has a slot for every task of both
        (and the queue's head was not a full batch); the others are queued after
        (``_queue_unclaimed``)."""
        run = self.store.get_run(run_id)
        spec = self._run_spec(run)
        claimed: list[tuple[Run, WorkflowSpec, TaskInstance]] = []
        head = len(queued)
        queued, pooled = engine_pools.split(spec, queued)
        if pooled and run.state is RunState.RUNNING:
            self._join_pools(spec, run, pooled, now)
        direct = [child for child, _ in ready]
        free = engine.dispatch_slots(spec, run)
        if self._processes is not None:
            free = min(free, self._processes)  # as if each ran a process: none passed over
        if direct and (head >= DISPATCH_BATCH or len(queued) + len(direct) > free):
            # no slot for all of them: they queue, and the next pass claims from the queue in
            # its order (priority, then FIFO) what the slots left here allow
            direct = []
            self._claim_again = self._claim_again or free > len(queued)
        for claims in engine.claims(
            spec, run, queued, now, ready=direct, processes=self._processes
        ):
            decision = self._with_counts(claims)  # a child's last count in its claim
            writes = decision.tasks
            if len(writes) > 1 and self._each(decision):
                # each claim written alone, the counters once (StateStore.apply_each)
                oks = self.store.apply_each(
                    [engine.Decision(run.id, (w,), running=1) for w in writes]
                )
                self._applied_counts(run_id, (w for w, ok in zip(writes, oks, strict=True) if ok))
                claimed += [(run, spec, w.task) for w, ok in zip(writes, oks, strict=True) if ok]
                writes = tuple(w for w, ok in zip(writes, oks, strict=True) if not ok)
            elif self.store.apply(decision):
                self._applied_counts(run_id, decision.tasks)
                claimed += [(run, spec, w.task) for w in decision.tasks]
                continue
            for write in writes:
                if self.store.apply(engine.Decision(run.id, (write,), running=1)):
                    self._applied_counts(run_id, (write,))
                    claimed.append((run, spec, write.task))
        waiting = self._ready_now.get(run_id, {})
        origins = {ti.task_id: ti for ti in (*queued, *direct)}
        for _, _, task in claimed:
            waiting.pop(task.task_id, None)  # claimed: nothing left to queue
            self._before_claim[(run_id, task.task_id)] = origins[task.task_id]
        self._took_processes(claimed)
        return claimed

    def _took_processes(self, claimed: Sequence[tuple[Run, WorkflowSpec, TaskInstance]]) -> None:
        """Count the claimed tasks that run a process against this pass's ``parallelism``."""
        if self._processes is not None:
            taken = sum(engine.runs_process(spec, task.task_id) for _, spec, task in claimed)
            self._processes = max(self._processes - taken, 0)

    def _record_starts(self, ready: _Claimed) -> None:
        """Write the history rows of attempts about to start, where the dispatcher can say in
        advance where their logs will be (in the claim's commit: no commit of their own)."""
        if not self.record_attempt_starts:
            return
        unrecorded, starts = [], []
        for i, (attempt, task) in enumerate(ready):
            if (log := self.dispatcher.log_location(attempt)) is None:
                unrecorded.append(i)
            else:
                starts.append(self._started(attempt, task, log))
        if starts:
            self.store.start_attempts(starts)
        ready.unrecorded = tuple(unrecorded)

    @staticmethod
    def _started(spec: AttemptSpec, task: TaskInstance, log: str | None) -> Attempt:
        return Attempt(
            spec.run_id, spec.task_id, spec.attempt, "running",
            started_at=task.started_at or spec.logical_date, log=log,
        )  # fmt: skip

    def _start(self, ready: _Claimed) -> bool:
        """Hand committed claims to the dispatcher. Their history rows (with where each log
        is, readable while it runs) went into the claim's commit when the dispatcher could
        say in advance where the log would be; the others are written now, in one commit.
        Returns whether another pass may find work."""
        if ready:
            logs = self.dispatcher.dispatch_many([spec for spec, _ in ready])
            if ready.unrecorded:
                with self.store.transaction():
                    self.store.start_attempts(
                        [self._started(*ready[i], logs[i]) for i in ready.unrecorded]
                    )
        return ready.more

    def _prepare(
        self, spec: WorkflowSpec, run: Run, task: TaskInstance
    ) -> tuple[AttemptSpec, TaskInstance] | None:
        """Render a claimed attempt for dispatch (a crash after the claim's commit is repaired
        by ``recover``, which starts it again under the same key). A switch, or a task whose
        templates fail, ends here and returns None."""
        reads = spec.dag.reads[task.task_id]
        upstream = (
            {t.task_id: t.outputs for t in self.store.get_tasks(run.id, sorted(reads))}
            if reads
            else {}
        )
        if (
            self.retry_lead > timedelta(0)
            and task.deadline is not None
            and spec.workflow.tasks[task.task_id].type != "switch"
            and self._only_warns(spec, task.task_id)
        ):
            # no executor enforces a timeout that only warns, and where nothing polls (AWS)
            # the run is woken at its deadline to say it (``_time_out``), not at the next
            # pass: a dispatched task's, or a sub-workflow's (a dependency task's deadline
            # is its next check, which the scheduler keeps itself)
            self._wake_retry(run.id, task.deadline)
        if spec.workflow.tasks[task.task_id].type == "workflow":
            self.subworkflows.start(spec, run, task, upstream)
            return None
        if spec.workflow.tasks[task.task_id].type == "switch":
            variables = self.variables_for(spec, run, task.task_id)
            with self.rendering():
                result = engine.choose_branches(spec, run, task.task_id, upstream, variables)
            self.on_finished([Finished(run.id, task.task_id, task.attempt, result)])
            return None
        if self.dependencies.handles(spec, task.task_id):  # the scheduler checks it itself
            self.dependencies.check(spec, run, task, first=True)
            return None
        try:
            variables = self.variables_for(spec, run, task.task_id)
            with self.rendering():
                rendered = engine.render_task(spec, run, task.task_id, upstream, variables)
        except TemplateError as exc:
            self.on_finished(
                [Finished(run.id, task.task_id, task.attempt,
                          AttemptResult(AttemptStatus.FAILED, error=str(exc), retryable=False))]
            )  # fmt: skip
            return None
        start = task.started_at
        attempt = AttemptSpec(
            run_id=run.id, task_id=task.task_id, attempt=task.attempt, task=rendered,
            logical_date=run.logical_date, workflow=run.workflow, project=run.project,
            not_before=start if start is not None and start > self.clock.now() else None,
            timeout=engine.enforced_timeout(spec, task.task_id),
        )  # fmt: skip
        if (refused := self.dispatcher.refusal(attempt)) is not None:
            self.on_finished(
                [Finished(run.id, task.task_id, task.attempt,
                          AttemptResult(AttemptStatus.FAILED, error=refused, retryable=False))]
            )  # fmt: skip
            return None
        return attempt, task

    # ------------------------------------------------------------ recovery
    def recover(self) -> None:
        """On start: pick up results that arrived while down, restart what never started."""
        with self._lock:
            running: list[TaskInstance] = []
            waiting: list[TaskInstance] = []
            # sub-workflow and dependency tasks were never dispatched: each is decided here
            for ti in self.subworkflows.recover(self.store.running_tasks()):
                spec = self._spec_of(ti.run_id)
                (waiting if self.dependencies.handles(spec, ti.task_id) else running).append(ti)
            report = self.dispatcher.recover(running)
            # attempts a stop or mark killed just before the last process died: their end,
            # stopped, is a late one (their task has moved on); left, they showed running
            # for good in their task's history
            stopped = self.dispatcher.stopped_while_down(self.store.unended_attempts())
            self.on_finished(
                Finished(run_id, task_id, attempt, result)
                for (run_id, task_id, attempt), result in {**stopped, **report.results}.items()
            )
            ready = _Claimed()
            with self._deciding():
                for ti in report.not_started:
                    run = self.store.get_run(ti.run_id)
                    if (prepared := self._prepare(self._run_spec(run), run, ti)) is not None:
                        ready.append(prepared)
                self._record_starts(ready)
            self._start(ready)
            with self._deciding():
                for ti in waiting:  # those a crash kept from recording their wait
                    self.dependencies.recover(self._spec_of(ti.run_id), ti)
                self._finish_propagations()
            for run in self.store.runs_in_states([RunState.RUNNING, RunState.PAUSED]):
                self._maybe_finish(self._run_spec(run), run.id, self.clock.now())
            self.backfills.reconcile()  # lanes a crash kept from moving on

    def _finish_propagations(self) -> None:
        """Complete the turns that died after a task's end was written but before every
        child heard of it (their propagation intents)."""
        now = self.clock.now()
        for ti in self.store.pending_propagations(DISPATCH_BATCH):
            spec = self._spec_of(ti.run_id)
            self._propagate(spec, ti, now)
            self._settle(spec, ti, now)

    # ------------------------------------------------------------ operations
    def _apply(self, plan: Plan, expect: RunState, if_ended_at: datetime | None = None) -> Run:
        plan = engine_pools.settle_plan(plan)
        ends = plan.run.state.terminal and plan.run.state is not RunState(expect)
        if ends and plan.run.parent and self.subworkflows.followed(plan.run):
            return self._apply_child_end(plan, expect, if_ended_at)
        if not self.store.apply_plan(plan, expect, if_ended_at=if_ended_at):
            raise PlanRefused(plan.run.id)
        self._pools_due.update(t.pool for t in plan.pool_releases if t.pool is not None)
        if plan.queues_left:
            # tasks it took out of pools' queues may have blocked the ones behind them: the
            # next turn serves those queues (where ``advance`` takes the turns, AWS, the
            # run's kick has it serve its pools, ``_wake_pools``)
            self._pools_due.update(plan.queues_left)
            self.made_ready(plan.run.id)
        for ti in plan.kill:
            self._kill(ti)
        if plan.run.state.terminal and plan.run.state is not RunState(expect):
            # an end, or a new end: a failed or stopped run that a mark (or a rerun with
            # nothing left to run) ends succeeded at once ends as if it had run again
            self._run_ended(plan.run)
        if plan.deltas is not None and plan.run.state is RunState.RUNNING:
            # its counters changed by deltas: another task's end written between the read
            # and the plan (whose own turn then saw this plan's task unfinished) may have
            # been the last, which only a read now sees
            run = self.store.get_run(plan.run.id)
            self._maybe_finish(self._run_spec(run), run, self.clock.now())
            return self.store.get_run(plan.run.id)
        return plan.run

    def _apply_child_end(self, plan: Plan, expect: RunState, if_ended_at: datetime | None) -> Run:
        """``_apply`` of a plan that ends a child run (a mark or rerun of it that ends it at
        once, a stop) whose parent's ended task follows it: the plan is written with the run
        left running, every task of it ended, then the run's end goes through ``_end_run``,
        so that its parent's task takes it first. One commit where the store has them
        (SQLite); elsewhere a crash in between leaves a run whose tasks have all ended,
        which the next delivery or recovery ends as ``_end_run`` does."""
        end = plan.run
        with self._deciding():
            running = self._apply(
                replace(plan, run=end.with_(state=RunState.RUNNING, ended_at=None)),
                expect,
                if_ended_at,
            )
            if RunState(expect).terminal:  # an ended run runs again, if only for an instant
                self._emit("run.started", running)
            if not self._end_run(end, RunState.RUNNING):  # ended meanwhile, by another writer
                return self.store.get_run(end.id)
        return end

    def _act(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the state it depends on is committed: at once outside a
        batch of results, after the batch's commit inside one."""
        if self._batching:
            self._after_commit.append(action)
        else:
            action()

    def _load(self, run_id: str) -> tuple[Run, WorkflowSpec]:
        run = self.store.get_run(run_id)
        return run, self._run_spec(run)

    def pause(self, run_id: str, *, by_parent: bool = False) -> Run:
        """``by_parent``: a sub-workflow child paused by its parent's pause (its parent's
        resume resumes it; an operator's pause of the child, False, is left to the operator)."""
        with self._lock:
            run = self.store.get_run(run_id)
            paused = engine.pause(run, by_parent=by_parent)
            if not self.store.put_run(paused, run.state):
                raise Conflict(f"run {run_id} changed; try again")
            spec = self._run_spec(run)
            self._hold_early_retries(spec, run_id)
            if self._pool_keys(spec):
                # a pool's queue passes over a paused run's tasks: what waited behind one of
                # them (a wide one heads the queue and blocks the rest) may start now; the
                # run's kick (AWS) has ``advance`` serve its pools
                self._wake_pools(spec)
                self.made_ready(run_id)
            self.subworkflows.pause_children(run_id)
            return paused

    def resume(self, run_id: str) -> Run:
        with self._lock:
            run = self.store.get_run(run_id)
            resumed = engine.resume(run)
            if not self.store.put_run(resumed, run.state):
                raise Conflict(f"run {run_id} changed; try again")
            self._started_runs.append(run_id)  # what was queued while it was paused
            self._release_held_retries(self._run_spec(run), run_id)
            self._wake_pools(self._run_spec(run))  # and what waits in pools: served at once
            self.subworkflows.resume_children(run_id)
            self._maybe_finish(self._run_spec(run), run_id, self.clock.now())
            return self.store.get_run(run_id)

    def _hold_early_retries(self, spec: WorkflowSpec, run_id: str) -> None:
        """A pause dispatches nothing new: where retries are dispatched before their delay
        runs out (``retry_lead``: AWS, whose state machine waits the delay out), the run's
        retries still waiting are taken back (``engine.held_retry``) and their executions
        stopped, so none starts while the run is paused; the resume queues them again. The
        attempt each had claimed is recorded stopped, never started. The pause is made
        whatever fails here: a retry this does not hold (the process died after the pause's
        write, or a write failed) is held by its executor, which finds the run paused when
        the delay runs out, starts nothing and reports it held (``AttemptResult.held``)."""
        if self.retry_lead <= timedelta(0):
            return
        now = self.clock.now()
        for ti in self.store.get_tasks(run_id):
            decision = engine.held_retry(ti, now)
            if decision is None or self._holds_slot(spec, ti):
                continue
            task = spec.workflow.tasks.get(ti.task_id)
            if task is not None and task.type == "workflow":
                # its retry is its child run, not a waiting execution: the pause of the
                # children (``pause_children``, which finds it by its running task) holds it
                # (checked here itself, not through ``_waits_unsent``: an early claim made by
                # a version that sent sub-workflow retries early is still held this way)
                continue
            assert ti.started_at is not None  # a claim whose start is still to come
            attempt = Attempt(
                run_id, ti.task_id, ti.attempt, AttemptStatus.STOPPED.value,
                started_at=ti.started_at, ended_at=max(now, ti.started_at),
                error=engine.HELD_RETRY_ERROR,
            )  # fmt: skip
            try:
                with self._deciding():
                    if self.store.history_on_tasks:
                        held = self.store.apply_end(decision, [attempt])
                    else:
                        held = self.store.apply(decision)
                        if held:
                            self.store.finish_attempt(attempt)
                    if held:
                        self._act(partial(self._stop_held, run_id, ti.task_id, ti.attempt))
            except Exception:  # its executor holds it (above); the pause goes on
                log.exception("holding the retry %s/%s/%s failed", run_id, ti.task_id, ti.attempt)

    def _release_if_resumed(self, spec: WorkflowSpec, report: Finished, now: datetime) -> None:
        """A retry its executor took back at the end of its delay, its run found paused
        (``AttemptResult.held``), once the hold is written: if the run runs again by now
        (resumed between the executor's look and this), it goes where a resume sends it
        (``_release_held_retries``). The run is read after the hold's write, and a resume
        reads the tasks after its run's write: one of the two sees the other and promotes
        it, both at most (the promotion and the claim are conditional: one attempt)."""
        try:
            run = self.store.get_run(report.run_id)
        except NotFound:
            return
        if run.state is not RunState.RUNNING:
            return  # still paused: its resume releases it (ended: nothing to run)
        ti = self.store.get_task(report.run_id, report.task_id)
        if ti.state is TaskState.UP_FOR_RETRY and ti.attempt == report.attempt:
            self._promote_early(spec, ti, now)

    def _stop_held(self, run_id: str, task_id: str, attempt: int) -> None:
        """Stop a held retry's waiting execution. A stop that fails does not fail the pause,
        which is made: the execution's own check before it starts the task (the runner reads
        its attempt) finds the attempt no longer running and starts nothing."""
        try:
            self.dispatcher.kill(run_id, task_id, attempt)
        except Exception:
            log.exception("stopping the held retry %s/%s/%s failed", run_id, task_id, attempt)

    def _release_held_retries(self, spec: WorkflowSpec, run_id: str) -> None:
        """A resume: the run's retries go back to where they are dispatched early (those a
        pause held, and any that failed into their delay meanwhile), as the turn that decided
        each would have sent them (``_promote_early``); elsewhere the loop promotes them."""
        if self.retry_lead <= timedelta(0):
            return
        now = self.clock.now()
        for ti in self.store.get_tasks(run_id):
            if ti.state is TaskState.UP_FOR_RETRY:
                self._promote_early(spec, ti, now)

    def stop(self, run_id: str) -> Run:
        with self._lock:
            return self._stop_from_new_read(
                run_id, lambda run: engine.stop(run, self.store.get_tasks(run_id), self.clock.now())
            )[0]

    def rerun(
        self,
        run_id: str,
        *,
        from_task: str | None = None,
        all_tasks: bool = False,
        params: Mapping[str, Any] | None = None,
        if_ended_at: datetime | None = None,
    ) -> Run:
        """Rerun failed tasks and what is downstream of them, keeping what succeeded apart
        from them (``engine.rerun_failed``), or ``from_task`` and its downstream, or
        (``all_tasks``) every task; with ``if_ended_at``, only the run's end at that instant
        (else Conflict). A sub-workflow task rerun from, whole, or only because it is
        downstream of a failed task runs its child run again whole
        (``engine.subworkflow.on_claim``). ``params`` (with ``all_tasks`` only:
        a sub-workflow child rerun whole, with its parent task's params rendered now): the
        run's param overrides from now on, written in the write that resets its tasks. On a
        run that goes on, failed tasks or ``from_task`` are rerun while its other tasks go on
        (what is rerun that runs is killed), as Airflow clears tasks of a running DAG run."""
        if params is not None and not all_tasks:
            raise InvalidInput([Problem("params", "only a rerun of all tasks takes new params")])
        with self._lock:
            run, spec = self._load(run_id)
            if if_ended_at is not None and not run.state.terminal:
                # a rerun of the end it saw (a backfill's, a parent task's): the run that goes
                # again has moved on from it, by this rerun applied once already or another
                raise Conflict(f"run {run_id} is {run.state}: it no longer ends as read")
            tasks = self.store.get_tasks(run_id)
            now = self.clock.now()
            if all_tasks:
                plan = rerun_all(spec, run, tasks, now)
                if params is not None:
                    plan = engine.with_params(spec, plan, params)
            elif from_task is None:
                plan = engine.rerun_failed(spec, run, tasks, now)
            else:
                plan = engine.rerun_from(spec, run, tasks, from_task, now)
            # decided from this end of the run: a rerun elsewhere that ran and ended it again
            # meanwhile (in the same state) refuses it, instead of its tasks being reset to
            # attempts that ran already
            seen = if_ended_at if if_ended_at is not None else run.ended_at
            new = self._apply(plan, run.state, seen)
            if plan.new_params:  # names only: a value may be anything a task output
                changed = ", ".join(engine.changed_params(run.params, new.params))
                log.info("run %s reruns with new values of params %s", run_id, changed)
            if run.state.terminal and new.state is RunState.RUNNING:
                self._emit("run.started", new)  # a rerun of a run that goes on starts nothing
            self._started_runs.append(run_id)
            return new

    def mark(self, run_id: str, task_id: str, state: TaskState) -> Run:
        """Mark a task succeeded, skipped or failed (``engine.mark``). Marking a sub-workflow
        task stops its child run if that still runs: one its attempt runs (the mark kills the
        attempt), or one rerun on its own since the task took its end (the task followed
        it: ``engine.subworkflow.follows``; marked, it no longer does). A task marked failed
        sends ``task.failed`` (as on AWS, where that event is derived from the change) and
        stops the run if its workflow's ``on_failure`` says so, as any failure does."""
        with self._lock:
            run, spec = self._load(run_id)
            tasks = self.store.get_tasks(run_id)
            plan = engine.mark(spec, run, tasks, task_id, state, self.clock.now())
            marked = self._apply(plan, run.state, run.ended_at)  # an ended run: that end
            before = next(t for t in tasks if t.task_id == task_id)
            if follows(before):
                self.subworkflows.kill(spec, before)  # stops its child, if it runs
            if run.state.terminal and marked.state is RunState.RUNNING:
                self._emit("run.started", marked)  # an ended run made to run again, as a rerun
            if state is TaskState.FAILED:
                self._emit("task.failed", marked, task=plan.tasks[task_id])
                # a failure like any other: ``on_failure: stop`` stops the run now (not when
                # a late report of the killed attempt happens to settle it)
                self._settle(spec, plan.tasks[task_id], self.clock.now())
                marked = self.store.get_run(run_id)
            self._started_runs.append(run_id)  # a task marked done may have made children ready
            return marked

    # ------------------------------------------------------------ events
    def _emit(self, kind: str, run: Run, *, task: TaskInstance | None = None) -> None:
        detail: dict[str, Any] = {
            "run_id": run.id, "workflow": run.workflow, "project": run.project,
            "version": run.version, "state": run.state.value,
            "logical_date": run.logical_date.isoformat(),
        }  # fmt: skip
        if (parent := parent_of(run)) is not None:
            detail.update(parent_run=parent[0], parent_task=parent[1])
        if task is not None:
            detail.update(
                task_id=task.task_id,
                attempt=task.attempt,
                task_state=task.state.value,
                error=task.error,
            )
        self._act(partial(self.events.emit, kind, detail))
