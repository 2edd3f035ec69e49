"""What the local cron loop fires, and when (catchup, start/end windows, time zones)."""

from __future__ import annotations

from datetime import UTC, datetime

from stratoflow.adapters.local.cron import MAX_FIRINGS_PER_TICK, due_firings, next_firing
from stratoflow.model import Schedule


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_first_sight_without_catchup_fires_nothing_and_starts_the_cursor_now() -> None:
    schedule = Schedule(cron="0 * * * *", start=datetime(2026, 1, 1))
    assert due_firings(schedule, None, utc(2026, 1, 2, 5, 30)) == ([], utc(2026, 1, 2, 5, 30))


def test_catchup_fires_every_missed_interval_since_start_oldest_first() -> None:
    # GIVEN an hourly schedule from 02:00 (naive start = in the schedule's zone, UTC here)
    schedule = Schedule(cron="0 * * * *", start=datetime(2026, 1, 1, 2, 0), catchup=True)
    # WHEN first seen at 05:30
    times, cursor = due_firings(schedule, None, utc(2026, 1, 1, 5, 30))
    # THEN 02:00 (the start itself), 03:00, 04:00 and 05:00 fire, in order
    assert times == [utc(2026, 1, 1, h) for h in (2, 3, 4, 5)]
    assert cursor == utc(2026, 1, 1, 5, 30)
    # AND the next tick fires only what became due since
    assert due_firings(schedule, cursor, utc(2026, 1, 1, 6, 0, 1)) == (
        [utc(2026, 1, 1, 6)],
        utc(2026, 1, 1, 6, 0, 1),
    )


def test_without_catchup_only_the_latest_missed_time_fires() -> None:
    schedule = Schedule(cron="*/10 * * * *")
    times, cursor = due_firings(schedule, utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 45))
    assert times == [utc(2026, 1, 1, 0, 40)]
    assert cursor == utc(2026, 1, 1, 0, 45)


def test_nothing_fires_after_the_end_of_the_window() -> None:
    schedule = Schedule(
        cron="0 * * * *", start=datetime(2026, 1, 1), end=datetime(2026, 1, 1, 3, 0), catchup=True
    )
    times, _ = due_firings(schedule, None, utc(2026, 1, 2))
    assert times == [utc(2026, 1, 1, h) for h in range(4)]
    assert next_firing(schedule, utc(2026, 1, 1, 3, 0)) is None


def test_catchup_over_a_long_window_proceeds_in_bounded_steps() -> None:
    schedule = Schedule(cron="* * * * *", start=datetime(2026, 1, 1), catchup=True)
    times, cursor = due_firings(schedule, None, utc(2026, 1, 10))
    assert len(times) == MAX_FIRINGS_PER_TICK
    assert cursor == times[-1]  # the next tick resumes right after the last one fired
    more, _ = due_firings(schedule, cursor, utc(2026, 1, 10))
    assert more[0] > times[-1]


def test_firings_follow_the_schedule_time_zone_across_dst() -> None:
    # 02:30 New York does not exist on 2026-03-08 (spring forward): EventBridge skips it
    schedule = Schedule(
        cron="30 2 * * *", timezone="America/New_York", start=datetime(2026, 3, 7), catchup=True
    )
    times, _ = due_firings(schedule, None, utc(2026, 3, 10))
    assert times == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 9, 6, 30)]
    assert next_firing(schedule, utc(2026, 3, 10)) == utc(2026, 3, 10, 6, 30)


def test_without_catchup_a_window_that_ended_long_ago_fires_nothing_late() -> None:
    """Without catchup only the schedule's latest time fires, as Airflow's latest interval:
    when that time is after the window's end (the server was down, or the workflow paused,
    past it), the window is over and nothing fires, not its last time a week late."""
    schedule = Schedule(cron="0 2 * * *", end=datetime(2026, 6, 3, 12, 0))
    assert due_firings(schedule, utc(2026, 6, 1, 12), utc(2026, 6, 10, 12)) == (
        [],
        utc(2026, 6, 3, 12),
    )
    # still fired when it is the latest time, late but within the window's last interval
    assert due_firings(schedule, utc(2026, 6, 2, 12), utc(2026, 6, 3, 13)) == (
        [utc(2026, 6, 3, 2)],
        utc(2026, 6, 3, 12),
    )
    assert due_firings(schedule, utc(2026, 6, 2, 12), utc(2026, 6, 4, 1, 59)) == (
        [utc(2026, 6, 3, 2)],
        utc(2026, 6, 3, 12),
    )
