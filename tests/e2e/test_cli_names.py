"""Names as a user types them: a workflow name no workflow can have, a run id or an output
key with a character a URL path must escape ('?', '#', '/', '..'), through the CLI against
the local HTTP server on 127.0.0.1. Each was "no route for GET /workflows/a?b" (a 4xx that
names nothing the user wrote), another run's answer ("run 'x' not found" for `x?y`), or a
traceback (`..` reached the web UI's page)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratoflow.cli import main
from tests.cli_server import running_api

pytestmark = pytest.mark.e2e

KEYS = {"k": "hello", "a?b": "q", "a#b": "h", "a/b": "s", "a b": "sp", "..": "dots"}
OUTS = "name: outs\ntasks:\n  t:\n    type: shell\n    command: |\n" + "".join(
    f"      echo '{key}={value}' >> \"$STRATOFLOW_OUTPUT\"\n" for key, value in KEYS.items()
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A server with workflow `outs` applied and run once: (its URL, the run's id)."""
    home = tmp_path_factory.mktemp("names")
    with running_api(home / "home") as server:
        source = home / "outs.yaml"
        source.write_text(OUTS, encoding="utf-8")
        cli = CliRunner()
        applied = cli.invoke(main, ["apply", str(source), "--api", server.url])
        assert applied.exit_code == 0, applied.output
        ran = cli.invoke(
            main, ["trigger", "outs", "--wait", "--output", "json", "--api", server.url]
        )
        assert ran.exit_code == 0, ran.output
        yield server.url, json.loads(ran.output)["run"]["id"]


@pytest.mark.parametrize("key", list(KEYS))
def test_runs_output_reads_every_key_a_task_can_write(served: tuple[str, str], key: str) -> None:
    """A shell task may write any key before '='; `runs output` of 'a?b', 'a#b' or 'a/b'
    was "no route for GET /runs/.../outputs/a?b", exit 2, though the run view lists it.
    The value is printed with a newline after it, as every command's text is."""
    api, run_id = served
    result = CliRunner().invoke(main, ["runs", "output", run_id, "t", key, "--api", api])
    assert result.exit_code == 0, result.output
    assert result.stdout == KEYS[key] + "\n"


NOT_NAMES = ["a?b", "a#b", "Sales", "..", "a b", "x\\y"]


@pytest.mark.parametrize("name", NOT_NAMES)
@pytest.mark.parametrize(
    "command",
    [
        ["trigger"],
        ["workflows", "show"],
        ["workflows", "pause"],
        ["backfill", "--start", "2026-01-01", "--end", "2026-01-02"],
        ["runs", "list", "--workflow"],
        ["backfills", "list", "--workflow"],
    ],
    ids=lambda c: "-".join(c[:2]),
)
def test_a_name_no_workflow_can_have_is_refused_naming_it_and_the_rule(
    served: tuple[str, str], command: list[str], name: str
) -> None:
    """Refused before anything is sent, exit 2, as `pools set` and `variables get` refuse
    a name that breaks their rule: the message names what was typed and the rule."""
    api, _ = served
    args = [*command, name] if command[0] != "backfill" else ["backfill", name, *command[1:]]
    result = CliRunner().invoke(main, [*args, "--api", api])
    assert result.exit_code == 2, result.output
    assert f"{name!r} is no workflow name" in result.stderr
    assert "1-128 of a-z, 0-9, '_' and '-'" in result.stderr
    assert "no route" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("project", ["A", "a?b"])
def test_a_project_part_no_project_can_have_is_refused_too(
    served: tuple[str, str], project: str
) -> None:
    api, _ = served
    result = CliRunner().invoke(main, ["trigger", f"{project}/outs", "--api", api])
    assert result.exit_code == 2, result.output
    assert f"{project!r} is no project name" in result.stderr
    assert "1-128 of a-z, 0-9, '_' and '-'" in result.stderr


@pytest.mark.parametrize("run_id", ["x?y", "x#y", "..", "."])
@pytest.mark.parametrize("command", [["runs", "show"], ["runs", "pause"], ["logs"]])
def test_a_run_id_is_sent_as_typed_and_reported_as_unknown(
    served: tuple[str, str], command: list[str], run_id: str
) -> None:
    """`runs show x?y` sent GET /runs/x?y, so the server read run 'x' (and a query); `..`
    was resolved away by the HTTP client, reached the web UI's page and crashed the CLI."""
    api, _ = served
    extra = ["t"] if command == ["logs"] else []
    result = CliRunner().invoke(main, [*command, run_id, *extra, "--api", api])
    assert result.exit_code == 2, result.output
    assert f"run {run_id!r} not found" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("command", "what"),
    [
        (["runs", "show", "{run}/timeline"], "run id"),
        (["runs", "show", "{run}/states"], "run id"),
        (["logs", "{run}", "t/outputs/k"], "task id"),
        (["logs", "{run}", "t/attempts/1/log"], "task id"),
        (["runs", "stop", "{run}/x"], "run id"),
        (["backfills", "show", "x/y"], "backfill id"),
    ],
    ids=lambda c: c if isinstance(c, str) else "-".join(c[:2]),
)
def test_an_id_with_a_slash_is_refused_before_another_route_answers_it(
    served: tuple[str, str], command: list[str], what: str
) -> None:
    """No run, task or backfill id has a '/'. Escaped as %2F, it still split the segment
    (the API decodes the path once: api/paths.py), so `runs show RUN/timeline` read the
    run's timeline and `logs RUN t/outputs/k` an output value, and the CLI crashed printing
    them as a run or a task (AttributeError, KeyError, TypeError). Refused, exit 2, naming
    what was typed."""
    api, run_id = served
    args = [part.replace("{run}", run_id) for part in command]
    typed = next(part for part in args if "/" in part)
    result = CliRunner().invoke(main, [*args, "--api", api])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert f"{typed!r} is no {what}" in result.stderr
    assert "'/'" in result.stderr


def test_run_operations_print_the_apis_reply_with_output_json(
    served: tuple[str, str], tmp_path: Path
) -> None:
    """`runs pause|resume|stop|rerun|mark` had no --output (every other client command
    has): a script had to parse `ID: state`. With --output json each prints the API's reply."""
    api, _ = served
    cli = CliRunner()
    ran = cli.invoke(main, ["trigger", "outs", "--wait", "--output", "json", "--api", api])
    run_id = json.loads(ran.output)["run"]["id"]
    marked = cli.invoke(
        main, ["runs", "mark", run_id, "t", "--state", "skipped", "--output", "json", "--api", api]
    )
    assert marked.exit_code == 0, marked.output
    assert json.loads(marked.stdout)["id"] == run_id
    rerun = cli.invoke(
        main, ["runs", "rerun", run_id, "--from", "t", "--output", "json", "--api", api]
    )
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout)["id"] == run_id
    slow = tmp_path / "slow.yaml"
    slow.write_text("name: slow\ntasks:\n  z: {type: shell, command: 'sleep 60'}\n")
    assert cli.invoke(main, ["apply", str(slow), "--api", api]).exit_code == 0
    going = cli.invoke(main, ["trigger", "slow", "--api", api]).output.strip()
    for op, state in (("pause", "paused"), ("resume", "running"), ("stop", "stopped")):
        done = cli.invoke(main, ["runs", op, going, "--output", "json", "--api", api])
        assert done.exit_code == 0, done.output
        assert (json.loads(done.stdout)["id"], json.loads(done.stdout)["state"]) == (going, state)


@pytest.mark.parametrize("project", ["A?", "x y", "Bad"])
@pytest.mark.parametrize(
    "command",
    [
        ["workflows", "list"],
        ["workflows", "show", "outs"],
        ["runs", "list"],
        ["trigger", "outs"],
        ["backfills", "list"],
        ["backfill", "outs", "--start", "2026-01-01", "--end", "2026-01-02"],
    ],
    ids=lambda c: "-".join(c[:2]),
)
def test_a_project_no_project_can_have_is_refused_before_anything_is_sent(
    command: list[str], project: str
) -> None:
    """`workflows list --project 'A?'` said "No workflows in project A?" and exited 0, as
    did `runs list`: a project no workflow can be in is refused, exit 2, naming the option,
    what was typed and the rule (the words `secrets` and `variables` use), and no request is
    made (nothing answers at the API address: a request would be exit 3)."""
    args = [*command, "--project", project, "--api", "http://127.0.0.1:9"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "--project" in result.output
    assert repr(project) in result.output
    assert "a project name is 1-128 of a-z, 0-9, '_' and '-'" in result.output


@pytest.mark.parametrize("key", ["a?b", "bad id", "-x"])
def test_a_run_id_key_the_api_refuses_is_named_as_the_option(
    served: tuple[str, str], key: str
) -> None:
    """`trigger outs --run-id 'a?b'` said "body.run_id: String should match pattern ...": the
    user typed no body; the refusal names --run-id, as --logical-date's does, and no run is
    made."""
    api, _ = served
    cli = CliRunner()
    before = cli.invoke(
        main, ["runs", "list", "--workflow", "outs", "--output", "json", "--api", api]
    )
    result = cli.invoke(main, ["trigger", "outs", "--run-id", key, "--api", api])
    assert result.exit_code == 2, result.output
    assert "--run-id: String should match pattern" in result.stderr
    assert "body.run_id" not in result.stderr
    after = cli.invoke(
        main, ["runs", "list", "--workflow", "outs", "--output", "json", "--api", api]
    )
    assert json.loads(after.stdout)["runs"] == json.loads(before.stdout)["runs"]


def test_the_command_a_cut_output_names_runs_as_printed(
    served: tuple[str, str], tmp_path: Path
) -> None:
    """`runs show` names the command that prints a cut output whole; a key with a space
    was printed bare (`... runs output RUN t big one`), which a shell splits into two
    arguments. Each argument is quoted for the shell, and the command works as printed."""
    import shlex

    api, _ = served
    cli = CliRunner()
    flow = tmp_path / "cut.yaml"
    flow.write_text(
        "name: cut\ntasks:\n  t:\n    type: shell\n    command: |\n"
        "      printf 'big one=%s\\n' \"$(head -c 20000 /dev/zero | tr '\\0' b)\""
        ' >> "$STRATOFLOW_OUTPUT"\n'
    )
    assert cli.invoke(main, ["apply", str(flow), "--api", api]).exit_code == 0
    ran = cli.invoke(main, ["trigger", "cut", "--wait", "--output", "json", "--api", api])
    run_id = json.loads(ran.output)["run"]["id"]
    shown = cli.invoke(main, ["runs", "show", run_id, "--api", api])
    line = next(x for x in shown.output.splitlines() if "cut in this view" in x)
    command = line.split("`")[1]
    args = shlex.split(command)
    assert args[:3] == ["stratoflow", "runs", "output"]
    assert args[3:] == [run_id, "t", "big one"]
    whole = cli.invoke(main, [*args[1:], "--api", api])
    assert whole.exit_code == 0, whole.output
    assert whole.stdout == "b" * 20000 + "\n"


def test_the_command_for_a_cut_output_whose_key_starts_with_a_dash_runs_as_printed(
    served: tuple[str, str], tmp_path: Path
) -> None:
    """A task may write the key '-x' (or have an id like '-t'): `runs show` named
    `stratoflow runs output RUN t -x`, which click reads as an option ("No such option:
    -x"). The arguments follow a '--', and the command works as printed."""
    import shlex

    api, _ = served
    cli = CliRunner()
    flow = tmp_path / "dash.yaml"
    flow.write_text(
        "name: dash\ntasks:\n  t:\n    type: shell\n    command: |\n"
        "      printf -- '-x=%s\\n' \"$(head -c 20000 /dev/zero | tr '\\0' b)\""
        ' >> "$STRATOFLOW_OUTPUT"\n'
    )
    assert cli.invoke(main, ["apply", str(flow), "--api", api]).exit_code == 0
    ran = cli.invoke(main, ["trigger", "dash", "--wait", "--output", "json", "--api", api])
    run_id = json.loads(ran.output)["run"]["id"]
    shown = cli.invoke(main, ["runs", "show", run_id, "--api", api])
    line = next(x for x in shown.output.splitlines() if "cut in this view" in x)
    args = shlex.split(line.split("`")[1])
    assert args[:3] == ["stratoflow", "runs", "output"]
    assert args[-3:] == [run_id, "t", "-x"]
    whole = cli.invoke(main, [*args[1:3], "--api", api, *args[3:]])  # as printed, and --api
    assert whole.exit_code == 0, whole.output
    assert whole.stdout == "b" * 20000 + "\n"


@pytest.mark.parametrize("task", ["", "t" * 201])
def test_a_rerun_from_task_the_api_refuses_is_named_as_the_option(
    served: tuple[str, str], task: str
) -> None:
    """`runs rerun RUN --from ''` said "body.from: String should have at least 1 character":
    the user typed no body; the refusal names --from, as --run-id's does, and the run is left
    as it was."""
    api, run_id = served
    cli = CliRunner()
    result = cli.invoke(main, ["runs", "rerun", run_id, "--from", task, "--api", api])
    assert result.exit_code == 2, result.output
    assert "--from: String should have" in result.stderr
    assert "body.from" not in result.stderr
    shown = cli.invoke(main, ["runs", "show", run_id, "--output", "json", "--api", api])
    assert json.loads(shown.stdout)["run"]["state"] == "succeeded"
