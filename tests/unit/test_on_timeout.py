"""``on_timeout`` (fail | warn | warn_fail), ``sla`` and ``alerts`` in the model, and the
engine's deadline rule: pure, with a fixed ``now``."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta

import pytest

from stratoflow import engine
from stratoflow.engine import TaskInstance, TaskState
from stratoflow.errors import InvalidInput
from stratoflow.model import (
    AlertEvent,
    OnTimeout,
    WorkflowSpec,
    load_workflow,
    spec_from_document,
)

DOC = """
name: wf
sla: 2h
alerts:
  - on: [failure, recovered, sla_miss]
    group: oncall
tasks:
  a: {type: shell, command: sleep 100, timeout: 10m, on_timeout: %s}
  b: {type: shell, command: "true", timeout: 10m, sla: 30m,
      alerts: [{on: [retry, timeout], group: team}]}
"""


def spec(mode: str = "fail") -> WorkflowSpec:
    return load_workflow(textwrap.dedent(DOC % mode))


def running(now: datetime, deadline: datetime) -> TaskInstance:
    return TaskInstance("r", "a", TaskState.RUNNING, attempt=1, started_at=now, deadline=deadline)


def test_the_new_fields_parse_and_default() -> None:
    wf = spec("warn").workflow
    assert wf.sla == timedelta(hours=2)
    assert wf.alerts[0].group == "oncall"
    assert AlertEvent.RECOVERED in wf.alerts[0].on
    assert wf.tasks["a"].on_timeout is OnTimeout.WARN
    assert wf.tasks["b"].on_timeout is OnTimeout.FAIL  # the default: v1 behaviour
    assert wf.tasks["b"].sla == timedelta(minutes=30)
    assert wf.tasks["b"].alerts[0].on == [AlertEvent.RETRY, AlertEvent.TIMEOUT]
    plain = load_workflow("name: v1\ntasks: {t: {type: shell, command: 'true'}}").workflow
    assert (plain.sla, plain.alerts, plain.tasks["t"].on_timeout) == (None, [], OnTimeout.FAIL)


@pytest.mark.parametrize(
    ("fragment", "field", "words"),
    [
        ("on_timeout: sometimes", "on_timeout", "'fail', 'warn' or 'warn_fail'"),
        ("alerts: [{on: [explode], group: g}]", "alerts.0.on.0", "'start'"),
        ("alerts: [{on: [failure, failure], group: g}]", "alerts.0.on", "listed twice"),
        ("alerts: [{on: [], group: g}]", "alerts.0.on", "at least 1"),
        ("alerts: [{on: [failure], group: 'Bad Group'}]", "alerts.0.group", "pattern"),
        ("sla: forever", "sla", ""),
    ],
)
def test_bad_alert_fields_are_named(fragment: str, field: str, words: str) -> None:
    doc = f"name: wf\ntasks:\n  t: {{type: shell, command: 'true', {fragment}}}\n"
    with pytest.raises(InvalidInput) as caught:
        load_workflow(doc)
    assert f"tasks.t.{field}" in str(caught.value)
    assert words in str(caught.value)


def test_fail_times_out_without_a_warning(now: datetime) -> None:
    ti = running(now, now + timedelta(minutes=10))
    assert engine.on_deadline(spec("fail"), ti, now + timedelta(minutes=9)) is None
    out = engine.on_deadline(spec("fail"), ti, now + timedelta(minutes=10))
    assert out == engine.DeadlineOutcome(warn=False, fail=True)


def test_warn_keeps_the_attempt_running_without_a_deadline(now: datetime) -> None:
    ti = running(now, now + timedelta(minutes=10))
    out = engine.on_deadline(spec("warn"), ti, now + timedelta(minutes=11))
    assert out is not None
    assert (out.warn, out.fail) == (True, False)
    assert out.keep_running == ti.with_(deadline=None)
    # no deadline left: it is not timed out again, so it warns once
    assert engine.on_deadline(spec("warn"), out.keep_running, now + timedelta(hours=5)) is None


def test_warn_fail_warns_and_fails(now: datetime) -> None:
    ti = running(now, now + timedelta(minutes=10))
    out = engine.on_deadline(spec("warn_fail"), ti, now + timedelta(minutes=10))
    assert out == engine.DeadlineOutcome(warn=True, fail=True)


def test_an_executor_enforces_no_timeout_that_only_warns() -> None:
    assert engine.enforced_timeout(spec("warn"), "a") is None
    assert engine.enforced_timeout(spec("warn_fail"), "a") == timedelta(minutes=10)
    assert engine.enforced_timeout(spec("fail"), "b") == timedelta(minutes=10)


def test_alert_fields_are_not_passed_to_the_executor(now: datetime) -> None:
    from stratoflow.engine import Run, RunState

    s = spec("warn")
    run = Run("r", "wf", "default", 1, RunState.RUNNING, {}, now, now)
    rendered = engine.render_task(s, run, "b", {})
    assert not {"on_timeout", "sla", "alerts"} & set(rendered.fields)


ZERO = """
name: zero
defaults: {timeout: 10m}
tasks:
  unbounded: {type: shell, command: "true", timeout: 0}
  seconds: {type: shell, command: "true", timeout: 0s}
  bounded: {type: shell, command: "true"}
"""


def test_timeout_0_is_no_timeout_and_lifts_the_defaults(now: datetime) -> None:
    """``timeout: 0`` means no timeout (DolphinScheduler's 0, Airflow's None), wherever the
    timeout is read: no deadline at the claim, none for an executor that enforces it (the AWS
    dispatcher made a 0 into 1 s). A task's 0 takes away ``defaults.timeout``."""
    s = load_workflow(ZERO)
    for task_id in ("unbounded", "seconds"):
        assert s.workflow.timeout(task_id) is None
        assert engine.enforced_timeout(s, task_id) is None
        queued = TaskInstance("r", task_id, TaskState.QUEUED)
        assert engine.claim(s, queued, now).deadline is None
    assert s.workflow.timeout("bounded") == timedelta(minutes=10)
    # the stored document keeps what was written: a stored version loads as it did
    assert s.document["tasks"]["unbounded"]["timeout"] == "0s"
    assert spec_from_document(s.document).workflow.timeout("unbounded") is None
    assert load_workflow("name: d\ndefaults: {timeout: 0}\ntasks: {a: {type: shell, command: x}}")\
        .workflow.timeout("a") is None  # fmt: skip
