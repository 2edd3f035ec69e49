"""``/secrets``: set, list (names only) and delete a project's secrets.

A value goes in (``PUT``) and never comes out: no route returns one, the audit log names the
secret only, and an invalid request's error names the field, never what was sent. Setting,
listing and deleting need the editor role in the project (those who write the workflows that
reference them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from stratoflow.api.replies import saved
from stratoflow.auth import Action, Principal
from stratoflow.secrets import MAX_VALUE_BYTES, NAME_PATTERN, SecretStore, check_name, check_value

Allow = Callable[[Action, str, str], Principal]
Record = Callable[..., None]
Responses = Callable[..., Any]


class SecretValue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(
        min_length=1,
        max_length=MAX_VALUE_BYTES,
        description=f"The secret's value (UTF-8, at most {MAX_VALUE_BYTES} bytes); never returned.",
    )


class SecretName(BaseModel):
    project: str
    name: str


class SecretSet(SecretName):
    created: bool


class SecretList(BaseModel):
    project: str
    secrets: list[SecretName]


SecretBody = Annotated[SecretValue, Body()]
NamePath = Annotated[str, Path(min_length=1, max_length=128, pattern=f"^{NAME_PATTERN}$")]
ProjectParam = Annotated[
    str, Query(min_length=1, max_length=200, description="The secret's project.")
]


def register(
    app: APIGatewayRestResolver,
    store: SecretStore,
    *,
    allow: Allow,
    record: Record,
    changed: Callable[[], None],
    responses: Responses,
) -> None:
    """Add the routes to ``app`` (``create_app`` passes its permission check and audit log)."""

    @app.put(
        "/secrets/<name>",
        summary="Set a secret of the project (its value is never shown again)",
        tags=["secrets"],
        responses=responses(
            "The secret existed; its value is replaced",
            400,
            404,
            415,
            created="The secret was created",
        ),
    )
    def put_secret(
        name: NamePath, body: SecretBody, project: ProjectParam = "default"
    ) -> Response[SecretSet]:
        allow(Action.EDIT, project, f"project {project!r}")
        check_name(name)
        check_value(body.value)
        created = store.put(project, name, body.value)
        changed()
        record("secret.set", f"secret/{project}/{name}", project, created=created)
        return saved(created, SecretSet(project=project, name=name, created=created))

    @app.get(
        "/secrets",
        summary="The names of the project's secrets (never their values)",
        tags=["secrets"],
        responses=responses("The names, sorted", 400),
    )
    def list_secrets(project: ProjectParam = "default") -> SecretList:
        allow(Action.EDIT, project, f"project {project!r}")
        return SecretList(
            project=project,
            secrets=[SecretName(project=project, name=n) for n in store.names(project)],
        )

    @app.delete(
        "/secrets/<name>",
        summary="Delete a secret of the project",
        tags=["secrets"],
        responses=responses("The secret is gone", 400, 404),
    )
    def delete_secret(name: NamePath, project: ProjectParam = "default") -> SecretName:
        allow(Action.EDIT, project, f"project {project!r}")
        store.delete(project, name)
        changed()
        record("secret.delete", f"secret/{project}/{name}", project)
        return SecretName(project=project, name=name)
