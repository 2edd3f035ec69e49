"""Alerts on the local runtime: channels and groups per project, an outbox that delivers each
(alert, channel) at least once and never twice for one key, and SLA deadlines as durable
timers.

Everything lives in the home's state database (``stratoflow.db``), in tables of its own made
the way the state store makes its tables (``CREATE ... IF NOT EXISTS`` on open).

- :class:`AlertStore` keeps the configuration, the outbox and the timers.
- :class:`LocalAlerts` is an :class:`~stratoflow.ports.EventSink`: the scheduler emits each
  lifecycle event after the state it reports is committed; the sink plans the alerts it
  makes (``stratoflow.alerts.for_event``) and writes them to the outbox keyed by
  ``(alert key, project, channel)`` with ``INSERT OR IGNORE``, so a redelivered event adds
  nothing. Its worker thread sends what is due, records sent / retrying / failed, retries
  with exponential backoff, and sleeps until the next due delivery or SLA deadline (or a
  wake-up): nothing polls the runs. A crash after an alert is in the outbox and before it
  is sent leaves it pending; the next start sends it. A crash after the send and before it
  is recorded sends it again (at least once): PagerDuty folds the repeat into the same
  incident by its ``dedup_key``, a webhook sees the same ``Idempotency-Key``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stratoflow.adapters.local._sqlite import SqliteFile
from stratoflow.alerts import (
    MAX_CHANNELS,
    MAX_GROUPS,
    AlertFacts,
    Backoff,
    Channel,
    Delivery,
    Planned,
    Sender,
    SlaTimer,
    check_group,
    for_event,
    for_sla_miss,
    opens_incident,
    sla_missed,
    sla_timers,
    try_send,
)
from stratoflow.engine import Run, RunState, TaskState
from stratoflow.errors import Conflict, InvalidInput, NotFound, Problem
from stratoflow.model import OnTimeout, Workflow, WorkflowSpec
from stratoflow.ports import Clock, EventSink, RunQuery, StateStore

log = logging.getLogger("stratoflow.alerts")

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_channels (
    project TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, settings TEXT NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (project, name)
);
CREATE TABLE IF NOT EXISTS alert_groups (
    project TEXT NOT NULL, name TEXT NOT NULL, channels TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (project, name)
);
-- One row per (alert, channel). ``incident``: the PagerDuty dedup_key a trigger opened, until
-- a resolve row names it in ``resolved_by``.
CREATE TABLE IF NOT EXISTS alert_outbox (
    key TEXT NOT NULL, project TEXT NOT NULL, channel TEXT NOT NULL, grp TEXT NOT NULL,
    event TEXT NOT NULL, workflow TEXT NOT NULL, run_id TEXT, facts TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at TEXT,
    last_error TEXT, created_at TEXT NOT NULL, sent_at TEXT,
    incident TEXT, resolved_by TEXT,
    PRIMARY KEY (key, project, channel)
);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (next_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX IF NOT EXISTS alert_outbox_open ON alert_outbox (project, workflow)
    WHERE incident IS NOT NULL AND resolved_by IS NULL;
CREATE INDEX IF NOT EXISTS alert_outbox_by_run ON alert_outbox (run_id);
CREATE TABLE IF NOT EXISTS alert_timers (
    run_id TEXT NOT NULL, task_id TEXT NOT NULL, due TEXT NOT NULL, sla_seconds REAL NOT NULL,
    PRIMARY KEY (run_id, task_id)
);
CREATE INDEX IF NOT EXISTS alert_timers_due ON alert_timers (due);
"""

# PagerDuty incidents of a workflow that nothing resolved yet, opened up to a time
_ANY_OPEN = (
    "SELECT 1 FROM alert_outbox WHERE project=? AND workflow=? AND incident IS NOT NULL "
    "AND resolved_by IS NULL AND created_at <= ? LIMIT 1"
)
_OPEN = (
    "SELECT DISTINCT channel, grp, incident, facts FROM alert_outbox WHERE project=? "
    "AND workflow=? AND incident IS NOT NULL AND resolved_by IS NULL AND created_at <= ?"
)
_RESOLVED = (
    "UPDATE alert_outbox SET resolved_by=? WHERE project=? AND workflow=? "
    "AND incident IS NOT NULL AND resolved_by IS NULL AND created_at <= ?"
)

NO_CHANNEL = "-"  # the outbox row of an alert whose group is missing or empty
# on start, the run events of the latest runs are planned again (see LocalAlerts.catch_up)
CATCH_UP_WINDOW = timedelta(hours=1)
CATCH_UP_RUNS = 500
# the attempts whose end can make a task event (a retry, a failure, a timeout)
_FAILED_ATTEMPTS = frozenset({"failed", "timed_out", "lost"})
_WORKFLOW_TASK_EVENTS = frozenset({"retry", "timeout"})
_TASK_EVENTS = _WORKFLOW_TASK_EVENTS | {"failure"}


def _has_task_rules(workflow: Workflow) -> bool:
    """Whether a task event of ``workflow`` can make an alert (``alerts._rules.for_event``:
    the workflow's rules for a retry or a timeout, a task's for those or its failure)."""
    return any(_WORKFLOW_TASK_EVENTS.intersection(r.on) for r in workflow.alerts) or any(
        _TASK_EVENTS.intersection(r.on) for task in workflow.tasks.values() for r in task.alerts
    )


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _room_for_a_group(conn: sqlite3.Connection, project: str) -> None:
    """Refuse a new group of ``project`` beyond :data:`MAX_GROUPS`."""
    (count,) = conn.execute(
        "SELECT count(*) FROM alert_groups WHERE project=?", (project,)
    ).fetchone()
    if count >= MAX_GROUPS:
        raise InvalidInput([Problem("group", f"at most {MAX_GROUPS} groups")])


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        key=row["key"], project=row["project"], channel=row["channel"], group=row["grp"],
        event=row["event"], workflow=row["workflow"], run_id=row["run_id"],
        facts=AlertFacts.from_json(json.loads(row["facts"])), status=row["status"],
        attempts=row["attempts"], next_at=_dt(row["next_at"]), last_error=row["last_error"],
        created_at=_dt(row["created_at"]) or datetime.min, sent_at=_dt(row["sent_at"]),
    )  # fmt: skip


class AlertStore(SqliteFile):
    """The alert tables of a home's state database."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, SCHEMA)

    # ------------------------------------------------------------ channels
    def put_channel(self, channel: Channel, now: datetime) -> bool:
        """Create or replace; True if it is new."""
        with self._tx() as conn:
            exists = conn.execute(
                "SELECT 1 FROM alert_channels WHERE project=? AND name=?",
                (channel.project, channel.name),
            ).fetchone()
            if not exists:
                (count,) = conn.execute(
                    "SELECT count(*) FROM alert_channels WHERE project=?", (channel.project,)
                ).fetchone()
                if count >= MAX_CHANNELS:
                    raise InvalidInput(
                        [Problem("name", f"project {channel.project} has {count} channels; "
                                 f"at most {MAX_CHANNELS}")]
                    )  # fmt: skip
            conn.execute(
                "INSERT OR REPLACE INTO alert_channels VALUES (?, ?, ?, ?, ?)",
                (channel.project, channel.name, channel.type, json.dumps(dict(channel.settings)),
                 _ts(now)),
            )  # fmt: skip
        return not exists

    def get_channel(self, project: str, name: str) -> Channel:
        row = (
            self._conn()
            .execute("SELECT * FROM alert_channels WHERE project=? AND name=?", (project, name))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"alert channel {name!r} not found in project {project!r}")
        return Channel(row["project"], row["name"], row["type"], json.loads(row["settings"]))

    def list_channels(self, project: str) -> list[Channel]:
        rows = self._conn().execute(
            "SELECT * FROM alert_channels WHERE project=? ORDER BY name", (project,)
        )
        return [
            Channel(r["project"], r["name"], r["type"], json.loads(r["settings"])) for r in rows
        ]

    def delete_channel(self, project: str, name: str) -> None:
        """Refused while a group holds the channel (the error names the groups)."""
        with self._tx() as conn:
            self_row = conn.execute(
                "SELECT 1 FROM alert_channels WHERE project=? AND name=?", (project, name)
            ).fetchone()
            if self_row is None:
                raise NotFound(f"alert channel {name!r} not found in project {project!r}")
            users = [
                g for g, chans in conn.execute(
                    "SELECT name, channels FROM alert_groups WHERE project=?", (project,)
                ) if name in json.loads(chans)
            ]  # fmt: skip
            if users:
                raise Conflict(
                    f"alert channel {name!r} is in group(s) {', '.join(sorted(users))}; "
                    "take it out of them first"
                )
            conn.execute("DELETE FROM alert_channels WHERE project=? AND name=?", (project, name))

    # ------------------------------------------------------------ groups
    def set_group(self, project: str, name: str, channels: Sequence[str], now: datetime) -> bool:
        check_group(project, name, channels)
        with self._tx() as conn:
            known = {
                r[0]
                for r in conn.execute("SELECT name FROM alert_channels WHERE project=?", (project,))
            }
            missing = [c for c in channels if c not in known]
            if missing:
                raise InvalidInput(
                    [Problem("channels", f"no channel {c!r} in project {project!r} "
                             "(add it with `stratoflow alerts channels add`)") for c in missing]
                )  # fmt: skip
            exists = conn.execute(
                "SELECT 1 FROM alert_groups WHERE project=? AND name=?", (project, name)
            ).fetchone()
            if not exists:
                _room_for_a_group(conn, project)
            conn.execute(
                "INSERT OR REPLACE INTO alert_groups VALUES (?, ?, ?, ?)",
                (project, name, json.dumps(list(channels)), _ts(now)),
            )
        return not exists

    def get_group(self, project: str, name: str) -> list[str]:
        row = (
            self._conn()
            .execute(
                "SELECT channels FROM alert_groups WHERE project=? AND name=?", (project, name)
            )
            .fetchone()
        )
        if row is None:
            raise NotFound(f"alert group {name!r} not found in project {project!r}")
        return list(json.loads(row[0]))

    def ensure_group(self, project: str, name: str, now: datetime) -> bool:
        """Create the group with no channels yet unless it exists (an existing one is kept
        as it is); True if created. Alerts to a group with no channels are recorded as
        failed deliveries saying so, until ``set_group`` gives it channels."""
        check_group(project, name, ["-"])  # its project and name; it has no channels yet
        with self._tx() as conn:
            if conn.execute(
                "SELECT 1 FROM alert_groups WHERE project=? AND name=?", (project, name)
            ).fetchone():
                return False
            _room_for_a_group(conn, project)
            conn.execute(
                "INSERT INTO alert_groups VALUES (?, ?, ?, ?)", (project, name, "[]", _ts(now))
            )
        return True

    def has_group(self, project: str, name: str) -> bool:
        """Whether the project has the group (what a workflow's ``alerts`` may name)."""
        return (
            self._conn()
            .execute("SELECT 1 FROM alert_groups WHERE project=? AND name=?", (project, name))
            .fetchone()
            is not None
        )

    def list_groups(self, project: str) -> dict[str, list[str]]:
        rows = self._conn().execute(
            "SELECT name, channels FROM alert_groups WHERE project=? ORDER BY name", (project,)
        )
        return {r[0]: list(json.loads(r[1])) for r in rows}

    def delete_group(self, project: str, name: str) -> None:
        cur = self._conn().execute(
            "DELETE FROM alert_groups WHERE project=? AND name=?", (project, name)
        )
        if cur.rowcount == 0:
            raise NotFound(f"alert group {name!r} not found in project {project!r}")

    # ------------------------------------------------------------ the outbox
    def enqueue(self, planned: Sequence[Planned], now: datetime) -> list[tuple[str, str]]:
        """Write each planned alert once per channel of its group (as the group is now);
        returns the (key, channel) rows that are new. A key already there adds nothing."""
        added: list[tuple[str, str]] = []
        if not planned:
            return added
        with self._tx() as conn:
            for plan in planned:
                facts = plan.facts
                row = conn.execute(
                    "SELECT channels FROM alert_groups WHERE project=? AND name=?",
                    (facts.project, plan.group),
                ).fetchone()
                types = dict(conn.execute(
                    "SELECT name, type FROM alert_channels WHERE project=?", (facts.project,)
                ).fetchall())  # fmt: skip
                channels = [] if row is None else list(json.loads(row[0]))
                if not channels:
                    why = "does not exist" if row is None else "has no channels"
                    self._insert(conn, plan, NO_CHANNEL, now, status="failed", incident=None,
                                 error=f"alert group {plan.group!r} {why} in project "
                                 f"{facts.project!r}")  # fmt: skip
                    continue
                for channel in channels:
                    incident = (
                        facts.dedup_key if opens_incident(types.get(channel, ""), facts) else None
                    )
                    if self._insert(conn, plan, channel, now, incident=incident):
                        added.append((plan.key, channel))
        return added

    @staticmethod
    def _insert(
        conn: sqlite3.Connection,
        plan: Planned,
        channel: str,
        now: datetime,
        *,
        incident: str | None,
        status: str = "pending",
        error: str | None = None,
    ) -> bool:
        facts = plan.facts
        cur = conn.execute(
            "INSERT OR IGNORE INTO alert_outbox (key, project, channel, grp, event, workflow, "
            "run_id, facts, status, next_at, last_error, created_at, incident) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (plan.key, facts.project, channel, plan.group, facts.event, facts.workflow,
             facts.run_id, json.dumps(facts.to_json()), status,
             _ts(now) if status == "pending" else None, error, _ts(now), incident),
        )  # fmt: skip
        return cur.rowcount == 1

    def enqueue_resolves(
        self, project: str, workflow: str, by: str, now: datetime, *, opened_by: datetime
    ) -> int:
        """Resolve every PagerDuty incident alerts of ``workflow`` opened up to ``opened_by``
        (the success's end: a success planned again later must not close a newer failure's
        incident) and nothing resolved yet: one resolve row per (incident, channel), keyed by
        ``by`` (the success)."""
        args = (project, workflow, _ts(opened_by))
        if not self._conn().execute(_ANY_OPEN, args).fetchone():
            return 0  # the common case: no write transaction for a success with nothing open
        with self._tx() as conn:
            rows = conn.execute(_OPEN, args).fetchall()
            done: set[tuple[str, str]] = set()
            for row in rows:
                if (row["channel"], row["incident"]) in done:
                    continue
                done.add((row["channel"], row["incident"]))
                opened = AlertFacts.from_json(json.loads(row["facts"]))
                facts = AlertFacts(
                    "success", project, workflow, run_id=opened.run_id, task_id=opened.task_id,
                    dedup_key=row["incident"], action="resolve", at=now.isoformat(),
                )  # fmt: skip
                key = f"resolve:{row['incident']}:{by}"
                self._insert(conn, Planned(key, row["grp"], facts), row["channel"], now,
                             incident=None)  # fmt: skip
            conn.execute(_RESOLVED, (by, *args))
        return len(done)

    def due(self, now: datetime, limit: int = 50) -> list[Delivery]:
        rows = self._conn().execute(
            "SELECT * FROM alert_outbox WHERE status IN ('pending', 'retrying') AND next_at <= ? "
            "ORDER BY next_at LIMIT ?",
            (_ts(now), limit),
        )
        return [_delivery(r) for r in rows]

    def next_due(self) -> datetime | None:
        row = (
            self._conn()
            .execute(
                "SELECT min(next_at) FROM alert_outbox WHERE status IN ('pending', 'retrying')"
            )
            .fetchone()
        )
        return _dt(row[0])

    def record(
        self,
        d: Delivery,
        status: str,
        now: datetime,
        *,
        error: str | None = None,
        next_at: datetime | None = None,
    ) -> None:
        self._conn().execute(
            "UPDATE alert_outbox SET status=?, attempts=attempts+1, last_error=?, next_at=?, "
            "sent_at=? WHERE key=? AND project=? AND channel=? AND status IN ('pending', 'retrying')",
            (status, error, _ts(next_at) if next_at else None,
             _ts(now) if status == "sent" else None, d.key, d.project, d.channel),
        )  # fmt: skip

    def get(self, key: str, project: str, channel: str) -> Delivery:
        row = (
            self._conn()
            .execute(
                "SELECT * FROM alert_outbox WHERE key=? AND project=? AND channel=?",
                (key, project, channel),
            )
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no alert {key!r} for channel {channel!r}")
        return _delivery(row)

    def list_deliveries(
        self,
        project: str,
        *,
        run_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> tuple[list[Delivery], int | None]:
        """Newest first; returns the page and the cursor of the next one."""
        where, args = ["project=?"], [project]
        if run_id is not None:
            where.append("run_id=?")
            args.append(run_id)
        if status is not None:
            where.append("status=?")
            args.append(status)
        if before is not None:
            where.append("rowid<?")
            args.append(str(before))
        rows = (
            self._conn()
            .execute(
                # only the fixed conditions above are joined; every value is a parameter
                f"SELECT rowid AS seq, * FROM alert_outbox WHERE {' AND '.join(where)} "  # noqa: S608
                "ORDER BY rowid DESC LIMIT ?",
                (*args, limit + 1),
            )
            .fetchall()
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return [_delivery(r) for r in rows], (rows[-1]["seq"] if more and rows else None)

    # ------------------------------------------------------------ SLA timers
    def add_timers(self, timers: Sequence[SlaTimer]) -> None:
        if not timers:
            return
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO alert_timers VALUES (?, ?, ?, ?)",
                [(t.run_id, t.task_id, _ts(t.due), t.sla.total_seconds()) for t in timers],
            )

    def due_timers(self, now: datetime, limit: int = 100) -> list[SlaTimer]:
        rows = self._conn().execute(
            "SELECT * FROM alert_timers WHERE due <= ? ORDER BY due LIMIT ?", (_ts(now), limit)
        )
        return [
            SlaTimer(r["run_id"], r["task_id"], _dt(r["due"]) or now,
                     timedelta(seconds=r["sla_seconds"]))
            for r in rows
        ]  # fmt: skip

    def next_timer(self) -> datetime | None:
        return _dt(self._conn().execute("SELECT min(due) FROM alert_timers").fetchone()[0])

    def drop_timer(self, timer: SlaTimer) -> None:
        self._conn().execute(
            "DELETE FROM alert_timers WHERE run_id=? AND task_id=?", (timer.run_id, timer.task_id)
        )


class FanOutEvents(EventSink):
    """Each event to every sink, in order; one sink's failure does not keep it from the others."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks

    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            try:
                sink.emit(kind, detail)
            except Exception:
                log.exception("event sink %s failed on %s", type(sink).__name__, kind)


class LocalAlerts(EventSink):
    def __init__(
        self,
        store: AlertStore,
        state: StateStore,
        spec: Callable[[str, str, int], WorkflowSpec],
        sender: Sender,
        clock: Clock,
        *,
        link_base: str | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.store = store
        self.state = state
        self.spec = spec
        self.sender = sender
        self.clock = clock
        self.link_base = link_base or os.environ.get("STRATOFLOW_PUBLIC_URL") or None
        self.backoff = backoff or Backoff()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent = threading.Condition()
        self._delivering = threading.Lock()

    # ------------------------------------------------------------ events in
    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        """Called by the scheduler after the state the event reports is committed. Planning
        reads the run again (its end time keys run alerts), writes the outbox and wakes the
        worker; it never sends on the scheduler's thread."""
        try:
            self._plan(kind, detail)
        except Exception:  # an alert problem must not fail a scheduler turn
            log.exception("alerts for %s of run %s not planned", kind, detail.get("run_id"))
        self._wake.set()

    def _plan(self, kind: str, detail: Mapping[str, Any]) -> None:
        if "run_id" not in detail:
            return  # a backfill's event: no run, no alert rule for it
        run = self.state.get_run(str(detail["run_id"]))
        workflow = self.spec(run.project, run.workflow, run.version).workflow
        now = self.clock.now()
        if kind == "run.started":
            self.store.add_timers(sla_timers(run, workflow))
        previous_failed = None
        if kind == "run.succeeded":
            before = self.state.list_runs(
                RunQuery(project=run.project, workflow=run.workflow, before=run.id, limit=1)
            )
            if before and before[0].state is RunState.FAILED:
                previous_failed = before[0].id
        task_id = detail.get("task_id")
        planned = for_event(
            kind, run, workflow,
            task_id=str(task_id) if task_id is not None else None,
            attempt=detail.get("attempt"), error=detail.get("error"), at=now,
            link_base=self.link_base, previous_failed=previous_failed,
        )  # fmt: skip
        self.store.enqueue(planned, now)
        if kind == "run.succeeded":
            ended = run.ended_at.isoformat() if run.ended_at else ""
            self.store.enqueue_resolves(
                run.project, run.workflow, f"{run.id}:{ended}", now, opened_by=run.ended_at or now
            )

    def catch_up(self, window: timedelta = CATCH_UP_WINDOW, limit: int = CATCH_UP_RUNS) -> int:
        """Plan again the run events of the latest runs that started or ended within
        ``window``: the scheduler emits an event after its state is committed, so a process
        that died in between left the outbox without it. The keys are the ones the event
        would have made, so what was already planned adds nothing. Returns the runs seen."""
        since = self.clock.now() - window
        runs = self.state.list_runs(RunQuery(limit=limit))
        for run in runs:
            kinds = []
            if run.started_at is not None and run.started_at >= since:
                kinds.append("run.started")
            if run.state.terminal and run.ended_at is not None and run.ended_at >= since:
                kinds.append(f"run.{run.state.value}")
            try:
                for kind in kinds:
                    self._plan(kind, {"run_id": run.id})
                if not run.state.terminal or (run.ended_at is not None and run.ended_at >= since):
                    for kind, detail in self._task_events(run, since):
                        self._plan(kind, detail)
            except Exception:
                log.exception("catching up the alerts of run %s", run.id)
        self._wake.set()
        return len(runs)

    def _task_events(self, run: Run, since: datetime) -> list[tuple[str, dict[str, Any]]]:
        """The task events (``task.retrying``, ``task.failed``, ``task.timeout`` of
        ``on_timeout: warn_fail``) that ``run``'s attempts ended since ``since`` made, as the
        scheduler emitted them: read from the attempts' history and the tasks' states, for a
        run whose workflow has a rule for one (none read otherwise). Not ``warn``'s timeout:
        an attempt that ran past its timeout and kept running leaves no trace of the alert's
        moment (the restarted scheduler's deadline check makes it, if it was still due)."""
        workflow = self.spec(run.project, run.workflow, run.version).workflow
        if not _has_task_rules(workflow):
            return []
        attempts = self.state.list_attempts(run.id)
        ended = [
            a
            for a in attempts
            if a.ended_at is not None and a.ended_at >= since and a.state in _FAILED_ATTEMPTS
        ]
        last: dict[str, int] = {}  # each task's latest attempt: a later one means a retry
        for a in attempts:
            last[a.task_id] = max(last.get(a.task_id, 0), a.attempt)
        events: list[tuple[str, dict[str, Any]]] = []
        for a in ended:
            task = workflow.tasks.get(a.task_id)
            if task is None:
                continue
            detail = {"run_id": run.id, "task_id": a.task_id, "attempt": a.attempt}
            if a.state == "timed_out" and task.on_timeout is OnTimeout.WARN_FAIL:
                events.append(("task.timeout", detail))
            ti = self.state.get_task(run.id, a.task_id)
            if a.attempt <= ti.attempt_base:
                # before the task's latest rerun: whether the attempt after it was a retry or
                # the rerun, the history does not say (a rerun follows a failure that said
                # ``task.failed``, or a stop that said nothing); none is planned
                continue
            if last[a.task_id] > a.attempt or (
                ti.state is TaskState.UP_FOR_RETRY and ti.attempt == a.attempt
            ):
                events.append(("task.retrying", {**detail, "error": a.error}))
            elif ti.state is TaskState.FAILED and ti.attempt == a.attempt:
                events.append(("task.failed", {**detail, "error": ti.error or a.error}))
        return events

    def test(self, project: str, group: str) -> list[tuple[str, str]]:
        """Queue a test alert to every channel of ``group``; returns its (key, channel) rows."""
        channels = self.store.get_group(project, group)
        now = self.clock.now()
        facts = AlertFacts(
            "test", project, "(test)", at=now.isoformat(), link=self.link_base,
            detail=f"a test of alert group {group}, sent on request",
        )  # fmt: skip
        key = f"test:{group}:{now.isoformat()}"
        self.store.enqueue([Planned(key, group, facts)], now)
        self._wake.set()
        return [(key, c) for c in channels]

    # ------------------------------------------------------------ SLA timers
    def fire_timers(self, now: datetime) -> int:
        fired = 0
        for timer in self.store.due_timers(now):
            try:
                run = self.state.get_run(timer.run_id)
                workflow = self.spec(run.project, run.workflow, run.version).workflow
                if timer.task_id:
                    ended = self.state.get_task(run.id, timer.task_id).ended_at
                else:
                    ended = run.ended_at
                if sla_missed(timer, ended):
                    self.store.enqueue(
                        for_sla_miss(timer, run, workflow, at=now, link_base=self.link_base), now
                    )
                    fired += 1
            except NotFound:
                log.warning("SLA timer of %s/%s: no such run or task", timer.run_id, timer.task_id)
            self.store.drop_timer(timer)
        return fired

    # ------------------------------------------------------------ delivery
    def deliver_due(self, now: datetime | None = None) -> int:
        """Send what is due (one pass); returns how many were tried."""
        now = now or self.clock.now()
        with self._delivering:  # one sender at a time: a row is never sent by two at once
            due = self.store.due(now)
            for delivery in due:
                self._deliver(delivery)
        if due:
            with self._sent:
                self._sent.notify_all()
        return len(due)

    def _deliver(self, d: Delivery) -> None:
        try:
            channel = self.store.get_channel(d.project, d.channel)
        except NotFound:
            self.store.record(d, "failed", self.clock.now(), error="the channel was deleted")
            return
        outcome = try_send(self.sender, channel, d, self.backoff)
        now = self.clock.now()
        retry_at = None if outcome.retry_in is None else now + outcome.retry_in
        self.store.record(d, outcome.status, now, error=outcome.error, next_at=retry_at)

    def wait_settled(self, rows: Sequence[tuple[str, str]], project: str, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until each row has had its first try."""

        def settled() -> bool:
            return all(self.store.get(k, project, c).attempts > 0 for k, c in rows)

        with self._sent:
            self._sent.wait_for(settled, timeout=timeout)

    # ------------------------------------------------------------ the worker
    def start(self) -> None:
        self.catch_up()
        self._thread = threading.Thread(target=self._work, name="stratoflow-alerts", daemon=True)
        self._thread.start()

    @contextmanager
    def working(self) -> Iterator[None]:
        """Fire SLA timers and send from the worker thread while the caller drives the
        scheduler in the foreground (``LocalRuntime.run_until``: ``stratoflow run``), and
        stop it after: a run's start, retries, timeouts and an SLA it misses while it runs
        go out then, not when it has ended. Nothing more where the worker already runs (a
        server's, from ``start``)."""
        if self._thread is not None:
            yield
            return
        self._stop.clear()
        thread = threading.Thread(target=self._work, name="stratoflow-alerts", daemon=True)
        self._thread = thread
        thread.start()
        try:
            yield
        except BaseException:
            # e.g. a second Ctrl-C, which leaves at once: no wait for a send in flight (the
            # thread is a daemon; what it has not recorded is sent again by the next server)
            self._stop.set()
            self._wake.set()
            self._thread = None
            raise
        self._stop.set()
        self._wake.set()
        thread.join(timeout=15)
        self._thread = None

    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                now = self.clock.now()
                self.fire_timers(now)
                self.deliver_due(now)
                wait = self._sleep(self.clock.now())
            except Exception:
                log.exception("alert delivery pass failed; trying again")
                wait = 5.0
            self._wake.wait(wait)

    def _sleep(self, now: datetime) -> float:
        """Until the next delivery or SLA deadline, at most a minute."""
        soonest = [t for t in (self.store.next_due(), self.store.next_timer()) if t is not None]
        if not soonest:
            return 60.0
        return min(max((min(soonest) - now).total_seconds(), 0.0), 60.0)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
