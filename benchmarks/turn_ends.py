"""The scheduler's turns with no executor: SQL statements and CPU per task, deterministic.

The issue's layered DAG (``LAYERS`` x 100, fan-in 3, ``concurrency: 8``) on a SQLite store,
driven in-process by a fake clock and a recording dispatcher: each turn (``Scheduler.step``)
reports the ends of the next ``k`` attempts started, ``k`` cycling over ``--batch`` (3,4: the
~3.5 ends a turn ``stratoflow run`` sees at ``concurrency: 8``). The turns are the same on every
run and tree, so the statement count (``--trace``: a trace callback, trigger programs counted
too, as ``sql_per_task.py``) is exact, and the run suits callgrind, whose instruction counts
do not move with the machine's load:

    PYTHONPATH=layers/core .venv/bin/python benchmarks/turn_ends.py --trace
    PYTHONPATH=layers/core valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/turn_ends.py --layers 10 [--no-loop]

(the loop's instructions: a run's minus the same run's with ``--no-loop``, which stops after
the first turn). Prints one JSON line: this thread's CPU per task, the turns, the statements.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import layered, workflow_yaml
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, TaskInstance
from stratoflow.ports import AttemptSpec, Clock, Dispatcher, Recovery
from stratoflow.service import Finished, Scheduler


class _Clock(Clock):
    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)


class _Started(Dispatcher):
    """Keeps the attempts started, in order, until their ends are reported."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, str, int]] = []

    def log_location(self, spec: AttemptSpec) -> str:
        # known before the dispatch, as the local executor's: the starts' history rows go
        # into the claim's commit, not into a second commit of their own
        return f"/logs/{spec.run_id}/{spec.task_id}.{spec.attempt}.log"

    def dispatch(self, spec: AttemptSpec) -> str | None:
        self.pending.append((spec.run_id, spec.task_id, spec.attempt))
        return self.log_location(spec)

    def kill(self, run_id: str, task_id: str, attempt: int) -> None:
        pass

    def recover(self, running: Sequence[TaskInstance]) -> Recovery:
        return Recovery()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--batch", default="3,4", help="ends reported a turn, cycled")
    ap.add_argument("--tmpdir", default=None, help="where the state file goes (e.g. /dev/shm)")
    ap.add_argument("--trace", action="store_true", help="count the statements")
    ap.add_argument("--no-loop", action="store_true", help="stop after the first turn")
    args = ap.parse_args()

    deps = layered(args.layers, 100)
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as home:
        store = SqliteStore(Path(home) / "state.db")
        started = _Started()
        scheduler = Scheduler(store, store, started, _Clock())
        version, _ = scheduler.apply(workflow_yaml("ends", deps, 8))
        run, _ = scheduler.trigger(version.project, version.name)
        statements = 0

        def traced(_sql: str) -> None:
            nonlocal statements
            statements += 1

        if args.trace:
            store._conn().set_trace_callback(traced)
        ok = AttemptResult(AttemptStatus.SUCCEEDED, exit_code=0)
        sizes = itertools.cycle(int(k) for k in args.batch.split(","))
        turns = 0
        start = time.thread_time()
        scheduler.step()
        if args.no_loop:
            return 0
        # the poll ``stratoflow run`` makes after every turn (cli's ``done``): the state alone
        # where the tree has it, else the whole run
        poll = getattr(store, "run_state", None) or (lambda run_id: store.get_run(run_id).state)
        while not poll(run.id).terminal:
            ended, started.pending = (
                started.pending[: (k := next(sizes))],
                started.pending[k:],
            )
            scheduler.step([Finished(*key, ok) for key in ended])
            turns += 1
        cpu = time.thread_time() - start
        state = store.get_run(run.id).state.value
        store.close()
    n = len(deps)
    out = {"tasks": n, "run": state, "turns": turns, "cpu_ms_per_task": 1000 * cpu / n}
    if args.trace:
        out["statements_per_task"] = statements / n
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
