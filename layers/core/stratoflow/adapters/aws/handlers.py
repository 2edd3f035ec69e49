"""What the Lambda handlers do, written against a ``Scheduler`` so it is tested without AWS.

``functions/<name>/app.py`` only builds the scheduler once per container and wraps these with
Powertools (logging, tracing, metrics). Every function here is idempotent: Lambda, SQS and
EventBridge deliver at least once, and a repeat changes nothing (the store's conditional
writes and the deterministic execution names see to it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratoflow.adapters.aws.settings import SettingsError
from stratoflow.api.access import (
    Authenticator,
    cognito_authenticator,
    iam_authenticator,
    parse_role_map,
)
from stratoflow.auth import Principal, Unauthenticated
from stratoflow.engine import AttemptResult, AttemptStatus
from stratoflow.ports import Attempt, LogRange
from stratoflow.service import Finished, Scheduler

log = logging.getLogger("stratoflow.handlers")

MAX_JSON_BYTES = 64 * 1024 * 1024  # the most of a task's outputs document ``advance`` reads

ReadJson = Callable[[str], Any]  # an s3:// URI -> the JSON document stored there


class MalformedOutcome(ValueError):
    """An outcome message that is not the contract's shape; it cannot ever be applied."""


class Outcome(BaseModel):
    """The outcome message the state machine sends to the results queue (AWS-CONTRACT.md).

    ``outputs`` is what the attempt returned: the runner's outputs object, or whatever JSON a
    ``lambda`` task's function returned (an object is taken as is, anything else becomes
    ``{"result": value}``). ``outputs_uri`` is where a Batch runner job wrote its outputs
    (``s3://<bucket>/outputs/<run>/<task>/<attempt>.json``): a job's result cannot carry them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str = Field(min_length=1, max_length=512)
    task_id: str = Field(min_length=1, max_length=512)
    attempt: int = Field(ge=1)
    status: Literal["succeeded", "failed", "timed_out", "stopped", "lost"]
    exit_code: int | None = None
    error: str | None = None
    outputs: Any = None
    outputs_uri: str | None = None
    log: str | None = None
    retryable: bool = True


def parse_outcome(body: str, read_json: ReadJson) -> Finished:
    """One SQS body -> the report the scheduler applies. Raises ``MalformedOutcome``."""
    try:
        outcome = Outcome.model_validate_json(body)
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise MalformedOutcome(f"not an outcome message ({where})") from None
    if outcome.outputs is None:
        outputs: dict[str, Any] = {}
    elif isinstance(outcome.outputs, dict):
        outputs = outcome.outputs
    else:
        outputs = {"result": outcome.outputs}
    if outcome.outputs_uri and outcome.status == "succeeded":
        try:
            stored = read_json(outcome.outputs_uri)
        except FileNotFoundError:
            stored = {}  # the job wrote no outputs
        except Exception as exc:
            log.warning("outputs at %s unreadable: %s", outcome.outputs_uri, exc)
            stored = None
        if not isinstance(stored, dict):
            # children may read these outputs: without them the attempt cannot count as done
            error = f"outputs at {outcome.outputs_uri} are not a readable JSON object"
            return _finished(outcome, "failed", {}, error)
        outputs = {**outputs, **stored}
    return _finished(outcome, outcome.status, outputs, outcome.error)


def _finished(
    outcome: Outcome, status: str, outputs: dict[str, Any], error: str | None
) -> Finished:
    result = AttemptResult(
        AttemptStatus(status),
        outputs=outputs,
        error=error,
        exit_code=outcome.exit_code,
        retryable=outcome.retryable,
    )
    return Finished(outcome.run_id, outcome.task_id, outcome.attempt, result, outcome.log)


def advance(
    scheduler: Scheduler,
    event: Mapping[str, Any],
    read_json: ReadJson,
    *,
    on_report: Callable[[Finished], None] = lambda _: None,
) -> dict[str, Any]:
    """Apply each outcome message and dispatch what it made ready in its run (children,
    retries): O(out-degree) requests, whatever else is in flight. Returns the partial-batch
    response: a message that failed (a failed write anywhere in its turn, its dispatch
    included) is retried by SQS, and its redelivery completes the turn (a duplicate changes
    nothing else); a malformed one fails every time, so SQS's redrive policy moves it to the
    dead-letter queue after ``maxReceiveCount`` receives instead of retrying it forever."""
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def apply(record: SQSRecord) -> None:
        try:
            report = parse_outcome(record.body, read_json)
        except MalformedOutcome as exc:
            log.warning("message %s dropped to the DLQ path: %s", record.message_id, exc)
            raise
        on_report(report)
        scheduler.advance([report])

    response = process_partial_response(
        event=dict(event), record_handler=apply, processor=processor
    )
    return dict(response)


def reconcile(scheduler: Scheduler) -> dict[str, Any]:
    """The periodic repair: results of executions that ended without a report, attempts
    claimed but never started, due retries, stuck (timed-out) attempts, queued runs; then
    dispatch. Safe to run any number of times, also concurrently with ``advance``."""
    scheduler.recover()
    next_wakeup = scheduler.step()
    return {"next_wakeup": next_wakeup.isoformat() if next_wakeup else None}


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.lstrip("/"):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


class S3Objects:
    """Reads the artifacts bucket: task logs for the API, Batch outputs for ``advance``."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def _get(self, bucket: str, key: str, first: int, last: int) -> tuple[bytes, int] | None:
        """Bytes ``first``..``last`` (inclusive) of an object and its whole size; None if it
        does not exist."""
        try:
            response = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "InvalidRange":  # ``first`` is at or past its end (an empty object too)
                head = self.client.head_object(Bucket=bucket, Key=key)
                return b"", int(head["ContentLength"])
            if code in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise
        body: bytes = response["Body"].read()
        total = response.get("ContentRange", "").rpartition("/")[2]  # "bytes 0-9/1234"
        return body, int(total) if total.isdigit() else first + len(body)

    def read_json(self, uri: str) -> Any:
        got = self._get(*split_s3_uri(uri), 0, MAX_JSON_BYTES - 1)
        if got is None:
            raise FileNotFoundError(uri)
        return json.loads(got[0])

    def read_log(self, attempt: Attempt, offset: int, length: int) -> LogRange | None:
        """Up to ``length`` bytes of an attempt's log (an ``s3://`` location) from ``offset``,
        read as one ranged GET, or None while nothing was written yet. An attempt that ended
        with an exit code and has no log object printed nothing (the runner does not upload
        an empty log): its log is empty."""
        if not attempt.log or not attempt.log.startswith("s3://"):
            return None
        try:
            bucket, key = split_s3_uri(attempt.log)
        except ValueError:
            return None
        got = self._get(bucket, key, offset, offset + max(length, 1) - 1)
        if got is None:
            # the command ran to its end and printed nothing: the runner skips the PUT
            return LogRange(b"", 0, 0) if attempt.exit_code is not None else None
        data, size = got
        return LogRange(data, min(offset, size), size)


def run_id_of_path(path: str) -> str | None:
    """The run an API request is about (its log correlation id), from ``/runs/<id>/...``."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "runs":
        return unquote(parts[1])
    return None


AUTH_MODES = ("IAM", "COGNITO")

GatewayCheck = Callable[[Mapping[str, Any]], "str | None"]


def api_gateway_check(environ: Mapping[str, str]) -> GatewayCheck:
    """A check that an api event came through this stack's API Gateway (and so through its
    IAM or Cognito authorizer): ``requestContext.apiId`` is ``STRATOFLOW_API_ID``, the stage is
    ``STRATOFLOW_API_STAGE`` (when set) and the identity has the shape the auth mode's
    authorizer leaves (a caller ARN and account for IAM, token claims for COGNITO). It returns
    what is wrong, or None. Someone who may invoke the function can still forge all of it (the
    API id is no secret); the template keeps every role that runs user work from invoking the
    stack's functions, and this refuses the events that do not even look right.

    Without ``STRATOFLOW_API_ID`` nothing is checked, except inside Lambda
    (``AWS_LAMBDA_FUNCTION_NAME`` set), where a missing id is an error at cold start."""
    api_id = environ.get("STRATOFLOW_API_ID", "").strip()
    stage = environ.get("STRATOFLOW_API_STAGE", "").strip()
    mode = environ.get("STRATOFLOW_AUTH_MODE", "").strip().upper()
    if not api_id:
        if environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            raise SettingsError(
                "STRATOFLOW_API_ID is not set: the api function refuses events it cannot "
                "tell came through its API Gateway"
            )
        return lambda event: None

    def check(event: Mapping[str, Any]) -> str | None:
        context = event.get("requestContext")
        if not isinstance(context, Mapping):
            return "the event has no requestContext: it did not come through API Gateway"
        if context.get("apiId") != api_id:
            return "the event's requestContext.apiId is not this stack's API"
        if stage and context.get("stage") != stage:
            return f"the event's requestContext.stage is not {stage!r}"
        if mode == "COGNITO":
            authorizer = context.get("authorizer")
            claims = authorizer.get("claims") if isinstance(authorizer, Mapping) else None
            if not isinstance(claims, Mapping) or not claims:
                return "the event carries no Cognito claims from the API's authorizer"
        else:
            identity = context.get("identity")
            if not isinstance(identity, Mapping):
                return "the event's requestContext has no identity"
            arn, account = identity.get("userArn"), identity.get("accountId")
            if not isinstance(arn, str) or not isinstance(account, str):
                return "the event's identity has no IAM caller (userArn and accountId)"
            if f":{account}:" not in arn:
                return "the event's identity.userArn is not in identity.accountId"
        return None

    return check


def api_authenticator(environ: Mapping[str, str]) -> Authenticator:
    """Who the API caller is, as the stack says (``STRATOFLOW_AUTH_MODE``: IAM with the role
    map in ``STRATOFLOW_IAM_ROLE_MAP``, or COGNITO). Fails closed: a missing or unknown mode is
    an error at cold start, never an API where everyone is an administrator. An event that
    fails ``api_gateway_check`` is unauthenticated whatever identity it names."""
    mode = environ.get("STRATOFLOW_AUTH_MODE", "").strip().upper()
    if mode == "COGNITO":
        inner = cognito_authenticator()
    elif mode == "IAM":
        inner = iam_authenticator(parse_role_map(environ.get("STRATOFLOW_IAM_ROLE_MAP", "{}")))
    else:
        raise SettingsError(
            f"STRATOFLOW_AUTH_MODE must be one of {', '.join(AUTH_MODES)}, not {mode or 'unset'!r}"
        )
    from_gateway = api_gateway_check(environ)

    def authenticate(event: APIGatewayProxyEvent) -> Principal:
        problem = from_gateway(event.raw_event)
        if problem is not None:
            raise Unauthenticated(problem)
        return inner(event)

    return authenticate
