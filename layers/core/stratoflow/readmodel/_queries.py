"""ReadModel: the queries the UI and the API read history from.

Every list is keyset-paginated: a page carries ``next_cursor`` (opaque text), and passing it
back returns the rows after the last one shown, with no OFFSET (a page costs the same at row
100,000 as at row 50). ``projects`` on every method is the set of projects the caller may
see (issue 4 item 2 supplies it from the user's roles); ``None`` means no restriction. A row
of another project reads as not found, so its existence does not leak.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from stratoflow.engine import Run, TaskInstance
from stratoflow.errors import InvalidInput, NotFound, Problem
from stratoflow.ports import Attempt, WorkflowVersion
from stratoflow.readmodel._db import Database, connect
from stratoflow.readmodel._migrations import migrate
from stratoflow.readmodel._projection import Projection, Rows
from stratoflow.readmodel._records import (
    AuditEntry,
    Change,
    Page,
    RunFilter,
    WorkflowSummary,
    attempt_of,
    audit_of,
    decode_cursor,
    encode_cursor,
    pack_layout,
    req_ts,
    run_of,
    task_of,
    unpack_layout,
    version_of,
)

MAX_LIMIT = 500

_RUN_COLS = (
    "id, project, workflow, workflow_version, state, params, logical_date, created_at, "
    "started_at, ended_at, run_trigger, n_tasks, n_done, n_failed, n_running, error, "
    "parent"
)
_LAST_RUN_COLS = ", ".join(f"r.{c.strip()} AS r_{c.strip()}" for c in _RUN_COLS.split(","))

# A workflow, its latest version's document, and its last run (the correlated subquery is
# one index probe per workflow on runs_workflow_created).
_WORKFLOWS = (
    "SELECT w.project, w.name, w.latest_version, w.description, w.paused, v.document, "
    f"{_LAST_RUN_COLS} FROM workflows w "
    "LEFT JOIN workflow_versions v ON v.project = w.project AND v.name = w.name "
    "AND v.version = w.latest_version "
    "LEFT JOIN runs r ON r.id = (SELECT r2.id FROM runs r2 WHERE r2.project = w.project "
    "AND r2.workflow = w.name ORDER BY r2.created_at DESC, r2.id DESC LIMIT 1)"
)


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput([Problem("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")])
    return limit


def _in(column: str, name: str, values: Sequence[str], args: dict[str, Any]) -> str:
    """``column IN (:name0, :name1, ...)``; an empty list matches nothing."""
    if not values:
        return "1 = 0"
    marks = []
    for i, value in enumerate(values):
        args[f"{name}{i}"] = value
        marks.append(f":{name}{i}")
    return f"{column} IN ({', '.join(marks)})"


class ReadModel:
    """Queries over a read-model database, and the :class:`Projection` that fills it.

    ``ReadModel.open("postgresql://...")`` / ``ReadModel.open("/path/readmodel.db")``
    migrate the database on open; ``ReadModel(db)`` wraps an open :class:`Database`.
    """

    def __init__(self, db: Database, *, apply_migrations: bool = True) -> None:
        self.db = db
        #: set by the projector that fills this read model in this process (the local feed)
        #: when a write failed: since then the lists may miss changes, until it caught up
        self.stale_since: datetime | None = None
        if apply_migrations:
            migrate(db)
        self.projection = Projection(db)

    @classmethod
    def open(cls, url: str) -> ReadModel:
        return cls(connect(url))

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ writes
    def apply(self, changes: Sequence[Change]) -> int:
        """Project change records (see :class:`Projection`)."""
        return self.projection.apply(changes)

    def write(self, rows: Rows, position: tuple[str, int] | None = None) -> int:
        """Write encoded rows, and a change log's ``position`` with them (see
        :meth:`Projection.write`)."""
        return self.projection.write(rows, position)

    def feed_position(self, source: str) -> int | None:
        """How far ``source``'s change log is projected (what ``write`` last recorded for
        it), or None if nothing was recorded."""
        rows = self.db.query(
            "SELECT position FROM feed_positions WHERE source = :source", {"source": source}
        )
        return int(rows[0]["position"]) if rows else None

    def move_feed_position(self, old: str, new: str) -> int | None:
        """``new``'s position; if it has none, ``old``'s, moved to ``new`` (one transaction:
        ``old`` is no one's once ``new`` has it), or None if neither has one. How a source
        renamed by an upgrade (a local store keyed by its path, now by its id) keeps its
        place in its change log."""
        db = self.db
        with db.transaction():
            position = self.feed_position(new)
            if position is not None:
                return position
            position = self.feed_position(old)
            if position is not None:
                db.execute(
                    "INSERT INTO feed_positions (source, position) VALUES (:source, :position)",
                    {"source": new, "position": position},
                )
                db.execute("DELETE FROM feed_positions WHERE source = :source", {"source": old})
            return position

    def record_audit(self, entry: AuditEntry) -> None:
        """Append an audit entry; recording the same ``entry.id`` again keeps one."""
        self.projection.apply([Change(0, entry)])

    # ------------------------------------------------------------------ workflows
    def list_workflows(
        self,
        *,
        project: str | None = None,
        projects: Sequence[str] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[WorkflowSummary]:
        """Workflows by (project, name), each with its latest version and its last run."""
        args: dict[str, Any] = {"limit": _limit(limit) + 1}
        where = []
        if project is not None:
            where.append("w.project = :project")
            args["project"] = project
        if projects is not None:
            where.append(_in("w.project", "p", projects, args))
        if cursor is not None:
            args["c_project"], args["c_name"] = decode_cursor(cursor)
            where.append("(w.project, w.name) > (:c_project, :c_name)")
        rows = self.db.query(
            _WORKFLOWS
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY w.project, w.name LIMIT :limit",
            args,
        )
        items = [_summary(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_cursor(items[-1].project, items[-1].name) if more else None)

    def workflow(
        self, project: str, name: str, *, projects: Sequence[str] | None = None
    ) -> WorkflowSummary:
        """The workflow with its latest version and last run. Raises NotFound."""
        if projects is not None and project not in projects:
            raise NotFound(f"workflow {name!r} not found in project {project!r}")
        rows = self.db.query(
            _WORKFLOWS + " WHERE w.project = :p AND w.name = :n",
            {"p": project, "n": name},
        )
        if not rows:
            raise NotFound(f"workflow {name!r} not found in project {project!r}")
        return _summary(rows[0])

    def versions(
        self, project: str, name: str, *, projects: Sequence[str] | None = None
    ) -> list[WorkflowVersion]:
        """Every version of a workflow, newest first."""
        head = self.workflow(project, name, projects=projects)
        rows = self.db.query(
            "SELECT project, name, version, digest, document, source, created_at "
            "FROM workflow_versions WHERE project = :p AND name = :n ORDER BY version DESC",
            {"p": project, "n": name},
        )
        return [version_of(r, head.paused) for r in rows]

    def version(
        self,
        project: str,
        name: str,
        version: int | None = None,
        *,
        projects: Sequence[str] | None = None,
    ) -> WorkflowVersion:
        """One version (default: the latest). Raises NotFound."""
        head = self.workflow(project, name, projects=projects)
        rows = self.db.query(
            "SELECT project, name, version, digest, document, source, created_at "
            "FROM workflow_versions WHERE project = :p AND name = :n AND version = :v",
            {"p": project, "n": name, "v": head.latest_version if version is None else version},
        )
        if not rows:
            raise NotFound(f"workflow {name!r} has no version {version}")
        return version_of(rows[0], head.paused)

    # ------------------------------------------------------------------ runs
    def list_runs(
        self, query: RunFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Run]:
        """Runs matching ``query``, newest first (by creation, or by logical date with
        ``order="logical_date"``)."""
        q = query or RunFilter()
        key = "created_at" if q.order == "created" else "logical_date"
        args: dict[str, Any] = {"limit": _limit(limit) + 1}
        where: list[str] = []
        for column, value in (("project", q.project), ("workflow", q.workflow)):
            if value is not None:
                where.append(f"{column} = :{column}")
                args[column] = value
        if q.projects is not None:
            where.append(_in("project", "p", q.projects, args))
        if q.states is not None:
            where.append(_in("state", "s", [s.value for s in q.states], args))
        bounds: tuple[tuple[str, str, datetime | None], ...] = (
            ("logical_date", ">=", q.logical_from),
            ("logical_date", "<", q.logical_to),
            ("created_at", ">=", q.created_from),
            ("created_at", "<", q.created_to),
        )
        for i, (column, op, when) in enumerate(bounds):
            if when is not None:
                where.append(f"{column} {op} :t{i}")
                args[f"t{i}"] = req_ts(when)
        if cursor is not None:
            args["c_key"], args["c_id"] = decode_cursor(cursor)
            where.append(f"({key}, id) < (:c_key, :c_id)")
        sql = f"SELECT {_RUN_COLS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {key} DESC, id DESC LIMIT :limit"
        rows = self.db.query(sql, args)
        items = [run_of(r) for r in rows[:limit]]
        more = len(rows) > limit
        next_cursor = None
        if more:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last[key], last["id"])
        return Page(items, next_cursor)

    def run(self, run_id: str, *, projects: Sequence[str] | None = None) -> Run:
        """Raises NotFound (also for a run of a project outside ``projects``)."""
        rows = self.db.query(f"SELECT {_RUN_COLS} FROM runs WHERE id = :id", {"id": run_id})
        if not rows or (projects is not None and rows[0]["project"] not in projects):
            raise NotFound(f"run {run_id!r} not found")
        return run_of(rows[0])

    def tasks(self, run_id: str, *, projects: Sequence[str] | None = None) -> list[TaskInstance]:
        """The run's task instances, by task id. Raises NotFound for an unknown run."""
        if projects is not None:
            self.run(run_id, projects=projects)
        rows = self.db.query(
            "SELECT run_id, task_id, state, attempt, attempt_base, ready_at, deadline, "
            "started_at, ended_at, outputs, error, priority FROM task_instances "
            "WHERE run_id = :id ORDER BY task_id",
            {"id": run_id},
        )
        if not rows and projects is None:
            self.run(run_id)
        return [task_of(r) for r in rows]

    def attempts(
        self, run_id: str, task_id: str | None = None, *, projects: Sequence[str] | None = None
    ) -> list[Attempt]:
        """Attempts of a run (or of one task), by task then attempt number."""
        if projects is not None:
            self.run(run_id, projects=projects)
        args = {"id": run_id}
        sql = (
            "SELECT run_id, task_id, attempt, state, started_at, ended_at, exit_code, error, "
            "log, outputs FROM attempts WHERE run_id = :id"
        )
        if task_id is not None:
            sql += " AND task_id = :task"
            args["task"] = task_id
        return [attempt_of(r) for r in self.db.query(sql + " ORDER BY task_id, attempt", args)]

    def version_keys(self) -> set[tuple[str, str, int]]:
        """(project, name, version) of every stored version: what the local catch-up
        leaves out (a version never changes)."""
        rows = self.db.query("SELECT project, name, version FROM workflow_versions")
        return {(r["project"], r["name"], int(r["version"])) for r in rows}

    def workflow_heads(self) -> dict[tuple[str, str], tuple[int, bool]]:
        """(project, name) -> (latest version, paused): what the local catch-up compares."""
        rows = self.db.query("SELECT project, name, latest_version, paused FROM workflows")
        return {
            (r["project"], r["name"]): (int(r["latest_version"]), bool(r["paused"])) for r in rows
        }

    def run_summaries(self) -> dict[str, tuple[str, int, int, int]]:
        """run id -> (state, done, failed, running): what the local catch-up compares."""
        rows = self.db.query("SELECT id, state, n_done, n_failed, n_running FROM runs")
        return {
            r["id"]: (r["state"], int(r["n_done"]), int(r["n_failed"]), int(r["n_running"]))
            for r in rows
        }

    # ------------------------------------------------------------------ layouts
    def version_layout(self, project: str, name: str, version: int, digest: str) -> str | None:
        """The layout stored for this version and input digest (its JSON), or None."""
        rows = self.db.query(
            "SELECT layout FROM version_layouts WHERE project = :project AND name = :name "
            "AND version = :version AND digest = :digest",
            {"project": project, "name": name, "version": version, "digest": digest},
        )
        return unpack_layout(rows[0]["layout"]) if rows else None

    def store_version_layout(
        self, project: str, name: str, version: int, digest: str, layout: str, at: datetime
    ) -> bool:
        """Keep ``layout`` (JSON) for this version and digest, compressed; False when one is
        kept already, which stays: a version's layout is written once, never replaced."""
        args = {
            "project": project, "name": name, "version": version, "digest": digest,
            "layout": pack_layout(layout), "chars": len(layout), "at": req_ts(at),
        }  # fmt: skip
        written = self.db.execute(
            "INSERT INTO version_layouts (project, name, version, digest, layout, chars, "
            "created_at) VALUES (:project, :name, :version, :digest, :layout, :chars, :at) "
            "ON CONFLICT (project, name, version, digest) DO NOTHING",
            args,
        )
        return written > 0

    # ------------------------------------------------------------------ audit
    def list_audit(
        self,
        *,
        project: str | None = None,
        projects: Sequence[str] | None = None,
        actor: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[AuditEntry]:
        """Audit entries, newest first. With ``projects``, entries without a project (e.g.
        user administration) are left out."""
        args: dict[str, Any] = {"limit": _limit(limit) + 1}
        where: list[str] = []
        for column, value in (("project", project), ("actor", actor), ("target", target)):
            if value is not None:
                where.append(f"{column} = :{column}")
                args[column] = value
        if projects is not None:
            where.append(_in("project", "p", projects, args))
        if since is not None:
            where.append("at >= :since")
            args["since"] = req_ts(since)
        if until is not None:
            where.append("at < :until")
            args["until"] = req_ts(until)
        if cursor is not None:
            args["c_at"], args["c_id"] = decode_cursor(cursor)
            where.append("(at, id) < (:c_at, :c_id)")
        sql = "SELECT id, at, actor, action, project, target, details FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.db.query(sql + " ORDER BY at DESC, id DESC LIMIT :limit", args)
        items = [audit_of(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_cursor(rows[limit - 1]["at"], items[-1].id) if more else None)


def _summary(row: dict[str, Any]) -> WorkflowSummary:
    import json

    return WorkflowSummary(
        project=row["project"],
        name=row["name"],
        latest_version=int(row["latest_version"]),
        description=row["description"],
        paused=bool(row["paused"]),
        document=json.loads(row["document"]) if row["document"] is not None else {},
        last_run=run_of(row, "r_") if row["r_id"] is not None else None,
    )
