"""``stratoflow variables`` against a local server, and a workflow whose shell command reads
``{{ var.value.bucket }}``: its log shows the value, a changed value reaches the next run, a
missing one and ``var.json`` of text that is not JSON fail the task naming the variable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.cli import main
from tests.cli_server import running_api

pytestmark = pytest.mark.e2e

COPY = """
name: copy
tasks:
  copy:
    type: shell
    command: |
      echo "copying to {{ var.value.bucket }} at most {{ var.json.limits.rows }} rows"
      echo "dest={{ var.value.bucket }}/{{ ds }}" >> "$STRATOFLOW_OUTPUT"
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, LocalRuntime]]:
    with running_api(tmp_path / "server-home") as server:
        yield server.url, server.runtime


def test_variables_commands_and_a_run_reading_them(
    tmp_path: Path, served: tuple[str, LocalRuntime]
) -> None:
    url, _ = served
    cli = CliRunner()
    api = ["--api", url]

    def run(*args: str, input: str | None = None) -> tuple[int, str]:
        result = cli.invoke(main, [*args, *api], input=input)
        return result.exit_code, result.output

    # bad input: exit 2 naming the problem, nothing sent
    code, out = run("variables", "set", "my-bucket", "x")
    assert code == 2
    assert "a variable name is a letter" in out
    code, out = run("variables", "set", "bucket")
    assert code == 2
    assert "give the value" in out
    assert run("variables", "list", "--output", "json")[1].count('"name"') == 0
    # set from an argument, a file and stdin
    assert run("variables", "set", "bucket", "s3://first") == (0, "set: variable default/bucket\n")
    limits = tmp_path / "limits.json"
    limits.write_text('{"rows": 100}\n')
    assert run("variables", "set", "limits", "--file", str(limits))[0] == 0
    assert run("variables", "set", "note", "-", input="two\nlines\n")[0] == 0
    assert run("variables", "get", "note") == (0, "two\nlines\n\n")
    assert run("variables", "get", "limits")[1] == '{"rows": 100}\n\n'
    shown = json.loads(run("variables", "get", "bucket", "--output", "json")[1])
    assert (shown["value"], shown["updated_by"]) == ("s3://first", "local")
    code, out = run("variables", "list")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == ["bucket", "limits", "note"]
    assert "s3://first" in out
    code, out = run("variables", "get", "nope")
    assert code == 2
    assert "variable 'nope' is not set in project 'default'" in out
    assert run("variables", "list", "--project", "other")[1] == "no variables in project other\n"

    # a run renders the values when its task is claimed: the log shows them
    flow = tmp_path / "copy.yaml"
    flow.write_text(COPY)
    assert run("apply", str(flow))[0] == 0
    code, out = run("trigger", "copy", "--wait", "--output", "json")
    assert code == 0, out
    first = json.loads(out)
    assert first["tasks"]["copy"]["outputs"]["dest"].startswith("s3://first/")
    code, log = run("logs", first["run"]["id"], "copy")
    assert "copying to s3://first at most 100 rows" in log
    # changed: the next run reads the new value, without applying the workflow again
    assert run("variables", "set", "bucket", "s3://second")[0] == 0
    code, out = run("trigger", "copy", "--wait", "--output", "json")
    second = json.loads(out)
    assert second["tasks"]["copy"]["outputs"]["dest"].startswith("s3://second/")
    assert "copying to s3://second" in run("logs", second["run"]["id"], "copy")[1]

    # var.json of a value that is not JSON fails the task naming the variable
    assert run("variables", "set", "limits", "rows=100")[0] == 0
    code, out = run("trigger", "copy", "--wait", "--output", "json")
    assert code == 1
    task = json.loads(out)["tasks"]["copy"]
    assert task["state"] == "failed"
    assert "variable 'limits' of project 'default' is not JSON" in task["error"]
    # a variable that is not set fails the task naming it and the project
    assert run("variables", "delete", "bucket") == (0, "deleted: variable default/bucket\n")
    assert run("variables", "delete", "bucket")[0] == 2
    code, out = run("trigger", "copy", "--wait", "--output", "json")
    assert code == 1
    task = json.loads(out)["tasks"]["copy"]
    assert "variable 'bucket' is not set in project 'default'" in task["error"]


def test_list_prints_a_value_s_escape_sequences_escaped(
    served: tuple[str, LocalRuntime],
) -> None:
    """An editor's value reached a viewer's terminal raw: `list` shows it escaped; `get
    --output json` gives it exactly, for scripts."""
    url, _ = served
    cli = CliRunner()
    value = "ok\x1b]0;owned\x07\x1b[2J"
    assert cli.invoke(main, ["variables", "set", "t", value, "--api", url]).exit_code == 0
    listed = cli.invoke(main, ["variables", "list", "--api", url]).output
    assert "\x1b" not in listed
    assert "ok\\x1b]0;owned\\x07\\x1b[2J" in listed
    got = cli.invoke(main, ["variables", "get", "t", "--output", "json", "--api", url]).output
    assert json.loads(got)["value"] == value
