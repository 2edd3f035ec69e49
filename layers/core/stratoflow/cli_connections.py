"""``stratoflow connections ...``: a project's named connections, where sql tasks run.

Client commands, like ``alerts``: they call the server's API (``--api``, ``$STRATOFLOW_TOKEN``).
A credential is given as a secret reference, e.g. ``--setting password='{{ secrets.pg_pw }}'``;
a literal one, or a URL carrying a password, is refused (exit 2)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from stratoflow.cli_common import (
    EXIT_FAILED,
    api_option,
    client,
    project_option,
    project_output_api,
    settings,
    show,
    typed_line,
)
from stratoflow.connections import CONNECTION_TYPES, type_help


@click.group()
def connections() -> None:
    """Named connections of a project: where `type: sql` tasks run their SQL."""


@connections.command("add", epilog="\b\nTypes and their settings (* required):\n" + type_help())
@click.argument("name")
@click.option("--type", "type_", required=True, type=click.Choice(list(CONNECTION_TYPES)))
@click.option("--setting", "pairs", multiple=True, metavar="K=V", help="a setting (repeat)")
@project_output_api
def connections_add(
    name: str, type_: str, pairs: Sequence[str], project: str, output: str, api: str
) -> None:
    """Add (or replace) connection NAME."""
    body = {"type": type_, "settings": settings(pairs)}
    view = client(api).call("PUT", f"/connections/{name}", params={"project": project}, json=body)
    show(view, output, f"connection {name} ({type_}) saved in {project}")


@connections.command("list")
@project_output_api
def connections_list(project: str, output: str, api: str) -> None:
    """The project's connections (credentials as their secret references)."""
    body = client(api).call("GET", "/connections", params={"project": project})
    show(body, output, "\n".join(typed_line(c) for c in body["connections"]) or "(no connections)")


@connections.command("show")
@click.argument("name")
@project_output_api
def connections_show(name: str, project: str, output: str, api: str) -> None:
    body = client(api).call("GET", f"/connections/{name}", params={"project": project})
    show(body, output, typed_line(body))


@connections.command("delete")
@click.argument("name")
@project_option
@api_option
def connections_delete(name: str, project: str, api: str) -> None:
    client(api).call("DELETE", f"/connections/{name}", params={"project": project})
    click.echo(f"connection {name} deleted")


@connections.command("test")
@click.argument("name")
@project_output_api
def connections_test(name: str, project: str, output: str, api: str) -> None:
    """Connect and run SELECT 1; exit 1 when that fails (the message says why)."""
    body = client(api).call("POST", f"/connections/{name}/test", params={"project": project})
    show(body, output, f"{'ok' if body['ok'] else 'failed'}: {body['message']}")
    if not body["ok"]:
        raise SystemExit(EXIT_FAILED)
