"""Ids no run, backfill or task can have are refused by the CLI before any request (exit 2,
naming what was typed and the rule). An empty run id made `runs show ""` ask for ``/runs/``
(the run list) and crash reading its ``tasks`` (KeyError); one over the API's bound was sent
to be refused by the server in its words, or (a task id) read as another route."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from stratoflow.cli import main

API = "http://127.0.0.1:8801"  # nothing is asked: the refusal comes first

COMMANDS = [
    (["runs", "show", "{run}"], "run id"),
    (["runs", "stop", "{run}"], "run id"),
    (["runs", "rerun", "{run}"], "run id"),
    (["runs", "mark", "{run}", "t", "--state", "skipped"], "run id"),
    (["runs", "mark", "r", "{task}", "--state", "skipped"], "task id"),
    (["logs", "{run}", "t"], "run id"),
    (["logs", "r", "{task}"], "task id"),
    (["runs", "output", "{run}", "t", "k"], "run id"),
    (["runs", "output", "r", "{task}", "k"], "task id"),
    (["backfills", "show", "{run}"], "backfill id"),
]


pytestmark = pytest.mark.usefixtures("no_request")


def _invoke(command: list[str], run: str, task: str) -> Any:
    args = [a.format(run=run, task=task) for a in command]
    return CliRunner().invoke(main, [*args, "--api", API])


@pytest.mark.parametrize(("command", "what"), COMMANDS, ids=lambda c: str(c))
def test_an_empty_id_is_refused_before_any_request(command: list[str], what: str) -> None:
    result = _invoke(command, "", "")
    assert result.exit_code == 2, result.output
    assert f"no {what}: a {what} is not empty" in result.stderr


@pytest.mark.parametrize(("command", "what"), COMMANDS, ids=lambda c: str(c))
def test_an_id_longer_than_any_is_refused_before_any_request(command: list[str], what: str) -> None:
    result = _invoke(command, "r" * 301, "t" * 129)
    assert result.exit_code == 2, result.output
    longest = 300 if what in ("run id", "backfill id") else 128
    assert f"a {what} is at most {longest} characters" in result.stderr


def test_the_longest_ids_are_sent() -> None:
    """The bounds are the API's: an id of that length is asked for."""
    result = _invoke(
        ["runs", "mark", "{run}", "{task}", "--state", "skipped"], "r" * 300, "t" * 128
    )
    assert isinstance(result.exception, AssertionError)
    assert str(result.exception) == "a request was sent"


def test_the_cli_bounds_are_the_apis() -> None:
    from stratoflow.api.models import MAX_ID_CHARS, MAX_NAME_CHARS
    from stratoflow.cli_common import _LONGEST

    assert _LONGEST == {
        "run id": MAX_ID_CHARS, "backfill id": MAX_ID_CHARS,
        "task id": MAX_NAME_CHARS, "workflow name": MAX_NAME_CHARS,
    }  # fmt: skip


def test_an_empty_output_key_is_refused_as_an_output_key() -> None:
    """`runs output RUN TASK ''` said "'' is no name": the user typed no name, an output key."""
    result = CliRunner().invoke(main, ["runs", "output", "r", "t", "", "--api", API])
    assert result.exit_code == 2, result.output
    assert "'' is no output key: an output key is not empty" in result.stderr
