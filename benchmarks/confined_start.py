"""The starting process's CPU per confined task start: ``Popen`` against glibc's
``posix_spawn`` (:mod:`stratoflow.adapters.local.spawn`), each from a confining thread in a
fresh Landlock domain, and against native/confine.c (``spawn.confined``: the child enters the
domain between vfork and exec, no thread), the ruleset built per start as the executor builds
it (by paths for ``Popen``, as before; by the held descriptors for the others). Alternated,
medians. The native variant runs only where ``make native`` built the helper.

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
from pathlib import Path
from typing import Any

from stratoflow.adapters.local import sandbox, spawn
from stratoflow.adapters.local.executor import _confined

ARGV = ["/bin/bash", "--noprofile", "--norc", "-c", "true"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(kind: str, landlock: sandbox.Landlock, tmp: Path, starts: int) -> float:
    """Microseconds of this process's CPU per start (its children's excluded)."""
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
    before = _cpu()
    for _ in range(starts):
        if kind == "popen":
            ruleset, start = landlock.ruleset(work, log), popen
        else:
            ruleset, start = landlock.ruleset(work_fd, log_fd), posix_spawn
        try:
            if kind == "native":
                started.append(spawn.confined(ARGV, env, work_fd, log_fd, [ruleset], root))
            else:
                started.append(_confined(start, ARGV, ruleset, root))
        finally:
            os.close(ruleset)
    spent = _cpu() - before
    for proc in started:
        proc.wait()
    os.close(log_fd)
    os.close(work_fd)
    return spent / starts * 1e6


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
    try:
        for _ in range(args.repeat):
            for kind, values in samples.items():
                values.append(run(kind, landlock, tmp, args.starts))
    finally:
        landlock.close()
    for kind, values in samples.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"{kind}: {runs} (median {statistics.median(values):.0f} us per start)")
    ratio = statistics.median(samples["posix_spawn"]) / statistics.median(samples["popen"])
    print(f"posix_spawn / popen: {ratio:.2f}x; load average {os.getloadavg()}")
    if "native" in samples:
        native = statistics.median(samples["native"]) / statistics.median(samples["posix_spawn"])
        print(f"native / posix_spawn: {native:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
