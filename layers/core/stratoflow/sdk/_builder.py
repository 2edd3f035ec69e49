"""The builder: a :class:`Workflow` holds :class:`Task` objects; ``a >> b`` makes b wait for a.

Everything here only assembles the format-v1 document (``Workflow.to_dict()``) that a YAML
file would load into; validation is the model's own (:func:`stratoflow.model.parse_workflow`),
so a mistake reads the same as in YAML, pointed at the line of the Python file where the
task or workflow was made.
"""

from __future__ import annotations

import enum
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import date, datetime, timedelta
from typing import Any

import yaml

from stratoflow.errors import InvalidInput, Problem
from stratoflow.model import WorkflowSpec, format_duration, load_workflow, parse_workflow

_SDK_DIR = os.path.dirname(os.path.abspath(__file__))
_building: ContextVar[Workflow | None] = ContextVar("stratoflow_sdk_workflow", default=None)


def _caller() -> tuple[str | None, int | None]:
    """File and line of the first frame outside the SDK: where the user made the object."""
    frame = sys._getframe(1)
    while frame is not None:
        file = frame.f_code.co_filename
        if os.path.dirname(os.path.abspath(file)) != _SDK_DIR:
            return file, frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return None, None  # pragma: no cover - the SDK is always called from somewhere


def _jinja_path(parts: Sequence[str]) -> str:
    return "".join(f".{p}" if p.isidentifier() else f"[{p!r}]" for p in parts)


class Output:
    """One output of a task, as a template: ``str(extract.outputs["rows"])`` is
    ``{{ tasks.extract.outputs.rows }}``. Given as a value of a task's field (a param, an env
    variable, a payload entry), it also makes that task wait for ``extract``, as Airflow's
    XComArg does; formatted into a text (an f-string), it is only the template."""

    __slots__ = ("path", "task_id")

    def __init__(self, task_id: str, path: tuple[str, ...]) -> None:
        self.task_id = task_id
        self.path = path

    def __getitem__(self, key: str) -> Output:
        return Output(self.task_id, (*self.path, *key.split(".")))

    def __getattr__(self, key: str) -> Output:
        if key.startswith("_"):
            raise AttributeError(key)
        return self[key]

    def __str__(self) -> str:
        return f"{{{{ tasks{_jinja_path((self.task_id,))}.outputs{_jinja_path(self.path)} }}}}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return f"Output({str(self)!r})"


class Outputs:
    """A task's outputs: ``task.outputs["key"]`` or ``task.outputs.key``."""

    __slots__ = ("task_id",)

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id

    def __getitem__(self, key: str) -> Output:
        return Output(self.task_id, tuple(key.split(".")))

    def __getattr__(self, key: str) -> Output:
        if key.startswith("_"):
            raise AttributeError(key)
        return self[key]


def _plain(value: Any, where: str) -> Any:
    """``value`` as the YAML loader would give it: tasks by id, outputs as templates,
    timedeltas in the format's spelling; anything YAML cannot hold is refused by path."""
    if value is None or isinstance(value, str | bool | int | float | datetime | date):
        return value
    if isinstance(value, Output):
        return str(value)
    if isinstance(value, Task):
        return value.task_id
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value, where)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput([Problem(where, f"key {key!r} is not a string")])
            out[key] = _plain(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}.{i}") for i, item in enumerate(value)]
    raise InvalidInput(
        [Problem(where, f"a {type(value).__name__} cannot be written in a workflow")]
    )


def _outputs_in(value: Any) -> Iterator[str]:
    """Ids of the tasks whose :class:`Output` objects ``value`` holds."""
    if isinstance(value, Output):
        yield value.task_id
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _outputs_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _outputs_in(item)


def _task_id(ref: Task | str) -> str:
    if isinstance(ref, Task):
        return ref.task_id
    if isinstance(ref, str):
        return ref
    raise TypeError(f"a dependency is a Task or a task id, not {type(ref).__name__}")


def _tasks(other: Any, op: str) -> Sequence[Task]:
    items = other if isinstance(other, list | tuple) else (other,)
    for item in items:
        if not isinstance(item, Task):
            raise TypeError(
                f"{op} links tasks: {item!r} is not a Task (a task id in a string goes in "
                "depends_on=[...] or .after(...))"
            )
    return items


class Task:
    """One task. Made inside ``with Workflow(...)`` (or a ``@workflow`` function) it joins that
    workflow; otherwise add it with ``Workflow.add`` or ``Workflow(tasks=[...])``.

    ``Task(task_id, type, **fields)`` makes any task type; the helpers (``shell``,
    ``python``, ``http``, ``switch``, ``batch``, ``kubernetes``, ``lambda_``,
    ``dependency``) name their
    fields. ``fields`` are written as given (None leaves a field out); an :class:`Output`
    among their values adds its task to ``depends_on`` (after the ones given)."""

    def __init__(self, task_id: str, type: str, **fields: Any) -> None:
        self.task_id = task_id
        self.type = type
        self.upstream: list[str] = []
        depends_on = fields.pop("depends_on", None) or ()
        if isinstance(depends_on, str | Task):
            depends_on = (depends_on,)
        self.fields = {k: v for k, v in fields.items() if v is not None}
        self.outputs = Outputs(task_id)
        self.file, self.line = _caller()
        self.workflow: Workflow | None = None
        self.after(*depends_on, *_outputs_in(self.fields))
        current = _building.get()
        if current is not None:
            current.add(self)

    def after(self, *upstream: Task | str | Sequence[Task | str]) -> Task:
        """Wait for ``upstream`` (tasks or ids; repeated ones count once). Returns self."""
        for item in upstream:
            refs = item if isinstance(item, list | tuple) else (item,)
            for ref in refs:
                task_id = _task_id(ref)
                if task_id not in self.upstream:
                    self.upstream.append(task_id)
        return self

    # a >> b: b runs after a; [a, b] >> c; a >> [b, c]; and << the other way round
    def __rshift__(self, other: Task | Sequence[Task]) -> Any:
        for task in _tasks(other, ">>"):
            task.after(self)
        return other

    def __rrshift__(self, other: Sequence[Task | str]) -> Task:
        return self.after(*other)

    def __lshift__(self, other: Task | Sequence[Task | str]) -> Any:
        self.after(other)
        return other

    def __rlshift__(self, other: Sequence[Task]) -> Task:
        for task in _tasks(other, "<<"):
            task.after(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The task as the YAML file would hold it under ``tasks.<id>``."""
        where = f"tasks.{self.task_id}"
        out: dict[str, Any] = {"type": self.type}
        if "description" in self.fields:
            out["description"] = _plain(self.fields["description"], f"{where}.description")
        if self.upstream:
            out["depends_on"] = list(self.upstream)
        for key, value in self.fields.items():
            if key != "description":
                out[key] = _plain(value, f"{where}.{key}")
        return out

    def __repr__(self) -> str:
        return f"Task({self.task_id!r}, {self.type!r})"


def _callable_ref(value: str | Callable[..., Any] | None) -> str | None:
    """``module:function`` of a function (it must be importable by that name)."""
    if value is None or isinstance(value, str):
        return value
    module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", "")
    if not module or module == "__main__" or "<" in name or "." in name:
        raise InvalidInput(
            f"{name or value!r} cannot be named as module:function: use a function defined at "
            "the top level of an importable module"
        )
    return f"{module}:{name}"


def shell(task_id: str, command: str, *, runner: str | None = None, **options: Any) -> Task:
    """A shell task: ``command`` is a bash script; key=value lines written to
    ``$STRATOFLOW_OUTPUT`` become outputs. Every helper also takes the fields all task types
    share (description, depends_on, trigger_rule, retries, retry_delay, retry_backoff,
    max_retry_delay, timeout, params, env) and any other field of the format."""
    return Task(task_id, "shell", command=command, runner=runner, **options)


def python(
    task_id: str,
    code: str | None = None,
    *,
    callable: str | Callable[..., Any] | None = None,
    runner: str | None = None,
    **options: Any,
) -> Task:
    """A python task: inline ``code`` (``params``, ``outputs``, ``context`` in scope), or a
    ``callable`` (``"package.module:function"`` or the function itself)."""
    return Task(
        task_id, "python", code=code, callable=_callable_ref(callable), runner=runner, **options
    )


def http(
    task_id: str,
    url: str,
    *,
    method: str | None = None,
    headers: Mapping[str, Any] | None = None,
    body: str | Mapping[str, Any] | Sequence[Any] | None = None,
    expected_status: int | Sequence[int] | None = None,
    follow_redirects: bool | None = None,
    **options: Any,
) -> Task:
    """An HTTP request; the status code and the (JSON) body become outputs. Redirects are
    followed unless ``follow_redirects=False``."""
    return Task(
        task_id, "http", url=url, method=method, headers=headers, body=body,
        expected_status=expected_status, follow_redirects=follow_redirects, **options,
    )  # fmt: skip


def case(when: str, *next_tasks: Task | str | Sequence[Task | str]) -> dict[str, Any]:
    """One case of a switch: when ``when`` renders true, run ``next_tasks``."""
    flat: list[Task | str] = []
    for item in next_tasks:
        if isinstance(item, Task | str):
            flat.append(item)
        else:
            flat.extend(item)
    return {"when": when, "next": [_task_id(t) for t in flat]}


def switch(
    task_id: str,
    cases: Sequence[Mapping[str, Any]],
    *,
    default: Sequence[Task | str] | None = None,
    **options: Any,
) -> Task:
    """Runs the tasks of the first case whose ``when`` is true (``default`` if none); the
    branches not taken are skipped. Make cases with :func:`case`. Every task that depends
    on the switch must be in a case or the default (the workflow is refused otherwise); a
    task after whichever branch ran depends on the branches, ``trigger_rule="none_failed"``."""
    chosen = None if default is None else [_task_id(t) for t in default]
    return Task(task_id, "switch", cases=list(cases), default=chosen, **options)


def batch(
    task_id: str,
    image: str,
    command: str | Sequence[str],
    *,
    vcpus: float | None = None,
    memory: int | None = None,
    job_queue: str | None = None,
    **options: Any,
) -> Task:
    """An AWS Batch job (locally, ``command`` runs as a local process)."""
    return Task(
        task_id, "batch", image=image, command=command, vcpus=vcpus, memory=memory,
        job_queue=job_queue, **options,
    )  # fmt: skip


def kubernetes(
    task_id: str,
    image: str,
    command: str | Sequence[str],
    *,
    namespace: str | None = None,
    cpu: str | None = None,
    memory: str | None = None,
    **options: Any,
) -> Task:
    """A batch/v1 Job on EKS (locally, ``command`` runs as a local process)."""
    return Task(
        task_id, "kubernetes", image=image, command=command, namespace=namespace, cpu=cpu,
        memory=memory, **options,
    )  # fmt: skip


def lambda_(
    task_id: str,
    function: str,
    *,
    payload: Mapping[str, Any] | None = None,
    local_callable: str | Callable[..., Any] | None = None,
    **options: Any,
) -> Task:
    """Invoke a Lambda function (locally: ``local_callable`` is called with the payload)."""
    return Task(
        task_id, "lambda", function=function, payload=payload,
        local_callable=_callable_ref(local_callable), **options,
    )  # fmt: skip


def upstream(workflow: str, date: str, *, task: str | None = None) -> dict[str, Any]:
    """One item of a dependency: ``workflow`` (a name, or ``project/name``) has succeeded for
    every interval of ``date`` (a DolphinScheduler date value such as ``today`` or
    ``last7Days``); with ``task``, that task of its runs."""
    item: dict[str, Any] = {"workflow": workflow}
    if task is not None:
        item["task"] = task
    item["date"] = date
    return item


def dependency(
    task_id: str,
    *,
    all: Sequence[Mapping[str, Any]] | None = None,  # the format's field names
    any: Sequence[Mapping[str, Any]] | None = None,
    check_interval: str | int | None = None,
    **options: Any,
) -> Task:
    """Wait for other workflows' runs: ``all`` (or ``any``) of the items made with
    :func:`upstream`. ``check_interval`` and ``timeout`` (in ``options``) as in the format."""
    return Task(
        task_id, "dependency",
        all=None if all is None else [dict(i) for i in all],
        any=None if any is None else [dict(i) for i in any],
        check_interval=check_interval, **options,
    )  # fmt: skip


def sql(
    task_id: str,
    sql: str | None = None,
    *,
    connection: str,
    sql_file: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    outputs: str | None = None,
    **options: Any,
) -> Task:
    """SQL on a named connection (``stratoflow connections``): ``sql`` inline or ``sql_file``
    from the task's working directory; ``parameters`` are bound by the driver (``%(name)s``);
    ``outputs``: first_row (default) | rows | none."""
    return Task(
        task_id, "sql", connection=connection, sql=sql, sql_file=sql_file,
        parameters=parameters, outputs=outputs, **options,
    )  # fmt: skip


def subworkflow(
    task_id: str,
    workflow: str,
    *,
    params: Mapping[str, Any] | None = None,
    **options: Any,
) -> Task:
    """A sub-workflow task (``type: workflow``): runs ``workflow`` ("name" of the same
    project, or "project/name") with ``params``; its state is the child run's, and its
    outputs are the child's task outputs: ``sub.outputs.<child task>.<key>``."""
    return Task(task_id, "workflow", workflow=workflow, params=params, **options)


try:  # libyaml's emitter is several times faster (10,000 tasks: ~3 s -> ~0.5 s)
    from yaml import CSafeDumper as _BaseDumper
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeDumper as _BaseDumper  # type: ignore[assignment]


class _BlockDumper(_BaseDumper):
    """Multi-line text as a ``|`` block, as a person writes it."""


# YAML reads these as line breaks (NEL, LS, PS) or cannot hold them unescaped: such text is
# written double-quoted, with escapes, so it loads back as it was
_ESCAPED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]")


def _text(dumper: _BaseDumper, value: str) -> yaml.ScalarNode:
    style = None
    if _ESCAPED.search(value):
        style = '"'
    elif "\n" in value:
        style = "|"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _text)


class Workflow:
    """A workflow in Python. ``with Workflow("etl") as wf:`` collects the tasks made inside;
    ``wf.to_dict()`` is the format-v1 document, ``wf.spec()`` validates it as a YAML file
    would be. Keyword arguments are the workflow's top-level fields (None leaves one out):
    ``schedule`` takes a cron text or a mapping (``{"cron": ..., "timezone": ...}``)."""

    def __init__(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str | None = None,
        schedule: str | Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        max_active_runs: int | None = None,
        concurrency: int | None = None,
        on_failure: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        tasks: Iterable[Task] = (),
        **fields: Any,
    ) -> None:
        self.name = name
        if isinstance(schedule, str):
            schedule = {"cron": schedule}
        self.fields: dict[str, Any] = {
            k: v
            for k, v in {
                "project": project, "description": description, "schedule": schedule,
                "params": params, "max_active_runs": max_active_runs,
                "concurrency": concurrency, "on_failure": on_failure, "defaults": defaults,
                **fields,
            }.items()
            if v is not None
        }  # fmt: skip
        self.tasks: dict[str, Task] = {}
        self.file, self.line = _caller()
        self._tokens: list[Any] = []
        self.add(*tasks)

    def __enter__(self) -> Workflow:
        self._tokens.append(_building.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _building.reset(self._tokens.pop())

    def add(self, *tasks: Task) -> Workflow:
        """Add tasks; a task id used twice is refused (as a duplicate YAML key is)."""
        for task in tasks:
            if task.workflow is self:
                continue
            if task.workflow is not None:
                raise InvalidInput(
                    f"task {task.task_id!r} already belongs to workflow {task.workflow.name!r}",
                    source=task.file,
                )
            first = self.tasks.get(task.task_id)
            if first is not None:
                where = f" (first at line {first.line})" if first.line else ""
                raise InvalidInput(
                    [
                        Problem(
                            f"tasks.{task.task_id}",
                            f"duplicate task id {task.task_id!r}{where}",
                            task.line,
                        )
                    ],
                    source=task.file,
                )
            task.workflow = self
            self.tasks[task.task_id] = task
        return self

    def __getitem__(self, task_id: str) -> Task:
        return self.tasks[task_id]

    @property
    def project(self) -> str:
        return str(self.fields.get("project", "default"))

    def to_dict(self) -> dict[str, Any]:
        """The format-v1 document, as ``yaml.safe_load`` of the equivalent file gives it."""
        out: dict[str, Any] = {"name": self.name}
        for key, value in self.fields.items():
            out[key] = _plain(value, key)
        out["tasks"] = {task_id: task.to_dict() for task_id, task in self.tasks.items()}
        return out

    def to_yaml(self, *, header: str | None = None) -> str:
        """The document as a YAML file (``header``: comment lines put on top)."""
        text = yaml.dump(
            self.to_dict(), Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100
        )
        if header:
            text = "".join(f"# {line}\n" for line in header.splitlines()) + text
        return text

    def lines(self) -> dict[tuple[str | int, ...], int]:
        """Where, in the workflow's file, the workflow and each of its tasks were made."""
        found: dict[tuple[str | int, ...], int] = {}
        if self.line is not None:
            found[()] = self.line
        for task_id, task in self.tasks.items():
            if task.line is not None and task.file == self.file:
                found[("tasks", task_id)] = task.line
        return found

    def spec(self, *, now: datetime | None = None, source: str | None = None) -> WorkflowSpec:
        """Validate, exactly as a YAML file with this content; a problem names the field and
        the line of the Python file where the task (or the workflow) was made. ``now``: as in
        :func:`stratoflow.model.parse_workflow` (a schedule must fire after it)."""
        source = source or self.file
        try:
            document = self.to_dict()
        except InvalidInput as exc:
            raise InvalidInput(exc.problems, source=source) from None
        return parse_workflow(document, source=source, lines=self.lines(), now=now)

    def checked_yaml(
        self, *, now: datetime | None = None, source: str | None = None, header: str | None = None
    ) -> tuple[WorkflowSpec, str]:
        """The validated workflow and the YAML text to send for it, loaded back through the
        YAML loader: its limits (an integer over 64 bits, text with a NUL, 2 MiB) are the
        server's, so what passes here is what ``POST /workflows`` takes."""
        spec = self.spec(now=now, source=source)
        text = self.to_yaml(header=header)
        where = f"{source or self.file} (workflow {self.name!r} as YAML)"
        loaded = load_workflow(text, source=where, now=now)
        if loaded.digest != spec.digest:  # pragma: no cover - a rendering bug, not bad input
            raise AssertionError(f"{where}: the YAML does not load back to the same workflow")
        return spec, text

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, {len(self.tasks)} tasks)"
