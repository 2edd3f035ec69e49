"""The ``stratoflow`` command's start-up: the CPU and wall time of a whole process for

* ``stratoflow --help``;
* ``stratoflow apply FILE`` and ``stratoflow trigger NAME``, against a local server this script
  starts on 127.0.0.1 (from this checkout; stopped at the end);
* ``stratoflow run FILE`` of a 1-task workflow (``true``), in a fresh home.

The CPU is the child's user+sys as ``os.wait4`` reports it (for ``run``, that includes its one
``bash -c true`` task, ~2 ms). With ``--tree DIR`` (another checkout, e.g. made by
``git worktree add /tmp/base main``), each command runs from both trees, alternating which goes
first, and the report gives both medians and their ratio. Both trees' packages and this
interpreter's site-packages are compiled to bytecode first (``make install`` does it too);
``--tree-without-bytecode`` instead deletes the other tree's ``__pycache__`` directories and
runs it with ``PYTHONDONTWRITEBYTECODE=1``: a checkout as main's ``make install`` left it on a
machine that keeps no bytecode (this one sets ``PYTHONDONTWRITEBYTECODE=1``), where every
process compiled every module of the package it imported.

    .venv/bin/python benchmarks/bench_startup.py --tree /tmp/base --repeat 11
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from tests.e2e.server_process import ServerProcess  # noqa: E402

from bench_local import compile_tree, machine  # noqa: E402

LAUNCHER = (
    'import sys; sys.argv = ["stratoflow", *sys.argv[1:]]; from stratoflow.cli import main; main()'
)
ONE_TASK = "name: startup\ntasks:\n  a: {type: shell, command: 'true'}\n"
TIMEOUT_S = 60  # one command; a hung one fails the benchmark rather than waiting forever


def sample(package_root: Path, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``stratoflow ARGS`` imported from ``package_root``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **env, "PYTHONPATH": str(package_root)},
    )
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"stratoflow {' '.join(args)} took over {TIMEOUT_S}s")
        time.sleep(0.002)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"stratoflow {' '.join(args)} exited {proc.returncode}: {err}")
    return usage.ru_utime + usage.ru_stime, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tree",
        type=Path,
        default=None,
        help="another checkout to compare with (its layers/core is imported)",
    )
    parser.add_argument(
        "--tree-without-bytecode",
        action="store_true",
        help="delete --tree's __pycache__ directories and keep it without any",
    )
    parser.add_argument("--repeat", type=int, default=9, help="samples per command and tree")
    parser.add_argument("--json", type=Path, default=None, help="write the samples here")
    args = parser.parse_args(argv)  # fmt: skip

    trees = {"this": ROOT / "layers" / "core"}
    if args.tree is not None:
        other = args.tree.resolve() / "layers" / "core"
        if not (other / "stratoflow" / "cli.py").is_file():
            parser.error(f"--tree {args.tree}: no layers/core/stratoflow/cli.py there")
        trees = {"tree": other, **trees}
    tree_env: dict[str, dict[str, str]] = {t: {} for t in trees}
    if args.tree_without_bytecode:
        if args.tree is None:
            parser.error("--tree-without-bytecode needs --tree")
        for cache in (trees["tree"] / "stratoflow").rglob("__pycache__"):
            shutil.rmtree(cache)
        tree_env["tree"] = {"PYTHONDONTWRITEBYTECODE": "1"}
        compile_tree(trees["this"] / "stratoflow")
    else:
        compile_tree(*(root / "stratoflow" for root in trees.values()))
    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    facts = machine(tmp)
    flow = tmp / "startup.yaml"
    flow.write_text(ONE_TASK)
    server = ServerProcess(tmp / "server-home")
    server.start(timeout=60)
    try:
        env = {"STRATOFLOW_TOKEN": server.token, "STRATOFLOW_API": server.url}
        homes = iter(range(10**6))
        commands: dict[str, Callable[[], list[str]]] = {
            "--help": lambda: ["--help"],
            "apply": lambda: ["apply", str(flow)],
            "trigger": lambda: ["trigger", "startup"],
            "run (1 task)": lambda: ["run", str(flow), "--home", str(tmp / f"h{next(homes)}")],
        }
        samples: dict[str, dict[str, list[tuple[float, float]]]] = {
            c: {t: [] for t in trees} for c in commands
        }
        names = list(trees)
        for c, make_args in commands.items():
            for t, root in trees.items():  # warm the page cache: not measured
                sample(root, make_args(), {**env, **tree_env[t]})
            for i in range(args.repeat):
                for t in names[i % len(names) :] + names[: i % len(names)]:
                    samples[c][t].append(sample(trees[t], make_args(), {**env, **tree_env[t]}))
            print(f"  {c}: done", file=sys.stderr, flush=True)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    facts["loadavg at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())

    def med(c: str, t: str, k: int) -> float:
        return statistics.median(s[k] for s in samples[c][t]) * 1000

    print("\n".join(f"{k}: {v}" for k, v in facts.items()))
    print(f"\nmedians of {args.repeat} processes per command and tree; CPU = user+sys (wait4)\n")
    if len(trees) == 1:
        print("| command | CPU ms | wall ms |\n|---|---:|---:|")
        for c in commands:
            print(f"| `{c}` | {med(c, 'this', 0):.0f} | {med(c, 'this', 1):.0f} |")
    else:
        print(
            f"| command | CPU ms, {args.tree} | CPU ms, this tree | ratio | "
            f"wall ms, {args.tree} | wall ms, this tree |\n|---|---:|---:|---:|---:|---:|"
        )
        for c in commands:
            before, after = med(c, "tree", 0), med(c, "this", 0)
            print(
                f"| `{c}` | {before:.0f} | {after:.0f} | {after / before:.2f} | "
                f"{med(c, 'tree', 1):.0f} | {med(c, 'this', 1):.0f} |"
            )
    if args.json is not None:
        args.json.write_text(json.dumps({"facts": facts, "samples": samples}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
