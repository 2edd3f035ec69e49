"""Issue 8, item 6: the AWS stack is closed to privilege escalation, shown on the template SAM
produces (test_template.translate) by evaluating its IAM policies, not by reading them.

The evaluator below resolves each statement's resources to concrete ARNs for one example
deployment (stack ``stratoflow`` in us-east-1, account 123456789012), every ``Fn::If`` branch
taken (so a condition cannot hide a grant), then decides a request as IAM does for one
identity policy set: an explicit Deny wins, else an Allow grants, else it is denied.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import pathlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from stratoflow.adapters.aws.projects import ProjectPlaces, service_account_name

from .test_template import (
    ASL,
    ROOT,
    TEMPLATE,
    _as_list,
    _branches,
    _statements,
    resources_of,
    translate,
)

PARTITION, REGION, ACCOUNT, STACK = "aws", "us-east-1", "123456789012", "stratoflow"
PSEUDO = {
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK,
    "AWS::URLSuffix": "amazonaws.com",
}
LAMBDA = f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:"
BATCH = f"arn:{PARTITION}:batch:{REGION}:{ACCOUNT}:"

# Roles of the template whose credentials user-defined work holds or directs: the state
# machines (their input names the user's function, queue and job definition) and the role
# lambda tasks are invoked with. Not BatchExecutionRole: ECS's agent uses it, the container
# never sees it. User shell/python code, user images on Batch and kubernetes pods run with a
# project's role (PROJECTS below), which the dispatcher creates at run time
# (adapters/aws/projects.py).
USER_WORK_ROLES = (
    "TaskAttemptStateMachineRole",
    "ExpressTaskAttemptStateMachineRole",
    "LambdaTaskRole",
)
# Two projects of the example deployment: each has a role and a runner function of its own.
PROJECTS = ("analytics", "billing")
RUNNERS = "ProjectRunner:"  # stack_function_arns' key of each project's runner function
# What the state machines themselves invoke (the ASL's own ARNs, and the project runner the
# dispatcher names, which the roles allow only under <stack>-r-*).
OWN_TARGETS = {
    "TaskAttemptStateMachineRole": {"EksLauncherFunction", *(RUNNERS + p for p in PROJECTS)},
    "ExpressTaskAttemptStateMachineRole": {RUNNERS + p for p in PROJECTS},
}
INVOKE_ACTIONS = ("lambda:InvokeFunction", "lambda:InvokeAsync", "lambda:InvokeFunctionUrl")


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    return translate(sam)


# ---------------------------------------------------------------- resolving values


def _physical(cfn: Mapping[str, Any], logical: str, attribute: str | None = None) -> str:
    """A resource's ARN (GetAtt .Arn / Ref) in the example deployment."""
    res = cfn["Resources"][logical]
    props = res.get("Properties", {})
    kind = res["Type"]
    if kind == "AWS::Lambda::Function":
        return LAMBDA + _one(cfn, props["FunctionName"])
    if kind == "AWS::Batch::JobQueue":
        return f"{BATCH}job-queue/{STACK}-{logical}"
    if kind == "AWS::Batch::JobDefinition":
        name = _one(cfn, props["JobDefinitionName"]) if "JobDefinitionName" in props else logical
        return f"{BATCH}job-definition/{name}:1"
    if kind == "AWS::S3::Bucket":
        return f"arn:{PARTITION}:s3:::{STACK}-{logical.lower()}"
    if kind == "AWS::IAM::Role":
        if "RoleName" in props:  # named: the path is / unless the template says otherwise
            path = props.get("Path", "/")
            return f"arn:{PARTITION}:iam::{ACCOUNT}:role{path}{_one(cfn, props['RoleName'])}"
        return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{STACK}-{logical}"
    if kind == "AWS::DynamoDB::Table":
        return f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{STACK}-{logical}"
    return f"arn:{PARTITION}:{logical}"


def _one(cfn: Mapping[str, Any], value: Any) -> str:
    (only,) = set(resolve(cfn, value, {}))
    return only


def resolve(cfn: Mapping[str, Any], value: Any, params: Mapping[str, list[str]]) -> list[str]:
    """Every string ``value`` can take (each Fn::If branch), lists flattened."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in resolve(cfn, item, params)]
    if not isinstance(value, dict):
        raise AssertionError(f"cannot resolve {value!r}")
    if set(value) == {"Fn::If"}:
        _cond, yes, no = value["Fn::If"]
        return resolve(cfn, yes, params) + resolve(cfn, no, params)
    if set(value) == {"Ref"}:
        name = value["Ref"]
        if name == "AWS::NoValue":
            return []
        if name in PSEUDO:
            return [PSEUDO[name]]
        if name in params:
            return list(params[name])
        if name in cfn.get("Parameters", {}):
            default = cfn["Parameters"][name].get("Default", "")
            return [v for v in str(default).split(",") if v] if default else []
        return [_physical(cfn, name)]
    if set(value) == {"Fn::GetAtt"}:
        logical, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn", value
        return [_physical(cfn, logical)]
    if set(value) == {"Fn::Sub"}:
        template = value["Fn::Sub"]
        assert isinstance(template, str), value

        def sub(match: re.Match[str]) -> str:
            ref = match.group(1)
            if "." in ref:
                logical, _attr = ref.split(".", 1)
                return _physical(cfn, logical)
            (got,) = resolve(cfn, {"Ref": ref}, params) or [""]
            return got

        return [re.sub(r"\$\{([^}!]+)\}", sub, template)]
    raise AssertionError(f"cannot resolve {value!r}")


# ---------------------------------------------------------------- evaluating policies


def role_statements(cfn: Mapping[str, Any], role: str) -> Iterator[dict[str, Any]]:
    """Every identity-policy statement that applies to ``role``: inline policies, this
    stack's managed policies it attaches, and AWS::IAM::Policy resources naming it."""
    resources = cfn["Resources"]
    props = resources[role]["Properties"]
    for policy in _as_list(props.get("Policies", [])):
        yield from _statements(policy["PolicyDocument"])
    for arn in _as_list(props.get("ManagedPolicyArns", [])):
        yield from _statements(resources[arn["Ref"]]["Properties"]["PolicyDocument"])
    for res in resources.values():
        if res["Type"] == "AWS::IAM::Policy":
            attached = [r["Ref"] for r in _as_list(res["Properties"].get("Roles", []))]
            if role in attached:
                yield from _statements(res["Properties"]["PolicyDocument"])


def _matches(pattern: str, value: str) -> bool:
    """IAM's wildcards: * any run of characters (':' and '/' included), ? one character."""
    return fnmatch.fnmatchcase(value, pattern)


def places(params: Mapping[str, list[str]] | None = None) -> ProjectPlaces:
    """The example deployment's project names (the template's defaults), with what the
    stack's parameters in ``params`` give the project roles (the dispatcher reads them from
    its environment, which the template sets from the same parameters)."""
    given = params or {}
    return ProjectPlaces(
        stack=STACK, partition=PARTITION, region=REGION, account=ACCOUNT,
        bucket=f"{STACK}-artifactbucket", table=f"{STACK}-StateTable",
        secrets_prefix="stratoflow/",
        lambda_task_functions=tuple(given.get("LambdaTaskFunctionArns", ())),
        athena_workgroups=tuple(given.get("AthenaWorkgroupArns", ())),
        redshift_resources=tuple(given.get("RedshiftResourceArns", ())),
        aurora_clusters=tuple(given.get("AuroraClusterArns", ())),
    )  # fmt: skip


def boundary_statements(cfn: Mapping[str, Any]) -> list[dict[str, Any]]:
    doc = cfn["Resources"]["ProjectTaskBoundary"]["Properties"]["PolicyDocument"]
    return list(_statements(doc))


def decide(
    cfn: Mapping[str, Any],
    role: str,
    action: str,
    resource: str,
    params: Mapping[str, list[str]] | None = None,
) -> bool:
    """Whether ``role``'s identity policies allow ``action`` on ``resource``. A role named
    ``project:<name>`` is that project's role: its own policy (what the dispatcher puts on
    it) within the stack's permissions boundary, as IAM decides it (both must allow)."""
    if role.startswith("project:"):
        own = places(params).policy(role.removeprefix("project:"))["Statement"]
        return allows(cfn, own, action, resource, params) and allows(
            cfn, boundary_statements(cfn), action, resource, params
        )
    return allows(cfn, list(role_statements(cfn, role)), action, resource, params)


def allows(
    cfn: Mapping[str, Any],
    statements: list[dict[str, Any]],
    action: str,
    resource: str,
    params: Mapping[str, list[str]] | None = None,
) -> bool:
    """One policy set's decision: an explicit Deny wins, else an Allow grants (conditions are
    not evaluated: a conditional Allow counts as an Allow, the cautious reading here)."""
    allowed = False
    for st in statements:
        assert "NotResource" not in st, st
        assert "NotAction" not in st, st
        if not any(_matches(a, action) for a in _as_list(st["Action"])):
            continue
        patterns = [p for r in _as_list(st["Resource"]) for p in resolve(cfn, r, params or {})]
        if not any(_matches(p, resource) for p in patterns):
            continue
        if st["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


def stack_function_arns(cfn: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each function of the stack: its ARN, and the same through an alias and a version."""
    out = {}
    arns = {logical: _physical(cfn, logical)
            for logical in resources_of(dict(cfn), "AWS::Lambda::Function")}  # fmt: skip
    for project in PROJECTS:
        arns[RUNNERS + project] = LAMBDA + places().function_name(project)
    for logical, arn in arns.items():
        out[logical] = [arn, f"{arn}:live", f"{arn}:7", f"{arn}:$LATEST"]
    return out


# Whatever LambdaTaskFunctionArns says (the default "every function", or a list that happens
# to cover the stack's own functions), the stack's functions stay out of reach.
LAMBDA_TASK_PARAMS: list[dict[str, list[str]]] = [
    {},
    {"LambdaTaskFunctionArns": [LAMBDA + "*"]},
    {"LambdaTaskFunctionArns": [LAMBDA + f"{STACK}-*", LAMBDA + "etl-*"]},
]


def escalations(cfn: Mapping[str, Any]) -> list[str]:
    found = []
    functions = stack_function_arns(cfn)
    for params in LAMBDA_TASK_PARAMS:
        for role in (*USER_WORK_ROLES, *(f"project:{p}" for p in PROJECTS)):
            if not role.startswith("project:") and role not in cfn["Resources"]:
                continue
            for logical, arns in functions.items():
                if logical in OWN_TARGETS.get(role, set()):
                    continue
                for arn in arns:
                    found.extend(
                        f"{role} may {action} {arn} with {params}"
                        for action in INVOKE_ACTIONS
                        if decide(cfn, role, action, arn, params)
                    )
    return found


# ---------------------------------------------------------------- 1. no role of user work invokes the stack


def test_no_role_of_user_work_may_invoke_a_function_of_the_stack(cfn: dict[str, Any]) -> None:
    assert set(stack_function_arns(cfn)) >= {
        "ApiFunction",
        "AdvanceFunction",
        "TriggerFunction",
        "ReconcilerFunction",
        RUNNERS + "analytics",
        "EksLauncherFunction",
        "ProjectorFunction",
        "LifecycleFunction",
    }
    assert escalations(cfn) == []


def test_lambda_tasks_may_still_invoke_the_users_functions(cfn: dict[str, Any]) -> None:
    """The Deny is not a Deny of everything: the user's functions stay invokable."""
    assert decide(cfn, "LambdaTaskRole", "lambda:InvokeFunction", LAMBDA + "etl-load")
    assert decide(cfn, "LambdaTaskRole", "lambda:InvokeFunction", LAMBDA + "etl-load:prod")
    listed = {"LambdaTaskFunctionArns": [LAMBDA + "etl-*"]}
    assert decide(cfn, "LambdaTaskRole", "lambda:InvokeFunction", LAMBDA + "etl-load", listed)
    # a project's runner invokes them for a lambda task with a secret reference, as the
    # project's role: its policy within the boundary, the stack's functions still out of reach
    assert decide(cfn, "project:analytics", "lambda:InvokeFunction", LAMBDA + "etl-load")
    assert decide(cfn, "project:analytics", "lambda:InvokeFunction", LAMBDA + "etl-load", listed)
    # (the evaluator takes both branches of the boundary's If: the role's own policy narrows)
    narrowed = replace(places(), lambda_task_functions=(LAMBDA + "etl-*",)).policy("analytics")
    own = narrowed["Statement"]
    assert allows(cfn, own, "lambda:InvokeFunction", LAMBDA + "etl-load")
    assert not allows(cfn, own, "lambda:InvokeFunction", LAMBDA + "other")
    assert not decide(cfn, "project:analytics", "lambda:InvokeAsync", LAMBDA + "etl-load")
    assert not decide(
        cfn,
        "project:analytics",
        "lambda:InvokeFunction",
        LAMBDA + places().function_name("billing"),
    )
    # the state machines invoke the project runners and the launcher themselves
    runner = LAMBDA + places().function_name("analytics")
    assert decide(cfn, "TaskAttemptStateMachineRole", "lambda:InvokeFunction", runner)
    assert decide(cfn, "ExpressTaskAttemptStateMachineRole", "lambda:InvokeFunction", runner)


def test_every_wildcard_invoke_allow_is_covered_by_a_deny_of_the_stack_prefix(
    cfn: dict[str, Any],
) -> None:
    """The shape of the fix: an Allow on lambda:InvokeFunction whose resource has a wildcard
    sits in a role with a Deny covering every function the stack defines."""
    every = [arn for arns in stack_function_arns(cfn).values() for arn in arns]
    wildcard_roles = set()
    for role in resources_of(cfn, "AWS::IAM::Role"):
        statements = list(role_statements(cfn, role))
        for st in statements:
            if st["Effect"] != "Allow" or "lambda:InvokeFunction" not in _as_list(st["Action"]):
                continue
            patterns = [p for r in _as_list(st["Resource"]) for p in resolve(cfn, r, {})]
            # the state machines' <stack>-r-* reaches the project runners and nothing else
            mine = [LAMBDA + places().function_name(p) for p in PROJECTS]
            others = [a for a in every if not any(a.startswith(m) for m in mine)]
            if any("*" in p and any(_matches(p, a) for a in others) for p in patterns):
                wildcard_roles.add(role)
                denies = [
                    p
                    for d in statements
                    if d["Effect"] == "Deny" and "lambda:InvokeFunction" in _as_list(d["Action"])
                    for r in _as_list(d["Resource"])
                    for p in resolve(cfn, r, {})
                ]
                uncovered = [a for a in every if not any(_matches(p, a) for p in denies)]
                assert uncovered == [], (role, uncovered)
    assert wildcard_roles == {"LambdaTaskRole"}


def test_every_function_of_the_stack_is_named_under_the_stack_prefix(sam: dict[str, Any]) -> None:
    """One Deny on function:${AWS::StackName}-* covers them all only if each is named so."""
    for name, res in sam["Resources"].items():
        if res["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            fn_name = res["Properties"]["FunctionName"]
            assert isinstance(fn_name, dict), name
            assert fn_name["Fn::Sub"].startswith("${AWS::StackName}-"), name


def test_user_functions_are_invoked_with_the_lambda_task_role(cfn: dict[str, Any]) -> None:
    """Any Task state whose function comes from the input runs with LambdaTaskRole, and that
    role trusts only the two state machine roles. The one exception is the project runner,
    which the dispatcher names (``runner_function``, never a field of the task): it runs with
    the state machine's role, whose input-named invokes reach <stack>-r-* only."""
    asl = json.loads(ASL.read_text())
    from_input = {
        name: state
        for name, state in asl["States"].items()
        if state["Type"] == "Task"
        and "FunctionName.$" in state.get("Parameters", {})
        and state["Resource"].startswith("arn:aws:states:::lambda:")
    }
    runners = ("RunOnLambdaRunner", "ReadSqlResult", "StartRedshiftStatement",
               "PollRedshiftStatement")  # fmt: skip
    assert set(from_input) == {"InvokeUserFunction", *runners}
    assert from_input["InvokeUserFunction"]["Credentials"] == {"RoleArn": "${LambdaTaskRoleArn}"}
    for name in runners:  # all the project's runner
        runner = from_input[name]
        assert runner["Parameters"]["FunctionName.$"] == "$.runner_function"
        assert "Credentials" not in runner
    for role in ("TaskAttemptStateMachineRole", "ExpressTaskAttemptStateMachineRole"):
        for arn in (*(f"{LAMBDA}{STACK}-{name}" for name in ("api", "advance", "trigger")),
                    f"{LAMBDA}etl-load"):  # fmt: skip
            assert not decide(cfn, role, "lambda:InvokeFunction", arn), (role, arn)
    for machine in ("TaskAttemptStateMachine", "ExpressTaskAttemptStateMachine"):
        subs = cfn["Resources"][machine]["Properties"]["DefinitionSubstitutions"]
        assert subs["LambdaTaskRoleArn"] == {"Fn::GetAtt": ["LambdaTaskRole", "Arn"]}
    trust = cfn["Resources"]["LambdaTaskRole"]["Properties"]["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    assert statement["Principal"]["AWS"] == [
        {"Fn::GetAtt": ["TaskAttemptStateMachineRole", "Arn"]},
        {"Fn::GetAtt": ["ExpressTaskAttemptStateMachineRole", "Arn"]},
    ]
    role_arn = _physical(cfn, "LambdaTaskRole")
    for role in ("TaskAttemptStateMachineRole", "ExpressTaskAttemptStateMachineRole"):
        assert decide(cfn, role, "sts:AssumeRole", role_arn)
    assert not decide(cfn, "project:analytics", "sts:AssumeRole", role_arn)


def test_the_escalation_check_finds_the_hole_it_guards_against(cfn: dict[str, Any]) -> None:
    """Not vacuous: the template as it was (the state machine allowed function:* itself, and
    no Deny) is reported, and so is dropping the Deny."""
    before = copy.deepcopy(cfn)
    statements = before["Resources"]["TaskAttemptStateMachineRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    statements.append(
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": LAMBDA + "*"}
    )
    found = escalations(before)
    assert any(f"TaskAttemptStateMachineRole may lambda:InvokeFunction {LAMBDA}{STACK}-api" in f
               for f in found)  # fmt: skip

    no_deny = copy.deepcopy(cfn)
    doc = no_deny["Resources"]["LambdaTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    doc["Statement"] = [st for st in doc["Statement"] if st["Effect"] != "Deny"]
    found = escalations(no_deny)
    assert any(f"LambdaTaskRole may lambda:InvokeFunction {LAMBDA}{STACK}-advance:live" in f
               for f in found)  # fmt: skip


# ---------------------------------------------------------------- 2. S3: no other run's objects


def _bucket(cfn: Mapping[str, Any]) -> str:
    return _physical(cfn, "ArtifactBucket")


@pytest.mark.parametrize("role", ["LambdaTaskRole", "TaskAttemptStateMachineRole",
                                  "ExpressTaskAttemptStateMachineRole", "project:analytics"])  # fmt: skip
def test_user_work_reads_no_runs_logs_or_outputs_and_lists_nothing(
    cfn: dict[str, Any], role: str
) -> None:
    bucket = _bucket(cfn)
    for key in ("logs/billing/r/t/1.log", "logs/analytics/r/t/1.log",
                "outputs/analytics/r/t/1.json", "config.json", "x/y"):  # fmt: skip
        assert not decide(cfn, role, "s3:GetObject", f"{bucket}/{key}"), (role, key)
    assert not decide(cfn, role, "s3:ListBucket", bucket)
    for key in ("inputs/analytics/r/t/1.json", "config.json", "schedules/x"):
        assert not decide(cfn, role, "s3:PutObject", f"{bucket}/{key}"), (role, key)
    assert not decide(cfn, role, "s3:DeleteObject", f"{bucket}/logs/analytics/r/t/1.log")


def test_a_project_role_reaches_its_own_keys_and_no_other_projects(cfn: dict[str, Any]) -> None:
    """Issue 8 item 6 / issue 9 item 5: S3 access is per project. Each project's tasks (its
    runner function, its Batch jobs) write its logs and outputs and read its attempt inputs;
    not one key of another project's, whatever the run."""
    bucket = _bucket(cfn)
    for mine, other in (("analytics", "billing"), ("billing", "analytics")):
        role = f"project:{mine}"
        run = f"{mine}.etl.key-1"
        assert decide(cfn, role, "s3:PutObject", f"{bucket}/logs/{mine}/{run}/t/1.log")
        assert decide(cfn, role, "s3:PutObject", f"{bucket}/outputs/{mine}/{run}/t/1.json")
        assert decide(cfn, role, "s3:GetObject", f"{bucket}/inputs/{mine}/{run}/t/1.json")
        theirs = f"{other}.etl.key-1"
        for action, key in (
            ("s3:PutObject", f"logs/{other}/{theirs}/t/1.log"),
            ("s3:PutObject", f"outputs/{other}/{theirs}/t/1.json"),
            ("s3:GetObject", f"inputs/{other}/{theirs}/t/1.json"),
            ("s3:GetObject", f"logs/{other}/{theirs}/t/1.log"),
            # a project named like a prefix of another's gets nothing of it either
            ("s3:PutObject", f"logs/{mine}x/{run}/t/1.log"),
        ):
            assert not decide(cfn, role, action, f"{bucket}/{key}"), (role, action, key)
        secret = f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:stratoflow/"
        assert decide(cfn, role, "secretsmanager:GetSecretValue", f"{secret}{mine}/db-AbCdEf")
        assert not decide(cfn, role, "secretsmanager:GetSecretValue", f"{secret}{other}/db-AbCdEf")
        # its stop polls read task states of its own runs only (dynamodb:LeadingKeys)
        (poll,) = [
            st for st in places().policy(mine)["Statement"]
            if st["Sid"] == "ReadOwnTaskStatesForStops"
        ]  # fmt: skip
        assert poll["Condition"]["ForAllValues:StringLike"] == {
            "dynamodb:LeadingKeys": [f"RUN#{mine}.*"]
        }
        table = _physical(cfn, "StateTable")
        assert decide(cfn, role, "dynamodb:GetItem", table)
        assert not decide(cfn, role, "dynamodb:Query", table)
        assert not decide(cfn, role, "dynamodb:PutItem", table)


def test_the_boundary_holds_even_if_a_project_policy_were_wrong(cfn: dict[str, Any]) -> None:
    """The role's own policy is written by code; the boundary is the template's. A policy
    granting everything still cannot reach the stack's functions, its table's writes, or the
    bucket beyond the artifacts' prefixes."""
    everything = [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
    boundary = boundary_statements(cfn)

    def capped(action: str, resource: str) -> bool:
        return allows(cfn, everything, action, resource) and allows(cfn, boundary, action, resource)

    bucket = _bucket(cfn)
    for arns in stack_function_arns(cfn).values():
        for arn in arns:
            assert not capped("lambda:InvokeFunction", arn), arn
    assert not capped("dynamodb:PutItem", _physical(cfn, "StateTable"))
    assert not capped("s3:GetObject", f"{bucket}/config.json")
    assert not capped("s3:DeleteObject", f"{bucket}/logs/analytics/r/t/1.log")
    assert not capped("iam:CreateRole", f"arn:{PARTITION}:iam::{ACCOUNT}:role/x")
    assert not capped("sts:AssumeRole", _physical(cfn, "LambdaTaskRole"))
    assert capped("s3:PutObject", f"{bucket}/logs/analytics/r/t/1.log")


def test_project_roles_are_created_only_within_the_boundary(cfn: dict[str, Any]) -> None:
    """The scheduler functions create project roles; IAM lets them only with the boundary
    attached and only under the stack's path, and never lets them lift it again."""
    doc = cfn["Resources"]["DispatchPolicy"]["Properties"]["PolicyDocument"]
    path = f"arn:{PARTITION}:iam::{ACCOUNT}:role/stratoflow/{STACK}/*"
    creating = [
        st for st in _statements(doc)
        if st["Effect"] == "Allow"
        and {"iam:CreateRole", "iam:PutRolePolicy"} & set(_as_list(st["Action"]))
    ]  # fmt: skip
    assert creating
    for st in creating:
        assert resolve(cfn, st["Resource"], {}) == [path]
        assert st["Condition"] == {
            "StringEquals": {"iam:PermissionsBoundary": {"Ref": "ProjectTaskBoundary"}}
        }
    role = "AdvanceFunctionRole"
    for action in ("iam:DeleteRolePermissionsBoundary", "iam:PutRolePermissionsBoundary",
                   "iam:AttachRolePolicy"):  # fmt: skip
        assert not decide(cfn, role, action, places().role_arn("analytics")), action
    # the trust of a project role may be brought up to date (an OIDC issuer given later):
    # only under the stack's path, where every role has the boundary
    assert decide(cfn, role, "iam:UpdateAssumeRolePolicy", places().role_arn("analytics"))
    for other in ("admin", "stratoflow/other-stack/other-stack-p-0123456789"):
        arn = f"arn:{PARTITION}:iam::{ACCOUNT}:role/{other}"
        assert not decide(cfn, role, "iam:UpdateAssumeRolePolicy", arn), other
    # and its pods' service account associated with it on the stack's cluster, no other
    cluster = f"arn:{PARTITION}:eks:{REGION}:{ACCOUNT}:cluster/"
    on_prod = {"EksClusterName": ["prod"]}
    assert decide(cfn, role, "eks:CreatePodIdentityAssociation", cluster + "prod", on_prod)
    assert not decide(cfn, role, "eks:CreatePodIdentityAssociation", cluster + "other", on_prod)
    assert places().role_arn("analytics").startswith(path[:-1])
    assert not decide(cfn, role, "iam:CreateRole", f"arn:{PARTITION}:iam::{ACCOUNT}:role/admin")
    assert decide(cfn, role, "iam:PassRole", places().role_arn("analytics"))


def test_only_the_functions_that_dispatch_may_start_attempts_or_make_identities(
    cfn: dict[str, Any],
) -> None:
    """The api and trigger functions record runs and kick advance (docs/aws.md, "Where tasks
    start"): they may stop attempts, but start none and make no project role or runner."""
    machine = f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:{STACK}-task-attempt"
    runner = LAMBDA + places().function_name("analytics")
    role = places().role_arn("analytics")
    asks = [
        ("states:StartExecution", machine),
        ("iam:CreateRole", role),
        ("iam:PassRole", role),
        ("lambda:CreateFunction", runner),
        # a runner made on x86_64 moves to the layer's architecture (projects.py)
        ("lambda:UpdateFunctionCode", runner),
        ("batch:RegisterJobDefinition", f"{BATCH}job-definition/stratoflow-{STACK}-0a1b"),
        ("iam:UpdateAssumeRolePolicy", role),
        # the stack's cluster (EksClusterName's default resolves to an empty name)
        ("eks:CreatePodIdentityAssociation", f"arn:{PARTITION}:eks:{REGION}:{ACCOUNT}:cluster/"),
    ]
    for action, resource in asks:
        for who in ("ApiFunctionRole", "TriggerFunctionRole"):
            assert not decide(cfn, who, action, resource), (who, action)
        for who in ("AdvanceFunctionRole", "ReconcilerFunctionRole"):
            assert decide(cfn, who, action, resource), (who, action)
    execution = f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:execution:{STACK}-task-attempt:x"
    assert decide(cfn, "ApiFunctionRole", "states:StopExecution", execution)
    # a runner's code, never the stack's own functions'
    for fn in ("advance", "api", "trigger", "reconciler"):
        assert not decide(
            cfn, "AdvanceFunctionRole", "lambda:UpdateFunctionCode", LAMBDA + f"{STACK}-{fn}"
        )


def test_a_connection_test_goes_from_the_api_through_advance_to_the_projects_runner(
    cfn: dict[str, Any],
) -> None:
    """The API function asks the advance function (it may invoke that one function), which
    makes the project's identity ready and invokes its runner; the API function may invoke
    no runner itself, and no role of user work may invoke advance."""
    advance = LAMBDA + f"{STACK}-advance"
    runner = LAMBDA + places().function_name("analytics")
    assert decide(cfn, "ApiFunctionRole", "lambda:InvokeFunction", advance)
    assert not decide(cfn, "ApiFunctionRole", "lambda:InvokeFunction", runner)
    assert not decide(
        cfn, "ApiFunctionRole", "lambda:InvokeFunction", LAMBDA + f"{STACK}-reconciler"
    )
    assert decide(cfn, "AdvanceFunctionRole", "lambda:InvokeFunction", runner)
    assert not decide(cfn, "AdvanceFunctionRole", "lambda:InvokeFunction", LAMBDA + f"{STACK}-api")
    assert not decide(cfn, "TriggerFunctionRole", "lambda:InvokeFunction", advance)
    for who in ("LambdaTaskRole", "project:analytics"):
        assert not decide(cfn, who, "lambda:InvokeFunction", advance), who


def test_the_dispatcher_still_reads_and_writes_every_projects_artifacts(
    cfn: dict[str, Any],
) -> None:
    bucket = _bucket(cfn)
    # the dispatcher (the scheduler functions) writes inputs and reads everything back
    assert decide(cfn, "AdvanceFunctionRole", "s3:PutObject", f"{bucket}/inputs/a/r/t/1.json")
    assert decide(cfn, "ApiFunctionRole", "s3:GetObject", f"{bucket}/logs/a/r/t/1.log")


def test_the_eks_launcher_has_no_bucket_access(cfn: dict[str, Any]) -> None:
    bucket = _bucket(cfn)
    for action in ("s3:GetObject", "s3:PutObject"):
        assert not decide(cfn, "EksLauncherFunctionRole", action, f"{bucket}/logs/r/t/1.log")


# ---------------------------------------------------------------- 3. SubmitJob


def test_submit_job_is_limited_to_the_stacks_queue_and_stratoflow_job_definitions(
    cfn: dict[str, Any],
) -> None:
    role = "TaskAttemptStateMachineRole"
    ours = _physical(cfn, "BatchJobQueue")
    existing = f"{BATCH}job-queue/shared-fargate"
    runner = _physical(cfn, "RunnerJobDefinition")
    assert runner.startswith(f"{BATCH}job-definition/stratoflow-{STACK}-")
    with_existing = {"ExistingBatchJobQueueArn": [existing]}
    assert decide(cfn, role, "batch:SubmitJob", ours)
    assert decide(cfn, role, "batch:SubmitJob", existing, with_existing)
    assert decide(cfn, role, "batch:SubmitJob", runner)
    assert decide(cfn, role, "batch:SubmitJob", f"{BATCH}job-definition/stratoflow-{STACK}-0a1b:3")
    for other in (
        f"{BATCH}job-queue/someone-elses-queue",
        f"{BATCH}job-definition/prod-db-admin:1",
        f"{BATCH}job-definition/admin-stratoflow-x:1",
        f"{BATCH}job-definition/stratoflow-other-stack-0a1b:3",
    ):
        assert not decide(cfn, role, "batch:SubmitJob", other, with_existing), other
    for user_role in USER_WORK_ROLES:
        if user_role != role:
            assert not decide(cfn, user_role, "batch:SubmitJob", ours), user_role


# ---------------------------------------------------------------- 3b. kubernetes pods


def test_a_projects_pods_answer_their_task_tokens_and_start_nothing(cfn: dict[str, Any]) -> None:
    """Issue 9 item 5: a project's kubernetes pods hold its role; their reporter answers the
    stack's task-attempt tokens (policy and boundary both allow it), and nothing more of Step
    Functions, nor another stack's machine."""
    states = f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:"
    ours = f"{states}stateMachine:{STACK}-task-attempt"
    for project in PROJECTS:
        role = f"project:{project}"
        for action in ("states:SendTaskSuccess", "states:SendTaskFailure",
                       "states:SendTaskHeartbeat"):  # fmt: skip
            assert decide(cfn, role, action, ours), (role, action)
            assert not decide(cfn, role, action, f"{states}stateMachine:other-task-attempt")
        for action in ("states:StartExecution", "states:StopExecution"):
            assert not decide(cfn, role, action, ours), (role, action)
    assert allows(cfn, boundary_statements(cfn), "states:SendTaskSuccess", ours)


ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/ABC123"


def assumable_by_service_account(
    trust: Mapping[str, Any],
    namespace: str,
    account: str,
    *,
    aud: str = "sts.amazonaws.com",
    issuer: str = ISSUER,
) -> bool:
    """Whether a pod's web identity token (IRSA: issuer, ``sub`` =
    ``system:serviceaccount:<namespace>:<account>``, ``aud``) may assume a role of this trust:
    an Allow of sts:AssumeRoleWithWebIdentity for the issuer's provider whose StringLike and
    StringEquals conditions all hold (the only operators the trust uses: anything else fails
    the check)."""
    provider = f"arn:{PARTITION}:iam::{ACCOUNT}:oidc-provider/{issuer}"
    claims = {f"{issuer}:sub": f"system:serviceaccount:{namespace}:{account}",
              f"{issuer}:aud": aud}  # fmt: skip
    for st in trust["Statement"]:
        if st["Effect"] != "Allow" or "sts:AssumeRoleWithWebIdentity" not in _as_list(st["Action"]):
            continue
        if st["Principal"].get("Federated") != provider:
            continue
        conditions = st.get("Condition", {})
        assert set(conditions) <= {"StringLike", "StringEquals"}, conditions
        like = all(_matches(v, claims.get(k, "")) for k, v in
                   conditions.get("StringLike", {}).items())  # fmt: skip
        equal = all(claims.get(k) == v for k, v in conditions.get("StringEquals", {}).items())
        if like and equal and conditions:
            return True
    return False


def test_one_projects_role_is_not_assumable_through_another_projects_service_account() -> None:
    """IRSA: a project's role trusts the cluster's issuer for the service account
    ``stratoflow-<its digest>`` in the stack's namespace only (the one the launcher may make
    accounts in); the same name in another namespace (anyone who may make accounts there),
    another project's account, a name merely containing it, another audience or another
    issuer get nothing. Pod Identity needs no such check: the association (one per service account)
    names the role, and the dispatcher associates each account with its project's."""
    irsa = replace(places(), oidc_issuer=ISSUER, eks_namespace="stratoflow")
    for mine, other in (("analytics", "billing"), ("billing", "analytics")):
        trust = irsa.trust(mine)
        own = service_account_name(mine)
        assert assumable_by_service_account(trust, "stratoflow", own)
        assert not assumable_by_service_account(trust, "etl", own)
        assert not assumable_by_service_account(trust, "stratoflow", service_account_name(other))
        for name in (f"{own}x", f"x-{own}", "stratoflow-reporter", "default"):
            assert not assumable_by_service_account(trust, "stratoflow", name), name
        assert not assumable_by_service_account(trust, "stratoflow", own, aud="other")
        assert not assumable_by_service_account(
            trust, "stratoflow", own, issuer="oidc.eks.us-east-1.amazonaws.com/id/OTHER"
        )
    # without an issuer there is no web identity trust at all
    assert not assumable_by_service_account(places().trust("analytics"), "stratoflow",
                                            service_account_name("analytics"))  # fmt: skip


def test_the_service_account_check_finds_a_trust_open_to_every_project() -> None:
    """Not vacuous: a trust of every stratoflow service account lets billing's pods assume
    analytics' role, and the check says so."""
    trust = replace(places(), oidc_issuer=ISSUER, eks_namespace="stratoflow").trust("analytics")
    loose = copy.deepcopy(trust)
    (irsa,) = [st for st in loose["Statement"] if st["Sid"] == "KubernetesPodsByIrsa"]
    del irsa["Condition"]["StringEquals"][f"{ISSUER}:sub"]
    irsa["Condition"]["StringLike"] = {f"{ISSUER}:sub": "system:serviceaccount:*:stratoflow-*"}
    assert assumable_by_service_account(loose, "stratoflow", service_account_name("billing"))


# ---------------------------------------------------------------- 5. Rules


def evaluate_rule_function(value: Any, params: Mapping[str, Any]) -> Any:
    """CloudFormation's rule functions (the subset the template uses)."""
    if isinstance(value, (str, bool)):
        return value
    if isinstance(value, list):
        return [evaluate_rule_function(v, params) for v in value]
    ((fn, arg),) = value.items()
    if fn == "Ref":
        return params[arg]
    args = [evaluate_rule_function(a, params) for a in arg] if isinstance(arg, list) else arg
    if fn == "Fn::And":
        return all(args)
    if fn == "Fn::Or":
        return any(args)
    if fn == "Fn::Not":
        (inner,) = args
        return not inner
    if fn == "Fn::Equals":
        left, right = args
        return left == right
    if fn == "Fn::EachMemberEquals":
        members, expected = args
        return all(m == expected for m in members)
    if fn == "Fn::Contains":
        members, expected = args
        return expected in members
    raise AssertionError(f"rule function {fn} is not evaluated here")


def rule_failures(cfn: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """The AssertDescriptions of the Rules that reject ``given`` (others at their defaults)."""
    params: dict[str, Any] = {}
    for name, spec in cfn["Parameters"].items():
        default = spec.get("Default", "")
        params[name] = str(default).split(",") if spec["Type"] == "CommaDelimitedList" else default
    params.update(given)
    failures = []
    for rule in cfn.get("Rules", {}).values():
        if "RuleCondition" in rule and not evaluate_rule_function(rule["RuleCondition"], params):
            continue
        failures.extend(
            " ".join(assertion["AssertDescription"].split())
            for assertion in rule["Assertions"]
            if not evaluate_rule_function(assertion["Assert"], params)
        )
    return failures


def test_rules_reject_subnets_without_security_groups(cfn: dict[str, Any]) -> None:
    assert "SubnetsNeedSecurityGroups" in cfn["Rules"]
    assert rule_failures(cfn, {}) == []  # the defaults deploy
    (failure,) = rule_failures(cfn, {"SubnetIds": ["subnet-0abc", "subnet-0def"]})
    assert failure.startswith("SubnetIds needs SecurityGroupIds")
    assert rule_failures(cfn, {"SubnetIds": ["subnet-0abc"], "SecurityGroupIds": ["sg-1"]}) == []
    # with an existing queue the subnets are not used: nothing to reject
    queue = f"{BATCH}job-queue/shared"
    assert (
        rule_failures(cfn, {"SubnetIds": ["subnet-0abc"], "ExistingBatchJobQueueArn": queue}) == []
    )


def longest_name_suffix(sam: Mapping[str, Any]) -> tuple[int, str]:
    """The longest ``${AWS::StackName}<suffix>`` among names limited to 64 characters
    (Lambda function names, IAM role names)."""
    suffixes = []
    for res in sam["Resources"].values():
        field = {"AWS::Serverless::Function": "FunctionName", "AWS::IAM::Role": "RoleName"}.get(
            res["Type"]
        )
        if field is not None and field in res["Properties"]:
            name = res["Properties"][field]["Fn::Sub"]
            assert name.startswith("${AWS::StackName}"), name
            suffixes.append(name.removeprefix("${AWS::StackName}"))
    return max((len(s), s) for s in suffixes)


def test_named_roles_fit_the_stack_name_limit(sam: dict[str, Any]) -> None:
    """The task-attempt state machine's role is named (project roles trust it by name): its
    suffix is no longer than the longest function suffix, so the documented stack name limit
    holds for it too; and project role names (``<stack>-p-<10 hex>``) fit as well."""
    role = sam["Resources"]["TaskAttemptStateMachineRole"]["Properties"]["RoleName"]["Fn::Sub"]
    length, _ = longest_name_suffix(sam)
    assert len(role.removeprefix("${AWS::StackName}")) <= length
    longest_stack = "s" * (64 - length)
    assert len(replace(places(), stack=longest_stack).role_name("analytics")) <= 64


def test_the_longest_stack_name_is_documented_where_it_is_chosen(sam: dict[str, Any]) -> None:
    """CloudFormation Rules have no string-length function (Fn::And, Fn::Contains,
    Fn::EachMemberEquals, Fn::EachMemberIn, Fn::Equals, Fn::Not, Fn::Or, Fn::RefAll,
    Fn::ValueOf, Fn::ValueOfAll only), so no Rule can reject a long stack name. The limit
    the function names impose is stated in the template's Description (shown by the console
    and `sam deploy --guided`) and the README, and kept equal to the template here."""
    length, suffix = longest_name_suffix(sam)
    limit = 64 - length
    assert length == len("-eks-launcher") == len("-task-attempt"), suffix  # the role ties
    assert f"at most {limit} characters" in " ".join(sam["Description"].split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"at most {limit} characters" in readme


# ---------------------------------------------------------------- 6. DLQ alarms


def _dead_letter_queues(cfn: Mapping[str, Any]) -> set[str]:
    dlqs = set()
    for res in cfn["Resources"].values():
        props = res.get("Properties", {})
        redrive = props.get("RedrivePolicy", {})
        if "deadLetterTargetArn" in redrive:
            dlqs.add(redrive["deadLetterTargetArn"]["Fn::GetAtt"][0])
        destination = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if destination is not None:
            dlqs.add(destination["Fn::GetAtt"][0])
        for target in props.get("Targets", []):  # an EventBridge rule's undeliverable events
            if "DeadLetterConfig" in target:
                dlqs.add(target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0])
    return dlqs


def test_every_dead_letter_queue_has_an_alarm_that_notifies(cfn: dict[str, Any]) -> None:
    dlqs = _dead_letter_queues(cfn)
    assert dlqs == {"ResultsDLQ", "ProjectorDLQ", "LifecycleDLQ", "AlertDLQ"}
    alarms = resources_of(cfn, "AWS::CloudWatch::Alarm")
    watched = {}
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        (dimension,) = props["Dimensions"]
        if props["Namespace"] == "AWS/SQS" and dimension["Name"] == "QueueName":
            watched[dimension["Value"]["Fn::GetAtt"][0]] = (name, alarm)
    assert set(watched) >= dlqs
    for queue in dlqs:
        name, alarm = watched[queue]
        props = alarm["Properties"]
        assert props["MetricName"] == "ApproximateNumberOfMessagesVisible", name
        assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)
        assert props["TreatMissingData"] == "notBreaching"
        # same Condition as the queue: no alarm on a queue that is not there
        assert alarm.get("Condition") == cfn["Resources"][queue].get("Condition"), name
        # notifies the stack's topic, or the operator's AlarmActions
        actions = list(_branches(props["AlarmActions"]))
        assert [{"Ref": "AlarmTopic"}] in actions
        assert {"Ref": "AlarmActions"} in actions
    topic = cfn["Resources"]["AlarmTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    assert topic["Condition"] == "CreateAlarmTopic"


# ---------------------------------------------------------------- 4. the api function's id check


def test_the_api_function_knows_its_own_api(cfn: dict[str, Any]) -> None:
    env = cfn["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["STRATOFLOW_API_ID"] == {"Ref": "RestApi"}
    stage = cfn["Resources"]["ApiStage"]["Properties"]["StageName"]
    assert env["STRATOFLOW_API_STAGE"] == stage


def test_readme_tells_how_to_deploy_without_a_default_vpc() -> None:
    text = pathlib.Path(ROOT / "README.md").read_text()
    section = text.split("## Deploy on AWS", 1)[1].split("\n## ", 1)[0]
    assert "default VPC" in section
    assert "DbSubnetGroupName" in section
    assert "SubnetIds" in section


# ---------------------------------------------------------------- sql tasks (issue 13 item 3)
ATHENA = f"arn:{PARTITION}:athena:{REGION}:{ACCOUNT}:workgroup/"
REDSHIFT = f"arn:{PARTITION}:redshift:{REGION}:{ACCOUNT}:cluster:"
SERVERLESS = f"arn:{PARTITION}:redshift-serverless:{REGION}:{ACCOUNT}:workgroup/"
AURORA = f"arn:{PARTITION}:rds:{REGION}:{ACCOUNT}:cluster:"
SQL_PARAMS = {
    "AthenaWorkgroupArns": [ATHENA + "etl"],
    "RedshiftResourceArns": [REDSHIFT + "warehouse", SERVERLESS + "0f1e2d3c"],
    "AuroraClusterArns": [AURORA + "orders"],
}
# what each connection type calls to run a query, on what: (action, a resource listed above,
# the same kind of resource the stack does not list)
SQL_CALLS = (
    *((a, ATHENA + "etl", ATHENA + "adhoc") for a in (
        "athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults",
        "athena:StopQueryExecution")),
    ("redshift-data:ExecuteStatement", REDSHIFT + "warehouse", REDSHIFT + "finance"),
    ("redshift-data:BatchExecuteStatement", SERVERLESS + "0f1e2d3c", SERVERLESS + "9a8b7c6d"),
    ("rds-data:ExecuteStatement", AURORA + "orders", AURORA + "payroll"),
    ("rds-data:BeginTransaction", AURORA + "orders", AURORA + "payroll"),
)  # fmt: skip


def test_sql_tasks_reach_nothing_unless_the_stack_lists_it(cfn: dict[str, Any]) -> None:
    """Deployed with the defaults (no AthenaWorkgroupArns, RedshiftResourceArns or
    AuroraClusterArns), no project role may query any workgroup or cluster: not by its own
    policy, not within the boundary."""
    for project in PROJECTS:
        for action, listed, unlisted in SQL_CALLS:
            for arn in (listed, unlisted):
                assert not decide(cfn, f"project:{project}", action, arn), (action, arn)
    everything = [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
    boundary = boundary_statements(cfn)
    for action, listed, _ in SQL_CALLS:
        assert allows(cfn, everything, action, listed)
        assert not allows(cfn, boundary, action, listed), action


def test_a_project_role_queries_only_the_listed_workgroups_and_clusters(
    cfn: dict[str, Any],
) -> None:
    """With the parameters set, each project's role runs queries on the listed workgroups,
    clusters and serverless workgroups and on no other; Athena writes its results under the
    project's own prefix of the bucket, never another project's; and its role has no other
    project's statements (the owner condition, checked below)."""
    bucket = _bucket(cfn)
    for mine, other in (("analytics", "billing"), ("billing", "analytics")):
        role = f"project:{mine}"
        for action, listed, unlisted in SQL_CALLS:
            assert decide(cfn, role, action, listed, SQL_PARAMS), (role, action, listed)
            assert not decide(cfn, role, action, unlisted, SQL_PARAMS), (role, action, unlisted)
        for action in ("s3:PutObject", "s3:GetObject"):
            assert decide(cfn, role, action, f"{bucket}/athena/{mine}/q-1.csv", SQL_PARAMS)
            for theirs in (f"athena/{other}/q-1.csv", f"athena/{mine}x/q-1.csv", "q-1.csv"):
                assert not decide(cfn, role, action, f"{bucket}/{theirs}", SQL_PARAMS), theirs
        # a listing of the bucket must name the project's results prefix (the evaluator above
        # ignores conditions: this checks the condition itself, in the policy and the boundary)
        (own,) = [st for st in places(SQL_PARAMS).policy(mine)["Statement"]
                  if "s3:ListBucket" in _as_list(st["Action"])]  # fmt: skip
        assert own["Condition"] == {
            "StringLike": {"s3:prefix": [f"athena/{mine}/", f"athena/{mine}/*"]}
        }
        (capped,) = [st for st in boundary_statements(cfn)
                     if "s3:ListBucket" in _as_list(st["Action"])]  # fmt: skip
        assert capped["Condition"] == {"StringLike": {"s3:prefix": ["athena/", "athena/*"]}}
        # results go where the dispatcher tells the runner they go
        assert (
            places(SQL_PARAMS).athena_output(mine) == f"s3://{STACK}-artifactbucket/athena/{mine}/"
        )
        # nothing of Athena, Redshift or Aurora beyond running queries
        for action, resource in (
            ("athena:DeleteWorkGroup", ATHENA + "etl"),
            ("athena:UpdateWorkGroup", ATHENA + "etl"),
            ("redshift:DeleteCluster", REDSHIFT + "warehouse"),
            ("rds:DeleteDBCluster", AURORA + "orders"),
            ("s3:DeleteObject", f"{bucket}/athena/{mine}/q-1.csv"),
        ):
            assert not decide(cfn, role, action, resource, SQL_PARAMS), action


def _owner_conditioned(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        st for st in statements
        if st["Effect"] == "Allow"
        and set(_as_list(st["Action"])) & {"redshift-data:DescribeStatement",
                                            "redshift-data:GetStatementResult",
                                            "redshift-data:CancelStatement"}
    ]  # fmt: skip


def test_redshift_statements_are_read_and_cancelled_by_their_owner_only(
    cfn: dict[str, Any],
) -> None:
    """A Redshift Data statement has no ARN: DescribeStatement, GetStatementResult and
    CancelStatement take "*", narrowed by redshift-data:statement-owner-iam-userid to the
    caller's own (as AWS documents). Every project role is its own IAM user id, so one project
    never reads nor cancels another's statement. The evaluator above ignores conditions; this
    checks the condition itself, in the role's policy and in the boundary."""
    condition = {"StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}}
    own = _owner_conditioned(places(SQL_PARAMS).policy("analytics")["Statement"])
    capped = _owner_conditioned(boundary_statements(cfn))
    assert own
    assert capped
    for st in (*own, *capped):
        assert st["Condition"] == condition, st
    assert set(_as_list(own[0]["Action"])) == {
        "redshift-data:DescribeStatement",
        "redshift-data:GetStatementResult",
        "redshift-data:CancelStatement",
    }
    # no other statement grants them unconditionally
    for project in PROJECTS:
        for st in places(SQL_PARAMS).policy(project)["Statement"]:
            if "redshift-data:GetStatementResult" in _as_list(st["Action"]):
                assert st.get("Condition") == condition
    # and without RedshiftResourceArns there is none at all
    assert not _owner_conditioned(places().policy("analytics")["Statement"])


def test_the_dispatcher_passes_the_sql_parameters_to_project_roles(cfn: dict[str, Any]) -> None:
    """The template hands each parameter to the dispatching functions, joined by commas, and
    the settings read exactly those variables: what test_a_project_role_queries... evaluates
    is what a deployment gets."""
    from stratoflow.adapters.aws.settings import AwsSettings

    env = cfn["Resources"]["AdvanceFunction"]["Properties"]["Environment"]["Variables"]
    for parameter, field in (
        ("AthenaWorkgroupArns", "athena_workgroups"),
        ("RedshiftResourceArns", "redshift_resources"),
        ("AuroraClusterArns", "aurora_clusters"),
    ):
        variable = AwsSettings.ENV[field]
        assert env[variable] == {"Fn::Join": [",", {"Ref": parameter}]}, variable
        assert cfn["Parameters"][parameter]["Default"] == ""


def test_a_named_role_is_deployed_with_the_named_iam_capability(sam: dict[str, Any]) -> None:
    """CloudFormation refuses a stack with a named IAM resource unless it is given
    CAPABILITY_NAMED_IAM: samconfig.toml (what `sam deploy` reads) gives it."""
    import tomllib

    named = [logical for logical, res in sam["Resources"].items()
             if res["Type"].startswith("AWS::IAM::") and "RoleName" in res.get("Properties", {})]  # fmt: skip
    assert named == ["TaskAttemptStateMachineRole"]
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["default"]["deploy"]["parameters"]["capabilities"] == "CAPABILITY_NAMED_IAM"


def test_athena_query_states_run_as_the_role_the_dispatcher_wrote(cfn: dict[str, Any]) -> None:
    """StartAthenaQuery[WithParameters] take their role from the execution input only
    (``$$.Execution.Input.athena.role_arn``, written by the dispatcher from the run's project:
    who may start an execution is checked above), never from the task's own fields."""
    states = json.loads(ASL.read_text())["States"]
    athena = {name: s for name, s in states.items() if ":athena:" in str(s.get("Resource"))}
    assert set(athena) == {"StartAthenaQuery", "StartAthenaQueryWithParameters"}
    for state in athena.values():
        assert state["Credentials"] == {"RoleArn.$": "$$.Execution.Input.athena.role_arn"}
    # no other state of the machine runs with credentials from the input
    from_input = {name for name, s in states.items()
                  if "RoleArn.$" in (s.get("Credentials") or {})}  # fmt: skip
    assert from_input == set(athena)
    assert "STRATOFLOW_SQL_ATHENA_STATE_MACHINE" not in json.dumps(cfn)  # on: the default


OTHER_STACK_PROJECT_ROLE = (
    f"arn:{PARTITION}:iam::{ACCOUNT}:role/stratoflow/other/other-p-0123456789"
)


def _assumable_roles(cfn: Mapping[str, Any]) -> dict[str, str]:
    """Roles an sts:AssumeRole grant could name: the stack's own (each by its ARN), each
    example project's role, another stack's project role, a role elsewhere under this stack's
    path that is not a project role's name, and unrelated roles of the account."""
    roles = {logical: _physical(cfn, logical)
             for logical in resources_of(dict(cfn), "AWS::IAM::Role")}  # fmt: skip
    for project in PROJECTS:
        roles[f"project:{project}"] = places().role_arn(project)
    roles["other stack's project role"] = OTHER_STACK_PROJECT_ROLE
    roles["this stack's path, not a project role"] = (
        f"arn:{PARTITION}:iam::{ACCOUNT}:role/stratoflow/{STACK}/admin"
    )
    roles["an admin role"] = f"arn:{PARTITION}:iam::{ACCOUNT}:role/Admin"
    roles["a role named like the stack"] = f"arn:{PARTITION}:iam::{ACCOUNT}:role/{STACK}-p-x"
    return roles


def test_the_state_machine_role_may_assume_this_stacks_project_roles_and_nothing_else(
    cfn: dict[str, Any],
) -> None:
    """The exact grant that lets StartAthenaQuery run as a project's role: the Standard
    state machine's role may assume the LambdaTaskRole (InvokeUserFunction) and the project
    roles of this stack (path ``/stratoflow/<stack>/``, name ``<stack>-p-*``), nothing else;
    the Express machine's role (no Athena: ``.sync``) the LambdaTaskRole only; and each
    project role trusts exactly that role by the name the template gives it."""
    roles = _assumable_roles(cfn)
    standard = {name for name, arn in roles.items()
                if decide(cfn, "TaskAttemptStateMachineRole", "sts:AssumeRole", arn)}  # fmt: skip
    assert standard == {"LambdaTaskRole", *(f"project:{p}" for p in PROJECTS)}
    express = {name for name, arn in roles.items()
               if decide(cfn, "ExpressTaskAttemptStateMachineRole", "sts:AssumeRole", arn)}  # fmt: skip
    assert express == {"LambdaTaskRole"}
    # the trust side names the template's role, and only it, for AWS principals
    named = _physical(cfn, "TaskAttemptStateMachineRole")
    assert named == places().state_machine_role_arn()
    assert cfn["Resources"]["TaskAttemptStateMachineRole"]["Properties"].get("Path") is None
    for project in PROJECTS:
        principals = [st["Principal"]["AWS"] for st in places().trust(project)["Statement"]
                      if "AWS" in st["Principal"]]  # fmt: skip
        assert principals == [named], project
    # no other role of user work, and no project role, may assume a project role
    for role in ("ExpressTaskAttemptStateMachineRole", "LambdaTaskRole",
                 *(f"project:{p}" for p in PROJECTS)):  # fmt: skip
        for project in PROJECTS:
            assert not decide(cfn, role, "sts:AssumeRole", places().role_arn(project)), role
    # the dispatchers may edit project roles (their path), never the named role
    for action in ("iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy", "iam:CreateRole"):
        for fn in ("AdvanceFunction", "ReconcilerFunction"):
            role = cfn["Resources"][fn]["Properties"]["Role"]["Fn::GetAtt"][0]
            assert not decide(cfn, role, action, named), (fn, action)


def test_the_grant_check_finds_a_grant_too_wide(cfn: dict[str, Any]) -> None:
    """Not vacuous: a grant of every role under stratoflow/ is caught."""
    wide = copy.deepcopy(cfn)
    statements = wide["Resources"]["TaskAttemptStateMachineRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    (grant,) = [st for st in statements if st.get("Sid") == "RunSqlAsTheProjectRole"]
    grant["Resource"] = {
        "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/stratoflow/*"
    }
    assert decide(wide, "TaskAttemptStateMachineRole", "sts:AssumeRole", OTHER_STACK_PROJECT_ROLE)
    with pytest.raises(AssertionError):
        test_the_state_machine_role_may_assume_this_stacks_project_roles_and_nothing_else(wide)
