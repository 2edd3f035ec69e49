"""Deltas of a run view (``GET /runs/{id}?since=``) on the SQLite store: through a run's
whole life (successes, a failure, a rerun, a retry, a mark), every delta applied to every
older view equals the new full view, and carries only the tasks that changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_api_app import ETL, Api, _build

from stratoflow.engine import AttemptStatus

RETRIED = ETL.replace(
    "    command: echo load\n", "    command: echo load\n    retries: 1\n    retry_delay: 0\n"
)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = _build(tmp_path)
    yield built
    built.scheduler.store.close()  # type: ignore[attr-defined]


def full(api: Api, run_id: str) -> dict[str, Any]:
    reply = api.call("GET", f"/runs/{run_id}")
    assert reply.status == 200, reply.text
    assert reply.body["full"] is True
    return reply.body  # type: ignore[no-any-return]


def test_every_delta_over_every_older_view_equals_the_full_view(api: Api) -> None:
    api.apply(RETRIED)
    run_id = api.trigger("etl")
    steps = [
        lambda: api.finish(run_id, "extract", outputs={"rows": 42}),
        lambda: api.finish(run_id, "transform", AttemptStatus.FAILED),
        lambda: api.call("POST", f"/runs/{run_id}/rerun", {"from": None}),
        lambda: api.finish(run_id, "transform"),
        lambda: api.finish(run_id, "load", AttemptStatus.FAILED),  # retried
        lambda: api.scheduler.step(),
        lambda: api.finish(run_id, "load"),
        lambda: api.call("POST", f"/runs/{run_id}/tasks/extract/mark", {"state": "skipped"}),
    ]
    views = [full(api, run_id)]
    for step in steps:
        step()
        now = full(api, run_id)
        for old in views:
            reply = api.call("GET", f"/runs/{run_id}", query={"since": str(old["revision"])})
            delta = reply.body
            assert delta["full"] is False
            assert delta["revision"] == now["revision"]
            assert {**delta, "tasks": {**old["tasks"], **delta["tasks"]}, "full": True} == now
            differing = {t for t in now["tasks"] if now["tasks"][t] != old["tasks"][t]}
            assert differing <= set(delta["tasks"])
            if old is views[-1]:
                assert set(delta["tasks"]) == differing  # only what changed
        views.append(now)
    last = views[-1]
    assert last["revision"] > views[0]["revision"]
    assert [a["state"] for a in last["tasks"]["load"]["history"]] == ["failed", "succeeded"]
    assert [a["state"] for a in last["tasks"]["transform"]["history"]] == ["failed", "succeeded"]
    assert last["tasks"]["extract"]["state"] == "skipped"
