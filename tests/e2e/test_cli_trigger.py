"""``stratoflow trigger --logical-date`` and ``stratoflow run --logical-date`` read a naive date
or date-time as ``backfill`` reads ``--start`` (the schedule's time zone, UTC without one),
refuse a malformed or future one naming the flag (exit 2, no run made), and ``stratoflow
apply`` refuses a dependency on a task its existing upstream workflow does not have."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratoflow.cli import main
from stratoflow.ports import RunQuery
from tests.cli_server import Server, running_api
from tests.unit.test_dependency_apply import SALES, report

pytestmark = pytest.mark.e2e

# a start far ahead: the server's cron loop fires nothing while the test runs
TZ_DAILY = """\
name: tz_daily
schedule: {cron: "0 6 * * *", timezone: Asia/Shanghai, start: 2090-01-01T00:00:00}
tasks:
  a: {type: shell, command: "echo {{ ds }}"}
"""
PLAIN = "name: plain\ntasks:\n  a: {type: shell, command: 'echo {{ ds }}'}\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_api(tmp_path / "server-home") as served:
        yield served


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _runs(server: Server) -> list[str]:
    return [r.id for r in server.runtime.store.list_runs(RunQuery())]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-01-05", "2026-01-04T16:00:00+00:00"),  # 00:00 in Shanghai
        ("2026-01-05T06:00:00", "2026-01-04T22:00:00+00:00"),  # 06:00 in Shanghai
        ("2026-01-05T06:00:00Z", "2026-01-05T06:00:00+00:00"),  # zoned: as before
    ],
)
def test_trigger_reads_a_naive_logical_date_in_the_schedule_zone(
    server: Server, tmp_path: Path, given: str, expected: str
) -> None:
    assert server.run("apply", _file(tmp_path, "tz.yaml", TZ_DAILY))[0] == 0
    code, out = server.run("trigger", "tz_daily", "--logical-date", given, "--output", "json")
    assert code == 0, out
    assert json.loads(out)["run"]["logical_date"] == expected


@pytest.mark.parametrize("given", ["yesterday", "2026-02-30", "05/01/2026"])
def test_trigger_refuses_a_malformed_logical_date_naming_the_flag(
    server: Server, tmp_path: Path, given: str
) -> None:
    assert server.run("apply", _file(tmp_path, "tz.yaml", TZ_DAILY))[0] == 0
    code, out = server.run("trigger", "tz_daily", "--logical-date", given)
    assert code == 2, out
    assert f"--logical-date {given!r} is not" in out
    assert _runs(server) == []


def test_trigger_refuses_a_future_logical_date_naming_the_flag(
    server: Server, tmp_path: Path
) -> None:
    assert server.run("apply", _file(tmp_path, "tz.yaml", TZ_DAILY))[0] == 0
    # two days ahead: a naive date is read in Shanghai (UTC+8), where the start of UTC's
    # tomorrow has already come from 16:00 UTC on
    ahead = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    for given in (ahead, f"{ahead}T00:00:00Z"):
        code, out = server.run("trigger", "tz_daily", "--logical-date", given)
        assert code == 2, out
        assert "--logical-date" in out, out
        assert "after now" in out, out
    assert _runs(server) == []
    # a day that has come: accepted
    past = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    assert server.run("trigger", "tz_daily", "--logical-date", past)[0] == 0


def test_run_takes_a_naive_logical_date_and_refuses_a_future_one(
    tmp_path: Path,
) -> None:
    cli = CliRunner()
    flow = _file(tmp_path, "plain.yaml", PLAIN)
    home = tmp_path / "home"
    ran = cli.invoke(
        main,
        ["run", flow, "--home", str(home), "--output", "json", "--logical-date", "2026-01-05"],
    )
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["run"]["logical_date"] == "2026-01-05T00:00:00+00:00"

    other = tmp_path / "other-home"
    later = (datetime.now(UTC) + timedelta(hours=2)).replace(tzinfo=None).isoformat()
    refused = cli.invoke(main, ["run", flow, "--home", str(other), "--logical-date", later])
    assert refused.exit_code == 2, refused.output
    assert "--logical-date" in refused.output
    assert "after now" in refused.output
    assert not other.exists()  # refused before any state was made


def test_apply_refuses_a_dependency_on_a_task_its_upstream_lacks(
    server: Server, tmp_path: Path
) -> None:
    assert server.run("apply", _file(tmp_path, "sales.yaml", SALES))[0] == 0
    code, out = server.run("apply", _file(tmp_path, "report.yaml", report("publsh")))
    assert code == 2, out
    for needle in ("wait_for_sales", "analytics/sales_daily", "'publsh'"):
        assert needle in out, out
    listed = server.run("workflows", "list", "--project", "analytics", "--output", "json")[1]
    assert [w["name"] for w in json.loads(listed)["workflows"]] == ["sales_daily"]
    assert server.run("apply", _file(tmp_path, "ok.yaml", report("publish")))[0] == 0
