"""A project's variables, alert channels, alert groups and connections on DynamoDB stay within
their limits whatever the concurrent writers (``adapters.aws.counted``), on moto.

The races are made deterministic: a botocore ``before-call`` hook on the writer's client lets
a second writer do its whole write just before one of the first writer's requests goes out,
the interleaving two API requests at once can produce. Before the counter item, a writer
counted with a Query and then put: a second writer slipping in between took the project past
its limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

import stratoflow.adapters.aws.alerts as aws_alerts
import stratoflow.adapters.aws.connections as aws_connections
import stratoflow.adapters.aws.dynamo_variables as dynamo_variables
import stratoflow.variables as variables
from stratoflow.adapters.aws.alerts import ALERT_TABLE_SCHEMA, DynamoAlertStore
from stratoflow.adapters.aws.connections import DynamoConnectionStore
from stratoflow.adapters.aws.counted import COUNTER_PREFIX
from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.alerts import Channel
from stratoflow.connections import Connection, MissingConnection
from stratoflow.errors import InvalidInput, NotFound
from stratoflow.variables import Variable

T0 = datetime(2026, 12, 6, tzinfo=UTC)
LIMIT = 2


@dataclass
class Kind:
    """One counted kind through its real adapter: its partition, its prefix, and how a
    writer adds, deletes and lists."""

    pk: str
    prefix: str
    add: Callable[[str], bool]
    delete: Callable[[str], object]
    names: Callable[[], list[str]]
    table: str


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        ddb = boto3.client(
            "dynamodb", region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        create_table(ddb, "state", stream=False)
        ddb.create_table(**ALERT_TABLE_SCHEMA, TableName="alerts")
        yield ddb


def _variables(client: Any, monkeypatch: pytest.MonkeyPatch) -> Kind:
    monkeypatch.setattr(dynamo_variables, "MAX_VARIABLES", LIMIT)
    monkeypatch.setattr(variables, "MAX_VARIABLES", LIMIT)  # its message
    store = DynamoStore("state", client=client)
    return Kind(
        "VAR#p", "V#",
        lambda name: store.put_variable(Variable("p", name, "v", T0, "u")),
        lambda name: store.delete_variable("p", name),
        lambda: [v.name for v in store.list_variables("p")],
        "state",
    )  # fmt: skip


def _channels(client: Any, monkeypatch: pytest.MonkeyPatch) -> Kind:
    monkeypatch.setattr(aws_alerts, "MAX_CHANNELS", LIMIT)
    store = DynamoAlertStore("alerts", client)
    return Kind(
        "P#p", "CH#",
        lambda name: store.put_channel(Channel("p", name, "webhook", {"url": "https://x"}), T0),
        lambda name: store.delete_channel("p", name),
        lambda: [c.name for c in store.list_channels("p")],
        "alerts",
    )  # fmt: skip


def _groups(client: Any, monkeypatch: pytest.MonkeyPatch) -> Kind:
    monkeypatch.setattr(aws_alerts, "MAX_GROUPS", LIMIT)
    store = DynamoAlertStore("alerts", client)
    store.put_channel(Channel("p", "ch", "webhook", {"url": "https://x"}), T0)
    return Kind(
        "P#p", "G#",
        lambda name: store.set_group("p", name, ["ch"], T0),
        lambda name: store.delete_group("p", name),
        lambda: sorted(store.list_groups("p")),
        "alerts",
    )  # fmt: skip


def _connections(client: Any, monkeypatch: pytest.MonkeyPatch) -> Kind:
    monkeypatch.setattr(aws_connections, "MAX_CONNECTIONS", LIMIT)
    store = DynamoConnectionStore("alerts", client)
    return Kind(
        "P#p", "CN#",
        lambda name: store.put(Connection("p", name, "athena", {"database": "d"}), T0),
        lambda name: store.delete("p", name),
        lambda: [c.name for c in store.list("p")],
        "alerts",
    )  # fmt: skip


KINDS = {"variables": _variables, "channels": _channels, "groups": _groups,
         "connections": _connections}  # fmt: skip


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest, client: Any, monkeypatch: pytest.MonkeyPatch) -> Kind:
    return KINDS[request.param](client, monkeypatch)


def _stored(client: Any, kind: Kind) -> tuple[list[str], int | None]:
    """The names stored (read from the table itself) and the counter's value (None: none)."""
    items = client.query(
        TableName=kind.table, ConsistentRead=True,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues={":pk": {"S": kind.pk}, ":prefix": {"S": kind.prefix}},
    )["Items"]  # fmt: skip
    counter = client.get_item(
        TableName=kind.table, ConsistentRead=True,
        Key={"pk": {"S": kind.pk}, "sk": {"S": COUNTER_PREFIX + kind.prefix}},
    ).get("Item")  # fmt: skip
    names = sorted(i["sk"]["S"][len(kind.prefix) :] for i in items)
    return names, None if counter is None else int(counter["n"]["N"])


def _before_writes(client: Any, act: Callable[[int], object]) -> Callable[[], None]:
    """Call ``act(n)`` before the n-th write request (from 0) the client sends from now on,
    except those ``act`` itself sends; returns what removes the hook."""
    state = {"n": 0, "inside": False}

    def hook(**_: Any) -> None:
        if state["inside"]:
            return
        state["inside"] = True
        try:
            act(state["n"])
        finally:
            state["n"] += 1
            state["inside"] = False

    events = [f"before-call.dynamodb.{op}"
              for op in ("PutItem", "TransactWriteItems", "DeleteItem", "UpdateItem")]  # fmt: skip
    for event in events:
        client.meta.events.register(event, hook)

    def remove() -> None:
        for event in events:
            client.meta.events.unregister(event, hook)

    return remove


def test_limit_counts_replaces_and_deletes(client: Any, kind: Kind) -> None:
    assert kind.add("a") is True
    assert kind.add("b") is True
    with pytest.raises(InvalidInput, match=f"{LIMIT}"):
        kind.add("c")
    assert kind.add("a") is False  # a replacement needs no room
    assert kind.names() == ["a", "b"]  # the counter item is not listed
    assert _stored(client, kind) == (["a", "b"], 2)
    kind.delete("a")
    assert _stored(client, kind) == (["b"], 1)
    assert kind.add("c") is True
    assert _stored(client, kind) == (["b", "c"], 2)


def test_deleting_what_is_not_there_changes_no_count(client: Any, kind: Kind) -> None:
    kind.add("a")
    # the variables' delete answers False; the others say what is missing
    with pytest.raises((NotFound, MissingConnection)) if kind.prefix != "V#" else nullcontext():
        assert not kind.delete("nope")
    assert _stored(client, kind) == (["a"], 1)


@pytest.mark.parametrize("slip_in_before", [0, 1, 2, 3])
def test_a_writer_slipping_in_cannot_pass_the_limit(
    client: Any, kind: Kind, slip_in_before: int
) -> None:
    """One slot left; before the first writer's n-th write request another writer takes it.
    Exactly one of the two gets in, whatever n."""
    kind.add("a")
    remove = _before_writes(client, lambda n: kind.add("rival") if n == slip_in_before else None)
    try:
        try:
            added = kind.add("mine")
        except InvalidInput:
            added = False
    finally:
        remove()
    names, counted = _stored(client, kind)
    assert len(names) <= LIMIT
    assert counted == len(names)
    assert ("mine" in names) == added
    assert len(names) == LIMIT  # one of the two got the slot


def test_writers_that_all_find_no_counter_agree_on_one(client: Any, kind: Kind) -> None:
    """Items an older version wrote have no counter. Two writers each find none; the second
    makes it first (with its own item in it) and the first's count of the items is
    discarded: the counter equals the items, and the limit still holds."""
    client.put_item(TableName=kind.table, Item={
        "pk": {"S": kind.pk}, "sk": {"S": kind.prefix + "old"}, **_attributes(kind)})  # fmt: skip
    assert _stored(client, kind) == (["old"], None)

    def rival(n: int) -> None:
        if n == 0:
            kind.add("rival")  # finds no counter either, makes it, takes the last slot

    remove = _before_writes(client, rival)
    try:
        with pytest.raises(InvalidInput):
            kind.add("mine")
    finally:
        remove()
    assert _stored(client, kind) == (["old", "rival"], 2)


def test_a_delete_meanwhile_makes_room(client: Any, kind: Kind) -> None:
    kind.add("a")
    kind.add("b")
    remove = _before_writes(client, lambda n: kind.delete("a") if n == 1 else None)
    try:
        assert kind.add("c") is True  # refused by the counter, then room was made: in
    finally:
        remove()
    assert _stored(client, kind) == (["b", "c"], 2)


def _attributes(kind: Kind) -> dict[str, Any]:
    """What the adapter's reader needs of an item an older version wrote."""
    now = {"S": T0.isoformat()}
    if kind.prefix == "V#":
        return {"value": {"S": "v"}, "updated_at": now, "updated_by": {"S": "u"}}
    if kind.prefix == "G#":
        return {"channels": {"S": '["ch"]'}, "updated_at": now}
    settings = '{"database": "d"}' if kind.prefix == "CN#" else '{"url": "https://x"}'
    return {"type": {"S": "athena" if kind.prefix == "CN#" else "webhook"},
            "settings": {"S": settings}, "updated_at": now}  # fmt: skip
