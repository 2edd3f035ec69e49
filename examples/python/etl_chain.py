"""examples/etl_chain.yaml in Python, TaskFlow style: @workflow and @task.

The body of ``transform`` is the python task's code, run on its own with ``params`` and
``outputs`` in scope. Passing ``extract.outputs.rows`` as a parameter makes it wait for
``extract``; in an f-string an output is just its template.
"""

from __future__ import annotations

import textwrap
from typing import Any

from stratoflow.sdk import shell, task, workflow


@task
def transform(params: dict[str, Any], outputs: dict[str, Any]) -> None:
    rows = int(params["rows"])
    if rows < int(params["min_rows"]):
        raise ValueError(f"only {rows} rows")
    outputs["doubled"] = rows * 2
    outputs["region"] = params["region"].upper()


@workflow(
    params={"region": "eu", "min_rows": 10},
    defaults={"retries": 1, "retry_delay": "5s", "timeout": "5m"},
)
def etl_chain() -> None:
    """Extract rows, transform them in Python, load a summary"""
    extract = shell(
        "extract",
        textwrap.dedent("""\
            # shell tasks write key=value lines to $STRATOFLOW_OUTPUT
            rows=$(( 40 + ${#STRATOFLOW_RUN_ID} % 5 ))
            echo "extracting {{ params.region }} for {{ ds }}: ${rows} rows"
            echo "rows=${rows}" >> "$STRATOFLOW_OUTPUT"
            echo "file=/tmp/sales_{{ ds_nodash }}.csv" >> "$STRATOFLOW_OUTPUT"
        """),
    )
    shaped = transform(rows=extract.outputs.rows)
    doubled, region = shaped.outputs.doubled, shaped.outputs.region
    shaped >> shell(
        "load",
        textwrap.dedent(f"""\
            echo "loading {doubled} rows for {region}"
            echo "loaded={doubled}" >> "$STRATOFLOW_OUTPUT"
        """),
    )
