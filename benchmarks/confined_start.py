"""The starting process's CPU per confined task start: ``Popen`` against glibc's
``posix_spawn`` (:mod:`stratoflow.adapters.local.spawn`), each from a confining thread in a
fresh Landlock domain, and against native/confine.c (``spawn.confined``: the child enters the
domain between vfork and exec, no thread), the ruleset built per start as the executor builds
it (by paths for ``Popen``, as before; by the held descriptors for the others). Alternated,
medians. The native variant runs only where ``make native`` built the helper; as root also
``native-ro``: the same start in a mount namespace read-only but the work dir and /dev/shm
(what a root server's tasks get). Besides this process's CPU (the scheduler's), each start's
wall time (the starting thread waits for the exec) and the children's CPU (the task's own
start and end, its namespace's set-up and teardown included) are shown.

    PYTHONPATH=layers/core .venv/bin/python benchmarks/confined_start.py --starts 300 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stratoflow.adapters.local import sandbox, spawn
from stratoflow.adapters.local.executor import _confined

ARGV = ["/bin/bash", "--noprofile", "--norc", "-c", "true"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(
    kind: str, landlock: sandbox.Landlock, tmp: Path, starts: int
) -> tuple[float, float, float]:
    """Microseconds per start of this process's CPU (its children's excluded), of wall time
    in the starts, and of the children's CPU (counted once they are waited for)."""
    work, log = tmp / "work", tmp / "log"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work)}
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    work_fd = os.open(work, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def popen(argv: list[str]) -> Any:
        return subprocess.Popen(
            argv, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
            start_new_session=True,
        )  # fmt: skip

    def posix_spawn(argv: list[str]) -> Any:
        return spawn.spawn(argv, env, work_fd, log_fd)

    started = []
    root = os.geteuid() == 0
    writable = spawn.Writable(["/dev/shm"]) if kind == "native-ro" else None
    children = _children_cpu()
    wall = time.perf_counter()
    before = _cpu()
    for _ in range(starts):
        if kind == "popen":
            ruleset, start = landlock.ruleset(work, log), popen
        else:
            ruleset, start = landlock.ruleset(work_fd, log_fd), posix_spawn
        try:
            if kind.startswith("native"):
                started.append(
                    spawn.confined(
                        ARGV, env, work_fd, log_fd, [ruleset], root, read_only_but=writable
                    )
                )
            else:
                started.append(_confined(start, ARGV, ruleset, root))
        finally:
            os.close(ruleset)
    spent = _cpu() - before
    wall = time.perf_counter() - wall
    for proc in started:
        proc.wait()
    children = _children_cpu() - children
    os.close(log_fd)
    os.close(work_fd)
    return spent / starts * 1e6, wall / starts * 1e6, children / starts * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tmpdir", default=None)
    args = ap.parse_args()
    if sandbox.landlock_abi() < 1 or not spawn.available():
        print("needs Landlock and glibc's posix_spawn extras")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="sf-confined-start-", dir=args.tmpdir))
    (tmp / "work").mkdir()
    landlock = sandbox.Landlock(
        sandbox.landlock_abi(),
        sandbox.readable_paths([*sandbox.SYSTEM_READ_PATHS, sys.prefix, sys.base_prefix], tmp),
        [],
    )
    samples: dict[str, list[float]] = {"popen": [], "posix_spawn": []}
    if spawn.native_available():
        samples["native"] = []
        if os.geteuid() == 0:
            samples["native-ro"] = []
    walls: dict[str, list[float]] = {kind: [] for kind in samples}
    childs: dict[str, list[float]] = {kind: [] for kind in samples}
    try:
        for _ in range(args.repeat):
            for kind, values in samples.items():
                cpu, wall, child = run(kind, landlock, tmp, args.starts)
                values.append(cpu)
                walls[kind].append(wall)
                childs[kind].append(child)
    finally:
        landlock.close()
    for kind, values in samples.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(
            f"{kind}: {runs} (median {statistics.median(values):.0f} us per start; "
            f"wall {statistics.median(walls[kind]):.0f} us, children's CPU "
            f"{statistics.median(childs[kind]):.0f} us)"
        )
    ratio = statistics.median(samples["posix_spawn"]) / statistics.median(samples["popen"])
    print(f"posix_spawn / popen: {ratio:.2f}x; load average {os.getloadavg()}")
    if "native" in samples:
        native = statistics.median(samples["native"]) / statistics.median(samples["posix_spawn"])
        print(f"native / posix_spawn: {native:.2f}x")
    if "native-ro" in samples:
        for what, table in (("CPU", samples), ("wall", walls), ("children's CPU", childs)):
            more = statistics.median(table["native-ro"]) - statistics.median(table["native"])
            print(f"native-ro - native, {what}: {more:+.1f} us per start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
