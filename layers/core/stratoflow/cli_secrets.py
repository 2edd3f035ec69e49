"""``stratoflow secrets set NAME | list | delete NAME``: a project's secrets, through the API.

The value of ``set`` is read from stdin (one trailing newline dropped, so ``echo`` works), or
asked for without echo on a terminal; it is never an argument (argv is public) and never
printed. Exit 2 for a bad name or value (before anything is sent) or a refused request, 3 when
the API cannot be reached, as every client command.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from stratoflow.errors import InvalidInput
from stratoflow.secrets import MAX_VALUE_BYTES, check_name, check_value

EXIT_INVALID = 2

project_option = click.option("--project", default="default", show_default=True)
output_option = click.option("--output", type=click.Choice(["text", "json"]), default="text")


def _default_api() -> str:
    from stratoflow.cli import default_api

    return default_api()


api_option = click.option(
    "--api", default=_default_api, show_default="$STRATOFLOW_API or local server", help="API URL"
)


def _invalid(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_INVALID)


def _checked_name(name: str) -> str:
    try:
        return check_name(name)
    except InvalidInput as exc:
        _invalid(str(exc))
        raise  # pragma: no cover - _invalid exits


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
            _invalid(
                f"value: more than {MAX_VALUE_BYTES:,} bytes on stdin; a secret is at most that"
            )
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            _invalid("value: stdin is not UTF-8 text")
    try:
        return check_value(value)
    except InvalidInput as exc:
        _invalid(f"{exc} (the value is read from stdin)")
        raise  # pragma: no cover - _invalid exits


def _show(body: Any, output: str, text: str) -> None:
    click.echo(json.dumps(body, indent=2) if output == "json" else text)


@click.group("secrets")
def secrets() -> None:
    """A project's secrets: tasks reference them as {{ secrets.NAME }}."""


@secrets.command("set")
@click.argument("name")
@project_option
@output_option
@api_option
def secrets_set(name: str, project: str, output: str, api: str) -> None:
    """Set secret NAME from stdin (or a hidden prompt on a terminal)."""
    from stratoflow.cli import Client

    _checked_name(name)
    value = read_value(sys.stdin.buffer, sys.stdin.isatty())
    body = Client(api).call(
        "PUT", f"/secrets/{name}", params={"project": project}, json={"value": value}
    )
    state = "created" if body.get("created") else "updated"
    _show(body, output, f"{state}: secret {project}/{name}")


@secrets.command("list")
@project_option
@output_option
@api_option
def secrets_list(project: str, output: str, api: str) -> None:
    """The names of the project's secrets (never their values)."""
    from stratoflow.cli import Client

    body = Client(api).call("GET", "/secrets", params={"project": project})
    _show(body, output, "\n".join(s["name"] for s in body["secrets"]))


@secrets.command("delete")
@click.argument("name")
@project_option
@output_option
@api_option
def secrets_delete(name: str, project: str, output: str, api: str) -> None:
    """Delete secret NAME."""
    from stratoflow.cli import Client

    _checked_name(name)
    body = Client(api).call("DELETE", f"/secrets/{name}", params={"project": project})
    _show(body, output, f"deleted: secret {project}/{name}")
