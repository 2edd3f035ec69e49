"""The event storm: the real ``Scheduler`` on a real ``SqliteStore``, fed executor reports that
arrive late, twice, out of order and in batches, checked against an oracle that never calls
the engine.

What it proves (DESIGN.md, invariants 1 and 2 and the workflow format's semantics):

- no (run, task, attempt) is ever dispatched twice;
- the run's counters always equal what its task states say;
- a task leaves WAITING only when its trigger rule allows it, and never stays WAITING once
  its rule has decided (no ready task is missed);
- a duplicated or late report changes nothing;
- once every report is in, the run ends, and every task ends where an independent evaluation
  of trigger rules, retries and switch choices says it must.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from tests.fakes import FakeClock, Key, RecordingDispatcher
from tests.strategies import (
    MAX_ATTEMPTS,
    Case,
    DagDef,
    Scenario,
    TaskDef,
    scenarios,
)

from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import (
    AttemptResult,
    AttemptStatus,
    Run,
    RunState,
    TaskInstance,
    TaskState,
    Upstream,
)
from stratoflow.ports import Attempt, AttemptSpec
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RUN_ID = "storm-run"
PROJECT = "default"

# ------------------------------------------------------------------------------------------
# The oracle: trigger rules, switch choices and retries, written out independently
# ------------------------------------------------------------------------------------------

# How a finished parent counts for a child.
S, F, K, X = 0, 1, 2, 3  # succeeded | failed (failed, upstream_failed, stopped) | skipped |
# X: the parent is a switch that succeeded without choosing this child
WAIT, RUN, SKIP, UPSTREAM_FAILED = "wait", "run", "skip", "upstream_failed"


def decide(rule: str, n: int, s: int, f: int, k: int, x: int) -> str:
    """Airflow's trigger rules (docs: "Trigger Rules"), decided as soon as the counts allow.

    all_success  all parents succeeded; a failed parent -> upstream_failed, a skipped one
                 -> skipped
    all_failed   all parents failed or upstream_failed; a succeeded or skipped parent -> skipped
    all_done     all parents finished, however they ended
    one_success  at least one parent succeeded, without waiting for the rest; all done with
                 none succeeded -> skipped if they were all skipped, else upstream_failed
    one_failed   at least one parent failed, without waiting for the rest; all done with none
                 failed -> skipped
    none_failed  no parent failed or upstream_failed: all succeeded or were skipped;
                 a failed parent -> upstream_failed
    none_failed_min_one_success
                 as none_failed, and at least one parent succeeded: all skipped -> skipped

    And DESIGN.md: "A switch marks every branch it did not choose SKIPPED" - whatever that
    branch's own trigger rule says.
    """
    if n == 0:
        return RUN
    if x:
        return SKIP
    done = s + f + k == n
    if rule == "all_success":
        return UPSTREAM_FAILED if f else SKIP if k else RUN if done else WAIT
    if rule == "all_failed":
        return SKIP if s or k else RUN if done else WAIT
    if rule == "all_done":
        return RUN if done else WAIT
    if rule == "one_success":
        if s:
            return RUN
        return (SKIP if k == n else UPSTREAM_FAILED) if done else WAIT
    if rule == "one_failed":
        return RUN if f else SKIP if done else WAIT
    if rule == "none_failed":
        return UPSTREAM_FAILED if f else RUN if done else WAIT
    if rule == "none_failed_min_one_success":
        return UPSTREAM_FAILED if f else WAIT if not done else RUN if s else SKIP
    raise AssertionError(rule)


@functools.cache
def _first_decisions(
    rule: str, n: int, prefix: tuple[int, ...], total: tuple[int, ...]
) -> frozenset[str]:
    decision = decide(rule, n, *prefix)
    if decision != WAIT:
        return frozenset({decision})
    found: set[str] = set()
    for i in range(4):
        if prefix[i] < total[i]:
            found |= _first_decisions(
                rule, n, (*prefix[:i], prefix[i] + 1, *prefix[i + 1 :]), total
            )
    return frozenset(found) or frozenset({WAIT})


def first_decisions(rule: str, n: int, counts: tuple[int, ...]) -> frozenset[str]:
    """What a task may have been decided as, given how its finished parents ended (``counts``
    per outcome S, F, K, X), when their ends arrive in any order: the first arrival that
    decides wins. A set, because e.g. all_success with one skipped and one failed parent is
    skipped or upstream_failed depending on which one came first (as in Airflow)."""
    return _first_decisions(rule, n, (0, 0, 0, 0), tuple(counts))


def edge(parent: TaskDef, state: str, child: str, pick: int) -> int:
    if state == TaskState.SUCCEEDED:
        if parent.is_switch and child in parent.branches() and child not in parent.chosen(pick):
            return X
        return S
    if state == TaskState.SKIPPED:
        return K
    return F


def _plus(counts: tuple[int, ...], outcome: int) -> tuple[int, ...]:
    return tuple(c + (i == outcome) for i, c in enumerate(counts))


def attempts_needed(task: TaskDef, plan: tuple[bool, ...]) -> int:
    """Attempts a task that runs makes: up to its first success, at most retries + 1."""
    if task.is_switch:
        return 1
    budget = plan[: task.retries + 1]
    return budget.index(True) + 1 if True in budget else len(budget)


def ran_state(task: TaskDef, plan: tuple[bool, ...]) -> str:
    if task.is_switch:  # its conditions only read params: it cannot fail
        return TaskState.SUCCEEDED
    return TaskState.SUCCEEDED if any(plan[: task.retries + 1]) else TaskState.FAILED


_DECIDED_STATE = {SKIP: TaskState.SKIPPED, UPSTREAM_FAILED: TaskState.UPSTREAM_FAILED}


def oracle(scenario: Scenario) -> dict[str, frozenset[str]]:
    """Every final state each task may end in (on_failure: continue), by plain recursion over
    the graph in topological order. Sets only where arrival order legitimately matters."""
    dag, pick = scenario.dag, scenario.pick
    final: dict[str, frozenset[str]] = {}
    for task in dag.tasks:
        combos: set[tuple[int, ...]] = {(0, 0, 0, 0)}
        for p in task.parents:
            parent = dag.task(p)
            outs = {edge(parent, state, task.id, pick) for state in final[p]}
            combos = {_plus(c, o) for c in combos for o in outs}
        decisions: set[str] = set()
        for counts in combos:
            decisions |= first_decisions(task.rule, len(task.parents), counts)
        assert WAIT not in decisions, f"every rule decides once all parents are done ({task})"
        final[task.id] = frozenset(
            ran_state(task, scenario.plan[task.id]) if d == RUN else _DECIDED_STATE[d]
            for d in decisions
        )
    return final


# ------------------------------------------------------------------------------------------
# The harness: a fake clock, a recording dispatcher, the real scheduler and store
# ------------------------------------------------------------------------------------------


def executor_result(task_id: str, attempt: int, ok: bool) -> AttemptResult:
    if ok:
        return AttemptResult(
            AttemptStatus.SUCCEEDED, outputs={"by": f"{task_id}#{attempt}"}, exit_code=0
        )
    return AttemptResult(AttemptStatus.FAILED, error=f"{task_id}#{attempt} failed", exit_code=1)


def flipped(report: Finished) -> Finished:
    """The same attempt, claiming the opposite ending: a late, contradicting report."""
    ok = report.result.status is not AttemptStatus.SUCCEEDED
    return Finished(
        report.run_id,
        report.task_id,
        report.attempt,
        executor_result(report.task_id, report.attempt, ok),
    )


Snapshot = tuple[Run, list[TaskInstance], list[Attempt]]


class Harness:
    def __init__(self, scenario: Scenario, home: Path, store: Any = None) -> None:
        """``store``: a StateStore that is also the Catalog (default: SQLite in ``home``)."""
        self.scenario = scenario
        self.dag = scenario.dag
        self.store = store if store is not None else SqliteStore(home / "state.db")
        self.clock = FakeClock(T0)
        self.dispatcher = self._dispatcher()
        self.scheduler = Scheduler(self.store, self.store, self.dispatcher, self.clock)
        self.delivered: list[Finished] = []
        self.strict_steps = True
        self.first_report: dict[Key, AttemptStatus] = {}
        self.scheduler.apply(self.dag.text())
        self.scheduler.trigger(
            PROJECT, self.dag.name, params={"pick": scenario.pick}, run_id=RUN_ID
        )

    def _dispatcher(self) -> RecordingDispatcher:
        return RecordingDispatcher(self._check_dispatch)

    def _call(self, action: Callable[[], Any], *, reports: Sequence[Finished] = ()) -> Any:
        """Every delivery and step goes through here (a harness that injects faults wraps it)."""
        return action()

    # ---------------------------------------------------------------- driving
    @property
    def pending(self) -> list[Key]:
        return list(self.dispatcher.pending)

    def result(self, task_id: str, attempt: int) -> AttemptResult:
        plan = self.scenario.plan[task_id]
        return executor_result(task_id, attempt, plan[min(attempt, MAX_ATTEMPTS) - 1])

    def deliver(self, keys: Sequence[Key]) -> None:
        """The executor reports these pending attempts, in this order, in one batch."""
        reports = [Finished(*key, self.result(key[1], key[2])) for key in keys]
        for key in keys:
            del self.dispatcher.pending[key]
            self.first_report.setdefault(key, self.result(key[1], key[2]).status)
        self._call(lambda: self.scheduler.on_finished(reports), reports=reports)
        self.delivered.extend(reports)

    def redeliver(self, reports: Sequence[Finished]) -> None:
        """Reports that were already delivered arrive again (or contradict themselves late):
        invariant 2 says nothing changes, not even the attempts' history."""
        before = self.snapshot()
        self.scheduler.on_finished(reports)
        after = self.snapshot()
        assert after[:2] == before[:2], f"a duplicate/late report changed the run: {reports}"
        assert after[2] == before[2], (
            f"a duplicate/late report rewrote attempt records: {reports}\n"
            f"before: {before[2]}\nafter:  {after[2]}"
        )

    def step(self) -> None:
        self._call(self.scheduler.step)
        if self.strict_steps:
            self.check_nothing_ready_left()

    def check_nothing_ready_left(self) -> None:
        """After ``step()`` nothing ready may be left undispatched: ``step()`` returns only
        its next *timed* work, so a loop that sleeps until then (or until a report) would
        sleep on a ready task."""
        run = self.store.get_run(RUN_ID)
        slots = self.dag.concurrency or len(self.dag.tasks)
        if run.state is RunState.RUNNING and run.n_running < slots:
            queued = sorted(t for t, s in self.states().items() if s == TaskState.QUEUED)
            assert not queued, (
                f"step() returned with {queued} queued and {slots - run.n_running} free "
                f"slots; states {self.states()}"
            )

    def snapshot(self) -> Snapshot:
        return (
            self.store.get_run(RUN_ID),
            sorted(self.store.get_tasks(RUN_ID), key=lambda t: t.task_id),
            self.store.list_attempts(RUN_ID),
        )

    def tasks(self) -> dict[str, TaskInstance]:
        return {t.task_id: t for t in self.store.get_tasks(RUN_ID)}

    def states(self) -> dict[str, str]:
        return {t: ti.state.value for t, ti in sorted(self.tasks().items())}

    def toggle_pause(self) -> None:
        run = self.store.get_run(RUN_ID)
        if run.state is RunState.RUNNING:
            assert self.scheduler.pause(RUN_ID).state is RunState.PAUSED
        elif run.state is RunState.PAUSED:
            self.scheduler.resume(RUN_ID)

    def drain(self, max_rounds: int = 200) -> None:
        """Resume, then deliver everything, step, and move the clock to the next retry, until
        nothing is pending, queued or timed."""
        if self.store.get_run(RUN_ID).state is RunState.PAUSED:
            self.toggle_pause()
        for _ in range(max_rounds):
            if self.pending:
                self.deliver(self.pending)
            self.step()
            if self.pending or TaskState.QUEUED in self.states().values():
                continue
            wake = self.store.next_wakeup()
            if wake is None:
                return
            self.clock.current = max(self.clock.current, wake)
        raise AssertionError(f"the run did not settle: {self.states()}")

    # ---------------------------------------------------------------- checks
    def _parent_counts(self, task: TaskDef, tasks: dict[str, TaskInstance]) -> tuple[int, ...]:
        counts: tuple[int, ...] = (0, 0, 0, 0)
        for p in task.parents:
            if tasks[p].state.terminal:
                counts = _plus(counts, edge(self.dag.task(p), tasks[p].state, task.id, self.pick))
        return counts

    @property
    def pick(self) -> int:
        return self.scenario.pick

    def _check_dispatch(self, spec: AttemptSpec) -> None:
        """At the moment of dispatch: the claim is committed, and the task was allowed to run."""
        run = self.store.get_run(spec.run_id)
        assert run.state is RunState.RUNNING, f"{spec.key} dispatched while the run is {run.state}"
        tasks = self.tasks()
        ti = tasks[spec.task_id]
        assert (ti.state, ti.attempt) == (TaskState.RUNNING, spec.attempt), (
            f"{spec.key} dispatched but the store says {ti.state} attempt {ti.attempt}"
        )
        task = self.dag.task(spec.task_id)
        assert not task.is_switch, "a switch is evaluated in-process, never dispatched"
        assert spec.attempt <= task.retries + 1, f"{spec.key} is beyond {task.retries} retries"
        counts = self._parent_counts(task, tasks)
        assert RUN in first_decisions(task.rule, len(task.parents), counts), (
            f"{spec.key} dispatched, but {task.rule} over parent outcomes {counts} "
            f"(S, F, K, unchosen) does not allow it to run"
        )

    def check_invariants(self) -> None:
        run = self.store.get_run(RUN_ID)
        tasks = self.tasks()
        states = [ti.state for ti in tasks.values()]
        shown = {t: ti.state.value for t, ti in sorted(tasks.items())}
        counted = (
            sum(s.terminal for s in states),
            sum(s is TaskState.RUNNING for s in states),
            sum(s is TaskState.FAILED for s in states),
        )
        assert (run.n_done, run.n_running, run.n_failed) == counted, (
            f"run counters (done, running, failed) = {(run.n_done, run.n_running, run.n_failed)}"
            f" but the tasks say {counted}: {shown}"
        )
        if self.dag.concurrency is not None:
            assert run.n_running <= self.dag.concurrency
        running = {
            (RUN_ID, t, ti.attempt)
            for t, ti in tasks.items()
            if ti.state is TaskState.RUNNING and not self.dag.task(t).is_switch
        }
        assert running <= set(self.dispatcher.pending), "a running attempt was never dispatched"

        for task in self.dag.tasks:
            ti = tasks[task.id]
            n = len(task.parents)
            counts = self._parent_counts(task, tasks)
            possible = first_decisions(task.rule, n, counts)
            where = f"{task.id} ({task.rule}, parents {task.parents}) is {ti.state.value}"
            where += f" with parent outcomes {counts} (S, F, K, unchosen); states {shown}"
            if ti.state is TaskState.WAITING:
                # decided as soon as the counts allow: nothing that could go on is left waiting
                assert run.state in (RunState.RUNNING, RunState.PAUSED), f"{where}; {run.state}"
                assert decide(task.rule, n, *counts) == WAIT, f"missed: {where}"
                s, f, k, x = counts
                assert ti.upstream == Upstream(s, f, k + x), f"upstream {ti.upstream}: {where}"
            elif ti.state is TaskState.SKIPPED:
                assert SKIP in possible, where
            elif ti.state is TaskState.UPSTREAM_FAILED:
                assert UPSTREAM_FAILED in possible, where
            elif ti.state is TaskState.STOPPED:
                assert self.dag.on_failure == "stop", where
                assert run.state is RunState.FAILED, where
            else:  # queued, running, up_for_retry, succeeded, failed: it was let run
                assert RUN in possible, f"ran without its rule allowing it: {where}"
        if run.state.terminal:
            failed = TaskState.FAILED in states
            assert run.state is (RunState.FAILED if failed else RunState.SUCCEEDED), shown

    def check_final(self) -> None:
        """After draining: the run ended, nothing is left behind, and the oracle agrees."""
        run = self.store.get_run(RUN_ID)
        assert not self.pending, f"attempts never reported: {self.pending}"
        stuck = {t: s for t, s in self.states().items() if not TaskState(s).terminal}
        assert not stuck, f"tasks left behind: {stuck} (all: {self.states()})"
        assert run.state.terminal, f"run is {run.state} with every task ended: {self.states()}"
        self.check_invariants()

        expected = oracle(self.scenario)
        stopped = self.dag.on_failure == "stop" and run.state is RunState.FAILED
        tasks = self.tasks()
        for task in self.dag.tasks:
            state = tasks[task.id].state
            allowed = expected[task.id] | ({TaskState.STOPPED} if stopped else set())
            assert state in allowed, (
                f"{task.id} ended {state.value}; the oracle says one of {sorted(allowed)}\n"
                f"dag: {self.dag}\nplan: {self.scenario.plan}\npick: {self.pick}\n"
                f"states: {self.states()}"
            )
            if state in (TaskState.SUCCEEDED, TaskState.FAILED):
                made = len(self.store.list_attempts(RUN_ID, task.id))
                want = attempts_needed(task, self.scenario.plan[task.id])
                assert made == want, f"{task.id} made {made} attempts, expected {want}"
        for record in self.store.list_attempts(RUN_ID):
            key = (record.run_id, record.task_id, record.attempt)
            if key in self.first_report:  # (a switch is evaluated in-process, not reported)
                assert record.state == self.first_report[key].value, (
                    f"attempt {key} is recorded {record.state}, "
                    f"but it ended {self.first_report[key].value}"
                )


# ------------------------------------------------------------------------------------------
# The state machine
# ------------------------------------------------------------------------------------------

M = TypeVar("M", bound=Callable[..., Any])


def guarded(method: M) -> M:
    """Mark the machine broken when a step fails, so teardown does not pile a second,
    confusing failure on top of the first."""

    @functools.wraps(method)
    def wrapper(self: EventStorm, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.broken = True
            raise

    return wrapper  # type: ignore[return-value]


def _has_pending(self: EventStorm) -> bool:
    return bool(self.h.pending)


def _has_delivered(self: EventStorm) -> bool:
    return bool(self.h.delivered)


class EventStorm(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="stratoflow-storm-"))
        self.broken = False
        self.h: Harness

    @initialize(scenario=scenarios())
    @guarded
    def start(self, scenario: Scenario) -> None:
        self.h = Harness(scenario, self.home)

    @rule()
    @guarded
    def step(self) -> None:
        self.h.step()

    @rule(seconds=st.integers(1, 30))
    @guarded
    def advance_clock(self, seconds: int) -> None:
        self.h.clock.advance(seconds)

    @rule()
    @guarded
    def pause_or_resume(self) -> None:
        """Pause dispatches nothing new (reports still count); resume carries on."""
        before = len(self.h.dispatcher.dispatched)
        self.h.toggle_pause()
        if self.h.store.get_run(RUN_ID).state is RunState.PAUSED:
            self.h.step()
            assert len(self.h.dispatcher.dispatched) == before, "dispatched while paused"

    @precondition(_has_pending)
    @rule(data=st.data())
    @guarded
    def deliver_one(self, data: st.DataObject) -> None:
        """Any pending attempt reports, not necessarily the oldest: reordering."""
        self.h.deliver([data.draw(st.sampled_from(self.h.pending), label="key")])

    @precondition(_has_pending)
    @rule(data=st.data())
    @guarded
    def deliver_batch(self, data: st.DataObject) -> None:
        """Several reports in one batch, in a random order."""
        keys = data.draw(st.permutations(self.h.pending), label="order")
        self.h.deliver(keys[: data.draw(st.integers(1, len(keys)), label="how many")])

    @precondition(_has_delivered)
    @rule(data=st.data())
    @guarded
    def deliver_duplicates(self, data: st.DataObject) -> None:
        reports = data.draw(
            st.lists(st.sampled_from(self.h.delivered), min_size=1, max_size=3), label="dups"
        )
        self.h.redeliver(reports)

    @precondition(_has_delivered)
    @rule(data=st.data())
    @guarded
    def deliver_late_contradiction(self, data: st.DataObject) -> None:
        """A report for an attempt that has already ended, claiming the opposite."""
        late = flipped(data.draw(st.sampled_from(self.h.delivered), label="late"))
        self.h.redeliver([late])

    @invariant()
    @guarded
    def consistent(self) -> None:
        self.h.check_invariants()

    def teardown(self) -> None:
        try:
            if not self.broken and hasattr(self, "h"):
                self.h.drain()
                self.h.check_final()
        finally:
            close = getattr(getattr(self, "h", None), "store", None)
            if close is not None and hasattr(close, "close"):
                close.close()
            shutil.rmtree(self.home, ignore_errors=True)


EventStorm.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    report_multiple_bugs=False,  # one shrunk failure, quickly; the examples below name each bug
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # no explain phase: its tracing makes every example several times slower
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
# A passing run takes ~10 s. A failing one spends most of its time shrinking (up to
# Hypothesis's own 5-minute cap on a fresh example database; a re-run replays the saved
# example in seconds), so the 120 s default timeout must not cut the report off.
TestEventStorm = pytest.mark.timeout(360)(EventStorm.TestCase)


# ------------------------------------------------------------------------------------------
# The same harness on fixed workflows, step by step, so a failure reads plainly
# ------------------------------------------------------------------------------------------

FIXED = DagDef(
    name="sales",
    tasks=(
        TaskDef("extract", retries=2),
        TaskDef("transform", parents=("extract",)),
        TaskDef(
            "route",
            parents=("transform",),
            cases=(Case(0, ("big_load",)),),
            default=("small_load",),
        ),
        TaskDef("big_load", parents=("route",)),
        TaskDef("small_load", parents=("route",)),
        TaskDef("cleanup", parents=("big_load", "small_load"), rule="none_failed"),
        TaskDef("alert", parents=("extract", "transform"), rule="one_failed"),
    ),
)


def test_fixed_workflow_survives_retries_duplicates_and_late_reports(tmp_path: Path) -> None:
    # GIVEN extract fails twice then succeeds, everything else succeeds, and pick=0 (big)
    plan = {t.id: (True, True, True) for t in FIXED.tasks}
    plan["extract"] = (False, False, True)
    h = Harness(Scenario(FIXED, plan, pick=0), tmp_path)
    h.strict_steps = False  # test_step_dispatches_what_a_switch_made_ready checks that part

    # WHEN the first attempt fails, THEN extract waits for its retry, 10s later
    h.step()
    assert h.pending == [(RUN_ID, "extract", 1)]
    h.deliver(h.pending)
    extract = h.tasks()["extract"]
    assert extract.state is TaskState.UP_FOR_RETRY
    assert extract.ready_at == T0 + timedelta(seconds=10)

    # WHEN that failure is reported again, and a contradicting success arrives late
    h.redeliver(h.delivered)
    h.redeliver([flipped(h.delivered[0])])
    # THEN nothing moved, and nothing is dispatched before the retry is due
    h.step()
    assert h.pending == []
    h.check_invariants()

    # WHEN the clock passes the retry delay, THEN attempt 2 starts; it fails too, and the
    # next delay is doubled (retry_backoff 2.0)
    h.clock.advance(10)
    h.step()
    assert h.pending == [(RUN_ID, "extract", 2)]
    h.deliver(h.pending)
    assert h.tasks()["extract"].ready_at == T0 + timedelta(seconds=30)
    h.clock.advance(20)
    h.step()
    h.deliver(h.pending)
    assert h.tasks()["extract"].state is TaskState.SUCCEEDED

    # WHEN the rest runs, THEN the switch takes big_load and small_load is skipped
    h.step()
    h.deliver(h.pending)  # transform
    h.step()  # route decides in-process; big_load is queued
    h.step()
    assert h.pending == [(RUN_ID, "big_load", 1)]
    h.check_invariants()
    h.drain()
    h.check_final()
    assert h.states() == {
        "alert": "skipped",  # one_failed: nothing failed in the end
        "big_load": "succeeded",
        "cleanup": "succeeded",  # none_failed accepts the skipped branch
        "extract": "succeeded",
        "route": "succeeded",
        "small_load": "skipped",
        "transform": "succeeded",
    }
    assert h.store.get_run(RUN_ID).state is RunState.SUCCEEDED
    assert len(h.dispatcher.dispatched) == 6  # 3 x extract, transform, big_load, cleanup


def test_fixed_workflow_failure_propagates_and_fails_the_run(tmp_path: Path) -> None:
    # GIVEN transform fails (no retries) and pick=1 (the default branch, small_load)
    plan = {t.id: (True, True, True) for t in FIXED.tasks}
    plan["transform"] = (False, False, False)
    h = Harness(Scenario(FIXED, plan, pick=1), tmp_path)
    # WHEN everything is delivered
    h.drain()
    # THEN the failure runs alert, blocks the branch, and the run fails
    h.check_final()
    assert h.states() == {
        "alert": "succeeded",
        "big_load": "upstream_failed",
        "cleanup": "upstream_failed",
        "extract": "succeeded",
        "route": "upstream_failed",
        "small_load": "upstream_failed",
        "transform": "failed",
    }
    run = h.store.get_run(RUN_ID)
    assert (run.state, run.n_done, run.n_failed, run.n_running) == (RunState.FAILED, 7, 1, 0)


def test_step_dispatches_what_a_switch_made_ready(tmp_path: Path) -> None:
    # GIVEN a run whose root is a switch (decided in-process, never dispatched)
    dag = DagDef(
        tasks=(
            TaskDef("route", cases=(Case(0, ("load",)),)),
            TaskDef("load", parents=("route",)),
        )
    )
    h = Harness(Scenario(dag, {t.id: (True,) * 3 for t in dag.tasks}, pick=0), tmp_path)
    h.strict_steps = False
    # WHEN the scheduler takes one turn of periodic work
    wake = h.scheduler.step()
    # THEN the switch has chosen `load`, and `load` is dispatched in that same turn: step()
    # says there is no timed work (None), so a loop would otherwise sleep on a ready task
    assert h.states()["route"] == "succeeded"
    assert wake is None
    assert h.pending == [(RUN_ID, "load", 1)], h.states()


def test_unchosen_switch_branch_is_skipped_whatever_its_trigger_rule(tmp_path: Path) -> None:
    # GIVEN a switch that takes `chosen`, and a branch it does not take whose trigger rule
    # (all_done) would accept a skipped parent
    dag = DagDef(
        tasks=(
            TaskDef("route", cases=(Case(0, ("chosen",)),), default=("other",)),
            TaskDef("chosen", parents=("route",)),
            TaskDef("other", parents=("route",), rule="all_done"),
        )
    )
    h = Harness(Scenario(dag, {t.id: (True,) * 3 for t in dag.tasks}, pick=0), tmp_path)
    h.strict_steps = False  # test_step_dispatches_what_a_switch_made_ready checks that part
    # WHEN the run goes to the end
    h.drain()
    # THEN DESIGN.md holds: "A switch marks every branch it did not choose SKIPPED"
    assert h.states()["other"] == "skipped"
    assert (RUN_ID, "other", 1) not in h.dispatcher.dispatched


def test_duplicate_report_does_not_rewrite_the_attempt_record(tmp_path: Path) -> None:
    # GIVEN an attempt that failed, recorded at T0 + 1s
    dag = DagDef(tasks=(TaskDef("a", retries=1),))
    h = Harness(Scenario(dag, {"a": (False, True, True)}, pick=0), tmp_path)
    h.step()
    h.clock.advance(1)
    h.deliver(h.pending)
    before = h.store.list_attempts(RUN_ID, "a")
    assert [(a.attempt, a.state, a.ended_at) for a in before] == [
        (1, "failed", T0 + timedelta(seconds=1))
    ]
    # WHEN the same report is delivered again later, and then a contradicting one
    h.clock.advance(5)
    h.redeliver(h.delivered)
    h.redeliver([flipped(h.delivered[0])])
    # THEN (invariant 2) the attempt's history still says what happened, when it happened
    assert h.store.list_attempts(RUN_ID, "a") == before


def test_report_arriving_after_a_timeout_changes_nothing(tmp_path: Path) -> None:
    # GIVEN a task with a 5s timeout whose attempt is running
    dag = DagDef(tasks=(TaskDef("a", timeout="5s"),))
    h = Harness(Scenario(dag, {"a": (True, True, True)}, pick=0), tmp_path)
    h.step()
    key = (RUN_ID, "a", 1)
    assert h.pending == [key]
    # WHEN the deadline passes, THEN the scheduler kills it and fails the task
    h.clock.advance(6)
    h.step()
    assert h.dispatcher.killed == [key]
    assert h.states() == {"a": "failed"}
    recorded = h.store.list_attempts(RUN_ID, "a")
    assert [a.state for a in recorded] == ["timed_out"]
    # WHEN the executor's success report arrives anyway
    h.clock.advance(1)
    h.deliver([key])
    # THEN the task, the run and the attempt's history are unchanged
    assert h.states() == {"a": "failed"}
    assert h.store.get_run(RUN_ID).state is RunState.FAILED
    assert h.store.list_attempts(RUN_ID, "a") == recorded
