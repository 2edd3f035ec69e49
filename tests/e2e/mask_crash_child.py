"""A local runtime (the server's scheduler and executor, in a process of its own) that runs
one workflow given secrets and dies, or waits to be killed, at a chosen point between its
task's end and the masking of that task's log (tests/e2e/test_mask_recovery.py).

    python -m tests.e2e.mask_crash_child HOME WORKFLOW POINT SAID

Each event is a file in ``SAID`` named after it, holding the run's id: ``running`` (the task
has printed the values it was given), ``reported`` (its end was handed to the scheduler),
``recorded`` (the scheduler recorded it). What holds at each ``POINT``:

- ``running``: nothing more; the test kills the process while the task runs;
- ``claimed``: the process kills itself after the attempt's claim, before its task starts;
- ``reported``: the end is handed to the scheduler, which never records it, and the reaper
  never masks; the test kills the process;
- ``recorded``: the end is recorded, the reaper never masks; the test kills the process;
- ``masking``: once the end is recorded the reaper masks the first value only (in sorted
  order), and the process kills itself;
- ``masked``: once the end is recorded the reaper masks the log, and the process kills
  itself right after.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from stratoflow.adapters.local import executor as executor_module
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.secrets import Masker


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(home: str, workflow: str, point: str, said: str) -> None:
    rt = LocalRuntime(Path(home))
    version, _ = rt.scheduler.apply(Path(workflow).read_text(encoding="utf-8"))
    run, _ = rt.scheduler.trigger(version.project, version.name)
    run_id = run.id
    never = threading.Event()

    def say(what: str) -> None:
        tmp = Path(said, f".{what}")
        tmp.write_text(run_id)
        tmp.rename(Path(said, what))

    def recorded() -> bool:
        return rt.store.get_run(run_id).state.terminal

    real_mask = executor_module.mask_log_file

    def mask(path: str, masker: Masker, *args: Any, **kwargs: Any) -> bool:
        while not recorded():  # the end is recorded first
            time.sleep(0.01)
        if point == "masking":
            real_mask(path, Masker(sorted(masker.values)[:1]), *args, **kwargs)
            _die()
        if point == "masked":
            real_mask(path, masker, *args, **kwargs)
            _die()
        never.wait()  # the reaper never gets to it
        return False

    executor_module.mask_log_file = mask  # type: ignore[assignment]
    if point == "claimed":
        # called once the attempt's log is claimed and its secrets resolved, before its start
        def environment_from(*args: Any, **kwargs: Any) -> dict[str, str]:
            _die()
            return {}

        executor_module.sandbox.environment_from = environment_from  # type: ignore[assignment]
    if point == "reported":
        executor = rt.executor

        def report(*args: Any) -> None:
            say("reported")
            never.wait()  # handed over, never recorded

        executor._report = report
    log = rt.executor.log_path(run_id, "t", 1)
    told: set[str] = set()
    while True:
        rt.run_once(0.05)
        if "running" not in told and log.exists() and "pw=" in log.read_text():
            told.add("running")
            say("running")
        if "recorded" not in told and recorded():
            told.add("recorded")
            say("recorded")


if __name__ == "__main__":
    main(*sys.argv[1:5])
