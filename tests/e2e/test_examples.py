"""Every example in examples/ runs end to end on the local runtime, as the tutorial says."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.ports import Clock, RunQuery
from tests.e2e.http_stub import json_stub
from tests.sql.conftest import pg_db  # noqa: F401 - a fixture

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class FakeClock(Clock):
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


def run_example(
    home: Path, name: str, params: dict[str, Any] | None = None
) -> tuple[LocalRuntime, str]:
    runtime = LocalRuntime(home)
    version, _ = runtime.scheduler.apply((EXAMPLES / f"{name}.yaml").read_text())
    run, _ = runtime.scheduler.trigger(version.project, version.name, params=params or {})
    runtime.run_until(lambda: runtime.store.get_run(run.id).state.terminal)
    return runtime, run.id


def states(runtime: LocalRuntime, run_id: str) -> dict[str, str]:
    return {t.task_id: t.state.value for t in runtime.store.get_tasks(run_id)}


def test_etl_chain_passes_outputs_downstream(tmp_path: Path) -> None:
    runtime, run_id = run_example(tmp_path, "etl_chain")
    try:
        assert runtime.store.get_run(run_id).state.value == "succeeded"
        tasks = {t.task_id: t for t in runtime.store.get_tasks(run_id)}
        rows = int(tasks["extract"].outputs["rows"])
        assert 40 <= rows <= 44
        assert tasks["transform"].outputs == {"doubled": rows * 2, "region": "EU"}
        assert tasks["load"].outputs == {"loaded": str(rows * 2)}
        log = Path(runtime.store.list_attempts(run_id, "load")[0].log or "").read_text()
        assert f"loading {rows * 2} rows for EU" in log
    finally:
        runtime.close()


def test_etl_chain_fails_with_the_python_error_when_a_param_says_so(tmp_path: Path) -> None:
    runtime, run_id = run_example(tmp_path, "etl_chain", {"min_rows": 1000})
    try:
        assert runtime.store.get_run(run_id).state.value == "failed"
        assert states(runtime, run_id) == {
            "extract": "succeeded",
            "transform": "failed",
            "load": "upstream_failed",
        }
        transform = runtime.store.get_task(run_id, "transform")
        assert transform.attempt == 2  # retried once (defaults.retries: 1), then failed
        assert transform.error is not None
        assert "ValueError: only" in transform.error
    finally:
        runtime.close()


@pytest.mark.parametrize(
    ("volume", "taken", "skipped"),
    [(120, "big_load", "small_load"), (5, "small_load", "big_load")],
)
def test_switch_takes_one_branch_and_trigger_rules_decide_the_rest(
    tmp_path: Path, volume: int, taken: str, skipped: str
) -> None:
    runtime, run_id = run_example(tmp_path, "switch_rules", {"volume": volume})
    try:
        assert runtime.store.get_run(run_id).state.value == "succeeded"
        got = states(runtime, run_id)
        assert got[taken] == "succeeded"
        assert got[skipped] == "skipped"
        assert got["cleanup"] == "succeeded"  # none_failed accepts the skip
        assert got["alert"] == "skipped"  # one_failed: nothing failed
    finally:
        runtime.close()


def test_flaky_task_is_retried_with_backoff_until_it_succeeds(tmp_path: Path) -> None:
    runtime, run_id = run_example(tmp_path, "flaky_retry")
    try:
        assert runtime.store.get_run(run_id).state.value == "succeeded"
        attempts = runtime.store.list_attempts(run_id, "call_flaky_service")
        assert [a.state for a in attempts] == ["failed", "failed", "succeeded"]
        # backoff: the second retry waited about twice as long as the first (1s, then 2s)
        gap1 = attempts[1].started_at - (attempts[0].ended_at or attempts[0].started_at)
        gap2 = attempts[2].started_at - (attempts[1].ended_at or attempts[1].started_at)
        assert timedelta(seconds=0.9) <= gap1 < timedelta(seconds=1.9)
        assert timedelta(seconds=1.9) <= gap2 < timedelta(seconds=3.5)
        assert runtime.store.get_task(run_id, "use_answer").outputs == {"ok": True}
    finally:
        runtime.close()


@pytest.fixture
def health_api() -> Iterator[str]:
    def respond(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        return (200, {"status": "ok"}) if path == "/health" else (404, {"error": "not_found"})

    with json_stub(respond) as url:
        yield url


def test_scheduled_workflow_fires_on_its_cron_in_its_time_zone(
    tmp_path: Path, health_api: str
) -> None:
    # GIVEN the scheduled example applied at 10:59:30 Paris time (09:59:30 UTC in November)
    clock = FakeClock(datetime(2026, 11, 20, 9, 59, 30, tzinfo=UTC))
    runtime = LocalRuntime(tmp_path, clock=clock, cron=True)
    try:
        text = (
            (EXAMPLES / "scheduled.yaml").read_text().replace("http://127.0.0.1:8321", health_api)
        )
        runtime.scheduler.apply(text)
        assert runtime.cron is not None
        # WHEN the cron loop ticks: nothing in the past fires (catchup: false)
        assert runtime.cron.tick(clock.now()) == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
        assert runtime.store.queued_runs(10) == []
        # WHEN the clock passes 11:00 and 11:02 Paris time, twice each (a duplicate firing)
        clock.current = datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC)
        runtime.cron.tick(clock.now())
        runtime.cron.tick(clock.now())
        runs = runtime.store.list_runs(RunQuery(workflow="scheduled_report"))
        # THEN exactly one run exists for the 11:00 (Paris) firing, with that logical date
        assert [r.logical_date for r in runs] == [datetime(2026, 11, 20, 10, 0, tzinfo=UTC)]
        run = runs[0]
        assert run.trigger == "schedule"
        runtime.run_until(lambda: runtime.store.get_run(run.id).state.terminal)
        assert runtime.store.get_run(run.id).state.value == "succeeded"
        report = runtime.store.get_task(run.id, "report")
        assert report.outputs == {"day": "2026-11-20", "api_status": "ok"}
        assert runtime.store.get_task(run.id, "health").outputs["status_code"] == 200
    finally:
        runtime.close()


def test_backfill_daily_fills_a_week_two_at_a_time_and_a_repeat_adds_nothing(
    tmp_path: Path,
) -> None:
    runtime = LocalRuntime(tmp_path)
    try:
        runtime.scheduler.apply((EXAMPLES / "backfill_daily.yaml").read_text())
        backfills = runtime.scheduler.backfills
        week = backfills.create(
            "default", "daily_partition", start="2026-01-01", end="2026-01-07", parallel=3
        )
        runtime.run_until(lambda: runtime.store.get_backfill(week.id).state.terminal)
        week = runtime.store.get_backfill(week.id)
        assert week.state.value == "succeeded"
        assert [d.logical_date.isoformat() for d in week.dates][:2] == [
            "2026-01-01T03:00:00+00:00",
            "2026-01-02T03:00:00+00:00",
        ]
        first = runtime.store.get_task(week.dates[0].run_id, "load")
        assert first.outputs == {"partition": "20260101: 50 rows"}
        runs = runtime.store.list_runs(RunQuery(workflow="daily_partition", limit=100))
        assert len(runs) == 7
        # max_active_runs: 2 held although three lanes asked for more
        spans = sorted((r.started_at, r.ended_at) for r in runs)
        assert all(s is not None and e is not None for s, e in spans)
        peak = max(sum(1 for s, e in spans if s <= at < e) for at, _ in spans)
        assert peak <= 2
        again = backfills.create("default", "daily_partition", start="2026-01-01", end="2026-01-07")
        runtime.run_until(lambda: runtime.store.get_backfill(again.id).state.terminal)
        assert runtime.store.get_backfill(again.id).counts()["skipped"] == 7
        assert len(runtime.store.list_runs(RunQuery(workflow="daily_partition", limit=100))) == 7
    finally:
        runtime.close()


def test_dependency_weekly_waits_for_the_backfilled_week_then_rolls_up(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path)
    try:
        runtime.scheduler.apply((EXAMPLES / "backfill_daily.yaml").read_text())
        runtime.scheduler.apply((EXAMPLES / "dependency_weekly.yaml").read_text())
        monday = datetime(2026, 1, 12, 5, tzinfo=UTC)  # 06:00 in Berlin
        rollup, _ = runtime.scheduler.trigger("default", "weekly_rollup", logical_date=monday)
        runtime.run_once(timeout=0.2)
        assert runtime.store.get_task(rollup.id, "wait_for_days").state.value == "running"
        week = runtime.scheduler.backfills.create(
            "default", "daily_partition", start="2026-01-05", end="2026-01-11", parallel=2
        )
        runtime.run_until(lambda: runtime.store.get_run(rollup.id).state.terminal)
        assert runtime.store.get_backfill(week.id).state.value == "succeeded"
        assert runtime.store.get_run(rollup.id).state.value == "succeeded"
        assert runtime.store.get_task(rollup.id, "rollup").outputs == {"week_ending": "2026-01-12"}
    finally:
        runtime.close()


def test_sql_daily_loads_counts_and_passes_the_count_on(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from stratoflow.connections import validate_connection

    database = request.getfixturevalue("pg_db")  # a scratch database on the real PostgreSQL

    runtime = LocalRuntime(tmp_path)
    try:
        version, _ = runtime.scheduler.apply((EXAMPLES / "sql_daily.yaml").read_text())
        # without the connection the run fails, naming it (applying did not need it)
        run, _ = runtime.scheduler.trigger(version.project, version.name)
        runtime.run_until(lambda: runtime.store.get_run(run.id).state.terminal)
        assert states(runtime, run.id)["prepare"] == "failed"
        assert "connection 'warehouse' is not defined" in (
            runtime.store.get_task(run.id, "prepare").error or ""
        )
        warehouse = validate_connection("default", "warehouse", "postgresql", {"url": database})
        runtime.connections.put(warehouse, runtime.clock.now())
        counts = {}
        for day, again in ((5, False), (7, False), (5, True)):  # a day loaded twice: replaced
            logical = datetime(2024, 3, day, 4, tzinfo=UTC)
            run, _ = runtime.scheduler.trigger(version.project, version.name, logical_date=logical)
            runtime.run_until(lambda: runtime.store.get_run(run.id).state.terminal)  # noqa: B023
            assert runtime.store.get_run(run.id).state.value == "succeeded", states(runtime, run.id)
            count = runtime.store.get_task(run.id, "count").outputs
            assert runtime.store.get_task(run.id, "load").outputs == {"row_count": 10 + day}
            assert runtime.store.get_task(run.id, "report").outputs == {"orders": str(10 + day)}
            counts[(day, again)] = count
        assert counts[(5, False)]["orders"] == counts[(5, True)]["orders"] == "15"
        assert counts[(5, False)]["revenue"] == counts[(5, True)]["revenue"]
        assert counts[(7, False)]["orders"] == "17"
    finally:
        runtime.close()


def test_regions_rollup_runs_etl_chain_per_region_and_adds_their_outputs(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path)
    try:
        runtime.scheduler.apply((EXAMPLES / "etl_chain.yaml").read_text())
        version, _ = runtime.scheduler.apply((EXAMPLES / "regions_rollup.yaml").read_text())
        run, _ = runtime.scheduler.trigger(version.project, version.name)
        runtime.run_until(lambda: runtime.store.get_run(run.id).state.terminal)
        assert runtime.store.get_run(run.id).state.value == "succeeded"
        tasks = {t.task_id: t for t in runtime.store.get_tasks(run.id)}
        loaded = [int(tasks[r].outputs["load"]["loaded"]) for r in ("eu", "us")]
        assert tasks["total"].outputs == {"total": str(sum(loaded))}
        children = runtime.store.list_runs(RunQuery(workflow="etl_chain", limit=10))
        assert sorted(c.params["region"] for c in children) == ["eu", "us"]
        assert {c.parent for c in children} == {f"{run.id}/eu", f"{run.id}/us"}
    finally:
        runtime.close()


def test_warehouse_pool_serves_by_priority_and_the_wide_load_waits_for_two_slots(
    tmp_path: Path,
) -> None:
    runtime = LocalRuntime(tmp_path)
    try:
        runtime.scheduler.set_pool("warehouse", 2)  # as the example's comment says
        version, _ = runtime.scheduler.apply((EXAMPLES / "warehouse_pool.yaml").read_text())
        run, _ = runtime.scheduler.trigger(version.project, version.name)
        runtime.run_until(lambda: runtime.store.get_run(run.id).state.terminal)
        assert runtime.store.get_run(run.id).state.value == "succeeded"
        attempt = {a.task_id: a for a in runtime.store.list_attempts(run.id)}
        orders, customers, history = (
            attempt[t] for t in ("load_orders", "load_customers", "load_history")
        )
        # the two narrow loads (priority 15 and 5) ran together; the wide one (two slots,
        # priority 0) only once both had ended (each sleeps 1 s)
        assert (
            orders.started_at <= customers.started_at < orders.started_at + timedelta(seconds=0.9)
        )
        assert history.started_at >= customers.started_at + timedelta(seconds=0.9)
        pool = runtime.store.get_pool("/warehouse")
        assert pool is not None
        assert pool.used == 0
    finally:
        runtime.close()
