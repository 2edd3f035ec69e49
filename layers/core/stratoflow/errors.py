"""Domain errors. Adapters and handlers map these *types* to exit codes and HTTP statuses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class StratoflowError(Exception):
    """Base class of every error Stratoflow raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with user input: where (a dotted path, maybe a line) and why."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "workflow"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        return f"{where}: {self.message}"


LISTED_PROBLEMS = 100
"""A message (and an HTTP error reply) lists at most this many problems, then counts the rest:
a body of 300,000 unknown params was answered with each named, twice, in 51.7 MB."""


def more_problems(count: int) -> str:
    """The line that stands for the problems not listed, when there are ``count`` in all."""
    return f"and {count - LISTED_PROBLEMS:,} more"


class InvalidInput(StratoflowError):
    """Bad input. Changes nothing. CLI exit code 2, HTTP 400/422."""

    def __init__(self, problems: Sequence[Problem] | str, *, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        self.problems: list[Problem] = list(problems)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return prefix + str(self.problems[0])
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems[:LISTED_PROBLEMS])
        if count > LISTED_PROBLEMS:
            lines += f"\n  - {more_problems(count)}"
        return f"{prefix}{count:,} problems:\n{lines}"


class UnprocessableInput(InvalidInput):
    """A request that is well formed but whose value cannot be used: a trigger's logical date
    that is not a date, or that has not come. Changes nothing. CLI exit code 2, HTTP 422, as
    a request the schema refuses (the field, then the reason)."""


class NotFound(StratoflowError):
    """The named workflow, version, run or task does not exist (HTTP 404)."""


class Conflict(StratoflowError):
    """The operation does not apply to the current state (HTTP 409), e.g. resuming a finished run."""


class ScheduleSyncFailed(StratoflowError):
    """The workflow version is stored, but its schedule could not be written where schedules
    fire (EventBridge Scheduler refused or failed): the message says why and to apply again,
    which completes it. HTTP 502 (a service behind the API failed):
    the request was valid and its own part was done; not 503, which promises nothing changed."""


class Unavailable(StratoflowError):
    """The machine cannot do it now (disk full, I/O error, throttled); nothing was changed and
    the same request may succeed later (HTTP 503 with Retry-After, CLI exit 1).
    ``stratoflow.faults.machine_fault`` turns provider and OS errors into this."""

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after
