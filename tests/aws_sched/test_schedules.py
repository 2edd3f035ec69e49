"""Applying a workflow keeps its EventBridge Scheduler schedule in step (moto, in-process).

The scheduler service is the real one (SQLite catalog); every schedule is read back from
moto's EventBridge Scheduler, and the requests counted are the ones botocore really sent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from botocore.exceptions import ClientError

from stratoflow.adapters.aws.schedules import (
    RETRY_POLICY,
    EventBridgeSchedules,
    ScheduleSyncError,
    schedule_name,
)
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.errors import InvalidInput
from stratoflow.service import Scheduler
from tests.aws_sched.helpers import GROUP, ROLE_ARN, TRIGGER_ARN, CallLog, make_scheduler
from tests.fakes import FakeClock

NAME = "analytics.sales_daily"


def workflow(schedule: str | None = None, *, name: str = "sales_daily") -> str:
    text = (
        f"name: {name}\nproject: analytics\ntasks:\n  extract: {{type: shell, command: echo hi}}\n"
    )
    if schedule is not None:
        text += "schedule:\n" + "".join(f"  {line}\n" for line in schedule.strip().splitlines())
    return text


def wall(moment: datetime) -> str:
    """A naive ISO time for a workflow's start/end (read in the schedule's time zone)."""
    return moment.replace(tzinfo=None, microsecond=0).isoformat()


class Rig:
    def __init__(self, client: Any, store: SqliteStore) -> None:
        self.client = client
        self.clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
        self.schedules = EventBridgeSchedules(
            GROUP, role_arn=ROLE_ARN, target_arn=TRIGGER_ARN, client=client, clock=self.clock
        )
        self.scheduler: Scheduler = make_scheduler(
            store, clock=self.clock, schedules=self.schedules
        )
        self.log = CallLog(client, "scheduler")

    def get(self, name: str = NAME) -> dict[str, Any]:
        found: dict[str, Any] = self.client.get_schedule(Name=name, GroupName=GROUP)
        return found

    def writes_of(self, text: str) -> list[str]:
        """Apply ``text``; return the write requests it made."""
        self.log.calls.clear()
        self.scheduler.apply(text)
        return self.log.writes()


@pytest.fixture
def rig(scheduler_client: Any, store: SqliteStore) -> Rig:
    return Rig(scheduler_client, store)


def test_apply_creates_the_schedule_with_expression_zone_window_target_and_input(
    rig: Rig,
) -> None:
    # GIVEN a daily 02:00 Berlin schedule whose window starts in two days
    berlin = ZoneInfo("Europe/Berlin")
    start = (rig.clock.now() + timedelta(days=2)).astimezone(berlin)
    end = start + timedelta(days=30)
    text = workflow(
        f'cron: "0 2 * * *"\ntimezone: Europe/Berlin\nstart: {wall(start)}\nend: {wall(end)}'
    )
    # WHEN it is applied
    assert rig.writes_of(text) == ["CreateSchedule"]
    # THEN its schedule fires the trigger function on EventBridge's form of the cron
    got = rig.get()
    assert got["Name"] == NAME
    assert got["GroupName"] == GROUP
    assert got["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert got["ScheduleExpressionTimezone"] == "Europe/Berlin"
    # the window: naive times are Berlin wall-clock; EndDate is just after `end` (exclusive)
    assert got["StartDate"].timestamp() == start.replace(microsecond=0).timestamp()
    assert got["EndDate"].timestamp() == end.replace(microsecond=0).timestamp() + 1
    assert got["State"] == "ENABLED"
    assert got["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert got["ActionAfterCompletion"] == "NONE"
    target = got["Target"]
    assert (target["Arn"], target["RoleArn"]) == (TRIGGER_ARN, ROLE_ARN)
    assert target["RetryPolicy"] == RETRY_POLICY
    assert json.loads(target["Input"]) == {
        "project": "analytics",
        "workflow": "sales_daily",
        "scheduled_time": "<aws.scheduler.scheduled-time>",
    }


def test_reapplying_an_unchanged_workflow_makes_no_write(rig: Rig) -> None:
    text = workflow('cron: "*/15 * * * *"\ntimezone: Asia/Shanghai')
    assert rig.writes_of(text) == ["CreateSchedule"]
    before = rig.get()["LastModificationDate"]
    # WHEN the same workflow is applied again (a new day later)
    rig.clock.advance(86_400)
    assert rig.writes_of(text) == []
    # THEN only a read was made, and the schedule is untouched
    assert rig.log.calls == ["GetSchedule"]
    assert rig.get()["LastModificationDate"] == before


def test_a_changed_schedule_is_updated(rig: Rig) -> None:
    rig.writes_of(workflow('cron: "0 2 * * *"'))
    assert rig.writes_of(workflow('cron: "30 4 * * 1-5"\ntimezone: America/New_York')) == [
        "UpdateSchedule"
    ]
    got = rig.get()
    assert got["ScheduleExpression"] == "cron(30 4 ? * MON-FRI *)"
    assert got["ScheduleExpressionTimezone"] == "America/New_York"
    # and EventBridge's own syntax passes through, normalised (the optional year filled in)
    assert rig.writes_of(workflow('cron: "cron(0 12 L * ?)"')) == ["UpdateSchedule"]
    assert rig.get()["ScheduleExpression"] == "cron(0 12 L * ? *)"


def test_a_schedule_changed_by_hand_is_repaired_by_the_next_apply(rig: Rig) -> None:
    text = workflow('cron: "0 2 * * *"')
    rig.writes_of(text)
    hand = rig.get()
    rig.client.update_schedule(
        Name=NAME,
        GroupName=GROUP,
        ScheduleExpression="rate(5 minutes)",
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 10},
        Target={**hand["Target"], "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:1:dlq"}},
    )
    assert rig.writes_of(text) == ["UpdateSchedule"]
    got = rig.get()
    assert got["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert got["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert "DeadLetterConfig" not in got["Target"]
    # an input that is not even JSON is replaced too
    rig.client.update_schedule(
        Name=NAME,
        GroupName=GROUP,
        ScheduleExpression=got["ScheduleExpression"],
        FlexibleTimeWindow=got["FlexibleTimeWindow"],
        Target={**got["Target"], "Input": "not json"},
    )
    assert rig.writes_of(text) == ["UpdateSchedule"]
    assert json.loads(rig.get()["Target"]["Input"])["workflow"] == "sales_daily"


def test_removing_the_schedule_deletes_it_and_a_missing_one_is_fine(rig: Rig) -> None:
    rig.writes_of(workflow('cron: "0 2 * * *"'))
    assert rig.writes_of(workflow()) == ["DeleteSchedule"]
    with pytest.raises(ClientError) as gone:
        rig.get()
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # applying it again (already gone) succeeds with no write and creates nothing
    assert rig.writes_of(workflow()) == []
    assert rig.client.list_schedules(GroupName=GROUP)["Schedules"] == []


def test_pausing_disables_the_schedule_and_resuming_enables_it(rig: Rig) -> None:
    text = workflow('cron: "0 2 * * *"')
    rig.writes_of(text)
    rig.scheduler.set_paused("analytics", "sales_daily", True)
    assert rig.get()["State"] == "DISABLED"
    # a re-apply while paused keeps it disabled, with no write
    assert rig.writes_of(text) == []
    assert rig.get()["State"] == "DISABLED"
    rig.scheduler.set_paused("analytics", "sales_daily", False)
    assert rig.get()["State"] == "ENABLED"


def test_a_rate_schedule_starts_on_the_local_loops_grid_and_reapplies_without_writes(
    rig: Rig,
) -> None:
    # GIVEN rate(6 hours) with no start: the local loop fires at epoch + k * 6h
    text = workflow('cron: "rate(6 hours)"')
    rig.writes_of(text)
    start = rig.get()["StartDate"].astimezone(UTC)
    # THEN EventBridge counts its intervals from the next such instant
    assert start.timestamp() % (6 * 3600) == 0
    assert rig.clock.now() < start <= rig.clock.now() + timedelta(hours=6)
    # AND later applies (the next grid point has moved on) leave it alone
    rig.clock.advance(13 * 3600)
    assert rig.writes_of(text) == []
    # AND a StartDate removed by hand, or moved past the next fire time, is put back
    got = rig.get()
    same = {k: got[k] for k in ("ScheduleExpression", "FlexibleTimeWindow", "Target")}
    for moved in ({}, {"StartDate": start + timedelta(days=7)}):
        rig.client.update_schedule(Name=NAME, GroupName=GROUP, **same, **moved)
        assert rig.writes_of(text) == ["UpdateSchedule"]
        assert rig.get()["StartDate"].timestamp() % (6 * 3600) == 0


def test_a_rate_schedule_with_a_past_start_is_anchored_on_that_start(rig: Rig) -> None:
    text = workflow('cron: "rate(1 hour)"\nstart: 2026-01-01T00:30:00\ntimezone: Asia/Kolkata')
    rig.writes_of(text)
    start = rig.get()["StartDate"].astimezone(UTC)
    # 00:30 Kolkata is 19:00 UTC: the grid is on the hour in UTC
    assert (start.minute, start.second) == (0, 0)
    assert start > rig.clock.now()


def test_a_start_that_has_passed_no_longer_matters(rig: Rig) -> None:
    start = rig.clock.now() + timedelta(hours=1)
    text = workflow(f'cron: "0 * * * *"\nstart: {wall(start)}')
    rig.writes_of(text)
    assert rig.get()["StartDate"].timestamp() == start.timestamp()
    # WHEN the start has passed, the stored StartDate is inert: nothing to update
    rig.clock.advance(2 * 3600)
    assert rig.writes_of(text) == []
    # AND a cron schedule applied after its start sends none at all
    rig.writes_of(workflow('cron: "0 * * * *"\nstart: 2026-01-01T00:00:00', name="other"))
    assert "StartDate" not in rig.get("analytics.other")


def test_a_schedule_with_nothing_left_to_fire_has_no_eventbridge_schedule(rig: Rig) -> None:
    # GIVEN a window that ended yesterday: nothing is created
    ended = rig.clock.now() - timedelta(days=1)
    text = workflow(f'cron: "0 * * * *"\nstart: 2026-01-01T00:00:00\nend: {wall(ended)}')
    assert rig.writes_of(text) == []
    assert rig.client.list_schedules(GroupName=GROUP)["Schedules"] == []
    # AND one whose window ends while it exists is deleted by the next apply after the end
    soon = rig.clock.now() + timedelta(hours=3)
    text = workflow(f'cron: "0 * * * *"\nend: {wall(soon)}')
    assert rig.writes_of(text) == ["CreateSchedule"]
    rig.clock.advance(4 * 3600)
    assert rig.writes_of(text) == ["DeleteSchedule"]
    # AND a cron whose years have all passed is refused (issue 9): the schedule stays
    assert rig.writes_of(workflow('cron: "0 * * * *"')) == ["CreateSchedule"]
    with pytest.raises(InvalidInput, match="never fires"):
        rig.writes_of(workflow('cron: "cron(0 0 1 1 ? 2020)"'))
    assert [s["Name"] for s in rig.client.list_schedules(GroupName=GROUP)["Schedules"]] == [NAME]


def test_a_schedule_created_by_a_concurrent_apply_is_updated_not_duplicated(
    rig: Rig, scheduler_client: Any
) -> None:
    # GIVEN another apply creates the schedule between our read and our create
    def racer(**_: Any) -> None:
        scheduler_client.meta.events.unregister("before-call.scheduler.CreateSchedule", racer)
        scheduler_client.create_schedule(
            Name=NAME,
            GroupName=GROUP,
            ScheduleExpression="rate(1 day)",
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": TRIGGER_ARN, "RoleArn": ROLE_ARN},
        )

    scheduler_client.meta.events.register("before-call.scheduler.CreateSchedule", racer)
    # WHEN we apply: our create conflicts, so ours is compared and written as an update
    rig.scheduler.apply(workflow('cron: "0 2 * * *"'))
    assert rig.get()["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert len(rig.client.list_schedules(GroupName=GROUP)["Schedules"]) == 1


def test_an_aws_error_names_the_workflow_and_the_version_stays_stored(
    scheduler_client: Any, store: SqliteStore
) -> None:
    # GIVEN a clock a day behind AWS's: a start "in the future" for us is long past for
    # EventBridge, which rejects a StartDate earlier than five minutes ago
    slow = FakeClock(datetime.now(UTC) - timedelta(days=1))
    schedules = EventBridgeSchedules(
        GROUP, role_arn=ROLE_ARN, target_arn=TRIGGER_ARN, client=scheduler_client, clock=slow
    )
    scheduler = make_scheduler(store, clock=slow, schedules=schedules)
    start = slow.now() + timedelta(hours=1)
    with pytest.raises(ScheduleSyncError) as error:
        scheduler.apply(workflow(f'cron: "0 * * * *"\nstart: {wall(start)}'))
    message = str(error.value)
    assert "analytics/sales_daily" in message
    assert "create" in message
    assert "ValidationException" in message
    assert store.get_version("analytics", "sales_daily").version == 1


def test_schedule_names_are_deterministic_distinct_and_within_eventbridges_limits() -> None:
    assert schedule_name("analytics", "sales_daily") == "analytics.sales_daily"
    long_a = schedule_name("p" * 60, "w" * 60 + "a")
    long_b = schedule_name("p" * 60, "w" * 60 + "b")
    for name in (long_a, long_b, schedule_name("a", "b" * 62)):
        assert len(name) <= 64
        assert all(ch.isalnum() or ch in "-_." for ch in name)
    assert long_a != long_b
    assert long_a == schedule_name("p" * 60, "w" * 60 + "a")
    # the dot separates project and name, which cannot contain one: no two workflows share
    assert schedule_name("a-b", "c") != schedule_name("a", "b-c")


def test_schedules_outside_the_models_syntax_are_refused_before_any_request(rig: Rig) -> None:
    """Bad input never reaches EventBridge: the model refuses it when the workflow loads."""
    from stratoflow.errors import InvalidInput

    with pytest.raises(InvalidInput, match="cron"):
        rig.scheduler.apply(workflow('cron: "0 2 * *"'))
    assert rig.log.calls == []


class Refusing:
    """moto's client, except that one operation is refused with AccessDeniedException (moto
    does not enforce IAM on EventBridge Scheduler, so the refusal is injected at the client
    boundary; every other request goes to moto)."""

    def __init__(self, client: Any, operation: str) -> None:
        self.client = client
        self.operation = operation

    def __getattr__(self, name: str) -> Any:
        if name != self.operation:
            return getattr(self.client, name)

        def refuse(**_: Any) -> Any:
            error = {"Code": "AccessDeniedException", "Message": "not authorized"}
            raise ClientError({"Error": error}, name)

        return refuse


@pytest.mark.parametrize(
    ("operation", "verb", "schedule"),
    [
        ("get_schedule", "read", 'cron: "0 2 * * *"'),
        ("update_schedule", "update", 'cron: "0 3 * * *"'),
        ("delete_schedule", "delete", None),
    ],
)
def test_a_refused_request_is_an_error_naming_the_workflow_and_the_operation(
    rig: Rig, store: SqliteStore, operation: str, verb: str, schedule: str | None
) -> None:
    rig.writes_of(workflow('cron: "0 2 * * *"'))
    rig.schedules.client = Refusing(rig.client, operation)
    with pytest.raises(ScheduleSyncError) as error:
        rig.scheduler.apply(workflow(schedule))
    message = str(error.value)
    assert f"workflow analytics/sales_daily: could not {verb} its EventBridge schedule" in message
    assert "AccessDeniedException: not authorized" in message
    assert rig.get()["ScheduleExpression"] == "cron(0 2 * * ? *)"  # unchanged
