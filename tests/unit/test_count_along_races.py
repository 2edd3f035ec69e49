"""Races on the DynamoDB count made with a claim (``Scheduler._counts_along``): another
writer runs to its end between the read of a parent's children and the write that would
count the parent and claim the child. Whatever it is, each child is counted once per parent,
claimed (and dispatched) once, and no propagation intent is left."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.unit.test_dynamodb import Env, FixedClock, RecordingDispatcher, counted_in
from tests.unit.test_dynamodb import env as dynamodb_env

from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.service import Finished, Scheduler

dynamodb = pytest.fixture(dynamodb_env.__wrapped__, name="env")  # the DynamoStore on moto


def between_read_and_write(env: Env, child: str, meanwhile: Callable[[], None]) -> dict[str, bool]:
    """Run ``meanwhile`` once, after the BatchGetItem that reads ``child`` and before the next
    request of that turn (its requests are not hooked)."""
    armed: dict[str, bool] = {}

    def read(params: dict[str, Any]) -> None:
        if f"T#{child}" in repr(params) and "ran" not in armed:
            armed["read"] = True

    def other(params: dict[str, Any]) -> None:
        if armed.pop("read", False):
            saved = dict(env.requests.before)
            env.requests.before.clear()
            try:
                meanwhile()
            finally:
                env.requests.before.update(saved)
            armed["ran"] = True

    env.requests.before["BatchGetItem"] = read
    for name in ("GetItem", "Query", "UpdateItem", "TransactWriteItems"):
        env.requests.before[name] = other
    return armed


def started(env: Env, scheduler: Scheduler, workflow: str) -> tuple[str, RecordingDispatcher]:
    dispatcher = RecordingDispatcher()
    scheduler.dispatcher = dispatcher  # type: ignore[misc]
    run, _ = scheduler.trigger("analytics", workflow.split("\n", 1)[0].split()[1], run_id="r")
    scheduler.advance([], runs=[run.id])
    return run.id, dispatcher


def ok(run_id: str, task: str) -> Finished:
    return Finished(run_id, task, 1, AttemptResult(AttemptStatus.SUCCEEDED))


def failed(run_id: str, task: str) -> Finished:
    return Finished(run_id, task, 1, AttemptResult(AttemptStatus.FAILED))


def scheduler_for(env: Env, workflow: str) -> Scheduler:
    s = Scheduler(env.store, env.store, RecordingDispatcher(), FixedClock())
    s.apply(workflow)
    return s


FAN = "name: fan\nproject: analytics\ntasks:\n  root: {type: shell, command: echo}\n" + "".join(
    f"  c{i}: {{type: shell, command: echo, depends_on: [root]}}\n" for i in range(3)
)


@pytest.mark.parametrize("who", ["redelivery", "reconciler"])
def test_the_same_end_handled_by_another_process_between_read_and_write(env: Env, who: str) -> None:
    first = scheduler_for(env, FAN)
    run_id, dispatcher = started(env, first, FAN)
    other = Scheduler(env.store, env.store, dispatcher, FixedClock())

    def meanwhile() -> None:
        if who == "redelivery":
            other.advance([ok(run_id, "root")])
        else:
            other.recover()
            other.advance([], runs=[run_id])

    armed = between_read_and_write(env, "c0", meanwhile)
    first.advance([ok(run_id, "root")])
    first.advance([], runs=[run_id])
    assert armed == {"ran": True}
    for c in ("c0", "c1", "c2"):
        assert dispatcher.started.count(f"r/{c}/1") == 1, dispatcher.started
        assert env.store.get_task(run_id, c).state is TaskState.RUNNING
        assert counted_in(env, run_id, c) == (1, 1)
    assert env.store.get_run(run_id).n_running == 3
    assert env.store.pending_propagations(10) == []


ONE_SUCCESS = (
    "name: join\nproject: analytics\ntasks:\n  a: {type: shell, command: echo}\n"
    "  b: {type: shell, command: echo}\n"
    "  c: {type: shell, command: echo, depends_on: [a, b], trigger_rule: RULE}\n"
)


@pytest.mark.parametrize(
    ("rule", "b_ends", "expect"),
    [
        ("one_success", "ok", TaskState.RUNNING),
        ("all_success", "ok", TaskState.RUNNING),
        ("all_done", "failed", TaskState.RUNNING),
        ("all_success", "failed", TaskState.UPSTREAM_FAILED),
        ("one_failed", "failed", TaskState.RUNNING),
    ],
)
def test_two_parents_of_one_child_ending_in_two_concurrent_turns(
    env: Env, rule: str, b_ends: str, expect: TaskState
) -> None:
    wf = ONE_SUCCESS.replace("RULE", rule)
    first = scheduler_for(env, wf)
    run_id, dispatcher = started(env, first, wf)
    other = Scheduler(env.store, env.store, dispatcher, FixedClock())
    b = ok(run_id, "b") if b_ends == "ok" else failed(run_id, "b")
    armed = between_read_and_write(env, "c", lambda: other.advance([b]))
    first.advance([ok(run_id, "a")])
    first.advance([], runs=[run_id])
    assert armed == {"ran": True}
    c = env.store.get_task(run_id, "c")
    assert c.state is expect
    assert dispatcher.started.count("r/c/1") == (1 if expect is TaskState.RUNNING else 0)
    assert (c.upstream.succeeded + c.upstream.failed, counted_in(env, run_id, "c")[1]) == (2, 2)
    assert env.store.pending_propagations(10) == []


def test_a_pause_between_read_and_write_then_a_resume(env: Env) -> None:
    first = scheduler_for(env, FAN)
    run_id, dispatcher = started(env, first, FAN)
    other = Scheduler(env.store, env.store, dispatcher, FixedClock())
    armed = between_read_and_write(env, "c0", lambda: other.pause(run_id))
    first.advance([ok(run_id, "root")])
    assert armed == {"ran": True}
    assert env.store.get_run(run_id).state is RunState.PAUSED
    other.resume(run_id)
    other.advance([], runs=[run_id])
    for c in ("c0", "c1", "c2"):
        assert dispatcher.started.count(f"r/{c}/1") == 1, dispatcher.started
        assert counted_in(env, run_id, c) == (1, 1)
    assert env.store.pending_propagations(10) == []


def test_a_child_counted_alone_after_its_claim_failed_is_claimed_in_the_same_advance(
    env: Env,
) -> None:
    """Another process counts root in c0 (only) between the read and the claim: the claim
    with the count does not apply, root is counted alone and c0 queued (``_count_the_rest``);
    the same ``advance`` takes another pass and claims it, with no kick after it."""
    first = scheduler_for(env, FAN)
    run_id, dispatcher = started(env, first, FAN)

    def meanwhile() -> None:
        assert env.store.record_upstream(run_id, "c0", "root", TaskState.SUCCEEDED)

    armed = between_read_and_write(env, "c0", meanwhile)
    first.advance([ok(run_id, "root")])
    assert armed == {"ran": True}
    assert dispatcher.started.count("r/c0/1") == 1, dispatcher.started
    assert env.store.get_task(run_id, "c0").state is TaskState.RUNNING
    assert counted_in(env, run_id, "c0") == (1, 1)
    assert env.store.pending_propagations(10) == []
