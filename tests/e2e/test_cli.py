"""The ``stratoflow`` command, in-process: exit codes, output shapes, client commands."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stratoflow.adapters.local import runtime as runtime_module
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.cli import _drive, _stop, main
from stratoflow.ports import RunQuery
from stratoflow.readmodel import ReadModel
from stratoflow.service import Scheduler
from tests.cli_server import running_api, serving
from tests.fakes import FakeClock
from tests.logframe import framed, unpid
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CHAIN = """
name: cli_chain
params: {word: hello}
tasks:
  say: {type: shell, command: 'echo saying {{ params.word }}; echo "said={{ params.word }}" >> "$STRATOFLOW_OUTPUT"'}
  shout:
    type: python
    depends_on: [say]
    params: {said: "{{ tasks.say.outputs.said }}"}
    code: outputs["loud"] = params["said"].upper()
"""
FAILING = "name: cli_fails\ntasks:\n  boom: {type: shell, command: 'echo no >&2; exit 4'}\n"


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_validate_accepts_every_example(cli: CliRunner) -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 5  # etl_chain, switch_rules, flaky_retry, scheduled, backfill_daily
    result = cli.invoke(main, ["validate", *map(str, files)])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok: ") == len(files)


def test_validate_names_the_cycle_and_exits_2(cli: CliRunner, tmp_path: Path) -> None:
    bad = write(
        tmp_path,
        "cycle.yaml",
        "name: loop\ntasks:\n  a: {type: shell, command: x, depends_on: [c]}\n"
        "  b: {type: shell, command: x, depends_on: [a]}\n  c: {type: shell, command: x, depends_on: [b]}\n",
    )
    result = cli.invoke(main, ["validate", bad])
    assert result.exit_code == 2
    assert "cycle: " in result.output
    assert all(f"{t} ->" in result.output or f"-> {t}" in result.output for t in "abc")


def test_validate_refuses_a_template_in_python_code_and_exits_2(
    cli: CliRunner, tmp_path: Path
) -> None:
    bad = write(
        tmp_path,
        "code.yaml",
        "name: w\ntasks:\n  t: {type: python, code: \"print('{{ ds }}')\"}\n",
    )
    result = cli.invoke(main, ["validate", bad])
    assert result.exit_code == 2, result.output
    assert "tasks.t.code (line 3): code is not templated: '{{ ds }}'" in result.output


def test_validate_refuses_a_switch_child_in_none_of_its_branches_and_exits_2(
    cli: CliRunner, tmp_path: Path
) -> None:
    """A task after a switch that no case nor the default names ran whatever the switch
    chose, where Airflow's branch operators and DolphinScheduler's switch skip it unless
    chosen: refused, saying how to write either meaning."""
    bad = write(
        tmp_path,
        "switch.yaml",
        "name: w\ntasks:\n"
        "  route: {type: switch, cases: [{when: 'true', next: [a]}], default: [b]}\n"
        "  a: {type: shell, command: x, depends_on: [route]}\n"
        "  b: {type: shell, command: x, depends_on: [route]}\n"
        "  audit: {type: shell, command: x, depends_on: [route]}\n",
    )
    result = cli.invoke(main, ["validate", bad])
    assert result.exit_code == 2, result.output
    assert (
        "tasks.audit.depends_on.0 (line 6): depends on switch 'route' but is in none of its "
        "cases or its default: a switch runs only the branches it chooses; list 'audit' in a "
        "case's next or in default, or make it depend on the branches (trigger_rule: "
        "none_failed runs it after whichever ran)"
    ) in result.output


def test_run_prints_the_run_as_json_and_exits_0(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(
        main,
        [
            "run",
            write(tmp_path, "chain.yaml", CHAIN),
            "--home",
            str(tmp_path / "home"),
            "--output",
            "json",
            "-p",
            "word=hi",
        ],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["run"]["state"] == "succeeded"
    assert body["run"]["params"] == {"word": "hi"}
    assert body["tasks"]["say"]["outputs"] == {"said": "hi"}
    assert body["tasks"]["shout"]["state"] == "succeeded"
    assert body["tasks"]["shout"]["attempts"] == 1
    assert body["tasks"]["shout"]["outputs"] == {"loud": "HI"}
    assert body["tasks"]["shout"]["error"] is None


def test_a_run_is_in_the_read_model_once_a_server_opens_its_home(
    cli: CliRunner, tmp_path: Path
) -> None:
    """`stratoflow run` projects nothing into the read model as it goes (no one reads it
    while the run holds the home; it cost ~0.07 ms of CPU per task): the next runtime that
    projects, a server's, catches up on start with the version, the run, its tasks and
    their attempts, as they are in the store."""
    home = tmp_path / "home"
    argv = ["run", write(tmp_path, "chain.yaml", CHAIN), "--home", str(home), "--output", "json"]
    result = cli.invoke(main, argv)
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.output)["run"]["id"]
    before = ReadModel.open(str(home / "readmodel.db"))
    try:  # the run left it to the server: what follows is the server's catch-up
        assert run_id not in before.run_summaries()
    finally:
        before.close()
    runtime = LocalRuntime(home)  # what `stratoflow server` opens
    try:
        assert runtime.feed.flush()
        store, readmodel = runtime.store, runtime.readmodel
        assert readmodel.run(run_id) == store.get_run(run_id)

        def shown(tasks: list[Any]) -> list[tuple[Any, ...]]:  # what the views read of a task
            fields = ("task_id", "state", "attempt", "started_at", "ended_at", "outputs", "error")
            return sorted(tuple(getattr(t, f) for f in fields) for t in tasks)

        assert shown(readmodel.tasks(run_id)) == shown(store.get_tasks(run_id))
        assert [t[1].value for t in shown(store.get_tasks(run_id))] == ["succeeded"] * 2
        assert len(readmodel.attempts(run_id)) == len(store.list_attempts(run_id)) == 2
        assert readmodel.version_keys() == {("default", "cli_chain", 1)}
    finally:
        runtime.close()


def test_a_server_started_on_the_home_lists_the_run_from_its_first_answer(
    cli: CliRunner, tmp_path: Path
) -> None:
    """The server projects what `stratoflow run` left before its API answers: the first
    request after it is up already finds the run, its tasks and their states."""
    import httpx

    from tests.e2e.server_process import ServerProcess

    home = tmp_path / "home"
    argv = ["run", write(tmp_path, "chain.yaml", CHAIN), "--home", str(home), "--output", "json"]
    result = cli.invoke(main, argv)
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.output)["run"]["id"]
    server = ServerProcess(home)
    server.start()
    try:
        listed = httpx.get(f"{server.url}/runs", headers=server.headers, timeout=30)
        assert [r["id"] for r in listed.json()["runs"]] == [run_id]
        shown = httpx.get(f"{server.url}/runs/{run_id}", headers=server.headers, timeout=30)
        assert {t: v["state"] for t, v in shown.json()["tasks"].items()} == {
            "say": "succeeded", "shout": "succeeded"
        }  # fmt: skip
    finally:
        server.stop()


def test_run_s_text_summary_reads_only_the_tasks_it_names_and_says_the_same(
    cli: CliRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text summary at the end of `stratoflow run` reads the tasks that failed or hold
    outputs, not the whole run (~50 ms at 2,000 tasks): what it prints is what the whole
    run's detail prints: the progress, each failure, each output cut in the view (the
    run's output budget spent in workflow order, so a cut depends on what came before)."""
    from stratoflow.cli import _detail, _live, _of_note, _print_run

    big = (
        "printf 'blob=%s\\n' \"$(head -c 20000 /dev/zero | tr '\\0' x)\" >> \"$STRATOFLOW_OUTPUT\""
    )
    tasks = {f"quiet{i:02d}": {"type": "shell", "command": "true"} for i in range(20)}
    tasks |= {f"big{i:02d}": {"type": "shell", "command": big} for i in range(35)}
    tasks["small"] = {"type": "shell", "command": 'echo "n=1" >> "$STRATOFLOW_OUTPUT"'}
    tasks["boom"] = {"type": "shell", "command": "echo broke >&2; exit 3", "retries": 0}
    text = json.dumps({"name": "noted", "tasks": tasks})
    home = tmp_path / "home"
    result = cli.invoke(main, ["run", write(tmp_path, "noted.yaml", text), "--home", str(home)])
    assert result.exit_code == 1, result.output
    runtime = LocalRuntime(home, project=False)
    try:
        (run,) = runtime.store.list_runs(RunQuery(limit=1))
        assert len(runtime.store.tasks_of_note(run.id)[0]) == 37  # not the 20 quiet ones
        _print_run(_detail(runtime, run.id), "text")
        whole = capsys.readouterr().out
        _print_run(_of_note(runtime, run.id), "text", _live(runtime, run.id))
        noted = capsys.readouterr().out
    finally:
        runtime.close()
    assert noted == whole
    assert "boom failed: exit code 3" in noted
    assert "big00: output 'blob' is 20000 bytes, cut in this view" in noted
    assert "small: output 'n' is 1 bytes, cut in this view" in noted  # the run's budget spent


CONTEXT = """
name: knows_itself
tasks:
  inline:
    type: python
    retries: 1
    retry_delay: 0
    code: |
      import os
      if context["attempt"] == 1:
          raise RuntimeError("first attempt")
      outputs.update({k: context[k] for k in ("run_id", "task_id", "attempt", "workflow",
                                                "logical_date")})
      outputs["in_work_dir"] = context["work_dir"] == os.getcwd()
"""


def test_python_code_gets_its_run_task_attempt_and_logical_date_in_context(
    cli: CliRunner, tmp_path: Path
) -> None:
    """``context`` holds what the README says: the attempt's identity and its work dir."""
    result = cli.invoke(
        main,
        [
            "run", write(tmp_path, "context.yaml", CONTEXT), "--home", str(tmp_path / "home"),
            "--output", "json", "--logical-date", "2026-03-04T05:06:07Z",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["tasks"]["inline"]["outputs"] == {
        "run_id": body["run"]["id"],
        "task_id": "inline",
        "attempt": 2,
        "workflow": "knows_itself",
        "logical_date": "2026-03-04T05:06:07+00:00",
        "in_work_dir": True,
    }


def test_ctrl_c_stops_the_run_at_once_not_at_the_loop_s_next_look(
    cli: CliRunner, tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C asks for the loop's turn: the run is stopped then, not once the loop's wait for
    a report runs out (up to a second; a minute here, so that only the wake can end it)."""
    monkeypatch.setattr(runtime_module, "MAX_SLEEP_SECONDS", 60.0)
    started = shared_dir / "started"
    flow = f"name: slow\ntasks:\n  a:\n    type: shell\n    command: touch {started}; sleep 60\n"
    interrupted: list[float] = []

    def interrupt() -> None:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)  # the loop back in its wait for a report
        interrupted.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt)
    sender.start()
    try:
        args = ["run", write(tmp_path, "slow.yaml", flow), "--home", str(tmp_path / "home")]
        result = cli.invoke(main, [*args, "--output", "json"])
    finally:
        sender.join()
    ended = time.monotonic()
    assert result.exit_code == 1, result.output
    said, _, body = result.output.partition("\n")  # (the runner mixes stderr in first)
    assert said == "stopping the run (Ctrl-C again to leave it running)..."
    assert json.loads(body)["run"]["state"] == "stopped"
    assert ended - interrupted[0] < 20  # a turn, not the 60 s wait


@pytest.fixture
def handlers_kept() -> Iterator[None]:
    """The process's SIGINT and SIGTERM handlers as they were, whatever the test set."""
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)


def test_a_signal_as_the_run_ends_leaves_it_as_it_ended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], handlers_kept: None
) -> None:
    """A SIGTERM or Ctrl-C seen in the turn the run ended in: stopping it raised "already
    succeeded" (exit 2, no summary); now nothing is stopped and nothing said."""
    rt = LocalRuntime(tmp_path / "home")
    try:
        version, _ = rt.scheduler.apply(
            "name: quick\ntasks:\n  a: {type: shell, command: 'true'}\n"
        )
        run, _ = rt.scheduler.trigger(version.project, version.name)
        rt.run_until(lambda: rt.store.run_state(run.id).terminal)
        asked = [signal.SIGTERM]
        _stop(rt, run.id, asked)
        assert asked == []
        assert rt.store.run_state(run.id).value == "succeeded"
        assert "stopping" not in capsys.readouterr().err
    finally:
        rt.close()


def test_a_signal_before_the_run_s_first_turn_starts_no_task(
    tmp_path: Path, shared_dir: Path, handlers_kept: None
) -> None:
    """A SIGTERM that came while the run was being made (the handlers are set before the
    trigger): the run is stopped before its first turn, so no task process starts."""
    started = shared_dir / "started"
    rt = LocalRuntime(tmp_path / "home")
    try:
        version, _ = rt.scheduler.apply(
            f"name: never\ntasks:\n  a: {{type: shell, command: 'touch {started}'}}\n"
        )
        run, _ = rt.scheduler.trigger(version.project, version.name)
        _drive(rt, run.id, live=False, stop=[signal.SIGTERM])
        assert rt.store.run_state(run.id).value == "stopped"
        assert rt.store.get_task(run.id, "a").attempt == 0
    finally:
        rt.close()
    assert not started.exists()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 1)])
def test_a_signal_before_the_run_is_made_leaves_with_no_run(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handlers_kept: None,
    signum: int, code: int,
) -> None:  # fmt: skip
    """Ctrl-C during the apply aborts, as it did before the handlers: no run is made (one
    made and stopped at once would be a run the user never asked for)."""
    real_apply = Scheduler.apply

    def apply_interrupted(self: Scheduler, *args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signum)
        time.sleep(0.5)  # the handler runs here
        return real_apply(self, *args, **kwargs)

    monkeypatch.setattr(Scheduler, "apply", apply_interrupted)
    home = tmp_path / "home"
    flow = write(tmp_path, "q.yaml", "name: q\ntasks:\n  a: {type: shell, command: 'true'}\n")
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    result = cli.invoke(main, ["run", flow, "--home", str(home)])
    assert result.exit_code == code, result.output
    rt = LocalRuntime(home)
    try:
        assert rt.store.list_runs(RunQuery()) == []
    finally:
        rt.close()
    assert {s: signal.getsignal(s) for s in before} == before  # restored by the command


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie no one reaped yet has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_sigterm_stops_the_run_as_ctrl_c_does(tmp_path: Path, shared_dir: Path) -> None:
    """``timeout``, ``docker stop`` and a cancelled CI job send SIGTERM. It used to end the
    process at once: the run stayed ``running`` and its task ran on, watched by no one. Now
    the run is stopped (its task's group killed), the summary printed, and the exit is 1; a
    second SIGTERM changes nothing."""
    pid_file = shared_dir / "task.pid"
    flow = (
        "name: long\ntasks:\n"
        f"  a: {{type: shell, command: 'echo $$ > {pid_file}; exec sleep 60'}}\n"
        "  b: {type: shell, depends_on: [a], command: 'echo b'}\n"
    )
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "stratoflow", "run", write(tmp_path, "long.yaml", flow),
         "--home", str(home), "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline, "the task never started"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        task = int(pid_file.read_text())
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # a second one: ignored, the stop is under way
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        left = pid_file.read_text().strip() if pid_file.exists() else ""
        if left and not _gone(int(left)):  # left running by a failure: end it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(left), signal.SIGKILL)
    assert proc.returncode == 1, err
    assert "stopping the run (SIGTERM)..." in err
    body = json.loads(out)
    assert body["run"]["state"] == "stopped"
    assert body["tasks"]["a"]["state"] == "stopped"
    assert body["tasks"]["b"]["state"] != "running"
    # its killed attempt's end is recorded before the exit, not left running in the history
    # (for the next process on the home to end, if one ever opens it)
    assert [h["state"] for h in body["tasks"]["a"]["history"]] == ["stopped"]
    assert wait_for(lambda: _gone(task), timeout=10), "the task's process was left running"
    store = SqliteStore(home / "stratoflow.db")  # before a runtime's recovery could end it
    try:
        assert [a.state for a in store.list_attempts(body["run"]["id"])] == ["stopped"]
    finally:
        store.close()
    rt = LocalRuntime(home)  # what the home holds says the same
    try:
        assert rt.store.run_state(body["run"]["id"]).value == "stopped"
    finally:
        rt.close()


# `stratoflow run` whose runtime's close waits for a second SIGTERM to have come: the
# window between the stop and the exit, made long enough to aim at
_SLOW_CLOSE = """
import os, sys, time
from pathlib import Path
import stratoflow.adapters.local.runtime as runtime
marker = Path(sys.argv[1])
real_close = runtime.LocalRuntime.close
def close(self):
    marker.write_text("closing")
    deadline = time.monotonic() + 20
    while marker.read_text() != "sent" and time.monotonic() < deadline:
        time.sleep(0.02)
    real_close(self)
runtime.LocalRuntime.close = close
from stratoflow.cli import main
sys.argv = ["stratoflow", *sys.argv[2:]]
main()
"""


def test_a_second_sigterm_while_the_stopped_run_closes_changes_nothing(
    tmp_path: Path, shared_dir: Path
) -> None:
    """The stop done, ``run`` put the default SIGTERM back before it closed its runtime and
    printed the summary: a second SIGTERM then (a supervisor's repeat) ended the process
    with no summary and the home not closed, the exit -15 instead of 1."""
    pid_file, marker = shared_dir / "task.pid", tmp_path / "closing"
    marker.write_text("")
    flow = (
        "name: long\ntasks:\n"
        f"  a: {{type: shell, command: 'echo $$ > {pid_file}; exec sleep 60'}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CLOSE, str(marker), "run",
         write(tmp_path, "long.yaml", flow), "--home", str(tmp_path / "home"),
         "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: marker.read_text() == "closing", timeout=30), "never closed"
        proc.send_signal(signal.SIGTERM)  # while it closes: the stop is done, not undone
        time.sleep(0.2)  # delivered (or the process gone) before the close goes on
        marker.write_text("sent")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert json.loads(out)["run"]["state"] == "stopped"


TYPED = """
name: typed
params: {n: 3, flag: false}
tasks:
  a:
    type: shell
    command: >-
      echo "double={{ params.n * 2 }}" >> "$STRATOFLOW_OUTPUT";
      echo "flag={{ 'on' if params.flag else 'off' }}" >> "$STRATOFLOW_OUTPUT"
"""


def test_p_values_take_the_type_of_the_param_s_default(cli: CliRunner, tmp_path: Path) -> None:
    """``-p n=5`` doubled to 55 and ``-p flag=false`` was true: every -p value was text."""
    flow = write(tmp_path, "typed.yaml", TYPED)
    home = ["--home", str(tmp_path / "home"), "--output", "json"]
    result = cli.invoke(main, ["run", flow, *home, "-p", "n=5", "-p", "flag=false"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["tasks"]["a"]["outputs"] == {"double": "10", "flag": "off"}
    refused = cli.invoke(main, ["run", flow, *home, "-p", "n=lots"])
    assert refused.exit_code == 2
    assert "params.n: expected an integer (its default is 3), got 'lots'" in refused.output


def test_run_of_a_failing_workflow_exits_1_with_the_error(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(
        main, ["run", write(tmp_path, "f.yaml", FAILING), "--home", str(tmp_path / "home")]
    )
    assert result.exit_code == 1
    assert "boom failed: exit code 4" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "nope=1"], "params.nope: unknown parameter"),
        (["-p", "novalue"], "parameters are written name=value"),
        (["--logical-date", "yesterday"], "--logical-date 'yesterday' is not an ISO-8601"),
        (["--pool", "warehouse"], "--pool 'warehouse': expected NAME=SLOTS"),
        (["--pool", "=2"], "--pool '=2': expected NAME=SLOTS"),
        (
            ["--pool", "warehouse=2", "--pool", "warehouse=5"],
            "--pool 'warehouse=5': pool 'warehouse' is given twice (also as warehouse=2)",
        ),
    ],
)
def test_run_rejects_bad_input_with_exit_2(
    cli: CliRunner, tmp_path: Path, args: list[str], message: str
) -> None:
    result = cli.invoke(
        main, ["run", write(tmp_path, "chain.yaml", CHAIN), "--home", str(tmp_path / "home"), *args]
    )
    assert result.exit_code == 2
    assert message in result.output


def test_run_of_an_invalid_file_exits_2_and_touches_no_state(
    cli: CliRunner, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    result = cli.invoke(
        main,
        [
            "run",
            write(tmp_path, "bad.yaml", "name: x\ntasks: {a: {type: nope}}\n"),
            "--home",
            str(home),
        ],
    )
    assert result.exit_code == 2
    assert "unknown task type 'nope'" in result.output
    assert not home.exists()


def test_run_sets_the_pools_and_alert_groups_its_workflow_needs(
    cli: CliRunner, tmp_path: Path
) -> None:
    """`stratoflow run` of a workflow naming a pool or an alert group: apply refuses one that
    does not exist, and without a server there was no way to make it (`pools set` and
    `alerts groups set` talk to a server, and `run` refuses a home a server uses)."""
    home = str(tmp_path / "home")
    pooled = str(EXAMPLES / "warehouse_pool.yaml")
    refused = cli.invoke(main, ["run", pooled, "--home", home])
    assert refused.exit_code == 2
    assert "unknown pool 'warehouse'" in refused.output
    result = cli.invoke(
        main, ["run", pooled, "--home", home, "--pool", "warehouse=2", "--output", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run"]["state"] == "succeeded"  # the notes go to stderr
    assert "pool warehouse (global): 2 slots" in result.stderr
    alerting = str(EXAMPLES / "alerting.yaml")
    groups = ["--alert-group", "data-oncall", "--alert-group", "data-team"]
    result = cli.invoke(main, ["run", alerting, "--home", home, *groups, "--output", "json"])
    assert "alert group data-oncall: created, no channels yet" in result.stderr
    assert json.loads(result.stdout)["run"]["workflow"] == "nightly_load"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with running_api(tmp_path / "server-home") as served:
        yield served.url


def test_run_on_a_home_a_server_uses_exits_2_and_says_how_to_use_the_server(
    cli: CliRunner, tmp_path: Path
) -> None:
    serving = LocalRuntime(tmp_path / "home")
    try:
        result = cli.invoke(
            main, ["run", write(tmp_path, "c.yaml", CHAIN), "--home", str(tmp_path / "home")]
        )
        assert result.exit_code == 2, result.output
        assert "in use by another Stratoflow scheduler" in result.output
        assert "stratoflow trigger NAME --wait" in result.output
        assert serving.store.list_runs(RunQuery()) == [], "nothing was started"
    finally:
        serving.close()


def test_apply_and_show_name_the_limit_catchup_implies(
    cli: CliRunner, tmp_path: Path, server: str
) -> None:
    api = ["--api", server]
    # a start far ahead: nothing fires while the test runs
    text = (
        "name: later\nschedule: {cron: '0 0 1 1 *', start: 2090-01-01T00:00:00, catchup: true}\n"
        "tasks:\n  t: {type: shell, command: echo}\n"
    )
    implied = "max_active_runs: 16, implied by catchup (set max_active_runs to change it)"
    applied = cli.invoke(main, ["apply", write(tmp_path, "later.yaml", text), *api])
    assert applied.output.strip() == f"applied: default/later v1 ({implied})"
    shown = cli.invoke(main, ["workflows", "show", "later", *api])
    assert implied in shown.output.splitlines()
    # an explicit max_active_runs is the workflow's own: apply says nothing, show gives it
    explicit = write(tmp_path, "later3.yaml", text + "max_active_runs: 3\n")
    assert cli.invoke(main, ["apply", explicit, *api]).output.strip() == "applied: default/later v2"
    shown = cli.invoke(main, ["workflows", "show", "later", *api])
    assert "max_active_runs: 3" in shown.output.splitlines()
    assert "implied" not in shown.output


def test_client_commands_against_a_server(cli: CliRunner, tmp_path: Path, server: str) -> None:
    api = ["--api", server]
    chain = write(tmp_path, "chain.yaml", CHAIN)
    # apply: new, then unchanged
    assert (
        cli.invoke(main, ["apply", chain, *api]).output.strip() == "applied: default/cli_chain v1"
    )
    assert (
        cli.invoke(main, ["apply", chain, *api]).output.strip() == "unchanged: default/cli_chain v1"
    )
    # trigger --wait: the run's JSON and exit 0
    waited = cli.invoke(
        main, ["trigger", "cli_chain", "-p", "word=yo", "--wait", "--output", "json", *api]
    )
    assert waited.exit_code == 0, waited.output
    run = json.loads(waited.output)
    run_id = run["run"]["id"]
    assert run["tasks"]["shout"]["outputs"] == {"loud": "YO"}
    # runs list / show
    listed = json.loads(cli.invoke(main, ["runs", "list", "--output", "json", *api]).output)
    assert [r["id"] for r in listed["runs"]] == [run_id]
    assert run_id in cli.invoke(main, ["runs", "list", *api]).output
    shown = json.loads(cli.invoke(main, ["runs", "show", run_id, "--output", "json", *api]).output)
    assert shown["run"]["state"] == "succeeded"
    # logs of the latest attempt
    logs = cli.invoke(main, ["logs", run_id, "say", *api])
    assert logs.exit_code == 0
    assert unpid(logs.output) == framed("say", "saying yo\n")
    # run operations: rerun from a task, then mark
    rerun = cli.invoke(main, ["runs", "rerun", run_id, "--from", "shout", *api])
    assert rerun.output.strip() == f"{run_id}: running"
    assert (
        cli.invoke(main, ["runs", "rerun", run_id, "--from", "x", "--failed", *api]).exit_code == 2
    )
    # a failing workflow: trigger --wait exits 1
    cli.invoke(main, ["apply", write(tmp_path, "f.yaml", FAILING), *api])
    failed = cli.invoke(main, ["trigger", "cli_fails", "--wait", *api])
    assert failed.exit_code == 1
    failed_id = json.loads(
        cli.invoke(
            main, ["runs", "list", "--workflow", "cli_fails", "--output", "json", *api]
        ).output
    )["runs"][0]["id"]
    marked = cli.invoke(main, ["runs", "mark", failed_id, "boom", "--state", "succeeded", *api])
    assert marked.output.strip() == f"{failed_id}: succeeded"
    # and back: marked failed, the run ends failed again (no retry, nothing left to run)
    refailed = cli.invoke(main, ["runs", "mark", failed_id, "boom", "--state", "failed", *api])
    assert refailed.output.strip() == f"{failed_id}: failed"
    # conflicts and unknowns are bad input: exit 2 with the server's words
    resumed = cli.invoke(main, ["runs", "resume", failed_id, *api])
    assert resumed.exit_code == 2
    assert "only a paused run can be resumed" in resumed.output
    missing = cli.invoke(main, ["trigger", "no_such_workflow", *api])
    assert missing.exit_code == 2
    assert "not found" in missing.output
    # --run-id: an idempotency key (Airflow's `dags trigger --run-id`); the same key with the
    # same request is that run again, with other params a refusal naming what differs
    keyed = ["trigger", "cli_chain", "--run-id", "nightly-42", "-p", "word=a", *api]
    first = cli.invoke(main, keyed)
    assert first.exit_code == 0, first.output
    assert first.output.strip() == "default.cli_chain.nightly-42"
    assert cli.invoke(main, keyed).output == first.output
    other = cli.invoke(
        main, ["trigger", "cli_chain", "--run-id", "nightly-42", "-p", "word=b", *api]
    )
    assert other.exit_code == 2
    assert "params.word" in other.output
    bad = cli.invoke(main, ["trigger", "cli_chain", "--run-id", "no spaces", *api])
    assert bad.exit_code == 2
    assert "--run-id: " in bad.output  # the option typed, not the body field


def test_client_reports_an_unreachable_server_with_exit_3(cli: CliRunner) -> None:
    result = cli.invoke(main, ["runs", "list", "--api", "http://127.0.0.1:9"])
    assert result.exit_code == 3
    assert "cannot reach the Stratoflow API" in result.output


def test_apply_of_several_files_names_the_one_refused_and_what_was_applied(
    cli: CliRunner, tmp_path: Path, server: str
) -> None:
    first = write(
        tmp_path, "first.yaml", "name: first\ntasks: {a: {type: shell, command: 'true'}}\n"
    )
    refused = write(
        tmp_path,
        "refused.yaml",
        "name: refused\ntasks: {a: {type: shell, command: 'true', pool: no_such_pool}}\n",
    )
    last = write(tmp_path, "last.yaml", "name: last\ntasks: {a: {type: shell, command: 'true'}}\n")
    result = cli.invoke(main, ["apply", first, refused, last, "--api", server])
    assert result.exit_code == 2, result.output
    error = result.output.splitlines()[-1]
    assert error.startswith(f"error: {refused}: "), error
    assert "no_such_pool" in error
    assert error.endswith(f"(applied before it: {first}; not sent: {last})"), error


def test_apply_sends_nothing_when_any_file_is_invalid_by_itself(
    cli: CliRunner, tmp_path: Path, server: str
) -> None:
    """Bad input changes nothing (DESIGN invariant 6): a file the loader refuses on its own
    (a cycle, a typo) is found before any file is sent, so the valid files given with it are
    not applied either; every such file is named, as `validate` names them."""
    good = write(tmp_path, "good.yaml", "name: good\ntasks: {a: {type: shell, command: 'true'}}\n")
    cycle = write(
        tmp_path,
        "cycle.yaml",
        "name: cyc\ntasks:\n  a: {type: shell, command: 'true', depends_on: [b]}\n"
        "  b: {type: shell, command: 'true', depends_on: [a]}\n",
    )
    typo = write(tmp_path, "typo.yaml", "name: typo\ntasks: {a: {type: shell, comand: 'true'}}\n")
    result = cli.invoke(main, ["apply", good, cycle, typo, "--api", server])
    assert result.exit_code == 2, result.output
    assert "applied:" not in result.output
    assert f"error: {cycle}: " in result.output
    assert "cycle: a -> b -> a" in result.output
    assert f"error: {typo}: " in result.output
    assert "unknown field 'comand'" in result.output
    assert "nothing was applied" in result.output.splitlines()[-1]
    shown = cli.invoke(main, ["workflows", "show", "good", "--api", server])
    assert shown.exit_code == 2, shown.output
    assert "not found" in shown.output


def test_apply_of_a_directory_without_workflow_files_exits_2_naming_it(
    cli: CliRunner, tmp_path: Path, server: str
) -> None:
    """`stratoflow apply wrong_dir/` with no workflow file in it (a typo, files named .yml.txt)
    is an error naming the directory, not a silent success that applied nothing."""
    empty = tmp_path / "flows"
    empty.mkdir()
    (empty / "notes.txt").write_text("name: x\n")
    result = cli.invoke(main, ["apply", str(empty), "--api", server])
    assert result.exit_code == 2, result.output
    assert str(empty) in result.output
    assert "no workflow files" in result.output


def test_a_workflow_named_project_slash_name_as_apply_prints_it(
    cli: CliRunner, tmp_path: Path, server: str
) -> None:
    """`apply` prints `analytics/report v1` and a sub-workflow's `workflow:` reads
    `project/name`: the commands that take a workflow's NAME read that form too (it was
    `no route for POST /workflows/analytics/report/runs`, naming no problem)."""
    api = ["--api", server]
    flow = write(
        tmp_path,
        "report.yaml",
        "name: report\nproject: analytics\ntasks: {a: {type: shell, command: 'true'}}\n",
    )
    applied = cli.invoke(main, ["apply", flow, *api])
    assert applied.output.strip() == "applied: analytics/report v1"
    ran = cli.invoke(main, ["trigger", "analytics/report", "--wait", "--output", "json", *api])
    assert ran.exit_code == 0, ran.output
    run = json.loads(ran.output)["run"]
    assert (run["project"], run["workflow"]) == ("analytics", "report")
    shown = cli.invoke(main, ["workflows", "show", "analytics/report", *api])
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("analytics/report v1")
    listed = cli.invoke(
        main, ["runs", "list", "--workflow", "analytics/report", "--output", "json", *api]
    )
    assert [r["id"] for r in json.loads(listed.output)["runs"]] == [run["id"]]
    # a --project that says otherwise is refused, naming both, before anything is sent
    other = cli.invoke(main, ["trigger", "analytics/report", "--project", "sales", *api])
    assert other.exit_code == 2, other.output
    assert "'analytics'" in other.output
    assert "'sales'" in other.output
    bad = cli.invoke(main, ["trigger", "a/b/c", *api])
    assert bad.exit_code == 2, bad.output
    assert "NAME or PROJECT/NAME" in bad.output


def test_runs_list_pages_with_before_and_says_when_there_are_more(
    cli: CliRunner, tmp_path: Path, server: str
) -> None:
    """The API pages runs (`next`, `?before=`); `runs list` showed the newest --limit (at
    most 500) with no sign of the rest and no way to reach them, where `workflows list`
    says `(more: --after NAME)`."""
    api = ["--api", server]
    flow = write(tmp_path, "tick.yaml", "name: tick\ntasks: {a: {type: shell, command: 'true'}}\n")
    assert cli.invoke(main, ["apply", flow, *api]).exit_code == 0
    made = [
        cli.invoke(main, ["trigger", "tick", "--run-id", f"r{i}", *api]).output.strip()
        for i in range(3)
    ]
    first = cli.invoke(main, ["runs", "list", "--limit", "2", *api])
    assert first.exit_code == 0, first.output
    *rows, more = first.output.splitlines()
    assert len(rows) == 2
    assert more.startswith("(more: --before ")
    cursor = more.removeprefix("(more: --before ").removesuffix(")")
    rest = cli.invoke(main, ["runs", "list", "--limit", "2", "--before", cursor, *api])
    assert rest.exit_code == 0, rest.output
    seen = [line.split()[0] for line in [*rows, *rest.output.splitlines()]]
    assert sorted(seen) == sorted(made)
    assert "(more:" not in rest.output


def test_runs_list_of_a_workflow_that_does_not_exist_exits_2_naming_it(
    cli: CliRunner, tmp_path: Path, server: str
) -> None:
    """`runs list --workflow sales_dialy` (a typo) said nothing and exited 0, as a workflow
    without runs does; it is an unknown name, exit 2, as `trigger` says it."""
    api = ["--api", server]
    flow = write(
        tmp_path, "quiet.yaml", "name: quiet\ntasks: {a: {type: shell, command: 'true'}}\n"
    )
    assert cli.invoke(main, ["apply", flow, *api]).exit_code == 0
    never_ran = cli.invoke(main, ["runs", "list", "--workflow", "quiet", *api])
    assert (never_ran.exit_code, never_ran.output) == (0, "")
    typo = cli.invoke(main, ["runs", "list", "--workflow", "quite", *api])
    assert typo.exit_code == 2, typo.output
    assert "workflow 'quite' not found in project 'default'" in typo.output


def test_bad_options_are_named_as_options_not_as_request_fields(
    cli: CliRunner, tmp_path: Path, server: str
) -> None:
    """A refused option is named as the user typed it (`--parallel: ...`), as
    `--logical-date` already was, not as the request field the API checked (`body.parallel`,
    `query.state`, `cursor`)."""
    api = ["--api", server]
    flow = write(tmp_path, "opt.yaml", "name: opt\ntasks: {a: {type: shell, command: 'true'}}\n")
    assert cli.invoke(main, ["apply", flow, *api]).exit_code == 0
    cases = {
        "--parallel": ["backfill", "opt", "--start", "2026-01-01", "--end", "2026-01-02",
                       "--parallel", "0"],
        "--state": ["runs", "list", "--state", "done"],
        "--limit": ["runs", "list", "--limit", "0"],
        "--before": ["runs", "list", "--before", "garbage"],
    }  # fmt: skip
    for flag, args in cases.items():
        result = cli.invoke(main, [*args, *api])
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"error: {flag}: "), result.output


TICKER = """
name: ticker
schedule: {cron: "*/2 * * * *", timezone: Europe/Paris}
tasks: {a: {type: shell, command: 'true'}}
"""


def test_workflows_list_show_pause_and_unpause(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`stratoflow workflows ...` against a served runtime whose cron loop the test ticks on
    a clock it moves: a paused workflow's schedule fires nothing, unpaused it fires again."""
    monkeypatch.delenv("STRATOFLOW_TOKEN", raising=False)
    clock = FakeClock(datetime(2026, 11, 20, 9, 59, 30, tzinfo=UTC))
    runtime = LocalRuntime(tmp_path / "home", clock=clock, cron=True)
    with serving(runtime, readmodel=None) as served:
        api = ["--api", served.url]
        assert runtime.cron is not None

        def fired() -> list[datetime]:
            runs = runtime.store.list_runs(RunQuery(workflow="ticker"))
            return sorted(r.logical_date for r in runs)

        for name, text in (("ticker", TICKER), ("cli_chain", CHAIN), ("cli_fails", FAILING)):
            applied = cli.invoke(main, ["apply", write(tmp_path, f"{name}.yaml", text), *api])
            assert applied.exit_code == 0, applied.output
        runtime.cron.tick(clock.now())  # the schedule is read: first firing at 10:00 UTC
        # list: by name, paged like the API (--limit, then --after the reply's `next`)
        whole = json.loads(cli.invoke(main, ["workflows", "list", "--output", "json", *api]).output)
        assert [w["name"] for w in whole["workflows"]] == ["cli_chain", "cli_fails", "ticker"]
        assert whole["next"] is None
        first = cli.invoke(main, ["workflows", "list", "--limit", "2", *api])
        assert first.exit_code == 0, first.output
        assert first.output.splitlines()[-1] == "(more: --after cli_fails)"
        rest = cli.invoke(
            main, ["workflows", "list", "--after", "cli_fails", "--output", "json", *api]
        )
        assert [w["name"] for w in json.loads(rest.output)["workflows"]] == ["ticker"]
        text = cli.invoke(main, ["workflows", "list", *api]).output.splitlines()
        rows = [re.split(r"\s{2,}", line) for line in text]  # columns: 2 spaces or more
        assert rows == [
            ["NAME", "VERSION", "PAUSED", "SCHEDULE", "LAST RUN", "NEXT RUN"],
            ["cli_chain", "v1", "no", "-", "-", "-"],
            ["cli_fails", "v1", "no", "-", "-", "-"],
            [
                "ticker",
                "v1",
                "no",
                "*/2 * * * * (Europe/Paris)",
                "-",
                "2026-11-20T10:00:00+00:00",
            ],
        ]
        # pause: the API says so, and the schedule fires nothing at 10:00 nor at 10:02
        paused = cli.invoke(main, ["workflows", "pause", "ticker", *api])
        assert (paused.exit_code, paused.output) == (0, "default/ticker: paused\n")
        assert runtime.scheduler.catalog.get_version("default", "ticker").paused
        shown = cli.invoke(main, ["workflows", "show", "ticker", *api])
        assert shown.output.splitlines()[1:] == [
            "schedule: */2 * * * * (Europe/Paris) (paused)",
            "tasks (1): a",
        ]
        clock.current = datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC)
        runtime.cron.tick(clock.now())
        clock.current = datetime(2026, 11, 20, 10, 2, 5, tzinfo=UTC)
        runtime.cron.tick(clock.now())
        assert fired() == []
        # unpause: it fires again (catchup false: the firing due now only, not 10:00)
        unpaused = cli.invoke(main, ["workflows", "unpause", "ticker", "--output", "json", *api])
        assert json.loads(unpaused.output)["paused"] is False
        runtime.cron.tick(clock.now())
        assert fired() == [datetime(2026, 11, 20, 10, 2, tzinfo=UTC)]
        listed = json.loads(
            cli.invoke(main, ["workflows", "list", "--output", "json", *api]).output
        )
        run_id = runtime.store.list_runs(RunQuery(workflow="ticker"))[0].id
        assert listed["workflows"][2]["last_run"]["id"] == run_id
        row = cli.invoke(main, ["workflows", "list", *api]).output.splitlines()[3]
        assert re.split(r"\s{2,}", row)[4] == runtime.store.get_run(run_id).state.value
        # show --version; unknown workflows and versions exit 2 with the server's words
        cli.invoke(main, ["apply", write(tmp_path, "t2.yaml", TICKER + "description: v2\n"), *api])
        v1 = json.loads(
            cli.invoke(
                main, ["workflows", "show", "ticker", "--version", "1", "--output", "json", *api]
            ).output
        )
        assert (v1["version"], v1["description"]) == (1, None)
        latest = cli.invoke(main, ["workflows", "show", "ticker", *api]).output.splitlines()
        assert latest[0].startswith("default/ticker v2 (")
        assert "description: v2" in latest
        nope = "error: workflow 'nope' not found in project 'default'\n"
        for args, said in (
            (["pause", "nope"], nope),
            (["unpause", "nope"], nope),
            (["show", "nope"], nope),
            (["show", "ticker", "--version", "9"], "error: workflow 'ticker' has no version 9\n"),
        ):
            missing = cli.invoke(main, ["workflows", *args, *api])
            assert (missing.exit_code, missing.output) == (2, said), args
        other = cli.invoke(main, ["workflows", "list", "--project", "elsewhere", *api])
        assert other.output == "no workflows in project elsewhere\n"


def _overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one instant."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_run_with_parallelism_runs_at_most_that_many_task_processes_at_once(
    cli: CliRunner, tmp_path: Path
) -> None:
    """Six independent tasks of 0.4 s, `--parallelism 2`: never more than two at once (each
    records when it started and ended), and all succeed; `--parallelism -1` is refused."""
    tasks = "\n".join(
        f"  t{i}:\n    type: shell\n    command: |\n"
        '      echo "start=$(date +%s.%N)" >> "$STRATOFLOW_OUTPUT"\n'
        "      sleep 0.4\n"
        '      echo "end=$(date +%s.%N)" >> "$STRATOFLOW_OUTPUT"'
        for i in range(6)
    )
    path = write(tmp_path, "six.yaml", f"name: six\ntasks:\n{tasks}\n")
    home = str(tmp_path / "home")
    result = cli.invoke(
        main, ["run", path, "--home", home, "--output", "json", "--parallelism", "2"]
    )
    assert result.exit_code == 0, result.output
    outputs = [t["outputs"] for t in json.loads(result.output)["tasks"].values()]
    spans = [(float(o["start"]), float(o["end"])) for o in outputs]
    assert len(spans) == 6
    assert _overlap(spans) == 2
    refused = cli.invoke(main, ["run", path, "--home", home, "--parallelism", "-1"])
    assert refused.exit_code == 2
    assert "-1 is negative" in refused.output


def test_a_python_task_whose_outputs_nest_too_deep_fails_naming_the_limit(
    cli: CliRunner, tmp_path: Path
) -> None:
    """Outputs 900 levels deep left the attempt running for ever, with no process behind it
    (its end could not be masked or reported), and its server could not start again."""
    deep = (
        "name: deep\ntasks:\n  p:\n    type: python\n    code: |\n"
        "      x = []\n      y = x\n      for i in range(900):\n"
        "          z = []\n          y.append(z)\n          y = z\n"
        "      outputs['deep'] = x\n"
    )
    home = str(tmp_path / "home")
    result = cli.invoke(
        main, ["run", write(tmp_path, "deep.yaml", deep), "--home", home, "--output", "json"]
    )
    assert result.exit_code == 1, result.output
    task = json.loads(result.output)["tasks"]["p"]
    assert task["state"] == "failed"
    assert "nested deeper than 64 levels" in task["error"]
    # the home opens again (recovery reads nothing it cannot)
    again = cli.invoke(main, ["run", write(tmp_path, "c.yaml", CHAIN), "--home", home])
    assert again.exit_code == 0, again.output


def test_workflows_show_prints_a_description_s_escape_sequences_escaped(
    cli: CliRunner, tmp_path: Path, server: str
) -> None:
    """A description is the applier's text; printed raw, its escape sequences retitled,
    cleared or rewrote the terminal of whoever ran `workflows show` (newlines stay)."""
    source = json.dumps(
        {
            "name": "ansi",
            "description": "line one\nsee \x1b]0;pwned\x07\x1b[2Jhere \x9b1m",
            "tasks": {"a": {"type": "shell", "command": "true"}},
        }
    )
    path = write(tmp_path, "ansi.json", source)
    assert cli.invoke(main, ["apply", path, "--api", server]).exit_code == 0
    shown = cli.invoke(main, ["workflows", "show", "ansi", "--api", server]).output
    for raw in ("\x1b", "\x9b", "\x07"):
        assert raw not in shown
    assert "line one\nsee \\x1b]0;pwned\\x07\\x1b[2Jhere \\x9b1m" in shown


def test_a_signal_ignored_by_the_shell_stays_ignored(
    cli: CliRunner, tmp_path: Path, handlers_kept: None
) -> None:
    """A shell starts a background job (`stratoflow run ... &`) with SIGINT ignored: the run
    must not start taking it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    flow = write(tmp_path, "q.yaml", "name: q\ntasks:\n  a: {type: shell, command: 'true'}\n")
    seen: list[Any] = []
    real = Scheduler.trigger

    def trigger(self: Scheduler, *args: Any, **kwargs: Any) -> Any:
        seen.append(signal.getsignal(signal.SIGINT))
        return real(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Scheduler, "trigger", trigger)
        result = cli.invoke(main, ["run", flow, "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    assert seen == [signal.SIG_IGN]
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
