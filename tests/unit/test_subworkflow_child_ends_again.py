"""A sub-workflow task's child run that ends again after its parent's task took its end: the
user marks a task of the child, or reruns the child (its failed tasks, or all of it), and the
child ends with another outcome. The parent's task takes the child's new outcome as a mark of
it would (its downstream decided again, an ended parent run reopened), once; a parent task that
no longer follows that end (rerun since, or ended by a mark, a stop or a timeout while its
child ran) is not touched. On both stores (SQLite, DynamoDB on moto)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import pytest
from tests.stores import STORE_KINDS
from tests.unit.test_subworkflow import CHILD, PARENT, Harness, succeed

from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.engine import subworkflow as rules
from stratoflow.ports import AttemptSpec
from stratoflow.service import Finished

SIDE_PARENT = """\
name: side_parent
tasks:
  child: {type: workflow, workflow: load_region}
  after: {type: shell, depends_on: [child], command: "echo {{ tasks.child.outputs.extract.rows }}"}
  side: {type: shell, command: "echo side"}
"""

TOP = """\
name: top
tasks:
  mid: {type: workflow, workflow: parent}
  last: {type: shell, depends_on: [mid], command: "echo last"}
"""


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with Harness.opened(request.param, tmp_path, CHILD, PARENT) as harness:
        yield harness


def fail_load(spec: AttemptSpec) -> AttemptStatus:
    return AttemptStatus.FAILED if spec.task_id == "load" else AttemptStatus.SUCCEEDED


def drive(
    h: Harness,
    outcome: Callable[[AttemptSpec], AttemptStatus],
    hold: Collection[str] = (),
) -> None:
    """``Harness.finish``, but the attempts of the tasks in ``hold`` stay running."""
    h.scheduler.step()
    for _ in range(200):
        ready = [k for k in h.dispatcher.pending if k[1] not in hold]
        if not ready:
            return
        spec = h.dispatcher.pending.pop(ready[0])
        h.clock.advance(1)
        status = outcome(spec)
        made = {"rows": "42"} if spec.task_id == "extract" else {}
        result = AttemptResult(status, made if status is AttemptStatus.SUCCEEDED else {})
        h.scheduler.on_finished([Finished(spec.run_id, spec.task_id, spec.attempt, result)])
        h.scheduler.step()
    raise AssertionError("the runs never settled")


def failed_parent(h: Harness) -> tuple[str, str]:
    """A run of ``parent`` failed because its child's ``load`` failed: (run, child run)."""
    run, _ = h.scheduler.trigger("default", "parent")
    h.finish(fail_load)
    assert h.store.get_run(run.id).state is RunState.FAILED
    assert h.store.get_task(run.id, "child").state is TaskState.FAILED
    assert h.store.get_task(run.id, "report").state is TaskState.UPSTREAM_FAILED
    child = h.child_of(run.id)
    assert child.state is RunState.FAILED
    h.clock.advance(60)
    return run.id, child.id


def dispatched(h: Harness, run_id: str, task_id: str) -> list[int]:
    return sorted(k[2] for k in h.dispatcher.dispatched if k[:2] == (run_id, task_id))


def test_a_child_rerun_that_succeeds_reopens_its_failed_parent(h: Harness) -> None:
    # GIVEN a parent run that failed because its child failed
    run_id, child_id = failed_parent(h)
    # WHEN the child's failed tasks are rerun (on the child run itself) and succeed
    h.scheduler.rerun(child_id)
    h.finish(succeed)
    # THEN the parent's task took the child's new end: succeeded, with the child's outputs,
    # and no new attempt of its own
    assert h.store.get_run(child_id).state is RunState.SUCCEEDED
    task = h.store.get_task(run_id, "child")
    assert task.state is TaskState.SUCCEEDED
    assert task.outputs == {"extract": {"rows": "42"}}
    assert task.error is None
    assert task.attempt == 1
    # AND what waited on it ran, once, with those outputs, and the parent run succeeded
    assert dispatched(h, run_id, "report") == [1]
    assert h.dispatcher.dispatched[(run_id, "report", 1)].task.fields["command"] == "echo 42"
    assert h.store.get_task(run_id, "report").state is TaskState.SUCCEEDED
    parent = h.store.get_run(run_id)
    assert parent.state is RunState.SUCCEEDED
    assert (parent.n_done, parent.n_failed, parent.n_running) == (3, 0, 0)


def test_marking_the_failed_task_of_a_child_reopens_its_parent(h: Harness) -> None:
    # GIVEN a parent run that failed because its child's load failed
    run_id, child_id = failed_parent(h)
    # WHEN the child's failed task is marked succeeded (the child ends succeeded at once)
    ended = h.scheduler.mark(child_id, "load", TaskState.SUCCEEDED)
    # THEN the parent's task succeeded with it and the parent run runs again
    assert ended.state is RunState.SUCCEEDED
    assert h.store.get_run(child_id).state is RunState.SUCCEEDED
    assert h.store.get_task(run_id, "child").state is TaskState.SUCCEEDED
    assert h.store.get_run(run_id).state is RunState.RUNNING
    h.finish(succeed)
    assert h.store.get_task(run_id, "report").state is TaskState.SUCCEEDED
    assert h.store.get_run(run_id).state is RunState.SUCCEEDED


def test_a_child_rerun_whole_that_fails_fails_its_parent_task(h: Harness) -> None:
    # GIVEN a parent run that succeeded (its report ran on the child's outputs)
    run, _ = h.scheduler.trigger("default", "parent")
    h.finish(succeed)
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED
    child = h.child_of(run.id)
    h.clock.advance(60)
    # WHEN the child is rerun whole and fails
    h.scheduler.rerun(child.id, all_tasks=True)
    h.finish(fail_load)
    # THEN the parent's task failed with it, naming why, and the parent run failed; the
    # report that ran before stays as it ran
    task = h.store.get_task(run.id, "child")
    assert task.state is TaskState.FAILED
    assert f"child run {child.id} failed: task load failed" in (task.error or "")
    assert task.outputs == {}
    assert h.store.get_task(run.id, "report").state is TaskState.SUCCEEDED
    assert dispatched(h, run.id, "report") == [1]
    parent = h.store.get_run(run.id)
    assert parent.state is RunState.FAILED
    assert (parent.n_done, parent.n_failed) == (3, 1)


def test_a_child_that_ends_again_as_it_ended_changes_nothing_in_its_parent(h: Harness) -> None:
    # GIVEN a parent run that failed because its child failed
    run_id, child_id = failed_parent(h)
    before_run = h.store.get_run(run_id)
    before_tasks = h.store.get_tasks(run_id)
    # WHEN the child is rerun and fails the same way
    h.scheduler.rerun(child_id)
    h.finish(fail_load)
    assert h.store.get_run(child_id).state is RunState.FAILED
    # THEN the parent run and its tasks are as they were: nothing reopened, nothing ran
    assert h.store.get_run(run_id) == before_run
    assert h.store.get_tasks(run_id) == before_tasks


def test_a_child_end_reaches_its_parent_once(h: Harness) -> None:
    # GIVEN a parent that took its repaired child's end, and ran on
    run_id, child_id = failed_parent(h)
    h.scheduler.rerun(child_id)
    h.finish(succeed)
    parent = h.store.get_run(run_id)
    tasks = h.store.get_tasks(run_id)
    assert parent.state is RunState.SUCCEEDED
    # WHEN the child's end is heard again (a redelivered end, a recovery pass)
    h.scheduler.subworkflows.run_ended(h.store.get_run(child_id))
    h.scheduler.recover()
    h.finish(succeed)
    # THEN nothing changes and nothing runs again
    assert h.store.get_run(run_id) == parent
    assert h.store.get_tasks(run_id) == tasks
    assert dispatched(h, run_id, "report") == [1]


def test_an_older_end_of_the_child_leaves_a_parent_rerun_since_alone(h: Harness) -> None:
    # GIVEN a parent that failed with its child, then was rerun: its task's attempt 2 runs
    # the child again
    run_id, child_id = failed_parent(h)
    old_end = h.store.get_run(child_id)
    h.scheduler.rerun(run_id)
    h.scheduler.step()
    running = h.store.get_task(run_id, "child")
    assert (running.state, running.attempt) == (TaskState.RUNNING, 2)
    assert h.store.get_run(child_id).state is RunState.RUNNING
    # WHEN the child's older end is heard (a late delivery): THEN it is not this attempt's
    h.scheduler.subworkflows.run_ended(old_end)
    assert h.store.get_task(run_id, "child") == running
    # WHEN the attempt takes the child's new end, and the older end is heard again
    h.finish(succeed)
    task = h.store.get_task(run_id, "child")
    assert (task.state, task.attempt) == (TaskState.SUCCEEDED, 2)
    parent = h.store.get_run(run_id)
    assert parent.state is RunState.SUCCEEDED
    assert rules.takes_end(task, old_end) is False
    h.scheduler.subworkflows.run_ended(old_end)
    h.finish(succeed)
    # THEN the parent is untouched
    assert h.store.get_task(run_id, "child") == task
    assert h.store.get_run(run_id) == parent


def test_a_child_rerun_after_its_parent_task_ended_is_not_stopped_by_recovery(
    h: Harness,
) -> None:
    # GIVEN a parent that failed with its child, and the child rerun while the parent's
    # task stays failed
    run_id, child_id = failed_parent(h)
    h.scheduler.rerun(child_id)
    h.scheduler.step()
    assert h.store.get_run(child_id).state is RunState.RUNNING
    # WHEN recovery passes (the local start, the AWS reconciler)
    h.scheduler.recover()
    # THEN the child goes on (it is no orphan: its end is its parent task's next outcome)
    assert h.store.get_run(child_id).state is RunState.RUNNING
    h.finish(succeed)
    assert h.store.get_run(child_id).state is RunState.SUCCEEDED
    assert h.store.get_run(run_id).state is RunState.SUCCEEDED


def test_a_parent_still_running_takes_its_child_new_end_and_goes_on(h: Harness) -> None:
    # GIVEN a parent whose child failed (after: upstream_failed) while side still runs
    h.scheduler.apply(SIDE_PARENT)
    run, _ = h.scheduler.trigger("default", "side_parent")
    drive(h, fail_load, hold={"side"})
    assert h.store.get_run(run.id).state is RunState.RUNNING
    assert h.store.get_task(run.id, "child").state is TaskState.FAILED
    assert h.store.get_task(run.id, "after").state is TaskState.UPSTREAM_FAILED
    child = h.child_of(run.id)
    assert child.state is RunState.FAILED
    # WHEN the child is repaired
    h.clock.advance(60)
    h.scheduler.rerun(child.id)
    drive(h, succeed, hold={"side"})
    # THEN after runs on the child's outputs while side goes on, and the counters hold
    assert h.store.get_task(run.id, "child").state is TaskState.SUCCEEDED
    assert h.store.get_task(run.id, "after").state is TaskState.SUCCEEDED
    assert h.dispatcher.dispatched[(run.id, "after", 1)].task.fields["command"] == "echo 42"
    parent = h.store.get_run(run.id)
    assert parent.state is RunState.RUNNING
    assert (parent.n_done, parent.n_failed, parent.n_running) == (2, 0, 1)
    # AND the run ends when side does
    h.finish(succeed)
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED


def test_a_failed_sub_workflow_task_of_a_running_parent_is_rerun_while_it_goes_on(
    h: Harness,
) -> None:
    """The parent's own failed tasks rerun while side still runs (Airflow's *Clear* of a
    running DAG run's failed task): child reruns its child run from its failed load."""
    h.scheduler.apply(SIDE_PARENT)
    run, _ = h.scheduler.trigger("default", "side_parent")
    drive(h, fail_load, hold={"side"})
    assert h.store.get_task(run.id, "child").state is TaskState.FAILED
    child = h.child_of(run.id)
    h.clock.advance(60)

    assert h.scheduler.rerun(run.id).state is RunState.RUNNING
    drive(h, succeed, hold={"side"})

    assert h.store.get_task(run.id, "child").state is TaskState.SUCCEEDED
    assert h.store.get_run(child.id).state is RunState.SUCCEEDED
    assert dispatched(h, child.id, "extract") == [1]  # kept: from its failed tasks
    assert dispatched(h, child.id, "load") == [1, 2]
    assert h.store.get_task(run.id, "after").state is TaskState.SUCCEEDED
    parent = h.store.get_run(run.id)
    assert (parent.state, parent.n_done, parent.n_failed, parent.n_running) == (
        RunState.RUNNING, 2, 0, 1,
    )  # fmt: skip
    h.finish(succeed)
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED


def test_a_running_sub_workflow_task_rerun_from_stops_its_child_and_runs_it_whole(
    h: Harness,
) -> None:
    h.scheduler.apply(SIDE_PARENT)
    run, _ = h.scheduler.trigger("default", "side_parent")
    drive(h, succeed, hold={"side", "load"})  # the child run waits on its load
    assert h.store.get_task(run.id, "child").state is TaskState.RUNNING
    child = h.child_of(run.id)
    assert child.state is RunState.RUNNING

    h.scheduler.rerun(run.id, from_task="child")

    assert h.store.get_run(child.id).state is RunState.STOPPED
    # its next attempt starts after that stop (an end from before it is an earlier
    # attempt's: ``rules.ended_for``), so it runs the child again whole
    h.clock.advance(1)
    drive(h, succeed, hold={"side"})
    assert h.store.get_task(run.id, "child").state is TaskState.SUCCEEDED
    again = h.child_of(run.id)
    assert again.state is RunState.SUCCEEDED
    assert dispatched(h, again.id, "extract") == [1, 2]  # whole
    assert h.store.get_task(run.id, "after").state is TaskState.SUCCEEDED
    h.finish(succeed)
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED


def test_a_repaired_grandchild_reopens_every_run_above_it(h: Harness) -> None:
    # GIVEN top -> parent -> load_region, failed from the bottom up
    h.scheduler.apply(TOP)
    top, _ = h.scheduler.trigger("default", "top")
    h.finish(fail_load)
    mid_id = rules.child_run_id(top.id, "mid", ("default", "parent"))
    low_id = rules.child_run_id(mid_id, "child", ("default", "load_region"))
    assert [h.store.get_run(r).state for r in (top.id, mid_id, low_id)] == [RunState.FAILED] * 3
    # WHEN the bottom run is repaired
    h.clock.advance(60)
    h.scheduler.rerun(low_id)
    h.finish(succeed)
    # THEN each run above took the end of the one below and ran on
    assert [h.store.get_run(r).state for r in (top.id, mid_id, low_id)] == [RunState.SUCCEEDED] * 3
    assert h.store.get_task(mid_id, "report").state is TaskState.SUCCEEDED
    assert h.store.get_task(top.id, "last").state is TaskState.SUCCEEDED
    assert dispatched(h, top.id, "last") == [1]


def test_a_mark_of_a_running_sub_workflow_task_stands_against_its_stopped_child(
    h: Harness,
) -> None:
    # GIVEN a parent whose sub-workflow task is marked skipped while its child runs
    run, child = h.child_started()
    h.scheduler.mark(run.id, "child", TaskState.SKIPPED)
    # THEN the child is stopped, and its stop does not undo the mark
    assert h.store.get_run(child.id).state is RunState.STOPPED
    h.dispatcher.pending.clear()
    h.finish(succeed)
    assert h.store.get_task(run.id, "child").state is TaskState.SKIPPED
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED


def test_a_mark_of_a_parent_task_that_follows_its_child_ends_the_following(h: Harness) -> None:
    # GIVEN a parent that failed with its child, and the child rerun on its own
    run_id, child_id = failed_parent(h)
    h.scheduler.rerun(child_id)
    h.scheduler.step()
    assert h.store.get_run(child_id).state is RunState.RUNNING
    # WHEN the parent's task is marked skipped meanwhile
    h.scheduler.mark(run_id, "child", TaskState.SKIPPED)
    # THEN the mark is its outcome: the child's rerun is stopped (as the mark of a running
    # sub-workflow task stops its child), and its end does not undo the mark
    assert h.store.get_run(child_id).state is RunState.STOPPED
    assert h.store.get_task(run_id, "child").child_end is None
    h.dispatcher.pending.clear()
    h.finish(succeed)
    assert h.store.get_task(run_id, "child").state is TaskState.SKIPPED
    assert h.store.get_task(run_id, "report").state is TaskState.SKIPPED
    assert h.store.get_run(run_id).state is RunState.SUCCEEDED
