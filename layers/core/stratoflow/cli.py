"""The ``stratoflow`` command.

Exit codes: 0 success (a run succeeded); 1 a run failed or the server failed; 2 invalid input
(the message names the field, as the API's 4xx body does); 3 the server cannot be reached.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from stratoflow.cli_common import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_UNREACHABLE,
    LazyGroup,
    api_option,
    command_line,
    implied_limit,
    output_option,
    printable,
    project_option,
    segment,
    view_implied_limit,
    workflow_path,
    workflow_ref,
)
from stratoflow.cli_common import fail as _fail
from stratoflow.errors import Conflict, InvalidInput, NotFound, StratoflowError

if TYPE_CHECKING:
    import ssl

    import httpx

    from stratoflow.adapters.local.identity import SqliteIdentities

DEFAULT_PORT = 8321
STATE_STYLES = {
    "waiting": "dim", "queued": "cyan", "running": "bold blue", "up_for_retry": "yellow",
    "succeeded": "green", "failed": "bold red", "skipped": "magenta",
    "upstream_failed": "red", "stopped": "bright_black", "paused": "yellow",
}  # fmt: skip


def default_home() -> Path:
    return Path(os.environ.get("STRATOFLOW_HOME") or Path.home() / ".stratoflow")


def default_api() -> str:
    return os.environ.get("STRATOFLOW_API") or f"http://127.0.0.1:{DEFAULT_PORT}"


ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - older versions left the token here


def default_token() -> str | None:
    """$STRATOFLOW_TOKEN. No token is kept on disk: the server shows the first admin's once,
    and ``stratoflow admin token --reset`` issues a new one."""
    token = os.environ.get("STRATOFLOW_TOKEN")
    return token.strip() if token else None


@contextmanager
def _errors() -> Iterator[None]:
    """Map domain exception types to exit codes, in one place."""
    try:
        yield
    except (InvalidInput, NotFound, Conflict) as exc:
        _fail(str(exc), EXIT_INVALID)
    except StratoflowError as exc:
        _fail(str(exc), EXIT_FAILED)


def _params(pairs: Sequence[str]) -> dict[str, str]:
    """``-p name=value`` options; a malformed or repeated one exits 2 before anything is sent."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"-p {pair!r}: parameters are written name=value", EXIT_INVALID)
        if key in params:  # which of the two was meant? the last one silently won
            _fail(f"-p {pair!r}: the param {key!r} is given twice", EXIT_INVALID)
        params[key] = value
    return params


LOGICAL_DATE_FLAG = "--logical-date"
LOGICAL_DATE_HELP = (
    "the run's logical date (default: now): a date (2026-01-05: 00:00 of it) or an ISO-8601 "
    "date-time; without an offset (2026-01-05T06:00:00) it is read in the workflow schedule's "
    "time zone (UTC without a schedule), as backfill reads --start; a date later than now "
    "(more than 60 s ahead) is refused"
)


def _check_logical_date(text: str) -> None:
    """Exit 2 naming ``--logical-date`` unless ``text`` is a date or an ISO-8601 date-time
    (its time zone, when it has none, is the workflow schedule's: read where the workflow is
    known, by the server or ``run``)."""
    from datetime import UTC

    from stratoflow.moments import read_moment

    try:
        read_moment(text, UTC)
    except (ValueError, OverflowError):
        _fail(
            f"{LOGICAL_DATE_FLAG} {text!r} is not an ISO-8601 date-time or a date "
            "(YYYY-MM-DD): e.g. 2026-01-05, 2026-01-05T06:00:00 (in the workflow schedule's "
            "time zone, UTC without one) or 2026-01-05T06:00:00Z",
            EXIT_INVALID,
        )


# The commands of the cli_*.py modules, imported when one of them is run: most of those modules
# import a part of the package (alerts, pools, the model) that the other commands do not need.
# Each short help is what the command's own help starts with (tests/unit/test_cli_startup.py).
LAZY_COMMANDS = {
    "alerts": ("stratoflow.cli_alerts:alerts",
               "Alert channels and groups, test alerts, and what was delivered."),
    "backfill": ("stratoflow.cli_backfill:backfill",
                 "Backfill NAME: one run per logical date its schedule fires in [start, end] "
                 "(daily at 00:00 without a schedule), serial unless --parallel; a repeated "
                 "backfill adds nothing."),
    "backfills": ("stratoflow.cli_backfill:backfills",
                  "List, watch, pause, resume and cancel backfills."),
    "connections": ("stratoflow.cli_connections:connections",
                    "Named connections of a project: where `type: sql` tasks run their SQL."),
    "import": ("stratoflow.cli_import:import_command",
               "Convert DolphinScheduler exports, pydolphinscheduler YAML and dag-factory YAML "
               "into workflow files (one per workflow), with a report per file of what did not "
               "map."),
    "pools": ("stratoflow.cli_pools:pools",
              "Named pools of slots that tasks share across runs (`pool:` on a task)."),
    "resources": ("stratoflow.cli_resources:resources",
                  "A project's resource files: tasks list them in `resources: [path, ...]`."),
    "schema": ("stratoflow.cli_sdk:schema",
               "Print the JSON Schema of workflow files (format v1), generated from the models."),
    "secrets": ("stratoflow.cli_secrets:secrets",
                "A project's secrets: tasks reference them as {{ secrets.NAME }}."),
    "variables": ("stratoflow.cli_variables:variables",
                  "A project's variables: templates read them as {{ var.value.NAME }} / "
                  "{{ var.json.NAME }}."),
    "workflows": ("stratoflow.cli_workflows:workflows",
                  "A project's workflows: list them, show one, pause or unpause its schedule."),
}  # fmt: skip
LAZY_RUNS_COMMANDS = {
    "force-start": ("stratoflow.cli_pools:force_start",
                    "Start a task waiting in a pool now, ahead of its queue and the free slots."),
}  # fmt: skip


@click.group(
    cls=LazyGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(package_name="stratoflow")
def main() -> None:
    """Stratoflow: DAG workflows, locally or on AWS serverless."""


# ------------------------------------------------------------------ validate
@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@output_option
@click.option(
    "--next",
    "upcoming",
    type=click.IntRange(0, 100),
    default=0,
    metavar="N",
    help="also list the next N times each workflow's schedule fires from now (the logical "
    "dates of its runs, its start and end applied), in its time zone",
)
def validate(files: Sequence[str], output: str, upcoming: int) -> None:
    """Check workflow files (YAML, or Python modules using stratoflow.sdk); exit 2 if any is
    invalid. ``--output json``: a list, one object per file: ``file``, ``ok``, ``problems``
    (each ``path``, ``message``, ``line``, as the API's 400 lists them) and ``workflows`` (each
    ``project``, ``name``, ``tasks``; with ``--next``, ``next_runs``: the times, ISO 8601 in
    UTC, an empty list for a workflow with no schedule or none to come)."""
    from datetime import UTC

    from stratoflow.adapters.local.collector import collect_less

    # as `run`: the node graph of a big file set off young collections that walked it again
    # and again (10,000 tasks: ~1.6 s of CPU -> ~1 s)
    collect_less()
    from stratoflow.cli_sdk import validate_file

    now = _now()
    bad = 0
    report: list[dict[str, Any]] = []
    for file in files:
        try:
            specs = validate_file(file, datetime.now(UTC))
        except InvalidInput as exc:
            bad += 1
            click.echo(f"error: {exc}", err=True)
            problems = [
                {"path": p.path, "message": p.message, "line": p.line} for p in exc.problems
            ]
            report.append({"file": file, "ok": False, "problems": problems, "workflows": []})
            continue
        workflows = []
        for spec in specs:
            workflow, tasks = spec.workflow, len(spec.workflow.tasks)
            entry: dict[str, Any] = {"project": spec.project, "name": spec.name, "tasks": tasks}
            limit = ""
            if workflow.max_active_runs_implied and workflow.effective_max_active_runs:
                limit = f"; {implied_limit(workflow.effective_max_active_runs)}"
            if output == "text":
                click.echo(f"ok: {file} ({spec.project}/{spec.name}, {tasks} tasks{limit})")
            if upcoming:
                times = _upcoming_runs(workflow.schedule, now, upcoming, output == "text")
                entry["next_runs"] = [t.isoformat() for t in times]
            workflows.append(entry)
        report.append({"file": file, "ok": True, "problems": [], "workflows": workflows})
    if output == "json":
        click.echo(json.dumps(report, indent=2))
    if bad:
        sys.exit(EXIT_INVALID)


def _upcoming_runs(schedule: Any, now: datetime, count: int, show: bool) -> list[datetime]:
    """The next ``count`` fire times of ``schedule`` (None: none) after ``now``; ``show``:
    print them, in the schedule's time zone, under the file's ``ok:`` line."""
    from zoneinfo import ZoneInfo

    from stratoflow.model import schedule_window, upcoming_firings

    if schedule is None:
        if show:
            click.echo("  no schedule: its runs start when triggered")
        return []
    times = upcoming_firings(schedule, now, count)
    if show:
        zone = ZoneInfo(schedule.timezone)
        where = f"{schedule.cron}, {schedule.timezone}"
        if times:
            click.echo(f"  next {len(times)} run{'s' * (len(times) > 1)} ({where}):")
            for t in times:
                click.echo(f"    {t.astimezone(zone).isoformat()}")
        end = schedule_window(schedule)[1]
        if len(times) < count:
            why = f"its end is {end.isoformat()}" if end is not None else "its times run out"
            click.echo(f"  {'no more runs' if times else 'no run to come'} ({where}): {why}")
    return times


def _pool_options(pools: Sequence[str]) -> list[tuple[str, int]]:
    """``--pool NAME=SLOTS`` options, read before anything is opened."""
    out: dict[str, int] = {}
    for pool in pools:
        name, _, slots = pool.partition("=")
        name = name.strip()
        if not name or not slots.strip().isdigit():
            _fail(f"--pool {pool!r}: expected NAME=SLOTS, e.g. warehouse=2", EXIT_INVALID)
        if name in out:  # which one was meant? the last silently won
            _fail(
                f"--pool {pool!r}: pool {name!r} is given twice "
                f"(also as {name}={out[name]}); give each pool once",
                EXIT_INVALID,
            )
        out[name] = int(slots)
    return list(out.items())


@contextmanager
def _audited(store: Any, project: str, command: str) -> Iterator[Callable[..., None]]:
    """A change the command makes in a home without the API, journalled in its audit journal
    as the API journals one (``stratoflow.audit``): its intent before (target ``CLI
    <command>``), the entry the block records (``record(action, target, **details)``) after.
    A block that records nothing or is refused (a domain error) withdraws the intent; one
    that fails otherwise settles it as it stands ("outcome unknown")."""
    import uuid

    from stratoflow.audit import intent
    from stratoflow.errors import ScheduleSyncFailed
    from stratoflow.readmodel import AuditEntry

    actor = _cli_actor()
    begun = intent(uuid.uuid4().hex, _now(), actor, "CLI", command, project)
    store.audit_begin(begun)  # before the change: if it cannot be written, nothing changes
    done: list[AuditEntry] = []

    def record(action: str, target: str, **details: Any) -> None:
        at = _now()
        done.append(AuditEntry(begun.id, at, actor, action, target, project, details))

    try:
        yield record
    except StratoflowError as exc:
        if isinstance(exc, ScheduleSyncFailed):  # stored, its schedule not: it was made
            store.audit_settle(begun)
        else:
            store.audit_withdraw(begun.id)
        raise
    except Exception:
        store.audit_settle(begun)
        raise
    if done:
        store.audit_settle(done[0])
    else:
        store.audit_withdraw(begun.id)


def _set_up(
    runtime: Any, pools: Sequence[tuple[str, int]], alert_groups: Sequence[str], project: str
) -> None:
    """What ``--pool`` and ``--alert-group`` (groups of ``project``) ask for, before any
    workflow is applied (apply refuses a workflow naming a pool or an alert group that does
    not exist). Each change is in the home's audit log (``_audited``)."""
    for name, slots in pools:
        with _errors(), _audited(runtime.store, "", f"--pool {name}={slots}") as record:
            made = runtime.scheduler.set_pool(name, slots)
            record("pool.set", f"pool/{made.key}", slots=slots)
        click.echo(f"pool {made.name} (global): {made.slots} slots", err=True)
    for group in alert_groups:
        with _errors(), _audited(runtime.store, project, f"--alert-group {group}") as record:
            created = runtime.alerts.store.ensure_group(project, group, runtime.clock.now())
            if created:
                record("alerts.group.put", f"alert-group/{group}", channels=[])
        click.echo(
            f"alert group {group}: {'created, no channels yet' if created else 'kept'}", err=True
        )


_POOL_HELP = "NAME=SLOTS: set a global pool (before the workflow is applied); repeatable"
# task processes at once on one machine, unless `--parallelism` says otherwise: Airflow's
# `parallelism` default (DolphinScheduler's worker runs 100 task threads)
DEFAULT_PARALLELISM = 32
# more processes than any machine starts at once (99999999999999999999999 was taken)
MAX_PARALLELISM = 10_000
_PARALLELISM_HELP = (
    "at most this many task processes at once, across every run (queued tasks past it wait "
    f"for one to end): 1 to {MAX_PARALLELISM:,}; 0: no limit  [default: {DEFAULT_PARALLELISM}, "
    "or $STRATOFLOW_PARALLELISM]"
)


def _parallelism(value: int) -> int | None:
    if value < 0:
        raise click.BadParameter(
            f"{value} is negative: give 1 to {MAX_PARALLELISM:,}, or 0 for no limit",
            param_hint="'--parallelism'",
        )
    if value > MAX_PARALLELISM:
        raise click.BadParameter(
            f"{value} is more than {MAX_PARALLELISM:,}: give 1 to {MAX_PARALLELISM:,}, "
            "or 0 for no limit",
            param_hint="'--parallelism'",
        )
    return value or None


def _check_parallelism(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """``--parallelism`` checked as the options are read, before the command starts anything."""
    _parallelism(value)
    return value


_ALERT_GROUP_HELP = (
    "create an alert group of the workflow's project (before it is applied), with "
    "no channels until `stratoflow alerts groups set` gives it some; kept if it exists"
)


# ------------------------------------------------------------------ run (in-process)
@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "-p", "--param", "params", multiple=True, help="name=value, overrides a workflow param"
)
@click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), default=None, help="state directory"
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
@click.option("--logical-date", default=None, help=LOGICAL_DATE_HELP)
@click.option("--pool", "pools", multiple=True, metavar="NAME=SLOTS", help=_POOL_HELP)
@click.option(
    "--alert-group", "alert_groups", multiple=True, metavar="NAME", help=_ALERT_GROUP_HELP
)
@click.option(
    "--parallelism",
    type=int,
    default=DEFAULT_PARALLELISM,
    envvar="STRATOFLOW_PARALLELISM",
    callback=_check_parallelism,
    help=_PARALLELISM_HELP,
)
def run(
    file: str,
    params: Sequence[str],
    home: Path | None,
    output: str,
    logical_date: str | None,
    pools: Sequence[str],
    alert_groups: Sequence[str],
    parallelism: int,
) -> None:
    """Run one workflow to completion in this process (exit 0 succeeded, 1 failed)."""
    from datetime import UTC, datetime

    from stratoflow.adapters.local.collector import collect_less

    collect_less()  # before the runtime, the model and the workflow are loaded: they stay
    from stratoflow.adapters.local.runtime import HomeInUse, LocalRuntime, settle_gc
    from stratoflow.adapters.local.sandbox import IsolationError
    from stratoflow.cli_sdk import single_source
    from stratoflow.engine.triggering import read_logical_date, refuse_future_logical_date
    from stratoflow.model import load_workflow

    overrides = _params(params)
    pool_slots = _pool_options(pools)
    processes = _parallelism(parallelism)
    if logical_date is not None:
        _check_logical_date(logical_date)
    with _errors():
        text = single_source(file, datetime.now(UTC))
        spec = load_workflow(text, source=file, now=datetime.now(UTC))  # before any state
        when = None
        if logical_date is not None:  # as the API reads it; checked again by the trigger
            flag = LOGICAL_DATE_FLAG
            when = read_logical_date(logical_date, spec.workflow.schedule, flag)
            refuse_future_logical_date(when, datetime.now(UTC), flag)
        try:
            # the read model is brought up to date by the next server on the home
            runtime = LocalRuntime(home or default_home(), parallelism=processes, project=False)
        except HomeInUse as exc:
            raise HomeInUse(
                f"{exc}. To run it on that server: stratoflow apply {file}, then "
                "stratoflow trigger NAME --wait"
            ) from None
        except IsolationError as exc:  # a home tasks could reach, an unknown isolation...
            _fail(str(exc), EXIT_INVALID)
        stop_requested: list[int] = []  # the signal that asked for the stop
        triggering = threading.Event()  # set once the run may exist

        def on_signal(signum: int, frame: object) -> None:
            if not triggering.is_set():  # no run yet: leave now, as the default would
                raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)
            stop_requested.append(signum)
            # the loop's turn now, not when its wait for a report times out (up to 1 s):
            # the queue's put may be called from a signal handler
            runtime.wake()

        # SIGTERM (timeout, docker stop, a CI job cancelled) stops the run as Ctrl-C does:
        # left to its default it ended this process at once, the run recorded as running
        # and its tasks running on with no one to watch them. Before the trigger a signal
        # ends the process with no run made; during it, the run is stopped before its first
        # task starts.
        # (a signal the shell set to be ignored, as for `stratoflow run ... &` in a script,
        # stays ignored)
        previous = {
            s: signal.signal(s, on_signal)
            for s in (signal.SIGINT, signal.SIGTERM)
            if signal.getsignal(s) is not signal.SIG_IGN
        }
        try:
            _set_up(runtime, pool_slots, alert_groups, spec.project)
            with _audited(runtime.store, spec.project, f"stratoflow run {file}") as record:
                version, created = runtime.scheduler.apply(text, source=file, spec=spec)
                record(
                    "workflow.apply", f"workflow/{version.project}/{version.name}",
                    version=version.version, created=created,
                )  # fmt: skip
            triggering.set()
            with _audited(runtime.store, spec.project, f"stratoflow run {file}") as record:
                run_, _ = runtime.scheduler.trigger(
                    version.project, version.name, params=overrides, logical_date=when
                )
                record("run.trigger", f"run/{run_.id}", workflow=version.name)
            settle_gc(whole=False)
            _drive(
                runtime,
                run_.id,
                live=output == "text" and sys.stdout.isatty(),
                stop=stop_requested,
            )
            if output == "json":
                detail, progress = _detail(runtime, run_.id), None
            else:  # what the text says: the counts, the moving tasks, the tasks of note
                detail, progress = _of_note(runtime, run_.id), _live(runtime, run_.id)
        finally:
            # after a stop, SIGTERM stays ignored (``_stop``) while the home closes and the
            # summary prints, until the process exits: put back to its default, a second
            # SIGTERM there ended the process without either, its exit -15 instead of 1
            stopped = signal.getsignal(signal.SIGTERM) is _ignored
            for signum, handler in previous.items():
                if not (stopped and signum == signal.SIGTERM):
                    signal.signal(signum, handler)
            runtime.close()
    _print_run(detail, output, progress)
    sys.exit(0 if detail["run"]["state"] == "succeeded" else EXIT_FAILED)


def _of_note(runtime: Any, run_id: str) -> dict[str, Any]:
    """The run's detail for its text summary: with only the tasks that failed or hold
    outputs (``SqliteStore.tasks_of_note``), the lines ``_print_run`` prints after the
    progress, as the whole detail would have them (an output's cut depends only on the
    outputs before it). Reading, decoding and viewing every task and attempt for them
    cost ~50 ms at the end of a 2,000-task run."""
    from stratoflow.views import run_detail

    run_, order = _run_and_order(runtime, run_id)
    tasks, attempts = runtime.store.tasks_of_note(run_id)
    return run_detail(run_, tasks, attempts, order)


def _run_and_order(runtime: Any, run_id: str) -> tuple[Any, tuple[str, ...]]:
    """The run, and its workflow's tasks in the order views list them."""
    run_ = runtime.store.get_run(run_id)
    return run_, runtime.scheduler.spec(run_.project, run_.workflow, run_.version).dag.order


def _detail(runtime: Any, run_id: str) -> dict[str, Any]:
    from stratoflow.views import run_detail

    run_, order = _run_and_order(runtime, run_id)
    return run_detail(
        run_, runtime.store.get_tasks(run_id), runtime.store.list_attempts(run_id), order
    )


_MOVING = frozenset({"running", "up_for_retry", "failed"})
_LIVE_ROWS = 30  # a bigger run shows what is moving; the counts tell the rest


def _rows(states: Mapping[str, str]) -> list[str]:
    """The tasks the live view lists, of ``states`` (task -> state, in workflow order)."""
    if len(states) <= _LIVE_ROWS:
        return list(states)
    return [t for t, state in states.items() if state in _MOVING][:_LIVE_ROWS]


def _live(runtime: Any, run_id: str) -> tuple[dict[str, Any], Counter[str]]:
    """What the live progress shows, and each state's count: read in O(the rows shown) but
    for the tasks' states (two columns, nothing decoded), so a redraw 4 times a second costs
    the run little however many tasks it has (reading the whole run and its attempts at
    each one took more of the CPU than the scheduler itself at 2,000 tasks)."""
    from stratoflow.views import run_detail

    store = runtime.store
    run_, order = _run_and_order(runtime, run_id)
    states = {task_id: state.value for task_id, state in store.task_states(run_id).items()}
    shown = _rows({t: states[t] for t in order if t in states})
    attempts = store.attempts_of(run_id, shown) if shown else []
    detail = run_detail(run_, store.get_tasks(run_id, shown) if shown else [], attempts, order)
    return detail, Counter(states.values())


def _shown(detail: dict[str, Any]) -> tuple[dict[str, Any], Counter[str]]:
    """``_live``'s answer made from a whole run's detail (a server's, or the last one)."""
    tasks = detail["tasks"]
    shown = _rows({k: v["state"] for k, v in tasks.items()})
    if len(shown) < len(tasks):
        detail = {**detail, "tasks": {k: tasks[k] for k in shown}}
    return detail, Counter(t["state"] for t in tasks.values())


def _drive(runtime: Any, run_id: str, *, live: bool, stop: list[int]) -> None:
    """Run the loop until the run ends. A signal in ``stop`` (SIGINT, SIGTERM) stops the run
    once; after it, a second Ctrl-C leaves at once (the run left running, for the next
    scheduler on the home to take up) and a second SIGTERM is ignored: the stop is under way
    and ends within the tasks' kill grace."""

    grace: list[float] = []  # when the run was seen ended with killed attempts unreported

    def done() -> bool:
        if stop:
            _stop(runtime, run_id, stop)
        # the state alone (read after every turn): ~3.7 µs, the whole row decoded ~9.5
        if not runtime.store.run_state(run_id).terminal:
            return False
        # the attempts a stop killed report their end within the kill grace: recorded before
        # the exit, not left running in the history (the next process on the home would end
        # them, if one ever opens it)
        if not runtime.store.unended_attempts(run_id):
            return True
        if not grace:
            grace.append(time.monotonic() + runtime.executor.kill_grace().total_seconds() + 2)
        return time.monotonic() > grace[0]

    if stop:  # asked before the run was made: stopped before any task starts
        _stop(runtime, run_id, stop)
    if not live:
        runtime.run_until(done)
        return
    from rich.live import Live

    last = [0.0]
    # four frames a second, as `trigger --wait` draws: each costs the run a read of every
    # task's state and a render (~7 ms at 2,000 tasks), CPU the tasks would otherwise have
    with Live(_progress(*_live(runtime, run_id)), refresh_per_second=4, transient=False) as screen:

        def redraw() -> None:
            now = time.monotonic()
            if now - last[0] >= 0.25:
                last[0] = now
                screen.update(_progress(*_live(runtime, run_id)))

        runtime.run_until(done, on_turn=redraw)
        screen.update(_progress(*_live(runtime, run_id)))


def _stop(runtime: Any, run_id: str, stop: list[int]) -> None:
    """Stop the run for the first signal in ``stop`` (once: the list is emptied), unless it
    has just ended; then a second Ctrl-C leaves at once and a second SIGTERM does nothing."""
    first = stop[0]
    stop.clear()
    _unless_ignored(signal.SIGTERM, _ignored)
    if not runtime.store.run_state(run_id).terminal:
        if first == signal.SIGTERM:
            click.echo("stopping the run (SIGTERM)...", err=True)
        else:
            click.echo("stopping the run (Ctrl-C again to leave it running)...", err=True)
        with contextlib.suppress(Conflict):  # it ended meanwhile: nothing to stop
            runtime.scheduler.stop(run_id)
    # after the stop is recorded: a Ctrl-C inside it would leave the run half stopped
    _unless_ignored(signal.SIGINT, signal.default_int_handler)


def _unless_ignored(signum: int, handler: Any) -> None:
    """Set ``handler`` for ``signum``, unless it is ignored (``SIG_IGN``, as a shell sets it
    for a background job): that stays so."""
    if signal.getsignal(signum) is not signal.SIG_IGN:
        signal.signal(signum, handler)


def _ignored(signum: int, frame: object) -> None:
    """A handler that does nothing (not SIG_IGN, which the tasks started later would
    inherit)."""


def _progress(detail: dict[str, Any], counts: Counter[str]) -> Any:
    """The live view: the run, its progress, each state's count and the tasks ``detail``
    holds (``_live``: those moving, in a big run)."""
    from rich.console import Group, NewLine
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    run_ = detail["run"]
    tasks = detail["tasks"]
    header = Text.assemble(
        (f"{run_['workflow']} ", "bold"), (run_["id"], "dim"), "  ",
        (run_["state"], STATE_STYLES.get(run_["state"], "")),
        f"  {run_['tasks_done']}/{run_['tasks_total']} done",
    )  # fmt: skip
    bar = ProgressBar(total=max(run_["tasks_total"], 1), completed=run_["tasks_done"], width=60)
    summary = Text("  ".join(f"{state}: {n}" for state, n in sorted(counts.items())))
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("task")
    table.add_column("state")
    table.add_column("try", justify="right")
    table.add_column("secs", justify="right")
    table.add_column("note", overflow="fold")
    for task_id, task in tasks.items():
        secs = task["duration_seconds"]
        # Text, not markup: an error is the task's text ("cannot open [/data/in.csv]" made
        # Rich raise, "[t]" vanished)
        table.add_row(
            Text(task_id), Text(task["state"], STATE_STYLES.get(task["state"], "")), str(task["attempts"]),
            "" if secs is None else f"{secs:.1f}", Text(printable(task["error"].splitlines()[0][:80]) if task["error"] else ""),
        )  # fmt: skip
    # the bar does not end its line: the counts went on it, cut at 80 columns
    return Group(header, bar, NewLine(), summary, table)


def _print_run(
    detail: dict[str, Any],
    output: str,
    progress: tuple[dict[str, Any], Counter[str]] | None = None,
) -> None:
    """``progress``: what the progress shows (``_live``), when ``detail`` holds only some of
    the run's tasks (``_of_note``); else it is made from ``detail``."""
    if output == "json":
        click.echo(json.dumps(detail, indent=2))
        return
    from rich.console import Console
    from rich.text import Text

    # emoji=False: nothing printed here holds an emoji code (the table's text cells are Text;
    # its plain ones are numbers and the column names), and looking for one loads rich's
    # table of them (~3 ms) into every `stratoflow run`
    console = Console(emoji=False)
    console.print(_progress(*(progress or _shown(detail))))
    run_id = detail["run"]["id"]
    if detail["run"].get("parent_run"):
        parent = detail["run"]["parent_run"]
        click.echo(f"sub-workflow run of {parent} (task {detail['run'].get('parent_task')})")
    for task_id, task in detail["tasks"].items():
        if task["state"] == "failed" and task["error"]:
            console.print(
                Text.assemble((task_id, "bold red"), f" failed: {printable(task['error'])}")
            )
        if task.get("child_run"):
            click.echo(f"{task_id}: child run {task['child_run']} ({task['state']})")
        for key, cut in (task.get("outputs_truncated") or {}).items():
            command = command_line(["runs", "output"], [run_id, task_id, key])
            click.echo(
                f"{task_id}: output {key!r} is {cut['size']} bytes, cut in this view; "
                f"`{printable(command)}` prints it whole"
            )


# ------------------------------------------------------------------ server
_DB_HELP = (
    "read-model database, e.g. postgresql://user@host/db (default: SQLite in --home). Never "
    "a password here: every process of the machine reads the server's command line. Give "
    "a URL with one in $STRATOFLOW_DB, or leave it out for libpq's PGPASSWORD or ~/.pgpass"
)


def _check_db(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--db`` refused, as the options are read (before the home or anything else is made),
    when the command line carries the database's password: ``/proc/PID/cmdline`` is readable
    by every uid, the server's tasks (their own uids) included, for as long as it runs. The
    same URL in ``$STRATOFLOW_DB`` is fine: ``/proc/PID/environ`` is the server uid's alone,
    and no ``STRATOFLOW_*`` variable passes to a task (``sandbox.NEVER_PASSED_PREFIXES``)."""
    if value is None or ctx.get_parameter_source("db") is not ParameterSource.COMMANDLINE:
        return value
    from stratoflow.readmodel import carries_password

    if carries_password(value):  # the value is not repeated: it holds the password
        raise click.BadParameter(
            "the URL carries a password, which every process on this machine can read from "
            "the server's command line (/proc/PID/cmdline); give the URL in $STRATOFLOW_DB "
            "instead, or leave the password out of it and use PGPASSWORD or ~/.pgpass. "
            "Change that password: it was on a command line",
            param_hint="'--db'",
        )
    return value


@main.command()
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option("--apply", "apply_paths", multiple=True, type=click.Path(exists=True),
              help="workflow files or directories to apply on start")  # fmt: skip
@click.option("--db", default=None, metavar="URL", envvar="STRATOFLOW_DB", show_envvar=True,
              callback=_check_db, help=_DB_HELP)  # fmt: skip
@click.option("--pool", "pools", multiple=True, metavar="NAME=SLOTS",
              help="set a global pool on start (before --apply): `stratoflow pools set` without a server")  # fmt: skip
@click.option("--alert-group", "alert_groups", multiple=True, metavar="NAME",
              help="create an alert group of the default project on start (before --apply), with "
                   "no channels until `stratoflow alerts groups set` gives it some; kept if it exists")  # fmt: skip
@click.option("--parallelism", type=int, default=DEFAULT_PARALLELISM, envvar="STRATOFLOW_PARALLELISM",
              callback=_check_parallelism, help=_PARALLELISM_HELP)  # fmt: skip
def server(
    home: Path | None,
    host: str,
    port: int,
    apply_paths: Sequence[str],
    db: str | None,
    pools: Sequence[str],
    alert_groups: Sequence[str],
    parallelism: int,
) -> None:
    """Run the scheduler, cron loop and API in one process; resumes unfinished runs."""
    import logging

    from stratoflow.adapters.local.collector import collect_less

    collect_less()  # as `run`: what is loaded from here on stays for the server's lifetime
    from stratoflow.adapters.local.runtime import HomeInUse, LocalRuntime, settle_gc
    from stratoflow.adapters.local.sandbox import IsolationError
    from stratoflow.api.app import DEFAULT_PROJECT, create_app
    from stratoflow.api.local_server import start_in_thread
    from stratoflow.api.long_poll import RunWatch, run_ended
    from stratoflow.cli_sdk import refused_sources, workflow_sources

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    pool_slots = _pool_options(pools)
    processes = _parallelism(parallelism)
    try:
        runtime = LocalRuntime(home or default_home(), cron=True, db=db, parallelism=processes)
    except (HomeInUse, IsolationError) as exc:
        _fail(str(exc), EXIT_INVALID)
    except Exception as exc:
        if db is None:
            raise
        given = click.get_current_context().get_parameter_source("db")
        flag = "--db" if given is ParameterSource.COMMANDLINE else "$STRATOFLOW_DB"
        if isinstance(exc, ValueError):  # an unsupported URL scheme
            _fail(f"{flag}: {exc}", EXIT_INVALID)
        # the driver's reason (unreachable server, unknown database); it names no password
        _fail(f"{flag}: cannot open the read-model database: {exc}", EXIT_FAILED)
    _set_up(runtime, pool_slots, alert_groups, DEFAULT_PROJECT)
    with _errors():
        sources = workflow_sources(_workflow_files(apply_paths), apply_paths)
    refused = refused_sources(sources, runtime.clock.now())  # as `apply`: all or none of them
    if refused:
        runtime.close()
        for message in refused:
            click.echo(f"error: {message}", err=True)
        _fail(f"{len(refused)} of {len(sources)} invalid: nothing was applied", EXIT_INVALID)
    for path, text in sources:
        with _errors():
            version, created = runtime.scheduler.apply(text, source=path)
        click.echo(
            f"{'applied' if created else 'unchanged'}: {version.project}/{version.name} v{version.version}"
        )
    from stratoflow.adapters.local.connections import LocalConnections
    from stratoflow.adapters.local.identity import SqliteIdentities, ensure_first_admin
    from stratoflow.api.access import token_authenticator

    identities = SqliteIdentities(runtime.home / "stratoflow.db")
    app = create_app(
        runtime.scheduler,
        on_change=runtime.wake,
        authenticate=token_authenticator(identities, runtime.clock),
        readmodel=runtime.readmodel,
        alerts=runtime.alerts,
        secrets=runtime.secrets,
        secret_source=runtime.secret_source,
        connections=LocalConnections(runtime.connections, runtime.secret_source, runtime.clock),
    )
    settle_gc()
    # the read model caught up before the API answers from it: the runs `stratoflow run`
    # made on this home are projected by the server (LocalRuntime's project=False)
    if not runtime.feed.flush(timeout=60):
        click.echo("the read model is still catching up: run lists may lag a moment", err=True)
    # long polls of a run (GET /runs/{id}?wait=S) wake on the store's commits
    watch = RunWatch(ended=run_ended(runtime.store))
    runtime.store.on_commit.append(watch.on_commit)

    def first_admin() -> None:
        """Once the port is bound, before a request is answered: a token printed above a
        listen error would be lost (the next start does not show it again)."""
        secret = ensure_first_admin(identities, runtime.clock.now())
        (runtime.home / ADMIN_TOKEN_FILE).unlink(missing_ok=True)  # left by an older version
        if secret is not None:
            click.echo(
                "First start: created the superuser 'admin'. Its API token (shown once, kept "
                "nowhere; `stratoflow admin token --reset` issues a new one):\n  "
                f"{secret}"
            )

    try:
        httpd, url = start_in_thread(app, host, port, watch=watch, bound=first_admin)
    except OSError as exc:
        runtime.close()
        _fail(f"cannot listen on {host}:{port}: {exc.strerror}", EXIT_FAILED)
    runtime.alerts.link_base = runtime.alerts.link_base or url  # alerts link to run pages
    runtime.start()
    click.echo(f"Stratoflow is running at {url}  (state in {runtime.home}; Ctrl-C stops)")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopping.wait()
    httpd.shutdown()
    runtime.close()


def _workflow_files(paths: Sequence[str]) -> list[Path]:
    from stratoflow.cli_sdk import listed_in_directory

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            listed = sorted(p for p in path.iterdir() if listed_in_directory(p))
            if not listed:  # a mistyped directory applies nothing: say so, not "ok"
                raise InvalidInput(
                    "no workflow files (*.yaml, *.yml, *.py) in this directory", source=raw
                )
            files.extend(listed)
        else:
            files.append(path)
    return files


# ------------------------------------------------------------------ client commands
def _import_httpx() -> None:
    """Import httpx without its own command-line tool: ``httpx/__init__`` imports
    ``httpx._main`` (rich, pygments, click's parts for it) when it can, a third of its import
    time, that a command which only sends requests never uses. Only the first import is cut;
    ``httpx._main`` can still be imported afterwards."""
    if "httpx" in sys.modules:
        return
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # ImportError: httpx skips it
    try:
        import httpx  # noqa: F401
    finally:
        if sys.modules.get("httpx._main", False) is None:
            del sys.modules["httpx._main"]


def _with_flags(message: str, problems: Any, flags: Mapping[str, str]) -> str:
    """``message`` with each problem's field that ``flags`` maps written as its option. A key
    ending with '.' maps every field under it: ``{"settings.": "--setting "}`` writes
    ``settings.url`` as ``--setting url`` (an exact key wins over it)."""
    for problem in problems if isinstance(problems, list) else ():
        path = problem.get("path") if isinstance(problem, dict) else None
        if not isinstance(path, str):
            continue
        flag = flags.get(path)
        if flag is None:
            prefix = next((k for k in flags if k.endswith(".") and path.startswith(k)), None)
            if prefix is None:
                continue
            flag = flags[prefix] + path[len(prefix) :]
        said = f"{path}: {problem.get('message')}"
        message = message.replace(said, f"{flag}: {problem.get('message')}")
    return message


def _tls_for(api: str) -> bool | ssl.SSLContext:
    """What the client verifies TLS with. An ``https`` API: the default (the CA bundle). A
    plain ``http`` one (the local server) uses no TLS, yet httpx loads the bundle for every
    client it makes: 27-31 ms of CPU (measured at load 8-9) of a short command's start, before
    its request is sent (``stratoflow apply`` then ``trigger`` paid it twice). It gets
    a context that trusts no certificate instead, so anything that reached an ``https`` URL
    through it would fail verification rather than go unverified."""
    import ssl
    from urllib.parse import urlsplit

    if urlsplit(api).scheme.lower() == "http":
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies hostnames, trusts nothing
    return True


T = TypeVar("T")


class Unreachable(Exception):
    """No reply from the server, or one saying it cannot answer now (502/503/504): raised
    instead of exiting by a request that asked to be retried (``transient``)."""


def _checked_api(api: str) -> str:
    """``api`` (``--api`` or $STRATOFLOW_API) when it is an http(s) URL with a host; else
    exit 2 naming it: ``127.0.0.1:8321`` (no scheme) was sent nowhere and reported as a
    server that cannot be reached (exit 3, "start it with `stratoflow server`")."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(api)
        usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unclosed '[' of an IPv6 host
        usable = False
    if not usable:
        _fail(
            f"--api (or $STRATOFLOW_API): {api!r} is no API URL: write http://HOST:PORT or "
            f"https://HOST[/PATH], e.g. http://127.0.0.1:{DEFAULT_PORT}",
            EXIT_INVALID,
        )
    return api


class Client:
    def __init__(self, api: str) -> None:
        _import_httpx()
        import httpx

        self.api = _checked_api(api).rstrip("/")
        token = default_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.api, timeout=30, headers=headers, verify=_tls_for(self.api)
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.response(method, path, **kwargs)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def response(
        self,
        method: str,
        path: str,
        *,
        about: str = "",
        note: str = "",
        flags: Mapping[str, str] | None = None,
        transient: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """The successful response; an error reply or no reply exits with its message, after
        ``about`` (what the request was for, e.g. the file sent) and before ``note`` (in
        parentheses) when given. ``flags``: the command's option for a body field, named
        instead of the field where the reply's problems name it (``logical_date`` is
        ``--logical-date``). ``transient``: no reply, or a 502/503/504, raises
        :class:`Unreachable` (for the caller to try again) instead of exiting."""
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            if transient:
                raise Unreachable(str(exc) or type(exc).__name__) from exc
            _fail(
                f"cannot reach the Stratoflow API at {self.api} ({exc}); start it with `stratoflow server`",
                EXIT_UNREACHABLE,
            )
        if transient and response.status_code in (502, 503, 504):
            raise Unreachable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            try:
                body = response.json()
                message = body.get("message") or json.dumps(body)
                message = _with_flags(message, body.get("problems"), flags or {})
            except ValueError:
                message = response.text
            if response.status_code == 401:
                message += " (set STRATOFLOW_TOKEN; `stratoflow tokens create USER` makes one)"
            if about:
                message = f"{about}: {message}"
            if note:
                message = f"{message} ({note})"
            _fail(message, EXIT_INVALID if response.status_code < 500 else EXIT_FAILED)
        return response

    def follow(self, path: str, size_header: str, **params: Any) -> str:
        """Print a paged text (a log, an output value) from its start to its end, page by
        page; exit 1 saying where it stopped if the server stops giving pages before the end.
        Returns the last character printed ("" for none)."""
        offset = 0
        last = ""
        while True:
            response = self.response("GET", path, params={**params, "offset": offset})
            click.echo(response.text, nl=False)
            last = response.text[-1:] or last
            nxt, size = response.headers.get("X-Next-Offset"), response.headers.get(size_header)
            if nxt is None or size is None:  # a server that does not page: this was all of it
                return last
            if int(nxt) >= int(size):
                return last
            if int(nxt) <= offset and response.headers.get("X-Log-Held"):
                # a running task's last bytes, held back while it runs (they may be the start
                # of a secret): what there is was printed
                return last
            if int(nxt) <= offset:
                _fail(
                    f"stopped at byte {offset} of {size}: the server returned no more; the rest "
                    f"is at GET {self.api}{path}?offset={offset}",
                    EXIT_FAILED,
                )
            offset = int(nxt)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
@output_option
@api_option
def apply(files: Sequence[str], output: str, api: str) -> None:
    """Apply workflow files or Python modules (a changed definition becomes a new version).
    ``--output json``: a list, one object per workflow file (or module workflow) applied:
    ``file``, ``project``, ``name``, ``version``, ``created`` (false: unchanged); when one is
    refused, the list of those applied before it (``[]``: none), then the refusal (exit 2)."""
    applied: list[dict[str, Any]] = []
    try:
        _apply_all(Client(api), files, output, applied)
    finally:  # a refusal too, even before anything was sent: what was applied before it
        if output == "json":
            click.echo(json.dumps(applied, indent=2))


def _apply_all(
    client: Client, files: Sequence[str], output: str, applied: list[dict[str, Any]]
) -> None:
    """``apply``'s work: each file sent in turn, what the server applied added to ``applied``."""
    from datetime import UTC

    from stratoflow.cli_sdk import refused_sources, workflow_sources

    with _errors():  # too big, not UTF-8, a broken module: said here, exit 2, nothing sent
        sources = workflow_sources(_workflow_files(files), files)
    # of several, a file invalid by itself is refused before any is sent: bad input changes
    # nothing (one file alone is the server's to check: apply then skips loading the model)
    refused = refused_sources(sources, datetime.now(UTC)) if len(sources) > 1 else []
    if refused:
        for message in refused:
            click.echo(f"error: {message}", err=True)
        _fail(f"{len(refused)} of {len(sources)} invalid: nothing was applied", EXIT_INVALID)
    for i, (where, source) in enumerate(sources):
        # a refusal names the file, and what of the others was applied and what not sent
        done = [w for w, _ in sources[:i]]
        left = [w for w, _ in sources[i + 1 :]]
        note = "; ".join(
            f"{what}: {', '.join(names)}"
            for what, names in (("applied before it", done), ("not sent", left))
            if names
        )
        body = client.call("POST", "/workflows", json={"source": source}, about=where, note=note)
        created = bool(body.get("created"))
        applied.append({"file": where, "project": body["project"], "name": body["name"],
                        "version": body["version"], "created": created})  # fmt: skip
        if output == "text":
            implied = view_implied_limit(body)
            limit = f" ({implied})" if implied else ""
            state = "applied" if created else "unchanged"
            click.echo(f"{state}: {body['project']}/{body['name']} v{body['version']}{limit}")


@main.command()
@click.argument("name")
@click.option("-p", "--param", "params", multiple=True, help="name=value")
@click.option("--logical-date", default=None, help=LOGICAL_DATE_HELP)
@click.option(
    "--run-id",
    default=None,
    help="an idempotency key: the run is <project>.<name>.<RUN_ID>; triggering again with the "
    "same key, params and logical date returns that run instead of starting another",
)
@click.option("--wait", is_flag=True, help="wait for the run to finish; exit 1 if it failed")
@project_option
@output_option
@api_option
def trigger(
    name: str,
    params: Sequence[str],
    logical_date: str | None,
    run_id: str | None,
    wait: bool,
    project: str,
    output: str,
    api: str,
) -> None:
    """Start a run of a workflow (NAME, or PROJECT/NAME)."""
    project, name = workflow_ref(name, project)
    body: dict[str, Any] = {"params": _params(params)}
    if logical_date is not None:
        _check_logical_date(logical_date)  # before anything is sent; the server reads its zone
        body["logical_date"] = logical_date
    if run_id is not None:
        body["run_id"] = run_id
    client = Client(api)
    detail = client.call(
        "POST", f"{workflow_path(name)}/runs", params={"project": project}, json=body,
        flags={"logical_date": LOGICAL_DATE_FLAG, "body.run_id": "--run-id"},
    )  # fmt: skip
    run_id = detail["run"]["id"]  # the whole id, <project>.<name>.<key> for a --run-id
    if not wait:
        if output == "json":
            click.echo(json.dumps(detail, indent=2))
        else:
            click.echo(run_id)
        return
    detail = _wait(client, run_id, live=output == "text" and sys.stdout.isatty(), first=detail)
    _print_run(detail, output)
    sys.exit(0 if detail["run"]["state"] == "succeeded" else EXIT_FAILED)


# ``trigger --wait`` long-polls the run (GET /runs/{id}?wait=...). Without a terminal it wants
# only the end: ``until=ended`` has the server answer when the run has ended (or after
# WAIT_SECONDS), so it neither downloads the run's steps nor waits out a pace after the last
# one. With a terminal to redraw, the server answers when the run changes, and while it keeps
# changing it is asked at most once per WAIT_PACE_SECONDS / 4. A server that answers at once
# (AWS, or too many held requests) is asked once per WAIT_POLL_SECONDS.
WAIT_SECONDS = 20
WAIT_PACE_SECONDS = 0.5
WAIT_POLL_SECONDS = 1.0
# A wait that loses the server (killed, stopped, restarting: the run goes on without it, and
# the next server takes it up) asks again, after 0.5 s, 1 s, 2 s... (at most 5 s apart), for
# up to WAIT_RECONNECT_SECONDS without a reply, then exits 3 naming the run.
WAIT_RECONNECT_SECONDS = 120.0
WAIT_RECONNECT_FIRST_SECONDS = 0.5


class HeldRun:
    """A run's view kept current by deltas: each ``refresh`` asks only for the tasks changed
    since the revision held and sends the ETag held (an unchanged run answers 304), so a
    poll of a large run costs what changed, not the run's size."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.detail: dict[str, Any] | None = None
        self.etag: str | None = None
        self.changed = False  # whether the last refresh brought anything new

    def hold(self, detail: dict[str, Any]) -> dict[str, Any]:
        """Hold ``detail``, a whole view of the run got otherwise (a trigger's answer), as a
        ``refresh`` would have: the next asks only for what changed since its revision."""
        self.detail, self.etag, self.changed = detail, None, True
        return detail

    def refresh(self, wait: float | None = None, *, until_ended: bool = False) -> dict[str, Any]:
        """The run now; with ``wait``, a long poll: the server may hold the request up to
        ``wait`` seconds while the run is as held (``until_ended``: while it has not ended)."""
        held = self.detail
        headers = {"If-None-Match": self.etag} if self.etag and held is not None else {}
        params: dict[str, Any] = {}
        if held is not None and held.get("revision") is not None:
            params["since"] = held["revision"]
        if wait is not None and held is not None:
            params["wait"] = wait
            if until_ended:
                params["until"] = "ended"
        timeout = 30 + (wait or 0)  # the client's own 30 s, after the hold
        response = self._get(params, headers, timeout)
        self.changed = response.status_code != 304 or held is None
        if not self.changed and held is not None:
            return held
        body: dict[str, Any] = response.json()
        if held is not None and body.get("full") is False:
            body = {**body, "tasks": {**held["tasks"], **body["tasks"]}, "full": True}
        self.detail, self.etag = body, response.headers.get("ETag")
        return body

    def _get(self, params: dict[str, Any], headers: dict[str, str], timeout: float) -> Any:
        """The run's GET, riding out a server restart (:func:`ride_out`)."""
        return ride_out(
            self.client,
            f"run {self.run_id}",
            command_line(["runs", "show"], [self.run_id]),
            lambda: self.client.response(
                "GET",
                f"/runs/{segment(self.run_id, 'run id')}",
                params=params,
                headers=headers,
                timeout=timeout,
                transient=True,
            ),
        )


def ride_out(client: Client, what: str, show: str, request: Callable[[], T]) -> T:
    """``request`` (a GET made with ``transient=True``) of ``what`` a command waits for
    (``run <id>``), asked again while the server does not answer (killed, stopped, restarting:
    ``what`` goes on without it, and the next server takes it up), 0.5 s, 1 s, 2 s... apart
    (at most 5 s), for up to WAIT_RECONNECT_SECONDS; said once on stderr. Then exit 3 naming
    it and the command (``show``) that finds it once the server is back."""
    pause, since = WAIT_RECONNECT_FIRST_SECONDS, None
    while True:
        try:
            return request()
        except Unreachable as exc:
            now = time.monotonic()
            if since is None:
                since = now
                click.echo(
                    f"lost the Stratoflow API at {client.api} ({exc}) while waiting for "
                    f"{what}, which goes on without it; trying again",
                    err=True,
                )
            elif now - since >= WAIT_RECONNECT_SECONDS:
                _fail(
                    f"cannot reach the Stratoflow API at {client.api} ({exc}) while waiting "
                    f"for {what} (started: `{show}` once the server is back)",
                    EXIT_UNREACHABLE,
                )
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _wait(
    client: Client, run_id: str, *, live: bool, first: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The run once it has ended, long-polled; ``live``: redrawn on the terminal meanwhile.
    ``first``: the run's whole view as the trigger answered it; with a revision, the wait
    goes on from it (the whole view again cost the server ~0.1 s of a 2,000-task run's
    start, taken from the run on the same cores); else it asks for the whole view first."""
    run = HeldRun(client, run_id)
    if first is not None and first.get("full", True) and first.get("revision") is not None:
        detail = run.hold(first)
    else:
        detail = run.refresh()
    if not live:
        return _follow(run, detail, 0.0, None)
    from rich.live import Live

    with Live(_progress(*_shown(detail)), refresh_per_second=4) as screen:
        return _follow(
            run, detail, WAIT_PACE_SECONDS / 4, lambda d: screen.update(_progress(*_shown(d)))
        )


def _follow(
    run: HeldRun,
    detail: dict[str, Any],
    pace: float,
    show: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    """Long-poll ``run`` until it ends, calling ``show`` with each new view; with no ``show``,
    held until the run ends (``until=ended``). After a change the next request waits out
    ``pace`` (a busy run changes all the time); after an answer that came at once with the run
    not ended (a server that holds nothing), WAIT_POLL_SECONDS."""
    terminal = {"succeeded", "failed", "stopped"}
    while detail["run"]["state"] not in terminal:
        started = time.monotonic()
        detail = run.refresh(wait=WAIT_SECONDS, until_ended=show is None)
        if run.changed and show is not None:
            show(detail)
        if detail["run"]["state"] in terminal:
            break
        rest = (pace if run.changed and show is not None else WAIT_POLL_SECONDS) - (
            time.monotonic() - started
        )
        if rest > 0:
            time.sleep(rest)
    return detail


@main.group(cls=LazyGroup, lazy=LAZY_RUNS_COMMANDS)
def runs() -> None:
    """List, inspect and operate on runs."""


@runs.command("list")
@click.option("--workflow", default=None)
@click.option("--state", default=None)
@click.option("--limit", default=20, show_default=True, type=int)
@click.option(
    "--before", default=None, metavar="CURSOR", help="the page after this one's `next` (older runs)"
)
@project_option
@output_option
@api_option
def runs_list(
    workflow: str | None,
    state: str | None,
    limit: int,
    before: str | None,
    project: str,
    output: str,
    api: str,
) -> None:
    """The newest runs (--workflow NAME, or PROJECT/NAME), a page at a time (--before)."""
    if workflow:
        project, workflow = workflow_ref(workflow, project)
    query: dict[str, Any] = {"project": project, "limit": limit}
    if workflow:
        query["workflow"] = workflow
    if state:
        query["state"] = state
    if before:
        query["before"] = before
    client = Client(api)
    flags = {"query.state": "--state", "query.limit": "--limit", "cursor": "--before"}
    body = client.call("GET", "/runs", params=query, flags=flags)
    if workflow and not body["runs"] and not before:
        # no runs, or no such workflow (a typo): the workflow's own answer says which
        client.call("GET", workflow_path(workflow), params={"project": project})
    if output == "json":
        click.echo(json.dumps(body, indent=2))
        return
    for r in body["runs"]:
        click.echo(
            f"{r['id']:<48} {r['state']:<10} {r['tasks_done']}/{r['tasks_total']}  {r['created_at']}"
        )
    if body.get("next"):  # as `workflows list` says it: older runs are a command away
        click.echo(f"(more: --before {body['next']})")
    if body.get("stale_since"):  # the server's read model fell behind: say so, not on stdout
        click.echo(
            f"note: the server's run list has not been updated since {body['stale_since']}; "
            "runs changed since may be missing or older (stratoflow runs show RUN_ID is current)",
            err=True,
        )


@runs.command("show")
@click.argument("run_id")
@output_option
@api_option
def runs_show(run_id: str, output: str, api: str) -> None:
    """A run and its tasks."""
    _print_run(Client(api).call("GET", f"/runs/{segment(run_id, 'run id')}"), output)


def _run_changed(body: dict[str, Any], output: str) -> None:
    """What a run operation answers: the run's id and state, or (``--output json``) the API's
    reply as it is."""
    click.echo(json.dumps(body, indent=2) if output == "json" else f"{body['id']}: {body['state']}")


def _run_op(op: str) -> Callable[[str, str, str], None]:
    def command(run_id: str, output: str, api: str) -> None:
        _run_changed(Client(api).call("POST", f"/runs/{segment(run_id, 'run id')}/{op}"), output)

    command.__doc__ = f"{op.capitalize()} a run."
    return command


for _op in ("pause", "resume", "stop"):
    runs.command(_op)(output_option(api_option(click.argument("run_id")(_run_op(_op)))))


@runs.command("rerun")
@click.argument("run_id")
@click.option(
    "--from",
    "from_task",
    default=None,
    help="rerun this task and everything downstream (a sub-workflow task: its child run whole)",
)
@click.option(
    "--failed",
    is_flag=True,
    help="rerun failed, stopped and unrun tasks and every task downstream of them, keep what "
    "succeeded apart from them (the default; a failed sub-workflow task: its child run from "
    "its failed tasks; one only downstream: its child run whole)",
)
@output_option
@api_option
def runs_rerun(run_id: str, from_task: str | None, failed: bool, output: str, api: str) -> None:
    """Rerun failed tasks, or a task and everything downstream of it. On a running run,
    they rerun now while its other tasks go on (what is rerun that runs is killed)."""
    if failed and from_task:
        _fail("use either --failed or --from TASK", EXIT_INVALID)
    body = Client(api).call(
        "POST",
        f"/runs/{segment(run_id, 'run id')}/rerun",
        json={"from": from_task},
        flags={"body.from": "--from"},
    )
    _run_changed(body, output)


@runs.command("mark")
@click.argument("run_id")
@click.argument("task_id")
@click.option("--state", type=click.Choice(["succeeded", "skipped", "failed"]), required=True)
@output_option
@api_option
def runs_mark(run_id: str, task_id: str, state: str, output: str, api: str) -> None:
    """Mark a task succeeded, skipped or failed; what waited on it is decided again (a task
    marked failed is not retried, and a running one is killed)."""
    body = Client(api).call(
        "POST",
        f"/runs/{segment(run_id, 'run id')}/tasks/{segment(task_id, 'task id')}/mark",
        json={"state": state},
    )
    _run_changed(body, output)


@main.command()
@click.argument("run_id")
@click.argument("task_id")
@click.option(
    "--attempt", type=click.IntRange(min=1), default=None, help="1 = the first; default: the latest"
)
@api_option
def logs(run_id: str, task_id: str, attempt: int | None, api: str) -> None:
    """Print a task attempt's whole log (fetched page by page)."""
    client = Client(api)
    if attempt is None:
        task = client.call(
            "GET", f"/runs/{segment(run_id, 'run id')}/tasks/{segment(task_id, 'task id')}"
        )
        attempt = int(task["attempts"])
        if attempt < 1:  # skipped, upstream_failed, waiting or queued in a pool: nothing ran
            _fail(
                f"task {task_id} of run {run_id} has no attempt yet (state: {task['state']}), "
                "so it has no log",
                EXIT_INVALID,
            )
    client.follow(
        f"/runs/{segment(run_id, 'run id')}/tasks/{segment(task_id, 'task id')}/attempts/{attempt}/log",
        "X-Log-Size",
    )


@runs.command("output")
@click.argument("run_id")
@click.argument("task_id")
@click.argument("key")
@click.option(
    "--attempt",
    type=click.IntRange(min=1),
    default=None,
    help="that attempt's (1 = the first); default: the task's",
)
@api_option
def runs_output(run_id: str, task_id: str, key: str, attempt: int | None, api: str) -> None:
    """Print one output value of a task whole (run views cut large ones), then a newline
    unless the value ends with one, as every command's text ends."""
    params = {} if attempt is None else {"attempt": attempt}
    run_part, task_part = segment(run_id, "run id"), segment(task_id, "task id")
    # a key may hold a '/': its route takes the rest
    key_part = segment(key, "output key", rest=True)
    last = Client(api).follow(
        f"/runs/{run_part}/tasks/{task_part}/outputs/{key_part}", "X-Output-Size", **params
    )
    if last != "\n":
        click.echo()


# ------------------------------------------------------------------ users and tokens (local)
@contextmanager
def _identities(home: Path | None) -> Iterator[SqliteIdentities]:
    """The local install's identity store (in the home's database), for its administrator."""
    from stratoflow.adapters.local.identity import SqliteIdentities

    home = home or default_home()
    home.mkdir(parents=True, exist_ok=True)
    identities = SqliteIdentities(home / "stratoflow.db")
    try:
        with _errors():
            yield identities
    finally:
        identities.close()


def _now() -> datetime:
    from stratoflow.adapters.local.clock import SystemClock

    return SystemClock().now()


def _cli_actor() -> str:
    """Who runs a command that changes a home without the API: ``cli:<OS user>``."""
    import getpass

    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # a uid with no name (a container)
        who = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"cli:{who}"


def _journalled(
    identities: SqliteIdentities, action: str, target: str, project: str = "", **details: Any
) -> contextlib.AbstractContextManager[None]:
    """The change made within goes to the audit log as ``action`` by ``cli:<OS user>``
    (who ran the command on the server's machine), in the same transaction."""
    import uuid

    from stratoflow.readmodel import AuditEntry

    entry = AuditEntry(
        id=uuid.uuid4().hex, at=_now(), actor=_cli_actor(), action=action, target=target,
        project=project, details=details,
    )  # fmt: skip
    return identities.journalled(entry)


identity_home = click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="the local install's directory (default $STRATOFLOW_HOME or ~/.stratoflow)",
)  # fmt: skip


@main.group()
def users() -> None:
    """Users of a local install and their role per project (run on the server's machine)."""


@users.command("add")
@click.argument("name")
@click.option("--superuser", is_flag=True, help="admin of every project")
@identity_home
def users_add(name: str, superuser: bool, home: Path | None) -> None:
    """Create a user (give it roles with `users grant` and a token with `tokens create`)."""
    with (
        _identities(home) as identities,
        _journalled(identities, "user.add", f"user/{name}", superuser=superuser),
    ):
        user = identities.create_user(name, superuser=superuser, now=_now())
    click.echo(f"user {user.name} created{' (superuser)' if user.superuser else ''}")


@users.command("list")
@identity_home
def users_list(home: Path | None) -> None:
    """Users and their roles."""
    with _identities(home) as identities:
        for user in identities.list_users():
            roles = ", ".join(f"{p}:{r.value}" for p, r in user.roles.items()) or "-"
            click.echo(f"{user.name}\t{'superuser' if user.superuser else roles}")


@users.command("grant")
@click.argument("name")
@click.argument("project")
@click.argument("role", type=click.Choice(["viewer", "operator", "editor", "admin"]))
@identity_home
def users_grant(name: str, project: str, role: str, home: Path | None) -> None:
    """Give NAME the ROLE in PROJECT (replacing the role it had there)."""
    from stratoflow.auth import Role

    with (
        _identities(home) as identities,
        _journalled(identities, "user.grant", f"user/{name}", project, role=role),
    ):
        identities.set_role(name, project, Role(role))
    click.echo(f"{name} is {role} in {project}")


@users.command("revoke")
@click.argument("name")
@click.argument("project")
@identity_home
def users_revoke(name: str, project: str, home: Path | None) -> None:
    """Take NAME's role in PROJECT away."""
    with (
        _identities(home) as identities,
        _journalled(identities, "user.revoke", f"user/{name}", project),
    ):
        identities.set_role(name, project, None)
    click.echo(f"{name} has no role in {project}")


@main.group()
def tokens() -> None:
    """API tokens of a local install (sent as `Authorization: Bearer <token>`)."""


@tokens.command("create")
@click.argument("user")
@click.option("--label", default="cli", show_default=True)
@identity_home
def tokens_create(user: str, label: str, home: Path | None) -> None:
    """Create a token for USER and print it (it is shown only this once)."""
    with (
        _identities(home) as identities,
        _journalled(identities, "token.create", f"user/{user}", label=label),
    ):
        token, secret = identities.create_token(user, label, _now())
    click.echo(f"token {token.id} for {user}:", err=True)
    click.echo(secret)


@tokens.command("list")
@click.option("--user", default=None)
@identity_home
def tokens_list(user: str | None, home: Path | None) -> None:
    """Tokens (never their secrets)."""
    with _identities(home) as identities:
        for token in identities.list_tokens(user):
            state = "revoked" if token.revoked else "active"
            used = token.last_used_at.isoformat() if token.last_used_at else "never used"
            click.echo(f"{token.id}\t{token.user}\t{token.label}\t{state}\t{used}")


@tokens.command("revoke")
@click.argument("token_id")
@identity_home
def tokens_revoke(token_id: str, home: Path | None) -> None:
    """Revoke a token; requests with it fail with 401 from then on."""
    with (
        _identities(home) as identities,
        _journalled(identities, "token.revoke", f"token/{token_id}"),
    ):
        identities.revoke_token(token_id)
    click.echo(f"token {token_id} revoked")


# ------------------------------------------------------------------ admin (local home)
@main.group()
def admin() -> None:
    """Local administration, by direct access to a home (only its owner can read it)."""


@admin.command("token")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--reset", is_flag=True, required=True, help="revoke the admin's tokens, issue one")
def admin_token(home: Path | None, reset: bool) -> None:
    """Issue a new API token for the local superuser ``admin`` and print it once; the
    admin's earlier tokens are revoked. Works while the server runs."""
    from datetime import UTC, datetime

    from stratoflow.adapters.local.identity import FIRST_ADMIN, SqliteIdentities

    db = (home or default_home()) / "stratoflow.db"
    if not db.exists():
        _fail(f"{db.parent} holds no Stratoflow state (start `stratoflow server` once)", 2)
    identities = SqliteIdentities(db)
    with _errors():
        identities.get_user(FIRST_ADMIN)
        # one line, with the first change it makes (a revocation, or the new token)
        with _journalled(identities, "token.reset", f"user/{FIRST_ADMIN}"):
            for token in identities.list_tokens(FIRST_ADMIN):
                if not token.revoked:
                    identities.revoke_token(token.id)
            _, secret = identities.create_token(FIRST_ADMIN, "reset", datetime.now(UTC))
    click.echo(secret)
