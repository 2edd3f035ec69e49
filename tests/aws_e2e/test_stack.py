"""End to end on moto: the real state machine, the real handlers, DynamoDB, SQS, S3.

See harness.py for what stands in for compute (Lambda code, Batch containers) and for the SQS
event source mapping, and why."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stratoflow.adapters.aws import runner as aws_runner
from tests.aws_e2e.harness import VIEWER_SESSION, Stack, aws_stack

pytestmark = [
    pytest.mark.slow,
    # an invocation that changed no run emits no metric; Powertools warns about that
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

MIXED = """
name: mixed
tasks:
  extract:
    type: batch
    image: public.ecr.aws/docker/library/busybox:latest
    command: ["sh", "-c", "echo extracting"]
  enrich:
    type: lambda
    depends_on: [extract]
    function: UserFunction
    payload: {rows: 3}
  report:
    type: shell
    depends_on: [enrich]
    command: "echo {{ tasks.enrich.outputs.doubled }}"
"""

FLAKY_BATCH = """
name: flaky_batch
tasks:
  crunch:
    type: batch
    image: public.ecr.aws/docker/library/busybox:latest
    command: ["sh", "-c", "exit 3"]
    retries: 1
    retry_delay: 1s
  after: {type: shell, depends_on: [crunch], command: echo never}
"""

ROUTED = """
name: routed
tasks:
  count: {type: shell, command: "echo n=10 >> $STRATOFLOW_OUTPUT"}
  route:
    type: switch
    depends_on: [count]
    cases:
      - when: "{{ tasks.count.outputs.n | int > 5 }}"
        next: [big]
    default: [small]
  big: {type: shell, depends_on: [route], command: echo big}
  small: {type: shell, depends_on: [route], command: echo small}
"""

LONG_BATCH = """
name: long_batch
tasks:
  long:
    type: batch
    image: public.ecr.aws/docker/library/busybox:latest
    command: ["sleep", "3600"]
  after: {type: shell, depends_on: [long], command: echo after}
"""

CHAIN = """
name: chain
tasks:
  a: {type: shell, command: echo a}
  b: {type: shell, depends_on: [a], command: echo b}
  c: {type: shell, depends_on: [a], command: echo c}
  d: {type: shell, depends_on: [b, c], command: echo d}
"""

NIGHTLY = """
name: nightly
schedule: {cron: "0 2 * * *"}
tasks:
  only: {type: shell, command: echo nightly}
"""


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        yield built


def runner(stack: Stack) -> None:
    """The runner function's code, run in-process on each invocation moto receives (moto runs
    no Lambda code): it runs the shell task for real, uploads its log to S3 and returns the
    outcome the state machine reports."""
    s3 = stack.counted_client("s3")
    stack.lambdas.handlers["RunnerFunction"] = lambda attempt: aws_runner.handle(
        attempt, None, s3=s3
    )


def apply(stack: Stack, text: str) -> None:
    status, body = stack.api("POST", "/workflows", {"source": text})
    assert status in (200, 201), body


def trigger(stack: Stack, name: str) -> str:
    """A run through the api, its first tasks dispatched by ``advance`` (the api's kick)."""
    status, body = stack.api("POST", f"/workflows/{name}/runs", {})
    assert status == 201, body
    assert stack.deliver_kicks() == 1
    return str(body["run"]["id"])


def tasks_of(stack: Stack, run_id: str) -> dict[str, dict[str, Any]]:
    status, detail = stack.api("GET", f"/runs/{run_id}")
    assert status == 200, detail
    return dict(detail["tasks"])


def emitted_metrics(text: str) -> dict[str, float]:
    """Sum of every metric in the EMF documents Powertools printed."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        doc = json.loads(line)
        for metric in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            values = doc[metric["Name"]]
            values = values if isinstance(values, list) else [values]
            sums[metric["Name"]] = sums.get(metric["Name"], 0) + sum(values)
    return sums


def test_batch_lambda_and_shell_tasks_run_from_trigger_to_succeeded(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    runner(stack)
    stack.lambdas.handlers["UserFunction"] = lambda payload: {"doubled": payload["rows"] * 2}
    apply(stack, MIXED)
    run_id = trigger(stack, "mixed")
    assert stack.run_ends(run_id) == "succeeded"
    # the lambda task's result reached the shell task's template through the real ASL path
    runner_inputs = [p for name, p in stack.lambdas.calls if name == "RunnerFunction"]
    assert [p["task"]["command"] for p in runner_inputs] == ["echo 6"]
    assert [name for name, _ in stack.batch.submitted] == [
        n for n in stack.starts if "-extract-" in n
    ]
    assert len(stack.starts) == 3
    assert set(stack.starts.values()) == {1}
    assert set(stack.wait_executions().values()) == {"SUCCEEDED"}
    tasks = tasks_of(stack, run_id)
    assert {t: v["state"] for t, v in tasks.items()} == {
        "extract": "succeeded", "enrich": "succeeded", "report": "succeeded",
    }  # fmt: skip
    assert tasks["enrich"]["outputs"] == {"doubled": 6}
    # the shell task's log, written to S3 by the runner, read back through the API
    path = f"/runs/{run_id}/tasks/report/attempts/1/log"
    status, text = stack.api("GET", path)
    assert (status, text) == (200, "6\n")
    status, rest = stack.api("GET", path, query={"offset": "1"})
    assert (status, rest) == (200, "\n")
    stack.publish_lifecycle()  # the run counters come from the lifecycle function
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["RunsStarted"] == 1
    assert metrics["RunsSucceeded"] == 1
    assert metrics["AttemptsDispatched"] == 3
    assert metrics["DispatchLatency"] > 0
    assert "RunsFailed" not in metrics


def test_the_api_knows_its_callers_from_iam(stack: Stack) -> None:
    runner(stack)
    apply(stack, CHAIN)
    status, body = stack.api("POST", "/workflows/chain/runs", {}, caller=VIEWER_SESSION)
    assert status == 403, body
    status, body = stack.api("GET", "/workflows", caller=VIEWER_SESSION)
    assert status == 200, body
    stranger = "arn:aws:sts::123456789012:assumed-role/Stranger/x"
    status, body = stack.api("GET", "/workflows", caller=stranger)
    assert status == 401, body
    assert "Stranger" in body["message"]
    assert stack.starts == {}


def test_a_failing_batch_job_is_retried_then_fails_the_run(stack: Stack) -> None:
    runner(stack)
    events = stack.subscribe_lifecycle_events()
    stack.batch.plan["crunch"] = ["failed", "failed"]
    apply(stack, FLAKY_BATCH)
    run_id = trigger(stack, "flaky_batch")
    assert stack.run_ends(run_id) == "failed"
    # what alerts subscribe to: the lifecycle events on the bus, through a real rule
    kinds = sorted((e["detail-type"], e["detail"].get("task_id") or "") for e in events())
    assert kinds == [
        ("Run Failed", ""), ("Run Started", ""), ("Task Failed", "crunch"),
        ("Task Retrying", "crunch"),
    ]  # fmt: skip
    tasks = tasks_of(stack, run_id)
    assert tasks["crunch"]["state"] == "failed"
    assert tasks["crunch"]["attempts"] == 2
    assert tasks["after"]["state"] == "upstream_failed"
    assert len(stack.batch.submitted) == 2
    retry = [n for n in stack.starts if "-crunch-2-" in n]
    assert len(retry) == 1
    assert len(stack.starts) == 2
    assert set(stack.starts.values()) == {1}
    # the retry waited out its delay up_for_retry and was dispatched when due, not at once
    # in the state machine's Wait: no runner looks at its run before a Batch job starts
    # (``looks_before_start``), so a pause that failed to hold it could not stop it
    first_input = stack.execution_input(next(n for n in stack.starts if "-crunch-1-" in n))
    second_input = stack.execution_input(retry[0])
    assert first_input["not_before"] is None
    assert "start_at" not in second_input
    assert stack.lambdas.calls == []


def test_a_switch_skips_the_branch_it_did_not_choose(stack: Stack) -> None:
    runner(stack)
    apply(stack, ROUTED)
    run_id = trigger(stack, "routed")
    assert stack.run_ends(run_id) == "succeeded"
    states = {t: v["state"] for t, v in tasks_of(stack, run_id).items()}
    assert states == {"count": "succeeded", "route": "succeeded", "big": "succeeded",
                      "small": "skipped"}  # fmt: skip
    # the switch is decided by the scheduler: only count and big ran as executions
    assert sorted(n.split("-")[-3] for n in stack.starts) == ["big", "count"]


def test_stop_during_a_running_batch_task_stops_the_run_and_its_execution(stack: Stack) -> None:
    runner(stack)
    stack.batch.plan["long"] = ["hold"]
    apply(stack, LONG_BATCH)
    run_id = trigger(stack, "long_batch")
    stack.pump(lambda: len(stack.batch.submitted) == 1, timeout=30)
    (name,) = stack.starts
    assert stack.executions()[name] == "RUNNING"
    status, body = stack.api("POST", f"/runs/{run_id}/stop")
    assert status == 200, body
    assert body["state"] == "stopped"
    assert stack.wait_executions()[name] == "ABORTED"
    # the job ends late (moto does not terminate a .sync job when its execution stops):
    # nothing reports it any more, and nothing starts after the stop
    stack.batch.finish(name, success=True)
    stack.pump(lambda: not stack.receive_peek(), timeout=5)
    assert stack.run_state(run_id) == "stopped"
    assert stack.task_state(run_id, "long") == "stopped"
    assert stack.task_state(run_id, "after") != "succeeded"
    assert list(stack.starts) == [name]
    assert stack.lambdas.calls == []


def test_duplicated_and_reordered_advance_events_dispatch_nothing_twice(stack: Stack) -> None:
    runner(stack)
    apply(stack, CHAIN)
    run_id = trigger(stack, "chain")
    seen: list[dict[str, Any]] = []

    def done() -> bool:
        return stack.run_state(run_id) in ("succeeded", "failed")

    while not done():
        stack.wait_messages(done)
        if done():
            break
        fresh = stack.receive()
        # every batch: the new messages twice, then all earlier ones again, newest first
        batch = fresh + fresh + list(reversed(seen))
        for start in range(0, len(batch), 10):
            stack.deliver(batch[start : start + 10])
        seen.extend(fresh)
    assert stack.run_state(run_id) == "succeeded"
    assert len(seen) == 4
    assert len(stack.starts) == 4
    assert set(stack.starts.values()) == {1}
    calls = [p["task_id"] for name, p in stack.lambdas.calls if name == "RunnerFunction"]
    assert sorted(calls) == ["a", "b", "c", "d"]


def test_a_schedule_firing_twice_creates_one_run(stack: Stack) -> None:
    runner(stack)
    apply(stack, NIGHTLY)
    schedule = stack.scheduler_client.get_schedule(
        Name="default.nightly", GroupName=stack.settings.schedule_group
    )
    assert schedule["Target"]["Arn"] == stack.settings.trigger_function_arn
    firing = {"project": "default", "workflow": "nightly",
              "scheduled_time": "2026-11-21T02:00:00Z"}  # fmt: skip
    first = stack.call("trigger", firing)
    second = stack.call("trigger", firing)
    assert first["created"] is True
    assert second == {"run_id": first["run_id"], "created": False}
    assert stack.run_ends(first["run_id"]) == "succeeded"
    status, page = stack.api("GET", "/runs", query={"workflow": "nightly"})
    assert status == 200
    assert [r["id"] for r in page["runs"]] == [first["run_id"]]
    assert page["runs"][0]["logical_date"].startswith("2026-11-21T02:00:00")
    assert len(stack.starts) == 1
    assert set(stack.starts.values()) == {1}


def test_a_run_id_repeated_with_other_params_is_a_conflict_on_dynamodb(stack: Stack) -> None:
    """The api function shares the local API's idempotency rule: the same key and request
    get the run back; other params, a 409 naming the run and the param, and nothing else."""
    apply(stack, NIGHTLY.replace("schedule:", "params: {x: '1'}\nschedule:"))
    body = {"run_id": "myrun1", "params": {"x": "1"}}
    status, first = stack.api("POST", "/workflows/nightly/runs", body)
    assert status == 201, first
    status, again = stack.api("POST", "/workflows/nightly/runs", body)
    assert status == 200, again
    status, error = stack.api("POST", "/workflows/nightly/runs", {**body, "params": {"x": "999"}})
    assert status == 409, error
    assert "'default.nightly.myrun1'" in error["message"]
    assert "params.x" in error["message"]
    status, run = stack.api("GET", "/runs/default.nightly.myrun1")
    assert status == 200, run
    assert run["run"]["params"] == {"x": "1"}
    status, page = stack.api("GET", "/runs", query={"workflow": "nightly"})
    assert [r["id"] for r in page["runs"]] == ["default.nightly.myrun1"]


def test_a_garbled_firing_is_rejected_without_a_run(stack: Stack) -> None:
    result = stack.call("trigger", {"project": "default", "scheduled_time": "yesterday"})
    assert result["created"] is False
    assert result["run_id"] is None
    assert "workflow" in result["error"]
    assert "scheduled_time" in result["error"]


def test_the_reconciler_starts_an_attempt_whose_dispatch_was_lost(stack: Stack) -> None:
    runner(stack)
    apply(stack, CHAIN)
    stack.fail_next_start_execution()
    status, body = stack.api("POST", "/workflows/chain/runs", {})
    assert status == 201, body
    run_id = stack.only_run("chain")
    # advance claims the first task from the api's kick; the dispatch after it fails, so the
    # kick is reported failed (SQS brings it back; by then nothing is queued: it does nothing)
    [kick] = stack.receive()
    assert stack.deliver([kick])["batchItemFailures"] == [{"itemIdentifier": kick["MessageId"]}]
    assert stack.task_state(run_id, "a") == "running"
    assert stack.executions() == {}
    stack.call("reconciler", {})
    stack.call("reconciler", {})  # idempotent: the second finds the execution running
    assert stack.run_ends(run_id) == "succeeded"
    assert len(stack.starts) == 4
    assert max(stack.starts.values()) == 2  # a's name: the failed request, then the repair
    assert set(stack.executions().values()) == {"SUCCEEDED"}


def test_a_malformed_outcome_goes_to_the_dead_letter_queue_not_round_and_round(
    stack: Stack,
) -> None:
    runner(stack)
    apply(stack, CHAIN)
    run_id = trigger(stack, "chain")
    queue = stack.settings.results_queue_url
    stack.sqs.send_message(QueueUrl=queue, MessageBody='{"run_id": "r", "status": "exploded"}')
    assert stack.run_ends(run_id) == "succeeded"  # the good messages went through around it
    dlq = queue + "-dlq"
    moved: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while not moved and time.monotonic() < deadline:
        # each receive of it is reported failed; after maxReceiveCount (3) SQS moves it
        messages = stack.receive()
        if messages:
            response = stack.deliver(messages)
            assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
                m["MessageId"] for m in messages
            ]
        moved = stack.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0).get("Messages", [])
        time.sleep(0.3)
    assert [json.loads(m["Body"])["status"] for m in moved] == ["exploded"]
    assert stack.receive_peek() == 0


SHORT = """
name: short
tasks:
  a: {type: shell, command: echo a, timeout: 30s, retries: 1, retry_delay: 0}
"""


class _Later:
    """The reconciler's clock, moved past the attempt's deadline plus the timeout grace."""

    def __init__(self, by: timedelta) -> None:
        self.by = by

    def now(self) -> datetime:
        return datetime.now(UTC) + self.by


def test_a_short_shell_attempt_runs_on_express_in_three_transitions(stack: Stack) -> None:
    runner(stack)
    apply(stack, SHORT)
    run_id = trigger(stack, "short")
    assert stack.run_ends(run_id) == "succeeded"
    assert list(stack.express_executions().values()) == ["SUCCEEDED"]
    (history,) = stack.histories()
    entered = [e["type"] for e in history if e["type"].endswith("StateEntered")]
    assert len(entered) == 3
    # the runner printed "a": its log is in S3 and the API serves it
    status, text = stack.api("GET", f"/runs/{run_id}/tasks/a/attempts/1/log")
    assert (status, text) == (200, "a\n")


def test_an_express_attempt_whose_report_is_lost_times_out_and_is_retried(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DescribeExecution cannot see Express executions, so recover() must not take a missing
    Standard execution for "never started" when the attempt may be on Express (starting it
    again could run it twice: Express does not deduplicate names). The deadline path repairs
    it instead: the reconciler's step() times the attempt out and the engine retries it.
    A lost report is simulated by taking the outcome off the queue undelivered (what an
    Express execution killed at its 5-minute limit leaves behind)."""
    runner(stack)
    apply(stack, SHORT)
    run_id = trigger(stack, "short")
    stack.wait_messages(lambda: False)
    lost = stack.receive()  # the report of attempt 1: taken off the queue, never delivered
    assert [json.loads(m["Body"])["attempt"] for m in lost] == [1]
    for m in lost:
        stack.sqs.delete_message(
            QueueUrl=stack.settings.results_queue_url, ReceiptHandle=m["ReceiptHandle"]
        )
    stack.call("reconciler", {})  # recover() + step() now: nothing to do yet
    assert len(stack.express_executions()) == 1
    assert stack.task_state(run_id, "a") == "running"
    reconciler = stack.functions["reconciler"].function.scheduler
    reconciler.clock = _Later(timedelta(minutes=3))  # 30 s timeout + 2 min grace, passed
    # the retry's hold until attempt 1's runner is surely gone (tests/aws/test_timeout_retry.py)
    # would count from that clock, 3 minutes ahead of the state machine's Wait: this test is
    # about repairing the lost report, so no hold here
    monkeypatch.setattr(reconciler.dispatcher, "timed_out_grace", lambda *a, **k: timedelta(0))
    stack.call("reconciler", {})
    status, view = stack.api("GET", f"/runs/{run_id}/tasks/a")
    assert status == 200, view
    # the turn that timed attempt 1 out also queued and dispatched attempt 2 (the state
    # machine waits out the retry delay itself), so nothing waits for the next pass
    assert (view["state"], view["attempts"], view["history"][0]["state"]) == (
        "running",
        2,
        "timed_out",
    )
    assert stack.run_ends(run_id) == "succeeded"
    assert len(stack.express_executions()) == 2  # attempt 2 ran, attempt 1 was never redone
