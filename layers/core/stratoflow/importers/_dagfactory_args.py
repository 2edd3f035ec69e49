"""Airflow's retry, timeout and trigger settings of dag-factory tasks, as Airflow merges them.

Airflow gives each task the DAG's ``default_args``, then its task group's ``default_args``
(an inner group's over its parent's), then the task's own arguments, each winning over the
one before; what none sets is Airflow's default (``retries`` 0, ``retry_delay`` 300 s, no
backoff, ``trigger_rule`` all_success). A workflow's ``defaults`` hold the DAG's values and a
task says what differs, so that every task retries, times out and triggers as in Airflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from stratoflow.importers._report import Notes
from stratoflow.model import TriggerRule
from stratoflow.model._workflow import TaskDefaults

MAX_SECONDS = 365 * 86400  # the longest duration the format takes
MAX_RETRIES = 100  # the most retries the format takes
AIRFLOW_RETRY_DELAY = 300  # [core] default_task_retry_delay
AIRFLOW_MAX_RETRY_DELAY = 86400  # [core] max_task_retry_delay: the cap on a backed-off delay
MAX_BACKOFF = 10.0  # the largest retry_backoff the format takes
_STRATOFLOW = TaskDefaults()
STRATOFLOW_RETRY_DELAY = int(_STRATOFLOW.retry_delay.total_seconds())
STRATOFLOW_MAX_RETRY_DELAY = int(_STRATOFLOW.max_retry_delay.total_seconds())
RULES = frozenset(r.value for r in TriggerRule)
# Airflow 2's older names of rules Stratoflow has
OLD_RULE_NAMES = {"none_failed_or_skipped": TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS.value}
# Airflow's rules written as gate tasks before the task too (``_build.gate_one_done``,
# ``_build.gate_none_skipped``)
ONE_DONE, NONE_SKIPPED = "one_done", "none_skipped"

# the keys of a level each setting is read from, the first one set winning (dag-factory
# before 1.0 turned retry_delay_sec into retry_delay, and execution_timeout_secs into
# execution_timeout, over what was there)
_DURATIONS = {
    "delay": ("retry_delay_sec", "retry_delay"),
    "max_delay": ("max_retry_delay_sec", "max_retry_delay"),
    "timeout": ("execution_timeout_secs", "execution_timeout"),
}
SETTING_KEYS = frozenset(
    {"retries", "retry_exponential_backoff", "trigger_rule"}
    | {key for keys in _DURATIONS.values() for key in keys}
)


def seconds(value: Any) -> int | None:
    """A duration in whole seconds: a number of seconds, or dag-factory's
    ``{__type__: datetime.timedelta, ...}``; None when it is neither, or out of range."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value) if math.isfinite(value) and 0 <= value <= MAX_SECONDS else None
    if isinstance(value, dict) and str(value.get("__type__", "")).endswith("timedelta"):
        units = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1,
                 "milliseconds": 0.001, "microseconds": 0.000001}  # fmt: skip
        total = 0.0
        for key, unit in units.items():
            part = value.get(key, 0)
            if isinstance(part, bool) or not isinstance(part, (int, float)):
                return None
            total += part * unit
        return int(total) if math.isfinite(total) and 0 <= total <= MAX_SECONDS else None
    return None


def parse_retries(value: Any) -> int | None:
    """``retries`` as Airflow's ``parse_retries`` reads it: an int, else what ``int()``
    makes of it (``"3"``, ``" 3 "``, ``2.0``; True is 1); None when ``int()`` refuses it,
    where Airflow refuses the DAG."""
    if isinstance(value, int):  # bool too: Airflow keeps True, which counts as 1
        return int(value)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Where:
    """Where a level's settings are written, for the notes: the DAG's ``default_args``, a task
    group's ``default_args``, or a task's own keys."""

    prefix: str  # said before the key: "default_args.", "task group 'g': default_args.", ""
    task: str | None = None
    dag: bool = False

    def note(self, notes: Notes, severity: str, key: str, message: str) -> None:
        text = f"{self.prefix}{key} {message}"
        where = f"default_args.{key}" if self.dag else key if self.task else None
        if severity == "unmapped":
            notes.unmapped(text, task=self.task, field=where)
        else:
            notes.changed(text, task=self.task, field=where)


def read_level(conf: dict[str, Any], where: Where, notes: Notes) -> dict[str, Any]:
    """The settings one level sets, as Airflow reads them (each value it cannot read is
    noted, and left out): ``retries``, ``delay``, ``backoff``, ``max_delay``, ``timeout``
    (seconds; 0 for none) and ``rule``."""
    out: dict[str, Any] = {}
    if conf.get("retries") is not None:
        written = conf["retries"]
        retries = parse_retries(written)
        if retries is None:
            where.note(notes, "unmapped", "retries", f"{written!r} is not a whole number: left "
                       "out (Airflow refuses the DAG: 'retries' type must be int)")  # fmt: skip
        else:
            if type(written) is not int:
                where.note(notes, "changed", "retries", f"{written!r} is read as {retries}, "
                           "as Airflow's parse_retries reads it")  # fmt: skip
            if retries < 0:
                where.note(notes, "changed", "retries", f"{retries}: no retry, as in Airflow")
            elif retries > MAX_RETRIES:
                where.note(notes, "unmapped", "retries", f"{retries}: at most {MAX_RETRIES}")
            out["retries"] = max(0, min(retries, MAX_RETRIES))
    for name, keys in _DURATIONS.items():
        key = next((k for k in keys if conf.get(k) is not None), None)
        if key is None:
            continue
        value = seconds(conf[key])
        if value is None:
            where.note(notes, "unmapped", key, f"{conf[key]!r} is not a duration of 0 to "
                       f"{MAX_SECONDS} seconds: left out")  # fmt: skip
        else:
            out[name] = value
    backoff = conf.get("retry_exponential_backoff")
    if backoff is not None:
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)):
            out["backoff"] = 2.0 if backoff else 1.0
        elif backoff > 1:  # Airflow 3.1: a multiplier
            out["backoff"] = float(min(backoff, MAX_BACKOFF))
            if backoff > MAX_BACKOFF:
                where.note(notes, "unmapped", "retry_exponential_backoff",
                           f"{backoff!r}: at most {MAX_BACKOFF}")  # fmt: skip
        else:
            out["backoff"] = 1.0
    if conf.get("trigger_rule"):
        out["rule"] = str(conf["trigger_rule"])
    return out


@dataclass(frozen=True)
class Settings:
    """One task's settings as Airflow applies them (its defaults where nothing is set)."""

    retries: int = 0
    delay: int = AIRFLOW_RETRY_DELAY
    backoff: float = 1.0
    max_delay: int | None = None
    timeout: int = 0  # none
    rule: str = TriggerRule.ALL_SUCCESS.value

    @staticmethod
    def merged(*levels: dict[str, Any]) -> Settings:
        """The later levels win, key by key."""
        values: dict[str, Any] = {}
        for level in levels:
            values.update(level)
        return replace(Settings(), **values)

    @property
    def cap(self) -> int | None:
        """The longest delay Airflow waits before a retry: with backoff, ``max_retry_delay``
        and never more than ``max_task_retry_delay``; without, none (the delay is fixed)."""
        if self.backoff > 1:
            return min(self.max_delay or AIRFLOW_MAX_RETRY_DELAY, AIRFLOW_MAX_RETRY_DELAY)
        return None

    @property
    def first_delay(self) -> int:
        """The delay Airflow waits before the first retry: ``retry_delay``, or the cap when
        a backoff's cap is below it (Airflow caps every backed-off delay, below
        ``retry_delay`` too; Stratoflow's ``max_retry_delay`` is never below the
        ``retry_delay`` written, so the cap is written as the delay)."""
        cap = self.cap
        return self.delay if cap is None else min(self.delay, cap)


@dataclass
class Written:
    """What a workflow's ``defaults`` make of a task that sets nothing itself."""

    retries: int = 0
    delay: int = STRATOFLOW_RETRY_DELAY
    backoff: float = 1.0
    cap: int = STRATOFLOW_MAX_RETRY_DELAY
    timeout: int = 0
    defaults: dict[str, Any] = field(default_factory=dict)


def _capped_delay(settings: Settings) -> str:
    return (
        f"retry_delay: {settings.first_delay}s, the max_retry_delay Airflow caps every "
        f"backed-off retry at, below its retry_delay ({settings.delay}s); Stratoflow's "
        "max_retry_delay is never below the retry_delay written"
    )


def workflow_defaults(
    dag: Settings, dag_level: dict[str, Any], tasks: list[Settings], notes: Notes
) -> Written:
    """The workflow's ``defaults``: the DAG's settings, Airflow's defaults written out where
    they differ from Stratoflow's and matter (a task retries)."""
    written = Written()
    out = written.defaults
    if dag.retries:
        out["retries"] = written.retries = dag.retries
    if any(t.retries for t in tasks):
        out["retry_delay"] = f"{dag.first_delay}s"
        written.delay = dag.first_delay
        if dag.first_delay != dag.delay:
            notes.changed(_capped_delay(dag), field="defaults.retry_delay")
        elif "delay" not in dag_level:
            notes.changed(
                f"retry_delay: {AIRFLOW_RETRY_DELAY}s, Airflow's default "
                f"(default_task_retry_delay; Stratoflow's is {STRATOFLOW_RETRY_DELAY}s)",
                field="defaults.retry_delay",
            )
        if dag.backoff > 1:
            out["retry_backoff"] = written.backoff = dag.backoff
        cap = dag.cap
        if cap is not None:
            out["max_retry_delay"] = f"{cap}s"
            written.cap = cap
            if "max_delay" not in dag_level:
                notes.changed(
                    f"max_retry_delay: {cap}s, Airflow's cap on a backed-off retry delay "
                    f"(max_task_retry_delay; Stratoflow's is {STRATOFLOW_MAX_RETRY_DELAY}s)",
                    field="defaults.max_retry_delay",
                )
        elif dag.delay > STRATOFLOW_MAX_RETRY_DELAY:  # a fixed delay Airflow does not cap
            out["max_retry_delay"] = f"{dag.delay}s"
            written.cap = dag.delay
    if dag.timeout:
        out["timeout"] = f"{dag.timeout}s"
        written.timeout = dag.timeout
    if any(t.retries and t.backoff > 1 for t in tasks):
        notes.changed(
            "retry_exponential_backoff: the n-th retry waits retry_delay x backoff^(n-1) "
            "(capped); Airflow waits between that and twice that (a jitter hashed from the "
            "task instance)",
            field="defaults.retry_backoff",
        )
    return written


def task_settings(task: Settings, written: Written, notes: Notes, tid: str) -> dict[str, Any]:
    """The task's own settings: those in which it differs from what ``defaults`` give."""
    out: dict[str, Any] = {}
    if task.retries != written.retries:
        out["retries"] = task.retries
    if task.retries:
        if task.first_delay != written.delay:
            out["retry_delay"] = f"{task.first_delay}s"
            if task.first_delay != task.delay:
                notes.changed(_capped_delay(task), task=tid, field="retry_delay")
        if task.backoff != written.backoff:
            out["retry_backoff"] = task.backoff
        cap = task.cap
        if cap is not None and cap != written.cap:
            out["max_retry_delay"] = f"{cap}s"
        elif cap is None and written.cap < task.delay:  # a fixed delay Airflow does not cap
            out["max_retry_delay"] = f"{task.delay}s"
    if task.timeout != written.timeout:
        out["timeout"] = f"{task.timeout}s"  # 0s: none, where defaults have one
    rule = OLD_RULE_NAMES.get(task.rule, task.rule)
    if rule in RULES:
        if rule != TriggerRule.ALL_SUCCESS.value:
            out["trigger_rule"] = rule
    elif task.rule in (ONE_DONE, NONE_SKIPPED):
        pass  # its gates are made once its upstream tasks are known
    elif task.rule == "always":
        out["trigger_rule"] = TriggerRule.ALL_DONE.value
        notes.unmapped(
            "trigger rule 'always' is all_done: it runs whatever its upstream tasks did, but "
            "once they all ended, where Airflow's 'always' does not wait for them",
            task=tid,
        )
    elif task.rule == "all_skipped":
        notes.unmapped(
            "trigger rule 'all_skipped' has no equivalent: all_success, which runs it when its "
            "upstream tasks all succeeded (Airflow runs it only when they were all skipped, and "
            "skips it otherwise). No Stratoflow trigger rule, nor gate tasks built of them, "
            "runs a task because its upstream tasks were skipped: that needs a trigger rule of "
            "the engine's",
            task=tid,
        )
    else:
        notes.unmapped(f"trigger rule {task.rule!r} has no equivalent: all_success", task=tid)
    return out


# ------------------------------------------------------------------ keys read and keys left out
# DAG keys the import reads (the schedule's, the limits', the params; dagrun_timeout becomes
# the workflow's sla and fail_stop its on_failure: stop)
READ_DAG_KEYS = frozenset(
    {"tasks", "task_groups", "default_args", "description", "schedule", "schedule_interval",
     "timetable", "start_date", "end_date", "catchup", "timezone", "max_active_runs",
     "max_active_tasks", "concurrency", "params", "dag_id", "dagrun_timeout",
     "dagrun_timeout_sec", "fail_stop", "fail_fast"}
)  # fmt: skip
# default_args keys the import reads for every task (retries, delays, timeout, trigger rule,
# pool, priority) or for the DAG (its schedule's dates and zone, its params)
READ_ARG_KEYS = SETTING_KEYS | {
    "pool", "pool_slots", "priority_weight", "start_date", "end_date", "timezone", "params",
    "schedule",
}  # fmt: skip
# a key whose value is its default changes nothing where it is left out
_QUIET_VALUES: dict[str, Any] = {"render_template_as_native_obj": False}
_CALLBACKS = ("on_success_callback", "on_failure_callback", "on_retry_callback",
              "on_execute_callback", "on_skipped_callback", "sla_miss_callback")  # fmt: skip
_REASONS = {
    "tags": "UI labels have no equivalent",
    "owner": "an owner has no equivalent",
    "doc_md": "documentation has no equivalent (description has)",
    "user_defined_macros": "macros have no equivalent",
    "user_defined_filters": "filters have no equivalent",
    "access_control": "Airflow's roles have no equivalent (projects and their members are "
    "Stratoflow's)",
    "is_paused_upon_creation": "an imported workflow is applied paused or not by `apply`",
    "max_consecutive_failed_dag_runs": "no limit on failed runs in a row",
    "template_searchpath": "templates are not read from files",
    "jinja_environment_kwargs": "Stratoflow's template environment is fixed",
    "render_template_as_native_obj": "Stratoflow's templates render text",
    "catchup": "is a DAG argument, which Airflow does not read from default_args either",
    "email": "alerts notify instead (alerts: [{on: [failure], group: G}])",
    "email_on_failure": "alerts notify instead (alerts: [{on: [failure], group: G}])",
    "email_on_retry": "alerts notify instead (alerts: [{on: [retry], group: G}])",
    "weight_rule": "a Stratoflow task's priority is its own (plus its workflow's), never "
    "summed over its downstream or upstream tasks",
    "depends_on_past": "a task does not wait for its previous run's",
    "sla": "Airflow's task sla counts from the interval's end, Stratoflow's from the run's "
    "start: set a task's sla by hand",
}


def why_left_out(key: str) -> str | None:
    """Why a key has no equivalent, when there is more to say than that."""
    if key in _REASONS:
        return _REASONS[key]
    if key.startswith(_CALLBACKS):
        return "callbacks have no equivalent: alerts notify instead (alerts: [{on: [...], group}])"
    return None


def left_out(
    notes: Notes,
    values: dict[str, Any],
    read: frozenset[str] | set[str],
    prefix: str = "",
    field_prefix: str = "",
) -> None:
    """Note every key of ``values`` that is not ``read`` and sets something."""
    for key, value in values.items():
        if key in read or value is None or value in ("", [], {}):
            continue
        if key in _QUIET_VALUES and value == _QUIET_VALUES[key]:
            continue
        reason = why_left_out(key)
        notes.unmapped(
            f"{prefix}{key} is not mapped{f': {reason}' if reason else ''}",
            field=f"{field_prefix}{key}",
        )
