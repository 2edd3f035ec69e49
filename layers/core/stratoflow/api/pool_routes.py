"""``/pools``: set, list, view and delete pools; force-start a task waiting in one.

A project's pool is managed by the project's editors and seen by its viewers; a global pool
(no ``project``) is set and deleted by superusers only and listed to everyone. A pool's view
shows the running and waiting tasks of the projects the caller may read; of the others, only
how many there are (no project sees another's runs).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from stratoflow.api.models import RunIdPath, TaskIdPath
from stratoflow.auth import Action, Forbidden, Principal
from stratoflow.engine import TaskInstance
from stratoflow.engine.pools import Pool, pool_key
from stratoflow.errors import NotFound
from stratoflow.model._workflow import MAX_POOL_SLOTS, NAME_PATTERN
from stratoflow.service import Scheduler

Allow = Callable[[Action, str, str], Principal]
Record = Callable[..., None]
Responses = Callable[..., Any]
Caller = Callable[[], Principal]


class PoolSize(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # strict: `true` was read as 1
    slots: StrictInt = Field(ge=1, le=MAX_POOL_SLOTS, description="How many slots the pool has.")


class PoolView(BaseModel):
    name: str
    project: str | None = Field(description="The pool's project; null: a global pool.")
    slots: int
    used: int = Field(
        description="Slots held by running tasks (above `slots` after a force start)."
    )
    waiting: int | None = Field(default=None, description="Tasks in its queue (in the detail).")


class PoolSet(PoolView):
    warnings: list[str] = Field(
        default_factory=list,
        description="Tasks of the workflows using the pool (their latest versions) that need "
        "more slots than it has after this change: each fails when it becomes ready until "
        "the pool grows back or its `pool_slots` is lowered. The change is made all the same.",
    )


class PoolList(BaseModel):
    pools: list[PoolView]


class PoolTask(BaseModel):
    run_id: str
    task_id: str
    project: str
    workflow: str
    priority: int
    pool_slots: int
    started_at: datetime | None = None


class PoolDetail(PoolView):
    running_tasks: list[PoolTask]
    waiting_tasks: list[PoolTask] = Field(description="In the order they will be served.")
    hidden: int = Field(description="Running or waiting tasks of projects you cannot read.")


class ForceStarted(BaseModel):
    run_id: str
    task_id: str
    state: str
    attempt: int


NamePath = Annotated[str, Path(min_length=1, max_length=128, pattern=NAME_PATTERN)]
ProjectParam = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=128,
        pattern=NAME_PATTERN,
        description="The pool's project; absent: a global pool.",
    ),
]
SizeBody = Annotated[PoolSize, Body()]


def _view(pool: Pool, waiting: int | None = None) -> PoolView:
    return PoolView(
        name=pool.name, project=pool.scope or None, slots=pool.slots, used=pool.used,
        waiting=waiting,
    )  # fmt: skip


def register(
    app: APIGatewayRestResolver,
    scheduler: Scheduler,
    *,
    allow: Allow,
    caller: Caller,
    record: Record,
    changed: Callable[[], None],
    responses: Responses,
) -> None:
    """Add the routes to ``app`` (``create_app`` passes its permission check and audit log)."""

    def may_manage(project: str | None, name: str) -> None:
        if project is not None:
            allow(Action.EDIT, project, f"pool {name!r}")
        elif not caller().superuser:
            raise Forbidden(f"{caller().name} may not change global pools (superusers only)")
        else:  # through allow(), as every change: its audit intent is journalled before it
            allow(Action.ADMINISTER, "", f"pool {name!r}")

    @app.put(
        "/pools/<name>",
        summary="Create a pool or change its number of slots",
        tags=["pools"],
        responses=responses("The pool after the change", 400, 404, 415),
    )
    def put_pool(name: NamePath, body: SizeBody, project: ProjectParam = None) -> PoolSet:
        may_manage(project, name)
        before = scheduler.pool_store().get_pool(pool_key(project or "", name))
        pool = scheduler.set_pool(name, body.slots, project)
        changed()
        record("pool.set", f"pool/{pool.key}", project or "", slots=body.slots)
        # shrunk (or new, perhaps shadowing a global pool): say which tasks no longer fit
        shrunk = before is None or pool.slots < before.slots
        warnings = scheduler.outgrown_pool(pool) if shrunk else []
        return PoolSet(**_view(pool).model_dump(), warnings=warnings)

    @app.get(
        "/pools",
        summary="The global pools and the project's",
        tags=["pools"],
        responses=responses("The pools, by scope and name", 400, 404),
    )
    def list_pools(project: ProjectParam = None) -> PoolList:
        if project is not None:
            allow(Action.READ, project, f"project {project!r}")
        pools = scheduler.pool_store().list_pools(project)
        return PoolList(pools=[_view(p) for p in pools if p.scope in ("", project)])

    @app.get(
        "/pools/<name>",
        summary="A pool with its running and waiting tasks",
        tags=["pools"],
        responses=responses("The pool", 400, 404),
    )
    def get_pool(name: NamePath, project: ProjectParam = None) -> PoolDetail:
        if project is not None:
            allow(Action.READ, project, f"pool {name!r}")
        pool, running, waiting = scheduler.pool_view(pool_key(project or "", name))
        principal = caller()
        hidden = 0
        runs: dict[str, Any] = {}

        def visible(tasks: list[TaskInstance]) -> list[PoolTask]:
            nonlocal hidden
            out = []
            for t in tasks:
                if t.run_id not in runs:
                    runs[t.run_id] = scheduler.store.get_run(t.run_id)
                run = runs[t.run_id]
                if principal.role_in(run.project) is None:
                    hidden += 1
                    continue
                spec = scheduler.spec(run.project, run.workflow, run.version)
                out.append(
                    PoolTask(
                        run_id=t.run_id,
                        task_id=t.task_id,
                        project=run.project,
                        workflow=run.workflow,
                        priority=t.priority,
                        pool_slots=spec.workflow.tasks[t.task_id].pool_slots,
                        started_at=t.started_at,
                    )
                )
            return out

        shown_running, shown_waiting = visible(running), visible(waiting)
        return PoolDetail(
            **_view(pool, len(waiting)).model_dump(),
            running_tasks=shown_running,
            waiting_tasks=shown_waiting,
            hidden=hidden,
        )

    @app.delete(
        "/pools/<name>",
        summary="Delete a pool no task holds or waits for",
        tags=["pools"],
        responses=responses("The pool is gone", 400, 404, 409),
    )
    def delete_pool(name: NamePath, project: ProjectParam = None) -> PoolView:
        may_manage(project, name)
        pool = scheduler.pool_store().get_pool(pool_key(project or "", name))
        if pool is None:
            raise NotFound(f"pool {name!r} not found")
        scheduler.delete_pool(name, project)
        changed()
        record("pool.delete", f"pool/{pool.key}", project or "")
        return _view(pool)

    @app.post(
        "/runs/<run_id>/tasks/<task_id>/force-start",
        summary="Start a task waiting in a pool now, ahead of its queue and its free slots",
        tags=["pools"],
        responses=responses("The task, running", 400, 404, 409),
    )
    def force_start(run_id: RunIdPath, task_id: TaskIdPath) -> Response[ForceStarted]:
        try:
            run = scheduler.store.get_run(run_id)
        except NotFound:
            raise NotFound(f"run {run_id!r} not found") from None
        principal = allow(Action.OPERATE, run.project, f"run {run_id!r}")
        scheduler.store.get_task(run_id, task_id)
        scheduler.subworkflows.check_caller_rerun(principal, run, "force-starting its tasks")
        ti = scheduler.force_start(run_id, task_id)
        changed()
        record("task.force_start", f"run/{run_id}", run.project, task=task_id)
        return Response(
            status_code=HTTPStatus.OK.value,
            content_type=content_types.APPLICATION_JSON,
            body=ForceStarted(
                run_id=run_id, task_id=task_id, state=ti.state.value, attempt=ti.attempt
            ),
        )
