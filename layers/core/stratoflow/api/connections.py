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

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from stratoflow.api.replies import saved
from stratoflow.auth import Action
from stratoflow.connections import (
    CONNECTION_TYPES,
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


NamePath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[a-z0-9_-]+$")]
ProjectQuery = Annotated[
    str, Query(min_length=1, max_length=200, description="The project the connection is in.")
]


class ConnectionBody(BaseModel):
    """A connection of a project; credentials only as `{{ secrets.NAME }}` references."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(max_length=32, description=f"One of: {', '.join(CONNECTION_TYPES)}.")
    settings: dict[str, str] = Field(default_factory=dict, max_length=MAX_SETTINGS)


class ConnectionView(BaseModel):
    project: str
    name: str
    type: str
    settings: dict[str, str]


class ConnectionList(BaseModel):
    connections: list[ConnectionView]


class ConnectionTest(BaseModel):
    project: str
    name: str
    ok: bool
    message: str = Field(description="What the database said (secrets shown as ***).")


def _view(c: Connection) -> ConnectionView:
    return ConnectionView(project=c.project, name=c.name, type=c.type, settings=dict(c.settings))


def register(
    app: APIGatewayRestResolver,
    backend: ConnectionsBackend,
    *,
    allow: Callable[[Action, str, str], Any],
    record: Callable[..., None],
    responses: Callable[..., Any],
) -> None:
    store = backend.store

    @app.get(
        "/connections",
        summary="The project's connections (credentials shown as their secret references)",
        tags=["connections"],
        responses=responses("The connections", 400),
    )
    def list_connections(project: ProjectQuery = "default") -> ConnectionList:
        allow(Action.READ, project, f"project {project!r}")
        return ConnectionList(connections=[_view(c) for c in store.list(project)])

    @app.get(
        "/connections/<name>",
        summary="A connection (credentials shown as their secret references)",
        tags=["connections"],
        responses=responses("The connection", 400, 404),
    )
    def get_connection(name: NamePath, project: ProjectQuery = "default") -> ConnectionView:
        allow(Action.READ, project, f"project {project!r}")
        return _view(store.get(project, name))

    @app.put(
        "/connections/<name>",
        summary="Create or replace a connection",
        tags=["connections"],
        responses=responses(
            "The connection, replaced", 400, 404, 415, created="The connection, created"
        ),
    )
    def put_connection(
        name: NamePath, body: ConnectionBody, project: ProjectQuery = "default"
    ) -> Response[ConnectionView]:
        allow(Action.ADMINISTER, project, f"project {project!r}")
        connection = validate_connection(project, name, body.type, body.settings)
        created = store.put(connection, backend.now())
        # settings hold references, never values: safe to record as they are
        record("connections.put", f"connection/{name}", project, type=connection.type,
               settings=dict(connection.settings))  # fmt: skip
        return saved(created, _view(connection))

    @app.delete(
        "/connections/<name>",
        summary="Delete a connection (the sql tasks that name it then fail, naming it)",
        tags=["connections"],
        responses=responses("Deleted", 404),
    )
    def delete_connection(name: NamePath, project: ProjectQuery = "default") -> dict[str, str]:
        allow(Action.ADMINISTER, project, f"project {project!r}")
        store.delete(project, name)
        record("connections.delete", f"connection/{name}", project)
        return {"deleted": name}

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
