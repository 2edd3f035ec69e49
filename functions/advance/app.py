"""AdvanceFunction (SQS ResultsQueue): applies attempt outcomes, then dispatches what they
made ready. Partial batch failures: only the messages that failed come back."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratoflow.adapters.aws import handlers
from stratoflow.adapters.aws.runtime import AwsFunction

logger = Logger()
tracer = Tracer()
metrics = Metrics()
function = AwsFunction.create(metrics=metrics)  # once per container


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    function.invocation_started()
    return handlers.advance(
        function.scheduler,
        event,
        function.objects.read_json,
        on_report=lambda report: logger.set_correlation_id(report.run_id),
    )
