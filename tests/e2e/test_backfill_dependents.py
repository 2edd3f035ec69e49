"""Backfill's dependent mode end to end on the local runtime (real task processes, the real
loop, the CLI against a real server): a backfill of A with dependents runs B and C (on A) and
D (on B and C) once per date — the diamond's D never twice — and each downstream run's work
happens only after its upstream runs of that date succeeded (its dependency task waited)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.cli import main
from stratoflow.engine.backfill import BackfillState
from stratoflow.ports import RunQuery
from tests.e2e import test_cli, test_runtime
from tests.e2e.test_backfill import until

pytestmark = pytest.mark.e2e
runtime = test_runtime.runtime  # the local runtime fixture, in a fresh home per test
server = test_cli.server  # a live local server (tests/cli_server.py): its URL


def workflow(name: str, log: Path, *upstreams: str, fail_on: str = "never") -> str:
    """Notes "start|end NAME ds" around its work; waits on ``upstreams`` for the same day."""
    text = f"name: {name}\ntasks:\n"
    needs = ""
    if upstreams:
        items = ", ".join(f"{{workflow: {u}, date: today}}" for u in upstreams)
        text += f"  wait: {{type: dependency, all: [{items}], check_interval: 5s}}\n"
        needs = "    depends_on: [wait]\n"
    text += f"""  work:
    type: shell
{needs}    command: |
      echo "start {name} {{{{ ds }}}}" >> {log}
      sleep 0.2
      test "{{{{ ds }}}}" != "{fail_on}" || exit 1
      echo "end {name} {{{{ ds }}}}" >> {log}
"""
    return text


def apply_diamond(rt: LocalRuntime, log: Path, fail_on: str = "never") -> None:
    rt.scheduler.apply(workflow("dm_a", log, fail_on=fail_on))
    rt.scheduler.apply(workflow("dm_b", log, "dm_a"))
    rt.scheduler.apply(workflow("dm_c", log, "dm_a"))
    rt.scheduler.apply(workflow("dm_d", log, "dm_b", "dm_c"))


def all_ended(rt: LocalRuntime, backfills: list[str], timeout: float = 60) -> None:
    """Run ``rt`` until each of ``backfills`` has ended."""
    until(rt, lambda: all(rt.store.get_backfill(b).state.terminal for b in backfills), timeout)


def lines(log: Path) -> list[tuple[str, str, str]]:
    return [tuple(line.split()) for line in log.read_text().splitlines()]  # type: ignore[misc]


def test_a_diamond_backfill_runs_each_workflow_once_per_date_in_dependency_order(
    runtime: LocalRuntime, shared_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = shared_dir / "log"
    apply_diamond(runtime, log)
    backfills = runtime.scheduler.backfills
    root = backfills.create(
        "default", "dm_a", start="2026-01-01", end="2026-01-03", parallel=3, dependents=True
    )
    group = backfills.group(root)
    assert [b.workflow for b in group] == ["dm_b", "dm_c", "dm_d"]
    everything = [root.id, *root.dependents]
    all_ended(runtime, everything, timeout=120)
    for b in everything:
        assert runtime.store.get_backfill(b).state is BackfillState.SUCCEEDED
    seen = lines(log)
    # exactly one run of each workflow per date: each started and ended once
    assert Counter(seen) == Counter(
        {(k, w, d): 1 for k in ("start", "end") for w in ("dm_a", "dm_b", "dm_c", "dm_d")
         for d in ("2026-01-01", "2026-01-02", "2026-01-03")}
    )  # fmt: skip
    for d in ("2026-01-01", "2026-01-02", "2026-01-03"):
        at = {(k, w): seen.index((k, w, d)) for k in ("start", "end") for w in ("dm_a", "dm_b", "dm_c", "dm_d")}  # fmt: skip
        assert at[("end", "dm_a")] < at[("start", "dm_b")]
        assert at[("end", "dm_a")] < at[("start", "dm_c")]
        assert max(at[("end", "dm_b")], at[("end", "dm_c")]) < at[("start", "dm_d")]
    for name in ("dm_a", "dm_b", "dm_c", "dm_d"):
        assert len(runtime.store.list_runs(RunQuery(workflow=name, limit=100))) == 3
    # a second dependent-mode backfill over the same dates adds no run anywhere
    again = backfills.create(
        "default", "dm_b", start="2026-01-01", end="2026-01-03", dependents=True
    )
    all_ended(runtime, [again.id, *again.dependents])
    assert [b.workflow for b in backfills.group(again)] == ["dm_d"]
    assert len(lines(log)) == len(seen)
    # backfill events are not mistaken for run events by the local alerts (none logged)
    assert not [r for r in caplog.records if "not planned" in r.getMessage()]


def test_a_serial_failure_upstream_stops_the_dependents_at_that_date(
    runtime: LocalRuntime, shared_dir: Path
) -> None:
    log = shared_dir / "log"
    apply_diamond(runtime, log, fail_on="2026-01-02")
    root = runtime.scheduler.backfills.create(
        "default", "dm_a", start="2026-01-01", end="2026-01-03", dependents=True
    )
    everything = [root.id, *root.dependents]
    all_ended(runtime, everything, timeout=120)
    for b in everything:
        got = runtime.store.get_backfill(b)
        assert got.state is BackfillState.FAILED
        assert [d.state.value for d in got.dates] == ["succeeded", "failed", "not_run"]
    # nothing downstream did its work for the failed date or after it
    assert not [x for x in lines(log) if x[1] != "dm_a" and x[2] >= "2026-01-02"]


def test_cli_dependents_waits_for_every_workflow_and_shows_them_by_date(
    tmp_path: Path, shared_dir: Path, server: str
) -> None:
    cli = CliRunner()
    api = ["--api", server]
    log = shared_dir / "log"
    for name, ups in (("dm_a", ()), ("dm_b", ("dm_a",)), ("dm_c", ("dm_a",)), ("dm_d", ("dm_b", "dm_c"))):  # fmt: skip
        source = tmp_path / f"{name}.yaml"
        source.write_text(workflow(name, log, *ups))
        assert cli.invoke(main, ["apply", str(source), *api]).exit_code == 0
    ok = cli.invoke(
        main,
        ["backfill", "dm_a", "--start", "2026-01-01", "--end", "2026-01-02", "--dependents",
         "--parallel", "2", "--wait", "--output", "json", *api],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    body = json.loads(ok.output)
    assert [d["state"] for d in body["dates"]] == ["succeeded", "succeeded"]
    assert {c["workflow"]: [d["state"] for d in c["dates"]] for c in body["dependents"]} == {
        w: ["succeeded", "succeeded"] for w in ("dm_b", "dm_c", "dm_d")
    }
    shown = cli.invoke(main, ["backfills", "show", body["id"], *api])
    assert shown.output.count("dependent of dm_a") == 3
    for child in body["dependents"]:
        assert child["dates"][0]["run_id"] in shown.output
    listed = cli.invoke(main, ["backfills", "list", *api]).output
    assert "(+3 dependents)" in listed
    assert listed.count(f"(dependent of {body['id']})") == 3
