"""The pod watcher (issue 8, item 4): a pod whose task container was OOM-killed as a whole,
that was evicted, or whose image cannot be pulled never reports from inside; the watcher
(the launcher function on a one-minute schedule) fails its attempt through its task token
with the reason, and deletes its Job. Against the fake Kubernetes API (conftest.FakeKube)
over real TLS; the pods' statuses are what the kubelet would write."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stratoflow.adapters.aws.eks import (
    ENDED_GRACE_SECONDS,
    FAILURE_POD,
    PULL_GRACE_SECONDS,
    handle,
    job_name,
    lost_pod,
    watch_pods,
)
from tests.aws_eks.conftest import FakeKube
from tests.aws_eks.test_launcher import RecordingSfn, aws, make_jobs, point_cluster_at
from tests.aws_eks.test_manifest import execution_input

NOW = datetime(2026, 11, 21, 2, 10, tzinfo=UTC)
RUN = "sales_daily-20261121T020000-abc123"
JOB = job_name(RUN, "load_orders", 2)


def stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_of(kube: FakeKube, status: dict[str, Any], name: str = JOB) -> dict[str, Any]:
    """The pod the Job controller makes from the launched Job's template, with ``status``."""
    job = kube.get("jobs", "stratoflow", name)
    assert job is not None
    template = job["spec"]["template"]["metadata"]
    pod = {
        "metadata": {
            "name": f"{name}-x7k2p",
            "namespace": "stratoflow",
            "labels": {**template["labels"], "job-name": name},
            "annotations": template["annotations"],
            "creationTimestamp": stamp(600),
        },
        "status": status,
    }
    kube.objects[("pods", "stratoflow", pod["metadata"]["name"])] = pod
    return pod


def running(name: str) -> dict[str, Any]:
    return {"name": name, "state": {"running": {"startedAt": stamp(300)}}}


def terminated(name: str, reason: str, code: int, ago: float = 30) -> dict[str, Any]:
    return {
        "name": name,
        "state": {"terminated": {"reason": reason, "exitCode": code, "finishedAt": stamp(ago)}},
    }


OOM = {
    "phase": "Running",
    "startTime": stamp(300),
    "containerStatuses": [running("reporter"), terminated("task", "OOMKilled", 137)],
}
EVICTED = {
    "phase": "Failed",
    "reason": "Evicted",
    "message": "The node was low on resource: memory.",
    "containerStatuses": [terminated("reporter", "Error", 137), terminated("task", "Error", 137)],
}


__all__ = ["aws"]  # the fixture, shared with test_launcher


@pytest.fixture
def launched(aws: None, fake_kube: FakeKube) -> FakeKube:
    point_cluster_at(fake_kube)
    make_jobs().launch(execution_input(), "token-1")
    return fake_kube


def test_an_oom_killed_task_container_fails_its_attempt_with_the_reason(
    launched: FakeKube,
) -> None:
    pod_of(launched, OOM)
    sfn = RecordingSfn([])

    result = watch_pods(make_jobs(), sfn, NOW)

    assert result["failed"] == [
        {"job": JOB, "run_id": RUN, "task_id": "load_orders", "attempt": 2, "reason": "OOMKilled"}
    ]
    [call] = sfn.calls
    assert call["taskToken"] == "token-1"
    assert call["error"] == FAILURE_POD
    cause = json.loads(call["cause"])
    assert cause["reason"] == "OOMKilled"
    assert cause["exit_code"] == 137
    assert "more memory than its limit" in cause["error"]
    # the Job (and the token Secret it owns) is deleted: nothing keeps waiting in the pod
    assert launched.get("jobs", "stratoflow", JOB) is None
    assert launched.get("secrets", "stratoflow", JOB) is None
    # the next pass still lists the dying pod, and sends nothing more
    assert watch_pods(make_jobs(), sfn, NOW)["failed"] == []
    assert len(sfn.calls) == 1


def test_an_evicted_pod_fails_its_attempt(launched: FakeKube) -> None:
    pod_of(launched, EVICTED)
    sfn = RecordingSfn([])
    [failed] = watch_pods(make_jobs(), sfn, NOW)["failed"]
    assert failed["reason"] == "Evicted"
    assert "low on resource: memory" in json.loads(sfn.calls[0]["cause"])["error"]


def test_pods_that_report_for_themselves_are_left_alone(launched: FakeKube) -> None:
    cases = {
        "running": {
            "phase": "Running",
            "containerStatuses": [running("reporter"), running("task")],
        },
        "task done, reporter reporting": {
            "phase": "Running",
            "containerStatuses": [running("reporter"), terminated("task", "Completed", 0, 120)],
        },
        "task failed just now": {
            "phase": "Running",
            "containerStatuses": [
                running("reporter"),
                terminated("task", "Error", 3, ENDED_GRACE_SECONDS - 5),
            ],
        },
        "failed and reported": {
            "phase": "Failed",
            "containerStatuses": [
                terminated("reporter", "Completed", 0),
                terminated("task", "Error", 3),
            ],
        },
        "at its deadline": {"phase": "Failed", "reason": "DeadlineExceeded"},
        "pulling for a minute": {
            "phase": "Pending",
            "startTime": stamp(60),
            "containerStatuses": [
                running("reporter"),
                {"name": "task", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
            ],
        },
    }
    for what, status in cases.items():
        assert lost_pod(pod_of(launched, status), NOW) is None, what
    sfn = RecordingSfn([])
    assert watch_pods(make_jobs(), sfn, NOW)["failed"] == []
    assert sfn.calls == []
    assert launched.get("jobs", "stratoflow", JOB) is not None


def test_a_task_that_could_not_run_or_pull_is_failed_after_its_grace(launched: FakeKube) -> None:
    cannot_run = pod_of(
        launched,
        {
            "phase": "Running",
            "containerStatuses": [
                running("reporter"),
                terminated("task", "ContainerCannotRun", 128, 60),
            ],
        },
    )
    found = lost_pod(cannot_run, NOW)
    assert found is not None
    assert (found.reason, found.exit_code) == ("ContainerCannotRun", 128)
    no_image = pod_of(
        launched,
        {
            "phase": "Pending",
            "startTime": stamp(PULL_GRACE_SECONDS + 1),
            "containerStatuses": [
                running("reporter"),
                {
                    "name": "task",
                    "state": {
                        "waiting": {"reason": "ImagePullBackOff", "message": "no such image"}
                    },
                },
            ],
        },
    )
    found = lost_pod(no_image, NOW)
    assert found is not None
    assert found.error == "task container cannot start: ImagePullBackOff: no such image"


def test_a_token_already_used_is_ignored_and_the_job_still_deleted(launched: FakeKube) -> None:
    pod_of(launched, OOM)

    class Expired(RecordingSfn):
        def send_task_failure(self, **kwargs: Any) -> None:
            raise ClientError({"Error": {"Code": "TaskTimedOut", "Message": "gone"}}, "Send")

    assert len(watch_pods(make_jobs(), Expired([]), NOW)["failed"]) == 1
    assert launched.get("jobs", "stratoflow", JOB) is None


def test_without_cluster_wide_listing_the_stacks_namespace_is_watched(launched: FakeKube) -> None:
    pod_of(launched, OOM)
    launched.fail[("GET", "pods")] = 403
    sfn = RecordingSfn([])
    assert len(watch_pods(make_jobs(), sfn, NOW)["failed"]) == 1
    paths = [r.path for r in launched.requests if r.method == "GET" and r.path.endswith("/pods")]
    assert paths == ["/api/v1/pods", "/api/v1/namespaces/stratoflow/pods"]


def test_the_scheduled_event_runs_the_watcher(launched: FakeKube) -> None:
    pod_of(launched, EVICTED)
    sfn = RecordingSfn([])
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    result = handle(make_jobs(), sfn, event)
    assert result["status"] == "watched"
    assert [f["reason"] for f in result["failed"]] == ["Evicted"]
