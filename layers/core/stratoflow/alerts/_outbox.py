"""What the outboxes of both runtimes share: a delivery record of one alert to one channel, and
the retry policy. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stratoflow.alerts._channels import MAX_CHANNELS_PER_GROUP, NAME
from stratoflow.alerts._messages import AlertFacts
from stratoflow.errors import InvalidInput, Problem

MAX_CHANNELS = 200  # per project
MAX_GROUPS = 200  # per project


def check_group(project: str, name: str, channels: Sequence[str]) -> None:
    """A group's name and channel list, before any store looks at it (``InvalidInput``
    names each problem)."""
    problems: list[Problem] = []
    if not NAME.fullmatch(project):
        problems.append(Problem("project", "use a-z, 0-9, '_' and '-' (at most 128)"))
    if not NAME.fullmatch(name):
        problems.append(Problem("group", "use a-z, 0-9, '_' and '-' (at most 128)"))
    if not channels:
        problems.append(Problem("channels", "name at least one channel"))
    if len(channels) > MAX_CHANNELS_PER_GROUP:
        problems.append(
            Problem("channels", f"{len(channels)} channels; at most {MAX_CHANNELS_PER_GROUP}")
        )
    if len(set(channels)) != len(channels):
        problems.append(Problem("channels", "a channel is listed twice"))
    if problems:
        raise InvalidInput(problems)


@dataclass(frozen=True)
class Backoff:
    """Delay before the next try after ``attempts`` failed ones: ``first * 2^(attempts-1)``,
    at most ``cap``; after ``max_attempts`` the delivery is failed."""

    first: timedelta = timedelta(seconds=5)
    cap: timedelta = timedelta(minutes=10)
    max_attempts: int = 8

    def delay(self, attempts: int) -> timedelta:
        seconds = self.first.total_seconds() * 2 ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.cap.total_seconds()))


@dataclass(frozen=True)
class Delivery:
    key: str
    project: str
    channel: str
    group: str
    event: str
    workflow: str
    run_id: str | None
    facts: AlertFacts
    status: str
    attempts: int
    next_at: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    def view(self) -> dict[str, Any]:
        return {
            "key": self.key, "project": self.project, "channel": self.channel,
            "group": self.group, "event": self.event, "workflow": self.workflow,
            "run_id": self.run_id, "task_id": self.facts.task_id, "action": self.facts.action,
            "subject": self.facts.subject, "status": self.status, "attempts": self.attempts,
            "next_at": self.next_at.isoformat() if self.next_at else None,
            "last_error": self.last_error, "created_at": self.created_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
        }  # fmt: skip
