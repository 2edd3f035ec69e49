"""Named connections: where a ``type: sql`` task runs its SQL.

A connection belongs to a project and has a type and string settings, validated per type by a
pydantic model (:mod:`stratoflow.connection_types`, imported where a connection is validated). Credentials are secret references only (``{{ secrets.NAME }}``, see
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
from typing import Any

from stratoflow.alerts import secret_names
from stratoflow.errors import InvalidInput, NotFound, Problem
from stratoflow.secrets import SecretSource, resolve

NAME = re.compile(r"[a-z0-9_-]{1,128}")
MAX_CONNECTIONS = 200  # of one project
MAX_SETTINGS = 16
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
        from stratoflow.connection_types import CONNECTION_TYPES

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
    from pydantic import ValidationError

    from stratoflow.connection_types import CONNECTION_TYPES

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
    from stratoflow.connection_types import CONNECTION_TYPES

    lines = []
    for name, kind in CONNECTION_TYPES.items():
        fields = ", ".join(
            f"{k}{'*' if f.is_required() else ''}" for k, f in kind.model_fields.items()
        )
        lines.append(f"{name}: {kind.summary}; settings: {fields}")
    return "\n".join(lines)


def ui_table() -> dict[str, dict[str, Any]]:
    """What the web UI's form needs of each type (``ui/src/connectionTypes.json``)."""
    from stratoflow.connection_types import CONNECTION_TYPES

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
    "LOCAL_TYPES",
    "MAX_CONNECTIONS",
    "Connection",
    "MissingConnection",
    "type_help",
    "validate_connection",
]
