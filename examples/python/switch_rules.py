"""examples/switch_rules.yaml in Python: a switch, then trigger rules after a skip."""

from __future__ import annotations

from stratoflow.sdk import Workflow, case, python, shell, switch

with Workflow(
    "switch_rules",
    description="Route by volume, then clean up whatever happened",
    params={"volume": 120},
) as switch_rules:
    measure = python("measure", 'outputs["volume"] = int(params["volume"])\n')
    volume = measure.outputs.volume
    route = switch(
        "route",
        [case("{{ tasks.measure.outputs.volume | int > 100 }}", "big_load")],
        default=["small_load"],
    )
    loads = [
        shell("big_load", f'echo "bulk loading {volume} rows"'),
        shell("small_load", 'echo "row-by-row load"'),
    ]
    measure >> route >> loads
    loads >> shell(
        "cleanup",
        'echo "cleanup after {{ run.id }}"',
        trigger_rule="none_failed",  # one branch was skipped: that is fine
    )
    loads >> shell(
        "alert",
        'echo "a load failed in {{ run.id }}" >&2',
        trigger_rule="one_failed",  # runs only if a load failed; skipped otherwise
    )
