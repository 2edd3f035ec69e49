"""The event storm (tests/unit/test_event_storm.py) on DynamoStore: the real ``Scheduler`` fed
reports that arrive late, twice, out of order and in batches, with the same oracle and the
same invariants (no attempt dispatched twice, counters equal to the task states, no ready task
missed, duplicates change nothing, every run ends where the oracle says), on moto's DynamoDB
instead of SQLite. Fewer examples than the SQLite run: moto is much slower than SQLite, and the
store-independent half of the property is already searched there. The suite draws 12 examples
(derandomized in CI: about 4 minutes on moto under load; 25 took 9); a hunt draws more with
``STRATOFLOW_STORM_EXAMPLES=100`` and fresh seeds (README, "Development").
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import tests.unit.test_event_storm as storm  # the module, so its test class is not collected twice
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from moto import mock_aws

from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table


class _Store(DynamoStore):
    def close(self) -> None:
        """The harness closes its store after each example; a boto3 client needs nothing."""


@pytest.fixture
def dynamodb_storm(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every store the harness opens is a DynamoStore on a fresh table; yields their names."""
    made: list[str] = []
    with mock_aws():
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

        def fresh_store(_: Path) -> Any:
            table = f"storm-{uuid.uuid4().hex[:12]}"  # one table per example
            create_table(client, table, stream=False)
            made.append(table)
            return _Store(table, client=client)

        monkeypatch.setattr(storm, "SqliteStore", fresh_store)
        yield made


EXAMPLES = int(os.environ.get("STRATOFLOW_STORM_EXAMPLES", "12"))


# Not traced for coverage, like the other storms on moto (test_event_storm_dynamodb.py): the
# tracer doubled its time, and the store's lines are the contract suite's to cover.
@pytest.mark.no_cover
@pytest.mark.slow
@pytest.mark.timeout(900 * max(1, EXAMPLES // 12))
def test_the_event_storm_on_dynamodb(dynamodb_storm: list[str]) -> None:
    run_state_machine_as_test(
        storm.EventStorm,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=30,
            deadline=None,
            report_multiple_bugs=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        ),
    )
    assert len(dynamodb_storm) >= EXAMPLES  # every example ran on its own DynamoDB table
