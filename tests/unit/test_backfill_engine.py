"""The backfill rules of the engine: which logical dates (the schedule's, in its time zone,
across DST; daily without a schedule; a list of days), in which order, and how lanes take
dates, record ends and stop, for each --rerun mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratoflow.engine import Run, RunState
from stratoflow.engine.backfill import (
    MAX_BACKFILL_DATES,
    Action,
    Backfill,
    BackfillState,
    DateState,
    Order,
    Rerun,
    advance_backfill,
    backfill_dates,
    backfill_document,
    backfill_from_document,
    cancel_backfill,
    new_backfill,
    parse_moment,
    pause_backfill,
    refuse_future_dates,
    resume_backfill,
    wanted_runs,
)
from stratoflow.errors import Conflict, InvalidInput
from stratoflow.model import Schedule, load_workflow, parse_schedule

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# ------------------------------------------------------------------ dates
def test_no_schedule_is_daily_at_midnight_utc_in_a_closed_range() -> None:
    got = backfill_dates(None, start="2026-01-01", end="2026-01-03")
    assert got == [utc(2026, 1, 1), utc(2026, 1, 2), utc(2026, 1, 3)]


def test_descending_order_reverses_the_dates() -> None:
    got = backfill_dates(None, start="2026-01-01", end="2026-01-03", order=Order.DESC)
    assert got == [utc(2026, 1, 3), utc(2026, 1, 2), utc(2026, 1, 1)]


def test_schedule_fires_in_its_time_zone_across_the_spring_dst_change() -> None:
    # 00:30 Berlin wall time: 23:30Z the day before in winter (CET), 22:30Z in summer (CEST);
    # a date-only end covers that whole day in Berlin
    schedule = Schedule(cron="30 0 * * *", timezone="Europe/Berlin")
    got = backfill_dates(schedule, start="2026-03-28", end="2026-03-30")
    assert got == [utc(2026, 3, 27, 23, 30), utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 22, 30)]


def test_a_wall_time_that_dst_skips_is_skipped_as_the_schedule_itself_skips_it() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29: the schedule does not fire that day, so
    # neither does its backfill (the same fire-time logic as the cron loop and EventBridge)
    schedule = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    got = backfill_dates(schedule, start="2026-03-28", end="2026-03-30")
    assert got == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 30, 0, 30)]
    lo, hi = utc(2026, 3, 27, 23), utc(2026, 3, 30, 22)
    assert got == parse_schedule(schedule.cron).fire_times(lo, hi, schedule.timezone)


def test_hourly_schedule_with_an_exact_end_is_inclusive() -> None:
    schedule = Schedule(cron="0 * * * *")
    got = backfill_dates(schedule, start="2026-01-01T00:00:00Z", end="2026-01-01T03:00:00Z")
    assert got == [utc(2026, 1, 1, h) for h in range(4)]


def test_a_list_of_days_takes_every_firing_of_each_day_and_exact_times_as_given() -> None:
    schedule = Schedule(cron="0 6,18 * * *")
    got = backfill_dates(schedule, dates=["2026-01-05", "2026-01-02T07:00:00+00:00"])
    assert got == [utc(2026, 1, 2, 7), utc(2026, 1, 5, 6), utc(2026, 1, 5, 18)]


def test_a_rate_schedule_backfills_its_grid_before_its_start_too() -> None:
    """A rate() schedule's start anchors its times but does not limit a backfill (README
    section 9): dates before it are start + k * rate, k negative too (they were dropped,
    without a word). The schedule's own firing still never fires before its start."""
    daily = Schedule(cron="rate(1 day)", start=datetime(2026, 11, 20))
    got = backfill_dates(daily, start="2026-11-10", end="2026-11-22")
    assert got == [utc(2026, 11, day) for day in range(10, 23)]
    # off the day's start, in the schedule's time zone: the grid, not midnight
    six = Schedule(
        cron="rate(6 hours)", timezone="Europe/Berlin", start=datetime(2026, 1, 10, 2, 30)
    )
    got = backfill_dates(six, start="2026-01-09", end="2026-01-10")  # 01-08T23:00Z on
    assert got == [utc(2026, 1, day, h, 30) for day in (9, 10) for h in (1, 7, 13, 19)]
    assert backfill_dates(six, dates=["2026-01-09"])[0] == utc(2026, 1, 9, 1, 30)
    # the schedule itself: its first firing is its start, none before
    expr = parse_schedule(daily.cron)
    assert expr.next_after(utc(2026, 11, 10), "UTC", daily.start) == utc(2026, 11, 20)
    assert expr.fire_times(utc(2026, 11, 10), utc(2026, 11, 21), "UTC", daily.start) == [
        utc(2026, 11, 20), utc(2026, 11, 21),
    ]  # fmt: skip
    assert expr.previous_at_or_before(utc(2026, 11, 19), "UTC", daily.start) is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start": "2026-01-05", "end": "2026-01-01"}, "end"),
        ({"start": "yesterday", "end": "2026-01-01"}, "start"),
        ({"start": "2026-01-01"}, "end"),
        ({"dates": ["2026-01-01"], "start": "2026-01-01"}, "dates"),
        ({"dates": ["2026-13-01"]}, "dates[0]"),
        ({"start": "9999-12-28", "end": "9999-12-31"}, "end"),
        ({"start": "0001-01-01T00:00:00+01:00", "end": "2026-01-01"}, "start"),
        ({"start": "1800-01-01", "end": "2026-01-01"}, "start"),
    ],
)
def test_bad_ranges_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        backfill_dates(None, **kwargs)
    assert field in [p.path for p in err.value.problems]


def test_a_bound_message_says_what_the_input_means_and_never_contradicts_it() -> None:
    # '9999-12-29' as an end is that whole day: past the last instant allowed, and said so
    # (it used to read "must be between 1900-01-02 and 9999-12-29" for 9999-12-29 itself)
    with pytest.raises(InvalidInput) as err:
        backfill_dates(None, start="9999-12-29", end="9999-12-29")
    message = err.value.problems[0].message
    assert err.value.problems[0].path == "end"
    assert "'9999-12-29' means 9999-12-29T23:59:59.999999Z" in message
    assert "between 1900-01-02T00:00:00Z and 9999-12-29T00:00:00Z" in message
    # a day that looks inside but whose start in the schedule's zone is outside, likewise
    with pytest.raises(InvalidInput, match=r"'1900-01-02' means 1900-01-01T\d\d:\d\d:\d\dZ"):
        parse_moment("1900-01-02", "start", ZoneInfo("Asia/Tokyo"))
    # the bounds themselves are inside
    assert parse_moment("9999-12-29T00:00:00Z", "end", ZoneInfo("UTC")) == utc(9999, 12, 29)
    assert parse_moment("1900-01-02", "start", ZoneInfo("UTC")) == utc(1900, 1, 2)


def test_dates_after_now_are_refused_naming_the_first_and_now() -> None:
    now = datetime(2026, 6, 1, 12, 0, 30, 123456, tzinfo=UTC)
    refuse_future_dates([utc(2026, 6, 1, 12), now], now, "end")  # up to now itself: fine
    later = [utc(2026, 6, 3), utc(2026, 6, 1, 12, 1), utc(2026, 5, 31)]  # --order desc too
    with pytest.raises(InvalidInput) as err:
        refuse_future_dates(later, now, "dates")
    problem = err.value.problems[0]
    assert problem.path == "dates"
    assert "2026-06-01T12:01:00Z is after now (2026-06-01T12:00:30Z)" in problem.message


def test_the_dates_refuse_the_earliest_after_now_without_looking_past_it() -> None:
    minutely = Schedule(cron="* * * * *")
    # a range far in the future: refused as future, not as "more than 1000 dates"
    with pytest.raises(InvalidInput) as err:
        backfill_dates(minutely, start="2030-03-01", end="2030-03-02", now=NOW)
    assert (err.value.problems[0].path, err.value.problems[0].message[:50]) == (
        "start",
        "logical date 2030-03-01T00:00:00Z is after now (20",
    )
    # a range across now: the first firing after now (the end is what reaches too far)
    with pytest.raises(InvalidInput, match=r"2026-06-01T00:01:00Z is after now \(2026-06-01T00:00:00Z\)") as err:  # fmt: skip
        backfill_dates(minutely, start="2026-05-31T22:00", end="2026-06-03", now=NOW)
    assert err.value.problems[0].path == "end"
    # a list: the earliest of its future dates, whatever the order given
    with pytest.raises(InvalidInput, match=r"2026-06-01T12:00:00Z is after now") as err:
        backfill_dates(None, dates=["2026-06-03", "2026-06-01T12:00:00Z", "2026-05-30"], now=NOW)
    assert err.value.problems[0].path == "dates"
    # up to now is fine
    got = backfill_dates(None, start="2026-05-30", end="2026-06-01", now=NOW)
    assert got == [utc(2026, 5, 30), utc(2026, 5, 31), utc(2026, 6, 1)]


def test_exact_times_in_one_second_are_one_date() -> None:
    got = backfill_dates(None, dates=["2026-01-02T07:00:00.1+00:00", "2026-01-02T07:00:00.9Z"])
    assert got == [utc(2026, 1, 2, 7)]


def test_too_many_dates_are_refused_before_anything_is_built() -> None:
    with pytest.raises(InvalidInput, match=f"more than {MAX_BACKFILL_DATES}"):
        backfill_dates(Schedule(cron="* * * * *"), start="2026-01-01", end="2026-01-02")


# ------------------------------------------------------------------ lanes
SPEC = load_workflow("name: wf\ntasks:\n  t: {type: shell, command: 'true'}\n")


def make(n: int = 4, *, parallel: int = 1, rerun: Rerun = Rerun.NONE) -> Backfill:
    dates = [utc(2026, 1, 1) + timedelta(days=i) for i in range(n)]
    return new_backfill(
        backfill_id="default.backfill-wf-1", spec=SPEC, version=1, logical_dates=dates,
        run_ids=[f"r{i}" for i in range(n)], params={}, parallel=parallel, order=Order.ASC,
        rerun=rerun, now=NOW,
    )  # fmt: skip


def run(run_id: str, state: RunState, ended: datetime | None = None) -> Run:
    return Run(
        id=run_id, workflow="wf", project="default", version=1, state=state, params={},
        logical_date=NOW, created_at=NOW, trigger="backfill",
        ended_at=ended if ended is not None else (NOW if state.terminal else None),
    )  # fmt: skip


def known(bf: Backfill, **states: RunState | None) -> dict[str, Run | None]:
    """Every run the engine wants: absent unless named (r0=RunState.RUNNING ...)."""
    out: dict[str, Run | None] = dict.fromkeys(wanted_runs(bf, 100))
    for rid, state in states.items():
        out[rid] = None if state is None else run(rid, state)
    return out


def states(bf: Backfill) -> list[str]:
    return [d.state.value for d in bf.dates]


def test_serial_takes_one_date_then_the_next_after_it_succeeded() -> None:
    bf = make()
    turn = advance_backfill(bf, known(bf), NOW)
    assert states(turn.backfill) == ["running", "pending", "pending", "pending"]
    assert [(d.run_id, d.action) for d in turn.acts] == [("r0", Action.CREATE)]
    bf = turn.backfill
    # its run goes on: its state is noted, once; nothing else changes
    seen = advance_backfill(bf, known(bf, r0=RunState.RUNNING), NOW).backfill
    assert seen.dates[0].run_state is RunState.RUNNING
    assert states(seen) == states(bf)
    assert not advance_backfill(seen, known(seen, r0=RunState.RUNNING), NOW).changed
    # it succeeded: the next date is taken
    turn = advance_backfill(bf, known(bf, r0=RunState.SUCCEEDED), NOW)
    assert states(turn.backfill) == ["succeeded", "running", "pending", "pending"]
    assert [d.run_id for d in turn.acts] == ["r1"]


def test_serial_first_failure_stops_the_backfill_and_leaves_the_rest_not_run() -> None:
    bf = advance_backfill(make(3), known(make(3)), NOW).backfill
    turn = advance_backfill(bf, known(bf, r0=RunState.FAILED), NOW)
    assert turn.backfill.state is BackfillState.FAILED
    assert states(turn.backfill) == ["failed", "not_run", "not_run"]
    assert not turn.acts
    assert turn.events == ("backfill.failed",)


def test_parallel_lanes_refill_as_each_run_ends_never_waiting_for_the_slowest() -> None:
    bf = make(6, parallel=3)
    bf = advance_backfill(bf, known(bf), NOW).backfill
    assert states(bf) == ["running"] * 3 + ["pending"] * 3
    # r1 ends first: its lane takes r3 while r0 and r2 still run
    turn = advance_backfill(
        bf, known(bf, r0=RunState.RUNNING, r1=RunState.SUCCEEDED, r2=RunState.RUNNING), NOW
    )
    assert states(turn.backfill) == ["running", "succeeded", "running", "running"] + ["pending"] * 2
    assert [d.run_id for d in turn.acts] == ["r3"]
    assert turn.backfill.dates[3].lane == turn.backfill.dates[1].lane


def test_a_failed_lane_stops_while_the_others_go_on() -> None:
    bf = make(5, parallel=2)
    bf = advance_backfill(bf, known(bf), NOW).backfill
    bf = advance_backfill(bf, known(bf, r0=RunState.FAILED, r1=RunState.RUNNING), NOW).backfill
    assert states(bf) == ["failed", "running", "pending", "pending", "pending"]
    bf = advance_backfill(bf, known(bf, r1=RunState.SUCCEEDED), NOW).backfill
    assert states(bf) == ["failed", "succeeded", "running", "pending", "pending"]
    bf = advance_backfill(bf, known(bf, r2=RunState.SUCCEEDED), NOW).backfill
    bf = advance_backfill(bf, known(bf, r3=RunState.SUCCEEDED), NOW).backfill
    bf = advance_backfill(bf, known(bf, r4=RunState.SUCCEEDED), NOW).backfill
    assert bf.state is BackfillState.FAILED  # one date failed
    assert states(bf) == ["failed"] + ["succeeded"] * 4


@pytest.mark.parametrize(
    ("rerun", "existing", "action"),
    [
        (Rerun.NONE, RunState.SUCCEEDED, None),
        (Rerun.NONE, RunState.RUNNING, Action.ADOPT),
        (Rerun.FAILED, RunState.SUCCEEDED, None),
        (Rerun.FAILED, RunState.FAILED, Action.RERUN),
        (Rerun.FAILED, RunState.STOPPED, Action.RERUN),
        (Rerun.ALL, RunState.SUCCEEDED, Action.RERUN),
        (Rerun.ALL, RunState.QUEUED, Action.ADOPT),
    ],
)
def test_rerun_modes_for_dates_that_have_runs(
    rerun: Rerun, existing: RunState, action: Action | None
) -> None:
    bf = make(2, rerun=rerun)
    turn = advance_backfill(bf, known(bf, r0=existing), NOW)
    first = turn.backfill.dates[0]
    if action is None:
        assert first.state is DateState.SKIPPED
        assert first.run_state is existing
        assert turn.backfill.dates[1].action is Action.CREATE  # the lane went on at once
    else:
        assert first.state is DateState.RUNNING
        assert first.action is action
        assert (first in turn.acts) is (action is Action.RERUN)


@pytest.mark.parametrize(
    ("existing", "state"), [(RunState.FAILED, "failed"), (RunState.STOPPED, "stopped")]
)
def test_a_kept_run_that_did_not_succeed_is_no_skip_and_stops_its_lane(
    existing: RunState, state: str
) -> None:
    """--rerun none over a date whose run failed or was stopped: the date never completed,
    so it is not `skipped` (which counts as done) but ends as its run did, and its lane
    stops as after any failure: the backfill fails instead of claiming success."""
    bf = make(3)
    turn = advance_backfill(bf, known(bf, r1=RunState.SUCCEEDED, r0=existing), NOW)
    assert states(turn.backfill) == [state, "not_run", "not_run"]
    assert turn.backfill.dates[0].run_state is existing
    assert "--rerun failed" in (turn.backfill.dates[0].error or "")
    assert turn.backfill.state is BackfillState.FAILED
    assert not turn.acts
    # with two lanes, only its lane stops: the other goes on past the kept success
    bf = make(3, parallel=2)
    turn = advance_backfill(bf, known(bf, r0=existing, r1=RunState.SUCCEEDED), NOW)
    assert states(turn.backfill) == [state, "skipped", "running"]
    assert turn.backfill.dates[0].lane not in {turn.backfill.dates[2].lane}


def test_a_run_stopped_mid_run_leaves_its_date_stopped_not_failed_nor_not_run() -> None:
    bf = make(2)
    bf = advance_backfill(bf, known(bf), NOW).backfill
    turn = advance_backfill(bf, known(bf, r0=RunState.STOPPED), NOW)
    assert states(turn.backfill) == ["stopped", "not_run"]
    assert turn.backfill.state is BackfillState.FAILED
    assert turn.backfill.counts()["stopped"] == 1


def test_a_repeated_backfill_of_succeeded_dates_adds_nothing_and_succeeds() -> None:
    bf = make(3)
    turn = advance_backfill(
        bf, known(bf, r0=RunState.SUCCEEDED, r1=RunState.SUCCEEDED, r2=RunState.SUCCEEDED), NOW
    )
    assert not turn.acts
    assert states(turn.backfill) == ["skipped"] * 3
    assert turn.backfill.state is BackfillState.SUCCEEDED


def test_a_pending_date_not_yet_read_is_asked_for_instead_of_guessed() -> None:
    bf = make(3)
    turn = advance_backfill(bf, {"r0": run("r0", RunState.SUCCEEDED)}, NOW)
    assert turn.lookup == ("r1",)
    assert turn.backfill.state is BackfillState.RUNNING  # not ended on missing knowledge


def test_a_crash_after_marking_is_completed_create_again_and_rerun_again() -> None:
    bf = make(2, rerun=Rerun.FAILED)
    before = run("r0", RunState.FAILED, ended=NOW - timedelta(hours=1))
    bf = advance_backfill(bf, {"r0": before, "r1": None}, NOW).backfill
    assert bf.dates[0].prior_end == before.ended_at
    # the rerun was not applied (the run still ends as before): decided again
    again = advance_backfill(bf, {"r0": before}, NOW)
    assert [d.run_id for d in again.acts] == ["r0"]
    assert not again.changed
    # applied, then it ended again: recorded
    rerun_ended = run("r0", RunState.SUCCEEDED, ended=NOW)
    assert states(advance_backfill(bf, {"r0": rerun_ended, "r1": None}, NOW).backfill)[0] == (
        "succeeded"
    )
    # a created date whose run is missing is created again (the same id: once)
    created = advance_backfill(make(1), {"r0": None}, NOW).backfill
    assert [d.run_id for d in advance_backfill(created, {"r0": None}, NOW).acts] == ["r0"]


def test_pause_takes_nothing_new_resume_goes_on_cancel_stops_its_own_runs() -> None:
    bf = make(4, parallel=2)
    bf = advance_backfill(bf, known(bf), NOW).backfill
    bf = pause_backfill(bf, NOW)
    turn = advance_backfill(bf, known(bf, r0=RunState.SUCCEEDED, r1=RunState.RUNNING), NOW)
    assert states(turn.backfill) == ["succeeded", "running", "pending", "pending"]
    with pytest.raises(Conflict):
        pause_backfill(turn.backfill, NOW)
    bf = resume_backfill(turn.backfill, NOW)
    bf = advance_backfill(bf, known(bf, r1=RunState.RUNNING), NOW).backfill
    assert states(bf) == ["succeeded", "running", "running", "pending"]
    cancelling = cancel_backfill(bf, NOW)
    # the cancel's intent: nothing more is taken, its own runs are still to be stopped
    assert cancelling.state is BackfillState.CANCELLING
    assert states(cancelling) == ["succeeded", "running", "running", "not_run"]
    assert cancel_backfill(cancelling, NOW) is cancelling  # a repeated cancel: the same
    turn = advance_backfill(
        cancelling, known(cancelling, r1=RunState.RUNNING, r2=RunState.RUNNING), NOW
    )
    assert turn.stop == ("r1", "r2")
    assert not turn.acts
    assert turn.backfill.state is BackfillState.CANCELLING  # until its runs have ended
    # one stopped; the other's stop found it ended: it ends as its run did
    turn = advance_backfill(
        turn.backfill, known(turn.backfill, r1=RunState.STOPPED, r2=RunState.SUCCEEDED), NOW
    )
    cancelled = turn.backfill
    assert turn.stop == ()
    assert turn.events == ("backfill.cancelled",)
    assert cancelled.state is BackfillState.CANCELLED
    assert cancelled.ended_at == NOW
    # the runs it stopped were under way: stopped, not "not_run" (that is for what never ran)
    assert states(cancelled) == ["succeeded", "stopped", "succeeded", "not_run"]
    assert "backfill cancelled" in (cancelled.dates[1].error or "")
    with pytest.raises(Conflict):
        cancel_backfill(cancelled, NOW)


def test_cancel_leaves_a_run_it_only_waited_for_alone() -> None:
    bf = make(1)
    bf = advance_backfill(bf, known(bf, r0=RunState.RUNNING), NOW).backfill
    assert bf.dates[0].action is Action.ADOPT
    cancelling = cancel_backfill(bf, NOW)
    assert states(cancelling) == ["not_run"]  # its run is not this backfill's, and goes on
    turn = advance_backfill(cancelling, known(cancelling, r0=RunState.RUNNING), NOW)
    assert turn.stop == ()
    assert turn.backfill.state is BackfillState.CANCELLED


def test_a_cancelled_date_whose_run_was_never_made_is_not_run() -> None:
    bf = make(3, parallel=3)
    bf = advance_backfill(bf, known(bf), NOW).backfill
    cancelling = cancel_backfill(bf, NOW)
    runs = known(cancelling, r0=RunState.SUCCEEDED, r1=None, r2=RunState.RUNNING)
    turn = advance_backfill(cancelling, runs, NOW)
    assert not turn.acts  # a date its creator died before making is not made now
    assert turn.stop == ("r2",)
    assert states(turn.backfill) == ["succeeded", "not_run", "running"]
    assert turn.backfill.dates[0].error is None


def test_parallel_is_bounded() -> None:
    with pytest.raises(InvalidInput, match="parallel"):
        make(parallel=0)
    with pytest.raises(InvalidInput, match="parallel"):
        make(parallel=33)


def test_the_stored_document_reads_back_equal() -> None:
    bf = make(3, parallel=2, rerun=Rerun.ALL)
    bf = advance_backfill(bf, known(bf, r0=RunState.FAILED), NOW).backfill
    assert backfill_from_document(backfill_document(bf)) == bf
    stopped = cancel_backfill(bf, NOW)
    assert stopped.state is BackfillState.CANCELLING
    assert backfill_from_document(backfill_document(stopped)) == stopped


# ------------------------------------------------------------------ a storm of run ends
@given(
    n=st.integers(1, 12),
    parallel=st.integers(1, 4),
    rerun=st.sampled_from(list(Rerun)),
    existing=st.lists(st.sampled_from([None, *RunState]), min_size=12, max_size=12),
    ends=st.lists(st.tuples(st.integers(0, 100), st.booleans()), max_size=60),
)
@settings(max_examples=300, deadline=None)
def test_lanes_hold_their_invariants_whatever_order_runs_end_in(
    n: int,
    parallel: int,
    rerun: Rerun,
    existing: list[RunState | None],
    ends: list[tuple[int, bool]],
) -> None:
    """Whatever runs existed before and in whatever order runs end: never more running
    dates than lanes, one lane per running date, dates taken in order, each run made at
    most once, and an end that says what happened."""
    bf = make(n, parallel=parallel, rerun=rerun)
    runs: dict[str, Run | None] = {
        f"r{i}": None if state is None else run(f"r{i}", state)
        for i, state in enumerate(existing[:n])
    }
    made: list[str] = []
    rerun_of: list[str] = []
    moves = iter(ends)
    for _ in range(200):
        turn = advance_backfill(bf, runs, NOW)
        bf = turn.backfill
        for d in turn.acts:
            if d.action is Action.CREATE:
                made.append(d.run_id)
            else:
                rerun_of.append(d.run_id)
            runs[d.run_id] = run(d.run_id, RunState.RUNNING)
        # the service forgets a rerun's mark once it applied it (Backfills._rerun_applied)
        bf = bf.with_(dates=tuple(d.with_(prior_end=None) for d in bf.dates))
        running = [d for d in bf.dates if d.state is DateState.RUNNING]
        assert len(running) <= parallel - len(bf.stopped_lanes)
        assert len({d.lane for d in running}) == len(running)
        taken = [d.state is not DateState.PENDING for d in bf.dates]
        assert taken == sorted(taken, reverse=True)  # the pending dates are a suffix
        if bf.state.terminal:
            break
        active = [r for r in runs.values() if r is not None and not r.state.terminal]
        assert active, "nothing runs and the backfill did not end: a stalled lane"
        index, ok = next(moves, (0, True))
        ending = active[index % len(active)]
        runs[ending.id] = run(ending.id, RunState.SUCCEEDED if ok else RunState.FAILED)
    assert bf.state.terminal
    assert len(made) == len(set(made))  # each date's run made once
    assert not set(made) & {f"r{i}" for i, s in enumerate(existing[:n]) if s is not None}
    assert len(rerun_of) == len(set(rerun_of))
    bad = {DateState.FAILED, DateState.STOPPED, DateState.NOT_RUN}
    assert (bf.state is BackfillState.SUCCEEDED) == (not {d.state for d in bf.dates} & bad)
    # a skip counts as done only over a run that succeeded
    assert all(d.run_state is RunState.SUCCEEDED for d in bf.dates if d.state is DateState.SKIPPED)
    ended = [d.state in (DateState.FAILED, DateState.STOPPED) for d in bf.dates]
    if parallel == 1 and any(ended):
        first = ended.index(True)
        assert {d.state for d in bf.dates[first + 1 :]} <= {DateState.NOT_RUN}
