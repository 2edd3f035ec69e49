"""The JSON shapes runs, tasks, attempts and workflows are shown in (API and CLI alike).

Views are bounded in size: an output value longer than ``MAX_OUTPUT_CHARS``, or beyond the
``MAX_OUTPUTS_CHARS`` a whole view may spend on outputs, is cut, ends with ``TRUNCATED`` and
is listed under ``outputs_truncated`` with its full size and the API path that pages it; an
error message is cut at ``MAX_ERROR_CHARS`` the same way. A 20 MB output no longer makes a
40 MB run view.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from stratoflow.engine import Run, TaskInstance, TaskState
from stratoflow.engine.subworkflow import parent_of
from stratoflow.model import effective_max_active_runs
from stratoflow.ports import Attempt, WorkflowVersion

MAX_OUTPUT_CHARS = 16 * 1024  # one output value, as a view shows it
MAX_OUTPUTS_CHARS = 512 * 1024  # every output value of one view together
MAX_ERROR_CHARS = 16 * 1024
TRUNCATED = " …[truncated]"


class OutputBudget:
    """What is left of the characters one view (a run, a task) may spend on outputs."""

    def __init__(self, total: int = MAX_OUTPUTS_CHARS) -> None:
        self.left = total


def output_text(value: Any) -> str:
    """An output value as text: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def output_path(run_id: str, task_id: str, key: str, attempt: int | None = None) -> str:
    """The API path that pages through one output value (each part one escaped segment; a
    '.' or '..' escaped too, which an HTTP client would resolve away)."""

    def segment(text: str) -> str:
        return "%2E" * len(text) if text in (".", "..") else quote(text, safe="")

    path = f"/runs/{segment(run_id)}/tasks/{segment(task_id)}/outputs/{segment(key)}"
    return path if attempt is None else f"{path}?attempt={attempt}"


def bounded_outputs(
    outputs: Mapping[str, Any], budget: OutputBudget, path: Callable[[str], str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The outputs a view shows, and ``{key: {"size", "shown", "path"}}`` for those cut."""
    if not outputs:  # most tasks of a big run: nothing to measure
        return {}, {}
    shown: dict[str, Any] = {}
    cut: dict[str, Any] = {}
    for key, value in outputs.items():
        text = output_text(value)
        room = max(0, min(MAX_OUTPUT_CHARS, budget.left))
        if len(text) <= room:
            shown[key] = value
            budget.left -= len(text)
            continue
        shown[key] = text[:room] + TRUNCATED
        budget.left -= room
        cut[key] = {"size": len(text.encode()), "shown": room, "path": path(key)}
    return shown, cut


def bounded_error(error: str | None) -> str | None:
    if error is None or len(error) <= MAX_ERROR_CHARS:
        return error
    return f"{error[:MAX_ERROR_CHARS]}{TRUNCATED} ({len(error)} characters in all)"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _duration(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def run_view(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow": run.workflow,
        "project": run.project,
        "version": run.version,
        "state": run.state.value,
        "trigger": run.trigger,
        "params": run.params,
        "logical_date": _iso(run.logical_date),
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "duration_seconds": _duration(run.started_at, run.ended_at),
        "tasks_total": run.n_tasks,
        "tasks_done": run.n_done,
        "tasks_failed": run.n_failed,
        "tasks_running": run.n_running,
        "error": bounded_error(run.error),
        "parent_run": parent[0] if (parent := parent_of(run)) else None,
        "parent_task": parent[1] if parent else None,
    }


def attempt_view(attempt: Attempt, budget: OutputBudget | None = None) -> dict[str, Any]:
    outputs, cut = bounded_outputs(
        attempt.outputs,
        budget or OutputBudget(),
        lambda key: output_path(attempt.run_id, attempt.task_id, key, attempt.attempt),
    )
    return {
        "attempt": attempt.attempt,
        "state": attempt.state,
        "started_at": _iso(attempt.started_at),
        "ended_at": _iso(attempt.ended_at),
        "duration_seconds": _duration(attempt.started_at, attempt.ended_at),
        "exit_code": attempt.exit_code,
        "error": bounded_error(attempt.error),
        "outputs": outputs,
        "outputs_truncated": cut,
    }


def with_running_attempt(task: TaskInstance, attempts: Iterable[Attempt]) -> list[Attempt]:
    """The task's attempts, plus its running one when the scheduler does not record attempt
    starts (``Scheduler(record_attempt_starts=False)``): the task row says all there is."""
    found = list(attempts)
    if (
        task.state is TaskState.RUNNING
        and task.started_at is not None
        and all(a.attempt != task.attempt for a in found)
    ):
        found.append(Attempt(task.run_id, task.task_id, task.attempt, "running", task.started_at))
    return found


def task_duration(task: TaskInstance, attempts: Iterable[Attempt]) -> float | None:
    """How long the task's last attempt ran: none for a task that has not run since its last
    reset (or whose attempt still runs). Not ``started_at`` to ``ended_at``: a mark ends the
    task at the mark, and an attempt of 3 ms marked 81 s later showed as 81 s. Without the
    attempt's record (a caller that passed none), the task's own times."""
    if task.started_at is None:
        return None
    last = next((a for a in attempts if a.attempt == task.attempt), None)
    if last is None or last.ended_at is None:
        # no record of its end (a task marked while it ran: killed at the mark), or running
        return _duration(task.started_at, task.ended_at)
    return _duration(last.started_at, last.ended_at)


def task_view(
    task: TaskInstance,
    attempts: Iterable[Attempt] = (),
    budget: OutputBudget | None = None,
    child_run: str | None = None,
) -> dict[str, Any]:
    """``child_run``: the run a sub-workflow task started (shown once it has been tried)."""
    attempts = with_running_attempt(task, attempts)
    budget = budget or OutputBudget()
    outputs, cut = bounded_outputs(
        task.outputs, budget, lambda key: output_path(task.run_id, task.task_id, key)
    )
    return {
        "state": task.state.value,
        "attempts": task.attempt,
        "outputs": outputs,
        "outputs_truncated": cut,
        "error": bounded_error(task.error),
        "started_at": _iso(task.started_at),
        "ended_at": _iso(task.ended_at),
        "duration_seconds": task_duration(task, attempts),
        "next_try_at": _iso(task.ready_at),
        "history": [attempt_view(a, budget) for a in attempts],
        "child_run": child_run if task.attempt > 0 else None,
    }


def run_detail(
    run: Run,
    tasks: Iterable[TaskInstance],
    attempts: Iterable[Attempt],
    order: Iterable[str] | None = None,
    children: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``{"run": {...}, "tasks": {"<task id>": {...}}}``, tasks in workflow order.
    ``children``: the child run of each sub-workflow task (``subworkflow.children``)."""
    children = children or {}
    by_task: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_task.setdefault(attempt.task_id, []).append(attempt)
    instances = {t.task_id: t for t in tasks}
    ids = [t for t in order if t in instances] if order is not None else sorted(instances)
    budget = OutputBudget()  # one for the whole run: its view stays bounded however many tasks
    return {
        "run": run_view(run),
        "tasks": {
            t: task_view(instances[t], by_task.get(t, []), budget, children.get(t)) for t in ids
        },
    }


def _effective_max_active_runs(document: Mapping[str, Any]) -> int | None:
    """The limit on a stored version's active runs (``Workflow.effective_max_active_runs``
    read from its document, without rebuilding the workflow)."""
    schedule = document.get("schedule")
    catchup = isinstance(schedule, Mapping) and schedule.get("catchup") is True
    limit = document.get("max_active_runs")
    return effective_max_active_runs(limit if isinstance(limit, int) else None, catchup)


MAX_SUMMARY_DESCRIPTION = 1000
"""Characters of a workflow's description in a summary (a listing, a version's header); the
whole text is the document's. A description may be most of a 2 MiB workflow: sent whole in
each summary, a page of workflows, or a version with its document and source, outgrew what
an API answer can be on AWS (a Lambda answer is at most 6 MB)."""


def summary_description(description: Any) -> Any:
    """The description as a summary shows it: cut to ``MAX_SUMMARY_DESCRIPTION`` characters
    and ended with '…' when longer (the document keeps it whole)."""
    if isinstance(description, str) and len(description) > MAX_SUMMARY_DESCRIPTION:
        return description[: MAX_SUMMARY_DESCRIPTION - 1] + "…"
    return description


def version_view(version: WorkflowVersion, *, full: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "project": version.project,
        "name": version.name,
        "version": version.version,
        "digest": version.digest,
        "created_at": _iso(version.created_at),
        "paused": version.paused,
        "schedule_error": version.schedule_error,
        "description": summary_description(version.document.get("description")),
        "schedule": version.document.get("schedule"),
        "tasks": len(version.document.get("tasks", {})),
        "effective_max_active_runs": _effective_max_active_runs(version.document),
    }
    if full:
        view["document"] = version.document
        view["source"] = version.source
    return view
