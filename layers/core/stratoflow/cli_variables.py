"""``stratoflow variables set NAME [VALUE | --file F | -] | get NAME | list | delete NAME``: a
project's variables, through the API.

A variable is not a secret: its value may be an argument, and ``get``/``list`` print it. The
value of ``set`` is VALUE, or the contents of ``--file`` (``-``, or VALUE ``-``: stdin), whole
(nothing stripped; at most 64 KiB of UTF-8). Exit 2 for a bad project, name or value (before anything
is sent) or a refused request, 3 when the API cannot be reached, as every client command.
"""

from __future__ import annotations

import sys
from typing import Any, BinaryIO

import click

from stratoflow.cli_common import (
    checked,
    client,
    invalid,
    printable,
    project_output_api,
    segment,
    show,
)
from stratoflow.secrets import check_project
from stratoflow.variables import MAX_VALUE_BYTES, check_name, check_value


def _read(stream: BinaryIO, where: str) -> str:
    raw = stream.read(MAX_VALUE_BYTES + 1)
    if len(raw) > MAX_VALUE_BYTES:
        invalid(
            f"value: {where} holds more than {MAX_VALUE_BYTES:,} bytes; a variable is at most that"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        invalid(f"value: {where} is not UTF-8 text")


def _value(value: str | None, file: str | None) -> str:
    if value is not None and file is not None:
        invalid("give the value as VALUE or --file, not both")
    if value is None and file is None:
        invalid("give the value: VALUE, --file FILE, or - (stdin)")
    if file == "-" or value == "-":
        text = _read(sys.stdin.buffer, "stdin")
    elif file is not None:
        try:
            with open(file, "rb") as stream:
                text = _read(stream, file)
        except OSError as exc:
            invalid(f"--file {file}: {exc.strerror or exc}")
    else:
        assert value is not None
        text = value
    return checked(check_value, text)


def _line(variable: dict[str, Any]) -> str:
    value = str(variable["value"])
    shown = (
        value
        if len(value) <= 60 and "\n" not in value
        else value[:57].split("\n", maxsplit=1)[0] + "..."
    )
    return f"{variable['name']:<32} {printable(shown)}"


@click.group("variables")
def variables() -> None:
    """A project's variables: templates read them as {{ var.value.NAME }} / {{ var.json.NAME }}."""


@variables.command("set")
@click.argument("name")
@click.argument("value", required=False)
@click.option("--file", "file", default=None, help="read the value from this file ('-': stdin)")
@project_output_api
def variables_set(
    name: str, value: str | None, file: str | None, project: str, output: str, api: str
) -> None:
    """Set variable NAME to VALUE (or --file's contents; '-': stdin; a VALUE starting with
    '-' goes after --). Tasks rendered after it read the new value."""
    checked(check_project, project)
    checked(check_name, name)
    text = _value(value, file)
    body = client(api).call(
        "PUT",
        f"/variables/{segment(name, 'variable name')}",
        params={"project": project},
        json={"value": text},
    )
    show(body, output, f"set: variable {project}/{name}")


@variables.command("get")
@click.argument("name")
@project_output_api
def variables_get(name: str, project: str, output: str, api: str) -> None:
    """Print variable NAME's value (as it is, with --output json its details too)."""
    checked(check_project, project)
    checked(check_name, name)
    body = client(api).call(
        "GET", f"/variables/{segment(name, 'variable name')}", params={"project": project}
    )
    value = str(body["value"])
    if output == "json" or sys.stdout.isatty():
        # on a terminal, its escape sequences shown, not obeyed
        show(body, output, printable(value))
    else:
        # as it is into a pipe or file: click.echo strips what looks like a colour
        # sequence from text not bound for a terminal, and the value would not be its own
        click.echo(value, color=True)


@variables.command("list")
@project_output_api
def variables_list(project: str, output: str, api: str) -> None:
    """The project's variables and their values (long ones cut)."""
    checked(check_project, project)
    body = client(api).call("GET", "/variables", params={"project": project})
    lines = [_line(v) for v in body["variables"]]
    show(body, output, "\n".join(lines) or f"no variables in project {project}")


@variables.command("delete")
@click.argument("name")
@project_output_api
def variables_delete(name: str, project: str, output: str, api: str) -> None:
    """Delete variable NAME (tasks that read it then fail, naming it)."""
    checked(check_project, project)
    checked(check_name, name)
    body = client(api).call(
        "DELETE", f"/variables/{segment(name, 'variable name')}", params={"project": project}
    )
    show(body, output, f"deleted: variable {project}/{name}")
