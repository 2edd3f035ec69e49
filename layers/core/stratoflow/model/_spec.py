"""From text to a validated, immutable :class:`WorkflowSpec`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError

from stratoflow.errors import InvalidInput, Problem
from stratoflow.model._dag import Dag, build_dag
from stratoflow.model._loader import Path, line_for, load_yaml
from stratoflow.model._workflow import TASK_TYPES, Workflow
from stratoflow.workflow_text import read_workflow_text


@dataclass(frozen=True)
class WorkflowSpec:
    """A validated workflow with its graph. What a run pins (by ``digest``)."""

    workflow: Workflow
    dag: Dag

    @cached_property
    def document(self) -> dict[str, Any]:
        """The canonical JSON form (what is stored, and what ``digest`` hashes)."""
        return self.workflow.model_dump(mode="json", exclude_none=True)

    @cached_property
    def digest(self) -> str:
        canonical = json.dumps(self.document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def name(self) -> str:
        return self.workflow.name

    @property
    def project(self) -> str:
        return self.workflow.project


def _in_schedule(field: str) -> str:
    return f"write it in the schedule: schedule: {{cron: ..., {field}: ...}}"


# Airflow's and DolphinScheduler's names of what a schedule holds, where they are written:
# what to write instead (an unknown field says only that it is unknown)
_FOREIGN_FIELDS: dict[tuple[str, ...], str] = {
    ("schedule_interval",): "Airflow's; write schedule: {cron: ...}",
    ("timetable",): "Airflow's; write schedule: {cron: ...}",
    ("cron",): "write it in the schedule: schedule: {cron: ...}",
    ("crontab",): "write the schedule: schedule: {cron: ...}",
    ("start_date",): _in_schedule("start"),
    ("end_date",): _in_schedule("end"),
    ("catchup",): _in_schedule("catchup"),
    ("timezone",): _in_schedule("timezone"),
    **{("schedule", name): "write start" for name in ("start_date", "startTime", "start_time")},
    **{("schedule", name): "write end" for name in ("end_date", "endTime", "end_time")},
    **{("schedule", name): "write cron" for name in ("crontab", "schedule_interval", "interval")},
    **{("schedule", name): "write timezone" for name in ("timezoneId", "timezone_id", "tz")},
}


def _part(part: str | int) -> str:
    """A path part as text; one with control characters (a key "ab\\n") quoted and escaped."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def _pydantic_problems(exc: ValidationError, lines: dict[Path, int]) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        kind = err["type"]
        if kind == "union_tag_invalid":
            tag = err.get("ctx", {}).get("tag")
            message = f"unknown task type {tag!r} (expected one of: {', '.join(TASK_TYPES)})"
        elif kind == "union_tag_not_found":
            message = f"missing 'type' (one of: {', '.join(TASK_TYPES)})"
        elif kind == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}"
            hint = _FOREIGN_FIELDS.get(tuple(str(p) for p in loc))
            if hint is not None:
                message += f": {hint}"
        elif kind == "missing":
            message = f"required field {loc[-1]!r} is missing"
        # pydantic puts the union member name (e.g. 'shell') into loc; drop it from the path
        clean = tuple(
            p for i, p in enumerate(loc) if not (i == 2 and loc[0] == "tasks" and p in TASK_TYPES)
        )
        path = ".".join(_part(p) for p in clean)
        problems.append(Problem(path, message, line_for(lines, clean)))
    return problems


def parse_workflow(
    data: Any,
    *,
    source: str | None = None,
    lines: dict[Path, int] | None = None,
    now: datetime | None = None,
    stored: bool = False,
) -> WorkflowSpec:
    """Validate already-parsed data (from YAML, JSON or Python). With ``now``, a schedule
    must also have a fire time after it (new definitions; a stored one is read without).
    ``stored``: a version applied before, rebuilt; the checks added since it was applied
    that it may fail (a template name no render has, a template in python code, a switch's
    child in none of its branches) are left to its runs, as before."""
    lines = lines or {}
    if not isinstance(data, dict):
        raise InvalidInput("a workflow must be a mapping with 'name' and 'tasks'", source=source)
    try:
        workflow = Workflow.model_validate(data, context={"now": now})
    except ValidationError as exc:
        raise InvalidInput(_pydantic_problems(exc, lines), source=source) from None
    dag, problems = build_dag(workflow, stored=stored)
    if problems or dag is None:
        located = [
            Problem(p.path, p.message, line_for(lines, tuple(p.path.split(".")))) for p in problems
        ]
        raise InvalidInput(located, source=source)
    return WorkflowSpec(workflow, dag)


def load_workflow(
    text: str, *, source: str | None = None, now: datetime | None = None
) -> WorkflowSpec:
    """Parse and validate a workflow written in YAML (JSON is YAML too), within the loader's
    limits. ``now``: as in :func:`parse_workflow`."""
    data, lines = load_yaml(text, source=source)
    return parse_workflow(data, source=source, lines=lines, now=now)


def load_workflow_file(path: str | FsPath, *, now: datetime | None = None) -> WorkflowSpec:
    return load_workflow(read_workflow_text(path), source=str(path), now=now)


def spec_from_document(document: dict[str, Any]) -> WorkflowSpec:
    """Rebuild a stored spec (already valid when it was applied)."""
    return parse_workflow(document, stored=True)
