"""Dependency tasks on the scheduler service, the same for both runtimes.

Sequencing only (the rules are ``stratoflow.engine.dependency``'s). A dependency task is
claimed like any task but never dispatched: the scheduler itself reads the upstream runs of
each interval, asks the engine, and either ends the attempt (succeeded, or failed with what
failed or timed out) or keeps it RUNNING with its deadline set to the next check. Three things
look again: the task's deadline (``Scheduler._time_out``: ``check_interval`` is the fallback
timer, the timeout the last one), the end of any run of an upstream workflow (``run_ended``,
through the waits index recorded when the task started waiting), and ``recover``; and, for a
task waiting on its own workflow, a run of it created queued (``run_queued``: it may be the
awaited run, unable to start while the waiting runs hold every slot).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskInstance, TaskState
from stratoflow.engine.dependency import (
    DependencyCheck,
    Interval,
    ItemStatus,
    Outcome,
    SlotHolder,
    UpstreamRun,
    date_intervals,
    decide,
    fires_in,
    is_superseded,
    item_status,
    latest_in,
    queued_behind,
    schedule_zone,
    settles,
    unknown_upstream,
)
from stratoflow.errors import NotFound
from stratoflow.model import DependencyTask, WorkflowSpec
from stratoflow.ports import DependencyStore

if TYPE_CHECKING:
    from stratoflow.engine import Run
    from stratoflow.service import Scheduler

log = logging.getLogger("stratoflow.dependency")

RUNS_PER_INTERVAL = 3  # the store gives the latest created first; the first decides
WAITERS_PER_END = 500  # dependency tasks one upstream run's end looks at


def foreign_upstreams(spec: WorkflowSpec) -> list[tuple[str, str]]:
    """(project, task id) of each dependency item on another project's workflow: whoever
    applies ``spec`` must be allowed to read that project (its runs' states decide the task)."""
    found: list[tuple[str, str]] = []
    for task_id, task in spec.workflow.tasks.items():
        if isinstance(task, DependencyTask):
            for item in task.items:
                project, _ = item.upstream(spec.project)
                if project != spec.project and (project, task_id) not in found:
                    found.append((project, task_id))
    return found


def self_waiting(spec: WorkflowSpec) -> list[str]:
    """The dependency tasks of ``spec`` with an item on its own workflow."""
    return [
        task_id
        for task_id, task in spec.workflow.tasks.items()
        if isinstance(task, DependencyTask)
        and any(i.upstream(spec.project) == (spec.project, spec.name) for i in task.items)
    ]


class Dependencies:
    """The dependency tasks of one scheduler (``Scheduler.dependencies``)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    @property
    def store(self) -> DependencyStore:
        store = self.scheduler.store
        if not isinstance(store, DependencyStore):
            raise TypeError(f"{type(store).__name__} cannot serve dependency tasks")
        return store

    @staticmethod
    def handles(spec: WorkflowSpec, task_id: str) -> bool:
        return isinstance(spec.workflow.tasks.get(task_id), DependencyTask)

    def check(self, spec: WorkflowSpec, run: Run, ti: TaskInstance, *, first: bool) -> None:
        """Look at the upstream runs now and act on what the engine decides. ``first``: the
        attempt was just claimed (or recovered): record its waits."""
        task = spec.workflow.tasks[ti.task_id]
        assert isinstance(task, DependencyTask)
        sched = self.scheduler
        now = sched.clock.now()
        upstreams = sorted({i.upstream(run.project) for i in task.items})
        if ti.started_at is not None and ti.started_at > now:
            # a retry claimed before its delay ran out (AWS dispatches retries at once): its
            # attempt starts, and its first look comes, when the delay is over
            next_check: datetime | None = ti.started_at
            outcome = None
        else:
            outcome = self._decide(spec, run, ti, task, now)
            next_check = outcome.next_check
        if outcome is None or outcome.outcome is Outcome.WAITING:
            if first:
                self.store.add_dependency_waits(run.id, ti.task_id, upstreams)
            # the deadline pass finds a task ``timeout_grace`` after its deadline (AWS: 2 min,
            # for executors that report their own timeouts): file the check that much earlier
            assert next_check is not None
            waiting = ti.with_(deadline=next_check - sched.timeout_grace)
            if outcome is not None and outcome.warn:
                # on_timeout: warn: the error it keeps while it waits on marks it warned (on
                # AWS the lifecycle stream derives ``task.timeout`` from that change)
                waiting = waiting.with_(error=outcome.message)
            if not sched.store.put_task(waiting, TaskState.RUNNING, ti.attempt):
                log.info("dependency %s/%s moved on meanwhile", run.id, ti.task_id)
            elif waiting.error is not None and ti.error is None:
                sched._emit("task.timeout", run, task=waiting)
            return
        self.store.remove_dependency_waits(run.id, ti.task_id, upstreams)
        if outcome.outcome is Outcome.SUCCEEDED:
            result = AttemptResult(AttemptStatus.SUCCEEDED, {"upstream": outcome.message})
        else:
            if outcome.warn:  # on_timeout: warn_fail, said before the failure it causes
                sched._emit("task.timeout", run, task=ti)
            status = AttemptStatus.TIMED_OUT if outcome.timed_out else AttemptStatus.FAILED
            result = AttemptResult(status, error=outcome.message)
        from stratoflow.service import Finished

        sched.on_finished([Finished(run.id, ti.task_id, ti.attempt, result)])
        sched.made_ready(run.id)  # where nothing polls, its children are claimed now

    def _decide(
        self, spec: WorkflowSpec, run: Run, ti: TaskInstance, task: DependencyTask, now: datetime
    ) -> DependencyCheck:
        zone = schedule_zone(spec)
        statuses: list[ItemStatus] = []
        for item in task.items:
            project, name = item.upstream(run.project)
            try:
                upstream = self.scheduler.catalog.get_version(project, name)
            except NotFound:
                statuses.append(unknown_upstream(item, run.project))
                if settles(task.mode, statuses[-1]):
                    break
                continue
            intervals = date_intervals(item.date, run.logical_date, zone)
            latest = self._latest(project, name, item.task, intervals)
            if (project, name) == (run.project, run.workflow):
                latest = [self._startable(run, chosen) for chosen in latest]
            # an interval where the upstream's current schedule has no fire time (a DST gap,
            # a repeated hour) gets no run of it: it is not waited for
            schedule = self.scheduler.spec(project, name, upstream.version).workflow.schedule
            fires = fires_in(schedule, intervals)
            statuses.append(item_status(item, run.project, intervals, latest, fires))
            if settles(task.mode, statuses[-1]):
                break  # certain already: the other items are not read
        started = ti.started_at or now
        return decide(
            task, statuses, started_at=started, timeout=spec.workflow.timeout(ti.task_id),
            now=now, on_timeout=task.on_timeout,
            # only the warning sets the error of a waiting attempt (a claim clears it)
            warned=ti.error is not None,
        )  # fmt: skip

    def _latest(
        self, project: str, name: str, task: str | None, intervals: Sequence[Interval]
    ) -> list[UpstreamRun | None]:
        """The run that decides each interval (with the item's task's state in it)."""
        latest: list[UpstreamRun | None] = []
        for interval in intervals:
            runs = self.store.runs_by_logical_date(
                project, name, interval.start, interval.end, RUNS_PER_INTERVAL
            )
            chosen = latest_in(
                interval,
                [
                    UpstreamRun(
                        r.id,
                        r.state,
                        r.logical_date,
                        r.created_at,
                        superseded=is_superseded(r.state, r.error),
                    )
                    for r in runs
                ],
            )
            if chosen is not None and task is not None:
                chosen = replace(chosen, task_state=self._task_state(chosen, task))
            latest.append(chosen)
        return latest

    def _startable(self, run: Run, chosen: UpstreamRun | None) -> UpstreamRun | None:
        """``chosen``, a run of ``run``'s own workflow; when it is QUEUED and can never start
        while ``run`` waits (``queued_behind``), marked so (its interval has failed). Reads
        nothing more unless every slot of the workflow is taken."""
        if chosen is None or chosen.state is not RunState.QUEUED or not run.state.active:
            return chosen
        store = self.scheduler.store
        try:
            awaited = store.get_run(chosen.run_id)
        except NotFound:
            return chosen
        # the workflow's current version decides when a queued run of it may start
        current = self.scheduler.current_spec(awaited.project, awaited.workflow).workflow
        limit = current.effective_max_active_runs
        if limit is None or store.count_active_runs(run.project, run.workflow) < limit:
            return chosen
        holders = [SlotHolder(run.id, frozenset({chosen.run_id}))]
        if limit > 1:  # the other slots' runs: what each waits for
            holders += [
                SlotHolder(other.id, self._waits_of(other))
                for other in store.runs_in_states([RunState.RUNNING, RunState.PAUSED])
                if (other.project, other.workflow) == (run.project, run.workflow)
                and other.id != run.id
            ]
        why = queued_behind(
            run.id, chosen.run_id, limit, holders, implied=current.max_active_runs_implied
        )
        return chosen if why is None else replace(chosen, cannot_start=why)

    def _waits_of(self, other: Run) -> frozenset[str]:
        """The runs of ``other``'s own workflow, not ended, that its waiting ``all``
        dependency tasks wait for (none when it is paused: it may be stopped or resumed). A
        wait for one task of a running run is left out: that task may succeed even while its
        run cannot end (a queued run's tasks cannot)."""
        if other.state is not RunState.RUNNING:
            return frozenset()
        spec = self.scheduler.spec(other.project, other.workflow, other.version)
        zone = schedule_zone(spec)
        found: set[str] = set()
        for task_id in self_waiting(spec):
            task = spec.workflow.tasks[task_id]
            assert isinstance(task, DependencyTask)
            if task.mode != "all":
                continue  # another item may succeed: it may end by itself
            own = [i for i in task.items if i.upstream(other.project) == (spec.project, spec.name)]
            try:
                if self.scheduler.store.get_task(other.id, task_id).state is not TaskState.RUNNING:
                    continue
            except NotFound:
                continue
            for item in own:
                intervals = date_intervals(item.date, other.logical_date, zone)
                latest = self._latest(other.project, other.workflow, item.task, intervals)
                for interval, chosen in zip(intervals, latest, strict=True):
                    if chosen is None or (item.task is not None and chosen.state.active):
                        continue  # a task of a running run may end while the run cannot
                    status = item_status(item, other.project, [interval], [chosen])
                    if status.outcome is Outcome.WAITING:
                        found.add(chosen.run_id)
        return frozenset(found)

    def run_queued(self, queued: Run) -> None:
        """A run was created QUEUED (every slot of its workflow taken): the active runs of
        the workflow that wait for their own workflow's runs look now (it may be the one they
        wait for, and unable to start: ``queued_behind``), not at their next check."""
        spec = self.scheduler.spec(queued.project, queued.workflow, queued.version)
        if not self_waiting(spec):
            return
        store = self.scheduler.store
        for run in list(store.runs_in_states([RunState.RUNNING])):
            if (run.project, run.workflow) != (queued.project, queued.workflow):
                continue
            run_spec = self.scheduler.spec(run.project, run.workflow, run.version)
            for task_id in self_waiting(run_spec):
                try:
                    ti = store.get_task(run.id, task_id)
                except NotFound:
                    continue
                if ti.state is TaskState.RUNNING:
                    self.check(run_spec, store.get_run(run.id), ti, first=False)

    def _task_state(self, run: UpstreamRun, task_id: str) -> TaskState | None:
        try:
            return self.scheduler.store.get_task(run.run_id, task_id).state
        except NotFound:
            return None

    def due(self, spec: WorkflowSpec, ti: TaskInstance) -> None:
        """The task's deadline passed: its next check (or its timeout) is due."""
        run = self.scheduler.store.get_run(ti.run_id)
        self.check(spec, run, ti, first=False)

    def recover(self, spec: WorkflowSpec, ti: TaskInstance) -> None:
        """After a restart (on AWS: each reconciler pass), for a task whose claim committed
        but whose first check did not (a store that applies each write on its own: the claim,
        then the waits, then the deadline): look again and record its waits. Such a task
        still has the deadline its claim gave it (none, or its timeout); one that recorded its
        wait has a check's, and is left to it."""
        timeout = spec.workflow.timeout(ti.task_id)
        claimed = None if timeout is None or ti.started_at is None else ti.started_at + timeout
        if ti.deadline is not None and ti.deadline != claimed:
            return
        run = self.scheduler.store.get_run(ti.run_id)
        self.check(spec, run, ti, first=True)

    def tasks_ended(self, spec: WorkflowSpec, run_id: str, task_ids: Sequence[str]) -> None:
        """Tasks of a run of ``spec`` ended (one end and the skips it cascaded to): look now
        at the waiting dependents with an item naming one of them (``task:``), whose answer
        may be decided before the run ends. One query of the waits index when nobody waits
        on the workflow; its other waiters are left to the run's end."""
        store = self.scheduler.store
        if not isinstance(store, DependencyStore):
            return
        names = set(task_ids)
        for waiter_run, waiter_task in store.dependency_waiters(
            spec.project, spec.name, WAITERS_PER_END
        ):
            if waiter_run == run_id:
                continue  # its own run's tasks: not an upstream run it waits for
            try:
                run = store.get_run(waiter_run)
            except NotFound:
                continue  # gone: the run's end (or the next check) forgets the wait
            waiting_spec = self.scheduler.spec(run.project, run.workflow, run.version)
            task = waiting_spec.workflow.tasks.get(waiter_task)
            if not isinstance(task, DependencyTask) or not any(
                item.task in names and item.upstream(run.project) == (spec.project, spec.name)
                for item in task.items
            ):
                continue
            try:
                ti = store.get_task(waiter_run, waiter_task)
            except NotFound:
                continue
            if ti.state is TaskState.RUNNING and not run.state.terminal:
                self.check(waiting_spec, run, ti, first=False)

    def run_ended(self, ended: Run) -> None:
        """A run of a workflow others may wait on ended: look at its waiting dependents now."""
        store = self.scheduler.store
        if not isinstance(store, DependencyStore):
            return
        for run_id, task_id in store.dependency_waiters(
            ended.project, ended.workflow, WAITERS_PER_END
        ):
            try:
                ti = store.get_task(run_id, task_id)
                run = store.get_run(run_id)
            except NotFound:
                ti = None
            if ti is None or ti.state is not TaskState.RUNNING:
                store.remove_dependency_waits(run_id, task_id, [(ended.project, ended.workflow)])
                continue
            spec = self.scheduler.spec(run.project, run.workflow, run.version)
            if self.handles(spec, task_id):
                self.check(spec, run, ti, first=False)
