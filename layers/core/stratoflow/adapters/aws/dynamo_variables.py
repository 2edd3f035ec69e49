"""A project's variables in the DynamoDB state table (a mixin of ``DynamoStore``).

One item per variable: ``VAR#<project>`` / ``V#<name>`` with ``value``, ``updated_at`` and
``updated_by``; no index entry. Listing a project's is one Query of its partition; a render
reads only the variables its task's templates name, one BatchGetItem (strongly consistent, so
a task rendered after ``variables set`` answered reads the new value). The projector ignores
them (their keys are neither ``RUN#`` nor ``WF#``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws._dynamo_items import Item, key, s
from stratoflow.ports import VariableStore
from stratoflow.variables import MAX_VARIABLES, Variable, too_many

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

VARIABLE_PREFIX: Final = "VAR#"
NAME_PREFIX: Final = "V#"


def variable_key(project: str, name: str) -> Item:
    return key(f"{VARIABLE_PREFIX}{project}", f"{NAME_PREFIX}{name}")


def _variable(project: str, item: Item) -> Variable:
    return Variable(
        project,
        str(item["sk"]["S"])[len(NAME_PREFIX) :],
        str(item["value"]["S"]),
        it.dt(str(item["updated_at"]["S"])),
        str(item["updated_by"]["S"]),
    )


class DynamoVariables(VariableStore):
    table: str
    client: DynamoDBClient

    def _query(self, *, limit: int | None = None, **kwargs: Any) -> Iterator[Item]:
        raise NotImplementedError  # pragma: no cover - DynamoStore's

    def _batch_get(self, keys: Sequence[Item]) -> list[Item]:
        raise NotImplementedError  # pragma: no cover - DynamoStore's

    def _count_variables(self, project: str) -> int:
        total = 0
        args: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": s(f"{VARIABLE_PREFIX}{project}")},
            "Select": "COUNT",
        }
        while True:
            out = self.client.query(**args)
            total += out.get("Count", 0)
            last = out.get("LastEvaluatedKey")
            if not last:
                return total
            args["ExclusiveStartKey"] = last

    def put_variable(self, variable: Variable) -> bool:
        item_key = variable_key(variable.project, variable.name)
        exists = "Item" in self.client.get_item(
            TableName=self.table, Key=item_key, ConsistentRead=True, ProjectionExpression="pk"
        )
        if not exists and self._count_variables(variable.project) >= MAX_VARIABLES:
            raise too_many(variable.project)
        old = self.client.put_item(
            TableName=self.table,
            Item={
                **item_key,
                "value": s(variable.value),
                "updated_at": s(it.ts(variable.updated_at)),
                "updated_by": s(variable.updated_by),
            },
            ReturnValues="ALL_OLD",
        )
        return "Attributes" not in old

    def get_variable(self, project: str, name: str) -> Variable | None:
        item = self.client.get_item(
            TableName=self.table, Key=variable_key(project, name), ConsistentRead=True
        ).get("Item")
        return None if item is None else _variable(project, item)

    def variable_values(self, project: str, names: Collection[str]) -> dict[str, str]:
        if not names:
            return {}
        items = self._batch_get([variable_key(project, n) for n in sorted(set(names))])
        return {str(i["sk"]["S"])[len(NAME_PREFIX) :]: str(i["value"]["S"]) for i in items}

    def list_variables(self, project: str) -> list[Variable]:
        items = self._query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": s(f"{VARIABLE_PREFIX}{project}")},
            ConsistentRead=True,
        )
        return sorted((_variable(project, i) for i in items), key=lambda v: v.name)

    def delete_variable(self, project: str, name: str) -> bool:
        old = self.client.delete_item(
            TableName=self.table, Key=variable_key(project, name), ReturnValues="ALL_OLD"
        )
        return "Attributes" in old
