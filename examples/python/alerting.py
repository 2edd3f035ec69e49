"""examples/alerting.yaml in Python, builder style: alerts, an SLA and a timeout that warns.

The groups it names (data-oncall, data-team) are configured with `stratoflow alerts ...`,
not written here: see the YAML form's header.
"""

from __future__ import annotations

from stratoflow.sdk import Workflow, shell

with Workflow(
    "nightly_load",
    description="A load that pages when it fails or misses its SLA",
    sla="30m",  # the run still unfinished 30 minutes after it started: sla_miss
    alerts=[
        {"on": ["failure", "sla_miss", "recovered"], "group": "data-oncall"},
        {"on": ["retry", "timeout"], "group": "data-team"},
    ],
    params={"fail": "no"},
) as nightly_load:
    extract = shell(
        "extract",
        'echo "rows=1200" >> "$STRATOFLOW_OUTPUT"\n',
        retries=1,
        retry_delay="1s",
    )
    load = shell(
        "load",
        """\
echo "loading {{ tasks.extract.outputs.rows }} rows"
test "{{ params.fail }}" != yes || { echo "warehouse refused the load" >&2; exit 3; }
""",
        timeout="10m",
        on_timeout="warn",  # a timeout alert, and the load keeps running
        sla="20m",  # not done 20 minutes after the run started: sla_miss
    )
    extract >> load
