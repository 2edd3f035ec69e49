"""The API function's ``/alerts`` routes as deployed (functions/api/app.py against the stack's
resources on moto, tests/aws_e2e's harness): channels and groups land in the alert table,
credentials only as references, and nothing is stored for a refused request."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

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
