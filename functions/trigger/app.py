"""TriggerFunction (EventBridge Scheduler): a schedule firing becomes a run (one per logical
date, however often it fires), and ``advance`` is kicked to dispatch its first tasks (their
templates are rendered there, not here). A repeated firing kicks again: a kick that was lost
the first time is sent, and one that was not changes nothing.

A firing that can never succeed (garbled input, a workflow no longer there) is logged and
acknowledged: raising would only make EventBridge Scheduler retry it for a day."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratoflow.adapters.aws.firing import fire
from stratoflow.adapters.aws.runtime import AwsFunction
from stratoflow.errors import InvalidInput, NotFound

logger = Logger()
tracer = Tracer()
metrics = Metrics()
function = AwsFunction.create(metrics=metrics)  # once per container


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    function.invocation_started()
    try:
        fired = fire(function.scheduler, event)
    except (InvalidInput, NotFound) as exc:
        logger.warning("firing rejected: %s", exc)
        return {"run_id": None, "created": False, "error": str(exc)}
    if fired is None:
        logger.info(
            "firing creates no run (paused, unscheduled, outside the window, or a catch-up "
            "waiting for room)"
        )
        return {"run_id": None, "created": False}
    run, created = fired
    logger.set_correlation_id(run.id)
    logger.info("schedule fired", extra={"run_created": created, "run_state": run.state.value})
    function.hand_over(run.id)  # raises if SQS refused: the firing is retried
    return {"run_id": run.id, "created": created}
