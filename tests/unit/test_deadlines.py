"""GIVEN calls asked for later (the executor's kill graces and looks at killed groups),
WHEN they fall due, THEN one thread makes them in due order; a call that fails stops no
other; close drops the rest and ends the thread."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from tests.waiting import wait_for

from stratoflow.adapters.local.deadlines import Deadlines


def test_calls_come_in_due_order_from_one_thread() -> None:
    deadlines = Deadlines("test-deadlines")
    made: list[tuple[str, str]] = []

    def note(name: str) -> None:
        made.append((name, threading.current_thread().name))

    try:
        # asked for out of order (two for about the same time: in the order asked)
        deadlines.after(0.15, note, "third")
        deadlines.after(0.05, note, "first")
        deadlines.after(0.10, note, "second-a")
        deadlines.after(0.10, note, "second-b")
        assert wait_for(lambda: len(made) == 4)
    finally:
        deadlines.close()
    assert [name for name, _ in made] == ["first", "second-a", "second-b", "third"]
    assert {thread for _, thread in made} == {"test-deadlines"}


def test_a_sooner_call_is_not_held_behind_a_later_one() -> None:
    deadlines = Deadlines("test-deadlines")
    done = threading.Event()
    try:
        deadlines.after(60, done.set)  # the thread now waits a minute
        asked = time.monotonic()
        soon = threading.Event()
        deadlines.after(0.05, soon.set)
        assert soon.wait(5)
        assert time.monotonic() - asked < 2
        assert not done.is_set()
        assert deadlines.pending() == 1
    finally:
        deadlines.close()


def test_a_call_may_ask_for_the_next_and_a_failing_one_stops_no_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    deadlines = Deadlines("test-deadlines")
    looks: list[int] = []

    def look(n: int) -> None:  # as the executor's look at a group: again until done
        looks.append(n)
        if n < 3:
            deadlines.after(0.01, look, n + 1)

    def fail() -> None:
        raise RuntimeError("boom")

    try:
        with caplog.at_level(logging.ERROR, logger="stratoflow.executor"):
            deadlines.after(0.0, fail)
            deadlines.after(0.01, look, 1)
            assert wait_for(lambda: looks == [1, 2, 3])
    finally:
        deadlines.close()
    assert "a due call of the executor failed" in caplog.text


def test_close_drops_what_is_to_come_and_ends_the_thread() -> None:
    deadlines = Deadlines("test-deadlines")
    called = threading.Event()
    deadlines.after(0.2, called.set)
    deadlines.close()
    assert not any(t.name == "test-deadlines" for t in threading.enumerate())
    assert deadlines.after(0.0, called.set) is False  # nothing once closed
    time.sleep(0.3)
    assert not called.is_set()
    assert deadlines.pending() == 0


def test_no_thread_until_the_first_call() -> None:
    deadlines = Deadlines("test-deadlines-idle")
    try:
        assert not any(t.name == "test-deadlines-idle" for t in threading.enumerate())
    finally:
        deadlines.close()  # (closing one that never ran: nothing to join)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_thread_ended_by_what_no_call_should_raise_is_started_again() -> None:
    """A call that raised past ``Exception`` (SystemExit) ended the thread: the calls asked
    for after it still come (else no kill's SIGKILL would ever be sent again)."""
    deadlines = Deadlines("test-deadlines-again")

    def leave() -> None:
        raise SystemExit

    try:
        deadlines.after(0.0, leave)
        assert wait_for(
            lambda: not any(t.name == "test-deadlines-again" for t in threading.enumerate())
        )
        came = threading.Event()
        assert deadlines.after(0.0, came.set) is True
        assert came.wait(5)
    finally:
        deadlines.close()
