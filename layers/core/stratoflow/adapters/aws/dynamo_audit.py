"""The audit journal in the DynamoDB state table (a mixin of ``DynamoStore``). See
:mod:`stratoflow.audit`.

One item per entry: ``AUDIT#<id>`` / ``E`` with ``entry`` (the read model's row as JSON). An
intent is ``pending`` and carries the table's TTL attribute at its expiry: if its request
never settles it (the process died after the change), DynamoDB's TTL process deletes it, and
the stream's REMOVE record of that deletion (its old image) is what the projector writes to
the read model, as "outcome unknown". Settling writes the entry without either attribute
(no TTL: it stays); the stream's INSERT or MODIFY record of it is projected, keyed by the
entry's id, so a record delivered twice (Lambda's retries) is kept once. A withdrawal (the
request failed) is a user's REMOVE, which the projector skips.

A settled entry is also indexed (gsi1: ``AUDITLOG`` / ``<at>#<id>``), so the projector can
deliver the entries of a span of time again (``audit_entries``; ``StreamProjector.
replay_audit``): what the stream could not deliver while the read model was down (records
that ran out of retries) is caught up from the table, where a settled entry stays.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from stratoflow.adapters.aws._dynamo_items import Item, key, s, ts
from stratoflow.audit import INTENT_TTL, decode_entry, encode_entry
from stratoflow.readmodel import AuditEntry

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

AUDIT_PREFIX: Final = "AUDIT#"
AUDIT_SK: Final = "E"
AUDIT_INDEX_PK: Final = "AUDITLOG"  # gsi1 partition of settled entries, by time
# the StateTable's TTL attribute (``dynamodb.TTL_ATTRIBUTE``; a test checks they agree)
EXPIRES: Final = "expires_at"


def audit_key(entry_id: str) -> Item:
    return key(f"{AUDIT_PREFIX}{entry_id}", AUDIT_SK)


def is_audit_item(pk: str, sk: str) -> bool:
    return pk.startswith(AUDIT_PREFIX) and sk == AUDIT_SK


def audit_entry_of(item: Item) -> AuditEntry:
    """The entry an item holds (ValueError/KeyError if it holds none)."""
    return decode_entry(str(item["entry"]["S"]))


def is_pending(item: Item) -> bool:
    return "pending" in item


def _failed_condition(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) == "ConditionalCheckFailedException"


class DynamoAudit:
    table: str
    client: DynamoDBClient

    def _query(self, *, limit: int | None = None, **kwargs: Any) -> Iterator[Item]:
        raise NotImplementedError  # pragma: no cover - DynamoStore's

    def audit_begin(self, intent: AuditEntry) -> None:
        expires = int((intent.at + INTENT_TTL).timestamp()) + 1
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    **audit_key(intent.id),
                    "entry": s(encode_entry(intent)),
                    "pending": {"BOOL": True},
                    EXPIRES: {"N": str(expires)},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise  # an id already journalled keeps what it has

    def audit_settle(self, entry: AuditEntry) -> None:
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    **audit_key(entry.id),
                    "entry": s(encode_entry(entry)),
                    "gsi1pk": s(AUDIT_INDEX_PK),
                    "gsi1sk": s(f"{ts(entry.at)}#{entry.id}"),
                },
                ConditionExpression="attribute_not_exists(pk) OR attribute_exists(pending)",
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise  # settled already: a retried delivery keeps the first

    def audit_withdraw(self, entry_id: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=audit_key(entry_id),
                ConditionExpression="attribute_exists(pending)",
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise  # settled (or gone): nothing to withdraw

    def audit_entries(self, since: datetime) -> Iterator[AuditEntry]:
        """The settled entries recorded at or after ``since``, oldest first (gsi1: eventually
        consistent, as a replay may be)."""
        items = self._query(
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :pk AND gsi1sk >= :since",
            ExpressionAttributeValues={":pk": s(AUDIT_INDEX_PK), ":since": s(ts(since))},
        )
        for item in items:
            yield audit_entry_of(item)
