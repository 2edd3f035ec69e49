"""A root server's tasks under Landlock cannot change what root owns outside what they may write.

Such a task is uid 0 without capabilities, and Landlock has no access right for chmod, utime
nor extended attributes: it could chmod 4755 a copy of a shell root owns, open the home, lock
another project out of its work dir. native/confine.c starts it in a mount namespace where
every mount is read-only but its work dir and the paths Landlock lets it write: there those
calls fail with EROFS, and in its work dir they work as before. Real tasks, started by the
executor as it starts them."""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import stat
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratoflow.adapters.local import sandbox, spawn
from stratoflow.adapters.local.executor import LocalExecutor
from stratoflow.engine import AttemptResult, RenderedTask
from stratoflow.ports import AttemptSpec


@pytest.fixture(autouse=True)
def _root_with_landlock() -> None:
    """Root, Landlock and native/confine.c built: skipped without them, but CI (CI=true)
    must have them, so there it fails."""
    missing = (
        "the server is not root" if os.geteuid() != 0
        else "this kernel has no Landlock" if sandbox.landlock_abi() < 1
        else f"native/confine.c is not built at {spawn.NATIVE_CONFINE} (make native)"
        if not spawn.native_available()
        else None
    )  # fmt: skip
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI=true: the isolation tests must run, not skip)")
        pytest.skip(missing)


class _Server:
    """An executor as a root server with Landlock makes it (the tasks of projects p and q)."""

    def __init__(self, tmp_path: Path, **kwargs: object) -> None:
        self.home = tmp_path / "home"
        self._done: dict[tuple[str, str], threading.Event] = {}
        self.results: dict[tuple[str, str], AttemptResult] = {}
        self.executor = LocalExecutor(
            self.home / "logs", self._report, work_root=tmp_path / "work", isolation="landlock",
            protect=self.home, **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip

    def _report(
        self, run_id: str, task_id: str, attempt: int, result: AttemptResult, log: str
    ) -> None:
        self.results[(run_id, task_id)] = result
        self._done[(run_id, task_id)].set()

    def spec(self, project: str, task: str, command: str) -> AttemptSpec:
        return AttemptSpec(
            f"{project}.r1", task, 1, RenderedTask("shell", {"command": command}, {}, {}),
            datetime(2026, 12, 6, tzinfo=UTC), "wf", project,
        )  # fmt: skip

    def run(self, project: str, task: str, command: str) -> tuple[AttemptResult, str]:
        """One shell task of ``project``, to its end: how it ended and its log."""
        key = (f"{project}.r1", task)
        self._done[key] = threading.Event()
        self.executor.dispatch(self.spec(project, task, command))
        assert self._done[key].wait(15), "the task did not end"
        return self.results[key], self.executor.log_path(*key, 1).read_text()

    def work_dir(self, project: str, task: str) -> Path:
        return Path(self.executor._work_text(f"{project}.r1", task, 1))

    def close(self) -> None:
        self.executor.close()


@pytest.fixture
def server(tmp_path: Path) -> object:
    made = _Server(tmp_path, keep_work_dirs=True)
    yield made
    made.close()


def _py(code: str) -> str:
    """A shell line running ``code`` with the server's Python (tasks may run it)."""
    return f"{sys.executable} -c {shlex.quote(code)} || echo PYTHON-FAILED\n"


# prints root-read-only when the task's / is a read-only mount (its own namespace's)
ROOT_READ_ONLY = (
    "grep -Eq '^[0-9]+ [0-9]+ [0-9:]+ [^ ]+ / ro[, ]' /proc/self/mountinfo && echo root-read-only\n"
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_task_cannot_change_the_mode_times_or_xattrs_of_a_root_file_outside(
    server: _Server, tmp_path: Path
) -> None:
    """A file root owns, outside the work dir, that the task cannot even read: chmod, utime
    and setxattr all fail with EROFS, and the file is as it was."""
    victim = tmp_path / "victim"
    victim.write_text("v")
    victim.chmod(0o600)
    os.utime(victim, (1_000_000_000, 1_000_000_000))
    before = os.stat(victim)
    code = (
        "import errno, os\n"
        f"p = {str(victim)!r}\n"
        "for name, call in [('chmod', lambda: os.chmod(p, 0o666)),\n"
        "                   ('utime', lambda: os.utime(p, (5, 5))),\n"
        "                   ('setxattr', lambda: os.setxattr(p, 'user.sf', b'1'))]:\n"
        "    try:\n"
        "        call()\n"
        "        print(name, 'CHANGED')\n"
        "    except OSError as exc:\n"
        "        print(name, errno.errorcode[exc.errno])\n"
    )
    result, log = server.run("p", "t", _py(code) + "touch " + str(victim) + " || echo touch-failed")
    assert result.exit_code == 0, log
    for line in ("chmod EROFS", "utime EROFS", "setxattr EROFS", "touch-failed"):
        assert line in log, log
    after = os.stat(victim)
    assert (_mode(victim), after.st_mtime_ns, after.st_atime_ns) == (
        0o600, before.st_mtime_ns, before.st_atime_ns,
    )  # fmt: skip
    with pytest.raises(OSError) as no_xattr:
        os.getxattr(victim, "user.sf")
    assert no_xattr.value.errno == errno.ENODATA


def test_a_task_cannot_make_a_root_binary_setuid(server: _Server, tmp_path: Path) -> None:
    """A copy of a shell root owns (what other users of the machine could run as root)."""
    shell = tmp_path / "sh"
    shutil.copy2("/bin/sh", shell)
    shell.chmod(0o755)
    _, log = server.run("p", "t", f"chmod 4755 {shell} && echo SETUID || echo refused\n")
    assert "refused" in log, log
    assert "SETUID" not in log, log
    assert _mode(shell) == 0o755
    assert not os.stat(shell).st_mode & stat.S_ISUID


def test_a_task_cannot_open_the_home_nor_lock_another_projects_work_dir(
    server: _Server,
) -> None:
    """chmod 0777 of the server's home, chmod 000 of another project's work dir (kept here,
    as a running task's is there), and of the work root that holds them all."""
    result, log = server.run("q", "other", "echo mine > mine\n")
    assert result.exit_code == 0, log
    other = server.work_dir("q", "other")
    work_root = other.parent
    modes = {p: _mode(p) for p in (server.home, other, work_root)}
    result, log = server.run(
        "p", "t",
        f"chmod 0777 {server.home} && echo HOME-OPENED\n"
        f"chmod 000 {other} && echo OTHER-LOCKED\n"
        f"chmod 0777 {work_root} && echo ROOT-OPENED\n"
        "echo done\n",
    )  # fmt: skip
    assert "done" in log, log
    assert "OPENED" not in log, log
    assert "LOCKED" not in log, log
    assert {p: _mode(p) for p in modes} == modes
    assert (other / "mine").read_text() == "mine\n"


def test_a_task_still_changes_what_it_may_write(server: _Server) -> None:
    """In its work dir: chmod +x, shutil.copy2 (which copies the mode and times) and a
    relative path's chmod; /dev/shm; /dev/null; its log through /dev/stderr; its exit
    record (the task ends as it should)."""
    shm = Path("/dev/shm") / f"sf-test-{os.getpid()}"
    code = (
        "import os, shutil\n"
        "open('src', 'w').write('s')\n"
        "os.utime('src', (1_000_000_000, 1_000_000_000))\n"
        "shutil.copy2('src', 'dst')\n"
        "os.makedirs('tree/inner')\n"
        "shutil.copytree('tree', 'tree2')\n"
        "print('copied', os.stat('dst').st_mtime == 1_000_000_000)\n"
    )
    result, log = server.run(
        "p", "t",
        "printf '#!/bin/sh\\necho ran\\n' > tool.sh && chmod +x tool.sh && ./tool.sh\n"
        + _py(code)
        + f"echo shared > {shm} && chmod 600 {shm} && echo shm-ok\n"
        "echo null > /dev/null && echo devnull-ok\n"
        "echo to-stderr >> /dev/stderr\n"
        + ROOT_READ_ONLY
        + "exit 3\n",
    )  # fmt: skip
    try:
        assert shm.read_text() == "shared\n"
        assert _mode(shm) == 0o600
    finally:
        shm.unlink(missing_ok=True)
    for line in ("ran", "copied True", "shm-ok", "devnull-ok", "to-stderr", "root-read-only"):
        assert line in log.splitlines(), log
    assert result.exit_code == 3, (result, log)  # its exit record, through its log
    work = server.work_dir("p", "t")
    assert _mode(work / "tool.sh") & 0o111
    assert os.stat(work / "dst").st_mtime == 1_000_000_000


def test_a_granted_write_path_stays_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STRATOFLOW_TASK_WRITE_PATHS: what Landlock grants stays writable, modes too."""
    granted = tmp_path / "granted"
    granted.mkdir()
    monkeypatch.setenv("STRATOFLOW_TASK_WRITE_PATHS", str(granted))
    made = _Server(tmp_path)
    try:
        _, log = made.run(
            "p", "t",
            f"echo g > {granted}/f && chmod 640 {granted}/f && echo granted-ok\n" + ROOT_READ_ONLY,
        )  # fmt: skip
    finally:
        made.close()
    assert {"granted-ok", "root-read-only"} <= set(log.splitlines()), log
    assert _mode(granted / "f") == 0o640


def test_no_mount_is_left_on_the_host(server: _Server, tmp_path: Path) -> None:
    """Each task's namespace is private and goes with it: after many tasks the host has no
    mount of theirs (their work dirs', /dev/shm's clones) and none more than before."""

    def mounts() -> list[str]:
        return Path("/proc/self/mountinfo").read_text().splitlines()

    def ours(lines: list[str]) -> list[str]:
        return [line for line in lines if str(tmp_path) in line or " /dev/shm " in line]

    before = mounts()
    for i in range(12):
        result, log = server.run("p", f"t{i}", "echo x > f\n" + ROOT_READ_ONLY)
        assert result.exit_code == 0, log
        assert "root-read-only" in log, log
    after = mounts()
    assert ours(after) == ours(before)
    assert not [line for line in after if str(tmp_path) in line]
    assert len(after) <= len(before)


def test_a_step_that_fails_fails_the_start(tmp_path: Path) -> None:
    """A writable path that cannot be cloned (not missing: under a file) stops the start
    with the step named; the task never runs, no child is left."""
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    cwd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    bad = spawn.Writable(["/etc/passwd/below"])
    missing = spawn.Writable([str(tmp_path / "missing")])
    try:
        with pytest.raises(OSError, match="open_tree") as failed:
            spawn.confined(["/bin/sh", "-c", "echo RAN"], {}, cwd, out, [], True,
                           read_only_but=bad)  # fmt: skip
        ok = spawn.confined(["/bin/sh", "-c", "echo missing-skipped"], {}, cwd, out, [], True,
                            read_only_but=missing)  # fmt: skip
        assert ok.wait() == 0
    finally:
        os.close(out)
        os.close(cwd)
    assert failed.value.errno == errno.ENOTDIR
    assert (tmp_path / "out").read_text() == "missing-skipped\n"


def test_a_server_whose_tasks_could_not_start_read_only_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the namespace cannot be made (here: unshare refused, as without CAP_SYS_ADMIN)
    every task would fail to start: the server says so once, as it starts."""

    def refused(cwd_fd: int, writable: spawn.Writable) -> None:
        raise OSError(errno.EPERM, "starting the task: unshare(CLONE_NEWNS): not permitted")

    monkeypatch.setattr(spawn, "check_read_only", refused)
    with pytest.raises(sandbox.IsolationError, match="CAP_SYS_ADMIN"):
        _Server(tmp_path)
    monkeypatch.undo()
    _Server(tmp_path).close()  # where it can: it starts
