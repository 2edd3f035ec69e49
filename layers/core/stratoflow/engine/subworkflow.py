"""Sub-workflow tasks (``type: workflow``): the rules, written once for both runtimes.

A sub-workflow task starts a run of another workflow (the *child*) and takes its final
state; its outputs are the child's task outputs, keyed by child task. The child run's id is
derived from (parent run, task) alone, never from the attempt: a retry or a rerun of the
parent's task finds the same child run. A retry, or a rerun of the parent's failed tasks
that resets the task for its own failure, reruns the child from its failed tasks, as
DolphinScheduler's SubWorkflowLogicTask does; a rerun that asked to run the task again whole
(``--from``, a backfill's ``--rerun all``, a rerun of failed tasks upstream of a task that
had succeeded or been skipped: ``TaskInstance.rerun_child``) reruns all of the child, as
clearing an Airflow SubDAG task clears its inner tasks. Nothing here reads or writes: the
service reads the slice (the child run, if any), asks, and persists.

The child links back to its parent with :attr:`Run.parent` (``"<parent run id>/<task id>"``;
a task id holds no ``/``), which is how the child's end reaches the parent's task.

The task keeps the end of the child it took (``TaskInstance.child_end``) and follows the child
from then on: when the child, marked or rerun on its own, ends again later (DolphinScheduler's
"recover failed" of a sub-process instance, Airflow's clearing of a triggered DAG run), the
task takes that end as its new outcome, as a mark of it would (``take_end``: its downstream
decided again, an ended parent run reopened), or only its new outputs or error if its state
stays (``same_state_write``). An end it took already, an older one, or one of a child whose
task was rerun since (it no longer follows) is not taken (``takes_end``).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from stratoflow.engine._decision import Decision, TaskWrite
from stratoflow.engine._engine import Plan, set_end, template_context
from stratoflow.engine._states import (
    AttemptResult,
    AttemptStatus,
    Run,
    RunState,
    TaskInstance,
    TaskState,
)
from stratoflow.errors import InvalidInput, Problem
from stratoflow.model import WorkflowSpec, WorkflowTask
from stratoflow.templating import TemplateError, bounded

MAX_DEPTH = 8  # a run of a run of ... at most this many levels below a top-level run
MAX_GRAPH = 1_000  # workflows an apply-time cycle check may visit
MAX_OUTPUTS_BYTES = 200_000  # the child's outputs, as JSON, that the parent's task may hold
_NAME_IN_ID = 80  # characters of the child's name kept in its run id (ids stay <= 238)

WorkflowKey = tuple[str, str]  # (project, name)


def is_subworkflow(spec: WorkflowSpec, task_id: str) -> bool:
    return isinstance(spec.workflow.tasks.get(task_id), WorkflowTask)


def targets(spec: WorkflowSpec) -> dict[str, WorkflowKey]:
    """Task id -> (project, name) of the workflow it runs, for every sub-workflow task."""
    return {
        task_id: task.target(spec.project)
        for task_id, task in spec.workflow.tasks.items()
        if isinstance(task, WorkflowTask)
    }


def _label(key: WorkflowKey) -> str:
    return f"{key[0]}/{key[1]}"


# ---------------------------------------------------------------- apply time
def find_cycle(
    root: WorkflowKey, graph: Mapping[WorkflowKey, Iterable[WorkflowKey]]
) -> list[WorkflowKey] | None:
    """A path ``root -> ... -> root`` through sub-workflow edges, or None. ``graph`` holds the
    edges of every workflow reachable from ``root`` (a missing key has none)."""
    parent: dict[WorkflowKey, WorkflowKey | None] = {root: None}
    queue: deque[WorkflowKey] = deque([root])
    while queue:
        node = queue.popleft()
        for nxt in graph.get(node, ()):
            if nxt == root:
                path = [node]
                while (up := parent[path[-1]]) is not None:
                    path.append(up)
                return [*reversed(path), root]
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    return None


def cycle_problem(root: WorkflowKey, graph: Mapping[WorkflowKey, Iterable[WorkflowKey]]) -> None:
    """Raise ``InvalidInput`` naming the cycle if applying ``root`` (its edges in ``graph``)
    would let a run start itself again through sub-workflows."""
    cycle = find_cycle(root, graph)
    if cycle is not None:
        names = " -> ".join(_label(k) for k in cycle)
        raise InvalidInput([Problem("tasks", f"sub-workflow cycle: {names}")])


def graph_too_large(visited: int) -> None:
    if visited > MAX_GRAPH:
        raise InvalidInput(
            [Problem("tasks", f"sub-workflows reach more than {MAX_GRAPH} workflows")]
        )


# ---------------------------------------------------------------- run time
def child_run_id(parent_run_id: str, task_id: str, child: WorkflowKey) -> str:
    """Deterministic per (parent run, task): every attempt and rerun of the task finds the
    same child run. It starts with the child's project, like every run id, and is at most
    238 characters (a 128-character project, ".", 80 of the name, "-sub-", 24 hex digits):
    within the 300 every run id keeps, and short enough to name a local run's directory."""
    digest = hashlib.sha256(f"{parent_run_id}/{task_id}".encode()).hexdigest()[:24]
    project, name = child
    return f"{project}.{name[:_NAME_IN_ID]}-sub-{digest}"


def children(spec: WorkflowSpec, run_id: str) -> dict[str, str]:
    """Task id -> the child run id of every sub-workflow task of a run (for the views)."""
    return {task_id: child_run_id(run_id, task_id, key) for task_id, key in targets(spec).items()}


def parent_link(parent_run_id: str, task_id: str) -> str:
    return f"{parent_run_id}/{task_id}"


def parent_of(run: Run) -> tuple[str, str] | None:
    """(parent run id, task id) of a child run, or None for a top-level run."""
    if not run.parent:
        return None
    run_id, _, task_id = run.parent.rpartition("/")
    return run_id, task_id


def check_depth(depth: int) -> str | None:
    """``depth``: how many sub-workflow levels the child would be below its top-level run.
    An error message if that is too deep (a cycle that slipped past apply time, e.g. a
    version applied before the check existed), else None."""
    if depth > MAX_DEPTH:
        return f"sub-workflows nest more than {MAX_DEPTH} levels deep"
    return None


def child_params(
    spec: WorkflowSpec,
    run: Run,
    task_id: str,
    upstream_outputs: Mapping[str, Mapping[str, Any]],
    variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The task's own ``params``, rendered: the child run's param overrides (the parent's run
    params are not passed down unless the task names them). Raises ``TemplateError``."""
    task = spec.workflow.tasks[task_id]
    with bounded():  # template_context renders the task's params over the run's
        context = template_context(spec, run, task_id, upstream_outputs, variables)
    return {name: context["params"][name] for name in task.params}


class Step(StrEnum):
    START = "start"  # no child run yet: trigger it
    RERUN = "rerun"  # the child ended failed or stopped before this attempt: rerun its failures
    # the task was rerun whole: run every task of the ended child again, with the params
    # the task renders now (its upstream may have made new outputs)
    RERUN_ALL = "rerun_all"
    WAIT = "wait"  # the child is on its way: its end will report
    REPORT = "report"  # the child has ended for this attempt: report its outcome now


@dataclass(frozen=True)
class Next:
    step: Step
    result: AttemptResult | None = None


def on_claim(ti: TaskInstance, child: Run | None) -> Next:
    """What a claimed (RUNNING) sub-workflow task does with its child run as read.

    A child that ended since the attempt started ended for this attempt (its report was lost
    in a crash): report it now. A child that ended before this attempt started is an earlier
    attempt's: on the first attempt after a rerun that asked to run the task again whole
    (``ti.rerun_child``), every task of it runs again, whatever its end; otherwise a failed
    or stopped one is rerun from its failed tasks and a succeeded one is kept (its outputs
    stand, as a rerun of the parent's failed tasks keeps what succeeded apart from them)."""
    if child is None:
        return Next(Step.START)
    if not child.state.terminal:
        return Next(Step.WAIT)
    if ended_for(ti, child):
        return Next(Step.REPORT)
    if ti.rerun_child and ti.try_number == 1:
        return Next(Step.RERUN_ALL)
    if child.state is RunState.SUCCEEDED:
        return Next(Step.REPORT)
    return Next(Step.RERUN)


def ended_for(ti: TaskInstance, child: Run) -> bool:
    """Whether ``child`` (ended) ended for the running attempt ``ti`` of its parent's task:
    since the attempt started. An end from before it is an earlier attempt's (a late or
    repeated delivery of it is not this attempt's outcome)."""
    started = ti.started_at
    return started is not None and child.ended_at is not None and child.ended_at >= started


def orphaned(child: Run, parent_task: TaskInstance | None) -> bool:
    """Whether an unfinished child run has lost its reason to go on: its parent's task has
    ended (stopped, timed out, marked while the child ran) or is gone. A stop of the parent
    that died between the parent's write and the child's is completed by stopping such a
    child. A child whose parent's task ended with an earlier end of it, then marked or rerun
    on its own, is no orphan: the task follows it (``follows``), its end is the task's next
    outcome."""
    if child.state.terminal:
        return False
    if parent_task is None:
        return True
    return parent_task.state.terminal and not follows(parent_task)


def follows(task: TaskInstance | None) -> bool:
    """Whether an ended sub-workflow task follows its child run: it ended with an end of
    that child (``TaskInstance.child_end``), so the child's next end is its new outcome. A
    task that ended otherwise (stopped, timed out, or marked while its child ran: the child
    was stopped for it), or has not ended (its attempt takes the child's end), does not."""
    return task is not None and task.state.terminal and task.child_end is not None


def takes_end(task: TaskInstance, child: Run) -> bool:
    """Whether the parent's ended ``task`` takes ``child``'s end (as read, or about to be
    written) as its new outcome: it follows the child and this end is later than the one it
    took. An end it took already (a redelivery, a recovery), an older one (a late read), or
    any end of a child whose task was rerun since (reset: it follows nothing) is not."""
    return (
        follows(task)
        and task.child_end is not None
        and child.state.terminal
        and child.ended_at is not None
        and child.ended_at > task.child_end
    )


def retaken(task: TaskInstance, result: AttemptResult, now: datetime) -> TaskInstance:
    """``task`` with the outcome of its child's later end (``result``: ``child_result``):
    succeeded with the child's outputs, or failed (stopped) with no outputs and the error;
    ended ``now`` if its state changes, else its end stays."""
    if result.status is AttemptStatus.SUCCEEDED:
        state, outputs, error = TaskState.SUCCEEDED, dict(result.outputs), None
    else:
        stopped = result.status is AttemptStatus.STOPPED
        state, outputs, error = (
            TaskState.STOPPED if stopped else TaskState.FAILED,
            {},
            result.error,
        )
    return task.with_(
        state=state, outputs=outputs, error=error, child_end=result.child_end,
        ended_at=task.ended_at if state is task.state else now,
    )  # fmt: skip


def take_end(
    spec: WorkflowSpec,
    run: Run,
    tasks: Iterable[TaskInstance],
    task: TaskInstance,
    result: AttemptResult,
    now: datetime,
) -> Plan:
    """The plan of the parent's ``task`` (as read) taking its child's later end whose
    state differs from its own: as a mark of it (``engine.set_end``: what waits on it is
    decided again, an ended ``run`` runs again or ends anew), applied only while ``task`` is
    still as read (``Plan.if_unchanged``: once, and never from an older read)."""
    # decided from ``task`` as read, which the plan's condition names
    tasks = [task if t.task_id == task.task_id else t for t in tasks]
    plan = set_end(spec, run, tasks, retaken(task, result, now), now)
    # a run that goes on has every task of the plan in it already (``set_end``)
    plan.if_unchanged = plan.if_unchanged or (task,)
    return plan


def same_state_write(task: TaskInstance, result: AttemptResult, now: datetime) -> Decision | None:
    """The child's later end leaves ``task`` in its state: its new outputs or error alone
    (nothing downstream is decided again, the parent run keeps its state), conditional on
    the task's state and attempt; None when nothing of it changes (nothing to write)."""
    new = retaken(task, result, now)
    if new.state is not task.state:
        raise ValueError(f"task {task.task_id} would move to {new.state}: use take_end")
    if (new.outputs, new.error) == (task.outputs, task.error):
        return None
    return Decision(task.run_id, (TaskWrite(new, task.state, task.attempt),))


class Align(StrEnum):
    PAUSE = "pause"  # the parent is paused: pause the child with it
    RESUME = "resume"  # the parent's pause is over: undo the child's cascaded pause


def align(parent: Run | None, parent_task: TaskInstance | None, child: Run) -> Align | None:
    """How to bring a child run in line with its parent run (what a pause or resume of the
    parent that died between its own write and the child's left undone). Only a child whose
    parent's task still runs is concerned (``orphaned`` handles the others); a child an
    operator paused (``paused_by_parent`` false) stays paused."""
    if parent is None or parent_task is None or parent_task.state is not TaskState.RUNNING:
        return None
    if parent.state is RunState.PAUSED and child.state is RunState.RUNNING:
        return Align.PAUSE
    if parent.state is RunState.RUNNING and child.state is RunState.PAUSED:
        return Align.RESUME if child.paused_by_parent else None
    return None


def starts_paused(parent: Run | None) -> bool:
    """Whether a child run leaving its queue starts paused: its parent was paused while it
    waited (its ``max_active_runs`` full); the parent's resume then resumes it."""
    return parent is not None and parent.state is RunState.PAUSED


def child_result(
    child: Run, outputs: Mapping[str, Mapping[str, Any]], failed: Iterable[TaskInstance] = ()
) -> AttemptResult:
    """The parent task's attempt result from its child's end. ``outputs``: the child's task
    outputs (task id -> outputs) when it succeeded; ``failed``: its failed tasks, named in
    the error when it failed."""
    end = child.ended_at  # the task keeps it: it follows the child from then on
    if child.state is RunState.SUCCEEDED:
        kept = {t: dict(o) for t, o in outputs.items() if o}
        size = len(json.dumps(kept, default=str))
        if size > MAX_OUTPUTS_BYTES:
            return AttemptResult(
                AttemptStatus.FAILED,
                error=f"child run {child.id} succeeded, but its outputs are {size} bytes as JSON "
                f"(at most {MAX_OUTPUTS_BYTES})",
                retryable=False,
                child_end=end,
            )
        return AttemptResult(AttemptStatus.SUCCEEDED, kept, child_end=end)
    if child.state is RunState.STOPPED:
        return AttemptResult(
            AttemptStatus.STOPPED, error=f"child run {child.id} was stopped", child_end=end
        )
    first = next(iter(failed), None)
    if child.error:
        reason = f": {child.error}"
    elif first is not None:
        reason = f": task {first.task_id} failed" + (f" ({first.error})" if first.error else "")
    else:
        reason = ""
    return AttemptResult(
        AttemptStatus.FAILED, error=f"child run {child.id} failed{reason}"[:1000], child_end=end
    )


def start_failed(error: str) -> AttemptResult:
    """The child could not be started (unknown workflow, bad params, too deep): the task
    fails without a retry, since trying again cannot help."""
    return AttemptResult(AttemptStatus.FAILED, error=error[:1000], retryable=False)


__all__ = [
    "MAX_DEPTH",
    "MAX_GRAPH",
    "Align",
    "Next",
    "Step",
    "TemplateError",
    "align",
    "check_depth",
    "child_params",
    "child_result",
    "child_run_id",
    "children",
    "cycle_problem",
    "ended_for",
    "find_cycle",
    "follows",
    "graph_too_large",
    "is_subworkflow",
    "on_claim",
    "orphaned",
    "parent_link",
    "parent_of",
    "retaken",
    "same_state_write",
    "start_failed",
    "starts_paused",
    "take_end",
    "takes_end",
    "targets",
]
