"""Backfill (DolphinScheduler's complement data): the dates, and how lanes move through them.

Pure: every function takes what it needs (the backfill, the runs of its dates, ``now``) and
returns the new backfill and what to do; the service persists it with a conditional write and
only then acts (creates or reruns runs), so a crash in between is completed by whoever looks
next (the next run end, the reconciler): a date marked running whose run does not exist yet is
created again under its deterministic id, a rerun not yet applied is applied again.

Lanes: ``parallel`` lanes take the next pending date (in the backfill's order) whenever they
are free, so no lane waits for another's slow run and no batch waits for its slowest; a lane
whose run fails stops (serial: the first failure stops the backfill), the other lanes go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Self
from zoneinfo import ZoneInfo

from stratoflow.engine._engine import Plan, _require_finished, _reset
from stratoflow.engine._states import Run, RunState, TaskInstance
from stratoflow.errors import Conflict, InvalidInput, Problem
from stratoflow.model import (
    DependencyTask,
    Schedule,
    ScheduleError,
    WorkflowSpec,
    parse_schedule,
)
from stratoflow.moments import is_date, read_moment

MAX_BACKFILL_DATES = 1000  # one backfill's dates (a document of them stays well under 400 KB)
MAX_BACKFILL_PARALLEL = 32
MAX_BACKFILL_DEPENDENTS = 50  # downstream workflows one backfill may include (``dependents``)
# without a schedule: daily at 00:00 in UTC (the schedule's time zone when there is none)
DAILY = "0 0 * * *"


class BackfillState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    # cancelled, its runs still being stopped: the durable intent of a cancel, completed by
    # whoever comes next (a repeated cancel, a run's end, the reconciler), then ``cancelled``
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (BackfillState.SUCCEEDED, BackfillState.FAILED, BackfillState.CANCELLED)


class DateState(StrEnum):
    PENDING = "pending"  # not taken by a lane yet
    RUNNING = "running"  # a lane waits for its run
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # its run failed (or a failed run was kept): its lane stopped
    # its run was stopped (the backfill's cancel, or a user; or a stopped run was kept): its
    # lane stopped; the date did not complete
    STOPPED = "stopped"
    SKIPPED = "skipped"  # a succeeded run existed and --rerun did not ask to run it again
    NOT_RUN = "not_run"  # no run of it started here: every lane stopped, or cancelled first


class Rerun(StrEnum):
    NONE = "none"  # a date that has a run keeps it (an active one is waited for)
    FAILED = "failed"  # a failed or stopped run reruns its failed tasks
    ALL = "all"  # every finished run runs again, whole


class Order(StrEnum):
    ASC = "asc"
    DESC = "desc"


class Action(StrEnum):
    """What a lane did to take a date: made its run, reran it, or waits for a run that was
    already active (a schedule firing's, another backfill's)."""

    CREATE = "create"
    RERUN = "rerun"
    ADOPT = "adopt"


@dataclass(frozen=True)
class BackfillDate:
    logical_date: datetime
    run_id: str
    state: DateState = DateState.PENDING
    lane: int | None = None
    action: Action | None = None
    # a rerun's mark until it is applied: the run's ended_at before it; while the run still
    # ends then, the rerun was not applied (a crash came in between) and is applied again
    prior_end: datetime | None = None
    run_state: RunState | None = None  # the run's state when the backfill last looked
    error: str | None = None
    # the workflow version its run pins, once a lane took the date (None before): the
    # backfill's for a run it made, the run's own for one it reran, waited for or kept (a
    # rerun goes on under its run's version, whatever the latest is)
    version: int | None = None

    def with_(self, **changes: Any) -> Self:
        return replace(self, **changes)


@dataclass(frozen=True)
class Backfill:
    id: str
    project: str
    workflow: str
    # the version the runs it makes pin (the latest when it was created); a run it reruns,
    # waits for or keeps has its own (each date's ``version``)
    version: int
    params: dict[str, Any]
    parallel: int
    order: Order
    rerun: Rerun
    dates: tuple[BackfillDate, ...]  # in the order lanes take them
    created_at: datetime
    state: BackfillState = BackfillState.RUNNING
    stopped_lanes: frozenset[int] = frozenset()
    updated_at: datetime | None = None
    ended_at: datetime | None = None
    created_by: str | None = None
    revision: int = 0  # every stored change adds one; writes are conditional on it
    # dependent mode: the backfill that included this one (its upstream's), and, on that
    # one, the backfills of every downstream workflow it included (ids, each once)
    parent: str | None = None
    dependents: tuple[str, ...] = ()

    def with_(self, **changes: Any) -> Self:
        return replace(self, **changes)

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in DateState}
        for d in self.dates:
            out[d.state.value] += 1
        return out


@dataclass(frozen=True)
class BackfillTurn:
    """What ``advance_backfill`` decided: the backfill after it (unchanged: ``changed`` is
    False), the dates whose run must be made or rerun now, the events to emit, and whether it
    stopped because it needs the runs of more pending dates (``lookup``) before going on."""

    backfill: Backfill
    acts: tuple[BackfillDate, ...] = ()
    events: tuple[str, ...] = ()  # backfill.succeeded | backfill.failed | backfill.cancelled
    lookup: tuple[str, ...] = ()
    changed: bool = False
    # a cancelling backfill's runs still going on that it made or reran: to be stopped
    stop: tuple[str, ...] = ()


# ------------------------------------------------------------------ dates
def schedule_zone(schedule: Schedule | None) -> ZoneInfo:
    """The zone a user's dates for a workflow are read in: its schedule's, else UTC."""
    return ZoneInfo(schedule.timezone if schedule is not None else "UTC")


def parse_moment(text: str, field_name: str, zone: ZoneInfo, *, end: bool = False) -> datetime:
    """A date (YYYY-MM-DD: its start, or with ``end`` its last instant, in ``zone``), a
    date-time without offset (wall time in ``zone``) or with one; aware UTC."""
    try:
        moment = read_moment(text, zone, end=end)
    except (ValueError, OverflowError):
        raise InvalidInput(
            [Problem(field_name, f"{text!r} is not a date (YYYY-MM-DD) or ISO-8601 date-time "
                                 "between 1900 and 9999")]
        ) from None  # fmt: skip
    gap = _skipped_wall_time(text, moment, zone)
    if gap is not None:
        raise InvalidInput([Problem(field_name, gap)])
    if not _EARLIEST <= moment <= _LATEST:
        # the bounds are instants in UTC: a day means its first instant (as an end, its last)
        # in the schedule's time zone, which can fall outside though the day looks inside
        whole = " (as an end: through that whole day)" if end and is_date(text) else ""
        raise InvalidInput(
            [Problem(field_name, f"{text!r} means {utc_text(moment)}{whole}; it must be "
                                 f"between {utc_text(_EARLIEST)} and {utc_text(_LATEST)}")]
        )  # fmt: skip
    return moment


def _skipped_wall_time(text: str, moment: datetime, zone: ZoneInfo) -> str | None:
    """Why ``text``, a date-time without an offset, names no instant: a wall time that a
    daylight-saving change skips in ``zone`` (02:30 on the night clocks go from 02:00 to
    03:00) does not exist there. Python reads one with the offset from before the change, an
    instant whose wall time is another (03:30), so the run would silently get a date nobody
    asked for, and the id of the one at that other time. ``None`` when it exists (a date, a
    value with an offset, a wall time a fall-back repeats: that is its first instance, the
    one the schedule fires at, as EventBridge Scheduler does)."""
    if is_date(text):
        return None  # a day's first (or last) instant: the combine above is on whole days
    try:
        written = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if written.tzinfo is not None:
        return None
    read = moment.astimezone(zone).replace(tzinfo=None)
    if read == written.replace(fold=0):
        return None
    return (
        f"{text.strip()!r} does not exist in {zone.key}: daylight-saving time skips that "
        f"wall time on that day (it would be read as {read.isoformat()}); give a time that "
        "exists there, or an offset (e.g. 'Z' or '+01:00') to name the instant"
    )


def utc_text(moment: datetime) -> str:
    """An instant as UTC ISO-8601 with a Z (microseconds only when it has them)."""
    text = moment.astimezone(UTC).replace(tzinfo=None).isoformat()
    return f"{text}Z"


_EARLIEST = datetime(1900, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 12, 29, tzinfo=UTC)


def backfill_dates(
    schedule: Schedule | None,
    *,
    start: str | None = None,
    end: str | None = None,
    dates: Sequence[str] = (),
    order: Order = Order.ASC,
    allow_empty: bool = False,
    now: datetime | None = None,
) -> list[datetime]:
    """The logical dates of a backfill (aware UTC, in ``order``, each once): every time the
    schedule fires in the closed range [start, end] — daily at 00:00 in the schedule's time
    zone (UTC) without a schedule — or, with ``dates``, the times it fires on each of those
    days (a date) or exactly those instants (a date-time). The schedule's own start/end window
    does not limit a backfill: asking for the dates is the point (a rate() schedule's dates
    are its grid, start + k * rate with k negative too, so dates before its start are on the
    times it keeps after it). ``allow_empty``: a range the schedule never fires in
    gives no dates instead of an error (a dependent's, in ``plan_dependents``). ``now``: a
    date after it is refused (``refuse_future_dates``), naming the earliest; a range is not
    looked at past it (a far end is refused as future, not as too many dates)."""
    zone = schedule_zone(schedule)
    expr = parse_schedule(schedule.cron if schedule is not None else DAILY)
    anchor = schedule.start if schedule is not None and expr.rate is not None else None
    tz = str(zone)
    found: set[datetime] = set()
    later: list[datetime] = []  # the earliest date after ``now`` of each range or instant

    def fire(lo: datetime, hi: datetime, where: str) -> None:
        t = lo - timedelta(microseconds=1)
        while True:
            try:
                t = expr.grid_after(t, tz, anchor)  # its start no bound: the grid's anchor
            except ScheduleError:  # no more fire times
                return
            if t > hi:
                return
            if now is not None and t > now:
                later.append(t)  # and every later one of this range is after now too
                return
            found.add(t)
            if len(found) > MAX_BACKFILL_DATES:
                raise InvalidInput(
                    [Problem(where, f"the schedule fires more than {MAX_BACKFILL_DATES} times "
                                    "in this range; backfill a shorter one")]
                )  # fmt: skip

    if dates:
        if start is not None or end is not None:
            raise InvalidInput([Problem("dates", "give either dates or start and end, not both")])
        if len(dates) > MAX_BACKFILL_DATES:
            raise InvalidInput([Problem("dates", f"at most {MAX_BACKFILL_DATES} dates")])
        for i, text in enumerate(dates):
            where = f"dates[{i}]"
            if len(text.strip()) == 10:
                fire(parse_moment(text, where, zone), parse_moment(text, where, zone, end=True), where)  # fmt: skip
            else:  # to the second, as run ids are: two instants in one second are one date
                found.add(parse_moment(text, where, zone).replace(microsecond=0))
        if now is not None:
            later += [d for d in found if d > now]
            refuse_future_dates(later, now, "dates")
    else:
        if start is None or end is None:
            missing = [f for f, v in (("start", start), ("end", end)) if v is None]
            raise InvalidInput([Problem(f, "required (or give dates)") for f in missing])
        lo = parse_moment(start, "start", zone)
        hi = parse_moment(end, "end", zone, end=True)
        if hi < lo:
            raise InvalidInput([Problem("end", f"{end} is before start {start}")])
        fire(lo, hi, "end")
        if now is not None:
            refuse_future_dates(later, now, "end" if lo <= now else "start")
    if not found and not allow_empty:
        raise InvalidInput(
            [Problem("dates" if dates else "end", "the schedule fires at no time in this range")]
        )
    if len(found) > MAX_BACKFILL_DATES:
        raise InvalidInput([Problem("dates", f"at most {MAX_BACKFILL_DATES} dates")])
    return sorted(found, reverse=order is Order.DESC)


def refuse_future_dates(logical_dates: Iterable[datetime], now: datetime, field_name: str) -> None:
    """A backfill runs only logical dates that have come (Airflow 3 refuses later ones too):
    the run of a later date would take the id its schedule firing uses then, so the firing
    would find it and add nothing, and the date would have run before its time."""
    later = [d for d in logical_dates if d > now]
    if later:
        raise InvalidInput(
            [Problem(field_name, f"logical date {utc_text(min(later))} is after now "
                                 f"({utc_text(now.replace(microsecond=0))}): a backfill runs "
                                 "only dates that have come; the schedule runs later ones")]
        )  # fmt: skip


def new_backfill(
    *,
    backfill_id: str,
    spec: WorkflowSpec,
    version: int,
    logical_dates: Sequence[datetime],
    run_ids: Sequence[str],
    params: Mapping[str, Any],
    parallel: int,
    order: Order,
    rerun: Rerun,
    now: datetime,
    created_by: str | None = None,
    parent: str | None = None,
    dependents: Sequence[str] = (),
) -> Backfill:
    if not 1 <= parallel <= MAX_BACKFILL_PARALLEL:
        raise InvalidInput([Problem("parallel", f"must be 1 to {MAX_BACKFILL_PARALLEL}")])
    return Backfill(
        id=backfill_id, project=spec.project, workflow=spec.name, version=version,
        params=dict(params), parallel=parallel, order=order, rerun=rerun,
        dates=tuple(BackfillDate(d, r) for d, r in zip(logical_dates, run_ids, strict=True)),
        created_at=now, updated_at=now, created_by=created_by, parent=parent,
        dependents=tuple(dependents),
    )  # fmt: skip


# ------------------------------------------------------------------ dependent mode
@dataclass(frozen=True)
class DependentPlan:
    """One downstream workflow a backfill includes: its logical dates (its own schedule's in
    the range) and through which upstream it was reached first (``via``, for the user)."""

    project: str
    workflow: str
    logical_dates: tuple[datetime, ...]
    via: tuple[str, str]


def upstreams_of(spec: WorkflowSpec) -> set[tuple[str, str]]:
    """The (project, workflow) pairs the dependency tasks of ``spec`` wait on."""
    found: set[tuple[str, str]] = set()
    for task in spec.workflow.tasks.values():
        if isinstance(task, DependencyTask):
            found.update(item.upstream(spec.project) for item in task.items)
    return found


def _dependent_days(dates: Sequence[str], root_zone: ZoneInfo) -> list[str]:
    """The days a list of dates covers, for a downstream workflow: an exact date-time of the
    root names its day (in the root's time zone), so the downstream runs its own schedule's
    times of that day rather than an instant its schedule may never fire at."""
    days: list[str] = []
    for i, text in enumerate(dates):
        if len(text.strip()) == 10:
            days.append(text.strip())
        else:
            moment = parse_moment(text, f"dates[{i}]", root_zone)
            days.append(moment.astimezone(root_zone).date().isoformat())
    return sorted(set(days))


def plan_dependents(
    root: tuple[str, str],
    workflows: Mapping[tuple[str, str], WorkflowSpec],
    *,
    start: str | None = None,
    end: str | None = None,
    dates: Sequence[str] = (),
    order: Order = Order.ASC,
    root_schedule: Schedule | None = None,
    now: datetime | None = None,
) -> list[DependentPlan]:
    """The downstream workflows a dependent-mode backfill of ``root`` includes, and their
    dates (DolphinScheduler's complement data with dependent mode).

    - Which: every workflow of ``workflows`` (those the caller may trigger) whose dependency
      tasks name ``root`` or, transitively, a workflow already included (C on B on A). A
      workflow outside ``workflows`` is not included and neither is what only it leads to.
    - Each once: a workflow reached by two paths (a diamond: B and C on A, D on B and C) is
      planned once, so its backfill, and its run per date, is one; the root itself is never
      included again (a dependency cycle back to it ends there). Breadth-first, so each
      workflow comes after one of its upstreams (``via``), in a stable order.
    - Which dates: its own schedule's times (daily at 00:00 without one) in the same range
      [start, end], or on the same days (``dates``; a date-time names its day in the root's
      time zone). One whose schedule fires at no time in the range is left out (nothing to
      backfill there), but what depends on it is still looked at.
    - ``now``: a date of one after it is refused like the root's (``backfill_dates``); a
      problem with one's dates names it.
    Raises ``InvalidInput`` when more than ``MAX_BACKFILL_DEPENDENTS`` are included."""
    downstream: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key in sorted(workflows):
        for up in sorted(upstreams_of(workflows[key])):
            downstream.setdefault(up, []).append(key)
    seen = {root}
    queue = [root]
    plans: list[DependentPlan] = []
    day_list = _dependent_days(dates, schedule_zone(root_schedule)) if dates else []
    while queue:
        upstream = queue.pop(0)
        for key in downstream.get(upstream, []):
            if key in seen:
                continue  # the diamond's second path: planned once
            seen.add(key)
            queue.append(key)
            if len(seen) - 1 > MAX_BACKFILL_DEPENDENTS:
                raise InvalidInput(
                    [Problem("dependents", f"more than {MAX_BACKFILL_DEPENDENTS} workflows "
                                           "depend on this one; backfill them in parts")]
                )  # fmt: skip
            try:
                logical = backfill_dates(
                    workflows[key].workflow.schedule, start=start, end=end, dates=day_list,
                    order=order, allow_empty=True, now=now,
                )  # fmt: skip
            except InvalidInput as exc:  # its own schedule's dates: say whose they are
                raise InvalidInput(
                    [Problem("dependents", f"{key[0]}/{key[1]}: {p.path}: {p.message}")
                     for p in exc.problems]
                ) from None  # fmt: skip
            if not logical:
                continue  # its schedule fires at no time in the range: nothing to backfill
            plans.append(DependentPlan(key[0], key[1], tuple(logical), upstream))
    return plans


# ------------------------------------------------------------------ lanes
def wanted_runs(backfill: Backfill, lookahead: int) -> list[str]:
    """The run ids ``advance_backfill`` needs: every running date's and the next
    ``lookahead`` pending dates' (whether a run exists decides create, rerun, wait or skip)."""
    running = [d.run_id for d in backfill.dates if d.state is DateState.RUNNING]
    pending = [d.run_id for d in backfill.dates if d.state is DateState.PENDING]
    return running + pending[:lookahead]


def rerun_due(date: BackfillDate, run: Run) -> bool:
    """Whether the date's decided rerun is still to be applied: the run still ends as the
    decision saw it (``prior_end``). Applying it is conditional on the same (the service
    passes ``prior_end`` to the store's conditional write), so of two advancers applying one
    decision, or an advancer and the reconciler, only the first reruns: after it the run
    is running, or ended at another instant."""
    return (
        date.action is Action.RERUN
        and date.prior_end is not None
        and run.state.terminal
        and run.ended_at == date.prior_end
    )


def awaited_runs(backfills: Iterable[Backfill]) -> set[str]:
    """The run ids of the dates running or paused backfills still run: taken (a run made,
    rerun or adopted) or to be taken. A schedule's firing does not supersede a queued run
    of one of them (``Scheduler._supersede_queued``): its date is one a user asked for."""
    return {
        d.run_id
        for b in backfills
        if b.state in (BackfillState.RUNNING, BackfillState.PAUSED)
        for d in b.dates
        if d.state in (DateState.PENDING, DateState.RUNNING)
    }


def _take(existing: Run | None, rerun: Rerun) -> Action | None:
    """How a lane takes a date, given the run that already has its id (None: skip it)."""
    if existing is None:
        return Action.CREATE
    if not existing.state.terminal:
        return Action.ADOPT
    if rerun is Rerun.ALL:
        return Action.RERUN
    if rerun is Rerun.FAILED and existing.state is not RunState.SUCCEEDED:
        return Action.RERUN
    return None


def would_rerun(existing: Run, rerun: Rerun) -> bool:
    """Whether a backfill with ``rerun`` would rerun ``existing`` (the run of one of its
    dates) when a lane takes the date: an ended run as ``_take`` decides; one still going
    is waited for then, but may end before its lane gets there (and is taken as it ended
    then), so any rerun mode may rerun it. A run that succeeded is rerun by ``all`` only."""
    if not existing.state.terminal:
        return rerun is not Rerun.NONE
    return _take(existing, rerun) is Action.RERUN


def advance_backfill(
    backfill: Backfill, runs: Mapping[str, Run | None], now: datetime
) -> BackfillTurn:
    """Record the ends of the runs lanes wait for, let free lanes take the next dates, and
    end the backfill when nothing is left to run. ``runs`` maps a run id to its run (None: it
    does not exist) for at least the running dates (``wanted_runs``); a pending date whose run
    is not in it stops the filling of lanes there (``lookup`` names what to read first).
    Idempotent: the same inputs after the same backfill decide nothing new."""
    if backfill.state.terminal:
        return BackfillTurn(backfill)
    cancelling = backfill.state is BackfillState.CANCELLING
    dates = list(backfill.dates)
    stopped = set(backfill.stopped_lanes)
    acts: list[BackfillDate] = []
    stop: list[str] = []
    events: list[str] = []
    for i, d in enumerate(dates):
        if d.state is not DateState.RUNNING:
            continue
        if d.run_id not in runs:
            continue  # not read: decided next time
        run = runs[d.run_id]
        if cancelling:
            # its cancel stops what it made or reran; a date ends once its run has
            if run is None:  # never made (its creator died): nothing to stop
                dates[i] = d.with_(state=DateState.NOT_RUN, run_state=None, error=CANCELLED)
            elif run.state.terminal:
                dates[i] = _ended_as(d, run)
                if run.state is RunState.STOPPED:
                    dates[i] = dates[i].with_(error=f"{CANCELLED}: its run was stopped")
            else:
                stop.append(d.run_id)
            continue
        if run is None:
            if d.action is Action.CREATE:
                acts.append(d)  # marked, then the creator died: make it (same id: once)
            else:
                dates[i] = d.with_(state=DateState.FAILED, error="its run no longer exists")
                stopped.add(d.lane or 0)
            continue
        if rerun_due(d, run):
            acts.append(d)  # the rerun was decided but not applied
            continue
        if run.state.terminal:
            dates[i] = _ended_as(d, run)
            if run.state is not RunState.SUCCEEDED:
                stopped.add(d.lane or 0)
        elif d.run_state is not run.state or d.version != run.version:
            dates[i] = d.with_(run_state=run.state, version=run.version)
    lookup: list[str] = []
    if backfill.state is BackfillState.RUNNING:
        busy = {d.lane for d in dates if d.state is DateState.RUNNING}
        free = [lane for lane in range(backfill.parallel) if lane not in busy | stopped]
        for i, d in enumerate(dates):
            if not free:
                break
            if d.state is not DateState.PENDING:
                continue
            if d.run_id not in runs:
                lookup.append(d.run_id)
                break
            existing = runs[d.run_id]
            action = _take(existing, backfill.rerun)
            if action is None and existing is not None and existing.state is RunState.SUCCEEDED:
                dates[i] = d.with_(
                    state=DateState.SKIPPED, run_state=existing.state, version=existing.version
                )
                continue
            if action is None and existing is not None:
                # a kept run that did not succeed: the date did not complete, so it is not
                # skipped (a success) but ends as its run did, and stops its lane like a
                # failure (serial: no date starts after one that did not succeed)
                lane = free.pop(0)
                dates[i] = d.with_(
                    state=_ended(existing.state), lane=lane, run_state=existing.state,
                    version=existing.version,
                    error=f"its run {existing.id} {existing.state.value} and --rerun "
                          f"{backfill.rerun.value} keeps it (--rerun failed runs it again)",
                )  # fmt: skip
                stopped.add(lane)
                continue
            assert action is not None
            dates[i] = d.with_(
                state=DateState.RUNNING, lane=free.pop(0), action=action,
                prior_end=existing.ended_at if existing is not None else None,
                run_state=existing.state if existing is not None else None,
                version=existing.version if existing is not None else backfill.version,
            )  # fmt: skip
            if action is not Action.ADOPT:
                acts.append(dates[i])
    after = backfill.with_(dates=tuple(dates), stopped_lanes=frozenset(stopped))
    if not lookup:
        after = _maybe_end(after, now)
        if after.state.terminal:
            events.append(f"backfill.{after.state.value}")
    changed = after != backfill
    if changed:
        after = after.with_(updated_at=now)
    return BackfillTurn(after, tuple(acts), tuple(events), tuple(lookup), changed, tuple(stop))


def _ended(state: RunState) -> DateState:
    """A date's state once its run ended in ``state``."""
    if state is RunState.SUCCEEDED:
        return DateState.SUCCEEDED
    return DateState.STOPPED if state is RunState.STOPPED else DateState.FAILED


def _maybe_end(backfill: Backfill, now: datetime) -> Backfill:
    states = {d.state for d in backfill.dates}
    if DateState.RUNNING in states:
        return backfill
    if backfill.state is BackfillState.CANCELLING:  # every run it stops has ended
        return backfill.with_(state=BackfillState.CANCELLED, ended_at=now)
    lanes_left = len(backfill.stopped_lanes) < backfill.parallel
    if DateState.PENDING in states and lanes_left:
        return backfill  # running or paused: lanes will take them
    dates = tuple(
        d.with_(state=DateState.NOT_RUN) if d.state is DateState.PENDING else d
        for d in backfill.dates
    )
    bad = any(d.state in (DateState.FAILED, DateState.STOPPED, DateState.NOT_RUN) for d in dates)
    return backfill.with_(
        dates=dates,
        state=BackfillState.FAILED if bad else BackfillState.SUCCEEDED,
        ended_at=now,
    )


def pause_backfill(backfill: Backfill, now: datetime) -> Backfill:
    """No lane takes a new date; the runs going on go on."""
    if backfill.state is not BackfillState.RUNNING:
        raise Conflict(f"backfill {backfill.id} is {backfill.state}; only a running one pauses")
    return backfill.with_(state=BackfillState.PAUSED, updated_at=now)


def resume_backfill(backfill: Backfill, now: datetime) -> Backfill:
    if backfill.state is not BackfillState.PAUSED:
        raise Conflict(f"backfill {backfill.id} is {backfill.state}; only a paused one resumes")
    return backfill.with_(state=BackfillState.RUNNING, updated_at=now)


def cancel_backfill(backfill: Backfill, now: datetime) -> Backfill:
    """Cancel it (its durable intent, ``cancelling``): no date is taken any more; a pending
    date, and one whose run it only waited for (a schedule's, left alone), is ``not_run``
    now. The runs it made or reran that still go on keep their dates running until they
    are stopped: ``advance_backfill`` names them (``stop``) on every turn of a cancelling
    backfill and ends their dates as their runs end (``stopped``), then the backfill
    ``cancelled``. So whatever dies between the cancel's writes, the next cancel, run end or
    reconciler pass finishes it. A cancelling backfill is returned as it is (a repeated
    cancel finishes the job); an ended one is a Conflict."""
    if backfill.state.terminal:
        raise Conflict(f"backfill {backfill.id} is already {backfill.state}")
    if backfill.state is BackfillState.CANCELLING:
        return backfill
    dates = list(backfill.dates)
    for i, d in enumerate(dates):
        if d.state is DateState.RUNNING and d.action is Action.ADOPT:
            dates[i] = d.with_(
                state=DateState.NOT_RUN,
                error=f"{CANCELLED}: its run, not made by this backfill, goes on",
            )
        elif d.state is DateState.PENDING:
            dates[i] = d.with_(state=DateState.NOT_RUN, error=CANCELLED)
    return backfill.with_(dates=tuple(dates), state=BackfillState.CANCELLING, updated_at=now)


CANCELLED = "backfill cancelled"


def _ended_as(d: BackfillDate, run: Run) -> BackfillDate:
    """Date ``d`` ended as its ended ``run`` did (its error unless it succeeded)."""
    ok = run.state is RunState.SUCCEEDED
    return d.with_(
        state=_ended(run.state), run_state=run.state, version=run.version,
        error=None if ok else (run.error or f"run {run.id} {run.state}"),
    )  # fmt: skip


def rerun_all(spec: WorkflowSpec, run: Run, tasks: Iterable[TaskInstance], now: datetime) -> Plan:
    """Run every task of a finished run again (``--rerun all``): its roots are queued, and
    its sub-workflow tasks run their child runs again whole."""
    _require_finished(run, "rerun")
    current = {t.task_id: t for t in tasks}
    reset = set(current)
    return _reset(spec, run, current, reset, now, whole=reset)


# ------------------------------------------------------------------ stored form
def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def backfill_document(backfill: Backfill) -> dict[str, Any]:
    """The backfill as JSON-able data (what stores keep; ``backfill_from_document`` reads it)."""
    return {
        "id": backfill.id, "project": backfill.project, "workflow": backfill.workflow,
        "version": backfill.version, "params": backfill.params, "parallel": backfill.parallel,
        "order": backfill.order.value, "rerun": backfill.rerun.value,
        "state": backfill.state.value, "stopped_lanes": sorted(backfill.stopped_lanes),
        "created_at": _ts(backfill.created_at), "updated_at": _ts(backfill.updated_at),
        "ended_at": _ts(backfill.ended_at), "created_by": backfill.created_by,
        "revision": backfill.revision, "parent": backfill.parent,
        "dependents": list(backfill.dependents),
        "dates": [
            {
                "logical_date": _ts(d.logical_date), "run_id": d.run_id, "state": d.state.value,
                "lane": d.lane, "action": d.action.value if d.action else None,
                "prior_end": _ts(d.prior_end),
                "run_state": d.run_state.value if d.run_state else None, "error": d.error,
                "version": d.version,
            }
            for d in backfill.dates
        ],
    }  # fmt: skip


_DATE_STATES = {s.value: s for s in DateState}
_ACTIONS = {a.value: a for a in Action}
_RUN_STATES = {s.value: s for s in RunState}


def backfill_from_document(doc: Mapping[str, Any]) -> Backfill:
    return Backfill(
        id=doc["id"], project=doc["project"], workflow=doc["workflow"], version=doc["version"],
        params=dict(doc["params"]), parallel=doc["parallel"], order=Order(doc["order"]),
        rerun=Rerun(doc["rerun"]), state=BackfillState(doc["state"]),
        stopped_lanes=frozenset(doc["stopped_lanes"]),
        created_at=datetime.fromisoformat(doc["created_at"]), updated_at=_dt(doc["updated_at"]),
        ended_at=_dt(doc["ended_at"]), created_by=doc.get("created_by"),
        revision=doc["revision"], parent=doc.get("parent"),
        dependents=tuple(doc.get("dependents") or ()),
        dates=tuple(
            BackfillDate(
                logical_date=datetime.fromisoformat(d["logical_date"]), run_id=d["run_id"],
                state=_DATE_STATES[d["state"]], lane=d["lane"],
                action=_ACTIONS[d["action"]] if d["action"] else None,
                prior_end=_dt(d["prior_end"]),
                run_state=_RUN_STATES[d["run_state"]] if d["run_state"] else None,
                error=d["error"], version=d.get("version"),  # absent: stored before it was
            )
            for d in doc["dates"]
        ),
    )  # fmt: skip


__all__ = [
    "MAX_BACKFILL_DATES",
    "MAX_BACKFILL_DEPENDENTS",
    "MAX_BACKFILL_PARALLEL",
    "Action",
    "Backfill",
    "BackfillDate",
    "BackfillState",
    "BackfillTurn",
    "DateState",
    "DependentPlan",
    "Order",
    "Rerun",
    "advance_backfill",
    "awaited_runs",
    "backfill_dates",
    "backfill_document",
    "backfill_from_document",
    "cancel_backfill",
    "new_backfill",
    "parse_moment",
    "pause_backfill",
    "plan_dependents",
    "refuse_future_dates",
    "rerun_all",
    "rerun_due",
    "resume_backfill",
    "upstreams_of",
    "wanted_runs",
    "would_rerun",
]
