"""The reconciler completes what a dead writer left half done (issue 8, item 4): a journaled
stop of a run too large for one transaction, which died after its commit, is completed by
the next ``reconcile``: every task stopped, and the kills the writer never sent are sent.
DynamoStore on moto, the real Scheduler, the fault raised at the boto3 client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stratoflow.adapters.aws import handlers
from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.engine import Plan, Run, RunState, TaskInstance, TaskState
from stratoflow.service import Scheduler
from tests.fakes import FakeClock, RecordingDispatcher
from tests.unit.test_dynamodb import moto_transactions_without_table_copies

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
WIDE = 150  # more tasks than one TransactWriteItems (100 items) holds


class Injected(Exception):
    """The fault: a Lambda timeout or a lost connection in the middle of a stop."""


class Seconds:
    """The store's lease clock (epoch seconds), moved by the test."""

    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


def seed(store: DynamoStore) -> Run:
    """A running run of WIDE tasks: every fifth RUNNING (its attempt started), every fifth
    QUEUED, the rest WAITING."""
    tasks = []
    for i in range(WIDE):
        task_id = f"t{i:03d}"
        if i % 5 == 0:
            tasks.append(TaskInstance("r", task_id, TaskState.RUNNING, attempt=1, started_at=T0))
        elif i % 5 == 1:
            tasks.append(TaskInstance("r", task_id, TaskState.QUEUED))
        else:
            tasks.append(TaskInstance("r", task_id))
    run = Run(
        id="r", workflow="wide", project="default", version=1, state=RunState.RUNNING,
        params={}, logical_date=T0, created_at=T0, started_at=T0, n_tasks=WIDE,
        n_running=WIDE // 5,
    )  # fmt: skip
    assert store.create_run(run, tasks, None)
    return store.get_run("r")


RUNNING = {("r", f"t{i:03d}", 1) for i in range(0, WIDE, 5)}


@pytest.fixture
def env() -> Iterator[tuple[Scheduler, DynamoStore, RecordingDispatcher, Any, Seconds]]:
    with mock_aws(), moto_transactions_without_table_copies():
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        create_table(client, "state", stream=False)
        seconds = Seconds()
        store = DynamoStore("state", client=client, clock=seconds)
        dispatcher = RecordingDispatcher()
        store.plan_recovered = partial(handlers.kill_stopped, dispatcher)  # as runtime wires it
        scheduler = Scheduler(store, store, dispatcher, FakeClock(T0))
        # the workflow the seeded run pinned: recovery reads it (a dependency task is decided
        # by the scheduler, every other running task is the dispatcher's)
        tasks = "".join(f"  t{i:03d}: {{type: shell, command: 'true'}}\n" for i in range(WIDE))
        scheduler.apply(f"name: wide\ntasks:\n{tasks}")
        yield scheduler, store, dispatcher, client, seconds


def fail_nth(client: Any, operation: str, nth: int) -> None:
    calls = {"n": 0}

    def maybe_fail(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] == nth:
            raise Injected(f"{operation} #{nth} lost (injected by the test)")

    client.meta.events.register(f"before-call.dynamodb.{operation}", maybe_fail)


def crash_a_stop(scheduler: Scheduler, store: DynamoStore, client: Any) -> None:
    """The stop: journal written, committed (TransactWriteItems #1), then the first chunk of
    task writes (#2) fails and the writer dies: its kills are never sent."""
    seed(store)
    fail_nth(client, "TransactWriteItems", 2)
    with pytest.raises(Injected):
        scheduler.stop("r")


def test_a_large_stop_that_died_after_its_commit_is_completed_and_killed_by_reconcile(
    env: tuple[Scheduler, DynamoStore, RecordingDispatcher, Any, Seconds],
) -> None:
    scheduler, store, dispatcher, client, seconds = env
    crash_a_stop(scheduler, store, client)
    assert dispatcher.killed == []
    assert sum(t.state is TaskState.RUNNING for t in store.get_tasks("r")) == len(RUNNING)

    # within the writer's lease the reconciler leaves it alone
    assert handlers.reconcile(scheduler)["plans_completed"] == 0
    assert dispatcher.killed == []

    seconds.now += store.lease.total_seconds() + 1
    result = handlers.reconcile(scheduler)

    assert result["plans_completed"] == 1
    assert store.get_run("r").state is RunState.STOPPED
    assert {t.state for t in store.get_tasks("r")} == {TaskState.STOPPED}
    assert sorted(dispatcher.killed) == sorted(RUNNING)
    # done once: the next pass finds nothing and kills nothing more
    assert handlers.reconcile(scheduler)["plans_completed"] == 0
    assert len(dispatcher.killed) == len(RUNNING)


def test_a_failed_kill_leaves_the_plan_pending_for_the_next_pass(
    env: tuple[Scheduler, DynamoStore, RecordingDispatcher, Any, Seconds],
) -> None:
    scheduler, store, dispatcher, client, seconds = env
    crash_a_stop(scheduler, store, client)
    seconds.now += store.lease.total_seconds() + 1
    kill = dispatcher.kill
    throttled = {"left": 1}

    def flaky_kill(run_id: str, task_id: str, attempt: int) -> None:
        if throttled["left"]:
            throttled["left"] -= 1
            raise ConnectionError("StopExecution throttled")
        kill(run_id, task_id, attempt)

    dispatcher.kill = flaky_kill  # type: ignore[method-assign]
    handlers.reconcile(scheduler)
    assert {t.state for t in store.get_tasks("r")} == {TaskState.STOPPED}
    assert len(dispatcher.killed) == len(RUNNING) - 1  # one failed: the plan stays pending
    assert store.get_run("r").state is RunState.STOPPED
    handlers.reconcile(scheduler)  # completes it again: every kill sent (repeats are no-ops)
    assert set(dispatcher.killed) == RUNNING
    assert handlers.reconcile(scheduler)["plans_completed"] == 0


def test_only_attempts_a_stop_ended_are_killed() -> None:
    dispatcher = RecordingDispatcher()
    started = T0 - timedelta(minutes=1)
    plan = Plan(
        run=None,  # type: ignore[arg-type]
        tasks={
            "ran": TaskInstance("r", "ran", TaskState.STOPPED, attempt=2, started_at=started),
            "waited": TaskInstance("r", "waited", TaskState.STOPPED),  # never started
            "reset": TaskInstance("r", "reset", TaskState.WAITING, attempt=1, started_at=started),
        },
    )
    assert handlers.kill_stopped(dispatcher, plan)
    assert dispatcher.killed == [("r", "ran", 2)]


def test_a_store_without_pending_plans_is_left_alone() -> None:
    assert handlers.complete_pending_plans(object()) == 0


def test_a_repair_that_keeps_failing_does_not_stop_the_others(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from stratoflow.adapters.local.sqlite_store import SqliteStore

    store = SqliteStore(tmp_path / "state.db")
    dispatcher = RecordingDispatcher()
    scheduler = Scheduler(store, store, dispatcher, FakeClock(T0))
    scheduler.apply("name: one\ntasks:\n  a: {type: shell, command: 'true'}\n")
    scheduler.trigger("default", "one")

    def refused() -> int:
        raise RuntimeError("plan chunk cancelled: ValidationError")

    class Unreachable:
        def receive_message(self, **_: Any) -> dict[str, Any]:
            raise ConnectionError("SQS unreachable")

    store.complete_pending_plans = refused  # type: ignore[attr-defined]
    dead = handlers.DeadLetters(Unreachable(), "https://sqs/dlq", lambda _: {})
    result = handlers.reconcile(scheduler, dead_letters=dead)
    assert result["plans_completed"] is None
    assert result["dead_letters"] is None
    assert len(dispatcher.dispatched) == 1  # recover and step still ran: the run started
    assert len([r for r in caplog.records if "the next pass tries again" in r.getMessage()]) == 2
    store.close()
