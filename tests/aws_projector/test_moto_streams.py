"""The stream of a table after a cancelled transaction, on moto as ``tests/moto_streams``
corrects it: the cancelled transaction's writes emit nothing, and the writes after it are
read (moto alone gives the reader the undone write and loses the later ones)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.aws_projector.conftest import REGION, Stream


def test_a_cancelled_transaction_emits_nothing_and_later_writes_are_read(aws: None) -> None:
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    stream = Stream(ddb, "t")

    def read() -> list[str]:
        return [r["dynamodb"]["Keys"]["pk"]["S"] for r in stream.read()]

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
