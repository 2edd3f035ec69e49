"""Shared pieces of the converters: placeholders, and leaving a task out of the graph."""

from __future__ import annotations

import json
from typing import Any, Literal

from stratoflow.importers._report import Notes
from stratoflow.model._workflow import MAX_PRIORITY

Unmapped = Literal["placeholder", "report"]
_MAX_SHOWN = 2000


def shown(value: Any) -> str:
    """The original definition, for the report (bounded)."""
    text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def placeholder(kind: str, original: str, reason: str) -> dict[str, Any]:
    """A shell task that fails, naming what it stands for."""
    message = f"stratoflow import: placeholder for {kind} task {original!r}: {reason}"
    quoted = message.replace("'", "'\\''")
    return {
        "type": "shell",
        "description": f"PLACEHOLDER (imported {kind} task {original!r}): {reason}",
        "command": f"echo '{quoted}' >&2\nexit 1\n",
    }


def leave_out(tasks: dict[str, dict[str, Any]], task: str) -> None:
    """Remove ``task``; its children depend on its parents instead, so order is kept."""
    parents = tasks.pop(task).get("depends_on", [])
    for body in tasks.values():
        deps = body.get("depends_on", [])
        if task in deps:
            merged = [d for d in deps if d != task]
            merged += [p for p in parents if p not in merged]
            body["depends_on"] = merged
        if body.get("type") == "switch":  # a branch left out: its children are the branch now
            for case in body.get("cases", []):
                if task in case["next"]:
                    case["next"] = [t for t in case["next"] if t != task] or []
            if task in body.get("default", []):
                body["default"] = [t for t in body["default"] if t != task]
            body["cases"] = [c for c in body.get("cases", []) if c["next"]]


def unmapped_task(
    tasks: dict[str, dict[str, Any]],
    task: str,
    kind: str,
    original: str,
    reason: str,
    definition: Any,
    mode: Unmapped,
    notes: Notes,
) -> None:
    """Replace ``task`` by a placeholder, or leave it out, and say so."""
    if mode == "placeholder":
        deps = tasks[task].get("depends_on", [])
        tasks[task] = placeholder(kind, original, reason)
        if deps:
            tasks[task]["depends_on"] = deps
        done = "a failing placeholder task stands in its place"
    else:
        leave_out(tasks, task)
        done = "left out (its downstream tasks now follow its upstream tasks)"
    notes.unmapped(f"{kind} task: {reason}; {done}. Original: {shown(definition)}", task=task)


# DolphinScheduler's five priority levels as Stratoflow priorities (higher runs first); the
# steps of 10 leave room to rank tasks by hand between the levels
DS_PRIORITIES = {"HIGHEST": 20, "HIGH": 10, "MEDIUM": 0, "LOW": -10, "LOWEST": -20}


def ds_priority(level: str, what: str, notes: Notes, task: str | None = None) -> int | None:
    """``level`` (HIGHEST..LOWEST) as a priority; None, reported, when it is none of them."""
    if level in DS_PRIORITIES:
        return DS_PRIORITIES[level]
    notes.unmapped(f"{what} {level!r} is not a DolphinScheduler priority: 0", task=task)
    return None


def clamped_priority(value: float, what: str, notes: Notes, task: str | None = None) -> int:
    """``value`` as a priority in -100..100, reported when it had to be moved into it."""
    priority = int(max(-MAX_PRIORITY, min(MAX_PRIORITY, value)))
    if priority != value:
        notes.changed(
            f"{what} {value:g} is outside Stratoflow's -{MAX_PRIORITY}..{MAX_PRIORITY}: "
            f"priority {priority} (tasks beyond the bound now share it)",
            task=task,
        )
    return priority


def pools_to_create(
    pools: dict[str, list[str]], project: str | None, slots: str, notes: Notes
) -> None:
    """One note per pool the workflow's tasks name: ``apply`` refuses the workflow until the
    pool exists, so say how to create it."""
    where = f" --project {project}" if project else ""
    for pool, users in pools.items():
        named = ", ".join(users[:10]) + (f" and {len(users) - 10} more" if len(users) > 10 else "")
        notes.changed(
            f"{'task' if len(users) == 1 else 'tasks'} {named} "
            f"{'uses' if len(users) == 1 else 'use'} pool {pool!r}: `stratoflow apply` refuses this "
            f"workflow until the pool exists; create it first with `stratoflow pools set {pool} "
            f"--slots N{where}` ({slots})",
            field="pool",
        )
