"""Alerts on AWS: the alert function's work (docs: README "7. Alerts", template ``AlertFunction``).

An EventBridge rule on the stack's lifecycle bus sends each lifecycle event to the alert
function. It plans the alerts the event makes with the same pure code as the local runtime
(``stratoflow.alerts.for_event``) and writes one delivery record per (alert key, channel) to
the alert table **conditionally** (``attribute_not_exists``): a redelivered event, or the
function's own retry after a crash, finds the record and sends nothing twice. A record is
claimed (a conditional update that takes a short lease) before its send, so two invocations
never send one record at once, and marked ``sent`` / ``retrying`` / ``failed`` after.

- **Retries**: a send that failed for a reason worth retrying is recorded ``retrying`` with
  its next time (:class:`~stratoflow.alerts.Backoff`, the local policy, but at least a
  minute: Scheduler's precision), and an
  EventBridge Scheduler one-time schedule ``at(...)`` (in the stack's alert schedule group) invokes the function again with
  ``{"action": "deliver", ...}``; nothing polls.
- **SLA deadlines**: on ``run.started`` each ``sla`` of the run and its tasks becomes a
  one-time schedule (``{"action": "sla", ...}``); when it fires the run (or task) is read and
  ``sla_miss`` is planned only if it missed. A run that ends deletes its schedules; one that
  fires anyway (a race) finds the run done in time and sends nothing.
- **Incidents**: a PagerDuty trigger records an open incident item per (workflow, incident,
  channel); the workflow's next success writes one ``resolve`` delivery for each and deletes
  the items.

The alert table (pk, sk; gsi1 for the delivery log, newest first) holds its own item kinds,
so the state table's layout is untouched:

- ``pk=P#<project>``, ``sk=CH#<name>``: a channel (``type``, ``settings`` as JSON);
- ``pk=P#<project>``, ``sk=G#<name>``: a group (``channels`` as JSON);
- ``pk=D#<project>``, ``sk=<key>#<channel>``: a delivery; ``gsi1pk=D#<project>``,
  ``gsi1sk=<created>#<key>#<channel>``;
- ``pk=I#<project>#<workflow>``, ``sk=<incident>#<channel>``: an open PagerDuty incident;
- ``pk=P#<project>``, ``sk=CN#<name>``: a named connection of sql tasks
  (``adapters.aws.connections``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from botocore.exceptions import ClientError

from stratoflow.adapters.aws.counted import CountedItems
from stratoflow.alerts import (
    MAX_CHANNELS,
    MAX_GROUPS,
    RUN_EVENTS,
    TASK_EVENTS,
    AlertFacts,
    Backoff,
    Channel,
    Delivery,
    DeliveryError,
    Planned,
    Sender,
    SlaTimer,
    check_group,
    for_event,
    for_sla_miss,
    opens_incident,
    planned_test_alert,
    sla_missed,
    sla_timers,
    try_send,
)
from stratoflow.alerts._messages import email_html
from stratoflow.engine import RunState
from stratoflow.errors import Conflict, InvalidInput, NotFound, Problem
from stratoflow.model import WorkflowSpec
from stratoflow.ports import Clock, RunQuery, StateStore

log = logging.getLogger("stratoflow.alerts")

NO_CHANNEL: Final = "-"
LEASE: Final = timedelta(seconds=90)  # longer than one send can take (the sender's timeout)
MIN_SCHEDULE_DELAY: Final = timedelta(minutes=1)  # EventBridge Scheduler's precision
_TERMINAL_KINDS: Final = ("run.succeeded", "run.failed", "run.stopped")
# the lifecycle events the alert rule takes: those alerts come of, and a stopped run's end
# (its SLA deadlines are dropped)
ALERT_EVENT_KINDS: Final = (*RUN_EVENTS, "run.stopped", *TASK_EVENTS)

# The alert table, as ``client.create_table(**ALERT_TABLE_SCHEMA, TableName=...)`` takes it;
# template.yaml's AlertTable must match it (tests/infra checks).
ALERT_TABLE_SCHEMA: Final[dict[str, Any]] = {
    "AttributeDefinitions": [
        {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "gsi1pk", "gsi1sk")
    ],
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": "gsi1",
            "KeySchema": [
                {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
    "BillingMode": "PAY_PER_REQUEST",
}


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _dt(value: Any) -> datetime | None:
    return None if value in (None, "") else datetime.fromisoformat(str(value))


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _s(item: Mapping[str, Any], name: str) -> str | None:
    cell = item.get(name)
    return None if cell is None or "S" not in cell else str(cell["S"])


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _gone(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException"


class DynamoAlertStore:
    """Channels, groups, deliveries and open incidents in the alert table."""

    def __init__(self, table: str, client: Any) -> None:
        self.table = table
        self.client = client

    # ------------------------------------------------------------ configuration
    def _items(self, project: str, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": f"P#{project}"}, ":prefix": {"S": prefix}},
        }  # fmt: skip
        while True:
            page = self.client.query(**kwargs)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def counted(
        self, project: str, prefix: str, limit: int, too_many: Callable[[], Exception]
    ) -> CountedItems:
        """The project's items of one kind (channels, groups, connections), at most
        ``limit``, whatever the concurrent writers (``adapters.aws.counted``)."""
        return CountedItems(self.client, self.table, f"P#{project}", prefix, limit, too_many)

    def _channels(self, project: str) -> CountedItems:
        return self.counted(project, "CH#", MAX_CHANNELS, lambda: InvalidInput(
            [Problem("name", f"project {project} has {MAX_CHANNELS} channels, the most")]
        ))  # fmt: skip

    def _groups(self, project: str) -> CountedItems:
        return self.counted(project, "G#", MAX_GROUPS, lambda: InvalidInput(
            [Problem("group", f"at most {MAX_GROUPS} groups")]
        ))  # fmt: skip

    def put_channel(self, channel: Channel, now: datetime) -> bool:
        """Create or replace; True if it is new."""
        return self._channels(channel.project).put(
            channel.name,
            {"type": {"S": channel.type}, "settings": {"S": json.dumps(dict(channel.settings))},
             "updated_at": {"S": _ts(now)}},
        )  # fmt: skip

    def get_channel(self, project: str, name: str) -> Channel:
        item = self._get(f"P#{project}", f"CH#{name}")
        if item is None:
            raise NotFound(f"alert channel {name!r} not found in project {project!r}")
        return _channel(project, item)

    def list_channels(self, project: str) -> list[Channel]:
        return [_channel(project, item) for item in self._items(project, "CH#")]

    def delete_channel(self, project: str, name: str) -> None:
        """Refused while a group holds the channel (the error names the groups)."""
        if self._get(f"P#{project}", f"CH#{name}") is None:
            raise NotFound(f"alert channel {name!r} not found in project {project!r}")
        users = [g for g, channels in self.list_groups(project).items() if name in channels]
        if users:
            raise Conflict(
                f"alert channel {name!r} is in group(s) {', '.join(sorted(users))}; "
                "take it out of them first"
            )
        if not self._channels(project).delete(name):  # deleted meanwhile
            raise NotFound(f"alert channel {name!r} not found in project {project!r}")

    def set_group(self, project: str, name: str, channels: Sequence[str], now: datetime) -> bool:
        """Create or replace; True if it is new. Every channel must exist."""
        check_group(project, name, channels)
        known = {c.name for c in self.list_channels(project)}
        missing = [c for c in channels if c not in known]
        if missing:
            raise InvalidInput(
                [Problem("channels", f"no channel {c!r} in project {project!r} "
                         "(add it with `stratoflow alerts channels add`)") for c in missing]
            )  # fmt: skip
        return self._groups(project).put(
            name, {"channels": {"S": json.dumps(list(channels))}, "updated_at": {"S": _ts(now)}}
        )

    def group_channels(self, project: str, name: str) -> list[str] | None:
        item = self._get(f"P#{project}", f"G#{name}")
        return None if item is None else list(json.loads(_s(item, "channels") or "[]"))

    def has_group(self, project: str, name: str) -> bool:
        """Whether the project has the group (what a workflow's ``alerts`` may name)."""
        return self.group_channels(project, name) is not None

    def get_group(self, project: str, name: str) -> list[str]:
        channels = self.group_channels(project, name)
        if channels is None:
            raise NotFound(f"alert group {name!r} not found in project {project!r}")
        return channels

    def list_groups(self, project: str) -> dict[str, list[str]]:
        return {
            str(_s(item, "sk"))[2:]: list(json.loads(_s(item, "channels") or "[]"))
            for item in self._items(project, "G#")
        }

    def delete_group(self, project: str, name: str) -> None:
        if not self._groups(project).delete(name):
            raise NotFound(f"alert group {name!r} not found in project {project!r}")

    def enqueue(self, planned: Sequence[Planned], now: datetime) -> list[tuple[str, str]]:
        """One record per channel of each plan's group (as the group is now); returns every
        (key, channel) the plans name, new or not: a record a crash left pending is sent by
        the redelivery, and one already sent is not (``claim``)."""
        rows: list[tuple[str, str]] = []
        for plan in planned:
            facts = plan.facts
            channels = self.group_channels(facts.project, plan.group)
            if not channels:
                why = "does not exist" if channels is None else "has no channels"
                self.add(plan, NO_CHANNEL, now, status="failed",
                         error=f"alert group {plan.group!r} {why} in project {facts.project!r}")  # fmt: skip
                continue
            for channel in channels:
                self.add(plan, channel, now)
                rows.append((plan.key, channel))
        return rows

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        found = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        item = found.get("Item")
        return dict(item) if item else None

    # ------------------------------------------------------------ deliveries
    def add(
        self,
        plan: Planned,
        channel: str,
        now: datetime,
        *,
        status: str = "pending",
        error: str | None = None,
    ) -> bool:
        """Write the delivery record unless it exists; True if it is new."""
        facts = plan.facts
        sk = f"{plan.key}#{channel}"
        item: dict[str, Any] = {
            "pk": {"S": f"D#{facts.project}"}, "sk": {"S": sk},
            "gsi1pk": {"S": f"D#{facts.project}"}, "gsi1sk": {"S": f"{_ts(now)}#{sk}"},
            "key": {"S": plan.key}, "channel": {"S": channel}, "grp": {"S": plan.group},
            "facts": {"S": json.dumps(facts.to_json())}, "status": {"S": status},
            "attempts": {"N": "0"}, "created_at": {"S": _ts(now)},
        }  # fmt: skip
        if facts.run_id:
            item["run_id"] = {"S": facts.run_id}
        if error:
            item["last_error"] = {"S": error}
        try:
            self.client.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def get(self, key: str, project: str, channel: str) -> Delivery:
        item = self._get(f"D#{project}", f"{key}#{channel}")
        if item is None:
            raise NotFound(f"no alert {key!r} for channel {channel!r}")
        return _delivery(project, item)

    def claim(self, key: str, project: str, channel: str, now: datetime) -> Delivery | None:
        """Take the record for one send: only if it is pending or retrying and nobody holds
        a live lease on it. None if it is done or someone else is sending it."""
        try:
            found = self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"D#{project}"}, "sk": {"S": f"{key}#{channel}"}},
                UpdateExpression="SET lease_until = :until",
                ConditionExpression=(
                    "attribute_exists(pk) AND #s IN (:p, :r) "
                    "AND (attribute_not_exists(lease_until) OR lease_until < :now)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":until": {"S": _ts(now + LEASE)},
                    ":now": {"S": _ts(now)},
                    ":p": {"S": "pending"},
                    ":r": {"S": "retrying"},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return _delivery(project, found["Attributes"])

    def record(
        self,
        d: Delivery,
        status: str,
        now: datetime,
        *,
        error: str | None = None,
        next_at: datetime | None = None,
    ) -> None:
        values: dict[str, Any] = {":s": {"S": status}, ":one": {"N": "1"}}
        sets = ["#s = :s", "attempts = attempts + :one"]
        removes = ["lease_until"]
        for name, value in (("last_error", error), ("next_at", next_at and _ts(next_at)),
                            ("sent_at", _ts(now) if status == "sent" else None)):  # fmt: skip
            if value:
                sets.append(f"{name} = :{name}")
                values[f":{name}"] = {"S": value}
            else:
                removes.append(name)
        self.client.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"D#{d.project}"}, "sk": {"S": f"{d.key}#{d.channel}"}},
            UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=values,
        )

    def list_deliveries(
        self,
        project: str,
        *,
        run_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> tuple[list[Delivery], int | None]:
        """Newest first; returns the page and the cursor of the next one: the creation time
        (epoch microseconds) of the page's oldest record. A page never ends inside a group of
        records made in one microsecond (it takes them all), so the next page, strictly
        older, misses none."""
        values: dict[str, Any] = {":pk": {"S": f"D#{project}"}}
        condition = "gsi1pk = :pk"
        if before is not None:
            condition += " AND gsi1sk < :before"
            values[":before"] = {"S": _ts(_EPOCH + timedelta(microseconds=before))}
        filters = []
        if run_id is not None:
            filters.append("run_id = :run")
            values[":run"] = {"S": run_id}
        if status is not None:
            filters.append("#s = :status")
            values[":status"] = {"S": status}
        kwargs: dict[str, Any] = {
            "TableName": self.table, "IndexName": "gsi1", "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values, "ScanIndexForward": False,
        }  # fmt: skip
        if filters:
            kwargs["FilterExpression"] = " AND ".join(filters)
        if status is not None:
            kwargs["ExpressionAttributeNames"] = {"#s": "status"}
        rows: list[Delivery] = []
        while True:
            page = self.client.query(**kwargs)
            rows += [_delivery(project, i) for i in page.get("Items", [])]
            if len(rows) > limit and rows[limit].created_at != rows[limit - 1].created_at:
                break
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        cut = min(limit, len(rows))
        while 0 < cut < len(rows) and rows[cut].created_at == rows[cut - 1].created_at:
            cut += 1
        shown = rows[:cut]
        more = len(rows) > cut
        return shown, (_micros(shown[-1].created_at) if more and shown else None)

    # ------------------------------------------------------------ incidents
    def open_incident(self, plan: Planned, channel: str, now: datetime) -> None:
        facts = plan.facts
        self.client.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": f"I#{facts.project}#{facts.workflow}"},
                "sk": {"S": f"{facts.dedup_key}#{channel}"}, "grp": {"S": plan.group},
                "facts": {"S": json.dumps(facts.to_json())}, "created_at": {"S": _ts(now)},
            },
        )  # fmt: skip

    def open_incidents(
        self, project: str, workflow: str, opened_by: datetime
    ) -> list[tuple[str, str, AlertFacts, dict[str, Any]]]:
        """(channel, group, the facts that opened it, the item's key) of each incident the
        workflow's alerts opened up to ``opened_by`` and nothing resolved yet."""
        found = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "KeyConditionExpression": "pk = :pk",
            "FilterExpression": "created_at <= :by", "ConsistentRead": True,
            "ExpressionAttributeValues": {":pk": {"S": f"I#{project}#{workflow}"},
                                          ":by": {"S": _ts(opened_by)}},
        }  # fmt: skip
        while True:
            page = self.client.query(**kwargs)
            for item in page.get("Items", []):
                channel = str(_s(item, "sk")).rsplit("#", 1)[1]
                facts = AlertFacts.from_json(json.loads(_s(item, "facts") or "{}"))
                found.append((channel, str(_s(item, "grp")), facts,
                              {"pk": item["pk"], "sk": item["sk"]}))  # fmt: skip
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def close_incident(self, key: dict[str, Any]) -> None:
        self.client.delete_item(TableName=self.table, Key=key)


def _channel(project: str, item: Mapping[str, Any]) -> Channel:
    name = str(_s(item, "sk"))[len("CH#") :]
    return Channel(project, name, str(_s(item, "type")), json.loads(_s(item, "settings") or "{}"))


def _delivery(project: str, item: Mapping[str, Any]) -> Delivery:
    facts = AlertFacts.from_json(json.loads(_s(item, "facts") or "{}"))
    return Delivery(
        key=str(_s(item, "key")), project=project, channel=str(_s(item, "channel")),
        group=str(_s(item, "grp")), event=facts.event, workflow=facts.workflow,
        run_id=_s(item, "run_id"), facts=facts, status=str(_s(item, "status")),
        attempts=int(item.get("attempts", {}).get("N", "0")), next_at=_dt(_s(item, "next_at")),
        last_error=_s(item, "last_error"),
        created_at=_dt(_s(item, "created_at")) or datetime.min.replace(tzinfo=UTC),
        sent_at=_dt(_s(item, "sent_at")),
    )  # fmt: skip


@dataclass(frozen=True)
class OneTimeSchedules:
    """EventBridge Scheduler one-time schedules that invoke the alert function with a payload;
    each deletes itself after it ran. Names are derived from what they carry, so planning one
    twice (a redelivered event) makes one schedule."""

    client: Any
    group: str
    target_arn: str
    role_arn: str

    @staticmethod
    def name(payload: Mapping[str, Any]) -> str:
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"alert-{payload['action']}-{digest[:40]}"

    def at(self, when: datetime, payload: Mapping[str, Any]) -> None:
        stamp = when.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat()
        try:
            self.client.create_schedule(
                Name=self.name(payload),
                GroupName=self.group,
                ScheduleExpression=f"at({stamp})",
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target={"Arn": self.target_arn, "RoleArn": self.role_arn,
                        "Input": json.dumps(payload),
                        "RetryPolicy": {"MaximumRetryAttempts": 10}},
            )  # fmt: skip
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConflictException":
                raise

    def delete(self, payload: Mapping[str, Any]) -> None:
        try:
            self.client.delete_schedule(Name=self.name(payload), GroupName=self.group)
        except ClientError as exc:
            if not _gone(exc):
                raise


def _timer_payload(t: SlaTimer) -> dict[str, Any]:
    return {"action": "sla", "run_id": t.run_id, "task_id": t.task_id, "due": _ts(t.due),
            "sla_seconds": t.sla.total_seconds()}  # fmt: skip


class AwsAlerts:
    """What the alert function does with each invocation (:meth:`handle`)."""

    def __init__(
        self,
        store: DynamoAlertStore,
        state: StateStore,
        spec: Callable[[str, str, int], WorkflowSpec],
        sender: Sender,
        clock: Clock,
        schedules: OneTimeSchedules,
        *,
        link_base: str | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.store = store
        self.state = state
        self.spec = spec
        self.sender = sender
        self.clock = clock
        self.schedules = schedules
        self.link_base = link_base
        self.backoff = backoff or Backoff()

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """An EventBridge lifecycle event, or a payload of one of our schedules."""
        action = event.get("action")
        if action == "deliver":
            sent = self.deliver(str(event["project"]), str(event["key"]), str(event["channel"]))
            return {"tried": int(sent)}
        if action == "sla":
            return {"tried": self.sla(event)}
        detail = event.get("detail")
        if not isinstance(detail, Mapping) or "kind" not in detail:
            raise ValueError("not a Stratoflow lifecycle event nor an alert schedule's payload")
        if detail["kind"] not in ALERT_EVENT_KINDS:  # e.g. a backfill's: no alert comes of it
            return {"tried": 0}
        return {"tried": self.lifecycle(str(detail["kind"]), detail)}

    # ------------------------------------------------------------ events in
    def lifecycle(self, kind: str, detail: Mapping[str, Any]) -> int:
        run = self.state.get_run(str(detail["run_id"]))
        workflow = self.spec(run.project, run.workflow, run.version).workflow
        now = self.clock.now()
        timers = sla_timers(run, workflow)
        if kind == "run.started":
            for timer in timers:
                if timer.due > now + MIN_SCHEDULE_DELAY:
                    self.schedules.at(timer.due, _timer_payload(timer))
                else:  # due already (a late event, a tiny sla): check it now
                    self.sla(_timer_payload(timer))
        elif kind in _TERMINAL_KINDS:
            for timer in timers:  # done: its deadlines need not fire (if one does, it is ignored)
                self.schedules.delete(_timer_payload(timer))
        previous_failed = None
        if kind == "run.succeeded":
            before = self.state.list_runs(
                RunQuery(project=run.project, workflow=run.workflow, before=run.id, limit=1)
            )
            if before and before[0].state is RunState.FAILED:
                previous_failed = before[0].id
        task_id = detail.get("task_id")
        planned = for_event(
            kind, run, workflow, task_id=str(task_id) if task_id is not None else None,
            attempt=detail.get("attempt"), error=detail.get("error"), at=now,
            link_base=self.link_base, previous_failed=previous_failed,
        )  # fmt: skip
        rows = self.store.enqueue(planned, now)
        if kind == "run.succeeded":
            rows += self._resolves(run.project, run.workflow, f"{run.id}:{run.ended_at}", now,
                                   opened_by=run.ended_at or now)  # fmt: skip
        return self._deliver_all(run.project, rows)

    def _resolves(
        self, project: str, workflow: str, by: str, now: datetime, *, opened_by: datetime
    ) -> list[tuple[str, str]]:
        rows = []
        for channel, group, opened, item_key in self.store.open_incidents(
            project, workflow, opened_by
        ):
            facts = AlertFacts(
                "success", project, workflow, run_id=opened.run_id, task_id=opened.task_id,
                dedup_key=opened.dedup_key, action="resolve", at=now.isoformat(),
            )  # fmt: skip
            key = f"resolve:{opened.dedup_key}:{by}"
            self.store.add(Planned(key, group, facts), channel, now)
            rows.append((key, channel))
            self.store.close_incident(item_key)
        return rows

    # ------------------------------------------------------------ SLA deadlines
    def sla(self, payload: Mapping[str, Any]) -> int:
        due = _dt(payload["due"]) or self.clock.now()
        timer = SlaTimer(str(payload["run_id"]), str(payload.get("task_id") or ""), due,
                         timedelta(seconds=float(payload["sla_seconds"])))  # fmt: skip
        try:
            run = self.state.get_run(timer.run_id)
            ended = (
                self.state.get_task(run.id, timer.task_id).ended_at
                if timer.task_id
                else run.ended_at
            )
        except NotFound:
            log.warning("SLA deadline of %s/%s: no such run or task", timer.run_id, timer.task_id)
            return 0
        if not sla_missed(timer, ended):
            return 0
        workflow = self.spec(run.project, run.workflow, run.version).workflow
        now = self.clock.now()
        planned = for_sla_miss(timer, run, workflow, at=now, link_base=self.link_base)
        return self._deliver_all(run.project, self.store.enqueue(planned, now))

    # ------------------------------------------------------------ delivery
    def _deliver_all(self, project: str, rows: Sequence[tuple[str, str]]) -> int:
        return sum(self.deliver(project, key, channel) for key, channel in rows)

    def deliver(self, project: str, key: str, channel_name: str) -> bool:
        """Send one record if it is still to send; True if a send was tried."""
        now = self.clock.now()
        d = self.store.claim(key, project, channel_name, now)
        if d is None:
            self._after_lease(project, key, channel_name, now)
            return False
        try:
            channel = self.store.get_channel(project, channel_name)
        except NotFound:
            self.store.record(d, "failed", self.clock.now(), error="the channel was deleted")
            return True
        outcome = try_send(self.sender, channel, d, self.backoff)
        now = self.clock.now()
        if outcome.retry_in is None:
            self.store.record(d, outcome.status, now, error=outcome.error)
            if outcome.status == "sent" and opens_incident(channel.type, d.facts):
                self.store.open_incident(Planned(d.key, d.group, d.facts), d.channel, now)
            return True
        # Scheduler fires with one-minute precision; never ask it for a time about to pass
        retry_at = now + max(outcome.retry_in, MIN_SCHEDULE_DELAY)
        self.store.record(d, "retrying", now, error=outcome.error, next_at=retry_at)
        self.schedules.at(retry_at, {"action": "deliver", "project": d.project, "key": d.key,
                                     "channel": d.channel, "attempt": d.attempts + 1})  # fmt: skip
        return True

    def _after_lease(self, project: str, key: str, channel: str, now: datetime) -> None:
        """A record nobody may claim now: done (nothing to do), or held by a send in flight.
        That send may die with its invocation (a timeout, a crash), and then no retry of
        the event comes back for it (this invocation succeeds): ask for one more look after
        the lease has run out. If the send went through, that look finds it sent."""
        try:
            held = self.store.get(key, project, channel)
        except NotFound:
            return
        if held.status in ("pending", "retrying"):
            self.schedules.at(now + LEASE + MIN_SCHEDULE_DELAY,
                              {"action": "deliver", "project": project, "key": key,
                               "channel": channel, "after": "lease", "attempt": held.attempts})  # fmt: skip


class SesSender(Sender):
    """The channels' sender on AWS: an ``email`` channel goes out through Amazon SES (its
    ``from`` must be a verified identity); every other type as locally."""

    def __init__(self, resolve_secret: Any, ses: Any, **kwargs: Any) -> None:
        super().__init__(resolve_secret, **kwargs)
        self._ses = ses

    def _email(self, ch: Channel, facts: AlertFacts, key: str, value: Any) -> None:
        to = [a.strip() for a in value("to").split(",") if a.strip()]
        try:
            self._ses.send_email(
                Source=value("from"),
                Destination={"ToAddresses": to},
                Message={
                    "Subject": {"Data": facts.subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": facts.plain(), "Charset": "UTF-8"},
                             "Html": {"Data": email_html(facts), "Charset": "UTF-8"}},
                },
            )  # fmt: skip
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            retry = code in ("Throttling", "ThrottlingException", "ServiceUnavailable",
                             "InternalFailure")  # fmt: skip
            raise DeliveryError(f"SES: {code}: {exc}", permanent=not retry) from None


def secret_resolver(source: Any) -> Callable[[str, str], str]:
    """``resolve_secret(project, name)`` over a :class:`~stratoflow.secrets.SecretSource`
    (``KeyError`` for a name that is not set, as the sender expects)."""

    def resolve(project: str, name: str) -> str:
        value = source.get(project, name)
        if value is None:
            raise KeyError(name)
        return str(value)

    return resolve


def alerts_from_env(environ: Mapping[str, str], session: Any) -> AwsAlerts:
    """The alert function's wiring from the stack's environment (template ``AlertFunction``)."""
    from stratoflow.adapters.aws.dynamodb import DynamoStore
    from stratoflow.adapters.aws.runtime import UtcClock
    from stratoflow.adapters.aws.secrets import SecretsManagerSource, secrets_prefix
    from stratoflow.model import spec_from_document

    state = DynamoStore(environ["STRATOFLOW_TABLE"], client=session.client("dynamodb"))
    specs: dict[tuple[str, str, int], WorkflowSpec] = {}

    def spec(project: str, name: str, version: int) -> WorkflowSpec:
        key = (project, name, version)
        if key not in specs:  # a version never changes: cache it for the container's life
            specs[key] = spec_from_document(state.get_version(project, name, version).document)
        return specs[key]

    source = SecretsManagerSource(session.client("secretsmanager"), secrets_prefix(environ))
    return AwsAlerts(
        DynamoAlertStore(environ["STRATOFLOW_ALERT_TABLE"], session.client("dynamodb")),
        state,
        spec,
        SesSender(secret_resolver(source), session.client("ses")),
        UtcClock(),
        OneTimeSchedules(
            session.client("scheduler"),
            environ["STRATOFLOW_ALERT_SCHEDULE_GROUP"],
            environ["STRATOFLOW_ALERT_FUNCTION_ARN"],
            environ["STRATOFLOW_ALERT_SCHEDULER_ROLE_ARN"],
        ),
        link_base=environ.get("STRATOFLOW_PUBLIC_URL") or None,
    )


class AwsAlertsApi:
    """What the ``/alerts`` routes of the API function use on AWS: the alert table, and a test
    alert handed to the alert function (the API's role may not read a secret's value, so it
    never sends: it writes the records and invokes the function asynchronously)."""

    def __init__(
        self,
        store: DynamoAlertStore,
        clock: Clock,
        invoke: Callable[[Mapping[str, Any]], None],
        *,
        link_base: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.clock = clock
        self.invoke = invoke
        self.link_base = link_base
        self._sleep = sleep
        self._monotonic = monotonic

    def test(self, project: str, group: str) -> list[tuple[str, str]]:
        """Queue a test alert to every channel of ``group``; returns its (key, channel) rows."""
        self.store.get_group(project, group)  # NotFound before anything is written
        now = self.clock.now()
        rows = self.store.enqueue([planned_test_alert(project, group, now, self.link_base)], now)
        for key, channel in rows:
            self.invoke({"action": "deliver", "project": project, "key": key, "channel": channel})
        return rows

    def wait_settled(self, rows: Sequence[tuple[str, str]], project: str, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until each row has had its first try."""
        end = self._monotonic() + timeout
        while any(self.store.get(k, project, c).attempts == 0 for k, c in rows):
            if self._monotonic() >= end:
                return
            self._sleep(0.25)


def lambda_invoker(client: Any, function_arn: str) -> Callable[[Mapping[str, Any]], None]:
    """An asynchronous invocation (``InvocationType=Event``) of the alert function."""

    def invoke(payload: Mapping[str, Any]) -> None:
        client.invoke(
            FunctionName=function_arn, InvocationType="Event", Payload=json.dumps(payload).encode()
        )

    return invoke
