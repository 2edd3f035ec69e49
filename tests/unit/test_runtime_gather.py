"""The local loop's wait for reports: after an attempt's end, while other attempts run, it
lets the ends of the next moments join the same turn; it never waits when nothing else
runs (a chain's next step), nor for a turn that was asked for (``wake``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratoflow.adapters.local import runtime as runtime_module
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.engine import AttemptResult, AttemptStatus
from stratoflow.service import Finished

LONG = 5.0  # the gathering pause for these tests: far longer than any of their waits


@pytest.fixture
def rt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRuntime]:
    monkeypatch.setattr(runtime_module, "GATHER_SECONDS", LONG)
    runtime = LocalRuntime(tmp_path / "home", project=False)
    yield runtime
    runtime.close()


def _end(task_id: str) -> Finished:
    return Finished("r", task_id, 1, AttemptResult(AttemptStatus.SUCCEEDED), "")


def _live(rt: LocalRuntime, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(rt.executor, "live_attempts", lambda: n)


def test_ends_arriving_while_others_run_join_one_turn(
    rt: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _live(rt, monkeypatch, 3)
    paused: list[float] = []

    class Pause:  # the pause, in which another end arrives
        @staticmethod
        def sleep(seconds: float) -> None:
            paused.append(seconds)
            rt._reports.put(_end("b"))

    monkeypatch.setattr(runtime_module, "time", Pause)
    rt._reports.put(_end("a"))
    assert [f.task_id for f in rt._wait(1.0)] == ["a", "b"]
    assert paused == [LONG]


def test_an_end_with_nothing_else_running_is_taken_at_once(
    rt: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _live(rt, monkeypatch, 0)
    rt._reports.put(_end("a"))
    started = time.monotonic()
    assert [f.task_id for f in rt._wait(1.0)] == ["a"]
    assert time.monotonic() - started < LONG / 2


def test_a_wake_is_not_held_for_ends_to_come(
    rt: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _live(rt, monkeypatch, 3)
    rt.wake()
    started = time.monotonic()
    assert rt._wait(1.0) == []
    assert time.monotonic() - started < LONG / 2
