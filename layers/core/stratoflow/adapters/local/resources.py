"""The local runtime's resource files, in the home, readable by its owner only.

``<home>/resources/<project>/<h>/`` per file (``<h>``: the first 32 hex digits of the SHA-256
of its path, so any allowed path fits in one directory name) holds ``path`` (the path, as
text), and per version ``<n>.json`` (size, digest, time) and ``<n>`` (the bytes). A version
exists once its bytes are renamed into place, after its description: a crash at any moment
leaves either the whole version or none. Versions are numbered 1, 2, ... and never reused:
deleting a file removes its versions and keeps ``deleted`` (the last number), so a run that
pinned one of the old versions fails naming it rather than reading a new file's bytes.

``<home>/resources/.pins/<sha256 of the run id>.json``: the versions a run pinned, created
exclusively (a repeated trigger of the same run keeps the first pins). Directories are 0700,
files 0600, and a directory or file not owned by the server's user is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from stratoflow.errors import NotFound
from stratoflow.resources import (
    ResourceStore,
    ResourceUnavailable,
    ResourceVersion,
    check_path,
    check_prefix,
    check_room,
    check_size,
)
from stratoflow.secrets import check_project

RESOURCES_DIR = "resources"
PINS_DIR = ".pins"


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise ResourceUnavailable(f"{path} is not a directory owned by uid {os.geteuid()}")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def _write_new(directory: Path, name: str, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``directory/name`` whole (a 0600 temporary file, synced, then renamed or, when
    ``exclusive``, linked: False if the name exists already)."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, directory / name)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, directory / name)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def _read(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise ResourceUnavailable(f"{path} is not a regular file owned by uid {os.geteuid()}")
        return fh.read()


class LocalResources(ResourceStore):
    """Resource files in the home (see the module's doc)."""

    def __init__(self, home: Path) -> None:
        self.root = home / RESOURCES_DIR
        self._lock = threading.Lock()

    # ------------------------------------------------------------ layout
    def _project_dir(self, project: str) -> Path:
        return self.root / check_project(project)

    def _file_dir(self, project: str, path: str) -> Path:
        return self._project_dir(project) / _key(check_path(path))

    @staticmethod
    def _numbers(directory: Path) -> list[int]:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        return sorted((int(n) for n in names if n.isdigit()), reverse=True)

    def _version(self, directory: Path, path: str, n: int) -> ResourceVersion:
        raw = _read(directory / f"{n}.json")
        if raw is None:
            raise ResourceUnavailable(f"resource {path!r} version {n} has no description")
        meta = json.loads(raw)
        return ResourceVersion(
            path=path,
            version=str(n),
            size=int(meta["size"]),
            sha256=str(meta["sha256"]),
            created_at=datetime.fromisoformat(meta["created_at"]),
        )

    # ------------------------------------------------------------ the port
    def put(self, project: str, path: str, data: bytes) -> ResourceVersion:
        check_path(path)
        check_size(len(data))
        with self._lock:
            _private_dir(self.root)
            project_dir = _private_dir(self._project_dir(project))
            directory = project_dir / _key(path)
            if not directory.exists():
                files = sum(1 for n in os.listdir(project_dir) if not n.startswith("."))
                check_room(project, path, versions=0, files=files)
            _private_dir(directory)
            numbers = self._numbers(directory)
            check_room(project, path, versions=len(numbers), files=None)
            deleted = _read(directory / "deleted")
            last = max([*numbers, int(deleted) if deleted and deleted.strip().isdigit() else 0])
            n = last + 1
            if _read(directory / "path") is None:
                _write_new(directory, "path", path.encode())
            meta = {
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "created_at": datetime.now(UTC).isoformat(),
            }
            _write_new(directory, f"{n}.json", json.dumps(meta).encode())
            _write_new(directory, str(n), data)  # the version exists from here on
            return self._version(directory, path, n)

    def files(self, project: str, prefix: str = "") -> list[ResourceVersion]:
        check_prefix(prefix)
        project_dir = self._project_dir(project)
        try:
            names = os.listdir(project_dir)
        except FileNotFoundError:
            return []
        found: list[ResourceVersion] = []
        for name in names:
            if name.startswith("."):
                continue
            directory = project_dir / name
            raw = _read(directory / "path")
            numbers = self._numbers(directory)
            if raw is None or not numbers:
                continue
            path = raw.decode()
            if path.startswith(prefix):
                found.append(self._version(directory, path, numbers[0]))
        return sorted(found, key=lambda v: v.path)

    def versions(self, project: str, path: str) -> list[ResourceVersion]:
        directory = self._file_dir(project, path)
        numbers = self._numbers(directory)
        if not numbers:
            raise NotFound(f"resource {path!r} not found in project {project!r}")
        return [self._version(directory, path, n) for n in numbers]

    def get(
        self, project: str, path: str, version: str | None = None
    ) -> tuple[ResourceVersion, bytes]:
        directory = self._file_dir(project, path)
        if version is None:
            numbers = self._numbers(directory)
            if not numbers:
                raise NotFound(f"resource {path!r} not found in project {project!r}")
            version = str(numbers[0])
        if not version.isdigit() or len(version) > 12:
            raise NotFound(
                f"resource {path!r} has no version {version[:40]!r} in project {project!r}"
            )
        data = _read(directory / str(int(version)))
        if data is None:
            raise NotFound(f"resource {path!r} has no version {version!r} in project {project!r}")
        return self._version(directory, path, int(version)), data

    def delete(self, project: str, path: str) -> None:
        with self._lock:
            directory = self._file_dir(project, path)
            numbers = self._numbers(directory)
            if not numbers:
                raise NotFound(f"resource {path!r} not found in project {project!r}")
            _write_new(directory, "deleted", str(numbers[0]).encode())
            for n in numbers:  # newest first: a crash leaves the older versions, still a file
                (directory / f"{n}.json").unlink(missing_ok=True)
                (directory / str(n)).unlink(missing_ok=True)

    def _record_pins(self, run_id: str, project: str, pins: Mapping[str, str]) -> dict[str, str]:
        _private_dir(self.root)
        directory = _private_dir(self.root / PINS_DIR)
        record = {"run_id": run_id, "project": project, "pins": dict(sorted(pins.items()))}
        if _write_new(
            directory, f"{_key(run_id)}.json", json.dumps(record).encode(), exclusive=True
        ):
            return dict(pins)
        found = self.pins(run_id)
        return dict(pins) if found is None else found

    def pins(self, run_id: str) -> dict[str, str] | None:
        raw = _read(self.root / PINS_DIR / f"{_key(run_id)}.json")
        if raw is None:
            return None
        record = json.loads(raw)
        if record.get("run_id") != run_id:
            raise ResourceUnavailable(f"the resource pins of run {run_id!r} are not its own")
        return {str(k): str(v) for k, v in record["pins"].items()}
