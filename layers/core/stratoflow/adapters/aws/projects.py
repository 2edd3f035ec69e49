"""Each project's tasks run on AWS with an identity of their own (docs/aws.md, "Isolation").

User code holds whatever credentials its container has: the Lambda runner's execution role,
a Batch job's role. A role shared by every project would let one project's task write
another's logs or read its secrets, and IAM could not tell the two apart. So every project
gets, the first time one of its attempts is dispatched:

- an IAM role ``<stack>-p-<digest>`` under the path ``/stratoflow/<stack>/``, created with the
  stack's permissions boundary (``ProjectTaskBoundary``: the most any project role may ever
  do) and an inline policy that grants exactly that project's keys: its S3 prefixes
  (``logs/<project>/``, ``outputs/<project>/``, ``inputs/<project>/``, read-only
  ``resources/<project>/``), its secrets and
  parameters (``<TaskSecretsPrefix><project>/``), a stop poll of its own runs' task states;
- a runner function ``<stack>-r-<digest>`` running as that role, built from the stack's core
  layer (the handler is ``stratoflow.adapters.aws.runner_lambda.handler``), so a project's
  shell and python tasks on the Lambda runner hold that role and nothing else;
- Batch job definitions whose job role is that role (``StepFunctionsDispatcher`` registers
  them, per project and image);
- for ``kubernetes`` tasks, the Kubernetes service account ``stratoflow-<digest>`` in the
  task's namespace (the EKS launcher creates it) gets that role: through an EKS Pod Identity
  association, made here once per (project, namespace) when the stack has a cluster, and, on
  a stack with an OIDC issuer (IRSA, for pods on Fargate), through the role's trust of that
  issuer for service accounts of exactly that name.

The dispatcher asks ``ProjectIdentities.ensure`` before it starts an attempt; a container
remembers what it made, so this costs one ``GetFunctionConfiguration`` per project and cold
start, and the functions that dispatch may create only such roles (the boundary is a
condition of their ``iam:CreateRole``), so creating them is no way around the boundary.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

log = logging.getLogger("stratoflow.aws.projects")

RUNNER_HANDLER = "stratoflow.adapters.aws.runner_lambda.handler"
RUNNER_RUNTIME = "python3.12"
# the core layer's architecture (template.yaml CoreLayer CompatibleArchitectures): its compiled
# dependencies are built for it (layers/core/Makefile), so the runner that loads it runs on it
RUNNER_ARCHITECTURE = "arm64"
RUNNER_MEMORY_MB = 1024
RUNNER_TIMEOUT_SECONDS = 900
RUNNER_EPHEMERAL_MB = 2048
# Lambda refuses an update while another is in progress: that many tries, each after waiting
# for the other (containers racing to bring one runner up to date after a deploy)
UPDATE_CONFLICT_TRIES = 5
_DIGEST_CHARS = 10  # 40 bits of sha256 of the project name: ample for the projects of a stack
# IAM is eventually consistent: a role just created cannot be given to Lambda for some seconds
ROLE_PROPAGATION_SECONDS = 60.0
FUNCTION_ACTIVE_SECONDS = 120.0

Sleep = Callable[[float], None]


class ProjectIdentityError(RuntimeError):
    """A project's role or runner function could not be made ready (the dispatch fails; the
    reconciler dispatches the attempt again later)."""


@dataclass(frozen=True)
class TaskIdentity:
    """What a project's attempts run as: the runner function's name and the role that Batch
    jobs get (None where the stack gives none, as in tests of the state machine alone)."""

    runner_function: str
    role_arn: str | None


@dataclass(frozen=True)
class PodIdentity:
    """What a project's kubernetes pods run as: the service account (in the task's namespace)
    and, on a stack using IRSA, the role the launcher annotates it with (None: EKS Pod
    Identity, whose association names the role, or no IAM role at all)."""

    service_account: str
    role_arn: str | None = None


class Identities(Protocol):
    """Where the dispatcher gets a project's identity (``ProjectIdentities`` on a stack)."""

    def ensure(self, project: str) -> TaskIdentity: ...

    def ensure_pods(self, project: str, namespace: str | None) -> PodIdentity: ...


def project_digest(project: str) -> str:
    return hashlib.sha256(project.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]


def service_account_name(project: str) -> str:
    """The Kubernetes service account of a project's pods (a DNS-1123 label)."""
    return f"stratoflow-{project_digest(project)}"


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def valid_namespace(namespace: str) -> bool:
    """Whether ``namespace`` can name a Kubernetes namespace (a DNS-1123 label)."""
    return bool(_DNS_LABEL.match(namespace))


# sql tasks on AWS (taskexec/sql_aws.py): what each connection type calls, as the project's role
ATHENA_RESULTS = "athena"  # the bucket's prefix of Athena results: athena/<project>/
ATHENA_ACTIONS = (
    "athena:StartQueryExecution",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:StopQueryExecution",
    "athena:GetWorkGroup",
)
ATHENA_RESULT_ACTIONS = (
    "s3:PutObject",
    "s3:GetObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
REDSHIFT_RUN_ACTIONS = ("redshift-data:ExecuteStatement", "redshift-data:BatchExecuteStatement")
REDSHIFT_OWN_ACTIONS = (
    "redshift-data:DescribeStatement",
    "redshift-data:GetStatementResult",
    "redshift-data:CancelStatement",
)
RDS_DATA_ACTIONS = (
    "rds-data:ExecuteStatement",
    "rds-data:BatchExecuteStatement",
    "rds-data:BeginTransaction",
    "rds-data:CommitTransaction",
    "rds-data:RollbackTransaction",
)


@dataclass(frozen=True)
class ProjectPlaces:
    """Names and the inline policy of a project's identity, from the stack's names alone (no
    request): the tests evaluate the policy this builds."""

    stack: str
    partition: str
    region: str
    account: str
    bucket: str
    table: str
    secrets_prefix: str
    # the EKS cluster's OIDC issuer without https:// (IRSA); empty: Pod Identity only
    oidc_issuer: str = ""
    # the namespace the launcher makes service accounts in (it may edit only that one): IRSA
    # trusts the project's account there only, not one any cluster user could make elsewhere
    eks_namespace: str = ""
    # the user functions lambda tasks may invoke (the stack's LambdaTaskFunctionArns); empty:
    # every function of the account. The runner invokes one as the project's role for a
    # lambda task whose payload references a secret; the stack's own are denied whatever this says
    lambda_task_functions: tuple[str, ...] = ()
    # what sql tasks may query (the stack's AthenaWorkgroupArns, RedshiftResourceArns and
    # AuroraClusterArns); empty: none of that kind. Athena writes its results as the
    # project's role under athena/<project>/ of the bucket; a Redshift statement's status and
    # results are readable by the role that ran it only (statement-owner-iam-userid)
    athena_workgroups: tuple[str, ...] = ()
    redshift_resources: tuple[str, ...] = ()
    aurora_clusters: tuple[str, ...] = ()

    def role_name(self, project: str) -> str:
        return f"{self.stack}-p-{project_digest(project)}"

    def role_path(self) -> str:
        return f"/stratoflow/{self.stack}/"

    def role_arn(self, project: str) -> str:
        return (
            f"arn:{self.partition}:iam::{self.account}:role{self.role_path()}"
            f"{self.role_name(project)}"
        )

    def task_state_machine_arn(self) -> str:
        """The Standard task-attempt state machine (template.yaml names it so): the one whose
        task tokens a kubernetes pod's reporter answers."""
        return (
            f"arn:{self.partition}:states:{self.region}:{self.account}:stateMachine:"
            f"{self.stack}-task-attempt"
        )

    def state_machine_role_arn(self) -> str:
        """The Standard task-attempt state machine's role (template.yaml names it
        ``<stack>-task-attempt``, path ``/``): its ``StartAthenaQuery`` states run as a
        project's role (``Credentials``). Named, not referenced: project roles are made at
        run time and trust it by this name."""
        return f"arn:{self.partition}:iam::{self.account}:role/{self.stack}-task-attempt"

    def trust(self, project: str) -> dict[str, Any]:
        """Who may assume the project's role: its runner function, its Batch jobs, the
        Standard task-attempt state machine's role (its Athena query states run as the
        project's role: the dispatcher names this project's role for this project's
        attempts only), its pods through EKS Pod Identity (the association, made by the
        stack, picks the service account), and with an OIDC issuer its pods through IRSA:
        the service account ``stratoflow-<digest>`` of this project in the stack's
        namespace, and no other."""
        statements: list[dict[str, Any]] = [
            {
                "Sid": "RunnerFunctionAndBatchJobs",
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "ecs-tasks.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            },
            {
                "Sid": "SqlQueriesOfTheTaskAttemptStateMachine",
                "Effect": "Allow",
                "Principal": {"AWS": self.state_machine_role_arn()},
                "Action": "sts:AssumeRole",
            },
            {
                "Sid": "KubernetesPodsByPodIdentity",
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
            },
        ]
        if self.oidc_issuer:
            if not self.eks_namespace:
                raise ValueError("IRSA needs the stack's EKS namespace (STRATOFLOW_EKS_NAMESPACE)")
            issuer = self.oidc_issuer
            statements.append(
                {
                    "Sid": "KubernetesPodsByIrsa",
                    "Effect": "Allow",
                    "Principal": {
                        "Federated": (
                            f"arn:{self.partition}:iam::{self.account}:oidc-provider/{issuer}"
                        )
                    },
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{issuer}:sub": (
                                f"system:serviceaccount:{self.eks_namespace}:"
                                f"{service_account_name(project)}"
                            ),
                            f"{issuer}:aud": "sts.amazonaws.com",
                        },
                    },
                }
            )
        return {"Version": "2012-10-17", "Statement": statements}

    def function_name(self, project: str) -> str:
        return f"{self.stack}-r-{project_digest(project)}"

    def log_group(self, project: str) -> str:
        return f"/aws/lambda/{self.function_name(project)}"

    @staticmethod
    def key(kind: str, project: str, run_id: str, task_id: str, attempt: int, suffix: str) -> str:
        """An attempt's object key: ``<kind>/<project>/<run>/<task>/<attempt><suffix>``."""
        return f"{kind}/{project}/{run_id}/{task_id}/{attempt}{suffix}"

    def athena_output(self, project: str) -> str:
        """Where the project's Athena queries write their results (its role's prefix)."""
        return f"s3://{self.bucket}/{ATHENA_RESULTS}/{project}/"

    def sql_statements(self, project: str) -> list[dict[str, Any]]:
        """What the project's sql tasks may query: the listed workgroups, clusters and
        serverless workgroups only, nothing when the stack lists none."""
        bucket = f"arn:{self.partition}:s3:::{self.bucket}"
        out: list[dict[str, Any]] = []
        if self.athena_workgroups:
            out += [
                {
                    "Sid": "AthenaWorkgroups",
                    "Effect": "Allow",
                    "Action": list(ATHENA_ACTIONS),
                    "Resource": list(self.athena_workgroups),
                },
                {
                    # Athena writes and reads a query's results with the caller's credentials
                    "Sid": "AthenaResults",
                    "Effect": "Allow",
                    "Action": list(ATHENA_RESULT_ACTIONS),
                    "Resource": f"{bucket}/{ATHENA_RESULTS}/{project}/*",
                },
                {
                    "Sid": "AthenaResultsBucketRegion",
                    "Effect": "Allow",
                    "Action": "s3:GetBucketLocation",
                    "Resource": bucket,
                },
                {
                    # a listing names the prefix (a request without one lists nothing here)
                    "Sid": "AthenaResultsListing",
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": bucket,
                    "Condition": {
                        "StringLike": {
                            "s3:prefix": [
                                f"{ATHENA_RESULTS}/{project}/",
                                f"{ATHENA_RESULTS}/{project}/*",
                            ]
                        }
                    },
                },
            ]
        if self.redshift_resources:
            out += [
                {
                    "Sid": "RedshiftDataStatements",
                    "Effect": "Allow",
                    "Action": list(REDSHIFT_RUN_ACTIONS),
                    "Resource": list(self.redshift_resources),
                },
                {
                    # a statement's status, results and cancel: its own statements only, as
                    # the Redshift Data API documents (these actions take no resource)
                    "Sid": "RedshiftDataOwnStatements",
                    "Effect": "Allow",
                    "Action": list(REDSHIFT_OWN_ACTIONS),
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {
                            "redshift-data:statement-owner-iam-userid": "${aws:userid}"
                        }
                    },
                },
            ]
        if self.aurora_clusters:
            out.append(
                {
                    "Sid": "AuroraDataApi",
                    "Effect": "Allow",
                    "Action": list(RDS_DATA_ACTIONS),
                    "Resource": list(self.aurora_clusters),
                }
            )
        return out

    def policy(self, project: str) -> dict[str, Any]:
        """The project role's inline policy: its own keys, secrets and stop polls, nothing of
        another project's (run ids are ``<project>.<...>``; '.' never occurs in a name)."""
        p = self.partition
        bucket = f"arn:{p}:s3:::{self.bucket}"
        secrets = f"{self.secrets_prefix}{project}/"
        functions = f"arn:{p}:lambda:{self.region}:{self.account}:function:"
        return {
            "Version": "2012-10-17",
            "Statement": [
                *self.sql_statements(project),
                {
                    "Sid": "ProjectLogsAndOutputs",
                    "Effect": "Allow",
                    "Action": "s3:PutObject",
                    "Resource": [f"{bucket}/logs/{project}/*", f"{bucket}/outputs/{project}/*"],
                },
                {
                    "Sid": "ProjectAttemptInputs",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": f"{bucket}/inputs/{project}/*",
                },
                {
                    # the resource files its tasks list, at the versions their runs pinned
                    "Sid": "ProjectResourceFiles",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                    "Resource": f"{bucket}/resources/{project}/*",
                },
                {
                    "Sid": "ReadOwnTaskStatesForStops",
                    "Effect": "Allow",
                    "Action": "dynamodb:GetItem",
                    "Resource": f"arn:{p}:dynamodb:{self.region}:{self.account}:table/{self.table}",
                    "Condition": {
                        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"RUN#{project}.*"]},
                        "ForAllValues:StringEquals": {
                            "dynamodb:Attributes": ["pk", "sk", "st", "att"]
                        },
                        "StringEqualsIfExists": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"},
                    },
                },
                {
                    "Sid": "ProjectSecrets",
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": (
                        f"arn:{p}:secretsmanager:{self.region}:{self.account}:secret:{secrets}*"
                    ),
                },
                {
                    "Sid": "ProjectParameters",
                    "Effect": "Allow",
                    "Action": ["ssm:GetParameter", "ssm:GetParameters"],
                    "Resource": (
                        f"arn:{p}:ssm:{self.region}:{self.account}:parameter/{secrets.lstrip('/')}*"
                    ),
                },
                {
                    # a lambda task whose payload references a secret: the runner resolves it
                    # and invokes the user's function (runner.invoke_user_function)
                    "Sid": "UserLambdaTasks",
                    "Effect": "Allow",
                    "Action": "lambda:InvokeFunction",
                    "Resource": list(self.lambda_task_functions) or f"{functions}*",
                },
                {
                    "Sid": "NeverThisStacksFunctions",
                    "Effect": "Deny",
                    "Action": [
                        "lambda:InvokeFunction",
                        "lambda:InvokeAsync",
                        "lambda:InvokeFunctionUrl",
                    ],
                    "Resource": f"{functions}{self.stack}-*",
                },
                {
                    "Sid": "RunnerFunctionLogs",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": (
                        f"arn:{p}:logs:{self.region}:{self.account}:log-group:"
                        f"{self.log_group(project)}:*"
                    ),
                },
                {
                    "Sid": "XRayHasNoResourceLevelPermissions",
                    "Effect": "Allow",
                    "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                    "Resource": "*",
                },
                {
                    # the reporter of a kubernetes pod answers its attempt's task token
                    "Sid": "KubernetesPodsAnswerTaskTokens",
                    "Effect": "Allow",
                    "Action": [
                        "states:SendTaskSuccess",
                        "states:SendTaskFailure",
                        "states:SendTaskHeartbeat",
                    ],
                    "Resource": self.task_state_machine_arn(),
                },
            ],
        }


def _runner_code() -> bytes:
    """The runner function's own package: nothing but a note. Its code is the core layer's
    (the handler is a module of the layer), so a stack update reaches it by a layer change."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "README.txt",
            f"Stratoflow runner: the handler {RUNNER_HANDLER} is in the core layer.\n",
        )
    return buffer.getvalue()


class ProjectIdentities:
    """Makes and keeps each project's role and runner function (see the module's doc).
    Thread-safe: the dispatcher starts attempts from several threads."""

    def __init__(
        self,
        places: ProjectPlaces,
        *,
        boundary_arn: str,
        layers: Sequence[str],
        iam: Any,
        lambda_client: Any,
        logs: Any,
        eks: Any = None,
        eks_cluster: str = "",
        environment: Mapping[str, str] | None = None,
        log_retention_days: int | None = None,
        sleep: Sleep = time.sleep,
        role_propagation_seconds: float = ROLE_PROPAGATION_SECONDS,
        function_active_seconds: float = FUNCTION_ACTIVE_SECONDS,
    ) -> None:
        self.places = places
        self.boundary_arn = boundary_arn
        self.layers = [layer for layer in layers if layer]
        self._iam = iam
        self._lambda = lambda_client
        self._logs = logs
        self._eks = eks
        self.eks_cluster = eks_cluster
        # one setting with the IRSA trust's (places): the namespace a task names none of
        self.eks_namespace = places.eks_namespace or "default"
        self.environment = dict(environment or {})
        self.log_retention_days = log_retention_days
        self._sleep = sleep
        self._role_wait = role_propagation_seconds
        self._active_wait = function_active_seconds
        self._ready: dict[str, TaskIdentity] = {}
        self._associated: set[tuple[str, str]] = set()  # (project, namespace)
        self._lock = threading.Lock()

    # ------------------------------------------------------------ what it should be
    def function_settings(self, project: str) -> dict[str, Any]:
        """The runner function's configuration (without its description, which carries the
        digest of all of this and of the role's policy)."""
        return {
            "Runtime": RUNNER_RUNTIME,
            "Handler": RUNNER_HANDLER,
            "Role": self.places.role_arn(project),
            "Layers": list(self.layers),
            "Timeout": RUNNER_TIMEOUT_SECONDS,
            "MemorySize": RUNNER_MEMORY_MB,
            "EphemeralStorage": {"Size": RUNNER_EPHEMERAL_MB},
            "TracingConfig": {"Mode": "Active"},
            "Environment": {
                "Variables": {
                    **self.environment,
                    "POWERTOOLS_SERVICE_NAME": "stratoflow-runner",
                    "STRATOFLOW_PROJECT": project,
                }
            },
        }

    def digest(self, project: str) -> str:
        desired = {
            "function": self.function_settings(project),
            # not a configuration setting (update_function_code changes it): digested apart,
            # so that a runner made on another architecture is noticed and moved
            "architectures": [RUNNER_ARCHITECTURE],
            "policy": self.places.policy(project),
            "boundary": self.boundary_arn,
            "trust": self.places.trust(project),
        }
        return hashlib.sha256(json.dumps(desired, sort_keys=True).encode()).hexdigest()[:16]

    def description(self, project: str) -> str:
        return f"Stratoflow runner of project {project} [{self.digest(project)}]"[:256]

    # ------------------------------------------------------------ ensure
    def ensure(self, project: str) -> TaskIdentity:
        """The project's identity, made or brought up to date first if needed (idempotent;
        safe to race with another container doing the same)."""
        ready = self._ready.get(project)
        if ready is not None:
            return ready
        with self._lock:
            ready = self._ready.get(project)
            if ready is None:
                ready = self._ensure(project)
                self._ready[project] = ready
            return ready

    def ensure_pods(self, project: str, namespace: str | None) -> PodIdentity:
        """What the project's pods in ``namespace`` (None: the stack's) run as: its role made
        ready (``ensure``), and on a stack with a cluster the Pod Identity association of its
        service account there with that role (made once per project and namespace; one that
        exists already is fine). A namespace that cannot be one gets no association: the
        launcher refuses the task with a clear error."""
        role_arn = self.ensure(project).role_arn
        account = service_account_name(project)
        where = namespace or self.eks_namespace
        key = (project, where)
        if self.eks_cluster and key not in self._associated and valid_namespace(where):
            self._associate(where, account, self.places.role_arn(project))
            with self._lock:
                self._associated.add(key)
        # IRSA: the launcher annotates the service account with the role; without an issuer
        # the annotation would only make the pod's SDK try a web identity the role refuses
        return PodIdentity(account, role_arn if self.places.oidc_issuer else None)

    def _associate(self, namespace: str, account: str, role_arn: str) -> None:
        if self._eks is None:
            raise ProjectIdentityError("no EKS client: the pod identity cannot be associated")
        try:
            self._eks.create_pod_identity_association(
                clusterName=self.eks_cluster,
                namespace=namespace,
                serviceAccount=account,
                roleArn=role_arn,
            )
        except ClientError as exc:
            # ResourceInUseException: this service account has its association already
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
        log.info("pods of %s/%s run as %s", namespace, account, role_arn)

    def _ensure(self, project: str) -> TaskIdentity:
        name = self.places.function_name(project)
        identity = TaskIdentity(runner_function=name, role_arn=self.places.role_arn(project))
        current = self._function(name)
        wanted = self.description(project)
        if current is not None and current.get("Description") == wanted:
            return identity
        self._ensure_role(project)
        self._ensure_log_group(project)
        settings = {**self.function_settings(project), "Description": wanted}
        if current is None:
            self._create_function(project, name, settings)
        else:
            self._move_to_the_layers_architecture(name, current)
            self._retry_while_role_propagates(lambda: self._configure(name, settings))
        self._wait_active(name)
        log.info("project %s: runner %s and role %s ready", project, name, identity.role_arn)
        return identity

    def _move_to_the_layers_architecture(self, name: str, current: Mapping[str, Any]) -> None:
        """A runner made by a version whose layer was built for another architecture (x86_64
        before arm64) cannot load this layer's compiled dependencies: only a code update can
        change a function's architecture (its configuration cannot), so its code is updated
        with it before the configuration brings the new layer. Lambda's default, for a
        function that names none, is x86_64."""
        seen = [current]  # read again after a conflict: another container may have moved it

        def move() -> None:
            now = seen.pop() if seen else self._function(name) or {}
            if list(now.get("Architectures") or ["x86_64"]) == [RUNNER_ARCHITECTURE]:
                return
            self._lambda.update_function_code(
                FunctionName=name, ZipFile=_runner_code(), Architectures=[RUNNER_ARCHITECTURE]
            )
            self._wait_active(name)
            log.info("runner %s moved to %s", name, RUNNER_ARCHITECTURE)

        if not self._when_free(name, move, UPDATE_CONFLICT_TRIES):
            raise ProjectIdentityError(
                f"runner function {name}: other updates kept it busy; "
                f"not moved to {RUNNER_ARCHITECTURE}"
            )

    def _configure(self, name: str, settings: Mapping[str, Any]) -> None:
        """Its configuration brought to ``settings``; an update of another container in
        progress (ResourceConflictException) is waited for, then this one is made (the same
        settings: whichever lands last, the function ends as this version wants it)."""

        def configure() -> None:
            self._lambda.update_function_configuration(FunctionName=name, **settings)

        if not self._when_free(name, configure, UPDATE_CONFLICT_TRIES - 1):
            configure()  # a last try, whose conflict is raised as it is

    def _when_free(self, name: str, update: Callable[[], None], tries: int) -> bool:
        """``update()`` made once the function is free: another container's update of it in
        progress (every container re-ensures its runners after a deploy) makes Lambda refuse
        with ResourceConflictException; that update is waited for, then ``update`` is tried
        again, at most ``tries`` times in all. False if every try met a conflict."""
        for _ in range(tries):
            try:
                update()
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceConflictException":
                    raise
                self._wait_active(name)
            else:
                return True
        return False

    def _function(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self._lambda.get_function_configuration(FunctionName=name))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise

    def _ensure_role(self, project: str) -> None:
        places = self.places
        try:
            self._iam.create_role(
                Path=places.role_path(),
                RoleName=places.role_name(project),
                AssumeRolePolicyDocument=json.dumps(places.trust(project)),
                PermissionsBoundary=self.boundary_arn,
                Description=f"Tasks of Stratoflow project {project} (stack {places.stack})"[:1000],
                Tags=[
                    {"Key": "stratoflow:stack", "Value": places.stack},
                    {"Key": "stratoflow:project", "Value": project},
                ],
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "EntityAlreadyExists":
                raise
            # a role made before (by an older version, or before the stack had an OIDC
            # issuer) trusts what this version's does
            self._iam.update_assume_role_policy(
                RoleName=places.role_name(project),
                PolicyDocument=json.dumps(places.trust(project)),
            )
        # always: a role made by an older version gets the policy this version grants
        self._iam.put_role_policy(
            RoleName=places.role_name(project),
            PolicyName="project",
            PolicyDocument=json.dumps(places.policy(project)),
        )

    def _ensure_log_group(self, project: str) -> None:
        group = self.places.log_group(project)
        try:
            self._logs.create_log_group(logGroupName=group)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise
        if self.log_retention_days:
            self._logs.put_retention_policy(
                logGroupName=group, retentionInDays=self.log_retention_days
            )

    def _create_function(self, project: str, name: str, settings: Mapping[str, Any]) -> None:
        def create() -> None:
            self._lambda.create_function(
                FunctionName=name,
                Code={"ZipFile": _runner_code()},
                Architectures=[RUNNER_ARCHITECTURE],
                Tags={"stratoflow:stack": self.places.stack, "stratoflow:project": project},
                **settings,
            )

        try:
            self._retry_while_role_propagates(create)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceConflictException":
                raise
            # another container created it a moment ago: bring it to this version's settings
            self._wait_active(name)
            self._move_to_the_layers_architecture(name, self._function(name) or {})
            self._configure(name, settings)

    def _retry_while_role_propagates(self, call: Callable[[], Any]) -> None:
        """Lambda refuses a role IAM has not spread yet ("cannot be assumed by Lambda"):
        try again for up to ``role_propagation_seconds``."""
        waited, delay = 0.0, 1.0
        while True:
            try:
                call()
            except ClientError as exc:
                error = exc.response["Error"]
                not_yet = (
                    error["Code"] == "InvalidParameterValueException"
                    and "role" in str(error.get("Message", "")).lower()
                )
                if not not_yet:
                    raise
                if waited >= self._role_wait:
                    raise ProjectIdentityError(
                        f"the project role is not usable by Lambda after {waited:.0f} s: "
                        f"{error.get('Message', '')}"
                    ) from exc
            else:
                return
            self._sleep(delay)
            waited += delay
            delay = min(delay * 2, 8.0)

    def _wait_active(self, name: str) -> None:
        """A function that is Pending (just made) or being updated refuses invocations."""
        waited, delay = 0.0, 0.5
        while True:
            config = self._function(name) or {}
            state = config.get("State", "Active")
            update = config.get("LastUpdateStatus", "Successful")
            if state == "Active" and update != "InProgress":
                return
            if state == "Failed" or update == "Failed":
                raise ProjectIdentityError(
                    f"runner function {name} is {state}/{update}: "
                    f"{config.get('StateReason') or config.get('LastUpdateStatusReason')}"
                )
            if waited >= self._active_wait:
                raise ProjectIdentityError(
                    f"runner function {name} still {state} after {waited:.0f} s"
                )
            self._sleep(delay)
            waited += delay
            delay = min(delay * 2, 5.0)
