"""examples/scheduled.yaml in Python: a schedule, an HTTP check and a python callable.

``@task(callable=True)`` would name a function of this module; here the callable lives in
examples.lib.reports, and passing the function writes ``callable: examples.lib.reports:daily_report``.
"""

from __future__ import annotations

from examples.lib.reports import daily_report
from stratoflow.sdk import Workflow, http, python

scheduled_report = Workflow(
    "scheduled_report",
    description="A report on a schedule, with a python callable and an HTTP check",
    schedule={"cron": "*/2 * * * *", "timezone": "Europe/Paris", "catchup": False},
    max_active_runs=1,
    params={"api": "http://127.0.0.1:8321"},
)
health = http("health", "{{ params.api }}/health", expected_status=200, retries=2, retry_delay="2s")
report = python(
    "report",
    callable=daily_report,
    params={"status": health.outputs["body.status"], "day": "{{ ds }}"},
)
health >> report  # implied by the output in its params too
scheduled_report.add(health, report)
