"""A workflow depending on its own previous day, with ``max_active_runs: 1``, on the AWS
runtime in moto: the later date's run holds the only slot and waits for the earlier date's,
which the api function creates queued behind it. The api function's trigger makes the waiting
run look at once: its dependency fails naming the cycle, the run ends, and the queued run
starts (kicked to ``advance``) and succeeds — no reconciler. (It waited for ever.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aws_e2e.harness import Stack, aws_stack
from tests.e2e.test_dependency_self import DAILY, FIRST  # the same workflows, locally

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        built.apply_with_runner(FIRST)
        yield built


def trigger(stack: Stack, day: int) -> str:
    status, body = stack.api(
        "POST", "/workflows/daily/runs", {"logical_date": f"2026-03-{day:02d}T00:00:00Z"}
    )
    assert status in (200, 201), body
    stack.deliver_kicks()
    return str(body["run"]["id"])


def test_the_later_day_holding_the_slot_fails_at_once_and_the_earlier_runs(stack: Stack) -> None:
    assert stack.run_ends(trigger(stack, 2)) == "succeeded"
    stack.apply_with_runner(DAILY)
    later = trigger(stack, 4)
    assert stack.task_state(later, "previous") == "running"  # no run on the 3rd yet
    earlier = trigger(stack, 3)  # queued behind the 4th
    assert stack.run_ends(later, timeout=30) == "failed"
    error = stack.observer.get_task(later, "previous").error
    assert f"run {earlier} of this same workflow is queued and cannot start" in error
    assert "(max_active_runs: 1)" in error
    assert stack.run_ends(earlier) == "succeeded"
    assert "reconciler" not in stack.invocations
