"""The projector on moto: a real DynamoStore (table from TABLE_SCHEMA, stream on) driven by the
real Scheduler, and the stream records moto wrote, read back with dynamodbstreams
(``AWS_ACCOUNT_ID_ENDPOINT_MODE=disabled`` is what moto's stream API needs)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.service import Scheduler
from tests.fakes import FakeClock, RecordingDispatcher

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


class Stream:
    """The table's stream on moto, read incrementally; records come out as Lambda delivers
    them (``eventSourceARN`` added, ``ApproximateCreationDateTime`` as epoch seconds)."""

    def __init__(self, client: Any, table: str) -> None:
        self.arn = client.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.streams = boto3.client("dynamodbstreams", region_name=REGION)
        (shard,) = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        self.iterator = self.streams.get_shard_iterator(
            StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        self.seen: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        """The records written since the last read."""
        out: list[dict[str, Any]] = []
        while True:
            page = self.streams.get_records(ShardIterator=self.iterator, Limit=1000)
            self.iterator = page["NextShardIterator"]
            if not page["Records"]:
                break
            for record in page["Records"]:
                body = dict(record["dynamodb"])
                when = body["ApproximateCreationDateTime"]
                body["ApproximateCreationDateTime"] = when.timestamp()
                out.append({**record, "dynamodb": body, "eventSourceARN": self.arn})
        self.seen += out
        return out


class Env:
    def __init__(self) -> None:
        self.client = boto3.client("dynamodb", region_name=REGION)
        self.table = f"state-{uuid.uuid4().hex[:8]}"
        create_table(self.client, self.table)
        self.store = DynamoStore(self.table, client=self.client)
        self.stream = Stream(self.client, self.table)
        self.clock = TickingClock(datetime(2026, 11, 21, 2, 0, tzinfo=UTC))
        self.dispatcher = RecordingDispatcher()
        self.scheduler = Scheduler(self.store, self.store, self.dispatcher, self.clock)


class TickingClock(FakeClock):
    def now(self) -> datetime:
        self.current += timedelta(milliseconds=7)
        return self.current


@pytest.fixture
def env(aws: None) -> Env:
    return Env()


@pytest.fixture(params=["sqlite", "postgresql"])
def make_db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """A factory of fresh, empty read-model databases: SQLite files, or scratch databases on
    the real PostgreSQL server (the read-model tests' rule: skipped locally, failed in CI,
    when it is unreachable), dropped afterwards."""
    from stratoflow.readmodel import connect
    from tests.readmodel.conftest import ADMIN_URL, admin_connection, scratch_url

    opened: list[Any] = []
    scratch: list[str] = []
    admin: Any = admin_connection() if request.param == "postgresql" else None

    def make() -> Any:
        if admin is None:
            url = str(tmp_path / f"rm-{len(opened)}.db")
        else:
            name = f"sf_test_{uuid.uuid4().hex[:12]}"
            admin.execute(f'CREATE DATABASE "{name}"')
            scratch.append(name)
            url = scratch_url(ADMIN_URL, name)
        db = connect(url)
        opened.append(db)
        return db

    yield make
    for db in opened:
        db.close()
    if admin is not None:
        for name in scratch:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
