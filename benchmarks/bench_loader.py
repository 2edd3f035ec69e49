"""What the YAML loader's bounds cost on an ordinary file, and what a hostile one costs.

    PYTHONPATH=layers/core python benchmarks/bench_loader.py [--tasks 10000] [--repeat 5]

For a workflow of N tasks (one chain, each task with params) it times, best of ``--repeat``:
libyaml composing the node graph, the bounds walk (``check_bounds``), and the whole
``load_yaml`` (compose + bounds + key lines + construct); the bounds' share is the figure that
must stay small. Then the attack's files: their time to be refused and the peak of traced
memory.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

from stratoflow.errors import InvalidInput
from stratoflow.model._loader import _Loader, check_bounds, load_yaml


def ordinary(tasks: int) -> str:
    lines = ["name: big", "tasks:"]
    for i in range(tasks):
        dep = f", depends_on: [t{i - 1}]" if i else ""
        lines.append(
            f"  t{i}: {{type: shell, command: 'echo {i} >> $STRATOFLOW_OUTPUT', retries: 1"
            f"{dep}, params: {{a: {i}, b: x}}}}"
        )
    return "\n".join(lines) + "\n"


def bomb(mapping: bool) -> str:
    if mapping:
        lines = ["  b0: &b0 {" + ", ".join(f"k{j}: x" for j in range(9)) + "}"]
        lines += [
            f"  b{i}: &b{i} {{" + ", ".join(f"k{j}: *b{i - 1}" for j in range(9)) + "}"
            for i in range(1, 9)
        ]
    else:
        lines = ["  b0: &b0 [" + ", ".join(["x"] * 9) + "]"]
        lines += [f"  b{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "name: bomb\nparams:\n" + "\n".join(lines) + "\ntasks:\n  t: {type: shell}\n"


def best(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    text = ordinary(args.tasks)
    node = _Loader(text).get_single_node()
    assert node is not None
    compose = best(args.repeat, lambda: _Loader(text).get_single_node())
    bounds = best(args.repeat, lambda: check_bounds(node))
    whole = best(args.repeat, lambda: load_yaml(text))
    print(f"{args.tasks} tasks, {len(text):,} bytes (best of {args.repeat}):")
    print(f"  compose (libyaml)   {compose * 1000:8.1f} ms")
    print(f"  bounds walk         {bounds * 1000:8.1f} ms  ({bounds / whole:.1%} of load_yaml)")
    print(f"  load_yaml, in all   {whole * 1000:8.1f} ms")

    hostile = {"alias bomb (9x9)": bomb(False), "mapping alias bomb (9x9)": bomb(True)}
    for name, source in hostile.items():
        tracemalloc.start()
        started = time.perf_counter()
        try:
            load_yaml(source)
        except InvalidInput as exc:
            outcome = str(exc)[:60]
        else:
            outcome = "ACCEPTED"
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"  {name:26} {len(source)} bytes: refused in {elapsed * 1000:.1f} ms, "
              f"peak {peak / 1024:.0f} KiB ({outcome}...)")  # fmt: skip


if __name__ == "__main__":
    main()
