"""Run views that cost what changed: ETags and 304, deltas since a revision, gzip. A real
LocalRuntime behind the local HTTP server, driven with httpx."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.api import create_app, local_server, start_in_thread
from stratoflow.cli import Client, HeldRun
from tests.e2e.test_api import apply, finished, trigger, wait_for

pytestmark = pytest.mark.e2e


def gated(marker: Path, width: int) -> str:
    """``width`` quick tasks, a gate that waits for ``marker``, and ``width`` tasks after it."""
    lines = ["name: gated", "tasks:"]
    for i in range(width):
        lines += [f"  early{i}:", "    type: shell", f"    command: echo early{i}"]
    lines += [
        "  gate:",
        "    type: shell",
        # bounded (~2 min): a test that fails before opening the gate leaves no task behind
        f"    command: i=0; while [ ! -f '{marker}' ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done; [ -f '{marker}' ]",
    ]
    for i in range(width):
        lines += [
            f"  late{i}:",
            "    type: shell",
            "    depends_on: [gate]",
            f'    command: echo "n={i}" >> "$STRATOFLOW_OUTPUT"',
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html><title>x</title>")
    (static / "assets" / "app-abc123.js").write_text("console.log('stratoflow');\n" * 400)
    runtime = LocalRuntime(tmp_path / "home", cron=False)
    app = create_app(runtime.scheduler, on_change=runtime.wake, static_dir=static)
    server, url = start_in_thread(app, "127.0.0.1", 0)
    runtime.start()
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            yield http, tmp_path
    finally:
        server.shutdown()
        runtime.close()


def ended_run(http: httpx.Client, tmp: Path, width: int) -> tuple[str, dict[str, Any]]:
    """A run of ``gated`` with its gate open, and its view once it has ended."""
    marker = tmp / "go"
    marker.touch()
    apply(http, gated(marker, width))
    run_id = trigger(http, "gated")
    return run_id, finished(http, run_id)


def merged(old: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """What the UI does with a delta: its tasks over the view it has."""
    assert delta["full"] is False
    return {**delta, "tasks": {**old["tasks"], **delta["tasks"]}, "full": True}


def test_a_delta_applied_to_an_old_view_equals_the_new_full_view(
    served: tuple[httpx.Client, Path],
) -> None:
    http, tmp = served
    marker = tmp / "go"
    apply(http, gated(marker, 30))
    run_id = trigger(http, "gated")
    early = [f"early{i}" for i in range(30)]
    old = wait_for(
        lambda: (
            (d := http.get(f"/runs/{run_id}").json())["tasks"]["gate"]["state"] == "running"
            and all(d["tasks"][t]["state"] == "succeeded" for t in early)
            and d
        ),
        "the early tasks to end while the gate runs",
    )
    assert old["full"] is True
    assert old["revision"] > 0

    marker.touch()
    new = finished(http, run_id)
    delta = http.get(f"/runs/{run_id}", params={"since": old["revision"]}).json()
    assert delta["revision"] == new["revision"] > old["revision"]
    assert merged(old, delta) == new
    # only what changed came: the gate and the tasks after it, none of the early ones
    assert set(delta["tasks"]) == {"gate", *(f"late{i}" for i in range(30))}
    assert delta["tasks"]["late7"]["outputs"] == {"n": "7"}

    # in between, a chain of deltas gives the same view as one
    nothing = http.get(f"/runs/{run_id}", params={"since": new["revision"]}).json()
    assert nothing["tasks"] == {}
    assert nothing["full"] is False
    assert merged(new, nothing) == new


def test_unchanged_run_answers_304_with_no_body(served: tuple[httpx.Client, Path]) -> None:
    http, tmp = served
    run_id, _ = ended_run(http, tmp, 2)
    first = http.get(f"/runs/{run_id}")
    tag = first.headers["etag"]
    assert tag.startswith('W/"')
    assert first.headers["cache-control"] == "no-cache"

    again = http.get(f"/runs/{run_id}", headers={"If-None-Match": tag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == tag
    # the tag names the run's state however it was fetched: a delta poll gets the 304 too
    since = first.json()["revision"]
    delta = http.get(f"/runs/{run_id}", params={"since": since}, headers={"If-None-Match": tag})
    assert delta.status_code == 304
    listed = http.get(f"/runs/{run_id}", headers={"If-None-Match": f'"other", {tag}'})
    assert listed.status_code == 304
    stale = http.get(f"/runs/{run_id}", headers={"If-None-Match": 'W/"stale"'})
    assert stale.status_code == 200
    assert stale.json() == first.json()

    timeline = http.get(f"/runs/{run_id}/timeline")
    assert timeline.status_code == 200
    timeline_again = http.get(
        f"/runs/{run_id}/timeline", headers={"If-None-Match": timeline.headers["etag"]}
    )
    assert timeline_again.status_code == 304


def test_a_changed_run_gets_a_new_tag(served: tuple[httpx.Client, Path]) -> None:
    http, tmp = served
    marker = tmp / "go"
    apply(http, gated(marker, 1))
    run_id = trigger(http, "gated")
    running = wait_for(
        lambda: (
            (r := http.get(f"/runs/{run_id}")).json()["tasks"]["gate"]["state"] == "running" and r
        ),
        "the gate to run",
    )
    marker.touch()
    finished(http, run_id)
    after = http.get(f"/runs/{run_id}", headers={"If-None-Match": running.headers["etag"]})
    assert after.status_code == 200
    assert after.headers["etag"] != running.headers["etag"]
    assert after.json()["tasks"]["late0"]["state"] == "succeeded"


def test_gzip_is_negotiated(served: tuple[httpx.Client, Path]) -> None:
    http, tmp = served
    run_id, plain = ended_run(http, tmp, 20)

    packed = http.get(f"/runs/{run_id}", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in packed.headers["vary"].lower()
    assert int(packed.headers["content-length"]) < len(packed.content) / 3
    assert packed.json() == plain

    for refused in ("identity", "gzip;q=0", "br", "*;q=0"):
        raw = http.get(f"/runs/{run_id}", headers={"Accept-Encoding": refused})
        assert "content-encoding" not in raw.headers, refused
        assert int(raw.headers["content-length"]) == len(raw.content)
        assert raw.json() == plain
    assert (
        "content-encoding"
        in http.get(f"/runs/{run_id}", headers={"Accept-Encoding": "br;q=1, *;q=0.5"}).headers
    )

    # a small answer is not worth it; an error is JSON either way
    health = http.get("/health", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in health.headers
    assert health.json() == {"status": "ok"}

    # static assets too, compressed once and kept
    source = (tmp / "static" / "assets" / "app-abc123.js").read_bytes()
    with http.stream("GET", "/assets/app-abc123.js", headers={"Accept-Encoding": "gzip"}) as asset:
        raw = b"".join(asset.iter_raw())
    assert asset.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw) == source
    assert len(raw) < len(source) / 10
    second = http.get("/assets/app-abc123.js", headers={"Accept-Encoding": "gzip"})
    assert second.content == source  # from the kept copy
    assert int(second.headers["content-length"]) == len(raw)

    # a view with an ETag (as a layout, computed once per version) is compressed once and
    # kept under its path and tag, then sent from the kept copy
    path = f"/runs/{run_id}"
    view = http.get(path, headers={"Accept-Encoding": "gzip"})
    assert view.headers["content-encoding"] == "gzip"
    tag = view.headers["etag"]
    kept = [key for key in local_server._GZIPPED if key[:2] == (path, tag)]
    assert len(kept) == 1
    again = http.get(path, headers={"Accept-Encoding": "gzip"})
    assert (again.json(), again.headers["etag"]) == (plain, tag)
    assert [key for key in local_server._GZIPPED if key[:2] == (path, tag)] == kept


def test_bad_since_is_a_json_error_and_since_ahead_is_the_full_view(
    served: tuple[httpx.Client, Path],
) -> None:
    http, tmp = served
    run_id, full = ended_run(http, tmp, 3)
    for bad in ("-1", "x", "1.5", str(2**63)):
        reply = http.get(f"/runs/{run_id}", params={"since": bad})
        assert reply.status_code == 422, bad
        body = reply.json()
        assert set(body) == {"error", "message", "problems"}
        assert "since" in body["message"]
    ahead = http.get(f"/runs/{run_id}", params={"since": full["revision"] + 1000}).json()
    assert ahead == full  # a revision this run has not reached: everything, marked full
    missing = http.get("/runs/nope", params={"since": 1}, headers={"If-None-Match": "*"})
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


def test_the_cli_wait_polls_deltas_and_ends_with_the_full_view(
    served: tuple[httpx.Client, Path],
) -> None:
    http, tmp = served
    marker = tmp / "go"
    apply(http, gated(marker, 5))
    run_id = trigger(http, "gated")
    sent: list[httpx.Request] = []
    client = Client(str(http.base_url))
    client._http.event_hooks["request"].append(sent.append)
    held = HeldRun(client, run_id)
    first = held.refresh()
    assert first["full"] is True
    marker.touch()
    end = finished(http, run_id)
    assert held.refresh() == end  # the deltas put together are the full view
    kept = held.detail
    assert held.refresh() is kept  # unchanged: a 304, the view held
    assert "since" not in sent[0].url.params
    assert all("since" in r.url.params and r.headers["if-none-match"] for r in sent[1:])
