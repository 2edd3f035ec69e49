"""``stratoflow secrets set NAME | list | delete NAME``: a project's secrets, through the API.

The value of ``set`` is read from stdin (one trailing newline dropped, so ``echo`` works), or
asked for without echo on a terminal; it is never an argument (argv is public) and never
printed. Exit 2 for a bad name or value (before anything is sent) or a refused request, 3 when
the API cannot be reached, as every client command.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from stratoflow.cli_common import (
    checked,
    client,
    invalid,
    project_output_api,
    segment,
    show,
)
from stratoflow.errors import InvalidInput
from stratoflow.secrets import MAX_VALUE_BYTES, check_name, check_value


def read_value(stream: Any, interactive: bool) -> str:
    """The value from ``stream`` (bytes), at most MAX_VALUE_BYTES; exit 2 when it is empty,
    too large or not UTF-8 text."""
    if interactive:
        value: str = click.prompt("value", hide_input=True, confirmation_prompt=True, err=True)
    else:
        raw = stream.read(MAX_VALUE_BYTES + 2)  # room for a newline echo adds
        if raw.endswith(b"\r\n"):
            raw = raw[:-2]
        elif raw.endswith(b"\n"):
            raw = raw[:-1]
        if len(raw) > MAX_VALUE_BYTES:
            invalid(
                f"value: more than {MAX_VALUE_BYTES:,} bytes on stdin; a secret is at most that"
            )
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            invalid("value: stdin is not UTF-8 text")
    try:
        return check_value(value)
    except InvalidInput as exc:
        invalid(f"{exc} (the value is read from stdin)")


@click.group("secrets")
def secrets() -> None:
    """A project's secrets: tasks reference them as {{ secrets.NAME }}."""


@secrets.command("set")
@click.argument("name")
@project_output_api
def secrets_set(name: str, project: str, output: str, api: str) -> None:
    """Set secret NAME from stdin (or a hidden prompt on a terminal)."""
    checked(check_name, name)
    value = read_value(sys.stdin.buffer, sys.stdin.isatty())
    body = client(api).call(
        "PUT",
        f"/secrets/{segment(name, 'secret name')}",
        params={"project": project},
        json={"value": value},
    )
    state = "created" if body.get("created") else "updated"
    show(body, output, f"{state}: secret {project}/{name}")


@secrets.command("list")
@project_output_api
def secrets_list(project: str, output: str, api: str) -> None:
    """The names of the project's secrets (never their values)."""
    body = client(api).call("GET", "/secrets", params={"project": project})
    show(body, output, "\n".join(s["name"] for s in body["secrets"]))


@secrets.command("delete")
@click.argument("name")
@project_output_api
def secrets_delete(name: str, project: str, output: str, api: str) -> None:
    """Delete secret NAME."""
    checked(check_name, name)
    body = client(api).call(
        "DELETE", f"/secrets/{segment(name, 'secret name')}", params={"project": project}
    )
    show(body, output, f"deleted: secret {project}/{name}")
