"""Read-model queries on PostgreSQL with 100,000 runs of one workflow: with and without indexes.

Creates a scratch database on the server (dropped at the end), migrates it, loads
``--runs`` runs of one workflow (plus ``--others`` runs of 9 other workflows in two projects)
with COPY, ANALYZEs, then times each query through :class:`stratoflow.readmodel.ReadModel`
(the API's code path: SQL, driver, decoding to domain objects) ``--repeats`` times, and
prints the median and p95. Then it drops the read model's run indexes and times the same
queries again: the reference, in the same run, on the same data. ``--explain`` prints each
query's plan (EXPLAIN ANALYZE) in both phases.

    .venv/bin/python benchmarks/bench_readmodel.py            # ~1-2 minutes here
    .venv/bin/python benchmarks/bench_readmodel.py --explain --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from stratoflow.engine import RunState
from stratoflow.readmodel import PostgresDatabase, ReadModel, RunFilter
from stratoflow.readmodel._db import Params, Row, to_pyformat

PROJECT, WORKFLOW = "analytics", "sales_daily"
T0 = datetime(2015, 1, 1, tzinfo=UTC)
RUN_INDEXES = [
    "runs_workflow_created",
    "runs_project_created",
    "runs_workflow_state_created",
    "runs_project_state_created",
    "runs_workflow_logical",
]


class RecordingDatabase(PostgresDatabase):
    """Keeps the last statement, so its plan can be printed."""

    last: tuple[str, Params | None] = ("", None)

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        self.last = (sql, params)
        return super().query(sql, params)


def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _state(rng: random.Random, i: int, n: int) -> str:
    if i >= n - 3:
        return "running"  # the newest few are still running
    roll = rng.random()
    if roll < 0.05:
        return "failed"
    if roll < 0.06:
        return "stopped"
    return "succeeded"


def load(conn: psycopg.Connection[Any], runs: int, others: int, seed: int) -> float:
    """COPY the runs in; returns seconds taken."""
    rng = random.Random(seed)
    started = time.perf_counter()
    columns = (
        "id, project, workflow, workflow_version, state, params, logical_date, created_at, "
        "started_at, ended_at, run_trigger, n_tasks, n_done, n_failed, n_running, error, rev"
    )
    with conn.cursor() as cur, cur.copy(f"COPY runs ({columns}) FROM STDIN") as copy:
        plan = [(PROJECT, WORKFLOW, i, runs) for i in range(runs)]
        for j in range(others):
            project = PROJECT if j % 2 else "marketing"
            plan.append((project, f"wf_{j % 9}", j, others))
        for project, workflow, i, n in plan:
            logical = T0 + timedelta(hours=i)
            created = logical + timedelta(minutes=5, microseconds=rng.randrange(10**6))
            state = _state(rng, i, n)
            ended = None if state == "running" else _ts(created + timedelta(minutes=3))
            copy.write_row(
                (
                    f"{workflow}-{i:07d}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}",
                    project,
                    workflow,
                    1 + i // 10_000,
                    state,
                    '{"region":"eu"}',
                    _ts(logical),
                    _ts(created),
                    _ts(created + timedelta(seconds=2)),
                    ended,
                    "schedule",
                    12,
                    0 if state == "running" else 12,
                    1 if state == "failed" else 0,
                    2 if state == "running" else 0,
                    "task t3 failed" if state == "failed" else None,
                    f"{i:040d}",
                )
            )
    conn.execute("INSERT INTO workflows (project, name, latest_version, paused, rev) "
                 "SELECT DISTINCT project, workflow, 1, 0, '0' FROM runs")  # fmt: skip
    conn.execute("ANALYZE")
    return time.perf_counter() - started


def queries(rm: ReadModel, runs: int) -> dict[str, Callable[[], Any]]:
    wf = RunFilter(project=PROJECT, workflow=WORKFLOW)
    middle = rm.list_runs(wf, limit=min(runs // 2, 500))
    for _ in range(runs // 1000 - 1):  # walk to the middle of the history, 500 at a time
        if middle.next_cursor is None:
            break
        middle = rm.list_runs(wf, limit=500, cursor=middle.next_cursor)
    deep = middle.next_cursor
    week0 = T0 + timedelta(hours=runs // 2)
    day0 = T0 + timedelta(hours=runs // 3)
    return {
        "last 50 runs of the workflow": lambda: rm.list_runs(wf, limit=50),
        "next 50 from the middle (keyset cursor)": lambda: rm.list_runs(wf, limit=50, cursor=deep),
        "last 50 failed runs of the workflow": lambda: rm.list_runs(
            RunFilter(project=PROJECT, workflow=WORKFLOW, states=[RunState.FAILED]), limit=50
        ),
        "running runs of the workflow (rare state)": lambda: rm.list_runs(
            RunFilter(project=PROJECT, workflow=WORKFLOW, states=[RunState.RUNNING]), limit=50
        ),
        "one week by logical date": lambda: rm.list_runs(
            RunFilter(
                project=PROJECT,
                workflow=WORKFLOW,
                logical_from=week0,
                logical_to=week0 + timedelta(days=7),
                order="logical_date",
            ),
            limit=200,
        ),
        "one day by creation time": lambda: rm.list_runs(
            RunFilter(
                project=PROJECT,
                workflow=WORKFLOW,
                created_from=day0,
                created_to=day0 + timedelta(days=1),
            ),
            limit=50,
        ),
        "last 50 failed runs of the project": lambda: rm.list_runs(
            RunFilter(project=PROJECT, states=[RunState.FAILED]), limit=50
        ),
        "workflows list with last run state": lambda: rm.list_workflows(limit=100),
    }


def measure(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm: plan cache, buffers
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def explain(conn: psycopg.Connection[Any], db: RecordingDatabase, fn: Callable[[], Any]) -> str:
    fn()
    sql, params = db.last
    rows = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + to_pyformat(sql), dict(params or {})
    ).fetchall()
    return "\n".join("    " + r[0] for r in rows)


def phase(
    label: str,
    conn: psycopg.Connection[Any],
    db: RecordingDatabase,
    rm: ReadModel,
    runs: int,
    repeats: int,
    show_plans: bool,
) -> dict[str, dict[str, float]]:
    print(f"\n== {label} ({repeats} repeats each; ms) ==")
    print(f"{'query':45s} {'median':>9s} {'p95':>9s} {'min':>9s}")
    results = {}
    for name, fn in queries(rm, runs).items():
        samples = measure(fn, repeats)
        results[name] = {
            "median_ms": statistics.median(samples),
            "p95_ms": p95(samples),
            "min_ms": min(samples),
        }
        r = results[name]
        print(f"{name:45s} {r['median_ms']:9.2f} {r['p95_ms']:9.2f} {r['min_ms']:9.2f}")
        if show_plans:
            print(explain(conn, db, fn))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a database the user may CREATE DATABASE from")  # fmt: skip
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--others", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--reference-repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE plans")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()

    name = f"sf_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(args.dsn, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = args.dsn.rpartition("/")[0] + "/" + name
    try:
        db = RecordingDatabase(url)
        rm = ReadModel(db)
        with psycopg.connect(url, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            print(f"PostgreSQL {version[0] if version else '?'}; scratch database {name}")
            took = load(conn, args.runs, args.others, args.seed)
            print(f"loaded {args.runs:,} runs of {PROJECT}/{WORKFLOW} + {args.others:,} others "
                  f"with COPY in {took:.1f} s")  # fmt: skip
            indexed = phase("with the read model's indexes", conn, db, rm, args.runs,
                            args.repeats, args.explain)  # fmt: skip
            for index in RUN_INDEXES:
                conn.execute(f"DROP INDEX {index}")
            conn.execute("ANALYZE runs")
            bare = phase("reference: the same queries without the run indexes", conn, db, rm,
                         args.runs, args.reference_repeats, args.explain)  # fmt: skip
        rm.close()
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    worst = max(r["median_ms"] for r in indexed.values())
    print(f"\nslowest median with indexes: {worst:.2f} ms (target: under 50 ms)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"indexed": indexed, "reference": bare, "runs": args.runs}, fh, indent=2)
    return 0 if worst < 50 else 1


if __name__ == "__main__":
    sys.exit(main())
