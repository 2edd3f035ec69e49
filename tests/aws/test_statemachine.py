"""The real statemachines/task_attempt.asl.json, executed by moto, one test per target.

Each test dispatches through ``StepFunctionsDispatcher`` (so the input is the one production
builds) and asserts the outcome message that arrives in the results queue. moto's gaps are
filled at the boundary only (tests/aws/conftest.py): Lambda invocations run a Python callable
— for the runner function, the real runner code — and the Batch integration's request and
response names are normalised as Step Functions does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stratoflow.adapters.aws import runner
from stratoflow.adapters.aws.dispatch import execution_name
from tests.aws.conftest import ASL, Stack, Throttled, attempt_spec, dispatcher_for

pytestmark = pytest.mark.slow
NORMAL_PATH_LIMIT = 4  # issue 3: at most 4 state transitions per task attempt
NORMAL_PATH = 3  # Route -> the target's Task state -> its Report state


def real_runner(stack: Stack) -> None:
    """The runner function runs the real runner code (with 60 s of Lambda time left)."""
    stack.lambdas["stratoflow-runner"] = lambda event: runner.handle(
        event, lambda: 60.0, s3=stack.s3
    )


def s3_text(stack: Stack, uri: str) -> str:
    bucket, _, key = uri[5:].partition("/")
    return str(stack.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def test_asl_passes_statelint() -> None:
    statelint = shutil.which("statelint") or str(Path(sys.executable).parent / "statelint")
    done = subprocess.run([statelint, str(ASL)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_task_state_retries_transient_errors_and_reports_its_failures() -> None:
    states = json.loads(ASL.read_text())["States"]
    tasks = {name: s for name, s in states.items() if s["Type"] == "Task"}
    for name, state in tasks.items():
        assert state.get("Retry"), f"{name} has no Retry"
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert "States.ALL" not in retried, f"{name} retries everything, the user's failures too"
        if name.startswith("Report"):
            assert state.get("End") is True, f"{name}: the report must be the last state"
            continue
        assert "States.TaskFailed" not in retried, f"{name} retries the task's own failure"
        # the query ended (ReadSqlResult), or one short call (the Redshift loop's steps: the
        # loop, not the step, keeps the timeout): a short, fixed job
        if name in ("ReadSqlResult", "StartRedshiftStatement", "PollRedshiftStatement"):
            assert state["TimeoutSeconds"] <= 300
            assert [(c["ErrorEquals"], c["Next"]) for c in state["Catch"]] == [
                (["States.ALL"], "ReportFailed")]  # fmt: skip
            continue
        assert state["TimeoutSecondsPath"] == "$.timeout_seconds", name
        assert "States.TaskFailed" not in retried, f"{name} retries the task's own failure"
        catch = [(c["ErrorEquals"], c["Next"]) for c in state["Catch"]]
        if name == "RunKubernetesJob":  # a pod that stopped heartbeating was lost: failed
            assert catch[0] == (["States.HeartbeatTimeout"], "ReportFailed")
            catch = catch[1:]
        assert catch == [(["States.Timeout"], "ReportTimedOut"), (["States.ALL"], "ReportFailed")]


def test_shell_on_the_lambda_runner_succeeds_in_three_transitions(stack: Stack) -> None:
    real_runner(stack)
    dispatcher = dispatcher_for(stack)
    spec = attempt_spec(
        "shell",
        {"command": 'echo "hello $GREETING"; echo rows=42 >> "$STRATOFLOW_OUTPUT"'},
        env={"GREETING": "world"},
        timeout=timedelta(seconds=30),
    )
    log_uri = dispatcher.dispatch(spec)

    message = stack.receive()
    assert message == {
        "run_id": spec.run_id, "task_id": "t1", "attempt": 1, "status": "succeeded",
        "exit_code": 0, "error": None, "outputs": {"rows": "42"}, "log": log_uri,
    }  # fmt: skip
    assert log_uri is not None
    assert s3_text(stack, log_uri) == "hello world\n"
    arn = dispatcher.execution_arn(spec.run_id, spec.task_id, spec.attempt)
    assert stack.wait_execution(arn)["status"] == "SUCCEEDED"
    path = stack.states_entered(arn)
    assert path == ["Route", "RunOnLambdaRunner", "ReportOutcome"]


def test_shell_failure_is_an_outcome_not_a_retried_error(stack: Stack) -> None:
    calls: list[str] = []

    def counting(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(event["key"])
        return runner.handle(event, lambda: 60.0, s3=stack.s3)

    stack.lambdas["stratoflow-runner"] = counting
    dispatcher_for(stack).dispatch(attempt_spec("shell", {"command": "echo oops >&2; exit 3"}))

    message = stack.receive()
    assert message["status"] == "failed"
    assert message["exit_code"] == 3
    assert "exit code 3" in message["error"]
    assert "oops" in message["error"]
    assert len(calls) == 1  # the engine decides about retries, not the state machine


def test_python_on_the_lambda_runner_returns_its_outputs(stack: Stack) -> None:
    real_runner(stack)
    spec = attempt_spec(
        "python", {"code": "outputs['doubled'] = params['rows'] * 2"}, params={"rows": 21}
    )
    dispatcher_for(stack).dispatch(spec)
    message = stack.receive()
    assert (message["status"], message["outputs"]) == ("succeeded", {"doubled": 42})


def test_user_lambda_success_reports_the_function_result(stack: Stack) -> None:
    seen: list[Any] = []

    def user_function(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(event)
        return {"total": event["a"] + event["b"]}

    stack.add_function("sum-it", user_function)
    spec = attempt_spec("lambda", {"function": "sum-it", "payload": {"a": 2, "b": 3}})
    assert dispatcher_for(stack).dispatch(spec) is None  # its log is the function's own

    message = stack.receive()
    assert message["status"] == "succeeded"
    assert message["outputs"] == {"total": 5}
    assert seen == [{"a": 2, "b": 3}]  # the payload, not the attempt input


def test_user_lambda_function_error_fails_the_attempt_once(stack: Stack) -> None:
    calls = []

    def failing(event: dict[str, Any]) -> Any:
        calls.append(event)
        raise ValueError("no rows for 2026-01-01")

    stack.add_function("load", failing)
    dispatcher_for(stack).dispatch(attempt_spec("lambda", {"function": "load", "payload": {}}))

    message = stack.receive()
    assert message["status"] == "failed"
    assert message["error"].startswith("ValueError: ")
    assert "no rows for 2026-01-01" in message["error"]
    assert len(calls) == 1


def test_a_throttled_invoke_is_retried_by_the_state_machine(stack: Stack) -> None:
    calls = []

    def throttled_once(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(event)
        if len(calls) == 1:
            raise Throttled
        return {"ok": True}

    stack.add_function("busy", throttled_once)
    dispatcher_for(stack).dispatch(attempt_spec("lambda", {"function": "busy", "payload": {}}))

    message = stack.receive()
    assert (message["status"], message["outputs"]) == ("succeeded", {"ok": True})
    assert len(calls) == 2


def test_a_runner_that_cannot_load_its_layer_yet_is_invoked_again(stack: Stack) -> None:
    """A runner moved to the layer's architecture gets its code (architecture) and then its
    configuration (the layer) in two updates; an invocation between them cannot import its
    handler: Lambda answers Runtime.ImportModuleError, before any of the task ran. The state
    machine invokes it again (backed off) instead of failing the attempt."""
    ImportModuleError = type("Runtime.ImportModuleError", (Exception,), {})  # Lambda's name
    ran: list[str] = []

    def moving(event: dict[str, Any]) -> Any:
        if not ran:
            ran.append("import failed")
            raise ImportModuleError("Unable to import module: pydantic_core (wrong ELF class)")
        ran.append("ran")
        return runner.handle(event, lambda: 60.0, s3=stack.s3)

    stack.lambdas["stratoflow-runner"] = moving
    spec = attempt_spec("shell", {"command": "echo once"}, timeout=timedelta(seconds=60))
    dispatcher_for(stack).dispatch(spec)

    message = stack.receive()
    assert (message["status"], message["exit_code"]) == ("succeeded", 0), message
    assert ran == ["import failed", "ran"]  # the task's command ran once


def test_batch_task_runs_the_user_image_and_succeeds(stack: Stack) -> None:
    dispatcher = dispatcher_for(stack)
    spec = attempt_spec(
        "batch",
        {"image": "example.org/etl:1.2", "command": ["etl", "--day", "2026-01-01"], "vcpus": 0.5,
         "memory": 1024},
        env={"MODE": "full"},
    )  # fmt: skip
    dispatcher.dispatch(spec)

    message = stack.receive()
    assert message["status"] == "succeeded"
    assert message["outputs"] is None  # a user image writes no outputs object
    jobs = stack.batch.list_jobs(jobQueue=stack.job_queue_arn, jobStatus="SUCCEEDED")
    [summary] = jobs["jobSummaryList"]
    assert summary["jobName"] == execution_name(spec.run_id, spec.task_id, spec.attempt)
    [job] = stack.batch.describe_jobs(jobs=[summary["jobId"]])["jobs"]
    [definition] = stack.batch.describe_job_definitions(jobDefinitions=[job["jobDefinition"]])[
        "jobDefinitions"
    ]
    assert definition["containerProperties"]["image"] == "example.org/etl:1.2"
    assert definition["jobDefinitionName"].startswith("stratoflow-")
    assert job["container"]["command"] == ["etl", "--day", "2026-01-01"]
    env = {e["name"]: e["value"] for e in job["container"]["environment"]}
    assert env["MODE"] == "full"
    assert env["STRATOFLOW_TASK_ID"] == "t1"
    arn = dispatcher.execution_arn(spec.run_id, spec.task_id, spec.attempt)
    stack.wait_execution(arn)
    assert stack.states_entered(arn) == ["Route", "RunBatchJob", "ReportBatchSucceeded"]


def test_batch_job_failure_reports_failed(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")  # moto's simple Batch: jobs fail
    dispatcher_for(stack).dispatch(
        attempt_spec("batch", {"image": "example.org/etl:1.2", "command": "exit 1"})
    )
    message = stack.receive()
    assert message["status"] == "failed"
    assert message["error"].startswith("States.TaskFailed: ")
    assert '"FAILED"' in message["error"]  # the cause is the job's description


def test_python_on_the_batch_runner_reports_its_outputs_object(stack: Stack) -> None:
    """The job is moto's (it does not run a container); the container's part is played by
    ``runner.run_batch`` given the environment the job was submitted with."""
    spec = attempt_spec(
        "python", {"code": "outputs['n'] = 7", "runner": "batch"}, timeout=timedelta(hours=2)
    )
    dispatcher_for(stack).dispatch(spec)
    message = stack.receive()
    assert message["status"] == "succeeded"
    # the outputs object's location, in the field ``advance`` reads it from
    assert (
        message["outputs_uri"]
        == f"s3://{stack.bucket}/outputs/{spec.project}/{spec.run_id}/t1/1.json"
    )
    assert message["outputs"] is None

    [summary] = stack.batch.list_jobs(jobQueue=stack.job_queue_arn, jobStatus="SUCCEEDED")[
        "jobSummaryList"
    ]
    [job] = stack.batch.describe_jobs(jobs=[summary["jobId"]])["jobs"]
    # the project's copy of the runner's job definition (its role is the project's; this
    # stack's identities give none): the runner's image and command, registered once
    (used,) = stack.batch.describe_job_definitions(jobDefinitions=[job["jobDefinition"]])[
        "jobDefinitions"
    ]
    (template,) = stack.batch.describe_job_definitions(
        jobDefinitions=[stack.runner_job_definition_arn]
    )["jobDefinitions"]
    assert used["jobDefinitionName"].startswith("stratoflow-")
    assert used["jobDefinitionArn"] != template["jobDefinitionArn"]
    assert used["containerProperties"]["image"] == template["containerProperties"]["image"]
    assert job["container"]["command"] == ["python", "-m", "stratoflow.adapters.aws.runner"]
    env = {e["name"]: e["value"] for e in job["container"]["environment"]}
    assert runner.run_batch(env, [], stack.s3) == 0
    assert json.loads(s3_text(stack, message["outputs_uri"])) == {"n": 7}


def test_a_target_that_outlives_its_timeout_reports_timed_out(stack: Stack) -> None:
    """TimeoutSecondsPath: the user's function takes longer than the task's timeout."""
    stack.add_function("slow", lambda event: time.sleep(4) or {})
    started = time.monotonic()
    dispatcher_for(stack).dispatch(
        attempt_spec("lambda", {"function": "slow", "payload": {}}, timeout=timedelta(seconds=1))
    )
    message = stack.receive()
    assert message["status"] == "timed_out"
    assert message["error"] == "timed out after 1 s"
    assert time.monotonic() - started < 30


def launched_events(stack: Stack) -> list[dict[str, Any]]:
    """The EKS launcher (helper C3's function) records its invocations and returns."""
    launched: list[dict[str, Any]] = []
    stack.lambdas["stratoflow-eks-launcher"] = lambda event: launched.append(event) or {}
    return launched


def first(events: list[dict[str, Any]], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events, "the launcher was never invoked"
    return events[0]


def waited_on(stack: Stack, token: str, timeout: float = 30.0) -> str:
    """``token`` once its state waits on it. The launcher is invoked before the state sets up
    its heartbeat wait, and on moto an outcome sent in between is lost (the wait then sees no
    heartbeat and runs to the heartbeat timeout; Step Functions has no such gap). A heartbeat
    is refused (InvalidToken) until the wait is set up: send one until it is taken."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            stack.sfn.send_task_heartbeat(taskToken=token)
            return token
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "InvalidToken" or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_kubernetes_outcome_comes_back_through_the_task_token(stack: Stack) -> None:
    launched = launched_events(stack)
    spec = attempt_spec("kubernetes", {"image": "busybox", "command": ["true"]})
    dispatcher_for(stack).dispatch(spec)

    event = first(launched)
    assert event["input"]["key"] == spec.key  # the payload C3's launcher reads
    assert event["input"]["heartbeat_seconds"] < event["input"]["timeout_seconds"]
    # what the pod's reporter sends (docs/aws-eks.md)
    output = {"status": "succeeded", "exit_code": 0, "outputs": {"pods": "1"}}
    stack.sfn.send_task_success(
        taskToken=waited_on(stack, event["task_token"]), output=json.dumps(output)
    )

    message = stack.receive()
    assert message == {
        "run_id": spec.run_id, "task_id": "t1", "attempt": 1, "status": "succeeded",
        "exit_code": 0, "error": None, "outputs": {"pods": "1"}, "log": None,
    }  # fmt: skip


def test_kubernetes_job_failure_through_the_task_token(stack: Stack) -> None:
    launched = launched_events(stack)
    dispatcher_for(stack).dispatch(attempt_spec("kubernetes", {"image": "busybox", "command": []}))
    token = waited_on(stack, first(launched)["task_token"])
    stack.sfn.send_task_failure(
        taskToken=token, error="Stratoflow.TaskFailed", cause='{"exit_code": 2}'
    )
    message = stack.receive()
    # moto's SendTaskFailure drops ``cause`` (its response handler passes only ``error``),
    # so the cause part reads "null" here; Step Functions passes it through
    assert message["status"] == "failed"
    assert message["error"].startswith("Stratoflow.TaskFailed: ")


def test_a_pod_that_never_heartbeats_ends_long_before_its_timeout(stack: Stack) -> None:
    """HeartbeatSecondsPath: no heartbeat from the pod's reporter (the pod never started)
    ends the attempt at the heartbeat, not at the 10-minute timeout. moto names a missed
    heartbeat ``States.Timeout`` (so it reports timed_out); Step Functions names it
    ``States.HeartbeatTimeout``, which the state catches first and reports as failed."""
    launched = launched_events(stack)
    started = time.monotonic()
    dispatcher_for(stack, heartbeat_seconds=2).dispatch(
        attempt_spec("kubernetes", {"image": "busybox", "command": []},
                     timeout=timedelta(minutes=10))
    )  # fmt: skip
    first(launched)
    message = stack.receive()
    assert message["status"] == "timed_out"
    assert time.monotonic() - started < 30


def test_a_retry_waits_until_not_before(stack: Stack) -> None:
    """moto's Wait truncates the time left to whole seconds (``int(delta.total_seconds())``)
    where Step Functions waits until the timestamp, so the check allows moto's second."""
    real_runner(stack)
    dispatched = datetime.now(UTC)
    not_before = dispatched + timedelta(seconds=2)
    ran_at: list[datetime] = []

    def timed(event: dict[str, Any]) -> dict[str, Any]:
        ran_at.append(datetime.now(UTC))
        return runner.handle(event, lambda: 60.0, s3=stack.s3)

    stack.lambdas["stratoflow-runner"] = timed
    dispatcher = dispatcher_for(stack)
    spec = attempt_spec("shell", {"command": "true"}, attempt=2, not_before=not_before)
    dispatcher.dispatch(spec)
    message = stack.receive()
    assert (message["attempt"], message["status"]) == (2, "succeeded")
    assert ran_at[0] >= not_before - timedelta(seconds=1)
    assert ran_at[0] - dispatched >= timedelta(seconds=1)
    # the one path with a Wait state: still within the target
    arn = dispatcher.execution_arn(spec.run_id, spec.task_id, spec.attempt)
    stack.wait_execution(arn)
    path = stack.states_entered(arn)
    assert path == ["Route", "Wait_RunOnLambdaRunner", "RunOnLambdaRunner", "ReportOutcome"]
    assert len(path) == NORMAL_PATH_LIMIT


def test_every_target_has_its_wait_state_and_both_routes() -> None:
    """Route sends a start_at-carrying input through Wait_<target>, any other straight to
    <target>: one rule of each per target, and every Wait leads to its target."""
    states = json.loads(ASL.read_text())["States"]
    route = states["Route"]
    assert json.loads(ASL.read_text())["StartAt"] == "Route"
    targets = {c["Next"] for c in route["Choices"] if not c["Next"].startswith("Wait_")}
    targets.add(route["Default"])
    waits = {c["Next"] for c in route["Choices"] if c["Next"].startswith("Wait_")}
    assert waits == {f"Wait_{t}" for t in targets}
    for target in targets:
        wait = states[f"Wait_{target}"]
        assert (wait["Type"], wait["TimestampPath"], wait["Next"]) == (
            "Wait", "$.start_at", target
        )  # fmt: skip


def test_dispatch_many_starts_every_attempt_once(stack: Stack) -> None:
    real_runner(stack)
    specs = [attempt_spec("shell", {"command": f"echo {i}"}, task_id=f"t{i}") for i in range(5)]
    dispatcher = dispatcher_for(stack)
    logs = dispatcher.dispatch_many(specs)
    dispatcher.dispatch_many(specs)  # a repeated dispatch starts nothing more
    assert logs == [
        f"s3://{stack.bucket}/logs/{s.project}/{s.run_id}/{s.task_id}/1.log" for s in specs
    ]
    got = sorted(stack.receive()["task_id"] for _ in specs)
    assert got == [s.task_id for s in specs]
    executions = stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    assert len(executions) == len(specs)


def test_concurrent_dispatch_of_one_attempt_starts_one_execution(stack: Stack) -> None:
    real_runner(stack)
    spec = attempt_spec("shell", {"command": "echo once"})
    threads = [
        threading.Thread(target=dispatcher_for(stack).dispatch, args=(spec,)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stack.receive()
    executions = stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    assert len(executions) == 1
    time.sleep(0.5)
    assert stack.sqs.receive_message(QueueUrl=stack.queue_url).get("Messages") is None
