"""pydantic models of workflow format v1 (the user-facing contract, see DESIGN.md)."""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from stratoflow.model._durations import format_duration, parse_duration
from stratoflow.model._loader import MAX_TASKS
from stratoflow.model._schedule import (
    ScheduleError,
    catchup_start_problem,
    never_fires,
    parse_schedule,
    schedule_window,
    validate_timezone,
)
from stratoflow.resources import MAX_TASK_RESOURCES, path_problem
from stratoflow.templating import mentions_secret

NAME_PATTERN = r"^[a-z0-9_-]+$"
# priorities (workflow and task) lie in [-MAX_PRIORITY, MAX_PRIORITY]
MAX_PRIORITY = 100
MAX_POOL_SLOTS = 10_000
TASK_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # fullmatch: '$' would let "ab\n" through
_CALLABLE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
# C0 and C1 control characters (newline, NUL, escape, ...), and DEL
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_CONCURRENCY = 10_000
MAX_ACTIVE_RUNS = 10_000
# The max_active_runs of a workflow whose schedule catches up (catchup: true) and that sets
# none: Airflow's [core] max_active_runs_per_dag default, so that catching up from an old
# start does not start every missed run at once (due_firings makes hundreds in one tick).
CATCHUP_MAX_ACTIVE_RUNS = 16
# Schedule dates every time zone can represent: a UTC offset of up to a day either way must
# not leave datetime's range (years 1..9999) when the cron loop converts them.
FIRST_SCHEDULE_DATE = datetime(1900, 1, 1)
LAST_SCHEDULE_DATE = datetime(9999, 12, 30, 23, 59, 59, 999999)


def pools_set_command(name: str, *options: str) -> str:
    """``stratoflow pools set NAME OPTIONS...`` as a message prints it, to be pasted: a name
    starting with '-' (click reads it as an option) follows '--', after the options, as in
    the ``runs output`` command that ``runs show`` prints. ``options`` are written as they
    are (``--slots N``, ``[--project P]``); the name is quoted for a shell if it needs it."""
    if name.startswith("-"):
        return " ".join(["stratoflow pools set", *options, "--", shlex.quote(name)])
    return " ".join(["stratoflow pools set", shlex.quote(name), *options])


def effective_max_active_runs(max_active_runs: int | None, catchup: bool) -> int | None:
    """How many runs of a workflow may be active at once (None: no limit): its own
    ``max_active_runs``, else :data:`CATCHUP_MAX_ACTIVE_RUNS` when its schedule has
    ``catchup: true``, else none. The one rule every reader of the limit goes through
    (:attr:`Workflow.effective_max_active_runs`; the API's views, from a stored document)."""
    if max_active_runs is not None:
        return max_active_runs
    return CATCHUP_MAX_ACTIVE_RUNS if catchup else None


def _duration(value: object) -> timedelta:
    return parse_duration(value)


def _control(text: str) -> str | None:
    """The first control character in ``text``, shown escaped, or None."""
    found = _CONTROL.search(text)
    return None if found is None else repr(found.group())[1:-1]


def _clean_keys(value: dict[str, Any], what: str) -> dict[str, Any]:
    for key in value:
        bad = _control(key)
        if bad is not None:
            raise ValueError(f"{what} {key!r} contains the control character {bad}")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
]


# A field's empty default comes from these rather than from ``list`` or ``dict``: pydantic
# reads its factory's signature, and a builtin's costs ~0.2 ms to read; 36 fields are built.
def _list() -> list[Any]:
    return []


def _dict() -> dict[str, Any]:
    return {}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _not_bool(value: Any) -> Any:
    """A number field's input: bool is an int subclass, and pydantic reads true as 1, so
    `max_active_runs: true` was a limit of one run and `retries: yes` one retry."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not {str(value).lower()}")
    return value


class TriggerRule(StrEnum):
    ALL_SUCCESS = "all_success"
    ALL_DONE = "all_done"
    ALL_FAILED = "all_failed"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    NONE_FAILED = "none_failed"
    # Airflow's join after a branch: all ended, none failed, one succeeded (all skipped: skip)
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"


class OnFailure(StrEnum):
    CONTINUE = "continue"
    STOP = "stop"


class OnTimeout(StrEnum):
    """What a task's ``timeout`` does (DolphinScheduler's timeout strategies)."""

    FAIL = "fail"  # the attempt fails (and may be retried)
    WARN = "warn"  # a ``timeout`` alert; the attempt keeps running
    WARN_FAIL = "warn_fail"  # a ``timeout`` alert, and the attempt fails


class AlertEvent(StrEnum):
    """What an ``alerts`` entry may be ``on``."""

    START = "start"
    SUCCESS = "success"
    FAILURE = "failure"
    RETRY = "retry"
    TIMEOUT = "timeout"
    SLA_MISS = "sla_miss"
    RECOVERED = "recovered"


MAX_ALERT_RULES = 20


class AlertRule(_Strict):
    on: list[AlertEvent] = Field(min_length=1, max_length=len(AlertEvent))
    group: str = Field(pattern=NAME_PATTERN, max_length=128)

    @field_validator("on")
    @classmethod
    def _unique_events(cls, value: list[AlertEvent]) -> list[AlertEvent]:
        if len(set(value)) != len(value):
            raise ValueError("an event is listed twice")
        return value


AlertRules = Annotated[list[AlertRule], Field(max_length=MAX_ALERT_RULES)]


class Schedule(_Strict):
    cron: str = Field(description="5-field cron, EventBridge cron(...) or rate(...)")
    timezone: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None
    catchup: bool = False

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, data: Any) -> Any:
        if isinstance(data, str):  # Airflow's schedule="0 2 * * *"
            raise ValueError(
                f"expected a mapping with 'cron', not a text: write schedule: {{cron: {data!r}}}"
            )
        return data

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            parse_schedule(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            return validate_timezone(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("start", "end")
    @classmethod
    def _representable(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return value
        wall, offset = _naive(value), value.utcoffset()
        # the wall reading first: only inside the range is subtracting an offset safe
        inside = FIRST_SCHEDULE_DATE <= wall <= LAST_SCHEDULE_DATE
        if inside and offset is not None:
            inside = FIRST_SCHEDULE_DATE <= wall - offset <= LAST_SCHEDULE_DATE
        if not inside:
            raise ValueError(
                f"{value.isoformat()} is out of range: use a date from "
                f"{FIRST_SCHEDULE_DATE.date()} to {LAST_SCHEDULE_DATE.date()}"
            )
        return value

    @model_validator(mode="after")
    def _window(self, info: ValidationInfo) -> Schedule:
        # instants, not wall readings: either may carry an offset, and a naive one is wall
        # time in the schedule's zone (10:00+09:00 is before 05:00Z)
        start, end = schedule_window(self)
        if start is not None and end is not None and end <= start:
            raise ValueError(
                f"end must be after start: in UTC, end is {end.isoformat()} and start is "
                f"{start.isoformat()}"
            )
        now = info.context.get("now") if isinstance(info.context, dict) else None
        if isinstance(now, datetime):  # a file applied now (a stored document loads as it is)
            early = catchup_start_problem(self)
            if early is not None:
                raise ValueError(early)
            problem = never_fires(self, now)
            if problem is not None:
                raise ValueError(problem)
        return self


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None)


class TaskDefaults(_Strict):
    retries: int = Field(default=0, ge=0, le=100)
    retry_delay: Duration = timedelta(seconds=30)
    retry_backoff: float = Field(default=1.0, ge=1.0, le=10.0, allow_inf_nan=False)
    max_retry_delay: Duration = timedelta(hours=1)
    timeout: Duration | None = None

    @field_validator("retries", "retry_backoff", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        return _not_bool(value)


class _TaskBase(_Strict):
    description: str | None = None
    depends_on: list[str] = Field(default_factory=_list)
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    retries: int | None = Field(default=None, ge=0, le=100)
    retry_delay: Duration | None = None
    retry_backoff: float | None = Field(default=None, ge=1.0, le=10.0, allow_inf_nan=False)
    max_retry_delay: Duration | None = None
    timeout: Duration | None = None
    on_timeout: OnTimeout = OnTimeout.FAIL
    sla: Duration | None = Field(
        default=None, description="the task not ended this long after its run started: sla_miss"
    )
    alerts: AlertRules = Field(default_factory=_list)
    params: dict[str, Any] = Field(default_factory=_dict)
    env: dict[str, str] = Field(default_factory=_dict)
    pool: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        max_length=128,
        description="a named pool (`stratoflow pools set`): the task waits for free slots",
    )
    pool_slots: int = Field(
        default=1, ge=1, le=MAX_POOL_SLOTS, description="slots of its pool the task holds"
    )
    priority: int = Field(
        default=0,
        ge=-MAX_PRIORITY,
        le=MAX_PRIORITY,
        description="within the pool and the run; higher first",
    )
    resources: list[str] = Field(
        default_factory=_list,
        max_length=MAX_TASK_RESOURCES,
        description="Paths of the project's resource files (`stratoflow resources upload`) the "
        "task finds in its working directory under the same paths; a run uses the versions "
        "that were newest when it was created.",
    )

    @field_validator("retries", "retry_backoff", "pool_slots", "priority", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        return _not_bool(value)

    @field_validator("resources")
    @classmethod
    def _resource_paths(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for path in value:
            problem = path_problem(path)
            if problem is not None:
                raise ValueError(f"resource {path[:80]!r}: {problem}")
            if path in seen:
                raise ValueError(f"resource {path!r} is listed twice")
            seen.add(path)
        return value

    @model_validator(mode="after")
    def _resources_where_run(self) -> Any:
        kind = getattr(self, "type", None)
        if self.resources and kind in _NO_RESOURCES:
            raise ValueError(
                f"resources: a {kind} task runs no process with a working directory; list the "
                "files on a shell, python, batch or kubernetes task"
            )
        return self

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _clean_keys(value, "param")

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name or "=" in name or _control(name) is not None:
                raise ValueError(
                    f"environment variable name {name!r} must be non-empty, without '=' "
                    "or control characters"
                )
            if "\x00" in text:
                raise ValueError(f"environment variable {name!r} contains a NUL character")
        return value

    @field_validator("depends_on")
    @classmethod
    def _unique_deps(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for dep in value:
            if dep in seen:
                raise ValueError(f"{dep!r} is listed twice")
            seen.add(dep)
        return value

    def templated_fields(self) -> dict[str, Any]:
        """Field name -> value of every field rendered at dispatch time."""
        return {"params": self.params, "env": self.env}


_NO_RESOURCES = frozenset({"http", "switch", "lambda"})

Runner = Literal["lambda", "batch"]
_RUNNER_DOC = (
    "Where the task runs on AWS: `lambda` (the runner function; short tasks, at most 15 minutes)"
    " or `batch` (a Batch Fargate job with the runner image). Default lambda. Locally ignored."
)


class ShellTask(_TaskBase):
    type: Literal["shell"]
    command: str
    runner: Runner | None = Field(default=None, description=_RUNNER_DOC)

    def templated_fields(self) -> dict[str, Any]:
        return {**super().templated_fields(), "command": self.command}


class PythonTask(_TaskBase):
    type: Literal["python"]
    code: str | None = None
    callable: str | None = None
    runner: Runner | None = Field(default=None, description=_RUNNER_DOC)

    @model_validator(mode="after")
    def _one_body(self) -> PythonTask:
        if (self.code is None) == (self.callable is None):
            raise ValueError("a python task needs exactly one of 'code' or 'callable'")
        if self.callable is not None and not _CALLABLE.fullmatch(self.callable):
            raise ValueError(f"callable {self.callable!r} must look like 'package.module:function'")
        if self.code is not None:
            try:
                compile(self.code, "<code>", "exec")
            except SyntaxError as exc:
                raise ValueError(f"code line {exc.lineno}: {exc.msg}") from None
        return self


class HttpTask(_TaskBase):
    type: Literal["http"]
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    headers: dict[str, str] = Field(default_factory=_dict)
    body: str | dict[str, Any] | list[Any] | None = None
    expected_status: list[int] = Field(default_factory=_list, description="empty: any 2xx")
    # None (unset) follows redirects, as Airflow's HttpOperator and DolphinScheduler's HTTP
    # task do; unset is kept out of the stored document, so a workflow's digest is unchanged
    follow_redirects: bool | None = None

    @field_validator("url")
    @classmethod
    def _url_text(cls, value: str) -> str:
        bad = _control(value)
        if bad is not None:
            raise ValueError(f"the url contains the control character {bad}")
        return value

    @field_validator("headers")
    @classmethod
    def _header_text(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name or _control(name) is not None or ":" in name or " " in name:
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            bad = _control(text.replace("\t", " "))
            if bad is not None:
                raise ValueError(f"header {name!r} contains the control character {bad}")
        return value

    @field_validator("expected_status", mode="before")
    @classmethod
    def _status_list(cls, value: Any) -> Any:
        statuses = [value] if isinstance(value, int) else value
        for status in statuses if isinstance(statuses, list) else ():
            _not_bool(status)
        return statuses

    @field_validator("expected_status")
    @classmethod
    def _status_range(cls, value: list[int]) -> list[int]:
        for code in value:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code")
        return value

    def templated_fields(self) -> dict[str, Any]:
        return {
            **super().templated_fields(),
            "url": self.url,
            "headers": self.headers,
            "body": self.body,
        }


class SwitchCase(_Strict):
    when: str
    next: list[str] = Field(min_length=1)


class SwitchTask(_TaskBase):
    type: Literal["switch"]
    cases: list[SwitchCase] = Field(min_length=1)
    default: list[str] = Field(default_factory=_list)

    def branches(self) -> set[str]:
        return {t for case in self.cases for t in case.next} | set(self.default)

    def templated_fields(self) -> dict[str, Any]:
        return {
            **super().templated_fields(),
            **{f"cases.{i}.when": c.when for i, c in enumerate(self.cases)},
        }


class BatchTask(_TaskBase):
    """AWS Batch job. Locally: ``command`` runs as a local process; the image is not used."""

    type: Literal["batch"]
    image: str
    command: list[str] | str
    vcpus: float = Field(default=1.0, gt=0, le=256, allow_inf_nan=False)
    memory: int = Field(default=2048, gt=0, le=4_194_304, description="MiB")
    job_queue: str | None = None

    @field_validator("vcpus", "memory", mode="before")
    @classmethod
    def _batch_numbers(cls, value: Any) -> Any:  # not _numbers: that would hide _TaskBase's
        return _not_bool(value)

    def templated_fields(self) -> dict[str, Any]:
        return {**super().templated_fields(), "command": self.command}


class KubernetesTask(_TaskBase):
    """A batch/v1 Job on EKS. Locally: ``command`` runs as a local process; no cluster used."""

    type: Literal["kubernetes"]
    image: str
    command: list[str] | str
    namespace: str | None = Field(
        default=None, description="default: the stack's namespace (EksNamespace parameter)"
    )
    cpu: str = "1"
    memory: str = "2Gi"

    def templated_fields(self) -> dict[str, Any]:
        return {**super().templated_fields(), "command": self.command}


class LambdaTask(_TaskBase):
    """Invoke a Lambda function. Locally: ``local_callable`` (module:function) is called with
    the payload; without one the task fails, saying that it needs AWS."""

    type: Literal["lambda"]
    function: str
    payload: dict[str, Any] = Field(default_factory=_dict)
    local_callable: str | None = None

    def templated_fields(self) -> dict[str, Any]:
        return {**super().templated_fields(), "payload": self.payload}


class DateValue(StrEnum):
    """DolphinScheduler's date values: the window of an upstream workflow's logical dates a
    dependency checks, relative to the dependent run's logical date (in its schedule's time
    zone). Hours are hours before the logical date's own hour; days are calendar days."""

    CURRENT_HOUR = "currentHour"
    LAST_1_HOURS = "last1Hours"
    LAST_2_HOURS = "last2Hours"
    LAST_3_HOURS = "last3Hours"
    LAST_24_HOURS = "last24Hours"
    TODAY = "today"
    LAST_1_DAYS = "last1Days"
    LAST_2_DAYS = "last2Days"
    LAST_3_DAYS = "last3Days"
    LAST_7_DAYS = "last7Days"
    THIS_WEEK = "thisWeek"
    LAST_WEEK = "lastWeek"
    LAST_MONDAY = "lastMonday"
    LAST_TUESDAY = "lastTuesday"
    LAST_WEDNESDAY = "lastWednesday"
    LAST_THURSDAY = "lastThursday"
    LAST_FRIDAY = "lastFriday"
    LAST_SATURDAY = "lastSaturday"
    LAST_SUNDAY = "lastSunday"
    THIS_MONTH = "thisMonth"
    LAST_MONTH = "lastMonth"
    THIS_MONTH_BEGIN = "thisMonthBegin"
    LAST_MONTH_BEGIN = "lastMonthBegin"
    LAST_MONTH_END = "lastMonthEnd"


MAX_DEPENDENCY_ITEMS = 20
MIN_CHECK_INTERVAL = timedelta(seconds=5)
MAX_CHECK_INTERVAL = timedelta(days=1)
_UPSTREAM_WORKFLOW = re.compile(r"(?:[a-z0-9_-]{1,128}/)?[a-z0-9_-]{1,128}")


class DependencyItem(_Strict):
    workflow: str = Field(
        description="an upstream workflow: a name in this project, or 'project/name'",
        max_length=257,
    )
    task: str | None = Field(
        default=None, description="one task of the upstream runs; absent: the whole run"
    )
    date: DateValue = Field(description="the window of upstream logical dates to check")

    @field_validator("workflow")
    @classmethod
    def _workflow_name(cls, value: str) -> str:
        if not _UPSTREAM_WORKFLOW.fullmatch(value):
            raise ValueError(
                f"workflow {value!r} must be a workflow name or 'project/name' "
                "(lower-case letters, digits, '_' and '-')"
            )
        return value

    @field_validator("task")
    @classmethod
    def _task_name(cls, value: str | None) -> str | None:
        if value is not None and not _TASK_ID.fullmatch(value):
            raise ValueError(f"invalid task id {value!r}: use letters, digits, '_' and '-'")
        return value

    def upstream(self, project: str) -> tuple[str, str]:
        """(project, workflow) of the upstream, relative to the dependent's ``project``."""
        if "/" in self.workflow:
            owner, name = self.workflow.split("/", 1)
            return owner, name
        return project, self.workflow


DependencyItems = Annotated[
    list[DependencyItem], Field(min_length=1, max_length=MAX_DEPENDENCY_ITEMS)
]


class DependencyTask(_TaskBase):
    """Wait until upstream workflows' runs (or one task of them) for a window of logical dates
    have succeeded: ``all`` of the items, or ``any`` of them. It runs in the scheduler (no
    executor); ``timeout`` bounds the wait (absent: until the outcome is certain)."""

    type: Literal["dependency"]
    all_: DependencyItems | None = Field(default=None, alias="all")
    any_: DependencyItems | None = Field(default=None, alias="any")
    check_interval: Duration = Field(
        default=timedelta(minutes=1),
        description="how often to look again while waiting (also woken by an upstream run's end)",
    )

    @model_validator(mode="after")
    def _one_group(self) -> DependencyTask:
        if (self.all_ is None) == (self.any_ is None):
            raise ValueError("a dependency task needs exactly one of 'all' or 'any'")
        if not MIN_CHECK_INTERVAL <= self.check_interval <= MAX_CHECK_INTERVAL:
            raise ValueError(
                f"check_interval must be from {format_duration(MIN_CHECK_INTERVAL)} "
                f"to {format_duration(MAX_CHECK_INTERVAL)}"
            )
        return self

    @property
    def items(self) -> list[DependencyItem]:
        return list(self.all_ if self.all_ is not None else self.any_ or [])

    @property
    def mode(self) -> Literal["all", "any"]:
        return "all" if self.all_ is not None else "any"


_SQL_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_SQL_CHARS = 1_000_000
MAX_SQL_PARAMETERS = 100
SqlParameter = str | int | float | bool | None


class SqlTask(_TaskBase):
    """A SQL statement, or a script of several, on a named connection (``stratoflow
    connections``). ``parameters`` are bound by the driver (``%(name)s`` in the SQL), never
    pasted into it; ``outputs`` says what the task reports of the last statement's result."""

    type: Literal["sql"]
    connection: str = Field(
        pattern=NAME_PATTERN, max_length=128, description="a connection of the project"
    )
    sql: str | None = Field(default=None, max_length=MAX_SQL_CHARS)
    sql_file: str | None = Field(
        default=None,
        max_length=1024,
        description="a file in the task's working directory (e.g. one of its resources)",
    )
    parameters: dict[str, SqlParameter] = Field(
        default_factory=_dict,
        max_length=MAX_SQL_PARAMETERS,
        description="bound as query parameters: write %(name)s in the SQL",
    )
    outputs: Literal["first_row", "rows", "none"] = Field(
        default="first_row",
        description="first_row: its columns as string outputs; rows: `rows`, at most 1,000 "
        "as JSON; none. Each also reports row_count.",
    )

    @field_validator("parameters", mode="before")
    @classmethod
    def _one_value_each(cls, value: Any) -> Any:
        """One message for a value that is not one value (pydantic gave one per type of the
        union), saying what a value may be."""
        if not isinstance(value, dict):
            return value
        for name, item in value.items():
            if item is None or isinstance(item, (str, int, float, bool)):
                continue
            what = (
                "a list"
                if isinstance(item, list)
                else "a mapping"
                if isinstance(item, dict)
                else f"a {type(item).__name__}"
            )
            raise ValueError(
                f"parameter {name!r} is {what}: a parameter is bound as one value, a string, "
                "number, boolean or null; pass several as one string and split it in the SQL "
                f"(PostgreSQL: = ANY(string_to_array(%({name})s, ',')::int[]); MySQL: "
                f"FIND_IN_SET(id, %({name})s)), or write them in the SQL itself"
            )
        return value

    @model_validator(mode="after")
    def _one_statement(self) -> SqlTask:
        if (self.sql is None) == (self.sql_file is None):
            raise ValueError("an sql task needs exactly one of 'sql' or 'sql_file'")
        if self.sql is not None and not self.sql.strip():
            raise ValueError("sql is empty")
        if self.sql_file is not None:
            parts = self.sql_file.replace("\\", "/").split("/")
            if self.sql_file.startswith("/") or ".." in parts or not self.sql_file.strip():
                raise ValueError(
                    f"sql_file {self.sql_file!r} must be a relative path inside the task's "
                    "working directory (no '..')"
                )
            bad = _control(self.sql_file)
            if bad is not None:
                raise ValueError(f"sql_file contains the control character {bad}")
        for name in self.parameters:
            if not _SQL_PARAMETER.fullmatch(name):
                raise ValueError(
                    f"parameter name {name!r}: use letters, digits and '_' (at most 64), "
                    "not starting with a digit"
                )
        return self

    def templated_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {**super().templated_fields(), "parameters": self.parameters}
        if self.sql is not None:
            fields["sql"] = self.sql
        if self.sql_file is not None:
            fields["sql_file"] = self.sql_file
        return fields


WORKFLOW_REF_PATTERN = r"^(?:[a-z0-9_-]{1,128}/)?[a-z0-9_-]{1,128}$"


class WorkflowTask(_TaskBase):
    """A sub-workflow: starts a run of ``workflow`` (its latest version at that moment) with
    ``params``; the task's state is the child run's final state, and its outputs are the
    child's task outputs (``{{ tasks.<this>.outputs.<child task>.<key> }}``)."""

    type: Literal["workflow"]
    workflow: str = Field(
        pattern=WORKFLOW_REF_PATTERN,
        max_length=257,
        description="a workflow of the same project (name), or of another one (project/name)",
    )

    @field_validator("params")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if isinstance(item, str) and mentions_secret(item):
                raise ValueError(
                    f"param {key!r}: a sub-workflow's params become its run's params, which "
                    "are shown: reference the secret in the child's tasks instead"
                )
        return value

    def target(self, project: str) -> tuple[str, str]:
        """(project, name) of the child workflow, for a task of a workflow in ``project``."""
        if "/" in self.workflow:
            child_project, name = self.workflow.split("/", 1)
            return child_project, name
        return project, self.workflow


Task = Annotated[
    ShellTask
    | PythonTask
    | HttpTask
    | SwitchTask
    | BatchTask
    | KubernetesTask
    | LambdaTask
    | DependencyTask
    | SqlTask
    | WorkflowTask,
    Field(discriminator="type"),
]
TASK_TYPES = (
    "shell",
    "python",
    "http",
    "switch",
    "batch",
    "kubernetes",
    "lambda",
    "dependency",
    "sql",
    "workflow",
)


class Workflow(_Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=128)
    project: str = Field(default="default", pattern=NAME_PATTERN, max_length=128)
    description: str | None = None
    schedule: Schedule | None = None
    params: dict[str, Any] = Field(default_factory=_dict)
    max_active_runs: int | None = Field(default=None, ge=1, le=MAX_ACTIVE_RUNS)
    concurrency: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)
    priority: int = Field(
        default=0,
        ge=-MAX_PRIORITY,
        le=MAX_PRIORITY,
        description="run priority; higher dispatches first across runs",
    )
    on_failure: OnFailure = OnFailure.CONTINUE
    sla: Duration | None = Field(
        default=None, description="a run still unfinished this long after it started: sla_miss"
    )
    alerts: AlertRules = Field(default_factory=_list)
    defaults: TaskDefaults = Field(default_factory=TaskDefaults)
    tasks: dict[str, Task] = Field(min_length=1)

    @field_validator("max_active_runs", "concurrency", "priority", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        return _not_bool(value)

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _clean_keys(value, "param")

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_ids(cls, value: Any) -> Any:
        """Before the tasks themselves: a bad id is the first thing to say, and the count
        bounds the work."""
        if not isinstance(value, dict):
            return value
        if len(value) > MAX_TASKS:
            raise ValueError(f"{len(value)} tasks; at most {MAX_TASKS} (limit max_tasks)")
        for task_id in value:
            if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
                raise ValueError(
                    f"invalid task id {task_id!r}: use letters, digits, '_' and '-' (at most 128)"
                )
        return value

    @property
    def effective_max_active_runs(self) -> int | None:
        """The limit on its active runs that holds (None: none): ``max_active_runs``, else
        16 when the schedule catches up (:func:`effective_max_active_runs`). Read this, not
        ``max_active_runs``, wherever runs are admitted or the limit is named."""
        catchup = self.schedule is not None and self.schedule.catchup
        return effective_max_active_runs(self.max_active_runs, catchup)

    @property
    def max_active_runs_implied(self) -> bool:
        """Whether the limit is the one ``catchup`` implies (no ``max_active_runs`` set)."""
        return self.max_active_runs is None and self.effective_max_active_runs is not None

    # --- effective per-task settings (task value, else workflow default) ---
    def retries(self, task_id: str) -> int:
        task = self.tasks[task_id]
        return self.defaults.retries if task.retries is None else task.retries

    def retry_delay(self, task_id: str) -> timedelta:
        task = self.tasks[task_id]
        return task.retry_delay if task.retry_delay is not None else self.defaults.retry_delay

    def retry_backoff(self, task_id: str) -> float:
        task = self.tasks[task_id]
        return task.retry_backoff if task.retry_backoff is not None else self.defaults.retry_backoff

    def max_retry_delay(self, task_id: str) -> timedelta:
        task = self.tasks[task_id]
        if task.max_retry_delay is not None:
            return task.max_retry_delay
        return self.defaults.max_retry_delay

    def timeout(self, task_id: str) -> timedelta | None:
        """The task's timeout, else the defaults'; None: none. ``0`` is none too, as
        DolphinScheduler's timeout 0 and Airflow's ``execution_timeout=None`` (a task's ``0``
        takes away a ``defaults.timeout``): never a deadline at the attempt's start, which
        is what a 0 became where it reached a deadline (AWS kills at 1 s at the least, a
        dependency task failed at its first check)."""
        task = self.tasks[task_id]
        timeout = task.timeout if task.timeout is not None else self.defaults.timeout
        return timeout or None
