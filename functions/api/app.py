"""ApiFunction (API Gateway, every route): the REST API over the AWS scheduler. A write that
may have made tasks ready (trigger, resume, rerun, mark) records them and kicks ``advance``
through the results queue, which claims, renders and dispatches them: no template is rendered
in a request. Callers are who API Gateway verified (IAM or Cognito, ``STRATOFLOW_AUTH_MODE``)."""

from __future__ import annotations

import json
import os
from functools import partial
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from stratoflow.adapters.aws.alerts import AwsAlertsApi, DynamoAlertStore, lambda_invoker
from stratoflow.adapters.aws.connections import (
    AwsConnectionsApi,
    DynamoConnectionStore,
    sync_invoker,
)
from stratoflow.adapters.aws.handlers import run_id_of_path
from stratoflow.adapters.aws.runtime import AwsFunction, UtcClock
from stratoflow.adapters.aws.secrets import SecretsManagerStore, secrets_prefix
from stratoflow.api.app import create_app
from stratoflow.api.gateway import api_authenticator, api_gateway_check, within_lambda_limit
from stratoflow.api.paths import with_decoded_path
from stratoflow.readmodel import DataApiDatabase, ReadModel

logger = Logger()
tracer = Tracer()
metrics = Metrics()
function = AwsFunction.create(metrics=metrics)  # once per container


def hand_over() -> None:
    """After a write: kick ``advance`` for the runs it made tasks ready in (a trigger's
    roots, a rerun's or a resume's tasks). A lost kick is the reconciler's to repair."""
    function.hand_over()


# The read model on Aurora (EnableReadModel): the run list and the audit log. Reached through
# the Data API, so no VPC; the projector function migrates it, so a cold start here makes no
# database call (a paused cluster would otherwise hold up the start).
readmodel = (
    ReadModel(DataApiDatabase.from_env(), apply_migrations=False)
    if os.environ.get("STRATOFLOW_DB_CLUSTER_ARN")
    else None
)

# Refuses, before any route (public ones included), an event that did not come through this
# stack's API Gateway: a direct invoke with a forged requestContext.identity.
from_gateway = api_gateway_check(os.environ)

# /alerts: channels, groups and deliveries in the alert table; a test alert is sent by the
# alert function (this function's role reads no secret value)
# (template.yaml sets both variables; without them there are no /alerts routes)
alerts = (
    AwsAlertsApi(
        DynamoAlertStore(os.environ["STRATOFLOW_ALERT_TABLE"], boto3.client("dynamodb")),
        UtcClock(),
        lambda_invoker(boto3.client("lambda"), os.environ["STRATOFLOW_ALERT_FUNCTION_ARN"]),
        link_base=os.environ.get("STRATOFLOW_PUBLIC_URL") or None,
    )
    if os.environ.get("STRATOFLOW_ALERT_TABLE")
    else None
)

# /connections: named connections of sql tasks, items of the alert table (references only);
# a test is run by the project's runner, through the advance function
connections = (
    AwsConnectionsApi(
        DynamoConnectionStore(os.environ["STRATOFLOW_ALERT_TABLE"], boto3.client("dynamodb")),
        UtcClock(),
        # a test runs in the project's runner, as the project's role: asked of the advance
        # function (this role may invoke it, and makes no project identity itself)
        tester=partial(
            sync_invoker(
                boto3.client(
                    "lambda",
                    config=Config(read_timeout=28, connect_timeout=5, retries={"max_attempts": 1}),
                )
            ),
            os.environ["STRATOFLOW_ADVANCE_FUNCTION_ARN"],
        )
        if os.environ.get("STRATOFLOW_ADVANCE_FUNCTION_ARN")
        else None,
    )
    if os.environ.get("STRATOFLOW_ALERT_TABLE")
    else None
)

app = create_app(
    function.scheduler,
    on_change=hand_over,
    read_log=function.objects.read_log,
    authenticate=api_authenticator(os.environ),
    readmodel=readmodel,
    # /secrets: write and list under <TaskSecretsPrefix><project>/; never read a value
    secrets=SecretsManagerStore(boto3.client("secretsmanager"), secrets_prefix()),
    alerts=alerts,
    connections=connections,
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    function.invocation_started()
    problem = from_gateway(event)
    if problem is not None:
        logger.warning("refused an event that did not come through API Gateway: %s", problem)
        return {
            "statusCode": 403,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"error": "forbidden", "message": problem}),
        }
    run_id = run_id_of_path(str(event.get("path") or ""))
    if run_id is not None:
        logger.set_correlation_id(run_id)
    # API Gateway REST leaves the path percent-encoded; routes see it decoded, as locally
    request = with_decoded_path(event)
    response = app.resolve(request, context)
    return within_lambda_limit(response, str(request.get("httpMethod")), request["path"])
