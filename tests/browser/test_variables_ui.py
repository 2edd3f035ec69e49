"""The Variables page in a real browser (headless Chromium) against a real local server: set a
variable from the form, see it listed, a run whose shell command reads it shows the value,
delete it. Screenshots are saved in artifacts/browser/."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Shots
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

READER = """\
name: ui_var
tasks:
  say: {type: shell, command: 'echo "out={{ var.value.ui_bucket }}" >> "$STRATOFLOW_OUTPUT"'}
"""


def test_set_list_and_delete_a_variable_that_a_run_reads(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    shot = Shots(page, "variables")
    page.goto(f"{server.url}/#/variables")
    page.get_by_label("Variable name").fill("ui_bucket")
    page.get_by_label("Variable value").fill("s3://from-the-ui")
    page.get_by_role("button", name="Set variable").click()
    table = page.get_by_test_id("variables")
    expect(table).to_contain_text("ui_bucket")
    expect(table).to_contain_text("s3://from-the-ui")
    shot("set")
    assert api.post("/workflows", json={"source": READER}).status_code in (200, 201)
    run_id = api.post("/workflows/ui_var/runs", json={}).json()["run"]["id"]
    deadline = time.monotonic() + 60
    while (run := api.get(f"/runs/{run_id}").json())["run"]["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    assert run["tasks"]["say"]["outputs"] == {"out": "s3://from-the-ui"}
    page.on("dialog", lambda dialog: dialog.accept())
    table.locator("tr", has_text="ui_bucket").get_by_role("button", name="Delete").click()
    expect(page.get_by_text("No variables in project")).to_be_visible()
    assert api.get("/variables/ui_bucket").status_code == 404
