"""Named connections on AWS: items of the alert table (the stack's configuration table for
alert channels and groups), ``pk=P#<project>``, ``sk=CN#<name>`` with ``type`` and
``settings`` (JSON: references, never values), read and written as the alert channels are
(``DynamoAlertStore``'s queries). The API function serves them; its role reads no secret
value, so ``connections test`` answers that the test runs where the queries run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stratoflow.adapters.aws.alerts import DynamoAlertStore
from stratoflow.connections import MAX_CONNECTIONS, Connection, MissingConnection, TestOutcome
from stratoflow.errors import InvalidInput, Problem
from stratoflow.ports import Clock

PREFIX = "CN#"


def _connection(project: str, item: Mapping[str, Any]) -> Connection:
    return Connection(
        project,
        item["sk"]["S"][len(PREFIX) :],
        item["type"]["S"],
        json.loads(item["settings"]["S"]),
    )


class DynamoConnectionStore:
    def __init__(self, table: str, client: Any) -> None:
        self._table = DynamoAlertStore(table, client)  # its queries over one project's items

    def put(self, connection: Connection, now: datetime) -> bool:
        """Create or replace; True if it is new."""
        t = self._table
        exists = t._get(f"P#{connection.project}", PREFIX + connection.name) is not None
        if not exists and t._count(connection.project, PREFIX) >= MAX_CONNECTIONS:
            raise InvalidInput([Problem("name", f"project {connection.project} has "
                                        f"{MAX_CONNECTIONS} connections, the most")])  # fmt: skip
        t.client.put_item(
            TableName=t.table,
            Item={
                "pk": {"S": f"P#{connection.project}"}, "sk": {"S": PREFIX + connection.name},
                "type": {"S": connection.type},
                "settings": {"S": json.dumps(dict(connection.settings))},
                "updated_at": {"S": now.isoformat()},
            },
        )  # fmt: skip
        return not exists

    def get(self, project: str, name: str) -> Connection:
        item = self._table._get(f"P#{project}", PREFIX + name)
        if item is None:
            raise MissingConnection(project, name)
        return _connection(project, item)

    def list(self, project: str) -> list[Connection]:
        return [_connection(project, item) for item in self._table._items(project, PREFIX)]

    def delete(self, project: str, name: str) -> None:
        t = self._table
        if t._get(f"P#{project}", PREFIX + name) is None:
            raise MissingConnection(project, name)
        t.client.delete_item(
            TableName=t.table, Key={"pk": {"S": f"P#{project}"}, "sk": {"S": PREFIX + name}}
        )


class AwsConnectionsApi:
    """What the ``/connections`` routes use on AWS."""

    def __init__(self, store: DynamoConnectionStore, clock: Clock) -> None:
        self.store = store
        self._clock = clock

    def now(self) -> datetime:
        return self._clock.now()

    def test(self, connection: Connection) -> TestOutcome:
        return TestOutcome(
            False,
            "connections cannot be tested from the API on AWS: its role reads no secret "
            "value; run a workflow with an sql task on it (the project's runner connects)",
        )
