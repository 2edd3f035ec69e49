"""The canary on the whole AWS stack (moto): set through the api function, used by a shell
task on the runner and by a batch task's command and env (the wrapper: ECS injects it), and
found in no API response, state table item, lifecycle event, execution input or history,
uploaded log, submitted Batch job or job definition; each task got the value."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from stratoflow.adapters.aws import runner as aws_runner
from stratoflow.adapters.aws.secrets import SecretsManagerSource
from tests.aws_e2e.harness import REGION, Stack, aws_stack

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:No application metrics")]

CANARY = f"stack-canary-{uuid.uuid4().hex}"
DIGEST = hashlib.sha256(CANARY.encode()).hexdigest()
WORKFLOW = """
name: canary
tasks:
  use:
    type: shell
    env: {CANARY_ENV: "{{ secrets.canary }}"}
    params: {p: "{{ secrets.canary }}"}
    command: >-
      printf %s "$CANARY_ENV" | sha256sum | cut -c1-64 | sed 's/^/got=/' >> "$STRATOFLOW_OUTPUT";
      echo "printed {{ secrets.canary }} and {{ params.p }}"
  job:
    type: batch
    image: example.org/etl:1
    params: {p: "{{ secrets.canary }}"}
    env: {DSN: "postgres://etl:{{ secrets.canary }}@db/dw", MODE: full}
    command: [PYTHON, "-c", REPORT, "--password={{ secrets.canary }}", "{{ params.p }}", "$(x)"]
"""
# what the batch task's command runs (played here as the container): its argv and DSN
REPORT = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['DSN']]))"
WORKFLOW = WORKFLOW.replace("PYTHON", json.dumps(sys.executable)).replace(
    "REPORT", json.dumps(REPORT)
)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        yield built


def test_the_canary_on_the_aws_stack(stack: Stack) -> None:
    manager = boto3.client("secretsmanager", region_name=REGION)
    s3 = stack.counted_client("s3")
    stack.lambdas.handlers["RunnerFunction"] = lambda attempt: aws_runner.handle(
        attempt, None, s3=s3, secrets=SecretsManagerSource(manager, "stratoflow/")
    )
    events = stack.subscribe_lifecycle_events()
    seen: list[Any] = []

    def api(method: str, path: str, body: Any = None, **query: str) -> Any:
        status, reply = stack.api(method, path, body, query or None)
        seen.append(reply)
        assert status < 300, (status, reply)
        return reply

    assert api("PUT", "/secrets/canary", {"value": CANARY}, project="default")["created"]
    stored = manager.get_secret_value(SecretId="stratoflow/default/canary")["SecretString"]
    assert stored == CANARY
    assert api("GET", "/secrets", project="default")["secrets"] == [
        {"project": "default", "name": "canary"}
    ]
    api("POST", "/workflows", {"source": WORKFLOW})
    run_id = api("POST", "/workflows/canary/runs", {})["run"]["id"]
    assert stack.deliver_kicks() == 1
    assert stack.run_ends(run_id) == "succeeded"

    task = api("GET", f"/runs/{run_id}")["tasks"]["use"]
    assert task["outputs"] == {"got": DIGEST}
    assert api("GET", f"/runs/{run_id}/tasks/use/attempts/1/log") == "printed *** and ***\n"
    given = next(
        stack.execution_input(name)["task"]
        for name in stack.starts
        if stack.execution_input(name)["task_id"] == "use"
    )
    assert given["env"] == {"CANARY_ENV": "{{ secrets.canary }}"}
    assert given["params"]["p"] == "{{ secrets.canary }}"
    # the batch job as submitted: names and ${...} expansions; the container (ECS sets the
    # job definition's secrets, then runs the command) gets the value
    [job] = [
        stack.batch.jobs[name]
        for name, env in stack.batch.submitted
        if env.get("STRATOFLOW_TASK_ID") == "job"
    ]
    submitted = [job.describe(), job.job_definition.describe()]
    seen.append(submitted)
    container = job.describe()["container"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["MODE"] == "full"
    assert "DSN" not in env
    env["PATH"] = os.environ["PATH"]
    for secret in job.job_definition.describe()["containerProperties"]["secrets"]:
        env[secret["name"]] = manager.get_secret_value(SecretId=secret["valueFrom"])["SecretString"]
    done = subprocess.run(container["command"], env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [
        [f"--password={CANARY}", CANARY, "$(x)"],
        f"postgres://etl:{CANARY}@db/dw",
    ]
    api("GET", "/runs", project="default")
    api("GET", f"/runs/{run_id}/timeline")
    api("DELETE", "/secrets/canary", project="default")
    assert api("GET", "/secrets", project="default")["secrets"] == []

    table = boto3.client("dynamodb", region_name=REGION)
    items = [
        item
        for page in table.get_paginator("scan").paginate(TableName=stack.settings.table)
        for item in page["Items"]
    ]
    assert items, "the scan found the run's items"
    everything = json.dumps([seen, items, events(), stack.histories()], default=str)
    assert run_id in everything  # the dump holds the run: the check below can fail
    assert CANARY not in everything
