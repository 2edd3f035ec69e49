"""Shared pieces of the converters: placeholders, and leaving a task out of the graph."""

from __future__ import annotations

import json
from typing import Any, Literal

from stratoflow.importers._names import task_id, unique
from stratoflow.importers._report import Notes
from stratoflow.model._workflow import MAX_PRIORITY, pools_set_command

Unmapped = Literal["placeholder", "report"]
_MAX_SHOWN = 2000


def shown(value: Any) -> str:
    """The original definition, for the report (bounded)."""
    text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def placeholder(kind: str, original: str, reason: str) -> dict[str, Any]:
    """A shell task that fails, naming what it stands for."""
    message = f"stratoflow import: placeholder for {kind} task {original!r}: {reason}"
    # the command is a template: each brace of the message (which may quote the source's
    # templates) is written as a literal one, so that it renders as the message says
    quoted = message.replace("'", "'\\''").replace("{", "{{ '{' }}")
    return {
        "type": "shell",
        "description": f"PLACEHOLDER (imported {kind} task {original!r}): {reason}",
        "command": f"echo '{quoted}' >&2\nexit 1\n",
    }


def _gate_name(tid: str, suffix: str, taken: set[str]) -> str:
    """``<tid><suffix>``, cut to a task id's length, unique among ``taken`` (then taken)."""
    return unique(task_id(tid[: max(1, 128 - len(suffix))] + suffix), taken)


def _before(tasks: dict[str, dict[str, Any]], tid: str, gates: dict[str, dict[str, Any]]) -> None:
    """Put ``gates`` just before ``tid`` in ``tasks``' order."""
    ordered: dict[str, dict[str, Any]] = {}
    for name, body in tasks.items():
        if name == tid:
            ordered.update(gates)
        ordered[name] = body
    tasks.clear()
    tasks.update(ordered)


def _gate(ups: list[str], rule: str, description: str) -> dict[str, Any]:
    return {"type": "shell", "command": "true\n", "depends_on": list(ups), "trigger_rule": rule,
            "description": description}  # fmt: skip


def gate_one_done(tasks: dict[str, dict[str, Any]], tid: str, ups: list[str]) -> str:
    """Make ``tid`` run as Airflow's one_done: as soon as one of ``ups`` succeeded or
    failed, skipped when they all ended and none did. A gate (one_failed over ``ups``) runs
    once one of them failed; ``tid`` is one_success over ``ups`` and the gate. Stratoflow's
    one_failed counts an upstream_failed (or stopped) upstream as failed, where Airflow's
    one_done does not count an upstream_failed one: the caller says so where one can be.
    The gate's name."""
    failed = _gate_name(tid, "__upstream_failed", set(tasks))
    _before(tasks, tid, {failed: _gate(ups, "one_failed", f"one of {tid}'s upstream tasks failed")})
    tasks[tid]["depends_on"] = [*ups, failed]
    tasks[tid]["trigger_rule"] = "one_success"
    return failed


def gate_none_skipped(tasks: dict[str, dict[str, Any]], tid: str, ups: list[str]) -> list[str]:
    """Make ``tid`` run as Airflow's none_skipped: once all of ``ups`` ended and none was
    skipped (whether they succeeded or failed), skipped as soon as one was. Per upstream
    task ``u``, two gates: ``<tid>__<u>_failed`` (one_failed over ``u``: runs when it
    failed) and ``<tid>__<u>_ended`` (one_success over ``u`` and that gate: runs when ``u``
    succeeded or failed, skipped when it was skipped, never upstream_failed); ``tid`` is
    all_success over the ``_ended`` gates. The gates' names."""
    taken = set(tasks)
    gates: dict[str, dict[str, Any]] = {}
    ended: list[str] = []
    for up in ups:
        failed = _gate_name(tid, f"__{up}_failed", taken)
        done = _gate_name(tid, f"__{up}_ended", taken)
        gates[failed] = _gate([up], "one_failed", f"{tid}'s upstream task {up} failed")
        gates[done] = _gate([up, failed], "one_success",
                            f"{tid}'s upstream task {up} succeeded or failed (was not skipped)")  # fmt: skip
        ended.append(done)
    _before(tasks, tid, gates)
    tasks[tid]["depends_on"] = ended
    tasks[tid].pop("trigger_rule", None)
    return list(gates)


def can_end_upstream_failed(body: dict[str, Any]) -> bool:
    """Whether a task's trigger rule can end it upstream_failed (an upstream task failed):
    one with upstream tasks whose rule is all_success, none_failed or one_success."""
    rule = body.get("trigger_rule", "all_success")
    return bool(body.get("depends_on")) and rule in ("all_success", "none_failed", "one_success")


def _switches_choosing(tasks: dict[str, dict[str, Any]], task: str) -> list[str]:
    """The switch tasks ``task`` is a branch of (in a case's ``next`` or the ``default``)."""
    return [
        tid
        for tid, body in tasks.items()
        if body.get("type") == "switch"
        and (
            task in body.get("default", [])
            or any(task in case.get("next", []) for case in body.get("cases", []))
        )
    ]


def branch_heirs(tasks: dict[str, dict[str, Any]], task: str) -> list[str] | None:
    """What takes a switch branch's place when ``task`` is left out: its children, when it
    has some and each has ``task`` as its only upstream (a switch skips its unchosen branches
    whatever their other upstream tasks did, where DolphinScheduler skips a task only when
    all of its upstream tasks were skipped). None when nothing can: ``task`` then stays as a
    task that does nothing, or its case would be gone and the switch would choose another
    branch. An empty list when ``task`` is no switch's branch."""
    if not _switches_choosing(tasks, task):
        return []
    children = [t for t, body in tasks.items() if task in body.get("depends_on", [])]
    if not children or any(tasks[c].get("depends_on") != [task] for c in children):
        return None
    return children


def leave_out(tasks: dict[str, dict[str, Any]], task: str) -> None:
    """Remove ``task``; its children depend on its parents instead, so order is kept. A
    switch branch's children become the branch in its place (see :func:`branch_heirs`,
    which says whether they can: the caller keeps the task otherwise)."""
    heirs = branch_heirs(tasks, task) or []
    parents = tasks.pop(task).get("depends_on", [])
    for body in tasks.values():
        deps = body.get("depends_on", [])
        if task in deps:
            merged = [d for d in deps if d != task]
            merged += [p for p in parents if p not in merged]
            body["depends_on"] = merged
        if body.get("type") == "switch":  # a branch left out: its children are the branch now
            for case in body.get("cases", []):
                case["next"] = _replaced(case["next"], task, heirs)
            if task in body.get("default", []):
                body["default"] = _replaced(body["default"], task, heirs)
            body["cases"] = [c for c in body.get("cases", []) if c["next"]]


def chain_around(
    tasks: dict[str, dict[str, Any]],
    task: str,
    before: list[tuple[str, dict[str, Any]]],
    after: list[tuple[str, dict[str, Any]]],
) -> list[str]:
    """Put the tasks ``before`` and ``after`` (each (id, body); the ids made unique) in a
    chain with ``task``: the first of the chain takes ``task``'s place above it (its
    upstream tasks, its trigger rule, a switch's choice of it), the last below it (the tasks
    that depended on it depend on the last). The chain's ids, in order."""
    taken = set(tasks)
    head = [(unique(name, taken), body) for name, body in before]
    tail = [(unique(name, taken), body) for name, body in after]
    chain = [name for name, _ in head] + [task] + [name for name, _ in tail]
    first, last = chain[0], chain[-1]
    own = tasks[task]
    if last != task:
        for body in tasks.values():
            if task in body.get("depends_on", []):
                body["depends_on"] = _replaced(body["depends_on"], task, [last])
    if first != task:
        for body in tasks.values():
            if body.get("type") == "switch":
                for case in body.get("cases", []):
                    case["next"] = _replaced(case["next"], task, [first])
                if task in body.get("default", []):
                    body["default"] = _replaced(body["default"], task, [first])
    bodies = dict(head) | {task: own} | dict(tail)
    upstream: dict[str, Any] = {k: own.pop(k) for k in ("depends_on", "trigger_rule") if k in own}
    for i, name in enumerate(chain):
        body = bodies[name]
        body.pop("depends_on", None)
        body.pop("trigger_rule", None)
        if i == 0:
            body.update(upstream)
        else:
            body["depends_on"] = [chain[i - 1]]
    ordered: dict[str, dict[str, Any]] = {}
    for name, body in tasks.items():
        if name == task:
            ordered.update({n: bodies[n] for n in chain})
        else:
            ordered[name] = body
    tasks.clear()
    tasks.update(ordered)
    return chain


def _replaced(targets: list[str], task: str, heirs: list[str]) -> list[str]:
    if task not in targets:
        return targets
    out: list[str] = []
    for target in targets:
        for name in heirs if target == task else [target]:
            if name not in out:
                out.append(name)
    return out


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
    """Replace ``task`` by a placeholder, or leave it out, and say so. A switch branch no
    child can take the place of (:func:`branch_heirs`) is not left out but does nothing."""
    if mode == "placeholder":
        deps = tasks[task].get("depends_on", [])
        tasks[task] = placeholder(kind, original, reason)
        if deps:
            tasks[task]["depends_on"] = deps
        done = "a failing placeholder task stands in its place"
    else:
        heirs = branch_heirs(tasks, task)
        if heirs is None:
            switches = ", ".join(_switches_choosing(tasks, task))
            deps = tasks[task].get("depends_on", [])
            tasks[task] = {
                "type": "shell",
                "description": f"LEFT OUT (imported {kind} task {original!r}): {reason}",
                "command": "true\n",
            }
            if deps:
                tasks[task]["depends_on"] = deps
            done = (
                f"kept as a task that does nothing: it is a switch branch (of {switches}), and "
                "left out its case would be gone, the switch choosing another branch (no "
                "child can take its place: it has none, or one with other upstream tasks)"
            )
        else:
            leave_out(tasks, task)
            done = "left out (its downstream tasks now follow its upstream tasks)"
            if heirs:
                done += f"; {', '.join(heirs)} take its place as the switch's branch"
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
    where = [f"--project {project}"] if project else []
    for pool, users in pools.items():
        named = ", ".join(users[:10]) + (f" and {len(users) - 10} more" if len(users) > 10 else "")
        notes.changed(
            f"{'task' if len(users) == 1 else 'tasks'} {named} "
            f"{'uses' if len(users) == 1 else 'use'} pool {pool!r}: `stratoflow apply` refuses this "
            f"workflow until the pool exists; create it first with "
            f"`{pools_set_command(pool, '--slots N', *where)}` ({slots})",
            field="pool",
        )
