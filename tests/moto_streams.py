"""moto's cancelled ``TransactWriteItems``, corrected to what DynamoDB does to a table's stream.

moto (5.2) applies a transaction's items one by one, each adding its stream record, and when
one fails puts back a deep copy of every table it touched, taken before the transaction. The
copy has a stream shard of its own, while a reader's shard iterator holds the old one: the
reader then gets the records of the writes that were undone, and never the records of any
write after (they go to the copy's shard). DynamoDB writes nothing for a cancelled
transaction and emits nothing. ``install`` makes the rollback keep each table's shard, less
the cancelled transaction's records; ``tests/aws_projector/test_moto_streams.py`` shows both."""

from __future__ import annotations

from typing import Any

from moto.dynamodb.models import DynamoDBBackend

_MARK = "_stratoflow_keeps_streams"


def install() -> None:
    original = DynamoDBBackend.transact_write_items
    if getattr(original, _MARK, False):
        return

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        shards = {
            name: (table.stream_shard, len(table.stream_shard.items))
            for name, table in self.tables.items()
            if table.stream_shard is not None
        }
        try:
            original(self, transact_items)
        except Exception:
            for name, (shard, length) in shards.items():
                table = self.tables.get(name)
                if table is not None and table.stream_shard is not shard:  # rolled back
                    del shard.items[length:]
                    shard.table = table
                    table.stream_shard = shard
            raise

    setattr(transact_write_items, _MARK, True)
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
