"""A child run repaired on its own after its parent failed with it (rerun, or its failed task
marked succeeded): without a fault, the parent's task takes the child's new end, the parent
run reopens and succeeds (what every fault point of the sweeps is compared to: the SQLite
sweeps are test_fault_injection.py's, the DynamoDB ones test_fault_injection_subworkflow_dynamodb.py's)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.faultinject import SCENARIOS, Faults, drive, sqlite_store

from stratoflow.engine import RunState

WANTED = {
    "a": "succeeded", "b": "succeeded", "sub": "succeeded",
    "sub>": "succeeded", "sub>params": "{}", "sub>x": "succeeded", "sub>y": "succeeded",
}  # fmt: skip


@pytest.mark.parametrize("name", ["subworkflow_repair", "subworkflow_repair_mark"])
def test_the_parent_of_a_repaired_child_succeeds_on_sqlite(name: str, tmp_path: Path) -> None:
    faults = Faults()
    with sqlite_store(tmp_path, faults) as store:
        got = drive(SCENARIOS[name](), store, faults, aws=False)
    assert (got.run, got.tasks) == (RunState.SUCCEEDED, WANTED)
    assert not got.unkilled


@pytest.mark.no_cover
@pytest.mark.parametrize("name", ["subworkflow_repair", "subworkflow_repair_mark"])
def test_the_parent_of_a_repaired_child_succeeds_on_dynamodb(
    name: str, dynamodb_store: Callable[..., Any]
) -> None:
    faults = Faults()
    with dynamodb_store(faults) as store:
        got = drive(SCENARIOS[name](), store, faults, aws=True)
    assert (got.run, got.tasks) == (RunState.SUCCEEDED, WANTED)
    assert not got.unkilled
