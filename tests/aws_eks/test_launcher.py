"""The launcher against a Kubernetes API over real HTTPS on 127.0.0.1 (conftest.FakeKube),
with eks:DescribeCluster from moto.

What cannot be exercised here: a real EKS control plane (authenticating the token, RBAC from
the access entry, admission of the Job) and a kubelet running the pod. The nearest boundaries
are tested instead: the requests that go over the wire (paths, bodies, the bearer token, TLS
trusting only the cluster CA), the API's answers (201, 409, 404, 422, 5xx), and moto's
DescribeCluster for endpoint and CA. The pod's side is tests/aws_eks/test_reporter.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import trustme
from botocore.credentials import Credentials
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.eks.models import eks_backends

from stratoflow.adapters.aws.eks import (
    FAILURE_INVALID,
    FAILURE_REJECTED,
    IRSA_ANNOTATION,
    TOKEN_PREFIX,
    ClusterAccess,
    EksJobs,
    EksSettings,
    JobRejected,
    KubernetesApi,
    KubernetesUnavailable,
    describe_cluster,
    handle,
    job_name,
)
from stratoflow.adapters.aws.projects import service_account_name
from tests.aws_eks.conftest import FakeKube, ca_data
from tests.aws_eks.test_manifest import execution_input

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
CLUSTER = "prod"


@dataclass
class RecordingSfn:
    """Stands in for the Step Functions client: these calls need a real waiting task token,
    which only a running execution has; the test checks what would be sent."""

    calls: list[dict[str, Any]]

    def send_task_failure(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def point_cluster_at(kube: FakeKube, ca_pem: str | None = None) -> None:
    """Create the cluster in moto and make DescribeCluster return the fake API's endpoint and
    CA (moto makes up an unreachable endpoint and a random CA string otherwise)."""
    eks = boto3.client("eks", region_name=REGION)
    eks.create_cluster(
        name=CLUSTER,
        roleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/eks",
        resourcesVpcConfig={"subnetIds": ["subnet-1"]},
    )
    cluster = eks_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[CLUSTER]
    cluster.endpoint = kube.url
    cluster.certificate_authority = {"data": ca_data(ca_pem or kube.ca_pem)}


def make_jobs(settings: EksSettings | None = None) -> EksJobs:
    return EksJobs(
        settings or EksSettings(cluster=CLUSTER, namespace="stratoflow"),
        eks_client=boto3.client("eks", region_name=REGION),
        credentials=lambda: Credentials("AKIDEXAMPLE", "secret"),
        region=REGION,
    )


def test_describe_cluster_decodes_the_ca(aws: None, fake_kube: FakeKube) -> None:
    point_cluster_at(fake_kube)
    access = describe_cluster(boto3.client("eks", region_name=REGION), CLUSTER)
    assert access == ClusterAccess(fake_kube.url, fake_kube.ca_pem)
    assert access.ca_pem.startswith("-----BEGIN CERTIFICATE-----")


def test_describe_cluster_with_a_garbled_ca_is_refused(aws: None, fake_kube: FakeKube) -> None:
    point_cluster_at(fake_kube)
    eks_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[CLUSTER].certificate_authority = {
        "data": "%%"
    }
    with pytest.raises(JobRejected, match="certificateAuthority is not base64 PEM"):
        describe_cluster(boto3.client("eks", region_name=REGION), CLUSTER)


def test_launch_creates_job_and_owned_token_secret(aws: None, fake_kube: FakeKube) -> None:
    point_cluster_at(fake_kube)
    result = make_jobs().launch(execution_input(), "token-1")
    name = job_name("sales_daily-20261121T020000-abc123", "load_orders", 2)
    assert (result.name, result.namespace, result.created) == (name, "stratoflow", True)
    posts = [r for r in fake_kube.requests if r.method == "POST"]
    assert [r.path for r in posts] == [
        "/api/v1/namespaces/stratoflow/serviceaccounts",  # the project's, before its pods
        "/apis/batch/v1/namespaces/stratoflow/jobs",
        "/api/v1/namespaces/stratoflow/secrets",
    ]
    assert posts[1].body["metadata"]["name"] == name
    assert posts[1].body["spec"]["backoffLimit"] == 0
    account = service_account_name("analytics")
    assert fake_kube.get("serviceaccounts", "stratoflow", account) is not None
    assert posts[1].body["spec"]["template"]["spec"]["serviceAccountName"] == account
    job = fake_kube.get("jobs", "stratoflow", name)
    secret = fake_kube.get("secrets", "stratoflow", name)
    assert job is not None
    assert secret is not None
    assert secret["stringData"] == {"task-token": "token-1"}
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"]}
    ]
    for request in fake_kube.requests:
        auth = request.headers["Authorization"]
        assert auth.startswith(f"Bearer {TOKEN_PREFIX}")


def test_the_service_account_is_made_once_and_kept_when_it_exists(
    aws: None, fake_kube: FakeKube
) -> None:
    """Idempotent: an account that exists (409, made by another container) is used as it is;
    a container asks for each account once."""
    point_cluster_at(fake_kube)
    account = service_account_name("analytics")
    fake_kube.objects[("serviceaccounts", "stratoflow", account)] = {
        "metadata": {"name": account, "namespace": "stratoflow", "uid": "u-1"}
    }
    jobs = make_jobs()
    jobs.launch(execution_input(), "token-1")
    jobs.launch({**execution_input(), "task_id": "other"}, "token-2")
    calls = [(r.method, r.path) for r in fake_kube.requests if "serviceaccounts" in r.path]
    assert calls == [
        ("POST", "/api/v1/namespaces/stratoflow/serviceaccounts"),
        ("GET", f"/api/v1/namespaces/stratoflow/serviceaccounts/{account}"),  # as wanted: kept
    ]
    assert fake_kube.get("serviceaccounts", "stratoflow", account)["metadata"]["uid"] == "u-1"
    assert len(fake_kube.jobs()) == 2


def test_with_irsa_an_existing_account_gets_the_role_annotation(
    aws: None, fake_kube: FakeKube
) -> None:
    """A stack given an OIDC issuer later: the account made before lacks the annotation, and
    the launcher adds it, keeping what else it carries."""
    point_cluster_at(fake_kube)
    account = service_account_name("analytics")
    fake_kube.objects[("serviceaccounts", "stratoflow", account)] = {
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": account, "namespace": "stratoflow", "uid": "u-1",
                     "annotations": {"team": "data"}},
    }  # fmt: skip
    role = "arn:aws:iam::123456789012:role/stratoflow/sf/sf-p-0123456789"
    make_jobs().launch({**execution_input(), "role_arn": role}, "token-1")
    found = fake_kube.get("serviceaccounts", "stratoflow", account)
    assert found["metadata"]["annotations"] == {"team": "data", IRSA_ANNOTATION: role}
    # made fresh, the account carries it from the start
    other = service_account_name("billing")
    event = {**execution_input(), "service_account": other, "role_arn": role}
    make_jobs().launch(event, "token-2")
    assert fake_kube.get("serviceaccounts", "stratoflow", other)["metadata"]["annotations"] == {
        IRSA_ANNOTATION: role
    }


def test_without_irsa_the_launcher_takes_its_own_annotation_off_and_no_one_elses(
    aws: None, fake_kube: FakeKube
) -> None:
    """The stack's OIDC issuer was removed: the role no longer trusts the web identity, so an
    account Stratoflow made loses the annotation (else the pod's SDK would try it first); an
    account someone else made keeps whatever it has."""
    point_cluster_at(fake_kube)
    role = "arn:aws:iam::123456789012:role/stratoflow/sf/sf-p-0123456789"
    account = service_account_name("analytics")
    make_jobs().launch({**execution_input(), "role_arn": role}, "token-1")
    make_jobs().launch(execution_input(), "token-2")
    found = fake_kube.get("serviceaccounts", "stratoflow", account)
    assert found["metadata"]["annotations"] == {}
    fake_kube.objects[("serviceaccounts", "stratoflow", "theirs")] = {
        "metadata": {"name": "theirs", "namespace": "stratoflow", "uid": "u-2",
                     "annotations": {IRSA_ANNOTATION: role}},
    }  # fmt: skip
    make_jobs().launch({**execution_input(), "service_account": "theirs"}, "token-3")
    theirs = fake_kube.get("serviceaccounts", "stratoflow", "theirs")
    assert theirs["metadata"]["annotations"] == {IRSA_ANNOTATION: role}


def test_a_retried_launch_is_one_job_with_the_new_token(aws: None, fake_kube: FakeKube) -> None:
    """A state Retry invokes the launcher again with a new task token: the Job is not created
    twice (409 AlreadyExists), and its Secret now holds the token Step Functions waits on."""
    point_cluster_at(fake_kube)
    jobs = make_jobs()
    first = jobs.launch(execution_input(), "token-1")
    again = jobs.launch(execution_input(), "token-2")
    assert first.created
    assert not again.created
    assert len(fake_kube.jobs()) == 1
    secret = fake_kube.get("secrets", "stratoflow", first.name)
    assert secret is not None
    assert secret["stringData"] == {"task-token": "token-2"}
    # the service account once (this container made it), then the Job and Secret twice
    methods = [r.method for r in fake_kube.requests]
    assert methods == ["POST", "POST", "POST", "POST", "GET", "POST", "PUT"]


def test_tls_trusts_only_the_cluster_ca(aws: None, fake_kube: FakeKube) -> None:
    """With another CA in DescribeCluster's answer the handshake fails: the client does not
    fall back to the system store or to no verification."""
    point_cluster_at(fake_kube, ca_pem=trustme.CA().cert_pem.bytes().decode())
    with pytest.raises(KubernetesUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|ConnectError"):
        make_jobs().launch(execution_input(), "token-1")
    assert fake_kube.jobs() == []


def test_refusals_and_outages_are_told_apart(aws: None, fake_kube: FakeKube) -> None:
    point_cluster_at(fake_kube)
    fake_kube.fail[("POST", "jobs")] = 422
    with pytest.raises(JobRejected, match="HTTP 422: jobs refused by the test") as refused:
        make_jobs().launch(execution_input(), "t")
    assert refused.value.status == 422
    fake_kube.fail[("POST", "jobs")] = 503
    with pytest.raises(KubernetesUnavailable, match="HTTP 503") as outage:
        make_jobs().launch(execution_input(), "t")
    assert outage.value.status == 503
    fake_kube.fail[("POST", "jobs")] = 429
    with pytest.raises(KubernetesUnavailable, match="HTTP 429"):
        make_jobs().launch(execution_input(), "t")


def test_unreachable_api_is_retryable() -> None:
    api = KubernetesApi(
        ClusterAccess("https://127.0.0.1:9", trustme.CA().cert_pem.bytes().decode()),
        lambda: "tok",
        timeout=2,
    )
    with pytest.raises(KubernetesUnavailable, match="ConnectError"):
        api.get("/apis/batch/v1/jobs")
    api.close()


def test_delete_job_by_namespace_and_by_lookup(aws: None, fake_kube: FakeKube) -> None:
    point_cluster_at(fake_kube)
    jobs = make_jobs()
    launched = jobs.launch(execution_input(namespace="etl"), "token-1")
    assert fake_kube.get("secrets", "etl", launched.name) is not None
    # the dispatcher's kill hook knows no namespace: the Job is found by name
    jobs.kill("sales_daily-20261121T020000-abc123", "load_orders", 2)
    lookup = [r for r in fake_kube.requests if r.path == "/apis/batch/v1/jobs"]
    assert lookup[0].query == {"fieldSelector": [f"metadata.name={launched.name}"]}
    delete = [r for r in fake_kube.requests if r.method == "DELETE"]
    assert [r.path for r in delete] == [f"/apis/batch/v1/namespaces/etl/jobs/{launched.name}"]
    assert delete[0].body["propagationPolicy"] == "Background"
    assert fake_kube.jobs() == []
    assert fake_kube.get("secrets", "etl", launched.name) is None  # owned: collected with it
    # idempotent: gone already
    assert jobs.delete_job("sales_daily-20261121T020000-abc123", "load_orders", 2) == 0
    assert (
        jobs.delete_job("sales_daily-20261121T020000-abc123", "load_orders", 2, namespace="etl")
        == 0
    )


def test_delete_leaves_jobs_stratoflow_did_not_make(aws: None, fake_kube: FakeKube) -> None:
    point_cluster_at(fake_kube)
    name = job_name("r", "t", 1)
    fake_kube.objects[("jobs", "other", name)] = {
        "metadata": {"name": name, "namespace": "other", "uid": "u"}
    }
    assert make_jobs().delete_job("r", "t", 1) == 0
    assert ("jobs", "other", name) in fake_kube.objects


def test_handle_rejected_input_fails_the_attempt_through_the_token(
    aws: None, fake_kube: FakeKube
) -> None:
    point_cluster_at(fake_kube)
    sfn = RecordingSfn([])
    bad = execution_input(cpu="lots")
    assert handle(make_jobs(), sfn, {"task_token": "tok", "input": bad})["status"] == "rejected"
    fake_kube.fail[("POST", "jobs")] = 403
    result = handle(make_jobs(), sfn, {"task_token": "tok2", "input": execution_input()})
    assert result["error"] == FAILURE_REJECTED
    assert [c["error"] for c in sfn.calls] == [FAILURE_INVALID, FAILURE_REJECTED]
    assert [c["taskToken"] for c in sfn.calls] == ["tok", "tok2"]
    cause = json.loads(sfn.calls[0]["cause"])
    assert cause == {
        "exit_code": None,
        "error": "cpu 'lots' is not a Kubernetes quantity (e.g. 500m, 2, 2Gi)",
        "log_tail": "",
    }
    assert "HTTP 403" in json.loads(sfn.calls[1]["cause"])["error"]


def test_handle_without_token_raises() -> None:
    from stratoflow.adapters.aws.eks import InvalidTask

    with pytest.raises(InvalidTask, match="no task_token"):
        handle(make_jobs_offline(), RecordingSfn([]), {"input": execution_input()})


def make_jobs_offline() -> EksJobs:
    return EksJobs(
        EksSettings(cluster=CLUSTER),
        eks_client=None,
        credentials=lambda: Credentials("a", "b"),
        region=REGION,
    )


def ended(status: str, execution: dict[str, Any] | str) -> dict[str, Any]:
    return {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "detail": {
            "status": status,
            "input": execution if isinstance(execution, str) else json.dumps(execution),
        },
    }


def test_a_stopped_execution_deletes_its_job(aws: None, fake_kube: FakeKube) -> None:
    point_cluster_at(fake_kube)
    jobs = make_jobs()
    sfn = RecordingSfn([])
    launched = handle(jobs, sfn, {"task_token": "tok", "input": execution_input()})
    assert launched["status"] == "launched"
    assert launched["created"] is True
    result = handle(jobs, sfn, ended("ABORTED", execution_input()))
    assert result == {"status": "deleted", "job": launched["job"]}
    assert fake_kube.jobs() == []
    # the duplicate delivery EventBridge may make changes nothing
    assert handle(jobs, sfn, ended("ABORTED", execution_input()))["status"] == "gone"
    deletes = [r for r in fake_kube.requests if r.method == "DELETE"]
    assert all(r.path.startswith("/apis/batch/v1/namespaces/stratoflow/jobs/") for r in deletes)


@pytest.mark.parametrize(
    ("status", "execution", "reason"),
    [
        ("SUCCEEDED", execution_input(), "execution status 'SUCCEEDED'"),
        ("ABORTED", {**execution_input(), "type": "batch"}, "not a kubernetes attempt"),
        ("ABORTED", "not json", "execution input is not JSON"),
        ("TIMED_OUT", {"type": "kubernetes", "run_id": "r"}, "execution input"),
    ],
)
def test_other_execution_events_are_ignored(status: str, execution: Any, reason: str) -> None:
    result = handle(make_jobs_offline(), RecordingSfn([]), ended(status, execution))
    assert result["status"] == "ignored"
    assert reason in result["reason"]


# ------------------------------------------------------------------ the Lambda handler
@dataclass
class Context:
    function_name: str = "EksLauncherFunction"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:EksLauncherFunction"
    )
    aws_request_id: str = "req-1"


def load_app(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for name, value in {
        "STRATOFLOW_EKS_CLUSTER": CLUSTER, "STRATOFLOW_EKS_NAMESPACE": "stratoflow",
        "POWERTOOLS_SERVICE_NAME": "stratoflow", "POWERTOOLS_METRICS_NAMESPACE": "Stratoflow",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "eks_launcher_app", ROOT / "functions" / "eks_launcher" / "app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "eks_launcher_app", module)
    spec.loader.exec_module(module)
    return module


def test_lambda_handler_launches_then_deletes(
    aws: None,
    fake_kube: FakeKube,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    point_cluster_at(fake_kube)
    app = load_app(monkeypatch)
    result = app.handler({"task_token": "tok-1", "input": execution_input()}, Context())
    assert result["status"] == "launched"
    assert result["namespace"] == "stratoflow"
    assert len(fake_kube.jobs()) == 1
    assert app.handler(ended("ABORTED", execution_input()), Context())["status"] == "deleted"
    assert fake_kube.jobs() == []
    out = capsys.readouterr().out
    assert '"correlation_id":"sales_daily-20261121T020000-abc123"' in out.replace(" ", "")
    assert "EksJobsLaunched" in out
    assert "EksJobsDeleted" in out
    assert "tok-1" not in out  # the task token is never logged


def test_kill_without_cluster_wide_list_looks_in_the_stack_namespace(
    aws: None, fake_kube: FakeKube
) -> None:
    """A namespace-scoped access entry cannot list Jobs cluster-wide (403): kill still
    deletes the Job in the stack's namespace."""
    point_cluster_at(fake_kube)
    jobs = make_jobs()
    launched = jobs.launch(execution_input(), "token-1")
    fake_kube.fail[("GET", "jobs")] = 403
    original = fake_kube.requests.copy()
    jobs.kill("sales_daily-20261121T020000-abc123", "load_orders", 2)
    assert fake_kube.jobs() == []
    new = fake_kube.requests[len(original) :]
    assert [(r.method, r.path) for r in new][-1] == (
        "DELETE",
        f"/apis/batch/v1/namespaces/stratoflow/jobs/{launched.name}",
    )
