"""``max_active_runs`` changed by a new version governs every run of the workflow, the runs
already queued included (as Airflow's DAG-level setting), and queued runs start oldest first
as slots free, whatever version each was made from. On both stores (SQLite, DynamoDB on moto):
the rule is the service's, the same for both runtimes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store
from tests.unit.test_subworkflow import Harness

from stratoflow import service
from stratoflow.engine import AttemptResult, AttemptStatus, RunState
from stratoflow.service import Finished, Scheduler

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def sleeper(limit: int) -> str:
    return (
        f"name: sleeper\nmax_active_runs: {limit}\ntasks:\n  t: {{type: shell, command: sleep 6}}\n"
    )


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    dispatcher = RecordingDispatcher()
    clock = FakeClock(T0)
    with state_store(request.param, tmp_path) as store:
        yield Harness(Scheduler(store, store, dispatcher, clock), store, dispatcher, clock)


def trigger(h: Harness, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        h.clock.advance(1)  # distinct creation times: the queue's order is certain
        run, _ = h.scheduler.trigger("default", "sleeper")
        ids.append(run.id)
    h.scheduler.step()
    return ids


def states(h: Harness, ids: list[str]) -> list[RunState]:
    return [h.store.get_run(i).state for i in ids]


def end(h: Harness, run_id: str) -> None:
    """The run's one task succeeds, then a turn."""
    h.scheduler.step()
    key = (run_id, "t", 1)
    assert key in h.dispatcher.pending, f"{run_id} was never dispatched"
    del h.dispatcher.pending[key]
    h.clock.advance(1)
    ok = AttemptResult(AttemptStatus.SUCCEEDED)
    h.scheduler.on_finished([Finished(run_id, "t", 1, ok)])
    h.scheduler.step()


def active(runs: list[RunState]) -> int:
    return sum(1 for s in runs if s is RunState.RUNNING)


Q, R, S = RunState.QUEUED, RunState.RUNNING, RunState.SUCCEEDED


def test_a_lowered_limit_holds_the_runs_queued_before_it(h: Harness) -> None:
    # GIVEN 5 runs of a workflow that allows 3: 3 run, 2 wait
    h.scheduler.apply(sleeper(3))
    old = trigger(h, 5)
    assert states(h, old) == [R, R, R, Q, Q]
    # WHEN the limit is lowered to 1 and one more run is triggered
    h.scheduler.apply(sleeper(1))
    new = trigger(h, 1)
    ids = old + new
    assert h.store.get_run(new[0]).version == 2
    # THEN no queued run starts while 1 or more are active, whatever version it was made from
    end(h, old[0])
    assert states(h, ids) == [S, R, R, Q, Q, Q]
    end(h, old[1])
    assert states(h, ids) == [S, S, R, Q, Q, Q]
    end(h, old[2])
    # AND the queued runs then start one at a time, oldest first
    assert states(h, ids) == [S, S, S, R, Q, Q]
    end(h, old[3])
    assert states(h, ids) == [S, S, S, S, R, Q]
    end(h, old[4])
    assert states(h, ids) == [S, S, S, S, S, R]
    end(h, new[0])
    assert states(h, ids) == [S] * 6


def test_a_raised_limit_starts_the_runs_queued_before_it_first(h: Harness) -> None:
    # GIVEN a workflow that allows 1 run: 1 runs, 2 wait
    h.scheduler.apply(sleeper(1))
    old = trigger(h, 3)
    assert states(h, old) == [R, Q, Q]
    # WHEN the limit is raised to 3: the waiting runs start at once (the apply says so to
    # whoever dispatches: AWS's api function hands them to ``advance``)
    h.scheduler.apply(sleeper(3))
    assert states(h, old) == [R, R, R]
    assert set(h.scheduler.take_runs_to_dispatch()) >= set(old[1:])
    # AND a run triggered now waits for a slot instead of going ahead of them
    new = trigger(h, 1)
    assert states(h, old + new) == [R, R, R, Q]
    end(h, old[1])
    assert states(h, old + new) == [R, S, R, R]


def test_a_raised_limit_before_a_trigger_keeps_the_queue_order(h: Harness) -> None:
    # the tester's case: raised and triggered in one go, every run queued before the new
    # version's starts before it, and no more than the limit run at once
    h.scheduler.apply(sleeper(1))
    old = trigger(h, 3)
    h.scheduler.apply(sleeper(2))
    new = trigger(h, 1)
    runs = states(h, old + new)
    assert runs == [R, R, Q, Q]
    end(h, old[0])
    assert states(h, old + new) == [S, R, R, Q]
    end(h, old[1])
    assert states(h, old + new) == [S, S, R, R]


def test_a_full_workflows_long_queue_does_not_hide_another_workflows_run(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN more queued runs of one full workflow than the start loop reads at once (a page of
    # 8 here, not the 100 it reads: 105 runs on moto took 40 s under coverage)
    from stratoflow import service

    monkeypatch.setattr(service, "QUEUED_PAGE", 8)
    h.scheduler.apply(sleeper(1))
    trigger(h, service.QUEUED_PAGE + 5)
    h.scheduler.apply("name: other\nproject: pb\ntasks:\n  t: {type: shell, command: 'true'}\n")
    # WHEN another project's workflow is triggered by hand
    h.clock.advance(1)
    run, _ = h.scheduler.trigger("pb", "other")
    h.scheduler.step()
    # THEN it starts, though younger than the whole queue ahead of it
    assert h.store.get_run(run.id).state is RunState.RUNNING


def test_a_trigger_reads_no_stored_document_of_a_version_whose_spec_is_known(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN a workflow applied by this scheduler (its spec kept) WHEN it is triggered THEN
    the version's number is read, not its stored document (decoded for nothing: ~11 ms of a
    2,000-task workflow's start), and the run pins that version."""
    h.scheduler.apply(sleeper(1))
    h.scheduler.apply(sleeper(2))
    read: list[tuple[str, str, int | None]] = []
    real = h.store.get_version

    def get_version(project: str, name: str, version: int | None = None) -> object:
        read.append((project, name, version))
        return real(project, name, version)

    monkeypatch.setattr(h.store, "get_version", get_version)
    run, created = h.scheduler.trigger("default", "sleeper")
    assert created
    assert run.version == 2
    assert read == []
    old, _ = h.scheduler.trigger("default", "sleeper", version=1)
    assert old.version == 1
    assert read == []


def test_an_unchanged_re_apply_by_a_new_scheduler_validates_no_stored_document(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN a workflow applied by an earlier scheduler of the store (a `stratoflow run` of the
    file before, on its home) WHEN a new one applies the same file THEN the stored copy is not
    validated again (its digest says it is this document; ~40 ms at 2,000 tasks); a changed
    file still reads the stored one (its schedule decides whether the new one restarts)."""
    h.scheduler.apply(sleeper(1))
    validated: list[object] = []
    real = service.spec_from_document

    def spec_from_document(document: dict[str, object]) -> object:
        validated.append(document)
        return real(document)

    monkeypatch.setattr(service, "spec_from_document", spec_from_document)
    version, created = Scheduler(h.store, h.store, h.dispatcher, h.clock).apply(sleeper(1))
    assert not created
    assert version.version == 1
    assert validated == []
    version, created = Scheduler(h.store, h.store, h.dispatcher, h.clock).apply(sleeper(2))
    assert created
    assert version.version == 2
    assert len(validated) == 1
