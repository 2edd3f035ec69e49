"""Parent and child runs link both ways in a real browser (headless Chromium) against a real
local server: the parent's sub-workflow task shows its child run, whose page names the
parent and its task. Screenshots are saved in artifacts/browser/."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Shots
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

CHILD = """\
name: ui_child
params: {region: us}
tasks:
  extract: {type: shell, command: 'echo "rows=7" >> "$STRATOFLOW_OUTPUT"'}
"""
PARENT = """\
name: ui_parent
tasks:
  sub: {type: workflow, workflow: ui_child, params: {region: eu}}
  report: {type: shell, depends_on: [sub], command: 'echo "{{ tasks.sub.outputs.extract.rows }}"'}
"""


def test_parent_and_child_runs_link_both_ways(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    shot = Shots(page, "subworkflow")
    for source in (CHILD, PARENT):
        assert api.post("/workflows", json={"source": source}).status_code in (200, 201)
    made = api.post("/workflows/ui_parent/runs", json={})
    assert made.status_code == 201, made.text
    run_id = made.json()["run"]["id"]
    deadline = time.monotonic() + 60
    while api.get(f"/runs/{run_id}").json()["run"]["state"] != "succeeded":
        assert time.monotonic() < deadline, "the parent run never succeeded"
        time.sleep(0.2)
    child_id = api.get(f"/runs/{run_id}").json()["tasks"]["sub"]["child_run"]
    assert child_id.startswith("default.ui_child-sub-")

    page.goto(f"{server.url}/#/runs/{run_id}?tab=tasks&task=sub")
    link = page.get_by_test_id("child-run").get_by_role("link")
    expect(link).to_have_text(child_id)
    expect(page.get_by_test_id("child-run-logs")).to_be_visible()  # no log of its own
    shot("parent")
    link.click()
    expect(page).to_have_url(re.compile(re.escape(f"#/runs/{child_id}")))
    parent = page.get_by_test_id("parent-run")
    expect(parent).to_contain_text("task sub")
    expect(parent.get_by_role("link")).to_have_text(run_id)
    shot("child")
    parent.get_by_role("link").click()
    expect(page).to_have_url(re.compile(re.escape(f"#/runs/{run_id}") + r".*task=sub"))
    expect(page.get_by_test_id("child-run")).to_be_visible()
