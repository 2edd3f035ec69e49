"""The server's CPU for one run view (issue 10, items 3 and 4): ``GET /runs/{id}`` whole, its
layout and its timeline, of a stopped 2,000- and 10,000-task layered run, and the trigger
that makes such a run (``POST /workflows/{name}/runs``, whose answer is the whole new run)
and the apply of a new version of the workflow (``POST /workflows``, whose answer is the
whole version: document and source), answered by the API in process (the local server's code without its socket), against a
baseline tree in the same minutes.

    PYTHONPATH=$PWD/layers/core .venv/bin/python benchmarks/bench_run_view.py \\
        --baseline /tmp/base/layers/core --pairs 5

Each sample is a fresh process (``--measure``) that starts the API as the server does (with
its garbage collector settings, where the tree has them), builds the run, answers each request
once to warm up, then ``--repeat`` times, and prints the median CPU seconds (user + system of
the process, ``time.process_time``) per request. Baseline and this tree alternate; the table
shows medians over the pairs and the median of the pairs' ratios. The bodies of both trees
are compared as JSON (run ids aside; the trigger's by each task's state and the run's
counts, its times being the clock's): a faster view that says something else is a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROUTES = ("run", "layout", "timeline", "trigger", "apply")


def _event(path: str, method: str = "GET", body: str | None = None) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "body": body,
        "isBase64Encoded": False,
        "requestContext": {"stage": "bench", "requestId": "bench", "path": path},
    }


def measure(layers: int, repeat: int) -> dict[str, Any]:
    """In this process (``PYTHONPATH`` picks the tree): the median CPU seconds per request."""
    sys.path.insert(0, str(HERE))
    from bench_local import layered, workflow_yaml
    from stratoflow.adapters.local.sqlite_store import SqliteStore
    from stratoflow.api.app import create_app
    from stratoflow.ports import Clock, Dispatcher, Recovery
    from stratoflow.service import Scheduler

    class Clockwork(Clock):
        def __init__(self) -> None:
            self.time = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

        def now(self) -> datetime:
            self.time += timedelta(milliseconds=10)
            return self.time

    class Nowhere(Dispatcher):  # starts nothing: the run is stopped before anything ends
        def dispatch(self, spec: Any) -> str | None:
            return None

        def kill(self, run_id: str, task_id: str, attempt: int) -> None:
            return None

        def recover(self, running: Any) -> Recovery:
            return Recovery()

    tmp = Path(tempfile.mkdtemp(prefix="bench-run-view-"))
    store = SqliteStore(tmp / "state.db")
    scheduler = Scheduler(store, store, Nowhere(), Clockwork())
    app = create_app(scheduler)
    try:  # as `stratoflow server` does once it has started (where the tree has it)
        from stratoflow.adapters.local.runtime import settle_gc
    except ImportError:
        pass
    else:
        settle_gc()
    scheduler.apply(workflow_yaml("big", layered(layers, 50), 8))
    run, _ = scheduler.trigger("default", "big")
    scheduler.step()
    scheduler.stop(run.id)
    scheduler.step()
    paths = {
        "run": f"/runs/{run.id}",
        "layout": f"/runs/{run.id}/layout",
        "timeline": f"/runs/{run.id}/timeline",
    }
    out: dict[str, Any] = {"tasks": layers * 50}
    for name, path in paths.items():
        answer = app.resolve(_event(path), None)
        assert answer["statusCode"] == 200, answer
        text = answer["body"]
        out[f"{name}_body"] = json.loads(text.replace(run.id, "RUN"))
        out[f"{name}_bytes"] = len(text)
        samples = []
        for _ in range(repeat):
            t0 = time.process_time()
            app.resolve(_event(path), None)
            samples.append(time.process_time() - t0)
        out[name] = statistics.median(samples)
    # each trigger makes a run of every task (the workflow has no max_active_runs)
    samples = []
    for _ in range(repeat):
        t0 = time.process_time()
        answer = app.resolve(_event("/workflows/big/runs", "POST", "{}"), None)
        samples.append(time.process_time() - t0)
        assert answer["statusCode"] == 201, answer
    made = json.loads(answer["body"])
    out["trigger_body"] = {
        "tasks": {t: v["state"] for t, v in made["tasks"].items()},
        "run": {k: made["run"][k] for k in ("state", "tasks_total", "tasks_done")},
    }
    out["trigger_bytes"] = len(answer["body"])
    out["trigger"] = statistics.median(samples)
    # each apply stores a new version (its description changes), its answer the whole
    # version: the document and the source
    samples = []
    source = workflow_yaml("big", layered(layers, 50), 8)
    for i in range(repeat + 1):
        body = json.dumps({"source": f"{source}description: version {i + 2}\n"})
        t0 = time.process_time()
        answer = app.resolve(_event("/workflows", "POST", body), None)
        samples.append(time.process_time() - t0)
        assert answer["statusCode"] == 201, answer["body"][:300]
    made = json.loads(answer["body"])
    out["apply_body"] = {k: made[k] for k in ("document", "created", "tasks", "version")}
    out["apply_bytes"] = len(answer["body"])
    out["apply"] = statistics.median(samples[1:])  # the first warms the route up
    store.close()
    return out


def _sample(pythonpath: str, layers: int, repeat: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    argv = [sys.executable, __file__, "--measure", str(layers), "--repeat", str(repeat)]
    done = subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline", help="the baseline tree's layers/core (required)")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5, help="requests per route and sample")
    ap.add_argument("--sizes", default="2000,10000", help="task counts (multiples of 50)")
    ap.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.repeat)))
        return 0
    if not args.baseline:
        ap.error("--baseline is required")
    this = os.environ.get("PYTHONPATH", str(HERE.parent / "layers" / "core"))
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}")
    print(
        "| tasks | route | baseline CPU ms | this tree CPU ms | ratio (median of pairs) | bytes |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        layers = size // 50
        base: list[dict[str, Any]] = []
        mine: list[dict[str, Any]] = []
        for i in range(args.pairs):
            first, second = (base, mine) if i % 2 == 0 else (mine, base)
            for into in (first, second):
                into.append(_sample(args.baseline if into is base else this, layers, args.repeat))
        for route in ROUTES:
            if base[0][f"{route}_body"] != mine[0][f"{route}_body"]:
                print(f"{route} at {size} tasks: the two trees answer differently", file=sys.stderr)
                return 1
            b = statistics.median(s[route] for s in base) * 1000
            m = statistics.median(s[route] for s in mine) * 1000
            ratio = statistics.median(y[route] / x[route] for x, y in zip(base, mine, strict=True))
            size_bytes = mine[0][f"{route}_bytes"]
            print(f"| {size:,} | {route} | {b:.1f} | {m:.1f} | {ratio:.2f}x | {size_bytes:,} |")
    print(f"# load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
