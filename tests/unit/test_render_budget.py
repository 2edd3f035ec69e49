"""A turn's rendering is bounded as a whole: once a turn has spent its render budget, the
tasks it claimed and has not prepared go back to their queues and the turn ends (the lock is
released), later turns start them, each exactly once, and a run whose templates are slow
cannot keep another run's tasks from being rendered. Time is a fake render clock that the
(monkeypatched) renderer advances: nothing here waits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store

from stratoflow import engine
from stratoflow.adapters.aws.dynamodb import DynamoStore
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import RunState, TaskState
from stratoflow.service import Scheduler

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SLOW_SECONDS = 0.4  # what rendering one "slow" task costs on the fake clock
BUDGET = 1.0  # so a turn renders three slow tasks: 0.4, 0.8, then 1.2 spends it


def slow_workflow(n: int) -> str:
    tasks = "\n".join(f"  s{i}: {{type: shell, command: 'echo SLOW {i}'}}" for i in range(n))
    return f"name: slow\nproject: b\ntasks:\n{tasks}\n"


QUICK = """
name: quick
project: a
tasks:
  q: {type: shell, command: "echo {{ ds }}"}
"""


class RenderClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteStore | DynamoStore]:
    """SQLite, where a turn is one transaction (the claims given back were never seen), and
    DynamoDB, where each claim and its giving back are writes of their own."""
    with state_store(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> RenderClock:
    """The render clock; rendering a task whose command says SLOW advances it."""
    fake = RenderClock()
    real = engine.render_task

    def render_task(spec: Any, run: Any, task_id: str, *args: Any, **kwargs: Any) -> Any:
        if "SLOW" in str(spec.workflow.tasks[task_id].command):
            fake.now += SLOW_SECONDS
        return real(spec, run, task_id, *args, **kwargs)

    monkeypatch.setattr(engine, "render_task", render_task)
    return fake


def scheduler_of(
    store: SqliteStore | DynamoStore, clock: RenderClock
) -> tuple[Scheduler, RecordingDispatcher, FakeClock]:
    dispatcher, now = RecordingDispatcher(), FakeClock(T0)
    scheduler = Scheduler(store, store, dispatcher, now, render_budget=BUDGET, render_clock=clock)
    scheduler.apply(slow_workflow(20))
    scheduler.apply(QUICK)
    return scheduler, dispatcher, now


def started(dispatcher: RecordingDispatcher, run_id: str) -> list[str]:
    return [task for run, task, _ in dispatcher.dispatched if run == run_id]


def test_a_turn_stops_rendering_once_its_budget_is_spent(
    store: SqliteStore | DynamoStore, clock: RenderClock
) -> None:
    # GIVEN a run of 20 tasks whose templates take 0.4 s each to render
    scheduler, dispatcher, now = scheduler_of(store, clock)
    slow, _ = scheduler.trigger("b", "slow")
    # WHEN the scheduler turns once
    wakeup = scheduler.step()
    # THEN it rendered until the budget was spent (three renders), not all twenty
    assert clock.now == pytest.approx(3 * SLOW_SECONDS)
    assert len(started(dispatcher, slow.id)) == 3
    # AND the claims it did not render are back in the queue as they were: no attempt
    # taken, no slot of the run held
    tasks = {t.task_id: t for t in store.get_tasks(slow.id)}
    waiting = [t for t in tasks.values() if t.state is TaskState.QUEUED]
    assert len(waiting) == 17
    assert all(t.attempt == 0 and t.started_at is None for t in waiting)
    assert store.get_run(slow.id).n_running == 3
    # AND the next turn is due at once, not at the next timer
    assert wakeup == now.now()


def test_the_tasks_left_start_in_later_turns_each_once(
    store: SqliteStore | DynamoStore, clock: RenderClock
) -> None:
    scheduler, dispatcher, _ = scheduler_of(store, clock)
    slow, _ = scheduler.trigger("b", "slow")
    turns = 0
    while len(dispatcher.dispatched) < 20:
        before = clock.now
        scheduler.step()
        turns += 1
        # no turn renders past its budget by more than the render that spent it
        assert clock.now - before < BUDGET + SLOW_SECONDS
        assert turns <= 10
    # every task started once (RecordingDispatcher fails a second dispatch of a key), at
    # its first attempt: a claim given back never took an attempt number
    assert turns == 7  # 3 a turn: 20 tasks in 7 turns
    assert sorted(started(dispatcher, slow.id)) == sorted(f"s{i}" for i in range(20))
    assert {attempt for _, _, attempt in dispatcher.dispatched} == {1}
    assert store.get_run(slow.id).n_running == 20
    assert store.get_run(slow.id).state is RunState.RUNNING


def test_another_runs_tasks_are_rendered_while_one_runs_templates_are_slow(
    store: SqliteStore | DynamoStore, clock: RenderClock
) -> None:
    # GIVEN a slow run triggered first (its 20 tasks ahead in the queue) and then a quick one
    scheduler, dispatcher, _ = scheduler_of(store, clock)
    slow, _ = scheduler.trigger("b", "slow")
    quick, _ = scheduler.trigger("a", "quick")
    # WHEN the first turn spends its budget on the slow run's templates
    scheduler.step()
    assert started(dispatcher, quick.id) == []
    assert len(started(dispatcher, slow.id)) == 3
    # THEN the next turn renders the quick run's task first, then goes on with the slow run
    scheduler.step()
    assert started(dispatcher, quick.id) == ["q"]
    assert len(started(dispatcher, slow.id)) == 6


def test_advance_leaves_what_it_could_not_render_to_a_turn_it_kicks(
    store: SqliteStore | DynamoStore, clock: RenderClock
) -> None:
    # GIVEN the AWS path: a turn that claims only from the runs it is told of
    scheduler, dispatcher, _ = scheduler_of(store, clock)
    slow, _ = scheduler.trigger("b", "slow")
    assert scheduler.take_runs_to_dispatch() == [slow.id]
    # WHEN advance is kicked for the run
    scheduler.advance((), runs=[slow.id])
    # THEN it rendered within its budget and names the run to kick again
    assert len(started(dispatcher, slow.id)) == 3
    assert scheduler.take_left_over() == [slow.id]
    assert scheduler.take_left_over() == []  # taken
    # AND each kick goes on where the last one stopped, until nothing is left over
    left, turns = [slow.id], 1
    while left:
        scheduler.advance((), runs=left)
        left = scheduler.take_left_over()
        turns += 1
        assert turns <= 10
    assert turns == 7  # 3 a turn: 20 tasks in 7 turns, the last of which left nothing over
    assert len(started(dispatcher, slow.id)) == 20
    assert {attempt for _, _, attempt in dispatcher.dispatched} == {1}


def test_fast_templates_all_render_in_one_turn(
    store: SqliteStore | DynamoStore, clock: RenderClock
) -> None:
    scheduler, dispatcher, now = scheduler_of(store, clock)
    quick = [scheduler.trigger("a", "quick")[0] for _ in range(30)]
    assert scheduler.step() != now.now()
    assert all(started(dispatcher, run.id) == ["q"] for run in quick)
    assert scheduler.take_left_over() == []


def test_an_aws_invocation_kicks_advance_for_the_runs_it_left_over(
    store: SqliteStore | DynamoStore, clock: RenderClock
) -> None:
    from types import SimpleNamespace

    from stratoflow.adapters.aws.results import Kick, parse_message
    from stratoflow.adapters.aws.runtime import AwsFunction

    # GIVEN an advance invocation whose turn spent its render budget
    scheduler, dispatcher, _ = scheduler_of(store, clock)
    slow, _ = scheduler.trigger("b", "slow")
    sent: list[str] = []

    class Sqs:
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> Any:
            sent.extend(entry["MessageBody"] for entry in Entries)
            return {}

    function = AwsFunction(
        settings=SimpleNamespace(results_queue_url="results"),  # type: ignore[arg-type]
        clients=SimpleNamespace(sqs=Sqs()),  # type: ignore[arg-type]
        scheduler=scheduler,
        objects=None,  # type: ignore[arg-type]
        metered=None,
    )
    scheduler.advance((), runs=scheduler.take_runs_to_dispatch())
    # WHEN the invocation ends (functions/advance/app.py)
    kicked = function.kick_left_over()
    # THEN it kicked advance once for the run, whose next turn goes on with its tasks
    assert kicked == 1
    assert [parse_message(body, lambda _: {}) for body in sent] == [Kick(slow.id)]
    assert function.kick_left_over() == 0
    scheduler.advance((), runs=[slow.id])
    assert len(started(dispatcher, slow.id)) == 6


def test_a_pooled_claim_given_back_frees_its_pool_slots(
    store: SqliteStore | DynamoStore, clock: RenderClock
) -> None:
    # GIVEN slow tasks that take slots of a pool
    scheduler, dispatcher, _ = scheduler_of(store, clock)
    pool = scheduler.set_pool("warehouse", 10, project="b")
    tasks = "\n".join(
        f"  p{i}: {{type: shell, pool: warehouse, command: 'echo SLOW {i}'}}" for i in range(8)
    )
    scheduler.apply(f"name: pooled\nproject: b\ntasks:\n{tasks}\n")
    run, _ = scheduler.trigger("b", "pooled")
    # WHEN a turn renders three of them and gives the other claims back
    scheduler.step()
    # THEN only the three that start hold slots; the others wait in the pool's queue again
    assert len(started(dispatcher, run.id)) == 3
    held = scheduler.pool_store().get_pool(pool.key)
    assert held is not None
    assert held.used == 3
    waiting = scheduler.pool_store().pool_waiting(pool.key, 100)
    assert len(waiting) == 5
    assert all(t.state is TaskState.QUEUED and t.attempt == 0 for t in waiting)
    # AND later turns start them from there, each once
    for _ in range(5):
        scheduler.step()
    assert len(started(dispatcher, run.id)) == 8
    held = scheduler.pool_store().get_pool(pool.key)
    assert held is not None
    assert held.used == 8


def test_sub_workflow_params_count_against_the_budget(
    store: SqliteStore | DynamoStore, clock: RenderClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stratoflow.engine import subworkflow as rules

    real = rules.child_params

    def child_params(spec: Any, run: Any, task_id: str, *args: Any) -> Any:
        clock.now += SLOW_SECONDS
        return real(spec, run, task_id, *args)

    monkeypatch.setattr(rules, "child_params", child_params)
    # GIVEN a run of six sub-workflow tasks whose params take 0.4 s each to render
    scheduler, _, _ = scheduler_of(store, clock)
    scheduler.apply("name: leaf\nproject: b\ntasks: {t: {type: shell, command: 'true'}}\n")
    tasks = "\n".join(f"  c{i}: {{type: workflow, workflow: leaf}}" for i in range(6))
    scheduler.apply(f"name: parent\nproject: b\ntasks:\n{tasks}\n")
    run, _ = scheduler.trigger("b", "parent")
    # WHEN the scheduler turns
    scheduler.step()
    # THEN three children started; the other tasks went back to the queue
    states = [t.state for t in store.get_tasks(run.id)]
    assert states.count(TaskState.RUNNING) == 3
    assert states.count(TaskState.QUEUED) == 3
    # AND the next turn starts the rest
    scheduler.step()
    assert all(t.state is TaskState.RUNNING for t in store.get_tasks(run.id))
