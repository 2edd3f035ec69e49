"""``validate`` and ``apply`` with ``--output json``, as the run commands have it: a list with
one object per file, on stdout, whatever else goes to stderr."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratoflow.cli import main
from tests.cli_server import running_api

pytestmark = pytest.mark.e2e

GOOD = "name: good\nproject: sales\ntasks: {a: {type: shell, command: 'true'}, b: {type: shell, command: 'true'}}\n"
TYPO = "name: typo\ntasks: {a: {type: shell, comand: 'true'}}\n"
NO_POOL = "name: pooled\ntasks: {a: {type: shell, command: 'true', pool: no_such_pool}}\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with running_api(tmp_path / "server-home") as served:
        yield served.url


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_validate_json_says_per_file_ok_or_its_problems(tmp_path: Path) -> None:
    good, typo = _write(tmp_path, "good.yaml", GOOD), _write(tmp_path, "typo.yaml", TYPO)
    result = CliRunner().invoke(main, ["validate", good, typo, "--output", "json"])
    assert result.exit_code == 2, result.output
    report = json.loads(result.stdout)
    assert report[0] == {
        "file": good, "ok": True, "problems": [],
        "workflows": [{"project": "sales", "name": "good", "tasks": 2}],
    }  # fmt: skip
    assert (report[1]["file"], report[1]["ok"], report[1]["workflows"]) == (typo, False, [])
    problems = report[1]["problems"]
    assert all(set(p) == {"path", "message", "line"} for p in problems)
    assert {"path": "tasks.a.comand", "message": "unknown field 'comand'", "line": 2} in problems
    # all valid: exit 0, the same shape
    result = CliRunner().invoke(main, ["validate", good, "--output", "json"])
    assert result.exit_code == 0, result.output
    assert [r["ok"] for r in json.loads(result.stdout)] == [True]


def test_apply_json_gives_each_files_version_and_whether_it_was_created(
    tmp_path: Path, server: str
) -> None:
    good = _write(tmp_path, "good.yaml", GOOD)
    other = _write(tmp_path, "other.yaml", GOOD.replace("good", "other"))
    command = ["apply", good, other, "--output", "json", "--api", server]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    first = {"file": good, "project": "sales", "name": "good", "version": 1, "created": True}
    assert json.loads(result.stdout) == [first, {**first, "file": other, "name": "other"}]
    # again: unchanged, the same versions
    again = CliRunner().invoke(main, command)
    assert again.exit_code == 0, again.output
    assert [(a["version"], a["created"]) for a in json.loads(again.stdout)] == [(1, False)] * 2


def test_apply_json_lists_what_was_applied_before_a_refusal(tmp_path: Path, server: str) -> None:
    good = _write(tmp_path, "good.yaml", GOOD)
    refused = _write(tmp_path, "pooled.yaml", NO_POOL)
    result = CliRunner().invoke(main, ["apply", good, refused, "--output", "json", "--api", server])
    assert result.exit_code == 2, result.output
    assert [a["name"] for a in json.loads(result.stdout)] == ["good"]
    assert "no_such_pool" in result.stderr


@pytest.mark.parametrize("bad", [TYPO, "\xff not utf-8"], ids=["invalid", "unreadable"])
def test_apply_json_refused_before_sending_lists_nothing_applied(tmp_path: Path, bad: str) -> None:
    """A file refused before anything is sent (invalid among several, or unreadable) left
    stdout empty under --output json: no list to read, where the help promises one."""
    good = _write(tmp_path, "good.yaml", GOOD)
    (tmp_path / "bad.yaml").write_bytes(bad.encode("latin-1"))
    command = ["apply", good, str(tmp_path / "bad.yaml"), "--output", "json"]
    result = CliRunner().invoke(main, [*command, "--api", "http://127.0.0.1:8802"])
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout) == []
