"""The layout the web UI computed for a workflow version, stored once and downloaded after.

The UI refines the server's quick layout (``graph_layout.quick_layout``) with ELK in a worker:
11 s at 2,000 tasks, on every visit of every browser. A version never changes, so neither
does that drawing: the first browser to lay a version out sends it here (PUT), it is kept in
the read model (``version_layouts``, compressed), and every later visit downloads it (GET)
instead of running ELK.

Its URL names the graph it draws: ``workflows/{name}/versions/{v}/layout?project=P&h=<digest>``,
the digest a blake2b of ELK's input (each task with its box's width and its parents, in the
version's order; ``layout_digest``). A run's states view carries the URL. What a URL answers
never changes, so the browser may keep it for good (``immutable``); a layout is accepted only
under its version's own digest, and only if it draws exactly that version's tasks and edges.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal
from urllib.parse import quote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratoflow.api.graph_layout import LayoutCache, node_width
from stratoflow.errors import Conflict, InvalidInput, NotFound, Problem
from stratoflow.model import Dag
from stratoflow.readmodel import ReadModel

log = logging.getLogger(__name__)

STORED_FORMAT = 1  # of the stored layout's shape and of the digest's input: bumped together
MAX_LAYOUT_CHARS = 1_000_000  # a 4,000-task layout (ELK's limit in the UI) is about 0.6 MB
MAX_TASKS = 10_000
MAX_EDGES = 4 * MAX_TASKS
MAX_POINTS = 256  # numbers in one edge's polyline (x, y, x, y, ...): ELK bends few
MAX_COORD = 10_000_000.0  # px: ten times a 10,000-task graph's extent
DIGEST_PATTERN = r"^[0-9a-f]{32}$"
# a stored layout is the same for every caller allowed to read it, and never changes; the
# browser keeps it (per caller: its authorization decides whether it may read it at all)
IMMUTABLE = "private, max-age=31536000, immutable"

DigestQuery = Annotated[
    str,
    Query(
        pattern=DIGEST_PATTERN,
        description="The digest of the graph the layout draws (the states view's `layout`).",
    ),
]
Coord = Annotated[float, Field(ge=-MAX_COORD, le=MAX_COORD, allow_inf_nan=False)]
Size = Annotated[float, Field(ge=0, le=MAX_COORD, allow_inf_nan=False)]
Polyline = Annotated[list[Coord], Field(min_length=4, max_length=MAX_POINTS)]


class StoredLayout(BaseModel):
    """A laid-out graph (parallel arrays: index i is ``tasks[i]``); ``edges`` flat pairs of
    task indices (parent, child), ``points[k]`` the polyline of edge k."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = Field(description="The stored layout's format.")
    tasks: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        max_length=MAX_TASKS, description="Task ids: exactly the version's."
    )
    x: list[Coord] = Field(max_length=MAX_TASKS, description="Left of each task, px.")
    y: list[Coord] = Field(max_length=MAX_TASKS, description="Top of each task, px.")
    w: list[Size] = Field(max_length=MAX_TASKS, description="Width of each task, px.")
    h: Size = Field(description="Height of every task, px.")
    edges: list[Annotated[int, Field(ge=0, lt=MAX_TASKS)]] = Field(
        max_length=2 * MAX_EDGES, description="Flat pairs of task indices: parent, child, ..."
    )
    points: list[Polyline] = Field(
        max_length=MAX_EDGES, description="Each edge's polyline: x, y, x, y, ... px."
    )
    width: Size
    height: Size


class LayoutStored(BaseModel):
    created: bool = Field(description="False: a layout was stored already, and stays.")
    layout: str = Field(description="Its URL (relative to the API).")


def layout_digest(dag: Dag) -> str:
    """A digest of what a layout of ``dag`` is computed from: each task (in the version's
    order) with its box's width and its parents."""
    shape = [STORED_FORMAT, [[t, node_width(t), list(dag.parents[t])] for t in dag.order]]
    text = json.dumps(shape, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def check_layout(layout: StoredLayout, dag: Dag) -> None:
    """InvalidInput unless ``layout`` draws exactly ``dag``: its tasks, once each, with a box
    each, and its edges, with a polyline each."""
    problems: list[Problem] = []
    n = len(layout.tasks)
    if set(layout.tasks) != set(dag.order) or n != len(dag.order):
        problems.append(Problem("tasks", "must be the version's task ids, each once"))
    problems += [
        Problem(field, f"must have one number per task ({n})")
        for field in ("x", "y", "w")
        if len(getattr(layout, field)) != n
    ]
    pairs = len(layout.edges) // 2
    if len(layout.edges) % 2 or len(layout.points) != pairs:
        problems.append(Problem("edges", "must be pairs of task indices, one polyline each"))
    if any(len(line) % 2 for line in layout.points):
        problems.append(Problem("points", "each polyline is x, y pairs"))
    if not problems:
        drawn = {(layout.edges[2 * k], layout.edges[2 * k + 1]) for k in range(pairs)}
        index = {task: i for i, task in enumerate(layout.tasks)}
        wanted = {(index[p], index[t]) for t in dag.order for p in dag.parents[t]}
        if drawn != wanted or pairs != len(wanted):
            problems.append(Problem("edges", "must be the version's edges, each once"))
    if problems:
        raise InvalidInput(problems)


class StoredLayouts:
    """The version layouts kept in ``readmodel`` (None: none kept; the states view then names
    no URL and the UI lays out as before), with their digests (kept per version)."""

    def __init__(
        self,
        readmodel: ReadModel | None,
        dag_of: Callable[[str, str, int], Dag],
        now: Callable[[], datetime],
    ) -> None:
        self._readmodel = readmodel
        self._dag_of = dag_of
        self._now = now
        self._digests = LayoutCache(size=256)

    def digest(self, project: str, name: str, version: int) -> str:
        key = (project, name, version)
        found: str = self._digests.get(key, lambda: layout_digest(self._dag_of(*key)))
        return found

    def url(self, project: str, name: str, version: int) -> str | None:
        """Where the version's stored layout is (to be), or None when none can be kept."""
        if self._readmodel is None:
            return None
        try:
            h = self.digest(project, name, version)
        except Exception:  # a version the scheduler cannot parse now: the view still answers
            log.warning("no layout digest for %s/%s v%s", project, name, version, exc_info=True)
            return None
        return (
            f"workflows/{quote(name, safe='')}/versions/{version}/layout"
            f"?project={quote(project, safe='')}&h={h}"
        )

    def _check_digest(self, project: str, name: str, version: int, h: str) -> None:
        if h != self.digest(project, name, version):
            raise NotFound(
                f"no layout {h} of version {version} of workflow {name!r}: h is not the "
                "digest of its graph (the run's states view names the URL)"
            )

    def get(self, project: str, name: str, version: int, h: str) -> Response[Any]:
        self._check_digest(project, name, version, h)
        text = None
        if self._readmodel is not None:
            text = self._readmodel.version_layout(project, name, version, h)
        if text is None:
            raise NotFound(f"no layout {h} of version {version} of workflow {name!r} stored yet")
        return Response(
            status_code=HTTPStatus.OK.value,
            content_type=content_types.APPLICATION_JSON,
            body=text,
            headers={"Cache-Control": IMMUTABLE, "Vary": "Authorization"},
        )

    def put(self, project: str, name: str, version: int, h: str, raw: str) -> LayoutStored:
        if len(raw) > MAX_LAYOUT_CHARS:
            raise ServiceError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE.value,
                f"the layout is {len(raw):,} characters; at most {MAX_LAYOUT_CHARS:,}",
            )
        if self._readmodel is None:
            raise Conflict("this server keeps no layouts (it has no read model)")
        try:
            self._check_digest(project, name, version, h)
        except NotFound as exc:
            raise Conflict(str(exc)) from None
        layout = parse_layout(raw)
        check_layout(layout, self._dag_of(project, name, version))
        created = self._readmodel.store_version_layout(
            project, name, version, h, layout.model_dump_json(), self._now()
        )
        url = self.url(project, name, version)
        assert url is not None  # a read model is there
        return LayoutStored(created=created, layout=url)


def parse_layout(raw: str) -> StoredLayout:
    """The request's body as a StoredLayout; a 422 naming each problem otherwise."""
    try:
        return StoredLayout.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
        raise RequestValidationError(errors) from None


def document(openapi: dict[str, Any]) -> None:
    """Describe the PUT's body in the OpenAPI document (read raw, to cap its size before
    it is parsed, so Powertools does not know it)."""
    path = openapi.get("paths", {}).get("/workflows/{name}/versions/{version}/layout", {})
    schema = StoredLayout.model_json_schema()
    put = path.get("put")
    if put is not None:
        put["requestBody"] = {
            "required": True,
            "description": f"The layout, at most {MAX_LAYOUT_CHARS:,} characters.",
            "content": {content_types.APPLICATION_JSON: {"schema": schema}},
        }
    # the GET answers the quick layout without h, the stored one with it
    ok = path.get("get", {}).get("responses", {}).get("200", {})
    json_content = ok.get("content", {}).get(content_types.APPLICATION_JSON)
    if json_content is not None and "schema" in json_content:
        json_content["schema"] = {"anyOf": [json_content["schema"], schema]}
