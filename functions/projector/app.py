"""ProjectorFunction: keeps the Aurora read model in step with the StateTable's DynamoDB stream
(NEW_AND_OLD_IMAGES, ReportBatchItemFailures). The logic is stratoflow.adapters.aws.projector; the
read model's migrations run on the first batch of each container (or on {"action": "migrate"});
{"action": "replay-audit", "since": "<ISO time>"} writes the audit entries recorded since then
from the state table again (what the stream could not deliver; kept once by id)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratoflow.adapters.aws.dynamodb import DynamoStore
from stratoflow.adapters.aws.projector import StreamProjector
from stratoflow.readmodel import DataApiDatabase

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# once per container; nothing here calls the network (Aurora may be paused: init must be quick)
store = DynamoStore(os.environ["STRATOFLOW_TABLE"], client=boto3.client("dynamodb"))
projector = StreamProjector(store, DataApiDatabase.from_env(client=boto3.client("rds-data")))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "migrate":  # e.g. `aws lambda invoke` right after a deploy
        applied = projector.migrate()
        logger.info("read model migrated", extra={"applied": applied})
        metrics.add_metric(name="MigrationsApplied", unit=MetricUnit.Count, value=len(applied))
        return {"migrated": applied}
    if event.get("action") == "replay-audit":  # the audit log since then, from the table
        since = datetime.fromisoformat(str(event["since"]))
        if since.tzinfo is None:
            raise ValueError(f"since: {event['since']!r} names no time zone (e.g. +00:00)")
        replayed = projector.replay_audit(since)
        logger.info("audit entries delivered again", extra={"since": str(since), "n": replayed})
        return {"replayed": replayed}
    result = projector.handle(event)
    for name, value in (
        ("RecordsProjected", result.projected),
        ("RecordsSkipped", result.skipped),
        ("RecordsFailed", len(result.failed)),
        ("RowsOffered", result.rows),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if result.lag_seconds is not None:
        metrics.add_metric(name="StreamLag", unit=MetricUnit.Seconds, value=result.lag_seconds)
    logger.info(
        "stream batch projected",
        extra={"records": result.records, "failed": result.failed, "rows": result.rows},
    )
    return result.response()
