"""moto with ``tests/moto_speed`` answers every update as moto alone does: the same item
written, or the same error, for valid expressions and for each kind of invalid one its
validator refuses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.moto_speed import uninstalled

REGION = "us-east-1"

CHAIN = ", ".join(f"a{i} = :v" for i in range(30))
# (update expression, attribute names): five valid ones, then invalid ones: each error of the
# two processors that now check the root alone, at the chain's start and at its end, and two
# that other processors raise (a key attribute set, a value not given)
UPDATES: list[tuple[str, dict[str, str]]] = [
    ("SET a = :v", {}),
    (f"SET {CHAIN}", {}),
    (f"SET {CHAIN} REMOVE gone ADD n :one", {}),
    ("SET m.x = :v, m.y = :v", {}),
    ("SET #a = :v, #b = :v", {"#a": "a", "#b": "b"}),
    ("SET a = :v SET b = :v", {}),
    (f"SET {CHAIN} SET b = :v", {}),
    ("REMOVE a REMOVE b", {}),
    ("ADD n :one ADD m :one", {}),
    ("SET a = :v, a = :v", {}),
    (f"SET {CHAIN}, a29 = :v", {}),
    ("SET m.x = :v, m = :v", {}),
    (f"SET m = :v, {CHAIN}, m.x = :v", {}),
    ("SET #a = :v, #b = :v", {"#a": "a", "#b": "a"}),
    ("SET a = :v REMOVE a", {}),
    (f"SET {CHAIN} REMOVE a0", {}),
    ("SET pk = :v", {}),
    ("SET a = :missing", {}),
]


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield ddb


OLD = {"m": {"M": {"x": {"S": "old"}}}, "gone": {"S": "here"}}


def answer(
    ddb: Any, key: str, expression: str, names: dict[str, str], item: dict[str, Any] = OLD
) -> object:
    """The item the update leaves, or the error it gets (code and message)."""
    ddb.put_item(TableName="t", Item={"pk": {"S": key}, **item})
    values = {":v": {"S": "new"}, ":one": {"N": "1"}}
    extra = {"ExpressionAttributeNames": names} if names else {}
    try:
        ddb.update_item(
            TableName="t",
            Key={"pk": {"S": key}},
            UpdateExpression=expression,
            ExpressionAttributeValues={k: v for k, v in values.items() if k in expression},
            **extra,
        )
    except ClientError as exc:
        return (exc.response["Error"]["Code"], exc.response["Error"]["Message"])
    return {k: v for k, v in ddb.get_item(TableName="t", Key={"pk": {"S": key}})["Item"].items()
            if k != "pk"}  # fmt: skip


def test_every_update_is_answered_as_moto_alone_answers_it(table: Any) -> None:
    ours = [answer(table, f"ours{i}", e, n) for i, (e, n) in enumerate(UPDATES)]
    with uninstalled():
        theirs = [answer(table, f"theirs{i}", e, n) for i, (e, n) in enumerate(UPDATES)]
    for (expression, _), got, expected in zip(UPDATES, ours, theirs, strict=True):
        assert got == expected, expression
    # both kinds of answer were compared: the first five are written, the rest refused
    assert [isinstance(a, dict) for a in theirs] == [True] * 5 + [False] * (len(UPDATES) - 5)
    assert theirs[1] == {**OLD, **{f"a{i}": {"S": "new"} for i in range(30)}}


def test_a_parse_shared_between_updates_is_never_changed_by_one(table: Any) -> None:
    # the same expression on an item with the map it sets a key of, then on one without: the
    # second is answered as if parsed afresh (the validator resolves the paths against the
    # item on a copy of the tree, never on the tree the two share)
    expression = f"SET {CHAIN}, m.x = :v"
    first = answer(table, "one", expression, {})
    second = answer(table, "two", expression, {}, item={})
    with uninstalled():
        alone = answer(table, "three", expression, {}, item={})
    assert isinstance(first, dict)
    assert first["m"] == {"M": {"x": {"S": "new"}}}
    assert isinstance(alone, tuple)  # no map m to set a key of
    assert second == alone
