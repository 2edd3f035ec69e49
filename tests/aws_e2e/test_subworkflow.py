"""Sub-workflows on the AWS runtime, in moto: the api function records the parent's run, the
advance function starts the child run when it claims the sub-workflow task, the real state
machine runs the child's attempts, and the advance turn that ends the child run completes
the parent's task (no polling: the parent's next task is dispatched in that same turn). A
failed child fails the parent; a rerun through the api reruns the same child run from its
failed task, or whole when rerun from the task (with the params its task renders now); a
child repaired on its own through the api (rerun, or its failed task marked) reopens its
failed parent; a stop of the parent stops the child; the reconciler reports a child whose
end its parent missed. See harness.py for what stands in for compute."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratoflow.adapters.aws import runner as aws_runner
from stratoflow.engine import subworkflow as rules
from stratoflow.subworkflows import SubWorkflows
from tests.aws_e2e.harness import Stack, aws_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

CHILD = """
name: load_region
params: {region: us, flag: none}
tasks:
  extract: {type: shell, command: 'echo "rows=42" >> "$STRATOFLOW_OUTPUT"'}
  load: {type: shell, depends_on: [extract], command: 'test -e "{{ params.flag }}"'}
"""
PARENT = """
name: parent
params: {flag: /}
tasks:
  child:
    type: workflow
    workflow: load_region
    params: {flag: "{{ params.flag }}"}
  report:
    type: shell
    depends_on: [child]
    command: 'echo "seen={{ tasks.child.outputs.extract.rows }}" >> "$STRATOFLOW_OUTPUT"'
"""


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("STRATOFLOW_STOP_POLL_SECONDS", "0.5")
    with aws_stack(monkeypatch) as built:
        built.apply_with_runner(CHILD)
        status, body = built.api("POST", "/workflows", {"source": PARENT})
        assert status in (200, 201), body
        yield built


def trigger(stack: Stack, **params: str) -> str:
    status, body = stack.api("POST", "/workflows/parent/runs", {"params": params})
    assert status == 201, body
    stack.deliver_kicks()
    return str(body["run"]["id"])


def child_of(run_id: str) -> str:
    return rules.child_run_id(run_id, "child", ("default", "load_region"))


def test_the_child_end_completes_the_parent_task(stack: Stack) -> None:
    run_id = trigger(stack)
    assert stack.run_ends(child_of(run_id)) == "succeeded"
    # the advance turn that ended the child completed the parent's task and dispatched
    # what it made ready: nothing polled for the child
    assert stack.task_state(run_id, "child") == "succeeded"
    assert stack.task_state(run_id, "report") == "running"
    assert stack.run_ends(run_id) == "succeeded"
    assert stack.observer.get_task(run_id, "report").outputs == {"seen": "42"}
    status, body = stack.api("GET", f"/runs/{child_of(run_id)}")
    assert status == 200, body
    assert body["run"]["parent_run"] == run_id
    assert body["run"]["parent_task"] == "child"
    status, body = stack.api("GET", f"/runs/{run_id}")
    assert body["tasks"]["child"]["child_run"] == child_of(run_id)
    # one execution per attempt of the child's tasks and the parent's shell task; the
    # sub-workflow task itself runs no state machine
    assert len(stack.starts) == 3
    assert set(stack.starts.values()) == {1}


def test_a_failed_child_fails_the_parent_and_a_rerun_reruns_the_same_child(
    stack: Stack, shared_dir: Path
) -> None:
    flag = shared_dir / "fixed"
    run_id = trigger(stack, flag=str(flag))
    assert stack.run_ends(run_id) == "failed"
    assert stack.task_state(run_id, "child") == "failed"
    assert stack.run_state(child_of(run_id)) == "failed"
    assert stack.task_state(run_id, "report") == "upstream_failed"
    flag.touch()  # what the child's load needed is fixed: rerun the parent
    status, body = stack.api("POST", f"/runs/{run_id}/rerun", {})
    assert status == 200, body
    stack.deliver_kicks()
    assert stack.run_ends(run_id) == "succeeded"
    assert stack.run_state(child_of(run_id)) == "succeeded"
    tasks = {t.task_id: t for t in stack.observer.get_tasks(child_of(run_id))}
    assert tasks["extract"].attempt == 1  # kept
    assert tasks["load"].attempt == 2  # rerun from its failure, in the same child run
    assert stack.observer.get_task(run_id, "report").outputs == {"seen": "42"}


@pytest.mark.parametrize("repair", ["rerun", "mark"])
def test_a_child_repaired_through_the_api_reopens_its_failed_parent(
    stack: Stack, shared_dir: Path, repair: str
) -> None:
    # GIVEN a parent run that failed because its child's load failed
    flag = shared_dir / "fixed"
    run_id = trigger(stack, flag=str(flag))
    assert stack.run_ends(run_id) == "failed"
    child_id = child_of(run_id)
    assert stack.run_state(child_id) == "failed"
    # WHEN the child run itself is repaired: rerun (load passes now) or load marked
    if repair == "rerun":
        flag.touch()
        status, body = stack.api("POST", f"/runs/{child_id}/rerun", {})
    else:
        status, body = stack.api(
            "POST", f"/runs/{child_id}/tasks/load/mark", {"state": "succeeded"}
        )
    assert status == 200, body
    stack.deliver_kicks()
    # THEN the child succeeded, its parent's task took that end (no attempt of its own),
    # the parent run reopened, its report ran once on the child's outputs, and it succeeded
    assert stack.run_ends(child_id) == "succeeded"
    assert stack.run_ends(run_id) == "succeeded"
    task = stack.observer.get_task(run_id, "child")
    assert (task.state.value, task.attempt) == ("succeeded", 1)
    assert task.outputs == {"extract": {"rows": "42"}}
    report = stack.observer.get_task(run_id, "report")
    assert (report.attempt, report.outputs) == (1, {"seen": "42"})
    assert set(stack.starts.values()) == {1}


def test_a_rerun_from_the_succeeded_task_runs_its_child_again_whole(stack: Stack) -> None:
    run_id = trigger(stack)
    assert stack.run_ends(run_id) == "succeeded"
    status, body = stack.api("POST", f"/runs/{run_id}/rerun", {"from": "child"})
    assert status == 200, body
    stack.deliver_kicks()
    assert stack.run_ends(run_id) == "succeeded"
    # the same child run, every task of it run again: not its old end reported at once
    tasks = {t.task_id: t for t in stack.observer.get_tasks(child_of(run_id))}
    assert (tasks["extract"].attempt, tasks["load"].attempt) == (2, 2)
    assert stack.observer.get_task(run_id, "child").attempt == 2
    assert stack.observer.get_task(run_id, "report").attempt == 2


COUNTED_CHILD = """
name: counted_child
params: {n: "0"}
tasks:
  use: {type: shell, command: 'echo "seen={{ params.n }}" >> "$STRATOFLOW_OUTPUT"'}
"""
COUNTED_PARENT = """
name: counted_parent
tasks:
  x: {type: shell, command: 'echo "v=$STRATOFLOW_ATTEMPT" >> "$STRATOFLOW_OUTPUT"'}
  sub:
    type: workflow
    depends_on: [x]
    workflow: counted_child
    params: {n: "{{ tasks.x.outputs.v }}"}
"""


def test_a_rerun_from_upstream_gives_the_child_the_params_rendered_now(stack: Stack) -> None:
    stack.apply_with_runner(COUNTED_CHILD)
    stack.apply_with_runner(COUNTED_PARENT)
    status, body = stack.api("POST", "/workflows/counted_parent/runs", {})
    assert status == 201, body
    stack.deliver_kicks()
    run_id = str(body["run"]["id"])
    child_id = rules.child_run_id(run_id, "sub", ("default", "counted_child"))
    assert stack.run_ends(run_id) == "succeeded"
    assert stack.observer.get_task(child_id, "use").outputs == {"seen": "1"}
    # x runs again and makes v=2: the child reruns whole with n=2, not its first pass's 1
    status, body = stack.api("POST", f"/runs/{run_id}/rerun", {"from": "x"})
    assert status == 200, body
    stack.deliver_kicks()
    assert stack.run_ends(run_id) == "succeeded"
    assert stack.observer.get_task(child_id, "use").outputs == {"seen": "2"}
    assert stack.observer.get_task(child_id, "use").attempt == 2
    status, body = stack.api("GET", f"/runs/{child_id}")
    assert status == 200, body
    assert body["run"]["params"] == {"n": "2"}


def test_a_stop_of_the_parent_stops_the_child(stack: Stack) -> None:
    s3 = stack.counted_client("s3")
    ddb = stack.counted_client("dynamodb")
    started = threading.Event()

    def run_it(attempt: dict[str, object]) -> dict[str, object]:
        started.set()
        return aws_runner.handle(attempt, None, s3=s3, dynamodb=ddb, table=stack.settings.table)

    stack.lambdas.handlers["RunnerFunction"] = run_it
    slow = CHILD.replace("name: load_region", "name: slow").replace(
        'echo "rows=42"', 'sleep 60; echo "rows=42"'
    )
    status, body = stack.api("POST", "/workflows", {"source": slow})
    assert status in (200, 201), body
    status, body = stack.api(
        "POST",
        "/workflows",
        {
            "source": PARENT.replace("name: parent", "name: outer").replace(
                "workflow: load_region", "workflow: slow"
            )
        },
    )
    assert status in (200, 201), body
    status, body = stack.api("POST", "/workflows/outer/runs", {})
    assert status == 201, body
    run_id = str(body["run"]["id"])
    stack.deliver_kicks()
    assert started.wait(30), "the child's task never started"
    child_id = rules.child_run_id(run_id, "child", ("default", "slow"))
    assert stack.run_state(child_id) == "running"
    status, body = stack.api("POST", f"/runs/{run_id}/stop")
    assert status == 200, body
    assert stack.run_state(run_id) == "stopped"
    assert stack.run_state(child_id) == "stopped"
    assert stack.task_state(child_id, "extract") == "stopped"


def test_the_reconciler_reports_a_child_end_the_parent_missed(stack: Stack) -> None:
    with pytest.MonkeyPatch.context() as lost:
        # the advance function dies right after it wrote the child run's end
        lost.setattr(SubWorkflows, "run_ended", lambda self, run: None)
        run_id = trigger(stack)
        assert stack.run_ends(child_of(run_id)) == "succeeded"
        assert stack.task_state(run_id, "child") == "running"
    stack.call("reconciler", {})
    assert stack.run_ends(run_id) == "succeeded"
    assert stack.observer.get_task(run_id, "report").outputs == {"seen": "42"}
    assert set(stack.starts.values()) == {1}
