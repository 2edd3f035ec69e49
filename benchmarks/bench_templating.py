"""Micro-benchmark of template rendering, the scheduler's hot path at every dispatch.

Renders a few ordinary templates (a plain command, one substitution, a task's typical command
with filters, a small loop, a whole task through ``engine.render_task``) many times with warm
caches and reports the best and the median time per render in microseconds (the best is
the steadier figure on a shared machine). Run it before and after a
change to ``stratoflow.templating`` and compare; it is a script, not a test (no timing is
asserted anywhere).

    PYTHONPATH=layers/core python benchmarks/bench_templating.py [--repeat 7] [--number 20000]

``--baseline FILE`` loads another version of ``templating.py`` (``git show
REV:layers/core/stratoflow/templating.py > /tmp/old.py``) and times its ``render`` on the same
templates, interleaved repeat by repeat with the current one, so the load of a shared machine
hits both alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import textwrap
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from stratoflow import engine
from stratoflow.model import load_workflow
from stratoflow.templating import render

LOGICAL = datetime(2026, 3, 7, 2, 0, tzinfo=UTC)

SPEC = load_workflow(
    textwrap.dedent(
        """
        name: sales
        params: {region: eu, tables: [a, b, c]}
        tasks:
          extract: {type: shell, command: x}
          load:
            type: shell
            depends_on: [extract]
            params: {rows: "{{ tasks.extract.outputs.rows }}"}
            env: {TARGET: "{{ params.region }}-{{ ds_nodash }}"}
            command: >-
              load --rows {{ params.rows | int + 1 }} --region {{ params.region | upper }}
              --run {{ run.id }} --day {{ ds }} --home "${HOME}"
        """
    )
)


def cases(render: Callable[[str, Any], str] = render) -> dict[str, Callable[[], Any]]:
    run, _ = engine.new_run(
        SPEC, run_id="sales-1", version=1, params={}, logical_date=LOGICAL, now=LOGICAL
    )
    upstream = {"extract": {"rows": "42"}}
    ctx = engine.template_context(SPEC, run, "load", upstream)
    typical = SPEC.workflow.tasks["load"].templated_fields()["command"]
    loop = "{% for t in params.tables %}copy {{ t }} {{ ds }};{% endfor %}"
    return {
        "plain (no template)": lambda: render("echo hello ${HOME}", ctx),
        "one substitution": lambda: render("echo {{ params.region }}", ctx),
        "typical command": lambda: render(typical, ctx),
        "small loop": lambda: render(loop, ctx),
    }


def whole_task() -> Callable[[], Any]:
    run, _ = engine.new_run(
        SPEC, run_id="sales-1", version=1, params={}, logical_date=LOGICAL, now=LOGICAL
    )
    return lambda: engine.render_task(SPEC, run, "load", {"extract": {"rows": "42"}})


def load_render(path: str) -> Callable[[str, Any], str]:
    spec = importlib.util.spec_from_file_location("baseline_templating", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    baseline: Callable[[str, Any], str] = module.render
    return baseline


def timed(fn: Callable[[], Any], number: int) -> float:
    return timeit.timeit(fn, number=number) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--baseline", help="another templating.py to time side by side")
    parser.add_argument("--json", help="write the figures (microseconds) to this file")
    args = parser.parse_args()
    current = cases()
    current["render_task (whole task)"] = whole_task()
    baseline = cases(load_render(args.baseline)) if args.baseline else {}
    samples: dict[str, list[float]] = {name: [] for name in current}
    base_samples: dict[str, list[float]] = {name: [] for name in baseline}
    for fn in [*current.values(), *baseline.values()]:
        fn()  # warm the caches
    for _ in range(args.repeat):
        for name, fn in current.items():
            samples[name].append(timed(fn, args.number))
            if name in baseline:
                base_samples[name].append(timed(baseline[name], args.number))
    figures: dict[str, dict[str, float]] = {}
    header = f"{'':28s} {'best':>8s}    {'median':>8s}"
    print(header + (f"    {'baseline best':>14s} {'median':>8s}" if baseline else ""))
    for name, values in samples.items():
        figures[name] = {"best": min(values), "median": statistics.median(values)}
        line = f"{name:28s} {min(values):8.2f} us {statistics.median(values):8.2f} us"
        if name in base_samples:
            old = base_samples[name]
            figures[name] |= {"baseline_best": min(old), "baseline_median": statistics.median(old)}
            line += f" {min(old):11.2f} us {statistics.median(old):8.2f} us"
        print(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
