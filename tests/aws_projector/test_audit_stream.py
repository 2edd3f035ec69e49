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

from stratoflow.adapters.aws.dynamo_audit import EXPIRES, audit_key
from stratoflow.adapters.aws.dynamodb import TTL_ATTRIBUTE
from stratoflow.adapters.aws.projector import TTL_PRINCIPAL, StreamProjector
from stratoflow.api.app import create_app
from stratoflow.api.local_server import LocalContext
from stratoflow.audit import UNCONFIRMED
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


def test_a_lambda_that_died_after_the_change_leaves_its_line_for_the_ttl_to_bring(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rm = ReadModel(SqliteDatabase(str(tmp_path / "rm.db")))
    app = create_app(env.scheduler, readmodel=rm)
    assert call(app, "POST", "/workflows", {}, "req-apply", {"source": FLOW})[0] == 201

    def die(*args: Any, **kwargs: Any) -> None:
        raise Died

    monkeypatch.setattr(env.store, "audit_settle", die, raising=False)
    monkeypatch.setattr(rm, "record_audit", die)
    with pytest.raises(Died):
        call(app, *PAUSE, "req-pause")
    assert env.store.get_version("analytics", "etl").paused  # the change stands
    projector = StreamProjector(env.store, SqliteDatabase(str(tmp_path / "rm.db")))
    assert projector.handle({"Records": env.stream.read()}).failed == []
    assert log(projector.readmodel) == [("req-apply", "workflow.apply")]  # not yet
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


def test_a_read_model_down_past_the_streams_retries_catches_up_from_the_table(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rm = ReadModel(SqliteDatabase(str(tmp_path / "rm.db")))
    monkeypatch.setattr(rm, "record_audit", unreachable)  # down for the API's writes too
    app = create_app(env.scheduler, readmodel=rm)
    projector = StreamProjector(
        env.store,
        SqliteDatabase(str(tmp_path / "rm.db")),
        clock_ns=lambda: int(env.clock.current.timestamp() * 1e9),
    )
    projector.migrate()
    apply = projector.readmodel.apply
    down = True

    def refuse(changes: Any) -> int:
        if down:
            raise OSError("the read model cannot be reached")
        return int(apply(changes))

    monkeypatch.setattr(projector.readmodel, "apply", refuse)
    assert call(app, "POST", "/workflows", {}, "req-apply", {"source": FLOW})[0] == 201
    # WHEN the read model stays down until the records run out of retries (they go to the
    # DLQ: never delivered again)
    records = env.stream.read()
    for _ in range(3):
        assert projector.handle({"Records": records}).failed != []
    # THEN the first batch after it is back delivers the entries since the failure again
    down = False
    assert call(app, *PAUSE, "req-pause")[0] == 200
    assert projector.handle({"Records": env.stream.read()}).failed == []
    assert log(projector.readmodel) == [
        ("req-pause", "workflow.pause"), ("req-apply", "workflow.apply")
    ]  # fmt: skip
    # AND the operator's replay (the projector function's "replay-audit") keeps one of each
    assert projector.replay_audit(env.clock.current - timedelta(days=1)) == 2
    assert log(projector.readmodel) == [
        ("req-pause", "workflow.pause"), ("req-apply", "workflow.apply")
    ]  # fmt: skip
