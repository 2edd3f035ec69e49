"""``TaskInstance.with_`` and ``Run.with_`` copy without ``dataclasses.replace`` (the hot
path copies task values ~5 times per task): they must still behave as ``replace`` does."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from stratoflow.engine import TaskInstance, TaskState
from stratoflow.engine._states import _with


def test_with_copies_changes_and_leaves_the_original() -> None:
    ti = TaskInstance(run_id="r", task_id="t", state=TaskState.WAITING)
    moved = ti.with_(state=TaskState.QUEUED, attempt=2)
    assert moved == dataclasses.replace(ti, state=TaskState.QUEUED, attempt=2)
    assert (ti.state, ti.attempt) == (TaskState.WAITING, 0)


def test_with_refuses_an_unknown_field_as_replace_does() -> None:
    ti = TaskInstance(run_id="r", task_id="t", state=TaskState.WAITING)
    with pytest.raises(TypeError, match="no_such"):
        ti.with_(no_such=1)


@dataclasses.dataclass(frozen=True)
class _Checked:
    at: datetime

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("naive")


def test_a_value_with_post_init_is_copied_through_its_init() -> None:
    value = _Checked(datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="naive"):
        _with(value, {"at": datetime(2026, 1, 2)})
