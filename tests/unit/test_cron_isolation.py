"""One bad schedule never blocks another: a workflow whose schedule raises while it is computed
or fired is marked in error (``schedule_error``, logged once, shown by the API), and the cron
loop and the AWS firing go on with every other workflow."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeClock, RecordingDispatcher

from stratoflow.adapters.aws import firing
from stratoflow.adapters.local import cron
from stratoflow.adapters.local.cron import CronLoop
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.api.app import create_app
from stratoflow.errors import InvalidInput
from stratoflow.model import Schedule
from stratoflow.ports import RunQuery
from stratoflow.service import Scheduler

T0 = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)

# listed first (the loop goes by name), so a loop that stops at it never reaches the other
POISON = """
name: a_poison
schedule: {cron: "0 0 * * *", catchup: true, start: 2026-01-01T00:00:00}
tasks: {t: {type: shell, command: "true"}}
"""
EVERY_MINUTE = """
name: b_every_minute
schedule: {cron: "* * * * *"}
tasks: {t: {type: shell, command: "true"}}
"""
# the schedule of the report (issue 9, item 3): OverflowError at the edge of the calendar
REPORTED = """
name: a_reported
schedule: {cron: "0 0 * * *", timezone: Asia/Tokyo, start: 0001-01-01T00:00:00, catchup: true}
tasks: {t: {type: shell, command: "true"}}
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "state.db")
    yield opened
    opened.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def scheduler(store: SqliteStore, clock: FakeClock) -> Scheduler:
    return Scheduler(store, store, RecordingDispatcher(), clock)


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The poison workflow's schedule raises as the reported one did, on every computation."""
    real = cron.due_firings

    def due_firings(schedule: Schedule, cursor: Any, now: datetime, room: int | None = None) -> Any:
        if schedule.cron == "0 0 * * *":
            raise OverflowError("date value out of range")
        return real(schedule, cursor, now, room)

    monkeypatch.setattr(cron, "due_firings", due_firings)
    monkeypatch.setattr(firing, "due_firings", due_firings)


def runs_of(store: SqliteStore, name: str) -> list[str]:
    return [r.id for r in store.list_runs(RunQuery(workflow=name, limit=100))]


def schedule_errors(store: SqliteStore) -> dict[str, str | None]:
    return {v.name: v.schedule_error for v in store.list_workflows()}


def api_get(scheduler: Scheduler, path: str) -> tuple[int, Any]:
    app = create_app(scheduler)
    event = {
        "resource": "/{proxy+}", "path": path, "httpMethod": "GET", "headers": {},
        "multiValueHeaders": {}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {"stage": "test", "requestId": "req-1", "path": path},
    }  # fmt: skip
    response = app.resolve(event, None)
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.usefixtures("poisoned")
def test_a_poison_schedule_next_to_an_every_minute_one(
    store: SqliteStore,
    clock: FakeClock,
    scheduler: Scheduler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a poison schedule listed before an every-minute one
    scheduler.apply(POISON)
    scheduler.apply(EVERY_MINUTE)
    loop = CronLoop(scheduler, store)
    # WHEN the loop ticks for three minutes, every 2 s as the local runtime does
    with caplog.at_level(logging.ERROR, logger="stratoflow.cron"):
        loop.tick(clock.now())
        for _ in range(90):
            clock.advance(2)
            loop.tick(clock.now())
    # THEN the every-minute workflow fired each minute
    assert len(runs_of(store, "b_every_minute")) == 3
    # AND the poison one fired nothing, is marked in error, and was logged once
    assert runs_of(store, "a_poison") == []
    errors = schedule_errors(store)
    assert errors["a_poison"] == "OverflowError: date value out of range"
    assert errors["b_every_minute"] is None
    logged = [r for r in caplog.records if "a_poison" in r.getMessage()]
    assert len(logged) == 1
    assert "cannot fire" in logged[0].getMessage()
    # AND the API lists both, the error with it (no 500), and shows it on the workflow too
    status, body = api_get(scheduler, "/workflows")
    assert status == 200
    listed = {w["name"]: w for w in body["workflows"]}
    assert listed["a_poison"]["schedule_error"] == "OverflowError: date value out of range"
    assert listed["b_every_minute"]["schedule_error"] is None
    assert listed["b_every_minute"]["next_run_at"] is not None
    status, detail = api_get(scheduler, "/workflows/a_poison")
    assert status == 200
    assert detail["schedule_error"] == "OverflowError: date value out of range"


def test_a_schedule_that_fires_again_loses_its_error(
    store: SqliteStore, clock: FakeClock, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a workflow marked in error by a failure that then goes away
    scheduler.apply(EVERY_MINUTE)
    loop = CronLoop(scheduler, store)
    real = cron.due_firings
    monkeypatch.setattr(cron, "due_firings", lambda *_: (_ for _ in ()).throw(KeyError("x")))
    loop.tick(clock.now())
    assert schedule_errors(store)["b_every_minute"] == "KeyError: 'x'"
    # WHEN it computes again
    monkeypatch.setattr(cron, "due_firings", real)
    clock.advance(60)
    loop.tick(clock.now())
    # THEN the mark is gone (this first good tick only starts its cursor)
    assert schedule_errors(store)["b_every_minute"] is None
    # AND it fires from the next minute on
    clock.advance(60)
    loop.tick(clock.now())
    assert len(runs_of(store, "b_every_minute")) == 1


def test_the_reported_schedule_is_refused_and_a_stored_one_does_not_stop_the_others(
    store: SqliteStore, clock: FakeClock, scheduler: Scheduler
) -> None:
    """The reported schedule is refused at apply now; one stored before that (written
    straight into the catalog here) is marked in error by the loop, which fires the rest."""
    with pytest.raises(InvalidInput, match=r"schedule\.start"):
        scheduler.apply(REPORTED)
    # a version stored by an older release: the bounds did not exist then
    scheduler.apply(REPORTED.replace("0001-01-01", "2026-01-01"))
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute(
            "UPDATE workflow_versions SET document = replace(document, '2026-01-01T00:00:00', "
            "'0001-01-01T00:00:00') WHERE name = 'a_reported'"
        )
    conn.close()
    scheduler.apply(EVERY_MINUTE)
    fresh = Scheduler(store, store, RecordingDispatcher(), clock)  # no spec cached
    loop = CronLoop(fresh, store)
    loop.tick(clock.now())
    clock.advance(60)
    loop.tick(clock.now())
    assert len(runs_of(store, "b_every_minute")) == 1
    assert "schedule.start" in (schedule_errors(store)["a_reported"] or "")
    status, _ = api_get(fresh, "/workflows")
    assert status == 200


@pytest.mark.usefixtures("poisoned")
def test_an_aws_firing_of_a_poison_schedule_marks_it_and_is_acknowledged(
    store: SqliteStore, scheduler: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler.apply(POISON)
    scheduler.apply(EVERY_MINUTE)
    event = {"project": "default", "workflow": "a_poison", "scheduled_time": "2026-03-02T00:00:00Z"}
    # WHEN EventBridge fires (and retries) the poison schedule
    with caplog.at_level(logging.ERROR, logger="stratoflow.firing"):
        assert firing.fire(scheduler, event) is None
        assert firing.fire(scheduler, event) is None
    # THEN it created nothing, is marked in error, logged once, and raised nothing to retry
    assert runs_of(store, "a_poison") == []
    assert schedule_errors(store)["a_poison"] == "OverflowError: date value out of range"
    assert len([r for r in caplog.records if "a_poison" in r.getMessage()]) == 1
    # AND another workflow's firing works as ever
    fired = firing.fire(
        scheduler,
        {
            "project": "default",
            "workflow": "b_every_minute",
            "scheduled_time": "2026-03-02T00:01:00Z",
        },
    )
    assert fired is not None
    assert fired[1] is True


class CountingCatalog:
    """The store, counting how often the loop reads the workflows (each read decodes every
    workflow's document)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.reads = 0

    def list_workflows(self) -> Any:
        self.reads += 1
        return self.store.list_workflows()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_ticks_between_firings_read_no_catalog_until_told_it_changed(
    store: SqliteStore, clock: FakeClock, scheduler: Scheduler
) -> None:
    # GIVEN an every-minute workflow, its cursor started by a first tick
    scheduler.apply(EVERY_MINUTE)
    catalog = CountingCatalog(store)
    loop = CronLoop(scheduler, catalog)  # type: ignore[arg-type]
    due = loop.tick(clock.now())
    assert catalog.reads == 1
    assert due is not None
    # WHEN the runtime's loop ticks it a hundred times before the next minute
    for _ in range(100):
        clock.advance(0.2)
        assert loop.tick(clock.now()) == due
    # THEN the catalog was not read again
    assert catalog.reads == 1
    # AND a workflow applied through the API (which invalidates) is read on the next tick
    scheduler.apply(EVERY_MINUTE.replace("b_every_minute", "c_every_minute"))
    loop.invalidate()
    loop.tick(clock.now())
    assert catalog.reads == 2
    # AND when the minute comes both fire, and both once
    clock.advance(60)
    loop.tick(clock.now())
    loop.tick(clock.now())
    assert len(runs_of(store, "b_every_minute")) == 1
    assert len(runs_of(store, "c_every_minute")) == 1
