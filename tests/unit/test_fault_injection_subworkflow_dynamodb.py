"""A parent and its child runs survive any single failed write on DynamoDB
(tests/faultinject.py; test_fault_injection_dynamodb.py sweeps the other workflows): a child
rerun with its parent, a child whose params come from an upstream output, a stop of the parent
while its child runs, a child repaired on its own (rerun, or its failed task marked) whose new
end its parent's task takes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.faultinject import SCENARIOS, sweep


@pytest.mark.no_cover  # the tracer makes moto several times slower
@pytest.mark.timeout(900)  # a sweep drives its workflow once per write
@pytest.mark.parametrize(
    "name",
    ["subworkflow", "subworkflow_params", "subworkflow_stop", "subworkflow_repair",
     "subworkflow_repair_mark"],
)  # fmt: skip
def test_every_write_fails_once_on_dynamodb(name: str, dynamodb_store: Callable[..., Any]) -> None:
    checked = sweep(SCENARIOS[name](), dynamodb_store, aws=True)
    assert checked > 5


@pytest.mark.no_cover
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["subworkflow_repair", "subworkflow_repair_mark"])
def test_every_write_fails_after_it_was_applied_on_dynamodb(
    name: str, dynamodb_store: Callable[..., Any]
) -> None:
    """The write happened, but its caller saw an error (a timeout after the request): the
    child's end written after its parent's task took it is the case that matters."""
    checked = sweep(SCENARIOS[name](), dynamodb_store, aws=True, after=True)
    assert checked > 5
