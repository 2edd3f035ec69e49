"""A dependency task survives any single failed write (tests/faultinject.py's sweep): the
claim, the waits it records, each re-check's deadline, the end it decides. The workflow waits
on a task of its own run for today (the only upstream run a one-workflow drive has), so it
waits first and is decided by a later check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.faultinject import Faults, Scenario, drive, sqlite_store, sweep

from stratoflow.engine import RunState

SELF_WAIT = Scenario(
    "selfdep",
    """name: selfdep
tasks:
  a: {type: shell, command: "true"}
  wait:
    type: dependency
    all: [{workflow: selfdep, task: a, date: today}]
    check_interval: 5s
  b: {type: shell, command: "true", depends_on: [wait]}
""",
)


def test_the_drive_waits_then_succeeds(tmp_path: Path) -> None:
    with sqlite_store(tmp_path, Faults()) as store:
        got = drive(SELF_WAIT, store, Faults(), aws=False)
    assert got.run is RunState.SUCCEEDED
    assert got.tasks == {"a": "succeeded", "b": "succeeded", "wait": "succeeded"}
    assert got.dispatched == 2  # a and b: the dependency is never dispatched


def test_every_write_fails_once_on_sqlite(tmp_path: Path) -> None:
    assert sweep(SELF_WAIT, lambda f: sqlite_store(tmp_path, f), aws=False) > 5


@pytest.mark.no_cover
@pytest.mark.timeout(900)
@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_every_write_fails_once_on_dynamodb(
    after: bool, dynamodb_store: Callable[..., Any]
) -> None:
    # driven by periodic turns (aws=False), as the reconciler's passes would: what re-checks a
    # task of a run still going is the timer, and the AWS drive passes the reconciler only
    # after a fault (the run-end wake is the service tests' and the AWS e2e tests' subject)
    assert sweep(SELF_WAIT, dynamodb_store, aws=False, after=after) > 5
