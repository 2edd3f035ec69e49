"""The AWS stack of AWS-CONTRACT.md, in moto, in-process; and a pump that plays the parts of
AWS that moto does not (SQS -> Lambda event source mapping, running compute).

What is real here: the DynamoDB table (from ``TABLE_SCHEMA``), the task-attempt state machine
(statemachines/task_attempt.asl.json with the template's substitutions, executed by moto's
Step Functions interpreter), the results queue the state machine sends outcomes to, the
bucket, the bus, the schedule group, and the handlers of functions/*/app.py, loaded as Lambda
would load them (module scope once, then ``handler(event, context)``).

What stands in, at the nearest real boundary:
- Lambda code execution: moto's simple Lambda backend echoes or replays queued results; the
  ``LambdaRouter`` answers each function's invocations instead (the runner function by a
  table of outcomes the test states; the runner itself is tested on its own by its module's
  tests). The invocation request and its response path through the state machine are real.
- Batch compute: moto's simple Batch backend marks a job done at submit; ``BatchControl``
  decides per job (by name = execution name) to succeed, fail, or keep running until the
  test finishes it, so a ``.sync`` job can be stopped mid-run. Submit and the ``.sync``
  polling (DescribeJobs) are moto's.
- Step Functions' parameter casing for Batch: moto's interpreter leaves the request
  normalisation of service integrations as a no-op (``_normalise_parameters``), so
  ``submitJob.sync`` would send ``JobName`` where the Batch API takes ``jobName``. The harness
  fills that in from botocore's Batch model, as Step Functions does (``_batch_casing``).
- Thread safety of moto's Batch backend: each execution runs on its own thread, and moto's
  ``describe_jobs`` iterates the job table while another thread's ``submit_job`` adds to it
  ("dictionary changed size during iteration"); the harness puts the two under one lock.
- The SQS -> advance event source mapping: ``Stack.pump`` receives from the real queue,
  calls the advance handler with the batch, and deletes what it did not report failed.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import threading
import time
import zipfile
from base64 import b64encode
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import botocore.session
import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.batch.models import BatchBackend, Job
from moto.batch_simple.models import BatchSimpleBackend
from moto.events.models import EventPattern
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
    StateTaskServiceBatch,
)

from stratoflow.adapters.aws.dynamodb import TABLE_SCHEMA, DynamoStore
from stratoflow.adapters.aws.lifecycle import STREAM_FILTERS
from stratoflow.adapters.aws.settings import AwsSettings
from tests.aws_projector.conftest import Stream

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachines" / "task_attempt.asl.json"
REGION = "us-east-1"
ACCOUNT = "123456789012"
MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    "batch": {"use_docker": False},
}
FUNCTIONS = ("api", "trigger", "advance", "reconciler")
# the API's IAM role map (template parameter IamRoleMap): Ops administers, Viewer only reads
OPS_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/Ops/test"

VIEWER_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/Viewer/test"
ROLE_MAP = {
    f"arn:aws:iam::{ACCOUNT}:role/Ops": "superuser",
    f"arn:aws:iam::{ACCOUNT}:role/Viewer": {"default": "viewer"},
}


# ------------------------------------------------------------------ compute stand-ins
Outcome = dict[str, Any]
LambdaHandler = Callable[[dict[str, Any]], Any]


class LambdaRouter:
    """Answers Lambda invocations by function name (moto runs no Lambda code). Every
    project's runner function (``<stack>-r-<digest>``, made by the dispatcher) answers as
    ``RunnerFunction``; ``runners`` records which project function each call reached."""

    def __init__(self, runner_prefix: str = "") -> None:
        self.handlers: dict[str, LambdaHandler] = {}
        self.runner_prefix = runner_prefix
        self.runners: list[str] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def invoke(self, function_name: str, body: Any) -> bytes:
        name = function_name.rsplit(":function:", 1)[-1].split(":", maxsplit=1)[0]
        payload = json.loads(body) if body else {}
        if self.runner_prefix and name.startswith(self.runner_prefix):
            with self._lock:
                self.runners.append(name)
            name = "RunnerFunction"
        with self._lock:
            self.calls.append((name, payload))
        handler = self.handlers.get(name)
        if handler is None:
            raise AssertionError(f"no stand-in for Lambda function {name!r}")
        return json.dumps(handler(payload)).encode()


@dataclass
class BatchControl:
    """Decides how each Batch job ends: ``plan[task_id]`` is a list of outcomes, one per
    attempt ("succeeded", "failed", or "hold" = keep RUNNING until ``finish``)."""

    plan: dict[str, list[str]] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)  # job name -> job
    submitted: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def decide(self, job: Job) -> str:
        env = {
            e.get("name", e.get("Name")): e.get("value", e.get("Value"))
            for e in (job.container_overrides or {}).get("environment", [])
            or (job.container_overrides or {}).get("Environment", [])
        }
        self.submitted.append((job.job_name, env))
        self.jobs[job.job_name] = job
        task = env.get("STRATOFLOW_TASK_ID", "")
        attempt = int(env.get("STRATOFLOW_ATTEMPT", "1") or 1)
        outcomes = self.plan.get(task, ["succeeded"])
        return outcomes[min(attempt, len(outcomes)) - 1]

    def finish(self, job_name: str, *, success: bool) -> None:
        self.jobs[job_name]._mark_stopped(success=success)


def _operation(service: str, action: str) -> Any:
    model = botocore.session.get_session().get_service_model(service)
    pascal = "".join(part[:1].upper() + part[1:] for part in action.split("_"))
    return model.operation_model(pascal)


def _batch_casing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step Functions' request/response casing for the Batch integration (see the module
    docstring): ``JobName`` -> ``jobName`` on the way in, ``jobId`` -> ``JobId`` out."""

    def parameters(self: Any, parameters: dict[str, Any], *_: Any, **__: Any) -> None:
        op = _operation("batch", self.resource.api_action)
        self._to_boto_request(parameters, op.input_shape)

    def response(
        self: Any, response: Any, boto_service_name: Any = None, service_action_name: Any = None
    ) -> None:
        op = _operation("batch", service_action_name or self.resource.api_action)
        self._from_boto_response(response, op.output_shape)

    monkeypatch.setattr(StateTaskServiceBatch, "_normalise_parameters", parameters)
    monkeypatch.setattr(StateTaskServiceBatch, "_normalise_response", response)


def api_event(
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    *,
    caller: str = OPS_SESSION,
) -> dict[str, Any]:
    """The event API Gateway (REST, proxy) hands the api function after verifying an IAM
    caller."""
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()}
        if query
        else None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "httpMethod": method,
            "path": path,
            "stage": "prod",
            "identity": {"userArn": caller},
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


# ------------------------------------------------------------------ the stack
@dataclass
class Stack:
    settings: AwsSettings
    env: dict[str, str]
    functions: dict[str, ModuleType]
    lambdas: LambdaRouter
    batch: BatchControl
    sqs: Any
    sfn: Any
    s3: Any
    observer: Any  # a DynamoStore of the harness's own: its reads are not counted
    starts: Counter[str] = field(default_factory=Counter)  # StartExecution per name
    requests: Counter[str] = field(default_factory=Counter)  # "service.Operation" -> count
    by_function: Counter[str] = field(default_factory=Counter)  # requests per function
    invocations: Counter[str] = field(default_factory=Counter)  # handler calls per function
    lifecycle: Any = None  # functions/lifecycle/app.py: fed by the stream, not by requests
    lifecycle_stream: Any = None

    # -------------------------------------------------------------- handlers
    def call(self, function: str, event: dict[str, Any]) -> Any:
        self.invocations[function] += 1
        context = SimpleNamespace(
            function_name=f"stratoflow-{function}",
            memory_limit_in_mb=512,
            invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stratoflow-{function}",
            aws_request_id=f"req-{time.monotonic_ns()}",
        )
        module = self.lifecycle if function == "lifecycle" else self.functions[function]
        return module.handler(event, context)

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        *,
        caller: str = OPS_SESSION,
    ) -> tuple[int, Any]:
        """A request as API Gateway hands it over after verifying an IAM caller."""
        response = self.call("api", api_event(method, path, body, query, caller=caller))
        text = response.get("body") or ""
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        for k, v in (response.get("multiValueHeaders") or {}).items():
            headers[k.lower()] = ",".join(v)
        if headers.get("content-type", "").startswith("application/json"):
            return int(response["statusCode"]), json.loads(text)
        return int(response["statusCode"]), text

    def apply_with_runner(self, source: str) -> None:
        """Apply ``source`` through the api, with the runner function's code answering its
        invocations in-process (moto runs no Lambda code): shell tasks run for real, their
        logs go to S3."""
        from stratoflow.adapters.aws import runner as aws_runner

        s3 = self.counted_client("s3")
        self.lambdas.handlers["RunnerFunction"] = lambda attempt: aws_runner.handle(
            attempt, None, s3=s3
        )
        status, body = self.api("POST", "/workflows", {"source": source})
        assert status in (200, 201), body

    @property
    def scheduler(self) -> Any:
        return self.functions["advance"].function.scheduler

    # -------------------------------------------------------------- the pump
    def receive(self) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(
            QueueUrl=self.settings.results_queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        return list(got.get("Messages", []))

    def deliver(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Hand received messages to the advance handler as Lambda's SQS event source
        would, then delete every message it did not report as failed."""
        event = {"Records": [sqs_record(m, self.settings.results_queue_url) for m in messages]}
        response: dict[str, Any] = self.call("advance", event)
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        for m in messages:
            if m["MessageId"] not in failed:
                self.sqs.delete_message(
                    QueueUrl=self.settings.results_queue_url, ReceiptHandle=m["ReceiptHandle"]
                )
        return response

    def deliver_kicks(self) -> int:
        """Deliver the kicks waiting on the results queue to ``advance``, as Lambda's event
        source does right after the api or trigger function recorded a run (or a resume, a
        rerun): that is when its first tasks are dispatched. Any outcome received meanwhile
        is made visible again, left for the test. Returns how many kicks were delivered."""
        delivered = 0
        while True:
            kicks = []
            for m in self.receive():
                if json.loads(m["Body"]).get("kind") == "kick":
                    kicks.append(m)
                else:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.settings.results_queue_url,
                        ReceiptHandle=m["ReceiptHandle"],
                        VisibilityTimeout=0,
                    )
            if not kicks:
                return delivered
            self.deliver(kicks)
            delivered += len(kicks)

    def pump(
        self, until: Callable[[], bool], *, timeout: float = 100.0, idle: float = 0.05
    ) -> None:
        """Deliver outcomes to ``advance`` until ``until()`` holds (bounded by ``timeout``,
        which stays under the suite's per-test timeout of 120 s so that a stuck run fails with
        this message rather than pytest-timeout's interrupt)."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"not done after {timeout} s; executions: {self.executions()}")
            messages = self.receive()
            if messages:
                self.deliver(messages)
            else:
                time.sleep(idle)

    def run_state(self, run_id: str) -> str:
        return str(self.observer.get_run(run_id).state.value)

    def task_state(self, run_id: str, task_id: str) -> str:
        return str(self.observer.get_task(run_id, task_id).state.value)

    def run_ends(self, run_id: str, *, timeout: float = 100.0) -> str:
        terminal = {"succeeded", "failed", "stopped"}
        self.pump(lambda: self.run_state(run_id) in terminal, timeout=timeout)
        return self.run_state(run_id)

    def receive_peek(self) -> int:
        """How many outcome messages wait in the queue (visible ones)."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.settings.results_queue_url,
            AttributeNames=["ApproximateNumberOfMessages"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])

    def publish_lifecycle(self, batch: int = 100) -> int:
        """Hand the state table's stream records written since the last call (from its first
        record) to the lifecycle function as the template's event source mapping does: only
        the records its filters pass (``STREAM_FILTERS``, matched with moto's EventBridge
        pattern code: Lambda's filters follow the same rules), ``batch`` per invocation (the
        template's BatchSize; 1 models every change arriving alone). Returns how many records
        were handed over. Its metrics (RunsStarted, ...) come out here."""
        if self.lifecycle_stream is None:
            self.lifecycle_stream = Stream(self.observer.client, self.settings.table)
        records = [r for r in self.lifecycle_stream.read() if passes_stream_filters(r)]
        for start in range(0, len(records), batch):
            out = self.call("lifecycle", {"Records": records[start : start + batch]})
            assert out == {"batchItemFailures": []}, out
        return len(records)

    def subscribe_lifecycle_events(self) -> Callable[[], list[dict[str, Any]]]:
        """A rule on the stack's bus sending every Stratoflow event to a queue of the test;
        returns a function that reads what arrived so far (oldest first)."""
        events = _session().client("events")
        queue = self.sqs.create_queue(QueueName="lifecycle-events")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        bus = self.settings.event_bus
        events.put_rule(
            Name="all-stratoflow",
            EventBusName=bus,
            EventPattern=json.dumps({"source": ["stratoflow"]}),
        )
        events.put_targets(
            Rule="all-stratoflow", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}]
        )
        seen: list[dict[str, Any]] = []

        def read() -> list[dict[str, Any]]:
            self.publish_lifecycle()
            while True:
                got = self.sqs.receive_message(
                    QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
                ).get("Messages", [])
                if not got:
                    return sorted(seen, key=lambda e: e["time"])
                for m in got:
                    seen.append(json.loads(m["Body"]))
                    self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

        return read

    def wait_messages(self, until: Callable[[], bool], *, timeout: float = 30.0) -> None:
        """Wait, delivering nothing, until outcome messages wait in the queue or ``until()``."""
        deadline = time.monotonic() + timeout
        while not (self.receive_peek() or until()):
            if time.monotonic() > deadline:
                raise AssertionError(f"no message after {timeout} s: {self.executions()}")
            time.sleep(0.05)

    def execution_input(self, name: str) -> dict[str, Any]:
        arn = self.settings.state_machine_arn.replace(":stateMachine:", ":execution:", 1)
        described = self.sfn.describe_execution(executionArn=f"{arn}:{name}")
        return dict(json.loads(described["input"]))

    def fail_next_start_execution(self) -> None:
        """The next StartExecution by a handler fails (a throttle or a lost connection)."""
        state = {"armed": True}

        def fail(**_: Any) -> None:
            if state["armed"]:
                state["armed"] = False
                raise ConnectionError("StartExecution lost (injected by the test)")

        for module in self.functions.values():
            events = module.function.clients.stepfunctions.meta.events
            events.register("before-call.sfn.StartExecution", fail)

    def only_run(self, workflow: str) -> str:
        from stratoflow.ports import RunQuery

        runs = self.observer.list_runs(RunQuery(project="default", workflow=workflow))
        assert len(runs) == 1, runs
        return str(runs[0].id)

    @property
    def scheduler_client(self) -> Any:
        return _session().client("scheduler")

    def stop_all(self) -> None:
        """Stop what still runs, so no execution thread outlives the mock."""
        for execution in self._listed():
            if execution["status"] == "RUNNING":
                self.sfn.stop_execution(executionArn=execution["executionArn"])
        self.wait_executions(timeout=5)

    def counted_client(
        self, service: str, *, function: str = "runner", counted: bool = True
    ) -> Any:
        """A client of the stack's account; its requests count as ``function``'s."""
        client = _session().client(service)
        if counted:
            count_requests(client, self.requests, by_function=self.by_function, function=function)
        return client

    def histories(self, machine: str | None = None) -> list[list[dict[str, Any]]]:
        """Every execution's event history (both state machines, or only ``machine``'s:
        moto keeps Express histories too, which AWS does not; here they are only counted)."""
        out = []
        for execution in self._listed():
            if machine is not None and execution["stateMachineArn"] != machine:
                continue
            events: list[dict[str, Any]] = []
            for page in self.sfn.get_paginator("get_execution_history").paginate(
                executionArn=execution["executionArn"]
            ):
                events.extend(page["events"])
            out.append(events)
        return out

    def machines(self) -> list[str]:
        """The Standard and (when configured) the Express state machine."""
        return [
            arn
            for arn in (
                self.settings.state_machine_arn,
                self.settings.express_state_machine_arn,
            )
            if arn
        ]

    def _listed(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for arn in self.machines():
            for page in self.sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
                found.extend(page["executions"])
        return found

    def executions(self) -> dict[str, str]:
        """Every execution's status by name, on either state machine."""
        return {e["name"]: e["status"] for e in self._listed()}

    def express_executions(self) -> dict[str, str]:
        arn = self.settings.express_state_machine_arn
        return {e["name"]: e["status"] for e in self._listed() if e["stateMachineArn"] == arn}

    def wait_executions(self, *, timeout: float = 30.0) -> dict[str, str]:
        """Wait until no execution is RUNNING (without delivering anything)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.executions()
            if "RUNNING" not in found.values() or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def passes_stream_filters(record: Mapping[str, Any]) -> bool:
    """Whether the lifecycle function's event source mapping lets ``record`` through."""
    body = json.loads(json.dumps(record["dynamodb"], default=lambda b: b64encode(b).decode()))
    return any(
        EventPattern.load(json.dumps(f)).matches_event({"dynamodb": body}) for f in STREAM_FILTERS
    )


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def sqs_record(message: dict[str, Any], queue_url: str) -> dict[str, Any]:
    queue = queue_url.rsplit("/", 1)[-1]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
        "awsRegion": REGION,
    }


# ------------------------------------------------------------------ building it
def _session() -> boto3.Session:
    """boto3's default session: the handlers' clients come from it too, so botocore loads
    each service model once per test process."""
    boto3.setup_default_session(region_name=REGION)
    assert boto3.DEFAULT_SESSION is not None
    return boto3.DEFAULT_SESSION


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buf.getvalue()


def _load_function(name: str) -> ModuleType:
    """functions/<name>/app.py as a fresh module (a cold start)."""
    path = ROOT / "functions" / name / "app.py"
    module_name = f"stratoflow_fn_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def create_resources(prefix: str = "sf") -> dict[str, str]:
    """Create the contract's resources in the active moto mock; returns the functions' env."""
    session = _session()
    iam = session.client("iam")
    role = iam.create_role(
        RoleName=f"{prefix}-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]

    table = f"{prefix}-state"
    ddb = session.client("dynamodb")
    ddb.create_table(**TABLE_SCHEMA, TableName=table)
    ddb.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )

    # the alert table (template AlertTable): the api function's /alerts routes
    from stratoflow.adapters.aws.alerts import ALERT_TABLE_SCHEMA

    ddb.create_table(**ALERT_TABLE_SCHEMA, TableName=f"{prefix}-alerts")

    bucket = f"{prefix}-artifacts"
    session.client("s3").create_bucket(Bucket=bucket)
    # as template.yaml's ArtifactBucket: resource files keep their versions
    session.client("s3").put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
    )

    sqs = session.client("sqs")
    dlq = sqs.create_queue(QueueName=f"{prefix}-results-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = sqs.create_queue(
        QueueName=f"{prefix}-results",
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
        },
    )["QueueUrl"]

    bus = f"{prefix}-bus"
    session.client("events").create_event_bus(Name=bus)
    group = f"{prefix}-schedules"
    session.client("scheduler").create_schedule_group(Name=group)

    # the most a project role may do (the template's ProjectTaskBoundary)
    boundary = iam.create_policy(
        PolicyName=f"{prefix}-project-boundary",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        ),
    )["Policy"]["Arn"]  # fmt: skip

    lam = session.client("lambda")
    layer = lam.publish_layer_version(LayerName=f"{prefix}-core", Content={"ZipFile": _zip()})[
        "LayerVersionArn"
    ]
    arns = {}
    for fn in ("EksLauncherFunction", "TriggerFunction", "UserFunction"):
        arns[fn] = lam.create_function(
            FunctionName=fn,
            Runtime="python3.12",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": _zip()},
        )["FunctionArn"]

    ec2 = session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group_id = ec2.create_security_group(GroupName=f"{prefix}-jobs", Description="jobs", VpcId=vpc)[
        "GroupId"
    ]
    batch = session.client("batch")
    env_arn = batch.create_compute_environment(
        computeEnvironmentName=f"{prefix}-fargate",
        type="MANAGED",
        state="ENABLED",
        serviceRole=role,
        computeResources={
            "type": "FARGATE",
            "maxvCpus": 16,
            "subnets": [subnet],
            "securityGroupIds": [group_id],
        },
    )["computeEnvironmentArn"]
    job_queue = batch.create_job_queue(
        jobQueueName=f"{prefix}-queue",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env_arn}],
    )["jobQueueArn"]
    job_definition = batch.register_job_definition(
        jobDefinitionName=f"{prefix}-runner",
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "stratoflow/runner:latest",
            "command": ["python", "-m", "stratoflow.adapters.aws.runner"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "0.25"},
                {"type": "MEMORY", "value": "512"},
            ],
            "executionRoleArn": role,
        },
    )["jobDefinitionArn"]

    definition = ASL.read_text(encoding="utf-8")
    for name, value in {
        "EksLauncherFunctionArn": arns["EksLauncherFunction"],
        "ResultsQueueUrl": queue,
        "BatchJobQueueArn": job_queue,
    }.items():
        definition = definition.replace("${" + name + "}", value)
    # the template's two state machines: the same file, the Standard-only integrations
    # (.sync, .waitForTaskToken) substituted away on the Express one (no attempt routes there)
    machines = {}
    for kind, batch_submit, eks_launch in (
        ("STANDARD", "submitJob.sync", "invoke.waitForTaskToken"),
        ("EXPRESS", "submitJob", "invoke"),
    ):
        text = definition.replace("${BatchSubmitJob}", batch_submit)
        text = text.replace("${EksLaunch}", eks_launch)
        # the template's is startQueryExecution.sync on Standard, which moto's executor cannot
        # run; the plain call (the query ends at once on moto; ReadSqlResult checks it ended)
        text = text.replace("${AthenaStartQuery}", "startQueryExecution")
        suffix = "" if kind == "STANDARD" else "-express"
        machines[kind] = session.client("stepfunctions").create_state_machine(
            name=f"{prefix}-task-attempt{suffix}", definition=text, roleArn=role, type=kind
        )["stateMachineArn"]
    machine = machines["STANDARD"]

    return {
        "STRATOFLOW_TABLE": table,
        "STRATOFLOW_ALERT_TABLE": f"{prefix}-alerts",
        "STRATOFLOW_ALERT_FUNCTION_ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{prefix}-alert",
        "STRATOFLOW_ADVANCE_FUNCTION_ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{prefix}-advance",
        "STRATOFLOW_STATE_MACHINE_ARN": machine,
        "STRATOFLOW_EXPRESS_STATE_MACHINE_ARN": machines["EXPRESS"],
        "STRATOFLOW_RESULTS_QUEUE_URL": queue,
        "STRATOFLOW_RESULTS_DLQ_URL": dlq,
        "STRATOFLOW_EVENT_BUS": bus,
        "STRATOFLOW_BUCKET": bucket,
        "STRATOFLOW_SCHEDULE_GROUP": group,
        "STRATOFLOW_SCHEDULER_ROLE_ARN": role,
        "STRATOFLOW_TRIGGER_FUNCTION_ARN": arns["TriggerFunction"],
        "STRATOFLOW_BATCH_JOB_QUEUE": job_queue,
        "STRATOFLOW_RUNNER_JOB_DEFINITION": job_definition,
        "STRATOFLOW_STACK": prefix,
        "STRATOFLOW_PROJECT_BOUNDARY_ARN": boundary,
        "STRATOFLOW_RUNNER_LAYERS": layer,
        "STRATOFLOW_SECRETS_PREFIX": "stratoflow/",
        "STRATOFLOW_RUNNER_LOG_RETENTION_DAYS": "7",
        "STRATOFLOW_EKS_CLUSTER": "stratoflow-test",
        "STRATOFLOW_EKS_NAMESPACE": "stratoflow",
        "STRATOFLOW_EKS_OIDC_ISSUER": "",
        "STRATOFLOW_LAMBDA_TASK_FUNCTIONS": "",
        # moto enforces no IAM: the policies these make are evaluated in tests/infra
        "STRATOFLOW_ATHENA_WORKGROUPS": "",
        "STRATOFLOW_REDSHIFT_RESOURCES": "",
        "STRATOFLOW_AURORA_CLUSTERS": "",
        # deployed with EnableReadModel=false: moto's rds-data runs no SQL, so the API reads
        # its lists from DynamoDB here (the read model's SQL is tested on real PostgreSQL and
        # its Data API wiring on moto's queued results, in tests/readmodel)
        "STRATOFLOW_DB_CLUSTER_ARN": "",
        "STRATOFLOW_DB_SECRET_ARN": "",
        "STRATOFLOW_DB_NAME": "",
        # the api function's own (template.yaml sets them on ApiFunction only)
        "STRATOFLOW_AUTH_MODE": "IAM",
        "STRATOFLOW_IAM_ROLE_MAP": json.dumps(ROLE_MAP),
    }


def count_requests(
    client: Any,
    counter: Counter[str],
    starts: Counter[str] | None = None,
    *,
    by_function: Counter[str] | None = None,
    function: str = "",
) -> None:
    """Count every request ``client`` makes (``before-call``), by service and operation (and
    by the function that made it)."""
    service = client.meta.service_model.service_name

    def before_call(model: Any, **_: Any) -> None:
        counter[f"{service}.{model.name}"] += 1
        if by_function is not None:
            by_function[function] += 1

    def before_start(params: dict[str, Any], **_: Any) -> None:
        if starts is not None:
            starts[str(params.get("name"))] += 1

    events = client.meta.events
    events.register(f"before-call.{client.meta.service_model.service_id.hyphenize()}", before_call)
    if service == "stepfunctions":
        events.register("before-parameter-build.sfn.StartExecution", before_start)


@contextmanager
def aws_stack(monkeypatch: pytest.MonkeyPatch, *, prefix: str = "sf") -> Iterator[Stack]:
    """The whole stack in moto; the handlers loaded against it."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")  # moto's stream API
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "stratoflow")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Stratoflow")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.delenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", raising=False)
    # the stack's default session (see _session) is put back as it was afterwards
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    lambdas = LambdaRouter(runner_prefix=f"{prefix}-r-")
    control = BatchControl()

    def invoke(self: Any, function_name: str, qualifier: Any, body: Any, *a: Any) -> bytes:
        return lambdas.invoke(function_name, body)

    def mark_finished(self: Any, include_start_attempt: bool, job: Job) -> None:
        self.backend._jobs[job.job_id] = job
        job.log_stream_name = job._stream_name
        if include_start_attempt:
            job._start_attempt()
        decision = control.decide(job)
        if decision != "hold":
            job._mark_stopped(success=decision == "succeeded")

    lock = threading.RLock()
    submit, describe = BatchSimpleBackend.submit_job, BatchBackend.describe_jobs

    def locked_submit(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return submit(self, *args, **kwargs)

    def locked_describe(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return describe(self, *args, **kwargs)

    monkeypatch.setattr(BatchSimpleBackend, "submit_job", locked_submit)
    monkeypatch.setattr(BatchBackend, "describe_jobs", locked_describe)
    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    monkeypatch.setattr(BatchSimpleBackend, "_mark_job_as_finished", mark_finished)
    _batch_casing(monkeypatch)
    with mock_aws(config=MOTO_CONFIG):
        env = create_resources(prefix)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        functions = {name: _load_function(name) for name in FUNCTIONS}
        lifecycle = _load_function("lifecycle")
        session = _session()
        stack = Stack(
            settings=AwsSettings.from_env(env),
            env=env,
            functions=functions,
            lifecycle=lifecycle,
            lambdas=lambdas,
            batch=control,
            sqs=session.client("sqs"),
            sfn=session.client("stepfunctions"),
            s3=session.client("s3"),
            observer=DynamoStore(env["STRATOFLOW_TABLE"], client=session.client("dynamodb")),
        )
        for name, module in functions.items():
            clients = module.function.clients
            for client in vars(clients).values():
                count_requests(
                    client, stack.requests, stack.starts, by_function=stack.by_function,
                    function=name,
                )  # fmt: skip
        try:
            yield stack
        finally:
            stack.stop_all()
