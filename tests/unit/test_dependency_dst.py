"""A dependency on a scheduled workflow does not wait for a run its schedule never makes: the
day a spring-forward gap swallows its fire time (02:30 in Paris on 2026-03-29: EventBridge, and
so Stratoflow, skips it), the second pass of the hour a fall-back repeats (fired once). The
interval is named in the task's output; a run made there by hand still decides it; an upstream
without a schedule is waited for on every day, as before. On the SQLite store and on DynamoDB
(moto): the decision is the scheduler's, the same for both runtimes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store

from stratoflow.adapters.aws.dynamodb import DynamoStore
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.model import Schedule, fires_within
from stratoflow.service import Finished, Scheduler

DST_DAILY = """\
name: dst_daily
schedule: {cron: "30 2 * * *", timezone: Europe/Paris}
tasks:
  load: {type: shell, command: echo load}
"""
DST_HOURLY = """\
name: dst_hourly
schedule: {cron: "0 * * * *", timezone: Europe/Paris}
tasks:
  load: {type: shell, command: echo load}
"""


def waiter(name: str, item: str, cron: str = "0 6 * * 1") -> str:
    return f"""\
name: {name}
schedule: {{cron: "{cron}", timezone: Europe/Paris}}
tasks:
  wait:
    type: dependency
    all:
      - {item}
    check_interval: 5s
    timeout: 15s
  report: {{type: shell, depends_on: [wait], command: echo report}}
"""


WK = waiter("wk", "{workflow: dst_daily, date: last7Days}")
HOURS = waiter("hours", "{workflow: dst_hourly, date: last3Hours}", cron="0 * * * *")
MONDAY = datetime(2026, 3, 30, 4, tzinfo=UTC)  # 06:00 in Paris, the day after DST began
FALL_BACK_4AM = datetime(2026, 10, 25, 3, tzinfo=UTC)  # 04:00 CET, after 02:00 came twice


@dataclass
class H:
    scheduler: Scheduler
    store: SqliteStore | DynamoStore
    dispatcher: RecordingDispatcher
    clock: FakeClock

    def upstream(
        self, name: str, logical: datetime, status: AttemptStatus = AttemptStatus.SUCCEEDED
    ) -> str:
        """A run of ``name`` at ``logical``, ended with ``status``."""
        run, _ = self.scheduler.trigger("default", name, logical_date=logical)
        self.scheduler.step()
        for _ in range(10):
            pending = [k for k in self.dispatcher.pending if k[0] == run.id]
            if not pending:
                break
            for key in pending:
                del self.dispatcher.pending[key]
                self.scheduler.on_finished([Finished(*key, AttemptResult(status))])
            self.scheduler.step()
        return run.id

    def daily(self, day: int, status: AttemptStatus = AttemptStatus.SUCCEEDED) -> str:
        """dst_daily's run of 02:30 in Paris that day (CET before the 29th, CEST after)."""
        return self.upstream("dst_daily", datetime(2026, 3, day, 1, 30, tzinfo=UTC), status)

    def waiting(self, text: str, logical: datetime) -> str:
        self.scheduler.apply(text)
        name = text.split("\n", 1)[0].removeprefix("name: ")
        run, _ = self.scheduler.trigger("default", name, logical_date=logical)
        self.scheduler.step()
        return run.id


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[H]:
    dispatcher = RecordingDispatcher()
    clock = FakeClock(MONDAY + timedelta(minutes=5))
    with state_store(request.param, tmp_path) as store:
        scheduler = Scheduler(store, store, dispatcher, clock)
        scheduler.apply(DST_DAILY)
        scheduler.apply(DST_HOURLY)
        yield H(scheduler, store, dispatcher, clock)


def test_the_day_a_dst_gap_skips_is_not_waited_for(h: H) -> None:
    for day in range(23, 29):  # the backfill of the 23rd..29th made these six: not the 29th
        h.daily(day)
    run_id = h.waiting(WK, MONDAY)
    wait = h.store.get_task(run_id, "wait")
    assert (wait.state, wait.error) == (TaskState.SUCCEEDED, None)
    assert wait.outputs["upstream"] == (
        "dst_daily (last7Days) succeeded; not waited for, its schedule has no fire time in: "
        "2026-03-29"
    )
    assert (run_id, "report", 1) in h.dispatcher.dispatched


def test_a_missing_day_the_schedule_fires_is_still_waited_for_and_named(h: H) -> None:
    for day in range(23, 28):  # no run of the 28th
        h.daily(day)
    run_id = h.waiting(WK, MONDAY)
    assert h.store.get_task(run_id, "wait").state is TaskState.RUNNING
    h.clock.advance(16)
    h.scheduler.step()
    wait = h.store.get_task(run_id, "wait")
    assert wait.state is TaskState.FAILED
    assert wait.error == "timed out after 15s waiting for: dst_daily (last7Days) 2026-03-28: no run"


def test_a_run_made_by_hand_on_the_skipped_day_still_decides_it(h: H) -> None:
    for day in range(23, 29):
        h.daily(day)
    by_hand = h.upstream("dst_daily", datetime(2026, 3, 29, 12, tzinfo=UTC), AttemptStatus.FAILED)
    run_id = h.waiting(WK, MONDAY)
    wait = h.store.get_task(run_id, "wait")
    assert wait.state is TaskState.FAILED
    assert wait.error == f"upstream failed: dst_daily (last7Days) 2026-03-29: run {by_hand} failed"


def test_an_upstream_without_a_schedule_is_waited_for_every_day(h: H) -> None:
    h.scheduler.apply(
        DST_DAILY.replace('schedule: {cron: "30 2 * * *", timezone: Europe/Paris}\n', "")
    )
    for day in range(23, 29):
        h.daily(day)
    run_id = h.waiting(WK, MONDAY)
    assert h.store.get_task(run_id, "wait").state is TaskState.RUNNING
    h.clock.advance(16)
    h.scheduler.step()
    wait = h.store.get_task(run_id, "wait")
    assert wait.state is TaskState.FAILED
    assert wait.error == "timed out after 15s waiting for: dst_daily (last7Days) 2026-03-29: no run"


def test_the_hour_a_fall_back_repeats_is_waited_for_once(h: H) -> None:
    h.clock.current = FALL_BACK_4AM + timedelta(minutes=5)  # those dates have come
    # 02:00 CEST (00:00 UTC) fired; 02:00 CET (01:00 UTC) did not: fired once; 03:00 CET
    for hour in (0, 2):
        h.upstream("dst_hourly", datetime(2026, 10, 25, hour, tzinfo=UTC))
    run_id = h.waiting(HOURS, FALL_BACK_4AM)
    wait = h.store.get_task(run_id, "wait")
    assert (wait.state, wait.error) == (TaskState.SUCCEEDED, None)
    assert wait.outputs["upstream"] == (
        "dst_hourly (last3Hours) succeeded; not waited for, its schedule has no fire time in: "
        "2026-10-25T02:00+01:00"
    )
    assert h.store.get_run(run_id).state is RunState.RUNNING  # report dispatched, not ended


@pytest.mark.parametrize(
    ("cron", "tz", "start", "fires"),
    [
        ("30 2 * * *", "Europe/Paris", datetime(2026, 3, 28, 23, tzinfo=UTC), False),  # gap
        ("30 2 * * *", "Europe/Paris", datetime(2026, 3, 27, 23, tzinfo=UTC), True),
        ("0 * * * *", "Europe/Paris", datetime(2026, 10, 25, 1, tzinfo=UTC), False),  # repeat
        ("0 * * * *", "Europe/Paris", datetime(2026, 10, 25, 0, tzinfo=UTC), True),
        ("0 2 * * 1-5", "UTC", datetime(2026, 3, 28, tzinfo=UTC), False),  # a Saturday
        ("rate(2 hours)", "UTC", datetime(2025, 1, 1, 1, tzinfo=UTC), True),  # before start
        ("rate(2 hours)", "UTC", datetime(2025, 1, 1, 2, tzinfo=UTC), False),  # off its grid
    ],
)
def test_fires_within(cron: str, tz: str, start: datetime, fires: bool) -> None:
    """Over the hour (or day, for the daily ones) from ``start``: the expression's own times,
    whatever the window (a backfill makes runs before ``start``); rate keeps its grid."""
    schedule = Schedule(cron=cron, timezone=tz, start=datetime(2026, 1, 1, 1))
    span = timedelta(hours=1) if cron.startswith(("0 *", "rate")) else timedelta(days=1)
    assert fires_within(schedule, start, start + span) is fires
