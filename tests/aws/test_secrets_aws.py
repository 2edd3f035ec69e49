"""Secrets on AWS (moto executing the real task-attempt state machine): the rendered task
goes into the execution input with its references, the runner resolves them from Secrets
Manager ``stratoflow/<project>/<name>`` as it starts the task, and what comes back (outcome,
log) is masked. The project role's policy grants exactly those names."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

import boto3
import pytest

from stratoflow import engine
from stratoflow.adapters.aws import runner
from stratoflow.adapters.aws.projects import ProjectPlaces
from stratoflow.adapters.aws.secrets import SecretsManagerSource, secret_id, secrets_prefix
from stratoflow.model import load_workflow
from stratoflow.ports import AttemptSpec
from stratoflow.secrets import SecretUnavailable
from tests.aws.conftest import REGION, Stack, dispatcher_for

pytestmark = pytest.mark.slow

CANARY = f"aws-canary-{uuid.uuid4().hex}"
DIGEST = hashlib.sha256(CANARY.encode()).hexdigest()
WORKFLOW = """
name: canary
project: analytics
tasks:
  use:
    type: shell
    env: {CANARY_ENV: "{{ secrets.canary }}"}
    params: {p: "{{ secrets.canary }}"}
    command: |
      printf %s "$CANARY_ENV" | sha256sum | cut -c1-64 | sed 's/^/from_env=/' >> "$STRATOFLOW_OUTPUT"
      printf %s '{{ secrets.canary }}' | sha256sum | cut -c1-64 | sed 's/^/from_command=/' >> "$STRATOFLOW_OUTPUT"
      echo "echoed={{ secrets.canary }}" >> "$STRATOFLOW_OUTPUT"
      echo "printed {{ secrets.canary }}"
  py:
    type: python
    runner: batch
    params: {p: "{{ secrets.canary }}"}
    code: |
      import hashlib
      outputs["from_param"] = hashlib.sha256(params["p"].encode()).hexdigest()
  unset:
    type: shell
    command: echo {{ secrets.never_set }}
"""


def rendered(task_id: str) -> AttemptSpec:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    spec = load_workflow(WORKFLOW, now=now)
    run, _ = engine.new_run(
        spec, run_id="analytics.canary-1", version=1, params={}, logical_date=now, now=now
    )
    return AttemptSpec(
        run_id=run.id, task_id=task_id, attempt=1,
        task=engine.render_task(spec, run, task_id, {}), logical_date=now,
        workflow=spec.name, project=spec.project, timeout=timedelta(seconds=60),
    )  # fmt: skip


@pytest.fixture
def manager(stack: Stack) -> Any:
    client = boto3.client("secretsmanager", region_name=REGION)
    client.create_secret(Name="stratoflow/analytics/canary", SecretString=CANARY)
    client.create_secret(Name="stratoflow/other/never_set", SecretString="other project's")
    stack.lambdas["stratoflow-runner"] = lambda event: runner.handle(
        event, lambda: 60.0, s3=stack.s3, secrets=SecretsManagerSource(client, secrets_prefix())
    )
    return client


def everything_the_execution_saw(stack: Stack, arn: str) -> str:
    described = stack.sfn.describe_execution(executionArn=arn)
    history = stack.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return json.dumps([described, history], default=str)


def test_the_runner_resolves_what_the_state_machine_never_holds(stack: Stack, manager: Any) -> None:
    dispatcher = dispatcher_for(stack)
    spec = rendered("use")
    log_uri = dispatcher.dispatch(spec)
    message = stack.receive()
    assert message["status"] == "succeeded", message
    assert message["outputs"] == {"from_env": DIGEST, "from_command": DIGEST, "echoed": "***"}
    assert log_uri is not None
    bucket, _, key = log_uri[5:].partition("/")
    uploaded = stack.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    # what the task printed, masked, then the runner's note on the output it masked
    printed, note = uploaded.split("\n", 1)
    assert printed == "printed ***"
    assert note.startswith("[stratoflow] outputs 'echoed' held the value of a secret")
    assert CANARY not in uploaded

    arn = dispatcher.execution_arn(spec.run_id, spec.task_id, spec.attempt)
    stack.wait_execution(arn)
    seen = everything_the_execution_saw(stack, arn)
    assert (
        "{{ secrets.canary }}"
        in json.loads(stack.sfn.describe_execution(executionArn=arn)["input"])["task"]["env"][
            "CANARY_ENV"
        ]
    )
    assert CANARY not in seen
    assert CANARY not in json.dumps(message)


def test_a_missing_secret_fails_the_attempt_naming_it(stack: Stack, manager: Any) -> None:
    # stratoflow/other/never_set exists, but it is another project's: not this one's
    dispatcher_for(stack).dispatch(rendered("unset"))
    message = stack.receive()
    assert message["status"] == "failed"
    assert "secret 'never_set' is not set in project 'analytics'" in message["error"]
    assert "other project" not in json.dumps(message)


def test_the_batch_runner_gets_the_prefix_and_resolves_in_the_container(
    stack: Stack, manager: Any
) -> None:
    dispatcher = dispatcher_for(stack)
    spec = rendered("py")
    doc = dispatcher.build_input(spec)
    assert CANARY not in json.dumps(doc)
    env = {e["Name"]: e["Value"] for e in doc["batch"]["container_overrides"]["Environment"]}
    assert env["STRATOFLOW_SECRETS_PREFIX"] == "stratoflow/"
    outputs_uri = doc["outputs_uri"]
    # the container's part: run_batch with the job's environment, as the project's role
    source = SecretsManagerSource(manager, env["STRATOFLOW_SECRETS_PREFIX"])
    assert runner.run_batch(env, [], stack.s3, source) == 0
    bucket, _, key = outputs_uri[5:].partition("/")
    outputs = json.loads(stack.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert outputs == {"from_param": DIGEST}


def test_a_refusal_names_the_secret_and_the_reason(stack: Stack) -> None:
    class Refusing:
        def get_secret_value(self, SecretId: str) -> Any:
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetSecretValue"
            )

    with pytest.raises(SecretUnavailable, match=r"'pw' \(stratoflow/p/pw\).*AccessDenied"):
        SecretsManagerSource(Refusing()).get("p", "pw")


def test_the_project_role_may_read_exactly_its_own_secrets() -> None:
    places = ProjectPlaces(
        stack="sf", partition="aws", region=REGION, account="123456789012",
        bucket="b", table="t", secrets_prefix=secrets_prefix({}),
    )  # fmt: skip
    [statement] = [
        s for s in places.policy("analytics")["Statement"] if s["Sid"] == "ProjectSecrets"
    ]
    arn = "arn:aws:secretsmanager:{}:123456789012:secret:{}-AbCdEf"
    # Secrets Manager appends six random characters to a secret's ARN
    assert fnmatchcase(
        arn.format(REGION, secret_id("stratoflow/", "analytics", "pw")), statement["Resource"]
    )
    for other in ("stratoflow/analytics2/pw", "stratoflow/other/pw", "analytics/pw"):
        assert not fnmatchcase(arn.format(REGION, other), statement["Resource"]), other


def test_a_batch_task_names_its_secrets_and_refuses_what_ecs_cannot_inject(
    stack: Stack, tmp_path: Any
) -> None:
    """batch tasks run the user's image directly: ECS injects the secrets as the container
    starts (the job definition's ``secrets``, names built from the run's own project), an
    env variable that is one reference directly, any other reference in the command or env
    through the wrapper (tests/aws_unit/test_batch_secrets.py runs it). A reference that
    cannot reach the container that way fails the task at once (not retried) and starts no
    execution."""
    from stratoflow.adapters.local.sqlite_store import SqliteStore
    from stratoflow.service import Scheduler
    from tests.fakes import FakeClock

    store = SqliteStore(tmp_path / "state.db")
    dispatcher = dispatcher_for(stack)
    scheduler = Scheduler(store, store, dispatcher, FakeClock(datetime(2026, 1, 1, tzinfo=UTC)))
    scheduler.apply(
        "name: direct\nproject: analytics\ntasks:\n"
        "  job:\n    type: batch\n    image: busybox\n    command: [env]\n"
        '    env: {PW: "{{ secrets.canary }}", PLAIN: "x"}\n'
        "  image:\n    type: batch\n    image: 'reg/{{ secrets.canary }}:1'\n"
        "    command: [env]\n"
        "  badname:\n    type: batch\n    image: busybox\n    command: [env]\n"
        '    env: {my-url: "db://u:{{ secrets.canary }}@h"}\n'
        "  fn:\n    type: lambda\n    function: f\n"
        '    payload: {pw: "{{ secrets.canary }}"}\n'
    )
    run, _ = scheduler.trigger("analytics", "direct")
    scheduler.step()
    tasks = {t.task_id: t for t in store.get_tasks(run.id)}
    assert tasks["image"].state.value == "failed"
    assert "cannot resolve secret references (canary)" in (tasks["image"].error or "")
    assert "stratoflow/analytics/<name>" in (tasks["image"].error or "")
    assert "may have them in its command and env" in (tasks["image"].error or "")
    assert tasks["badname"].state.value == "failed"
    assert "'my-url' holds a secret reference inside a longer value" in (
        tasks["badname"].error or ""
    )
    assert tasks["job"].state.value == "running"
    assert tasks["fn"].state.value == "running"  # through the project's runner (test below)
    [started] = [
        e
        for e in stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
        if json.loads(stack.sfn.describe_execution(executionArn=e["executionArn"])["input"])["type"]
        == "batch"
    ]
    given = json.loads(stack.sfn.describe_execution(executionArn=started["executionArn"])["input"])
    assert CANARY not in json.dumps(given)
    overrides = given["batch"]["container_overrides"]
    assert {e["Name"] for e in overrides["Environment"]} >= {"PLAIN", "STRATOFLOW_RUN_ID"}
    assert "PW" not in {e["Name"] for e in overrides["Environment"]}  # ECS sets it
    assert overrides["Command"] == ["env"]  # no wrapper: nothing to build
    [definition] = stack.batch.describe_job_definitions(
        jobDefinitions=[given["batch"]["job_definition"]]
    )["jobDefinitions"]
    assert definition["containerProperties"]["secrets"] == [
        {"name": "PW", "valueFrom": "stratoflow/analytics/canary"}
    ]
    assert definition["containerProperties"]["image"] == "busybox"
    # the same image without secrets keeps a definition of its own, named as before
    assert dispatcher.job_definition_for("busybox") != given["batch"]["job_definition"]
    store.close()


def test_a_batch_command_and_env_value_get_the_secret_through_the_wrapper(
    stack: Stack, manager: Any, tmp_path: Any
) -> None:
    """The state machine submits the job (moto's Batch); neither its request (command,
    environment), its job definition nor the execution holds the value: Secrets Manager
    names and ``${...}`` expansions only. The container's part, played here with
    the job as submitted and the secrets ECS would set, runs the command with the value."""
    report = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['DSN']]))"
    task = json.dumps(
        {
            "type": "batch",
            "image": "example.org/etl:1",
            "command": [sys.executable, "-c", report, "--password={{ secrets.canary }}", "$(x)"],
            "env": {
                "DSN": "postgres://u:{{ secrets.canary }}@h/db",
                "WHOLE": "{{ secrets.canary }}",
                "PLAIN": "{{ params.p }}",
            },
            "params": {"p": "plain"},
        }
    )
    dispatcher = dispatcher_for(stack)
    spec = direct_task(task, "wrapped")
    assert dispatcher.refusal(spec) is None
    dispatcher.dispatch(spec)
    message = stack.receive()
    assert message["status"] == "succeeded", message
    arn = dispatcher.execution_arn(spec.run_id, spec.task_id, spec.attempt)
    stack.wait_execution(arn)

    [summary] = stack.batch.list_jobs(jobQueue=stack.job_queue_arn, jobStatus="SUCCEEDED")[
        "jobSummaryList"
    ]
    [job] = stack.batch.describe_jobs(jobs=[summary["jobId"]])["jobs"]
    [definition] = stack.batch.describe_job_definitions(jobDefinitions=[job["jobDefinition"]])[
        "jobDefinitions"
    ]
    assert definition["containerProperties"]["secrets"] == [
        {"name": "STRATOFLOW_SECRET__canary", "valueFrom": "stratoflow/analytics/canary"},
        {"name": "WHOLE", "valueFrom": "stratoflow/analytics/canary"},
    ]
    command = job["container"]["command"]
    assert command[:2] == ["/bin/sh", "-c"]
    assert "'--password='\"${STRATOFLOW_SECRET__canary}\"" in command[2]
    environment = {e["name"]: e["value"] for e in job["container"]["environment"]}
    assert environment["PLAIN"] == "plain"
    assert "DSN" not in environment  # the wrapper sets it
    assert "WHOLE" not in environment  # ECS does
    seen = json.dumps([job, definition, everything_the_execution_saw(stack, arn), message])
    assert "{{ secrets.canary }}" in seen  # the execution input holds the reference
    assert CANARY not in seen

    # the container: ECS sets the environment and the definition's secrets, runs the command
    env = {**environment, "PATH": os.environ["PATH"]}
    for secret in definition["containerProperties"]["secrets"]:
        value = manager.get_secret_value(SecretId=secret["valueFrom"])["SecretString"]
        env[secret["name"]] = value
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [
        [f"--password={CANARY}", "$(x)"],
        f"postgres://u:{CANARY}@h/db",
    ]


def test_the_api_store_sets_lists_and_deletes_under_the_project_path(aws: None) -> None:
    from stratoflow.adapters.aws.secrets import SecretsManagerStore
    from stratoflow.errors import InvalidInput, NotFound

    client = boto3.client("secretsmanager", region_name=REGION)
    client.create_secret(Name="stratoflow/analytics2/pw", SecretString="not this project's")
    client.create_secret(Name="stratoflow/analytics/bad-name", SecretString="not a reference")
    store = SecretsManagerStore(client, "stratoflow/")
    assert store.put("analytics", "pw", "one-1") is True
    assert store.put("analytics", "pw", "two-2") is False
    assert store.put("analytics", "other", "x-value") is True
    assert store.names("analytics") == ["other", "pw"]
    assert store.get("analytics", "pw") == "two-2"
    tags = client.describe_secret(SecretId="stratoflow/analytics/pw")["Tags"]
    assert {"Key": "stratoflow:project", "Value": "analytics"} in tags
    store.delete("analytics", "pw")
    assert store.names("analytics") == ["other"]
    with pytest.raises(NotFound, match="'pw' not found in project 'analytics'"):
        store.delete("analytics", "pw")
    assert store.put("analytics", "pw", "three") is True  # gone at once: set again straight away
    for project, name, value in [("Analytics", "pw", "v"), ("analytics", "a-b", "v"),
                                 ("analytics", "pw", "")]:  # fmt: skip
        with pytest.raises(InvalidInput):
            store.put(project, name, value)
    assert store.get("analytics", "pw") == "three"


def test_a_lambda_task_with_a_reference_runs_through_the_project_runner(
    stack: Stack, manager: Any
) -> None:
    """The state machine holds the reference; the project's runner resolves it, invokes the
    user's function with the value and reports its result masked. Without a reference the
    task keeps its direct path (the state machine invokes the function)."""
    received: list[Any] = []

    def user_function(event: Any) -> Any:
        received.append(event)
        return {"digest": hashlib.sha256(event["pw"].encode()).hexdigest(), "echo": event["pw"]}

    stack.add_function("user-fn", user_function)
    stack.lambdas["stratoflow-runner"] = lambda event: runner.handle(
        event, lambda: 60.0, s3=stack.s3,
        secrets=SecretsManagerSource(manager, secrets_prefix()), lambda_client=stack.lambda_,
    )  # fmt: skip
    dispatcher = dispatcher_for(stack)
    spec = direct_task('{type: lambda, function: user-fn, payload: {pw: "{{ secrets.canary }}"}}')
    assert dispatcher.refusal(spec) is None
    dispatcher.dispatch(spec)
    message = stack.receive()
    assert message["status"] == "succeeded", message
    assert message["outputs"] == {"digest": DIGEST, "echo": "***"}
    assert received == [{"pw": CANARY}]
    arn = dispatcher.execution_arn(spec.run_id, spec.task_id, spec.attempt)
    stack.wait_execution(arn)
    assert "RunOnLambdaRunner" in stack.states_entered(arn)
    given = json.loads(stack.sfn.describe_execution(executionArn=arn)["input"])
    assert given["task"]["payload"] == {"pw": "{{ secrets.canary }}"}
    assert CANARY not in everything_the_execution_saw(stack, arn)
    assert CANARY not in json.dumps(message)

    # a function error fails the attempt, its message masked
    stack.lambdas["user-fn"] = _raising(CANARY)
    spec = direct_task(
        '{type: lambda, function: user-fn, payload: {pw: "{{ secrets.canary }}"}}', "fails"
    )
    dispatcher.dispatch(spec)
    message = stack.receive()
    assert message["status"] == "failed", message
    assert CANARY not in json.dumps(message)

    # no reference: the direct path, as before
    plain = direct_task("{type: lambda, function: user-fn, payload: {pw: plain}}", "plain")
    stack.lambdas["user-fn"] = user_function
    dispatcher.dispatch(plain)
    assert stack.receive()["outputs"]["echo"] == "plain"
    arn = dispatcher.execution_arn(plain.run_id, plain.task_id, plain.attempt)
    stack.wait_execution(arn)
    assert "InvokeUserFunction" in stack.states_entered(arn)


def _raising(value: str) -> Any:
    def handler(event: Any) -> Any:
        raise RuntimeError(f"could not log in with {value}")

    return handler


def direct_task(task: str, task_id: str = "fn") -> AttemptSpec:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    spec = load_workflow(
        f"name: direct\nproject: analytics\ntasks:\n  {task_id}: {task}\n", now=now
    )
    run, _ = engine.new_run(
        spec, run_id=f"analytics.direct-{task_id}", version=1, params={}, logical_date=now,
        now=now,
    )  # fmt: skip
    return AttemptSpec(
        run_id=run.id, task_id=task_id, attempt=1,
        task=engine.render_task(spec, run, task_id, {}), logical_date=now,
        workflow=spec.name, project=spec.project, timeout=timedelta(seconds=60),
    )  # fmt: skip


def test_a_kubernetes_task_carries_references_in_command_env_and_params_only(
    stack: Stack,
) -> None:
    """Its command and env are resolved in the pod (tests/aws_eks: the manifest, and the
    pod's scripts run for real), and params reach the pod only rendered into them; a
    reference anywhere else still fails at dispatch."""
    dispatcher = dispatcher_for(stack)
    spec = direct_task(
        '{type: kubernetes, image: busybox, command: "echo {{ secrets.canary }}", '
        'env: {PW: "x{{ secrets.canary }}"}}'
    )
    assert dispatcher.refusal(spec) is None
    doc = dispatcher.build_input(spec)
    assert doc["task"]["command"] == "echo {{ secrets.canary }}"
    assert doc["task"]["env"] == {"PW": "x{{ secrets.canary }}"}
    through_params = direct_task(
        '{type: kubernetes, image: busybox, command: ["echo", "{{ params.p }}"], '
        'params: {p: "{{ secrets.canary }}"}}'
    )
    assert dispatcher.refusal(through_params) is None
    built = dispatcher.build_input(through_params)
    assert built["task"]["command"] == ["echo", "{{ secrets.canary }}"]
    assert CANARY not in json.dumps(built)
    for elsewhere in (
        '{type: kubernetes, image: "reg/{{ secrets.canary }}:1", command: [env]}',
        '{type: kubernetes, image: busybox, namespace: "{{ secrets.canary }}", command: [env]}',
    ):
        refused = dispatcher.refusal(direct_task(elsewhere))
        assert refused is not None
        assert "cannot resolve secret references (canary)" in refused
        assert "may have them in its command and env" in refused
