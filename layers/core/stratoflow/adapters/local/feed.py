"""The local runtime's projector: the SQLite state store's commits -> the read model.

The store calls :meth:`LocalFeed.on_commit` after each commit with the keys it wrote (a few
set inserts on the scheduler's thread; nothing else). A worker thread drains those batches,
merges them, re-reads the rows from the store and projects them. One revision is taken per
drained batch from a clock that only moves forward (``max(last + 1, now in µs)``, seeded
from the highest revision already in the read model), and the re-read happens after the
commit it follows, so a later batch always carries the newer row: the projection's
``rev`` guard then makes the order of application irrelevant.

On start (and after a failed batch) the feed catches up: every workflow version, every
run that is not finished, and every run whose state or counters differ from the read
model's are projected again with their tasks and attempts. A crash between a commit and its
projection therefore loses nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from stratoflow.adapters.local.sqlite_store import SqliteStore, StoreChanges
from stratoflow.errors import NotFound
from stratoflow.ports import RunQuery
from stratoflow.readmodel import Change, ReadModel

log = logging.getLogger("stratoflow.readmodel")

_CATCH_UP = "catch-up"
_PAGE = 500


class LocalFeed:
    def __init__(
        self,
        store: SqliteStore,
        readmodel: ReadModel,
        *,
        micros: Callable[[], int] = lambda: time.time_ns() // 1000,
        linger: float = 0.2,
    ) -> None:
        """``linger``: after the first commit of a quiet spell, wait this long and project
        everything committed meanwhile at once (a task touched five times is read and
        written once). It bounds how far the read model trails the store."""
        self.store = store
        self._linger = linger
        self.readmodel = readmodel
        self._micros = micros
        self._rev = 0
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
            if items[0] is not None and self._linger > 0:
                self._closing.wait(self._linger)
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in items
            batch = [i for i in items if i is not None]
            try:
                self._project(batch)
            except Exception:
                # e.g. the PostgreSQL server is down: what this batch held is found again by
                # the catch-up, retried with a growing pause (1 s, 2 s, ... 30 s)
                self._failures += 1
                log.exception("projecting into the read model failed; catching up again")
                if not stop:
                    time.sleep(min(2.0 ** (self._failures - 1), 30.0))
                    self._put(_CATCH_UP)
            else:
                self._failures = 0
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
            self._add_catch_up(merged)
        rev = self._next_rev()  # taken before the re-reads below: they see at least this
        changes = self._read(merged, rev)
        if changes:
            self.readmodel.apply(changes)

    def _read(self, keys: StoreChanges, rev: int) -> list[Change]:
        store, out = self.store, []
        for project, name, version in sorted(keys.versions):
            out.append(Change(rev, store.get_version(project, name, version)))
        for project, name in sorted(keys.workflows):
            out.append(Change(rev, store.get_version(project, name)))
        for run_id in sorted(keys.runs):
            try:
                out.append(Change(rev, store.get_run(run_id)))
            except NotFound:  # pragma: no cover - runs are never deleted
                continue
        by_run: dict[str, list[str]] = {}
        for run_id, task_id in keys.tasks:
            by_run.setdefault(run_id, []).append(task_id)
        for run_id, task_ids in by_run.items():
            out.extend(Change(rev, t) for t in store.get_tasks(run_id, sorted(task_ids)))
        wanted: dict[tuple[str, str], set[int]] = {}
        for run_id, task_id, attempt in keys.attempts:
            wanted.setdefault((run_id, task_id), set()).add(attempt)
        for (run_id, task_id), numbers in wanted.items():
            out.extend(
                Change(rev, a) for a in store.list_attempts(run_id, task_id) if a.attempt in numbers
            )
        return out

    def _add_catch_up(self, into: StoreChanges) -> None:
        for head in self.store.list_workflows():
            for v in self.store.list_versions(head.project, head.name):
                into.versions.add((v.project, v.name, v.version))
            into.workflows.add((head.project, head.name))
        known = self.readmodel.run_summaries()
        before: str | None = None
        while True:
            page = self.store.list_runs(RunQuery(limit=_PAGE, before=before))
            for run in page:
                summary = (run.state.value, run.n_done, run.n_failed, run.n_running)
                if not run.state.terminal or known.get(run.id) != summary:
                    into.runs.add(run.id)
                    into.tasks.update((run.id, t.task_id) for t in self.store.get_tasks(run.id))
                    into.attempts.update(
                        (a.run_id, a.task_id, a.attempt) for a in self.store.list_attempts(run.id)
                    )
            if len(page) < _PAGE:
                return
            before = page[-1].id


def _highest_rev(readmodel: ReadModel) -> int:
    best = 0
    for table in ("workflows", "runs", "task_instances", "attempts"):
        rows: list[dict[str, Any]] = readmodel.db.query(f"SELECT MAX(rev) AS rev FROM {table}")
        if rows and rows[0]["rev"] is not None:
            best = max(best, int(rows[0]["rev"]))
    return best
