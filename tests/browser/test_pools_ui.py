"""The pools pages in a real browser (headless Chromium) against a real local server: set a
pool from the form, see a pool's running and waiting tasks in the order they will be served,
force-start a waiting one. Screenshots are saved in artifacts/browser/."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Shots
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

HOLDERS = """\
name: ui_pool
tasks:
  first: {type: shell, command: "sleep 60", pool: ui, priority: 3}
  second: {type: shell, command: "sleep 60", pool: ui, priority: 2}
  third: {type: shell, command: "sleep 60", pool: ui, priority: 1}
"""


def test_a_pools_running_and_waiting_tasks_and_force_start(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    shot = Shots(page, "pools")
    page.goto(f"{server.url}/#/pools")
    page.get_by_label("Pool name").fill("ui")
    page.get_by_label("Pool slots").fill("1")
    page.get_by_role("button", name="Set pool of default").click()
    table = page.get_by_test_id("pools")
    expect(table).to_contain_text("default/ui")
    assert api.post("/workflows", json={"source": HOLDERS}).status_code in (200, 201)
    run_id = api.post("/workflows/ui_pool/runs", json={}).json()["run"]["id"]
    try:
        table.get_by_role("link", name="default/ui").click()
        expect(page.get_by_test_id("pool-use")).to_contain_text("1 of 1 slots used, 2 waiting")
        expect(page.get_by_test_id("pool-running")).to_contain_text("first")
        waiting = page.get_by_test_id("pool-waiting").locator("tbody tr")
        expect(waiting).to_have_count(2)
        expect(waiting.nth(0)).to_contain_text("second")  # by priority: the order of service
        expect(waiting.nth(1)).to_contain_text("third")
        shot("waiting")
        page.on("dialog", lambda dialog: dialog.accept())
        waiting.nth(1).get_by_role("button", name="Force start").click()
        expect(page.get_by_test_id("pool-use")).to_contain_text("2 of 1 slots used, 1 waiting")
        expect(page.get_by_test_id("pool-running")).to_contain_text("third")
        shot("forced")
    finally:
        api.post(f"/runs/{run_id}/stop")
