"""Variables: named text values a project keeps on the server, read by templates when a task
is rendered (``{{ var.value.NAME }}``, ``{{ var.json.NAME }}``), as Airflow's Variables and
DolphinScheduler's project parameters are. A team changes a bucket name or a threshold without
editing and re-applying its workflows; the next task rendered reads the new value.

Variables are not secrets: a project's viewers read them, its editors set and delete them, and
their values show wherever a rendered field shows (the API, the UI, logs). Keep credentials in
secrets (:mod:`stratoflow.secrets`).

Pure: the bounds and checks here; the stores are adapters (``VariableStore`` in
:mod:`stratoflow.ports`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from stratoflow.errors import InvalidInput, NotFound, Problem

# a name is read in a template as var.value.NAME: what a Jinja attribute can be (as a secret's)
NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_]{0,127}"
_NAME = re.compile(NAME_PATTERN)
MAX_VALUE_BYTES = 64 * 1024  # a value, UTF-8 encoded
MAX_VARIABLES = 1_000  # of one project


@dataclass(frozen=True)
class Variable:
    project: str
    name: str
    value: str
    updated_at: datetime
    updated_by: str


class MissingVariable(NotFound):
    def __init__(self, project: str, name: str) -> None:
        super().__init__(f"variable {name!r} is not set in project {project!r}")


def missing_message(project: str, name: str) -> str:
    """What a render that reads a variable that is not set says."""
    return (
        f"variable {name!r} is not set in project {project!r} "
        f"(set it with `stratoflow variables set {name} VALUE --project {project}`)"
    )


def check_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            [
                Problem(
                    field,
                    "a variable name is a letter followed by up to 127 letters, digits or "
                    "underscores (it is read as {{ var.value.NAME }})",
                )
            ]
        )
    return name


def check_value(value: str, field: str = "value") -> str:
    if not isinstance(value, str):
        raise InvalidInput([Problem(field, "a variable's value must be a string")])
    if "\0" in value:
        raise InvalidInput([Problem(field, "contains a NUL character")])
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput([Problem(field, "is not valid UTF-8 text")]) from None
    if size > MAX_VALUE_BYTES:
        raise InvalidInput(
            [Problem(field, f"{size:,} bytes; a variable's value is at most {MAX_VALUE_BYTES:,}")]
        )
    return value


def too_many(project: str) -> InvalidInput:
    return InvalidInput(
        [Problem("name", f"project {project} has {MAX_VARIABLES:,} variables, the most")]
    )
