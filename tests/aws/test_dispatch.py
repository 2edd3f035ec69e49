"""StepFunctionsDispatcher on moto: names, the execution input, kill and recover."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratoflow.adapters.aws.dispatch import (
    CONTAINER_MAX_SECONDS,
    INLINE_INPUT_LIMIT,
    LAMBDA_MAX_SECONDS,
    StepFunctionsDispatcher,
    execution_name,
)
from stratoflow.adapters.aws.projects import PodIdentity, TaskIdentity
from stratoflow.engine import AttemptStatus, TaskInstance, TaskState
from tests.aws.conftest import REGION, SharedIdentity, Stack, attempt_spec, dispatcher_for

NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
ids = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=200
)
attempts = st.integers(min_value=1, max_value=10**12)


# ------------------------------------------------------------------ execution names
@given(ids, ids, attempts)
def test_execution_name_is_a_valid_deterministic_name(
    run_id: str, task_id: str, attempt: int
) -> None:
    name = execution_name(run_id, task_id, attempt)
    assert NAME.match(name), name
    assert name == execution_name(run_id, task_id, attempt)


@settings(max_examples=300)
@given(st.tuples(ids, ids, attempts), st.tuples(ids, ids, attempts))
def test_different_attempts_get_different_names(
    a: tuple[str, str, int], b: tuple[str, str, int]
) -> None:
    if a != b:
        assert execution_name(*a) != execution_name(*b)


def test_names_that_read_alike_stay_apart_and_short_ones_stay_readable() -> None:
    assert execution_name("a-b", "c", 1) != execution_name("a", "b-c", 1)
    assert execution_name("a\0b", "c", 1) != execution_name("a", "b\0c", 1)
    long_run = "x" * 300
    assert execution_name(long_run + "1", "t", 1) != execution_name(long_run + "2", "t", 1)
    name = execution_name("sales_daily-20260101T020000-a1b2c3", "extract", 2)
    assert name.startswith("sales_daily-20260101T020000-a1b2c3-extract-2-")


# ------------------------------------------------------------------ the input
def started_input(stack: Stack, dispatcher: StepFunctionsDispatcher, spec: Any) -> dict[str, Any]:
    arn = dispatcher.execution_arn(spec.run_id, spec.task_id, spec.attempt)
    return json.loads(stack.sfn.describe_execution(executionArn=arn)["input"])  # type: ignore[no-any-return]


def test_input_follows_the_contract(stack: Stack) -> None:
    stack.lambdas["stratoflow-eks-launcher"] = lambda event: {}
    now = datetime(2026, 11, 21, 2, 0, 0, 250000, tzinfo=UTC)
    dispatcher = dispatcher_for(stack, now=lambda: now)
    spec = attempt_spec(
        "kubernetes",
        {"image": "busybox", "command": ["true"], "namespace": "jobs"},
        params={"day": "2026-11-20"},
        env={"DB_PASSWORD_SECRET": "arn:aws:secretsmanager:us-east-1:1:secret:db"},
        timeout=timedelta(minutes=10),
    )
    dispatcher.dispatch(spec)
    doc = started_input(stack, dispatcher, spec)
    assert doc == {
        "run_id": spec.run_id, "task_id": "t1", "attempt": 1, "key": spec.key,
        "type": "kubernetes", "runner": None, "not_before": None,  # no start_at: no wait
        "timeout_seconds": 600, "heartbeat_seconds": 599,
        "task": {"image": "busybox", "command": ["true"], "namespace": "jobs",
                 "params": {"day": "2026-11-20"},
                 "env": {"DB_PASSWORD_SECRET": "arn:aws:secretsmanager:us-east-1:1:secret:db"}},
        "context": {"workflow": "wf", "project": "default",
                    "logical_date": "2026-01-01T00:00:00+00:00"},
        "log": None,
        "outputs_uri": None,
        "service_account": "stratoflow-reporter",
    }  # fmt: skip


def test_input_never_carries_the_dispatchers_own_environment(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOME_SECRET_VALUE", "hunter2")
    stack.lambdas["stratoflow-runner"] = lambda event: {
        "status": "succeeded", "exit_code": 0, "error": None, "outputs": {}, "log": None
    }  # fmt: skip
    dispatcher = dispatcher_for(stack)
    spec = attempt_spec("python", {"code": "pass", "runner": "batch"})
    dispatcher.dispatch(spec)
    raw = stack.sfn.describe_execution(
        executionArn=dispatcher.execution_arn(spec.run_id, spec.task_id, 1)
    )["input"]
    assert "hunter2" not in raw
    assert "testing" not in raw  # the AWS credentials of the fixture


@pytest.mark.parametrize(
    ("kind", "fields", "timeout", "expected"),
    [
        ("shell", {"command": "true"}, None, LAMBDA_MAX_SECONDS),
        ("shell", {"command": "true"}, timedelta(hours=3), LAMBDA_MAX_SECONDS),
        ("shell", {"command": "true", "runner": "batch"}, timedelta(hours=3), 3 * 3600),
        ("http", {"url": "http://x"}, timedelta(seconds=30), 30),
        ("lambda", {"function": "f", "payload": {}}, None, LAMBDA_MAX_SECONDS),
        ("batch", {"image": "i", "command": "true"}, None, CONTAINER_MAX_SECONDS),
        ("kubernetes", {"image": "i", "command": []}, timedelta(milliseconds=10), 2),
    ],
)
def test_timeout_is_the_tasks_within_the_targets_limit(
    stack: Stack, kind: str, fields: dict[str, Any], timeout: timedelta | None, expected: int
) -> None:
    doc = dispatcher_for(stack).build_input(attempt_spec(kind, fields, timeout=timeout))
    assert doc["timeout_seconds"] == expected


def test_not_before_becomes_start_at(stack: Stack) -> None:
    now = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    later = datetime(2026, 11, 21, 3, 0, 0, 250000, tzinfo=UTC)
    doc = dispatcher_for(stack, now=lambda: now).build_input(
        attempt_spec("shell", {"command": "x"}, not_before=later)
    )
    assert doc["not_before"] == doc["start_at"] == "2026-11-21T03:00:01Z"  # never early


def test_a_past_not_before_sets_no_start_at(stack: Stack) -> None:
    """start_at is what sends the attempt through a Wait state: only a delay sets it."""
    now = datetime(2026, 11, 21, 4, 0, tzinfo=UTC)
    earlier = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    doc = dispatcher_for(stack, now=lambda: now).build_input(
        attempt_spec("shell", {"command": "x"}, not_before=earlier)
    )
    assert doc["not_before"] == "2026-11-21T03:00:00Z"
    assert "start_at" not in doc


def test_a_large_batch_runner_input_goes_through_s3(stack: Stack) -> None:
    spec = attempt_spec("shell", {"command": "echo " + "x" * INLINE_INPUT_LIMIT, "runner": "batch"})
    doc = dispatcher_for(stack).build_input(spec)
    env = {e["Name"]: e["Value"] for e in doc["batch"]["container_overrides"]["Environment"]}
    assert "STRATOFLOW_ATTEMPT_INPUT" not in env
    bucket, _, key = env["STRATOFLOW_ATTEMPT_URI"][5:].partition("/")
    stored = json.loads(stack.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert stored["task"]["command"] == spec.task.fields["command"]


def test_one_job_definition_per_image(stack: Stack) -> None:
    dispatcher = dispatcher_for(stack)
    first = dispatcher.job_definition_for("example.org/a:1")
    assert dispatcher.job_definition_for("example.org/a:1") == first
    # a new container (cold start) finds it by name instead of registering another
    assert dispatcher_for(stack).job_definition_for("example.org/a:1") == first
    assert dispatcher.job_definition_for("example.org/b:1") != first


class PerProject:
    """Two projects, each with a runner function, a role and a service account of its own
    (``irsa``: the stack has an OIDC issuer, so the role goes with the service account)."""

    def __init__(self, *, irsa: bool = False) -> None:
        self.irsa = irsa
        self.pods: list[tuple[str, str | None]] = []

    def ensure(self, project: str) -> TaskIdentity:
        return TaskIdentity(
            runner_function=f"sf-r-{project}",
            role_arn=f"arn:aws:iam::123456789012:role/stratoflow/sf/sf-p-{project}",
        )

    def ensure_pods(self, project: str, namespace: str | None) -> PodIdentity:
        self.pods.append((project, namespace))
        role = self.ensure(project).role_arn if self.irsa else None
        return PodIdentity(service_account=f"stratoflow-{project}", role_arn=role)


def test_each_projects_attempts_run_as_that_project(stack: Stack) -> None:
    """Issue 9 item 5: a project's shell task names its project's runner function, its Batch
    jobs carry its role, and its objects are under its own prefixes."""
    dispatcher = dispatcher_for(stack, identities=PerProject())
    for project in ("analytics", "billing"):
        shell = replace(attempt_spec("shell", {"command": "true"}), project=project)
        doc = dispatcher.build_input(shell)
        assert doc["runner_function"] == f"sf-r-{project}"
        assert doc["log"] == f"s3://{stack.bucket}/logs/{project}/{shell.run_id}/t1/1.log"
        on_batch = replace(
            attempt_spec("python", {"callable": "m:f", "runner": "batch"}), project=project
        )
        doc = dispatcher.build_input(on_batch)
        assert doc["outputs_uri"].startswith(f"s3://{stack.bucket}/outputs/{project}/")
        batch = replace(attempt_spec("batch", {"image": "example.org/a:1", "command": ["true"]}),
                        project=project)  # fmt: skip
        for job in (doc["batch"], dispatcher.build_input(batch)["batch"]):
            (found,) = stack.batch.describe_job_definitions(jobDefinitions=[job["job_definition"]])[
                "jobDefinitions"
            ]
            role = found["containerProperties"]["jobRoleArn"]
            assert role == PerProject().ensure(project).role_arn
    # one job definition per (image, project): four in all, never shared between projects
    names = {
        d["jobDefinitionName"]
        for d in stack.batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
        if d["jobDefinitionName"].startswith("stratoflow-")
        and d["jobDefinitionName"] != "stratoflow-runner"
    }
    assert len(names) == 4


@pytest.mark.parametrize("irsa", [False, True])
def test_each_projects_pods_run_as_that_projects_service_account(stack: Stack, irsa: bool) -> None:
    """Issue 9 item 5: a kubernetes attempt names its project's service account (whose pod
    identity the dispatcher makes ready, in the task's namespace or the stack's), and with
    IRSA the project's role for the launcher to annotate it with."""
    identities = PerProject(irsa=irsa)
    dispatcher = dispatcher_for(stack, identities=identities)
    for project, fields in (("analytics", {"namespace": "etl"}), ("billing", {})):
        spec = replace(
            attempt_spec("kubernetes", {"image": "i", "command": ["true"], **fields}),
            project=project,
        )
        doc = dispatcher.build_input(spec)
        assert doc["service_account"] == f"stratoflow-{project}"
        if irsa:
            assert doc["role_arn"] == identities.ensure(project).role_arn
        else:
            assert "role_arn" not in doc
        assert doc["log"] is None  # the pod's logs, as before
    assert identities.pods == [("analytics", "etl"), ("billing", None)]


@pytest.mark.parametrize(
    ("kind", "fields", "needs"),
    [
        ("switch", {}, "cannot be dispatched"),
        ("shell", {"command": "x"}, "STRATOFLOW_BUCKET"),
    ],
)
def test_what_cannot_be_dispatched_is_refused_clearly(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, kind: str, fields: dict[str, Any], needs: str
) -> None:
    monkeypatch.delenv("STRATOFLOW_BUCKET", raising=False)
    dispatcher = StepFunctionsDispatcher(stack.state_machine_arn, client=stack.sfn)
    with pytest.raises(ValueError, match=needs):
        dispatcher.dispatch(attempt_spec(kind, fields))
    assert stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"] == []


def test_batch_without_any_queue_is_refused(stack: Stack) -> None:
    dispatcher = dispatcher_for(stack)
    dispatcher.job_queue = None
    with pytest.raises(ValueError, match="STRATOFLOW_BATCH_JOB_QUEUE"):
        dispatcher.build_input(attempt_spec("batch", {"image": "i", "command": "true"}))


# ------------------------------------------------------------------ kill
def wait_for(calls: list[Any], timeout: float = 10.0) -> None:
    """Until the execution reached its Task state (moto cannot stop an execution whose
    worker has not started yet)."""
    deadline = time.monotonic() + timeout
    while not calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls, "the target was never invoked"


def running_kubernetes(stack: Stack, dispatcher: StepFunctionsDispatcher, task_id: str) -> Any:
    """A kubernetes attempt waiting for its task token."""
    launched: list[Any] = []
    stack.lambdas["stratoflow-eks-launcher"] = launched.append  # never calls back
    spec = attempt_spec(
        "kubernetes", {"image": "i", "command": [], "namespace": "ns"}, task_id=task_id,
        timeout=timedelta(seconds=60),
    )  # fmt: skip
    dispatcher.dispatch(spec)
    wait_for(launched)
    return spec


def test_kill_of_a_kubernetes_attempt_calls_the_hook(stack: Stack) -> None:
    """Only the hook is checked here: moto's worker notices a stop only when its wait for the
    task token ends, and then fails the execution instead of aborting it (Step Functions
    aborts at once); the abort itself is checked on a Lambda attempt below."""
    killed: list[tuple[str, str, int]] = []
    dispatcher = dispatcher_for(stack, on_kill=lambda *key: killed.append(key))
    spec = running_kubernetes(stack, dispatcher, "k")

    dispatcher.kill(spec.run_id, spec.task_id, 1)
    assert killed == [(spec.run_id, "k", 1)]


def running_lambda(stack: Stack, dispatcher: StepFunctionsDispatcher, task_id: str = "t1") -> Any:
    calls: list[Any] = []
    stack.add_function(f"slow-{task_id}", lambda event: calls.append(event) or time.sleep(2))
    spec = attempt_spec("lambda", {"function": f"slow-{task_id}", "payload": {}}, task_id=task_id)
    dispatcher.dispatch(spec)
    wait_for(calls)
    return spec


def test_kill_aborts_the_execution_and_skips_the_hook_for_other_types(stack: Stack) -> None:
    killed: list[tuple[str, str, int]] = []
    dispatcher = dispatcher_for(stack, on_kill=lambda *key: killed.append(key))
    spec = running_lambda(stack, dispatcher)
    dispatcher.kill(spec.run_id, spec.task_id, 1)
    arn = dispatcher.execution_arn(spec.run_id, spec.task_id, 1)
    assert stack.wait_execution(arn)["status"] == "ABORTED"
    assert killed == []
    dispatcher.kill(spec.run_id, spec.task_id, 1)  # again: no error
    dispatcher.kill(spec.run_id, "never-started", 1)  # nothing to stop: no error
    assert stack.sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"


# ------------------------------------------------------------------ recover
def running(spec: Any) -> TaskInstance:
    return TaskInstance(spec.run_id, spec.task_id, TaskState.RUNNING, attempt=spec.attempt)


def test_recover_running_and_never_started(stack: Stack) -> None:
    dispatcher = dispatcher_for(stack)
    alive = running_kubernetes(stack, dispatcher, "alive")
    absent = attempt_spec("shell", {"command": "x"}, task_id="absent")
    report = dispatcher.recover([running(alive), running(absent)])
    assert report.results == {}
    assert [t.task_id for t in report.not_started] == ["absent"]


def test_recover_a_stopped_execution_reports_stopped(stack: Stack) -> None:
    dispatcher = dispatcher_for(stack)
    spec = running_lambda(stack, dispatcher, "stopped")
    dispatcher.kill(spec.run_id, spec.task_id, 1)
    stack.wait_execution(dispatcher.execution_arn(spec.run_id, spec.task_id, 1))
    report = dispatcher.recover([running(spec)])
    assert report.results[(spec.run_id, "stopped", 1)].status is AttemptStatus.STOPPED


def test_recover_an_execution_that_failed_before_reporting_reports_lost(stack: Stack) -> None:
    """The task-attempt machine catches every task error, so only a failed report can fail
    it; that is hard to provoke, so a one-state machine that fails plays the execution
    (``recover`` reads only the execution's status, error and cause)."""
    failing = stack.sfn.create_state_machine(
        name="fails",
        definition=json.dumps(
            {
                "StartAt": "F",
                "States": {
                    "F": {"Type": "Fail", "Error": "SQS.AmazonSQSException", "Cause": "queue gone"}
                },
            }
        ),
        roleArn=stack.role_arn,
    )["stateMachineArn"]
    dispatcher = StepFunctionsDispatcher(
        failing, client=stack.sfn, bucket=stack.bucket, identities=SharedIdentity("runner")
    )
    spec = attempt_spec("shell", {"command": "x"})
    dispatcher.dispatch(spec)
    stack.wait_execution(dispatcher.execution_arn(spec.run_id, spec.task_id, 1))
    result = dispatcher.recover([running(spec)]).results[(spec.run_id, spec.task_id, 1)]
    assert result.status is AttemptStatus.LOST
    assert result.error is not None
    assert "SQS.AmazonSQSException" in result.error


def test_recover_a_succeeded_execution_leaves_it_to_its_report(stack: Stack) -> None:
    stack.lambdas["f"] = lambda event: {}
    stack.add_function("f", lambda event: {})
    dispatcher = dispatcher_for(stack)
    spec = attempt_spec("lambda", {"function": "f", "payload": {}})
    dispatcher.dispatch(spec)
    stack.receive()
    stack.wait_execution(dispatcher.execution_arn(spec.run_id, spec.task_id, 1))
    assert dispatcher.recover([running(spec)]).results == {}


def test_execution_arn_matches_what_step_functions_assigns(stack: Stack) -> None:
    stack.add_function("g", lambda event: {})
    dispatcher = dispatcher_for(stack)
    spec = attempt_spec("lambda", {"function": "g", "payload": {}})
    dispatcher.dispatch(spec)
    [execution] = stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    assert execution["executionArn"] == dispatcher.execution_arn(spec.run_id, spec.task_id, 1)
    assert REGION in execution["executionArn"]


# ------------------------------------------------------------------ Express attempts
EXPRESS_ARN = f"arn:aws:states:{REGION}:123456789012:stateMachine:stratoflow-task-attempt-express"
NOW = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "fields", "timeout", "delay", "express"),
    [
        ("lambda", {"function": "f", "payload": {}}, timedelta(seconds=30), None, True),
        ("shell", {"command": "true"}, timedelta(seconds=60), None, True),
        ("python", {"code": "pass"}, timedelta(seconds=180), None, True),
        ("http", {"url": "http://x"}, timedelta(seconds=10), None, True),
        # no timeout of its own: up to the runner's 15 minutes, Standard
        ("shell", {"command": "true"}, None, None, False),
        ("shell", {"command": "true"}, timedelta(seconds=181), None, False),
        # the retry wait counts: 150 s + 60 s does not fit
        ("shell", {"command": "true"}, timedelta(seconds=150), timedelta(seconds=60), False),
        ("shell", {"command": "true"}, timedelta(seconds=100), timedelta(seconds=60), True),
        ("shell", {"command": "true", "runner": "batch"}, timedelta(seconds=30), None, False),
        ("batch", {"image": "i", "command": "true"}, timedelta(seconds=30), None, False),
        ("kubernetes", {"image": "i", "command": []}, timedelta(seconds=30), None, False),
    ],
)
def test_only_short_lambda_attempts_fit_express(
    stack: Stack,
    kind: str,
    fields: dict[str, Any],
    timeout: timedelta | None,
    delay: timedelta | None,
    express: bool,
) -> None:
    dispatcher = dispatcher_for(stack, now=lambda: NOW, express_state_machine_arn=EXPRESS_ARN)
    not_before = NOW + delay if delay else None
    doc = dispatcher.build_input(attempt_spec(kind, fields, timeout=timeout, not_before=not_before))
    assert dispatcher.fits_express(doc) is express
    # without an Express state machine, everything runs on the Standard one
    plain = dispatcher_for(stack, now=lambda: NOW, express_state_machine_arn="")
    assert plain.fits_express(doc) is False


def test_dispatch_starts_a_short_attempt_on_express_and_a_long_one_on_standard(
    stack: Stack,
) -> None:
    """The real ASL on a real (moto) Express state machine; the same name on both machines
    would be two executions, which is why only the store's claim may decide to dispatch."""
    definition = stack.sfn.describe_state_machine(stateMachineArn=stack.state_machine_arn)
    express_arn = stack.sfn.create_state_machine(
        name="stratoflow-task-attempt-express",
        definition=definition["definition"]
        .replace("submitJob.sync", "submitJob")
        .replace("invoke.waitForTaskToken", "invoke"),
        roleArn=stack.role_arn,
        type="EXPRESS",
    )["stateMachineArn"]
    stack.lambdas["stratoflow-runner"] = lambda event: {
        "status": "succeeded", "exit_code": 0, "error": None, "outputs": {}, "log": event["log"]
    }  # fmt: skip
    dispatcher = dispatcher_for(stack, express_state_machine_arn=express_arn)
    short = attempt_spec(
        "shell", {"command": "true"}, task_id="short", timeout=timedelta(seconds=9)
    )
    long = attempt_spec("shell", {"command": "true"}, task_id="long")
    dispatcher.dispatch_many([short, long])
    on_express = stack.sfn.list_executions(stateMachineArn=express_arn)["executions"]
    on_standard = stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    assert [e["name"] for e in on_express] == [execution_name(short.run_id, "short", 1)]
    assert [e["name"] for e in on_standard] == [execution_name(long.run_id, "long", 1)]
    got = {stack.receive()["task_id"], stack.receive()["task_id"]}
    assert got == {"short", "long"}


def test_recover_leaves_a_possible_express_attempt_to_its_deadline(stack: Stack) -> None:
    """DescribeExecution cannot see Express executions: a running attempt with no Standard
    execution whose deadline fits the Express window is not reported "not started" (that
    would dispatch it again, and Express would run it twice); the reconciler's deadline path
    times it out instead (tests/aws_e2e/test_stack.py). Without an Express state machine, or
    for a longer attempt, missing still means never started."""
    started = NOW
    short = TaskInstance("r", "short", TaskState.RUNNING, attempt=1, started_at=started,
                         deadline=started + timedelta(seconds=30))  # fmt: skip
    long = TaskInstance("r", "long", TaskState.RUNNING, attempt=1, started_at=started,
                        deadline=started + timedelta(minutes=10))  # fmt: skip
    none = TaskInstance("r", "none", TaskState.RUNNING, attempt=1, started_at=started)
    with_express = dispatcher_for(stack, express_state_machine_arn=EXPRESS_ARN)
    report = with_express.recover([short, long, none])
    assert [ti.task_id for ti in report.not_started] == ["long", "none"]
    assert report.results == {}
    standard_only = dispatcher_for(stack, express_state_machine_arn="")
    assert [ti.task_id for ti in standard_only.recover([short]).not_started] == ["short"]
