"""The JSON shapes runs, tasks, attempts and workflows are shown in (API and CLI alike)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from stratoflow.engine import Run, TaskInstance, TaskState
from stratoflow.ports import Attempt, WorkflowVersion


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
        "error": run.error,
    }


def attempt_view(attempt: Attempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "state": attempt.state,
        "started_at": _iso(attempt.started_at),
        "ended_at": _iso(attempt.ended_at),
        "duration_seconds": _duration(attempt.started_at, attempt.ended_at),
        "exit_code": attempt.exit_code,
        "error": attempt.error,
        "outputs": attempt.outputs,
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


def task_view(task: TaskInstance, attempts: Iterable[Attempt] = ()) -> dict[str, Any]:
    attempts = with_running_attempt(task, attempts)
    return {
        "state": task.state.value,
        "attempts": task.attempt,
        "outputs": task.outputs,
        "error": task.error,
        "started_at": _iso(task.started_at),
        "ended_at": _iso(task.ended_at),
        "duration_seconds": _duration(task.started_at, task.ended_at),
        "next_try_at": _iso(task.ready_at),
        "history": [attempt_view(a) for a in attempts],
    }


def run_detail(
    run: Run,
    tasks: Iterable[TaskInstance],
    attempts: Iterable[Attempt],
    order: Iterable[str] | None = None,
) -> dict[str, Any]:
    """``{"run": {...}, "tasks": {"<task id>": {...}}}``, tasks in workflow order."""
    by_task: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_task.setdefault(attempt.task_id, []).append(attempt)
    instances = {t.task_id: t for t in tasks}
    ids = [t for t in order if t in instances] if order is not None else sorted(instances)
    return {
        "run": run_view(run),
        "tasks": {t: task_view(instances[t], by_task.get(t, [])) for t in ids},
    }


def version_view(version: WorkflowVersion, *, full: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "project": version.project,
        "name": version.name,
        "version": version.version,
        "digest": version.digest,
        "created_at": _iso(version.created_at),
        "paused": version.paused,
        "schedule_error": version.schedule_error,
        "description": version.document.get("description"),
        "schedule": version.document.get("schedule"),
        "tasks": len(version.document.get("tasks", {})),
    }
    if full:
        view["document"] = version.document
        view["source"] = version.source
    return view
