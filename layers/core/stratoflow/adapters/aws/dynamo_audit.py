"""The audit journal in the DynamoDB state table (a mixin of ``DynamoStore``). See
:mod:`stratoflow.audit`.

One item per entry: ``AUDIT#<id>`` / ``E`` with ``entry`` (the read model's row as JSON). An
intent is ``pending``, indexed by its expiry (gsi1: ``AUDITINTENT`` / ``<expiry>#<id>``) and
carries the table's TTL attribute ``UNSETTLED_KEEP`` after its expiry. If its request never
settles it (the process died after the change), the reconciler's pass settles it as it
stands, as "outcome unknown", within minutes of its expiry (``audit_settle_expired``), as
the local feed does: an item the replay after a read model's outage can deliver again.
Only if no reconciler did by then does DynamoDB's TTL delete it, and the stream's REMOVE
record of that deletion (its old image) is what the projector writes instead (the TTL may
delete an item as soon as its time has passed: at the expiry itself, a line deleted so
while the read model was down past the stream's retries was lost). Settling writes the entry without
either attribute; the stream's INSERT or MODIFY record of it is projected, keyed by the
entry's id, so a record delivered twice (Lambda's retries) is kept once. A withdrawal (the
request failed) is a user's REMOVE, which the projector skips.

A settled entry is indexed by when it was settled (gsi1: ``AUDITLOG`` / ``<when>#<id>``: its
``at``, taken just before its request settles it; the reconciler's time for an intent it
settles, 15 minutes or more after its ``at``), so the projector can deliver the entries of a
span of time again (``audit_entries``; ``StreamProjector.replay_audit``): what the stream
could not deliver while the read model was down (records that ran out of retries) is caught
up from the table, from the failure on. The journal is bounded: once the
projector has written an entry to the read model (its transaction committed) it gives the
item the TTL attribute, ``SETTLED_KEEP`` later (``audit_projected``), and DynamoDB's TTL
removes it after that. Only the projector sets it, after its write: an entry the read model
has not got (its records on the DLQ, a read model down for days) stays until a replay
writes it. A projector that dies between its write and the mark leaves the records to be
retried (projected again, kept once by id) or the entries to the next replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
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
INTENT_INDEX_PK: Final = "AUDITINTENT"  # gsi1 partition of pending intents, by expiry
# how long a settled entry stays in the table once the read model has it: what the
# projector's "replay-audit" can deliver again (the stream itself keeps records 24 h)
SETTLED_KEEP: Final = timedelta(days=2)
# how long past its expiry an intent no reconciler settled stays before DynamoDB's TTL may
# delete it: the reconciler (every 5 minutes by default; ReconcilerSchedule) settles it first
UNSETTLED_KEEP: Final = timedelta(days=1)
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
        expiry = intent.at + INTENT_TTL
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    **audit_key(intent.id),
                    "entry": s(encode_entry(intent)),
                    "pending": {"BOOL": True},
                    EXPIRES: {"N": str(int((expiry + UNSETTLED_KEEP).timestamp()) + 1)},
                    "gsi1pk": s(INTENT_INDEX_PK),
                    "gsi1sk": s(f"{ts(expiry)}#{intent.id}"),
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise  # an id already journalled keeps what it has

    def audit_settle(self, entry: AuditEntry) -> None:
        # a settled entry is never written over (a retried delivery keeps the first)
        self._put_settled(entry, "attribute_not_exists(pk) OR attribute_exists(pending)", entry.at)

    def _put_settled(self, entry: AuditEntry, condition: str, settled_at: datetime) -> bool:
        """Write ``entry`` settled, indexed at ``settled_at`` (when its item is written, give or
        take a few seconds: the replay after an outage starts from the failure)."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    **audit_key(entry.id),
                    "entry": s(encode_entry(entry)),
                    "gsi1pk": s(AUDIT_INDEX_PK),
                    "gsi1sk": s(f"{ts(settled_at)}#{entry.id}"),
                },
                ConditionExpression=condition,
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise
            return False
        return True

    def audit_settle_expired(self, now: datetime) -> int:
        """Settle, as they stand ("outcome unknown"), the intents pending past their expiry
        (their request's Lambda died or could not record the outcome); the stream brings
        them to the read model. Returns how many this call settled."""
        items = self._query(
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :pk AND gsi1sk < :now",
            ExpressionAttributeValues={":pk": s(INTENT_INDEX_PK), ":now": s(ts(now))},
        )
        settled = 0
        for item in items:
            # only while still pending: not over the outcome its request recorded meanwhile
            # (the index is eventually consistent), nor back after a withdrawal; indexed now,
            # not at its request's time: a replay from an outage met now must find it
            entry = audit_entry_of(item)
            settled += self._put_settled(entry, "attribute_exists(pending)", now)
        return settled

    def audit_projected(self, entry_id: str, now: datetime) -> None:
        """The read model has the settled entry ``entry_id`` (its write committed): give it
        the TTL attribute, ``SETTLED_KEEP`` from ``now``. Once only, and never a pending
        intent or an item that is gone (the mark would make one up)."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=audit_key(entry_id),
                UpdateExpression="SET #expires = :expires",
                ConditionExpression=(
                    "attribute_exists(pk) AND attribute_not_exists(pending) "
                    "AND attribute_not_exists(#expires)"
                ),
                ExpressionAttributeNames={"#expires": EXPIRES},
                ExpressionAttributeValues={
                    ":expires": {"N": str(int((now + SETTLED_KEEP).timestamp()))}
                },
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise  # marked already (a record delivered again), or not settled

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
        """The settled entries settled at or after ``since``, in that order (gsi1: eventually
        consistent, as a replay may be)."""
        items = self._query(
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :pk AND gsi1sk >= :since",
            ExpressionAttributeValues={":pk": s(AUDIT_INDEX_PK), ":since": s(ts(since))},
        )
        for item in items:
            yield audit_entry_of(item)
