"""The Lambda runner's handler: runs one shell, python or http attempt for the state machine
(lambda:invoke) and returns its outcome; the log goes to the artifacts bucket. While the task
runs, the runner reads the task's state every few seconds and kills it once it was stopped
(an Express execution cannot be stopped, and stopping a Standard one leaves its Lambda
running).

Each project has a runner function of its own, running as the project's role
(``projects.ProjectIdentities``); they are made at run time from the core layer, so the
handler lives here, in the layer, not in ``functions/``.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from stratoflow.adapters.aws import runner
from stratoflow.adapters.aws.secrets import SecretsManagerSource, secrets_prefix

logger = Logger()
tracer = Tracer()
metrics = Metrics()
s3 = boto3.client("s3")  # once per container
dynamodb = boto3.client("dynamodb")
# a lambda task whose payload references a secret: the runner invokes the user's function
# (read timeout past Lambda's 15 minutes: the call waits as long as the function may run)
lambda_client = boto3.client("lambda", config=Config(read_timeout=910, connect_timeout=10))
# the project's role may read its own secrets only (<prefix><project>/*)
secrets = SecretsManagerSource(boto3.client("secretsmanager"), secrets_prefix())
TABLE = os.environ.get("STRATOFLOW_TABLE") or None


@logger.inject_lambda_context(correlation_id_path="run_id", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcome = runner.handle(
        event,
        lambda: context.get_remaining_time_in_millis() / 1000.0,
        s3=s3,
        dynamodb=dynamodb,
        table=TABLE,
        secrets=secrets,
        lambda_client=lambda_client,
    )
    if event.get("action") == "test_connection":  # {ok, message} for advance, not an outcome
        logger.info("connection tested", extra={"ok": outcome.get("ok")})
        return outcome
    if outcome["status"] == "running":  # a step of the Redshift loop: the attempt goes on
        logger.info("statement running", extra={"key": event.get("key")})
        return outcome
    metrics.add_metric(name=f"Tasks_{outcome['status']}", unit=MetricUnit.Count, value=1)
    logger.info("attempt ended", extra={"key": event.get("key"), "status": outcome["status"]})
    return outcome
