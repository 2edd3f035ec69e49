"""A ``-p`` key given twice (``-p k=a -p k=b``) kept the last value without a word: a repeated
key is almost surely a mistake (which value was meant?), so every command taking ``-p`` refuses
it (exit 2) naming the key, before any request is sent or any home is opened."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from stratoflow.cli import main

API = "http://127.0.0.1:18601"  # nothing is asked: the refusal comes first


pytestmark = pytest.mark.usefixtures("no_request")


@pytest.mark.parametrize(
    "command",
    [
        ["trigger", "wf", "--api", API],
        ["backfill", "wf", "--start", "2026-01-01", "--end", "2026-01-02", "--api", API],
    ],
)
def test_a_repeated_param_is_refused_naming_it(command: list[str]) -> None:
    args = [*command, "-p", "region=eu", "-p", "k=a", "-p", "k=b"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "-p 'k=b': the param 'k' is given twice" in result.stderr


def test_run_refuses_a_repeated_param_before_its_home_is_made(tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text("name: f\nparams: {k: x}\ntasks: {a: {type: shell, command: 'true'}}\n")
    home = tmp_path / "home"
    result = CliRunner().invoke(
        main, ["run", str(flow), "--home", str(home), "-p", "k=a", "-p", "k=a"]
    )
    assert result.exit_code == 2, result.output
    assert "-p 'k=a': the param 'k' is given twice" in result.stderr
    assert not home.exists()
