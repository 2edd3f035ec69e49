"""The Hypothesis event storm on DynamoDB (moto), with random faults at the boto3 client.

The same rules, oracle and invariants as ``test_event_storm`` (reordered, batched,
duplicated and contradicting reports, pauses, the clock), on the DynamoDB store, whose turns
are not one transaction. Any write of a delivery or a step may fail (before or after it took
effect); then what would happen next happens before the invariants are checked: a fresh
process, the failed reports delivered again, and a reconciler pass. The run must still end as
the oracle says, with counters that never drift and nothing dispatched twice.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize
from tests.fakes import RecordingDispatcher
from tests.faultinject import Executor, Faults, dynamodb_tables
from tests.unit.test_event_storm import EventStorm, Harness, Scenario, guarded, scenarios

from stratoflow.service import Finished, Scheduler


class RandomFaults(Faults):
    """Fails each write with probability ``p`` while ``enabled`` (before or after it took
    effect, at random), from a seeded generator so an example replays exactly."""

    def __init__(self, seed: int, p: float) -> None:
        super().__init__(armed=True)
        self.rng = random.Random(seed)
        self.p = p
        self.enabled = False
        self.injected = 0

    def write(
        self, perform: Callable[[], Any], error: Callable[[], Exception], what: str = ""
    ) -> Any:
        if not self.enabled or self.rng.random() >= self.p:
            return perform()
        self.injected += 1
        self.fired = True
        if self.rng.random() < 0.5:
            perform()
        raise error()


class FaultyHarness(Harness):
    def __init__(self, scenario: Scenario, store: Any, faults: RandomFaults) -> None:
        self.faults = faults
        super().__init__(scenario, None, store)  # type: ignore[arg-type]

    def _dispatcher(self) -> RecordingDispatcher:
        return Executor(self._check_dispatch)

    def _call(self, action: Callable[[], Any], *, reports: Sequence[Finished] = ()) -> Any:
        self.faults.enabled = True
        try:
            return action()
        except (ClientError, sqlite3.OperationalError, RuntimeError):
            if not self.faults.fired:
                raise
        finally:
            self.faults.enabled = False
        self.faults.fired = False
        # what happens next: a fresh process; the reports come again; the reconciler passes
        self.scheduler = Scheduler(self.store, self.store, self.dispatcher, self.clock)
        if reports:
            self.scheduler.on_finished(reports)
        self.store.complete_pending_plans()
        self.scheduler.recover()
        self.scheduler.step()
        return None


class DynamoEventStorm(EventStorm):
    def __init__(self) -> None:
        super().__init__()
        self._resources = ExitStack()
        self._open_store = self._resources.enter_context(dynamodb_tables())

    @initialize(scenario=scenarios(), seed=st.integers(0, 2**32 - 1))
    @guarded
    def start(self, scenario: Scenario, seed: int) -> None:  # type: ignore[override]
        faults = RandomFaults(seed, p=0.08)
        store = self._resources.enter_context(self._open_store(faults))
        self.h = FaultyHarness(scenario, store, faults)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self._resources.close()


DynamoEventStorm.TestCase.settings = settings(
    max_examples=8,
    stateful_step_count=16,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
# not traced for coverage: the tracer makes moto several times slower
TestDynamoEventStorm = pytest.mark.no_cover(pytest.mark.timeout(900)(DynamoEventStorm.TestCase))


def test_the_faults_are_injected() -> None:
    """The storm's faults really fire: a harness driven to the end meets some."""
    with dynamodb_tables() as open_store:
        rng = random.Random(7)
        faults = RandomFaults(seed=11, p=0.3)
        with open_store(faults) as store:
            h = FaultyHarness(_fixed_scenario(rng), store, faults)
            h.drain()
            h.check_final()
        assert faults.injected > 0


def _fixed_scenario(rng: random.Random) -> Scenario:
    from tests.unit.test_event_storm import FIXED

    plan = {t.id: (rng.random() < 0.7, True, True) for t in FIXED.tasks}
    return Scenario(FIXED, plan, pick=0)
