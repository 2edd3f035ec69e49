"""The event storm, with pools: several runs of several workflows share pools while reports
arrive late, twice and out of order, runs are stopped, paused and resumed, pools resized and
waiting tasks force-started. The real ``Scheduler`` on a real ``SqliteStore``.

What it proves:

- a pool's ``used`` counter always equals the slots its running tasks hold (no drift, after
  any sequence of claims, ends, retries, stops, force starts and duplicate reports);
- the pool is never over-filled by the scheduler (only a force start or a shrink may leave
  ``used`` above ``slots``, and then nothing more is claimed until it drops);
- no (run, task, attempt) is dispatched twice;
- once every report is in, every run ends and every slot is back.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from tests.fakes import FakeClock, RecordingDispatcher

from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.engine import pools as engine_pools
from stratoflow.errors import Conflict
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 1, 1, tzinfo=UTC)

WORKFLOWS = {
    "w1": """
name: w1
tasks:
  x: {type: shell, command: "true", pool: a, retries: 1, retry_delay: 0}
  y: {type: shell, command: "true", pool: b, pool_slots: 2, depends_on: [x]}
  z: {type: shell, command: "true", depends_on: [x]}
""",
    "w2": """
name: w2
priority: 5
concurrency: 1
tasks:
  p: {type: shell, command: "true", pool: a, pool_slots: 2, priority: 3}
  q: {type: shell, command: "true", pool: a}
  r: {type: shell, command: "true", pool: b, depends_on: [p], trigger_rule: all_done}
""",
}
POOLS = {"/a": ("", "a"), "default/b": ("default", "b")}


class PoolStorm(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="stratoflow-pool-storm-"))
        self.store: Any = self.make_store()
        self.clock = FakeClock(T0)
        self.dispatcher = RecordingDispatcher()
        self.sched = Scheduler(self.store, self.store, self.dispatcher, self.clock)
        self.sched.set_pool("a", 2)
        self.sched.set_pool("b", 3, project="default")
        for text in WORKFLOWS.values():
            self.sched.apply(text)
        self.runs: list[str] = []
        self.delivered: list[Finished] = []
        self.over: set[str] = set()  # pools a force start or a shrink may have over-filled

    def make_store(self) -> Any:
        return SqliteStore(self.home / "state.db")

    def close_store(self) -> None:
        self.store.close()

    # ---------------------------------------------------------------- rules
    @rule(name=st.sampled_from(sorted(WORKFLOWS)))
    def trigger(self, name: str) -> None:
        if len(self.runs) < 6:
            self.runs.append(self.sched.trigger("default", name)[0].id)

    @rule()
    def step(self) -> None:
        self.sched.step()

    @rule(seconds=st.integers(1, 120))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.dispatcher.pending))
    @rule(data=st.data(), ok=st.booleans())
    def deliver(self, data: st.DataObject, ok: bool) -> None:
        keys = data.draw(st.permutations(list(self.dispatcher.pending)), label="order")
        keys = keys[: data.draw(st.integers(1, len(keys)), label="how many")]
        status = AttemptStatus.SUCCEEDED if ok else AttemptStatus.FAILED
        reports = [Finished(*k, AttemptResult(status)) for k in keys]
        for k in keys:
            del self.dispatcher.pending[k]
        self.sched.step(reports)
        self.delivered += reports

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        self.sched.on_finished(data.draw(st.lists(st.sampled_from(self.delivered), max_size=3)))

    @precondition(lambda self: bool(self.runs))
    @rule(data=st.data())
    def stop_pause_or_resume(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(self.runs))
        what = data.draw(st.sampled_from(["stop", "pause", "resume"]))
        with contextlib.suppress(Conflict):
            getattr(self.sched, what)(rid)

    @precondition(lambda self: bool(self.runs))
    @rule(data=st.data())
    def force_start(self, data: st.DataObject) -> None:
        waiting = [
            t for key in POOLS for t in self.store.pool_waiting(key, 50) if t.pool is not None
        ]
        if not waiting:
            return
        ti = data.draw(st.sampled_from(waiting))
        try:
            self.sched.force_start(ti.run_id, ti.task_id)
        except Conflict:
            return
        self.over.add(ti.pool or "")

    @rule(key=st.sampled_from(sorted(POOLS)), slots=st.integers(2, 4))
    def resize(self, key: str, slots: int) -> None:
        scope, name = POOLS[key]
        pool = self.store.get_pool(key)
        assert pool is not None
        if slots < pool.used:
            self.over.add(key)
        self.sched.set_pool(name, slots, project=scope or None)

    # ---------------------------------------------------------------- invariants
    @invariant()
    def counts_never_drift(self) -> None:
        pools = {p.key: p.used for p in self.store.list_pools()}
        assert engine_pools.drift(pools, self.store.running_tasks()) == {}
        for p in self.store.list_pools():
            if p.used <= p.slots:
                self.over.discard(p.key)
            assert p.used <= p.slots or p.key in self.over, f"pool {p.key} over-filled: {p}"
        for rid in self.runs:
            run = self.store.get_run(rid)
            running = sum(t.state is TaskState.RUNNING for t in self.store.get_tasks(rid))
            assert run.n_running == (0 if run.state.terminal else running), run

    def teardown(self) -> None:
        try:
            for rid in self.runs:
                if self.store.get_run(rid).state is RunState.PAUSED:
                    self.sched.resume(rid)
            for _ in range(100):
                self.clock.advance(120)
                reports = [
                    Finished(*k, AttemptResult(AttemptStatus.SUCCEEDED))
                    for k in self.dispatcher.pending
                ]
                self.dispatcher.pending.clear()
                self.sched.step(reports)
                if all(self.store.get_run(r).state.terminal for r in self.runs):
                    break
            states = {r: self.store.get_run(r).state for r in self.runs}
            assert all(s.terminal for s in states.values()), states
            assert [p.used for p in self.store.list_pools()] == [0, 0]
        finally:
            self.close_store()
            shutil.rmtree(self.home, ignore_errors=True)


PoolStorm.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
TestPoolStorm = pytest.mark.timeout(360)(PoolStorm.TestCase)
