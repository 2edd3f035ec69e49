"""Named connections on AWS: items of the alert table (the stack's configuration table for
alert channels and groups), ``pk=P#<project>``, ``sk=CN#<name>`` with ``type`` and
``settings`` (JSON: references, never values), read and written as the alert channels are
(``DynamoAlertStore``'s queries). The API function serves them. Its role reads no secret
value, so ``connections test`` runs where the queries run: the API function asks the
advance function (synchronously), which makes the project's identity ready and has the
project's runner function test the connection as the project's role
(``handlers.check_connection``, ``runner.check_connection``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from stratoflow.adapters.aws.alerts import DynamoAlertStore
from stratoflow.adapters.aws.counted import CountedItems
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

    def _counted(self, project: str) -> CountedItems:
        return self._table.counted(project, PREFIX, MAX_CONNECTIONS, lambda: InvalidInput(
            [Problem("name", f"project {project} has {MAX_CONNECTIONS} connections, the most")]
        ))  # fmt: skip

    def put(self, connection: Connection, now: datetime) -> bool:
        """Create or replace; True if it is new."""
        return self._counted(connection.project).put(
            connection.name,
            {"type": {"S": connection.type},
             "settings": {"S": json.dumps(dict(connection.settings))},
             "updated_at": {"S": now.isoformat()}},
        )  # fmt: skip

    def get(self, project: str, name: str) -> Connection:
        item = self._table._get(f"P#{project}", PREFIX + name)
        if item is None:
            raise MissingConnection(project, name)
        return _connection(project, item)

    def list(self, project: str) -> list[Connection]:
        return [_connection(project, item) for item in self._table._items(project, PREFIX)]

    def delete(self, project: str, name: str) -> None:
        if not self._counted(project).delete(name):
            raise MissingConnection(project, name)


TestRequest = Callable[[Mapping[str, Any]], Mapping[str, Any]]  # the request in, the answer out


def sync_invoker(client: Any) -> Callable[[str, Mapping[str, Any]], dict[str, Any]]:
    """A synchronous invocation (``RequestResponse``) of a function: its JSON answer; a
    function error raises ``RuntimeError`` with what it said."""

    def invoke(function: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        answer = client.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
        body = answer["Payload"].read().decode("utf-8", errors="replace")
        if answer.get("FunctionError"):
            raise RuntimeError(f"{answer['FunctionError']}: {body[:1000]}")
        found = json.loads(body) if body else {}
        if not isinstance(found, dict):
            raise RuntimeError(f"an answer that is not an object: {body[:200]}")
        return found

    return invoke


class AwsConnectionsApi:
    """What the ``/connections`` routes use on AWS. ``tester`` sends a connection test to the
    advance function and returns its answer (``{ok, message}``); None: no test here."""

    def __init__(
        self, store: DynamoConnectionStore, clock: Clock, tester: TestRequest | None = None
    ) -> None:
        self.store = store
        self._clock = clock
        self._tester = tester

    def now(self) -> datetime:
        return self._clock.now()

    def test(self, connection: Connection) -> TestOutcome:
        if self._tester is None:
            return TestOutcome(False, "connections cannot be tested here: no advance function")
        request = {
            "action": "test_connection",
            "project": connection.project,
            "connection": {"name": connection.name, "type": connection.type,
                           "settings": dict(connection.settings)},
        }  # fmt: skip
        try:
            answer = self._tester(request)
        except Exception as exc:  # throttled, timed out: the test did not run
            return TestOutcome(False, f"the test could not be run: {exc}")
        return TestOutcome(bool(answer.get("ok")), str(answer.get("message") or ""))
