"""A workflow that depends on its own earlier runs (``last1Days`` on itself), with
``max_active_runs``, on the scheduler service over SQLite and DynamoDB (moto): a run holding
every slot while it waits for a run queued behind it fails at once naming the cycle (it waited
for ever), and the queued run then starts; with two slots, when both are held by runs waiting
on a queued run or on each other, the one waiting on the queued run fails; a slot held by a run
that can end by itself breaks no rule (the waiting goes on and ends well); and the pure rule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store
from tests.unit.test_dependency_service import H as ServiceHarness

from stratoflow.engine import RunState, TaskState
from stratoflow.engine.dependency import SlotHolder, queued_behind
from stratoflow.service import Scheduler


def daily(limit: int, *, depends: bool = True, mode: str = "all") -> str:
    wait = f"""
  previous:
    type: dependency
    {mode}:
      - {{workflow: daily, date: last1Days}}
    check_interval: 1h
  load: {{type: shell, depends_on: [previous], command: echo load}}
"""
    plain = "\n  load: {type: shell, command: echo load}\n"
    return f"name: daily\nmax_active_runs: {limit}\ntasks:{wait if depends else plain}"


class H(ServiceHarness):
    """The dependency service's harness (its ``finish``), with this workflow's runs by day."""

    def trigger(self, day: int) -> str:
        run, _ = self.scheduler.trigger(
            "default", "daily", logical_date=datetime(2026, 3, day, tzinfo=UTC), run_id=f"d{day}"
        )
        self.scheduler.step()
        return run.id

    def state(self, run_id: str) -> RunState:
        return self.store.get_run(run_id).state

    def wait(self, run_id: str) -> TaskState:
        return self.store.get_task(run_id, "previous").state

    def error(self, run_id: str) -> str | None:
        return self.store.get_task(run_id, "previous").error


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[H]:
    dispatcher = RecordingDispatcher()
    clock = FakeClock(datetime(2026, 3, 10, tzinfo=UTC))
    with state_store(request.param, tmp_path) as store:
        yield H(Scheduler(store, store, dispatcher, clock), store, dispatcher, clock)


def test_one_slot_held_by_the_run_waiting_for_the_queued_one_fails_at_once(h: H) -> None:
    # GIVEN the 1st ran (before the workflow depended on itself)
    h.scheduler.apply(daily(1, depends=False))
    h.finish(h.trigger(1))
    h.scheduler.apply(daily(1))
    # WHEN the 3rd starts (waiting: no run on the 2nd) and the 2nd is queued behind it
    assert h.wait(h.trigger(3)) is TaskState.RUNNING
    h.trigger(2)
    # THEN the 3rd's wait fails at once (its next check is an hour away), naming the cycle
    assert h.wait("d3") is TaskState.FAILED
    assert h.error("d3") == (
        "upstream failed: daily (last1Days) 2026-03-02: run d2 of this same workflow is queued "
        "and cannot start while this run holds its only active slot (max_active_runs: 1)"
    )
    assert h.state("d3") is RunState.FAILED
    # AND the 2nd starts in its slot and succeeds (the 1st succeeded)
    assert h.wait("d2") is TaskState.SUCCEEDED
    h.finish("d2")
    assert h.state("d2") is RunState.SUCCEEDED


def test_two_slots_held_by_runs_waiting_on_a_queued_one_and_on_each_other(h: H) -> None:
    h.scheduler.apply(daily(2, depends=False))
    h.finish(h.trigger(1))
    h.scheduler.apply(daily(2))
    h.trigger(4)  # waits for the 3rd (no run yet)
    h.trigger(3)  # waits for the 2nd (no run yet); the 4th then waits for it (running)
    assert (h.wait("d4"), h.wait("d3")) == (TaskState.RUNNING, TaskState.RUNNING)
    h.trigger(2)  # queued: both slots are taken
    # the 3rd waits for the queued 2nd, the 4th for the 3rd: no slot can ever free
    assert h.wait("d3") is TaskState.FAILED
    assert h.error("d3") == (
        "upstream failed: daily (last1Days) 2026-03-02: run d2 of this same workflow is queued "
        "and cannot start while this run and d4 hold every active slot (max_active_runs: 2), "
        "each waiting for a queued run of it or for one another"
    )
    # the 4th's upstream failed; the 2nd started and succeeds
    assert h.wait("d4") is TaskState.FAILED
    assert h.error("d4") == "upstream failed: daily (last1Days) 2026-03-03: run d3 failed"
    h.finish("d2")
    assert h.state("d2") is RunState.SUCCEEDED


def test_a_slot_held_by_a_run_that_can_end_keeps_the_wait(h: H) -> None:
    h.scheduler.apply(daily(2, depends=False))
    first = h.trigger(1)  # running, waits for nothing: it will end and free its slot
    h.scheduler.apply(daily(2))
    h.trigger(3)
    h.trigger(2)  # queued behind the 1st and the 3rd
    h.clock.advance(3600)
    h.scheduler.step()  # the 3rd's next check
    assert h.wait("d3") is TaskState.RUNNING
    assert h.state("d2") is RunState.QUEUED
    h.finish(first)  # the 2nd starts, succeeds, and the 3rd's wait then succeeds
    h.finish("d2")
    assert h.state("d2") is RunState.SUCCEEDED
    assert h.wait("d3") is TaskState.SUCCEEDED
    h.finish("d3")
    assert h.state("d3") is RunState.SUCCEEDED


def test_queued_runs_started_latest_first_fail_at_the_first_check(h: H) -> None:
    """No wake needed: the 3rd, started before the 2nd (queued first), fails when its
    dependency is claimed."""
    h.scheduler.apply(daily(1, depends=False))
    first = h.trigger(1)  # holds the slot
    h.scheduler.apply(daily(1))
    h.trigger(3)
    h.clock.advance(1)  # created later (DynamoDB orders the queue by creation time)
    h.trigger(2)
    assert (h.state("d3"), h.state("d2")) == (RunState.QUEUED, RunState.QUEUED)
    h.finish(first)  # the 3rd starts (it was queued first) and its first check decides
    assert h.wait("d3") is TaskState.FAILED
    assert "run d2 of this same workflow is queued" in (h.error("d3") or "")
    h.finish("d2")
    assert h.state("d2") is RunState.SUCCEEDED


def test_the_earlier_run_first_still_succeeds(h: H) -> None:
    h.scheduler.apply(daily(1, depends=False))
    h.finish(h.trigger(1))
    h.scheduler.apply(daily(1))
    h.trigger(2)
    h.trigger(3)  # queued behind the 2nd, which waits for nothing queued
    assert h.state("d3") is RunState.QUEUED
    h.finish("d2")
    h.finish("d3")
    assert (h.state("d2"), h.state("d3")) == (RunState.SUCCEEDED, RunState.SUCCEEDED)


def test_any_fails_the_item_only(h: H) -> None:
    """In ``any``, the item that waits for the queued run has failed; the task goes on
    waiting for the others (here none: it fails, naming it)."""
    h.scheduler.apply(daily(1, depends=False))
    h.finish(h.trigger(1))
    h.scheduler.apply(daily(1, mode="any"))
    h.trigger(3)
    h.trigger(2)
    assert h.wait("d3") is TaskState.FAILED
    assert "run d2 of this same workflow is queued and cannot start" in (h.error("d3") or "")


def test_queued_behind_rule() -> None:
    me = SlotHolder("a", frozenset({"q"}))
    assert queued_behind("a", "q", None, [me]) is None  # no limit: it will start
    assert queued_behind("a", "q", 2, [me]) is None  # a free slot
    assert queued_behind("a", "q", 1, [me]) is not None
    # another slot's run waits for nothing of the workflow (or is paused): it may end
    assert queued_behind("a", "q", 2, [me, SlotHolder("b", frozenset())]) is None
    # it waits for a run that is itself held, or for a queued run: held too
    assert queued_behind("a", "q", 2, [me, SlotHolder("b", frozenset({"a"}))]) is not None
    assert queued_behind("a", "q", 2, [me, SlotHolder("b", frozenset({"q2"}))]) is not None
    # a chain ending at a run that may end: not certain
    holders = [me, SlotHolder("b", frozenset({"c"})), SlotHolder("c", frozenset())]
    assert queued_behind("a", "q", 3, holders) is None
    # the deciding run must hold a slot (another workflow's run never does)
    assert queued_behind("x", "q", 1, [SlotHolder("b", frozenset({"q"}))]) is None


def test_the_current_limit_decides_whether_a_queued_run_can_ever_start(h: H) -> None:
    # GIVEN one slot, held by the 10th (waiting for the 9th: no run yet, one may come), and
    # the 3rd and the 2nd queued behind it (made from that version)
    h.scheduler.apply(daily(1))
    for day in (10, 3, 2):
        h.clock.advance(1)  # created in this order: the queue's order on both stores
        h.trigger(day)
    assert [h.state(r) for r in ("d10", "d3", "d2")] == [
        RunState.RUNNING, RunState.QUEUED, RunState.QUEUED,
    ]  # fmt: skip
    # WHEN a new version allows 2: the 3rd starts and waits for the 2nd, still queued
    h.scheduler.apply(daily(2))
    h.scheduler.step()
    assert h.state("d3") is RunState.RUNNING
    # THEN the 2nd can start once the 10th ends (the workflow's limit is 2 now, whatever the
    # 2nd's version said), so the 3rd waits rather than failing on a limit of 1
    assert h.wait("d3") is TaskState.RUNNING, h.error("d3")
    assert h.state("d2") is RunState.QUEUED
    h.scheduler.stop("d10")
    assert h.state("d2") is RunState.RUNNING
