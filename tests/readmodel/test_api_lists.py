"""The API's run list reads the read model: filters by state and logical date, pages by its
cursor, and shows runs as the local runtime's inline projection delivers them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.api.app import create_app
from stratoflow.api.local_server import start_in_thread

FLOW = """\
name: dated
tasks:
  a: {type: shell, command: "exit {{ params.code }}"}
params: {code: "0"}
"""


@pytest.fixture
def http(tmp_path: Path) -> Iterator[httpx.Client]:
    runtime = LocalRuntime(tmp_path / "home")
    app = create_app(runtime.scheduler, on_change=runtime.wake, readmodel=runtime.readmodel)
    server, url = start_in_thread(app, "127.0.0.1", 0)
    runtime.start()
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client
    finally:
        server.shutdown()
        runtime.close()


def settled(http: httpx.Client, count: int, **query: Any) -> list[dict[str, Any]]:
    """The listed runs once ``count`` of them have ended (the projection trails by ~0.2 s)."""
    deadline = time.monotonic() + 30
    while True:
        runs = http.get("/runs", params={"workflow": "dated", "limit": 50, **query}).json()["runs"]
        if sum(r["state"] in ("succeeded", "failed") for r in runs) >= count:
            return runs  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, runs
        time.sleep(0.1)


def test_filters_and_pages_come_from_the_read_model(http: httpx.Client) -> None:
    assert http.post("/workflows", json={"source": FLOW}).status_code == 201
    for day, code in ((1, 0), (2, 1), (3, 0), (4, 0)):
        body = {"logical_date": f"2026-01-0{day}T00:00:00Z", "params": {"code": str(code)}}
        assert http.post("/workflows/dated/runs", json=body).status_code == 201
    assert len(settled(http, 4)) == 4
    failed = http.get("/runs", params={"workflow": "dated", "state": "failed"}).json()["runs"]
    assert [r["logical_date"][:10] for r in failed] == ["2026-01-02"]
    window = http.get(
        "/runs",
        params={"logical_from": "2026-01-02T00:00:00Z", "logical_to": "2026-01-04T00:00:00Z"},
    ).json()["runs"]
    assert sorted(r["logical_date"][:10] for r in window) == ["2026-01-02", "2026-01-03"]
    first = http.get("/runs", params={"workflow": "dated", "limit": 3}).json()
    assert len(first["runs"]) == 3
    assert first["next"] is not None
    rest = http.get("/runs", params={"workflow": "dated", "before": first["next"]}).json()
    seen = [r["id"] for r in first["runs"] + rest["runs"]]
    assert len(seen) == len(set(seen)) == 4
    assert rest["next"] is None
    garbled = http.get("/runs", params={"before": "not-a-cursor"})
    assert garbled.status_code == 400
    assert "cursor" in garbled.json()["message"]


def test_a_read_model_that_cannot_be_reached_is_a_503_and_the_scheduler_goes_on(
    tmp_path: Path, pg_url: str
) -> None:
    """PostgreSQL gone for a while: the lists it serves answer 503 with Retry-After (not an
    internal error), triggering still works, and once it is back the lists show the run."""
    import psycopg

    from stratoflow.readmodel import PostgresDatabase

    runtime = LocalRuntime(tmp_path / "home", db=pg_url)
    app = create_app(runtime.scheduler, on_change=runtime.wake, readmodel=runtime.readmodel)
    server, url = start_in_thread(app, "127.0.0.1", 0)
    runtime.start()
    db = runtime.readmodel.db
    assert isinstance(db, PostgresDatabase)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.post("/workflows", json={"source": FLOW}).status_code == 201
            # WHEN the server goes away under the pooled connections
            db.dsn = "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            for path in ("/runs", "/audit"):
                down = http.get(path)
                assert down.status_code == 503, down.text
                assert down.json()["error"] == "unavailable"
                assert "read model" in down.json()["message"]
                assert down.headers["Retry-After"]
            created = http.post("/workflows/dated/runs", json={})
            assert created.status_code == 201  # the scheduler's store is not the read model
            run_id = created.json()["run"]["id"]
            # THEN once it is back, the run is listed (the feed catches up)
            db.dsn = pg_url
            deadline = time.monotonic() + 60
            while True:
                listed = http.get("/runs")
                if listed.status_code == 200 and [r["id"] for r in listed.json()["runs"]] == [
                    run_id
                ]:
                    break
                assert time.monotonic() < deadline, listed.text
                time.sleep(0.2)
    finally:
        server.shutdown()
        runtime.close()


def test_a_list_the_read_model_could_not_keep_up_with_says_since_when(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read model's disk is full (its writes fail, its reads work): GET /runs still
    answers, from what it has, and says since when it may miss changes; once the feed has
    caught up the list is whole and says nothing of the kind."""
    import sqlite3

    runtime = LocalRuntime(tmp_path / "home")
    app = create_app(runtime.scheduler, on_change=runtime.wake, readmodel=runtime.readmodel)
    server, url = start_in_thread(app, "127.0.0.1", 0)
    runtime.start()
    real_write = runtime.readmodel.write
    full = [True]

    def write(*args: Any, **kwargs: Any) -> int:
        if full[0]:
            raise sqlite3.OperationalError("database or disk is full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(runtime.readmodel, "write", write)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            assert "stale_since" not in http.get("/runs").json()
            assert http.post("/workflows", json={"source": FLOW}).status_code == 201
            run_id = http.post("/workflows/dated/runs", json={}).json()["run"]["id"]
            deadline = time.monotonic() + 30
            while "stale_since" not in (listed := http.get("/runs").json()):
                assert time.monotonic() < deadline, listed
                time.sleep(0.1)
            assert listed["runs"] == []  # what it has: not the run
            assert datetime.fromisoformat(listed["stale_since"]).tzinfo is not None
            full[0] = False
            while "stale_since" in (listed := http.get("/runs").json()) or not listed["runs"]:
                assert time.monotonic() < deadline, listed
                time.sleep(0.1)
            assert [(r["id"], r["state"]) for r in listed["runs"]] == [(run_id, "succeeded")]
    finally:
        server.shutdown()
        runtime.close()
