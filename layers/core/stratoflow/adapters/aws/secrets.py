"""Secrets on AWS: Secrets Manager ``<TaskSecretsPrefix><project>/<name>`` (default prefix
``stratoflow/``), the names each project role may read and nothing else
(``projects.ProjectPlaces.policy``). The runner resolves a task's references with
:class:`SecretsManagerSource`, as the project's role, just before the task starts."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from stratoflow.errors import InvalidInput, NotFound, Problem
from stratoflow.secrets import (
    DEFAULT_AWS_PREFIX,
    MAX_SECRETS,
    NAME_PATTERN,
    SecretSource,
    SecretStore,
    SecretUnavailable,
    check_name,
    check_project,
    check_value,
)

_NAME = re.compile(NAME_PATTERN)

PREFIX_VARIABLE = "STRATOFLOW_SECRETS_PREFIX"
# names one kubernetes or batch task may have resolved in its container (each up to 64 KiB)
MAX_SECRET_REFERENCES = 16
# a variable a shell script can assign (what holds a reference resolved by a wrapper)
SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def secrets_prefix(environ: Mapping[str, str] | None = None) -> str:
    """The stack's TaskSecretsPrefix ($STRATOFLOW_SECRETS_PREFIX, default ``stratoflow/``)."""
    return (os.environ if environ is None else environ).get(PREFIX_VARIABLE) or DEFAULT_AWS_PREFIX


def secret_id(prefix: str, project: str, name: str) -> str:
    return f"{prefix}{project}/{name}"


class SecretsManagerSource(SecretSource):
    """``get`` is one GetSecretValue; a secret that does not exist is None, any other refusal
    (no permission, a throttle, a binary secret) says which secret and why."""

    def __init__(self, client: Any, prefix: str = DEFAULT_AWS_PREFIX) -> None:
        self._client = client
        self.prefix = prefix

    def get(self, project: str, name: str) -> str | None:
        sid = secret_id(self.prefix, project, name)
        try:
            found = self._client.get_secret_value(SecretId=sid)
        except ClientError as exc:
            code = _code(exc)
            if code == "ResourceNotFoundException":
                return None
            raise SecretUnavailable(f"secret {name!r} ({sid}) could not be read: {code}") from None
        value = found.get("SecretString")
        if not isinstance(value, str):
            raise SecretUnavailable(f"secret {name!r} ({sid}) holds no text (SecretString)")
        return value


class SecretsManagerStore(SecretsManagerSource, SecretStore):
    """What the API function manages on AWS (``/secrets``): create or replace, list the
    names under ``<prefix><project>/``, delete at once (no recovery window, so a name can be
    set again straight away, as locally). The API's role may write and delete under the
    prefix but never read a value (``GetSecretValue`` is the runners')."""

    def _project_prefix(self, project: str) -> str:
        check_project(project)
        return f"{self.prefix}{project}/"

    def put(self, project: str, name: str, value: str) -> bool:
        check_name(name)
        check_value(value)
        sid = self._project_prefix(project) + name
        try:
            self._client.put_secret_value(SecretId=sid, SecretString=value)
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise SecretUnavailable(f"secret {name!r} ({sid}) not set: {_code(exc)}") from None
        else:
            return False
        if len(self.names(project)) >= MAX_SECRETS:
            raise InvalidInput(
                [Problem("name", f"project {project!r} has {MAX_SECRETS} secrets, the most")]
            )
        try:
            self._client.create_secret(
                Name=sid,
                SecretString=value,
                Description=f"Stratoflow: {{{{ secrets.{name} }}}} of project {project}",
                Tags=[{"Key": "stratoflow:project", "Value": project}],
            )
        except ClientError as exc:
            if _code(exc) != "ResourceExistsException":  # made meanwhile: replace it
                raise SecretUnavailable(f"secret {name!r} ({sid}) not set: {_code(exc)}") from None
            self._client.put_secret_value(SecretId=sid, SecretString=value)
            return False
        return True

    def names(self, project: str) -> list[str]:
        start = self._project_prefix(project)
        found: list[str] = []
        pages = self._client.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": [start]}]
        )
        for page in pages:
            for entry in page.get("SecretList", []):
                full = str(entry.get("Name", ""))
                name = full[len(start) :]
                if full.startswith(start) and _NAME.fullmatch(name):
                    found.append(name)
        return sorted(found)

    def delete(self, project: str, name: str) -> None:
        check_name(name)
        sid = self._project_prefix(project) + name
        try:
            # a forced delete of a secret that is not there succeeds: ask first
            self._client.describe_secret(SecretId=sid)
            self._client.delete_secret(SecretId=sid, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise NotFound(f"secret {name!r} not found in project {project!r}") from None
            raise SecretUnavailable(f"secret {name!r} ({sid}) not deleted: {_code(exc)}") from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
