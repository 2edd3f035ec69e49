"""UI benchmark: a run page at 2,000 and 10,000 tasks in a real Chromium (issue 10, item 4).

For each size, a layered workflow (20 layers, each task depending on 3 of the layer above,
fixed seed) is applied to a fresh ``stratoflow server``, and one run is triggered and stopped
at once, so the page shows a mix of states; we wait until the run has ended, so the server is
idle while we measure. One headless Chromium (/usr/bin/chromium, Playwright, 1280x800, device
pixel ratio 1) then opens the run page twice in each of ``--repeat`` fresh browser profiles:

* ``first visit``: nothing stored in the browser; the server's layout (``GET
  /runs/{id}/layout``, computed once per version: the first repeat's first visit is the one that
  computes it) is drawn at once and, up to 4,000 tasks, ELK refines it in its worker.
* ``return visit`` (a reload): ELK's layout of this version is read back from IndexedDB; above
  4,000 tasks the server's layout is the final one on both visits (revalidated by its ETag).
* ``cached visit`` (branch h-layout): another fresh profile opens a second run of the same
  version: ELK's layout, stored by the server when the first visit computed it (PUT on the
  states view's ``layout`` URL), is downloaded and drawn without ELK. Before each repeat the
  server's stored layouts are deleted, so every ``first visit`` lays out with ELK again.

Measured on each visit (ms since navigation, Performance API marks of the page):
* ``first paint``: the graph first drawn with task states (``graph-rendered``);
* ``run view received``: the end of the first ``GET /runs/{id}`` (Resource Timing), which the
  first paint waited for until the page drew from ``GET /runs/{id}/states`` and the layout;
* ``breakdown``: where a first visit's time goes: the HTML and the script received,
  DOMContentLoaded, and each request the page makes (asked, first byte, received);
* ``final layout``: the final layout drawn (``graph-final-layout``), and where it came from;
* ``bytes``: what the visit transferred (Resource Timing ``transferSize``: the HTML, script and
  every API response; 0 for what came from the browser's cache), and the stored layout's
  download alone (transferred, and its JSON decoded).

Then, on the return visit, scripted pan and zoom from Fit to close up and back:
* ``wheel``: for each of 24 wheel steps in (x1.2 each) and 24 out, the time from the event to
  the frame after it has been painted (two animation frames), grouped by zoom level: a task's
  height on screen, ``layers`` (under 4 px: layer bars), ``faded`` (4-10 px: faded edges),
  ``tasks`` (10-28 px) and ``close`` (28 px and more: labels, full size);
* ``pan``: a 40-step mouse drag at three zoom levels (Fit, middle, close), with every animation
  frame's interval recorded by an in-page requestAnimationFrame loop (a frame over 16.7 ms
  shows as a longer interval).

Medians of ``--repeat`` visit pairs for first paint; p50, p95 and maximum of all frames of all
repeats per zoom level (targets: every frame under 50 ms, first paint under 1.5 s).

    .venv/bin/python benchmarks/bench_ui.py                    # 2,000 and 10,000 tasks, 3 repeats
    .venv/bin/python benchmarks/bench_ui.py --sizes 2000 --repeat 1
    .venv/bin/python benchmarks/bench_ui.py --json /tmp/ui.json
    .venv/bin/python benchmarks/bench_ui.py --sizes 2000 --repeat 3 --no-frames  # visits only
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from tests.e2e.server_process import ServerProcess  # noqa: E402

from bench_local import layered, machine, source, workflow_yaml  # noqa: E402

LAYERS = 20
ELK_TIMEOUT_MS = 900_000
ELK_UP_TO = 4000  # ui/src/graph/layout.ts: above, ELK is not run (nothing is stored)

WHEEL_FRAME = """async (deltaY) => {
    const c = document.querySelector('[data-testid=graph]');
    const r = c.getBoundingClientRect();
    const t0 = performance.now();
    c.dispatchEvent(new WheelEvent('wheel', { deltaY, clientX: r.left + r.width / 2,
        clientY: r.top + r.height / 2, bubbles: true, cancelable: true }));
    await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
    return [performance.now() - t0, Number(c.dataset.taskPx)];
}"""
LEVELS = ("layers", "faded", "tasks", "close")
# ms since navigation: the first GET /runs/{id} (the whole run view) asked, first byte, received
RUN_VIEW_TIMES = """() => { const e = performance.getEntriesByType('resource')
    .find((e) => /\\/runs\\/[^/?]+(\\?|$)/.test(e.name));
    return [e.startTime, e.responseStart, e.responseEnd]; }"""


def level(task_px: float) -> str:
    """The zoom level a task's height on screen puts the graph in (GraphView.tsx)."""
    return (
        "layers"
        if task_px < 4
        else "faded"
        if task_px < 10
        else "tasks"
        if task_px < 28
        else "close"
    )


FRAME_LOOP_START = """() => {
    window.__frames = [];
    let last = performance.now();
    window.__frameLoop = true;
    const tick = (t) => {
        window.__frames.push(t - last);
        last = t;
        if (window.__frameLoop) requestAnimationFrame(tick);
    };
    requestAnimationFrame((t) => { last = t; requestAnimationFrame(tick); });
}"""
FRAME_LOOP_STOP = "() => { window.__frameLoop = false; return window.__frames; }"


# Where a first visit's time goes, ms since navigation (Navigation and Resource Timing): the
# HTML received, the script received, DOMContentLoaded (the script parsed and run), and each
# API request the run page makes (asked, first byte, received), in the order they were asked.
BREAKDOWN = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const out = { html: nav.responseEnd, dom_content_loaded: nav.domContentLoadedEventEnd };
    for (const e of performance.getEntriesByType('resource')) {
        const u = new URL(e.name);
        let name = null;
        if (/\\.js$/.test(u.pathname) && !/worker/.test(u.pathname)) name = 'script';
        else if (/\\/me$/.test(u.pathname)) name = 'me';
        else if (/\\/runs\\/[^/]+\\/layout$/.test(u.pathname)) name = 'layout';
        else if (/\\/runs\\/[^/]+\\/states$/.test(u.pathname)) name = 'states';
        else if (/\\/versions\\/\\d+\\/layout$/.test(u.pathname) && u.searchParams.has('h')) {
            name = 'stored_layout';
        }
        else if (/\\/runs\\/[^/]+$/.test(u.pathname)) name = 'run_view';
        if (name && !(name in out)) out[name] = [e.startTime, e.responseStart, e.responseEnd];
    }
    return out;
}"""


# bytes a visit transferred (HTML + every resource; 0 for a copy from the browser's cache), and
# the stored layout's download: [transferred, decoded]
BYTES = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    let total = nav.transferSize;
    let stored = null;
    for (const e of performance.getEntriesByType('resource')) {
        total += e.transferSize;
        const u = new URL(e.name);
        if (/\\/layout$/.test(u.pathname) && u.searchParams.has('h') && e.decodedBodySize > 0) {
            stored = [e.transferSize, e.decodedBodySize];
        }
    }
    return { total, stored };
}"""


def mark(page: Any, name: str) -> float:
    return float(page.evaluate(f"performance.getEntriesByName('{name}')[0].startTime"))


def visit(page: Any, url: str, *, reload: bool) -> dict[str, Any]:
    if reload:
        page.reload()
    else:
        page.goto(url)
    graph = page.get_by_test_id("graph")
    graph.wait_for(state="attached")
    page.wait_for_function(
        "document.querySelector('[data-testid=graph]')?.dataset.layout === 'final'",
        timeout=ELK_TIMEOUT_MS,
        polling=100,
    )
    # a page that draws before the whole run view has arrived asks for it after drawing
    page.wait_for_function(
        "performance.getEntriesByType('resource')"
        ".some((e) => /\\/runs\\/[^/?]+(\\?|$)/.test(e.name))",
        timeout=ELK_TIMEOUT_MS,
        polling=100,
    )
    asked, first_byte, received = page.evaluate(RUN_VIEW_TIMES)
    breakdown = {
        k: [round(x) for x in v] if isinstance(v, list) else round(v)
        for k, v in page.evaluate(BREAKDOWN).items()
    }
    transferred = page.evaluate(BYTES)
    return {
        "bytes_total": transferred["total"],
        "bytes_stored_layout": transferred["stored"],
        "first_paint_ms": round(mark(page, "graph-rendered")),
        "final_layout_ms": round(mark(page, "graph-final-layout")),
        "layout_source": graph.get_attribute("data-layout-source"),
        # when the run view was asked for, its first byte, and when it had arrived (its
        # first fetch): what the first paint waits for
        "run_view_asked_ms": round(asked),
        "run_view_first_byte_ms": round(first_byte),
        "run_view_ms": round(received),
        # ms since navigation: html, dom_content_loaded; [asked, first byte, received] of
        # script, me, layout, states (where the page asks for it) and run_view
        "breakdown": breakdown,
    }


def pan(page: Any) -> list[float]:
    box = page.get_by_test_id("graph").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.evaluate(FRAME_LOOP_START)
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 400, cy - 100, steps=40)
    page.mouse.move(cx, cy, steps=40)
    page.mouse.up()
    page.wait_for_timeout(100)
    frames: list[float] = page.evaluate(FRAME_LOOP_STOP)
    return frames[1:]  # the first interval starts before the drag


def frames(page: Any) -> dict[str, Any]:
    page.get_by_role("button", name="Fit").click()
    page.wait_for_timeout(200)
    out: dict[str, Any] = {"wheel": {name: [] for name in LEVELS}, "pan": {}}
    out["pan"]["fit"] = pan(page)
    out["mode_at_fit"] = page.get_by_test_id("graph").get_attribute("data-mode")
    steps = 24
    for i in range(steps):
        ms, task_px = page.evaluate(WHEEL_FRAME, -120)
        out["wheel"][level(task_px)].append(ms)
        if i == steps // 2:
            out["pan"]["middle"] = pan(page)
    out["pan"]["close"] = pan(page)
    for _ in range(steps):
        ms, task_px = page.evaluate(WHEEL_FRAME, 120)
        out["wheel"][level(task_px)].append(ms)
    return out


def new_page(browser: Any, token: str) -> tuple[Any, Any]:
    """A fresh browser profile (nothing in its IndexedDB or HTTP cache), signed in."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(f"localStorage.setItem('stratoflow.token', {json.dumps(token)})")
    return context, context.new_page()


def forget_stored_layouts(home: Path) -> None:
    """Delete what the server keeps of ELK's layouts: the next first visit lays out again."""
    with sqlite3.connect(home / "readmodel.db") as db:
        db.execute("DELETE FROM version_layouts")


def stored_layout_kept(api: httpx.Client, run_id: str, timeout_s: float = 60) -> None:
    """Wait until the first visit has sent ELK's layout to the server (it answers 200)."""
    url = api.get(f"/runs/{run_id}/states").json()["layout"]
    deadline = time.monotonic() + timeout_s
    while api.get(f"/{url}").status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no layout stored at {url} within {timeout_s} s")
        time.sleep(0.2)


def one_size(browser: Any, tasks: int, repeat: int, with_frames: bool = True) -> dict[str, Any]:
    width = tasks // LAYERS
    deps = layered(LAYERS, width)
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        server = ServerProcess(Path(tmp) / "home")
        server.start()
        try:
            api = httpx.Client(base_url=server.url, headers=server.headers, timeout=120)
            applied = api.post("/workflows", json={"source": workflow_yaml("layered", deps, 8)})
            applied.raise_for_status()
            run = api.post("/workflows/layered/runs", json={})
            run.raise_for_status()
            run_id = run.json()["run"]["id"]
            api.post(f"/runs/{run_id}/stop").raise_for_status()
            settled(api, run_id)
            # a second run of the same version: the cached visit opens it
            second = api.post("/workflows/layered/runs", json={})
            second.raise_for_status()
            second_id = second.json()["run"]["id"]
            api.post(f"/runs/{second_id}/stop").raise_for_status()
            settled(api, second_id)
            url = f"{server.url}/#/runs/{run_id}"
            samples = []
            for r in range(repeat):
                forget_stored_layouts(server.home)
                context, page = new_page(browser, server.token)
                first = visit(page, url, reload=False)
                if tasks <= ELK_UP_TO:
                    stored_layout_kept(api, run_id)
                again = visit(page, url, reload=True)
                sample = {"first_visit": first, "return_visit": again}
                if with_frames:
                    sample.update(frames(page))
                context.close()
                context, page = new_page(browser, server.token)
                sample["cached_visit"] = visit(
                    page, f"{server.url}/#/runs/{second_id}", reload=False
                )
                context.close()
                samples.append(sample)
                print(
                    f"{tasks} tasks, repeat {r + 1}: first visit {first}, return visit {again},"
                    f" cached visit {sample['cached_visit']},"
                    f" mode at Fit {sample.get('mode_at_fit')}",
                    flush=True,
                )
            api.close()
        finally:
            server.stop()
    return summarise(tasks, samples)


def settled(api: httpx.Client, run_id: str, timeout_s: float = 600) -> None:
    """Wait until the stopped run has ended: the page is measured on an idle server."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if api.get(f"/runs/{run_id}").json()["run"]["state"] in ("stopped", "failed", "succeeded"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"run {run_id} did not end within {timeout_s} s")


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)], 1),
        "max": round(ordered[-1], 1),
    }


def summarise(tasks: int, samples: list[dict[str, Any]]) -> dict[str, Any]:
    def med(visit: str, key: str) -> float:
        return float(statistics.median(s[visit][key] for s in samples))

    out: dict[str, Any] = {"tasks": tasks, "repeats": len(samples)}
    # the first visit of the first repeat is the one that has the server compute the layout
    out["first_paint_ms_very_first_visit"] = samples[0]["first_visit"]["first_paint_ms"]
    for v in ("first_visit", "return_visit", "cached_visit"):
        out[v] = {
            "bytes_total_median": med(v, "bytes_total"),
            "bytes_stored_layout": sorted(
                {tuple(s[v]["bytes_stored_layout"] or ()) for s in samples}
            ),
            "first_paint_ms_median": med(v, "first_paint_ms"),
            "run_view_asked_ms_median": med(v, "run_view_asked_ms"),
            "run_view_first_byte_ms_median": med(v, "run_view_first_byte_ms"),
            "run_view_received_ms_median": med(v, "run_view_ms"),
            "final_layout_ms_median": med(v, "final_layout_ms"),
            "layout_sources": sorted({s[v]["layout_source"] for s in samples}),
        }
    out["final_layout_ratio_first_to_return"] = round(
        out["first_visit"]["final_layout_ms_median"]
        / max(out["return_visit"]["final_layout_ms_median"], 1),
        1,
    )
    out["final_layout_ratio_first_to_cached"] = round(
        out["first_visit"]["final_layout_ms_median"]
        / max(out["cached_visit"]["final_layout_ms_median"], 1),
        1,
    )
    if "mode_at_fit" not in samples[0]:  # --no-frames
        return out
    out["mode_at_fit"] = sorted({s["mode_at_fit"] for s in samples})
    out["wheel_to_frame_ms"] = {
        name: stats([ms for s in samples for ms in s["wheel"][name]]) for name in LEVELS
    }
    out["pan_frame_interval_ms"] = {
        level: stats([ms for s in samples for ms in s["pan"][level]])
        for level in ("fit", "middle", "close")
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="2000,10000", help="task counts (default 2000,10000)")
    ap.add_argument("--repeat", type=int, default=3, help="visit pairs per size (default 3)")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    ap.add_argument("--no-frames", action="store_true", help="visits only: no pan and zoom")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        print(f"no Chromium at {CHROMIUM}: `make chromium` installs it", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        report: dict[str, Any] = {"machine": machine(Path(tmp)), "source": source(), "sizes": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        for size in (int(s) for s in args.sizes.split(",")):
            report["sizes"].append(one_size(browser, size, args.repeat, not args.no_frames))
        browser.close()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
