"""dag-factory YAML (Airflow 2 and Airflow 3 forms) as format-v1 workflows.

A file maps DAG ids to DAG configurations; its ``default`` block, and a ``defaults.yml`` (or
``defaults.yaml``) beside it, give values every DAG inherits (the DAG's own win, then the
file's ``default``, then ``defaults.yml``; ``default_args`` are merged key by key).

Task groups are flattened: a task in group ``g`` (itself in ``parent``) is named
``parent__g__task``. A group's ``dependencies`` become dependencies of the group's first tasks
(those with no upstream inside the group); a dependency *on* a group means its leaves when
dag-factory sets it (those no task of the group depends on then), as Airflow reads it.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stratoflow.errors import InvalidInput, Problem
from stratoflow.importers._build import (
    Unmapped,
    can_end_upstream_failed,
    clamped_priority,
    gate_none_skipped,
    gate_one_done,
    pools_to_create,
    unmapped_task,
)
from stratoflow.importers._cron import Converted, airflow_schedule, interval_before
from stratoflow.importers._dagfactory_args import (
    NONE_SKIPPED,
    ONE_DONE,
    READ_ARG_KEYS,
    READ_DAG_KEYS,
    SETTING_KEYS,
    Settings,
    Where,
    left_out,
    read_level,
    seconds,
    task_settings,
    why_left_out,
    workflow_defaults,
)
from stratoflow.importers._dolphinscheduler import number
from stratoflow.importers._names import output_ref, param_ref, task_id, unique, workflow_name
from stratoflow.importers._pydolphin import read_include
from stratoflow.importers._report import ImportedWorkflow, Notes
from stratoflow.importers._sizes import least_text
from stratoflow.importers._timeexpr import AirflowDates, escape_literal, rewrite_airflow
from stratoflow.model import CATCHUP_MAX_ACTIVE_RUNS, MAX_DOCUMENT_BYTES, parse_schedule
from stratoflow.model._dag import _walk_strings
from stratoflow.model._loader import load_yaml
from stratoflow.model._workflow import MAX_POOL_SLOTS
from stratoflow.templating import (
    TemplateError,
    referenced_tasks,
    undefined_names,
    variable_references,
)

GROUP_SEPARATOR = "__"


def is_dag_factory(data: Any) -> bool:
    return isinstance(data, dict) and any(
        isinstance(v, dict) and "tasks" in v for k, v in data.items() if k != "default"
    )


def _merge(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    """dag-factory's precedence: ``high`` wins; ``default_args`` merge key by key, and tasks
    merge by task id (a DAG may override one field of a task its ``default`` block defines)."""
    out = dict(low)
    for key, value in high.items():
        if key == "default_args" and isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value}
        elif key == "tasks" and key in out:
            tasks = {str(t.get("task_id")): dict(t) for t in _task_list(out[key])}
            for task in _task_list(value):
                name = str(task.get("task_id"))
                tasks[name] = {**tasks.get(name, {}), **task}
            out[key] = list(tasks.values())
        else:
            out[key] = value
    return out


def defaults_beside(path: Path) -> dict[str, Any]:
    """The ``defaults.yml`` (or ``defaults.yaml``) beside ``path``, which dag-factory merges
    into every DAG of the folder; {} when there is none. One that does not load is refused,
    naming it and why: dag-factory loads none of the DAGs beside it then."""
    for name in ("defaults.yml", "defaults.yaml"):
        candidate = path.parent / name
        if candidate.is_file() and candidate.resolve() != path.resolve():
            return _defaults_file(candidate, path)
    return {}


def _defaults_file(path: Path, dags: Path) -> dict[str, Any]:
    why = f"dag-factory loads none of the DAGs beside it, {dags.name}'s among them, until it loads"

    def refused(message: str, line: int | None = None) -> InvalidInput:
        return InvalidInput([Problem("defaults", f"{message} ({why})", line)], source=str(path))

    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise refused(f"cannot read it: {exc.strerror}") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise refused(f"over {MAX_DOCUMENT_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise refused(f"not UTF-8 (byte {exc.start})") from None
    try:
        data = load_yaml(text, source=str(path))[0]
    except InvalidInput as exc:
        first = exc.problems[0]
        raise refused(first.message, first.line) from None
    if not isinstance(data, dict):
        raise refused(f"it is not a mapping of settings but {type(data).__name__}")
    return data


def read_dag_factory(data: dict[str, Any], path: Path, mode: Unmapped) -> list[ImportedWorkflow]:
    """The DAGs of a dag-factory file. Raises :class:`InvalidInput` for what dag-factory
    refuses to load: a ``defaults.yml`` beside it that does not load, a dependency on a task
    or group the DAG does not have."""
    base = _merge(defaults_beside(path), data.get("default") or {})
    out = []
    taken: set[str] = set()
    scripts = _Scripts()  # what every DAG's bash_command scripts read, in all
    for dag_id, config in data.items():
        if dag_id == "default" or not isinstance(config, dict) or "tasks" not in config:
            continue
        try:
            out.append(_dag(str(dag_id), _merge(base, config), mode, taken, path.parent, scripts))
        except InvalidInput as exc:
            raise InvalidInput(exc.problems, source=str(path)) from None
    return out


# the import paths of Airflow 3's Task SDK, which Airflow 2 does not have; and those of
# Airflow 2 that Airflow 3 moved (to airflow.sdk and the standard provider)
_AIRFLOW3_PATHS = ("airflow.sdk.",)
_AIRFLOW2_PATHS = ("airflow.operators.", "airflow.sensors.", "airflow.decorators.")


def _airflow_major(config: dict[str, Any]) -> tuple[int, str]:
    """The Airflow major version a DAG is written for, and why it is taken to be: Airflow 2
    for ``schedule_interval`` (Airflow 3 has none); Airflow 3 for an operator or decorator of
    ``airflow.sdk`` (Airflow 2 has none); Airflow 2 for one of Airflow 2's own paths
    (``airflow.operators``, ``airflow.sensors``, ``airflow.decorators``; Airflow 3 keeps
    them only as deprecated aliases); otherwise Airflow 3."""
    paths = [
        (kind, str(t[kind]))
        for t in _task_list(config.get("tasks"))
        for kind in ("operator", "decorator")
        if t.get(kind)
    ]
    new = next(((k, p) for k, p in paths if p.startswith(_AIRFLOW3_PATHS)), None)
    old = next(((k, p) for k, p in paths if p.startswith(_AIRFLOW2_PATHS)), None)
    if "schedule_interval" in config:
        also = f"; its {new[0]} {new[1]!r} is Airflow 3's" if new else ""
        return 2, f"it sets schedule_interval, which Airflow 3 does not have{also}"
    if new:
        return 3, f"its {new[0]} {new[1]!r} is of Airflow 3's Task SDK"
    if old:
        return 2, f"its {old[0]} {old[1]!r} is Airflow 2's path"
    return 3, (
        "no Airflow 2 name in it (schedule_interval, airflow.operators, airflow.sensors, "
        "airflow.decorators)"
    )


def _wall_time(text: str) -> tuple[str, str | None]:
    """``text`` without its UTC offset, and the offset (None if it had none, or is not a
    date and time): dag-factory replaces a start_date's zone with the DAG's."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return text, None
    if when.tzinfo is None:
        return text, None
    return when.replace(tzinfo=None).isoformat(), when.strftime("%z") or None


# dag-factory's custom objects (``__type__``) that build a date or a date and time, and the
# fields it keeps of them (get_datetime replaces the zone by the DAG's)
_DATE_TYPES = frozenset({"datetime.datetime", "datetime.date", "pendulum.datetime",
                         "pendulum.DateTime", "pendulum.date", "pendulum.Date"})  # fmt: skip
_DATE_FIELDS = ("year", "month", "day", "hour", "minute", "second", "microsecond")


def _date_object(value: Any, key: str, tz: str, notes: Notes) -> Any:
    """A start_date or end_date written as dag-factory's ``{__type__: datetime.datetime,
    year: ..., ...}`` (or ``datetime.date``, ``pendulum.datetime``; keyword fields or
    ``__args__``) as the datetime it builds; ``value`` as it is when it is no such object,
    or one that cannot be built."""
    if not isinstance(value, dict) or str(value.get("__type__", "")) not in _DATE_TYPES:
        return value
    positional = value.get("__args__") or []
    fields = {k: value[k] for k in _DATE_FIELDS if k in value}
    if not isinstance(positional, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in [*positional, *fields.values()]
    ):
        return value
    try:
        when = datetime(*positional, **fields)
    except (TypeError, ValueError, OverflowError):
        return value
    if any(k in value for k in ("tz", "tzinfo")):
        notes.changed(f"{key}'s zone is dropped: dag-factory reads it in the DAG's time zone, "
                      f"{tz}", field="schedule")  # fmt: skip
    return when


def _later(text: str, shift: tuple[int, int]) -> str:
    """``text`` (an ISO date and time) one Airflow 2 interval later: ``shift`` is the
    interval back from a fire time to its logical date (``interval_before``). Text that is
    not a date and time is left for validation to refuse, naming it."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return text
    return (when - timedelta(days=shift[0], minutes=shift[1])).isoformat()


def _interval_end(cron: str, tz: str, text: str, *, last: bool) -> str:
    """For an Airflow 2 cron whose intervals differ in length: the end (fire time, as wall
    time in ``tz``) of the first interval starting at or after ``text`` (start_date), or with
    ``last`` of the last one starting at or before it (end_date), as Airflow 2's
    CronDataIntervalTimetable runs them. ``text`` as it is when there is none, or it is not a
    date and time (validation names it)."""
    try:
        zone = ZoneInfo(tz)
        when = datetime.fromisoformat(text).replace(tzinfo=zone)
        expression = parse_schedule(cron)
        if last:
            begin = expression.previous_at_or_before(when, tz)
        else:
            begin = expression.next_after(when - timedelta(microseconds=1), tz)
        if begin is None:
            return text
        fire = expression.next_after(begin, tz)
    except (ValueError, ZoneInfoNotFoundError):  # ScheduleError is a ValueError
        return text
    return fire.astimezone(zone).replace(tzinfo=None).isoformat()


def _check_groups(
    dag_id: str, groups: dict[str, dict[str, Any]], raw_tasks: list[dict[str, Any]]
) -> None:
    """Refuse what dag-factory refuses: a group's parent_group_name that is no group of the
    DAG, groups that are each other's parents, and a task's task_group_name that is no group
    (once the DAG has groups: without any, dag-factory ignores task_group_name)."""

    def refuse(where: str, message: str) -> InvalidInput:
        return InvalidInput([Problem(f"{dag_id}.{where}", f"DAG {dag_id!r}: {message}")])

    for name, conf in groups.items():
        seen = [name]
        parent = conf.get("parent_group_name")
        while parent is not None:
            if str(parent) not in groups:
                raise refuse(
                    f"task_groups.{name}.parent_group_name",
                    f"task group {seen[-1]!r} is in {str(parent)!r}, which is no task group of "
                    "the DAG (dag-factory refuses the DAG)",
                )
            if str(parent) in seen:
                raise refuse(
                    f"task_groups.{name}.parent_group_name",
                    f"task groups {' -> '.join([*seen, str(parent)])} are each other's parents "
                    "(dag-factory refuses the DAG)",
                )
            seen.append(str(parent))
            parent = groups[str(parent)].get("parent_group_name")
    if not groups:
        return
    for raw in raw_tasks:
        group = raw.get("task_group_name")
        if group and str(group) not in groups:
            raise refuse(
                f"tasks.{raw.get('task_id')}.task_group_name",
                f"task {raw.get('task_id')!r} is in {str(group)!r}, which is no task group of "
                "the DAG (dag-factory refuses the DAG)",
            )


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _task_list(tasks: Any) -> list[dict[str, Any]]:
    if isinstance(tasks, dict):
        return [
            {"task_id": k, **(v or {})}
            for k, v in tasks.items()
            if isinstance(v, dict) or v is None
        ]
    return [t for t in tasks or [] if isinstance(t, dict)]


def _groups(groups: Any) -> dict[str, dict[str, Any]]:
    if isinstance(groups, dict):
        return {str(k): dict(v or {}) for k, v in groups.items()}
    return {
        str(g["group_name"]): g for g in groups or [] if isinstance(g, dict) and "group_name" in g
    }


def _dag(
    dag_id: str,
    config: dict[str, Any],
    mode: Unmapped,
    taken: set[str],
    folder: Path | None = None,
    scripts: _Scripts | None = None,
) -> ImportedWorkflow:
    name = unique(workflow_name(dag_id), taken)
    notes = Notes(workflow=name)
    if name != dag_id:
        notes.changed(f"DAG {dag_id!r} is named {name!r} (Stratoflow names: a-z 0-9 _ -)")
    doc: dict[str, Any] = {"name": name}
    args = dict(config.get("default_args") or {})
    if config.get("description"):
        doc["description"] = str(config["description"])
    major, why = _airflow_major(config)
    airflow2 = major == 2
    # dag-factory reads a DAG's start_date in the DAG's timezone and default_args' in
    # default_args.timezone (UTC by default), and Airflow schedules a DAG in the zone of
    # the start_date it uses
    if "start_date" in config:
        tz = str(config.get("timezone") or "UTC")
        unread_zone = ""
    else:
        tz = str(args.get("timezone") or "UTC")
        # a DAG-level zone no start_date is read in: not the schedule's
        unread_zone = str(config.get("timezone") or "")
    schedule_value = config.get("timetable") or config.get(
        "schedule", config.get("schedule_interval", args.get("schedule"))
    )
    if isinstance(schedule_value, dict) and schedule_value.get("timezone"):
        tz = str(schedule_value["timezone"])
        unread_zone = ""  # the timetable's own zone
    converted = airflow_schedule(schedule_value)
    dates = AirflowDates(tz="UTC", no_neighbours=_no_neighbours(major, converted, schedule_value))
    if dates.no_neighbours == "":  # Airflow 2 without a schedule: every run is by hand
        dates = AirflowDates(tz="UTC", neighbours="same")
    if converted.problem:
        notes.unmapped(f"schedule: {converted.problem}", field="schedule")
    if converted.remark:
        notes.changed(converted.remark, field="schedule")
    if converted.cron:
        schedule: dict[str, Any] = {"cron": converted.cron, "timezone": tz}
        if unread_zone and unread_zone != tz:
            notes.changed(
                f"timezone {unread_zone} is not the schedule's, {tz}: dag-factory reads it for "
                "the DAG's own start_date and end_date only, and Airflow schedules a DAG in "
                "the zone of its start_date, here "
                + ("default_args', read in default_args.timezone" if "start_date" in args
                   else "none: Airflow's default_timezone, UTC unless configured"),
                field="timezone",
            )  # fmt: skip
        start = config.get("start_date", args.get("start_date"))
        end = config.get("end_date", args.get("end_date"))
        shift = interval_before(converted.cron, tz) if airflow2 else None
        for key, written in (("start", start), ("end", end)):
            if written is None:
                continue
            value = _date_object(written, f"{key}_date", tz, notes)
            text = str(value).replace(" ", "T", 1)
            if isinstance(value, dict):
                notes.unmapped(f"{key}_date {value!r} is not a date the import can read: "
                               "left out", field="schedule")  # fmt: skip
            elif text[:4].isdigit():
                text = text if "T" in text else text + "T00:00:00"
                text, offset = _wall_time(text)
                if offset:
                    notes.changed(f"{key}_date's offset {offset} is dropped: dag-factory reads "
                                  f"it in the DAG's time zone, {tz}", field="schedule")  # fmt: skip
                # Airflow 2 runs the interval that starts at start_date once it ends: the
                # fire time one interval later, whose ds is start_date (and so for end_date)
                if shift:
                    schedule[key] = _later(text, shift)
                elif airflow2:
                    schedule[key] = _interval_end(converted.cron, tz, text, last=key == "end")
                else:
                    schedule[key] = text
                if schedule[key] != text:
                    notes.changed(f"{key}_date {text} is the schedule's {key} "
                                  f"{schedule[key]}: Airflow 2 runs the interval that starts "
                                  "then when it ends", field="schedule")  # fmt: skip
            else:
                notes.unmapped(  # the value as written, not as rewritten above
                    f"{key}_date {str(value)!r} (relative) has no equivalent", field="schedule"
                )
        notes.changed(
            f"Airflow {major} assumed: {why}. "
            + (
                "A run's ds is the start of the interval before its fire time, and catchup "
                "defaults to true"
                if airflow2
                else "A run's ds is its fire time's date, and catchup defaults to false"
            ),
            field="schedule",
        )
        if "catchup" in config:
            schedule["catchup"] = bool(config["catchup"])
        elif airflow2:  # Airflow 2's catchup_by_default is True (Airflow 3's is False)
            schedule["catchup"] = True
            notes.changed("catchup: true, Airflow 2's default", field="schedule")
        doc["schedule"] = schedule
        if airflow2:
            if shift:
                dates = AirflowDates(tz=tz, days=shift[0], minutes=shift[1], neighbours="interval")
                notes.changed("Airflow 2 dates: ds and the other date macros read the start of "
                              "the interval before the fire time, as Airflow 2 does", field="schedule")  # fmt: skip
            else:
                notes.unmapped("Airflow 2 data intervals: this schedule's interval is not a fixed "
                               "length; date macros read the fire time", field="schedule")  # fmt: skip
    doc["max_active_runs"] = _max_active_runs(config.get("max_active_runs"), notes)
    for key in ("max_active_tasks", "concurrency"):
        if isinstance(config.get(key), int) and config[key] > 0:
            doc["concurrency"] = config[key]
    _run_limits(config, doc, notes)
    # Airflow merges default_args' params over the DAG's
    params = _params({**_mapping(config.get("params")), **_mapping(args.get("params"))})
    left_out(notes, config, READ_DAG_KEYS)
    dag_level = read_level(args, Where("default_args.", dag=True), notes)

    groups = _groups(config.get("task_groups"))
    raw_tasks = _task_list(config.get("tasks"))
    _check_groups(dag_id, groups, raw_tasks)

    def group_path(group: str | None) -> list[str]:
        path: list[str] = []
        while group and group in groups and group not in path:
            path.insert(0, group)
            group = groups[group].get("parent_group_name")
        return path

    group_levels = {
        g: read_level(
            _mapping(conf.get("default_args")), Where(f"task group {g!r}: default_args."), notes
        )
        for g, conf in groups.items()
    }
    ids: dict[str, str] = {}
    members: dict[str, list[str]] = {g: [] for g in groups}
    task_taken: set[str] = set()
    # each task's retries, delays, timeout and trigger rule: the DAG's default_args, then its
    # groups' (outer to inner), then its own, as Airflow merges them
    settings: dict[str, Settings] = {}
    for raw in raw_tasks:
        original = str(raw.get("task_id"))
        path = group_path(raw.get("task_group_name"))
        tid = ids[original] = unique(task_id(GROUP_SEPARATOR.join([*path, original])), task_taken)
        if tid != original:
            # Airflow's id of a grouped task is prefixed with its groups' ids (those that
            # prefix their tasks')
            prefixes = [g for g in path if groups[g].get("prefix_group_id", True) is not False]
            airflow_id = ".".join([*prefixes, original])
            notes.changed(
                f"task {airflow_id!r} is named {tid!r} (Stratoflow task ids: letters, digits, "
                f"_ and -; a task group's tasks are prefixed with its path and "
                f"{GROUP_SEPARATOR!r}; a name taken already gets _2, _3...)",
                task=tid,
            )
        for g in path:
            members[g].append(ids[original])
        own = read_level(raw, Where("", task=tid), notes)
        settings[tid] = Settings.merged(dag_level, *(group_levels[g] for g in path), own)
    written = workflow_defaults(
        Settings.merged(dag_level), dag_level, list(settings.values()), notes
    )
    if written.defaults:
        doc["defaults"] = written.defaults

    # the tasks ti.xcom_pull(task_ids='<id>') can name: those outside a group (a grouped
    # task's Airflow id is prefixed with its group's)
    outputs = {
        str(raw.get("task_id")): ids[str(raw.get("task_id"))]
        for raw in raw_tasks
        if not raw.get("task_group_name")
    }
    tasks: dict[str, dict[str, Any]] = {}
    renamed: set[str] = set()  # pool names already reported as renamed
    deferred: list[tuple[str, str, str, dict[str, Any]]] = []
    # the keys of default_args (the DAG's, each group's) some task's operator reads
    used_args: set[str] = set()
    used_group_args: dict[str, set[str]] = {g: set() for g in groups}
    budget = _Budget(scripts=scripts or _Scripts())  # the text of the tasks kept so far
    skipped_by_99: list[str] = []  # BashOperator tasks exit code 99 skips, by default
    for raw in raw_tasks:
        tid = ids[str(raw.get("task_id"))]
        group_args: dict[str, Any] = {}
        for g in group_path(raw.get("task_group_name")):
            group_args.update(_mapping(groups[g].get("default_args")))
        merged = {**args, **group_args, **raw}
        body, reason, reads, used = _operator(
            merged, set(raw), budget, tid, notes, dates, params, outputs, ids, folder
        )
        used_args |= used
        for g in group_path(raw.get("task_group_name")):
            used_group_args[g] |= used
        # a task reading another's return value runs after it, as in Airflow (set as the
        # task is made: its dependencies are set once every task is)
        body["depends_on"] = list(dict.fromkeys(reads))
        body.update(task_settings(settings[tid], written, notes, tid))
        _pool_settings(merged, tid, body, notes, renamed)
        tasks[tid] = body
        if reason:
            kind = raw.get("operator") or raw.get("decorator")
            deferred.append((tid, str(kind), reason, raw))
        elif _default_skip(merged):
            skipped_by_99.append(tid)
    # dag-factory sets the dependencies once every task is made, in the order of the tasks,
    # then of the groups; a dependency on a group is one on its leaves at that moment
    for raw in raw_tasks:
        tid = ids[str(raw.get("task_id"))]
        where = f"tasks.{raw.get('task_id')}"
        what = f"task {raw.get('task_id')!r}"
        deps = _depends(raw.get("dependencies"), dag_id, where, what, ids, members, tasks)
        tasks[tid]["depends_on"] = list(dict.fromkeys(deps + tasks[tid]["depends_on"]))
    for body in tasks.values():
        if not body["depends_on"]:
            del body["depends_on"]
    for group, conf in groups.items():
        where, what = f"task_groups.{group}", f"task group {group!r}"
        deps = _depends(conf.get("dependencies"), dag_id, where, what, ids, members, tasks)
        inside = set(members[group])
        for member in members[group]:
            if not any(d in inside for d in tasks[member].get("depends_on", [])):
                merged = tasks[member].get("depends_on", []) + [d for d in deps if d not in inside]
                if merged:
                    tasks[member]["depends_on"] = list(dict.fromkeys(merged))
        left_out(
            notes,
            _mapping(conf.get("default_args")),
            READ_ARG_KEYS | used_group_args[group],
            prefix=f"task group {group!r}: default_args.",
            field_prefix=f"task_groups.{group}.default_args.",
        )
        for key in ("group_name", "tooltip", "prefix_group_id", "ui_color", "ui_fgcolor",
                    "parent_group_name", "dependencies", "default_args"):  # fmt: skip
            conf.pop(key, None)
        if conf:
            notes.unmapped(f"task group {group!r}: {', '.join(map(str, conf))} not mapped")
    # a default_args key no task's operator reads, and not read for every task, is left out
    left_out(notes, args, READ_ARG_KEYS | used_args, "default_args.", "default_args.")
    for tid, operator, reason, raw in deferred:
        unmapped_task(tasks, tid, operator.rsplit(".", 1)[-1], tid, reason, raw, mode, notes)
    for tid, task_settings_ in settings.items():
        ups = tasks.get(tid, {}).get("depends_on", [])
        if task_settings_.rule == ONE_DONE and ups:
            failed = gate_one_done(tasks, tid, ups)
            notes.changed(
                f"trigger rule one_done: one_success over its upstream tasks {', '.join(ups)} "
                f"and {failed} (one_failed over them), as Stratoflow has no single rule for "
                "it: it runs as soon as one of them succeeded or failed, is skipped when none "
                "did",
                task=tid,
            )
            maybe = [u for u in ups if can_end_upstream_failed(tasks.get(u, {}))]
            if maybe:
                notes.unmapped(
                    f"trigger rule one_done: upstream {'task' if len(maybe) == 1 else 'tasks'} "
                    f"{', '.join(maybe)} can end upstream_failed, which Stratoflow's one_failed "
                    "counts as failed and Airflow's one_done does not: when none of its "
                    "upstream tasks succeeded or failed and one ended upstream_failed, this "
                    "task runs where Airflow skips it",
                    task=tid,
                )
        elif task_settings_.rule == NONE_SKIPPED and ups:
            made = gate_none_skipped(tasks, tid, ups)
            notes.changed(
                f"trigger rule none_skipped: waits on {len(made)} gate tasks ({', '.join(made)}),"
                " two per upstream task (one_failed over it, then one_success over it and that "
                "gate), as Stratoflow has no single rule for it: it runs when its upstream "
                f"tasks {', '.join(ups)} all ended, whether they succeeded or failed, and is "
                "skipped as soon as one was skipped",
                task=tid,
            )
    _run_state_note(tasks, {t: s.rule for t, s in settings.items()}, notes)
    if mode == "report" and budget.spent <= MAX_DOCUMENT_BYTES:
        # a task reading the outputs of a task left out cannot validate (a workflow too big
        # to write is not: importers._validated says so)
        originals = {ids[str(raw.get("task_id"))]: raw for raw in raw_tasks}
        _leave_out_readers(tasks, {t for t, _, _, _ in deferred}, originals, notes)
    if budget.unknown_callables:
        named = ", ".join(budget.unknown_callables[:10])
        if len(budget.unknown_callables) > 10:
            named += f" and {len(budget.unknown_callables) - 10} more"
        notes.changed(
            f"python tasks {named}: the callable's source is not under the DAG file's folder, "
            "so the import cannot see its parameters. Airflow passes its context to a callable "
            "by parameter name (ds, run_id, ti, ...): one that names a context value gets it "
            'only as a task param (params: {ds: "{{ ds }}"}); ti, dag_run and the other '
            "Airflow objects have no equivalent"
        )
    if skipped_by_99:
        named = ", ".join(skipped_by_99[:10])
        if len(skipped_by_99) > 10:
            named += f" and {len(skipped_by_99) - 10} more"
        notes.changed(
            f"exit code 99 skips BashOperator tasks in Airflow (skip_on_exit_code's default): "
            f"{named}; the format has no skip on an exit code (the engine would need one), so "
            "if one of their commands exits 99 the task fails (none exits 99 itself)"
        )
    if params:
        doc["params"] = params
    doc["tasks"] = tasks
    pools: dict[str, list[str]] = {}
    for tid, body in tasks.items():
        if body.get("pool"):
            pools.setdefault(body["pool"], []).append(tid)
    pools_to_create(pools, None, "N = the Airflow pool's slots", notes)
    return ImportedWorkflow(name, dag_id, doc if tasks else None, tuple(notes.items))


# Airflow's trigger rules under which a task runs after one of its upstream tasks failed
_RUNS_AFTER_FAILURE = frozenset(
    {"all_done", "always", "one_failed", "all_failed", "one_done", "one_success", "none_skipped"}
)


def _run_state_note(tasks: dict[str, dict[str, Any]], rules: dict[str, str], notes: Notes) -> None:
    """Airflow sets a run's state from its leaf tasks alone (failed when one of them failed
    or could not run for a failure, else succeeded), Stratoflow fails a run in which any
    task failed. They differ only where a failure need not reach a leaf: a task whose
    trigger rule runs it after an upstream task failed. Said then."""
    after = [
        f"{tid} ({rule})"
        for tid, rule in rules.items()
        if rule in _RUNS_AFTER_FAILURE and tasks.get(tid, {}).get("depends_on")
    ]
    if not after:
        return
    upstream = {d for body in tasks.values() for d in body.get("depends_on", [])}
    leaves = [t for t in tasks if t not in upstream]
    shown = ", ".join(leaves[:10]) + (f" and {len(leaves) - 10} more" if len(leaves) > 10 else "")
    notes.changed(
        f"{', '.join(after[:10])}{' and more' if len(after) > 10 else ''} run after an upstream "
        f"task failed, and Airflow sets a run's state from its leaf tasks {shown} alone: a run "
        "where a task failed but no leaf failed is a success there. Stratoflow fails a run in "
        "which any task failed: its failure alerts fire, a backfill lane stops, a parent "
        "workflow's task fails, where Airflow's run succeeded"
    )


def _no_neighbours(major: int, converted: Converted, schedule: Any) -> str:
    """Why Airflow's next_ds, prev_ds (and the rest of ``NEIGHBOUR_NAMES``, ``{name}`` in the
    text) have no equivalent for this DAG; "" when they do without a schedule (Airflow 2
    gives a run triggered by hand its own ds as both). A fixed interval's are set apart."""
    if major != 2:
        return (
            "Airflow 3 has no {name} (removed in Airflow 3.0: rendering it fails the task there "
            "too); shift the run's date with {{{{ logical_date | shift_date(fmt, tz, days=N) }}}}"
        )
    if converted.cron is not None:
        return (
            "this schedule's intervals are not of one length, so {name} (the next or previous "
            "interval's) is no fixed shift of the run's date: write it with shift_date by hand"
        )
    if isinstance(schedule, str) and schedule.strip().lower() == "@once":
        return "with @once there is no other interval: Airflow 2 renders {name} as None"
    if converted.problem:
        return "this DAG's schedule has no equivalent, and so neither has {name}"
    return ""


def _leave_out_readers(
    tasks: dict[str, dict[str, Any]],
    gone: set[str],
    originals: dict[str, dict[str, Any]],
    notes: Notes,
) -> None:
    """Leave out, too, every task whose templates read outputs of a task left out (and then
    the tasks reading those): validation refuses a read of a task that is not there."""
    while True:
        readers = {
            tid: sorted(found & gone)
            for tid, body in tasks.items()
            for found in [{t for _, text in _walk_strings(body, "") for t in _reads(text)}]
            if found & gone
        }
        if not readers:
            return
        for tid, read in readers.items():
            original = originals.get(tid, {})
            kind = str(original.get("operator") or tasks[tid].get("type"))  # a @task: python
            unmapped_task(
                tasks, tid, kind.rsplit(".", 1)[-1], tid,
                f"it reads outputs of {', '.join(map(repr, read))}, left out", original,
                "report", notes,
            )  # fmt: skip
            gone.add(tid)


def _reads(text: str) -> set[str]:
    with contextlib.suppress(TemplateError):  # a syntax error: validation reports it
        return referenced_tasks(text)
    return set()


def _run_limits(config: dict[str, Any], doc: dict[str, Any], notes: Notes) -> None:
    """dagrun_timeout as the workflow's sla (which alerts, where Airflow fails the run), and
    fail_stop (Airflow 3: fail_fast) as on_failure: stop."""
    key = next((k for k in ("dagrun_timeout_sec", "dagrun_timeout") if config.get(k)), None)
    if key is not None:
        timeout = seconds(config[key])
        if timeout:
            doc["sla"] = f"{timeout}s"
            notes.unmapped(
                f"{key} {timeout}s is the workflow's sla: a run unfinished that long after it "
                "started raises sla_miss (alerts: [{on: [sla_miss], group: G}] to hear of "
                "it), but Stratoflow does not fail the run or stop its tasks then, as "
                "Airflow's dagrun_timeout does: stop such a run by hand",
                field=key,
            )
        else:
            notes.unmapped(f"{key} {config[key]!r} is not a duration: left out", field=key)
    stop = next((k for k in ("fail_stop", "fail_fast") if config.get(k)), None)
    if stop is not None:
        doc["on_failure"] = "stop"
        notes.changed(
            f"{stop}: on_failure: stop: a failed task stops the run (its running tasks end "
            "stopped, where Airflow marks them failed)",
            field=stop,
        )


# Airflow's [core] max_active_runs_per_dag default, the one a workflow that catches up gets
AIRFLOW_MAX_ACTIVE_RUNS = CATCHUP_MAX_ACTIVE_RUNS


def _max_active_runs(value: Any, notes: Notes) -> int:
    """The DAG's ``max_active_runs``, else Airflow's default cap, written out: a workflow
    that catches up gets it anyway (``Workflow.effective_max_active_runs``), but one that
    does not would have no cap, where Airflow applies it to every DAG."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if value is None:
        notes.changed(
            f"max_active_runs: {AIRFLOW_MAX_ACTIVE_RUNS}, Airflow's default "
            "(max_active_runs_per_dag)",
            field="max_active_runs",
        )
    else:
        notes.unmapped(
            f"max_active_runs {value!r} is not a positive integer: "
            f"{AIRFLOW_MAX_ACTIVE_RUNS}, Airflow's default (max_active_runs_per_dag)",
            field="max_active_runs",
        )
    return AIRFLOW_MAX_ACTIVE_RUNS


def _pool_settings(
    conf: dict[str, Any], tid: str, body: dict[str, Any], notes: Notes, renamed: set[str]
) -> None:
    """Airflow's ``pool``, ``pool_slots`` and ``priority_weight`` (the task's own, or from
    ``default_args`` or its task group's)."""
    pool = conf.get("pool")
    if pool and str(pool) == "default_pool":
        if "default_pool" not in renamed:
            renamed.add("default_pool")
            notes.changed("pool 'default_pool' (Airflow's implicit pool) is no pool: not set")
    elif pool:
        name = workflow_name(str(pool))
        body["pool"] = name
        if name != pool and str(pool) not in renamed:
            renamed.add(str(pool))
            notes.changed(f"pool {pool!r} is named {name!r} (Stratoflow names: a-z 0-9 _ -)")
    slots = conf.get("pool_slots")
    if slots is not None and body.get("pool"):
        wanted = number(slots, 1)
        body["pool_slots"] = int(max(1, min(MAX_POOL_SLOTS, wanted)))
        if body["pool_slots"] != wanted:
            notes.changed(
                f"pool_slots {slots!r}: {body['pool_slots']} (1..{MAX_POOL_SLOTS})", task=tid
            )
        if body["pool_slots"] == 1:
            del body["pool_slots"]
    elif slots not in (None, 1):
        notes.unmapped(f"pool_slots {slots!r} without a pool: not mapped", task=tid)
    weight = conf.get("priority_weight")
    if weight is not None and not isinstance(weight, bool):
        priority = clamped_priority(number(weight), "priority_weight", notes, tid)
        if priority:
            body["priority"] = priority


def _depends(
    written: Any,
    dag_id: str,
    where: str,
    what: str,
    ids: dict[str, str],
    members: dict[str, list[str]],
    tasks: dict[str, dict[str, Any]],
) -> list[str]:
    """A task's or group's ``dependencies``: the tasks it waits for, given the dependencies
    of ``tasks`` so far. A name that is no task or group of the DAG is refused, as
    dag-factory refuses it (its lookup fails)."""
    if written is None:
        return []
    if not isinstance(written, list):
        raise InvalidInput(
            [Problem(f"{dag_id}.{where}.dependencies", f"DAG {dag_id!r}: {what}'s dependencies "
                     f"{written!r} are not a list of task and group names")]
        )  # fmt: skip
    out: list[str] = []
    for dep in written:
        name = str(dep)
        if name not in ids and name not in members:
            raise InvalidInput(
                [Problem(f"{dag_id}.{where}.dependencies", f"DAG {dag_id!r}: {what} depends on "
                         f"{name!r}, which is no task or task group of the DAG (dag-factory "
                         "refuses the DAG)")]
            )  # fmt: skip
        out += _resolve(name, ids, members, tasks)
    return out


def _resolve(
    name: str, ids: dict[str, str], members: dict[str, list[str]], tasks: dict[str, dict[str, Any]]
) -> list[str]:
    """A dependency name: a task's id, or a group's leaves, as Airflow's ``TaskGroup.leaves``
    reads them when the dependency is set: its tasks no task of the group depends on so far
    (a group's cleanup task with trigger_rule all_done, when it is the last, is its only
    leaf: the tasks after the group run whether the work failed or not)."""
    if name in ids:
        return [ids[name]]
    upstream = {d for t in members.get(name, []) for d in tasks[t].get("depends_on", [])}
    return [t for t in members.get(name, []) if t not in upstream]


def _http_data(
    body: dict[str, Any], data: Any, text: Callable[[Any], str], notes: Notes, tid: str
) -> None:
    """HttpOperator's ``data`` as its HttpHook hands it to requests: a GET's in the query
    string, a HEAD's nowhere, another method's in the body; a mapping form-encoded there
    (requests' urlencode, ``doseq``: a list gives the key once per item, None leaves it
    out), with Content-Type application/x-www-form-urlencoded unless a header sets one.
    Text is sent as it is."""
    method = body["method"]
    if method == "HEAD":
        notes.changed("data is not sent with a HEAD request, as Airflow's HttpHook sends none",
                      task=tid)  # fmt: skip
        return
    if isinstance(data, dict):
        encoded = _form(data, text)
    elif isinstance(data, str):
        encoded = text(data)
    else:  # a list or a number: as before, the rendered value as the task's body
        body["body"] = _rendered(data, text)
        return
    if method == "GET":
        if encoded:
            body["url"] += ("&" if "?" in body["url"] else "?") + encoded
        return
    body["body"] = encoded
    headers = body.setdefault("headers", {})
    if isinstance(data, dict) and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/x-www-form-urlencoded"


def _form(data: dict[str, Any], text: Callable[[Any], str]) -> str:
    """``data`` form-encoded as requests encodes it, a value Airflow renders (a template)
    encoded as it renders: ``{% filter urlencode %}`` around it."""
    pieces: list[str] = []
    for key, value in data.items():
        # requests' _encode_params: text or a scalar is one value, anything else iterated
        # (a list's items, a mapping's keys)
        values = (
            [value] if isinstance(value, str | bytes) or not hasattr(value, "__iter__") else value
        )
        for item in values:
            if item is None:
                continue
            name = urllib.parse.quote_plus(str(key))
            rendered = text(str(item))
            if "{{" in rendered or "{%" in rendered:
                pieces.append(f"{name}={{% filter urlencode %}}{rendered}{{% endfilter %}}")
            else:
                pieces.append(f"{name}={urllib.parse.quote_plus(rendered)}")
    return "&".join(pieces)


def _rendered(value: Any, text: Callable[[Any], str]) -> Any:
    """A value Airflow renders (a template field): its strings, however deep, rewritten."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, list):
        return [_rendered(v, text) for v in value]
    if isinstance(value, dict):
        return {k: _rendered(v, text) for k, v in value.items()}
    return value


def _argument(value: Any, text: Callable[[Any], str]) -> Any:
    """A rendered argument as a task param: text, a number or a bool as it is, anything else
    as JSON text (a python task's params are text or scalars)."""
    value = _rendered(value, text)
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


def _literal_params(value: dict[str, Any], notes: Notes, tid: str) -> dict[str, Any]:
    """A task's Airflow ``params``: Airflow does not render them (apache/airflow#31801), where
    Stratoflow renders a task's params, so template syntax in them is written to render as
    the text it is."""
    out = _params(value)
    for key, written in out.items():
        if isinstance(written, str) and escape_literal(written) != written:
            out[key] = escape_literal(written)
            notes.changed(
                f"param {key!r} holds template syntax, which Airflow passes as it is (it does "
                "not render params): written to render as that text",
                task=tid,
                field="params",
            )
    return out


def _params(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, written in (value or {}).items() if isinstance(value, dict) else []:
        raw = written["default"] if isinstance(written, dict) and "default" in written else written
        out[str(key)] = (
            raw if isinstance(raw, (str, int, float, bool)) else json.dumps(raw, default=str)
        )
    return out


# the keys of a task the import reads whatever its operator
_COMMON_KEYS = SETTING_KEYS | {
    "task_id", "operator", "decorator", "dependencies", "task_group_name", "doc_md", "doc",
    "pool", "pool_slots", "priority_weight", "params",
}  # fmt: skip
# BaseOperator's own arguments (a @task's other keys are its callable's arguments)
_OPERATOR_ARGS = {
    "owner", "email", "email_on_retry", "email_on_failure", "start_date", "end_date",
    "depends_on_past", "ignore_first_depends_on_past", "wait_for_past_depends_before_skipping",
    "wait_for_downstream", "queue", "sla", "weight_rule", "outlets", "inlets", "resources",
    "run_as_user", "task_concurrency", "max_active_tis_per_dag", "max_active_tis_per_dagrun",
    "executor", "executor_config", "do_xcom_push", "task_display_name", "logger_name",
    "map_index_template", "doc_json", "doc_yaml", "doc_rst", "timezone", "schedule",
    "templates_dict", "templates_exts", "show_return_value_in_logs",
    *(f"{c}{s}" for c in ("on_success_callback", "on_failure_callback", "on_retry_callback",
                           "on_execute_callback", "on_skipped_callback")
      for s in ("", "_name", "_file")),
}  # fmt: skip
_OPERATOR_KEYS = {
    "BashOperator": {"bash_command", "env", "append_env", "skip_on_exit_code", "skip_exit_code"},
    # multiple_outputs is the operator's, not the callable's: a returned dict is the outputs anyway
    "PythonOperator": {"python_callable", "python_callable_name", "python_callable_file", "op_kwargs",
                       "multiple_outputs"},
    "task": {"python_callable", "python_callable_name", "python_callable_file", "op_kwargs",
             "multiple_outputs"},
    "HttpOperator": {"http_conn_id", "endpoint", "method", "headers", "data"},
    "SimpleHttpOperator": {"http_conn_id", "endpoint", "method", "headers", "data"},
    "HttpSensor": {"http_conn_id", "endpoint", "method", "headers", "data", "poke_interval", "timeout", "mode"},
    "KubernetesPodOperator": {"image", "cmds", "arguments", "namespace", "container_resources", "name", "get_logs"},
    "EksPodOperator": {"image", "cmds", "arguments", "namespace", "container_resources", "name", "get_logs"},
    "LambdaInvokeFunctionOperator": {"function_name", "payload", "qualifier", "invocation_type"},
    "AwsLambdaInvokeFunctionOperator": {"function_name", "payload", "qualifier", "invocation_type"},
    "BatchOperator": {"job_name", "job_queue", "job_definition", "container_overrides", "overrides"},
    "AwsBatchOperator": {"job_name", "job_queue", "job_definition", "container_overrides", "overrides"},
    "EmptyOperator": set(),
    "DummyOperator": set(),
    "TriggerDagRunOperator": {"trigger_dag_id", "conf", "wait_for_completion", "poke_interval"},
    "ExternalTaskSensor": {"external_dag_id", "external_task_id", "external_task_ids",
                           "allowed_states", "failed_states", "skipped_states",
                           "execution_delta", "poke_interval", "timeout", "mode"},
    "SQLExecuteQueryOperator": {"conn_id", "sql", "parameters"},
    "PostgresOperator": {"postgres_conn_id", "sql", "parameters"},
    "AthenaOperator": {"query", "database", "output_location", "workgroup", "aws_conn_id"},
    "RedshiftDataOperator": {"sql", "database", "cluster_identifier", "workgroup_name",
                             "db_user", "secret_arn", "parameters", "aws_conn_id"},
}  # fmt: skip
_TASKFLOW_KEYS = _OPERATOR_KEYS["task"]
# a statement starting with one of these returns rows: the task reports the first
_QUERY = re.compile(r"\s*(select|show|with|desc|describe|explain|values)\b", re.I)
_SQL_OPERATORS = {"SQLExecuteQueryOperator", "PostgresOperator", "AthenaOperator",
                  "RedshiftDataOperator"}  # fmt: skip


# What the script files (bash_command ending .sh) of one dag-factory file's DAGs may hold
# in all, each use counted (their text is kept in every task that names one): eight
# workflows of the most a workflow file holds. Past it a script is reported, not read: a
# file of thousands of tasks naming one big script read and held gigabytes.
MAX_SCRIPT_BYTES = 8 * MAX_DOCUMENT_BYTES


@dataclass
class _Scripts:
    """The bytes of script files one dag-factory file's DAGs have read so far."""

    read: int = 0


@dataclass
class _Budget:
    """The bytes of text of the tasks kept so far (a lower bound of their YAML's); the
    python tasks whose callable's source the import did not find (said once); and the
    script files the whole file read (shared by its DAGs)."""

    spent: int = 0
    unknown_callables: list[str] = field(default_factory=list)
    scripts: _Scripts = field(default_factory=_Scripts)


# Airflow's task context (Airflow 2 and 3): what it passes a callable by parameter name
AIRFLOW_CONTEXT = frozenset(
    {"conf", "conn", "dag", "dag_run", "data_interval_end", "data_interval_start", "ds",
     "ds_nodash", "execution_date", "expanded_ti_count", "inlets", "inlet_events",
     "logical_date", "macros", "map_index_template", "next_ds", "next_ds_nodash",
     "next_execution_date", "outlets", "outlet_events", "params", "prev_data_interval_start_success",
     "prev_data_interval_end_success", "prev_ds", "prev_ds_nodash", "prev_execution_date",
     "prev_execution_date_success", "prev_start_date_success", "prev_end_date_success",
     "run_id", "task", "task_instance", "task_instance_key_str", "templates_dict", "test_mode",
     "ti", "tomorrow_ds", "tomorrow_ds_nodash", "triggering_asset_events",
     "triggering_dataset_events", "ts", "ts_nodash", "ts_nodash_with_tz", "var",
     "yesterday_ds", "yesterday_ds_nodash"}
)  # fmt: skip
# what a callable taking **kwargs is given of it (text Stratoflow renders as Airflow does)
_TO_KWARGS = ("ds", "ds_nodash", "ts", "ts_nodash", "run_id", "logical_date")
_DATETIMES = frozenset({"logical_date", "execution_date", "data_interval_start",
                        "data_interval_end", "next_execution_date", "prev_execution_date"})  # fmt: skip
# context names a render gives something else for (task: {"id": ...}, not the operator);
# params the runner passes itself (the run's params with the task's)
_NOT_PASSED = frozenset({"task", "params"})
_MAX_SOURCE = 1 << 20


@dataclass(frozen=True)
class _Signature:
    """The parameters of a callable that can be passed by name, and whether it takes
    **kwargs."""

    names: tuple[str, ...]
    kwargs: bool
    # the parameters op_args fill, in order (those that can be passed by position and by
    # name); () when one before them can only be passed by position
    positional: tuple[str, ...] = ()


def _signature(conf: dict[str, Any], folder: Path | None) -> _Signature | None:
    """The callable's parameters, read (never run) from its source under ``folder``, the DAG
    file's: ``python_callable: pkg.module.function`` in ``pkg/module.py``, or
    ``python_callable_file`` (``$CONFIG_ROOT_DIR`` being that folder). None when it is not
    there (nothing outside the folder is read) or does not parse."""
    if folder is None:
        return None
    target = conf.get("python_callable")
    if isinstance(target, str) and "." in target:
        module, _, function = target.rpartition(".")
        *packages, name = module.split(".")
        source = folder.joinpath(*packages, name + ".py")
    elif conf.get("python_callable_name") and conf.get("python_callable_file"):
        written = str(conf["python_callable_file"])
        for variable in ("${CONFIG_ROOT_DIR}", "$CONFIG_ROOT_DIR"):
            written = written.replace(variable, str(folder))
        source, function = folder / written, str(conf["python_callable_name"])
    else:
        return None
    try:
        real = source.resolve()
        if not real.is_relative_to(folder.resolve()):
            return None
        tree = ast.parse(read_include(real, _MAX_SOURCE, follow=False))
    except (OSError, RuntimeError, ValueError, SyntaxError, RecursionError):
        return None
    # the last definition: a module that defines the name again is imported with that one
    for node in reversed(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            args = node.args
            named = tuple(a.arg for a in [*args.args, *args.kwonlyargs])
            positional = () if args.posonlyargs else tuple(a.arg for a in args.args)
            return _Signature(named, args.kwarg is not None, positional)
    return None


def _op_args(conf: dict[str, Any], folder: Path | None) -> dict[str, Any]:
    """A PythonOperator's ``op_args`` by the names of the parameters they fill, as Airflow
    passes them (its first positional arguments); {} when the callable's source is not
    under ``folder`` or they are more than its named parameters (a ``*args`` takes them)."""
    written = conf.get("op_args")
    if not isinstance(written, list) or not written:
        return {}
    signature = _signature(conf, folder)
    if signature is None or len(written) > len(signature.positional):
        return {}
    return dict(zip(signature.positional, written, strict=False))


def _context_arguments(
    conf: dict[str, Any],
    body: dict[str, Any],
    tid: str,
    notes: Notes,
    dates: AirflowDates,
    folder: Path | None,
    unknown: list[str],
) -> None:
    """Airflow passes its context to a callable by parameter name (all of it to
    ``**kwargs``), op_kwargs winning over it: what of it Stratoflow has becomes a task
    param (the runner passes a callable its params by name), rendered as Airflow's; what it
    has not is said. A callable whose source is not found joins ``unknown``."""
    signature = _signature(conf, folder)
    if signature is None:
        unknown.append(tid)
        return
    given = set(body.get("params", {}))
    wanted = [n for n in signature.names if n in AIRFLOW_CONTEXT and n not in given | {"params"}]
    if signature.kwargs:
        wanted += [n for n in _TO_KWARGS if n not in given and n not in wanted]
    passed: list[str] = []
    missing: list[str] = []
    for name in wanted:
        problems: list[str] = []
        value = rewrite_airflow("{{ " + name + " }}", dates, problems)
        if name in _NOT_PASSED or problems:
            missing.append(name)
        else:
            body.setdefault("params", {})[name] = value
            passed.append(name)
    if passed:
        datetimes = [n for n in passed if n in _DATETIMES]
        notes.changed(
            f"Airflow's context passed to the callable by name, as task params: "
            f"{', '.join(passed)}"
            + (
                f" ({', '.join(datetimes)} as ISO-8601 text, where Airflow passes a datetime: "
                ".strftime(), .year and the like fail on text)"
                if datetimes
                else ""
            ),
            task=tid,
        )
    named = [n for n in missing if n in signature.names]
    if named:
        notes.unmapped(
            f"the callable's parameter{'s' if len(named) > 1 else ''} "
            f"{', '.join(map(repr, named))} {'are' if len(named) > 1 else 'is'} Airflow's "
            "context, which Stratoflow has no value for: not passed, so the call fails "
            "(missing argument) unless the parameter has a default",
            task=tid,
        )
    if signature.kwargs:
        notes.changed(
            "the callable takes **kwargs, to which Airflow passes its whole context: here it "
            f"gets {', '.join(n for n in _TO_KWARGS if n in passed or n in given)}, the "
            "task's params, params, outputs and context, and not ti, dag_run, dag, task, "
            "macros, conf, var (kwargs['ti'] fails)",
            task=tid,
        )


# BashOperator.template_ext: a bash_command ending so is a template file's name
_SCRIPT_EXTENSIONS = (".sh", ".bash")


@dataclass(frozen=True)
class _NotRead:
    reason: str


def _script_file(command: Any, folder: Path | None, scripts: _Scripts) -> str | _NotRead | None:
    """A bash_command that Airflow reads as a template file (it ends with .sh or .bash):
    the file's text when it is under ``folder``, the DAG file's (nothing outside it is
    read), whole (at most ``_MAX_SOURCE`` bytes: a longer one was cut there, and its head
    made the command) and within what ``scripts`` has left of ``MAX_SCRIPT_BYTES``; else
    why it is not; None for any other command."""
    if not isinstance(command, str) or not command.endswith(_SCRIPT_EXTENSIONS):
        return None
    why = (
        f"bash_command {command!r} ends with {Path(command).suffix}: Airflow reads it as a "
        "template file (under the DAG's folder or template_searchpath) and runs its rendered "
        "content, and the import {}: the task runs it as a path from its own work "
        "directory, where it is not; write its content as the command, or ship it as a "
        "resource"
    )
    if folder is None:
        return _NotRead(why.format("had no folder to look in"))
    try:
        real = (folder / command).resolve()
        if not real.is_relative_to(folder.resolve()):
            raise FileNotFoundError(command)
        left = MAX_SCRIPT_BYTES - scripts.read
        data = b"" if left <= 0 else read_include(real, min(_MAX_SOURCE, left) + 1, follow=False)
        text = data.decode("utf-8")
    except (OSError, RuntimeError, ValueError):  # UnicodeDecodeError is a ValueError
        return _NotRead(why.format(f"found no such file under {folder}"))
    if len(data) > _MAX_SOURCE:
        return _NotRead(why.format(f"read no file of more than {_MAX_SOURCE:,} bytes"))
    if left <= 0 or len(data) > left:
        scripts.read = MAX_SCRIPT_BYTES  # none is read after the first that does not fit
        return _NotRead(
            why.format(
                f"read no more than {MAX_SCRIPT_BYTES:,} bytes of scripts for one file's DAGs"
            )
        )
    scripts.read += len(data)
    return text


def _operator(
    conf: dict[str, Any],
    own: set[str],
    budget: _Budget,
    tid: str,
    notes: Notes,
    dates: AirflowDates,
    params: dict[str, Any],
    outputs: dict[str, str],
    names: dict[str, str],
    folder: Path | None = None,
) -> tuple[dict[str, Any], str | None, list[str], set[str]]:
    """The task body, or a stand-in and the reason it has no equivalent; the tasks
    (Stratoflow ids) whose return values it reads with dag-factory's ``+task``, which it
    must run after; and the keys of ``conf`` it read. ``conf``: the task's keys over its
    groups' and the DAG's default_args; ``own``: the task's own keys (only those are a
    @task's arguments, and only those are noted here when not read). ``names``: every task
    of the DAG, dag-factory id -> Stratoflow id."""
    operator = str(conf.get("operator") or conf.get("decorator") or "")
    short = operator.rsplit(".", 1)[-1]
    problems: list[str] = []
    changes: list[str] = []
    taskflow = short == "task" or operator.endswith(".task")
    reads, read_args = _task_reads(
        {k: v for k, v in conf.items() if k in own}, tid, taskflow, names, notes
    )

    def text(value: Any) -> str:
        return rewrite_airflow(str(value), dates, problems, outputs, changes)

    def argument(value: Any) -> Any:
        return _argument(value, text)

    body: dict[str, Any]
    reason: str | None = None
    read_op_args = False
    if short == "BashOperator":
        command = conf.get("bash_command", "")
        script = _script_file(command, folder, budget.scripts)
        if isinstance(script, str):
            command = script
            changes.append(
                f"bash_command {conf['bash_command']!r} names a template file, whose content "
                "Airflow renders and runs: that content is the command"
            )
        elif script is not None:
            problems.append(script.reason)
        body = {"type": "shell", "command": text(command)}
        if isinstance(conf.get("env"), dict):
            body["env"] = {str(k): text(v) for k, v in conf["env"].items()}
            if not conf.get("append_env"):
                changes.append(
                    "env without append_env: true: Airflow runs the command with only the "
                    "variables of env (and its AIRFLOW_CTX_* ones; none of the worker's, "
                    "not even PATH or HOME), where a task's env adds to the environment it "
                    "inherits (locally PATH, LANG, LANGUAGE, TZ, LC_*, the names in "
                    "STRATOFLOW_TASK_ENV_ALLOW, HOME and TMPDIR set to its work directory, "
                    "and the STRATOFLOW_* task variables) and the format has no way not to "
                    "inherit: a command that relies on one of those being unset sees it set"
                )
        elif conf.get("env") is not None:  # a template of a whole dict, a list, ...
            problems.append(
                f"env {conf['env']!r} is not a mapping of names to values (a template that "
                "renders one is not rendered at import): not mapped, so the command runs "
                "without those variables"
            )
        skip = _skip_codes(conf)
        if skip is not None and skip[1] != _DEFAULT_SKIP:
            problems.append(
                f"exit code{'s' if len(skip[0]) > 1 else ''} "
                f"{', '.join(map(str, skip[0]))} skip the task in Airflow ({skip[1]}); the "
                "format has no skip on an exit code (no task field, no trigger rule: the "
                "engine would need one), so such an exit fails the task"
            )
    elif short in ("EmptyOperator", "DummyOperator"):
        body = {"type": "shell", "command": "true\n"}
    elif short in ("PythonOperator", "task") or operator.endswith(".task"):
        target = conf.get("python_callable")
        if isinstance(target, str) and "." in target:
            module, _, function = target.rpartition(".")
            body = {"type": "python", "callable": f"{module}:{function}"}
        elif conf.get("python_callable_name") and conf.get("python_callable_file"):
            module = Path(str(conf["python_callable_file"])).stem
            body = {"type": "python", "callable": f"{module}:{conf['python_callable_name']}"}
            notes.changed(
                f"the callable's file is imported as module {module!r}: put it on the runner's path",
                task=tid,
            )
        else:
            body, reason = {"type": "shell", "command": "true\n"}, "no python_callable to call"
        if isinstance(conf.get("op_kwargs"), dict):
            body["params"] = {str(k): argument(v) for k, v in conf["op_kwargs"].items()}
            notes.changed("op_kwargs are passed as the task's params", task=tid)
        elif conf.get("op_kwargs") is not None:  # a template of a whole dict, a list, ...
            problems.append(
                f"op_kwargs {conf['op_kwargs']!r} is not a mapping of names to values (a "
                "template that renders one is not rendered at import): not mapped, so the "
                "callable is called without them"
            )
        filled = _op_args(conf, folder)
        if filled:
            for name, value in filled.items():
                body.setdefault("params", {}).setdefault(name, argument(value))
            read_op_args = True
            notes.changed(
                f"op_args are passed as the task's params named for the parameters they "
                f"fill: {', '.join(filled)}",
                task=tid,
            )
    elif short in ("HttpOperator", "SimpleHttpOperator", "HttpSensor"):
        conn = str(conf.get("http_conn_id") or "http_default")
        base = f"{conn}_base_url"
        params.setdefault(base, "")
        endpoint = text(conf.get("endpoint", ""))
        url = (
            endpoint
            if endpoint.startswith(("http://", "https://"))
            else "{{ " + param_ref(base) + " }}/" + endpoint.lstrip("/")
        )
        body = {
            "type": "http",
            "url": url,
            "method": str(conf.get("method", "GET" if short == "HttpSensor" else "POST")).upper(),
        }
        if not endpoint.startswith(("http://", "https://")):
            notes.unmapped(
                f"connection {conn!r}: set the workflow param {base!r} to its base URL", task=tid
            )
        if isinstance(conf.get("headers"), dict):
            body["headers"] = {str(k): text(v) for k, v in conf["headers"].items()}
        if conf.get("data") is not None:
            _http_data(body, conf["data"], text, notes, tid)
        if short == "HttpSensor":
            notes.unmapped("a sensor pokes until its check passes; this task checks once", task=tid)
    elif short in ("KubernetesPodOperator", "EksPodOperator") and not conf.get("cmds"):
        # the container's command unset: the image's ENTRYPOINT runs the arguments, where a
        # kubernetes task's command takes the entrypoint's place
        args = conf.get("arguments")
        body, reason = (
            dict(_STAND_IN),
            (
                f"no cmds: Airflow runs the entrypoint of image {str(conf.get('image', ''))!r}"
                f"{f' with arguments {args!r}' if args else ''}, which the import cannot know; a "
                "kubernetes task runs its command in place of the entrypoint: write the "
                "entrypoint and its arguments as its command"
            ),
        )
    elif short in ("KubernetesPodOperator", "EksPodOperator"):
        command = [*(conf.get("cmds") or []), *(conf.get("arguments") or [])]
        body = {
            "type": "kubernetes",
            "image": str(conf.get("image", "")),
            "command": [text(c) for c in command],
        }
        if conf.get("namespace"):
            body["namespace"] = str(conf["namespace"])
        resources = conf.get("container_resources") or {}
        requests = resources.get("requests") or resources.get("limits") or {}
        if requests.get("cpu"):
            body["cpu"] = str(requests["cpu"])
        if requests.get("memory"):
            body["memory"] = str(requests["memory"])
        for key in (
            "config_file",
            "cluster_name",
            "cluster_context",
            "in_cluster",
            "volumes",
            "env_vars",
            "labels",
        ):
            if conf.get(key):
                notes.unmapped(
                    f"{key} has no equivalent (the stack's EKS cluster runs the job)", task=tid
                )
    elif short in ("LambdaInvokeFunctionOperator", "AwsLambdaInvokeFunctionOperator"):
        payload = conf.get("payload") or {}
        if isinstance(payload, str):  # Airflow renders the text, then sends it
            try:
                payload = json.loads(payload)
            except ValueError:
                payload = {"payload": payload}
                notes.changed("a payload that is not JSON is passed as {'payload': text}", task=tid)
        payload = _rendered(payload, text)
        body = {
            "type": "lambda",
            "function": str(conf.get("function_name", "")),
            "payload": payload if isinstance(payload, dict) else {"payload": payload},
        }
        if conf.get("qualifier") or conf.get("invocation_type") not in (None, "RequestResponse"):
            notes.unmapped("qualifier / invocation type have no equivalent", task=tid)
    elif short in ("BatchOperator", "AwsBatchOperator"):
        overrides = conf.get("container_overrides") or conf.get("overrides") or {}
        image = overrides.get("image") if isinstance(overrides, dict) else None
        if image:
            body = {
                "type": "batch",
                "image": str(image),
                "command": [text(c) for c in overrides.get("command") or []],
            }
            if conf.get("job_queue"):
                body["job_queue"] = str(conf["job_queue"])
            notes.changed(
                f"job definition {conf.get('job_definition')!r} is not used: the batch task runs its image",
                task=tid,
            )
        else:
            body, reason = (
                {"type": "shell", "command": "true\n"},
                (
                    f"a Batch job definition ({conf.get('job_definition')!r}) without an image override: "
                    "Stratoflow's batch task runs an image with a command"
                ),
            )
    elif short == "TriggerDagRunOperator":
        body, reason = _trigger(conf, tid, notes, text)
    elif short == "ExternalTaskSensor":
        body, reason = _sensor(conf, tid, notes)
    elif short in _SQL_OPERATORS:
        body, reason = _sql(short, conf, tid, notes, text)
    else:
        body = {"type": "shell", "command": "true\n"}
        reason = f"operator {operator or '(none)'} has no equivalent"
    # the task's own params win over the DAG's (default_args' are the DAG's, as in Airflow)
    if "params" in own and isinstance(conf.get("params"), dict) and reason is None:
        body.setdefault("params", {}).update(_literal_params(conf["params"], notes, tid))
    used = (
        set(_COMMON_KEYS)
        | _OPERATOR_KEYS.get(short, set())
        | ({"op_args"} if read_op_args else set())
    )
    if taskflow:  # TaskFlow: the task's other keys are the arguments (not default_args')
        for key, value in conf.items():
            if key in used or key in _OPERATOR_ARGS or key not in own:
                continue
            if key in read_args:  # a read of an upstream's output, said by _task_reads
                if read_args[key] is not None:
                    body.setdefault("params", {})[key] = read_args[key]
            elif key in ("expand", "partial"):
                notes.unmapped(
                    f"dynamic task mapping ({key}) has no equivalent: the task runs once", task=tid
                )
            else:
                body.setdefault("params", {})[key] = argument(value)
                notes.changed(
                    f"argument {key!r} is passed as a task param (the callable gets it by "
                    "name, as text)",
                    task=tid,
                )
            used = used | {key}
    if body.get("type") == "python" and reason is None:
        _context_arguments(conf, body, tid, notes, dates, folder, budget.unknown_callables)
    for key in own:  # (default_args' keys are said once, where they are written)
        if key not in used and reason is None and conf[key] is not None:
            why = why_left_out(key)
            notes.unmapped(
                f"{short} argument {key!r} is not mapped{f': {why}' if why else ''}", task=tid
            )
    for problem in problems:
        notes.unmapped(problem, task=tid)
    for change in dict.fromkeys(changes):
        notes.changed(change, task=tid)
    # a workflow whose file would be over the size a workflow file may hold is not written
    # (importers._validated): once the tasks kept so far are over it, the templates of the
    # rest are not worth parsing (seconds a megabyte)
    checked = reason is None and budget.spent + least_text(body) <= MAX_DOCUMENT_BYTES
    refused = list(dict.fromkeys(_refused(body))) if checked else []
    if refused:  # the workflow would not validate: the task stands aside, saying why
        for why in refused:
            notes.unmapped(f"validation refuses this: {why}", task=tid)
        body = dict(_STAND_IN)
        reason = "its templates read names Stratoflow does not have (see this task's notes)"
    if reason is None:  # (a task with no equivalent may be left out)
        budget.spent += least_text(body)
    if conf.get("doc_md") or conf.get("doc"):
        body["description"] = str(conf.get("doc_md") or conf.get("doc"))
    return body, reason, reads, used


# dag-factory's read of a task's return value (XCom): ``+task``, or ``+task['key']`` for one
# key of a returned dict (dag-factory's own pattern: dagbuilder._replace_kwargs_values_as_xcom)
_TASK_READ = re.compile(r"\+(\w+)(?:\[(?:'(.*)'|\"(.*)\")\])?")
# keys of a task that are not arguments: no +task read is looked for in them
_NOT_ARGUMENTS = (_COMMON_KEYS - {"params"}) | _OPERATOR_ARGS


_Read = tuple[tuple[str, ...], str, str, str | None]


def _reads_in(value: Any, path: tuple[str, ...]) -> list[_Read]:
    """Every ``+task`` in ``value``, however deep: (where, as written, task, key or None)."""
    if isinstance(value, str):
        found = _TASK_READ.fullmatch(value.strip())
        if found is None:
            return []
        key = found.group(2) if found.group(2) is not None else found.group(3)
        return [(path, value.strip(), found.group(1), key)]
    if isinstance(value, list):
        value = dict(enumerate(value))
    if not isinstance(value, dict):
        return []
    return [read for k, v in value.items() for read in _reads_in(v, (*path, str(k)))]


def _task_reads(
    conf: dict[str, Any], tid: str, taskflow: bool, names: dict[str, str], notes: Notes
) -> tuple[list[str], dict[str, str | None]]:
    """The ``+task`` reads anywhere in a task's arguments: the tasks read (Stratoflow ids),
    each one a dependency whether or not the value maps; and the TaskFlow arguments that are
    reads, with the template each becomes (None: not mapped, so not passed). Each read is
    reported. dag-factory resolves a read in a @task's own arguments and in the first level of
    its ``expand``/``partial``; elsewhere it passes the text as written."""
    reads: list[str] = []
    args: dict[str, str | None] = {}
    for top, value in conf.items():
        if top in _NOT_ARGUMENTS:
            continue
        for path, text, name, key in _reads_in(value, (top,)):
            # the report line names the field (top); a deeper place is said in the message
            written = (f"{'.'.join(path)}: " if len(path) > 1 else "") + repr(text)
            resolved = taskflow and (
                len(path) == 1 or (len(path) == 2 and path[0] in ("expand", "partial"))
            )
            if len(path) == 1:
                args[top] = None
            if name not in names or names[name] == tid:
                if resolved:  # dag-factory fails on it; elsewhere it is only text
                    notes.unmapped(
                        f"{written} names no other task of this DAG: not mapped",
                        task=tid,
                        field=top,
                    )
                continue
            upstream = names[name]
            reads.append(upstream)
            then = f"the task depends on {upstream!r}"
            if not resolved:
                notes.unmapped(
                    f"{written}: dag-factory passes this text as it is (it reads a task's "
                    "return value only in a @task's own arguments and in expand/partial), and "
                    f"so does this import; {then} all the same",
                    task=tid,
                    field=top,
                )
            elif len(path) == 1 and top not in _COMMON_KEYS | _TASKFLOW_KEYS:
                ref = "{{ " + output_ref(upstream, key or "return_value") + " }}"
                args[top] = ref
                how = (
                    f"output {key!r} of task {upstream!r} (a returned dict's keys are its outputs)"
                    if key is not None
                    else f"the whole return value of task {upstream!r}, which a python task "
                    "keeps as its output 'return_value' unless it is a dict (whose keys are "
                    "its outputs: then read one key, +task['key'])"
                )
                notes.changed(
                    f"{written} reads {how}: the task param {top!r} is {ref} (rendered as "
                    f"text); {then}",
                    task=tid,
                    field=top,
                )
            else:
                what = f"output {key!r}" if key is not None else "the whole return value"
                why = (
                    "dynamic task mapping has no equivalent"
                    if path[0] in ("expand", "partial")
                    else f"a Stratoflow task's {top!r} is not one value"
                )
                notes.unmapped(
                    f"{written} reads {what} of task {name!r} (XCom): not mapped, as {why}; {then}",
                    task=tid,
                    field=top,
                )
    return list(dict.fromkeys(reads)), args


_STAND_IN: dict[str, Any] = {"type": "shell", "command": "true\n"}
_DEFAULT_SKIP = "skip_on_exit_code's default 99"
_EXITS_99 = re.compile(r"\bexit\s+99\b")


def _skip_codes(conf: dict[str, Any]) -> tuple[list[Any], str] | None:
    """The exit codes Airflow reads as "skip" for a BashOperator task, and where they come
    from: ``skip_on_exit_code`` (Airflow 2.6+; ``skip_exit_code`` before), default 99. The
    default is said as :data:`_DEFAULT_SKIP` unless the command itself exits 99 (then it is
    surely used). None: no code skips it (the key set to null)."""
    for key in ("skip_on_exit_code", "skip_exit_code"):
        if key in conf:
            value = conf[key]
            if value is None or value == []:
                return None
            return (value if isinstance(value, list) else [value]), f"{key} {value!r}"
    if _EXITS_99.search(str(conf.get("bash_command", ""))):
        return [99], "skip_on_exit_code's default 99, and the command exits 99"
    return [99], _DEFAULT_SKIP


def _default_skip(conf: dict[str, Any]) -> bool:
    """A BashOperator task that exit code 99 skips in Airflow only by default."""
    short = str(conf.get("operator") or "").rsplit(".", 1)[-1]
    skip = _skip_codes(conf) if short == "BashOperator" else None
    return skip is not None and skip[1] == _DEFAULT_SKIP


def _refused(body: dict[str, Any]) -> list[str]:
    """What validation refuses in the templates of a converted task: names no render has
    (whether params are declared is left to validation, which knows the workflow's)."""
    found: list[str] = []
    for _, text in _walk_strings(body, ""):  # every string, as validation walks them
        with contextlib.suppress(TemplateError):  # a syntax error: validation reports it
            found += undefined_names(text, None)
            found += variable_references(text)[1]  # var read other than by a written name
    return found


def _trigger(
    conf: dict[str, Any], tid: str, notes: Notes, text: Any
) -> tuple[dict[str, Any], str | None]:
    """TriggerDagRunOperator: a sub-workflow task starting the triggered DAG's workflow."""
    dag_id = str(conf.get("trigger_dag_id") or "")
    if not dag_id or "{{" in dag_id:
        return dict(_STAND_IN), f"trigger_dag_id {dag_id!r} is not a fixed DAG id"
    body: dict[str, Any] = {"type": "workflow", "workflow": workflow_name(dag_id)}
    if workflow_name(dag_id) != dag_id:
        notes.changed(f"DAG {dag_id!r} is the workflow {workflow_name(dag_id)!r}", task=tid)
    run_conf = conf.get("conf")
    if isinstance(run_conf, dict):
        body["params"] = {str(k): _argument(v, text) for k, v in run_conf.items()}
    elif run_conf is not None:
        notes.unmapped(f"conf {run_conf!r} is not a mapping: not passed", task=tid)
    if not conf.get("wait_for_completion"):
        notes.changed(
            "the task waits for the triggered run to end and takes its state (Airflow's "
            "wait_for_completion: false returned at once)",
            task=tid,
        )
    return body, None


AIRFLOW_SENSOR_TIMEOUT = 7 * 86400  # BaseSensorOperator's default timeout


def _sensor(conf: dict[str, Any], tid: str, notes: Notes) -> tuple[dict[str, Any], str | None]:
    """ExternalTaskSensor: a dependency task on the other DAG's workflow (or tasks)."""
    dag_id = str(conf.get("external_dag_id") or "")
    if not dag_id or "{{" in dag_id:
        return dict(_STAND_IN), f"external_dag_id {dag_id!r} is not a fixed DAG id"
    if conf.get("execution_date_fn") or conf.get("execution_delta") not in (
        None,
        0,
        "0",
        "0:00:00",
    ):
        return dict(_STAND_IN), (
            "execution_delta / execution_date_fn pick other logical dates: a dependency task "
            "checks DolphinScheduler-style windows (today, last1Days, ...), write its `date` by hand"
        )
    tasks = conf.get("external_task_ids") or (
        [conf["external_task_id"]] if conf.get("external_task_id") else [None]
    )
    items: list[dict[str, Any]] = []
    for task in tasks if isinstance(tasks, list) else [tasks]:
        item: dict[str, Any] = {"workflow": workflow_name(dag_id), "date": "today"}
        if task is not None:
            item["task"] = task_id(str(task))
        items.append(item)
    body: dict[str, Any] = {"type": "dependency", "all": items[:20]}
    notes.unmapped(
        "Airflow waits for the run of exactly the same logical date; the dependency task "
        "checks the upstream's runs of the same calendar day (`date: today`), which is the same "
        "only when the upstream runs at most daily at that time: check it",
        task=tid,
    )
    interval = seconds(conf.get("poke_interval"))
    if interval:
        body["check_interval"] = f"{min(max(interval, 5), 86400)}s"
    # BaseSensorOperator's timeout: 7 days unless set (then the sensor fails)
    timeout = seconds(conf.get("timeout", AIRFLOW_SENSOR_TIMEOUT))
    if timeout:
        body["timeout"] = f"{min(timeout, 365 * 86400)}s"
    allowed = conf.get("allowed_states")
    if allowed and [str(s).lower() for s in allowed] != ["success"]:  # (Airflow's default)
        notes.unmapped(f"allowed_states {allowed!r}: the dependency task waits for success",
                       task=tid)  # fmt: skip
    for key in ("failed_states", "skipped_states"):
        if conf.get(key):
            notes.unmapped(
                f"{key} {conf[key]!r}: Airflow ends the sensor as soon as the external task or "
                "run is in one of them; the dependency task waits for success until its "
                "timeout",
                task=tid,
            )
    return body, None


def _sql(
    short: str, conf: dict[str, Any], tid: str, notes: Notes, text: Any
) -> tuple[dict[str, Any], str | None]:
    """The SQL operators: an sql task on the connection named after the Airflow connection."""
    raw = conf.get("query") if short == "AthenaOperator" else conf.get("sql")
    statements = raw if isinstance(raw, list) else [raw] if raw else []
    sql = ";\n".join(text(s).strip().rstrip(";") for s in statements if str(s).strip())
    if not sql:
        return dict(_STAND_IN), "no SQL"
    if short == "AthenaOperator":
        kind, conn = "athena", f"athena-{conf.get('database') or 'default'}"
        settings = {k: conf.get(k) for k in ("database", "output_location", "workgroup")}
    elif short == "RedshiftDataOperator":
        target = conf.get("cluster_identifier") or conf.get("workgroup_name") or "default"
        kind, conn = "redshift-data", f"redshift-{target}"
        settings = {
            k: conf.get(k)
            for k in ("database", "cluster_identifier", "workgroup_name", "db_user", "secret_arn")
        }
    else:
        kind = "postgresql" if short == "PostgresOperator" else "postgresql|mysql"
        conn = str(conf.get("postgres_conn_id") or conf.get("conn_id") or "postgres_default")
        settings = {}
    connection = workflow_name(conn)
    shown_settings = "".join(f" --setting {k}={v}" for k, v in settings.items() if v)
    notes.changed(
        f"runs on the connection {connection!r}: create it with `stratoflow connections add "
        f"{connection} --type {kind}{shown_settings or ' --setting ...'}`",
        task=tid,
    )
    body: dict[str, Any] = {"type": "sql", "connection": connection}
    if len(statements) == 1 and sql.endswith(".sql") and "\n" not in sql:
        body["sql_file"] = sql
        notes.changed(f"{sql!r} is read from the task's working directory", task=tid)
    else:
        body["sql"] = sql
    body["outputs"] = "first_row" if _QUERY.match(sql) and len(statements) == 1 else "none"
    parameters = conf.get("parameters")
    if isinstance(parameters, dict):
        body["parameters"] = {
            str(k): None if v is None else _argument(v, text) for k, v in parameters.items()
        }
    elif parameters:
        notes.unmapped(
            f"positional parameters {parameters!r}: name them (%(name)s) by hand", task=tid
        )
    return body, None
