"""AlertFunction: fed by the lifecycle bus's alert rule, and by its own one-time schedules
(a delivery's retry, an SLA deadline). The logic is stratoflow.adapters.aws.alerts; channel
secrets are read from Secrets Manager at send time, never logged."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratoflow.adapters.aws.alerts import alerts_from_env

logger = Logger()
tracer = Tracer()
metrics = Metrics()

alerts = alerts_from_env(os.environ, boto3.DEFAULT_SESSION or boto3.Session())  # once per container


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = alerts.handle(event)
    metrics.add_metric(name="AlertSendsTried", unit=MetricUnit.Count, value=result["tried"])
    return result
