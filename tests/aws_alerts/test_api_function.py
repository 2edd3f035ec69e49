"""The API function's ``/alerts`` routes as deployed (functions/api/app.py against the stack's
resources on moto, tests/aws_e2e's harness): channels and groups land in the alert table,
credentials only as references, and nothing is stored for a refused request. A connection
test goes from the API function to the advance function to the project's runner function,
each invoked by name (the harness answers an invocation with the function's handler)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto.athena.models import athena_backends
from moto.core import DEFAULT_ACCOUNT_ID

from stratoflow.adapters.aws import runner
from stratoflow.adapters.aws.projects import project_digest
from stratoflow.adapters.aws.secrets import SecretsManagerSource
from tests.aws_e2e.harness import REGION, Stack, aws_stack


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        yield built


def test_alert_channels_and_groups_through_the_api_function(deployed: Stack) -> None:
    status, reply = deployed.api("PUT", "/alerts/channels/pd",
                                 {"type": "pagerduty", "settings": {"routing_key": "R0UTING"}})  # fmt: skip
    assert status == 400, reply
    assert "routing_key" in str(reply)
    table = boto3.client("dynamodb", region_name=REGION)
    assert table.scan(TableName="sf-alerts")["Count"] == 0
    status, reply = deployed.api("PUT", "/alerts/channels/pd",
                                 {"type": "pagerduty",
                                  "settings": {"routing_key": "{{ secrets.pd }}"}})  # fmt: skip
    assert status == 201, reply
    status, reply = deployed.api("PUT", "/alerts/groups/oncall", {"channels": ["pd"]})
    assert status == 201, reply
    status, reply = deployed.api("GET", "/alerts/channels")
    assert reply["channels"] == [{"project": "default", "name": "pd", "type": "pagerduty",
                                  "settings": {"routing_key": "{{ secrets.pd }}"}}]  # fmt: skip
    status, reply = deployed.api("GET", "/alerts/groups")
    assert reply["groups"] == [{"project": "default", "name": "oncall", "channels": ["pd"]}]
    status, reply = deployed.api("GET", "/alerts")
    assert (status, reply) == (200, {"deliveries": [], "next": None})


def test_a_connection_test_runs_in_the_projects_runner_through_advance(deployed: Stack) -> None:
    boto3.client("athena", region_name=REGION).create_work_group(Name="etl")
    secrets = SecretsManagerSource(boto3.client("secretsmanager", region_name=REGION))
    deployed.lambdas.handlers["sf-advance"] = lambda event: deployed.call("advance", event)
    deployed.lambdas.handlers["RunnerFunction"] = lambda event: runner.handle(
        event, None, s3=None, secrets=secrets
    )
    lake = {"type": "athena", "settings": {"workgroup": "etl", "database": "raw"}}
    status, reply = deployed.api("PUT", "/connections/lake", lake)
    assert status == 201, reply
    status, reply = deployed.api("POST", "/connections/lake/test")
    assert status == 200, reply
    assert reply["ok"] is True, reply
    assert reply["message"].startswith("workgroup etl (ENABLED) ran SELECT 1 in database raw")
    # the API function asked advance, which asked the project's own runner function
    [request] = [p for n, p in deployed.lambdas.calls if n == "sf-advance"]
    assert request == {"action": "test_connection", "project": "default",
                       "connection": {"name": "lake", **lake}}  # fmt: skip
    assert deployed.lambdas.runners == [f"sf-r-{project_digest('default')}"]
    # its results under the project's prefix of the stack's bucket, as an sql task's
    [query] = athena_backends[DEFAULT_ACCOUNT_ID][REGION].executions.values()
    bucket = deployed.env["STRATOFLOW_BUCKET"]
    assert query.config["OutputLocation"].startswith(f"s3://{bucket}/athena/default/")
    # a missing secret is named (a PostgreSQL connection: its password is a reference)
    pg = {"type": "postgresql", "settings": {"url": "postgresql://etl@db.example:5432/dw",
                                             "password": "{{ secrets.wh_pw }}"}}  # fmt: skip
    assert deployed.api("PUT", "/connections/wh", pg)[0] == 201
    status, reply = deployed.api("POST", "/connections/wh/test")
    assert (status, reply["ok"]) == (200, False)
    assert "wh_pw" in reply["message"]
