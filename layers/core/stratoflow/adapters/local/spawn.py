"""Starting a task through glibc's ``posix_spawn``, called through ctypes.

``subprocess.Popen`` costs the starting thread ~0.4 ms of CPU per task under Landlock, most of
it Python: building the child's arguments, an error pipe it reads back, its bookkeeping.
glibc's ``posix_spawn`` does the same start (``clone(CLONE_VM | CLONE_VFORK)``, then the file
actions and exec in the child) in one C call, and ctypes releases the GIL for that call, so
the scheduler's other threads run while the child execs. ``os.posix_spawn`` was tried before
and backed out: it holds the GIL through the call and offers neither ``setsid`` nor
``closefrom``.

What the task gets is what ``Popen(argv, cwd=work, env=env, stdin=DEVNULL, stdout=log,
stderr=log, start_new_session=True)`` (``close_fds`` and ``restore_signals`` by default) gave
it: stdin ``/dev/null``, stdout and stderr the log, every other descriptor closed
(``closefrom(3)``, one ``close_range`` in the child instead of a walk over the table), its own
session, the signals Python ignores (SIGPIPE, SIGXFSZ) back to their default and no signal
blocked, its work dir as cwd, exactly ``env`` as its environment. The child is made by the
calling thread, so it inherits that thread's credentials: its Landlock domain, no_new_privs
and capabilities (see :func:`.executor._confined`).

:func:`available` is False where glibc lacks what this needs (``posix_spawn_file_actions_
addclosefrom_np`` came with 2.34, ``POSIX_SPAWN_SETSID`` with 2.26); the caller then starts
through ``Popen`` as before. So does it for what this cannot express (:class:`Unsupported`).
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import stat
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_SETSIGDEF, _SETSIGMASK, _SETSID = 0x04, 0x08, 0x80
# opaque glibc types, over-allocated and 8-byte aligned (posix_spawn_file_actions_t is 80
# bytes on x86-64, posix_spawnattr_t 336, sigset_t 128)
_FileActions = ctypes.c_uint64 * 32
_Attr = ctypes.c_uint64 * 64
_SigSet = ctypes.c_uint64 * 32


class Unsupported(ValueError):
    """An argument posix_spawn cannot take as it is (a NUL inside, a ``=`` in an
    environment name): the caller starts through ``Popen``, which refuses it as before."""


@functools.cache
def _lib() -> Any:
    """glibc with every function this needs, or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        for name in (
            "posix_spawn", "posix_spawn_file_actions_init", "posix_spawn_file_actions_destroy",
            "posix_spawn_file_actions_adddup2", "posix_spawn_file_actions_addfchdir_np",
            "posix_spawn_file_actions_addclosefrom_np", "posix_spawnattr_init",
            "posix_spawnattr_destroy", "posix_spawnattr_setflags", "posix_spawnattr_setsigmask",
            "posix_spawnattr_setsigdefault", "sigemptyset", "sigaddset",
        ):  # fmt: skip
            getattr(libc, name)
    except (OSError, AttributeError):
        return None
    libc.posix_spawn.argtypes = [
        ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    libc.posix_spawnattr_setflags.argtypes = [ctypes.c_void_p, ctypes.c_short]
    return libc


@functools.cache
def _held() -> Any:
    """The same libc through functions that keep the GIL (``PyDLL``): for the file actions'
    calls, which only fill memory; giving the GIL up and taking it back for each (six a
    start) cost more than the call whenever another thread waits for it. ``posix_spawn``
    itself, which waits for the child's exec, lets it go."""
    return ctypes.PyDLL(None, use_errno=True)


@functools.cache
def _attr() -> Any:
    """The spawn attributes every start shares, made once (never destroyed: they hold no
    resource): its own session, an empty signal mask, SIGPIPE and SIGXFSZ to default."""
    libc = _lib()
    attr = _Attr()
    if libc.posix_spawnattr_init(attr):
        raise OSError(ctypes.get_errno(), "posix_spawnattr_init")
    empty, default = _SigSet(), _SigSet()
    libc.sigemptyset(empty)
    libc.sigemptyset(default)
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        libc.sigaddset(default, int(signum))
    for err in (
        libc.posix_spawnattr_setsigmask(attr, empty),
        libc.posix_spawnattr_setsigdefault(attr, default),
        libc.posix_spawnattr_setflags(attr, _SETSID | _SETSIGMASK | _SETSIGDEF),
    ):
        if err:
            raise OSError(err, os.strerror(err))
    return attr


@functools.cache
def _devnull() -> int:
    """One ``/dev/null`` for every task's stdin, opened once (close-on-exec here; the dup2
    onto 0 in the child clears that)."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def available() -> bool:
    """Whether tasks can be started through posix_spawn here."""
    if _lib() is None:
        return False
    try:
        _attr()
        _devnull()
    except OSError:
        return False
    return True


class Spawned:
    """A started task, as much of ``Popen`` as the executor uses: its pid and ``wait()``."""

    __slots__ = ("pid", "returncode")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def wait(self) -> int:
        """Its exit code, as ``Popen.wait`` gives it (minus the signal number when killed)."""
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): as Popen does
                self.returncode = 0
        return self.returncode


_FS_ENCODING = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def _encoded(values: Sequence[str]) -> Any:
    """A NULL-terminated ``char *[]`` of ``values``, each encoded as ``os.fsencode`` does
    (the same codec and error handler), the array filled in one slice assignment. The values
    are joined with NULs, encoded in one call and split again: a value holding a NUL (a
    ``char *`` would end there) shows as one part too many. One encode and one split in C
    instead of an encode and a search per value: ~2/3 less for the ~20 values of a start."""
    count = len(values)
    raw: list[Any] = "\0".join(values).encode(*_FS_ENCODING).split(b"\0") if count else []
    if len(raw) != count:
        raise Unsupported("embedded null byte")
    array = (ctypes.c_char_p * (count + 1))()
    array[:count] = raw
    return array


def _check(argv: Sequence[str], env: Mapping[str, str], cwd_fd: int, output_fd: int) -> None:
    """What a start here cannot take (:class:`Unsupported`: the caller starts through Popen)."""
    if "/" not in argv[0] or min(cwd_fd, output_fd, _devnull()) < 3:
        # a bare name (Popen searches PATH for it) or a descriptor the dup2s would clobber
        raise Unsupported("argv[0] is not a path, or a descriptor is below 3")
    for name in env:
        if "=" in name:
            raise Unsupported("illegal environment variable name")


# Where `make install` builds native/confine.c: in the virtualenv, beside the Python that runs
# the scheduler (never in the package, which the AWS layer ships)
NATIVE_CONFINE = Path(sys.prefix) / "lib" / "stratoflow-native" / "confine.so"
# sf_confined_spawn's stages (native/confine.c), as its errors name them
_STAGES = {
    1: "resetting signal dispositions", 2: "setsid", 3: "dup2", 4: "fchdir",
    5: "dropping capabilities", 6: "prctl(PR_SET_NO_NEW_PRIVS)", 7: "landlock_restrict_self",
    8: "closing descriptors", 10: "seccomp (no Unix sockets)",
    11: "unshare(CLONE_NEWNS) (read-only mounts)", 12: "making every mount private",
    13: "open_tree (cloning a writable path)", 14: "mount_setattr (making every mount read-only)",
    15: "move_mount (a writable path back in place)",
}  # fmt: skip
_EXEC = 9
_DROP_CAPS, _NO_UNIX_SOCKETS, _READ_ONLY_MOUNTS = 1, 2, 4  # its flags
MAX_WRITABLE = 64  # the most paths Writable holds (SF_MAX_WRITABLE)


_ABI = 3  # sf_abi_version() of the native/confine.c this calls


class Writable:
    """The paths that stay writable (besides the work dir) in a task's mount namespace where
    every other mount is read-only (:func:`confined`'s ``read_only_but``), encoded once for
    every start: resolved paths, none beneath another (its clone would add nothing)."""

    __slots__ = ("array", "count", "paths")

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        resolved = sorted({os.path.realpath(p) for p in paths}, key=lambda p: (len(p), p))
        kept: list[str] = []
        for path in resolved:
            if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
                kept.append(path)
        if len(kept) > MAX_WRITABLE:
            raise ValueError(f"more than {MAX_WRITABLE} writable paths")
        self.paths = tuple(kept)
        self.count = len(kept)
        self.array = _encoded(kept)


def _only_ours(path: Path) -> bool:
    """Whether only root or the server's user can change ``path``: owned by one of them, not
    writable by group or others, nor any directory above it (but for a sticky one such as
    /tmp, where no one else may replace what is ours). The scheduler maps the helper: who
    could write it would run code in the scheduler at its next start of a task."""
    allowed = {0, os.geteuid()}
    for place in (path, *path.parents):
        try:
            st = os.stat(place)
        except OSError:
            return False
        sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_uid not in allowed or (st.st_mode & 0o022 and not sticky_dir):
            return False
    return True


@functools.cache
def _native() -> Any:
    """native/confine.c, built and loadable here, or None (the executor then starts each
    confined task from a thread of its own, as before). Through ``CDLL``, whose calls give up
    the GIL: the vfork's wait for the child's exec holds nothing of the scheduler."""
    if _lib() is None or not NATIVE_CONFINE.is_file() or not _only_ours(NATIVE_CONFINE):
        return None
    try:
        lib = ctypes.CDLL(str(NATIVE_CONFINE), use_errno=True)
        if lib.sf_abi_version() != _ABI:  # built from another version: rebuild (make install)
            return None
        fn = lib.sf_confined_spawn
    except (OSError, AttributeError):
        return None
    fn.argtypes = [
        ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
        ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
        ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int),
    ]  # fmt: skip
    fn.restype = ctypes.c_int
    return fn


def native_available() -> bool:
    """Whether a confined task can start without a thread of its own (:func:`confined`)."""
    return _native() is not None and available()


def confined(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd_fd: int,
    output_fd: int,
    rulesets: Sequence[int],
    drop_caps: bool,
    no_unix_sockets: bool = False,
    read_only_but: Writable | None = None,
) -> Spawned:
    """:func:`spawn`'s start, the child entering each Landlock ruleset of ``rulesets`` in
    turn (after ``PR_SET_NO_NEW_PRIVS``) and, when ``drop_caps`` (a root server), giving up
    every capability, bounding set first, and with ``no_unix_sockets`` unable to make a Unix
    socket (a seccomp filter: a task of a root server is uid 0, and root's sockets give root),
    and with ``read_only_but`` in a mount namespace of its own where every mount is read-only
    but its cwd (the work dir) and those paths (a task of a root server owns what root owns,
    and Landlock does not cover chmod, utime nor xattrs: there they fail with EROFS; needs
    root), before it execs: what :func:`.executor._confined`
    does from a throwaway thread, done in the child (native/confine.c), so the scheduler
    makes no thread and enters no domain. Raises what :func:`spawn` raises; a step of the
    child's that failed is named in the ``OSError``. Only where :func:`native_available`."""
    return _confined(argv, env, cwd_fd, output_fd, rulesets, drop_caps, no_unix_sockets,
                     read_only_but)  # fmt: skip


def _confined(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd_fd: int,
    output_fd: int,
    rulesets: Sequence[int],
    drop_caps: bool,
    no_unix_sockets: bool,
    read_only_but: Writable | None,
) -> Spawned:
    """:func:`confined` (what :func:`check_read_only` calls: no task's start)."""
    fn = _native()
    _check(argv, env, cwd_fd, output_fd)
    c_argv = _encoded(argv)
    c_env = _encoded(list(map("=".join, env.items())))
    c_rulesets = (ctypes.c_int * max(1, len(rulesets)))(*rulesets)
    stage, error = ctypes.c_int(0), ctypes.c_int(0)
    flags = (_DROP_CAPS if drop_caps else 0) | (_NO_UNIX_SOCKETS if no_unix_sockets else 0)
    writable, n_writable = None, 0
    if read_only_but is not None:
        flags |= _READ_ONLY_MOUNTS
        writable, n_writable = read_only_but.array, read_only_but.count
    pid = fn(
        c_argv[0], c_argv, c_env, cwd_fd, output_fd, _devnull(), c_rulesets, len(rulesets),
        flags, writable, n_writable, ctypes.byref(stage), ctypes.byref(error),
    )  # fmt: skip
    if pid < 0:
        err = error.value
        if stage.value == _EXEC:
            raise OSError(err, os.strerror(err), argv[0])
        step = _STAGES.get(stage.value, "vfork")
        raise OSError(err, f"starting the task: {step}: {os.strerror(err)}")
    return Spawned(pid)


def check_read_only(cwd_fd: int, writable: Writable) -> None:
    """Whether a task could start here in a mount namespace read-only but ``writable`` (and
    the directory of ``cwd_fd``): every step of :func:`confined`'s, then an exec of a path
    that does not exist (its ENOENT at the exec says all before it worked, and nothing ran).
    Raises the ``OSError`` naming the step that failed (no ``CAP_SYS_ADMIN``: a container
    without it; no ``mount_setattr``)."""
    missing = "/proc/self/fd/-1/stratoflow-probe"  # never a file
    try:
        started = _confined([missing], {}, cwd_fd, _devnull(), [], True, False, writable)
    except OSError as exc:
        if exc.filename == missing:  # the exec: every step before it worked
            return
        raise
    started.wait()  # it cannot be there, but if it were it ran confined: that is a yes


def spawn(argv: Sequence[str], env: Mapping[str, str], cwd_fd: int, output_fd: int) -> Spawned:
    """Start ``argv[0]`` (a path: no PATH search) with ``argv``, exactly ``env``, cwd the
    directory of ``cwd_fd``, stdout and stderr ``output_fd``, stdin ``/dev/null``, nothing
    else open, in a session of its own. An exec that fails raises the ``OSError`` Popen would
    (the child's errno, reported by glibc)."""
    libc = _lib()
    _check(argv, env, cwd_fd, output_fd)
    held = _held()
    c_argv = _encoded(argv)
    c_env = _encoded(list(map("=".join, env.items())))  # "k=v" each
    actions = _FileActions()
    if held.posix_spawn_file_actions_init(actions):
        raise OSError(ctypes.get_errno(), "posix_spawn_file_actions_init")
    try:
        for err in (
            held.posix_spawn_file_actions_adddup2(actions, _devnull(), 0),
            held.posix_spawn_file_actions_adddup2(actions, output_fd, 1),
            held.posix_spawn_file_actions_adddup2(actions, output_fd, 2),
            held.posix_spawn_file_actions_addfchdir_np(actions, cwd_fd),
            held.posix_spawn_file_actions_addclosefrom_np(actions, 3),
        ):
            if err:
                raise OSError(err, os.strerror(err))
        pid = ctypes.c_int(0)
        # the GIL is released for this call: the clone and the child's exec
        err = libc.posix_spawn(ctypes.byref(pid), c_argv[0], actions, _attr(), c_argv, c_env)
    finally:
        held.posix_spawn_file_actions_destroy(actions)
    if err:
        raise OSError(err, os.strerror(err), argv[0])
    return Spawned(pid.value)
