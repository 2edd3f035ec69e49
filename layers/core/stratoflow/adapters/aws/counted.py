"""A bounded collection of items in one DynamoDB partition: a project's variables, alert
channels, alert groups or connections, at most ``limit`` of each.

Counting the items with a Query and then writing the new one left a window: two requests that
both counted ``limit - 1`` both wrote, and the project ended past its limit (by as many as
the API's concurrent requests). Here the count is an item of its own in the same partition
(``sk = #count#<prefix>``, attribute ``n``), and a new item is written in one
``TransactWriteItems`` with the counter's increment, conditioned on the item not existing and
on ``n < limit``: DynamoDB applies both or neither, so no interleaving of writers passes the
limit. A delete takes ``n`` down in the same way. Replacing an existing item is one
conditional put and leaves the count alone.

The counter is made on first need, from a strongly consistent Query of the items it counts
(a project whose items an older version wrote has none). Every write of a new item and every
delete needs the counter to exist (their transactions check ``attribute_exists(n)``), so
nothing can change the items between that Query and the counter's conditional put; of two
writers that both found it missing, the second's put fails and it uses the first's.

Its key starts with ``#``, which no prefix of a counted kind does, so a Query by the kind's
prefix never returns it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from botocore.exceptions import ClientError

from stratoflow.errors import Conflict

COUNTER_PREFIX: Final = "#count#"
# how many times a write starts over after another writer changed what it had seen (the item
# appeared or went, the counter was made meanwhile); each start over follows a real change
_ATTEMPTS: Final = 8


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _reasons(exc: ClientError) -> list[str]:
    return [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons") or []]


class CountedItems:
    """The items of partition ``pk`` whose sort keys start with ``prefix``, at most
    ``limit`` of them. ``too_many`` is the error a new item past the limit raises."""

    def __init__(
        self,
        client: Any,
        table: str,
        pk: str,
        prefix: str,
        limit: int,
        too_many: Callable[[], Exception],
    ) -> None:
        self._client = client
        self._table = table
        self._pk = pk
        self._prefix = prefix
        self._limit = limit
        self._too_many = too_many
        self._counter_key = {"pk": {"S": pk}, "sk": {"S": COUNTER_PREFIX + prefix}}

    def _key(self, name: str) -> dict[str, Any]:
        return {"pk": {"S": self._pk}, "sk": {"S": self._prefix + name}}

    def put(self, name: str, attributes: Mapping[str, Any]) -> bool:
        """Create or replace item ``name`` with ``attributes`` (wire form, keys excluded);
        True if it is new. A new item past the limit raises ``too_many()`` and writes
        nothing."""
        item = {**self._key(name), **attributes}
        for _ in range(_ATTEMPTS):
            try:  # a replacement: the count does not change
                self._client.put_item(
                    TableName=self._table, Item=item, ConditionExpression="attribute_exists(pk)"
                )
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
            else:
                return False
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        {"Put": {"TableName": self._table, "Item": item,
                                 "ConditionExpression": "attribute_not_exists(pk)"}},
                        self._count_by(1, "attribute_exists(n) AND n < :limit"),
                    ]
                )  # fmt: skip
            except ClientError as exc:
                reasons = self._cancelled(exc)
                if reasons[0] == "ConditionalCheckFailed":
                    continue  # made meanwhile: replace it
                counted = self._counter()
                if counted is not None and counted >= self._limit:
                    raise self._too_many() from None
                # no counter yet (made now), or a delete made room meanwhile: again
            else:
                return True
        raise Conflict(f"{self._prefix}{name} kept changing while it was written; try again")

    def delete(self, name: str) -> bool:
        """Delete item ``name``; True if it existed."""
        for _ in range(_ATTEMPTS):
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        {"Delete": {"TableName": self._table, "Key": self._key(name),
                                    "ConditionExpression": "attribute_exists(pk)"}},
                        self._count_by(-1, "attribute_exists(n)"),
                    ]
                )  # fmt: skip
            except ClientError as exc:
                reasons = self._cancelled(exc)
                if reasons[0] == "ConditionalCheckFailed":
                    return False  # not there
                self._counter()  # none yet: made now, then again
            else:
                return True
        raise Conflict(f"{self._prefix}{name} kept changing while it was deleted; try again")

    def _count_by(self, delta: int, condition: str) -> dict[str, Any]:
        values: dict[str, Any] = {":d": {"N": str(delta)}}
        if ":limit" in condition:
            values[":limit"] = {"N": str(self._limit)}
        return {
            "Update": {
                "TableName": self._table,
                "Key": self._counter_key,
                "UpdateExpression": "SET n = n + :d",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }
        }

    @staticmethod
    def _cancelled(exc: ClientError) -> list[str]:
        """The cancellation reasons of a transaction refused by its conditions (item first,
        counter second); anything else is raised again."""
        reasons = _reasons(exc) if _code(exc) == "TransactionCanceledException" else []
        if len(reasons) != 2 or "ConditionalCheckFailed" not in reasons:
            raise exc
        return reasons

    def _counter(self) -> int | None:
        """The count, made from the items if there is no counter yet (then None: the caller
        tries again with it in place)."""
        found = self._client.get_item(
            TableName=self._table, Key=self._counter_key, ConsistentRead=True
        ).get("Item")
        if found is not None:
            return int(found["n"]["N"])
        try:
            self._client.put_item(
                TableName=self._table,
                Item={**self._counter_key, "n": {"N": str(self._count_items())}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise  # else another writer made it first: theirs stands
        return None

    def _count_items(self) -> int:
        total = 0
        args: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": self._pk}, ":prefix": {"S": self._prefix}},
            "Select": "COUNT",
            "ConsistentRead": True,
        }
        while True:
            out = self._client.query(**args)
            total += int(out.get("Count", 0))
            if "LastEvaluatedKey" not in out:
                return total
            args["ExclusiveStartKey"] = out["LastEvaluatedKey"]
