"""Backfills on the scheduler service over the SQLite store, with a dispatcher the test
drives: lanes move on from the run-end path, runs take the schedule's ids (a repeat or a
schedule firing adds nothing), max_active_runs holds, pause/resume/cancel, and a crash
between a run's end and the next date's start is completed by recover. Then the API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tests.fakes import FakeClock, RecordingDispatcher
from tests.stores import STORE_KINDS, state_store

from stratoflow import cli_backfill
from stratoflow.adapters.aws.dynamodb import DynamoStore
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.api.app import create_app
from stratoflow.api.backfills import backfill_view
from stratoflow.backfills import Backfills
from stratoflow.engine import AttemptResult, AttemptStatus, RunState
from stratoflow.engine.backfill import Action, Backfill, BackfillState, Order, Rerun
from stratoflow.errors import Conflict, InvalidInput
from stratoflow.ports import AttemptSpec, EventSink, RunQuery
from stratoflow.service import Finished, Scheduler, scheduled_run_id

DAILY = """\
name: daily
schedule: {cron: "0 2 * * *", timezone: UTC}
params: {region: eu}
tasks:
  extract: {type: shell, command: "echo {{ ds }}"}
  load: {type: shell, depends_on: [extract], command: echo load}
"""


class Events(EventSink):
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        self.seen.append((kind, dict(detail)))

    def kinds(self, prefix: str = "backfill.") -> list[str]:
        return [k for k, _ in self.seen if k.startswith(prefix)]


@dataclass
class Harness:
    scheduler: Scheduler
    store: SqliteStore | DynamoStore
    dispatcher: RecordingDispatcher
    events: Events
    clock: FakeClock
    running_seen: list[int] = field(default_factory=list)

    @property
    def backfills(self) -> Backfills:
        return self.scheduler.backfills

    def runs(self, state: RunState | None = None) -> list[Any]:
        return self.store.list_runs(RunQuery(workflow="daily", state=state, limit=1000))

    def drive(
        self,
        outcome: Callable[[AttemptSpec], AttemptStatus] = lambda _: AttemptStatus.SUCCEEDED,
        *,
        pick: Callable[[list[AttemptSpec]], AttemptSpec] = lambda specs: specs[0],
        limit: int = 500,
    ) -> None:
        """Dispatch, then end one attempt at a time (``pick`` chooses which) until nothing is
        left; notes how many runs were RUNNING before each end."""
        self.scheduler.step()
        for _ in range(limit):
            if not self.dispatcher.pending:
                return
            spec = pick(list(self.dispatcher.pending.values()))
            del self.dispatcher.pending[(spec.run_id, spec.task_id, spec.attempt)]
            self.running_seen.append(len(self.runs(RunState.RUNNING)))
            result = AttemptResult(outcome(spec))
            self.scheduler.on_finished([Finished(spec.run_id, spec.task_id, spec.attempt, result)])
            self.scheduler.step()
        raise AssertionError("the runs never ended")

    def get(self, backfill: Backfill) -> Backfill:
        return self.store.get_backfill(backfill.id)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    store = SqliteStore(tmp_path / "state.db")
    events = Events()
    dispatcher = RecordingDispatcher()
    clock = FakeClock(datetime(2026, 6, 1, tzinfo=UTC))
    scheduler = Scheduler(store, store, dispatcher, clock, events)
    scheduler.apply(DAILY)
    yield Harness(scheduler, store, dispatcher, events, clock)
    store.close()


@pytest.fixture(params=STORE_KINDS)
def hb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The harness on either store (DynamoDB: moto in-process), for the races whose cure is
    a store's conditional write."""
    events = Events()
    dispatcher = RecordingDispatcher()
    clock = FakeClock(datetime(2026, 6, 1, tzinfo=UTC))
    with state_store(request.param, tmp_path) as store:
        scheduler = Scheduler(store, store, dispatcher, clock, events)
        scheduler.apply(DAILY)
        yield Harness(scheduler, store, dispatcher, events, clock)


def fails_on(ds: str) -> Callable[[AttemptSpec], AttemptStatus]:
    def outcome(spec: AttemptSpec) -> AttemptStatus:
        bad = spec.logical_date.date().isoformat() == ds and spec.task_id == "extract"
        return AttemptStatus.FAILED if bad else AttemptStatus.SUCCEEDED

    return outcome


def date_states(bf: Backfill) -> list[str]:
    return [d.state.value for d in bf.dates]


def test_serial_backfill_runs_dates_in_order_and_stops_at_the_first_failure(h: Harness) -> None:
    bf = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-05")
    assert [d.logical_date.hour for d in bf.dates] == [2] * 5  # the schedule's time of day
    h.drive(fails_on("2026-01-03"))
    bf = h.get(bf)
    assert bf.state is BackfillState.FAILED
    assert date_states(bf) == ["succeeded", "succeeded", "failed", "not_run", "not_run"]
    runs = sorted(h.runs(), key=lambda r: r.logical_date)
    assert [r.id for r in runs] == [d.run_id for d in bf.dates[:3]]
    assert runs[0].id == scheduled_run_id("default", "daily", bf.dates[0].logical_date)
    assert {r.trigger for r in runs} == {"backfill"}
    assert max(h.running_seen) == 1  # serial: never two at once
    assert h.events.kinds()[0] == "backfill.started"
    assert h.events.kinds()[-1] == "backfill.failed"


def test_parallel_backfill_keeps_exactly_n_runs_going_and_never_waits_for_the_slowest(
    h: Harness,
) -> None:
    bf = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-09", parallel=3)
    slow = bf.dates[0].run_id

    def others_first(specs: list[AttemptSpec]) -> AttemptSpec:
        # the first date's run is the slowest: everything else ends before it
        return next((s for s in specs if s.run_id != slow), specs[0])

    h.scheduler.step()
    assert len(h.runs(RunState.RUNNING)) == 3
    h.drive(pick=others_first)
    bf = h.get(bf)
    assert bf.state is BackfillState.SUCCEEDED
    assert date_states(bf) == ["succeeded"] * 9
    assert max(h.running_seen) == 3
    # 9 dates, 3 lanes: exactly 3 runs went on until fewer than 3 dates were left, even while
    # the slow first run held its lane the whole time
    assert h.running_seen[: 2 * 6] == [3] * 12, h.running_seen


def test_parallel_lanes_respect_max_active_runs(h: Harness) -> None:
    h.scheduler.apply(DAILY.replace("params:", "max_active_runs: 2\nparams:"))
    bf = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-06", parallel=4)
    h.drive()
    assert h.get(bf).state is BackfillState.SUCCEEDED
    assert max(h.running_seen) == 2


def test_repeated_backfill_and_a_schedule_firing_add_no_run(h: Harness) -> None:
    first = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-03")
    h.drive()
    assert h.get(first).state is BackfillState.SUCCEEDED
    ids = sorted(r.id for r in h.runs())
    cursor = h.store.get_cursor("default", "daily")
    again = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-03")
    h.drive()
    again = h.get(again)
    assert again.state is BackfillState.SUCCEEDED
    assert date_states(again) == ["skipped"] * 3
    # the schedule firing for a backfilled date finds the backfill's run
    latest = h.store.get_version("default", "daily")
    made = h.scheduler.fire(
        latest, [first.dates[1].logical_date], None, first.dates[1].logical_date
    )
    assert made[0][1] is False
    assert sorted(r.id for r in h.runs()) == ids
    assert cursor is None  # a backfill never moved the schedule's cursor (no catchup firings)


def test_rerun_failed_reruns_only_the_failed_date_under_its_run_id(h: Harness) -> None:
    first = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-03", parallel=3)
    h.drive(fails_on("2026-01-02"))
    assert date_states(h.get(first)) == ["succeeded", "failed", "succeeded"]
    again = h.backfills.create(
        "default", "daily", start="2026-01-01", end="2026-01-03", rerun=Rerun.FAILED
    )
    h.drive()
    again = h.get(again)
    assert again.state is BackfillState.SUCCEEDED
    assert date_states(again) == ["skipped", "succeeded", "skipped"]
    rerun = h.store.get_task(first.dates[1].run_id, "extract")
    assert rerun.attempt == 2
    assert len(h.runs()) == 3


def test_rerun_all_runs_every_date_again_whole(h: Harness) -> None:
    first = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-02")
    h.drive()
    again = h.backfills.create(
        "default", "daily", start="2026-01-01", end="2026-01-02", rerun=Rerun.ALL
    )
    h.drive()
    assert date_states(h.get(again)) == ["succeeded", "succeeded"]
    for d in first.dates:
        assert [t.attempt for t in h.store.get_tasks(d.run_id)] == [2, 2]
    assert len(h.runs()) == 2


def test_pause_resume_and_cancel(h: Harness) -> None:
    bf = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-06", parallel=2)
    h.scheduler.step()
    paused = h.backfills.pause(bf.id)
    assert paused.state is BackfillState.PAUSED
    with pytest.raises(Conflict):
        h.backfills.pause(bf.id)
    h.drive()  # the two runs going on finish; no lane takes a new date
    assert date_states(h.get(bf)) == ["succeeded", "succeeded"] + ["pending"] * 4
    assert len(h.runs()) == 2
    h.backfills.resume(bf.id)
    h.scheduler.step()
    assert date_states(h.get(bf))[:4] == ["succeeded", "succeeded", "running", "running"]
    cancelled = h.backfills.cancel(bf.id)
    assert cancelled.state is BackfillState.CANCELLED
    h.drive()
    assert {r.state for r in h.runs()} == {RunState.SUCCEEDED, RunState.STOPPED}
    assert len(h.runs(RunState.STOPPED)) == 2
    # the two it stopped mid-run are stopped; the two never taken are not_run
    assert date_states(h.get(bf)) == ["succeeded"] * 2 + ["stopped"] * 2 + ["not_run"] * 2
    assert len(h.runs()) == 4  # nothing started after the cancel
    kinds = h.events.kinds()
    assert kinds.index("backfill.paused") < kinds.index("backfill.resumed")
    assert kinds.index("backfill.resumed") < kinds.index("backfill.cancelled")


def test_a_crash_between_a_run_end_and_the_next_start_loses_nothing(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    bf = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-03")
    # the process dies after the run's end is committed and before the lane hears of it
    monkeypatch.setattr(Backfills, "run_ended", lambda self, run: None)
    h.drive()
    stuck = h.get(bf)
    assert date_states(stuck) == ["running", "pending", "pending"]
    assert len(h.runs()) == 1
    monkeypatch.undo()
    h.scheduler.recover()  # what a restart (locally) or the reconciler (AWS) does
    h.drive()
    bf = h.get(bf)
    assert bf.state is BackfillState.SUCCEEDED
    assert len(h.runs()) == 3


def test_a_crash_after_the_lane_took_a_date_and_before_its_run_was_made_loses_nothing(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Backfills, "_act", lambda self, backfill, date: None)
    bf = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-02")
    assert date_states(h.get(bf)) == ["running", "pending"]
    assert h.runs() == []
    monkeypatch.undo()
    h.scheduler.recover()
    h.scheduler.recover()  # twice: still one run per date
    h.drive()
    assert h.get(bf).state is BackfillState.SUCCEEDED
    assert len(h.runs()) == 2


def _decided_rerun(h: Harness, monkeypatch: pytest.MonkeyPatch, rerun: Rerun) -> Backfill:
    """A backfill whose one date's run failed, with the rerun decided and written but not
    applied (its ``_act`` held back): what a second advancer or the reconciler also reads."""
    first = h.backfills.create("default", "daily", start="2026-01-02", end="2026-01-02")
    h.drive(fails_on("2026-01-02"))
    assert date_states(h.get(first)) == ["failed"]
    h.clock.advance(60)
    with monkeypatch.context() as m:
        m.setattr(Backfills, "_act", lambda self, backfill, date: None)
        again = h.backfills.create(
            "default", "daily", start="2026-01-02", end="2026-01-02", rerun=rerun
        )
    decided = h.get(again)
    assert decided.dates[0].prior_end is not None  # the mark: decided, not yet applied
    return decided


def _attempts(h: Harness, run_id: str) -> list[int]:
    return [t.attempt for t in sorted(h.store.get_tasks(run_id), key=lambda t: t.task_id)]


@pytest.mark.parametrize(
    ("rerun", "ends"), [(Rerun.FAILED, RunState.FAILED), (Rerun.ALL, RunState.SUCCEEDED)]
)
def test_a_decided_rerun_applied_twice_reruns_once(
    hb: Harness, monkeypatch: pytest.MonkeyPatch, rerun: Rerun, ends: RunState
) -> None:
    """Two advancers read the same decision; the first applies it and the rerun's run ends
    (failed again: a second rerun-failed would find work) before the second applies it: the
    second is a no-op (the run no longer ends as the decision saw it), so the date's tasks
    ran once more, not twice more."""
    decided = _decided_rerun(hb, monkeypatch, rerun)
    date = decided.dates[0]
    outcome = fails_on("2026-01-02" if ends is RunState.FAILED else "never")
    before = _attempts(hb, date.run_id)
    hb.backfills._act(decided, date)  # advancer A applies it
    hb.clock.advance(60)
    hb.drive(outcome)  # the rerun's run ends
    assert hb.store.get_run(date.run_id).state is ends
    once = _attempts(hb, date.run_id)
    assert once != before
    hb.clock.advance(60)
    hb.backfills._act(decided, date)  # advancer B, from the same (stale) decision
    hb.drive(outcome)
    assert _attempts(hb, date.run_id) == once
    assert hb.store.get_run(date.run_id).state is ends
    assert hb.get(decided).state.value == ends.value


def test_a_rerun_applied_then_a_crash_before_its_mark_is_cleared_reruns_once(
    hb: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rerun was applied, the process died before the mark was cleared, and the rerun's
    run ended: recovery sees the mark but not the end the decision saw, and reruns nothing."""
    decided = _decided_rerun(hb, monkeypatch, Rerun.FAILED)
    date = decided.dates[0]
    with monkeypatch.context() as m:
        m.setattr(Backfills, "_rerun_applied", lambda self, backfill_id, run_id: None)
        m.setattr(Backfills, "run_ended", lambda self, run: None)
        hb.backfills._act(decided, date)
        hb.clock.advance(60)
        hb.drive(fails_on("2026-01-02"))  # the rerun fails again
    assert hb.get(decided).dates[0].prior_end == date.prior_end  # the mark survived the crash
    once = _attempts(hb, date.run_id)
    hb.clock.advance(60)
    hb.scheduler.recover()
    hb.scheduler.recover()
    hb.drive(fails_on("2026-01-02"))
    assert _attempts(hb, date.run_id) == once
    assert hb.get(decided).state is BackfillState.FAILED


def test_a_date_whose_run_is_created_twice_makes_one_run(hb: Harness) -> None:
    """Two advancers both read the date as 'create its run' and both act: the run id is the
    date's, so the second creation adds nothing and dispatches nothing."""
    bf = hb.backfills.create("default", "daily", start="2026-01-02", end="2026-01-02")
    date = hb.get(bf).dates[0]
    hb.scheduler.step()
    dispatched = len(hb.dispatcher.pending)
    hb.backfills._act(hb.get(bf), date.with_(action=Action.CREATE))
    hb.scheduler.step()
    assert len(hb.runs()) == 1
    assert len(hb.dispatcher.pending) == dispatched  # RecordingDispatcher fails a re-dispatch
    hb.drive()
    assert _attempts(hb, date.run_id) == [1, 1]
    assert hb.get(bf).state is BackfillState.SUCCEEDED


def test_bad_input_changes_nothing(h: Harness) -> None:
    with pytest.raises(InvalidInput, match=r"params\.nope"):
        h.backfills.create(
            "default", "daily", start="2026-01-01", end="2026-01-02", params={"nope": 1}
        )
    with pytest.raises(InvalidInput, match="end"):
        h.backfills.create("default", "daily", start="2026-01-05", end="2026-01-01")
    assert h.backfills.list_backfills("default") == []
    assert h.runs() == []


MINUTELY = """\
name: fut
schedule: {cron: "* * * * *", timezone: UTC}
tasks:
  t: {type: shell, command: echo}
"""


def test_dates_after_now_are_refused_before_anything_is_made(h: Harness) -> None:
    """A future date's run would take the id its schedule firing uses: run at once, it made
    the real firing find it and add nothing. Refused, naming the first such date and now."""
    h.scheduler.apply(MINUTELY)
    h.clock.advance(30)  # 2026-06-01T00:00:30Z
    with pytest.raises(InvalidInput) as err:
        h.backfills.create("default", "fut", dates=["2026-06-01T00:02:00Z"])
    assert err.value.problems[0].path == "dates"
    assert "2026-06-01T00:02:00Z is after now (2026-06-01T00:00:30Z)" in str(err.value)
    with pytest.raises(InvalidInput, match=r"2026-06-01T00:01:00Z is after now"):
        h.backfills.create("default", "fut", start="2026-06-01T00:00", end="2026-06-01T00:05")
    with pytest.raises(
        InvalidInput, match=r"start: logical date 2030-03-01T02:00:00Z is after now"
    ):
        h.backfills.create("default", "daily", start="2030-03-01", end="2030-03-02")
    with pytest.raises(InvalidInput, match=r"2026-06-01T02:00:00Z is after now"):
        h.backfills.create(
            "default", "daily", start="2026-05-31", end="2026-06-03", order=Order.DESC
        )
    assert h.backfills.list_backfills("default") == []
    assert h.runs() == []
    assert h.store.list_runs(RunQuery(workflow="fut")) == []
    # a date up to now is backfilled as before
    bf = h.backfills.create("default", "fut", dates=["2026-06-01T00:00:00Z"])
    h.drive()
    assert h.get(bf).state is BackfillState.SUCCEEDED


def test_params_given_with_rerun_over_runs_with_other_params_are_refused(hb: Harness) -> None:
    """A rerun goes on under its run's params (its earlier attempts ran with them): -p with
    --rerun over dates whose runs have other values is refused up front, naming the dates,
    instead of being recorded on the backfill and silently not applied."""
    first = hb.backfills.create("default", "daily", start="2026-01-01", end="2026-01-03")
    hb.drive(fails_on("2026-01-02"))
    assert date_states(hb.get(first)) == ["succeeded", "failed", "not_run"]
    before = _attempts(hb, first.dates[1].run_id)
    # only the dates each mode would rerun: --rerun failed keeps the run that succeeded
    named = {
        Rerun.FAILED: "1 date(s) have runs with other values of region (2026-01-02T02:00:00Z)",
        Rerun.ALL: "2 date(s) have runs with other values of region "
        "(2026-01-01T02:00:00Z, 2026-01-02T02:00:00Z)",
    }
    for rerun, says in named.items():
        with pytest.raises(InvalidInput) as err:
            hb.backfills.create(
                "default", "daily", start="2026-01-01", end="2026-01-05", rerun=rerun,
                params={"region": "us"},
            )  # fmt: skip
        problem = err.value.problems[0]
        assert problem.path == "params"
        assert says in problem.message
        assert f"--rerun {rerun.value} would rerun them" in problem.message
        assert "new runs only" in problem.message
    assert [b.id for b in hb.backfills.list_backfills("default")] == [first.id]
    assert _attempts(hb, first.dates[1].run_id) == before
    # the same values as the runs have: nothing would be ignored, so the rerun goes ahead
    again = hb.backfills.create(
        "default", "daily", start="2026-01-01", end="2026-01-03", rerun=Rerun.FAILED,
        params={"region": "eu"},
    )  # fmt: skip
    hb.drive()
    assert date_states(hb.get(again)) == ["skipped", "succeeded", "succeeded"]
    # dates that have no run yet take the params given, as ever
    fresh = hb.backfills.create(
        "default", "daily", start="2026-01-04", end="2026-01-04", rerun=Rerun.FAILED,
        params={"region": "us"},
    )  # fmt: skip
    hb.drive()
    assert hb.store.get_run(fresh.dates[0].run_id).params["region"] == "us"


def test_params_with_rerun_failed_over_runs_that_succeeded_are_accepted(hb: Harness) -> None:
    """--rerun failed keeps a run that succeeded: its date is skipped, not rerun, so params
    it lacks are no reason to refuse (they were refused, naming it, "--rerun failed would
    rerun them"); the dates without a run take the params, as ever."""
    first = hb.backfills.create("default", "daily", start="2026-01-01", end="2026-01-02")
    hb.drive()
    assert date_states(hb.get(first)) == ["succeeded", "succeeded"]
    bf = hb.backfills.create(
        "default", "daily", dates=["2026-01-01", "2026-01-02", "2026-01-03"],
        rerun=Rerun.FAILED, params={"region": "us"},
    )  # fmt: skip
    hb.drive()
    bf = hb.get(bf)
    assert bf.state is BackfillState.SUCCEEDED
    assert date_states(bf) == ["skipped", "skipped", "succeeded"]
    assert hb.store.get_run(bf.dates[0].run_id).params["region"] == "eu"  # kept as it was
    assert hb.store.get_run(bf.dates[2].run_id).params["region"] == "us"


def test_the_same_typed_params_given_as_text_again_are_the_runs_params(hb: Harness) -> None:
    """-p sends text: n=5 makes runs whose n is 5 (the param's type, from its default), and a
    rerun backfill given the same -p again is the same request, not "other values"."""
    hb.scheduler.apply(
        DAILY.replace("params: {region: eu}", "params: {region: eu, n: 3, on: false}")
    )
    text = {"n": "5", "on": "false"}
    first = hb.backfills.create(
        "default", "daily", start="2026-01-01", end="2026-01-02", params=text
    )
    hb.drive(fails_on("2026-01-02"))
    assert hb.store.get_run(first.dates[0].run_id).params == {"region": "eu", "n": 5, "on": False}
    again = hb.backfills.create(
        "default", "daily", start="2026-01-01", end="2026-01-02", rerun=Rerun.FAILED, params=text
    )
    hb.drive()
    assert date_states(hb.get(again)) == ["skipped", "succeeded"]
    with pytest.raises(InvalidInput, match="other values of n"):
        hb.backfills.create(
            "default", "daily", start="2026-01-01", end="2026-01-02", rerun=Rerun.ALL,
            params={"n": "6"},
        )  # fmt: skip


def test_cancelled_runs_are_stopped_and_a_keeping_backfill_over_them_fails(hb: Harness) -> None:
    """After a cancel, dates whose runs were stopped mid-run say so (not `not_run`), and a
    later --rerun none backfill over them does not call them skipped nor itself succeeded:
    those days never completed. --rerun failed then completes them."""
    bf = hb.backfills.create("default", "daily", start="2026-01-01", end="2026-01-04", parallel=2)
    hb.scheduler.step()
    cancelled = hb.backfills.cancel(bf.id)
    hb.drive()
    assert date_states(hb.get(bf)) == ["stopped", "stopped", "not_run", "not_run"]
    assert cancelled.counts()["stopped"] == 2
    keep = hb.backfills.create("default", "daily", start="2026-01-01", end="2026-01-04")
    hb.drive()
    keep = hb.get(keep)
    assert keep.state is BackfillState.FAILED
    assert date_states(keep) == ["stopped", "not_run", "not_run", "not_run"]
    assert "--rerun failed" in (keep.dates[0].error or "")
    redo = hb.backfills.create(
        "default", "daily", start="2026-01-01", end="2026-01-04", rerun=Rerun.FAILED
    )
    hb.drive()
    assert hb.get(redo).state is BackfillState.SUCCEEDED
    assert date_states(hb.get(redo)) == ["succeeded"] * 4


def test_a_cancel_whose_run_had_ended_already_records_how_it_ended(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    bf = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-02")
    with monkeypatch.context() as m:  # the run ends before the lane hears of it
        m.setattr(Backfills, "run_ended", lambda self, run: None)
        h.drive()
    assert date_states(h.get(bf)) == ["running", "pending"]
    cancelled = h.backfills.cancel(bf.id)
    assert date_states(cancelled) == ["succeeded", "not_run"]
    assert date_states(h.get(bf)) == ["succeeded", "not_run"]


def test_cli_list_counts_only_the_dates_that_ran_or_were_kept(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`backfills list` after a cancel that stopped 2 runs of 6 dates: 2/6 done (it said
    6/6: the 4 dates never taken counted as done)."""
    done = h.backfills.create("default", "daily", start="2026-02-01", end="2026-02-02")
    h.drive()
    bf = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-06", parallel=2)
    h.scheduler.step()
    h.backfills.cancel(bf.id)
    h.drive()
    found = h.backfills.list_backfills("default")
    body = {"backfills": [backfill_view(b, dates=False) for b in found]}

    class FakeClient:
        def __init__(self, api: str) -> None:
            self.api = api

        def call(self, method: str, path: str, **kwargs: Any) -> Any:
            return body

    monkeypatch.setattr(cli_backfill, "Client", FakeClient)
    out = CliRunner().invoke(cli_backfill.backfills, ["list", "--api", "http://x"]).output
    lines = {line.split()[0]: line.split()[1:3] for line in out.splitlines()}
    assert lines == {bf.id: ["cancelled", "2/6"], done.id: ["succeeded", "2/2"]}


def test_a_rerun_backfill_says_the_version_each_dates_run_uses(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun goes on under its run's version (v1) after v2 was applied: each date says
    which version its run uses, and `--wait`'s header does not claim v2 for v1's reruns
    (it printed `default/daily v2` while v1's code ran)."""
    first = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-02")
    h.drive(fails_on("2026-01-02"))
    assert date_states(h.get(first)) == ["succeeded", "failed"]
    assert [d.version for d in h.get(first).dates] == [1, 1]
    h.scheduler.apply(DAILY.replace("echo {{ ds }}", "echo v2 {{ ds }}"))
    ran: list[str] = []

    def outcome(spec: AttemptSpec) -> AttemptStatus:
        ran.append(str(spec.task.fields.get("command")))
        return AttemptStatus.SUCCEEDED

    redo = h.backfills.create("default", "daily", dates=["2026-01-02"], rerun=Rerun.FAILED)
    h.drive(outcome)
    redo = h.get(redo)
    assert redo.version == 2  # what the runs it makes would pin
    assert [d.version for d in redo.dates] == [1]  # the run it reran pins v1
    assert ran[0] == "echo 2026-01-02"  # v1's code ran (v2 echoes "v2" first)
    shown = backfill_view(redo)
    assert shown["dates"][0]["version"] == 1

    class FakeClient:
        def __init__(self, api: str) -> None:
            pass

        def call(self, method: str, path: str, **kwargs: Any) -> Any:
            return shown

    monkeypatch.setattr(cli_backfill, "Client", FakeClient)
    out = (
        CliRunner()
        .invoke(
            cli_backfill.backfill, ["daily", "--dates", "2026-01-02", "--wait", "--api", "http://x"]
        )
        .output
    )
    header, line = out.splitlines()[:2]
    assert "default/daily v1  parallel" in header, out
    assert line.rstrip().endswith("lane 0 v1"), out
    # one new date and one rerun: both versions, each said for what
    mixed = h.backfills.create(
        "default", "daily", dates=["2026-01-02", "2026-01-03"], rerun=Rerun.ALL
    )
    h.drive()
    shown = backfill_view(h.get(mixed))
    assert [d["version"] for d in shown["dates"]] == [1, 2]
    out = CliRunner().invoke(cli_backfill.backfills, ["show", "x", "--api", "http://x"]).output
    assert "default/daily v2 for new runs, v1 for runs it reran or kept  parallel" in out


# ------------------------------------------------------------------ the API
class AuditLog:
    def __init__(self) -> None:
        self.entries: list[Any] = []

    def record_audit(self, entry: Any) -> None:
        self.entries.append(entry)


def call(
    app: Any, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
) -> tuple[int, Any]:
    event = {
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "body": None if body is None else json.dumps(body), "isBase64Encoded": False,
        "requestContext": {"stage": "test", "requestId": "req-1", "path": path},
    }  # fmt: skip
    response = app.resolve(event, None)
    return response["statusCode"], json.loads(response["body"])


def test_api_creates_lists_shows_and_operates_backfills_with_audit_entries(h: Harness) -> None:
    audit = AuditLog()
    app = create_app(h.scheduler, readmodel=audit)  # type: ignore[arg-type]
    status, made = call(
        app, "POST", "/workflows/daily/backfills",
        {"start": "2026-01-01", "end": "2026-01-04", "parallel": 2, "order": "desc"},
    )  # fmt: skip
    assert status == 201, made
    assert [d["logical_date"][:10] for d in made["dates"]] == [
        "2026-01-04", "2026-01-03", "2026-01-02", "2026-01-01",
    ]  # fmt: skip
    assert made["counts"]["running"] == 2
    status, listed = call(app, "GET", "/backfills", query={"project": "default"})
    assert status == 200
    assert [b["id"] for b in listed["backfills"]] == [made["id"]]
    assert "dates" not in listed["backfills"][0] or listed["backfills"][0]["dates"] is None
    for op, state in (("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")):
        status, body = call(app, "POST", f"/backfills/{made['id']}/{op}")
        assert (status, body["state"]) == (200, state)
    status, body = call(app, "POST", f"/backfills/{made['id']}/resume")
    assert status == 409
    status, shown = call(app, "GET", f"/backfills/{made['id']}")
    assert shown["state"] == "cancelled"
    assert [e.action for e in audit.entries] == [
        "backfill.create", "backfill.pause", "backfill.resume", "backfill.cancel",
    ]  # fmt: skip
    assert call(app, "GET", "/backfills/default.nope")[0] == 404
    status, _ = call(
        app, "POST", "/workflows/nope/backfills", {"start": "2026-01-01", "end": "2026-01-01"}
    )
    assert status == 404
    assert "/workflows/{name}/backfills" in call(app, "GET", "/openapi.json")[1]["paths"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"start": "2026-01-05", "end": "2026-01-01"}, "end"),
        ({"start": "2026-01-01", "end": "2026-01-02", "parallel": 0}, "parallel"),
        ({"start": "2026-01-01", "end": "2026-01-02", "parallel": True}, "parallel"),
        ({"start": "2026-01-01", "end": "2026-01-02", "rerun": "some"}, "rerun"),
        ({"start": "2026-01-01", "end": "2026-01-02", "params": {"nope": 1}}, "params.nope"),
        ({"start": "x" * 41, "end": "2026-01-02"}, "start"),
        ({"dates": []}, "dates"),
        ({"start": "2030-03-01", "end": "2030-03-02"}, "2030-03-01T02:00:00Z is after now"),
        ({"dates": ["2026-06-01T02:00:00Z"]}, "dates"),
        ({"start": "9999-12-29", "end": "9999-12-29"}, "9999-12-29T23:59:59.999999Z"),
    ],
)
def test_api_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(
    h: Harness, body: dict[str, Any], field: str
) -> None:
    app = create_app(h.scheduler)
    status, reply = call(app, "POST", "/workflows/daily/backfills", body)
    assert 400 <= status < 500, reply
    assert field in json.dumps(reply)
    assert h.backfills.list_backfills("default") == []
    assert h.runs() == []


def test_a_failing_backfill_hook_never_fails_a_run_end_and_the_next_pass_repairs_it(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    bf = h.backfills.create("default", "daily", start="2026-01-01", end="2026-01-02")
    h.backfills.tick(h.scheduler.clock.now())  # a pass now: the next is 30 s away

    def broken(project: str, workflow: str, run_id: str) -> list[str]:
        raise RuntimeError("the backfill index is unreadable")

    with monkeypatch.context() as m:
        m.setattr(h.store, "backfills_waiting_for", broken)
        h.drive()
    assert h.store.get_run(bf.dates[0].run_id).state is RunState.SUCCEEDED  # its end stood
    assert date_states(h.get(bf)) == ["running", "pending"]
    clock = h.scheduler.clock
    assert isinstance(clock, FakeClock)
    h.backfills.tick(clock.now())  # too soon: nothing
    assert date_states(h.get(bf)) == ["running", "pending"]
    clock.advance(31)
    h.backfills.tick(clock.now())
    h.drive()
    assert h.get(bf).state is BackfillState.SUCCEEDED


def test_a_run_end_reads_the_runs_of_the_running_dates_and_as_many_more_as_lanes(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    bf = h.backfills.create(
        "default", "daily", start="2026-01-01", end="2026-03-31", parallel=2
    )  # 90 dates
    read: list[list[str]] = []
    real = Backfills._read_runs

    def counted(self: Backfills, run_ids: Any) -> Any:
        read.append(list(run_ids))
        return real(self, run_ids)

    monkeypatch.setattr(Backfills, "_read_runs", counted)
    h.backfills.advance(bf.id)
    assert [len(ids) for ids in read] == [4]  # 2 running dates, 2 pending ones
    assert read[0][:2] == [d.run_id for d in bf.dates[:2]]
