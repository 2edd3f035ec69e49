"""Variables on AWS, end to end on moto: ``/variables`` served by the api function (items of
the state table), and ``advance`` reading them from DynamoDB when it renders a task."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aws_e2e.harness import Stack, aws_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

COPY = """
name: copy
tasks:
  copy:
    type: shell
    command: 'echo "dest={{ var.value.bucket }}/{{ var.json.cfg.part }}" >> "$STRATOFLOW_OUTPUT"'
"""


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        built.apply_with_runner(COPY)
        yield built


def trigger(stack: Stack) -> str:
    status, body = stack.api("POST", "/workflows/copy/runs", {})
    assert status == 201, body
    return str(body["run"]["id"])


def test_advance_renders_with_the_variables_of_the_state_table(stack: Stack) -> None:
    q = {"project": "default"}
    status, body = stack.api("PUT", "/variables/bucket", {"value": "s3://one"}, q)
    assert status == 201, body
    assert stack.api("PUT", "/variables/cfg", {"value": '{"part": 7}'}, q)[0] == 201
    status, listed = stack.api("GET", "/variables", None, q)
    assert [(v["name"], v["value"]) for v in listed["variables"]] == [
        ("bucket", "s3://one"), ("cfg", '{"part": 7}'),
    ]  # fmt: skip
    first = trigger(stack)
    assert stack.run_ends(first) == "succeeded"
    assert stack.observer.get_task(first, "copy").outputs == {"dest": "s3://one/7"}
    # changed: the next run's render reads the new value
    assert stack.api("PUT", "/variables/bucket", {"value": "s3://two"}, q)[0] == 200
    second = trigger(stack)
    assert stack.run_ends(second) == "succeeded"
    assert stack.observer.get_task(second, "copy").outputs == {"dest": "s3://two/7"}
    # deleted: the task fails in advance, naming it, and never reaches a runner
    assert stack.api("DELETE", "/variables/bucket", None, q)[0] == 200
    assert stack.api("GET", "/variables/bucket", None, q)[0] == 404
    stack.starts.clear()
    third = trigger(stack)
    assert stack.run_ends(third) == "failed"
    task = stack.observer.get_task(third, "copy")
    assert task.error is not None
    assert "variable 'bucket' is not set in project 'default'" in task.error
    assert stack.starts == {}
