"""ELK's layout of a workflow version is computed once and kept by the server: the first
visit of a run page lays the graph out and stores it (PUT on the states view's `layout` URL);
a later visit of any run of that version, from a browser that never saw it (a fresh context:
no IndexedDB record), downloads it and draws it without running ELK: ELK's worker script is
never even fetched.

400 tasks (test_graph_levels' workflow, 4 layers of 100): enough for ELK to take a while,
small enough for the suite.
Figures at 2,000 tasks belong to benchmarks/bench_ui.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP, _open
from tests.browser.test_graph_levels import LAYERS, WIDTH, layered_workflow
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture
def other_browser_page(
    browser: Any, request: pytest.FixtureRequest, server: ServerProcess
) -> Iterator[Any]:
    """A second browser context: another visitor, with nothing of the first one's kept."""
    yield from _open(browser, request, DESKTOP, server.token)


def stopped_run(api: httpx.Client, name: str) -> str:
    """A run of ``name``, stopped (it need not run its 400 tasks), or ended before the stop came
    (a quick machine runs 400 ``true`` tasks in a second or two: then the stop is a 409; so is
    a stop that met a change of the run, which is tried again)."""
    run = api.post(f"/workflows/{name}/runs", json={})
    assert run.status_code == 201, run.text
    run_id: str = run.json()["run"]["id"]
    for _ in range(20):
        stop = api.post(f"/runs/{run_id}/stop")
        if stop.status_code < 300:
            return run_id
        assert stop.status_code == 409, stop.text
        if api.get(f"/runs/{run_id}").json()["run"]["state"] == "succeeded":
            return run_id
        # else the run changed while the stop was applied ("try again"): it did
    raise AssertionError(f"the run was neither stopped nor ended: {stop.text}")


def is_layout_put(response: Any) -> bool:
    return response.request.method == "PUT" and "/layout?" in response.url


def test_a_second_visit_downloads_the_layout_and_does_not_run_elk(
    page: Any, other_browser_page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    applied = api.post("/workflows", json={"source": layered_workflow("kept")})
    assert applied.status_code in (200, 201), applied.text
    first_run = stopped_run(api, "kept")
    states = api.get(f"/runs/{first_run}/states").json()
    url = states["layout"]
    assert url.startswith("workflows/kept/versions/1/layout?project=default&h=")

    # the first visit: nothing kept yet (404), laid out by ELK, then stored once
    assert api.get(f"/{url}").status_code == 404
    with page.expect_response(is_layout_put, timeout=60_000) as put:
        page.goto(f"{server.url}/#/runs/{first_run}")
    graph = page.get_by_test_id("graph")
    expect(graph).to_have_attribute("data-layout", "final", timeout=60_000)
    assert graph.get_attribute("data-layout-source") == "elk"
    assert put.value.status == 201, put.value.text()
    kept = api.get(f"/{url}")
    assert kept.status_code == 200
    assert kept.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert sorted(kept.json()["tasks"]) == sorted(
        f"l{layer}_t{i:03d}" for layer in range(LAYERS) for i in range(WIDTH)
    )

    # another run of the same version, visited from another browser: downloaded, no ELK
    second_run = stopped_run(api, "kept")
    assert api.get(f"/runs/{second_run}/states").json()["layout"] == url
    asked: list[tuple[str, str]] = []
    other_browser_page.on("request", lambda r: asked.append((r.method, r.url)))
    downloads: list[int] = []
    other_browser_page.on(
        "response", lambda r: downloads.append(r.status) if r.url.endswith(url) else None
    )
    other_browser_page.goto(f"{server.url}/#/runs/{second_run}")
    graph = other_browser_page.get_by_test_id("graph")
    expect(graph).to_have_attribute("data-layout", "final", timeout=20_000)
    assert graph.get_attribute("data-layout-source") == "downloaded"
    assert downloads == [200]
    assert not [u for _, u in asked if "elk-worker" in u], "ELK's worker was loaded"
    assert not [u for m, u in asked if m == "PUT"], "the layout was sent again"
    # it is drawn: the nodes of the stored layout are on the canvas
    expect(graph).to_have_attribute("data-ready", "true")

    # the workflow's page draws the same version from it too (this browser's own copy gone)
    other_browser_page.evaluate(
        "() => new Promise((ok) => { const r = indexedDB.deleteDatabase('stratoflow-layouts');"
        " r.onsuccess = r.onerror = r.onblocked = () => ok(true); })"
    )
    other_browser_page.goto(f"{server.url}/#/workflows/kept")
    other_browser_page.reload()  # the hash route alone would keep the page's memory
    graph = other_browser_page.get_by_test_id("graph")
    expect(graph).to_have_attribute("data-layout", "final", timeout=20_000)
    assert graph.get_attribute("data-layout-source") == "downloaded"
    assert not [u for _, u in asked if "elk-worker" in u], "ELK's worker was loaded"
