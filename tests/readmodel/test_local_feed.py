"""The local runtime's inline projection: SqliteStore commit hooks -> LocalFeed -> read model."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from stratoflow.adapters.local.feed import LocalFeed
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.adapters.local.sqlite_store import FEED_RUN_COLUMNS, SqliteStore, StoreChanges
from stratoflow.engine import RunState, TaskState
from stratoflow.errors import NotFound
from stratoflow.model import load_workflow
from stratoflow.ports import RunQuery
from stratoflow.readmodel import ReadModel, Rows, attempt_row, run_row, task_row
from stratoflow.readmodel._records import version_rows
from tests.readmodel import factories as f

WORKFLOW = """\
name: feed_demo
description: three tasks, one fails once
defaults: {retries: 1, retry_delay: 0s}
tasks:
  extract:
    type: shell
    command: echo "rows=42" >> "$STRATOFLOW_OUTPUT"
  flaky:
    type: shell
    depends_on: [extract]
    command: test "$STRATOFLOW_ATTEMPT" -gt 1 || exit 3
  load:
    type: shell
    depends_on: [flaky]
    command: echo loaded
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    s.close()


def test_one_transaction_reports_its_keys_once_after_commit(store: SqliteStore) -> None:
    seen: list[StoreChanges] = []
    store.on_commit.append(seen.append)
    run = f.run("r1", state=RunState.QUEUED, n_tasks=2)
    with store.transaction():
        store.create_run(run, [f.task("r1", "a"), f.task("r1", "b")], None)
        store.put_run(run.with_(state=RunState.RUNNING), RunState.QUEUED)
        assert seen == []  # nothing before the commit
    assert seen == [StoreChanges(runs={"r1"}, run_states={"r1"}, tasks={("r1", "a"), ("r1", "b")})]
    # an autocommit write reports at once; a write that loses its condition reports nothing
    store.start_attempt(f.attempt("r1", "a", 1))
    assert not store.put_task(f.task("r1", "a", TaskState.QUEUED), TaskState.RUNNING, 0)
    assert seen[1:] == [StoreChanges(attempts={("r1", "a", 1)})]


def test_a_rolled_back_transaction_reports_nothing(store: SqliteStore) -> None:
    seen: list[StoreChanges] = []
    store.on_commit.append(seen.append)

    def doomed() -> None:
        with store.transaction():
            store.create_run(f.run("r1", state=RunState.QUEUED), [f.task("r1", "a")], None)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        doomed()
    with pytest.raises(NotFound):
        store.get_run("r1")  # rolled back
    assert seen == []
    spec = load_workflow("name: w\ntasks: {a: {type: shell, command: 'true'}}\n")
    store.put_version(spec, "src", f.T0)
    store.set_paused("default", "w", True)
    assert seen == [
        StoreChanges(versions={("default", "w", 1)}),
        StoreChanges(workflows={("default", "w")}),
    ]


def test_without_hooks_the_store_keeps_no_change_bookkeeping(store: SqliteStore) -> None:
    store.create_run(f.run("r1", state=RunState.QUEUED), [f.task("r1", "a")], None)
    assert getattr(store._local, "changes", None) is None


def _assert_same(store: SqliteStore, rm: ReadModel, run_id: str) -> None:
    assert rm.run(run_id) == store.get_run(run_id)
    stored = {t.task_id: t for t in store.get_tasks(run_id)}
    projected = {t.task_id: t for t in rm.tasks(run_id)}
    assert projected.keys() == stored.keys()
    for tid, t in stored.items():
        # upstream counts are scheduling detail the read model leaves out
        assert projected[tid] == t.with_(upstream=projected[tid].upstream)
    assert rm.attempts(run_id) == store.list_attempts(run_id)


@pytest.mark.e2e
def test_a_local_run_is_projected_as_it_happens(tmp_path: Path, db_url: str) -> None:
    """The real local runtime (subprocess tasks), its read model on SQLite or PostgreSQL.
    (``flaky`` fails its first attempt by its attempt number: tasks see nothing of the
    server's environment or the test's files.)"""
    rt = LocalRuntime(tmp_path / "home", db=db_url)
    try:
        version, _ = rt.scheduler.apply(WORKFLOW)
        run, _ = rt.scheduler.trigger(version.project, version.name)
        deadline = time.monotonic() + 60
        rt.run_until(lambda: rt.store.get_run(run.id).state.terminal or time.monotonic() > deadline)
        assert rt.store.get_run(run.id).state is RunState.SUCCEEDED
        assert rt.feed.flush()
        _assert_same(rt.store, rt.readmodel, run.id)
        flaky = rt.readmodel.attempts(run.id, "flaky")
        assert [(a.attempt, a.state, a.exit_code) for a in flaky] == [
            (1, "failed", 3),
            (2, "succeeded", 0),
        ]
        summary = rt.readmodel.workflow("default", "feed_demo")
        assert summary.last_run is not None
        assert summary.last_run.state is RunState.SUCCEEDED
        assert summary.description == "three tasks, one fails once"
        rt.store.set_paused("default", "feed_demo", True)
        assert rt.feed.flush()
        assert rt.readmodel.workflow("default", "feed_demo").paused is True
    finally:
        rt.close()


def test_catch_up_projects_what_was_committed_while_nobody_listened(
    store: SqliteStore, tmp_path: Path
) -> None:
    # GIVEN a store written with no feed attached (as if the process died before projecting)
    spec = load_workflow("name: w\ntasks: {a: {type: shell, command: 'true'}}\n")
    store.put_version(spec, "v1", f.T0)
    done = f.run("done", workflow="w", state=RunState.SUCCEEDED, n_tasks=1, n_done=1)
    live = f.run("live", workflow="w", state=RunState.RUNNING, n_tasks=1, minute=1)
    store.create_run(done, [f.task("done", "a", TaskState.SUCCEEDED)], None)
    store.create_run(live, [f.task("live", "a", TaskState.RUNNING, attempt=1)], None)
    store.start_attempt(f.attempt("live", "a", 1))
    rm = ReadModel.open(str(tmp_path / "rm.db"))
    # WHEN a feed starts
    feed = LocalFeed(store, rm)
    feed.start()
    try:
        assert feed.flush()
        # THEN everything is there
        _assert_same(store, rm, "done")
        _assert_same(store, rm, "live")
        assert rm.version("default", "w").source == "v1"
    finally:
        feed.close()
    # AND a restart re-projects unfinished runs and runs that differ, not settled ones
    rm.db.execute("UPDATE runs SET error = 'marker' WHERE id IN ('done', 'live')")
    feed = LocalFeed(store, rm)
    feed.start()
    try:
        assert feed.flush()
        assert rm.run("done").error == "marker"  # settled and equal: left alone
        assert rm.run("live").error is None  # unfinished: projected again
    finally:
        feed.close()
        rm.close()


def test_the_catch_up_on_start_waits_for_no_linger(store: SqliteStore, tmp_path: Path) -> None:
    """A server waits for its feed's first catch-up before it serves (a run `stratoflow run`
    made is projected then): the catch-up is projected at once, not after the linger that
    gathers ordinary commits (here 60 s, so a wait for it would fail the flush)."""
    spec = load_workflow("name: w\ntasks: {a: {type: shell, command: 'true'}}\n")
    store.put_version(spec, "v1", f.T0)
    done = f.run("done", workflow="w", state=RunState.SUCCEEDED, n_tasks=1, n_done=1)
    store.create_run(done, [f.task("done", "a", TaskState.SUCCEEDED)], None)
    rm = ReadModel.open(str(tmp_path / "rm.db"))
    feed = LocalFeed(store, rm, linger=60.0)
    feed.start()
    try:
        assert feed.flush(timeout=10)
        _assert_same(store, rm, "done")
    finally:
        feed.close()
        rm.close()


def test_concurrent_writers_end_with_the_stores_state(store: SqliteStore, tmp_path: Path) -> None:
    """Commits from several threads, projected while they happen: the read model ends equal
    to the store (a late re-read can never overwrite a newer one)."""
    rm = ReadModel.open(str(tmp_path / "rm.db"))
    feed = LocalFeed(store, rm)
    feed.start()
    try:
        store.create_run(f.run("r1", n_tasks=400), [], None)

        def bump() -> None:
            for _ in range(50):
                store.add_counters("r1", done=1, running=1)

        threads = [threading.Thread(target=bump) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert feed.flush()
        assert rm.run("r1") == store.get_run("r1")
        assert rm.run("r1").n_done == 200
    finally:
        feed.close()
        rm.close()


def test_revisions_only_move_forward_even_if_the_clock_goes_back(
    store: SqliteStore, tmp_path: Path
) -> None:
    rm = ReadModel.open(str(tmp_path / "rm.db"))
    clock = iter([10**15, 5, 5, 5, 5, 5, 5, 5, 5, 5])
    feed = LocalFeed(store, rm, micros=lambda: next(clock, 5))
    feed.start()
    try:
        store.create_run(f.run("r1"), [], None)
        assert feed.flush()
        store.put_run(f.run("r1", state=RunState.SUCCEEDED), RunState.RUNNING)
        assert feed.flush()
        assert rm.run("r1").state is RunState.SUCCEEDED
    finally:
        feed.close()
    # a new feed on the same read model starts above the highest stored revision
    feed = LocalFeed(store, rm, micros=lambda: 1)
    feed.start()
    try:
        store.put_run(f.run("r1", state=RunState.FAILED), RunState.SUCCEEDED)
        assert feed.flush()
        assert rm.run("r1").state is RunState.FAILED
    finally:
        feed.close()
        rm.close()


def test_a_failed_projection_is_caught_up_later(store: SqliteStore, tmp_path: Path) -> None:
    """A batch that cannot be written (e.g. PostgreSQL down for a moment) is not lost."""
    rm = ReadModel.open(str(tmp_path / "rm.db"))
    real_write = rm.write
    calls: list[int] = []

    def flaky_write(rows: Rows, position: tuple[str, int] | None = None) -> int:
        calls.append(1)
        if len(calls) == 1:  # the first batch with anything in it
            raise ConnectionError("read model unreachable")
        return real_write(rows, position)

    rm.write = flaky_write  # type: ignore[method-assign]
    feed = LocalFeed(store, rm, linger=0)
    feed.start()
    try:
        store.create_run(f.run("r1", workflow="w"), [f.task("r1", "a")], None)
        spec = load_workflow("name: w\ntasks: {a: {type: shell, command: 'true'}}\n")
        store.put_version(spec, "v1", f.T0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            feed.flush()
            try:
                rm.run("r1")
                rm.version("default", "w")
                break
            except NotFound:
                time.sleep(0.1)
        assert len(calls) >= 2  # the failed batch, then the catch-up that replaced it
        _assert_same(store, rm, "r1")
        assert rm.version("default", "w").source == "v1"
    finally:
        feed.close()
        rm.close()


def test_close_projects_what_is_queued_without_waiting_out_the_linger(
    store: SqliteStore, tmp_path: Path
) -> None:
    """A process that ends (``stratoflow run``) projects its last commits at once: with an
    hour's linger, close() still leaves them in the read model (its join gives up after 30 s,
    so waiting out the linger would leave them out)."""
    rm = ReadModel.open(str(tmp_path / "rm.db"))
    feed = LocalFeed(store, rm, linger=3600)
    feed.start()
    try:
        store.create_run(f.run("r1", workflow="w"), [f.task("r1", "a")], None)
    finally:
        feed.close()
    try:
        _assert_same(store, rm, "r1")
    finally:
        rm.close()


# ------------------------------------------------------------------ the rows the feed writes
TABLE_KEYS = {
    "workflows": "project, name",
    "workflow_versions": "project, name, version",
    "runs": "id",
    "task_instances": "run_id, task_id",
    "attempts": "run_id, task_id, attempt",
}


def _stored_rows(rm: ReadModel) -> dict[str, list[dict[str, object]]]:
    """The read model's tables as text, revisions left out."""
    return {
        table: [
            {k: v for k, v in row.items() if k != "rev"}
            for row in rm.db.query(f"SELECT * FROM {table} ORDER BY {key}")
        ]
        for table, key in TABLE_KEYS.items()
    }


def _codec_rows(store: SqliteStore) -> dict[str, list[dict[str, object]]]:
    """What the read model's codecs make of the store's records (the path of ``apply``)."""
    versions, workflows = [], []
    for head in store.list_workflows():
        listed = sorted(store.list_versions(head.project, head.name), key=lambda v: v.version)
        versions += [version_rows(v, 0)[0] for v in listed]
        workflows.append(version_rows(head, 0)[1])
    runs, tasks, attempts = [], [], []
    for run in sorted(store.list_runs(RunQuery(limit=100)), key=lambda r: r.id):
        runs.append(run_row(run, 0))
        tasks += [task_row(t, 0) for t in sorted(store.get_tasks(run.id), key=lambda t: t.task_id)]
        attempts += [attempt_row(a, 0) for a in store.list_attempts(run.id)]
    out = {
        "workflows": workflows,
        "workflow_versions": versions,
        "runs": runs,
        "task_instances": tasks,
        "attempts": attempts,
    }
    return {
        t: [{k: v for k, v in r.items() if k != "rev"} for r in rows] for t, rows in out.items()
    }


def test_the_feed_writes_the_text_the_codecs_make_of_the_stores_records(
    store: SqliteStore, db_url: str
) -> None:
    """The feed turns the store's rows into the read model's without building records: its
    text (JSON with sorted keys, times as ``ts`` writes them, even from a time stored in
    another ISO form) is what ``apply`` of the decoded records writes, on catch-up (whole
    runs) and for single changes (keys, one attempt of several)."""
    spec = load_workflow(
        "name: w\ndescription: the demo\ntasks:\n"
        "  b: {type: shell, command: 'true'}\n  a: {type: shell, command: 'true'}\n"
    )
    store.put_version(spec, "v1", f.T0)
    run = f.run("r1", workflow="w", n_tasks=3, params={"zone": "eu", "after": [2, 1]})
    store.create_run(
        run,
        [
            f.task("r1", "a", TaskState.SUCCEEDED, attempt=2, started_at=f.T0, ended_at=f.T0,
                   outputs={"rows": 42, "at": {"z": 1, "b": None}}),
            f.task("r1", "b", TaskState.RUNNING, attempt=1, deadline=f.T0, error="slow"),
            f.task("r1", "c", TaskState.UP_FOR_RETRY, attempt=1, ready_at=f.T0),
        ],
        None,
    )  # fmt: skip
    store.start_attempts([f.attempt("r1", "a", 1), f.attempt("r1", "a", 2), f.attempt("r1", "b")])
    store.finish_attempt(
        f.attempt("r1", "a", 1, "failed", ended_at=f.T0, exit_code=3, error="exit 3", log="x")
    )
    # a time stored in another ISO form (no microseconds, an offset instead of Z)
    store._x("UPDATE tasks SET started_at='2026-03-01T13:00:00+01:00' WHERE task_id='c'")
    rm = ReadModel.open(db_url)
    feed = LocalFeed(store, rm, linger=0)
    feed.start()
    try:
        assert feed.flush()
        assert _stored_rows(rm) == _codec_rows(store)
        by_id = {t.task_id: t for t in rm.tasks("r1")}
        assert by_id["c"].started_at == f.T0.replace(microsecond=0)
        # WHEN single rows change: a later attempt ends, a task moves, the workflow pauses
        store.finish_attempt(
            f.attempt("r1", "a", 2, "succeeded", ended_at=f.T0, exit_code=0,
                      outputs={"y": 1, "x": [1, {"d": 2, "c": 3}]})
        )  # fmt: skip
        task_b = f.task("r1", "b", TaskState.SUCCEEDED, attempt=1, outputs={"k": "v", "j": 1})
        assert store.put_task(task_b, TaskState.RUNNING, 1)
        store.put_run(run.with_(state=RunState.SUCCEEDED, ended_at=f.T0), RunState.RUNNING)
        store.set_paused("default", "w", True)
        assert feed.flush()
        # THEN the read model is again what the codecs make of the store
        assert _stored_rows(rm) == _codec_rows(store)
        assert rm.workflow("default", "w").paused is True
    finally:
        feed.close()
        rm.close()


def test_a_restart_reads_only_what_differs(store: SqliteStore, tmp_path: Path) -> None:
    """The catch-up compares keys and summaries: a restart with the read model in step reads
    no version and no run; a pause and a run that changed while nobody listened are read
    (and nothing else)."""
    spec = load_workflow("name: w\ntasks: {a: {type: shell, command: 'true'}}\n")
    store.put_version(spec, "v1", f.T0)
    store.put_version(load_workflow("name: w\ntasks: {b: {type: shell, command: 'true'}}\n"), "v2", f.T0)  # fmt: skip
    for rid in ("done", "other"):
        store.create_run(
            f.run(rid, workflow="w", state=RunState.SUCCEEDED, n_tasks=1, n_done=1),
            [f.task(rid, "a", TaskState.SUCCEEDED)],
            None,
        )
    rm = ReadModel.open(str(tmp_path / "rm.db"))
    reads: list[tuple[str, tuple[object, ...]]] = []
    for name in ("feed_version", "feed_runs", "feed_tasks", "feed_attempts"):
        real = getattr(store, name)

        def counted(*args: object, _name: str = name, _real: object = real) -> object:
            reads.append((_name, args))
            return _real(*args)  # type: ignore[operator]

        setattr(store, name, counted)
    try:
        feed = LocalFeed(store, rm)
        feed.start()
        assert feed.flush()
        feed.close()
        first = {name for name, _ in reads}
        assert first == {"feed_version", "feed_runs", "feed_tasks", "feed_attempts"}
        # WHEN it starts again with nothing changed
        reads.clear()
        feed = LocalFeed(store, rm)
        feed.start()
        assert feed.flush()
        feed.close()
        # THEN it reads nothing
        assert reads == []
        # WHEN the workflow was paused and a run's counters changed while nobody listened
        store.set_paused("default", "w", True)
        store.add_counters("other", failed=1)
        feed = LocalFeed(store, rm)
        feed.start()
        assert feed.flush()
        feed.close()
        # THEN those are read and projected: the workflow's head, the run whole
        assert reads == [
            ("feed_version", ("default", "w")),
            ("feed_runs", (["other"],)),
            ("feed_tasks", ("other",)),
            ("feed_attempts", ("other",)),
        ]
        assert rm.workflow("default", "w").paused is True
        assert rm.workflow("default", "w").latest_version == 2
        assert rm.run("other").n_failed == 1
        assert [v.version for v in rm.versions("default", "w")] == [2, 1]
    finally:
        rm.close()


def test_a_feed_snapshot_reads_the_store_as_of_its_first_read(store: SqliteStore) -> None:
    """The feed reads a batch's rows in one read transaction: consistent with each other,
    and no newer than the first read (a later commit is the next batch's to read)."""
    store.create_run(f.run("r1"), [f.task("r1", "a")], None)
    state = FEED_RUN_COLUMNS.index("state")
    with store.feed_snapshot():
        assert store.feed_runs(["r1"])[0][state] == "running"
        writer = threading.Thread(
            target=store.put_run, args=(f.run("r1", state=RunState.SUCCEEDED), RunState.RUNNING)
        )
        writer.start()
        writer.join()
        assert store.feed_runs(["r1"])[0][state] == "running"
    assert store.feed_runs(["r1"])[0][state] == "succeeded"


def test_a_finished_run_changed_while_nobody_listened_is_caught_up(
    store: SqliteStore, db_url: str
) -> None:
    """A change to a finished run that leaves its state and counters as they were is not
    lost when the process dies before projecting it (or the read model refused the batch):
    an attempt of a stopped run that ends after the stop, a rerun from a task of a
    succeeded run that succeeds again."""
    # GIVEN two finished runs, projected
    stopped = f.run("stopped", workflow="w", state=RunState.STOPPED, n_tasks=1, n_done=1)
    store.create_run(stopped, [f.task("stopped", "a", TaskState.STOPPED, attempt=1)], None)
    store.start_attempt(f.attempt("stopped", "a", 1))
    done = f.run("done", workflow="w", state=RunState.SUCCEEDED, n_tasks=1, n_done=1)
    ended = f.T0 + timedelta(minutes=5)
    store.create_run(
        done, [f.task("done", "a", TaskState.SUCCEEDED, attempt=1, ended_at=f.T0)], None
    )
    store.start_attempt(f.attempt("done", "a", 1))
    store.finish_attempt(f.attempt("done", "a", 1, "succeeded", ended_at=f.T0, exit_code=0))
    rm = ReadModel.open(db_url)
    feed = LocalFeed(store, rm, linger=0)
    feed.start()
    try:
        assert feed.flush()
        _assert_same(store, rm, "stopped")
        _assert_same(store, rm, "done")
    finally:
        feed.close()
    # WHEN, with no feed listening (killed before it projected), the stopped run's attempt
    # ends and the succeeded run runs its task again, and succeeds again
    store.finish_attempt(
        f.attempt("stopped", "a", 1, "failed", ended_at=f.T0, exit_code=-15, log="a/1.log")
    )
    again = f.task("done", "a", TaskState.SUCCEEDED, attempt=2, ended_at=ended)
    assert store.put_task(again, TaskState.SUCCEEDED, 1)
    store.start_attempt(f.attempt("done", "a", 2))
    store.finish_attempt(f.attempt("done", "a", 2, "succeeded", ended_at=ended, exit_code=0))
    assert store.put_run(done.with_(ended_at=ended), RunState.SUCCEEDED)
    # THEN a feed that starts again brings the read model to the store's state
    feed = LocalFeed(store, rm, linger=0)
    feed.start()
    try:
        assert feed.flush()
        _assert_same(store, rm, "stopped")
        _assert_same(store, rm, "done")
    finally:
        feed.close()
        rm.close()


def test_close_does_not_wait_out_the_pause_after_a_failed_batch(
    store: SqliteStore, tmp_path: Path
) -> None:
    """The read model has been down a while (the pause before the next try has grown to
    30 s): a server that stops (SIGTERM) stops at once, not after the pause."""
    rm = ReadModel.open(str(tmp_path / "rm.db"))
    failed = threading.Event()

    def down(rows: Rows, position: tuple[str, int] | None = None) -> int:
        failed.set()
        raise ConnectionError("read model unreachable")

    rm.write = down  # type: ignore[method-assign]
    store.create_run(f.run("r1", workflow="w"), [f.task("r1", "a")], None)
    feed = LocalFeed(store, rm, linger=0)
    feed._failures = 5  # as after five failures in a row: the next pause is 30 s
    feed.start()  # its catch-up fails
    try:
        assert failed.wait(10)
        time.sleep(0.2)  # in the pause
        started = time.monotonic()
        feed.close()
        assert time.monotonic() - started < 5
        assert rm.stale_since is not None
    finally:
        rm.close()


def test_two_homes_given_one_read_model_keep_a_position_each(tmp_path: Path) -> None:
    """Two servers pointed at one PostgreSQL database (or a read model file reused): the
    change log position of one is not taken for the other's."""
    a, b = SqliteStore(tmp_path / "a.db"), SqliteStore(tmp_path / "b.db")
    rm = ReadModel.open(str(tmp_path / "rm.db"))

    def moves(store: SqliteStore, run_id: str, n: int, task_id: str = "a") -> None:
        """``n`` changes of a task of the run (its store's log grows by ``n``)."""
        states = (TaskState.QUEUED, TaskState.WAITING)
        for i in range(n):
            new, old = states[i % 2], states[(i + 1) % 2]
            assert store.put_task(f.task(run_id, task_id, new), old, 0)

    def project(store: SqliteStore) -> None:
        feed = LocalFeed(store, rm, linger=0)
        feed.start()
        assert feed.flush()
        feed.close()

    try:
        for store, run_id in ((a, "ra"), (b, "rb")):
            # finished runs: only the change log brings their later changes
            done = f.run(run_id, workflow="w", state=RunState.SUCCEEDED)
            store.create_run(done, [f.task(run_id, "a"), f.task(run_id, "b")], None)
        moves(a, "ra", 2)
        project(a)  # a's log projected up to 2
        moves(b, "rb", 10)
        project(b)  # b's up to 10
        moves(a, "ra", 7)  # 3..9: task a queued
        moves(a, "ra", 2, "b")  # 10, 11: a's log past b's position
        project(a)
        _assert_same(a, rm, "ra")
        _assert_same(b, rm, "rb")
    finally:
        a.close()
        b.close()
        rm.close()


def test_a_long_change_log_is_projected_in_parts(store: SqliteStore, tmp_path: Path) -> None:
    """A read model without a position (made by an older version) reads the store's whole
    change log: in parts, each its own transaction, all of them before ``flush`` returns."""
    for i in range(5):
        run_id = f"r{i}"
        done = f.run(run_id, workflow="w", state=RunState.SUCCEEDED, n_tasks=1, n_done=1)
        store.create_run(done, [f.task(run_id, "a")], None)
        for new, old in ((TaskState.QUEUED, TaskState.WAITING), (TaskState.RUNNING, TaskState.QUEUED)):  # fmt: skip
            assert store.put_task(f.task(run_id, "a", new), old, 0)
    rm = ReadModel.open(str(tmp_path / "rm.db"))
    feed = LocalFeed(store, rm, linger=0)
    feed.start()
    assert feed.flush()
    feed.close()
    # WHEN the tasks move on unprojected, and the read model forgets its position
    for i in range(5):
        task = f.task(f"r{i}", "a", TaskState.SUCCEEDED)
        assert store.put_task(task, TaskState.RUNNING, 0)
    rm.db.execute("DELETE FROM feed_positions")
    writes: list[int] = []
    real_write = rm.write

    def counted(rows: Rows, position: tuple[str, int] | None = None) -> int:
        writes.append(len(rows.tasks))
        return real_write(rows, position)

    rm.write = counted  # type: ignore[method-assign]
    feed = LocalFeed(store, rm, linger=0, log_part=4)
    feed.start()
    try:
        assert feed.flush()
        # THEN 15 log entries went in 4 parts, and every task is as stored
        assert len(writes) == 4
        for i in range(5):
            _assert_same(store, rm, f"r{i}")
        assert rm.feed_position(feed.source) == 15
    finally:
        feed.close()
        rm.close()


def _delete_store(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_a_store_recreated_at_the_same_path_does_not_take_the_old_ones_position(
    tmp_path: Path, db_url: str
) -> None:
    """A home deleted and made again where it was (its read model kept: a PostgreSQL one,
    or a readmodel.db left beside a state db made anew): the old store's change-log
    position is not the new one's, so none of the new store's first log entries is
    skipped. (The new store's run has the id and the counters of the old one's, as a
    `--run-id` or a scheduled run's id would: only its change log brings its tasks.)"""
    path = tmp_path / "home" / "stratoflow.db"
    path.parent.mkdir()
    rm = ReadModel.open(db_url)

    def project(store: SqliteStore) -> None:
        feed = LocalFeed(store, rm, linger=0)
        feed.start()
        assert feed.flush()
        feed.close()

    def finished_run(store: SqliteStore, run_id: str, task_state: TaskState, moves: int) -> None:
        done = f.run(run_id, workflow="w", state=RunState.SUCCEEDED, n_tasks=1, n_done=1)
        store.create_run(done, [f.task(run_id, "a", TaskState.QUEUED)], None)
        for i in range(moves):  # the log grows by one a move
            new, old = (TaskState.WAITING, TaskState.QUEUED)[:: 1 if i % 2 == 0 else -1]
            assert store.put_task(f.task(run_id, "a", new), old, 0)
        assert store.put_task(f.task(run_id, "a", task_state), TaskState.QUEUED, 0)

    try:
        old = SqliteStore(path)
        finished_run(old, "r1", TaskState.SUCCEEDED, 4)  # log: 5 entries
        project(old)
        old.close()
        _delete_store(path)
        # WHEN a new store at that path logs more than the old one had, unprojected: its
        # r1's task first (entry 1), then another run's
        new = SqliteStore(path)
        try:
            finished_run(new, "r1", TaskState.FAILED, 0)  # log: 1 entry
            finished_run(new, "r2", TaskState.SUCCEEDED, 4)  # log: 6 entries
            project(new)
            # THEN every entry of the new store's log was read
            _assert_same(new, rm, "r1")
            assert rm.tasks("r1")[0].state is TaskState.FAILED
        finally:
            new.close()
    finally:
        rm.close()


def test_a_store_keeps_the_id_it_was_made_with(tmp_path: Path) -> None:
    """The id is written once, when the store is made: opening it again keeps it; a store
    made anew at the same path has another."""
    path = tmp_path / "state.db"
    first = SqliteStore(path)
    again = SqliteStore(path)
    try:
        assert first.store_id
        assert first.store_id == again.store_id
        assert first.feed_source_before is None  # made by this version: nothing to carry
    finally:
        first.close()
        again.close()
    _delete_store(path)
    remade = SqliteStore(path)
    try:
        assert remade.store_id != first.store_id
    finally:
        remade.close()


def test_a_home_from_before_store_ids_keeps_its_position(tmp_path: Path, db_url: str) -> None:
    """A state db made by an older version (no store id; its position recorded under its
    path): it gets an id when opened, and the feed carries its position over to the new
    key, so it does not read its whole change log again (nor does it lose any of it)."""
    path = tmp_path / "stratoflow.db"
    store = SqliteStore(path)
    done = f.run("r1", workflow="w", state=RunState.SUCCEEDED, n_tasks=1, n_done=1)
    store.create_run(done, [f.task("r1", "a")], None)
    for _ in range(2):  # log: 4 entries
        for new, old in ((TaskState.QUEUED, TaskState.WAITING), (TaskState.WAITING, TaskState.QUEUED)):  # fmt: skip
            assert store.put_task(f.task("r1", "a", new), old, 0)
    store.close()
    # as an older version left it: no store id, the position under the path
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE store_meta")
    conn.commit()
    conn.close()
    rm = ReadModel.open(db_url)
    rm.write(Rows(), (f"local:{path}", 3))
    try:
        upgraded = SqliteStore(path)
        try:
            assert upgraded.store_id
            assert upgraded.feed_source_before == f"local:{path}"
            reread: list[tuple[int, int]] = []
            real = upgraded.feed_changes

            def spy(after: int, limit: int) -> tuple[int, list[tuple[str, str]], bool]:
                reread.append((after, limit))
                return real(after, limit)

            upgraded.feed_changes = spy  # type: ignore[method-assign]
            feed = LocalFeed(upgraded, rm, linger=0)
            feed.start()
            assert feed.flush()
            feed.close()
            assert reread
            assert reread[0][0] == 3
            assert rm.feed_position(f"local:{path}") is None  # moved, not copied
            assert rm.feed_position(feed.source) == 4  # and on to the log's end
            # a second start goes on from there
            reread.clear()
            feed = LocalFeed(upgraded, rm, linger=0)
            feed.start()
            assert feed.flush()
            feed.close()
            assert reread[0][0] == 4
        finally:
            upgraded.close()
    finally:
        rm.close()
