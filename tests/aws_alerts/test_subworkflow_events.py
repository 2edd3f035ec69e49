"""The lifecycle events of a child run repaired on its own and of the parent whose task takes
its new end are the same on both runtimes: the local scheduler's own (over SQLite) and, on
AWS, those the lifecycle function derives from the state table's stream (moto). Each event is
compared by kind, run (parent or child) and task, counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.adapters.aws.lifecycle import StreamPublished, derive
from stratoflow.adapters.aws.projector import StreamRecord
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import AttemptResult, AttemptStatus, RunState, TaskState
from stratoflow.engine import subworkflow as rules
from stratoflow.ports import EventSink, StateStore
from stratoflow.service import Finished, Scheduler
from tests.aws_projector.conftest import REGION, Stream
from tests.fakes import FakeClock, RecordingDispatcher
from tests.unit.test_subworkflow import CHILD, PARENT, T0

Event = tuple[str, str, str | None]  # kind, "parent" or "child", task


class Recorded(EventSink):
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        self.seen.append((kind, dict(detail)))


def drive(scheduler: Scheduler, store: StateStore, repair: str) -> tuple[str, str]:
    """A run of ``parent`` that ends as the child's load first says, then the child repaired
    on its own: "mark" (load failed, then marked succeeded), "rerun" (load failed, then
    passes on the child's rerun), "rerun_all_fails" (all succeeded, then the child rerun
    whole fails). Returns (parent run, child run)."""
    dispatcher = scheduler.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    clock = scheduler.clock
    assert isinstance(clock, FakeClock)
    load_fails = repair != "rerun_all_fails"

    def settle() -> None:
        scheduler.step()
        for _ in range(50):
            if not dispatcher.pending:
                return
            key, spec = next(iter(dispatcher.pending.items()))
            del dispatcher.pending[key]
            clock.advance(1)
            failing = spec.task_id == "load" and load_fails
            made = {"rows": "42"} if spec.task_id == "extract" else {}
            result = (
                AttemptResult(AttemptStatus.FAILED, error="exit 1")
                if failing
                else AttemptResult(AttemptStatus.SUCCEEDED, made)
            )
            scheduler.on_finished([Finished(*key, result)])
            scheduler.step()

    run, _ = scheduler.trigger("default", "parent", run_id="default.parent-1")
    settle()
    child = rules.child_run_id(run.id, "child", ("default", "load_region"))
    clock.advance(60)
    if repair == "mark":
        scheduler.mark(child, "load", TaskState.SUCCEEDED)
    elif repair == "rerun":
        load_fails = False
        scheduler.rerun(child)
    else:
        load_fails = True
        scheduler.rerun(child, all_tasks=True)
    settle()
    return run.id, child


def roles(parent: str, child: str) -> dict[str, str]:
    return {parent: "parent", child: "child"}


def local_events(tmp_path: Path, repair: str) -> Counter[Event]:
    store = SqliteStore(tmp_path / "state.db")
    sink = Recorded()
    try:
        scheduler = Scheduler(store, store, RecordingDispatcher(), FakeClock(T0), sink)
        scheduler.apply(CHILD)
        scheduler.apply(PARENT)
        parent, child = drive(scheduler, store, repair)
        final = store.get_run(parent).state
    finally:
        store.close()
    role = roles(parent, child)
    assert final is (RunState.FAILED if repair == "rerun_all_fails" else RunState.SUCCEEDED)
    return Counter((k, role[d["run_id"]], d.get("task_id")) for k, d in sink.seen)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",  # what moto's stream API needs
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def aws_events(repair: str) -> Counter[Event]:
    client = boto3.client("dynamodb", region_name=REGION)
    table = f"state-{repair}"
    create_table(client, table)
    store = DynamoStore(table, client=client)
    stream = Stream(client, table)
    scheduler = Scheduler(store, store, RecordingDispatcher(), FakeClock(T0), StreamPublished())
    scheduler.apply(CHILD)
    scheduler.apply(PARENT)
    parent, child = drive(scheduler, store, repair)
    role = roles(parent, child)
    made = [d for d in (derive(StreamRecord.parse(r)) for r in stream.read()) if d is not None]
    return Counter(
        (d.kind, role[d.run_id or d.detail["run_id"]], d.detail.get("task_id")) for d in made
    )


@pytest.mark.parametrize("repair", ["mark", "rerun", "rerun_all_fails"])
def test_a_repaired_child_and_its_parent_publish_the_same_events_on_both_runtimes(
    aws: None, tmp_path: Path, repair: str
) -> None:
    local = local_events(tmp_path, repair)
    assert aws_events(repair) == local
    # the parent ran again (or ended anew) on the child's new end: it says so
    if repair == "rerun_all_fails":
        assert local[("task.failed", "parent", "child")] == 1
        assert local[("run.failed", "parent", None)] == 1
    else:
        assert local[("run.started", "parent", None)] == 2
        assert local[("run.succeeded", "parent", None)] == 1
