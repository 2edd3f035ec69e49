"""`stratoflow logs` of an attempt that ended before its process started (a template that
could not be rendered): it said only "no log for attempt 1", so the user who asked why the
task failed learned nothing; the refusal now says why the attempt has no log, with its error,
as Airflow's task log shows a rendering error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratoflow.cli import main
from tests.cli_server import running_api

pytestmark = pytest.mark.e2e

UNRENDERED = """\
name: unrendered
tasks:
  w: {type: shell, command: "echo k=1 >> $STRATOFLOW_OUTPUT"}
  r: {type: shell, depends_on: [w], command: "echo {{ tasks.w.outputs.nokey }}"}
"""


def test_logs_of_an_attempt_that_never_started_says_why(tmp_path: Path) -> None:
    source = tmp_path / "unrendered.yaml"
    source.write_text(UNRENDERED, encoding="utf-8")
    with running_api(tmp_path / "home") as server:
        cli = CliRunner()
        assert cli.invoke(main, ["apply", str(source), "--api", server.url]).exit_code == 0
        ran = cli.invoke(
            main, ["trigger", "unrendered", "--wait", "--output", "json", "--api", server.url]
        )
        assert ran.exit_code == 1, ran.output
        run_id = json.loads(ran.stdout)["run"]["id"]
        result = cli.invoke(main, ["logs", run_id, "r", "--api", server.url])
    assert result.exit_code == 2, result.output
    assert f"no log for attempt 1 of task 'r' in run {run_id!r}" in result.stderr
    assert "it ended before its process started" in result.stderr
    assert "task 'w' has no output 'nokey'" in result.stderr


SWITCHED = """\
name: switched
tasks:
  route:
    type: switch
    cases: [{when: "{{ 1 > 0 }}", next: [a]}]
  a: {type: shell, depends_on: [route], command: echo a}
"""


def test_logs_of_a_switch_says_it_runs_no_process(tmp_path: Path) -> None:
    """A switch has an attempt (its decision) and no process: "no log" alone read as a
    log lost."""
    source = tmp_path / "switched.yaml"
    source.write_text(SWITCHED, encoding="utf-8")
    with running_api(tmp_path / "home") as server:
        cli = CliRunner()
        assert cli.invoke(main, ["apply", str(source), "--api", server.url]).exit_code == 0
        ran = cli.invoke(
            main, ["trigger", "switched", "--wait", "--output", "json", "--api", server.url]
        )
        assert ran.exit_code == 0, ran.output
        run_id = json.loads(ran.stdout)["run"]["id"]
        result = cli.invoke(main, ["logs", run_id, "route", "--api", server.url])
    assert result.exit_code == 2, result.output
    assert "a switch runs no process, the scheduler decides it" in result.stderr
