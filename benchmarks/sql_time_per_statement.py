"""The scheduler loop thread's CPU per task, and its SQLite statements' share, by statement.

Runs the issue's layered DAG (``LAYERS`` x ``WIDTH``, fan-in 3, ``concurrency: 8``) in-process
the way ``stratoflow run`` drives it, and times (``time.thread_time``) every statement the
loop thread runs through the store's connection, its fetches included. Also prints how many
tasks each applied ``Decision`` wrote. Trigger programs run inside their statement.

    PYTHONPATH=layers/core .venv/bin/python benchmarks/sql_time_per_statement.py
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import layered, workflow_yaml

COST: collections.Counter[str] = collections.Counter()
COUNT: collections.Counter[str] = collections.Counter()
LOOP = threading.get_ident()


def _key(sql: str) -> str:
    return re.sub(r"\s+", " ", sql.strip())[:60]


class _Cursor:
    def __init__(self, cur: sqlite3.Cursor, key: str) -> None:
        self._cur, self._key = cur, key

    def _timed(self, call: Callable[[], Any]) -> Any:
        start = time.thread_time()
        try:
            return call()
        finally:
            COST[self._key] += time.thread_time() - start

    def fetchone(self) -> Any:
        return self._timed(self._cur.fetchone)

    def fetchall(self) -> Any:
        return self._timed(self._cur.fetchall)

    def close(self) -> None:
        self._timed(self._cur.close)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self._timed(self._cur.__next__)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


class _Connection:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _run(self, key: str, call: Callable[[], sqlite3.Cursor]) -> Any:
        if threading.get_ident() != LOOP:
            return call()
        COUNT[key] += 1
        start = time.thread_time()
        cur = call()
        COST[key] += time.thread_time() - start
        return _Cursor(cur, key)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._run(_key(sql), lambda: self._conn.execute(sql, args))

    def executemany(self, sql: str, rows: Any) -> Any:
        return self._run("(many) " + _key(sql), lambda: self._conn.executemany(sql, rows))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--top", type=int, default=20, help="statements shown")
    ap.add_argument("--tmpdir", default=None, help="where the home goes (e.g. /dev/shm)")
    args = ap.parse_args()

    from stratoflow.adapters.local import sqlite_store
    from stratoflow.adapters.local.runtime import LocalRuntime

    real_conn = sqlite_store.SqliteStore._conn
    proxies: dict[int, _Connection] = {}

    def conn(store: sqlite_store.SqliteStore) -> Any:
        c = real_conn(store)
        return proxies.setdefault(id(c), _Connection(c))

    sizes: collections.Counter[int] = collections.Counter()
    real_apply = sqlite_store.SqliteStore.apply

    def apply(store: sqlite_store.SqliteStore, decision: Any) -> bool:
        sizes[len(decision.tasks)] += 1
        return real_apply(store, decision)

    sqlite_store.SqliteStore._conn = conn  # type: ignore[method-assign]
    sqlite_store.SqliteStore.apply = apply  # type: ignore[method-assign]
    deps = layered(args.layers, args.width)
    home = Path(tempfile.mkdtemp(prefix="sf-sqltime-", dir=args.tmpdir))
    rt = LocalRuntime(home)
    try:
        version, _ = rt.scheduler.apply(workflow_yaml("sql", deps, args.concurrency))
        start = time.thread_time()
        run, _ = rt.scheduler.trigger(version.project, version.name)
        rt.run_until(lambda: rt.store.get_run(run.id).state.terminal)
        total = time.thread_time() - start
        state = rt.store.get_run(run.id).state.value
    finally:
        rt.close()
        shutil.rmtree(home, ignore_errors=True)
    n = len(deps)
    print(
        f"{n} tasks, run {state}: loop thread {1000 * total / n:.3f} ms per task, "
        f"SQL {1000 * sum(COST.values()) / n:.3f} ms, {sum(COUNT.values()) / n:.2f} statements\n"
    )
    for key, cost in COST.most_common(args.top):
        print(
            f"{1e6 * cost / n:7.1f} us/task {COUNT[key] / n:5.2f}/task "
            f"{1e6 * cost / max(COUNT[key], 1):7.1f} us each  {key}"
        )
    print("\ntasks written per decision: decisions", dict(sorted(sizes.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
