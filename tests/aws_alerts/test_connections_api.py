"""The ``/connections`` routes over the alert table on moto (what the API function serves on
AWS): connections kept as the local server keeps them, next to the alert channels without
touching them; a literal password refused naming the setting with nothing stored; a missing
connection a 404 naming it; the test saying plainly that it does not run on AWS yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratoflow.adapters.aws.connections import AwsConnectionsApi, DynamoConnectionStore
from stratoflow.api.app import create_app
from tests.aws_alerts.test_alert_function import Stack
from tests.unit.test_api_app import Api


@pytest.fixture
def api(stack: Stack, tmp_path: Path) -> Api:
    store = DynamoConnectionStore(stack.alerts.table, stack.alerts.client)
    app = create_app(stack.scheduler, connections=AwsConnectionsApi(store, stack.clock))
    return Api(app, stack.scheduler, stack.dispatcher, tmp_path)  # type: ignore[arg-type]


def test_connections_round_trip_beside_the_channels(stack: Stack, api: Api) -> None:
    channels = [c.name for c in stack.alerts.list_channels("default")]
    literal = api.call("PUT", "/connections/wh", {"type": "postgresql", "settings": {
        "url": "postgresql://etl:hunter2@db.example:5432/dw"}})  # fmt: skip
    assert literal.status == 400
    assert "settings.url" in literal.text
    assert "hunter2" not in literal.text
    assert api.call("GET", "/connections").body == {"connections": []}
    body = {"type": "postgresql", "settings": {"url": "postgresql://etl@db.example:5432/dw",
                                               "password": "{{ secrets.wh_pw }}"}}  # fmt: skip
    assert api.call("PUT", "/connections/wh", body).status == 201
    assert api.call("PUT", "/connections/wh", body).status == 200
    lake = {"type": "athena", "settings": {"database": "sales", "workgroup": "etl"}}
    assert api.call("PUT", "/connections/lake", lake).status == 201
    listed = api.call("GET", "/connections").body["connections"]
    assert [(c["name"], c["type"]) for c in listed] == [("lake", "athena"), ("wh", "postgresql")]
    assert api.call("GET", "/connections/wh").body["settings"] == body["settings"]
    # the channels are where they were; the connections are not channels
    assert [c.name for c in stack.alerts.list_channels("default")] == channels
    tested = api.call("POST", "/connections/wh/test")
    assert tested.status == 200
    assert tested.body["ok"] is False
    assert "cannot be tested from the API on AWS" in tested.body["message"]
    assert api.call("DELETE", "/connections/wh").status == 200
    gone = api.call("GET", "/connections/wh")
    assert gone.status == 404
    assert "connection 'wh' is not defined in project 'default'" in gone.text
    assert api.call("DELETE", "/connections/wh").status == 404
    assert api.call("GET", "/connections", query={"project": "other"}).body == {"connections": []}
