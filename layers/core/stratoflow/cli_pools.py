"""``stratoflow pools set NAME --slots N | list | show NAME | delete NAME`` and
``stratoflow runs force-start RUN TASK``, through the API.

Without ``--project`` a pool is global (shared by every project; superusers only may change
one). Exit 2 for a bad name or size (before anything is sent) or a refused request, 3 when
the API cannot be reached, as every client command.
"""

from __future__ import annotations

from typing import Any

import click

from stratoflow.cli_common import (
    api_option,
    client,
    invalid,
    output_option,
    segment,
    show,
)
from stratoflow.engine.pools import check_pool
from stratoflow.model._workflow import MAX_POOL_SLOTS

project_option = click.option(
    "--project", default=None, help="the pool's project (default: a global pool)"
)


def _params(project: str | None) -> dict[str, str]:
    return {} if project is None else {"project": project}


_FLAGS = {"slots": "--slots", "project": "--project"}  # a problem's field as the user typed it


def _checked(name: str, slots: int, project: str | None) -> None:
    problems = check_pool(name, slots, project)
    if problems:
        invalid("; ".join(f"{_FLAGS.get(p.path, p.path)}: {p.message}" for p in problems))


def _label(pool: dict[str, Any]) -> str:
    return f"{pool['project']}/{pool['name']}" if pool["project"] else f"{pool['name']} (global)"


@click.group("pools")
def pools() -> None:
    """Named pools of slots that tasks share across runs (`pool:` on a task)."""


@pools.command("set")
@click.argument("name")
@click.option("--slots", type=int, required=True, help=f"1..{MAX_POOL_SLOTS}")
@project_option
@output_option
@api_option
def pools_set(name: str, slots: int, project: str | None, output: str, api: str) -> None:
    """Create pool NAME or change its number of slots (a warning names each task of a
    workflow that needs more slots than the pool then has: it will fail, not wait)."""
    _checked(name, slots, project)
    body = client(api).call(
        "PUT",
        f"/pools/{segment(name, 'pool name')}",
        params=_params(project),
        json={"slots": slots},
        flags={"body.slots": "--slots", "query.project": "--project"},
    )
    show(body, output, f"pool {_label(body)}: {body['slots']} slots, {body['used']} used")
    if output != "json":
        for warning in body.get("warnings", []):
            click.echo(f"warning: {warning}", err=True)


@pools.command("list")
@click.option("--project", default=None, help="also this project's pools")
@output_option
@api_option
def pools_list(project: str | None, output: str, api: str) -> None:
    """The global pools (and the project's)."""
    body = client(api).call("GET", "/pools", params=_params(project))
    lines = [f"{_label(p):<40} {p['used']}/{p['slots']} used" for p in body["pools"]]
    show(body, output, "\n".join(lines) or "no pools")


@pools.command("show")
@click.argument("name")
@project_option
@output_option
@api_option
def pools_show(name: str, project: str | None, output: str, api: str) -> None:
    """A pool with its running and waiting tasks (in the order they will be served)."""
    _checked(name, 1, project)
    body = client(api).call("GET", f"/pools/{segment(name, 'pool name')}", params=_params(project))
    lines = [f"pool {_label(body)}: {body['used']}/{body['slots']} used, {body['waiting']} waiting"]
    lines += [f"  running  {t['run_id']} {t['task_id']}" for t in body["running_tasks"]]
    lines += [
        f"  waiting  {t['run_id']} {t['task_id']} (priority {t['priority']})"
        for t in body["waiting_tasks"]
    ]
    if body["hidden"]:
        lines.append(f"  and {body['hidden']} of projects you cannot read")
    show(body, output, "\n".join(lines))


@pools.command("delete")
@click.argument("name")
@project_option
@output_option
@api_option
def pools_delete(name: str, project: str | None, output: str, api: str) -> None:
    """Delete pool NAME (refused while tasks hold or wait for its slots)."""
    _checked(name, 1, project)
    body = client(api).call(
        "DELETE", f"/pools/{segment(name, 'pool name')}", params=_params(project)
    )
    show(body, output, f"deleted: pool {_label(body)}")


@click.command("force-start")
@click.argument("run_id")
@click.argument("task_id")
@output_option
@api_option
def force_start(run_id: str, task_id: str, output: str, api: str) -> None:
    """Start a task waiting in a pool now, ahead of its queue and the free slots."""
    body = client(api).call(
        "POST", f"/runs/{segment(run_id, 'run id')}/tasks/{segment(task_id, 'task id')}/force-start"
    )
    show(body, output, f"{run_id} {task_id}: {body['state']} (attempt {body['attempt']})")
