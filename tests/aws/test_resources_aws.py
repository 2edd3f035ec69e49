"""Resource files on AWS (moto, executing the real task-attempt state machine): the store on
a versioned bucket (versions are S3's, delete removes every version, pins are written once
with If-None-Match), the dispatcher putting the pinned version ids in the attempt input, the
runner fetching exactly those versions into the task's working directory after a newer one
was uploaded, and the refusals (a task type the runner does not run, a file gone)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stratoflow import engine
from stratoflow.adapters.aws import batch_resources, runner
from stratoflow.adapters.aws.dispatch import StepFunctionsDispatcher
from stratoflow.adapters.aws.resources import S3Resources, pins_key
from stratoflow.errors import InvalidInput, NotFound
from stratoflow.model import load_workflow
from stratoflow.ports import AttemptSpec
from tests.aws.conftest import SharedIdentity, Stack, dispatcher_for

pytestmark = pytest.mark.slow

WORKFLOW = """
name: files
project: analytics
tasks:
  cat:
    type: shell
    resources: [sql/load.sql, data.csv]
    command: |
      echo "sql=$(cat sql/load.sql)" >> "$STRATOFLOW_OUTPUT"
      echo "csv=$(cat data.csv)" >> "$STRATOFLOW_OUTPUT"
  py:
    type: python
    runner: batch
    resources: [data.csv]
    code: outputs["csv"] = open("data.csv").read()
  pod:
    type: kubernetes
    image: alpine
    command: [cat, data.csv]
    resources: [data.csv]
  image:
    type: batch
    image: alpine
    command: [cat, data.csv]
    resources: [data.csv]
"""
RUN_ID = "analytics.files-1"


def attempt(task_id: str) -> AttemptSpec:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    spec = load_workflow(WORKFLOW, now=now)
    run, _ = engine.new_run(spec, run_id=RUN_ID, version=1, params={}, logical_date=now, now=now)
    return AttemptSpec(
        run_id=run.id, task_id=task_id, attempt=1,
        task=engine.render_task(spec, run, task_id, {}), logical_date=now,
        workflow=spec.name, project=spec.project, timeout=timedelta(seconds=60),
    )  # fmt: skip


@pytest.fixture
def store(stack: Stack) -> S3Resources:
    stack.s3.put_bucket_versioning(
        Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    return S3Resources(stack.s3, stack.bucket)


def test_the_store_keeps_versions_in_s3(store: S3Resources) -> None:
    v1 = store.put("analytics", "sql/load.sql", b"select 1")
    v2 = store.put("analytics", "sql/load.sql", b"select 2")
    store.put("analytics", "data.csv", b"a,b")
    store.put("other", "data.csv", b"not yours")
    assert v1.version != v2.version
    assert v1.sha256 == hashlib.sha256(b"select 1").hexdigest()
    assert [v.sha256 for v in store.versions("analytics", "sql/load.sql")] == [v2.sha256, v1.sha256]
    assert [v.version for v in store.versions("analytics", "sql/load.sql")] == [
        v2.version,
        v1.version,
    ]
    assert store.get("analytics", "sql/load.sql")[1] == b"select 2"
    assert store.get("analytics", "sql/load.sql", v1.version)[1] == b"select 1"
    assert [(f.path, f.version) for f in store.files("analytics")] == [
        ("data.csv", store.versions("analytics", "data.csv")[0].version),
        ("sql/load.sql", v2.version),
    ]
    assert [f.path for f in store.files("analytics", "sql/")] == ["sql/load.sql"]
    with pytest.raises(NotFound, match="has no version"):
        store.get("analytics", "sql/load.sql", "no-such-version")
    store.delete("analytics", "sql/load.sql")
    with pytest.raises(NotFound):
        store.versions("analytics", "sql/load.sql")
    with pytest.raises(NotFound):
        store.get("analytics", "sql/load.sql", v1.version)  # every version went
    with pytest.raises(InvalidInput, match=r"'\.\.'"):
        store.put("analytics", "../other/data.csv", b"x")
    assert store.get("other", "data.csv")[1] == b"not yours"


def test_pins_are_written_once(store: S3Resources, stack: Stack) -> None:
    first = store.put("analytics", "data.csv", b"1").version
    with pytest.raises(InvalidInput, match=r"resource 'sql/load\.sql' not found in project"):
        store.pin(RUN_ID, "analytics", ["data.csv", "sql/load.sql"])
    assert store.pin(RUN_ID, "analytics", ["data.csv"]) == {"data.csv": first}
    store.put("analytics", "data.csv", b"2")
    # a second writer racing the first (the conditional put refuses it): the first pins win
    assert store._record_pins(RUN_ID, "analytics", {"data.csv": "other"}) == {"data.csv": first}
    record = json.loads(
        stack.s3.get_object(Bucket=stack.bucket, Key=pins_key(RUN_ID))["Body"].read()
    )
    assert record == {"run_id": RUN_ID, "project": "analytics", "pins": {"data.csv": first}}


def _runner(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATOFLOW_PROJECT", "analytics")  # the project's runner function
    stack.lambdas["stratoflow-runner"] = lambda event: runner.handle(
        event, lambda: 60.0, s3=stack.s3
    )


def test_the_runner_fetches_the_pinned_versions(
    store: S3Resources, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    _runner(stack, monkeypatch)
    store.put("analytics", "sql/load.sql", b"select old")
    store.put("analytics", "data.csv", b"old,csv")
    pins = store.pin(RUN_ID, "analytics", ["sql/load.sql", "data.csv"])
    store.put("analytics", "sql/load.sql", b"select new")  # after the run was created

    dispatcher = dispatcher_for(stack, resources=store)
    spec = attempt("cat")
    assert dispatcher.refusal(spec) is None
    doc = dispatcher.build_input(spec)
    assert doc["resources"] == [
        {"path": "sql/load.sql", "version": pins["sql/load.sql"],
         "uri": f"s3://{stack.bucket}/resources/analytics/sql/load.sql"},
        {"path": "data.csv", "version": pins["data.csv"],
         "uri": f"s3://{stack.bucket}/resources/analytics/data.csv"},
    ]  # fmt: skip
    dispatcher.dispatch(spec)
    message = stack.receive()
    assert message["status"] == "succeeded", message
    assert message["outputs"] == {"sql": "select old", "csv": "old,csv"}


def test_the_batch_runner_fetches_them_too(
    store: S3Resources, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATOFLOW_PROJECT", "analytics")
    store.put("analytics", "data.csv", b"pinned")
    store.pin(RUN_ID, "analytics", ["data.csv"])
    store.put("analytics", "data.csv", b"newer")
    doc = dispatcher_for(stack, resources=store).build_input(attempt("py"))
    env = {e["Name"]: e["Value"] for e in doc["batch"]["container_overrides"]["Environment"]}
    assert runner.run_batch(env, [], stack.s3) == 0
    bucket, _, key = doc["outputs_uri"][5:].partition("/")
    assert json.loads(stack.s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == {
        "csv": "pinned"
    }


def test_a_file_deleted_since_the_run_started_fails_the_task_naming_it(
    store: S3Resources, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    _runner(stack, monkeypatch)
    store.put("analytics", "sql/load.sql", b"x")
    store.put("analytics", "data.csv", b"y")
    store.pin(RUN_ID, "analytics", ["sql/load.sql", "data.csv"])
    store.delete("analytics", "data.csv")
    dispatcher_for(stack, resources=store).dispatch(attempt("cat"))
    message = stack.receive()
    assert message["status"] == "failed"
    assert "resource 'data.csv' version" in message["error"]
    assert "could not be fetched" in message["error"]


def test_an_input_naming_another_projects_file_is_refused(
    tmp_path: Any, store: S3Resources
) -> None:
    store.put("other", "data.csv", b"secret")
    doc = {
        "task_id": "t", "attempt": 1, "context": {"project": "analytics"},
        "resources": [{"path": "data.csv", "version": "v",
                       "uri": f"s3://{store.bucket}/resources/other/data.csv"}],
    }  # fmt: skip
    with pytest.raises(runner.AttemptInputError, match="not project 'analytics'"):
        runner.place_resources(doc, tmp_path, store._s3, "t.1")
    assert list(tmp_path.iterdir()) == []


def test_a_kubernetes_task_gets_them_through_its_pod(store: S3Resources, stack: Stack) -> None:
    version = store.put("analytics", "data.csv", b"pinned").version
    store.pin(RUN_ID, "analytics", ["data.csv"])
    dispatcher = dispatcher_for(stack, resources=store)
    spec = attempt("pod")
    assert dispatcher.refusal(spec) is None
    doc = dispatcher.build_input(spec)
    # the launcher turns these into the reporter's fetches (tests/aws_eks/test_resources_pod.py)
    assert doc["resources"] == [
        {"path": "data.csv", "version": version,
         "uri": f"s3://{stack.bucket}/resources/analytics/data.csv"},
    ]  # fmt: skip


class RecordingBatch:
    """Batch as the dispatcher calls it, recording what it registers: moto (5.2) registers no
    ``ecsProperties`` job definition ("containerProperties or eksProperties must be
    provided"), so the multi-container definition is checked as sent."""

    def __init__(self, moto_batch: Any) -> None:
        self.moto = moto_batch
        self.registered: list[dict[str, Any]] = []

    def describe_job_definitions(self, **kwargs: Any) -> dict[str, Any]:
        if "jobDefinitionName" in kwargs:
            found = [
                {"jobDefinitionArn": f"arn:aws:batch:us-east-1:123456789012:job-definition/{r['jobDefinitionName']}:1", "revision": 1}
                for r in self.registered
                if r["jobDefinitionName"] == kwargs["jobDefinitionName"]
            ]  # fmt: skip
            return {"jobDefinitions": found}
        return self.moto.describe_job_definitions(**kwargs)  # type: ignore[no-any-return]

    def register_job_definition(self, **kwargs: Any) -> dict[str, Any]:
        self.registered.append(kwargs)
        name = kwargs["jobDefinitionName"]
        return {"jobDefinitionArn": f"arn:aws:batch:us-east-1:123456789012:job-definition/{name}:1"}


def test_a_batch_task_gets_them_through_a_fetch_container(store: S3Resources, stack: Stack) -> None:
    # GIVEN a run that pinned data.csv, then a newer upload
    version = store.put("analytics", "data.csv", b"pinned").version
    store.pin(RUN_ID, "analytics", ["data.csv"])
    store.put("analytics", "data.csv", b"newer")
    batch = RecordingBatch(stack.batch)
    role = "arn:aws:iam::123456789012:role/stratoflow-analytics"
    dispatcher = StepFunctionsDispatcher(
        stack.state_machine_arn, client=stack.sfn, batch_client=batch, s3_client=stack.s3,
        bucket=stack.bucket, job_queue=stack.job_queue_arn,
        runner_job_definition=stack.runner_job_definition_arn, resources=store,
        identities=SharedIdentity(stack.runner_function_arn, role_arn=role),
    )  # fmt: skip
    spec = attempt("image")
    assert dispatcher.refusal(spec) is None
    # WHEN it is dispatched
    job = dispatcher.build_input(spec)["batch"]
    # THEN the job definition (one per image and role) is a multi-container one: the fetch
    # container (the AWS CLI image) and the user's image, which starts after the fetch
    # succeeded, both mounting the task volume at /stratoflow/work, run as the project's role
    (sent,) = batch.registered
    assert "containerProperties" not in sent
    (task_props,) = sent["ecsProperties"]["taskProperties"]
    assert task_props["taskRoleArn"] == role
    assert task_props["volumes"] == [{"name": batch_resources.VOLUME}]
    fetch, user = task_props["containers"]
    assert fetch["name"] == batch_resources.FETCH_CONTAINER
    assert fetch["image"] == batch_resources.DEFAULT_FETCH_IMAGE
    assert fetch["essential"] is False
    assert fetch["command"] == ["/bin/sh", "-c", batch_resources.FETCH_SCRIPT]
    assert user["image"] == "alpine"
    assert user["essential"] is True
    assert user["dependsOn"] == [
        {"containerName": batch_resources.FETCH_CONTAINER, "condition": "SUCCESS"}
    ]
    mount = [
        {"sourceVolume": "stratoflow-work", "containerPath": "/stratoflow/work", "readOnly": False}
    ]
    assert fetch["mountPoints"] == user["mountPoints"] == mount
    # the job's overrides: the version the run pinned (not the newer one), and the command
    # run in the volume
    assert "container_overrides" not in job
    (override,) = job["ecs_properties_override"]["TaskProperties"]
    fetch_o, user_o = override["Containers"]
    env = {e["Name"]: e["Value"] for e in fetch_o["Environment"]}
    assert env == {
        "STRATOFLOW_RESOURCES": f"{version} data.csv",
        "STRATOFLOW_RESOURCES_BUCKET": stack.bucket,
        "STRATOFLOW_RESOURCES_PREFIX": "resources/analytics/",
        "STRATOFLOW_RESOURCES_DIR": "/stratoflow/work",
    }
    assert user_o["Name"] == "task"
    assert user_o["Command"] == [
        "/bin/sh", "-c", 'cd /stratoflow/work || exit 1\nexec "$@"\n', "stratoflow-batch",
        "cat", "data.csv",
    ]  # fmt: skip
    assert {"Type": "VCPU", "Value": "1"} in user_o["ResourceRequirements"]
    # a second attempt reuses the definition
    dispatcher.build_input(attempt("image"))
    assert len(batch.registered) == 1


def test_the_state_machine_submits_it_with_the_ecs_override(
    store: S3Resources, stack: Stack
) -> None:
    # GIVEN the input of a batch task with files (dispatched as above)
    store.put("analytics", "data.csv", b"pinned")
    store.pin(RUN_ID, "analytics", ["data.csv"])
    batch = RecordingBatch(stack.batch)
    dispatcher = StepFunctionsDispatcher(
        stack.state_machine_arn, client=stack.sfn, batch_client=batch, s3_client=stack.s3,
        bucket=stack.bucket, job_queue=stack.job_queue_arn,
        runner_job_definition=stack.runner_job_definition_arn, resources=store,
        identities=SharedIdentity(stack.runner_function_arn),
    )  # fmt: skip
    spec = attempt("image")
    doc = dispatcher.build_input(spec)
    # moto registers no ecsProperties definition: the job runs under the runner's (moto's
    # SubmitJob ignores the ECS override); what this shows is the route and that the
    # override passes botocore's SubmitJob shape (ecsPropertiesOverride) as Step Functions
    # sends it
    doc["batch"]["job_definition"] = stack.runner_job_definition_arn
    name = "files-batch-1"
    stack.sfn.start_execution(
        stateMachineArn=stack.state_machine_arn, name=name, input=json.dumps(doc)
    )
    # WHEN it runs THEN it goes through RunBatchJobWithFiles and reports success
    assert stack.receive()["status"] == "succeeded"
    arn = stack.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
    stack.wait_execution(arn)
    assert stack.states_entered(arn) == [
        "Route",
        "RunBatchJobWithFiles",
        "ReportBatchSucceeded",
    ]


def test_refusals_name_the_reason(store: S3Resources, stack: Stack) -> None:
    dispatcher = dispatcher_for(stack, resources=store)
    store.put("analytics", "data.csv", b"x")
    store.pin(RUN_ID, "analytics", ["data.csv"])
    spec = attempt("image")
    # a batch task that runs the image's own CMD cannot be moved into the volume
    no_command = replace(spec, task=replace(spec.task, fields={**spec.task.fields, "command": []}))
    assert "needs a command" in (dispatcher.refusal(no_command) or "")
    # too long a list for the fetch container's overrides
    many = [f"d{i}/" + "x" * 120 for i in range(40)]
    assert "more than the 4096" in (
        batch_resources.refusal(
            ["true"],
            [{"path": p, "version": "v" * 32,
              "uri": f"s3://b/resources/analytics/{p}"} for p in many],
            "analytics",
        ) or ""
    )  # fmt: skip
    # a file of another project's is never handed to the fetch container
    other = [{"path": "a", "version": "v", "uri": "s3://b/resources/other/a"}]
    assert "not project 'analytics'" in (
        batch_resources.refusal(["true"], other, "analytics") or ""
    )
    # a run created before its tasks listed resources: nothing was pinned
    assert "'sql/load.sql' was not pinned" in (dispatcher.refusal(attempt("cat")) or "")
    assert "keeps no resource files" in (dispatcher_for(stack).refusal(attempt("cat")) or "")
