"""The audit log is durable: an audited change's line is journalled in the state store
(its intent before the change, its entry after) and reaches the read model through the
local feed, keyed by the request's id. A read model that was down, a process that died
right after the change, a write that failed at any step: the line is not lost, and never
twice. (The AWS half: tests/aws_projector/test_stream_projector.py.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.local.feed import LocalFeed
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.adapters.local.sqlite_store import SqliteStore, StoreChanges
from stratoflow.api.app import create_app
from stratoflow.api.local_server import LocalContext
from stratoflow.audit import INTENT_TTL, UNCONFIRMED, intent
from stratoflow.engine.pools import pool_key
from stratoflow.errors import ScheduleSyncFailed
from stratoflow.readmodel import AuditEntry, ReadModel, Rows

FLOW = "name: nightly\ntasks:\n  a: {type: shell, command: 'true'}\n"
PAUSE = ("POST", "/workflows/nightly/pause")


class Died(BaseException):
    """The process stops here: no later line of it runs (not an Exception: nothing catches
    it on the way out)."""


def call(app: Any, method: str, path: str, request_id: str, body: Any = None) -> tuple[int, Any]:
    event = {
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "body": None if body is None else json.dumps(body), "isBase64Encoded": False,
        "requestContext": {"stage": "test", "requestId": request_id, "path": path},
    }  # fmt: skip
    response = app.resolve(event, LocalContext(request_id))
    return response["statusCode"], json.loads(response["body"])


def later() -> int:
    """The feed's clock once every intent of now has expired (µs)."""
    return (time.time_ns() // 1000) + int((INTENT_TTL + timedelta(minutes=1)).total_seconds() * 1e6)


def audit(readmodel: ReadModel, project: str = "default") -> list[AuditEntry]:
    return list(readmodel.list_audit(project=project, limit=100).items)


def now() -> int:
    return time.time_ns() // 1000


def reopened(
    home: Path,
    db: str | None,
    micros: Callable[[], int] = later,
    *,
    refuse_once: bool = False,
    project: str = "default",
) -> list[AuditEntry]:
    """The audit log after the home is opened again (a fresh feed catches up), by a process
    that runs after every intent of the earlier one has expired (``micros``: its clock).
    ``refuse_once``: the read model refuses the feed's first write."""
    store = SqliteStore(home / "stratoflow.db")
    readmodel = ReadModel.open(db or str(home / "readmodel.db"))
    feed = LocalFeed(store, readmodel, micros=micros, linger=0)
    if refuse_once:
        write = readmodel.write
        refused: list[bool] = []

        def refuse(*args: Any, **kwargs: Any) -> int:
            if not refused:
                refused.append(True)
                raise OSError("injected: the read model refused the write")
            return write(*args, **kwargs)

        readmodel.write = refuse  # type: ignore[method-assign]
    feed.start()
    try:
        assert feed.flush()
        if refuse_once:  # the failed catch-up queued another before it counted as done
            assert refused
            assert feed.flush()
        return audit(readmodel, project)
    finally:
        feed.close()
        readmodel.close()
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> str | None:
    """The read model's database: the home's SQLite file, or a scratch PostgreSQL one."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def runtime(tmp_path: Path, db: str | None) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(tmp_path / "home", db=db)  # its feed projects; no scheduler loop
    try:
        yield rt
    finally:
        rt.close()


def refusing(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch, *, audit_only: bool = False
) -> list[bool]:
    """The read model refuses every write (``audit_only``: the feed's writes of audit
    entries) while the returned list is not empty."""
    down, write = [True], runtime.readmodel.projection.write

    def refuse(rows: Rows, position: tuple[str, int] | None = None) -> int:
        if down and (not audit_only or rows.audit):
            raise OSError("disk I/O error")
        return write(rows, position)

    monkeypatch.setattr(runtime.readmodel.projection, "write", refuse)
    return down


def test_a_line_the_read_model_refused_appears_once_it_works_again(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(runtime.scheduler, readmodel=runtime.readmodel)
    assert call(app, "POST", "/workflows", "req-apply", {"source": FLOW})[0] == 201
    assert runtime.feed.flush()
    # WHEN the read model refuses every write while the workflow is paused
    down = refusing(runtime, monkeypatch)
    status, body = call(app, *PAUSE, "req-pause")
    assert status == 200
    assert body["paused"] is True
    assert runtime.feed.flush()
    assert [e.id for e in audit(runtime.readmodel)] == ["req-apply"]
    # THEN once it works again, the next batch of the feed brings the line, once
    down.clear()
    runtime.feed.on_commit(StoreChanges())  # any commit after it
    assert runtime.feed.flush()
    status, listed = call(app, "GET", "/audit", "req-list")
    assert status == 200
    assert [(e["id"], e["action"], e["target"]) for e in listed["entries"]] == [
        ("req-pause", "workflow.pause", "workflow/default/nightly"),
        ("req-apply", "workflow.apply", "workflow/default/nightly"),
    ]
    assert set(listed["entries"][0]) == {
        "id",
        "at",
        "actor",
        "action",
        "target",
        "project",
        "details",
    }


def test_a_process_that_dies_right_after_the_change_loses_no_line(
    tmp_path: Path, db: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    runtime = LocalRuntime(home, db=db, project=False)  # nothing projected before it dies
    app = create_app(runtime.scheduler, readmodel=runtime.readmodel)
    assert call(app, "POST", "/workflows", "req-apply", {"source": FLOW})[0] == 201

    def die(*args: Any, **kwargs: Any) -> None:
        raise Died

    # the audit step after the change is where it stops (the journal's entry, or on a build
    # without a journal, the read model's line)
    monkeypatch.setattr(runtime.store, "audit_settle", die, raising=False)
    monkeypatch.setattr(runtime.readmodel, "record_audit", die)
    with pytest.raises(Died):
        call(app, *PAUSE, "req-pause")
    assert runtime.store.get_version("default", "nightly").paused  # the change stands
    runtime.close()
    # THEN opened again soon, the log has the change before it (nothing is shown as unknown
    # while its request might still answer) ...
    soon = reopened(home, db, micros=lambda: time.time_ns() // 1000)
    assert [(e.id, e.action) for e in soon] == [("req-apply", "workflow.apply")]
    # ... and once the intent has expired, the pause stands in the log, its outcome unknown
    entries = reopened(home, db)
    assert [(e.id, e.action, e.target, e.actor) for e in entries] == [
        ("req-pause", UNCONFIRMED, "POST /workflows/nightly/pause", "local"),
        ("req-apply", "workflow.apply", "workflow/default/nightly", "local"),
    ]
    assert entries[0].details == {"outcome": "unknown"}
    assert entries[0].project == "default"
    assert reopened(home, db) == entries  # projected again: still one line each


def test_a_retried_delivery_is_one_line(tmp_path: Path, db: str | None) -> None:
    runtime = LocalRuntime(tmp_path / "home", db=db)
    app = create_app(runtime.scheduler, readmodel=runtime.readmodel)
    assert call(app, "POST", "/workflows", "req-apply", {"source": FLOW})[0] == 201
    # the same request delivered twice (a retry of API Gateway's, of a client's)
    assert call(app, *PAUSE, "req-pause")[0] == 200
    assert call(app, *PAUSE, "req-pause")[0] == 200
    assert runtime.feed.flush()
    assert [e.id for e in audit(runtime.readmodel)] == ["req-pause", "req-apply"]
    # and the journal delivered again from its start (a read model that lost its position)
    try:
        assert runtime.readmodel.db.execute("DELETE FROM feed_positions") > 0
    finally:
        runtime.close()
    entries = reopened(runtime.home, db)
    assert [(e.id, e.action) for e in entries] == [
        ("req-pause", "workflow.pause"),
        ("req-apply", "workflow.apply"),
    ]


@dataclass
class Faults:
    """The writes of one audited change, each able to fail (``fail``: that write raises an
    error once) or to be where the process dies (``die``: that write and every later one
    never happen)."""

    fail: str | None = None
    die: str | None = None
    dead: bool = False
    seen: list[str] | None = None

    def wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if self.seen is not None:
                self.seen.append(name)
            if self.dead or name == self.die:
                self.dead = True
                raise Died
            if name == self.fail:
                self.fail = None
                raise OSError(f"injected: {name} failed")
            return method(*args, **kwargs)

        return wrapped


WRITES = ("begin", "change", "settle", "readmodel")


def pause_with(home: Path, faults: Faults) -> tuple[int | None, bool]:
    """Pause the workflow with ``faults`` injected; the answer's status (None: the process
    died) and whether the workflow is paused in the store."""
    runtime = LocalRuntime(home, project=False)
    try:
        app = create_app(runtime.scheduler, readmodel=runtime.readmodel)
        store, readmodel = runtime.store, runtime.readmodel
        store.audit_begin = faults.wrap("begin", store.audit_begin)  # type: ignore[method-assign]
        store.set_paused = faults.wrap("change", store.set_paused)  # type: ignore[method-assign]
        store.audit_settle = faults.wrap("settle", store.audit_settle)  # type: ignore[method-assign]
        store.audit_withdraw = faults.wrap("withdraw", store.audit_withdraw)  # type: ignore[method-assign]
        readmodel.record_audit = faults.wrap("readmodel", readmodel.record_audit)  # type: ignore[method-assign]
        try:
            status: int | None = call(app, *PAUSE, "req-pause")[0]
        except Died:
            status = None
        return status, store.get_version("default", "nightly").paused
    finally:
        runtime.close()


def test_every_write_of_an_audited_change_failing_or_dying_once_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    seen: list[str] = []
    base = tmp_path / "base"
    setup = LocalRuntime(base, project=False)
    app = create_app(setup.scheduler, readmodel=setup.readmodel)
    assert call(app, "POST", "/workflows", "req-apply", {"source": FLOW})[0] == 201
    setup.close()
    assert pause_with(_copy(base, tmp_path / "plain"), Faults(seen=seen)) == (200, True)
    assert seen == list(WRITES)  # every write of the change is swept below
    for kind in ("fail", "die"):
        for write in (*WRITES, "feed"):
            if (kind, write) == ("die", "feed"):
                continue  # a feed that stops before its write: the reopening's catch-up
            home = _copy(base, tmp_path / f"{kind}-{write}")
            status, paused = pause_with(home, Faults(**{kind: write}))
            # a process that lives on records what it did at once; one that died, once its
            # intent has expired (and never twice, however often it is projected)
            soon = reopened(home, None, now, refuse_once=write == "feed")
            entries = [e for e in reopened(home, None) if e.id == "req-pause"]
            case = (kind, write, status, paused, entries)
            if paused:  # the change was made: its line is there, once
                assert len(entries) == 1, case
                assert entries[0].action in ("workflow.pause", UNCONFIRMED), case
                assert entries[0].project == "default", case
                if kind == "fail":
                    assert status == 200, case
                    assert entries[0].action == "workflow.pause", case
                    assert [e for e in soon if e.id == "req-pause"] == entries, case
            else:  # not made: no line says it was
                assert status != 200, case
                assert all(e.action == UNCONFIRMED for e in entries), case
                if (kind, write) == ("fail", "begin"):  # refused, said so: no line at all
                    assert status == 503, case
                    assert entries == [], case
                elif kind == "fail":  # failed, and the server cannot tell whether it was made:
                    assert status == 500, case  # its line says so, at once
                    assert [(e.action, e.details) for e in entries] == [
                        (UNCONFIRMED, {"outcome": "unknown"})
                    ], case
                    assert [e for e in soon if e.id == "req-pause"] == entries, case


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    "failure",
    [
        ScheduleSyncFailed("injected: the schedule was refused; apply again"),
        OSError("injected: the schedule's write failed"),
    ],
    ids=["schedule-sync-failed", "unexpected"],
)
def test_a_request_that_fails_after_its_change_keeps_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    home = tmp_path / "home"
    runtime = LocalRuntime(home, project=False)
    try:
        app = create_app(runtime.scheduler, readmodel=runtime.readmodel)
        assert call(app, "POST", "/workflows", "req-apply", {"source": FLOW})[0] == 201

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise failure

        # WHEN the pause is stored and the schedule's sync after it fails (on AWS:
        # EventBridge Scheduler refused it, ScheduleSyncFailed's "stored, apply again")
        monkeypatch.setattr(runtime.scheduler.schedules, "sync", refuse)
        status, _ = call(app, *PAUSE, "req-pause")
        assert status in (500, 502)
        assert runtime.store.get_version("default", "nightly").paused  # the change stands
    finally:
        runtime.close()
    # THEN the log does not lose it: it stands at once (the request is over), outcome unknown
    entries = [(e.id, e.action, e.target) for e in reopened(home, None, now)]
    assert entries == [
        ("req-pause", UNCONFIRMED, "POST /workflows/nightly/pause"),
        ("req-apply", "workflow.apply", "workflow/default/nightly"),
    ]
    assert [(e.id, e.action) for e in reopened(home, None)] == [
        ("req-pause", UNCONFIRMED),
        ("req-apply", "workflow.apply"),
    ]  # and once, however often it is projected


def test_a_refused_write_leaves_no_line(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path / "home", project=False)
    try:
        app = create_app(runtime.scheduler, readmodel=runtime.readmodel)
        assert call(app, "POST", "/workflows", "req-apply", {"source": FLOW})[0] == 201
        # allowed, so its intent was journalled; then refused: 404, nothing changed
        assert call(app, "POST", "/workflows/absent/pause", "req-404")[0] == 404
        assert runtime.store._tuples("SELECT id FROM audit_journal") == [("req-apply",)]
    finally:
        runtime.close()
    assert [e.id for e in reopened(tmp_path / "home", None)] == ["req-apply"]


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_a_global_pool_change_journals_its_intent_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    home = tmp_path / "home"
    runtime = LocalRuntime(home, project=False)
    app = create_app(runtime.scheduler, readmodel=runtime.readmodel)
    assert call(app, "PUT", "/pools/warehouse", "req-made", {"slots": 2})[0] == 200

    def die(*args: Any, **kwargs: Any) -> None:
        raise Died

    # WHEN a superuser's change of a global pool (no project) dies right after it is made
    monkeypatch.setattr(runtime.store, "audit_settle", die)
    monkeypatch.setattr(runtime.readmodel, "record_audit", die)
    with pytest.raises(Died):
        call(app, method, "/pools/warehouse", "req-pool", {"slots": 3})
    pool = runtime.store.get_pool(pool_key("", "warehouse"))
    assert (pool is None) if method == "DELETE" else (pool is not None and pool.slots == 3)
    runtime.close()
    # THEN its intent, journalled before the change, stands once it has expired
    entries = [(e.id, e.action, e.target) for e in reopened(home, None, project="")]
    assert entries == [
        ("req-pool", UNCONFIRMED, f"{method} /pools/warehouse"),
        ("req-made", "pool.set", "pool//warehouse"),
    ]


def test_stratoflow_run_on_a_home_writes_its_changes_to_the_audit_log(tmp_path: Path) -> None:
    """`stratoflow run FILE --home H` applies, sets pools and triggers in H without the
    API (no server holds it): the server that opens H next shows those changes."""
    from click.testing import CliRunner

    from stratoflow.cli import main

    home = tmp_path / "home"
    flow = tmp_path / "nightly.yaml"
    flow.write_text(FLOW)
    args = ["run", str(flow), "--home", str(home), "--pool", "warehouse=2"]
    result = CliRunner().invoke(main, [*args, "--alert-group", "oncall"])
    assert result.exit_code == 0, result.output
    entries = reopened(home, None, now)
    actors = {e.actor for e in entries}
    assert len(actors) == 1, entries
    assert actors.pop().startswith("cli:"), entries
    run_id = entries[0].target.removeprefix("run/")
    assert [(e.action, e.target, e.details) for e in entries] == [
        ("run.trigger", f"run/{run_id}", {"workflow": "nightly"}),
        ("workflow.apply", "workflow/default/nightly", {"version": 1, "created": True}),
        ("alerts.group.put", "alert-group/oncall", {"channels": []}),
    ]
    pools = reopened(home, None, now, project="")
    assert [(e.action, e.target, e.details) for e in pools] == [
        ("pool.set", "pool//warehouse", {"slots": 2})
    ]


# ------------------------------------------------------------------ a bounded journal
def journal(store: SqliteStore) -> list[tuple[str, bool]]:
    """The journal's entries: (id, still pending)."""
    rows = store._tuples("SELECT id, expires IS NOT NULL FROM audit_journal ORDER BY seq")
    return [(str(i), bool(p)) for i, p in rows]


def test_the_journal_keeps_only_what_the_read_model_lacks(runtime: LocalRuntime) -> None:
    app = create_app(runtime.scheduler, readmodel=runtime.readmodel)
    assert call(app, "POST", "/workflows", "req-apply", {"source": FLOW})[0] == 201
    # WHEN many audited changes are made, each projected by the feed
    for i in range(12):
        action = "pause" if i % 2 == 0 else "unpause"
        assert call(app, "POST", f"/workflows/nightly/{action}", f"req-{i}")[0] == 200
        assert runtime.feed.flush()
        # THEN the journal holds none of them once the read model has them
        assert journal(runtime.store) == [], i
    assert len(audit(runtime.readmodel)) == 13


def test_an_entry_is_not_removed_before_the_read_model_has_it(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(runtime.scheduler, readmodel=runtime.readmodel)
    assert call(app, "POST", "/workflows", "req-apply", {"source": FLOW})[0] == 201
    assert runtime.feed.flush()
    # WHEN the read model refuses the feed's writes of audit entries while a change is made
    # (all else projected: the feed reads the journal, but the read model has not got it)
    down = refusing(runtime, monkeypatch, audit_only=True)
    monkeypatch.setattr(runtime.readmodel, "record_audit", lambda entry: None)  # nor the API
    assert call(app, *PAUSE, "req-pause")[0] == 200
    assert runtime.feed.flush()
    # THEN the journal keeps its entry
    assert journal(runtime.store) == [("req-pause", False)]
    # AND once the read model has it, the journal lets it go
    down.clear()
    runtime.feed.on_commit(StoreChanges())
    assert runtime.feed.flush()
    assert [e.id for e in audit(runtime.readmodel)] == ["req-pause", "req-apply"]
    assert journal(runtime.store) == []


def test_a_pending_intent_stays_until_it_is_settled_and_projected(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = LocalRuntime(home, project=False)
    app = create_app(runtime.scheduler, readmodel=runtime.readmodel)
    assert call(app, "POST", "/workflows", "req-apply", {"source": FLOW})[0] == 201
    runtime.store.audit_begin(intent_of("req-open", now()))  # a request still being served
    runtime.close()
    reopened(home, None, now)
    store = SqliteStore(home / "stratoflow.db")
    try:
        assert journal(store) == [("req-open", True)]  # projected: the apply; kept: the intent
    finally:
        store.close()
    assert [e.id for e in reopened(home, None)] == ["req-open", "req-apply"]  # expired
    store = SqliteStore(home / "stratoflow.db")
    try:
        assert journal(store) == []
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["fail", "die"])
def test_a_removal_that_fails_or_never_happens_changes_nothing_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """``fail``: the journal's removal raises once (the feed goes on); ``die``: the process
    stops between the read model's commit and the removal (the removal never happens)."""
    home = tmp_path / "home"
    runtime = LocalRuntime(home, project=False)
    app = create_app(runtime.scheduler, readmodel=runtime.readmodel)
    assert call(app, "POST", "/workflows", "req-apply", {"source": FLOW})[0] == 201
    assert call(app, *PAUSE, "req-pause")[0] == 200
    runtime.close()
    forget = SqliteStore.audit_forget
    calls: list[int] = []

    def faulty(self: SqliteStore, upto: int) -> int:
        calls.append(upto)
        if kind == "die" or len(calls) == 1:
            raise OSError("injected: the removal failed")
        return forget(self, upto)

    monkeypatch.setattr(SqliteStore, "audit_forget", faulty)
    store = SqliteStore(home / "stratoflow.db")
    readmodel = ReadModel.open(str(home / "readmodel.db"))
    feed = LocalFeed(store, readmodel, micros=now, linger=0)
    feed.start()
    try:
        assert feed.flush()
        assert calls
        assert readmodel.stale_since is None  # the read model is as up to date as ever
        assert [e.id for e in audit(readmodel)] == ["req-pause", "req-apply"]
        assert [i for i, _ in journal(store)] == ["req-apply", "req-pause"]
        if kind == "fail":  # the next pass of the feed removes them
            feed.on_commit(StoreChanges())
            assert feed.flush()
            assert journal(store) == []
    finally:
        feed.close()
        readmodel.close()
        store.close()
    monkeypatch.setattr(SqliteStore, "audit_forget", forget)
    # THEN opened again: each line once, and the journal empty
    assert [e.id for e in reopened(home, None, now)] == ["req-pause", "req-apply"]
    store = SqliteStore(home / "stratoflow.db")
    try:
        assert journal(store) == []
    finally:
        store.close()


# ------------------------------------------------------------------ expiry across offsets
def intent_of(entry_id: str, micros: int, offset: timedelta = timedelta(0)) -> AuditEntry:
    at = datetime.fromtimestamp(micros / 1e6, UTC).astimezone(timezone(offset))
    return intent(entry_id, at, "local", "POST", "/workflows/nightly/pause", "default")


@pytest.mark.parametrize("hours", [5, -5, 0])
def test_an_intent_expires_after_its_ttl_whatever_its_clocks_offset(
    tmp_path: Path, hours: int
) -> None:
    store = SqliteStore(tmp_path / "stratoflow.db")
    try:
        start = now()
        # GIVEN an intent whose time has an offset (a clock not set to UTC)
        store.audit_begin(intent_of("req-x", start, timedelta(hours=hours)))
        # WHEN a minute later (in UTC) the expired intents are settled: it is not one
        soon = datetime.fromtimestamp(start / 1e6, UTC) + timedelta(minutes=1)
        assert store.audit_settle_expired(soon) == 0
        assert store.audit_settle_expired(soon.astimezone(timezone(timedelta(hours=9)))) == 0
        assert journal(store) == [("req-x", True)]
        # AND past its TTL it is
        past = datetime.fromtimestamp(start / 1e6, UTC) + INTENT_TTL + timedelta(minutes=1)
        assert store.audit_settle_expired(past.astimezone(timezone(timedelta(hours=-3)))) == 1
        assert journal(store) == [("req-x", False)]
    finally:
        store.close()
