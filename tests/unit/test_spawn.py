"""Tasks started through glibc's posix_spawn (:mod:`stratoflow.adapters.local.spawn`): the
executor uses it, and a task started that way is as confined as one started by ``Popen``."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.logframe import framed, unpid

from stratoflow.adapters.local import executor as executor_module
from stratoflow.adapters.local import sandbox, spawn
from stratoflow.adapters.local.executor import LocalExecutor
from stratoflow.engine import AttemptResult, RenderedTask
from stratoflow.ports import AttemptSpec

needs_spawn = pytest.mark.skipif(not spawn.available(), reason="glibc has no posix_spawn extras")
needs_landlock = pytest.mark.skipif(sandbox.landlock_abi() < 1, reason="no Landlock here")


@pytest.fixture
def inherited_fd(tmp_path: Path) -> Iterator[int]:
    """A descriptor of this process that a child would inherit (not close-on-exec)."""
    fd = os.open(tmp_path / "inherited", os.O_WRONLY | os.O_CREAT, 0o600)
    os.set_inheritable(fd, True)
    yield fd
    os.close(fd)


def _run_task(
    tmp_path: Path,
    command: str,
    *,
    posix_spawn: bool,
    native: bool = False,
    isolation: str = "landlock",
    work_root: Path | None = None,
) -> tuple[AttemptResult, str]:
    """One shell task through an executor (started through posix_spawn or not; confined in
    the child by native/confine.c or not): how it ended and its log."""
    done = threading.Event()
    got: list[AttemptResult] = []

    def report(run_id: str, task_id: str, attempt: int, result: AttemptResult, log: str) -> None:
        got.append(result)
        done.set()

    home = tmp_path / "home"
    executor = LocalExecutor(
        home / "logs",
        report,
        work_root=work_root or tmp_path / "work",
        isolation=isolation,
        protect=home,
    )
    executor._posix_spawn = posix_spawn and executor._posix_spawn
    executor._native = native and executor._native
    try:
        spec = AttemptSpec(
            "p.r1", "t", 1, RenderedTask("shell", {"command": command}, {}, {}),
            datetime(2026, 12, 4, tzinfo=UTC), "wf", "p",
        )  # fmt: skip
        executor.dispatch(spec)
        assert done.wait(10), "the task did not end"
        log = executor.log_path("p.r1", "t", 1).read_text()
    finally:
        executor.close()
    return got[0], log


def _probe(secret: Path, fd: int) -> str:
    return (
        f"cat {secret} 2>/dev/null && echo READ || echo denied\n"
        f"[ -e /proc/$$/fd/{fd} ] && echo inherited || echo no-fd\n"
        "readlink /proc/$$/fd/0\n"
        "[ \"$(cut -d' ' -f6 /proc/$$/stat)\" = $$ ] && echo own-session\n"
        "echo to-stderr >> /dev/stderr\n"
        "echo written > here && cat here\n"
    )


def spawn_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv of each start through posix_spawn from now on (the start still happens)."""
    calls: list[list[str]] = []
    real = spawn.spawn

    def counted(argv: list[str], *args: object) -> spawn.Spawned:
        calls.append(list(argv))
        return real(argv, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(spawn, "spawn", counted)
    return calls


def confined_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv of each start confined in the child (:func:`spawn.confined`) from now on."""
    calls: list[list[str]] = []
    real = spawn.confined

    def counted(argv: list[str], *args: Any, **kwargs: Any) -> spawn.Spawned:
        calls.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(spawn, "confined", counted)
    return calls


def needs_native() -> None:
    """native/confine.c built (`make native`): CI builds it, so there its absence fails."""
    if not spawn.native_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"native/confine.c is not built at {spawn.NATIVE_CONFINE} (make native)")
        pytest.skip("native/confine.c is not built (make native)")


@needs_landlock
@pytest.mark.parametrize("start", ["native", "posix_spawn", "popen"])
def test_a_landlocked_task_is_confined_however_it_was_started(
    tmp_path: Path, inherited_fd: int, monkeypatch: pytest.MonkeyPatch, start: str
) -> None:
    """In the child by native/confine.c (no thread of the scheduler's), or from a throwaway
    thread that starts it through posix_spawn or Popen: the same confinement."""
    if start == "native":
        needs_native()
    if start != "popen" and not spawn.available():
        pytest.skip("glibc has no posix_spawn extras")
    secret = tmp_path / "secret"
    secret.write_text("s")
    calls, in_child = spawn_calls(monkeypatch), confined_calls(monkeypatch)
    threads = []
    real_thread = executor_module._thread.start_new_thread

    def counted_thread(*args: Any) -> Any:
        threads.append(args)
        return real_thread(*args)

    monkeypatch.setattr(executor_module._thread, "start_new_thread", counted_thread)
    result, log = _run_task(
        tmp_path, _probe(secret, inherited_fd) + _STATUS, posix_spawn=start != "popen",
        native=start == "native",
    )  # fmt: skip
    assert result.exit_code in (0, None), (result, log)
    # the path taken is the one asked for
    assert (len(in_child), len(calls)) == {"native": (1, 0), "posix_spawn": (0, 1)}.get(
        start, (0, 0)
    )
    assert len(threads) == (0 if start == "native" else 1)  # no confining thread
    lines = log.splitlines()
    status = dict(line.split(":\t") for line in lines if line.startswith(_FIELDS))
    expected = "denied\nno-fd\n/dev/null\nown-session\nto-stderr\nwritten\n"
    kept = "\n".join(line for line in lines if not line.startswith(_FIELDS)) + "\n"
    assert unpid(kept) == framed("t", expected), log
    assert secret.read_text() == "s"
    assert status["NoNewPrivs"] == "1"
    assert int(status["SigBlk"], 16) == 0
    assert not int(status["SigIgn"], 16) & (1 << (signal.SIGPIPE - 1))
    if os.geteuid() == 0:  # root gives up every capability, and can get none back
        assert {k: int(status[k], 16) for k in ("CapEff", "CapPrm", "CapBnd")} == dict.fromkeys(
            ("CapEff", "CapPrm", "CapBnd"), 0
        )


_FIELDS = ("NoNewPrivs", "SigBlk", "SigIgn", "CapEff", "CapPrm", "CapBnd")
_STATUS = f"grep -E '^({'|'.join(_FIELDS)}):' /proc/self/status\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.parametrize("posix_spawn", [True, False])
def test_a_task_with_its_projects_uid_is_started_through_setpriv_either_way(
    tmp_path: Path, inherited_fd: int, monkeypatch: pytest.MonkeyPatch, posix_spawn: bool
) -> None:
    if shutil.which("setpriv", path=os.defpath + ":/usr/sbin:/sbin") is None:
        pytest.skip("no setpriv here")
    if posix_spawn and not spawn.available():
        pytest.skip("glibc has no posix_spawn extras")
    # shell tasks only: the test's Python need not be reachable by the task's uid
    monkeypatch.setattr(sandbox, "reachable_by_others", lambda paths: True)
    secret = tmp_path / "secret"
    secret.write_text("s")
    secret.chmod(0o600)
    calls = spawn_calls(monkeypatch)
    probe = _probe(secret, inherited_fd).replace("echo to-stderr >> /dev/stderr\n", "")
    # a work root the task's uid can reach (pytest's tmp_path is under a 0700 directory)
    reachable = Path(tempfile.mkdtemp(prefix="sf-test-spawn-"))
    reachable.chmod(0o711)
    try:
        result, log = _run_task(
            tmp_path, f"id -u; id -G; {probe}", posix_spawn=posix_spawn, isolation="user",
            work_root=reachable / "work",
        )  # fmt: skip
    finally:
        shutil.rmtree(reachable, ignore_errors=True)
    assert result.exit_code in (0, None), (result, log)
    assert len(calls) == (1 if posix_spawn else 0)
    assert calls == [] or Path(calls[0][0]).name == "setpriv"
    uid = str(sandbox.DEFAULT_UID_BASE)
    assert unpid(log) == framed(
        "t", f"{uid}\n{uid}\ndenied\nno-fd\n/dev/null\nown-session\nwritten\n"
    ), log


@needs_spawn
def test_a_spawned_task_ends_as_popen_reports_it(tmp_path: Path) -> None:
    """Its exit code, minus the signal that killed it; an exec that fails is the OSError
    Popen raises; what posix_spawn cannot take is refused for Popen to handle."""
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    cwd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    bash = "/bin/bash"
    try:
        ends = [
            spawn.spawn([bash, "-c", code], {"PATH": os.defpath}, cwd, out).wait()
            for code in ("exit 3", "kill -TERM $$", "trap '' PIPE; pwd; echo $PATH")
        ]
        with pytest.raises(FileNotFoundError):
            spawn.spawn([str(tmp_path / "nothing")], {}, cwd, out)
        with pytest.raises(spawn.Unsupported):
            spawn.spawn(["bash", "-c", "true"], {}, cwd, out)  # a bare name: Popen's PATH search
        with pytest.raises(spawn.Unsupported):
            spawn.spawn([bash, "-c", "true"], {"A=B": "1"}, cwd, out)
        with pytest.raises(spawn.Unsupported):
            spawn.spawn([bash, "-c", "true\0"], {}, cwd, out)
    finally:
        os.close(out)
        os.close(cwd)
    assert ends == [3, -signal.SIGTERM, 0]
    assert (tmp_path / "out").read_text() == f"{tmp_path}\n{os.defpath}\n"


@needs_spawn
def test_a_spawned_task_gets_sigpipe_back_to_its_default(tmp_path: Path) -> None:
    """Python ignores SIGPIPE, and an ignored signal stays ignored across exec: a task must
    get it back (Popen's restore_signals), or `yes | head -1` would never end."""
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    cwd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        code = "grep -E '^Sig(Ign|Blk)' /proc/self/status"
        spawn.spawn(["/bin/bash", "-c", code], {}, cwd, out).wait()
    finally:
        os.close(out)
        os.close(cwd)
    status = dict(line.split(":\t") for line in (tmp_path / "out").read_text().splitlines())
    assert not int(status["SigIgn"], 16) & (1 << (signal.SIGPIPE - 1)), status
    assert not int(status["SigIgn"], 16) & (1 << (signal.SIGXFSZ - 1)), status
    assert int(status["SigBlk"], 16) == 0, status


@needs_landlock
def test_the_landlock_rules_of_an_attempt_may_be_given_by_its_descriptors(tmp_path: Path) -> None:
    """The executor adds the write rules of the work dir and the log through the descriptors
    it holds: the task writes there, and nowhere else, as with the rules made from paths."""
    import functools
    import subprocess

    from stratoflow.adapters.local.executor import _confined

    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    other.mkdir()
    log = tmp_path / "log"
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    work_fd = os.open(work, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    landlock = sandbox.Landlock(
        sandbox.landlock_abi(),
        sandbox.readable_paths(["/usr", "/bin", "/lib", "/lib64", "/etc"], tmp_path),
        [],
    )
    ruleset = landlock.ruleset(work_fd, log_fd)
    code = (
        f"echo w > {work}/f && echo work-ok; echo l >> {log} && echo log-ok; "
        f"echo o > {other}/f 2>/dev/null && echo OTHER || echo other-denied"
    )
    start = functools.partial(subprocess.Popen, stdout=subprocess.PIPE, text=True)
    try:
        proc = _confined(start, ["/bin/bash", "-c", code], ruleset, os.geteuid() == 0)
        out = proc.communicate()[0]
    finally:
        for fd in (ruleset, log_fd, work_fd):
            os.close(fd)
        landlock.close()
    assert out.split() == ["work-ok", "log-ok", "other-denied"]
    assert log.read_text() == "l\n"


def _zombies() -> set[int]:
    """This process's children that ended and were not waited for."""
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] == "Z" and int(fields[1]) == os.getpid():
                found.add(int(entry.name))
    return found


def test_a_start_confined_in_the_child_ends_and_fails_as_a_spawned_one_does(
    tmp_path: Path,
) -> None:
    """Its exit code, minus the signal that killed it; an exec that fails is the OSError
    Popen raises; a step of the child's that fails (here: entering a ruleset that is no
    ruleset) is an OSError naming it, and no process is left; what it cannot take is
    refused for the caller to start otherwise."""
    needs_native()
    zombies = _zombies()  # this process's (other tests' children may be among them)
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    cwd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    bash, env = "/bin/bash", {"PATH": os.defpath}
    try:
        ends = [
            spawn.confined([bash, "-c", code], env, cwd, out, [], False).wait()
            for code in ("exit 3", "kill -TERM $$", "pwd; echo $PATH")
        ]
        with pytest.raises(FileNotFoundError):
            spawn.confined([str(tmp_path / "nothing")], {}, cwd, out, [], False)
        with pytest.raises(OSError, match="landlock_restrict_self") as failed:
            spawn.confined([bash, "-c", "echo RAN"], env, cwd, out, [out], False)
        with pytest.raises(spawn.Unsupported):
            spawn.confined(["bash", "-c", "true"], {}, cwd, out, [], False)
        with pytest.raises(spawn.Unsupported):
            spawn.confined([bash, "-c", "true"], {"A=B": "1"}, cwd, out, [], False)
        with pytest.raises(spawn.Unsupported):
            spawn.confined([bash, "-c", "true\0"], {}, cwd, out, [], False)
    finally:
        os.close(out)
        os.close(cwd)
    assert ends == [3, -signal.SIGTERM, 0]
    assert failed.value.errno == errno.EBADFD  # not a ruleset
    assert (tmp_path / "out").read_text() == f"{tmp_path}\n{os.defpath}\n"  # never RAN
    assert _zombies() == zombies  # each failed child was reaped


def test_without_the_native_helper_built_nothing_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spawn, "NATIVE_CONFINE", tmp_path / "missing.so")
    spawn._native.cache_clear()
    try:
        assert not spawn.native_available()
        executor = LocalExecutor(tmp_path / "home" / "logs", lambda *_: None, isolation="none")
        executor.close()
        assert executor._native is False
    finally:
        monkeypatch.undo()
        spawn._native.cache_clear()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_root_start_confined_in_the_child_keeps_no_capability(tmp_path: Path) -> None:
    """Started from a thread that still holds its bounding set (the test's, as a lone
    attempt on the scheduler's loop would be): the child empties it before anything else,
    so its exec as uid 0 grants nothing back."""
    needs_native()
    status = Path("/proc/thread-self/status").read_text()
    assert "CapBnd:\t0000000000000000" not in status  # this thread holds them: a real test
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    cwd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        code = "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status"
        assert spawn.confined(["/bin/bash", "-c", code], {}, cwd, out, [], True).wait() == 0
    finally:
        os.close(out)
        os.close(cwd)
    status = dict(line.split(":\t") for line in (tmp_path / "out").read_text().splitlines())
    assert {k: int(v, 16) for k, v in status.items() if k.startswith("Cap")} == dict.fromkeys(
        ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"], 0
    )


def _start_confined(tmp_path: Path, code: str, rulesets: list[int], drop_caps: bool) -> str:
    """What ``bash -c code`` started by :func:`spawn.confined` printed."""
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    cwd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        spawn.confined(["/bin/bash", "-c", code], {}, cwd, out, rulesets, drop_caps).wait()
    finally:
        os.close(out)
        os.close(cwd)
    return (tmp_path / "out").read_text()


@needs_landlock
def test_a_start_confined_in_the_child_enters_every_ruleset_given(tmp_path: Path) -> None:
    """The narrowing domain comes second: an access is allowed only if both allow it."""
    needs_native()
    system = ["/usr", "/bin", "/lib", "/lib64"]
    wide = sandbox.Landlock(sandbox.landlock_abi(), [Path(p) for p in [*system, "/etc"]], [])
    narrow = sandbox.Landlock(sandbox.landlock_abi(), [Path(p) for p in system], [])
    log = tmp_path / "log"
    log.touch()
    rulesets = [wide.ruleset(tmp_path, log), narrow.ruleset(tmp_path, log)]
    code = "cat /etc/hostname >/dev/null 2>&1 && echo READ || echo denied"
    try:
        one = _start_confined(tmp_path, code, rulesets[:1], os.geteuid() == 0)
        both = _start_confined(tmp_path, code, rulesets, os.geteuid() == 0)
    finally:
        for fd in rulesets:
            os.close(fd)
        wide.close()
        narrow.close()
    assert (one, both) == ("READ\n", "denied\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_root_start_keeps_no_capability_its_caller_had_inheritable(tmp_path: Path) -> None:
    """An exec as uid 0 gets its bounding set and its inheritable ones: the child gives up
    every set, not only the bounding one."""
    needs_native()
    libc = ctypes.CDLL(None, use_errno=True)
    outcome: list[Any] = []

    def start() -> None:  # a thread of its own: its credentials are changed for good
        try:
            header = sandbox._CapHeader(0x20080522, 0)
            data = (sandbox._CapData * 2)()
            assert libc.capget(ctypes.byref(header), data) == 0
            data[0].inheritable |= (1 << 1) | (1 << 21)  # CAP_DAC_OVERRIDE, CAP_SYS_ADMIN
            assert libc.capset(ctypes.byref(header), data) == 0
            status = Path("/proc/thread-self/status").read_text()
            assert "CapInh:\t0000000000200002" in status  # a real test
            outcome.append(_start_confined(tmp_path, _CAPS, [], True))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    caps = dict(line.split(":\t") for line in outcome[0].splitlines())
    assert {k: int(v, 16) for k, v in caps.items()} == dict.fromkeys(caps, 0)
    assert set(caps) == {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}


_CAPS = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status"


def test_a_start_confined_in_the_child_reads_nothing_of_the_callers_stdin(
    tmp_path: Path,
) -> None:
    """The caller's fd 0 a real file (pytest's is /dev/null already): the task's is not it."""
    needs_native()
    (tmp_path / "stdin").write_text("the scheduler's\n")
    saved = os.dup(0)
    held = os.open(tmp_path / "stdin", os.O_RDONLY)
    try:
        os.dup2(held, 0)
        printed = _start_confined(tmp_path, "readlink /proc/$$/fd/0; cat", [], False)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(held)
    assert printed == "/dev/null\n"


def test_a_native_helper_others_could_change_is_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler maps it: a helper in a directory others may write (or writable itself)
    could be changed under it into code that runs in the scheduler."""
    needs_native()
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    shutil.copy(spawn.NATIVE_CONFINE, mine / "confine.so")
    for path in (tmp_path, *tmp_path.parents):  # pytest's directories are 0700 (root's)
        assert spawn._only_ours(path), path
    loaded = {}
    for mode in (0o755, 0o777, 0o1777):
        mine.chmod(mode)
        monkeypatch.setattr(spawn, "NATIVE_CONFINE", mine / "confine.so")
        spawn._native.cache_clear()
        loaded[oct(mode)] = spawn._native() is not None
    (mine / "confine.so").chmod(0o666)
    spawn._native.cache_clear()
    loaded["file 0o666"] = spawn._native() is not None
    monkeypatch.undo()
    spawn._native.cache_clear()
    assert loaded == {"0o755": True, "0o777": False, "0o1777": True, "file 0o666": False}


@needs_landlock
def test_a_server_whose_python_tasks_may_write_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STRATOFLOW_TASK_WRITE_PATHS covering the server's virtualenv (a repository granted
    whole, its .venv inside): a task could change the code the server runs."""
    import sys

    monkeypatch.setenv("STRATOFLOW_TASK_WRITE_PATHS", sys.prefix)
    with pytest.raises(sandbox.IsolationError, match="the server's Python environment"):
        LocalExecutor(tmp_path / "home" / "logs", lambda *_: None, isolation="landlock")
    assert not (tmp_path / "home").exists()


@needs_landlock
@pytest.mark.skipif(os.geteuid() != 0, reason="a root server's tasks only")
def test_a_root_servers_task_cannot_make_a_unix_socket(tmp_path: Path) -> None:
    """It is uid 0 without capabilities, and Landlock does not cover connecting to a socket's
    path: root's sockets (Docker's, systemd's) would give it root. socket(AF_UNIX) is refused;
    socketpair (asyncio, multiprocessing) and network sockets still work."""
    needs_native()
    import sys

    code = (
        "import socket\n"
        "for name, make in [('unix', lambda: socket.socket(socket.AF_UNIX)),\n"
        "                   ('pair', socket.socketpair), ('tcp', socket.socket)]:\n"
        "    try:\n"
        "        make()\n"
        "        print(name, 'made')\n"
        "    except OSError as exc:\n"
        "        print(name, exc.errno)\n"
    )
    read = sandbox.readable_paths(
        [*sandbox.SYSTEM_READ_PATHS, sys.prefix, sys.base_prefix, Path(sys.executable).parent],
        tmp_path / "none",
    )
    landlock = sandbox.Landlock(sandbox.landlock_abi(), read, [])
    log = tmp_path / "log"
    log.touch()
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    cwd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    ruleset = landlock.ruleset(tmp_path, log)
    try:
        argv = [sys.executable, "-c", code]
        for no_unix in (False, True):
            spawn.confined(argv, {}, cwd, out, [ruleset], True, no_unix_sockets=no_unix).wait()
    finally:
        for fd in (out, cwd, ruleset):
            os.close(fd)
        landlock.close()
    without, within = (tmp_path / "out").read_text().split("tcp made\n")[:2]
    assert without == "unix made\npair made\n"
    assert within == f"unix {errno.EACCES}\npair made\n"
