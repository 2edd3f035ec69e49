"""A project's variables in the DynamoDB state table (a mixin of ``DynamoStore``).

One item per variable: ``VAR#<project>`` / ``V#<name>`` with ``value``, ``updated_at`` and
``updated_by``; no index entry. A counter item keeps their number (``adapters.aws.counted``),
so concurrent creations cannot pass ``MAX_VARIABLES``. Listing a project's is one Query of its
partition; a render reads only the variables its task's templates name, one BatchGetItem
(strongly consistent, so a task rendered after ``variables set`` answered reads the new
value). The projector ignores them (their keys are neither ``RUN#`` nor ``WF#``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws._dynamo_items import Item, key, s
from stratoflow.adapters.aws.counted import CountedItems
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

    def _counted(self, project: str) -> CountedItems:
        return CountedItems(
            self.client, self.table, f"{VARIABLE_PREFIX}{project}", NAME_PREFIX,
            MAX_VARIABLES, lambda: too_many(project),
        )  # fmt: skip

    def put_variable(self, variable: Variable) -> bool:
        return self._counted(variable.project).put(
            variable.name,
            {
                "value": s(variable.value),
                "updated_at": s(it.ts(variable.updated_at)),
                "updated_by": s(variable.updated_by),
            },
        )

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
            KeyConditionExpression="pk = :pk AND begins_with(sk, :name)",
            ExpressionAttributeValues={
                ":pk": s(f"{VARIABLE_PREFIX}{project}"),
                ":name": s(NAME_PREFIX),
            },
            ConsistentRead=True,
        )
        return sorted((_variable(project, i) for i in items), key=lambda v: v.name)

    def delete_variable(self, project: str, name: str) -> bool:
        return self._counted(project).delete(name)
