"""A queued task that can never start (its pool was deleted; a child run's task starved by the
pool slots its ancestors' sub-workflow tasks hold) fails in one write, whatever fails when:
fail the k-th store write for every k, before or after it applied, let redelivery, a fresh
process and the reconciler do what they would, and check the task ends FAILED naming its pool,
with its one attempt recorded as failed, and that no attempt of it is ever dispatched (a claim
written apart from its failure, then a crash, had recovery start it outside its pool)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.faultinject import (
    Faults,
    Scenario,
    drive,
    pool_deleted,
    pooled_child_starved,
    sqlite_store,
    sweep,
)

SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "pool_deleted": pool_deleted,
    "pooled_child": pooled_child_starved,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_without_a_fault_the_task_fails_naming_its_pool(name: str, tmp_path: Path) -> None:
    """What every fault point is compared to (``drive`` checks the unstartable task too)."""
    faults = Faults()
    with sqlite_store(tmp_path, faults) as store:
        got = drive(SCENARIOS[name](), store, faults, aws=False)
    assert got.run.value == "failed"
    if name == "pool_deleted":
        assert (got.tasks["b"], got.tasks["c"], got.tasks["side"]) == (
            "failed", "upstream_failed", "succeeded",
        )  # fmt: skip
    else:
        assert (got.tasks["sub>x"], got.tasks["sub>y"], got.tasks["sub>"]) == (
            "failed", "upstream_failed", "failed",
        )  # fmt: skip
        assert (got.tasks["sub"], got.tasks["b"]) == ("failed", "upstream_failed")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_write_fails_once_on_sqlite(name: str, tmp_path: Path) -> None:
    checked = sweep(SCENARIOS[name](), lambda f: sqlite_store(tmp_path, f), aws=False)
    assert checked > 5


# moto costs about 15 ms a request: on DynamoDB the sweep fails the writes of the task's failure
# alone (``Scheduler._fail_unstarted``, but not the run's end it leads to, ``_settle``, which
# the other scenarios sweep), each before and then after it applied; on SQLite every write
@pytest.mark.no_cover  # the tracer makes moto several times slower
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_write_of_the_failure_fails_once_on_dynamodb(
    name: str, dynamodb_store: Callable[..., Any]
) -> None:
    checked = sweep(
        SCENARIOS[name](), dynamodb_store, aws=True, after=(False, True),
        within=("_fail_unstarted", ["_settle"]),
    )  # fmt: skip
    # its write, its children's counts and moves, the retirement of its propagation intent
    assert checked >= 6
