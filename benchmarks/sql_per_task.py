"""SQL statements per task of one in-process run, by statement (not timed).

Runs the issue's layered DAG (``LAYERS`` x ``WIDTH``, fan-in 3, ``concurrency: 8`` by default)
in a fresh home the way ``stratoflow run`` drives it, with a trace callback on the scheduler
thread's SQLite connection; prints the statements per task, grouped by their first words, and
the scheduler process's CPU per task over the run (user+sys, its tasks not counted).

    .venv/bin/python benchmarks/sql_per_task.py [--layers 20] [--width 100] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import collections
import re
import resource
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import layered, workflow_yaml


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--top", type=int, default=20, help="statements shown")
    args = ap.parse_args()

    from stratoflow.adapters.local.runtime import LocalRuntime

    deps = layered(args.layers, args.width)
    home = Path(tempfile.mkdtemp(prefix="sf-sql-"))
    counts: collections.Counter[str] = collections.Counter()
    rt = LocalRuntime(home)
    try:
        rt.store._conn().set_trace_callback(  # the scheduler thread's connection
            lambda sql: counts.update([re.sub(r"\s+", " ", sql.strip())[:60]])
        )
        version, _ = rt.scheduler.apply(workflow_yaml("sql", deps, args.concurrency))
        before = resource.getrusage(resource.RUSAGE_SELF)
        run, _ = rt.scheduler.trigger(version.project, version.name)
        rt.run_until(lambda: rt.store.get_run(run.id).state.terminal)
        after = resource.getrusage(resource.RUSAGE_SELF)
        state = rt.store.get_run(run.id).state.value
    finally:
        rt.close()
        shutil.rmtree(home, ignore_errors=True)
    n = len(deps)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(f"{n} tasks, run {state}: {sum(counts.values()) / n:.2f} statements per task; ")
    print(f"scheduler CPU {1000 * cpu / n:.2f} ms per task (trigger to end, tracing on)\n")
    for sql, k in counts.most_common(args.top):
        print(f"{k / n:6.2f}  {sql}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
