"""The handlers' logic over a real store (SQLite) and the recording dispatcher: outcome
messages become results, duplicates and malformed messages change nothing, failures are
reported per message, and the children a result made ready are dispatched in the same call.
(The same logic runs over DynamoDB and Step Functions in tests/aws_e2e.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stratoflow.adapters.aws import handlers
from stratoflow.adapters.aws.handlers import (
    MalformedOutcome,
    S3Objects,
    parse_message,
    parse_outcome,
)
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.api import gateway
from stratoflow.engine import HELD_RETRY_ERROR, AttemptStatus, RunState, TaskState
from stratoflow.ports import Attempt, LogRange, Recovery
from stratoflow.service import Finished, Scheduler
from tests.fakes import FakeClock, RecordingDispatcher

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)

CHAIN = """
name: chain
tasks:
  first: {type: shell, command: "echo rows=3 >> $STRATOFLOW_OUTPUT"}
  second: {type: shell, depends_on: [first], command: "echo {{ tasks.first.outputs.rows }}"}
"""
FLAKY = """
name: flaky
tasks:
  job: {type: shell, command: exit 1, retries: 1, retry_delay: 30s}
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "state.db")
    yield opened
    opened.close()


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def scheduler(store: SqliteStore, dispatcher: RecordingDispatcher) -> Scheduler:
    s = Scheduler(store, store, dispatcher, FakeClock(T0), retry_lead=timedelta(days=366))
    s.apply(CHAIN)
    s.apply(FLAKY)
    return s


def outcome(run_id: str, task: str, attempt: int = 1, **extra: Any) -> dict[str, Any]:
    body = {"run_id": run_id, "task_id": task, "attempt": attempt, "status": "succeeded",
            "exit_code": 0, "error": None, "outputs": {}, "log": None}  # fmt: skip
    body.update(extra)
    return body


def sqs_event(*bodies: dict[str, Any] | str) -> dict[str, Any]:
    records = []
    for n, body in enumerate(bodies):
        text = body if isinstance(body, str) else json.dumps(body)
        records.append(
            {
                "messageId": f"m{n}",
                "receiptHandle": f"h{n}",
                "body": text,
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:results",
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


def no_s3(uri: str) -> Any:
    raise AssertionError(f"unexpected S3 read of {uri}")


def test_a_result_dispatches_the_child_with_its_outputs(
    scheduler: Scheduler, dispatcher: RecordingDispatcher
) -> None:
    run, _ = scheduler.trigger("default", "chain")
    scheduler.step()
    assert list(dispatcher.dispatched) == [(run.id, "first", 1)]
    seen: list[str] = []
    response = handlers.advance(
        scheduler,
        sqs_event(outcome(run.id, "first", outputs={"rows": "3"})),
        no_s3,
        on_report=lambda r: seen.append(r.run_id),
    )
    assert response == {"batchItemFailures": []}
    assert seen == [run.id]
    child = dispatcher.dispatched[(run.id, "second", 1)]
    assert child.task.fields["command"] == "echo 3"


def test_duplicated_and_reordered_messages_dispatch_nothing_twice(
    scheduler: Scheduler, dispatcher: RecordingDispatcher, store: SqliteStore
) -> None:
    run, _ = scheduler.trigger("default", "chain")
    scheduler.step()
    second = outcome(run.id, "second")
    first = outcome(run.id, "first", outputs={"rows": "3"})
    # the report of an attempt that was never dispatched arrives first: it changes nothing
    handlers.advance(scheduler, sqs_event(second), no_s3)
    assert (run.id, "second", 1) not in dispatcher.dispatched
    handlers.advance(scheduler, sqs_event(first, first), no_s3)
    handlers.advance(scheduler, sqs_event(first), no_s3)
    # RecordingDispatcher fails the test on any second dispatch of one key
    assert len(dispatcher.dispatched) == 2
    handlers.advance(scheduler, sqs_event(second, second), no_s3)
    assert store.get_run(run.id).state is RunState.SUCCEEDED


def test_a_malformed_message_is_reported_failed_and_the_rest_applied(
    scheduler: Scheduler, dispatcher: RecordingDispatcher, store: SqliteStore
) -> None:
    run, _ = scheduler.trigger("default", "chain")
    scheduler.step()
    response = handlers.advance(
        scheduler,
        sqs_event(
            "{not json",
            outcome(run.id, "first", outputs={"rows": "3"}),
            {"run_id": run.id, "status": "done"},
        ),
        no_s3,
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m2"}]}
    assert store.get_task(run.id, "first").state is TaskState.SUCCEEDED
    assert (run.id, "second", 1) in dispatcher.dispatched


def test_a_message_whose_apply_fails_is_retried_alone(
    scheduler: Scheduler, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = scheduler.trigger("default", "chain")
    other, _ = scheduler.trigger("default", "flaky")
    scheduler.step()
    real = store.finish_attempt

    def flaky_finish(attempt: Attempt) -> None:
        if attempt.run_id == other.id:
            raise ConnectionError("throttled")
        real(attempt)

    monkeypatch.setattr(store, "finish_attempt", flaky_finish)
    response = handlers.advance(
        scheduler, sqs_event(outcome(other.id, "job"), outcome(run.id, "first")), no_s3
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert store.get_task(run.id, "first").state is TaskState.SUCCEEDED
    assert store.get_task(other.id, "job").state is TaskState.RUNNING


def test_a_batch_of_outcomes_is_applied_as_one_turn(
    scheduler: Scheduler,
    dispatcher: RecordingDispatcher,
    store: SqliteStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every message of the batch in one ``Scheduler.advance`` (so a store that bills each
    decision writes a run's counters once per batch); a kick's run is claimed in it too."""
    run, _ = scheduler.trigger("default", "chain")
    other, _ = scheduler.trigger("default", "flaky")
    scheduler.step()
    real = scheduler.advance
    turns: list[tuple[list[tuple[str, str]], list[str]]] = []

    def counted(reports: Any, *, runs: Any = ()) -> None:
        reports, runs = list(reports), list(runs)
        turns.append(([(r.run_id, r.task_id) for r in reports], runs))
        real(reports, runs=runs)

    monkeypatch.setattr(scheduler, "advance", counted)
    seen: list[str] = []
    response = handlers.advance(
        scheduler,
        sqs_event(outcome(run.id, "first", outputs={"rows": "3"}), kick(other.id),
                  outcome(other.id, "job", status="failed", exit_code=1)),
        no_s3,
        on_report=lambda r: seen.append(r.run_id),
    )  # fmt: skip

    assert response == {"batchItemFailures": []}
    assert turns == [([(run.id, "first"), (other.id, "job")], [other.id])]
    assert seen == [run.id, other.id, other.id]
    assert (run.id, "second", 1) in dispatcher.dispatched
    # the retry was queued at once (retry_lead) and claimed in the same turn
    assert store.get_task(other.id, "job").attempt == 2
    assert (other.id, "job", 2) in dispatcher.dispatched


def test_a_failure_dispatches_the_retry_at_once_to_wait_in_the_state_machine(
    scheduler: Scheduler, dispatcher: RecordingDispatcher
) -> None:
    run, _ = scheduler.trigger("default", "flaky")
    scheduler.step()
    handlers.advance(
        scheduler, sqs_event(outcome(run.id, "job", status="failed", exit_code=1)), no_s3
    )
    retry = dispatcher.dispatched[(run.id, "job", 2)]
    assert retry.not_before == datetime(2026, 6, 1, 9, 0, 30, tzinfo=UTC)


def test_outputs_stored_in_s3_are_read_for_a_succeeded_attempt() -> None:
    uri = "s3://b/outputs/r/t/1.json"
    body = json.dumps(outcome("r", "t", outputs={}, outputs_uri=uri))
    finished = parse_outcome(body, lambda u: {"uri": u})
    assert finished.result.outputs == {"uri": uri}
    assert finished.result.status is AttemptStatus.SUCCEEDED
    failed = json.dumps(outcome("r", "t", status="failed", error="exit 2", outputs_uri=uri))
    assert parse_outcome(failed, no_s3).result.error == "exit 2"  # not read: nothing needs it


def test_missing_outputs_object_means_no_outputs() -> None:
    def missing(uri: str) -> Any:
        raise FileNotFoundError(uri)

    body = json.dumps(outcome("r", "t", outputs=None, outputs_uri="s3://b/o.json"))
    finished = parse_outcome(body, missing)
    assert finished.result.status is AttemptStatus.SUCCEEDED
    assert finished.result.outputs == {}


@pytest.mark.parametrize("stored", [ValueError("bad json"), ["not", "an", "object"]])
def test_unreadable_outputs_fail_a_succeeded_attempt(stored: Any) -> None:
    def read(uri: str) -> Any:
        if isinstance(stored, Exception):
            raise stored
        return stored

    body = json.dumps(outcome("r", "t", outputs_uri="s3://b/o.json"))
    finished = parse_outcome(body, read)
    assert finished.result.status is AttemptStatus.FAILED
    assert "s3://b/o.json" in (finished.result.error or "")


def test_a_lambda_tasks_non_object_result_is_wrapped() -> None:
    assert parse_outcome(json.dumps(outcome("r", "t", outputs=[1, 2])), no_s3).result.outputs == {
        "result": [1, 2]
    }
    assert parse_outcome(json.dumps(outcome("r", "t", outputs=None)), no_s3).result.outputs == {}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("[]", "body"),
        (json.dumps(outcome("r", "t", attempt=0)), "attempt"),
        (json.dumps(outcome("r", "t", status="exploded")), "status"),
        (json.dumps(outcome("", "t")), "run_id"),
    ],
)
def test_malformed_outcomes_name_the_problem(body: str, words: str) -> None:
    with pytest.raises(MalformedOutcome, match=words):
        parse_outcome(body, no_s3)


def kick(run_id: str) -> dict[str, Any]:
    return {"kind": "kick", "run_id": run_id}


def test_a_kick_dispatches_a_recorded_runs_roots_once(
    scheduler: Scheduler, dispatcher: RecordingDispatcher, store: SqliteStore
) -> None:
    # GIVEN a run recorded (started: its root queued) by a process that does not dispatch
    run, _ = scheduler.trigger("default", "chain")
    assert scheduler.take_runs_to_dispatch() == [run.id]
    assert scheduler.take_runs_to_dispatch() == []  # taken: a warm container does not pile them up
    assert store.get_task(run.id, "first").state is TaskState.QUEUED
    # WHEN advance receives its kick, twice in one batch and once more later
    seen: list[Any] = []
    response = handlers.advance(
        scheduler, sqs_event(kick(run.id), kick(run.id)), no_s3, on_report=seen.append
    )
    handlers.advance(scheduler, sqs_event(kick(run.id)), no_s3)
    # THEN the root is claimed and dispatched once (the fake fails on a second dispatch)
    assert response == {"batchItemFailures": []}
    assert seen == [handlers.Kick(run.id), handlers.Kick(run.id)]
    assert list(dispatcher.dispatched) == [(run.id, "first", 1)]
    assert store.get_task(run.id, "first").state is TaskState.RUNNING


def test_a_kick_of_an_unknown_run_changes_nothing(
    scheduler: Scheduler, dispatcher: RecordingDispatcher
) -> None:
    response = handlers.advance(scheduler, sqs_event(kick("no-such-run")), no_s3)
    assert response == {"batchItemFailures": []}
    assert dispatcher.dispatched == {}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"kind": "wake", "run_id": "r"}, 'unknown message kind "wake" \\(known: outcome, kick\\)'),
        ({"kind": ["x"], "run_id": "r"}, "unknown message kind"),
        ({"kind": "kick"}, "not a kick message \\(run_id: Field required"),
        ({"kind": "kick", "run_id": ""}, "not a kick message \\(run_id"),
        ({"kind": "kick", "run_id": "r", "task_id": "t"}, "not a kick message \\(task_id"),
        ({"kind": "outcome", "run_id": "r"}, "not an outcome message"),
    ],
)
def test_an_unknown_or_malformed_message_kind_is_named_and_goes_the_dlq_way(
    scheduler: Scheduler, body: dict[str, Any], words: str
) -> None:
    with pytest.raises(MalformedOutcome, match=words):
        parse_message(json.dumps(body), no_s3)
    response = handlers.advance(scheduler, sqs_event(body), no_s3)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m0"}]}


def test_an_outcome_may_say_its_kind() -> None:
    finished = parse_message(json.dumps({**outcome("r", "t"), "kind": "outcome"}), no_s3)
    assert isinstance(finished, Finished)
    assert (finished.run_id, finished.task_id) == ("r", "t")


class OneShotQueue:
    """A dead-letter queue holding ``bodies``: each is received once, deletes are recorded."""

    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.messages = [
            {"MessageId": f"d{n}", "ReceiptHandle": f"h{n}", "Body": json.dumps(b)}
            for n, b in enumerate(bodies)
        ]
        self.deleted: list[str] = []
        self.hidden: list[str] = []

    def receive_message(self, **_: Any) -> dict[str, Any]:
        got, self.messages = self.messages[:10], self.messages[10:]
        return {"Messages": got}

    def delete_message(self, *, QueueUrl: str, ReceiptHandle: str) -> None:
        self.deleted.append(ReceiptHandle)

    def change_message_visibility(self, *, ReceiptHandle: str, **_: Any) -> None:
        self.hidden.append(ReceiptHandle)


def test_a_dead_lettered_kick_is_replayed_like_advance_does(
    scheduler: Scheduler, dispatcher: RecordingDispatcher
) -> None:
    run, _ = scheduler.trigger("default", "chain")
    queue = OneShotQueue(kick(run.id), {"kind": "wake", "run_id": run.id})
    counts = handlers.replay_dead_letters(
        scheduler, handlers.DeadLetters(queue, "https://sqs/dlq", no_s3)
    )
    assert counts == {"replayed": 1, "poison": 1, "failed": 0}
    assert list(dispatcher.dispatched) == [(run.id, "first", 1)]
    assert (queue.deleted, queue.hidden) == (["h0"], ["h1"])


def test_reconcile_restarts_what_was_claimed_but_never_started(
    scheduler: Scheduler, dispatcher: RecordingDispatcher, store: SqliteStore
) -> None:
    run, _ = scheduler.trigger("default", "chain")
    # claimed (RUNNING) but the dispatch was lost: the fake's recover says it never started
    scheduler.step()
    dispatcher.dispatched.clear()
    first = store.get_task(run.id, "first")
    dispatcher.recover = lambda running: Recovery(  # type: ignore[method-assign]
        not_started=[t for t in running if t.task_id == "first"]
    )
    result = handlers.reconcile(scheduler)
    assert (run.id, "first", first.attempt) in dispatcher.dispatched
    assert result == {
        "next_wakeup": None, "plans_completed": 0, "dead_letters": {}, "catchups": 0,
        "audit_intents_settled": 0,
    }  # fmt: skip


def test_run_id_of_path() -> None:
    assert handlers.run_id_of_path("/runs/abc-1/tasks/x/attempts/1/log") == "abc-1"
    assert handlers.run_id_of_path("/runs/a%2Fb") == "a/b"
    assert handlers.run_id_of_path("/runs") is None
    assert handlers.run_id_of_path("/workflows/x/runs") is None


@mock_aws
def test_s3_objects_reads_logs_and_outputs() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="art")
    s3.put_object(Bucket="art", Key="logs/r/t/1.log", Body="héllo\n".encode())
    s3.put_object(Bucket="art", Key="logs/r/t/2.log", Body=b"")
    s3.put_object(Bucket="art", Key="outputs/r/t/1.json", Body=b'{"rows": "3"}')
    objects = S3Objects(s3)

    def attempt(log: str | None) -> Attempt:
        return Attempt("r", "t", 1, "succeeded", started_at=T0, log=log)

    hello = attempt("s3://art/logs/r/t/1.log")
    assert objects.read_log(hello, 0, 100) == LogRange("héllo\n".encode(), 0, 7)
    assert objects.read_log(hello, 1, 2) == LogRange("é".encode(), 1, 7)
    assert objects.read_log(hello, 7, 100) == LogRange(b"", 7, 7)  # at the end: nothing more
    assert objects.read_log(hello, 50, 100) == LogRange(b"", 7, 7)
    assert objects.read_log(attempt("s3://art/logs/r/t/2.log"), 0, 100) == LogRange(b"", 0, 0)
    assert objects.read_log(attempt("s3://art/logs/r/t/3.log"), 0, 100) is None
    # ended with an exit code and no object: the runner printed nothing and skipped the PUT
    ended = Attempt("r", "t", 3, "succeeded", started_at=T0, exit_code=0,
                    log="s3://art/logs/r/t/3.log")  # fmt: skip
    assert objects.read_log(ended, 0, 100) == LogRange(b"", 0, 0)
    assert objects.read_log(attempt("/tmp/local.log"), 0, 100) is None
    assert objects.read_log(attempt(None), 0, 100) is None
    assert objects.read_log(attempt("s3://art"), 0, 100) is None
    assert objects.read_json("s3://art/outputs/r/t/1.json") == {"rows": "3"}
    with pytest.raises(FileNotFoundError):
        objects.read_json("s3://art/outputs/r/t/2.json")


@mock_aws
def test_a_log_page_is_one_ranged_get_however_long_the_log() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="art")
    s3.put_object(Bucket="art", Key="big.log", Body=b"0123456789" * 100_000)
    ranges: list[str] = []
    s3.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: ranges.append(params["headers"]["Range"])
    )
    log = Attempt("r", "t", 1, "running", started_at=T0, log="s3://art/big.log")

    window = S3Objects(s3).read_log(log, 999_990, 4)

    assert window == LogRange(b"0123", 999_990, 1_000_000)
    assert ranges == ["bytes=999990-999993"]


def test_the_api_authenticator_follows_the_stacks_auth_mode() -> None:
    from stratoflow.adapters.aws.settings import SettingsError
    from stratoflow.errors import InvalidInput

    iam = gateway.api_authenticator(
        {"STRATOFLOW_AUTH_MODE": "IAM", "STRATOFLOW_IAM_ROLE_MAP": '{"arn:x": "superuser"}'}
    )
    cognito = gateway.api_authenticator({"STRATOFLOW_AUTH_MODE": "cognito"})
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    signed = APIGatewayProxyEvent({"requestContext": {"identity": {"userArn": "arn:x"}}})
    assert iam(signed).superuser
    claimed = APIGatewayProxyEvent(
        {"requestContext": {"authorizer": {"claims": {"cognito:username": "ana",
                                                      "cognito:groups": "default.viewer"}}}}
    )  # fmt: skip
    who = cognito(claimed)
    assert who.name == "ana"
    assert not who.superuser
    with pytest.raises(SettingsError, match="STRATOFLOW_AUTH_MODE must be one of IAM, COGNITO"):
        gateway.api_authenticator({})
    with pytest.raises(SettingsError, match="not 'NONE'"):
        gateway.api_authenticator({"STRATOFLOW_AUTH_MODE": "none"})
    with pytest.raises(InvalidInput, match="role_map"):
        gateway.api_authenticator({"STRATOFLOW_AUTH_MODE": "IAM", "STRATOFLOW_IAM_ROLE_MAP": "["})


def test_the_api_refuses_events_that_did_not_come_through_its_gateway() -> None:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    from stratoflow.adapters.aws.settings import SettingsError
    from stratoflow.auth import Unauthenticated

    env = {
        "STRATOFLOW_AUTH_MODE": "IAM",
        "STRATOFLOW_IAM_ROLE_MAP": '{"arn:aws:iam::123456789012:role/Ops": "superuser"}',
        "STRATOFLOW_API_ID": "abc123",
        "STRATOFLOW_API_STAGE": "v1",
    }
    ops = "arn:aws:sts::123456789012:assumed-role/Ops/s"
    good = {"apiId": "abc123", "stage": "v1",
            "identity": {"userArn": ops, "accountId": "123456789012"}}  # fmt: skip
    check = gateway.api_gateway_check(env)
    assert check({"requestContext": good}) is None
    assert "apiId" in str(check({"requestContext": {**good, "apiId": "other"}}))
    assert "stage" in str(check({"requestContext": {**good, "stage": "dev"}}))
    assert "no requestContext" in str(check({}))
    assert "userArn and accountId" in str(
        check({"requestContext": {**good, "identity": {"userArn": ops}}})
    )

    authenticate = gateway.api_authenticator(env)
    assert authenticate(APIGatewayProxyEvent({"requestContext": good})).superuser
    with pytest.raises(Unauthenticated, match="apiId"):
        authenticate(APIGatewayProxyEvent({"requestContext": {"identity": {"userArn": ops}}}))

    cognito = gateway.api_gateway_check({**env, "STRATOFLOW_AUTH_MODE": "COGNITO"})
    claims = {"authorizer": {"claims": {"cognito:username": "ana"}}}
    assert cognito({"requestContext": {"apiId": "abc123", "stage": "v1", **claims}}) is None
    assert "Cognito claims" in str(cognito({"requestContext": {"apiId": "abc123", "stage": "v1"}}))

    # outside Lambda without an API id (local tests): nothing checked; inside Lambda: refused
    assert gateway.api_gateway_check({})({}) is None
    with pytest.raises(SettingsError, match="STRATOFLOW_API_ID"):
        gateway.api_gateway_check({"AWS_LAMBDA_FUNCTION_NAME": "stratoflow-api"})


def test_a_held_outcome_is_a_stopped_attempt_that_keeps_its_retry() -> None:
    """The runner of a retry found its run paused at the end of the delay: it started
    nothing (``runner.run_paused``)."""
    body = json.dumps(outcome("r", "t", status="held", error="not started"))
    finished = parse_outcome(body, no_s3)
    assert finished.result.status is AttemptStatus.STOPPED  # the attempt's record
    assert finished.result.held
    assert finished.result.error == HELD_RETRY_ERROR
    plain = parse_outcome(json.dumps(outcome("r", "t", status="stopped")), no_s3)
    assert not plain.result.held


def test_an_outcome_of_a_status_advance_does_not_know_is_named_and_only_it_goes_the_dlq_way(
    scheduler: Scheduler, dispatcher: RecordingDispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    """A runner newer than ``advance`` (an update or a rollback under way) may send a status
    this version does not know: the log says which and why it likely came; the message fails
    alone (SQS's redrive moves it to the DLQ after ``maxReceiveCount``, no endless retry),
    and the other outcomes of its batch are applied."""
    run, _ = scheduler.trigger("default", "chain")
    scheduler.step()
    unknown = outcome(run.id, "second", status="deferred")
    with caplog.at_level("WARNING", logger="stratoflow.handlers"):
        response = handlers.advance(
            scheduler, sqs_event(outcome(run.id, "first", outputs={"rows": "3"}), unknown), no_s3
        )
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert (run.id, "second", 1) in dispatcher.dispatched  # the good one was applied
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert 'unknown outcome status "deferred" (known: succeeded, failed, timed_out,' in warning
    assert "newer runner" in warning


def _sent_statuses() -> set[str]:
    """Every status literal the runner, the EKS reporter and the state machine write into
    an outcome (the runner's file outcomes: ``outcome_from_files``, succeeded or failed)."""
    root = Path(__file__).resolve().parents[2]
    sources = [
        root / "layers/core/stratoflow/adapters/aws/runner.py",
        root / "layers/core/stratoflow/adapters/aws/eks_reporter.sh",
        root / "statemachines/task_attempt.asl.json",
    ]
    found = set()
    for source in sources:
        found |= set(re.findall(r'"status":\s*"(\w+)"', source.read_text()))
    return found


def test_advance_knows_every_status_the_runner_and_the_state_machine_send() -> None:
    sent = _sent_statuses()
    assert {"succeeded", "failed", "timed_out", "stopped", "held"} <= sent
    # a Redshift statement still running loops in the state machine, never reported
    asl = json.loads((Path(__file__).resolve().parents[2] / "statemachines/task_attempt.asl.json")
                     .read_text())["States"]  # fmt: skip
    (loop,) = asl["RedshiftStatementEnded"]["Choices"]
    assert (loop["StringEquals"], loop["Next"]) == ("running", "WaitForRedshiftStatement")
    for status in sorted(sent - {"running"}):
        finished = parse_outcome(json.dumps(outcome("r", "t", status=status)), no_s3)
        assert finished.result.held is (status == "held"), status
