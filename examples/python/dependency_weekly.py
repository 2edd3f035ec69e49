"""examples/dependency_weekly.yaml in Python, builder style: a weekly rollup that waits for
the last 7 days of daily_partition (examples/backfill_daily.yaml)."""

from __future__ import annotations

from stratoflow.sdk import Workflow, dependency, shell, upstream

with Workflow(
    "weekly_rollup",
    description="Rolls up last week's daily partitions once all seven have loaded",
    schedule={"cron": "0 6 * * 1", "timezone": "Europe/Berlin"},  # calendar days, DST included
) as weekly_rollup:
    wait_for_days = dependency(
        "wait_for_days",
        all=[upstream("daily_partition", "last7Days", task="load")],  # or any=[...]
        check_interval="5m",  # an upstream run's end wakes it too
        timeout="12h",  # then it fails, naming the days still missing
    )
    rollup = shell(
        "rollup",
        """\
echo "rolling up the week before {{ ds }}"
echo "week_ending={{ ds }}" >> "$STRATOFLOW_OUTPUT"
""",
        depends_on=[wait_for_days],
    )
