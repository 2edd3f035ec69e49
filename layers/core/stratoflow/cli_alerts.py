"""``stratoflow alerts ...``: alert channels and groups, test alerts, the delivery log.

Client commands, like ``runs``: they call the server's API (``--api``, ``$STRATOFLOW_TOKEN``).
Credentials are given as secret references, e.g.
``--setting routing_key='{{ secrets.pd_key }}'``; a literal credential is refused (exit 2)."""

from __future__ import annotations

from typing import Any

import click

from stratoflow.alerts import CHANNEL_TYPES
from stratoflow.cli_common import (
    EXIT_FAILED,
    client,
    delete_command,
    invalid,
    named_settings_commands,
    project_output_api,
    segment,
    show,
)


@click.group()
def alerts() -> None:
    """Alert channels and groups, test alerts, and what was delivered."""


@alerts.group()
def channels() -> None:
    """Where alerts go: PagerDuty, Slack, Webex, Teams, email, ... (per project)."""


named_settings_commands(
    channels,
    kind="channel",
    path="/alerts/channels",
    types=sorted(CHANNEL_TYPES),
    url_help="the type's URL (a webhook URL: a secret reference)",
    url_setting=lambda type_: CHANNEL_TYPES[type_].url_setting,
)


@alerts.group()
def groups() -> None:
    """Named sets of channels that workflows' ``alerts`` name."""


@groups.command("set")
@click.argument("group")
@click.option("--channels", "names", required=True, help="NAME[,NAME...]")
@project_output_api
def groups_set(group: str, names: str, project: str, output: str, api: str) -> None:
    """Create or replace GROUP with these channels."""
    chans = [n.strip() for n in names.split(",") if n.strip()]
    if not chans:
        invalid("--channels: name at least one channel")
    view = client(api).call(
        "PUT",
        f"/alerts/groups/{segment(group, 'alert group name')}",
        params={"project": project},
        json={"channels": chans},
    )
    show(view, output, f"group {group}: {', '.join(chans)}")


@groups.command("list")
@project_output_api
def groups_list(project: str, output: str, api: str) -> None:
    body = client(api).call("GET", "/alerts/groups", params={"project": project})
    lines = [f"{g['name']}\t{','.join(g['channels'])}" for g in body["groups"]]
    show(body, output, "\n".join(lines) or "(no groups)")


delete_command(groups, kind="group", path="/alerts/groups", argument="group")


def _lines(deliveries: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{d['created_at']}\t{d['status']}\t{d['channel']}\t{d['event']}\t{d['subject']}"
        + (f"\t{d['last_error']}" if d["last_error"] else "")
        for d in deliveries
    )


@alerts.command("test")
@click.argument("group")
@project_output_api
def alerts_test(group: str, project: str, output: str, api: str) -> None:
    """Send a test alert to every channel of GROUP; exit 1 unless each was sent."""
    body = client(api).call(
        "POST",
        f"/alerts/groups/{segment(group, 'alert group name')}/test",
        params={"project": project},
    )
    show(body, output, _lines(body["deliveries"]))
    if any(d["status"] != "sent" for d in body["deliveries"]):
        raise SystemExit(EXIT_FAILED)


@alerts.command("list")
@click.option("--run", "run_id", default=None, help="only this run's alerts")
@click.option(
    "--status",
    default=None,
    type=click.Choice(["pending", "retrying", "sent", "failed", "skipped"]),
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@project_output_api
def alerts_list(
    run_id: str | None, status: str | None, limit: int, project: str, output: str, api: str
) -> None:
    """Alerts and each channel's delivery status, newest first."""
    params: dict[str, Any] = {"project": project, "limit": limit}
    if run_id:
        params["run_id"] = run_id
    if status:
        params["status"] = status
    body = client(api).call("GET", "/alerts", params=params)
    show(body, output, _lines(body["deliveries"]) or "(no alerts)")
