"""A run's view is encoded straight from ``views`` (``api.app._view_json``), not through its
model: the body must still be exactly what the documented model (``RunDetail``) would send,
field for field and byte for byte, whatever the run holds."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import BaseModel
from tests.unit import test_api_app
from tests.unit.test_api_app import Api

from stratoflow.api import app as app_module
from stratoflow.api.app import _view_json
from stratoflow.api.models import AppliedVersion, RunDetail, Timeline
from stratoflow.engine import AttemptStatus

api = test_api_app.api  # the fixture

RICH = """\
name: rich
params: {region: eu, limits: {rows: 10}}
tasks:
  first:
    type: shell
    command: echo one
  flaky:
    type: shell
    command: exit 1
    retries: 1
    retry_delay: 0
    depends_on: [first]
  broken:
    type: shell
    command: exit 2
    depends_on: [first]
  after_broken:
    type: shell
    command: echo never
    depends_on: [broken]
  slow:
    type: shell
    command: sleep 1
    depends_on: [first]
"""


def _as_the_model_sends_it(text: str, model: type[BaseModel] = RunDetail) -> str:
    """What ``model`` makes of a body: validated, then encoded by pydantic."""
    return model.model_validate(json.loads(text)).model_dump_json()


def test_every_run_view_is_what_its_model_would_send(api: Api) -> None:
    api.apply(RICH)
    trigger = api.call(
        "POST", "/workflows/rich/runs", {"params": {"region": "zürich 東京"}, "logical_date": None}
    )
    assert trigger.status == 201, trigger.text
    assert trigger.text == _as_the_model_sends_it(trigger.text)  # every task still waiting
    run_id = trigger.body["run"]["id"]
    revision = trigger.body["revision"]
    api.finish(
        run_id,
        "first",
        outputs={
            "text": "naïve ✓ 東京",
            "small": 1e-05,
            "ratio": 0.1,
            "whole": 3.0,
            "nested": {"list": [1, "two", None, True, {"deep": []}]},
            "big": "x" * 200_000,  # cut in the view: outputs_truncated says how
            "nan": math.nan,  # an output can hold one; JSON cannot: null, as the model does
        },
    )
    api.finish(run_id, "flaky", AttemptStatus.FAILED)  # retried: two attempts in its history
    api.finish(run_id, "broken", AttemptStatus.FAILED)  # its child: upstream_failed
    api.scheduler.step()  # "slow" and the retry of "flaky" start and stay running
    full = api.call("GET", f"/runs/{run_id}")
    assert full.status == 200, full.text
    assert full.text == _as_the_model_sends_it(full.text)
    tasks = full.body["tasks"]
    # the run holds what the comparison is meant to cover
    assert tasks["first"]["outputs_truncated"]["big"]["shown"] < 200_000
    assert tasks["first"]["outputs"]["nan"] is None
    assert tasks["first"]["outputs"]["small"] == 1e-05
    assert [a["state"] for a in tasks["flaky"]["history"]] == ["failed", "running"]
    assert tasks["after_broken"]["state"] == "upstream_failed"
    assert tasks["slow"]["state"] == "running"
    assert tasks["slow"]["ended_at"] is None
    assert tasks["slow"]["duration_seconds"] is None
    # a delta since the trigger's revision, and the tag it answers with
    delta = api.call("GET", f"/runs/{run_id}", query={"since": str(revision)})
    assert delta.status == 200, delta.text
    assert delta.body["full"] is False
    assert delta.text == _as_the_model_sends_it(delta.text)
    assert (
        api.call("GET", f"/runs/{run_id}", headers={"If-None-Match": full.headers["ETag"]}).status
        == 304
    )


def test_text_that_cannot_be_utf8_is_escaped_not_a_500() -> None:
    # a lone surrogate (JSON "\ud800" read by Python) cannot be UTF-8: pydantic refuses it
    view: dict[str, Any] = {"tasks": {"t": {"outputs": {"odd": "a\ud800b"}, "n": math.inf}}}
    text = _view_json(view)
    assert "\\ud800" in text
    assert text.isascii()
    assert json.loads(text)["tasks"]["t"]["n"] is None  # as the model writes an infinity
    assert json.loads(text)["tasks"]["t"]["outputs"]["odd"] == "a\ud800b"


def _record(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, Any], str]]:
    """Every view the API encodes from now on, with its text: the dict itself, before any
    JSON round trip (which would turn a datetime, a tuple or an enum into what the model
    would have made of it, and hide it)."""
    encoded: list[tuple[dict[str, Any], str]] = []

    def recorded(view: dict[str, Any]) -> str:
        text = _view_json(view)
        encoded.append((view, text))
        return text

    monkeypatch.setattr(app_module, "_view_json", recorded)
    return encoded


def test_each_run_view_is_its_model_made_from_the_same_dict(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run view's dicts, not only its JSON, are what ``RunDetail`` would encode: the
    trigger's 201 and its idempotent 200, the whole view and a delta."""
    encoded = _record(monkeypatch)
    api.apply(RICH)
    encoded.clear()  # the apply's answer (its own test below)
    first = api.call("POST", "/workflows/rich/runs", {"run_id": "k"})
    again = api.call("POST", "/workflows/rich/runs", {"run_id": "k"})
    assert (first.status, again.status) == (201, 200), again.text
    run_id = first.body["run"]["id"]
    api.finish(run_id, "first", outputs={"ratio": 0.1, "nan": math.nan, "text": "東京"})
    api.finish(run_id, "flaky", AttemptStatus.FAILED)
    api.scheduler.step()
    full = api.call("GET", f"/runs/{run_id}")
    delta = api.call("GET", f"/runs/{run_id}", query={"since": str(first.body["revision"])})
    replies = [first, again, full, delta]
    assert [r.status for r in replies] == [201, 200, 200, 200]
    assert [text for _, text in encoded] == [r.text for r in replies]
    for view, text in encoded:
        assert text == RunDetail.model_validate(view).model_dump_json()
    assert delta.body["full"] is False
    assert delta.body["tasks"]


def test_the_timeline_is_what_its_model_would_send(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timeline (the Gantt tab polls it) is encoded from its dicts as the run view is:
    its body must be what ``Timeline`` makes of the very dict the route built (compared
    before any JSON round trip: a value of another type than the model's, a datetime where
    it says text, or a field out of its order, would show), for a run with retries, a
    running attempt and an upstream failure."""
    encoded = _record(monkeypatch)
    api.apply(RICH)
    run_id = api.call("POST", "/workflows/rich/runs", {}).body["run"]["id"]
    api.finish(run_id, "first")
    api.finish(run_id, "flaky", AttemptStatus.FAILED)  # retried: two bars
    api.finish(run_id, "broken", AttemptStatus.FAILED)
    api.scheduler.step()  # "slow" and the retry of "flaky" start and stay running
    encoded.clear()
    reply = api.call("GET", f"/runs/{run_id}/timeline")
    assert reply.status == 200, reply.text
    assert len(encoded) == 1
    view, text = encoded[0]
    assert reply.text == text
    assert text == Timeline.model_validate(view).model_dump_json()
    assert text == _as_the_model_sends_it(text, Timeline)
    # the run holds what the comparison is meant to cover
    bars = {t["task_id"]: t["attempts"] for t in reply.body["tasks"]}
    assert [b["state"] for b in bars["flaky"]] == ["failed", "running"]
    assert bars["slow"][0]["ended_at"] is None
    assert "after_broken" in bars
    assert reply.body["start"] is not None
    assert reply.body["end"] is not None


def test_an_applys_answer_is_what_its_model_would_send(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``POST /workflows`` answers with the whole version (its document and source) encoded
    from the view's dict: the very dict must be what ``AppliedVersion`` would encode, on a
    new version (201) and an unchanged one (200), for a document with non-ASCII text, a
    schedule, nested params and numbers of every kind."""
    encoded = _record(monkeypatch)
    source = (
        RICH.replace("name: rich", "name: rich\ndescription: naïve ✓ 東京").replace(
            "limits: {rows: 10}", "limits: {rows: 10, ratio: 0.1, tiny: 1.0e-05, on: true}"
        )
        + "schedule:\n  cron: '0 3 * * *'\n  timezone: Europe/Paris\n"
    )
    first = api.call("POST", "/workflows", {"source": source})
    again = api.call("POST", "/workflows", {"source": source})
    assert (first.status, again.status) == (201, 200), again.text
    assert (first.body["created"], again.body["created"]) == (True, False)
    assert first.body["source"] == source
    assert first.body["document"]["params"]["limits"]["ratio"] == 0.1
    assert [text for _, text in encoded] == [first.text, again.text]
    for view, text in encoded:
        assert text == AppliedVersion.model_validate(view).model_dump_json()
