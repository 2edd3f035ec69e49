"""The metrics: run counts are counted where the lifecycle events are published (the lifecycle
function), dispatch latency follows the dispatcher's return, which forwards everything unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from aws_lambda_powertools import Metrics

from stratoflow.adapters.aws.lifecycle import LifecyclePublisher
from stratoflow.adapters.aws.metrics import MeteredDispatcher
from stratoflow.engine import RenderedTask, RunState, TaskState
from stratoflow.ports import AttemptSpec
from tests.aws_unit.test_lifecycle import (
    RUN,
    FakeEvents,
    FakeStore,
    record,
    run_item,
    task_item,
)
from tests.aws_unit.test_lifecycle import (
    spec as workflow_spec,
)
from tests.fakes import FakeClock, RecordingDispatcher

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics(namespace="StratoflowTest", service="test")
    m.clear_metrics()
    return m


def recorded(metrics: Metrics) -> dict[str, list[float]]:
    """The metric values Powertools would flush (its EMF document)."""
    doc = metrics.serialize_metric_set()
    names = [d["Name"] for d in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    out: dict[str, list[float]] = {}
    for name in names:
        value = doc[name]
        out[name] = value if isinstance(value, list) else [value]
    return out


def spec(task: str, not_before: datetime | None = None) -> AttemptSpec:
    return AttemptSpec(
        run_id="r1",
        task_id=task,
        attempt=1,
        task=RenderedTask(task_type="shell", fields={"command": "true"}, params={}, env={}),
        logical_date=T0,
        workflow="wf",
        project="default",
        not_before=not_before,
    )


def test_run_events_are_counted_where_they_are_published(metrics: Metrics) -> None:
    """The lifecycle function counts the run events it publishes (a metric and its event
    cannot disagree); the functions that decide turns publish, and count, none."""
    events = FakeEvents()
    publisher = LifecyclePublisher(
        FakeStore(RUN.with_(state=RunState.RUNNING)),  # type: ignore[arg-type]
        events,  # type: ignore[arg-type]
        lambda *_: workflow_spec("fail"),
        metrics=metrics,
    )
    changes = [
        (run_item(RunState.QUEUED), run_item(RunState.RUNNING)),
        (task_item(TaskState.RUNNING), task_item(TaskState.FAILED)),
        (run_item(RunState.RUNNING), run_item(RunState.FAILED)),
        (run_item(RunState.FAILED), run_item(RunState.RUNNING)),  # a rerun
        (run_item(RunState.RUNNING), run_item(RunState.SUCCEEDED)),
    ]
    result = publisher.handle({"Records": [record(old, new) for old, new in changes]})
    assert [k for k, _ in events.sent] == [
        "run.started", "task.failed", "run.failed", "run.started", "run.succeeded",
    ]  # fmt: skip
    assert result.published == 5
    got = recorded(metrics)
    assert got["RunsStarted"] == [1, 1]
    assert got["RunsFailed"] == [1]
    assert got["RunsSucceeded"] == [1]
    assert "RunsStopped" not in got
    json.dumps(metrics.serialize_metric_set())  # a valid EMF document


def test_dispatch_latency_runs_from_the_mark_to_the_dispatchers_return(metrics: Metrics) -> None:
    clock = FakeClock(T0)
    inner = RecordingDispatcher(on_dispatch=lambda _: clock.advance(0.25))
    dispatcher = MeteredDispatcher(inner, metrics, clock)
    dispatcher.dispatch(spec("before_mark"))  # no mark yet: no latency to report
    dispatcher.mark()
    clock.advance(1.5)
    logs = dispatcher.dispatch_many(
        [spec("a"), spec("b"), spec("later", not_before=T0 + timedelta(hours=1))]
    )
    assert logs == [None, None, None]
    assert list(inner.dispatched) == [
        ("r1", "before_mark", 1), ("r1", "a", 1), ("r1", "b", 1), ("r1", "later", 1),
    ]  # fmt: skip
    got = recorded(metrics)
    # 1.5 s waiting + three dispatches of 0.25 s each; the future retry is not counted
    assert got["DispatchLatency"] == [2250.0, 2250.0]
    assert got["AttemptsDispatched"] == [1, 3]


def test_kill_and_recover_are_forwarded(metrics: Metrics) -> None:
    inner = RecordingDispatcher()
    dispatcher = MeteredDispatcher(inner, metrics, FakeClock(T0))
    dispatcher.kill("r1", "a", 2)
    assert inner.killed == [("r1", "a", 2)]
    assert dispatcher.recover([]).results == {}
