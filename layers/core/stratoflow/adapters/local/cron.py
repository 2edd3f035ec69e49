"""The in-process cron loop of the local runtime (EventBridge Scheduler's job on AWS).

Each scheduled workflow keeps a cursor: the last logical date it fired for. A firing creates
a run whose id is derived from the logical date, so firing twice for one date (a crash
between creating the run and moving the cursor) creates one run.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from stratoflow.errors import StratoflowError
from stratoflow.model import Schedule, ScheduleError, WorkflowSpec, parse_schedule
from stratoflow.ports import Catalog
from stratoflow.service import Scheduler, scheduled_run_id

log = logging.getLogger("stratoflow.cron")

MAX_FIRINGS_PER_TICK = 500  # catchup over a long window proceeds in bounded steps


def _start(schedule: Schedule) -> datetime | None:
    if schedule.start is None:
        return None
    if schedule.start.tzinfo is None:
        return schedule.start.replace(tzinfo=ZoneInfo(schedule.timezone))
    return schedule.start


def _end(schedule: Schedule) -> datetime | None:
    if schedule.end is None:
        return None
    if schedule.end.tzinfo is None:
        return schedule.end.replace(tzinfo=ZoneInfo(schedule.timezone)).astimezone(UTC)
    return schedule.end.astimezone(UTC)


def due_firings(
    schedule: Schedule, cursor: datetime | None, now: datetime
) -> tuple[list[datetime], datetime]:
    """Logical dates to fire now, and the new cursor.

    First sight (no cursor): with ``catchup`` and a ``start``, every time since start is due;
    otherwise nothing in the past is, and the cursor starts at ``now``. Later: with catchup,
    every time missed since the cursor (oldest first, bounded per tick); without, only the
    latest missed time.
    """
    expr = parse_schedule(schedule.cron)
    start = _start(schedule)
    end = _end(schedule)
    until = min(now, end) if end is not None else now
    if cursor is None:
        if not (schedule.catchup and start is not None):
            return [], now
        cursor = start.astimezone(UTC) - timedelta(microseconds=1)
    if until <= cursor:
        return [], cursor
    if schedule.catchup:
        times: list[datetime] = []
        t = cursor
        while len(times) < MAX_FIRINGS_PER_TICK:
            try:
                t = expr.next_after(t, schedule.timezone, start)
            except ScheduleError:  # the expression has no more fire times (its years passed)
                break
            if t > until:
                break
            times.append(t)
        return times, times[-1] if len(times) == MAX_FIRINGS_PER_TICK else until
    latest = expr.previous_at_or_before(until, schedule.timezone, start)
    if latest is None or latest <= cursor:
        return [], until
    return [latest], until


def next_firing(schedule: Schedule, cursor: datetime) -> datetime | None:
    expr = parse_schedule(schedule.cron)
    try:
        t = expr.next_after(cursor, schedule.timezone, _start(schedule))
    except ScheduleError:  # no more fire times
        return None
    end = _end(schedule)
    return None if end is not None and t > end else t


class CronLoop:
    def __init__(self, scheduler: Scheduler, catalog: Catalog) -> None:
        self.scheduler = scheduler
        self.catalog = catalog

    def tick(self, now: datetime) -> datetime | None:
        """Fire what is due; return when the next firing is."""
        soonest: datetime | None = None
        for version in self.catalog.list_workflows():
            if version.paused or "schedule" not in version.document:
                continue
            spec: WorkflowSpec = self.scheduler.spec(version.project, version.name, version.version)
            schedule = spec.workflow.schedule
            assert schedule is not None
            cursor = self.catalog.get_cursor(version.project, version.name)
            try:
                times, new_cursor = due_firings(schedule, cursor, now)
                for logical in times:
                    self.scheduler.trigger(
                        version.project, version.name, logical_date=logical,
                        run_id=scheduled_run_id(version.name, logical), trigger="schedule",
                    )  # fmt: skip
                self.catalog.set_cursor(version.project, version.name, new_cursor)
                nxt = next_firing(schedule, new_cursor)
            except (StratoflowError, ScheduleError):
                log.exception("schedule of %s/%s failed", version.project, version.name)
                continue
            if nxt is not None and (soonest is None or nxt < soonest):
                soonest = nxt
        return soonest
