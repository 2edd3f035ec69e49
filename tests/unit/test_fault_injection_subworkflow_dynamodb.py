"""A parent and its child runs survive any single failed write on DynamoDB
(tests/faultinject.py; test_fault_injection_dynamodb.py sweeps the other workflows): a child
rerun with its parent, a child whose params come from an upstream output, a stop of the parent
while its child runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.faultinject import SCENARIOS, sweep


@pytest.mark.no_cover  # the tracer makes moto several times slower
@pytest.mark.timeout(900)  # a sweep drives its workflow once per write
@pytest.mark.parametrize("name", ["subworkflow", "subworkflow_params", "subworkflow_stop"])
def test_every_write_fails_once_on_dynamodb(name: str, dynamodb_store: Callable[..., Any]) -> None:
    checked = sweep(SCENARIOS[name](), dynamodb_store, aws=True)
    assert checked > 5
