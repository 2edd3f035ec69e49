"""The ``stratoflow pools set`` commands that messages print work when pasted, whatever the
pool's name: a name that starts with '-' (a valid pool name) follows '--', or click would
read it as an option (``No such option '-p'``)."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
from click.testing import CliRunner

from stratoflow import cli
from stratoflow.cli import main
from stratoflow.engine import pools as engine_pools
from stratoflow.importers._build import pools_to_create
from stratoflow.importers._report import Notes
from stratoflow.model import load_workflow


def _pasted(message: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    """Run the ``stratoflow pools set ...`` command ``message`` prints (its placeholders
    filled: N is 2, an optional part kept): the API path and body it sends."""
    found = re.search(r"stratoflow pools set [^()`]*", message)
    assert found is not None, message
    words = shlex.split(found.group().strip().replace(" N", " 2").replace("[", "").replace("]", ""))
    assert words[:3] == ["stratoflow", "pools", "set"]
    sent: list[tuple[str, dict[str, Any]]] = []

    def call(self: object, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        sent.append((path, {**kwargs.get("json", {}), **kwargs.get("params", {})}))
        return {"name": "x", "project": None, "slots": 2, "used": 0}

    monkeypatch.setattr(cli.Client, "call", call)
    monkeypatch.setenv("STRATOFLOW_API", "http://127.0.0.1:9")
    result = CliRunner().invoke(main, words[1:])
    assert result.exit_code == 0, (words, result.output)
    [request] = sent
    return request


@pytest.mark.parametrize(("name", "project"), [("-p", ""), ("--slots", "sales"), ("p4", "-s")])
def test_a_shrunk_pools_fix_names_the_pool_when_pasted(
    name: str, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    why = engine_pools.too_small(engine_pools.Pool(project, name, 2), "wide", 3)
    assert why is not None
    path, sent = _pasted(why, monkeypatch)
    assert path == f"/pools/{name}"
    assert sent == ({"slots": 3, "project": project} if project else {"slots": 3})


def test_an_unknown_pools_hint_at_apply_names_the_pool_when_pasted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = load_workflow("name: w\ntasks: {t: {type: shell, command: x, pool: -p}}\n")
    [problem] = engine_pools.check(spec, lambda key: None)
    path, sent = _pasted(problem.message, monkeypatch)
    assert (path, sent) == ("/pools/-p", {"slots": 2, "project": "default"})


def test_an_imported_pools_note_names_the_pool_when_pasted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notes = Notes()
    pools_to_create({"-tg": ["a"]}, "etl", "N = the task group's size", notes)
    [note] = notes.items
    path, sent = _pasted(note.message, monkeypatch)
    assert (path, sent) == ("/pools/-tg", {"slots": 2, "project": "etl"})


def test_a_plain_pool_name_is_printed_as_before() -> None:
    why = engine_pools.too_small(engine_pools.Pool("sales", "p4", 2), "wide", 3)
    assert "(stratoflow pools set p4 --slots 3 --project sales)" in (why or "")
