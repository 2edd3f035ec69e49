"""``stratoflow variables``: what it refuses before sending anything, and how it prints."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from stratoflow import cli_variables
from stratoflow.cli import main

WORDS = "a project name is 1-128 of a-z, 0-9, '_' and '-'"


@pytest.mark.parametrize(
    "args",
    [
        ["set", "zz", "1"],
        ["get", "zz"],
        ["list"],
        ["delete", "zz"],
    ],
)
@pytest.mark.parametrize("project", ["Bad Project/..", "../../x", "a\nb"])
def test_a_bad_project_is_refused_before_anything_is_sent(args: list[str], project: str) -> None:
    """`variables set zz 1 --project 'Bad Project/..'` exited 0 (the API stored it); the
    project is checked as the secrets' is: exit 2 naming the rule, no request (the API
    address is one nothing answers on: a request would be exit 3)."""
    result = CliRunner().invoke(
        main, ["variables", *args, "--project", project, "--api", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 2, result.output
    assert WORDS in result.output


class _Tty:
    @staticmethod
    def isatty() -> bool:
        return True


class _Pipe:
    @staticmethod
    def isatty() -> bool:
        return False


class _Client:
    def call(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        return {"project": "default", "name": "t", "value": "ok\x1b]0;owned\x07\x1b[2J"}


@pytest.mark.parametrize(("stdout", "shown"), [(_Tty, "ok\\x1b]0;owned\\x07\\x1b[2J\n"),
                                               (_Pipe, "ok\x1b]0;owned\x07\x1b[2J\n")])  # fmt: skip
def test_get_shows_a_value_s_escape_sequences_escaped_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch, stdout: type, shown: str
) -> None:
    """An editor's value reached a viewer's terminal raw; into a pipe it stays as it is."""
    monkeypatch.setattr(cli_variables, "client", lambda api: _Client())

    class _Sys:
        pass

    _Sys.stdout = stdout  # type: ignore[attr-defined]
    monkeypatch.setattr(cli_variables, "sys", _Sys)
    result = CliRunner().invoke(main, ["variables", "get", "t", "--api", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.output
    assert result.output == shown
