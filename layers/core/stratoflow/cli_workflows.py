"""``stratoflow workflows list [--limit N] [--after NAME] | show NAME [--version N] |
pause NAME | unpause NAME``: a project's workflows and their schedules, through the API
(``airflow dags list/pause/unpause``).

Pausing a workflow stops its schedule firing (runs already started go on, and it can still be
triggered by hand); unpausing lets it fire again (``catchup: true`` makes up the firings
missed meanwhile, as docs/schedules.md says). Exit 2 for an unknown workflow or version, 3
when the API cannot be reached, as every client command.
"""

from __future__ import annotations

from typing import Any

import click

from stratoflow.cli_common import (
    client,
    printable,
    project_output_api,
    show,
    view_implied_limit,
    workflow_path,
    workflow_ref,
)

_path = workflow_path


def _schedule(view: dict[str, Any]) -> str:
    """A workflow's schedule in a word or two: ``*/2 * * * * (Europe/Paris)``, or ``-``."""
    schedule = view.get("schedule")
    if not schedule:
        return "-"
    if not isinstance(schedule, dict):
        return str(schedule)
    zone = schedule.get("timezone") or "UTC"
    return f"{schedule.get('cron')} ({zone})"


@click.group("workflows")
def workflows() -> None:
    """A project's workflows: list them, show one, pause or unpause its schedule."""


@workflows.command("list")
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(1, 500), help="page size"
)
@click.option("--after", default=None, metavar="NAME", help="the page after this name (`next`)")
@project_output_api
def workflows_list(limit: int, after: str | None, project: str, output: str, api: str) -> None:
    """The project's workflows by name: latest version, paused or not, schedule, last run."""
    params: dict[str, Any] = {"project": project, "limit": limit}
    if after is not None:
        params["after"] = after
    body = client(api).call("GET", "/workflows", params=params)
    rows = [("NAME", "VERSION", "PAUSED", "SCHEDULE", "LAST RUN", "NEXT RUN")]
    for w in body["workflows"]:
        last = w.get("last_run") or {}
        rows.append(
            (
                w["name"], f"v{w['version']}", "yes" if w["paused"] else "no", _schedule(w),
                last.get("state") or "-", w.get("next_run_at") or "-",
            )
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(n) for c, n in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    if not body["workflows"]:
        lines = [f"no workflows in project {project}" + (f" after {after}" if after else "")]
    if body.get("next"):
        lines.append(f"(more: --after {body['next']})")
    show(body, output, "\n".join(lines))


@workflows.command("show")
@click.argument("name")
@click.option("--version", type=click.IntRange(min=1), default=None, help="default: the latest")
@project_output_api
def workflows_show(name: str, version: int | None, project: str, output: str, api: str) -> None:
    """A workflow's latest version (or --version): schedule, paused or not, its tasks. NAME
    may be PROJECT/NAME."""
    project, name = workflow_ref(name, project)
    path = _path(name) if version is None else f"{_path(name)}/versions/{version}"
    body = client(api).call("GET", path, params={"project": project})
    tasks = list((body.get("document") or {}).get("tasks") or {})
    lines = [
        f"{body['project']}/{body['name']} v{body['version']} ({body['created_at']})",
        f"schedule: {_schedule(body)}{' (paused)' if body['paused'] else ''}",
    ]
    if body.get("schedule_error"):
        lines.append(f"schedule error: {body['schedule_error']}")
    if body.get("description"):
        lines.append(f"description: {printable(body['description'])}")
    implied = view_implied_limit(body)
    if implied:
        lines.append(implied)
    elif body.get("effective_max_active_runs") is not None:
        lines.append(f"max_active_runs: {body['effective_max_active_runs']}")
    lines.append(f"tasks ({len(tasks)}): {', '.join(tasks)}")
    show(body, output, "\n".join(lines))


def _set_paused(name: str, project: str, output: str, api: str, *, paused: bool) -> None:
    op = "pause" if paused else "unpause"
    project, name = workflow_ref(name, project)
    body = client(api).call("POST", f"{_path(name)}/{op}", params={"project": project})
    state = "paused" if body["paused"] else "unpaused"
    show(body, output, f"{body['project']}/{body['name']}: {state}")


@workflows.command("pause")
@click.argument("name")
@project_output_api
def workflows_pause(name: str, project: str, output: str, api: str) -> None:
    """Pause NAME's schedule: it fires no new run (runs already started go on)."""
    _set_paused(name, project, output, api, paused=True)


@workflows.command("unpause")
@click.argument("name")
@project_output_api
def workflows_unpause(name: str, project: str, output: str, api: str) -> None:
    """Unpause NAME's schedule: it fires again; with `catchup: true` also every time it
    missed while paused, oldest first. Without catchup, the latest time it missed fires at
    once (as Airflow does), locally and on AWS, and the earlier ones not at all."""
    _set_paused(name, project, output, api, paused=False)
