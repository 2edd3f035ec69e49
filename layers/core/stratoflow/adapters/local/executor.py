"""Runs attempts as local processes that outlive the scheduler.

Each attempt gets a directory ``<root>/<run>/<task>/<attempt>/``. A small bash wrapper, started
in its own session, claims the directory (``set -C``: an O_EXCL create, so a repeated dispatch
of the same attempt runs nothing), runs the task body in a subshell with output to ``log``,
and writes the exit code to ``rc``. Nothing flows through pipes to the scheduler, so a
scheduler killed with SIGKILL loses nothing: on restart it re-attaches to live wrappers
through pidfds and reads the ``rc`` of those that finished meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stratoflow.engine import AttemptResult, AttemptStatus, TaskInstance
from stratoflow.ports import AttemptSpec, Dispatcher, Recovery

log = logging.getLogger("stratoflow.executor")

# $1: attempt directory, $2: the task body (bash). The subshell gets its own options back.
WRAPPER = r"""set -C
{ echo $$ > "$1/claim"; } 2>/dev/null || exit 75
set +C
( eval "$2" ) > "$1/log" 2>&1 < /dev/null
echo $? > "$1/rc"
"""
CLAIM_LOST = 75
KILL_GRACE_SECONDS = 5.0
_PY_TYPES = {"python", "http", "lambda"}

Report = Callable[[str, str, int, AttemptResult, str], None]


@dataclass
class _Live:
    run_id: str
    task_id: str
    attempt: int
    directory: Path
    pid: int
    proc: subprocess.Popen[bytes] | None  # None when re-attached after a restart
    killed: str | None = None  # why we killed it, if we did


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _tail(path: Path, lines: int = 5, limit: int = 2000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - limit, 0))
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


def _alive(pid: int, directory: Path) -> bool:
    """Is ``pid`` still the wrapper of ``directory`` (and not a reused pid)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return str(directory).encode() in cmdline


def attempt_result(directory: Path, killed: str | None = None) -> AttemptResult:
    """Read how an attempt ended from its directory (after its wrapper has exited)."""
    rc_text = _read(directory / "rc")
    if rc_text is None or not rc_text.strip().isdigit():
        if killed == "timeout":
            return AttemptResult(AttemptStatus.TIMED_OUT, error="timed out")
        if killed:
            return AttemptResult(AttemptStatus.STOPPED, error="stopped")
        return AttemptResult(
            AttemptStatus.LOST, error="the task process ended without reporting a result"
        )
    rc = int(rc_text.strip())
    outputs: dict[str, object] = dict(parse_key_values(_read(directory / "outputs") or ""))
    structured = _read(directory / "outputs.json")
    if structured:
        with contextlib.suppress(ValueError):
            data = json.loads(structured)
            if isinstance(data, dict):
                outputs.update(data)
    if rc == 0:
        return AttemptResult(AttemptStatus.SUCCEEDED, outputs=outputs, exit_code=0)
    error = (_read(directory / "error") or "").strip()
    if not error:
        tail = _tail(directory / "log")
        error = f"exit code {rc}" + (f"; last output:\n{tail}" if tail else "")
    return AttemptResult(AttemptStatus.FAILED, outputs=outputs, error=error, exit_code=rc)


class LocalExecutor(Dispatcher):
    def __init__(self, root: Path, report: Report, *, python: str = sys.executable) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._report = report
        self._python = python
        self._live: dict[int, _Live] = {}  # pidfd -> attempt
        self._by_key: dict[tuple[str, str, int], _Live] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._watch, name="stratoflow-executor", daemon=True)
        self._thread.start()
        self._base_env = dict(os.environ)
        path = [os.getcwd(), self._base_env.get("PYTHONPATH", "")]
        self._base_env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)

    def directory(self, run_id: str, task_id: str, attempt: int) -> Path:
        return self.root / run_id / task_id / str(attempt)

    # ------------------------------------------------------------ dispatch
    def _body(self, spec: AttemptSpec, directory: Path) -> str:
        task = spec.task
        if task.task_type in _PY_TYPES:
            payload = {"type": task.task_type, "fields": task.fields, "params": task.params}
            (directory / "task.json").write_text(json.dumps(payload, default=str), encoding="utf-8")
            return f'exec {shlex.quote(self._python)} -m stratoflow.adapters.local._taskrunner "$1"'
        command = task.fields.get("command", "")
        if isinstance(command, list):  # batch / kubernetes: an argv, run without a container
            return "exec " + shlex.join(str(c) for c in command)
        return str(command)

    def dispatch(self, spec: AttemptSpec) -> str | None:
        directory = self.directory(spec.run_id, spec.task_id, spec.attempt)
        key = (spec.run_id, spec.task_id, spec.attempt)
        with self._lock:
            if key in self._by_key:
                return str(directory / "log")  # already running under our eyes
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / "claim").exists():
            self._attach_claimed(key, directory)  # started before (e.g. before a restart)
            return str(directory / "log")
        env = {
            **self._base_env,
            **spec.task.env,
            "STRATOFLOW_OUTPUT": str(directory / "outputs"),
            "STRATOFLOW_RUN_ID": spec.run_id,
            "STRATOFLOW_TASK_ID": spec.task_id,
            "STRATOFLOW_ATTEMPT": str(spec.attempt),
            "STRATOFLOW_WORKFLOW": spec.workflow,
            "STRATOFLOW_LOGICAL_DATE": spec.logical_date.isoformat(),
        }
        proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-c", WRAPPER, "stratoflow-task", str(directory), self._body(spec, directory)],
            cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self._watch_pid(_Live(spec.run_id, spec.task_id, spec.attempt, directory, proc.pid, proc))
        return str(directory / "log")

    def _watch_pid(self, live: _Live) -> bool:
        try:
            fd = os.pidfd_open(live.pid)
        except ProcessLookupError:
            fd = None
        with self._lock:
            if fd is None:
                pass
            else:
                self._live[fd] = live
                self._by_key[(live.run_id, live.task_id, live.attempt)] = live
                self._selector.register(fd, selectors.EVENT_READ)
        if fd is None:
            self._finish(live)
            return False
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")
        return True

    def _attach_claimed(self, key: tuple[str, str, int], directory: Path) -> None:
        claim = (_read(directory / "claim") or "").strip()
        pid = int(claim) if claim.isdigit() else 0
        live = _Live(*key, directory=directory, pid=pid, proc=None)
        if pid and _alive(pid, directory):
            self._watch_pid(live)
        else:
            self._finish(live)

    # ------------------------------------------------------------ watching
    def _watch(self) -> None:
        while not self._closed:
            for key, _ in self._selector.select(timeout=1.0):
                if key.fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    live = self._live.pop(key.fd, None)
                    self._selector.unregister(key.fd)
                    if live is not None:
                        self._by_key.pop((live.run_id, live.task_id, live.attempt), None)
                os.close(key.fd)
                if live is not None:
                    self._exited(live)

    def _exited(self, live: _Live) -> None:
        if live.proc is not None:
            live.proc.wait()
            if live.proc.returncode == CLAIM_LOST and not (live.directory / "rc").exists():
                # another wrapper holds the claim (a dispatch repeated across a restart)
                self._attach_claimed((live.run_id, live.task_id, live.attempt), live.directory)
                return
        self._finish(live)

    def _finish(self, live: _Live) -> None:
        result = attempt_result(live.directory, live.killed)
        try:
            self._report(
                live.run_id, live.task_id, live.attempt, result, str(live.directory / "log")
            )
        except Exception:
            log.exception("reporting %s/%s/%s failed", live.run_id, live.task_id, live.attempt)

    # ------------------------------------------------------------ kill
    def kill(self, run_id: str, task_id: str, attempt: int, *, reason: str = "stop") -> None:
        directory = self.directory(run_id, task_id, attempt)
        with self._lock:
            live = self._by_key.get((run_id, task_id, attempt))
            if live is not None:
                live.killed = reason
        pid = live.pid if live is not None else 0
        if not pid:
            claim = (_read(directory / "claim") or "").strip()
            pid = int(claim) if claim.isdigit() and _alive(int(claim), directory) else 0
        if not pid:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        timer = threading.Timer(KILL_GRACE_SECONDS, self._force_kill, (pid, directory))
        timer.daemon = True
        timer.start()

    @staticmethod
    def _force_kill(pid: int, directory: Path) -> None:
        if _alive(pid, directory) or not (directory / "rc").exists():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    # ------------------------------------------------------------ recovery
    def recover(self, running: Sequence[TaskInstance]) -> Recovery:
        report = Recovery()
        wanted = {(t.run_id, t.task_id, t.attempt) for t in running}
        for ti in running:
            key = (ti.run_id, ti.task_id, ti.attempt)
            directory = self.directory(*key)
            claim = (_read(directory / "claim") or "").strip()
            if (directory / "rc").exists():
                report.results[key] = attempt_result(directory)
            elif claim.isdigit() and _alive(int(claim), directory):
                self._watch_pid(_Live(*key, directory=directory, pid=int(claim), proc=None))
            elif claim:
                report.results[key] = attempt_result(directory)  # LOST
            else:
                report.not_started.append(ti)
        # wrappers whose task was stopped while we were down
        for claim_file in self.root.glob("*/*/*/claim"):
            directory = claim_file.parent
            key = (directory.parent.parent.name, directory.parent.name, int(directory.name))
            if key not in wanted and not (directory / "rc").exists():
                pid_text = (_read(claim_file) or "").strip()
                if pid_text.isdigit() and _alive(int(pid_text), directory):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(int(pid_text), signal.SIGKILL)
        return report

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
