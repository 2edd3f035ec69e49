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
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

import stratoflow.adapters.aws.alerts as aws_alerts
import stratoflow.adapters.aws.connections as aws_connections
import stratoflow.adapters.aws.dynamo_variables as dynamo_variables
import stratoflow.variables as variables
from stratoflow.adapters.aws import counted
from stratoflow.adapters.aws.alerts import ALERT_TABLE_SCHEMA, DynamoAlertStore
from stratoflow.adapters.aws.connections import DynamoConnectionStore
from stratoflow.adapters.aws.counted import COUNTER_PREFIX, counter_key
from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.alerts import Channel
from stratoflow.connections import Connection, MissingConnection
from stratoflow.errors import InvalidInput, NotFound, Unavailable
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
        TableName=kind.table, ConsistentRead=True, Key=counter_key(kind.pk, kind.prefix)
    ).get("Item")
    names = sorted(i["sk"]["S"][len(kind.prefix) :] for i in items)
    return names, None if counter is None else int(counter["n"]["N"])


Request = tuple[str, dict[str, Any]]  # an operation's name and its parameters


class SlipIn:
    """Runs ``act`` once, just before the first request of the client that ``when`` picks
    (requests ``act`` sends itself excepted), and keeps the trace of what the client sent."""

    def __init__(self, client: Any, when: Callable[[str, dict[str, Any]], bool],
                 act: Callable[[], object]) -> None:  # fmt: skip
        self.client, self.when, self.act = client, when, act
        self.ran = False
        self.trace: list[str] = []
        self._inside = False

    def _hook(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if self._inside:
            return
        self.trace.append(model.name)
        if not self.ran and self.when(model.name, params):
            self._inside, self.ran = True, True
            try:
                self.act()
            finally:
                self._inside = False

    def __enter__(self) -> SlipIn:
        self.client.meta.events.register("before-parameter-build.dynamodb", self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.meta.events.unregister("before-parameter-build.dynamodb", self._hook)


def _op(name: str, *, counter: bool | None = None) -> Callable[[str, dict[str, Any]], bool]:
    """Picks a request of operation ``name`` (on the counter item, or not, if ``counter``
    says)."""

    def pick(op: str, params: dict[str, Any]) -> bool:
        on_counter = str(params.get("Item", params.get("Key", {})).get("pk", {}).get("S", ""))
        return op == name and (counter is None or on_counter.startswith(COUNTER_PREFIX) == counter)

    return pick


def test_limit_counts_replaces_and_deletes(client: Any, kind: Kind) -> None:
    assert kind.add("a") is True
    assert kind.add("b") is True
    with pytest.raises(InvalidInput, match=f"{LIMIT}"):
        kind.add("c")
    assert kind.add("a") is False  # a replacement needs no room
    assert kind.names() == ["a", "b"]
    assert _stored(client, kind) == (["a", "b"], 2)
    kind.delete("a")
    assert _stored(client, kind) == (["b"], 1)
    assert kind.add("c") is True
    assert _stored(client, kind) == (["b", "c"], 2)


def test_the_counter_is_not_in_the_items_partition(client: Any, kind: Kind) -> None:
    """An older version lists a project's variables by its partition alone: the counter
    must not be among them."""
    kind.add("a")
    everything = client.query(
        TableName=kind.table, ConsistentRead=True, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": kind.pk}},
    )["Items"]  # fmt: skip
    assert not [i for i in everything if COUNTER_PREFIX in i["sk"]["S"]]
    assert _stored(client, kind) == (["a"], 1)


def test_deleting_what_is_not_there_changes_no_count(client: Any, kind: Kind) -> None:
    kind.add("a")
    # the variables' delete answers False; the others say what is missing
    with pytest.raises((NotFound, MissingConnection)) if kind.prefix != "V#" else nullcontext():
        assert not kind.delete("nope")
    assert _stored(client, kind) == (["a"], 1)


@pytest.mark.parametrize("slip_in_before", ["PutItem", "TransactWriteItems"])
def test_a_writer_slipping_in_cannot_pass_the_limit(
    client: Any, kind: Kind, slip_in_before: str
) -> None:
    """One slot left; another writer takes it just before the first writer's first write
    (where a count made before it goes stale: the old race), or just before its creating
    transaction. The first is refused, and the project holds exactly its limit."""
    kind.add("a")
    slip = SlipIn(client, _op(slip_in_before, counter=False), lambda: kind.add("rival"))
    with slip, pytest.raises(InvalidInput):
        kind.add("mine")
    assert slip.ran
    assert _stored(client, kind) == (["a", "rival"], LIMIT)


def test_writers_that_all_find_no_counter_agree_on_one(client: Any, kind: Kind) -> None:
    """Items an older version wrote have no counter. The writer finds none and counts the
    items; before it puts the counter a rival does the same, puts its counter and takes the
    last slot. The writer's counter put fails, its count is dropped, and it is refused: the
    counter equals the items."""
    client.put_item(TableName=kind.table, Item={
        "pk": {"S": kind.pk}, "sk": {"S": kind.prefix + "old"}, **_attributes(kind)})  # fmt: skip
    assert _stored(client, kind) == (["old"], None)
    slip = SlipIn(client, _op("PutItem", counter=True), lambda: kind.add("rival"))
    with slip, pytest.raises(InvalidInput):
        kind.add("mine")
    assert slip.ran
    # the writer's own counter put came after the rival's and failed; it then read theirs
    assert slip.trace.count("PutItem") >= 3  # replace, its counter, replace again
    assert _stored(client, kind) == (["old", "rival"], 2)


def test_a_delete_meanwhile_makes_room(client: Any, kind: Kind) -> None:
    """The writer's transaction is refused at the limit; before it reads the counter a
    delete makes room, so it tries again and gets in."""
    kind.add("a")
    kind.add("b")
    with SlipIn(client, _op("GetItem", counter=True), lambda: kind.delete("a")) as slip:
        assert kind.add("c") is True
    assert slip.ran
    assert slip.trace.count("TransactWriteItems") == 2  # refused, then applied
    assert _stored(client, kind) == (["b", "c"], 2)


def test_a_counter_an_older_writer_left_behind_is_mended_at_the_limit(
    client: Any, kind: Kind
) -> None:
    """A writer of an older version (a deploy in progress, a rollback) deletes an item
    without the counter: it says 2 where 1 is left. The next create is refused by it,
    counts the items, mends the counter and gets in."""
    kind.add("a")
    kind.add("b")
    client.delete_item(TableName=kind.table, Key={"pk": {"S": kind.pk},
                                                  "sk": {"S": kind.prefix + "a"}})  # fmt: skip
    assert _stored(client, kind) == (["b"], 2)
    assert kind.add("c") is True
    assert _stored(client, kind) == (["b", "c"], 2)
    with pytest.raises(InvalidInput):  # at the limit for real: refused, nothing mended
        kind.add("d")
    assert _stored(client, kind) == (["b", "c"], 2)


def _refuse(code: str, reasons: list[str] | None, times: int) -> Callable[..., Any]:
    """A ``before-call`` answer: the first ``times`` calls fail with ``code`` (and these
    cancellation reasons), as DynamoDB answers when another transaction holds an item or
    the table is throttled; None lets the call through."""
    left = [times]

    def answer(**_: Any) -> Any:
        if left[0] <= 0:
            return None
        left[0] -= 1
        body: dict[str, Any] = {"Error": {"Code": code, "Message": "busy"}}
        if reasons is not None:
            body["CancellationReasons"] = [{"Code": r} for r in reasons]
        return SimpleNamespace(status_code=400, headers={}), body

    return answer


@pytest.mark.parametrize(
    ("operation", "code", "reasons"),
    [
        # the item's, the counter's and the write's marker's (adapters/aws/counted.py)
        ("TransactWriteItems", "TransactionCanceledException",
         ["None", "TransactionConflict", "None"]),
        ("TransactWriteItems", "TransactionCanceledException",
         ["None", "ThrottlingError", "None"]),
        ("TransactWriteItems", "TransactionCanceledException",
         ["TransactionConflict", "TransactionConflict", "None"]),
        ("PutItem", "TransactionConflictException", None),
        ("TransactWriteItems", "ProvisionedThroughputExceededException", None),
    ],
)  # fmt: skip
def test_a_busy_counter_is_waited_for(
    client: Any, kind: Kind, monkeypatch: pytest.MonkeyPatch,
    operation: str, code: str, reasons: list[str] | None,
) -> None:  # fmt: skip
    """Another request's transaction on the counter, or a throttle, cancels the write: it
    is tried again after a pause, and gets in; if it never can, the caller is told to retry
    (503), with nothing changed."""
    monkeypatch.setattr(counted, "_FIRST_PAUSE", 0.0)
    event = f"before-call.dynamodb.{operation}"
    for_a_while = _refuse(code, reasons, 3)
    client.meta.events.register(event, for_a_while)
    try:
        assert kind.add("a") is True
        assert _stored(client, kind) == (["a"], 1)
        if operation == "TransactWriteItems":
            assert kind.delete("a") in (True, None)
            assert _stored(client, kind) == ([], 0)
    finally:
        client.meta.events.unregister(event, for_a_while)
    always = _refuse(code, reasons, 1_000)
    client.meta.events.register(event, always)
    try:
        with pytest.raises(Unavailable, match="busy"):
            kind.add("b")
    finally:
        client.meta.events.unregister(event, always)
    assert _stored(client, kind)[0] == ([] if operation == "TransactWriteItems" else ["a"])


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


_WRITES = ("PutItem", "TransactWriteItems", "DeleteItem", "UpdateItem")


def _fail_write(client: Any, n: int) -> Callable[..., Any]:
    """A ``before-call`` answer that fails the client's n-th write request (from 0) with a
    server error, as a lost connection or a crash there would leave it: not applied."""
    seen = [-1]

    def answer(model: Any, **_: Any) -> Any:
        if model.name not in _WRITES:
            return None
        seen[0] += 1
        if seen[0] != n:
            return None
        return SimpleNamespace(status_code=500, headers={}), {
            "Error": {"Code": "InternalServerError", "Message": "injected"}
        }

    return answer


@pytest.mark.parametrize("operation", ["create", "delete"])
def test_a_write_failing_at_every_point_leaves_the_count_true_and_a_retry_ends_well(
    client: Any, kind: Kind, operation: str
) -> None:
    """Over items an older version wrote (no counter yet), each write request of a create
    or a delete in turn fails (the first, the second, ...): the operation fails, the counter
    never disagrees with the items (absent is allowed: it is made from them), and doing it
    again ends as it would have."""
    keys = [counter_key(kind.pk, kind.prefix)] + [
        {"pk": {"S": kind.pk}, "sk": {"S": kind.prefix + n}} for n in ("old", "a")
    ]

    def act() -> object:
        return kind.add("a") if operation == "create" else kind.delete("old")

    expected = (["a", "old"], 2) if operation == "create" else ([], 0)
    n = 0
    while True:
        for key in keys:  # the kind's items and counter as an older version left them
            client.delete_item(TableName=kind.table, Key=key)
        client.put_item(TableName=kind.table, Item={
            "pk": {"S": kind.pk}, "sk": {"S": kind.prefix + "old"}, **_attributes(kind)})  # fmt: skip
        failing = _fail_write(client, n)
        client.meta.events.register("before-call.dynamodb", failing)
        try:
            act()
            failed = False
        except ClientError:
            failed = True
        finally:
            client.meta.events.unregister("before-call.dynamodb", failing)
        names, counted = _stored(client, kind)
        assert counted in (None, len(names)), (n, names, counted)
        if not failed:
            assert (names, counted) == expected
            break
        act()  # again, with nothing failing
        assert _stored(client, kind) == expected, n
        n += 1
    assert n >= 3  # the operation's every write request was failed in turn


@pytest.mark.parametrize("code", ["ThrottlingException", "ProvisionedThroughputExceededException"])
def test_a_write_applied_but_answered_with_an_error_is_reported_as_applied(
    client: Any, kind: Kind, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction DynamoDB applied whose answer was lost (a throttle after the write): the
    retry must find its own write, not take the item for someone else's (a new
    item answered as a replacement, a delete that deleted answered as not there)."""
    real = client.transact_write_items
    armed = {"on": True}

    def applied_then_failed(**kwargs: Any) -> Any:
        out = real(**kwargs)
        if armed["on"]:
            armed["on"] = False
            error = {"Error": {"Code": code, "Message": "the answer was lost"}}
            raise ClientError(error, "TransactWriteItems")  # type: ignore[arg-type]
        return out

    monkeypatch.setattr(client, "transact_write_items", applied_then_failed)
    assert kind.add("a") is True
    assert not armed["on"]  # the fault did happen
    assert _stored(client, kind) == (["a"], 1)
    armed["on"] = True
    deleted = kind.delete("a")  # not NotFound: it was there, and this request deleted it
    assert not armed["on"]
    if kind.prefix == "V#":
        assert deleted is True
    assert _stored(client, kind) == ([], 0)
    # what marked the writes as this request's is gone with them: only counters are left
    left = client.query(
        TableName=kind.table, ConsistentRead=True, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": COUNTER_PREFIX + kind.pk}},
    )["Items"]  # fmt: skip
    assert kind.prefix in [i["sk"]["S"] for i in left]
    assert not [i for i in left if not i["sk"]["S"].endswith("#")]


def test_a_throttled_look_for_the_marker_is_tried_again_not_a_failure(
    client: Any, kind: Kind, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a transaction answered with a throttle, reading its marker may be throttled too:
    that is another pause and try (the write still unsure), not an error that makes the
    client retry as a new write (which would find the item and answer it as a replacement)."""
    real_transact, real_get = client.transact_write_items, client.get_item
    armed = {"transact": True, "get": True}

    def applied_then_failed(**kwargs: Any) -> Any:
        out = real_transact(**kwargs)
        if armed["transact"]:
            armed["transact"] = False
            error = {"Error": {"Code": "ThrottlingException", "Message": "the answer was lost"}}
            raise ClientError(error, "TransactWriteItems")  # type: ignore[arg-type]
        return out

    def throttled_once(**kwargs: Any) -> Any:
        if armed["get"] and kwargs["Key"]["sk"]["S"].startswith("#write#"):
            armed["get"] = False
            error = {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}
            raise ClientError(error, "GetItem")  # type: ignore[arg-type]
        return real_get(**kwargs)

    monkeypatch.setattr(counted.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(client, "transact_write_items", applied_then_failed)
    monkeypatch.setattr(client, "get_item", throttled_once)
    assert kind.add("a") is True
    assert not armed["transact"]  # both faults did happen
    assert not armed["get"]
    assert _stored(client, kind) == (["a"], 1)
