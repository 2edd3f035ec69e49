"""ReconcilerFunction (every 5 minutes): repairs what no event will: stops and reruns whose
writer died half way (and their kills), outcomes on the results dead-letter queue, executions
that ended without a report or whose report was lost, attempts never started, stuck attempts,
audit intents whose request died before its outcome (`request.unconfirmed` 15 min on);
then dispatches; then a step of moving runs an older version wrote to their project's index
partition (adapters/aws/run_index_migration.py). Idempotent."""

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
    result = handlers.reconcile(
        function.scheduler, dead_letters=function.dead_letters(), context=context
    )
    function.send_retry_wakes()  # runs whose pooled retries wait out their delay
    function.kick_left_over()  # runs whose slow templates used its turn's render budget
    return result
