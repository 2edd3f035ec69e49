"""Test doubles shared by the service-level tests: a clock the test moves, and a dispatcher
that records what it was asked to start and fails the test on a second dispatch of a key."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from stratoflow.engine import TaskInstance
from stratoflow.ports import Attempt, AttemptSpec, Clock, Dispatcher, LogRange, Recovery

Key = tuple[str, str, int]


class FakeClock(Clock):
    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class RecordingDispatcher(Dispatcher):
    """Remembers every attempt it was asked to start and keeps it pending until the test
    delivers its result. A second dispatch of one key fails the test on the spot."""

    def __init__(self, on_dispatch: Callable[[AttemptSpec], None] = lambda _: None) -> None:
        self.on_dispatch = on_dispatch
        self.dispatched: dict[Key, AttemptSpec] = {}
        self.pending: dict[Key, AttemptSpec] = {}  # in dispatch order
        self.killed: list[Key] = []

    def dispatch(self, spec: AttemptSpec) -> str | None:
        key = (spec.run_id, spec.task_id, spec.attempt)
        assert key not in self.dispatched, f"attempt {spec.key} dispatched twice"
        self.dispatched[key] = spec
        self.pending[key] = spec
        self.on_dispatch(spec)
        return None

    def live_attempts(self) -> int:
        """What is pending (a killed attempt too, until its report: as a real executor)."""
        return len(self.pending)

    def kill(self, run_id: str, task_id: str, attempt: int) -> None:
        # A killed attempt may still report (a real executor races the kill): it stays
        # pending, and its report then arrives late.
        self.killed.append((run_id, task_id, attempt))

    def recover(self, running: Sequence[TaskInstance]) -> Recovery:
        return Recovery()


def text_logs(
    text_of: Callable[[Attempt], str | None],
) -> Callable[[Attempt, int, int], LogRange | None]:
    """A log reader (``create_app(read_log=...)``) over logs held as text in the test."""

    def read(attempt: Attempt, offset: int, length: int) -> LogRange | None:
        text = text_of(attempt)
        if text is None:
            return None
        data = text.encode("utf-8")
        start = min(offset, len(data))
        return LogRange(data[start : start + length], start, len(data))

    return read
