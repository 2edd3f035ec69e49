"""Callables the task-runner tests name as ``tests.unit.task_callables:<function>``."""

from __future__ import annotations

from typing import Any


def echo_event(event: dict[str, Any]) -> dict[str, Any]:
    return {"received": event}


def answer() -> int:
    return 42


def everything(**kwargs: Any) -> dict[str, Any]:
    return {"names": sorted(kwargs)}


def double(number: str, params: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    """A TaskFlow-style callable: its argument by name, beside the runner's own."""
    outputs["seen"] = sorted(params)
    return {"doubled": int(number) * 2}


def shadowed(params: dict[str, Any]) -> dict[str, Any]:
    """A param named ``params`` does not replace the task's params."""
    return {"keys": sorted(params)}


def with_context(number: str, **context: Any) -> dict[str, Any]:
    """Airflow's usual PythonOperator callable: its op_kwargs by name, the rest in **context."""
    return {"number": number, "names": sorted(context)}
