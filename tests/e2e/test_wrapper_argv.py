"""A local task's wrapper carries no name in its command line, and is still found by recovery.

Any process reads any other's /proc/PID/cmdline: a wrapper's named its run's directory in the
home and its <task>.<attempt>, so a task of one project listed the runs, tasks and home of
every other project's running tasks. It carries an opaque token now (wrapper_tokens)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.local import executor as executor_module
from stratoflow.adapters.local import wrapper_tokens
from stratoflow.adapters.local.executor import LocalExecutor
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.engine import AttemptStatus, RunState
from tests.e2e.test_exit_record import RUN, _executor, _running, _spec, _until
from tests.e2e.test_runtime import finish, start
from tests.logframe import pid_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# names no other process on the machine is likely to hold
PROJECT_B, WORKFLOW_B, TASK_B = "projbzq", "beeflowzq", "sleeperzq"

LOGS = "/srv/home/logs"  # an attempts root, as the executor names its own (resolved)

SCAN = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\"; echo; done 2>/dev/null"


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _wait_started(log: Path) -> int:
    """The wrapper's pid, once the attempt's log says it started."""
    _until(lambda: log.exists() and b", pid " in log.read_bytes())
    return pid_of(log.read_text())


def test_a_task_reading_every_command_line_finds_no_name_of_another_project_s_task(
    tmp_path: Path, shared_dir: Path
) -> None:
    release, ready = shared_dir / "release", shared_dir / "ready"
    home = tmp_path / "home"
    rt = LocalRuntime(home)
    try:
        # GIVEN tasks of project B running: a shell one and a python one (whose runner, a
        # child of the wrapper, was given its spec file's path, which names both)
        b_run = start(
            rt,
            f"name: {WORKFLOW_B}\nproject: {PROJECT_B}\ntasks:\n"
            f"  {TASK_B}: {{type: shell, command: 'until [ -e {release} ]; do sleep 0.05; done'}}\n"
            f"  py{TASK_B}:\n    type: python\n    code: |\n"
            f"      import os, time\n"
            f"      open({str(ready)!r}, 'w').close()\n"
            f"      while not os.path.exists({str(release)!r}): time.sleep(0.05)\n",
        )
        logs = [rt.executor.log_path(b_run, task, 1) for task in (TASK_B, f"py{TASK_B}")]
        rt.run_until(
            lambda: (
                ready.exists()  # the python one's runner runs its code
                and all(log.exists() and b", pid " in log.read_bytes() for log in logs)
            )
        )
        # WHEN a task of project A reads the command line of every process
        a_run = start(
            rt, f"name: ayflow\nproject: proja\ntasks:\n  scan:\n    type: shell\n"
            f"    command: |\n      {SCAN}\n",
        )  # fmt: skip
        assert finish(rt, a_run) is RunState.SUCCEEDED
        (attempt,) = rt.store.list_attempts(a_run, "scan")
        out = Path(attempt.log or "").read_text()
        release.touch()
        assert finish(rt, b_run) is RunState.SUCCEEDED
    finally:
        release.touch()
        rt.close()
    # THEN it saw B's wrappers (and its own) and B's runner, and nothing that names B, its
    # run, its tasks or the home
    wrappers = [line for line in out.splitlines() if f" {executor_module.WRAPPER_NAME} " in line]
    assert len(wrappers) >= 3, out
    assert any("-m stratoflow.taskexec.taskrunner" in line for line in out.splitlines()), out
    for secret in (b_run, PROJECT_B, WORKFLOW_B, TASK_B, str(home), str(home.resolve())):
        assert secret not in out, (secret, [line for line in out.splitlines() if secret in line])


def test_a_restarted_executor_adopts_a_running_wrapper_by_its_token_alone(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token is all recovery needs: a wrapper whose environment it cannot read (another
    uid's, a process not dumpable) is found by the token of the attempt the store says runs."""
    release = shared_dir / "release"
    first = _executor(tmp_path)
    log = first.log_path(RUN, "t", 1)
    try:
        first.dispatch(_spec("t", f"until [ -e {release} ]; do sleep 0.05; done; exit 3"))
        pid = _wait_started(log)
    finally:
        first.close()  # the task runs on
    try:
        argv = _cmdline(pid)
        assert argv[-2] == executor_module.WRAPPER_NAME
        assert wrapper_tokens.is_token(argv[-1]), argv[-1]
        assert not any(RUN in arg or "t.1" in arg or str(tmp_path) in arg for arg in argv), argv
        monkeypatch.setattr(executor_module, "_leader_environ", lambda _pid: None)
        reports: list[tuple[Any, ...]] = []
        second = _executor(tmp_path, reports)
        try:
            report = second.recover([_running("t")])
            assert (report.results, report.not_started) == ({}, [])  # adopted, not LOST
            release.touch()
            _until(lambda: bool(reports))
        finally:
            second.close()
        result = reports[0][3]
        assert (result.status, result.exit_code) == (AttemptStatus.FAILED, 3)
    finally:
        release.touch()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def test_a_wrapper_started_by_an_earlier_version_with_names_in_its_argv_is_still_adopted(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server upgraded while tasks ran: their wrappers carry the run dir and the attempt's
    name (the earlier form), and the new server still finds and watches them."""
    release = shared_dir / "release"
    old_wrapper = executor_module.WRAPPER.replace(
        '"$STRATOFLOW_TASK_ID" __stratoflow_attempt="$STRATOFLOW_ATTEMPT"',
        '"${2%.*}" __stratoflow_attempt="${2##*.}"',
    )
    assert old_wrapper != executor_module.WRAPPER
    with monkeypatch.context() as earlier:
        earlier.setattr(executor_module, "WRAPPER", old_wrapper)
        earlier.setattr(
            executor_module.LocalExecutor,
            "_wrapper_args",
            lambda self, run_id, name: [
                executor_module.WRAPPER_NAME, self._run_text(run_id), name
            ],
        )  # fmt: skip
        first = _executor(tmp_path)
        log = first.log_path(RUN, "t", 1)
        try:
            first.dispatch(_spec("t", f"until [ -e {release} ]; do sleep 0.05; done; exit 4"))
            pid = _wait_started(log)
        finally:
            first.close()
    try:
        assert _cmdline(pid)[-2:] == [str(first.root / RUN), "t.1"]
        monkeypatch.setattr(executor_module, "_leader_environ", lambda _pid: None)
        reports: list[tuple[Any, ...]] = []
        second = _executor(tmp_path, reports)
        try:
            report = second.recover([_running("t")])
            assert (report.results, report.not_started) == ({}, [])
            release.touch()
            _until(lambda: bool(reports))
        finally:
            second.close()
        result = reports[0][3]
        assert (result.status, result.exit_code) == (AttemptStatus.FAILED, 4)
        assert "[stratoflow] task t attempt 1 exited with code 4" in log.read_text()
    finally:
        release.touch()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def test_the_wrapper_key_is_made_once_private_to_the_server_and_a_bad_one_is_named(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert wrapper_tokens.WrapperTokens.read(home, LOGS) is None  # none yet: nothing is made
    tokens = wrapper_tokens.WrapperTokens.of_home(home, LOGS)
    key = home / wrapper_tokens.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == wrapper_tokens.KEY_BYTES
    again = wrapper_tokens.WrapperTokens.of_home(home, LOGS)  # kept, not made anew
    assert again.token(RUN, "t.1") == tokens.token(RUN, "t.1") != tokens.token(RUN, "t.2")
    assert [p.name for p in home.iterdir()] == [wrapper_tokens.KEY_FILE]  # no temporary left
    # a key in another home makes other tokens
    other = tmp_path / "other"
    other.mkdir()
    assert wrapper_tokens.WrapperTokens.of_home(other, LOGS).token(RUN, "t.1") != tokens.token(
        RUN, "t.1"
    )
    # and the same key under another attempts root too (a copy of the home holds the key)
    copied = wrapper_tokens.WrapperTokens.of_home(home, "/elsewhere/home/logs")
    assert copied.token(RUN, "t.1") != tokens.token(RUN, "t.1")
    key.write_bytes(b"short")
    with pytest.raises(ValueError, match="holds 5 bytes, not the 32 of a wrapper key"):
        wrapper_tokens.WrapperTokens.of_home(home, LOGS)


def test_the_wrapper_key_is_made_where_hard_links_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home on a file system without hard links still gets its key (renamed into place)."""

    def refuse(*_: Any, **__: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    tokens = wrapper_tokens.WrapperTokens.of_home(tmp_path, LOGS)
    key = tmp_path / wrapper_tokens.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [wrapper_tokens.KEY_FILE]
    assert wrapper_tokens.WrapperTokens.of_home(tmp_path, LOGS).token(RUN, "t.1") == tokens.token(
        RUN, "t.1"
    )


def test_a_copy_of_a_home_neither_kills_nor_adopts_the_wrappers_of_the_home_it_copies(
    tmp_path: Path, shared_dir: Path
) -> None:
    """A home copied beside the one in use (a backup restored to check it, a staging copy)
    holds the same key. Its server took the original's running wrappers for its own: it
    killed, as stopped while it was down, each of an attempt its store did not list, and
    adopted (watched, and would have stopped) each of an attempt it did list. The command
    line that named the run's directory told the two homes apart; the token must too."""
    release = shared_dir / "release"
    reports: list[tuple[Any, ...]] = []
    first = _executor(tmp_path, reports)
    log = first.log_path(RUN, "t", 1)
    pid = 0
    try:
        first.dispatch(_spec("t", f"until [ -e {release} ]; do sleep 0.05; done; exit 5"))
        pid = _wait_started(log)
        copy = tmp_path / "copy"
        shutil.copytree(tmp_path / "home", copy / "home", symlinks=True)
        second = LocalExecutor(
            copy / "home" / "logs", lambda *_: None, work_root=copy / "work",
            protect=copy / "home",
        )  # fmt: skip
        try:
            # WHEN the copy's server recovers: its store lists the attempt, then not
            listed = second.recover([_running("t")])
            unlisted = second.recover([])
        finally:
            second.close()
        # THEN the copy's attempt is its own (it finds no wrapper of its own: LOST), and the
        # original's task runs on, to be reported by its own executor
        assert list(listed.results) == [(RUN, "t", 1)], listed  # not adopted
        assert listed.results[RUN, "t", 1].status is AttemptStatus.LOST
        assert (unlisted.results, unlisted.not_started) == ({}, [])
        time.sleep(0.2)  # (a SIGKILL sent would have landed)
        assert _cmdline(pid)[-2] == executor_module.WRAPPER_NAME
        release.touch()
        _until(lambda: bool(reports))
        result = reports[0][3]
        assert (result.status, result.exit_code) == (AttemptStatus.FAILED, 5)
    finally:
        release.touch()
        first.close()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_a_temporary_key_file_left_by_a_crash_does_not_stop_a_later_start(
    tmp_path: Path,
) -> None:
    """A start that died while making the key (its first) left its temporary file, named by
    its pid; a later start given the same pid (a container's server: always the same one)
    could make no key, and the executor none: the server never started again."""
    home = tmp_path / "home"
    home.mkdir()
    stale = home / f".{wrapper_tokens.KEY_FILE}.{os.getpid()}.tmp"
    stale.write_bytes(b"half")
    _executor(tmp_path).close()  # (it made the key: no wrapper of the home runs yet)
    assert len((home / wrapper_tokens.KEY_FILE).read_bytes()) == wrapper_tokens.KEY_BYTES


def test_a_wrapper_started_under_a_key_since_deleted_is_still_adopted(
    tmp_path: Path, shared_dir: Path
) -> None:
    """The key removed (or replaced) while tasks ran: the restarted executor makes a new one,
    under which the running wrappers' tokens name nothing; it finds each by the pid its log
    names and the environment it was started with, adopts it and reports its own end."""
    release = shared_dir / "release"
    first = _executor(tmp_path)
    log = first.log_path(RUN, "t", 1)
    try:
        first.dispatch(_spec("t", f"until [ -e {release} ]; do sleep 0.05; done; exit 6"))
        pid = _wait_started(log)
    finally:
        first.close()  # the task runs on
    try:
        (tmp_path / "home" / wrapper_tokens.KEY_FILE).unlink()
        reports: list[tuple[Any, ...]] = []
        second = _executor(tmp_path, reports)
        try:
            report = second.recover([_running("t")])
            assert (report.results, report.not_started) == ({}, [])  # adopted, not LOST
            release.touch()
            _until(lambda: bool(reports))
        finally:
            second.close()
        result = reports[0][3]
        assert (result.status, result.exit_code) == (AttemptStatus.FAILED, 6)
    finally:
        release.touch()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _orphaned_with_a_forger(tmp_path: Path, command: str) -> tuple[int, subprocess.Popen[bytes]]:
    """An attempt started by an executor that then closed (it runs on), and a process of a
    session of its own whose command line copies its wrapper's, started after it (any
    process reads a command line: a task of another project needs no key to copy one)."""
    first = _executor(tmp_path)
    try:
        first.dispatch(_spec("t", command))
        pid = _wait_started(first.log_path(RUN, "t", 1))
    finally:
        first.close()
    forger = subprocess.Popen(
        ["bash", "-c", "sleep 60; exit 0", *_cmdline(pid)[-2:]], start_new_session=True
    )
    _until(lambda: _cmdline(forger.pid)[-2:] == _cmdline(pid)[-2:])
    return pid, forger


def _end(pid: int, forger: subprocess.Popen[bytes]) -> None:
    forger.kill()
    forger.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def test_a_restart_adopts_the_wrapper_not_a_process_carrying_a_copy_of_its_token(
    tmp_path: Path, shared_dir: Path
) -> None:
    """The restarted executor took the copy, found after the wrapper, for the attempt's
    wrapper and watched it: the attempt ended when the copy did (LOST) and ran again beside
    the real one, which nothing watched. The wrapper is the process its log names."""
    release = shared_dir / "release"
    pid, forger = _orphaned_with_a_forger(
        tmp_path, f"until [ -e {release} ]; do sleep 0.05; done; exit 7"
    )
    try:
        reports: list[tuple[Any, ...]] = []
        second = _executor(tmp_path, reports)
        try:
            report = second.recover([_running("t")])
            assert (report.results, report.not_started) == ({}, [])  # adopted
            release.touch()
            _until(lambda: bool(reports), timeout=10)  # (the copy runs 60 s)
        finally:
            second.close()
        result = reports[0][3]
        assert (result.status, result.exit_code) == (AttemptStatus.FAILED, 7)
        assert forger.poll() is None  # untouched
    finally:
        release.touch()
        _end(pid, forger)


def test_a_stop_after_a_restart_reaches_the_wrapper_not_a_process_carrying_its_token(
    tmp_path: Path,
) -> None:
    """A stop of an attempt the executor does not hold (started before a restart) finds its
    wrapper by the token: it signalled the copy, and the task ran on."""
    pid, forger = _orphaned_with_a_forger(tmp_path, "sleep 60")
    try:
        second = _executor(tmp_path)
        try:
            second.kill(RUN, "t", 1)
            _until(lambda: not Path(f"/proc/{pid}/cmdline").read_bytes(), timeout=10)
        finally:
            second.close()
        assert forger.poll() is None  # untouched
    finally:
        _end(pid, forger)


def test_a_home_moved_while_a_task_ran_still_has_its_wrapper_adopted(
    tmp_path: Path, shared_dir: Path
) -> None:
    """Tokens are of the home's attempts root (a copy must not take the original's
    wrappers): after a move (on one file system) a token names nothing, and the restarted
    executor finds the wrapper as the process its log names that still writes that log."""
    release = shared_dir / "release"
    first = _executor(tmp_path)
    try:
        first.dispatch(_spec("t", f"until [ -e {release} ]; do sleep 0.05; done; exit 8"))
        pid = _wait_started(first.log_path(RUN, "t", 1))
    finally:
        first.close()  # the task runs on
    try:
        moved = tmp_path / "moved"
        os.rename(tmp_path / "home", moved)
        reports: list[tuple[Any, ...]] = []
        second = LocalExecutor(
            moved / "logs", lambda *a: reports.append(a), work_root=tmp_path / "work",
            protect=moved,
        )  # fmt: skip
        try:
            report = second.recover([_running("t")])
            assert (report.results, report.not_started) == ({}, [])  # adopted, not LOST
            release.touch()
            _until(lambda: bool(reports))
        finally:
            second.close()
        result = reports[0][3]
        assert (result.status, result.exit_code) == (AttemptStatus.FAILED, 8)
    finally:
        release.touch()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
