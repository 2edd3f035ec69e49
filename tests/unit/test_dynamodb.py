"""DynamoStore beyond the port contract (tests/contract runs that against moto too): the
table schema, the requests each operation makes, and what a big run (tests/scale.py) does to it.

Everything runs on moto's in-process DynamoDB. What moto cannot show is said where it matters:
it does not throttle, does not delete expired items (TTL), and enforces the 400 KB item limit
and the 100-item transaction limit as DynamoDB does (so the size tests are real).
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import boto3
import moto.dynamodb.models as moto_models
import pytest
from moto import mock_aws
from moto.dynamodb.exceptions import TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend, get_filter_expression
from moto.dynamodb.models.table import Table as MotoTable
from tests.scale import RUN_TASKS

from stratoflow import engine
from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws.dynamodb import (
    TABLE_SCHEMA,
    TTL_ATTRIBUTE,
    DynamoStore,
    create_table,
)
from stratoflow.engine import (
    AttemptResult,
    AttemptStatus,
    Plan,
    Run,
    RunState,
    TaskInstance,
    TaskState,
    Upstream,
)
from stratoflow.errors import NotFound
from stratoflow.model import load_workflow
from stratoflow.ports import Attempt, AttemptSpec, Clock, Dispatcher, Recovery, RunQuery
from stratoflow.service import Finished, Scheduler

TABLE = "stratoflow-state"
T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
BIG = RUN_TASKS  # tests/scale.py: 1,000 in the suite, 10,000 in `make test-scale`
WORKFLOW_TASKS = 10_000  # a workflow's source past 400 KB: stored in chunks


class Crash(Exception):
    """Stands for the process dying at a chosen request."""


@dataclass
class Requests:
    """Every DynamoDB request the store makes (operation name and parameters). A Scan fails
    the test at once: the store has none."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # operation -> callback(params) run before the request is sent (may raise Crash)
    before: dict[str, Any] = field(default_factory=dict)

    def hook(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        name = model.name
        assert name != "Scan", "the store must never Scan"
        self.calls.append((name, params))
        if name in self.before:
            self.before[name](params)

    def ops(self) -> Counter[str]:
        return Counter(name for name, _ in self.calls)

    def clear(self) -> None:
        self.calls.clear()


class FakeClock:
    """Epoch seconds the store reads for leases; moved by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class _CopyNoTables:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend while a transaction
    whose conditions all hold is applied: tables are not copied (see below)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        if isinstance(value, MotoTable):
            return value
        return copy.deepcopy(value, memo)


@contextmanager
def moto_transactions_without_table_copies() -> Iterator[None]:
    """moto backs a TransactWriteItems up by deep-copying the whole table once per item (1.7 s
    for a 10,000-item table, so up to 170 s per 100-item transaction), only to roll back a
    cancelled transaction. Here a transaction's conditions are first evaluated against the
    same state with moto's own evaluator: when one fails, the transaction is cancelled with
    nothing applied (what moto's apply-then-roll-back ends with); when all hold, moto applies
    it as it does, minus the backup it will not need."""
    original = DynamoDBBackend.transact_write_items

    def failed(backend: Any, entry: dict[str, Any]) -> tuple[str, str, Any] | None:
        """None if the entry's condition holds, else its cancellation reason (with the item
        as it is when the entry asks for it: ``ReturnValuesOnConditionCheckFailure``)."""
        op_type, op = next(iter(entry.items()))
        condition = op.get("ConditionExpression")
        if condition is None:
            return None
        table = backend.get_table(op["TableName"])
        if op_type == "Put":
            item_key = {k: op["Item"][k] for k in (table.hash_key_attr, table.range_key_attr)}
        else:
            item_key = op["Key"]
        check = get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        )
        current = backend.get_item(op["TableName"], item_key)
        if check.expr(current):
            return None
        old = None
        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
            old = current.to_json()["Attributes"]
        return ("ConditionalCheckFailed", "The conditional request failed", old)

    def transact(backend: Any, transact_items: list[dict[str, Any]]) -> None:
        reasons = [failed(backend, entry) for entry in transact_items]
        if any(reasons):
            # what moto would end with after applying and rolling back: nothing applied,
            # cancelled with one reason per item
            raise TransactionCanceledException(
                [(None, None, None) if r is None else r for r in reasons]
            )
        with patch.object(moto_models, "copy", _CopyNoTables()):
            return original(backend, transact_items)

    with patch.object(DynamoDBBackend, "transact_write_items", transact):
        yield


@dataclass
class Env:
    client: Any
    store: DynamoStore
    requests: Requests
    clock: FakeClock


@pytest.fixture
def env() -> Iterator[Env]:
    with mock_aws(), moto_transactions_without_table_copies():
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        create_table(client, TABLE, stream=False)
        requests = Requests()
        client.meta.events.register("provide-client-params.dynamodb.*", requests.hook)
        clock = FakeClock()
        yield Env(client, DynamoStore(TABLE, client=client, clock=clock), requests, clock)


def a_run(run_id: str, n_tasks: int, state: RunState = RunState.RUNNING) -> Run:
    return Run(
        id=run_id,
        workflow="big",
        project="analytics",
        version=1,
        state=state,
        params={"region": "eu"},
        logical_date=T0,
        created_at=T0,
        started_at=T0,
        n_tasks=n_tasks,
    )


def task_ids(count: int) -> list[str]:
    return [f"t{i:05d}" for i in range(count)]


def raw_items(env: Env, pk: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    args: dict[str, Any] = {
        "TableName": TABLE,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": pk}},
    }
    while True:
        out = env.client.query(**args)
        items += out["Items"]
        if "LastEvaluatedKey" not in out:
            return items
        args["ExclusiveStartKey"] = out["LastEvaluatedKey"]


def item_size(item: dict[str, Any]) -> int:
    """An upper bound of DynamoDB's item size (names plus values)."""
    total = 0
    for name, value in item.items():
        total += len(name.encode())
        for kind, raw in value.items():
            if kind == "BS":
                total += sum(len(b) for b in raw)
            elif kind in ("S", "N"):
                total += len(str(raw).encode())
            elif kind == "B":
                total += len(raw)
            else:
                total += 1
    return total


# ---------------------------------------------------------------------------- schema
def test_the_table_schema_is_the_contracts(env: Env) -> None:
    """AWS-CONTRACT.md: pk/sk strings, sparse gsi1..gsi3 (projection ALL), on-demand, stream
    with both images, TTL on expires_at (create_table turns it on as the template does)."""
    table = env.client.describe_table(TableName=TABLE)["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    indexes = {g["IndexName"]: g for g in table["GlobalSecondaryIndexes"]}
    assert sorted(indexes) == ["gsi1", "gsi2", "gsi3"]
    for name, index in indexes.items():
        assert [k["AttributeName"] for k in index["KeySchema"]] == [f"{name}pk", f"{name}sk"]
        assert index["Projection"] == {"ProjectionType": "ALL"}
    assert {a["AttributeType"] for a in table["AttributeDefinitions"]} == {"S"}
    assert TABLE_SCHEMA["BillingMode"] == "PAY_PER_REQUEST"
    assert TABLE_SCHEMA["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    ttl = env.client.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", TTL_ATTRIBUTE)


# ---------------------------------------------------------------------------- create_run
@pytest.mark.scale
@pytest.mark.slow
def test_create_run_of_a_big_run_writes_in_batches_of_25_and_commits_last(env: Env) -> None:
    run = a_run("big", BIG)
    tasks = [TaskInstance("big", t) for t in task_ids(BIG)]

    assert env.store.create_run(run, tasks, concurrency=50) is True

    ops = env.requests.ops()
    # claim the id, BIG / 25 batches, and the commit - in that order
    assert ops == {"PutItem": 1, "BatchWriteItem": BIG // 25, "TransactWriteItems": 1}
    names = [name for name, _ in env.requests.calls]
    assert names[0] == "PutItem"
    assert names[-1] == "TransactWriteItems"
    batches = [p for name, p in env.requests.calls if name == "BatchWriteItem"]
    assert max(len(p["RequestItems"][TABLE]) for p in batches) == 25
    assert env.store.get_run("big") == run
    assert len(env.store.get_tasks("big")) == BIG


def test_create_run_again_with_the_same_id_writes_nothing(env: Env) -> None:
    run = a_run("r", 3)
    assert env.store.create_run(run, [TaskInstance("r", t) for t in "abc"], None)
    env.requests.clear()

    again = env.store.create_run(
        a_run("r", 4, RunState.QUEUED), [TaskInstance("r", t) for t in "abcd"], None
    )

    assert again is False
    # one conditional PutItem that failed: no batch, no commit
    assert env.requests.ops() == {"PutItem": 1}
    assert env.store.get_run("r") == run
    assert sorted(t.task_id for t in env.store.get_tasks("r")) == ["a", "b", "c"]


def _crash_at(env: Env, operation: str, nth: int) -> None:
    seen = {"n": 0}

    def maybe_crash(_: dict[str, Any]) -> None:
        seen["n"] += 1
        if seen["n"] == nth:
            raise Crash(f"{operation} #{nth}")

    env.requests.before[operation] = maybe_crash


def test_a_create_run_that_dies_before_its_commit_leaves_nothing_visible(env: Env) -> None:
    # GIVEN a creation that dies after writing some of its tasks (before the commit)
    first = [TaskInstance("r", t, TaskState.QUEUED) for t in task_ids(60)]
    _crash_at(env, "BatchWriteItem", 2)
    with pytest.raises(Crash):
        env.store.create_run(a_run("r", 60), first, None)
    env.requests.before.clear()
    # THEN the run is nowhere: not readable, not listed, its queued tasks not offered
    with pytest.raises(NotFound):
        env.store.get_run("r")
    assert env.store.get_tasks("r") == []
    assert env.store.list_runs(RunQuery()) == []
    assert list(env.store.runs_in_states(list(RunState))) == []
    assert env.store.queued_tasks(100) == []
    with pytest.raises(NotFound):
        env.store.add_counters("r", done=1)

    # WHEN the creation is retried while the dead writer's lease still runs, THEN it waits;
    # once the lease is over, a retry takes the id over and completes the run, without the
    # tasks the dead writer had and this one does not
    env.clock.now += env.store.lease.total_seconds() + 1
    second = [TaskInstance("r", t) for t in task_ids(30)]
    assert env.store.create_run(a_run("r", 30), second, None) is True
    assert env.store.get_run("r") == a_run("r", 30)
    assert sorted(t.task_id for t in env.store.get_tasks("r")) == task_ids(30)
    with pytest.raises(NotFound):
        env.store.get_task("r", "t00045")
    assert env.store.create_run(a_run("r", 30), second, None) is False


def test_a_concurrent_duplicate_create_waits_for_the_first_then_returns_false(
    env: Env,
) -> None:
    # GIVEN a creator held just before its commit
    holding, release = threading.Event(), threading.Event()

    def hold(_: dict[str, Any]) -> None:
        if threading.current_thread().name == "first":
            holding.set()
            assert release.wait(10)

    env.requests.before["TransactWriteItems"] = hold
    results: dict[str, bool] = {}
    tasks = [TaskInstance("r", t) for t in "ab"]
    first = threading.Thread(
        target=lambda: results.update(first=env.store.create_run(a_run("r", 2), tasks, None)),
        name="first",
    )
    first.start()
    assert holding.wait(10)
    # WHEN a duplicate (another Lambda delivering the same trigger) creates the same id
    second = threading.Thread(
        target=lambda: results.update(
            second=env.store.create_run(a_run("r", 3), [*tasks, TaskInstance("r", "c")], None)
        ),
        name="second",
    )
    second.start()
    time.sleep(0.3)
    assert "second" not in results  # it waits for the first creator's outcome
    release.set()
    first.join(10)
    second.join(10)
    # THEN the first creates the run, the duplicate returns False having written nothing
    assert results == {"first": True, "second": False}
    assert env.store.get_run("r").n_tasks == 2
    assert sorted(t.task_id for t in env.store.get_tasks("r")) == ["a", "b"]


# ---------------------------------------------------------------------------- the hot path
class RecordingDispatcher(Dispatcher):
    def __init__(self) -> None:
        self.started: list[str] = []

    def dispatch(self, spec: AttemptSpec) -> str | None:
        self.started.append(spec.key)
        return f"s3://logs/{spec.key}.log"

    def kill(self, run_id: str, task_id: str, attempt: int) -> None:
        return None

    def recover(self, running: Any) -> Recovery:
        return Recovery()


class FixedClock(Clock):
    def now(self) -> datetime:
        return T0


def chain_workflow(size: int) -> str:
    """root -> c0, c1, c2; c2 -> x0 -> x1 -> ... : ``size`` tasks, root's out-degree is 3."""
    lines = ["name: chain", "project: analytics", "tasks:", "  root: {type: shell, command: echo}"]
    lines += [f"  c{i}: {{type: shell, command: echo, depends_on: [root]}}" for i in range(3)]
    previous = "c2"
    for i in range(size - 4):
        lines.append(f"  x{i}: {{type: shell, command: echo, depends_on: [{previous}]}}")
        previous = f"x{i}"
    return "\n".join(lines) + "\n"


def completion_requests(env: Env, size: int) -> Counter[str]:
    """The real Scheduler on DynamoStore: trigger a ``size``-task run, dispatch its root, and
    count the requests that applying the root's result makes."""
    dispatcher = RecordingDispatcher()
    scheduler = Scheduler(env.store, env.store, dispatcher, FixedClock())
    scheduler.apply(chain_workflow(size))
    run, created = scheduler.trigger("analytics", "chain", run_id=f"chain-{size}")
    assert created
    assert scheduler.dispatch_ready() == 1
    assert dispatcher.started == [f"chain-{size}/root/1"]
    env.requests.clear()

    scheduler.on_finished(
        [Finished(run.id, "root", 1, AttemptResult(AttemptStatus.SUCCEEDED), log="s3://l")]
    )

    counted = env.requests.ops()
    # the run Queries read the run's own two items, never its tasks; one more reads the
    # dependency waits on the workflow (a task's end wakes the items naming it): one key
    for name, params in env.requests.calls:
        if name == "Query":
            values = params["ExpressionAttributeValues"]
            if ":prefix" in values:
                assert values[":prefix"] == {"S": "R"}
            else:
                assert set(values) == {":pk"}
                assert values[":pk"]["S"].endswith("#analytics#chain")
    queued = {t.task_id for t in env.store.get_tasks(run.id) if t.state is TaskState.QUEUED}
    assert queued == {"c0", "c1", "c2"}
    scheduler.pause(run.id)  # its queued children are not the next measurement's business
    return counted


@pytest.mark.scale
@pytest.mark.slow
def test_a_task_completion_costs_the_same_requests_in_a_big_run(env: Env) -> None:
    """Invariant 3 on the real service: applying one result with out-degree 3 makes the same
    requests in a 10-task run as in a run of BIG tasks, and reads no run-sized collection."""
    small = completion_requests(env, 10)
    big = completion_requests(env, BIG)

    assert big == small
    # get_task; the run (its R and RC items: which version it pinned); the turn's decision
    # (the task's conditional transition, with the attempt's end recorded on the task item,
    # and the counters' ADD) as one transaction; per child one record_upstream and one conditional move (3 children); the
    # retirement of the task's propagation intent; the dependency tasks waiting on the
    # workflow (one Query of one key: none here); the run again (has every task ended?)
    assert big == {
        "GetItem": 1,
        "Query": 3,
        "TransactWriteItems": 1,
        "UpdateItem": 3 + 3 + 1,
    }


def test_claiming_a_task_is_one_conditional_update(env: Env) -> None:
    env.store.create_run(a_run("r", 1), [TaskInstance("r", "a", TaskState.QUEUED)], None)
    queued = env.store.get_task("r", "a")
    env.requests.clear()

    claimed = queued.with_(state=TaskState.RUNNING, attempt=1, started_at=T0)
    assert env.store.put_task(claimed, TaskState.QUEUED, 0) is True
    assert env.store.put_task(claimed, TaskState.QUEUED, 0) is False

    assert env.requests.ops() == {"UpdateItem": 2}
    condition = env.requests.calls[0][1]["ConditionExpression"]
    assert "attribute_exists(pk)" in condition
    assert env.store.running_tasks() == [claimed]


@pytest.mark.slow
def test_a_child_with_a_thousand_parents_counts_each_once_and_stays_small(env: Env) -> None:
    """Past UPS_MAX parents the child counts through marker items: every parent still counts
    exactly once, duplicates in either regime count nothing, the child item stays about 2 KB
    of set, and the cost per parent stays constant (so 10,000 parents cost 10 times this)."""
    parents = [f"p{i:04d}" for i in range(1_000)]
    env.store.create_run(a_run("fan", 2), [TaskInstance("fan", "join")], None)

    seen = []
    for parent in parents:
        after = env.store.record_upstream("fan", "join", parent, TaskState.SUCCEEDED)
        assert after is not None
        seen.append(after.upstream.succeeded)
    assert seen == list(range(1, 1_001))  # single writer: each count is exact
    for duplicate in (parents[7], parents[900]):  # one in the set, one past it
        assert env.store.record_upstream("fan", "join", duplicate, TaskState.FAILED) is None

    assert env.store.get_task("fan", "join").upstream == Upstream(succeeded=1_000)
    join = env.client.get_item(TableName=TABLE, Key=it.key("RUN#fan", "T#join"))["Item"]
    assert len(join["ups"]["BS"]) == it.UPS_MAX
    assert item_size(join) < 3_000
    # a plan that rewrites the child's upstream makes every parent count again
    child = env.store.get_task("fan", "join")
    reset = Plan(
        env.store.get_run("fan"), {"join": child.with_(upstream=Upstream())}, edges={"join": {}}
    )
    assert env.store.apply_plan(reset, RunState.RUNNING)
    for parent in (parents[7], parents[900]):
        assert env.store.record_upstream("fan", "join", parent, TaskState.SKIPPED) is not None
    assert env.store.get_task("fan", "join").upstream == Upstream(skipped=2)


# ---------------------------------------------------------------------------- apply_plan
def seed_running(env: Env, run_id: str, count: int) -> tuple[Run, list[TaskInstance]]:
    """A running run: a tenth of the tasks RUNNING, a tenth QUEUED, the rest WAITING."""
    tasks = []
    for i, task_id in enumerate(task_ids(count)):
        if i % 10 == 0:
            tasks.append(TaskInstance(run_id, task_id, TaskState.RUNNING, attempt=1, started_at=T0))
        elif i % 10 == 1:
            tasks.append(TaskInstance(run_id, task_id, TaskState.QUEUED))
        else:
            tasks.append(TaskInstance(run_id, task_id))
    run = a_run(run_id, count).with_(n_running=count // 10)
    assert env.store.create_run(run, tasks, None)
    return env.store.get_run(run_id), env.store.get_tasks(run_id)


def transaction_sizes(env: Env) -> list[int]:
    return [len(p["TransactItems"]) for n, p in env.requests.calls if n == "TransactWriteItems"]


def test_a_small_plan_is_one_transaction(env: Env) -> None:
    run, tasks = seed_running(env, "r", 20)
    env.requests.clear()

    plan = engine.stop(run, tasks, T0 + timedelta(minutes=1))
    assert env.store.apply_plan(plan, RunState.RUNNING) is True

    assert transaction_sizes(env) == [22]  # the run, its counters, 20 tasks
    assert env.store.get_run("r") == plan.run
    assert all(t.state is TaskState.STOPPED for t in env.store.get_tasks("r"))
    assert env.store.running_tasks() == []


@pytest.mark.scale
@pytest.mark.slow
@pytest.mark.timeout(900)  # moto parses each UpdateExpression slowly: 3 minutes at 10,000 tasks
def test_stopping_a_big_run_respects_the_transaction_limit(env: Env) -> None:
    run, tasks = seed_running(env, "big", BIG)
    env.requests.clear()

    plan = engine.stop(run, tasks, T0 + timedelta(minutes=1))
    assert env.store.apply_plan(plan, RunState.RUNNING) is True

    # the pending-plan check, the journal, the commit, reading the journal back, BIG / 100 chunks,
    # retiring the plan (its reference, then its items)
    assert env.requests.ops() == {
        "GetItem": 1,
        "BatchWriteItem": 2,
        "TransactWriteItems": 1 + BIG // 100,
        "Query": 2,
        "UpdateItem": 1,
    }
    sizes = transaction_sizes(env)
    assert max(sizes) == 100
    assert sizes[0] == 2  # the commit: the run and its counters
    assert sum(sizes) == 2 + BIG
    after = env.store.get_run("big")
    assert after == plan.run
    assert (after.state, after.n_done, after.n_running) == (RunState.STOPPED, BIG, 0)
    assert {t.state for t in env.store.get_tasks("big")} == {TaskState.STOPPED}
    assert env.store.running_tasks() == []
    assert env.store.queued_tasks(10) == []
    # the journal is gone: no plan items, no plan reference on the run
    items = raw_items(env, "RUN#big")
    assert not [i for i in items if i["sk"]["S"].startswith("P#")]
    assert "plan" not in next(i for i in items if i["sk"]["S"] == "R")
    assert (
        env.client.query(
            TableName=TABLE,
            IndexName="gsi2",
            KeyConditionExpression="gsi2pk = :p",
            ExpressionAttributeValues={":p": {"S": "PLANS"}},
        )["Items"]
        == []
    )


def rerun_plan(run: Run, tasks: list[TaskInstance]) -> Plan:
    """Every task back to the start: the first 300 QUEUED, the others WAITING (the task writes
    that leave a task QUEUED are applied last)."""
    fresh = {
        t.task_id: t.with_(
            state=TaskState.QUEUED if i < 300 else TaskState.WAITING,
            attempt_base=t.attempt,
            started_at=None,
            ended_at=None,
            error=None,
            upstream=Upstream(),
        )
        for i, t in enumerate(sorted(tasks, key=lambda t: t.task_id))
    }
    return Plan(
        run=run.with_(state=RunState.RUNNING, ended_at=None, n_done=0, n_failed=0, n_running=0),
        tasks=fresh,
        edges={task_id: {} for task_id in fresh},
    )


def test_a_journaled_plan_if_ended_at_is_refused_for_another_end_and_leaves_no_journal(
    env: Env,
) -> None:
    """A rerun too large for one transaction (a backfill's --rerun all of a 150-task run)
    is conditional on the end its decision saw in the journaled commit too: refused for
    another end (nothing written, the journal removed), applied for the one it saw."""
    run, tasks = seed_running(env, "big", 150)
    stop = engine.stop(run, tasks, T0 + timedelta(minutes=1))
    assert env.store.apply_plan(stop, RunState.RUNNING) is True
    stopped = env.store.get_run("big")
    assert stopped.ended_at == T0 + timedelta(minutes=1)
    before = env.store.get_tasks("big")
    plan = rerun_plan(stopped, before)
    env.requests.clear()

    assert env.store.apply_plan(plan, RunState.STOPPED, if_ended_at=T0) is False

    assert env.requests.ops()["BatchWriteItem"] > 0  # it was journaled, then refused
    assert env.store.get_run("big") == stopped
    assert env.store.get_tasks("big") == before
    assert not [i for i in raw_items(env, "RUN#big") if i["sk"]["S"].startswith("P#")]

    assert env.store.apply_plan(plan, RunState.STOPPED, if_ended_at=stopped.ended_at) is True
    assert env.store.get_run("big").state is RunState.RUNNING
    assert env.store.queued_tasks(1000) != []


@pytest.mark.parametrize("size", [20, 150], ids=["one transaction", "journaled"])
def test_a_plan_new_params_are_written_in_its_commit_and_only_there(env: Env, size: int) -> None:
    """A rerun giving its run new params (a sub-workflow child rerun whole) writes them in the
    transaction that commits the run's new state: one that dies after it (journaled: before
    any task chunk) has them with the reset; one refused has neither; a plan that gives no
    new params leaves the run's as they are."""
    # GIVEN a stopped run with params {region: eu}
    run, tasks = seed_running(env, "r", size)
    assert env.store.apply_plan(engine.stop(run, tasks, T0), RunState.RUNNING)
    stopped = env.store.get_run("r")
    plan = rerun_plan(stopped, env.store.get_tasks("r"))
    plan = replace(plan, run=plan.run.with_(params={"n": "2"}), new_params=True)
    # WHEN the plan is refused (another end), THEN the params stay
    assert env.store.apply_plan(plan, RunState.STOPPED, if_ended_at=T0 - timedelta(1)) is False
    assert env.store.get_run("r").params == stopped.params
    # WHEN it dies right after its commit (journaled: before the task chunks)
    if size > 100:
        _crash_at(env, "TransactWriteItems", 2)
        with pytest.raises(Crash):
            env.store.apply_plan(plan, RunState.STOPPED)
        env.requests.before.clear()
        env.clock.now += env.store.lease.total_seconds() + 1
    else:
        assert env.store.apply_plan(plan, RunState.STOPPED)
    # THEN the run has its new params with its new state, and every task is reset
    assert env.store.get_run("r") == plan.run
    assert env.store.get_run("r").params == {"n": "2"}
    assert {t.task_id: t for t in env.store.get_tasks("r")} == plan.tasks
    # AND a later plan that gives no new params (a stop) keeps them, even from a stale read
    stale = engine.stop(
        stopped.with_(state=RunState.RUNNING, plan_gen=env.store.get_run("r").plan_gen), [], T0
    )
    assert env.store.apply_plan(stale, RunState.RUNNING)
    assert env.store.get_run("r").params == {"n": "2"}


@pytest.mark.slow
@pytest.mark.parametrize("completed_by", ["get_run", "reconciler"])
def test_a_large_plan_that_dies_midway_is_completed_once(env: Env, completed_by: str) -> None:
    """At 500 tasks (5 chunks of 100) rather than 10,000 (100 chunks), to keep moto's time
    reasonable: the journal, the chunking and the replay do not depend on the size."""
    # GIVEN a stopped 500-task run
    size = 500
    run, tasks = seed_running(env, "big", size)
    assert env.store.apply_plan(engine.stop(run, tasks, T0), RunState.RUNNING)
    stopped = env.store.get_run("big")
    plan = rerun_plan(stopped, env.store.get_tasks("big"))
    # WHEN its rerun dies after the commit and 3 of 5 task chunks: the 2 chunks of resets
    # went first, then one of the 3 chunks that queue tasks
    _crash_at(env, "TransactWriteItems", 1 + 3 + 1)
    with pytest.raises(Crash):
        env.store.apply_plan(plan, RunState.STOPPED)
    env.requests.before.clear()
    # THEN the run is committed (RUNNING), every reset is in, some tasks are queued
    assert env.store.get_run("big").state is RunState.RUNNING
    states = Counter(t.state for t in env.store.get_tasks("big"))
    assert states == {TaskState.WAITING: size - 300, TaskState.QUEUED: 100, TaskState.STOPPED: 200}
    # AND a task queued by the applied chunks is claimed meanwhile
    queued = env.store.queued_tasks(1)[0]
    claimed = queued.with_(state=TaskState.RUNNING, attempt=queued.attempt + 1, started_at=T0)
    assert env.store.put_task(claimed, TaskState.QUEUED, queued.attempt)

    # WHEN the lease runs out and the plan is completed (by a reader, or the reconciler)
    env.clock.now += env.store.lease.total_seconds() + 1
    if completed_by == "get_run":
        assert env.store.get_run("big") == plan.run
    else:
        assert env.store.complete_pending_plans() == 1
        assert env.store.complete_pending_plans() == 0

    # THEN every task is as planned, except the claimed one: a replay does not re-queue it
    after = {t.task_id: t for t in env.store.get_tasks("big")}
    assert after[claimed.task_id] == claimed
    del after[claimed.task_id]
    assert after == {k: v for k, v in plan.tasks.items() if k != claimed.task_id}
    assert not [i for i in raw_items(env, "RUN#big") if i["sk"]["S"].startswith("P#")]


@pytest.mark.parametrize(
    "crash",
    [None, (1, False), (2, False), (2, True), (3, False), (3, True)],
    ids=["no crash", "before chunk 1", "before its retry", "after its retry", "before chunk 2",
         "after chunk 2"],
)  # fmt: skip
def test_a_large_stop_keeps_what_its_tasks_did_between_its_commit_and_its_writes(
    env: Env, crash: tuple[int, bool] | None
) -> None:
    """A journaled stop (150 tasks: 15 running, 15 queued, 120 waiting; chunks of 100 and
    50) after whose commit, before its task writes, a running task ends (succeeded, in
    another function) and a queued task is claimed (its next attempt runs): the ended task
    keeps its end, the claimed one is stopped at its new attempt (and killed), and the
    counters say what the tasks say - also when the writer dies at its n-th task
    transaction (before it was sent, or after it applied) and the reconciler completes the
    plan: the correction of each moved task is applied once."""
    # GIVEN a running 150-task run, and its stop decided from a read
    run, tasks = seed_running(env, "big", 150)
    plan = engine.stop(run, tasks, T0 + timedelta(minutes=1))
    read = {t.task_id: t for t in tasks}
    ended = next(t for t in tasks if t.state is TaskState.RUNNING)
    claimed = next(t for t in tasks if t.state is TaskState.QUEUED)
    store = env.store
    recovered: list[Plan] = []
    store.plan_recovered = lambda p: recovered.append(p) or True
    commit, transact = store._commit_plan, store.client.transact_write_items
    writes = {"n": 0, "armed": False}

    def commit_then_move(run_id: str, items: Any) -> list[str] | None:
        reasons = commit(run_id, items)
        if reasons is None:  # the ended task's turn and the claim, as the hot path writes them
            done = ended.with_(state=TaskState.SUCCEEDED, ended_at=T0 + timedelta(seconds=61))
            assert store.put_task(done, TaskState.RUNNING, ended.attempt)
            store.add_counters("big", done=1, running=-1)
            now = claimed.with_(state=TaskState.RUNNING, attempt=claimed.attempt + 1, started_at=T0)
            assert store.put_task(now, TaskState.QUEUED, claimed.attempt)
            store.add_counters("big", running=1)
            writes["armed"] = True
        return reasons

    def dying(**request: Any) -> Any:
        if not writes["armed"] or crash is None:
            return transact(**request)
        writes["n"] += 1
        at, after = crash
        if writes["n"] == at and not after:
            raise Crash(f"task transaction {at}")
        out = transact(**request)
        if writes["n"] == at:
            raise Crash(f"after task transaction {at}")
        return out

    # WHEN it is applied (and, if it dies, completed by the reconciler after the lease)
    with (
        patch.object(store, "_commit_plan", commit_then_move),
        patch.object(store.client, "transact_write_items", dying),
    ):
        if crash is None:
            assert store.apply_plan(plan, RunState.RUNNING)
        else:
            with pytest.raises(Crash):
                store.apply_plan(plan, RunState.RUNNING)
    if crash is not None:
        env.clock.now += store.lease.total_seconds() + 1
        assert store.complete_pending_plans() == 1
        assert store.complete_pending_plans() == 0

    # THEN the ended task kept its end, the claimed one is stopped at its new attempt, every
    # other task is stopped as planned, and the counters say what the tasks say
    after = {t.task_id: t for t in store.get_tasks("big")}
    assert after[ended.task_id].state is TaskState.SUCCEEDED
    restopped = after[claimed.task_id]
    assert (restopped.state, restopped.attempt) == (TaskState.STOPPED, claimed.attempt + 1)
    others = {k: v for k, v in after.items() if k not in (ended.task_id, claimed.task_id)}
    assert others == {k: v for k, v in plan.tasks.items() if k in others}
    assert set(others) == set(read) - {ended.task_id, claimed.task_id}
    got = store.get_run("big")
    assert got.state is RunState.STOPPED
    assert (got.n_done, got.n_failed, got.n_running) == (150, 0, 0)
    assert not [i for i in raw_items(env, "RUN#big") if i["sk"]["S"].startswith("P#")]
    # AND the claimed task's new attempt is killed: by the writer (``Plan.kill``), or by
    # the completion of a writer that died (``plan_recovered``)
    if crash is None:
        assert (claimed.task_id, claimed.attempt + 1) in {(t.task_id, t.attempt) for t in plan.kill}
    else:
        (completed,) = recovered
        again = completed.tasks[claimed.task_id]
        assert (again.state, again.attempt) == (TaskState.STOPPED, claimed.attempt + 1)


def test_a_plan_decided_from_tasks_a_pending_plan_half_wrote_is_refused(env: Env) -> None:
    # GIVEN a stopped 150-task run whose rerun (journaled) died after its commit and its
    # first chunk of task writes: the run is RUNNING, 50 of its tasks still stopped
    run, tasks = seed_running(env, "r", 150)
    assert env.store.apply_plan(engine.stop(run, tasks, T0), RunState.RUNNING)
    stopped = env.store.get_run("r")
    rerun = rerun_plan(stopped, env.store.get_tasks("r"))
    _crash_at(env, "TransactWriteItems", 3)
    with pytest.raises(Crash):
        env.store.apply_plan(rerun, RunState.STOPPED)
    env.requests.before.clear()
    # WHEN a stop is decided from a read then (before the lease runs out: the tasks half
    # written), and applied (which completes the pending rerun first)
    during = env.store.get_run("r")
    half = env.store.get_tasks("r")
    assert Counter(t.state for t in half)[TaskState.STOPPED] == 50
    late = engine.stop(during, half, T0 + timedelta(seconds=1))
    # THEN it is refused: it would stop only the tasks it saw reset, and leave the 50 it
    # saw stopped queued (by the completion) in a stopped run
    assert env.store.apply_plan(late, RunState.RUNNING) is False
    assert env.store.get_run("r") == rerun.run
    assert {t.task_id: t for t in env.store.get_tasks("r")} == rerun.tasks
    # AND decided again from a new read, it applies: every task stopped, the counters whole
    again = env.store.get_run("r")
    stop = engine.stop(again, env.store.get_tasks("r"), T0 + timedelta(seconds=1))
    assert env.store.apply_plan(stop, RunState.RUNNING)
    after = env.store.get_run("r")
    assert (after.state, after.n_done, after.n_running) == (RunState.STOPPED, 150, 0)
    assert {t.state for t in env.store.get_tasks("r")} == {TaskState.STOPPED}


def test_a_plan_refused_by_the_run_state_writes_nothing_even_when_journaled(env: Env) -> None:
    run, tasks = seed_running(env, "r", 150)
    plan = engine.stop(run, tasks, T0)
    before = sorted(map(str, raw_items(env, "RUN#r")))

    assert env.store.apply_plan(plan, RunState.PAUSED) is False

    assert sorted(map(str, raw_items(env, "RUN#r"))) == before


# ---------------------------------------------------------------------------- catalog
def big_workflow(random_commands: bool) -> str:
    lines = ["name: huge", "project: analytics", "tasks:"]
    for i in range(WORKFLOW_TASKS):
        command = secrets.token_urlsafe(96) if random_commands else f"echo task number {i}"
        lines.append(f"  t{i:05d}: {{type: shell, command: '{command}'}}")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@pytest.mark.parametrize("random_commands", [False, True], ids=["compressible", "incompressible"])
def test_a_10k_task_workflow_version_is_stored_compressed_and_chunked(
    env: Env, random_commands: bool
) -> None:
    source = big_workflow(random_commands)
    spec = load_workflow(source)
    assert len(source) > 400_000

    version, created = env.store.put_version(spec, source, T0)

    assert created
    assert env.store.get_version("analytics", "huge") == version
    assert version.document == spec.document
    assert version.source == source
    items = raw_items(env, "WF#analytics#huge")
    assert all(item_size(i) < 400_000 for i in items)
    stored = next(i for i in items if i["sk"]["S"] == "V#0000000001")
    if random_commands:  # too big even compressed: chunk items
        assert int(stored["chunks"]["N"]) >= 2
        assert "body" not in stored
    else:  # compressed into the version item itself
        assert "chunks" not in stored
        assert len(stored["body"]["B"]) < 300_000
    assert env.store.put_version(spec, source, T0) == (version, False)
    assert env.store.list_versions("analytics", "huge") == [version]


# ---------------------------------------------------------------------------- attempts
def test_attempts_expire_after_the_retention_and_nothing_else_does(env: Env) -> None:
    store = DynamoStore(TABLE, client=env.client, retention=timedelta(days=7))
    store.create_run(a_run("r", 1), [TaskInstance("r", "a")], None)
    store.start_attempt(Attempt("r", "a", 1, "running", T0))
    store.start_attempt(Attempt("r", "a", 2, "running", T0))
    ended = T0 + timedelta(hours=1)
    store.finish_attempt(Attempt("r", "a", 1, "succeeded", T0, ended_at=ended))

    items = {i["sk"]["S"]: i for i in raw_items(env, "RUN#r")}

    week = int(timedelta(days=7).total_seconds())
    assert int(items["A#a#000001"][TTL_ATTRIBUTE]["N"]) == int(ended.timestamp()) + week
    assert int(items["A#a#000002"][TTL_ATTRIBUTE]["N"]) == int(T0.timestamp()) + week
    assert [sk for sk, i in items.items() if TTL_ATTRIBUTE in i] == ["A#a#000001", "A#a#000002"]
    assert DynamoStore(TABLE, client=env.client).retention == timedelta(days=90)


def _end(store: DynamoStore, attempt: Attempt, task: TaskInstance) -> bool:
    """End ``attempt`` of running ``task`` through ``apply_end``, as the scheduler does, and
    record the end on its own when the transition does not apply (a stale report)."""
    ended = replace(task, state=TaskState.SUCCEEDED, ended_at=attempt.ended_at)
    decision = engine.Decision(
        task.run_id, (engine.TaskWrite(ended, TaskState.RUNNING, attempt.attempt),), done=1
    )
    applied = store.apply_end(decision, [attempt])
    if not applied:
        store.finish_late_attempt(attempt)
    return applied


def _running(store: DynamoStore, run_id: str, task_id: str, attempt: int) -> TaskInstance:
    before = store.get_task(run_id, task_id)
    running = replace(before, state=TaskState.RUNNING, attempt=attempt, started_at=T0)
    assert store.put_task(running, before.state, before.attempt)
    return running


def test_the_first_attempts_are_recorded_on_the_task_item_and_later_ones_in_rows(
    env: Env,
) -> None:
    """Attempts 1..HISTORY_ON_TASK whose end is the task's transition are recorded on the task
    item in that write (no attempt item); a later attempt (a retry or rerun beyond them), a
    timed-out end and a record over HISTORY_ENTRY_MAX bytes are attempt items as before. The
    readers (``list_attempts``, for a run and for a task) see every attempt either way."""
    store = env.store
    store.create_run(a_run("r", 3), [TaskInstance("r", t) for t in ("a", "b", "c")], None)
    ended = T0 + timedelta(minutes=1)
    log = "s3://logs/r/a/1.log"
    expected = []
    for number in range(1, it.HISTORY_ON_TASK + 3):  # two beyond the cap
        task = _running(store, "r", "a", number)
        attempt = Attempt(
            "r", "a", number, "succeeded", T0, ended_at=ended, exit_code=0, log=log,
            outputs={"n": number},
        )  # fmt: skip
        assert _end(store, attempt, task)
        expected.append(attempt)
    # a timed-out end and a large one: attempt items although their numbers are in the cap
    timed_out = Attempt("r", "b", 1, "timed_out", T0, ended_at=ended, error="timeout")
    assert _end(store, timed_out, _running(store, "r", "b", 1))
    large = Attempt("r", "c", 1, "failed", T0, ended_at=ended, error="x" * 1000, exit_code=1)
    assert _end(store, large, _running(store, "r", "c", 1))

    items = {i["sk"]["S"]: i for i in raw_items(env, "RUN#r")}
    on_task = {f"h{i}" for i in range(1, it.HISTORY_ON_TASK + 1)}
    assert on_task <= set(items["T#a"])
    assert not any(k.startswith("h") for k in items["T#b"]) | any(
        k.startswith("h") for k in items["T#c"]
    )
    rows = sorted(sk for sk in items if sk.startswith("A#"))
    beyond = [f"A#a#{n:06d}" for n in range(it.HISTORY_ON_TASK + 1, it.HISTORY_ON_TASK + 3)]
    assert rows == [*beyond, "A#b#000001", "A#c#000001"]
    # the task item grows by at most HISTORY_ON_TASK records of HISTORY_ENTRY_MAX bytes
    bare = {k: v for k, v in items["T#a"].items() if k not in on_task}
    assert item_size(items["T#a"]) - item_size(bare) <= it.HISTORY_ON_TASK * (
        it.HISTORY_ENTRY_MAX + 8
    )
    assert store.list_attempts("r") == [*expected, timed_out, large]
    assert store.list_attempts("r", "a") == expected
    assert store.list_attempts("r", "c") == [large]


def test_a_stale_end_of_an_attempt_recorded_on_its_task_changes_nothing(env: Env) -> None:
    """Of two ends of one attempt, the one whose transition the task took is its history: a
    later report (the runner's exit after a duplicate delivery) is recorded on its own, and
    the readers keep the first."""
    store = env.store
    store.create_run(a_run("r", 1), [TaskInstance("r", "a")], None)
    task = _running(store, "r", "a", 1)
    first = Attempt("r", "a", 1, "succeeded", T0, ended_at=T0 + timedelta(seconds=5))
    late = replace(first, state="failed", exit_code=1, ended_at=T0 + timedelta(seconds=9))
    assert _end(store, first, task)
    assert not _end(store, late, task)
    assert store.list_attempts("r") == [first]
    assert store.list_attempts("r", "a") == [first]
    # recorded once: the late end wrote no attempt item (its write is conditional on the
    # task item not holding h1, in the same transaction)
    items = {i["sk"]["S"]: i for i in raw_items(env, "RUN#r")}
    assert not [sk for sk in items if sk.startswith("A#")]
    assert it.history_entry(first) == items["T#a"]["h1"]
    # a late end of an attempt the task item does not hold is an attempt item, once
    second = _running(store, "r", "a", 3)
    third = replace(first, attempt=3)
    assert _end(store, third, second)
    store.finish_late_attempt(replace(third, state="failed"))
    assert store.list_attempts("r", "a") == [first, third]


def test_an_attempt_without_a_transition_of_its_own_is_an_attempt_item(env: Env) -> None:
    """``apply_end`` given an end whose task has no transition from that attempt in the
    decision writes it as an attempt item first (so it is recorded whatever the decision)."""
    store = env.store
    store.create_run(a_run("r", 2), [TaskInstance("r", "a"), TaskInstance("r", "b")], None)
    attempt = Attempt("r", "a", 1, "succeeded", T0, ended_at=T0)
    other = engine.TaskWrite(TaskInstance("r", "b", TaskState.SKIPPED), TaskState.WAITING, 0)
    assert store.apply_end(engine.Decision("r", (other,)), [attempt])
    rows = [i["sk"]["S"] for i in raw_items(env, "RUN#r") if i["sk"]["S"].startswith("A#")]
    assert rows == ["A#a#000001"]
    assert store.list_attempts("r") == [attempt]


def test_the_end_of_an_attempt_that_never_started_is_recorded_in_its_one_write(
    env: Env,
) -> None:
    """A queued task that can never start goes from QUEUED to FAILED at its next attempt in
    one write (``engine.never_started``): ``apply_end`` records that attempt on the task item
    in it, not as an attempt item of its own written first; a stale one records nothing."""
    store = env.store
    store.create_run(a_run("r", 1), [TaskInstance("r", "a", TaskState.QUEUED)], None)
    spec = load_workflow('name: w\ntasks:\n  a: {type: shell, command: "true", pool: gone}\n')
    queued = store.get_task("r", "a")
    decision, made = engine.never_started(
        spec, queued, "pool 'gone' does not exist", T0, intent=True
    )
    end = Attempt("r", "a", 1, "failed", T0, ended_at=T0, error="pool 'gone' does not exist")
    env.requests.clear()
    assert store.apply_end(decision, [end])
    writes = [name for name, _ in env.requests.calls if name != "GetItem"]
    assert writes == ["TransactWriteItems"]  # the task item and the run's counters
    items = {i["sk"]["S"]: i for i in raw_items(env, "RUN#r")}
    assert not [sk for sk in items if sk.startswith("A#")]
    assert it.history_entry(end) == items["T#a"]["h1"]
    assert store.get_task("r", "a") == made.task
    assert store.list_attempts("r") == [end]
    run = store.get_run("r")
    assert (run.n_done, run.n_failed, run.n_running) == (1, 1, 0)
    assert store.pending_propagations(10) == []  # a has no children: no intent to leave
    # the same write again (a redelivery after it applied) is stale and writes nothing
    assert not store.apply_end(decision, [end])
    assert store.list_attempts("r") == [end]


_NEVER_STARTED = load_workflow(
    'name: w\ntasks:\n  a: {type: shell, command: "true", pool: gone}\n'
    '  b: {type: shell, command: "true", pool: gone}\n'
)


@pytest.mark.parametrize(
    ("attempt", "error"),
    [(0, "x" * 450), (2, "pool 'gone' does not exist")],
    ids=["too long for the task item", "beyond the attempts the task item holds"],
)
def test_a_never_started_end_that_cannot_go_on_its_task_item_is_written_with_its_write(
    env: Env, attempt: int, error: str
) -> None:
    """An end too long for the task item, or of an attempt past those it holds, goes in an
    attempt item; for an attempt that never started that item is written in the same
    transaction as the task's write, never before it: a stale write (an operator stopped the
    task meanwhile) records no attempt, and a crash before the write leaves none either (a
    failed record of the next attempt would otherwise stay, and win over that attempt's real
    end when it runs: attempt items take their first end)."""
    store = env.store
    store.create_run(
        a_run("r", 1), [TaskInstance("r", "a", TaskState.QUEUED, attempt=attempt)], None
    )
    queued = store.get_task("r", "a")  # what the failing turn read
    decision, made = engine.never_started(_NEVER_STARTED, queued, error, T0, intent=True)
    end = Attempt("r", "a", attempt + 1, "failed", T0, ended_at=T0, error=error)

    def crash(params: dict[str, Any]) -> None:
        raise Crash()

    env.requests.before["TransactWriteItems"] = crash
    with pytest.raises(Crash):
        store.apply_end(decision, [end])
    env.requests.before.clear()
    assert store.list_attempts("r") == []
    # meanwhile an operator stops the task: the write is stale and records nothing
    assert store.put_task(
        queued.with_(state=TaskState.STOPPED, ended_at=T0), TaskState.QUEUED, attempt
    )
    assert not store.apply_end(decision, [end])
    assert store.list_attempts("r") == []
    # the same write on the task still queued: applied, its attempt recorded once
    assert store.put_task(queued, TaskState.STOPPED, attempt)
    env.requests.clear()
    assert store.apply_end(decision, [end])
    assert [name for name, _ in env.requests.calls if name != "GetItem"] == ["TransactWriteItems"]
    assert store.get_task("r", "a") == made.task
    assert store.list_attempts("r") == [end]


@pytest.mark.parametrize("error", ["gone", "x" * 450], ids=["on the task item", "an item"])
def test_apply_each_records_the_ends_of_attempts_that_never_started(env: Env, error: str) -> None:
    """``apply_each`` of never-started ends records each one's attempt (the next, not the one
    its write expects), each in its own write's transaction."""
    store = env.store
    store.create_run(a_run("r", 2), [TaskInstance("r", t, TaskState.QUEUED) for t in "ab"], None)
    decisions, ends = [], []
    for t in "ab":
        decision, _ = engine.never_started(
            _NEVER_STARTED, store.get_task("r", t), error, T0, intent=False
        )
        decisions.append(decision)
        ends.append(Attempt("r", t, 1, "failed", T0, ended_at=T0, error=error))
    assert store.apply_each(decisions, ends) == [True, True]
    assert store.list_attempts("r") == ends


# ---------------------------------------------------------------------------- indexes
def test_global_queries_read_only_their_index_partitions(env: Env) -> None:
    """The global queries are served by sparse index partitions: a finished 10-task run and a
    paused run's queued tasks are never read by the dispatcher's queries."""
    env.store.create_run(
        a_run("done", 10, RunState.SUCCEEDED),
        [TaskInstance("done", t, TaskState.SUCCEEDED, attempt=1) for t in task_ids(10)],
        None,
    )
    env.store.create_run(
        a_run("paused", 5, RunState.PAUSED),
        [TaskInstance("paused", t, TaskState.QUEUED) for t in task_ids(5)],
        None,
    )
    env.store.create_run(
        a_run("live", 2), [TaskInstance("live", t, TaskState.QUEUED) for t in "ab"], 4
    )
    env.requests.clear()

    offered = env.store.queued_tasks(10)

    assert [(t.run_id, t.task_id) for t in offered] == [("live", "a"), ("live", "b")]
    queries = [p for n, p in env.requests.calls if n == "Query"]
    assert [q["ExpressionAttributeValues"][":pk"]["S"] for q in queries] == [
        "RUNS#running",
        "Q#live",
    ]
    assert all("IndexName" in q for q in queries)
    assert env.requests.ops() == {"Query": 2, "BatchGetItem": 1}  # + the counters of "live"


def test_bad_priorities_are_refused() -> None:
    with pytest.raises(ValueError, match="priority"):
        it.priority_key(10**12)
    assert it.priority_key(5) < it.priority_key(0) < it.priority_key(-5)


def test_a_plan_journal_left_by_a_crash_before_its_commit_is_removed(env: Env) -> None:
    # GIVEN a large plan whose writer died after writing its journal, before the commit
    run, tasks = seed_running(env, "r", 150)
    _crash_at(env, "TransactWriteItems", 1)
    with pytest.raises(Crash):
        env.store.apply_plan(engine.stop(run, tasks, T0), RunState.RUNNING)
    env.requests.before.clear()
    assert [i for i in raw_items(env, "RUN#r") if i["sk"]["S"].startswith("P#")]
    # THEN nothing visible changed
    assert env.store.get_run("r") == run
    assert env.store.get_tasks("r") == tasks
    # AND once its lease is over the reconciler deletes the journal, touching nothing else
    assert env.store.complete_pending_plans() == 0  # still within the lease
    env.clock.now += env.store.lease.total_seconds() + 1
    assert env.store.complete_pending_plans() == 1
    assert not [i for i in raw_items(env, "RUN#r") if i["sk"]["S"].startswith("P#")]
    assert env.store.get_run("r") == run
    # AND the operation can be applied again
    assert env.store.apply_plan(engine.stop(run, tasks, T0), RunState.RUNNING)
    assert env.store.get_run("r").state is RunState.STOPPED


def incompressible_workflow(tasks: int, seed: str) -> str:
    lines = ["name: wide", "project: analytics", "tasks:"]
    lines += [
        f"  t{i:05d}: {{type: shell, command: '{seed}{secrets.token_urlsafe(96)}'}}"
        for i in range(tasks)
    ]
    return "\n".join(lines) + "\n"


def test_two_writers_of_one_large_workflow_get_two_versions_and_no_stray_chunks(
    env: Env,
) -> None:
    first = incompressible_workflow(2_000, "a")
    second = incompressible_workflow(2_000, "b")
    other = DynamoStore(TABLE, client=env.client)
    raced = {"done": False}

    def the_other_writer_commits_first(_: dict[str, Any]) -> None:
        if not raced["done"]:
            raced["done"] = True
            other.put_version(load_workflow(second), second, T0)

    # WHEN a second writer commits version 1 while the first is about to
    env.requests.before["TransactWriteItems"] = the_other_writer_commits_first
    mine, created = env.store.put_version(load_workflow(first), first, T0)
    env.requests.before.clear()

    # THEN the first writer's content became version 2, the other's is version 1
    assert created
    assert mine.version == 2
    assert env.store.get_version("analytics", "wide", 1).source == second
    assert env.store.get_version("analytics", "wide", 2) == mine
    # AND the chunks of the attempt that lost the race were removed
    items = raw_items(env, "WF#analytics#wide")
    tokens = {i["token"]["S"] for i in items if "token" in i}
    chunk_tokens = {
        i["sk"]["S"].split("#C#")[1].split("#")[0] for i in items if "#C#" in i["sk"]["S"]
    }
    assert len(tokens) == 2
    assert chunk_tokens == tokens


def test_catalog_errors_name_what_is_missing(env: Env) -> None:
    with pytest.raises(NotFound, match="nothing"):
        env.store.set_paused("analytics", "nothing", True)
    env.store.set_cursor("analytics", "nothing", T0)  # no workflow: nothing to move
    assert env.store.get_cursor("analytics", "nothing") is None
    with pytest.raises(NotFound):
        env.store.record_upstream("no-run", "child", "parent", TaskState.SUCCEEDED)
    with pytest.raises(NotFound):
        env.store.add_counters("no-run", done=1)


FAN = """
name: fan
project: analytics
tasks:
  root: {type: shell, command: echo}
  a: {type: shell, command: echo, depends_on: [root]}
  b: {type: shell, command: echo, depends_on: [root]}
  c: {type: shell, command: echo, depends_on: [root]}
  join: {type: shell, command: echo, depends_on: [a, b, c]}
"""


def _index_entry(env: Env, run_id: str, task_id: str) -> tuple[str | None, str | None, bool]:
    item = env.client.get_item(TableName=TABLE, Key=it.key(it.run_pk(run_id), it.task_sk(task_id)))[
        "Item"
    ]
    return it.get_s(item, "gsi1pk"), it.get_s(item, "gsi2pk"), it.PROPAGATING in item


def fan_with_a_b_c_running(env: Env) -> tuple[Scheduler, RecordingDispatcher, Run]:
    """FAN's run ``fan-1`` with ``root`` succeeded and its children a, b and c dispatched."""
    dispatcher = RecordingDispatcher()
    scheduler = Scheduler(env.store, env.store, dispatcher, FixedClock())
    scheduler.apply(FAN)
    run, _ = scheduler.trigger("analytics", "fan", run_id="fan-1")
    scheduler.dispatch_ready()
    scheduler.on_finished([Finished(run.id, "root", 1, AttemptResult(AttemptStatus.SUCCEEDED))])
    scheduler.dispatch_ready()
    return scheduler, dispatcher, run


def writes_by_item(env: Env) -> list[tuple[str, list[str]]]:
    """The recorded writes: (operation, the sort keys of the items it writes)."""
    out = []
    for name, params in env.requests.calls:
        if name == "UpdateItem":
            out.append((name, [params["Key"]["sk"]["S"]]))
        elif name == "TransactWriteItems":
            out.append(
                (name, [next(iter(w.values()))["Key"]["sk"]["S"] for w in params["TransactItems"]])
            )
    return out


def counters_item(env: Env, run_id: str) -> dict[str, Any]:
    out = env.client.get_item(TableName=TABLE, Key=it.key(it.run_pk(run_id), it.COUNTERS_SK))
    item: dict[str, Any] = out["Item"]
    return item


def open_reservations(env: Env, run_id: str) -> tuple[list[str], int]:
    item = counters_item(env, run_id)
    return sorted(a for a in item if a.startswith("r_")), it.get_n(item, "nres")


def test_a_batch_of_ends_in_one_run_is_written_without_a_transaction(env: Env) -> None:
    """The advance function applies its batch of outcomes as one turn: the ends of one run
    are written each alone (no TransactWriteItems, which bills every item twice) between a
    reservation on the counters item and its settlement, and the run's counters come out as
    if each end had been applied alone; the single claim that follows (join) is one
    transaction with the counters, as before."""
    scheduler, dispatcher, run = fan_with_a_b_c_running(env)
    assert sorted(dispatcher.started) == ["fan-1/a/1", "fan-1/b/1", "fan-1/c/1", "fan-1/root/1"]
    env.requests.clear()

    ends = [Finished(run.id, t, 1, AttemptResult(AttemptStatus.SUCCEEDED)) for t in "abc"]
    scheduler.advance(ends)

    writes = writes_by_item(env)
    assert writes[:5] == [
        ("UpdateItem", ["RC"]),  # the reservation
        ("UpdateItem", ["T#a"]),
        ("UpdateItem", ["T#b"]),
        ("UpdateItem", ["T#c"]),
        ("UpdateItem", ["RC"]),  # the settlement
    ]
    assert [w for w in writes if w[0] == "TransactWriteItems"] == [
        ("TransactWriteItems", ["T#join", "RC"])
    ]
    assert "fan-1/join/1" in dispatcher.started
    after = env.store.get_run(run.id)
    assert (after.n_done, after.n_failed, after.n_running) == (4, 0, 1)
    assert open_reservations(env, run.id) == ([], 0)
    for task in "abc":  # each end tagged with its attempt
        item = env.client.get_item(TableName=TABLE, Key=it.key(it.run_pk(run.id), it.task_sk(task)))
        assert "z1" in item["Item"]


def test_claims_of_one_turn_are_written_without_a_transaction(env: Env) -> None:
    """The three children a result made ready are claimed each by its own UpdateItem (tagged
    ``k1``), the running counter raised by the reservation before them."""
    _, dispatcher = run_fan_root(env, None)

    claims = sorted(
        params["Key"]["sk"]["S"]
        for name, params in env.requests.calls
        if name == "UpdateItem" and "k1" in params["ExpressionAttributeNames"].values()
    )
    assert claims == ["T#c0", "T#c1", "T#c2"]
    # the one transaction is the root's end with the counters (a single write stays so)
    assert [w for w in writes_by_item(env) if w[0] == "TransactWriteItems"] == [
        ("TransactWriteItems", ["T#root", "RC"])
    ]
    assert sorted(dispatcher.started[1:]) == ["fan/c0/1", "fan/c1/1", "fan/c2/1"]
    assert env.store.get_run("fan").n_running == 3
    assert open_reservations(env, "fan") == ([], 0)


def ending(run: Run, task_id: str) -> engine.Decision:
    done = TaskInstance(run.id, task_id, TaskState.SUCCEEDED, attempt=1, started_at=T0, ended_at=T0)
    return engine.Decision(
        run.id, (engine.TaskWrite(done, TaskState.RUNNING, 1),), done=1, running=-1
    )


def test_a_stale_write_of_a_reservation_gives_its_counters_back(env: Env) -> None:
    """One of three ends is stale (its task no longer runs that attempt): the two others
    apply, and the settlement counts only them."""
    run, _ = seed_running(env, "r", 30)  # t00000, t00010, t00020 run attempt 1
    stale = ending(run, "t00010")
    assert env.store.apply(stale)

    applied = env.store.apply_each([ending(run, t) for t in ("t00000", "t00010", "t00020")])

    assert applied == [True, False, True]
    after = env.store.get_run("r")
    assert (after.n_done, after.n_running) == (3, 0)
    assert open_reservations(env, "r") == ([], 0)


def test_a_reservation_whose_writer_died_is_finished_once_its_lease_is_out(env: Env) -> None:
    """The writer dies after its reservation and its first task write. Within the lease the
    reservation stays open (and a plan is refused: 409); after it, ``get_run`` fences the
    writes that did not happen (the writer's late write then fails its condition), keeps the
    one that did, and settles: the counters match the tasks."""
    run, _ = seed_running(env, "r", 30)
    decisions = [ending(run, t) for t in ("t00000", "t00010", "t00020")]
    late: list[dict[str, Any]] = []

    def crash(params: dict[str, Any]) -> None:
        if params["Key"]["sk"]["S"] == "T#t00010":
            late.append(params)
            raise Crash("the writer dies")

    env.requests.before["UpdateItem"] = crash
    with pytest.raises(Crash):
        env.store.apply_each(decisions)
    del env.requests.before["UpdateItem"]

    assert len(open_reservations(env, "r")[0]) == 1
    assert env.store.get_run("r").n_done == 0  # the end written is not counted yet
    tasks = env.store.get_tasks("r")
    env.store.plan_wait = timedelta(seconds=0.2)  # the plan waits that long, then is refused
    assert env.store.apply_plan(engine.stop(run, tasks, T0), RunState.RUNNING) is False

    env.clock.now += env.store.lease.total_seconds() + 1
    after = env.store.get_run("r")

    states = {t.task_id: t.state for t in env.store.get_tasks("r")}
    assert [states[t] for t in ("t00000", "t00010", "t00020")] == [
        TaskState.SUCCEEDED,
        TaskState.RUNNING,
        TaskState.RUNNING,
    ]
    assert (after.n_done, after.n_running) == (1, 2)
    assert open_reservations(env, "r") == ([], 0)
    with pytest.raises(env.client.exceptions.ConditionalCheckFailedException):
        env.client.update_item(**late[0])  # the writer's late write: fenced off
    assert env.store.get_task("r", "t00010").state is TaskState.RUNNING
    # alone, without the reservation's token, the same end applies
    assert env.store.apply(decisions[1])
    tasks = env.store.get_tasks("r")
    assert env.store.apply_plan(engine.stop(env.store.get_run("r"), tasks, T0), RunState.RUNNING)


def test_a_plan_waits_for_a_reservation_in_flight_and_then_commits(env: Env) -> None:
    """A stop arrives while a batch's writer is between its reservation and its settlement:
    the plan is not refused (a busy run would otherwise refuse every stop). It marks the
    counters item, waits for the settlement, and commits."""
    run, _ = seed_running(env, "r", 30)
    decisions = [ending(run, t) for t in ("t00000", "t00010", "t00020")]
    reserved, release = threading.Event(), threading.Event()

    def slow_writer(params: dict[str, Any]) -> None:
        if params["Key"]["sk"]["S"] == "T#t00010" and not reserved.is_set():
            reserved.set()
            assert release.wait(10)

    env.requests.before["UpdateItem"] = slow_writer
    writer = threading.Thread(target=env.store.apply_each, args=(decisions,))
    writer.start()
    assert reserved.wait(10)
    plan = engine.stop(run, env.store.get_tasks("r"), T0)  # read while the writer is inside
    threading.Timer(0.3, release.set).start()

    assert env.store.apply_plan(plan, RunState.RUNNING) is True

    writer.join(10)
    assert release.is_set()  # the commit came after the settlement
    assert open_reservations(env, "r") == ([], 0)
    assert "pw" not in counters_item(env, "r")  # the commit took the mark away
    after = env.store.get_run("r")
    assert after.state is RunState.STOPPED
    assert (after.n_done, after.n_running) == (30, 0)


def test_no_reservation_opens_while_a_plan_waits(env: Env) -> None:
    """While a plan's mark on the counters item is fresh, a batch's writes are refused a
    reservation (the caller then writes each alone, in a transaction), so the plan's wait
    ends; a mark left by a plan that gave up goes stale after ``plan_wait``."""
    run, _ = seed_running(env, "r", 30)
    env.client.update_item(
        TableName=TABLE,
        Key=it.key(it.run_pk("r"), it.COUNTERS_SK),
        UpdateExpression="SET pw = :now",
        ExpressionAttributeValues={":now": {"N": str(int(env.clock.now))}},
    )
    decisions = [ending(run, t) for t in ("t00000", "t00010", "t00020")]

    assert env.store.apply_each(decisions) == [False, False, False]
    assert open_reservations(env, "r") == ([], 0)
    assert {t.state for t in env.store.get_tasks("r", ["t00000", "t00010"])} == {TaskState.RUNNING}

    env.clock.now += env.store.plan_wait.total_seconds() + 1
    assert env.store.apply_each(decisions) == [True, True, True]
    assert open_reservations(env, "r") == ([], 0)
    assert env.store.get_run("r").n_done == 3


def test_a_settlement_after_a_recovery_changes_nothing(env: Env) -> None:
    """A writer that hung past its lease (not dead) finds its reservation finished by
    someone else: its remaining writes fail, its settlement is refused, and what it reports
    applied is what the counters count."""
    run, _ = seed_running(env, "r", 30)
    decisions = [ending(run, t) for t in ("t00000", "t00010", "t00020")]
    hung = {"once": True}

    def hang(params: dict[str, Any]) -> None:
        if params["Key"]["sk"]["S"] == "T#t00010" and hung.pop("once", False):
            env.clock.now += env.store.lease.total_seconds() + 1
            env.store.get_run("r")  # another process, meanwhile, finishes the reservation

    env.requests.before["UpdateItem"] = hang
    applied = env.store.apply_each(decisions)

    assert applied == [True, False, False]
    after = env.store.get_run("r")
    assert (after.n_done, after.n_running) == (1, 2)
    assert open_reservations(env, "r") == ([], 0)


def test_the_parents_of_one_child_that_end_in_one_batch_are_counted_in_one_write(
    env: Env,
) -> None:
    """a, b and c end in one batch of outcomes: their child ``join`` counts the three in one
    UpdateItem (not three), and is claimed in the same turn as before."""
    scheduler, dispatcher, run = fan_with_a_b_c_running(env)
    env.requests.clear()

    scheduler.advance(
        [Finished(run.id, t, 1, AttemptResult(AttemptStatus.SUCCEEDED)) for t in "abc"]
    )

    counts = [
        p
        for name, p in env.requests.calls
        if name == "UpdateItem" and p["Key"]["sk"]["S"] == "T#join"
    ]
    assert len(counts) == 1
    join = env.store.get_task(run.id, "join")
    assert (join.state, join.attempt) == (TaskState.RUNNING, 1)
    item = env.client.get_item(TableName=TABLE, Key=it.key(it.run_pk(run.id), it.task_sk("join")))
    assert len(item["Item"]["ups"]["BS"]) == 3
    assert it.get_n(item["Item"], "up_ok") == 3
    assert "fan-1/join/1" in dispatcher.started
    assert env.store.pending_propagations(10) == []


def test_a_group_count_with_a_parent_counted_before_counts_nothing(env: Env) -> None:
    """``record_upstream_group`` is all or none: with one of its parents counted already it
    writes nothing and returns None (each parent is then counted alone)."""
    env.store.create_run(a_run("r", 5), [TaskInstance("r", "c", TaskState.WAITING)], None)
    assert env.store.record_upstream("r", "c", "a", TaskState.SUCCEEDED) is not None
    group = [("a", TaskState.SUCCEEDED), ("b", TaskState.FAILED)]
    assert env.store.record_upstream_group("r", "c", group) is None
    assert env.store.record_upstream("r", "c", "b", TaskState.FAILED) is not None
    after = env.store.record_upstream_group(
        "r", "c", [("d", TaskState.SKIPPED), ("e", TaskState.SUCCEEDED)]
    )
    assert after is not None
    up = after.upstream
    assert (up.succeeded, up.failed, up.skipped) == (2, 1, 1)
    assert env.store.record_upstream("r", "c", "d", TaskState.SKIPPED) is None
    with pytest.raises(NotFound):
        env.store.record_upstream("r", "gone", "a", TaskState.SUCCEEDED)
    assert env.store.record_upstream_group("r", "gone", group) is None


def test_an_ended_attempt_keeps_its_running_entry_as_the_propagation_intent(env: Env) -> None:
    """An attempt that ends with children to tell keeps the gsi1 entry it had while it ran
    (one index write instead of a delete and a put elsewhere); ``pending_propagations``
    finds it there, ``running_tasks`` and the timer queries do not; retiring the intent
    removes the entry."""
    spec = load_workflow(FAN)
    running = TaskInstance("r", "root", TaskState.RUNNING, attempt=1, started_at=T0,
                           deadline=T0 + timedelta(minutes=5))  # fmt: skip
    env.store.create_run(a_run("r", 5), [running], None)
    before = _index_entry(env, "r", "root")
    assert before[0] is not None
    assert before[0].startswith("RUNNING#")

    made = engine.attempt_finished(
        spec, running, 1, AttemptResult(AttemptStatus.SUCCEEDED), T0, intent=True
    )
    assert made is not None
    env.requests.clear()
    assert env.store.apply(made[0])

    sent = env.requests.calls[0][1]["TransactItems"][0]["Update"]
    assert "gsi1pk" not in sent["ExpressionAttributeNames"].values()  # the key is left alone
    assert _index_entry(env, "r", "root") == (before[0], None, True)
    ended = env.store.get_task("r", "root")
    assert ended.propagating
    assert ended.state is TaskState.SUCCEEDED
    assert [t.task_id for t in env.store.pending_propagations(10)] == ["root"]
    assert env.store.running_tasks() == []
    assert env.store.expired_tasks(T0 + timedelta(hours=1), 10) == []
    assert env.store.next_wakeup() is None

    assert env.store.apply(engine.propagated(ended))
    assert _index_entry(env, "r", "root") == (None, None, False)
    assert env.store.pending_propagations(10) == []


def test_a_task_that_ends_without_running_carries_its_intent_in_a_running_partition(
    env: Env,
) -> None:
    """A child skipped or failed upstream (it never ran) gets an entry in a RUNNING partition
    with no time: after every deadline, so only ``pending_propagations`` sees it."""
    waiting = TaskInstance("r", "a", TaskState.WAITING)
    env.store.create_run(a_run("r", 5), [waiting], None)
    failed = waiting.with_(state=TaskState.UPSTREAM_FAILED, ended_at=T0, propagating=True)
    assert env.store.apply(
        engine.Decision("r", (engine.TaskWrite(failed, TaskState.WAITING, 0),), done=1)
    )

    entry = _index_entry(env, "r", "a")
    assert entry[0] is not None
    assert entry[0].startswith("RUNNING#")
    assert entry[2]
    assert [t.task_id for t in env.store.pending_propagations(10)] == ["a"]
    assert env.store.expired_tasks(T0 + timedelta(days=365), 10) == []
    assert env.store.running_tasks() == []


def fan_workflow(concurrency: int | None) -> str:
    """root -> c0, c1, c2 (with a run ``concurrency`` if given)."""
    lines = ["name: fan", "project: analytics", "tasks:", "  root: {type: shell, command: echo}"]
    lines += [f"  c{i}: {{type: shell, command: echo, depends_on: [root]}}" for i in range(3)]
    if concurrency is not None:
        lines.insert(2, f"concurrency: {concurrency}")
    return "\n".join(lines) + "\n"


def run_fan_root(env: Env, concurrency: int | None) -> tuple[Scheduler, RecordingDispatcher]:
    """Trigger the fan, start its root, then hand its success to ``advance`` (the AWS hot
    path), with the requests of that ``advance`` alone in ``env.requests``."""
    dispatcher = RecordingDispatcher()
    scheduler = Scheduler(env.store, env.store, dispatcher, FixedClock())
    scheduler.apply(fan_workflow(concurrency))
    run, _ = scheduler.trigger("analytics", "fan", run_id="fan")
    scheduler.advance([], runs=[run.id])
    assert dispatcher.started == ["fan/root/1"]
    env.requests.clear()
    scheduler.advance([Finished(run.id, "root", 1, AttemptResult(AttemptStatus.SUCCEEDED))])
    return scheduler, dispatcher


def queued_writes(env: Env) -> list[str]:
    """The writes of the recorded requests that put a task in its run's queue (gsi1 ``Q#``)."""
    reads = ("Query", "GetItem", "BatchGetItem")
    return [
        name for name, params in env.requests.calls if name not in reads and "Q#fan" in repr(params)
    ]


def test_advance_claims_a_child_in_the_turn_that_makes_it_ready(env: Env) -> None:
    """On DynamoDB, ``advance`` claims the children a result made ready straight from WAITING
    when their run has a slot for each: one attempt each, never a QUEUED write nor a queue
    index entry on the way (3 write units fewer per task), and the parent's propagation
    intent retired once they are claimed."""
    _, dispatcher = run_fan_root(env, None)

    assert sorted(dispatcher.started[1:]) == ["fan/c0/1", "fan/c1/1", "fan/c2/1"]
    tasks = {t.task_id: t for t in env.store.get_tasks("fan")}
    assert [(tasks[c].state, tasks[c].attempt) for c in ("c0", "c1", "c2")] == [
        (TaskState.RUNNING, 1)
    ] * 3
    assert not tasks["root"].propagating
    assert env.store.pending_propagations(10) == []
    assert queued_writes(env) == []
    assert env.store.get_run("fan").n_running == 3


def test_children_without_a_slot_for_each_queue_and_the_slots_are_filled_in_order(
    env: Env,
) -> None:
    """A run with ``concurrency: 2`` and three children made ready at once: they queue (no
    slot for all), and the same ``advance`` claims two of them from the queue in its order;
    the third waits, QUEUED."""
    _, dispatcher = run_fan_root(env, 2)

    assert dispatcher.started[1:] == ["fan/c0/1", "fan/c1/1"]
    states = {t.task_id: t.state for t in env.store.get_tasks("fan")}
    assert [states[c] for c in ("c0", "c1", "c2")] == [
        TaskState.RUNNING,
        TaskState.RUNNING,
        TaskState.QUEUED,
    ]
    assert env.store.get_run("fan").n_running == 2
    assert env.store.pending_propagations(10) == []


@pytest.mark.parametrize("crash", [False, True], ids=["no crash", "writer dies after chunk 1"])
def test_a_large_stop_frees_once_the_slots_of_a_task_that_ended_while_it_is_written(
    env: Env, crash: bool
) -> None:
    """GIVEN 110 running tasks holding one slot each of pool wh, stopped by one journaled
    plan (too many to stop in its commit: their slots are freed there as read) WHEN one of
    them ends by its own turn (freeing its slot) between the commit and its chunk THEN the
    pool's ``used`` is 0, not -1: the chunk that finds the task ended takes back the second
    release, in the transaction that marks it handled (once, also when the writer dies and
    the reconciler completes the plan). (Before, its slot was freed twice.)"""
    from stratoflow.engine import Decision, PoolDelta, TaskWrite
    from stratoflow.engine.pools import settle_plan

    store = env.store
    store.set_pool("", "wh", 500)
    tasks = [
        TaskInstance("big", f"t{i:03d}", TaskState.RUNNING, attempt=1, started_at=T0,
                     pool="/wh", pool_slots=1)
        for i in range(110)
    ]  # fmt: skip
    assert store.create_run(a_run("big", 110).with_(n_running=110), tasks, None)
    for req in store._pool_updates([PoolDelta("/wh", 110)]):
        assert store._updated(req)
    run, read = store.get_run("big"), store.get_tasks("big")
    plan = settle_plan(engine.stop(run, read, T0 + timedelta(minutes=1)))
    ended = read[-1]  # written in the last chunk
    store.plan_recovered = lambda p: True
    commit, transact = store._commit_plan, store.client.transact_write_items
    state = {"armed": False, "n": 0}

    def commit_then_end(run_id: str, items: Any) -> list[str] | None:
        reasons = commit(run_id, items)
        if reasons is None:  # its end, as the hot path writes it (its slot freed with it)
            done = ended.with_(state=TaskState.SUCCEEDED, ended_at=T0 + timedelta(seconds=61))
            assert store.apply(
                Decision("big", (TaskWrite(done, TaskState.RUNNING, 1),), done=1, running=-1,
                         pools=(PoolDelta("/wh", -1),))
            )  # fmt: skip
            state["armed"] = True
        return reasons

    def dying(**request: Any) -> Any:
        out = transact(**request)
        if state["armed"] and crash:
            state["n"] += 1
            if state["n"] == 1:
                raise Crash("after task transaction 1")
        return out

    with (
        patch.object(store, "_commit_plan", commit_then_end),
        patch.object(store.client, "transact_write_items", dying),
    ):
        if crash:
            with pytest.raises(Crash):
                store.apply_plan(plan, RunState.RUNNING)
        else:
            assert store.apply_plan(plan, RunState.RUNNING)
    if crash:
        env.clock.now += store.lease.total_seconds() + 1
        assert store.complete_pending_plans() == 1
        assert store.complete_pending_plans() == 0

    assert store.get_task("big", ended.task_id).state is TaskState.SUCCEEDED
    got = store.get_run("big")
    assert (got.state, got.n_done, got.n_running) == (RunState.STOPPED, 110, 0)
    pool = store.get_pool("/wh")
    assert pool is not None
    assert pool.used == 0


def task_writes(env: Env, task_id: str) -> int:
    """How many of the recorded writes write the task item ``task_id``."""
    return sum(f"T#{task_id}" in sks for _, sks in writes_by_item(env))


def counted_in(env: Env, run_id: str, task_id: str) -> tuple[int, int]:
    """The task item's ``up_ok`` count and the number of parents in its ``ups`` set."""
    item = env.client.get_item(TableName=TABLE, Key=it.key(it.run_pk(run_id), it.task_sk(task_id)))
    return it.get_n(item["Item"], "up_ok"), len(item["Item"].get("ups", {}).get("BS", []))


@pytest.mark.parametrize("concurrency", [None, 2], ids=["claimed", "one queued"])
def test_the_count_that_makes_a_child_ready_goes_in_its_claim(
    env: Env, concurrency: int | None
) -> None:
    """root's end makes c0, c1 and c2 ready (one parent each): its count in each goes in the
    write that claims the child, after one read of the three; or, without a slot for all
    (concurrency 2), in the write that queues it (then two are claimed from the queue).
    One write per child fewer: before, a count, then a claim or a queue write."""
    _, dispatcher = run_fan_root(env, concurrency)

    claimed = ["c0", "c1", "c2"] if concurrency is None else ["c0", "c1"]
    assert sorted(dispatcher.started[1:]) == [f"fan/{c}/1" for c in claimed]
    writes = [1, 1, 1] if concurrency is None else [2, 2, 1]  # queued, claimed from the queue
    assert [task_writes(env, c) for c in ("c0", "c1", "c2")] == writes
    reads = [p for name, p in env.requests.calls if name == "BatchGetItem" and "T#c0" in repr(p)]
    assert len(reads) == 1
    for c in ("c0", "c1", "c2"):
        assert counted_in(env, "fan", c) == (1, 1)
    assert env.store.get_task("fan", "c2").state is (
        TaskState.RUNNING if concurrency is None else TaskState.QUEUED
    )
    assert env.store.pending_propagations(10) == []


@pytest.mark.parametrize("crash", [False, True], ids=["", "dies at the count alone"])
def test_a_child_that_changed_since_it_was_read_is_counted_alone_and_claimed_once(
    env: Env, crash: bool
) -> None:
    """Between the read of root's children and the write that counts root in c0 and claims
    it, another process counts root in c0 (a duplicate delivery): the write does not apply
    and counts nothing; root is counted once, and c0 is decided again and claimed once.
    With ``crash``, the writer dies at the count it then makes alone: root's intent stays,
    and the redelivered outcome finishes the propagation."""
    dispatcher = RecordingDispatcher()
    scheduler = Scheduler(env.store, env.store, dispatcher, FixedClock())
    scheduler.apply(fan_workflow(None))
    run, _ = scheduler.trigger("analytics", "fan", run_id="fan")
    scheduler.advance([], runs=[run.id])
    armed = {"once": True}
    ended = Finished(run.id, "root", 1, AttemptResult(AttemptStatus.SUCCEEDED))

    def meanwhile(params: dict[str, Any]) -> None:
        if "T#c0" not in repr(params):
            return
        if ":c_digest" in repr(params) and armed.pop("once", False):
            assert env.store.record_upstream("fan", "c0", "root", TaskState.SUCCEEDED)
            armed["crash"] = crash
        elif ":c_digest" not in repr(params) and armed.pop("crash", False):
            raise Crash("at the count made alone")

    env.requests.before["UpdateItem"] = meanwhile
    if crash:
        with pytest.raises(Crash):
            scheduler.advance([ended])
        assert [t.task_id for t in env.store.pending_propagations(10)] == ["root"]
        scheduler = Scheduler(env.store, env.store, dispatcher, FixedClock())  # a new process
        scheduler.advance([ended])  # delivered again
    else:
        scheduler.advance([ended])
    scheduler.advance([], runs=[run.id])  # what it queued, if it queued it

    assert not armed  # the race happened
    assert dispatcher.started.count("fan/c0/1") == 1
    # (with the crash, c1 and c2 were claimed in the turn that died, before its dispatch:
    # the dispatcher's recovery starts them, as any claim a process died after)
    assert sorted(dispatcher.started[1:]) == (
        ["fan/c0/1"] if crash else ["fan/c0/1", "fan/c1/1", "fan/c2/1"]
    )
    for c in ("c0", "c1", "c2"):
        task = env.store.get_task("fan", c)
        assert (task.state, task.attempt) == (TaskState.RUNNING, 1)
        assert counted_in(env, "fan", c) == (1, 1)
    assert env.store.get_run("fan").n_running == 3
    assert env.store.pending_propagations(10) == []


def test_a_claim_decided_before_a_stop_and_rerun_does_not_apply_after_them(env: Env) -> None:
    """root's end reads c0; then the run is stopped and rerun from root (c0's counts reset
    to those read, its upstream generation moved); then the write that would count root in
    c0 and claim it: it must not apply (root runs again). c0 ends up claimed once, after
    root's second end, with root counted once."""
    dispatcher = RecordingDispatcher()
    scheduler = Scheduler(env.store, env.store, dispatcher, FixedClock())
    scheduler.apply(fan_workflow(None))
    run, _ = scheduler.trigger("analytics", "fan", run_id="fan")
    scheduler.advance([], runs=[run.id])
    armed: dict[str, bool] = {}

    def read(params: dict[str, Any]) -> None:
        if "T#c0" in repr(params):
            armed["once"] = True

    def meanwhile(params: dict[str, Any]) -> None:  # the request after the read of c0
        if armed.pop("once", False):
            other = Scheduler(env.store, env.store, RecordingDispatcher(), FixedClock())
            other.stop("fan")
            other.rerun("fan", from_task="root")
            armed["done"] = True

    env.requests.before["BatchGetItem"] = read
    for name in ("GetItem", "Query", "UpdateItem", "TransactWriteItems"):
        env.requests.before[name] = meanwhile
    scheduler.advance([Finished(run.id, "root", 1, AttemptResult(AttemptStatus.SUCCEEDED))])

    assert armed == {"done": True}  # the race happened
    env.requests.before.clear()
    c0 = env.store.get_task("fan", "c0")
    assert c0.state is TaskState.WAITING
    assert "fan/c0/1" not in dispatcher.started
    root = env.store.get_task("fan", "root")
    scheduler.advance([], runs=[run.id])  # root's second attempt
    root = env.store.get_task("fan", "root")
    assert root.state is TaskState.RUNNING
    scheduler.advance(
        [Finished(run.id, "root", root.attempt, AttemptResult(AttemptStatus.SUCCEEDED))]
    )
    c0 = env.store.get_task("fan", "c0")
    assert (c0.state, c0.attempt) == (TaskState.RUNNING, 1)
    assert dispatcher.started.count("fan/c0/1") == 1
    assert counted_in(env, "fan", "c0") == (1, 1)


def test_a_child_with_many_parents_is_counted_alone_without_a_read(env: Env) -> None:
    """A join of five parents (more than ``MERGE_MAX_PARENTS``): a parent's end counts in it
    alone, as before, and reads it not; the last count and the claim are two writes."""
    from stratoflow.service import MERGE_MAX_PARENTS

    parents = [f"p{i}" for i in range(MERGE_MAX_PARENTS + 1)]
    lines = ["name: wide", "project: analytics", "tasks:"]
    lines += [f"  {p}: {{type: shell, command: echo}}" for p in parents]
    lines.append(f"  j: {{type: shell, command: echo, depends_on: [{', '.join(parents)}]}}")
    dispatcher = RecordingDispatcher()
    scheduler = Scheduler(env.store, env.store, dispatcher, FixedClock())
    scheduler.apply("\n".join(lines) + "\n")
    run, _ = scheduler.trigger("analytics", "wide", run_id="wide")
    scheduler.advance([], runs=[run.id])
    env.requests.clear()
    for p in parents:  # each in a turn of its own
        scheduler.advance([Finished(run.id, p, 1, AttemptResult(AttemptStatus.SUCCEEDED))])

    assert not [p for name, p in env.requests.calls if name == "BatchGetItem" and "T#j" in repr(p)]
    assert task_writes(env, "j") == len(parents) + 1
    assert dispatcher.started[-1] == "wide/j/1"
    assert counted_in(env, "wide", "j") == (len(parents), len(parents))


def test_an_sdk_retry_of_a_claim_written_alone_that_had_applied_is_taken_as_applied(
    env: Env,
) -> None:
    """root's end makes c0, c1 and c2 ready: their claims are written each alone under a
    reservation (``apply_each``), c0's with root's count in it. c0's write applies but its
    response is lost, and the SDK's retry of it fails its condition (c0 has moved). The
    write carries the reservation's token in its tag: the writer sees its own write there,
    so c0 is dispatched in this turn and the run counts 3 running, not 2 (a claim taken as
    refused would leave c0 RUNNING, never started here, and a slot free too many)."""
    dispatcher = RecordingDispatcher()
    scheduler = Scheduler(env.store, env.store, dispatcher, FixedClock())
    scheduler.apply(fan_workflow(None))
    run, _ = scheduler.trigger("analytics", "fan", run_id="fan")
    scheduler.advance([], runs=[run.id])
    retried: list[str] = []

    def applied_then_retried(params: dict[str, Any]) -> None:
        if "T#c0" in repr(params) and ":tok" in repr(params) and not retried:
            retried.append("c0")
            env.client.meta.events.unregister("provide-client-params.dynamodb.*", env.requests.hook)
            try:  # the attempt that applied; the request about to be sent is the SDK's retry
                env.client.update_item(**params)
            finally:
                env.client.meta.events.register(
                    "provide-client-params.dynamodb.*", env.requests.hook
                )

    env.requests.before["UpdateItem"] = applied_then_retried
    scheduler.advance([Finished(run.id, "root", 1, AttemptResult(AttemptStatus.SUCCEEDED))])

    assert retried == ["c0"]
    assert sorted(dispatcher.started[1:]) == ["fan/c0/1", "fan/c1/1", "fan/c2/1"]
    assert env.store.get_run("fan").n_running == 3
    assert counted_in(env, "fan", "c0") == (1, 1)
    assert open_reservations(env, "fan") == ([], 0)
