"""EksLauncherFunction: starts a kubernetes task's Job (invoked with lambda:invoke.waitForTaskToken),
deletes it when its execution is stopped (EventBridge execution status change events), and
every minute (an EventBridge schedule) fails the attempts whose pods died without a report
(OOM-killed, evicted, an image that cannot be pulled)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.credentials import Credentials

from stratoflow.adapters.aws.eks import EksJobs, EksSettings, handle

logger = Logger()
tracer = Tracer()
metrics = Metrics()

_session = boto3.Session()
_sfn = _session.client("stepfunctions")


def _credentials() -> Credentials:
    credentials = _session.get_credentials()
    if credentials is None:
        raise RuntimeError("no AWS credentials in this environment")
    return credentials


jobs = EksJobs(
    EksSettings.from_env(),
    eks_client=_session.client("eks"),
    credentials=_credentials,
    region=_session.region_name or "us-east-1",
)

_METRIC = {
    "launched": "EksJobsLaunched",
    "rejected": "EksJobsRejected",
    "deleted": "EksJobsDeleted",
}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    execution_input = event.get("input") or {}
    if isinstance(execution_input, dict) and execution_input.get("run_id"):
        logger.set_correlation_id(str(execution_input["run_id"]))
    result = handle(jobs, _sfn, event)
    logger.info("eks launcher", extra={"outcome": result})
    if result["status"] in _METRIC:
        metrics.add_metric(name=_METRIC[result["status"]], unit=MetricUnit.Count, value=1)
    elif result["status"] == "watched" and result["failed"]:
        metrics.add_metric(name="EksPodsLost", unit=MetricUnit.Count, value=len(result["failed"]))
    return result
