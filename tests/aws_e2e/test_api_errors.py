"""The api function's answers where AWS differed from the local runtime: an EventBridge
Scheduler failure after the version was stored, and the ``before`` cursor of ``GET /runs``
on another project's run (the store's listing: ``EnableReadModel=false``)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from .harness import ACCOUNT, ROLE_MAP, aws_stack

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


def test_the_runs_cursor_says_nothing_of_runs_the_caller_may_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alpha_role = f"arn:aws:iam::{ACCOUNT}:role/AlphaAdmin"
    monkeypatch.setitem(ROLE_MAP, alpha_role, {"alpha": "admin"})
    alpha = f"arn:aws:sts::{ACCOUNT}:assumed-role/AlphaAdmin/s"
    source = "name: w\nproject: {}\ntasks:\n  a: {{type: shell, command: echo}}\n"
    with aws_stack(monkeypatch) as stack:
        for project in ("alpha", "beta"):
            status, body = stack.api("POST", "/workflows", {"source": source.format(project)})
            assert status == 201, body
        status, body = stack.api("POST", "/workflows/w/runs", {"run_id": "k1"}, {"project": "beta"})
        assert status == 201, body
        beta_run = body["run"]["id"]
        status, body = stack.api(
            "POST", "/workflows/w/runs", {"run_id": "k1"}, {"project": "alpha"}
        )
        assert status == 201, body
        alpha_run = body["run"]["id"]

        # as the local runtime answers a cursor it did not return, whether or not the run exists
        refused = {
            "error": "invalid_input",
            "message": "cursor: not a cursor this API returned",
            "problems": [
                {"path": "cursor", "message": "not a cursor this API returned", "line": None}
            ],
        }
        for before in (beta_run, "beta.w.nonexistent", "alpha.w.nonexistent"):
            answer = stack.api(
                "GET", "/runs", None, {"project": "alpha", "before": before}, caller=alpha
            )
            assert answer == (400, refused), before
        # the cursor this API returns still pages on
        status, body = stack.api(
            "GET", "/runs", None, {"project": "alpha", "before": alpha_run}, caller=alpha
        )
        assert (status, body) == (200, {"runs": [], "next": None})


def test_a_variable_written_but_answered_with_a_throttle_is_answered_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The variable's transaction is applied, its answer lost (a throttle): the API answers
    as if the first try had been answered (201 new, then the delete that deleted it)."""
    with aws_stack(monkeypatch) as stack:
        client = stack.functions["api"].function.scheduler.store.client
        real = client.transact_write_items
        armed = {"on": False}

        def applied_then_throttled(**kwargs: Any) -> Any:
            out = real(**kwargs)
            if armed["on"]:
                armed["on"] = False
                error = {"Error": {"Code": "ThrottlingException", "Message": "lost answer"}}
                raise ClientError(error, "TransactWriteItems")  # type: ignore[arg-type]
            return out

        monkeypatch.setattr(client, "transact_write_items", applied_then_throttled)
        armed["on"] = True
        status, body = stack.api("PUT", "/variables/colour", {"value": "blue"})
        assert (status, armed["on"]) == (201, False), body
        armed["on"] = True
        status, body = stack.api("DELETE", "/variables/colour")
        assert armed["on"] is False
        assert status in (200, 204), body
        status, _ = stack.api("GET", "/variables/colour")
        assert status == 404
