"""The projection: change records -> idempotent upserts.

Every upsert keeps, per row, the change with the highest revision: ``ON CONFLICT ... DO
UPDATE ... WHERE excluded.rev > t.rev``. Applying a change twice, or an older change after a
newer one, changes nothing, so the projector may receive records at least once and in any
order (DynamoDB streams, Lambda retries, the local feed's worker). Workflow versions are
immutable (insert once); a workflow's ``latest_version`` is the maximum seen; the audit log is
append-only, keyed by the writer's entry id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from stratoflow.engine import Run, TaskInstance
from stratoflow.ports import Attempt, WorkflowVersion
from stratoflow.readmodel._db import Database, Insert
from stratoflow.readmodel._records import (
    AuditEntry,
    Change,
    attempt_row,
    audit_row,
    run_row,
    task_row,
    version_rows,
)


def _upsert(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> Insert:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return Insert(
        table,
        columns,
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates} WHERE excluded.rev > {table}.rev",
    )


# The columns of each table's rows, in the order of the values of a :class:`Rows` row.
RUN_COLUMNS = (
    "id", "project", "workflow", "workflow_version", "state", "params", "logical_date",
    "created_at", "started_at", "ended_at", "run_trigger", "n_tasks", "n_done", "n_failed",
    "n_running", "error", "parent", "rev",
)  # fmt: skip
TASK_COLUMNS = (
    "run_id", "task_id", "state", "attempt", "attempt_base", "ready_at", "deadline",
    "started_at", "ended_at", "outputs", "error", "priority", "rev",
)  # fmt: skip
ATTEMPT_COLUMNS = (
    "run_id", "task_id", "attempt", "state", "started_at", "ended_at", "exit_code", "error",
    "log", "outputs", "rev",
)  # fmt: skip
VERSION_COLUMNS = ("project", "name", "version", "digest", "document", "source", "created_at")
WORKFLOW_COLUMNS = ("project", "name", "latest_version", "description", "paused", "rev")
AUDIT_COLUMNS = ("id", "at", "actor", "action", "project", "target", "details")

RUN_INSERT = _upsert("runs", RUN_COLUMNS, ("id",))
TASK_INSERT = _upsert("task_instances", TASK_COLUMNS, ("run_id", "task_id"))
ATTEMPT_INSERT = _upsert("attempts", ATTEMPT_COLUMNS, ("run_id", "task_id", "attempt"))
VERSION_INSERT = Insert(
    "workflow_versions", VERSION_COLUMNS, "ON CONFLICT (project, name, version) DO NOTHING"
)
AUDIT_INSERT = Insert("audit_log", AUDIT_COLUMNS, "ON CONFLICT (id) DO NOTHING")
# the one-row statements (what the Data API runs, a parameter set per row)
UPSERT_RUN = RUN_INSERT.sql
UPSERT_TASK = TASK_INSERT.sql
UPSERT_ATTEMPT = ATTEMPT_INSERT.sql
INSERT_VERSION = VERSION_INSERT.sql
INSERT_AUDIT = AUDIT_INSERT.sql
# latest_version (and its description) is the maximum version seen; paused is the value of
# the newest revision. Both merges are order-independent. Sent a row per statement: a batch
# may hold a workflow twice (two versions), which PostgreSQL refuses in one upsert.
UPSERT_WORKFLOW = (
    "INSERT INTO workflows (project, name, latest_version, description, paused, rev) "
    "VALUES (:project, :name, :latest_version, :description, :paused, :rev) "
    "ON CONFLICT (project, name) DO UPDATE SET "
    "description = CASE WHEN excluded.latest_version > workflows.latest_version "
    "THEN excluded.description ELSE workflows.description END, "
    "latest_version = CASE WHEN excluded.latest_version > workflows.latest_version "
    "THEN excluded.latest_version ELSE workflows.latest_version END, "
    "paused = CASE WHEN excluded.rev > workflows.rev THEN excluded.paused ELSE workflows.paused END, "
    "rev = CASE WHEN excluded.rev > workflows.rev THEN excluded.rev ELSE workflows.rev END "
    "WHERE excluded.rev > workflows.rev OR excluded.latest_version > workflows.latest_version"
)
# a projector's position in its source's change log (one projector per source: the local
# feed holds its home's lock; a position may go back, to a new store's start)
UPSERT_POSITION = (
    "INSERT INTO feed_positions (source, position) VALUES (:source, :position) "
    "ON CONFLICT (source) DO UPDATE SET position = excluded.position"
)

Values = Sequence[Any]


@dataclass
class Rows:
    """Rows ready to write: each a sequence of the values its codec in ``_records`` makes
    (``run_row``, ``task_row``, ... with its revision's text) in the order of the table's
    ``*_COLUMNS``. What :meth:`Projection.apply` makes of change records, and what a
    projector that reads its source's rows as text (the local feed) hands to
    :meth:`Projection.write` without building records first.

    Within one list a row's key appears at most once (rows go several to a statement, and
    PostgreSQL refuses an upsert that touches a row twice); ``workflows`` may hold a row
    per version of a workflow (they go one to a statement; ``latest_version`` merges as the
    maximum).
    """

    versions: list[Values] = field(default_factory=list)
    workflows: list[Values] = field(default_factory=list)
    runs: list[Values] = field(default_factory=list)
    tasks: list[Values] = field(default_factory=list)
    attempts: list[Values] = field(default_factory=list)
    audit: list[Values] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.versions) + len(self.workflows) + len(self.runs) + len(self.tasks)
            + len(self.attempts) + len(self.audit)
        )  # fmt: skip


class Projection:
    """Applies change records to a migrated read-model database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def apply(self, changes: Iterable[Change]) -> int:
        """Apply a batch in one transaction; returns how many distinct rows it offered.

        Within the batch only the highest revision per row is sent (the database would keep
        that one anyway); across batches the ``rev`` guards do the same.
        """
        runs: dict[str, tuple[int, Run]] = {}
        tasks: dict[tuple[str, str], tuple[int, TaskInstance]] = {}
        attempts: dict[tuple[str, str, int], tuple[int, Attempt]] = {}
        versions: dict[tuple[str, str, int], tuple[int, WorkflowVersion]] = {}
        audit: dict[str, AuditEntry] = {}
        for change in changes:
            rec, rev = change.record, change.rev
            if isinstance(rec, Run):
                _keep(runs, rec.id, rev, rec)
            elif isinstance(rec, TaskInstance):
                _keep(tasks, (rec.run_id, rec.task_id), rev, rec)
            elif isinstance(rec, Attempt):
                _keep(attempts, (rec.run_id, rec.task_id, rec.attempt), rev, rec)
            elif isinstance(rec, WorkflowVersion):
                _keep(versions, (rec.project, rec.name, rec.version), rev, rec)
            elif isinstance(rec, AuditEntry):
                audit.setdefault(rec.id, rec)
            else:
                raise TypeError(f"no projection for {type(rec).__name__}")
        pairs = [version_rows(v, rev) for rev, v in versions.values()]
        self.write(
            Rows(
                versions=[_VERSION(p[0]) for p in pairs],
                workflows=[_WORKFLOW(p[1]) for p in pairs],
                runs=[_RUN(run_row(r, rev)) for rev, r in runs.values()],
                tasks=[_TASK(task_row(t, rev)) for rev, t in tasks.values()],
                attempts=[_ATTEMPT(attempt_row(a, rev)) for rev, a in attempts.values()],
                audit=[_AUDIT(audit_row(e)) for e in audit.values()],
            )
        )
        return len(runs) + len(tasks) + len(attempts) + len(versions) + len(audit)

    def write(self, rows: Rows, position: tuple[str, int] | None = None) -> int:
        """Write encoded rows in one transaction, each under the same guards as ``apply``
        (a row whose revision is not above the stored one changes nothing); returns how many
        rows it offered. ``position``: (source, position) of the change log these rows
        bring the read model up to, recorded in the same transaction: written with the
        rows or not at all."""
        db = self.db
        with db.transaction():
            if position is not None:
                db.execute(UPSERT_POSITION, {"source": position[0], "position": position[1]})
            db.insert_many(VERSION_INSERT, rows.versions)
            if rows.workflows:
                db.execute_many(
                    UPSERT_WORKFLOW,
                    [dict(zip(WORKFLOW_COLUMNS, r, strict=True)) for r in rows.workflows],
                )
            db.insert_many(RUN_INSERT, rows.runs)
            db.insert_many(TASK_INSERT, rows.tasks)
            db.insert_many(ATTEMPT_INSERT, rows.attempts)
            db.insert_many(AUDIT_INSERT, rows.audit)
        return len(rows)


# a codec's dict -> its values in column order
_RUN = itemgetter(*RUN_COLUMNS)
_TASK = itemgetter(*TASK_COLUMNS)
_ATTEMPT = itemgetter(*ATTEMPT_COLUMNS)
_VERSION = itemgetter(*VERSION_COLUMNS)
_WORKFLOW = itemgetter(*WORKFLOW_COLUMNS)
_AUDIT = itemgetter(*AUDIT_COLUMNS)


def _keep(into: dict[Any, tuple[int, Any]], key: Any, rev: int, record: Any) -> None:
    held = into.get(key)
    if held is None or rev > held[0]:
        into[key] = (rev, record)
