"""A whole-run operation applied while another task of the run ends elsewhere (another Lambda
on AWS): the operation reads the run and its tasks, the other task's end is applied (its
counter changes land), then the operation's plan is written. The run's counters must still
say what its tasks say, and the run must end when its last task does: a plan that wrote the
counters it computed from its read would erase the end's count (the run never ends, or
ends early).

The end is applied by a second scheduler on the same store (another process), between the
operation's read and its ``apply_plan``. On both stores (SQLite, DynamoDB on moto): a
local scheduler owns its home alone and decides under one lock, so this cannot happen
there, but the store keeps the counts the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.faultinject import check_counters
from tests.stores import STORE_KINDS
from tests.unit.test_subworkflow import CHILD, Harness, succeed
from tests.unit.test_subworkflow_child_ends_again import drive, fail_load

from stratoflow.engine import AttemptResult, AttemptStatus, Plan, RunState, TaskState
from stratoflow.errors import Conflict
from stratoflow.service import Finished, Scheduler

PAIR = """\
name: pair
tasks:
  a: {type: shell, command: "true"}
  b: {type: shell, command: "true"}
"""
FORK = """\
name: fork
tasks:
  a: {type: shell, command: "true"}
  b: {type: shell, command: "true"}
  c: {type: shell, command: "true", depends_on: [a]}
"""
SIDES_PARENT = """\
name: sides_parent
tasks:
  child: {type: workflow, workflow: load_region}
  after: {type: shell, depends_on: [child], command: "echo {{ tasks.child.outputs.extract.rows }}"}
  side: {type: shell, command: "echo side"}
  long: {type: shell, command: "echo long"}
"""
OK = AttemptResult(AttemptStatus.SUCCEEDED)
FAILED = AttemptResult(AttemptStatus.FAILED, error="exit code 1", exit_code=1)


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with Harness.opened(request.param, tmp_path, CHILD, PAIR, FORK, SIDES_PARENT) as harness:
        yield harness


def elsewhere(h: Harness) -> Scheduler:
    """Another process's scheduler on the same store (another Lambda)."""
    return Scheduler(h.store, h.store, h.dispatcher, h.clock)


def between(
    h: Harness, monkeypatch: pytest.MonkeyPatch, run_id: str, action: Callable[[], None]
) -> list[Plan]:
    """Run ``action`` once, when the next plan of ``run_id`` is about to be written (its
    operation has read the run and its tasks). Returns the plans seen (the first one is
    the one ``action`` went before)."""
    seen: list[Plan] = []
    original = h.store.apply_plan

    def apply_plan(plan: Plan, expect: RunState, **options: Any) -> bool:
        if plan.run.id == run_id:
            seen.append(plan)
            if len(seen) == 1:
                action()
        return original(plan, expect, **options)

    monkeypatch.setattr(h.store, "apply_plan", apply_plan)
    return seen


def end(h: Harness, run_id: str, task_id: str, result: AttemptResult = OK) -> None:
    """The attempt of ``task_id`` ends, applied by another process's advance (the hot path
    of the AWS runtime)."""
    (key,) = [k for k in h.dispatcher.pending if k[:2] == (run_id, task_id)]
    del h.dispatcher.pending[key]
    elsewhere(h).advance([Finished(*key, result)])


def running(h: Harness, name: str) -> str:
    run, _ = h.scheduler.trigger("default", name)
    h.scheduler.step()
    assert {t.task_id for t in h.store.get_tasks(run.id) if t.state is TaskState.RUNNING} == {
        "a",
        "b",
    }
    return run.id


def test_a_mark_while_another_task_ends_keeps_its_count_and_ends_the_run(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a running run whose a and b both run
    run_id = running(h, "pair")
    # WHEN a is marked succeeded, and b's end is applied between the mark's read and write
    between(h, monkeypatch, run_id, lambda: end(h, run_id, "b"))
    h.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)
    # THEN the counters say what the tasks say (b's end is counted), and with every task
    # ended the run succeeded (b's turn saw a running; the mark saw b running)
    check_counters(h.store, run_id)
    run = h.store.get_run(run_id)
    assert (run.n_done, run.n_failed, run.n_running) == (2, 0, 0)
    assert run.state is RunState.SUCCEEDED


def test_a_mark_while_another_task_fails_keeps_the_failure(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a running run whose a and b run, and c waits on a
    run_id = running(h, "fork")
    # WHEN a is marked succeeded while b's failure is applied between its read and write
    between(h, monkeypatch, run_id, lambda: end(h, run_id, "b", FAILED))
    h.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)
    # THEN b's failure is counted, c runs, and the run fails when c ends (not before)
    check_counters(h.store, run_id)
    assert h.store.get_run(run_id).state is RunState.RUNNING
    h.scheduler.step()
    end(h, run_id, "c")
    check_counters(h.store, run_id)
    run = h.store.get_run(run_id)
    assert (run.n_done, run.n_failed, run.n_running) == (3, 1, 0)
    assert run.state is RunState.FAILED


def test_a_mark_of_a_task_that_ends_meanwhile_is_refused_and_changes_nothing(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a running run whose a and b run
    run_id = running(h, "pair")
    # WHEN a's own attempt ends (failed) between the mark's read of a and its write
    between(h, monkeypatch, run_id, lambda: end(h, run_id, "a", FAILED))
    # THEN the mark is refused: a ended as its attempt said, counted once
    with pytest.raises(Conflict, match="changed"):
        h.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)
    assert h.store.get_task(run_id, "a").state is TaskState.FAILED
    check_counters(h.store, run_id)
    run = h.store.get_run(run_id)
    assert (run.n_done, run.n_failed, run.n_running) == (1, 1, 1)
    # AND the run ends (failed) with b
    end(h, run_id, "b")
    assert h.store.get_run(run_id).state is RunState.FAILED
    check_counters(h.store, run_id)


def test_a_child_end_taken_while_a_side_task_ends_keeps_its_count(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a parent whose child failed (after: upstream_failed) while side and long still run
    run, _ = h.scheduler.trigger("default", "sides_parent")
    drive(h, fail_load, hold={"side", "long"})
    assert h.store.get_run(run.id).state is RunState.RUNNING
    assert h.store.get_task(run.id, "child").state is TaskState.FAILED
    child = h.child_of(run.id)
    h.clock.advance(60)
    # WHEN the child is rerun and succeeds, and the parent's task takes that end while side's
    # end is applied between the take's read of the parent and its write
    plans = between(h, monkeypatch, run.id, lambda: end(h, run.id, "side"))
    h.scheduler.rerun(child.id)
    drive(h, succeed, hold={"side", "long"})
    # THEN the parent's task took it (after ran on the child's outputs), side's end is
    # counted, and the parent succeeds when long ends (not before)
    assert plans, "the parent's task never took its child's new end"
    assert h.store.get_task(run.id, "child").state is TaskState.SUCCEEDED
    assert h.store.get_task(run.id, "side").state is TaskState.SUCCEEDED
    assert h.store.get_task(run.id, "after").state is TaskState.SUCCEEDED
    check_counters(h.store, run.id)
    assert h.store.get_run(run.id).state is RunState.RUNNING
    end(h, run.id, "long")
    check_counters(h.store, run.id)
    parent = h.store.get_run(run.id)
    assert (parent.n_done, parent.n_failed, parent.n_running) == (4, 0, 0)
    assert parent.state is RunState.SUCCEEDED


WIDE = "name: wide\ntasks:\n" + "\n".join(
    [
        '  a: {type: shell, command: "true"}',
        '  b: {type: shell, command: "true"}',
        *[f'  w{i}: {{type: shell, command: "true", depends_on: [a]}}' for i in range(110)],
    ]
)


def test_a_mark_too_large_for_one_transaction_keeps_the_count_of_an_end_meanwhile(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a running run whose a and b run, and 110 tasks wait on a (a mark of a rewrites
    # 111 tasks: on DynamoDB a journaled plan, whose commit cannot check every one)
    h.scheduler.apply(WIDE)
    run_id = running(h, "wide")
    # WHEN a is marked succeeded while b's end is applied between the mark's read and write
    between(h, monkeypatch, run_id, lambda: end(h, run_id, "b"))
    h.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)
    # THEN b's end is counted, and the run succeeds once the 110 have run
    check_counters(h.store, run_id)
    h.scheduler.step()
    for key in list(h.dispatcher.pending):
        if key[0] == run_id:
            end(h, run_id, key[1])
    check_counters(h.store, run_id)
    run = h.store.get_run(run_id)
    assert (run.n_done, run.n_failed, run.n_running) == (112, 0, 0)
    assert run.state is RunState.SUCCEEDED


def test_a_rerun_decided_from_an_end_that_was_rerun_meanwhile_is_refused(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a run that failed (a failed, b succeeded)
    run, _ = h.scheduler.trigger("default", "pair")
    h.scheduler.step()
    end(h, run.id, "a", FAILED)
    end(h, run.id, "b")
    assert h.store.get_run(run.id).state is RunState.FAILED

    def rerun_and_fail_again() -> None:
        h.clock.advance(30)
        other = elsewhere(h)
        other.rerun(run.id)
        other.step()
        end(h, run.id, "a", FAILED)

    # WHEN a rerun reads it, and between its read and its write another rerun of it runs a
    # again, which fails again: the run is failed again, as the first rerun read it
    between(h, monkeypatch, run.id, rerun_and_fail_again)
    # THEN the first rerun, decided from the older end, is refused: nothing of it is written
    with pytest.raises(Conflict, match="changed"):
        h.scheduler.rerun(run.id)
    h.scheduler.step()
    assert sorted(k[2] for k in h.dispatcher.dispatched if k[:2] == (run.id, "a")) == [1, 2]
    assert not h.dispatcher.pending
    check_counters(h.store, run.id)
    ended = h.store.get_run(run.id)
    assert ended.state is RunState.FAILED
    assert h.store.get_task(run.id, "a").attempt == 2


JOIN = """\
name: join
tasks:
  a: {type: shell, command: "true"}
  b: {type: shell, command: "true"}
  c: {type: shell, command: "true", depends_on: [a, b]}
"""


def test_a_mark_while_another_parent_of_a_reset_task_ends_keeps_that_parent_counted(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a running run whose a and b run, and c waits on both
    h.scheduler.apply(JOIN)
    run_id = running(h, "join")
    # WHEN a is marked succeeded (c is decided again from a and b as read: b running) while
    # b's end, counted in c, is applied between the mark's read and its write
    between(h, monkeypatch, run_id, lambda: end(h, run_id, "b"))
    try:
        h.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)
    except Conflict:  # refused, nothing written: its user marks again
        h.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)
    # THEN c runs (both its parents counted), and the run succeeds when it ends
    h.scheduler.step()
    end(h, run_id, "c")
    check_counters(h.store, run_id)
    assert h.store.get_run(run_id).state is RunState.SUCCEEDED
