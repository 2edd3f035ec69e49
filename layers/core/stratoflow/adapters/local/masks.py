"""The logs the local executor still has to mask, kept in the home until they are masked.

An attempt given secrets has its log masked in place once it ends, with the values it was
given (:func:`.executor.mask_log_file`): a secret rotated or deleted later must not show its
old value there. Those values were held in the executor's memory only, so a server killed
between the attempt's start and that masking (while it ran, after its end was reported or
recorded, halfway through the masking) left the log unmasked for good, and an attempt that
ran across a restart was never masked so.

So the executor writes a record of them before the task starts, one file per attempt,
``<home>/pending-masks/<run>.<task>.<attempt>`` (0600, in a 0700 directory: only the
server's user reads it, as the home's secrets files), and removes it once the log is masked;
a scheduler that starts masks the log of every record left (:meth:`PendingMasks.left`), and
one that adopts a running attempt takes the values it was given from its record. A record
is made whole (a temporary file renamed into place) or not at all, and, like the state
(SQLite in WAL mode with ``synchronous=NORMAL``), it survives any crash of the process, not
a loss of power. An attempt given no secret has no record and costs nothing here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("stratoflow.executor")

PENDING_DIR = "pending-masks"
_NAME_MAX = 255  # bytes in a file name (Linux)

Key = tuple[str, str, int]


def _name(key: Key) -> str:
    """A record's file name: ``<run>.<task>.<attempt>`` (task ids hold no dot, and run ids
    never start with one, as the temporary files do), or, when that would not fit a file
    name, a digest of it (the record holds its key)."""
    name = f"{key[0]}.{key[1]}.{key[2]}"
    if len(name.encode()) <= _NAME_MAX - len(".tmp") - 1:
        return name
    return "~" + hashlib.sha256(name.encode()).hexdigest()


class PendingMasks:
    """The records of the logs still to mask, in ``<home>/pending-masks``."""

    def __init__(self, home: Path) -> None:
        self.dir = home / PENDING_DIR
        self._text = str(self.dir)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(self.dir)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise PermissionError(f"{self.dir} is not a directory owned by uid {os.geteuid()}")
        os.chmod(self.dir, 0o700)

    def add(self, key: Key, values: frozenset[str]) -> None:
        """Record the values ``key``'s attempt is given, before its task may print one: the
        record is whole once this returns (an ``OSError`` otherwise: the task must not
        start)."""
        name = _name(key)
        tmp = f"{self._text}/.{name}.tmp"
        data = json.dumps(
            {"run": key[0], "task": key[1], "attempt": key[2], "values": sorted(values)}
        ).encode()
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        try:
            os.rename(tmp, f"{self._text}/{name}")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def remove(self, key: Key) -> None:
        """The attempt's log is masked (or holds nothing of its task): its record goes."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self._text}/{_name(key)}")

    def get(self, key: Key) -> frozenset[str] | None:
        """The values ``key``'s attempt was given, if its record is there."""
        return self._read(f"{self._text}/{_name(key)}", key)

    def left(self) -> dict[Key, frozenset[str]]:
        """Every record there (at start: what an earlier process left to mask); temporary
        files of records never made whole go (no task was started with them)."""
        found: dict[Key, frozenset[str]] = {}
        try:
            names = os.listdir(self._text)
        except FileNotFoundError:
            return found
        for name in names:
            path = f"{self._text}/{name}"
            if name.startswith("."):
                with contextlib.suppress(OSError):
                    os.unlink(path)
                continue
            record = self._record(path)
            if record is not None:
                found[record[0]] = record[1]
        return found

    def _read(self, path: str, key: Key) -> frozenset[str] | None:
        record = self._record(path)
        return record[1] if record is not None and record[0] == key else None

    @staticmethod
    def _record(path: str) -> tuple[Key, frozenset[str]] | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            with os.fdopen(fd, "rb") as fh:
                data = json.loads(fh.read())
            key = (str(data["run"]), str(data["task"]), int(data["attempt"]))
            values = frozenset(str(v) for v in data["values"])
        except (OSError, ValueError, KeyError, TypeError):
            # never made by add() (which renames a whole record into place): kept for a look
            log.warning("%s is not a record of values to mask: left as it is", path)
            return None
        return key, values
