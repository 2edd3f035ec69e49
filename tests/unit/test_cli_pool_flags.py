"""``pools set NAME --slots 0`` said "slots: slots must be between 1 and ...": the user typed
``--slots``, so the refusal names the option (exit 2, before any request), as ``runs rerun
--from``'s does; ``--project`` likewise."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from stratoflow.cli import main

API = "http://127.0.0.1:18602"  # nothing is asked: the refusal comes first


pytestmark = pytest.mark.usefixtures("no_request")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["pools", "set", "p", "--slots", "0"], "--slots: slots must be between 1 and"),
        (["pools", "set", "p", "--slots", "1", "--project", "A B"], "--project: a project name"),
        (["pools", "show", "p", "--project", "A B"], "--project: a project name"),
        (["pools", "delete", "p", "--project", "A B"], "--project: a project name"),
    ],
)
def test_a_pool_refusal_names_the_option_typed(args: list[str], said: str) -> None:
    result = CliRunner().invoke(main, [*args, "--api", API])
    assert result.exit_code == 2, result.output
    assert said in result.stderr
    assert not re.search(r"(?<!-)\b(slots|project): ", result.stderr), result.stderr
