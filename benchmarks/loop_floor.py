"""What a durable scheduler loop in Python and SQLite costs at the least, per task: the
budget issue 10's item 1 (0.5 ms of scheduler CPU per task) leaves for a rewrite of the loop.

Not Stratoflow's loop: a sketch of the shape the notes call "the loop rewrite", held to the same
durability, on the same schema (a real home's ``stratoflow.db``, its ``task_changes`` triggers
included). Per-run state lives in memory (each task's count of parents still running, the
ready queue); every transition is committed before it is acted on, one transaction a turn:

* the turn's ends: each task ``succeeded`` and its attempt ended, one statement each for all;
* the run's counters, one statement;
* the claims the free slots take: each task ``running`` (attempt 1) and its attempt row, one
  statement each for all.

Tasks end without processes: a turn ends 1 to 6 of the running tasks (seeded; about what
Stratoflow's turns gather on the issue's DAG, ~3.7 a turn), so the figure is the loop's own
CPU (``time.thread_time``) with no executor, no engine rules (retries, trigger rules, pools,
templates, events) and no recovery: a floor under any real loop of this shape, not a target a
real one reaches. Compare it with the loop thread of ``cpu_by_thread.py`` (``the loop``) and
the executor's own cost (``executor_cpu.py``).

    PYTHONPATH=layers/core .venv/bin/python benchmarks/loop_floor.py --repeat 7 --tmpdir /mnt/sfbench
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import layered

RUN = "default.floor-1"


def _stamp(base: datetime, tick: int) -> str:
    return (base + timedelta(microseconds=tick)).isoformat()


def _set(conn: Any, table: str, columns: str, at: str, tasks: list[str]) -> None:
    """One UPDATE for all of ``tasks`` (their attempt 1, in ``attempts``)."""
    attempt = " AND attempt=1" if table == "attempts" else ""
    conn.execute(
        f"UPDATE {table} SET {columns} WHERE run_id=?{attempt} "
        f"AND task_id IN ({','.join('?' * len(tasks))})",
        (at, RUN, *tasks),
    )


def one(layers: int, width: int, concurrency: int, tmpdir: str | None, seed: int) -> float:
    """CPU seconds of the loop thread for one run of the layered DAG (setup not counted)."""
    from stratoflow.adapters.local.sqlite_store import SqliteStore

    deps = layered(layers, width)
    home = Path(tempfile.mkdtemp(prefix="sf-loop-floor-", dir=tmpdir))
    try:
        store = SqliteStore(home / "stratoflow.db")
        conn = store._conn()
        now = datetime(2026, 12, 7, tzinfo=UTC)
        conn.execute(
            "INSERT INTO runs (id, seq, project, workflow, version, state, params, logical_date, "
            "created_at, started_at, trigger, n_tasks, concurrency) "
            "VALUES (?,1,'default','floor',1,'running','{}',?,?,?,'manual',?,?)",
            (RUN, now.isoformat(), now.isoformat(), now.isoformat(), len(deps), concurrency),
        )
        conn.executemany(
            "INSERT INTO tasks (run_id, task_id, state) VALUES (?,?,?)",
            [(RUN, t, "queued" if not p else "waiting") for t, p in deps.items()],
        )
        children: dict[str, list[str]] = {t: [] for t in deps}
        for t, parents in deps.items():
            for p in parents:
                children[p].append(t)
        waiting = {t: len(p) for t, p in deps.items()}  # parents not yet succeeded (memory)
        ready = deque(t for t, n in waiting.items() if n == 0)
        running: list[str] = []
        rng = random.Random(seed)
        tick = 0
        done = 0
        cpu0 = time.thread_time()
        while done < len(deps):
            ended: list[str] = []
            if running:
                k = min(len(running), rng.randint(1, 6))
                ended, running = running[:k], running[k:]
            tick += 1
            at = _stamp(now, tick)
            free = concurrency - len(running)
            for t in ended:
                for c in children[t]:
                    waiting[c] -= 1
                    if waiting[c] == 0:
                        ready.append(c)
            claims = [ready.popleft() for _ in range(min(free, len(ready)))]
            conn.execute("BEGIN IMMEDIATE")
            if ended:
                _set(conn, "tasks", "state='succeeded', ended_at=?", at, ended)
                _set(conn, "attempts", "state='succeeded', ended_at=?, exit_code=0", at, ended)
            conn.execute(
                "UPDATE runs SET n_done=n_done+?, n_running=? WHERE id=?",
                (len(ended), len(running) + len(claims), RUN),
            )
            if claims:
                _set(conn, "tasks", "state='running', attempt=1, started_at=?", at, claims)
                conn.execute(
                    "INSERT INTO attempts (run_id, task_id, attempt, state, started_at) VALUES "
                    + ",".join(["(?,?,1,'running',?)"] * len(claims)),
                    [v for t in claims for v in (RUN, t, at)],
                )
            conn.execute("COMMIT")
            running.extend(claims)
            done += len(ended)
        cpu = time.thread_time() - cpu0
        left = conn.execute(
            "SELECT COUNT(*) FROM tasks WHERE run_id=? AND state!='succeeded'", (RUN,)
        ).fetchone()[0]
        if left:
            raise RuntimeError(f"{left} tasks did not end")  # the sketch itself is wrong
        conn.close()
        return cpu
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--tmpdir", default=None, help="where the homes go (a tmpfs of your own)")
    args = ap.parse_args()
    n = args.layers * args.width
    runs = [
        1000 * one(args.layers, args.width, args.concurrency, args.tmpdir, seed) / n
        for seed in range(args.repeat)
    ]
    print(
        f"loop floor, {n} tasks, concurrency {args.concurrency}: "
        f"{statistics.median(runs):.3f} ms of CPU per task (median of {len(runs)}: "
        f"{', '.join(f'{r:.3f}' for r in runs)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
