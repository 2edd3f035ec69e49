"""The dependency task's rules: date windows and the decision, as pure functions.

A dependency item names an upstream workflow (or one task of it) and a date value. The date
value, relative to the dependent run's logical date in its schedule's time zone, makes a list
of intervals (hours or calendar days). The item has succeeded when, in every interval, the
latest run of the upstream (by creation) with a logical date inside it has succeeded (its
named task has succeeded); it has failed as soon as one interval's latest run has ended
otherwise; else it waits (an interval with no run, or a run not yet ended). An interval with
no run in which the upstream's schedule has no fire time (``fires_in``: a DST gap its time
falls in, an hour a fall-back repeats, which it fires once, a day it skips) is not waited for:
its schedule never makes that run (an upstream without a schedule is waited for in every
interval). An interval
whose run is QUEUED and can never start while this run waits (a workflow that depends on its
own runs, every ``max_active_runs`` slot held by runs waiting on queued runs of it: see
``queued_behind``) has failed too: waiting could never end.

``all`` fails at once when one item fails and succeeds when every item has succeeded;
``any`` succeeds at once when one item succeeds and fails when every item has failed.
Waiting ends at the task's timeout with a failure naming what is missing.

Days are calendar days of the time zone (a DST day has 23 or 25 hours); hours are real hours.
Nothing here reads the clock or a store: the caller passes ``now`` and the upstream runs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from stratoflow.engine._states import RunState, TaskState
from stratoflow.errors import Problem
from stratoflow.model import (
    DateValue,
    DependencyItem,
    DependencyTask,
    OnTimeout,
    Schedule,
    WorkflowSpec,
    fires_within,
    format_duration,
)

_HOUR = timedelta(hours=1)
_LAST_HOURS = {
    DateValue.LAST_1_HOURS: 1,
    DateValue.LAST_2_HOURS: 2,
    DateValue.LAST_3_HOURS: 3,
    DateValue.LAST_24_HOURS: 24,
}
_LAST_DAYS = {
    DateValue.LAST_1_DAYS: 1,
    DateValue.LAST_2_DAYS: 2,
    DateValue.LAST_3_DAYS: 3,
    DateValue.LAST_7_DAYS: 7,
}
_LAST_WEEKDAY = {
    DateValue.LAST_MONDAY: 0,
    DateValue.LAST_TUESDAY: 1,
    DateValue.LAST_WEDNESDAY: 2,
    DateValue.LAST_THURSDAY: 3,
    DateValue.LAST_FRIDAY: 4,
    DateValue.LAST_SATURDAY: 5,
    DateValue.LAST_SUNDAY: 6,
}
MAX_DETAIL = 2000  # characters of a failure message


@dataclass(frozen=True)
class Interval:
    """[start, end) in UTC, and how to name it to a user (in the time zone)."""

    start: datetime
    end: datetime
    label: str


def schedule_zone(spec: WorkflowSpec) -> ZoneInfo:
    """The time zone a workflow's dates are in: its schedule's, else UTC."""
    schedule = spec.workflow.schedule
    return ZoneInfo(schedule.timezone if schedule is not None else "UTC")


def _day(day: date, zone: ZoneInfo) -> Interval:
    """A calendar day in ``zone``: from its first instant to the next day's (23, 24 or 25
    hours). A midnight that DST skips starts the day at the first instant that exists."""
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return Interval(start, end, day.isoformat())


def _days(first: date, last: date, zone: ZoneInfo) -> list[Interval]:
    count = (last - first).days + 1
    return [_day(first + timedelta(days=i), zone) for i in range(count)]


def _hour(start: datetime, zone: ZoneInfo) -> Interval:
    label = start.astimezone(zone).isoformat(timespec="minutes")
    return Interval(start, start + _HOUR, label)


def _first_of_month(day: date) -> date:
    return day.replace(day=1)


def date_intervals(value: DateValue, logical_date: datetime, zone: ZoneInfo) -> list[Interval]:
    """The intervals of ``value`` relative to ``logical_date`` (aware), oldest first.

    As DolphinScheduler's ``DependentDateUtils``: ``currentHour`` the logical date's hour;
    ``lastNHours`` the N whole hours before it; ``today`` its day; ``lastNDays`` the N days
    before it; ``thisWeek`` Monday to its day; ``lastWeek`` last week's Monday to Sunday;
    ``lastMonday``..``lastSunday`` that day of last week; ``thisMonth`` the 1st to its day;
    ``lastMonth`` every day of last month; ``thisMonthBegin``, ``lastMonthBegin`` and
    ``lastMonthEnd`` one day. Weeks start on Monday. (``last24Hours`` is the 24 hours before
    the logical date's hour, like ``lastNHours``; DolphinScheduler's own is fixed to yesterday
    01:00 - today 01:00 whatever the hour.)"""
    if logical_date.tzinfo is None:
        raise ValueError("logical_date must be aware")
    local = logical_date.astimezone(zone)
    day = local.date()
    if value is DateValue.CURRENT_HOUR or value in _LAST_HOURS:
        # the hour's start in local time (an offset of 30 minutes moves it), then real hours
        hour = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        n = _LAST_HOURS.get(value, 0)
        if n == 0:
            return [_hour(hour, zone)]
        return [_hour(hour - k * _HOUR, zone) for k in range(n, 0, -1)]
    if value is DateValue.TODAY:
        return [_day(day, zone)]
    if value in _LAST_DAYS:
        n = _LAST_DAYS[value]
        return _days(day - timedelta(days=n), day - timedelta(days=1), zone)
    monday = day - timedelta(days=day.weekday())
    if value is DateValue.THIS_WEEK:
        return _days(monday, day, zone)
    if value is DateValue.LAST_WEEK:
        return _days(monday - timedelta(days=7), monday - timedelta(days=1), zone)
    if value in _LAST_WEEKDAY:
        one = monday - timedelta(days=7 - _LAST_WEEKDAY[value])
        return [_day(one, zone)]
    first = _first_of_month(day)
    last_month_end = first - timedelta(days=1)
    last_month_first = _first_of_month(last_month_end)
    match value:
        case DateValue.THIS_MONTH:
            return _days(first, day, zone)
        case DateValue.LAST_MONTH:
            return _days(last_month_first, last_month_end, zone)
        case DateValue.THIS_MONTH_BEGIN:
            return [_day(first, zone)]
        case DateValue.LAST_MONTH_BEGIN:
            return [_day(last_month_first, zone)]
        case DateValue.LAST_MONTH_END:
            return [_day(last_month_end, zone)]
    raise AssertionError(value)  # pragma: no cover - every date value is handled above


def fires_in(schedule: Schedule | None, intervals: Sequence[Interval]) -> list[bool]:
    """For each interval, whether ``schedule`` (the upstream's) has a fire time in it, so
    that its schedule makes a run there; every one when there is no schedule (its runs are
    made by hand or by backfill, for any date)."""
    if schedule is None:
        return [True] * len(intervals)
    return [fires_within(schedule, i.start, i.end) for i in intervals]


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    WAITING = "waiting"


@dataclass(frozen=True)
class UpstreamRun:
    """A run of an upstream workflow, as the decision needs it. ``task_state``: the state of
    the item's task in this run (None when the item names no task, or the run has no such
    task)."""

    run_id: str
    state: RunState
    logical_date: datetime
    created_at: datetime
    task_state: TaskState | None = None
    cannot_start: str | None = None  # why a QUEUED run can never start while this task waits
    # stopped before it started: a later firing of a schedule without catchup took its place
    # (``Scheduler.fire``): its interval is skipped, as one the schedule does not fire in
    superseded: bool = False


# the start of a superseded run's error (``Scheduler._supersede_queued``, ``is_superseded``)
SUPERSEDED = "superseded by run "


def is_superseded(state: RunState, error: str | None) -> bool:
    """Whether a run with this state and error was superseded (never started)."""
    return state is RunState.STOPPED and (error or "").startswith(SUPERSEDED)


def latest_in(interval: Interval, runs: Sequence[UpstreamRun]) -> UpstreamRun | None:
    """The run that decides an interval: the latest created (then the greatest id) whose
    logical date is inside it, a superseded one only if no other is (a schedule firing more
    than once an interval: its run still running there decides it, not the later one a
    firing superseded, which would have skipped the interval)."""
    inside = [r for r in runs if interval.start <= r.logical_date < interval.end]
    deciding = [r for r in inside if not r.superseded] or inside
    if not deciding:
        return None
    return max(deciding, key=lambda r: (r.created_at, r.run_id))


@dataclass(frozen=True)
class SlotHolder:
    """An active run of a workflow (one of its ``max_active_runs`` slots) and the runs of the
    same workflow, not ended, that its waiting ``all`` dependency tasks wait for (empty: it
    may end by itself, e.g. it is paused, or waits for nothing of its own workflow)."""

    run_id: str
    waits_for: frozenset[str]


def queued_behind(
    run_id: str,
    awaited: str,
    limit: int | None,
    holders: Sequence[SlotHolder],
    *,
    implied: bool = False,
) -> str | None:
    """Why ``awaited``, a QUEUED run of the workflow of ``run_id`` (an active run that waits
    for it), can never start while ``run_id`` waits, else None.

    A queued run starts only when an active run of its workflow ends. ``holders`` are those
    active runs; one is held when it waits for a queued run or for a held run (``run_id`` is,
    for ``awaited``). When every slot is held, none can end before a queued run starts and
    no queued run can start before one ends: waiting would last for ever (or to a timeout).
    A run that may end by itself (not waiting, paused, an ``any`` task) breaks the cycle.
    ``limit``: the workflow's effective ``max_active_runs``; ``implied``: it is the one
    ``catchup`` implies (the workflow sets none), and the message says so."""
    active = {h.run_id for h in holders}
    if limit is None or len(active) < limit or run_id not in active:
        return None
    held = {run_id}
    grew = True
    while grew:
        grew = False
        for h in holders:
            if h.run_id not in held and any(w not in active or w in held for w in h.waits_for):
                held.add(h.run_id)
                grew = True
    if held != active:
        return None
    prefix = f"run {awaited} of this same workflow is queued and cannot start while this run"
    setting = f"max_active_runs: {limit}{', implied by catchup' if implied else ''}"
    if limit == 1:
        return f"{prefix} holds its only active slot ({setting})"
    others = ", ".join(sorted(active - {run_id}))
    return (
        f"{prefix} and {others} hold every active slot ({setting}), each waiting "
        "for a queued run of it or for one another"
    )


@dataclass(frozen=True)
class ItemStatus:
    """One item's outcome and, for a user, what decided it (or what it waits for)."""

    outcome: Outcome
    detail: str
    missing: bool = False  # failed because the upstream workflow does not exist


def _interval_outcome(run: UpstreamRun | None, task: str | None) -> tuple[Outcome, str]:
    if run is None:
        return Outcome.WAITING, "no run"
    if run.cannot_start is not None:
        return Outcome.FAILED, run.cannot_start
    if task is None:
        if run.state is RunState.SUCCEEDED:
            return Outcome.SUCCEEDED, f"run {run.run_id} succeeded"
        if run.state.terminal:
            return Outcome.FAILED, f"run {run.run_id} {run.state.value}"
        return Outcome.WAITING, f"run {run.run_id} {run.state.value}"
    state = run.task_state
    if state is None:
        if run.state.terminal:
            return Outcome.FAILED, f"run {run.run_id} has no task {task}"
        return Outcome.WAITING, f"run {run.run_id} has no task {task} yet"
    if state is TaskState.SUCCEEDED:
        return Outcome.SUCCEEDED, f"task {task} of run {run.run_id} succeeded"
    if state.terminal:
        return Outcome.FAILED, f"task {task} of run {run.run_id} {state.value}"
    return Outcome.WAITING, f"task {task} of run {run.run_id} {state.value}"


def item_status(
    item: DependencyItem,
    project: str,
    intervals: Sequence[Interval],
    latest: Sequence[UpstreamRun | None],
    fires: Sequence[bool] | None = None,
) -> ItemStatus:
    """Every interval must have succeeded; the first failed one fails the item at once.
    ``fires`` (``fires_in``; None: every one): an interval with no run where the upstream's
    schedule has no fire time is not waited for, and a success names it."""
    owner, name = item.upstream(project)
    who = name if owner == project else f"{owner}/{name}"
    waiting: list[str] = []
    unscheduled: list[str] = []
    if fires is None:
        fires = [True] * len(intervals)
    superseded: list[str] = []
    for interval, run, scheduled in zip(intervals, latest, fires, strict=True):
        if run is None and not scheduled:
            unscheduled.append(interval.label)
            continue
        if run is not None and run.superseded:
            superseded.append(interval.label)
            continue
        outcome, why = _interval_outcome(run, item.task)
        if outcome is Outcome.FAILED:
            return ItemStatus(Outcome.FAILED, f"{who} ({item.date.value}) {interval.label}: {why}")
        if outcome is Outcome.WAITING:
            waiting.append(f"{interval.label}: {why}")
    if waiting:
        shown = "; ".join(waiting[:10]) + (
            f"; and {len(waiting) - 10} more" if len(waiting) > 10 else ""
        )
        return ItemStatus(Outcome.WAITING, f"{who} ({item.date.value}) {shown}")
    if not unscheduled and not superseded:
        return ItemStatus(Outcome.SUCCEEDED, f"{who} ({item.date.value}) succeeded")
    notes = []
    if unscheduled:
        notes.append(f"not waited for, its schedule has no fire time in: {_few(unscheduled)}")
    if superseded:
        notes.append(
            "not waited for, its run was superseded by a later firing (a schedule without "
            f"catchup keeps only its latest run waiting) in: {_few(superseded)}"
        )
    note = "; ".join(notes)
    if len(unscheduled) + len(superseded) == len(intervals):
        return ItemStatus(Outcome.SUCCEEDED, f"{who} ({item.date.value}) {note}")
    return ItemStatus(Outcome.SUCCEEDED, f"{who} ({item.date.value}) succeeded; {note}")


def _few(labels: Sequence[str]) -> str:
    return ", ".join(labels[:10]) + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")


def unknown_upstream(item: DependencyItem, project: str) -> ItemStatus:
    """An item whose workflow does not exist fails at once (a typo must not wait for hours);
    no run of it failed, so its detail is not an upstream failure: it names the workflow and
    its project as missing."""
    owner, name = item.upstream(project)
    return ItemStatus(
        Outcome.FAILED,
        f"the workflow this task depends on does not exist: {name} in project {owner} "
        "(apply it first, or correct the name)",
        missing=True,
    )


def settles(mode: str, status: ItemStatus) -> bool:
    """Whether one item's status decides the whole task (the others need not be read): a
    failure in ``all``, a success in ``any``."""
    decisive = Outcome.FAILED if mode == "all" else Outcome.SUCCEEDED
    return status.outcome is decisive


def combine(mode: str, statuses: Sequence[ItemStatus]) -> Outcome:
    """``all``: one failure fails, every success succeeds; ``any``: one success succeeds,
    every failure fails; otherwise wait."""
    outcomes = {s.outcome for s in statuses}
    if mode == "all":
        if Outcome.FAILED in outcomes:
            return Outcome.FAILED
        return Outcome.WAITING if Outcome.WAITING in outcomes else Outcome.SUCCEEDED
    if Outcome.SUCCEEDED in outcomes:
        return Outcome.SUCCEEDED
    return Outcome.WAITING if Outcome.WAITING in outcomes else Outcome.FAILED


@dataclass(frozen=True)
class DependencyCheck:
    """What one look at the upstream runs decides: succeeded, failed (``message`` says why),
    or wait until ``next_check``. ``timed_out``: the failure is the task's timeout (its
    attempt ends timed out); ``warn``: say ``timeout`` now (``on_timeout: warn`` or
    ``warn_fail``, once per attempt)."""

    outcome: Outcome
    message: str
    next_check: datetime | None = None
    timed_out: bool = False
    warn: bool = False


WARNED = " (on_timeout: warn: still waiting)"  # ends the error of a task that warned


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."


def decide(
    task: DependencyTask,
    statuses: Sequence[ItemStatus],
    *,
    started_at: datetime,
    timeout: timedelta | None,
    now: datetime,
    on_timeout: OnTimeout = OnTimeout.FAIL,
    warned: bool = False,
) -> DependencyCheck:
    """The task's outcome from its items' statuses (in the order of ``task.items``).

    At ``timeout`` it does what the task's ``on_timeout`` says, as any task's timeout does
    (DolphinScheduler's DEPENDENT task has the same strategies): ``fail`` fails it, timed
    out; ``warn_fail`` warns, then fails it so; ``warn`` warns once (``warned``: this attempt
    has) and keeps waiting, with no deadline left, until the outcome is certain."""
    outcome = combine(task.mode, statuses)
    if outcome is Outcome.SUCCEEDED:
        done = [s.detail for s in statuses if s.outcome is Outcome.SUCCEEDED]
        return DependencyCheck(outcome, _clip("; ".join(done)))
    if outcome is Outcome.FAILED:
        failed = [s for s in statuses if s.outcome is Outcome.FAILED]
        parts = list(dict.fromkeys(s.detail for s in failed if s.missing))
        if ran := [s.detail for s in failed if not s.missing]:
            parts.append("upstream failed: " + "; ".join(ran))
        return DependencyCheck(outcome, _clip("; ".join(parts)))
    missing = "; ".join(s.detail for s in statuses if s.outcome is Outcome.WAITING)
    deadline = started_at + timeout if timeout is not None else None
    next_check = now + task.check_interval
    if timeout is not None and deadline is not None and now >= deadline:
        why = f"timed out after {format_duration(timeout)} waiting for: {missing}"
        if on_timeout is not OnTimeout.WARN:
            return DependencyCheck(
                Outcome.FAILED,
                _clip(why),
                timed_out=True,
                warn=on_timeout is OnTimeout.WARN_FAIL,
            )
        # warned: the message stays the task's (its error) while it waits on
        room = MAX_DETAIL - len(WARNED)
        message = (why if len(why) <= room else why[: room - 3] + "...") + WARNED
        return DependencyCheck(Outcome.WAITING, message, next_check, warn=not warned)
    if deadline is not None:
        next_check = min(next_check, deadline)
    return DependencyCheck(Outcome.WAITING, _clip(f"waiting for: {missing}"), next_check)


# ------------------------------------------------------------------ at apply
MAX_TASKS_NAMED = 20  # of an upstream's tasks, listed in the refusal of one it lacks


def unknown_upstream_tasks(
    spec: WorkflowSpec, tasks_of: Callable[[str, str], Collection[str] | None]
) -> list[Problem]:
    """A problem for each dependency item of ``spec`` whose ``task:`` its upstream workflow
    does not have: at run time the item could only fail (``run ... has no task ...``).
    ``tasks_of(project, name)``: the task ids of that workflow's latest version, ``None`` when
    it does not exist (not checked: it may be applied later, and the item then fails at run
    time if it is still missing). An item on ``spec``'s own workflow is checked against
    ``spec``, the version being applied."""
    problems: list[Problem] = []
    known: dict[tuple[str, str], Collection[str] | None] = {
        (spec.project, spec.name): spec.workflow.tasks.keys()
    }
    for task_id, task in spec.workflow.tasks.items():
        if not isinstance(task, DependencyTask):
            continue
        for i, item in enumerate(task.items):
            if item.task is None:
                continue
            upstream = item.upstream(spec.project)
            if upstream not in known:
                known[upstream] = tasks_of(*upstream)
            tasks = known[upstream]
            if tasks is None or item.task in tasks:
                continue
            names = sorted(tasks)
            listed = ", ".join(names[:MAX_TASKS_NAMED])
            if len(names) > MAX_TASKS_NAMED:
                listed += f", ... ({len(names)} in all)"
            problems.append(
                Problem(
                    f"tasks.{task_id}.{task.mode}.{i}.task",
                    f"dependency task {task_id!r} waits for task {item.task!r} of workflow "
                    f"{upstream[0]}/{upstream[1]}, which has no such task (its tasks: {listed})",
                )
            )
    return problems
