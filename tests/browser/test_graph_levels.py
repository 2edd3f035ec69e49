"""The run graph at scale: its layout is computed once per workflow version and kept in the
browser across visits, and zoomed far out each layer is drawn as one bar of its counts by
state, so the states stay visible where single tasks would be specks under their edges.

A 400-task workflow (4 layers of 100) is enough: at Fit a task is about 3 pixels high, below the
level where the graph switches to layers. Big cases belong to benchmarks/bench_ui.py.
"""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Shots
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

LAYERS, WIDTH = 4, 100
# rgb of the state colours of ui/src/graph/GraphView.tsx (STATE_COLORS)
STATE_RGB = {
    (229, 231, 235), (199, 210, 254), (96, 165, 250), (252, 211, 77), (74, 222, 128),
    (248, 113, 113), (240, 171, 252), (251, 146, 60), (156, 163, 175),
}  # fmt: skip

# the colours met along the canvas's middle row
MIDDLE_ROW_COLOURS = """() => {
    const c = document.querySelector('[data-testid=graph]');
    const row = c.getContext('2d').getImageData(0, Math.floor(c.height / 2), c.width, 1).data;
    const seen = new Set();
    for (let i = 0; i < row.length; i += 4) seen.add(`${row[i]},${row[i + 1]},${row[i + 2]}`);
    return [...seen];
}"""


# the x of the first pixel of a state colour along the canvas's middle row (device pixel ratio 1)
FIRST_STATE_PIXEL = """(colours) => {
    const c = document.querySelector('[data-testid=graph]');
    const row = c.getContext('2d').getImageData(0, Math.floor(c.height / 2), c.width, 1).data;
    const wanted = new Set(colours.map((rgb) => rgb.join(',')));
    for (let i = 0; i < row.length; i += 4) {
        if (wanted.has(`${row[i]},${row[i + 1]},${row[i + 2]}`)) return i / 4;
    }
    return null;
}"""


def layered_workflow(name: str) -> str:
    rnd = random.Random(3)
    lines = [f"name: {name}", "tasks:"]
    for layer in range(LAYERS):
        for i in range(WIDTH):
            lines += [f"  l{layer}_t{i:03d}:", "    type: shell", "    command: 'true'"]
            if layer:
                deps = sorted({f"l{layer - 1}_t{rnd.randrange(WIDTH):03d}" for _ in range(2)})
                lines.append(f"    depends_on: [{', '.join(deps)}]")
    return "\n".join(lines) + "\n"


def state_colours(page: Any) -> set[tuple[int, ...]]:
    colours = {tuple(int(v) for v in c.split(",")) for c in page.evaluate(MIDDLE_ROW_COLOURS)}
    return colours & STATE_RGB


def test_layers_show_state_counts_and_the_layout_is_reused(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    shot = Shots(page, "graph-levels")
    applied = api.post("/workflows", json={"source": layered_workflow("levels")})
    assert applied.status_code in (200, 201), applied.text
    run = api.post("/workflows/levels/runs", json={})
    assert run.status_code == 201, run.text
    run_id = run.json()["run"]["id"]
    stopped = api.post(f"/runs/{run_id}/stop")
    assert stopped.status_code < 300, stopped.text

    page.goto(f"{server.url}/#/runs/{run_id}")
    graph = page.get_by_test_id("graph")
    expect(graph).to_have_attribute("data-layout", "final", timeout=60_000)
    assert graph.get_attribute("data-layout-source") == "elk"  # first visit: laid out
    page.get_by_role("button", name="Fit").click()
    # at Fit a task is a few pixels high: the layers are drawn as bars of state colours
    expect(graph).to_have_attribute("data-mode", "layers")
    assert state_colours(page), "no state colour visible at Fit"
    shot("fit-layers")

    # a click on a layer's bar zooms in to its tasks
    x = page.evaluate(FIRST_STATE_PIXEL, [list(c) for c in STATE_RGB])
    assert x is not None
    box = graph.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + x + 1, box["y"] + box["height"] / 2)
    expect(graph).to_have_attribute("data-mode", "tasks")
    assert 0 < int(graph.get_attribute("data-visible-nodes")) < LAYERS * WIDTH
    assert graph.get_attribute("data-edges") == "all"  # few enough to draw every one
    shot("layer-clicked")

    # the next visit reads the layout back instead of laying out again
    page.reload()
    expect(graph).to_have_attribute("data-layout", "final", timeout=10_000)
    assert graph.get_attribute("data-layout-source") == "stored"
    assert state_colours(page), "no state colour visible after the reload"
    shot("reloaded")


def test_a_stored_layout_of_other_tasks_is_not_used(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """A record whose task ids differ from the workflow's (an older database, another server
    on the same address) is ignored: the graph is drawn from the server's copy (or laid out
    again), never drawn wrong."""
    applied = api.post("/workflows", json={"source": layered_workflow("other")})
    assert applied.status_code in (200, 201), applied.text
    version = applied.json()["version"]
    page.goto(f"{server.url}/#/workflows/other")
    graph = page.get_by_test_id("graph")
    expect(graph).to_have_attribute("data-layout", "final", timeout=60_000)
    # overwrite the stored record with a layout of a different task
    page.evaluate(
        """(key) => new Promise((ok) => {
            const req = indexedDB.open('stratoflow-layouts', 1);
            req.onsuccess = () => {
                const tx = req.result.transaction('layouts', 'readwrite');
                tx.objectStore('layouts').get(key).onsuccess = (ev) => {
                    const rec = ev.target.result;
                    rec.nodes[0] = { ...rec.nodes[0], id: 'not_a_task' };
                    tx.objectStore('layouts').put(rec);
                };
                tx.oncomplete = () => ok(true);
            };
        })""",
        f"default/other/{version}",
    )
    page.reload()
    expect(graph).to_have_attribute("data-layout", "final", timeout=60_000)
    # not the browser's record: the layout the server kept when the first visit laid it out
    # (tests/browser/test_layout_cache.py), which draws this version's tasks
    assert graph.get_attribute("data-layout-source") == "downloaded"


WIDE = 2_100  # two layers: 4,200 tasks, above ELK's limit, so the server's layout is final
PARENTS = 8

ZOOM_IN_UNTIL = """async (minTaskPx) => {
    const c = document.querySelector('[data-testid=graph]');
    const r = c.getBoundingClientRect();
    for (let i = 0; i < 60 && !(Number(c.dataset.taskPx) >= minTaskPx); i++) {
        c.dispatchEvent(new WheelEvent('wheel', { deltaY: -120, clientX: r.left + r.width / 2,
            clientY: r.top + r.height / 2, bubbles: true, cancelable: true }));
        await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
    }
    return [Number(c.dataset.taskPx), c.dataset.edges, Number(c.dataset.visibleNodes)];
}"""


def wide_workflow() -> str:
    rnd = random.Random(5)
    lines = ["name: wide", "tasks:"]
    for i in range(WIDE):
        lines += [f"  a{i:04d}:", "    type: shell", "    command: 'true'"]
    for i in range(WIDE):
        deps = sorted({f"a{rnd.randrange(WIDE):04d}" for _ in range(PARENTS)})
        lines += [f"  b{i:04d}:", "    type: shell", "    command: 'true'"]
        lines.append(f"    depends_on: [{', '.join(deps)}]")
    return "\n".join(lines) + "\n"


def test_edges_too_dense_to_read_are_drawn_as_stubs(page: Any, server: ServerProcess) -> None:
    """4,200 tasks in two columns, about 16,800 edges across the whole height: zoomed to readable
    tasks, the edges crossing the view would cover the canvas many times over, so each task
    shows stubs of its edges instead (the 400-task graph above draws all of its edges)."""
    with httpx.Client(base_url=server.url, timeout=60, headers=server.headers) as api:
        applied = api.post("/workflows", json={"source": wide_workflow()})
        assert applied.status_code in (200, 201), applied.text
    shot = Shots(page, "graph-levels")
    page.goto(f"{server.url}/#/workflows/wide")
    graph = page.get_by_test_id("graph")
    expect(graph).to_have_attribute("data-layout", "final", timeout=60_000)
    assert graph.get_attribute("data-layout-source") == "served"
    expect(graph).to_have_attribute("data-mode", "layers")  # at Fit

    task_px, edges, visible = page.evaluate(ZOOM_IN_UNTIL, 12)
    assert 12 <= task_px < 28, task_px
    assert edges == "stubs"
    assert 0 < visible < 2 * WIDE
    shot("dense-edges-stubs")

    # the closest zoom (4x): a handful of tasks, and still thousands of edges across the view
    task_px, edges, visible = page.evaluate(ZOOM_IN_UNTIL, 110)
    assert task_px >= 110
    assert edges == "stubs"
    assert 0 < visible < 20
    shot("dense-edges-close")
