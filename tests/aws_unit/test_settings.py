"""AwsSettings: every contract variable is read, and a missing one is named."""

from __future__ import annotations

import pytest

from stratoflow.adapters.aws.settings import AwsSettings, SettingsError

FULL = {var: f"value-of-{var.lower()}" for var in AwsSettings.ENV.values()}


def test_reads_every_contract_variable() -> None:
    settings = AwsSettings.from_env(FULL)
    assert settings.table == "value-of-stratoflow_table"
    assert settings.state_machine_arn == "value-of-stratoflow_state_machine_arn"
    assert settings.as_env() == FULL
    # the last: what sql tasks may query (AthenaWorkgroupArns, RedshiftResourceArns,
    # AuroraClusterArns), optional: empty gives the project roles none of it
    assert len(AwsSettings.ENV) == 28
    blank = AwsSettings.from_env({**FULL, **{AwsSettings.ENV[f]: "" for f in (
        "athena_workgroups", "redshift_resources", "aurora_clusters")}})  # fmt: skip
    assert (blank.athena_workgroups, blank.redshift_resources, blank.aurora_clusters) == ("",) * 3


def test_a_missing_variable_is_named() -> None:
    env = dict(FULL)
    del env["STRATOFLOW_RESULTS_QUEUE_URL"]
    with pytest.raises(SettingsError, match=r"variable: STRATOFLOW_RESULTS_QUEUE_URL \("):
        AwsSettings.from_env(env)


def test_every_missing_or_blank_variable_is_named_at_once() -> None:
    env = dict(FULL, STRATOFLOW_TABLE="  ")
    del env["STRATOFLOW_BUCKET"]
    with pytest.raises(SettingsError) as info:
        AwsSettings.from_env(env)
    assert "variables: STRATOFLOW_TABLE, STRATOFLOW_BUCKET" in str(info.value)


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in FULL.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("STRATOFLOW_EVENT_BUS", "bus-from-env")
    assert AwsSettings.from_env().event_bus == "bus-from-env"


def test_a_stack_without_batch_eks_or_read_model_may_leave_those_empty() -> None:
    """The template sets these to "" when their parameters turn the feature off."""
    off = {
        "STRATOFLOW_BATCH_JOB_QUEUE", "STRATOFLOW_RUNNER_JOB_DEFINITION", "STRATOFLOW_EKS_CLUSTER",
        "STRATOFLOW_EKS_NAMESPACE", "STRATOFLOW_DB_CLUSTER_ARN", "STRATOFLOW_DB_SECRET_ARN",
        "STRATOFLOW_DB_NAME",
    }  # fmt: skip
    settings = AwsSettings.from_env({**FULL, **dict.fromkeys(off, "")})
    assert (settings.batch_job_queue, settings.eks_cluster, settings.db_cluster_arn) == ("", "", "")
    env = {**FULL, **dict.fromkeys(off, "")}
    del env["STRATOFLOW_EKS_CLUSTER"]  # empty is allowed, absent is a misconfiguration
    with pytest.raises(SettingsError, match="STRATOFLOW_EKS_CLUSTER"):
        AwsSettings.from_env(env)


def test_the_project_roles_get_the_listed_workgroups_and_clusters() -> None:
    """What the stack lists (comma-joined, blanks dropped) reaches each project role's
    policy through the dispatcher's settings; empty lists give it no sql statement."""
    from types import SimpleNamespace

    from stratoflow.adapters.aws.runtime import project_identities

    boundary = "arn:aws:iam::123456789012:policy/stratoflow-ProjectTaskBoundary"
    env = {**FULL, "STRATOFLOW_PROJECT_BOUNDARY_ARN": boundary,
           "STRATOFLOW_SECRETS_PREFIX": "stratoflow/", "STRATOFLOW_RUNNER_LOG_RETENTION_DAYS": "7"}  # fmt: skip
    clients = SimpleNamespace(dynamodb=SimpleNamespace(meta=SimpleNamespace(region_name="eu-west-1")),
                              iam=None, lambda_=None, logs=None, eks=None)  # fmt: skip
    wg = "arn:aws:athena:eu-west-1:123456789012:workgroup/etl"
    listed = dict(env, STRATOFLOW_ATHENA_WORKGROUPS=f" {wg} ,",
                  STRATOFLOW_REDSHIFT_RESOURCES="", STRATOFLOW_AURORA_CLUSTERS="")  # fmt: skip
    places = project_identities(AwsSettings.from_env(listed), clients).places  # type: ignore[arg-type]
    assert places.athena_workgroups == (wg,)
    sids = {st["Sid"] for st in places.policy("analytics")["Statement"]}
    assert {"AthenaWorkgroups", "AthenaResults"} <= sids
    assert not {"RedshiftDataStatements", "AuroraDataApi"} & sids
    none = dict(listed, STRATOFLOW_ATHENA_WORKGROUPS="")
    places = project_identities(AwsSettings.from_env(none), clients).places  # type: ignore[arg-type]
    assert not {"AthenaWorkgroups", "AthenaResults"} & {
        st["Sid"] for st in places.policy("analytics")["Statement"]
    }
