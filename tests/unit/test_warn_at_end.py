"""A task whose timeout only warns (``on_timeout: warn``) and that ends after its deadline
before any deadline check came round (the local loop's next turn, AWS's wake at the deadline
or its reconciler's pass) still says its timeout: once, before its end, as it would have at
the deadline. On the SQLite store and on DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from tests.stores import STORE_KINDS
from tests.unit.test_subworkflow import Harness

from stratoflow.engine import AttemptResult, AttemptStatus, TaskState
from stratoflow.ports import EventSink
from stratoflow.service import Finished

WARNS = """\
name: warns
tasks:
  slow: {type: shell, command: "sleep 700", timeout: 10m, on_timeout: %s}
"""


class Events(EventSink):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, int | None]] = []

    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        if kind.startswith("task."):
            self.seen.append((kind, detail.get("task_id"), detail.get("attempt")))


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    docs = [WARNS % mode for mode in ("warn", "fail")]
    with Harness.opened(request.param, tmp_path, docs[0], docs[1].replace("warns", "fails")) as hh:
        yield hh


def ends_after_its_deadline(h: Harness, workflow: str, minutes: int) -> tuple[str, Events]:
    """``workflow``'s task claimed, then its attempt reported succeeded ``minutes`` later,
    with no turn in between (nothing checked its deadline)."""
    events = Events()
    h.scheduler.events = events
    run, _ = h.scheduler.trigger("default", workflow)
    h.scheduler.step()
    ((key, _),) = list(h.dispatcher.pending.items())
    del h.dispatcher.pending[key]
    h.clock.advance(minutes * 60)
    h.scheduler.on_finished([Finished(*key, AttemptResult(AttemptStatus.SUCCEEDED))])
    return run.id, events


def test_a_warn_task_that_ends_past_its_deadline_unchecked_says_its_timeout(h: Harness) -> None:
    run_id, events = ends_after_its_deadline(h, "warns", 11)
    assert events.seen == [("task.timeout", "slow", 1)]
    assert h.store.get_task(run_id, "slow").state is TaskState.SUCCEEDED
    h.scheduler.step()  # a later check finds no deadline left: said once
    assert events.seen == [("task.timeout", "slow", 1)]


def test_a_warn_task_that_ends_before_its_deadline_says_nothing(h: Harness) -> None:
    run_id, events = ends_after_its_deadline(h, "warns", 9)
    assert events.seen == []
    assert h.store.get_task(run_id, "slow").state is TaskState.SUCCEEDED


def test_a_fail_task_reported_late_is_not_warned(h: Harness) -> None:
    """``fail`` says no ``timeout`` (its executor's report of the end, arriving after the
    deadline, is taken as it is: the state machine enforces the timeout on AWS)."""
    run_id, events = ends_after_its_deadline(h, "fails", 11)
    assert events.seen == []
    assert h.store.get_task(run_id, "slow").state is TaskState.SUCCEEDED
