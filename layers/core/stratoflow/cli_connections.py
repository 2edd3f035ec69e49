"""``stratoflow connections ...``: a project's named connections, where sql tasks run.

Client commands, like ``alerts``: they call the server's API (``--api``, ``$STRATOFLOW_TOKEN``).
A credential is given as a secret reference, e.g. ``--setting password='{{ secrets.pg_pw }}'``;
a literal one, or a URL carrying a password, is refused (exit 2)."""

from __future__ import annotations

import click

from stratoflow.cli_common import (
    EXIT_FAILED,
    client,
    named_settings_commands,
    project_output_api,
    segment,
    show,
)
from stratoflow.connection_types import CONNECTION_TYPES
from stratoflow.connections import type_help


@click.group()
def connections() -> None:
    """Named connections of a project: where `type: sql` tasks run their SQL."""


named_settings_commands(
    connections,
    kind="connection",
    path="/connections",
    types=list(CONNECTION_TYPES),
    add_epilog="\b\nTypes and their settings (* required):\n" + type_help(),
    list_help="The project's connections (credentials as their secret references).",
    with_show=True,
)


@connections.command("test")
@click.argument("name")
@project_output_api
def connections_test(name: str, project: str, output: str, api: str) -> None:
    """Connect and run SELECT 1; exit 1 when that fails (the message says why)."""
    body = client(api).call(
        "POST", f"/connections/{segment(name, 'connection name')}/test", params={"project": project}
    )
    show(body, output, f"{'ok' if body['ok'] else 'failed'}: {body['message']}")
    if not body["ok"]:
        raise SystemExit(EXIT_FAILED)
