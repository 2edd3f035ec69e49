"""Lifecycle events on an EventBridge bus (the ``EventSink`` port on AWS).

Every event has Source ``stratoflow``, a DetailType per kind (``Run Failed``, ...) and a
detail of schema version 1, documented in docs/events.md and ``docs/events.schema.json``.

What goes in: the run's id, project, workflow, workflow version, state and logical date, and
for task events the task id, attempt, task state and its error (trimmed to
:data:`ERROR_LIMIT` characters); for backfill events the backfill's id, project, workflow,
state and how many of its dates are in each state. What never does: parameters, task outputs, rendered commands,
environments or logs; the detail is built from an allow-list, so a field added to what the
scheduler emits is not published until it is added here (and to the schema).

``emit`` publishes at once. Inside ``with events.batch():`` entries are collected and sent
with ``PutEvents`` ten at a time (its limit), the rest when the block ends. Entries
EventBridge reports as failed (``FailedEntryCount``) are sent again, up to
:data:`PUT_ATTEMPTS` times in all, then :class:`EventPublishError` names what failed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import boto3

from stratoflow.errors import StratoflowError
from stratoflow.ports import EventSink

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

__all__ = [
    "DETAIL_TYPES",
    "ERROR_LIMIT",
    "MAX_BATCH",
    "PUT_ATTEMPTS",
    "SCHEMA_VERSION",
    "SOURCE",
    "EventBridgeEvents",
    "EventPublishError",
    "event_detail",
]

log = logging.getLogger("stratoflow.events")

SOURCE: Final = "stratoflow"
SCHEMA_VERSION: Final = 1
MAX_BATCH: Final = 10  # PutEvents takes at most ten entries
PUT_ATTEMPTS: Final = 3
ERROR_LIMIT: Final = 1000
DETAIL_TYPES: Final[Mapping[str, str]] = {
    "run.started": "Run Started",
    "run.succeeded": "Run Succeeded",
    "run.failed": "Run Failed",
    "run.stopped": "Run Stopped",
    "task.failed": "Task Failed",
    "task.retrying": "Task Retrying",
    "task.timeout": "Task Timeout",
    "task.force_started": "Task Force Started",
    "backfill.started": "Backfill Started",
    "backfill.paused": "Backfill Paused",
    "backfill.resumed": "Backfill Resumed",
    "backfill.cancelled": "Backfill Cancelled",
    "backfill.succeeded": "Backfill Succeeded",
    "backfill.failed": "Backfill Failed",
}
# scheduler detail key -> published key: the allow-list (see the module docstring)
_RUN_FIELDS: Final[Mapping[str, str]] = {
    "run_id": "run_id",
    "project": "project",
    "workflow": "workflow",
    "version": "workflow_version",
    "state": "run_state",
    "logical_date": "logical_date",
}
# published only when the scheduler's detail has them: a sub-workflow's run names its parent
_OPTIONAL_RUN_FIELDS: Final[Mapping[str, str]] = {
    "parent_run": "parent_run_id",
    "parent_task": "parent_task_id",
}
_BACKFILL_FIELDS: Final[Mapping[str, str]] = {
    "backfill_id": "backfill_id",
    "project": "project",
    "workflow": "workflow",
    "state": "backfill_state",
    "dates": "dates",  # how many of its dates are in each state
    "parent": "parent_backfill_id",  # dependent mode: the backfill that included it, or None
}
_TASK_FIELDS: Final[Mapping[str, str]] = {
    "task_id": "task_id",
    "attempt": "attempt",
    "task_state": "task_state",
    "error": "error",
}


class EventPublishError(StratoflowError):
    """EventBridge did not accept some lifecycle events after every attempt."""


def _trim(error: Any) -> str | None:
    if error is None:
        return None
    text = str(error)
    if len(text) <= ERROR_LIMIT:
        return text
    return text[: ERROR_LIMIT - 1] + "…"


def event_detail(kind: str, detail: Mapping[str, Any]) -> dict[str, Any]:
    """The published detail (schema version 1) of what ``Scheduler`` emits. Raises
    ``ValueError`` for a kind that has no DetailType or a detail missing a field."""
    if kind not in DETAIL_TYPES:
        raise ValueError(
            f"unknown lifecycle event kind {kind!r} (known: {', '.join(DETAIL_TYPES)})"
        )
    fields = dict(_BACKFILL_FIELDS if kind.startswith("backfill.") else _RUN_FIELDS)
    if kind.startswith("task."):
        fields.update(_TASK_FIELDS)
    missing = sorted(key for key in fields if key not in detail)
    if missing:
        raise ValueError(f"{kind} event detail is missing {', '.join(missing)}")
    published: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "kind": kind}
    for key, name in fields.items():
        published[name] = detail[key]
    if not kind.startswith("backfill."):
        for key, name in _OPTIONAL_RUN_FIELDS.items():
            if detail.get(key) is not None:
                published[name] = str(detail[key])
    if "error" in published:
        published["error"] = _trim(published["error"])
    if "dates" in published:
        published["dates"] = {state: int(n) for state, n in published["dates"].items()}
    return published


class EventBridgeEvents(EventSink):
    def __init__(
        self,
        event_bus: str,
        *,
        client: EventBridgeClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.event_bus = event_bus
        self.client: EventBridgeClient = client or boto3.client("events")
        self.sleep = sleep
        self._pending: list[PutEventsRequestEntryTypeDef] | None = None

    def entry(self, kind: str, detail: Mapping[str, Any]) -> PutEventsRequestEntryTypeDef:
        published = event_detail(kind, detail)
        return {
            "EventBusName": self.event_bus,
            "Source": SOURCE,
            "DetailType": DETAIL_TYPES[kind],
            "Detail": json.dumps(published, separators=(",", ":")),
        }

    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        entry = self.entry(kind, detail)
        if self._pending is None:
            self.publish([entry])
            return
        self._pending.append(entry)
        if len(self._pending) >= MAX_BATCH:
            ready, self._pending = self._pending, []
            self.publish(ready)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Collect the events emitted inside the block and send them ten per request; what
        is left is sent when the block ends (also when it raises: those events describe
        state already written)."""
        if self._pending is not None:  # nested: the outer block sends
            yield
            return
        self._pending = []
        try:
            yield
        finally:
            ready, self._pending = self._pending, None
            if ready:
                self.publish(ready)

    def publish(self, entries: Sequence[PutEventsRequestEntryTypeDef]) -> None:
        """``PutEvents`` in chunks of ten; resend the entries EventBridge reports as failed."""
        for offset in range(0, len(entries), MAX_BATCH):
            self._put(list(entries[offset : offset + MAX_BATCH]))

    def _put(self, entries: list[PutEventsRequestEntryTypeDef]) -> None:
        errors: list[str] = []
        for attempt in range(PUT_ATTEMPTS):
            if attempt:
                self.sleep(0.1 * 2**attempt)
            response = self.client.put_events(Entries=entries)
            if not response.get("FailedEntryCount"):
                return
            failed: list[PutEventsRequestEntryTypeDef] = []
            errors = []
            for entry, result in zip(entries, response["Entries"], strict=True):
                if result.get("ErrorCode"):
                    failed.append(entry)
                    errors.append(f"{entry['DetailType']}: {result['ErrorCode']}")
            if not failed:  # a count without failed entries: nothing to resend
                return
            log.warning(
                "EventBridge refused %d of %d events: %s", len(failed), len(entries), errors
            )
            entries = failed
        raise EventPublishError(
            f"EventBridge bus {self.event_bus!r} did not accept {len(entries)} lifecycle "
            f"event(s) after {PUT_ATTEMPTS} attempts: {'; '.join(errors)}"
        )
