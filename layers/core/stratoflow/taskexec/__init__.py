"""What every executor shares about running a task: the task runner module it starts
(``python -m stratoflow.taskexec.taskrunner``) and how it reads the files an attempt leaves
(outputs, structured outputs, the error, the log's tail). The local executor and the AWS
runner both use it, so a task ends the same way wherever it ran."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from stratoflow.nesting import is_nest, walk

if TYPE_CHECKING:
    from stratoflow.engine import AttemptResult

# The most a task may leave in one of its result files ($STRATOFLOW_OUTPUT, the python runner's
# outputs JSON, its error): outputs over it fail the attempt (``TaskFileTooLarge``), never cut
MAX_RESULT_BYTES = 4 << 20

# The local executor's wrapper frames each attempt's log (adapters.local.executor.WRAPPER): its
# first line says the task started, its EXIT trap's line records the exit status, for a
# scheduler that was not alive to wait for it. Both go to the log the scheduler created, so an
# attempt's start makes no file of its own (each new file cost ~0.2-0.7 ms of CPU on the ext4
# of the machines measured; docs/benchmarks.md).
# The start line names the wrapper's pid: a body that replaces the wrapper shell with `exec cmd`
# leaves a process whose command line is its own, which a restarted scheduler finds by that pid
# (an earlier version's line ends at "started").
_STARTED_HEAD = "[stratoflow] task {task} attempt {attempt} started"
STARTED_LINE = _STARTED_HEAD + ", pid {pid}\n"
_PID = re.compile(rb", pid ([1-9][0-9]{0,9})\n")
EXITED_LINE = "[stratoflow] task {task} attempt {attempt} exited with code {code}\n"
_EXITED = re.compile(rb"\[stratoflow\] task (\S+) attempt (\d+) exited with code (\d+)\n")
_FRAME = re.compile(
    r"^\[stratoflow\] task \S+ attempt \d+ started(?:, pid \d+)?$|"
    r"\[stratoflow\] task \S+ attempt \d+ exited with code \d+$"
)
RECORD_WINDOW = 4096  # how far from the log's end the exit record is looked for
HEAD_WINDOW = 4096  # how far from the log's start the start line is (bash may warn first)


class LogRecord(NamedTuple):
    """What an attempt's wrapper left in its log: whether it started, and the exit status
    its trap recorded (None: none, e.g. killed by SIGKILL or replaced by ``exec``)."""

    started: bool
    status: int | None
    # when the log was last written (its mtime, seconds since the epoch, from the fstat made
    # for its size anyway): the wrapper's exit record is its last write, so where there is
    # one, when the attempt ended (output a background process wrote later moves it on)
    written_at: float | None = None
    # the wrapper's pid, as its start line names it (None: a line an earlier version wrote)
    pid: int | None = None


def log_record(path: str | Path, task_id: str, attempt: int) -> LogRecord:
    """The start line near the top of the attempt's log and the last exit record of this
    attempt within its last ``RECORD_WINDOW`` bytes (output a background process wrote
    after the trap is allowed for; a record further back is not looked for: LOST is the
    safe answer). A missing log: not started.

    The start line is the wrapper's first write, but bash may write before it: a warning
    of its own start-up (``setlocale: LC_ALL: cannot change locale``, common where a task's
    or the server's locale is not installed). A start looked for at the very top only was
    then "never started", and a restarted scheduler started the attempt again beside the
    one still running. Nothing of the body can come before the line (it runs after it), so
    the first line that is the start line within ``HEAD_WINDOW`` bytes counts."""
    start = _STARTED_HEAD.format(task=task_id, attempt=attempt).encode()
    try:  # (non-blocking, and only a regular file is read: never a FIFO put in its place)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return LogRecord(False, None)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return LogRecord(False, None)
        head = os.pread(fd, HEAD_WINDOW, 0)
        size = info.st_size
        end = os.pread(fd, RECORD_WINDOW, max(size - RECORD_WINDOW, 0))
    except OSError:
        return LogRecord(False, None)
    finally:
        os.close(fd)
    status = None
    for m in _EXITED.finditer(end):
        if m[1].decode(errors="replace") == task_id and int(m[2]) == attempt:
            status = int(m[3])
    if head.startswith(start):
        at = 0
    else:  # after what bash wrote first, at the start of a line
        found = head.find(b"\n" + start)
        at = found + 1 if found >= 0 else -1
    named = _PID.match(head, at + len(start)) if at >= 0 else None  # cut short: no pid known
    return LogRecord(at >= 0, status, info.st_mtime, int(named[1]) if named else None)


class TaskFileTooLarge(ValueError):
    """A file the task wrote holds more than the executor reads of it (``MAX_RESULT_BYTES``):
    what it says would be cut, so it is not used at all."""

    def __init__(self, path: str | Path, size: int, limit: int) -> None:
        super().__init__(f"{path}: {size} bytes, more than {limit}")
        self.path, self.size, self.limit = str(path), size, limit


def _read_head(path: str | Path, limit: int) -> tuple[bytes, int] | None:
    """At most ``limit`` + 1 bytes of a file a task may have written, and its size (at least
    what was read: it may still be growing); None when it is missing or not a regular file.
    Never through a link it left. Most attempts leave none of the files they may write: a
    missing one costs an ``access`` that answers False, not a failed open and the exception
    it raises (~3 us less each, two or three an attempt); one that exists is opened as
    before (a link is refused there, not followed)."""
    if not os.access(path, os.F_OK):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        want = limit + 1  # one byte more than the limit tells a file over it
        data = os.read(fd, want)
        # one read, as a rule; another only after a short one that stopped before the end
        # the file had (a signal): never one more just to meet the end
        while 0 < len(data) < min(want, info.st_size):
            more = os.read(fd, want - len(data))
            if not more:
                break
            data += more
    except OSError:
        return None
    finally:
        os.close(fd)
    return data, max(info.st_size, len(data))


def read_task_file(path: str | Path) -> str | None:
    """The first ``MAX_RESULT_BYTES`` of a file a task may have written, None as
    ``read_task_head``: only for a file whose head is all that is wanted (a legacy exit
    status). Outputs are read whole or not at all (``read_whole_task_file``)."""
    got = read_task_head(path)
    return None if got is None else got[0]


def read_whole_task_file(path: str | Path, limit: int | None = None) -> str | None:
    """The whole of a file a task may have written, None when it is missing or not a
    regular file (or a link). One over ``limit`` (``MAX_RESULT_BYTES``) raises
    ``TaskFileTooLarge``: its head alone would be taken for all of it (a cut value, the
    keys after it lost, JSON that no longer parses)."""
    limit = MAX_RESULT_BYTES if limit is None else limit
    got = _read_head(path, limit)
    if got is None:
        return None
    data, size = got
    if len(data) > limit:
        raise TaskFileTooLarge(path, size, limit)
    return data.decode("utf-8", errors="replace")


def read_task_head(path: str | Path, limit: int | None = None) -> tuple[str, int] | None:
    """At most ``limit`` (``MAX_RESULT_BYTES``) bytes of a file a task may have written, and
    how many it holds: for one whose head is worth having when it is too long (its error);
    None as ``read_task_file``."""
    limit = MAX_RESULT_BYTES if limit is None else limit
    got = _read_head(path, limit)
    if got is None:
        return None
    data, size = got
    return data[:limit].decode("utf-8", errors="replace"), size


def _size(limit: int) -> str:
    """A limit as a person writes it: 4 MiB, 512 KiB, 1000 bytes."""
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if limit >= 1 << shift and limit % (1 << shift) == 0:
            return f"{limit >> shift} {unit}"
    return f"{limit:,} bytes"


def too_large_message(exc: TaskFileTooLarge) -> str:
    """Why an attempt whose outputs file is over the limit failed, and what to do instead."""
    return (
        f"outputs: {exc.size:,} bytes written, more than the {_size(exc.limit)} a task may pass "
        "on; write large data to a file or object store and pass its path"
    )


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


class MalformedOutputs(ValueError):
    """A ``key=value`` line no template could read back (``=value``: an empty key): its
    value would be kept under a key nothing addresses, so the outputs are not used at all."""

    def __init__(self, line: int) -> None:
        super().__init__(empty_key_message(line))
        self.line = line


def empty_key_message(line: int) -> str:
    """Why an attempt whose outputs file has a line with an empty key failed (the EKS
    reporter, eks_reporter.sh, says the same words)."""
    return (
        f"outputs: line {line} of the outputs file ($STRATOFLOW_OUTPUT) has an empty key "
        "(=value); write key=value lines with a key"
    )


def parse_key_values(text: str) -> dict[str, str]:
    """``key=value`` lines (blank lines, ``#`` comments and lines without ``=`` ignored;
    last write wins). A line whose key is empty once trimmed raises ``MalformedOutputs``
    naming it (its number, 1 for the first line)."""
    outputs: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if not key:
            raise MalformedOutputs(number)
        outputs[key] = value.strip()
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
    own words, or the log's last lines). Outputs that cannot be read whole (a file over
    ``MAX_RESULT_BYTES``, a ``key=value`` line with an empty key, structured outputs that are
    not a JSON object) fail the attempt
    with none of its outputs: a downstream task must not get part of them. Imports nothing
    of the engine: the AWS runner reads its attempts with it, and its cold start does not
    load the engine and the workflow model."""
    found: dict[str, object] = {}
    problem: str | None = None
    try:
        found.update(parse_key_values(read_whole_task_file(outputs) or ""))
        data = read_whole_task_file(structured)
    except TaskFileTooLarge as exc:
        problem, data = too_large_message(exc), None
    except MalformedOutputs as exc:
        problem, data = str(exc), None
    if data:
        try:
            parsed = json.loads(data, parse_constant=_no_constant)
        except _NonFinite as exc:
            parsed, why = None, f"holding {exc}, which JSON has not: give such a value as text"
        except (ValueError, RecursionError) as exc:
            parsed, why = None, f"not valid JSON ({exc})"
        else:
            why = f"a JSON {type(parsed).__name__}, not an object"
            if isinstance(parsed, dict) and _deeper_than(parsed, MAX_OUTPUT_DEPTH):
                parsed, why = (
                    None,
                    (
                        f"nested deeper than {MAX_OUTPUT_DEPTH} levels (downstream tasks, the run "
                        "views and alerts read outputs whole): flatten it"
                    ),
                )
        if isinstance(parsed, dict):
            found.update(parsed)
        else:
            problem = f"outputs: the task's outputs file ({structured}) is {why}"
    if problem is not None:
        found = {}  # nothing partial is passed on
    if status == 0:
        if problem is not None:
            return FileOutcome("failed", found, problem, 0)
        return FileOutcome("succeeded", found, None, 0)
    if status < 0:
        message = f"killed by signal {-status}"
    else:
        message = _error_message(error)
        if not message:
            last = tail(log)
            message = f"exit code {status}" + (f"; last output:\n{last}" if last else "")
    if problem is not None:
        message += f"\n{problem}"
    return FileOutcome("failed", found, message, status)


# How deep a task's structured outputs may nest (lists and objects within the outputs
# object): as deep as a workflow document may (model.MAX_DEPTH), far below where reading,
# masking or serialising them would exhaust Python's recursion
MAX_OUTPUT_DEPTH = 64


class _NonFinite(ValueError):
    pass


def _no_constant(name: str) -> object:
    """``json.loads``' hook for ``NaN``, ``Infinity`` and ``-Infinity``: refused."""
    raise _NonFinite(f"a non-finite number ({name})")


def _deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` levels."""
    return any(depth > limit and is_nest(item) for item, depth in walk(value))


def _error_message(path: str | Path) -> str:
    """The task's own error (the python runner's): its first ``MAX_RESULT_BYTES`` when it is
    longer, saying so."""
    got = read_task_head(path)
    if got is None:
        return ""
    text, size = got
    message = text.strip()
    if message and size > MAX_RESULT_BYTES:
        message += (
            f"\n[error cut: {size:,} bytes written, the first {_size(MAX_RESULT_BYTES)} kept]"
        )
    return message


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
