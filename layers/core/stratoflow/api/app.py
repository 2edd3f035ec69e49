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
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from http import HTTPStatus
from importlib import metadata
from pathlib import Path as FilePath
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import (
    OpenAPIResponse,
    OpenAPIResponseContentSchema,
)

from stratoflow.api.models import (
    AppliedVersion,
    ApplyRequest,
    ErrorView,
    Health,
    MarkRequest,
    RerunRequest,
    RunDetail,
    RunList,
    RunView,
    TaskView,
    TriggerRequest,
    VersionDetail,
    VersionList,
    WorkflowList,
)
from stratoflow.engine import Run, RunState, TaskState
from stratoflow.errors import Conflict, InvalidInput, NotFound, Problem
from stratoflow.ports import Attempt, RunQuery
from stratoflow.service import Scheduler
from stratoflow.views import run_detail, run_view, task_view, version_view

log = logging.getLogger("stratoflow.api")

DEFAULT_PROJECT = "default"
MAX_LIMIT = 500
MAX_LOG_CHUNK = 4 * 1024 * 1024  # bytes per log response (a Lambda response is at most 6 MB)
NEXT_OFFSET_HEADER = "X-Next-Offset"
LOG_SIZE_HEADER = "X-Log-Size"
TRIGGER = "api"

ReadLog = Callable[[Attempt], str | None]

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
ApplyBody = Annotated[ApplyRequest, Body()]
TriggerBody = Annotated[TriggerRequest | None, Body()]
RerunBody = Annotated[RerunRequest | None, Body()]
MarkBody = Annotated[MarkRequest, Body()]


# ------------------------------------------------------------------ errors
# The one table from exception type to HTTP status and error code.
_DOMAIN_ERRORS: Mapping[type[Exception], tuple[HTTPStatus, str]] = {
    InvalidInput: (HTTPStatus.BAD_REQUEST, "invalid_input"),
    NotFound: (HTTPStatus.NOT_FOUND, "not_found"),
    Conflict: (HTTPStatus.CONFLICT, "conflict"),
}
_DESCRIPTIONS = {
    400: "Invalid input: `problems` name each field and the reason",
    404: "Not found",
    409: "The operation does not apply to the current state",
    415: "The body is not JSON",
    422: "The request does not match the schema: `problems` name each field",
    500: "Internal error (details only in the server log)",
}


def _error_response(
    status: HTTPStatus, error: str, message: str, problems: Sequence[Problem] = ()
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "error": error,
        "message": message,
        "problems": [{"path": p.path, "message": p.message, "line": p.line} for p in problems],
    }
    return Response(
        status_code=status.value, content_type=content_types.APPLICATION_JSON, body=body
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
    return f"{len(problems)} problems: " + "; ".join(str(p) for p in problems)


def _register_errors(app: APIGatewayRestResolver) -> None:
    def domain_error(exc: Exception) -> Response[dict[str, Any]]:
        for cls in type(exc).__mro__:
            if cls in _DOMAIN_ERRORS:
                status, code = _DOMAIN_ERRORS[cls]
                problems = exc.problems if isinstance(exc, InvalidInput) else ()
                return _error_response(status, code, str(exc), problems)
        return internal_error(exc)  # pragma: no cover - only registered for the table's types

    def request_invalid(exc: RequestValidationError) -> Response[dict[str, Any]]:
        problems = _validation_problems(exc.errors())
        return _error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request", _summary(problems), problems
        )

    def unsupported_type(exc: RequestUnsupportedContentType) -> Response[dict[str, Any]]:
        return _error_response(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON (Content-Type: application/json)",
        )

    def undecodable(exc: Exception) -> Response[dict[str, Any]]:
        reason = "not valid base64" if isinstance(exc, binascii.Error) else "not UTF-8 text"
        problem = Problem("body", f"the body is {reason}")
        return _error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request", str(problem), [problem]
        )

    def route_not_found(exc: NotFoundError) -> Response[dict[str, Any]]:
        path = app.current_event.path if app.current_event is not None else ""
        method = app.current_event.http_method if app.current_event is not None else ""
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
    app.exception_handler(ServiceError)(service_error)
    app.exception_handler(ResponseValidationError)(internal_error)
    app.exception_handler(Exception)(internal_error)


def _responses(
    ok: str,
    *errors: int,
    created: str | None = None,
    ok_content: dict[str, OpenAPIResponseContentSchema] | None = None,
) -> dict[int, OpenAPIResponse]:
    """OpenAPI responses of a route: 200 (and 201) from its return type unless ``ok_content``
    says otherwise; every error is an ``ErrorView``; 422 and 500 can happen on every route."""
    success: OpenAPIResponse = {"description": ok}
    if ok_content is not None:
        success["content"] = dict(ok_content)
    out: dict[int, OpenAPIResponse] = {200: success}
    if created is not None:
        out[201] = {"description": created}
    for code in sorted({*errors, 422, 500}):
        out[code] = {
            "description": _DESCRIPTIONS[code],
            "content": {content_types.APPLICATION_JSON: {"model": ErrorView}},
        }
    return out


_POWERTOOLS_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def _own_error_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """Powertools documents its own 500 body on every route; ours is an ``ErrorView``. Fix
    that and drop Powertools' error schemas once nothing refers to them."""
    error_ref = {"$ref": "#/components/schemas/ErrorView"}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
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


def _parse_json(text: str) -> Any:
    """Strict JSON: NaN and Infinity are refused, and so is nesting deeper than Python's
    recursion limit; both as the JSONDecodeError that becomes a 422."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(str(exc), text, 0) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


# ------------------------------------------------------------------ logs
def read_log_file(attempt: Attempt) -> str | None:
    """The default log reader: ``Attempt.log`` is a local file path (the local executor's)."""
    if not attempt.log:
        return None
    try:
        return FilePath(attempt.log).read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return None


def _log_chunk(data: bytes, offset: int) -> tuple[bytes, int]:
    """Up to ``MAX_LOG_CHUNK`` bytes from ``offset``, ending on a UTF-8 character boundary;
    and the offset to ask for next."""
    start = min(offset, len(data))
    end = min(start + MAX_LOG_CHUNK, len(data))
    if end < len(data):
        while end > start and (data[end] & 0xC0) == 0x80:  # a continuation byte
            end -= 1
    return data[start:end], end


@cache
def _package_version() -> str:
    try:
        return metadata.version("stratoflow")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed in practice
        return "0"


# ------------------------------------------------------------------ the app
def create_app(
    scheduler: Scheduler,
    *,
    on_change: Callable[[], None] = lambda: None,
    read_log: ReadLog | None = None,
) -> APIGatewayRestResolver:
    """The REST API over ``scheduler``. ``on_change`` runs after every successful write (the
    local runtime passes its ``wake``); ``read_log`` turns an attempt's log location into
    text (default: read it as a local file)."""
    app = APIGatewayRestResolver(
        debug=False,  # never a traceback in a response, whatever POWERTOOLS_DEV says
        enable_validation=True,
        response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
        json_body_deserializer=_parse_json,
    )
    _register_errors(app)
    store = scheduler.store
    catalog = scheduler.catalog
    reader: ReadLog = read_log or read_log_file
    openapi: dict[str, Any] = {}

    def changed() -> None:
        try:
            on_change()
        except Exception:  # the write succeeded; a failed wake-up must not turn it into a 500
            log.exception("on_change hook failed")

    def detail(run: Run) -> RunDetail:
        spec = scheduler.spec(run.project, run.workflow, run.version)
        body = run_detail(run, store.get_tasks(run.id), store.list_attempts(run.id), spec.dag.order)
        return RunDetail.model_validate(body)

    def one_run(run: Run) -> RunView:
        return RunView.model_validate(run_view(run))

    # -------------------------------------------------------------- meta
    @app.get(
        "/health", summary="Liveness check", tags=["meta"], responses=_responses("The API is up")
    )
    def health() -> Health:
        return Health(status="ok")

    @app.get(
        "/openapi.json",
        summary="This API's OpenAPI document",
        tags=["meta"],
        responses=_responses("OpenAPI 3.1 document"),
    )
    def openapi_document() -> dict[str, Any]:
        if not openapi:
            document = app.get_openapi_json_schema(
                title="Stratoflow",
                version=_package_version(),
                description="DAG workflow scheduler: workflows, runs, tasks and logs.",
            )
            openapi.update(_own_error_schemas(json.loads(document)))
        return openapi

    # -------------------------------------------------------------- workflows
    @app.post(
        "/workflows",
        summary="Apply a workflow (a changed definition becomes a new version)",
        tags=["workflows"],
        responses=_responses(
            "Identical to the latest version: nothing changed (`created` is false)",
            400,
            415,
            created="Stored as a new version (`created` is true)",
        ),
    )
    def apply_workflow(body: ApplyBody) -> Response[AppliedVersion]:
        version, created = scheduler.apply(body.source)
        changed()
        view = {**version_view(version, full=True), "created": created}
        return Response(
            status_code=HTTPStatus.CREATED.value if created else HTTPStatus.OK.value,
            content_type=content_types.APPLICATION_JSON,
            body=AppliedVersion.model_validate(view),
        )

    @app.get(
        "/workflows",
        summary="The latest version of every workflow",
        tags=["workflows"],
        responses=_responses("The workflows of the project"),
    )
    def list_workflows(project: ProjectQuery = DEFAULT_PROJECT) -> WorkflowList:
        versions = catalog.list_workflows(project)
        return WorkflowList.model_validate({"workflows": [version_view(v) for v in versions]})

    @app.get(
        "/workflows/<name>",
        summary="The latest version of a workflow",
        tags=["workflows"],
        responses=_responses("The latest version, with its document and source", 404),
    )
    def get_workflow(name: str, project: ProjectQuery = DEFAULT_PROJECT) -> VersionDetail:
        return VersionDetail.model_validate(
            version_view(catalog.get_version(project, name), full=True)
        )

    @app.get(
        "/workflows/<name>/versions",
        summary="Every version of a workflow, newest first",
        tags=["workflows"],
        responses=_responses("The versions", 404),
    )
    def list_versions(name: str, project: ProjectQuery = DEFAULT_PROJECT) -> VersionList:
        versions = catalog.list_versions(project, name)
        return VersionList.model_validate({"versions": [version_view(v) for v in versions]})

    @app.get(
        "/workflows/<name>/versions/<version>",
        summary="One version of a workflow",
        tags=["workflows"],
        responses=_responses("The version, with its document and source", 404),
    )
    def get_version(
        name: str, version: VersionPath, project: ProjectQuery = DEFAULT_PROJECT
    ) -> VersionDetail:
        return VersionDetail.model_validate(
            version_view(catalog.get_version(project, name, version), full=True)
        )

    def set_paused(project: str, name: str, paused: bool) -> VersionDetail:
        catalog.set_paused(project, name, paused)
        changed()
        return VersionDetail.model_validate(
            version_view(catalog.get_version(project, name), full=True)
        )

    @app.post(
        "/workflows/<name>/pause",
        summary="Pause the workflow's schedule (runs already started go on)",
        tags=["workflows"],
        responses=_responses("The workflow, now paused", 404),
    )
    def pause_workflow(name: str, project: ProjectQuery = DEFAULT_PROJECT) -> VersionDetail:
        return set_paused(project, name, True)

    @app.post(
        "/workflows/<name>/unpause",
        summary="Unpause the workflow's schedule",
        tags=["workflows"],
        responses=_responses("The workflow, now unpaused", 404),
    )
    def unpause_workflow(name: str, project: ProjectQuery = DEFAULT_PROJECT) -> VersionDetail:
        return set_paused(project, name, False)

    @app.post(
        "/workflows/<name>/runs",
        summary="Trigger a run of the latest version",
        tags=["runs"],
        responses=_responses(
            "A run with this run_id already existed; it is returned unchanged",
            400,
            404,
            415,
            created="The run was created",
        ),
    )
    def trigger_run(
        name: str, body: TriggerBody = None, project: ProjectQuery = DEFAULT_PROJECT
    ) -> Response[RunDetail]:
        request = body or TriggerRequest()
        run, created = scheduler.trigger(
            project,
            name,
            params=request.params,
            logical_date=request.logical_date,
            run_id=request.run_id,
            trigger=TRIGGER,
        )
        changed()
        return Response(
            status_code=HTTPStatus.CREATED.value if created else HTTPStatus.OK.value,
            content_type=content_types.APPLICATION_JSON,
            body=detail(run),
        )

    # -------------------------------------------------------------- runs
    @app.get(
        "/runs",
        summary="Runs, newest first",
        tags=["runs"],
        responses=_responses("A page of runs; `next` is the cursor of the next", 400),
    )
    def list_runs(
        project: ProjectQuery = DEFAULT_PROJECT,
        workflow: WorkflowQuery = None,
        state: StateQuery = None,
        limit: LimitQuery = 50,
        before: BeforeQuery = None,
    ) -> RunList:
        if before is not None:
            try:
                store.get_run(before)
            except NotFound:
                raise InvalidInput(
                    [Problem("before", f"no run {before!r}: pass the `next` of a previous page")]
                ) from None
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
        responses=_responses("The run, its tasks in workflow order, their attempts", 404),
    )
    def get_run(run_id: str) -> RunDetail:
        return detail(store.get_run(run_id))

    @app.get(
        "/runs/<run_id>/tasks/<task_id>",
        summary="A task of a run, with its attempts",
        tags=["runs"],
        responses=_responses("The task and its attempts (`history`)", 404),
    )
    def get_task(run_id: str, task_id: str) -> TaskView:
        store.get_run(run_id)
        task = store.get_task(run_id, task_id)
        attempts = store.list_attempts(run_id, task_id)
        return TaskView.model_validate(task_view(task, attempts))

    @app.get(
        "/runs/<run_id>/tasks/<task_id>/attempts/<attempt>/log",
        summary="An attempt's log as text",
        description=(
            f"Up to {MAX_LOG_CHUNK} bytes from `offset`. To follow a log, pass the "
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
        run_id: str, task_id: str, attempt: AttemptPath, offset: OffsetQuery = 0
    ) -> Response[str]:
        store.get_run(run_id)
        store.get_task(run_id, task_id)
        found = [a for a in store.list_attempts(run_id, task_id) if a.attempt == attempt]
        if not found:
            raise NotFound(f"task {task_id!r} of run {run_id!r} has no attempt {attempt}")
        text = reader(found[0])
        if text is None:
            raise NotFound(f"no log for attempt {attempt} of task {task_id!r} in run {run_id!r}")
        data = text.encode("utf-8")
        chunk, next_offset = _log_chunk(data, offset)
        return Response(
            status_code=HTTPStatus.OK.value,
            content_type="text/plain; charset=utf-8",
            body=chunk.decode("utf-8", errors="replace"),
            headers={NEXT_OFFSET_HEADER: str(next_offset), LOG_SIZE_HEADER: str(len(data))},
        )

    @app.post(
        "/runs/<run_id>/pause",
        summary="Pause a run: dispatch nothing new; what runs finishes",
        tags=["runs"],
        responses=_responses("The run, paused", 404, 409),
    )
    def pause_run(run_id: str) -> RunView:
        run = scheduler.pause(run_id)
        changed()
        return one_run(run)

    @app.post(
        "/runs/<run_id>/resume",
        summary="Resume a paused run",
        tags=["runs"],
        responses=_responses("The run, resumed", 404, 409),
    )
    def resume_run(run_id: str) -> RunView:
        run = scheduler.resume(run_id)
        changed()
        return one_run(run)

    @app.post(
        "/runs/<run_id>/stop",
        summary="Stop a run and kill what runs",
        tags=["runs"],
        responses=_responses("The run, stopped", 404, 409),
    )
    def stop_run(run_id: str) -> RunView:
        run = scheduler.stop(run_id)
        changed()
        return one_run(run)

    @app.post(
        "/runs/<run_id>/rerun",
        summary="Rerun failed tasks, or a task and everything downstream of it",
        tags=["runs"],
        responses=_responses("The run, running again", 400, 404, 409, 415),
    )
    def rerun_run(run_id: str, body: RerunBody = None) -> RunView:
        from_task = body.from_ if body is not None else None
        run = scheduler.rerun(run_id, from_task=from_task)
        changed()
        return one_run(run)

    @app.post(
        "/runs/<run_id>/tasks/<task_id>/mark",
        summary="Mark a task succeeded or skipped; what waited on it is decided again",
        tags=["runs"],
        responses=_responses("The run after the change", 400, 404, 409, 415),
    )
    def mark_task(run_id: str, task_id: str, body: MarkBody) -> RunView:
        store.get_run(run_id)
        store.get_task(run_id, task_id)
        run = scheduler.mark(run_id, task_id, TaskState(body.state))
        changed()
        return one_run(run)

    return app
