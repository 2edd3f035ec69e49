"""The DynamoDB write meter of benchmarks/aws_cost.py against a case priced by hand.

Each request below is priced by DynamoDB's rules (benchmarks/dynamo_units.py): the table write
by the larger of the old and new image in 1 KB units, doubled in a transaction, plus the
writes of every GSI entry that appears, disappears, moves (2) or changes (1)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from dynamo_units import DynamoMeter, index_writes, item_size, moto_images, transition
from stratoflow.adapters.aws.dynamodb import create_table

TABLE = "state"


def s(text: str) -> dict[str, str]:
    return {"S": text}


@pytest.fixture
def metered() -> Iterator[tuple[Any, DynamoMeter]]:
    with mock_aws():
        client = boto3.client(
            "dynamodb", region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        create_table(client, TABLE, stream=False)
        meter = DynamoMeter(moto_images())
        meter.attach(client)
        yield client, meter


def test_item_size_counts_names_and_values() -> None:
    # pk: 2 + 6, sk: 2 + 3, n: 1 + 1 + ceil(3 digits / 2) = 4
    assert item_size({"pk": s("RUN#r1"), "sk": s("T#a"), "n": {"N": "123"}}) == 8 + 5 + 4


def test_index_writes_by_entry_change() -> None:
    base = {"pk": s("p"), "sk": s("s")}
    queued = {**base, "gsi1pk": s("Q#r1"), "gsi1sk": s("1")}
    moved = {**base, "gsi1pk": s("RUNNING#0"), "gsi1sk": s("1")}
    assert index_writes(None, queued) == [1]  # a new entry
    assert index_writes(queued, moved) == [1, 1]  # the key changes: delete and put
    assert index_writes(moved, base) == [1]  # removed
    assert index_writes(moved, {**moved, "st": s("x")}) == [1]  # projected attribute changed
    assert index_writes(moved, moved) == []  # nothing changed
    assert index_writes(base, {**base, "st": s("x")}) == []  # in no index


def test_meter_bills_a_hand_priced_sequence(metered: tuple[Any, DynamoMeter]) -> None:
    client, meter = metered
    key = {"pk": s("RUN#r1"), "sk": s("T#a")}  # 8 + 5 = 13 bytes

    # 1. Put a queued task: 13 + gsi1pk (6 + 4) + gsi1sk (6 + 4) + txt (3 + 900) = 936 bytes.
    #    Table 1 unit; a new gsi1 entry of 936 bytes: 1. Total 2.
    item = {**key, "gsi1pk": s("Q#r1"), "gsi1sk": s("0001"), "txt": s("x" * 900)}
    assert item_size(item) == 936
    client.put_item(TableName=TABLE, Item=item)
    assert (meter.writes.table, meter.writes.index) == (1, 1)

    # 2. Move it to a timer partition and grow it: 13 + (6 + 9) + 10 + (3 + 1100) = 1141 bytes.
    #    Table: the larger image, 1141 bytes = 2 units; gsi1 key changed: delete the 936-byte
    #    entry (1) and put the 1141-byte one (2). Total 5.
    client.update_item(
        TableName=TABLE, Key=key, UpdateExpression="SET gsi1pk = :k, txt = :p",
        ExpressionAttributeValues={":k": s("RUNNING#0"), ":p": s("x" * 1100)},
    )  # fmt: skip
    assert (meter.writes.table, meter.writes.index) == (1 + 2, 1 + 3)

    # 3. In a transaction, take it out of gsi1: new image 13 + 1103 = 1116 bytes. Table: the
    #    larger image (1141 bytes, 2 units) doubled = 4; the 1141-byte entry deleted: 2.
    client.transact_write_items(
        TransactItems=[{"Update": {
            "TableName": TABLE, "Key": key, "UpdateExpression": "REMOVE gsi1pk, gsi1sk",
        }}]
    )  # fmt: skip
    assert (meter.writes.table, meter.writes.index) == (3 + 4, 4 + 2)
    assert meter.writes.index_in_transactions == 2

    # 4. A counters item in no index, written twice: 1 + 1, no index write.
    counters = {"pk": s("RUN#r1"), "sk": s("RC")}
    client.put_item(TableName=TABLE, Item={**counters, "n": {"N": "1"}})
    client.update_item(
        TableName=TABLE, Key=counters, UpdateExpression="ADD n :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )  # fmt: skip
    assert (meter.writes.table, meter.writes.index) == (7 + 2, 6)

    # 5. A conditional write that fails: the existing 1116-byte item's units (2), no index.
    with pytest.raises(ClientError):
        client.update_item(
            TableName=TABLE, Key=key, UpdateExpression="SET gsi1pk = :k, gsi1sk = :k",
            ConditionExpression="attribute_not_exists(pk)",
            ExpressionAttributeValues={":k": s("Q#r1")},
        )  # fmt: skip
    assert (meter.writes.table, meter.writes.index) == (9 + 2, 6)

    # 6. A delete of a 1116-byte item in no index: 2 units.
    client.delete_item(TableName=TABLE, Key=key)
    assert (meter.writes.table, meter.writes.index) == (11 + 2, 6)
    assert meter.wru == 19


def test_transition_names_what_a_write_did() -> None:
    base = {"pk": s("RUN#r1"), "sk": s("T#a")}
    waiting = {**base, "st": s("waiting"), "up_ok": {"N": "0"}}
    running = {**base, "st": s("running"), "up_ok": {"N": "0"}, "gsi1pk": s("RUNNING#0"),
               "gsi1sk": s("x"), "deadline": s("t")}  # fmt: skip
    assert transition(None, waiting) == "-->waiting put"
    assert transition(waiting, running) == "waiting->running gsi1+ +deadline ~st"
    moved = {**running, "gsi1pk": s("RUNNING#1")}
    assert transition(running, moved) == "running->running gsi1~"
    ended = {k: v for k, v in running.items() if k not in ("gsi1pk", "gsi1sk", "deadline")}
    assert transition(running, {**ended, "st": s("succeeded")}) == (
        "running->succeeded gsi1- -deadline ~st"
    )
    assert transition(waiting, waiting) == "waiting->waiting (unchanged)"
    assert transition(waiting, None) == "waiting->- delete"


def test_meter_traces_each_kind_of_write(metered: tuple[Any, DynamoMeter]) -> None:
    """The per-write breakdown adds up to the totals, with the sizes before and after."""
    client, meter = metered
    key = {"pk": s("RUN#r1"), "sk": s("T#a")}
    client.put_item(TableName=TABLE, Item={**key, "st": s("waiting")})  # 8 + 5 + 9 = 22 bytes
    for _ in range(2):  # the same kind of write twice: one row, counted twice
        client.update_item(
            TableName=TABLE, Key=key, UpdateExpression="SET gsi1pk = :k, gsi1sk = :k",
            ExpressionAttributeValues={":k": s("Q#r1")},
        )  # fmt: skip
        client.update_item(
            TableName=TABLE, Key=key, UpdateExpression="REMOVE gsi1pk, gsi1sk",
        )  # fmt: skip
    rows = meter.writes.by_write
    assert set(rows) == {
        "PutItem T# -->waiting put",
        "UpdateItem T# waiting->waiting gsi1+",
        "UpdateItem T# waiting->waiting gsi1-",
    }
    appear = rows["UpdateItem T# waiting->waiting gsi1+"]
    # 22 bytes + gsi1pk (6 + 4) + gsi1sk (6 + 4) = 42 bytes: table 1, the new entry 1
    assert (appear.count, appear.table, appear.index) == (2, 2, 2)
    assert (appear.old_size, appear.new_size, appear.max_size) == (2 * 22, 2 * 42, 42)
    assert sum(r.table for r in rows.values()) == meter.writes.table == 5
    assert sum(r.index for r in rows.values()) == meter.writes.index == 4


def test_transition_gives_every_reservation_one_label() -> None:
    counters = {"pk": s("RUN#r1"), "sk": s("RC"), "n_running": {"N": "0"}}
    opened = {**counters, "nres": {"N": "1"}, "r_0a1b2c3d4e": s("{}")}
    assert transition(counters, opened) == "?->? +nres +r_*"
    assert transition(opened, {**counters, "r_ffffff0000": s("{}")}) == "?->? -nres -r_* +r_*"
