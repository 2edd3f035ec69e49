"""An attempt's start and exit status live in its log, for a scheduler that was not alive.

GIVEN attempts started by one executor, which then stops (its tasks run on without it),
WHEN  they end (or are killed, or never started) and a new executor recovers them,
THEN  each is reported as it ended: the status the wrapper's trap wrote at the end of its log
      (even when the body sent its own output elsewhere), LOST when it started but left no
      status, and started afresh only when it never started; an attempt an earlier version
      started (its status in ``<name>.exit``) is read as before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.local.executor import LocalExecutor, live_wrappers
from stratoflow.engine import AttemptStatus, RenderedTask, TaskInstance, TaskState
from stratoflow.ports import AttemptSpec
from tests.logframe import pid_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

RUN = "p.r1"


def _executor(tmp_path: Path, reports: list[tuple[Any, ...]] | None = None) -> LocalExecutor:
    """An executor on the test's home; what it reports goes to ``reports``, if given."""
    home = tmp_path / "home"
    report = (lambda *_: None) if reports is None else (lambda *a: reports.append(a))
    return LocalExecutor(home / "logs", report, work_root=tmp_path / "work", protect=home)


def _spec(task: str, command: str) -> AttemptSpec:
    return AttemptSpec(
        RUN, task, 1, RenderedTask("shell", {"command": command}, {}, {}),
        datetime(2026, 12, 4, tzinfo=UTC), "wf", "p",
    )  # fmt: skip


def _until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _running(task: str) -> TaskInstance:
    return TaskInstance(RUN, task, TaskState.RUNNING, attempt=1)


def _started_then_orphaned(tmp_path: Path, commands: dict[str, str]) -> dict[str, int]:
    """Start each command, wait until each wrapper runs, stop the executor: the pids."""
    first = _executor(tmp_path)
    try:
        for task, command in commands.items():
            first.dispatch(_spec(task, command))
        root = first.root
        _until(lambda: len(live_wrappers(root)) == len(commands))
        pids = {name.split(".")[0]: pid for (_, name), pid in live_wrappers(root).items()}
    finally:
        first.close()
    return pids


def _gone(pid: int) -> bool:
    """The wrapper has ended (reaped here, as its scheduler would have)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        return not Path(f"/proc/{pid}/cmdline").read_bytes()  # a zombie's is empty
    except FileNotFoundError:
        return True


def test_an_end_while_down_is_read_from_the_log_even_when_the_body_redirected_its_output(
    tmp_path: Path,
) -> None:
    pids = _started_then_orphaned(
        tmp_path,
        {
            "quiet": "exec >/dev/null 2>/dev/null; sleep 0.3; exit 7",
            "loud": "echo -n partial; sleep 0.3",
        },
    )
    _until(lambda: all(_gone(pid) for pid in pids.values()))
    second = _executor(tmp_path)
    try:
        report = second.recover([_running("quiet"), _running("loud")])
    finally:
        second.close()
    assert report.not_started == []
    quiet, loud = report.results[(RUN, "quiet", 1)], report.results[(RUN, "loud", 1)]
    assert (quiet.status, quiet.exit_code) == (AttemptStatus.FAILED, 7)
    assert loud.status is AttemptStatus.SUCCEEDED
    log = (second.root / RUN / "loud.1.log").read_text()
    # the record follows output that did not end its line
    assert log.endswith("partial[stratoflow] task loud attempt 1 exited with code 0\n"), log


def test_an_end_while_down_is_reported_with_the_time_of_the_log_s_exit_record(
    tmp_path: Path,
) -> None:
    """Recovery says when the attempt ended (its log's last write, the exit record), so the
    scheduler records that, not the time it came back."""
    pids = _started_then_orphaned(tmp_path, {"quick": "sleep 0.2; exit 3"})
    _until(lambda: _gone(pids["quick"]))
    time.sleep(0.5)  # the scheduler stays down a while after
    second = _executor(tmp_path)
    try:
        recovered_at = datetime.now(UTC)
        report = second.recover([_running("quick")])
    finally:
        second.close()
    result = report.results[(RUN, "quick", 1)]
    log = second.root / RUN / "quick.1.log"
    assert result.exit_code == 3
    assert result.ended_at == datetime.fromtimestamp(log.stat().st_mtime, UTC)
    assert result.ended_at is not None
    assert recovered_at - result.ended_at >= timedelta(seconds=0.45)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1])
def test_an_attempt_killed_by_a_signal_while_down_is_recovered_as_failed_not_succeeded(
    tmp_path: Path, signum: signal.Signals
) -> None:
    # bash runs its EXIT trap when a signal kills it, with $? the last command's status: the
    # record said 0, and recovery called a killed task succeeded (its downstream then ran)
    if signal.getsignal(signum) == signal.SIG_IGN:  # `nohup make test`: SIGHUP ignored
        pytest.skip(f"{signum.name} is ignored here, so the tasks started here ignore it too")
    pids = _started_then_orphaned(tmp_path, {"killed": "true; sleep 30; echo never"})
    os.killpg(pids["killed"], signum)
    _until(lambda: _gone(pids["killed"]))
    second = _executor(tmp_path)
    try:
        report = second.recover([_running("killed")])
    finally:
        second.close()
    result = report.results[(RUN, "killed", 1)]
    assert (result.status, result.exit_code) == (AttemptStatus.FAILED, 128 + signum)
    log = (second.root / RUN / "killed.1.log").read_text()
    assert "never" not in log
    assert log.endswith(f"[stratoflow] task killed attempt 1 exited with code {128 + signum}\n")


def test_a_body_s_own_exit_trap_still_runs_when_a_signal_kills_it(tmp_path: Path) -> None:
    # the signal traps must not take the body's cleanup away (`trap 'rm -rf "$tmp"' EXIT`)
    command = "trap 'echo CLEANUP-RAN' EXIT; echo ARMED; sleep 30"
    pids = _started_then_orphaned(tmp_path, {"tidy": command})
    log = tmp_path / "home" / "logs" / RUN / "tidy.1.log"
    # the signal once the body's trap is set: sent as soon as the wrapper ran, it could land
    # before (a loaded machine), and the body had no cleanup to run yet
    _until(lambda: "ARMED" in log.read_text())
    os.killpg(pids["tidy"], signal.SIGTERM)
    _until(lambda: _gone(pids["tidy"]))
    assert "CLEANUP-RAN" in log.read_text()


def test_a_start_without_a_status_is_lost_and_a_claim_never_started_starts_afresh(
    tmp_path: Path,
) -> None:
    pids = _started_then_orphaned(tmp_path, {"killed": "sleep 30"})
    os.killpg(pids["killed"], signal.SIGKILL)  # no trap runs: the log says only "started"
    _until(lambda: _gone(pids["killed"]))
    # a claim whose wrapper never ran: the log the claim created, empty
    claimed = tmp_path / "home" / "logs" / RUN / "claimed.1.log"
    claimed.touch(mode=0o600)
    second = _executor(tmp_path)
    try:
        report = second.recover([_running("killed"), _running("claimed")])
    finally:
        second.close()
    assert report.results[(RUN, "killed", 1)].status is AttemptStatus.LOST
    assert [t.task_id for t in report.not_started] == ["claimed"]
    assert not claimed.exists()  # removed, so its fresh start can claim it again


def test_an_attempt_an_earlier_version_started_is_read_from_its_exit_file(
    tmp_path: Path,
) -> None:
    executor = _executor(tmp_path)
    try:
        (executor.root / RUN).mkdir()
        (executor.root / RUN / "old.1.log").write_text("output\n")  # no frame: older wrapper
        (executor.root / RUN / "older.1.log").write_text("")
        for task, record in (("old", "3\n"), ("older", "")):
            work = executor.work_dir(RUN, task, 1)
            work.mkdir(parents=True)
            (work / f"{task}.1.exit").write_text(record)
        report = executor.recover([_running("old"), _running("older")])
    finally:
        executor.close()
    assert report.results[(RUN, "old", 1)].exit_code == 3
    assert report.results[(RUN, "older", 1)].status is AttemptStatus.LOST  # started, no status
    assert report.not_started == []


def _replaced_then_orphaned(tmp_path: Path, task: str, command: str) -> int:
    """Start ``command``, an ``exec`` of another program, wait until that program replaced
    the wrapper, stop the executor: the pid the log's start line names."""
    first = _executor(tmp_path)
    try:
        first.dispatch(_spec(task, command))
        log = first.root / RUN / f"{task}.1.log"
        _until(lambda: log.exists() and b", pid " in log.read_bytes())
        pid = pid_of(log.read_text())
        _until(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0"))
    finally:
        first.close()
    assert live_wrappers(first.root) == {}  # its command line is the body's now
    return pid


def _alive(pid: int) -> bool:
    return not _gone(pid)


# `exec -c` starts the program with an empty environment: only its copy of the log (which
# every `exec` keeps) says whose it is. Found by its environment alone, it was LOST after a
# restart while it ran on, and its retry ran beside it: the task twice.
EXECS = pytest.mark.parametrize("exec_", ["exec", "exec -c"], ids=["exec", "exec-c"])


@EXECS
@pytest.mark.parametrize("recovered", [True, False], ids=["recovered", "killed-unrecovered"])
def test_a_body_that_replaced_its_wrapper_with_exec_is_found_again_after_a_restart(
    tmp_path: Path, recovered: bool, exec_: str
) -> None:
    # a restarted scheduler found wrappers by their command line only: an `exec` in the body
    # took it away, so the attempt was reported LOST while it ran on (a retry would run beside
    # it) and a stop could not reach it
    pid = _replaced_then_orphaned(tmp_path, "replaced", f"{exec_} sleep 30")
    reports: list[tuple[Any, ...]] = []
    second = _executor(tmp_path, reports)
    try:
        if recovered:
            report = second.recover([_running("replaced")])
            assert report.results == {}  # still running: watched, not LOST
            assert report.not_started == []
            time.sleep(0.2)
            assert _alive(pid)  # and left running
        second.kill(RUN, "replaced", 1)
        _until(lambda: _gone(pid))
        if recovered:
            _until(lambda: bool(reports))
    finally:
        second.close()
    if recovered:
        assert [(r[:3], r[3].status) for r in reports] == [
            ((RUN, "replaced", 1), AttemptStatus.STOPPED)
        ]


@EXECS
def test_a_replaced_wrapper_that_ends_while_watched_is_lost(tmp_path: Path, exec_: str) -> None:
    pid = _replaced_then_orphaned(tmp_path, "short", f"{exec_} sleep 30")
    reports: list[tuple[Any, ...]] = []
    second = _executor(tmp_path, reports)
    try:
        assert second.recover([_running("short")]).results == {}
        os.kill(pid, signal.SIGTERM)  # it ends on its own (not stopped by the scheduler)
        _until(lambda: _gone(pid))
        _until(lambda: bool(reports))
    finally:
        second.close()
    (result,) = [r[3] for r in reports]
    assert result.status is AttemptStatus.LOST  # exec leaves no exit record: unknown end


@pytest.mark.parametrize(
    "impostor",
    ["another-environment", "another-attempt-s-log", "a-reader-of-the-log", "not-a-session-leader"],
)
def test_a_process_the_log_names_is_not_taken_for_the_wrapper_unless_it_is_one(
    tmp_path: Path, impostor: str
) -> None:
    """A pid reused since (or a line the body wrote over its log's first): the process it
    names must lead a session of its own and carry the attempt's environment or write to
    its log (a reader of it, as `tail -f` is, does not count), or the attempt is LOST as
    before, and that process is neither watched nor stopped."""
    pid = _replaced_then_orphaned(tmp_path, "named", "exec sleep 30")
    os.kill(pid, signal.SIGKILL)
    _until(lambda: _gone(pid))
    second = _executor(tmp_path)
    output = second._file_text(RUN, "named", 1, ".out")
    if impostor == "another-environment":  # leads a session, but not with the attempt's env
        env = {"PATH": os.defpath, "STRATOFLOW_OUTPUT": output + "x"}
        other = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
    elif impostor == "another-attempt-s-log":  # leads a session, holding a log not its own
        with (second.root / RUN / "named.2.log").open("w") as held:
            other = subprocess.Popen(
                ["sleep", "30"], env={"PATH": os.defpath}, stdout=held, start_new_session=True
            )
    elif impostor == "a-reader-of-the-log":  # leads a session, reading this attempt's log
        with (second.root / RUN / "named.1.log").open("r") as held:
            other = subprocess.Popen(
                ["sleep", "30"], env={"PATH": os.defpath}, stdin=held, start_new_session=True
            )
    else:  # the attempt's environment, in no session of its own
        env = {"PATH": os.defpath, "STRATOFLOW_OUTPUT": output}
        other = subprocess.Popen(["sleep", "30"], env=env)
    try:
        log = second.root / RUN / "named.1.log"
        log.write_text(log.read_text().replace(f"pid {pid}\n", f"pid {other.pid}\n", 1))
        report = second.recover([_running("named")])
        second.kill(RUN, "named", 1)
        time.sleep(0.2)
        assert other.poll() is None  # neither stopped nor killed
    finally:
        second.close()
        other.kill()
        other.wait()
    assert report.results[(RUN, "named", 1)].status is AttemptStatus.LOST


def test_recovery_builds_no_path_of_ids_another_process_carries(tmp_path: Path) -> None:
    """Any session leader may carry an attempt's variables: a run id that climbs out of the
    home must not make recovery open what it names (a FIFO there hung it for good)."""
    second = _executor(tmp_path)
    climb = "../../../../../../../../../.." + str(tmp_path / "trap")
    (tmp_path / "trap").mkdir()
    os.mkfifo(tmp_path / "trap" / "t.1.log")
    env = {
        "PATH": os.defpath,
        "STRATOFLOW_OUTPUT": f"{second._work_root_text}/x/t.1.out",
        "STRATOFLOW_RUN_ID": climb,
        "STRATOFLOW_TASK_ID": "t",
        "STRATOFLOW_ATTEMPT": "1",
    }
    other = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
    try:
        time.sleep(0.1)
        assert second.recover([]).results == {}  # returns (the module's timeout: a hang)
        assert other.poll() is None
    finally:
        second.close()
        other.kill()
        other.wait()


@EXECS
def test_a_replaced_wrapper_whose_task_was_stopped_while_down_is_killed_at_recovery(
    tmp_path: Path, exec_: str
) -> None:
    pid = _replaced_then_orphaned(tmp_path, "stopped", f"{exec_} sleep 30")
    second = _executor(tmp_path)
    try:
        report = second.recover([])  # its task is no longer running: stopped meanwhile
        _until(lambda: _gone(pid))
    finally:
        second.close()
    assert report.results == {}


def test_a_task_bash_warns_about_before_its_start_line_is_not_started_again(
    tmp_path: Path,
) -> None:
    # bash warns of a locale it lacks before the wrapper writes its first line: recovery
    # missed the start line (and the pid it names), took the attempt whose body had replaced
    # the wrapper for one never started, and started it again beside the running one
    first = _executor(tmp_path)
    spec = AttemptSpec(
        RUN, "warned", 1,
        RenderedTask("shell", {"command": "exec sleep 30"}, {}, {"LC_ALL": "xx_XX.UTF-8"}),
        datetime(2026, 12, 4, tzinfo=UTC), "wf", "p",
    )  # fmt: skip
    log = first.root / RUN / "warned.1.log"
    try:
        first.dispatch(spec)
        _until(lambda: log.exists() and b", pid " in log.read_bytes())
        warning, start = log.read_text().splitlines()[:2]
        pid = pid_of(start + "\n")
        _until(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0"))
    finally:
        first.close()
    assert "bash: warning: setlocale" in warning
    second = _executor(tmp_path)
    try:
        report = second.recover([_running("warned")])
        assert (report.results, report.not_started) == ({}, [])  # running: watched
        second.kill(RUN, "warned", 1)
        _until(lambda: _gone(pid))
    finally:
        second.close()
