"""The in-process cron loop of the local runtime (EventBridge Scheduler's job on AWS).

Each scheduled workflow keeps a cursor: the last logical date it fired for. A firing creates
a run whose id is derived from the logical date, so firing twice for one date (a crash
between creating the run and moving the cursor) creates one run. What is due, given the
cursor, is decided by the pure ``due_firings``/``next_firing`` in ``stratoflow.model``, which
the AWS trigger (``adapters/aws/firing.py``) shares; and so is ``Scheduler.fire``, which,
without catchup, supersedes a run of the schedule still queued by the new firing's.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from stratoflow.model import (
    MAX_FIRINGS_PER_TICK,
    WorkflowSpec,
    due_firings,
    next_firing,
)
from stratoflow.ports import Catalog, WorkflowVersion
from stratoflow.service import Scheduler, schedule_error_message

__all__ = [
    "MAX_FIRINGS_PER_TICK",
    "CronLoop",
    "due_firings",
    "next_firing",
    "schedule_error_message",
]

log = logging.getLogger("stratoflow.cron")

# The catalog is read again at least this often even when nothing said it changed.
RECHECK = timedelta(seconds=30)
# A catch-up that waits for room (its workflow full) is looked at again this often.
BACKLOG_RECHECK = timedelta(seconds=1)


class CronLoop:
    """Fires scheduled workflows. The local runtime ticks it on every turn of its loop, which
    is hundreds of times a second during a large run, and reading the catalog decodes every
    workflow's document; so a tick reads it only when a firing is due, when ``invalidate``
    said the catalog changed (the API's writes do), after a schedule failed, or every
    ``RECHECK``. In between it answers the next firing it computed."""

    def __init__(self, scheduler: Scheduler, catalog: Catalog) -> None:
        self.scheduler = scheduler
        self.catalog = catalog
        self._stale = True
        self._soonest: datetime | None = None
        self._read_at: datetime | None = None

    def invalidate(self) -> None:
        """The catalog may have changed (a workflow applied or paused): read it next tick."""
        self._stale = True

    def tick(self, now: datetime) -> datetime | None:
        """Fire what is due; return when the next firing is. One workflow whose schedule
        cannot be computed or fired (an error of any kind) is marked in error, logged once,
        and skipped: the others fire all the same."""
        fresh = (
            not self._stale
            and self._read_at is not None
            and self._read_at <= now < self._read_at + RECHECK
            and (self._soonest is None or now < self._soonest)
        )
        if fresh:
            return self._soonest
        self._stale = False
        self._read_at = now
        soonest: datetime | None = None
        for version in self.catalog.list_workflows():
            if version.paused or "schedule" not in version.document:
                continue
            try:
                nxt = self._fire(version, now)
            except Exception as exc:
                self.scheduler.schedule_failed(version, exc)
                self._stale = True  # try it again next tick, as before it failed
                continue
            if nxt is not None and (soonest is None or nxt < soonest):
                soonest = nxt
        self._soonest = soonest
        return soonest

    def _fire(self, version: WorkflowVersion, now: datetime) -> datetime | None:
        spec: WorkflowSpec = self.scheduler.spec(version.project, version.name, version.version)
        schedule = spec.workflow.schedule
        assert schedule is not None
        cursor = self.catalog.get_cursor(version.project, version.name)
        room = self.scheduler.catchup_room(version)
        times, new_cursor = due_firings(schedule, cursor, now, room)
        self.scheduler.fire(version, times, cursor, new_cursor)
        found = next_firing(schedule, new_cursor)
        if found is not None and found <= now and room is not None:
            # a catch-up waiting for room (its workflow is full): look again shortly, not on
            # every turn of the loop (runs ending make the room)
            found = now + BACKLOG_RECHECK
        return found
