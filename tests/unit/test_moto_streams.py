"""The stream of a table after a cancelled transaction, on moto as ``tests/moto_streams``
corrects it: the cancelled transaction's writes emit nothing, and the writes after it are
read (moto alone gives the reader the undone write and loses the later ones)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def test_a_cancelled_transaction_emits_nothing_and_later_writes_are_read(aws: None) -> None:
    ddb = boto3.client("dynamodb", region_name=REGION)
    made = ddb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    arn = made["TableDescription"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", region_name=REGION)
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]

    def read() -> list[str]:
        nonlocal iterator
        page: dict[str, Any] = streams.get_records(ShardIterator=iterator)
        iterator = page["NextShardIterator"]
        return [r["dynamodb"]["Keys"]["pk"]["S"] for r in page["Records"]]

    ddb.put_item(TableName="t", Item={"pk": {"S": "a"}})
    assert read() == ["a"]
    with pytest.raises(ClientError, match="TransactionCanceled"):
        ddb.transact_write_items(
            TransactItems=[
                {
                    "ConditionCheck": {
                        "TableName": "t",
                        "Key": {"pk": {"S": "a"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {"Put": {"TableName": "t", "Item": {"pk": {"S": "b"}}}},
            ]
        )
    assert read() == []  # moto alone: ["b"], a write DynamoDB never made
    assert "Item" not in ddb.get_item(TableName="t", Key={"pk": {"S": "b"}})
    ddb.put_item(TableName="t", Item={"pk": {"S": "c"}})
    ddb.transact_write_items(
        TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": "d"}}}}]
    )
    assert read() == ["c", "d"]  # moto alone: [], both lost to the reader
