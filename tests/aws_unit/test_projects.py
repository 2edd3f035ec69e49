"""Each project's tasks run with an identity of their own (issue 8 item 6, issue 9 item 5):
``ProjectIdentities`` on moto makes a project's role (within the stack's boundary, under the
stack's path, with a policy of the project's keys) and its runner function, once, and brings
them up to date when the stack changes. With moto enforcing IAM, a task holding one project's
role reaches its own keys and none of another project's."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.awslambda.models import LambdaFunction
from moto.core import set_initial_no_auth_action_count

from stratoflow.adapters.aws.projects import (
    RUNNER_ARCHITECTURE,
    RUNNER_HANDLER,
    UPDATE_CONFLICT_TRIES,
    PodIdentity,
    ProjectIdentities,
    ProjectIdentityError,
    ProjectPlaces,
    _runner_code,
    project_digest,
    service_account_name,
)

REGION, ACCOUNT, STACK, BUCKET = "us-east-1", "123456789012", "sf", "sf-artifacts"
PLACES = ProjectPlaces(
    stack=STACK, partition="aws", region=REGION, account=ACCOUNT, bucket=BUCKET,
    table="sf-state", secrets_prefix="stratoflow/",
)  # fmt: skip
BOUNDARY_DOC = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
         "Resource": [f"arn:aws:s3:::{BUCKET}/{kind}/*" for kind in ("logs", "outputs", "inputs")]},
    ],
}  # fmt: skip


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


class Aws:
    """The clients ``ProjectIdentities`` uses, and a count of the requests they make."""

    def __init__(self, session: boto3.Session) -> None:
        self.iam = session.client("iam")
        self.lambda_ = session.client("lambda")
        self.logs = session.client("logs")
        self.s3 = session.client("s3")
        self.requests: Counter[str] = Counter()
        for client in (self.iam, self.lambda_, self.logs):
            service = client.meta.service_model.service_name

            def count(model: Any, _service: str = service, **_: Any) -> None:
                self.requests[f"{_service}.{model.name}"] += 1

            client.meta.events.register("before-call", count)
        self.s3.create_bucket(Bucket=BUCKET)
        self.boundary = self.iam.create_policy(
            PolicyName="sf-boundary", PolicyDocument=json.dumps(BOUNDARY_DOC)
        )["Policy"]["Arn"]
        self.layer = self.layer_version()

    def layer_version(self) -> str:
        return str(
            self.lambda_.publish_layer_version(
                LayerName="sf-core", Content={"ZipFile": b"PK\x05\x06" + b"\0" * 18}
            )["LayerVersionArn"]
        )

    def identities(
        self, *, layer: str | None = None, places: ProjectPlaces = PLACES, **kwargs: Any
    ) -> ProjectIdentities:
        return ProjectIdentities(
            places, boundary_arn=self.boundary, layers=[layer or self.layer], iam=self.iam,
            lambda_client=self.lambda_, logs=self.logs, log_retention_days=30,
            environment={"STRATOFLOW_TABLE": "sf-state"}, **kwargs,
        )  # fmt: skip


@pytest.fixture
def aws(env: None) -> Iterator[Aws]:
    with mock_aws():
        yield Aws(boto3.Session(region_name=REGION))


def test_a_project_gets_a_role_within_the_boundary_and_a_runner_function_of_its_own(
    aws: Aws,
) -> None:
    identity = aws.identities().ensure("analytics")

    digest = project_digest("analytics")
    assert identity.runner_function == f"{STACK}-r-{digest}"
    role = aws.iam.get_role(RoleName=f"{STACK}-p-{digest}")["Role"]
    assert identity.role_arn == role["Arn"] == PLACES.role_arn("analytics")
    assert role["Path"] == f"/stratoflow/{STACK}/"
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == aws.boundary
    tags = {t["Key"]: t["Value"] for t in role["Tags"]}
    assert tags == {"stratoflow:stack": STACK, "stratoflow:project": "analytics"}
    trust = role["AssumeRolePolicyDocument"]
    principals = trust["Statement"][0]["Principal"]["Service"]
    assert sorted(principals) == ["ecs-tasks.amazonaws.com", "lambda.amazonaws.com"]
    # the Standard task-attempt state machine's role, by name (its Athena query states),
    # and its kubernetes pods, by EKS Pod Identity (no OIDC issuer here: no IRSA statement)
    assert trust["Statement"][1:] == [
        {"Sid": "SqlQueriesOfTheTaskAttemptStateMachine", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/{STACK}-task-attempt"},
         "Action": "sts:AssumeRole"},
        {"Sid": "KubernetesPodsByPodIdentity", "Effect": "Allow",
         "Principal": {"Service": "pods.eks.amazonaws.com"},
         "Action": ["sts:AssumeRole", "sts:TagSession"]},
    ]  # fmt: skip
    policy = aws.iam.get_role_policy(RoleName=f"{STACK}-p-{digest}", PolicyName="project")
    assert policy["PolicyDocument"] == PLACES.policy("analytics")

    config = aws.lambda_.get_function_configuration(FunctionName=identity.runner_function)
    assert config["Role"] == identity.role_arn
    assert config["Handler"] == RUNNER_HANDLER
    assert [layer["Arn"] for layer in config["Layers"]] == [aws.layer]
    assert (config["Timeout"], config["MemorySize"]) == (900, 1024)
    variables = config["Environment"]["Variables"]
    assert variables["STRATOFLOW_PROJECT"] == "analytics"
    assert variables["STRATOFLOW_TABLE"] == "sf-state"
    assert not any(k.startswith("AWS_") for k in variables)
    (group,) = aws.logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{STACK}-r-")[
        "logGroups"
    ]
    assert (group["logGroupName"], group["retentionInDays"]) == (PLACES.log_group("analytics"), 30)

    other = aws.identities().ensure("billing")
    assert other.runner_function != identity.runner_function
    assert other.role_arn != identity.role_arn


def test_a_container_makes_an_identity_once_and_a_cold_start_only_looks(aws: Aws) -> None:
    identities = aws.identities()
    first = identities.ensure("analytics")
    assert aws.requests["iam.CreateRole"] == 1
    assert aws.requests["lambda.CreateFunction"] == 1
    aws.requests.clear()
    assert identities.ensure("analytics") == first
    assert aws.requests == Counter()  # remembered: no request at all

    assert aws.identities().ensure("analytics") == first  # another container
    assert aws.requests == Counter({"lambda.GetFunctionConfiguration": 1})


def test_a_new_layer_reaches_every_runner_on_its_next_dispatch(aws: Aws) -> None:
    """A stack update publishes a new core layer: the next container that dispatches for a
    project brings its runner function (and role policy) up to the new settings."""
    aws.identities().ensure("analytics")
    newer = aws.layer_version()
    aws.requests.clear()
    identity = aws.identities(layer=newer).ensure("analytics")
    config = aws.lambda_.get_function_configuration(FunctionName=identity.runner_function)
    assert [layer["Arn"] for layer in config["Layers"]] == [newer]
    assert aws.requests["lambda.UpdateFunctionConfiguration"] == 1
    assert aws.requests["lambda.CreateFunction"] == 0
    assert aws.requests["iam.PutRolePolicy"] == 1


def test_a_runner_is_made_on_the_layers_architecture(aws: Aws) -> None:
    identity = aws.identities().ensure("analytics")
    config = aws.lambda_.get_function_configuration(FunctionName=identity.runner_function)
    assert config["Architectures"] == [RUNNER_ARCHITECTURE] == ["arm64"]


def test_a_runner_made_on_x86_64_moves_to_the_layers_architecture(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner made by a version whose layer held x86_64 wheels (Lambda's default
    architecture, named by no setting then) could not load an arm64 layer's compiled
    dependencies: its next ensure moves it by a code update (its configuration cannot)."""
    # moto's UpdateFunctionCode ignores Architectures, which Lambda's applies (API reference,
    # UpdateFunctionCode): applied here as Lambda does, and the request's own value checked
    sent: list[dict[str, Any]] = []
    update_code = LambdaFunction.update_function_code

    def update_function_code(self: LambdaFunction, spec: dict[str, Any]) -> dict[str, Any]:
        sent.append(spec)
        if "Architectures" in spec:
            self.architectures = spec["Architectures"]
        return update_code(self, spec)

    monkeypatch.setattr(LambdaFunction, "update_function_code", update_function_code)
    identities = aws.identities()
    # the runner as the x86_64 version left it: its settings then, no architecture named
    name = _older_runner(aws, identities)
    assert aws.lambda_.get_function_configuration(FunctionName=name)["Architectures"] == ["x86_64"]
    aws.requests.clear()

    aws.identities().ensure("analytics")
    config = aws.lambda_.get_function_configuration(FunctionName=name)
    assert config["Architectures"] == ["arm64"]
    assert aws.requests["lambda.UpdateFunctionCode"] == 1
    # (moto applies one request to the function's $LATEST and to its version: two calls)
    assert sent
    assert all(s.get("Architectures") == ["arm64"] for s in sent)
    assert aws.requests["lambda.UpdateFunctionConfiguration"] == 1
    assert config["Description"] == identities.description("analytics")

    aws.requests.clear()
    aws.identities().ensure("analytics")  # moved once: the next container only looks
    assert aws.requests == Counter({"lambda.GetFunctionConfiguration": 1})


def test_containers_racing_for_one_project_make_one_function(aws: Aws) -> None:
    identities = aws.identities()
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(identities.ensure("analytics")))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert aws.requests["lambda.CreateFunction"] == 1


ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/ABC123"
IN_STRATOFLOW = replace(PLACES, eks_namespace="stratoflow")
WITH_IRSA = replace(IN_STRATOFLOW, oidc_issuer=ISSUER)


def test_with_an_oidc_issuer_the_role_trusts_its_projects_service_accounts_only() -> None:
    (irsa,) = [st for st in WITH_IRSA.trust("analytics")["Statement"]
               if st["Sid"] == "KubernetesPodsByIrsa"]  # fmt: skip
    assert irsa["Principal"] == {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"}
    assert irsa["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert irsa["Condition"] == {
        "StringEquals": {
            f"{ISSUER}:sub": f"system:serviceaccount:stratoflow:{service_account_name('analytics')}",
            f"{ISSUER}:aud": "sts.amazonaws.com",
        },
    }
    with pytest.raises(ValueError, match="IRSA needs the stack's EKS namespace"):
        replace(PLACES, oidc_issuer=ISSUER).trust("analytics")
    assert service_account_name("analytics") == f"stratoflow-{project_digest('analytics')}"


def test_a_role_made_before_the_stack_had_an_oidc_issuer_gets_the_new_trust(aws: Aws) -> None:
    aws.identities().ensure("analytics")
    aws.requests.clear()
    aws.identities(places=WITH_IRSA).ensure("analytics")
    role = aws.iam.get_role(RoleName=PLACES.role_name("analytics"))["Role"]
    assert role["AssumeRolePolicyDocument"] == WITH_IRSA.trust("analytics")
    assert aws.requests["iam.UpdateAssumeRolePolicy"] == 1


def test_a_role_made_before_the_state_machine_could_run_its_queries_gets_the_new_trust(
    aws: Aws,
) -> None:
    """A project role made by a version whose trust did not name the task-attempt state
    machine's role (its Athena queries ran on the runner then) trusts it after the next
    ensure: the trust is part of the digest the runner's description carries, so a changed
    trust is noticed and the role's trust policy updated (iam:UpdateAssumeRolePolicy)."""
    identities = aws.identities()
    identities.ensure("analytics")
    old = PLACES.trust("analytics")
    old["Statement"] = [st for st in old["Statement"] if "AWS" not in st["Principal"]]
    aws.iam.update_assume_role_policy(
        RoleName=PLACES.role_name("analytics"), PolicyDocument=json.dumps(old)
    )
    # the function as that version left it: its description carries the old digest
    aws.lambda_.update_function_configuration(
        FunctionName=PLACES.function_name("analytics"), Description="Stratoflow runner [old]"
    )
    aws.requests.clear()
    aws.identities().ensure("analytics")
    role = aws.iam.get_role(RoleName=PLACES.role_name("analytics"))["Role"]
    assert role["AssumeRolePolicyDocument"] == PLACES.trust("analytics")
    (sql,) = [st for st in role["AssumeRolePolicyDocument"]["Statement"]
              if st["Sid"] == "SqlQueriesOfTheTaskAttemptStateMachine"]  # fmt: skip
    assert sql["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:role/{STACK}-task-attempt"}
    assert sql["Action"] == "sts:AssumeRole"
    assert aws.requests["iam.UpdateAssumeRolePolicy"] == 1


def test_the_policy_lets_pods_answer_the_stacks_task_tokens_only() -> None:
    (answers,) = [st for st in PLACES.policy("analytics")["Statement"]
                  if st["Sid"] == "KubernetesPodsAnswerTaskTokens"]  # fmt: skip
    assert (
        answers["Resource"]
        == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STACK}-task-attempt"
    )
    assert sorted(answers["Action"]) == [
        "states:SendTaskFailure", "states:SendTaskHeartbeat", "states:SendTaskSuccess"
    ]  # fmt: skip


class FakeEks:
    """eks:CreatePodIdentityAssociation, which moto does not implement: records the calls and
    answers as EKS does for an association that exists (ResourceInUseException, 409)."""

    def __init__(self, fail: str | None = None) -> None:
        self.associations: dict[tuple[str, str, str], str] = {}
        self.calls: list[dict[str, str]] = []
        self.fail = fail

    def create_pod_identity_association(self, **kwargs: str) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.fail:
            raise ClientError({"Error": {"Code": self.fail, "Message": "no"}},
                              "CreatePodIdentityAssociation")  # fmt: skip
        key = (kwargs["clusterName"], kwargs["namespace"], kwargs["serviceAccount"])
        if key in self.associations:
            raise ClientError(
                {"Error": {"Code": "ResourceInUseException",
                           "Message": "Association already exists: a-123"}},
                "CreatePodIdentityAssociation",
            )  # fmt: skip
        self.associations[key] = kwargs["roleArn"]
        return {"association": {"associationId": "a-123", **kwargs}}


def test_a_projects_pods_get_its_role_by_pod_identity_once_per_namespace(aws: Aws) -> None:
    eks = FakeEks()
    identities = aws.identities(eks=eks, eks_cluster="prod", places=IN_STRATOFLOW)
    account = service_account_name("analytics")
    pods = identities.ensure_pods("analytics", None)
    assert pods == PodIdentity(service_account=account, role_arn=None)  # no IRSA: no annotation
    assert eks.associations == {("prod", "stratoflow", account): PLACES.role_arn("analytics")}
    # the role exists (the association names it) and trusts Pod Identity
    trust = aws.iam.get_role(RoleName=PLACES.role_name("analytics"))["Role"]
    assert "pods.eks.amazonaws.com" in json.dumps(trust["AssumeRolePolicyDocument"])
    identities.ensure_pods("analytics", "stratoflow")
    identities.ensure_pods("analytics", None)
    assert len(eks.calls) == 1  # remembered per (project, namespace)
    identities.ensure_pods("analytics", "etl")
    identities.ensure_pods("billing", "etl")
    assert set(eks.associations) == {
        ("prod", "stratoflow", account), ("prod", "etl", account),
        ("prod", "etl", service_account_name("billing")),
    }  # fmt: skip
    # another container: the association exists already, which is fine
    again = aws.identities(eks=eks, eks_cluster="prod", places=IN_STRATOFLOW)
    assert again.ensure_pods("analytics", None) == pods
    assert len(eks.calls) == 4
    # a name that cannot be a namespace: no association (the launcher refuses the task)
    again.ensure_pods("analytics", "Not A Namespace")
    assert len(eks.calls) == 4


def test_with_irsa_the_pods_identity_names_the_role_for_the_annotation(aws: Aws) -> None:
    identities = aws.identities(places=WITH_IRSA, eks=FakeEks(), eks_cluster="prod")
    pods = identities.ensure_pods("analytics", "etl")
    assert pods.role_arn == PLACES.role_arn("analytics")


def test_a_stack_without_a_cluster_associates_nothing_and_errors_are_not_swallowed(
    aws: Aws,
) -> None:
    eks = FakeEks()
    pods = aws.identities(eks=eks).ensure_pods("analytics", "etl")
    assert pods.service_account == service_account_name("analytics")
    assert eks.calls == []
    refused = aws.identities(eks=FakeEks(fail="AccessDeniedException"), eks_cluster="prod")
    with pytest.raises(ClientError, match="AccessDenied"):
        refused.ensure_pods("analytics", "etl")


class NotYetAssumable:
    """Lambda's answer while IAM has not spread a new role yet, ``failures`` times."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def create_function(self, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise ClientError(
                {"Error": {"Code": "InvalidParameterValueException",
                           "Message": "The role defined for the function cannot be assumed by Lambda."}},
                "CreateFunction",
            )  # fmt: skip
        return self.inner.create_function(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_role_lambda_cannot_use_yet_is_waited_for(aws: Aws) -> None:
    slept: list[float] = []
    identities = aws.identities(sleep=slept.append)
    identities._lambda = NotYetAssumable(aws.lambda_, failures=2)
    identity = identities.ensure("analytics")
    assert slept == [1.0, 2.0]
    assert aws.lambda_.get_function_configuration(FunctionName=identity.runner_function)


def test_a_role_that_never_becomes_usable_fails_the_dispatch_clearly(aws: Aws) -> None:
    slept: list[float] = []
    identities = aws.identities(sleep=slept.append, role_propagation_seconds=10)
    identities._lambda = NotYetAssumable(aws.lambda_, failures=1000)
    with pytest.raises(ProjectIdentityError, match="not usable by Lambda after 15 s"):
        identities.ensure("analytics")
    assert sum(slept) == 15.0
    # nothing is remembered: the next dispatch (the reconciler's) tries again
    identities._lambda = aws.lambda_
    assert identities.ensure("analytics").runner_function == PLACES.function_name("analytics")


def test_names_fit_aws_limits_for_the_longest_stack_name() -> None:
    longest = ProjectPlaces(
        stack="s" * 51, partition="aws", region=REGION, account=ACCOUNT, bucket=BUCKET,
        table="t", secrets_prefix="stratoflow/",
    )  # fmt: skip
    project = "p" * 128
    assert len(longest.function_name(project)) <= 64  # Lambda function names
    assert len(longest.role_name(project)) <= 64  # IAM role names
    assert longest.function_name(project).startswith(f"{'s' * 51}-r-")
    assert len({project_digest(f"project-{i}") for i in range(10_000)}) == 10_000


@set_initial_no_auth_action_count(3)
def test_iam_keeps_one_projects_tasks_out_of_another_projects_keys(env: None) -> None:
    """moto enforcing IAM: the credentials a task of project A holds (A's role, assumed as
    Lambda or ECS would) write A's logs and outputs and read A's inputs and resource files
    (any version), and are refused on every key of project B."""
    with mock_aws():
        iam = boto3.client("iam")
        # the first three requests go unchecked: they make the administrator the test uses
        iam.create_user(UserName="admin")
        iam.put_user_policy(
            UserName="admin",
            PolicyName="all",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        )  # fmt: skip
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        admin = boto3.Session(
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            region_name=REGION,
        )
        aws = Aws(admin)
        identities = aws.identities()
        sts = admin.client("sts")
        versions: dict[str, str] = {}
        for project in ("a", "b"):
            # the role as ensure() makes it (moto's Lambda refuses signed requests once IAM is
            # enforced, so the runner function is left out here; tested above)
            identities._ensure_role(project)
            # moto checks the trust policy: let the test stand in for Lambda and ECS
            # (only the stand-in: moto cannot read a statement naming services)
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/admin"},
                    }
                ],
            }
            aws.iam.update_assume_role_policy(
                RoleName=PLACES.role_name(project), PolicyDocument=json.dumps(trust)
            )  # fmt: skip
            aws.s3.put_object(
                Bucket=BUCKET, Key=f"inputs/{project}/{project}.wf.k/t/1.json", Body=b"{}"
            )
            aws.s3.put_bucket_versioning(
                Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
            )
            versions[project] = aws.s3.put_object(
                Bucket=BUCKET, Key=f"resources/{project}/sql/load.sql", Body=b"select 1"
            )["VersionId"]

        def task_of(project: str) -> Any:
            creds = sts.assume_role(
                RoleArn=PLACES.role_arn(project), RoleSessionName="task-attempt"
            )["Credentials"]
            return boto3.client(
                "s3",
                region_name=REGION,
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )

        for mine, other in (("a", "b"), ("b", "a")):
            task = task_of(mine)
            task.put_object(Bucket=BUCKET, Key=f"logs/{mine}/{mine}.wf.k/t/1.log", Body=b"ok")
            task.put_object(Bucket=BUCKET, Key=f"outputs/{mine}/{mine}.wf.k/t/1.json", Body=b"{}")
            task.get_object(Bucket=BUCKET, Key=f"inputs/{mine}/{mine}.wf.k/t/1.json")
            # its resource files, at a pinned version: read, never written
            found = task.get_object(
                Bucket=BUCKET, Key=f"resources/{mine}/sql/load.sql", VersionId=versions[mine]
            )
            assert found["Body"].read() == b"select 1"
            with pytest.raises(ClientError, match="AccessDenied"):
                task.get_object(
                    Bucket=BUCKET, Key=f"resources/{other}/sql/load.sql", VersionId=versions[other]
                )
            with pytest.raises(ClientError, match="AccessDenied"):
                task.get_object(Bucket=BUCKET, Key=f"resources/{other}/sql/load.sql")
            with pytest.raises(ClientError, match="AccessDenied"):
                task.put_object(Bucket=BUCKET, Key=f"resources/{mine}/sql/load.sql", Body=b"x")
            for call, where in (
                (task.put_object, f"logs/{other}/{other}.wf.k/t/1.log"),
                (task.put_object, f"outputs/{other}/{other}.wf.k/t/1.json"),
                (task.get_object, f"inputs/{other}/{other}.wf.k/t/1.json"),
                (task.get_object, f"logs/{mine}/{mine}.wf.k/t/1.log"),  # logs: write only
                (task.put_object, "config.json"),
            ):
                with pytest.raises(ClientError, match="AccessDenied"):
                    call(
                        Bucket=BUCKET,
                        Key=where,
                        **({"Body": b"x"} if call == task.put_object else {}),
                    )
            with pytest.raises(ClientError, match="AccessDenied"):
                task.list_objects_v2(Bucket=BUCKET)


def _in_progress(operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "ResourceConflictException",
                   "Message": "The operation cannot be performed at this time. An update is in "
                              "progress for resource: ..."}},
        operation,
    )  # fmt: skip


def _older_runner(aws: Aws, identities: ProjectIdentities, **settings: Any) -> str:
    """Project ``analytics``'s role, and its runner as an older version made it (another
    description; x86_64 unless ``settings`` say otherwise): its name."""
    name = PLACES.function_name("analytics")
    aws.iam.create_role(
        RoleName=PLACES.role_name("analytics"), Path=PLACES.role_path(),
        AssumeRolePolicyDocument=json.dumps(PLACES.trust("analytics")),
    )  # fmt: skip
    old = {**identities.function_settings("analytics"), "Description": "[old]"}
    old.update({k: v for k, v in settings.items() if v is not None})
    aws.lambda_.create_function(FunctionName=name, Code={"ZipFile": _runner_code()}, **old)
    return name


@pytest.mark.parametrize("operation", ["UpdateFunctionCode", "UpdateFunctionConfiguration"])
def test_a_container_racing_another_ones_move_waits_for_it_rather_than_failing(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    """Every dispatcher container re-ensures a runner after the arm64 deploy (its digest
    changed), so several move the same x86_64 runner at once. Lambda refuses a code or
    configuration update while another is in progress (ResourceConflictException): the one
    refused waits for that update and goes on (re-reading the architecture), rather than
    failing its dispatch with the other container's update half done."""

    def update_function_code(self: LambdaFunction, spec: dict[str, Any]) -> dict[str, Any]:
        if "Architectures" in spec:
            self.architectures = spec["Architectures"]
        return update_code(self, spec)

    update_code = LambdaFunction.update_function_code
    monkeypatch.setattr(LambdaFunction, "update_function_code", update_function_code)
    identities = aws.identities(sleep=lambda _: None)
    name = _older_runner(aws, identities)
    refused: list[str] = []

    def other_container_first(model: Any, **_: Any) -> None:
        if model.name != operation or refused:
            return
        refused.append(model.name)
        # the other container's same update got there first (and is still in progress)
        other = boto3.Session(region_name=REGION).client("lambda")
        if operation == "UpdateFunctionCode":
            other.update_function_code(
                FunctionName=name, ZipFile=_runner_code(), Architectures=[RUNNER_ARCHITECTURE]
            )
        raise _in_progress(operation)

    aws.lambda_.meta.events.register("before-call.lambda", other_container_first)
    identity = identities.ensure("analytics")

    assert refused == [operation]
    config = aws.lambda_.get_function_configuration(FunctionName=identity.runner_function)
    assert config["Architectures"] == ["arm64"]
    assert config["Description"] == identities.description("analytics")


@pytest.mark.parametrize("operation", ["UpdateFunctionCode", "UpdateFunctionConfiguration"])
def test_a_runner_kept_busy_by_other_updates_fails_after_its_tries_naming_it(
    aws: Aws, operation: str
) -> None:
    """Updates of other containers that never end: each refused update is waited for and
    tried again, ``UPDATE_CONFLICT_TRIES`` times in all, then the ensure fails (the move
    naming the runner and the architecture it could not reach, the configuration with
    Lambda's own error) rather than trying for ever."""
    identities = aws.identities(sleep=lambda _: None)
    # for the configuration, a runner already moved: only its configuration is updated
    moved = operation == "UpdateFunctionConfiguration"
    name = _older_runner(aws, identities, Architectures=[RUNNER_ARCHITECTURE] if moved else None)
    refused: list[str] = []

    def always_busy(model: Any, **_: Any) -> None:
        if model.name == operation:
            refused.append(model.name)
            raise _in_progress(operation)

    aws.lambda_.meta.events.register("before-call.lambda", always_busy)
    if operation == "UpdateFunctionCode":
        with pytest.raises(ProjectIdentityError, match=f"{name}: other updates kept it busy"):
            identities.ensure("analytics")
    else:
        with pytest.raises(ClientError, match="ResourceConflictException"):
            identities.ensure("analytics")
    assert len(refused) == UPDATE_CONFLICT_TRIES
