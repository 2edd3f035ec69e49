"""A bounded collection of items in one DynamoDB partition: a project's variables, alert
channels, alert groups or connections, at most ``limit`` of each.

Counting the items with a Query and then writing the new one left a window: two requests that
both counted ``limit - 1`` both wrote, and the project ended past its limit (by as many as
the API's concurrent requests). Here the count is an item of its own (``n``), and a new item
is written in one ``TransactWriteItems`` with the counter's increment, conditioned on the
item not existing and on ``n < limit``: DynamoDB applies both or neither, so no interleaving
of writers passes the limit. A delete takes ``n`` down in the same way. Replacing an existing
item is one conditional put and leaves the count alone.

The counter lives in a partition of its own (``#count#<partition>``, sort key the kind's
prefix), so no Query of the items (this version's or an older one's) ever returns it.

It is made on first need, from a strongly consistent Query of the items it counts (a project
whose items an older version wrote has none). Every write of a new item and every delete
needs the counter to exist (their transactions check ``attribute_exists(n)``), so nothing
this version runs can change the items between that Query and the counter's conditional
put; of two writers that both found it missing, the second's put fails and it uses the
first's.

A writer of an older version (a container still running during a deploy, or after a
rollback) changes the items without the counter, so ``n`` can drift from them. A create
refused at the limit therefore counts the items once more; if they differ from ``n``, it
sets ``n`` to the count, on the condition that ``n`` is still what it read (every write of
this version changes ``n``, so nothing came in between), and tries again.

A transaction cancelled because another one held the counter (``TransactionConflict``) or by
throttling is tried again after a pause; one that still cannot be applied after
``_ATTEMPTS`` raises :class:`Unavailable` (HTTP 503: nothing was changed, retry later).

A transaction answered as a whole with a throttle (as when the answer to a write DynamoDB
applied was lost; botocore's own retries of a 500 reuse its idempotency token, so DynamoDB
answers those as the first) may have been applied. The retry must not take what it
finds for another writer's doing: a new item would be answered as a replacement, a delete
that deleted as "not there". So each put or delete writes, in its transaction, a marker only
it writes (``#write#<token>`` in the counter's partition); after such an error the next try
first reads the marker: there, the transaction was applied and the write answers as it would
have. The marker is deleted when the write returns (and expires by ``expires_at`` where the
table keeps a TTL, should that delete be lost).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from botocore.exceptions import ClientError

from stratoflow.errors import Unavailable

COUNTER_PREFIX: Final = "#count#"
# how many times a write starts over, after another writer changed what it had seen or a
# transaction conflicted or was throttled; a pause before each, doubling up to a second
_ATTEMPTS: Final = 10
_FIRST_PAUSE: Final = 0.02
_LONGEST_PAUSE: Final = 1.0
# cancellation reasons (and error codes of a single write) that say "not now", not "no"
_BUSY: Final = frozenset({
    "TransactionConflict", "TransactionConflictException", "ThrottlingError",
    "ThrottlingException", "ProvisionedThroughputExceeded",
    "ProvisionedThroughputExceededException", "RequestLimitExceeded",
})  # fmt: skip
_FAILED: Final = "ConditionalCheckFailed"
_MARKER: Final = "#write#"
_MARKER_SECONDS: Final = 86400  # a marker whose delete was lost expires (a TTL's attribute)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Busy(Exception):
    """The write could not be applied now (a conflict, a throttle): try again after a pause."""


class _Write:
    """One put or delete: the token of its marker, whether a transaction carrying it was
    sent, and whether one was answered with an error that does not say if it was applied."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.sent = False
        self.unsure = False


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
        self._counter_key = counter_key(pk, prefix)

    def _key(self, name: str) -> dict[str, Any]:
        return {"pk": {"S": self._pk}, "sk": {"S": self._prefix + name}}

    def put(self, name: str, attributes: Mapping[str, Any]) -> bool:
        """Create or replace item ``name`` with ``attributes`` (wire form, keys excluded);
        True if it is new. A new item past the limit raises ``too_many()`` and writes
        nothing."""
        item = {**self._key(name), **attributes}
        with self._write() as write:
            return self._again(
                lambda: self._put(item, write), f"{self._prefix}{name} was not written"
            )

    def delete(self, name: str) -> bool:
        """Delete item ``name``; True if it existed."""
        with self._write() as write:
            return self._again(
                lambda: self._delete(name, write), f"{self._prefix}{name} was not deleted"
            )

    @contextlib.contextmanager
    def _write(self) -> Iterator[_Write]:
        """A write's marker token; its marker, if a transaction may have written it, is
        deleted when the write returns (best effort: it expires anyway)."""
        write = _Write()
        try:
            yield write
        finally:
            if write.sent:
                with contextlib.suppress(ClientError):
                    self._client.delete_item(TableName=self._table, Key=self._marker_key(write))

    def _marker_key(self, write: _Write) -> dict[str, Any]:
        return {"pk": self._counter_key["pk"], "sk": {"S": _MARKER + write.token}}

    def _applied(self, write: _Write) -> bool:
        """After an answer that did not say: whether the write's transaction was applied. A
        busy answer to this read is ``_Busy`` too, the write still unsure (read again after
        the pause); an error here would make the client retry as a new write, which would
        take this one's item for another writer's."""
        try:
            found = self._client.get_item(
                TableName=self._table, Key=self._marker_key(write), ConsistentRead=True
            ).get("Item")
        except ClientError as exc:
            if _code(exc) in _BUSY:
                raise _Busy from None
            raise
        write.unsure = False
        return found is not None

    def _again(self, attempt: Callable[[], bool | None], what: str) -> bool:
        """Run ``attempt`` until it answers (None: start over at once; ``_Busy``: after a
        pause), at most ``_ATTEMPTS`` times."""
        pause = _FIRST_PAUSE
        for _ in range(_ATTEMPTS):
            try:
                answer = attempt()
            except _Busy:
                time.sleep(pause)
                pause = min(pause * 2, _LONGEST_PAUSE)
                continue
            if answer is not None:
                return answer
        raise Unavailable(
            f"{what}: DynamoDB stayed busy with other writes; try again", retry_after=1
        )

    def _put(self, item: Mapping[str, Any], write: _Write) -> bool | None:
        if write.unsure and self._applied(write):
            return True  # its transaction made the item: new, as the first try would have said
        try:  # a replacement: the count does not change
            self._client.put_item(
                TableName=self._table, Item=item, ConditionExpression="attribute_exists(pk)"
            )
        except ClientError as exc:
            if _code(exc) in _BUSY:
                raise _Busy from None
            if _code(exc) != f"{_FAILED}Exception":
                raise
        else:
            return False
        reasons = self._transact(
            {"Put": {"TableName": self._table, "Item": item,
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            self._count_by(1, "attribute_exists(n) AND n < :limit"),
            write,
        )  # fmt: skip
        if reasons is None:
            return True
        if reasons[0] == _FAILED:
            return None  # made meanwhile: replace it
        seen = self._counter()
        if seen is not None and seen >= self._limit and not self._recount(seen):
            raise self._too_many()
        return None  # the counter made now, room made meanwhile, or a drift mended: again

    def _delete(self, name: str, write: _Write) -> bool | None:
        if write.unsure and self._applied(write):
            return True  # its transaction deleted the item: it existed
        reasons = self._transact(
            {"Delete": {"TableName": self._table, "Key": self._key(name),
                        "ConditionExpression": "attribute_exists(pk)"}},
            self._count_by(-1, "attribute_exists(n)"),
            write,
        )  # fmt: skip
        if reasons is None:
            return True
        if reasons[0] == _FAILED:
            return False  # not there
        self._counter()  # none yet: made now, then again
        return None

    def _transact(
        self, item: Mapping[str, Any], counter: Mapping[str, Any], write: _Write
    ) -> list[str] | None:
        """The item's write, the counter's and the write's marker in one transaction: None
        when applied, else the cancellation reasons (item first); busy raises ``_Busy``
        (and an answer that does not say whether it was applied marks ``write`` unsure)."""
        marker = {
            **self._marker_key(write),
            "expires_at": {"N": str(int(time.time()) + _MARKER_SECONDS)},
        }
        write.sent = True
        try:
            self._client.transact_write_items(
                TransactItems=[item, counter, {"Put": {"TableName": self._table, "Item": marker}}]
            )
        except ClientError as exc:
            if _code(exc) in _BUSY:  # as a whole: it says nothing of whether it was applied
                write.unsure = True
                raise _Busy from None
            if _code(exc) != "TransactionCanceledException":
                raise
            reasons = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons") or []]  # fmt: skip
            if len(reasons) != 3:
                raise
            if _FAILED not in reasons and _BUSY.intersection(reasons):
                raise _Busy from None
            if _FAILED not in reasons:
                raise
            return reasons
        return None

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
            if _code(exc) in _BUSY:
                raise _Busy from None
            if _code(exc) != f"{_FAILED}Exception":
                raise  # else another writer made it first: theirs stands
        return None

    def _recount(self, seen: int) -> bool:
        """Whether the items differ from the counter's ``seen``: then the counter is set to
        them, unless a write changed it meanwhile (either way, the caller tries again)."""
        counted = self._count_items()
        if counted == seen:
            return False
        try:
            self._client.update_item(
                TableName=self._table, Key=self._counter_key,
                UpdateExpression="SET n = :counted", ConditionExpression="n = :seen",
                ExpressionAttributeValues={":counted": {"N": str(counted)},
                                           ":seen": {"N": str(seen)}},
            )  # fmt: skip
        except ClientError as exc:
            if _code(exc) != f"{_FAILED}Exception" and _code(exc) not in _BUSY:
                raise
        return True

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


def counter_key(pk: str, prefix: str) -> dict[str, Any]:
    """The key of the counter of partition ``pk``'s items starting with ``prefix``."""
    return {"pk": {"S": COUNTER_PREFIX + pk}, "sk": {"S": prefix}}
