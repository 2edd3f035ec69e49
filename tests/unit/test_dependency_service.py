"""Dependency tasks on the scheduler service, on the SQLite store and on DynamoDB (moto), with
a dispatcher the test drives and a clock it moves: a last7Days dependency waits until the
seventh day's upstream run succeeds (woken by that run's end, not by its timer), fails at once
when one of the seven failed, re-checks every check_interval, and times out naming what is
missing; ``any`` succeeds at once; a task of the upstream, another project, a restart."""

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
from stratoflow.engine import AttemptResult, AttemptStatus, Run, RunState, TaskState
from stratoflow.service import Finished, Scheduler

# 03:00: a time every day has in Berlin (02:00 does not exist on 2026-03-29, which a
# dependency on it would then not wait for: test_dependency_dst.py)
UPSTREAM = """\
name: sales_daily
schedule: {cron: "0 3 * * *", timezone: Europe/Berlin}
tasks:
  extract: {type: shell, command: echo extract}
  publish: {type: shell, depends_on: [extract], command: echo publish}
"""

REPORT = """\
name: weekly_report
schedule: {cron: "0 6 * * 1", timezone: Europe/Berlin}
tasks:
  wait:
    type: dependency
    all:
      - {workflow: sales_daily, date: last7Days}
    check_interval: 1m
    timeout: 6h
  report: {type: shell, depends_on: [wait], command: echo report}
"""

BERLIN_MONDAY = datetime(2026, 3, 30, 4, tzinfo=UTC)  # 06:00 CEST, the day after DST began


@dataclass
class H:
    scheduler: Scheduler
    store: SqliteStore | DynamoStore
    dispatcher: RecordingDispatcher
    clock: FakeClock

    def upstream(self, day: int, *, month: int = 3, name: str = "sales_daily") -> Run:
        """A run of the upstream for that day (noon UTC), started (not ended)."""
        logical = datetime(2026, month, day, 12, tzinfo=UTC)
        run, _ = self.scheduler.trigger(
            "default", name, logical_date=logical, run_id=f"up-{month}-{day}-{name}"
        )
        self.scheduler.step()
        return run

    def finish(self, run_id: str, status: AttemptStatus = AttemptStatus.SUCCEEDED) -> None:
        """End every pending attempt of ``run_id`` with ``status`` until the run ends."""
        for _ in range(10):
            pending = [k for k in self.dispatcher.pending if k[0] == run_id]
            if not pending:
                return
            for key in pending:
                del self.dispatcher.pending[key]
                self.scheduler.on_finished([Finished(*key, AttemptResult(status))])
            self.scheduler.step()

    def report(self, text: str = REPORT) -> str:
        self.scheduler.apply(text)
        run, _ = self.scheduler.trigger(
            "default", "weekly_report", logical_date=BERLIN_MONDAY, run_id="report-1"
        )
        self.scheduler.step()
        return run.id

    def wait_state(self, run_id: str = "report-1") -> TaskState:
        return self.store.get_task(run_id, "wait").state

    def report_dispatched(self, run_id: str = "report-1") -> bool:
        return (run_id, "report", 1) in self.dispatcher.dispatched


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[H]:
    dispatcher = RecordingDispatcher()
    clock = FakeClock(BERLIN_MONDAY + timedelta(minutes=5))
    with state_store(request.param, tmp_path) as store:
        scheduler = Scheduler(store, store, dispatcher, clock)
        scheduler.apply(UPSTREAM)
        yield H(scheduler, store, dispatcher, clock)


def test_last7days_waits_for_the_seventh_day_and_is_woken_by_its_end(h: H) -> None:
    for day in range(23, 29):  # Monday 23 .. Saturday 28: six of the seven days
        h.finish(h.upstream(day).id)
    h.report()
    assert h.wait_state() is TaskState.RUNNING  # waiting, in the scheduler
    assert ("report-1", "wait", 1) not in h.dispatcher.dispatched  # never dispatched
    sunday = h.upstream(29)  # the DST day: 23 hours, still one calendar day
    h.clock.advance(120)
    h.scheduler.step()  # its checks see it running: still waiting
    assert h.wait_state() is TaskState.RUNNING
    h.finish(sunday.id)  # its end wakes the dependency at once
    assert h.wait_state() is TaskState.SUCCEEDED
    assert h.report_dispatched()
    outputs = h.store.get_task("report-1", "wait").outputs
    assert outputs["upstream"] == "sales_daily (last7Days) succeeded"


def test_one_failed_day_fails_at_once(h: H) -> None:
    """DolphinScheduler #15229: an AND with a failed upstream waited for ever."""
    h.finish(h.upstream(25).id, AttemptStatus.FAILED)
    h.report()
    task = h.store.get_task("report-1", "wait")
    assert task.state is TaskState.FAILED
    assert task.error is not None
    assert "sales_daily (last7Days) 2026-03-25: run up-3-25-sales_daily failed" in task.error
    assert h.store.get_run("report-1").state is RunState.FAILED
    assert not h.report_dispatched()


def test_a_failure_while_waiting_fails_at_once(h: H) -> None:
    for day in range(23, 28):
        h.finish(h.upstream(day).id)
    h.report()
    assert h.wait_state() is TaskState.RUNNING
    h.finish(h.upstream(28).id, AttemptStatus.FAILED)  # woken by the failed run's end
    assert h.wait_state() is TaskState.FAILED


def test_rechecks_every_check_interval_and_times_out_naming_what_is_missing(h: H) -> None:
    for day in range(23, 28):
        h.finish(h.upstream(day).id)
    h.report()
    deadline = h.store.get_task("report-1", "wait").deadline
    assert deadline == h.clock.now() + timedelta(minutes=1)  # the next check
    h.clock.advance(30 * 60)
    h.scheduler.step()
    task = h.store.get_task("report-1", "wait")
    assert task.state is TaskState.RUNNING
    assert task.deadline == h.clock.now() + timedelta(minutes=1)
    h.clock.advance(6 * 3600)
    h.scheduler.step()
    task = h.store.get_task("report-1", "wait")
    assert task.state is TaskState.FAILED
    assert task.error == (
        "timed out after 6h waiting for: sales_daily (last7Days) 2026-03-28: no run; "
        "2026-03-29: no run"
    )


def test_timeout_0_is_no_timeout_the_dependency_keeps_waiting(h: H) -> None:
    # `timeout: 0` is "no timeout" (README): it failed at the first check, "timed out after 0s"
    h.report(REPORT.replace("timeout: 6h", "timeout: 0"))
    assert h.wait_state() is TaskState.RUNNING
    h.clock.advance(3 * 86400)
    h.scheduler.step()
    task = h.store.get_task("report-1", "wait")
    assert (task.state, task.error) == (TaskState.RUNNING, None)
    assert task.deadline == h.clock.now() + timedelta(minutes=1)  # its next check, no more


def test_a_run_made_without_any_wake_is_found_by_the_timer(h: H) -> None:
    for day in range(23, 30):
        h.upstream(day)  # all seven running
    h.report()
    assert h.wait_state() is TaskState.RUNNING
    # the upstream runs end while the dependency's wake is lost (its waits index emptied)
    h.store.remove_dependency_waits("report-1", "wait", [("default", "sales_daily")])
    for day in range(23, 30):
        h.finish(f"up-3-{day}-sales_daily")
    assert h.wait_state() is TaskState.RUNNING
    h.clock.advance(61)
    h.scheduler.step()
    assert h.wait_state() is TaskState.SUCCEEDED


def test_any_succeeds_at_once_and_a_task_item_reads_the_task(h: H) -> None:
    h.scheduler.apply(UPSTREAM.replace("sales_daily", "orders_daily"))
    h.finish(h.upstream(29).id, AttemptStatus.FAILED)  # sales_daily: extract failed
    text = REPORT.replace(
        "    all:\n      - {workflow: sales_daily, date: last7Days}",
        "    any:\n      - {workflow: sales_daily, task: publish, date: last1Days}\n"
        "      - {workflow: orders_daily, task: extract, date: last1Days}",
    )
    h.report(text)
    assert h.wait_state() is TaskState.RUNNING  # sales failed; orders has no run yet
    orders = h.upstream(29, name="orders_daily")
    key = (orders.id, "extract", 1)
    del h.dispatcher.pending[key]
    h.scheduler.on_finished([Finished(*key, AttemptResult(AttemptStatus.SUCCEEDED))])
    h.scheduler.step()
    assert h.store.get_run(orders.id).state is RunState.RUNNING  # publish still to run
    h.clock.advance(61)  # the task's success does not end a run: the timer finds it
    h.scheduler.step()
    assert h.wait_state() is TaskState.SUCCEEDED


def test_unknown_upstream_workflow_fails_at_once(h: H) -> None:
    """It said "upstream failed: workflow other/sales_daly does not exist": no upstream run
    failed; the workflow it names is missing, and the message says so, naming it and its
    project, and what to do."""
    h.report(REPORT.replace("workflow: sales_daily", "workflow: other/sales_daly"))
    task = h.store.get_task("report-1", "wait")
    assert task.state is TaskState.FAILED
    assert task.error == (
        "the workflow this task depends on does not exist: sales_daly in project other "
        "(apply it first, or correct the name)"
    )


def test_recover_completes_a_first_check_that_a_crash_cut_short(h: H) -> None:
    for day in range(23, 30):
        h.upstream(day)
    h.report()
    h.scheduler.recover()  # a recorded wait is left to its next check
    assert h.wait_state() is TaskState.RUNNING
    # as a crash right after the claim would leave it: the claim's deadline (its timeout),
    # and no wait recorded
    ti = h.store.get_task("report-1", "wait")
    assert ti.started_at is not None
    claimed = ti.with_(deadline=ti.started_at + timedelta(hours=6))
    assert h.store.put_task(claimed, TaskState.RUNNING, ti.attempt)
    h.store.remove_dependency_waits("report-1", "wait", [("default", "sales_daily")])
    for day in range(23, 30):
        h.finish(f"up-3-{day}-sales_daily")
    assert h.wait_state() is TaskState.RUNNING  # nothing woke it
    h.scheduler.recover()  # a restart (AWS: the reconciler's pass) looks again, at once
    assert h.wait_state() is TaskState.SUCCEEDED


def test_stop_ends_a_waiting_dependency(h: H) -> None:
    h.report()
    h.scheduler.stop("report-1")
    assert h.wait_state() is TaskState.STOPPED
    h.finish(h.upstream(29).id)  # a later upstream end finds a stale wait: nothing happens
    assert h.wait_state() is TaskState.STOPPED


def test_a_retry_looks_again_after_its_delay_even_where_retries_are_dispatched_at_once(
    h: H,
) -> None:
    # AWS dispatches every retry at once (retry_lead): the attempt starts when its delay ends
    h.scheduler = Scheduler(h.store, h.store, h.dispatcher, h.clock, retry_lead=timedelta(days=366))
    h.finish(h.upstream(25).id, AttemptStatus.FAILED)
    h.report(
        REPORT.replace(
            "    timeout: 6h\n", "    timeout: 6h\n    retries: 1\n    retry_delay: 10m\n"
        )
    )
    retry = h.store.get_task("report-1", "wait")
    assert retry.state is TaskState.RUNNING  # the first attempt failed; the retry is claimed
    assert retry.attempt == 2
    assert retry.started_at == h.clock.now() + timedelta(minutes=10)
    assert retry.deadline == retry.started_at  # its first look: when its delay is over
    h.clock.advance(5 * 60)
    h.scheduler.step()
    assert h.wait_state() is TaskState.RUNNING  # not before
    h.clock.advance(5 * 60)
    h.scheduler.step()
    ended = h.store.get_task("report-1", "wait")
    assert ended.state is TaskState.FAILED
    assert ended.attempt == 2


def test_a_warn_only_dependency_is_checked_at_its_next_check_not_the_grace_before(h: H) -> None:
    """GIVEN a dependency whose timeout only warns, on a scheduler with a timeout grace (AWS:
    2 min), which files each next check that much before it (its deadline) WHEN the deadline
    has passed but the next check has not come THEN it is not looked at yet: its deadline is
    its next check, not a warn-only timeout (those count at once). (``_time_out`` took the
    warn-only rule for the task's on_timeout and checked it ``timeout_grace`` early.)"""
    grace = timedelta(minutes=2)
    h.scheduler = Scheduler(h.store, h.store, h.dispatcher, h.clock, timeout_grace=grace)
    h.scheduler.apply(UPSTREAM)
    h.report(
        REPORT.replace("    check_interval: 1m\n", "    check_interval: 10m\n").replace(
            "    timeout: 6h\n", "    timeout: 6h\n    on_timeout: warn\n"
        )
    )
    filed = h.store.get_task("report-1", "wait").deadline
    assert filed == h.clock.now() + timedelta(minutes=10) - grace
    h.clock.advance(9 * 60)  # past the deadline, before the next check
    h.scheduler.step()
    assert h.store.get_task("report-1", "wait").deadline == filed  # not checked yet
    h.clock.advance(60)  # the next check
    h.scheduler.step()
    assert h.store.get_task("report-1", "wait").deadline == h.clock.now() + timedelta(minutes=8)
