"""The pool storm on DynamoDB (moto): the pool counters are conditional counters updated in
the same TransactWriteItems as the claims, ends and stops that move them, so they never
drift and a pool is never over-filled by the scheduler — whatever the interleaving."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from tests.faultinject import Faults, dynamodb_tables
from tests.unit.test_pool_storm import PoolStorm


class DynamoPoolStorm(PoolStorm):
    def make_store(self) -> Any:
        self._resources = ExitStack()
        open_store = self._resources.enter_context(dynamodb_tables())
        return self._resources.enter_context(open_store(Faults(armed=False)))

    def close_store(self) -> None:
        self._resources.close()


DynamoPoolStorm.TestCase.settings = settings(
    max_examples=6,
    stateful_step_count=20,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
TestDynamoPoolStorm = pytest.mark.no_cover(pytest.mark.timeout(900)(DynamoPoolStorm.TestCase))
