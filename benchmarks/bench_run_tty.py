"""`stratoflow run FILE` in a terminal against the same with its output piped: what the live
progress costs. The issue's 2,000-task layered DAG (20 x 100, fan-in 3, ``concurrency: 8``),
each checkout given with ``--tree`` run both ways, all alternated; wall time and the whole
process tree's CPU (the run's tasks included), medians.

    .venv/bin/python benchmarks/bench_run_tty.py --repeat 5 \\
        --tree /tmp/base/layers/core --tree layers/core

A terminal is a pseudo-terminal (``pty.openpty``) whose output is read and dropped, as a
terminal would show it; piped output goes to a file, as ``bench_local.py``'s E2E has it.
"""

from __future__ import annotations

import argparse
import os
import pty
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import E2E_CONCURRENCY, E2E_LAYERS, E2E_WIDTH, layered, workflow_yaml


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:  # EIO: the other side closed
            return


def one(tree: str, source: Path, tty: bool, tmp: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (the process and its tasks) of one run."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=tmp))
    env = {**os.environ, "PYTHONPATH": tree, "STRATOFLOW_HOME": str(home), "COLUMNS": "120"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    if tty:
        main, child = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "stratoflow", "run", str(source)],
            stdin=child, stdout=child, stderr=child, env=env, close_fds=True,
        )  # fmt: skip
        os.close(child)
        reader = threading.Thread(target=_drain, args=(main,))
        reader.start()
        code = proc.wait()
        reader.join()
        os.close(main)
    else:
        with open(tmp / "out.txt", "wb") as out:
            code = subprocess.call(
                [sys.executable, "-m", "stratoflow", "run", str(source)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise SystemExit(f"stratoflow run exited {code} ({tree}, tty={tty})")
    shutil.rmtree(home, ignore_errors=True)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", required=True, help="a PYTHONPATH (layers/core)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tmpdir", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sf-tty-", dir=args.tmpdir))
    source = tmp / "e2e.yaml"
    source.write_text(workflow_yaml("e2e", layered(E2E_LAYERS, E2E_WIDTH), E2E_CONCURRENCY))
    cases = [(tree, tty) for tree in args.tree for tty in (False, True)]
    samples: dict[tuple[str, bool], list[tuple[float, float]]] = {c: [] for c in cases}
    for i in range(args.repeat):
        for case in cases:
            samples[case].append(one(case[0], source, case[1], tmp))
        print(f"rep {i + 1}/{args.repeat} load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    print("| tree | output | wall s, median (min-max) | CPU s (process and tasks), median |")
    print("|---|---|---:|---:|")
    for tree, tty in cases:
        walls = [w for w, _ in samples[(tree, tty)]]
        cpus = [c for _, c in samples[(tree, tty)]]
        print(
            f"| `{tree}` | {'terminal' if tty else 'piped'} | {statistics.median(walls):.2f} "
            f"({min(walls):.2f}-{max(walls):.2f}) | {statistics.median(cpus):.2f} |"
        )
    print(f"\nload average {os.getloadavg()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
