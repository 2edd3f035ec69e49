"""StateStore and Catalog on one SQLite file (WAL).

One connection per thread; writers serialise on SQLite's lock (``BEGIN IMMEDIATE``), readers
never block in WAL mode. Every transition is committed before the caller acts on it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from stratoflow.adapters.local.sqlite_audit import AUDIT_SCHEMA, SqliteAudit
from stratoflow.adapters.local.sqlite_backfills import BACKFILL_SCHEMA, SqliteBackfills
from stratoflow.adapters.local.sqlite_dependencies import DEPENDENCY_SCHEMA, SqliteDependencies
from stratoflow.adapters.local.sqlite_variables import VARIABLE_SCHEMA, SqliteVariables
from stratoflow.engine import (
    Decision,
    Plan,
    PoolDelta,
    Run,
    RunState,
    TaskInstance,
    TaskState,
    TaskWrite,
    Upstream,
)
from stratoflow.engine.pools import Pool, pool_key, split_key
from stratoflow.errors import NotFound
from stratoflow.model import WorkflowSpec
from stratoflow.ports import (
    Attempt,
    Catalog,
    PoolStore,
    RunChangeLog,
    RunQuery,
    StateStore,
    WorkflowVersion,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS workflow_versions (
    project TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    digest TEXT NOT NULL, document TEXT NOT NULL, source TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (project, name, version)
);
CREATE TABLE IF NOT EXISTS workflows (
    project TEXT NOT NULL, name TEXT NOT NULL, latest INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0, cursor TEXT,
    PRIMARY KEY (project, name)
);
CREATE TABLE IF NOT EXISTS schedule_errors (
    project TEXT NOT NULL, name TEXT NOT NULL, error TEXT NOT NULL,
    PRIMARY KEY (project, name)
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE,
    project TEXT NOT NULL, workflow TEXT NOT NULL, version INTEGER NOT NULL,
    state TEXT NOT NULL, params TEXT NOT NULL, logical_date TEXT NOT NULL,
    created_at TEXT NOT NULL, started_at TEXT, ended_at TEXT, trigger TEXT NOT NULL,
    n_tasks INTEGER NOT NULL, n_done INTEGER NOT NULL DEFAULT 0,
    n_failed INTEGER NOT NULL DEFAULT 0, n_running INTEGER NOT NULL DEFAULT 0,
    concurrency INTEGER, error TEXT, parent TEXT,
    paused_by_parent INTEGER NOT NULL DEFAULT 0, plan_gen INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (project, workflow, seq);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state, seq);
CREATE TABLE IF NOT EXISTS tasks (
    run_id TEXT NOT NULL, task_id TEXT NOT NULL, state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0, attempt_base INTEGER NOT NULL DEFAULT 0,
    up_ok INTEGER NOT NULL DEFAULT 0, up_failed INTEGER NOT NULL DEFAULT 0,
    up_skipped INTEGER NOT NULL DEFAULT 0,
    ready_at TEXT, deadline TEXT, started_at TEXT, ended_at TEXT,
    outputs TEXT NOT NULL DEFAULT '{}', error TEXT, priority INTEGER NOT NULL DEFAULT 0,
    queued_seq INTEGER, propagating INTEGER NOT NULL DEFAULT 0,
    rerun_child INTEGER NOT NULL DEFAULT 0, child_end TEXT,
    PRIMARY KEY (run_id, task_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pools (
    scope TEXT NOT NULL, name TEXT NOT NULL, slots INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_retry ON tasks (ready_at) WHERE state = 'up_for_retry';
CREATE INDEX IF NOT EXISTS tasks_running ON tasks (deadline) WHERE state = 'running';
CREATE TABLE IF NOT EXISTS upstream (
    run_id TEXT NOT NULL, child TEXT NOT NULL, parent TEXT NOT NULL, outcome TEXT NOT NULL,
    PRIMARY KEY (run_id, child, parent)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL, task_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    state TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, exit_code INTEGER,
    error TEXT, log TEXT, outputs TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, task_id, attempt)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Run revisions (``RunChangeLog``): a row per change of what a run view shows of a task.
-- ``seq`` is the rowid: SQLite has one writer at a time, so seqs grow in commit order, and no
-- row is deleted, so none is reused. A run's revision is its highest seq; the tasks changed
-- since a revision are those with a higher one. The triggers run inside SQLite, in the
-- writing transaction: the scheduler's code does not change, and a task whose visible
-- fields did not change (a parent counted, a propagation flag) writes no row.
CREATE TABLE IF NOT EXISTS task_changes (
    seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, task_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS task_changes_by_run ON task_changes (run_id, seq);
CREATE TRIGGER IF NOT EXISTS task_changed AFTER UPDATE ON tasks
WHEN NEW.state IS NOT OLD.state OR NEW.attempt IS NOT OLD.attempt
    OR NEW.started_at IS NOT OLD.started_at OR NEW.ended_at IS NOT OLD.ended_at
    OR NEW.ready_at IS NOT OLD.ready_at OR NEW.error IS NOT OLD.error
    OR NEW.outputs IS NOT OLD.outputs
BEGIN INSERT INTO task_changes (run_id, task_id) VALUES (NEW.run_id, NEW.task_id); END;
CREATE TRIGGER IF NOT EXISTS attempt_added AFTER INSERT ON attempts
BEGIN INSERT INTO task_changes (run_id, task_id) VALUES (NEW.run_id, NEW.task_id); END;
CREATE TRIGGER IF NOT EXISTS attempt_changed AFTER UPDATE ON attempts
BEGIN INSERT INTO task_changes (run_id, task_id) VALUES (NEW.run_id, NEW.task_id); END;
"""


# The text of the times written lately: a task's start and end times are written several
# times (its moves, its attempt's rows), ~2 us to format each time, ~0.03 to look up. Equal
# datetimes are the same instant, whatever their zone, so they have the same text; a naive
# one is equal to no aware one and misses. Emptied when full.
_TS_TEXT: dict[datetime, str] = {}
_TS_KEPT = 4096


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = _TS_TEXT.get(value)
    if text is not None:
        return text
    if value.tzinfo is None:
        raise ValueError("naive datetime reached the store")
    # isoformat, not strftime: it zero-pads the year, so every stored time parses and sorts
    text = value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if len(_TS_TEXT) >= _TS_KEPT:
        _TS_TEXT.clear()
    _TS_TEXT[value] = text
    return text


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _req_dt(value: str) -> datetime:
    # fromisoformat (3.11+) reads the trailing Z as UTC, and is far cheaper than strptime
    return datetime.fromisoformat(value)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


_RUN_COLS = (
    "id, project, workflow, version, state, params, logical_date, created_at, started_at, "
    "ended_at, trigger, n_tasks, n_done, n_failed, n_running, error, parent, paused_by_parent, "
    "plan_gen"
)
# The upstream count a parent's outcome adds to (any other outcome counts as failed).
_TASK_STATES = {s.value: s for s in TaskState}  # a lookup: TaskState(value) costs 10 µs a task
_RUN_STATES = {s.value: s for s in RunState}
_UP_COLUMN = {TaskState.SUCCEEDED: "up_ok", TaskState.SKIPPED: "up_skipped"}
# Rows per multi-row statement: 4 parameters each, well under SQLite's 32,766.
_CHUNK = 500
# What the local feed reads (the "rows for the local feed" methods): the store's columns in the
# order, and under the names, of the read model's.
FEED_RUN_COLUMNS = (
    "id", "project", "workflow", "workflow_version", "state", "params", "logical_date",
    "created_at", "started_at", "ended_at", "run_trigger", "n_tasks", "n_done", "n_failed",
    "n_running", "error", "parent",
)  # fmt: skip
FEED_TASK_COLUMNS = (
    "run_id", "task_id", "state", "attempt", "attempt_base", "ready_at", "deadline",
    "started_at", "ended_at", "outputs", "error", "priority",
)  # fmt: skip
FEED_ATTEMPT_COLUMNS = (
    "run_id", "task_id", "attempt", "state", "started_at", "ended_at", "exit_code", "error",
    "log", "outputs",
)  # fmt: skip
FEED_VERSION_COLUMNS = (
    "project", "name", "version", "digest", "document", "source", "created_at", "paused",
)  # fmt: skip
_FEED_RUNS = (
    "SELECT id, project, workflow, version, state, params, logical_date, created_at, "
    "started_at, ended_at, trigger, n_tasks, n_done, n_failed, n_running, error, parent "
    "FROM runs WHERE id"
)
_FEED_TASKS = f"SELECT {', '.join(FEED_TASK_COLUMNS)} FROM tasks"
_FEED_ATTEMPTS = f"SELECT {', '.join(FEED_ATTEMPT_COLUMNS)} FROM attempts"
_FEED_VERSION_COLS = (
    "v.project, v.name, v.version, v.digest, v.document, v.source, v.created_at, w.paused"
)
_FEED_CHUNK = 512  # keys per IN list
# Queue sequence numbers a transaction reserves at once (``_queue_numbers``).
_QUEUE_BLOCK = 64

_TASK_COLS = (
    "run_id, task_id, state, attempt, attempt_base, up_ok, up_failed, up_skipped, ready_at, deadline, "
    "started_at, ended_at, outputs, error, priority, propagating, pool, pool_rank, pool_slots, "
    "rerun_child, child_end"
)
# how many columns each list has: the row decoders read by position, and a query may add
# columns after them (queued_tasks: the run's free slots)
_N_RUN_COLS = len(_RUN_COLS.split(","))
_N_TASK_COLS = len(_TASK_COLS.split(","))
# ``queued_tasks``' walk of the queue (its text built once: it ran on every turn)
_QUEUE_WALK = (
    f"SELECT {', '.join('t.' + c.strip() for c in _TASK_COLS.split(','))}, "
    "r.concurrency - r.n_running AS free FROM tasks t "
    "CROSS JOIN runs r ON r.id = t.run_id WHERE t.state='queued' AND t.pool_rank IS NULL "
    "AND r.state='running' "
    "AND (r.concurrency IS NULL OR r.n_running < r.concurrency) "
    "ORDER BY t.priority DESC, t.queued_seq LIMIT ?"
)


def _run(row: sqlite3.Row) -> Run:
    # by position, in the order of _RUN_COLS (read once per task's end: by name cost more)
    (
        id_, project, workflow, version, state, params, logical_date, created_at, started_at,
        ended_at, trigger, n_tasks, n_done, n_failed, n_running, error, parent, paused_by_parent,
        plan_gen,
    ) = tuple(row)[:_N_RUN_COLS]  # fmt: skip
    return Run(
        id=id_, project=project, workflow=workflow, version=version, state=_RUN_STATES[state],
        params={} if params == "{}" else json.loads(params),
        logical_date=_req_dt(logical_date), created_at=_req_dt(created_at),
        started_at=_dt(started_at), ended_at=_dt(ended_at), trigger=trigger,
        n_tasks=n_tasks, n_done=n_done, n_failed=n_failed, n_running=n_running, error=error,
        parent=parent, paused_by_parent=bool(paused_by_parent), plan_gen=plan_gen,
    )  # fmt: skip


def _outputs(text: str) -> Any:
    return {} if text == "{}" else json.loads(text)  # most tasks have none


_new = object.__new__
_from_iso = datetime.fromisoformat
# What _task sets on a TaskInstance and its Upstream: every field (checked here, so a field
# added to either fails every test until _task sets it too).
_TASK_FIELDS = frozenset(
    _TASK_COLS.replace("up_ok, up_failed, up_skipped", "upstream").replace(" ", "").split(",")
)
_UPSTREAM_FIELDS = frozenset({"succeeded", "failed", "skipped"})
if {f.name for f in fields(TaskInstance)} != _TASK_FIELDS or {
    f.name for f in fields(Upstream)
} != _UPSTREAM_FIELDS:  # pragma: no cover - a guard for the next field
    raise ImportError("sqlite_store._task does not set every field of TaskInstance/Upstream")


def _attempt(r: sqlite3.Row) -> Attempt:
    return Attempt(
        run_id=r["run_id"],
        task_id=r["task_id"],
        attempt=r["attempt"],
        state=r["state"],
        started_at=_req_dt(r["started_at"]),
        ended_at=_dt(r["ended_at"]),
        exit_code=r["exit_code"],
        error=r["error"],
        log=r["log"],
        outputs=_outputs(r["outputs"]),
    )


def _task(row: sqlite3.Row) -> TaskInstance:
    """A task row, by position in the order of _TASK_COLS (the hot path decodes ~5 a task).
    Built as ``TaskInstance.with_`` copies one (its fields set at once, not through the
    frozen dataclass's ``__init__``, a ``setattr`` per field): ~1.3 us a row instead of
    ~4.9. The values are those ``__init__`` would hold."""
    (
        run_id, task_id, state, attempt, attempt_base, up_ok, up_failed, up_skipped, ready_at,
        deadline, started_at, ended_at, outputs, error, priority, propagating, pool, pool_rank,
        pool_slots, rerun_child, child_end,
    ) = tuple(row)[:_N_TASK_COLS]  # fmt: skip
    upstream = _new(Upstream)
    upstream.__dict__.update(succeeded=up_ok, failed=up_failed, skipped=up_skipped)
    task: TaskInstance = _new(TaskInstance)
    task.__dict__.update(
        run_id=run_id, task_id=task_id, state=_TASK_STATES[state], attempt=attempt,
        attempt_base=attempt_base, upstream=upstream,
        ready_at=None if ready_at is None else _from_iso(ready_at),
        deadline=None if deadline is None else _from_iso(deadline),
        started_at=None if started_at is None else _from_iso(started_at),
        ended_at=None if ended_at is None else _from_iso(ended_at),
        outputs={} if outputs == "{}" else json.loads(outputs), error=error, priority=priority,
        propagating=bool(propagating), pool=pool, pool_rank=pool_rank, pool_slots=pool_slots,
        rerun_child=bool(rerun_child),
        child_end=None if child_end is None else _from_iso(child_end),
    )  # fmt: skip
    return task


def _task_values(t: TaskInstance) -> tuple[Any, ...]:
    return (
        t.state.value, t.attempt, t.attempt_base, t.upstream.succeeded, t.upstream.failed, t.upstream.skipped,
        _ts(t.ready_at), _ts(t.deadline), _ts(t.started_at), _ts(t.ended_at),
        _json(t.outputs) if t.outputs else "{}", t.error, t.priority, int(t.propagating),
        t.pool, t.pool_rank, t.pool_slots, int(t.rerun_child), _ts(t.child_end),
    )  # fmt: skip


# A task entering the queue takes the sequence number bound here (None for any other move);
# one already queued keeps its place. SET expressions read the row's old values.
_QUEUED_SEQ = "queued_seq=CASE WHEN state='queued' THEN queued_seq ELSE COALESCE(?, queued_seq) END"
# A transition writes the task's own fields; the upstream counts belong to record_upstream
# (writing them here could erase a parent's concurrent count). Plans rewrite both.
_STATE_SET = (
    "state=?, attempt=?, attempt_base=?, ready_at=?, deadline=?, started_at=?, ended_at=?, outputs=?, error=?, "
    "priority=?, propagating=?, pool=?, pool_rank=?, pool_slots=?, child_end=?, " + _QUEUED_SEQ
)
# Several conditional state writes in one statement (``_write_conditional``): a VALUES row per
# task, its 15 state fields and queued sequence as in _STATE_SET, then its key and the state
# and attempt it must still be in.
_MULTI_SET = (
    "state=v.column1, attempt=v.column2, attempt_base=v.column3, ready_at=v.column4, "
    "deadline=v.column5, started_at=v.column6, ended_at=v.column7, outputs=v.column8, "
    "error=v.column9, priority=v.column10, propagating=v.column11, pool=v.column12, "
    "pool_rank=v.column13, pool_slots=v.column14, child_end=v.column15, "
    "queued_seq=CASE WHEN tasks.state='queued' "
    "THEN tasks.queued_seq ELSE COALESCE(v.column16, tasks.queued_seq) END"
)
_MULTI_WIDTH = 20
# The fewest distinct tasks a decision writes with one multi-row statement: it costs a fixed
# part (the VALUES materialised, an ephemeral table for the UPDATE ... FROM) that two or three
# one-row statements do not (a claim of 2-3 tasks, most turns' at `concurrency: 8`:
# ~45,000 instructions fewer a turn, callgrind, benchmarks/turn_ends.py --batch 2 and 3,4)
_MULTI_MIN = 4
_MULTI_MAX = 32
_MULTI_UPDATE = {
    n: f"UPDATE tasks SET {_MULTI_SET} FROM (VALUES "
    + ",".join(["(" + ",".join("?" * _MULTI_WIDTH) + ")"] * n)
    + ") AS v WHERE tasks.run_id=v.column17 AND tasks.task_id=v.column18 "
    "AND tasks.state=v.column19 AND tasks.attempt=v.column20"
    for n in (1, 2, 4, 8, 16, 32)
}
# ``rerun_child`` is written with them: only a plan (a rerun, a mark) changes it; a transition
# carries it as it was.
_FULL_SET = "up_ok=?, up_failed=?, up_skipped=?, rerun_child=?, " + _STATE_SET
# Attempts' starts, several rows a statement; a repeated start only fills in its log.
_STARTS_MAX = 32
_START_ATTEMPTS = {
    n: "INSERT INTO attempts (run_id, task_id, attempt, state, started_at, log) VALUES "
    + ",".join(["(?,?,?,?,?,?)"] * n)
    + " ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET log=COALESCE(excluded.log, attempts.log)"
    for n in range(1, _STARTS_MAX + 1)
}


def _state_values(t: TaskInstance, queued_seq: int | None) -> tuple[Any, ...]:
    return (
        t.state.value,
        t.attempt,
        t.attempt_base,
        _ts(t.ready_at),
        _ts(t.deadline),
        _ts(t.started_at),
        _ts(t.ended_at),
        _json(t.outputs) if t.outputs else "{}",
        t.error,
        t.priority,
        int(t.propagating),
        t.pool,
        t.pool_rank,
        t.pool_slots,
        _ts(t.child_end),
        queued_seq,
    )


@dataclass
class StoreChanges:
    """The keys one commit wrote (what the read model's local feed re-reads and projects)."""

    versions: set[tuple[str, str, int]] = field(default_factory=set)  # (project, name, version)
    workflows: set[tuple[str, str]] = field(default_factory=set)  # paused flag changed
    runs: set[str] = field(default_factory=set)
    # the runs whose state this commit wrote (created, started, paused, ended...), a subset of
    # ``runs``: what a wait for a run's end wakes on, not on every counter bump
    run_states: set[str] = field(default_factory=set)
    tasks: set[tuple[str, str]] = field(default_factory=set)  # (run, task)
    attempts: set[tuple[str, str, int]] = field(default_factory=set)  # (run, task, attempt)
    audit: set[str] = field(default_factory=set)  # ids of audit entries settled


class _Transaction(AbstractContextManager[None]):
    """``SqliteStore.transaction``: its state is the thread's (``SqliteStore._local``), so one
    instance serves every thread and every depth."""

    __slots__ = ("_store",)

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        store = self._store
        conn = store._conn()
        local = store._local
        if local.depth:
            local.depth += 1
            return
        conn.execute("BEGIN IMMEDIATE")
        local.depth = 1
        # What this transaction read of runs and of the dependency waits, for its own later
        # reads: BEGIN IMMEDIATE holds the write lock, so no other connection changes them
        # until it ends; its own writes update or drop the entries (before the statement, so
        # a write that fails part-way leaves nothing stale). Never kept past its end.
        local.runs, local.waiters = {}, {}
        local.seqs = None  # the queue numbers it reserved and has not used

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        store = self._store
        local = store._local
        if local.depth > 1:
            local.depth -= 1
            return
        try:
            if kind is not None:
                local.conn.execute("ROLLBACK")
                local.changes = None
                return
            local.conn.execute("COMMIT")
        finally:
            local.depth = 0
            local.runs = local.waiters = local.seqs = None
        store._publish()


class SqliteStore(
    SqliteAudit,
    StateStore,
    Catalog,
    RunChangeLog,
    SqliteBackfills,
    SqliteDependencies,
    PoolStore,
    SqliteVariables,
):
    def __init__(self, path: str | Path, *, durable: bool = False) -> None:
        """``durable=True`` syncs every commit to disk (survives power loss); the default
        survives any process crash, which is what WAL with synchronous=NORMAL guarantees."""
        self.path = str(path)
        self._durable = durable
        self._local = threading.local()
        self._transaction = _Transaction(self)
        # Called after each commit, in the committing thread, with the keys it wrote (one
        # call per transaction). Empty list: no bookkeeping at all.
        self.on_commit: list[Callable[[StoreChanges], None]] = []
        conn = self._conn()
        self.store_id, self.feed_source_before = self._identify(conn)
        conn.executescript(SCHEMA)
        conn.executescript(BACKFILL_SCHEMA)
        conn.executescript(DEPENDENCY_SCHEMA)
        conn.executescript(VARIABLE_SCHEMA)
        conn.executescript(AUDIT_SCHEMA)
        # the columns a file from an older version lacks, added under the write lock: two
        # processes opening it at once would each read them missing, and the second's ADD
        # COLUMN would fail ("duplicate column name"); the second reads them after the first
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._upgrade(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _upgrade(conn: sqlite3.Connection) -> None:
        run_columns = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
        if "parent" not in run_columns:  # a state file from before sub-workflows
            conn.execute("ALTER TABLE runs ADD COLUMN parent TEXT")
        if "paused_by_parent" not in run_columns:  # from before sub-workflow pause recovery
            conn.execute("ALTER TABLE runs ADD COLUMN paused_by_parent INTEGER NOT NULL DEFAULT 0")
        if "plan_gen" not in run_columns:  # from before plans were serialized by it
            conn.execute("ALTER TABLE runs ADD COLUMN plan_gen INTEGER NOT NULL DEFAULT 0")
        columns = {row["name"] for row in conn.execute("PRAGMA table_info(tasks)")}
        if "propagating" not in columns:  # a state file from before the column existed
            conn.execute("ALTER TABLE tasks ADD COLUMN propagating INTEGER NOT NULL DEFAULT 0")
        if "rerun_child" not in columns:  # from before a rerun could rerun a child whole
            conn.execute("ALTER TABLE tasks ADD COLUMN rerun_child INTEGER NOT NULL DEFAULT 0")
        if "child_end" not in columns:  # from before a task followed its child's later ends
            conn.execute("ALTER TABLE tasks ADD COLUMN child_end TEXT")
        conn.execute(
            "CREATE INDEX IF NOT EXISTS tasks_propagating ON tasks (ended_at) WHERE propagating=1"
        )
        for column, kind in (("pool", "TEXT"), ("pool_rank", "INTEGER"), ("pool_slots", "INTEGER")):
            if column not in columns:  # a state file from before pools
                default = " NOT NULL DEFAULT 0" if column == "pool_slots" else ""
                conn.execute(f"ALTER TABLE tasks ADD COLUMN {column} {kind}{default}")
        # the runs' queues hold ready tasks not waiting in a pool; each pool has its own
        conn.execute("DROP INDEX IF EXISTS tasks_queued")
        conn.execute(
            "CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (priority DESC, queued_seq) "
            "WHERE state = 'queued' AND pool_rank IS NULL"
        )
        conn.execute(
            "CREATE INDEX IF NOT EXISTS tasks_pool_queue ON tasks (pool, pool_rank, queued_seq) "
            "WHERE state = 'queued' AND pool_rank IS NOT NULL"
        )
        conn.execute(
            "CREATE INDEX IF NOT EXISTS tasks_pool_held ON tasks (pool) "
            "WHERE state = 'running' AND pool IS NOT NULL"
        )
        conn.execute("INSERT OR IGNORE INTO counters VALUES ('queued', 0), ('runs', 0)")

    def _identify(self, conn: sqlite3.Connection) -> tuple[str, str | None]:
        """The store's id, written once, when the store is made (before its tables, under
        the write lock: two processes opening a new file together agree on one), and what
        the read model knew it by before it had one. The read model's feed keys its
        change-log position by it: a store made anew at the same path (a home deleted and
        made again, its read model kept) has another id, so the old store's position, past
        the new one's first log entries, is never taken for the new one's.

        A store made by a version without ids (its ``runs`` table there, no id) gets one
        now; its position was recorded under its path (``local:<path>``), which is
        returned, for the feed to move it to the new key (``LocalFeed``), so an upgraded
        home neither re-reads its whole log nor skips any of it."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS store_meta "
                "(name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
            )
            rows = dict(conn.execute("SELECT name, value FROM store_meta").fetchall())
            if "store_id" not in rows:
                older = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'"
                ).fetchone()
                made = {"store_id": uuid.uuid4().hex}
                if older is not None:
                    made["feed_source_before"] = f"local:{self.path}"
                conn.executemany("INSERT INTO store_meta VALUES (?, ?)", list(made.items()))
                rows.update(made)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return rows["store_id"], rows.get("feed_source_before")

    # ------------------------------------------------------------ plumbing
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            self._local.depth = 0
            self._local.runs = None
            self._local.waiters = None
            self._local.seqs = None
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def transaction(self) -> AbstractContextManager[None]:
        """One atomic transaction (BEGIN IMMEDIATE: the write lock from its start); nested
        uses join the outermost. A class of its own, not a generator: the scheduler enters
        some seven a task, and contextlib's machinery cost ~2 us each."""
        return self._transaction

    def _forget_reads(self) -> None:
        """Drop what this transaction cached (a savepoint rolled back: the rows it wrote are
        as they were before, which the cache no longer says)."""
        if getattr(self._local, "runs", None) is not None:
            self._local.runs.clear()
            self._local.waiters.clear()
            self._local.seqs = None  # its reservation may be what was rolled back

    def _forget_run(self, run_id: str) -> Run | None:
        """Before a write to a run's row: drop its cached copy; the copy dropped."""
        runs: dict[str, Run] | None = getattr(self._local, "runs", None)
        return None if runs is None else runs.pop(run_id, None)

    def _remember_run(self, run: Run) -> None:
        runs: dict[str, Run] | None = getattr(self._local, "runs", None)
        if runs is not None:
            runs[run.id] = run

    def _changed(self, kind: str, key: Any, *also: str) -> None:
        """Note a written key for the commit hooks (published now, outside a transaction), in
        ``kind``'s set and in those named in ``also``."""
        if not self.on_commit:
            return
        changes = getattr(self._local, "changes", None)
        if changes is None:
            changes = self._local.changes = StoreChanges()
        getattr(changes, kind).add(key)
        for other in also:
            getattr(changes, other).add(key)
        if not self._local.depth:
            self._publish()

    def _publish(self) -> None:
        changes = getattr(self._local, "changes", None)
        if changes is None:
            return
        self._local.changes = None
        for hook in self.on_commit:
            hook(changes)

    def _x(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn().execute(sql, args)

    def _next(self, counter: str) -> int:
        return self._add(counter, 1)

    def _queue_numbers(self, n: int) -> int:
        """The first of ``n`` consecutive new queue sequence numbers (a task entering the
        queue takes one: FIFO within a priority). In a transaction they come from a block
        reserved once (``_QUEUE_BLOCK`` numbers, one counter update per turn instead of one
        per task queued): the write lock is held until it ends, and the next transaction,
        here or in another process, reserves above the block, so the numbers still grow in
        the order tasks are queued. What a transaction leaves unused is skipped."""
        if not getattr(self._local, "depth", 0):
            return self._add("queued", n) - n + 1
        block: tuple[int, int] | None = self._local.seqs
        if block is None or block[0] + n - 1 > block[1]:
            size = max(n, _QUEUE_BLOCK)
            top = self._add("queued", size)
            block = (top - size + 1, top)
        self._local.seqs = (block[0] + n, block[1])
        return block[0]

    def _add(self, counter: str, n: int) -> int:
        """Add ``n`` to a counter; its new value (the numbers above the old one are taken)."""
        row = self._x(
            "UPDATE counters SET value = value + ? WHERE name=? RETURNING value", (n, counter)
        ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------ catalog
    def put_version(
        self, spec: WorkflowSpec, source: str, now: datetime
    ) -> tuple[WorkflowVersion, bool]:
        with self.transaction():
            row = self._x(
                "SELECT latest FROM workflows WHERE project=? AND name=?", (spec.project, spec.name)
            ).fetchone()
            if row is not None:
                latest = self.get_version(spec.project, spec.name, row["latest"])
                if latest.digest == spec.digest:
                    return latest, False
            version = 1 if row is None else int(row["latest"]) + 1
            self._x(
                "INSERT INTO workflow_versions VALUES (?,?,?,?,?,?,?)",
                (
                    spec.project,
                    spec.name,
                    version,
                    spec.digest,
                    _json(spec.document),
                    source,
                    _ts(now),
                ),
            )
            self._x(
                "INSERT INTO workflows (project, name, latest) VALUES (?,?,?) "
                "ON CONFLICT (project, name) DO UPDATE SET latest=excluded.latest",
                (spec.project, spec.name, version),
            )
            self._changed("versions", (spec.project, spec.name, version))
            return self.get_version(spec.project, spec.name, version), True

    def _version(
        self, row: sqlite3.Row, paused: bool, schedule_error: str | None = None
    ) -> WorkflowVersion:
        return WorkflowVersion(
            project=row["project"], name=row["name"], version=row["version"], digest=row["digest"],
            document=json.loads(row["document"]), source=row["source"],
            created_at=_req_dt(row["created_at"]), paused=paused, schedule_error=schedule_error,
        )  # fmt: skip

    def get_version(self, project: str, name: str, version: int | None = None) -> WorkflowVersion:
        head = self._x(
            "SELECT w.latest, w.paused, e.error FROM workflows w LEFT JOIN schedule_errors e "
            "ON e.project=w.project AND e.name=w.name WHERE w.project=? AND w.name=?",
            (project, name),
        ).fetchone()
        if head is None:
            raise NotFound(f"workflow {name!r} not found in project {project!r}")
        row = self._x(
            "SELECT * FROM workflow_versions WHERE project=? AND name=? AND version=?",
            (project, name, head["latest"] if version is None else version),
        ).fetchone()
        if row is None:
            raise NotFound(f"workflow {name!r} has no version {version}")
        return self._version(row, bool(head["paused"]), head["error"])

    def latest_version(self, project: str, name: str) -> int:
        row = self._x(
            "SELECT latest FROM workflows WHERE project=? AND name=?", (project, name)
        ).fetchone()
        if row is None:
            raise NotFound(f"workflow {name!r} not found in project {project!r}")
        return int(row["latest"])

    def list_workflows(
        self, project: str | None = None, *, after: str | None = None, limit: int | None = None
    ) -> list[WorkflowVersion]:
        sql = (
            "SELECT v.*, w.paused AS paused, e.error AS schedule_error FROM workflows w "
            "JOIN workflow_versions v ON v.project=w.project AND v.name=w.name "
            "AND v.version=w.latest "
            "LEFT JOIN schedule_errors e ON e.project=w.project AND e.name=w.name"
        )
        where: list[str] = []
        args: list[Any] = []
        if project is not None:
            where.append("w.project=?")
            args.append(project)
        if after is not None:
            where.append("w.name>?")
            args.append(after)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY w.project, w.name"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self._x(sql, tuple(args)).fetchall()
        return [self._version(r, bool(r["paused"]), r["schedule_error"]) for r in rows]

    def list_versions(
        self, project: str, name: str, *, before: int | None = None, limit: int | None = None
    ) -> list[WorkflowVersion]:
        head = self.get_version(project, name)
        rows = self._x(
            "SELECT * FROM workflow_versions WHERE project=? AND name=? AND version<? "
            "ORDER BY version DESC LIMIT ?",
            (
                project,
                name,
                2**63 - 1 if before is None else before,
                -1 if limit is None else limit,
            ),
        ).fetchall()
        return [self._version(r, head.paused) for r in rows]

    def set_paused(self, project: str, name: str, paused: bool) -> None:
        self.get_version(project, name)
        self._x(
            "UPDATE workflows SET paused=? WHERE project=? AND name=?", (int(paused), project, name)
        )
        self._changed("workflows", (project, name))

    def get_cursor(self, project: str, name: str) -> datetime | None:
        row = self._x(
            "SELECT cursor FROM workflows WHERE project=? AND name=?", (project, name)
        ).fetchone()
        return None if row is None else _dt(row["cursor"])

    def set_cursor(self, project: str, name: str, logical_date: datetime) -> None:
        self._x(
            # forward only (``Catalog.set_cursor``): the stored times sort as the instants do
            "UPDATE workflows SET cursor=?1 WHERE project=?2 AND name=?3 "
            "AND (cursor IS NULL OR cursor < ?1)",
            (_ts(logical_date), project, name),
        )

    def set_schedule_error(self, project: str, name: str, error: str | None) -> None:
        if error is None:
            self._x("DELETE FROM schedule_errors WHERE project=? AND name=?", (project, name))
        else:
            self._x(
                "INSERT OR REPLACE INTO schedule_errors VALUES (?, ?, ?)", (project, name, error)
            )
        self._changed("workflows", (project, name))

    # ------------------------------------------------------------ runs
    def create_run(self, run: Run, tasks: Sequence[TaskInstance], concurrency: int | None) -> bool:
        with self.transaction():
            if self._x("SELECT 1 FROM runs WHERE id=?", (run.id,)).fetchone():
                return False
            self._x(
                f"INSERT INTO runs ({_RUN_COLS}, seq, concurrency) VALUES ({','.join('?' * 21)})",
                (
                    run.id,
                    run.project,
                    run.workflow,
                    run.version,
                    run.state.value,
                    _json(run.params),
                    _ts(run.logical_date),
                    _ts(run.created_at),
                    _ts(run.started_at),
                    _ts(run.ended_at),
                    run.trigger,
                    run.n_tasks,
                    run.n_done,
                    run.n_failed,
                    run.n_running,
                    run.error,
                    run.parent,
                    int(run.paused_by_parent),
                    run.plan_gen,
                    self._next("runs"),
                    concurrency,
                ),
            )
            # A task created QUEUED joins the queue now: give it its place in FIFO order
            # (a NULL queued_seq would sort before every task queued earlier).
            self._conn().executemany(
                f"INSERT INTO tasks ({_TASK_COLS}, queued_seq) VALUES ({','.join('?' * (_N_TASK_COLS + 1))})",
                [
                    (
                        t.run_id,
                        t.task_id,
                        *_task_values(t),
                        self._queue_numbers(1) if t.state is TaskState.QUEUED else None,
                    )
                    for t in tasks
                ],
            )
            if self.on_commit:
                self._changed("runs", run.id, "run_states")
                for t in tasks:
                    self._changed("tasks", (t.run_id, t.task_id))
            return True

    def get_run(self, run_id: str) -> Run:
        runs: dict[str, Run] | None = getattr(self._local, "runs", None)
        if runs is not None and (cached := runs.get(run_id)) is not None:
            return cached  # read (or written) earlier in this transaction
        row = self._x(f"SELECT {_RUN_COLS} FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"run {run_id!r} not found")
        run = _run(row)
        if runs is not None:
            runs[run_id] = run
        return run

    def run_state(self, run_id: str) -> RunState:
        """A run's state alone, its row not decoded: for a caller that polls for the run's
        end after every turn (``stratoflow run``): ~3.7 µs, ``get_run`` ~9.5 (its row decoded)."""
        runs: dict[str, Run] | None = getattr(self._local, "runs", None)
        if runs is not None and (cached := runs.get(run_id)) is not None:
            return cached.state
        row = self._x("SELECT state FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"run {run_id!r} not found")
        return _RUN_STATES[row[0]]

    def list_runs(self, query: RunQuery) -> list[Run]:
        where, args = [], []
        for column, value in (("project", query.project), ("workflow", query.workflow)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if query.state is not None:
            where.append("state=?")
            args.append(query.state.value)
        if query.before is not None:
            where.append("seq < (SELECT seq FROM runs WHERE id=?)")
            args.append(query.before)
        sql = f"SELECT {_RUN_COLS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        return [_run(r) for r in self._x(sql, (*args, query.limit)).fetchall()]

    def _put_run(self, run: Run, expect: RunState) -> bool:
        # Counters are add_counters' alone: writing them here could erase a concurrent add.
        old = self._forget_run(run.id)
        cur = self._x(
            "UPDATE runs SET state=?, started_at=?, ended_at=?, error=?, paused_by_parent=? "
            "WHERE id=? AND state=?",
            (
                run.state.value,
                _ts(run.started_at),
                _ts(run.ended_at),
                run.error,
                int(run.paused_by_parent),
                run.id,
                expect.value,
            ),
        )
        if cur.rowcount == 1:
            if old is not None:  # the cached row, with what this statement set
                self._remember_run(
                    old.with_(
                        state=run.state, started_at=run.started_at, ended_at=run.ended_at,
                        error=run.error, paused_by_parent=run.paused_by_parent,
                    )
                )  # fmt: skip
            self._changed("runs", run.id, "run_states")
        return cur.rowcount == 1

    def _put_run_with_counters(
        self,
        run: Run,
        expect: RunState,
        if_ended_at: datetime | None = None,
        *,
        params: bool = False,
        deltas: tuple[int, int, int] | None = None,
    ) -> bool:
        """``params``: write ``run.params`` too (a plan's ``new_params``), in the same
        statement as its state. ``deltas``: add these to the counters (``Plan.deltas``)
        instead of setting them to ``run``'s. The run's plan generation is still the one
        ``run`` was read with (``Run.plan_gen``), and counts this plan."""
        ended = " AND plan_gen=?" + ("" if if_ended_at is None else " AND ended_at=?")
        new_params = "params=?, " if params else ""
        counters = "n_done=?, n_failed=?, n_running=?"
        if deltas is not None:
            counters = "n_done=n_done+?, n_failed=n_failed+?, n_running=n_running+?"
        self._forget_run(run.id)
        cur = self._x(
            f"UPDATE runs SET {new_params}state=?, started_at=?, ended_at=?, error=?, "
            f"paused_by_parent=?, {counters}, plan_gen=plan_gen+1 WHERE id=? AND state=?{ended}",
            (
                *((_json(run.params),) if params else ()),
                run.state.value,
                _ts(run.started_at),
                _ts(run.ended_at),
                run.error,
                int(run.paused_by_parent),
                *((run.n_done, run.n_failed, run.n_running) if deltas is None else deltas),
                run.id,
                expect.value,
                run.plan_gen,
                *(() if if_ended_at is None else (_ts(if_ended_at),)),
            ),
        )
        if cur.rowcount == 1:
            self._changed("runs", run.id, "run_states")
        return cur.rowcount == 1

    def add_counters(self, run_id: str, *, done: int = 0, failed: int = 0, running: int = 0) -> Run:
        # one statement in one transaction: the run returned is the one this addition made
        with self.transaction():
            return self._add_counters(run_id, done=done, failed=failed, running=running)

    def _add_counters(
        self, run_id: str, *, done: int = 0, failed: int = 0, running: int = 0
    ) -> Run:
        self._forget_run(run_id)
        row = self._x(
            f"UPDATE runs SET n_done=n_done+?, n_failed=n_failed+?, n_running=n_running+? "
            f"WHERE id=? RETURNING {_RUN_COLS}",
            (done, failed, running, run_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"run {run_id!r} not found")
        self._changed("runs", run_id)
        run = _run(row)
        self._remember_run(run)
        return run

    def _bump_counters(self, decision: Decision) -> None:
        """A decision's counters. A copy of the run cached in this transaction gets the same
        deltas; in a transaction without one, the statement returns the run for the cache
        (a turn reads its run after its first decision: the end's settling, the claim)."""
        old = self._forget_run(decision.run_id)
        if old is None and getattr(self._local, "runs", None) is not None:
            self._add_counters(
                decision.run_id, done=decision.done, failed=decision.failed,
                running=decision.running,
            )  # fmt: skip
            return
        cur = self._x(
            "UPDATE runs SET n_done=n_done+?, n_failed=n_failed+?, n_running=n_running+? WHERE id=?",
            (decision.done, decision.failed, decision.running, decision.run_id),
        )
        if cur.rowcount != 1:
            raise NotFound(f"run {decision.run_id!r} not found")
        if old is not None:
            self._remember_run(
                old.with_(
                    n_done=old.n_done + decision.done,
                    n_failed=old.n_failed + decision.failed,
                    n_running=old.n_running + decision.running,
                )
            )
        self._changed("runs", decision.run_id)

    def count_active_runs(self, project: str, workflow: str) -> int:
        active = [state.value for state in RunState if state.active]
        row = self._x(
            "SELECT COUNT(*) FROM runs WHERE project=? AND workflow=? "
            f"AND state IN ({','.join('?' * len(active))})",
            (project, workflow, *active),
        ).fetchone()
        return int(row[0])

    def count_queued_runs(self, project: str, workflow: str) -> int:
        row = self._x(
            "SELECT COUNT(*) FROM runs WHERE project=? AND workflow=? AND state='queued'",
            (project, workflow),
        ).fetchone()
        return int(row[0])

    def queued_runs(self, limit: int, skip: Collection[tuple[str, str]] = ()) -> list[Run]:
        pairs = sorted(set(skip))
        where = "".join(" AND NOT (project=? AND workflow=?)" for _ in pairs)
        rows = self._x(
            f"SELECT {_RUN_COLS} FROM runs WHERE state='queued'{where} ORDER BY seq LIMIT ?",
            (*(v for pair in pairs for v in pair), limit),
        ).fetchall()
        return [_run(r) for r in rows]

    def queued_runs_of(self, project: str, workflow: str, trigger: str) -> list[Run]:
        rows = self._x(
            f"SELECT {_RUN_COLS} FROM runs WHERE project=? AND workflow=? AND state='queued' "
            "AND trigger=? ORDER BY seq",
            (project, workflow, trigger),
        ).fetchall()
        return [_run(r) for r in rows]

    def runs_in_states(self, states: Sequence[RunState]) -> Iterator[Run]:
        marks = ",".join("?" * len(states))
        rows = self._x(
            f"SELECT {_RUN_COLS} FROM runs WHERE state IN ({marks}) ORDER BY seq",
            [s.value for s in states],
        ).fetchall()
        return iter([_run(r) for r in rows])

    # ------------------------------------------------------------ tasks
    def get_task(self, run_id: str, task_id: str) -> TaskInstance:
        row = self._x(
            f"SELECT {_TASK_COLS} FROM tasks WHERE run_id=? AND task_id=?", (run_id, task_id)
        ).fetchone()
        if row is None:
            raise NotFound(f"task {task_id!r} not found in run {run_id!r}")
        return _task(row)

    def get_tasks(self, run_id: str, task_ids: Sequence[str] | None = None) -> list[TaskInstance]:
        if task_ids is None:
            rows = self._x(f"SELECT {_TASK_COLS} FROM tasks WHERE run_id=?", (run_id,)).fetchall()
        else:
            rows = self._of_tasks(f"SELECT {_TASK_COLS} FROM tasks", run_id, task_ids)
        return [_task(r) for r in rows]

    def _of_tasks(self, select: str, run_id: str, task_ids: Sequence[str]) -> list[sqlite3.Row]:
        """The rows ``select`` finds for these tasks of the run, ``_CHUNK`` ids a query."""
        rows: list[sqlite3.Row] = []
        for chunk in range(0, len(task_ids), _CHUNK):
            part = task_ids[chunk : chunk + _CHUNK]
            rows += self._x(
                f"{select} WHERE run_id=? AND task_id IN ({','.join('?' * len(part))})",
                (run_id, *part),
            ).fetchall()
        return rows

    def task_states(self, run_id: str) -> dict[str, TaskState]:
        # two columns, no task decoded: a tenth of get_tasks' time at 10,000 tasks
        rows = self._x("SELECT task_id, state FROM tasks WHERE run_id=?", (run_id,)).fetchall()
        return {task_id: _TASK_STATES[state] for task_id, state in rows}

    def states_present(self, run_id: str, states: Collection[TaskState]) -> set[TaskState]:
        if not states:
            return set()
        rows = self._x(
            f"SELECT DISTINCT state FROM tasks WHERE run_id=? AND state IN "
            f"({','.join('?' * len(states))})",
            (run_id, *(s.value for s in states)),
        ).fetchall()
        return {_TASK_STATES[state] for (state,) in rows}

    def _write_task(
        self, t: TaskInstance, where: str = "", args: Sequence[Any] = (), *, upstream: bool = False
    ) -> int:
        seq = self._queue_numbers(1) if t.state is TaskState.QUEUED else None
        counts = (
            (t.upstream.succeeded, t.upstream.failed, t.upstream.skipped, int(t.rerun_child))
            if upstream
            else ()
        )
        cur = self._x(
            f"UPDATE tasks SET {_FULL_SET if upstream else _STATE_SET} WHERE run_id=? AND task_id=?{where}",
            (*counts, *_state_values(t, seq), t.run_id, t.task_id, *args),
        )
        if cur.rowcount:
            self._changed("tasks", (t.run_id, t.task_id))
        return cur.rowcount

    def _write_conditional(self, writes: Sequence[TaskWrite]) -> bool:
        """Several conditional task writes (each only if the task is still in its expected
        state and attempt) as one ``UPDATE ... FROM (VALUES ...)`` per 32: whether every one
        applied, i.e. the row counts sum to the number of writes. A lost condition leaves its
        row unwritten and the sum short, so the caller rolls the whole decision back, as when
        the writes were one statement each (a claim of several tasks: one statement instead
        of one per task, ~0.6x the SQLite time per row). The tasks entering the queue take
        consecutive sequence numbers, in the writes' order, from one counter bump. The
        statement's row counts are padded to a power of two with rows that match nothing (a
        NULL key), so a handful of statement texts stay in the connection's cache."""
        n_queued = sum(w.task.state is TaskState.QUEUED for w in writes)
        seq = self._queue_numbers(n_queued) - 1 if n_queued else 0
        rows: list[tuple[Any, ...]] = []
        for w in writes:
            t = w.task
            if t.state is TaskState.QUEUED:
                seq += 1
                values = _state_values(t, seq)
            else:
                values = _state_values(t, None)
            rows.append((*values, t.run_id, t.task_id, w.expect.value, w.expect_attempt))
        count = 0
        for start in range(0, len(rows), _MULTI_MAX):
            part = rows[start : start + _MULTI_MAX]
            size = 1 << (len(part) - 1).bit_length()
            padding = [None] * (_MULTI_WIDTH * (size - len(part)))
            count += self._x(_MULTI_UPDATE[size], [v for r in part for v in r] + padding).rowcount
        if count != len(writes):
            return False
        for w in writes:
            self._changed("tasks", (w.task.run_id, w.task.task_id))
        return True

    def apply(self, decision: Decision) -> bool:
        conn = self._conn()
        # a pool counter is a conditional write too: with one, the savepoint is needed
        if len(decision.tasks) + (decision.run is not None) + len(decision.pools) <= 1:
            # One conditional write, first: if it does not apply, nothing was written, so no
            # savepoint is needed (two statements fewer per decision; most decisions are
            # one task's move). A failure after it fails the whole transaction.
            with self.transaction():
                return self._apply_writes(decision)
        with self.transaction():
            conn.execute("SAVEPOINT decision")
            try:
                applied = self._apply_writes(decision)
            except BaseException:
                self._forget_reads()
                conn.execute("ROLLBACK TO decision")
                conn.execute("RELEASE decision")
                raise
            if not applied:
                self._forget_reads()
                conn.execute("ROLLBACK TO decision")
            conn.execute("RELEASE decision")
            return applied

    def _apply_writes(self, decision: Decision) -> bool:
        """The decision's conditional writes in order, stopping at the first that does not
        apply; then its counters. Whether all applied."""
        keys = {(w.task.run_id, w.task.task_id) for w in decision.tasks}
        if len(keys) >= _MULTI_MIN and len(keys) == len(decision.tasks):
            # several tasks, each once (one multi-row statement writes a row once)
            applied = self._write_conditional(decision.tasks)
        else:
            applied = all(
                self._write_task(
                    w.task, " AND state=? AND attempt=?", (w.expect.value, w.expect_attempt)
                )
                == 1
                for w in decision.tasks
            )
        if applied and decision.run is not None:
            assert decision.run_expect is not None
            applied = self._put_run(decision.run, decision.run_expect)
        if applied and decision.counters:
            self._bump_counters(decision)
        for delta in decision.pools if applied else ():
            applied = self._pool_delta(delta)
            if not applied:
                break
        return applied

    def _pool_delta(self, delta: PoolDelta) -> bool:
        scope, name = split_key(delta.key)
        cur = self._x(
            "UPDATE pools SET used = used + ? WHERE scope=? AND name=? "
            "AND (? IS NULL OR used + ? <= MIN(?, slots))",
            (delta.slots, scope, name, delta.limit, delta.slots, delta.limit),
        )
        # a claim fits the slots the pool has now, not only those it had when read (a resize
        # by another process in between); a release always applies (a pool deleted meanwhile has nothing to give back to)
        return cur.rowcount == 1 or delta.slots <= 0

    def pending_propagations(self, limit: int) -> list[TaskInstance]:
        rows = self._x(
            f"SELECT {_TASK_COLS} FROM tasks WHERE propagating=1 ORDER BY ended_at LIMIT ?",
            (limit,),
        ).fetchall()
        return [_task(r) for r in rows]

    def apply_plan(
        self, plan: Plan, expect: RunState, *, if_ended_at: datetime | None = None
    ) -> bool:
        with self.transaction():
            for read in plan.if_unchanged:  # checked first: refused, nothing is written
                same = self._x(
                    "SELECT 1 FROM tasks WHERE run_id=? AND task_id=? AND state=? AND attempt=? "
                    "AND ended_at IS ? AND up_ok=? AND up_failed=? AND up_skipped=?",
                    (
                        read.run_id,
                        read.task_id,
                        read.state.value,
                        read.attempt,
                        _ts(read.ended_at),
                        read.upstream.succeeded,
                        read.upstream.failed,
                        read.upstream.skipped,
                    ),
                ).fetchone()
                if same is None:
                    return False
            if not self._put_run_with_counters(
                plan.run, expect, if_ended_at, params=plan.new_params, deltas=plan.deltas
            ):
                return False
            for held in plan.pool_releases:  # only if still running that attempt
                row = self._x(
                    "SELECT pool, pool_slots FROM tasks WHERE run_id=? AND task_id=? "
                    "AND state='running' AND attempt=?",
                    (held.run_id, held.task_id, held.attempt),
                ).fetchone()
                if row is not None and row["pool"] is not None and row["pool_slots"] > 0:
                    self._pool_delta(PoolDelta(row["pool"], -row["pool_slots"]))
            for task in plan.tasks.values():
                self._write_task(task, upstream=True)
            for child, parents in plan.edges.items():
                self._x("DELETE FROM upstream WHERE run_id=? AND child=?", (plan.run.id, child))
                self._conn().executemany(
                    "INSERT INTO upstream VALUES (?,?,?,?)",
                    [(plan.run.id, child, p, o.value) for p, o in parents.items()],
                )
            return True

    def record_upstream(
        self, run_id: str, child: str, parent: str, outcome: TaskState
    ) -> TaskInstance | None:
        column = _UP_COLUMN.get(outcome, "up_failed")
        with self.transaction():
            # The (run, child, parent) key makes the count idempotent: a duplicated or late
            # completion event cannot count the same parent twice.
            cur = self._x(
                "INSERT OR IGNORE INTO upstream VALUES (?,?,?,?)",
                (run_id, child, parent, outcome.value),
            )
            if cur.rowcount == 0:
                return None
            row = self._x(
                f"UPDATE tasks SET {column}={column}+1 WHERE run_id=? AND task_id=? RETURNING {_TASK_COLS}",
                (run_id, child),
            ).fetchone()
            return _task(row)

    def record_upstreams(
        self, run_id: str, parent: str, outcomes: Sequence[tuple[str, TaskState]]
    ) -> list[TaskInstance | None]:
        # Two statements per chunk and outcome instead of two per child: the edges in one
        # INSERT OR IGNORE (RETURNING yields only the rows it inserted: the new counts),
        # then one UPDATE per outcome column over those children.
        after: dict[str, TaskInstance] = {}
        with self.transaction():
            for start in range(0, len(outcomes), _CHUNK):
                part = outcomes[start : start + _CHUNK]
                rows = self._x(
                    "INSERT OR IGNORE INTO upstream VALUES "
                    + ",".join(["(?,?,?,?)"] * len(part))
                    + " RETURNING child",
                    [v for child, o in part for v in (run_id, child, parent, o.value)],
                ).fetchall()
                new = {r[0] for r in rows}
                by_column: dict[str, list[str]] = {}
                for child, o in part:
                    if child in new:
                        by_column.setdefault(_UP_COLUMN.get(o, "up_failed"), []).append(child)
                for column, children in by_column.items():
                    for r in self._x(
                        f"UPDATE tasks SET {column}={column}+1 WHERE run_id=? AND task_id IN "
                        f"({','.join('?' * len(children))}) RETURNING {_TASK_COLS}",
                        (run_id, *children),
                    ).fetchall():
                        after[r["task_id"]] = _task(r)
        return [after.get(child) for child, _ in outcomes]

    def queued_tasks(self, limit: int) -> list[TaskInstance]:
        # CROSS JOIN fixes the join order: walk the queue's partial index in queue order and
        # stop at the limit. Left to itself the planner starts from the running runs and
        # reads every task of each: O(tasks in the run) per call, 10,000 rows at W4.
        # Only the rows a run's free slots can take are decoded (the rest would be read,
        # decoded and dropped by the claim on every turn: most of a turn's cost at a low
        # `concurrency`).
        # Nor are the rows after them read: when no run with a free slot is unlimited, the
        # rows stop once every free slot has a task (at `concurrency: 8`, 8 rows read instead
        # of a whole layer's queue on every turn; the walk was ~0.5 ms a turn).
        unlimited, free_slots = self._x(
            "SELECT COUNT(*) - COUNT(concurrency), TOTAL(concurrency - n_running) FROM runs "
            "WHERE state='running' AND (concurrency IS NULL OR n_running < concurrency)"
        ).fetchone()
        if not unlimited and not free_slots:
            return []
        cur = self._x(_QUEUE_WALK, (limit,))
        offered: dict[str, int] = {}
        out = []
        for r in cur:
            run_id, free = r[0], r[_N_TASK_COLS]  # _TASK_COLS starts with run_id; then free
            if free is not None:
                n = offered.get(run_id, 0)
                if n >= free:
                    continue
                offered[run_id] = n + 1
            out.append(_task(r))
            if not unlimited and len(out) >= free_slots:
                break  # every free slot has a task: the rest would be left out
        cur.close()
        return out

    def run_queue(self, run_id: str, limit: int) -> list[TaskInstance]:
        rows = self._x(
            f"SELECT {_TASK_COLS} FROM tasks WHERE state='queued' AND pool_rank IS NULL "
            "AND run_id=? ORDER BY priority DESC, queued_seq LIMIT ?",
            (run_id, limit),
        ).fetchall()
        return [_task(r) for r in rows]

    # ------------------------------------------------------------ pools
    def set_pool(self, scope: str, name: str, slots: int) -> Pool:
        with self.transaction():
            self._x(
                "INSERT INTO pools (scope, name, slots) VALUES (?,?,?) "
                "ON CONFLICT (scope, name) DO UPDATE SET slots=excluded.slots",
                (scope, name, slots),
            )
            pool = self.get_pool(pool_key(scope, name))
        assert pool is not None
        return pool

    def get_pool(self, key: str) -> Pool | None:
        scope, name = split_key(key)
        row = self._x("SELECT * FROM pools WHERE scope=? AND name=?", (scope, name)).fetchone()
        return None if row is None else Pool(row["scope"], row["name"], row["slots"], row["used"])

    def list_pools(self, project: str | None = None) -> list[Pool]:
        sql = "SELECT * FROM pools"
        args: tuple[str, ...] = ()
        if project is not None:
            sql, args = sql + " WHERE scope IN ('', ?)", (project,)
        rows = self._x(sql + " ORDER BY scope, name", args).fetchall()
        return [Pool(r["scope"], r["name"], r["slots"], r["used"]) for r in rows]

    def delete_pool(self, key: str, check: Callable[[], None] | None = None) -> bool:
        scope, name = split_key(key)
        # BEGIN IMMEDIATE: the write lock from the start, so nothing ``check`` looks for
        # (a retry entering its wait, in another process) can appear before the delete
        with self.transaction():
            if self.get_pool(key) is None:
                raise NotFound(f"pool {name!r} not found")
            if check is not None:
                check()
            cur = self._x(
                "DELETE FROM pools WHERE scope=? AND name=? AND used=0 AND NOT EXISTS "
                "(SELECT 1 FROM tasks WHERE state='queued' AND pool_rank IS NOT NULL AND pool=?)",
                (scope, name, key),
            )
            return cur.rowcount == 1

    def pool_waiting(self, key: str, limit: int) -> list[TaskInstance]:
        rows = self._x(
            f"SELECT {_TASK_COLS} FROM tasks WHERE state='queued' AND pool_rank IS NOT NULL "
            "AND pool=? ORDER BY pool_rank, queued_seq LIMIT ?",
            (key, limit),
        ).fetchall()
        return [_task(r) for r in rows]

    def pool_running(self, key: str, limit: int) -> list[TaskInstance]:
        rows = self._x(
            f"SELECT {_TASK_COLS} FROM tasks WHERE state='running' AND pool IS NOT NULL "
            "AND pool=? LIMIT ?",
            (key, limit),
        ).fetchall()
        return [_task(r) for r in rows]

    def pools_with_waiting(self, limit: int) -> list[str]:
        rows = self._x(
            "SELECT DISTINCT pool FROM tasks WHERE state='queued' AND pool_rank IS NOT NULL "
            "LIMIT ?",
            (limit,),
        ).fetchall()
        return [r[0] for r in rows]

    def due_retries(self, now: datetime, limit: int) -> list[TaskInstance]:
        rows = self._x(
            f"SELECT {_TASK_COLS} FROM tasks WHERE state='up_for_retry' AND ready_at<=? ORDER BY ready_at LIMIT ?",
            (_ts(now), limit),
        ).fetchall()
        return [_task(r) for r in rows]

    def expired_tasks(self, now: datetime, limit: int) -> list[TaskInstance]:
        rows = self._x(
            f"SELECT {_TASK_COLS} FROM tasks WHERE state='running' AND deadline<=? ORDER BY deadline LIMIT ?",
            (_ts(now), limit),
        ).fetchall()
        return [_task(r) for r in rows]

    def periodic_due(self, due: datetime, overdue: datetime) -> tuple[bool, bool, bool]:
        # one read on the indexes due_retries, expired_tasks and queued_runs use, instead of
        # the three (each a statement on every turn, nearly always finding nothing)
        row = self._x(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE state='up_for_retry' AND ready_at<=?), "
            "EXISTS (SELECT 1 FROM tasks WHERE state='running' AND deadline<=?), "
            "EXISTS (SELECT 1 FROM runs WHERE state='queued')",
            (_ts(due), _ts(overdue)),
        ).fetchone()
        return bool(row[0]), bool(row[1]), bool(row[2])

    def running_tasks(self) -> list[TaskInstance]:
        rows = self._x(f"SELECT {_TASK_COLS} FROM tasks WHERE state='running'").fetchall()
        return [_task(r) for r in rows]

    def unended_attempts(self, run_id: str | None = None) -> list[tuple[str, str, int]]:
        # every run's: a scan of the attempts, once a start (no index on the hot path for a
        # rare case); a run's: its attempts' key range
        rows = self._x(
            "SELECT a.run_id, a.task_id, a.attempt FROM attempts a JOIN tasks t "
            "ON t.run_id = a.run_id AND t.task_id = a.task_id "
            "WHERE a.state = 'running' AND NOT (t.state = 'running' AND t.attempt = a.attempt) "
            + ("" if run_id is None else "AND a.run_id = ? ")
            + "ORDER BY a.run_id, a.task_id, a.attempt",
            () if run_id is None else (run_id,),
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def next_wakeup(self) -> datetime | None:
        row = self._x(
            "SELECT MIN(t) FROM (SELECT MIN(ready_at) AS t FROM tasks WHERE state='up_for_retry' "
            "UNION ALL SELECT MIN(deadline) FROM tasks WHERE state='running')"
        ).fetchone()
        return _dt(row[0])

    # ------------------------------------------------------------ attempts
    def start_attempt(self, attempt: Attempt) -> None:
        self.start_attempts([attempt])

    def start_attempts(self, attempts: Sequence[Attempt]) -> None:
        # a turn's starts in one statement (per 32: a few statement texts stay cached)
        for start in range(0, len(attempts), _STARTS_MAX):
            part = attempts[start : start + _STARTS_MAX]
            self._x(
                _START_ATTEMPTS[len(part)],
                [
                    v
                    for a in part
                    for v in (a.run_id, a.task_id, a.attempt, a.state, _ts(a.started_at), a.log)
                ],
            )
        if self.on_commit:
            for a in attempts:
                self._changed("attempts", (a.run_id, a.task_id, a.attempt))

    def finish_attempt(self, attempt: Attempt) -> None:
        self._x(
            "INSERT INTO attempts VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (run_id, task_id, attempt) "
            "DO UPDATE SET state=excluded.state, ended_at=excluded.ended_at, "
            "exit_code=excluded.exit_code, error=excluded.error, outputs=excluded.outputs, "
            "log=COALESCE(excluded.log, attempts.log) "
            # the first end wins: a timed-out attempt's later exit report changes nothing
            "WHERE attempts.state = 'running'",
            (
                attempt.run_id, attempt.task_id, attempt.attempt, attempt.state,
                _ts(attempt.started_at), _ts(attempt.ended_at), attempt.exit_code, attempt.error,
                attempt.log, _json(attempt.outputs) if attempt.outputs else "{}",
            ),
        )  # fmt: skip
        self._changed("attempts", (attempt.run_id, attempt.task_id, attempt.attempt))

    # ------------------------------------------------------------ rows for the local feed
    # The read model's local feed (feed.py) reads what it projects as stored: plain tuples in
    # the order of the FEED_*_COLUMNS (named as the read model names them), times and JSON as
    # text, nothing decoded. A key list is sent as IN lists padded to a power of two (with
    # NULLs, which match nothing), so a handful of statement texts stay in the cache.
    def _tuples(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._conn().cursor()
        cur.row_factory = None
        rows: list[tuple[Any, ...]] = cur.execute(sql, args).fetchall()
        return rows

    def _tuples_in(
        self, head: str, first: Sequence[Any], keys: Sequence[Any], tail: str = ""
    ) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(keys), _FEED_CHUNK):
            part = list(keys[start : start + _FEED_CHUNK])
            size = 1 << (len(part) - 1).bit_length()
            part += [None] * (size - len(part))
            rows += self._tuples(f"{head} IN ({','.join('?' * size)}){tail}", (*first, *part))
        return rows

    @contextmanager
    def feed_snapshot(self) -> Iterator[None]:
        """The reads inside see one snapshot (one read transaction on this thread's
        connection: SQLite checks once whether the file changed, not once per statement).
        Not inside a write transaction of this thread."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    def feed_runs(self, run_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """The runs of these ids (FEED_RUN_COLUMNS), in id order."""
        return self._tuples_in(_FEED_RUNS, (), run_ids, " ORDER BY id")

    def feed_tasks(
        self, run_id: str, task_ids: Sequence[str] | None = None
    ) -> list[tuple[Any, ...]]:
        """A run's tasks (FEED_TASK_COLUMNS), all or these, in task order."""
        if task_ids is None:
            return self._tuples(_FEED_TASKS + " WHERE run_id=? ORDER BY task_id", (run_id,))
        return self._tuples_in(
            _FEED_TASKS + " WHERE run_id=? AND task_id", (run_id,), task_ids, " ORDER BY task_id"
        )

    def feed_attempts(
        self, run_id: str, task_ids: Sequence[str] | None = None
    ) -> list[tuple[Any, ...]]:
        """The attempts (FEED_ATTEMPT_COLUMNS) of a run's tasks, all or these, in order."""
        order = " ORDER BY task_id, attempt"
        if task_ids is None:
            return self._tuples(_FEED_ATTEMPTS + " WHERE run_id=?" + order, (run_id,))
        return self._tuples_in(
            _FEED_ATTEMPTS + " WHERE run_id=? AND task_id", (run_id,), task_ids, order
        )

    def feed_version(
        self, project: str, name: str, version: int | None = None
    ) -> tuple[Any, ...] | None:
        """A version (FEED_VERSION_COLUMNS; None: the latest) with its workflow's pause, or
        None if there is no such version."""
        rows = self._tuples(
            f"SELECT {_FEED_VERSION_COLS} FROM workflows w JOIN workflow_versions v "
            "ON v.project=w.project AND v.name=w.name AND v.version=COALESCE(?, w.latest) "
            "WHERE w.project=? AND w.name=?",
            (version, project, name),
        )
        return rows[0] if rows else None

    def feed_catalog(self) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int, int]]]:
        """Every version's key and every workflow's (project, name, latest, paused)."""
        return (
            self._tuples("SELECT project, name, version FROM workflow_versions"),
            self._tuples("SELECT project, name, latest, paused FROM workflows"),
        )

    def feed_run_summaries(self) -> list[tuple[str, str, int, int, int]]:
        """Every run's (id, state, n_done, n_failed, n_running)."""
        return self._tuples("SELECT id, state, n_done, n_failed, n_running FROM runs")

    def feed_changes(self, after: int, limit: int) -> tuple[int, list[tuple[str, str]], bool]:
        """The change log past ``after``, at most ``limit`` entries of it: the position it
        reaches (``after`` if nothing is past it; from 0 if the log ends before ``after``:
        not this store's position), the (run id, task id) of every task changed in that
        part, each once (``task_changes``: a task's visible fields, its attempts started or
        changed), and whether more of the log follows."""
        end = int(self._tuples("SELECT max(seq) FROM task_changes")[0][0] or 0)
        if end < after:  # a position from another store (a read model this home did not fill)
            after = 0
        last = min(end, after + limit)  # seqs are rowids, none deleted: no gaps
        if last == after:
            return after, [], False
        keys = self._tuples(
            "SELECT DISTINCT run_id, task_id FROM task_changes WHERE seq > ? AND seq <= ?",
            (after, last),
        )
        return last, [(r, t) for r, t in keys], last < end

    # ------------------------------------------------------------ run revisions
    def run_revision(self, run_id: str) -> int:
        row = self._x("SELECT max(seq) FROM task_changes WHERE run_id=?", (run_id,)).fetchone()
        return int(row[0] or 0)

    def changed_since(self, run_id: str, revision: int) -> list[str]:
        rows = self._x(
            "SELECT DISTINCT task_id FROM task_changes WHERE run_id=? AND seq>?", (run_id, revision)
        ).fetchall()
        return [r[0] for r in rows]

    def list_attempts(self, run_id: str, task_id: str | None = None) -> list[Attempt]:
        sql, args = "SELECT * FROM attempts WHERE run_id=?", [run_id]
        if task_id is not None:
            sql += " AND task_id=?"
            args.append(task_id)
        rows = self._x(sql + " ORDER BY task_id, attempt", args).fetchall()
        return [_attempt(r) for r in rows]

    def tasks_of_note(self, run_id: str) -> tuple[list[TaskInstance], list[Attempt]]:
        """The run's tasks that failed or hold outputs (their own or an attempt's), and their
        attempts: what a run's text summary says more of than its counts (an error, an
        output cut in the view, whose cut depends on every output before it). An empty
        output is stored as '{}'; a run of 2,000 `true` tasks reads none of them."""
        rows = self._x(
            f"SELECT {_TASK_COLS} FROM tasks WHERE run_id=? AND (state='failed' "
            "OR outputs != '{}' OR task_id IN "
            "(SELECT task_id FROM attempts WHERE run_id=? AND outputs != '{}'))",
            (run_id, run_id),
        ).fetchall()
        tasks = [_task(r) for r in rows]
        return tasks, self.attempts_of(run_id, [t.task_id for t in tasks]) if tasks else []

    def attempts_of(self, run_id: str, task_ids: Sequence[str]) -> list[Attempt]:
        # a query per task made a poll of a 2,000-task run's delta (~500 tasks) ~500 queries
        rows = self._of_tasks("SELECT * FROM attempts", run_id, task_ids)
        rows.sort(key=lambda r: (r["task_id"], r["attempt"]))
        return [_attempt(r) for r in rows]
