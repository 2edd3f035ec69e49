"""A run and its tasks' states alone (``GET /runs/{id}/states``): what a run page draws its
graph from before the whole view arrives. The same states as the whole view, sent again only
when the run has changed (ETag / 304)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.test_api_app import ETL, Api, _build

from stratoflow.engine import AttemptStatus
from stratoflow.ports import StateStore


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = _build(tmp_path)
    yield built
    built.scheduler.store.close()  # type: ignore[attr-defined]


def test_the_states_are_the_whole_views_and_follow_the_run(api: Api) -> None:
    api.apply(ETL)
    run_id = api.trigger("etl")
    api.finish(run_id, "extract")

    reply = api.call("GET", f"/runs/{run_id}/states")
    assert reply.status == 200
    whole = api.call("GET", f"/runs/{run_id}").body
    assert reply.body["run"] == whole["run"]
    assert reply.body["revision"] == whole["revision"]
    assert reply.body["states"] == {t: v["state"] for t, v in whole["tasks"].items()}
    assert reply.body["states"]["extract"] == "succeeded"
    assert reply.body["states"]["load"] == "waiting"
    assert reply.headers["Cache-Control"] == "no-cache"
    tag = reply.headers["ETag"]

    # unchanged: a 304; once a task has changed, the new states under another tag
    again = api.call("GET", f"/runs/{run_id}/states", headers={"If-None-Match": tag})
    assert (again.status, again.headers["ETag"], again.text) == (304, tag, "")
    api.finish(run_id, "transform", AttemptStatus.FAILED)
    changed = api.call("GET", f"/runs/{run_id}/states", headers={"If-None-Match": tag})
    assert changed.status == 200
    assert changed.headers["ETag"] != tag
    assert changed.body["states"]["transform"] == "failed"
    assert changed.body["run"] == api.call("GET", f"/runs/{run_id}").body["run"]


def test_a_missing_run_is_404(api: Api) -> None:
    assert api.call("GET", "/runs/nope/states").status == 404


def test_the_stores_states_query_reads_what_its_tasks_say(api: Api) -> None:
    """SQLite reads the two columns alone; the port's default (other stores) reads the tasks."""
    api.apply(ETL)
    run_id = api.trigger("etl")
    api.finish(run_id, "extract")
    store = api.scheduler.store
    by_tasks = {t.task_id: t.state for t in store.get_tasks(run_id)}
    assert store.task_states(run_id) == by_tasks == StateStore.task_states(store, run_id)
    assert by_tasks["extract"].value == "succeeded"
