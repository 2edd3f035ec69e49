"""A dependency item that names a task of its upstream (``task:``) is decided when that task
ends — succeeded, failed, or skipped / upstream_failed by a cascade — while the upstream run
is still going: woken through the waits index keyed by upstream workflow, not by its timer
(the clock never moves here and no periodic pass runs after the end). SQLite and DynamoDB."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from tests.fakes import FakeClock, RecordingDispatcher

from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.service import Finished, Scheduler

UPSTREAM = """\
name: sales_daily
tasks:
  extract: {type: shell, command: echo extract}
  publish: {type: shell, depends_on: [extract], command: echo publish}
  slow: {type: shell, command: sleep 60}
"""

REPORT = """\
name: report
tasks:
  wait:
    type: dependency
    all:
      - {workflow: sales_daily, task: TASK, date: today}
    check_interval: 1h
    timeout: 6h
"""

DAY = datetime(2026, 3, 30, 4, tzinfo=UTC)


class H:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.dispatcher = RecordingDispatcher()
        self.clock = FakeClock(DAY + timedelta(minutes=5))
        self.sched = Scheduler(store, store, self.dispatcher, self.clock)
        self.sched.apply(UPSTREAM)

    def start(self, task: str) -> str:
        up, _ = self.sched.trigger("default", "sales_daily", logical_date=DAY, run_id="up")
        self.sched.step()
        self.sched.apply(REPORT.replace("TASK", task))
        self.sched.trigger("default", "report", logical_date=DAY, run_id="rep")
        self.sched.step()
        assert self.wait() is TaskState.RUNNING
        return up.id

    def end(self, task: str, status: AttemptStatus) -> None:
        """Report one upstream attempt's end; no step, no clock move after it."""
        del self.dispatcher.pending[("up", task, 1)]
        self.sched.on_finished([Finished("up", task, 1, AttemptResult(status))])

    def wait(self) -> TaskState:
        return self.store.get_task("rep", "wait").state


@pytest.fixture(params=["sqlite", "dynamodb"])
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[H]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            store: Any = SqliteStore(tmp_path / "state.db")
            stack.callback(store.close)
        else:
            stack.enter_context(mock_aws())
            client = boto3.client(
                "dynamodb", region_name="us-east-1",
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )  # fmt: skip
            create_table(client, "stratoflow-state", stream=False)
            store = DynamoStore("stratoflow-state", client=client)
        yield H(store)


def test_a_named_task_succeeding_decides_the_item_at_once(h: H) -> None:
    up = h.start("extract")
    h.end("extract", AttemptStatus.SUCCEEDED)
    assert h.store.get_run(up).state is RunState.RUNNING  # publish and slow still to end
    assert h.wait() is TaskState.SUCCEEDED


def test_a_named_task_failing_fails_the_item_at_once(h: H) -> None:
    h.start("extract")
    h.end("extract", AttemptStatus.FAILED)
    assert h.store.get_run("up").state is RunState.RUNNING  # slow still runs
    assert h.wait() is TaskState.FAILED


def test_a_named_task_failed_by_a_cascade_fails_the_item_at_once(h: H) -> None:
    h.start("publish")
    h.end("extract", AttemptStatus.FAILED)  # publish: upstream_failed, without running
    assert h.store.get_task("up", "publish").state is TaskState.UPSTREAM_FAILED
    assert h.store.get_run("up").state is RunState.RUNNING
    assert h.wait() is TaskState.FAILED


def test_another_tasks_end_leaves_it_waiting_until_its_own(h: H) -> None:
    h.start("publish")
    h.end("extract", AttemptStatus.SUCCEEDED)
    assert h.wait() is TaskState.RUNNING  # publish not ended yet
    h.sched.advance([], runs=["up"])  # publish is claimed (no periodic pass)
    h.end("publish", AttemptStatus.SUCCEEDED)
    assert h.store.get_run("up").state is RunState.RUNNING
    assert h.wait() is TaskState.SUCCEEDED
