"""A dependency task's ``on_timeout``, as for any task (DolphinScheduler's timeout strategies,
which its DEPENDENT task has too, and which the importer maps to ``on_timeout``): ``fail``
ends it at its timeout; ``warn_fail`` says ``timeout`` first; ``warn`` says ``timeout`` once and
keeps waiting until the outcome is certain. It failed at its timeout whatever it said, and no
``timeout`` event (no alert) ever came of it. On the SQLite store and on DynamoDB (moto); the
AWS lifecycle stream derives the same events from the changes (tests/aws_unit/test_lifecycle)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from tests.unit.test_dependency_service import REPORT, H, h  # noqa: F401 - the fixture

from stratoflow.engine import AttemptStatus, RunState, TaskState
from stratoflow.ports import EventSink


class Events(EventSink):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, int | None]] = []

    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        if kind.startswith("task.") and detail["run_id"] == "report-1":
            self.seen.append((kind, detail.get("task_id"), detail.get("attempt")))


def waiting_report(h: H, on_timeout: str) -> Events:  # noqa: F811
    events = Events()
    h.scheduler.events = events
    for day in range(23, 28):  # five of the seven days
        h.finish(h.upstream(day).id)
    h.report(REPORT.replace("timeout: 6h\n", f"timeout: 6h\n    on_timeout: {on_timeout}\n"))
    assert h.wait_state() is TaskState.RUNNING
    return events


def test_warn_fail_says_timeout_then_fails(h: H) -> None:  # noqa: F811
    events = waiting_report(h, "warn_fail")
    h.clock.advance(6 * 3600)
    h.scheduler.step()
    task = h.store.get_task("report-1", "wait")
    assert task.state is TaskState.FAILED
    assert task.error is not None
    assert task.error.startswith("timed out after 6h waiting for: sales_daily (last7Days)")
    assert events.seen == [("task.timeout", "wait", 1), ("task.failed", "wait", 1)]
    (attempt,) = h.store.list_attempts("report-1", "wait")
    assert attempt.state == AttemptStatus.TIMED_OUT.value


def test_fail_fails_at_its_timeout_without_a_timeout_event(h: H) -> None:  # noqa: F811
    events = waiting_report(h, "fail")
    h.clock.advance(6 * 3600)
    h.scheduler.step()
    assert h.wait_state() is TaskState.FAILED
    assert events.seen == [("task.failed", "wait", 1)]


def test_warn_says_timeout_once_and_keeps_waiting_until_the_upstream_decides(h: H) -> None:  # noqa: F811
    events = waiting_report(h, "warn")
    h.clock.advance(6 * 3600)
    h.scheduler.step()
    task = h.store.get_task("report-1", "wait")
    assert task.state is TaskState.RUNNING  # warned, still waiting
    assert task.error is not None
    assert task.error.startswith("timed out after 6h waiting for: sales_daily (last7Days)")
    assert task.error.endswith("(on_timeout: warn: still waiting)")
    assert task.deadline == h.clock.now() + timedelta(minutes=1)  # its checks go on
    assert events.seen == [("task.timeout", "wait", 1)]
    for _ in range(3):  # later checks warn no more
        h.clock.advance(61)
        h.scheduler.step()
    assert events.seen == [("task.timeout", "wait", 1)]
    assert h.wait_state() is TaskState.RUNNING
    h.finish(h.upstream(28).id)
    h.finish(h.upstream(29).id)  # the seventh day's end wakes it: certain now
    task = h.store.get_task("report-1", "wait")
    assert (task.state, task.error) == (TaskState.SUCCEEDED, None)
    assert h.report_dispatched()
    assert events.seen == [("task.timeout", "wait", 1)]


def test_warn_still_fails_when_an_upstream_fails_after_the_warning(h: H) -> None:  # noqa: F811
    events = waiting_report(h, "warn")
    h.clock.advance(6 * 3600 + 60)
    h.scheduler.step()
    h.finish(h.upstream(28).id, AttemptStatus.FAILED)
    task = h.store.get_task("report-1", "wait")
    assert task.state is TaskState.FAILED
    assert task.error is not None
    assert task.error.startswith("upstream failed: sales_daily (last7Days) 2026-03-28")
    assert h.store.get_run("report-1").state is RunState.FAILED
    assert events.seen == [("task.timeout", "wait", 1), ("task.failed", "wait", 1)]
