"""The settings of each connection type: a pydantic model per type, and the checks of the
values (a credential only as a secret reference, a database URL without a password).

Imported where a connection's settings are validated or listed
(:func:`stratoflow.connections.validate_connection`, ``Connection.resolved``, the API, the
CLI), not by every process that loads :mod:`stratoflow.connections`: a scheduler that runs no
``type: sql`` task never needs these classes (~5 ms to define, on every ``stratoflow run``).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stratoflow.alerts import SECRET_REF, secret_names
from stratoflow.secrets import reference

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
    # built when first validated: few processes that import this module validate a connection
    # (the server lists the types), and the settings' patterns cost ~10 ms to compile
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

__all__ = ["CONNECTION_TYPES", "MAX_VALUE_CHARS"]
