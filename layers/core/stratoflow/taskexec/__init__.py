"""What every executor shares about running a task: the task runner module it starts
(``python -m stratoflow.taskexec.taskrunner``) and how it reads the files an attempt leaves
(outputs, structured outputs, the error, the log's tail). The local executor and the AWS
runner both use it, so a task ends the same way wherever it ran."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from stratoflow.engine import AttemptResult

MAX_RESULT_BYTES = 4 << 20  # what an executor reads of one file a task wrote

# The local executor's wrapper frames each attempt's log (adapters.local.executor.WRAPPER): its
# first line says the task started, its EXIT trap's line records the exit status, for a
# scheduler that was not alive to wait for it. Both go to the log the scheduler created, so an
# attempt's start makes no file of its own (each new file cost ~0.2-0.7 ms of CPU on the ext4
# of the machines measured; docs/benchmarks.md).
STARTED_LINE = "[stratoflow] task {task} attempt {attempt} started\n"
EXITED_LINE = "[stratoflow] task {task} attempt {attempt} exited with code {code}\n"
_EXITED = re.compile(rb"\[stratoflow\] task (\S+) attempt (\d+) exited with code (\d+)\n")
_FRAME = re.compile(
    r"^\[stratoflow\] task \S+ attempt \d+ started$|"
    r"\[stratoflow\] task \S+ attempt \d+ exited with code \d+$"
)
RECORD_WINDOW = 4096  # how far from the log's end the exit record is looked for


class LogRecord(NamedTuple):
    """What an attempt's wrapper left in its log: whether it started, and the exit status
    its trap recorded (None: none, e.g. killed by SIGKILL or replaced by ``exec``)."""

    started: bool
    status: int | None


def log_record(path: str | Path, task_id: str, attempt: int) -> LogRecord:
    """The start line at the top of the attempt's log and the last exit record of this
    attempt within its last ``RECORD_WINDOW`` bytes (output a background process wrote
    after the trap is allowed for; a record further back is not looked for: LOST is the
    safe answer). A missing log: not started."""
    start = STARTED_LINE.format(task=task_id, attempt=attempt).encode()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return LogRecord(False, None)
    try:
        head = os.pread(fd, len(start), 0)
        size = os.fstat(fd).st_size
        end = os.pread(fd, RECORD_WINDOW, max(size - RECORD_WINDOW, 0))
    except OSError:
        return LogRecord(False, None)
    finally:
        os.close(fd)
    status = None
    for m in _EXITED.finditer(end):
        if m[1].decode(errors="replace") == task_id and int(m[2]) == attempt:
            status = int(m[3])
    return LogRecord(head == start, status)


def read_task_file(path: str | Path) -> str | None:
    """A file a task may have written: never through a link it left, at most
    MAX_RESULT_BYTES, None when it is missing or not a regular file. Most attempts leave
    none of the files they may write: a missing one costs an ``access`` that answers False,
    not a failed open and the exception it raises (~3 us less each, two or three an
    attempt); one that exists is opened as before (a link is refused there, not followed)."""
    if not os.access(path, os.F_OK):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, MAX_RESULT_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def tail(path: str | Path, lines: int = 5, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - limit, 0))
            data = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    # the wrapper's frame (a start line, an exit record, perhaps after output that did not
    # end its line) is not the task's output
    kept = [
        framed
        for line in data.strip().splitlines()
        if (framed := _FRAME.sub("", line)) or not line  # a line of its own is kept, blank too
    ]
    return "\n".join(kept[-lines:])


def parse_key_values(text: str) -> dict[str, str]:
    """``key=value`` lines (blank lines and ``#`` comments ignored; last write wins)."""
    outputs: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        outputs[key.strip()] = value.strip()
    return outputs


class FileOutcome(NamedTuple):
    """How a task ended, read from its files (``outcome_from_files``): ``status`` is the
    value of an ``AttemptStatus`` (succeeded or failed)."""

    status: str
    outputs: dict[str, object]
    error: str | None
    exit_code: int


def outcome_from_files(
    status: int, *, outputs: str | Path, structured: str | Path, error: str | Path, log: str | Path
) -> FileOutcome:
    """How a task that exited with ``status`` ended, from the files it left: ``key=value``
    outputs, then the structured outputs of python and http tasks, then the error (the task's
    own words, or the log's last lines). Imports nothing of the engine: the AWS runner reads
    its attempts with it, and its cold start does not load the engine and the workflow model."""
    found: dict[str, object] = dict(parse_key_values(read_task_file(outputs) or ""))
    data = read_task_file(structured)
    if data:
        with contextlib.suppress(ValueError):
            parsed = json.loads(data)
            if isinstance(parsed, dict):
                found.update(parsed)
    if status == 0:
        return FileOutcome("succeeded", found, None, 0)
    if status < 0:
        return FileOutcome("failed", found, f"killed by signal {-status}", status)
    message = (read_task_file(error) or "").strip()
    if not message:
        last = tail(log)
        message = f"exit code {status}" + (f"; last output:\n{last}" if last else "")
    return FileOutcome("failed", found, message, status)


def result_from_files(
    status: int, *, outputs: str | Path, structured: str | Path, error: str | Path, log: str | Path
) -> AttemptResult:
    """``outcome_from_files`` as the attempt's result (the local executor's)."""
    # here, not at the top: the AWS runner imports this module without the engine
    from stratoflow.engine import AttemptResult, AttemptStatus

    found = outcome_from_files(status, outputs=outputs, structured=structured, error=error, log=log)
    return AttemptResult(
        AttemptStatus(found.status), outputs=found.outputs, error=found.error,
        exit_code=found.exit_code,
    )  # fmt: skip
