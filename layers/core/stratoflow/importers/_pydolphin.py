"""pydolphinscheduler's YAML workflows (``workflow:`` and ``tasks:``), read as DolphinScheduler
exports are, with its special tokens:

* ``$FILE{"path"}``: the file's text (relative to the YAML file's folder, and under it: a path
  out of that folder, or through a symlink out of it, is refused);
* ``$ENV{NAME}``: pydolphinscheduler reads the variable on the machine that submits; here it
  becomes ``${NAME}``, read by the task's shell at run time (reported as a change);
* ``${CONFIG.KEY}``: pydolphinscheduler's configuration (its defaults are used);
* ``$WORKFLOW{"other.yaml"}``: the name of the workflow that file defines;
* ``TYPE(value)`` in ``input_params`` / ``output_params``: a typed parameter.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from stratoflow.errors import InvalidInput, Problem
from stratoflow.importers._dolphinscheduler import DsTask, DsWorkflow, number
from stratoflow.importers._report import Notes
from stratoflow.model._loader import load_yaml
from stratoflow.workflow_text import MAX_DOCUMENT_BYTES

MAX_INCLUDED_BYTES = 1 << 20
MAX_INCLUDES = 1_000
"""The most ``$FILE{}`` and ``$WORKFLOW{}`` includes one pydolphinscheduler file may hold."""
MAX_INCLUDED_TOTAL = MAX_DOCUMENT_BYTES
"""The most bytes a pydolphinscheduler file's ``$FILE{}`` includes may hold in all: their
text goes into the workflow, whose file holds at most this."""
_FILE = re.compile(r"\$FILE\{\"(.*?)\"\}")
_ENV = re.compile(r"\$ENV\{(.*?)\}")
_CONFIG = re.compile(r"\$\{CONFIG\.(.*?)\}")
_WORKFLOW = re.compile(r"\$WORKFLOW\{\"(.*?)\"\}")
_TYPED = re.compile(r"^\s*([A-Z]+)\((.*)\)\s*$", re.S)
# pydolphinscheduler's default configuration (default_config.yaml)
_CONFIG_DEFAULTS = {
    "WORKFLOW_PROJECT": "project-pydolphin",
    "WORKFLOW_USER": "userPythonGateway",
    "WORKFLOW_QUEUE": "queuePythonGateway",
    "WORKFLOW_WORKER_GROUP": "default",
    "WORKFLOW_TIME_ZONE": "Asia/Shanghai",
    "WORKFLOW_RELEASE_STATE": "online",
    "WORKFLOW_WARNING_TYPE": "NONE",
    "WORKFLOW_EXECUTION_TYPE": "parallel",
    "USER_TENANT": "tenant_pydolphin",
}
_TYPES = {  # task_type as written (any case) -> the export's name
    "shell": "SHELL", "python": "PYTHON", "http": "HTTP", "k8s": "K8S", "kubernetes": "K8S",
    "switch": "SWITCH", "condition": "CONDITIONS", "conditions": "CONDITIONS",
    "dependent": "DEPENDENT", "subworkflow": "SUB_WORKFLOW", "subprocess": "SUB_PROCESS",
    "sql": "SQL", "procedure": "PROCEDURE", "spark": "SPARK", "flink": "FLINK",
    "mr": "MR", "mapreduce": "MR", "datax": "DATAX", "sagemaker": "SAGEMAKER",
    "mlflow": "MLFLOW", "openmldb": "OPENMLDB", "pytorch": "PYTORCH", "dvc": "DVC",
}  # fmt: skip


def is_pydolphin(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("workflow"), dict) and "tasks" in data


class NotRegular(OSError):
    """An include that is not a regular file (a FIFO, a device: a read could wait forever)."""


def read_include(path: Path, limit: int, *, follow: bool = True) -> bytes:
    """At most ``limit`` bytes of ``path``, opened without waiting (``O_NONBLOCK``: opening a
    FIFO does not wait for a writer) and read only when it is a regular file, as it is when
    read, whatever it was when checked. ``follow=False``: not through a symlink ``path``
    became since it was resolved (``O_NOFOLLOW``)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(mode):
            raise NotRegular(f"{path} is not a regular file")
        chunks: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class OutsideFolder(ValueError):
    """A ``$FILE{}`` path outside the YAML file's folder; the message names it and the rule."""


def included_file(base: Path, name: str) -> Path:
    """The file ``$FILE{name}`` reads, symlinks resolved: it must be under ``base`` (the YAML
    file's folder) once every symlink on the way is followed. pydolphinscheduler reads any
    path the submitting user can, so that ``$FILE{"../../.aws/credentials"}`` (or an absolute
    path, or a symlink in the repository) would write that file into the workflow: refused
    (:class:`OutsideFolder`) before anything of it is read."""
    root = base.resolve()
    try:
        real = (base / name).resolve()
    except (OSError, RuntimeError):  # a symlink loop: reading it fails, and says so
        return base / name
    if not real.is_relative_to(root):
        raise OutsideFolder(
            f"$FILE{{{name!r}}} is {real}, outside {root}: a $FILE{{}} include must be a file "
            "under the folder of the YAML file that names it, reached without leaving that "
            "folder through a symlink"
        )
    return real


def workflow_name_of(path: Path) -> str | None:
    """The ``workflow.name`` a pydolphinscheduler YAML file defines (for ``$WORKFLOW{}``)."""
    try:
        text = read_include(path, MAX_INCLUDED_BYTES).decode("utf-8")
        data = load_yaml(text)[0]
    except (OSError, UnicodeDecodeError, InvalidInput):
        return None
    if is_pydolphin(data) and data["workflow"].get("name"):
        return str(data["workflow"]["name"])
    return None


class _Tokens:
    """Reads the special tokens of one file. The includes are bounded as they are read (the
    same bounds the importer checks before: a file may grow, or become a FIFO, between the
    check and the read), and each ``$WORKFLOW{}`` file is read once however often named."""

    def __init__(self, base: Path, notes: Notes, source: Path | None = None) -> None:
        self.base = base
        self.notes = notes
        self.source = source if source is not None else base
        self.includes = 0  # $FILE{} and $WORKFLOW{} includes read so far
        self.included = 0  # bytes the $FILE{} includes read so far
        self.names: dict[Path, str | None] = {}  # resolved $WORKFLOW{} path -> its name

    def _refuse(self, message: str) -> InvalidInput:
        return InvalidInput([Problem("file", message)], source=str(self.source))

    def _count(self) -> None:
        self.includes += 1
        if self.includes > MAX_INCLUDES:
            raise self._refuse(f"more than {MAX_INCLUDES:,} $FILE{{}} / $WORKFLOW{{}} includes")

    def workflow_name(self, name: str) -> str | None:
        path = self.base / name
        try:
            key = path.resolve()
        except (OSError, RuntimeError):
            key = path
        if key not in self.names:
            try:
                self.names[key] = workflow_name_of(path)
            except NotRegular:
                raise self._refuse(f"$WORKFLOW{{{name!r}}} is not a regular file") from None
        return self.names[key]

    def text(self, value: str, where: str) -> str:
        def include(m: re.Match[str]) -> str:
            self._count()
            try:
                data = read_include(
                    included_file(self.base, m.group(1)), MAX_INCLUDED_BYTES + 1, follow=False
                )
            except OutsideFolder as exc:
                raise self._refuse(str(exc)) from None
            except NotRegular:
                raise self._refuse(f"$FILE{{{m.group(1)!r}}} is not a regular file") from None
            except OSError as exc:
                self.notes.unmapped(
                    f"$FILE{{{m.group(1)!r}}}: cannot read it ({exc.strerror})", field=where
                )
                return m.group(0)
            self.included += len(data)
            if self.included > MAX_INCLUDED_TOTAL:
                raise self._refuse(
                    f"its $FILE{{}} includes hold over {MAX_INCLUDED_TOTAL:,} bytes in all "
                    f"(each included file counts each time it is named): at most "
                    f"{MAX_INCLUDED_TOTAL:,}, as a workflow file holds"
                )
            if len(data) > MAX_INCLUDED_BYTES:
                self.notes.unmapped(
                    f"$FILE{{{m.group(1)!r}}} is over {MAX_INCLUDED_BYTES} bytes", field=where
                )
                return m.group(0)
            return data.decode("utf-8", errors="replace")

        def env(m: re.Match[str]) -> str:
            self.notes.changed(
                f"$ENV{{{m.group(1)}}} is read at run time, as ${{{m.group(1)}}}", field=where
            )
            return "${" + m.group(1) + "}"

        def config(m: re.Match[str]) -> str:
            key = m.group(1)
            if key in _CONFIG_DEFAULTS:
                self.notes.changed(
                    f"${{CONFIG.{key}}} is pydolphinscheduler's default {_CONFIG_DEFAULTS[key]!r}",
                    field=where,
                )
                return _CONFIG_DEFAULTS[key]
            self.notes.unmapped(f"${{CONFIG.{key}}} is not a known setting", field=where)
            return m.group(0)

        def workflow(m: re.Match[str]) -> str:
            self._count()
            name = self.workflow_name(m.group(1))
            if name is None:
                self.notes.unmapped(
                    f"$WORKFLOW{{{m.group(1)!r}}}: no workflow file there", field=where
                )
                return m.group(0)
            return name

        value = _FILE.sub(include, value)
        value = _WORKFLOW.sub(workflow, value)
        value = _CONFIG.sub(config, value)
        return _ENV.sub(env, value)

    def walk(self, value: Any, where: str) -> Any:
        if isinstance(value, str):
            return self.text(value, where)
        if isinstance(value, list):
            return [self.walk(v, f"{where}.{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.walk(v, f"{where}.{k}") for k, v in value.items()}
        return value


def _typed_params(values: Any, direct: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key, raw in (values or {}).items() if isinstance(values, dict) else []:
        kind, value = "VARCHAR", raw
        match = _TYPED.match(raw) if isinstance(raw, str) else None
        if match:
            kind, value = match.group(1), match.group(2)
        elif isinstance(raw, bool):
            kind, value = "BOOLEAN", str(raw).lower()
        elif isinstance(raw, int):
            kind = "INTEGER"
        elif isinstance(raw, float):
            kind = "FLOAT"
        out.append(
            {
                "prop": str(key),
                "direct": direct,
                "type": kind,
                "value": "" if value is None else str(value),
            }
        )
    return out


# a task's settings that are counts or minutes (task_group_priority may be negative)
_COUNTS = ("fail_retry_times", "fail_retry_interval", "timeout", "delay_time", "task_group_id")


def read_pydolphin(data: dict[str, Any], path: Path, notes: Notes) -> DsWorkflow:
    tokens = _Tokens(path.parent, notes, path)
    wf = tokens.walk(dict(data["workflow"]), "workflow")
    raw_tasks = data.get("tasks") or []
    read: list[dict[str, Any]] = []  # the named tasks, their special tokens read
    for i, written in enumerate(raw_tasks if isinstance(raw_tasks, list) else []):
        if not isinstance(written, dict) or "name" not in written:
            notes.unmapped(f"tasks.{i} has no name; left out")
            continue
        read.append(tokens.walk(written, f"tasks.{written['name']}"))
    codes = _codes([str(raw["name"]) for raw in read], notes)
    tasks: list[DsTask] = []
    edges: list[tuple[str, str]] = []
    for raw, code in zip(read, codes, strict=True):
        name = str(raw["name"])
        written_type = str(raw.get("task_type", ""))
        kind = _TYPES.get(written_type.lower(), written_type.upper())
        params = _type_params(kind, raw, edges, code)
        params["localParams"] = _typed_params(raw.get("input_params"), "IN") + _typed_params(
            raw.get("output_params"), "OUT"
        )
        for key in _COUNTS:
            value = raw.get(key)
            if value is not None and (isinstance(value, bool) or number(value, -1) < 0):
                notes.unmapped(
                    f"task {name!r}: {key} {value!r} is not a number of 0 or more "
                    "(pydolphinscheduler or DolphinScheduler refuses it): left out",
                    field=f"tasks.{name}.{key}",
                )
        timeout = raw.get("timeout")
        tasks.append(
            DsTask(
                code=code,
                name=name,
                type=kind,
                params=params,
                description=raw.get("description"),
                retries=int(number(raw.get("fail_retry_times"))),
                retry_interval=number(raw.get("fail_retry_interval"), 1),
                timeout=number(timeout),
                timeout_strategy=raw.get("timeout_notify_strategy") or None,
                priority=str(raw.get("task_priority") or "MEDIUM").upper(),
                task_group_id=int(number(raw.get("task_group_id"))),
                task_group_priority=number(raw.get("task_group_priority")),
                delay_time=number(raw.get("delay_time")),
                enabled=str(raw.get("flag", "YES")).upper() != "NO",
                worker_group=str(raw.get("worker_group") or "default"),
                extra={k: raw[k] for k in ("environment_name", "is_cache") if raw.get(k)},
            )
        )
        edges.extend((str(dep), code) for dep in raw.get("deps") or [])
    params = wf.get("param") or {}
    tz = wf.get("timezone") or wf.get("time_zone")
    return DsWorkflow(
        name=str(wf.get("name", path.stem)),
        project=wf.get("project"),
        description=wf.get("description"),
        global_params=[
            {"prop": str(k), "direct": "IN", "type": "VARCHAR", "value": _varchar(v)}
            for k, v in (params.items() if isinstance(params, dict) else [])
        ],
        tasks=tasks,
        edges=edges,
        crontab=wf.get("schedule"),
        timezone=str(tz or _CONFIG_DEFAULTS["WORKFLOW_TIME_ZONE"]),
        start=_date_time(wf.get("start_time")),
        end=_date_time(wf.get("end_time")),
        schedule_online=bool(wf.get("online_schedule", True)),
        # release_state: offline (any case, as the SDK lowers it) leaves the workflow and its
        # schedule offline in DolphinScheduler
        workflow_online=str(
            wf.get("release_state") or _CONFIG_DEFAULTS["WORKFLOW_RELEASE_STATE"]
        ).lower()
        != "offline",
        execution_type=str(wf.get("execution_type") or "PARALLEL").upper(),
        timeout=number(wf.get("timeout")),
        warning_type=str(wf.get("warning_type") or "NONE").upper(),
        warning_group=int(number(wf.get("warning_group_id"))),
        run_priority=str(
            wf.get("process_instance_priority")
            or wf.get("workflow_instance_priority")
            or wf.get("priority")
            or "MEDIUM"
        ).upper(),
    )


def _varchar(value: Any) -> str:
    """A workflow ``param`` as DolphinScheduler holds it: the SDK sends the value as JSON to
    a VARCHAR parameter, so ``true`` is the text 'true' and ``1`` the text '1' (which a run
    may replace with any text: '007' stays '007')."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def _codes(names: list[str], notes: Notes) -> list[str]:
    """Each task's code, in the order of ``names``. pydolphinscheduler keys tasks by code, so
    tasks may share a name, and all of them run; its parser maps each name to the last task
    of that name, which ``deps`` (and a branch or a condition) then mean. So the last task of
    a name has the name as its code, which names resolve to, and an earlier one a code no
    task is named."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    for name, count in counts.items():
        if count > 1:
            notes.changed(
                f"{count} tasks are named {name!r}: each is kept (pydolphinscheduler keys "
                "tasks by code), and a name in deps, a switch branch or a condition means "
                "the last of them, as pydolphinscheduler reads it"
            )
    codes: list[str] = []
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        code = name
        if seen[name] < counts[name]:  # an earlier one: "name#1", "name#2"... of no task
            code = f"{name}#{seen[name]}"
            while code in counts:
                code += "#"
        codes.append(code)
    return codes


def _date_time(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value)
    return text if "T" in text or " " in text else text + "T00:00:00"


def _type_params(
    kind: str, raw: dict[str, Any], edges: list[tuple[str, str]], name: str
) -> dict[str, Any]:
    """The task's settings under the names the export uses (``name``: the task's code, in
    the relations it adds)."""
    if kind == "SHELL":
        return {"rawScript": str(raw.get("command", ""))}
    if kind == "PYTHON":
        return {"rawScript": str(raw.get("definition", ""))}
    if kind == "HTTP":
        return {
            "url": raw.get("url", ""),
            "httpMethod": raw.get("http_method", "GET"),
            "httpParams": raw.get("http_params") or [],
            "httpCheckCondition": raw.get("http_check_condition", "STATUS_CODE_DEFAULT"),
            "condition": raw.get("condition"),
        }
    if kind == "K8S":
        return {
            k: raw.get(k) or raw.get(s)
            for k, s in (
                ("image", "image"), ("namespace", "namespace"), ("command", "command"),
                ("args", "args"), ("minCpuCores", "min_cpu_cores"),
                ("minMemorySpace", "min_memory_space"),
            )
        }  # fmt: skip
    if kind == "SWITCH":
        cases: list[dict[str, Any]] = []
        default = None
        for branch in raw.get("condition") or []:
            target = str(branch.get("task"))
            edges.append((name, target))
            if branch.get("condition") is None:
                default = target
            else:
                cases.append({"condition": str(branch["condition"]), "nextNode": target})
        return {"switchResult": {"dependTaskList": cases, "nextNode": default}}
    if kind == "CONDITIONS":
        groups = []
        for group in raw.get("groups") or []:
            items = []
            for item in group.get("groups") or []:
                task = str(item.get("task"))
                edges.append((task, name))
                items.append(
                    {"depTaskCode": task, "status": "SUCCESS" if item.get("flag") else "FAILURE"}
                )
            groups.append(
                {"relation": str(group.get("op", "AND")).upper(), "dependItemList": items}
            )
        branches = (raw.get("success_task"), raw.get("failed_task"))
        edges.extend((name, str(branch)) for branch in branches if branch)
        return {
            "dependence": {"relation": str(raw.get("op", "AND")).upper(), "dependTaskList": groups},
            "conditionResult": {
                "successNode": [raw["success_task"]] if raw.get("success_task") else [],
                "failedNode": [raw["failed_task"]] if raw.get("failed_task") else [],
            },
        }
    if kind in ("SUB_WORKFLOW", "SUB_PROCESS"):  # the child by name, not by code
        return {"workflowName": raw.get("workflow_name") or raw.get("process_definition_name")}
    if kind == "DEPENDENT":
        return {"dependence": _dependence(raw)}
    if kind == "SQL":
        sql = str(raw.get("sql") or "")
        sql_type = raw.get("sql_type")
        if sql_type not in ("0", "1"):  # the SDK takes only these two; else it detects it
            sql_type = "0" if _QUERY.match(sql) is not None else "1"
        return {
            "type": str(raw.get("datasource_type") or "").upper(),
            "datasourceName": raw.get("datasource_name"),
            "sql": sql,
            "sqlType": sql_type,
            "preStatements": raw.get("pre_statements") or [],
            "postStatements": raw.get("post_statements") or [],
        }
    skip = {"name", "task_type", "deps", "description", "flag", "task_priority", "delay_time",
            "fail_retry_times", "fail_retry_interval", "timeout", "timeout_notify_strategy",
            "input_params", "output_params", "worker_group", "task_group_id", "is_cache",
            "task_group_priority"}  # fmt: skip
    return {k: v for k, v in raw.items() if k not in skip}


# pydolphinscheduler's Sql.sql_type: a query unless the first line (``.`` stops at a newline)
# holds one of these words at its start or after a space, followed by a space; so a SQL that
# starts with a /* comment */ is a query, as the SDK submits it
_QUERY = re.compile(
    r"^(?!(.* |)insert |(.* |)delete |(.* |)drop |(.* |)update |(.* |)truncate "
    r"|(.* |)alter |(.* |)create ).*",
    re.I,
)


# pydolphinscheduler's DependentDate constants: dependent_date names one in any case
_SDK_DATES = {
    "CURRENT_HOUR": "currentHour", "LAST_ONE_HOUR": "last1Hour", "LAST_TWO_HOURS": "last2Hours",
    "LAST_THREE_HOURS": "last3Hours", "LAST_TWENTY_FOUR_HOURS": "last24Hours",
    "TODAY": "today", "LAST_ONE_DAYS": "last1Days", "LAST_TWO_DAYS": "last2Days",
    "LAST_THREE_DAYS": "last3Days", "LAST_SEVEN_DAYS": "last7Days",
    "THIS_WEEK": "thisWeek", "LAST_WEEK": "lastWeek", "LAST_MONDAY": "lastMonday",
    "LAST_TUESDAY": "lastTuesday", "LAST_WEDNESDAY": "lastWednesday",
    "LAST_THURSDAY": "lastThursday", "LAST_FRIDAY": "lastFriday",
    "LAST_SATURDAY": "lastSaturday", "LAST_SUNDAY": "lastSunday",
    "THIS_MONTH": "thisMonth", "LAST_MONTH": "lastMonth", "LAST_MONTH_BEGIN": "lastMonthBegin",
    "LAST_MONTH_END": "lastMonthEnd",
}  # fmt: skip


def _sdk_date(value: Any) -> Any:
    """A dependent_date as the SDK reads it: the DependentDate constant its upper-cased text
    names, else the text as it is (a date value itself: ``last24Hours``)."""
    return _SDK_DATES.get(str(value).upper(), value)


def _dependence(raw: dict[str, Any]) -> dict[str, Any]:
    """A Dependent task's ``op``/``groups`` (under ``denpendence``, as the SDK spells it, or
    beside it) in the export's shape, upstream workflows named rather than coded."""
    outer = raw.get("denpendence") or raw.get("dependence") or raw
    outer = outer if isinstance(outer, dict) else raw
    groups = []
    for group in outer.get("groups") or []:
        if not isinstance(group, dict):
            continue
        items = [
            {
                "projectName": item.get("project_name"),
                "definitionName": item.get("workflow_name") or item.get("process_definition_name"),
                "depTaskName": item.get("dependent_task_name"),
                "dateValue": _sdk_date(item.get("dependent_date") or "today"),
            }
            for item in group.get("groups") or []
            if isinstance(item, dict)
        ]
        groups.append({"relation": str(group.get("op", "AND")).upper(), "dependItemList": items})
    return {"relation": str(outer.get("op", "AND")).upper(), "dependTaskList": groups}
