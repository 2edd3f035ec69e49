"""Sub-workflow tasks (``type: workflow``): the engine's rules, the apply-time cycle check,
and the service on both stores (SQLite, DynamoDB on moto) with a dispatcher the test
drives: the child's outputs reach the parent, a failed child fails the parent's task, a
rerun of the parent's failed tasks reruns the same child run from its failed tasks (and
keeps one that succeeded), a rerun from the task or of all tasks reruns the child whole,
stop, pause and resume of the parent reach the child, and recover reports a child whose end
its parent missed."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store

from stratoflow import engine
from stratoflow.adapters.aws.dynamodb import DynamoStore
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import (
    AttemptResult,
    AttemptStatus,
    Run,
    RunState,
    TaskInstance,
    TaskState,
)
from stratoflow.engine import subworkflow as rules
from stratoflow.engine.backfill import rerun_all
from stratoflow.errors import InvalidInput, NotFound
from stratoflow.model import WorkflowTask, load_workflow
from stratoflow.ports import AttemptSpec
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 6, 1, tzinfo=UTC)

CHILD = """\
name: load_region
params: {region: us}
tasks:
  extract: {type: shell, command: "echo rows=42 >> $STRATOFLOW_OUTPUT"}
  load: {type: shell, depends_on: [extract], command: "echo {{ params.region }}"}
"""

PARENT = """\
name: parent
params: {region: eu}
tasks:
  prepare: {type: shell, command: echo prepare}
  child:
    type: workflow
    depends_on: [prepare]
    workflow: load_region
    params: {region: "{{ params.region }}"}
  report:
    type: shell
    depends_on: [child]
    command: "echo {{ tasks.child.outputs.extract.rows }}"
"""


# ---------------------------------------------------------------- model and engine
def test_model_reads_a_workflow_task_and_its_target() -> None:
    spec = load_workflow(PARENT)
    task = spec.workflow.tasks["child"]
    assert isinstance(task, WorkflowTask)
    assert task.target("default") == ("default", "load_region")
    other = load_workflow(PARENT.replace("workflow: load_region", "workflow: etl/load_region"))
    assert rules.targets(other) == {"child": ("etl", "load_region")}
    assert spec.dag.reads["report"] == frozenset({"child"})


@pytest.mark.parametrize(
    ("ref", "why"),
    [("Bad Name", "workflow"), ("a/b/c", "workflow"), ("/x", "workflow"), ("", "workflow")],
)
def test_model_refuses_a_bad_reference(ref: str, why: str) -> None:
    with pytest.raises(InvalidInput) as err:
        load_workflow(PARENT.replace("workflow: load_region", f"workflow: {ref!r}"))
    assert why in str(err.value)


def test_model_refuses_secrets_in_a_child_params() -> None:
    text = PARENT.replace('"{{ params.region }}"', '"{{ secrets.pw }}"')
    with pytest.raises(InvalidInput) as err:
        load_workflow(text)
    assert "secret" in str(err.value)


def test_find_cycle_names_the_path_through_any_depth() -> None:
    a, b, c, d = ("p", "a"), ("p", "b"), ("q", "c"), ("p", "d")
    assert rules.find_cycle(a, {a: [b], b: [c], c: [a]}) == [a, b, c, a]
    assert rules.find_cycle(a, {a: [a]}) == [a, a]
    assert rules.find_cycle(a, {a: [b, d], b: [c], c: [d]}) is None
    with pytest.raises(InvalidInput) as err:
        rules.cycle_problem(a, {a: [b], b: [c], c: [a]})
    assert "p/a -> p/b -> q/c -> p/a" in str(err.value)


def test_child_run_id_is_deterministic_bounded_and_in_the_child_project() -> None:
    one = rules.child_run_id("default.parent-1", "child", ("etl", "x" * 128))
    assert one == rules.child_run_id("default.parent-1", "child", ("etl", "x" * 128))
    assert one != rules.child_run_id("default.parent-2", "child", ("etl", "x" * 128))
    assert one != rules.child_run_id("default.parent-1", "other", ("etl", "x" * 128))
    assert one.startswith("etl.")
    assert len(rules.child_run_id("r" * 300, "t" * 128, ("p" * 128, "n" * 128))) == 238


def _run(state: RunState, ended: datetime | None = None, error: str | None = None) -> Run:
    return Run("c", "w", "p", 1, state, {}, T0, T0, ended_at=ended, error=error)


def test_on_claim_starts_waits_reruns_or_reports() -> None:
    ti = TaskInstance("r", "child", TaskState.RUNNING, attempt=2, started_at=T0)
    later, earlier = T0 + timedelta(seconds=1), T0 - timedelta(seconds=1)
    assert rules.on_claim(ti, None).step is rules.Step.START
    assert rules.on_claim(ti, _run(RunState.RUNNING)).step is rules.Step.WAIT
    assert rules.on_claim(ti, _run(RunState.PAUSED)).step is rules.Step.WAIT
    # ended before this attempt: an earlier attempt's child, rerun from its failures
    assert rules.on_claim(ti, _run(RunState.FAILED, earlier)).step is rules.Step.RERUN
    assert rules.on_claim(ti, _run(RunState.STOPPED, earlier)).step is rules.Step.RERUN
    # a succeeded child stands; one that ended since the attempt started is this attempt's
    assert rules.on_claim(ti, _run(RunState.SUCCEEDED, earlier)).step is rules.Step.REPORT
    assert rules.on_claim(ti, _run(RunState.FAILED, later)).step is rules.Step.REPORT


def test_on_claim_reruns_the_whole_child_on_the_first_attempt_of_a_rerun_from_the_task() -> None:
    later, earlier = T0 + timedelta(seconds=1), T0 - timedelta(seconds=1)
    first = TaskInstance(
        "r", "child", TaskState.RUNNING, attempt=2, attempt_base=1, started_at=T0,
        rerun_child=True,
    )  # fmt: skip
    for end in (RunState.SUCCEEDED, RunState.FAILED, RunState.STOPPED):
        assert rules.on_claim(first, _run(end, earlier)).step is rules.Step.RERUN_ALL
    # the child rerun for this attempt has ended: report it, never rerun it again
    assert rules.on_claim(first, _run(RunState.SUCCEEDED, later)).step is rules.Step.REPORT
    assert rules.on_claim(first, _run(RunState.RUNNING)).step is rules.Step.WAIT
    # a retry of that attempt reruns the child's failures only, as any retry
    retry = first.with_(attempt=3)
    assert rules.on_claim(retry, _run(RunState.FAILED, earlier)).step is rules.Step.RERUN
    assert rules.on_claim(retry, _run(RunState.SUCCEEDED, earlier)).step is rules.Step.REPORT


def test_a_rerun_from_a_task_marks_the_sub_workflow_tasks_it_resets_and_only_those() -> None:
    spec = load_workflow(PARENT)
    run = Run("r", "parent", "default", 1, RunState.SUCCEEDED, {}, T0, T0, ended_at=T0)
    done = [
        TaskInstance("r", t, TaskState.SUCCEEDED, attempt=1, ended_at=T0)
        for t in ("prepare", "child", "report")
    ]
    for start in ("prepare", "child"):
        plan = engine.rerun_from(spec, run, done, start, T0)
        assert plan.tasks["child"].rerun_child
        assert not plan.tasks["report"].rerun_child  # not a sub-workflow task
    assert "child" not in engine.rerun_from(spec, run, done, "report", T0).tasks
    assert rerun_all(spec, run, done, T0).tasks["child"].rerun_child
    # the failed tasks only: the sub-workflow task keeps its child (from its failed tasks)
    failed = run.with_(state=RunState.FAILED)
    tasks = [*done[:1], done[1].with_(state=TaskState.FAILED), done[2]]
    assert not engine.rerun_failed(spec, failed, tasks, T0).tasks["child"].rerun_child
    # a rerun from upstream whose upstream failed again: the task never ran, so the rerun
    # of the failed tasks after it still owes the whole child
    owed = TaskInstance(
        "r", "child", TaskState.UPSTREAM_FAILED, attempt=1, attempt_base=1, rerun_child=True
    )
    tasks = [done[0].with_(state=TaskState.FAILED, attempt=2, attempt_base=1), owed, done[2]]
    assert engine.rerun_failed(spec, failed, tasks, T0).tasks["child"].rerun_child
    ran = owed.with_(state=TaskState.FAILED, attempt=2)  # it ran (and failed) since
    tasks[1] = ran
    assert not engine.rerun_failed(spec, failed, tasks, T0).tasks["child"].rerun_child


def test_a_rerun_of_failed_tasks_runs_a_sub_workflow_task_downstream_of_them_whole() -> None:
    # GIVEN prepare failed and the sub-workflow task after it (all_done) ran its child on
    # that failure, and the child succeeded (or the task was skipped)
    spec = load_workflow(
        PARENT.replace("depends_on: [prepare]", "depends_on: [prepare]\n    trigger_rule: all_done")
    )
    run = Run("r", "parent", "default", 1, RunState.FAILED, {}, T0, T0, ended_at=T0)
    prepare = TaskInstance("r", "prepare", TaskState.FAILED, attempt=1, ended_at=T0)
    for state in (TaskState.SUCCEEDED, TaskState.SKIPPED):
        child = TaskInstance("r", "child", state, attempt=1, ended_at=T0, child_end=T0)
        report = TaskInstance("r", "report", state, attempt=1, ended_at=T0)
        # WHEN the failed tasks are rerun
        plan = engine.rerun_failed(spec, run, [prepare, child, report], T0)
        # THEN the task waits for prepare, and its next attempt runs its child again whole
        # (with its params rendered then): the child it kept would hand back the outcome
        # of the failure at once, not run after prepare
        assert plan.tasks["child"].state is TaskState.WAITING
        assert plan.tasks["child"].rerun_child
        assert plan.tasks["child"].child_end is None  # it no longer follows the old child
        assert not plan.tasks["report"].rerun_child  # not a sub-workflow task
    # AND a sub-workflow task that failed itself with nothing rerun upstream of it still
    # reruns its child from the child's failed tasks
    ok = prepare.with_(state=TaskState.SUCCEEDED)
    child = TaskInstance("r", "child", TaskState.FAILED, attempt=1, ended_at=T0, child_end=T0)
    report = TaskInstance("r", "report", TaskState.UPSTREAM_FAILED, ended_at=T0)
    plan = engine.rerun_failed(spec, run, [ok, child, report], T0)
    assert set(plan.tasks) == {"child", "report"}
    assert not plan.tasks["child"].rerun_child


def test_with_params_gives_a_plan_new_params_only_when_they_differ() -> None:
    spec = load_workflow(CHILD)
    run = _run(RunState.FAILED, T0).with_(params={"region": "eu"})
    plan = rerun_all(spec, run, [TaskInstance(run.id, "extract", TaskState.FAILED)], T0)
    assert engine.with_params(spec, plan, {"region": "eu"}) is plan  # nothing to write
    moved = engine.with_params(spec, plan, {"region": "us"})
    assert moved.new_params
    assert moved.run.params == {"region": "us"}
    assert moved.tasks == plan.tasks
    assert engine.with_params(spec, plan, {}).run.params == {"region": "us"}  # the default
    with pytest.raises(InvalidInput, match="unknown parameter"):
        engine.with_params(spec, plan, {"nope": 1})
    assert engine.changed_params({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": None}) == ["b", "c"]


def test_child_result_maps_the_child_run_end() -> None:
    ok = rules.child_result(_run(RunState.SUCCEEDED), {"a": {"k": "v"}, "b": {}})
    assert ok == AttemptResult(AttemptStatus.SUCCEEDED, {"a": {"k": "v"}})
    failed = rules.child_result(_run(RunState.FAILED, error="boom"), {})
    assert failed.status is AttemptStatus.FAILED
    assert "boom" in (failed.error or "")
    assert failed.retryable  # a retry reruns the child from its failed tasks
    assert rules.child_result(_run(RunState.STOPPED), {}).status is AttemptStatus.STOPPED
    bad = TaskInstance("c", "load", TaskState.FAILED, error="exit code 3")
    named = rules.child_result(_run(RunState.FAILED), {}, [bad])
    assert named.error == "child run c failed: task load failed (exit code 3)"
    big = rules.child_result(_run(RunState.SUCCEEDED), {"a": {"k": "x" * 300_000}})
    assert big.status is AttemptStatus.FAILED
    assert "outputs" in (big.error or "")


def test_a_child_whose_parent_task_ended_is_an_orphan() -> None:
    running = TaskInstance("r", "child", TaskState.RUNNING, attempt=1)
    assert not rules.orphaned(_run(RunState.RUNNING), running)
    assert rules.orphaned(_run(RunState.RUNNING), running.with_(state=TaskState.STOPPED))
    assert rules.orphaned(_run(RunState.QUEUED), None)
    assert not rules.orphaned(_run(RunState.FAILED), running.with_(state=TaskState.STOPPED))


def test_a_task_that_took_its_child_end_follows_the_child() -> None:
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    took = TaskInstance("r", "child", TaskState.FAILED, attempt=1, started_at=T0, child_end=t1)
    # it follows: a later end is its new outcome; the end it took, or an older one, is not
    assert rules.follows(took)
    assert rules.takes_end(took, _run(RunState.SUCCEEDED, t2))
    assert not rules.takes_end(took, _run(RunState.SUCCEEDED, t1))
    assert not rules.takes_end(took, _run(RunState.SUCCEEDED, T0))
    assert not rules.takes_end(took, _run(RunState.RUNNING))
    # its child, marked or rerun on its own, is no orphan
    assert not rules.orphaned(_run(RunState.RUNNING), took)
    # a task that ended otherwise (marked or stopped while its child ran), or was reset or
    # runs again, follows nothing: its attempt (if any) takes the child's end
    for other in (
        took.with_(child_end=None),
        took.with_(state=TaskState.RUNNING, attempt=2, child_end=None),
        took.with_(state=TaskState.WAITING, child_end=None),
    ):
        assert not rules.follows(other)
        assert not rules.takes_end(other, _run(RunState.SUCCEEDED, t2))
    assert rules.orphaned(_run(RunState.RUNNING), took.with_(child_end=None))


def test_an_attempt_that_takes_its_child_end_keeps_it() -> None:
    spec = load_workflow(PARENT)
    t1 = T0 + timedelta(minutes=1)
    running = TaskInstance("r", "child", TaskState.RUNNING, attempt=1, started_at=T0)
    child = _run(RunState.FAILED, t1)
    result = rules.child_result(child, {})
    assert result.child_end == t1
    assert rules.ended_for(running, child)
    assert not rules.ended_for(running.with_(started_at=t1 + timedelta(seconds=1)), child)
    made = engine.on_attempt_finished(spec, running, 1, result, t1)
    assert made is not None
    assert (made.task.state, made.task.child_end) == (TaskState.FAILED, t1)
    # a retry follows nothing: its next attempt takes the child's next end
    retried = load_workflow(PARENT.replace("name: parent", "name: parent\ndefaults: {retries: 1}"))
    made = engine.on_attempt_finished(retried, running, 1, result, t1)
    assert made is not None
    assert (made.task.state, made.task.child_end) == (TaskState.UP_FOR_RETRY, None)
    # an end that is not its child's (a timeout) follows nothing either
    timed_out = AttemptResult(AttemptStatus.TIMED_OUT, error="timed out", retryable=False)
    made = engine.on_attempt_finished(spec, running, 1, timed_out, t1)
    assert made is not None
    assert (made.task.state, made.task.child_end) == (TaskState.FAILED, None)


def test_taking_a_later_child_end_is_a_mark_of_the_task() -> None:
    spec = load_workflow(PARENT)
    t1, t2, now = (T0 + timedelta(minutes=m) for m in (1, 2, 3))
    run = Run("r", "parent", "default", 1, RunState.FAILED, {}, T0, T0, ended_at=t1,
              n_tasks=3, n_done=3, n_failed=1)  # fmt: skip
    prepare = TaskInstance("r", "prepare", TaskState.SUCCEEDED, attempt=1, ended_at=T0)
    failed = TaskInstance(
        "r", "child", TaskState.FAILED, attempt=1, ended_at=t1, error="child run c failed",
        child_end=t1,
    )  # fmt: skip
    report = TaskInstance("r", "report", TaskState.UPSTREAM_FAILED, ended_at=t1)
    ok = rules.child_result(_run(RunState.SUCCEEDED, t2), {"extract": {"rows": "7"}})
    plan = rules.take_end(spec, run, [prepare, failed, report], failed, ok, now)
    # the task took the new end, as read only; what waited on it is decided again; the run
    # runs again
    assert plan.if_unchanged == (failed,)
    took = plan.tasks["child"]
    assert (took.state, took.outputs, took.error) == (
        TaskState.SUCCEEDED, {"extract": {"rows": "7"}}, None,
    )  # fmt: skip
    assert (took.ended_at, took.child_end, took.attempt) == (now, t2, 1)
    assert plan.tasks["report"].state is TaskState.QUEUED
    assert (plan.run.state, plan.run.n_done, plan.run.n_failed) == (RunState.RUNNING, 2, 0)
    assert not plan.kill
    # an end in the state it has: its outputs or error alone, or nothing to write
    same = rules.child_result(_run(RunState.FAILED, t2, error="other"), {})
    write = rules.same_state_write(failed, same, now)
    assert write is not None
    (only,) = write.tasks
    assert (only.expect, only.expect_attempt) == (TaskState.FAILED, 1)
    assert (only.task.error, only.task.ended_at, only.task.child_end) == (
        "child run c failed: other", t1, t2,
    )  # fmt: skip
    assert (
        rules.same_state_write(failed, rules.child_result(_run(RunState.FAILED, t2), {}), now)
        is None
    )
    with pytest.raises(ValueError, match="take_end"):
        rules.same_state_write(failed, ok, now)


def test_depth_is_bounded() -> None:
    assert rules.check_depth(rules.MAX_DEPTH) is None
    assert "levels" in (rules.check_depth(rules.MAX_DEPTH + 1) or "")


# ---------------------------------------------------------------- the service
@dataclass
class Harness:
    scheduler: Scheduler
    store: SqliteStore | DynamoStore
    dispatcher: RecordingDispatcher
    clock: FakeClock

    @classmethod
    @contextmanager
    def opened(cls, kind: str, tmp_path: Path, *documents: str) -> Iterator[Harness]:
        """A scheduler on a fresh store of ``kind`` at T0, with ``documents`` applied in order."""
        dispatcher = RecordingDispatcher()
        clock = FakeClock(T0)
        with state_store(kind, tmp_path) as store:
            scheduler = Scheduler(store, store, dispatcher, clock)
            for document in documents:
                scheduler.apply(document)
            yield cls(scheduler, store, dispatcher, clock)

    def finish(
        self,
        outcome: Callable[[AttemptSpec], AttemptStatus],
        *,
        limit: int = 200,
        rows: str = "42",
        outputs: Callable[[AttemptSpec], dict[str, str]] | None = None,
    ) -> None:
        """Dispatch, then end attempts one at a time until nothing is pending (``extract``
        outputs ``rows``; ``outputs``, when given, says what each attempt outputs)."""
        self.scheduler.step()
        for _ in range(limit):
            if not self.dispatcher.pending:
                return
            key, spec = next(iter(self.dispatcher.pending.items()))
            del self.dispatcher.pending[key]
            self.clock.advance(1)
            status = outcome(spec)
            made = {"rows": rows} if spec.task_id == "extract" else {}
            if outputs is not None:
                made = outputs(spec)
            result = AttemptResult(status, made if status is AttemptStatus.SUCCEEDED else {})
            self.scheduler.on_finished([Finished(spec.run_id, spec.task_id, spec.attempt, result)])
            self.scheduler.step()
        raise AssertionError("the runs never ended")

    def child_started(self) -> tuple[Run, Run]:
        """A run of ``parent`` whose ``prepare`` succeeded, and the child run it started."""
        run, _ = self.scheduler.trigger("default", "parent")
        self.scheduler.step()
        self.dispatcher.pending.clear()
        self.scheduler.on_finished(
            [Finished(run.id, "prepare", 1, AttemptResult(AttemptStatus.SUCCEEDED))]
        )
        self.scheduler.step()
        return run, self.child_of(run.id)

    def child_of(self, run_id: str, task: str = "child") -> Run:
        return self.store.get_run(rules.child_run_id(run_id, task, ("default", "load_region")))


def succeed(_: AttemptSpec) -> AttemptStatus:
    return AttemptStatus.SUCCEEDED


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with Harness.opened(request.param, tmp_path, CHILD, PARENT) as harness:
        yield harness


def test_child_succeeds_and_the_parent_reads_its_outputs(h: Harness) -> None:
    run, _ = h.scheduler.trigger("default", "parent")
    h.finish(succeed)
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED
    child = h.child_of(run.id)
    assert child.state is RunState.SUCCEEDED
    assert child.parent == f"{run.id}/child"
    assert child.trigger == "workflow"
    assert child.params["region"] == "eu"  # passed in, rendered from the parent's params
    task = h.store.get_task(run.id, "child")
    assert task.outputs == {"extract": {"rows": "42"}}
    report = h.dispatcher.dispatched[(run.id, "report", 1)]
    assert report.task.fields["command"] == "echo 42"
    # the sub-workflow task itself is never handed to a dispatcher
    assert not [k for k in h.dispatcher.dispatched if k[1] == "child"]


def test_child_fails_then_a_rerun_of_the_parent_reruns_the_same_child(h: Harness) -> None:
    run, _ = h.scheduler.trigger("default", "parent")
    h.finish(lambda s: AttemptStatus.FAILED if s.task_id == "load" else AttemptStatus.SUCCEEDED)
    assert h.store.get_run(run.id).state is RunState.FAILED
    task = h.store.get_task(run.id, "child")
    assert task.state is TaskState.FAILED
    assert "failed" in (task.error or "")
    child = h.child_of(run.id)
    assert child.state is RunState.FAILED
    assert h.store.get_task(run.id, "report").state is TaskState.UPSTREAM_FAILED

    h.clock.advance(60)
    h.scheduler.rerun(run.id)
    h.finish(succeed)
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED
    again = h.child_of(run.id)
    assert again.id == child.id
    assert again.state is RunState.SUCCEEDED
    # the child reran its failed task only: extract ran once, load twice
    runs_of = [k for k in h.dispatcher.dispatched if k[0] == child.id]
    assert sorted(runs_of) == [
        (child.id, "extract", 1),
        (child.id, "load", 1),
        (child.id, "load", 2),
    ]


def _child_attempts(h: Harness, child_id: str) -> list[tuple[str, str, int]]:
    return sorted(k for k in h.dispatcher.dispatched if k[0] == child_id)


@pytest.mark.parametrize("start", ["child", "prepare"])
def test_a_rerun_from_a_succeeded_sub_workflow_task_runs_its_child_again(
    h: Harness, start: str
) -> None:
    run, _ = h.scheduler.trigger("default", "parent")
    h.finish(succeed)
    child = h.child_of(run.id)
    assert child.state is RunState.SUCCEEDED

    h.clock.advance(60)
    h.scheduler.rerun(run.id, from_task=start)
    h.finish(succeed, rows="43")
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED
    # the same child run, every task of it run again (not its old end reported at once)
    again = h.child_of(run.id)
    assert again.id == child.id
    assert again.state is RunState.SUCCEEDED
    assert again.ended_at is not None
    assert child.ended_at is not None
    assert again.ended_at > child.ended_at
    assert _child_attempts(h, child.id) == [
        (child.id, "extract", 1), (child.id, "extract", 2),
        (child.id, "load", 1), (child.id, "load", 2),
    ]  # fmt: skip
    task = h.store.get_task(run.id, "child")
    assert task.attempt == 2
    assert task.outputs == {"extract": {"rows": "43"}}  # the new child's, not the old
    report = h.dispatcher.dispatched[(run.id, "report", 2)]
    assert report.task.fields["command"] == "echo 43"
    history = [a for a in h.store.list_attempts(run.id) if a.task_id == "child"]
    assert [(a.attempt, a.state) for a in history] == [(1, "succeeded"), (2, "succeeded")]
    assert history[1].ended_at is not None
    assert history[1].ended_at > history[1].started_at


# x outputs a new v on each attempt (as `echo v=$STRATOFLOW_ATTEMPT >> $STRATOFLOW_OUTPUT`)
COUNTED_CHILD = """\
name: counted_child
params: {n: "0", unchanged: "u"}
tasks:
  use: {type: shell, command: "echo n={{ params.n }} u={{ params.unchanged }}"}
"""

COUNTED_PARENT = """\
name: counted_parent
tasks:
  x: {type: shell, command: "echo v=$STRATOFLOW_ATTEMPT >> $STRATOFLOW_OUTPUT"}
  sub:
    type: workflow
    depends_on: [x]
    workflow: counted_child
    params: {n: "{{ tasks.x.outputs.v }}"}
"""


def _attempt_as_v(spec: AttemptSpec) -> dict[str, str]:
    return {"v": str(spec.attempt)} if spec.task_id == "x" else {}


def _use_command(h: Harness, child_id: str, attempt: int) -> str:
    """The command the child's ``use`` task ran with on ``attempt``."""
    return str(h.dispatcher.dispatched[(child_id, "use", attempt)].task.fields["command"])


@pytest.mark.parametrize("rerun", ["from_x", "from_sub", "all"])
def test_a_whole_rerun_of_a_child_takes_the_params_its_task_renders_now(
    h: Harness, rerun: str
) -> None:
    # GIVEN a parent whose sub-workflow task passes x's output to its child, run once
    h.scheduler.apply(COUNTED_CHILD)
    h.scheduler.apply(COUNTED_PARENT)
    run, _ = h.scheduler.trigger("default", "counted_parent")
    h.finish(succeed, outputs=_attempt_as_v)
    child_id = rules.child_run_id(run.id, "sub", ("default", "counted_child"))
    first = h.store.get_run(child_id)
    assert first.params == {"n": "1", "unchanged": "u"}
    assert _use_command(h, child_id, 1) == "echo n=1 u=u"
    # WHEN the parent is rerun so that x runs again (and makes v=2) and sub reruns its child
    h.clock.advance(60)
    if rerun == "all":
        h.scheduler.rerun(run.id, all_tasks=True)
    elif rerun == "from_x":
        h.scheduler.rerun(run.id, from_task="x")
    else:  # x keeps v=1: the child's params are rendered again, to the same values
        h.scheduler.rerun(run.id, from_task="sub")
    h.finish(succeed, outputs=_attempt_as_v)
    # THEN the same child run reran whole with n as rendered now, and says so
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED
    again = h.store.get_run(child_id)
    want = "1" if rerun == "from_sub" else "2"
    assert again.params == {"n": want, "unchanged": "u"}
    assert again.state is RunState.SUCCEEDED
    assert _use_command(h, child_id, 2) == f"echo n={want} u=u"
    # the earlier attempt's history stays as it ran
    assert [a.attempt for a in h.store.list_attempts(child_id)] == [1, 2]


def test_a_whole_rerun_whose_params_no_longer_render_fails_the_task_and_keeps_the_child(
    h: Harness,
) -> None:
    # GIVEN a child run with n=1, and an x whose second attempt outputs no v
    h.scheduler.apply(COUNTED_CHILD)
    h.scheduler.apply(
        COUNTED_PARENT.replace(
            "name: counted_parent", "name: counted_parent\ndefaults: {retries: 2}"
        )
    )
    run, _ = h.scheduler.trigger("default", "counted_parent")
    h.finish(succeed, outputs=_attempt_as_v)
    child_id = rules.child_run_id(run.id, "sub", ("default", "counted_child"))
    first = h.store.get_run(child_id)
    # WHEN the parent is rerun from x
    h.clock.advance(60)
    h.scheduler.rerun(run.id, from_task="x")
    h.finish(succeed, outputs=lambda s: _attempt_as_v(s) if s.attempt == 1 else {})
    # THEN sub fails at once (not retried), naming the param, and the child is untouched
    task = h.store.get_task(run.id, "sub")
    assert task.state is TaskState.FAILED
    assert task.attempt == 2
    assert (task.error or "").startswith("params: undefined in template")
    assert "tasks.x.outputs.v" in (task.error or "")
    assert h.store.get_run(child_id) == first


def test_a_rerun_of_the_failed_tasks_keeps_the_child_params(h: Harness) -> None:
    # GIVEN a child that failed with n=1
    h.scheduler.apply(COUNTED_CHILD)
    h.scheduler.apply(COUNTED_PARENT)
    run, _ = h.scheduler.trigger("default", "counted_parent")
    h.finish(
        lambda s: AttemptStatus.FAILED if s.task_id == "use" else AttemptStatus.SUCCEEDED,
        outputs=_attempt_as_v,
    )
    child_id = rules.child_run_id(run.id, "sub", ("default", "counted_child"))
    assert h.store.get_run(child_id).state is RunState.FAILED
    # WHEN the parent's failed tasks are rerun (x stands), THEN the child keeps its params
    h.clock.advance(60)
    h.scheduler.rerun(run.id)
    h.finish(succeed, outputs=_attempt_as_v)
    assert h.store.get_run(child_id).params == {"n": "1", "unchanged": "u"}
    assert _use_command(h, child_id, 2) == "echo n=1 u=u"


def test_params_of_a_rerun_other_than_of_all_tasks_are_refused(h: Harness) -> None:
    run, _ = h.scheduler.trigger("default", "parent")
    h.finish(succeed)
    before = h.store.get_run(run.id)
    with pytest.raises(InvalidInput, match="params"):
        h.scheduler.rerun(run.id, from_task="prepare", params={"region": "us"})
    assert h.store.get_run(run.id) == before


def test_a_whole_rerun_with_an_unknown_param_changes_nothing(h: Harness) -> None:
    child = h.scheduler.trigger("default", "load_region")[0]
    h.finish(succeed)
    before = h.store.get_run(child.id)
    with pytest.raises(InvalidInput, match="unknown parameter"):
        h.scheduler.rerun(child.id, all_tasks=True, params={"nope": "1"})
    assert h.store.get_run(child.id) == before
    assert h.store.get_task(child.id, "extract").attempt == 1


def test_a_rerun_of_all_tasks_runs_a_failed_child_again_whole(h: Harness) -> None:
    run, _ = h.scheduler.trigger("default", "parent")
    h.finish(lambda s: AttemptStatus.FAILED if s.task_id == "load" else AttemptStatus.SUCCEEDED)
    child = h.child_of(run.id)
    assert child.state is RunState.FAILED
    h.clock.advance(60)
    h.scheduler.rerun(run.id, all_tasks=True)  # a backfill's --rerun all
    h.finish(succeed)
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED
    assert (child.id, "extract", 2) in h.dispatcher.dispatched  # not only its failed task


def test_a_rerun_of_the_failed_tasks_keeps_a_child_that_succeeded(h: Harness) -> None:
    # the child succeeds but its outputs are too large for the parent: the task fails
    run, _ = h.scheduler.trigger("default", "parent")
    h.finish(succeed, rows="x" * (rules.MAX_OUTPUTS_BYTES + 1))
    task = h.store.get_task(run.id, "child")
    assert task.state is TaskState.FAILED
    child = h.child_of(run.id)
    assert child.state is RunState.SUCCEEDED
    h.clock.advance(60)
    h.scheduler.rerun(run.id)
    h.finish(succeed)
    # the child stands: its end is reported again, no task of it runs again
    assert h.child_of(run.id).ended_at == child.ended_at
    assert _child_attempts(h, child.id) == [(child.id, "extract", 1), (child.id, "load", 1)]
    assert h.store.get_task(run.id, "child").attempt == 2


AFTER_X_PARENT = """\
name: after_x
tasks:
  x: {type: shell, command: x}
  sub: {type: workflow, depends_on: [x], trigger_rule: all_done, workflow: counted_child}
"""


def test_a_rerun_of_the_failed_tasks_runs_a_child_downstream_of_them_again_after_them(
    h: Harness,
) -> None:
    # GIVEN x failed and sub (all_done) ran its child after it, which succeeded
    h.scheduler.apply(COUNTED_CHILD)
    h.scheduler.apply(AFTER_X_PARENT)
    run, _ = h.scheduler.trigger("default", "after_x")
    h.finish(lambda s: AttemptStatus.FAILED if s.task_id == "x" else AttemptStatus.SUCCEEDED)
    assert h.store.get_run(run.id).state is RunState.FAILED
    assert h.store.get_task(run.id, "sub").state is TaskState.SUCCEEDED
    child_id = rules.child_run_id(run.id, "sub", ("default", "counted_child"))
    first = h.store.get_run(child_id)
    assert first.state is RunState.SUCCEEDED
    # WHEN the failed tasks are rerun (x succeeds this time)
    h.clock.advance(60)
    h.scheduler.rerun(run.id)
    h.finish(succeed)
    # THEN sub ran again after x: its child ran again whole, not its old end handed back
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED
    order = list(h.dispatcher.dispatched)
    assert order.index((child_id, "use", 2)) > order.index((run.id, "x", 2))
    again = h.store.get_run(child_id)
    assert again.ended_at is not None
    assert first.ended_at is not None
    assert again.ended_at > first.ended_at
    assert [a.attempt for a in h.store.list_attempts(child_id)] == [1, 2]
    sub = h.store.get_task(run.id, "sub")
    assert (sub.state, sub.attempt, sub.child_end) == (TaskState.SUCCEEDED, 2, again.ended_at)
    # AND the run's stored counters count each task once
    done = h.store.get_run(run.id)
    assert (done.n_tasks, done.n_done, done.n_failed, done.n_running) == (2, 2, 0, 0)


def test_two_callers_rerunning_the_same_child_rerun_it_once(h: Harness) -> None:
    run, _ = h.scheduler.trigger("default", "parent")
    h.finish(succeed)
    ended = h.child_of(run.id)
    h.clock.advance(60)
    h.scheduler.rerun(run.id, from_task="child")
    h.scheduler.step()  # claims the task and reruns its child whole
    task = h.store.get_task(run.id, "child")
    assert task.state is TaskState.RUNNING
    assert h.child_of(run.id).state is RunState.RUNNING
    # a second caller (a recovery) that read the child as it had ended: it waits, not fails
    h.scheduler.subworkflows._rerun(run.id, task, ended, params={"region": "eu"})
    assert h.store.get_task(run.id, "child").state is TaskState.RUNNING
    h.finish(succeed)
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED
    assert _child_attempts(h, ended.id).count((ended.id, "extract", 2)) == 1
    assert (ended.id, "extract", 3) not in h.dispatcher.dispatched


def test_sqlite_adds_the_rerun_child_column_to_an_older_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE tasks DROP COLUMN rerun_child")
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    try:
        scheduler = Scheduler(store, store, RecordingDispatcher(), FakeClock(T0))
        scheduler.apply(CHILD)
        run, _ = scheduler.trigger("default", "load_region")
        assert not store.get_task(run.id, "extract").rerun_child
    finally:
        store.close()


def test_stop_of_the_parent_stops_the_child(h: Harness) -> None:
    run, _ = h.scheduler.trigger("default", "parent")
    h.scheduler.step()
    (key,) = h.dispatcher.pending
    del h.dispatcher.pending[key]
    h.scheduler.on_finished(
        [Finished(run.id, "prepare", 1, AttemptResult(AttemptStatus.SUCCEEDED))]
    )
    h.scheduler.step()
    child = h.child_of(run.id)
    assert child.state is RunState.RUNNING
    h.scheduler.stop(run.id)
    assert h.store.get_run(run.id).state is RunState.STOPPED
    assert h.child_of(run.id).state is RunState.STOPPED
    assert (child.id, "extract", 1) in h.dispatcher.killed
    assert h.store.get_task(run.id, "child").state is TaskState.STOPPED


def test_a_child_run_stopped_on_its_own_leaves_its_parent_run_stopped(h: Harness) -> None:
    """The child run is stopped (not the parent): its task in the parent is stopped and the
    task after it upstream_failed. No task failed, but the parent's work was not done: the
    parent run ends stopped, as its child did, never succeeded."""
    run, child = h.child_started()
    assert child.state is RunState.RUNNING
    h.scheduler.stop(child.id)
    h.dispatcher.pending.clear()  # the killed attempt's report comes late
    h.finish(succeed)

    assert h.store.get_task(run.id, "child").state is TaskState.STOPPED
    assert h.store.get_task(run.id, "report").state is TaskState.UPSTREAM_FAILED
    assert h.store.get_run(run.id).state is RunState.STOPPED


def test_pause_and_resume_of_the_parent_reach_the_child(h: Harness) -> None:
    run, child = h.child_started()
    h.scheduler.pause(run.id)
    assert h.child_of(run.id).state is RunState.PAUSED
    h.dispatcher.pending.clear()
    ok = AttemptResult(AttemptStatus.SUCCEEDED, {"rows": "42"})
    h.scheduler.on_finished([Finished(child.id, "extract", 1, ok)])
    h.scheduler.step()
    assert (child.id, "load", 1) not in h.dispatcher.dispatched  # paused: nothing new starts
    h.scheduler.resume(run.id)
    assert h.child_of(run.id).state is RunState.RUNNING
    h.finish(succeed)
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED


def test_a_child_that_cannot_start_fails_the_task_clearly(h: Harness) -> None:
    h.scheduler.apply(PARENT.replace("name: parent", "name: orphan").replace("load_region", "nope"))
    run, _ = h.scheduler.trigger("default", "orphan")
    h.finish(succeed)
    task = h.store.get_task(run.id, "child")
    assert task.state is TaskState.FAILED
    assert "default/nope" in (task.error or "")
    assert "not found" in (task.error or "")


def test_apply_refuses_a_cycle_through_any_depth_and_projects(h: Harness) -> None:
    h.scheduler.apply("name: a\ntasks: {b: {type: workflow, workflow: other/b}}\n")
    h.scheduler.apply(
        "project: other\nname: b\ntasks: {c: {type: workflow, workflow: default/c}}\n"
    )
    with pytest.raises(InvalidInput) as err:
        h.scheduler.apply("name: c\ntasks: {a: {type: workflow, workflow: a}}\n")
    assert "sub-workflow cycle: default/c -> default/a -> other/b -> default/c" in str(err.value)
    with pytest.raises(InvalidInput):
        h.scheduler.apply("name: self\ntasks: {me: {type: workflow, workflow: self}}\n")
    assert h.scheduler.subworkflows.projects_reached(
        load_workflow("name: z\ntasks: {b: {type: workflow, workflow: a}}\n")
    ) == {"other"}


def test_recover_reports_a_child_whose_end_the_parent_missed(h: Harness) -> None:
    run, child = h.child_started()
    # the turn that ends the child dies before the parent hears: simulate by ending the
    # child with the run-end hook switched off
    hook = h.scheduler.subworkflows.run_ended
    h.scheduler.subworkflows.run_ended = lambda _run: None  # type: ignore[method-assign]
    h.clock.advance(1)
    h.finish(succeed)
    h.scheduler.subworkflows.run_ended = hook  # type: ignore[method-assign]
    assert h.child_of(run.id).state is RunState.SUCCEEDED
    assert h.store.get_task(run.id, "child").state is TaskState.RUNNING
    h.scheduler.recover()
    h.finish(succeed)
    assert h.store.get_run(run.id).state is RunState.SUCCEEDED
    assert h.store.get_task(run.id, "child").outputs == {"extract": {"rows": "42"}}
    assert child.id == h.child_of(run.id).id


# ---------------------------------------------------------------- the API
from tests.unit.test_authorization_matrix import World, world  # noqa: E402, F401

CROSS = """\
name: caller
project: a
tasks:
  other: {type: workflow, workflow: b/flow}
"""


def test_api_cross_project_needs_the_right_to_trigger_there(world: World) -> None:  # noqa: F811
    refused = world.call("editor", "POST", "/workflows", {"source": CROSS})
    assert refused.status == 403, refused.text
    assert "project b" in refused.body["message"]
    with pytest.raises(NotFound):  # nothing was stored
        world.store.get_version("a", "caller")
    assert world.call("root", "POST", "/workflows", {"source": CROSS}).status == 201
    # the editor of a may trigger a's workflows, but not this one: it starts a run in b
    refused = world.call("editor", "POST", "/workflows/caller/runs", {}, project="a")
    assert refused.status == 403, refused.text
    assert "project b" in refused.body["message"]
    made = world.call("root", "POST", "/workflows/caller/runs", {}, project="a")
    assert made.status == 201, made.text
    body = {"start": "2026-01-01", "end": "2026-01-02"}
    refused = world.call("editor", "POST", "/workflows/caller/backfills", body, project="a")
    assert refused.status == 403, refused.text
    assert "backfilling it" in refused.body["message"]


def test_api_refuses_a_cycle_and_links_parent_and_child(world: World) -> None:  # noqa: F811
    world.call("root", "POST", "/workflows", {"source": CROSS})
    back = "name: flow\nproject: b\ntasks: {up: {type: workflow, workflow: a/caller}}\n"
    refused = world.call("root", "POST", "/workflows", {"source": back})
    assert refused.status == 400, refused.text
    assert "sub-workflow cycle: b/flow -> a/caller -> b/flow" in refused.text
    made = world.call("root", "POST", "/workflows/caller/runs", {}, project="a").body
    run_id = made["run"]["id"]
    world.api.scheduler.step()
    child = rules.child_run_id(run_id, "other", ("b", "flow"))
    view = world.call("root", "GET", f"/runs/{run_id}").body
    assert view["tasks"]["other"]["child_run"] == child
    assert view["run"]["parent_run"] is None
    child_view = world.call("root", "GET", f"/runs/{child}").body
    assert child_view["run"]["parent_run"] == run_id
    assert child_view["run"]["parent_task"] == "other"
    task = world.call("root", "GET", f"/runs/{run_id}/tasks/other").body
    assert task["child_run"] == child


def test_cli_shows_the_links(world: World, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from stratoflow.cli import _print_run

    world.call("root", "POST", "/workflows", {"source": CROSS})
    run_id = world.call("root", "POST", "/workflows/caller/runs", {}, project="a").body["run"]["id"]
    world.api.scheduler.step()
    child = rules.child_run_id(run_id, "other", ("b", "flow"))
    _print_run(world.call("root", "GET", f"/runs/{run_id}").body, "text")
    assert f"other: child run {child} (running)" in capsys.readouterr().out
    _print_run(world.call("root", "GET", f"/runs/{child}").body, "text")
    assert f"sub-workflow run of {run_id} (task other)" in capsys.readouterr().out


def test_a_child_run_events_name_its_parent(tmp_path: Path) -> None:
    """The scheduler's run events of a child carry its parent; the published detail has them
    as ``parent_run_id``/``parent_task_id`` and stays valid under docs/events.schema.json."""
    import json

    from jsonschema import Draft202012Validator

    from stratoflow.adapters.aws.events import event_detail
    from stratoflow.ports import EventSink

    seen: list[tuple[str, dict[str, object]]] = []

    class Sink(EventSink):
        def emit(self, kind: str, detail: object) -> None:
            seen.append((kind, dict(detail)))  # type: ignore[call-overload]

    store = SqliteStore(tmp_path / "state.db")
    scheduler = Scheduler(store, store, RecordingDispatcher(), FakeClock(T0), Sink())
    scheduler.apply(CHILD)
    scheduler.apply(PARENT)
    run, _ = scheduler.trigger("default", "parent")
    scheduler.step()
    scheduler.on_finished([Finished(run.id, "prepare", 1, AttemptResult(AttemptStatus.SUCCEEDED))])
    scheduler.step()
    child = rules.child_run_id(run.id, "child", ("default", "load_region"))
    schema = json.loads((Path(__file__).parents[2] / "docs" / "events.schema.json").read_text())
    validator = Draft202012Validator(schema)
    [started] = [d for k, d in seen if k == "run.started" and d["run_id"] == child]
    published = event_detail("run.started", started)
    assert published["parent_run_id"] == run.id
    assert published["parent_task_id"] == "child"
    validator.validate(published)
    [parent_started] = [d for k, d in seen if k == "run.started" and d["run_id"] == run.id]
    assert "parent_run_id" not in event_detail("run.started", parent_started)
    store.close()


def test_nesting_deeper_than_the_bound_fails_at_run_time(h: Harness) -> None:
    """A chain w0 -> w1 -> ... -> w9 has no cycle, but its runs would nest 9 levels deep."""
    h.scheduler.apply('name: w9\ntasks: {leaf: {type: shell, command: "true"}}\n')
    for i in range(8, -1, -1):
        h.scheduler.apply(f"name: w{i}\ntasks: {{down: {{type: workflow, workflow: w{i + 1}}}}}\n")
    run, _ = h.scheduler.trigger("default", "w0")
    h.finish(succeed)
    assert h.store.get_run(run.id).state is RunState.FAILED
    deepest, run_id = run, run.id
    for i in range(1, rules.MAX_DEPTH + 1):  # levels 1..8 started; the 9th was refused
        run_id = rules.child_run_id(run_id, "down", ("default", f"w{i}"))
        deepest = h.store.get_run(run_id)
        assert deepest.state is RunState.FAILED
    refused = h.store.get_task(deepest.id, "down")
    assert f"more than {rules.MAX_DEPTH} levels" in (refused.error or "")


def test_a_child_run_that_could_not_be_made_is_not_linked(world: World) -> None:  # noqa: F811
    # the child's id is known before it exists: a child that could not be created (here its
    # workflow is missing) was linked anyway, to a run `runs show` could not find
    source = "name: orphan\nproject: a\ntasks: {child: {type: workflow, workflow: nope}}\n"
    assert world.call("root", "POST", "/workflows", {"source": source}).status == 201
    run_id = world.call("root", "POST", "/workflows/orphan/runs", {}, project="a").body["run"]["id"]
    for _ in range(3):
        world.api.scheduler.step()
    view = world.call("root", "GET", f"/runs/{run_id}").body
    assert view["tasks"]["child"]["state"] == "failed"
    assert view["tasks"]["child"]["attempts"] == 1
    assert view["tasks"]["child"]["child_run"] is None
    assert world.call("root", "GET", f"/runs/{run_id}/tasks/child").body["child_run"] is None
