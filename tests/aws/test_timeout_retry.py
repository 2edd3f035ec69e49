"""A timed-out attempt's retry on AWS waits until the old attempt's work can no longer run
(docs/aws-statemachine.md, "A timeout and the retry"): the Scheduler, driven with a fake
clock, dispatches to the real StepFunctionsDispatcher on moto; the timeout comes as the
state machine's ReportTimedOut message (or the scheduler's own deadline), and attempt 2's
execution must not exist before the bound of its target."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stratoflow.adapters.aws.dispatch import (
    BATCH_KILL_GRACE_SECONDS,
    GONE_MARGIN_SECONDS,
    LAMBDA_INIT_SECONDS,
    LAMBDA_MAX_SECONDS,
    StepFunctionsDispatcher,
    execution_name,
)
from stratoflow.adapters.aws.eks import POD_TERMINATION_GRACE_SECONDS
from stratoflow.adapters.aws.metrics import MeteredDispatcher
from stratoflow.adapters.aws.results import parse_outcome
from stratoflow.adapters.aws.runner import KILL_GRACE_SECONDS, STOP_POLL_SECONDS
from stratoflow.adapters.aws.runtime import RETRY_LEAD, TIMEOUT_GRACE
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import TaskState
from stratoflow.service import Scheduler
from tests.aws.conftest import Stack, attempt_spec, dispatcher_for
from tests.aws.test_dispatch import wait_for
from tests.fakes import FakeClock

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TIMEOUT = 30  # every task's: timeout 30s, one retry, no retry delay


def workflow(task: str) -> str:
    return (
        f"name: flaky\ntasks:\n  job: {{{task}, timeout: {TIMEOUT}s, retries: 1, retry_delay: 0}}\n"
    )


@dataclass
class Run:
    stack: Stack
    store: SqliteStore
    clock: FakeClock
    dispatcher: StepFunctionsDispatcher
    scheduler: Scheduler
    run_id: str

    def started(self, attempt: int) -> bool:
        """Whether attempt ``attempt`` of the task has its execution (was dispatched)."""
        arn = self.dispatcher.execution_arn(self.run_id, "job", attempt)
        try:
            self.stack.sfn.describe_execution(executionArn=arn)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
                raise
            return False
        return True

    def input_of(self, attempt: int) -> dict[str, Any]:
        arn = self.dispatcher.execution_arn(self.run_id, "job", attempt)
        return json.loads(self.stack.sfn.describe_execution(executionArn=arn)["input"])  # type: ignore[no-any-return]

    def report_timed_out(self) -> None:
        """What the state machine's ReportTimedOut state sends, as ``advance`` reads it."""
        body = json.dumps({
            "run_id": self.run_id, "task_id": "job", "attempt": 1, "status": "timed_out",
            "exit_code": None, "error": f"timed out after {TIMEOUT} s", "outputs": {},
            "log": None,
        })  # fmt: skip
        self.scheduler.step([parse_outcome(body, lambda uri: {})])

    def retry_held_until(self, gone_by: datetime) -> None:
        """The retry is up for retry until ``gone_by``, not dispatched a second before it,
        and dispatched then."""
        task = self.store.get_task(self.run_id, "job")
        assert (task.state, task.ready_at) == (TaskState.UP_FOR_RETRY, gone_by)
        self.clock.current = gone_by - timedelta(seconds=1)
        self.scheduler.step()
        assert not self.started(2)
        self.clock.current = gone_by
        self.scheduler.step()
        assert self.started(2)


@pytest.fixture
def start(stack: Stack, tmp_path: Path) -> Iterator[Any]:
    stores: list[SqliteStore] = []

    def start(task: str, *, retry_lead: timedelta = timedelta(0), **kwargs: Any) -> Run:
        store = SqliteStore(tmp_path / f"state{len(stores)}.db")
        stores.append(store)
        clock = FakeClock(T0)
        dispatcher = dispatcher_for(stack, now=clock.now, lambda_client=stack.lambda_, **kwargs)
        # as the AWS runtime builds it (runtime.scheduler): metered, the report's grace
        scheduler = Scheduler(
            store,
            store,
            MeteredDispatcher(dispatcher, _NoMetrics(), clock),
            clock,
            retry_lead=retry_lead,
            timeout_grace=TIMEOUT_GRACE,
        )
        scheduler.apply(workflow(task))
        run, _ = scheduler.trigger("default", "flaky")
        scheduler.step()
        started = Run(stack, store, clock, dispatcher, scheduler, run.id)
        assert started.started(1)
        assert not started.started(2)
        return started

    yield start
    for store in stores:
        store.close()


class _NoMetrics:
    def add_metric(self, name: str, unit: Any, value: float, resolution: Any = None) -> None:
        pass


def test_a_runner_task_s_retry_waits_for_the_runner_to_notice_and_kill_it(start: Any) -> None:
    # GIVEN a shell task on the Lambda runner, 30 s timeout, one retry, no retry delay
    run: Run = start('type: shell, command: "sleep 600"')
    run.clock.advance(TIMEOUT + 1)
    # WHEN its state times out (the runner's task may run on until the runner notices)
    run.report_timed_out()
    # THEN the retry waits for the runner's next poll, its SIGTERM-to-SIGKILL grace and
    # the margin, though the retry delay is 0
    grace = STOP_POLL_SECONDS + KILL_GRACE_SECONDS + GONE_MARGIN_SECONDS
    run.retry_held_until(run.clock.now() + timedelta(seconds=grace))


def test_a_runner_task_the_scheduler_times_out_itself_waits_as_long(
    start: Any, stack: Stack
) -> None:
    # GIVEN a python task on the Lambda runner whose timeout report never came
    calls: list[Any] = []
    stack.lambdas["stratoflow-runner"] = lambda event: calls.append(event) or time.sleep(2)
    run: Run = start('type: python, code: "import time; time.sleep(600)"')
    wait_for(calls)  # in its Task state (moto cannot stop an execution before)
    # WHEN the scheduler ends it at its deadline plus the report's grace (and stops it)
    run.clock.advance(TIMEOUT + TIMEOUT_GRACE.total_seconds() + 1)
    run.scheduler.step()
    # THEN its retry waits for the runner the same way
    grace = STOP_POLL_SECONDS + KILL_GRACE_SECONDS + GONE_MARGIN_SECONDS
    run.retry_held_until(run.clock.now() + timedelta(seconds=grace))


def test_a_lambda_task_s_retry_waits_for_the_function_s_own_timeout(
    start: Any, stack: Stack
) -> None:
    # GIVEN a user function whose own timeout is 120 s, invoked by a task with a 30 s one
    stack.add_function("user-etl", lambda event: {"ok": True})
    stack.lambda_.update_function_configuration(FunctionName="user-etl", Timeout=120)
    run: Run = start("type: lambda, function: user-etl, payload: {day: x}")
    run.clock.advance(TIMEOUT + 1)
    # WHEN the task's state times out (an invocation cannot be stopped)
    run.report_timed_out()
    # THEN the retry waits for the function's own timeout (read from Lambda), a cold
    # start's init and the margin
    grace = 120 + LAMBDA_INIT_SECONDS + GONE_MARGIN_SECONDS
    run.retry_held_until(run.clock.now() + timedelta(seconds=grace))


def invoked_at(run: Run) -> datetime:
    """When the state machine called the user's function, from the execution's history."""
    arn = run.dispatcher.execution_arn(run.run_id, "job", 1)
    events = run.stack.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    [started] = [
        e["timestamp"]
        for e in events
        if e["type"] == "TaskStarted" and e["taskStartedEventDetails"]["resourceType"] == "lambda"
    ]
    return started.astimezone(UTC)  # type: ignore[no-any-return]


@pytest.mark.parametrize("function_timeout", [120, 3])
def test_a_lambda_task_s_function_timeout_counts_from_its_invocation(
    start: Any, stack: Stack, function_timeout: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a function with its own timeout, invoked by a task with a 30 s one, on a clock
    # that reads as AWS's (the history's times are real ones here)
    monkeypatch.setattr(sys.modules[__name__], "T0", datetime.now(UTC).replace(microsecond=0))
    calls: list[Any] = []
    stack.add_function("user-etl", lambda event: calls.append(event) or {"ok": True})
    stack.lambda_.update_function_configuration(FunctionName="user-etl", Timeout=function_timeout)
    run: Run = start("type: lambda, function: user-etl")
    wait_for(calls)
    run.clock.advance(TIMEOUT + 1)
    # WHEN its state times out
    run.report_timed_out()
    # THEN the retry waits until the function's timeout after the invocation's start (plus
    # init and margin), not after the timeout's report; a function whose own timeout has
    # passed since is gone: nothing to wait for
    gone_by = invoked_at(run) + timedelta(
        seconds=function_timeout + LAMBDA_INIT_SECONDS + GONE_MARGIN_SECONDS
    )
    if gone_by > run.clock.now():
        run.retry_held_until(gone_by)
    else:  # the retry (no delay) started in the turn that recorded the timeout
        assert run.started(2)


def test_a_lambda_task_whose_function_cannot_be_read_waits_the_lambda_maximum(
    start: Any, stack: Stack
) -> None:
    # GIVEN a function GetFunctionConfiguration cannot find (or may not read)
    stack.lambdas["not-readable"] = lambda event: {}
    run: Run = start("type: lambda, function: not-readable")
    run.clock.advance(TIMEOUT + 1)
    run.report_timed_out()
    # THEN the retry waits for the longest any invocation may run: 15 minutes
    grace = LAMBDA_MAX_SECONDS + LAMBDA_INIT_SECONDS + GONE_MARGIN_SECONDS
    run.retry_held_until(run.clock.now() + timedelta(seconds=grace))


def test_a_batch_task_s_retry_waits_for_batch_s_own_timeout_and_kill(start: Any) -> None:
    # GIVEN a batch task with a 30 s timeout: Batch ends its job 60 s (its least) after it
    # started, with SIGKILL 30 s after SIGTERM
    run: Run = start('type: batch, image: "example.org/etl:1", command: ["etl"]')
    assert run.input_of(1)["batch"]["attempt_duration_seconds"] == 60
    run.clock.advance(TIMEOUT + 1)
    run.report_timed_out()
    grace = 60 + BATCH_KILL_GRACE_SECONDS + GONE_MARGIN_SECONDS
    run.retry_held_until(run.clock.now() + timedelta(seconds=grace))


def test_a_batch_runner_task_s_retry_waits_for_batch_too(start: Any) -> None:
    run: Run = start('type: shell, command: "sleep 600", runner: batch')
    assert run.input_of(1)["batch"]["attempt_duration_seconds"] == 60
    run.clock.advance(TIMEOUT + 1)
    run.report_timed_out()
    grace = 60 + BATCH_KILL_GRACE_SECONDS + GONE_MARGIN_SECONDS
    run.retry_held_until(run.clock.now() + timedelta(seconds=grace))


def test_a_kubernetes_task_s_retry_waits_for_its_pods_termination_grace(
    start: Any, stack: Stack
) -> None:
    stack.lambdas["stratoflow-eks-launcher"] = lambda event: {}  # the Job "runs" on
    run: Run = start('type: kubernetes, image: busybox, command: ["sleep", "600"]')
    run.clock.advance(TIMEOUT + 1)
    run.report_timed_out()
    grace = POD_TERMINATION_GRACE_SECONDS + GONE_MARGIN_SECONDS
    run.retry_held_until(run.clock.now() + timedelta(seconds=grace))


def test_on_aws_the_retry_s_execution_starts_at_once_and_waits_out_the_bound(
    start: Any,
) -> None:
    # GIVEN the AWS runtime's retry lead: every retry is dispatched at once, its execution's
    # Wait state holding it until its start_at
    run: Run = start('type: shell, command: "sleep 600"', retry_lead=RETRY_LEAD)
    run.clock.advance(TIMEOUT + 1)
    run.report_timed_out()
    # THEN attempt 2 starts no earlier than the runner's bound
    grace = STOP_POLL_SECONDS + KILL_GRACE_SECONDS + GONE_MARGIN_SECONDS
    gone_by = run.clock.now() + timedelta(seconds=grace)
    assert run.started(2)
    assert run.input_of(2)["start_at"] == gone_by.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_batch_job_carries_the_attempt_s_timeout_as_its_own(stack: Stack) -> None:
    """Batch ends the job itself: SubmitJob's timeout is the attempt's (at least 60 s)."""
    dispatcher = dispatcher_for(stack)
    for seconds, expected in ((600, 600), (20, 60)):
        spec = attempt_spec(
            "batch",
            {"image": "example.org/etl:1", "command": ["etl"]},
            task_id=f"t{seconds}",
            timeout=timedelta(seconds=seconds),
        )
        dispatcher.dispatch(spec)
        assert stack.receive()["status"] == "succeeded"
        name = execution_name(spec.run_id, spec.task_id, spec.attempt)
        [summary] = [
            s
            for s in stack.batch.list_jobs(jobQueue=stack.job_queue_arn, jobStatus="SUCCEEDED")[
                "jobSummaryList"
            ]
            if s["jobName"] == name
        ]
        [job] = stack.batch.describe_jobs(jobs=[summary["jobId"]])["jobs"]
        assert job["timeout"] == {"attemptDurationSeconds": expected}


def test_a_lambda_attempt_with_no_standard_execution_reads_the_function_the_workflow_names(
    start: Any, stack: Stack
) -> None:
    """An Express execution cannot be described: the function's name is then the one the
    workflow wrote (no template), and its timeout counts from now."""
    stack.add_function("user-etl", lambda event: {"ok": True})
    stack.lambda_.update_function_configuration(FunctionName="user-etl", Timeout=120)
    run: Run = start("type: lambda, function: user-etl")
    spec = run.scheduler.current_spec("default", "flaky")
    on_express = replace(run.store.get_task(run.run_id, "job"), attempt=7)  # no execution
    grace = run.dispatcher.timed_out_grace(spec, on_express, killed=False)
    assert grace == timedelta(seconds=120 + LAMBDA_INIT_SECONDS + GONE_MARGIN_SECONDS)
