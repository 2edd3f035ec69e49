"""The Job a kubernetes attempt becomes: the fields that matter, asserted one by one (not a
snapshot), and the clear errors bad input gets. A real API server's validation cannot run here
(no cluster); names and quantities are checked against the Kubernetes grammars instead."""

from __future__ import annotations

import re
from typing import Any

import pytest

from stratoflow.adapters.aws.eks import (
    DEFAULT_REPORTER_IMAGE,
    POD_TERMINATION_GRACE_SECONDS,
    EksSettings,
    InvalidTask,
    build_job,
    job_name,
    label_value,
    reporter_script,
    task_script,
)
from stratoflow.adapters.aws.projects import service_account_name

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
SETTINGS = EksSettings(cluster="prod", namespace="stratoflow", heartbeat_seconds=30)


def execution_input(**task: Any) -> dict[str, Any]:
    fields = {"image": "python:3.12-slim", "command": ["python", "-c", "print(1)"], **task}
    return {
        "run_id": "sales_daily-20261121T020000-abc123",
        "task_id": "load_orders",
        "attempt": 2,
        "key": "sales_daily-20261121T020000-abc123/load_orders/2",
        "type": "kubernetes",
        "runner": None,
        "not_before": None,
        "timeout_seconds": 900,
        "service_account": service_account_name("analytics"),
        "task": {**fields, "params": {"region": "eu"}, "env": {"MODE": "full"}},
        "context": {
            "workflow": "sales_daily",
            "project": "analytics",
            "logical_date": "2026-11-21T02:00:00Z",
        },
    }


def containers(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in job["spec"]["template"]["spec"]["containers"]}


def test_job_spec_fields_that_matter() -> None:
    request = build_job(execution_input(cpu="500m", memory="1Gi"), "token-abc", SETTINGS)
    job = request.job
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    assert (
        job["metadata"]["name"]
        == request.name
        == job_name("sales_daily-20261121T020000-abc123", "load_orders", 2)
    )
    assert job["metadata"]["namespace"] == "stratoflow"  # the task said nothing: the stack's
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 900
    assert spec["ttlSecondsAfterFinished"] == 3600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    # what a timed-out attempt's retry waits for (dispatch.timed_out_grace), set, not assumed
    assert pod["terminationGracePeriodSeconds"] == POD_TERMINATION_GRACE_SECONDS == 30
    # the project's own service account (the dispatcher names it; its role is the project's)
    assert pod["serviceAccountName"] == service_account_name("analytics")
    assert request.account == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": service_account_name("analytics"),
            "namespace": "stratoflow",
            "labels": {"app.kubernetes.io/managed-by": "stratoflow"},
        },
    }
    # the reporter is first, so it starts (and heartbeats) while the task image is pulled
    assert [c["name"] for c in pod["containers"]] == ["reporter", "task"]
    assert {v["name"]: v for v in pod["volumes"]} == {
        "stratoflow": {"name": "stratoflow", "emptyDir": {}},
        "token": {"name": "token", "secret": {"secretName": request.name}},
    }
    task = containers(job)["task"]
    assert task["image"] == "python:3.12-slim"
    assert task["command"][:2] == ["/bin/sh", "-c"]
    assert task["command"][2] == task_script()
    assert task["command"][3:] == ["stratoflow-task", "python", "-c", "print(1)"]
    assert task["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "500m", "memory": "1Gi"},
    }
    env = {e["name"]: e["value"] for e in task["env"]}
    assert env["MODE"] == "full"
    assert env["STRATOFLOW_RUN_ID"] == "sales_daily-20261121T020000-abc123"
    assert env["STRATOFLOW_ATTEMPT"] == "2"
    assert env["STRATOFLOW_LOGICAL_DATE"] == "2026-11-21T02:00:00Z"
    assert task["volumeMounts"] == [{"name": "stratoflow", "mountPath": "/stratoflow"}]
    reporter = containers(job)["reporter"]
    assert reporter["image"] == DEFAULT_REPORTER_IMAGE
    # no requests of its own: on Fargate they would round the pod up to the next size
    assert reporter["resources"] == {}
    assert reporter["command"][:3] == ["/bin/sh", "-c", reporter_script()]
    reporter_env = {e["name"]: e["value"] for e in reporter["env"]}
    assert reporter_env["STRATOFLOW_TOKEN_FILE"] == "/var/run/stratoflow/task-token"
    assert reporter_env["STRATOFLOW_HEARTBEAT_SECONDS"] == "30"
    assert {"name": "token", "mountPath": "/var/run/stratoflow", "readOnly": True} in reporter[
        "volumeMounts"
    ]


def test_with_irsa_the_service_account_is_annotated_with_the_project_role() -> None:
    role = "arn:aws:iam::123456789012:role/stratoflow/sf/sf-p-0123456789"
    event = {**execution_input(namespace="etl"), "role_arn": role}
    request = build_job(event, "token-abc", SETTINGS)
    assert request.account["metadata"]["namespace"] == "etl"
    assert request.account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role}


def test_an_input_naming_no_service_account_runs_as_the_default_one() -> None:
    event = execution_input()
    del event["service_account"]
    request = build_job(event, "token-abc", SETTINGS)
    assert request.job["spec"]["template"]["spec"]["serviceAccountName"] == "stratoflow-reporter"
    assert "annotations" not in request.account["metadata"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"service_account": "Not_A_Name"}, "service_account 'Not_A_Name' is not a valid"),
        ({"service_account": 7}, "service_account 7 is not a valid"),
        ({"role_arn": "arn:aws:iam::123456789012:user/x"}, "is not an IAM role ARN"),
        ({"role_arn": ""}, "is not an IAM role ARN"),
    ],
)
def test_bad_service_account_or_role_is_named(change: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidTask, match=re.escape(words)):
        build_job({**execution_input(), **change}, "token-abc", SETTINGS)


def test_the_token_is_in_the_secret_only() -> None:
    request = build_job(execution_input(), "token-abc-123", SETTINGS)
    assert "token-abc-123" not in repr(request.job)
    assert "token-abc-123" not in repr(request)  # the dataclass keeps it out of logs too
    assert request.secret["stringData"] == {"task-token": "token-abc-123"}
    assert request.secret["metadata"]["name"] == request.name
    assert request.secret["metadata"]["namespace"] == "stratoflow"


def test_labels_and_annotations_name_run_task_attempt() -> None:
    job = build_job(execution_input(), "t", SETTINGS).job
    meta = job["metadata"]
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "stratoflow",
        "stratoflow.io/run": "sales_daily-20261121T020000-abc123",
        "stratoflow.io/task": "load_orders",
        "stratoflow.io/attempt": "2",
    }
    assert meta["annotations"]["stratoflow.io/run-id"] == "sales_daily-20261121T020000-abc123"
    assert meta["annotations"]["stratoflow.io/workflow"] == "sales_daily"
    assert meta["annotations"]["stratoflow.io/project"] == "analytics"
    assert job["spec"]["template"]["metadata"]["labels"] == meta["labels"]


def test_string_command_runs_through_sh_and_namespace_from_task() -> None:
    job = build_job(
        execution_input(command="echo rows=1 >> $STRATOFLOW_OUTPUT", namespace="etl"), "t", SETTINGS
    ).job
    assert job["metadata"]["namespace"] == "etl"
    assert containers(job)["task"]["command"][3:] == [
        "stratoflow-task",
        "/bin/sh",
        "-c",
        "echo rows=1 >> $STRATOFLOW_OUTPUT",
    ]


def test_a_task_may_name_the_default_namespace_explicitly() -> None:
    job = build_job(execution_input(namespace="default"), "t", SETTINGS).job
    assert job["metadata"]["namespace"] == "default"  # not replaced by the stack's


def test_nested_fields_and_no_timeout() -> None:
    event = execution_input()
    event["task"] = {"fields": {"image": "busybox", "command": ["true"]}, "env": {}, "params": {}}
    event["timeout_seconds"] = None
    job = build_job(event, "t", SETTINGS).job
    assert containers(job)["task"]["image"] == "busybox"
    assert "activeDeadlineSeconds" not in job["spec"]
    assert containers(job)["task"]["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}


def test_job_names_are_dns_labels_deterministic_and_distinct() -> None:
    long_run = "a_very_long_workflow_name_" * 4 + "-20261121T020000-abc123"
    names = {
        job_name(run, task, attempt)
        for run in ("r1", "r2", long_run)
        for task in ("Load_Orders", "load-orders", "x" * 200, "__")
        for attempt in (1, 2, 100)
    }
    assert len(names) == 3 * 4 * 3  # no two attempts share a Job
    for name in names:
        assert DNS_LABEL.match(name), name
        assert len(name) <= 63, name
    assert job_name("r1", "Load_Orders", 1) == job_name("r1", "Load_Orders", 1)
    assert job_name("r1", "Load_Orders", 1).startswith("sf-load-orders-1-")


@pytest.mark.parametrize(
    "text", ["ok", "run-20261121", "x" * 63, "x" * 64, "has space", "-leading", "ünï", "a/b:c"]
)
def test_label_values_are_always_valid(text: str) -> None:
    value = label_value(text)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value), value
    if len(text) <= 63 and LABEL_VALUE.match(text):
        assert value == text


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"image": ""}, "image must be a non-empty string"),
        ({"command": []}, "command must be a non-empty"),
        ({"command": "  "}, "command must be a non-empty"),
        ({"cpu": "lots"}, "cpu 'lots' is not a Kubernetes quantity"),
        ({"memory": "2 GB"}, "memory '2 GB' is not a Kubernetes quantity"),
        ({"namespace": "Bad_NS"}, "namespace 'Bad_NS' is not a valid"),
        ({"env": ["A=1"]}, "env must be an object"),
    ],
)
def test_bad_task_fields_are_named(change: dict[str, Any], words: str) -> None:
    event = execution_input()
    event["task"] = {**event["task"], **change}
    with pytest.raises(InvalidTask, match=re.escape(words)):
        build_job(event, "t", SETTINGS)


@pytest.mark.parametrize(
    ("event", "token", "words"),
    [
        (None, "t", "no 'input' object"),
        ({"run_id": "r"}, "t", "lacks run_id, task_id, attempt or task"),
        ({"run_id": "r", "task_id": "t", "attempt": "x", "task": {}}, "t", "lacks run_id"),
        (
            {"run_id": "r", "task_id": "t", "attempt": 1, "task": []},
            "t",
            "'task' must be an object",
        ),
        (execution_input(), "", "task_token is empty"),
        ({**execution_input(), "timeout_seconds": -5}, "t", "timeout_seconds must be a positive"),
        ({**execution_input(), "timeout_seconds": True}, "t", "timeout_seconds must be a positive"),
    ],
)
def test_bad_execution_input_is_named(event: Any, token: str, words: str) -> None:
    with pytest.raises(InvalidTask, match=re.escape(words)):
        build_job(event, token, SETTINGS)


def test_settings_from_env() -> None:
    settings = EksSettings.from_env(
        {
            "STRATOFLOW_EKS_CLUSTER": "prod",
            "STRATOFLOW_EKS_NAMESPACE": "jobs",
            "STRATOFLOW_EKS_REPORTER_IMAGE": "registry.local/aws-cli:2",
            "STRATOFLOW_EKS_JOB_TTL_SECONDS": "600",
            "STRATOFLOW_EKS_HEARTBEAT_SECONDS": "0",
        }
    )
    assert settings == EksSettings(
        cluster="prod",
        namespace="jobs",
        reporter_image="registry.local/aws-cli:2",
        ttl_seconds_after_finished=600,
        heartbeat_seconds=0,
    )
    assert EksSettings.from_env({"STRATOFLOW_EKS_CLUSTER": "c"}).namespace == "default"
    with pytest.raises(ValueError, match="STRATOFLOW_EKS_CLUSTER is not set"):
        EksSettings.from_env({})
    with pytest.raises(ValueError, match="STRATOFLOW_EKS_JOB_TTL_SECONDS must be a whole number"):
        EksSettings.from_env(
            {"STRATOFLOW_EKS_CLUSTER": "c", "STRATOFLOW_EKS_JOB_TTL_SECONDS": "1h"}
        )


def test_secret_references_go_as_names_and_an_in_memory_volume_never_as_values() -> None:
    """The manifest names the secrets; the reporter reads them as the pod's role into a
    tmpfs emptyDir shared with the task container only (eks_task.sh puts them in place)."""
    task = execution_input(command='psql "$URL" -c "select 1" -W {{ secrets.pw }}')
    task["task"]["env"] = {"URL": "db://u:{{ secrets.db }}@h", "MODE": "full"}
    job = build_job(task, "token-abc", SETTINGS).job
    pod = job["spec"]["template"]["spec"]
    by_name = containers(job)
    task_env = {e["name"]: e["value"] for e in by_name["task"]["env"]}
    reporter_env = {e["name"]: e["value"] for e in by_name["reporter"]["env"]}
    assert task_env["URL"] == "db://u:{{ secrets.db }}@h"  # the reference, resolved in the pod
    assert task_env["STRATOFLOW_SECRET_NAMES"] == "db pw"
    assert task_env["STRATOFLOW_SECRET_ENV"] == "URL"
    assert reporter_env["STRATOFLOW_SECRET_NAMES"] == "db pw"
    assert reporter_env["STRATOFLOW_SECRETS_PATH"] == "stratoflow/analytics/"
    assert reporter_env["STRATOFLOW_PROJECT"] == "analytics"
    assert "STRATOFLOW_SECRETS_PATH" not in task_env
    [volume] = [v for v in pod["volumes"] if v["name"] == "secrets"]
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Mi"}
    mounts = {c: {m["name"]: m for m in by_name[c]["volumeMounts"]} for c in by_name}
    assert mounts["task"]["secrets"]["readOnly"] is True
    assert mounts["reporter"]["secrets"].get("readOnly") is not True  # it writes the values
    assert by_name["task"]["command"][-1] == 'psql "$URL" -c "select 1" -W {{ secrets.pw }}'


def test_a_task_without_references_has_no_secrets_volume_or_settings() -> None:
    job = build_job(execution_input(), "token-abc", SETTINGS).job
    assert [v["name"] for v in job["spec"]["template"]["spec"]["volumes"]] == [
        "stratoflow",
        "token",
    ]
    names = {e["name"] for c in containers(job).values() for e in c["env"]}
    assert not {n for n in names if n.startswith("STRATOFLOW_SECRET")}


@pytest.mark.parametrize(
    ("env", "context", "words"),
    [
        ({"not-a-name": "{{ secrets.pw }}"}, None, "env 'not-a-name' holds a secret reference"),
        ({"A": "{{ secrets.pw }}"}, {"workflow": "w"}, "context.project is needed"),
        ({f"V{i}": f"{{{{ secrets.s{i} }}}}" for i in range(17)}, None, "at most 16"),
    ],
)
def test_bad_secret_references_are_named(
    env: dict[str, str], context: dict[str, str] | None, words: str
) -> None:
    task = execution_input()
    task["task"]["env"] = env
    if context is not None:
        task["context"] = context
    with pytest.raises(InvalidTask, match=re.escape(words)):
        build_job(task, "token-abc", SETTINGS)
