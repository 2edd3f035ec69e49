"""Turns survive any single failed write: for each workflow, fail the k-th store write for
every k (on SQLite at the statement, on DynamoDB at the boto3 client), let redelivery, a fresh
process and the reconciler do what they would, and check the run ends as it does without the
fault, with nothing dispatched twice and nothing left running. The large sweeps (a 1 -> 200 -> 1
fan, a stop while 150 tasks run) are ``python -m tests.faultinject``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.faultinject import (
    Scenario,
    diamond,
    dynamodb_tables,
    fan,
    pooled,
    pooled_stop,
    rerun_from_task,
    retried,
    sqlite_store,
    stop_while_running,
    subworkflow_rerun,
    subworkflow_stop,
    sweep,
    switch,
)

SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "diamond": diamond,
    "fan": lambda: fan(4),
    "switch": switch,
    "retried": retried,
    "stop": lambda: stop_while_running(6),
    "rerun": rerun_from_task,
    "subworkflow": subworkflow_rerun,
    "subworkflow_stop": subworkflow_stop,
    "pooled": pooled,
    "pooled_stop": pooled_stop,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_write_fails_once_on_sqlite(name: str, tmp_path: Path) -> None:
    checked = sweep(SCENARIOS[name](), lambda f: sqlite_store(tmp_path, f), aws=False)
    assert checked > 5


@pytest.fixture(scope="module")
def dynamodb_store() -> Iterator[Callable[..., Any]]:
    with dynamodb_tables() as open_store:
        yield open_store


# moto costs about 15 ms a request, so the DynamoDB sweeps in CI are the workflows whose turns
# differ (the fan's turns are the diamond's, many times over; the SQLite sweep has it, and the
# script, python -m tests.faultinject, sweeps larger fans on DynamoDB)
DYNAMODB_SCENARIOS = [
    "diamond",
    "switch",
    "retried",
    "stop",
    "rerun",
    "subworkflow",
    "subworkflow_stop",
    "pooled",
    "pooled_stop",
]


# Not traced for coverage (the SQLite sweeps and the contract suite cover the same code): the
# tracer makes moto several times slower.
@pytest.mark.no_cover
@pytest.mark.timeout(900)  # a sweep drives its workflow once per write
@pytest.mark.parametrize("name", DYNAMODB_SCENARIOS)
def test_every_write_fails_once_on_dynamodb(name: str, dynamodb_store: Callable[..., Any]) -> None:
    checked = sweep(SCENARIOS[name](), dynamodb_store, aws=True)
    assert checked > 5


@pytest.mark.no_cover
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["diamond", "stop"])
def test_every_write_fails_after_it_was_applied_on_dynamodb(
    name: str, dynamodb_store: Callable[..., Any]
) -> None:
    """The write happened, but its caller saw an error (a timeout after the request)."""
    checked = sweep(SCENARIOS[name](), dynamodb_store, aws=True, after=True)
    assert checked > 5


@pytest.mark.no_cover
@pytest.mark.timeout(900)
def test_the_sweep_notices_a_lost_turn(
    monkeypatch: pytest.MonkeyPatch, dynamodb_store: Callable[..., Any]
) -> None:
    """The harness can fail: with the propagation intent disabled (what the store did before),
    a fault between a task's end and its children's counts leaves the run unfinished."""
    from stratoflow.service import Scheduler

    monkeypatch.setattr(Scheduler, "_intent", property(lambda self: False))
    with pytest.raises(AssertionError, match="fault at write"):
        sweep(diamond(), dynamodb_store, aws=True)
