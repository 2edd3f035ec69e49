"""An EventBridge Scheduler firing, turned into a run (the trigger function's work).

A firing is the target input :mod:`stratoflow.adapters.aws.schedules` sets:
``{"project": ..., "workflow": ..., "scheduled_time": "2026-11-21T02:00:00Z"}``.

It means what a firing of the local cron loop means (``adapters/local/cron.py``; both use the
pure rules in :mod:`stratoflow.model`):

* the run's logical date is the fire time itself (not the start of the interval before it), in
  UTC; the schedule is flexible-window ``OFF``, so the scheduled time *is* that fire time. It is
  still put on the model's grid (the last fire time at or before it) when it is within
  EventBridge's precision of it (a minute), or is the same wall-clock time (the second pass of
  an hour a fall-back repeats, which EventBridge runs once without saying at which pass);
* a firing at none of the schedule's times creates nothing: it was made by a schedule an apply
  has since replaced (``UpdateSchedule`` stops the old times, but a retry of one already due
  still arrives, for up to a day), and the new schedule's last time before it is a date the
  local loop, whose cursor had passed it, never fires;
* the run id is ``scheduled_run_id(project, workflow, logical date)``: a duplicate firing (EventBridge
  delivers at least once, and retries) finds the run it created before;
* with ``catchup: true`` the firing also creates the runs missed since the workflow's cursor
  (EventBridge Scheduler does not backfill), oldest first, at most as many as the workflow has
  room for (``Scheduler.catchup_room``: its effective ``max_active_runs`` less its queued and
  active runs) and ``MAX_FIRINGS_PER_TICK``: a longer backlog continues at the next firing
  or the reconciler's pass (``continue_catchups``). The firing's own run is created when
  nothing missed is left before it and the workflow has room; behind a backlog, or with the
  workflow full, it waits its turn: the cursor stays before it, so a later firing or pass
  creates it, in order, once (its run id is its date's). The firing returns the last run it
  created (``None`` when it had no room for any). A workflow at its ``max_active_runs`` so
  gets no run queued per firing (Airflow creates no DagRun then), however long a run takes;
* without catchup, the firing's run supersedes a run of the schedule still queued behind
  ``max_active_runs`` (``Scheduler.fire``: that run ends stopped, naming the new one), so
  the one waiting is the latest;
* a paused workflow, a workflow whose schedule was removed, and a firing outside the schedule's
  window create nothing (``fire`` returns ``None``);
* a schedule whose times cannot be computed (an error of any kind, e.g. an ``OverflowError`` at
  the edge of the calendar) creates nothing either: the workflow is marked in error
  (``schedule_error`` in the catalog, shown by the API) and the firing is acknowledged, so
  EventBridge does not retry it for a day; a later firing that works clears the mark.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from stratoflow.engine import Run
from stratoflow.errors import InvalidInput, Problem
from stratoflow.model import (
    Schedule,
    due_firings,
    parse_schedule,
    schedule_window,
)
from stratoflow.service import Scheduler

__all__ = [
    "PRECISION",
    "Firing",
    "continue_catchups",
    "fire",
    "fired_at",
    "logical_date",
    "parse_firing",
]

log = logging.getLogger("stratoflow.firing")

_SOURCE = "schedule firing"
# "All schedule types on EventBridge Scheduler invoke their targets with 60 second precision"
# (EventBridge Scheduler User Guide, "Schedule types")
PRECISION = timedelta(minutes=1)
_JUST_BEFORE = timedelta(microseconds=1)


@dataclass(frozen=True)
class Firing:
    project: str
    workflow: str
    scheduled_time: datetime  # aware UTC


def parse_firing(event: Any) -> Firing:
    """Validate a firing's input. Raises ``InvalidInput`` naming every bad field."""
    if not isinstance(event, Mapping):
        raise InvalidInput(
            f"expected a JSON object with project, workflow and scheduled_time, "
            f"got {type(event).__name__}",
            source=_SOURCE,
        )
    problems: list[Problem] = []
    names: dict[str, str] = {}
    for key in ("project", "workflow"):
        value = event.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(Problem(key, "required: a non-empty string"))
        else:
            names[key] = value
    scheduled = _parse_time(event.get("scheduled_time"), problems)
    if problems:
        raise InvalidInput(problems, source=_SOURCE)
    assert scheduled is not None
    return Firing(names["project"], names["workflow"], scheduled)


def _parse_time(value: Any, problems: list[Problem]) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        problems.append(Problem("scheduled_time", "required: an ISO 8601 time with a zone"))
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        problems.append(
            Problem("scheduled_time", f"{value!r} is not an ISO 8601 time (2026-11-21T02:00:00Z)")
        )
        return None
    if moment.tzinfo is None:
        problems.append(Problem("scheduled_time", f"{value!r} has no time zone (add Z)"))
        return None
    return moment.astimezone(UTC)


def logical_date(schedule: Schedule, scheduled_time: datetime) -> datetime | None:
    """The logical date of a firing at ``scheduled_time``: the schedule's last fire time at or
    before it, or ``None`` if that falls outside the schedule's window."""
    start, end = schedule_window(schedule)
    found = parse_schedule(schedule.cron).previous_at_or_before(
        scheduled_time, schedule.timezone, start
    )
    if found is None or (end is not None and found > end):
        return None
    return found


def fired_at(schedule: Schedule, scheduled_time: datetime, logical: datetime) -> bool:
    """Whether a firing at ``scheduled_time`` is the schedule's fire time ``logical`` (its last
    one at or before it): less than EventBridge's precision after it, or the same wall-clock
    reading in the schedule's zone (the second pass of an hour a fall-back repeats). Otherwise
    the firing's time is none of this schedule's: another schedule, since replaced, made it."""
    if scheduled_time - logical < PRECISION:
        return True
    zone = ZoneInfo(schedule.timezone)
    wall = scheduled_time.astimezone(zone).replace(tzinfo=None)
    return abs(wall - logical.astimezone(zone).replace(tzinfo=None)) < PRECISION


def fire(scheduler: Scheduler, event: Any) -> tuple[Run, bool] | None:
    """Create the run of a firing (and, with catchup, the runs it missed before it).

    Returns the firing's run and whether this call created it (``False``: a duplicate firing,
    the run already existed), or ``None`` when the firing creates nothing (workflow paused,
    schedule removed, or outside the schedule's window). Raises ``InvalidInput`` for a garbled
    event and ``NotFound`` for an unknown workflow, having created nothing.
    """
    firing = parse_firing(event)
    catalog = scheduler.catalog
    project, name = firing.project, firing.workflow
    latest = catalog.get_version(project, name)
    if latest.paused:
        log.info("firing of paused workflow %s/%s ignored", project, name)
        return None
    schedule = scheduler.spec(project, name, latest.version).workflow.schedule
    if schedule is None:
        log.warning("firing of %s/%s ignored: it has no schedule any more", project, name)
        return None
    cursor = catalog.get_cursor(project, name)
    missed: list[datetime] = []
    caught_up: datetime | None = None
    try:
        logical = logical_date(schedule, firing.scheduled_time)
        if logical is not None and not fired_at(schedule, firing.scheduled_time, logical):
            log.warning(
                "firing of %s/%s at %s ignored: not a fire time of %r (a firing of the "
                "schedule an apply replaced, retried after it)",
                project, name, firing.scheduled_time.isoformat(), schedule.cron,
            )  # fmt: skip
            return None
        if schedule.catchup and logical is not None:
            room = scheduler.catchup_room(latest)
            since = cursor
            if since is None and schedule_window(schedule)[0] is None:
                # the first firing of a catch-up without a start: its own time is the first
                # due (the local loop's first sight is at the apply, the time after it its
                # first); one without room stays due, behind the cursor this sets
                since = logical - _JUST_BEFORE
            missed, caught_up = due_firings(schedule, since, logical, room)
    except Exception as exc:  # this workflow's schedule cannot be computed: mark it, go on
        scheduler.schedule_failed(latest, exc)
        return None
    if logical is None:
        log.warning(
            "firing of %s/%s at %s ignored: outside its schedule's window",
            project, name, firing.scheduled_time.isoformat(),
        )  # fmt: skip
        return None
    if logical != firing.scheduled_time:
        log.warning(
            "firing of %s/%s at %s is not a fire time of %r; using the one before it, %s",
            project, name, firing.scheduled_time.isoformat(), schedule.cron, logical.isoformat(),
        )  # fmt: skip
    if caught_up is not None and caught_up < logical:
        # a backlog bounded by the workflow's room: the missed runs it had room for, oldest
        # first (none when it is full); this firing's own run comes in its turn, after them
        # (a later firing, or the reconciler's pass)
        made = scheduler.fire(latest, missed, cursor, caught_up)
        return made[-1] if made else None
    dates = [when for when in missed if when != logical] + [logical]
    made = scheduler.fire(latest, dates, cursor, logical if caught_up is None else caught_up)
    return made[-1]


def continue_catchups(scheduler: Scheduler) -> int:
    """Go on with the catch-ups that waited for room (the reconciler's periodic pass).

    EventBridge Scheduler fires only at the schedule's times, and a catch-up makes only the
    runs its workflow has room for: a daily schedule's backlog would move on once a day. So
    for each unpaused workflow that catches up and whose cursor is behind its latest fire
    time (at or before the end of its window), this does what a firing at that time does
    (``fire``: the missed runs it has room for, oldest first, and that time's own run once
    nothing is missed before it and there is room). A workflow that has never fired is left
    to its first firing (one that found no room set the cursor before its time), unless its
    window has ended: no firing will come (Airflow's start_date and end_date in the past
    with catchup), so this is its first sight, as the local loop's would be. Returns how many workflows it fired for; one that fails is marked in error
    (as a firing would) and the others go on."""
    fired = 0
    now = scheduler.clock.now()
    for latest in scheduler.catalog.list_workflows():
        if latest.paused or "schedule" not in latest.document:
            continue
        try:
            schedule = scheduler.spec(latest.project, latest.name, latest.version).workflow.schedule
            if schedule is None or not schedule.catchup:
                continue
            cursor = scheduler.catalog.get_cursor(latest.project, latest.name)
            start, end = schedule_window(schedule)
            ended = end is not None and end <= now
            if cursor is None and not (ended and start is not None):
                continue  # left to its first firing, as the local loop's first sight
            # a window that has ended has no firing to come (its EventBridge schedule is
            # deleted, or past its EndDate): its catch-up goes on here, up to its end
            due = logical_date(schedule, min(now, end) if end is not None else now)
            if due is None or (cursor is not None and due <= cursor):
                continue
            event = {
                "project": latest.project,
                "workflow": latest.name,
                "scheduled_time": due.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            if fire(scheduler, event) is not None:
                fired += 1
        except Exception as exc:  # this workflow only: marked, the others go on
            scheduler.schedule_failed(latest, exc)
    return fired
