"""The CPU one file-system operation costs this process, by operation and file system: what
each attempt's files cost (the log the scheduler claims, the work dir it makes, the files a
task leaves), measured where they go. Alternated over the directories given, medians.

    .venv/bin/python benchmarks/fs_costs.py --dir /tmp --dir /dev/shm --ops 300 --repeat 5

On the machines this project is measured on, making a new inode on the root ext4 cost
~0.2-0.9 ms of CPU (a regular file more than a directory), against ~0.02 ms on tmpfs; opening,
linking, renaming or unlinking one cost ~0.01-0.03 ms on either.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ops(base: str) -> dict[str, Callable[[int], object]]:
    """Each operation on item ``i``, in an order where each finds what it needs."""
    return {
        "create a file": lambda i: os.close(os.open(f"{base}/f{i}", _CREATE, 0o600)),
        "mkdir": lambda i: os.mkdir(f"{base}/d{i}", 0o700),
        "open an existing file, append": lambda i: _append(f"{base}/f{i}"),
        "link (no new inode)": lambda i: os.link(f"{base}/f{i}", f"{base}/l{i}"),
        "rename": lambda i: os.rename(f"{base}/l{i}", f"{base}/r{i}"),
        "unlink": lambda i: (os.unlink(f"{base}/r{i}"), os.unlink(f"{base}/f{i}")),
        "rmdir": lambda i: os.rmdir(f"{base}/d{i}"),
    }


def _append(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    os.write(fd, b"x\n")
    os.close(fd)


def measure(directory: Path, n: int) -> dict[str, float]:
    """Microseconds of CPU per operation, ``n`` of each, in a fresh directory."""
    base = tempfile.mkdtemp(prefix="sf-fs-", dir=directory)
    try:
        out = {}
        for name, op in _ops(base).items():
            before = _cpu()
            for i in range(n):
                op(i)
            out[name] = (_cpu() - before) / n * 1e6
        return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def after_deletes(directory: Path, n: int, deleted: int) -> tuple[float, float]:
    """Microseconds of CPU per new file before and after ``deleted`` files of the same
    directory were removed (the second set made right after the removal): on ext4 without a
    journal, each allocation walks past the inodes deleted in the last minutes."""
    base = tempfile.mkdtemp(prefix="sf-fs-", dir=directory)
    try:
        for i in range(deleted):
            os.close(os.open(f"{base}/old{i}", _CREATE, 0o600))
        before = _cpu()
        for i in range(n):
            os.close(os.open(f"{base}/a{i}", _CREATE, 0o600))
        fresh = (_cpu() - before) / n * 1e6
        for i in range(deleted):
            os.unlink(f"{base}/old{i}")
        time.sleep(1.5)  # ext4 takes an inode deleted in the current second at once
        before = _cpu()
        for i in range(n):
            os.close(os.open(f"{base}/b{i}", _CREATE, 0o600))
        return fresh, (_cpu() - before) / n * 1e6
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", action="append", type=Path, required=True)
    ap.add_argument("--ops", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--after-deletes", type=int, default=0, metavar="N",
        help="instead: a new file's cost before and right after N files of its directory "
        "were removed",
    )  # fmt: skip
    args = ap.parse_args()
    if args.after_deletes:
        print(f"| µs of CPU per new file ({args.ops}, median of {args.repeat}) | before | "
              f"after {args.after_deletes} deletions |")  # fmt: skip
        print("|---|---:|---:|")
        for d in args.dir:
            pairs = [after_deletes(d, args.ops, args.after_deletes) for _ in range(args.repeat)]
            print(f"| `{d}` | {statistics.median(p[0] for p in pairs):.0f} | "
                  f"{statistics.median(p[1] for p in pairs):.0f} |")  # fmt: skip
        print(f"\nload average {os.getloadavg()}")
        return 0
    samples: dict[Path, list[dict[str, float]]] = {d: [] for d in args.dir}
    for _ in range(args.repeat):
        for d in args.dir:  # alternated: the machine's load falls on each alike
            samples[d].append(measure(d, args.ops))
    names = list(_ops(""))
    dirs = " | ".join(f"`{d}`" for d in args.dir)
    print(f"| µs of CPU per operation (median of {args.repeat} x {args.ops}) | {dirs} |")
    print("|---|" + "---:|" * len(args.dir))
    for name in names:
        cells = [f"{statistics.median(s[name] for s in samples[d]):.0f}" for d in args.dir]
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"\nload average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
