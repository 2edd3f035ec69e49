"""What the client commands share: the ``--project``/``--output``/``--api`` options, printing
a reply as text or JSON, exiting 2 on bad input, and ``--setting name=value`` pairs.

It imports nothing of ``stratoflow.cli`` when loaded: that module registers the command
modules which use this one (``Client`` and the default API URL are looked up when called)."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from stratoflow.errors import InvalidInput

if TYPE_CHECKING:
    from stratoflow.cli import Client

F = TypeVar("F", bound=Callable[..., Any])
_NAME = re.compile(r"[a-z0-9_-]{1,128}")  # the model's workflow and project names
NAME_RULE = "1-128 of a-z, 0-9, '_' and '-'"  # as secrets.check_project says it

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNREACHABLE = 3


def implied_limit(limit: int) -> str:
    """How validate, apply and ``workflows show`` name the limit on a workflow's active runs
    that its schedule's ``catchup`` implies (it sets no ``max_active_runs``)."""
    return f"max_active_runs: {limit}, implied by catchup (set max_active_runs to change it)"


def view_implied_limit(view: dict[str, Any]) -> str | None:
    """:func:`implied_limit` of a workflow version's API view (with its ``document``); None
    when the workflow sets its own ``max_active_runs`` or has no limit."""
    limit = view.get("effective_max_active_runs")
    if limit is None or "max_active_runs" in (view.get("document") or {}):
        return None
    return implied_limit(limit)


_TERMINAL_CONTROLS = {
    c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if chr(c) not in "\n\t"
}


def printable(text: str) -> str:
    """``text`` (a workflow's description, a task's error: what a user or a task wrote) for
    a terminal: control characters other than newline and tab shown escaped, so an escape
    sequence in it cannot retitle, clear or rewrite the terminal it is printed to."""
    return text.translate(_TERMINAL_CONTROLS)


def _default_api() -> str:
    from stratoflow.cli import default_api

    return default_api()


api_option = click.option(
    "--api", default=_default_api, show_default="$STRATOFLOW_API or local server", help="API URL"
)


def _project(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--project``, refused (exit 2, naming it and the rule) when no project can be named
    so: a read of such a project answered as an empty one."""
    if not _NAME.fullmatch(value):
        raise click.BadParameter(f"{value!r} is no project name: a project name is {NAME_RULE}")
    return value


project_option = click.option("--project", default="default", show_default=True, callback=_project)
output_option = click.option("--output", type=click.Choice(["text", "json"]), default="text")


class LazyGroup(click.Group):
    """A group some of whose commands live in other modules, imported only when one of them
    is looked up to run (or to show its own help): ``stratoflow --help`` and every other command
    do not import the alerts, pools or connections code (docs/benchmarks.md, "the CLI's start-up").

    ``lazy`` maps a command's name to ``("module:attribute", short help)``; the listing of
    ``--help`` shows that short help without importing the module, and
    tests/unit/test_cli_startup.py checks that it lists exactly what the loaded commands say."""

    def __init__(
        self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            self.add_command(self.load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def load(self, name: str) -> click.Command:
        module, _, attribute = self.lazy[name][0].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}:{attribute} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, with an unloaded lazy command's short help taken from ``lazy``."""
        commands: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            if name in self.lazy and name not in self.commands:
                commands.append((name, click.Command(name, help=self.lazy[name][1])))
            elif (command := self.get_command(ctx, name)) is not None and not command.hidden:
                commands.append((name, command))
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            with formatter.section("Commands"):
                formatter.write_dl([(n, c.get_short_help_str(limit)) for n, c in commands])


def project_output_api(command: F) -> F:
    """``--project``, ``--output`` and ``--api``, the options of most client commands."""
    return project_option(output_option(api_option(command)))


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def invalid(message: str) -> NoReturn:
    """Exit 2 naming the problem (bad input: nothing was sent)."""
    fail(message, EXIT_INVALID)


def _named(kind: str, text: str) -> str:
    """``text``, refused (exit 2, naming it and the rule) when no ``kind`` can be named so."""
    if not _NAME.fullmatch(text):
        invalid(f"{text!r} is no {kind} name: a {kind} name is {NAME_RULE}")
    return text


def workflow_ref(name: str, project: str) -> tuple[str, str]:
    """(project, name) of a workflow given as NAME (of ``--project``) or as PROJECT/NAME, the
    form ``apply`` prints and a sub-workflow's ``workflow:`` reads; a ``--project`` given
    with another project is refused, naming both. A name (or project) that no workflow can
    have is refused before anything is sent, naming it and the rule."""
    if "/" not in name:
        return project, _named("workflow", name)
    owner, _, bare = name.partition("/")
    if not owner or not bare or "/" in bare:
        invalid(f"{name!r}: a workflow is NAME or PROJECT/NAME")
    _named("project", owner)
    _named("workflow", bare)
    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source("project") if ctx is not None else None
    given = source is not None and source is not click.core.ParameterSource.DEFAULT
    if given and project != owner:
        invalid(f"{name!r} is a workflow of project {owner!r}, but --project says {project!r}")
    return owner, bare


# the longest id the API's paths take (api.models: MAX_ID_CHARS, MAX_NAME_CHARS); not
# imported, as loading the API's models costs every command
_LONGEST = {"run id": 300, "backfill id": 300, "task id": 128, "workflow name": 128}


def segment(text: str, what: str = "name", *, rest: bool = False) -> str:
    """``text`` as one segment of an API path, as typed: every character a path gives a
    meaning to ('?', '#', '%', ...) escaped, and a '.' or '..' escaped too (an HTTP
    client resolves those away: ``/runs/..`` would be ``/``). A '/' is refused (exit 2,
    naming ``text`` as no ``what``): the API decodes the path once, so even escaped it splits
    the segment and another route answers (``runs show RUN/timeline`` read the timeline).
    No id or name has one; ``rest``: the path's last part, which takes '/' (an output key).
    Empty text, or an id longer than the API's paths take, is refused too (exit 2)."""
    from urllib.parse import quote

    a = "an" if what.startswith(tuple("aeiou")) else "a"
    if not text:  # "/runs/" is another route (the list): `runs show ""` crashed on its answer
        invalid(f"{text!r} is no {what}: {a} {what} is not empty")
    longest = _LONGEST.get(what)
    if longest is not None and len(text) > longest:
        shown = text if len(text) <= 60 else f"{text[:60]}..."
        invalid(f"{shown!r} is no {what}: {a} {what} is at most {longest} characters")
    if "/" in text and not rest:
        invalid(f"{text!r} is no {what}: {a} {what} has no '/'")
    if text in (".", ".."):
        return "%2E" * len(text)
    return quote(text, safe="")


def command_line(command: Sequence[str], arguments: Sequence[str]) -> str:
    """``stratoflow COMMAND... ARGUMENTS...`` as a message prints it, to be pasted: each word
    quoted for a shell if it needs it, and '--' before the arguments when one starts with
    '-' (click would read it as an option: a project's name, so its run ids, may)."""
    dashes = ["--"] if any(a.startswith("-") for a in arguments) else []
    return shlex.join(["stratoflow", *command, *dashes, *arguments])


def workflow_path(name: str) -> str:
    """The API's path of workflow ``name``, the name quoted: text that is no name gets the
    API's refusal of it, not another route."""
    return f"/workflows/{segment(name, 'workflow name')}"


def checked(check: Callable[[str], str], value: str) -> str:
    """``check(value)``, its refusal (InvalidInput) an exit 2 with its words."""
    try:
        return check(value)
    except InvalidInput as exc:
        invalid(str(exc))


def show(body: Any, output: str, text: str) -> None:
    """The reply as JSON (``--output json``) or as ``text``."""
    click.echo(json.dumps(body, indent=2) if output == "json" else text)


def client(api: str) -> Client:
    from stratoflow.cli import Client

    return Client(api)


def settings(pairs: Sequence[str]) -> dict[str, str]:
    """``--setting name=value`` pairs (each name once)."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            invalid(f"--setting {pair!r}: settings are written name=value")
        if key in result:
            invalid(f"--setting {key!r} is given twice")
        result[key] = value
    return result


def typed_line(item: dict[str, Any]) -> str:
    """A channel's or a connection's line: its name, type and settings."""
    pairs = " ".join(f"{k}={v}" for k, v in sorted(item["settings"].items()))
    return f"{item['name']}\t{item['type']}\t{pairs}"


def named_settings_commands(
    group: click.Group,
    *,
    kind: str,
    path: str,
    types: Sequence[str],
    url_help: str | None = None,
    url_setting: Callable[[str], str | None] | None = None,
    add_epilog: str | None = None,
    list_help: str | None = None,
    with_show: bool = False,
) -> None:
    """Add ``add``, ``list``, ``show`` (``with_show``) and ``delete`` to ``group``: the commands
    of one kind of a project's named settings (``kind`` "connection", at API ``path``
    "/connections"; its ``list`` reply's field is ``kind`` + "s"). ``url_help`` gives ``add`` a
    ``--url`` option, sent as the body's ``url`` when given; ``url_setting`` names, for a type,
    the setting that option fills (None: the type takes no URL)."""
    plural = f"{kind}s"

    def add(name: str, type_: str, pairs: Sequence[str], project: str, output: str, api: str,
            url: str | None = None) -> None:  # fmt: skip
        typed = settings(pairs)
        body: dict[str, Any] = {"type": type_, "settings": typed}
        if url is not None:
            body["url"] = url
        # a refusal names what the user typed (--setting K), not the body's settings.K; the
        # setting --url fills (a pagerduty's base_url) is --url unless typed as --setting
        flags = {"settings.": "--setting "}
        if url_help is not None:
            flags["url"] = "--url"  # the body's own url: a type that takes none, or given twice
            filled = url_setting(type_) if url_setting is not None else None
            if filled is not None and filled not in typed:
                flags[f"settings.{filled}"] = "--url"
        view = client(api).call(
            "PUT", f"{path}/{segment(name, f'{kind} name')}", params={"project": project},
            json=body, flags=flags,
        )  # fmt: skip
        show(view, output, f"{kind} {name} ({type_}) saved in {project}")

    command = click.option("--setting", "pairs", multiple=True, metavar="K=V",
                           help="a setting (repeat)")(project_output_api(add))  # fmt: skip
    if url_help is not None:
        command = click.option("--url", default=None, help=url_help)(command)
    command = click.option("--type", "type_", required=True, type=click.Choice(types))(command)
    group.command("add", help=f"Add (or replace) {kind} NAME.", epilog=add_epilog)(
        click.argument("name")(command)
    )

    @group.command("list", help=list_help)
    @project_output_api
    def list_(project: str, output: str, api: str) -> None:
        body = client(api).call("GET", path, params={"project": project})
        show(body, output, "\n".join(typed_line(c) for c in body[plural]) or f"(no {plural})")

    if with_show:

        @group.command("show")
        @click.argument("name")
        @project_output_api
        def show_(name: str, project: str, output: str, api: str) -> None:
            body = client(api).call(
                "GET", f"{path}/{segment(name, f'{kind} name')}", params={"project": project}
            )
            show(body, output, typed_line(body))

    delete_command(group, kind=kind, path=path)


def delete_command(group: click.Group, *, kind: str, path: str, argument: str = "name") -> None:
    """Add ``delete ARGUMENT`` to ``group``: it deletes ``path``/ARGUMENT in the project and
    says "``kind`` ARGUMENT deleted"."""

    @group.command("delete")
    @click.argument(argument)
    @project_output_api
    def delete(project: str, output: str, api: str, **named: str) -> None:
        name = named[argument]
        body = client(api).call(
            "DELETE", f"{path}/{segment(name, f'{kind} name')}", params={"project": project}
        )
        show(body, output, f"{kind} {name} deleted")
