"""Server benchmark: a run through ``stratoflow server`` watched in Chromium, against
``stratoflow run`` of the same file (issue 10, item 3).

The workflow: 2,000 shell ``true`` tasks in 20 layers of 100, each task depending on 3 tasks
of the layer above (fixed seed), ``concurrency: 8``.

* ``run``: ``stratoflow run FILE --home <fresh>`` timed as a process, start to exit.
* ``server``: a ``stratoflow server`` on a fresh home is started first (a server is long
  lived: its start-up is not timed). Then, timed: ``stratoflow apply FILE`` and
  ``stratoflow trigger NAME --wait`` as processes, while one headless Chromium
  (/usr/bin/chromium, driven by Playwright) has the run's page open from the moment the run
  exists, polling it as the UI does. Every answer to the page's run polls is recorded:
  status (200 or 304), bytes on the wire (Playwright's ``sizes()``: headers + body as sent,
  gzipped when it was).
* CPU, for both: the process's user + system time and its tasks' (children it reaped); the
  server's is counted from ``apply`` to the end of ``trigger --wait``, and so is Chromium's
  (all its processes, and by process type: renderer, browser, GPU, network), which competes
  for the same cores. The browser is launched before the clock, as a server is; so is the
  blank tab the page opens in: its renderer's start-up (~0.7 s of CPU in the second after
  ``new_page`` returns, V8 and Blink setting up) is waited out before ``apply``, instead of
  being counted against the run page (it was, until the twenty-fourth round).

The two are interleaved (alternating order) so machine noise hits both alike; medians of
``--repeat`` pairs and their ratio are reported (target: server within 1.2x of run).

    .venv/bin/python benchmarks/bench_server.py                # 5 pairs, ~5 min
    .venv/bin/python benchmarks/bench_server.py --quick        # 1 pair
    .venv/bin/python benchmarks/bench_server.py --tab gantt --json /tmp/server.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from tests.e2e.server_process import ServerProcess  # noqa: E402

from bench_local import layered, machine, source, workflow_yaml  # noqa: E402

NAME = "layered"
LAYERS, WIDTH, CONCURRENCY = 20, 100, 8
TARGET_RATIO = 1.2
STRATOFLOW = [sys.executable, "-m", "stratoflow"]


@dataclass
class ServerSample:
    seconds: float
    run_id: str
    polls: int = 0
    not_modified: int = 0
    bytes_total: int = 0
    bytes_per_poll: float = 0.0
    largest_poll: int = 0
    server_cpu_seconds: float = 0.0
    chromium_cpu_seconds: float = 0.0
    chromium_cpu_by_type: dict[str, float] = field(default_factory=dict)
    bench_cpu_seconds: float = 0.0  # this script's own, on the same cores (the run has none)
    end_lag_seconds: float = 0.0
    full_view_bytes: dict[str, int] = field(default_factory=dict)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, with that of its children it has waited for
    (its tasks), as ``getrusage(RUSAGE_CHILDREN)`` counts a ``stratoflow run``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def chromium_cpu() -> float:
    """User + system CPU of this process's Chromium processes (browser, renderers, GPU,
    the layout worker's renderer) alive now, and of those they reaped."""
    return sum(chromium_cpu_by_type().values())


def chromium_cpu_by_type() -> dict[str, float]:
    """``chromium_cpu`` by process type: ``browser``, ``renderer``, ``gpu-process``,
    ``utility`` (the network service), ``zygote`` (its ``--type``; Chromium rewrites its
    command line, so the arguments are read from it split on spaces)."""
    me = os.getpid()
    out: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            args = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").split()
        except OSError:
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()
        if "chrom" not in name.lower() or not _descends(int(stat.parent.name), me):
            continue
        kind = next((a[7:].decode() for a in args if a.startswith(b"--type=")), "browser")
        cpu = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        out[kind] = out.get(kind, 0.0) + cpu
    return out


def settle(page: Any, quiet_ms: int = 300, most_s: float = 5.0) -> None:
    """Wait until Chromium has used under 15 ms of CPU in each 100 ms for ``quiet_ms``
    (at most ``most_s``): a new tab's renderer goes on starting for ~1 s after ``new_page``
    returns, and that is not the run page's work."""
    started, last, quiet = time.perf_counter(), chromium_cpu(), 0
    while quiet < quiet_ms // 100 and time.perf_counter() - started < most_s:
        page.wait_for_timeout(100)
        now = chromium_cpu()
        quiet = quiet + 1 if now - last < 0.015 else 0
        last = now


def _descends(pid: int, ancestor: int) -> bool:
    for _ in range(16):
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            return False
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sample(file: Path, home: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its tasks)."""
    cpu_before = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        [*STRATOFLOW, "run", str(file), "--home", str(home), "--output", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"stratoflow run failed: {done.stderr.decode()[-2000:]}")
    return seconds, children_cpu() - cpu_before


def server_sample(
    browser: Any, file: Path, home: Path, tab: str, count_tab_start: bool = False
) -> ServerSample:
    server = ServerProcess(home)
    server.start()
    try:
        return _watched_run(browser, server, file, tab, count_tab_start)
    finally:
        server.stop()


def _watched_run(
    browser: Any, server: ServerProcess, file: Path, tab: str, count_tab_start: bool
) -> ServerSample:
    assert server.proc is not None
    token = server.token
    env = {**os.environ, "STRATOFLOW_TOKEN": token, "STRATOFLOW_API": server.url}
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(f"localStorage.setItem('stratoflow.token', {json.dumps(token)})")
    page = context.new_page()
    finished: list[Any] = []
    page.on("requestfinished", lambda request: finished.append(request))  # noqa: PLW0108 - Playwright tags the handler, a bound method cannot be
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
    if not count_tab_start:
        settle(page)
    cpu_before, chromium_before = cpu_seconds(server.proc.pid), chromium_cpu_by_type()
    started, bench_cpu = time.perf_counter(), time.process_time()
    subprocess.run([*STRATOFLOW, "apply", str(file)], env=env, check=True, capture_output=True)
    waiting = subprocess.Popen(
        [*STRATOFLOW, "trigger", NAME, "--wait", "--output", "json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    run_id = ""
    while not run_id:  # the page opens as soon as the run exists
        runs = api.get("/runs", params={"limit": 1}).json()["runs"]
        run_id = runs[0]["id"] if runs else ""
        if not run_id:
            time.sleep(0.02)
    page.goto(f"{server.url}/#/runs/{run_id}?tab={tab}")
    # lets Playwright take the page's events meanwhile. A plain ``waiting.wait()`` spares ~0.05 s
    # of this script's CPU (0.08 -> 0.04 s), but leaves the driver's events unread the whole
    # run: a pipe of them, which a long run with many polls could fill
    while waiting.poll() is None:
        page.wait_for_timeout(50)
    seconds = time.perf_counter() - started
    bench_cpu = time.process_time() - bench_cpu
    exited = time.time()
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    chromium_after = chromium_cpu_by_type()
    by_type = {
        kind: round(chromium_after.get(kind, 0.0) - chromium_before.get(kind, 0.0), 3)
        for kind in sorted({*chromium_after, *chromium_before})
    }
    chromium = sum(by_type.values())
    if waiting.returncode != 0:
        raise RuntimeError(f"trigger --wait failed: {waiting.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    page.wait_for_timeout(300)
    sample = ServerSample(seconds=round(seconds, 3), run_id=run_id)
    # how long `trigger --wait` took to see the run's end and exit (within the 50 ms above)
    ended_at = api.get(f"/runs/{run_id}").json()["run"]["ended_at"]
    sample.end_lag_seconds = round(exited - datetime.fromisoformat(ended_at).timestamp(), 3)
    pattern = re.compile(rf"/runs/{re.escape(run_id)}(\?|$)")
    sizes = []
    for request in finished:
        if not pattern.search(request.url):
            continue
        response = request.response()
        sample.polls += 1
        sample.not_modified += response is not None and response.status == 304
        got = request.sizes()
        sizes.append(got["responseHeadersSize"] + got["responseBodySize"])
    sample.bytes_total = sum(sizes)
    sample.bytes_per_poll = round(sample.bytes_total / max(1, len(sizes)), 1)
    sample.largest_poll = max(sizes, default=0)
    sample.server_cpu_seconds = round(cpu, 3)
    sample.chromium_cpu_seconds = round(chromium, 3)
    sample.bench_cpu_seconds = round(bench_cpu, 3)
    sample.chromium_cpu_by_type = {k: v for k, v in by_type.items() if v}
    for encoding in ("identity", "gzip"):  # what one whole-run poll would cost, for reference
        with api.stream("GET", f"/runs/{run_id}", headers={"Accept-Encoding": encoding}) as whole:
            sample.full_view_bytes[encoding] = sum(len(c) for c in whole.iter_raw())
    api.close()
    context.close()
    return sample


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="pairs measured (default 5)")
    ap.add_argument("--quick", action="store_true", help="one pair")
    ap.add_argument("--tab", choices=("graph", "gantt", "tasks"), default="graph",
                    help="the run page's tab open in the browser (default: graph)")  # fmt: skip
    ap.add_argument("--count-tab-start", action="store_true",
                    help="start the clock as soon as the blank tab exists, its renderer still "
                    "starting (how rounds before the twenty-fourth measured)")  # fmt: skip
    ap.add_argument("--tmpdir", type=Path, default=None, help="where homes go (default $TMPDIR)")
    ap.add_argument("--json", type=Path, default=None, help="write the samples and medians here")
    args = ap.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    if not Path(CHROMIUM).is_file():
        print(f"no Chromium at {CHROMIUM}: `make chromium` installs it", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench-server-", dir=args.tmpdir))
    file = tmp / f"{NAME}.yaml"
    file.write_text(workflow_yaml(NAME, layered(LAYERS, WIDTH), CONCURRENCY))
    about = {**machine(tmp), **source()}
    runs: list[float] = []
    run_cpu: list[float] = []
    served: list[ServerSample] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        run_sample(file, tmp / "warmup")  # page cache, bytecode: neither side pays them alone
        for i in range(repeat):
            order = ("run", "server") if i % 2 == 0 else ("server", "run")
            for side in order:
                if side == "run":
                    seconds, cpu = run_sample(file, tmp / f"run-{i}")
                    runs.append(round(seconds, 3))
                    run_cpu.append(round(cpu, 3))
                    print(f"pair {i + 1}: run    {seconds:7.2f} s, CPU {cpu:.1f} s", flush=True)
                else:
                    served.append(
                        server_sample(
                            browser, file, tmp / f"server-{i}", args.tab, args.count_tab_start
                        )
                    )
                    s = served[-1]
                    print(
                        f"pair {i + 1}: server {s.seconds:7.2f} s, {s.polls} polls "
                        f"({s.not_modified} x 304), {s.bytes_per_poll / 1024:.1f} KiB per poll, "
                        f"CPU: server {s.server_cpu_seconds:.1f} s, "
                        f"Chromium {s.chromium_cpu_seconds:.2f} s (renderer "
                        f"{s.chromium_cpu_by_type.get('renderer', 0.0):.2f}); trigger's end lag "
                        f"{s.end_lag_seconds:.2f} s",
                        flush=True,
                    )
        browser.close()
    run_median = statistics.median(runs)
    server_median = statistics.median(s.seconds for s in served)
    ratio = server_median / run_median
    summary = {
        "tasks": LAYERS * WIDTH,
        "concurrency": CONCURRENCY,
        "tab": args.tab,
        "tab_start_counted": args.count_tab_start,
        "pairs": repeat,
        "run_median_s": round(run_median, 3),
        "server_median_s": round(server_median, 3),
        "ratio": round(ratio, 3),
        "target": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO,
        "polls_median": statistics.median(s.polls for s in served),
        "not_modified_median": statistics.median(s.not_modified for s in served),
        "bytes_per_poll_median": statistics.median(s.bytes_per_poll for s in served),
        "bytes_per_run_median": statistics.median(s.bytes_total for s in served),
        "largest_poll_max": max(s.largest_poll for s in served),
        "run_cpu_s_median": statistics.median(run_cpu),
        "server_cpu_s_median": statistics.median(s.server_cpu_seconds for s in served),
        "chromium_cpu_s_median": statistics.median(s.chromium_cpu_seconds for s in served),
        "chromium_cpu_s_median_by_type": {
            kind: statistics.median(s.chromium_cpu_by_type.get(kind, 0.0) for s in served)
            for kind in sorted({k for s in served for k in s.chromium_cpu_by_type})
        },
        "end_lag_s_median": statistics.median(s.end_lag_seconds for s in served),
        "full_view_bytes": served[-1].full_view_bytes,
    }
    print()
    for key, value in {**about, **summary}.items():
        print(f"{key:>40}: {value}")
    if args.json:
        payload = {"about": about, "summary": summary, "run_s": runs, "run_cpu_s": run_cpu,
                   "server": [asdict(s) for s in served]}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
