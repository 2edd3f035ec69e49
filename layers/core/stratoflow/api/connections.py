"""``/connections``: a project's named connections (where sql tasks run) and their test.

Settings hold credentials only as ``{{ secrets.NAME }}`` references, so what these routes return
and what the audit log records never carries a credential: a literal password, or a URL with
one, is refused with a 400 naming the setting. Access is checked per project as for alert
channels: reading needs a role in the project, changing needs the administrator, testing the
operator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, ConfigDict, Field

from stratoflow.api.named_settings import NamedSettings, NamedView, NamePath, register_named
from stratoflow.auth import Action
from stratoflow.connection_types import CONNECTION_TYPES
from stratoflow.connections import (
    MAX_SETTINGS,
    Connection,
    TestOutcome,
    validate_connection,
)

if TYPE_CHECKING:
    from datetime import datetime


class ConnectionStoreLike(Protocol):
    """The local runtime's ``ConnectionStore`` (a table of the home's database)."""

    def put(self, connection: Connection, now: datetime) -> bool: ...
    def get(self, project: str, name: str) -> Connection: ...
    def list(self, project: str) -> list[Connection]: ...
    def delete(self, project: str, name: str) -> None: ...


class ConnectionsBackend(Protocol):
    """What the routes need of a runtime's connections."""

    @property
    def store(self) -> ConnectionStoreLike: ...
    def now(self) -> datetime: ...
    def test(self, connection: Connection) -> TestOutcome: ...


ProjectQuery = Annotated[
    str, Query(min_length=1, max_length=200, description="The project the connection is in.")
]


class ConnectionBody(BaseModel):
    """A connection of a project; credentials only as `{{ secrets.NAME }}` references."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(max_length=32, description=f"One of: {', '.join(CONNECTION_TYPES)}.")
    settings: dict[str, str] = Field(default_factory=dict, max_length=MAX_SETTINGS)


class ConnectionView(NamedView):
    pass


class ConnectionList(BaseModel):
    connections: list[ConnectionView]


class ConnectionTest(BaseModel):
    project: str
    name: str
    ok: bool
    message: str = Field(description="What the database said (secrets shown as ***).")


def register(
    app: APIGatewayRestResolver,
    backend: ConnectionsBackend,
    *,
    allow: Callable[[Action, str, str], Any],
    record: Callable[..., None],
    responses: Callable[..., Any],
) -> None:
    store = backend.store
    spec: NamedSettings[Connection, ConnectionBody] = NamedSettings(
        kind="connection", path="/connections", tag="connections",
        audit="connections", resource="connection", project_query=ProjectQuery,
        body=ConnectionBody, view=ConnectionView, listing=ConnectionList,
        summaries={
            "list": "The project's connections (credentials shown as their secret references)",
            "get": "A connection (credentials shown as their secret references)",
            "put": "Create or replace a connection",
            "delete": "Delete a connection (the sql tasks that name it then fail, naming it)",
        },
        items=store.list, get=store.get, delete=store.delete,
        validate=lambda project, name, body: validate_connection(
            project, name, body.type, body.settings
        ),
        put=lambda connection: store.put(connection, backend.now()),
    )  # fmt: skip
    register_named(app, spec, allow=allow, record=record, responses=responses)

    @app.post(
        "/connections/<name>/test",
        summary="Connect with the connection's settings and run SELECT 1 (ok false: why)",
        tags=["connections"],
        responses=responses("The outcome", 404),
    )
    def test_connection(name: NamePath, project: ProjectQuery = "default") -> ConnectionTest:
        allow(Action.OPERATE, project, f"project {project!r}")
        outcome = backend.test(store.get(project, name))
        record("connections.test", f"connection/{name}", project, ok=outcome.ok)
        return ConnectionTest(project=project, name=name, ok=outcome.ok, message=outcome.message)
