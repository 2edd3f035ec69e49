"""A work dir whose attempt ended on its own is emptied and kept as a spare for a later
attempt of the same run (a rename instead of an rmdir and a mkdir): never for another run,
never before its attempt's group is gone, never handed over with anything in it, and removed
once the run stops using its spares or the executor closes."""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratoflow.adapters.local import executor as executor_module
from stratoflow.adapters.local.executor import LocalExecutor
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.engine import AttemptResult, AttemptStatus, RenderedTask, RunState
from stratoflow.ports import AttemptSpec

RUN, OTHER = "proj.wf.1", "proj.wf.2"


def _spec(task_id: str, command: str = "true", run_id: str = RUN) -> AttemptSpec:
    task = RenderedTask("shell", {"command": command}, {}, {})
    return AttemptSpec(run_id, task_id, 1, task, datetime(2026, 1, 1, tzinfo=UTC), "wf", "proj")


class _Reports:
    def __init__(self) -> None:
        self.got: dict[str, AttemptResult] = {}
        self.cond = threading.Condition()

    def __call__(
        self, run_id: str, task_id: str, attempt: int, result: AttemptResult, _: str
    ) -> None:
        with self.cond:
            self.got[f"{run_id}.{task_id}.{attempt}"] = result
            self.cond.notify_all()

    def wait(self, name: str, timeout: float = 20) -> AttemptResult:
        with self.cond:
            assert self.cond.wait_for(lambda: name in self.got, timeout), name
            return self.got[name]


@pytest.fixture
def reports() -> _Reports:
    return _Reports()


@pytest.fixture
def executor(tmp_path: Path, reports: _Reports) -> Iterator[LocalExecutor]:
    home = tmp_path / "home"
    home.mkdir()
    ex = LocalExecutor(
        home / "attempts", reports, isolation="none", work_root=tmp_path / "work", protect=home
    )
    yield ex
    ex.close()


def _entries(ex: LocalExecutor) -> list[str]:
    return sorted(p.name for p in ex.work_root.iterdir())


def _made(path: Path) -> Path:
    path.mkdir(mode=0o700)
    return path


def test_a_spare_is_emptied_and_serves_the_same_run_only(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    work = _made(executor.work_dir(RUN, "a", 1))
    (work / "a.1.out").write_text("x=1\n")
    outside = tmp_path / "outside"
    outside.write_text("kept")
    (work / "link").symlink_to(outside)
    work.chmod(0o755)
    inode = work.stat().st_ino
    assert executor._recycle(RUN, str(work))
    assert not work.exists()
    assert outside.read_text() == "kept"  # the link removed, not followed
    # another run gets a new directory; the spare stays in the pool
    other = executor.work_dir(OTHER, "a", 1)
    executor._make_work_dir(OTHER, str(other))
    assert other.stat().st_ino != inode
    # a later attempt of the run gets the spare: the same inode, empty, 0700
    later = executor.work_dir(RUN, "b", 1)
    executor._make_work_dir(RUN, str(later))
    st = later.stat()
    assert st.st_ino == inode
    assert not any(later.iterdir())
    assert stat.S_IMODE(st.st_mode) == 0o700
    # the pool is empty again: the next one is new
    again = executor.work_dir(RUN, "c", 1)
    executor._make_work_dir(RUN, str(again))
    assert again.stat().st_ino not in (inode, st.st_ino)


def test_a_dir_holding_a_directory_or_a_link_in_its_place_is_not_kept(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    nested = _made(executor.work_dir(RUN, "a", 1))
    (nested / "sub").mkdir()
    assert not executor._recycle(RUN, str(nested))
    target = _made(tmp_path / "target")
    (target / "f").write_text("kept")
    link = executor.work_dir(RUN, "b", 1)
    link.symlink_to(target)
    assert not executor._recycle(RUN, str(link))
    assert (target / "f").read_text() == "kept"
    assert executor._spares == {}


def test_a_spare_written_to_after_it_was_emptied_is_not_handed_over(
    executor: LocalExecutor,
) -> None:
    work = _made(executor.work_dir(RUN, "a", 1))
    assert executor._recycle(RUN, str(work))
    (spare,) = executor._spares[RUN]
    Path(spare, "planted").write_text("from an earlier task's leftover process")
    later = executor.work_dir(RUN, "b", 1)
    executor._make_work_dir(RUN, str(later))
    assert later.is_dir()
    assert not any(later.iterdir())
    assert not Path(spare).exists()


def test_a_run_keeps_at_most_its_share_of_spares(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor_module, "SPARES_PER_RUN", 2)
    dirs = [_made(executor.work_dir(RUN, f"t{i}", 1)) for i in range(3)]
    assert [executor._recycle(RUN, str(d)) for d in dirs] == [True, True, False]
    assert dirs[2].exists()  # left to the caller, which removes it


def test_ended_attempts_become_spares_stopped_ones_do_not_and_spares_expire(
    executor: LocalExecutor, reports: _Reports, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor_module, "SPARE_SECONDS", 0.5)
    executor.dispatch(_spec("done", "echo hi > mine.txt"))
    executor.dispatch(_spec("stopped", "sleep 30"))
    assert reports.wait(f"{RUN}.done.1").status is AttemptStatus.SUCCEEDED
    executor.kill(RUN, "stopped", 1)
    assert reports.wait(f"{RUN}.stopped.1").status is AttemptStatus.STOPPED
    executor.release(RUN, "done", 1)
    executor.release(RUN, "stopped", 1)
    executor.reap()
    # the ended one's dir is a spare, emptied; the stopped one's (its group perhaps still in
    # its grace period) is removed
    names = _entries(executor)
    assert len(names) == 1, names
    assert names[0].startswith(f".spare.{RUN}.")
    assert not any((executor.work_root / names[0]).iterdir())
    # unused for SPARE_SECONDS: the reaper removes it by itself
    deadline = time.monotonic() + 10
    while _entries(executor) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _entries(executor) == []


def test_close_removes_the_spares(executor: LocalExecutor) -> None:
    for i in range(3):
        assert executor._recycle(RUN, str(_made(executor.work_dir(RUN, f"t{i}", 1))))
    assert len(_entries(executor)) == 3
    executor.close()
    assert _entries(executor) == []


def test_close_does_not_wait_out_the_reapers_gathering_pause(
    tmp_path: Path, reports: _Reports, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the reaper, woken by a release, waits a moment for more; a close meanwhile ends that
    # wait (it held up the end of every `stratoflow run` by up to the whole pause)
    monkeypatch.setattr(executor_module, "REAP_GATHER_SECONDS", 60.0)
    home = tmp_path / "home"
    home.mkdir()
    ex = LocalExecutor(
        home / "attempts", reports, isolation="none", work_root=tmp_path / "work", protect=home
    )
    released = _made(ex.work_dir(RUN, "a", 1))
    ex.release(RUN, "a", 1)
    time.sleep(0.3)  # the reaper wakes and pauses (it pauses only if not closed yet)
    started = time.monotonic()
    ex.close()
    assert time.monotonic() - started < 20  # not the pause's 60 s (nor the join's 30)
    assert not released.exists()


def test_kept_work_dirs_are_not_recycled(tmp_path: Path, reports: _Reports) -> None:
    home = tmp_path / "home"
    home.mkdir()
    ex = LocalExecutor(
        home / "attempts", reports, isolation="none", work_root=tmp_path / "work",
        protect=home, keep_work_dirs=True,
    )  # fmt: skip
    try:
        ex.dispatch(_spec("a", "echo hi > mine.txt"))
        reports.wait(f"{RUN}.a.1")
        ex.release(RUN, "a", 1)
        ex.reap()
        assert (ex.work_dir(RUN, "a", 1) / "mine.txt").read_text() == "hi\n"
        assert ex._recyclable == {}
    finally:
        ex.close()


def test_a_chain_reuses_its_work_dirs_and_each_task_starts_in_an_empty_one(
    tmp_path: Path,
) -> None:
    """End to end: every task checks that its work dir is empty, leaves a file in it and
    reports the directory's inode; later tasks of the chain run in earlier ones' dirs."""
    n = 8
    command = (
        'test -z "$(ls -A)" || exit 3; echo x > left.txt; '
        'echo "ino=$(stat -c %i .)" >> "$STRATOFLOW_OUTPUT"; sleep 0.15'
    )
    tasks = "".join(
        f"  t{i}:\n    type: shell\n    command: '{command}'\n"
        + (f"    depends_on: [t{i - 1}]\n" if i else "")
        for i in range(n)
    )
    rt = LocalRuntime(tmp_path / "home")
    try:
        version, _ = rt.scheduler.apply(f"name: chain\ntasks:\n{tasks}")
        run, _ = rt.scheduler.trigger(version.project, version.name)
        deadline = time.monotonic() + 60
        rt.run_until(lambda: rt.store.get_run(run.id).state.terminal or time.monotonic() > deadline)
        assert rt.store.get_run(run.id).state is RunState.SUCCEEDED
        inodes = [t.outputs["ino"] for t in rt.store.get_tasks(run.id)]
        assert len(inodes) == n
        assert len(set(inodes)) < n, inodes  # some directory served two attempts
    finally:
        rt.close()
    assert not any(rt.executor.work_root.iterdir())


def test_reuse_can_be_turned_off(
    tmp_path: Path, reports: _Reports, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATOFLOW_REUSE_WORK_DIRS", "0")
    home = tmp_path / "home"
    home.mkdir()
    ex = LocalExecutor(
        home / "attempts", reports, isolation="none", work_root=tmp_path / "work", protect=home
    )
    try:
        ex.dispatch(_spec("a", "echo hi > mine.txt"))
        reports.wait(f"{RUN}.a.1")
        ex.release(RUN, "a", 1)
        ex.reap()
        assert _entries(ex) == []  # removed, not kept as a spare
        assert ex._spares == {}
    finally:
        ex.close()


def test_an_attempt_that_cannot_start_is_reported_failed_not_left_waiting(
    executor: LocalExecutor, reports: _Reports
) -> None:
    """A NUL in the command (Popen: ValueError) was only logged: the attempt never
    reported and its run waited for ever."""
    executor.dispatch(_spec("nul", "echo a\x00b"))
    result = reports.wait(f"{RUN}.nul.1", timeout=10)
    assert result.status is AttemptStatus.FAILED
    assert "could not start the task" in (result.error or "")
    assert "null" in (result.error or "")


def test_directories_a_task_took_its_rights_off_are_given_back_links_not_followed(
    tmp_path: Path,
) -> None:
    from stratoflow.adapters.local.executor import _owner_rights, _remove_dir

    outside = _made(tmp_path / "outside")
    outside.chmod(0o500)
    work = _made(tmp_path / "work")
    inner = _made(work / "a")
    _made(inner / "b")
    (work / "link").symlink_to(outside)
    for d in (inner / "b", inner, work):
        d.chmod(0)
    _owner_rights(str(work))
    assert [stat.S_IMODE(d.stat().st_mode) for d in (work, inner, inner / "b")] == [0o700] * 3
    assert stat.S_IMODE(outside.stat().st_mode) == 0o500  # the link's target untouched
    work.chmod(0)
    _remove_dir(str(work))
    assert not work.exists()
    assert outside.is_dir()


def test_giving_rights_back_chmods_no_link_swapped_in_after_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process left running in the work dir swaps a directory for a link to one outside
    between the server's look at it and its chmod: the chmod still reaches the directory
    it looked at (a path looked up again would follow the link: root chmods its target)."""
    import os

    from stratoflow.adapters.local.executor import _owner_rights

    outside = _made(tmp_path / "outside")
    outside.chmod(0o500)
    work = _made(tmp_path / "work")
    inner = _made(work / "a")
    inner.chmod(0o500)
    real = os.chmod
    swapped: list[str] = []

    def chmod(path: str, mode: int, **kwargs: object) -> None:
        if not swapped and os.path.samestat(os.stat(path), os.lstat(inner)):
            os.rename(inner, work / "a.moved")
            inner.symlink_to(outside)
            swapped.append(str(path))
        real(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "chmod", chmod)
    _owner_rights(str(work))
    monkeypatch.undo()
    assert swapped
    assert stat.S_IMODE(outside.stat().st_mode) == 0o500  # the link's target untouched
    assert stat.S_IMODE((work / "a.moved").stat().st_mode) == 0o700


def test_the_reaper_lives_on_after_a_failed_round(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = executor.reap
    calls: list[int] = []

    def failing_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise PermissionError("a work dir the server may not list")
        real()

    monkeypatch.setattr(executor, "reap", failing_once)
    first = _made(executor.work_dir(RUN, "a", 1))
    executor.release(RUN, "a", 1)
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.02)
    second = _made(executor.work_dir(RUN, "b", 1))
    executor.release(RUN, "b", 1)
    while second.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not second.exists()
    assert not first.exists()  # taken again by the next round


def test_a_link_left_in_a_work_dir_fails_the_start_naming_the_resource(
    tmp_path: Path, reports: _Reports, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a process of an earlier attempt, left running in a reused work dir, can leave
    where a resource's directory goes: a link. The attempt fails (not retried: the run's
    own doing), naming the resource and the part, not the server's place of the work dir,
    and nothing is written through the link."""
    from stratoflow.adapters.local.resources import LocalResources

    home = _made(tmp_path / "home")
    store = LocalResources(home / "resources")
    store.put("proj", "d/x", b"data")
    store.pin(RUN, "proj", ["d/x"])
    outside = _made(tmp_path / "outside")
    ex = LocalExecutor(
        home / "attempts", reports, isolation="none", work_root=tmp_path / "work",
        protect=home, resources=store,
    )  # fmt: skip
    made = ex._make_work_dir

    def make_work_dir(run_id: str, work: str) -> None:
        made(run_id, work)
        Path(work, "d").symlink_to(outside)  # as the leftover would, after the check

    monkeypatch.setattr(ex, "_make_work_dir", make_work_dir)
    try:
        task = RenderedTask("shell", {"command": "true", "resources": ["d/x"]}, {}, {})
        ex.dispatch(AttemptSpec(RUN, "t", 1, task, datetime(2026, 1, 1, tzinfo=UTC), "wf", "proj"))
        result = reports.wait(f"{RUN}.t.1")
    finally:
        ex.close()
    assert result.status is AttemptStatus.FAILED
    assert not result.retryable
    assert result.error is not None
    assert result.error.startswith("resource 'd/x': 'd' in the task's working directory is not")
    assert str(tmp_path) not in result.error
    assert "Traceback" not in result.error
    assert list(outside.iterdir()) == []
