"""``kubernetes`` tasks as batch/v1 Jobs on EKS, finished by a Step Functions task-token callback.

The task-attempt state machine invokes the launcher function with
``lambda:invoke.waitForTaskToken``; the launcher creates the Job through the Kubernetes API
(endpoint and CA from ``eks:DescribeCluster``, the standard EKS bearer token) and returns. The
pod has two containers sharing an ``emptyDir``:

- ``task``: the user's image, its command wrapped by ``eks_task.sh`` (so the image needs
  ``/bin/sh``), which writes the exit status to ``/stratoflow/exit``;
- ``reporter``: an AWS CLI image running ``eks_reporter.sh``, which heartbeats while the task
  runs and then calls ``send-task-success`` (with the task's outputs) or ``send-task-failure``.

The pod runs as its project's service account (``service_account`` in the input,
``stratoflow-<project digest>``), which the launcher creates in the namespace if missing and,
on a stack using IRSA, annotates with the project's role (``role_arn``); with EKS Pod Identity
the dispatcher has associated the account with that role. So both containers hold the
project's role: its S3 prefixes and secrets, and the task-token answers of the reporter.

So the state machine learns that a Job finished about a second after it did, instead of on
the next poll of ``eks:runJob.sync`` (about once a minute). The task token lives in a Secret
owned by the Job (not in the Job's spec), which a retried launch replaces: a state machine
Retry issues a new token, and the Job already running must answer with that one.
docs/aws-eks.md has the design, the comparison and what the cluster needs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, NoReturn
from urllib.parse import quote

import httpx
from botocore.credentials import Credentials
from botocore.hooks import HierarchicalEmitter
from botocore.model import ServiceId
from botocore.signers import RequestSigner

from stratoflow.adapters.aws.resources import RESOURCES_PREFIX, fetch_list
from stratoflow.adapters.aws.secrets import MAX_SECRET_REFERENCES, SHELL_NAME, secrets_prefix
from stratoflow.errors import InvalidInput
from stratoflow.resources import MAX_TASK_RESOURCES
from stratoflow.secrets import references

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 (a format marker, not a secret)
# EKS accepts a token for 15 minutes after X-Amz-Date whatever this says; 60 s is the usual value
TOKEN_EXPIRES_SECONDS = 60
# SIGTERM to SIGKILL for a pod whose Job is past its activeDeadlineSeconds, or deleted (the
# kubelet's default, written into the pod spec so the scheduler can count on it)
POD_TERMINATION_GRACE_SECONDS = 30
DEFAULT_REPORTER_IMAGE = "public.ecr.aws/aws-cli/aws-cli:2.15.0"
# the service account of inputs that name none (a dispatcher without project identities)
DEFAULT_SERVICE_ACCOUNT = "stratoflow-reporter"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
SHARED_DIR = "/stratoflow"
# the task's secret values (eks_task.sh): in memory, in this pod only, never in the manifest
SECRETS_DIR = "/stratoflow-secrets"
SECRETS_SIZE_LIMIT = "2Mi"  # MAX_SECRET_REFERENCES values of 64 KiB fit, with room
# the task's resource files: fetched by the reporter into the shared volume, where the
# wrapper makes them the command's working directory (eks_task.sh)
RESOURCES_DIR = f"{SHARED_DIR}/work"
TOKEN_DIR = "/var/run/stratoflow"  # noqa: S105 (a mount path)
TOKEN_KEY = "task-token"  # noqa: S105 (a Secret key name)
LABEL_PREFIX = "stratoflow.io/"
FAILURE_REJECTED = "Stratoflow.JobRejected"
FAILURE_INVALID = "Stratoflow.InvalidTask"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


class InvalidTask(ValueError):
    """The execution input cannot become a Job (the message names the field)."""


class KubernetesApiError(Exception):
    """The Kubernetes API answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubernetesUnavailable(KubernetesApiError):
    """Worth retrying: a network error, 429 or 5xx. The state machine's Retry sees this name."""


class JobRejected(KubernetesApiError):
    """The API refused the Job for good (400/401/403/404/422): retrying would change nothing."""


def _script(name: str) -> str:
    return resources.files("stratoflow.adapters.aws").joinpath(name).read_text(encoding="utf-8")


def task_script() -> str:
    """The wrapper that runs the task's command in the user's image (POSIX sh)."""
    return _script("eks_task.sh")


def reporter_script() -> str:
    """What the reporter container runs (POSIX sh and the AWS CLI)."""
    return _script("eks_reporter.sh")


# ------------------------------------------------------------------ names
def _digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-")


def job_name(run_id: str, task_id: str, attempt: int) -> str:
    """Deterministic DNS-1123 label (<= 63 chars) for one attempt: readable task and attempt,
    a hash of the whole key so distinct attempts never share a name. A retried launch of the
    same attempt therefore meets its own Job (409), never a second one."""
    tail = f"-{attempt}-{_digest(f'{run_id}/{task_id}/{attempt}', 10)}"
    head = (_slug(task_id) or "task")[: 63 - len("sf-") - len(tail)].strip("-")
    return f"sf-{head}{tail}"


def label_value(text: str) -> str:
    """``text`` if it is a valid label value, else a readable prefix plus a hash (labels hold at
    most 63 chars of [A-Za-z0-9_.-]); the exact value is kept in an annotation."""
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    head = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:50].strip("-_.")
    return f"{head}-{_digest(text, 12)}" if head else _digest(text, 12)


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class EksSettings:
    cluster: str
    namespace: str = "default"
    service_account: str = DEFAULT_SERVICE_ACCOUNT
    reporter_image: str = DEFAULT_REPORTER_IMAGE
    ttl_seconds_after_finished: int = 3600
    heartbeat_seconds: int = 60

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EksSettings:
        env = os.environ if env is None else env
        cluster = env.get("STRATOFLOW_EKS_CLUSTER", "")
        if not cluster:
            raise ValueError("STRATOFLOW_EKS_CLUSTER is not set: kubernetes tasks need a cluster")

        def number(name: str, default: int) -> int:
            raw = env.get(name) or str(default)
            if not raw.isdigit():
                raise ValueError(f"{name} must be a whole number of seconds, not {raw!r}")
            return int(raw)

        return cls(
            cluster=cluster,
            namespace=env.get("STRATOFLOW_EKS_NAMESPACE") or "default",
            service_account=env.get("STRATOFLOW_EKS_SERVICE_ACCOUNT") or DEFAULT_SERVICE_ACCOUNT,
            reporter_image=env.get("STRATOFLOW_EKS_REPORTER_IMAGE") or DEFAULT_REPORTER_IMAGE,
            ttl_seconds_after_finished=number("STRATOFLOW_EKS_JOB_TTL_SECONDS", 3600),
            heartbeat_seconds=number("STRATOFLOW_EKS_HEARTBEAT_SECONDS", 60),
        )


# ------------------------------------------------------------------ the Job
@dataclass(frozen=True)
class JobRequest:
    """What the launcher makes of one execution input."""

    run_id: str
    task_id: str
    attempt: int
    namespace: str
    name: str
    job: dict[str, Any]
    secret: dict[str, Any] = field(repr=False)  # holds the task token: never logged
    account: dict[str, Any] = field(default_factory=dict)  # the pods' ServiceAccount


def _service_account(
    event_input: Mapping[str, Any], namespace: str, settings: EksSettings
) -> dict[str, Any]:
    """The ServiceAccount the pods run as: the input's (the project's), annotated with its
    role for IRSA when the input names one."""
    name = event_input.get("service_account") or settings.service_account
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise InvalidTask(f"service_account {name!r} is not a valid Kubernetes name")
    role_arn = event_input.get("role_arn")
    if role_arn is not None and (not isinstance(role_arn, str) or not _ROLE_ARN.match(role_arn)):
        raise InvalidTask(f"role_arn {role_arn!r} is not an IAM role ARN")
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "stratoflow"},
    }
    if role_arn:
        metadata["annotations"] = {IRSA_ANNOTATION: role_arn}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}


def _task_fields(task: Mapping[str, Any]) -> Mapping[str, Any]:
    # the dispatcher may nest the rendered fields or spread them next to params/env
    nested = task.get("fields")
    return nested if isinstance(nested, Mapping) else task


def _namespace(fields: Mapping[str, Any], settings: EksSettings) -> str:
    # a task without a namespace runs in the stack's
    chosen = fields.get("namespace")
    namespace = chosen if isinstance(chosen, str) and chosen else settings.namespace
    if not _DNS_LABEL.match(namespace) or len(namespace) > 63:
        raise InvalidTask(f"namespace {namespace!r} is not a valid Kubernetes namespace name")
    return namespace


def _argv(command: Any) -> list[str]:
    if isinstance(command, str) and command.strip():
        return ["/bin/sh", "-c", command]
    if (
        isinstance(command, list)
        and command
        and all(isinstance(c, str | int | float) for c in command)
    ):
        return [str(c) for c in command]
    raise InvalidTask("command must be a non-empty string or a non-empty list of strings")


def _quantity(fields: Mapping[str, Any], name: str, default: str) -> str:
    value = str(fields.get(name) or default)
    if not _QUANTITY.match(value):
        raise InvalidTask(f"{name} {value!r} is not a Kubernetes quantity (e.g. 500m, 2, 2Gi)")
    return value


def _secret_settings(
    event_input: Mapping[str, Any], argv: list[str], env: Mapping[str, Any]
) -> dict[str, list[dict[str, str]]] | None:
    """The containers' settings for the task's secret references (in its command and env),
    None without any. Only names go into the manifest: the reporter reads the values from
    Secrets Manager ``<prefix><project>/<name>`` as the pod's role (the project's), the
    wrapper puts them in place (eks_task.sh)."""
    names = references([argv, dict(env)])
    if not names:
        return None
    if len(names) > MAX_SECRET_REFERENCES:
        raise InvalidTask(
            f"a kubernetes task references {len(names)} secrets; at most {MAX_SECRET_REFERENCES}"
        )
    project = (event_input.get("context") or {}).get("project")
    if not isinstance(project, str) or not project:
        raise InvalidTask("context.project is needed to read the task's secrets")
    variables = sorted(k for k, v in env.items() if references(str(v)))
    bad = [k for k in variables if not SHELL_NAME.fullmatch(str(k))]
    if bad:
        raise InvalidTask(
            f"env {bad[0]!r} holds a secret reference but is not a shell variable name "
            "(letters, digits and '_', not starting with a digit)"
        )
    listed = " ".join(sorted(names))
    common = [
        {"name": "STRATOFLOW_SECRET_NAMES", "value": listed},
        {"name": "STRATOFLOW_SECRETS_DIR", "value": SECRETS_DIR},
    ]
    return {
        "task": [*common, {"name": "STRATOFLOW_SECRET_ENV", "value": " ".join(variables)}],
        "reporter": [
            *common,
            {"name": "STRATOFLOW_SECRETS_PATH", "value": f"{secrets_prefix()}{project}/"},
            {"name": "STRATOFLOW_PROJECT", "value": project},
        ],
    }


def _resource_settings(event_input: Mapping[str, Any]) -> dict[str, list[dict[str, str]]] | None:
    """The containers' settings for the task's resource files (the versions its run pinned,
    put in the input by the dispatcher), None without any: the reporter fetches each one as
    the pod's role (the project's, which reads ``resources/<project>/`` only) into
    ``RESOURCES_DIR``, and the wrapper runs the command there."""
    wanted = event_input.get("resources") or []
    if not wanted:
        return None
    if not isinstance(wanted, list) or len(wanted) > MAX_TASK_RESOURCES:
        raise InvalidTask(f"resources must be a list of at most {MAX_TASK_RESOURCES} files")
    project = (event_input.get("context") or {}).get("project")
    if not isinstance(project, str) or not project:
        raise InvalidTask("context.project is needed to fetch the task's resource files")
    try:
        listing, bucket = fetch_list(wanted, project)
    except InvalidInput as exc:
        raise InvalidTask(f"resource files: {exc}") from None
    return {
        "task": [{"name": "STRATOFLOW_RESOURCES_DIR", "value": RESOURCES_DIR}],
        "reporter": [
            {"name": "STRATOFLOW_RESOURCES", "value": listing},
            {"name": "STRATOFLOW_RESOURCES_BUCKET", "value": bucket},
            {"name": "STRATOFLOW_RESOURCES_PREFIX", "value": f"{RESOURCES_PREFIX}{project}/"},
            {"name": "STRATOFLOW_RESOURCES_DIR", "value": RESOURCES_DIR},
        ],
    }


def build_job(event_input: Any, task_token: str, settings: EksSettings) -> JobRequest:
    """The Job (and the Secret holding the token) for one execution input of the contract."""
    if not isinstance(event_input, Mapping):
        raise InvalidTask("the event has no 'input' object (the execution input)")
    try:
        run_id = str(event_input["run_id"])
        task_id = str(event_input["task_id"])
        attempt = int(event_input["attempt"])
        task = event_input["task"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidTask(
            f"execution input lacks run_id, task_id, attempt or task: {exc}"
        ) from None
    if not isinstance(task, Mapping):
        raise InvalidTask("execution input field 'task' must be an object")
    if not task_token:
        raise InvalidTask("task_token is empty: invoke with lambda:invoke.waitForTaskToken")
    fields = _task_fields(task)
    image = fields.get("image")
    if not isinstance(image, str) or not image.strip():
        raise InvalidTask("image must be a non-empty string")
    timeout = event_input.get("timeout_seconds")
    if timeout is not None and (type(timeout) is not int or timeout <= 0):
        raise InvalidTask(f"timeout_seconds must be a positive integer, not {timeout!r}")
    namespace = _namespace(fields, settings)
    account = _service_account(event_input, namespace, settings)
    name = job_name(run_id, task_id, attempt)
    context = event_input.get("context") or {}
    cpu = _quantity(fields, "cpu", "1")
    memory = _quantity(fields, "memory", "2Gi")
    env_in = task.get("env") or fields.get("env") or {}
    if not isinstance(env_in, Mapping):
        raise InvalidTask("env must be an object of names to values")

    argv = _argv(fields.get("command"))
    secret_env = _secret_settings(event_input, argv, env_in)
    resource_env = _resource_settings(event_input)

    labels = {
        "app.kubernetes.io/managed-by": "stratoflow",
        f"{LABEL_PREFIX}run": label_value(run_id),
        f"{LABEL_PREFIX}task": label_value(task_id),
        f"{LABEL_PREFIX}attempt": str(attempt),
    }
    annotations = {
        f"{LABEL_PREFIX}run-id": run_id,
        f"{LABEL_PREFIX}task-id": task_id,
        f"{LABEL_PREFIX}attempt": str(attempt),
        f"{LABEL_PREFIX}workflow": str(context.get("workflow", "")),
        f"{LABEL_PREFIX}project": str(context.get("project", "")),
    }
    shared = {"name": "stratoflow", "mountPath": SHARED_DIR}
    task_env = [{"name": str(k), "value": str(v)} for k, v in env_in.items()] + [
        {"name": "STRATOFLOW_DIR", "value": SHARED_DIR},
        {"name": "STRATOFLOW_RUN_ID", "value": run_id},
        {"name": "STRATOFLOW_TASK_ID", "value": task_id},
        {"name": "STRATOFLOW_ATTEMPT", "value": str(attempt)},
        {"name": "STRATOFLOW_WORKFLOW", "value": str(context.get("workflow", ""))},
        {"name": "STRATOFLOW_LOGICAL_DATE", "value": str(context.get("logical_date", ""))},
    ]
    reporter_env = [
        {"name": "STRATOFLOW_DIR", "value": SHARED_DIR},
        {"name": "STRATOFLOW_TOKEN_FILE", "value": f"{TOKEN_DIR}/{TOKEN_KEY}"},
        {"name": "STRATOFLOW_HEARTBEAT_SECONDS", "value": str(settings.heartbeat_seconds)},
        {"name": "AWS_RETRY_MODE", "value": "standard"},
        {"name": "AWS_MAX_ATTEMPTS", "value": "5"},
    ]
    mounts = []
    if secret_env is not None:
        task_env += secret_env["task"]
        reporter_env += secret_env["reporter"]
        mounts = [{"name": "secrets", "mountPath": SECRETS_DIR}]
    if resource_env is not None:
        task_env += resource_env["task"]
        reporter_env += resource_env["reporter"]
    spec: dict[str, Any] = {
        "backoffLimit": 0,  # retries are the engine's, each with its own attempt number
        "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
        "template": {
            "metadata": {"labels": labels, "annotations": annotations},
            "spec": {
                "restartPolicy": "Never",
                # set, not left to the default: a timed-out attempt's retry waits for it
                # (dispatch.timed_out_grace)
                "terminationGracePeriodSeconds": POD_TERMINATION_GRACE_SECONDS,
                "serviceAccountName": account["metadata"]["name"],
                # the reporter first: the kubelet starts containers in order, so it heartbeats
                # while a large task image is still being pulled
                "containers": [
                    {
                        "name": "reporter",
                        "image": settings.reporter_image,
                        "command": ["/bin/sh", "-c", reporter_script(), "stratoflow-reporter"],
                        "env": reporter_env,
                        # no requests: on Fargate any request is added to the task's and
                        # rounds the pod up to the next size (1 vCPU + 50m bills 2 vCPU)
                        "resources": {},
                        "volumeMounts": [
                            shared,
                            {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
                            *mounts,
                        ],
                    },
                    {
                        "name": "task",
                        "image": image,
                        "command": [
                            "/bin/sh",
                            "-c",
                            task_script(),
                            "stratoflow-task",
                            *argv,
                        ],
                        "env": task_env,
                        "resources": {
                            "requests": {"cpu": cpu, "memory": memory},
                            "limits": {"cpu": cpu, "memory": memory},
                        },
                        "volumeMounts": [shared, *({**m, "readOnly": True} for m in mounts)],
                    },
                ],
                "volumes": [
                    {"name": "stratoflow", "emptyDir": {}},
                    {"name": "token", "secret": {"secretName": name}},
                    *(
                        # tmpfs: the values never reach the node's disk
                        [
                            {
                                "name": "secrets",
                                "emptyDir": {"medium": "Memory", "sizeLimit": SECRETS_SIZE_LIMIT},
                            }
                        ]
                        if mounts
                        else []
                    ),
                ],
            },
        },
    }
    if timeout is not None:
        spec["activeDeadlineSeconds"] = timeout
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "type": "Opaque",
        "stringData": {TOKEN_KEY: task_token},
    }
    return JobRequest(run_id, task_id, attempt, namespace, name, job, secret, account)


# ------------------------------------------------------------------ EKS access
def eks_token(cluster: str, region: str, credentials: Credentials) -> str:
    """The bearer token EKS accepts: a presigned STS GetCallerIdentity URL with the cluster
    name in the signed ``x-k8s-aws-id`` header, base64url without padding, prefixed."""
    emitter = HierarchicalEmitter()  # the signer keeps only a weak reference: hold it here
    signer = RequestSigner(ServiceId("sts"), region, "sts", "v4", credentials, emitter)
    request = {
        "method": "GET",
        "url": f"https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
        "body": {},
        "headers": {"x-k8s-aws-id": cluster},
        "context": {},
    }
    url = signer.generate_presigned_url(
        request, "GetCallerIdentity", expires_in=TOKEN_EXPIRES_SECONDS, region_name=region
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


@dataclass(frozen=True)
class ClusterAccess:
    endpoint: str
    ca_pem: str


def describe_cluster(eks_client: Any, cluster: str) -> ClusterAccess:
    """Endpoint and CA certificate (PEM) of a cluster, from eks:DescribeCluster."""
    found = eks_client.describe_cluster(name=cluster)["cluster"]
    endpoint = found.get("endpoint")
    data = (found.get("certificateAuthority") or {}).get("data")
    if not endpoint or not data:
        raise KubernetesUnavailable(
            f"cluster {cluster!r} has no endpoint or CA yet (still creating?)"
        )
    try:
        pem = base64.b64decode(data, validate=True).decode("ascii")
    except ValueError:
        raise JobRejected(
            f"cluster {cluster!r}: its certificateAuthority is not base64 PEM"
        ) from None
    return ClusterAccess(endpoint, pem)


class KubernetesApi:
    """The few Kubernetes API calls the launcher needs, over HTTPS that trusts only the cluster CA."""

    def __init__(
        self, access: ClusterAccess, token: Callable[[], str], *, timeout: float = 10.0
    ) -> None:
        self._token = token
        context = ssl.create_default_context(cadata=access.ca_pem)
        self._http = httpx.Client(base_url=access.endpoint, verify=context, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _call(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None
    ) -> httpx.Response:
        try:
            return self._http.request(
                method,
                path,
                json=body,
                params=params,
                headers={"Authorization": f"Bearer {self._token()}", "Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise KubernetesUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def _raise(method: str, path: str, response: httpx.Response) -> NoReturn:
        try:
            reason = str(response.json().get("message", ""))
        except (ValueError, AttributeError):
            reason = response.text[:300]
        message = f"{method} {path}: HTTP {response.status_code}: {reason}"
        if response.status_code == 429 or response.status_code >= 500:
            raise KubernetesUnavailable(message, response.status_code)
        raise JobRejected(message, response.status_code)

    def _object(
        self,
        method: str,
        path: str,
        absent: int,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """The object a call answers with, or None when it answers ``absent``."""
        response = self._call(method, path, body=body, params=params)
        if response.status_code == absent:
            return None
        if not response.is_success:
            self._raise(method, path, response)
        found: dict[str, Any] = response.json()
        return found

    def create(self, path: str, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
        """POST; the created object, or None when one of that name exists already (409)."""
        return self._object("POST", path, 409, body=manifest)

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        return self._object("GET", path, 404, params=params)

    def replace(self, path: str, manifest: Mapping[str, Any]) -> None:
        response = self._call("PUT", path, body=manifest)
        if not response.is_success:
            self._raise("PUT", path, response)

    def delete(self, path: str) -> bool:
        """DELETE with background propagation (the Job goes at once, its pods and Secret after);
        False when there was nothing to delete."""
        response = self._call(
            "DELETE",
            path,
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
        )
        if response.status_code == 404:
            return False
        if not response.is_success:
            self._raise("DELETE", path, response)
        return True


def _jobs_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs"
    return f"{base}/{quote(name)}" if name else base


def _accounts_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{quote(namespace)}/serviceaccounts"
    return f"{base}/{quote(name)}" if name else base


def _secrets_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{quote(namespace)}/secrets"
    return f"{base}/{quote(name)}" if name else base


# ------------------------------------------------------------------ the launcher
@dataclass
class LaunchResult:
    name: str
    namespace: str
    created: bool  # False: the Job existed already (a retried launch of the same attempt)


class EksJobs:
    """Launch and delete attempt Jobs in one cluster. Build it once per Lambda container: the
    cluster's endpoint and CA are looked up on first use and kept."""

    def __init__(
        self,
        settings: EksSettings,
        *,
        eks_client: Any,
        credentials: Callable[[], Credentials],
        region: str,
        api_factory: Callable[[ClusterAccess, Callable[[], str]], KubernetesApi] = KubernetesApi,
    ) -> None:
        self.settings = settings
        self._eks = eks_client
        self._credentials = credentials
        self._region = region
        self._api_factory = api_factory
        self._api: KubernetesApi | None = None
        self._accounts: set[tuple[str, str, str | None]] = set()  # made: (ns, name, role)

    def api(self) -> KubernetesApi:
        if self._api is None:
            access = describe_cluster(self._eks, self.settings.cluster)
            self._api = self._api_factory(
                access, lambda: eks_token(self.settings.cluster, self._region, self._credentials())
            )
        return self._api

    def launch(self, event_input: Any, task_token: str) -> LaunchResult:
        """Create the attempt's Job (409: it exists, from an earlier try of this launch) and put
        ``task_token`` in the Secret its reporter reads, owned by the Job so it goes with it."""
        request = build_job(event_input, task_token, self.settings)
        api = self.api()
        self.ensure_service_account(api, request.account)
        job = api.create(_jobs_path(request.namespace), request.job)
        created = job is not None
        if job is None:
            job = api.get(_jobs_path(request.namespace, request.name))
            if job is None:  # deleted between our POST and GET (a stop): nothing to attach to
                raise KubernetesUnavailable(f"job {request.name} vanished while launching")
        secret = dict(request.secret)
        secret["metadata"] = {
            **request.secret["metadata"],
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": request.name,
                    "uid": job["metadata"]["uid"],
                }
            ],
        }
        if api.create(_secrets_path(request.namespace), secret) is None:
            # a retried state: a new task token replaces the old one the reporter would use
            api.replace(_secrets_path(request.namespace, request.name), secret)
        return LaunchResult(request.name, request.namespace, created)

    def ensure_service_account(self, api: KubernetesApi, account: Mapping[str, Any]) -> None:
        """Create the pods' ServiceAccount if missing (409: it exists). One that exists gets
        the IRSA role annotation the input asks for; one of Stratoflow's that carries an
        annotation the input no longer asks for (the stack's OIDC issuer was removed) loses
        it, or the pod's SDK would try a web identity its role no longer trusts. Once per
        container and account; the launcher never deletes one."""
        meta = account["metadata"]
        role = (meta.get("annotations") or {}).get(IRSA_ANNOTATION)
        key = (meta["namespace"], meta["name"], role)
        if key in self._accounts:
            return
        if api.create(_accounts_path(meta["namespace"]), account) is None:
            path = _accounts_path(meta["namespace"], meta["name"])
            current = api.get(path) or {}
            found = current.get("metadata") or {}
            notes = dict(found.get("annotations") or {})
            ours = (found.get("labels") or {}).get("app.kubernetes.io/managed-by") == "stratoflow"
            if current and notes.get(IRSA_ANNOTATION) != role and (role is not None or ours):
                if role is None:
                    del notes[IRSA_ANNOTATION]
                else:
                    notes[IRSA_ANNOTATION] = role
                api.replace(path, {**current, "metadata": {**found, "annotations": notes}})
        self._accounts.add(key)

    def delete_job(
        self, run_id: str, task_id: str, attempt: int, *, namespace: str | None = None
    ) -> int:
        """Delete the attempt's Job (its pods and token Secret follow); returns how many were
        deleted. Without ``namespace`` it is found by name across the cluster (or, where the
        launcher may not list cluster-wide, looked for in the stack's namespace)."""
        name = job_name(run_id, task_id, attempt)
        api = self.api()
        namespaces = [namespace] if namespace is not None else self._namespaces_of(api, name)
        return sum(api.delete(_jobs_path(ns, name)) for ns in namespaces)

    def _namespaces_of(self, api: KubernetesApi, name: str) -> list[str]:
        try:
            found = api.get("/apis/batch/v1/jobs", {"fieldSelector": f"metadata.name={name}"})
        except JobRejected:  # may not list cluster-wide (a namespace-scoped access entry)
            return [self.settings.namespace]
        return [
            item["metadata"]["namespace"]
            for item in (found or {}).get("items", [])
            if item["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by")
            == "stratoflow"
        ]

    def kill(self, run_id: str, task_id: str, attempt: int) -> None:
        """``Dispatcher.kill``'s signature, for StepFunctionsDispatcher's ``on_kill`` hook."""
        self.delete_job(run_id, task_id, attempt)


def failure_cause(message: str) -> str:
    """The ``cause`` of a send-task-failure, shaped like the reporter's."""
    return json.dumps({"exit_code": None, "error": message, "log_tail": ""})


# ------------------------------------------------------------------ what the function does
_ENDED = ("ABORTED", "TIMED_OUT", "FAILED")


def handle_launch(jobs: EksJobs, sfn_client: Any, event: Mapping[str, Any]) -> dict[str, Any]:
    """The ``lambda:invoke.waitForTaskToken`` payload ``{"task_token", "input"}``: create the
    Job and return; the reporter in its pod completes the token. Input the cluster refuses
    for good fails the attempt through the token at once (no Retry could help); an
    unreachable API raises ``KubernetesUnavailable`` for the state's Retry."""
    token = event.get("task_token")
    if not isinstance(token, str) or not token:
        raise InvalidTask("the event has no task_token: invoke with lambda:invoke.waitForTaskToken")
    event_input = event.get("input")
    try:
        result = jobs.launch(event_input, token)
    except (InvalidTask, JobRejected) as exc:
        error = FAILURE_INVALID if isinstance(exc, InvalidTask) else FAILURE_REJECTED
        sfn_client.send_task_failure(taskToken=token, error=error, cause=failure_cause(str(exc)))
        return {"status": "rejected", "error": error, "reason": str(exc)}
    return {
        "status": "launched",
        "job": result.name,
        "namespace": result.namespace,
        "created": result.created,
    }


def handle_execution_ended(jobs: EksJobs, event: Mapping[str, Any]) -> dict[str, Any]:
    """An EventBridge "Step Functions Execution Status Change" event: when a kubernetes
    attempt's execution was stopped, timed out or failed, delete its Job so nothing keeps
    running (or billing) behind it. Idempotent: a Job already gone counts 0."""
    detail = event.get("detail") or {}
    status = detail.get("status")
    if status not in _ENDED:
        return {"status": "ignored", "reason": f"execution status {status!r}"}
    try:
        event_input = json.loads(detail.get("input") or "{}")
    except ValueError:
        return {"status": "ignored", "reason": "execution input is not JSON"}
    if not isinstance(event_input, Mapping) or event_input.get("type") != "kubernetes":
        return {"status": "ignored", "reason": "not a kubernetes attempt"}
    try:
        run_id = str(event_input["run_id"])
        task_id = str(event_input["task_id"])
        attempt = int(event_input["attempt"])
        task = event_input.get("task") or {}
        namespace = _namespace(_task_fields(task), jobs.settings)
    except (KeyError, TypeError, ValueError) as exc:
        return {"status": "ignored", "reason": f"execution input: {exc}"}
    deleted = jobs.delete_job(run_id, task_id, attempt, namespace=namespace)
    return {"status": "deleted" if deleted else "gone", "job": job_name(run_id, task_id, attempt)}


# ------------------------------------------------------------------ the pod watcher
# A task container that failed this long ago while its reporter still runs ended without
# writing its exit file (it could not run at all), or its reporter is stuck: fail it. An
# OOMKilled one is failed at once (whether or not it wrote the file, it failed); one that
# exited 0 never (its reporter reports the success).
ENDED_GRACE_SECONDS = 20
# A task image that cannot be pulled this long after the pod started is taken as final.
PULL_GRACE_SECONDS = 300
_PULL_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
     "CreateContainerConfigError", "CreateContainerError"}
)  # fmt: skip
FAILURE_POD = "Stratoflow.PodFailed"
_TOKEN_GONE = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})


@dataclass(frozen=True)
class LostPod:
    """A pod whose attempt will never be reported from inside it, and why."""

    namespace: str
    job: str
    run_id: str
    task_id: str
    attempt: int
    reason: str  # e.g. "OOMKilled", "Evicted"
    error: str  # the sentence for the attempt's error
    exit_code: int | None = None


def _seconds_since(stamp: Any, now: datetime) -> float | None:
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (now - when).total_seconds()


def lost_pod(pod: Mapping[str, Any], now: datetime) -> LostPod | None:
    """Whether ``pod`` (an attempt's pod, as the API lists it) died without a report:
    evicted or otherwise Failed (not at its deadline: Step Functions times that out itself),
    its task container ended (OOM-killed as a whole, could not run) with the reporter still
    waiting, or its image cannot be pulled. None for a pod that is fine or already done."""
    meta = pod.get("metadata") or {}
    notes = meta.get("annotations") or {}
    try:
        run_id = str(notes[f"{LABEL_PREFIX}run-id"])
        task_id = str(notes[f"{LABEL_PREFIX}task-id"])
        attempt = int(notes[f"{LABEL_PREFIX}attempt"])
    except (KeyError, TypeError, ValueError):
        return None
    namespace = str(meta.get("namespace") or "")
    job = job_name(run_id, task_id, attempt)
    status = pod.get("status") or {}
    containers = {c.get("name"): c for c in status.get("containerStatuses") or []}
    reporter = (containers.get("reporter") or {}).get("state") or {}
    task = (containers.get("task") or {}).get("state") or {}

    def lost(reason: str, error: str, exit_code: int | None = None) -> LostPod:
        return LostPod(namespace, job, run_id, task_id, attempt, reason, error, exit_code)

    if status.get("phase") == "Failed":
        reason = str(status.get("reason") or "Failed")
        if reason == "DeadlineExceeded":
            return None  # the attempt's timeout: the execution times out at the same moment
        if "terminated" in reporter and reporter["terminated"].get("exitCode") == 0:
            return None  # the reporter finished: the attempt was reported
        message = str(status.get("message") or "").strip()
        return lost(reason, f"pod {reason}" + (f": {message}" if message else ""))
    if "terminated" in task and "terminated" not in reporter:
        ended = task["terminated"]
        reason = str(ended.get("reason") or "Terminated")
        code = ended.get("exitCode")
        exit_code = code if isinstance(code, int) else None
        if exit_code == 0:
            return None  # it wrote its exit file: the reporter reports the success
        since = _seconds_since(ended.get("finishedAt"), now)
        if reason != "OOMKilled" and (since is None or since < ENDED_GRACE_SECONDS):
            return None  # the reporter may still be sending the failure it read
        what = "killed for using more memory than its limit" if reason == "OOMKilled" else "ended"
        return lost(
            reason,
            f"task container {what} ({reason}"
            + (f", exit code {exit_code}" if exit_code is not None else "")
            + ") without reporting",
            exit_code,
        )
    waiting = task.get("waiting") or {}
    if waiting.get("reason") in _PULL_FAILURES:
        age = _seconds_since(status.get("startTime") or meta.get("creationTimestamp"), now)
        if age is not None and age >= PULL_GRACE_SECONDS:
            reason = str(waiting["reason"])
            message = str(waiting.get("message") or "").strip()
            return lost(reason, f"task container cannot start: {reason}: {message}".rstrip(": "))
    return None


def _pods_path(namespace: str | None) -> str:
    return f"/api/v1/namespaces/{quote(namespace)}/pods" if namespace else "/api/v1/pods"


def _token_of(secret: Mapping[str, Any] | None) -> str | None:
    """The task token in an attempt's Secret (``data`` is base64, as the API returns it)."""
    if not secret:
        return None
    plain = (secret.get("stringData") or {}).get(TOKEN_KEY)
    if isinstance(plain, str) and plain:
        return plain
    encoded = (secret.get("data") or {}).get(TOKEN_KEY)
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except ValueError:
        return None


def watch_pods(jobs: EksJobs, sfn_client: Any, now: datetime | None = None) -> dict[str, Any]:
    """One pass of the watcher (EventBridge, every minute): list the attempts' pods, and for
    each that died without a report fail its attempt through its task token (the Secret of
    its Job) with the reason, then delete the Job. The state machine takes the failure to
    ``ReportFailed``, so the attempt ends within about a minute of its pod, not at its
    timeout. Idempotent: a token already used is ignored, a Job already gone counts 0."""
    now = now or datetime.now(UTC)
    api = jobs.api()
    selector = {"labelSelector": "app.kubernetes.io/managed-by=stratoflow"}
    try:
        listed = api.get(_pods_path(None), selector)
    except JobRejected:  # may not list cluster-wide: the stack's namespace
        listed = api.get(_pods_path(jobs.settings.namespace), selector)
    failed: list[dict[str, Any]] = []
    for pod in (listed or {}).get("items", []):
        found = lost_pod(pod, now)
        if found is None:
            continue
        token = _token_of(api.get(_secrets_path(found.namespace, found.job)))
        if token is not None:  # else its Job is being deleted already (a pass, a stop)
            cause = json.dumps(
                {"exit_code": found.exit_code, "error": found.error, "log_tail": "",
                 "reason": found.reason}
            )  # fmt: skip
            try:
                sfn_client.send_task_failure(taskToken=token, error=FAILURE_POD, cause=cause)
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if code not in _TOKEN_GONE:
                    raise
            failed.append(
                {"job": found.job, "run_id": found.run_id, "task_id": found.task_id,
                 "attempt": found.attempt, "reason": found.reason}
            )  # fmt: skip
        api.delete(_jobs_path(found.namespace, found.job))
    return {"status": "watched", "failed": failed}


def handle(jobs: EksJobs, sfn_client: Any, event: Mapping[str, Any]) -> dict[str, Any]:
    if event.get("source") == "aws.states":
        return handle_execution_ended(jobs, event)
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return watch_pods(jobs, sfn_client)
    return handle_launch(jobs, sfn_client, event)
