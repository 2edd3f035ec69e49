"""Runs attempts as local processes that outlive the scheduler.

Each run has a directory ``<root>/<run>/``; an attempt is named ``<task>.<attempt>`` in it.
A small bash wrapper, started in its own session, claims the attempt by creating its log
exclusively (``set -C`` makes that an O_EXCL create, so a repeated dispatch of the same
attempt runs nothing), runs the task body with its output in the log, and its EXIT trap
appends ``<name> <status>`` to the run's ``exits`` file (one short O_APPEND write: atomic).

Nothing flows through pipes to the scheduler, so a scheduler killed with SIGKILL loses
nothing: on restart it finds the wrappers still running by their command line, watches them
through pidfds, and reads the exit status of those that ended meanwhile from ``exits``.

One file is created per attempt (its log; its outputs only if the task writes some): on the
disks this runs on, every extra create or directory costs as much as the scheduling itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from stratoflow.engine import AttemptResult, AttemptStatus, TaskInstance
from stratoflow.ports import AttemptSpec, Dispatcher, Recovery

log = logging.getLogger("stratoflow.executor")

# $1: run directory, $2: attempt name (<task>.<attempt>), $3: the task body (bash), which runs
# in this shell: a subshell per task would cost more than the scheduler's own work. A scheduler
# that is alive takes the exit status from waitpid (which also covers a body that replaces the
# shell with `exec cmd`); the trap's record is for one that was not alive to wait.
WRAPPER = r"""set -C
if ! { : > "$1/$2.log"; } 2>/dev/null; then exit 75; fi
set +C
readonly STRATOFLOW_RUN_DIR="$1" STRATOFLOW_ATTEMPT_NAME="$2"
trap '__stratoflow_rc=$?; echo "$STRATOFLOW_ATTEMPT_NAME $__stratoflow_rc" >> "$STRATOFLOW_RUN_DIR/exits"' EXIT
exec >> "$1/$2.log" 2>&1 < /dev/null
__stratoflow_body=$3
set --
eval "$__stratoflow_body"
"""
WRAPPER_NAME = "stratoflow-task"  # $0 of every wrapper: how recovery recognises them
CLAIM_LOST = 75
KILL_GRACE_SECONDS = 5.0
SPAWN_THREADS = 4  # starting a process waits on exec; threads let starts overlap (no GIL held)
_PY_TYPES = {"python", "http", "lambda"}

Report = Callable[[str, str, int, AttemptResult, str], None]
Key = tuple[str, str, int]


@dataclass
class _Live:
    run_id: str
    task_id: str
    attempt: int
    pid: int = 0  # 0 while it is being started
    proc: subprocess.Popen[bytes] | None = None  # None when re-attached after a restart
    killed: bool = False  # we stopped it


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _tail(path: Path, lines: int = 5, limit: int = 2000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - limit, 0))
            data = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.strip().splitlines()[-lines:])


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


def result_from_files(
    status: int, *, outputs: Path, structured: Path, error: Path, log: Path
) -> AttemptResult:
    """How a task that exited with ``status`` ended, from the files it left: ``key=value``
    outputs, then the structured outputs of python and http tasks, then the error (the task's
    own words, or the log's last lines). The AWS runner reads its attempts the same way."""
    found: dict[str, object] = dict(parse_key_values(_read(outputs) or ""))
    data = _read(structured)
    if data:
        with contextlib.suppress(ValueError):
            parsed = json.loads(data)
            if isinstance(parsed, dict):
                found.update(parsed)
    if status == 0:
        return AttemptResult(AttemptStatus.SUCCEEDED, outputs=found, exit_code=0)
    if status < 0:
        why = f"killed by signal {-status}"
        return AttemptResult(AttemptStatus.FAILED, outputs=found, error=why, exit_code=status)
    message = (_read(error) or "").strip()
    if not message:
        tail = _tail(log)
        message = f"exit code {status}" + (f"; last output:\n{tail}" if tail else "")
    return AttemptResult(AttemptStatus.FAILED, outputs=found, error=message, exit_code=status)


def read_exits(run_dir: Path) -> dict[str, int]:
    """Exit statuses the wrappers of a run recorded: attempt name -> status."""
    exits: dict[str, int] = {}
    for line in (_read(run_dir / "exits") or "").splitlines():
        name, _, status = line.partition(" ")
        if status.strip().lstrip("-").isdigit():
            exits[name] = int(status)
    return exits


def _wrapper_argv(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")


def _is_wrapper(pid: int, run_dir: Path, name: str) -> bool:
    """Is ``pid`` (still) the wrapper of this attempt, and not a reused pid?"""
    argv = _wrapper_argv(pid)
    return argv is not None and WRAPPER_NAME in argv and str(run_dir) in argv and name in argv


def live_wrappers(root: Path) -> dict[tuple[str, str], int]:
    """(run id, attempt name) -> pid of every wrapper under ``root`` still running."""
    found: dict[tuple[str, str], int] = {}
    prefix = str(root) + os.sep
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        argv = _wrapper_argv(int(entry.name))
        if not argv or WRAPPER_NAME not in argv:
            continue
        i = argv.index(WRAPPER_NAME)
        if len(argv) > i + 2 and argv[i + 1].startswith(prefix):
            found[(Path(argv[i + 1]).name, argv[i + 2])] = int(entry.name)
    return found


class LocalExecutor(Dispatcher):
    def __init__(self, root: Path, report: Report, *, python: str = sys.executable) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._report = report
        self._python = python
        self._live: dict[int, _Live] = {}  # pidfd -> attempt
        self._by_key: dict[Key, _Live] = {}
        self._run_dirs: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        # epoll_ctl is safe while another thread waits in epoll_wait, so spawner threads
        # register pidfds directly; the pipe only wakes the watcher to close.
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._spawner = ThreadPoolExecutor(SPAWN_THREADS, thread_name_prefix="stratoflow-spawn")
        self._thread = threading.Thread(target=self._watch, name="stratoflow-executor", daemon=True)
        self._thread.start()
        self._base_env = dict(os.environ)
        path = [os.getcwd(), self._base_env.get("PYTHONPATH", "")]
        self._base_env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)

    # ------------------------------------------------------------ layout
    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def path(self, run_id: str, task_id: str, attempt: int, suffix: str) -> Path:
        """``<root>/<run>/<task>.<attempt><suffix>``: .log, .out, .json, .result, .error"""
        return self.root / run_id / f"{task_id}.{attempt}{suffix}"

    def log_path(self, run_id: str, task_id: str, attempt: int) -> Path:
        return self.path(run_id, task_id, attempt, ".log")

    # ------------------------------------------------------------ dispatch
    def _body(self, spec: AttemptSpec) -> str:
        task = spec.task
        if task.task_type in _PY_TYPES:
            payload = {"type": task.task_type, "fields": task.fields, "params": task.params}
            spec_file = self.path(spec.run_id, spec.task_id, spec.attempt, ".json")
            spec_file.write_text(json.dumps(payload, default=str), encoding="utf-8")
            runner = "stratoflow.adapters.local._taskrunner"
            return f"{shlex.quote(self._python)} -m {runner} {shlex.quote(str(spec_file))}"
        command = task.fields.get("command", "")
        if isinstance(command, list):  # batch / kubernetes: an argv, run without a container
            return shlex.join(str(c) for c in command)
        return str(command)

    def dispatch(self, spec: AttemptSpec) -> str | None:
        return self.dispatch_many([spec])[0]

    def log_location(self, spec: AttemptSpec) -> str:
        return str(self.log_path(spec.run_id, spec.task_id, spec.attempt))

    def dispatch_many(self, specs: Sequence[AttemptSpec]) -> list[str | None]:
        """Start attempts; returns where each log will be. A lone attempt (a step of a chain)
        starts right here, with no hand-off latency; a batch starts on the spawn threads, so
        the exec waits overlap (they do not hold the GIL) and the loop goes on meanwhile."""
        fresh: list[tuple[AttemptSpec, _Live]] = []
        with self._lock:
            for spec in specs:
                key = (spec.run_id, spec.task_id, spec.attempt)
                if key not in self._by_key:  # else: already starting or running under our eyes
                    fresh.append((spec, self._by_key.setdefault(key, _Live(*key))))
        if len(fresh) == 1:
            self._spawn(*fresh[0])
        else:
            for spec, live in fresh:
                self._spawner.submit(self._spawn, spec, live)
        return [self.log_location(spec) for spec in specs]

    def _spawn(self, spec: AttemptSpec, live: _Live) -> None:
        run_dir = self.run_dir(spec.run_id)
        name = f"{spec.task_id}.{spec.attempt}"
        try:
            if spec.run_id not in self._run_dirs:
                run_dir.mkdir(parents=True, exist_ok=True)
                self._run_dirs.add(spec.run_id)
            env = {
                **self._base_env,
                **spec.task.env,
                "STRATOFLOW_OUTPUT": str(
                    self.path(spec.run_id, spec.task_id, spec.attempt, ".out")
                ),
                "STRATOFLOW_RUN_ID": spec.run_id,
                "STRATOFLOW_TASK_ID": spec.task_id,
                "STRATOFLOW_ATTEMPT": str(spec.attempt),
                "STRATOFLOW_WORKFLOW": spec.workflow,
                "STRATOFLOW_LOGICAL_DATE": spec.logical_date.isoformat(),
            }
            live.proc = subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-c", WRAPPER, WRAPPER_NAME, str(run_dir), name, self._body(spec)],
                cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            self._forget(live)
            self._deliver(
                live, AttemptResult(AttemptStatus.FAILED, error=f"could not start the task: {exc}")
            )
            return
        live.pid = live.proc.pid
        self._watch_pid(live)
        if live.killed:  # a stop arrived while it was starting
            self._signal(live, signal.SIGTERM)

    def _forget(self, live: _Live) -> None:
        key = (live.run_id, live.task_id, live.attempt)
        with self._lock:
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
            self._live[fd] = live
            self._by_key[(live.run_id, live.task_id, live.attempt)] = live
            self._epoll.register(fd, select.EPOLLIN)

    # ------------------------------------------------------------ watching
    def _watch(self) -> None:
        while not self._closed:
            for fd, _ in self._epoll.poll(1.0):
                if fd == self._wake_r:
                    continue
                with self._lock:
                    live = self._live.pop(fd, None)
                    self._epoll.unregister(fd)
                os.close(fd)
                if live is not None:
                    self._forget(live)
                    self._exited(live)

    def _exited(self, live: _Live) -> None:
        if live.proc is None:  # re-attached after a restart: only the trap's record exists
            status = read_exits(self.run_dir(live.run_id)).get(f"{live.task_id}.{live.attempt}")
            self._deliver(
                live, self.result(live.run_id, live.task_id, live.attempt, status, live.killed)
            )
            return
        returncode = live.proc.wait()
        if returncode == CLAIM_LOST:
            # Another wrapper holds the claim (a dispatch repeated across a restart): follow it.
            pid = live_wrappers(self.root).get((live.run_id, f"{live.task_id}.{live.attempt}"))
            if pid is not None and pid != live.pid:
                self._watch_pid(
                    _Live(live.run_id, live.task_id, live.attempt, pid=pid, killed=live.killed)
                )
                return
            returncode = read_exits(self.run_dir(live.run_id)).get(
                f"{live.task_id}.{live.attempt}", returncode
            )
        self._deliver(
            live, self.result(live.run_id, live.task_id, live.attempt, returncode, live.killed)
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
        if status < 0:
            return AttemptResult(
                AttemptStatus.FAILED, error=f"killed by signal {-status}", exit_code=status
            )
        return result_from_files(
            status,
            outputs=self.path(run_id, task_id, attempt, ".out"),
            structured=self.path(run_id, task_id, attempt, ".result"),
            error=self.path(run_id, task_id, attempt, ".error"),
            log=self.log_path(run_id, task_id, attempt),
        )

    def _deliver(self, live: _Live, result: AttemptResult) -> None:
        try:
            log_file = str(self.log_path(live.run_id, live.task_id, live.attempt))
            self._report(live.run_id, live.task_id, live.attempt, result, log_file)
        except Exception:
            log.exception("reporting %s/%s/%s failed", live.run_id, live.task_id, live.attempt)

    # ------------------------------------------------------------ kill
    def _signal(self, live: _Live, signum: int) -> None:
        if live.pid and _is_wrapper(
            live.pid, self.run_dir(live.run_id), f"{live.task_id}.{live.attempt}"
        ):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(live.pid, signum)  # the wrapper leads its session: the whole group

    def kill(self, run_id: str, task_id: str, attempt: int) -> None:
        key = (run_id, task_id, attempt)
        with self._lock:
            live = self._by_key.get(key)
            if live is not None:
                live.killed = True
        if live is None:  # not ours (e.g. started before a restart): find it by its command line
            pid = live_wrappers(self.root).get((run_id, f"{task_id}.{attempt}"))
            if pid is None:
                return
            live = _Live(*key, pid=pid, killed=True)
        if not live.pid:
            return  # still starting: _spawn signals it once it has a pid
        self._signal(live, signal.SIGTERM)
        timer = threading.Timer(KILL_GRACE_SECONDS, self._signal, (live, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    # ------------------------------------------------------------ recovery
    def recover(self, running: Sequence[TaskInstance]) -> Recovery:
        report = Recovery()
        alive = live_wrappers(self.root)
        exits: dict[str, dict[str, int]] = {}
        wanted: set[tuple[str, str]] = set()
        for ti in running:
            name = f"{ti.task_id}.{ti.attempt}"
            wanted.add((ti.run_id, name))
            if ti.run_id not in exits:
                exits[ti.run_id] = read_exits(self.run_dir(ti.run_id))
            key = (ti.run_id, ti.task_id, ti.attempt)
            if name in exits[ti.run_id]:
                report.results[key] = self.result(*key, exits[ti.run_id][name])
            elif (ti.run_id, name) in alive:
                self._watch_pid(_Live(*key, pid=alive[(ti.run_id, name)]))
            elif self.log_path(*key).exists():  # claimed, then died without its trap
                report.results[key] = self.result(*key, None)
            else:
                report.not_started.append(ti)
        # wrappers whose task was stopped while we were down
        for (run_id, name), pid in alive.items():
            if (run_id, name) not in wanted:
                task_id, _, attempt = name.rpartition(".")
                self._signal(_Live(run_id, task_id, int(attempt or 0), pid=pid), signal.SIGKILL)
        return report

    def close(self) -> None:
        self._closed = True
        self._spawner.shutdown(wait=True)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
