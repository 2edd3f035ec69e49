"""Wires the local adapters to the scheduler service and runs its loop.

One loop thread owns the periodic work (retries, deadlines, dispatch, cron); executor reports
and API requests wake it. ``run_until`` drives the same loop in the foreground for
``stratoflow run``.
"""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from stratoflow.adapters.local.alerts import AlertStore, FanOutEvents, LocalAlerts
from stratoflow.adapters.local.clock import SystemClock
from stratoflow.adapters.local.collector import collect_less
from stratoflow.adapters.local.connections import ConnectionStore
from stratoflow.adapters.local.cron import CronLoop
from stratoflow.adapters.local.executor import LocalExecutor, check_places
from stratoflow.adapters.local.feed import LocalFeed
from stratoflow.adapters.local.resources import LocalResources
from stratoflow.adapters.local.secrets import LocalSecrets
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.alerts import ResolveSecret, Sender
from stratoflow.engine import AttemptResult
from stratoflow.errors import Conflict
from stratoflow.model import WorkflowSpec
from stratoflow.ports import Clock, EventSink
from stratoflow.readmodel import ReadModel
from stratoflow.secrets import ChainedSource, EnvironmentSource
from stratoflow.service import Finished, Scheduler

log = logging.getLogger("stratoflow.runtime")

MAX_SLEEP_SECONDS = 1.0
# After an attempt's end, while others run: how long the loop lets more ends arrive before
# its turn, so one turn (a commit, its reads of what is due and ready, a hand-off to the
# start threads) serves several ends. A turn's fixed part cost about what an end's own work
# did; the 2,000-task DAG at concurrency 8 took ~1.2 turns per end without it, and
# the scheduler spent ~0.07 ms less of CPU a task with it, its wall time 1-3% less
# (docs/benchmarks.md, "Seventeenth round"). Nothing waits when nothing else runs (a chain's
# next step starts at once) or when the turn was asked for (``wake``: an API write).
GATHER_SECONDS = 0.0003
LOCK_FILE = "scheduler.lock"


# created 0600 before SQLite opens them (its -wal and -shm files take the database's mode)
PRIVATE_FILES = ("stratoflow.db", "readmodel.db", "events.jsonl")


def private_files(home: Path, names: tuple[str, ...]) -> None:
    """Create each file 0600 if missing, or make it 0600 (a home from an older version)."""
    for name in names:
        path = home / name
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        os.chmod(path, 0o600)
        for extra in ("-wal", "-shm"):
            if Path(f"{path}{extra}").exists():
                os.chmod(f"{path}{extra}", 0o600)


class HomeInUse(Conflict):
    """Another live scheduler owns this state directory."""


def lock_home(home: Path) -> int:
    """Take the home's scheduler lock (an flock, so a process killed with SIGKILL leaves none
    behind) and write our pid into it; returns the descriptor that holds it. Two schedulers on
    one home would each claim and watch the other's attempts: the second one refuses to start."""
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by tasks
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise HomeInUse(
            f"{home} is in use by another Stratoflow scheduler (pid {holder}); stop it, or "
            "pass --home DIR to use another state directory"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class JsonlEvents(EventSink):
    """Lifecycle events appended to ``events.jsonl`` (alerts subscribe here later)."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()

    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        line = json.dumps(
            {"type": kind, "time": self.clock.now().isoformat(), **detail}, default=str
        )
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError as exc:  # e.g. the disk is full: the turn that emitted it still holds
            log.warning("could not record event %s for %s: %s", kind, detail.get("run_id"), exc)
        log.info("%s %s", kind, detail.get("run_id"))


def settle_gc(*, whole: bool = True) -> None:
    """For a process that keeps a scheduler (``stratoflow run``, ``stratoflow server``), once
    it has loaded what it keeps: that (modules, schemas, workflow specs) is moved out of the
    collector's sight (``gc.freeze``), and a young collection runs every 50,000 allocations
    instead of 700. A run view or a turn over thousands of tasks allocates hundreds of
    thousands of objects that live until it ends; with the defaults such a burst set off full
    collections that walked the whole heap each time: more than half of the CPU of a
    10,000-task run view (docs/benchmarks.md, "The run view's CPU"). Reference cycles are
    still collected, only later.

    ``whole=False`` (``stratoflow run``, whose process ends with its run) collects only the
    youngest generation before freezing: the full collection walks every object loaded so far
    (~40 ms for a 2,000-task workflow, on the run's start-up) and finds no garbage there (0
    objects measured); what little a start-up might leave in older generations stays frozen
    until the process exits instead of being freed a few seconds earlier."""
    gc.collect(2 if whole else 0)
    gc.freeze()
    collect_less()


class LocalRuntime:
    def __init__(
        self,
        home: Path,
        *,
        clock: Clock | None = None,
        cron: bool = False,
        db: str | None = None,
        resolve_secret: ResolveSecret | None = None,
        parallelism: int | None = None,
        project: bool = True,
    ) -> None:
        """``db``: the read model's database (``postgresql://...``); default a SQLite file
        ``readmodel.db`` in ``home``. The store's commits are projected into it inline.
        ``project=False`` (``stratoflow run``: no one reads the read model while it holds
        the home) projects nothing: the next runtime that projects (a server) catches up on
        start, in its projector's thread, with what it lacks (``LocalFeed``: every version
        and run that differs). Projecting as the run went cost ~0.07 ms of CPU per task.
        ``parallelism``: at most this many task processes at once (None: no limit; the CLI's
        default is ``cli.DEFAULT_PARALLELISM``).
        ``resolve_secret``: how alert channels' ``{{ secrets.NAME }}`` resolve when an
        alert is sent (default: the same sources a task's references resolve from: the
        environment's ``STRATOFLOW_SECRET_<NAME>``, then the project's secrets file)."""
        self._resolve_secret = resolve_secret
        home = home.resolve()
        self.home = home
        check_places(home)  # a home tasks could reach is refused before it is made
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)  # also a home made by an older version: only its owner reads it
        self._lock_fd = lock_home(home)
        try:
            self._open(home, clock, cron, db, parallelism, project)
        except BaseException:
            os.close(self._lock_fd)  # e.g. the --db server is unreachable: leave no lock held
            raise

    def _open(
        self,
        home: Path,
        clock: Clock | None,
        cron: bool,
        db: str | None,
        parallelism: int | None,
        project: bool,
    ) -> None:
        self.clock = clock or SystemClock()
        private_files(home, PRIVATE_FILES if db is None else ("stratoflow.db", "events.jsonl"))
        self.store = SqliteStore(home / "stratoflow.db")
        self.readmodel = ReadModel.open(db or str(home / "readmodel.db"))
        self.feed = LocalFeed(self.store, self.readmodel)
        if project:
            self.feed.start()
        self._reports: queue.SimpleQueue[Finished | None] = queue.SimpleQueue()
        self._pending: list[Finished] = []  # reports a failed turn did not record yet
        # what `stratoflow secrets` and the API manage; tasks resolve from the environment
        # first, then from these (the log views mask with the same)
        self.secrets = LocalSecrets(home)
        self.secret_source = ChainedSource([EnvironmentSource(os.environ), self.secrets])
        self.resources = LocalResources(home)
        self.connections = ConnectionStore(home / "stratoflow.db")
        self.executor = LocalExecutor(
            home / "attempts",
            self._report,
            protect=home,
            secrets=self.secret_source,
            resources=self.resources,
            connections=self.connections.get,
        )
        self.alerts = LocalAlerts(
            AlertStore(home / "stratoflow.db"),
            self.store,
            self._spec,
            Sender(self._resolve_secret or self._alert_secret),
            self.clock,
        )
        self.scheduler = Scheduler(
            self.store,
            self.store,
            self.executor,
            self.clock,
            FanOutEvents(JsonlEvents(home / "events.jsonl", self.clock), self.alerts),
            resources=self.resources,
            alert_groups=self.alerts.store.has_group,  # apply refuses a group unknown here
            parallelism=parallelism,
        )
        self.cron = CronLoop(self.scheduler, self.store) if cron else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scheduler.recover()
        # work dirs whose removal was pending when an earlier scheduler stopped
        self.executor.sweep(self.store.running_tasks())

    def _alert_secret(self, project: str, name: str) -> str:
        """An alert channel's ``{{ secrets.NAME }}``, from where tasks' references resolve."""
        value = self.secret_source.get(project, name)
        if value is None:
            raise KeyError(name)
        return value

    def _spec(self, project: str, name: str, version: int) -> WorkflowSpec:
        return self.scheduler.spec(project, name, version)

    def _report(
        self, run_id: str, task_id: str, attempt: int, result: AttemptResult, log_path: str
    ) -> None:
        self._reports.put(Finished(run_id, task_id, attempt, result, log_path))

    def wake(self) -> None:
        """Something changed (the API wrote): take a turn now, reading the catalog again."""
        if self.cron is not None:
            self.cron.invalidate()
        self._reports.put(None)

    def _wait(self, timeout: float) -> list[Finished]:
        batch: list[Finished] = []
        try:
            first = self._reports.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return batch
        if first is not None:
            batch.append(first)
            if self.executor.live_attempts():  # others may end within moments: one turn
                time.sleep(GATHER_SECONDS)
        while True:
            try:
                item = self._reports.get_nowait()
            except queue.Empty:
                return batch
            if item is not None:
                batch.append(item)

    def run_once(self, timeout: float = MAX_SLEEP_SECONDS) -> None:
        """One turn of the loop: apply reports, then the periodic work."""
        batch = self._pending + self._wait(0 if self._pending else timeout)
        try:
            next_at = self.scheduler.step(batch)
        except BaseException:
            # e.g. the disk is full: keep the reports (applying one twice changes nothing)
            # and apply them on a later turn, so no attempt stays running until a restart
            self._pending = batch
            raise
        self._pending = []
        for done in batch:
            self.executor.release(done.run_id, done.task_id, done.attempt)
        self.scheduler.backfills.tick(self.clock.now())  # lanes a failed run-end hook left
        if self.cron is not None:
            next_fire = self.cron.tick(self.clock.now())
            if next_fire is not None and (next_at is None or next_fire < next_at):
                next_at = next_fire
        self._next_at = next_at

    def _sleep_budget(self) -> float:
        next_at: datetime | None = getattr(self, "_next_at", None)
        if next_at is None:
            return MAX_SLEEP_SECONDS
        return min(max((next_at - self.clock.now()).total_seconds(), 0.0), MAX_SLEEP_SECONDS)

    def run_until(
        self, done: Callable[[], bool], *, on_turn: Callable[[], None] | None = None
    ) -> None:
        # its alerts go out while it runs, from the alerts' own thread (as a server sends
        # them): a start, a retry, an SLA missed while it still runs
        with self.alerts.working():
            self.run_once(timeout=0)
            while not done():
                self.run_once(self._sleep_budget())
                if on_turn is not None:
                    on_turn()
        # what its end made, once (what fails is retried by the next server)
        self.alerts.fire_timers(self.clock.now())
        self.alerts.deliver_due()

    def start(self) -> None:
        """Run the loop in a background thread (the server)."""
        self._thread = threading.Thread(
            target=self._serve, name="stratoflow-scheduler", daemon=True
        )
        self._thread.start()
        self.alerts.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once(self._sleep_budget())
            except Exception:
                log.exception("scheduler loop turn failed; continuing")
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.executor.close()
        self.alerts.close()
        self.alerts.store.close()
        self.connections.close()
        self.feed.close()
        self.readmodel.close()
        self.store.close()
        os.close(self._lock_fd)
