"""Templates render outside the request path on AWS too (issue 9, item 1), end to end on moto.

The api function (a trigger, a rerun) and the trigger function (a schedule's firing) record
the run, the engine's start plan, and kick ``advance`` through the results queue; they never
claim, render or start a task. ``advance`` renders: a poison template fails its task there
with the message naming the bound it hit, and the request has long been answered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from stratoflow import engine
from tests.aws_e2e.harness import Stack, aws_stack, count_requests

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

POISON = """
name: poison
schedule: {cron: "0 2 * * *"}
tasks:
  bomb: {type: shell, retries: 3, command: "echo {{ 7**(7**9) }}"}
  repeat: {type: shell, retries: 3, command: "echo {{ 'A' * 2000000000 }}"}
  fine: {type: shell, command: echo fine}
"""
# the bound each bomb's error names (stratoflow.templating.Limits)
BOUNDS = {"bomb": "max_int_bits", "repeat": "max_chars"}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        built.apply_with_runner(POISON)
        yield built


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The task ids rendered for dispatch, in order (every handler renders through it)."""
    seen: list[str] = []
    render = engine.render_task

    def recorded(spec: Any, run: Any, task_id: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(task_id)
        return render(spec, run, task_id, *args, **kwargs)

    monkeypatch.setattr(engine, "render_task", recorded)
    return seen


def requests_of(stack: Stack, function: str) -> Counter[str]:
    """Every AWS request ``function`` makes from now on, by "service.Operation"."""
    counted: Counter[str] = Counter()
    for client in vars(stack.functions[function].function.clients).values():
        count_requests(client, counted)
    return counted


def recorded_only(stack: Stack, run_id: str, made: Counter[str], renders: list[str]) -> None:
    """What a function that hands over leaves: the run started, every root queued and none
    rendered or started, and one kick on the results queue."""
    assert renders == []
    assert stack.run_state(run_id) == "running"
    states = {t.task_id: t.state.value for t in stack.observer.get_tasks(run_id)}
    assert states == dict.fromkeys(("bomb", "repeat", "fine"), "queued")
    assert stack.starts == {}
    assert not [op for op in made if op.startswith(("stepfunctions.", "batch.", "lambda."))]
    assert made["sqs.SendMessageBatch"] == 1
    assert stack.receive_peek() == 1


def fails_in_advance(stack: Stack, run_id: str, renders: list[str], attempt: int) -> None:
    """``advance`` renders the bombs, each fails once (no retry of a template error) with
    the bound it hit, and the good task runs."""
    assert stack.run_ends(run_id) == "failed"
    assert sorted(renders) == ["bomb", "fine", "repeat"]
    for task_id, bound in BOUNDS.items():
        task = stack.observer.get_task(run_id, task_id)
        assert (task.state.value, task.attempt) == ("failed", attempt)
        assert task.error is not None
        assert task.error.startswith("command: ")
        assert bound in task.error
    assert stack.task_state(run_id, "fine") == "succeeded"
    assert all("-fine-" in name for name in stack.starts)  # no bomb ever reached a runner


def test_a_trigger_through_the_api_records_the_run_and_advance_renders(
    stack: Stack, renders: list[str]
) -> None:
    # GIVEN the api function, every request it makes counted
    made = requests_of(stack, "api")
    # WHEN a run of the poison workflow is triggered through it
    status, body = stack.api("POST", "/workflows/poison/runs", {})
    # THEN it answered with the run recorded, and rendered and dispatched nothing
    assert status == 201, body
    run_id = str(body["run"]["id"])
    assert body["run"]["state"] == "running"
    recorded_only(stack, run_id, made, renders)
    # AND advance, kicked, fails the bombs with the bound each hit
    fails_in_advance(stack, run_id, renders, attempt=1)

    # WHEN the failed tasks are rerun through the api
    renders.clear()
    made.clear()
    stack.starts.clear()
    status, body = stack.api("POST", f"/runs/{run_id}/rerun")
    # THEN the rerun too is only recorded, and advance fails them again
    assert status == 200, body
    assert renders == []
    assert not [op for op in made if op.startswith("stepfunctions.StartExecution")]
    assert made["sqs.SendMessageBatch"] == 1
    assert stack.task_state(run_id, "bomb") == "queued"
    assert stack.run_ends(run_id) == "failed"
    assert sorted(renders) == ["bomb", "repeat"]
    assert stack.observer.get_task(run_id, "bomb").attempt == 2
    assert stack.starts == {}  # fine succeeded before: not rerun


def test_a_schedule_firing_records_the_run_and_advance_renders(
    stack: Stack, renders: list[str]
) -> None:
    made = requests_of(stack, "trigger")
    firing = {"project": "default", "workflow": "poison",
              "scheduled_time": "2026-11-21T02:00:00Z"}  # fmt: skip
    fired = stack.call("trigger", firing)
    assert fired["created"] is True
    run_id = fired["run_id"]
    recorded_only(stack, run_id, made, renders)
    # a repeated firing kicks again (in case the first kick was lost): it changes nothing
    assert stack.call("trigger", firing) == {"run_id": run_id, "created": False}
    assert made["sqs.SendMessageBatch"] == 2
    fails_in_advance(stack, run_id, renders, attempt=1)


def test_an_unknown_message_kind_goes_to_the_dead_letter_queue(stack: Stack) -> None:
    queue = stack.settings.results_queue_url
    stack.sqs.send_message(QueueUrl=queue, MessageBody='{"kind": "wake", "run_id": "x"}')

    def done() -> bool:
        attrs = stack.sqs.get_queue_attributes(
            QueueUrl=stack.settings.results_dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) > 0

    stack.pump(done, timeout=20)  # reported failed on each receive, then moved by SQS
    assert stack.receive_peek() == 0
