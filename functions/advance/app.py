"""AdvanceFunction (SQS ResultsQueue): applies attempt outcomes, then dispatches what they
made ready. Partial batch failures: only the messages that failed come back. Also answers
the API function's connection tests (a direct invoke, ``action: test_connection``): the
project's runner tests the connection, as the project's role."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from stratoflow.adapters.aws import handlers
from stratoflow.adapters.aws.connections import sync_invoker
from stratoflow.adapters.aws.runtime import AwsFunction

logger = Logger()
tracer = Tracer()
metrics = Metrics()
function = AwsFunction.create(metrics=metrics)  # once per container
# a connection test waits for the project's runner (its check is bounded to 15 s)
invoke_runner = sync_invoker(
    boto3.client(
        "lambda", config=Config(read_timeout=27, connect_timeout=5, retries={"max_attempts": 1})
    )
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == handlers.TEST_CONNECTION:
        return handlers.check_connection(event, function.identities(), invoke_runner)
    function.invocation_started()
    response = handlers.advance(
        function.scheduler,
        event,
        function.objects.read_json,
        on_report=lambda report: logger.set_correlation_id(report.run_id),
    )
    function.send_retry_wakes()  # runs whose pooled retries wait out their delay
    function.kick_left_over()  # runs whose slow templates used this turn's render budget
    return response
