"""A backfill's cancel survives any single failed write, on both runtimes (tests/faultinject.py's
faults, stores and executor): a two-date serial backfill is cancelled once its first date's run
runs, with the k-th write of the cancel failing, before it applied (a throttle) or after (a
timeout after the request). What would happen next is let happen: a process that failed is
replaced and the reconciler passes; a cancel that raised is retried by its client (the API
answered 503 "nothing was changed; try again"). Every drive must end as the one without a
fault: no run left running, the backfill cancelled, its first date stopped; and a cancel that
raised must really have changed nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.fakes import FakeClock
from tests.faultinject import T0, Executor, Faults, sqlite_store

from stratoflow.engine import AttemptResult, AttemptStatus, RunState
from stratoflow.engine.backfill import Backfill
from stratoflow.errors import Conflict, Unavailable
from stratoflow.ports import BackfillStore, StateStore
from stratoflow.service import Finished, Scheduler, scheduled_run_id

YAML = """\
name: daily
tasks:
  a: {type: shell, command: 'true'}
  b: {type: shell, command: 'true', depends_on: [a]}
"""
FAULTS = (ClientError, sqlite3.OperationalError, RuntimeError)


@dataclass
class Outcome:
    backfill: str  # its state
    dates: tuple[str, ...]
    runs: tuple[str, ...]  # each date's run's state ("none": never made)
    unkilled: int  # attempts still executing for a task no longer running them
    cancel_writes: tuple[int, int]  # the writes the (first) cancel made: (first, last)
    dishonest: str  # a cancel that raised although it had changed something: what it changed


def drive(store: StateStore, faults: Faults, *, aws: bool) -> Outcome:
    clock = FakeClock(T0)
    executor = Executor()

    def fresh() -> Scheduler:
        return Scheduler(
            store, store, executor, clock,  # type: ignore[arg-type]
            retry_lead=timedelta(days=366) if aws else timedelta(0),
        )  # fmt: skip

    scheduler = fresh()
    assert isinstance(store, BackfillStore)
    days = ["2026-04-01", "2026-04-02"]
    run_ids = [
        scheduled_run_id("default", "daily", datetime.fromisoformat(f"{d}T00:00:00+00:00"))
        for d in days
    ]

    def reconcile() -> None:
        complete = getattr(store, "complete_pending_plans", None)
        if complete is not None:
            complete()
        scheduler.recover()
        scheduler.step()

    def attempt(call: Callable[[], Any]) -> bool:
        nonlocal scheduler
        try:
            call()
        except (*FAULTS, Conflict):
            if not faults.fired:
                raise
            scheduler = fresh()  # the process that failed is replaced
            for _ in range(3):
                try:
                    reconcile()
                    break
                except FAULTS:
                    scheduler = fresh()
            return False
        return True

    def snapshot(backfill_id: str) -> tuple[Any, ...]:
        b = store.get_backfill(backfill_id)
        return (b.state, b.revision, tuple(state_of(r) for r in run_ids))

    def state_of(run_id: str) -> str:
        try:
            return store.get_run(run_id).state.value
        except Exception:
            return "none"

    scheduler.apply(YAML)
    made = scheduler.backfills.create("default", "daily", start=days[0], end=days[1])
    scheduler.step()
    faults.armed = True
    cancelled = False
    cancel_writes = (0, 0)
    dishonest = ""
    inbox: list[Finished] = []
    for _ in range(200):
        if not cancelled and state_of(run_ids[0]) == RunState.RUNNING.value:
            before = snapshot(made.id)
            first = faults.count + 1
            got: Backfill | Exception
            try:
                got = scheduler.backfills.cancel(made.id)
            except (*FAULTS, Conflict, Unavailable) as exc:
                got = exc
            if isinstance(got, Conflict):  # the retry of a cancel done after all
                assert "already cancelled" in str(got), got
                cancelled = True
            elif isinstance(got, Unavailable):  # it says what was done: the retry finishes
                assert faults.fired
                assert "the cancel is recorded" in str(got), got
                if snapshot(made.id)[0].value != "cancelling":
                    dishonest = f"said recorded, yet {snapshot(made.id)}"
                scheduler = fresh()
                attempt(reconcile)
            elif isinstance(got, Exception):  # the API answers 503 "nothing was changed"
                assert faults.fired
                after = snapshot(made.id)
                if after != before:
                    dishonest = f"raised, yet {before} became {after}"
                scheduler = fresh()  # the api function's container is replaced
                attempt(reconcile)
            else:
                assert got.state.value in ("cancelling", "cancelled"), got
                cancelled = True
            if cancel_writes == (0, 0):
                cancel_writes = (first, faults.count)
            continue
        for key in list(executor.pending):
            executor.pending.pop(key)
            status = AttemptStatus.STOPPED if key in executor.killed else AttemptStatus.SUCCEEDED
            inbox.append(Finished(*key, AttemptResult(status, exit_code=0)))
        delivery, inbox = inbox, []
        call = scheduler.advance if aws else scheduler.step
        if not attempt(lambda d=delivery, c=call: c(d)):  # type: ignore[misc]
            inbox += delivery  # redelivered
        clock.advance(11)
        if not inbox and not executor.pending:
            attempt(reconcile)
            backfill = store.get_backfill(made.id)
            if cancel_writes != (0, 0) and backfill.state.terminal and not executor.pending:
                break
    else:
        raise AssertionError(f"did not settle (fault at write {faults.at}: {faults.fired_on})")
    reconcile()  # a last pass changes nothing any more
    backfill = store.get_backfill(made.id)
    return Outcome(
        backfill.state.value, tuple(d.state.value for d in backfill.dates),
        tuple(state_of(r) for r in run_ids),
        sum(k not in executor.killed for k in executor.pending), cancel_writes, dishonest,
    )  # fmt: skip


def sweep(open_store: Callable[[Faults], AbstractContextManager[StateStore]], aws: bool) -> int:
    faults = Faults()
    with open_store(faults) as store:
        baseline = drive(store, faults, aws=aws)
    assert baseline.backfill == "cancelled", baseline
    assert baseline.dates == ("stopped", "not_run"), baseline
    assert baseline.runs == ("stopped", "none"), baseline
    first, last = baseline.cancel_writes
    assert last > first, baseline  # its intent, the run's stop (and its end)
    checked = 0
    for k in range(first, last + 1):
        for late in (False, True):
            faults = Faults(at=k, after=late)
            with open_store(faults) as store:
                got = drive(store, faults, aws=aws)
            where = f"fault {'after' if late else 'at'} write {k} ({faults.fired_on})"
            assert faults.fired, where
            assert not got.dishonest, f"{where}: the cancel raised, {got.dishonest}"
            assert got.unkilled == 0, f"{where}: attempts left running: {got}"
            assert (got.backfill, got.dates, got.runs) == (
                baseline.backfill, baseline.dates, baseline.runs,
            ), f"{where}: {got} != {baseline}"  # fmt: skip
            checked += 1
    return checked


@pytest.mark.timeout(600)
def test_every_write_of_a_backfill_cancel_fails_once_on_sqlite(tmp_path: Path) -> None:
    def open_store(faults: Faults) -> AbstractContextManager[StateStore]:
        return sqlite_store(tmp_path, faults)

    assert sweep(open_store, aws=False) >= 4


@pytest.mark.no_cover
@pytest.mark.timeout(900)
def test_every_write_of_a_backfill_cancel_fails_once_on_dynamodb(
    dynamodb_store: Callable[..., Any],
) -> None:
    assert sweep(dynamodb_store, aws=True) >= 6
