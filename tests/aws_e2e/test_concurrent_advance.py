"""Several advance containers at once, as Lambda scales the results queue's event source out:
each message of a fan-out is handed to one of three cold-started copies of
functions/advance/app.py on its own thread (each copy has its own ``Scheduler`` and lock, as
separate containers do), so ends and claims of one run race in DynamoDB's conditional writes.
Every attempt is started once and the run's counters equal its tasks.

moto's DynamoDB applies a request's condition and its write in Python without a lock, so two
threads can both pass one condition: real DynamoDB applies each request atomically, and the
test serialises moto's DynamoDB requests to model that (without it the race shows up in moto
itself, as duplicate starts and a running counter left at 1, that DynamoDB cannot produce)."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import moto.dynamodb.responses as dynamodb_responses
import pytest

from tests.aws_e2e.harness import ROOT, Stack, aws_stack, count_requests, sqs_record

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

FAN = """
name: fan
tasks:
  a: {type: shell, command: "echo a"}
  b1: {type: shell, depends_on: [a], command: "echo b"}
  b2: {type: shell, depends_on: [a], command: "echo b"}
  b3: {type: shell, depends_on: [a], command: "echo b"}
  b4: {type: shell, depends_on: [a], command: "echo b"}
  c: {type: shell, depends_on: [b1, b2, b3, b4], command: "echo c"}
"""
CONTAINERS = 3


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    lock = threading.RLock()
    call_action = dynamodb_responses.DynamoHandler.call_action

    def atomic(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return call_action(self, *args, **kwargs)

    monkeypatch.setattr(dynamodb_responses.DynamoHandler, "call_action", atomic)
    with aws_stack(monkeypatch) as built:
        yield built


def container(n: int) -> ModuleType:
    """functions/advance/app.py loaded again, as a new container's cold start."""
    name = f"stratoflow_fn_advance_container_{n}"
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / "advance" / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_advance_containers_racing_on_one_run_start_each_attempt_once(stack: Stack) -> None:
    stack.apply_with_runner(FAN)
    starts: Counter[str] = Counter()
    containers = [container(n) for n in range(CONTAINERS)]
    for module in containers:
        count_requests(module.function.clients.stepfunctions, Counter(), starts)
    context = SimpleNamespace(
        function_name="stratoflow-advance", memory_limit_in_mb=512, aws_request_id="r",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:stratoflow-advance",
    )  # fmt: skip
    queue = stack.settings.results_queue_url
    failures: list[str] = []

    def deliver(module: ModuleType, message: dict[str, Any]) -> None:
        answer = module.handler({"Records": [sqs_record(message, queue)]}, context)
        if answer["batchItemFailures"]:
            failures.append(message["Body"])  # left in the queue: SQS delivers it again
            return
        stack.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

    status, body = stack.api("POST", "/workflows/fan/runs", {})
    assert status == 201, body
    run_id = str(body["run"]["id"])
    deadline = time.monotonic() + 60
    turn = 0
    while stack.run_state(run_id) not in ("succeeded", "failed", "stopped"):
        assert time.monotonic() < deadline, stack.executions()
        messages = stack.receive()
        if not messages:
            time.sleep(0.05)
            continue
        threads = []
        for message in messages:  # each on its own container, all at once
            turn += 1
            module = containers[turn % CONTAINERS]
            threads.append(threading.Thread(target=deliver, args=(module, message)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert stack.run_state(run_id) == "succeeded"
    assert len(starts) == 6, starts
    assert set(starts.values()) == {1}, starts  # no StartExecution repeated
    ran = Counter(
        (p["task_id"], p["attempt"]) for name, p in stack.lambdas.calls if name == "RunnerFunction"
    )
    assert ran == {(t, 1): 1 for t in ("a", "b1", "b2", "b3", "b4", "c")}
    run = stack.observer.get_run(run_id)
    tasks = stack.observer.get_tasks(run_id)
    assert (run.n_tasks, run.n_done, run.n_failed, run.n_running) == (6, 6, 0, 0)
    assert {t.state.value for t in tasks} == {"succeeded"}
