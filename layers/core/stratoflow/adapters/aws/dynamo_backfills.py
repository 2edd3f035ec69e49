"""Backfills in the DynamoDB state table (a mixin of ``DynamoStore``).

One item per backfill, ``BACKFILL#<id>`` / ``B``: its document compressed (1,000 dates fit
with room to spare), its revision (every write is a PutItem conditional on the revision read),
and index entries: ``gsi3`` lists a project's backfills newest first; while it is running or
paused, ``gsi1`` files it under its workflow (what a run's end looks up: one Query of a
partition that is empty unless a backfill of that workflow is active) and ``gsi2`` under
``BACKFILLS_ACTIVE`` (the reconciler's pass). The index entries leave with the backfill's
end. Indexes are eventually consistent: a lookup that misses a backfill created an instant
ago is made good by the reconciler's next pass, which advances every active backfill.
The projector ignores these items (the read model keeps no backfills)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws._dynamo_items import Item, key, n, s
from stratoflow.engine.backfill import Backfill, backfill_document, backfill_from_document
from stratoflow.errors import NotFound
from stratoflow.ports import BackfillStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BACKFILL_SK: Final = "B"
ACTIVE_PK: Final = "BACKFILLS_ACTIVE"


def backfill_pk(backfill_id: str) -> str:
    return f"BACKFILL#{backfill_id}"


def _item(backfill: Backfill) -> Item:
    item: Item = {
        **key(backfill_pk(backfill.id), BACKFILL_SK),
        "doc": {"B": it.pack(backfill_document(backfill))},
        "rev": n(backfill.revision),
        "st": s(backfill.state.value),
        "gsi3pk": s(f"BACKFILLP#{backfill.project}"),
        "gsi3sk": s(f"{it.ts(backfill.created_at)}#{backfill.id}"),
    }
    if not backfill.state.terminal:
        item["gsi1pk"] = s(f"BACKFILLA#{backfill.project}#{backfill.workflow}")
        item["gsi1sk"] = s(backfill.id)
        item["gsi2pk"] = s(ACTIVE_PK)
        item["gsi2sk"] = s(backfill.id)
    return item


def _backfill(item: Item) -> Backfill:
    return backfill_from_document(it.unpack(item["doc"]["B"]))


class DynamoBackfills(BackfillStore):
    table: str
    client: DynamoDBClient

    def _get(self, pk: str, sk: str) -> Item | None:
        raise NotImplementedError  # pragma: no cover - DynamoStore's

    def _index(self, index: str, pk: str, *, newest_first: bool = False) -> Iterator[Item]:
        raise NotImplementedError  # pragma: no cover - DynamoStore's

    def _put_if(self, item: Item, condition: str, values: Item | None = None) -> bool:
        args: dict[str, Any] = {"TableName": self.table, "Item": item}
        args["ConditionExpression"] = condition
        if values:
            args["ExpressionAttributeValues"] = values
        try:
            self.client.put_item(**args)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def create_backfill(self, backfill: Backfill) -> bool:
        return self._put_if(_item(backfill), "attribute_not_exists(pk)")

    def get_backfill(self, backfill_id: str) -> Backfill:
        item = self._get(backfill_pk(backfill_id), BACKFILL_SK)
        if item is None:
            raise NotFound(f"backfill {backfill_id!r} not found")
        return _backfill(item)

    def put_backfill(self, backfill: Backfill, expect_revision: int) -> bool:
        after = backfill.with_(revision=expect_revision + 1)
        return self._put_if(
            _item(after), "attribute_exists(pk) AND rev = :rev", {":rev": n(expect_revision)}
        )

    def list_backfills(
        self, project: str, workflow: str | None = None, limit: int = 50
    ) -> list[Backfill]:
        out: list[Backfill] = []
        for item in self._index("gsi3", f"BACKFILLP#{project}", newest_first=True):
            backfill = _backfill(item)
            if workflow is None or backfill.workflow == workflow:
                out.append(backfill)
                if len(out) == limit:
                    break
        return out

    def active_backfills(self, project: str, workflow: str) -> list[Backfill]:
        return [_backfill(i) for i in self._index("gsi1", f"BACKFILLA#{project}#{workflow}")]

    def backfills_waiting_for(self, project: str, workflow: str, run_id: str) -> list[str]:
        found = []
        for item in self._index("gsi1", f"BACKFILLA#{project}#{workflow}"):
            doc = it.unpack(item["doc"]["B"])  # plain JSON: no backfill is built
            if any(d["run_id"] == run_id for d in doc["dates"]):
                found.append(doc["id"])
        return found

    def all_active_backfills(self) -> list[Backfill]:
        return [_backfill(i) for i in self._index("gsi2", ACTIVE_PK)]
