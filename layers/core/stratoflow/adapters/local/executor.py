"""Runs attempts as local processes that outlive the scheduler.

Each run has a directory ``<root>/<run>/`` in the home (0700) that holds its attempts' logs,
``<task>.<attempt>.log`` (0600). The server claims an attempt by creating its log exclusively
(``O_EXCL``: a repeated dispatch of the same attempt runs nothing) and hands it to the task as
stdout and stderr; the task never sees the home. It starts in a work directory of its own,
``<work root>/<run>.<task>.<attempt>/`` (0700), outside the home, with an allow-listed
environment, as its project's uid or in a Landlock domain (see :mod:`.sandbox`). Its outputs
(``$STRATOFLOW_OUTPUT``, the python runner's files) are written there, and the exit status that
the wrapper's EXIT trap records goes to the end of its log; the server reads them (never
following a link the task left) and a reaper thread empties the work directory once the
scheduler has recorded the result, keeping it for a later attempt of the same run or removing
it (what a stopped scheduler left is swept at the next start). The log of an attempt given
secrets is masked in place at its end, by the same thread, with the values it was given, which
are kept in the home from before its start until then (:mod:`.masks`): a restarted scheduler
masks what an earlier one left, and masks an attempt it adopts at its end.

Nothing flows through pipes to the scheduler, so a scheduler killed with SIGKILL loses
nothing: on restart it finds the wrappers still running by their command line (which carries a
token, :mod:`.wrapper_tokens`, not the names any process could read there), watches them
through pidfds, and reads the exit status of those that ended meanwhile from their logs.

A stop or a timeout sends SIGTERM to the attempt's process group, then SIGKILL to the group
after the grace period whatever became of the wrapper (unless the group is found empty first,
or its id is another group's by then); a task that ends on its own takes what it left running
in its group with it. Until a killed group is gone (empty, or sent SIGKILL: nothing of it runs user code after
that), a later attempt of the same task that is dispatched waits here, claimed but not started
(no log yet), so two attempts of a task never run at once; the scheduler already makes a
timed-out attempt's retry wait the grace (``kill_grace``), so that wait is short, but a rerun
right after a stop waits up to the grace. Closing the executor sends the SIGKILLs still due,
once their grace is over: a killed task does not outlive ``stratoflow run``.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import queue
import re
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import stratoflow
from stratoflow.adapters.local import sandbox, spawn
from stratoflow.adapters.local.deadlines import Deadlines
from stratoflow.adapters.local.masks import PendingMasks
from stratoflow.adapters.local.wrapper_tokens import WrapperTokens, is_token
from stratoflow.connections import Connection, MissingConnection
from stratoflow.engine import AttemptResult, AttemptStatus, RenderedTask, TaskInstance
from stratoflow.errors import InvalidInput
from stratoflow.ports import AttemptSpec, Dispatcher, Recovery
from stratoflow.resources import (
    ResourceStore,
    ResourceUnavailable,
    materialize,
    reserved_name,
    task_resources,
)
from stratoflow.secrets import (
    Masker,
    MissingSecret,
    SecretSource,
    SecretUnavailable,
    hold_values,
    lookup,
    mask_outputs,
    masker_for,
    references,
    release,
    resolve,
)
from stratoflow.taskexec import (
    EXITED_LINE,
    STARTED_LINE,
    LogRecord,
    log_record,
    read_task_file,
    result_from_files,
)

log = logging.getLogger("stratoflow.executor")

# $1: a token (wrapper_tokens: a keyed digest of the attempt's run dir name and
# <task>.<attempt>), only to be recognised by recovery: the command line is public (any
# process reads /proc/PID/cmdline), so it names no project, workflow, run, task or home; the
# task and the attempt are taken from the environment, which the task's own uid alone reads
# (a wrapper started by an earlier version named the run's directory and <task>.<attempt>
# there, in $1 and $2, and is still recognised so). The body comes in the environment too
# and runs in this shell: a subshell per task would cost more than the scheduler's own work.
# A scheduler that is alive takes the exit status from waitpid (which
# also covers a body that replaces the shell with `exec cmd`); the trap's record is for one that
# was not alive to wait. The start line names the shell's pid ($$): a restarted scheduler finds
# a wrapper by its argv, or, once `exec cmd` replaced it (argv and traps gone, no record to
# come), by that pid (_replaced_wrapper: its session, and its environment or its copy of the
# log), and watches and stops it as any other. Both the
# record and the line that says "it started" (written before the body runs: a claimed attempt
# without it was never started, the scheduler died before the exec) go to the attempt's log,
# through a descriptor of its own, so a body that redirects its output still leaves them there
# (taskexec.log_record reads them; taskexec.tail leaves them out of an error's last output).
# No file is made for them: a new file per attempt cost the task ~0.45 ms of CPU on the ext4
# measured (docs/benchmarks.md). The two lines are made from the text recovery reads back
# (taskexec.STARTED_LINE and EXITED_LINE).
_NAMES = {"task": "$__stratoflow_task", "attempt": "$__stratoflow_attempt"}
_STARTED = STARTED_LINE.format(**_NAMES, pid="$$").rstrip("\n")
_EXITED = EXITED_LINE.format(**_NAMES, code="$__stratoflow_rc").rstrip("\n")
# Killed by a signal it catches (TERM, HUP, INT...), bash runs its EXIT trap with $? the status
# of the last command that ended, 0 after a `sleep` it was waiting for: a task killed while its
# scheduler was down was recovered as succeeded, and its downstream tasks ran. Each such signal
# is trapped: the handler notes 128 + the signal (the shell's convention) for the record, puts
# the signal back to its default and sends it again, so the shell dies of it as it would have
# (a scheduler that waits for it sees the same status) and runs the EXIT trap on the way: the
# record's, or the body's own (its cleanup runs, as before; the record is then the body's
# to lose, as before). Traps are reset in the body's subshells and the commands it starts.
# SIGKILL leaves no record: LOST, the safe answer.
_SIGNALS = ("HUP", "INT", "TERM", "USR1", "USR2", "PIPE", "ALRM", "XCPU", "XFSZ")
_SIGNAL_TRAPS = "\n".join(
    f"trap '__stratoflow_died {name} {int(getattr(signal, 'SIG' + name))}' {name}"
    for name in _SIGNALS
)
WRAPPER = (
    r"""exec {__stratoflow_log}>&1
readonly __stratoflow_log __stratoflow_task="$STRATOFLOW_TASK_ID" __stratoflow_attempt="$STRATOFLOW_ATTEMPT"
echo "<started>" >&"$__stratoflow_log"
trap '__stratoflow_rc=${__stratoflow_signal:-$?}; echo "<exited>" >&"$__stratoflow_log"' EXIT
__stratoflow_died() { __stratoflow_signal=$((128 + $2)); trap - "$1"; kill -s "$1" "$$"; }
<signal traps>
__stratoflow_body=$__STRATOFLOW_BODY
unset __STRATOFLOW_BODY
set --
eval "$__stratoflow_body"
""".replace("<started>", _STARTED)
    .replace("<exited>", _EXITED)
    .replace("<signal traps>", _SIGNAL_TRAPS)
)
WRAPPER_NAME = "stratoflow-task"  # $0 of every wrapper: how recovery recognises them
KILL_GRACE_SECONDS = 5.0
# once a killed attempt's wrapper has exited: how often to look whether its group is gone
GONE_POLL_SECONDS = 0.1
GONE_POLL_CLOSING = 0.05  # close(): how often a killed group's end is looked for


def _start_thread_count() -> int:
    """How many start threads: one per core this process may run on, at most four. A start
    waits (no GIL held) while its child execs, so starts on threads of their own overlap;
    but the waiting parent's child is itself busy on a core, and more starts at once than
    cores only queue behind each other and the tasks, with a thread hand-off and GIL
    hand-offs each: on 2 cores, 2 threads ran the issue's 2,000-task DAG at concurrency 8
    4-6% faster than 4 and spent ~0.05 ms less of the scheduler's CPU a task; at
    concurrency 16 the two were within 1% (docs/benchmarks.md, "Seventeenth round"). A
    cgroup's CPU quota (``docker --cpus``) counts as what it allows."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cpu_quota()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, min(4, cores))


# cgroup v2's, then v1's: where a container's CPU quota is read (its own cgroup's, under the
# usual cgroup namespace)
CPU_MAX_FILES = (Path("/sys/fs/cgroup/cpu.max"),)
CFS_FILES = (
    Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
    Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)


def _cpu_quota() -> float | None:
    """The CPUs a cgroup quota lets this process use (2.5 for ``--cpus=2.5``), or None."""
    for path in CPU_MAX_FILES:
        try:
            quota, period = path.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        except (OSError, ValueError, ZeroDivisionError):
            continue
    try:
        quota_us, period_us = (int(p.read_text()) for p in CFS_FILES)
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


SPAWN_THREADS = _start_thread_count()
REAP_GATHER_SECONDS = 0.05  # how long the reaper waits for more released work dirs
# How often, at most, the mirror of the cwd's Python files is checked against the cwd as
# attempts start (an lstat a directory holding some, and of the files of those that changed:
# ~0.1 ms for the repository's ~30), so a module an editor or git replaced is imported in its
# new version, not the one linked when the server started
IMPORTS_CHECK_SECONDS = 0.5
# A work dir whose attempt ended on its own (its process group killed with it) is emptied and
# kept as a spare for a later attempt of the same run, instead of removed and made anew: on a
# file system that makes a new inode expensive after deletions (ext4 without a journal skips
# every inode deleted in the last minutes, one by one: ~0.2-1 ms of CPU per mkdir measured
# here), a run of thousands of attempts otherwise pays that twice per attempt, its deletions
# making its own creations dearer (docs/benchmarks.md, "Tenth round"). The price: a process
# that left its group with setsid (which a stop does not reach either) keeps its Landlock
# right to write beneath its old work dir, so it could write into a later attempt's of the
# same run; never another run's. $STRATOFLOW_REUSE_WORK_DIRS=0 makes every work dir anew.
SPARES_PER_RUN = 64
SPARE_SECONDS = 10.0  # a run's spares unused this long are removed (its run has ended)
_SPARE = ".spare."  # a spare's name: .spare.<run>.<n>; never an attempt's (<run>.<task>.<n>)
_NAME_MAX = 255  # bytes in a file name (Linux)
_RUN_KEY_LONGEST = 120  # characters of a run id kept as they are in a work dir's name


def _run_key(run_id: str) -> str:
    """A run id as work dir names hold it: as it is, or, when it is long (ids reach 300
    characters: the API's bound), its head and a digest of the whole: unique and the same
    every time, and short enough for any task id (at most 128) beside it."""
    if len(run_id) <= _RUN_KEY_LONGEST:
        return run_id
    return f"{run_id[:64]}~{hashlib.sha256(run_id.encode()).hexdigest()[:32]}"


def _run_dir_name(run_id: str) -> str:
    """The name of a run's directory of logs, ``<root>/<name>/<task>.<attempt>.log``: its id
    as it is when that fits a file name (255 bytes: every run id a home already holds), else
    ``_run_key``'s (a project and a workflow name of 128 make generated ids of up to 284
    characters; those had every attempt fail to start with 'File name too long'). A digest's
    name holds a '~', which no run id does, so it cannot be another run's directory; it is
    its own name (shorter than 255), so this maps a directory's name to itself too."""
    if len(run_id) <= 63 or len(run_id.encode()) <= _NAME_MAX:  # 63: even in 4-byte characters
        return run_id
    return _run_key(run_id)


def _work_name(run_id: str, task_id: str, attempt: int) -> str:
    """An attempt's work dir name, ``<run>.<task>.<attempt>`` (task ids hold no dot, so it is
    unique). Ids that would not fit a file name (255 bytes) had every attempt fail to start
    with 'File name too long': the run's part is then ``_run_key``'s."""
    name = f"{run_id}.{task_id}.{attempt}"
    if len(name) <= 63 or len(name.encode()) <= _NAME_MAX:  # 63: even in 4-byte characters
        return name
    return f"{_run_key(run_id)}.{task_id}.{attempt}"


DISK_FULL_BYTES = 64 << 10  # less than this free on a task's file system: it is full
_PY_TYPES = {"python", "http", "lambda", "sql"}
# Where `import stratoflow` finds this package: a python task's runner imports it. Installed, it
# is site-packages (under sys.prefix); installed editable (`make install`), the source tree a
# .pth names, which a Landlock domain could not read unless the server ran from a directory
# above it: every python, http, sql and lambda task then failed to import the runner.
_IMPORT_ROOT = str(Path(stratoflow.__file__).resolve().parent.parent)

Report = Callable[[str, str, int, AttemptResult, str], None]
Key = tuple[str, str, int]
_P = TypeVar("_P")


class _Started(Protocol):
    """A started wrapper: a ``Popen``, or a :class:`.spawn.Spawned`."""

    pid: int

    def wait(self) -> int: ...


@dataclass
class _Live:
    run_id: str
    task_id: str
    attempt: int
    pid: int = 0  # 0 while it is being started
    pidfd: int = -1  # the watcher's pidfd of it while it watches it (under the lock)
    proc: _Started | None = None  # None when re-attached after a restart
    killed: bool = False  # we stopped it
    # False: not an attempt this executor runs (kill() found it by its command line), watched
    # only so that its kill timer is disarmed once its group is gone (its id may be reused)
    report: bool = True
    # the secret values it was given (none for most tasks): its log is masked with them when
    # it ends, and the log view masks them meanwhile (secrets.hold_values)
    given: frozenset[str] = frozenset()


@dataclass
class _Ending:
    """A task's killed attempt whose process group may still run: what is dispatched of the
    task meanwhile waits here, started once every group is gone (``_group_gone``)."""

    groups: dict[int, _Killed] = field(default_factory=dict)  # pgid -> its kill
    waiting: list[tuple[AttemptSpec, _Live]] = field(default_factory=list)
    # its logs to mask (``_to_mask``'s jobs) once the group is gone: what it writes in its
    # grace period is masked too, and the log view masks its given values until then
    to_mask: list[tuple[str, str, int, str, frozenset[str]]] = field(default_factory=list)


@dataclass
class _Killed:
    """A killed process group (the executor's lock guards it)."""

    due: float  # when its SIGKILL is due (time.monotonic)
    leader: int  # when its leader started, as the kill saw it (_start_time): _still_the_group
    # a pidfd of its leader (a copy of the watcher's, taken while it watched), used and closed
    # under the executor's lock: where the kernel can, the group is signalled and looked for
    # through it (_group_by_pidfd), exactly that group whoever has its id since
    pidfd: int | None = None


def _killed_group_left(pgid: int, killed: _Killed) -> bool:
    """Whether anything of a killed group is left: through its leader's pidfd where the
    kernel can, else by its id while that is still the group's (for ``_finish_kills``, whose
    groups are its own; ``LocalExecutor._group_left`` reads /proc outside the lock)."""
    there = None if killed.pidfd is None else _group_by_pidfd(killed.pidfd, 0)
    if there is not None:
        return there
    return _group_alive(pgid) and _still_the_group(pgid, killed.leader)


def _stat(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (which may hold ")"): state,
    ppid, pgrp, session, ... (the 3rd field of the file first); None when there is no such
    process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 1 :].split()


def _leads_session(fields: list[bytes] | None, pid: int | str) -> bool:
    """Whether the process of these ``_stat`` fields leads a session of its own (as every
    wrapper does), ``pid`` its id."""
    return fields is not None and len(fields) > 3 and fields[3] == str(pid).encode()


def _start_time(pid: int) -> int:
    """When the process ``pid`` started (clock ticks after boot: /proc/PID/stat's 22nd
    field); 0 when there is none."""
    fields = _stat(pid)
    try:
        return int(fields[19]) if fields is not None else 0
    except (ValueError, IndexError):
        return 0


def _still_the_group(pgid: int, leader_start: int) -> bool:
    """Whether ``pgid`` still names the group a kill was sent to when its leader had
    started at ``leader_start`` (0: there was no leader any more). A group's id is its
    leader's pid, which is not handed out again while any process of the group lives; once
    the group is gone it may be, to a process that started later, in a group of its own
    (every task is one): pids come round within a minute on a busy machine whose pid_max is
    32768. No process at that pid: the group is gone, or leaderless and then only its own
    members can be in it, unless it emptied and its id was taken and left leaderless again
    since: a killed group outliving its wrapper is looked at every ``GONE_POLL_SECONDS``
    (``_disarm_when_gone``), so that would all have to happen within that moment. Asked only
    where the group cannot be reached through its leader's pidfd (``_group_by_pidfd``: a
    kernel before 6.9, or a leader the executor never watched), which has no such moment."""
    now = _start_time(pgid)
    return now in (0, leader_start)


PIDFD_SIGNAL_PROCESS_GROUP = 4  # pidfd_send_signal's flag (Linux 6.9): the group it leads
_pidfd_groups = [True]  # [False] once the kernel said it has no such flag


def _group_by_pidfd(pidfd: int, signum: int) -> bool | None:
    """Send ``signum`` (0: only look) to the process group the pidfd's process leads,
    through the pidfd: the kernel finds the group by the leader's own pid, which a later
    process given the same number is not, and which the group keeps after its leader was
    reaped. Whether any process of it was there; None where the kernel cannot (before 6.9:
    the caller signals by id)."""
    if not _pidfd_groups[0]:
        return None
    try:
        signal.pidfd_send_signal(pidfd, signum, None, PIDFD_SIGNAL_PROCESS_GROUP)
    except ProcessLookupError:
        return False
    except PermissionError:
        # someone is there; a signal refused (a policy that allows pidfd_open but not this):
        # sent by id instead
        return True if signum == 0 else None
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            _pidfd_groups[0] = False
        return None
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any process is left in the group (one syscall; only after a kill)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone is there
        return True
    return True


def disk_full(paths: Sequence[str], threshold: int = DISK_FULL_BYTES) -> str | None:
    """The first of ``paths`` whose file system has (almost) no space left for its user."""
    for path in paths:
        try:
            st = os.statvfs(path)
        except OSError:
            continue
        if st.f_bavail * st.f_frsize < threshold or (st.f_files and st.f_favail == 0):
            return path
    return None


def _wrapper_argv(pid: int) -> list[str] | None:
    """The command line of ``pid`` if it leads a session of its own, as every wrapper does
    (else None). A subshell of the body (``( ... )``, ``$( ... )``, a pipeline's part, a
    compound command run with ``&``) is a copy of the wrapper's shell, command line and all,
    but in the wrapper's session: a restarted scheduler took one for the wrapper, watched it
    (the attempt was LOST once it ended, while the wrapper ran on, and was started again)
    and sent its kills to a group id that was not one."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if WRAPPER_NAME.encode() not in raw or not _leads_session(_stat(pid), pid):
        return None  # (not a wrapper: its stat is not read)
    return raw.decode(errors="replace").split("\0")[:-1]  # each argument ends with a NUL


def _is_wrapper(pid: int, tokens: WrapperTokens, run_dir: Path, name: str) -> bool:
    """Is ``pid`` (still) the wrapper of this attempt, and not a reused pid?"""
    argv = _wrapper_argv(pid)
    return argv is not None and _wrapper_of(argv, tokens, str(run_dir.parent), {}, pid) == (
        run_dir.name,
        name,
    )


def _wrapper_of(
    argv: list[str],
    tokens: WrapperTokens | None,
    root: str,
    expected: Mapping[str, tuple[str, str]],
    pid: int | None = None,
) -> tuple[str, str] | None:
    """(run dir name, attempt name) of the wrapper whose command line is ``argv``, if it is
    one of the home whose logs are under ``root``: its token one of ``expected``'s (token ->
    attempt, computed by the caller for the attempts it looks for), or else (``pid`` given)
    the token of the ids its environment carries; or, started by an earlier version, the
    names it carries (the run's directory under ``root`` and ``<task>.<attempt>``)."""
    if WRAPPER_NAME not in argv:
        return None
    rest = argv[argv.index(WRAPPER_NAME) + 1 :]
    if len(rest) == 1:
        token = rest[0]
        found = expected.get(token)
        if found is not None or tokens is None or pid is None or not is_token(token):
            return found
        environ = _leader_environ(str(pid))
        at = None if environ is None else _attempt_of(_environ_dict(environ))
        # a token not of the ids it carries: forged, or another home's
        return at if at is not None and tokens.matches(token, *at) else None
    prefix = root + os.sep
    if len(rest) >= 2 and rest[0].startswith(prefix):  # an earlier version's: names
        return Path(rest[0]).name, rest[1]
    return None


def _replaced_wrapper(pid: int, output: str, log_file: str) -> bool:
    """Whether ``pid``, the wrapper an attempt's log names, still runs as that attempt's after
    its body replaced the shell (``exec cmd``: the command line is the body's now, which
    :func:`live_wrappers` does not know): it leads its own session, as every wrapper does, and
    it is the attempt's: the environment it was started with names the attempt's output file
    (its work root, run, task and attempt), or it writes to the attempt's log (``log_file``:
    the wrapper's copy of its stdout, which an ``exec`` keeps, whatever the program does with
    its environment: ``exec env -i``, ``exec -c``, a process title written over it). The
    server opens each log for its attempt alone and its processes inherit it; a reader of the
    log (``tail -f``, a log shipper) holds it read-only and is not taken. A pid reused by
    another process fails (a descendant of the attempt that made a session of its own has a
    pid of its own); a zombie holds nothing and its environment is empty. Not found (LOST,
    as before): a program that changed its environment and closed every copy of its log, one
    unreadable to a server of its uid (not dumpable), a log deleted or reached by another
    path since (a home moved or mounted elsewhere)."""
    environ = _leader_environ(str(pid))
    return environ is not None and _attempts_process(pid, environ, output, log_file)


def _attempts_process(
    pid: int | str, environ: list[bytes] | None, output: str, log_file: str
) -> bool:
    """Whether the process ``pid`` is the attempt's whose output file is ``output`` and log
    ``log_file``: ``environ`` (the environment it was started with, if it could be read)
    names that output file, or it writes to that log (:func:`_replaced_wrapper`)."""
    if environ is not None and b"STRATOFLOW_OUTPUT=" + output.encode() in environ:
        return True
    return any(link == log_file for link in _written_files(pid, log_file))


_FDINFO_FLAGS = re.compile(rb"^flags:\s*([0-7]+)", re.MULTILINE)  # octal open(2) flags


def _written_files(pid: int | str, prefix: str) -> Iterator[str]:
    """What the process's descriptors open for writing name, of those that start with
    ``prefix``: /proc/PID/fd's links, read as text (nothing is opened or looked up through
    them, so a FIFO or a hung file system stops nothing), and for those under ``prefix``
    the access mode /proc/PID/fdinfo says. Nothing when they cannot be read."""
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        try:
            link = os.readlink(f"{base}/{name}")
            if not link.startswith(prefix):
                continue
            info = Path(f"/proc/{pid}/fdinfo/{name}").read_bytes()
        except OSError:
            continue
        flags = _FDINFO_FLAGS.search(info)
        if flags is not None and int(flags.group(1), 8) & os.O_ACCMODE != os.O_RDONLY:
            yield link


def _group_holds_attempt(pgid: int, output: str, log_file: str) -> bool:
    """Whether a process of the group ``pgid`` is the attempt's, whose output file is
    ``output`` and log ``log_file`` (what its wrapper left running: a subshell of its body, a
    job it put in the background): started with the attempt's environment, or writing to its
    log (as :func:`_replaced_wrapper` tells). A walk of /proc (at recovery only)."""
    for entry in os.scandir("/proc"):
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields is None or len(fields) < 3 or fields[2] != str(pgid).encode():
            continue
        if fields[0] == b"Z":  # a zombie's environment is empty
            continue
        try:
            environ: list[bytes] | None = (
                Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
            )
        except OSError:
            environ = None
        if _attempts_process(entry.name, environ, output, log_file):
            return True
    return False


def _leader_environ(pid: str) -> list[bytes] | None:
    """The environment ``pid`` was started with (``NAME=value`` entries), if it leads a
    session of its own (as every wrapper does), else None."""
    if not _leads_session(_stat(pid), pid):
        return None
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None


def _session_leaders_of_attempts(work_root: str, log_root: str) -> dict[tuple[str, str], list[int]]:
    """(run dir name, attempt name) -> the pids of the processes that lead a session of their
    own and are an attempt's (:func:`live_wrappers` names runs so): started with the environment of an attempt whose work dir is under
    ``work_root``, or else writing to an attempt's log under ``log_root`` (an ``exec`` that
    changed its environment: :func:`_replaced_wrapper`). Wrappers (those
    :func:`live_wrappers` knows, and those whose body replaced them with ``exec``) and any
    process of an attempt that made a session of its own; the caller keeps the pid the
    attempt's log names. A walk of /proc (at recovery only)."""
    found: dict[tuple[str, str], list[int]] = {}
    prefix = (work_root.rstrip(os.sep) + os.sep).encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        environ = _leader_environ(entry.name)
        if environ is None:
            continue
        env = _environ_dict(environ)
        if not env.get(b"STRATOFLOW_OUTPUT", b"").startswith(prefix):
            for key in _logs_held(entry.name, log_root):
                found.setdefault(key, []).append(int(entry.name))
            continue
        at = _attempt_of(env)
        if at is not None:
            found.setdefault(at, []).append(int(entry.name))
    return found


def _environ_dict(environ: list[bytes]) -> dict[bytes, bytes]:
    return dict(v.split(b"=", 1) for v in environ if b"=" in v)


def _attempt_of(env: Mapping[bytes, bytes]) -> tuple[str, str] | None:
    """(run dir name, attempt name) of the attempt whose ids an environment carries, as
    :func:`live_wrappers` names it. Ids anyone can set (any session leader may carry them):
    the callers build paths of them, so only those a run and a task could have ("../x"
    reads no file elsewhere)."""
    run_id, task_id = env.get(b"STRATOFLOW_RUN_ID", b""), env.get(b"STRATOFLOW_TASK_ID", b"")
    attempt = env.get(b"STRATOFLOW_ATTEMPT", b"")
    if not (_RUN_ID.match(run_id) and _TASK_ID.match(task_id) and _ATTEMPT.match(attempt)):
        return None
    return _run_dir_name(run_id.decode()), f"{task_id.decode()}.{int(attempt)}"


def _logs_held(pid: str, log_root: str) -> set[tuple[str, str]]:
    """(run dir name, attempt name) of each attempt's log under ``log_root`` the process holds
    open for writing (``<log_root>/<run dir>/<task>.<attempt>.log``), checked as the
    environment's ids are."""
    prefix = log_root.rstrip(os.sep) + os.sep
    held: set[tuple[str, str]] = set()
    for link in _written_files(pid, prefix):
        if not link.endswith(".log"):
            continue
        run_dir, sep, file = link[len(prefix) : -len(".log")].partition(os.sep)
        task_id, dot, attempt = file.rpartition(".")
        if not (sep and dot and _RUN_DIR.match(run_dir.encode())):
            continue
        if _TASK_ID.match(task_id.encode()) and _ATTEMPT.match(attempt.encode()):
            held.add((run_dir, f"{task_id}.{int(attempt)}"))
    return held


# a run id (a project name may start with '-' or '_'; none with '.': "../x" is not one)
_RUN_ID = re.compile(rb"[A-Za-z0-9_-][A-Za-z0-9_.:-]{0,299}\Z")
_RUN_DIR = re.compile(rb"[A-Za-z0-9_-][A-Za-z0-9_.:~-]{0,254}\Z")  # a run dir's: _run_dir_name
_TASK_ID = re.compile(rb"[A-Za-z0-9_-]{1,128}\Z")  # as a workflow declares them
_ATTEMPT = re.compile(rb"[1-9][0-9]{0,8}\Z")


def live_wrappers(
    root: Path,
    attempts: Iterable[tuple[str, str]] = (),
    tokens: WrapperTokens | None = None,
    *,
    only: bool = False,
) -> dict[tuple[str, str], int]:
    """(run dir name, attempt name) -> pid of every wrapper under ``root`` still running
    (:func:`_run_dir_name`: the run's id unless that is too long for a file name). A wrapper
    carries a token (:mod:`.wrapper_tokens`), not names: those of ``attempts`` are matched by
    their tokens under ``tokens`` (the home's key; read from ``root``'s parent, the home,
    when not given), any other by the token of the ids its environment carries (one it
    cannot read is left out) unless ``only`` those are looked for; a wrapper of an earlier
    version by the names it carries."""
    if tokens is None:
        tokens = WrapperTokens.read(root.parent, str(root.resolve()))
    expected = {} if tokens is None else {tokens.token(*at): at for at in attempts}
    found: dict[tuple[str, str], int] = {}
    root_text = str(root)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        argv = _wrapper_argv(pid)
        if not argv:
            continue
        at = _wrapper_of(argv, tokens, root_text, expected, None if only else pid)
        if at is not None:
            found[at] = pid
    return found


def _as_user(setpriv: str, uid: int) -> list[str]:
    """The argv prefix that runs a command as ``uid`` (its own group, no supplementary
    groups, no capabilities), changed by ``setpriv`` after the exec rather than by Python
    between fork and exec: a ``Popen`` that changes uids cannot use vfork, and forking the
    scheduler (its whole address space) cost it milliseconds of CPU per task."""
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


def _confined(
    start: Callable[[list[str]], _P],
    argv: list[str],
    ruleset: int,
    drop_caps: bool,
    also: int | None = None,
) -> _P:
    """Start ``argv`` (through ``start``: ``Popen`` or :func:`.spawn.spawn`, both a vfork-like
    clone made by the calling thread) inside the Landlock domain of ``ruleset`` (and of
    ``also`` on top, :attr:`.sandbox.Landlock.narrowing`) without a
    ``preexec_fn`` (which would make ``Popen`` fork the whole scheduler instead of vfork): a
    throwaway thread enters the domain (no_new_privs, capabilities and Landlock domains are
    per thread) and starts the process, which inherits that thread's restrictions; the
    scheduler's other threads keep theirs.

    The thread is a bare ``_thread`` one, waited for on a lock: a ``threading.Thread`` (its
    start handshake, registry and join) cost ~0.12 ms of the scheduler's CPU per task, more
    than the thread itself. Where native/confine.c is built the executor does without it:
    :func:`.spawn.confined` enters the domain in the child, between vfork and exec."""
    box: dict[str, Any] = {}
    done = _thread.allocate_lock()
    done.acquire()
    # the new thread starts with this one's bounding set: empty on the start threads
    bounding = not sandbox.bounding_set_empty()

    def confine() -> None:
        try:
            sandbox.restrict_self(ruleset, drop_caps, bounding, also)
            box["proc"] = start(argv)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
        finally:
            done.release()

    _thread.start_new_thread(confine, ())
    done.acquire()  # released by the thread's last act: nothing of it runs after
    if "error" in box:
        raise box["error"]
    proc: _P = box["proc"]
    return proc


def _spawn_thread() -> None:
    """A start thread's first act (Landlock, as root): its bounding set emptied for good.
    A failure leaves it as it was: each confining thread then empties its own."""
    try:
        sandbox.empty_bounding_set()
    except Exception:
        log.exception("emptying a start thread's capability bounding set failed")


class _StartThreads:
    """``count`` threads that run the batches handed to them (``submit``), in order, from
    one queue; started at the first hand-off, each running ``initializer`` first. What a
    ``ThreadPoolExecutor`` did here, without its per-task bookkeeping (a future with its
    condition, a work item, an idle semaphore, a result set and notified: ~10 us of CPU a
    hand-off), which nothing here read."""

    def __init__(
        self, count: int, name: str, initializer: Callable[[], None] | None = None
    ) -> None:
        self._count = count
        self._name = name
        self._initializer = initializer
        self._queue: queue.SimpleQueue[tuple[Callable[[Any], None], Any] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[[_P], None], arg: _P) -> None:
        if not self._threads:
            with self._lock:
                if self._closed:
                    raise RuntimeError("cannot start tasks after the executor closed")
                if not self._threads:
                    for i in range(self._count):
                        thread = threading.Thread(
                            target=self._run, name=f"{self._name}_{i}", daemon=True
                        )
                        thread.start()
                        self._threads.append(thread)
        elif self._closed:
            raise RuntimeError("cannot start tasks after the executor closed")
        self._queue.put((fn, arg))

    def _run(self) -> None:
        if self._initializer is not None:
            self._initializer()
        get = self._queue.get
        while (item := get()) is not None:
            try:
                item[0](item[1])
            except Exception:
                log.exception("a start thread's batch failed")

    def shutdown(self) -> None:
        """Run what was handed over, then end the threads."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:  # after every batch handed over: each is run before any stops
            self._queue.put(None)
        for thread in threads:
            thread.join()


def _remove_dir(path: str) -> None:
    """Remove a work dir: an empty one (a task that left no file) by one rmdir, with no
    listing; the files a task usually leaves are unlinked one by one (a link is removed,
    never followed); anything else (a directory it made) goes through rmtree."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return
    except OSError:  # not empty (or not a directory): look inside
        pass
    else:
        return
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except PermissionError:  # the task took its rights off its work dir (chmod 000)
        _remove_tree(path)
        return
    try:
        for name in names:
            os.unlink(f"{path}/{name}")
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:  # a directory inside (EISDIR), or one not empty: the general way
        _remove_tree(path)


def _remove_tree(path: str) -> None:
    """Remove ``path`` and all it holds, rights a task took off its directories given back."""
    _owner_rights(path)
    shutil.rmtree(path, ignore_errors=True)


def _owner_rights(path: str) -> None:
    """Give the owner back every right on the directories under ``path`` that a task took
    off (the server owns them unless the task ran as a uid of its own, and then it is root),
    so they can be removed; a link is never followed. Below ``path`` (whose name, in the
    work root, only the server can change) each directory is reached from the descriptor of
    the one above it and changed through its own: a process left running there cannot swap
    one for a link between the check and the chmod to have the server chmod its target."""
    _with_rights(path)
    for _, dirnames, _, dir_fd in os.fwalk(path):  # top down: each made readable before listed
        for name in dirnames:
            _with_rights(name, dir_fd)


def _with_rights(path: str, dir_fd: int | None = None) -> None:
    """``path`` made 0700 if it is a directory (not a link) lacking the owner's rights."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o700 != 0o700:
                # the inode opened (an O_PATH descriptor has no fchmod; its /proc link does)
                os.chmod(f"/proc/self/fd/{fd}", 0o700)
        finally:
            os.close(fd)


def _kill_group(pgid: int, signum: int) -> None:
    """Signal a process group by its id (the wrapper's pid: it leads its session). The kernel
    keeps that id from being reused while any member of the group lives, so this reaches
    the attempt's processes even after the wrapper itself is gone."""
    if pgid > 1:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def _private_dir(path: Path, mode: int) -> Path:
    """Create ``path`` (and its parents) or check the one there: a directory, not a link,
    owned by us; then give it ``mode``. Refuses one another user planted."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(
            f"{path} is not a directory owned by uid {os.geteuid()}; remove it or set "
            "STRATOFLOW_WORK_ROOT to another place"
        )
    os.chmod(path, mode)
    return path


def default_work_root(root: Path) -> Path:
    """``$TMPDIR/stratoflow-<uid>/<hash of root>``: outside the home, on a path every task uid
    can traverse (the directories are 0711: nobody can list them), one per home."""
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"stratoflow-{os.geteuid()}" / digest


def _places(
    root: Path,
    home: Path,
    work_root: Path | None,
    isolation: str | None,
    python: str,
    environ: Mapping[str, str],
) -> tuple[Path, sandbox.Isolation, Path, list[Path]]:
    """Where an executor of ``root`` (resolved) would keep its work dirs, the isolation it
    would choose, where its imports mirror goes and what every task may write (Landlock):
    refused (:class:`.sandbox.IsolationError`) when a task could reach the server's state
    there. Makes nothing."""
    chosen = work_root or (
        Path(environ["STRATOFLOW_WORK_ROOT"]) / hashlib.sha256(str(root).encode()).hexdigest()[:16]
        if environ.get("STRATOFLOW_WORK_ROOT")
        else default_work_root(root)
    )
    resolved = chosen.resolve()
    if resolved == home or home in resolved.parents:
        raise sandbox.IsolationError(
            f"the work root {resolved} is inside the home {home}: tasks must work "
            "outside the server's state"
        )
    chosen_isolation = sandbox.choose_isolation(
        isolation or environ.get("STRATOFLOW_TASK_ISOLATION") or "auto",
        euid=os.geteuid(),
        landlock_abi=sandbox.landlock_abi(),
        runtime_reachable=sandbox.reachable_by_others([python, sys.prefix, sys.base_prefix]),
    )
    imports_at = resolved.with_name(resolved.name + ".imports")
    write_paths: list[Path] = []
    if chosen_isolation.mode == "landlock":
        asked = [p for p in environ.get("STRATOFLOW_TASK_WRITE_PATHS", "").split(os.pathsep) if p]
        # what every task may write must hold neither the server's state nor the other
        # tasks' work dirs and the mirror they import from (checked before making any)
        # nor what the server runs: its Python environment (the native start helper in it,
        # which the scheduler maps) and Stratoflow's code
        sandbox.refuse_under_writable(
            {"the home": home, "the attempts root": root,
             "the work root": resolved, "the imports mirror": imports_at,
             "the server's Python environment": Path(sys.prefix),
             "Stratoflow's code": Path(_IMPORT_ROOT)},
            map(Path, asked),
        )  # fmt: skip
        write_paths = sandbox.readable_paths(asked, home)
    return resolved, chosen_isolation, imports_at, write_paths


def check_places(home: Path) -> None:
    """Refuse (:class:`.sandbox.IsolationError`) a ``home`` whose executor would refuse to
    start (:func:`_places`), before anything is made in it."""
    home = home.resolve()
    _places(home / "attempts", home, None, None, sys.executable, os.environ)


class LocalExecutor(Dispatcher):
    def __init__(
        self,
        root: Path,
        report: Report,
        *,
        python: str = sys.executable,
        work_root: Path | None = None,
        isolation: str | None = None,
        env_allow: str | None = None,
        protect: Path | None = None,
        keep_work_dirs: bool | None = None,
        reuse_work_dirs: bool | None = None,
        secrets: SecretSource | None = None,
        resources: ResourceStore | None = None,
        connections: Callable[[str, str], Connection] | None = None,
    ) -> None:
        """``root``: where logs go (in the home). ``work_root``: where tasks work
        ($STRATOFLOW_WORK_ROOT, else :func:`default_work_root`). ``isolation``: auto | user |
        landlock | none ($STRATOFLOW_TASK_ISOLATION, default auto). ``env_allow``: extra
        variable names a task gets from the server's environment, comma-separated
        ($STRATOFLOW_TASK_ENV_ALLOW). Under Landlock, $STRATOFLOW_TASK_READ_PATHS and
        $STRATOFLOW_TASK_WRITE_PATHS (os.pathsep-separated) add what tasks may read or write
        (never the home). ``protect``: the home, which Landlock denies (default
        ``root``'s parent). ``keep_work_dirs``: leave work dirs for inspection
        ($STRATOFLOW_KEEP_WORK_DIRS=1). ``reuse_work_dirs``: an ended attempt's emptied work
        dir may serve a later attempt of the same run ($STRATOFLOW_REUSE_WORK_DIRS, default
        1; 0 gives every attempt a new one, see :data:`SPARES_PER_RUN`). ``secrets``: where a task's ``{{ secrets.NAME }}``
        references are resolved, just before it starts (none: a reference fails the task);
        what a task reports back is masked with its project's secrets. ``resources``: where
        the files a task lists in ``resources`` come from (the versions its run pinned); they
        are copied into its work dir before it starts. ``connections``:
        ``(project, name) -> Connection`` for sql tasks (``MissingConnection`` when there is
        none; None: an sql task fails saying no connection is defined)."""
        environ = os.environ
        self._secrets = secrets
        self._resources = resources
        self._connections = connections
        self.root = root.resolve()
        self._root_text = str(self.root)
        home = (protect or self.root.parent).resolve()
        places = _places(self.root, home, work_root, isolation, python, environ)
        self.work_root, self.isolation, imports_at, write_paths = places
        self._work_root_text = str(self.work_root)
        _private_dir(self.root, 0o700)
        # the values of the logs to mask (see _to_mask), kept in the home from before each
        # such attempt's start until its log is masked: what a restarted scheduler masks
        self._pending = PendingMasks(home)
        # the key of the tokens its wrappers carry in their command lines, made once per home
        # (and of its attempts root: a copy of the home holds the same key)
        self._tokens = WrapperTokens.of_home(home, self._root_text)
        if work_root is None:
            _private_dir(self.work_root.parent, 0o711)
        _private_dir(self.work_root, 0o711)
        # the logs and the work dirs on one file system: its space is looked up once an
        # attempt (a run dir or work dir made here is on its parent's file system)
        self._one_fs = os.stat(self.root).st_dev == os.stat(self.work_root).st_dev
        self._env_allow = sandbox.allowed_env_names(
            environ.get("STRATOFLOW_TASK_ENV_ALLOW", "") if env_allow is None else env_allow
        )
        # read once: filtering the whole environment again for every attempt cost the
        # scheduler half a millisecond per task
        self._server_env = sandbox.allowed_environment(environ, self._env_allow)
        self._keep = (
            environ.get("STRATOFLOW_KEEP_WORK_DIRS", "") in ("1", "true", "yes")
            if keep_work_dirs is None
            else keep_work_dirs
        )
        self._reuse = not self._keep and (
            environ.get("STRATOFLOW_REUSE_WORK_DIRS", "1") not in ("0", "false", "no")
            if reuse_work_dirs is None
            else reuse_work_dirs
        )
        self._uids = (
            sandbox.ProjectUids(
                home / "task-uids",
                int(environ.get("STRATOFLOW_TASK_UID_BASE") or sandbox.DEFAULT_UID_BASE),
            )
            if self.isolation.mode == "user"
            else None
        )
        self._python = python
        # tasks start through glibc's posix_spawn (GIL released), else through Popen
        self._posix_spawn = spawn.available()
        # confined tasks enter their domain in the child (native/confine.c), where it is built
        self._native = self._posix_spawn and spawn.native_available()
        self._setpriv = shutil.which("setpriv", path=os.defpath + os.pathsep + "/usr/sbin:/sbin")
        # what a task never reads, when the cwd holds it: the home, the work dirs (each
        # attempt's own is granted to it), and when the work root is the default or
        # $STRATOFLOW_WORK_ROOT's, the work roots of other homes beside it
        kept_out = [home, self.work_root, imports_at]
        if work_root is None:
            kept_out.append(self.work_root.parent)
        # python tasks import stratoflow and the project's callables: the server's cwd first;
        # under Landlock through a mirror of its Python files only (see sandbox.import_tree)
        cwd = os.getcwd()
        server_path = environ.get("PYTHONPATH", "")
        # what a confined task may read whole: the system, its Python, what the server adds
        readable: list[str | Path] = [
            *environ.get("STRATOFLOW_TASK_READ_PATHS", "").split(os.pathsep),
            *sandbox.SYSTEM_READ_PATHS,
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            Path(python).parent,
            Path(python).resolve().parent,
            # the server's own PYTHONPATH and stratoflow's import root, but never the cwd as
            # a whole (PYTHONPATH=.): of the cwd, only its Python files
            *(
                p
                for p in [*server_path.split(os.pathsep), _IMPORT_ROOT]
                if p and Path(p).resolve() != Path(cwd).resolve()
            ),
        ]
        imports = (
            sandbox.import_tree(
                Path(cwd),
                kept_out,
                imports_at,
                sandbox.readable_paths(readable, [home, self.work_root]),
            )
            if self.isolation.mode == "landlock"
            else None
        )
        path = [str(imports.mirror if imports else cwd), server_path]
        self._pythonpath = os.pathsep.join(p for p in path if p)
        self._imports = imports
        self._imports_checked = time.monotonic()
        self._imports_cost = 0.0  # seconds the last refresh of the mirror took
        if imports is not None:
            read = sandbox.readable_paths([*readable, imports.mirror], [home, self.work_root])
            # The mirror's hard links are read through the mirror's rule. A file only a
            # symbolic link reaches is read at its own path: the cwd (its entries but the home
            # and the work root, when it holds them: the second domain allows reading the work
            # root for each attempt's work dir) in each attempt's ruleset, narrowed to those
            # files by a second domain made once.
            symlinked = imports.symlinked
            narrowed = sandbox.readable_paths([cwd], kept_out) if symlinked else []
            outside = [f for f in symlinked if not any(
                f == n or n in f.parents for n in narrowed
            )]  # fmt: skip
            self._landlock: sandbox.Landlock | None = sandbox.Landlock(
                sandbox.landlock_abi(),
                [*read, *outside],
                write_paths,
                narrowed=narrowed,
                files=symlinked,
                also=[self.work_root],
            )
            if symlinked:
                log.info(
                    "%d of the cwd's Python files are reached by symbolic links (a hard link "
                    "could not be made: another file system?): each adds a rule to every "
                    "task's start",
                    len(symlinked),
                )
        else:
            self._landlock = None
        log.info("task isolation: %s (%s)", self.isolation.mode, self.isolation.reason)
        self._report = report
        self._live: dict[int, _Live] = {}  # pidfd -> attempt
        self._by_key: dict[Key, _Live] = {}
        # (run, task) -> its killed attempts' groups not known gone, and what waits for them
        self._ending: dict[tuple[str, str], _Ending] = {}
        self._run_dirs: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        # epoll_ctl is safe while another thread waits in epoll_wait, so spawner threads
        # register pidfds directly; the pipe only wakes the watcher to close.
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        self._fds_closed = False  # close() closed the watcher's descriptors
        self._epoll.register(self._wake_r, select.EPOLLIN)
        # Under Landlock as root every start is made by a confining thread that gives up all
        # capabilities; the start threads that create them empty their own bounding set once
        # (they never exec), so each confining thread inherits it empty (see _spawn_thread)
        self._drop_caps = self._landlock is not None and os.geteuid() == 0
        # Landlock has no right for chmod, utime nor xattrs: a root server's tasks (uid 0)
        # start in a mount namespace where all but what they may write is read-only
        self._read_only_but: spawn.Writable | None = None
        if self._drop_caps and self._native and self._landlock is not None:
            self._read_only_but = spawn.Writable(self._landlock.shared_write_paths())
            self._check_read_only(self._read_only_but)
        if self._drop_caps and not self._native:
            log.warning(
                "tasks run as uid 0 without capabilities, and without native/confine.c "
                "(make native) they can connect to root's Unix sockets (Docker's, systemd's: "
                "root on this machine) and change the mode, times and extended attributes of "
                "any file root owns (a setuid bit, the home's mode, another project's files): "
                "Landlock does not cover them"
            )
        elif self._landlock is not None and not self._drop_caps:
            log.warning(
                "tasks run as this server's user: Landlock does not cover chmod, utime nor "
                "extended attributes, so a task can change the mode, times and extended "
                "attributes of any file this user owns (the home's mode among them); run the "
                "server as root (a uid per project, or Landlock with native/confine.c built)"
            )
        self._spawner = _StartThreads(
            SPAWN_THREADS, "stratoflow-spawn", _spawn_thread if self._drop_caps else None
        )
        self._wrapper_shell: dict[str, str] = {}  # PATH -> where bash is on it
        # kills' SIGKILLs when their grace is over, looks at groups that outlive their wrapper
        self._deadlines = Deadlines("stratoflow-kills")
        self._thread = threading.Thread(target=self._watch, name="stratoflow-executor", daemon=True)
        self._thread.start()
        self._doomed: list[str] = []  # names of released work dirs the reaper has to remove
        # (run, task, attempt, log, values given) of ended attempts whose logs it masks
        self._to_mask: list[tuple[str, str, int, str, frozenset[str]]] = []
        # attempts that ended on their own, their group killed: name -> run (see _SPARE)
        self._recyclable: dict[str, str] = {}
        self._spares: dict[str, list[str]] = {}  # run -> spare work dirs (paths), newest last
        self._spare_used: dict[str, float] = {}  # run -> when it last recycled or took one
        self._spare_seq = 0
        self._reap_wake = threading.Event()
        # set by close(): the reaper's gathering wait ends at once, not 50 ms later (a
        # sleep held up every close, the end of each `stratoflow run`, by up to that)
        self._reap_now = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="stratoflow-reaper", daemon=True)
        self._reaper.start()

    # ------------------------------------------------------------ layout
    def run_dir(self, run_id: str) -> Path:
        return self.root / _run_dir_name(run_id)

    def work_dir(self, run_id: str, task_id: str, attempt: int) -> Path:
        """``<work root>/<run>.<task>.<attempt>``: task ids hold no dot, so this is unique."""
        return self.work_root / _work_name(run_id, task_id, attempt)

    def path(self, run_id: str, task_id: str, attempt: int, suffix: str) -> Path:
        """The log, ``<root>/<run>/<task>.<attempt>.log``, or a file the task writes in its
        work dir, ``<task>.<attempt><suffix>``: .out, .json, .result, .error (and .exit,
        where an earlier version's wrapper recorded its status)"""
        if suffix == ".log":
            return self.run_dir(run_id) / f"{task_id}.{attempt}.log"
        return self.work_dir(run_id, task_id, attempt) / f"{task_id}.{attempt}{suffix}"

    def log_path(self, run_id: str, task_id: str, attempt: int) -> Path:
        return self.path(run_id, task_id, attempt, ".log")

    # The same places as strings, for the paths every attempt takes (its start, its end and
    # its removal): building them with pathlib (a parse per join) cost the executor's
    # threads ~0.1 ms of CPU per task.
    def _work_text(self, run_id: str, task_id: str, attempt: int) -> str:
        return f"{self._work_root_text}/{_work_name(run_id, task_id, attempt)}"

    def _run_text(self, run_id: str) -> str:
        return f"{self._root_text}/{_run_dir_name(run_id)}"

    def _file_text(self, run_id: str, task_id: str, attempt: int, suffix: str) -> str:
        if suffix == ".log":
            return f"{self._run_text(run_id)}/{task_id}.{attempt}.log"
        return f"{self._work_root_text}/{_work_name(run_id, task_id, attempt)}/{task_id}.{attempt}{suffix}"

    def _record(self, run_id: str, task_id: str, attempt: int) -> LogRecord:
        """What the wrapper left in the attempt's log: whether it started, the status its trap
        recorded. An attempt started by an earlier version left them in ``<name>.exit`` in
        its work dir (an empty file: started; else the status)."""
        record = log_record(self._file_text(run_id, task_id, attempt, ".log"), task_id, attempt)
        if record.started:
            return record
        legacy = read_task_file(self.path(run_id, task_id, attempt, ".exit"))
        if legacy is None:
            return record
        text = legacy.strip()
        return LogRecord(True, int(text) if text.lstrip("-").isdigit() else None)

    def _replaced(
        self, run_id: str, task_id: str, attempt: int, record: LogRecord | None = None
    ) -> int | None:
        """The pid of this attempt's wrapper when its body replaced it with ``exec`` and it
        still runs (the pid its log's start line names: :func:`_replaced_wrapper`); its log
        is read unless its ``record`` is given."""
        pid = (record or self._record(run_id, task_id, attempt)).pid
        if pid is None:
            return None
        output = self._file_text(run_id, task_id, attempt, ".out")
        log_file = self._file_text(run_id, task_id, attempt, ".log")
        return pid if _replaced_wrapper(pid, output, log_file) else None

    def _attempts_wrapper(
        self, key: Key, found: Mapping[tuple[str, str], int], record: LogRecord | None = None
    ) -> int | None:
        """The pid of the attempt's wrapper, of those :func:`live_wrappers` ``found``: the one
        found, unless the attempt's log names another (the wrapper's first write names its
        own pid, ``$$``), which is then the wrapper if it still carries the attempt's token.
        Any process reads a wrapper's command line and may start one of its own that carries
        the same token in a session of its own (a task of another project among them): found
        last, it was taken for the wrapper, adopted and watched (the attempt LOST when it
        ended, or never while it ran, and started again beside the real one, which nothing
        watched nor stopped); a stop sent its signals to it. The log is read unless
        ``record`` is given; one whose start line is not written yet names no pid."""
        at = (_run_dir_name(key[0]), f"{key[1]}.{key[2]}")
        pid = found.get(at)
        if pid is None:
            return None
        named = (record or self._record(*key)).pid
        if named is None or named == pid:
            return pid
        argv = _wrapper_argv(named)
        expected = {self._tokens.token(*at): at}
        if argv is not None and _wrapper_of(argv, self._tokens, self._root_text, expected) == at:
            return named
        return None

    def _kill_leftovers(self, key: Key, record: LogRecord) -> None:
        """SIGKILL what the attempt's wrapper, gone while no scheduler watched, left in its
        group (the group's id is the wrapper's pid, which its log's start line names), if
        anything of the attempt's is there: the id may be another group's by now."""
        if (
            record.pid is not None
            and _group_alive(record.pid)  # (a walk of /proc only where the group lives on)
            and _group_holds_attempt(
                record.pid, self._file_text(*key, ".out"), self._file_text(*key, ".log")
            )
        ):
            log.info("%s/%s/%s: killing what its wrapper left running", *key)
            _kill_group(record.pid, signal.SIGKILL)

    def _exit_status(self, run_id: str, task_id: str, attempt: int) -> int | None:
        """The status the wrapper's trap recorded, if it did."""
        return self._record(run_id, task_id, attempt).status

    # ------------------------------------------------------------ dispatch
    def _body(self, spec: AttemptSpec, owner: int | None) -> str:
        task = spec.task
        if task.task_type in _PY_TYPES:
            payload = {"type": task.task_type, "fields": task.fields, "params": task.params}
            spec_file = self.path(spec.run_id, spec.task_id, spec.attempt, ".json")
            fd = os.open(spec_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                if owner is not None:
                    os.fchown(fd, owner, owner)
                fh.write(json.dumps(payload, default=str))
            # named in its environment, not its argv: any process reads a command line, and
            # the file's path names the run and the task
            runner = "stratoflow.taskexec.taskrunner"
            return (
                f"__STRATOFLOW_SPEC={shlex.quote(str(spec_file))}"
                f" {shlex.quote(self._python)} -m {runner}"
            )
        command = task.fields.get("command", "")
        if isinstance(command, list):  # batch / kubernetes: an argv, run without a container
            return shlex.join(str(c) for c in command)
        return str(command)

    def dispatch(self, spec: AttemptSpec) -> str | None:
        return self.dispatch_many([spec])[0]

    def log_location(self, spec: AttemptSpec) -> str:
        # a string built directly (called twice per attempt; pathlib costs more than this)
        return f"{self._run_text(spec.run_id)}/{spec.task_id}.{spec.attempt}.log"

    def dispatch_many(self, specs: Sequence[AttemptSpec]) -> list[str | None]:
        """Start attempts; returns where each log will be. A lone attempt (a step of a chain)
        starts right here, with no hand-off latency; a batch starts on the spawn threads, so
        the exec waits overlap (they do not hold the GIL) and the loop goes on meanwhile.
        Under Landlock as root a lone attempt goes to the spawn threads too, unless this
        thread's capability bounding set is empty: a confining thread made here would have
        to empty its own (~40 drops, each a new set of credentials: ~0.12 ms of CPU, more
        than the hand-off), one made by a spawn thread inherits theirs empty."""
        imports = self._imports
        if imports is not None:  # (a mirror of symbolic links only: its refresh does nothing)
            now = time.monotonic()
            # thousands of files: less often, so the checks take at most ~2% of a core
            if now - self._imports_checked >= max(IMPORTS_CHECK_SECONDS, 50 * self._imports_cost):
                self._imports_checked = now
                imports.refresh()  # files of the cwd replaced since: linked anew
                self._imports_cost = time.monotonic() - now
        fresh: list[tuple[AttemptSpec, _Live]] = []
        with self._lock:
            ending = self._ending  # empty unless something was killed lately: no cost
            for spec in specs:
                key = (spec.run_id, spec.task_id, spec.attempt)
                if key not in self._by_key:  # else: already starting or running under our eyes
                    live = self._by_key.setdefault(key, _Live(*key))
                    if ending and (old := ending.get((spec.run_id, spec.task_id))) is not None:
                        old.waiting.append((spec, live))  # an earlier attempt still ends
                        continue
                    fresh.append((spec, live))
        if len(fresh) == 1 and not (self._drop_caps and not sandbox.bounding_set_empty()):
            self._spawn_all(fresh)  # one attempt, on this thread
        else:
            # one hand-off per spawn thread, not per attempt: each submit wakes a thread
            for i in range(min(SPAWN_THREADS, len(fresh))):
                self._spawner.submit(self._spawn_all, fresh[i::SPAWN_THREADS])
        return [self.log_location(spec) for spec in specs]

    def _spawn_all(self, batch: list[tuple[AttemptSpec, _Live]]) -> None:
        for spec, live in batch:
            try:  # one attempt's unexpected error must not keep the others from starting
                self._spawn(spec, live)
            except Exception as exc:
                log.exception("starting %s/%s/%s failed", live.run_id, live.task_id, live.attempt)
                if not live.pid:  # never started: nothing will report its end but this
                    self._not_started(live, f"could not start the task: {exc}")

    def _claim(self, spec: AttemptSpec) -> int | None:
        """Create the attempt's log exclusively: its fd, or None when another start holds it."""
        if spec.run_id not in self._run_dirs:  # a Path only the first time (~2 us each)
            self.run_dir(spec.run_id).mkdir(mode=0o700, parents=True, exist_ok=True)
            self._run_dirs.add(spec.run_id)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        try:
            return os.open(self.log_location(spec), flags, 0o600)
        except FileExistsError:
            return None

    def _spawn(self, spec: AttemptSpec, live: _Live) -> None:
        name = f"{spec.task_id}.{spec.attempt}"
        log_fd = ruleset = work_fd = -1
        argv: list[str] = []
        env: dict[str, str] = {}
        try:
            claimed = self._claim(spec)
            if claimed is None:
                self._follow(live)
                return
            log_fd = claimed
            try:
                task, given = self._resolved(spec)
                if task is not spec.task:  # a reference resolved (a copy costs ~3 us)
                    spec = replace(spec, task=task)
                if given:
                    key = (spec.run_id, spec.task_id, spec.attempt)
                    # recorded before the task can print one, kept until its log is masked:
                    # a crash on the way leaves it to the next start (an OSError: not started)
                    self._pending.add(key, given)
                    live.given = given
                    hold_values(spec.project, key, given)
            except (MissingSecret, SecretUnavailable, MissingConnection) as exc:
                os.write(log_fd, f"stratoflow: {exc}\n".encode())
                self._not_started(live, str(exc), retryable=False)
                return
            work = self._work_text(spec.run_id, spec.task_id, spec.attempt)
            self._make_work_dir(spec.run_id, work)
            owner = self._uids.uid(spec.project) if self._uids is not None else None
            if owner is not None:
                os.chown(work, owner, owner)
                os.fchown(log_fd, owner, owner)  # so /dev/stderr (a reopen) works; 0600
            try:
                self._place_resources(spec, work, owner)
            except (ResourceUnavailable, InvalidInput) as exc:
                os.write(log_fd, f"stratoflow: {exc}\n".encode())
                self._not_started(live, str(exc), retryable=False)
                return
            env = sandbox.environment_from(
                self._server_env,  # filtered once, in __init__
                work_dir=work,
                task_env=spec.task.env,
                stratoflow={
                    "PYTHONPATH": self._pythonpath,
                    "STRATOFLOW_OUTPUT": self._file_text(
                        spec.run_id, spec.task_id, spec.attempt, ".out"
                    ),
                    "STRATOFLOW_RUN_ID": spec.run_id,
                    "STRATOFLOW_TASK_ID": spec.task_id,
                    "STRATOFLOW_ATTEMPT": str(spec.attempt),
                    "STRATOFLOW_WORKFLOW": spec.workflow,
                    "STRATOFLOW_PROJECT": spec.project,
                    "STRATOFLOW_LOGICAL_DATE": spec.logical_date.isoformat(),
                    "__STRATOFLOW_BODY": self._body(spec, owner),
                },
            )
            argv = [self._bash(env), "--noprofile", "--norc", "-c", WRAPPER,
                    *self._wrapper_args(spec.run_id, name)]  # fmt: skip

            def popen(args: list[str], **extra: Any) -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    args, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log_fd,
                    stderr=log_fd, start_new_session=True, **extra,
                )  # fmt: skip

            def start(args: list[str]) -> _Started:
                """The same start as ``popen(args)``, through posix_spawn when it can."""
                if work_fd >= 0:
                    try:
                        return spawn.spawn(args, env, work_fd, log_fd)
                    except spawn.Unsupported:
                        pass
                return popen(args)

            if self._posix_spawn:
                # held for the start (its cwd) and, under Landlock, its write rule
                work_fd = os.open(work, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            if self._landlock is not None:
                ruleset = self._landlock.ruleset(
                    work if work_fd < 0 else work_fd, log_fd
                )  # by the descriptors held: no path looked up again
                narrowing = self._landlock.narrowing
                native: _Started | None = None
                if self._native and work_fd >= 0:
                    with contextlib.suppress(spawn.Unsupported):  # else as below
                        rulesets = [ruleset] if narrowing is None else [ruleset, narrowing]
                        native = spawn.confined(
                            argv, env, work_fd, log_fd, rulesets, self._drop_caps,
                            no_unix_sockets=self._drop_caps,  # root's tasks: see spawn.confined
                            read_only_but=self._read_only_but,  # as root: all else read-only
                        )  # fmt: skip
                proc = native or _confined(start, argv, ruleset, self._drop_caps, narrowing)
            elif owner is not None and self._setpriv is not None:
                proc = start([*_as_user(self._setpriv, owner), *argv])
            elif owner is None:
                proc = start(argv)
            else:  # uids changed by Popen itself (no setpriv): posix_spawn cannot do that
                proc = popen(argv, user=owner, group=owner, extra_groups=[])
            live.proc = proc
        # ValueError: a NUL in the argv or environment (Popen: "embedded null byte")
        except (OSError, ValueError, sandbox.IsolationError, subprocess.SubprocessError) as exc:
            why = f"could not start the task: {exc}"
            if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
                why = f"could not start the task: no space left on device ({exc})"
            elif argv and argv[0] == "bash" and isinstance(exc, FileNotFoundError):
                # an env that sets PATH (e.g. "/opt/tools/bin:$PATH": values are not expanded)
                why = (
                    "could not start the task: bash is not on the task's PATH "
                    f"({env.get('PATH', os.defpath)!r}); a task's env values are taken as "
                    "written, not expanded: give the whole PATH"
                )
            self._not_started(live, why)
            return
        finally:
            for fd in (log_fd, ruleset, work_fd):
                if fd >= 0:
                    os.close(fd)
        live.pid = proc.pid
        self._watch_pid(live)
        if live.killed:  # a stop arrived while it was starting
            self._terminate(live)

    def _check_read_only(self, writable: spawn.Writable) -> None:
        """Refuse (:class:`.sandbox.IsolationError`) to serve as a root server under Landlock
        whose tasks could not start in their read-only mount namespace (each would fail to
        start: better said once, now)."""
        fd = os.open(self.work_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            spawn.check_read_only(fd, writable)
        except OSError as exc:
            if self._landlock is not None:
                self._landlock.close()
            raise sandbox.IsolationError(
                f"tasks of a root server under Landlock start in a mount namespace read-only "
                f"but what they may write, and that cannot be made here ({exc}): give the "
                "server CAP_SYS_ADMIN (a container's seccomp profile must allow unshare and "
                "mount), install its Python where other users can read it (a uid per "
                "project), or run it as an ordinary user"
            ) from exc
        finally:
            os.close(fd)

    def _make_work_dir(self, run_id: str, work: str) -> None:
        """An empty directory at ``work`` (0700): one of the run's spares renamed there, else
        a new one. A spare found not empty (something of the run wrote there since it was
        emptied) is not used: every attempt starts in an empty directory."""
        spare = None
        with self._lock:
            spares = self._spares.get(run_id)
            if spares:
                spare = spares.pop()
                self._spare_used[run_id] = time.monotonic()
        if spare is not None:
            try:
                os.rename(spare, work)
            except OSError:  # gone, or the name taken: a new one below
                _remove_dir(spare)
            else:
                with contextlib.suppress(OSError):  # unreadable: not used either
                    if not os.listdir(work):
                        return
                _remove_dir(work)
        try:
            os.mkdir(work, 0o700)
        except FileExistsError:  # left by a start that died before its wrapper ran
            shutil.rmtree(work)
            os.mkdir(work, 0o700)

    def _recycle(self, run_id: str, path: str) -> bool:
        """Empty the released work dir ``path`` and keep it as a spare of ``run_id``; False
        (nothing changed but perhaps files removed) if the run has enough spares or the dir
        holds more than files."""
        with self._lock:
            if len(self._spares.get(run_id, ())) >= SPARES_PER_RUN:
                return False
            self._spare_seq += 1
            spare = f"{self._work_root_text}/{_SPARE}{_run_key(run_id)}.{self._spare_seq}"
        try:
            mode = os.lstat(path).st_mode
            if not stat.S_ISDIR(mode):  # not a link put in its place
                return False
            for name in os.listdir(path):
                os.unlink(f"{path}/{name}")  # a directory inside: IsADirectoryError
            if stat.S_IMODE(mode) != 0o700:  # as a new one is made
                os.chmod(path, 0o700)
            os.rename(path, spare)
        except OSError:
            return False
        with self._lock:
            self._spares.setdefault(run_id, []).append(spare)
            self._spare_used[run_id] = time.monotonic()
        return True

    def _expired_spares(self, now: float, ttl: float) -> list[str]:
        """The spares of runs that used none for ``ttl`` seconds, taken out of the pool."""
        out: list[str] = []
        with self._lock:
            for run_id, used in list(self._spare_used.items()):
                if now - used >= ttl:
                    out.extend(self._spares.pop(run_id, ()))
                    del self._spare_used[run_id]
        return out

    def _wrapper_args(self, run_id: str, name: str) -> list[str]:
        """The wrapper's $0 and its one argument: a token (:mod:`.wrapper_tokens`), not
        names, since any process reads a command line; ~2 us, no file read."""
        return [WRAPPER_NAME, self._tokens.token(_run_dir_name(run_id), name)]

    def _bash(self, env: dict[str, str]) -> str:
        """Where ``bash`` is on the task environment's PATH, looked up once per PATH:
        ``Popen`` given a bare name builds and encodes a candidate per PATH entry for every
        start (~0.1 ms of CPU per task). Not found: the bare name, which fails as before."""
        path = env.get("PATH")
        if path is None:  # where Popen would look
            path = os.defpath
        found = self._wrapper_shell.get(path)
        if found is None:
            found = shutil.which("bash", path=path) or "bash"
            if found != "bash":
                self._wrapper_shell[path] = found
        return found

    def _place_resources(self, spec: AttemptSpec, work: str, owner: int | None) -> None:
        """Copy the files the task lists, in the versions its run pinned, into its work dir
        (the server reads the home; the task never does)."""
        paths = task_resources(spec.task.fields)
        if not paths:
            return
        for path in paths:
            if reserved_name(path, spec.task_id, spec.attempt):
                raise ResourceUnavailable(
                    f"resource {path!r} would overwrite the task's own file of that name in its "
                    "working directory: put it in a directory, or rename it"
                )
        store = self._resources
        if store is None:
            raise ResourceUnavailable("resources: this executor has no resource store")
        pins = store.pins(spec.run_id) or {}
        materialize(
            Path(work), pins, paths, lambda p, v: store.fetch(spec.project, p, v), owner=owner
        )

    def _resolved(self, spec: AttemptSpec) -> tuple[RenderedTask, frozenset[str]]:
        """The task with its secret references replaced by their values (here, in the
        process that starts it, and nowhere before), and the values it is given."""
        task = spec.task
        value = {"fields": task.fields, "params": task.params, "env": task.env}
        source = _NoSecrets() if self._secrets is None else self._secrets
        resolved, used = resolve(value, spec.project, source)
        given = frozenset(used.values())
        if task.task_type == "sql":  # the named connection, its credentials resolved here
            name = str(task.fields.get("connection") or "")
            if self._connections is None:
                raise MissingConnection(spec.project, name)
            connection = self._connections(spec.project, name)
            named = references(dict(connection.settings))
            if named:  # its credentials are values this attempt is given too
                given |= frozenset(lookup(source, spec.project, named).values())
            fields = {
                **resolved["fields"],
                "__connection": {"type": connection.type,
                                 "settings": connection.resolved(source)},
            }  # fmt: skip
            resolved = {**resolved, "fields": fields}
        if resolved is value:
            return task, given
        rendered = RenderedTask(
            task.task_type, resolved["fields"], resolved["params"], resolved["env"]
        )
        return rendered, given

    def _follow(self, live: _Live) -> None:
        """Another start holds the claim (a dispatch repeated across a restart): watch its
        wrapper if it still runs, else take what it recorded. Its log is masked at its end
        with the values its start recorded, if it was given any."""
        key = (live.run_id, live.task_id, live.attempt)
        given = self._pending.get(key)
        if given:
            live.given = given
            hold_values(live.run_id.partition(".")[0], key, given)
        at = (_run_dir_name(live.run_id), f"{live.task_id}.{live.attempt}")
        pid = self._attempts_wrapper(key, live_wrappers(self.root, [at], self._tokens, only=True))
        if pid is None:
            pid = self._replaced(live.run_id, live.task_id, live.attempt)
        if pid is not None:
            live.pid = pid
            self._watch_pid(live)
            return
        self._forget(live)
        self._exited(live)

    def _not_started(self, live: _Live, error: str, *, retryable: bool = True) -> None:
        """An attempt that never started ends failed, saying why: nothing else would report it."""
        self._forget(live)
        self._deliver(live, AttemptResult(AttemptStatus.FAILED, error=error, retryable=retryable))

    def _forget(self, live: _Live) -> None:
        with self._lock:
            self._forget_locked(live)

    def _forget_locked(self, live: _Live) -> None:
        """``_forget``, the lock held by the caller."""
        key = (live.run_id, live.task_id, live.attempt)
        if self._by_key.get(key) is live:
            del self._by_key[key]

    def _watch_pid(self, live: _Live) -> None:
        try:
            fd = os.pidfd_open(live.pid)
        except ProcessLookupError:  # already gone: read what it left
            self._forget(live)
            self._exited(live)
            return
        with self._lock:
            if self._fds_closed:  # closed meanwhile (a kill during shutdown): not watched
                os.close(fd)
                return
            self._live[fd] = live
            live.pidfd = fd
            if live.report:  # an attempt this executor runs, not one kill() merely found
                self._by_key[(live.run_id, live.task_id, live.attempt)] = live
            # one shot: the watcher closes the pidfd without unregistering it (the close
            # does, once no start's child holds a copy of it; disarmed, it reports no more)
            self._epoll.register(fd, select.EPOLLIN | select.EPOLLONESHOT)

    # ------------------------------------------------------------ watching
    def _watch(self) -> None:
        while not self._closed:
            for fd, _ in self._epoll.poll(1.0):
                if fd == self._wake_r:
                    continue
                with self._lock:
                    live = self._live.pop(fd, None)
                    if live is not None:
                        live.pidfd = -1  # closed below: no kill copies it any more
                        self._forget_locked(live)
                os.close(fd)
                if live is not None:
                    self._exited(live)

    def _exited(self, live: _Live) -> None:
        if not live.report:  # a wrapper kill() found: its group's timer is all there is
            self._disarm_when_gone((live.run_id, live.task_id), live.pid)
            return
        if not live.killed and live.pid:
            # it ended on its own: what it left running in its group ends with it (a stopped
            # one's group gets its grace period, then the kill timer's SIGKILL); nothing of
            # the group runs on, so its work dir may serve a later attempt of the run
            _kill_group(live.pid, signal.SIGKILL)
            if self._reuse:
                with self._lock:
                    self._recyclable[_work_name(live.run_id, live.task_id, live.attempt)] = (
                        live.run_id
                    )
        if live.proc is None:  # re-attached after a restart: only the trap's record exists
            status = self._exit_status(live.run_id, live.task_id, live.attempt)
        else:
            status = live.proc.wait()
        if live.killed and live.pid:  # the wrapper reaped: is anything left of its group?
            if self._group_left((live.run_id, live.task_id), live.pid):  # outlives it: watched
                self._disarm_when_gone((live.run_id, live.task_id), live.pid)
            else:
                self._group_gone((live.run_id, live.task_id), live.pid)
        self._deliver(
            live, self.result(live.run_id, live.task_id, live.attempt, status, live.killed)
        )

    def result(
        self, run_id: str, task_id: str, attempt: int, status: int | None, killed: bool = False
    ) -> AttemptResult:
        """How an attempt ended, from its exit status (None: unknown) and its files."""
        if killed:
            return AttemptResult(AttemptStatus.STOPPED, error="stopped")
        if status is None:
            return AttemptResult(
                AttemptStatus.LOST, error="the task process ended without reporting a result"
            )
        run_dir = self._run_text(run_id)
        # one statvfs when the log and the work dir are on the same file system
        full = disk_full(
            [run_dir] if self._one_fs else [run_dir, self._work_text(run_id, task_id, attempt)]
        )
        if full is not None:
            return AttemptResult(
                AttemptStatus.FAILED,
                error=f"no space left on device: the file system of {full} is full, so the "
                f"task's log or outputs may be incomplete (exit code {status})",
                exit_code=status if status else None,
            )
        if status < 0:
            return AttemptResult(
                AttemptStatus.FAILED, error=f"killed by signal {-status}", exit_code=status
            )
        return result_from_files(
            status,
            outputs=self._file_text(run_id, task_id, attempt, ".out"),
            structured=self._file_text(run_id, task_id, attempt, ".result"),
            error=self._file_text(run_id, task_id, attempt, ".error"),
            log=self._file_text(run_id, task_id, attempt, ".log"),
        )

    def release(self, run_id: str, task_id: str, attempt: int) -> None:
        """The scheduler has recorded how this attempt ended: its work dir goes (the log
        stays in the home), unless work dirs are kept for inspection. The removal is handed
        to the reaper thread: unlinking on the loop thread held up its next turn (the file
        system serialises it with the starts' creations). A crash before the reaper got to
        it leaves the dir to :meth:`sweep` at the next start."""
        if self._keep:
            return
        with self._lock:
            self._doomed.append(_work_name(run_id, task_id, attempt))
        # set already: the reaper's coming round takes this one too (it clears the event
        # before it takes the list), so the Event's lock and notify are spared
        if not self._reap_wake.is_set():
            self._reap_wake.set()

    def sweep(self, running: Iterable[TaskInstance]) -> None:
        """At start, once recovery has recorded what ended while the scheduler was down:
        every work dir that is not a running attempt's is left from an earlier life (its
        removal was pending when the scheduler stopped) and goes to the reaper."""
        if self._keep:
            return
        keep = {_work_name(ti.run_id, ti.task_id, ti.attempt) for ti in running}
        try:
            names = [n for n in os.listdir(self.work_root) if n not in keep]
        except FileNotFoundError:
            return
        if names:
            with self._lock:
                self._doomed.extend(names)
            self._reap_wake.set()

    def _reap(self) -> None:
        while True:
            # with spares pooled, wake up to remove those of runs that stopped using them
            self._reap_wake.wait(SPARE_SECONDS if self._spare_used else None)
            if not self._closed:
                # the releases of the next moments join this round: a round per release
                # (a wake-up, the Event's and the lock's work) cost more than the rmdir
                self._reap_now.wait(REAP_GATHER_SECONDS)
            self._reap_wake.clear()
            try:
                self.reap()
            except Exception:  # the thread must live on: every later removal depends on it
                log.exception("removing released work dirs failed")
            if self._closed:
                return

    def reap(self) -> None:
        """Remove the released work dirs now (the reaper thread's work; :meth:`close`
        calls it last)."""
        self._mask_logs()
        with self._lock:
            names, self._doomed = self._doomed, []
            # a repeated start of the same attempt is running there: its own end releases it
            live = {_work_name(r, t, a) for r, t, a in self._by_key}
            recyclable = [self._recyclable.pop(name, None) for name in names]
        root = self._work_root_text
        for name, run_id in zip(names, recyclable, strict=True):
            if name in live:
                continue
            path = f"{root}/{name}"
            if run_id is None or self._closed or not self._recycle(run_id, path):
                _remove_dir(path)
        ttl = 0.0 if self._closed else SPARE_SECONDS
        for spare in self._expired_spares(time.monotonic(), ttl):
            _remove_dir(spare)

    def _deliver(self, live: _Live, result: AttemptResult) -> None:
        try:
            log_file = self._file_text(live.run_id, live.task_id, live.attempt, ".log")
            result = self._masked(live.run_id, result, log_file)
            if live.given:  # its log is masked by the reaper (a large log takes a while)
                job = (live.run_id, live.task_id, live.attempt, log_file, live.given)
                with self._lock:
                    # a killed attempt whose group lives on in its grace: once it is gone
                    ending = self._ending.get((live.run_id, live.task_id))
                    if live.killed and ending is not None and ending.groups:
                        ending.to_mask.append(job)
                    else:
                        self._to_mask.append(job)
                self._reap_wake.set()
            self._report(live.run_id, live.task_id, live.attempt, result, log_file)
        except Exception:
            log.exception("reporting %s/%s/%s failed", live.run_id, live.task_id, live.attempt)

    def _mask_logs(self) -> None:
        """Mask, in place, the logs of the attempts that ended having been given secrets:
        each value they were given written ``*`` over. The log view masks with the values the
        project's secrets have when it is read; a secret rotated or deleted since would show
        its old value in every earlier log. Masking at the end with the values the attempt
        was given keeps them masked for as long as the log exists, without keeping old values
        anywhere but the attempt's record in the home until then (:mod:`.masks`): one read
        of the log's data, a write only over a value, for the attempts given a secret only
        (nothing for the others). On the reaper's thread, not the watcher's: a large log
        would hold up every other end's report. Until it is done, the log view masks those
        values too (``hold_values``), even when rotated meanwhile. Once it is, the record
        goes; a mask that fails keeps it (and the values held), for the next start."""
        with self._lock:
            jobs, self._to_mask = self._to_mask, []
        for run_id, task_id, attempt, log_file, given in jobs:
            key = (run_id, task_id, attempt)
            try:
                mask_log_file(log_file, Masker(given))
            except FileNotFoundError:  # no log (its run was deleted): nothing holds them
                pass
            except Exception:  # the other jobs are still masked (and released)
                log.exception("masking the log of %s/%s/%s failed; the next start masks it", *key)
                continue
            try:
                self._pending.remove(key)
            except OSError:  # masked again at the next start: no harm
                log.exception("removing the mask record of %s/%s/%s failed", *key)
            release(run_id.partition(".")[0], key)

    def _masked(self, run_id: str, result: AttemptResult, log_file: str | None) -> AttemptResult:
        """What the task reports, with its project's secret values written ``***`` (a run
        id starts with its project and a '.'); outputs that changed so are named in the
        attempt's log (``log_file``), since downstream tasks read them masked."""
        if self._secrets is None or not (result.outputs or result.error):
            return result
        masker = masker_for(self._secrets, run_id.partition(".")[0])
        if not masker:
            return result
        error = masker.text(result.error) if result.error else result.error
        try:
            outputs, note = mask_outputs(masker, result.outputs)
        except Exception as exc:  # what a task wrote must never keep its end from being told
            log.exception("masking the outputs of an attempt of run %s failed", run_id)
            return replace(
                result, status=AttemptStatus.FAILED, outputs={},
                error=f"outputs: they could not be read ({type(exc).__name__}); none are kept",
            )  # fmt: skip
        if note is not None and log_file is not None:
            with contextlib.suppress(OSError), open(log_file, "a", encoding="utf-8") as fh:
                fh.write(note)
        return replace(result, outputs=outputs, error=error)

    # ------------------------------------------------------------ kill
    def live_attempts(self) -> int:
        # every attempt handed over and not yet ended: starting, running, or held behind an
        # earlier attempt of its task that is still being killed (a process soon)
        with self._lock:
            return len(self._by_key)

    def kill_grace(self) -> timedelta:
        return timedelta(seconds=KILL_GRACE_SECONDS)

    def kill(self, run_id: str, task_id: str, attempt: int) -> None:
        """SIGTERM to the attempt's process group now, SIGKILL to it after the grace period,
        sent by the server whatever happened to the wrapper meanwhile (unless the group is
        found empty first, or its id is another group's by then). An attempt still waiting for
        an earlier one's group never starts: it ends stopped now."""
        key = (run_id, task_id, attempt)
        parked = False
        with self._lock:
            live = self._by_key.get(key)
            if live is not None:
                live.killed = True
                if not live.pid and (ending := self._ending.get((run_id, task_id))) is not None:
                    kept = [w for w in ending.waiting if w[1] is not live]
                    parked = len(kept) < len(ending.waiting)
                    ending.waiting = kept
                    if parked:
                        self._forget_locked(live)
        if parked and live is not None:
            self._deliver(live, self.result(run_id, task_id, attempt, None, killed=True))
            return
        if live is None:  # not ours (e.g. started before a restart): find it by its command line
            at = (_run_dir_name(run_id), f"{task_id}.{attempt}")
            pid = self._attempts_wrapper(
                key, live_wrappers(self.root, [at], self._tokens, only=True)
            )
            if pid is None:
                pid = self._replaced(*key)
            if pid is None:
                return
            # watched so that, once its group is gone, the kill timer is disarmed (``_exited``)
            # and its SIGKILL cannot reach a later group given the same id; watched first, so
            # that the kill has the watcher's pidfd to reach the group by
            untracked = _Live(*key, pid=pid, killed=True, report=False)
            self._watch_pid(untracked)
            self._terminate(untracked)
            return
        if not live.pid:
            return  # still starting: _spawn terminates it once it has a pid
        self._terminate(live)

    def _terminate(self, live: _Live) -> None:
        """SIGTERM to the group, and SIGKILL when its grace is over; until one of them
        leaves it empty, what is dispatched of its task waits (``dispatch_many``)."""
        pgid, task = live.pid, (live.run_id, live.task_id)
        grace = KILL_GRACE_SECONDS
        leader = _start_time(pgid)  # (a read of /proc: not under the lock every start takes)
        with self._lock:
            ending = self._ending.setdefault(task, _Ending())
            first = pgid not in ending.groups  # a repeated kill keeps the first one's timer
            if first:
                ending.groups[pgid] = _Killed(time.monotonic() + grace, leader)
            killed = ending.groups[pgid]
            # the watcher's pidfd, while it watches (the wrapper not reaped: its pid is still
            # its own): a copy of it to reach this very group later (also at a repeated kill:
            # the first may have come before the watcher had it, as the attempt started)
            if killed.pidfd is None and live.pidfd >= 0 and _pidfd_groups[0]:
                with contextlib.suppress(OSError):  # (out of descriptors: by id, as before)
                    killed.pidfd = os.dup(live.pidfd)
            watched = live.pidfd >= 0
            sent = None if killed.pidfd is None else _group_by_pidfd(killed.pidfd, signal.SIGTERM)
        if sent is None:
            _kill_group(pgid, signal.SIGTERM)
        if first and not self._deadlines.after(grace, self._grace_over, task, pgid):
            # a kill while the executor closes, after its due SIGKILLs were sent: its own
            timer = threading.Timer(grace, self._grace_over, (task, pgid))
            timer.daemon = True
            timer.start()
        if first and not watched:
            # no watcher will say when the wrapper ends (it ended as the kill came, or was
            # never watched): look at the group until it is gone instead
            self._deadlines.after(GONE_POLL_SECONDS, self._disarm_when_gone, task, pgid)

    def _grace_over(self, task: tuple[str, str], pgid: int) -> None:
        """The kill timer: SIGKILL to the group, unless it was found empty meanwhile or its
        id is another group's now (``_still_the_group``)."""
        with self._lock:
            killed = self._killed(task, pgid)
            if killed is None:
                return
            leader = killed.leader
            sent = None if killed.pidfd is None else _group_by_pidfd(killed.pidfd, signal.SIGKILL)
        if sent is None and _still_the_group(pgid, leader):
            _kill_group(pgid, signal.SIGKILL)
        self._group_gone(task, pgid)

    def _disarm_when_gone(self, task: tuple[str, str], pgid: int) -> None:
        """Once a killed group whose wrapper has exited is gone, disarm its kill timer: the
        group of a wrapper kill() found (its leader counts as a member until its parent,
        init after a restart, reaps it), or what a wrapper of ours left running in its group.
        Look again every ``GONE_POLL_SECONDS`` until then, or until the timer fired."""
        if self._closed:  # close() sends what is due (_finish_kills)
            return
        if not self._group_left(task, pgid):
            self._group_gone(task, pgid)
            return
        self._deadlines.after(GONE_POLL_SECONDS, self._disarm_when_gone, task, pgid)

    def _group_left(self, task: tuple[str, str], pgid: int) -> bool:
        """Whether anything of the task's killed group ``pgid`` is left (False also once it
        is no longer a killed group): through its leader's pidfd where the kernel can, else by
        its id while that is still the group's."""
        with self._lock:
            killed = self._killed(task, pgid)
            if killed is None:
                return False
            leader = killed.leader
            there = None if killed.pidfd is None else _group_by_pidfd(killed.pidfd, 0)
        if there is not None:
            return there
        return _group_alive(pgid) and _still_the_group(pgid, leader)

    def _killed(self, task: tuple[str, str], pgid: int) -> _Killed | None:
        """The task's killed group ``pgid``, while it is one (under the lock)."""
        ending = self._ending.get(task)
        return None if ending is None else ending.groups.get(pgid)

    def _group_gone(self, task: tuple[str, str], pgid: int) -> None:
        """Nothing of the group runs on (it is empty, or has been sent SIGKILL, after which
        none of it returns to user code): once none of the task's killed groups is left,
        start what waited for them."""
        with self._lock:
            ending = self._ending.get(task)
            killed = None if ending is None else ending.groups.pop(pgid, None)
            if ending is None or killed is None:
                return
            if killed.pidfd is not None:
                os.close(killed.pidfd)
            if ending.groups:
                return
            del self._ending[task]
            self._to_mask.extend(ending.to_mask)
        if ending.to_mask:
            self._reap_wake.set()
        if ending.waiting and not self._closed:
            log.info("%s/%s: its killed attempt is gone; starting the next", *task)
            # closing meanwhile: they stay claimed and unstarted, which the next start's
            # recovery dispatches again
            with contextlib.suppress(RuntimeError):
                self._spawner.submit(self._spawn_all, ending.waiting)

    def _finish_kills(self) -> None:
        """On close: the SIGKILLs still due, each once its grace is over, so that what was
        killed does not outlive the scheduler (``stratoflow run`` exits after its run); then
        the logs of those attempts go to be masked (close's last reap): nothing of their
        groups returns to user code after its SIGKILL."""
        with self._lock:
            due = sorted(
                ((k.due, pgid, k) for e in self._ending.values() for pgid, k in e.groups.items()),
                key=lambda d: d[:2],
            )
            to_mask = [job for e in self._ending.values() for job in e.to_mask]
            self._ending.clear()  # (their pidfds are this call's now)
        for at, pgid, killed in due:
            # a group that ends in its grace (at its SIGTERM, mostly) is not waited out: its
            # end is looked for every GONE_POLL_CLOSING seconds until the SIGKILL is due
            gone = False
            while not gone and (left := at - time.monotonic()) > 0:
                gone = not _killed_group_left(pgid, killed)
                if not gone:
                    time.sleep(min(left, GONE_POLL_CLOSING))
            pidfd = killed.pidfd
            if not gone:  # its grace is over: SIGKILL
                sent = None if pidfd is None else _group_by_pidfd(pidfd, signal.SIGKILL)
                if sent is None and _still_the_group(pgid, killed.leader):
                    _kill_group(pgid, signal.SIGKILL)
            if pidfd is not None:
                os.close(pidfd)
        if to_mask:
            with self._lock:
                self._to_mask.extend(to_mask)

    # ------------------------------------------------------------ recovery
    def recover(self, running: Sequence[TaskInstance]) -> Recovery:
        """At start: what became of the attempts the store says are running (ended while no
        scheduler ran: their results; still running: watched again; never started: to
        start afresh), and the logs an earlier process left to mask (:mod:`.masks`), each
        with the values its attempt was given: those of attempts that ended are masked now
        (on the reaper's thread), those still running at their end."""
        report = Recovery()
        # as live_wrappers and the like name them; their wrappers are found by their tokens
        wanted = {(_run_dir_name(ti.run_id), f"{ti.task_id}.{ti.attempt}") for ti in running}
        alive = live_wrappers(self.root, wanted, self._tokens)
        pending = self._pending.left()  # (one listdir when nothing was left)
        for ti in running:
            key = (ti.run_id, ti.task_id, ti.attempt)
            given = pending.pop(key, frozenset())
            if given:  # the log view (and its result's masking) masks them from now on
                hold_values(ti.run_id.partition(".")[0], key, given)
            record = self._record(*key)
            wrapper = self._attempts_wrapper(key, alive, record)
            # its body replaced the wrapper (exec), which still runs: the pid its log names
            replaced = (
                self._replaced(*key, record) if record.status is None and wrapper is None else None
            )
            if record.status is not None or (
                record.started and wrapper is None and replaced is None
            ):
                # its wrapper is gone (it ended, or died without its record): what it left
                # running in its group goes, as it does when the wrapper ends under a live
                # scheduler (``_exited``); left, it ran on beside the retry, or for good
                self._kill_leftovers(key, record)
            if record.status is not None:
                # it ended while we were down: when, its log says (the exit record was its
                # last write), not this restart
                result = self.result(*key, record.status)
                if record.written_at is not None:
                    ended = datetime.fromtimestamp(record.written_at, UTC)
                    result = replace(result, ended_at=ended)
                report.results[key] = self._masked(
                    ti.run_id, result, self.log_path(*key).as_posix()
                )
                self._mask_later(key, given)
            elif wrapper is not None:  # adopted: its log is masked when it ends
                self._watch_pid(_Live(*key, pid=wrapper, given=given))
            elif replaced is not None:
                # its body replaced the wrapper (exec): watched as it; no record, so it ends LOST
                self._watch_pid(_Live(*key, pid=replaced, given=given))
            elif record.started:  # started, then died without its trap
                report.results[key] = self._masked(ti.run_id, self.result(*key, None), None)
                self._mask_later(key, given)
            else:  # never started (perhaps claimed just before we died): start it afresh
                with contextlib.suppress(FileNotFoundError):
                    self.log_path(*key).unlink()
                if given:  # nothing of it ran; its new start records what it is given then
                    self._pending.remove(key)
                    release(ti.run_id.partition(".")[0], key)
                report.not_started.append(ti)
        # wrappers whose task was stopped while we were down
        # (keyed by the name of their run's directory, which stands for the run in every
        # path: :func:`_run_dir_name` maps it to itself, :func:`_work_name` as the run's id)
        for (run_dir, name), pid in alive.items():
            if (run_dir, name) not in wanted and _is_wrapper(
                pid, self._tokens, self.run_dir(run_dir), name
            ):
                _kill_group(pid, signal.SIGKILL)
        # and those whose body replaced them with `exec` (the pid their log names)
        for (run_dir, name), pids in _session_leaders_of_attempts(
            self._work_root_text, self._root_text
        ).items():
            if (run_dir, name) in wanted or (run_dir, name) in alive:
                continue
            task_id, _, number = name.rpartition(".")
            replaced = self._replaced(run_dir, task_id, int(number))
            if replaced in pids:
                _kill_group(replaced, signal.SIGKILL)
        # attempts whose end was recorded before their log was masked (a crash on the way; a
        # stopped one's group perhaps still in its grace, which its SIGKILL then missed: sent
        # now, so that nothing writes a value into the log after it is masked)
        for key, given in pending.items():
            hold_values(key[0].partition(".")[0], key, given)
            self._kill_leftovers(key, self._record(*key))
            self._mask_later(key, given)
        return report

    def stopped_while_down(self, attempts: Sequence[Key]) -> dict[Key, AttemptResult]:
        """Each attempt a stop or a mark killed before the last scheduler died, its end not
        recorded: stopped, as a live kill reports it, when its exit record says (else now,
        its wrapper killed by ``recover`` or gone without its trap). What its wrapper left
        in its group goes."""
        out: dict[Key, AttemptResult] = {}
        for key in attempts:
            record = self._record(*key)
            self._kill_leftovers(key, record)
            result = self.result(*key, None, killed=True)
            if record.status is not None and record.written_at is not None:
                ended = datetime.fromtimestamp(record.written_at, UTC)
                result = replace(result, ended_at=ended)
            out[key] = result
        return out

    def _mask_later(self, key: Key, given: frozenset[str]) -> None:
        """Have the reaper mask the log of ``key``'s ended attempt with the values it was
        given (none: nothing to do), then remove its record."""
        if not given:
            return
        with self._lock:
            self._to_mask.append((*key, self._file_text(*key, ".log"), given))
        self._reap_wake.set()

    def close(self) -> None:
        self._closed = True
        self._spawner.shutdown()
        # first: the kills' due calls are _finish_kills' now, and a kill from here on keeps a
        # Timer of its own (_terminate), its pidfd copy closed by its _grace_over
        self._deadlines.close()
        self._finish_kills()
        with self._lock:  # not once a close() closed them (the number may be reused)
            if not self._fds_closed:
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        if not self._thread.is_alive():  # the watcher is done with them: none left open
            with self._lock:
                closing, self._fds_closed = not self._fds_closed, True
                lives, self._live = self._live, {}
                watched = list(lives)
                for live in lives.values():
                    live.pidfd = -1  # closed below: a kill from now on copies none of them
            if closing:  # once: a number closed twice may be another file's by then
                for fd in [*watched, self._wake_r, self._wake_w]:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._epoll.close()
        self._reap_now.set()
        self._reap_wake.set()
        self._reaper.join(timeout=30)
        self.reap()  # whatever was released after the reaper's last round
        if self._landlock is not None:
            self._landlock.close()


class _NoSecrets(SecretSource):
    """An executor given no source: every reference is a missing secret."""

    def get(self, project: str, name: str) -> str | None:
        return None


MASK_BLOCK = 1024 * 1024  # bytes of a log masked at a time (mask_log_file)
# the longest stretch of overlapping values mask_log_file reads at once (a value that repeats
# overlapping itself for longer is masked in pieces of this size)
MASK_RUN_MAX = 64 * 1024 * 1024


def mask_log_file(path: str, masker: Masker, block: int = MASK_BLOCK) -> bool:
    """Write ``*`` over each of ``masker``'s values in the file at ``path``, in place and of
    the same length: True when it held one; False, and nothing written, when it held none.
    Nothing else of the file changes: its offsets (a reader paging through it), its holes (a
    task may ``ftruncate`` its log to a huge sparse size, which a copy would have filled),
    its inode and mode, and what a process the attempt left behind writes to it after (a
    copy put in its place by a rename lost that). Reads ``block`` bytes at a time, overlapping
    by the longest value so none is split, and only where the file has data (``SEEK_DATA``).
    Values that overlap one another are masked together: a stretch of them that runs past a
    block is left to the next, which starts where it starts (its first bytes not yet
    written over, or the next block would not find the value that begins there)."""
    overlap = max(masker.longest - 1, 0)
    found = False
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                pos = os.lseek(fd, pos, os.SEEK_DATA)
                end = min(os.lseek(fd, pos, os.SEEK_HOLE), size)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos
                    break
                end = size  # a file system that cannot say where its holes are
            while pos < end:
                step = min(block, end - pos)
                need = step + overlap
                while True:
                    data = os.pread(fd, need, pos)
                    if not data:  # shorter than it was (truncated meanwhile): done
                        return found
                    # the block's stretches; one is whole once what follows it is read as
                    # far as a value overlapping its end could reach (or the file ends)
                    spans = [span for span in masker.spans(data) if span[0] < step]
                    whole = len(data) < need or not spans or spans[-1][1] + overlap <= need
                    if whole or spans[-1][0] > 0 or need >= MASK_RUN_MAX:
                        break
                    need = min(spans[-1][1] + overlap, MASK_RUN_MAX)  # it starts here: read on
                advance = step
                for start, stop in spans:
                    if not whole and start > 0 and stop + overlap > need:
                        advance = start  # may run on: the next block starts there
                        break
                    if os.fstat(fd).st_size < pos + stop:  # truncated meanwhile
                        return found
                    os.pwrite(fd, b"*" * (stop - start), pos + start)
                    found = True
                pos += advance
    finally:
        os.close(fd)
    return found
