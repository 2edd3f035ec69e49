"""Run ids scoped to their project and workflow, and faults of the machine as 503s.

A caller-supplied ``run_id`` is an idempotency key that lives within its project and workflow:
nothing a trigger in project ``a`` sends can return, change or block a run of project ``b``,
and a scheduled run's id cannot be claimed in advance. A full database is a 503 with a
message, and the API serves again as soon as there is room, without a restart.
"""

from __future__ import annotations

import errno
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.unit import test_api_app, test_authorization_matrix
from tests.unit.test_api_app import Api, assert_error
from tests.unit.test_authorization_matrix import World

from stratoflow.api.app import keyed_run_id
from stratoflow.errors import InvalidInput, Unavailable
from stratoflow.faults import machine_fault
from stratoflow.ports import RunQuery
from stratoflow.service import scheduled_run_id

# the fixtures of the modules these tests extend
api = test_api_app.api
world = test_authorization_matrix.world

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _trigger(w: World, user: str, project: str, body: dict[str, Any]) -> Any:
    return w.call(user, "POST", "/workflows/flow/runs", body, project=project)


# ------------------------------------------------------------------ run ids
def test_a_run_id_of_another_project_returns_nothing_of_it(world: World) -> None:
    # GIVEN project b's run, its id known to an editor of project a (no role in b)
    b_run = world.runs["b"]
    before = world.snapshot()
    # WHEN the editor triggers a's workflow with b's run id as the key
    reply = _trigger(world, "editor", "a", {"run_id": b_run, "params": {}})
    # THEN a new run of project a is created; b's run is neither returned nor touched
    assert reply.status == 201, reply.text
    run = reply.body["run"]
    assert run["project"] == "a"
    assert run["id"] == f"a.flow.{b_run}"
    assert run["id"] != b_run
    assert run["state"] in ("queued", "running")
    assert world.store.get_run(b_run).project == "b"
    assert world.snapshot()[0]["b"] == before[0]["b"]
    # and b's run stays unreadable to a's editor
    assert world.call("editor", "GET", f"/runs/{b_run}").status == 404


def test_the_same_key_in_two_projects_gives_two_runs(world: World) -> None:
    a = _trigger(world, "root", "a", {"run_id": "nightly-1", "params": {}})
    b = _trigger(world, "root", "b", {"run_id": "nightly-1", "params": {}})
    assert (a.status, b.status) == (201, 201)
    assert a.body["run"]["id"] == "a.flow.nightly-1"
    assert b.body["run"]["id"] == "b.flow.nightly-1"
    assert (a.body["run"]["project"], b.body["run"]["project"]) == ("a", "b")


def test_the_same_key_in_the_same_workflow_is_idempotent(world: World) -> None:
    first = _trigger(world, "operator", "a", {"run_id": "k-1", "params": {}})
    again = _trigger(world, "operator", "a", {"run_id": "k-1", "params": {}})
    assert (first.status, again.status) == (201, 200)
    assert again.body["run"]["id"] == first.body["run"]["id"] == "a.flow.k-1"
    listed = world.store.list_runs(RunQuery(project="a", limit=100))
    assert [r.id for r in listed].count("a.flow.k-1") == 1


@pytest.mark.parametrize(
    "key",
    [
        scheduled_run_id("b", "flow", NOON),  # b's next scheduled run, claimed from a
        scheduled_run_id("a", "flow", NOON),  # a's own: a manual run must not stand for it
        "flow-scheduled-20260302T120000Z",
        "x.SCHEDULED-20260302T120000",
    ],
)
def test_a_scheduled_run_id_cannot_be_claimed(world: World, key: str) -> None:
    before = world.snapshot()
    reply = _trigger(world, "editor", "a", {"run_id": key, "params": {}})
    body = assert_error(reply, 400, "invalid_input", "run_id", "reserved for scheduled runs")
    assert body["problems"][0]["path"] == "run_id"
    assert world.snapshot() == before
    # the schedule still creates its run for that time
    run, created = world.api.scheduler.trigger(
        "b", "flow", logical_date=NOON, run_id=scheduled_run_id("b", "flow", NOON),
        trigger="schedule",
    )  # fmt: skip
    assert created
    assert run.project == "b"


def test_a_key_too_long_for_a_run_id_is_refused() -> None:
    assert keyed_run_id("a", "flow", "k" * 200) == "a.flow." + "k" * 200
    with pytest.raises(InvalidInput) as refused:
        keyed_run_id("p" * 128, "w" * 100, "k" * 200)
    assert refused.value.problems[0].path == "run_id"
    assert "at most 300 (keys of up to 70 characters)" in refused.value.problems[0].message
    # the longest names leave room for a key (a run's directory does not hold its id then)
    longest = keyed_run_id("p" * 128, "w" * 128, "k" * 42)
    assert len(longest) == 300


# ------------------------------------------------------------------ faults
def test_a_full_database_is_a_503_and_the_api_recovers_without_a_restart(api: Api) -> None:
    api.apply()
    assert api.call("POST", "/workflows/etl/runs", {}).status == 201
    # GIVEN a database that cannot grow (SQLite's own SQLITE_FULL, as on a full disk)
    conn = api.scheduler.store._conn()  # type: ignore[attr-defined]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    runs_before = len(api.call("GET", "/runs").body["runs"])
    # WHEN triggers need room
    replies = [api.call("POST", "/workflows/etl/runs", {"params": {"region": "x" * 5000}})
               for _ in range(10)]  # fmt: skip
    # THEN each is a 503 that says why, and nothing was half-written
    full = [r for r in replies if r.status != 201]
    assert full, "the database never filled up"
    for reply in full:
        body = assert_error(reply, 503, "unavailable", "disk is full")
        assert reply.headers["Retry-After"].isdigit()
        assert body["problems"] == []
    created = len(replies) - len(full)
    assert len(api.call("GET", "/runs").body["runs"]) == runs_before + created
    # WHEN there is room again THEN the same request succeeds, no restart
    conn.execute("PRAGMA max_page_count=1073741823")
    again = api.call("POST", "/workflows/etl/runs", {"params": {"region": "x" * 5000}})
    assert again.status == 201, again.text


@pytest.mark.parametrize(
    ("error", "status", "words"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 503, "disk is full"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), 503, "disk is full"),
        (OSError(errno.EIO, "Input/output error"), 503, "I/O error"),
        (RuntimeError("a bug"), 500, "internal error"),
        (OSError(errno.ENOENT, "No such file"), 500, "internal error"),
    ],
)
def test_os_errors_map_to_503_only_when_the_machine_is_at_fault(
    api: Api, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int, words: str
) -> None:
    api.apply()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(api.scheduler, "trigger", broken)
    reply = api.call("POST", "/workflows/etl/runs", {})
    assert_error(reply, status, "unavailable" if status == 503 else "internal", words)
    assert "No space" not in reply.text
    assert "Input/output" not in reply.text


def test_machine_fault_reads_codes_not_messages() -> None:
    with sqlite3.connect(":memory:") as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("PRAGMA max_page_count=2")
        with pytest.raises(sqlite3.OperationalError) as full:
            conn.executemany("INSERT INTO t VALUES (?)", [("y" * 4000,)] * 10)
    assert isinstance(machine_fault(full.value), Unavailable)
    wrapped = RuntimeError("while committing")
    wrapped.__context__ = OSError(errno.ENOSPC, "full")
    assert isinstance(machine_fault(wrapped), Unavailable)
    assert machine_fault(sqlite3.OperationalError("database or disk is full")) is None  # no code
    assert machine_fault(ValueError("disk is full")) is None

    class PgError(Exception):
        sqlstate = "53100"

    class AwsError(Exception):
        response = {"Error": {"Code": "ProvisionedThroughputExceededException"}}  # noqa: RUF012

    assert "disk is full" in str(machine_fault(PgError()))
    assert "busy" in str(machine_fault(AwsError()))
