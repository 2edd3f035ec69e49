"""The real clock (the only place the local runtime reads the time)."""

from __future__ import annotations

from datetime import UTC, datetime

from stratoflow.ports import Clock


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)
