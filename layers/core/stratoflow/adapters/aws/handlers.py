"""What the Lambda handlers do, written against a ``Scheduler`` so it is tested without AWS.

``functions/<name>/app.py`` only builds the scheduler once per container and wraps these with
Powertools (logging, tracing, metrics). Every function here is idempotent: Lambda, SQS and
EventBridge deliver at least once, and a repeat changes nothing (the store's conditional
writes and the deterministic execution names see to it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import unquote

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from stratoflow.adapters.aws.firing import continue_catchups
from stratoflow.adapters.aws.projects import Identities
from stratoflow.adapters.aws.results import (
    MAX_JSON_BYTES,
    Kick,
    MalformedOutcome,
    Outcome,
    ReadJson,
    S3Objects,
    parse_message,
    parse_outcome,
    split_s3_uri,
)
from stratoflow.adapters.aws.run_index_migration import Progress
from stratoflow.engine import Plan, TaskState
from stratoflow.service import Finished, Scheduler

log = logging.getLogger("stratoflow.handlers")

# of the reconciler's 300 s: the migration of the run index goes on in steps this long
RUN_INDEX_STEP_SECONDS = 60.0
# and no longer than the invocation has left less this: the step's last page may run past
# its budget (a Query, up to ``run_index_migration.PAGE`` conditional writes, the position's
# save, each a throttle's retries long), then the function sends its wakes and kicks
RUN_INDEX_MARGIN_SECONDS = 30.0


class InvocationContext(Protocol):
    """What ``reconcile`` reads of the Lambda context."""

    def get_remaining_time_in_millis(self) -> int: ...


__all__ = [
    "MAX_JSON_BYTES",
    "DeadLetters",
    "InvocationContext",
    "Kick",
    "MalformedOutcome",
    "Outcome",
    "ReadJson",
    "S3Objects",
    "advance",
    "check_connection",
    "complete_pending_plans",
    "kill_stopped",
    "migrate_run_index",
    "parse_message",
    "parse_outcome",
    "reconcile",
    "replay_dead_letters",
    "run_id_of_path",
    "run_index_step_seconds",
    "settle_expired_intents",
    "split_s3_uri",
]

TEST_CONNECTION = "test_connection"  # the action of a connection test's request to advance


def advance(
    scheduler: Scheduler,
    event: Mapping[str, Any],
    read_json: ReadJson,
    *,
    on_report: Callable[[Finished | Kick], None] = lambda _: None,
) -> dict[str, Any]:
    """Apply each outcome message and dispatch what it made ready in its run (children,
    retries): O(out-degree) requests, whatever else is in flight. A kick (the api or trigger
    function recorded a run, a resume or a rerun) dispatches what is ready in its run: its
    roots, its rerun tasks; a repeated one finds nothing queued and changes nothing. Returns
    the partial-batch response: a message that failed (a failed write anywhere in its turn,
    its dispatch included) is retried by SQS, and its redelivery completes the turn (a
    duplicate changes nothing else); a malformed one (an unknown kind included) fails every
    time, so SQS's redrive policy moves it to the dead-letter queue after
    ``maxReceiveCount`` receives instead of retrying it forever.

    The whole batch is first applied as one turn (``Scheduler.advance`` of every outcome,
    with the kicks' runs): the ends of one run are one decision with its counters, and what
    they made ready is claimed once per run, so a batch of 10 outcomes writes the run's
    counters item twice instead of about 20 times (docs/benchmarks.md). If any message does
    not parse, or that turn fails part way, every message is then applied on its own as
    below: each step is idempotent, so what the batched turn had done is done once, and only
    the messages that fail on their own are retried."""
    if _advance_together(scheduler, event, read_json, on_report):
        return {"batchItemFailures": []}
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def apply(record: SQSRecord) -> None:
        try:
            message = parse_message(record.body, read_json)
        except MalformedOutcome as exc:
            log.warning("message %s dropped to the DLQ path: %s", record.message_id, exc)
            raise
        on_report(message)
        if isinstance(message, Kick) and message.due is not None:  # a retry's wake
            scheduler.advance((), wakes={message.run_id: message.due})
        elif isinstance(message, Kick):
            scheduler.advance((), runs=[message.run_id])
        else:
            scheduler.advance([message])

    response = process_partial_response(
        event=dict(event), record_handler=apply, processor=processor
    )
    return dict(response)


def _advance_together(
    scheduler: Scheduler,
    event: Mapping[str, Any],
    read_json: ReadJson,
    on_report: Callable[[Finished | Kick], None],
) -> bool:
    """``advance``'s batch as one turn; False (nothing reported) when a message does not
    parse or the turn failed, so that the caller applies the messages one by one."""
    records = event.get("Records") or []
    if len(records) < 2:
        return False  # one message: the per-message path is the same turn
    try:
        messages = [parse_message(str(record["body"]), read_json) for record in records]
    except Exception as exc:  # the per-message path fails just that one (to the DLQ)
        log.info("batch of %d not applied as one turn: %s", len(records), exc)
        return False
    reports = [m for m in messages if isinstance(m, Finished)]
    kicks = [m.run_id for m in messages if isinstance(m, Kick) and m.due is None]
    wakes: dict[str, datetime] = {}
    for m in messages:
        if isinstance(m, Kick) and m.due is not None:
            wakes[m.run_id] = min(m.due, wakes.get(m.run_id, m.due))
    try:
        if wakes:  # retries' wakes (``Scheduler.take_retry_wakes``), rarer than kicks
            scheduler.advance(reports, runs=kicks, wakes=wakes)
        else:
            scheduler.advance(reports, runs=kicks)
    except Exception:
        log.exception("the batch of %d as one turn failed; applying each alone", len(records))
        return False
    for message in messages:
        on_report(message)
    return True


# ------------------------------------------------------------------ the reconciler
@dataclass(frozen=True)
class DeadLetters:
    """The results queue's dead-letter queue, as the reconciler reads it.

    An outcome lands there after ``maxReceiveCount`` failed receives of ``advance`` (a bug, a
    long throttle, a poison message). Its execution shows SUCCEEDED, so nothing else would
    ever report that attempt: the reconciler replays it. ``max_messages`` bounds one pass
    (the next pass goes on); a poison message is hidden for ``poison_hide_seconds`` (SQS's
    most: 12 hours) so each pass does not read it again, and stays on the queue for an
    operator (the DLQ depth alarm keeps firing while it is there)."""

    client: Any  # boto3 SQS client
    queue_url: str
    read_json: ReadJson
    max_messages: int = 500
    visibility_seconds: int = 120  # a message whose apply failed comes back after this
    poison_hide_seconds: int = 12 * 3600


def replay_dead_letters(scheduler: Scheduler, dead: DeadLetters) -> dict[str, int]:
    """Apply every outcome on the dead-letter queue through ``advance``'s path (parse, then
    ``Scheduler.on_finished``; a kick through ``Scheduler.advance``, as ``advance`` does it),
    deleting each only after it was applied. Idempotent: an
    outcome that was applied already (or whose attempt moved on) changes nothing and is
    deleted. A malformed message is logged and hidden, never deleted; one whose apply fails
    is logged and left for the next pass. Never raises for a message's sake."""
    counts = {"replayed": 0, "poison": 0, "failed": 0}
    seen: set[str] = set()
    while sum(counts.values()) < dead.max_messages:
        got = dead.client.receive_message(
            QueueUrl=dead.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=dead.visibility_seconds,
            AttributeNames=["ApproximateReceiveCount"],
        )
        messages = [m for m in got.get("Messages", []) if m["MessageId"] not in seen]
        if not messages:
            break
        for message in messages:
            seen.add(message["MessageId"])
            counts[_replay_one(scheduler, dead, message)] += 1
    if any(counts.values()):
        log.info("dead-letter replay: %s", counts)
    return counts


def _replay_one(scheduler: Scheduler, dead: DeadLetters, message: Mapping[str, Any]) -> str:
    message_id = message["MessageId"]
    try:
        report = parse_message(message["Body"], dead.read_json)
    except MalformedOutcome as exc:
        log.error(  # noqa: TRY400 (the reason is the message; no traceback helps)
            "dead-lettered message %s is not an outcome, kept on %s for an operator: %s",
            message_id, dead.queue_url, exc,
        )  # fmt: skip
        _hide(dead, message, dead.poison_hide_seconds)
        return "poison"
    try:
        if isinstance(report, Kick):  # as advance does it (nothing is claimed twice)
            what = f"kick of run {report.run_id}"
            scheduler.advance((), runs=[report.run_id])
        else:
            what = f"outcome {report.run_id}/{report.task_id} attempt {report.attempt}"
            what += f" ({report.result.status.value})"
            scheduler.on_finished([report])
    except Exception:
        log.exception("dead-lettered %s (%s) not applied; retried next pass", what, message_id)
        return "failed"
    dead.client.delete_message(QueueUrl=dead.queue_url, ReceiptHandle=message["ReceiptHandle"])
    log.info("dead-lettered %s replayed (%s)", what, message_id)
    return "replayed"


def _hide(dead: DeadLetters, message: Mapping[str, Any], seconds: int) -> None:
    try:
        dead.client.change_message_visibility(
            QueueUrl=dead.queue_url,
            ReceiptHandle=message["ReceiptHandle"],
            VisibilityTimeout=seconds,
        )
    except Exception as exc:  # it merely comes back sooner
        log.warning("could not hide message %s: %s", message["MessageId"], exc)


class KillsAttempts(Protocol):
    def kill(self, run_id: str, task_id: str, attempt: int) -> None: ...


def kill_stopped(dispatcher: KillsAttempts, plan: Plan) -> bool:
    """The kills a plan's writer would have sent after applying it: every attempt the plan
    stopped. The plan keeps only the tasks' new states, so every STOPPED task that ever
    started an attempt is killed: killing one that already ended is a no-op. Returns False
    (the plan stays pending and this is tried again) when a kill failed."""
    ok = True
    for ti in plan.tasks.values():
        if ti.state is not TaskState.STOPPED or ti.attempt < 1 or ti.started_at is None:
            continue
        try:
            dispatcher.kill(ti.run_id, ti.task_id, ti.attempt)
        except Exception as exc:
            log.warning(
                "kill of %s/%s attempt %d failed: %s", ti.run_id, ti.task_id, ti.attempt, exc
            )
            ok = False
    return ok


def settle_expired_intents(store: object, now: datetime) -> int:
    """Settle the audit intents left pending past their expiry (``INTENT_TTL``), if the
    store journals audit entries (``DynamoAudit.audit_settle_expired``): their lines then
    reach the read model minutes after the expiry, as locally, not when DynamoDB's TTL gets
    to them (days)."""
    settle: Callable[[datetime], int] | None = getattr(store, "audit_settle_expired", None)
    if settle is None:
        return 0
    return settle(now)


def complete_pending_plans(store: object) -> int:
    """Let the store finish the operations (a stop, a rerun) whose writer died half way, if it
    has such a thing (DynamoDB's journaled plans; SQLite applies a plan in one transaction).
    Their kills go out through the store's ``plan_recovered`` hook (see ``runtime``)."""
    complete: Callable[[], int] | None = getattr(store, "complete_pending_plans", None)
    if complete is None:
        return 0
    return complete()


def reconcile(
    scheduler: Scheduler,
    *,
    dead_letters: DeadLetters | None = None,
    context: InvocationContext | None = None,
) -> dict[str, Any]:
    """The periodic repair, each part idempotent and safe to run concurrently with
    ``advance``: operations whose writer died half way (and their kills); outcomes that
    reached the dead-letter queue; results of executions that ended without a report (or
    whose report was lost); catch-ups that waited for room (``continue_catchups``);
    attempts claimed but never started; audit intents left pending past their expiry; due
    retries, stuck (timed-out) attempts, queued runs; then dispatch; last a step of the run
    index's migration, in the time the invocation (``context``, the Lambda's) has left
    (``run_index_step_seconds``). In the result ``None`` marks a repair that failed this
    pass (logged)."""
    # each repair on its own: one that keeps failing (a plan whose chunk is refused, an
    # unreachable queue) must not keep the others from running
    plans: int | None = None
    replayed: dict[str, int] | None = {}
    try:
        plans = complete_pending_plans(scheduler.store)
    except Exception:
        log.exception("completing pending plans failed; the next pass tries again")
    if dead_letters is not None:
        try:
            replayed = replay_dead_letters(scheduler, dead_letters)
        except Exception:
            log.exception("reading the dead-letter queue failed; the next pass tries again")
            replayed = None
    catchups: int | None = None
    try:  # backlogs that waited for room go on between their schedule's firings
        catchups = continue_catchups(scheduler)
    except Exception:
        log.exception("continuing catch-ups failed; the next pass tries again")
    intents: int | None = None
    try:  # audited requests that died before their outcome: "outcome unknown" in the log
        intents = settle_expired_intents(scheduler.store, scheduler.clock.now())
    except Exception:
        log.exception("settling expired audit intents failed; the next pass tries again")
    scheduler.recover()
    next_wakeup = scheduler.step()
    result: dict[str, Any] = {
        "next_wakeup": next_wakeup.isoformat() if next_wakeup else None,
        "plans_completed": plans,
        "dead_letters": replayed,
        "catchups": catchups,
        "audit_intents_settled": intents,
    }
    try:  # last: the repairs above come first in the function's time
        moved = migrate_run_index(scheduler.store, run_index_step_seconds(context))
    except Exception:
        log.exception("moving runs to their project's index partition failed; next pass goes on")
    else:
        if moved is not None:
            result["runs_rekeyed"] = moved
    return result


def run_index_step_seconds(context: InvocationContext | None) -> float:
    """How long the migration's step may take: ``RUN_INDEX_STEP_SECONDS``, but not past the
    invocation's remaining time less ``RUN_INDEX_MARGIN_SECONDS`` (the repairs before it
    took theirs: a step of a full budget would run the function into its timeout, killed
    before its wakes and kicks). 0 or less: no step this pass."""
    if context is None:
        return RUN_INDEX_STEP_SECONDS
    left = context.get_remaining_time_in_millis() / 1000.0 - RUN_INDEX_MARGIN_SECONDS
    return min(RUN_INDEX_STEP_SECONDS, left)


def migrate_run_index(store: object, seconds: float = RUN_INDEX_STEP_SECONDS) -> int | None:
    """A step of the DynamoDB store's gsi3 migration (``adapters/aws/run_index_migration``):
    the runs it moved, or None when it moved none (SQLite has nothing to migrate; DynamoDB
    reads one item per container once it is done). No step when ``seconds`` is not
    positive (no time left for one)."""
    migrate: Callable[[float], Progress] | None = getattr(store, "migrate_run_index", None)
    if migrate is None or seconds <= 0:
        return None
    return migrate(seconds).moved or None


def run_id_of_path(path: str) -> str | None:
    """The run an API request is about (its log correlation id), from ``/runs/<id>/...``."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "runs":
        return unquote(parts[1])
    return None


# ------------------------------------------------------------------ connection tests
Invoke = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]  # (function, payload) -> answer


def check_connection(
    event: Mapping[str, Any], identities: Identities | None, invoke: Invoke
) -> dict[str, Any]:
    """A connection test the API function asked for (it checked that the caller may operate
    the project and read the connection from the project's items): make the project's
    identity ready, then have the project's runner function test the connection, as the
    project's role (the only one that reads the project's secrets and queries its
    workgroups and clusters), and wait for its answer. Returns ``{ok, message}``; a runner
    that cannot be made ready or reached is a failed test, saying why."""
    project, connection = event.get("project"), event.get("connection")
    if not isinstance(project, str) or not project or not isinstance(connection, Mapping):
        return {"ok": False, "message": "a connection test names a project and a connection"}
    if identities is None:
        return {"ok": False, "message": "this stack has no project runners"}
    try:
        runner = identities.ensure(project).runner_function
    except Exception as exc:
        log.exception("project %s's identity for a connection test", project)
        return {"ok": False, "message": f"project {project!r}'s runner is not ready: {exc}"}
    connection = dict(connection)
    settings = connection.get("settings")
    places = getattr(identities, "places", None)  # ProjectIdentities': the stack's places
    if (connection.get("type") == "athena" and isinstance(settings, Mapping)
            and not settings.get("output_location") and places is not None):  # fmt: skip
        # where the project's queries write results (its role may write there only), as
        # the dispatcher fills it in for an sql task
        output = places.athena_output(project)
        connection["settings"] = {**settings, "output_location": output}
    request = {"action": TEST_CONNECTION, "project": project, "connection": connection}
    try:
        answer = invoke(runner, request)
    except Exception as exc:  # throttled, timed out, the runner failed
        log.warning("connection test in %s failed: %s", runner, exc)
        return {"ok": False, "message": f"project {project!r}'s runner did not answer: {exc}"}
    return {"ok": bool(answer.get("ok")), "message": str(answer.get("message") or "")}
