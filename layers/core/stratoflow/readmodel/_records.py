"""Change records, read-model values and the text codecs every dialect shares."""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from stratoflow.engine import Run, RunState, TaskInstance, TaskState
from stratoflow.errors import InvalidInput, Problem
from stratoflow.ports import Attempt, WorkflowVersion

_TS = "%Y-%m-%dT%H:%M:%S.%fZ"
REV_DIGITS = 40


def ts(value: datetime | None) -> str | None:
    """A timestamp as stored: fixed-width UTC text, so text order is time order."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime reached the read model")
    return value.astimezone(UTC).strftime(_TS)


def req_ts(value: datetime) -> str:
    out = ts(value)
    assert out is not None
    return out


def dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def req_dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


# what ``ts`` writes for the years 1000-9999 (strftime writes year 999 as "999")
_TS_TEXT = re.compile(r"[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", re.ASCII)


def ts_text(text: str | None) -> str | None:
    """An ISO 8601 time read as text (another store's column) as the read model stores it:
    text already in that form (fixed-width UTC with microseconds and ``Z``) as it is, with
    no parsing; any other form through ``ts`` (a naive one raises as ``ts`` does)."""
    if text is None or _TS_TEXT.fullmatch(text):
        return text
    return ts(datetime.fromisoformat(text))


def json_text(text: str) -> str:
    """JSON read as text as the read model stores it (``to_json``'s sorted keys); the empty
    object, most outputs and params, as it is."""
    return text if text == "{}" else to_json(json.loads(text))


def to_json(value: Any) -> str:
    if type(value) is dict and not value:  # most tasks and attempts have no outputs
        return "{}"  # what json.dumps gives, without building an encoder (~4 us) for it
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def from_json(text: str) -> Any:
    """``json.loads``, with the empty object (most outputs, most params) not parsed."""
    return {} if text == "{}" else json.loads(text)


#: the revision of a change that is final: no later change of its row may replace it (an
#: attempt's end recorded on its task item, which is written once: docs/aws-dynamodb.md)
FINAL_REV = 10**REV_DIGITS - 1


def rev_text(rev: int) -> str:
    """A revision as 40 zero-padded digits: text order is numeric order in every dialect."""
    if rev < 0 or len(str(rev)) > REV_DIGITS:
        raise ValueError(f"revision {rev} is outside 0..10**{REV_DIGITS}-1")
    return f"{rev:0{REV_DIGITS}d}"


@dataclass(frozen=True)
class AuditEntry:
    """Who did what, when, to what. ``id`` is chosen by the writer (a request id, a UUID) so
    that recording the same action twice keeps one entry."""

    id: str
    at: datetime
    actor: str
    action: str  # e.g. run.trigger, run.stop, workflow.apply
    target: str  # e.g. run/<id>, workflow/<project>/<name>
    project: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


Record = WorkflowVersion | Run | TaskInstance | Attempt | AuditEntry


@dataclass(frozen=True)
class Change:
    """One record as of revision ``rev``. Revisions order the changes of one entity (a
    DynamoDB stream sequence number, or the local feed's commit clock); a change whose
    revision is not above the stored one changes nothing."""

    rev: int
    record: Record


@dataclass(frozen=True)
class WorkflowSummary:
    """A workflow as the workflows page lists it: its latest version and its last run."""

    project: str
    name: str
    latest_version: int
    description: str | None
    paused: bool
    document: dict[str, Any]
    last_run: Run | None


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # pass back as ``cursor`` for the next page; None at the end


RunOrder = Literal["created", "logical_date"]


@dataclass(frozen=True)
class RunFilter:
    """Filters of :meth:`ReadModel.list_runs`. Time bounds are half-open: ``[from, to)``.

    ``projects`` is the set of projects the caller may see (None: no restriction, for
    callers that have already authorised); ``project`` narrows to one of them.
    """

    project: str | None = None
    projects: Sequence[str] | None = None
    workflow: str | None = None
    states: Sequence[RunState] | None = None
    logical_from: datetime | None = None
    logical_to: datetime | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    order: RunOrder = "created"


def encode_cursor(key: str, ident: str) -> str:
    raw = json.dumps([key, ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key, ident = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidInput([Problem("cursor", "not a cursor this API returned")]) from exc
    if not isinstance(key, str) or not isinstance(ident, str):
        raise InvalidInput([Problem("cursor", "not a cursor this API returned")])
    return key, ident


# ------------------------------------------------------------------ rows <-> domain objects
def run_row(run: Run, rev: int) -> dict[str, Any]:
    return {
        "id": run.id,
        "project": run.project,
        "workflow": run.workflow,
        "workflow_version": run.version,
        "state": run.state.value,
        "params": to_json(run.params),
        "logical_date": req_ts(run.logical_date),
        "created_at": req_ts(run.created_at),
        "started_at": ts(run.started_at),
        "ended_at": ts(run.ended_at),
        "run_trigger": run.trigger,
        "n_tasks": run.n_tasks,
        "n_done": run.n_done,
        "n_failed": run.n_failed,
        "n_running": run.n_running,
        "error": run.error,
        "parent": run.parent,
        "rev": rev_text(rev),
    }


def run_of(row: Mapping[str, Any], prefix: str = "") -> Run:
    p = prefix
    return Run(
        id=row[p + "id"], project=row[p + "project"], workflow=row[p + "workflow"],
        version=int(row[p + "workflow_version"]), state=RunState(row[p + "state"]),
        params=from_json(row[p + "params"]), logical_date=req_dt(row[p + "logical_date"]),
        created_at=req_dt(row[p + "created_at"]), started_at=dt(row[p + "started_at"]),
        ended_at=dt(row[p + "ended_at"]), trigger=row[p + "run_trigger"],
        n_tasks=int(row[p + "n_tasks"]), n_done=int(row[p + "n_done"]),
        n_failed=int(row[p + "n_failed"]), n_running=int(row[p + "n_running"]),
        error=row[p + "error"], parent=row[p + "parent"],
    )  # fmt: skip


def task_row(task: TaskInstance, rev: int) -> dict[str, Any]:
    return {
        "run_id": task.run_id,
        "task_id": task.task_id,
        "state": task.state.value,
        "attempt": task.attempt,
        "attempt_base": task.attempt_base,
        "ready_at": ts(task.ready_at),
        "deadline": ts(task.deadline),
        "started_at": ts(task.started_at),
        "ended_at": ts(task.ended_at),
        "outputs": to_json(task.outputs),
        "error": task.error,
        "priority": task.priority,
        "rev": rev_text(rev),
    }


def task_of(row: Mapping[str, Any]) -> TaskInstance:
    """Upstream counts are scheduling detail and are not projected (they read as zero)."""
    return TaskInstance(
        run_id=row["run_id"], task_id=row["task_id"], state=TaskState(row["state"]),
        attempt=int(row["attempt"]), attempt_base=int(row["attempt_base"]),
        ready_at=dt(row["ready_at"]), deadline=dt(row["deadline"]),
        started_at=dt(row["started_at"]), ended_at=dt(row["ended_at"]),
        outputs=from_json(row["outputs"]), error=row["error"], priority=int(row["priority"]),
    )  # fmt: skip


def attempt_row(attempt: Attempt, rev: int) -> dict[str, Any]:
    return {
        "run_id": attempt.run_id,
        "task_id": attempt.task_id,
        "attempt": attempt.attempt,
        "state": attempt.state,
        "started_at": req_ts(attempt.started_at),
        "ended_at": ts(attempt.ended_at),
        "exit_code": attempt.exit_code,
        "error": attempt.error,
        "log": attempt.log,
        "outputs": to_json(attempt.outputs),
        "rev": rev_text(rev),
    }


def attempt_of(row: Mapping[str, Any]) -> Attempt:
    return Attempt(
        run_id=row["run_id"], task_id=row["task_id"], attempt=int(row["attempt"]),
        state=row["state"], started_at=req_dt(row["started_at"]), ended_at=dt(row["ended_at"]),
        exit_code=None if row["exit_code"] is None else int(row["exit_code"]),
        error=row["error"], log=row["log"], outputs=from_json(row["outputs"]),
    )  # fmt: skip


def version_rows(v: WorkflowVersion, rev: int) -> tuple[dict[str, Any], dict[str, Any]]:
    description = v.document.get("description")
    return (
        {
            "project": v.project,
            "name": v.name,
            "version": v.version,
            "digest": v.digest,
            "document": to_json(v.document),
            "source": v.source,
            "created_at": req_ts(v.created_at),
        },
        {
            "project": v.project,
            "name": v.name,
            "latest_version": v.version,
            "description": description if isinstance(description, str) else None,
            "paused": int(v.paused),
            "rev": rev_text(rev),
        },
    )


def version_of(row: Mapping[str, Any], paused: bool) -> WorkflowVersion:
    return WorkflowVersion(
        project=row["project"], name=row["name"], version=int(row["version"]),
        digest=row["digest"], document=json.loads(row["document"]), source=row["source"],
        created_at=req_dt(row["created_at"]), paused=paused,
    )  # fmt: skip


def audit_row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": req_ts(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "project": entry.project,
        "target": entry.target,
        "details": to_json(dict(entry.details)),
    }


def audit_of(row: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(
        id=row["id"], at=req_dt(row["at"]), actor=row["actor"], action=row["action"],
        target=row["target"], project=row["project"], details=json.loads(row["details"]),
    )  # fmt: skip


def pack_layout(layout: str) -> str:
    """A stored layout's JSON as the column keeps it: zlib, then base64 (TEXT in every
    dialect; a layout's numbers compress about 5:1)."""
    return base64.b64encode(zlib.compress(layout.encode(), 6)).decode("ascii")


def unpack_layout(packed: str) -> str:
    return zlib.decompress(base64.b64decode(packed)).decode()
