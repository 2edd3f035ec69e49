"""Dependency tasks on the scheduler service, the same for both runtimes.

Sequencing only (the rules are ``stratoflow.engine.dependency``'s). A dependency task is
claimed like any task but never dispatched: the scheduler itself reads the upstream runs of
each interval, asks the engine, and either ends the attempt (succeeded, or failed with what
failed or timed out) or keeps it RUNNING with its deadline set to the next check. Three things
look again: the task's deadline (``Scheduler._time_out``: ``check_interval`` is the fallback
timer, the timeout the last one), the end of any run of an upstream workflow (``run_ended``,
through the waits index recorded when the task started waiting), and ``recover``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from stratoflow.engine import AttemptResult, AttemptStatus, TaskInstance, TaskState
from stratoflow.engine.dependency import (
    DependencyCheck,
    ItemStatus,
    Outcome,
    UpstreamRun,
    date_intervals,
    decide,
    item_status,
    latest_in,
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
            if not sched.store.put_task(waiting, TaskState.RUNNING, ti.attempt):
                log.info("dependency %s/%s moved on meanwhile", run.id, ti.task_id)
            return
        self.store.remove_dependency_waits(run.id, ti.task_id, upstreams)
        if outcome.outcome is Outcome.SUCCEEDED:
            result = AttemptResult(AttemptStatus.SUCCEEDED, {"upstream": outcome.message})
        else:
            result = AttemptResult(AttemptStatus.FAILED, error=outcome.message)
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
                self.scheduler.catalog.get_version(project, name)
            except NotFound:
                statuses.append(unknown_upstream(item, run.project))
                if settles(task.mode, statuses[-1]):
                    break
                continue
            intervals = date_intervals(item.date, run.logical_date, zone)
            latest: list[UpstreamRun | None] = []
            for interval in intervals:
                runs = self.store.runs_by_logical_date(
                    project, name, interval.start, interval.end, RUNS_PER_INTERVAL
                )
                chosen = latest_in(
                    interval,
                    [UpstreamRun(r.id, r.state, r.logical_date, r.created_at) for r in runs],
                )
                if chosen is not None and item.task is not None:
                    chosen = replace(chosen, task_state=self._task_state(chosen, item.task))
                latest.append(chosen)
            statuses.append(item_status(item, run.project, intervals, latest))
            if settles(task.mode, statuses[-1]):
                break  # certain already: the other items are not read
        started = ti.started_at or now
        return decide(
            task, statuses, started_at=started, timeout=spec.workflow.timeout(ti.task_id), now=now
        )

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
