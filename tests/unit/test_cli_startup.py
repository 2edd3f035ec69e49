"""The ``stratoflow`` command's start-up: what it imports, and that its lazily registered
commands are listed and work as when they were imported up front (why: docs/benchmarks.md,
"the CLI's start-up")."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from stratoflow.cli import LAZY_COMMANDS, LAZY_RUNS_COMMANDS, main, runs
from stratoflow.cli_common import LazyGroup

# what a command that does not use them must not import
HEAVY = (
    "pydantic", "httpx", "smtplib", "boto3", "botocore", "jinja2", "yaml", "rich",
    "stratoflow.model", "stratoflow.engine", "stratoflow.alerts", "stratoflow.adapters",
    "stratoflow.connections",
)  # fmt: skip

# what `stratoflow run` of a workflow of shell tasks, without a schedule, an alert or a
# template, does not use: each is imported where it is needed (a cron expression, an alert's
# HTML, a connection's settings, ...), not by every run's start-up
RUN_UNUSED = (
    "aws_croniter", "dateutil", "html", "stratoflow.connection_types", "rich._emoji_codes",
    "jinja2", "stratoflow._jinja_templating", "httpx", "smtplib", "boto3", "botocore",
    "stratoflow.api", "stratoflow.importers", "stratoflow.taskexec.sql", "psycopg", "pymysql",
    "aws_lambda_powertools",
)  # fmt: skip

# every command the CLI had when each was imported at start-up
MAIN_COMMANDS = [
    "admin", "alerts", "apply", "backfill", "backfills", "connections", "import", "logs",
    "pools", "resources", "run", "runs", "schema", "secrets", "server", "tokens", "trigger",
    "users", "validate", "variables", "workflows",
]  # fmt: skip
RUNS_COMMANDS = [
    "force-start", "list", "mark", "output", "pause", "rerun", "resume", "show", "stop",
]  # fmt: skip


def _imported_after(code: str) -> set[str]:
    """The top-level names and stratoflow modules ``code`` leaves in sys.modules, in a fresh
    interpreter."""
    script = (
        "import json, sys\n"
        f"{code}\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def _heavy(modules: set[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(f"{h}.") for h in heavy))


def test_importing_the_cli_imports_nothing_heavy() -> None:
    assert _heavy(_imported_after("import stratoflow.cli")) == []


def test_help_imports_no_command_module() -> None:
    modules = _imported_after(
        "from stratoflow.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert _heavy(modules) == []
    assert not {m for m in modules if m.startswith("stratoflow.cli_")} - {"stratoflow.cli_common"}


def test_apply_of_a_yaml_file_reads_it_without_the_model(tmp_path: Path) -> None:
    """The server validates what apply sends: the CLI only reads the text (the port is
    closed, so apply exits 3 after reading)."""
    flow = tmp_path / "one.yaml"
    flow.write_text("name: one\ntasks:\n  a: {type: shell, command: 'true'}\n")
    modules = _imported_after(
        "from stratoflow.cli import main\n"
        "try:\n"
        f"    main(['apply', {str(flow)!r}, '--api', 'http://127.0.0.1:9'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 3, exc.code"
    )
    assert "stratoflow.workflow_text" in modules
    assert "httpx" in modules
    assert [m for m in _heavy(modules) if m != "httpx" and not m.startswith("httpx.")] == []
    assert "httpx._main" not in modules  # httpx's own command line, with rich and pygments


def test_run_of_a_shell_workflow_imports_only_what_it_uses(tmp_path: Path) -> None:
    flow = tmp_path / "one.yaml"
    flow.write_text("name: one\ntasks:\n  a: {type: shell, command: 'true'}\n")
    modules = _imported_after(
        "from stratoflow.cli import main\n"
        "try:\n"
        f"    main(['run', {str(flow)!r}, '--home', {str(tmp_path / 'home')!r}])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code"
    )
    assert {"stratoflow.adapters.local.runtime", "stratoflow.connections", "rich"} <= modules
    assert _heavy(modules, RUN_UNUSED) == []


def test_httpx_main_is_still_importable_after_the_client_imported_httpx() -> None:
    modules = _imported_after(
        "from stratoflow.cli import Client\n"
        "Client('http://127.0.0.1:9')\n"
        "assert 'rich' not in sys.modules\n"
        "import httpx._main"
    )
    assert "httpx._main" in modules


def test_apply_still_refuses_a_file_that_is_not_utf8_before_sending(tmp_path: Path) -> None:
    flow = tmp_path / "bad.yaml"
    flow.write_bytes(b"name: one\n\xff\n")
    result = CliRunner().invoke(main, ["apply", str(flow), "--api", "http://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert "not UTF-8: byte 0xff at byte offset 10" in result.output


def test_the_groups_list_every_command_they_had() -> None:
    ctx = click.Context(main)
    assert main.list_commands(ctx) == MAIN_COMMANDS
    assert runs.list_commands(click.Context(runs)) == RUNS_COMMANDS


@pytest.mark.parametrize(
    ("group", "name"),
    [(main, n) for n in LAZY_COMMANDS] + [(runs, n) for n in LAZY_RUNS_COMMANDS],
)
def test_a_lazy_commands_listed_help_is_its_own(group: LazyGroup, name: str) -> None:
    command = group.load(name)
    assert command.name == name
    listed = click.Command(name, help=group.lazy[name][1])
    for limit in (30, 45, 60, 74, 120, 300):
        assert listed.get_short_help_str(limit) == command.get_short_help_str(limit), limit


def test_the_listing_is_the_same_before_and_after_the_commands_are_loaded() -> None:
    runner = CliRunner()
    for table in (LAZY_COMMANDS, LAZY_RUNS_COMMANDS):
        for width in (60, 80, 200):
            fresh = LazyGroup(name="g", lazy=table)
            before = runner.invoke(fresh, ["--help"], terminal_width=width).output
            for name in fresh.lazy:
                fresh.get_command(click.Context(fresh), name)
            assert not set(fresh.lazy) - set(fresh.commands)
            after = runner.invoke(fresh, ["--help"], terminal_width=width).output
            assert before == after
            assert all(name in before for name in fresh.lazy)


def _paths(group: click.Group, prefix: list[str]) -> Iterator[list[str]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        yield [*prefix, name]
        if isinstance(command, click.Group):
            yield from _paths(command, [*prefix, name])


def test_every_commands_help_works() -> None:
    runner = CliRunner()
    paths = list(_paths(main, []))
    assert ["alerts", "channels", "add"] in paths
    assert ["runs", "force-start"] in paths
    for path in paths:
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert f"Usage: main {' '.join(path)}" in result.output


def _bundles_loaded(monkeypatch: pytest.MonkeyPatch, api: str) -> int:
    """How many times making the CLI's client for ``api`` loaded CA certificates."""
    import ssl

    from stratoflow.cli import Client

    loads: list[object] = []
    real = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    Client(api)._http.close()
    return len(loads)


def test_a_client_of_a_plain_http_api_loads_no_certificate_bundle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # httpx loads its CA bundle for every client, ~30 ms of `apply`'s and `trigger`'s start
    # before the request goes out; a local server speaks plain HTTP and needs none of it
    assert _bundles_loaded(monkeypatch, "http://127.0.0.1:8321") == 0
    assert _bundles_loaded(monkeypatch, "HTTP://localhost:8321/") == 0
    assert _bundles_loaded(monkeypatch, "https://api.example.com/prod") >= 1


def test_the_plain_http_clients_tls_context_trusts_nothing() -> None:
    # were an https URL ever reached through it, verification would fail, not be skipped
    import ssl

    from stratoflow.cli import _tls_for

    context = _tls_for("http://127.0.0.1:8321")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0
    assert _tls_for("https://api.example.com") is True
