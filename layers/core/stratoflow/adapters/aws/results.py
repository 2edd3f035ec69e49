"""What the results queue carries, and the artifacts-bucket objects it names: the outcome
message the state machine sends when an attempt ends (AWS-CONTRACT.md), and the kick the api
and trigger functions send when a run has tasks to start (``{"kind": "kick", "run_id": ...}``:
they record the run; ``advance`` claims, renders and dispatches, outside the request path).

``advance`` (the results queue), the reconciler's dead-letter replay and the dispatcher's
recovery of an execution whose report was lost all read a result through ``parse_outcome``,
so the three agree on what an outcome means; the first two read any message through
``parse_message``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args
from urllib.parse import urlparse

from botocore.exceptions import ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from stratoflow.engine import HELD_RETRY_ERROR, AttemptResult, AttemptStatus
from stratoflow.ports import Attempt, LogRange
from stratoflow.service import Finished

log = logging.getLogger("stratoflow.handlers")

MAX_JSON_BYTES = 64 * 1024 * 1024  # the most of a task's outputs document ``advance`` reads

ReadJson = Callable[[str], Any]  # an s3:// URI -> the JSON document stored there


# messages one SendMessageBatch takes (SQS's most)
SEND_BATCH = 10


class MalformedOutcome(ValueError):
    """A results-queue message that is not the contract's shape (an outcome or a kick); it
    cannot ever be applied."""


@dataclass(frozen=True)
class Kick:
    """Start what is ready in this run: sent by whoever recorded a change that may have
    made tasks ready (a trigger, a resume, a rerun) but does not dispatch itself. Idempotent:
    a run with nothing queued, or one already advanced, changes nothing."""

    run_id: str
    # a retry's wake (``Scheduler.take_retry_wakes``): the run's slot-bound retry waited
    # out its delay UP_FOR_RETRY, holding no slot, and is due then (a delayed message)
    due: datetime | None = None


class _KickMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["kick"]
    run_id: str = Field(min_length=1, max_length=512)
    due: AwareDatetime | None = None


# held: a retry's runner found its run paused when the delay ran out and started nothing
OutcomeStatus = Literal["succeeded", "failed", "timed_out", "stopped", "lost", "held"]
OUTCOME_STATUSES: tuple[str, ...] = get_args(OutcomeStatus)


class Outcome(BaseModel):
    """The outcome message the state machine sends to the results queue (AWS-CONTRACT.md).

    ``outputs`` is what the attempt returned: the runner's outputs object, or whatever JSON a
    ``lambda`` task's function returned (an object is taken as is, anything else becomes
    ``{"result": value}``). ``outputs_uri`` is where a Batch runner job wrote its outputs
    (``s3://<bucket>/outputs/<project>/<run>/<task>/<attempt>.json``): a job's result cannot carry them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str = Field(min_length=1, max_length=512)
    task_id: str = Field(min_length=1, max_length=512)
    attempt: int = Field(ge=1)
    status: OutcomeStatus
    exit_code: int | None = None
    error: str | None = None
    outputs: Any = None
    outputs_uri: str | None = None
    log: str | None = None
    retryable: bool = True


def kick_body(run_id: str, due: datetime | None = None) -> str:
    if due is None:
        return json.dumps({"kind": "kick", "run_id": run_id})
    return json.dumps({"kind": "kick", "run_id": run_id, "due": due.isoformat()})


MAX_DELAY_S = 900  # SQS's longest message delay: a later wake arrives early and is sent again


def send_retry_wakes(
    client: Any, queue_url: str, wakes: Mapping[str, datetime], now: datetime
) -> int:
    """One kick per run whose slot-bound retry waits out its delay (``wakes``: when each is
    due), delayed until then (at most ``MAX_DELAY_S``: ``advance`` sends a wake that came
    early again). Raises if SQS refused any: the reconciler's pass queues a due retry
    itself. Returns how many were sent."""
    runs = list(wakes)
    for first in range(0, len(runs), SEND_BATCH):
        entries = [
            {
                "Id": str(i), "MessageBody": kick_body(run_id, wakes[run_id]),
                "DelaySeconds": min(
                    MAX_DELAY_S, max(0, math.ceil((wakes[run_id] - now).total_seconds()))
                ),
            }
            for i, run_id in enumerate(runs[first : first + SEND_BATCH])
        ]  # fmt: skip
        failed = client.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")
        if failed:
            refused = [runs[first + int(f["Id"])] for f in failed]
            reasons = sorted({str(f.get("Code") or f.get("Message")) for f in failed})
            raise RuntimeError(f"retry wakes of runs {refused} not sent: {', '.join(reasons)}")
    return len(runs)


def send_kicks(client: Any, queue_url: str, run_ids: Iterable[str]) -> int:
    """Send one kick per run (each at most once), ten to a request. Raises if SQS refused
    any: the caller logs it, and the reconciler's pass dispatches what a lost kick would have.
    Returns how many were sent."""
    runs = list(dict.fromkeys(run_ids))
    for first in range(0, len(runs), SEND_BATCH):
        entries = [
            {"Id": str(i), "MessageBody": kick_body(run_id)}
            for i, run_id in enumerate(runs[first : first + SEND_BATCH])
        ]
        failed = client.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")
        if failed:
            refused = [runs[first + int(f["Id"])] for f in failed]
            reasons = sorted({str(f.get("Code") or f.get("Message")) for f in failed})
            raise RuntimeError(f"kicks of runs {refused} not sent: {', '.join(reasons)}")
    return len(runs)


def parse_message(body: str, read_json: ReadJson) -> Finished | Kick:
    """One results-queue body -> an attempt's report, or a kick. A body without ``kind`` is
    an outcome (what the state machine sends). Raises ``MalformedOutcome``, an unknown
    ``kind`` included (it goes the DLQ way, where an operator sees it)."""
    if '"kind"' not in body:  # the state machine's outcomes: parsed once
        return parse_outcome(body, read_json)
    try:
        data = json.loads(body)
    except ValueError:
        data = None  # parse_outcome says what is wrong with it
    kind = data.get("kind", "outcome") if isinstance(data, dict) else "outcome"
    if kind == "outcome":
        return parse_outcome(body, read_json)
    if kind != "kick":
        shown = json.dumps(kind)[:100]
        raise MalformedOutcome(f"unknown message kind {shown} (known: outcome, kick)")
    try:
        kick = _KickMessage.model_validate(data)
    except ValidationError as exc:
        raise MalformedOutcome(f"not a kick message ({_where(exc)})") from None
    return Kick(kick.run_id, kick.due)


def _where(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


def _not_an_outcome(exc: ValidationError) -> str:
    """What is wrong with an outcome message; a status this version does not know is named,
    with what most likely sent it: an executor (the runner) of a newer version than this
    ``advance`` (the stack's functions are deployed together; a version between them can
    meet the other for as long as an update or a rollback takes)."""
    for error in exc.errors():
        if error["loc"] == ("status",) and error["type"] == "literal_error":
            shown = json.dumps(error["input"])[:100]
            return (
                f"unknown outcome status {shown} (known: {', '.join(OUTCOME_STATUSES)}): "
                "sent by a newer runner than this advance? It goes to the dead-letter "
                "queue; the reconciler of a version that knows it replays it from there"
            )
    return f"not an outcome message ({_where(exc)})"


def parse_outcome(body: str, read_json: ReadJson) -> Finished:
    """One SQS body -> the report the scheduler applies. Raises ``MalformedOutcome``."""
    try:
        outcome = Outcome.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedOutcome(_not_an_outcome(exc)) from None
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
    if status == "held":  # the attempt never started: recorded stopped, the retry kept
        held = AttemptResult(AttemptStatus.STOPPED, error=HELD_RETRY_ERROR, held=True)
        return Finished(outcome.run_id, outcome.task_id, outcome.attempt, held)
    result = AttemptResult(
        AttemptStatus(status),
        outputs=outputs,
        error=error,
        exit_code=outcome.exit_code,
        retryable=outcome.retryable,
    )
    return Finished(outcome.run_id, outcome.task_id, outcome.attempt, result, outcome.log)


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
