"""The in-process cron loop of the local runtime (EventBridge Scheduler's job on AWS).

Each scheduled workflow keeps a cursor: the last logical date it fired for. A firing creates
a run whose id is derived from the logical date, so firing twice for one date (a crash
between creating the run and moving the cursor) creates one run. What is due, given the
cursor, is decided by the pure ``due_firings``/``next_firing`` in ``stratoflow.model``, which
the AWS trigger (``adapters/aws/firing.py``) shares.
"""

from __future__ import annotations

import logging
from datetime import datetime

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


class CronLoop:
    def __init__(self, scheduler: Scheduler, catalog: Catalog) -> None:
        self.scheduler = scheduler
        self.catalog = catalog

    def tick(self, now: datetime) -> datetime | None:
        """Fire what is due; return when the next firing is. One workflow whose schedule
        cannot be computed or fired (an error of any kind) is marked in error, logged once,
        and skipped: the others fire all the same."""
        soonest: datetime | None = None
        for version in self.catalog.list_workflows():
            if version.paused or "schedule" not in version.document:
                continue
            try:
                nxt = self._fire(version, now)
            except Exception as exc:
                self.scheduler.schedule_failed(version, exc)
                continue
            if nxt is not None and (soonest is None or nxt < soonest):
                soonest = nxt
        return soonest

    def _fire(self, version: WorkflowVersion, now: datetime) -> datetime | None:
        spec: WorkflowSpec = self.scheduler.spec(version.project, version.name, version.version)
        schedule = spec.workflow.schedule
        assert schedule is not None
        cursor = self.catalog.get_cursor(version.project, version.name)
        times, new_cursor = due_firings(schedule, cursor, now)
        self.scheduler.fire(version, times, cursor, new_cursor)
        return next_firing(schedule, new_cursor)
