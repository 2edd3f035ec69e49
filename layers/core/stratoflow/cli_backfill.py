"""``stratoflow backfill NAME ...`` and ``stratoflow backfills list|show|pause|resume|cancel``
(registered on the main command by ``stratoflow.cli``). Client commands: they call the API."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from stratoflow.cli import Client, _params, ride_out
from stratoflow.cli_common import (
    EXIT_FAILED,
    EXIT_INVALID,
    api_option,
    command_line,
    output_option,
    project_option,
    segment,
    workflow_path,
    workflow_ref,
)
from stratoflow.cli_common import fail as _fail

BACKFILL_POLL_SECONDS = 1.0
# a refused field named as the option that gave it (the API's words are the same otherwise)
BACKFILL_FLAGS = {
    "body.parallel": "--parallel", "body.dates": "--dates", "body.order": "--order",
    "body.rerun": "--rerun", "start": "--start", "end": "--end", "dates": "--dates",
}  # fmt: skip
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
DATE_COLORS = {
    "running": "blue", "succeeded": "green", "failed": "red", "stopped": "yellow",
    "skipped": "magenta", "not_run": "bright_black",
}  # fmt: skip
OPERATIONS = {
    "pause": "Pause a backfill: no lane takes a new date (runs going on go on).",
    "resume": "Resume a paused backfill.",
    "cancel": "Cancel a backfill and stop the runs it made that still go on.",
}


def _print(body: dict[str, Any], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(body, indent=2))
        return
    _print_one(body)
    for child in body.get("dependents") or []:
        if isinstance(child, dict):  # dependent mode: each included workflow, by date
            click.echo(f"dependent of {body['workflow']}:")
            _print_one(child)


def _finished(body: dict[str, Any]) -> bool:
    """The backfill and every backfill it included have ended."""
    children = [c for c in body.get("dependents") or [] if isinstance(c, dict)]
    return all(b["state"] in TERMINAL for b in [body, *children])


def _succeeded(body: dict[str, Any]) -> bool:
    children = [c for c in body.get("dependents") or [] if isinstance(c, dict)]
    return all(b["state"] == "succeeded" for b in [body, *children])


def _versions(body: dict[str, Any]) -> str:
    """The workflow versions its dates' runs use: the backfill's ``version`` is the one the
    runs it makes pin, while a run it reran, waited for or kept goes on under its own (each
    date's ``version``, once a lane took it). One version when every date's is the same."""
    new = body["version"]
    dates = body.get("dates") or []
    known = [d["version"] for d in dates if d.get("version") is not None]
    if dates and len(known) == len(dates) and len(set(known)) == 1:
        return f"v{known[0]}"
    others = sorted(set(known) - {new})
    if not others:
        return f"v{new}"
    runs = ", ".join(f"v{v}" for v in others)
    return f"v{new} for new runs, {runs} for runs it reran or kept"


def _print_one(body: dict[str, Any]) -> None:
    counts = ", ".join(f"{n} {state}" for state, n in body["counts"].items() if n)
    click.echo(
        f"{body['id']}  {body['state']}  {body['project']}/{body['workflow']} "
        f"{_versions(body)}  parallel {body['parallel']}  rerun {body['rerun']}  ({counts})"
    )
    for date in body.get("dates") or []:
        state = click.style(f"{date['state']:<10}", fg=DATE_COLORS.get(date["state"]))
        lane = "" if date["lane"] is None else f" lane {date['lane']}"
        version = "" if date.get("version") is None else f" v{date['version']}"
        error = f"  {date['error']}" if date.get("error") else ""
        click.echo(f"  {date['logical_date']:<27} {state} {date['run_id']}{lane}{version}{error}")


@click.command()
@click.argument("name")
@click.option("--start", default=None, help="first logical date: YYYY-MM-DD or ISO date-time")
@click.option("--end", default=None, help="last logical date, inclusive")
@click.option(
    "--dates", default=None, help="instead of --start/--end: comma-separated days or date-times"
)
@click.option("--parallel", default=1, show_default=True, type=int, help="lanes (runs at once)")
@click.option("--order", type=click.Choice(["asc", "desc"]), default="asc", show_default=True)
@click.option(
    "--rerun", type=click.Choice(["none", "failed", "all"]), default="none", show_default=True,
    help="dates that already have a run: keep it, rerun its failed tasks, or rerun it whole",
)  # fmt: skip
@click.option(
    "-p", "--param", "params", multiple=True,
    help="name=value, for every run it makes (with --rerun, refused for dates whose runs have "
    "other values: a rerun keeps its run's params)",
)  # fmt: skip
@click.option(
    "--dependents", is_flag=True,
    help="also backfill the workflows whose dependency tasks wait on this one (transitively, "
    "each once), on their own schedules' dates in the range",
)  # fmt: skip
@click.option(
    "--wait", is_flag=True,
    help="wait until it (and its dependents) ended; exit 1 unless all succeeded",
)  # fmt: skip
@project_option
@output_option
@api_option
def backfill(
    name: str,
    start: str | None,
    end: str | None,
    dates: str | None,
    parallel: int,
    order: str,
    rerun: str,
    params: Sequence[str],
    dependents: bool,
    wait: bool,
    project: str,
    output: str,
    api: str,
) -> None:
    """Backfill NAME: one run per logical date its schedule fires in [start, end] (daily at
    00:00 without a schedule), serial unless --parallel; a repeated backfill adds nothing.
    NAME may be PROJECT/NAME."""
    project, name = workflow_ref(name, project)
    body: dict[str, Any] = {"parallel": parallel, "order": order, "rerun": rerun}
    if dependents:
        body["dependents"] = True
    if dates is not None:
        if start is not None or end is not None:
            _fail("--dates: give either --dates or --start and --end, not both", EXIT_INVALID)
        body["dates"] = [d.strip() for d in dates.split(",") if d.strip()]
    elif start is None or end is None:
        _fail("--start and --end are required (or --dates)", EXIT_INVALID)
    else:
        body.update(start=start, end=end)
    body["params"] = _params(params)
    client = Client(api)
    made = client.call(
        "POST", f"{workflow_path(name)}/backfills", params={"project": project}, json=body,
        flags=BACKFILL_FLAGS,
    )  # fmt: skip
    if not wait:
        if output == "json":
            click.echo(json.dumps(made, indent=2))
        else:
            click.echo(made["id"])
        return
    current, what = made, f"backfill {made['id']}"
    while not _finished(current):
        time.sleep(BACKFILL_POLL_SECONDS)
        current = ride_out(
            client, what, command_line(["backfills", "show"], [made["id"]]),
            lambda: client.response("GET", f"/backfills/{segment(made['id'], 'backfill id')}", transient=True).json(),
        )  # fmt: skip
    _print(current, output)
    sys.exit(0 if _succeeded(current) else EXIT_FAILED)


@click.group()
def backfills() -> None:
    """List, watch, pause, resume and cancel backfills."""


@backfills.command("list")
@click.option("--workflow", default=None)
@click.option("--limit", default=20, show_default=True, type=int)
@project_option
@output_option
@api_option
def backfills_list(workflow: str | None, limit: int, project: str, output: str, api: str) -> None:
    """The newest backfills of a project."""
    if workflow:
        project, workflow = workflow_ref(workflow, project)
    query: dict[str, Any] = {"project": project, "limit": limit}
    if workflow:
        query["workflow"] = workflow
    body = Client(api).call("GET", "/backfills", params=query)
    if output == "json":
        click.echo(json.dumps(body, indent=2))
        return
    for b in body["backfills"]:
        done = _completed(b["counts"])
        link = f"  (dependent of {b['parent']})" if b.get("parent") else ""
        if b.get("dependents"):
            link = f"  (+{len(b['dependents'])} dependents)"
        click.echo(
            f"{b['id']:<56} {b['state']:<10} {done}/{sum(b['counts'].values())}  "
            f"{b['created_at']}{link}"
        )


def _completed(counts: dict[str, int]) -> int:
    """The dates that reached an end through a run: theirs ran (succeeded, failed or
    stopped) or one was kept (skipped); a date left ``not_run`` (a cancel, a stopped lane)
    never ran, however final the backfill's state."""
    return sum(counts.get(s, 0) for s in ("succeeded", "failed", "stopped", "skipped"))


@backfills.command("show")
@click.argument("backfill_id")
@output_option
@api_option
def backfills_show(backfill_id: str, output: str, api: str) -> None:
    """A backfill and the progress of each date (and of each workflow it included)."""
    _print(Client(api).call("GET", f"/backfills/{segment(backfill_id, 'backfill id')}"), output)


def _print_reached(body: dict[str, Any]) -> None:
    """What a pause, resume or cancel changed: this backfill (or that it was left as it
    was, its own dates done) and each backfill it included that the operation reached."""
    reached = body.get("reached")
    if reached is None or body["id"] in reached:
        click.echo(f"{body['id']}: {body['state']}")
    else:
        click.echo(f"{body['id']}: {body['state']} (unchanged; it reached its dependents)")
    for child in body.get("dependents") or []:
        if isinstance(child, dict) and child["id"] in (reached or ()):
            click.echo(f"  dependent {child['id']}: {child['state']}")


def _operation(op: str) -> None:
    @backfills.command(op, help=OPERATIONS[op])
    @click.argument("backfill_id")
    @output_option
    @api_option
    def command(backfill_id: str, output: str, api: str) -> None:
        body = Client(api).call("POST", f"/backfills/{segment(backfill_id, 'backfill id')}/{op}")
        if output == "json":
            click.echo(json.dumps(body, indent=2))
        else:
            _print_reached(body)


for _op in OPERATIONS:
    _operation(_op)
