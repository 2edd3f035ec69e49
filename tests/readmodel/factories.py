"""Domain objects for read-model tests (plain values, no store involved)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stratoflow.engine import Run, RunState, TaskInstance, TaskState
from stratoflow.ports import Attempt, WorkflowVersion

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def version(
    name: str = "etl", project: str = "default", number: int = 1, **kw: Any
) -> WorkflowVersion:
    doc = {"name": name, "project": project, "description": f"{name} v{number}", "tasks": {}}
    return WorkflowVersion(
        project=project,
        name=name,
        version=number,
        digest=f"sha-{name}-{number}",
        document=kw.pop("document", doc),
        source=kw.pop("source", f"name: {name}\n# v{number}\n"),
        created_at=kw.pop("created_at", T0 + timedelta(minutes=number)),
        **kw,
    )


def run(
    rid: str = "r1",
    workflow: str = "etl",
    project: str = "default",
    state: RunState = RunState.RUNNING,
    minute: int = 0,
    **kw: Any,
) -> Run:
    return Run(
        id=rid,
        workflow=workflow,
        project=project,
        version=kw.pop("version", 1),
        state=state,
        params=kw.pop("params", {"region": "eu", "n": 3}),
        logical_date=kw.pop("logical_date", T0 + timedelta(days=minute)),
        created_at=kw.pop("created_at", T0 + timedelta(minutes=minute)),
        **kw,
    )


def task(
    rid: str = "r1", tid: str = "extract", state: TaskState = TaskState.WAITING, **kw: Any
) -> TaskInstance:
    return TaskInstance(run_id=rid, task_id=tid, state=state, **kw)


def attempt(
    rid: str = "r1", tid: str = "extract", number: int = 1, state: str = "running", **kw: Any
) -> Attempt:
    return Attempt(
        run_id=rid,
        task_id=tid,
        attempt=number,
        state=state,
        started_at=kw.pop("started_at", T0 + timedelta(seconds=number)),
        **kw,
    )
