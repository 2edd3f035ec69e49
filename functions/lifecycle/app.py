"""LifecycleFunction: publishes the lifecycle events (run, task, backfill) to the bus from the
state table's DynamoDB stream (NEW_AND_OLD_IMAGES, filtered, ReportBatchItemFailures), so an
event is published once its change is committed, whatever dies after the commit. The logic is
stratoflow.adapters.aws.lifecycle."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratoflow.adapters.aws.dynamodb import DynamoStore
from stratoflow.adapters.aws.events import EventBridgeEvents
from stratoflow.adapters.aws.lifecycle import LifecyclePublisher, spec_reader

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# once per container; nothing here calls the network
_session = boto3.DEFAULT_SESSION or boto3.Session()
store = DynamoStore(os.environ["STRATOFLOW_TABLE"], client=_session.client("dynamodb"))
publisher = LifecyclePublisher(
    store,
    EventBridgeEvents(os.environ["STRATOFLOW_EVENT_BUS"], client=_session.client("events")),
    spec_reader(store),
    metrics=metrics,
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = publisher.handle(event)
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=result.published)
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(result.failed))
    logger.info(
        "lifecycle events published",
        extra={"records": result.records, "kinds": result.kinds, "failed": result.failed},
    )
    return result.response()
