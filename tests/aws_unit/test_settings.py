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
    assert (
        len(AwsSettings.ENV) == 25
    )  # the last: STRATOFLOW_ALERT_TABLE (sql tasks' connections, for the dispatcher)


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
