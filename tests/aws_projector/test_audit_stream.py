"""The audit journal on AWS: the API journals each audited change in the state table
(``dynamo_audit``) and the stream projector writes it to the read model, keyed by the
request's id. A read model the API could not write, a Lambda that died right after the
change, a record delivered twice: the line is in the log, once. moto runs no TTL: an
expiry is moto's REMOVE record of a delete, marked as DynamoDB marks a TTL deletion."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.aws import handlers
from stratoflow.adapters.aws.dynamo_audit import EXPIRES, SETTLED_KEEP, audit_entry_of, audit_key
from stratoflow.adapters.aws.dynamodb import TTL_ATTRIBUTE
from stratoflow.adapters.aws.projector import TTL_PRINCIPAL, StreamProjector
from stratoflow.api.app import create_app
from stratoflow.api.local_server import LocalContext
from stratoflow.audit import INTENT_TTL, UNCONFIRMED, intent
from stratoflow.readmodel import AuditEntry, ReadModel, SqliteDatabase
from tests.aws_projector.conftest import Env

FLOW = "name: etl\nproject: analytics\ntasks:\n  a: {type: shell, command: echo}\n"
PAUSE = ("POST", "/workflows/etl/pause", {"project": "analytics"})


class Died(BaseException):
    """The Lambda stops here: nothing after it runs."""


def call(
    app: Any, method: str, path: str, query: dict[str, str], request_id: str, body: Any = None
) -> tuple[int, Any]:
    event = {
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()},
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "body": None if body is None else json.dumps(body), "isBase64Encoded": False,
        "requestContext": {"stage": "test", "requestId": request_id, "path": path},
    }  # fmt: skip
    response = app.resolve(event, LocalContext(request_id))
    return response["statusCode"], json.loads(response["body"])


def log(rm: ReadModel, project: str = "analytics") -> list[tuple[str, str]]:
    return [(e.id, e.action) for e in rm.list_audit(project=project, limit=100).items]


def unreachable(entry: AuditEntry) -> None:
    raise OSError("the read model cannot be reached")


def test_the_ttl_attribute_is_the_tables() -> None:
    assert EXPIRES == TTL_ATTRIBUTE


def test_a_line_the_api_could_not_write_comes_through_the_stream_once(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_rm = ReadModel(SqliteDatabase(str(tmp_path / "rm.db")))
    monkeypatch.setattr(api_rm, "record_audit", unreachable)  # down for the API's writes
    app = create_app(env.scheduler, readmodel=api_rm)
    assert call(app, "POST", "/workflows", {}, "req-apply", {"source": FLOW})[0] == 201
    assert call(app, *PAUSE, "req-pause")[0] == 200
    assert call(app, *PAUSE, "req-pause")[0] == 200  # a retried delivery of the request
    records = env.stream.read()
    projector = StreamProjector(env.store, SqliteDatabase(str(tmp_path / "rm.db")))
    assert projector.handle({"Records": records}).failed == []
    assert log(projector.readmodel) == [
        ("req-pause", "workflow.pause"), ("req-apply", "workflow.apply")
    ]  # fmt: skip
    # every record delivered again, in any order (Lambda's retries): one line each
    again = records * 2
    random.Random(7).shuffle(again)
    assert projector.handle({"Records": again}).failed == []
    assert log(projector.readmodel) == [
        ("req-pause", "workflow.pause"), ("req-apply", "workflow.apply")
    ]  # fmt: skip
    assert log(projector.readmodel, "default") == []  # another project's log shows neither


def died_after_the_pause(env: Env, tmp_path: Path) -> StreamProjector:
    """The workflow applied, then paused by a Lambda that died right after the change (its
    intent left pending); the stream projected so far, by the projector returned."""
    rm = ReadModel(SqliteDatabase(str(tmp_path / "rm.db")))
    app = create_app(env.scheduler, readmodel=rm)
    assert call(app, "POST", "/workflows", {}, "req-apply", {"source": FLOW})[0] == 201

    def die(*args: Any, **kwargs: Any) -> None:
        raise Died

    with pytest.MonkeyPatch.context() as m:
        m.setattr(env.store, "audit_settle", die, raising=False)
        m.setattr(rm, "record_audit", die)
        with pytest.raises(Died):
            call(app, *PAUSE, "req-pause")
    assert env.store.get_version("analytics", "etl").paused  # the change stands
    projector = StreamProjector(env.store, SqliteDatabase(str(tmp_path / "rm.db")))
    assert projector.handle({"Records": env.stream.read()}).failed == []
    assert log(projector.readmodel) == [("req-apply", "workflow.apply")]  # not yet
    return projector


def test_a_lambda_that_died_after_the_change_leaves_its_line_for_the_ttl_to_bring(
    env: Env, tmp_path: Path
) -> None:
    projector = died_after_the_pause(env, tmp_path)
    # WHEN the intent's expiry passes and TTL deletes it
    item = env.client.get_item(TableName=env.table, Key=audit_key("req-pause"))["Item"]
    assert int(item[EXPIRES]["N"]) > 0
    env.client.delete_item(TableName=env.table, Key=audit_key("req-pause"))
    removes = env.stream.read()
    for record in removes:
        record["userIdentity"] = {"type": "Service", "principalId": TTL_PRINCIPAL}
    assert projector.handle({"Records": removes + removes}).failed == []
    # THEN the change is in the log, once, its outcome unknown
    entries = projector.readmodel.list_audit(project="analytics", limit=10).items
    assert [(e.id, e.action, e.target) for e in entries] == [
        ("req-pause", UNCONFIRMED, "POST /workflows/etl/pause"),
        ("req-apply", "workflow.apply", "workflow/analytics/etl"),
    ]
    assert entries[0].details == {"outcome": "unknown"}


def test_a_failed_request_withdraws_its_intent_and_shows_nothing(env: Env, tmp_path: Path) -> None:
    rm = ReadModel(SqliteDatabase(str(tmp_path / "rm.db")))
    app = create_app(env.scheduler, readmodel=rm)
    status, _ = call(app, "POST", "/workflows/nothing/pause", {"project": "analytics"}, "req-x")
    assert status == 404
    assert "Item" not in env.client.get_item(TableName=env.table, Key=audit_key("req-x"))
    projector = StreamProjector(env.store, SqliteDatabase(str(tmp_path / "rm.db")))
    records = env.stream.read()
    assert any(r["eventName"] == "REMOVE" for r in records)  # the withdrawal: a user's delete
    assert projector.handle({"Records": records}).failed == []
    assert log(projector.readmodel) == []


WRITES = ("begin", "change", "settle", "readmodel")


def test_every_write_of_an_audited_change_failing_or_dying_once_loses_and_doubles_nothing(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One table, one read model; each case pauses a workflow of its own (a request of its
    own) with one write failing once (an error the Lambda survives) or being where it dies
    (that write and every later one never happen). Then the stream is projected, and every
    intent left pending expires (TTL)."""
    rm = ReadModel(SqliteDatabase(str(tmp_path / "rm.db")))
    app = create_app(env.scheduler, readmodel=rm)
    store = env.store
    cases = [(kind, write) for kind in ("fail", "die") for write in WRITES]
    for i in range(len(cases)):
        flow = FLOW.replace("name: etl", f"name: etl{i}")
        assert call(app, "POST", "/workflows", {}, f"req-apply-{i}", {"source": flow})[0] == 201
    state: dict[str, Any] = {}

    def wrap(name: str, method: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if state.get("dead") or name == state.get("die"):
                state["dead"] = True
                raise Died
            if name == state.get("fail"):
                state["fail"] = None
                raise OSError(f"injected: {name} failed")
            return method(*args, **kwargs)

        return wrapped

    for name, obj, attr in (
        ("begin", store, "audit_begin"), ("change", store, "set_paused"),
        ("settle", store, "audit_settle"), ("withdraw", store, "audit_withdraw"),
        ("readmodel", rm, "record_audit"),
    ):  # fmt: skip
        monkeypatch.setattr(obj, attr, wrap(name, getattr(obj, attr)))
    outcomes = []
    for i, (kind, write) in enumerate(cases):
        state.clear()
        state[kind] = write
        try:
            status: int | None = call(app, "POST", f"/workflows/etl{i}/pause",
                                      {"project": "analytics"}, f"req-{i}")[0]  # fmt: skip
        except Died:
            status = None
        outcomes.append((status, store.get_version("analytics", f"etl{i}").paused))
    state.clear()
    projector = StreamProjector(env.store, SqliteDatabase(str(tmp_path / "rm.db")))
    records = env.stream.read()
    assert projector.handle({"Records": records + records}).failed == []
    # the intents still pending expire: TTL deletes them
    for i in range(len(cases)):
        item = env.client.get_item(TableName=env.table, Key=audit_key(f"req-{i}")).get("Item")
        if item is not None and "pending" in item:
            env.client.delete_item(TableName=env.table, Key=audit_key(f"req-{i}"))
    removes = env.stream.read()
    for record in removes:
        record["userIdentity"] = {"type": "Service", "principalId": TTL_PRINCIPAL}
    assert projector.handle({"Records": removes}).failed == []
    entries = projector.readmodel.list_audit(project="analytics", limit=100).items
    for i, ((kind, write), (status, paused)) in enumerate(zip(cases, outcomes, strict=True)):
        mine = [e for e in entries if e.id == f"req-{i}"]
        case = (kind, write, status, paused, mine)
        if paused:
            assert len(mine) == 1, case
            assert mine[0].action in ("workflow.pause", UNCONFIRMED), case
            if kind == "fail":
                assert mine[0].action == "workflow.pause", case
        else:
            assert status != 200, case
            assert all(e.action == UNCONFIRMED for e in mine), case
            if (kind, write) == ("fail", "begin"):  # refused (503): nothing said
                assert mine == [], case
            elif kind == "fail":  # a 500: whether it was made is not known, and said so
                assert status == 500, case
                assert [(e.action, e.details) for e in mine] == [
                    (UNCONFIRMED, {"outcome": "unknown"})
                ], case
    assert {e.project for e in entries} == {"analytics"}


# ------------------------------------------------------------------ a bounded journal
def items(env: Env, *ids: str) -> dict[str, tuple[bool, int | None]]:
    """Each entry's journal item: (pending, its TTL as epoch seconds); absent: gone."""
    out: dict[str, tuple[bool, int | None]] = {}
    for entry_id in ids:
        item = env.client.get_item(TableName=env.table, Key=audit_key(entry_id)).get("Item")
        if item is not None:
            expires = int(item[EXPIRES]["N"]) if EXPIRES in item else None
            out[entry_id] = ("pending" in item, expires)
    return out


def by_ttl(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for record in records:
        record["userIdentity"] = {"type": "Service", "principalId": TTL_PRINCIPAL}
    return records


def read_model_down(projector: StreamProjector, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The projector's read model refuses every write while ``down[0]`` (returned) is true."""
    apply, down = projector.readmodel.apply, [True]

    def refuse(changes: Any) -> int:
        if down[0]:
            raise OSError("the read model cannot be reached")
        return int(apply(changes))

    monkeypatch.setattr(projector.readmodel, "apply", refuse)
    return down


def test_a_read_model_down_past_the_streams_retries_catches_up_and_only_then_expires(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rm = ReadModel(SqliteDatabase(str(tmp_path / "rm.db")))
    monkeypatch.setattr(rm, "record_audit", unreachable)  # the API's own line: not written
    app = create_app(env.scheduler, readmodel=rm)
    projector = StreamProjector(
        env.store,
        SqliteDatabase(str(tmp_path / "rm.db")),
        clock_ns=lambda: int(env.clock.current.timestamp() * 1e9),
    )
    projector.migrate()
    down = read_model_down(projector, monkeypatch)
    assert call(app, "POST", "/workflows", {}, "req-apply", {"source": FLOW})[0] == 201
    # WHEN the read model is down until the records run out of retries (on to the DLQ)
    records = env.stream.read()
    for _ in range(3):
        assert projector.handle({"Records": records}).failed != []
    # THEN the journal keeps the entry as it is: no TTL
    assert items(env, "req-apply") == {"req-apply": (False, None)}
    # WHEN it is back: a new entry through the stream, the lost one through the replay
    down[0] = False
    assert call(app, *PAUSE, "req-pause")[0] == 200
    assert projector.handle({"Records": env.stream.read()}).failed == []
    assert log(projector.readmodel) == [
        ("req-pause", "workflow.pause"), ("req-apply", "workflow.apply")
    ]  # fmt: skip
    # THEN both are kept SETTLED_KEEP longer (what a replay can deliver again), then go
    keep = int((env.clock.current + SETTLED_KEEP).timestamp())
    marked = items(env, "req-apply", "req-pause")
    assert {k: p for k, (p, _) in marked.items()} == {"req-apply": False, "req-pause": False}
    assert all(keep - 5 <= (t or 0) <= keep for _, t in marked.values()), marked
    # AND the records of those marks change nothing
    marks = env.stream.read()
    assert [r["eventName"] for r in marks] == ["MODIFY", "MODIFY"]
    result = projector.handle({"Records": marks})
    assert (result.failed, result.projected, result.skipped) == ([], 0, 2)
    # AND the operator's replay (the projector function's "replay-audit") keeps one of each,
    # and marks nothing again
    assert projector.replay_audit(env.clock.current - timedelta(days=1)) == 2
    assert log(projector.readmodel) == [
        ("req-pause", "workflow.pause"), ("req-apply", "workflow.apply")
    ]  # fmt: skip
    assert items(env, "req-apply", "req-pause") == marked
    assert env.stream.read() == []
    # AND the records of the TTL's removals change nothing either
    for entry_id in ("req-apply", "req-pause"):
        env.client.delete_item(TableName=env.table, Key=audit_key(entry_id))
    result = projector.handle({"Records": by_ttl(env.stream.read())})
    assert (result.failed, result.projected, result.skipped) == ([], 0, 2)
    assert log(projector.readmodel) == [
        ("req-pause", "workflow.pause"), ("req-apply", "workflow.apply")
    ]  # fmt: skip
    assert items(env, "req-apply", "req-pause") == {}


@pytest.mark.parametrize("kind", ["fail", "die"])
def test_a_mark_that_fails_or_never_happens_changes_nothing_visible(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """``fail``: the mark's write raises once (its records are reported failed); ``die``: the
    projector stops between the read model's commit and the marks (Lambda retries the batch)."""
    rm = ReadModel(SqliteDatabase(str(tmp_path / "rm.db")))
    monkeypatch.setattr(rm, "record_audit", unreachable)
    app = create_app(env.scheduler, readmodel=rm)
    assert call(app, "POST", "/workflows", {}, "req-apply", {"source": FLOW})[0] == 201
    assert call(app, *PAUSE, "req-pause")[0] == 200
    projector = StreamProjector(env.store, SqliteDatabase(str(tmp_path / "rm.db")))
    records = env.stream.read()
    mark, calls = env.store.audit_projected, []

    def faulty(entry_id: str, now: Any) -> None:
        calls.append(entry_id)
        if kind == "die":
            raise Died
        if len(calls) == 1:
            raise OSError("injected: the mark failed")
        mark(entry_id, now)

    monkeypatch.setattr(env.store, "audit_projected", faulty)
    if kind == "die":
        with pytest.raises(Died):
            projector.handle({"Records": records})
        monkeypatch.setattr(env.store, "audit_projected", mark)
        retried = records  # the whole batch, again
    else:
        failed = projector.handle({"Records": records}).failed
        assert failed != []
        retried = [r for r in records if r["dynamodb"]["SequenceNumber"] in failed]
    assert log(projector.readmodel) == [
        ("req-pause", "workflow.pause"), ("req-apply", "workflow.apply")
    ]  # fmt: skip
    assert projector.handle({"Records": retried}).failed == []
    assert log(projector.readmodel) == [
        ("req-pause", "workflow.pause"), ("req-apply", "workflow.apply")
    ]  # fmt: skip
    marked = items(env, "req-apply", "req-pause")
    assert all(t is not None for _, t in marked.values()), marked


# ------------------------------------------------------------------ intents left pending
def test_an_intent_left_pending_is_settled_by_the_reconciler_15_minutes_on(
    env: Env, tmp_path: Path
) -> None:
    projector = died_after_the_pause(env, tmp_path)
    # WHEN the reconciler passes before the intent's 15 minutes are over: nothing yet
    env.clock.current += INTENT_TTL - timedelta(minutes=1)
    assert handlers.reconcile(env.scheduler)["audit_intents_settled"] == 0
    assert items(env, "req-pause")["req-pause"][0] is True
    # WHEN it passes after them (long before DynamoDB's TTL would delete the intent)
    env.clock.current += timedelta(minutes=2)
    assert handlers.reconcile(env.scheduler)["audit_intents_settled"] == 1
    assert handlers.reconcile(env.scheduler)["audit_intents_settled"] == 0  # once
    # THEN the stream brings the line: the caller asked, the outcome is not known
    assert projector.handle({"Records": env.stream.read()}).failed == []
    entries = projector.readmodel.list_audit(project="analytics", limit=10).items
    assert [(e.id, e.action, e.target) for e in entries] == [
        ("req-pause", UNCONFIRMED, "POST /workflows/etl/pause"),
        ("req-apply", "workflow.apply", "workflow/analytics/etl"),
    ]
    assert entries[0].details == {"outcome": "unknown"}


def test_the_reconciler_settles_no_intent_its_request_settled_or_withdrew(env: Env) -> None:
    start = env.clock.current
    for entry_id in ("req-done", "req-gone", "req-open"):
        env.store.audit_begin(intent(entry_id, start, "u", "POST", "/x", "analytics"))
    done = AuditEntry(
        id="req-done", at=start, actor="u", action="workflow.pause", target="t",
        project="analytics", details={},
    )  # fmt: skip
    env.store.audit_settle(done)
    env.store.audit_withdraw("req-gone")
    assert env.store.audit_settle_expired(start + INTENT_TTL + timedelta(seconds=1)) == 1
    assert items(env, "req-done", "req-gone", "req-open") == {
        "req-done": (False, None), "req-open": (False, None)
    }  # fmt: skip
    stored = env.client.get_item(TableName=env.table, Key=audit_key("req-done"))["Item"]
    assert audit_entry_of(stored) == done  # its request's outcome, not "unknown"


def test_a_reconciler_pass_whose_settling_fails_leaves_the_intent_to_the_next(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.store.audit_begin(intent("req-open", env.clock.current, "u", "POST", "/x", "analytics"))
    env.clock.current += INTENT_TTL + timedelta(minutes=1)
    with monkeypatch.context() as m:
        m.setattr(env.store, "_put_settled", unreachable_write)
        assert handlers.reconcile(env.scheduler)["audit_intents_settled"] is None  # logged
    assert items(env, "req-open")["req-open"][0] is True  # still pending, nothing lost
    assert handlers.reconcile(env.scheduler)["audit_intents_settled"] == 1


def unreachable_write(*args: Any, **kwargs: Any) -> bool:
    raise OSError("injected: the settling write failed")


def at_the_clock(env: Env, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` as DynamoDB dates them: written now by the test's clock (moto dates them
    by the wall clock)."""
    for record in records:
        record["dynamodb"]["ApproximateCreationDateTime"] = env.clock.current.timestamp()
    return records


def pending_then_down(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[StreamProjector, list[bool]]:
    """An intent ``req-open`` left pending (its records projected: nothing shown), then the
    projector's read model down (``read_model_down``)."""
    projector = StreamProjector(
        env.store,
        SqliteDatabase(str(tmp_path / "rm.db")),
        clock_ns=lambda: int(env.clock.current.timestamp() * 1e9),
    )
    projector.migrate()
    env.store.audit_begin(intent("req-open", env.clock.current, "u", "POST", "/x", "analytics"))
    assert projector.handle({"Records": at_the_clock(env, env.stream.read())}).failed == []
    return projector, read_model_down(projector, monkeypatch)


def back_with_a_later_line(env: Env, projector: StreamProjector, down: list[bool]) -> None:
    """The read model up again 10 minutes on, and a new line (``req-later``) projected."""
    down[0] = False
    env.clock.current += timedelta(minutes=10)
    done = AuditEntry(
        id="req-later", at=env.clock.current, actor="u", action="workflow.pause", target="t",
        project="analytics", details={},
    )  # fmt: skip
    env.store.audit_settle(done)
    assert projector.handle({"Records": at_the_clock(env, env.stream.read())}).failed == []


def test_a_line_the_reconciler_settled_while_the_read_model_was_down_is_replayed(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reconciler settles an intent 15 minutes or more after its request (the entry's
    ``at``); if the read model is down then until its records run out of retries, the
    replay after the outage (from the failure on, less a few minutes) must still bring it:
    it is indexed by when it was settled, not by its request's time."""
    projector, down = pending_then_down(env, tmp_path, monkeypatch)
    # WHEN the reconciler settles the intent while the read model is down, until the
    # records of that settling run out of retries (on to the DLQ)
    env.clock.current += INTENT_TTL + timedelta(minutes=3)
    assert handlers.reconcile(env.scheduler)["audit_intents_settled"] == 1
    settled = at_the_clock(env, env.stream.read())
    for _ in range(3):
        assert projector.handle({"Records": settled}).failed != []
    # WHEN it is back: the next batch that succeeds replays what was recorded meanwhile
    back_with_a_later_line(env, projector, down)
    # THEN the unconfirmed line is in the log, and its journal item may go
    assert log(projector.readmodel) == [("req-later", "workflow.pause"), ("req-open", UNCONFIRMED)]
    assert items(env, "req-open")["req-open"][1] is not None


def ttl_sweep(env: Env) -> list[dict[str, Any]]:
    """What DynamoDB's TTL may do at any moment: delete every item whose TTL has passed (by
    the test's clock); the stream's records of those deletions."""
    now = env.clock.current.timestamp()
    for item in env.client.scan(TableName=env.table)["Items"]:
        if EXPIRES in item and int(item[EXPIRES]["N"]) < now:
            env.client.delete_item(TableName=env.table, Key={"pk": item["pk"], "sk": item["sk"]})
    return by_ttl(at_the_clock(env, env.stream.read()))


def test_an_intent_waits_for_the_reconciler_not_for_a_ttl_that_may_come_at_once(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB's TTL may delete an item as soon as its time has passed. Deleted unsettled,
    an intent's line rides only on the stream's REMOVE record: with the read model down
    past the stream's retries it would be lost (no item left for the replay). Its TTL
    leaves the reconciler (however often it runs) its time to settle it into an item."""
    projector, down = pending_then_down(env, tmp_path, monkeypatch)
    # WHEN the intent's expiry is an hour past (a reconciler that runs hourly has not
    # passed yet) and TTL sweeps meanwhile, while the read model is down
    env.clock.current += INTENT_TTL + timedelta(hours=1)
    swept = ttl_sweep(env)
    # WHEN the reconciler passes, still with the read model down
    handlers.reconcile(env.scheduler)
    meanwhile = swept + at_the_clock(env, env.stream.read())
    for _ in range(3):  # (what the stream brought runs out of retries)
        projector.handle({"Records": meanwhile})
    # WHEN it is back: the next batch that succeeds replays what was recorded meanwhile
    back_with_a_later_line(env, projector, down)
    # THEN the unconfirmed line is in the log
    assert log(projector.readmodel) == [("req-later", "workflow.pause"), ("req-open", UNCONFIRMED)]
