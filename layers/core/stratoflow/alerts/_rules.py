"""Which alerts a lifecycle event makes (pure: no I/O, no clock).

A lifecycle event (``run.started``, ``task.retrying``, ...) and the workflow version its run
pinned give a list of :class:`Planned` alerts, one per group that asked for it. Each carries
a deterministic key, so the same event delivered twice plans the same keys and the outbox
keeps one of each.

- ``start``, ``success``, ``failure`` (of the run), ``recovered`` and ``sla_miss`` (of the
  run): the workflow's ``alerts``;
- ``retry``, ``timeout`` and a task's ``sla_miss``: the workflow's and the task's ``alerts``;
- ``failure`` of a task (``task.failed``): the task's ``alerts`` (the run's failure follows
  as ``run.failed`` for the workflow's).

PagerDuty incidents are keyed per run (``stratoflow/<project>/<workflow>/<run>``) and per
task of a run (``.../<run>/<task>``): a task's retry, timeout and failure fold into one
incident, and a later success of the workflow resolves what its earlier runs opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stratoflow.alerts._messages import AlertFacts
from stratoflow.engine import Run
from stratoflow.model import AlertRule, Workflow

RUN_EVENTS = {"run.started": "start", "run.succeeded": "success", "run.failed": "failure"}
TASK_EVENTS = {"task.retrying": "retry", "task.failed": "failure", "task.timeout": "timeout"}


@dataclass(frozen=True)
class Planned:
    key: str
    group: str
    facts: AlertFacts


def incident_key(project: str, workflow: str, run_id: str, task_id: str | None = None) -> str:
    key = f"stratoflow/{project}/{workflow}/{run_id}"
    return f"{key}/{task_id}" if task_id else key


def run_link(base: str | None, run_id: str) -> str | None:
    return f"{base.rstrip('/')}/#/runs/{run_id}" if base else None


def _groups(rules: list[AlertRule], event: str) -> list[str]:
    seen: list[str] = []
    for rule in rules:
        if event in rule.on and rule.group not in seen:
            seen.append(rule.group)
    return seen


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def for_event(
    kind: str,
    run: Run,
    workflow: Workflow,
    *,
    task_id: str | None = None,
    attempt: int | None = None,
    error: str | None = None,
    at: datetime,
    link_base: str | None = None,
    previous_failed: str | None = None,
) -> list[Planned]:
    """The alerts lifecycle event ``kind`` makes. ``previous_failed``: on ``run.succeeded``,
    the id of the workflow's previous run if that one failed (then also ``recovered``)."""

    def facts(event: str, **more: Any) -> AlertFacts:
        return AlertFacts(
            event, run.project, run.workflow, run_id=run.id,
            logical_date=run.logical_date.isoformat(), link=run_link(link_base, run.id),
            at=at.isoformat(), **more,
        )  # fmt: skip

    planned: list[Planned] = []
    if kind in RUN_EVENTS:
        event = RUN_EVENTS[kind]
        ended = _iso(run.ended_at) or ""
        key = f"start:{run.id}" if event == "start" else f"{event}:{run.id}:{ended}"
        made = facts(
            event, state=run.state.value, error=error or run.error,
            dedup_key=incident_key(run.project, run.workflow, run.id),
        )  # fmt: skip
        planned += [Planned(key, g, made) for g in _groups(workflow.alerts, event)]
        if event == "success" and previous_failed is not None:
            recovered = facts(
                "recovered", state=run.state.value, detail=f"the previous run {previous_failed} failed",
                dedup_key=incident_key(run.project, run.workflow, previous_failed),
            )  # fmt: skip
            planned += [
                Planned(f"recovered:{run.id}:{ended}", g, recovered)
                for g in _groups(workflow.alerts, "recovered")
            ]
        return planned
    if kind in TASK_EVENTS and task_id is not None and task_id in workflow.tasks:
        event = TASK_EVENTS[kind]
        rules = list(workflow.tasks[task_id].alerts)
        if event != "failure":
            rules = list(workflow.alerts) + rules
        made = facts(
            event, task_id=task_id, attempt=attempt, state=kind.split(".")[1], error=error,
            dedup_key=incident_key(run.project, run.workflow, run.id, task_id),
        )  # fmt: skip
        key = f"{event}:{run.id}:{task_id}:{attempt}"
        return [Planned(key, g, made) for g in _groups(rules, event)]
    return []


@dataclass(frozen=True)
class SlaTimer:
    run_id: str
    task_id: str  # "" for the run's own SLA
    due: datetime
    sla: timedelta


def sla_timers(run: Run, workflow: Workflow) -> list[SlaTimer]:
    """The deadlines a started run sets: its own ``sla`` and each task's, counted from the
    run's start."""
    start = run.started_at or run.created_at
    timers = [SlaTimer(run.id, "", start + workflow.sla, workflow.sla)] if workflow.sla else []
    for task_id, task in workflow.tasks.items():
        if task.sla is not None:
            timers.append(SlaTimer(run.id, task_id, start + task.sla, task.sla))
    return timers


def sla_missed(timer: SlaTimer, ended_at: datetime | None) -> bool:
    """Whether what the timer watches missed it: unfinished at the deadline, or finished
    after it (the timer fired late, e.g. the server was down at the deadline)."""
    return ended_at is None or ended_at > timer.due


def for_sla_miss(
    timer: SlaTimer, run: Run, workflow: Workflow, *, at: datetime, link_base: str | None = None
) -> list[Planned]:
    task_id = timer.task_id or None
    rules = list(workflow.alerts)
    if task_id is not None and task_id in workflow.tasks:
        rules += workflow.tasks[task_id].alerts
    what = f"task {task_id}" if task_id else "the run"
    facts = AlertFacts(
        "sla_miss", run.project, run.workflow, run_id=run.id, task_id=task_id,
        logical_date=run.logical_date.isoformat(), state=run.state.value,
        link=run_link(link_base, run.id), at=at.isoformat(),
        detail=f"{what} was not done {timer.sla} after the run started (due {timer.due.isoformat()})",
        dedup_key=incident_key(run.project, run.workflow, run.id, task_id),
    )  # fmt: skip
    key = f"sla_miss:{run.id}:{timer.task_id}"
    return [Planned(key, g, facts) for g in _groups(rules, "sla_miss")]


def planned_test_alert(project: str, group: str, now: datetime, link_base: str | None) -> Planned:
    """A test alert to every channel of ``group``, sent on request (keyed by the time)."""
    facts = AlertFacts(
        "test", project, "(test)", at=now.isoformat(), link=link_base,
        detail=f"a test of alert group {group}, sent on request",
    )  # fmt: skip
    return Planned(f"test:{group}:{now.isoformat()}", group, facts)
