"""The run page polls incrementally: it asks only for what changed since the revision it
holds, sends the ETag it holds (an unchanged run answers 304, no body), and gets gzip; the
graph tab never downloads the whole view (its states come from the states view, then from
deltas), the task list and the Gantt chart get it once and follow the deltas to the end."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.test_ui_flows import RUN_TIMEOUT, run_badge, wait_graph_states
from tests.e2e.server_process import ServerProcess


def gated(marker: Path) -> str:
    early = "".join(f"  early{i}:\n    type: shell\n    command: echo {i}\n" for i in range(5))
    late = "".join(
        f"  late{i}:\n    type: shell\n    depends_on: [gate]\n    command: echo {i}\n"
        for i in range(5)
    )
    gate = f"  gate:\n    type: shell\n    command: i=0; while [ ! -f '{marker}' ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; [ -f '{marker}' ]\n"
    return f"name: polled\ntasks:\n{early}{gate}{late}"


def test_the_run_page_polls_deltas_and_gets_304_while_nothing_changes(
    page: Any, server: ServerProcess, api: httpx.Client, shared_dir: Path
) -> None:
    marker = shared_dir / "open"
    assert api.post("/workflows", json={"source": gated(marker)}).status_code in (200, 201)
    run_id = api.post("/workflows/polled/runs", json={}).json()["run"]["id"]
    polls: list[dict[str, Any]] = []

    def seen(response: Any) -> None:
        if re.search(rf"/runs/{run_id}(\?|$)", response.url):
            headers = response.request.headers
            polls.append(
                {
                    "url": response.url,
                    "status": response.status,
                    "if_none_match": headers.get("if-none-match"),
                    "encoding": response.headers.get("content-encoding"),
                }
            )

    page.on("response", seen)
    page.goto(f"{server.url}/#/runs/{run_id}")
    wait_graph_states(page, r"5 succeeded, 1 running|1 running, 5 succeeded|running")
    expect(page.get_by_test_id("progress")).to_contain_text("5/11 done", timeout=RUN_TIMEOUT)
    # the gate runs and nothing else moves: polls are answered 304
    page.wait_for_timeout(3500)
    # the graph's first poll is a delta since the states view's revision, not the whole view
    assert polls[0]["if_none_match"] is None
    assert "since=" in polls[0]["url"]
    later = polls[1:]
    assert later, polls
    assert all("since=" in p["url"] and p["if_none_match"] for p in later), later
    assert any(p["status"] == 304 for p in later), later

    marker.touch()
    expect(run_badge(page)).to_have_text("succeeded", timeout=RUN_TIMEOUT)
    wait_graph_states(page, r"^Graph of 11 tasks: 11 succeeded$")
    expect(page.get_by_test_id("progress")).to_contain_text("11/11 done")
    assert all("since=" in p["url"] for p in polls), polls  # the graph: no whole view
    page.get_by_role("tab", name="tasks").click()
    expect(page.locator(".badge", has_text="succeeded")).to_have_count(12)  # 11 + the run's
    whole = [p for p in polls if "since=" not in p["url"]]
    assert len(whole) == 1, polls  # the task list's: fetched once
    assert whole[0]["encoding"] == "gzip"  # the browser asked for it
    page.get_by_role("tab", name="gantt").click()
    for task_id in ("early0", "gate", "late4"):
        expect(page.get_by_text(task_id, exact=True).first).to_be_visible()


def live_graph(
    page: Any, server: ServerProcess, api: httpx.Client, marker: Path, name: str
) -> tuple[Any, str]:
    """A run of ``gated`` (named ``name``) held at its gate, its page open: the graph, drawn
    with the quick layout and waiting to be refined, and the run's id."""
    source = gated(marker).replace("name: polled", f"name: {name}", 1)
    assert api.post("/workflows", json={"source": source}).status_code in (200, 201)
    run_id = api.post(f"/workflows/{name}/runs", json={}).json()["run"]["id"]
    page.goto(f"{server.url}/#/runs/{run_id}")
    graph = page.get_by_test_id("graph")
    expect(graph).to_have_attribute("data-refine", "waiting", timeout=RUN_TIMEOUT)
    expect(graph).to_have_attribute("data-ready", "true")  # drawn meanwhile
    return graph, run_id


def test_a_live_run_is_not_laid_out_by_elk_until_it_ends(
    page: Any, server: ServerProcess, api: httpx.Client, shared_dir: Path
) -> None:
    # ELK's layout takes seconds of CPU at 2,000 tasks, which a live run on the same machine
    # needs: the page draws the server's quick layout and refines once the run has ended
    marker = shared_dir / "refine"
    graph, _ = live_graph(page, server, api, marker, "refined")
    expect(page.get_by_text("refined when the run ends")).to_be_visible()
    expect(page.get_by_test_id("progress")).to_contain_text("5/11 done", timeout=RUN_TIMEOUT)
    assert graph.get_attribute("data-layout") is None  # still the quick layout
    assert graph.get_attribute("data-refine") == "waiting"

    marker.touch()
    expect(run_badge(page)).to_have_text("succeeded", timeout=RUN_TIMEOUT)
    expect(graph).to_have_attribute("data-layout", "final", timeout=RUN_TIMEOUT)
    assert graph.get_attribute("data-layout-source") == "elk"
    assert graph.get_attribute("data-refine") is None
    wait_graph_states(page, r"^Graph of 11 tasks: 11 succeeded$")


def test_a_view_moved_during_a_live_run_keeps_its_centre_task_when_the_final_layout_comes(
    page: Any, server: ServerProcess, api: httpx.Client, shared_dir: Path
) -> None:
    # zoomed in on the quick layout while the run is live, the user is not thrown back to
    # Fit when the run ends and ELK's layout replaces it: the task at the view's centre stays
    # there, at the same zoom
    marker = shared_dir / "kept-view"
    graph, run_id = live_graph(page, server, api, marker, "kept_view")
    at_fit = graph.get_attribute("data-task-px")
    for _ in range(6):  # zoom in around the canvas's centre
        page.get_by_role("button", name="Zoom in").click()
    expect(graph).not_to_have_attribute("data-task-px", at_fit or "")
    zoomed = graph.get_attribute("data-task-px")
    # the task nearest the centre of the quick layout (the server's): Fit centres the layout,
    # and zooming around the canvas's centre keeps that point there
    quick = api.get(f"/runs/{run_id}/layout").json()
    cx, cy = quick["width"] / 2, quick["height"] / 2
    nearest = min(
        range(len(quick["tasks"])),
        key=lambda i: (
            (quick["x"][i] + quick["w"][i] / 2 - cx) ** 2
            + (quick["y"][i] + quick["h"] / 2 - cy) ** 2
        ),
    )
    centre = quick["tasks"][nearest]

    marker.touch()
    expect(run_badge(page)).to_have_text("succeeded", timeout=RUN_TIMEOUT)
    expect(graph).to_have_attribute("data-layout", "final", timeout=RUN_TIMEOUT)
    assert graph.get_attribute("data-task-px") == zoomed  # not reset to Fit
    graph.click()  # at the canvas's centre: the task kept there
    expect(page.get_by_test_id("task-panel")).to_contain_text(centre)


# the first GET /runs/{id} of the page (the whole view): bytes on the wire, of its (gzipped)
# body as sent, and of the body
WHOLE_VIEW = (
    "performance.getEntriesByType('resource').find((r) => /\\/runs\\/[^/?]+$/.test(r.name))"
)
WHOLE_VIEW_SIZES = f"""() => {{
    const e = {WHOLE_VIEW};
    return [e.transferSize, e.encodedBodySize, e.decodedBodySize];
}}"""


def whole_view_sizes(page: Any) -> tuple[int, int, int]:
    """The sizes of the page's whole run view, once its response is complete: the graph can
    be drawn from the states view (``/runs/{id}/states``) before it is, and a resource's
    timing entry exists only once its body has arrived (late on a loaded machine)."""
    page.wait_for_function(f"() => {WHOLE_VIEW} !== undefined", timeout=RUN_TIMEOUT)
    sent, encoded, body = page.evaluate(WHOLE_VIEW_SIZES)
    return sent, encoded, body


TASKS = 200


def test_a_reload_of_an_unchanged_run_revalidates_its_view(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """The page's first, whole view of a run may come from the browser's HTTP cache once the
    server has said (304) that the run has not changed: a reload costs no view."""
    tasks = "".join(f"  t{i:03d}:\n    type: shell\n    command: 'true'\n" for i in range(TASKS))
    assert api.post("/workflows", json={"source": f"name: kept\ntasks:\n{tasks}"}).is_success
    run_id = api.post("/workflows/kept/runs", json={}).json()["run"]["id"]
    deadline = time.monotonic() + RUN_TIMEOUT / 1000
    while api.get(f"/runs/{run_id}").json()["run"]["state"] != "succeeded":
        assert time.monotonic() < deadline, "the run did not succeed in time"
        time.sleep(0.2)
    # the task list shows the whole view (the graph tab does without it)
    page.goto(f"{server.url}/#/runs/{run_id}?tab=tasks")
    expect(page.get_by_text(f"{TASKS} tasks", exact=True)).to_be_visible(timeout=RUN_TIMEOUT)
    sent, encoded, body = whole_view_sizes(page)
    assert body > 50_000
    assert sent > encoded  # fetched: headers and the body

    page.reload()
    expect(page.get_by_text(f"{TASKS} tasks", exact=True)).to_be_visible(timeout=RUN_TIMEOUT)
    sent, encoded, body = whole_view_sizes(page)
    assert body > 50_000  # the whole view, as before
    assert sent < encoded, (sent, encoded)  # a 304's headers only: the body was the cache's
