"""The scheduler's state store for a test: SQLite in a temporary folder, or DynamoDB on moto
in-process. A fixture parametrised with ``STORE_KINDS`` runs its tests on both."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
from moto import mock_aws

from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.adapters.local.sqlite_store import SqliteStore

STORE_KINDS = ["sqlite", "dynamodb"]


@contextmanager
def state_store(kind: str, tmp_path: Path) -> Iterator[SqliteStore | DynamoStore]:
    """``kind`` "sqlite" (``tmp_path/state.db``, closed at the end) or "dynamodb" (a table
    on moto, without its stream: moto copies each stream record at a growing cost)."""
    if kind == "sqlite":
        store = SqliteStore(tmp_path / "state.db")
        try:
            yield store
        finally:
            store.close()
        return
    with mock_aws():
        client = boto3.client(
            "dynamodb", region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        create_table(client, "stratoflow-state", stream=False)
        yield DynamoStore("stratoflow-state", client=client)
