"""moto, in-process, executing the real task-attempt state machine.

Two things moto cannot do are replaced at the boundary, and only there:

* **Lambda code.** moto's docker-less Lambda echoes its payload. ``lambdas`` routes an
  invocation to a Python callable (the real runner handler, or a test's function); a callable
  that raises returns the error the way Lambda does (``X-Amz-Function-Error: Unhandled`` and an
  ``errorType`` / ``errorMessage`` payload), so the state machine sees a real FunctionError.
* **Batch ``submitJob.sync`` request/response shapes.** moto's copy of the ASL interpreter
  leaves ``_normalise_parameters`` / ``_normalise_response`` as no-ops, so the Step Functions
  spelling of the request (``JobName``, ``ContainerOverrides.Command``, ...) reaches boto3
  unconverted and fails validation, and the ``JobId`` the ``.sync`` poller reads is never
  produced. ``_batch_normalisation`` fills in exactly those two methods for the Batch
  integration, the way Step Functions does (the service's botocore shapes map the names);
  moto's own ``_to_boto_request`` / ``_from_boto_response`` helpers do the work. Nothing
  else of the interpreter is touched. Jobs end as moto's simple Batch ends them: succeeded,
  or failed when ``MOTO_SIMPLE_BATCH_FAIL_AFTER`` is set.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stratoflow.adapters.aws.dispatch import StepFunctionsDispatcher
from stratoflow.adapters.aws.projects import PodIdentity, TaskIdentity
from stratoflow.engine import RenderedTask
from stratoflow.ports import AttemptSpec

REGION = "us-east-1"
ASL = Path(__file__).resolve().parents[2] / "statemachines" / "task_attempt.asl.json"
MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    "batch": {"use_docker": False},
}

Handler = Callable[[dict[str, Any]], Any]


@dataclass
class Stack:
    """The resources the state machine talks to, as template.yaml names them."""

    sfn: Any
    sqs: Any
    s3: Any
    batch: Any
    lambda_: Any
    state_machine_arn: str
    queue_url: str
    bucket: str
    job_queue_arn: str
    runner_job_definition_arn: str
    runner_function_arn: str
    eks_launcher_arn: str
    lambdas: dict[str, Handler] = field(default_factory=dict)
    role_arn: str = ""

    def add_function(self, name: str, handler: Handler) -> str:
        """A Lambda function whose invocations run ``handler`` (see the module docstring)."""
        arn = self.lambda_.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=self.role_arn,
            Handler="app.handler",
            Code={"ZipFile": b"not run: moto routes invocations to a Python callable"},
        )["FunctionArn"]
        self.lambdas[name] = handler
        return str(arn)

    def receive(self, timeout: float = 180.0) -> dict[str, Any]:
        """The next outcome message in the results queue (fails the test if none comes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=1)
            for message in got.get("Messages", []):
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                return json.loads(message["Body"])  # type: ignore[no-any-return]
            time.sleep(0.1)
        raise AssertionError(f"no outcome message within {timeout} s")

    def wait_execution(self, arn: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                return described  # type: ignore[no-any-return]
            time.sleep(0.1)
        raise AssertionError(f"execution {arn} still running after {timeout} s")

    def states_entered(self, arn: str) -> list[str]:
        events = self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        return [
            e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
        ]

    def read_s3(self, uri: str) -> str:
        """The text of ``s3://<the stack's bucket>/<key>`` (an attempt's log, say)."""
        prefix = f"s3://{self.bucket}/"
        assert uri.startswith(prefix), uri
        body = self.s3.get_object(Bucket=self.bucket, Key=uri.removeprefix(prefix))["Body"]
        return str(body.read().decode())


class Throttled(Exception):
    """Raised by a test's function handler: Lambda answers the Invoke call itself with
    TooManyRequestsException (HTTP 429), as it does when the account is throttled."""


def _lambda_router(lambdas: dict[str, Handler]) -> Callable[..., bytes]:
    def invoke(
        self: Any,
        function_name: str,
        qualifier: Any,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes:
        name = function_name.rsplit(":", 1)[-1] if ":" in function_name else function_name
        handler = lambdas.get(name)
        if handler is None:
            raise AssertionError(f"no test handler for function {function_name!r}")
        event = json.loads(body) if body else {}
        try:
            result = handler(event)
        except Throttled:
            from moto.awslambda.exceptions import LambdaClientError

            error = LambdaClientError("TooManyRequestsException", "Rate exceeded")
            error.code = 429
            raise error from None
        except Exception as exc:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
        return json.dumps(result).encode()

    return invoke


def _batch_normalisation(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_batch as batch_service,
    )

    cls = batch_service.StateTaskServiceBatch
    model = boto3.session.Session().client("batch", region_name=REGION).meta.service_model

    def normalise_parameters(
        self: Any,
        parameters: dict[str, Any],
        boto_service_name: Any = None,
        service_action_name: Any = None,
    ) -> None:
        action = self._get_boto_service_action(service_action_name)
        operation = next(
            model.operation_model(op)
            for op in model.operation_names
            if self._get_boto_service_action(op) == action
        )
        self._to_boto_request(parameters, operation.input_shape)

    def normalise_response(
        self: Any, response: Any, boto_service_name: Any = None, service_action_name: Any = None
    ) -> None:
        action = self._get_boto_service_action(service_action_name)
        operation = next(
            model.operation_model(op)
            for op in model.operation_names
            if self._get_boto_service_action(op) == action
        )
        self._from_boto_response(response, operation.output_shape)

    monkeypatch.setattr(cls, "_normalise_parameters", normalise_parameters)
    monkeypatch.setattr(cls, "_normalise_response", normalise_response)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", raising=False)
    with mock_aws(config=MOTO_CONFIG):
        yield


@pytest.fixture
def stack(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """Queue, bucket, Batch queue and runner job definition, the runner and EKS launcher
    functions (handlers set per test), and the state machine from the real ASL file."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    iam = boto3.client("iam", region_name=REGION)
    role_arn = iam.create_role(
        RoleName="stratoflow-test",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    sqs = boto3.client("sqs", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    batch = boto3.client("batch", region_name=REGION)
    lambda_ = boto3.client("lambda", region_name=REGION)
    sfn = boto3.client("stepfunctions", region_name=REGION)

    # a name of its own per test: an execution a test left running cannot report into the
    # next test's queue (moto's executions are threads that outlive the test)
    queue_url = sqs.create_queue(QueueName=f"stratoflow-results-{uuid.uuid4().hex[:12]}")[
        "QueueUrl"
    ]
    bucket = "stratoflow-artifacts"
    s3.create_bucket(Bucket=bucket)
    ec2 = boto3.client("ec2", region_name=REGION)
    subnet = ec2.describe_subnets()["Subnets"][0]
    group = ec2.create_security_group(
        GroupName="stratoflow-batch", Description="batch", VpcId=subnet["VpcId"]
    )["GroupId"]
    env_arn = batch.create_compute_environment(
        computeEnvironmentName="stratoflow",
        type="MANAGED",
        state="ENABLED",
        computeResources={
            "type": "FARGATE",
            "maxvCpus": 16,
            "subnets": [subnet["SubnetId"]],
            "securityGroupIds": [group],
        },
        serviceRole=role_arn,
    )["computeEnvironmentArn"]
    job_queue_arn = batch.create_job_queue(
        jobQueueName="stratoflow",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env_arn}],
    )["jobQueueArn"]
    runner_def = batch.register_job_definition(
        jobDefinitionName="stratoflow-runner",
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "stratoflow-runner:latest",
            "command": ["python", "-m", "stratoflow.adapters.aws.runner"],
            "executionRoleArn": role_arn,
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "2048"},
            ],
        },
    )["jobDefinitionArn"]

    lambdas: dict[str, Handler] = {}
    monkeypatch.setattr(LambdaSimpleBackend, "invoke", _lambda_router(lambdas))
    _batch_normalisation(monkeypatch)

    stack = Stack(
        sfn=sfn, sqs=sqs, s3=s3, batch=batch, lambda_=lambda_,
        state_machine_arn="", queue_url=queue_url, bucket=bucket,
        job_queue_arn=job_queue_arn, runner_job_definition_arn=runner_def,
        runner_function_arn="", eks_launcher_arn="", lambdas=lambdas, role_arn=role_arn,
    )  # fmt: skip

    def unset(event: dict[str, Any]) -> Any:
        raise AssertionError("this test did not set the function's handler")

    stack.runner_function_arn = stack.add_function("stratoflow-runner", unset)
    stack.eks_launcher_arn = stack.add_function("stratoflow-eks-launcher", unset)
    definition = ASL.read_text(encoding="utf-8")
    for name, value in {
        "RunnerFunctionArn": stack.runner_function_arn,
        "EksLauncherFunctionArn": stack.eks_launcher_arn,
        "ResultsQueueUrl": queue_url,
        "BatchJobQueueArn": job_queue_arn,
        "RunnerJobDefinitionArn": runner_def,
    }.items():
        definition = definition.replace("${" + name + "}", value)
    definition = definition.replace("${BatchSubmitJob}", "submitJob.sync")
    definition = definition.replace("${EksLaunch}", "invoke.waitForTaskToken")
    # moto's executor has no athena .sync ("Unsupported sync callback procedure"): the plain
    # call here; the query ends at once on moto, and ReadSqlResult checks it ended
    definition = definition.replace("${AthenaStartQuery}", "startQueryExecution")
    stack.state_machine_arn = sfn.create_state_machine(
        name="stratoflow-task-attempt", definition=definition, roleArn=role_arn
    )["stateMachineArn"]
    yield stack
    for machine in sfn.list_state_machines()["stateMachines"]:  # leave nothing running
        for execution in sfn.list_executions(
            stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"
        )["executions"]:
            with contextlib.suppress(Exception):
                sfn.stop_execution(executionArn=execution["executionArn"])


def attempt_spec(
    kind: str,
    fields: dict[str, Any],
    *,
    run_id: str = "wf-20260101T000000-abc123",
    task_id: str = "t1",
    attempt: int = 1,
    timeout: timedelta | None = None,
    not_before: datetime | None = None,
    params: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> AttemptSpec:
    return AttemptSpec(
        run_id=run_id, task_id=task_id, attempt=attempt,
        task=RenderedTask(kind, fields, params or {}, env or {}),
        logical_date=datetime(2026, 1, 1, tzinfo=UTC), workflow="wf", project="default",
        not_before=not_before, timeout=timeout,
    )  # fmt: skip


def dispatcher_for(stack: Stack, **kwargs: Any) -> StepFunctionsDispatcher:
    return StepFunctionsDispatcher(
        stack.state_machine_arn,
        client=stack.sfn,
        batch_client=stack.batch,
        s3_client=stack.s3,
        bucket=stack.bucket,
        job_queue=stack.job_queue_arn,
        runner_job_definition=stack.runner_job_definition_arn,
        **{"identities": SharedIdentity(stack.runner_function_arn), **kwargs},
    )


class SharedIdentity:
    """One runner function for every project: these tests are about the state machine and
    the dispatcher (each project's own identity is tested in tests/aws_unit/test_projects.py)."""

    def __init__(self, runner_function: str, role_arn: str | None = None) -> None:
        self.identity = TaskIdentity(runner_function=runner_function, role_arn=role_arn)

    def ensure(self, project: str) -> TaskIdentity:
        return self.identity

    def ensure_pods(self, project: str, namespace: str | None) -> PodIdentity:
        return PodIdentity(service_account="stratoflow-reporter")
