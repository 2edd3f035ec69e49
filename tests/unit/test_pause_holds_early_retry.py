"""On AWS a retry is claimed at once and waits out its delay in the state machine
(``retry_lead``); a pause takes such a claim back (``Scheduler._hold_early_retries``) and the
resume dispatches it again. A sub-workflow task's retry is not such a claim: its child run is
what runs, and the pause holds it by pausing the child (``pause_children``). Both stores."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import state_store

from stratoflow.adapters.aws.runtime import RETRY_LEAD
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.ports import EventSink
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FAILED = AttemptResult(AttemptStatus.FAILED, error="exit 1", exit_code=1)
CHILD = "name: child\ntasks:\n  c: {type: shell, command: 'false'}\n"
PARENT = (
    "name: parent\ntasks:\n  sub: {type: workflow, workflow: child, retries: 1, retry_delay: 10m}\n"
)
FLAKY = "name: flaky\ntasks:\n  t: {type: shell, command: 'false', retries: 1, retry_delay: 10m}\n"


@pytest.fixture(params=["sqlite", "dynamodb"])
def aws(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Scheduler, Any]]:
    with state_store(request.param, tmp_path) as store:
        dispatcher = RecordingDispatcher()
        scheduler = Scheduler(
            store,
            store,
            dispatcher,
            FakeClock(T0),
            retry_lead=RETRY_LEAD,  # type: ignore[arg-type]
        )
        yield scheduler, dispatcher


def _fail_pending(s: Scheduler, d: RecordingDispatcher) -> None:
    for key in list(d.pending):
        del d.pending[key]
        s.advance([Finished(*key, FAILED)])


def test_a_pause_holds_a_retry_waiting_in_the_state_machine_and_the_resume_sends_it(
    aws: tuple[Scheduler, RecordingDispatcher],
) -> None:
    s, d = aws
    s.apply(FLAKY)
    s.trigger("default", "flaky", run_id="f")
    s.advance([])
    _fail_pending(s, d)  # attempt 2 claimed at once, waiting out its delay
    assert ("f", "t", 2) in d.dispatched
    s.pause("f")
    held = s.store.get_task("f", "t")
    assert (held.state, held.attempt, held.try_number) == (TaskState.UP_FOR_RETRY, 2, 1)
    assert d.killed == [("f", "t", 2)]
    (_, second) = s.store.list_attempts("f", "t")
    assert second.state == AttemptStatus.STOPPED.value
    # the stopped execution's late report changes nothing: its attempt is over
    s.advance([Finished("f", "t", 2, AttemptResult(AttemptStatus.FAILED, error="aborted"))])
    assert s.store.get_task("f", "t") == held
    assert s.store.list_attempts("f", "t")[1].state == AttemptStatus.STOPPED.value
    # the reconciler's pass, the delay over, starts nothing of the paused run
    s.clock.advance(11 * 60)  # type: ignore[attr-defined]
    s.step()
    assert ("f", "t", 3) not in d.dispatched
    s.resume("f")
    s.advance([])
    assert ("f", "t", 3) in d.dispatched  # the same try, under the next attempt number
    assert s.store.get_task("f", "t").state is TaskState.RUNNING
    # a late report of the stopped execution, once the next attempt runs: nothing changes
    running = s.store.get_task("f", "t")
    s.advance([Finished("f", "t", 2, AttemptResult(AttemptStatus.FAILED, error="aborted"))])
    assert s.store.get_task("f", "t") == running
    states = [a.state for a in s.store.list_attempts("f", "t")]
    assert states == ["failed", "stopped", "running"]


def test_a_pause_holds_a_sub_workflow_retry_by_pausing_its_child_run(
    aws: tuple[Scheduler, RecordingDispatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN a sub-workflow task whose child run failed, its retry claimed early (as a
    version that sent a sub-workflow's retry early claimed it: the child run started again)
    WHEN the parent is paused THEN the child run is paused with it, the task still runs its
    attempt (its retry is the child run, no execution to stop), and nothing is killed.
    (Held back to up_for_retry, the task was no longer found running by
    ``pause_children``: the child ran on while its parent was paused.)"""
    s, d = aws
    monkeypatch.setattr(Scheduler, "_waits_unsent", staticmethod(Scheduler._holds_slot))
    s.apply(CHILD)
    s.apply(PARENT)
    s.trigger("default", "parent", run_id="p")
    s.advance([])
    _fail_pending(s, d)  # the child's c fails: the child fails, the parent's sub retries
    s.advance([])
    sub = s.store.get_task("p", "sub")
    assert (sub.state, sub.attempt) == (TaskState.RUNNING, 2)
    s.pause("p")
    assert s.store.get_task("p", "sub").state is TaskState.RUNNING
    child = next(r for r in s.store.runs_in_states(list(RunState)) if r.id != "p")
    assert child.state is RunState.PAUSED
    assert d.killed == []


def test_a_sub_workflow_retry_waits_out_its_delay_where_retries_are_dispatched_early(
    aws: tuple[Scheduler, RecordingDispatcher],
) -> None:
    """GIVEN a sub-workflow task with a 10 min retry delay, on a scheduler that dispatches
    retries early (AWS: the state machine waits the delay out, ``retry_lead``) WHEN its child
    run fails THEN the child is not run again before the delay is over: nothing waits it out
    for a child run (the claim started the child at once). Its run is woken when it is due
    (``take_retry_wakes``), as a slot-bound retry's is, and the child runs again then."""
    s, d = aws
    s.apply(CHILD)
    s.apply(PARENT)
    s.trigger("default", "parent", run_id="p")
    s.advance([])
    (first,) = d.dispatched
    _fail_pending(s, d)
    s.advance([])
    assert len(d.dispatched) == 1  # the child's task is not run again yet
    assert s.store.get_task("p", "sub").state is TaskState.UP_FOR_RETRY
    wakes = s.take_retry_wakes()
    assert wakes == {"p": T0 + timedelta(minutes=10)}
    s.clock.advance(10 * 60)  # type: ignore[attr-defined]
    s.advance([], wakes=wakes)
    assert (first[0], first[1], 2) in d.dispatched  # the child's task, run again
    assert s.store.get_task("p", "sub").attempt == 2


def test_a_paused_run_s_sub_workflow_retry_waits_for_the_resume(
    aws: tuple[Scheduler, RecordingDispatcher],
) -> None:
    """A sub-workflow task's retry, waiting out its delay, its run paused: the wake at its
    due time runs nothing; the resume runs the child again."""
    s, d = aws
    s.apply(CHILD)
    s.apply(PARENT)
    s.trigger("default", "parent", run_id="p")
    s.advance([])
    (first,) = d.dispatched
    _fail_pending(s, d)
    s.pause("p")
    wakes = s.take_retry_wakes()
    s.clock.advance(10 * 60)  # type: ignore[attr-defined]
    s.advance([], wakes=wakes)
    s.step()  # the reconciler's pass too
    assert len(d.dispatched) == 1
    s.resume("p")
    s.advance([], runs=["p"])
    assert (first[0], first[1], 2) in d.dispatched


def test_a_sub_workflow_task_whose_timeout_only_warns_wakes_its_run_at_its_deadline(
    aws: tuple[Scheduler, RecordingDispatcher],
) -> None:
    """GIVEN a sub-workflow task with a 10 min timeout that only warns, where nothing polls
    (AWS: the reconciler passes every 5 min) WHEN it is claimed (its child run started) THEN
    its run is woken at its deadline, as a dispatched task's is, and that wake says the
    warning (its deadline cleared): not the reconciler's next pass."""
    s, _ = aws
    s.apply(CHILD.replace("'false'", "'true'"))
    s.apply(
        "name: parent\ntasks:\n"
        "  sub: {type: workflow, workflow: child, timeout: 10m, on_timeout: warn}\n"
    )
    s.trigger("default", "parent", run_id="p")
    s.advance([])
    sub = s.store.get_task("p", "sub")
    assert (sub.state, sub.deadline) == (TaskState.RUNNING, T0 + timedelta(minutes=10))
    wakes = s.take_retry_wakes()
    assert wakes == {"p": T0 + timedelta(minutes=10)}
    s.clock.advance(10 * 60)  # type: ignore[attr-defined]
    s.advance([], wakes=wakes)
    warned = s.store.get_task("p", "sub")
    assert (warned.state, warned.deadline) == (TaskState.RUNNING, None)


class Events(EventSink):
    def __init__(self) -> None:
        self.emitted: list[tuple[str, int | None]] = []

    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        self.emitted.append((kind, detail.get("attempt")))


def test_locally_a_retry_waiting_through_a_pause_is_announced_once(tmp_path: Path) -> None:
    """The local runtime (no ``retry_lead``): a retry waits out its delay UP_FOR_RETRY, a
    pause holds nothing and the resume releases nothing, so ``task.retrying`` is emitted for
    the failed attempt only (events.jsonl, alerts). AWS publishes the same from its stream,
    where a pause does take a claim back (tests/aws_alerts/test_lifecycle_stream.py)."""
    events, d = Events(), RecordingDispatcher()
    with state_store("sqlite", tmp_path) as store:
        s = Scheduler(store, store, d, FakeClock(T0), events)
        s.apply(FLAKY)
        s.trigger("default", "flaky", run_id="f")
        s.advance([])
        _fail_pending(s, d)
        s.pause("f")
        s.clock.advance(11 * 60)  # type: ignore[attr-defined]
        s.step()
        s.resume("f")
        s.step()
        s.advance([])
        assert ("f", "t", 2) in d.pending
        _fail_pending(s, d)
    assert [e for e in events.emitted if e[0].startswith("task.")] == [
        ("task.retrying", 1),
        ("task.failed", 2),
    ]
