"""The api function's answers where AWS differed from the local runtime: an EventBridge
Scheduler failure after the version was stored, and the ``before`` cursor of ``GET /runs``
on another project's run (the store's listing: ``EnableReadModel=false``)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from .harness import aws_stack

NIGHTLY = (
    "name: nightly\nschedule: {cron: '0 2 * * *'}\ntasks:\n  a: {type: shell, command: echo}\n"
)


def test_a_schedule_sync_failure_says_the_version_is_stored_and_to_apply_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with aws_stack(monkeypatch) as stack:
        client = stack.functions["api"].function.scheduler.schedules.client
        refused = {"on": True}

        def refuse(**_: Any) -> None:
            if refused["on"]:
                raise ClientError(
                    {"Error": {"Code": "ValidationException", "Message": "Invalid expression."}},
                    "CreateSchedule",
                )

        client.meta.events.register("before-call.scheduler.CreateSchedule", refuse)
        status, body = stack.api("POST", "/workflows", {"source": NIGHTLY})
        # 502: the request was valid and its own part is done (the version is stored), a
        # service behind the API failed; not 503 (that promises nothing was changed)
        assert status == 502, body
        assert body["error"] == "schedule_sync_failed"
        assert "could not create its EventBridge schedule" in body["message"]
        assert "ValidationException: Invalid expression." in body["message"]
        assert "the workflow version is stored; apply it again to retry" in body["message"]
        status, body = stack.api("GET", "/workflows/nightly")
        assert (status, body["version"]) == (200, 1)

        refused["on"] = False  # applying the same source again completes the sync
        status, body = stack.api("POST", "/workflows", {"source": NIGHTLY})
        assert (status, body["created"]) == (200, False), body
        group = stack.env["STRATOFLOW_SCHEDULE_GROUP"]
        names = [
            s["Name"] for s in stack.scheduler_client.list_schedules(GroupName=group)["Schedules"]
        ]
        assert names == ["default.nightly"]
