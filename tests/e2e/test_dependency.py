"""Dependency tasks end to end on the local runtime: real task processes and the real loop. A
last7Days dependency waits until the seventh day's upstream run succeeds and is woken by that
run's end (its check_interval is an hour: the timer cannot be what decides); one failed day
fails it at once; a timeout fails it naming what is missing; a restart while it waits loses
nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.engine import RunState, TaskState

pytestmark = pytest.mark.e2e

SALES = """
name: sales_daily
schedule: {cron: "0 2 * * *", timezone: America/New_York}
params: {ok: "yes"}
tasks:
  publish: {type: shell, command: 'test "{{ params.ok }}" = yes'}
"""


def report(*, timeout: str = "6h", check: str = "1h") -> str:
    return f"""
name: weekly_report
schedule: {{cron: "0 6 * * 1", timezone: America/New_York}}
tasks:
  wait:
    type: dependency
    all:
      - {{workflow: sales_daily, task: publish, date: last7Days}}
    check_interval: {check}
    timeout: {timeout}
  write: {{type: shell, depends_on: [wait], command: 'echo "ds={{{{ ds }}}}" >> "$STRATOFLOW_OUTPUT"'}}
"""


# Monday 2026-03-16, 06:00 in New York (EDT since the 8th): the window is the 9th .. the 15th
MONDAY = datetime(2026, 3, 16, 10, tzinfo=UTC)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def rt(home: Path) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(home)
    runtime.scheduler.apply(SALES)
    yield runtime
    runtime.close()


def until(rt: LocalRuntime, done: Callable[[], bool], timeout: float = 60) -> float:
    """Run the loop until ``done()``; returns how long it took."""
    start = time.monotonic()
    rt.run_until(lambda: done() or time.monotonic() - start > timeout)
    assert done(), "timed out"
    return time.monotonic() - start


def sales(rt: LocalRuntime, day: int, ok: str = "yes") -> str:
    # 02:00 in New York on that day (06:00 UTC: EDT; the 8th itself is the DST day)
    logical = datetime(2026, 3, day, 6, tzinfo=UTC)
    run, _ = rt.scheduler.trigger("default", "sales_daily", logical_date=logical, params={"ok": ok})
    return run.id


def ended(rt: LocalRuntime, run_id: str) -> RunState:
    until(rt, lambda: rt.store.get_run(run_id).state.terminal)
    return rt.store.get_run(run_id).state


def start_report(rt: LocalRuntime, text: str) -> str:
    rt.scheduler.apply(text)
    run, _ = rt.scheduler.trigger("default", "weekly_report", logical_date=MONDAY)
    until(rt, lambda: rt.store.get_task(run.id, "wait").state is not TaskState.WAITING)
    return run.id


def wrote(rt: LocalRuntime, run_id: str) -> object:
    return rt.store.get_task(run_id, "write").outputs.get("ds")


def test_last7days_waits_for_the_seventh_day_and_its_end_wakes_it(rt: LocalRuntime) -> None:
    for day in range(9, 15):
        assert ended(rt, sales(rt, day)) is RunState.SUCCEEDED
    run_id = start_report(rt, report())
    rt.run_once(timeout=0.5)
    assert rt.store.get_task(run_id, "wait").state is TaskState.RUNNING
    assert rt.store.get_task(run_id, "write").state is TaskState.WAITING
    seventh = sales(rt, 15)
    took = until(rt, lambda: rt.store.get_run(run_id).state.terminal)
    assert rt.store.get_run(seventh).state is RunState.SUCCEEDED
    assert rt.store.get_run(run_id).state is RunState.SUCCEEDED
    assert took < 30  # woken by the upstream run's end: the next check was an hour away
    assert wrote(rt, run_id) == "2026-03-16"


def test_one_failed_day_fails_it_at_once(rt: LocalRuntime) -> None:
    assert ended(rt, sales(rt, 9)) is RunState.SUCCEEDED
    run_id = start_report(rt, report())
    assert rt.store.get_task(run_id, "wait").state is TaskState.RUNNING
    failed = sales(rt, 12, ok="no")
    took = until(rt, lambda: rt.store.get_run(run_id).state.terminal)
    assert rt.store.get_run(failed).state is RunState.FAILED
    assert took < 30
    wait = rt.store.get_task(run_id, "wait")
    assert wait.state is TaskState.FAILED
    assert wait.error == (
        f"upstream failed: sales_daily (last7Days) 2026-03-12: task publish of run {failed} failed"
    )
    assert rt.store.get_task(run_id, "write").state is TaskState.UPSTREAM_FAILED


def test_timeout_fails_it_naming_what_is_missing(rt: LocalRuntime) -> None:
    for day in (9, 10, 11, 12, 13):
        assert ended(rt, sales(rt, day)) is RunState.SUCCEEDED
    run_id = start_report(rt, report(timeout="2s", check="5s"))
    took = until(rt, lambda: rt.store.get_run(run_id).state.terminal)
    assert 1 < took < 30
    wait = rt.store.get_task(run_id, "wait")
    assert wait.state is TaskState.FAILED
    assert wait.error == (
        "timed out after 2s waiting for: sales_daily (last7Days) 2026-03-14: no run; "
        "2026-03-15: no run"
    )


def test_a_restart_while_it_waits_loses_nothing(home: Path) -> None:
    first = LocalRuntime(home)
    try:
        first.scheduler.apply(SALES)
        for day in range(9, 15):
            assert ended(first, sales(first, day)) is RunState.SUCCEEDED
        run_id = start_report(first, report())
    finally:
        first.close()
    second = LocalRuntime(home)
    try:
        assert second.store.get_task(run_id, "wait").state is TaskState.RUNNING
        seventh = sales(second, 15)
        until(second, lambda: second.store.get_run(run_id).state.terminal)
        assert second.store.get_run(seventh).state is RunState.SUCCEEDED
        assert second.store.get_run(run_id).state is RunState.SUCCEEDED
        assert wrote(second, run_id) == "2026-03-16"
    finally:
        second.close()
