"""The longest names a workflow can have, run as a user runs them: a project, a workflow and a
task id of 128 characters make run ids of 280 (generated), 284 (scheduled: a backfill's
runs) and up to 300 (a caller's key) characters. A run's log directory was named by its id,
and a file name holds 255 bytes: every attempt failed to start with "File name too long"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratoflow.adapters.local.executor import _NAME_MAX
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.engine import RunState
from tests.cli_server import running_api
from tests.e2e.test_runtime import finish, states

pytestmark = pytest.mark.e2e

PROJECT, NAME, TASK = "p" * 128, "w" * 128, "T" * 128
TEXT = (
    f"name: {NAME}\nproject: {PROJECT}\nschedule: {{cron: '0 3 * * *'}}\n"
    f"tasks:\n  {TASK}: {{type: shell, retries: 0, command: 'echo hi from $STRATOFLOW_RUN_ID'}}\n"
)
KEY = "k" * (300 - len(f"{PROJECT}.{NAME}."))  # the longest key these names leave room for


def _log(server_run: tuple[int, str]) -> str:
    code, output = server_run
    assert code == 0, output
    return output


def test_the_longest_names_run_and_their_logs_are_read_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRATOFLOW_TOKEN", raising=False)
    source = tmp_path / "long.yaml"
    source.write_text(TEXT, encoding="utf-8")
    with running_api(tmp_path / "home") as server:
        _log(server.run("apply", str(source)))
        workflow = f"{PROJECT}/{NAME}"
        ran = [
            _log(server.run("trigger", workflow, "--wait", "--output", "json")),
            _log(server.run("trigger", workflow, "--run-id", KEY, "--wait", "--output", "json")),
        ]
        run_ids = [json.loads(out)["run"]["id"] for out in ran]
        _log(server.run("backfill", workflow, "--dates", "2026-11-02", "--wait"))
        run_ids.append(f"{PROJECT}.{NAME}-scheduled-20261102T030000Z")
        assert [len(r) for r in run_ids] == [280, 300, 284]
        for run_id in run_ids:
            shown = json.loads(_log(server.run("runs", "show", run_id, "--output", "json")))
            assert shown["run"]["state"] == "succeeded", shown
            assert f"hi from {run_id}\n" in _log(server.run("logs", run_id, TASK))
            [attempt] = server.runtime.store.list_attempts(run_id, TASK)
            assert len(Path(attempt.log or "").parent.name) <= _NAME_MAX


def test_an_attempt_of_a_run_with_a_long_id_is_adopted_across_a_restart(tmp_path: Path) -> None:
    """A scheduler that starts finds the wrapper of an attempt of a run whose directory is
    named by a digest (its processes and open logs name that directory, not the run)."""
    text = (
        f"name: {NAME}\nproject: {PROJECT}\ntasks:\n"
        f"  {TASK}: {{type: shell, retries: 0, command: 'echo one; sleep 2; echo two'}}\n"
    )
    home = tmp_path / "home"
    rt = LocalRuntime(home)
    try:
        version, _ = rt.scheduler.apply(text)
        run, _ = rt.scheduler.trigger(version.project, version.name)
        log = rt.executor.log_path(run.id, TASK, 1)
        rt.run_until(lambda: log.exists() and b"one" in log.read_bytes())
    finally:
        rt.close()  # the task runs on without a scheduler
    rt = LocalRuntime(home)
    try:
        assert finish(rt, run.id) is RunState.SUCCEEDED, states(rt, run.id)
        [attempt] = rt.store.list_attempts(run.id, TASK)
        assert attempt.state == "succeeded", attempt
        assert Path(attempt.log or "").read_text().count("two") == 1
    finally:
        rt.close()
