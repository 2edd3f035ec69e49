"""Turns survive any single failed write: for each workflow, fail the k-th store write for
every k (on SQLite at the statement, on DynamoDB at the boto3 client), let redelivery, a fresh
process and the reconciler do what they would, and check the run ends as it does without the
fault, with nothing dispatched twice and nothing left running. The large sweeps (a 1 -> 200 -> 1
fan, a stop while 150 tasks run) are ``python -m tests.faultinject``."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.faultinject import (
    SCENARIOS,
    T0,
    Branches,
    Faults,
    diamond,
    drives,
    sqlite_store,
    sweep,
)

from stratoflow import engine
from stratoflow.engine import Run, RunState, TaskInstance, TaskState
from stratoflow.ports import Attempt


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_write_fails_once_on_sqlite(name: str, tmp_path: Path) -> None:
    checked = sweep(SCENARIOS[name](), lambda f: sqlite_store(tmp_path, f), aws=False)
    assert checked > 5


@pytest.mark.no_cover
@pytest.mark.timeout(900)
def test_a_forked_sweep_sees_what_fresh_drives_see(dynamodb_store: Callable[..., Any]) -> None:
    """A DynamoDB sweep forks its drive without a fault at each write (``Branches``): each
    child fails the same write (the same call on the same keys) a fresh drive failing write k
    fails, and ends as it ends: the same run and task states, the same attempts dispatched,
    nothing left running (how many writes the recovery makes may differ: leases are read off
    the real clock)."""

    def ends(outcomes: dict[tuple[int, bool], Any]) -> dict[tuple[int, bool], tuple[Any, ...]]:
        return {
            k: (o.fired_on, o.run, o.tasks, o.dispatched, o.unkilled) for k, o in outcomes.items()
        }

    scenario = SCENARIOS["serial"]
    baseline, forked = drives(scenario(), dynamodb_store, aws=True, after=[False, True], fork=True)
    _, fresh = drives(scenario(), dynamodb_store, aws=True, after=[False, True], fork=False)
    assert len(forked) == 2 * baseline.writes
    assert ends(forked) == ends(fresh)
    assert all(o.fired and o.fired_on for o in forked.values())
    assert len({o.fired_on for o in forked.values()}) > 5  # the children failed different writes


@pytest.mark.no_cover
def test_a_forked_drive_that_dies_is_a_failure(
    monkeypatch: pytest.MonkeyPatch, dynamodb_store: Callable[..., Any]
) -> None:
    """A child that ends without reporting (killed, or exited) fails the sweep at its write."""
    monkeypatch.setattr(Branches, "report", lambda self, got: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(AssertionError, match=r"fault at write 1 of \d+: .*killed by signal 9"):
        sweep(SCENARIOS["serial"](), dynamodb_store, aws=True)


@pytest.mark.no_cover
@pytest.mark.timeout(900)
def test_the_sweep_notices_a_lost_turn(
    monkeypatch: pytest.MonkeyPatch, dynamodb_store: Callable[..., Any]
) -> None:
    """The harness can fail: with the propagation intent disabled (what the store did before),
    a fault between a task's end and its children's counts leaves the run unfinished."""
    from stratoflow.service import Scheduler

    monkeypatch.setattr(Scheduler, "_intent", property(lambda self: False))
    with pytest.raises(AssertionError, match="fault at write"):
        sweep(diamond(), dynamodb_store, aws=True)


@pytest.mark.no_cover
@pytest.mark.timeout(900)
def test_the_dynamodb_sweep_notices_a_reservation_left_open(
    monkeypatch: pytest.MonkeyPatch, dynamodb_store: Callable[..., Any]
) -> None:
    """The harness checks the counters: with the recovery of ``apply_each``'s reservations
    switched off, a fault between a reservation and its settlement leaves the run's counters
    off its tasks (claims counted running that never happened)."""
    from stratoflow.adapters.aws.dynamodb import DynamoStore

    monkeypatch.setattr(DynamoStore, "_finish_reservations", lambda self, run_id, counters: False)
    with pytest.raises(AssertionError, match=r"counters \(done, failed, running\)"):
        sweep(diamond(), dynamodb_store, aws=True)


@pytest.mark.no_cover
@pytest.mark.parametrize("held", [True, False], ids=["on_task", "stopped"])
@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_a_fault_at_a_late_end_on_dynamodb_leaves_the_attempt_recorded_once(
    held: bool, after: bool, dynamodb_store: Callable[..., Any]
) -> None:
    """A late end (its task's transition did not apply) whose write fails, before or after it
    applied, then comes again (SQS redelivers the report). ``on_task``: the attempt's first end
    is on its task item: the attempt stays recorded once, as that end, with no attempt item
    (a write cancelled by its condition fails the same whether or not it was sent).
    ``stopped``: the task was stopped while the attempt ran: the late end is its one record,
    an attempt item written once."""
    faults = Faults()
    with dynamodb_store(faults) as store:
        run = Run("r", "w", "p", 1, RunState.RUNNING, {}, T0, T0, n_tasks=1)
        store.create_run(run, [TaskInstance("r", "a")], None)
        before = store.get_task("r", "a")
        running = replace(before, state=TaskState.RUNNING, attempt=1, started_at=T0)
        assert store.put_task(running, before.state, before.attempt)
        first = Attempt("r", "a", 1, "succeeded", T0, ended_at=T0 + timedelta(seconds=1))
        late = replace(first, state="failed", exit_code=1, error="late")
        if held:
            done = replace(running, state=TaskState.SUCCEEDED, ended_at=first.ended_at)
            write = engine.TaskWrite(done, TaskState.RUNNING, 1)
            assert store.apply_end(engine.Decision("r", (write,), done=1), [first])
        else:
            stopped = replace(running, state=TaskState.STOPPED, ended_at=first.ended_at)
            assert store.put_task(stopped, TaskState.RUNNING, 1)

        faults.armed, faults.at, faults.after = True, faults.count + 1, after
        if held and after:
            store.finish_late_attempt(late)  # sent: its condition cancelled it
        else:
            with pytest.raises(Exception, match="injected fault"):
                store.finish_late_attempt(late)
        assert faults.fired
        store.finish_late_attempt(late)  # redelivered
        assert store.list_attempts("r") == [first if held else late]
        items = store.client.query(
            TableName=store.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :a)",
            ExpressionAttributeValues={":pk": {"S": "RUN#r"}, ":a": {"S": "A#"}},
        )["Items"]
        assert [i["sk"]["S"] for i in items] == ([] if held else ["A#a#000001"])


@pytest.fixture
def one_render_a_turn(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every render spends the turn's whole render budget: each turn prepares one claim and
    gives the others back to their queues (``Scheduler._prepare_claimed``), so every turn
    writes the give-backs the sweep then fails one by one."""
    from contextlib import contextmanager

    from stratoflow.service import Scheduler

    @contextmanager
    def spent(self: Scheduler) -> Iterator[None]:
        try:
            yield
        finally:
            self._render_left = 0.0

    monkeypatch.setattr(Scheduler, "rendering", spent)
    given_back: list[object] = []  # each claim given back (the sweep must reach them)
    unclaimed = engine.unclaimed

    def counted(*args: Any) -> Any:
        given_back.append(args)
        return unclaimed(*args)

    monkeypatch.setattr(engine, "unclaimed", counted)
    return given_back


@pytest.mark.parametrize("name", ["fan", "pooled"])
def test_every_write_fails_once_with_claims_given_back_on_sqlite(
    name: str, tmp_path: Path, one_render_a_turn: list[object]
) -> None:
    checked = sweep(SCENARIOS[name](), lambda f: sqlite_store(tmp_path, f), aws=False)
    assert checked > 5
    assert one_render_a_turn  # claims were given back


@pytest.mark.no_cover
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["diamond", "pooled"])
def test_every_write_fails_once_with_claims_given_back_on_dynamodb(
    name: str, dynamodb_store: Callable[..., Any], one_render_a_turn: list[object]
) -> None:
    checked = sweep(SCENARIOS[name](), dynamodb_store, aws=True, after=[False, True])
    assert checked > 5
    assert one_render_a_turn  # claims were given back
