"""Workflow schedules as EventBridge Scheduler schedules (the ``Schedules`` port on AWS).

Every scheduled workflow has one schedule in the stack's schedule group, named from its project
and name (:func:`schedule_name`). It fires the trigger function with
``{"project", "workflow", "scheduled_time"}``, which ``firing.fire`` turns into a run.

``sync`` is idempotent and cheap when nothing changed: it reads the schedule (one
``GetSchedule``), compares it with what the workflow asks for, and writes only a difference
(create, update or delete).

What is sent, from the workflow's ``schedule``:

* ``ScheduleExpression``: the model's EventBridge form of ``cron`` (a 5-field Unix cron becomes
  ``cron(...)``; ``cron(...)`` and ``rate(...)`` pass as written, normalised);
  ``ScheduleExpressionTimezone``: ``timezone``.
* ``StartDate``: EventBridge rejects a StartDate more than five minutes in the past, so it is
  ``start`` only while that is in the future. For ``rate()`` it is also what anchors the
  intervals, so once ``start`` has passed (or without one) it is the next fire time on the
  model's grid (``start + k * rate``, or the Unix epoch + ``k * rate``): EventBridge then fires
  on the same instants the local cron loop does.
* ``EndDate``: one second after ``end`` ("the date before which the schedule can invoke its
  target", and the model fires at ``end`` itself). A schedule with no fire time left (its
  ``end`` or its cron years have passed) is deleted.
* ``State`` ``DISABLED`` while the workflow is paused; ``FlexibleTimeWindow`` ``OFF`` (a firing's
  scheduled time is exact, so it is the logical date); ``ActionAfterCompletion`` ``NONE``; a
  ``RetryPolicy`` (a firing is idempotent, so retrying one is safe).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.exceptions import ClientError

from stratoflow.errors import ScheduleSyncFailed
from stratoflow.model import ScheduleError, WorkflowSpec, parse_schedule, schedule_window
from stratoflow.ports import Clock, Schedules

if TYPE_CHECKING:
    from mypy_boto3_scheduler.client import EventBridgeSchedulerClient
    from mypy_boto3_scheduler.type_defs import GetScheduleOutputTypeDef

__all__ = [
    "RETRY_POLICY",
    "SCHEDULED_TIME",
    "EventBridgeSchedules",
    "ScheduleSyncError",
    "schedule_name",
]

NAME_MAX: Final = 64  # EventBridge Scheduler: a schedule name is 1-64 of [0-9a-zA-Z-_.]
_NAME_CHARS: Final = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")
SCHEDULED_TIME: Final = "<aws.scheduler.scheduled-time>"  # filled in by EventBridge per firing
# EventBridge retries a failed invocation for up to a day (its defaults, stated so they are
# visible and compared): the trigger is idempotent, so a retried firing creates no second run.
RETRY_POLICY: Final[dict[str, int]] = {
    "MaximumEventAgeInSeconds": 86_400,
    "MaximumRetryAttempts": 185,
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class ScheduleSyncError(ScheduleSyncFailed):
    """EventBridge Scheduler refused or failed a request for a workflow's schedule. The
    workflow version is stored; applying it again retries the sync."""


def schedule_name(project: str, name: str) -> str:
    """The schedule's name: ``project.name`` (``.`` appears in neither, so distinct workflows
    get distinct names); when that is longer than 64 characters, its first 51 characters, a
    dash and 12 hex digits of its SHA-256."""
    full = f"{project}.{name}"
    if len(full) <= NAME_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:12]
    return f"{full[: NAME_MAX - 13]}-{digest}"


class _UtcClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


def _ceil_second(moment: datetime) -> datetime:
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def _seconds(moment: datetime | None) -> int | None:
    return None if moment is None else math.floor(moment.timestamp())


class EventBridgeSchedules(Schedules):
    """One EventBridge Scheduler schedule per scheduled workflow, in ``group``, targeting the
    trigger function (``target_arn``) through the role EventBridge Scheduler assumes
    (``role_arn``)."""

    def __init__(
        self,
        group: str,
        *,
        role_arn: str,
        target_arn: str,
        client: EventBridgeSchedulerClient | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.group = group
        self.role_arn = role_arn
        self.target_arn = target_arn
        self.client: EventBridgeSchedulerClient = client or boto3.client("scheduler")
        self.clock = clock or _UtcClock()

    # ------------------------------------------------------------------ the port
    def sync(self, spec: WorkflowSpec, *, paused: bool) -> None:
        name = schedule_name(spec.project, spec.name)
        assert _NAME_CHARS.match(name), name  # project and name are [a-z0-9_-]+
        desired = self.desired(spec, paused=paused)
        current = self._get(spec, name)
        if desired is None:
            if current is not None:
                self._delete(spec, name)
            return
        if current is None:
            try:
                self.client.create_schedule(**desired)
            except ClientError as exc:
                if _code(exc) != "ConflictException":
                    raise _error(spec, name, "create", exc) from exc
                # another apply created it between our read and our write: compare with that
                current = self._get(spec, name)
            else:
                return
        if current is not None and not self._same(current, desired, spec):
            try:
                self.client.update_schedule(**desired)
            except ClientError as exc:
                raise _error(spec, name, "update", exc) from exc

    # ------------------------------------------------------------------ what to send
    def desired(self, spec: WorkflowSpec, *, paused: bool) -> dict[str, Any] | None:
        """The ``CreateSchedule``/``UpdateSchedule`` request for ``spec``, or ``None`` when
        the workflow should have no schedule (none declared, or no fire time left)."""
        schedule = spec.workflow.schedule
        if schedule is None:
            return None
        now = self.clock.now()
        expr = parse_schedule(schedule.cron)
        start, end = schedule_window(schedule)
        try:
            upcoming = expr.next_after(now, schedule.timezone, start)
        except ScheduleError:  # a cron expression whose years have all passed
            return None
        if end is not None and upcoming > end:
            return None
        request: dict[str, Any] = {
            "Name": schedule_name(spec.project, spec.name),
            "GroupName": self.group,
            "Description": f"Stratoflow workflow {spec.project}/{spec.name}",
            "ScheduleExpression": expr.eventbridge,
            "ScheduleExpressionTimezone": schedule.timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "DISABLED" if paused else "ENABLED",
            "ActionAfterCompletion": "NONE",
            "Target": {
                "Arn": self.target_arn,
                "RoleArn": self.role_arn,
                "Input": json.dumps(
                    {
                        "project": spec.project,
                        "workflow": spec.name,
                        "scheduled_time": SCHEDULED_TIME,
                    },
                    separators=(",", ":"),
                ),
                "RetryPolicy": dict(RETRY_POLICY),
            },
        }
        if start is not None and start > now:
            request["StartDate"] = _ceil_second(start)
        elif expr.rate is not None:
            # the next instant of the model's grid: EventBridge counts intervals from StartDate
            request["StartDate"] = _ceil_second(upcoming)
        if end is not None:
            request["EndDate"] = end.replace(microsecond=0) + timedelta(seconds=1)
        return request

    def _same(
        self, current: GetScheduleOutputTypeDef, desired: dict[str, Any], spec: WorkflowSpec
    ) -> bool:
        """Whether the stored schedule already does what ``desired`` asks (so no write)."""
        if _view(current) != _view(desired):
            return False
        return self._same_start(current.get("StartDate"), desired.get("StartDate"), spec)

    def _same_start(
        self, current: datetime | None, desired: datetime | None, spec: WorkflowSpec
    ) -> bool:
        """StartDate depends on when ``sync`` runs, so equal means equivalent: a ``start``
        still in the future must match exactly; otherwise a cron schedule only needs no
        StartDate still ahead, and a rate schedule a StartDate on the same grid, not after
        the next fire time."""
        schedule = spec.workflow.schedule
        assert schedule is not None
        start, _ = schedule_window(schedule)
        now = self.clock.now()
        if start is not None and start > now:
            return _seconds(current) == _seconds(desired)
        rate = parse_schedule(schedule.cron).rate
        if rate is None:
            return current is None or current <= now
        if current is None or desired is None or current > desired:
            return False
        anchor = _ceil_second(start) if start is not None else _EPOCH
        offset = math.floor(current.timestamp()) - math.floor(anchor.timestamp())
        return offset % int(rate.total_seconds()) == 0

    # ------------------------------------------------------------------ requests
    def _get(self, spec: WorkflowSpec, name: str) -> GetScheduleOutputTypeDef | None:
        try:
            return self.client.get_schedule(Name=name, GroupName=self.group)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise _error(spec, name, "read", exc) from exc

    def _delete(self, spec: WorkflowSpec, name: str) -> None:
        try:
            self.client.delete_schedule(Name=name, GroupName=self.group)
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":  # already gone is what we want
                raise _error(spec, name, "delete", exc) from exc


def _view(schedule: GetScheduleOutputTypeDef | dict[str, Any]) -> dict[str, Any]:
    """The fields ``sync`` sets, as comparable values (``Input`` parsed, defaults filled in,
    dates to whole seconds). StartDate is compared separately (``_same_start``)."""
    target: dict[str, Any] = dict(schedule.get("Target") or {})
    raw_input = target.get("Input")
    try:
        parsed_input = json.loads(raw_input) if raw_input is not None else None
    except ValueError:
        parsed_input = raw_input  # not ours: differs from what we send, so it gets replaced
    flexible: dict[str, Any] = dict(schedule.get("FlexibleTimeWindow") or {})
    return {
        "expression": schedule.get("ScheduleExpression"),
        "timezone": schedule.get("ScheduleExpressionTimezone") or "UTC",
        "state": schedule.get("State") or "ENABLED",
        "description": schedule.get("Description") or "",
        "flexible": (flexible.get("Mode"), flexible.get("MaximumWindowInMinutes")),
        "after": schedule.get("ActionAfterCompletion") or "NONE",
        "end": _seconds(schedule.get("EndDate")),
        "target": (
            target.get("Arn"),
            target.get("RoleArn"),
            parsed_input,
            dict(target.get("RetryPolicy") or {}),
            # anything else on the target (a dead-letter queue, another target type's
            # parameters) was not set by us: its presence makes the schedule differ
            sorted(set(target) - {"Arn", "RoleArn", "Input", "RetryPolicy"}),
        ),
        "kms": schedule.get("KmsKeyArn"),
    }


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _error(spec: WorkflowSpec, name: str, verb: str, exc: ClientError) -> ScheduleSyncError:
    detail = exc.response.get("Error", {})
    return ScheduleSyncError(
        f"workflow {spec.project}/{spec.name}: could not {verb} its EventBridge schedule "
        f"{name!r}: {detail.get('Code', 'error')}: {detail.get('Message', str(exc))} "
        "(the workflow version is stored; apply it again to retry)"
    )
