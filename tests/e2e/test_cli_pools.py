"""``stratoflow pools`` and ``stratoflow runs force-start`` against a local server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.cli import main
from tests.cli_server import running_api

pytestmark = pytest.mark.e2e

SLOW = """
name: slow_pair
tasks:
  a: {type: shell, command: "sleep 30", pool: one, priority: 1}
  b: {type: shell, command: "true", pool: one}
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, LocalRuntime]]:
    with running_api(tmp_path / "server-home") as server:
        yield server.url, server.runtime


def test_pools_commands(tmp_path: Path, served: tuple[str, LocalRuntime]) -> None:
    url, runtime = served
    cli = CliRunner()
    api = ["--api", url]
    flow = tmp_path / "slow.yaml"
    flow.write_text(SLOW)
    # bad input: exit 2, nothing sent
    bad = cli.invoke(main, ["pools", "set", "one", "--slots", "0", *api])
    assert bad.exit_code == 2
    assert "slots must be between 1 and" in bad.output
    # applying a workflow whose pool does not exist: exit 2, naming it
    refused = cli.invoke(main, ["apply", str(flow), *api])
    assert refused.exit_code == 2
    assert "unknown pool 'one'" in refused.output
    made = cli.invoke(main, ["pools", "set", "one", "--slots", "1", "--project", "default", *api])
    assert made.output.strip() == "pool default/one: 1 slots, 0 used"
    listed = json.loads(
        cli.invoke(main, ["pools", "list", "--project", "default", "--output", "json", *api]).output
    )
    assert [(p["name"], p["slots"]) for p in listed["pools"]] == [("one", 1)]
    assert cli.invoke(main, ["apply", str(flow), *api]).exit_code == 0
    run_id = json.loads(
        cli.invoke(main, ["trigger", "slow_pair", "--output", "json", *api]).output
    )["run"]["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = json.loads(
            cli.invoke(
                main, ["pools", "show", "one", "--project", "default", "--output", "json", *api]
            ).output
        )
        if shown["waiting"] == 1 and shown["used"] == 1:
            break
        time.sleep(0.1)
    assert [t["task_id"] for t in shown["waiting_tasks"]] == ["b"]
    text = cli.invoke(main, ["pools", "show", "one", "--project", "default", *api]).output
    assert "1/1 used, 1 waiting" in text
    assert f"waiting  {run_id} b" in text
    busy = cli.invoke(main, ["pools", "delete", "one", "--project", "default", *api])
    assert busy.exit_code == 2
    assert "in use" in busy.output
    forced = cli.invoke(main, ["runs", "force-start", run_id, "b", *api])
    assert forced.exit_code == 0, forced.output
    assert forced.output.strip() == f"{run_id} b: running (attempt 1)"
    assert cli.invoke(main, ["runs", "stop", run_id, *api]).exit_code == 0
    deadline = time.monotonic() + 30
    while (pool := runtime.store.get_pool("default/one")) is not None and pool.used:
        assert time.monotonic() < deadline, pool
        time.sleep(0.05)
    gone = cli.invoke(main, ["pools", "delete", "one", "--project", "default", *api])
    assert gone.output.strip() == "deleted: pool default/one"


@pytest.mark.timeout(90)  # it used to wait for ever
def test_trigger_wait_ends_when_a_sub_workflow_and_its_child_share_a_one_slot_pool(
    tmp_path: Path, served: tuple[str, LocalRuntime]
) -> None:
    url, _ = served
    cli = CliRunner()
    api = ["--api", url]
    (tmp_path / "pchild.yaml").write_text(
        "name: pchild\ntasks:\n  c: {type: shell, command: 'true', pool: p1}\n"
    )
    (tmp_path / "pparent.yaml").write_text(
        "name: pparent\ntasks:\n  k: {type: workflow, workflow: pchild, pool: p1}\n"
    )
    assert cli.invoke(main, ["pools", "set", "p1", "--slots", "1", *api]).exit_code == 0
    for name in ("pchild", "pparent"):
        assert cli.invoke(main, ["apply", str(tmp_path / f"{name}.yaml"), *api]).exit_code == 0
    waited = cli.invoke(main, ["trigger", "pparent", "--wait", "--output", "json", *api])
    assert waited.exit_code == 1, waited.output
    k = json.loads(waited.output)["tasks"]["k"]
    assert k["state"] == "failed"
    assert "pool 'p1' can never start task c" in k["error"]
    assert "stratoflow pools set p1 --slots 2" in k["error"]
    shown = json.loads(cli.invoke(main, ["pools", "show", "p1", "--output", "json", *api]).output)
    assert (shown["used"], shown["waiting"]) == (0, 0)


@pytest.mark.timeout(90)  # it used to wait for ever
def test_a_pool_shrunk_below_a_task_warns_and_the_task_fails_at_once(
    tmp_path: Path, served: tuple[str, LocalRuntime]
) -> None:
    # the tester's case: a pool shrunk below a task's pool_slots after its workflow was applied
    url, _ = served
    cli = CliRunner()
    api = ["--api", url]
    (tmp_path / "wide.yaml").write_text(
        "name: wide\ntasks:\n  t: {type: shell, pool: p4, pool_slots: 3, command: echo wide}\n"
    )
    assert cli.invoke(main, ["pools", "set", "p4", "--slots", "3", *api]).exit_code == 0
    assert cli.invoke(main, ["apply", str(tmp_path / "wide.yaml"), *api]).exit_code == 0
    shrunk = cli.invoke(main, ["pools", "set", "p4", "--slots", "2", *api])
    assert shrunk.exit_code == 0, shrunk.output  # an operator may shrink it: a warning
    assert shrunk.stdout.strip() == "pool p4 (global): 2 slots, 0 used"
    assert shrunk.stderr.startswith("warning: workflow default/wide: task t needs 3 slot(s)")
    waited = cli.invoke(main, ["trigger", "wide", "--wait", "--output", "json", *api])
    assert waited.exit_code == 1, waited.output
    t = json.loads(waited.stdout)["tasks"]["t"]
    assert t["state"] == "failed"
    assert "pool 'p4' can never start task t" in t["error"]
    assert "(pool_slots: 3) and the pool has 2" in t["error"]
    assert "stratoflow pools set p4 --slots 3" in t["error"]
    shown = json.loads(cli.invoke(main, ["pools", "show", "p4", "--output", "json", *api]).output)
    assert (shown["used"], shown["waiting"]) == (0, 0)
