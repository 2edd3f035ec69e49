"""Fixtures of the contract suite: every adapter of a port runs the same tests.

The tests in this folder speak only to the ports (``stratoflow.ports.StateStore`` and
``stratoflow.ports.Catalog``). Each adapter is one entry in a registry below; adding the
DynamoDB store later (on moto) is one more entry in ``STORES``, and the whole suite runs
against it unchanged.

An entry opens a fresh, empty adapter for one test and cleans it up afterwards. It also
declares what the port leaves optional (see :class:`StoreAdapter`), so a test of an optional
behaviour is skipped, not failed, where the port allows the adapter not to have it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.ports import Catalog, StateStore


@dataclass(frozen=True)
class StoreAdapter:
    name: str
    # tmp_path -> a context manager that yields a fresh, empty store and disposes of it
    open: Callable[[Path], AbstractContextManager[StateStore]]
    # StateStore.transaction(): "SQLite: one atomic transaction. Stores without multi-item
    # transactions make this a no-op". Only stores that group writes atomically are held to
    # "an exception inside transaction() leaves nothing written".
    atomic_transactions: bool


@dataclass(frozen=True)
class CatalogAdapter:
    name: str
    open: Callable[[Path], AbstractContextManager[Catalog]]


@contextmanager
def _sqlite(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "stratoflow.db")
    try:
        yield store
    finally:
        store.close()


class _OneRequestAtATime:
    """A boto3 client whose requests moto applies one at a time.

    Real DynamoDB applies each request (a conditional write, a transaction) atomically; moto
    keeps its tables in plain dicts with no lock, so two threads' conditional writes could
    interleave inside moto and both pass their condition. Serialising whole requests gives
    moto DynamoDB's per-request atomicity and nothing more: the racing tests still interleave
    freely between requests, which is where the store's conditions must hold.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


@contextmanager
def _dynamodb_on_moto(tmp_path: Path) -> Iterator[DynamoStore]:
    """DynamoStore on moto's in-process DynamoDB, the table made from TABLE_SCHEMA."""
    with mock_aws():
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        # without the stream: moto copies each stream record at a cost growing with the table
        create_table(client, "stratoflow-state", stream=False)
        yield DynamoStore("stratoflow-state", client=_OneRequestAtATime(client))


# One entry per StateStore implementation.
STORES: dict[str, StoreAdapter] = {
    "sqlite": StoreAdapter("sqlite", _sqlite, atomic_transactions=True),
    # DynamoDB has no multi-request transaction: its transaction() is the port's no-op
    "dynamodb": StoreAdapter("dynamodb", _dynamodb_on_moto, atomic_transactions=False),
}

# One entry per Catalog implementation (SQLite locally; Aurora via the RDS Data API later).
CATALOGS: dict[str, CatalogAdapter] = {
    "sqlite": CatalogAdapter("sqlite", _sqlite),
    "dynamodb": CatalogAdapter("dynamodb", _dynamodb_on_moto),
}


@pytest.fixture(params=list(STORES))
def store_adapter(request: pytest.FixtureRequest) -> StoreAdapter:
    return STORES[request.param]


@pytest.fixture
def store(store_adapter: StoreAdapter, tmp_path: Path) -> Iterator[StateStore]:
    with store_adapter.open(tmp_path) as opened:
        yield opened


@pytest.fixture
def atomic_transactions(store_adapter: StoreAdapter) -> bool:
    """Whether ``store.transaction()`` groups writes atomically (else the port allows a no-op)."""
    return store_adapter.atomic_transactions


@pytest.fixture(params=list(CATALOGS))
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    with CATALOGS[request.param].open(tmp_path) as opened:
        yield opened
