"""A log of an attempt given secrets is masked in place with the values it was given, whatever
dies on the way (invariant: nothing is lost when a process dies or a write fails).

GIVEN an attempt given two secrets, which prints both,
WHEN  the executor (in process) or the server's process (SIGKILL) stops at a point between the
      attempt's start and the masking of its log, a write on the way fails, or the attempt
      runs across a restart, and the secrets are rotated or deleted meanwhile,
THEN  once a scheduler runs again on the home the log holds ``*`` where each value was, and no
      old value is left in any file of the home; the values awaiting a mask are kept only in
      a private file of the home (0600, in a 0700 directory), and only until the log is masked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from stratoflow.adapters.local import executor as executor_module
from stratoflow.adapters.local.executor import LocalExecutor, live_wrappers
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.adapters.local.secrets import LocalSecrets
from stratoflow.cli import main
from stratoflow.engine import AttemptStatus, RenderedTask, RunState, TaskInstance, TaskState
from stratoflow.ports import AttemptSpec
from tests.e2e.server_process import ServerProcess
from tests.e2e.test_runtime import finish
from tests.logframe import pid_of
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
RUN = "p.r1"
OLD_PW, NEW_PW, OLD_GONE = "old-value-of-pw-1234", "new-value-of-pw-5678", "old-value-of-gone-99"
PRINTED = f"pw={'*' * len(OLD_PW)} gone={'*' * len(OLD_GONE)}"
PENDING = "pending-masks"  # where the home keeps the values of the logs still to mask


def _command(flag: Path) -> str:
    """Print both values, wait for ``flag``, print them again."""
    return (
        'echo "pw=$PW gone=$GONE"\n'
        f"while [ ! -e {flag} ]; do sleep 0.02; done\n"
        'echo "again pw=$PW gone=$GONE"\n'
    )


def _spec(flag: Path, task: str = "t", env: dict[str, str] | None = None) -> AttemptSpec:
    env = {"PW": "{{ secrets.pw }}", "GONE": "{{ secrets.gone }}"} if env is None else env
    return AttemptSpec(
        RUN, task, 1, RenderedTask("shell", {"command": _command(flag)}, {}, env),
        datetime(2026, 12, 7, tzinfo=UTC), "wf", "p",
    )  # fmt: skip


def _secrets(home: Path, project: str = "p") -> LocalSecrets:
    secrets = LocalSecrets(home)
    secrets.put(project, "pw", OLD_PW)
    secrets.put(project, "gone", OLD_GONE)
    return secrets


def _rotate(home: Path, project: str = "p") -> None:
    """What an operator does once a task used them: one rotated, one deleted."""
    secrets = LocalSecrets(home)
    secrets.put(project, "pw", NEW_PW)
    secrets.delete(project, "gone")


def _executor(tmp_path: Path, reports: list[tuple[Any, ...]] | None = None) -> LocalExecutor:
    """An executor on the test's home as a (re)started scheduler makes it, resolving from the
    home's secrets; what it reports goes to ``reports``."""
    home = tmp_path / "home"
    return LocalExecutor(
        home / "logs",
        (lambda *_: None) if reports is None else (lambda *a: reports.append(a)),
        work_root=tmp_path / "work",
        protect=home,
        secrets=LocalSecrets(home),
    )


def _old_values_in(home: Path) -> list[str]:
    """The files of the home holding an old value (raw bytes: every file kept)."""
    return [
        str(path)
        for path in home.rglob("*")
        if path.is_file() and any(v.encode() in path.read_bytes() for v in (OLD_PW, OLD_GONE))
    ]


def _masked(log: Path) -> bool:
    text = log.read_text()
    return OLD_PW not in text and OLD_GONE not in text


def _kill_groups(*pgids: int) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _kill_attempts(root: Path) -> None:
    """What a failed test must not leave running."""
    _kill_groups(*live_wrappers(root).values())


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    _secrets(home)
    yield home
    _kill_attempts(home / "logs")
    _kill_attempts(home / "attempts")


# ------------------------------------------------------------ the executor, in process
def test_an_executor_closed_before_its_reaper_masked_leaves_the_mask_to_the_next_start(
    tmp_path: Path, home: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pending masks were held in memory only: an end reported (and recorded), then the
    process gone before the reaper's round, left the log unmasked for good."""
    flag = shared_dir / "go"
    flag.touch()
    reports: list[tuple[Any, ...]] = []
    first = _executor(tmp_path, reports)
    monkeypatch.setattr(first, "_mask_logs", lambda: None)  # its reaper never masks
    first.dispatch(_spec(flag))
    assert wait_for(lambda: reports, timeout=20)  # the end reported: the scheduler records it
    first.close()
    log = first.log_path(RUN, "t", 1)
    assert OLD_PW in log.read_text()  # as the process left it
    _rotate(home)
    second = _executor(tmp_path)
    try:
        second.recover([])  # its end was recorded: not a running attempt any more
        assert wait_for(lambda: _masked(log), timeout=10), log.read_text()
    finally:
        second.close()
    assert PRINTED in log.read_text()
    assert _old_values_in(home) == []


def test_a_failed_mask_keeps_what_it_needs_and_the_next_start_masks_the_log(
    tmp_path: Path, home: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write of the masking that fails (an I/O error) was logged and forgotten."""
    flag = shared_dir / "go"
    flag.touch()
    reports: list[tuple[Any, ...]] = []
    tried: list[str] = []

    def failing(path: str, *args: Any, **kwargs: Any) -> bool:
        tried.append(path)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(executor_module, "mask_log_file", failing)
    first = _executor(tmp_path, reports)
    first.dispatch(_spec(flag))
    assert wait_for(lambda: reports and tried, timeout=20)
    first.close()
    monkeypatch.undo()
    log = first.log_path(RUN, "t", 1)
    assert OLD_PW in log.read_text()
    _rotate(home)
    second = _executor(tmp_path)
    try:
        second.recover([])
        assert wait_for(lambda: _masked(log), timeout=10), log.read_text()
    finally:
        second.close()
    assert PRINTED in log.read_text()
    assert _old_values_in(home) == []


@pytest.mark.parametrize("ends", ["after_the_restart", "while_down"])
def test_an_attempt_running_across_a_restart_is_masked_with_the_values_it_was_given(
    tmp_path: Path, home: Path, shared_dir: Path, ends: str
) -> None:
    """An attempt started by one executor and ended under the next (adopted: its wrapper
    still ran at recovery) or while none ran (recovery reads its end from its log) was
    not masked in place: the values it was given were known to the first executor only."""
    flag = shared_dir / "go"
    first = _executor(tmp_path)
    log = first.log_path(RUN, "t", 1)
    try:
        first.dispatch(_spec(flag))
        assert wait_for(lambda: log.exists() and "pw=" in log.read_text(), timeout=20)
    finally:
        first.close()  # the task runs on
    if ends == "while_down":
        flag.touch()
        assert wait_for(lambda: "exited with code" in log.read_text(), timeout=20)
    _rotate(home)  # while it runs, or once it ended: the log was given the old values
    reports: list[tuple[Any, ...]] = []
    second = _executor(tmp_path, reports)
    try:
        report = second.recover([TaskInstance(RUN, "t", TaskState.RUNNING, attempt=1)])
        if ends == "after_the_restart":
            assert report.results == {}
            assert report.not_started == []
            flag.touch()
            assert wait_for(lambda: reports, timeout=20)
            result = reports[0][3]
        else:
            result = report.results[(RUN, "t", 1)]
        assert result.status is AttemptStatus.SUCCEEDED
        assert wait_for(lambda: _masked(log), timeout=10), log.read_text()
    finally:
        second.close()
    text = log.read_text()
    assert PRINTED in text
    assert f"again {PRINTED}" in text
    assert _old_values_in(home) == []


def test_a_close_within_a_stopped_attempt_s_grace_still_masks_its_log(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped attempt's log is masked once its group is gone; an executor closed during
    the grace period sent the group its SIGKILL and dropped the mask (``stratoflow run``
    ends so, and a server that stops)."""
    # a grace the leftover's "late" line (0.5 s after its trap) fits in on a loaded machine
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", 3.0)
    reports: list[tuple[Any, ...]] = []
    first = _executor(tmp_path, reports)
    spec = AttemptSpec(
        RUN, "t", 1,
        RenderedTask("shell", {"command": (
            'echo "pw=$PW"\n(trap "" TERM; echo armed; sleep 0.5; echo "late $PW"; sleep 30) &\n'
            'sleep 30\n'
        )}, {}, {"PW": "{{ secrets.pw }}"}),
        datetime(2026, 12, 7, tzinfo=UTC), "wf", "p",
    )  # fmt: skip
    log = first.log_path(RUN, "t", 1)
    try:
        first.dispatch(spec)
        # the leftover ignores TERM before the stop: a stop sent before its trap killed it
        assert wait_for(lambda: log.exists() and "armed" in log.read_text(), timeout=20)
        first.kill(RUN, "t", 1)
        assert wait_for(lambda: reports, timeout=10)  # the wrapper ended; its group lives on
        assert wait_for(lambda: "late" in log.read_text(), timeout=10)
    finally:
        first.close()  # within the grace: its SIGKILL, then the mask
    _rotate(home)
    text = log.read_text()
    assert OLD_PW not in text, text
    assert f"late {'*' * len(OLD_PW)}" in text


def test_a_stopped_attempt_s_leftover_still_writing_at_a_crash_is_killed_then_its_log_masked(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A scheduler killed within a stopped attempt's grace never sends its SIGKILL: what
    the group left writes on, the value it was given among it. The next start kills it
    (the attempt has ended) before it masks the log, so nothing unmasked follows."""
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", 60.0)
    reports: list[tuple[Any, ...]] = []
    first = _executor(tmp_path, reports)
    spec = AttemptSpec(
        RUN, "t", 1,
        RenderedTask("shell", {"command": (
            'echo "pw=$PW"\n'
            '(trap "" TERM; while true; do echo "late $PW"; sleep 0.05; done) &\nsleep 30\n'
        )}, {}, {"PW": "{{ secrets.pw }}"}),
        datetime(2026, 12, 7, tzinfo=UTC), "wf", "p",
    )  # fmt: skip
    log = first.log_path(RUN, "t", 1)
    first.dispatch(spec)
    assert wait_for(lambda: log.exists() and "late" in log.read_text(), timeout=20)
    request.addfinalizer(lambda: _kill_groups(pid_of(log.read_text())))  # (on failure)
    first.kill(RUN, "t", 1)
    assert wait_for(lambda: reports, timeout=10)  # the wrapper ended (its end is recorded)
    # WHEN it dies there: no SIGKILL sent, no mask made
    monkeypatch.setattr(first, "_finish_kills", lambda: None)
    monkeypatch.setattr(first, "_mask_logs", lambda: None)
    first.close()
    for ending in first._ending.values():  # the dead scheduler's timer must not fire later
        for killed in ending.groups.values():
            if killed.pidfd is not None:
                os.close(killed.pidfd)
    first._ending.clear()
    size = log.stat().st_size
    assert wait_for(lambda: log.stat().st_size > size)  # what it left writes on
    _rotate(home)
    second = _executor(tmp_path)
    try:
        second.recover([])  # stopped: not running
        assert wait_for(lambda: _masked(log), timeout=10), log.read_text()[-300:]
    finally:
        second.close()
    time.sleep(0.3)
    text = log.read_text()
    assert OLD_PW not in text, text[-300:]
    assert f"late {'*' * len(OLD_PW)}" in text


def test_the_values_awaiting_a_mask_are_kept_in_a_private_file_of_the_home_only_until_masked(
    tmp_path: Path, home: Path, shared_dir: Path
) -> None:
    """The values an attempt was given are kept, from before its task starts until its log is
    masked, in a file of the home only its owner can read (as the secrets files are): never
    in a log, the work dir or the state. An attempt given no secret keeps none."""
    flag = shared_dir / "go"
    reports: list[tuple[Any, ...]] = []
    ex = _executor(tmp_path, reports)
    pending = home / PENDING
    try:
        ex.dispatch(_spec(flag, task="plain", env={}))
        ex.dispatch(_spec(flag))
        log = ex.log_path(RUN, "t", 1)
        assert wait_for(lambda: log.exists() and "pw=" in log.read_text(), timeout=20)
        assert ex.log_path(RUN, "plain", 1).exists()
        # WHILE it runs: one record, the given attempt's, 0600 in a 0700 directory
        assert stat.S_IMODE(pending.stat().st_mode) == 0o700
        (record,) = pending.iterdir()
        st = record.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.geteuid()
        assert OLD_PW.encode() in record.read_bytes()
        assert OLD_GONE.encode() in record.read_bytes()
        secrets_file = home / "secrets" / "p.json"
        assert sorted(_old_values_in(home)) == sorted(map(str, [record, log, secrets_file]))
        flag.touch()
        assert wait_for(lambda: len(reports) == 2, timeout=20)
        # THEN once it ended and its log is masked, the record is gone
        assert wait_for(lambda: not any(pending.iterdir()), timeout=10)
        assert _masked(log)
    finally:
        ex.close()
    _rotate(home)
    assert _old_values_in(home) == []


def test_a_record_that_cannot_be_written_keeps_the_task_from_starting(
    tmp_path: Path, home: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its record a log could not be masked after a crash: a task given secrets does
    not start when it cannot be written (the disk is full), and fails saying why; a task given
    none needs no record and runs."""
    from stratoflow.adapters.local import masks

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(masks.PendingMasks, "add", full)
    ran = shared_dir / "ran"
    reports: list[tuple[Any, ...]] = []
    ex = _executor(tmp_path, reports)
    try:
        given = _spec(shared_dir / "go", task="given")
        given = AttemptSpec(
            given.run_id, given.task_id, given.attempt,
            RenderedTask("shell", {"command": f"touch {ran}"}, {}, given.task.env),
            given.logical_date, given.workflow, given.project,
        )  # fmt: skip
        ex.dispatch(given)
        ex.dispatch(
            AttemptSpec(
                RUN,
                "plain",
                1,
                RenderedTask("shell", {"command": "echo fine"}, {}, {}),
                given.logical_date,
                "wf",
                "p",
            )
        )
        assert wait_for(lambda: len(reports) == 2, timeout=20)
    finally:
        ex.close()
    results = {r[1]: r[3] for r in reports}
    assert results["given"].status is AttemptStatus.FAILED
    assert results["given"].retryable
    assert "no space left on device" in (results["given"].error or "")
    assert not ran.exists()
    assert results["plain"].status is AttemptStatus.SUCCEEDED


# ------------------------------------------------------------ the server's process, killed
WORKFLOW = """
name: given
project: p
tasks:
  t:
    type: shell
    retries: 0
    env: {{PW: "{{{{ secrets.pw }}}}", GONE: "{{{{ secrets.gone }}}}"}}
    command: |
{command}
"""


def _said(said: Path, what: str) -> str | None:
    path = said / what
    return path.read_text() if path.exists() else None


@pytest.mark.parametrize(
    "point", ["running", "claimed", "reported", "recorded", "masking", "masked"]
)
def test_a_server_killed_at_any_point_before_the_mask_masks_the_log_when_it_starts_again(
    tmp_path: Path, home: Path, shared_dir: Path, point: str
) -> None:
    """A real process, killed (SIGKILL) at ``point`` (tests/e2e/mask_crash_child.py): while the
    task runs (it then ends after the restart), after the claim but before the task
    started (it starts again), once its end was handed to the scheduler but not recorded,
    once recorded but not masked, halfway through the masking, and once masked. A
    scheduler started again on the home masks the log with the old values."""
    flag = shared_dir / "go"
    if point != "running":
        flag.touch()  # it ends at once
    workflow = tmp_path / "given.yaml"
    indented = "".join(f"      {line}\n" for line in _command(flag).splitlines())
    workflow.write_text(WORKFLOW.format(command=indented))
    said = tmp_path / "said"
    said.mkdir()
    out = (tmp_path / "child.log").open("wb")
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.mask_crash_child", str(home), str(workflow), point,
         str(said)],
        cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        waits = {"running": "running", "reported": "reported", "recorded": "recorded"}
        if point in waits:
            assert wait_for(lambda: _said(said, waits[point]), timeout=60), (
                tmp_path / "child.log"
            ).read_text()
            child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "child.log").read_text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        out.close()
    run_id = _run_id(home)
    log = home / "attempts" / run_id / "t.1.log"
    # as the process left it: the task never started, masked in part, masked, or not at all
    text = log.read_text() if log.exists() else ""
    left = {"claimed": (), "masking": (OLD_PW,), "masked": ()}.get(point, (OLD_PW, OLD_GONE))
    assert [v for v in (OLD_PW, OLD_GONE) if v in text] == list(left), text
    if point != "claimed":  # (its task starts again: with the values of that start)
        _rotate(home)
    rt = LocalRuntime(home)
    try:
        if point == "running":
            flag.touch()  # it ends under the new scheduler
        assert finish(rt, run_id) is RunState.SUCCEEDED
        if point == "claimed":
            _rotate(home)
        assert wait_for(lambda: _masked(log), timeout=10), log.read_text()
        assert PRINTED in log.read_text()
    finally:
        rt.close()
    assert _old_values_in(home) == []
    assert not any((home / PENDING).iterdir()) if (home / PENDING).exists() else True


def _run_id(home: Path) -> str:
    (run_dir,) = (home / "attempts").iterdir()
    return run_dir.name


def _port() -> int:
    """A free port among those this machine's tests may use (8700-8749)."""
    for port in range(8700, 8750):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8700-8749")


def test_an_attempt_running_across_a_server_restart_is_masked_in_place_at_its_end(
    tmp_path: Path, shared_dir: Path
) -> None:
    """End to end, with ``stratoflow server``: a task given two secrets prints them, the
    server is killed (SIGKILL) and started again while the task runs, the secrets are
    rotated and deleted through the CLI, then the task prints them again and ends. Its log
    (the file, and what ``stratoflow logs`` shows) holds ``*`` for every value it was given;
    no file of the home holds an old one."""
    flag = shared_dir / "go"
    server = ServerProcess(tmp_path / "home", port=_port())
    server.start()

    def cli(*args: str, stdin: str | None = None) -> str:
        result = CliRunner().invoke(
            main, [*args, "--api", server.url], input=stdin,
            env={"STRATOFLOW_TOKEN": server.token},
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return result.output

    try:
        cli("secrets", "set", "pw", "--project", "p", stdin=OLD_PW)
        cli("secrets", "set", "gone", "--project", "p", stdin=OLD_GONE)
        workflow = tmp_path / "given.yaml"
        indented = "".join(f"      {line}\n" for line in _command(flag).splitlines())
        workflow.write_text(WORKFLOW.format(command=indented))
        cli("apply", str(workflow))
        run_id = cli("trigger", "given", "--project", "p").strip()
        log = server.home / "attempts" / run_id / "t.1.log"
        assert wait_for(lambda: log.exists() and "pw=" in log.read_text(), timeout=60)
        server.kill()  # SIGKILL: no shutdown code runs; the task runs on
        server.start()
        cli("secrets", "set", "pw", "--project", "p", stdin=NEW_PW)
        cli("secrets", "delete", "gone", "--project", "p")
        flag.touch()

        def state() -> str:
            got = httpx.get(f"{server.url}/runs/{run_id}", headers=server.headers, timeout=10)
            return str(got.json()["run"]["state"])

        assert wait_for(lambda: state() == "succeeded", timeout=60), state()
        assert wait_for(lambda: _masked(log), timeout=10), log.read_text()
        text = log.read_text()
        assert PRINTED in text
        assert f"again {PRINTED}" in text
        shown = cli("logs", run_id, "t")
        assert PRINTED in shown
        assert f"again {PRINTED}" in shown
    finally:
        server.stop()
        _kill_attempts(server.home / "attempts")
    assert _old_values_in(server.home) == []
