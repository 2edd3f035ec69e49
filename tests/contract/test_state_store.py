"""The StateStore contract (``stratoflow.ports.StateStore``), for every adapter in conftest.

Only the port is used here: no SQL, no file, nothing an adapter keeps to itself. Domain objects
are built with the engine's types and fixed, timezone-aware UTC datetimes (no clock), so what
a test writes is exactly what it expects to read back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from tests.scale import RUN_TASKS

from stratoflow.engine import (
    Decision,
    Plan,
    Run,
    RunState,
    TaskInstance,
    TaskState,
    TaskWrite,
    Upstream,
    stop,
)
from stratoflow.errors import NotFound
from stratoflow.ports import Attempt, RunQuery, StateStore

T = TypeVar("T")

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
RACERS = 16


def at(minutes: float) -> datetime:
    """A fixed instant, ``minutes`` after T0."""
    return T0 + timedelta(minutes=minutes)


# ---------------------------------------------------------------------------- builders
def a_run(
    run_id: str,
    *,
    project: str = "analytics",
    workflow: str = "sales_daily",
    state: RunState = RunState.RUNNING,
    created: float = 0,
    n_tasks: int = 0,
    **changes: Any,
) -> Run:
    run = Run(
        id=run_id,
        workflow=workflow,
        project=project,
        version=1,
        state=state,
        params={"region": "eu", "limits": {"rows": 10}},
        logical_date=at(-60),
        created_at=at(created),
        trigger="manual",
        started_at=None if state is RunState.QUEUED else at(created),
        n_tasks=n_tasks,
    )
    return run.with_(**changes)


def a_task(
    run_id: str, task_id: str, state: TaskState = TaskState.WAITING, **changes: Any
) -> TaskInstance:
    return TaskInstance(run_id, task_id, state).with_(**changes)


def seed(
    store: StateStore,
    run_id: str,
    tasks: Sequence[str | TaskInstance] = (),
    *,
    concurrency: int | None = None,
    **run_changes: Any,
) -> Run:
    """Create a run and its tasks (given as ids, WAITING, or as instances)."""
    instances = [a_task(run_id, t) if isinstance(t, str) else t for t in tasks]
    run_changes.setdefault("n_tasks", len(instances))
    run = a_run(run_id, **run_changes)
    assert store.create_run(run, instances, concurrency)
    return run


def queue(store: StateStore, task: TaskInstance, **changes: Any) -> TaskInstance:
    """Move a stored task to QUEUED with a conditional write, as the service does."""
    queued = task.with_(state=TaskState.QUEUED, **changes)
    assert store.put_task(queued, task.state, task.attempt)
    return queued


def claim(task: TaskInstance, now: datetime, **changes: Any) -> TaskInstance:
    """QUEUED -> RUNNING, the next attempt."""
    return task.with_(
        state=TaskState.RUNNING,
        attempt=task.attempt + 1,
        started_at=now,
        deadline=now + timedelta(minutes=10),
        **changes,
    )


def ids(items: Iterable[Run | TaskInstance]) -> list[str]:
    return [x.task_id if isinstance(x, TaskInstance) else x.id for x in items]


def keys(tasks: Iterable[TaskInstance]) -> list[tuple[str, str]]:
    return [(t.run_id, t.task_id) for t in tasks]


def by_id(tasks: Iterable[TaskInstance]) -> dict[str, TaskInstance]:
    return {t.task_id: t for t in tasks}


def race(n: int, action: Callable[[int], T]) -> list[T]:
    """Run ``action(i)`` for i in range(n) on n threads released at the same moment."""
    gate = threading.Barrier(n)

    def worker(i: int) -> T:
        gate.wait(timeout=30)
        return action(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(worker, range(n)))


# ---------------------------------------------------------------------------- create / get
def test_create_run_stores_the_run_and_its_tasks_as_given(store: StateStore) -> None:
    run = a_run("run-1", n_tasks=3, trigger="schedule", error=None)
    tasks = [
        a_task("run-1", "extract", TaskState.QUEUED, priority=5),
        a_task(
            "run-1",
            "transform",
            TaskState.RUNNING,
            attempt=2,
            upstream=Upstream(succeeded=1, failed=2, skipped=3),
            started_at=at(1),
            deadline=at(11),
            outputs={"rows": 42, "nested": {"a": [1, "b"]}},
        ),
        a_task(
            "run-1",
            "load",
            TaskState.UP_FOR_RETRY,
            attempt=1,
            ready_at=datetime(2026, 3, 1, 2, 5, 7, 123456, tzinfo=UTC),
            ended_at=at(2),
            error="exit code 3",
            priority=-1,
        ),
    ]

    assert store.create_run(run, tasks, concurrency=4) is True

    assert store.get_run("run-1") == run
    assert by_id(store.get_tasks("run-1")) == by_id(tasks)
    for task in tasks:
        assert store.get_task("run-1", task.task_id) == task


def test_create_run_without_tasks(store: StateStore) -> None:
    run = a_run("empty")
    assert store.create_run(run, [], None) is True
    assert store.get_run("empty") == run
    assert store.get_tasks("empty") == []


def test_create_run_with_an_existing_id_returns_false_and_changes_nothing(
    store: StateStore,
) -> None:
    # GIVEN a run with two tasks
    original = seed(store, "run-1", ["a", "b"])
    # WHEN the same id is created again, differently (a duplicated trigger)
    again = a_run("run-1", state=RunState.QUEUED, params={"other": 1}, n_tasks=3, created=9)
    created = store.create_run(
        again,
        [a_task("run-1", "a", TaskState.QUEUED), a_task("run-1", "b"), a_task("run-1", "c")],
        concurrency=1,
    )
    # THEN it is refused and nothing about the first run changed
    assert created is False
    assert store.get_run("run-1") == original
    assert by_id(store.get_tasks("run-1")) == {"a": a_task("run-1", "a"), "b": a_task("run-1", "b")}
    with pytest.raises(NotFound):
        store.get_task("run-1", "c")
    assert store.queued_tasks(10) == []


def test_get_run_of_an_unknown_id_raises_not_found(store: StateStore) -> None:
    seed(store, "run-1")
    with pytest.raises(NotFound):
        store.get_run("run-2")


def test_get_task_of_an_unknown_task_or_run_raises_not_found(store: StateStore) -> None:
    seed(store, "run-1", ["a"])
    with pytest.raises(NotFound):
        store.get_task("run-1", "b")
    with pytest.raises(NotFound):
        store.get_task("run-2", "a")


def test_get_tasks_returns_the_named_tasks_of_one_run(store: StateStore) -> None:
    seed(store, "run-1", ["a", "b", "c"])
    seed(store, "run-2", ["a", "b"])

    assert sorted(keys(store.get_tasks("run-1"))) == [("run-1", t) for t in "abc"]
    assert sorted(keys(store.get_tasks("run-1", ["c", "a"]))) == [("run-1", "a"), ("run-1", "c")]
    assert store.get_tasks("run-1", []) == []


def test_states_present_names_the_asked_states_the_run_s_tasks_are_in(store: StateStore) -> None:
    seed(
        store,
        "run-1",
        [a_task("run-1", "a", TaskState.SUCCEEDED), a_task("run-1", "b", TaskState.STOPPED),
         a_task("run-1", "c", TaskState.UPSTREAM_FAILED), a_task("run-1", "d", TaskState.SKIPPED)],
    )  # fmt: skip
    seed(store, "run-2", [a_task("run-2", "a", TaskState.FAILED)])
    asked = {TaskState.STOPPED, TaskState.UPSTREAM_FAILED, TaskState.FAILED}

    assert store.states_present("run-1", asked) == {TaskState.STOPPED, TaskState.UPSTREAM_FAILED}
    assert store.states_present("run-1", {TaskState.FAILED}) == set()
    assert store.states_present("run-2", asked) == {TaskState.FAILED}  # of that run alone
    assert store.states_present("run-1", set()) == set()
    assert store.states_present("no-such-run", asked) == set()


# ---------------------------------------------------------------------------- list runs
# Created in this order; the ids deliberately do not sort in creation order.
LISTED = [
    ("r-kiwi", "analytics", "sales_daily", RunState.RUNNING),
    ("r-apple", "analytics", "sales_daily", RunState.SUCCEEDED),
    ("r-zebra", "analytics", "billing", RunState.RUNNING),
    ("r-mango", "ops", "sales_daily", RunState.FAILED),
    ("r-banana", "analytics", "sales_daily", RunState.RUNNING),
]


@pytest.fixture
def listed(store: StateStore) -> StateStore:
    for minute, (run_id, project, workflow, state) in enumerate(LISTED):
        seed(store, run_id, project=project, workflow=workflow, state=state, created=minute)
    return store


def test_list_runs_is_newest_first(listed: StateStore) -> None:
    runs = listed.list_runs(RunQuery())
    assert ids(runs) == ["r-banana", "r-mango", "r-zebra", "r-apple", "r-kiwi"]
    assert runs[0] == listed.get_run("r-banana")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (RunQuery(project="analytics"), ["r-banana", "r-zebra", "r-apple", "r-kiwi"]),
        (RunQuery(workflow="sales_daily"), ["r-banana", "r-mango", "r-apple", "r-kiwi"]),
        (RunQuery(state=RunState.RUNNING), ["r-banana", "r-zebra", "r-kiwi"]),
        (
            RunQuery(project="analytics", workflow="sales_daily", state=RunState.RUNNING),
            ["r-banana", "r-kiwi"],
        ),
        (RunQuery(project="nobody"), []),
        (RunQuery(limit=2), ["r-banana", "r-mango"]),
    ],
    ids=["project", "workflow", "state", "all-filters", "no-match", "limit"],
)
def test_list_runs_filters(listed: StateStore, query: RunQuery, expected: list[str]) -> None:
    assert ids(listed.list_runs(query)) == expected


@pytest.mark.parametrize(
    "query",
    [RunQuery(limit=2), RunQuery(project="analytics", limit=2), RunQuery(limit=1)],
    ids=["all", "filtered", "one-per-page"],
)
def test_list_runs_before_cursor_pages_through_every_run_once(
    listed: StateStore, query: RunQuery
) -> None:
    everything = ids(listed.list_runs(RunQuery(project=query.project, limit=100)))
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = ids(
            listed.list_runs(RunQuery(project=query.project, limit=query.limit, before=cursor))
        )
        if not page:
            break
        assert len(page) <= query.limit
        pages.append(page)
        cursor = page[-1]
        assert len(pages) <= len(everything)  # no endless paging

    assert [run_id for page in pages for run_id in page] == everything


def test_list_runs_before_the_oldest_run_is_empty(listed: StateStore) -> None:
    assert listed.list_runs(RunQuery(before="r-kiwi")) == []
    assert ids(listed.list_runs(RunQuery(before="r-zebra"))) == ["r-apple", "r-kiwi"]


def test_list_runs_of_a_workflow_is_one_projects_or_every_projects_page_by_page(
    store: StateStore,
) -> None:
    # GIVEN two projects with a workflow of the same name, and another workflow
    for minute, (run_id, project, workflow, state) in enumerate(
        [
            ("a-1", "a", "etl", RunState.SUCCEEDED),
            ("b-1", "b", "etl", RunState.RUNNING),
            ("a-x", "a", "other", RunState.RUNNING),
            ("a-2", "a", "etl", RunState.FAILED),
            ("b-2", "b", "etl", RunState.SUCCEEDED),
            ("a-3", "a", "etl", RunState.SUCCEEDED),
        ]
    ):
        seed(store, run_id, project=project, workflow=workflow, state=state, created=minute)

    def pages(query: RunQuery) -> list[list[str]]:
        found: list[list[str]] = []
        while page := ids(store.list_runs(replace(query, before=found[-1][-1] if found else None))):
            found.append(page)
        return found

    # THEN a project's listing has its own runs of it, newest first, page by page
    assert pages(RunQuery(project="a", workflow="etl", limit=2)) == [["a-3", "a-2"], ["a-1"]]
    assert pages(RunQuery(project="b", workflow="etl", limit=1)) == [["b-2"], ["b-1"]]
    assert ids(store.list_runs(RunQuery(project="a", workflow="etl", state=RunState.SUCCEEDED))) == [
        "a-3", "a-1",
    ]  # fmt: skip
    # AND without a project (an operator's listing; the API always names one), every
    # project's runs of a workflow of that name
    assert pages(RunQuery(workflow="etl", limit=2)) == [["a-3", "b-2"], ["a-2", "b-1"], ["a-1"]]
    assert ids(store.list_runs(RunQuery(workflow="etl", state=RunState.SUCCEEDED))) == [
        "a-3", "b-2", "a-1",
    ]  # fmt: skip


# ---------------------------------------------------------------------------- put_run
def test_put_run_replaces_state_fields_when_the_state_is_still_expected(
    store: StateStore,
) -> None:
    # GIVEN a running run
    run = seed(store, "run-1", n_tasks=3)
    # WHEN it finishes (the caller's copy carries stale counters)
    done = run.with_(state=RunState.FAILED, ended_at=at(30), n_done=3, n_failed=1, error="boom")
    # THEN the write applies to the state fields
    assert store.put_run(done, expect=RunState.RUNNING) is True
    # AND the counters stay what add_counters made them: a put never erases a concurrent add
    assert store.get_run("run-1") == done.with_(n_done=run.n_done, n_failed=run.n_failed)


def test_put_run_keeps_counters_added_after_the_caller_read_the_run(store: StateStore) -> None:
    # GIVEN a writer that read the run, then another writer adds to its counters
    run = seed(store, "run-1", n_tasks=3)
    store.add_counters("run-1", done=2, running=1)
    # WHEN the first writer pauses its (stale) copy
    assert store.put_run(run.with_(state=RunState.PAUSED), expect=RunState.RUNNING) is True
    # THEN the added counts survive
    after = store.get_run("run-1")
    assert (after.state, after.n_done, after.n_running) == (
        RunState.PAUSED,
        run.n_done + 2,
        run.n_running + 1,
    )


def test_put_run_is_refused_when_the_state_moved_on(store: StateStore) -> None:
    # GIVEN a running run, paused by one writer
    run = seed(store, "run-1")
    paused = run.with_(state=RunState.PAUSED)
    assert store.put_run(paused, expect=RunState.RUNNING) is True
    # WHEN a second writer, who also read RUNNING, tries to finish it
    finished = run.with_(state=RunState.SUCCEEDED, ended_at=at(5))
    # THEN it loses and the first write stands
    assert store.put_run(finished, expect=RunState.RUNNING) is False
    assert store.get_run("run-1") == paused


def test_put_run_of_an_unknown_run_writes_nothing(store: StateStore) -> None:
    ghost = a_run("ghost")
    assert store.put_run(ghost, expect=RunState.RUNNING) is False
    with pytest.raises(NotFound):
        store.get_run("ghost")


# ---------------------------------------------------------------------------- counters
def test_add_counters_adds_and_returns_the_run_after(store: StateStore) -> None:
    run = seed(store, "run-1", n_tasks=5)

    after = store.add_counters("run-1", done=2, failed=1, running=3)
    assert after == run.with_(n_done=2, n_failed=1, n_running=3)
    assert store.get_run("run-1") == after

    after = store.add_counters("run-1", done=1, running=-2)
    assert after == run.with_(n_done=3, n_failed=1, n_running=1)

    assert store.add_counters("run-1") == after


def test_add_counters_is_atomic_under_concurrent_writers(store: StateStore) -> None:
    seed(store, "run-1")

    results = race(RACERS, lambda _: store.add_counters("run-1", running=1, done=2))

    # every writer saw its own increment applied on top of all earlier ones
    assert sorted(r.n_running for r in results) == list(range(1, RACERS + 1))
    final = store.get_run("run-1")
    assert (final.n_running, final.n_done) == (RACERS, 2 * RACERS)


# ---------------------------------------------------------------------------- run queries
def test_count_active_runs_counts_running_and_paused_of_one_workflow(store: StateStore) -> None:
    for minute, state in enumerate(RunState):
        seed(store, f"run-{state.value}", state=state, created=minute)
    seed(store, "other-workflow", workflow="billing", created=10)
    seed(store, "other-project", project="ops", created=11)

    assert store.count_active_runs("analytics", "sales_daily") == 2
    assert store.count_active_runs("analytics", "billing") == 1
    assert store.count_active_runs("analytics", "nothing") == 0


def test_queued_runs_are_oldest_first(store: StateStore) -> None:
    # GIVEN queued runs created in this order, with a running one among them
    seed(store, "q-zulu", state=RunState.QUEUED, created=1)
    seed(store, "running", state=RunState.RUNNING, created=2)
    seed(store, "q-alpha", state=RunState.QUEUED, created=3)
    seed(store, "q-mike", state=RunState.QUEUED, created=4, workflow="billing")

    assert ids(store.queued_runs(10)) == ["q-zulu", "q-alpha", "q-mike"]
    assert ids(store.queued_runs(2)) == ["q-zulu", "q-alpha"]

    # WHEN the oldest starts THEN it leaves the queue
    started = store.get_run("q-zulu").with_(state=RunState.RUNNING, started_at=at(5))
    assert store.put_run(started, expect=RunState.QUEUED)
    assert ids(store.queued_runs(10)) == ["q-alpha", "q-mike"]


def test_queued_runs_can_skip_full_workflows_and_queued_ones_are_counted(
    store: StateStore,
) -> None:
    seed(store, "q-zulu", state=RunState.QUEUED, created=1)
    seed(store, "q-alpha", state=RunState.QUEUED, created=2)
    seed(store, "q-mike", state=RunState.QUEUED, created=3, workflow="billing")
    seed(store, "q-ops", state=RunState.QUEUED, created=4, project="ops")
    seed(store, "running", state=RunState.RUNNING, created=5)

    skip = [("analytics", "sales_daily")]
    assert ids(store.queued_runs(10, skip=skip)) == ["q-mike", "q-ops"]
    assert ids(store.queued_runs(1, skip=skip)) == ["q-mike"]
    both = [("analytics", "sales_daily"), ("analytics", "billing")]
    assert ids(store.queued_runs(10, skip=both)) == ["q-ops"]
    assert store.count_queued_runs("analytics", "sales_daily") == 2
    assert store.count_queued_runs("analytics", "billing") == 1
    assert store.count_queued_runs("ops", "sales_daily") == 1
    assert store.count_queued_runs("analytics", "nothing") == 0


def test_queued_runs_of_one_workflow_by_what_made_them(store: StateStore) -> None:
    # a schedule without catchup keeps one of its queued runs (Scheduler.fire)
    seed(store, "s-zulu", state=RunState.QUEUED, created=1, trigger="schedule")
    seed(store, "manual", state=RunState.QUEUED, created=2)
    seed(store, "s-alpha", state=RunState.QUEUED, created=3, trigger="schedule")
    seed(store, "s-running", state=RunState.RUNNING, created=4, trigger="schedule")
    seed(
        store, "s-billing", state=RunState.QUEUED, created=5, trigger="schedule", workflow="billing"
    )
    seed(store, "s-ops", state=RunState.QUEUED, created=6, trigger="schedule", project="ops")

    assert ids(store.queued_runs_of("analytics", "sales_daily", "schedule")) == [
        "s-zulu",
        "s-alpha",
    ]
    assert ids(store.queued_runs_of("analytics", "sales_daily", "manual")) == ["manual"]
    assert ids(store.queued_runs_of("analytics", "billing", "schedule")) == ["s-billing"]
    assert store.queued_runs_of("analytics", "nothing", "schedule") == []


def test_runs_in_states(store: StateStore) -> None:
    for minute, state in enumerate(RunState):
        seed(store, f"run-{state.value}", state=state, created=minute)

    found = list(store.runs_in_states([RunState.RUNNING, RunState.PAUSED]))
    assert sorted(ids(found)) == ["run-paused", "run-running"]
    assert store.get_run("run-paused") in found
    assert list(store.runs_in_states([])) == []


# ---------------------------------------------------------------------------- put_task
def test_put_task_never_erases_upstream_counted_after_the_caller_read_it(store: StateStore) -> None:
    # GIVEN a child with two parents; a writer reads it before the first parent is counted
    seed(store, "run-1", ["p1", "p2", "child"])
    stale = store.get_task("run-1", "child")
    assert store.record_upstream("run-1", "child", "p1", TaskState.SUCCEEDED) is not None
    # WHEN the writer moves its stale copy on (e.g. a reader queuing it)
    assert store.put_task(stale.with_(priority=5), TaskState.WAITING, 0) is True
    # THEN the count recorded meanwhile is still there
    assert store.get_task("run-1", "child").upstream == Upstream(succeeded=1)


def test_put_task_writes_when_state_and_attempt_match(store: StateStore) -> None:
    running = a_task("run-1", "a", TaskState.RUNNING, attempt=1, started_at=at(1))
    seed(store, "run-1", [running])

    done = running.with_(
        state=TaskState.SUCCEEDED, ended_at=at(2), deadline=None, outputs={"rows": 42}
    )
    assert store.put_task(done, expect=TaskState.RUNNING, expect_attempt=1) is True
    assert store.get_task("run-1", "a") == done


def test_put_task_is_refused_when_the_state_moved_on(store: StateStore) -> None:
    # GIVEN a task that is already QUEUED
    queued = a_task("run-1", "a", TaskState.QUEUED)
    seed(store, "run-1", [queued])
    # WHEN a writer who still believes it is WAITING writes
    # THEN nothing changes
    assert store.put_task(queued.with_(priority=9), TaskState.WAITING, 0) is False
    assert store.get_task("run-1", "a") == queued


def test_put_task_with_a_stale_attempt_number_loses(store: StateStore) -> None:
    # GIVEN attempt 1 timed out and attempt 2 now runs
    second = a_task("run-1", "a", TaskState.RUNNING, attempt=2, started_at=at(5))
    seed(store, "run-1", [second])
    # WHEN attempt 1's late result arrives (state matches, attempt does not)
    late = second.with_(state=TaskState.FAILED, attempt=1, ended_at=at(6), error="late")
    # THEN it changes nothing
    assert store.put_task(late, TaskState.RUNNING, expect_attempt=1) is False
    assert store.get_task("run-1", "a") == second
    # AND attempt 2's own result still applies
    ok = second.with_(state=TaskState.SUCCEEDED, ended_at=at(7))
    assert store.put_task(ok, TaskState.RUNNING, expect_attempt=2) is True
    assert store.get_task("run-1", "a") == ok


def test_of_two_writers_claiming_one_queued_task_only_the_first_wins(store: StateStore) -> None:
    # GIVEN a queued task, read by two schedulers
    queued = a_task("run-1", "a", TaskState.QUEUED)
    seed(store, "run-1", [queued])
    first = claim(queued, at(1), outputs={"by": "first"})
    second = claim(queued, at(2), outputs={"by": "second"})
    # WHEN both claim it
    # THEN exactly one wins, and the loser's write left no trace
    assert store.put_task(first, TaskState.QUEUED, 0) is True
    assert store.put_task(second, TaskState.QUEUED, 0) is False
    assert store.get_task("run-1", "a") == first


def test_concurrent_claims_of_one_queued_task_have_exactly_one_winner(
    store: StateStore,
) -> None:
    queued = a_task("run-1", "a", TaskState.QUEUED)
    seed(store, "run-1", [queued])

    won = race(
        RACERS,
        lambda i: store.put_task(
            claim(queued, at(i), outputs={"worker": i}), TaskState.QUEUED, queued.attempt
        ),
    )

    assert won.count(True) == 1
    winner = won.index(True)
    assert store.get_task("run-1", "a") == claim(queued, at(winner), outputs={"worker": winner})


def test_put_task_of_an_unknown_task_writes_nothing(store: StateStore) -> None:
    seed(store, "run-1", ["a"])
    ghost = a_task("run-1", "ghost", TaskState.QUEUED)
    assert store.put_task(ghost, TaskState.WAITING, 0) is False
    with pytest.raises(NotFound):
        store.get_task("run-1", "ghost")


# ---------------------------------------------------------------------------- record_upstream
@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (TaskState.SUCCEEDED, Upstream(succeeded=1)),
        (TaskState.SKIPPED, Upstream(skipped=1)),
        (TaskState.FAILED, Upstream(failed=1)),
        (TaskState.UPSTREAM_FAILED, Upstream(failed=1)),
        (TaskState.STOPPED, Upstream(failed=1)),
    ],
)
def test_record_upstream_counts_by_outcome_and_returns_the_child_after(
    store: StateStore, outcome: TaskState, expected: Upstream
) -> None:
    child = a_task("run-1", "child", priority=3, outputs={"k": "v"})
    seed(store, "run-1", ["parent", child])

    after = store.record_upstream("run-1", "child", "parent", outcome)

    assert after == child.with_(upstream=expected)
    assert store.get_task("run-1", "child") == after


def test_record_upstream_counts_each_parent_once(store: StateStore) -> None:
    seed(store, "run-1", ["a", "b", "c", "child"])

    # GIVEN each parent's end counted once
    assert store.record_upstream("run-1", "child", "a", TaskState.SUCCEEDED) is not None
    assert store.record_upstream("run-1", "child", "b", TaskState.FAILED) is not None
    after = store.record_upstream("run-1", "child", "c", TaskState.SKIPPED)
    assert after is not None
    assert after.upstream == Upstream(succeeded=1, failed=1, skipped=1)
    # WHEN an end is delivered again, even with another outcome
    # THEN it is a duplicate: None, and the counts stay
    assert store.record_upstream("run-1", "child", "a", TaskState.SUCCEEDED) is None
    assert store.record_upstream("run-1", "child", "b", TaskState.SUCCEEDED) is None
    assert store.get_task("run-1", "child").upstream == Upstream(1, 1, 1)


def test_record_upstreams_counts_a_parent_in_each_child_once_in_order(store: StateStore) -> None:
    seed(store, "run-1", ["p", "x", "y", "z", "w"])
    # GIVEN p's end already counted in y
    assert store.record_upstream("run-1", "y", "p", TaskState.SUCCEEDED) is not None

    # WHEN p's end is counted in all four children, with outcomes per edge
    after = store.record_upstreams(
        "run-1",
        "p",
        [
            ("z", TaskState.SKIPPED),
            ("y", TaskState.SUCCEEDED),
            ("x", TaskState.SUCCEEDED),
            ("w", TaskState.FAILED),
        ],
    )

    # THEN each new count returns its child after, in the order asked; y's is a duplicate
    assert [t.task_id if t else None for t in after] == ["z", None, "x", "w"]
    assert [t.upstream for t in after if t] == [
        Upstream(skipped=1),
        Upstream(1),
        Upstream(failed=1),
    ]
    assert store.get_task("run-1", "y").upstream == Upstream(succeeded=1)
    assert all(store.get_task("run-1", t.task_id) == t for t in after if t)
    # and a repeat counts nothing
    assert store.record_upstreams("run-1", "p", [("x", TaskState.SUCCEEDED)]) == [None]
    assert store.record_upstreams("run-1", "p", []) == []


def test_record_upstream_is_per_run_and_per_child(store: StateStore) -> None:
    seed(store, "run-1", ["p", "x", "y"])
    seed(store, "run-2", ["p", "x"])

    assert store.record_upstream("run-1", "x", "p", TaskState.SUCCEEDED) is not None
    other_child = store.record_upstream("run-1", "y", "p", TaskState.SUCCEEDED)
    other_run = store.record_upstream("run-2", "x", "p", TaskState.SUCCEEDED)

    assert other_child is not None
    assert other_child.upstream == Upstream(succeeded=1)
    assert other_run is not None
    assert other_run.upstream == Upstream(succeeded=1)


def test_concurrent_duplicates_of_one_upstream_end_count_once(store: StateStore) -> None:
    seed(store, "run-1", ["parent", "child"])

    results = race(
        RACERS, lambda _: store.record_upstream("run-1", "child", "parent", TaskState.SUCCEEDED)
    )

    counted = [r for r in results if r is not None]
    assert len(counted) == 1
    assert counted[0].upstream == Upstream(succeeded=1)
    assert store.get_task("run-1", "child").upstream == Upstream(succeeded=1)


def test_concurrent_ends_of_distinct_parents_all_count(store: StateStore) -> None:
    parents = [f"p{i:02d}" for i in range(RACERS)]
    seed(store, "run-1", [*parents, "child"])

    results = race(
        RACERS,
        lambda i: store.record_upstream("run-1", "child", parents[i], TaskState.SUCCEEDED),
    )

    assert all(r is not None for r in results)
    # each caller saw its own count on top of every earlier one: no lost update
    seen = sorted(r.upstream.succeeded for r in results if r is not None)
    assert seen == list(range(1, RACERS + 1))
    assert store.get_task("run-1", "child").upstream == Upstream(succeeded=RACERS)


# ---------------------------------------------------------------------------- queued_tasks
def test_queued_tasks_are_those_of_running_runs_only(store: StateStore) -> None:
    for minute, state in enumerate(RunState):
        seed(
            store,
            f"run-{state.value}",
            [a_task(f"run-{state.value}", "q", TaskState.QUEUED)],
            state=state,
            created=minute,
        )
    seed(
        store,
        "mixed",
        [
            a_task("mixed", "waiting"),
            a_task("mixed", "running", TaskState.RUNNING, attempt=1),
            a_task("mixed", "retry", TaskState.UP_FOR_RETRY, attempt=1, ready_at=at(-1)),
            a_task("mixed", "done", TaskState.SUCCEEDED, attempt=1),
        ],
        created=10,
    )

    assert keys(store.queued_tasks(100)) == [("run-running", "q")]

    # WHEN the paused run resumes THEN its queued task is offered too
    paused = store.get_run("run-paused")
    assert store.put_run(paused.with_(state=RunState.RUNNING), expect=RunState.PAUSED)
    assert sorted(keys(store.queued_tasks(100))) == [("run-paused", "q"), ("run-running", "q")]


def test_queued_tasks_skip_runs_at_their_concurrency_limit(store: StateStore) -> None:
    for run_id, concurrency in (("full", 1), ("free", 2), ("unlimited", None)):
        seed(store, run_id, [a_task(run_id, "q", TaskState.QUEUED)], concurrency=concurrency)
    store.add_counters("full", running=1)
    store.add_counters("free", running=1)
    store.add_counters("unlimited", running=500)

    assert sorted(keys(store.queued_tasks(100))) == [("free", "q"), ("unlimited", "q")]

    # WHEN a slot frees in the full run THEN its task is offered again
    store.add_counters("full", running=-1)
    assert sorted(keys(store.queued_tasks(100))) == [
        ("free", "q"),
        ("full", "q"),
        ("unlimited", "q"),
    ]
    # AND a run over its limit (e.g. after the limit was reached by a burst) is skipped
    store.add_counters("free", running=2)
    assert ("free", "q") not in keys(store.queued_tasks(100))


def test_queued_tasks_by_priority_then_in_the_order_they_became_queued(
    store: StateStore,
) -> None:
    priorities = {"a": 0, "b": 5, "c": 0, "d": 5, "e": 0}
    seed(store, "run-1", [a_task("run-1", t, priority=p) for t, p in priorities.items()])
    seed(store, "run-2", ["z"], created=1)
    # GIVEN tasks queued in an order unlike their ids, creation or runs
    for run_id, task_id in [
        ("run-1", "c"),
        ("run-1", "d"),
        ("run-2", "z"),
        ("run-1", "a"),
        ("run-1", "e"),
        ("run-1", "b"),
    ]:
        queue(store, store.get_task(run_id, task_id))

    offered = keys(store.queued_tasks(100))

    assert offered == [
        ("run-1", "d"),
        ("run-1", "b"),
        ("run-1", "c"),
        ("run-2", "z"),
        ("run-1", "a"),
        ("run-1", "e"),
    ]
    assert keys(store.queued_tasks(3)) == offered[:3]


def test_a_requeued_task_goes_to_the_back_of_the_queue(store: StateStore) -> None:
    seed(store, "run-1", ["a", "b"])
    a = queue(store, store.get_task("run-1", "a"))
    queue(store, store.get_task("run-1", "b"))
    # GIVEN a ran and failed, and its retry became due after b was queued
    running = claim(a, at(1))
    assert store.put_task(running, TaskState.QUEUED, 0)
    retry = running.with_(state=TaskState.UP_FOR_RETRY, ready_at=at(2), deadline=None)
    assert store.put_task(retry, TaskState.RUNNING, 1)
    # WHEN it is queued again
    queue(store, retry, ready_at=None)
    # THEN b, queued earlier, comes first
    assert ids(store.queued_tasks(10)) == ["b", "a"]


def test_tasks_created_queued_take_their_place_in_fifo_order(store: StateStore) -> None:
    # GIVEN a task queued by a write, then a run created with a task already QUEUED,
    # then another task queued by a write
    seed(store, "run-1", ["early", "later"])
    queue(store, store.get_task("run-1", "early"))
    seed(store, "run-2", [a_task("run-2", "created-queued", TaskState.QUEUED)], created=1)
    queue(store, store.get_task("run-1", "later"))

    # THEN they are offered in the order they became queued
    assert keys(store.queued_tasks(10)) == [
        ("run-1", "early"),
        ("run-2", "created-queued"),
        ("run-1", "later"),
    ]


# ---------------------------------------------------------------------------- timed work
def test_due_retries_are_up_for_retry_tasks_whose_time_has_come(store: StateStore) -> None:
    seed(
        store,
        "run-1",
        [
            a_task("run-1", "due", TaskState.UP_FOR_RETRY, attempt=1, ready_at=at(-5)),
            a_task("run-1", "due-2", TaskState.UP_FOR_RETRY, attempt=2, ready_at=at(-1)),
            a_task("run-1", "later", TaskState.UP_FOR_RETRY, attempt=1, ready_at=at(5)),
            a_task("run-1", "queued", TaskState.QUEUED, ready_at=at(-5)),
            a_task("run-1", "running", TaskState.RUNNING, attempt=1, deadline=at(-5)),
        ],
    )

    assert sorted(ids(store.due_retries(at(0), 10))) == ["due", "due-2"]
    assert sorted(ids(store.due_retries(at(10), 10))) == ["due", "due-2", "later"]
    assert store.due_retries(at(-10), 10) == []
    limited = ids(store.due_retries(at(10), 2))
    assert len(limited) == 2
    assert set(limited) <= {"due", "due-2", "later"}
    assert store.get_task("run-1", "due") in store.due_retries(at(0), 10)


def test_expired_tasks_are_running_tasks_past_their_deadline(store: StateStore) -> None:
    seed(
        store,
        "run-1",
        [
            a_task("run-1", "overdue", TaskState.RUNNING, attempt=1, deadline=at(-5)),
            a_task("run-1", "overdue-2", TaskState.RUNNING, attempt=3, deadline=at(-1)),
            a_task("run-1", "in-time", TaskState.RUNNING, attempt=1, deadline=at(5)),
            a_task("run-1", "no-deadline", TaskState.RUNNING, attempt=1),
            a_task("run-1", "ended", TaskState.SUCCEEDED, attempt=1, deadline=at(-5)),
            a_task("run-1", "retry", TaskState.UP_FOR_RETRY, attempt=1, ready_at=at(-5)),
        ],
    )

    assert sorted(ids(store.expired_tasks(at(0), 10))) == ["overdue", "overdue-2"]
    assert sorted(ids(store.expired_tasks(at(10), 10))) == ["in-time", "overdue", "overdue-2"]
    assert store.expired_tasks(at(-10), 10) == []
    limited = ids(store.expired_tasks(at(10), 2))
    assert len(limited) == 2
    assert set(limited) <= {"overdue", "overdue-2", "in-time"}
    assert store.get_task("run-1", "overdue") in store.expired_tasks(at(0), 10)


def test_running_tasks_of_every_run(store: StateStore) -> None:
    seed(store, "run-1", [a_task("run-1", "a", TaskState.RUNNING, attempt=1), "b"])
    seed(
        store,
        "run-2",
        [
            a_task("run-2", "a", TaskState.RUNNING, attempt=2, deadline=at(3)),
            a_task("run-2", "c", TaskState.QUEUED),
        ],
    )

    running = store.running_tasks()

    assert sorted(keys(running)) == [("run-1", "a"), ("run-2", "a")]
    assert store.get_task("run-2", "a") in running


def test_next_wakeup_is_the_earliest_retry_or_deadline(store: StateStore) -> None:
    assert store.next_wakeup() is None

    running = a_task("run-1", "running", TaskState.RUNNING, attempt=1, deadline=at(20))
    seed(
        store,
        "run-1",
        [
            running,
            a_task("run-1", "retry", TaskState.UP_FOR_RETRY, attempt=1, ready_at=at(30)),
            # times on tasks in other states are not wake-ups
            a_task("run-1", "waiting", ready_at=at(1)),
            a_task("run-1", "ended", TaskState.SUCCEEDED, attempt=1, deadline=at(2)),
        ],
    )
    assert store.next_wakeup() == at(20)

    # WHEN the running task ends THEN the retry is next
    ended = running.with_(state=TaskState.SUCCEEDED, ended_at=at(5))
    assert store.put_task(ended, TaskState.RUNNING, 1)
    assert store.next_wakeup() == at(30)

    # WHEN the retry is queued THEN nothing is timed any more
    retry = store.get_task("run-1", "retry")
    queue(store, retry, ready_at=None)
    assert store.next_wakeup() is None


# ---------------------------------------------------------------------------- apply_plan
def _failed_run(store: StateStore) -> tuple[Run, dict[str, TaskInstance]]:
    """extract -> load -> report, with load failed and report upstream_failed."""
    run = seed(
        store,
        "run-1",
        [
            a_task(
                "run-1",
                "extract",
                TaskState.SUCCEEDED,
                attempt=1,
                ended_at=at(1),
                outputs={"rows": 3},
            ),
            a_task(
                "run-1", "load", TaskState.FAILED, attempt=2, ended_at=at(2), error="exit code 1"
            ),
            a_task("run-1", "report", TaskState.UPSTREAM_FAILED, ended_at=at(2)),
        ],
        state=RunState.FAILED,
        ended_at=at(2),
        n_done=3,
        n_failed=1,
    )
    assert store.record_upstream("run-1", "load", "extract", TaskState.SUCCEEDED) is not None
    assert store.record_upstream("run-1", "report", "load", TaskState.FAILED) is not None
    return run, by_id(store.get_tasks("run-1"))


def _rerun_plan(run: Run, tasks: dict[str, TaskInstance]) -> Plan:
    """Rerun failed: load queued again, report reset; extract's end stays counted for load."""
    return Plan(
        run=run.with_(state=RunState.RUNNING, ended_at=None, n_done=1, n_failed=0, error=None),
        tasks={
            "load": tasks["load"].with_(state=TaskState.QUEUED, ended_at=None, error=None),
            "report": tasks["report"].with_(
                state=TaskState.WAITING, ended_at=None, upstream=Upstream()
            ),
        },
        edges={"load": {"extract": TaskState.SUCCEEDED}, "report": {}},
    )


def test_apply_plan_writes_the_run_and_its_tasks_when_the_run_state_matches(
    store: StateStore,
) -> None:
    # GIVEN a failed run
    run, tasks = _failed_run(store)
    plan = _rerun_plan(run, tasks)
    # WHEN "rerun failed" is applied
    assert store.apply_plan(plan, expect=RunState.FAILED) is True
    # THEN the run and the reset tasks are as planned, the others untouched
    assert store.get_run("run-1") == plan.run
    assert store.get_task("run-1", "load") == plan.tasks["load"]
    assert store.get_task("run-1", "report") == plan.tasks["report"]
    assert store.get_task("run-1", "extract") == tasks["extract"]
    assert keys(store.queued_tasks(10)) == [("run-1", "load")]


def test_apply_plan_writes_the_run_params_only_when_the_plan_gives_new_ones(
    store: StateStore,
) -> None:
    # GIVEN a failed run, and a rerun of it that gives it new params (a child rerun whole)
    run, tasks = _failed_run(store)
    plan = _rerun_plan(run, tasks)
    plan.run = plan.run.with_(params={**run.params, "n": "2"})
    plan.new_params = True
    # WHEN it is refused (another end), THEN the params stay
    assert store.apply_plan(plan, RunState.FAILED, if_ended_at=at(1)) is False
    assert store.get_run("run-1").params == run.params
    # WHEN it applies, THEN the run has them with its new state
    assert store.apply_plan(plan, RunState.FAILED) is True
    assert store.get_run("run-1") == plan.run
    # WHEN a plan decided from a read before them (a stop) applies, THEN they stay: only
    # a plan that gives new params writes them
    stale = stop(
        run.with_(state=RunState.RUNNING, plan_gen=store.get_run("run-1").plan_gen), [], at(3)
    )
    assert stale.run.params == run.params
    assert store.apply_plan(stale, RunState.RUNNING) is True
    assert store.get_run("run-1").params == plan.run.params


def test_apply_plan_is_refused_when_the_run_state_moved_on(store: StateStore) -> None:
    run, tasks = _failed_run(store)
    plan = _rerun_plan(run, tasks)

    assert store.apply_plan(plan, expect=RunState.RUNNING) is False

    assert store.get_run("run-1") == run
    assert by_id(store.get_tasks("run-1")) == tasks
    # the upstream records were not rewritten either
    assert store.record_upstream("run-1", "report", "load", TaskState.SUCCEEDED) is None


def test_of_two_plans_decided_from_one_read_of_a_run_only_the_first_applies(
    store: StateStore,
) -> None:
    # GIVEN a running run whose tasks x and y wait, read once
    seed(store, "run-1", ["x", "y"], state=RunState.RUNNING, started_at=at(0))
    run = store.get_run("run-1")
    read = by_id(store.get_tasks("run-1"))

    def marked(task_id: str) -> Plan:
        """A mark of ``task_id`` succeeded (``engine.set_end`` of a run that goes on)."""
        done = read[task_id].with_(state=TaskState.SUCCEEDED, ended_at=at(1))
        return Plan(run, {task_id: done}, if_unchanged=(read[task_id],), deltas=(1, 0, 0))

    # WHEN two plans are decided from that read, each writing another task (so neither
    # changes a task the other was decided from), and both are applied
    # THEN the first applies, and the second is refused, nothing of it written: plans of a
    # run apply one after the other, each decided from what the one before wrote
    assert store.apply_plan(marked("x"), RunState.RUNNING) is True
    assert store.apply_plan(marked("y"), RunState.RUNNING) is False
    assert store.get_task("run-1", "y") == read["y"]
    assert store.get_run("run-1").n_done == 1
    # WHEN it is decided again from a new read, THEN it applies
    again = store.get_run("run-1")
    done = read["y"].with_(state=TaskState.SUCCEEDED, ended_at=at(1))
    plan = Plan(again, {"y": done}, if_unchanged=(read["y"],), deltas=(1, 0, 0))
    assert store.apply_plan(plan, RunState.RUNNING) is True
    assert store.get_run("run-1").n_done == 2


def test_apply_plan_if_ended_at_applies_a_rerun_to_the_end_it_saw_once(
    store: StateStore,
) -> None:
    # GIVEN a failed run, and a rerun decided from its end at at(2)
    run, tasks = _failed_run(store)
    plan = _rerun_plan(run, tasks)
    # WHEN the decision saw another end, THEN nothing is written
    assert store.apply_plan(plan, RunState.FAILED, if_ended_at=at(1)) is False
    assert store.get_run("run-1") == run
    assert by_id(store.get_tasks("run-1")) == tasks
    # WHEN it saw this end, THEN it applies
    assert store.apply_plan(plan, RunState.FAILED, if_ended_at=at(2)) is True
    assert store.get_run("run-1") == plan.run
    # WHEN the rerun's run failed again (ended at at(3)) and the same decision is applied
    # again (a second advancer, the reconciler), THEN it is refused: the run reruns once
    again = plan.run.with_(state=RunState.FAILED, ended_at=at(3))
    assert store.put_run(again, RunState.RUNNING)
    assert store.apply_plan(plan, RunState.FAILED, if_ended_at=at(2)) is False
    assert store.get_run("run-1") == again  # still failed, ended at at(3): not rerun
    assert store.get_task("run-1", "load") == tasks["load"].with_(
        state=TaskState.QUEUED, ended_at=None, error=None
    )  # as the one application left it


def test_apply_plan_rewrites_the_upstream_records_of_the_children_it_names(
    store: StateStore,
) -> None:
    # GIVEN a child whose parents a and b have ended, and c has not
    seed(store, "run-1", ["a", "b", "c", "d", "child", "sibling"])
    store.record_upstream("run-1", "child", "a", TaskState.SUCCEEDED)
    store.record_upstream("run-1", "child", "b", TaskState.FAILED)
    store.record_upstream("run-1", "sibling", "b", TaskState.FAILED)
    run = store.get_run("run-1")
    child = store.get_task("run-1", "child")
    # WHEN a plan rewrites the child's records: a and d (not yet recorded) counted, b not
    reset = child.with_(upstream=Upstream(succeeded=1, skipped=1))
    plan = Plan(
        run=run,
        tasks={"child": reset},
        edges={"child": {"a": TaskState.SUCCEEDED, "d": TaskState.SKIPPED}},
    )
    assert store.apply_plan(plan, expect=RunState.RUNNING) is True
    # THEN a parent in the plan's edges is a duplicate, one not in them counts
    assert store.record_upstream("run-1", "child", "a", TaskState.SUCCEEDED) is None
    assert store.record_upstream("run-1", "child", "d", TaskState.SKIPPED) is None
    after_b = store.record_upstream("run-1", "child", "b", TaskState.SUCCEEDED)
    assert after_b is not None
    assert after_b.upstream == Upstream(succeeded=2, skipped=1)
    after_c = store.record_upstream("run-1", "child", "c", TaskState.FAILED)
    assert after_c is not None
    assert after_c.upstream == Upstream(succeeded=2, failed=1, skipped=1)
    # AND a child the plan did not name keeps its records
    assert store.record_upstream("run-1", "sibling", "b", TaskState.FAILED) is None


def test_apply_plan_with_empty_edges_makes_every_parent_count_again(store: StateStore) -> None:
    seed(store, "run-1", ["a", "child"])
    store.record_upstream("run-1", "child", "a", TaskState.FAILED)
    run = store.get_run("run-1")
    reset = store.get_task("run-1", "child").with_(upstream=Upstream())

    assert store.apply_plan(Plan(run, {"child": reset}, edges={"child": {}}), RunState.RUNNING)

    again = store.record_upstream("run-1", "child", "a", TaskState.SUCCEEDED)
    assert again is not None
    assert again.upstream == Upstream(succeeded=1)


def test_a_task_keeps_the_end_of_its_child_run_that_it_took(store: StateStore) -> None:
    """``TaskInstance.child_end`` (a sub-workflow task's child's end that it took) is kept by
    every write of a task: at creation, a transition (alone or several in one decision), a
    plan; a write without it clears it."""
    ran = a_task("run-1", "sub", TaskState.RUNNING, attempt=1, started_at=at(0))
    seed(store, "run-1", [ran, *(a_task("run-1", f"t{i}", TaskState.QUEUED) for i in range(4))])
    assert store.get_task("run-1", "sub").child_end is None
    # a transition: the task ends with its child's end
    took = ran.with_(state=TaskState.FAILED, ended_at=at(2), child_end=at(1))
    assert store.put_task(took, TaskState.RUNNING, 1)
    assert store.get_task("run-1", "sub") == took
    # several transitions in one decision (a store may write them in one statement)
    writes = tuple(
        TaskWrite(a_task("run-1", f"t{i}", TaskState.SUCCEEDED, ended_at=at(3), child_end=at(i)),
                  TaskState.QUEUED, 0)
        for i in range(4)
    )  # fmt: skip
    assert store.apply(Decision("run-1", writes))
    assert [store.get_task("run-1", f"t{i}").child_end for i in range(4)] == [
        at(i) for i in range(4)
    ]
    # a plan: the task takes a later end of its child
    again = took.with_(state=TaskState.SUCCEEDED, ended_at=at(5), child_end=at(4))
    assert store.apply_plan(Plan(store.get_run("run-1"), {"sub": again}), RunState.RUNNING)
    assert store.get_task("run-1", "sub") == again
    # a write of the task without it (a rerun resets it) clears it
    reset = a_task("run-1", "sub", TaskState.WAITING, attempt=1)
    assert store.apply_plan(Plan(store.get_run("run-1"), {"sub": reset}), RunState.RUNNING)
    assert store.get_task("run-1", "sub").child_end is None
    # and created with one, a task has it
    seed(store, "run-2", [took.with_(run_id="run-2")])
    assert store.get_task("run-2", "sub").child_end == at(1)


def _takes_end(run: Run, read: TaskInstance, *others: TaskInstance) -> Plan:
    """A plan decided from ``read`` (a sub-workflow task that failed with its child) that
    gives it its child's later end, succeeded, and resets ``others``; applied only while
    ``read`` is as read."""
    moved = read.with_(state=TaskState.SUCCEEDED, ended_at=at(9), error=None, child_end=at(8))
    plan = Plan(
        run.with_(state=RunState.RUNNING, ended_at=None, n_done=1, n_failed=0, error=None),
        {"load": moved, **{o.task_id: o.with_(state=TaskState.WAITING, ended_at=None) for o in others}},
    )  # fmt: skip
    plan.if_unchanged = (read,)
    return plan


def test_apply_plan_if_unchanged_applies_only_while_the_task_is_as_read(
    store: StateStore,
) -> None:
    # GIVEN a failed run whose load failed (ended at at(2)), and a plan decided from it
    run, tasks = _failed_run(store)
    plan = _takes_end(run, tasks["load"], tasks["report"])
    # WHEN load moved since (another end of it was taken, with the same state), THEN the
    # plan is refused and nothing is written
    moved = tasks["load"].with_(ended_at=at(3))
    assert store.put_task(moved, TaskState.FAILED, 2)
    assert store.apply_plan(plan, RunState.FAILED) is False
    assert store.get_run("run-1") == run
    assert by_id(store.get_tasks("run-1")) == {**tasks, "load": moved}
    # WHEN load is as read, THEN it applies, once: applied again, it is refused
    assert store.put_task(tasks["load"], TaskState.FAILED, 2)
    assert store.apply_plan(plan, RunState.FAILED) is True
    assert store.get_task("run-1", "load") == plan.tasks["load"]
    assert store.get_run("run-1") == plan.run
    assert store.apply_plan(plan, RunState.RUNNING) is False


def test_apply_plan_if_unchanged_checks_a_task_it_does_not_write(store: StateStore) -> None:
    run, tasks = _failed_run(store)
    plan = Plan(run.with_(error="checked"), {"report": tasks["report"].with_(error="x")})
    plan.if_unchanged = (tasks["extract"].with_(attempt=2),)  # not as stored
    assert store.apply_plan(plan, RunState.FAILED) is False
    assert store.get_run("run-1") == run
    plan.if_unchanged = (tasks["extract"],)
    assert store.apply_plan(plan, RunState.FAILED) is True
    assert store.get_run("run-1").error == "checked"


@pytest.mark.timeout(300)
def test_apply_plan_if_unchanged_holds_for_a_plan_too_large_for_one_transaction(
    store: StateStore,
) -> None:
    # GIVEN a failed run of 151 tasks, and a plan decided from load that resets the others
    others = [a_task("run-1", f"w{i:03d}", TaskState.UPSTREAM_FAILED, ended_at=at(2))
              for i in range(150)]  # fmt: skip
    load = a_task("run-1", "load", TaskState.FAILED, attempt=1, ended_at=at(2), child_end=at(1))
    run = seed(store, "run-1", [load, *others], state=RunState.FAILED, ended_at=at(2),
               n_done=151, n_failed=1)  # fmt: skip
    plan = _takes_end(run, load, *others)
    # WHEN load moved since, THEN the plan is refused and nothing is written
    assert store.put_task(load.with_(ended_at=at(3)), TaskState.FAILED, 1)
    assert store.apply_plan(plan, RunState.FAILED) is False
    assert store.get_run("run-1") == run
    assert all(
        t.state is TaskState.UPSTREAM_FAILED
        for t in store.get_tasks("run-1", [o.task_id for o in others])
    )
    # WHEN load is as read, THEN it applies whole
    assert store.put_task(load, TaskState.FAILED, 1)
    assert store.apply_plan(plan, RunState.FAILED) is True
    assert store.get_run("run-1") == plan.run
    assert by_id(store.get_tasks("run-1")) == plan.tasks


# ---------------------------------------------------------------------------- attempts
def test_start_attempt_is_listed(store: StateStore) -> None:
    seed(store, "run-1", ["a"])
    started = Attempt("run-1", "a", 1, "running", started_at=at(1), log="/logs/run-1/a/1.log")

    store.start_attempt(started)

    assert store.list_attempts("run-1") == [started]


def test_finish_attempt_updates_the_started_one_and_keeps_its_log(store: StateStore) -> None:
    seed(store, "run-1", ["a"])
    store.start_attempt(Attempt("run-1", "a", 1, "running", at(1), log="/logs/a/1.log"))
    # WHEN the attempt ends (the result carries no log location)
    store.finish_attempt(
        Attempt(
            "run-1",
            "a",
            1,
            "failed",
            at(1),
            ended_at=at(3),
            exit_code=2,
            error="exit code 2",
            outputs={"partial": True},
        )
    )
    # THEN there is still one attempt, finished, with the log path from its start
    assert store.list_attempts("run-1", "a") == [
        Attempt(
            "run-1",
            "a",
            1,
            "failed",
            at(1),
            ended_at=at(3),
            exit_code=2,
            error="exit code 2",
            log="/logs/a/1.log",
            outputs={"partial": True},
        )
    ]


def test_finish_attempt_without_a_start_records_it(store: StateStore) -> None:
    seed(store, "run-1", ["a"])
    finished = Attempt("run-1", "a", 1, "lost", at(1), ended_at=at(2), log="s3://logs/a/1")

    store.finish_attempt(finished)
    store.finish_attempt(finished)  # a duplicated result

    assert store.list_attempts("run-1") == [finished]


def test_a_late_duplicate_start_does_not_undo_a_finish(store: StateStore) -> None:
    seed(store, "run-1", ["a"])
    started = Attempt("run-1", "a", 1, "running", at(1), log="/logs/a/1.log")
    finished = Attempt(
        "run-1",
        "a",
        1,
        "succeeded",
        at(1),
        ended_at=at(2),
        exit_code=0,
        log="/logs/a/1.log",
        outputs={"rows": 1},
    )
    store.start_attempt(started)
    store.finish_attempt(finished)

    store.start_attempt(started)

    assert store.list_attempts("run-1", "a") == [finished]


def test_a_repeated_start_only_fills_in_the_log_location(store: StateStore) -> None:
    seed(store, "run-1", ["a"])
    # GIVEN an attempt recorded as started before its log location was known
    store.start_attempt(Attempt("run-1", "a", 1, "running", at(1)))
    # WHEN its start is recorded again, now with the log location (and a later time)
    store.start_attempt(Attempt("run-1", "a", 1, "running", at(2), log="/logs/a/1.log"))
    # THEN the one attempt gains the log and keeps everything else
    assert store.list_attempts("run-1") == [
        Attempt("run-1", "a", 1, "running", at(1), log="/logs/a/1.log")
    ]
    # AND a repeat without a log does not erase it
    store.start_attempt(Attempt("run-1", "a", 1, "running", at(1)))
    assert store.list_attempts("run-1")[0].log == "/logs/a/1.log"


def test_start_attempts_records_each_as_start_attempt_would(store: StateStore) -> None:
    names = [f"t{i}" for i in range(40)]  # more than one statement's worth on SQLite
    seed(store, "run-1", names)
    # GIVEN one attempt started without its log location and one already finished
    store.start_attempt(Attempt("run-1", "t0", 1, "running", at(1)))
    finished = Attempt("run-1", "t1", 1, "succeeded", at(1), ended_at=at(2), log="/logs/t1")
    store.finish_attempt(finished)
    # WHEN a turn records its starts at once (those two among them)
    store.start_attempts(
        [Attempt("run-1", name, 1, "running", at(3), log=f"/logs/{name}") for name in names]
    )
    # THEN each is recorded; the repeat only filled in the log; the finished one stays
    listed = {a.task_id: a for a in store.list_attempts("run-1")}
    assert sorted(listed) == sorted(names)
    assert listed["t0"] == Attempt("run-1", "t0", 1, "running", at(1), log="/logs/t0")
    assert listed["t1"] == finished
    assert listed["t39"] == Attempt("run-1", "t39", 1, "running", at(3), log="/logs/t39")


def test_list_attempts_of_a_run_or_one_task(store: StateStore) -> None:
    seed(store, "run-1", ["a", "b"])
    seed(store, "run-2", ["a"])
    a1 = Attempt("run-1", "a", 1, "failed", at(1), ended_at=at(2), exit_code=1)
    a2 = Attempt("run-1", "a", 2, "running", at(3))
    b1 = Attempt("run-1", "b", 1, "running", at(3))
    other = Attempt("run-2", "a", 1, "running", at(4))
    for attempt in (b1, a2, other):
        store.start_attempt(attempt)
    store.finish_attempt(a1)

    def order(attempts: list[Attempt]) -> list[Attempt]:
        return sorted(attempts, key=lambda x: (x.task_id, x.attempt))

    assert order(store.list_attempts("run-1")) == [a1, a2, b1]
    assert order(store.list_attempts("run-1", "a")) == [a1, a2]
    assert store.list_attempts("run-1", "nothing") == []
    assert store.list_attempts("run-3") == []


# ---------------------------------------------------------------------------- transaction
def test_writes_in_a_transaction_are_there_after_it(store: StateStore) -> None:
    with store.transaction():
        seed(store, "run-1", ["a"])
        queue(store, store.get_task("run-1", "a"))
        store.add_counters("run-1", done=1)

    assert store.get_task("run-1", "a").state is TaskState.QUEUED
    assert store.get_run("run-1").n_done == 1


def test_an_exception_in_a_transaction_leaves_nothing_written(
    store: StateStore, atomic_transactions: bool
) -> None:
    if not atomic_transactions:
        pytest.skip("this store's transaction() is a no-op, as the port allows")

    class Boom(Exception):
        pass

    # GIVEN a run with a queued task and an unrecorded edge
    run = seed(store, "run-1", [a_task("run-1", "a", TaskState.QUEUED), "b"])
    before = by_id(store.get_tasks("run-1"))

    def write_everything_then_fail() -> None:
        with store.transaction():
            seed(store, "run-2", ["x"])
            assert store.put_task(claim(before["a"], at(1)), TaskState.QUEUED, 0)
            store.add_counters("run-1", running=1)
            assert store.record_upstream("run-1", "b", "a", TaskState.SUCCEEDED) is not None
            store.start_attempt(Attempt("run-1", "a", 1, "running", at(1)))
            assert store.put_run(run.with_(state=RunState.PAUSED), RunState.RUNNING)
            raise Boom

    # WHEN writes of every kind happen in a transaction that then fails
    with pytest.raises(Boom):
        write_everything_then_fail()
    # THEN none of them is visible
    with pytest.raises(NotFound):
        store.get_run("run-2")
    assert store.get_run("run-1") == run
    assert by_id(store.get_tasks("run-1")) == before
    assert store.list_attempts("run-1") == []
    assert store.record_upstream("run-1", "b", "a", TaskState.SUCCEEDED) is not None
    # AND the store works on
    assert store.put_task(claim(before["a"], at(2)), TaskState.QUEUED, 0)


# ---------------------------------------------------------------------------- scale
# moto's DynamoDB makes 10,000 tasks in about 60 s on a quiet machine, 189 s at load ~20: the
# suite makes RUN_TASKS (tests/scale.py), `make test-scale` 10,000. A functional test at scale,
# not a timed one, so not bound by the suite's 120 s default
@pytest.mark.scale
@pytest.mark.timeout(600)
def test_a_run_of_many_tasks(store: StateStore) -> None:
    task_ids = [f"t{i:05d}" for i in range(RUN_TASKS)]
    last, middle, some_task = (
        task_ids[-1],
        task_ids[RUN_TASKS // 2],
        task_ids[RUN_TASKS * 42 // 100],
    )
    run = seed(store, "big", task_ids)

    assert store.get_run("big") == run
    assert store.get_run("big").n_tasks == RUN_TASKS
    assert ids(store.list_runs(RunQuery(workflow="sales_daily"))) == ["big"]
    assert sorted(ids(store.get_tasks("big"))) == task_ids
    some = task_ids[::7]
    assert sorted(ids(store.get_tasks("big", some))) == some

    # the hot path on a big run: one edge counted once, nothing else touched
    after = store.record_upstream("big", last, "t00000", TaskState.SUCCEEDED)
    assert after == a_task("big", last, upstream=Upstream(succeeded=1))
    assert store.record_upstream("big", last, "t00000", TaskState.SUCCEEDED) is None
    assert store.get_task("big", middle) == a_task("big", middle)

    queue(store, store.get_task("big", some_task))
    assert keys(store.queued_tasks(100)) == [("big", some_task)]


# ---------------------------------------------------------------------------- decisions
def test_apply_writes_a_decision_whole(store: StateStore) -> None:
    """GIVEN a running task with a waiting child WHEN the turn of its end is applied THEN the
    task, the child and the counters all change together."""
    seed(store, "r", [a_task("r", "a", TaskState.RUNNING, attempt=1), "b"], n_running=0)
    store.add_counters("r", running=1)
    a = store.get_task("r", "a")
    b = store.get_task("r", "b")
    decision = Decision(
        "r",
        (
            TaskWrite(a.with_(state=TaskState.SUCCEEDED, ended_at=at(1)), TaskState.RUNNING, 1),
            TaskWrite(b.with_(state=TaskState.QUEUED), TaskState.WAITING, 0),
        ),
        done=1,
        running=-1,
    )
    assert store.apply(decision)
    tasks = by_id(store.get_tasks("r"))
    assert (tasks["a"].state, tasks["b"].state) == (TaskState.SUCCEEDED, TaskState.QUEUED)
    run = store.get_run("r")
    assert (run.n_done, run.n_running, run.n_failed) == (1, 0, 0)
    assert ids(store.run_queue("r", 10)) == ["b"]


def test_apply_changes_nothing_when_one_condition_fails(store: StateStore) -> None:
    """All or nothing: one stale task write (or run write) cancels the whole decision."""
    seed(store, "r", [a_task("r", "a", TaskState.RUNNING, attempt=2), "b"])
    a = store.get_task("r", "a")
    b = store.get_task("r", "b")
    before = (store.get_run("r"), sorted(store.get_tasks("r"), key=lambda t: t.task_id))
    stale = Decision(
        "r",
        (
            TaskWrite(b.with_(state=TaskState.QUEUED), TaskState.WAITING, 0),
            TaskWrite(a.with_(state=TaskState.SUCCEEDED), TaskState.RUNNING, 1),  # stale
        ),
        done=1,
        running=-1,
    )
    assert not store.apply(stale)
    wrong_run = Decision(
        "r",
        (TaskWrite(b.with_(state=TaskState.QUEUED), TaskState.WAITING, 0),),
        run=store.get_run("r").with_(state=RunState.SUCCEEDED),
        run_expect=RunState.PAUSED,
        done=1,
    )
    assert not store.apply(wrong_run)
    assert (store.get_run("r"), sorted(store.get_tasks("r"), key=lambda t: t.task_id)) == before


def test_a_propagation_intent_is_listed_until_retired(store: StateStore) -> None:
    seed(store, "r", [a_task("r", "a", TaskState.RUNNING, attempt=1), "b"])
    a = store.get_task("r", "a")
    ended = a.with_(state=TaskState.FAILED, ended_at=at(2), propagating=True)
    assert store.apply(Decision("r", (TaskWrite(ended, TaskState.RUNNING, 1),), done=1, failed=1))
    pending = store.pending_propagations(10)
    assert keys(pending) == [("r", "a")]
    assert pending[0].propagating
    assert store.apply(
        Decision("r", (TaskWrite(pending[0].with_(propagating=False), TaskState.FAILED, 1),))
    )
    assert store.pending_propagations(10) == []
    assert not store.get_task("r", "a").propagating


def test_run_queue_is_one_runs_queue_by_priority_then_fifo(store: StateStore) -> None:
    seed(store, "r", ["low", "high", "mid", "other"])
    seed(store, "s", ["x"])
    for task_id, priority in (("low", 0), ("high", 5), ("mid", 0)):
        queue(store, store.get_task("r", task_id), priority=priority)
    queue(store, store.get_task("s", "x"), priority=9)
    assert ids(store.run_queue("r", 10)) == ["high", "low", "mid"]
    assert ids(store.run_queue("r", 2)) == ["high", "low"]
