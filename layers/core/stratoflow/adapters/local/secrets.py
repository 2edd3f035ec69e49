"""The local runtime's secrets: one JSON file per project in the home, readable by its owner
only (``<home>/secrets/<project>.json``, 0600, in a 0700 directory), set through
``stratoflow secrets`` / the API. The executor resolves a task's references from the server's
environment (``STRATOFLOW_SECRET_<NAME>``) first, then from here (``LocalRuntime``).

A file another user could read, or one not owned by the server's user, is refused, not
used: its values may already be known to others, and it may not be ours. Writes go to a
temporary file made 0600 and renamed over the old one, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from collections.abc import Hashable, Mapping
from pathlib import Path

from stratoflow.errors import InvalidInput, NotFound, Problem
from stratoflow.secrets import (
    MAX_SECRETS,
    SecretStore,
    SecretUnavailable,
    check_name,
    check_project,
    check_total,
    check_value,
)

SECRETS_DIR = "secrets"


def _file_name(project: str) -> str:
    return f"{check_project(project)}.json"


class LocalSecrets(SecretStore):
    """Secrets in files of the home (see the module's doc)."""

    def __init__(self, home: Path) -> None:
        self.dir = home / SECRETS_DIR
        self._lock = threading.Lock()
        self._writes = 0  # see version()
        # project -> (the file's identity and version, its secrets): every task's result is
        # masked with its project's secrets, so the file is parsed only when it changed
        self._cache: dict[str, tuple[tuple[int, int, int, int], dict[str, str]]] = {}

    def path(self, project: str) -> Path:
        return self.dir / _file_name(project)

    def _read(self, project: str) -> dict[str, str]:
        path = self.path(project)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SecretUnavailable(f"cannot read {path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise SecretUnavailable(
                    f"{path} is not a regular file owned by uid {os.geteuid()}: not used"
                )
            if st.st_mode & 0o077:
                raise SecretUnavailable(
                    f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}): not "
                    f"used; `chmod 600 {path}` if nobody else read it, else set its secrets anew"
                )
            stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            cached = self._cache.get(project)
            if cached is not None and cached[0] == stamp:
                return dict(cached[1])
            with os.fdopen(fd, "r", encoding="utf-8") as fh:
                fd = -1
                data = json.load(fh)
        except ValueError as exc:
            raise SecretUnavailable(f"{path} is not a secrets file (JSON): {exc}") from None
        finally:
            if fd >= 0:
                os.close(fd)
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise SecretUnavailable(f"{path} is not a secrets file (an object of strings)")
        self._cache[project] = (stamp, data)
        return dict(data)

    def _write(self, project: str, secrets: Mapping[str, str]) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(self.dir)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise SecretUnavailable(f"{self.dir} is not a directory owned by uid {os.geteuid()}")
        os.chmod(self.dir, 0o700)
        path = self.path(project)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".", suffix=".tmp")  # 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(dict(sorted(secrets.items())), fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            self._writes += 1
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -------------------------------------------------------------- the port
    def get(self, project: str, name: str) -> str | None:
        return self._read(project).get(name)

    def names(self, project: str) -> list[str]:
        return sorted(self._read(project))

    def known(self, project: str) -> dict[str, str]:
        return self._read(project)

    def version(self, project: str) -> Hashable | None:
        """The file's identity, time and size (a write renames a new file in: a new inode),
        and how many writes this store made (a write within the clock's tick): what
        :func:`stratoflow.secrets.masker_for` keys its masker by. One ``stat``."""
        try:
            st = os.stat(self.path(project), follow_symlinks=False)
        except FileNotFoundError:
            return (None, self._writes)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode, self._writes)

    def put(self, project: str, name: str, value: str) -> bool:
        check_name(name)
        check_value(value)
        with self._lock:
            secrets = self._read(project)
            created = name not in secrets
            if created and len(secrets) >= MAX_SECRETS:
                raise InvalidInput(
                    [Problem("name", f"project {project!r} has {MAX_SECRETS} secrets, the most")]
                )
            check_total(project, secrets, name, value)
            secrets[name] = value
            self._write(project, secrets)
        return created

    def delete(self, project: str, name: str) -> None:
        check_name(name)
        with self._lock:
            secrets = self._read(project)
            if name not in secrets:
                raise NotFound(f"secret {name!r} not found in project {project!r}")
            del secrets[name]
            self._write(project, secrets)
