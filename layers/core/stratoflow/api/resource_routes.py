"""``/resources``: upload, list, download, list versions of and delete a project's resource
files. A file is named by the ``path`` query parameter (it holds '/', which a path segment
cannot). An upload is the request body as it is (``application/octet-stream``), at most
``MAX_RESOURCE_BYTES``; a download is the bytes of the newest version, or of ``version``.

Reading (list, versions, download) needs the viewer role in the project; uploading and
deleting, the editor role (those who write the workflows that use them).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel

from stratoflow.api.replies import saved
from stratoflow.auth import Action, Principal
from stratoflow.errors import InvalidInput, Problem
from stratoflow.resources import (
    MAX_PATH_CHARS,
    MAX_RESOURCE_BYTES,
    PATH_RULES,
    ResourceStore,
    ResourceVersion,
    check_path,
    check_prefix,
    check_size,
)

Allow = Callable[[Action, str, str], Principal]
Record = Callable[..., None]
Responses = Callable[..., Any]

OCTET_STREAM = "application/octet-stream"
VERSION_HEADER = "X-Resource-Version"


class ResourceView(BaseModel):
    path: str
    version: str
    size: int
    sha256: str
    created_at: datetime


class ResourceList(BaseModel):
    project: str
    prefix: str
    resources: list[ResourceView]


class ResourceVersions(BaseModel):
    project: str
    path: str
    versions: list[ResourceView]


class ResourceUploaded(ResourceView):
    project: str


class ResourceDeleted(BaseModel):
    project: str
    path: str


ProjectParam = Annotated[
    str, Query(min_length=1, max_length=200, description="The resource's project.")
]
PathParam = Annotated[
    str, Query(min_length=1, max_length=MAX_PATH_CHARS, description=f"The file: {PATH_RULES}.")
]
PrefixParam = Annotated[
    str, Query(max_length=MAX_PATH_CHARS, description="Only the files whose path starts so.")
]
VersionParam = Annotated[
    str | None, Query(min_length=1, max_length=1024, description="A version (default newest).")
]


def _view(v: ResourceVersion) -> ResourceView:
    return ResourceView(**v.to_json())


def document(openapi: dict[str, Any]) -> None:
    """Describe the upload's body in the OpenAPI document (Powertools documents JSON bodies
    only: this one is the file's bytes)."""
    put = openapi.get("paths", {}).get("/resources/file", {}).get("put")
    if put is not None:
        put["requestBody"] = {
            "required": True,
            "description": f"The file's bytes, at most {MAX_RESOURCE_BYTES:,}.",
            "content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
        }


def _raw_response(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Hide the return annotation from Powertools, which would validate and JSON-encode the
    body: a file's bytes are not JSON (as ``app._raw_response`` does for static files)."""
    handler.__annotations__.pop("return", None)
    return handler


def register(
    app: APIGatewayRestResolver,
    store: ResourceStore,
    *,
    allow: Allow,
    record: Record,
    changed: Callable[[], None],
    responses: Responses,
) -> None:
    """Add the routes to ``app`` (``create_app`` passes its permission check and audit log)."""

    def body_bytes() -> bytes:
        event = app.current_event
        raw = event.body or ""
        if event.is_base64_encoded:
            try:
                data = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput([Problem("body", "is not valid base64")]) from None
        else:
            data = raw.encode("utf-8", errors="surrogateescape")
        check_size(len(data))
        return data

    @app.put(
        "/resources/file",
        summary="Upload a resource file: a new version of `path`",
        description=(
            f"The body is the file's bytes ({OCTET_STREAM}), at most {MAX_RESOURCE_BYTES:,} "
            "bytes. Every upload adds a version; runs created before it keep the version they "
            "pinned."
        ),
        tags=["resources"],
        responses=responses("The new version", 400, created="The file was created"),
    )
    def put_resource(
        path: PathParam, project: ProjectParam = "default"
    ) -> Response[ResourceUploaded]:
        allow(Action.EDIT, project, f"project {project!r}")
        check_path(path)
        data = body_bytes()
        created = not store.newest(project, [path])
        version = store.put(project, path, data)
        changed()
        record("resource.upload", f"resource/{project}/{path}", project,
               version=version.version, size=version.size)  # fmt: skip
        return saved(created, ResourceUploaded(project=project, **version.to_json()))

    @app.get(
        "/resources",
        summary="The project's resource files (the newest version of each)",
        tags=["resources"],
        responses=responses("The files, sorted by path", 400),
    )
    def list_resources(project: ProjectParam = "default", prefix: PrefixParam = "") -> ResourceList:
        allow(Action.READ, project, f"project {project!r}")
        check_prefix(prefix)
        return ResourceList(
            project=project,
            prefix=prefix,
            resources=[_view(v) for v in store.files(project, prefix)],
        )

    @app.get(
        "/resources/versions",
        summary="Every version of a resource file, newest first",
        tags=["resources"],
        responses=responses("The versions", 400, 404),
    )
    def resource_versions(path: PathParam, project: ProjectParam = "default") -> ResourceVersions:
        allow(Action.READ, project, f"project {project!r}")
        check_path(path)
        return ResourceVersions(
            project=project, path=path, versions=[_view(v) for v in store.versions(project, path)]
        )

    @app.get(
        "/resources/file",
        summary="Download a resource file (the newest version, or `version`)",
        description=f"The bytes; the version is in the `{VERSION_HEADER}` header.",
        tags=["resources"],
        responses=responses(
            "The file's bytes",
            400,
            404,
            ok_content={OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
        ),
    )
    @_raw_response
    def get_resource(
        path: PathParam, project: ProjectParam = "default", version: VersionParam = None
    ) -> Response[bytes]:
        allow(Action.READ, project, f"project {project!r}")
        check_path(path)
        found, data = store.get(project, path, version)
        name = path.rsplit("/", 1)[-1]
        return Response(
            status_code=HTTPStatus.OK.value,
            content_type=OCTET_STREAM,
            body=data,
            headers={
                VERSION_HEADER: found.version,
                "Content-Disposition": f'attachment; filename="{name}"',
                "X-Content-Type-Options": "nosniff",
            },
        )

    @app.delete(
        "/resources/file",
        summary="Delete a resource file and all its versions",
        description="Runs that pinned one of its versions fail the tasks that list it.",
        tags=["resources"],
        responses=responses("The file is gone", 400, 404),
    )
    def delete_resource(path: PathParam, project: ProjectParam = "default") -> ResourceDeleted:
        allow(Action.EDIT, project, f"project {project!r}")
        check_path(path)
        store.delete(project, path)
        changed()
        record("resource.delete", f"resource/{project}/{path}", project)
        return ResourceDeleted(project=project, path=path)
