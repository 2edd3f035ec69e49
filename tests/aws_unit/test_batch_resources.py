"""The fetch container's script of a batch task with resource files (batch_resources), run by
the real /bin/sh with a stand-in ``aws`` on PATH that writes what it was asked for; and the
task container's command, run in the work directory before the user's argv."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from stratoflow.adapters.aws import batch_resources, batch_secrets

FAKE_AWS = """#!/bin/sh
# aws s3api get-object --bucket B --key K --version-id V OUT: writes "B K V" into OUT
while [ $# -gt 1 ]; do
    case $1 in
    --bucket) bucket=$2; shift 2 ;;
    --key) key=$2; shift 2 ;;
    --version-id) version=$2; shift 2 ;;
    *) shift ;;
    esac
done
[ "$version" = gone ] && { echo "An error occurred (NoSuchVersion)" >&2; exit 254; }
printf '%s %s %s' "$bucket" "$key" "$version" >"$1"
"""


def run_fetch(tmp_path: Path, files: list[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "aws").write_text(FAKE_AWS)
    (bin_dir / "aws").chmod(0o755)
    entries = [
        {"path": p, "version": v, "uri": f"s3://bkt/resources/analytics/{p}"} for p, v in files
    ]
    lines, bucket = batch_resources.fetch_list(entries, "analytics")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STRATOFLOW_RESOURCES": lines,
        "STRATOFLOW_RESOURCES_BUCKET": bucket,
        "STRATOFLOW_RESOURCES_PREFIX": "resources/analytics/",
        "STRATOFLOW_RESOURCES_DIR": str(tmp_path / "work"),
    }
    return subprocess.run(
        ["/bin/sh", "-c", batch_resources.FETCH_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_fetch_script_gets_each_pinned_version_into_its_path(tmp_path: Path) -> None:
    done = run_fetch(tmp_path, [("data.csv", "v1"), ("sql/deep/load.sql", "v2.x")])
    assert done.returncode == 0, done.stderr
    work = tmp_path / "work"
    assert (work / "data.csv").read_text() == "bkt resources/analytics/data.csv v1"
    assert (work / "sql/deep/load.sql").read_text() == (
        "bkt resources/analytics/sql/deep/load.sql v2.x"
    )
    assert work.stat().st_mode & 0o777 == 0o777  # the user's image may run as any user


def test_a_version_that_cannot_be_fetched_stops_it_naming_the_file(tmp_path: Path) -> None:
    done = run_fetch(tmp_path, [("a.txt", "v1"), ("b.txt", "gone"), ("c.txt", "v3")])
    assert done.returncode == 1
    assert "resource 'b.txt' version gone (pinned when the run was created)" in done.stderr
    assert not (tmp_path / "work" / "c.txt").exists()


def test_the_command_runs_in_the_work_directory() -> None:
    plain = batch_resources.in_work_dir(["cat", "data.csv"])
    assert plain[:2] == ["/bin/sh", "-c"]
    assert plain[2].startswith("cd /stratoflow/work || exit 1\n")
    assert plain[3:] == [batch_secrets.WRAPPER_NAME, "cat", "data.csv"]
    # the secrets wrapper keeps its script and argv, with the cd first
    wrapped = batch_secrets.launch(["load", "--pw={{ secrets.PW }}"], {}).command
    moved = batch_resources.in_work_dir(wrapped)
    assert moved[2] == "cd /stratoflow/work || exit 1\n" + wrapped[2]
    assert moved[3:] == wrapped[3:]
