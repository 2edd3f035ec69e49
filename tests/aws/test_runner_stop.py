"""A stop reaches a running Lambda runner (issue 8, item 4): an Express execution cannot be
stopped, and stopping a Standard one leaves the Lambda it invoked running; so the runner
reads its task's state (DynamoDB, the real store's items, on moto) before it starts and
every few seconds while the task runs, and kills the task once the task moved on.
Tasks really run (bash)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from stratoflow.adapters.aws import runner
from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.engine import Run, RunState, TaskInstance, TaskState
from tests.aws.test_runner import BUCKET, attempt, log_text

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
TABLE = "state"


@pytest.fixture
def env(aws: None) -> tuple[Any, Any, DynamoStore]:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    create_table(ddb, TABLE, stream=False)
    store = DynamoStore(TABLE, client=ddb)
    run = Run(
        id="r1", workflow="wf", project="default", version=1, state=RunState.RUNNING,
        params={}, logical_date=T0, created_at=T0, started_at=T0, n_tasks=1, n_running=1,
    )  # fmt: skip
    running = TaskInstance("r1", "t1", TaskState.RUNNING, attempt=1, started_at=T0)
    assert store.create_run(run, [running], None)
    return s3, ddb, store


def stop_task(store: DynamoStore) -> None:
    task = store.get_task("r1", "t1")
    assert store.put_task(task.with_(state=TaskState.STOPPED), TaskState.RUNNING, 1)


def test_a_running_task_is_killed_soon_after_its_stop(
    env: tuple[Any, Any, DynamoStore],
) -> None:
    s3, ddb, store = env
    reads = {"n": 0}
    ddb.meta.events.register(
        "before-call.dynamodb.GetItem", lambda **_: reads.__setitem__("n", reads["n"] + 1)
    )
    timer = threading.Timer(1.0, stop_task, args=(store,))
    timer.start()
    started = time.monotonic()
    try:
        outcome = runner.run_attempt(
            attempt("shell", {"command": "echo started; sleep 60; echo never"}, timeout=120),
            s3=s3,
            still_wanted=runner.task_watch(ddb, TABLE, attempt("shell", {})),
            poll_seconds=0.3,
        )
    finally:
        timer.cancel()
    elapsed = time.monotonic() - started
    assert outcome["status"] == "stopped"
    assert outcome["error"].startswith("stopped: the task no longer runs this attempt")
    assert elapsed < 20  # not the 60 s of the task: the kill came at a poll after the stop
    assert log_text(s3) == "started\n"  # the log of what ran is kept
    assert reads["n"] >= 2  # before the start, then while it ran


def test_an_attempt_stopped_before_it_started_never_runs(
    env: tuple[Any, Any, DynamoStore],
) -> None:
    """A stop during the retry wait (the execution's Wait state) of an Express attempt."""
    s3, ddb, store = env
    stop_task(store)
    outcome = runner.handle(
        attempt("shell", {"command": "echo ran > /dev/stderr; exit 3"}),
        lambda: 900.0,
        s3=s3,
        dynamodb=ddb,
        table=TABLE,
    )
    assert outcome["status"] == "stopped"
    assert outcome["log"] is None
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0  # nothing ran


def test_a_newer_attempt_means_this_one_is_not_wanted(env: tuple[Any, Any, DynamoStore]) -> None:
    _, ddb, store = env
    watch = runner.task_watch(ddb, TABLE, attempt("shell", {}))
    assert watch is not None
    assert watch() is True
    task = store.get_task("r1", "t1")
    # attempt 1 timed out in the store and attempt 2 was claimed: 1 is no longer wanted
    assert store.put_task(task.with_(attempt=2), TaskState.RUNNING, 1)
    assert watch() is False


def test_a_failed_read_keeps_the_attempt_running(env: tuple[Any, Any, DynamoStore]) -> None:
    s3, ddb, _ = env

    def throttled(**_: Any) -> None:
        raise ConnectionError("throttled (injected by the test)")

    ddb.meta.events.register("before-call.dynamodb.GetItem", throttled)
    outcome = runner.handle(
        attempt("shell", {"command": "sleep 0.5; echo done"}),
        lambda: 900.0,
        s3=s3,
        dynamodb=ddb,
        table=TABLE,
    )
    assert outcome["status"] == "succeeded"


def test_without_a_table_nothing_is_watched() -> None:
    assert runner.task_watch(None, TABLE, attempt("shell", {})) is None
    assert runner.task_watch(object(), "", attempt("shell", {})) is None


def pause_run(store: DynamoStore) -> None:
    run = store.get_run("r1")
    assert store.put_run(run.with_(state=RunState.PAUSED), RunState.RUNNING)


WAITED = {"start_at": "2026-06-01T09:00:30Z"}  # a retry that waited out its delay


def test_a_retry_whose_run_was_paused_during_its_delay_is_held(
    env: tuple[Any, Any, DynamoStore],
) -> None:
    """A pause whose own hold of the retry never happened (its process died after the run's
    write): the task is still RUNNING at this attempt, the run paused; nothing starts."""
    s3, ddb, store = env
    pause_run(store)
    reads: list[str] = []
    ddb.meta.events.register(
        "before-parameter-build.dynamodb.GetItem",
        lambda params, **_: reads.append(params["Key"]["sk"]["S"]),
    )
    outcome = runner.handle(
        attempt("shell", {"command": "echo ran > /dev/stderr; exit 3"}, **WAITED),
        lambda: 900.0,
        s3=s3,
        dynamodb=ddb,
        table=TABLE,
    )
    assert outcome["status"] == "held"
    assert outcome["error"].startswith("not started: its run was paused")
    assert outcome["log"] is None
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0  # nothing ran
    assert reads == ["T#t1", "R"]  # its task (the stop watch), then its run


def test_an_attempt_that_did_not_wait_starts_in_a_paused_run(
    env: tuple[Any, Any, DynamoStore],
) -> None:
    """Dispatched before the pause, with no delay: it runs (a pause dispatches nothing new;
    what was dispatched runs), and its run is not read."""
    s3, ddb, store = env
    pause_run(store)
    outcome = runner.handle(
        attempt("shell", {"command": "echo ran"}), lambda: 900.0, s3=s3, dynamodb=ddb, table=TABLE
    )
    assert outcome["status"] == "succeeded"
    assert runner.run_paused(ddb, TABLE, attempt("shell", {})) is None


def test_a_retry_whose_run_runs_starts(env: tuple[Any, Any, DynamoStore]) -> None:
    s3, ddb, store = env
    outcome = runner.handle(
        attempt("shell", {"command": "echo ran"}, **WAITED),
        lambda: 900.0,
        s3=s3,
        dynamodb=ddb,
        table=TABLE,
    )
    assert outcome["status"] == "succeeded"
    paused = runner.run_paused(ddb, TABLE, attempt("shell", {}, **WAITED))
    assert paused is not None
    assert paused() is False
    pause_run(store)
    assert paused() is True


def test_a_failed_read_of_the_run_starts_the_retry(env: tuple[Any, Any, DynamoStore]) -> None:
    """As the stop watch: a throttled read does not hold the retry (a pause that made its
    own hold has its task moved on: the stop watch sees that)."""
    _, ddb, store = env
    pause_run(store)

    def throttled(**_: Any) -> None:
        raise ConnectionError("throttled (injected by the test)")

    ddb.meta.events.register("before-call.dynamodb.GetItem", throttled)
    paused = runner.run_paused(ddb, TABLE, attempt("shell", {}, **WAITED))
    assert paused is not None
    assert paused() is False


def test_a_redshift_retry_whose_run_is_paused_starts_no_statement() -> None:
    class NoApi:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the Redshift API was called: {name}")

    step = attempt(
        "sql", {"sql": "select 1", "outputs": "none"}, redshift={"max_polls": 3}, **WAITED
    )
    outcome = runner.redshift_step(step, NoApi(), lambda: True, paused=lambda: True)
    assert outcome["status"] == "held"
