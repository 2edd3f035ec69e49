"""template.yaml, transformed by the SAM translator exactly as `sam deploy` does, checked
against the contract (AWS-CONTRACT.md) and the least-privilege rules of issue 3.

There is no AWS account here: the nearest real boundary is the CloudFormation template SAM
produces, so these tests assert on that (CloudFormation itself is not run). `make check-aws`
adds sam validate --lint, cfn-lint, statelint and sam build on the same files.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

from stratoflow.adapters.aws.dynamodb import TABLE_SCHEMA
from stratoflow.adapters.aws.projects import RUNNER_ARCHITECTURE

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ASL = ROOT / "statemachines" / "task_attempt.asl.json"


CONTRACT_ENV = {
    "STRATOFLOW_TABLE",
    "STRATOFLOW_STATE_MACHINE_ARN",
    "STRATOFLOW_EXPRESS_STATE_MACHINE_ARN",
    "STRATOFLOW_RESULTS_QUEUE_URL",
    "STRATOFLOW_RESULTS_DLQ_URL",
    "STRATOFLOW_EVENT_BUS",
    "STRATOFLOW_BUCKET",
    "STRATOFLOW_SCHEDULE_GROUP",
    "STRATOFLOW_SCHEDULER_ROLE_ARN",
    "STRATOFLOW_TRIGGER_FUNCTION_ARN",
    "STRATOFLOW_BATCH_JOB_QUEUE",
    "STRATOFLOW_RUNNER_JOB_DEFINITION",
    "STRATOFLOW_EKS_CLUSTER",
    "STRATOFLOW_EKS_NAMESPACE",
    "STRATOFLOW_DB_CLUSTER_ARN",
    "STRATOFLOW_DB_SECRET_ARN",
    "STRATOFLOW_DB_NAME",
}

CONTRACT_FUNCTIONS = {
    "ApiFunction": "functions/api/",
    "TriggerFunction": "functions/trigger/",
    "AdvanceFunction": "functions/advance/",
    "ReconcilerFunction": "functions/reconciler/",
    "EksLauncherFunction": "functions/eks_launcher/",
}

CONTRACT_SUBSTITUTIONS = {
    "EksLauncherFunctionArn",
    "ResultsQueueUrl",
    "BatchJobQueueArn",
}

# every project's runner function (adapters/aws/projects.py names them <stack>-r-<digest>)
PROJECT_RUNNERS = json.dumps(
    {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
                "${AWS::StackName}-r-*"}
)  # fmt: skip

CONTRACT_RESOURCES = {
    "StateTable": "AWS::DynamoDB::Table",
    "TaskAttemptStateMachine": "AWS::StepFunctions::StateMachine",
    "ResultsQueue": "AWS::SQS::Queue",
    "ResultsDLQ": "AWS::SQS::Queue",
    "EventBus": "AWS::Events::EventBus",
    "ArtifactBucket": "AWS::S3::Bucket",
    "ScheduleGroup": "AWS::Scheduler::ScheduleGroup",
    "SchedulerRole": "AWS::IAM::Role",
    "BatchJobQueue": "AWS::Batch::JobQueue",
    "RunnerJobDefinition": "AWS::Batch::JobDefinition",
    "ReadModelCluster": "AWS::RDS::DBCluster",
}

# Actions whose only valid resource is "*" (no resource-level permissions in the Service
# Authorization Reference). Nothing else may have a "*" resource.
NO_RESOURCE_LEVEL_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "batch:DescribeJobs",
    "batch:DescribeJobDefinitions",
    "ecr:GetAuthorizationToken",
    "secretsmanager:ListSecrets",  # the API lists a project's secret names (/secrets)
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
# A Redshift Data statement has no ARN: these take "*" and are narrowed to the caller's own
# statements by the redshift-data:statement-owner-iam-userid condition, which every statement
# granting them must carry (OWNER_CONDITIONED_ACTIONS is checked below).
OWNER_CONDITIONED_ACTIONS = {
    "redshift-data:DescribeStatement",
    "redshift-data:GetStatementResult",
    "redshift-data:CancelStatement",
}
OWNER_CONDITION = {"StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}}


def _local_uris_to_s3(template: dict[str, Any]) -> dict[str, Any]:
    """sam package replaces local paths by S3 URIs before the transform; do the same."""
    template = copy.deepcopy(template)
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://stratoflow-artifacts/{name}/{key}"
    return template


def translate(template: dict[str, Any]) -> dict[str, Any]:
    translator = Translator(
        managed_policy_map={},
        sam_parser=Parser(),
        boto_session=boto3.session.Session(region_name="us-east-1"),
    )
    return translator.translate(
        _local_uris_to_s3(template),
        parameter_values={},
        get_managed_policy_map=lambda: {},
    )


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    """template.yaml as written (CloudFormation short tags become intrinsic dicts)."""
    return yaml_parse(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template SAM produces from template.yaml."""
    return translate(sam)


def resources_of(cfn: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == type_}


# ---------------------------------------------------------------- IAM statements


def _branches(value: Any) -> Iterator[Any]:
    """Every value a (possibly Fn::If-wrapped) template value can take."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _cond, yes, no = value["Fn::If"]
        yield from _branches(yes)
        yield from _branches(no)
    elif isinstance(value, dict) and value == {"Ref": "AWS::NoValue"}:
        return
    else:
        yield value


def _as_list(value: Any) -> list[Any]:
    out: list[Any] = []
    for branch in _branches(value):
        if isinstance(branch, list):
            for item in branch:
                out.extend(_branches(item))
        else:
            out.append(branch)
    return out


def _statements(document: Any) -> Iterator[dict[str, Any]]:
    for doc in _branches(document):
        if isinstance(doc, str):  # a policy written as a JSON string (Fn::Sub'ed)
            doc = json.loads(doc)
        if isinstance(doc, dict) and "Fn::Sub" in doc:
            sub = doc["Fn::Sub"]
            doc = json.loads(sub if isinstance(sub, str) else sub[0])
        yield from _as_list(doc["Statement"])


def iam_statements(cfn: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, statement) for every identity-policy statement of the template."""
    for name, res in cfn["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            for policy in _as_list(props.get("Policies", [])):
                for st in _statements(policy["PolicyDocument"]):
                    yield f"{name}/{policy['PolicyName']}", st
        elif res["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            for st in _statements(props["PolicyDocument"]):
                yield name, st


def least_privilege_problems(cfn: dict[str, Any]) -> list[str]:
    problems = []
    for where, st in iam_statements(cfn):
        actions = _as_list(st.get("Action", []))
        resources = _as_list(st.get("Resource", []))
        if "NotAction" in st or "NotResource" in st:
            problems.append(f"{where}: NotAction/NotResource")
        problems.extend(
            f"{where}: wildcard action {action!r}"
            for action in actions
            if not isinstance(action, str) or "*" in action
        )
        if "*" in resources:
            owned = st.get("Condition") == OWNER_CONDITION
            wide = [a for a in actions if a not in NO_RESOURCE_LEVEL_ACTIONS
                    and not (owned and a in OWNER_CONDITIONED_ACTIONS)]  # fmt: skip
            if wide:
                problems.append(f"{where}: '*' resource for {wide}")
    for name, role in resources_of(cfn, "AWS::IAM::Role").items():
        # Only this stack's own managed policies: AWS managed ones grant "*" resources.
        problems.extend(
            f"{name}: attaches managed policy {arn!r}"
            for arn in _as_list(role["Properties"].get("ManagedPolicyArns", []))
            if not (isinstance(arn, dict) and set(arn) == {"Ref"})
        )
    return problems


def test_no_wildcard_action_and_no_wildcard_resource(cfn: dict[str, Any]) -> None:
    assert list(iam_statements(cfn)), "no IAM statement found: the walk is broken"
    assert least_privilege_problems(cfn) == []


def test_least_privilege_check_catches_violations(cfn: dict[str, Any]) -> None:
    """The checker above is not vacuous: each kind of violation is reported."""
    bad = copy.deepcopy(cfn)
    role = bad["Resources"]["AdvanceFunctionRole"]["Properties"]
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    statements.append({"Effect": "Allow", "Action": "dynamodb:*", "Resource": "arn:x"})
    statements.append({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"})
    statements.append(
        {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": {"Fn::If": ["HasEks", "*", {"Ref": "AWS::NoValue"}]},
        }
    )
    # another caller's statements: the owner condition missing, or not the caller's own id
    statements.append(
        {"Effect": "Allow", "Action": "redshift-data:GetStatementResult", "Resource": "*"}
    )
    statements.append(
        {
            "Effect": "Allow",
            "Action": "redshift-data:CancelStatement",
            "Resource": "*",
            "Condition": {"StringLike": {"redshift-data:statement-owner-iam-userid": "*"}},
        }
    )
    role["ManagedPolicyArns"] = ["arn:aws:iam::aws:policy/AdministratorAccess"]
    problems = least_privilege_problems(bad)
    assert any("'*' resource for ['redshift-data:GetStatementResult']" in p for p in problems)
    assert any("'*' resource for ['redshift-data:CancelStatement']" in p for p in problems)
    assert any("wildcard action 'dynamodb:*'" in p for p in problems)
    assert any("'*' resource for ['sqs:SendMessage']" in p for p in problems)
    assert any("'*' resource for ['s3:GetObject']" in p for p in problems)
    assert any("AdministratorAccess" in p for p in problems)


def test_functions_use_their_own_roles_not_sam_generated_ones(cfn: dict[str, Any]) -> None:
    for name, fn in resources_of(cfn, "AWS::Lambda::Function").items():
        assert fn["Properties"]["Role"] == {"Fn::GetAtt": [f"{name}Role", "Arn"]}, name


def _actions_on(cfn: dict[str, Any], prefix: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for where, st in iam_statements(cfn):
        if where.startswith(prefix):
            for action in _as_list(st["Action"]):
                out.setdefault(action, set()).update(
                    json.dumps(r) for r in _as_list(st["Resource"])
                )
    return out


def test_scheduler_role_may_only_invoke_the_trigger_function(cfn: dict[str, Any]) -> None:
    actions = _actions_on(cfn, "SchedulerRole/")
    assert set(actions) == {"lambda:InvokeFunction"}
    (resource,) = actions["lambda:InvokeFunction"]
    assert resource.endswith(':function:${AWS::StackName}-trigger"}')
    fn = cfn["Resources"]["TriggerFunction"]["Properties"]
    assert fn["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-trigger"}
    trust = cfn["Resources"]["SchedulerRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "scheduler.amazonaws.com"}


def test_dispatchers_may_register_runner_job_definitions(cfn: dict[str, Any]) -> None:
    """batch tasks name an image, projects have roles: the dispatcher registers
    stratoflow-<stack>-<hash> definitions, passing the execution role and project roles."""
    actions = _actions_on(cfn, "DispatchPolicy")
    (resource,) = actions["batch:RegisterJobDefinition"]
    assert resource.endswith(':job-definition/stratoflow-${AWS::StackName}-*"}')
    assert actions["iam:PassRole"] >= {
        json.dumps({"Fn::GetAtt": ["BatchExecutionRole", "Arn"]}),
        json.dumps(
            {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/stratoflow/"
                        "${AWS::StackName}/*"}
        ),
    }  # fmt: skip


def test_dispatchers_may_read_the_timeout_of_the_functions_lambda_tasks_invoke(
    cfn: dict[str, Any],
) -> None:
    """A timed-out lambda task's retry waits for its function's own timeout: advance and the
    reconciler read it, from exactly the functions lambda tasks may invoke."""
    statements = {
        (where.split("/")[0], st.get("Sid")): st
        for where, st in iam_statements(cfn)
        if st.get("Effect") == "Allow"
    }
    read = statements["DispatchPolicy", "TimedOutLambdaTasks"]
    invoke = statements["LambdaTaskRole", "UserLambdaTasks"]
    assert read["Action"] == "lambda:GetFunctionConfiguration"
    assert read["Resource"] == invoke["Resource"]
    assert "lambda:GetFunctionConfiguration" not in _actions_on(cfn, "SchedulerCorePolicy")
    # ... counted from the invocation's start, in the history of the attempt's execution
    history = statements["DispatchPolicy", "TimedOutLambdaInvocations"]
    assert history["Action"] == "states:GetExecutionHistory"
    assert (
        history["Resource"] == statements["ReconcilerFunctionRole", "ReadLostReports"]["Resource"]
    )
    for role in ("AdvanceFunctionRole", "ReconcilerFunctionRole"):
        managed = cfn["Resources"][role]["Properties"]["ManagedPolicyArns"]
        assert {"Ref": "DispatchPolicy"} in managed, role


def test_state_machine_role_has_what_the_integrations_need(cfn: dict[str, Any]) -> None:
    actions = _actions_on(cfn, "TaskAttemptStateMachineRole/")
    invoke = actions["lambda:InvokeFunction"]
    assert PROJECT_RUNNERS in invoke
    assert json.dumps({"Fn::GetAtt": ["EksLauncherFunction", "Arn"]}) in invoke
    for action in ("batch:SubmitJob", "batch:DescribeJobs", "batch:TerminateJob"):
        assert action in actions, action
    # batch:submitJob.sync: Step Functions manages this EventBridge rule in the account.
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        (rule,) = actions[action]
        assert rule.endswith(':rule/StepFunctionsGetEventsForBatchJobsRule"}')
    assert actions["sqs:SendMessage"] == {json.dumps({"Fn::GetAtt": ["ResultsQueue", "Arn"]})}


def test_the_api_and_trigger_functions_may_only_send_kicks_to_the_results_queue(
    cfn: dict[str, Any],
) -> None:
    """They record runs and hand the dispatch to advance with a message on the results queue:
    exactly sqs:SendMessage on it (SendMessageBatch is authorized by it), nothing else of SQS;
    advance and the reconciler send none, and no other role of the functions may."""
    queue = {json.dumps({"Fn::GetAtt": ["ResultsQueue", "Arn"]})}
    for role in ("ApiFunctionRole/", "TriggerFunctionRole/"):
        sqs = {a: r for a, r in _actions_on(cfn, role).items() if a.startswith("sqs:")}
        assert sqs == {"sqs:SendMessage": queue}, role
    for role in ("AdvanceFunctionRole/", "ReconcilerFunctionRole/", "SchedulerCorePolicy"):
        assert "sqs:SendMessage" not in _actions_on(cfn, role), role


def test_express_state_machine_runs_the_same_asl_without_standard_only_integrations(
    cfn: dict[str, Any], sam: dict[str, Any]
) -> None:
    """Short Lambda attempts run on an Express machine built from the same file; Express has
    no .sync / .waitForTaskToken, so those two substitutions differ and nothing else does."""
    standard = cfn["Resources"]["TaskAttemptStateMachine"]["Properties"]
    express = cfn["Resources"]["ExpressTaskAttemptStateMachine"]["Properties"]
    assert (standard["StateMachineType"], express["StateMachineType"]) == ("STANDARD", "EXPRESS")
    subs_s, subs_e = standard["DefinitionSubstitutions"], express["DefinitionSubstitutions"]
    assert set(subs_s) == set(subs_e)
    differ = {k for k in subs_s if subs_s[k] != subs_e[k]}
    assert differ == {"BatchSubmitJob", "EksLaunch", "AthenaStartQuery"}
    athena = (subs_s["AthenaStartQuery"], subs_e["AthenaStartQuery"])
    assert athena == ("startQueryExecution.sync", "startQueryExecution")
    assert (subs_s["BatchSubmitJob"], subs_e["BatchSubmitJob"]) == ("submitJob.sync", "submitJob")
    assert (subs_s["EksLaunch"], subs_e["EksLaunch"]) == ("invoke.waitForTaskToken", "invoke")
    env = sam["Globals"]["Function"]["Environment"]["Variables"]
    name = sam["Resources"]["ExpressTaskAttemptStateMachine"]["Properties"]["Name"]["Fn::Sub"]
    assert env["STRATOFLOW_EXPRESS_STATE_MACHINE_ARN"]["Fn::Sub"].endswith(f":stateMachine:{name}")


def test_express_role_may_only_invoke_lambdas_and_report(cfn: dict[str, Any]) -> None:
    actions = _actions_on(cfn, "ExpressTaskAttemptStateMachineRole/")
    assert not any(a.startswith(("batch:", "events:", "states:")) for a in actions), actions
    assert actions["lambda:InvokeFunction"] == {PROJECT_RUNNERS}
    assert actions["sqs:SendMessage"] == {json.dumps({"Fn::GetAtt": ["ResultsQueue", "Arn"]})}


TASK_ATTEMPT_MACHINE = json.dumps(
    {
        "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
        ":stateMachine:${AWS::StackName}-task-attempt"
    }
)


def test_eks_pods_run_as_project_roles_not_a_role_of_the_stacks(cfn: dict[str, Any]) -> None:
    """Issue 9 item 5: no shared pod role. Each project's pods get its role (made at run
    time, adapters/aws/projects.py) through its service account: the scheduler functions
    associate it by Pod Identity on the stack's cluster, and the boundary lets the role answer
    the task-attempt state machine's tokens (the pod's reporter)."""
    res = cfn["Resources"]
    assert "EksPodRole" not in res
    assert not resources_of(cfn, "AWS::EKS::PodIdentityAssociation")
    assert "EksServiceAccount" not in cfn["Parameters"]
    for name in ("EksLauncherAccessEntry", "EksExecutionEndedRule"):
        assert res[name]["Condition"] == "HasEks", name
    entry = res["EksLauncherAccessEntry"]["Properties"]
    assert entry["PrincipalArn"] == {"Fn::GetAtt": ["EksLauncherFunctionRole", "Arn"]}
    (policy,) = entry["AccessPolicies"]
    assert policy["AccessScope"] == {"Type": "namespace", "Namespaces": [{"Ref": "EksNamespace"}]}
    launcher = _actions_on(cfn, "EksLauncherFunctionRole/")
    assert launcher["states:SendTaskFailure"] == {TASK_ATTEMPT_MACHINE}
    rule = res["EksExecutionEndedRule"]
    assert rule["Properties"]["EventPattern"]["detail"]["status"] == [
        "ABORTED",
        "TIMED_OUT",
        "FAILED",
    ]
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["EksLauncherFunction", "Arn"]}

    core = res["DispatchPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (association,) = [
        st["Fn::If"] for st in core
        if isinstance(st, dict) and "Fn::If" in st
        and st["Fn::If"][1].get("Sid") == "ProjectPodIdentities"
    ]  # fmt: skip
    condition, allowed, otherwise = association
    assert (condition, otherwise) == ("HasEks", {"Ref": "AWS::NoValue"})
    assert allowed["Action"] == "eks:CreatePodIdentityAssociation"
    assert allowed["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:eks:${AWS::Region}:${AWS::AccountId}"
        ":cluster/${EksClusterName}"
    }
    boundary = _actions_on(cfn, "ProjectTaskBoundary")
    for action in ("states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"):
        assert boundary[action] == {TASK_ATTEMPT_MACHINE}, action
    env = cfn["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["STRATOFLOW_EKS_OIDC_ISSUER"] == {"Ref": "EksOidcIssuer"}


# ---------------------------------------------------------------- the contract


def test_contract_resources_exist_with_their_types(cfn: dict[str, Any]) -> None:
    for name, type_ in CONTRACT_RESOURCES.items():
        assert cfn["Resources"][name]["Type"] == type_, name


def test_every_contract_function_exists_with_the_contract_settings(sam: dict[str, Any]) -> None:
    globals_ = sam["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.12"
    assert globals_["Handler"] == "app.handler"
    assert globals_["Tracing"] == "Active"
    assert globals_["Layers"] == [{"Ref": "CoreLayer"}]
    for name, code_uri in CONTRACT_FUNCTIONS.items():
        fn = sam["Resources"][name]
        assert fn["Type"] == "AWS::Serverless::Function", name
        assert fn["Properties"]["CodeUri"] == code_uri, name
    layer = sam["Resources"]["CoreLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/core/"
    # layers/core/Makefile builds it with its bytecode (.ci/check_aws.sh checks the result)
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Properties"]["CompatibleRuntimes"] == [globals_["Runtime"]]
    makefile = (ROOT / "layers/core/Makefile").read_text()
    assert "build-CoreLayer:" in makefile
    assert "--invalidation-mode unchecked-hash" in makefile


def test_every_function_gets_the_contract_environment(cfn: dict[str, Any]) -> None:
    functions = resources_of(cfn, "AWS::Lambda::Function")
    assert set(CONTRACT_FUNCTIONS) <= set(functions)
    for name, fn in functions.items():
        props = fn["Properties"]
        env = props["Environment"]["Variables"]
        assert set(env) >= CONTRACT_ENV, f"{name} lacks {CONTRACT_ENV - set(env)}"
        assert env["POWERTOOLS_SERVICE_NAME"] == "stratoflow"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Stratoflow"
        assert props["Runtime"] == "python3.12"
        assert props["Handler"] == "app.handler"
        assert props["TracingConfig"] == {"Mode": "Active"}
        # SAM renames a LayerVersion to CoreLayer<hash> so that each build publishes anew.
        assert any(layer.get("Ref", "").startswith("CoreLayer") for layer in props["Layers"])


# Functions that must stay on x86_64, with why (template.yaml says so next to them). None: the
# functions are pure Python on a layer built for arm64 (layers/core/Makefile).
X86_64_FUNCTIONS: dict[str, str] = {}


def _makefile_variable(name: str) -> str:
    makefile = (ROOT / "layers/core/Makefile").read_text()
    (value,) = re.findall(rf"^{name}\s*=\s*(.+)$", makefile, flags=re.MULTILINE)
    return value.strip()


def test_every_function_runs_on_arm64_as_the_layer_is_built_unless_listed(
    sam: dict[str, Any], cfn: dict[str, Any]
) -> None:
    """Graviton is 20% cheaper per GB-s (docs/aws-costs.md): every function is on arm64 but
    those X86_64_FUNCTIONS lists; and the core layer they all load is built for the
    architecture they run on (its compiled wheels would not load on another), as is each
    project's runner function, which loads it too (projects.RUNNER_ARCHITECTURE)."""
    functions = resources_of(cfn, "AWS::Lambda::Function")
    assert functions
    for name, fn in functions.items():
        wanted = ["x86_64"] if name in X86_64_FUNCTIONS else ["arm64"]
        assert fn["Properties"].get("Architectures") == wanted, name
    layer = sam["Resources"]["CoreLayer"]["Properties"]
    assert layer["CompatibleArchitectures"] == ["arm64"]
    assert sam["Resources"]["CoreLayer"]["Metadata"]["BuildArchitecture"] == "arm64"
    assert _makefile_variable("LAMBDA_ARCHITECTURE") == "arm64"
    assert RUNNER_ARCHITECTURE == "arm64"
    # the wheels the build asks pip for: aarch64, manylinux_2_28 included (Lambda's Amazon
    # Linux 2023 has glibc 2.34); .ci/check_aws.sh checks the built layer's shared objects
    build = subprocess.run(
        ["make", "-s", "-n", "-C", str(ROOT / "layers/core"), "build-CoreLayer",
         "ARTIFACTS_DIR=/nonexistent"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    platforms = re.findall(r"--platform (\S+)", build)
    assert platforms == ["manylinux_2_28_aarch64", "manylinux2014_aarch64"]


def test_arns_built_from_the_stack_name_match_the_resources(sam: dict[str, Any]) -> None:
    """Env ARNs are Fn::Sub strings (no dependency cycle); they must name the real resources."""
    env = sam["Globals"]["Function"]["Environment"]["Variables"]
    sm_name = sam["Resources"]["TaskAttemptStateMachine"]["Properties"]["Name"]["Fn::Sub"]
    assert env["STRATOFLOW_STATE_MACHINE_ARN"]["Fn::Sub"].endswith(f":stateMachine:{sm_name}")
    trigger_name = sam["Resources"]["TriggerFunction"]["Properties"]["FunctionName"]["Fn::Sub"]
    assert env["STRATOFLOW_TRIGGER_FUNCTION_ARN"]["Fn::Sub"].endswith(f":function:{trigger_name}")


def test_state_table_matches_the_schema(cfn: dict[str, Any]) -> None:
    table = cfn["Resources"]["StateTable"]["Properties"]
    schema = TABLE_SCHEMA  # the store's own definition: the single source

    def attrs(defs: list[dict[str, str]]) -> set[tuple[str, str]]:
        return {(d["AttributeName"], d["AttributeType"]) for d in defs}

    assert attrs(table["AttributeDefinitions"]) == attrs(schema["AttributeDefinitions"])
    assert table["KeySchema"] == schema["KeySchema"]
    assert table["BillingMode"] == schema["BillingMode"]

    def indexes(gsis: list[dict[str, Any]]) -> dict[str, Any]:
        return {g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in gsis}

    assert indexes(table["GlobalSecondaryIndexes"]) == indexes(schema["GlobalSecondaryIndexes"])
    assert "ProvisionedThroughput" not in table
    stream = schema["StreamSpecification"]
    assert table["StreamSpecification"] == {"StreamViewType": stream["StreamViewType"]}
    assert stream["StreamEnabled"] is True
    # Not part of create_table: set by separate API calls, fixed by the contract.
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_every_table_with_counted_items_expires_their_lost_write_markers(
    cfn: dict[str, Any],
) -> None:
    # CountedItems writes a `#write#<token>` marker with each counted write and deletes it
    # after; a marker whose delete was lost (a crash, a throttle) expires by `expires_at`.
    # Alert channels, groups and connections are counted items of the alert table
    for name in ("StateTable", "AlertTable"):
        table = cfn["Resources"][name]["Properties"]
        assert table.get("TimeToLiveSpecification") == {
            "AttributeName": "expires_at", "Enabled": True,
        }, name  # fmt: skip


def _asl_placeholders(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text))


def test_definition_substitutions_cover_the_contract(cfn: dict[str, Any]) -> None:
    sm = cfn["Resources"]["TaskAttemptStateMachine"]["Properties"]
    assert set(sm["DefinitionSubstitutions"]) >= CONTRACT_SUBSTITUTIONS
    assert sm["StateMachineType"] == "STANDARD"
    assert sm["TracingConfiguration"] == {"Enabled": True}
    assert sm["LoggingConfiguration"]["IncludeExecutionData"] is False


@pytest.mark.skipif(
    not ASL.exists(), reason="statemachines/task_attempt.asl.json is on aws-functions"
)
def test_every_substitution_the_asl_uses_is_defined(cfn: dict[str, Any]) -> None:
    used = _asl_placeholders(ASL.read_text())
    defined = set(
        cfn["Resources"]["TaskAttemptStateMachine"]["Properties"]["DefinitionSubstitutions"]
    )
    assert used, "the ASL uses no substitution: it cannot reach the stack's resources"
    assert used <= defined, f"undefined in template.yaml: {sorted(used - defined)}"


def test_placeholder_scan_finds_substitutions() -> None:
    text = '{"A": "${RunnerFunctionArn}", "B.$": "States.Format(\'{}\', $.x)", "C": "${Missing}"}'
    assert _asl_placeholders(text) == {"RunnerFunctionArn", "Missing"}


# ---------------------------------------------------------------- the rest of item 1


def test_results_queue_feeds_advance_with_partial_batch_failures(cfn: dict[str, Any]) -> None:
    queue = cfn["Resources"]["ResultsQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["ResultsDLQ", "Arn"]}
    fn_timeout = cfn["Resources"]["AdvanceFunction"]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * fn_timeout
    (mapping,) = [
        m
        for m in resources_of(cfn, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": "AdvanceFunction"}
    ]
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["ResultsQueue", "Arn"]}
    assert props["BatchSize"] == 10
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_reconciler_runs_on_a_schedule(cfn: dict[str, Any]) -> None:
    rules = [
        r
        for r in resources_of(cfn, "AWS::Events::Rule").values()
        if any(
            t["Arn"] == {"Fn::GetAtt": ["ReconcilerFunction", "Arn"]}
            for t in r["Properties"]["Targets"]
        )
    ]
    assert [r["Properties"]["ScheduleExpression"] for r in rules] == [{"Ref": "ReconcilerSchedule"}]
    assert cfn["Parameters"]["ReconcilerSchedule"]["Default"] == "rate(5 minutes)"


def test_bucket_is_private_encrypted_and_expires_logs(cfn: dict[str, Any]) -> None:
    bucket = cfn["Resources"]["ArtifactBucket"]["Properties"]
    block = bucket["PublicAccessBlockConfiguration"]
    assert all(
        block[k] is True
        for k in (
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        )
    )
    (sse,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-task-logs"]["Prefix"] == "logs/"
    assert rules["expire-task-logs"]["ExpirationInDays"] == {"Ref": "TaskLogRetentionDays"}
    policy = cfn["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]
    assert [st["Effect"] for st in policy["Statement"]] == ["Deny"]


def test_read_model_is_aurora_serverless_v2_with_data_api_and_auto_pause(
    cfn: dict[str, Any],
) -> None:
    cluster = cfn["Resources"]["ReadModelCluster"]["Properties"]
    assert cluster["Engine"] == "aurora-postgresql"
    assert cluster["EnableHttpEndpoint"] is True
    assert cluster["ServerlessV2ScalingConfiguration"]["MinCapacity"] == 0
    assert cluster["StorageEncrypted"] is True
    instance = cfn["Resources"]["ReadModelInstance"]["Properties"]
    assert instance["DBInstanceClass"] == "db.serverless"
    assert cfn["Resources"]["ReadModelSecret"]["Type"] == "AWS::SecretsManager::Secret"


def test_api_auth_is_iam_or_cognito_on_every_method(cfn: dict[str, Any]) -> None:
    methods = resources_of(cfn, "AWS::ApiGateway::Method")
    assert len(methods) == 2  # / and /{proxy+}, both ANY
    for name, method in methods.items():
        props = method["Properties"]
        assert props["HttpMethod"] == "ANY", name
        assert props["AuthorizationType"] == {
            "Fn::If": ["IsCognito", "COGNITO_USER_POOLS", "AWS_IAM"]
        }
        assert props["Integration"]["Type"] == "AWS_PROXY"
    assert cfn["Parameters"]["AuthMode"]["AllowedValues"] == ["IAM", "COGNITO"]
    # Switching AuthMode must redeploy: the stage moves to the other mode's Deployment, which
    # is created after the methods changed.
    stage = cfn["Resources"]["ApiStage"]["Properties"]
    cond, yes, no = stage["DeploymentId"]["Fn::If"]
    assert cond == "IsCognito"
    for ref, expected in ((yes, "IsCognito"), (no, "IsIam")):
        deployment = cfn["Resources"][ref["Ref"]]
        assert deployment["Type"] == "AWS::ApiGateway::Deployment"
        assert deployment["Condition"] == expected
        assert set(deployment["DependsOn"]) == set(methods)


def test_api_function_knows_how_callers_are_identified(cfn: dict[str, Any]) -> None:
    env = cfn["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["STRATOFLOW_AUTH_MODE"] == {"Ref": "AuthMode"}
    assert env["STRATOFLOW_IAM_ROLE_MAP"] == {"Ref": "IamRoleMap"}
    assert set(env) >= CONTRACT_ENV  # merged with the Globals, not instead of them
    group = cfn["Resources"]["AdminGroup"]
    assert group["Condition"] == "CreateUserPool"
    assert group["Properties"]["GroupName"] == "stratoflow-admins"


def test_log_groups_have_retention(cfn: dict[str, Any]) -> None:
    groups = resources_of(cfn, "AWS::Logs::LogGroup")
    assert len(groups) >= len(CONTRACT_FUNCTIONS) + 2  # functions, state machine, Batch
    for name, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    for name, fn in resources_of(cfn, "AWS::Lambda::Function").items():
        log_group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert log_group in groups, name


# ---------------------------------------------------------------- alerts (issue 12)


def test_alert_rule_feeds_the_alert_function_every_lifecycle_event_with_a_dlq(
    cfn: dict[str, Any],
) -> None:
    from stratoflow.adapters.aws.alerts import ALERT_EVENT_KINDS
    from stratoflow.adapters.aws.events import DETAIL_TYPES, SOURCE

    rules = resources_of(cfn, "AWS::Events::Rule")
    (rule,) = [r["Properties"] for r in rules.values()
               if r["Properties"].get("EventBusName") == {"Ref": "EventBus"}]  # fmt: skip
    # every event an alert comes of, and nothing else (a backfill's would only cost invocations)
    assert rule["EventPattern"] == {
        "source": [SOURCE],
        "detail-type": [DETAIL_TYPES[kind] for kind in ALERT_EVENT_KINDS],
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["AlertFunction", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["AlertDLQ", "Arn"]}}
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 86400
    # the function's own retries end in the same queue, and the queue takes the rule's
    invoke = resources_of(cfn, "AWS::Lambda::EventInvokeConfig")
    (config,) = [c["Properties"] for c in invoke.values()
                 if c["Properties"]["FunctionName"] == {"Ref": "AlertFunction"}]  # fmt: skip
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["AlertDLQ", "Arn"]
    }
    policy = cfn["Resources"]["AlertDLQPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (allow,) = policy
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    source = allow["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"][0]
    assert cfn["Resources"][source]["Type"] == "AWS::Events::Rule"
    alarm = cfn["Resources"]["AlertDLQAlarm"]["Properties"]
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["AlertDLQ", "QueueName"]}}
    ]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_alert_table_matches_the_adapters_schema(cfn: dict[str, Any]) -> None:
    from stratoflow.adapters.aws.alerts import ALERT_TABLE_SCHEMA as schema

    table = cfn["Resources"]["AlertTable"]["Properties"]
    assert table["AttributeDefinitions"] == schema["AttributeDefinitions"]
    assert table["KeySchema"] == schema["KeySchema"]
    assert table["GlobalSecondaryIndexes"] == schema["GlobalSecondaryIndexes"]
    assert table["BillingMode"] == schema["BillingMode"]
    env = cfn["Resources"]["AlertFunction"]["Properties"]["Environment"]["Variables"]
    assert env["STRATOFLOW_ALERT_TABLE"] == {"Ref": "AlertTable"}


def test_the_alert_function_may_do_only_what_alerting_needs(cfn: dict[str, Any]) -> None:
    actions = _actions_on(cfn, "AlertFunctionRole/")
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    for action in writes:  # it writes its own table, never the state table
        assert all("AlertTable" in r for r in actions[action]), action
    assert all("StateTable" in r or "AlertTable" in r for r in actions["dynamodb:Query"])
    (secrets,) = actions["secretsmanager:GetSecretValue"]
    assert ":secret:${TaskSecretsPrefix}*" in secrets
    assert actions["ses:SendEmail"] == {
        json.dumps(
            {"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*"}
        )
    }
    assert actions["sns:Publish"] == {json.dumps({"Ref": "AlertSnsTopicArns"})}
    (schedules,) = actions["scheduler:CreateSchedule"]
    assert schedules.endswith(':schedule/${AlertScheduleGroup}/alert-*"}')
    assert cfn["Resources"]["AlertScheduleGroup"]["Properties"]["Name"] == {
        "Fn::Sub": "${AWS::StackName}-alerts"
    }
    env_of = cfn["Resources"]["AlertFunction"]["Properties"]["Environment"]["Variables"]
    assert env_of["STRATOFLOW_ALERT_SCHEDULE_GROUP"] == {"Ref": "AlertScheduleGroup"}
    assert actions["iam:PassRole"] == {json.dumps({"Fn::GetAtt": ["AlertSchedulerRole", "Arn"]})}
    assert set(actions) == writes | {
        "logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments",
        "xray:PutTelemetryRecords", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
        "secretsmanager:GetSecretValue", "ses:SendEmail", "sns:Publish",
        "scheduler:CreateSchedule", "scheduler:DeleteSchedule", "iam:PassRole", "sqs:SendMessage",
    }  # fmt: skip
    # what the schedules invoke it with may invoke it and nothing else
    invoke = _actions_on(cfn, "AlertSchedulerRole/")
    assert set(invoke) == {"lambda:InvokeFunction"}
    (fn,) = invoke["lambda:InvokeFunction"]
    assert fn.endswith(':function:${AWS::StackName}-alert"}')
    assert cfn["Resources"]["AlertFunction"]["Properties"]["FunctionName"] == {
        "Fn::Sub": "${AWS::StackName}-alert"
    }
    env = cfn["Resources"]["AlertFunction"]["Properties"]["Environment"]["Variables"]
    assert env["STRATOFLOW_ALERT_FUNCTION_ARN"]["Fn::Sub"].endswith(
        ":function:${AWS::StackName}-alert"
    )


def test_the_api_manages_alerts_in_the_alert_table_and_only_asks_the_alert_function_to_send(
    cfn: dict[str, Any],
) -> None:
    actions = _actions_on(cfn, "ApiFunctionRole/")
    alert_table = {
        json.dumps({"Fn::GetAtt": ["AlertTable", "Arn"]}),
        json.dumps({"Fn::Sub": "${AlertTable.Arn}/index/gsi1"}),
    }
    for action in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem",
                   "dynamodb:UpdateItem"):  # fmt: skip
        assert alert_table <= actions[action], action
    # the alert function (test alerts) and the advance function (connection tests), no other
    advance, alert = sorted(actions["lambda:InvokeFunction"])
    assert alert.endswith(':function:${AWS::StackName}-alert"}')
    assert advance.endswith(':function:${AWS::StackName}-advance"}')
    # it sends nothing itself: no channel secret, no SES, no SNS
    assert not {"ses:SendEmail", "sns:Publish"} & set(actions)
    assert ":secret:${TaskSecretsPrefix}" not in "".join(
        actions.get("secretsmanager:GetSecretValue", set())
    )
    env = cfn["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["STRATOFLOW_ALERT_TABLE"] == {"Ref": "AlertTable"}


def test_the_projector_writes_the_state_table_only_to_expire_projected_audit_entries(
    cfn: dict[str, Any],
) -> None:
    from stratoflow.adapters.aws.dynamo_audit import AUDIT_PREFIX

    statements = [
        st for where, st in iam_statements(cfn) if where.startswith("ProjectorFunctionRole/")
    ]
    writes = [
        st for st in statements
        if any(a.startswith("dynamodb:") and not a.startswith(("dynamodb:Get", "dynamodb:Batch"))
               and a not in ("dynamodb:Query", "dynamodb:DescribeStream", "dynamodb:GetRecords",
                             "dynamodb:GetShardIterator", "dynamodb:ListStreams")
               for a in _as_list(st["Action"]))
    ]  # fmt: skip
    assert len(writes) == 1, writes
    (write,) = writes
    assert _as_list(write["Action"]) == ["dynamodb:UpdateItem"]
    assert write["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{AUDIT_PREFIX}*"]}
    }
