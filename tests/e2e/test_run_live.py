"""`stratoflow run` in a terminal: the live progress reads what it shows, not the whole run.

GIVEN a run of more tasks than the live view lists (some failed, most succeeded),
WHEN  the live view is drawn,
THEN  it shows what the view of the whole run showed (the same text), having read only the
      tasks it lists and their attempts (plus every task's state); and `stratoflow run` in a
      terminal draws it to the end and exits as the run ended.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.cli import _detail, _live, _print_run, _progress, _shown

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _workflow(n: int, failing: int) -> str:
    lines = ["name: many", "tasks:"]
    for i in range(n):
        command = "echo no; exit 1" if i < failing else "true"
        lines += [f"  t{i:02d}: {{type: shell, command: '{command}', retries: 0}}"]
    return "\n".join(lines) + "\n"


def _text(view: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(view)
    return out.getvalue()


def _ended(rt: LocalRuntime, text: str) -> str:
    version, _ = rt.scheduler.apply(text)
    run, _ = rt.scheduler.trigger(version.project, version.name)
    deadline = time.monotonic() + 60
    while not rt.store.get_run(run.id).state.terminal:
        assert time.monotonic() < deadline, "the run did not end"
        rt.run_once(timeout=0.05)
    return run.id


@pytest.mark.parametrize(("tasks", "failing"), [(40, 5), (12, 2)])
def test_the_live_view_shows_what_the_whole_runs_view_shows_reading_only_that(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tasks: int, failing: int
) -> None:
    rt = LocalRuntime(tmp_path / "home")
    try:
        run_id = _ended(rt, _workflow(tasks, failing))
        whole = _text(_progress(*_shown(_detail(rt, run_id))))
        reads: list[tuple[str, Any]] = []  # this thread's (not the read-model feed's)
        me = threading.get_ident()
        get_tasks, list_attempts = rt.store.get_tasks, rt.store.list_attempts
        attempts_of = rt.store.attempts_of

        def tasks_read(r: str, ids: Any = None) -> Any:
            if threading.get_ident() == me:
                reads.append(("tasks", ids))
            return get_tasks(r, ids)

        def attempts_read(r: str, t: Any = None) -> Any:
            if threading.get_ident() == me:
                reads.append(("attempts", t))
            return list_attempts(r, t)

        def attempts_of_read(r: str, ids: Any) -> Any:
            if threading.get_ident() == me:
                reads.append(("attempts of", ids))
            return attempts_of(r, ids)

        monkeypatch.setattr(rt.store, "get_tasks", tasks_read)
        monkeypatch.setattr(rt.store, "list_attempts", attempts_read)
        monkeypatch.setattr(rt.store, "attempts_of", attempts_of_read)
        live = _text(_progress(*_live(rt, run_id)))
    finally:
        rt.close()
    assert live == whole
    assert f"failed: {failing}" in live
    assert f"succeeded: {tasks - failing}" in live
    listed = tasks if tasks <= 30 else failing  # a big run lists what moved: the failures
    assert [r for r in reads if r[0] == "tasks"] == [
        ("tasks", [f"t{i:02d}" for i in range(listed)])
    ]
    assert [r for r in reads if r[0] != "tasks"] == [
        ("attempts of", [f"t{i:02d}" for i in range(listed)])
    ]  # the listed tasks' attempts in one read, never the whole run's


def test_run_in_a_terminal_draws_the_progress_to_the_end(tmp_path: Path) -> None:
    source = tmp_path / "many.yaml"
    source.write_text(_workflow(40, 0))
    main, child = pty.openpty()
    env = {**os.environ, "STRATOFLOW_HOME": str(tmp_path / "home"), "COLUMNS": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stratoflow", "run", str(source)],
        stdin=child, stdout=child, stderr=child, env=env, close_fds=True,
    )  # fmt: skip
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert proc.wait(timeout=60) == 0, output.decode(errors="replace")[-2000:]
    text = output.decode(errors="replace")
    assert "40/40 done" in text
    assert "succeeded: 40" in text


def test_a_task_s_error_is_printed_as_text_however_it_looks_like_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rich read "[/data/in.csv]" in an error as a closing tag and raised (the run could not
    # be shown in text at all); "[t]" vanished as an unknown style
    text = (
        "name: marked\ntasks:\n"
        "  a: {type: python, code: 'raise ValueError(\"cannot open [/data/in.csv]\")', retries: 0}\n"
        "  b: {type: shell, command: 'echo \"see [t] and [bold]x\" >&2; exit 2', retries: 0}\n"
    )
    rt = LocalRuntime(tmp_path / "home")
    try:
        run_id = _ended(rt, text)
        detail = _detail(rt, run_id)
        shown = _text(_progress(*_shown(detail)))
        _print_run(detail, "text")
    finally:
        rt.close()
    printed = capsys.readouterr().out
    assert "cannot open [/data/in.csv]" in shown  # the table's note: the error's first line
    assert "cannot open [/data/in.csv]" in printed
    assert "see [t] and [bold]x" in printed
    assert "a failed:" in printed
    # the counts have a line of their own, after the bar, whatever the width
    narrow = io.StringIO()
    Console(file=narrow, width=80, color_system=None).print(_progress(*_shown(detail)))
    assert any(line.startswith("failed: 2") for line in narrow.getvalue().splitlines())
