"""The REST API: one Powertools resolver, served by API Gateway (Lambda) or the local server.

``create_app`` wires routes to a ``Scheduler``; request and response bodies are the pydantic
models in ``api.models`` (and so the OpenAPI document at ``GET /openapi.json``); response
bodies are built by ``stratoflow.views``, so the API and the CLI show the same shapes.

Errors are mapped in one place, by exception type (``_register_errors``): every error body is
``{"error", "message", "problems"}`` and never carries a traceback or the offending input
value (which may be a secret).

A resolver keeps per-request state on itself, so one app serves one request at a time; the
local server serialises requests onto one worker thread.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import cache, partial
from http import HTTPStatus
from importlib import metadata
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic_core
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import (
    OpenAPIResponse,
    OpenAPIResponseContentModel,
    OpenAPIResponseContentSchema,
)
from aws_lambda_powertools.shared.json_encoder import Encoder
from pydantic import AwareDatetime, BaseModel

from stratoflow.api.access import Authenticator
from stratoflow.api.backfills import register_backfills
from stratoflow.api.graph_layout import LayoutCache, quick_layout
from stratoflow.api.long_poll import MAX_HELD, MAX_WAIT
from stratoflow.api.replies import saved
from stratoflow.api.stored_layouts import (
    MAX_LAYOUT_CHARS,
    DigestQuery,
    LayoutStored,
    StoredLayouts,
)
from stratoflow.api.stored_layouts import document as document_stored_layout
from stratoflow.api.text_diff import unified_lines

if TYPE_CHECKING:
    from stratoflow.api.alerts import AlertsBackend
    from stratoflow.api.connections import ConnectionsBackend
from stratoflow.api.models import (
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    AppliedVersion,
    ApplyRequest,
    AuditList,
    ErrorView,
    GraphLayout,
    Health,
    MarkRequest,
    Me,
    RerunRequest,
    RunDetail,
    RunIdPath,
    RunList,
    RunStates,
    RunView,
    TaskIdPath,
    TaskView,
    Timeline,
    TriggerRequest,
    VersionDetail,
    VersionDiff,
    VersionList,
    WorkflowList,
    WorkflowNamePath,
)
from stratoflow.audit import AuditJournal
from stratoflow.audit import intent as audit_intent
from stratoflow.auth import (
    ANONYMOUS_ADMIN,
    Action,
    Forbidden,
    Principal,
    Unauthenticated,
    require,
)
from stratoflow.dependencies import foreign_upstreams
from stratoflow.engine import Run, RunState, TaskInstance, TaskState, subworkflow
from stratoflow.errors import (
    LISTED_PROBLEMS,
    Conflict,
    InvalidInput,
    NotFound,
    Problem,
    ScheduleSyncFailed,
    Unavailable,
    UnprocessableInput,
    more_problems,
)
from stratoflow.faults import machine_fault
from stratoflow.model import (
    SCHEMA_URL_PATH,
    WorkflowSpec,
    load_workflow,
    next_firing,
    workflow_schema_document,
)
from stratoflow.model._workflow import NAME_PATTERN
from stratoflow.ports import Attempt, LogRange, RunChangeLog, RunQuery, WorkflowVersion
from stratoflow.readmodel import AuditEntry, ReadModel, RunFilter
from stratoflow.secrets import (
    SecretSource,
    SecretStore,
    SecretUnavailable,
    check_project,
    masker_for,
)
from stratoflow.service import Scheduler
from stratoflow.views import (
    attempt_view,
    output_text,
    run_detail,
    run_view,
    task_view,
    version_view,
    with_running_attempt,
)

log = logging.getLogger("stratoflow.api")

DEFAULT_PROJECT = "default"
MAX_LIMIT = 500
MAX_LOG_CHUNK = 4 * 1024 * 1024  # bytes per log response (a Lambda response is at most 6 MB)
# A text page (a log, an output value) as an answer's body carries it, at most: its text as a
# JSON string in UTF-8, which is how the Lambda runtime (python3.12) sends the proxy response.
# A byte that is not UTF-8 becomes U+FFFD (3 bytes), a control byte \u00XX (6), a quote \"
# (2): 4 MiB of log could be 24 MiB of answer. The rest of the 6 MB is the headers' and
# the envelope's. A page that would be larger ends sooner (X-Next-Offset says where).
MAX_PAGE_WIRE = 5 * 1024 * 1024
# A workflow version as GET .../versions/N answers it (its source and document; as above): a
# workflow whose view would be larger is refused when applied, so every version stored can be
# read back on AWS (the loader bounds the source at 2 MiB; escaping can double it, twice)
MAX_VERSION_WIRE = 5 * 1024 * 1024
NEXT_OFFSET_HEADER = "X-Next-Offset"
LOG_SIZE_HEADER = "X-Log-Size"
OUTPUT_SIZE_HEADER = "X-Output-Size"
TRIGGER = "api"
DEFAULT_WORKFLOW_PAGE = 100

# The operations the UI offers, by the permission (``stratoflow.auth``) each needs. ``GET /me``
# lists those the caller's role allows in a project; the UI shows only those buttons. An API
# made without an authenticator (one nobody else can reach) treats everyone as a superuser.
UI_ACTIONS: Mapping[Action, tuple[str, ...]] = {
    Action.OPERATE: (
        "workflow.pause",
        "run.trigger",
        "run.pause",
        "run.resume",
        "run.stop",
        "run.rerun",
        "task.mark",
        "task.force_start",
        "alerts.test",
        "connections.test",
    ),
    Action.EDIT: (
        "workflow.apply",
        "secrets.edit",
        "resources.edit",
        "pools.edit",
        "variables.edit",
    ),
    Action.ADMINISTER: ("alerts.edit", "connections.edit"),
}
ACTIONS = tuple(name for names in UI_ACTIONS.values() for name in names)

# The built web UI (``ui/``, ``npm run build``) is package data here.
STATIC_DIR = FilePath(__file__).parent / "static"
_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
_TEXT_PREFIXES = ("text/", "application/json", "image/svg+xml")
# Vite puts a content hash in every asset's name, so an asset never changes: cache it for a
# year. index.html names the current assets, so it is revalidated every time.
ASSET_CACHE = "public, max-age=31536000, immutable"
SCHEMA_MEDIA_TYPE = "application/schema+json"
INDEX_CACHE = "no-cache"

# (attempt, offset, length) -> up to ``length`` bytes of its log from ``offset``, or None when
# it has no log (yet). A reader reads only that range, however long the log has grown.
ReadLog = Callable[[Attempt, int, int], LogRange | None]
UTF8_MAX = 4  # bytes in the longest UTF-8 character
LOG_HELD_HEADER = "X-Log-Held"  # a running log's last bytes held back (secrets: see get_log)

# Parameter types shared by several routes (module level: Powertools resolves the string
# annotations against this module's globals).
ProjectQuery = Annotated[
    str, Query(min_length=1, max_length=200, description="The workflow's project.")
]
VersionPath = Annotated[int, Path(ge=1, le=2**31 - 1)]
AttemptPath = Annotated[int, Path(ge=1, le=2**31 - 1)]
WorkflowQuery = Annotated[str | None, Query(min_length=1, max_length=200)]
StateQuery = Annotated[RunState | None, Query(description="Only runs in this state.")]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")]
BeforeQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=200, description="Cursor: the `next` of the previous page."),
]
OffsetQuery = Annotated[int, Query(ge=0, le=2**62, description="Start at this byte of the log.")]
LogLimitQuery = Annotated[
    int, Query(ge=1, le=MAX_LOG_CHUNK, description="At most this many bytes (a page of the log).")
]
AttemptQuery = Annotated[
    int | None,
    Query(ge=1, le=2**31 - 1, description="That attempt's outputs; default: the task's own."),
]
AfterNameQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=200, description="Cursor: the `next` of the previous page."),
]
BeforeVersionQuery = Annotated[
    int | None,
    Query(ge=1, le=2**31 - 1, description="Cursor: the `next` of the previous page."),
]
DiffFromQuery = Annotated[
    int | None,
    Query(alias="from", ge=1, le=2**31 - 1, description="Older version; default: `to` - 1."),
]
DiffToQuery = Annotated[
    int | None, Query(ge=1, le=2**31 - 1, description="Newer version; default: the latest.")
]
SinceQuery = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**62,
        description=(
            "Only the tasks changed after this revision (the `revision` of a view you have); "
            "the answer then says `full: false`. A revision the run has not reached, or a "
            "store that keeps no revisions, gets the whole run (`full: true`)."
        ),
    ),
]
WaitQuery = Annotated[
    float | None,
    Query(
        gt=0,
        le=MAX_WAIT,  # the bound the local server holds requests within (api/long_poll.py)
        description=(
            f"Long poll, up to this many seconds (0 < wait <= {MAX_WAIT:g}): when the answer "
            "would be `304` (`If-None-Match` names the current `ETag`) or a delta with nothing "
            "new (`since` is the current revision), `stratoflow server` holds the request "
            "until the run changes or `wait` elapses, then answers as usual (still `304` if "
            f"nothing changed). At most {MAX_HELD} requests are held at once; beyond that, and "
            "on AWS (API Gateway and Lambda hold no request), the answer comes at once."
        ),
    ),
]
UntilQuery = Annotated[
    Literal["ended"] | None,
    Query(
        description=(
            "With `wait`: `ended` holds the request while the run has not ended (succeeded, "
            "failed or stopped), whatever else changes, until `wait` elapses; then answers "
            "as usual. For a client that wants the run's end, not each step "
            "(`stratoflow trigger --wait`). Without `wait`: 422. Where requests are not held "
            "(AWS), the answer comes at once."
        ),
    ),
]
ApplyBody = Annotated[ApplyRequest, Body()]
TriggerBody = Annotated[TriggerRequest | None, Body()]
RerunBody = Annotated[RerunRequest | None, Body()]
MarkBody = Annotated[MarkRequest, Body()]


# ------------------------------------------------------------------ errors
# The one table from exception type to HTTP status and error code.
_DOMAIN_ERRORS: Mapping[type[Exception], tuple[HTTPStatus, str]] = {
    InvalidInput: (HTTPStatus.BAD_REQUEST, "invalid_input"),
    # a value the schema cannot refuse but that cannot be used (a trigger's logical date that
    # is not a date, or has not come): what the schema's refusals are, a 422 naming the field
    UnprocessableInput: (HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request"),
    NotFound: (HTTPStatus.NOT_FOUND, "not_found"),
    Conflict: (HTTPStatus.CONFLICT, "conflict"),
    Unauthenticated: (HTTPStatus.UNAUTHORIZED, "unauthenticated"),
    Forbidden: (HTTPStatus.FORBIDDEN, "forbidden"),
    Unavailable: (HTTPStatus.SERVICE_UNAVAILABLE, "unavailable"),
    # the version is stored but EventBridge Scheduler refused or failed its schedule: the
    # message names the error and says to apply again (a service behind the API failed: 502)
    ScheduleSyncFailed: (HTTPStatus.BAD_GATEWAY, "schedule_sync_failed"),
    # a project's secrets that cannot be used as they are (a file others can read, not ours):
    # the message names the file and the fix, never a value; no retry helps until it is fixed
    SecretUnavailable: (HTTPStatus.SERVICE_UNAVAILABLE, "secrets_unavailable"),
}
# the errors a write request is refused with that promise nothing was changed: its audit
# intent is withdrawn (any other failure leaves a line, "outcome unknown")
_REFUSALS: tuple[type[BaseException], ...] = (
    InvalidInput, NotFound, Conflict, Unauthenticated, Forbidden, Unavailable,
)  # fmt: skip


def _refused(exc: BaseException) -> bool:
    """Whether a request that raised ``exc`` was refused (nothing changed): a ``_REFUSALS``
    error, or a client error of Powertools' (a layout too large: 413)."""
    return isinstance(exc, _REFUSALS) or (isinstance(exc, ServiceError) and exc.status_code < 500)


# routes anyone may call: liveness, the API's and the workflow format's descriptions, and the
# UI's static files
PUBLIC_PATHS = frozenset({"/", "/health", "/openapi.json", SCHEMA_URL_PATH})


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith("/assets/")


_DESCRIPTIONS = {
    400: "Invalid input: `problems` name each field and the reason (the first 100; "
    "`message` counts them all)",
    401: "No valid identity: send `Authorization: Bearer <token>`",
    403: "The caller's role in the project does not allow this",
    404: "Not found",
    409: "The operation does not apply to the current state",
    413: "The body is larger than the route accepts",
    415: "The body is not JSON",
    422: "The request does not match the schema: `problems` name each field (the first "
    "100; `message` counts them all)",
    500: "Internal error (details only in the server log)",
    502: "The change is stored, but the workflow's EventBridge schedule could not be written "
    "(AWS): `message` says why; make the same request again to retry",
    503: "The machine cannot serve it now (disk full, I/O error, busy): nothing was changed; "
    "retry after `Retry-After` seconds",
}


_PATH_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _path_control(path: str) -> str | None:
    """The first control (or bidirectional override) character of a request path, escaped."""
    found = _PATH_CONTROL.search(path)
    return None if found is None else ascii(found.group())[1:-1]


def _error_response(
    status: HTTPStatus,
    error: str,
    message: str,
    problems: Sequence[Problem] = (),
    headers: Mapping[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "error": error,
        "message": message,
        "problems": [
            {"path": p.path, "message": p.message, "line": p.line}
            for p in problems[:LISTED_PROBLEMS]  # the message counts them all
        ],
    }
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers=dict(headers) if headers else None,
    )


def _loc(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _validation_problems(errors: Sequence[Any]) -> list[Problem]:
    """Field and reason of each pydantic error; never the input value (it may be a secret)."""
    problems = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "malformed")
            problems.append(Problem("body", f"the body is not valid JSON ({reason})"))
        else:
            problems.append(Problem(_loc(loc) or "request", str(error.get("msg", "invalid"))))
    return problems


def _summary(problems: Sequence[Problem]) -> str:
    if len(problems) == 1:
        return str(problems[0])
    listed = [str(p) for p in problems[:LISTED_PROBLEMS]]
    if len(problems) > LISTED_PROBLEMS:
        listed.append(more_problems(len(problems)))
    return f"{len(problems):,} problems: " + "; ".join(listed)


_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def not_json(app: APIGatewayRestResolver) -> Response[dict[str, Any]]:
    """The 415 of a body that is not JSON: what the route reads (``POST /workflows``: the
    workflow's YAML in a JSON ``source``) and the content type that was sent."""
    event = app.current_event
    sent = (event.headers.get("content-type") or "").split(";")[0].strip() if event else ""
    route = app.context.get("_route")
    if route is not None and (route.method, route.path) == ("POST", "/workflows"):
        wanted = 'send the body as JSON {"source": "<the workflow\'s YAML text>"}'
    else:
        wanted = "send the body as JSON"
    return _error_response(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        f"{wanted} (Content-Type: application/json)" + (f", not {sent}"[:200] if sent else ""),
    )


def form_refused(app: APIGatewayRestResolver) -> Response[dict[str, Any]] | None:
    """A 415 (``not_json``) for a form-encoded or multipart body (not empty) sent to a route
    that reads a JSON body, else None. Powertools would parse the form into fields and answer with their
    names (``body.notjson: Extra inputs are not permitted``, or a line of the YAML as a
    field's name), which says nothing of what the route reads."""
    event = app.current_event
    route = app.context.get("_route")
    dependant = getattr(route, "dependant", None)
    if event is None or dependant is None or not dependant.body_params or not event.body:
        return None  # an empty form is no body: nothing in it to misread
    sent = (event.headers.get("content-type") or "").strip().lower()
    return not_json(app) if sent.startswith(_FORMS) else None


def _register_errors(app: APIGatewayRestResolver) -> None:
    def domain_error(exc: Exception) -> Response[dict[str, Any]]:
        for cls in type(exc).__mro__:
            if cls in _DOMAIN_ERRORS:
                status, code = _DOMAIN_ERRORS[cls]
                problems = exc.problems if isinstance(exc, InvalidInput) else ()
                headers = None
                if isinstance(exc, Unavailable):
                    log.warning("unavailable (%r): %s", exc.__cause__, exc)
                    headers = {"Retry-After": str(exc.retry_after)}
                return _error_response(status, code, str(exc), problems, headers)
        return internal_error(exc)  # pragma: no cover - only registered for the table's types

    def request_invalid(exc: RequestValidationError) -> Response[dict[str, Any]]:
        problems = _validation_problems(exc.errors())
        route = app.context.get("_route")
        if route is not None and (route.method, route.path) == ("POST", "/workflows"):
            # the YAML file itself sent as the body: say where it goes
            problems = [
                Problem(p.path, f'{p.message}: send {{"source": "<the workflow\'s YAML text>"}}')
                if p.path == "body" and p.message.startswith("the body is not valid JSON")
                else p
                for p in problems
            ]
        return _error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request", _summary(problems), problems
        )

    def unsupported_type(exc: RequestUnsupportedContentType) -> Response[dict[str, Any]]:
        return not_json(app)

    def undecodable(exc: Exception) -> Response[dict[str, Any]]:
        reason = "not valid base64" if isinstance(exc, binascii.Error) else "not UTF-8 text"
        problem = Problem("body", f"the body is {reason}")
        return _error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request", str(problem), [problem]
        )

    def route_not_found(exc: NotFoundError) -> Response[dict[str, Any]]:
        path = app.current_event.path if app.current_event is not None else ""
        method = app.current_event.http_method if app.current_event is not None else ""
        if (bad := _path_control(path)) is not None:
            # a name with a control character matches no route's pattern: say why instead
            problem = Problem("path", f"contains the control character {bad}: no name has one")
            return _error_response(
                HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request", str(problem), [problem]
            )
        return _error_response(
            HTTPStatus.NOT_FOUND, "not_found", f"no route for {method} {path}"[:300]
        )

    def service_error(exc: ServiceError) -> Response[dict[str, Any]]:
        try:
            status = HTTPStatus(exc.status_code)
        except ValueError:
            return internal_error(exc)
        message = exc.msg if isinstance(exc.msg, str) else status.phrase
        return _error_response(status, status.phrase.lower().replace(" ", "_"), message)

    def internal_error(exc: Exception) -> Response[dict[str, Any]]:
        fault = machine_fault(exc)  # a full disk is not a bug: 503, not 500
        if fault is not None:
            return domain_error(fault)
        log.error("internal error while serving a request", exc_info=exc)
        return _error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details",
        )

    app.exception_handler(list(_DOMAIN_ERRORS))(domain_error)
    app.exception_handler(RequestValidationError)(request_invalid)
    app.exception_handler(RequestUnsupportedContentType)(unsupported_type)
    app.exception_handler([UnicodeDecodeError, binascii.Error])(undecodable)
    app.exception_handler(NotFoundError)(route_not_found)

    def unchanged(exc: Unchanged) -> Response[Any]:
        return Response(
            status_code=HTTPStatus.NOT_MODIFIED.value,
            body="",
            headers={"ETag": exc.tag, "Cache-Control": "no-cache"},
        )

    app.exception_handler(Unchanged)(unchanged)
    app.exception_handler(ServiceError)(service_error)
    app.exception_handler(ResponseValidationError)(internal_error)

    def unreadable_body(exc: ValueError) -> Response[dict[str, Any]]:
        # Powertools raises a bare ValueError for a body it cannot parse in the declared
        # type (multipart without a boundary, say): the client's fault. Any other ValueError
        # is ours, and stays a 500.
        frame = exc.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        module = frame.tb_frame.f_globals.get("__name__", "") if frame is not None else ""
        if not module.startswith("aws_lambda_powertools.event_handler"):
            return internal_error(exc)
        return not_json(app)

    app.exception_handler(ValueError)(unreadable_body)
    app.exception_handler(Exception)(internal_error)


def _responses(
    ok: str,
    *errors: int,
    created: str | None = None,
    ok_content: Mapping[str, OpenAPIResponseContentSchema | OpenAPIResponseContentModel]
    | None = None,
    public: bool = False,
    conditional: bool = False,
) -> dict[int, OpenAPIResponse]:
    """OpenAPI responses of a route: 200 (and 201) from its return type unless ``ok_content``
    says otherwise (for both); every error is an ``ErrorView``; 422 and 500 can happen on
    every route."""
    success: OpenAPIResponse = {"description": ok}
    if ok_content is not None:
        success["content"] = dict(ok_content)
    out: dict[int, OpenAPIResponse] = {200: success}
    if created is not None:
        out[201] = {"description": created}
        if ok_content is not None:
            out[201]["content"] = dict(ok_content)
    if conditional:
        out[304] = {"description": "Not modified: `If-None-Match` names the current `ETag`"}
    for code in sorted({*errors, *(() if public else (401, 403)), 422, 500, 503}):
        out[code] = {
            "description": _DESCRIPTIONS[code],
            "content": {content_types.APPLICATION_JSON: {"model": ErrorView}},
        }
    return out


# what ``check_project`` accepts, as JSON Schema: the model's project rule
PROJECT_QUERY_SCHEMA = {"minLength": 1, "maxLength": MAX_NAME_CHARS, "pattern": NAME_PATTERN}


def _check_project_query(app: APIGatewayRestResolver) -> None:
    """InvalidInput (400, naming ``project`` and the rule, as the variables and secrets
    routes say it) for a ``project`` query no project can have (``?project=Sales!``), on
    every route that reads one: it was answered as a project with nothing in it (an empty
    list, a 404), which reads as "nothing there" rather than "no such name". Checked before
    the request is validated, so the length the schema bounds is refused in the same words."""
    route = app.context.get("_route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not any(p.alias == "project" for p in dependant.query_params):
        return
    event = app.current_event
    given = list((event.multi_value_query_string_parameters or {}).get("project") or [])
    single = (event.query_string_parameters or {}).get("project")
    for project in [*given, *([single] if single is not None else [])]:
        check_project(project)


def _document_project_refusal(document: dict[str, Any]) -> dict[str, Any]:
    """The 400 of ``_check_project_query`` on every operation with a ``project`` query, and
    the rule it checks in that parameter's schema (the routes' own annotations bound only
    its length, at 200: a client or a fuzzer reading the document saw names it would be
    refused)."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            params = [
                p
                for p in operation.get("parameters") or []
                if p.get("in") == "query" and p.get("name") == "project"
            ]
            if not params:
                continue
            for param in params:
                param.setdefault("schema", {}).update(PROJECT_QUERY_SCHEMA)
            responses = operation.setdefault("responses", {})
            responses.setdefault("400", {
                "description": _DESCRIPTIONS[400],
                "content": {content_types.APPLICATION_JSON: {
                    "schema": {"$ref": "#/components/schemas/ErrorView"}
                }},
            })  # fmt: skip
    return document


_POWERTOOLS_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def _own_error_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """Powertools documents its own 500 body on every route; ours is an ``ErrorView``. Fix
    that and drop Powertools' error schemas once nothing refers to them. It also gives a 304
    a body; a 304 has none."""
    error_ref = {"$ref": "#/components/schemas/ErrorView"}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).get("304", {}).pop("content", None)
            operation.get("responses", {})["500"] = {
                "description": _DESCRIPTIONS[500],
                "content": {content_types.APPLICATION_JSON: {"schema": error_ref}},
            }
    schemas = document.get("components", {}).get("schemas", {})
    for name in _POWERTOOLS_ERROR_SCHEMAS:
        rest = {k: v for k, v in document.items() if k != "components"}
        others = {k: v for k, v in schemas.items() if k != name}
        if f"#/components/schemas/{name}" not in json.dumps([rest, others]):
            schemas.pop(name, None)
    return document


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _whole_int(text: str) -> int:
    digits, limit = len(text.lstrip("-")), sys.get_int_max_str_digits()
    # what int() refuses, in the caller's words; a limit of 0 is none (PYTHONINTMAXSTRDIGITS=0)
    if limit and digits > limit:
        raise ValueError(f"an integer of {digits} digits (at most {limit})")
    return int(text)


def _parse_json(text: str) -> Any:
    """Strict JSON: NaN and Infinity are refused, as are integers longer than Python reads
    and nesting deeper than its recursion limit; each as the JSONDecodeError that becomes a
    422. (A number beyond a double is read as infinity: the params' check names it.)"""
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_whole_int,
        )
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(str(exc), text, 0) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


# ------------------------------------------------------------------ run ids
# A scheduled run's id is ``<project>.<workflow>-scheduled-<YYYYmmddTHHMMSSZ>``
# (``service.scheduled_run_id``); a key in that form is refused, whatever the project, so
# nobody is misled into thinking a manual run can stand for (or block) a scheduled one.
# characters: what a request's path takes (a local run's directory is named by a digest of
# an id too long for a file name: ``executor._run_dir_name``)
MAX_RUN_ID = MAX_ID_CHARS
_SCHEDULED_FORM = re.compile(r"scheduled-\d{8}T\d{6}Z?", re.IGNORECASE)


def keyed_run_id(project: str, workflow: str, key: str) -> str:
    """The id of the run a caller-supplied ``run_id`` (an idempotency key) names.

    The key lives within its project and workflow: the stored id is
    ``<project>.<workflow>.<key>``. Project and workflow names cannot hold a '.', so two
    (project, workflow, key) triples never give one id, and none of these ids can equal a
    scheduled run's (one '.') or a generated one (none): no trigger can reach, return or
    block a run of another project or workflow. InvalidInput for a key in the scheduled form.
    """
    if _SCHEDULED_FORM.search(key):
        raise InvalidInput(
            [
                Problem(
                    "run_id",
                    "the form '...scheduled-<YYYYmmddTHHMMSS>Z' is reserved for scheduled "
                    "runs; choose another key",
                )
            ]
        )
    run_id = f"{project}.{workflow}.{key}"
    if len(run_id) > MAX_RUN_ID:
        raise InvalidInput(
            [
                Problem(
                    "run_id",
                    f"with its project and workflow the run's id would be {len(run_id)} "
                    f"characters; at most {MAX_RUN_ID} (keys of up to "
                    f"{max(0, MAX_RUN_ID - len(run_id) + len(key))} characters)",
                )
            ]
        )
    return run_id


# ------------------------------------------------------------------ logs
def _no_attempt(task: TaskInstance, attempts: Sequence[Attempt], attempt: int) -> NotFound:
    """The 404 of an attempt a task does not have: none yet (skipped, upstream_failed, queued
    in a pool: nothing ran), or which one is its latest."""
    what = f"task {task.task_id!r} of run {task.run_id!r}"
    if not attempts and task.attempt < 1:
        return NotFound(f"{what} has no attempt yet (state: {task.state.value})")
    if not attempts:  # a runtime that records an attempt when it ends (AWS): not yet
        return NotFound(f"{what} has no attempt {attempt} recorded yet (state: {task.state.value})")
    latest = max(a.attempt for a in attempts)
    return NotFound(f"{what} has no attempt {attempt} (its latest is attempt {latest})")


def read_log_file(attempt: Attempt, offset: int, length: int) -> LogRange | None:
    """The default log reader: ``Attempt.log`` is a local file path (the local executor's)."""
    if not attempt.log:
        return None
    try:
        with open(attempt.log, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            start = min(offset, size)
            fh.seek(start)
            data = fh.read(length)
    except (OSError, ValueError):
        return None
    return LogRange(data, start, max(size, start + len(data)))  # it may grow as it is read


def _log_chunk(window: LogRange, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of ``window``, ending on a UTF-8 character boundary, and the
    offset to ask for next. ``window`` holds up to ``UTF8_MAX - 1`` bytes more than ``limit``,
    to see where the character at the limit ends. A limit smaller than the character at the
    start still returns that one character, so a reader always moves on. A character is at
    most ``UTF8_MAX`` bytes: continuation bytes past that are no character's (bytes that are
    not UTF-8), and a page is cut among them at its limit, never moved over all of them."""
    data = window.data
    end = min(limit, len(data))
    if end < len(data) and _continues(data, end):
        lead = end - 1
        while lead > max(0, end - UTF8_MAX) and _continues(data, lead):
            lead -= 1
        if _continues(data, lead):
            pass  # no character starts within reach: a stray byte, cut at the limit
        elif lead > 0:
            end = lead  # before the character the limit is inside
        else:  # the limit is inside the first character: return it whole
            end = 1
            while end < min(len(data), UTF8_MAX) and _continues(data, end):
                end += 1
    return data[:end], window.start + end


def _continues(data: bytes, at: int) -> bool:
    """Whether ``data[at]`` is a UTF-8 continuation byte (10xxxxxx)."""
    return (data[at] & 0xC0) == 0x80


def _fitting_page(cut: Callable[[int], tuple[bytes, int]], limit: int) -> tuple[str, int]:
    """The text of a page of up to ``limit`` bytes (``cut(length)``: its bytes and the next
    offset) and the offset after it, the page shortened until its text takes at most
    ``MAX_PAGE_WIRE`` bytes in the answer. ``cut`` returns at least one character, however
    short the length asked, so a reader paging by the next offset always moves on."""
    length = limit
    while True:
        chunk, next_offset = cut(length)
        text = chunk.decode("utf-8", errors="replace")
        size = wire_size(text)
        if size <= MAX_PAGE_WIRE or length <= 1:
            return text, next_offset
        # what the page costs per byte varies: aim a little under and try again (the length
        # asked shrinks every time, so this ends, at worst with one character)
        length = max(1, min(length - 1, len(chunk) * MAX_PAGE_WIRE // size * 15 // 16))


def wire_size(text: str) -> int:
    """The bytes ``text`` takes as a JSON string in UTF-8: how a response body travels in the
    proxy response the Lambda runtime (python3.12) sends; the same locally, for one answer."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _serialize(value: Any) -> str:
    """A JSON response body: non-ASCII text as it is (UTF-8 on the wire), not ``\\u``
    escapes, which made a character of CJK text 6 bytes, and 7 once the proxy response
    escaped the body again (a 1.8 MB description answered in 12.6 MB). Text that cannot be
    UTF-8 (a lone surrogate a client sent as ``\\ud800``) is escaped as before."""
    text = _json_body(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _json_body(value, ensure_ascii=True)
    return text


_json_body = partial(json.dumps, separators=(",", ":"), cls=Encoder)


def _view_json(view: Mapping[str, Any]) -> str:
    """A big view (a run's tasks) encoded as its model would encode it, without building the
    model: ``views`` makes exactly the documented fields, types and order, so validating it
    only copied it (at 2,000 tasks ~35-160 ms against ~3 ms to encode; the full view ends
    every ``trigger --wait`` and opens every run page). NaN and infinities (an output's
    value) are ``null`` there too; text that cannot be UTF-8 is escaped, as ``_serialize``
    does. ``tests/unit/test_api_view_encoding.py`` holds it to the model's encoding."""
    try:
        return pydantic_core.to_json(view, inf_nan_mode="null").decode()
    except pydantic_core.PydanticSerializationError:
        return json.dumps(_finite(view), separators=(",", ":"), ensure_ascii=True)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _version_fits(source: str, document: Mapping[str, Any]) -> None:
    """InvalidInput when the version's view (its source and document) would not fit an API
    answer on AWS (``MAX_VERSION_WIRE``): nothing stored could then be read back there."""
    size = wire_size(_serialize({"document": document, "source": source}))
    if size > MAX_VERSION_WIRE:
        raise InvalidInput(
            [
                Problem(
                    "source",
                    f"the workflow, as the API answers it (its source and document as JSON), "
                    f"would be {size:,} bytes; at most {MAX_VERSION_WIRE:,} (an answer on AWS "
                    "is at most 6 MB): make it smaller (quotes, backslashes and control "
                    "characters take two bytes or more each)",
                )
            ]
        )


@cache
def _package_version() -> str:
    try:
        return metadata.version("stratoflow")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed in practice
        return "0"


def ui_actions(principal: Principal, project: str) -> list[str]:
    """The UI operations ``principal`` may perform in ``project``."""
    allowed = principal.allowed_actions(project)
    return [name for action in allowed for name in UI_ACTIONS.get(action, ())]


def unified_diff(old: WorkflowVersion, new: WorkflowVersion) -> str:
    """The unified diff of two versions' YAML sources, as ``diff -u`` would print it (its
    work bounded: api/text_diff.py)."""
    lines = unified_lines(
        old.source.splitlines(keepends=True),
        new.source.splitlines(keepends=True),
        fromfile=f"{old.name} v{old.version}",
        tofile=f"{new.name} v{new.version}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def entity_tag(*parts: object) -> str:
    """A weak ETag naming a representation by what it was built from (weak: the local server
    may gzip it, which does not change what it says)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()
    return f'W/"{digest}"'


def not_modified(if_none_match: str | None, tag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``tag`` (weak comparison, RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    wanted = tag.removeprefix("W/")
    for listed in if_none_match.split(","):
        candidate = listed.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


class Unchanged(Exception):
    """The caller's copy, named by ``tag`` (its ``If-None-Match``), is current. Raised, not
    returned: a route's answer is checked against its schema, and a 304 has no body."""

    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.tag = tag


def static_file(root: FilePath, relative: str, cache: str) -> Response[Any]:
    """A file of the built UI with its content type and cache header; NotFound outside
    ``root`` or when the UI has not been built."""
    if not (root / "index.html").is_file():
        raise NotFound(
            "the web UI is not built: run `make install` (npm ci && npm run build in ui/)"
        )
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise NotFound(f"no file {relative!r} in the web UI")
    content_type = _STATIC_TYPES.get(path.suffix.lower(), "application/octet-stream")
    data = path.read_bytes()
    body: str | bytes = data.decode("utf-8") if content_type.startswith(_TEXT_PREFIXES) else data
    return Response(
        status_code=HTTPStatus.OK.value,
        content_type=content_type,
        body=body,
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )


def _view_response(body: BaseModel | str, tag: str) -> Response[Any]:
    """A JSON view with its ETag; ``no-cache``: revalidate (cheaply, by the tag) every time.

    The body is encoded once: by pydantic from a model validated when it was built, or
    already (a cached layout; a run's view, ``_view_json``). The route is a
    ``_raw_response`` one (its schema documented by ``_encoded_view``), so Powertools
    neither validates it again nor walks it to encode it (at 10,000 tasks a run view is
    2.4 MB; the second validation and its encoding were a third of the request's CPU)."""
    return Response(
        status_code=HTTPStatus.OK.value,
        content_type=content_types.APPLICATION_JSON,
        body=body if isinstance(body, str) else body.model_dump_json(),
        headers={"ETag": tag, "Cache-Control": "no-cache"},
    )


def _body_tagged_view(
    body: BaseModel | str, if_none_match: str | None, *kind: str
) -> Response[Any]:
    """A view tagged by its encoded body (a store that keeps no run revisions, as on AWS:
    nothing cheaper names its state), or the 304 when the reader holds that tag. ``body``
    may be encoded already (``_view_json``)."""
    encoded = body if isinstance(body, str) else body.model_dump_json()
    tag = entity_tag(*kind, encoded)
    if not_modified(if_none_match, tag):
        raise Unchanged(tag)
    return _view_response(encoded, tag)


_Handler = Callable[..., Response[Any]]


def _encoded_view(model: type[BaseModel]) -> dict[str, OpenAPIResponseContentModel]:
    """The 200 content of a route that answers with ``_view_response``: documented from
    ``model`` (as its return annotation would be), validated where the view is built."""
    return {content_types.APPLICATION_JSON: {"model": model}}


def _layout_responses() -> dict[int, OpenAPIResponse]:
    """The responses of both layout routes (by version, by run); made for each, as
    Powertools fills the dict in."""
    return _responses(
        "The layout: tasks, positions, edges",
        404,
        conditional=True,
        ok_content=_encoded_view(GraphLayout),
    )


def _raw_response(handler: _Handler) -> _Handler:
    """Skip Powertools' response validation for ``handler``: it validates (and JSON-encodes)
    the body of every handler with a return annotation, which a bytes body (an image) fails.
    Static files have no schema to check, so the annotation is hidden from Powertools; the
    big views (``_view_response``) are made to their documented models and encoded once."""
    handler.__annotations__.pop("return", None)
    return handler


# ------------------------------------------------------------------ routing
# What a path parameter may hold: any character but '/' and the control characters (those are
# refused by name: ``_path_control``). Powertools' own pattern stops at '?', '#', '"', '\\',
# '`' and any non-word character outside its list, so a run whose task wrote the output key
# 'a?b' could not read it ("no route"), and `GET /workflows/a%3Fb` named no workflow. Run ids
# and names keep their own rules; the route is found and the handler answers for the value.
_PARAM = r"[^/\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
# The parameters that take the rest of the path, '/' included: an output key is whatever a
# task wrote before '=' (a value's own path is how a view lists a cut value).
_REST_PARAMS = {("/runs/<run_id>/tasks/<task_id>/outputs/<key>", "key")}


class _Resolver(APIGatewayRestResolver):
    """Powertools' REST resolver with path parameters that hold what the API's values hold
    (``_PARAM``), matched to the end of the path (``\\Z``: '$' let a trailing newline
    through, so ``/workflows/etl%0A`` read workflow 'etl')."""

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = r"^{}/*\Z") -> re.Pattern[str]:
        def group(found: re.Match[str]) -> str:
            name = found.group(1)
            if (rule, name) in _REST_PARAMS:
                # possessive: it takes any trailing '/' itself, and gives none back to the
                # '/*' after it (that split a run of '/' every way: quadratic in its length)
                return f"(?P<{name}>{_PARAM.replace('[^/', '[^')}++)"
            return f"(?P<{name}>{_PARAM}+)"

        return re.compile(base_regex.format(re.sub(r"<(\w+)>", group, rule)))


# ------------------------------------------------------------------ the app
def _why_no_log(attempt: Attempt, task_type: str | None) -> str:
    """Why an ended attempt has no log, when it started no process: a task whose templates
    could not be rendered (its error, which a user asking for the log came for), or a switch
    (the scheduler decides it)."""
    if attempt.log is not None or attempt.ended_at is None:
        return ""
    if attempt.error:
        return f": it ended before its process started ({attempt.error})"
    if task_type == "switch":
        return ": a switch runs no process, the scheduler decides it (its outputs name the branch)"
    return ""


def create_app(
    scheduler: Scheduler,
    *,
    on_change: Callable[[], None] = lambda: None,
    read_log: ReadLog | None = None,
    static_dir: FilePath | None = None,
    authenticate: Authenticator | None = None,
    readmodel: ReadModel | None = None,
    alerts: AlertsBackend | None = None,
    secrets: SecretStore | None = None,
    secret_source: SecretSource | None = None,
    connections: ConnectionsBackend | None = None,
) -> APIGatewayRestResolver:
    """The REST API over ``scheduler``. ``on_change`` runs after every successful write (the
    local runtime passes its ``wake``); ``read_log`` reads a range of an attempt's log from
    where it is kept (default: a local file); ``static_dir`` holds the built web UI served at
    ``/`` (default: the package's ``api/static``). ``authenticate`` names the caller of every
    request but the public ones (None: everyone is an administrator — for an API nobody else
    can reach); each route then checks the caller's role in the project it touches.
    ``readmodel`` keeps the audit log: who did what, after every successful change.
    ``alerts``: the runtime's alerts (channels, groups, deliveries: ``/alerts``).
    ``secrets``: the store behind ``/secrets`` (None: no such routes); ``secret_source``:
    whose values the log view masks (``***``) in a task's log (None: none here; on AWS the
    runner masks a log before it uploads it). ``connections``: the runtime's named connections
    (``/connections``; None: no such routes)."""
    app = _Resolver(
        debug=False,  # never a traceback in a response, whatever POWERTOOLS_DEV says
        enable_validation=True,
        response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
        json_body_deserializer=_parse_json,
        serializer=_serialize,
    )
    _register_errors(app)
    store = scheduler.store
    catalog = scheduler.catalog
    reader: ReadLog = read_log or read_log_file
    ui_root = static_dir if static_dir is not None else STATIC_DIR
    openapi: dict[str, Any] = {}

    def identify(app: APIGatewayRestResolver) -> None:
        event = app.current_event
        if authenticate is not None and not _is_public(event.path):
            app.append_context(principal=authenticate(event))  # type: ignore[no-untyped-call]

    # Who calls is asked first, before the request is parsed. Powertools runs its request
    # validation (the body's JSON parsed and checked against the route's model) before any
    # middleware of ours: a caller with no token was answered a 422 describing the route's
    # schema, and had a 10 MB body parsed first (1.5 s of the local server's one API worker,
    # for anyone who can reach the port). So the validation step identifies, then validates.
    validate = getattr(app, "_request_validation_middleware", None)
    if validate is None:  # pragma: no cover - enable_validation=True makes it

        def identify_first(
            app: APIGatewayRestResolver, next_middleware: NextMiddleware
        ) -> Response[Any]:
            identify(app)
            _check_project_query(app)
            return form_refused(app) or next_middleware(app)

        app.use([identify_first])
    else:

        def identify_then_validate(
            app: APIGatewayRestResolver, next_middleware: NextMiddleware
        ) -> Response[Any]:
            identify(app)
            _check_project_query(app)
            answer: Response[Any] = form_refused(app) or validate(app, next_middleware)
            return answer

        app._request_validation_middleware = identify_then_validate  # type: ignore[assignment]

    def caller() -> Principal:
        principal = app.context.get("principal")
        if principal is None:
            if authenticate is not None:  # pragma: no cover - identify() always sets it
                raise Unauthenticated("no identity for this request")
            return ANONYMOUS_ADMIN
        assert isinstance(principal, Principal)
        return principal

    # The audit journal (``stratoflow.audit``): where the store keeps one, every write request
    # journals its intent before it changes anything, and its entry after; the read model
    # gets both from the store's projection. Without one (a store kept in memory), entries go
    # to the read model directly, after the change.
    journal = store if readmodel is not None and isinstance(store, AuditJournal) else None

    def request_id() -> str:
        context = app.lambda_context
        # the request id makes a retried delivery of one request a duplicate, not a twin
        return context.aws_request_id if context is not None else uuid.uuid4().hex

    def allow(action: Action, project: str, what: str) -> Principal:
        principal = caller()
        require(principal, action, project, what=what)
        if (
            journal is not None
            and action is not Action.READ
            and "audit_intent" not in app.context
            and app.current_event.http_method not in ("GET", "HEAD", "OPTIONS")
        ):
            # allowed to change something in ``project``: its intent is journalled before
            # the change (in the project it is allowed in: no other project's log shows it)
            event = app.current_event
            entry = audit_intent(
                request_id(), scheduler.clock.now(), principal.name, event.http_method,
                event.path, project,
            )  # fmt: skip
            try:
                journal.audit_begin(entry)
            except Exception as exc:
                log.exception("audit intent not journalled: %s", entry)
                # a fault of the machine (a full disk, a busy database) is said as such: the
                # change itself would have met it
                raise machine_fault(exc) or Unavailable(
                    "the audit journal cannot be written now; nothing was changed"
                ) from exc
            app.context["audit_intent"] = entry
        return principal

    def run_for(run_id: str, action: Action) -> Run:
        """The run, if the caller may ``action`` it. A run of a project the caller has no
        role in reads exactly like a run that does not exist."""
        try:
            run = store.get_run(run_id)
        except NotFound:
            raise NotFound(f"run {run_id!r} not found") from None
        allow(action, run.project, f"run {run_id!r}")
        return run

    def record(action: str, target: str, project: str, **details: Any) -> None:
        if readmodel is None:
            return
        begun: AuditEntry | None = app.context.get("audit_intent")
        entry = AuditEntry(
            id=begun.id if begun is not None else request_id(),
            at=scheduler.clock.now(), actor=caller().name, action=action, target=target,
            project=project, details=details,
        )  # fmt: skip
        if journal is not None:
            # the intent is not withdrawn now, whatever this write does: if it fails, the
            # intent stands for the change ("outcome unknown"), never nothing
            app.context["audit_recorded"] = True
            try:
                journal.audit_settle(entry)
            except Exception:  # the change is made; its intent keeps the line
                log.exception("audit entry not journalled (its intent stands): %s", entry)
        try:  # shown at once; the projection brings it if this fails (kept once: its id)
            readmodel.record_audit(entry)
        except Exception:
            log.exception("audit entry not written to the read model (yet): %s", entry)

    def record_also(action: str, target: str, project: str, **details: Any) -> None:
        """A line of the same change in another project it reached (dependent-mode backfills
        make and operate backfills of other projects, whose admins see their own log): its
        id is the request's with ``@<project>``. Called before ``record`` (whose entry
        settles the intent): a process that dies between them leaves the intent standing."""
        if readmodel is None:
            return
        begun: AuditEntry | None = app.context.get("audit_intent")
        entry = AuditEntry(
            id=f"{begun.id if begun is not None else request_id()}@{project}",
            at=scheduler.clock.now(), actor=caller().name, action=action, target=target,
            project=project, details=details,
        )  # fmt: skip
        if journal is not None:
            try:
                journal.audit_settle(entry)
            except Exception:
                log.exception("audit entry not journalled: %s", entry)
        try:
            readmodel.record_audit(entry)
        except Exception:
            log.exception("audit entry not written to the read model (yet): %s", entry)

    def settle_or_withdraw(
        app: APIGatewayRestResolver, next_middleware: NextMiddleware
    ) -> Response[Any]:
        """A write request that journalled an intent and recorded no entry withdraws the
        intent if it answered (it changed nothing audited) or was refused with an error that
        promises nothing changed (``_REFUSALS``). Any other failure may come after the change
        (a schedule not synced after the version is stored: ScheduleSyncFailed; an error in
        a second write): its intent is settled as it stands at once, "outcome unknown"."""
        failure: BaseException | None = None
        try:
            return next_middleware(app)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            begun: AuditEntry | None = app.context.get("audit_intent")
            if journal is not None and begun is not None and not app.context.get("audit_recorded"):
                if failure is None or _refused(failure):
                    try:
                        journal.audit_withdraw(begun.id)
                    except Exception:  # it stands as "outcome unknown" once it expires
                        log.exception("audit intent not withdrawn: %s", begun)
                elif isinstance(failure, Exception):  # a process that dies leaves it pending
                    try:
                        journal.audit_settle(begun)
                    except Exception:  # it stands as "outcome unknown" once it expires
                        log.exception("audit intent not settled: %s", begun)
                    try:
                        readmodel.record_audit(begun)  # type: ignore[union-attr]
                    except Exception:  # the projection brings it
                        log.exception("audit entry not written to the read model: %s", begun)

    if journal is not None:
        app.use([settle_or_withdraw])

    def changed() -> None:
        try:
            on_change()
        except Exception:  # the write succeeded; a failed wake-up must not turn it into a 500
            log.exception("on_change hook failed")

    if secrets is not None:
        from stratoflow.api import secret_routes

        secret_routes.register(
            app, secrets, allow=allow, record=record, changed=changed, responses=_responses
        )

    if scheduler.variables is not None:
        from stratoflow.api import variable_routes

        variable_routes.register(
            app, scheduler.variables, scheduler.clock, allow=allow, record=record,
            changed=changed, responses=_responses,
        )  # fmt: skip

    if scheduler.resources is not None:
        from stratoflow.api import resource_routes

        resource_routes.register(
            app, scheduler.resources, allow=allow, record=record, changed=changed,
            responses=_responses,
        )  # fmt: skip

    def children(spec: WorkflowSpec, run_id: str, tasks: Sequence[TaskInstance]) -> dict[str, str]:
        """The child runs of the sub-workflow tasks among ``tasks`` (those a view shows) that
        exist: a child that could not be created (a bad parameter) was named anyway, a link to
        a run that is not there. Only tasks tried (the views link no other) cost a read."""
        named = subworkflow.children(spec, run_id)
        out: dict[str, str] = {}
        for task in tasks:
            child = named.get(task.task_id)
            if child is not None and task.attempt > 0:
                with contextlib.suppress(NotFound):
                    store.get_run(child)
                    out[task.task_id] = child
        return out

    def detail(run: Run) -> str:
        """The whole view (a RunDetail, encoded), with the run's revision where the store
        keeps one (a trigger's answer: a reader goes on from it with ``since``, as ``trigger
        --wait`` does, instead of asking for the whole view again). The revision is read
        before any task, as ``get_run`` reads it: a task changed meanwhile is sent again
        after it, never missed."""
        revision = store.run_revision(run.id) if isinstance(store, RunChangeLog) else None
        spec = scheduler.spec(run.project, run.workflow, run.version)
        tasks = store.get_tasks(run.id)
        body = run_detail(
            run, tasks, store.list_attempts(run.id), spec.dag.order,
            children(spec, run.id, tasks),
        )  # fmt: skip
        return _view_json({**body, "revision": revision, "full": True})

    def one_run(run: Run) -> RunView:
        return RunView.model_validate(run_view(run))

    layouts = LayoutCache()
    stored_layouts = StoredLayouts(
        readmodel, lambda p, n, v: scheduler.spec(p, n, v).dag, scheduler.clock.now
    )

    def graph_layout(project: str, name: str, version: int) -> Response[GraphLayout]:
        """The version's layout, computed once while kept (from the parsed workflow the
        scheduler keeps, not the stored document); its tag is a digest of what it says. It is
        kept encoded: a poll sends the JSON made once, not the model encoded again."""

        def compute() -> tuple[str, str]:
            body = GraphLayout.model_validate(
                quick_layout(scheduler.spec(project, name, version).dag)
            )
            encoded = body.model_dump_json()
            return encoded, entity_tag("layout", encoded)

        body, tag = layouts.get((project, name, version), compute)
        if not_modified(app.current_event.headers.get("if-none-match"), tag):
            raise Unchanged(tag)
        return _view_response(body, tag)

    def version_detail(version: WorkflowVersion) -> VersionDetail:
        """A version with its document, and where its graph's stored layout is (its page
        draws the graph as a run page does)."""
        layout = stored_layouts.url(version.project, version.name, version.version)
        return VersionDetail.model_validate({**version_view(version, full=True), "layout": layout})

    def next_run_at(version: WorkflowVersion) -> str | None:
        if version.paused or "schedule" not in version.document:
            return None
        try:
            spec = scheduler.spec(version.project, version.name, version.version)
            schedule = spec.workflow.schedule
            if schedule is None:  # pragma: no cover - the document has one, so the spec does
                return None
            now = scheduler.clock.now()
            cursor = catalog.get_cursor(version.project, version.name)
            when = next_firing(schedule, max(cursor, now) if cursor is not None else now)
        except Exception:  # one workflow's schedule must not fail the listing of all
            log.debug("next firing of %s/%s not computable", version.project, version.name)
            return None  # the cron loop records why, as the workflow's schedule_error
        return None if when is None else when.isoformat()

    def workflow_summary(version: WorkflowVersion) -> dict[str, Any]:
        last = store.list_runs(RunQuery(project=version.project, workflow=version.name, limit=1))
        last_run = None
        if last:
            view = run_view(last[0])
            last_run = {k: view[k] for k in ("id", "state", "created_at", "ended_at")}
        return {**version_view(version), "last_run": last_run, "next_run_at": next_run_at(version)}

    # -------------------------------------------------------------- the web UI
    @app.get("/", include_in_schema=False)
    @_raw_response
    def ui_index() -> Response[Any]:
        return static_file(ui_root, "index.html", INDEX_CACHE)

    @app.get("/assets/<name>", include_in_schema=False)
    @_raw_response
    def ui_asset(name: str) -> Response[Any]:
        return static_file(ui_root, f"assets/{name}", ASSET_CACHE)

    @app.get(
        "/me",
        summary="The caller, their role in a project and the operations it allows",
        tags=["meta"],
        responses=_responses("The caller and their allowed actions"),
    )
    def me(project: ProjectQuery = DEFAULT_PROJECT) -> Me:
        principal = caller()
        role = principal.role_in(project)
        return Me(
            user=principal.name,
            project=project,
            role=None if role is None else role.value,
            actions=ui_actions(principal, project),
        )

    # -------------------------------------------------------------- meta
    @app.get(
        "/health",
        summary="Liveness check",
        tags=["meta"],
        responses=_responses("The API is up", public=True),
    )
    def health() -> Health:
        return Health(status="ok")

    @app.get(
        "/openapi.json",
        summary="This API's OpenAPI document",
        tags=["meta"],
        responses=_responses("OpenAPI 3.1 document", public=True),
    )
    def openapi_document() -> dict[str, Any]:
        if not openapi:
            document = app.get_openapi_json_schema(
                title="Stratoflow",
                version=_package_version(),
                description="DAG workflow scheduler: workflows, runs, tasks and logs.",
            )
            openapi.update(_document_project_refusal(_own_error_schemas(json.loads(document))))
            if scheduler.resources is not None:
                from stratoflow.api import resource_routes

                resource_routes.document(openapi)
            document_stored_layout(openapi)
        return openapi

    @app.get(
        SCHEMA_URL_PATH,
        summary="The JSON Schema of workflow files (format v1), for editors",
        tags=["meta"],
        responses=_responses(
            "JSON Schema (draft-07), generated from the models",
            public=True,
            conditional=True,
            ok_content={SCHEMA_MEDIA_TYPE: {"schema": {"type": "object"}}},
        ),
    )
    @_raw_response
    def workflow_schema() -> Response[Any]:
        text, tag = workflow_schema_document()
        if not_modified(app.current_event.headers.get("if-none-match"), tag):
            raise Unchanged(tag)
        return Response(
            status_code=HTTPStatus.OK.value,
            content_type=SCHEMA_MEDIA_TYPE,
            body=text,
            headers={"ETag": tag, "Cache-Control": "no-cache"},
        )

    # -------------------------------------------------------------- workflows
    @app.post(
        "/workflows",
        summary="Apply a workflow (a changed definition becomes a new version)",
        tags=["workflows"],
        responses=_responses(
            "Identical to the latest version: nothing changed (`created` is false)",
            400,
            415,
            502,
            created="Stored as a new version (`created` is true)",
            ok_content=_encoded_view(AppliedVersion),
        ),
    )
    @_raw_response
    def apply_workflow(body: ApplyBody) -> Response[str]:
        # Whose project it is decides who may apply it, and only parsing says; but a caller
        # who may edit no project at all is refused before the text is looked at. The body's
        # size is bounded by the request model; the loader bounds the rest.
        principal = caller()
        if not any(principal.can(Action.EDIT, p) for p in (*principal.roles, DEFAULT_PROJECT)):
            held = ", ".join(
                f"{r.value} in project {p}" for p, r in sorted(principal.roles.items())
            )
            raise Forbidden(
                f"{principal.name} {'is ' + held if held else 'has no role in any project'}; "
                "applying a workflow needs editor in its project"
            )
        spec = load_workflow(body.source, now=scheduler.clock.now())
        allow(Action.EDIT, spec.project, f"project {spec.project!r}")
        for other, _task in foreign_upstreams(spec):  # a dependency reads its runs' states
            allow(Action.READ, other, f"project {other!r}")
        scheduler.subworkflows.check_caller(caller(), spec, "applying it")
        _version_fits(body.source, spec.document)
        version, created = scheduler.apply(body.source, spec=spec)
        changed()
        record(
            "workflow.apply", f"workflow/{version.project}/{version.name}", version.project,
            version=version.version, created=created,
        )  # fmt: skip
        # an AppliedVersion, encoded from the view (its document and source are the whole
        # workflow: 640 KB at 2,000 tasks, that validating copied and Powertools walked again)
        view = {**version_view(version, full=True), "layout": None, "created": created}
        return saved(created, _view_json(view))

    @app.get(
        "/workflows",
        summary="The latest version of every workflow",
        tags=["workflows"],
        responses=_responses(
            "A page of the project's workflows by name, each with its last run and next "
            "scheduled time; `next` is the cursor of the next page"
        ),
    )
    def list_workflows(
        project: ProjectQuery = DEFAULT_PROJECT,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="Page size.")
        ] = DEFAULT_WORKFLOW_PAGE,
        after: AfterNameQuery = None,
    ) -> WorkflowList:
        allow(Action.READ, project, f"project {project!r}")
        # the page alone is read: each version holds its source and document (2 MiB at most)
        versions = catalog.list_workflows(project, after=after, limit=limit + 1)
        page = versions[:limit]
        more = len(versions) > limit
        return WorkflowList.model_validate(
            {
                "workflows": [workflow_summary(v) for v in page],
                "next": page[-1].name if more else None,
            }
        )

    @app.get(
        "/workflows/<name>",
        summary="The latest version of a workflow",
        tags=["workflows"],
        responses=_responses("The latest version, with its document and source", 404),
    )
    def get_workflow(
        name: WorkflowNamePath, project: ProjectQuery = DEFAULT_PROJECT
    ) -> VersionDetail:
        allow(Action.READ, project, f"workflow {name!r} in project {project!r}")
        return version_detail(catalog.get_version(project, name))

    @app.get(
        "/workflows/<name>/versions",
        summary="Every version of a workflow, newest first",
        tags=["workflows"],
        responses=_responses("A page of versions; `next` is the cursor of the next", 404),
    )
    def list_versions(
        name: WorkflowNamePath,
        project: ProjectQuery = DEFAULT_PROJECT,
        limit: LimitQuery = 50,
        before: BeforeVersionQuery = None,
    ) -> VersionList:
        allow(Action.READ, project, f"workflow {name!r} in project {project!r}")
        # the page alone is read: every version ever applied is kept, each up to 2 MiB
        versions = catalog.list_versions(project, name, before=before, limit=limit + 1)
        page = versions[:limit]
        more = len(versions) > limit
        return VersionList.model_validate(
            {
                "versions": [version_view(v) for v in page],
                "next": page[-1].version if more else None,
            }
        )

    @app.get(
        "/workflows/<name>/diff",
        summary="Unified diff of two versions' YAML sources",
        tags=["workflows"],
        responses=_responses("The diff (`changed` is false when the sources are equal)", 400, 404),
    )
    def diff_versions(
        name: WorkflowNamePath,
        project: ProjectQuery = DEFAULT_PROJECT,
        from_: DiffFromQuery = None,
        to: DiffToQuery = None,
    ) -> VersionDiff:
        allow(Action.READ, project, f"workflow {name!r} in project {project!r}")
        new = catalog.get_version(project, name, to)
        old_number = from_ if from_ is not None else new.version - 1
        if old_number < 1:
            raise InvalidInput(
                [Problem("from", f"{name} has only version {new.version}: nothing to compare")]
            )
        old = catalog.get_version(project, name, old_number)
        text = unified_diff(old, new)
        return VersionDiff.model_validate(
            {
                "project": project,
                "name": name,
                "from": old.version,
                "to": new.version,
                "changed": bool(text),
                "diff": text,
            }
        )

    @app.get(
        "/workflows/<name>/versions/<version>",
        summary="One version of a workflow",
        tags=["workflows"],
        responses=_responses("The version, with its document and source", 404),
    )
    def get_version(
        name: WorkflowNamePath, version: VersionPath, project: ProjectQuery = DEFAULT_PROJECT
    ) -> VersionDetail:
        allow(Action.READ, project, f"workflow {name!r} in project {project!r}")
        return version_detail(catalog.get_version(project, name, version))

    @app.get(
        "/workflows/<name>/versions/<version>/layout",
        summary="Where the web UI draws each task of a version's graph",
        tags=["workflows"],
        responses=_layout_responses(),
    )
    @_raw_response
    def get_version_layout(
        name: WorkflowNamePath,
        version: VersionPath,
        project: ProjectQuery = DEFAULT_PROJECT,
        h: DigestQuery | None = None,
    ) -> Response[GraphLayout]:
        # without h: the server's quick layout; with it: the layout the UI stored (immutable)
        allow(Action.READ, project, f"workflow {name!r} in project {project!r}")
        if h is not None:
            return stored_layouts.get(project, name, version, h)
        return graph_layout(project, name, version)

    @app.put(
        "/workflows/<name>/versions/<version>/layout",
        summary="Store the layout the web UI computed for a version's graph (once)",
        description=(
            f"The body is a StoredLayout (JSON, at most {MAX_LAYOUT_CHARS:,} characters) "
            "drawing exactly the version's tasks and edges; `h` the digest the run's states "
            "view names. The first layout stored stays: a later one is not kept (200)."
        ),
        tags=["workflows"],
        responses=_responses(
            "A layout was stored already; it stays",
            400,
            404,
            409,
            413,
            created="The layout was stored",
        ),
    )
    def put_version_layout(
        name: WorkflowNamePath,
        version: VersionPath,
        h: DigestQuery,
        project: ProjectQuery = DEFAULT_PROJECT,
    ) -> Response[LayoutStored]:
        # the body is read raw (api/stored_layouts.py caps its size before parsing it). The
        # first layout stays for good and every viewer downloads it: whoever may store it may
        # change what the version's page shows, as an editor may (a new version), not less
        allow(Action.EDIT, project, f"workflow {name!r} in project {project!r}")
        reply = stored_layouts.put(project, name, version, h, app.current_event.decoded_body or "")
        return saved(reply.created, reply)

    def set_paused(project: str, name: str, paused: bool) -> VersionDetail:
        principal = allow(Action.OPERATE, project, f"workflow {name!r} in project {project!r}")
        if not paused:  # its schedule's runs start runs where its sub-workflows reach
            scheduler.subworkflows.check_caller_latest(
                principal, project, name, "unpausing its schedule"
            )
        latest = scheduler.set_paused(project, name, paused)  # keeps its schedule in step
        changed()
        record(
            "workflow.pause" if paused else "workflow.unpause",
            f"workflow/{project}/{name}", project,
        )  # fmt: skip
        return VersionDetail.model_validate(version_view(latest, full=True))

    @app.post(
        "/workflows/<name>/pause",
        summary="Pause the workflow's schedule (runs already started go on)",
        tags=["workflows"],
        responses=_responses("The workflow, now paused", 404, 502),
    )
    def pause_workflow(
        name: WorkflowNamePath, project: ProjectQuery = DEFAULT_PROJECT
    ) -> VersionDetail:
        return set_paused(project, name, True)

    @app.post(
        "/workflows/<name>/unpause",
        summary="Unpause the workflow's schedule",
        tags=["workflows"],
        responses=_responses("The workflow, now unpaused", 404, 502),
    )
    def unpause_workflow(
        name: WorkflowNamePath, project: ProjectQuery = DEFAULT_PROJECT
    ) -> VersionDetail:
        return set_paused(project, name, False)

    @app.post(
        "/workflows/<name>/runs",
        summary="Trigger a run of the latest version",
        tags=["runs"],
        responses=_responses(
            "A run with this run_id already existed, triggered with the same params and "
            "logical date; it is returned unchanged",
            400,
            404,
            409,
            415,
            created="The run was created",
            ok_content=_encoded_view(RunDetail),
        ),
    )
    @_raw_response
    def trigger_run(
        name: WorkflowNamePath, body: TriggerBody = None, project: ProjectQuery = DEFAULT_PROJECT
    ) -> Response[str]:
        allow(Action.OPERATE, project, f"workflow {name!r} in project {project!r}")
        scheduler.subworkflows.check_caller_latest(caller(), project, name, "triggering it")
        request = body or TriggerRequest()
        key = request.run_id
        run, created = scheduler.trigger(
            project,
            name,
            params=request.params,
            logical_date=request.logical_date,
            run_id=None if key is None else keyed_run_id(project, name, key),
            trigger=TRIGGER,
            keyed=key is not None,
        )
        if (run.project, run.workflow) != (project, name):  # pragma: no cover - ids are disjoint
            raise Conflict("run_id: this key is in use; choose another")  # says nothing more
        changed()
        if created:
            record("run.trigger", f"run/{run.id}", project, workflow=name)
        return saved(created, detail(run))

    @app.get(
        "/audit",
        summary="The project's audit log: who did what, newest first",
        tags=["meta"],
        responses=_responses("A page of entries; `next` is the cursor of the next", 400, 404),
    )
    def list_audit(
        project: ProjectQuery = DEFAULT_PROJECT, limit: LimitQuery = 50, cursor: BeforeQuery = None
    ) -> AuditList:
        allow(Action.ADMINISTER, project, f"project {project!r}")
        if readmodel is None:
            return AuditList(entries=[], next=None)
        page = readmodel.list_audit(project=project, limit=limit, cursor=cursor)
        entries = [
            {
                "id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                "target": e.target, "project": e.project, "details": dict(e.details),
            }
            for e in page.items
        ]  # fmt: skip
        return AuditList.model_validate({"entries": entries, "next": page.next_cursor})

    # -------------------------------------------------------------- runs
    @app.get(
        "/runs",
        summary="Runs, newest first",
        tags=["runs"],
        responses=_responses(
            "A page of runs; `next` is the cursor of the next; `stale_since` (only when so):"
            " the read model could not be updated since then, and may miss or show older"
            " states of runs changed since",
            400,
        ),
    )
    def list_runs(
        project: ProjectQuery = DEFAULT_PROJECT,
        workflow: WorkflowQuery = None,
        state: StateQuery = None,
        limit: LimitQuery = 50,
        before: BeforeQuery = None,
        logical_from: Annotated[
            AwareDatetime | None, Query(description="Only runs whose logical date is at or after.")
        ] = None,
        logical_to: Annotated[
            AwareDatetime | None, Query(description="Only runs whose logical date is before.")
        ] = None,
    ) -> RunList:
        allow(Action.READ, project, f"project {project!r}")
        if readmodel is not None:  # the indexed read model, as the UI's lists are meant to be
            page = readmodel.list_runs(
                RunFilter(
                    project=project, workflow=workflow, states=None if state is None else [state],
                    logical_from=logical_from, logical_to=logical_to,
                ),
                limit=limit, cursor=before,
            )  # fmt: skip
            listed = {"runs": [run_view(r) for r in page.items], "next": page.next_cursor}
            stale = readmodel.stale_since
            if stale is not None:
                listed["stale_since"] = stale.isoformat()
            return RunList.model_validate(listed)
        if logical_from is not None or logical_to is not None:
            raise InvalidInput(
                [Problem("logical_from", "date filters need the read model (stratoflow server)")]
            )
        if before is not None:
            # The cursor is a run of this project (the `next` this listing returned). Any
            # other, there or not, is answered as the read model answers a cursor it did not
            # return: the same words whether another project's run exists or not
            try:
                cursor_run: Run | None = store.get_run(before)
            except NotFound:
                cursor_run = None
            if cursor_run is None or cursor_run.project != project:
                raise InvalidInput([Problem("cursor", "not a cursor this API returned")])
        query = RunQuery(
            project=project, workflow=workflow, state=state, limit=limit + 1, before=before
        )
        runs = store.list_runs(query)
        more = len(runs) > limit
        runs = runs[:limit]
        return RunList.model_validate(
            {"runs": [run_view(r) for r in runs], "next": runs[-1].id if more else None}
        )

    @app.get(
        "/runs/<run_id>",
        summary="A run with its tasks and their attempts",
        tags=["runs"],
        responses=_responses(
            "The run, its tasks in workflow order, their attempts",
            404,
            conditional=True,
            ok_content=_encoded_view(RunDetail),
        ),
    )
    @_raw_response
    def get_run(
        run_id: RunIdPath,
        since: SinceQuery = None,
        wait: WaitQuery = None,
        until: UntilQuery = None,
    ) -> Response[RunDetail]:
        # ``wait`` and ``until`` are only validated here: the local server holds the request
        # (it re-asks this route when the run changes: api/long_poll.py); Lambda answers at once.
        if until is not None and wait is None:
            raise RequestValidationError(
                [{"loc": ("query", "until"), "msg": "until needs wait (a long poll's seconds)"}]
            )
        run = run_for(run_id, Action.READ)
        if_none_match = app.current_event.headers.get("if-none-match")
        if not isinstance(store, RunChangeLog):  # the tag is the whole view's (AWS stores)
            return _body_tagged_view(detail(run), if_none_match)
        # The revision is read before any task: a task changed meanwhile is sent now and again
        # after that revision, never missed. The tag names the run's state, however it was
        # sent (whole or as a delta), so a reader holding it gets a 304 whatever ``since``.
        revision = store.run_revision(run_id)
        tag = entity_tag(run, revision)
        if not_modified(if_none_match, tag):
            raise Unchanged(tag)
        spec = scheduler.spec(run.project, run.workflow, run.version)
        if since is None or since > revision:
            tasks, attempts = store.get_tasks(run_id), store.list_attempts(run_id)
        else:
            changed_ids = store.changed_since(run_id, since)
            tasks = store.get_tasks(run_id, changed_ids) if changed_ids else []
            attempts = store.attempts_of(run_id, changed_ids) if changed_ids else []
        view = run_detail(run, tasks, attempts, spec.dag.order, children(spec, run_id, tasks))
        full = since is None or since > revision
        return _view_response(_view_json({**view, "revision": revision, "full": full}), tag)

    @app.get(
        "/runs/<run_id>/states",
        summary="A run and its tasks' states, nothing more (a run page's first paint)",
        tags=["runs"],
        responses=_responses(
            "The run and each task's state",
            404,
            conditional=True,
            ok_content=_encoded_view(RunStates),
        ),
    )
    @_raw_response
    def get_run_states(run_id: RunIdPath) -> Response[RunStates]:
        # A run page draws its graph from this and the layout, both asked for at once, then
        # asks for the whole view: at 10,000 tasks this is ~1/20 of its server time and size.
        run = run_for(run_id, Action.READ)
        if_none_match = app.current_event.headers.get("if-none-match")
        revision = store.run_revision(run_id) if isinstance(store, RunChangeLog) else None
        tag = entity_tag("states", run, revision) if revision is not None else None
        if tag is not None and not_modified(if_none_match, tag):
            raise Unchanged(tag)
        states = {task: str(state) for task, state in store.task_states(run_id).items()}
        layout = stored_layouts.url(run.project, run.workflow, run.version)
        body = RunStates.model_validate(
            {"run": run_view(run), "revision": revision, "states": states, "layout": layout}
        )
        if tag is None:  # no revisions (AWS stores): the tag is the body's
            return _body_tagged_view(body, if_none_match, "states")
        return _view_response(body, tag)

    @app.get(
        "/runs/<run_id>/layout",
        summary="The layout of the graph of the run's workflow version",
        tags=["runs"],
        responses=_layout_responses(),
    )
    @_raw_response
    def get_run_layout(run_id: RunIdPath) -> Response[GraphLayout]:
        # by run: the run page asks for it with the run, not after it
        run = run_for(run_id, Action.READ)
        return graph_layout(run.project, run.workflow, run.version)

    @app.get(
        "/runs/<run_id>/timeline",
        summary="A run's tasks and attempts in time (Gantt chart data)",
        tags=["runs"],
        responses=_responses(
            "Per task in workflow order, each attempt's start and end",
            404,
            conditional=True,
            ok_content=_encoded_view(Timeline),
        ),
    )
    @_raw_response
    def get_timeline(run_id: RunIdPath) -> Response[Timeline]:
        run = run_for(run_id, Action.READ)
        if_none_match = app.current_event.headers.get("if-none-match")
        tag = None
        if isinstance(store, RunChangeLog):
            # a running attempt's bar ends "now": a reader that holds this revision extends it
            tag = entity_tag("timeline", run, store.run_revision(run_id))
            if not_modified(if_none_match, tag):
                raise Unchanged(tag)
        spec = scheduler.spec(run.project, run.workflow, run.version)
        instances = {t.task_id: t for t in store.get_tasks(run_id)}
        by_task: dict[str, list[Attempt]] = {}
        for attempt in store.list_attempts(run_id):
            by_task.setdefault(attempt.task_id, []).append(attempt)
        for task_id, instance in instances.items():
            by_task[task_id] = with_running_attempt(instance, by_task.get(task_id, []))
        starts = [a.started_at for found in by_task.values() for a in found]
        ends = [a.ended_at for found in by_task.values() for a in found if a.ended_at]
        if any(a.ended_at is None for found in by_task.values() for a in found):
            ends.append(scheduler.clock.now())
        start = min(starts, default=run.started_at)
        end = max(ends, default=run.ended_at)
        keys = ("attempt", "state", "started_at", "ended_at", "duration_seconds")

        def bar(attempt: Attempt) -> dict[str, Any]:
            view = attempt_view(attempt)
            return {k: view[k] for k in keys}

        tasks = [
            {
                "task_id": task_id,
                "state": instances[task_id].state.value,
                "attempts": [
                    bar(a) for a in sorted(by_task.get(task_id, []), key=lambda a: a.attempt)
                ],
            }
            for task_id in spec.dag.order
            if task_id in instances
        ]
        body = _view_json(
            {
                "run": run_view(run),
                "start": None if start is None else start.isoformat(),
                "end": None if end is None else end.isoformat(),
                "tasks": tasks,
            }
        )  # a Timeline (tests/unit/test_api_view_encoding.py)
        if tag is None:
            return _body_tagged_view(body, if_none_match)
        return _view_response(body, tag)

    @app.get(
        "/runs/<run_id>/tasks/<task_id>",
        summary="A task of a run, with its attempts",
        tags=["runs"],
        responses=_responses("The task and its attempts (`history`)", 404),
    )
    def get_task(run_id: RunIdPath, task_id: TaskIdPath) -> TaskView:
        run = run_for(run_id, Action.READ)
        task = store.get_task(run_id, task_id)
        attempts = store.list_attempts(run_id, task_id)
        spec = scheduler.spec(run.project, run.workflow, run.version)
        child = children(spec, run_id, [task]).get(task_id)
        return TaskView.model_validate(task_view(task, attempts, child_run=child))

    @app.get(
        "/runs/<run_id>/tasks/<task_id>/attempts/<attempt>/log",
        summary="An attempt's log as text",
        description=(
            f"Up to `limit` (at most {MAX_LOG_CHUNK}) bytes from `offset`. To page through or "
            "follow a log, pass the "
            f"`{NEXT_OFFSET_HEADER}` response header as the next `offset`."
        ),
        tags=["runs"],
        responses=_responses(
            "The log text from `offset`",
            404,
            ok_content={content_types.TEXT_PLAIN: {"schema": {"type": "string"}}},
        ),
    )
    def get_log(
        run_id: RunIdPath,
        task_id: TaskIdPath,
        attempt: AttemptPath,
        offset: OffsetQuery = 0,
        limit: LogLimitQuery = MAX_LOG_CHUNK,
    ) -> Response[str]:
        run = run_for(run_id, Action.READ)
        task = store.get_task(run_id, task_id)
        attempts = store.list_attempts(run_id, task_id)
        found = [a for a in attempts if a.attempt == attempt]
        if not found:
            raise _no_attempt(task, attempts, attempt)
        masker = masker_for(secret_source, run.project)  # a task that printed its own secret
        # with secrets to mask, read `hold` bytes before the page too: a value that begins
        # there and ends in the page is masked, not shown from its second byte on
        back = min(offset, masker.hold) if masker else 0
        window = reader(found[0], offset - back, back + limit + UTF8_MAX - 1 + masker.hold)
        if window is None:
            spec = scheduler.spec(run.project, run.workflow, run.version)
            defined = spec.workflow.tasks.get(task_id)
            raise NotFound(
                f"no log for attempt {attempt} of task {task_id!r} in run {run_id!r}"
                + _why_no_log(found[0], defined.type if defined is not None else None)
            )
        lead = max(0, min(offset - window.start, len(window.data)))
        page = LogRange(window.data[lead:], window.start + lead, window.size)
        # a log still being written keeps its last `hold` bytes back, whatever they are
        ended = found[0].ended_at is not None
        final = ended and window.start + len(window.data) >= window.size

        def cut(length: int) -> tuple[bytes, int]:
            chunk, next_offset = _log_chunk(page, length)
            if masker:
                chunk, used = masker.window(window.data, len(chunk), final=final, lead=lead)
                next_offset = page.start + used
            return chunk, next_offset

        text, next_offset = _fitting_page(cut, limit)
        headers = {NEXT_OFFSET_HEADER: str(next_offset), LOG_SIZE_HEADER: str(window.size)}
        if masker and found[0].ended_at is None:
            # its tail is held back until more is written or it ends (the same for any text)
            headers[LOG_HELD_HEADER] = str(masker.hold)
        return Response(
            status_code=HTTPStatus.OK.value,
            content_type="text/plain; charset=utf-8",
            body=text,
            headers=headers,
        )

    @app.get(
        "/runs/<run_id>/tasks/<task_id>/outputs/<key>",
        summary="One output value of a task, as text, paged",
        description=(
            "A run or task view cuts an output value that is too large and lists it under "
            "`outputs_truncated` with this path. Up to `limit` (at most "
            f"{MAX_LOG_CHUNK}) bytes from `offset` of the value (a string as it is, anything "
            f"else as JSON); pass the `{NEXT_OFFSET_HEADER}` response header as the next "
            f"`offset` until it reaches `{OUTPUT_SIZE_HEADER}`."
        ),
        tags=["runs"],
        responses=_responses(
            "The value's text from `offset`",
            404,
            ok_content={content_types.TEXT_PLAIN: {"schema": {"type": "string"}}},
        ),
    )
    def get_output(
        run_id: RunIdPath,
        task_id: TaskIdPath,
        key: str,
        attempt: AttemptQuery = None,
        offset: OffsetQuery = 0,
        limit: LogLimitQuery = MAX_LOG_CHUNK,
    ) -> Response[str]:
        run_for(run_id, Action.READ)
        task = store.get_task(run_id, task_id)
        outputs = task.outputs
        if attempt is not None:
            attempts = store.list_attempts(run_id, task_id)
            found = [a for a in attempts if a.attempt == attempt]
            if not found:
                raise _no_attempt(task, attempts, attempt)
            outputs = found[0].outputs
        if key not in outputs:
            raise NotFound(f"task {task_id!r} of run {run_id!r} has no output {key!r}")
        data = output_text(outputs[key]).encode()
        start = min(offset, len(data))
        window = LogRange(data[start : start + limit + UTF8_MAX - 1], start, len(data))
        text, next_offset = _fitting_page(partial(_log_chunk, window), limit)
        return Response(
            status_code=HTTPStatus.OK.value,
            content_type="text/plain; charset=utf-8",
            body=text,
            headers={NEXT_OFFSET_HEADER: str(next_offset), OUTPUT_SIZE_HEADER: str(len(data))},
        )

    @app.post(
        "/runs/<run_id>/pause",
        summary="Pause a run: dispatch nothing new; what runs finishes",
        tags=["runs"],
        responses=_responses("The run, paused", 404, 409),
    )
    def pause_run(run_id: RunIdPath) -> RunView:
        target = run_for(run_id, Action.OPERATE)
        project = target.project
        scheduler.subworkflows.check_caller_run(caller(), target, "pausing it")
        scheduler.subworkflows.check_caller_children(caller(), target, "pausing it")
        run = scheduler.pause(run_id)
        changed()
        record("run.pause", f"run/{run_id}", project)
        return one_run(run)

    @app.post(
        "/runs/<run_id>/resume",
        summary="Resume a paused run",
        tags=["runs"],
        responses=_responses("The run, resumed", 404, 409),
    )
    def resume_run(run_id: RunIdPath) -> RunView:
        target = run_for(run_id, Action.OPERATE)
        project = target.project
        scheduler.subworkflows.check_caller_run(caller(), target, "resuming it")
        scheduler.subworkflows.check_caller_children(caller(), target, "resuming it")
        scheduler.subworkflows.check_caller_parents(caller(), target, "resuming it")
        run = scheduler.resume(run_id)
        changed()
        record("run.resume", f"run/{run_id}", project)
        return one_run(run)

    @app.post(
        "/runs/<run_id>/stop",
        summary="Stop a run and kill what runs",
        tags=["runs"],
        responses=_responses("The run, stopped", 404, 409),
    )
    def stop_run(run_id: RunIdPath) -> RunView:
        target = run_for(run_id, Action.OPERATE)
        project = target.project
        scheduler.subworkflows.check_caller_run(caller(), target, "stopping it")
        scheduler.subworkflows.check_caller_children(caller(), target, "stopping it")
        scheduler.subworkflows.check_caller_parents(caller(), target, "stopping it")
        run = scheduler.stop(run_id)
        changed()
        record("run.stop", f"run/{run_id}", project)
        return one_run(run)

    @app.post(
        "/runs/<run_id>/rerun",
        summary="Rerun failed tasks, or a task and everything downstream of it",
        tags=["runs"],
        responses=_responses("The run, running again", 400, 404, 409, 415),
    )
    def rerun_run(run_id: RunIdPath, body: RerunBody = None) -> RunView:
        target = run_for(run_id, Action.OPERATE)
        project = target.project
        scheduler.subworkflows.check_caller_rerun(caller(), target, "rerunning it")
        scheduler.subworkflows.check_caller_parents(caller(), target, "rerunning it")
        from_task = body.from_ if body is not None else None
        run = scheduler.rerun(run_id, from_task=from_task)
        changed()
        record("run.rerun", f"run/{run_id}", project, from_task=from_task)
        return one_run(run)

    @app.post(
        "/runs/<run_id>/tasks/<task_id>/mark",
        summary="Mark a task succeeded, skipped or failed; what waited on it is decided again",
        tags=["runs"],
        responses=_responses("The run after the change", 400, 404, 409, 415),
    )
    def mark_task(run_id: RunIdPath, task_id: TaskIdPath, body: MarkBody) -> RunView:
        target = run_for(run_id, Action.OPERATE)
        project = target.project
        store.get_task(run_id, task_id)
        scheduler.subworkflows.check_caller_rerun(caller(), target, "marking its tasks")
        scheduler.subworkflows.check_caller_children(caller(), target, "marking its tasks")
        scheduler.subworkflows.check_caller_parents(caller(), target, "marking its tasks")
        run = scheduler.mark(run_id, task_id, TaskState(body.state))
        changed()
        record("run.mark", f"run/{run_id}", project, task=task_id, state=body.state)
        return one_run(run)

    if alerts is not None:
        from stratoflow.api import alerts as alert_routes

        alert_routes.register(app, alerts, allow=allow, record=record, responses=_responses)
    if connections is not None:
        from stratoflow.api import connections as connection_routes

        connection_routes.register(
            app, connections, allow=allow, record=record, responses=_responses
        )
    register_backfills(
        app,
        scheduler,
        allow=allow,
        record=record,
        record_also=record_also,
        changed=changed,
        responses=_responses,
    )
    if scheduler.pools is not None:
        from stratoflow.api import pool_routes

        pool_routes.register(
            app, scheduler, allow=allow, caller=caller, record=record, changed=changed,
            responses=_responses,
        )  # fmt: skip
    return app
