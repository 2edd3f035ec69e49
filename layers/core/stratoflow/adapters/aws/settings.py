"""The AWS runtime's configuration: every environment variable template.yaml gives a function.

``AwsSettings.from_env()`` reads them all at once and names every one that is missing, so a
function misconfigured by hand fails at its first cold start with one clear message rather
than deep inside a request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import ClassVar

from stratoflow.errors import StratoflowError


class SettingsError(StratoflowError):
    """An environment variable the AWS runtime needs is missing or empty."""


@dataclass(frozen=True)
class AwsSettings:
    """One field per variable of the contract (AWS-CONTRACT.md, "the env vars functions get")."""

    table: str
    state_machine_arn: str
    results_queue_url: str
    event_bus: str
    bucket: str
    schedule_group: str
    scheduler_role_arn: str
    trigger_function_arn: str
    batch_job_queue: str
    runner_job_definition: str
    eks_cluster: str
    eks_namespace: str
    db_cluster_arn: str
    db_secret_arn: str
    db_name: str
    express_state_machine_arn: str = ""
    results_dlq_url: str = ""
    # each project's identity (adapters/aws/projects.py)
    stack: str = ""
    project_boundary_arn: str = ""
    runner_layers: str = ""  # comma-separated layer version ARNs of the project runners
    secrets_prefix: str = ""
    runner_log_retention_days: str = ""
    # the cluster's OIDC issuer (IRSA): project roles trust it for their pods' service accounts
    eks_oidc_issuer: str = ""
    # LambdaTaskFunctionArns, comma-separated: what a project's runner may invoke for a lambda
    # task whose payload references a secret (empty: any function of the account but the stack's)
    lambda_task_functions: str = ""
    # AthenaWorkgroupArns, RedshiftResourceArns, AuroraClusterArns, comma-separated: what a
    # project's sql tasks may query (empty: nothing of that kind)
    athena_workgroups: str = ""
    redshift_resources: str = ""
    aurora_clusters: str = ""
    # the alert table, which also holds the projects' named connections: the dispatcher reads
    # an sql task's connection there (empty: sql tasks are refused)
    alert_table: str = ""

    # field -> environment variable; the template sets every one, but these may be empty: a
    # stack deployed without Batch, EKS or the read model (the parameters that turn them off)
    OPTIONAL: ClassVar[frozenset[str]] = frozenset(
        {"batch_job_queue", "runner_job_definition", "eks_cluster", "eks_namespace",
         "db_cluster_arn", "db_secret_arn", "db_name", "express_state_machine_arn",
         "results_dlq_url", "secrets_prefix", "runner_log_retention_days", "eks_oidc_issuer",
         "lambda_task_functions", "alert_table", "athena_workgroups", "redshift_resources",
         "aurora_clusters"}
    )  # fmt: skip
    ENV: ClassVar[Mapping[str, str]] = {
        "table": "STRATOFLOW_TABLE",
        "state_machine_arn": "STRATOFLOW_STATE_MACHINE_ARN",
        "results_queue_url": "STRATOFLOW_RESULTS_QUEUE_URL",
        "event_bus": "STRATOFLOW_EVENT_BUS",
        "bucket": "STRATOFLOW_BUCKET",
        "schedule_group": "STRATOFLOW_SCHEDULE_GROUP",
        "scheduler_role_arn": "STRATOFLOW_SCHEDULER_ROLE_ARN",
        "trigger_function_arn": "STRATOFLOW_TRIGGER_FUNCTION_ARN",
        "batch_job_queue": "STRATOFLOW_BATCH_JOB_QUEUE",
        "runner_job_definition": "STRATOFLOW_RUNNER_JOB_DEFINITION",
        "eks_cluster": "STRATOFLOW_EKS_CLUSTER",
        "eks_namespace": "STRATOFLOW_EKS_NAMESPACE",
        "db_cluster_arn": "STRATOFLOW_DB_CLUSTER_ARN",
        "db_secret_arn": "STRATOFLOW_DB_SECRET_ARN",
        "db_name": "STRATOFLOW_DB_NAME",
        # empty: every attempt runs on the Standard state machine
        "express_state_machine_arn": "STRATOFLOW_EXPRESS_STATE_MACHINE_ARN",
        # the results queue's dead-letter queue, which the reconciler replays; empty: none
        "results_dlq_url": "STRATOFLOW_RESULTS_DLQ_URL",
        "stack": "STRATOFLOW_STACK",
        "project_boundary_arn": "STRATOFLOW_PROJECT_BOUNDARY_ARN",
        "runner_layers": "STRATOFLOW_RUNNER_LAYERS",
        "secrets_prefix": "STRATOFLOW_SECRETS_PREFIX",
        "runner_log_retention_days": "STRATOFLOW_RUNNER_LOG_RETENTION_DAYS",
        # empty: pods get their project's role by EKS Pod Identity only
        "eks_oidc_issuer": "STRATOFLOW_EKS_OIDC_ISSUER",
        # empty: every function of the account (never the stack's: the boundary denies those)
        "lambda_task_functions": "STRATOFLOW_LAMBDA_TASK_FUNCTIONS",
        # empty: a project's sql tasks may query no workgroup, cluster or Aurora cluster
        "athena_workgroups": "STRATOFLOW_ATHENA_WORKGROUPS",
        "redshift_resources": "STRATOFLOW_REDSHIFT_RESOURCES",
        "aurora_clusters": "STRATOFLOW_AURORA_CLUSTERS",
        # the alert table (alert channels and groups, and the named connections of sql tasks)
        "alert_table": "STRATOFLOW_ALERT_TABLE",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AwsSettings:
        """Read every variable; raise ``SettingsError`` naming all that are missing, or empty
        where a value is required."""
        env = os.environ if environ is None else environ
        values = {name: env.get(var, "").strip() for name, var in cls.ENV.items()}
        missing = [
            var
            for name, var in cls.ENV.items()
            if var not in env or (not values[name] and name not in cls.OPTIONAL)
        ]
        if missing:
            raise SettingsError(
                "missing environment variable"
                + ("s" if len(missing) > 1 else "")
                + ": "
                + ", ".join(missing)
                + " (template.yaml sets them on every function)"
            )
        return cls(**values)

    def as_env(self) -> dict[str, str]:
        """The variables back, as a function's environment (tests and the benchmark use it)."""
        return {self.ENV[f.name]: getattr(self, f.name) for f in fields(self)}
