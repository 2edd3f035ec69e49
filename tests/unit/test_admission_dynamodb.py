"""``max_active_runs`` holds on DynamoDB however many advance invocations start runs at once.

Each invocation counts a workflow's active runs on the state index, which lags the writes:
two invocations (or one, a moment later) could each count a free slot and start a run in
it. The start of a queued run therefore also rewrites the workflow's admission item,
conditional on the version it read, and counts the runs that item lists, read strongly. Here
the index is made to lag for good (it shows no active run at all), the worst it can do."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import state_store

from stratoflow import engine
from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws.dynamodb import ADMISSION_RUNS_MAX, DynamoStore
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 6, 1, tzinfo=UTC)
Q, R, S = RunState.QUEUED, RunState.RUNNING, RunState.SUCCEEDED


def sleeper(limit: int) -> str:
    return (
        f"name: sleeper\nmax_active_runs: {limit}\ntasks:\n  t: {{type: shell, command: sleep 6}}\n"
    )


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[DynamoStore]]:
    """Two stores on one table (two advance invocations), each seeing an index that shows
    no active run."""
    with state_store("dynamodb", tmp_path) as first:
        assert isinstance(first, DynamoStore)
        second = DynamoStore(first.table, client=first.client)
        for store in (first, second):
            monkeypatch.setattr(store, "_active_run_ids", lambda project, workflow: set())
        yield [first, second]


def schedulers(stores: list[DynamoStore], clock: FakeClock) -> list[Scheduler]:
    return [Scheduler(s, s, RecordingDispatcher(), clock) for s in stores]


def trigger(scheduler: Scheduler, clock: FakeClock, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        clock.advance(1)  # distinct creation times: the queue's order is certain
        run, _ = scheduler.trigger("default", "sleeper")
        ids.append(run.id)
    return ids


def states(store: DynamoStore, ids: list[str]) -> list[RunState]:
    return [store.get_run(i).state for i in ids]


def finish(scheduler: Scheduler, run_id: str) -> None:
    """The run's one task (dispatched by ``scheduler``) succeeds."""
    dispatcher = scheduler.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    del dispatcher.pending[(run_id, "t", 1)]
    scheduler.on_finished([Finished(run_id, "t", 1, AttemptResult(AttemptStatus.SUCCEEDED))])


def admitted(store: DynamoStore, project: str = "default", workflow: str = "sleeper") -> Any:
    return store._get(it.workflow_pk(project, workflow), it.ADMISSION_SK)


def test_invocations_that_count_on_a_lagging_index_start_no_more_than_the_limit(
    stores: list[DynamoStore],
) -> None:
    clock = FakeClock(T0)
    a, b = schedulers(stores, clock)
    a.apply(sleeper(1))
    ids = trigger(a, clock, 3)
    # WHEN both invocations advance, again and again, counting no active run on the index
    for _ in range(3):
        a.step()
        b.step()
    # THEN one run started, by one of them, and the others wait
    assert states(stores[0], ids) == [R, Q, Q]
    starter = a if (ids[0], "t", 1) in a.dispatcher.pending else b  # type: ignore[attr-defined]
    # WHEN it ends, its slot is free again: the next run starts, and only that one
    finish(starter, ids[0])
    for _ in range(3):
        b.step()
        a.step()
    assert states(stores[0], ids) == [S, R, Q]
    assert sorted(admitted(stores[0])["runs"]["SS"]) == [ids[1]]


def test_of_two_starts_that_read_the_same_admission_one_applies(
    stores: list[DynamoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both invocations read the workflow's admission before either writes: the second
    write is refused and its run stays queued, nothing of its start written."""
    clock = FakeClock(T0)
    a, _ = schedulers(stores, clock)
    a.apply(sleeper(2))
    with monkeypatch.context() as held:  # made queued; started by hand below
        held.setattr(stores[0], "start_queued_run", lambda plan, max_active: False)
        first, second, third = trigger(a, clock, 3)
    plans = {}
    for run_id in (first, second, third):
        run = stores[0].get_run(run_id)
        spec = a._run_spec(run)
        roots = stores[0].get_tasks(run_id, list(spec.dag.roots))
        plans[run_id] = engine.start_plan(spec, run, roots, clock.now())
    # one run already holds a slot, so the admission item exists and has a version
    assert stores[0].start_queued_run(plans[first], 2)
    version = it.get_n(admitted(stores[0]), "v")

    real = stores[0]._apply_plan
    interleaved: list[bool] = []

    def other_invocation_first(*args: Any) -> bool:
        if not interleaved:  # the other invocation takes the last slot between read and write
            interleaved.append(stores[1].start_queued_run(plans[third], 2))
        return real(*args)

    monkeypatch.setattr(stores[0], "_apply_plan", other_invocation_first)
    assert stores[0].start_queued_run(plans[second], 2) is False
    assert interleaved == [True]
    assert states(stores[0], [first, second, third]) == [R, Q, R]
    assert stores[0].get_task(second, "t").state is TaskState.WAITING
    held = admitted(stores[0])
    assert sorted(held["runs"]["SS"]) == sorted([first, third])
    assert it.get_n(held, "v") == version + 1
    # and with the admission read again, the workflow is full: refused before any write
    monkeypatch.setattr(stores[0], "_apply_plan", real)
    assert stores[0].start_queued_run(plans[second], 2) is False
    assert it.get_n(admitted(stores[0]), "v") == version + 1


def test_runs_the_index_shows_active_count_too(
    stores: list[DynamoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run made active without a start (a rerun of an ended run) is not in the admission
    item; once the index shows it, it holds its slot."""
    clock = FakeClock(T0)
    a, _ = schedulers(stores, clock)
    a.apply(sleeper(1))
    monkeypatch.setattr(stores[0], "_active_run_ids", lambda project, workflow: {"rerun-1"})
    (queued,) = trigger(a, clock, 1)
    a.step()
    assert states(stores[0], [queued]) == [Q]
    assert admitted(stores[0]) is None


def test_a_limit_above_what_the_item_can_list_is_counted_on_the_index(
    stores: list[DynamoStore],
) -> None:
    clock = FakeClock(T0)
    a, _ = schedulers(stores, clock)
    a.apply(sleeper(ADMISSION_RUNS_MAX + 1))
    ids = trigger(a, clock, 2)
    a.step()
    assert states(stores[0], ids) == [R, R]
    assert admitted(stores[0]) is None


def test_the_limit_catchup_implies_holds_on_a_lagging_index(stores: list[DynamoStore]) -> None:
    """A workflow whose schedule catches up and that sets no max_active_runs runs 16 at once
    (Airflow's default): the store's admission enforces that implied limit too, not only the
    service's count (which the lagging index makes 0 here)."""
    clock = FakeClock(T0)
    a, b = schedulers(stores, clock)
    start = "2020-01-01T00:00:00"
    a.apply(
        "name: sleeper\n"
        f'schedule: {{cron: "0 0 1 1 *", start: {start}, catchup: true}}\n'
        "tasks:\n  t: {type: shell, command: sleep 6}\n"
    )
    ids = trigger(a, clock, 20)
    for _ in range(2):
        a.step()
        b.step()
    assert states(stores[0], ids) == [R] * 16 + [Q] * 4
    assert len(admitted(stores[0])["runs"]["SS"]) == 16


def test_a_refused_start_leaves_the_workflows_younger_runs_for_the_next_pass(
    stores: list[DynamoStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index lags, so the scheduler counts a free slot; the admission says the workflow
    is full. The first refusal ends the pass for that workflow: its younger queued runs are
    not each tried (reads for nothing), nor could one start ahead of the older run."""
    clock = FakeClock(T0)
    a, _ = schedulers(stores, clock)
    a.apply(sleeper(1))
    ids = trigger(a, clock, 6)
    assert states(stores[0], ids) == [R, Q, Q, Q, Q, Q]
    tried: list[str] = []
    real = stores[0].start_queued_run

    def counted(plan: Any, max_active: int | None) -> bool:
        tried.append(plan.run.id)
        return real(plan, max_active)

    monkeypatch.setattr(stores[0], "start_queued_run", counted)
    a.step()
    assert tried == [ids[1]]
    assert states(stores[0], ids) == [R, Q, Q, Q, Q, Q]


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_the_start_that_waited_for_a_slot_survives_any_failed_write(
    after: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of a ``max_active_runs: 1`` workflow: the first runs, the second waits. The
    turn that ends the first and starts the second (the admission's versioned rewrite) is
    driven with its k-th write failing, for every k (``after``: the write applied, then its
    caller saw an error), as the fault sweeps do: the outcome is redelivered to a fresh
    process and the reconciler passes. The index shows no active run throughout, so only the
    admission item holds the limit. Never two runs active at once, the second run's task
    dispatched exactly once, and both runs end as without the fault."""
    from botocore.exceptions import ClientError
    from tests.faultinject import Executor, Faults, _scheduler, dynamodb_tables

    checked = 0
    with dynamodb_tables() as open_store:
        for k in range(1, 200):
            faults = Faults(after=after)
            with open_store(faults) as store:
                monkeypatch.setattr(store, "_active_run_ids", lambda project, workflow: set())
                clock, executor = FakeClock(T0), Executor()
                s = _scheduler(store, executor, clock, aws=True)
                s.apply(sleeper(1))
                first, second = trigger(s, clock, 2)
                s.step()
                assert states(store, [first, second]) == [R, Q]
                faults.armed, faults.at = True, k
                ended = [Finished(first, "t", 1, AttemptResult(AttemptStatus.SUCCEEDED))]
                del executor.pending[(first, "t", 1)]
                for _ in range(6):  # SQS redelivers until the turn goes through
                    try:
                        s.advance(ended)
                        s.recover()
                        s.step()
                        break
                    except (ClientError, RuntimeError):
                        assert faults.fired
                        s = _scheduler(store, executor, clock, aws=True)  # a fresh process
                    finally:
                        active = [r for r in (first, second) if store.get_run(r).state.active]
                        assert len(active) <= 1, f"write {k}: {active} active at once"
                assert states(store, [first, second]) == [S, R], f"write {k}"
                assert list(executor.pending) == [(second, "t", 1)], f"write {k}"
                fired = faults.fired
            if not fired:  # past the last write of the turn: the whole sweep is done
                break
            checked += 1
    assert checked >= 5
