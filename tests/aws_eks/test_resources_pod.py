"""Resource files of a kubernetes task (issue 13, item 4): the launcher's manifest names the
pinned versions for the reporter (never another project's key), the reporter fetches them
as the pod's role into the shared volume, and the wrapper runs the command there; a version
that cannot be fetched fails the attempt naming it, and the command never runs. The scripts
run for real under each POSIX shell here, with a fake ``aws`` (see test_reporter)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stratoflow.adapters.aws.eks import RESOURCES_DIR, InvalidTask, build_job
from tests.aws_eks.test_manifest import SETTINGS, containers, execution_input
from tests.aws_eks.test_reporter import Pod, pod  # noqa: F401 - the fixture, used by name

BUCKET = "stratoflow-artifacts"
RESOURCES = [
    {
        "path": "sql/load.sql",
        "version": "v1.abc",
        "uri": f"s3://{BUCKET}/resources/analytics/sql/load.sql",
    },
    {"path": "data.csv", "version": "v7", "uri": f"s3://{BUCKET}/resources/analytics/data.csv"},
]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_the_manifest_names_the_pinned_versions() -> None:
    job = build_job({**execution_input(), "resources": RESOURCES}, "token", SETTINGS).job
    boxes = containers(job)
    reporter, task = env_of(boxes["reporter"]), env_of(boxes["task"])
    assert reporter["STRATOFLOW_RESOURCES"] == "v1.abc sql/load.sql\nv7 data.csv"
    assert reporter["STRATOFLOW_RESOURCES_BUCKET"] == BUCKET
    assert reporter["STRATOFLOW_RESOURCES_PREFIX"] == "resources/analytics/"
    assert task["STRATOFLOW_RESOURCES_DIR"] == RESOURCES_DIR
    plain = env_of(containers(build_job(execution_input(), "token", SETTINGS).job)["task"])
    assert "STRATOFLOW_RESOURCES_DIR" not in plain


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (
            {**RESOURCES[1], "uri": f"s3://{BUCKET}/resources/other/data.csv"},
            "not project 'analytics'",
        ),
        ({**RESOURCES[1], "path": "../data.csv"}, "'..'"),
        ({**RESOURCES[1], "version": "v7; rm -rf /"}, "not an S3 version id"),
        ({"path": "data.csv"}, "lacks"),
    ],
)
def test_a_bad_resource_entry_is_refused(entry: dict[str, str], says: str) -> None:
    with pytest.raises(InvalidTask) as err:
        build_job({**execution_input(), "resources": [entry]}, "token", SETTINGS)
    assert says in str(err.value)


def with_resources(pod: Pod, stored: dict[str, str]) -> None:  # noqa: F811
    """The pod as build_job makes it for a task listing sql/load.sql and data.csv."""
    work = pod.shared / "work"
    pod.env.update(
        FAKE_AWS_OBJECTS=json.dumps(stored),
        STRATOFLOW_RESOURCES="v1.abc sql/load.sql\nv7 data.csv",
        STRATOFLOW_RESOURCES_BUCKET=BUCKET,
        STRATOFLOW_RESOURCES_PREFIX="resources/analytics/",
        STRATOFLOW_RESOURCES_DIR=str(work),
    )


def test_the_command_runs_where_the_pinned_files_are(pod: Pod) -> None:  # noqa: F811
    with_resources(pod, {
        f"{BUCKET}/resources/analytics/sql/load.sql@v1.abc": "select 1;",
        f"{BUCKET}/resources/analytics/data.csv@v7": "a,b",
    })  # fmt: skip
    code, output = pod.run(
        "sh", "-c", 'echo "sql=$(cat sql/load.sql)" >> "$STRATOFLOW_OUTPUT"; '
        'echo "csv=$(cat data.csv)" >> "$STRATOFLOW_OUTPUT"',
    )  # fmt: skip
    assert code == 0, output
    calls = pod.calls()
    fetched = [c["args"][:8] for c in calls if c["args"][0] == "s3api"]
    assert fetched == [
        ["s3api", "get-object", "--bucket", BUCKET, "--key", "resources/analytics/sql/load.sql",
         "--version-id", "v1.abc"],
        ["s3api", "get-object", "--bucket", BUCKET, "--key", "resources/analytics/data.csv",
         "--version-id", "v7"],
    ]  # fmt: skip
    success = calls[-1]
    assert success["args"][1] == "send-task-success"
    document = json.loads(next(iter(success["files"].values())))
    assert document["outputs"] == {"sql": "select 1;", "csv": "a,b"}


def test_a_version_that_cannot_be_fetched_fails_naming_it_and_nothing_runs(pod: Pod) -> None:  # noqa: F811
    with_resources(pod, {f"{BUCKET}/resources/analytics/sql/load.sql@v1.abc": "select 1;"})
    ran = pod.root / "ran"
    code, _ = pod.run("sh", "-c", f"touch {ran}")
    assert code == 1
    assert not ran.exists()
    failure = pod.calls()[-1]
    assert failure["args"][1] == "send-task-failure"
    cause = json.loads(next(iter(failure["files"].values())))
    assert cause["exit_code"] is None
    assert cause["error"] == (
        "resource 'data.csv' version v7 (pinned when the run was created) could not be "
        "fetched: NoSuchVersion"
    )
