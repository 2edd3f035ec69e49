"""build_scheduler / AwsFunction: the wiring every handler gets at cold start, and that it
makes no AWS request while wiring (a cold start costs nothing but the clients)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import boto3
import pytest
from aws_lambda_powertools import Metrics

from stratoflow.adapters.aws.dispatch import StepFunctionsDispatcher
from stratoflow.adapters.aws.dynamodb import DynamoStore
from stratoflow.adapters.aws.lifecycle import StreamPublished
from stratoflow.adapters.aws.metrics import MeteredDispatcher
from stratoflow.adapters.aws.projects import ProjectIdentities
from stratoflow.adapters.aws.runtime import (
    RETRY_LEAD,
    TIMEOUT_GRACE,
    AwsClients,
    AwsFunction,
    build_scheduler,
)
from stratoflow.adapters.aws.schedules import EventBridgeSchedules
from stratoflow.adapters.aws.settings import AwsSettings

ENV = {var: f"x-{var.lower()}" for var in AwsSettings.ENV.values()}
ENV["STRATOFLOW_STATE_MACHINE_ARN"] = "arn:aws:states:us-east-1:123456789012:stateMachine:m"
ENV["STRATOFLOW_PROJECT_BOUNDARY_ARN"] = "arn:aws:iam::123456789012:policy/sf-boundary"
ENV["STRATOFLOW_STACK"] = "sf"
ENV["STRATOFLOW_RUNNER_LOG_RETENTION_DAYS"] = "30"


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> tuple[AwsClients, Counter[str]]:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    session = boto3.Session(region_name="us-east-1")
    made = AwsClients.create(session)
    requests: Counter[str] = Counter()
    for client in vars(made).values():
        client.meta.events.register("before-call", lambda model, **_: requests.update([model.name]))
    return made, requests


def test_the_scheduler_is_wired_to_the_aws_adapters(clients: tuple[AwsClients, Any]) -> None:
    made, requests = clients
    settings = AwsSettings.from_env(ENV)
    scheduler = build_scheduler(settings, made)
    assert isinstance(scheduler.store, DynamoStore)
    assert scheduler.catalog is scheduler.store
    assert isinstance(scheduler.dispatcher, StepFunctionsDispatcher)
    assert scheduler.dispatcher.state_machine_arn == settings.state_machine_arn
    assert scheduler.dispatcher.bucket == settings.bucket
    identities = scheduler.dispatcher.identities
    assert isinstance(identities, ProjectIdentities)
    assert identities.places.role_arn("p").startswith(
        "arn:aws:iam::123456789012:role/stratoflow/sf/"
    )
    assert identities.places.region == "us-east-1"
    assert identities.boundary_arn == settings.project_boundary_arn
    # kubernetes pods: the stack's cluster and namespace, its OIDC issuer for IRSA
    assert (identities.eks_cluster, identities.eks_namespace) == (
        settings.eks_cluster, settings.eks_namespace
    )  # fmt: skip
    assert identities.places.oidc_issuer == settings.eks_oidc_issuer
    assert scheduler.dispatcher.job_definition_prefix == "stratoflow-sf-"
    # its events go out from the state table's stream (the lifecycle function), not from here
    assert isinstance(scheduler.events, StreamPublished)
    assert isinstance(scheduler.schedules, EventBridgeSchedules)
    assert scheduler.schedules.target_arn == settings.trigger_function_arn
    assert scheduler.retry_lead == RETRY_LEAD == timedelta(days=366)
    assert scheduler.timeout_grace == TIMEOUT_GRACE == timedelta(minutes=2)
    assert scheduler.clock.now().tzinfo is not None
    assert sum(requests.values()) == 0


def test_a_boundary_that_is_not_a_policy_arn_is_refused_at_cold_start(
    clients: tuple[AwsClients, Any],
) -> None:
    made, _ = clients
    settings = AwsSettings.from_env({**ENV, "STRATOFLOW_PROJECT_BOUNDARY_ARN": "boundary"})
    with pytest.raises(
        ValueError, match="STRATOFLOW_PROJECT_BOUNDARY_ARN is not an IAM policy ARN"
    ):
        build_scheduler(settings, made)


def test_a_function_meters_dispatch(
    clients: tuple[AwsClients, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    made, requests = clients
    for var, value in ENV.items():
        monkeypatch.setenv(var, value)
    function = AwsFunction.create(metrics=Metrics(namespace="T"), clients=made)
    assert isinstance(function.scheduler.dispatcher, MeteredDispatcher)
    assert function.metered is function.scheduler.dispatcher
    assert isinstance(function.scheduler.events, StreamPublished)
    assert function.metered.ready_since is None
    function.invocation_started()
    assert function.metered.ready_since is not None
    assert sum(requests.values()) == 0
    plain = AwsFunction.create(settings=AwsSettings.from_env(ENV), clients=made)
    assert plain.metered is None
    plain.invocation_started()  # nothing to mark; no error
    # the advance function's connection tests use the dispatcher's identities, metered or not
    assert function.identities() is function.metered.inner.identities  # type: ignore[attr-defined]
    assert plain.identities() is plain.scheduler.dispatcher.identities  # type: ignore[attr-defined]
    assert isinstance(plain.identities(), ProjectIdentities)


def test_default_clients_come_from_one_process_wide_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    first, second = AwsClients.create(), AwsClients.create()
    assert boto3.DEFAULT_SESSION is not None
    assert first.dynamodb.meta.region_name == "eu-west-1"
    assert second.s3 is not first.s3  # each call makes clients; the session is shared


def test_recovery_is_wired_the_dead_letter_queue_and_the_kills_of_a_recovered_plan(
    clients: tuple[AwsClients, Any],
) -> None:
    made, requests = clients
    function = AwsFunction.create(settings=AwsSettings.from_env(ENV), clients=made)
    store = function.scheduler.store
    assert isinstance(store, DynamoStore)
    assert store.plan_recovered is not None  # a dead writer's kills go out on completion
    dead = function.dead_letters()
    assert dead is not None
    assert dead.queue_url == ENV["STRATOFLOW_RESULTS_DLQ_URL"]
    assert dead.client is made.sqs
    no_dlq = AwsFunction.create(
        settings=AwsSettings.from_env({**ENV, "STRATOFLOW_RESULTS_DLQ_URL": ""}), clients=made
    )
    assert no_dlq.dead_letters() is None
    assert sum(requests.values()) == 0
