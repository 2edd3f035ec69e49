"""The backfill dialog in a real browser (headless Chromium) against a real local server:
start a backfill from a workflow's page, watch its dates turn green, open a date's run, find
it under the workflow's Backfills tab; a serial backfill stops at its first failure; bad
dates are refused with the API's words. Screenshots are saved in artifacts/browser/."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Shots
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

DONE_TIMEOUT = 60_000  # ms for a few small runs to finish on a busy machine
DAILY = """\
name: ui_backfill
schedule: {cron: "0 6 * * *", timezone: UTC}
tasks:
  load: {type: shell, command: 'echo "loading {{ ds }}"; test "{{ ds }}" != "2026-02-03"'}
"""


def open_dialog(page: Any, server: ServerProcess) -> None:
    page.goto(f"{server.url}/#/workflows/ui_backfill")
    page.get_by_role("button", name="Backfill", exact=True).click()
    expect(page.get_by_role("form", name="Backfill")).to_be_visible()


def test_backfill_from_the_workflow_page_and_watch_it_by_date(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    shot = Shots(page, "backfill")
    assert api.post("/workflows", json={"source": DAILY}).status_code in (200, 201)

    # a range in two lanes, newest first
    open_dialog(page, server)
    page.get_by_label("Start date").fill("2026-01-01")
    page.get_by_label("End date").fill("2026-01-03")
    page.get_by_label("Parallel lanes").fill("2")
    page.get_by_label("Order").select_option("desc")
    shot("dialog")
    page.get_by_role("button", name="Start the backfill").click()
    expect(page).to_have_url(re.compile(r"#/backfills/default\.backfill-ui_backfill-"))
    header = page.locator("h1 .badge")
    expect(header).to_have_text("succeeded", timeout=DONE_TIMEOUT)
    rows = page.get_by_test_id("backfill-dates").locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(
        page.get_by_test_id("backfill-dates").locator("tbody tr[data-state=succeeded]")
    ).to_have_count(3)
    expect(rows.first).to_contain_text("default.ui_backfill-scheduled-20260103T060000Z")  # desc
    shot("succeeded")

    # a date's run opens the run page
    rows.first.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"#/runs/default\.ui_backfill-scheduled-20260103T060000Z"))

    # serial over a failing day: stops there, the rest not run, the error shown
    open_dialog(page, server)
    page.get_by_label("List of days").check()
    page.get_by_label("Days", exact=True).fill("2026-02-02, 2026-02-03 2026-02-04")
    page.get_by_role("button", name="Start the backfill").click()
    expect(page.locator("h1 .badge")).to_have_text("failed", timeout=DONE_TIMEOUT)
    states = page.get_by_test_id("backfill-dates").locator("tbody tr")
    expect(states.nth(0)).to_have_attribute("data-state", "succeeded")
    expect(states.nth(1)).to_have_attribute("data-state", "failed")
    expect(states.nth(1)).to_contain_text("failed")
    expect(states.nth(2)).to_have_attribute("data-state", "not_run")
    shot("failed")

    # both are listed under the workflow's Backfills tab
    page.goto(f"{server.url}/#/workflows/ui_backfill?tab=backfills")
    expect(page.get_by_test_id("backfills").locator("tbody tr")).to_have_count(2)

    # an end before the start: the API's words, and nothing started
    open_dialog(page, server)
    page.get_by_label("Start date").fill("2026-03-05")
    page.get_by_label("End date").fill("2026-03-01")
    page.get_by_role("button", name="Start the backfill").click()
    expect(page.get_by_role("alert")).to_contain_text("end: 2026-03-01 is before start 2026-03-05")
    listed = api.get("/backfills", params={"workflow": "ui_backfill"}).json()["backfills"]
    assert len(listed) == 2


UPSTREAM = """\
name: ui_dep_a
tasks:
  load: {type: shell, command: 'echo "a {{ ds }}"'}
"""
DOWNSTREAM = """\
name: ui_dep_b
tasks:
  wait: {type: dependency, all: [{workflow: ui_dep_a, date: today}], check_interval: 5s}
  report: {type: shell, depends_on: [wait], command: 'echo "b {{ ds }}"'}
"""


def test_backfill_with_dependent_workflows_shows_each_by_date(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    shot = Shots(page, "backfill-dependents")
    for source in (UPSTREAM, DOWNSTREAM):
        assert api.post("/workflows", json={"source": source}).status_code in (200, 201)
    page.goto(f"{server.url}/#/workflows/ui_dep_a")
    page.get_by_role("button", name="Backfill", exact=True).click()
    page.get_by_label("Start date").fill("2026-01-01")
    page.get_by_label("End date").fill("2026-01-02")
    page.get_by_label("Include dependent workflows").check()
    shot("dialog")
    page.get_by_role("button", name="Start the backfill").click()
    expect(page).to_have_url(re.compile(r"#/backfills/default\.backfill-ui_dep_a-"))
    expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=DONE_TIMEOUT)
    dependent = page.get_by_test_id("backfill-dependent")
    expect(dependent).to_have_count(1)
    expect(dependent).to_have_attribute("data-workflow", "ui_dep_b")
    expect(dependent.locator("tbody tr[data-state=succeeded]")).to_have_count(
        2, timeout=DONE_TIMEOUT
    )
    expect(dependent).to_contain_text("default.ui_dep_b-scheduled-20260102T000000Z")
    shot("succeeded")
    listed = api.get("/backfills", params={"workflow": "ui_dep_b"}).json()["backfills"]
    assert len(listed) == 1
    assert listed[0]["parent"].startswith("default.backfill-ui_dep_a-")
