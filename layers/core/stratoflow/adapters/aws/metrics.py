"""The functions' CloudWatch metrics, in one place (every handler wraps its ports with these).

- ``RunsStarted`` / ``RunsSucceeded`` / ``RunsFailed`` / ``RunsStopped``: counted by the
  lifecycle function as it publishes the run events (``RUN_METRICS``;
  ``stratoflow.adapters.aws.lifecycle``), so a metric and its event can never disagree.
- ``DispatchLatency`` (milliseconds): from the moment a task became ready in this invocation
  (the claim happens inside the same call) to the dispatcher's start request returning
  (``MeteredDispatcher`` wraps the Dispatcher). A retry dispatched ahead of its delay (its
  ``not_before`` is in the future) is not counted: the state machine waits that out on purpose.
- ``AttemptsDispatched``: attempts handed to the dispatcher.

``Metrics`` is the small interface of Powertools' ``Metrics`` this module needs, so tests can
pass a recorder and the handlers the real thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from stratoflow.engine import TaskInstance
from stratoflow.model import Task, WorkflowSpec
from stratoflow.ports import AttemptSpec, Clock, Dispatcher, Recovery

RUN_METRICS: Final[Mapping[str, str]] = {
    "run.started": "RunsStarted",
    "run.succeeded": "RunsSucceeded",
    "run.failed": "RunsFailed",
    "run.stopped": "RunsStopped",
}
DISPATCH_LATENCY: Final = "DispatchLatency"
ATTEMPTS_DISPATCHED: Final = "AttemptsDispatched"


class Metrics(Protocol):
    def add_metric(self, name: str, unit: Any, value: float, resolution: Any = ...) -> None: ...


class MeteredDispatcher(Dispatcher):
    """Forwards to the real dispatcher and measures how long ready tasks waited for it.

    ``ready_since`` is set by the handler when its invocation begins (``mark``): every task
    it dispatches became ready no earlier than that, within the same call."""

    def __init__(self, inner: Dispatcher, metrics: Metrics, clock: Clock) -> None:
        self.inner = inner
        self.metrics = metrics
        self.clock = clock
        self.ready_since: datetime | None = None

    def mark(self) -> None:
        self.ready_since = self.clock.now()

    def dispatch(self, spec: AttemptSpec) -> str | None:
        return self.dispatch_many([spec])[0]

    def dispatch_many(self, specs: Sequence[AttemptSpec]) -> list[str | None]:
        logs = self.inner.dispatch_many(specs)
        now = self.clock.now()
        if specs:
            self.metrics.add_metric(name=ATTEMPTS_DISPATCHED, unit="Count", value=len(specs))
        since = self.ready_since
        if since is not None:
            for spec in specs:
                if spec.not_before is not None and spec.not_before > now:
                    continue  # a retry waiting out its delay in the state machine
                waited = max((now - since).total_seconds(), 0.0) * 1000
                self.metrics.add_metric(name=DISPATCH_LATENCY, unit="Milliseconds", value=waited)
        return logs

    def refusal(self, spec: AttemptSpec) -> str | None:
        return self.inner.refusal(spec)

    def looks_before_start(self, task: Task) -> bool:
        return self.inner.looks_before_start(task)

    def kill(self, run_id: str, task_id: str, attempt: int) -> None:
        self.inner.kill(run_id, task_id, attempt)

    def kill_grace(self) -> timedelta:
        return self.inner.kill_grace()

    def timed_out_grace(self, spec: WorkflowSpec, ti: TaskInstance, *, killed: bool) -> timedelta:
        # the inner dispatcher's, or a timed-out attempt's retry would not wait for its work
        return self.inner.timed_out_grace(spec, ti, killed=killed)

    def recover(self, running: Sequence[TaskInstance]) -> Recovery:
        return self.inner.recover(running)
