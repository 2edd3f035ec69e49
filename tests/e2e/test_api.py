"""The API end to end: a real LocalRuntime (SQLite, subprocess executor, background loop)
behind the local HTTP server on 127.0.0.1, driven with httpx."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.api import create_app, start_in_thread

pytestmark = pytest.mark.e2e

TERMINAL = {"succeeded", "failed", "stopped"}

PIPELINE = """\
name: pipeline
params: {greeting: hello}
tasks:
  a:
    type: shell
    command: |
      echo "a=1" >> "$STRATOFLOW_OUTPUT"
      echo "{{ params.greeting }} from a"
  b:
    type: shell
    depends_on: [a]
    command: echo "b={{ tasks.a.outputs.a }}-b" >> "$STRATOFLOW_OUTPUT"
"""


def slow(pidfile: Path) -> str:
    return f"""\
name: slow
tasks:
  nap:
    type: shell
    command: |
      sh -c 'echo $$ > "{pidfile}"; exec sleep 60'
  after:
    type: shell
    depends_on: [nap]
    command: echo after
"""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone, or gone while being read (ESRCH)
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def flaky(marker: Path) -> str:
    return f"""\
name: flaky
tasks:
  check:
    type: shell
    command: test -f '{marker}' && echo "found=yes" >> "$STRATOFLOW_OUTPUT"
  report:
    type: shell
    depends_on: [check]
    command: echo "done=1" >> "$STRATOFLOW_OUTPUT"
"""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    runtime = LocalRuntime(tmp_path / "home", cron=False)
    app = create_app(runtime.scheduler, on_change=runtime.wake)
    server, url = start_in_thread(app, "127.0.0.1", 0)
    runtime.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=10) as http:
            yield http
    finally:
        server.shutdown()
        runtime.close()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_detail(http: httpx.Client, run_id: str) -> dict[str, Any]:
    reply = http.get(f"/runs/{run_id}")
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def finished(http: httpx.Client, run_id: str) -> dict[str, Any]:
    return wait_for(  # type: ignore[no-any-return]
        lambda: (d := run_detail(http, run_id))["run"]["state"] in TERMINAL and d,
        f"run {run_id} to finish",
    )


def apply(http: httpx.Client, source: str) -> dict[str, Any]:
    reply = http.post("/workflows", json={"source": source})
    assert reply.status_code == 201, reply.text
    return reply.json()  # type: ignore[no-any-return]


def trigger(http: httpx.Client, name: str, **body: Any) -> str:
    reply = http.post(f"/workflows/{name}/runs", json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()["run"]["id"]  # type: ignore[no-any-return]


def test_apply_trigger_outputs_and_logs(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert apply(client, PIPELINE)["version"] == 1
    assert client.post("/workflows", json={"source": PIPELINE}).status_code == 200  # unchanged

    run_id = trigger(client, "pipeline", params={"greeting": "hi"})
    detail = finished(client, run_id)
    assert detail["run"]["state"] == "succeeded", detail
    assert detail["run"]["tasks_done"] == 2
    assert detail["tasks"]["a"]["outputs"] == {"a": "1"}
    assert detail["tasks"]["b"]["outputs"] == {"b": "1-b"}
    assert detail["tasks"]["a"]["history"][0]["exit_code"] == 0

    log = client.get(f"/runs/{run_id}/tasks/a/attempts/1/log")
    assert log.status_code == 200
    assert log.headers["content-type"].startswith("text/plain")
    assert "hi from a" in log.text
    end = int(log.headers["x-next-offset"])
    assert end == len(log.content)
    tail = client.get(f"/runs/{run_id}/tasks/a/attempts/1/log", params={"offset": end - 5})
    assert tail.content == log.content[-5:]

    runs = client.get("/runs", params={"workflow": "pipeline"}).json()["runs"]
    assert [r["id"] for r in runs] == [run_id]
    assert runs[0]["state"] == "succeeded"


def test_stop_kills_a_running_task_then_rerun(client: httpx.Client, shared_dir: Path) -> None:
    pidfile = shared_dir / "nap.pid"
    apply(client, slow(pidfile))
    run_id = trigger(client, "slow")
    wait_for(
        lambda: run_detail(client, run_id)["tasks"]["nap"]["state"] == "running",
        "nap to start",
    )
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), "the pid"))
    assert alive(pid)
    stopped = client.post(f"/runs/{run_id}/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "stopped"
    wait_for(lambda: not alive(pid), "the task's process to be killed", timeout=10)
    detail = run_detail(client, run_id)
    assert detail["tasks"]["nap"]["state"] == "stopped"
    assert detail["tasks"]["after"]["state"] == "stopped"
    again = client.post(f"/runs/{run_id}/stop")
    assert again.status_code == 409
    assert "stopped" in again.json()["message"]

    rerun = client.post(f"/runs/{run_id}/rerun", json={"from": None})
    assert rerun.status_code == 200, rerun.text
    assert rerun.json()["state"] == "running"
    wait_for(
        lambda: (
            run_detail(client, run_id)["tasks"]["nap"]["attempts"] == 2
            and run_detail(client, run_id)["tasks"]["nap"]["state"] == "running"
        ),
        "nap to run again",
    )
    second_pid = int(
        wait_for(lambda: (text := pidfile.read_text().strip()) != str(pid) and text, "new pid")
    )
    assert alive(second_pid)
    assert client.post(f"/runs/{run_id}/stop").json()["state"] == "stopped"
    wait_for(lambda: not alive(second_pid), "the rerun's process to be killed", timeout=10)


def test_rerun_failed_and_mark(client: httpx.Client, shared_dir: Path) -> None:
    marker = shared_dir / "marker"
    apply(client, flaky(marker))

    run_id = trigger(client, "flaky")
    detail = finished(client, run_id)
    assert detail["run"]["state"] == "failed"
    assert detail["tasks"]["check"]["state"] == "failed"
    assert detail["tasks"]["check"]["history"][0]["exit_code"] == 1
    assert detail["tasks"]["report"]["state"] == "upstream_failed"

    marker.write_text("x")
    rerun = client.post(f"/runs/{run_id}/rerun", json={"from": None})
    assert rerun.status_code == 200, rerun.text
    detail = finished(client, run_id)
    assert detail["run"]["state"] == "succeeded"
    assert detail["tasks"]["check"]["outputs"] == {"found": "yes"}
    assert [a["state"] for a in detail["tasks"]["check"]["history"]] == ["failed", "succeeded"]
    assert detail["tasks"]["report"]["outputs"] == {"done": "1"}

    marker.unlink()
    second = trigger(client, "flaky")
    assert finished(client, second)["run"]["state"] == "failed"
    marked = client.post(f"/runs/{second}/tasks/check/mark", json={"state": "succeeded"})
    assert marked.status_code == 200, marked.text
    detail = finished(client, second)
    assert detail["run"]["state"] == "succeeded"
    assert detail["tasks"]["check"]["state"] == "succeeded"
    assert detail["tasks"]["report"]["state"] == "succeeded"


def test_errors_over_http(client: httpx.Client) -> None:
    cycle = "name: loop\ntasks:\n  x: {type: shell, command: echo, depends_on: [y]}\n"
    cycle += "  y: {type: shell, command: echo, depends_on: [x]}\n"
    bad = client.post("/workflows", json={"source": cycle})
    assert bad.status_code == 400
    assert "x -> y" in bad.json()["message"] or "y -> x" in bad.json()["message"]

    not_json = client.post(
        "/workflows", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422
    assert not_json.json()["problems"][0]["path"] == "body"
    binary = client.post(
        "/workflows", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert binary.status_code == 422
    assert "UTF-8" in binary.json()["message"]

    missing = client.get("/runs/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "not_found",
        "message": "run 'nope' not found",
        "problems": [],
    }
    assert client.get("/no/such/route").status_code == 404
    assert client.get("/runs", params={"limit": 10**9}).status_code == 422

    doc = client.get("/openapi.json")
    assert doc.status_code == 200
    assert "/runs/{run_id}/rerun" in doc.json()["paths"]
