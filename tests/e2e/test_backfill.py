"""Backfill end to end on the local runtime: real task processes, the real loop, the CLI
against a real server: serial stops at its first failure, N lanes keep exactly N runs going,
a repeat adds nothing, pause/resume/cancel, and a process that dies between a run's end and
the next date's start loses nothing when it starts again."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.backfills import Backfills
from stratoflow.cli import main
from stratoflow.engine import RunState
from stratoflow.engine.backfill import Backfill, BackfillState
from stratoflow.ports import RunQuery
from tests.e2e import test_cli, test_runtime

pytestmark = pytest.mark.e2e
runtime = test_runtime.runtime  # the local runtime fixture, in a fresh home per test
server = test_cli.server  # a live local server (tests/cli_server.py): its URL


def workflow(spans: Path, *, fail_on: str = "never", sleep: str = "0.3") -> str:
    """Each run notes when its task started and ended (to measure how many overlapped); the
    run of ``fail_on`` fails."""
    return f"""
name: bf_e2e
params: {{pause: "{sleep}"}}
tasks:
  work:
    type: shell
    command: |
      echo "start $(date +%s.%N) {{{{ ds }}}}" >> {spans}
      sleep {{{{ params.pause }}}}
      echo "end $(date +%s.%N) {{{{ ds }}}}" >> {spans}
      test "{{{{ ds }}}}" != "{fail_on}"
"""


def most_at_once(spans: Path) -> int:
    events = []
    for line in spans.read_text().splitlines():
        kind, at, _ = line.split()
        events.append((float(at), 1 if kind == "start" else -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def until(rt: LocalRuntime, done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    rt.run_until(lambda: done() or time.monotonic() > deadline)
    assert done(), "timed out"


def finished(rt: LocalRuntime, backfill: Backfill) -> Backfill:
    until(rt, lambda: rt.store.get_backfill(backfill.id).state.terminal)
    return rt.store.get_backfill(backfill.id)


def states(backfill: Backfill) -> list[str]:
    return [d.state.value for d in backfill.dates]


def runs(rt: LocalRuntime) -> list[str]:
    return sorted(r.id for r in rt.store.list_runs(RunQuery(workflow="bf_e2e", limit=1000)))


def test_serial_backfill_stops_at_its_first_failure(
    runtime: LocalRuntime, shared_dir: Path
) -> None:
    spans = shared_dir / "spans"
    runtime.scheduler.apply(workflow(spans, fail_on="2026-01-02", sleep="0.05"))
    bf = runtime.scheduler.backfills.create(
        "default", "bf_e2e", start="2026-01-01", end="2026-01-04"
    )
    bf = finished(runtime, bf)
    assert bf.state is BackfillState.FAILED
    assert states(bf) == ["succeeded", "failed", "not_run", "not_run"]
    assert len(runs(runtime)) == 2  # nothing ran after the failure
    assert most_at_once(spans) == 1


def test_parallel_backfill_keeps_exactly_n_runs_going(
    runtime: LocalRuntime, shared_dir: Path
) -> None:
    spans = shared_dir / "spans"
    runtime.scheduler.apply(workflow(spans, sleep="0.4"))
    bf = runtime.scheduler.backfills.create(
        "default", "bf_e2e", start="2026-01-01", end="2026-01-08", parallel=3
    )
    bf = finished(runtime, bf)
    assert bf.state is BackfillState.SUCCEEDED
    assert states(bf) == ["succeeded"] * 8
    assert most_at_once(spans) == 3
    assert len({d.lane for d in bf.dates}) == 3


def test_a_repeated_backfill_adds_nothing(runtime: LocalRuntime, shared_dir: Path) -> None:
    runtime.scheduler.apply(workflow(shared_dir / "spans", sleep="0"))
    first = finished(
        runtime,
        runtime.scheduler.backfills.create(
            "default", "bf_e2e", start="2026-01-01", end="2026-01-03", parallel=2
        ),
    )
    before = runs(runtime)
    again = finished(
        runtime,
        runtime.scheduler.backfills.create(
            "default", "bf_e2e", start="2026-01-01", end="2026-01-03", parallel=2
        ),
    )
    assert first.state is again.state is BackfillState.SUCCEEDED
    assert states(again) == ["skipped"] * 3
    assert runs(runtime) == before


def test_pause_resume_and_cancel_with_real_processes(
    runtime: LocalRuntime, shared_dir: Path
) -> None:
    runtime.scheduler.apply(workflow(shared_dir / "spans", sleep="0.3"))
    backfills = runtime.scheduler.backfills
    bf = backfills.create("default", "bf_e2e", start="2026-01-01", end="2026-01-05")
    backfills.pause(bf.id)
    until(runtime, lambda: runtime.store.get_run(bf.dates[0].run_id).state.terminal)
    for _ in range(5):  # turns go by; a paused backfill takes no date
        runtime.run_once(timeout=0.05)
    assert states(runtime.store.get_backfill(bf.id)) == ["succeeded"] + ["pending"] * 4
    backfills.resume(bf.id)
    until(runtime, lambda: runtime.store.get_run(bf.dates[1].run_id).state is RunState.RUNNING)
    cancelled = backfills.cancel(bf.id)
    assert cancelled.state is BackfillState.CANCELLED
    until(runtime, lambda: runtime.store.get_run(bf.dates[1].run_id).state.terminal)
    assert runtime.store.get_run(bf.dates[1].run_id).state is RunState.STOPPED
    assert len(runs(runtime)) == 2


def test_a_crash_between_a_run_end_and_the_next_start_recovers(
    tmp_path: Path, shared_dir: Path
) -> None:
    home = tmp_path / "home"
    rt = LocalRuntime(home)
    rt.scheduler.apply(workflow(shared_dir / "spans", sleep="0"))
    with pytest.MonkeyPatch.context() as died:
        # the process dies right after the first run's end was committed: its lane never heard
        died.setattr(Backfills, "run_ended", lambda self, run: None)
        bf = rt.scheduler.backfills.create(
            "default", "bf_e2e", start="2026-01-01", end="2026-01-03"
        )
        until(rt, lambda: rt.store.get_run(bf.dates[0].run_id).state.terminal)
        assert states(rt.store.get_backfill(bf.id)) == ["running", "pending", "pending"]
        rt.close()
    # started again, it finds the lane where it stopped and goes on
    rt = LocalRuntime(home)
    try:
        bf = finished(rt, bf)
        assert bf.state is BackfillState.SUCCEEDED
        assert len(runs(rt)) == 3
    finally:
        rt.close()


def test_cli_backfill_waits_lists_shows_and_refuses_bad_input(
    tmp_path: Path, shared_dir: Path, server: str
) -> None:
    cli = CliRunner()
    api = ["--api", server]
    source = tmp_path / "wf.yaml"
    source.write_text(workflow(shared_dir / "spans", fail_on="2026-01-03", sleep="0"))
    assert cli.invoke(main, ["apply", str(source), *api]).exit_code == 0
    ok = cli.invoke(
        main,
        ["backfill", "bf_e2e", "--start", "2026-01-01", "--end", "2026-01-02", "--wait",
         "--output", "json", *api],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    body = json.loads(ok.output)
    assert [d["state"] for d in body["dates"]] == ["succeeded", "succeeded"]
    failed = cli.invoke(
        main,
        ["backfill", "bf_e2e", "--dates", "2026-01-03,2026-01-04", "--parallel", "2", "--wait",
         *api],
    )  # fmt: skip
    assert failed.exit_code == 1, failed.output
    assert "failed" in failed.output
    listed = json.loads(cli.invoke(main, ["backfills", "list", "--output", "json", *api]).output)
    assert len(listed["backfills"]) == 2
    shown = cli.invoke(main, ["backfills", "show", body["id"], *api])
    assert "succeeded" in shown.output
    assert body["dates"][0]["run_id"] in shown.output
    # bad input: exit 2 with the field, and nothing made
    bad = cli.invoke(main, ["backfill", "bf_e2e", "--start", "2026-01-09", "--end", "2026-01-01", *api])  # fmt: skip
    assert bad.exit_code == 2
    assert "end" in bad.output
    assert cli.invoke(main, ["backfill", "bf_e2e", "--start", "2026-01-01", *api]).exit_code == 2
    # a logical date after now: refused, naming it and now (the schedule runs it when it comes)
    future = cli.invoke(main, ["backfill", "bf_e2e", "--start", "2030-03-01", "--end", "2030-03-02", *api])  # fmt: skip
    assert future.exit_code == 2, future.output
    assert "2030-03-01T00:00:00Z is after now (" in future.output
    edge = cli.invoke(main, ["backfill", "bf_e2e", "--start", "9999-12-29", "--end", "9999-12-29", *api])  # fmt: skip
    assert edge.exit_code == 2, edge.output
    assert "'9999-12-29' means 9999-12-29T23:59:59.999999Z" in edge.output
    assert cli.invoke(main, ["backfills", "pause", body["id"], *api]).exit_code == 2  # finished
    after = json.loads(cli.invoke(main, ["backfills", "list", "--output", "json", *api]).output)
    assert len(after["backfills"]) == 2
