"""The local runtime's behaviours that need real processes and real time."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.local import executor as executor_module
from stratoflow.adapters.local.runtime import HomeInUse, LocalRuntime
from stratoflow.engine import RenderedTask, RunState, TaskInstance, TaskState
from stratoflow.ports import AttemptSpec
from tests.e2e.http_stub import json_stub
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(tmp_path / "home")
    yield rt
    rt.close()


def start(rt: LocalRuntime, text: str, **params: object) -> str:
    version, _ = rt.scheduler.apply(text)
    run, _ = rt.scheduler.trigger(version.project, version.name, params=params)
    return run.id


def finish(rt: LocalRuntime, run_id: str, timeout: float = 60) -> RunState:
    deadline = time.monotonic() + timeout
    rt.run_until(lambda: rt.store.get_run(run_id).state.terminal or time.monotonic() > deadline)
    return rt.store.get_run(run_id).state


def states(rt: LocalRuntime, run_id: str) -> dict[str, str]:
    return {t.task_id: t.state.value for t in rt.store.get_tasks(run_id)}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited too
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or gone while being read (ESRCH)
        return False


def test_timeout_kills_the_whole_process_group_and_retries(
    runtime: LocalRuntime, shared_dir: Path
) -> None:
    # GIVEN a task that starts a grandchild and then hangs, with a 1s timeout and one retry
    pids = shared_dir / "pids"
    run_id = start(
        runtime,
        f"""
name: hangs
tasks:
  slow:
    type: shell
    timeout: 1s
    retries: 1
    retry_delay: 0
    command: |
      sleep 300 &
      echo $! >> {pids}
      sleep 300
""",
    )
    # WHEN it runs
    assert finish(runtime, run_id) is RunState.FAILED
    # THEN both attempts timed out, and every process they started is gone
    attempts = runtime.store.list_attempts(run_id, "slow")
    assert [a.state for a in attempts] == ["timed_out", "timed_out"]
    assert attempts[0].error == "timed out after 0:00:01"
    grandchildren = [int(p) for p in pids.read_text().split()]
    assert len(grandchildren) == 2
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in grandchildren) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in grandchildren)


# a task that ignores SIGTERM and marks the time every 0.1 s until it is killed, as attempt 1;
# attempt 2 (the retry, or a rerun's) marks once and succeeds
STUBBORN = """
name: stubborn
tasks:
  t:
    type: shell
    timeout: {timeout}
    retries: 1
    retry_delay: 0s
    command: |
      trap '' TERM
      if [ "$STRATOFLOW_ATTEMPT" != 1 ]; then echo "$STRATOFLOW_ATTEMPT $(date +%s.%N)" >> {marks}; exit 0; fi
      while true; do echo "1 $(date +%s.%N)" >> {marks}; sleep 0.1; done
"""


def marks(path: Path) -> dict[int, list[float]]:
    """attempt -> the times its processes wrote a mark, in order."""
    out: dict[int, list[float]] = {}
    for line in path.read_text().splitlines():
        attempt, at = line.split()
        out.setdefault(int(attempt), []).append(float(at))
    return out


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> float:
    grace = 1.5
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", grace)
    return grace


def test_a_timed_out_attempt_that_ignores_sigterm_is_gone_before_its_retry_starts(
    runtime: LocalRuntime, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a task that ignores SIGTERM, with a 2 s timeout, one retry and no retry delay, and
    # a kill grace longer than that timeout: a retry whose clock ran while it waited for the
    # killed attempt would time out too. (The retry's 2 s are for what no clock can hold
    # back on a loaded machine: the kill sent a moment after the timeout is written, the
    # killed group seen gone, the retry's wrapper started. A 1 s timeout once ran out on CI.)
    grace = 3.0
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", grace)
    path = shared_dir / "marks"
    run_id = start(runtime, STUBBORN.format(timeout="2s", marks=path))
    # WHEN its first attempt times out, THEN the retry runs (not timed out while it waited)
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    attempts = runtime.store.list_attempts(run_id, "t")
    assert [a.state for a in attempts] == ["timed_out", "succeeded"]
    time.sleep(grace + 0.5)  # whatever of attempt 1 still ran has been killed by now
    # THEN the retry wrote its first mark after the killed attempt's last: never both at once
    first, second = marks(path)[1], marks(path)[2]
    assert second[0] > first[-1], (first[-1], second)
    # and the killed attempt did run on through the grace (SIGTERM did not end it: SIGKILL)
    assert first[-1] - first[0] > 2 + grace / 2, first


def test_a_rerun_right_after_a_stop_starts_once_the_stopped_attempt_is_gone(
    runtime: LocalRuntime, shared_dir: Path, short_grace: float
) -> None:
    # GIVEN the task running its first attempt, which ignores SIGTERM
    path = shared_dir / "marks"
    run_id = start(runtime, STUBBORN.format(timeout="1h", marks=path))
    assert wait_for(lambda: (runtime.run_once(0.05), path.exists())[1])
    # WHEN the run is stopped and at once rerun
    runtime.scheduler.stop(run_id)
    runtime.run_once(timeout=0)
    assert runtime.store.get_run(run_id).state is RunState.STOPPED
    runtime.scheduler.rerun(run_id)
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    time.sleep(short_grace + 0.5)  # whatever of attempt 1 still ran has been killed by now
    # THEN the rerun's attempt wrote its first mark after the stopped one's last
    first, second = marks(path)[1], marks(path)[2]
    assert second[0] > first[-1], (first[-1], second)
    assert second[0] - first[0] > short_grace / 2  # it did wait for the kill


def test_closing_the_runtime_kills_what_a_timeout_left_in_its_grace(
    tmp_path: Path, shared_dir: Path, short_grace: float
) -> None:
    # GIVEN a run that failed on the timeout of a task that ignores SIGTERM (no retry left)
    path = shared_dir / "marks"
    rt = LocalRuntime(tmp_path / "home")
    try:
        text = STUBBORN.format(timeout="1s", marks=path).replace("retries: 1", "retries: 0")
        run_id = start(rt, text)
        assert finish(rt, run_id) is RunState.FAILED
    finally:
        # WHEN the scheduler closes at once (`stratoflow run` exits after its run)
        rt.close()
    # THEN the killed attempt was killed before close returned: it marks no more
    closed = time.time()
    time.sleep(0.5)
    left = executor_module.live_wrappers(rt.executor.root)
    for pgid in left.values():  # a failure here must not leave it running for good
        os.killpg(pgid, signal.SIGKILL)
    assert marks(path)[1][-1] < closed
    assert not left


def _shell(command: str, attempt: int = 1, task: str = "t") -> AttemptSpec:
    """Attempt ``attempt`` of ``task`` of run p.r1: a shell task running ``command``."""
    return AttemptSpec(
        "p.r1", task, attempt, RenderedTask("shell", {"command": command}, {}, {}),
        datetime(2026, 12, 5, tzinfo=UTC), "wf", "p",
    )  # fmt: skip


def _kill_groups(*pgids: int) -> None:
    """SIGKILL each group still there (0: none): what a failed test must not leave running."""
    for pgid in pgids:
        if pgid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


def _left_behind(
    ex: executor_module.LocalExecutor, tmp_path: Path, shared_dir: Path, until: str = "false"
) -> int:
    """Dispatch an attempt whose wrapper waits for a child that ignores SIGTERM (and runs
    until ``until`` holds): its group's id, once the child runs. A kill's SIGTERM ends the
    wrapper and leaves the child in the group."""
    ready = shared_dir / "ready"
    ex.dispatch(_shell(f"(trap '' TERM; touch {ready}; until {until}; do sleep 0.05; done) & wait"))
    assert wait_for(ready.exists)
    return executor_module.live_wrappers(tmp_path / "home" / "logs")[("p.r1", "t.1")]


def _executor(tmp_path: Path) -> executor_module.LocalExecutor:
    """An executor on the test's home, as a scheduler (re)started there makes it."""
    home = tmp_path / "home"
    return executor_module.LocalExecutor(
        home / "logs", lambda *_: None, work_root=tmp_path / "work", protect=home
    )


def test_a_restart_while_a_killed_attempt_holds_the_next_one_kills_it_then_starts_that(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an executor running attempt 1, which ignores SIGTERM, killed with a long grace,
    # and attempt 2 of the same task dispatched meanwhile
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", 60.0)
    path = shared_dir / "marks"
    command = STUBBORN.split("command: |\n", 1)[1].format(marks=path)
    home = tmp_path / "home"

    def spec(attempt: int) -> AttemptSpec:
        return _shell(command, attempt)

    try:
        first = _executor(tmp_path)
        first.dispatch(spec(1))
        assert wait_for(path.exists)
        first.kill("p.r1", "t", 1)
        first.dispatch(spec(2))
        time.sleep(0.5)
        # THEN attempt 2 waits: attempt 1 still marks, attempt 2 has not started
        assert 2 not in marks(path)
        assert not first.log_path("p.r1", "t", 2).exists()
        # WHEN the scheduler dies before the grace is over (no SIGKILL sent: its timer is gone)
        monkeypatch.setattr(first, "_finish_kills", lambda: None)
        first.close()
        for ending in first._ending.values():  # the dead scheduler's timer must not fire later
            for killed in ending.groups.values():
                if killed.pidfd is not None:
                    os.close(killed.pidfd)
        first._ending.clear()
        # and a new one recovers: attempt 2 is claimed but never started
        second = _executor(tmp_path)
        try:
            task = TaskInstance("p.r1", "t", TaskState.RUNNING, attempt=2)
            report = second.recover([task])
            assert report.not_started == [task]
            # THEN attempt 1 was killed first (its wrapper found alive and not wanted), and the
            # restarted attempt 2 marks after attempt 1's last mark
            second.dispatch(spec(2))
            assert wait_for(lambda: 2 in marks(path))
        finally:
            second.close()
        first_marks, second_marks = marks(path)[1], marks(path)[2]
        time.sleep(0.3)
        assert marks(path)[1] == first_marks  # attempt 1 marks no more
        assert second_marks[0] > first_marks[-1]
    finally:  # a failure must not leave a task that ignores SIGTERM running for good
        for pgid in executor_module.live_wrappers(home / "logs").values():
            os.killpg(pgid, signal.SIGKILL)


def _argv(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return []


def running_in_group(pgid: int) -> list[int]:
    """The processes of the group that have not ended (a zombie has: an orphan waits for init,
    which on some machines reaps late)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("ignores_sigterm", [False, True], ids=["ends", "ignores_sigterm"])
def test_a_kill_of_an_attempt_started_before_a_restart_is_disarmed_once_its_group_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ignores_sigterm: bool
) -> None:
    """kill() of an attempt this executor did not start (found by its command line) SIGTERMs
    its group and arms the SIGKILL timer; once the group is gone the timer is disarmed at once,
    not left to fire at a group id the kernel may have given to another's processes since. A
    group that ignores SIGTERM still gets its SIGKILL when the grace is over."""
    # GIVEN an attempt left running by a scheduler that died
    grace = 3.0 if ignores_sigterm else 60.0
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", grace)
    home = tmp_path / "home"
    command = "trap '' TERM; while true; do sleep 0.1; done" if ignores_sigterm else "sleep 60"

    spec = _shell(command)
    first = _executor(tmp_path)
    first.dispatch(spec)
    assert wait_for(lambda: ("p.r1", "t.1") in executor_module.live_wrappers(home / "logs"))
    pgid = executor_module.live_wrappers(home / "logs")[("p.r1", "t.1")]
    first.close()
    # its parent (this process: the first executor's) reaps it once it ends, as init would
    # after a real restart: a zombie still counts as a member of its group
    reaped = threading.Thread(target=os.waitpid, args=(pgid, 0), daemon=True)
    reaped.start()
    second = _executor(tmp_path)
    try:
        # WHEN the new scheduler stops it without having recovered it
        killed = time.monotonic()
        second.kill("p.r1", "t", 1)
        if ignores_sigterm:  # THEN the group outlives SIGTERM, and the timer stays armed
            time.sleep(0.5)
            assert second._ending
            assert running_in_group(pgid)
        # THEN the group is gone, and the timer disarmed: at once, or by its SIGKILL
        assert wait_for(lambda: not second._ending, timeout=10)
        assert (time.monotonic() - killed >= grace) is ignores_sigterm
        assert wait_for(lambda: not running_in_group(pgid))
    finally:
        second.close()
        _kill_groups(*executor_module.live_wrappers(home / "logs").values())


def _pidfd_groups_here() -> bool:
    """Whether this kernel signals a group through its leader's pidfd (Linux 6.9+)."""
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:  # (no pidfds at all: a filter refuses them)
        return False
    try:
        signal.pidfd_send_signal(fd, 0, None, executor_module.PIDFD_SIGNAL_PROCESS_GROUP)
    except ProcessLookupError:  # (this process leads no group: the flag is known)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _id_taken_then(
    ex: executor_module.LocalExecutor,
    monkeypatch: pytest.MonkeyPatch,
    pgid: int,
    seen: int,
    when: str,
    grace: float,
) -> None:
    """Make /proc say that ``pgid`` is held by a process that started after the leader the
    kill saw (``seen``), then let the kill's SIGKILL fall due: at the grace's end, or at
    close."""
    real = executor_module._start_time
    monkeypatch.setattr(
        executor_module, "_start_time", lambda pid: seen + 1 if pid == pgid else real(pid)
    )
    if when == "close":
        ex.close()
    else:
        assert wait_for(lambda: not ex._ending, timeout=grace + 5)


@pytest.mark.parametrize("when", ["grace over", "close"])
def test_a_kill_whose_group_id_another_process_took_since_sends_it_no_sigkill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """Where the kernel cannot signal a group through its leader's pidfd: the SIGKILL due at
    the end of a kill's grace (or at close) goes to the group's id only if it is still that
    group's: a process now at that pid that started after the leader the kill saw is
    another's (the group had ended, and the id came round again)."""
    grace = 1.0
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", grace)
    monkeypatch.setattr(executor_module, "_pidfd_groups", [False])  # a kernel before 6.9
    home = tmp_path / "home"
    spec = _shell("trap '' TERM; while true; do sleep 0.1; done")
    ex = _executor(tmp_path)
    try:
        ex.dispatch(spec)
        assert wait_for(lambda: ("p.r1", "t.1") in executor_module.live_wrappers(home / "logs"))
        pgid = executor_module.live_wrappers(home / "logs")[("p.r1", "t.1")]
        seen = executor_module._start_time(pgid)
        assert seen > 0
        ex.kill("p.r1", "t", 1)  # SIGTERM, which the group ignores; the SIGKILL is armed
        # WHEN that id is taken by a process that started later, as far as the timer can see
        _id_taken_then(ex, monkeypatch, pgid, seen, when, grace)
        # THEN no SIGKILL went to that id: the group that ignores SIGTERM still runs
        time.sleep(0.3)
        assert running_in_group(pgid)
    finally:
        ex.close()
        _kill_groups(*executor_module.live_wrappers(home / "logs").values())


@pytest.mark.parametrize("when", ["grace over", "close"])
def test_a_kill_reaches_its_group_through_the_leader_s_pidfd_whoever_has_its_id(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """Where the kernel can (Linux 6.9+), the kill's SIGKILL goes through a pidfd of the
    group's leader, taken while the executor watched it: it reaches exactly that group, its
    wrapper long reaped, whatever process holds the group's id by then (here: one that, as
    far as /proc tells, started later), and nothing is sent to the id."""
    if not _pidfd_groups_here():
        pytest.skip("this kernel has no PIDFD_SIGNAL_PROCESS_GROUP (Linux < 6.9)")
    grace = 3.0  # time to see the group outlive its wrapper on a loaded machine
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", grace)
    by_id: list[tuple[int, int]] = []
    monkeypatch.setattr(executor_module, "_kill_group", lambda g, sig: by_id.append((g, sig)))
    home = tmp_path / "home"
    ex = _executor(tmp_path)
    pgid = 0
    try:
        # the wrapper ends at SIGTERM; what it left ignores it: a group without its leader
        pgid = _left_behind(ex, tmp_path, shared_dir)
        seen = executor_module._start_time(pgid)
        ex.kill("p.r1", "t", 1)
        copy = ex._ending[("p.r1", "t")].groups[pgid].pidfd  # the watcher's pidfd, copied
        assert copy is not None
        assert os.readlink(f"/proc/self/fd/{copy}") == "anon_inode:[pidfd]"
        assert wait_for(lambda: ("p.r1", "t.1") not in executor_module.live_wrappers(home / "logs"))
        assert running_in_group(pgid)  # leaderless, still armed
        # WHEN the group's id looks taken by a process that started later
        _id_taken_then(ex, monkeypatch, pgid, seen, when, grace)
        # THEN the group got its SIGKILL all the same, and nothing went to the id
        assert wait_for(lambda: not running_in_group(pgid))
        assert (pgid, signal.SIGKILL) not in by_id
        # and the copy is closed (its number may be another file's by now)
        with contextlib.suppress(OSError):
            assert os.readlink(f"/proc/self/fd/{copy}") != "anon_inode:[pidfd]"
    finally:
        ex.close()
        _kill_groups(pgid)


def test_a_kill_no_watcher_will_report_on_looks_at_its_group_until_it_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill of a wrapper that no watcher reports the end of (it ended as the kill came, or
    was never watched) looks at the group itself: disarmed once the group is gone, not at the
    grace's end (what waits for the task would wait out the whole grace, and the SIGKILL
    would go to the id then)."""
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", 60.0)
    ex = _executor(tmp_path)
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        ex._terminate(executor_module._Live("p.r1", "t", 1, pid=proc.pid, report=False))
        assert ("p.r1", "t") in ex._ending  # armed: SIGTERM sent, SIGKILL due in 60 s
        proc.wait(timeout=10)  # it ended at SIGTERM (and is reaped: nothing of the group left)
        assert wait_for(lambda: not ex._ending, timeout=5)
    finally:
        monkeypatch.setattr(ex, "_finish_kills", lambda: None)  # (failed: no 60 s wait)
        ex.close()
        proc.kill()
        proc.wait()


def test_closing_does_not_wait_out_the_grace_of_a_killed_group_that_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM stop of the server right after a stop of a task it re-attached to after a
    restart took the whole kill grace (~5 s, against ~0.2 s): close() slept until each
    group's SIGKILL was due, though the group had ended at its SIGTERM."""
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", 60.0)
    monkeypatch.setattr(executor_module, "GONE_POLL_SECONDS", 30.0)  # the poller is not in time
    ex = _executor(tmp_path)
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        ex._terminate(executor_module._Live("p.r1", "t", 1, pid=proc.pid, report=False))
        proc.wait(timeout=10)  # ended at its SIGTERM, and reaped: nothing of the group left
        assert ("p.r1", "t") in ex._ending  # still armed: its SIGKILL due in 60 s
        started = time.monotonic()
        ex.close()
        assert time.monotonic() - started < 10  # not the 60 s grace
    finally:
        proc.kill()
        proc.wait()


def test_a_restart_finds_the_wrapper_not_a_subshell_of_its_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subshell of the body is a copy of the wrapper's shell, command line and all: a
    restarted scheduler must watch and stop the wrapper (the session leader), not it."""
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", 0.5)
    home = tmp_path / "home"
    spec = _shell("(while true; do sleep 0.1; done) & wait")
    first = _executor(tmp_path)
    first.dispatch(spec)
    log = home / "logs" / "p.r1" / "t.1.log"
    assert wait_for(lambda: log.exists() and "started, pid" in log.read_text())
    wrapper = int(log.read_text().split("started, pid ")[1].split()[0])
    # the body's subshell runs, with the wrapper's command line
    assert wait_for(lambda: len(running_in_group(wrapper)) >= 3)  # wrapper, subshell, sleep
    first.close()
    second = _executor(tmp_path)
    try:
        # WHEN a restarted scheduler looks for the attempt's wrapper
        assert executor_module.live_wrappers(home / "logs") == {("p.r1", "t.1"): wrapper}
        # THEN a stop reaches the whole group
        second.kill("p.r1", "t", 1)
        assert wait_for(lambda: not running_in_group(wrapper))
    finally:
        second.close()
        _kill_groups(wrapper)


@pytest.mark.parametrize(
    ("how", "left"),
    [("killed alone", "a loop"), ("ended", "a loop"), ("killed alone", "exec -c sleep")],
)
def test_a_restart_kills_what_a_wrapper_gone_meanwhile_left_in_its_group(
    tmp_path: Path, shared_dir: Path, how: str, left: str
) -> None:
    """A wrapper that ended while no scheduler watched (with its record, or killed alone
    without one) may leave something running in its group: a restarted scheduler kills it,
    as a live one does when a wrapper ends, before the attempt's end is recorded (and a
    retry of it may start). Also a program started with an empty environment (``exec -c``):
    its copy of the attempt's log says whose it is."""
    home = tmp_path / "home"
    ready, done = shared_dir / "ready", shared_dir / "done"
    then = f"touch {done}; exit 0" if how == "ended" else "sleep 30"
    runs_on = "until false; do sleep 0.05; done" if left == "a loop" else "exec -c sleep 300"
    spec = _shell(f"(touch {ready}; {runs_on}) & until [ -e {done} ]; do sleep 0.05; done; {then}")
    first = _executor(tmp_path)
    first.dispatch(spec)
    assert wait_for(ready.exists)
    log = home / "logs" / "p.r1" / "t.1.log"
    wrapper = int(log.read_text().split("started, pid ")[1].split()[0])
    if left != "a loop":  # once the program replaced the subshell (its environment gone)
        assert wait_for(
            lambda: any(_argv(p) == [b"sleep", b"300"] for p in running_in_group(wrapper))
        )
    first.close()  # the scheduler goes; its attempt runs on
    try:
        if how == "ended":
            done.touch()  # the wrapper writes its record and exits
            assert wait_for(lambda: "exited with code 0" in log.read_text())
        else:
            os.kill(wrapper, signal.SIGKILL)  # the wrapper alone: no record
        os.waitpid(wrapper, 0)  # (its parent: this process, as init would after a restart)
        assert running_in_group(wrapper)  # the body's subshell runs on
        second = _executor(tmp_path)
        try:
            # WHEN a restarted scheduler recovers the attempt
            task = TaskInstance("p.r1", "t", TaskState.RUNNING, attempt=1)
            report = second.recover([task])
            # THEN its end is recorded as its log says, and nothing of it runs any more
            result = report.results[("p.r1", "t", 1)]
            assert result.status.value == ("succeeded" if how == "ended" else "lost")
            assert wait_for(lambda: not running_in_group(wrapper))
        finally:
            second.close()
    finally:
        _kill_groups(wrapper)


@pytest.mark.parametrize("left_ends", [True, False], ids=["left ends", "left ignores TERM"])
def test_what_a_killed_wrapper_leaves_in_its_group_is_watched_until_gone(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch, left_ends: bool
) -> None:
    """A killed attempt's wrapper ends at SIGTERM while something it started, ignoring it,
    runs on in the group: the group is looked at until it is gone, and the kill timer
    disarmed then (not left to fire at the id once the kernel may have handed it out
    again); what never ends gets its SIGKILL when the grace is over."""
    grace = 2.0 if not left_ends else 60.0
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", grace)
    home = tmp_path / "home"
    stop = shared_dir / "stop"
    ex = _executor(tmp_path)
    pgid = 0
    try:
        # the left one ignores SIGTERM before it says it is there; it ends once told (or never)
        pgid = _left_behind(ex, tmp_path, shared_dir, f"[ -e {stop} ]" if left_ends else "false")
        killed = time.monotonic()
        ex.kill("p.r1", "t", 1)
        # THEN the wrapper is gone, what it left still runs, and the timer stays armed
        assert wait_for(lambda: ("p.r1", "t.1") not in executor_module.live_wrappers(home / "logs"))
        assert running_in_group(pgid)
        assert ex._ending
        if left_ends:
            stop.touch()
        # THEN once nothing of the group is left, the timer is disarmed: by the group's own
        # end, long before the grace is over, or by the SIGKILL at its end
        assert wait_for(lambda: not ex._ending, timeout=grace + 5)
        assert (time.monotonic() - killed >= grace) is not left_ends
        assert wait_for(lambda: not running_in_group(pgid))
    finally:
        ex.close()
        _kill_groups(pgid)


def test_a_stop_of_many_tasks_whose_groups_outlive_their_wrappers_makes_no_thread_for_each(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each killed attempt needs its SIGKILL when the grace is over and, its wrapper gone
    while something ignoring SIGTERM runs on, a look at its group every tenth of a second:
    all of them from one thread. A thread per call made a stop of a few hundred such tasks
    thousands of threads a second, for the whole grace."""
    monkeypatch.setattr(executor_module, "KILL_GRACE_SECONDS", 4.0)  # long enough to look
    n = 12
    home = tmp_path / "home"
    ex = _executor(tmp_path)
    groups: list[int] = []
    try:
        for i in range(n):
            ready = shared_dir / f"ready{i}"
            command = f"(trap '' TERM; touch {ready}; until false; do sleep 0.05; done) & wait"
            ex.dispatch(_shell(command, task=f"t{i}"))
        assert wait_for(lambda: all((shared_dir / f"ready{i}").exists() for i in range(n)))
        wrappers = executor_module.live_wrappers(home / "logs")
        groups = [wrappers[("p.r1", f"t{i}.1")] for i in range(n)]
        before = threading.active_count()
        for i in range(n):
            ex.kill("p.r1", f"t{i}", 1)
        # WHEN every wrapper has ended at SIGTERM and what each left runs on in its group
        assert wait_for(lambda: not executor_module.live_wrappers(home / "logs"))
        assert all(running_in_group(g) for g in groups)
        # THEN the grace timers and the looks at the groups take one thread, not one each
        counts = []
        for _ in range(10):
            counts.append(threading.active_count())
            time.sleep(0.03)
        assert max(counts) <= before + 1, counts
        assert len(ex._ending) == n  # all still armed, each to be SIGKILLed at its grace
    finally:
        ex.close()  # the SIGKILLs due
        _kill_groups(*groups)
    assert wait_for(lambda: not any(running_in_group(g) for g in groups))


def test_run_concurrency_limits_tasks_running_at_once(
    runtime: LocalRuntime, shared_dir: Path
) -> None:
    # GIVEN 8 independent tasks that record when they start and end, at most 3 at once
    spans = shared_dir / "spans"
    tasks = "\n".join(
        f'  t{i}:\n    type: shell\n    command: echo "s $(date +%s.%N)" >> {spans}; sleep 0.3; echo "e $(date +%s.%N)" >> {spans}'
        for i in range(8)
    )
    run_id = start(runtime, f"name: limited\nconcurrency: 3\ntasks:\n{tasks}\n")
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    # THEN at no moment were more than 3 task bodies running
    events = sorted(
        (float(t), 1 if kind == "s" else -1)
        for kind, t in (line.split() for line in spans.read_text().splitlines())
    )
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 3


def test_max_active_runs_queues_the_next_run_until_one_ends(runtime: LocalRuntime) -> None:
    text = "name: one_at_a_time\nmax_active_runs: 1\ntasks:\n  nap: {type: shell, command: sleep 0.5}\n"
    runtime.scheduler.apply(text)
    first, _ = runtime.scheduler.trigger("default", "one_at_a_time")
    second, _ = runtime.scheduler.trigger("default", "one_at_a_time")
    # GIVEN two runs where one may be active: the second waits, queued
    assert runtime.store.get_run(first.id).state is RunState.RUNNING
    assert runtime.store.get_run(second.id).state is RunState.QUEUED
    # WHEN the first finishes, THEN the second starts and finishes after it
    assert finish(runtime, second.id) is RunState.SUCCEEDED
    a, b = runtime.store.get_run(first.id), runtime.store.get_run(second.id)
    assert a.ended_at is not None
    assert b.started_at is not None
    assert b.started_at >= a.ended_at


def test_pause_dispatches_nothing_new_and_resume_carries_on(runtime: LocalRuntime) -> None:
    run_id = start(
        runtime,
        "name: pausable\ntasks:\n  a: {type: shell, command: sleep 0.5}\n  b: {type: shell, depends_on: [a], command: 'true'}\n",
    )
    runtime.run_once(timeout=0)
    runtime.scheduler.pause(run_id)
    # WHEN a finishes while the run is paused
    deadline = time.monotonic() + 10
    while (
        runtime.store.get_task(run_id, "a").state is not TaskState.SUCCEEDED
        and time.monotonic() < deadline
    ):
        runtime.run_once(0.2)
    for _ in range(5):
        runtime.run_once(0.05)
    # THEN b is ready but not dispatched
    assert states(runtime, run_id) == {"a": "succeeded", "b": "queued"}
    assert runtime.store.get_run(run_id).state is RunState.PAUSED
    # WHEN resumed, THEN the run completes
    runtime.scheduler.resume(run_id)
    assert finish(runtime, run_id) is RunState.SUCCEEDED


def test_on_failure_stop_kills_running_siblings_and_fails_the_run(runtime: LocalRuntime) -> None:
    run_id = start(
        runtime,
        """
name: fail_fast
on_failure: stop
tasks:
  breaks: {type: shell, command: "sleep 0.2; exit 3"}
  long: {type: shell, command: sleep 60}
  after: {type: shell, depends_on: [long], command: "true"}
""",
    )
    assert finish(runtime, run_id) is RunState.FAILED
    assert states(runtime, run_id) == {"breaks": "failed", "long": "stopped", "after": "stopped"}
    run = runtime.store.get_run(run_id)
    assert run.error == "task breaks failed and on_failure is stop"
    assert runtime.store.get_task(run_id, "breaks").error == "exit code 3"


def test_an_undefined_template_name_fails_the_task_naming_it_without_retrying(
    runtime: LocalRuntime,
) -> None:
    run_id = start(
        runtime,
        """
name: typo
tasks:
  a: {type: shell, command: 'echo "x=1" >> "$STRATOFLOW_OUTPUT"'}
  b: {type: shell, depends_on: [a], retries: 3, command: "echo {{ tasks.a.outputs.y }}"}
""",
    )
    assert finish(runtime, run_id) is RunState.FAILED
    b = runtime.store.get_task(run_id, "b")
    assert b.state is TaskState.FAILED
    assert b.attempt == 1  # not retried: the same template would fail again
    assert b.error is not None
    assert "'y'" in b.error
    assert "tasks.a.outputs.y" in b.error


def test_rerun_failed_gets_a_fresh_retry_budget_and_keeps_what_succeeded(
    runtime: LocalRuntime, shared_dir: Path
) -> None:
    # GIVEN a task that succeeds only on its 4th execution, with one retry
    counter = shared_dir / "count"
    run_id = start(
        runtime,
        f"""
name: fixable
tasks:
  ok: {{type: shell, command: "echo ran >> {shared_dir / "ok.log"}"}}
  broken:
    type: shell
    depends_on: [ok]
    retries: 1
    retry_delay: 0
    command: n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}; [ $n -ge 4 ]
""",
    )
    # WHEN the run fails after attempt 1 and its retry (attempt 2)
    assert finish(runtime, run_id) is RunState.FAILED
    assert runtime.store.get_task(run_id, "broken").attempt == 2
    # AND failed tasks are rerun
    runtime.scheduler.rerun(run_id)
    # THEN the rerun has its own retry: attempt 3 fails, attempt 4 succeeds
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    attempts = runtime.store.list_attempts(run_id, "broken")
    assert [(a.attempt, a.state) for a in attempts] == [
        (1, "failed"), (2, "failed"), (3, "failed"), (4, "succeeded"),
    ]  # fmt: skip
    # AND what had succeeded did not run again
    assert (shared_dir / "ok.log").read_text() == "ran\n"


def test_rerun_failed_runs_the_tasks_after_the_failed_one_again_after_it(
    runtime: LocalRuntime, shared_dir: Path
) -> None:
    # GIVEN extract fails until a marker exists; cleanup (all_done, in a pool) and alert
    # (one_failed) run after it whatever it does, load only if it succeeds; side is apart
    log, marker = shared_dir / "order.log", shared_dir / "fixed"
    runtime.scheduler.set_pool("tidy", 1)
    run_id = start(
        runtime,
        f"""
name: tidy_after
defaults: {{retries: 0}}
tasks:
  side: {{type: shell, command: "echo side >> {log}"}}
  extract: {{type: shell, command: "[ -e {marker} ] && echo extract >> {log}"}}
  cleanup:
    type: shell
    depends_on: [extract]
    trigger_rule: all_done
    pool: tidy
    command: echo cleanup >> {log}
  alert: {{type: shell, depends_on: [extract], trigger_rule: one_failed, command: "echo alert >> {log}"}}
  load: {{type: shell, depends_on: [extract], command: "echo load >> {log}"}}
""",
    )
    assert finish(runtime, run_id) is RunState.FAILED
    assert states(runtime, run_id) == {
        "side": "succeeded", "extract": "failed", "cleanup": "succeeded",
        "alert": "succeeded", "load": "upstream_failed",
    }  # fmt: skip
    first = log.read_text().split()
    # WHEN extract is fixed and the failed tasks are rerun
    marker.touch()
    runtime.scheduler.rerun(run_id)
    # THEN extract runs again and cleanup runs again after it; alert, which ran on the
    # failure, is skipped now that nothing failed; load runs; side is not run again
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    assert states(runtime, run_id) == {
        "side": "succeeded", "extract": "succeeded", "cleanup": "succeeded",
        "alert": "skipped", "load": "succeeded",
    }  # fmt: skip
    second = log.read_text().split()[len(first) :]
    assert sorted(second) == ["cleanup", "extract", "load"]
    assert second.index("extract") < second.index("cleanup")
    assert log.read_text().split().count("side") == 1
    cleanup = runtime.store.list_attempts(run_id, "cleanup")
    assert [(a.attempt, a.state) for a in cleanup] == [(1, "succeeded"), (2, "succeeded")]
    # AND the stored counters count each task once, and the pool holds nothing
    run = runtime.store.get_run(run_id)
    assert (run.n_tasks, run.n_done, run.n_failed, run.n_running) == (5, 5, 0, 0)
    assert {p.key: p.used for p in runtime.store.list_pools()} == {"/tidy": 0}


@pytest.fixture
def teapot() -> Iterator[str]:
    def respond(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        received = body or {}
        status = 418 if received.get("brew") == "coffee" else 201
        return status, {"echo": received, "auth": headers.get("Authorization")}

    with json_stub(respond) as url:
        yield url


@pytest.mark.parametrize(
    ("brew", "expected"), [("tea", RunState.SUCCEEDED), ("coffee", RunState.FAILED)]
)
def test_http_task_sends_rendered_request_and_checks_the_status(
    runtime: LocalRuntime, teapot: str, brew: str, expected: RunState
) -> None:
    run_id = start(
        runtime,
        f"""
name: brew
params: {{brew: tea}}
tasks:
  order:
    type: http
    method: POST
    url: {teapot}/pots
    headers: {{Authorization: "Bearer {{{{ params.brew }}}}-token"}}
    body: {{brew: "{{{{ params.brew }}}}"}}
    expected_status: [201]
""",
        brew=brew,
    )
    assert finish(runtime, run_id) is expected
    task = runtime.store.get_task(run_id, "order")
    if expected is RunState.SUCCEEDED:
        assert task.outputs == {
            "status_code": 201,
            "body": {"echo": {"brew": "tea"}, "auth": "Bearer tea-token"},
        }
    else:
        assert task.error is not None
        assert "HTTP 418" in task.error
        assert "expected 201" in task.error


def test_a_second_scheduler_on_one_home_refuses_to_start(tmp_path: Path) -> None:
    first = LocalRuntime(tmp_path / "home")
    with pytest.raises(
        HomeInUse, match=rf"in use by another Stratoflow scheduler \(pid {os.getpid()}\)"
    ):
        LocalRuntime(tmp_path / "home")
    first.close()
    second = LocalRuntime(tmp_path / "home")  # the lock goes with its holder
    second.close()


def test_finished_attempts_work_dirs_are_removed_and_close_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor_module, "SPARE_SECONDS", 0.5)
    rt = LocalRuntime(tmp_path / "home")
    try:
        tasks = "".join(
            f"  t{i}: {{type: shell, command: 'echo {i} > mine.txt'}}\n" for i in range(12)
        )
        run_id = start(rt, f"name: many\ntasks:\n{tasks}")
        assert finish(rt, run_id) is RunState.SUCCEEDED
        root = rt.executor.work_root
        # the reaper thread takes each after the loop has recorded its end: emptied and kept
        # as a spare of the run, then removed once the run has used none for SPARE_SECONDS
        assert wait_for(lambda: all(p.name.startswith(".spare.") for p in root.iterdir()))
        assert all(not any(p.iterdir()) for p in root.iterdir())
        assert wait_for(lambda: not any(root.iterdir())), sorted(p.name for p in root.iterdir())
        # released in the run's last turn and not reaped yet: close removes them
        again = start(rt, f"name: many\ntasks:\n{tasks}")
        assert finish(rt, again) is RunState.SUCCEEDED
    finally:
        rt.close()
    assert not any(root.iterdir())
    # the logs stay in the home
    assert len(list((tmp_path / "home" / "attempts" / run_id).glob("*.log"))) == 12


def test_work_dirs_left_by_a_stopped_scheduler_go_at_the_next_start_a_running_ones_stay(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    rt = LocalRuntime(home)
    run_id = start(rt, "name: s\ntasks:\n  slow: {type: shell, command: 'sleep 1.5; echo ok'}\n")
    rt.run_once(timeout=0)  # claims and starts `slow`
    (slow,) = rt.store.get_tasks(run_id, ["slow"])
    work = rt.executor.work_dir(run_id, "slow", slow.attempt)
    assert wait_for(work.exists)
    # an ended attempt whose removal was still pending when the scheduler stopped
    left = rt.executor.work_dir(run_id, "gone", 1)
    left.mkdir(mode=0o700)
    (left / "gone.1.exit").write_text("0\n")
    (left / "scratch").mkdir()
    rt.close()  # `slow` runs on without a scheduler
    assert work.exists()
    assert left.exists()

    rt = LocalRuntime(home)
    try:
        # the new scheduler removes what is left, not the dir of the attempt still running
        assert wait_for(lambda: not left.exists())
        assert work.exists()
        assert finish(rt, run_id) is RunState.SUCCEEDED
        assert "ok" in Path(rt.store.list_attempts(run_id, "slow")[0].log or "").read_text()
        assert wait_for(lambda: not work.exists())
    finally:
        rt.close()


def test_the_longest_ids_run_their_tasks(tmp_path: Path) -> None:
    # a 128-character workflow name and task id under a 250-character run id (a caller's
    # key) passed validation, then every attempt failed: "File name too long" (a work dir is
    # named <run>.<task>.<attempt>, and a file name holds 255 bytes)
    name, task = "w" * 128, "T" * 128
    text = (
        f"name: {name}\ntasks:\n  {task}: {{type: shell, command: 'echo hi > here.txt'}}\n"
        f"  after: {{type: python, depends_on: [{task}], code: 'outputs[\"k\"] = 1'}}\n"
    )
    rt = LocalRuntime(tmp_path / "home")
    try:
        version, _ = rt.scheduler.apply(text)
        run_id = f"default.{name}." + "k" * (250 - len(f"default.{name}."))
        assert len(run_id) == 250
        run, _ = rt.scheduler.trigger(version.project, version.name, run_id=run_id)
        assert finish(rt, run.id) is RunState.SUCCEEDED, states(rt, run.id)
        short = start(rt, text)  # and a run of the same workflow with a generated id
        assert finish(rt, short) is RunState.SUCCEEDED, states(rt, short)
    finally:
        rt.close()


def test_a_path_in_env_without_bash_says_values_are_not_expanded(tmp_path: Path) -> None:
    # "No such file or directory: 'bash'" left the user to guess that "$PATH" stayed as is
    text = (
        "name: envpath\ntasks:\n"
        "  t: {type: shell, retries: 0, command: 'true', env: {PATH: '/opt/tools/bin:$PATH'}}\n"
    )
    rt = LocalRuntime(tmp_path / "home")
    try:
        run_id = start(rt, text)
        assert finish(rt, run_id) is RunState.FAILED
        error = rt.store.get_task(run_id, "t").error or ""
    finally:
        rt.close()
    assert "bash is not on the task's PATH ('/opt/tools/bin:$PATH')" in error, error
    assert "not expanded" in error


@pytest.mark.parametrize("killed", [True, False], ids=["kill_sent", "died_before_the_kill"])
def test_an_attempt_stopped_just_before_the_scheduler_died_is_recorded_at_the_restart(
    tmp_path: Path, killed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped (the API, SIGTERM to `stratoflow run`), then the process dies before its
    task's killed attempt reports its end (or before the kill is even sent): the task is
    stopped, and the attempt is not left ``running`` for good. The next scheduler on the
    home ends it as a live one would have: stopped, its process gone."""
    home = tmp_path / "home"
    first = LocalRuntime(home)
    run_id = start(first, "name: stopped_late\ntasks: {t: {type: shell, command: 'sleep 30'}}\n")
    log = first.executor.log_path(run_id, "t", 1)
    first.run_until(lambda: log.exists() and b", pid " in log.read_bytes())
    pid = int(log.read_text().split(", pid ")[1].split()[0])
    if not killed:  # the process dies between the stop's commit and its kill
        monkeypatch.setattr(first.executor, "kill", lambda *_: None)
    first.scheduler.stop(run_id)
    first.close()  # no turn: the killed attempt's report is never applied
    [attempt] = _attempts(home, run_id)
    assert attempt.state == "running"  # as the dead scheduler left it
    monkeypatch.undo()
    second = LocalRuntime(home)
    try:
        assert wait_for(lambda: not pid_alive(pid))
        deadline = time.monotonic() + 10
        second.run_until(
            lambda: _attempts(home, run_id)[0].state != "running" or time.monotonic() > deadline
        )
        [attempt] = _attempts(home, run_id)
        assert (attempt.state, attempt.error) == ("stopped", "stopped")
        assert attempt.ended_at is not None
        assert states(second, run_id) == {"t": "stopped"}
        assert second.store.get_run(run_id).state is RunState.STOPPED
    finally:
        second.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _attempts(home: Path, run_id: str) -> list[Any]:
    from stratoflow.adapters.local.sqlite_store import SqliteStore

    store = SqliteStore(home / "stratoflow.db")
    try:
        return store.list_attempts(run_id)
    finally:
        store.close()
