"""What a local attempt's log holds: the task's output inside the wrapper's frame."""

from __future__ import annotations

import re

from stratoflow.taskexec import EXITED_LINE, STARTED_LINE

_START_PID = re.compile(r"\A(\[stratoflow\] task \S+ attempt \d+ started, pid )(\d+)\n")


def framed(task: str, output: str, code: int = 0, attempt: int = 1, pid: int | str = "N") -> str:
    """The whole log of a local attempt that printed ``output`` and exited with ``code``; its
    start line names the wrapper's ``pid`` (compare a real log through :func:`unpid`)."""
    return (
        STARTED_LINE.format(task=task, attempt=attempt, pid=pid)
        + output
        + EXITED_LINE.format(task=task, attempt=attempt, code=code)
    )


def pid_of(log: str) -> int:
    """The wrapper's pid, as the log's start line names it."""
    found = _START_PID.match(log)
    assert found, f"no start line naming a pid: {log[:200]!r}"
    return int(found[2])


def unpid(log: str) -> str:
    """``log`` with its start line's pid as :func:`framed` writes it by default ("N")."""
    return _START_PID.sub(r"\1N\n", log, count=1)
