"""The ``/alerts`` routes over the alert table on moto (what the API function serves on AWS):
channels and groups as the local server keeps them, bad input refused naming the field with
nothing stored, a test alert handed to the alert function, and the delivery log paged newest
first without losing a record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.aws.alerts import AwsAlertsApi
from stratoflow.alerts import AlertFacts, Planned
from stratoflow.api.app import create_app
from tests.aws_alerts.test_alert_function import Stack
from tests.unit.test_api_app import Api


@pytest.fixture
def api(stack: Stack, tmp_path: Path) -> tuple[Api, list[dict[str, Any]]]:
    invoked: list[dict[str, Any]] = []

    def invoke(payload: Any) -> None:  # Lambda's asynchronous invoke, done at once
        invoked.append(dict(payload))
        stack.invoke(json.loads(json.dumps(payload)))

    backend = AwsAlertsApi(stack.alerts, stack.clock, invoke, sleep=lambda _: None)
    app = create_app(stack.scheduler, alerts=backend)
    return Api(app, stack.scheduler, stack.dispatcher, tmp_path), invoked  # type: ignore[arg-type]


def test_channels_and_groups_round_trip_and_bad_input_changes_nothing(
    stack: Stack, api: tuple[Api, list[dict[str, Any]]]
) -> None:
    client, _ = api
    names = [c["name"] for c in client.call("GET", "/alerts/channels").body["channels"]]
    assert names == ["hook", "mail", "pd", "topic"]
    reply = client.call("PUT", "/alerts/channels/chat",
                        {"type": "slack", "url": "https://hooks.slack.test/T0/B0/secret"})  # fmt: skip
    assert reply.status == 400
    assert "url" in reply.text
    put = client.call("PUT", "/alerts/channels/chat",
                      {"type": "slack", "url": "{{ secrets.slack_hook }}"})  # fmt: skip
    assert put.status == 201
    assert put.body["settings"] == {"url": "{{ secrets.slack_hook }}"}
    assert client.call("PUT", "/alerts/channels/chat",
                       {"type": "slack", "url": "{{ secrets.slack_hook }}"}).status == 200  # fmt: skip
    missing = client.call("PUT", "/alerts/groups/chat", {"channels": ["chat", "nope"]})
    assert missing.status == 400
    assert "nope" in missing.text
    assert [g["name"] for g in client.call("GET", "/alerts/groups").body["groups"]] == ["oncall"]
    assert client.call("PUT", "/alerts/groups/chat", {"channels": ["chat"]}).status == 201
    busy = client.call("DELETE", "/alerts/channels/chat")
    assert busy.status == 409
    assert client.call("DELETE", "/alerts/groups/chat").status == 200
    assert client.call("DELETE", "/alerts/groups/chat").status == 404
    assert client.call("DELETE", "/alerts/channels/chat").status == 200
    groups = client.call("GET", "/alerts/groups").body["groups"]
    assert groups == [{"project": "default", "name": "oncall",
                       "channels": ["pd", "hook", "mail", "topic"]}]  # fmt: skip


def test_a_test_alert_is_sent_by_the_alert_function_and_listed(
    stack: Stack, api: tuple[Api, list[dict[str, Any]]]
) -> None:
    client, invoked = api
    reply = client.call("POST", "/alerts/groups/oncall/test")
    assert reply.status == 200
    statuses = {d["channel"]: d["status"] for d in reply.body["deliveries"]}
    assert statuses == {"pd": "sent", "hook": "sent", "mail": "sent", "topic": "sent"}
    assert {p["channel"] for p in invoked} == {"pd", "hook", "mail", "topic"}
    (hook,) = stack.recorder.on("/hook")
    assert hook.body["event"] == "test"
    listed = client.call("GET", "/alerts", query={"status": "sent"}).body["deliveries"]
    assert len(listed) == 4
    assert client.call("POST", "/alerts/groups/nobody/test").status == 404


def test_the_delivery_log_pages_newest_first_and_keeps_records_made_in_one_microsecond(
    stack: Stack,
) -> None:
    at = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
    for i in range(7):  # records 2, 3 and 4 share one creation time
        when = at + timedelta(seconds=min(i, 2) if i < 5 else i)
        facts = AlertFacts("failure", "default", "nightly", run_id=f"r{i}")
        stack.alerts.add(Planned(f"failure:r{i}", "oncall", facts), "hook", when)
    seen: list[str] = []
    cursor = None
    sizes: list[int] = []
    while True:
        page, cursor = stack.alerts.list_deliveries("default", limit=2, before=cursor)
        seen += [d.key for d in page]
        sizes.append(len(page))
        if cursor is None:
            break
    assert sorted(seen) == sorted(f"failure:r{i}" for i in range(7))
    assert len(seen) == 7
    assert seen[0] == "failure:r6"
    assert sizes == [2, 3, 2]  # the three made at once are never split across pages
