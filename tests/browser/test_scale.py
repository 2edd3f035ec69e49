"""A 2,000-task run in the browser stays responsive: the graph is laid out in a Web Worker
and drawn on a culled canvas, lists are virtualised, and the page keeps polling the live run.

Measured in the page (Performance API) and bounded generously, since the machine is shared:
time to the graph's first paint, the longest main-thread task while loading, how long a wheel
zoom takes to reach the screen, how long a search (a click) takes to open the task, and the
Gantt chart scrolled to its last row. The figures are written to artifacts/browser/scale.json.
"""

from __future__ import annotations

import json
import random
import re
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, Shots
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

LAYERS, WIDTH = 40, 50  # 2,000 tasks
FIRST_RENDER_BOUND_MS = 10_000  # the quick layout, drawn at once
FINAL_LAYOUT_BOUND_MS = (
    60_000  # ELK's layout in the worker once the run has ended (about 12 s here under load)
)
LONGEST_TASK_BOUND_MS = 5_000
WHEEL_FRAME_BOUND_MS = 1_000
CLICK_BOUND_S = 5.0

# Collected from the first byte on: main-thread tasks longer than 50 ms.
LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longTasks.push(e.duration);
}).observe({ type: "longtask", buffered: true });
"""


def big_workflow() -> str:
    rnd = random.Random(7)
    lines = ["name: big", "description: 2,000 tasks in 40 layers", "tasks:"]
    for layer in range(LAYERS):
        for i in range(WIDTH):
            lines.append(f"  l{layer:02d}_t{i:02d}:")
            lines.append("    type: shell")
            lines.append("    command: 'true'")
            if layer:
                deps = sorted({f"l{layer - 1:02d}_t{rnd.randrange(WIDTH):02d}" for _ in range(3)})
                lines.append(f"    depends_on: [{', '.join(deps)}]")
    return "\n".join(lines) + "\n"


def wheel_frame_ms(page: Any) -> float:
    """Dispatch a wheel zoom on the canvas; ms until the frame after it has been painted."""
    ms: float = page.evaluate(
        """async () => {
            const c = document.querySelector('[data-testid=graph]');
            const r = c.getBoundingClientRect();
            const t0 = performance.now();
            c.dispatchEvent(new WheelEvent('wheel', { deltaY: -120, clientX: r.left + r.width / 2,
                                                    clientY: r.top + r.height / 2, bubbles: true, cancelable: true }));
            await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
            return performance.now() - t0;
        }"""
    )
    return ms


def test_a_2000_task_run_stays_responsive(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    shot = Shots(page, "scale")
    applied = api.post("/workflows", json={"source": big_workflow()})
    assert applied.status_code in (200, 201), applied.text
    assert applied.json()["tasks"] == LAYERS * WIDTH
    run = api.post("/workflows/big/runs", json={})
    assert run.status_code == 201, run.text
    run_id = run.json()["run"]["id"]
    figures: dict[str, Any] = {"tasks": LAYERS * WIDTH}

    page.add_init_script(LONG_TASKS)
    page.goto(f"{server.url}/#/runs/{run_id}")
    graph = page.get_by_test_id("graph")
    expect(graph).to_have_attribute("data-ready", "true", timeout=FIRST_RENDER_BOUND_MS)
    first_render = page.evaluate(
        "performance.getEntriesByName('graph-rendered')[0].startTime"
    )  # ms since navigation
    figures["first_render_ms"] = round(first_render)  # the quick layout, drawn at once
    shot("quick-layout")
    # while the run is live the quick layout stays (ELK would take seconds of CPU from the
    # run); the page is used on it meanwhile
    assert graph.get_attribute("data-layout") is None  # not the final layout yet
    figures["visible_nodes_at_fit"] = int(graph.get_attribute("data-visible-nodes"))
    # "Fit" shows the whole graph (every task counted), at the scale that fits the quick
    # layout in the canvas. At 1246 x 520 px that is a task 6.8 px tall: tasks, not the layer
    # bars ELK's taller layout gets at Fit (checked once it is drawn, below)
    assert figures["visible_nodes_at_fit"] == LAYERS * WIDTH
    quick = api.get(f"/runs/{run_id}/layout").json()
    drawn = graph.evaluate("c => [c.clientWidth, c.clientHeight, Number(c.dataset.taskPx)]")
    # Fit leaves 16 px each side and never zooms past 1.5 (GraphView.fit)
    fit_scale = min((drawn[0] - 32) / quick["width"], (drawn[1] - 32) / quick["height"], 1.5)
    assert drawn[2] == pytest.approx(fit_scale * quick["h"], abs=0.06), (drawn, fit_scale)
    shot("fit")

    wheel = [wheel_frame_ms(page) for _ in range(12)]  # zoom in, around the centre
    figures["wheel_to_frame_ms"] = {
        "max": round(max(wheel), 1),
        "median": round(sorted(wheel)[6], 1),
    }
    culled = int(graph.get_attribute("data-visible-nodes"))
    assert culled < LAYERS * WIDTH  # zoomed in, only what is in view is drawn
    figures["visible_nodes_zoomed"] = culled

    # drag to pan: the view moves and the page keeps up
    box = graph.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 - 300, box["y"] + box["height"] / 2, steps=10)
    page.mouse.up()

    # search a task in the middle of the graph: it is centred, selected and its panel opens
    started = time.perf_counter()
    page.get_by_label("Find a task").fill("l20_t25")
    page.get_by_role("button", name="Find", exact=True).click()
    expect(page.get_by_test_id("task-panel")).to_contain_text("l20_t25")
    figures["search_to_panel_s"] = round(time.perf_counter() - started, 3)
    shot("task-found")

    # the whole run finishes while we watch: live updates at 2,000 tasks
    expect(graph).to_have_attribute(
        "aria-label", re.compile(r"^Graph of 2000 tasks: 2000 succeeded$"), timeout=300_000
    )
    expect(page.locator(".run-meta .badge").first).to_have_text("succeeded")
    # the run has ended: ELK's layout (in the worker) replaces the quick one
    expect(graph).to_have_attribute("data-layout", "final", timeout=FINAL_LAYOUT_BOUND_MS)
    assert graph.get_attribute("data-refine") is None
    figures["final_layout_ms"] = round(
        page.evaluate("performance.getEntriesByName('graph-final-layout')[0].startTime")
    )  # since navigation: the run's end included
    figures["elk_layout_ms"] = int(graph.get_attribute("data-layout-ms"))
    expect(page.get_by_test_id("task-panel")).to_contain_text("l20_t25")  # still selected
    # "Fit" on ELK's layout: each layer as a bar of its tasks' states (every task counted)
    page.get_by_role("button", name="Fit", exact=True).click()
    expect(graph).to_have_attribute("data-mode", "layers")
    expect(graph).to_have_attribute("data-visible-nodes", str(LAYERS * WIDTH))
    shot("fit-final")

    # the Gantt chart: 2,000 rows, virtualised; scroll to the bottom and the last row is there
    page.get_by_role("tab", name="gantt").click()
    gantt = page.get_by_test_id("gantt")
    expect(gantt.locator(".gantt-row").first).to_be_visible()
    rendered_rows = gantt.locator(".gantt-row").count()
    assert rendered_rows < 100, rendered_rows  # only the rows in view exist
    started = time.perf_counter()
    gantt.locator(".vlist").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(gantt.get_by_text("l39_t49", exact=True)).to_be_visible()
    figures["gantt_scroll_to_end_s"] = round(time.perf_counter() - started, 3)
    shot("gantt-end")

    long_tasks = page.evaluate("window.__longTasks")
    figures["longest_main_thread_task_ms"] = round(max(long_tasks, default=0))
    figures["long_tasks_over_50ms"] = len(long_tasks)
    (ARTIFACTS / "scale.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print("2,000-task run in the browser:", json.dumps(figures))

    assert figures["first_render_ms"] < FIRST_RENDER_BOUND_MS, figures
    assert figures["final_layout_ms"] < FINAL_LAYOUT_BOUND_MS, figures
    assert figures["wheel_to_frame_ms"]["max"] < WHEEL_FRAME_BOUND_MS, figures
    assert figures["search_to_panel_s"] < CLICK_BOUND_S, figures
    assert figures["gantt_scroll_to_end_s"] < CLICK_BOUND_S, figures
    assert figures["longest_main_thread_task_ms"] < LONGEST_TASK_BOUND_MS, figures
