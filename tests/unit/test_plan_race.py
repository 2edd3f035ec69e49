"""Two whole-run operations decided from one read of a run, both applied: the second must
be refused (its caller decides it again from a new read), whatever the size of the plans.

On DynamoDB a plan of more than ~98 tasks is journaled: its commit can check only as many
of the tasks it was decided from as fit in one transaction, so a check of the tasks alone
does not see that another plan rewrote the others meanwhile. The plan generation of the
run (``Run.plan_gen``), which every plan writes conditional on the value it read, does.

Each test decides both plans from the same state deterministically: the first operation
reads the run, then (``between``) the second reads it and is applied, then the first is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.faultinject import check_counters
from tests.stores import STORE_KINDS
from tests.unit.test_plan_counter_race import FAILED, OK, between, elsewhere, end, running
from tests.unit.test_subworkflow import CHILD, Harness

from stratoflow.engine import RunState, TaskState
from stratoflow.errors import Conflict

# c0..c99 wait on a and b: a mark of a or of b rewrites 101 tasks (journaled on DynamoDB)
JOINED = "name: joined\ntasks:\n" + "\n".join(
    [
        '  a: {type: shell, command: "true"}',
        '  b: {type: shell, command: "true"}',
        *[f'  c{i}: {{type: shell, command: "true", depends_on: [a, b]}}' for i in range(100)],
    ]
)


# a's failure stops the run, while b and c run
STOPPER = """\
name: stopper
on_failure: stop
tasks:
  a: {type: shell, command: "true"}
  b: {type: shell, command: "true"}
  c: {type: shell, command: "true"}
"""


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with Harness.opened(request.param, tmp_path, CHILD, JOINED, STOPPER) as harness:
        yield harness


def test_a_failure_that_stops_its_run_decides_the_stop_again_after_a_mark_meanwhile(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a running run of a workflow whose failures stop it: a, b and c run
    run, _ = h.scheduler.trigger("default", "stopper")
    h.scheduler.step()
    run_id = run.id
    # WHEN a fails, and b is marked succeeded (elsewhere) between the read of the stop that
    # a's failure decides and its write (the stop, decided before the mark, is refused)
    between(h, monkeypatch, run_id, lambda: elsewhere(h).mark(run_id, "b", TaskState.SUCCEEDED))
    end(h, run_id, "a", FAILED)
    # THEN the stop is decided again from a new read, and applied: the run failed, b's mark
    # stands, c is stopped, and the counters say what the tasks say
    assert h.store.get_run(run_id).state is RunState.FAILED
    states = {t.task_id: t.state for t in h.store.get_tasks(run_id)}
    assert states == {"a": TaskState.FAILED, "b": TaskState.SUCCEEDED, "c": TaskState.STOPPED}
    check_counters(h.store, run_id)


def test_two_large_marks_decided_from_one_read_apply_one_after_the_other(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a running run: a runs, b failed, so the 100 c's are upstream_failed
    run_id = running(h, "joined")
    end(h, run_id, "b", FAILED)
    assert h.store.get_task(run_id, "c0").state is TaskState.UPSTREAM_FAILED
    assert h.store.get_run(run_id).state is RunState.RUNNING
    # WHEN a is marked succeeded, and between that mark's read and its write b is marked
    # succeeded elsewhere: each decides the c's again from the one read (b's mark: waiting
    # on a, still running; a's mark: upstream_failed by b, failed), and each commit checks
    # the task it marks (unchanged by the other) but not the c's (too many to fit)
    between(h, monkeypatch, run_id, lambda: elsewhere(h).mark(run_id, "b", TaskState.SUCCEEDED))
    try:
        h.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)
    except Conflict:  # refused, nothing written: its user marks again
        h.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)
    # THEN both marks hold, decided in turn: the c's (a and b succeeded) are queued to run,
    # and the counters say what the tasks say (not the c's ends that one plan erased and
    # the other counted: a run that would never end)
    assert h.store.get_task(run_id, "a").state is TaskState.SUCCEEDED
    assert h.store.get_task(run_id, "b").state is TaskState.SUCCEEDED
    assert {t.state for t in h.store.get_tasks(run_id) if t.task_id.startswith("c")} == {
        TaskState.QUEUED
    }
    check_counters(h.store, run_id)
    run = h.store.get_run(run_id)
    assert (run.state, run.n_done, run.n_failed, run.n_running) == (RunState.RUNNING, 2, 0, 0)


# w0..w109 wait on a and b: a mark of a rewrites 111 tasks (journaled on DynamoDB)
WIDE_JOIN = "name: wide_join\ntasks:\n" + "\n".join(
    [
        '  a: {type: shell, command: "true"}',
        '  b: {type: shell, command: "true"}',
        *[f'  w{i}: {{type: shell, command: "true", depends_on: [a, b]}}' for i in range(110)],
    ]
)


def test_a_large_mark_keeps_the_ends_of_its_tasks_applied_while_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Harness.opened("dynamodb", tmp_path, CHILD, WIDE_JOIN) as h:
        # GIVEN a running run whose a and b run, and 110 w's wait on both
        run_id = running(h, "wide_join")
        # WHEN a is marked succeeded (the w's decided again: waiting on b), and b fails
        # once the mark has committed, before its task writes (the w's end upstream_failed)
        store = h.store
        original = store._commit_plan  # type: ignore[union-attr]
        fired: list[bool] = []

        def commit_then_end(plan_run_id: str, items: Any) -> list[str] | None:
            reasons = original(plan_run_id, items)
            if reasons is None and plan_run_id == run_id and not fired:
                fired.append(True)
                end(h, run_id, "b", FAILED)
            return reasons

        monkeypatch.setattr(store, "_commit_plan", commit_then_end)
        h.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)
        assert fired
        # THEN b's failure stands in the w's (none waits for ever), the counters say what
        # the tasks say, and the run has failed
        states = {t.state for t in h.store.get_tasks(run_id) if t.task_id.startswith("w")}
        assert states == {TaskState.UPSTREAM_FAILED}
        check_counters(h.store, run_id)
        assert h.store.get_run(run_id).state is RunState.FAILED


def test_a_large_mark_hands_the_children_it_could_not_reset_to_the_reconciler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Harness.opened("dynamodb", tmp_path, CHILD, WIDE_JOIN) as h:
        # GIVEN a running run whose a and b run, and 110 w's wait on both
        run_id = running(h, "wide_join")
        # WHEN a is marked succeeded (the w's decided again: waiting on b), and b succeeds
        # once the mark has committed, before its task writes: b's turn counts b in each w
        # (a's success, not yet in the w's, leaves them waiting), so the mark cannot reset
        # them as it read them
        store = h.store
        original = store._commit_plan  # type: ignore[union-attr]
        fired: list[bool] = []

        def commit_then_end(plan_run_id: str, items: Any) -> list[str] | None:
            reasons = original(plan_run_id, items)
            if reasons is None and plan_run_id == run_id and not fired:
                fired.append(True)
                end(h, run_id, "b", OK)
            return reasons

        monkeypatch.setattr(store, "_commit_plan", commit_then_end)
        h.scheduler.mark(run_id, "a", TaskState.SUCCEEDED)
        assert fired
        # THEN the w's the commit wrote (as many as it could check) count a and b and run;
        # the others keep b's count and wait, the counters say what the tasks say, and a
        # carries a propagation intent: no w waits for ever
        ws = [t for t in h.store.get_tasks(run_id) if t.task_id.startswith("w")]
        waiting = [t for t in ws if t.state is TaskState.WAITING]
        assert waiting
        assert {t.upstream.succeeded for t in waiting} == {1}
        assert {(t.state, t.upstream.succeeded) for t in ws if t not in waiting} <= {
            (TaskState.QUEUED, 2),
            (TaskState.RUNNING, 2),
        }
        check_counters(h.store, run_id)
        assert [t.task_id for t in h.store.pending_propagations(10)] == ["a"]
        # AND the reconciler's pass counts a in those: they are queued to run, with both
        # parents counted
        h.scheduler.recover()
        again = {t.task_id: t for t in h.store.get_tasks(run_id)}
        assert {(again[t.task_id].state, again[t.task_id].upstream.succeeded) for t in waiting} == {
            (TaskState.QUEUED, 2)
        }
        assert h.store.pending_propagations(10) == []
        check_counters(h.store, run_id)
        assert h.store.get_run(run_id).state is RunState.RUNNING


def test_a_stop_decided_before_a_mark_meanwhile_stops_the_run_from_a_new_read(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a running run: a, b and c run
    run, _ = h.scheduler.trigger("default", "stopper")
    h.scheduler.step()
    run_id = run.id
    # WHEN it is stopped, and b is marked succeeded (elsewhere) between the stop's read and
    # its write
    between(h, monkeypatch, run_id, lambda: elsewhere(h).mark(run_id, "b", TaskState.SUCCEEDED))
    stopped = h.scheduler.stop(run_id)
    # THEN the stop, decided again from a new read, stops what still ran, and b's mark stands
    assert stopped.state is RunState.STOPPED
    states = {t.task_id: t.state for t in h.store.get_tasks(run_id)}
    assert states == {"a": TaskState.STOPPED, "b": TaskState.SUCCEEDED, "c": TaskState.STOPPED}
    check_counters(h.store, run_id)


# t0..t109 run at once: a stop rewrites 110 tasks (journaled on DynamoDB)
WIDE = "name: wide\ntasks:\n" + "\n".join(
    f'  t{i}: {{type: shell, command: "true"}}' for i in range(110)
)


def test_a_large_stop_keeps_the_counters_of_a_task_that_ended_while_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Harness.opened("dynamodb", tmp_path, CHILD, WIDE) as h:
        # GIVEN a running run whose 110 tasks all run
        run, _ = h.scheduler.trigger("default", "wide")
        h.scheduler.step()
        run_id = run.id
        assert all(t.state is TaskState.RUNNING for t in h.store.get_tasks(run_id))
        # WHEN it is stopped, and t5 ends (succeeded, in another function) once the stop
        # has committed, before its task writes
        store = h.store
        original = store._commit_plan  # type: ignore[union-attr]
        fired: list[bool] = []

        def commit_then_end(plan_run_id: str, items: Any) -> list[str] | None:
            reasons = original(plan_run_id, items)
            if reasons is None and plan_run_id == run_id and not fired:
                fired.append(True)
                end(h, run_id, "t5", OK)
            return reasons

        monkeypatch.setattr(store, "_commit_plan", commit_then_end)
        h.scheduler.stop(run_id)
        assert fired
        # THEN the counters say what the tasks say (on main: done 111 of 110 tasks, and
        # -1 running)
        assert h.store.get_run(run_id).state is RunState.STOPPED
        check_counters(h.store, run_id)
