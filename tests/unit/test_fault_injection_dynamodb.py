"""Turns survive any single failed write on DynamoDB (tests/faultinject.py): for each workflow,
fail the k-th write at the boto3 client for every k, before it applied (a throttle) and, for
some, after (a timeout after the request), and check the run ends as it does without the fault,
with nothing dispatched twice and nothing left running. The sub-workflow scenarios are
test_fault_injection_subworkflow_dynamodb.py (a file each, so two test workers share them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.faultinject import SCENARIOS, stop_while_running, sweep

# moto costs milliseconds a request, so the DynamoDB sweeps in CI are the workflows whose turns
# differ (the fan's turns are the diamond's, many times over; the SQLite sweep has it, and the
# script, python -m tests.faultinject, sweeps larger fans on DynamoDB)
DYNAMODB_SCENARIOS = ["diamond", "serial", "switch", "retried", "stop", "rerun", "pooled",
                      "pooled_stop", "mark_running", "rerun_running"]  # fmt: skip


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
@pytest.mark.parametrize("name", ["diamond", "serial", "stop", "mark_running", "rerun_running"])
def test_every_write_fails_after_it_was_applied_on_dynamodb(
    name: str, dynamodb_store: Callable[..., Any]
) -> None:
    """The write happened, but its caller saw an error (a timeout after the request)."""
    checked = sweep(SCENARIOS[name](), dynamodb_store, aws=True, after=True)
    assert checked > 5


@pytest.mark.no_cover
@pytest.mark.timeout(900)
def test_every_write_of_counts_made_with_claims_fails_once_on_dynamodb(
    dynamodb_store: Callable[..., Any],
) -> None:
    """``join_late``: c's last count goes in the write that claims it. Each write fails
    once, before it applied and after: c is counted once per parent and claimed once, as
    without the fault."""
    checked = sweep(SCENARIOS["join_late"](), dynamodb_store, aws=True, after=[False, True])
    assert checked > 5


@pytest.mark.no_cover
@pytest.mark.timeout(900)
def test_every_write_of_a_journaled_stop_fails_once_on_dynamodb(
    dynamodb_store: Callable[..., Any],
) -> None:
    """A stop of 100 running tasks and a waiting one (101 task writes: journaled, in two
    chunks): each write the stop makes fails once, before it applied and after; the next
    delivery or the reconciler completes the journal, and the run ends stopped as without
    the fault, every attempt killed, nothing dispatched twice."""
    checked = sweep(
        stop_while_running(100),
        dynamodb_store,
        aws=True,
        after=[False, True],
        within=("stop", ()),
    )
    assert checked > 5
