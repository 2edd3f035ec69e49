"""Sub-workflow tasks on the scheduler service, the same for both runtimes.

Sequencing only (the rules are ``stratoflow.engine.subworkflow``'s): read the child run, ask
the engine, then trigger, rerun (from its failed tasks, keeping its params; or whole when
the parent's task was rerun whole, with the params the task renders now), pause, resume or
stop it through the service's own operations. The child's end reaches its parent's task as
an attempt result applied in the turn that ended the child (``run_ended``, called from the
service's run-end path): locally in the same commit; on AWS in the advance function's turn
that ended the child, so the parent waits for an event, never polls. A crash between the two
is repaired by ``recover`` (the local start, the AWS reconciler), which reports the outcome
of every child that ended while its parent's task still runs, stops the children whose
parent's task has ended, and pauses or resumes each child to match its parent (a child
paused by its parent's pause says so in ``Run.paused_by_parent``, so an operator's own pause
of a child is kept).

A child that ends again after its parent's task took its end (marked or rerun on its own)
reaches that task too, which follows it (``TaskInstance.child_end``): ``before_end``, called
by the service before the child's end is written, has the task take the new end as a mark of
it would (its downstream decided again, an ended parent run reopened). The child stays
unfinished until its parent's task has taken the end, so whatever dies in between, the next
delivery or recovery ends the child again, through here again (an end the task took is not
taken twice).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from stratoflow.auth import Action, Forbidden, Principal
from stratoflow.engine import AttemptResult, Run, RunState, TaskInstance, TaskState
from stratoflow.engine import subworkflow as rules
from stratoflow.errors import Conflict, NotFound, StratoflowError
from stratoflow.model import WorkflowSpec, spec_from_document
from stratoflow.templating import TemplateError

if TYPE_CHECKING:
    from stratoflow.service import Scheduler

log = logging.getLogger("stratoflow.subworkflow")

TRIGGER = "workflow"  # a child run's trigger
ACTIVE = (RunState.QUEUED, RunState.RUNNING, RunState.PAUSED)
# the child runs an operation's authorization check reads, at most (check_caller_rerun)
MAX_CHILD_RUNS_CHECKED = 1000
# how often a parent's task taking its child's new end decides again when its run or itself
# moved between the read and the write (``SubWorkflows._take_end``)
TAKE_END_TRIES = 3


class SubWorkflows:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    # ------------------------------------------------------------ apply time
    def graph(self, spec: WorkflowSpec) -> dict[rules.WorkflowKey, list[rules.WorkflowKey]]:
        """The sub-workflow edges of every workflow reachable from ``spec`` (which stands
        for its own latest version), each other workflow by its latest version."""
        root = (spec.project, spec.name)
        graph = {root: sorted(set(rules.targets(spec).values()))}
        todo = list(graph[root])
        while todo:
            key = todo.pop()
            if key in graph:
                continue
            rules.graph_too_large(len(graph))
            try:
                stored = self.scheduler.catalog.get_version(*key)
            except NotFound:
                graph[key] = []  # not applied yet: its own apply checks what it adds
                continue
            graph[key] = sorted(set(rules.targets(spec_from_document(stored.document)).values()))
            todo += graph[key]
        return graph

    def check_apply(self, spec: WorkflowSpec) -> None:
        """Refuse (InvalidInput naming the cycle) a version whose sub-workflows lead back to
        it, through any depth and across projects."""
        if rules.targets(spec):
            rules.cycle_problem((spec.project, spec.name), self.graph(spec))

    def projects_reached(self, spec: WorkflowSpec) -> set[str]:
        """Every project whose workflows a run of ``spec`` may start, through any depth
        (for the caller's permission check: applying or triggering it starts runs there)."""
        return {key[0] for key, _ in self.graph(spec).items()} - {spec.project}

    def check_caller(self, principal: Principal, spec: WorkflowSpec, doing: str) -> None:
        """A workflow whose sub-workflows start runs in other projects may be applied,
        triggered or backfilled only by a caller who may trigger runs in each of them
        (Forbidden, naming the project, otherwise)."""
        for project in sorted(self.projects_reached(spec)):
            if not principal.can(Action.OPERATE, project):
                raise Forbidden(
                    f"{principal.name} may not trigger runs in project {project}, where a "
                    f"sub-workflow of {spec.project}/{spec.name} starts one; {doing} needs "
                    "operator there"
                )

    def check_caller_latest(
        self, principal: Principal, project: str, name: str, doing: str
    ) -> None:
        """``check_caller`` for the workflow's latest version (what a new run would pin)."""
        latest = self.scheduler.catalog.get_version(project, name)
        self.check_caller(principal, self.scheduler.spec(project, name, latest.version), doing)

    def check_caller_run(self, principal: Principal, run: Run, doing: str) -> None:
        """``check_caller`` for the version a run pinned: rerunning a run, marking or
        force-starting its tasks (re)starts its sub-workflow tasks, and so runs in the
        projects they reach, as triggering it did; pausing, resuming or stopping it does the
        same to its child runs there."""
        self.check_caller(
            principal, self.scheduler.spec(run.project, run.workflow, run.version), doing
        )

    def check_caller_rerun(
        self,
        principal: Principal,
        run: Run,
        doing: str,
        checked: set[tuple[str, str, int]] | None = None,
    ) -> None:
        """``check_caller_run``, and the same for every child run ``run`` already made, at
        any depth and in any state: rerunning a run (marking, force-starting its tasks, a
        backfill's ``--rerun``) starts its sub-workflow tasks again, which rerun the child
        runs they made in the versions those pinned (and those theirs), which may reach
        projects the workflows' latest versions no longer do. A child run exists only for a
        sub-workflow task that was started: one read of the run's sub-workflow tasks, and
        one of each child run. Each pinned version is checked once (``checked``: those
        already checked, shared by a caller checking several runs). At most
        ``MAX_CHILD_RUNS_CHECKED`` child runs are read; a run with more is refused
        (Forbidden, saying so) to anyone but a superuser, who may act everywhere."""
        if principal.superuser:
            return
        s, seen = self.scheduler, set() if checked is None else checked
        todo, found = [(run, 0)], 0
        while todo:
            current, depth = todo.pop()
            key = (current.project, current.workflow, current.version)
            spec = s.spec(*key)
            if key not in seen:
                self.check_caller(principal, spec, doing)
                seen.add(key)
            if depth >= rules.MAX_DEPTH:
                continue
            # a task never started (attempt 0) made no child run
            for child in self._made_children(current, spec, lambda t: t.attempt > 0):
                found += 1
                if found > MAX_CHILD_RUNS_CHECKED:
                    raise Forbidden(
                        f"run {run.id} has more than {MAX_CHILD_RUNS_CHECKED} sub-workflow "
                        f"child runs to check for the projects they reach; {doing} needs a "
                        "superuser"
                    )
                todo.append((child, depth + 1))

    def check_caller_parents(self, principal: Principal, run: Run, doing: str) -> None:
        """Rerunning, marking, stopping or resuming a run may end it again; if it is a
        sub-workflow child whose parent's ended task follows it (``rules.follows``), that
        task takes the new end, which reopens the parent run (and so on up, while each
        task above follows its run): a caller must be operator where each of those parent
        runs is (Forbidden, naming the project, otherwise). Bounded reads: the links above
        ``run`` (at most ``MAX_DEPTH`` + 1), while each task follows."""
        if principal.superuser:
            return
        store, child = self.scheduler.store, run
        for parent_run_id, task_id in self._links(run):
            try:
                task = store.get_task(parent_run_id, task_id)
                parent = store.get_run(parent_run_id)
            except NotFound:
                return
            if not rules.follows(task):
                return
            if not principal.can(Action.OPERATE, parent.project):
                raise Forbidden(
                    f"{principal.name} may not operate runs in project {parent.project}, "
                    f"where task {task_id} of run {parent.id} takes the ends of its sub-workflow "
                    f"child run {child.id}; {doing} needs operator there"
                )
            child = parent

    def check_caller_children(self, principal: Principal, run: Run, doing: str) -> None:
        """Pausing, resuming or stopping a run does the same to its unfinished child runs,
        through any depth (and marking a running sub-workflow task stops its child): a
        caller must be operator where each of them is (Forbidden, naming the project,
        otherwise). ``check_caller_run`` reads the sub-workflows of the workflows' latest
        versions below the run's own; a child run that pinned an older version may reach
        further (``check_caller_rerun`` checks those)."""
        todo = [(run, 0)]
        while todo:
            parent, depth = todo.pop()
            if depth > rules.MAX_DEPTH:
                continue
            for child in self._children(parent.id, ACTIVE):
                if not principal.can(Action.OPERATE, child.project):
                    raise Forbidden(
                        f"{principal.name} may not operate runs in project {child.project}, "
                        f"where run {child.id} is a sub-workflow child of run {run.id}; "
                        f"{doing} needs operator there"
                    )
                todo.append((child, depth + 1))

    # ------------------------------------------------------------ run time
    def _links(self, run: Run) -> Iterator[tuple[str, str]]:
        """The (parent run, task) links above ``run``, nearest first: at most MAX_DEPTH + 1,
        ending where a parent run is gone."""
        for _ in range(rules.MAX_DEPTH + 1):
            link = rules.parent_of(run)
            if link is None:
                return
            yield link
            try:
                run = self.scheduler.store.get_run(link[0])
            except NotFound:
                return

    def depth(self, run: Run) -> int:
        """How many sub-workflow levels ``run`` is below its top-level run (bounded reads)."""
        return sum(1 for _ in self._links(run))

    def ancestors(self, run: Run) -> list[TaskInstance]:
        """The sub-workflow tasks that started ``run``: its parent's, its grandparent's, ...
        (bounded reads; empty for a top-level run). What they hold of a pool, ``run``'s
        tasks cannot have (``engine.pools.starved_by_ancestors``)."""
        found: list[TaskInstance] = []
        for link in self._links(run):
            try:
                found.append(self.scheduler.store.get_task(*link))
            except NotFound:
                break
        return found

    def start(
        self,
        spec: WorkflowSpec,
        run: Run,
        task: TaskInstance,
        upstream: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """A claimed (RUNNING) sub-workflow task: start, rerun or wait for its child run, or
        report the child's outcome if it has ended for this attempt already."""
        target = rules.targets(spec)[task.task_id]
        child_id = rules.child_run_id(run.id, task.task_id, target)
        s = self.scheduler
        try:
            child: Run | None = s.store.get_run(child_id)
        except NotFound:
            child = None
        step = rules.on_claim(task, child)
        if step.step is rules.Step.WAIT:
            return
        if step.step is rules.Step.REPORT:
            assert child is not None
            self._report(run.id, task, child)
            return
        if step.step is rules.Step.RERUN:
            assert child is not None
            self._rerun(run.id, task, child)  # keeps the child's params, as a retry does
            return
        if step.step is rules.Step.RERUN_ALL:
            assert child is not None
            try:  # as at the child's start: the task's params may read what upstream made anew
                variables = s.variables_for(spec, run, task.task_id)
                with s.rendering():
                    params = rules.child_params(spec, run, task.task_id, upstream, variables)
            except TemplateError as exc:
                self._fail(run.id, task, f"params: {exc}")
                return
            self._rerun(run.id, task, child, params=params)
            return
        problem = rules.check_depth(self.depth(run) + 1)
        if problem is not None:
            self._fail(run.id, task, problem)
            return
        try:
            variables = s.variables_for(spec, run, task.task_id)
            with s.rendering():
                params = rules.child_params(spec, run, task.task_id, upstream, variables)
            s.trigger(
                *target, params=params, logical_date=run.logical_date, run_id=child_id,
                trigger=TRIGGER, parent=rules.parent_link(run.id, task.task_id),
            )  # fmt: skip
        except TemplateError as exc:
            self._fail(run.id, task, f"params: {exc}")
        except StratoflowError as exc:
            self._fail(run.id, task, f"cannot start {target[0]}/{target[1]}: {exc}")

    def _rerun(
        self,
        run_id: str,
        task: TaskInstance,
        child: Run,
        *,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """Rerun the ended child run for this attempt of its parent's task: from its failed
        tasks (keeping its params), or with ``params`` whole (every task, with the params
        the parent's task renders now, written with the reset of its tasks). Conditional on
        the child's end as read, so of two callers deciding from the same read (the
        dispatch and a recovery) one reruns it and the other, finding it moved on, waits
        for its end like the first."""
        s = self.scheduler
        whole = params is not None
        try:
            s.rerun(child.id, all_tasks=whole, params=params, if_ended_at=child.ended_at)
        except Conflict as exc:
            try:
                now = s.store.get_run(child.id)
            except NotFound:
                now = child
            if now.state is not child.state or now.ended_at != child.ended_at:
                return  # rerun by the other caller: its end reports to this attempt
            self._fail(run_id, task, f"rerun of child run {child.id}: {exc}")
        except StratoflowError as exc:
            self._fail(run_id, task, f"rerun of child run {child.id}: {exc}")

    def _fail(self, run_id: str, task: TaskInstance, error: str) -> None:
        self._finish(run_id, task, rules.start_failed(error))

    def _finish(self, run_id: str, task: TaskInstance, result: AttemptResult) -> None:
        from stratoflow.service import Finished

        self.scheduler.on_finished([Finished(run_id, task.task_id, task.attempt, result)])
        self.scheduler._started_runs.append(run_id)  # what the task's end made ready

    def _result(self, child: Run) -> AttemptResult:
        """The parent task's outcome from ``child``'s end (its tasks read for their outputs
        or the one that failed)."""
        outputs: dict[str, Any] = {}
        failed: list[TaskInstance] = []
        if child.state is not RunState.STOPPED:
            tasks = self.scheduler.store.get_tasks(child.id)
            outputs = {t.task_id: t.outputs for t in tasks}
            failed = [t for t in tasks if t.state is TaskState.FAILED]
        return rules.child_result(
            child, outputs if child.state is RunState.SUCCEEDED else {}, failed
        )

    def _report(self, parent_run_id: str, task: TaskInstance, child: Run) -> None:
        self._finish(parent_run_id, task, self._result(child))

    def run_ended(self, run: Run) -> None:
        """A run ended: if it is a child, its parent's running task ends with it, if the end
        is this attempt's (a parent task no longer running that attempt, e.g. stopped or
        rerun since, ignores it); a parent's ended task that follows it takes it as its new
        outcome, if ``before_end`` has not (an end written by another path)."""
        link = rules.parent_of(run)
        if link is None:
            return
        parent_run_id, task_id = link
        try:
            task = self.scheduler.store.get_task(parent_run_id, task_id)
        except NotFound:
            log.warning("child run %s ended; its parent %s is gone", run.id, run.parent)
            return
        if task.state is TaskState.RUNNING:
            if rules.ended_for(task, run):
                self._report(parent_run_id, task, run)
        elif rules.takes_end(task, run):
            self._take_end(task, run)

    def followed(self, child: Run) -> bool:
        """Whether the parent's task of ``child`` has ended and follows it (one read): the
        child's next end is that task's new outcome (``Scheduler._end_run``)."""
        link = rules.parent_of(child)
        if link is None:
            return False
        try:
            return rules.follows(self.scheduler.store.get_task(*link))
        except NotFound:
            return False

    def before_end(self, child: Run) -> None:
        """``child`` is about to be written ended: if its parent's ended task follows it and
        this end is later than the one it took, the task takes it now, before the child's
        end is written (``Scheduler._end_run``). Whatever dies between the two, the child is
        still unfinished (every task of it ended), so the next delivery or recovery ends it
        again, through here again; the task takes an end once."""
        link = rules.parent_of(child)
        if link is None:
            return
        try:
            task = self.scheduler.store.get_task(*link)
        except NotFound:
            return
        if rules.takes_end(task, child):
            self._take_end(task, child)

    def _take_end(self, task: TaskInstance, child: Run) -> None:
        """The parent's ended ``task`` (as read) takes ``child``'s later end: as a mark of
        it, when its state changes (``rules.take_end``: its downstream decided again, an
        ended parent run reopened or ended anew, applied only while the task is as read);
        else only its new outputs or error. A task that moved meanwhile is read again and
        decided again, a few times."""
        s = self.scheduler
        result = self._result(child)
        for _ in range(TAKE_END_TRIES):
            if self._try_take_end(task, child, result):
                return
            try:
                task = s.store.get_task(task.run_id, task.task_id)
            except NotFound:
                return
            if not rules.takes_end(task, child):
                return  # taken meanwhile (another caller), or no longer following
        raise Conflict(
            f"run {task.run_id} kept changing while its task {task.task_id} took the new end "
            f"of child run {child.id}; the next delivery or recovery takes it"
        )

    def _try_take_end(self, task: TaskInstance, child: Run, result: AttemptResult) -> bool:
        """One decision of ``_take_end``, from ``task`` as read: whether it is done (taken,
        or nothing to take); False when the write was refused (the task or its run moved)."""
        from stratoflow.service import PlanRefused

        s = self.scheduler
        now = s.clock.now()
        if rules.retaken(task, result, now).state is task.state:
            decision = rules.same_state_write(task, result, now)
            return decision is None or s.store.apply(decision)
        run, spec = s._load(task.run_id)
        plan = rules.take_end(spec, run, s.store.get_tasks(run.id), task, result, now)
        try:
            after = s._apply(plan, run.state, run.ended_at)  # an ended run: that end
        except PlanRefused as refused:
            if refused.run_id != run.id:
                raise  # a run above it, whose own task took its end: not this plan
            return False  # the run or the task moved since they were read
        took = plan.tasks[task.task_id]
        log.info(
            "task %s of run %s takes the new end of its child run %s: %s (run %s)",
            task.task_id, run.id, child.id, took.state.value, after.state.value,
        )  # fmt: skip
        if took.state is TaskState.FAILED:  # as an attempt's failure says it
            s._emit("task.failed", after, task=took)
        if run.state.terminal and after.state is RunState.RUNNING:
            s._emit("run.started", after)  # an ended run made to run again, as a mark does
        s.made_ready(run.id)  # what its new end made ready
        return True

    # ------------------------------------------------------------ operations reach the child
    def _children(self, run_id: str, states: Sequence[RunState]) -> list[Run]:
        """The child runs of ``run_id``'s running sub-workflow tasks that are in ``states``."""
        s = self.scheduler
        run = s.store.get_run(run_id)
        running = self._made_children(run, s._run_spec(run), lambda t: t.state is TaskState.RUNNING)
        return [child for child in running if child.state in states]

    def _made_children(
        self, run: Run, spec: WorkflowSpec, tasks: Callable[[TaskInstance], bool]
    ) -> Iterator[Run]:
        """The child runs that the sub-workflow tasks of ``run`` (of version ``spec``)
        picked by ``tasks`` made (one read of those tasks, one of each child run)."""
        wanted = rules.targets(spec)
        if not wanted:
            return
        store = self.scheduler.store
        for ti in store.get_tasks(run.id, sorted(wanted)):
            if not tasks(ti):
                continue
            try:
                child = store.get_run(rules.child_run_id(run.id, ti.task_id, wanted[ti.task_id]))
            except NotFound:
                continue
            yield child

    def pause_children(self, run_id: str) -> None:
        """The parent was paused: pause its running children, marked as paused by it."""
        for child in self._children(run_id, [RunState.RUNNING]):
            try:
                self.scheduler.pause(child.id, by_parent=True)
            except Conflict:  # it moved meanwhile
                continue

    def resume_children(self, run_id: str) -> None:
        """The parent was resumed: resume the children its pause paused (not one an operator
        paused on its own)."""
        for child in self._children(run_id, [RunState.PAUSED]):
            if not child.paused_by_parent:
                continue
            try:
                self.scheduler.resume(child.id)
            except Conflict:
                continue

    def starts_paused(self, run: Run) -> bool:
        """Whether ``run``, leaving its queue, starts paused: a child whose parent was paused
        while it waited for a slot."""
        link = rules.parent_of(run)
        if link is None:
            return False
        try:
            parent: Run | None = self.scheduler.store.get_run(link[0])
        except NotFound:
            parent = None
        return rules.starts_paused(parent)

    def kill(self, spec: WorkflowSpec, ti: TaskInstance) -> bool:
        """Stop the child run of a sub-workflow task being killed (stopped, timed out, marked);
        False if ``ti`` is not a sub-workflow task (the dispatcher kills it)."""
        target = rules.targets(spec).get(ti.task_id)
        if target is None:
            return False
        self.scheduler._act(partial(self._stop, rules.child_run_id(ti.run_id, ti.task_id, target)))
        return True

    def _stop(self, child_id: str) -> None:
        try:
            child = self.scheduler.store.get_run(child_id)
            if not child.state.terminal:
                self.scheduler.stop(child_id)
        except (NotFound, Conflict):  # not started, or it ended meanwhile
            return

    # ------------------------------------------------------------ recovery
    def stop_orphans(self, runs: Sequence[Run]) -> None:
        """Stop the unfinished child runs among ``runs`` whose parent's task has ended: what a
        stop of the parent that died before it reached the child left running."""
        for run in runs:
            link = rules.parent_of(run)
            if link is None:
                continue
            try:
                task: TaskInstance | None = self.scheduler.store.get_task(*link)
            except NotFound:
                task = None
            if rules.orphaned(run, task):
                log.info("child run %s outlived its parent's task %s: stopping it", run.id, link)
                self._stop(run.id)

    def align(self, runs: Sequence[Run]) -> None:
        """Bring each unfinished child run among ``runs`` in line with its parent: pause the
        running child of a paused parent, resume the child a parent's pause paused once the
        parent runs again (what a pause or resume that died between the parent's write and
        the child's left undone)."""
        s = self.scheduler
        for run in runs:
            link = rules.parent_of(run)
            if link is None or run.state.terminal:
                continue
            try:
                parent: Run | None = s.store.get_run(link[0])
                task: TaskInstance | None = s.store.get_task(*link)
            except NotFound:
                parent = task = None
            step = rules.align(parent, task, run)
            try:
                if step is rules.Align.PAUSE:
                    log.info("child run %s runs while its parent %s is paused", run.id, link[0])
                    s.pause(run.id, by_parent=True)
                elif step is rules.Align.RESUME:
                    log.info("child run %s is paused while its parent %s runs", run.id, link[0])
                    s.resume(run.id)
            except Conflict:  # it moved meanwhile
                continue

    def recover(self, running: Sequence[TaskInstance]) -> list[TaskInstance]:
        """Split the running tasks: the sub-workflow ones are decided here again (start a
        child a crash kept from starting, report one that ended unheard); the others are
        returned for the dispatcher to recover."""
        s = self.scheduler
        others = []
        for ti in running:
            try:
                run = s.store.get_run(ti.run_id)
                spec = s._run_spec(run)
            except NotFound:
                others.append(ti)
                continue
            if not rules.is_subworkflow(spec, ti.task_id):
                others.append(ti)
                continue
            reads = spec.dag.reads[ti.task_id]
            upstream = (
                {t.task_id: t.outputs for t in s.store.get_tasks(run.id, sorted(reads))}
                if reads
                else {}
            )
            self.start(spec, run, ti, upstream)
        active = [RunState.QUEUED, RunState.RUNNING, RunState.PAUSED]
        unfinished = list(s.store.runs_in_states(active))
        self.stop_orphans(unfinished)
        self.align(unfinished)
        return others
