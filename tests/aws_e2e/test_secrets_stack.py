"""The canary on the whole AWS stack (moto): set through the api function, used by a shell
task on the runner, and found in no API response, state table item, lifecycle event,
execution input or history, or uploaded log; the task got the value."""

from __future__ import annotations

import hashlib
import json
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
"""


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
    [name] = stack.starts
    given = stack.execution_input(name)["task"]
    assert given["env"] == {"CANARY_ENV": "{{ secrets.canary }}"}
    assert given["params"]["p"] == "{{ secrets.canary }}"
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
