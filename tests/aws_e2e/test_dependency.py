"""Dependency tasks on the AWS runtime, in moto: the api function triggers the runs, the real
state machine runs the upstream's attempts, and the advance function decides the dependency
when it claims it and again when an upstream run's end (a results-queue delivery) wakes it —
no polling: its check_interval is an hour, and no reconciler is called. See harness.py for
what stands in for compute."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.aws_e2e.harness import Stack, aws_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

# 03:00: 02:00 does not exist in Berlin on 2026-03-29, a day a dependency on it would then
# not wait for (tests/unit/test_dependency_dst.py); this test waits for that Sunday's run
DAILY = """
name: daily
schedule: {cron: "0 3 * * *", timezone: Europe/Berlin}
params: {ok: "yes"}
tasks:
  load: {type: shell, command: 'test "{{ params.ok }}" = yes'}
"""
WEEKLY = """
name: weekly
schedule: {cron: "0 6 * * 1", timezone: Europe/Berlin}
tasks:
  wait:
    type: dependency
    all: [{workflow: daily, date: last7Days}]
    check_interval: 1h
    timeout: 6h
  report: {type: shell, depends_on: [wait], command: echo report}
"""
MONDAY = "2026-03-30T04:00:00Z"  # 06:00 in Berlin, the day after DST began


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        built.apply_with_runner(DAILY)
        built.apply_with_runner(WEEKLY)
        yield built


def trigger(stack: Stack, workflow: str, logical_date: str, **params: str) -> str:
    status, body = stack.api(
        "POST", f"/workflows/{workflow}/runs", {"logical_date": logical_date, "params": params}
    )
    assert status in (200, 201), body
    stack.deliver_kicks()
    return str(body["run"]["id"])


def daily(stack: Stack, day: int, **params: str) -> str:
    return trigger(stack, "daily", f"2026-03-{day:02d}T01:00:00Z", **params)


def task(stack: Stack, run_id: str, task_id: str) -> Any:
    return stack.observer.get_task(run_id, task_id)


def test_last7days_waits_for_the_seventh_day_woken_by_its_end(stack: Stack) -> None:
    for day in range(23, 29):  # Monday to Saturday
        assert stack.run_ends(daily(stack, day)) == "succeeded"
    report = trigger(stack, "weekly", MONDAY)
    assert stack.task_state(report, "wait") == "running"  # waiting for Sunday the 29th
    waiting = task(stack, report, "wait")
    assert waiting.deadline is not None  # its next check (the fallback timer)
    # 23:30 UTC on the 29th is already the 30th in Berlin: not the missing day
    assert stack.run_ends(trigger(stack, "daily", "2026-03-29T23:30:00Z")) == "succeeded"
    assert stack.task_state(report, "wait") == "running"
    assert stack.run_ends(daily(stack, 29)) == "succeeded"
    # the last upstream run's end woke it in the same advance delivery; the report then ran
    assert stack.run_ends(report) == "succeeded"
    assert stack.task_state(report, "wait") == "succeeded"
    assert "reconciler" not in stack.invocations


def test_one_failed_day_fails_the_dependency_at_once(stack: Stack) -> None:
    for day in (23, 24):
        assert stack.run_ends(daily(stack, day)) == "succeeded"
    report = trigger(stack, "weekly", MONDAY)
    assert stack.task_state(report, "wait") == "running"
    assert stack.run_ends(daily(stack, 27, ok="no")) == "failed"
    assert stack.run_ends(report) == "failed"
    ended = task(stack, report, "wait")
    assert ended.state.value == "failed"
    assert "daily (last7Days) 2026-03-27: run " in ended.error
    assert "reconciler" not in stack.invocations
