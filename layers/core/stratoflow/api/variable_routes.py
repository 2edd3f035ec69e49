"""``/variables``: a project's variables, named text values its templates read when a task is
rendered (``{{ var.value.NAME }}``, ``{{ var.json.NAME }}``).

Variables are not secrets: a project's viewers list and read them, its editors set and delete
them (the audit log records ``variable.set`` / ``variable.delete`` with the name and the
value's size). A name or value that breaks a rule is refused naming it, and nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from stratoflow.api.replies import saved
from stratoflow.auth import Action, Principal
from stratoflow.ports import Clock, VariableStore
from stratoflow.secrets import check_project
from stratoflow.variables import (
    MAX_VALUE_BYTES,
    NAME_PATTERN,
    MissingVariable,
    Variable,
    check_name,
    check_value,
)

Allow = Callable[[Action, str, str], Principal]
Record = Callable[..., None]
Responses = Callable[..., Any]


class VariableValue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(
        max_length=MAX_VALUE_BYTES,
        description=f"The variable's value: text (UTF-8, at most {MAX_VALUE_BYTES} bytes); "
        "{{ var.json.NAME }} reads it as JSON.",
    )


class VariableView(BaseModel):
    """A variable of a project, its value and who set it when."""

    project: str
    name: str
    value: str
    updated_at: datetime
    updated_by: str

    @classmethod
    def of(cls, variable: Variable) -> VariableView:
        return cls(
            project=variable.project, name=variable.name, value=variable.value,
            updated_at=variable.updated_at, updated_by=variable.updated_by,
        )  # fmt: skip


# how much of each value a list shows: 1,000 values of 64 KiB would be a 64 MB reply (Lambda
# answers at most 6 MB); the whole value is GET /variables/{name}
LIST_PREVIEW_CHARS = 1024


class VariableSummary(BaseModel):
    """A variable as a list shows it: its value's first ``LIST_PREVIEW_CHARS`` characters."""

    project: str
    name: str
    value: str = Field(description="the value, or its first 1,024 characters (truncated)")
    size: int = Field(description="the whole value's size in bytes (UTF-8)")
    truncated: bool = Field(description="value is the beginning only: GET the variable")
    updated_at: datetime
    updated_by: str

    @classmethod
    def of(cls, variable: Variable) -> VariableSummary:
        value = variable.value
        return cls(
            project=variable.project, name=variable.name, value=value[:LIST_PREVIEW_CHARS],
            size=len(value.encode("utf-8")), truncated=len(value) > LIST_PREVIEW_CHARS,
            updated_at=variable.updated_at, updated_by=variable.updated_by,
        )  # fmt: skip


class VariableList(BaseModel):
    project: str
    variables: list[VariableSummary]


class VariableDeleted(BaseModel):
    project: str
    deleted: str


VariableBody = Annotated[VariableValue, Body()]
NamePath = Annotated[str, Path(min_length=1, max_length=128, pattern=f"^{NAME_PATTERN}$")]
ProjectParam = Annotated[
    str, Query(min_length=1, max_length=200, description="The variable's project.")
]


def register(
    app: APIGatewayRestResolver,
    store: VariableStore,
    clock: Clock,
    *,
    allow: Allow,
    record: Record,
    changed: Callable[[], None],
    responses: Responses,
) -> None:
    """Add the routes to ``app`` (``create_app`` passes its permission check and audit log)."""

    @app.get(
        "/variables",
        summary="The project's variables, each value's first 1,024 characters",
        tags=["variables"],
        responses=responses("The variables, by name", 400),
    )
    def list_variables(project: ProjectParam = "default") -> VariableList:
        check_project(project)
        allow(Action.READ, project, f"project {project!r}")
        return VariableList(
            project=project,
            variables=[VariableSummary.of(v) for v in store.list_variables(project)],
        )

    @app.get(
        "/variables/<name>",
        summary="A variable of the project",
        tags=["variables"],
        responses=responses("The variable", 400, 404),
    )
    def get_variable(name: NamePath, project: ProjectParam = "default") -> VariableView:
        check_project(project)
        allow(Action.READ, project, f"project {project!r}")
        variable = store.get_variable(project, name)
        if variable is None:
            raise MissingVariable(project, name)
        return VariableView.of(variable)

    @app.put(
        "/variables/<name>",
        summary="Set a variable of the project (templates rendered after it read the new value)",
        tags=["variables"],
        responses=responses(
            "The variable existed; its value is replaced", 400, 404, 415,
            created="The variable was created",
        ),
    )  # fmt: skip
    def put_variable(
        name: NamePath, body: VariableBody, project: ProjectParam = "default"
    ) -> Response[VariableView]:
        check_project(project)  # as secrets, resources and pools: '../../x' was stored
        principal = allow(Action.EDIT, project, f"project {project!r}")
        check_name(name)
        check_value(body.value)
        variable = Variable(project, name, body.value, clock.now(), principal.name)
        created = store.put_variable(variable)
        changed()
        record(
            "variable.set", f"variable/{project}/{name}", project, created=created,
            bytes=len(body.value.encode("utf-8")),
        )  # fmt: skip
        return saved(created, VariableView.of(variable))

    @app.delete(
        "/variables/<name>",
        summary="Delete a variable of the project (tasks that read it then fail, naming it)",
        tags=["variables"],
        responses=responses("The variable is gone", 400, 404),
    )
    def delete_variable(name: NamePath, project: ProjectParam = "default") -> VariableDeleted:
        check_project(project)
        allow(Action.EDIT, project, f"project {project!r}")
        if not store.delete_variable(project, name):
            raise MissingVariable(project, name)
        changed()
        record("variable.delete", f"variable/{project}/{name}", project)
        return VariableDeleted(project=project, deleted=name)
