"""Where Chromium's CPU goes while its run page watches a run through ``stratoflow server``
(issue 10, item 3): ``bench_server.py``'s server path, once or ``--runs`` times, with

* Chromium's CPU by process type and thread (``/proc``), in phases: the blank tab's start
  (``new_page`` until Chromium is quiet: not the page's work), the page's load (``goto`` until
  the graph is drawn), and the run's rest (until ``trigger --wait`` exits);
* the page's own counters (CDP ``Performance.getMetrics``: script, layout, style, tasks);
* every request the page made, with its status and body size;
* with ``--trace FILE``, a Chromium trace of the page's load and the run (open it in
  https://ui.perfetto.dev).

    .venv/bin/python benchmarks/chromium_cpu.py --runs 2 --tmpdir /mnt/sfbench
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
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

from bench_local import layered, workflow_yaml  # noqa: E402
from bench_server import CONCURRENCY, LAYERS, NAME, STRATOFLOW, WIDTH, _descends, settle  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
TRACED = "devtools.timeline,v8,blink,toplevel,cc,gpu,viz,loading"


def threads() -> dict[str, float]:
    """CPU seconds of this process's Chromium threads alive now, by "type/thread name"."""
    me = os.getpid()
    out: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            args = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").split()
        except OSError:
            continue
        if "chrom" not in text[: text.rindex(")")].lower() or not _descends(
            int(stat.parent.name), me
        ):
            continue
        kind = next((a[7:].decode() for a in args if a.startswith(b"--type=")), "browser")
        for task in (stat.parent / "task").glob("*/stat"):
            try:
                line = task.read_text()
            except OSError:
                continue
            name, fields = (
                line[line.index("(") + 1 : line.rindex(")")],
                line.rsplit(")", 1)[1].split(),
            )
            key = f"{kind}/{name}"
            out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


def spent(after: dict[str, float], before: dict[str, float], top: int = 6) -> dict[str, Any]:
    d = {k: round(after.get(k, 0.0) - before.get(k, 0.0), 3) for k in after.keys() | before.keys()}
    biggest = sorted(((k, v) for k, v in d.items() if v >= 0.01), key=lambda kv: -kv[1])[:top]
    return {"total": round(sum(d.values()), 3), "threads": dict(biggest)}


def watched(browser: Any, file: Path, home: Path, trace: Path | None) -> dict[str, Any]:
    server = ServerProcess(home)
    server.start()
    try:
        token = server.token
        env = {**os.environ, "STRATOFLOW_TOKEN": token, "STRATOFLOW_API": server.url}
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_init_script(f"localStorage.setItem('stratoflow.token', {json.dumps(token)})")
        marks = [("start", threads())]
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        finished: list[Any] = []
        page.on("requestfinished", lambda r: finished.append(r))  # noqa: PLW0108
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        settle(page)
        marks.append(("blank tab's start", threads()))
        started = time.perf_counter()
        subprocess.run([*STRATOFLOW, "apply", str(file)], env=env, check=True, capture_output=True)
        waiting = subprocess.Popen(
            [*STRATOFLOW, "trigger", NAME, "--wait", "--output", "json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        run_id = ""
        while not run_id:
            runs = api.get("/runs", params={"limit": 1}).json()["runs"]
            run_id = runs[0]["id"] if runs else ""
            time.sleep(0 if run_id else 0.02)
        marks.append(("apply, trigger (page not open)", threads()))
        if trace:
            browser.start_tracing(page=page, categories=TRACED.split(","))
        page.goto(f"{server.url}/#/runs/{run_id}")
        page.wait_for_selector("[data-testid=graph][data-ready=true]")
        marks.append(("page load (to the graph drawn)", threads()))
        while waiting.poll() is None:
            page.wait_for_timeout(50)
        seconds = time.perf_counter() - started
        marks.append(("the run's rest (to trigger's exit)", threads()))
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        if trace:
            trace.write_bytes(browser.stop_tracing())
        out: dict[str, Any] = {"seconds": round(seconds, 3), "phases": {}}
        for (_, before), (label, after) in itertools.pairwise(marks):
            out["phases"][label] = spent(after, before)
        out["page_metrics_s"] = {
            k: round(v, 3) for k, v in metrics.items() if k.endswith("Duration") and v
        }
        out["requests"] = [
            f"{r.response().status if r.response() else '-'} "
            f"{r.sizes()['responseBodySize']:>8} B {r.url.replace(server.url, '')[:100]}"
            for r in finished
        ]
        api.close()
        context.close()
        return out
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--tmpdir", type=Path, default=None, help="where homes go (default $TMPDIR)")
    ap.add_argument("--trace", type=Path, default=None, help="write the last run's trace here")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="chromium-cpu-", dir=args.tmpdir))
    file = tmp / f"{NAME}.yaml"
    file.write_text(workflow_yaml(NAME, layered(LAYERS, WIDTH), CONCURRENCY))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        for i in range(args.runs):
            last = i == args.runs - 1
            print(
                json.dumps(
                    watched(browser, file, tmp / f"s{i}", args.trace if last else None), indent=1
                )
            )
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
