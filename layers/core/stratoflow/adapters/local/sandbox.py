"""What keeps a local task away from the server's state and from other projects' tasks.

Three mechanisms, chosen once when the executor starts (:func:`choose_isolation`):

``user``
    The server runs as root: each project's tasks run under their own unprivileged uid and gid
    (no supplementary groups), allocated from ``STRATOFLOW_TASK_UID_BASE`` and remembered in
    the home's ``task-uids`` file. The home is 0700 and owned by the server, each attempt's
    work directory is 0700 and owned by its project's uid, so file permissions keep a task out
    of the home and out of other projects' work directories, and ``/proc/<pid>/environ`` of the
    server or of another project's task is closed to it (another uid).
``landlock``
    The server runs as an ordinary user and the kernel offers Landlock: each task runs in its
    own Landlock domain that may read the system directories, the Python it needs and, of
    the server's cwd, only its Python files (:func:`import_tree`; never the home), and write
    only its work directory, its log, a few devices and ``/dev/shm`` (shared by every task:
    the home and the work root may not be there, :func:`refuse_under_writable`). A
    Landlock domain cannot ptrace (so cannot read ``/proc/<pid>/environ`` of) the server or
    another task, and from ABI 6 on it cannot signal them either. Landlock does not cover
    chmod, utime nor extended attributes: as root (uid 0, every capability dropped) a task
    starts in a mount namespace read-only but what it may write (native/confine.c,
    :func:`.spawn.confined`'s ``read_only_but``); under an ordinary user it can change the
    modes and times of that user's files.
``none``
    Neither: a task runs as the server's user. It does not inherit the server's environment
    and does not start inside the home, but it can read whatever that user can read.

The environment is an allow-list in every mode (:func:`task_environment`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import itertools
import logging
import os
import re
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)

MODES = ("auto", "user", "landlock", "none")

# Variables a task always gets from the server's environment (when the server has them).
BASE_ENV_ALLOW = ("PATH", "LANG", "LANGUAGE", "TZ")
BASE_ENV_PREFIXES = ("LC_",)
# Never passed, whatever the allow-list says: the server's credentials and its own settings.
NEVER_PASSED = frozenset(
    {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"}
)
NEVER_PASSED_PREFIXES = ("STRATOFLOW_",)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

DEFAULT_UID_BASE = 1_500_000_000
UID_RANGE = 1_000_000  # projects per home


class IsolationError(ValueError):
    """The isolation asked for cannot be had here, or its settings are wrong."""


@dataclass(frozen=True)
class Isolation:
    mode: str  # user | landlock | none
    reason: str


def choose_isolation(
    requested: str, *, euid: int, landlock_abi: int, runtime_reachable: bool = True
) -> Isolation:
    """The strongest mechanism this process can use (``auto``), or the one asked for, with
    why. Asking for one that cannot work is an error, never a silent downgrade.
    ``runtime_reachable``: another uid can run the server's Python (no 0700 directory such as
    /root on its way); per-project uids need that, or python tasks could not start."""
    if requested not in MODES:
        raise IsolationError(
            f"task isolation {requested!r} is not one of {', '.join(MODES)} "
            "(STRATOFLOW_TASK_ISOLATION)"
        )
    if requested == "none":
        return Isolation("none", "task isolation turned off (STRATOFLOW_TASK_ISOLATION=none)")
    if requested == "user" and euid != 0:
        raise IsolationError("task isolation 'user' needs the server to run as root")
    if requested == "landlock" and landlock_abi < 1:
        raise IsolationError("task isolation 'landlock': this kernel does not offer Landlock")
    if requested == "user" and not runtime_reachable:
        raise IsolationError(
            "task isolation 'user': the server's Python is not reachable by another uid "
            "(a directory on its path is not o+x); install it where others can read it"
        )
    if requested == "user" or (requested == "auto" and euid == 0 and runtime_reachable):
        return Isolation("user", "the server runs as root: each project's tasks get their uid")
    if landlock_abi >= 1:
        why = f"Landlock ABI {landlock_abi}: each task in its own domain"
        if euid == 0:
            why += (
                " (as root: the server's Python is not reachable by another uid, so tasks "
                "cannot get uids of their own)"
            )
        return Isolation("landlock", why)
    return Isolation(
        "none",
        "not root and no Landlock: tasks run as the server's user and can read what it can",
    )


# ------------------------------------------------------------------ environment
def allowed_env_names(extra: str | Iterable[str] = ()) -> frozenset[str]:
    """The base allow-list plus ``extra`` (a comma-separated string, e.g. the value of
    ``STRATOFLOW_TASK_ENV_ALLOW``). A name that may never pass is refused, not dropped."""
    names = [n.strip() for n in (extra.split(",") if isinstance(extra, str) else extra)]
    for name in names:
        if not name:
            continue
        if not ENV_NAME.fullmatch(name):
            raise IsolationError(f"STRATOFLOW_TASK_ENV_ALLOW: {name!r} is not a variable name")
        if name in NEVER_PASSED or name.startswith(NEVER_PASSED_PREFIXES):
            raise IsolationError(
                f"STRATOFLOW_TASK_ENV_ALLOW: {name} is the server's own and never passes to a "
                "task; give the task what it needs in its `env` (with a secret reference)"
            )
    return frozenset(BASE_ENV_ALLOW) | {n for n in names if n}


def allowed_environment(server_env: Mapping[str, str], allowed: frozenset[str]) -> dict[str, str]:
    """The part of the server's environment a task may see (PATH at least)."""
    env = {
        k: v
        for k, v in server_env.items()
        if (k in allowed or k.startswith(BASE_ENV_PREFIXES))
        and k not in NEVER_PASSED
        and not k.startswith(NEVER_PASSED_PREFIXES)
    }
    env.setdefault("PATH", os.defpath)
    return env


def task_environment(
    server_env: Mapping[str, str],
    allowed: frozenset[str],
    *,
    work_dir: str | Path,
    task_env: Mapping[str, str],
    stratoflow: Mapping[str, str],
) -> dict[str, str]:
    """The allowed part of the server's environment, HOME and TMPDIR set to the work
    directory, then the task's own ``env``, then the ``STRATOFLOW_*`` task variables."""
    return environment_from(
        allowed_environment(server_env, allowed),
        work_dir=work_dir,
        task_env=task_env,
        stratoflow=stratoflow,
    )


def environment_from(
    allowed_env: Mapping[str, str],
    *,
    work_dir: str | Path,
    task_env: Mapping[str, str],
    stratoflow: Mapping[str, str],
) -> dict[str, str]:
    """:func:`task_environment` from the server's environment already filtered by
    :func:`allowed_environment` (``allowed_env``, left as it is): what the executor calls for
    each attempt, with the server's part filtered once."""
    env = dict(allowed_env)
    env["HOME"] = env["TMPDIR"] = str(work_dir)
    if task_env:
        env.update(task_env)
    env.update(stratoflow)
    return env


# ------------------------------------------------------------------ uids per project
class ProjectUids:
    """project -> uid (gid the same), allocated in order from ``base`` and kept in a file of
    ``project uid`` lines; one scheduler owns a home, so a lock between threads suffices."""

    def __init__(self, path: Path, base: int = DEFAULT_UID_BASE) -> None:
        if not 1000 <= base <= 2**32 - 2 - UID_RANGE:
            raise IsolationError(
                f"STRATOFLOW_TASK_UID_BASE {base} is out of range (1000..{2**32 - 2 - UID_RANGE})"
            )
        self.path = path
        self.base = base
        self._lock = threading.Lock()
        self._uids: dict[str, int] = {}
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            project, _, uid = line.partition(" ")
            if uid.isdigit():
                self._uids[project] = int(uid)

    def uid(self, project: str) -> int:
        with self._lock:
            found = self._uids.get(project)
            if found is not None:
                return found
            uid = self.base + len(self._uids)
            if uid >= self.base + UID_RANGE:
                raise IsolationError(f"more than {UID_RANGE} projects: no task uid left")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{project} {uid}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._uids[project] = uid
            return uid


# ------------------------------------------------------------------ Landlock
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
# access rights of the file system, by the ABI that introduced them
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_ABI1_ALL = (1 << 13) - 1  # up to MAKE_SYM
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_READ = _EXECUTE | _READ_FILE | _READ_DIR
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2

# read (and execute) only; each that exists
SYSTEM_READ_PATHS = (
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/proc",
    "/sys", "/run", "/var/lib", "/nix", "/snap",
)  # fmt: skip


# writable by every task, whatever its project (POSIX shared memory and semaphores:
# multiprocessing needs it); so nothing of the server's may be under it
SHARED_WRITE_PATHS = ("/dev/shm",)  # noqa: S108

# the devices a task may open (not /dev as a whole: raw disks are there)
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _syscall() -> Callable[..., int]:
    fn: Callable[..., int] = _libc().syscall
    return fn


@functools.cache
def _held() -> ctypes.CDLL:
    """libc through functions that keep the GIL for their call (``PyDLL``): for the short
    calls of each start (Landlock's, prctl, capset; none of them blocks), where letting
    the GIL go and taking it back cost more than the call whenever another thread waits
    for it (some 25 calls an attempt, made by the start and confining threads while the
    others run)."""
    return ctypes.PyDLL(None, use_errno=True)


def _held_syscall() -> Callable[..., int]:
    fn: Callable[..., int] = _held().syscall
    return fn


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers; 0 when it offers none."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        version = _syscall()(
            _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION)
        )
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


def reachable_by_others(paths: Iterable[str | Path]) -> bool:
    """Can a uid that is neither the owner nor in the group reach each of ``paths`` (every
    directory on the way o+x, the path itself o+r or o+x)?"""
    for raw in paths:
        path = Path(raw).resolve()
        try:
            if not os.stat(path).st_mode & (stat.S_IROTH | stat.S_IXOTH):
                return False
            if any(not os.stat(parent).st_mode & stat.S_IXOTH for parent in path.parents):
                return False
        except OSError:
            return False
    return True


def handled_access(abi: int) -> int:
    rights = _ABI1_ALL
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    if abi >= 5:
        rights |= _IOCTL_DEV
    return rights


def readable_paths(candidates: Iterable[str | Path], denied: Path | Iterable[Path]) -> list[Path]:
    """The paths a task may read: each candidate that exists, except ``denied`` (one path or
    several) and what is under it. A candidate that contains a denied path (the project
    directory that holds ``.stratoflow``) is replaced by its entries, recursively down to it:
    Landlock only adds rights, so "all of X but Y" is "each entry of X on the way to Y, but
    Y"."""
    refused = [p.resolve() for p in ([denied] if isinstance(denied, Path) else denied)]
    out: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        if path in seen or not path.exists():
            return
        seen.add(path)
        if any(path == d or d in path.parents for d in refused):
            return
        if any(path in d.parents for d in refused):
            try:
                entries = list(path.iterdir())
            except OSError:
                return
            for entry in entries:
                add(entry)
            return
        out.append(path)

    for raw in candidates:
        if raw:
            add(Path(raw).resolve())
    return out


def refuse_under_writable(places: Mapping[str, Path], write: Iterable[Path]) -> None:
    """Refuse (:class:`IsolationError`) when one of ``places`` (what -> path: the home, the
    work root...) is, or is under, a path every confined task may write: ``write`` (the
    grants asked for) or :data:`SHARED_WRITE_PATHS`. A task could read it and change it
    there (the database and tokens of a home; another project's work dir or imports)."""
    shared = {Path(p).resolve() for p in SHARED_WRITE_PATHS}
    grants = [*shared, *(Path(p).resolve() for p in write)]
    for what, given in places.items():
        place = given.resolve()
        for grant in grants:
            if place == grant or grant in place.parents:
                why = (
                    "shared by all tasks of all projects"
                    if grant in shared
                    else "granted by STRATOFLOW_TASK_WRITE_PATHS"
                )
                raise IsolationError(
                    f"{what} {place} is under {grant}, which every task may write ({why}): "
                    "tasks could read and change it there; put it elsewhere (--home, "
                    "STRATOFLOW_WORK_ROOT) or grant tasks less"
                )


# What a task may read of the server's directory: Python source and bytecode, nothing else.
IMPORTABLE_SUFFIXES = (".py", ".pyc")
# How many entries of the server's directory import_tree looks at, at most. The walk costs
# ~10-20 us an entry here: from a directory the size of a home (a cwd of 128,000 entries took
# 2.4 s) it held up every start of a server or of `stratoflow run` by seconds, and linked
# every Python file below it. A directory too big for what is left is not walked (a warning
# names it), and its Python files are not importable by tasks.
IMPORT_WALK_LIMIT = 20_000


_O_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# a directory modified this recently may change again within the same clock tick without its
# mtime moving: its files are looked at again at each check until it is older than this
_RACY_SECONDS = 2.0


def _open_dir(directory: str) -> int:
    """A descriptor (O_PATH) of ``directory`` (absolute), each directory on the way from /
    opened anew without following a link, relative to the one above it."""
    fd = os.open("/", _O_DIR)
    try:
        for part in directory.strip("/").split("/"):
            if part:
                inner = os.open(part, _O_DIR, dir_fd=fd)
                os.close(fd)
                fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _close_dirs(opened: dict[str, int]) -> None:
    for fd in opened.values():
        os.close(fd)
    opened.clear()


class _Unlinkable(OSError):
    """A file the mirror may not hard-link (another owner, a directory above it root without
    capabilities cannot enter, not a regular file, a link on its way)."""


def _enterable(directory: str, cache: dict[str, bool]) -> bool:
    """Whether root without capabilities (a confined task of a root server) may search
    ``directory`` and every directory above it by their permission bits alone."""
    known = cache.get(directory)
    if known is not None:
        return known
    parent = os.path.dirname(directory)
    ok = parent == directory or _enterable(parent, cache)
    if ok:
        st = os.stat(directory)
        groups = {os.getegid(), *os.getgroups()}
        bit = 0o100 if st.st_uid == os.geteuid() else 0o010 if st.st_gid in groups else 0o001
        ok = bool(st.st_mode & bit)
    cache[directory] = ok
    return ok


class ImportTree:
    """What :func:`import_tree` made: ``mirror`` (for PYTHONPATH, readable whole), holding a
    hard link to each Python file of the server's cwd, and ``symlinked``: the files it could
    reach only through a symbolic link (a hard link cannot cross file systems; the server
    links only its own files, and as root only those root without capabilities may reach
    anyway), each of which a task may read only by a rule of its own.

    A hard link is the file itself under a name in the mirror: a rule on the mirror covers
    it, and what is written into the file is what tasks import. A file *replaced* by a new one
    (an editor's or git's rename) leaves the link on the old one: :meth:`refresh` links the
    new one in its place, and removes the link of a file gone (linked again if it comes
    back). Links are made through directory descriptors opened without following links, so
    a directory on a file's path swapped for a link (by whoever can write there) never gets
    another file into the mirror."""

    def __init__(self, mirror: Path) -> None:
        self.mirror = mirror
        self.symlinked: list[Path] = []
        # link in the mirror -> (the file it stands for, (st_dev, st_ino) linked; None: none)
        self._links: dict[str, tuple[str, tuple[int, int] | None]] = {}
        self._by_dir: dict[str, list[str]] = {}  # a file's directory -> links of its files
        self._dirs: dict[str, tuple[int, int, int]] = {}  # directory -> (dev, ino, mtime_ns)
        self._enterable: dict[str, bool] = {}
        self._warned: set[str] = set()
        self._temp = 0
        self._lock = threading.Lock()

    def add(self, link: Path, real: str, opened: dict[str, int] | None = None) -> None:
        """A link at ``link`` to the Python file ``real``: a hard one, else a symbolic one.
        ``opened``: as :meth:`_link` takes it."""
        directory = os.path.dirname(real)
        try:
            ident = self._link(real, str(link), opened)
        except OSError:
            os.symlink(real, link)
            self.symlinked.append(Path(real))
            return
        self._links[str(link)] = (real, ident)
        self._by_dir.setdefault(directory, []).append(str(link))
        if directory not in self._dirs:
            with contextlib.suppress(OSError):
                self._dirs[directory] = self._dir_ident(directory)

    @property
    def hard_links(self) -> int:
        """How many files the mirror holds a hard link to."""
        return sum(ident is not None for _, ident in self._links.values())

    @staticmethod
    def _dir_ident(directory: str) -> tuple[int, int, int]:
        st = os.lstat(directory)
        return st.st_dev, st.st_ino, st.st_mtime_ns

    def _link(self, real: str, link: str, opened: dict[str, int] | None = None) -> tuple[int, int]:
        """Hard-link ``real`` at ``link`` (replacing it), each directory on the way opened
        without following a link; (st_dev, st_ino) of the file linked. ``opened``: the
        directory of the file before (at most one: directory -> descriptor), kept open for
        the next file of the same directory (:func:`import_tree`'s build, where a directory's
        files come one after the other: a directory's chain is opened once, not once for each
        of its files, which took half the build's CPU, ~20 ms from this repository); None (a
        refresh): opened anew. Only the file's own directory is kept, never those above it:
        each directory's chain is opened anew from /, so a directory replaced or renamed
        meanwhile (a package made anew by ``mv``) is looked up where it is now, as for each
        file before; a directory kept from an earlier level would link the files of the old
        one, moved out of the cwd, and its path's identity, recorded after the link, would
        be the new one's: no refresh would ever link them anew."""
        head, name = os.path.split(real)
        if os.geteuid() == 0 and not _enterable(head, self._enterable):
            raise _Unlinkable(errno.EACCES, "root without capabilities cannot reach it", real)
        self._temp += 1
        fresh = f"{self.mirror}/.{self._temp}.new"  # short: a name of any length fits beside
        fd = None if opened is None else opened.get(head)
        if fd is None:
            if opened:
                _close_dirs(opened)  # the directory before's: its files are all linked
            fd = _open_dir(head)
            if opened is not None:
                opened[head] = fd
        try:
            os.link(name, fresh, src_dir_fd=fd, follow_symlinks=False)
        finally:
            if opened is None:
                os.close(fd)
        try:
            st = os.lstat(fresh)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                os.replace(fresh, link)
                return st.st_dev, st.st_ino
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(fresh)
            raise
        os.unlink(fresh)  # a link, a directory; another user's file
        raise _Unlinkable(errno.EPERM, "not a file of the server's user", real)

    def refresh(self) -> int:
        """Make every hard link stand for the file now at its path: a file replaced is linked
        anew, a file gone (or no longer linkable) is unlinked and linked again once it is
        back. Only the files of directories that changed since the last look (their identity
        or mtime; one ``lstat`` each) are looked at. Returns how many links changed. One
        refresh at a time (a second caller waits for the first's)."""
        with self._lock:
            changed = 0
            wall = time.time()
            for directory, links in self._by_dir.items():
                try:
                    ident = self._dir_ident(directory)
                except OSError:
                    ident = None
                if (
                    ident is not None
                    and ident == self._dirs.get(directory)
                    and wall - ident[2] / 1e9 > _RACY_SECONDS
                ):
                    continue  # nothing renamed, created or removed in it
                if ident is not None:
                    self._dirs[directory] = ident
                else:
                    self._dirs.pop(directory, None)
                for link in links:
                    changed += self._refresh_one(link)
            return changed

    def _refresh_one(self, link: str) -> int:
        real, ident = self._links[link]
        try:
            st = os.lstat(real)
            if ident is not None and (st.st_dev, st.st_ino) == ident:
                return 0
            self._links[link] = (real, self._link(real, link))
        except OSError as exc:
            if ident is None:
                return 0  # still not there, or still not linkable
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)  # never a version the directory no longer holds
            self._links[link] = (real, None)
            if not isinstance(exc, FileNotFoundError) and link not in self._warned:
                self._warned.add(link)
                _log.warning(
                    "%s cannot be linked into the imports mirror anew (%s): tasks cannot "
                    "import it until it can be", real, exc.strerror or type(exc).__name__,
                )  # fmt: skip
            return 1
        self._warned.discard(link)
        return 1


def import_tree(
    directory: Path, denied: Path | Iterable[Path], place: Path, readable: Iterable[Path] = ()
) -> ImportTree:
    """Where a Landlock-confined task imports ``directory``'s (the server's cwd) modules from,
    without reading anything else of it (a server.log, a .env, ~/.ssh when the cwd is the
    user's home). ``place`` (made anew) gets a tree of real directories holding a hard link to
    each Python file (``*.py``, ``*.pyc``) of ``directory``, recursively (a symbolic link where
    a hard one cannot be made: :class:`ImportTree`); a directory is in it only if a Python file
    is somewhere beneath it (a package, a namespace package, a ``__pycache__``). Never a hidden
    entry (its name starts with "."), nor ``denied`` (the home; several may be given) or what
    is under it, nor ``place``, nor any other file: inside a package a data file or a .env
    stays unreadable too. A link is followed only to a file whose name is a Python file's, or
    to a directory not on the way up.
    Python lists each ``sys.path`` entry and package directory before it looks for a module
    there: the mirror's directories are listed instead of the cwd's, so the task sees the
    names of its Python files only. The set of files is fixed now: a file added is importable
    after a restart (one replaced is linked anew by :meth:`ImportTree.refresh`). The system
    directories (:data:`SYSTEM_READ_PATHS`, ``/dev``) are not walked, and ``/`` as
    ``directory`` (a service started without a working directory) gives an empty mirror:
    every Python file of the machine is no project's; at most :data:`IMPORT_WALK_LIMIT`
    entries are taken, a directory too big for what is left is left out (a warning names
    it). A directory tasks may read whole
    anyway (``readable``: a virtualenv in ``directory``, stratoflow's own source) is linked
    as it is (symbolically), not walked."""
    directory = directory.resolve()
    refused = [
        str(p.resolve()) for p in [*([denied] if isinstance(denied, Path) else denied), place]
    ]
    found: list[tuple[str, str]] = []  # (path in the mirror, the file it leads to)

    skipped = {os.path.realpath(p) for p in [*SYSTEM_READ_PATHS, "/dev"]}
    whole = [str(p.resolve()) for p in readable]
    linked: list[tuple[str, str]] = []  # (path in the mirror, the directory it leads to)

    def blocked(real: str) -> bool:
        return real in skipped or any(real == d or real.startswith(d + "/") for d in refused)

    # Breadth first, each directory's entries in name order: the cwd's own modules and
    # packages, then theirs, level by level. A directory with more entries than the walk has
    # left (data, a node_modules) is left out, and the walk goes on with the others; no more
    # than twice the budget is listed in all. Strings, not Path: the repository as cwd is
    # some 13,000 entries.
    seen = listed = 0  # entries taken; entries listed, taken or not
    left_out: list[str] = []  # directories not walked: too big for what was left
    level: list[tuple[str, str, frozenset[str]]] = (
        [] if directory == Path("/") else [(str(directory), "", frozenset())]
    )
    while level:
        below: list[tuple[str, str, frozenset[str]]] = []
        for source, rel, above in level:
            room = IMPORT_WALK_LIMIT - seen
            if room <= 0 or listed > 2 * IMPORT_WALK_LIMIT:
                left_out.append(source)
                continue
            try:
                with os.scandir(source) as it:
                    entries = list(itertools.islice(it, room + 1))  # never more than that
            except OSError:
                continue
            listed += len(entries)
            if len(entries) > room:
                left_out.append(source)
                continue
            seen += len(entries)
            ancestors = above | {source}
            for entry in sorted(entries, key=lambda e: e.name):
                name = entry.name
                if name.startswith("."):
                    continue
                try:
                    real = os.path.realpath(entry.path) if entry.is_symlink() else entry.path
                    is_dir, is_file = entry.is_dir(), entry.is_file()
                except OSError:
                    continue
                if blocked(real) or os.path.basename(real).startswith("."):
                    continue
                if is_file:
                    if name.endswith(IMPORTABLE_SUFFIXES) and real.endswith(IMPORTABLE_SUFFIXES):
                        found.append((f"{rel}{name}", real))
                elif is_dir and any(real == w or real.startswith(w + "/") for w in whole):
                    linked.append((f"{rel}{name}", real))
                elif is_dir and real not in ancestors:  # a link back up: not again
                    below.append((real, f"{rel}{name}/", ancestors))
        level = below
    if left_out:
        _log.warning(
            "the server's directory %s holds more than %d entries: the walk for the Python "
            "files tasks import (level by level, each directory in name order) left out %d "
            "director%s, the first %s, and what is below them: %d files linked; start the "
            "server from your project's directory", directory, IMPORT_WALK_LIMIT,
            len(left_out), "y" if len(left_out) == 1 else "ies", left_out[0], len(found),
        )  # fmt: skip
    shutil.rmtree(place, ignore_errors=True)
    # 0700: a hard link makes a file reachable by the mirror's path, whatever the directories
    # above the file itself let other users through (a project under a 0700 home)
    place.mkdir(mode=0o700)
    made = {""}
    tree = ImportTree(place)
    for rel, _ in [*found, *linked]:
        parent = rel.rpartition("/")[0]
        if parent not in made:
            os.makedirs(place / parent, mode=0o700, exist_ok=True)
            made.add(parent)
    opened: dict[str, int] = {}
    try:
        for rel, real in found:
            tree.add(place / rel, real, opened)
    finally:
        _close_dirs(opened)
    for rel, real in linked:
        os.symlink(real, place / rel)  # a directory tasks may read whole anyway
    return tree


def prune_rules(rules: Iterable[tuple[Path, int]]) -> list[tuple[Path, int]]:
    """The same access as ``rules`` ((path, rights) pairs, "these rights beneath this
    path") in fewer rules: rules on one path merged, and a rule left out when the rules on
    its ancestors grant all its rights already. Within one Landlock ruleset an access is
    allowed if the rules on the path and its ancestors grant it together, so the set allows
    exactly what it did. Paths are compared as given (resolved ones: the rule's inode is
    the one its path leads to). In the order of each path's first rule."""
    merged: dict[Path, int] = {}
    for path, access in rules:
        merged[path] = merged.get(path, 0) | access
    kept = []
    for path, access in merged.items():
        above = 0
        for parent in path.parents:
            above |= merged.get(parent, 0)
        if access & ~above:
            kept.append((path, access))
    return kept


class Landlock:
    """Builds one ruleset per attempt in the server (ordinary syscalls, no fork involved);
    only the thread that starts the task enters the domain (``prctl`` and
    ``landlock_restrict_self``)."""

    def __init__(
        self,
        abi: int,
        read: Iterable[Path],
        write: Iterable[Path],
        *,
        narrowed: Iterable[Path] = (),
        files: Iterable[Path] = (),
        also: Iterable[Path] = (),
    ) -> None:
        """``read``, ``write``: what every attempt may read, write (and its own work dir and
        log, given to :meth:`ruleset`). ``narrowed``: paths granted like ``read`` in each
        attempt's ruleset, of which a second, fixed domain lets a task read, list or run
        only ``files`` (the server's cwd, of which only its Python files: see
        :func:`import_tree`); that domain allows reading everywhere else the first allows
        (``read``, ``write``, ``also``: the work root holding each attempt's work dir) and
        is made once (:attr:`narrowing`): an attempt adds no rule for them (one rule a file
        cost ~2.5 us of CPU an attempt), the kernel copies them as the attempt enters the
        domain (~0.2 us a rule)."""
        self.abi = abi
        self.handled = handled_access(abi)
        self.read = list(read)
        self.write = list(write)
        narrowed = list(narrowed)
        # the second domain (None: no narrowed path), entered by restrict_self after the first
        self.narrowing: int | None = (
            self._narrowing([*self.read, *files], [*self.write, *also]) if narrowed else None
        )
        self.read += narrowed
        # The rules every attempt shares are opened once (O_PATH descriptors, closed on
        # exec) and only added per attempt: opening some thirty paths for each attempt cost
        # the scheduler about a millisecond of CPU per task. A path missing now is looked
        # for again at each attempt.
        self._static: list[tuple[Path, _PathBeneathAttr]] = []
        self._missing: list[tuple[Path, int]] = []
        # A rule beneath one granting its rights already adds nothing (a prefix under /usr,
        # /lib a link to /usr/lib): left out, an attempt adds fewer rules (24 -> 17 here).
        # Compared resolved: a rule is on the inode its path leads to, links followed.
        device = _READ_FILE | _WRITE_FILE | _TRUNCATE | _IOCTL_DEV
        for path, access in prune_rules(
            (p.resolve(), access)
            for p, access in [
                *((p, _READ) for p in self.read),
                *((p, self.handled) for p in [*self.write, *map(Path, SHARED_WRITE_PATHS)]),
                *((Path(d), device) for d in DEVICES),
            ]
        ):
            attr = self._open(path, access)
            if attr is None:
                self._missing.append((path, access))
            else:
                self._static.append((path, attr))
        self._static_refs: list[tuple[Path, Any]] = [
            (path, ctypes.byref(attr)) for path, attr in self._static
        ]

    def _narrowing(self, read: list[Path], write: list[Path]) -> int:
        """A ruleset handling only reading (a file, a directory) and running a file, which
        grants them beneath ``read``, ``write``, the shared write paths and the devices."""
        handled = _READ & self.handled
        attr = _RulesetAttr(handled, 0, 0)
        fd = int(_held_syscall()(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(8), 0))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
        os.set_inheritable(fd, False)
        try:
            for path, _ in prune_rules(
                (p.resolve(), _READ)
                for p in [*read, *write, *map(Path, SHARED_WRITE_PATHS), *map(Path, DEVICES)]
            ):
                rule = self._open(path, _READ)
                if rule is None:
                    continue
                try:
                    rule.allowed_access &= handled
                    self._add_rule(fd, path, rule)
                finally:
                    os.close(rule.parent_fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open(self, path: str | Path, access: int) -> _PathBeneathAttr | None:
        """The rule giving ``access`` beneath ``path`` (its O_PATH descriptor held), or None
        if it does not exist."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return None  # gone meanwhile: nothing to allow
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                access &= _FILE_RIGHTS
        except BaseException:
            os.close(fd)
            raise
        return _PathBeneathAttr(access & self.handled, fd)

    @staticmethod
    def _add_rule(ruleset: int, path: str | Path, attr: _PathBeneathAttr) -> None:
        if _held_syscall()(
            _SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(attr), ctypes.c_uint32(0)
        ):
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_add_rule {path}: {os.strerror(err)}")

    def _add_static(self, ruleset: int) -> None:
        """The shared rules, each through one call with its arguments made in advance
        (some 26 an attempt: ~25 us of the scheduler's CPU a task saved)."""
        syscall, flags = _held_syscall(), ctypes.c_uint32(0)
        for path, rule in self._static_refs:
            if syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, rule, flags):
                err = ctypes.get_errno()
                raise OSError(err, f"landlock_add_rule {path}: {os.strerror(err)}")

    def _add(
        self, ruleset: int, path: str | Path | int, access: int, *, directory: bool = False
    ) -> None:
        """The rule giving ``access`` beneath ``path``, or beneath what the open descriptor
        ``path`` (an int, not closed here) stands for: a file or directory the caller holds
        open already costs no open, fstat and close again; nor an fstat when it is known to
        be a ``directory``, or ``access`` holds only rights a file takes."""
        if isinstance(path, int):
            if (
                not directory
                and access & ~_FILE_RIGHTS
                and not stat.S_ISDIR(os.fstat(path).st_mode)
            ):
                access &= _FILE_RIGHTS
            self._add_rule(ruleset, f"fd {path}", _PathBeneathAttr(access & self.handled, path))
            return
        attr = self._open(path, access)
        if attr is None:
            return
        try:
            self._add_rule(ruleset, path, attr)
        finally:
            os.close(attr.parent_fd)

    def shared_write_paths(self) -> list[Path]:
        """What every attempt may write besides its own work dir, its log and the devices:
        the grants (``write``) and :data:`SHARED_WRITE_PATHS`, resolved, as the rules give
        them (what a root server's task may still write in its read-only mount namespace;
        devices open for writing there anyway, and the log is a descriptor the server
        opened)."""
        return [p.resolve() for p in [*self.write, *map(Path, SHARED_WRITE_PATHS)]]

    def close(self) -> None:
        """Close the descriptors of the shared rules."""
        static, self._static = self._static, []
        self._static_refs = []
        for _, attr in static:
            os.close(attr.parent_fd)
        narrowing, self.narrowing = self.narrowing, None
        if narrowing is not None:
            os.close(narrowing)

    def ruleset(self, work_dir: str | Path | int, log: str | Path | int) -> int:
        """A ruleset fd for one attempt: read the allowed paths; write ``work_dir``, its own
        ``log`` (so ``echo > /dev/stderr`` works) and the harmless devices. Each of
        ``work_dir`` and ``log`` is a path or a descriptor open on it (the executor's: the
        log it claimed, the work dir it made); a descriptor for ``work_dir`` is taken for a
        directory's (the kernel refuses directory rights on a file's)."""
        attr = _RulesetAttr(self.handled, 0, 0)
        size = 8  # handled_access_fs only
        if self.abi >= 6:
            attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
            size = ctypes.sizeof(_RulesetAttr)
        fd = int(_held_syscall()(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
        try:
            self._add_static(fd)
            for path, access in self._missing:
                self._add(fd, path, access)
            self._add(fd, work_dir, self.handled, directory=True)
            self._add(fd, log, _READ_FILE | _WRITE_FILE | _TRUNCATE | _IOCTL_DEV)
        except BaseException:
            os.close(fd)
            raise
        return fd


_PR_CAPBSET_DROP = 24
_LAST_CAP = 63


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


@functools.cache
def _last_cap() -> int:
    """The kernel's highest capability number (fewer prctl calls for each task)."""
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return _LAST_CAP


_PR_CAPBSET_READ = 23
_bounding = threading.local()


def _drop_bounding_set() -> None:
    libc = _held()
    for cap in range(_last_cap() + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the kernel's last cap


def empty_bounding_set() -> None:
    """Empty this thread's capability bounding set, and note it (thread-local) only if
    reading it back finds every capability gone. A bounding set can only shrink and a thread
    starts with its creator's, so the threads this one creates start with it empty too: they
    skip the ~40 drops (each a new set of credentials in the kernel, ~0.1 ms of CPU per task
    in all). For the executor's long-lived start threads, which never exec themselves."""
    _drop_bounding_set()
    libc = _held()
    _bounding.empty = all(
        libc.prctl(_PR_CAPBSET_READ, cap, 0, 0, 0) == 0 for cap in range(_last_cap() + 1)
    )


def bounding_set_empty() -> bool:
    """Whether :func:`empty_bounding_set` emptied this thread's bounding set."""
    return bool(getattr(_bounding, "empty", False))


def drop_capabilities(bounding: bool = True) -> None:
    """Leave root with no capability, now and after exec: empty the bounding set (which an
    exec as uid 0 would otherwise grant again), then the effective and permitted sets. Root
    without capabilities cannot bypass Landlock's ptrace rule nor file permissions.
    ``bounding=False``: the bounding set is known to be empty already (inherited from a
    thread that emptied its own, see :func:`empty_bounding_set`)."""
    libc = _held()
    if bounding:
        _drop_bounding_set()
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two data structs
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data):
        raise OSError(ctypes.get_errno(), "capset")


def restrict_self(
    ruleset_fd: int, drop_caps: bool = False, bounding: bool = True, also: int | None = None
) -> None:
    """Enter the ruleset's domain, for good (and, when the server is root, give up every
    capability first): in a child between fork and exec, or in a thread of its own that then
    starts the task (all of these are per-thread and inherited by the processes it starts).
    ``also``: a second ruleset entered on top (:attr:`Landlock.narrowing`): an access is
    allowed only if both allow it."""
    if drop_caps:
        drop_capabilities(bounding)
    if _held().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    for fd in (ruleset_fd,) if also is None else (ruleset_fd, also):
        if _held_syscall()(_SYS_RESTRICT_SELF, fd, ctypes.c_uint32(0)):
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
