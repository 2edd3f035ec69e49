"""Resource files: a project's scripts, SQL files, jars and data, kept in versions.

A file is named by a relative path (``sql/load.sql``); every upload makes a new version, the
older ones stay readable. A task lists ``resources: [path, ...]`` and finds those files in its
working directory under the same paths. A run pins, when it is created, the version of each
file its tasks list (``ResourceStore.pin``): a later upload changes nothing for that run, nor
for a rerun of it; a file missing then refuses the trigger, naming it.

- locally: ``<home>/resources/<project>/`` (0700 directories, 0600 files), see
  ``adapters.local.resources``;
- on AWS: the stack's bucket under ``resources/<project>/`` with S3 object versioning, see
  ``adapters.aws.resources``; each project's task role reads its own prefix only.

Pure: no I/O here but :func:`materialize`, which writes fetched bytes into a work directory
(by descriptors, never following a link: see there).
"""

from __future__ import annotations

import errno
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from stratoflow.errors import InvalidInput, NotFound, Problem, Unavailable

MAX_RESOURCE_BYTES = 8 * 1024 * 1024  # one upload (within API Gateway's 10 MB request limit)
MAX_PATH_CHARS = 256
MAX_PATH_DEPTH = 8  # segments
MAX_FILES = 10_000  # files of one project
MAX_VERSIONS = 100  # versions of one file
MAX_TASK_RESOURCES = 100  # paths one task lists
SEGMENT_PATTERN = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}"
_SEGMENT = re.compile(SEGMENT_PATTERN)
PATH_RULES = (
    f"a relative path of at most {MAX_PATH_DEPTH} '/'-separated parts and {MAX_PATH_CHARS} "
    "characters; each part of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'"
)


class ResourceUnavailable(Unavailable):
    """A pinned resource cannot be fetched for a task (deleted since the run started, the
    store refused): the task fails with this message and is not retried. In a request (the
    store is not as it must be: a bucket without versions, a directory not the server's) it
    is a 503 naming the problem."""


@dataclass(frozen=True)
class ResourceVersion:
    """One version of one file."""

    path: str
    version: str
    size: int
    sha256: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


def _path_problem(path: object) -> str | None:
    if not isinstance(path, str) or not path:
        return "must be a non-empty string"
    if len(path) > MAX_PATH_CHARS:
        return f"is {len(path)} characters, more than {MAX_PATH_CHARS}"
    if path.startswith("/"):
        return "must be relative, not start with '/'"
    parts = path.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        return f"has {len(parts)} parts, more than {MAX_PATH_DEPTH}"
    for part in parts:
        if part in ("..", "."):
            return f"must not contain {part!r}"
        if not part:
            return "has an empty part ('//' or a trailing '/')"
        if part.startswith("."):
            return f"part {part!r} starts with '.'"
        if not _SEGMENT.fullmatch(part):
            bad = sorted({c for c in part if not re.fullmatch(r"[A-Za-z0-9._-]", c)})
            return f"part {part[:40]!r} has characters outside A-Z a-z 0-9 . _ -: {''.join(bad)!r}"
    return None


def check_path(path: object, field: str = "path") -> str:
    """A resource path (see ``PATH_RULES``); InvalidInput naming the problem otherwise."""
    problem = _path_problem(path)
    if problem is not None:
        raise InvalidInput([Problem(field, f"{problem} ({PATH_RULES})")])
    assert isinstance(path, str)
    return path


def path_problem(path: object) -> str | None:
    """What is wrong with ``path`` as a resource path (None: nothing)."""
    problem = _path_problem(path)
    return None if problem is None else f"{problem} ({PATH_RULES})"


def check_prefix(prefix: str, field: str = "prefix") -> str:
    """A listing prefix: empty, or a path (or a directory of one, ending with '/')."""
    if prefix == "":
        return prefix
    check_path(prefix[:-1] if prefix.endswith("/") else prefix, field)
    return prefix


def check_size(size: int) -> None:
    if size > MAX_RESOURCE_BYTES:
        raise InvalidInput(
            [Problem("file", f"is {size:,} bytes; a resource file is at most "
                             f"{MAX_RESOURCE_BYTES:,} bytes ({MAX_RESOURCE_BYTES >> 20} MiB)")]
        )  # fmt: skip


def check_room(project: str, path: str, *, versions: int, files: int | None) -> None:
    """Refuse a new version of ``path`` when it has ``versions`` (MAX_VERSIONS, the most), or
    a new file when the project has ``files`` (MAX_FILES; None: ``path`` is not new)."""
    if versions >= MAX_VERSIONS:
        raise InvalidInput(
            [Problem("path", f"resource {path!r} has {MAX_VERSIONS} versions, the most; "
                             "delete the file to start its history anew")]
        )  # fmt: skip
    if files is not None and files >= MAX_FILES:
        raise InvalidInput(
            [Problem("path", f"project {project!r} has {MAX_FILES:,} resource files, "
                             "the most; delete some first")]
        )  # fmt: skip


class ResourceStore(ABC):
    """Where a runtime keeps resource files and the versions runs pinned."""

    @abstractmethod
    def put(self, project: str, path: str, data: bytes) -> ResourceVersion:
        """Store ``data`` as the newest version of ``path``."""

    @abstractmethod
    def files(self, project: str, prefix: str = "") -> list[ResourceVersion]:
        """The newest version of each file whose path starts with ``prefix``, sorted by path."""

    @abstractmethod
    def versions(self, project: str, path: str) -> list[ResourceVersion]:
        """Every version of ``path``, newest first; NotFound when there is none."""

    @abstractmethod
    def get(
        self, project: str, path: str, version: str | None = None
    ) -> tuple[ResourceVersion, bytes]:
        """The bytes of a version (default the newest); NotFound naming what is missing."""

    @abstractmethod
    def delete(self, project: str, path: str) -> None:
        """Remove the file and all its versions; NotFound when there is none."""

    @abstractmethod
    def _record_pins(self, run_id: str, project: str, pins: Mapping[str, str]) -> dict[str, str]:
        """Record ``pins`` for ``run_id`` unless some are recorded already; returns what is
        recorded (the earlier pins win: a repeated trigger of the same run keeps its versions)."""

    @abstractmethod
    def pins(self, run_id: str) -> dict[str, str] | None:
        """The versions ``run_id`` pinned (path -> version); None: it pinned none."""

    def pin(self, run_id: str, project: str, paths: Iterable[str]) -> dict[str, str]:
        """Pin the newest version of each path for the run (before the run is created: a
        crash in between leaves pins nobody reads, or the ones a retried trigger reuses).
        InvalidInput naming every missing file."""
        wanted = sorted(set(paths))
        if not wanted:
            return {}
        recorded = self.pins(run_id)
        if recorded is not None:
            return recorded
        newest = self.newest(project, wanted)
        missing = [p for p in wanted if p not in newest]
        if missing:
            listed = ", ".join(repr(p) for p in missing)
            raise InvalidInput(
                [Problem("resources", f"resource {listed} not found in project {project!r} "
                                      f"(upload it with `stratoflow resources upload FILE "
                                      f"{missing[0]} --project {project}`)")]
            )  # fmt: skip
        return self._record_pins(run_id, project, newest)

    def fetch(self, project: str, path: str, version: str) -> bytes:
        """A pinned version's bytes, for a task (ResourceUnavailable when it is gone)."""
        try:
            return self.get(project, path, version)[1]
        except NotFound:
            raise ResourceUnavailable(
                f"resource {path!r} version {version} (pinned when the run was created) is gone "
                f"from project {project!r}: it was deleted; trigger a new run"
            ) from None

    def newest(self, project: str, paths: Iterable[str]) -> dict[str, str]:
        """path -> newest version, for the paths that exist."""
        found: dict[str, str] = {}
        for path in paths:
            try:
                found[path] = self.versions(project, path)[0].version
            except NotFound:
                continue
        return found


def nested_paths(paths: Sequence[str]) -> list[tuple[int, str, str]]:
    """The paths of one task's list that lie inside another path of it, as (index, path,
    the other): ``a`` and ``a/b`` cannot both be placed (``a`` is a file, or a directory)."""
    listed = set(paths)
    found: list[tuple[int, str, str]] = []
    for i, path in enumerate(paths):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            if above in listed:
                found.append((i, path, above))
                break
    return found


def task_resources(fields: Mapping[str, Any]) -> list[str]:
    """The resource paths of a rendered task's fields."""
    value = fields.get("resources") or []
    return [str(p) for p in value]


def workflow_resources(tasks: Mapping[str, Any]) -> list[str]:
    """Every resource path the tasks of a workflow list (model tasks)."""
    return sorted({p for t in tasks.values() for p in (getattr(t, "resources", None) or [])})


def reserved_name(path: str, task_id: str, attempt: int) -> bool:
    """Whether ``path`` would overwrite a file the attempt's wrapper writes in its work dir."""
    return "/" not in path and path.startswith(f"{task_id}.{attempt}.")


Fetch = Callable[[str, str], bytes]  # (path, version) -> bytes; raises ResourceUnavailable

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC  # readable: fchown
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_A_DIR = (errno.ELOOP, errno.ENOTDIR)  # a link (O_NOFOLLOW), a file (O_DIRECTORY)
_REFUSED = (errno.ENOENT, errno.EACCES, errno.EPERM)  # removed, or made unreadable, meanwhile


def materialize(
    dest: Path | int, pins: Mapping[str, str], paths: Iterable[str], fetch: Fetch,
    *, owner: int | None = None,
) -> list[str]:  # fmt: skip
    """Write each resource into ``dest`` (a directory, or a descriptor of one, O_PATH will do)
    under its path (directories 0700, files 0600, owned by ``owner`` when given), never
    following a link. Raises ResourceUnavailable naming the first path that is not pinned,
    cannot be fetched or cannot be placed. Returns the paths written.

    Every step is taken from a descriptor of the directory above it (mkdirat, openat with
    O_NOFOLLOW, fchown of what was opened), never from a path: a work dir is reused within a
    run, and a process an earlier attempt left running there (``setsid``) may swap a
    directory for a link between two of the server's calls; a path looked up again would
    then lead the server (root, unconfined) to write, or chown, wherever the link points.
    A link, or anything else not a directory, met on the way is refused (the error names
    the resource and the part, never the work dir's place)."""
    root = dest if isinstance(dest, int) else os.open(dest, _DIR_FLAGS)
    written: list[str] = []
    try:
        for path in paths:
            check_path(path, "resources")
            version = pins.get(path)
            if version is None:
                raise ResourceUnavailable(
                    f"resource {path!r} was not pinned when the run was created (the run "
                    "predates the task's resources list, or its pins are lost): trigger a new run"
                )
            data = fetch(path, version)
            _place(root, path, data, owner)
            written.append(path)
    finally:
        if not isinstance(dest, int):
            os.close(root)
    return written


def _place(root: int, path: str, data: bytes, owner: int | None) -> None:
    """Write one resource under ``root`` (a directory's descriptor), see :func:`materialize`."""
    parts = path.split("/")
    opened: list[int] = []
    parent = root
    try:
        for depth in range(1, len(parts)):
            parent = _subdir(parent, path, "/".join(parts[:depth]), owner)
            opened.append(parent)
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, 0o600, dir_fd=parent)
        except FileExistsError:  # O_EXCL: a file, a directory or a link already there
            raise ResourceUnavailable(
                f"resource {path!r} is listed twice or clashes with a file, directory or link "
                "already in the task's working directory"
            ) from None
        except OSError as exc:
            if exc.errno not in _REFUSED:
                raise  # ENOSPC and the like: as any other failure to start
            raise ResourceUnavailable(
                f"resource {path!r} could not be created in the task's working directory "
                f"({os.strerror(exc.errno)}): was a process of an earlier attempt left "
                "running there?"
            ) from None
        with os.fdopen(fd, "wb") as fh:
            if owner is not None:
                os.fchown(fh.fileno(), owner, owner)
            fh.write(data)
    finally:
        for fd in opened:
            os.close(fd)


def _subdir(parent: int, path: str, part: str, owner: int | None) -> int:
    """A descriptor of the directory ``part`` (of resource ``path``) in ``parent``, made
    (0700, chowned to ``owner``) if it is not there; never through a link."""
    name = part.rsplit("/", 1)[-1]
    made = True
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except FileExistsError:
        made = False  # another resource's directory, or whatever is there: opened below
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in _NOT_A_DIR:
            raise ResourceUnavailable(
                f"resource {path!r}: {part!r} in the task's working directory is not a "
                "directory (a link or a file is there); nothing was written through it"
            ) from None
        if exc.errno in _REFUSED:
            raise ResourceUnavailable(
                f"resource {path!r}: directory {part!r} in the task's working directory was "
                f"removed or changed while it was made ({os.strerror(exc.errno)}): was a "
                "process of an earlier attempt left running there?"
            ) from None
        raise
    if made and owner is not None:
        # what was opened is a directory (O_DIRECTORY), not a link (O_NOFOLLOW); the one
        # made here is the server's: one swapped in (the task's own) is refused, not chowned
        if os.fstat(fd).st_uid != os.geteuid():
            os.close(fd)
            raise ResourceUnavailable(
                f"resource {path!r}: directory {part!r} in the task's working directory was "
                "replaced while it was made: was a process of an earlier attempt left "
                "running there?"
            )
        os.fchown(fd, owner, owner)
    return fd
