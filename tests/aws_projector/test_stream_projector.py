"""The AWS projector (stratoflow.adapters.aws.projector) fed the DynamoDB stream that a real
DynamoStore on moto wrote while the real Scheduler ran workflows.

The stream records are moto's own (dynamodbstreams GetRecords), shaped as Lambda delivers
them. The read model is SQLite through the same Projection code path that runs on Aurora
(the Data API wiring is proved in test_projector_function.py). What moto cannot do is noted
where it matters: it never expires items by TTL, so a TTL deletion is moto's REMOVE record
with the ``userIdentity`` DynamoDB adds to TTL deletions.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws.projector import TTL_PRINCIPAL, StreamProjector, StreamRecord
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, Upstream
from stratoflow.ports import Attempt
from stratoflow.readmodel import Database, Insert, ReadModel, SqliteDatabase
from stratoflow.service import Finished
from tests.aws_projector.conftest import Env

ETL = """
name: etl
project: analytics
description: nightly load
params: {day: sun}
defaults: {retries: 1, retry_delay: 0}
tasks:
  extract: {type: shell, command: echo}
  transform: {type: shell, command: echo, depends_on: [extract]}
  load: {type: shell, command: echo, depends_on: [transform]}
  audit: {type: shell, command: echo, depends_on: [extract]}
  report: {type: shell, command: echo, depends_on: [load, audit], trigger_rule: all_done}
"""
TABLES = {
    "workflows": "project, name",
    "workflow_versions": "project, name, version",
    "runs": "id",
    "task_instances": "run_id, task_id",
    "attempts": "run_id, task_id, attempt",
}


def outcome(key: tuple[str, str, int]) -> AttemptResult:
    """transform fails once (then its retry succeeds); load always fails: a failed run."""
    _, task, attempt = key
    if (task == "transform" and attempt == 1) or task == "load":
        return AttemptResult(AttemptStatus.FAILED, error=f"{task} broke", exit_code=3)
    return AttemptResult(AttemptStatus.SUCCEEDED, outputs={"rows": 42, "task": task})


def drive(env: Env, run_id: str, after_step: Any = None) -> None:
    """Run every dispatched attempt to its outcome, one report at a time."""
    for _ in range(100):
        env.scheduler.step()
        env.scheduler.dispatch_ready()
        if not env.dispatcher.pending:
            break
        key = next(iter(env.dispatcher.pending))
        del env.dispatcher.pending[key]
        env.scheduler.on_finished(
            [Finished(*key, outcome(key), log=f"s3://logs/{'/'.join(map(str, key))}")]
        )
        if after_step is not None:
            after_step()
    assert env.store.get_run(run_id).state.terminal


def history(env: Env, after_step: Any = None) -> list[str]:
    """Two versions of a workflow, a pause, and two runs (the second one stopped midway)."""
    env.scheduler.apply(ETL)
    run, _ = env.scheduler.trigger("analytics", "etl", run_id="etl-1", params={"day": "mon"})
    drive(env, run.id, after_step)
    env.scheduler.set_paused("analytics", "etl", True)
    env.scheduler.apply(ETL.replace("nightly load", "nightly load v2"))
    second, _ = env.scheduler.trigger("analytics", "etl", run_id="etl-2")
    env.scheduler.dispatch_ready()
    env.scheduler.stop(second.id)
    drive(env, second.id, after_step)
    return [run.id, second.id]


def sqlite(tmp_path: Path, name: str = "rm.db") -> SqliteDatabase:
    return SqliteDatabase(str(tmp_path / name))


def event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


def dump(db: Database, *, revs: bool = True) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table, order in TABLES.items():
        rows = db.query(f"SELECT * FROM {table} ORDER BY {order}")
        out[table] = [{k: v for k, v in r.items() if revs or k != "rev"} for r in rows]
    return out


def assert_mirrors(env: Env, rm: ReadModel, run_ids: list[str]) -> None:
    """Every run, task, attempt and workflow version in the read model equals the store's."""
    store = env.store
    for run_id in run_ids:
        assert rm.run(run_id) == store.get_run(run_id)
        assert rm.tasks(run_id) == sorted(
            (t.with_(upstream=Upstream()) for t in store.get_tasks(run_id)),
            key=lambda t: t.task_id,
        )
        assert rm.attempts(run_id) == store.list_attempts(run_id)
    assert rm.versions("analytics", "etl") == store.list_versions("analytics", "etl")
    summary = rm.workflow("analytics", "etl")
    latest = store.get_version("analytics", "etl")
    assert (summary.latest_version, summary.paused, summary.description) == (
        latest.version, latest.paused, "nightly load v2",
    )  # fmt: skip


# ---------------------------------------------------------------------------- delivery
def test_batches_projected_as_the_stream_fills_mirror_the_store(env: Env, tmp_path: Path) -> None:
    # GIVEN a projector on an empty read model (it migrates it on its first batch)
    projector = StreamProjector(env.store, sqlite(tmp_path))
    results = []

    def project() -> None:
        results.append(projector.handle(event(env.stream.read())))

    # WHEN the scheduler runs and each step's records are projected as they arrive
    run_ids = history(env, after_step=project)
    project()
    # THEN nothing failed and the read model equals the store
    assert all(r.failed == [] for r in results)
    assert_mirrors(env, projector.readmodel, run_ids)
    assert projector.readmodel.run("etl-1").state is RunState.FAILED
    assert projector.readmodel.run("etl-2").state is RunState.STOPPED
    retried = list(projector.readmodel.attempts("etl-1", "transform"))
    assert [(a.attempt, a.state) for a in retried] == [(1, "failed"), (2, "succeeded")]
    # AND records the read model cannot see (upstream counts, queue positions) were skipped
    assert sum(r.skipped for r in results) > 0
    assert sum(r.projected for r in results) + sum(r.skipped for r in results) == len(
        env.stream.seen
    )


def test_duplicated_and_shuffled_delivery_leaves_the_same_read_model(
    env: Env, make_db: Any
) -> None:
    """On SQLite and on the real PostgreSQL server."""
    run_ids = history(env)
    records = env.stream.read()
    in_order = StreamProjector(env.store, make_db())
    assert in_order.handle(event(records)).failed == []

    # WHEN every record comes twice, shuffled, in batches of random size
    rng = random.Random(7)
    storm = records + records
    rng.shuffle(storm)
    shuffled = StreamProjector(env.store, make_db())
    while storm:
        size = rng.randint(1, 40)
        batch, storm = storm[:size], storm[size:]
        assert shuffled.handle(event(batch)).failed == []

    # THEN both read models hold the same rows (task and attempt rows even the same
    # revisions: their stream sequence numbers), equal to the store
    assert dump(shuffled.readmodel.db, revs=False) == dump(in_order.readmodel.db, revs=False)
    for table in ("task_instances", "attempts"):
        assert dump(shuffled.readmodel.db)[table] == dump(in_order.readmodel.db)[table]
    assert_mirrors(env, shuffled.readmodel, run_ids)


def test_an_old_image_delivered_after_a_newer_one_changes_nothing(env: Env, tmp_path: Path) -> None:
    history(env)
    records = env.stream.read()
    projector = StreamProjector(env.store, sqlite(tmp_path))
    projector.handle(event(records))
    before = dump(projector.readmodel.db)
    # WHEN the first image of every task and attempt arrives again, late
    firsts: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        keys = record["dynamodb"]["Keys"]
        image = record["dynamodb"].get("NewImage", {})
        if keys["sk"]["S"].startswith(("T#", "A#")) and "st" in image:
            firsts.setdefault((keys["pk"]["S"], keys["sk"]["S"]), record)
    assert len(firsts) > 10
    result = projector.handle(event(list(firsts.values())))
    # THEN they were offered, and the revision guard kept every newer row
    assert result.failed == []
    assert result.projected == len(firsts)
    assert dump(projector.readmodel.db) == before


def test_a_replayed_run_record_rereads_the_run_and_never_restores_an_old_state(
    env: Env, tmp_path: Path
) -> None:
    """A run row is a snapshot (run item + counters item) read at projection time. A record
    replayed later - even by a container whose clock runs ahead - re-reads the current run."""
    env.scheduler.apply(ETL)
    env.scheduler.trigger("analytics", "etl", run_id="etl-1")
    env.scheduler.dispatch_ready()
    early = env.stream.read()  # the run as created and started
    mid = StreamProjector(env.store, sqlite(tmp_path), clock_ns=lambda: 1_000_000_000)
    mid.handle(event(early))
    assert mid.readmodel.run("etl-1").state is RunState.RUNNING
    drive(env, "etl-1")
    final = env.store.get_run("etl-1")
    assert final.state is RunState.FAILED
    # WHEN only the early run records come again, through a container whose clock is ahead
    ahead = StreamProjector(
        env.store, mid.readmodel.db, migrate_schema=False, clock_ns=lambda: 9_000_000_000
    )
    run_records = [r for r in early if r["dynamodb"]["Keys"]["sk"]["S"] in ("R", "RC")]
    assert ahead.handle(event(run_records)).failed == []
    # THEN the row holds the run as it is now, not as those records saw it
    assert mid.readmodel.run("etl-1") == final
    # AND a container whose clock is behind cannot overwrite it with anything
    behind = StreamProjector(
        env.store, mid.readmodel.db, migrate_schema=False, clock_ns=lambda: 5_000_000_000
    )
    before = dump(mid.readmodel.db)
    behind.handle(event(run_records))
    assert dump(mid.readmodel.db) == before


# ---------------------------------------------------------------------------- what is skipped
def test_a_ttl_expiry_of_an_attempt_keeps_its_history(env: Env, tmp_path: Path) -> None:
    run_ids = history(env)
    projector = StreamProjector(env.store, sqlite(tmp_path))
    projector.handle(event(env.stream.read()))
    before = dump(projector.readmodel.db)
    # WHEN TTL removes every attempt item (moto does not run TTL: each REMOVE is moto's own
    # record of a delete, marked as DynamoDB marks a TTL deletion)
    for attempt in env.store.list_attempts("etl-1"):
        env.client.delete_item(
            TableName=env.table,
            Key=it.key(it.run_pk("etl-1"), it.attempt_sk(attempt.task_id, attempt.attempt)),
        )
    removes = env.stream.read()
    assert {r["eventName"] for r in removes} == {"REMOVE"}
    for record in removes:
        record["userIdentity"] = {"type": "Service", "principalId": TTL_PRINCIPAL}
    assert all(StreamRecord.parse(r).expired for r in removes)
    result = projector.handle(event(removes))
    # THEN nothing is deleted from the read model
    assert (result.skipped, result.failed) == (len(removes), [])
    assert dump(projector.readmodel.db) == before
    assert len(projector.readmodel.attempts(run_ids[0])) == 7


def test_a_run_being_created_is_not_projected_until_it_commits(env: Env, tmp_path: Path) -> None:
    env.scheduler.apply(ETL)
    env.scheduler.trigger("analytics", "etl", run_id="etl-1")
    records = env.stream.read()
    lock = [
        r for r in records
        if r["dynamodb"]["Keys"]["sk"]["S"] == "R" and "lock" in r["dynamodb"]["NewImage"]
    ]  # fmt: skip
    assert len(lock) == 1
    projector = StreamProjector(env.store, sqlite(tmp_path))
    result = projector.handle(event(lock))
    assert (result.skipped, result.projected) == (1, 0)
    assert projector.readmodel.db.query("SELECT id FROM runs") == []


# ---------------------------------------------------------------------------- partial failures
def failures(result: Any) -> list[str]:
    return [f["itemIdentifier"] for f in result.response()["batchItemFailures"]]


def seqs_of(records: list[dict[str, Any]], sk_prefix: str, task: str) -> list[str]:
    return [
        r["dynamodb"]["SequenceNumber"]
        for r in records
        if r["dynamodb"]["Keys"]["sk"]["S"].startswith(f"{sk_prefix}{task}")
        and r["eventName"] != "REMOVE"
    ]


def test_an_undecodable_record_alone_is_reported(env: Env, tmp_path: Path) -> None:
    env.scheduler.apply(ETL)
    env.scheduler.trigger("analytics", "etl", run_id="etl-1")
    drive(env, "etl-1")
    records = env.stream.read()
    bad = next(r for r in records if r["dynamodb"]["Keys"]["sk"]["S"] == "T#audit")
    del bad["dynamodb"]["NewImage"]["st"]
    projector = StreamProjector(env.store, sqlite(tmp_path))
    result = projector.handle(event(records))
    assert failures(result) == [bad["dynamodb"]["SequenceNumber"]]
    assert projector.readmodel.run("etl-1") == env.store.get_run("etl-1")
    # the later images of audit were projected: only the corrupt record is retried
    assert {t.task_id for t in projector.readmodel.tasks("etl-1")} >= {"audit", "extract"}


class FailingFor(SqliteDatabase):
    """SQLite that refuses every write of one task's row (or, ``down``, every write)."""

    def __init__(self, path: str, task: str | None, *, down: bool = False) -> None:
        super().__init__(path)
        self.task = task
        self.down = down
        self.batches = 0

    def execute_many(self, sql: str, param_sets: Any) -> None:
        self.batches += 1
        refused = "task_instances" in sql and any(p.get("task_id") == self.task for p in param_sets)
        if self.down or refused:
            raise RuntimeError("refused")
        super().execute_many(sql, param_sets)

    def insert_many(self, insert: Insert, rows: Any) -> None:  # the projection's row writes
        self.batches += 1
        at = insert.columns.index("task_id") if "task_id" in insert.columns else None
        refused = insert.table == "task_instances" and any(r[at] == self.task for r in rows)
        if self.down or refused:
            raise RuntimeError("refused")
        super().insert_many(insert, rows)


def test_an_entity_the_database_refuses_fails_alone(env: Env, tmp_path: Path) -> None:
    env.scheduler.apply(ETL)
    env.scheduler.trigger("analytics", "etl", run_id="etl-1")
    drive(env, "etl-1")
    records = env.stream.read()
    db = FailingFor(str(tmp_path / "rm.db"), "load")
    projector = StreamProjector(env.store, db)
    result = projector.handle(event(records))
    # THEN only records of load's task item are reported: those that change its row (an
    # image that only counted an upstream end was skipped, not failed)
    reported = failures(result)
    assert len(reported) >= 3
    assert set(reported) <= set(seqs_of(records, "T#", "load"))
    assert projector.readmodel.run("etl-1") == env.store.get_run("etl-1")
    assert "load" not in {t.task_id for t in projector.readmodel.tasks("etl-1")}
    # AND retrying them once the database accepts them completes the read model
    db.task = None
    retry = [r for r in records if r["dynamodb"]["SequenceNumber"] in set(reported)]
    assert projector.handle(event(retry)).failed == []
    assert_mirrors_run(env, projector.readmodel, "etl-1")


def assert_mirrors_run(env: Env, rm: ReadModel, run_id: str) -> None:
    assert rm.run(run_id) == env.store.get_run(run_id)
    assert [t.with_(upstream=Upstream()) for t in env.store.get_tasks(run_id)] == rm.tasks(run_id)
    assert rm.attempts(run_id) == env.store.list_attempts(run_id)


def test_a_database_that_is_down_fails_the_batch_after_two_tries_in_a_row(
    env: Env, tmp_path: Path
) -> None:
    env.scheduler.apply(ETL)
    env.scheduler.trigger("analytics", "etl", run_id="etl-1")
    drive(env, "etl-1")
    records = env.stream.read()
    db = FailingFor(str(tmp_path / "rm.db"), None)
    projector = StreamProjector(env.store, db)
    projector.migrate()
    db.down, db.batches = True, 0
    result = projector.handle(event(records))
    # every record with something to project is reported; the database was tried 3 times
    # (the batch, then two entities), not once per entity
    assert len(failures(result)) == result.records - result.skipped
    assert db.batches == 3


def test_a_state_table_read_failure_reports_the_run_records_only(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.scheduler.apply(ETL)
    env.scheduler.trigger("analytics", "etl", run_id="etl-1")
    drive(env, "etl-1")
    records = env.stream.read()

    def throttled(**_: Any) -> Any:
        raise env.client.exceptions.ProvisionedThroughputExceededException(
            {"Error": {"Code": "ProvisionedThroughputExceededException"}}, "BatchGetItem"
        )

    monkeypatch.setattr(env.client, "batch_get_item", throttled)
    projector = StreamProjector(env.store, sqlite(tmp_path))
    result = projector.handle(event(records))
    run_seqs = {
        r["dynamodb"]["SequenceNumber"]
        for r in records
        if r["dynamodb"]["Keys"]["sk"]["S"] in ("R", "RC")
    }
    assert set(failures(result)) <= run_seqs
    assert failures(result)
    assert projector.readmodel.db.query("SELECT id FROM runs") == []
    # the task images needed no read: they are all in the read model, waiting for their run
    assert len(projector.readmodel.db.query("SELECT task_id FROM task_instances")) == 5


def test_a_failed_migration_fails_the_whole_batch(env: Env, tmp_path: Path) -> None:
    env.scheduler.apply(ETL)
    records = env.stream.read()
    db = FailingFor(str(tmp_path / "rm.db"), None)

    def broken(sql: str, params: Any = None) -> int:
        raise RuntimeError("no permission to CREATE")

    db.execute = broken  # type: ignore[method-assign]
    result = StreamProjector(env.store, db).handle(event(records))
    assert failures(result) == sorted((r["dynamodb"]["SequenceNumber"] for r in records), key=int)


def test_bad_events_are_refused_with_the_reason() -> None:
    projector = StreamProjector.__new__(StreamProjector)
    with pytest.raises(ValueError, match="no 'Records' list"):
        StreamProjector.handle(projector, {"detail": {}})
    with pytest.raises(ValueError, match="SequenceNumber"):
        StreamRecord.parse({"eventName": "INSERT", "dynamodb": {}})
    with pytest.raises(ValueError, match="no 'dynamodb' part"):
        StreamRecord.parse({"eventName": "INSERT"})
    base = {"SequenceNumber": "12", "Keys": {"pk": {"S": "RUN#r"}, "sk": {"S": "R"}}}
    with pytest.raises(ValueError, match="unknown eventName 'UPSERT'"):
        StreamRecord.parse({"eventName": "UPSERT", "dynamodb": base})
    with pytest.raises(ValueError, match="NEW_AND_OLD_IMAGES"):
        StreamRecord.parse({"eventName": "MODIFY", "dynamodb": base})
    with pytest.raises(ValueError, match="Keys lack pk/sk"):
        StreamRecord.parse({"eventName": "REMOVE", "dynamodb": {"SequenceNumber": "1", "Keys": {}}})


def test_workflow_records_skip_the_cursor_and_report_a_failed_read(
    env: Env, tmp_path: Path
) -> None:
    env.scheduler.apply(ETL)
    projector = StreamProjector(env.store, sqlite(tmp_path))
    assert projector.handle(event(env.stream.read())).failed == []
    # a schedule firing moves the head's cursor: nothing the read model shows
    env.store.set_cursor("analytics", "etl", datetime(2026, 11, 21, tzinfo=UTC))
    cursor = env.stream.read()
    assert projector.handle(event(cursor)).skipped == len(cursor) == 1
    # a pause is re-read; if the table cannot be read, only that record is reported
    env.store.set_paused("analytics", "etl", True)
    (pause,) = env.stream.read()

    def unreadable(*_: Any, **__: Any) -> Any:
        raise RuntimeError("throttled")

    env.store.get_version = unreadable  # type: ignore[method-assign]
    assert failures(projector.handle(event([pause]))) == [pause["dynamodb"]["SequenceNumber"]]
    assert projector.readmodel.workflow("analytics", "etl").paused is False
    del env.store.get_version  # the class's method again
    assert projector.handle(event([pause])).failed == []
    assert projector.readmodel.workflow("analytics", "etl").paused is True


# ---------------------------------------------------------------------------- one record an attempt
def ended_attempt_items(env: Env, run_id: str) -> list[str]:
    """The attempt items that hold an end (not only the start row the scheduler writes)."""
    out = env.client.query(
        TableName=env.table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :a)",
        ExpressionAttributeValues={":pk": {"S": it.run_pk(run_id)}, ":a": {"S": "A#"}},
    )
    return [i["sk"]["S"] for i in out["Items"] if i["st"]["S"] != "running"]


def first_attempt(env: Env) -> tuple[str, tuple[str, str, int]]:
    """A run of ETL whose first task (extract, attempt 1) is running."""
    env.scheduler.apply(ETL)
    run, _ = env.scheduler.trigger("analytics", "etl", run_id="etl-1")
    env.scheduler.dispatch_ready()
    (key,) = env.dispatcher.pending
    del env.dispatcher.pending[key]
    return run.id, key


def orders(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The records in order, reversed, and with the attempt items' records last and first."""
    rows = [r for r in records if r["dynamodb"]["Keys"]["sk"]["S"].startswith("A#")]
    rest = [r for r in records if r not in rows]
    return [records, records[::-1], rest + rows, rows + rest]


def test_a_duplicate_report_after_the_end_leaves_one_record_everywhere(
    env: Env, tmp_path: Path
) -> None:
    """The runner's report delivered twice, the second with another outcome, after the task
    took the first: the attempt's end is recorded once (on its task item; its attempt item is
    only the start row), and the read model holds that record whatever the order the records
    come in. (moto emits a stream record for the late end's write although its transaction
    was cancelled and the table kept nothing of it; DynamoDB does not. The projector keeps
    the task item's record either way.)"""
    run_id, key = first_attempt(env)
    ok = AttemptResult(AttemptStatus.SUCCEEDED, outputs={"rows": 1})
    env.scheduler.on_finished([Finished(*key, ok, log="s3://logs/1")])
    bad = AttemptResult(AttemptStatus.FAILED, error="late", exit_code=9)
    env.scheduler.on_finished([Finished(*key, bad, log="s3://logs/2")])

    assert ended_attempt_items(env, run_id) == []
    (recorded,) = env.store.list_attempts(run_id, "extract")
    assert (recorded.state, recorded.outputs, recorded.log) == (
        "succeeded",
        {"rows": 1},
        "s3://logs/1",
    )
    for i, records in enumerate(orders(env.stream.read())):
        projector = StreamProjector(env.store, sqlite(tmp_path, f"rm{i}.db"))
        assert projector.handle(event(records)).failed == []
        assert projector.readmodel.attempts(run_id) == env.store.list_attempts(run_id)


def test_an_attempt_item_written_before_its_end_went_on_the_task_loses_everywhere(
    env: Env, tmp_path: Path
) -> None:
    """An attempt item of attempt 1 that exists when the task's transition records attempt 1
    on the task item (the attempt's start row; an end whose transition failed on another
    condition, the report then retried): both readers take the task item's record, the end
    whose transition the task took, whatever the order of the two items' stream records."""
    run_id, key = first_attempt(env)
    run, task, number = key
    started = env.store.get_task(run, task).started_at
    assert started is not None
    env.store.start_attempt(Attempt(run, task, number, "running", started, log="s3://logs/0"))
    stale = Attempt(run, task, number, "failed", started, ended_at=started, error="stale")
    env.store.finish_attempt(stale)  # its transition did not apply; the task still runs it
    ok = AttemptResult(AttemptStatus.SUCCEEDED, outputs={"rows": 1})
    env.scheduler.on_finished([Finished(*key, ok, log="s3://logs/1")])
    # and the attempt item written again after that (a start record delivered late): its
    # stream record comes after the task item's (on AWS, sequence numbers of two items are
    # not comparable anyway)
    env.store.start_attempt(Attempt(run, task, number, "running", started, log="s3://logs/9"))

    (recorded,) = env.store.list_attempts(run_id, "extract")
    assert (recorded.state, recorded.log) == ("succeeded", "s3://logs/1")
    records = env.stream.read()
    assert len([r for r in records if r["dynamodb"]["Keys"]["sk"]["S"].startswith("A#")]) >= 2
    for i, batch in enumerate(orders(records)):
        projector = StreamProjector(env.store, sqlite(tmp_path, f"rm{i}.db"))
        assert projector.handle(event(batch)).failed == []
        assert projector.readmodel.attempts(run_id) == env.store.list_attempts(run_id)
    # one record at a time, the attempt item's last: the task item's record stays
    projector = StreamProjector(env.store, sqlite(tmp_path, "one.db"))
    for record in orders(records)[2]:
        assert projector.handle(event([record])).failed == []
    assert projector.readmodel.attempts(run_id) == env.store.list_attempts(run_id)
