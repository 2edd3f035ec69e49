"""Backfills on the scheduler service, the same for both runtimes.

Sequencing only (the rules are ``stratoflow.engine.backfill``'s): read the backfill and the runs
of its dates, ask the engine, write the backfill conditionally on the revision read, and only
then act (create or rerun runs, emit events). A run's end moves the lanes waiting for it on
(``run_ended``, called from the service's run-end path); the reconciler's ``reconcile``
re-derives everything after a crash: a date marked running whose run is missing is created
under its deterministic id (the one a schedule firing for that date uses), so a crash between
a run's end and the next date's start loses nothing and makes nothing twice.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from stratoflow import engine
from stratoflow.auth import Forbidden
from stratoflow.engine.backfill import (
    Action,
    Backfill,
    BackfillDate,
    BackfillState,
    DateState,
    Order,
    Rerun,
    advance_backfill,
    backfill_dates,
    cancel_backfill,
    new_backfill,
    pause_backfill,
    plan_dependents,
    resume_backfill,
    wanted_runs,
    would_rerun,
)
from stratoflow.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    Problem,
    StratoflowError,
    Unavailable,
)
from stratoflow.ports import BackfillStore

if TYPE_CHECKING:
    from stratoflow.engine import Run
    from stratoflow.service import Scheduler

log = logging.getLogger("stratoflow.backfill")

LOOKAHEAD = 64  # pending dates whose runs are read at once when skipped ones freed no lane
WRITE_TRIES = 8  # a write that lost to another writer is decided again from a fresh read
RECONCILE_EVERY = timedelta(seconds=30)


def backfill_id(project: str, name: str, now: datetime) -> str:
    """Like a run id it starts with its project ('.' cannot occur in a name)."""
    return f"{project}.backfill-{name}-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


_ABSENT = object()


def _same(had: Any, given: Any) -> bool:
    """Whether a run's param value is the one given (read as the param's type), as its
    tasks see it: a run made before params were typed holds the CLI's text ("10", "false")
    where ``given`` is 10 or false."""
    if had is _ABSENT:
        return False
    text = json.dumps(given) if not isinstance(given, str) else given
    return had in (given, text) or str(had) == str(given)


def backfill_event(backfill: Backfill) -> dict[str, Any]:
    """What a backfill's lifecycle event says (the AWS bus publishes it from an allow-list)."""
    return {
        "backfill_id": backfill.id, "project": backfill.project,
        "workflow": backfill.workflow, "state": backfill.state.value,
        "dates": backfill.counts(), "parent": backfill.parent,
    }  # fmt: skip


class Backfills:
    """The backfills of one scheduler (``Scheduler.backfills``)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._next_pass: datetime | None = None

    @property
    def enabled(self) -> bool:
        return isinstance(self.scheduler.store, BackfillStore)

    @property
    def store(self) -> BackfillStore:
        store = self.scheduler.store
        if not isinstance(store, BackfillStore):
            raise Unavailable("this state store keeps no backfills", retry_after=3600)
        return store

    # -------------------------------------------------------------- operations
    def create(
        self,
        project: str,
        name: str,
        *,
        start: str | None = None,
        end: str | None = None,
        dates: Sequence[str] = (),
        parallel: int = 1,
        order: Order = Order.ASC,
        rerun: Rerun = Rerun.NONE,
        params: Mapping[str, Any] | None = None,
        created_by: str | None = None,
        dependents: bool = False,
        may_trigger: Callable[[str], bool] | None = None,
        may_rerun: Callable[[Run], None] | None = None,
    ) -> Backfill:
        """Validate everything first (bad input changes nothing), store the backfill, and let
        its lanes take their first dates.

        ``dependents`` (DolphinScheduler's dependent mode): also backfill, for the same range,
        every workflow whose dependency tasks wait on this one, transitively, among those of
        the projects ``may_trigger`` allows (all without it) whose sub-workflows start runs
        only in projects it allows too, each once (the engine's ``plan_dependents``). Each
        gets its own backfill (same lanes, order and rerun; its own schedule's dates; its
        declared params), linked to this one (``parent`` and ``dependents``), and all start
        at once: a downstream run's dependency task waits for its upstream runs itself. The dependents are stored before this one, so this one
        never names a backfill that does not exist (a crash in between leaves them as
        ordinary backfills that run to their end, each naming its parent).

        ``may_rerun``: with ``rerun``, called with each existing run the backfill would
        rerun (a run reruns under the version it pinned, and its child runs under theirs,
        whose sub-workflows may reach other projects than the latest's); it raises
        (``Forbidden``) to refuse."""
        from stratoflow.service import scheduled_run_id

        s = self.scheduler
        store = self.store
        now = s.clock.now()
        latest = s.catalog.get_version(project, name)
        spec = s.spec(project, name, latest.version)
        given = dict(params or {})
        # an unknown or mistyped parameter: said now, not per run
        typed = engine.effective_params(spec, given)
        logical = backfill_dates(  # none after now (the schedule's to run when they come)
            spec.workflow.schedule, start=start, end=end, dates=dates, order=order, now=now
        )
        run_ids = [scheduled_run_id(project, name, d) for d in logical]
        if given and rerun is not Rerun.NONE:
            self._refuse_params_on_reruns(run_ids, logical, {k: typed[k] for k in given}, rerun)
        if may_rerun is not None and rerun is not Rerun.NONE:
            self._check_reruns(run_ids, may_rerun)
        root_id = backfill_id(project, name, now)
        children: list[Backfill] = []
        if dependents:
            specs = {
                (v.project, v.name): (v.version, s.spec(v.project, v.name, v.version))
                for v in s.catalog.list_workflows()
                if may_trigger is None or may_trigger(v.project)
            }
            if may_trigger is not None:  # nor one whose sub-workflows start runs elsewhere
                specs = {
                    key: (version, spec_)
                    for key, (version, spec_) in specs.items()
                    if key == (project, name)
                    or all(map(may_trigger, s.subworkflows.projects_reached(spec_)))
                }
            refused: set[tuple[str, str]] = set()
            while True:
                specs = {k: v for k, v in specs.items() if k not in refused}
                plans = plan_dependents(
                    (project, name), {k: v[1] for k, v in specs.items()}, start=start, end=end,
                    dates=dates, order=order, root_schedule=spec.workflow.schedule, now=now,
                )  # fmt: skip
                if may_rerun is None or rerun is Rerun.NONE:
                    break
                # nor one whose runs a rerun would rerun reach elsewhere through the child
                # runs they made (the versions those pinned): left out as well, and planned
                # again without it (what depends only through it is left out with it)
                refused = {
                    (p.project, p.workflow)
                    for p in plans
                    if not self._may_rerun_dates(p.project, p.workflow, p.logical_dates, may_rerun)
                }
                if not refused:
                    break
            for plan in plans:
                version, child_spec = specs[(plan.project, plan.workflow)]
                children.append(
                    new_backfill(
                        backfill_id=backfill_id(plan.project, plan.workflow, now),
                        spec=child_spec, version=version, logical_dates=plan.logical_dates,
                        run_ids=[
                            scheduled_run_id(plan.project, plan.workflow, d)
                            for d in plan.logical_dates
                        ],
                        params={}, parallel=parallel, order=order, rerun=rerun, now=now,
                        created_by=created_by, parent=root_id,
                    )
                )  # fmt: skip
        made = new_backfill(
            backfill_id=root_id, spec=spec, version=latest.version,
            logical_dates=logical, run_ids=run_ids,
            params=given, parallel=parallel, order=order, rerun=rerun, now=now,
            created_by=created_by, dependents=[c.id for c in children],
        )  # fmt: skip
        with s._lock:
            for child in children:
                if not store.create_backfill(child):  # pragma: no cover - random id
                    raise Conflict(f"backfill {child.id} exists; try again")
                self._emit("backfill.started", child)
            if not store.create_backfill(made):  # pragma: no cover - random id
                raise Conflict(f"backfill {made.id} exists; try again")
            self._emit("backfill.started", made)
            root = self.advance(made.id)
            for child in children:  # a date two lanes reach has one run id: made once
                self._advance_quietly(child.id)
            return root

    def _check_reruns(self, run_ids: Sequence[str], may_rerun: Callable[[Run], None]) -> None:
        """``may_rerun`` for each of these runs that exists (it raises to refuse)."""
        for existing in self._read_runs(run_ids).values():
            if existing is not None:
                may_rerun(existing)

    def _may_rerun_dates(
        self,
        project: str,
        name: str,
        logical: Sequence[datetime],
        may_rerun: Callable[[Run], None],
    ) -> bool:
        """Whether ``may_rerun`` lets each existing run of these dates be rerun."""
        from stratoflow.service import scheduled_run_id

        try:
            self._check_reruns([scheduled_run_id(project, name, d) for d in logical], may_rerun)
        except Forbidden:
            return False
        return True

    def _refuse_params_on_reruns(
        self, run_ids: Sequence[str], logical: Sequence[datetime], given: Mapping[str, Any],
        rerun: Rerun,
    ) -> None:  # fmt: skip
        """Params apply to the runs a backfill makes: a rerun (``--rerun failed|all``) goes on
        under its run's params, which its earlier attempts ran with (a run has one set of
        params, so its tasks and history agree). A date whose run ``rerun`` would rerun
        (``would_rerun``: not one that succeeded under ``failed``, which is kept) and has other
        values for the params given would silently not get them: the request is refused,
        naming those dates only."""
        runs = self._read_runs(run_ids)
        differ: set[str] = set()
        clash: list[datetime] = []
        for day, run_id in zip(logical, run_ids, strict=True):
            run = runs[run_id]
            if run is None or not would_rerun(run, rerun):
                continue
            names = {k for k, v in given.items() if not _same(run.params.get(k, _ABSENT), v)}
            if names:
                differ |= names
                clash.append(day)
        if not clash:
            return
        days = ", ".join(f"{d:%Y-%m-%dT%H:%M:%SZ}" for d in clash[:5])
        more = f" and {len(clash) - 5} more" if len(clash) > 5 else ""
        raise InvalidInput(
            [Problem("params", f"params apply to new runs only: {len(clash)} date(s) have runs "
                               f"with other values of {', '.join(sorted(differ))} ({days}{more}), "
                               f"and --rerun {rerun.value} would rerun them with their own "
                               "params; leave those dates out, or give no params")]
        )  # fmt: skip

    def _advance_quietly(self, backfill_id: str) -> None:
        try:
            self.advance(backfill_id)
        except StratoflowError:  # its trouble is its own: the reconciler moves it on
            log.exception("backfill %s could not advance; the next pass retries", backfill_id)

    def group(self, backfill: Backfill) -> list[Backfill]:
        """The backfills a dependent-mode backfill included (those still stored)."""
        found: list[Backfill] = []
        for child_id in backfill.dependents:
            try:
                found.append(self.store.get_backfill(child_id))
            except NotFound:
                continue
        return found

    def get(self, backfill_id: str) -> Backfill:
        return self.store.get_backfill(backfill_id)

    def list_backfills(
        self, project: str, workflow: str | None = None, limit: int = 50
    ) -> list[Backfill]:
        return self.store.list_backfills(project, workflow, limit)

    def pause(
        self,
        backfill_id: str,
        may_operate: Callable[[str], bool] | None = None,
        reached: list[str] | None = None,
    ) -> Backfill:
        """Pause it if it runs, and the running backfills it included (dependent mode) in
        the projects ``may_operate`` allows (all without it), whatever its own state: its
        own dates done, its dependents still go on and pause. Conflict only when none of
        them could be paused. ``reached``: the ids of those paused are appended to it."""
        return self._operate(
            backfill_id, BackfillState.RUNNING, self._pause_one, "is running", may_operate,
            reached,
        )  # fmt: skip

    def _pause_one(self, backfill_id: str) -> Backfill:
        paused = self._change(backfill_id, pause_backfill)
        self._emit("backfill.paused", paused)
        return paused

    def resume(
        self,
        backfill_id: str,
        may_operate: Callable[[str], bool] | None = None,
        reached: list[str] | None = None,
    ) -> Backfill:
        """Resume it if it is paused, and the paused backfills it included (as ``pause``)."""
        return self._operate(
            backfill_id, BackfillState.PAUSED, self._resume_one, "is paused", may_operate,
            reached,
        )  # fmt: skip

    def _resume_one(self, backfill_id: str) -> Backfill:
        with self.scheduler._lock:
            resumed = self._change(backfill_id, resume_backfill)
            self._emit("backfill.resumed", resumed)
            return self.advance(backfill_id)

    def cancel(
        self,
        backfill_id: str,
        may_operate: Callable[[str], bool] | None = None,
        reached: list[str] | None = None,
    ) -> Backfill:
        """End the backfill and stop the runs it made or reran that still go on; the same
        for the backfills it included (dependent mode) that have not ended, also once it
        has ended itself (as ``pause``)."""
        return self._operate(
            backfill_id, None, self._cancel_one, "still goes on", may_operate, reached
        )

    def _operate(
        self,
        backfill_id: str,
        takes: BackfillState | None,
        one: Callable[[str], Backfill],
        taking: str,
        may_operate: Callable[[str], bool] | None,
        reached: list[str] | None,
    ) -> Backfill:
        """Apply ``one`` (pause, resume or cancel of one backfill) to this backfill if its
        state ``takes`` it (None: any state but an end), then to each backfill it included
        that takes it. Its own state refuses (Conflict, saying so and why no dependent was
        reached) only when none of them took it: a parent whose own dates are done still
        operates the dependents it included, as pause, resume and cancel of it promise."""
        done: list[str] = []

        def admits(b: Backfill) -> bool:
            return b.state is takes if takes is not None else not b.state.terminal

        with self.scheduler._lock:
            refusal: Conflict | None = None
            try:
                backfill = one(backfill_id)
                done.append(backfill_id)
            except Conflict as exc:
                backfill = self.store.get_backfill(backfill_id)
                if admits(backfill):  # it could take it, but kept changing: not a refusal
                    raise
                refusal = exc
            for child in self._reachable(backfill, takes, may_operate):
                try:
                    one(child.id)
                except Conflict:  # it changed meanwhile (ended, paused, resumed)
                    continue
                done.append(child.id)
            if reached is not None:
                reached += done
            if refusal is not None and not done:
                raise Conflict(f"{refusal}{self._none_reached(backfill, taking, may_operate)}")
            return backfill

    def _none_reached(
        self, backfill: Backfill, taking: str, may_operate: Callable[[str], bool] | None
    ) -> str:
        """Why a refused operation reached no included backfill either (empty: none)."""
        if not backfill.dependents:
            return ""
        group = self.group(backfill)
        mine = [c for c in group if may_operate is None or may_operate(c.project)]
        if len(mine) < len(group):
            return (
                f", and none of the {len(mine)} of its {len(backfill.dependents)} included "
                f"backfill(s) that you operate {taking}"
            )
        return f", and none of the {len(backfill.dependents)} backfill(s) it included {taking}"

    def _reachable(
        self, backfill: Backfill, state: BackfillState | None,
        may_operate: Callable[[str], bool] | None,
    ) -> list[Backfill]:  # fmt: skip
        return [
            c
            for c in self.group(backfill)
            if (c.state is state if state is not None else not c.state.terminal)
            and (may_operate is None or may_operate(c.project))
        ]

    def _cancel_one(self, backfill_id: str) -> Backfill:
        """Record the cancel (``cancelling``: its durable intent), then stop its runs and end
        it ``cancelled`` (``advance``, which a repeated cancel, a run's end and the
        reconciler's pass also do: whatever dies between the writes, they finish it). Once
        the intent is written, a failure to stop a run now (a throttle) leaves it
        ``cancelling`` for the next of them, and is answered as that (Unavailable saying the
        cancel is recorded: try again), never as a change that did not happen."""
        with self.scheduler._lock:
            try:
                self._change(backfill_id, cancel_backfill)
            except StratoflowError:  # ended already, unknown, kept changing: nothing written
                raise
            except Exception:
                # the write may have applied before the failure (a timeout after it): then
                # the cancel is recorded, and is finished now rather than reported undone
                if not self._cancel_recorded(backfill_id):
                    raise
            try:
                for _ in range(2):  # stop its runs; then their ends end it
                    self.advance(backfill_id)
                return self.store.get_backfill(backfill_id)
            except StratoflowError:
                raise
            except Exception as exc:
                # not "nothing was changed" (a store's fault says that): the cancel is
                # recorded, and the same request (or the reconciler's next pass) finishes it
                log.warning("backfill %s: cancel recorded, runs not all stopped: %r",
                            backfill_id, exc)  # fmt: skip
                raise Unavailable(
                    f"backfill {backfill_id} is cancelling: the cancel is recorded and no "
                    "date starts any more, but its runs could not all be stopped now; "
                    "cancel again to finish it (the reconciler also does, within minutes)"
                ) from exc

    def _cancel_recorded(self, backfill_id: str) -> bool:
        """Whether its cancel is recorded (``cancelling``), read again after a write whose
        outcome is unknown (False when it cannot be read now either)."""
        try:
            stored = self.store.get_backfill(backfill_id)
        except Exception:
            return False
        return stored.state is BackfillState.CANCELLING

    def _change(
        self, backfill_id: str, change: Callable[[Backfill, datetime], Backfill]
    ) -> Backfill:
        store = self.store
        for _ in range(WRITE_TRIES):
            current = store.get_backfill(backfill_id)
            after = change(current, self.scheduler.clock.now())
            if after is current:  # nothing to change (a repeated cancel): nothing written
                return current
            after = after.with_(revision=current.revision + 1)
            if store.put_backfill(after, current.revision):
                return after
        raise Conflict(f"backfill {backfill_id} keeps changing; try again")

    # -------------------------------------------------------------- lanes
    def run_ended(self, run: Run) -> None:
        """A run ended (the service's run-end path, both runtimes): move on the backfills
        whose lanes waited for it. One indexed read when no backfill is active."""
        store = self.scheduler.store
        if not isinstance(store, BackfillStore):
            return
        try:
            # by run id, not by the date's state: an index's copy may be a moment behind
            for backfill_id in store.backfills_waiting_for(run.project, run.workflow, run.id):
                self.advance(backfill_id)
        except Exception:  # a backfill's trouble must never undo or fail a run's end
            log.exception(
                "backfills of %s/%s not advanced; the next pass will", run.project, run.workflow
            )

    def reconcile(self) -> int:
        """Advance every active backfill (after a restart, on each reconciler pass): what a
        crash left undone is done now. Returns how many were looked at."""
        store = self.scheduler.store
        if not isinstance(store, BackfillStore):
            return 0
        active = store.all_active_backfills()
        for backfill in active:
            try:
                self.advance(backfill.id)
            except StratoflowError:  # one backfill must not keep the others from moving
                log.exception("backfill %s could not advance; the next pass retries", backfill.id)
        return len(active)

    def tick(self, now: datetime) -> None:
        """``reconcile`` at most every ``RECONCILE_EVERY`` (the local loop calls this each
        turn; on AWS the reconciler's pass reconciles through ``Scheduler.recover``)."""
        if self._next_pass is not None and now < self._next_pass:
            return
        self._next_pass = now + RECONCILE_EVERY
        self.reconcile()

    def advance(self, backfill_id: str) -> Backfill:
        """Decide and write the backfill's next step, then act on it (idempotent)."""
        s = self.scheduler
        store = self.store
        with s._lock:
            for _ in range(WRITE_TRIES):
                current = store.get_backfill(backfill_id)
                after, acts, events, stop = self._decide(current)
                if after is not current:
                    after = after.with_(revision=current.revision + 1)
                    if not store.put_backfill(after, current.revision):
                        continue  # another writer moved it: decide again from its state
                for kind in events:
                    self._emit(kind, after)
                for date in acts:
                    self._act(after, date)
                for run_id in stop:  # a cancelling backfill's: each run's end moves it on
                    self._stop_run(backfill_id, run_id)
                return after
            raise Conflict(f"backfill {backfill_id} keeps changing; the reconciler goes on")

    def _decide(
        self, backfill: Backfill
    ) -> tuple[Backfill, list[BackfillDate], list[str], list[str]]:
        now = self.scheduler.clock.now()
        known: dict[str, Run | None] = {}
        acts: dict[str, BackfillDate] = {}
        events: list[str] = []
        stop: list[str] = []
        current = backfill
        # the runs of the running dates, and of as many pending ones as lanes could take; more
        # only when the engine asks (dates skipped because their runs exist free no lane)
        ahead = backfill.parallel if backfill.state is BackfillState.RUNNING else 0
        while True:
            need = [r for r in wanted_runs(current, ahead) if r not in known]
            ahead = LOOKAHEAD
            known.update(self._read_runs(need))
            turn = advance_backfill(current, known, now)
            acts.update((d.run_id, d) for d in turn.acts)
            events += turn.events
            stop += [r for r in turn.stop if r not in stop]
            if turn.changed:
                current = turn.backfill
            if not turn.lookup:
                return current, list(acts.values()), events, stop

    def _stop_run(self, backfill_id: str, run_id: str) -> None:
        """Stop a run a cancel stops (idempotent: one that ended meanwhile is left as it
        ended, and its date ends so on the next turn)."""
        try:
            self.scheduler.stop(run_id)
        except (Conflict, NotFound) as exc:
            log.info("backfill %s: run %s not stopped: %s", backfill_id, run_id, exc)

    def _read_runs(self, run_ids: Sequence[str]) -> dict[str, Run | None]:
        found: dict[str, Run | None] = {}
        for run_id in run_ids:
            try:
                found[run_id] = self.scheduler.store.get_run(run_id)
            except NotFound:
                found[run_id] = None
        return found

    def _act(self, backfill: Backfill, date: BackfillDate) -> None:
        """Make the date's run, or rerun it. Safe to repeat: the run id is the date's, and a
        rerun applies only while the run still ends as the decision saw it (``prior_end``,
        a condition of the store's write): a second application, from another advancer's
        read or the reconciler's, finds the run running or ended again and does nothing."""
        s = self.scheduler
        try:
            if date.action is Action.CREATE:
                s.trigger(
                    backfill.project, backfill.workflow, params=backfill.params,
                    logical_date=date.logical_date, run_id=date.run_id, trigger="backfill",
                    version=backfill.version,
                )  # fmt: skip
                return
            try:  # conditional on the end the decision saw: a second application is a no-op
                all_tasks = backfill.rerun is Rerun.ALL
                s.rerun(date.run_id, all_tasks=all_tasks, if_ended_at=date.prior_end)
            except Conflict as exc:  # someone else moved it on: its end is recorded the same
                log.info("backfill %s: run %s not rerun: %s", backfill.id, date.run_id, exc)
            self._rerun_applied(backfill.id, date.run_id)
        except StratoflowError as exc:
            log.warning("backfill %s: date %s failed: %s", backfill.id, date.logical_date, exc)
            self._date_failed(backfill.id, date.run_id, str(exc))

    def _rerun_applied(self, backfill_id: str, run_id: str) -> None:
        """Forget the rerun's mark: from now on the run's end is the rerun's (even one at the
        very instant the run ended before it)."""

        def applied(backfill: Backfill, now: datetime) -> Backfill:
            dates = tuple(
                d.with_(prior_end=None) if d.run_id == run_id and d.action is Action.RERUN else d
                for d in backfill.dates
            )
            return backfill.with_(dates=dates)

        self._change(backfill_id, applied)

    def _date_failed(self, backfill_id: str, run_id: str, error: str) -> None:
        def fail(backfill: Backfill, now: datetime) -> Backfill:
            dates = tuple(
                d.with_(state=DateState.FAILED, error=error[:1000])
                if d.run_id == run_id and d.state is DateState.RUNNING
                else d
                for d in backfill.dates
            )
            lanes = {d.lane or 0 for d in dates if d.run_id == run_id}
            return backfill.with_(
                dates=dates, stopped_lanes=backfill.stopped_lanes | lanes, updated_at=now
            )

        self._change(backfill_id, fail)
        self.advance(backfill_id)  # the backfill may end here

    def _emit(self, kind: str, backfill: Backfill) -> None:
        s = self.scheduler
        s._act(partial(s.events.emit, kind, backfill_event(backfill)))
