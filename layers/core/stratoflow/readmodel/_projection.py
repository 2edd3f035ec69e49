"""The projection: change records -> idempotent upserts.

Every upsert keeps, per row, the change with the highest revision: ``ON CONFLICT ... DO
UPDATE ... WHERE excluded.rev > t.rev``. Applying a change twice, or an older change after a
newer one, changes nothing, so the projector may receive records at least once and in any
order (DynamoDB streams, Lambda retries, the local feed's worker). Workflow versions are
immutable (insert once); a workflow's ``latest_version`` is the maximum seen; the audit log is
append-only, keyed by the writer's entry id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stratoflow.engine import Run, TaskInstance
from stratoflow.ports import Attempt, WorkflowVersion
from stratoflow.readmodel._db import Database
from stratoflow.readmodel._records import (
    AuditEntry,
    Change,
    attempt_row,
    audit_row,
    run_row,
    task_row,
    version_rows,
)


def _upsert(table: str, columns: list[str], key: list[str]) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + c for c in columns)}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates} "
        f"WHERE excluded.rev > {table}.rev"
    )


_RUN_COLS = [
    "id", "project", "workflow", "workflow_version", "state", "params", "logical_date",
    "created_at", "started_at", "ended_at", "run_trigger", "n_tasks", "n_done", "n_failed",
    "n_running", "error", "parent", "rev",
]  # fmt: skip
_TASK_COLS = [
    "run_id", "task_id", "state", "attempt", "attempt_base", "ready_at", "deadline",
    "started_at", "ended_at", "outputs", "error", "priority", "rev",
]  # fmt: skip
_ATTEMPT_COLS = [
    "run_id", "task_id", "attempt", "state", "started_at", "ended_at", "exit_code", "error",
    "log", "outputs", "rev",
]  # fmt: skip

UPSERT_RUN = _upsert("runs", _RUN_COLS, ["id"])
UPSERT_TASK = _upsert("task_instances", _TASK_COLS, ["run_id", "task_id"])
UPSERT_ATTEMPT = _upsert("attempts", _ATTEMPT_COLS, ["run_id", "task_id", "attempt"])
INSERT_VERSION = (
    "INSERT INTO workflow_versions (project, name, version, digest, document, source, "
    "created_at) VALUES (:project, :name, :version, :digest, :document, :source, :created_at) "
    "ON CONFLICT (project, name, version) DO NOTHING"
)
# latest_version (and its description) is the maximum version seen; paused is the value of
# the newest revision. Both merges are order-independent.
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
INSERT_AUDIT = (
    "INSERT INTO audit_log (id, at, actor, action, project, target, details) "
    "VALUES (:id, :at, :actor, :action, :project, :target, :details) "
    "ON CONFLICT (id) DO NOTHING"
)


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
        with self.db.transaction():
            self.db.execute_many(INSERT_VERSION, [p[0] for p in pairs])
            self.db.execute_many(UPSERT_WORKFLOW, [p[1] for p in pairs])
            self.db.execute_many(UPSERT_RUN, [run_row(r, rev) for rev, r in runs.values()])
            self.db.execute_many(UPSERT_TASK, [task_row(t, rev) for rev, t in tasks.values()])
            self.db.execute_many(
                UPSERT_ATTEMPT, [attempt_row(a, rev) for rev, a in attempts.values()]
            )
            self.db.execute_many(INSERT_AUDIT, [audit_row(e) for e in audit.values()])
        return len(runs) + len(tasks) + len(attempts) + len(versions) + len(audit)


def _keep(into: dict[Any, tuple[int, Any]], key: Any, rev: int, record: Any) -> None:
    held = into.get(key)
    if held is None or rev > held[0]:
        into[key] = (rev, record)
