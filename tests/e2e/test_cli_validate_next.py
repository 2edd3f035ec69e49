"""``stratoflow validate FILE --next N``: the next times a workflow's schedule fires, before it
is applied (DolphinScheduler's schedule preview, Airflow's ``dags next-execution``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratoflow.cli import main

NOW = datetime(2027, 3, 26, 12, 0, tzinfo=UTC)  # two days before Paris springs forward


@pytest.fixture(autouse=True)
def _fixed_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stratoflow.cli._now", lambda: NOW)


def _file(tmp_path: Path, name: str, schedule: str | None) -> str:
    path = tmp_path / f"{name}.yaml"
    head = f"name: {name}\n" + (f"schedule: {schedule}\n" if schedule else "")
    path.write_text(head + "tasks:\n  a: {type: shell, command: 'true'}\n")
    return str(path)


def test_lists_the_next_runs_in_the_schedules_zone_and_skips_the_dst_gap(
    tmp_path: Path,
) -> None:
    nightly = _file(tmp_path, "nightly", "{cron: '30 2 * * *', timezone: Europe/Paris}")
    result = CliRunner().invoke(main, ["validate", nightly, "--next", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "  next 3 runs (30 2 * * *, Europe/Paris):",
        "    2027-03-27T02:30:00+01:00",
        # 2027-03-28 02:30 does not exist in Paris (clocks go 02:00 -> 03:00): no run
        "    2027-03-29T02:30:00+02:00",
        "    2027-03-30T02:30:00+02:00",
    ]


def test_json_gives_utc_times_and_an_empty_list_without_a_schedule(tmp_path: Path) -> None:
    nightly = _file(tmp_path, "nightly", "{cron: 'cron(0 6 ? * MON *)'}")
    adhoc = _file(tmp_path, "adhoc", None)
    result = CliRunner().invoke(
        main, ["validate", nightly, adhoc, "--next", "2", "--output", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report[0]["workflows"][0]["next_runs"] == [
        "2027-03-29T06:00:00+00:00",
        "2027-04-05T06:00:00+00:00",
    ]
    assert report[1]["workflows"][0]["next_runs"] == []


def test_the_window_bounds_the_list_and_says_why_it_is_short(tmp_path: Path) -> None:
    soon = _file(
        tmp_path,
        "soon",
        "{cron: '0 9 * * *', start: 2027-04-01T00:00:00Z, end: 2027-04-02T12:00:00Z}",
    )
    result = CliRunner().invoke(main, ["validate", soon, "--next", "5"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "  next 2 runs (0 9 * * *, UTC):",
        "    2027-04-01T09:00:00+00:00",
        "    2027-04-02T09:00:00+00:00",
        "  no more runs (0 9 * * *, UTC): its end is 2027-04-02T12:00:00+00:00",
    ]
    over = _file(tmp_path, "over", "{cron: '0 9 * * *', end: 2027-01-01T00:00:00Z}")
    result = CliRunner().invoke(main, ["validate", over, "--next", "1"])
    assert result.output.splitlines()[1:] == [
        "  no run to come (0 9 * * *, UTC): its end is 2027-01-01T00:00:00+00:00"
    ]


def test_without_next_nothing_is_added(tmp_path: Path) -> None:
    nightly = _file(tmp_path, "nightly", "{cron: '30 2 * * *'}")
    result = CliRunner().invoke(main, ["validate", nightly, "--output", "json"])
    assert result.exit_code == 0, result.output
    assert "next_runs" not in json.loads(result.output)[0]["workflows"][0]


@pytest.mark.parametrize("count", ["-1", "101", "many"])
def test_a_count_out_of_range_is_refused_before_any_file_is_read(
    tmp_path: Path, count: str
) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "missing.yaml"), "--next", count])
    assert result.exit_code == 2
    assert "'--next'" in result.output
    assert "missing.yaml" not in result.output


def test_upcoming_firings_is_bounded() -> None:
    from stratoflow.model import upcoming_firings
    from stratoflow.model._workflow import Schedule

    every_minute = Schedule(cron="* * * * *")
    assert upcoming_firings(every_minute, NOW, 0) == []
    assert len(upcoming_firings(every_minute, NOW, 100)) == 100
    for count in (-1, 101):
        with pytest.raises(ValueError, match="count must be 0 to 100"):
            upcoming_firings(every_minute, NOW, count)
