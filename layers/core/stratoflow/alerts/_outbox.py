"""What the outboxes of both runtimes share: a delivery record of one alert to one channel, the
retry policy, and what one send attempt comes to. No clock, no store."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stratoflow.alerts._channels import MAX_CHANNELS_PER_GROUP, NAME, Channel
from stratoflow.alerts._messages import AlertFacts
from stratoflow.alerts._send import DeliveryError, Sender, Skipped
from stratoflow.errors import InvalidInput, Problem

log = logging.getLogger("stratoflow.alerts")

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


def opens_incident(channel_type: str, facts: AlertFacts) -> bool:
    """Whether sending ``facts`` to a channel of this type opens a PagerDuty incident that the
    workflow's next success resolves."""
    return (
        channel_type == "pagerduty"
        and facts.action == "trigger"
        and facts.event not in ("start", "success", "recovered", "test")
    )


@dataclass(frozen=True)
class Outcome:
    """What one send of a delivery came to: ``sent``, ``skipped``, ``failed`` (for good), or
    ``retrying`` after ``retry_in``."""

    status: str
    error: str | None = None
    retry_in: timedelta | None = None


def try_send(sender: Sender, channel: Channel, d: Delivery, backoff: Backoff) -> Outcome:
    """Send ``d`` once and decide what comes next by the retry policy."""
    try:
        sender.send(channel, d.facts, d.key)
    except Skipped as exc:
        return Outcome("skipped", str(exc))
    except DeliveryError as exc:
        error, permanent, asked = str(exc), exc.permanent, exc.retry_after
    except Exception as exc:  # a bug in a provider's code: retry, say what it was
        log.exception("alert %s to %s", d.key, d.channel)
        error, permanent, asked = type(exc).__name__, False, None
    else:
        return Outcome("sent")
    attempts = d.attempts + 1
    if permanent or attempts >= backoff.max_attempts:
        log.warning("alert %s to %s failed: %s", d.key, d.channel, error)
        return Outcome("failed", error)
    # a receiver that said when to come back (429/503 Retry-After) is not tried before then
    delay = backoff.delay(attempts)
    if asked is not None and asked > delay.total_seconds():
        delay = timedelta(seconds=asked)
    return Outcome("retrying", error, delay)
