"""A project's runs of a workflow on DynamoDB are read from a gsi3 partition of that project's
own (``RUNW#<project>#<workflow>``), and the runs older versions filed under the workflow
alone (``RUNW#<workflow>``, every project's runs together) are moved there by
``run_index_migration``, on moto.

Before, listing project A's runs of ``etl`` queried every project's runs of an ``etl`` and
filtered A's out: A paid read capacity (and waited) for B's runs, more as B ran more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws import handlers, run_index_migration
from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.adapters.aws.run_index_migration import SETTLE, RunIndexMigration
from stratoflow.engine import Run, RunState
from stratoflow.model._workflow import NAME_PATTERN
from stratoflow.ports import RunQuery
from stratoflow.service import Scheduler
from tests.fakes import FakeClock, RecordingDispatcher
from tests.faultinject import Faults, FaultyClient

T0 = datetime(2026, 12, 6, tzinfo=UTC)


def a_run(
    run_id: str, project: str, workflow: str, minute: int, state: RunState = RunState.SUCCEEDED
) -> Run:
    return Run(
        id=run_id, workflow=workflow, project=project, version=1, state=state, params={},
        logical_date=T0, created_at=T0 + timedelta(minutes=minute), trigger="manual",
        started_at=None if state is RunState.QUEUED else T0 + timedelta(minutes=minute),
    )  # fmt: skip


class Recorder:
    """A client that remembers each Query's request and what it evaluated (ScannedCount)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.queries: list[tuple[dict[str, Any], int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, **request: Any) -> Any:
        out = self._client.query(**request)
        self.queries.append((request, int(out["ScannedCount"])))
        return out

    def scanned(self, index: str) -> int:
        return sum(count for request, count in self.queries if request.get("IndexName") == index)

    def partitions(self, index: str) -> set[str]:
        return {
            request["ExpressionAttributeValues"][":pk"]["S"]
            for request, _ in self.queries
            if request.get("IndexName") == index
        }


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client(
            "dynamodb", region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip


made = 0


def a_table(client: Any) -> str:
    global made
    made += 1
    name = f"state-{made}"
    create_table(client, name, stream=False)
    return name


def put_old(client: Any, table: str, run: Run) -> None:
    """The run's items as a version before 2026-12-06 committed them: gsi3 by workflow alone."""
    item = it.run_attributes(run, None)
    item["gsi3pk"] = {"S": f"RUNW#{run.workflow}"}
    client.put_item(TableName=table, Item=item)
    client.put_item(TableName=table, Item=it.counters_item(run))


def ids(runs: list[Run]) -> list[str]:
    return [r.id for r in runs]


def pages(store: DynamoStore, query: RunQuery) -> list[list[str]]:
    """Every page of a listing, by ``before`` (each page's last run), as the API pages."""
    found: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = ids(store.list_runs(replace(query, before=cursor)))
        if not page:
            return found
        found.append(page)
        cursor = page[-1]
        assert len(found) <= 100


def mark_migrated(client: Any, table: str) -> None:
    """The migration's item as its end leaves it."""
    item = {**run_index_migration.MIGRATION_KEY, "done": {"BOOL": True}}
    client.put_item(TableName=table, Item=item)


def migrate_to_the_end(client: Any, table: str, clock: list[float]) -> int:
    """Steps of a fresh migrator until it is done, the settle time passing between them."""
    moved = 0
    for _ in range(10):
        progress = RunIndexMigration(client, table, clock=lambda: clock[0]).step()
        moved += progress.moved
        if progress.done:
            return moved
        clock[0] += SETTLE
    raise AssertionError("the migration did not end")


# ------------------------------------------------------------------ the partition key
NAMES = st.from_regex(NAME_PATTERN.removesuffix("$") + r"\Z", fullmatch=False).filter(
    lambda name: 0 < len(name) <= 128
)


def test_a_name_cannot_hold_the_separator() -> None:
    # what makes RUNW#<project>#<workflow> one key per pair: the first '#' ends the project
    assert re.fullmatch(NAME_PATTERN, "a#b") is None


@given(NAMES, NAMES, NAMES, NAMES)
def test_no_two_project_workflow_pairs_share_a_partition(
    p1: str, w1: str, p2: str, w2: str
) -> None:
    same_key = it.runs_of_workflow_pk(p1, w1) == it.runs_of_workflow_pk(p2, w2)
    assert same_key == ((p1, w1) == (p2, w2))
    # nor is any the partition of the older layout, which the migration empties
    assert it.runs_of_workflow_pk(p1, w1) != it.legacy_runs_of_workflow_pk(w2)


# ------------------------------------------------------------------ the listing
def test_a_projects_listing_of_a_workflow_reads_its_own_runs_only(client: Any) -> None:
    # GIVEN project A's runs of etl, interleaved with many of B's newer and older ones, and
    # A's runs of another workflow
    table = a_table(client)
    store = DynamoStore(table, client=client)
    a_ids = [f"a-{i}" for i in range(5)]
    for i, run_id in enumerate(a_ids):
        assert store.create_run(a_run(run_id, "a", "etl", minute=10 * i), [], None)
        assert store.create_run(a_run(f"a-other-{i}", "a", "other", minute=10 * i + 1), [], None)
        for j in range(8):  # B runs etl far more often
            assert store.create_run(a_run(f"b-{i}-{j}", "b", "etl", minute=10 * i + j), [], None)
    assert store.create_run(a_run("b-newest", "b", "etl", minute=100), [], None)
    mark_migrated(client, table)  # a stack with no run of the older layout
    recorder = Recorder(client)
    listed = DynamoStore(table, client=recorder)  # type: ignore[arg-type]

    # WHEN A lists its runs of etl, two a page, through every page
    got = pages(listed, RunQuery(project="a", workflow="etl", limit=2))

    # THEN it gets its own runs, newest first, each once
    assert got == [["a-4", "a-3"], ["a-2", "a-1"], ["a-0"]]
    # AND the index evaluated A's runs of etl and nothing else: no run of B's was read
    assert recorder.partitions("gsi3") == {"RUNW#a#etl"}
    assert recorder.scanned("gsi3") == len(a_ids)
    # AND B's listing is B's, whatever the state filter
    assert ids(listed.list_runs(RunQuery(project="b", workflow="etl", limit=1))) == ["b-newest"]
    assert listed.list_runs(RunQuery(project="b", workflow="etl", state=RunState.RUNNING)) == []
    assert len(listed.list_runs(RunQuery(project="b", workflow="etl", limit=100))) == 41


def test_a_state_write_moves_an_old_run_to_its_projects_partition(client: Any) -> None:
    # GIVEN a run an older version filed under its workflow alone
    table = a_table(client)
    run = a_run("old", "a", "etl", 0, RunState.RUNNING)
    put_old(client, table, run)
    store = DynamoStore(table, client=client)
    # WHEN this version writes its state
    assert store.put_run(run.with_(state=RunState.SUCCEEDED, ended_at=T0), RunState.RUNNING)
    # THEN it is in its project's partition: the migration has nothing left to do for it
    item = client.get_item(TableName=table, Key=it.key("RUN#old", "R"))["Item"]
    assert item["gsi3pk"] == {"S": "RUNW#a#etl"}
    assert item["st"] == {"S": "succeeded"}


# ------------------------------------------------------------------ the migration
OLD_RUNS = [  # written by an older version, in every state partition there is
    a_run("a-1", "a", "etl", 0, RunState.SUCCEEDED),
    a_run("b-1", "b", "etl", 1, RunState.RUNNING),
    a_run("a-2", "a", "etl", 2, RunState.FAILED),
    a_run("b-2", "b", "etl", 3, RunState.QUEUED),
    a_run("a-3", "a", "etl", 4, RunState.PAUSED),
    a_run("b-3", "b", "etl", 5, RunState.SUCCEEDED),
    a_run("a-o", "a", "other", 6, RunState.STOPPED),
    a_run("a-4", "a", "etl", 7, RunState.SUCCEEDED),
]
NEW_RUN = a_run("a-5", "a", "etl", 8, RunState.RUNNING)  # written by this version
EXPECTED = {
    ("a", "etl"): ["a-5", "a-4", "a-3", "a-2", "a-1"],
    ("b", "etl"): ["b-3", "b-2", "b-1"],
    ("a", "other"): ["a-o"],
}


def seeded(client: Any) -> tuple[str, dict[str, Any]]:
    """A table with OLD_RUNS in the older layout and NEW_RUN; its items by key, as written."""
    table = a_table(client)
    for run in OLD_RUNS:
        put_old(client, table, run)
    assert DynamoStore(table, client=client).create_run(NEW_RUN, [], None)
    return table, items_by_key(client, table)


def items_by_key(client: Any, table: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for page in client.get_paginator("scan").paginate(TableName=table):  # the test's view
        for item in page["Items"]:
            found[f"{item['pk']['S']}/{item['sk']['S']}"] = item
    return found


def assert_listed(client: Any, table: str) -> None:
    """Every run in its project's listing, newest first, once, through pages of two (a fresh
    store: no container's memory of the migration's end)."""
    store = DynamoStore(table, client=client)
    for (project, workflow), expected in EXPECTED.items():
        query = RunQuery(project=project, workflow=workflow, limit=2)
        assert [r for page in pages(store, query) for r in page] == expected
        assert ids(store.list_runs(RunQuery(project=project, workflow=workflow))) == expected


def assert_migrated(client: Any, table: str, written: dict[str, Any]) -> None:
    """Each run item in its project's partition and otherwise as written; nothing else made
    or changed but the migration's own item."""
    now = items_by_key(client, table)
    mine = f"{run_index_migration.MIGRATION_KEY['pk']['S']}/M"
    assert now.pop(mine)["done"] == {"BOOL": True}
    assert set(now) == set(written)
    for name, item in now.items():
        before = dict(written[name])
        if name.endswith("/R"):
            project, workflow = item["project"]["S"], item["workflow"]["S"]
            before["gsi3pk"] = {"S": f"RUNW#{project}#{workflow}"}
        assert item == before, name


def test_the_migration_moves_every_old_run_and_runs_twice_harmlessly(client: Any) -> None:
    table, written = seeded(client)
    assert_listed(client, table)  # before: the readers read the older partitions too
    clock = [0.0]

    assert migrate_to_the_end(client, table, clock) == len(OLD_RUNS)

    assert_migrated(client, table, written)
    assert_listed(client, table)
    assert migrate_to_the_end(client, table, clock) == 0  # done: a second run changes nothing
    assert_migrated(client, table, written)


@pytest.mark.parametrize("late", [False, True], ids=["before", "after"])
def test_the_migration_loses_and_doubles_nothing_whatever_write_fails(
    client: Any, late: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pages of two runs: the position is saved inside a state partition, not only between
    monkeypatch.setattr(run_index_migration, "PAGE", 2)
    # GIVEN the number of writes a migration without a fault makes
    baseline = Faults(armed=True)
    table, _ = seeded(client)
    migrate_to_the_end(FaultyClient(client, baseline), table, [0.0])
    assert baseline.count > len(OLD_RUNS)

    for k in range(1, baseline.count + 1):
        # WHEN write k fails (before it applies, or after: the caller saw an error)
        table, written = seeded(client)
        faults = Faults(at=k, after=late, armed=True)
        clock = [0.0]
        with pytest.raises(ClientError):
            migrate_to_the_end(FaultyClient(client, faults), table, clock)
        assert faults.fired, k
        # THEN meanwhile every run is listed, once, in its project's listing
        assert_listed(client, table)
        # AND the next migrator (a new container) ends the migration with nothing lost or
        # doubled, and nothing changed but the runs' index key
        migrate_to_the_end(client, table, clock)
        assert_migrated(client, table, written)
        assert_listed(client, table)


def interleaved(client: Any, before_move: Callable[[dict[str, Any]], None]) -> Any:
    """A client whose first update of a run item lets ``before_move`` write first."""

    class Interleaved(Recorder):
        fired = False

        def update_item(self, **request: Any) -> Any:
            if not self.fired and request["Key"]["sk"]["S"] == "R":
                self.fired = True
                before_move(request)
            return self._client.update_item(**request)

    return Interleaved(client)


@pytest.mark.parametrize("writer", ["this version", "an older version", "a delete"])
def test_the_migration_never_overwrites_what_a_writer_did_meanwhile(
    client: Any, writer: str
) -> None:
    # GIVEN a running run of the older layout
    table = a_table(client)
    run = a_run("r", "a", "etl", 0, RunState.RUNNING)
    put_old(client, table, run)
    store = DynamoStore(table, client=client)
    ended = run.with_(state=RunState.SUCCEEDED, ended_at=T0)

    def write(request: dict[str, Any]) -> None:
        if writer == "this version":
            assert store.put_run(ended, RunState.RUNNING)
        elif writer == "an older version":  # its state write left gsi3pk as it was
            client.update_item(
                TableName=table, Key=request["Key"], UpdateExpression="SET st = :s, gsi2pk = :p",
                ExpressionAttributeValues={":s": {"S": "succeeded"}, ":p": {"S": "RUNS#succeeded"}},
            )  # fmt: skip
        else:
            client.delete_item(TableName=table, Key=request["Key"])

    # WHEN the scheduler writes the run between the migration's read and its write
    migrate_to_the_end(interleaved(client, write), table, [0.0])

    # THEN the scheduler's write stands, and the run is in its project's partition
    item = client.get_item(TableName=table, Key=it.key("RUN#r", "R")).get("Item")
    if writer == "a delete":
        assert item is None  # not made again by the migration's update
        return
    assert item["st"] == {"S": "succeeded"}
    assert item["gsi3pk"] == {"S": "RUNW#a#etl"}
    assert ids(DynamoStore(table, client=client).list_runs(RunQuery(project="a", workflow="etl")))


def test_the_migration_ends_only_after_a_pass_begun_once_older_functions_are_gone(
    client: Any,
) -> None:
    # GIVEN a migration whose first pass has ended
    table = a_table(client)
    put_old(client, table, OLD_RUNS[0])
    clock = [0.0]
    assert not RunIndexMigration(client, table, clock=lambda: clock[0]).step().done
    # WHEN a function of the older version, still running, creates a run meanwhile
    put_old(client, table, OLD_RUNS[1])
    clock[0] += SETTLE / 2
    assert not RunIndexMigration(client, table, clock=lambda: clock[0]).step().done
    # THEN the pass that ends it, begun after the settle time, moves it too
    assert migrate_to_the_end(client, table, clock) == 1
    assert ids(DynamoStore(table, client=client).list_runs(RunQuery(project="b"))) == ["b-1"]
    item = client.get_item(TableName=table, Key=it.key("RUN#b-1", "R"))["Item"]
    assert item["gsi3pk"] == {"S": "RUNW#b#etl"}


def test_the_reconciler_moves_old_runs_then_stops_asking(client: Any) -> None:
    table = a_table(client)
    put_old(client, table, OLD_RUNS[0])
    clock = [0.0]
    recorder = Recorder(client)
    store = DynamoStore(table, client=recorder, clock=lambda: clock[0])  # type: ignore[arg-type]

    assert handlers.migrate_run_index(store) == 1
    while store.migrate_run_index().done is False:
        clock[0] += SETTLE
    assert handlers.migrate_run_index(store) is None
    recorder.queries.clear()
    assert ids(store.list_runs(RunQuery(project="a", workflow="etl"))) == ["a-1"]
    assert recorder.partitions("gsi3") == {"RUNW#a#etl"}  # the older partition is not read


class FakeContext:
    """The Lambda context as the reconciler reads it: the time its invocation has left."""

    def __init__(self, seconds_left: float) -> None:
        self.seconds_left = seconds_left

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds_left * 1000)


@pytest.mark.parametrize(
    ("left", "budget"),
    [
        (300.0, handlers.RUN_INDEX_STEP_SECONDS),  # a pass whose repairs were quick
        (50.0, 50.0 - handlers.RUN_INDEX_MARGIN_SECONDS),  # repairs that took most of it
        (handlers.RUN_INDEX_MARGIN_SECONDS, None),  # no time for a step: none
    ],
)
def test_the_reconcilers_step_takes_no_more_than_its_invocation_has_left(
    client: Any, monkeypatch: pytest.MonkeyPatch, left: float, budget: float | None
) -> None:
    """A step of the full budget begun with less than that left of the reconciler's 300 s
    ran the function into its timeout: killed mid-page, and before its retry wakes and
    kicks were sent. The step gets what is left, less a margin for its last page and the
    rest of the pass."""
    table = a_table(client)
    put_old(client, table, OLD_RUNS[0])
    store = DynamoStore(table, client=client)
    scheduler = Scheduler(store, store, RecordingDispatcher(), FakeClock(T0))
    asked: list[float] = []
    step = store.migrate_run_index

    def recorded(seconds: float = 60.0) -> run_index_migration.Progress:
        asked.append(seconds)
        return step(seconds)

    monkeypatch.setattr(store, "migrate_run_index", recorded)
    result = handlers.reconcile(scheduler, context=FakeContext(left))
    if budget is None:
        assert asked == []
        assert "runs_rekeyed" not in result
    else:
        assert asked == [pytest.approx(budget)]
        assert result["runs_rekeyed"] == 1
