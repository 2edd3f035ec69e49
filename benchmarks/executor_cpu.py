"""The local executor's CPU per attempt, by thread: ``--attempts`` attempts of ``true`` run
through a real :class:`LocalExecutor` (Landlock isolation, home and work root under
``--tmpdir``, e.g. a tmpfs of your own: not /dev/shm, which every confined task may write,
so the executor refuses it), ``--concurrency`` at a time, each finished one released and its
successors dispatched in one ``dispatch_many`` as the scheduler's loop does (so most starts go
through the spawn threads, a lone one through the caller's). Nothing else runs in the
process: every thread's CPU is the executor's (the driver's own bookkeeping, a queue get and
a spec per attempt, is in "driver (main thread)"). Each ``--tree`` runs in a process of its
own, alternated, for a before/after in the same minutes; medians.

    PYTHONPATH=layers/core .venv/bin/python benchmarks/executor_cpu.py --repeat 5 \\
        --tree /work/main/layers/core --tree layers/core --tmpdir /mnt/sf-bench

``--child`` runs one sample in this process and prints it as JSON (what the parent runs; also
the thing to profile: ``py-spy record --gil -r 500 -f raw -o out -- python
benchmarks/executor_cpu.py --child ...``). The task's own CPU (bash) is not counted: it is
the children's, not the process's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_CPU: dict[str, float] = {}


_PROFILES: list[Any] = []


def _timed_threads(profile: bool = False) -> None:
    """Every thread's CPU over its life, by name (spawn threads together; the bare
    ``_thread`` confining threads by their function); with ``profile``, each thread under a
    cProfile of its own (merged at the end)."""
    import _thread
    import cProfile
    import threading

    lock = _thread.allocate_lock()

    def profiled(fn: Any, *a: Any, **k: Any) -> Any:
        if not profile:
            return fn(*a, **k)
        prof = cProfile.Profile(time.thread_time)
        try:
            return prof.runcall(fn, *a, **k)
        finally:
            with lock:
                _PROFILES.append(prof)

    def add(name: str, seconds: float) -> None:
        with lock:
            _CPU[name] = _CPU.get(name, 0.0) + seconds

    real_run = threading.Thread.run

    def run(self: threading.Thread) -> None:
        start = time.thread_time()
        try:
            profiled(real_run, self)
        finally:
            name = self.name
            group = "start threads" if name.startswith("stratoflow-spawn") else name
            add(group.rstrip("0123456789-_"), time.thread_time() - start)

    threading.Thread.run = run  # type: ignore[method-assign]
    real_start = _thread.start_new_thread

    def start_new_thread(fn: Any, args: Any, kwargs: Any = None) -> int:
        label = "confining threads" if "confine" in getattr(fn, "__qualname__", "") else "_thread"

        def timed(*a: Any, **k: Any) -> Any:
            start = time.thread_time()
            try:
                return profiled(fn, *a, **k)
            finally:
                add(label, time.thread_time() - start)

        return real_start(timed, args, kwargs or {})

    _thread.start_new_thread = start_new_thread


def child(
    attempts: int, concurrency: int, tmpdir: str | None, cprofile: str | None = None
) -> dict[str, Any]:
    _timed_threads(profile=cprofile is not None)
    import queue
    import resource
    from datetime import UTC, datetime

    from stratoflow.adapters.local.executor import LocalExecutor
    from stratoflow.engine import RenderedTask
    from stratoflow.ports import AttemptSpec
    from stratoflow.secrets import ChainedSource, EnvironmentSource

    base = Path(tempfile.mkdtemp(prefix="sf-executor-cpu-", dir=tmpdir))
    home = base / "home"
    home.mkdir()
    done: queue.SimpleQueue[tuple[str, str, int, str]] = queue.SimpleQueue()

    def report(run_id: str, task_id: str, attempt: int, result: Any, log: str) -> None:
        done.put((run_id, task_id, attempt, str(result.status)))

    executor = LocalExecutor(
        home / "attempts",
        report,
        isolation="landlock",
        work_root=base / "work",
        protect=home,
        secrets=ChainedSource([EnvironmentSource(os.environ)]),
        connections=lambda project, name: None,  # type: ignore[arg-type,return-value]
    )
    task = RenderedTask("shell", {"command": "true"}, {}, {})
    date = datetime(2026, 1, 1, tzinfo=UTC)
    run_id = "bench.cpu.1"

    def spec(i: int) -> AttemptSpec:
        return AttemptSpec(run_id, f"t{i}", 1, task, date, "cpu", "bench")

    usage = resource.getrusage(resource.RUSAGE_SELF)
    process_before = usage.ru_utime + usage.ru_stime
    main_before = time.thread_time()
    wall = time.perf_counter()
    if cprofile:
        import cProfile

        driver = cProfile.Profile(time.thread_time)
        _PROFILES.append(driver)
        driver.enable()
    sent = min(concurrency, attempts)
    executor.dispatch_many([spec(i) for i in range(sent)])
    finished = 0
    statuses: dict[str, int] = {}
    while finished < attempts:
        ended = [done.get()]
        while True:
            try:
                ended.append(done.get_nowait())
            except queue.Empty:
                break
        for run, task_id, attempt, status in ended:
            statuses[status] = statuses.get(status, 0) + 1
            executor.release(run, task_id, attempt)
        finished += len(ended)
        more = min(len(ended), attempts - sent)
        if more:
            executor.dispatch_many([spec(i) for i in range(sent, sent + more)])
            sent += more
    main = time.thread_time() - main_before
    executor.close()  # the reaper's last round, the threads' ends
    if cprofile:
        import pstats

        driver.disable()
        stats = pstats.Stats(_PROFILES[0])
        for prof in _PROFILES[1:]:
            stats.add(prof)
        stats.dump_stats(cprofile)
    wall = time.perf_counter() - wall
    usage = resource.getrusage(resource.RUSAGE_SELF)
    process = usage.ru_utime + usage.ru_stime - process_before
    shutil.rmtree(base, ignore_errors=True)
    return {
        "attempts": attempts,
        "statuses": statuses,
        "wall": wall,
        "process": process,
        "driver (main thread)": main,
        "threads": dict(_CPU),
    }


def sample(tree: str, args: argparse.Namespace) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", "--attempts", str(args.attempts)]
    argv += ["--concurrency", str(args.concurrency)]
    if args.tmpdir:
        argv += ["--tmpdir", args.tmpdir]
    out = subprocess.run(
        argv, env={**os.environ, "PYTHONPATH": tree}, capture_output=True, text=True, check=True
    ).stdout
    raw = json.loads(out)
    if raw["statuses"] != {"succeeded": raw["attempts"]}:
        raise SystemExit(f"{tree}: not every attempt succeeded: {raw['statuses']}")
    row = {
        "process (RUSAGE_SELF)": raw["process"],
        "driver (main thread)": raw["driver (main thread)"],
    }
    row.update(sorted(raw["threads"].items(), key=lambda kv: -kv[1]))
    row["executor (process - driver)"] = raw["process"] - raw["driver (main thread)"]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--attempts", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tree", action="append", help="a PYTHONPATH to import Stratoflow from")
    ap.add_argument("--tmpdir", default=None, help="where the home and work root go")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cprofile", default=None, help="with --child: every thread's profile here")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.attempts, args.concurrency, args.tmpdir, args.cprofile)))
        return 0
    trees = args.tree or [str(Path(__file__).resolve().parent.parent / "layers" / "core")]
    rows: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
    for i in range(args.repeat):
        for tree in trees:
            load = os.getloadavg()[0]
            rows[tree].append(sample(tree, args))
            print(
                f"{time.strftime('%H:%M:%S')} rep {i + 1} load {load:.1f} {tree}", file=sys.stderr
            )
    keys = list(dict.fromkeys(k for t in trees for r in rows[t] for k in r))
    print(
        f"| us per attempt ({args.attempts} attempts of `true`, {args.concurrency} at a time) | "
        + " | ".join(f"`{t}`: runs (median)" for t in trees)
        + (" | last / first |" if len(trees) > 1 else " |")
    )
    print("|---|" + "---|" * (len(trees) + (len(trees) > 1)))
    for key in keys:
        cells, medians = [], []
        for tree in trees:
            us = [1e6 * r.get(key, 0.0) / args.attempts for r in rows[tree]]
            medians.append(statistics.median(us))
            cells.append(", ".join(f"{x:.0f}" for x in us) + f" ({medians[-1]:.0f})")
        if len(trees) > 1:
            cells.append(f"{medians[-1] / medians[0]:.2f}" if medians[0] else "-")
        print(f"| {key} | " + " | ".join(cells) + " |")
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
