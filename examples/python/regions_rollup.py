"""examples/regions_rollup.yaml in Python: two sub-workflows, then a total of their outputs.

``eu.outputs.load.loaded`` is the template ``{{ tasks.eu.outputs.load.loaded }}``: the output
``loaded`` of the task ``load`` of the child run that ``eu`` started.
"""

from __future__ import annotations

import textwrap

from stratoflow.sdk import Workflow, shell, subworkflow

with Workflow(
    "regions_rollup",
    description="The ETL chain for two regions as sub-workflows, then a total",
    params={"min_rows": 10},
) as regions_rollup:
    eu, us = (
        subworkflow(
            region,
            "etl_chain",  # a workflow of this project; "project/name" for another
            params={"region": region, "min_rows": "{{ params.min_rows }}"},
        )
        for region in ("eu", "us")
    )
    shell(
        "total",
        textwrap.dedent(f"""\
            # a child's output: tasks.<sub-workflow task>.outputs.<child task>.<key>
            total=$(( {eu.outputs.load.loaded} + {us.outputs.load.loaded} ))
            echo "loaded ${{total}} rows in all"
            echo "total=${{total}}" >> "$STRATOFLOW_OUTPUT"
        """),
        depends_on=[eu, us],
    )
