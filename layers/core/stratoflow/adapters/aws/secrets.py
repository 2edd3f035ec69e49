"""Secrets on AWS: Secrets Manager ``<TaskSecretsPrefix><project>/<name>`` (default prefix
``stratoflow/``), the names each project role may read and nothing else
(``projects.ProjectPlaces.policy``). The runner resolves a task's references with
:class:`SecretsManagerSource`, as the project's role, just before the task starts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from stratoflow.secrets import DEFAULT_AWS_PREFIX, SecretSource, SecretUnavailable

PREFIX_VARIABLE = "STRATOFLOW_SECRETS_PREFIX"


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
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                return None
            raise SecretUnavailable(f"secret {name!r} ({sid}) could not be read: {code}") from None
        value = found.get("SecretString")
        if not isinstance(value, str):
            raise SecretUnavailable(f"secret {name!r} ({sid}) holds no text (SecretString)")
        return value
