"""Micro-benchmark of template rendering, the scheduler's hot path at every dispatch.

Renders a few ordinary templates (a plain command, one substitution, a task's typical command
with filters, a small loop, a whole task through ``engine.render_task``) many times with warm
caches and reports the median time per render in microseconds. Run it before and after a
change to ``stratoflow.templating`` and compare; it is a script, not a test (no timing is
asserted anywhere).

    PYTHONPATH=layers/core python benchmarks/bench_templating.py [--repeat 7] [--number 20000]
"""

from __future__ import annotations

import argparse
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


def cases() -> dict[str, Callable[[], Any]]:
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
        "render_task (whole task)": lambda: engine.render_task(SPEC, run, "load", upstream),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--json", help="write the medians (microseconds) to this file")
    args = parser.parse_args()
    medians: dict[str, float] = {}
    for name, fn in cases().items():
        fn()  # warm the caches
        samples = timeit.repeat(fn, repeat=args.repeat, number=args.number)
        medians[name] = statistics.median(samples) / args.number * 1e6
        print(f"{name:28s} {medians[name]:8.2f} us")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(medians, fh, indent=2)


if __name__ == "__main__":
    main()
