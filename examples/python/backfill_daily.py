"""examples/backfill_daily.yaml in Python, builder style: a daily partition load to backfill
with `stratoflow backfill daily_partition --start ... --end ...`."""

from __future__ import annotations

from stratoflow.sdk import Workflow, python, shell

with Workflow(
    "daily_partition",
    description="Loads one day's partition; backfill it over a range of past days",
    schedule={"cron": "0 3 * * *", "timezone": "UTC"},  # one backfill run per firing
    max_active_runs=2,  # backfill runs count too: never more than 2 at once
    params={"table": "sales"},
) as daily_partition:
    extract = shell(
        "extract",
        """\
echo "extracting {{ params.table }} for {{ ds }}"
echo "rows=$(( ${#TABLE_NAME} * 10 ))" >> "$STRATOFLOW_OUTPUT"
""",
        env={"TABLE_NAME": "{{ params.table }}"},
    )
    load = python(
        "load",
        "outputs[\"partition\"] = f\"{params['day']}: {params['rows']} rows\"\n",
        params={"rows": extract.outputs.rows, "day": "{{ ds_nodash }}"},
    )
