"""The UI on a narrow screen (390x844, a phone): no page scrolls sideways, the main actions
are on screen and work, the graph fits the width, and a task's panel stacks under the graph."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PHONE, ROOT, Shots
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]


def finished_run(api: httpx.Client) -> str:
    source = (ROOT / "examples" / "etl_chain.yaml").read_text(encoding="utf-8")
    assert api.post("/workflows", json={"source": source}).status_code in (200, 201)
    run_id: str = api.post("/workflows/etl_chain/runs", json={}).json()["run"]["id"]
    deadline = time.monotonic() + 60
    while api.get(f"/runs/{run_id}").json()["run"]["state"] != "succeeded":
        assert time.monotonic() < deadline, "the run did not finish in 60 s"
        time.sleep(0.2)
    return run_id


def assert_fits(page: Any) -> None:
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"
    assert widths[1] <= PHONE["width"]


def assert_on_screen(locator: Any) -> None:
    box = locator.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"], box


def test_pages_fit_a_phone_and_stay_usable(
    phone: Any, server: ServerProcess, api: httpx.Client
) -> None:
    shot = Shots(phone, "narrow")
    run_id = finished_run(api)

    phone.goto(f"{server.url}/#/")
    expect(phone.get_by_test_id("workflows")).to_contain_text("etl_chain")
    assert_fits(phone)
    shot("workflows")

    phone.get_by_role("link", name="etl_chain").click()
    graph = phone.get_by_test_id("graph")
    expect(graph).to_have_attribute("data-ready", "true")
    assert_fits(phone)
    assert_on_screen(graph)
    trigger = phone.get_by_role("button", name="Trigger run")
    assert_on_screen(trigger)
    shot("workflow")

    phone.goto(f"{server.url}/#/runs/{run_id}")
    expect(graph).to_have_attribute("aria-label", "Graph of 3 tasks: 3 succeeded")
    phone.get_by_label("Find a task").fill("transform")
    phone.get_by_role("button", name="Find", exact=True).click()
    panel = phone.get_by_test_id("task-panel")
    expect(panel).to_contain_text("transform")
    # the panel is below the graph, as wide as the screen allows
    assert panel.bounding_box()["y"] > graph.bounding_box()["y"] + graph.bounding_box()["height"]
    assert_on_screen(panel)
    panel.get_by_test_id("log").scroll_into_view_if_needed()
    expect(panel.get_by_test_id("log")).to_be_visible()
    assert_fits(phone)
    shot("run-task", full_page=True)

    phone.goto(f"{server.url}/#/runs")
    expect(phone.get_by_test_id("runs")).to_contain_text(run_id)
    assert_fits(phone)
    assert_on_screen(phone.get_by_label("State filter"))
    shot("runs")

    phone.goto(f"{server.url}/#/apply")
    assert_on_screen(phone.get_by_label("Workflow YAML"))
    assert_on_screen(phone.get_by_role("button", name="Apply", exact=True))
    assert_fits(phone)
    shot("apply")
