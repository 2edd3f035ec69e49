"""Callables the task-runner tests name as ``tests.unit.task_callables:<function>``."""

from __future__ import annotations

from typing import Any


def echo_event(event: dict[str, Any]) -> dict[str, Any]:
    return {"received": event}


def answer() -> int:
    return 42


def everything(**kwargs: Any) -> dict[str, Any]:
    return {"names": sorted(kwargs)}
