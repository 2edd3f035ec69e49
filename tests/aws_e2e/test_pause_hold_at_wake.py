"""A pause during a retry's delay holds the retry even when the pause's own hold never
happens: the api function dies after writing the run paused, or its write of the hold fails.

On AWS every retry is claimed at once and its execution waits out the delay in the state
machine (``Wait_<target>``); the pause is two steps, the run's write and then the hold of its
waiting retries (``Scheduler._hold_early_retries``). Without the second, the execution wakes
after the delay with its task still RUNNING at its attempt, so the runner's stop watch lets it
start, and the task runs while its run is paused. The runner now looks at the run too when
its attempt waited (``runner.run_paused``), starts nothing and reports ``held``; ``advance``
takes the claim back, and the resume runs the retry, once.

The real state machine (moto) carries the runner's outcome to the results queue; the runner
function is the real one with the real table (its stop watch and its look at the run)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stratoflow.adapters.aws import runner as aws_runner
from tests.aws_e2e.harness import Stack, aws_stack
from tests.aws_e2e.test_pause_and_warn_gaps import trigger, waiting_in_its_delay

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]


class ProcessDied(BaseException):
    """The api function's process ends here (Lambda's container dies): nothing after runs."""


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        yield built


def flaky(started: Path) -> str:
    """Its first attempt fails; every attempt that really starts appends its number. Its
    retry waits 6 s: the pause must land inside that delay (2 s was overrun on a loaded CI
    machine, and the retry then ran, as it should for a pause that came after it)."""
    command = f'echo "$STRATOFLOW_ATTEMPT" >> {started}; test "$STRATOFLOW_ATTEMPT" -gt 1'
    return f"""
name: retrying
tasks:
  flaky: {{type: shell, command: '{command}', retries: 1, retry_delay: 6s}}
"""


def with_runner_watching(stack: Stack, source: str) -> None:
    """The workflow applied, its attempts run by the runner function as deployed: with the
    state table (its stop watch, its look at a retry's run)."""
    stack.apply_with_runner(source)
    s3 = stack.counted_client("s3")
    dynamodb = stack.counted_client("dynamodb")
    table = stack.settings.table
    stack.lambdas.handlers["RunnerFunction"] = lambda attempt: aws_runner.handle(
        attempt, None, s3=s3, dynamodb=dynamodb, table=table
    )


def started_attempts(started: Path) -> list[int]:
    return [int(line) for line in started.read_text().split()] if started.exists() else []


def paused_in_the_delay(stack: Stack, started: Path, fault: Callable[[], None]) -> str:
    """Trigger; once the retry waits out its delay, arm ``fault`` and pause the run."""
    with_runner_watching(stack, flaky(started))
    run_id = trigger(stack, "retrying")
    stack.pump(lambda: len(stack.starts) == 2, timeout=30)
    waiting_in_its_delay(stack)
    assert started_attempts(started) == [1]
    fault()
    with contextlib.suppress(ProcessDied):
        stack.api("POST", f"/runs/{run_id}/pause")
    assert stack.run_state(run_id) == "paused"
    return run_id


def then_held_until_the_resume(stack: Stack, run_id: str, started: Path) -> None:
    # WHEN the delay runs out (its execution ends) and its outcome is applied
    stack.wait_executions()
    stack.pump(lambda: not stack.receive_peek(), timeout=10)
    # THEN the retry did not start while the run is paused
    assert stack.run_state(run_id) == "paused"
    assert started_attempts(started) == [1]
    assert stack.task_state(run_id, "flaky") == "up_for_retry"
    # and after the resume it runs, once, with the try it had
    status, _ = stack.api("POST", f"/runs/{run_id}/resume")
    assert status == 200
    stack.deliver_kicks()
    assert stack.run_ends(run_id, timeout=30) == "succeeded"
    assert started_attempts(started) == [1, 3]
    tries = [(a.attempt, a.state) for a in stack.observer.list_attempts(run_id, "flaky")]
    assert tries == [(1, "failed"), (2, "stopped"), (3, "succeeded")], tries
    held = stack.observer.list_attempts(run_id, "flaky")[1]
    assert held.error is not None
    assert held.error.startswith("not started: its run was paused"), held.error


def test_the_process_dies_between_the_pause_and_its_hold(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = tmp_path / "started"
    api = stack.functions["api"].function.scheduler

    def dies(*_: Any) -> None:
        raise ProcessDied

    run_id = paused_in_the_delay(
        stack, started, lambda: monkeypatch.setattr(api, "_hold_early_retries", dies)
    )
    then_held_until_the_resume(stack, run_id, started)


def test_the_write_of_the_hold_fails(stack: Stack, tmp_path: Path) -> None:
    started = tmp_path / "started"
    armed = {"writes": 0}

    def fail_the_second_write(**_: Any) -> None:
        if armed["writes"] < 0:
            return
        armed["writes"] += 1
        if armed["writes"] == 2:  # the first is the run's; then the hold's
            armed["writes"] = -1
            raise ClientError(
                {
                    "Error": {
                        "Code": "ProvisionedThroughputExceededException",
                        "Message": "injected",
                    }
                },
                "TransactWriteItems",
            )

    def arm() -> None:
        events = stack.functions["api"].function.clients.dynamodb.meta.events
        for call in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"):
            events.register(f"before-call.dynamodb.{call}", fail_the_second_write)

    run_id = paused_in_the_delay(stack, started, arm)
    assert armed["writes"] == -1, "the hold made no second write"
    then_held_until_the_resume(stack, run_id, started)


FLAKY_BATCH = """
name: flaky_batch
tasks:
  crunch:
    type: batch
    image: public.ecr.aws/docker/library/busybox:latest
    command: ["sh", "-c", "exit 3"]
    retries: 1
    retry_delay: 2s
"""


def test_a_batch_retry_is_not_sent_early_so_a_pause_that_died_still_holds_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Batch job has no runner to look at its run when the delay ends: its retry is not
    claimed early (``looks_before_start``) but waits ``up_for_retry``, its run woken when it
    is due (a delayed kick); a paused run claims nothing, whatever the pause did not do."""
    stack.batch.plan["crunch"] = ["failed", "succeeded"]
    status, body = stack.api("POST", "/workflows", {"source": FLAKY_BATCH})
    assert status in (200, 201), body
    run_id = trigger(stack, "flaky_batch")
    stack.pump(lambda: stack.task_state(run_id, "crunch") == "up_for_retry", timeout=30)
    assert len(stack.batch.submitted) == 1
    assert len(stack.starts) == 1  # its retry has no execution waiting
    api = stack.functions["api"].function.scheduler

    def dies(*_: Any) -> None:
        raise ProcessDied

    monkeypatch.setattr(api, "_hold_early_retries", dies)
    with contextlib.suppress(ProcessDied):
        stack.api("POST", f"/runs/{run_id}/pause")
    assert stack.run_state(run_id) == "paused"
    # the wake comes when the delay has run out (a delayed kick): nothing is claimed
    assert queued(stack, "ApproximateNumberOfMessagesDelayed") == 1
    stack.pump(
        lambda: (
            queued(stack, "ApproximateNumberOfMessagesDelayed") == 0 and not stack.receive_peek()
        ),
        timeout=10,
    )
    assert len(stack.starts) == 1
    assert len(stack.batch.submitted) == 1
    assert stack.run_state(run_id) == "paused"
    # the wake queued it, as the local loop does once it is due; a paused run claims nothing
    assert stack.task_state(run_id, "crunch") == "queued"
    status, _ = stack.api("POST", f"/runs/{run_id}/resume")
    assert status == 200
    stack.deliver_kicks()
    assert stack.run_ends(run_id, timeout=30) == "succeeded"
    assert len(stack.batch.submitted) == 2
    tries = [(a.attempt, a.state) for a in stack.observer.list_attempts(run_id, "crunch")]
    assert tries == [(1, "failed"), (2, "succeeded")], tries


def queued(stack: Stack, attribute: str) -> int:
    got = stack.sqs.get_queue_attributes(
        QueueUrl=stack.settings.results_queue_url, AttributeNames=[attribute]
    )
    return int(got["Attributes"][attribute])
