"""The backfill routes of the REST API (registered by ``create_app``): create a backfill of a
workflow, list and show backfills (progress by date), pause, resume and cancel one."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from stratoflow.api.models import BackfillIdPath, WorkflowNamePath
from stratoflow.auth import Action, Principal
from stratoflow.engine.backfill import (
    MAX_BACKFILL_DATES,
    MAX_BACKFILL_PARALLEL,
    Backfill,
    BackfillState,
    DateState,
    Order,
    Rerun,
)
from stratoflow.engine.backfill import Action as DateAction
from stratoflow.errors import NotFound
from stratoflow.service import Scheduler

MAX_PARAMS = 100
MOMENT_CHARS = 40  # 2026-01-01T00:00:00.000000+05:30 is 32


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str | None = Field(
        default=None, min_length=1, max_length=MOMENT_CHARS,
        description="First logical date, inclusive: YYYY-MM-DD (00:00 in the schedule's time "
        "zone) or an ISO-8601 date-time (without an offset: wall time in that zone). No "
        "logical date may be after now (400: the schedule runs those).",
    )  # fmt: skip
    end: str | None = Field(
        default=None, min_length=1, max_length=MOMENT_CHARS,
        description="Last logical date, inclusive (YYYY-MM-DD: through the end of that day).",
    )  # fmt: skip
    dates: list[Annotated[str, Field(min_length=1, max_length=MOMENT_CHARS)]] | None = Field(
        default=None, min_length=1, max_length=MAX_BACKFILL_DATES,
        description="Instead of start/end: these days (every time the schedule fires on each) "
        "or these exact date-times.",
    )  # fmt: skip
    parallel: StrictInt = Field(  # strict: `true` was read as 1
        default=1, ge=1, le=MAX_BACKFILL_PARALLEL,
        description="Lanes: runs going at once (each lane takes the next date when its run "
        "succeeded; a failure stops its lane). Runs still respect `max_active_runs`.",
    )  # fmt: skip
    order: Literal["asc", "desc"] = "asc"
    rerun: Literal["none", "failed", "all"] = Field(
        default="none",
        description="Dates that already have a run: keep it (`none`; an active one is waited "
        "for), rerun its failed tasks (`failed`), or run it again whole (`all`).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, max_length=MAX_PARAMS,
        description="Overrides of the workflow's declared params, for every run it makes. A "
        "rerun keeps its run's params: with `rerun` `failed` or `all`, values that differ from "
        "those of a date's existing run are refused (400, naming the dates).",
    )  # fmt: skip
    dependents: bool = Field(
        default=False,
        description="Also backfill every workflow whose dependency tasks wait on this one "
        "(transitively), among the projects the caller may trigger, each once (a diamond "
        "makes one run per date), each on its own schedule's dates in the range. Each gets "
        "its own backfill, listed under `dependents`; they start at once (a downstream run's "
        "dependency task waits for its upstream runs).",
    )  # fmt: skip


class _View(BaseModel):
    model_config = ConfigDict(extra="allow")


class BackfillDateView(_View):
    logical_date: str
    run_id: str
    state: str
    lane: int | None = None
    action: str | None = None
    run_state: str | None = None
    error: str | None = None
    # the workflow version its run pins once a lane took the date: the backfill's `version`
    # for a run it made; a run it reran, waited for or kept goes on under its own
    version: int | None = None


class BackfillView(_View):
    id: str
    project: str
    workflow: str
    version: int
    state: str
    parallel: int
    order: str
    rerun: str
    params: dict[str, Any]
    counts: dict[str, int]
    created_at: str
    updated_at: str | None = None
    ended_at: str | None = None
    created_by: str | None = None
    parent: str | None = None
    dates: list[BackfillDateView] | None = None
    dependents: list[Any] | None = None  # ids in a list; backfill views (with dates) when shown
    # pause, resume and cancel: the backfills the operation changed (this one first if it
    # did; a parent whose own dates are done is not, while its dependents still are)
    reached: list[str] | None = None


class BackfillList(_View):
    backfills: list[BackfillView]


# pause, resume or cancel: (backfill id, may operate a project, ids reached) -> the backfill
Operation = Callable[[str, Callable[[str], bool], list[str]], Backfill]

BackfillBody = Annotated[BackfillRequest, Body()]
BackfillProjectQuery = Annotated[
    str, Query(min_length=1, max_length=200, description="The workflow's project.")
]
BackfillWorkflowQuery = Annotated[str | None, Query(min_length=1, max_length=200)]
BackfillLimitQuery = Annotated[int, Query(ge=1, le=200, description="At most this many.")]


def backfill_view(backfill: Backfill, *, dates: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": backfill.id, "project": backfill.project, "workflow": backfill.workflow,
        "version": backfill.version, "state": backfill.state.value,
        "parallel": backfill.parallel, "order": backfill.order.value,
        "rerun": backfill.rerun.value, "params": backfill.params, "counts": backfill.counts(),
        "created_at": backfill.created_at.isoformat(),
        "updated_at": backfill.updated_at.isoformat() if backfill.updated_at else None,
        "ended_at": backfill.ended_at.isoformat() if backfill.ended_at else None,
        "created_by": backfill.created_by, "parent": backfill.parent,
        "dependents": list(backfill.dependents),
    }  # fmt: skip
    if dates:
        view["dates"] = [
            {
                "logical_date": d.logical_date.isoformat(), "run_id": d.run_id,
                "state": d.state.value, "lane": d.lane,
                "action": d.action.value if d.action else None,
                "run_state": d.run_state.value if d.run_state else None, "error": d.error,
                "version": d.version,
            }
            for d in backfill.dates
        ]  # fmt: skip
    return view


def _in_project(backfill_ids: list[str], project: str) -> list[str]:
    """The ids of ``project``'s backfills among ``backfill_ids`` (an id starts with its
    project): an audit line is shown to its project's admins, who may have no role in the
    other projects a dependent-mode backfill reached, and an id names their workflow."""
    return [b for b in backfill_ids if b.startswith(f"{project}.")]


def _other_projects(backfill_ids: list[str], project: str) -> list[str]:
    """The projects other than ``project`` whose backfills are among ``backfill_ids``."""
    return sorted({b.split(".", 1)[0] for b in backfill_ids} - {project})


def register_backfills(
    app: APIGatewayRestResolver,
    scheduler: Scheduler,
    *,
    allow: Callable[[Action, str, str], Principal],
    record: Callable[..., None],
    record_also: Callable[..., None],
    changed: Callable[[], None],
    responses: Callable[..., dict[int, OpenAPIResponse]],
) -> None:
    backfills = scheduler.backfills
    subworkflows = scheduler.subworkflows

    def backfill_for(backfill_id: str, action: Action) -> Backfill:
        """Like a run, a backfill of a project the caller has no role in reads as absent."""
        try:
            backfill = backfills.get(backfill_id)
        except NotFound:
            raise NotFound(f"backfill {backfill_id!r} not found") from None
        allow(action, backfill.project, f"backfill {backfill_id!r}")
        return backfill

    @app.post(
        "/workflows/<name>/backfills",
        summary="Backfill a workflow: one run per logical date its schedule fires in a range",
        tags=["backfills"],
        responses=responses(
            "Never (a backfill is always new)",
            400,
            404,
            415,
            created="The backfill, its first dates taken",
        ),
    )
    def create_backfill(
        name: WorkflowNamePath, body: BackfillBody, project: BackfillProjectQuery = "default"
    ) -> Response[BackfillView]:
        principal = allow(Action.OPERATE, project, f"workflow {name!r} in project {project!r}")
        scheduler.subworkflows.check_caller_latest(principal, project, name, "backfilling it")
        checked: set[tuple[str, str, int]] = set()  # the pinned versions checked (once each)
        made = backfills.create(
            project, name, start=body.start, end=body.end, dates=body.dates or (),
            parallel=body.parallel, order=Order(body.order), rerun=Rerun(body.rerun),
            params=body.params, created_by=principal.name, dependents=body.dependents,
            may_trigger=lambda p: principal.can(Action.OPERATE, p),
            may_rerun=lambda run: scheduler.subworkflows.check_caller_rerun(
                principal, run, "backfilling it with --rerun", checked
            ),
        )  # fmt: skip
        changed()
        group = backfills.group(made)
        included = [c.id for c in group]
        for other in _other_projects(included, project):  # their admins see their own log
            record_also(
                "backfill.create", f"backfill/{made.id}", other,
                dependents=_in_project(included, other),
            )  # fmt: skip
        record(
            "backfill.create", f"backfill/{made.id}", project, workflow=name,
            dates=len(made.dates), parallel=made.parallel, rerun=made.rerun.value,
            dependents=_in_project(included, project),
        )  # fmt: skip
        return Response(
            status_code=HTTPStatus.CREATED.value,
            content_type=content_types.APPLICATION_JSON,
            body=BackfillView.model_validate(group_view(made, group, principal)),
        )

    def group_view(
        backfill: Backfill, group: list[Backfill], principal: Principal
    ) -> dict[str, Any]:
        """The backfill with its dates and, for dependent mode, the backfill of each workflow
        it included (with their dates) that the caller may see: progress by workflow and date."""
        view = backfill_view(backfill)
        if backfill.dependents:
            view["dependents"] = [
                backfill_view(c) for c in group if principal.role_in(c.project) is not None
            ]
        return view

    @app.get(
        "/backfills",
        summary="The project's backfills, newest first",
        tags=["backfills"],
        responses=responses("The backfills (counts by date state; no dates)", 400),
    )
    def list_backfills(
        project: BackfillProjectQuery = "default",
        workflow: BackfillWorkflowQuery = None,
        limit: BackfillLimitQuery = 50,
    ) -> BackfillList:
        allow(Action.READ, project, f"project {project!r}")
        found = backfills.list_backfills(project, workflow, limit)
        return BackfillList.model_validate(
            {"backfills": [backfill_view(b, dates=False) for b in found]}
        )

    @app.get(
        "/backfills/<backfill_id>",
        summary="A backfill and the progress of each of its dates",
        tags=["backfills"],
        responses=responses("The backfill with its dates", 404),
    )
    def get_backfill(backfill_id: BackfillIdPath) -> BackfillView:
        backfill = backfill_for(backfill_id, Action.READ)
        principal = allow(Action.READ, backfill.project, f"backfill {backfill_id!r}")
        view = group_view(backfill, backfills.group(backfill), principal)
        return BackfillView.model_validate(view)

    def check_reach(principal: Principal, backfill: Backfill, op: str) -> None:
        """Resuming a backfill starts runs of its version; cancelling one stops the runs it
        made or reran (each under the version it pinned), and so their child runs: like
        triggering them, it needs operator where their sub-workflows reach (Forbidden,
        naming the project); the same for each included backfill the operation reaches."""
        doing = "resuming" if op == "resume" else "cancelling"
        for b in [backfill, *backfills.group(backfill)]:
            if b is not backfill and not principal.can(Action.OPERATE, b.project):
                continue  # the operation leaves it alone
            if (b.state is not BackfillState.PAUSED) if op == "resume" else b.state.terminal:
                continue  # nor one that cannot take it (a parent whose own dates are done)
            what = f"{doing} backfill {b.id}"
            subworkflows.check_caller(
                principal, scheduler.spec(b.project, b.workflow, b.version), what
            )
            if op != "cancel":
                continue
            for d in b.dates:  # the runs a cancel stops (at most its lanes')
                if d.state is not DateState.RUNNING or d.action is DateAction.ADOPT:
                    continue
                try:
                    run = scheduler.store.get_run(d.run_id)
                except NotFound:
                    continue
                subworkflows.check_caller_run(principal, run, what)
                subworkflows.check_caller_children(principal, run, what)

    def operation(op: str, summary: str, act: Operation) -> None:
        def handler(backfill_id: BackfillIdPath) -> BackfillView:
            before = backfill_for(backfill_id, Action.OPERATE)
            project = before.project
            principal = allow(Action.OPERATE, project, f"backfill {backfill_id!r}")
            if op != "pause":  # pausing only holds runs back
                check_reach(principal, before, op)
            # dependent mode: it reaches the included backfills of projects the caller
            # operates, also once this one's own dates are done (409 only if none took it)
            reached: list[str] = []
            after = act(backfill_id, lambda p: principal.can(Action.OPERATE, p), reached)
            changed()
            # one entry per request (its id is the request's): the backfills it reached in it
            others = [b for b in reached if b != backfill_id]
            for other in _other_projects(others, project):  # their admins see their own log
                record_also(
                    f"backfill.{op}", f"backfill/{backfill_id}", other,
                    dependents=_in_project(others, other),
                )  # fmt: skip
            dependents = _in_project(others, project)
            details = {"dependents": dependents} if dependents else {}
            record(f"backfill.{op}", f"backfill/{backfill_id}", project, **details)
            view = group_view(after, backfills.group(after), principal)
            view["reached"] = reached
            return BackfillView.model_validate(view)

        handler.__name__ = f"{op}_backfill"
        app.post(
            f"/backfills/<backfill_id>/{op}",
            summary=summary,
            tags=["backfills"],
            responses=responses(
                f"The backfill, {op} applied to it or to backfills it included (`reached`)",
                404,
                409,
            ),
        )(handler)

    operation("pause", "Pause a backfill: no lane takes a new date", backfills.pause)
    operation("resume", "Resume a paused backfill", backfills.resume)
    operation(
        "cancel", "Cancel a backfill and stop the runs it made that still go on", backfills.cancel
    )
