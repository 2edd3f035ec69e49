"""Where the CPU of ``stratoflow run`` goes, by thread: the issue's layered DAG (``LAYERS`` x
``WIDTH``, fan-in 3, ``concurrency: 8``) run as a process, whose every thread is timed with
``time.thread_time`` over its whole life (``threading.Thread.run`` and
``_thread.start_new_thread`` wrapped, so the executor's short-lived confining threads count
too), the main thread's phases likewise (imports, parsing and validating, apply, trigger,
the loop, the final summary) and the collector through ``gc.callbacks``. The process's
RUSAGE_SELF at exit is the total the threads add up to. Several checkouts given with
``--tree`` run alternated, for a before/after in the same minutes.

    PYTHONPATH=layers/core .venv/bin/python benchmarks/cpu_by_thread.py --repeat 3 \\
        --tree /tmp/base/layers/core --tree layers/core --tmpdir /dev/shm

(For tmpfs homes set STRATOFLOW_WORK_ROOT too: it is passed on. /dev/shm only as root, with
per-project uids: under Landlock a home or work root there is refused, every task may write
it; mount a tmpfs of your own instead.)
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import layered, workflow_yaml

# Runs `stratoflow run ARGS` in this interpreter with every thread timed; argv[1] is where the
# figures go (JSON), the rest is the command line.
_LAUNCHER = r"""
import _thread, atexit, gc, importlib, json, resource, sys, threading, time
OUT = sys.argv[1]
CPU, PHASES, _lock, _gc = {}, {}, _thread.allocate_lock(), {}

def add(name, seconds):
    with _lock:
        CPU[name] = CPU.get(name, 0.0) + seconds

def group(name):
    return "start threads" if name.startswith("stratoflow-spawn") else name.rstrip("0123456789-_")

real_run = threading.Thread.run
def run(self):
    start = time.thread_time()
    try:
        real_run(self)
    finally:
        add(group(self.name), time.thread_time() - start)
threading.Thread.run = run

real_start = _thread.start_new_thread
def start_new_thread(fn, args, kwargs={}):
    def timed(*a, **k):
        start = time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            add("_thread " + getattr(fn, "__qualname__", "?").replace(".<locals>", ""), time.thread_time() - start)
    return real_start(timed, args, kwargs)
_thread.start_new_thread = start_new_thread

def collected(phase, info):
    tid = threading.get_ident()
    if phase == "start":
        _gc[tid] = time.thread_time()
    else:
        add("gc (inside the threads' figures)", time.thread_time() - _gc.pop(tid, time.thread_time()))
gc.callbacks.append(collected)

def timed(owner, attr, label):
    real = getattr(owner, attr)
    def wrapper(*a, **k):
        start = time.thread_time()
        try:
            return real(*a, **k)
        finally:
            PHASES[label] = PHASES.get(label, 0.0) + time.thread_time() - start
    setattr(owner, attr, wrapper)

def report():
    r = resource.getrusage(resource.RUSAGE_SELF)
    with open(OUT, "w") as fh:
        json.dump({"total": r.ru_utime + r.ru_stime, "user": r.ru_utime, "sys": r.ru_stime,
                   "main thread": time.thread_time(), "threads": CPU, "phases": PHASES}, fh)
atexit.register(report)

start = time.thread_time()
import stratoflow.cli as cli
import stratoflow.adapters.local.runtime as runtime
import stratoflow.model as model
import stratoflow.service as service
PHASES["start-up: imports"] = time.thread_time() - start
timed(model, "load_workflow", "start-up: parse and validate")
timed(service.Scheduler, "apply", "start-up: apply")
timed(service.Scheduler, "trigger", "start-up: trigger")
timed(runtime, "settle_gc", "start-up: settle_gc")
timed(cli, "_drive", "the loop")
timed(cli, "_detail", "the summary")
timed(cli, "_print_run", "the summary")
sys.argv = ["stratoflow", *sys.argv[2:]]
cli.main()
"""


def sample(tree: str, yaml_path: Path, tmp: Path) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="sf-cpu-", dir=tmp))
    out = home.with_suffix(".json")
    try:
        subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(out), "run", str(yaml_path), "--home", str(home)],
            env={**os.environ, "PYTHONPATH": tree}, stdout=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        raw = json.loads(out.read_text())
    finally:
        # the home stays until the whole set is done (under ``tmp``): see
        # bench_local.cli_sample on what removing it right away bills the next sample
        out.unlink(missing_ok=True)
    row = {"process (RUSAGE_SELF)": raw["total"], "  user": raw["user"], "  sys": raw["sys"]}
    row["main thread"] = raw["main thread"]
    for name, seconds in sorted(raw["phases"].items()):
        row[f"  {name}"] = seconds
    row.update(sorted(raw["threads"].items(), key=lambda kv: -kv[1]))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tree", action="append", help="a PYTHONPATH to import Stratoflow from")
    ap.add_argument("--tmpdir", default=None, help="where the homes go (e.g. /dev/shm)")
    args = ap.parse_args()
    trees = args.tree or [str(Path(__file__).resolve().parent.parent / "layers" / "core")]
    deps = layered(args.layers, args.width)
    tmp = Path(tempfile.mkdtemp(prefix="sf-cpu-by-thread-", dir=args.tmpdir))
    yaml_path = tmp / "layered.yaml"
    yaml_path.write_text(workflow_yaml("bythread", deps, args.concurrency))
    rows: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
    try:
        for i in range(args.repeat):
            for tree in trees:
                load = os.getloadavg()[0]
                rows[tree].append(sample(tree, yaml_path, tmp))
                print(
                    f"{time.strftime('%H:%M:%S')} rep {i + 1} load {load:.1f} {tree}",
                    file=sys.stderr,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(deps)
    keys = list(dict.fromkeys(k for t in trees for r in rows[t] for k in r))
    print(
        f"| ms per task ({n} tasks) | " + " | ".join(f"`{t}`: runs (median)" for t in trees) + " |"
    )
    print("|---|" + "---|" * len(trees))
    for key in keys:
        cells = []
        for tree in trees:
            ms = [1000 * r.get(key, 0.0) / n for r in rows[tree]]
            cells.append(", ".join(f"{x:.2f}" for x in ms) + f" ({statistics.median(ms):.2f})")
        print(f"| {key} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
