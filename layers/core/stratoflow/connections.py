"""Named connections: where a ``type: sql`` task runs its SQL.

A connection belongs to a project and has a type and string settings, validated per type by a
pydantic model. Credentials are secret references only (``{{ secrets.NAME }}``, see
:mod:`stratoflow.secrets`): a literal password, or a URL that carries one, is refused naming
the setting, so a stored connection, what the API returns and the audit log never hold a
credential. The reference is resolved where the query runs (the executor), nowhere before.

Pure: no I/O here; the stores are adapters (``adapters.local.connections``) and the drivers
are the task runner's (``taskexec.sql``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from stratoflow.alerts import SECRET_REF, secret_names
from stratoflow.errors import InvalidInput, NotFound, Problem
from stratoflow.secrets import SecretSource, reference, resolve

NAME = re.compile(r"[a-z0-9_-]{1,128}")
MAX_CONNECTIONS = 200  # of one project
MAX_SETTINGS = 16
MAX_VALUE_CHARS = 2048
_ARN = r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:.+"
_REGION = r"[a-z]{2}(-[a-z]+)+-\d"


def _no_control(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("contains a control character")
    return value


def _reference_only(value: str) -> str:
    """A credential: exactly one secret reference."""
    if not value:
        return value
    found = SECRET_REF.fullmatch(value.strip())
    if found is None:
        raise ValueError(
            "is a credential: give it as a secret reference '{{ secrets.NAME }}' "
            "(set the value with `stratoflow secrets set NAME`)"
        )
    return reference(found.group(1))  # the canonical form, the one executors resolve


def _database_url(value: str, schemes: tuple[str, ...], example: str) -> str:
    if secret_names(value):
        raise ValueError("is not a credential; give the password as the 'password' setting")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    if parts.scheme not in schemes:
        raise ValueError(f"must look like {example}")
    if parts.password is not None:
        raise ValueError(
            "carries a password: take it out of the URL and give it as "
            "--setting password='{{ secrets.NAME }}'"
        )
    if not parts.hostname:
        raise ValueError(f"names no host; it must look like {example}")
    if not parts.username:
        raise ValueError(f"names no user; it must look like {example}")
    if port is not None and not 0 < port < 65536:
        raise ValueError("has a port out of range (1-65535)")
    if parts.query or parts.fragment:
        raise ValueError("takes no query or fragment; use the type's other settings")
    return value


class _Settings(BaseModel):
    # built when first validated: every process that starts a scheduler imports this module,
    # few add or run a connection, and the settings' patterns cost ~10 ms to compile
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    credentials: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""

    @field_validator("*", mode="after")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, str):
            _no_control(value)
            if len(value) > MAX_VALUE_CHARS:
                raise ValueError(f"{len(value)} characters; at most {MAX_VALUE_CHARS}")
        return value


class _Timeout(_Settings):
    connect_timeout: str = Field(default="10", pattern=r"^[1-9][0-9]{0,2}$",
                                 description="seconds to wait for the server (1-999)")  # fmt: skip


class PostgresSettings(_Timeout):
    summary: ClassVar[str] = "PostgreSQL (psycopg 3), from wherever the task runs"
    credentials: ClassVar[tuple[str, ...]] = ("password",)
    url: str = Field(description="postgresql://USER@HOST:PORT/DB (no password)")
    password: str = ""
    sslmode: str = Field(
        default="prefer",
        pattern=r"^(disable|allow|prefer|require|verify-ca|verify-full)$",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _database_url(value, ("postgresql", "postgres"), "postgresql://USER@HOST:PORT/DB")

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return _reference_only(value)


class MysqlSettings(_Timeout):
    summary: ClassVar[str] = "MySQL or MariaDB (PyMySQL), from wherever the task runs"
    credentials: ClassVar[tuple[str, ...]] = ("password",)
    url: str = Field(description="mysql://USER@HOST:PORT/DB (no password)")
    password: str = ""
    ssl: str = Field(default="prefer", pattern=r"^(disable|prefer|require)$")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _database_url(value, ("mysql", "mariadb"), "mysql://USER@HOST:PORT/DB")

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return _reference_only(value)


class AthenaSettings(_Settings):
    summary: ClassVar[str] = "Amazon Athena (a workgroup, a database, an S3 output location)"
    workgroup: str = Field(default="primary", pattern=r"^[A-Za-z0-9._-]{1,128}$")
    database: str = Field(pattern=r"^[A-Za-z0-9_-]{1,255}$")
    catalog: str = Field(default="AwsDataCatalog", pattern=r"^[A-Za-z0-9_-]{1,255}$")
    output_location: str = Field(default="", pattern=r"^(s3://[^/\s]+(/\S*)?)?$")
    region: str = Field(default="", pattern=rf"^({_REGION})?$")


class RedshiftDataSettings(_Settings):
    summary: ClassVar[str] = (
        "Amazon Redshift through the Redshift Data API (a provisioned cluster or a "
        "serverless workgroup)"
    )
    database: str = Field(pattern=r"^[A-Za-z0-9_$-]{1,127}$")
    cluster_identifier: str = Field(default="", pattern=r"^([a-z][a-z0-9-]{0,62})?$")
    workgroup_name: str = Field(default="", pattern=r"^([a-z0-9-]{3,64})?$")
    db_user: str = Field(default="", pattern=r"^([A-Za-z0-9_$.-]{1,128})?$")
    secret_arn: str = Field(default="", pattern=rf"^({_ARN})?$",
                            description="a Secrets Manager ARN (not a credential itself)")  # fmt: skip
    region: str = Field(default="", pattern=rf"^({_REGION})?$")

    @model_validator(mode="after")
    def _one_target(self) -> RedshiftDataSettings:
        if bool(self.cluster_identifier) == bool(self.workgroup_name):
            raise ValueError("give exactly one of cluster_identifier or workgroup_name")
        return self


class AuroraDataApiSettings(_Settings):
    summary: ClassVar[str] = "Amazon Aurora through the RDS Data API"
    resource_arn: str = Field(pattern=rf"^{_ARN}$", description="the cluster's ARN")
    secret_arn: str = Field(pattern=rf"^{_ARN}$",
                            description="a Secrets Manager ARN (not a credential itself)")  # fmt: skip
    database: str = Field(default="", pattern=r"^([A-Za-z0-9_$-]{1,64})?$")
    region: str = Field(default="", pattern=rf"^({_REGION})?$")


CONNECTION_TYPES: Mapping[str, type[_Settings]] = {
    "postgresql": PostgresSettings,
    "mysql": MysqlSettings,
    "athena": AthenaSettings,
    "redshift-data": RedshiftDataSettings,
    "aurora-data-api": AuroraDataApiSettings,
}
LOCAL_TYPES = frozenset({"postgresql", "mysql"})  # what the local runtime can run


@dataclass(frozen=True)
class Connection:
    project: str
    name: str
    type: str
    settings: Mapping[str, str]

    def view(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "name": self.name,
            "type": self.type,
            "settings": dict(self.settings),
        }

    def resolved(self, source: SecretSource) -> dict[str, str]:
        """The settings, the type's defaults filled in, with their secret references replaced
        by the values (``stratoflow.secrets.MissingSecret`` names those not set). Only where
        the query runs."""
        full = CONNECTION_TYPES[self.type].model_validate(dict(self.settings)).model_dump()
        settings, _ = resolve({k: str(v) for k, v in full.items()}, self.project, source)
        return dict(settings)


@dataclass(frozen=True)
class TestOutcome:
    """What ``connections test`` found: reachable with its credentials, or why not."""

    ok: bool
    message: str


class MissingConnection(NotFound):
    def __init__(self, project: str, name: str) -> None:
        super().__init__(
            f"connection {name!r} is not defined in project {project!r} (add it with "
            f"`stratoflow connections add {name} --type TYPE --setting k=v --project {project}`)"
        )
        self.project = project
        self.name = name


def validate_connection(
    project: str, name: str, type_: str, settings: Mapping[str, Any]
) -> Connection:
    """The connection, or ``InvalidInput`` naming every bad field (nothing is changed)."""
    problems: list[Problem] = []
    if not isinstance(project, str) or not NAME.fullmatch(project):
        problems.append(Problem("project", "use a-z, 0-9, '_' and '-' (at most 128)"))
    if not isinstance(name, str) or not NAME.fullmatch(name):
        problems.append(Problem("name", "use a-z, 0-9, '_' and '-' (at most 128)"))
    kind = CONNECTION_TYPES.get(type_)
    if kind is None:
        problems.append(
            Problem("type", f"unknown connection type {type_!r}; one of "
                    f"{', '.join(CONNECTION_TYPES)}")
        )  # fmt: skip
        raise InvalidInput(problems)
    if len(settings) > MAX_SETTINGS:
        problems.append(Problem("settings", f"{len(settings)} settings; at most {MAX_SETTINGS}"))
        raise InvalidInput(problems)
    for key, value in settings.items():
        if not isinstance(value, str):
            problems.append(Problem(f"settings.{key}", "must be a string"))
        elif (
            key not in kind.credentials
            and key in kind.model_fields
            and key != "url"  # the url's own check says it better
            and secret_names(value)
        ):
            problems.append(Problem(f"settings.{key}", "is not a credential; write it in clear"))
    if not problems:
        try:
            kind.model_validate(dict(settings))
        except ValidationError as exc:
            for err in exc.errors(include_input=False, include_url=False):
                where = ".".join(str(p) for p in err["loc"])
                message = str(err["msg"]).removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    message = (f"unknown setting for type {type_}; known: "
                               f"{', '.join(kind.model_fields)}")  # fmt: skip
                elif err["type"] == "missing":
                    message = f"required for a connection of type {type_}"
                elif err["type"] == "string_pattern_mismatch":
                    message = "has the wrong form" + (
                        f" ({kind.model_fields[where].description})"
                        if where in kind.model_fields and kind.model_fields[where].description
                        else ""
                    )
                problems.append(Problem(f"settings.{where}" if where else "settings", message))
    if problems:
        raise InvalidInput(problems)
    clean = kind.model_validate(dict(settings))  # canonical references
    given = {k: str(getattr(clean, k)) for k in settings}
    return Connection(project, name, type_, dict(sorted(given.items())))


def type_help() -> str:
    """One line per type: its settings (required ones marked *)."""
    lines = []
    for name, kind in CONNECTION_TYPES.items():
        fields = ", ".join(
            f"{k}{'*' if f.is_required() else ''}" for k, f in kind.model_fields.items()
        )
        lines.append(f"{name}: {kind.summary}; settings: {fields}")
    return "\n".join(lines)


def ui_table() -> dict[str, dict[str, Any]]:
    """What the web UI's form needs of each type (``ui/src/connectionTypes.json``)."""
    return {
        name: {
            "summary": kind.summary,
            "required": [k for k, f in kind.model_fields.items() if f.is_required()],
            "optional": [k for k, f in kind.model_fields.items() if not f.is_required()],
            "credentials": list(kind.credentials),
            "defaults": {
                k: f.default
                for k, f in kind.model_fields.items()
                if not f.is_required() and f.default
            },
        }
        for name, kind in CONNECTION_TYPES.items()
    }


__all__ = [
    "CONNECTION_TYPES",
    "LOCAL_TYPES",
    "MAX_CONNECTIONS",
    "Connection",
    "MissingConnection",
    "type_help",
    "validate_connection",
]
