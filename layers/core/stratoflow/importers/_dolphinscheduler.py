"""DolphinScheduler workflows: export JSON (1.x, 3.0-3.2, 3.3) and pydolphinscheduler YAML.

Every form is read into one shape (:class:`DsWorkflow`, with task parameters as the 3.x export
writes them), then :func:`convert` writes format v1 from it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from stratoflow.importers._build import (
    Unmapped,
    chain_around,
    clamped_priority,
    ds_priority,
    pools_to_create,
    shown,
    unmapped_task,
)
from stratoflow.importers._cron import quartz_to_schedule
from stratoflow.importers._names import output_ref, param_ref, task_id, unique, workflow_name
from stratoflow.importers._report import ImportedWorkflow, Notes
from stratoflow.importers._timeexpr import (
    DsContext,
    Unsupported,
    as_expression,
    ds_pieces,
    escape_literal,
    js_condition,
    rewrite_ds,
    time_expression,
)
from stratoflow.model._workflow import MAX_DEPENDENCY_ITEMS, DateValue
from stratoflow.templating import TemplateError, check_syntax

# types that are planned in format v1 additions but not built in this version
# types the format has now that the importer does not convert yet: the reason says what to do
_BY_HAND = {
    "PROCEDURE": "the importer does not convert procedure tasks yet: call the procedure from "
    "an `sql` task on a named connection",
}
_PLANNED: dict[str, str] = {}
_SUB_WORKFLOW = {"SUB_PROCESS", "SUB_WORKFLOW", "SUBWORKFLOW"}
# DolphinScheduler datasource types with a Stratoflow connection type
_CONNECTION_TYPES = {
    "POSTGRESQL": "postgresql",
    "MYSQL": "mysql",
    "ATHENA": "athena",
    "REDSHIFT": "redshift-data",
}
_MAX_RETRIES = 100
_MAX_SECONDS = 365 * 86400  # the longest duration the format takes


@dataclass
class DsTask:
    code: str
    name: str
    type: str
    params: dict[str, Any]
    description: str | None = None
    retries: int = 0
    retry_interval: float = 1  # minutes
    timeout: float = 0  # minutes, 0 = none
    timeout_strategy: str | None = None
    priority: str = "MEDIUM"
    task_group_id: int = 0
    task_group_priority: float = 0  # higher first, within the task group
    delay_time: float = 0
    enabled: bool = True
    worker_group: str = "default"
    extra: dict[str, Any] = field(default_factory=dict)  # other settings, reported if set


@dataclass
class DsWorkflow:
    name: str
    project: str | None
    description: str | None
    global_params: list[dict[str, Any]]
    tasks: list[DsTask]
    edges: list[tuple[str, str]]  # (upstream code, downstream code)
    crontab: str | None = None
    timezone: str = "UTC"
    start: str | None = None
    end: str | None = None
    schedule_online: bool = True
    workflow_online: bool = True  # released: an offline workflow's schedules do not fire
    failure_strategy: str = "CONTINUE"
    execution_type: str = "PARALLEL"
    timeout: float = 0
    warning_type: str = "NONE"
    warning_group: int = 0
    run_priority: str = "MEDIUM"
    timezone_assumed: bool = False
    code: str | None = None  # the definition code (3.x) or id (1.x) other workflows name it by


@dataclass(frozen=True)
class DsRef:
    """A workflow of the import as other workflows reference it: by its definition code."""

    project: str | None  # Stratoflow project name
    name: str  # Stratoflow workflow name
    tasks: dict[str, str]  # task code -> task id
    params: frozenset[str] = frozenset()  # its global params: what a parent may pass it
    returns: frozenset[str] = frozenset()  # its global OUT params: what it passes back
    # OUT param -> the task of it whose value the workflow ends with (a parent's downstream
    # tasks read it through the sub-workflow task's outputs)
    outputs: Mapping[str, str] = field(default_factory=dict)


CodeTable = dict[str, DsRef]
"""Definition code -> the workflow it is, over every file of one import."""


def task_ids(flow: DsWorkflow) -> dict[str, str]:
    """Task code -> Stratoflow task id (names made valid and unique, in the export's order)."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for task in flow.tasks:
        ids[task.code] = unique(task_id(task.name), taken)
    return ids


def code_table(flows: list[DsWorkflow]) -> CodeTable:
    """The definition codes of ``flows`` (workflows without one are not referenced by code)."""
    return {
        flow.code: DsRef(
            workflow_name(str(flow.project)) if flow.project else None,
            workflow_name(flow.name),
            task_ids(flow),
            frozenset(str(p["prop"]) for p in _property_list(flow.global_params)),
            frozenset(
                str(p["prop"])
                for p in _property_list(flow.global_params)
                if str(p.get("direct", "IN")).upper() == "OUT"
            ),
            _last_setters(flow),
        )
        for flow in flows
        if flow.code not in (None, "", "None", "0")
    }


def _parents(flow: DsWorkflow, ids: Mapping[str, str]) -> dict[str, list[str]]:
    """Task id -> the ids of its upstream tasks (relations naming unknown codes left out)."""
    parents: dict[str, list[str]] = {ids[t.code]: [] for t in flow.tasks}
    for pre, post in flow.edges:
        if pre in ids and post in ids and ids[pre] not in parents[ids[post]]:
            parents[ids[post]].append(ids[pre])
    return parents


def _out_props(flow: DsWorkflow, ids: Mapping[str, str]) -> Iterator[tuple[str, str, str, str]]:
    """(task id, OUT param, its declared value, its declared type) of each enabled task (a
    disabled one does nothing, so it sets nothing)."""
    for task in flow.tasks:
        if task.enabled:
            for prop in _property_list(task.params.get("localParams")):
                if str(prop.get("direct", "IN")).upper() == "OUT":
                    yield (
                        ids[task.code],
                        str(prop["prop"]),
                        str(prop.get("value") or ""),
                        _type_of(prop),
                    )


def _last_setters(flow: DsWorkflow) -> dict[str, str]:
    """OUT param -> the task whose value the workflow ends with: the setter that every other
    setter of it is above (setters on paths that do not meet: none)."""
    ids = task_ids(flow)
    parents = _parents(flow, ids)
    setters: dict[str, list[str]] = {}
    for tid, key, _, _ in _out_props(flow, ids):
        setters.setdefault(key, []).append(tid)
    has_children = {p for ps in parents.values() for p in ps}
    sinks = [t for t in parents if t not in has_children]
    last: dict[str, str] = {}
    for key, reach in _reaching(setters, parents).items():
        # the values the workflow can end with: the last setter on each path to its end
        ends = set().union(*({t} if t in setters[key] else reach[t] for t in sinks))
        if len(ends) == 1:
            (last[key],) = ends
    return last


# ----------------------------------------------------------------------------- reading
def _json_field(value: Any) -> Any:
    """Fields the export writes as JSON text (globalParams, taskParams in some versions)."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


_MAX_NUMBER = 1e9  # minutes, counts and ids beyond this are nonsense, and inf would crash int()


def number(value: Any, default: float = 0) -> float:
    """A number the export wrote (maybe as text); ``default`` when it is none or absurd."""
    try:
        found = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return found if math.isfinite(found) and abs(found) <= _MAX_NUMBER else default


def _flag(value: Any) -> bool:
    return str(value).upper() not in ("NO", "FORBIDDEN", "0", "FALSE", "CLOSE")


def _timeout_open(value: Any) -> bool:
    return str(value).upper() in ("OPEN", "1", "TRUE", "YES")


def is_export(data: Any) -> bool:
    items = data if isinstance(data, list) else [data]
    keys = {"processDefinition", "workflowDefinition", "processDefinitionJson"}
    return bool(items) and all(isinstance(i, dict) and keys & i.keys() for i in items)


def read_export(data: Any) -> list[DsWorkflow]:
    """The workflows of an export file (a list of them, or one)."""
    items = data if isinstance(data, list) else [data]
    return [_read_v1(item) if "processDefinitionJson" in item else _read_v3(item) for item in items]


def _read_v3(item: dict[str, Any]) -> DsWorkflow:
    definition = item.get("workflowDefinition") or item.get("processDefinition") or {}
    relations = item.get("workflowTaskRelationList") or item.get("processTaskRelationList") or []
    schedule = item.get("schedule") or {}
    tasks = []
    for raw in item.get("taskDefinitionList") or []:
        params = _json_field(raw.get("taskParams")) or {}
        tasks.append(
            DsTask(
                code=str(raw.get("code")),
                name=str(raw.get("name") or raw.get("code")),
                type=str(raw.get("taskType", "")).upper(),
                params=params if isinstance(params, dict) else {},
                description=raw.get("description") or None,
                retries=int(number(raw.get("failRetryTimes"))),
                retry_interval=number(raw.get("failRetryInterval"), 1),
                timeout=number(raw.get("timeout")) if _timeout_open(raw.get("timeoutFlag")) else 0,
                timeout_strategy=raw.get("timeoutNotifyStrategy"),
                priority=str(raw.get("taskPriority") or "MEDIUM").upper(),
                task_group_id=int(number(raw.get("taskGroupId"))),
                task_group_priority=number(raw.get("taskGroupPriority")),
                delay_time=number(raw.get("delayTime")),
                enabled=_flag(raw.get("flag", "YES")),
                worker_group=str(raw.get("workerGroup") or "default"),
                extra={
                    k: raw.get(k)
                    for k in ("environmentCode", "isCache", "cpuQuota", "memoryMax")
                    if raw.get(k) not in (None, -1, 0, "NO", "")
                },
            )
        )
    edges = [
        (str(r.get("preTaskCode")), str(r.get("postTaskCode")))
        for r in relations
        if str(r.get("preTaskCode", "0")) not in ("0", "None")
    ]
    globals_ = (
        _json_field(definition.get("globalParams")) or definition.get("globalParamList") or []
    )
    return DsWorkflow(
        name=str(definition.get("name", "workflow")),
        code=str(definition["code"]) if definition.get("code") is not None else None,
        project=definition.get("projectName") or schedule.get("projectName"),
        description=definition.get("description") or None,
        global_params=globals_ if isinstance(globals_, list) else [],
        tasks=tasks,
        edges=edges,
        crontab=schedule.get("crontab") or None,
        timezone=schedule.get("timezoneId") or "UTC",
        timezone_assumed=not schedule.get("timezoneId"),
        start=schedule.get("startTime"),
        end=schedule.get("endTime"),
        schedule_online=str(schedule.get("releaseState", "ONLINE")).upper() == "ONLINE",
        workflow_online=str(definition.get("releaseState") or "ONLINE").upper() != "OFFLINE",
        failure_strategy=str(schedule.get("failureStrategy") or "CONTINUE").upper(),
        execution_type=str(definition.get("executionType") or "PARALLEL").upper(),
        timeout=number(definition.get("timeout")),
        warning_type=str(schedule.get("warningType") or "NONE").upper(),
        warning_group=int(
            number(schedule.get("warningGroupId") or definition.get("warningGroupId"))
        ),
        run_priority=str(
            schedule.get("workflowInstancePriority")
            or schedule.get("processInstancePriority")
            or "MEDIUM"
        ).upper(),
    )


def _read_v1(item: dict[str, Any]) -> DsWorkflow:
    body = _json_field(item.get("processDefinitionJson")) or {}
    tasks: list[DsTask] = []
    edges: list[tuple[str, str]] = []
    for raw in body.get("tasks", []) if isinstance(body, dict) else []:
        name = str(raw.get("name"))
        params = _json_field(raw.get("params")) or {}
        params = dict(params) if isinstance(params, dict) else {}
        kind = str(raw.get("type", "")).upper()
        # 1.x keeps these beside params; 3.x inside them
        if kind in ("CONDITIONS", "DEPENDENT") and not params.get("dependence"):
            params["dependence"] = _json_field(raw.get("dependence")) or {}
        if kind == "CONDITIONS":
            params["conditionResult"] = _json_field(raw.get("conditionResult")) or {}
        timeout = _json_field(raw.get("timeout")) or {}
        timeout = timeout if isinstance(timeout, dict) else {}
        tasks.append(
            DsTask(
                code=name,
                name=name,
                type=kind,
                params=params,
                description=raw.get("description") or raw.get("desc") or None,
                retries=int(number(raw.get("maxRetryTimes"))),
                retry_interval=number(raw.get("retryInterval"), 1),
                timeout=number(timeout.get("interval")) if timeout.get("enable") else 0,
                timeout_strategy=timeout.get("strategy") or None,
                priority=str(raw.get("taskInstancePriority") or "MEDIUM").upper(),
                enabled=_flag(raw.get("runFlag", "NORMAL")),
                worker_group=str(raw.get("workerGroup") or "default"),
            )
        )
        edges.extend((str(pre), name) for pre in _json_field(raw.get("preTasks")) or [])
    globals_ = body.get("globalParams", []) if isinstance(body, dict) else []
    return DsWorkflow(
        name=str(item.get("processDefinitionName", "workflow")),
        code=str(item["processDefinitionId"]) if item.get("processDefinitionId") else None,
        project=item.get("projectName"),
        description=item.get("processDefinitionDescription") or None,
        global_params=globals_ if isinstance(globals_, list) else [],
        tasks=tasks,
        edges=edges,
        crontab=item.get("scheduleCrontab") or None,
        timezone_assumed=True,
        start=item.get("scheduleStartTime"),
        end=item.get("scheduleEndTime"),
        schedule_online=str(item.get("scheduleReleaseState") or "ONLINE").upper() == "ONLINE",
        failure_strategy=str(item.get("scheduleFailureStrategy") or "CONTINUE").upper(),
        timeout=number(body.get("timeout") if isinstance(body, dict) else 0),
        warning_type=str(item.get("scheduleWarningType") or "NONE").upper(),
        warning_group=int(number(item.get("scheduleWarningGroupId"))),
        run_priority=str(item.get("scheduleProcessInstancePriority") or "MEDIUM").upper(),
    )


# ----------------------------------------------------------------------------- converting
@dataclass
class _Ctx:
    flow: DsWorkflow
    notes: Notes
    mode: Unmapped
    ids: dict[str, str]  # code -> task id
    global_exprs: dict[str, str]  # name -> Jinja expression of its value (when computed)
    outputs: dict[str, list[str]]  # OUT param name -> task ids that set it
    codes: CodeTable = field(default_factory=dict)
    project: str | None = None  # this workflow's Stratoflow project
    # (sub-workflow task id, OUT param) -> the child's task that sets it
    child_outputs: dict[tuple[str, str], str] = field(default_factory=dict)
    # OUT param -> task id -> the setters whose value reaches the task: the last setter on
    # each path into it (more than one: paths disagree, and DolphinScheduler passes down
    # whichever ended last)
    reach: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    out_values: dict[tuple[str, str], str] = field(default_factory=dict)  # declared value
    out_types: dict[tuple[str, str], str] = field(default_factory=dict)  # declared type
    # sql task id -> the sql tasks that run before it and after it (its pre and post
    # statements, and the other statements of its SQL), each (suffix, body)
    sql_chains: dict[
        str, tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]
    ] = field(default_factory=dict)
    sub_tasks: set[str] = field(default_factory=set)  # the sub-workflow tasks (their ids)
    # Conditions task (now a switch) -> its upstream tasks (not its items' tasks)
    conditions: dict[str, list[str]] = field(default_factory=dict)
    # the tasks made for Conditions tasks' items: each runs after the task its item checks
    # (made here, not a DolphinScheduler post-node of it)
    witnesses: set[str] = field(default_factory=set)


def _property_list(value: Any) -> list[dict[str, Any]]:
    return (
        [p for p in value if isinstance(p, dict) and p.get("prop")]
        if isinstance(value, list)
        else []
    )


def convert(flow: DsWorkflow, mode: Unmapped, codes: CodeTable | None = None) -> ImportedWorkflow:
    """Format v1 from ``flow``; ``codes`` names the other workflows of the import (sub-workflows
    and dependencies reference them by definition code)."""
    name = workflow_name(flow.name)
    notes = Notes(workflow=name)
    if name != flow.name:
        notes.changed(f"workflow {flow.name!r} is named {name!r} (Stratoflow names: a-z 0-9 _ -)")
    doc: dict[str, Any] = {"name": name}
    if flow.project:
        project = workflow_name(str(flow.project))
        doc["project"] = project
        if project != flow.project:
            notes.changed(f"project {flow.project!r} is named {project!r}")
    if flow.description:
        doc["description"] = str(flow.description)
    _schedule(flow, doc, notes)
    _workflow_settings(flow, doc, notes)

    ids = task_ids(flow)
    for task in flow.tasks:
        if ids[task.code] != task.name:
            notes.changed(f"task {task.name!r} is named {ids[task.code]!r}", task=ids[task.code])

    ctx = _Ctx(flow, notes, mode, ids, {}, {}, dict(codes or {}), doc.get("project"))
    if flow.code and flow.code not in ctx.codes:  # a workflow can reference itself
        ctx.codes.update(code_table([flow]))
    doc_params: dict[str, Any] = {}
    for prop in _property_list(flow.global_params):
        key, value = str(prop["prop"]), prop.get("value")
        problems: list[str] = []
        pieces = ds_pieces(
            str(value if value is not None else ""), DsContext(flow.timezone, {}, problems)
        )
        for problem in problems:
            notes.unmapped(problem, field=f"params.{key}")
        if any(is_expr for is_expr, _ in pieces):
            # computed per run: empty by default, each task that reads it computes it unless
            # the run was given a value
            doc_params[key] = ""
            ctx.global_exprs[key] = as_expression(pieces)
        else:
            doc_params[key] = value if isinstance(value, (int, float, bool)) else str(value or "")
        if str(prop.get("direct", "IN")).upper() == "OUT":
            notes.unmapped(
                f"global OUT parameter {key!r}: passed back to a parent's SUB_PROCESS task "
                "imported with it; a run of this workflow on its own has no equivalent",
                field=f"params.{key}",
            )
    if doc_params:
        doc["params"] = doc_params

    for pre, post in flow.edges:
        if pre not in ids or post not in ids:
            notes.unmapped(f"a relation names an unknown task code ({pre} -> {post}); left out")
    parents = _parents(flow, ids)
    for tid, key, declared, kind in _out_props(flow, ids):
        ctx.outputs.setdefault(key, []).append(tid)
        ctx.out_values[tid, key] = declared
        ctx.out_types[tid, key] = kind
    for task in flow.tasks:
        if not task.enabled or task.type not in _SUB_WORKFLOW:
            continue
        tid = ids[task.code]
        ctx.sub_tasks.add(tid)
        child = _child_ref(task, ctx)
        if child is not None:
            # what a child passes back: its workflow's OUT params (DolphinScheduler 3.2+)
            # and those the task declares OUT (earlier versions), each from the child's
            # task that sets it last
            for key in sorted(child.returns - {k for (t, k) in ctx.out_values if t == tid}):
                if key in child.outputs:  # (one no task of the child sets gives nothing)
                    ctx.outputs.setdefault(key, []).append(tid)
            for key in sorted(
                set(child.outputs) & {k for k, ts in ctx.outputs.items() if tid in ts}
            ):
                ctx.child_outputs[tid, key] = child.outputs[key]
    ctx.reach = _reaching(ctx.outputs, parents)

    tasks: dict[str, dict[str, Any]] = {}
    for task in flow.tasks:
        tid = ids[task.code]
        body = _task(task, tid, ctx, parents)
        if parents[tid]:
            body["depends_on"] = parents[tid]
        tasks[tid] = body
    for task in flow.tasks:  # second pass: needs the whole graph (Conditions tasks first:
        if task.type == "CONDITIONS":  # a branch left out hands its place on)
            _conditions(task, ids[task.code], ctx, tasks)
    _switch_children(tasks, notes, ctx.witnesses)  # before a task is left out: branches
    for task in flow.tasks:  # hand their place on
        tid = ids[task.code]
        if task.type == "CONDITIONS":
            continue
        if task.type in _BY_CODE | _K8S and tasks[tid].get("type") == "placeholder":
            reason = tasks[tid].pop("description")
            deps = tasks[tid].get("depends_on")
            tasks[tid] = {"type": "shell", "command": "true\n"}
            if deps:
                tasks[tid]["depends_on"] = deps
            unmapped_task(tasks, tid, task.type, task.name, reason, task.params, mode, notes)
        elif task.type not in _HANDLED:
            reason = (
                _BY_HAND[task.type]
                if task.type in _BY_HAND
                else f"{_PLANNED[task.type]} is not in this version of Stratoflow"
                if task.type in _PLANNED
                else "Stratoflow has no equivalent task type"
            )
            unmapped_task(tasks, tid, task.type, task.name, reason, task.params, mode, notes)
    for tid, (before, after) in ctx.sql_chains.items():
        if tasks.get(tid, {}).get("type") != "sql":
            continue  # disabled: a task that does nothing
        settings = {k: v for k, v in tasks[tid].items() if k not in _SQL_OWN}
        names = chain_around(
            tasks,
            tid,
            [(f"{tid}__{suffix}", {**piece, **settings}) for suffix, piece in before],
            [(f"{tid}__{suffix}", {**piece, **settings}) for suffix, piece in after],
        )
        _chain_note(ctx, tid, names)
    _joins(tasks, notes, ctx.conditions)
    doc["tasks"] = tasks
    pools: dict[str, list[str]] = {}
    for tid, body in tasks.items():
        if body.get("pool"):
            pools.setdefault(body["pool"], []).append(tid)
    pools_to_create(pools, doc.get("project"), "N = the DolphinScheduler task group's size", notes)
    return ImportedWorkflow(name, flow.name, doc if tasks else None, tuple(notes.items))


def _schedule(flow: DsWorkflow, doc: dict[str, Any], notes: Notes) -> None:
    if not flow.crontab:
        return
    converted = quartz_to_schedule(flow.crontab)
    if converted.cron is None:
        notes.unmapped(f"schedule: {converted.problem}", field="schedule")
        return
    if not flow.schedule_online or not flow.workflow_online:
        # an offline workflow's schedule does not fire either (DolphinScheduler takes a
        # workflow offline with its schedules)
        shown_cron = f"({flow.crontab!r} = {converted.cron}, {flow.timezone})"
        what = (
            f"the schedule {shown_cron} was offline"
            if flow.workflow_online
            else f"the workflow was offline (not released), so its schedule {shown_cron} did "
            "not fire"
        )
        notes.changed(
            f"{what}: left out, so imported workflows do not start firing; add it when ready",
            field="schedule",
        )
        return
    schedule: dict[str, Any] = {"cron": converted.cron, "timezone": flow.timezone}
    if flow.timezone_assumed:
        notes.changed("the export names no time zone: the schedule reads UTC", field="schedule")
    for key, value in (("start", flow.start), ("end", flow.end)):
        if value:
            schedule[key] = str(value).replace(" ", "T")
    doc["schedule"] = schedule


_ON_TIMEOUT = {"WARN": "warn", "FAILED": "fail", "WARNFAILED": "warn_fail"}
_WARNING_EVENTS = {"FAILURE": ("failure",), "SUCCESS": ("success",), "ALL": ("success", "failure")}


def _workflow_settings(flow: DsWorkflow, doc: dict[str, Any], notes: Notes) -> None:
    if flow.failure_strategy == "END":
        doc["on_failure"] = "stop"
    if flow.execution_type != "PARALLEL":
        doc["max_active_runs"] = 1
        if flow.execution_type != "SERIAL_WAIT":
            notes.unmapped(
                f"execution type {flow.execution_type}: runs are serial (max_active_runs 1) "
                "and wait; none is discarded or reordered"
            )
    if flow.timeout:  # DolphinScheduler alerts when a run outlasts it, and lets it run
        doc["sla"] = f"{min(int(flow.timeout * 60), _MAX_SECONDS)}s"
    events = list(_WARNING_EVENTS.get(flow.warning_type, ()))
    if flow.warning_group:
        # its timeout alerts (workflow timeout, task timeout strategies) go there too
        events += ["timeout", "sla_miss"]
        group = f"ds-{flow.warning_group}"
        doc["alerts"] = [{"on": events, "group": group}]
        notes.changed(
            f"warning group {flow.warning_group} is the alert group {group!r}: `stratoflow "
            "apply` refuses this workflow until the group exists; create it first with "
            f"`stratoflow alerts groups set {group} --channels ...`",
            field="alerts",
        )
    elif flow.warning_type != "NONE":
        notes.unmapped(
            f"warning type {flow.warning_type} names no warning group: add "
            "alerts: [{on: [...], group: ...}] by hand"
        )
    if flow.run_priority not in ("MEDIUM", ""):
        priority = ds_priority(flow.run_priority, "run priority", notes)
        if priority:
            doc["priority"] = priority


_BY_CODE = {*_SUB_WORKFLOW, "DEPENDENT", "SQL"}
# an sql task's own fields: the other ones (retries, timeout, pool, params...) go to each
# task of its chain
_SQL_OWN = frozenset(
    {"type", "connection", "sql", "parameters", "outputs", "depends_on", "trigger_rule",
     "description"}
)  # fmt: skip
_K8S = {"K8S", "KUBERNETES"}
_HANDLED = {"SHELL", "PYTHON", "HTTP", *_K8S, "SWITCH", "CONDITIONS", *_BY_CODE}


def _ds_context(
    task: DsTask,
    tid: str,
    ctx: _Ctx,
    parents: Mapping[str, list[str]],
    *,
    in_params: bool = False,
) -> DsContext:
    """What each ``${name}`` of the task reads, in DolphinScheduler's order of precedence
    (its docs: startup > local > upstream > global): a local IN param; else the value that
    reaches the task from the last upstream task setting it as an OUT param (its declared
    value if that task did not write it: DolphinScheduler passes the declared one down);
    else the workflow's global param. ``in_params``: for the values of the task's own
    params, which read the run's params only: a global computed per run
    (``${system.biz.date}``) is computed there too."""
    refs: dict[str, str] = {}
    types: dict[str, str] = {}
    for prop in _property_list(ctx.flow.global_params):
        refs[str(prop["prop"])] = param_ref(str(prop["prop"]))
        types[str(prop["prop"])] = _type_of(prop)
    for name, expr in ctx.global_exprs.items():
        refs[name] = f"({param_ref(name)} or ({expr}))" if in_params else param_ref(name)
    ambiguous: dict[str, str] = {}
    for key, reaching in ctx.reach.items():
        setters = reaching.get(tid, frozenset())
        if len(setters) == 1:
            (setter,) = setters
            # not written by it: its declared value, else (empty) the global's
            declared = ctx.out_values.get((setter, key), "")
            fallback = repr(declared) if declared or key not in refs else refs[key]
            ref = _out_ref(ctx, setter, key)
            refs[key] = fallback if ref is None else f"({ref} | default({fallback}))"
            types[key] = ctx.out_types.get((setter, key), "VARCHAR")
        elif setters:
            kinds = {ctx.out_types.get((t, key), "VARCHAR") for t in setters}
            types[key] = kinds.pop() if len(kinds) == 1 else "VARCHAR"
            ambiguous[key] = (
                f"${{{key}}} is set by upstream tasks on different paths "
                f"({', '.join(sorted(setters))}): DolphinScheduler reads the non-empty one "
                "whose task ended first; "
                + (f"read here as the global param {key!r}" if key in refs else "left to the shell")
            )  # fmt: skip
    for prop in _property_list(task.params.get("localParams")):
        if str(prop.get("direct", "IN")).upper() == "IN":
            name = str(prop["prop"])
            refs[name] = param_ref(name)
            types[name] = _type_of(prop)
            ambiguous.pop(name, None)
    return DsContext(ctx.flow.timezone, refs, [], ambiguous, types)


def _type_of(prop: Mapping[str, Any]) -> str:
    """A parameter's declared DolphinScheduler type (VARCHAR when it declares none)."""
    return str(prop.get("type") or "VARCHAR").upper()


def _out_ref(ctx: _Ctx, setter: str, key: str) -> str | None:
    """Output ``key`` of upstream task ``setter``: a sub-workflow task's comes from its child's
    task (each key of its outputs one child task's; missing when that task did not run), and
    None when no task of the child sets it (its outputs are keyed by the child's tasks)."""
    child_task = ctx.child_outputs.get((setter, key))
    if child_task is not None:
        return f"({output_ref(setter, child_task)} | default({{}}))[{key!r}]"
    if setter in ctx.sub_tasks:
        return None
    return output_ref(setter, key)


def _reaching(
    setters: Mapping[str, list[str]], parents: Mapping[str, list[str]]
) -> dict[str, dict[str, frozenset[str]]]:
    """For each OUT param, each task's last setters: along every path into the task, the
    last task on it that sets the param (one pass in topological order per param)."""
    order = _topological(parents)
    out: dict[str, dict[str, frozenset[str]]] = {}
    for key, found in setters.items():
        sets = set(found)
        reach: dict[str, frozenset[str]] = {}
        for tid in order:
            into: set[str] = set()
            for parent in parents.get(tid, []):
                into |= {parent} if parent in sets else reach.get(parent, frozenset())
            reach[tid] = frozenset(into)
        out[key] = reach
    return out


def _topological(parents: Mapping[str, list[str]]) -> list[str]:
    """The tasks, each after its parents (those in a cycle, which validation refuses, last)."""
    children: dict[str, list[str]] = {t: [] for t in parents}
    waiting = {t: len(ps) for t, ps in parents.items()}
    for tid, ps in parents.items():
        for parent in ps:
            children.setdefault(parent, []).append(tid)
    ready = [t for t, n in waiting.items() if n == 0]
    order: list[str] = []
    while ready:
        tid = ready.pop()
        order.append(tid)
        for child in children.get(tid, []):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return order + [t for t in parents if waiting[t] > 0]


_SET_VALUE_LINE = re.compile(r"^(\s*)echo\s+(['\"])\$\{setValue\(([^=()]+)=(.*)\)\}\2\s*$", re.M)


def _task(task: DsTask, tid: str, ctx: _Ctx, parents: Mapping[str, list[str]]) -> dict[str, Any]:
    notes = ctx.notes
    ds = _ds_context(task, tid, ctx, parents)
    body: dict[str, Any] = {}
    p = task.params
    if task.type == "SHELL":
        script = _SET_VALUE_LINE.sub(
            lambda m: (
                f'{m.group(1)}echo {m.group(2)}{m.group(3)}={m.group(4)}{m.group(2)} >> "$STRATOFLOW_OUTPUT"'
            ),
            str(p.get("rawScript", "")),
        )
        if "setValue(" in script:
            notes.unmapped(
                "a ${setValue(...)} the importer could not read: write key=value lines to $STRATOFLOW_OUTPUT",
                task=tid,
            )
        body = {"type": "shell", "command": rewrite_ds(script, ds)}
    elif task.type == "PYTHON":
        body = _python(str(p.get("rawScript", "")), ds, tid, notes)
    elif task.type == "HTTP":
        body = _http(p, ds, tid, notes)
    elif task.type in ("K8S", "KUBERNETES"):
        body = _kubernetes(p, ds, tid, notes)
    elif task.type == "SWITCH":
        body = _switch(p, ds, tid, ctx)
    elif task.type in _SUB_WORKFLOW:
        body = _sub_workflow(p, ds, tid, ctx)
    elif task.type == "DEPENDENT":
        body = _dependent(p, tid, ctx)
    elif task.type == "SQL":
        body = _sql(p, ds, tid, ctx)
    else:
        body = {"type": "shell", "command": "true\n"}  # replaced in the second pass
    for problem in ds.problems:
        notes.unmapped(problem, task=tid)
    if task.description:
        body["description"] = str(task.description)
    _task_settings(task, tid, body, ctx)
    # what the task's own params read (the run's params only): one context for both, its
    # problems said once
    own = _ds_context(task, tid, ctx, parents, in_params=True)
    _local_params(task, tid, body, ctx, own)
    _pass_to_child(task, tid, body, ctx, own)
    for problem in own.problems:
        notes.unmapped(problem, task=tid)
    if not task.enabled and task.type in _HANDLED:
        notes.changed(
            "disabled in DolphinScheduler (flag NO): imported as a task that does nothing", task=tid
        )
        body = {k: v for k, v in body.items() if k in ("description", "depends_on")}
        # quoted: bash reads an unquoted "(" as a syntax error, and the task failed
        body.update(type="shell", command=f": 'disabled in DolphinScheduler ({task.type} task)'\n")
    return body


# DolphinScheduler reads each line of a Python task's output that is ``${setValue(k=v)}``
# as its OUT parameter k: the lines go on to the log, and each such one to the outputs too
# (pipefail: the script's exit status stays the task's; -u: its output in order)
_SET_VALUE_FILTER = (
    "set -o pipefail\n"
    'stratoflow_set_value() { while IFS= read -r line || [ -n "$line" ]; do '
    "printf '%s\\n' \"$line\"; case $line in '${setValue('*')}') "
    "kv=${line#'${setValue('}; printf '%s\\n' \"${kv%')}'}\" >> \"$STRATOFLOW_OUTPUT\";; "
    "esac; done; }\n"
)


def _python(script: str, ds: DsContext, tid: str, notes: Notes) -> dict[str, Any]:
    rewritten = rewrite_ds(script, ds)
    try:
        compile(script, "<python>", "exec")
        compiles = True
    except SyntaxError:
        compiles = False
    sets_values = "${setValue(" in script
    if rewritten == script and compiles and not sets_values:
        return {"type": "python", "code": script}
    why = (
        "it reads DolphinScheduler parameters"
        if rewritten != script
        else "it prints ${setValue(...)} lines, its OUT parameters"
        if compiles
        else "it is not Python 3 syntax"
    )
    notes.changed(
        f"a shell task running python3 on the script, since {why} (text substitution, as DolphinScheduler does)",
        task=tid,
    )
    run = "python3 - <<'STRATOFLOW_PYTHON_EOF'\n"
    if sets_values:
        run = _SET_VALUE_FILTER + "python3 -u - <<'STRATOFLOW_PYTHON_EOF' | stratoflow_set_value\n"
    return {
        "type": "shell",
        "command": run + rewritten.rstrip("\n") + "\nSTRATOFLOW_PYTHON_EOF\n",
    }


def _http(p: dict[str, Any], ds: DsContext, tid: str, notes: Notes) -> dict[str, Any]:
    url = rewrite_ds(str(p.get("url", "")), ds)
    method = str(p.get("httpMethod") or p.get("http_method") or "GET").upper()
    body: dict[str, Any] = {"type": "http", "url": url, "method": method}
    query: list[str] = []
    headers: dict[str, str] = {}
    form: dict[str, str] = {}
    for item in p.get("httpParams") or []:
        if not isinstance(item, dict):
            continue
        kind = str(item.get("httpParametersType", "PARAMETER")).upper()
        prop, value = str(item.get("prop", "")), rewrite_ds(str(item.get("value", "")), ds)
        if kind.startswith("HEADER"):
            headers[prop] = value
        elif kind == "BODY":
            form[prop] = value
        else:
            query.append(f"{prop}={value}")
    if query:
        body["url"] = url + ("&" if "?" in url else "?") + "&".join(query)
        notes.changed(
            "query parameters are appended to the url as written (not URL-encoded)", task=tid
        )
    if headers:
        body["headers"] = headers
    if p.get("httpBody"):
        body["body"] = rewrite_ds(str(p["httpBody"]), ds)
    elif form:
        body["body"] = form
    for key in ("connectTimeout", "socketTimeout"):
        if p.get(key):
            notes.unmapped(
                f"{key} {p[key]} ms has no equivalent (the task's timeout bounds the call)",
                task=tid,
            )
    check = str(p.get("httpCheckCondition") or "STATUS_CODE_DEFAULT").upper()
    if check == "STATUS_CODE_DEFAULT":
        body["expected_status"] = [200]
    elif check == "STATUS_CODE_CUSTOM":
        codes = [int(c) for c in re.findall(r"[0-9]{3}", str(p.get("condition", "")))]
        body["expected_status"] = codes or [200]
    else:
        notes.unmapped(
            f"the response check {check} ({p.get('condition')!r}) has no equivalent; any 2xx passes",
            task=tid,
        )
    return body


def _kubernetes(p: dict[str, Any], ds: DsContext, tid: str, notes: Notes) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "kubernetes", "image": rewrite_ds(str(p.get("image", "")), ds)}
    namespace = _json_field(p.get("namespace"))
    if isinstance(namespace, dict):
        if namespace.get("name"):
            body["namespace"] = str(namespace["name"])
        if namespace.get("cluster"):
            notes.unmapped(
                f"cluster {namespace['cluster']!r}: the stack's EKS cluster is used", task=tid
            )
    elif namespace:
        body["namespace"] = str(namespace)
    command = _json_field(p.get("command")) or []
    args = _json_field(p.get("args")) or []
    command = command if isinstance(command, list) else [str(command)]
    args = args if isinstance(args, list) else [str(args)]
    if not command:
        # the container's command unset: the image's ENTRYPOINT runs (with the args), where
        # a kubernetes task's command takes the entrypoint's place
        return _cannot(
            f"no command: DolphinScheduler runs the entrypoint of image {body['image']!r}"
            f"{' with args ' + shown(args) if args else ''}, which the import cannot know; a "
            "kubernetes task runs its command in place of the entrypoint: write the "
            "entrypoint and its arguments as its command"
        )
    body["command"] = [rewrite_ds(str(c), ds) for c in [*command, *args]]
    cpu = p.get("minCpuCores") or p.get("min_cpu_cores")
    memory = p.get("minMemorySpace") or p.get("min_memory_space")
    if cpu:
        body["cpu"] = f"{number(cpu):g}"
    if memory:
        body["memory"] = f"{number(memory):g}Mi"
    for key in ("customizedLabels", "nodeSelectors", "pullSecret", "imagePullPolicy", "kubeConfig"):
        if p.get(key):
            notes.unmapped(f"{key} has no equivalent", task=tid)
    return body


def _targets(value: Any, ctx: _Ctx, tid: str) -> list[str]:
    """A switch's ``nextNode``: one task code (3.1 on) or a list of them (3.0)."""
    codes = value if isinstance(value, list) else [] if value in (None, "") else [value]
    found = []
    for code in codes:
        if str(code) in ctx.ids:
            found.append(ctx.ids[str(code)])
        else:
            ctx.notes.unmapped(
                f"a switch branch names unknown task code {code}; left out", task=tid
            )
    return found


def _switch(p: dict[str, Any], ds: DsContext, tid: str, ctx: _Ctx) -> dict[str, Any]:
    result = p.get("switchResult") or {}
    cases: list[dict[str, Any]] = []
    for branch in result.get("dependTaskList") or []:
        targets = _targets(branch.get("nextNode"), ctx, tid)
        if not targets:
            continue
        try:
            when, caveats = js_condition(str(branch.get("condition", "")), ds)
            check_syntax("{{ " + when + " }}")
            for caveat in caveats:
                ctx.notes.changed(
                    f"switch condition {branch.get('condition')!r}: {caveat}", task=tid
                )
        except (Unsupported, TemplateError) as exc:
            ctx.notes.unmapped(
                f"switch condition {branch.get('condition')!r}: {exc}; this branch is never chosen",
                task=tid,
            )
            continue
        cases.append({"when": "{{ " + when + " }}", "next": targets})
    body: dict[str, Any] = {"type": "switch", "cases": cases}
    default = _targets(result.get("nextNode"), ctx, tid)
    if default:
        body["default"] = default
    if cases:
        ctx.notes.changed(
            "switch conditions translated from JavaScript to Jinja expressions (each "
            "${name} read as DolphinScheduler pastes it: its text inside a string literal, "
            "else a number when it is declared one or its text is one; JavaScript's == and "
            "other operators kept with the js_value and js_op filters)",
            task=tid,
        )
    else:
        ctx.notes.unmapped(
            "the switch has no condition that maps: it always takes its default", task=tid
        )
        # a case that never holds (the default is taken); with no default, the tasks after
        # the switch get one (_switch_children)
        body["cases"] = [{"when": _NEVER, "next": default}] if default else []
    return body


_NEVER = "{{ false }}"  # a switch case that never holds


def _switch_children(tasks: dict[str, dict[str, Any]], notes: Notes, witnesses: set[str]) -> None:
    """Make every task after a switch one of its branches, as Stratoflow requires (one that
    is none would run whatever the switch chose). DolphinScheduler goes on after a switch
    (or a Conditions task) only to the branch it selected (DagHelper.parsePostNodes), so a
    post-node no condition and not the default names, or named only by a condition that
    did not convert, never runs after it: it becomes the branch of a case that never holds,
    skipped whenever the switch runs. A task made for a Conditions task's item that checks
    the switch (``witnesses``) must run whatever the switch chose: it is in every case and
    the default. A switch with no case left and nothing after it chooses nothing: a task
    that does nothing."""
    children: dict[str, list[str]] = {}
    for tid, body in tasks.items():
        for dep in body.get("depends_on", []):
            children.setdefault(dep, []).append(tid)
    for sid, body in tasks.items():
        if body.get("type") != "switch":
            continue
        cases: list[dict[str, Any]] = body.setdefault("cases", [])
        named = {t for case in cases for t in case["next"]} | set(body.get("default", []))
        rest = [t for t in children.get(sid, []) if t not in named]
        always = [t for t in rest if t in witnesses]
        never = [t for t in rest if t not in witnesses]
        if always:
            for case in cases:
                case["next"] = [*case["next"], *always]
            body["default"] = [*body.get("default", []), *always]
        if never:
            cases.append({"when": _NEVER, "next": never})
            for tid in never:
                notes.changed(
                    f"after switch {sid} but in none of its branches: DolphinScheduler goes on "
                    f"after a switch only to the branch it selected, so it never runs after "
                    f"{sid}; here it is the branch of a case that never holds ({_NEVER}), "
                    f"skipped whenever {sid} runs",
                    task=tid,
                )
        if not cases:
            keep = {k: v for k, v in body.items() if k not in ("type", "cases", "default")}
            body.clear()
            body.update({"type": "shell", "command": "true\n", **keep})
            notes.changed(
                "a switch with no condition that maps, no default and no task after it: "
                "it chooses nothing, a task that does nothing",
                task=sid,
            )


# a Conditions item's status -> the trigger rule of the task that runs when its task ended
# so (and the word in that task's name)
_WITNESS = {"SUCCESS": ("all_success", "succeeded"), "FAILURE": ("all_failed", "failed")}


def _conditions(task: DsTask, tid: str, ctx: _Ctx, tasks: dict[str, dict[str, Any]]) -> None:
    """A Conditions task as DolphinScheduler runs it: once all its upstream tasks ended,
    whatever their states (``all_done``), it checks each item (its task ended with the
    status it names: a skipped task, or one that did not run, did not), combines them by
    the groups' relations, and takes its success branch or its failed branch; the other
    is skipped. Stratoflow's templates read outputs, not states: each item becomes a task
    that runs only when its task ended so (``all_success`` / ``all_failed`` over it) and
    says ``met=true``, and the Conditions task a switch that reads them."""
    dependence = task.params.get("dependence") or {}
    result = task.params.get("conditionResult") or {}
    outer = str(dependence.get("relation") or "AND").upper()
    groups = [g for g in dependence.get("dependTaskList") or [] if isinstance(g, dict)]
    success = [b for b in _branch_ids(result.get("successNode"), ctx) if b in tasks]
    failed = [b for b in _branch_ids(result.get("failedNode"), ctx) if b in tasks]
    body = tasks[tid]
    upstream = list(body.get("depends_on", []))
    relations = {outer} | {str(g.get("relation") or "AND").upper() for g in groups}
    items = [i for g in groups for i in g.get("dependItemList") or [] if isinstance(i, dict)]
    statuses = {str(i.get("status") or "SUCCESS").upper() for i in items}
    if not items or relations - {"AND", "OR"} or statuses - set(_WITNESS):
        reason = (
            f"its relations {sorted(relations)} or item statuses {sorted(statuses)} are not "
            "AND/OR and SUCCESS/FAILURE, or it checks nothing"
        )
        unmapped_task(tasks, tid, "CONDITIONS", task.name, reason, task.params, ctx.mode, ctx.notes)
        return
    taken = set(tasks)
    witnesses: dict[tuple[str, str], str] = {}  # (task id, status) -> its witness task
    unknown: list[str] = []

    def item(raw: dict[str, Any]) -> str:
        code = str(raw.get("depTaskCode") or raw.get("depTasks") or "")
        status = str(raw.get("status") or "SUCCESS").upper()
        checked = ctx.ids.get(code)
        if checked is None or checked not in tasks:
            unknown.append(code)
            return "false"  # no such task ran: DolphinScheduler's item fails
        if (checked, status) not in witnesses:
            word = _WITNESS[status][1]
            witnesses[checked, status] = unique(f"{tid}__{checked}_{word}", taken)
        return f"(({output_ref(witnesses[checked, status], 'met')} | default('')) == 'true')"

    parts = []
    for group in groups:
        terms = [item(i) for i in group.get("dependItemList") or [] if isinstance(i, dict)]
        if terms:
            word = " and " if str(group.get("relation") or "AND").upper() == "AND" else " or "
            parts.append(terms[0] if len(terms) == 1 else "(" + word.join(terms) + ")")
    condition = (" and " if outer == "AND" else " or ").join(parts)
    for code in unknown:
        ctx.notes.unmapped(
            f"an item checks unknown task code {code}: it never holds (DolphinScheduler finds "
            "no such task instance)",
            task=tid,
        )
    # the witnesses first, in the order of their items, then the switch
    ordered: dict[str, dict[str, Any]] = {}
    for name, existing in tasks.items():
        if name == tid:
            for (checked, status), witness in witnesses.items():
                ordered[witness] = {
                    "type": "shell",
                    "description": f"{checked} {_WITNESS[status][1]} ({tid}'s condition)",
                    "depends_on": [checked],
                    "trigger_rule": _WITNESS[status][0],
                    "command": 'echo "met=true" >> "$STRATOFLOW_OUTPUT"\n',
                }
        ordered[name] = existing
    tasks.clear()
    tasks.update(ordered)
    # its own settings stay (description, pool, priority, timeout...); the tasks made for
    # its items are the importer's and take none
    drop = ("type", "command", "cases", "default", "depends_on", "trigger_rule")
    new: dict[str, Any] = {k: v for k, v in body.items() if k not in drop}
    new["depends_on"] = upstream + [w for w in witnesses.values() if w not in upstream]
    new["trigger_rule"] = "all_done"
    if success or failed:
        new["type"] = "switch"
        if success:
            new["cases"] = [{"when": "{{ " + condition + " }}", "next": success}]
            if failed:
                new["default"] = failed
        else:
            new["cases"] = [{"when": "{{ not (" + condition + ") }}", "next": failed}]
    else:  # no branch: a task that runs once its upstream tasks ended, doing nothing
        new.update(type="shell", command="true\n")
        new["depends_on"] = upstream
    tasks[tid] = new
    ctx.notes.changed(
        f"the Conditions task is a switch that runs once all its upstream tasks ended "
        f"(all_done) and reads {', '.join(witnesses.values()) or 'nothing'}, each a task "
        "that runs only when the task it checks ended so; it takes its success branch, "
        "else its failed branch. A failed task fails the Stratoflow run, where "
        "DolphinScheduler does not count a failure that only Conditions tasks follow",
        task=tid,
    )
    ctx.conditions[tid] = [t for t in upstream if t not in witnesses.values()]
    ctx.witnesses.update(witnesses.values())


def _branch_ids(value: Any, ctx: _Ctx) -> list[str]:
    """A Conditions task's success or failed nodes (codes; 1.x: names) as task ids."""
    codes = value if isinstance(value, list) else [] if value in (None, "") else [value]
    return [ctx.ids.get(str(c), str(c)) for c in codes if str(c)]


# trigger rules that skip a task whose upstream tasks were not all skipped
_SKIP_SOURCES = frozenset({"all_failed", "one_failed"})


def _joins(
    tasks: dict[str, dict[str, Any]], notes: Notes, conditions: Mapping[str, list[str]]
) -> None:
    """DolphinScheduler skips a task only when all its upstream tasks were skipped
    (DagHelper.isTaskNodeNeedSkip; its 3.3 engine: isAllPredecessorsSkipped), and runs it
    once they all ended and none failed. With one upstream task that is all_success; a task
    with several, one of which a skip can reach, gets the rule that says it,
    ``none_failed_min_one_success`` (Airflow's), or ``none_failed`` where one of its upstream
    tasks always runs when it would (the two are the same then, and none_failed reads
    plainer). ``conditions``: the Conditions tasks (now switches that run once their
    upstream tasks ended) and those upstream tasks."""
    branches: dict[str, list[str]] = {}  # task -> the switches that choose it
    for sid, body in tasks.items():
        if body.get("type") == "switch":
            targets = {t for case in body.get("cases", []) for t in case["next"]}
            for target in targets | set(body.get("default", [])):
                branches.setdefault(target, []).append(sid)
    parents = {t: list(body.get("depends_on", [])) for t, body in tasks.items()}
    skippable: dict[str, bool] = {}
    for tid in _topological(parents):
        ups = parents[tid]
        rule = tasks[tid].get("trigger_rule", "all_success")
        if conditions.get(tid) and all(skippable.get(u) for u in conditions[tid]):
            notes.unmapped(
                "its upstream tasks may all be skipped: DolphinScheduler then skips it and "
                "both its branches, where here it runs and takes its failed branch (all_done "
                "has no 'unless all were skipped')",
                task=tid,
            )
        if rule == "all_success" and len(ups) > 1 and any(skippable.get(u) for u in ups):
            exact = not all(skippable.get(u) for u in ups) or _always_one_runs(
                tid, tasks, parents, branches, skippable
            )
            switches = [s for s in branches.get(tid, []) if not skippable.get(s)]
            if exact or switches or tid in branches:
                tasks[tid]["trigger_rule"] = "none_failed"
                why = (
                    "one of them always runs when it would"
                    if exact
                    else f"the switch {switches[0]} always runs before it"
                    if switches
                    else None
                )
                if why is None:
                    notes.unmapped(
                        "trigger rule none_failed, as DolphinScheduler runs a task unless all "
                        "its upstream tasks were skipped; but as a switch branch it keeps "
                        "the switch as its upstream task, and when all of them are skipped "
                        "it runs where DolphinScheduler skips it (the switch that chose it "
                        "ran, so none_failed_min_one_success would run it too)",
                        task=tid,
                    )
                else:
                    notes.changed(
                        "trigger rule none_failed: DolphinScheduler runs a task unless all "
                        f"its upstream tasks were skipped ({why}, so none_failed says it)",
                        task=tid,
                    )
                skippable[tid] = tid in branches
            else:
                tasks[tid]["trigger_rule"] = "none_failed_min_one_success"
                notes.changed(
                    "trigger rule none_failed_min_one_success: DolphinScheduler runs a task "
                    "unless all its upstream tasks were skipped, which they all may be here",
                    task=tid,
                )
                skippable[tid] = True
        elif tid in branches or rule in _SKIP_SOURCES:
            skippable[tid] = True
        elif rule in ("all_success", "one_success"):
            skippable[tid] = bool(ups) and (
                any(skippable.get(u) for u in ups)
                if rule == "all_success"
                else all(skippable.get(u) for u in ups)
            )
        else:
            skippable[tid] = False  # none_failed, all_done: never skipped


def _always_one_runs(
    tid: str,
    tasks: dict[str, dict[str, Any]],
    parents: Mapping[str, list[str]],
    branches: Mapping[str, list[str]],
    skippable: Mapping[str, bool],
) -> bool:
    """Whether a switch that always runs (no skip reaches it) has a default and, whichever
    branch it chooses, one of ``tid``'s upstream tasks follows that branch (is it, or after
    it through tasks with it as their only upstream): then one of them runs."""

    def follows(task: str) -> str | None:
        seen = 0
        while task not in branches:
            ups = parents.get(task, [])
            rule = tasks.get(task, {}).get("trigger_rule", "all_success")
            if len(ups) != 1 or rule != "all_success" or seen > len(tasks):
                return None
            task, seen = ups[0], seen + 1
        return task

    heads = {follows(u) for u in parents[tid]} - {None}
    for switch in {s for h in heads for s in branches.get(str(h), [])}:
        body = tasks[switch]
        if skippable.get(switch) or not body.get("default"):
            continue
        choices = [c["next"] for c in body.get("cases", []) if c["when"] != _NEVER]
        choices.append(body["default"])
        if all(heads & set(choice) for choice in choices):
            return True
    return False


def _task_settings(task: DsTask, tid: str, body: dict[str, Any], ctx: _Ctx) -> None:
    notes = ctx.notes
    if task.retries > 0:
        body["retries"] = min(task.retries, _MAX_RETRIES)
        if task.retries > _MAX_RETRIES:
            notes.unmapped(f"{task.retries} retries: at most {_MAX_RETRIES}", task=tid)
        body["retry_delay"] = f"{min(max(int(task.retry_interval * 60), 0), _MAX_SECONDS)}s"
    strategy = str(task.timeout_strategy or "").upper()
    if task.timeout > 0 and strategy not in _ON_TIMEOUT:
        # only FAILED and WARNFAILED kill the task (TaskExecutionContextBuilder), only WARN
        # and WARNFAILED alert: with none (pydolphinscheduler's timeout without
        # timeout_notify_strategy) the timeout does nothing
        notes.changed(
            f"timeout {task.timeout:g} min without a timeout strategy "
            f"({task.timeout_strategy or 'none'}): DolphinScheduler neither fails nor alerts "
            "on it, so it is left out",
            task=tid,
        )
    elif task.timeout > 0:
        body["timeout"] = f"{min(int(task.timeout * 60), _MAX_SECONDS)}s"
        # DolphinScheduler's timeout strategies: WARN alerts and lets it run, FAILED fails it,
        # WARNFAILED does both; the alert goes to the workflow's warning group
        body["on_timeout"] = _ON_TIMEOUT[strategy]
    if task.delay_time > 0:
        notes.unmapped(f"delay time {task.delay_time:g} min has no equivalent", task=tid)
    priority = ds_priority(task.priority, "task priority", notes, tid) if task.priority else None
    if task.task_group_id > 0:
        # the export carries the task group's id only (not its name nor its size)
        body["pool"] = f"taskgroup-{task.task_group_id}"
        if task.task_group_priority:
            # the task group's own order (higher first) is what orders the task in the pool
            if priority:
                notes.changed(
                    f"task priority {task.priority} is replaced by its task group priority "
                    f"{task.task_group_priority:g}",
                    task=tid,
                )
            priority = clamped_priority(task.task_group_priority, "task group priority", notes, tid)
    if priority:
        body["priority"] = priority
    if task.worker_group not in ("default", ""):
        notes.unmapped(f"worker group {task.worker_group!r} has no equivalent", task=tid)
    for key, value in task.extra.items():
        notes.unmapped(f"{key} = {value!r} has no equivalent", task=tid)
    if task.params.get("resourceList"):
        notes.unmapped(f"resources {shown(task.params['resourceList'])} are not copied", task=tid)


def _local_params(task: DsTask, tid: str, body: dict[str, Any], ctx: _Ctx, ds: DsContext) -> None:
    params: dict[str, Any] = {}
    for prop in _property_list(task.params.get("localParams")):
        key = str(prop["prop"])
        if str(prop.get("direct", "IN")).upper() == "OUT":
            _out_param(task, tid, key, prop, ctx)
            continue
        params[key] = rewrite_ds(str(prop.get("value") or ""), ds)
    text = json.dumps(body)  # every field the task's templates are in
    for name, expr in ctx.global_exprs.items():
        if name not in params and param_ref(name) in text:
            params[name] = "{{ " + f"{param_ref(name)} or ({expr})" + " }}"
    if params:
        body["params"] = params


def _out_param(task: DsTask, tid: str, key: str, prop: dict[str, Any], ctx: _Ctx) -> None:
    """Note what becomes of an OUT parameter: a shell task's ``${setValue(key=...)}`` lines
    are rewritten to outputs (``_task``); anything else is not, and the report says so, so
    that a downstream reference reading nothing is not a surprise."""
    if str(prop.get("type", "")).upper() == "FILE":
        ctx.notes.unmapped(
            f"OUT file parameter {key!r} (FILE({prop.get('value') or ''})): files are not "
            "passed between tasks; write the file to shared storage and set its path as an "
            f"output ({key}=PATH in $STRATOFLOW_OUTPUT)",
            task=tid,
        )
    elif task.type in _SUB_WORKFLOW:
        if (tid, key) not in ctx.child_outputs:
            ctx.notes.unmapped(
                f"OUT parameter {key!r}: the sub-workflow sets no OUT param {key!r} that it "
                "ends with (none in this import, or several on paths that do not meet)",
                task=tid,
            )
    elif task.type not in ("SHELL", "PYTHON"):
        ctx.notes.unmapped(
            f"OUT parameter {key!r}: set outputs[{key!r}] (python) instead", task=tid
        )
    elif f"setValue({key}=" not in str(task.params.get("rawScript", "")):
        how = (
            f'echo "{key}=VALUE" >> "$STRATOFLOW_OUTPUT"'
            if task.type == "SHELL"
            else f'print("${{setValue({key}=VALUE)}}")'
        )
        ctx.notes.unmapped(
            f"OUT parameter {key!r} is never set by the script (no ${{setValue({key}=...)}}): "
            f"it is left out; set it with {how}",
            task=tid,
        )


# ----------------------------------------------------------------------------- by code
def _cannot(reason: str) -> dict[str, Any]:
    """A task body the second pass turns into a placeholder (or leaves out) with ``reason``."""
    return {"type": "placeholder", "description": reason}


def _child_code(p: Mapping[str, Any]) -> str | None:
    """The definition code a sub-workflow task's params name its child by, if any."""
    for k in ("workflowDefinitionCode", "processDefinitionCode", "processDefinitionId"):
        if p.get(k) not in (None, ""):
            return str(p[k])
    return None


def _child_ref(task: DsTask, ctx: _Ctx) -> DsRef | None:
    """The workflow of this import a sub-workflow task runs, if named by its code."""
    code = _child_code(task.params)
    return None if code is None else ctx.codes.get(code)


def _workflow_ref(
    code: str, ctx: _Ctx, name: Any = None, project: Any = None
) -> tuple[str, DsRef] | None:
    """``name`` or ``project/name`` of the workflow with definition ``code`` in this import
    (pydolphinscheduler YAML names it instead: ``name`` in ``project``)."""
    ref = ctx.codes.get(code)
    if ref is None and name not in (None, ""):
        ref = DsRef(
            workflow_name(str(project)) if project else ctx.project, workflow_name(str(name)), {}
        )
    if ref is None:
        return None
    if ref.project and ref.project != ctx.project:
        return f"{ref.project}/{ref.name}", ref
    return ref.name, ref


def _not_in_import(what: str, code: str) -> str:
    return (
        f"{what} definition code {code} is not a workflow of this import: import its export "
        "in the same `stratoflow import`, or write its name by hand"
    )


def _sub_workflow(p: dict[str, Any], ds: DsContext, tid: str, ctx: _Ctx) -> dict[str, Any]:
    code = _child_code(p)
    if p.get("workflowName"):  # pydolphinscheduler YAML: by name
        found = _workflow_ref("", ctx, p["workflowName"])
        assert found is not None
        ctx.notes.changed(f"the sub-workflow {p['workflowName']!r} is {found[0]!r}", task=tid)
        return {"type": "workflow", "workflow": found[0]}
    if code is None:
        return _cannot("the sub-workflow names no definition code")
    found = _workflow_ref(code, ctx)
    if found is None:
        return _cannot(_not_in_import("the sub-workflow's", code))
    ctx.notes.changed(f"the sub-workflow (definition code {code}) is {found[0]!r}", task=tid)
    return {"type": "workflow", "workflow": found[0]}


def _pass_to_child(task: DsTask, tid: str, body: dict[str, Any], ctx: _Ctx, ds: DsContext) -> None:
    """DolphinScheduler gives a sub-workflow the parent's global params and its upstream
    tasks' OUT params over the child's own globals: each the child declares is passed
    (the task's local IN params, already in ``body``, win); a child takes no other."""
    child = _child_ref(task, ctx)
    if child is None or body.get("type") != "workflow":
        return
    given = {k: v for k, v in body.get("params", {}).items() if k in child.params}
    dropped = sorted(set(body.get("params", {})) - set(given))
    if dropped:
        body.pop("params")  # what remains is set below
        ctx.notes.unmapped(
            f"local params {', '.join(dropped)} are not passed to the sub-workflow: it does "
            "not declare them (a Stratoflow workflow takes only its declared params; declare "
            "them in the child to pass them)", task=tid,
        )  # fmt: skip
    if given:
        body["params"] = given
    passed = {name: "{{ " + ref + " }}" for name in sorted(child.params - set(given))
              if (name in ds.params or name in ds.doubts)
              and (ref := ds.name(name)) is not None}  # fmt: skip
    if passed:
        body["params"] = {**passed, **given}
        ctx.notes.changed(
            f"passes {', '.join(passed)} to the sub-workflow as DolphinScheduler does (the "
            "parent's global params and upstream OUT params it declares)", task=tid,
        )  # fmt: skip
    kept = sorted(k for k in ctx.outputs if k not in child.params and k not in given
                  and "tasks" in ds.params.get(k, ""))  # fmt: skip
    if kept:
        ctx.notes.unmapped(
            f"upstream OUT params {', '.join(kept)} are not passed to the sub-workflow: "
            "DolphinScheduler passes them all, a Stratoflow workflow takes only the params it "
            "declares (declare them in the child to pass them)", task=tid,
        )  # fmt: skip


# DolphinScheduler's date values as the dependency task's: same names, one spelled differently
_DATE_VALUES = (
    {v.value: v.value for v in DateValue}
    | {v.name: v.value for v in DateValue}
    | {"last1Hour": DateValue.LAST_1_HOURS.value}
    | {  # pydolphinscheduler's DependentDate names
        f"LAST_{n}_{unit}": DateValue[f"LAST_{d}_{unit}"].value
        for n, d in (("ONE", 1), ("TWO", 2), ("THREE", 3), ("SEVEN", 7), ("TWENTY_FOUR", 24))
        for unit in ("HOURS", "DAYS")
        if f"LAST_{d}_{unit}" in DateValue.__members__
    }
    | {"LAST_ONE_HOUR": DateValue.LAST_1_HOURS.value}
)
_WHOLE_RUN = {"0", "-1", "ALL", "None", ""}


def _dependent(p: dict[str, Any], tid: str, ctx: _Ctx) -> dict[str, Any]:
    dependence = p.get("dependence") or {}
    outer = str(dependence.get("relation") or "AND").upper()
    groups = [g for g in dependence.get("dependTaskList") or [] if isinstance(g, dict)]
    # the relations that matter: between groups when there are several, within a group of
    # several items; one level of all/any says it when they are all the same
    relations = {outer} if len(groups) > 1 else set()
    raw_items: list[dict[str, Any]] = []
    for group in groups:
        group_items = [i for i in group.get("dependItemList") or [] if isinstance(i, dict)]
        if len(group_items) > 1:
            relations.add(str(group.get("relation") or "AND").upper())
        raw_items.extend(group_items)
    relations = relations or {"AND"}
    if not raw_items:
        return _cannot("the dependent task checks nothing")
    if len(relations) != 1 or relations - {"AND", "OR"}:
        return _cannot(
            "its groups mix AND and OR: a dependency task has one level (all or any); "
            "split it into several dependency tasks"
        )
    if len(raw_items) > MAX_DEPENDENCY_ITEMS:
        return _cannot(
            f"{len(raw_items)} items: a dependency task checks at most {MAX_DEPENDENCY_ITEMS}"
        )
    items: list[dict[str, Any]] = []
    for raw in raw_items:
        code = str(raw.get("definitionCode") or raw.get("definitionId") or "")
        found = _workflow_ref(code, ctx, raw.get("definitionName"), raw.get("projectName"))
        if found is None:
            return _cannot(_not_in_import("a dependency item's", code or "(none)"))
        ref_name, ref = found
        date = _DATE_VALUES.get(str(raw.get("dateValue") or ""))
        if date is None:
            return _cannot(f"date value {raw.get('dateValue')!r} has no equivalent")
        item: dict[str, Any] = {"workflow": ref_name, "date": date}
        task_code = str(raw.get("depTaskCode", raw.get("depTasks", "0")))
        if raw.get("depTaskName"):  # pydolphinscheduler YAML
            item["task"] = task_id(str(raw["depTaskName"]))
        elif task_code not in _WHOLE_RUN:
            upstream_task = ref.tasks.get(task_code) or (
                task_id(task_code) if "depTasks" in raw else None  # 1.x names the task
            )
            if upstream_task is None:
                return _cannot(f"task code {task_code} is not a task of {ref_name!r}")
            item["task"] = upstream_task
        items.append(item)
    body: dict[str, Any] = {"type": "dependency", ("all" if relations == {"AND"} else "any"): items}
    interval = number(dependence.get("checkInterval") or p.get("checkInterval"))
    if interval > 0:
        seconds = min(max(int(interval), 5), 86400)
        body["check_interval"] = f"{seconds}s"
        if seconds != int(interval):
            ctx.notes.changed(f"check interval {interval:g}s is {seconds}s (5s to 1 day)", task=tid)
    policy = str(dependence.get("failurePolicy") or p.get("failurePolicy") or "").upper()
    if policy and policy != "DEPENDENT_FAILURE_FAILURE":
        ctx.notes.unmapped(
            f"failure policy {policy} has no equivalent: a failed upstream fails the task",
            task=tid,
        )
    return body


def _sql(p: dict[str, Any], ds: DsContext, tid: str, ctx: _Ctx) -> dict[str, Any]:
    kind = str(p.get("type") or "").upper()
    source = p.get("datasourceName") or p.get("datasource")
    if source in (None, ""):
        return _cannot("the SQL task names no datasource")
    connection = workflow_name(str(source) if p.get("datasourceName") else f"datasource-{source}")
    if not kind:  # pydolphinscheduler YAML names the datasource, not its type
        ctx.notes.changed(
            f"runs on the connection {connection!r} (datasource {source}): create it with "
            "`stratoflow connections add` with the datasource's type (postgresql, mysql, "
            "athena or redshift-data)",
            task=tid,
        )
    elif kind in _CONNECTION_TYPES:
        ctx.notes.changed(
            f"runs on the connection {connection!r} (datasource {source}): create it with "
            f"`stratoflow connections add {connection} --type {_CONNECTION_TYPES[kind]} ...`",
            task=tid,
        )
    else:
        ctx.notes.unmapped(
            f"datasource type {kind or '(none)'} has no Stratoflow connection type "
            f"(postgresql, mysql, athena, redshift-data): the connection {connection!r} must be "
            "one of those",
            task=tid,
        )
    query = str(p.get("sqlType", "0")).upper() in ("0", "QUERY")
    backslash = kind in ("MYSQL", "")  # MySQL strings take backslash escapes
    main = str(p.get("sql") or "")
    pre = [str(s) for s in p.get("preStatements") or [] if str(s).strip()]
    post = [str(s) for s in p.get("postStatements") or [] if str(s).strip()]
    if not main.strip():
        return _cannot("the SQL task has no SQL")
    for key in ("udfs", "sendEmail"):
        if p.get(key) not in (None, "", False, [], "false"):
            ctx.notes.unmapped(f"{key} = {p[key]!r} has no equivalent", task=tid)
    binder = _SqlBinder(ds)
    bound = any(binder.bind(text).parameters for text in [*pre, main, *post])
    several = bool(pre or post) or len(_split_sql(main, backslash)) > 1
    for problem in binder.problems:
        ctx.notes.unmapped(problem, task=tid)
    body: dict[str, Any] = {"type": "sql", "connection": connection}
    if not (bound and several) and not (query and post):
        # one task: one statement with its parameters, or a script of several without
        statements = [s.strip().rstrip(";") for s in [*pre, main, *post]]
        script = binder.bind(";\n".join(s for s in statements if s) + ("\n" if pre or post else ""))
        if pre or post:
            ctx.notes.changed("pre and post statements run in one script with the SQL", task=tid)
        body.update(script.fields())
        body["outputs"] = "first_row" if query else "none"
        return body
    # a chain of sql tasks in DolphinScheduler's order: a script of several statements takes
    # no parameters in Stratoflow, so where one binds a value each statement is a task; and
    # the outputs are the last statement's, where DolphinScheduler's are the query's, before
    # its post statements, which then follow it (the pre statements and the query stay one
    # script when nothing is bound, so that a SET before the query still holds for it)
    whole = main.strip().rstrip(";")
    posts = [x for statement in post for x in _split_sql(statement, backslash)]
    if bound:
        mains = ([] if query else _split_sql(main, backslash)) or [whole]
        pres = [x for statement in pre for x in _split_sql(statement, backslash)]
    else:
        statements = [s.strip().rstrip(";") for s in [*pre, main]]
        mains = [";\n".join(s for s in statements if s) + ("\n" if pre else "")]
        pres = []

    def piece(statement: str) -> dict[str, Any]:
        fields = {"type": "sql", "connection": connection, **binder.bind(statement).fields()}
        return {**fields, "outputs": "none"}

    before = [(f"pre_{i}", piece(x)) for i, x in enumerate(pres, 1)]
    before += [(f"sql_{i}", piece(x)) for i, x in enumerate(mains[:-1], 1)]
    after = [(f"post_{i}", piece(x)) for i, x in enumerate(posts, 1)]
    body.update(binder.bind(mains[-1]).fields())
    body["outputs"] = "first_row" if query else "none"
    ctx.sql_chains[tid] = (before, after)
    return body


def _chain_note(ctx: _Ctx, tid: str, names: list[str]) -> None:
    ctx.notes.changed(
        f"its statements run as a chain of sql tasks ({' -> '.join(names)}): a script of "
        "several statements binds no parameters in Stratoflow, and a query's outputs come "
        "before its post statements; each is a connection and a transaction of its own "
        "(DolphinScheduler runs them on one connection, committing each statement: a SET or "
        "a temporary table does not carry over to the next task), and each retries and times "
        "out on its own",
        task=tid,
    )


# DolphinScheduler's SqlTask: $[...] is pasted as text first; then each ${x} (a quote each
# side going with it, or bare) becomes a ? bound to x's value, and !{x} (with any quotes
# around it, which go with it) is pasted as text; a ${x} of no parameter stays as written
_SQL_TOKEN = re.compile(
    r"\$\[(?P<time>[^\]\n]{1,200})\]"
    r"|['\"]\$\{(?P<quoted>[^}\n]{1,200})\}['\"]"
    r"|\$\{(?P<bare>[^}\n]{1,200})\}"
    r"|['\"]*!\{(?P<text>[^}\n]{1,200})\}['\"]*"
)
_NOT_PARAMETER_CHAR = re.compile(r"[^A-Za-z0-9_]")


@dataclass
class _BoundSql:
    """One SQL text: literal text (``False``), a parameter (``%``: its name) and expressions
    pasted as text (``True``), with the parameters it binds."""

    pieces: list[tuple[bool | str, str]]
    parameters: dict[str, str]

    def fields(self) -> dict[str, Any]:
        """``sql`` (and ``parameters``, with ``%%`` for a literal ``%``, when it binds some)."""
        bound = bool(self.parameters)
        out: list[str] = []
        for kind, text in self.pieces:
            if kind == "%":
                out.append(f"%({text})s")
            elif kind is True:
                # a pasted value's own % is text too, where the driver reads placeholders
                out.append("{{ " + text + (" | replace('%', '%%')" if bound else "") + " }}")
            else:
                literal = escape_literal(text)
                out.append(literal.replace("%", "%%") if bound else literal)
        fields: dict[str, Any] = {"sql": "".join(out)}
        if bound:
            fields["parameters"] = dict(self.parameters)
        return fields


class _SqlBinder:
    """Binds a task's SQL texts as DolphinScheduler's SqlTask does, one parameter name per
    ``${name}`` of the task."""

    def __init__(self, ds: DsContext) -> None:
        self.ds = ds
        self.names: dict[str, str] = {}  # ${name} -> parameter name
        self.taken: set[str] = set()
        self.problems: list[str] = []

    def _problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    def bind(self, text: str) -> _BoundSql:
        pieces: list[tuple[bool | str, str]] = []
        parameters: dict[str, str] = {}
        at = 0
        for match in _SQL_TOKEN.finditer(text):
            if match.start() > at:
                pieces.append((False, text[at : match.start()]))
            at = match.end()
            if match.group("time") is not None:
                try:
                    pieces.append((True, time_expression(match.group("time"), self.ds.tz)))
                except Unsupported as exc:
                    self._problem(str(exc))
                    pieces.append((False, match.group(0)))
                continue
            name = match.group("quoted") or match.group("bare") or match.group("text")
            ref = self.ds.name(name)  # (its doubts go to ds.problems, reported by _task)
            if ref is None:
                self._problem(
                    f"${{{name}}} / !{{{name}}} names no parameter: DolphinScheduler leaves it "
                    "in the SQL as written (or, for !{...}, fails the task); so does the import"
                    if not name.startswith("system.")
                    else f"built-in parameter {name} has no equivalent; left in the SQL"
                )
                pieces.append((False, match.group(0)))
                continue
            if match.group("text") is not None:
                pieces.append((True, ref))
                continue
            if self.ds.types.get(name) == "LIST":
                self._problem(
                    f"${{{name}}} is a LIST parameter: DolphinScheduler binds each of its "
                    "items (IN (?, ?, ...)); here it is bound as one value, its text: split "
                    "it in the SQL (PostgreSQL: = ANY(string_to_array(..., ','))) or make "
                    "it !{...} text"
                )
            if name not in self.names:
                clean = _NOT_PARAMETER_CHAR.sub("_", name)[:60]
                clean = clean if clean[:1].isalpha() or clean[:1] == "_" else f"p_{clean}"
                self.names[name] = unique(clean, self.taken)
            parameters[self.names[name]] = "{{ " + ref + " }}"
            pieces.append(("%", self.names[name]))
        if at < len(text):
            pieces.append((False, text[at:]))
        return _BoundSql(pieces, parameters)


_DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _split_sql(text: str, backslash: bool) -> list[str]:
    """``text``'s statements: cut at each ``;`` outside quotes (``'...'``, ``"..."``,
    backquotes, PostgreSQL's ``$tag$...$tag$``) and comments; those with no code left out."""
    out: list[str] = []
    start, i, n, code = 0, 0, len(text), False
    while i < n:
        char = text[i]
        if char in "'\"`":
            i += 1
            while i < n:
                if backslash and text[i] == "\\":
                    i += 2
                    continue
                if text[i] == char:
                    if text[i + 1 : i + 2] == char:  # a doubled quote is one
                        i += 2
                        continue
                    break
                i += 1
            i, code = i + 1, True
        elif text.startswith("--", i) or (backslash and char == "#"):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif char == "$" and (dollar := _DOLLAR_QUOTE.match(text, i)) is not None:
            end = text.find(dollar.group(0), dollar.end())
            i, code = (n if end < 0 else end + len(dollar.group(0))), True
        elif char == ";":
            if code:
                out.append(text[start:i].strip())
            start, i, code = i + 1, i + 1, False
        else:
            code = code or not char.isspace()
            i += 1
    if code:
        out.append(text[start:].strip())
    return out
