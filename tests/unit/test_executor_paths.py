"""The local executor's per-attempt paths made cheaper keep what they did: the environment and
argv posix_spawn gets, a lone start under Landlock as root, the start threads' hand-offs, the
disk-full check of an ended attempt, the removal of its work dir."""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.local import executor as executor_module
from stratoflow.adapters.local import sandbox, spawn
from stratoflow.adapters.local.executor import LocalExecutor, _remove_dir, _StartThreads
from stratoflow.engine import AttemptStatus, RenderedTask
from stratoflow.ports import AttemptSpec

RUN = "proj.wf.1"


def _spec(task_id: str) -> AttemptSpec:
    task = RenderedTask("shell", {"command": "true"}, {}, {})
    return AttemptSpec(RUN, task_id, 1, task, datetime(2026, 1, 1, tzinfo=UTC), "wf", "proj")


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[LocalExecutor]:
    home = tmp_path / "home"
    home.mkdir()
    ex = LocalExecutor(
        home / "attempts",
        lambda *_: None,
        isolation="none",
        work_root=tmp_path / "work",
        protect=home,
    )
    yield ex
    ex.close()


def test_values_are_encoded_as_fsencode_does_and_a_nul_is_refused() -> None:
    values = ["/bin/bash", "", "é=ü", "caf\udce9", "PATH=/usr/bin:/bin", "x" * 700]
    array = spawn._encoded(values)
    assert [array[i] for i in range(len(values))] == [os.fsencode(v) for v in values]
    assert ctypes.cast(array, ctypes.POINTER(ctypes.c_void_p))[len(values)] is None  # the NULL
    assert ctypes.cast(spawn._encoded([]), ctypes.POINTER(ctypes.c_void_p))[0] is None
    for bad in (["a", "b\0c"], ["\0"], ["A=1\0B=2"]):
        with pytest.raises(spawn.Unsupported):
            spawn._encoded(bad)


def test_an_empty_work_dir_is_removed_without_listing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed: list[str] = []
    real = os.listdir

    def listdir(path: Any) -> list[str]:
        listed.append(str(path))
        return real(path)

    monkeypatch.setattr(executor_module.os, "listdir", listdir)
    empty, files, nested = tmp_path / "empty", tmp_path / "files", tmp_path / "nested"
    for d in (empty, files, nested):
        d.mkdir()
    (files / "t.1.out").write_text("a=1\n")
    (files / "link").symlink_to(tmp_path / "elsewhere")
    (nested / "sub").mkdir()
    (nested / "sub" / "f").write_text("x")
    (tmp_path / "elsewhere").write_text("kept")
    _remove_dir(str(empty))
    assert listed == []  # one rmdir, no listing
    _remove_dir(str(files))
    _remove_dir(str(nested))
    _remove_dir(str(tmp_path / "missing"))
    assert not empty.exists()
    assert not files.exists()
    assert not nested.exists()
    assert (tmp_path / "elsewhere").read_text() == "kept"  # the link removed, not followed


def test_an_ended_attempt_looks_up_its_file_system_once_and_still_sees_it_full(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = executor.work_dir(RUN, "t", 1)
    work.mkdir(parents=True)
    executor.run_dir(RUN).mkdir(parents=True)
    looked: list[str] = []
    full: set[str] = set()
    real = os.statvfs

    def statvfs(path: Any) -> Any:
        looked.append(str(path))
        st = real(path)
        if str(path) not in full:
            return st
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, 0, 0, *st[5:]))

    monkeypatch.setattr(executor_module.os, "statvfs", statvfs)
    assert executor.result(RUN, "t", 1, 0).status is AttemptStatus.SUCCEEDED
    assert looked == [str(executor.run_dir(RUN))]  # logs and work dirs share tmp_path's

    full.add(str(executor.run_dir(RUN)))
    result = executor.result(RUN, "t", 1, 3)
    assert result.status is AttemptStatus.FAILED
    assert result.exit_code == 3
    assert f"the file system of {executor.run_dir(RUN)} is full" in (result.error or "")

    # on file systems of their own, each is looked up: the work dir's full is seen
    monkeypatch.setattr(executor, "_one_fs", False)
    full.clear()
    full.add(str(work))
    looked.clear()
    result = executor.result(RUN, "t", 1, 0)
    assert looked == [str(executor.run_dir(RUN)), str(work)]
    assert result.status is AttemptStatus.FAILED
    assert f"the file system of {work} is full" in (result.error or "")


def test_the_start_threads_run_every_batch_handed_over_before_they_stop() -> None:
    done: list[int] = []
    names: set[str] = set()
    started: list[str] = []

    def batch(n: int) -> None:
        time.sleep(0.001)
        names.add(threading.current_thread().name)
        done.append(n)

    threads = _StartThreads(3, "test-start", lambda: started.append("x"))
    for n in range(30):
        threads.submit(batch, n)
    threads.submit(lambda _: 1 / 0, None)  # a failing batch stops none of them
    threads.shutdown()
    assert sorted(done) == list(range(30))
    assert names <= {"test-start_0", "test-start_1", "test-start_2"}
    assert started == ["x"] * 3
    with pytest.raises(RuntimeError):
        threads.submit(batch, 99)


def _started_on(executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch) -> str:
    where: list[str] = []

    def spawn_here(spec: AttemptSpec, live: Any) -> None:
        where.append(threading.current_thread().name)

    monkeypatch.setattr(executor, "_spawn", spawn_here)
    executor.dispatch_many([_spec("lone")])
    executor._spawner.shutdown()
    return where[0]


@pytest.mark.parametrize(
    ("cpu_max", "cfs", "affinity", "threads"),
    [
        (None, None, 2, 2),  # no quota: one per core of the affinity mask
        (None, None, 16, 4),  # at most four
        ("max 100000", None, 3, 3),  # v2, unlimited
        ("150000 100000", None, 8, 2),  # v2: --cpus=1.5 counts as 2
        ("50000 100000", None, 8, 1),  # v2: half a CPU, one thread
        (None, ("-1", "100000"), 2, 2),  # v1, unlimited
        (None, ("100000", "100000"), 8, 1),  # v1: one CPU
        ("garbage", ("100000", "100000"), 8, 1),  # an unreadable v2 file: v1's quota
    ],
)
def test_start_threads_follow_the_cores_and_a_cgroup_quota(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cpu_max: str | None,
    cfs: tuple[str, str] | None,
    affinity: int,
    threads: int,
) -> None:
    v2, quota, period = tmp_path / "cpu.max", tmp_path / "quota", tmp_path / "period"
    if cpu_max is not None:
        v2.write_text(cpu_max + "\n")
    if cfs is not None:
        quota.write_text(cfs[0] + "\n")
        period.write_text(cfs[1] + "\n")
    monkeypatch.setattr(executor_module, "CPU_MAX_FILES", (v2,))
    monkeypatch.setattr(executor_module, "CFS_FILES", (quota, period))
    monkeypatch.setattr(executor_module.os, "sched_getaffinity", lambda _: set(range(affinity)))
    assert executor_module._start_thread_count() == threads


def test_a_lone_start_stays_on_the_callers_thread_when_no_capability_is_dropped(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _started_on(executor, monkeypatch) == threading.current_thread().name


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
@pytest.mark.skipif(sandbox.landlock_abi() < 1, reason="this kernel has no Landlock")
def test_a_lone_start_under_landlock_as_root_goes_to_a_start_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its confining thread, made there, inherits an empty bounding set; made on a thread
    whose set is full it would drop ~40 capabilities itself."""
    home = tmp_path / "home"
    home.mkdir()
    ex = LocalExecutor(
        home / "attempts",
        lambda *_: None,
        isolation="landlock",
        work_root=tmp_path / "work",
        protect=home,
    )
    try:
        assert not sandbox.bounding_set_empty()
        assert _started_on(ex, monkeypatch).startswith("stratoflow-spawn_")
    finally:
        ex.close()


def test_a_task_file_is_read_only_when_it_is_a_regular_file_and_a_missing_one_is_not_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stratoflow import taskexec

    opened: list[str] = []
    real_open = os.open

    def counting_open(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(taskexec.os, "open", counting_open)
    (tmp_path / "out").write_text("a=1\n")
    (tmp_path / "secret").write_text("not the task's")
    (tmp_path / "link").symlink_to(tmp_path / "secret")
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    assert taskexec.read_task_file(tmp_path / "missing") is None
    assert taskexec.read_task_file(str(tmp_path / "dangling")) is None
    assert opened == []  # neither was opened
    assert taskexec.read_task_file(tmp_path / "out") == "a=1\n"
    assert taskexec.read_task_file(tmp_path / "link") is None  # a link is never followed
    assert taskexec.read_task_file(tmp_path / "fifo") is None  # nor waited on
    assert taskexec.read_task_file(tmp_path / "dir") is None


def _target(fd: int) -> str | None:
    """What the descriptor ``fd`` of this process is (its /proc link), None if closed."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def test_close_leaves_no_descriptor_of_the_watcher_open(tmp_path: Path) -> None:
    """Its epoll, its wake pipe and the pidfd of each attempt still running (left to run,
    as a server's restart leaves them) are closed; a kill arriving after close watches
    nothing (no descriptor opened for it stays); a second close closes nothing again."""
    home = tmp_path / "home"
    home.mkdir()
    ex = LocalExecutor(
        home / "attempts", lambda *_: None, isolation="none", work_root=tmp_path / "work",
        protect=home,
    )  # fmt: skip
    task = RenderedTask("shell", {"command": "sleep 30"}, {}, {})
    ex.dispatch(AttemptSpec(RUN, "long", 1, task, datetime(2026, 1, 1, tzinfo=UTC), "wf", "proj"))
    deadline = time.monotonic() + 10
    while not ex._live and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = next(iter(ex._live.values())).pid
    own = [ex._epoll.fileno(), ex._wake_r, ex._wake_w, *ex._live]
    targets = {fd: _target(fd) for fd in own}
    assert all(targets.values())
    try:
        ex.close()
        # each is closed, or (a number taken again meanwhile) another file's
        assert all(_target(fd) != targets[fd] for fd in own)
        opened: list[int] = []
        real_pidfd_open = os.pidfd_open

        def pidfd_open(p: int, flags: int = 0) -> int:
            opened.append(fd := real_pidfd_open(p, flags))
            return fd

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(executor_module.os, "pidfd_open", pidfd_open)
            ex._watch_pid(executor_module._Live(RUN, "long", 1, pid=pid, report=False))
        assert len(opened) == 1
        assert _target(opened[0]) is None  # closed at once: watched by nothing
        # a second close closes nothing again: the numbers may be other files' by now
        other_r, other_w = os.pipe()
        try:
            closed: list[int] = []
            real_close = os.close
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(
                    executor_module.os, "close", lambda fd: (closed.append(fd), real_close(fd))[0]
                )
                ex.close()
            assert closed == []
            os.fstat(other_r)
            os.fstat(other_w)
        finally:
            os.close(other_r)
            os.close(other_w)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, 9)


def test_a_run_dir_is_named_by_its_id_when_it_fits_else_by_a_digest_of_it() -> None:
    """A run id of up to 255 characters names its directory as before (a home's runs find
    their logs where they are); a longer one (a project and a workflow of 128 make ids of
    up to 300) a head and a digest, which is unique, stable, names itself and stands for
    the run in a work dir's name too (recovery finds a run's processes by that name)."""
    run_dir_name, work_name = executor_module._run_dir_name, executor_module._work_name
    fits = "p" * 120 + "." + "w" * 134
    assert run_dir_name(fits) == fits
    long_ids = [f"{'p' * 128}.{'w' * 128}-20261207T031537-{tail}" for tail in ("d84dc4", "d84dc5")]
    names = [run_dir_name(run_id) for run_id in long_ids]
    assert len(set(names)) == 2
    assert all(len(n) < executor_module._NAME_MAX for n in names)
    assert names == [run_dir_name(run_id) for run_id in long_ids]  # the same every time
    for run_id, name in zip(long_ids, names, strict=True):
        assert name.startswith("p" * 64)
        assert "~" in name  # no run id holds a '~'
        assert run_dir_name(name) == name
        assert work_name(name, "T" * 128, 7) == work_name(run_id, "T" * 128, 7)
        assert executor_module._RUN_DIR.match(name.encode())


@pytest.mark.parametrize(
    "run_id", ["-p.w-20261207T031537-d84dc4", "_p.w.k", f"{'p' * 128}.{'w' * 128}.{'k' * 42}"]
)
def test_every_run_id_a_project_can_have_is_one_recovery_takes(run_id: str) -> None:
    """Recovery reads run ids from processes' environments, and takes only what a run id
    can be: a project may start with '-' or '_', and ids reach 300 characters."""
    assert executor_module._RUN_ID.match(run_id.encode())
    assert executor_module._RUN_DIR.match(executor_module._run_dir_name(run_id).encode())
    assert not executor_module._RUN_ID.match(b"../x")
