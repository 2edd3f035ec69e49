"""A workflow that depends on its own previous day (``last1Days`` on itself) with
``max_active_runs: 1``, end to end on the local runtime: when the later day's run holds the
only slot and waits for the earlier day's run queued behind it, the wait can never end, so the
dependency fails at once naming the cycle (it used to wait for ever); the earlier run then
starts and succeeds. The usual order (the earlier day first) still succeeds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.engine import RunState, TaskState

pytestmark = pytest.mark.e2e

DAILY = """
name: daily
max_active_runs: 1
tasks:
  previous:
    type: dependency
    all:
      - {workflow: daily, date: last1Days}
    check_interval: 1h
    timeout: 6h
  load: {type: shell, depends_on: [previous], command: echo load}
"""

FIRST = """
name: daily
max_active_runs: 1
tasks:
  load: {type: shell, command: echo load}
"""


def day(n: int) -> datetime:
    return datetime(2026, 3, n, tzinfo=UTC)


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(tmp_path / "home")
    yield runtime
    runtime.close()


def until(rt: LocalRuntime, done: Callable[[], bool], timeout: float = 30) -> float:
    """Run the loop until ``done()`` (at most ``timeout`` seconds); returns how long it took."""
    start = time.monotonic()
    rt.run_until(lambda: done() or time.monotonic() - start > timeout)
    assert done(), "timed out: the runs are stuck"
    return time.monotonic() - start


def trigger(rt: LocalRuntime, n: int) -> str:
    run, _ = rt.scheduler.trigger("default", "daily", logical_date=day(n), run_id=f"daily-{n}")
    return run.id


def test_the_later_day_waiting_for_the_earlier_one_queued_behind_it_ends(
    rt: LocalRuntime,
) -> None:
    # GIVEN the 2nd of March ran without a dependency (the first cycle), then the workflow
    # depends on its own previous day
    rt.scheduler.apply(FIRST)
    trigger(rt, 2)
    until(rt, lambda: rt.store.get_run("daily-2").state.terminal)
    rt.scheduler.apply(DAILY)
    # WHEN the 4th is triggered (it starts and waits for the 3rd), then the 3rd (queued behind
    # it: max_active_runs is 1)
    later = trigger(rt, 4)
    until(rt, lambda: rt.store.get_task(later, "previous").state is TaskState.RUNNING)
    earlier = trigger(rt, 3)
    # THEN the 4th's dependency fails at once (its next check was an hour away; its timeout
    # six hours), and the 3rd starts once the 4th ended and succeeds (its own previous day,
    # the 2nd, succeeded)
    took = until(rt, lambda: rt.store.get_run(earlier).state.terminal)
    assert took < 20
    assert rt.store.get_run(later).state is RunState.FAILED
    wait = rt.store.get_task(later, "previous")
    assert wait.state is TaskState.FAILED
    assert wait.error is not None
    assert wait.error == (
        "upstream failed: daily (last1Days) 2026-03-03: run daily-3 of this same workflow is "
        "queued and cannot start while this run holds its only active slot (max_active_runs: 1)"
    )
    assert rt.store.get_task(later, "load").state is TaskState.UPSTREAM_FAILED
    assert rt.store.get_run(earlier).state is RunState.SUCCEEDED


def test_the_earlier_day_first_still_succeeds(rt: LocalRuntime) -> None:
    rt.scheduler.apply(FIRST)
    trigger(rt, 2)
    until(rt, lambda: rt.store.get_run("daily-2").state.terminal)
    rt.scheduler.apply(DAILY)
    earlier, later = trigger(rt, 3), trigger(rt, 4)  # the 4th queued behind the 3rd
    until(rt, lambda: rt.store.get_run(later).state.terminal)
    assert rt.store.get_run(earlier).state is RunState.SUCCEEDED
    assert rt.store.get_run(later).state is RunState.SUCCEEDED
