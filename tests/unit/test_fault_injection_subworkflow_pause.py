"""A pause and a resume of a parent whose child runs survive any single failed write: the
child's state matches its parent's once each operation is done (the reconciler completes what
a crash between the parent's write and the child's left undone), on SQLite and DynamoDB."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.faultinject import (
    Faults,
    drive,
    sqlite_store,
    subworkflow_pause,
    sweep,
)


def test_the_scenario_pauses_and_resumes_the_child(tmp_path: Path) -> None:
    """Without a fault the child follows its parent (what every fault point is compared to)."""
    faults = Faults()
    with sqlite_store(tmp_path, faults) as store:
        got = drive(subworkflow_pause(), store, faults, aws=False)
    assert got.tasks["pause>"] == "paused"
    assert got.tasks["resume>"] == "running"
    assert got.tasks["sub>"] == "succeeded"


def test_every_write_fails_once_on_sqlite(tmp_path: Path) -> None:
    checked = sweep(subworkflow_pause(), lambda f: sqlite_store(tmp_path, f), aws=False)
    assert checked > 5


@pytest.mark.no_cover
@pytest.mark.timeout(900)
def test_every_write_fails_once_on_dynamodb(dynamodb_store: Callable[..., Any]) -> None:
    checked = sweep(subworkflow_pause(), dynamodb_store, aws=True)
    assert checked > 5
