"""A schedule that catches up from long ago does not start every missed run at once: a
workflow with ``catchup: true`` and no ``max_active_runs`` runs at most 16 at a time (and its
catch-up makes only the runs it has room for; tests/unit/test_catchup_backlog.py)
(Airflow's ``max_active_runs_per_dag`` default), an explicit ``max_active_runs`` wins, and
without catchup there is still no limit. On both stores (SQLite fired by the local cron loop,
DynamoDB on moto fired as EventBridge Scheduler fires the trigger function), with a fake
clock: the rule is the model's, read by the service and enforced by each store's
``start_queued_run``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store
from tests.unit.test_api_app import Api, _build

from stratoflow.adapters.aws.firing import fire
from stratoflow.adapters.local.cron import CronLoop
from stratoflow.cli import main
from stratoflow.cli_common import view_implied_limit
from stratoflow.engine import AttemptResult, AttemptStatus, Run, RunState
from stratoflow.engine.dependency import SlotHolder, queued_behind
from stratoflow.model import CATCHUP_MAX_ACTIVE_RUNS, load_workflow
from stratoflow.ports import RunQuery
from stratoflow.service import Finished, Scheduler

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MISSED = 40  # hourly fire times from START to NOW, both included
START = NOW - timedelta(hours=MISSED - 1)


@dataclass
class Catchup:
    scheduler: Scheduler
    store: object
    dispatcher: RecordingDispatcher
    clock: FakeClock
    fire_due: Callable[[], None]  # what the runtime does when the schedule is due at NOW

    def runs(self) -> list[Run]:
        found = self.scheduler.store.list_runs(RunQuery(workflow="hourly", limit=1000))
        return sorted(found, key=lambda run: run.logical_date)

    def count(self, state: RunState) -> int:
        return sum(1 for run in self.runs() if run.state is state)

    def end(self, run_id: str) -> None:
        """The run's one task succeeds, then a turn."""
        self.scheduler.step()
        key = (run_id, "t", 1)
        assert key in self.dispatcher.pending, f"{run_id} was never dispatched"
        del self.dispatcher.pending[key]
        ok = AttemptResult(AttemptStatus.SUCCEEDED)
        self.scheduler.on_finished([Finished(run_id, "t", 1, ok)])
        self.scheduler.step()


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catchup]:
    clock = FakeClock(NOW)
    dispatcher = RecordingDispatcher()
    with state_store(request.param, tmp_path) as store:
        scheduler = Scheduler(store, store, dispatcher, clock)
        if request.param == "sqlite":  # the local runtime: the server's cron loop ticks

            def fire_due() -> None:
                CronLoop(scheduler, store).tick(clock.now())

        else:  # AWS: EventBridge Scheduler invokes the trigger function for NOW's firing

            def fire_due() -> None:
                event = {
                    "project": "default",
                    "workflow": "hourly",
                    "scheduled_time": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                fire(scheduler, event)

        yield Catchup(scheduler, store, dispatcher, clock, fire_due)


def hourly(*, catchup: bool, limit: int | None = None) -> str:
    text = (
        "name: hourly\n"
        "schedule:\n"
        '  cron: "0 * * * *"\n'
        f"  start: {START.strftime('%Y-%m-%dT%H:%M:%S')}\n"
        f"  catchup: {'true' if catchup else 'false'}\n"
        "tasks:\n"
        "  t: {type: shell, command: sleep 6}\n"
    )
    return text if limit is None else text + f"max_active_runs: {limit}\n"


def test_catchup_without_a_limit_runs_16_at_once_and_makes_the_rest_as_they_end(
    h: Catchup,
) -> None:
    # GIVEN an hourly workflow that catches up from 39 hours ago and sets no max_active_runs
    h.scheduler.apply(hourly(catchup=True))
    # WHEN its schedule fires: of the 40 missed intervals, as many as it has room for
    h.fire_due()
    h.scheduler.step()
    runs = h.runs()
    # THEN 16 runs (Airflow's max_active_runs_per_dag default) are made, and all run: the
    # other 24 are not made yet (a catch-up makes runs only while its workflow has room)
    assert CATCHUP_MAX_ACTIVE_RUNS == 16
    assert len(runs) == 16
    assert h.count(RunState.RUNNING) == 16
    # AND they are the 16 oldest intervals: catch-up goes oldest first
    assert [r.logical_date for r in runs] == [START + timedelta(hours=i) for i in range(16)]
    # AND a firing while the workflow is full makes nothing more
    h.fire_due()
    assert len(h.runs()) == 16
    # AND when one ends, the next firing makes the next interval, which takes its slot
    h.end(runs[0].id)
    h.fire_due()
    h.scheduler.step()
    after = h.runs()
    assert len(after) == 17
    assert after[16].logical_date == START + timedelta(hours=16)
    assert after[16].state is RunState.RUNNING
    assert h.count(RunState.RUNNING) == 16


def test_catchup_with_an_explicit_limit_runs_that_many(h: Catchup) -> None:
    h.scheduler.apply(hourly(catchup=True, limit=3))
    h.fire_due()
    h.scheduler.step()
    assert len(h.runs()) == 3
    assert h.count(RunState.RUNNING) == 3


def test_an_explicit_limit_above_16_wins_over_the_implied_one(h: Catchup) -> None:
    h.scheduler.apply(hourly(catchup=True, limit=30))
    h.fire_due()
    h.scheduler.step()
    assert len(h.runs()) == 30
    assert h.count(RunState.RUNNING) == 30


def test_without_catchup_no_limit_holds_manual_runs(h: Catchup) -> None:
    # GIVEN the same workflow without catchup (its schedule fires only the latest interval)
    h.scheduler.apply(hourly(catchup=False))
    # WHEN 40 runs are triggered by hand
    for _ in range(MISSED):
        h.clock.advance(1)
        h.scheduler.trigger("default", "hourly")
    h.scheduler.step()
    # THEN every one starts: no limit, as before
    assert len(h.runs()) == MISSED
    assert h.count(RunState.RUNNING) == MISSED


def test_the_implied_limit_holds_manual_runs_too(h: Catchup) -> None:
    # the limit is the workflow's, for all its runs, whatever made them
    h.scheduler.apply(hourly(catchup=True))
    for _ in range(20):
        h.clock.advance(1)
        h.scheduler.trigger("default", "hourly")
    h.scheduler.step()
    assert h.count(RunState.RUNNING) == 16
    assert h.count(RunState.QUEUED) == 4


def test_turning_catchup_off_lifts_the_implied_limit_for_the_queued_runs(h: Catchup) -> None:
    # GIVEN a catch-up at the implied 16, and 24 runs by hand queued behind them
    h.scheduler.apply(hourly(catchup=True))
    h.fire_due()
    for _ in range(MISSED - 16):
        h.clock.advance(1)
        h.scheduler.trigger("default", "hourly")
    h.scheduler.step()
    assert h.count(RunState.QUEUED) == MISSED - 16
    # WHEN a new version turns catchup off (and sets no max_active_runs)
    h.scheduler.apply(hourly(catchup=False))
    # THEN the latest version's (absent) limit governs: the queued runs start at once
    assert h.count(RunState.RUNNING) == MISSED


# ---------------------------------------------------------------- the rule, and who says it
@pytest.mark.parametrize(
    ("catchup", "limit", "effective"),
    [(True, None, 16), (True, 3, 3), (True, 30, 30), (False, None, None), (False, 3, 3)],
)
def test_the_effective_limit(catchup: bool, limit: int | None, effective: int | None) -> None:
    workflow = load_workflow(hourly(catchup=catchup, limit=limit)).workflow
    assert workflow.max_active_runs == limit  # what the file says is kept as written
    assert workflow.effective_max_active_runs == effective
    assert workflow.max_active_runs_implied is (catchup and limit is None)


def test_a_workflow_without_a_schedule_has_no_limit() -> None:
    text = "name: manual\ntasks:\n  t: {type: shell, command: echo}\n"
    assert load_workflow(text).workflow.effective_max_active_runs is None


def test_a_run_that_can_never_start_names_the_implied_limit() -> None:
    me = SlotHolder("a", frozenset({"q"}))
    why = queued_behind("a", "q", 1, [me], implied=True)
    assert why is not None
    assert "(max_active_runs: 1, implied by catchup)" in why
    plain = queued_behind("a", "q", 1, [me])
    assert plain is not None
    assert "(max_active_runs: 1)" in plain


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = _build(tmp_path)
    yield built
    built.scheduler.store.close()  # type: ignore[attr-defined]


FUTURE = "2090-01-01T00:00:00"  # nothing fires while the test runs
IMPLIED = "max_active_runs: 16, implied by catchup (set max_active_runs to change it)"


def later(*, catchup: bool, limit: int | None = None) -> str:
    text = (
        f"name: later\nschedule: {{cron: '0 0 1 1 *', start: {FUTURE}, "
        f"catchup: {str(catchup).lower()}}}\ntasks:\n  t: {{type: shell, command: echo}}\n"
    )
    return text if limit is None else text + f"max_active_runs: {limit}\n"


@pytest.mark.parametrize(
    ("catchup", "limit", "effective", "said"),
    [
        (True, None, 16, IMPLIED),
        (True, 3, 3, None),
        (False, None, None, None),
    ],
)
def test_the_api_views_give_the_effective_limit(
    api: Api, catchup: bool, limit: int | None, effective: int | None, said: str | None
) -> None:
    applied = api.apply(later(catchup=catchup, limit=limit))
    assert applied["effective_max_active_runs"] == effective
    shown = api.call("GET", "/workflows/later").body
    assert shown["effective_max_active_runs"] == effective
    (listed,) = api.call("GET", "/workflows").body["workflows"]
    assert listed["effective_max_active_runs"] == effective
    (version,) = api.call("GET", "/workflows/later/versions").body["versions"]
    assert version["effective_max_active_runs"] == effective
    # what `stratoflow apply` and `workflows show` print from that view
    assert view_implied_limit(applied) == said


def test_validate_names_the_implied_limit(tmp_path: Path) -> None:
    implied = tmp_path / "implied.yaml"
    implied.write_text(later(catchup=True))
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text(later(catchup=True, limit=3))
    result = CliRunner().invoke(main, ["validate", str(implied), str(explicit)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"ok: {implied} (default/later, 1 tasks; {IMPLIED})"
    assert lines[1] == f"ok: {explicit} (default/later, 1 tasks)"
