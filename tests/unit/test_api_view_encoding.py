"""A run's view is encoded straight from ``views`` (``api.app._view_json``), not through its
model: the body must still be exactly what the documented model (``RunDetail``) would send,
field for field and byte for byte, whatever the run holds."""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel
from tests.unit import test_api_app
from tests.unit.test_api_app import Api

from stratoflow.api.app import _view_json
from stratoflow.api.models import RunDetail
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
