"""The local runtime's projector: the SQLite state store's commits -> the read model.

The store calls :meth:`LocalFeed.on_commit` after each commit with the keys it wrote (a few
set inserts on the scheduler's thread; nothing else). A worker thread drains those batches,
merges them, re-reads the rows from the store and projects them. One revision is taken per
drained batch from a clock that only moves forward (``max(last + 1, now in µs)``, seeded
from the highest revision already in the read model), and the re-read happens after the
commit it follows, so a later batch always carries the newer row: the projection's
``rev`` guard then makes the order of application irrelevant.

The re-read takes the store's rows as stored (``SqliteStore.feed_*``: tuples, times and
JSON as text) and hands the read model its rows as text (:class:`Rows`), with no record
built in between: a time already in the read model's form and an empty JSON object (nearly
every value) pass as they are, anything else goes through the read model's codecs, so the
text written is the one ``ReadModel.apply`` writes for the decoded records.

On start (and after a failed batch) the feed catches up: every workflow version the read
model lacks, every workflow whose latest version or pause differ from the read model's,
every run that is not finished, and every run whose state or counters differ from the read
model's are projected again, runs with all their tasks and attempts. (A version never
changes, and a workflow row follows from its latest version and pause: equal ones are left
alone.) A finished run can change without its state or counters changing (an attempt of a
stopped run that ends after the stop, a rerun that ends as the run had ended): every batch
also reads the store's change log (``task_changes``) past the position the read model
records, and projects each task named there with all its attempts; the new position is
written in the same transaction as the rows. A crash between a commit and its projection,
or a batch the read model refused, therefore loses nothing.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from stratoflow.adapters.local.sqlite_store import (
    FEED_ATTEMPT_COLUMNS,
    FEED_RUN_COLUMNS,
    FEED_TASK_COLUMNS,
    SqliteStore,
    StoreChanges,
)
from stratoflow.engine import RunState
from stratoflow.readmodel import (
    ATTEMPT_COLUMNS,
    AUDIT_COLUMNS,
    RUN_COLUMNS,
    TASK_COLUMNS,
    ReadModel,
    Rows,
    json_text,
    rev_text,
    to_json,
    ts_text,
)

log = logging.getLogger("stratoflow.readmodel")

_CATCH_UP = "catch-up"
_EXPIRED_EVERY = 60.0  # seconds between looks for audit intents left pending


class LocalFeed:
    def __init__(
        self,
        store: SqliteStore,
        readmodel: ReadModel,
        *,
        micros: Callable[[], int] = lambda: time.time_ns() // 1000,
        linger: float = 0.2,
        log_part: int = 50_000,
    ) -> None:
        """``linger``: after the first commit of a quiet spell, wait this long and project
        everything committed meanwhile at once (a task touched five times is read and
        written once). It bounds how far the read model trails the store. ``log_part``:
        entries of the store's change log read and written per transaction."""
        self.store = store
        self._linger = linger
        self.readmodel = readmodel
        self._micros = micros
        self._rev = 0
        self._position = 0  # the store's change log is projected up to here
        self._log_part = log_part
        # the log's name in the read model's feed_positions: its store's file and the id
        # the store was made with, so that two homes given one PostgreSQL database keep a
        # position each, and a store made anew at a path (a home deleted and made again)
        # does not take the old one's (past its own first log entries, which it would skip)
        self.source = f"local:{store.path}#{store.store_id}"
        # the audit journal's position (``SqliteAudit``), kept beside the change log's
        self.audit_source = f"{self.source}#audit"
        self._audit_position = 0
        self._expired_checked = float("-inf")  # monotonic seconds
        self._queue: queue.SimpleQueue[StoreChanges | str | None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._enqueued = 0
        self._done = 0
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._closing = threading.Event()  # close() cuts a linger short

    # ------------------------------------------------------------------ wiring
    def start(self) -> None:
        """Hook into the store, queue a catch-up, start the worker."""
        self._rev = _highest_rev(self.readmodel)
        before = self.store.feed_source_before
        if before is not None and before == f"local:{self.store.path}":
            # a store from before store ids, at the path its position was recorded under
            position = self.readmodel.move_feed_position(before, self.source)
        else:
            position = self.readmodel.feed_position(self.source)
        self._position = position or 0
        self._audit_position = self.readmodel.feed_position(self.audit_source) or 0
        self.store.on_commit.append(self.on_commit)
        self._put(_CATCH_UP)
        self._thread = threading.Thread(target=self._work, name="stratoflow-projector", daemon=True)
        self._thread.start()

    def on_commit(self, changes: StoreChanges) -> None:
        self._put(changes)

    def _put(self, item: StoreChanges | str) -> None:
        with self._cond:
            self._enqueued += 1
        self._queue.put(item)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything committed so far is projected; False on timeout."""
        with self._cond:
            target = self._enqueued
            return self._cond.wait_for(lambda: self._done >= target, timeout=timeout)

    def close(self) -> None:
        if self.on_commit in self.store.on_commit:
            self.store.on_commit.remove(self.on_commit)
        if self._thread is not None:
            # what is queued is projected now, not after the linger: a `stratoflow run`
            # waited up to 0.2 s at exit for it (docs/benchmarks.md, "the CLI's start-up")
            self._closing.set()
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            items = [self._queue.get()]
            # a catch-up (on start, after a failure) goes at once: a server waits for the
            # first before it serves (what `stratoflow run` left unprojected)
            if items[0] is not None and not isinstance(items[0], str) and self._linger > 0:
                self._closing.wait(self._linger)
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            batch = [i for i in items if i is not None]
            # (not `None in items`: that calls each StoreChanges' __eq__, ~0.3 us a commit)
            stop = len(batch) < len(items)
            try:
                self._project(batch)
            except Exception:
                # e.g. the PostgreSQL server is down: what this batch held is found again by
                # the catch-up, retried with a growing pause (1 s, 2 s, ... 30 s); until it
                # succeeds the read model says since when it may miss changes
                if self.readmodel.stale_since is None:
                    self.readmodel.stale_since = datetime.fromtimestamp(self._micros() / 1e6, UTC)
                self._failures += 1
                log.exception("projecting into the read model failed; catching up again")
                if not stop:
                    # cut short by close(): a stopping server does not wait out the pause
                    self._closing.wait(min(2.0 ** (self._failures - 1), 30.0))
                    self._put(_CATCH_UP)
            else:
                # the first batch after a failure holds the catch-up that replaced it
                self._failures = 0
                self.readmodel.stale_since = None
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()
            if stop:
                return

    def _next_rev(self) -> int:
        self._rev = max(self._rev + 1, self._micros())
        return self._rev

    def _project(self, batch: list[StoreChanges | str]) -> None:
        merged = StoreChanges()
        whole: set[str] = set()  # runs read with all their tasks and attempts
        catch_up = False
        for item in batch:
            if isinstance(item, str):
                catch_up = True
                continue
            merged.versions |= item.versions
            merged.workflows |= item.workflows
            merged.runs |= item.runs
            merged.tasks |= item.tasks
            merged.attempts |= item.attempts
        if catch_up:
            self._add_catch_up(merged, whole)
        more = True
        while more:  # the log in parts: a long one (a read model of an older version) is
            # not read, held and written at once
            rev = self._next_rev()  # taken before the re-reads below: they see at least this
            with self.store.feed_snapshot():
                # every task the store's change log holds past the position, with all its
                # attempts: what a batch that failed, or a process that died, left
                # unprojected (the keys of a commit are noted only after it, in memory)
                position, logged, more = self.store.feed_changes(self._position, self._log_part)
                rows = self._read(merged, whole, rev, logged)
            if rows or position != self._position:
                self.readmodel.write(rows, (self.source, position))
            self._position = position
            merged, whole = StoreChanges(), set()  # the keys went with the first part
        self._project_audit(catch_up)

    def _project_audit(self, catch_up: bool) -> None:
        """The audit journal's settled entries past the recorded position, written with the
        new position (an entry delivered again is kept once: its id). On a catch-up, and at
        most once a minute otherwise, intents left pending past their expiry (their request
        died before its outcome was recorded) are settled first, as "outcome unknown". Then the
        entries the read model has (at or below its position) leave the journal."""
        now = time.monotonic()
        if catch_up or now - self._expired_checked >= _EXPIRED_EVERY:
            self._expired_checked = now
            self.store.audit_settle_expired(datetime.fromtimestamp(self._micros() / 1e6, UTC))
        more = True
        while more:
            position, texts, more = self.store.feed_audit(self._audit_position, self._log_part)
            if position != self._audit_position:
                rows = Rows(audit=[_audit_row(t) for t in texts])
                self.readmodel.write(rows, (self.audit_source, position))
            self._audit_position = position
        # committed with the position: the journal no longer needs them (also those a failed
        # removal, or a process that died before it, left below the position)
        try:
            self.store.audit_forget(self._audit_position)
        except Exception:
            # nothing is lost: they stay below the position until the next pass removes them
            log.exception("removing projected entries from the audit journal failed")

    def _read(
        self,
        keys: StoreChanges,
        whole: set[str],
        rev: int,
        logged: Sequence[tuple[str, str]] = (),
    ) -> Rows:
        """The rows of these keys (and all of the ``whole`` runs, and the ``logged`` tasks
        with all their attempts) as the store holds them, turned into the read model's rows
        as text: no record is built, and a time or JSON text already in the read model's
        form (nearly all) is passed on as it is."""
        store, out, rev_ = self.store, Rows(), rev_text(rev)
        # a version: its row (the document decoded once and encoded again, ~8 ms for a
        # 2,000-task workflow) and the workflow's row; a pause or a schedule error: the
        # workflow's row alone, unless the batch holds its latest version's already
        written: set[tuple[str, str, int]] = set()
        for project, name, version in sorted(keys.versions):
            row = store.feed_version(project, name, version)
            if row is not None:
                document = json.loads(row[4])
                out.versions.append(_version_row(row, document))
                out.workflows.append(_workflow_row(row, document, rev_))
                written.add((project, name, version))
        for project, name in sorted(keys.workflows):
            row = store.feed_version(project, name)
            if row is not None and (project, name, row[2]) not in written:
                out.workflows.append(_workflow_row(row, json.loads(row[4]), rev_))
        # a logged task's run too: its times and error change with the task (a rerun that
        # ends in the state the run had ended in)
        run_ids = keys.runs | {run_id for run_id, _ in logged}
        if run_ids:
            out.runs = [_run_row(r, rev_) for r in store.feed_runs(sorted(run_ids))]
        tasks: dict[str, set[str]] = {}
        for run_id, task_id in keys.tasks:
            if run_id not in whole:
                tasks.setdefault(run_id, set()).add(task_id)
        attempts: dict[str, set[tuple[str, int]]] = {}
        for run_id, task_id, attempt in keys.attempts:
            if run_id not in whole:
                attempts.setdefault(run_id, set()).add((task_id, attempt))
        every: dict[str, set[str]] = {}  # tasks read with all their attempts
        for run_id, task_id in logged:
            if run_id not in whole:
                tasks.setdefault(run_id, set()).add(task_id)
                every.setdefault(run_id, set()).add(task_id)
                attempts.setdefault(run_id, set())
        for run_id in sorted(whole):
            out.tasks += [_task_row(r, rev_) for r in store.feed_tasks(run_id)]
        for run_id in sorted(tasks):
            ids = sorted(tasks[run_id])
            out.tasks += [_task_row(r, rev_) for r in store.feed_tasks(run_id, ids)]
        for run_id in sorted(whole):
            out.attempts += [_attempt_row(r, rev_) for r in store.feed_attempts(run_id)]
        for run_id in sorted(attempts):
            wanted, all_of = attempts[run_id], every.get(run_id, set())
            ids = sorted({task_id for task_id, _ in wanted} | all_of)
            out.attempts += [
                _attempt_row(r, rev_)
                for r in store.feed_attempts(run_id, ids)
                # not the task's earlier attempts, unless the log names the task
                if (r[1], r[2]) in wanted or r[1] in all_of
            ]
        return out

    def _add_catch_up(self, into: StoreChanges, whole: set[str]) -> None:
        """What may differ between the store and the read model: versions it lacks (a
        version never changes), workflows whose latest version or pause differ, runs not
        finished or whose state or counters differ (read whole). Only keys and summaries
        are read here, nothing decoded."""
        versions, heads = self.store.feed_catalog()
        known_versions = self.readmodel.version_keys()
        into.versions.update(k for k in versions if k not in known_versions)
        known_heads = self.readmodel.workflow_heads()
        for project, name, latest, paused in heads:
            if known_heads.get((project, name)) != (latest, bool(paused)):
                into.workflows.add((project, name))
        known = self.readmodel.run_summaries()
        for run_id, state, *counters in self.store.feed_run_summaries():
            if not _TERMINAL[state] or known.get(run_id) != (state, *counters):
                into.runs.add(run_id)
                whole.add(run_id)


# ------------------------------------------------------------------ store rows -> read model
_TERMINAL = {s.value: s.terminal for s in RunState}
# The store's columns are read in the read model's order (checked here, so that a column
# added to either fails every test until both have it).
if (
    (*FEED_RUN_COLUMNS, "rev") != RUN_COLUMNS
    or (*FEED_TASK_COLUMNS, "rev") != TASK_COLUMNS
    or (*FEED_ATTEMPT_COLUMNS, "rev") != ATTEMPT_COLUMNS
):  # pragma: no cover - a guard for the next column
    raise ImportError("the local feed's columns are not the read model's")


def _run_row(row: tuple[Any, ...], rev: str) -> tuple[Any, ...]:
    """What ``run_row`` makes of the run this store row decodes to (RUN_COLUMNS)."""
    (
        id_, project, workflow, version, state, params, logical_date, created_at, started_at,
        ended_at, trigger, n_tasks, n_done, n_failed, n_running, error, parent,
    ) = row  # fmt: skip
    return (
        id_, project, workflow, version, state, json_text(params), ts_text(logical_date),
        ts_text(created_at), ts_text(started_at), ts_text(ended_at), trigger, n_tasks, n_done,
        n_failed, n_running, error, parent, rev,
    )  # fmt: skip


def _task_row(row: tuple[Any, ...], rev: str) -> tuple[Any, ...]:
    """What ``task_row`` makes of the task this store row decodes to (TASK_COLUMNS): no
    parsing for times in the read model's form and for no outputs (~1 us a row)."""
    (
        run_id, task_id, state, attempt, attempt_base, ready_at, deadline, started_at,
        ended_at, outputs, error, priority,
    ) = row  # fmt: skip
    return (
        run_id, task_id, state, attempt, attempt_base,
        None if ready_at is None else ts_text(ready_at),
        None if deadline is None else ts_text(deadline),
        None if started_at is None else ts_text(started_at),
        None if ended_at is None else ts_text(ended_at),
        outputs if outputs == "{}" else json_text(outputs), error, priority, rev,
    )  # fmt: skip


def _attempt_row(row: tuple[Any, ...], rev: str) -> tuple[Any, ...]:
    """What ``attempt_row`` makes of the attempt this store row decodes to
    (ATTEMPT_COLUMNS)."""
    run_id, task_id, attempt, state, started_at, ended_at, exit_code, error, log_, outputs = row
    return (
        run_id, task_id, attempt, state, ts_text(started_at),
        None if ended_at is None else ts_text(ended_at), exit_code, error, log_,
        outputs if outputs == "{}" else json_text(outputs), rev,
    )  # fmt: skip


def _version_row(row: tuple[Any, ...], document: Any) -> tuple[Any, ...]:
    """What ``version_rows`` makes of the version this store row decodes to, first row
    (VERSION_COLUMNS); ``document`` is the row's, decoded."""
    project, name, version, digest, _document, source, created_at, _paused = row
    return (project, name, version, digest, to_json(document), source, ts_text(created_at))


def _workflow_row(row: tuple[Any, ...], document: Any, rev: str) -> tuple[Any, ...]:
    """The second row (WORKFLOW_COLUMNS): the description is the document's, if text."""
    project, name, version, _digest, _document, _source, _created_at, paused = row
    description = document.get("description")
    return (
        project, name, version, description if isinstance(description, str) else None,
        int(paused), rev,
    )  # fmt: skip


def _audit_row(text: str) -> tuple[Any, ...]:
    """The read model's row (AUDIT_COLUMNS) of a journal entry (the row's JSON)."""
    row = json.loads(text)
    return tuple(row[c] for c in AUDIT_COLUMNS)


def _highest_rev(readmodel: ReadModel) -> int:
    best = 0
    for table in ("workflows", "runs", "task_instances", "attempts"):
        rows: list[dict[str, Any]] = readmodel.db.query(f"SELECT MAX(rev) AS rev FROM {table}")
        if rows and rows[0]["rev"] is not None:
            best = max(best, int(rows[0]["rev"]))
    return best
