"""``engine.held_retry``: a retry claimed before its delay ran out, its run paused, goes back
to waiting for its retry without using the retry budget (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta

from stratoflow import engine
from stratoflow.engine import TaskInstance, TaskState
from stratoflow.model import WorkflowSpec, load_workflow


def test_a_claim_still_in_its_delay_goes_back_to_up_for_retry_with_its_try(now: datetime) -> None:
    due = now + timedelta(minutes=5)
    claimed = TaskInstance(
        "r", "t", TaskState.RUNNING, attempt=2, attempt_base=0, started_at=due,
        deadline=due + timedelta(minutes=10),
    )  # fmt: skip
    decision = engine.held_retry(claimed, now)
    assert decision is not None
    (write,) = decision.tasks
    assert (write.expect, write.expect_attempt) == (TaskState.RUNNING, 2)  # ends attempt 2
    held = write.task
    assert (held.state, held.ready_at, held.deadline) == (TaskState.UP_FOR_RETRY, due, None)
    assert held.try_number == 1  # the retry budget is as before the claim
    assert (decision.running, decision.done, decision.failed) == (-1, 0, 0)
    # its next claim tries the same try under the next attempt number
    again = engine.claim(_spec(), held.with_(state=TaskState.QUEUED), due)
    assert (again.attempt, again.try_number) == (3, 2)


def test_an_attempt_that_started_is_not_held(now: datetime) -> None:
    started = TaskInstance("r", "t", TaskState.RUNNING, attempt=2, started_at=now)
    assert engine.held_retry(started, now) is None
    assert engine.held_retry(started.with_(state=TaskState.UP_FOR_RETRY), now) is None


def _spec() -> WorkflowSpec:
    return load_workflow("name: w\ntasks: {t: {type: shell, command: 'true', retries: 2}}\n")


def test_a_claim_its_executor_held_ends_as_the_pause_would_have_held_it(now: datetime) -> None:
    """The executor of a retry found its run paused when the delay ran out (a pause that did
    not hold it itself): the same transition as ``held_retry``, from its report."""
    due = now - timedelta(seconds=1)  # its delay ran out: held_retry no longer takes it
    claimed = TaskInstance(
        "r", "t", TaskState.RUNNING, attempt=2, attempt_base=0, started_at=due,
        deadline=due + timedelta(minutes=10),
    )  # fmt: skip
    assert engine.held_retry(claimed, now) is None
    report = engine.AttemptResult(
        engine.AttemptStatus.STOPPED, error=engine.HELD_RETRY_ERROR, held=True
    )
    made = engine.attempt_finished(_spec(), claimed, 2, report, now, intent=True)
    assert made is not None
    decision, transition = made
    (write,) = decision.tasks
    assert (write.expect, write.expect_attempt) == (TaskState.RUNNING, 2)
    held = write.task
    assert (held.state, held.ready_at, held.deadline) == (TaskState.UP_FOR_RETRY, due, None)
    assert held.try_number == 1  # the retry budget is as before the claim
    assert not transition.retrying  # not a new failure: no retry event
    assert (decision.running, decision.done, decision.failed) == (-1, 0, 0)
    # late or repeated (the task moved on): nothing
    assert engine.attempt_finished(_spec(), held, 2, report, now, intent=True) is None
    # a transition that says so (the AWS stream publishes no "Task Retrying" for it)
    assert engine.was_held(claimed, held)


def test_a_failed_attempt_going_up_for_retry_is_not_a_hold(now: datetime) -> None:
    running = TaskInstance("r", "t", TaskState.RUNNING, attempt=1, started_at=now)
    report = engine.AttemptResult(engine.AttemptStatus.FAILED, error="exit code 1")
    made = engine.on_attempt_finished(_spec(), running, 1, report, now)
    assert made is not None
    assert made.retrying
    assert made.task.state is TaskState.UP_FOR_RETRY
    assert not engine.was_held(running, made.task)
