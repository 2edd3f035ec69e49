"""Request and response models of the REST API (they are also its OpenAPI schema).

Request models forbid unknown fields, so a misspelt field is a 422 that names it instead of
being ignored. Response models mirror ``stratoflow.views`` (the shapes the CLI prints too) and
allow extra fields, so a field added to a view reaches clients without a change here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
MAX_SOURCE_CHARS = 1_000_000


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
    logical_date: AwareDatetime | None = Field(
        default=None, description="ISO-8601 with a time zone; default: now."
    )
    run_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=RUN_ID_PATTERN,
        description="Idempotency key: triggering an existing run id returns that run.",
    )


class RerunRequest(_Request):
    from_: str | None = Field(
        default=None,
        alias="from",
        min_length=1,
        max_length=200,
        description="Rerun this task and everything downstream; null reruns failed tasks.",
    )


class MarkRequest(_Request):
    state: Literal["succeeded", "skipped"]


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
    description: str | None = None
    schedule: dict[str, Any] | None = None
    tasks: int


class VersionDetail(VersionSummary):
    document: dict[str, Any]
    source: str


class AppliedVersion(VersionDetail):
    created: bool


class WorkflowList(_View):
    workflows: list[VersionSummary]


class VersionList(_View):
    versions: list[VersionSummary]


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


class AttemptView(_View):
    attempt: int
    state: str
    started_at: str | None
    ended_at: str | None
    duration_seconds: float | None
    exit_code: int | None
    error: str | None
    outputs: dict[str, Any]


class TaskView(_View):
    state: str
    attempts: int
    outputs: dict[str, Any]
    error: str | None
    started_at: str | None
    ended_at: str | None
    duration_seconds: float | None
    next_try_at: str | None
    history: list[AttemptView]


class RunDetail(_View):
    run: RunView
    tasks: dict[str, TaskView]


class RunList(_View):
    runs: list[RunView]
    next: str | None = Field(description="Pass as ?before= to get the next (older) page.")
