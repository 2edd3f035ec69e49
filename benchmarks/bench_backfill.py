"""What backfills cost the run-end path (SQLite, in-process, no task processes).

Three measurements, each a median over repeats, with its reference taken in the same process:

- ``lookup``: the one query a run's end makes when no backfill is active
  (``backfills_waiting_for``), per call, against ``get_run`` of the same run.
- ``idle``: 1,000 one-task runs end with no backfill active, the run-end hook on (one indexed
  query per run end) and then off (``Backfills.run_ended`` replaced by a no-op): the hook's
  cost per run end, and the ratio of the two medians.
- ``lanes``: a 1,000-date backfill in 4 lanes driven to its end: the time per date (its run's
  end, the lane's next date, the run's creation and start), against the same 1,000 runs
  triggered one after another with no backfill (``trigger`` + run end per run).

    .venv/bin/python benchmarks/bench_backfill.py [--repeat 5] [--runs 1000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.backfills import Backfills
from stratoflow.engine import AttemptResult, AttemptStatus
from stratoflow.ports import AttemptSpec, Clock, Dispatcher, Recovery
from stratoflow.service import Finished, Scheduler

FLOW = "name: bench\ntasks:\n  t: {type: shell, command: 'true'}\n"
OK = AttemptResult(AttemptStatus.SUCCEEDED)


class Now(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


class Pending(Dispatcher):
    def __init__(self) -> None:
        self.pending: list[AttemptSpec] = []

    def dispatch(self, spec: AttemptSpec) -> str | None:
        self.pending.append(spec)
        return None

    def kill(self, run_id: str, task_id: str, attempt: int) -> None:
        return None

    def recover(self, running: object) -> Recovery:
        return Recovery()


def fresh(tmp: Path) -> tuple[Scheduler, Pending]:
    store = SqliteStore(tmp / f"{time.monotonic_ns()}.db")
    dispatcher = Pending()
    scheduler = Scheduler(store, store, dispatcher, Now())
    scheduler.apply(FLOW)
    return scheduler, dispatcher


def drain(scheduler: Scheduler, dispatcher: Pending) -> int:
    """End every dispatched attempt (and what that dispatches) until nothing is left."""
    ended = 0
    scheduler.step()
    while dispatcher.pending:
        batch, dispatcher.pending = dispatcher.pending, []
        scheduler.step([Finished(s.run_id, s.task_id, s.attempt, OK) for s in batch])
        ended += len(batch)
    return ended


def timed(work: Callable[[], int]) -> float:
    start = time.perf_counter()
    count = work()
    return (time.perf_counter() - start) / count * 1e6  # microseconds per run


def idle(tmp: Path, runs: int, hook: bool) -> float:
    scheduler, dispatcher = fresh(tmp)
    for _ in range(runs):
        scheduler.trigger("default", "bench")
    original = Backfills.run_ended
    if not hook:
        Backfills.run_ended = lambda self, run: None  # type: ignore[method-assign]
    try:
        return timed(lambda: drain(scheduler, dispatcher))
    finally:
        Backfills.run_ended = original  # type: ignore[method-assign]


def lanes(tmp: Path, runs: int) -> float:
    scheduler, dispatcher = fresh(tmp)

    def work() -> int:
        made = scheduler.backfills.create(
            "default", "bench", start="2020-01-01", end=_end(runs), parallel=4
        )
        ended = drain(scheduler, dispatcher)
        assert scheduler.backfills.get(made.id).state.value == "succeeded"
        return ended

    return timed(work)


def plain(tmp: Path, runs: int) -> float:
    scheduler, dispatcher = fresh(tmp)

    def work() -> int:
        for _ in range(runs):
            scheduler.trigger("default", "bench")
            drain(scheduler, dispatcher)
        return runs

    return timed(work)


def _end(runs: int) -> str:
    from datetime import date, timedelta

    return (date(2020, 1, 1) + timedelta(days=runs - 1)).isoformat()


def lookup(tmp: Path, calls: int = 20_000) -> tuple[float, float]:
    scheduler, _ = fresh(tmp)
    run, _ = scheduler.trigger("default", "bench")
    store = scheduler.store
    assert isinstance(store, SqliteStore)

    def per_call(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls * 1e6

    hook = per_call(lambda: store.backfills_waiting_for("default", "bench", run.id))
    return hook, per_call(lambda: store.get_run(run.id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        on, off, lane, ref, hook, get = [], [], [], [], [], []
        for _ in range(args.repeat):  # interleaved, so drift hits both sides alike
            a, b = lookup(tmp)
            hook.append(a)
            get.append(b)
            on.append(idle(tmp, args.runs, hook=True))
            off.append(idle(tmp, args.runs, hook=False))
            lane.append(lanes(tmp, args.runs))
            ref.append(plain(tmp, args.runs))
    m_hook, m_get = statistics.median(hook), statistics.median(get)
    print(f"lookup, none active    : {m_hook:8.1f} us/call  (get_run: {m_get:.1f} us/call)")
    m_on, m_off = statistics.median(on), statistics.median(off)
    m_lane, m_ref = statistics.median(lane), statistics.median(ref)
    print(f"idle  run end, hook on : {m_on:8.1f} us/run   (samples {[round(x) for x in on]})")
    print(f"idle  run end, hook off: {m_off:8.1f} us/run   (samples {[round(x) for x in off]})")
    print(f"      hook cost        : {m_on - m_off:8.1f} us/run end, ratio {m_on / m_off:.3f}")
    print(f"lanes backfill, 4 lanes: {m_lane:8.1f} us/date  (samples {[round(x) for x in lane]})")
    print(f"      trigger + end    : {m_ref:8.1f} us/run   (samples {[round(x) for x in ref]})")
    print(f"      ratio            : {m_lane / m_ref:.3f}")


if __name__ == "__main__":
    main()
