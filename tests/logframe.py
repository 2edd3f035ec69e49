"""What a local attempt's log holds: the task's output inside the wrapper's frame."""

from __future__ import annotations

from stratoflow.taskexec import EXITED_LINE, STARTED_LINE


def framed(task: str, output: str, code: int = 0, attempt: int = 1) -> str:
    """The whole log of a local attempt that printed ``output`` and exited with ``code``."""
    return (
        STARTED_LINE.format(task=task, attempt=attempt)
        + output
        + EXITED_LINE.format(task=task, attempt=attempt, code=code)
    )
