"""The routes of a project's named settings: list, get, put and delete of one kind of them.

Alert channels and connections are both a ``type`` and ``settings`` under a name in a project,
with credentials only as ``{{ secrets.NAME }}`` references (the kind's validator refuses a
literal one), so what these routes return and what the audit log records never carries a
credential. Reading needs a role in the project, changing needs the administrator.

The routes are built once here for every kind; each kind's own names (its route functions, and
so their OpenAPI operation ids, its models, summaries and audit actions) come from its
:class:`NamedSettings`, so the API each serves is what it would be written out by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Protocol, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel

from stratoflow.api.replies import saved
from stratoflow.auth import Action

NamePath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[a-z0-9_-]+$")]


class Named(Protocol):
    """A named setting of a project: an alert channel, a connection."""

    @property
    def project(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def settings(self) -> Mapping[str, str]: ...


class NamedView(BaseModel):
    # no docstring: a subclass's own (or none) is what its OpenAPI schema describes
    project: str
    name: str
    type: str
    settings: dict[str, str]

    @classmethod
    def of(cls, item: Named) -> NamedView:
        return cls(
            project=item.project, name=item.name, type=item.type, settings=dict(item.settings)
        )


N = TypeVar("N", bound=Named)
B = TypeVar("B", bound=BaseModel)


@dataclass(frozen=True)
class NamedSettings(Generic[N, B]):
    """One kind of named settings: how its routes are named and how they reach its store.

    ``kind`` ("connection") names the route functions (``list_connections``, ``get_connection``,
    ``put_connection``, ``delete_connection``) and the replies' descriptions; the list reply is
    ``listing`` with one field, ``kind`` + "s". ``audit`` ("connections") and ``resource``
    ("connection") make the audit log's ``connections.put`` on ``connection/NAME``. A kind
    without a ``get`` has no route to read one."""

    kind: str
    path: str
    tag: str
    audit: str
    resource: str
    project_query: Any  # the ``project`` query parameter's annotation (its description)
    body: type[B]
    view: type[NamedView]
    listing: type[BaseModel]
    summaries: Mapping[str, str]  # "list", "get", "put", "delete": each route's summary
    items: Callable[[str], Sequence[N]]
    validate: Callable[[str, str, B], N]
    put: Callable[[N], bool]  # True when it created
    delete: Callable[[str, str], None]
    get: Callable[[str, str], N] | None = None
    delete_errors: tuple[int, ...] = (404,)


def register_named(
    app: APIGatewayRestResolver,
    spec: NamedSettings[N, B],
    *,
    allow: Callable[[Action, str, str], Any],
    record: Callable[..., None],
    responses: Callable[..., Any],
) -> None:
    """Add ``spec``'s list, get (when it has one), put and delete routes to ``app``."""
    kind, one = spec.kind, f"{spec.path}/<name>"
    saved_reply: Any = Response  # subscripted at run time with the kind's view

    def route(add: Callable[..., Any], path: str, fn: Callable[..., Any], verb: str,
              reply: Any, returns: Any, **params: Any) -> None:  # fmt: skip
        # the resolver reads a route's parameters and reply from its annotations and names its
        # operation after the function: both as the kind's hand-written route had them
        fn.__name__ = fn.__qualname__ = f"{verb}_{kind}s" if verb == "list" else f"{verb}_{kind}"
        fn.__annotations__ = {**params, "return": returns}
        add(path, summary=spec.summaries[verb], tags=[spec.tag], responses=reply)(fn)

    def list_items(project: str = "default") -> BaseModel:
        allow(Action.READ, project, f"project {project!r}")
        views = [spec.view.of(c) for c in spec.items(project)]
        return spec.listing(**{f"{kind}s": views})

    route(app.get, spec.path, list_items, "list", responses(f"The {kind}s", 400), spec.listing,
          project=spec.project_query)  # fmt: skip

    if spec.get is not None:
        get = spec.get

        def get_item(name: str, project: str = "default") -> NamedView:
            allow(Action.READ, project, f"project {project!r}")
            return spec.view.of(get(project, name))

        route(app.get, one, get_item, "get", responses(f"The {kind}", 400, 404), spec.view,
              name=NamePath, project=spec.project_query)  # fmt: skip

    def put_item(name: str, body: B, project: str = "default") -> Response[NamedView]:
        allow(Action.ADMINISTER, project, f"project {project!r}")
        item = spec.validate(project, name, body)
        created = spec.put(item)
        # settings hold references, never values: safe to record as they are
        record(f"{spec.audit}.put", f"{spec.resource}/{name}", project, type=item.type,
               settings=dict(item.settings))  # fmt: skip
        return saved(created, spec.view.of(item))

    route(app.put, one, put_item, "put",
          responses(f"The {kind}, replaced", 400, 404, 415, created=f"The {kind}, created"),
          saved_reply[spec.view], name=NamePath, body=spec.body, project=spec.project_query)  # fmt: skip

    def delete_item(name: str, project: str = "default") -> dict[str, str]:
        allow(Action.ADMINISTER, project, f"project {project!r}")
        spec.delete(project, name)
        record(f"{spec.audit}.delete", f"{spec.resource}/{name}", project)
        return {"deleted": name}

    route(app.delete, one, delete_item, "delete", responses("Deleted", *spec.delete_errors),
          dict[str, str], name=NamePath, project=spec.project_query)  # fmt: skip
