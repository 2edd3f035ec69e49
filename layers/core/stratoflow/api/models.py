"""Request and response models of the REST API (they are also its OpenAPI schema).

Request models forbid unknown fields, so a misspelt field is a 422 that names it instead of
being ignored. Response models mirror ``stratoflow.views`` (the shapes the CLI prints too) and
allow extra fields, so a field added to a view reaches clients without a change here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel, ConfigDict, Field

from stratoflow.model import MAX_DOCUMENT_BYTES

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
MAX_SOURCE_CHARS = MAX_DOCUMENT_BYTES  # the loader also counts its UTF-8 bytes

# The ids and names a request's path gives are bounded before any work (a 422 naming the
# parameter and its limit, as every field the schema bounds), on both runtimes alike: on AWS
# each is part of a DynamoDB key, ``RUN#<run id>``, ``BACKFILL#<id>`` and
# ``WF#<project>#<name>`` partition keys (at most 2,048 bytes) and ``T#<task id>`` sort keys
# (at most 1,024); DynamoDB refuses a longer key with a ValidationException that nothing
# maps (a 500), where the local store said 404. In 4-byte characters too, the bounds stay
# under those limits.
MAX_NAME_CHARS = 128  # a workflow's or a task's name (the model's rule)
# a run's or a backfill's id: the longest Stratoflow makes is a backfill's (289 characters
# with a project and a workflow name of 128), then a scheduled run's (284)
MAX_ID_CHARS = 300
RunIdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS, description="A run's id.")]
BackfillIdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_ID_CHARS, description="A backfill's id.")
]
TaskIdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_NAME_CHARS, description="A task's id.")
]
WorkflowNamePath = Annotated[
    str, Path(min_length=1, max_length=MAX_NAME_CHARS, description="The workflow's name.")
]


# ------------------------------------------------------------------ requests
class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ApplyRequest(_Request):
    """A workflow definition to store; an unchanged definition is not a new version."""

    source: str = Field(
        min_length=1,
        max_length=MAX_SOURCE_CHARS,
        description="The workflow as YAML text (workflow format version 1).",
    )


class TriggerRequest(_Request):
    params: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the workflow's declared params."
    )
    logical_date: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "The run's logical date; default: now. A date (`2026-01-05`: 00:00 of that day) or "
            "an ISO-8601 date-time; without an offset it is wall time in the workflow "
            "schedule's time zone (UTC without a schedule), as a backfill's `start` is read; "
            "with one (`Z`, `+08:00`) it is that instant. A date later than now (more than 60 "
            "seconds ahead, for clock skew) is refused (422), as is one that is not a date."
        ),
    )
    run_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=RUN_ID_PATTERN,
        description=(
            "Idempotency key, scoped to the project and workflow: the run's id is "
            "`<project>.<workflow>.<run_id>`, and triggering with a key already used for this "
            "workflow returns that run (200) instead of creating one (201) when the request "
            "asks for the same params and logical date; otherwise it is refused (409, naming "
            "what differs) and nothing changes. Keys in the "
            "scheduled runs' form (`...scheduled-<YYYYmmddTHHMMSS>Z`) are refused (400)."
        ),
    )


class RerunRequest(_Request):
    from_: str | None = Field(
        default=None,
        alias="from",
        min_length=1,
        max_length=200,
        description="Rerun this task and everything downstream; null reruns failed tasks "
        "(and stopped or unrun ones) and everything downstream of them.",
    )


class MarkRequest(_Request):
    state: Literal["succeeded", "skipped", "failed"]


# ------------------------------------------------------------------ responses
class _View(BaseModel):
    model_config = ConfigDict(extra="allow")


class Health(_View):
    status: str


class ProblemView(_View):
    path: str
    message: str
    line: int | None = None


class ErrorView(_View):
    error: str = Field(
        description="invalid_input | invalid_request | not_found | conflict | internal"
    )
    message: str
    problems: list[ProblemView] = Field(default_factory=list)


class VersionSummary(_View):
    project: str
    name: str
    version: int
    digest: str
    created_at: str | None
    paused: bool
    schedule_error: str | None = Field(
        default=None,
        description="Why the schedule cannot fire (the scheduler skips it until it can); "
        "null when it fires normally.",
    )
    description: str | None = None
    schedule: dict[str, Any] | None = None
    tasks: int
    effective_max_active_runs: int | None = Field(
        default=None,
        description="At most this many runs of the workflow at once (null: no limit): its "
        "`max_active_runs`, else 16 when its schedule has `catchup: true` (Airflow's "
        "`max_active_runs_per_dag` default), so that catching up does not start every "
        "missed run at once.",
    )


class LastRun(_View):
    id: str
    state: str
    created_at: str | None
    ended_at: str | None


class WorkflowSummary(VersionSummary):
    """A workflow in the list: its latest version, how its last run went, when it fires next."""

    last_run: LastRun | None = Field(default=None, description="The newest run, if any.")
    next_run_at: str | None = Field(
        default=None,
        description="When the schedule fires next (ISO-8601, UTC); null if unscheduled or paused.",
    )


class VersionDetail(VersionSummary):
    document: dict[str, Any]
    source: str
    layout: str | None = Field(
        default=None,
        description=(
            "The URL (relative to the API) of the layout stored for this version's graph, as "
            "in a run's states view (None: none is kept here, or not named in this answer)."
        ),
    )


class AppliedVersion(VersionDetail):
    created: bool


class WorkflowList(_View):
    workflows: list[WorkflowSummary]
    next: str | None = Field(
        default=None, description="Pass as ?after= to get the next page; null on the last."
    )


class VersionList(_View):
    versions: list[VersionSummary]
    next: int | None = Field(
        default=None, description="Pass as ?before= to get the next (older) page."
    )


class VersionDiff(_View):
    project: str
    name: str
    from_: int = Field(alias="from", description="The older version compared.")
    to: int = Field(description="The newer version compared.")
    changed: bool = Field(description="Whether the two sources differ at all.")
    diff: str = Field(description="Unified diff of the YAML sources (empty when unchanged).")


class RunView(_View):
    id: str
    workflow: str
    project: str
    version: int
    state: str
    trigger: str
    params: dict[str, Any]
    logical_date: str | None
    created_at: str | None
    started_at: str | None
    ended_at: str | None
    duration_seconds: float | None
    tasks_total: int
    tasks_done: int
    tasks_failed: int
    tasks_running: int
    error: str | None
    parent_run: str | None = Field(
        default=None, description="A sub-workflow's run: the run whose task started it."
    )
    parent_task: str | None = Field(
        default=None, description="A sub-workflow's run: the task of `parent_run` it is."
    )


class TruncatedOutput(_View):
    size: int = Field(description="The whole value's size in bytes (UTF-8; JSON if not text).")
    shown: int = Field(description="How many characters of it the view shows.")
    path: str = Field(description="GET it (paged by `offset`/`limit`) for the whole value.")


_TRUNCATED_OUTPUTS = (
    "Outputs too large to show whole: their value in `outputs` is cut and ends with "
    "` …[truncated]`; here, by key, the full size and the path that pages it."
)


class AttemptView(_View):
    attempt: int
    state: str
    started_at: str | None
    ended_at: str | None
    duration_seconds: float | None
    exit_code: int | None
    error: str | None
    outputs: dict[str, Any]
    outputs_truncated: dict[str, TruncatedOutput] = Field(
        default_factory=dict, description=_TRUNCATED_OUTPUTS
    )


class TaskView(_View):
    state: str
    attempts: int
    outputs: dict[str, Any]
    outputs_truncated: dict[str, TruncatedOutput] = Field(
        default_factory=dict, description=_TRUNCATED_OUTPUTS
    )
    error: str | None
    started_at: str | None = Field(
        description="When its last attempt started (none once a rerun has reset it)."
    )
    ended_at: str | None = Field(
        description="When it reached its state: a marked task's is the mark's time."
    )
    duration_seconds: float | None = Field(
        description=(
            "How long its last attempt ran (that attempt's `duration_seconds`), not "
            "`started_at` to `ended_at`; none for a task that has not run since it was last "
            "reset, or whose attempt is running."
        )
    )
    next_try_at: str | None
    history: list[AttemptView]
    child_run: str | None = Field(
        default=None,
        description="A sub-workflow task (`type: workflow`): the id of the run it started.",
    )


class RunDetail(_View):
    """A run and its tasks. With ``since``, ``full`` is false and ``tasks`` holds only the
    tasks changed after that revision: put them over the view you have (a task's entry is
    always whole) and keep ``revision`` for the next ``since``."""

    run: RunView
    tasks: dict[str, TaskView]
    revision: int | None = Field(
        default=None,
        description="The run's revision this view includes (none: the store keeps none).",
    )
    full: bool = Field(
        default=True, description="Whether `tasks` holds every task, or only changed ones."
    )


class TimelineAttempt(_View):
    attempt: int
    state: str
    started_at: str | None
    ended_at: str | None
    duration_seconds: float | None


class TimelineTask(_View):
    task_id: str
    state: str
    attempts: list[TimelineAttempt]


class Timeline(_View):
    """A run laid out in time, ready for a Gantt chart: per task (in workflow order), each
    attempt's start and end; ``start``/``end`` bound every bar (``end`` is now while running)."""

    run: RunView
    start: str | None = Field(description="The earliest attempt start, or the run's start.")
    end: str | None = Field(description="The latest attempt end, or now for a running attempt.")
    tasks: list[TimelineTask]


class RunStates(_View):
    """A run and each of its tasks' state, nothing more: what a run page needs to draw its
    graph first (with the layout), before the whole view (``GET /runs/{id}``) arrives."""

    run: RunView
    revision: int | None = Field(
        default=None,
        description="The run's revision these states are of (none: the store keeps none).",
    )
    states: dict[str, str] = Field(description="Each task's state, by task id.")
    layout: str | None = Field(
        default=None,
        description=(
            "The URL (relative to the API) of the layout stored for the run's version and "
            "graph: GET it (404: none yet; lay out and PUT it there). None: none is kept here."
        ),
    )


class GraphLayout(_View):
    """Where to draw each task of a workflow version (parallel arrays: index i is
    ``tasks[i]``) and its edges, as computed once per version on the server."""

    format: int = Field(description="The layout's format; a change to it changes the ETag.")
    tasks: list[str] = Field(description="Task ids, column by column.")
    x: list[int] = Field(description="Left of each task, px.")
    y: list[int] = Field(description="Top of each task, px.")
    w: list[int] = Field(description="Width of each task, px.")
    h: int = Field(description="Height of every task, px.")
    edges: list[int] = Field(description="Flat pairs of task indices: parent, child, ...")
    width: int
    height: int


class Me(_View):
    """Who is calling and what they may do; the UI hides what is not allowed."""

    user: str
    project: str
    role: str | None = Field(description="viewer | operator | editor | admin, or null (none).")
    actions: list[str] = Field(description="Allowed operations, e.g. `run.trigger`, `run.stop`.")


class AuditView(_View):
    id: str
    at: str
    actor: str
    action: str = Field(description="e.g. `workflow.apply`, `run.trigger`, `run.stop`.")
    target: str = Field(description="e.g. `workflow/<project>/<name>`, `run/<id>`.")
    project: str | None
    details: dict[str, Any]


class AuditList(_View):
    entries: list[AuditView]
    next: str | None = Field(description="Pass as ?cursor= to get the next (older) page.")


class RunList(_View):
    """A page of runs. From a read model that could not be updated for a while (its
    database unreachable or full) it also has ``stale_since``: since that time runs may be
    missing or show an older state, until it has caught up (``GET /runs/{run_id}`` reads
    the scheduler's own state). Absent when the list is in step."""

    runs: list[RunView]
    next: str | None = Field(description="Pass as ?before= to get the next (older) page.")
