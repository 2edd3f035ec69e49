"""Every scheduling decision, as pure functions of (state slice, event, now).

Nothing here reads the clock, the network or the disk, and nothing here writes: callers
persist what these functions decide, with conditional writes, before acting on it. The hot
path (an attempt finished) touches one task and its children: O(out-degree).
"""

from __future__ import annotations

import json
import math
import re
import weakref
from collections.abc import Collection, Iterable, Mapping, Set
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from stratoflow.engine._states import (
    AttemptResult,
    AttemptStatus,
    Run,
    RunState,
    TaskInstance,
    TaskState,
    Upstream,
)
from stratoflow.errors import Conflict, InvalidInput, Problem
from stratoflow.model import (
    OnFailure,
    OnTimeout,
    SwitchTask,
    TriggerRule,
    WorkflowSpec,
    WorkflowTask,
)
from stratoflow.nesting import is_nest, walk
from stratoflow.templating import (
    SecretTokens,
    TaskOutputs,
    TemplateError,
    TemplateVariables,
    bounded,
    finish_references,
    is_plain,
    render_condition,
    render_value,
)

SWITCH_BRANCH_KEY = "branch"


class Readiness(StrEnum):
    WAIT = "wait"
    RUN = "run"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"


# ---------------------------------------------------------------- trigger rules
def readiness(rule: TriggerRule, up: Upstream, n_parents: int) -> Readiness:
    """Airflow's trigger rules, decided as early as the counts allow."""
    if n_parents == 0:
        return Readiness.RUN
    all_done = up.done >= n_parents
    match rule:
        case TriggerRule.ALL_SUCCESS:
            if up.failed:
                return Readiness.UPSTREAM_FAILED
            if up.skipped:
                return Readiness.SKIP
            return Readiness.RUN if all_done else Readiness.WAIT
        case TriggerRule.NONE_FAILED:
            if up.failed:
                return Readiness.UPSTREAM_FAILED
            return Readiness.RUN if all_done else Readiness.WAIT
        case TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS:
            if up.failed:
                return Readiness.UPSTREAM_FAILED
            if not all_done:
                return Readiness.WAIT
            return Readiness.RUN if up.succeeded else Readiness.SKIP
        case TriggerRule.ALL_FAILED:
            if up.succeeded or up.skipped:
                return Readiness.SKIP
            return Readiness.RUN if all_done else Readiness.WAIT
        case TriggerRule.ALL_DONE:
            return Readiness.RUN if all_done else Readiness.WAIT
        case TriggerRule.ONE_SUCCESS:
            if up.succeeded:
                return Readiness.RUN
            if not all_done:
                return Readiness.WAIT
            return Readiness.UPSTREAM_FAILED if up.failed else Readiness.SKIP
        case TriggerRule.ONE_FAILED:
            if up.failed:
                return Readiness.RUN
            return Readiness.SKIP if all_done else Readiness.WAIT
    raise AssertionError(rule)  # pragma: no cover - exhaustive match


_READINESS_STATE = {
    Readiness.RUN: TaskState.QUEUED,
    Readiness.SKIP: TaskState.SKIPPED,
    Readiness.UPSTREAM_FAILED: TaskState.UPSTREAM_FAILED,
}


def child_state(
    spec: WorkflowSpec, child: TaskInstance, *, unchosen: bool = False
) -> TaskState | None:
    """The state a WAITING child moves to given its upstream counts, or None to keep waiting.
    ``unchosen``: a parent switch did not choose it, which skips it whatever its trigger rule."""
    if child.state is not TaskState.WAITING:
        return None
    if unchosen:
        return TaskState.SKIPPED
    task = spec.workflow.tasks[child.task_id]
    decision = readiness(task.trigger_rule, child.upstream, len(spec.dag.parents[child.task_id]))
    return _READINESS_STATE.get(decision)


def edge_outcome(
    spec: WorkflowSpec, parent: str, state: TaskState, outputs: Mapping[str, Any], child: str
) -> TaskState:
    """What a parent's end means to one child: a switch skips the branches it did not choose."""
    if skipped_by_switch(spec, parent, state, outputs, child):
        return TaskState.SKIPPED
    if state is TaskState.UPSTREAM_FAILED or state is TaskState.STOPPED:
        return TaskState.FAILED
    return state


def skipped_by_switch(
    spec: WorkflowSpec, parent: str, state: TaskState, outputs: Mapping[str, Any], child: str
) -> bool:
    """Whether ``parent`` is a switch that succeeded without choosing ``child``. A switch marks
    every branch it did not choose SKIPPED, whatever that branch's trigger rule (as Airflow's
    branch operators do); the skip then propagates by trigger rules."""
    task = spec.workflow.tasks[parent]
    if state is not TaskState.SUCCEEDED or not isinstance(task, SwitchTask):
        return False
    return child in task.branches() and child not in (outputs.get(SWITCH_BRANCH_KEY) or [])


# ---------------------------------------------------------------- attempts
def retry_delay(spec: WorkflowSpec, task_id: str, attempt: int) -> timedelta:
    """Delay before attempt ``attempt + 1``: delay * backoff^(attempt-1), capped by
    ``max_retry_delay``. The cap bounds what the backoff adds, never the ``retry_delay``
    written (as Airflow's ``max_retry_delay``, which only a backoff meets): a fixed
    ``retry_delay: 2h`` (DolphinScheduler's failRetryInterval 120) waits 2 h, not the
    default cap's 1 h."""
    wf = spec.workflow
    base = wf.retry_delay(task_id).total_seconds()
    seconds = base * wf.retry_backoff(task_id) ** max(attempt - 1, 0)
    cap = max(wf.max_retry_delay(task_id).total_seconds(), base)
    return timedelta(seconds=min(seconds, cap))


@dataclass(frozen=True)
class AttemptDecision:
    """How a task instance changes when its attempt ends."""

    task: TaskInstance
    retrying: bool = False


def on_attempt_finished(
    spec: WorkflowSpec, ti: TaskInstance, attempt: int, result: AttemptResult, now: datetime
) -> AttemptDecision | None:
    """Apply an attempt's result. ``None`` means the event is stale or a duplicate: ignore it."""
    if ti.state is not TaskState.RUNNING or ti.attempt != attempt:
        return None
    if result.held:
        return AttemptDecision(held_claim(ti))
    ended = attempt_end(ti, result, now)
    # a sub-workflow task that ends with its child's end follows that child from now on
    base = ti.with_(deadline=None, ended_at=ended, error=result.error, child_end=result.child_end)
    if result.status is AttemptStatus.SUCCEEDED:
        return AttemptDecision(
            base.with_(state=TaskState.SUCCEEDED, outputs=dict(result.outputs), error=None)
        )
    if result.status is AttemptStatus.STOPPED:
        return AttemptDecision(base.with_(state=TaskState.STOPPED))
    try_number = ti.try_number
    if result.retryable and try_number <= spec.workflow.retries(ti.task_id):
        ready_at = ended + retry_delay(spec, ti.task_id, try_number)
        if result.retry_not_before is not None and result.retry_not_before > ready_at:
            ready_at = result.retry_not_before  # the killed attempt may run until then
        return AttemptDecision(
            base.with_(
                state=TaskState.UP_FOR_RETRY, ready_at=ready_at, ended_at=None, child_end=None
            ),
            retrying=True,
        )
    return AttemptDecision(base.with_(state=TaskState.FAILED))


def held_claim(ti: TaskInstance) -> TaskInstance:
    """A retry's claim taken back before its attempt started (its run paused: ``held_retry``,
    or ``AttemptResult.held``): UP_FOR_RETRY again, due when it was, so that it waits for the
    resume as a retry does where nothing is dispatched early. The attempt it claimed ends
    unstarted and does not use the retry budget (``attempt_base`` moves with it): the next
    claim tries the same try under the next attempt number."""
    return ti.with_(
        state=TaskState.UP_FOR_RETRY,
        ready_at=ti.started_at,
        deadline=None,
        attempt_base=ti.attempt_base + 1,
    )


def was_held(before: TaskInstance, after: TaskInstance) -> bool:
    """Whether ``before`` -> ``after`` is a retry's claim taken back (``held_claim``): the
    attempt it claimed never started, so no attempt failed there and nothing is announced
    (the task's retry was announced when the attempt before it failed). Told apart from a
    failed attempt going UP_FOR_RETRY, which keeps ``attempt_base``, by the base moving on
    under the same attempt number. A resume that releases it again claims it as any retry."""
    return (
        before.state is TaskState.RUNNING
        and after.state is TaskState.UP_FOR_RETRY
        and after.attempt == before.attempt
        and after.attempt_base == before.attempt_base + 1
    )


def attempt_end(ti: TaskInstance, result: AttemptResult, now: datetime) -> datetime:
    """When an attempt ended: ``now``, its report, unless the executor found it ended
    earlier (``result.ended_at``: while the scheduler was down), then that, though never
    before the attempt started (a clock set back meanwhile)."""
    end = result.ended_at
    if end is None or end >= now:
        return now
    return end if ti.started_at is None or end >= ti.started_at else ti.started_at


def claim(spec: WorkflowSpec, ti: TaskInstance, now: datetime) -> TaskInstance:
    """QUEUED -> RUNNING with the next attempt number: the dispatch claim.

    A retry promoted before its delay ran out (a dispatcher that waits it out itself, as the
    AWS state machine does) keeps its ``ready_at``: the attempt starts then, not ``now``, and
    its deadline counts from that start."""
    if ti.state is not TaskState.QUEUED:
        raise Conflict(f"task {ti.task_id} is {ti.state}, not queued")
    timeout = spec.workflow.timeout(ti.task_id)
    start = max(now, ti.ready_at) if ti.ready_at is not None else now
    return ti.with_(
        state=TaskState.RUNNING,
        attempt=ti.attempt + 1,
        started_at=start,
        ended_at=None,
        ready_at=None,
        deadline=start + timeout if timeout else None,
        error=None,
    )


def retry_due(ti: TaskInstance, now: datetime) -> bool:
    return ti.state is TaskState.UP_FOR_RETRY and (ti.ready_at is None or ti.ready_at <= now)


def timed_out(ti: TaskInstance, now: datetime) -> bool:
    return ti.state is TaskState.RUNNING and ti.deadline is not None and ti.deadline <= now


@dataclass(frozen=True)
class DeadlineOutcome:
    """What a running attempt's passed deadline does, by the task's ``on_timeout``.

    ``warn``: say so (a ``timeout`` event, once per attempt); ``fail``: the attempt ends
    timed out. An attempt that only warns keeps running with no deadline left
    (``keep_running``, written over the RUNNING task it came from), so it warns once."""

    warn: bool
    fail: bool
    keep_running: TaskInstance | None = None


def on_deadline(spec: WorkflowSpec, ti: TaskInstance, now: datetime) -> DeadlineOutcome | None:
    """None if ``ti`` has not timed out at ``now``."""
    if not timed_out(ti, now):
        return None
    mode = spec.workflow.tasks[ti.task_id].on_timeout
    if mode is OnTimeout.WARN:
        return DeadlineOutcome(warn=True, fail=False, keep_running=ti.with_(deadline=None))
    return DeadlineOutcome(warn=mode is OnTimeout.WARN_FAIL, fail=True)


def enforced_timeout(spec: WorkflowSpec, task_id: str) -> timedelta | None:
    """The timeout an executor that enforces it itself (the AWS state machine) must kill at:
    none for a task whose timeout only warns."""
    if spec.workflow.tasks[task_id].on_timeout is OnTimeout.WARN:
        return None
    return spec.workflow.timeout(task_id)


def dispatch_slots(spec: WorkflowSpec, run: Run) -> int:
    """How many more attempts this run may have running now."""
    if run.state is not RunState.RUNNING:
        return 0
    limit = spec.workflow.concurrency
    if limit is None:
        return 1 << 30
    return max(limit - run.n_running, 0)


# ---------------------------------------------------------------- templating
def template_context(
    spec: WorkflowSpec,
    run: Run,
    task_id: str,
    upstream_outputs: Mapping[str, Mapping[str, Any]],
    variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What a task's templates can read. ``upstream_outputs`` holds the tasks it reads
    (``Dag.reads``: those it names, and its direct upstreams if it indexes ``tasks``);
    ``variables`` the values of the project's variables it reads that are set
    (``Dag.variables``; the service reads them from its store when the task is rendered):
    one that is not there fails the render naming it and the project."""
    values = variables or {}
    logical = run.logical_date
    base: dict[str, Any] = {
        "params": dict(run.params),
        "tasks": {t: {"outputs": TaskOutputs(t, o)} for t, o in upstream_outputs.items()},
        "run": {
            "id": run.id,
            "workflow": run.workflow,
            "project": run.project,
            "version": run.version,
        },
        "task": {"id": task_id},
        "logical_date": logical.isoformat(),
        "ds": logical.strftime("%Y-%m-%d"),
        "ds_nodash": logical.strftime("%Y%m%d"),
        "ts": logical.isoformat(),
        # secrets.NAME stays a reference (see templating.SecretTokens): never a value here
        "secrets": SecretTokens(),
        "var": {
            "value": TemplateVariables(run.project, values, as_json=False),
            "json": TemplateVariables(run.project, values, as_json=True),
        },
    }
    task = spec.workflow.tasks[task_id]
    rendered_params = render_value(task.params, base)
    base["params"] = {**base["params"], **rendered_params}
    return base


@dataclass(frozen=True)
class RenderedTask:
    """A task's fields after templating, ready for an executor."""

    task_type: str
    fields: dict[str, Any]
    params: dict[str, Any]
    env: dict[str, str]


def render_task(
    spec: WorkflowSpec,
    run: Run,
    task_id: str,
    upstream_outputs: Mapping[str, Mapping[str, Any]],
    variables: Mapping[str, str] | None = None,
) -> RenderedTask:
    """Render a task for dispatch; raises ``TemplateError`` naming the undefined name or the
    rendering bound exceeded (all of a task's templates share one deadline).

    A task with no template anywhere (and run params with none) is put together from what
    was worked out once for its spec, with no context and no Jinja: the same RenderedTask."""
    plain = _plain_task(spec, task_id)
    if plain is not None and all(map(is_plain, run.params.values())):
        return plain.rendered(run.params)
    with bounded():
        return _render_task(spec, run, task_id, upstream_outputs, variables)


def _render_task(
    spec: WorkflowSpec,
    run: Run,
    task_id: str,
    upstream_outputs: Mapping[str, Mapping[str, Any]],
    variables: Mapping[str, str] | None = None,
) -> RenderedTask:
    task = spec.workflow.tasks[task_id]
    context = template_context(spec, run, task_id, upstream_outputs, variables)
    fields: dict[str, Any] = {}
    for name, value in task.templated_fields().items():
        if name in ("params", "env") or name.startswith("cases."):
            continue
        try:
            fields[name] = render_value(value, context)
        except TemplateError as exc:
            raise TemplateError(f"{name}: {exc}") from None
    extra = task.model_dump(mode="json", exclude=set(task.templated_fields()) | _COMMON_FIELDS)
    env = {k: str(v) for k, v in render_value(dict(task.env), context).items()}
    tokens: SecretTokens = context["secrets"]
    fields = {name: finish_references(tokens, value, name) for name, value in fields.items()}
    return RenderedTask(
        task.type,
        {**extra, **fields},
        finish_references(tokens, context["params"], "params"),
        finish_references(tokens, env, "env"),
    )


_COMMON_FIELDS = {
    "description", "depends_on", "trigger_rule", "retries", "retry_delay",
    "retry_backoff", "max_retry_delay", "timeout", "type", "on_timeout", "sla", "alerts",
    "pool", "pool_slots", "priority",
}  # fmt: skip


def _fresh(value: Any) -> Any:
    """``value`` with its lists and dicts copied (as rendering and ``finish`` copy them)."""
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class _PlainTask:
    """What ``_render_task`` makes of a task whose every rendered value is plain
    (``templating.is_plain``): rendering copies such a value and ``finish`` copies it again,
    whatever the context, so all of it but the run's params is known from the spec alone.
    Held for the spec's lifetime and never handed out: each render gets its own copies."""

    task_type: str
    fields: dict[str, Any]  # the model_dump "extra" fields, then the templated ones
    nested: tuple[str, ...]  # those of ``fields`` holding a list or a dict
    params: dict[str, Any]  # the task's own params
    env: dict[str, str]

    @classmethod
    def of(cls, spec: WorkflowSpec, task_id: str) -> _PlainTask | None:
        task = spec.workflow.tasks[task_id]
        templated = task.templated_fields()
        rendered = {
            name: value
            for name, value in templated.items()
            if name not in ("params", "env") and not name.startswith("cases.")
        }
        env = {k: str(v) for k, v in task.env.items()}
        # env: what is rendered, and the text str() makes of it (what finish reads)
        if not all(map(is_plain, (rendered, task.params, task.env, env))):
            return None
        extra = task.model_dump(mode="json", exclude=set(templated) | _COMMON_FIELDS)
        fields = {**extra, **_fresh(rendered)}
        nested = tuple(k for k, v in fields.items() if isinstance(v, (dict, list)))
        return cls(task.type, fields, nested, _fresh(task.params), env)

    def rendered(self, run_params: Mapping[str, Any]) -> RenderedTask:
        """As ``_render_task`` renders it for a run with these (plain) params."""
        fields = dict(self.fields)
        for name in self.nested:
            fields[name] = _fresh(fields[name])
        params = {k: _fresh(v) for k, v in {**run_params, **self.params}.items()}
        return RenderedTask(self.task_type, fields, params, dict(self.env))


# spec (by id, while it lives) -> task id -> its _PlainTask, None if it has templates.
# A WorkflowSpec is immutable but not hashable (its workflow holds dicts), hence ids: the
# weak reference's callback drops the entry when the spec goes, before its id can be reused.
_PLAIN_TASKS: dict[int, tuple[weakref.ref[WorkflowSpec], dict[str, _PlainTask | None]]] = {}


def _plain_task(spec: WorkflowSpec, task_id: str) -> _PlainTask | None:
    key = id(spec)
    entry = _PLAIN_TASKS.get(key)
    if entry is None or entry[0]() is not spec:

        def forget(_: weakref.ref[WorkflowSpec]) -> None:
            _PLAIN_TASKS.pop(key, None)

        entry = (weakref.ref(spec, forget), {})
        _PLAIN_TASKS[key] = entry
    tasks = entry[1]
    try:
        return tasks[task_id]
    except KeyError:
        plain = tasks[task_id] = _PlainTask.of(spec, task_id)
        return plain


def choose_branches(
    spec: WorkflowSpec,
    run: Run,
    task_id: str,
    upstream_outputs: Mapping[str, Mapping[str, Any]],
    variables: Mapping[str, str] | None = None,
) -> AttemptResult:
    """Evaluate a switch: the first case whose condition holds, else the default."""
    task = spec.workflow.tasks[task_id]
    assert isinstance(task, SwitchTask)
    try:
        with bounded():  # one deadline for all of the switch's templates
            context = template_context(spec, run, task_id, upstream_outputs, variables)
            for i, case in enumerate(task.cases):
                if render_condition(case.when, context):
                    return AttemptResult(
                        AttemptStatus.SUCCEEDED, {SWITCH_BRANCH_KEY: list(case.next), "case": i}
                    )
    except TemplateError as exc:
        return AttemptResult(AttemptStatus.FAILED, error=f"switch: {exc}", retryable=False)
    return AttemptResult(
        AttemptStatus.SUCCEEDED, {SWITCH_BRANCH_KEY: list(task.default), "case": None}
    )


# ---------------------------------------------------------------- runs
# How deep a run's param value may nest lists and objects: a value is read by every template
# of the run and kept in its views; one 500 levels deep overflowed the stack in rendering, on
# every turn of the scheduler, for every project
MAX_PARAM_DEPTH = 32
# What a run is given for its params (a trigger's, a backfill's or a rerun's overrides, a
# sub-workflow's rendered params), as compact JSON: every view of the run returns them whole
MAX_PARAMS_BYTES = 64 * 1024
_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_text(text: str) -> str | None:
    """Why ``text`` cannot be a param's text: a NUL (no command line or environment holds
    one) or a lone surrogate (not Unicode: it cannot be written as UTF-8), or None."""
    if "\x00" in text:
        return "holds a NUL character"
    if _SURROGATE.search(text):
        return "holds a lone surrogate (text that is not valid Unicode)"
    return None


def effective_params(spec: WorkflowSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Workflow defaults overridden per run; an unknown name is a mistake, not a new param,
    and so is a value nested deeper than ``MAX_PARAM_DEPTH`` or a number that is not
    finite (JSON has no such number: it would be stored as null).

    A param's default gives its type: text given for a param whose default is a number, a
    boolean, a list or an object is read as one (``-p n=5`` is 5 where ``n`` defaults to 3,
    ``-p flag=false`` is false), as DolphinScheduler's typed parameters are; text that does
    not read as one is refused, naming the param and the type. Left as text, ``{{ params.n
    * 2 }}`` repeated the text and ``{% if params.flag %}`` took ``"false"`` as true."""
    declared = spec.workflow.params
    unknown = sorted(set(overrides) - set(declared))
    problems = []
    if unknown:
        known = ", ".join(sorted(declared)) or "none declared"
        problems += [
            Problem(f"params.{name}", f"unknown parameter (workflow params: {known})")
            for name in unknown
        ]
    typed, wrong = _typed(declared, overrides)
    problems += wrong
    problems += [p for name, value in typed.items() if (p := _param_problem(name, value))]
    if not problems and (size := _json_size(typed)) > MAX_PARAMS_BYTES:
        problems.append(
            Problem("params", f"the params given are {size:,} bytes as JSON, over "
                              f"{MAX_PARAMS_BYTES:,}: pass data as a resource or a variable")
        )  # fmt: skip
    if problems:
        raise InvalidInput(problems)
    return {**declared, **typed}


def _json_size(value: Any) -> int:
    """The bytes of ``value`` as compact JSON in UTF-8 (every text in it is Unicode)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode())


def _typed(
    declared: Mapping[str, Any], overrides: Mapping[str, Any]
) -> tuple[dict[str, Any], list[Problem]]:
    """``overrides`` with each text given for a declared param read as its default's type
    (``_as_type_of``; text that does not read stays as given), and the problems of those
    that do not read."""
    typed = dict(overrides)
    problems: list[Problem] = []
    for name, given in overrides.items():
        if name in declared and isinstance(given, str):
            try:
                typed[name] = _as_type_of(declared[name], given)
            except ValueError as exc:
                problems.append(Problem(f"params.{name}", str(exc)))
    return typed, problems


_TRUE, _FALSE = frozenset({"true", "yes", "on", "1"}), frozenset({"false", "no", "off", "0"})
_MAX_NUMBER_CHARS = 64  # a number's text: int() of a longer one is slow, and none needs it
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _as_type_of(default: Any, text: str) -> Any:
    """``text`` read as a value of ``default``'s type (text, and anything for a default of
    null, stays text); ValueError says what was expected."""
    shown = text if len(text) <= 40 else text[:40] + "..."
    if isinstance(default, bool):  # before int: a bool is an int
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError(f"expected true or false (its default is {str(default).lower()}), "
                         f"got {shown!r}")  # fmt: skip
    if isinstance(default, (int, float)):
        kind = "an integer" if isinstance(default, int) else "a number"
        wrong = ValueError(f"expected {kind} (its default is {default}), got {shown!r}")
        pattern = _INTEGER if isinstance(default, int) else _NUMBER
        word = text.strip()
        # digits as written (int() and float() also take "1_000", other scripts' digits,
        # "inf" and "nan"), and not so long that reading them is slow
        if len(word) > _MAX_NUMBER_CHARS or not pattern.fullmatch(word):
            raise wrong
        if isinstance(default, int):
            return int(word)
        if not math.isfinite(number := float(word)):  # 1e999
            raise ValueError(f"{word} is not a finite number")
        return number
    if isinstance(default, (list, dict)):
        kind = "a JSON list" if isinstance(default, list) else "a JSON object"
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            raise ValueError(f"expected {kind} (as its default is), got {shown!r}") from None
        if not isinstance(parsed, type(default)):
            raise ValueError(f"expected {kind} (as its default is), got {shown!r}")
        return parsed
    return text


def _param_problem(name: str, value: Any) -> Problem | None:
    """What is wrong with a param's value (walked without recursion: it may be far deeper
    than the stack), or None."""
    for item, depth in walk(value):
        if isinstance(item, float) and not math.isfinite(item):
            return Problem(f"params.{name}", f"{item} is not a finite number")
        for text in (item, *item) if isinstance(item, Mapping) else (item,):
            if isinstance(text, str) and (why := _bad_text(text)):
                return Problem(f"params.{name}", why)
        if depth > MAX_PARAM_DEPTH and is_nest(item):
            return Problem(
                f"params.{name}", f"nests deeper than {MAX_PARAM_DEPTH} levels of lists and objects"
            )
    return None


def new_run(
    spec: WorkflowSpec,
    *,
    run_id: str,
    version: int,
    params: Mapping[str, Any],
    logical_date: datetime,
    now: datetime,
    trigger: str = "manual",
) -> tuple[Run, list[TaskInstance]]:
    """A QUEUED run and its WAITING task instances."""
    run = Run(
        id=run_id,
        workflow=spec.name,
        project=spec.project,
        version=version,
        state=RunState.QUEUED,
        params=effective_params(spec, params),
        logical_date=logical_date,
        created_at=now,
        trigger=trigger,
        n_tasks=len(spec.workflow.tasks),
    )
    wf = spec.workflow
    tasks = [
        TaskInstance(run_id, task_id, priority=wf.priority + wf.tasks[task_id].priority)
        for task_id in spec.dag.order
    ]
    return run, tasks


def trigger_differences(
    spec: WorkflowSpec,
    run: Run,
    params: Mapping[str, Any],
    logical_date: datetime | None,
) -> list[str]:
    """What a trigger naming an existing ``run`` (by its idempotency key) asks otherwise than
    the run was made with, sorted: ``params.<name>`` for each param whose value the request
    would give otherwise (its overrides over the defaults of the run's version, ``spec``,
    compared as JSON, so ``1``, ``1.0``, ``true`` and ``"1"`` differ, after text given for a
    typed param is read as the run's was: ``-p n=5`` asks what the run holds as 5), and
    ``logical_date``. A request without a logical date asks for the trigger's time, which a
    run made so has as its ``created_at`` (both are one reading of the clock): it differs
    from a run whose logical date was given."""
    typed, _ = _typed(spec.workflow.params, params)  # (text that does not read: as given)
    asked = {k: _canonical(v) for k, v in {**spec.workflow.params, **typed}.items()}
    had = {k: _canonical(v) for k, v in run.params.items()}
    differ = [f"params.{name}" for name in changed_params(had, asked)]
    if logical_date is None:
        other_date = run.logical_date != run.created_at  # the run's was given
    else:
        other_date = logical_date != run.logical_date
    if other_date:
        differ.append("logical_date")
    return differ


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def may_start(spec: WorkflowSpec, active_runs: int) -> bool:
    """Whether one more run of the workflow may start while ``active_runs`` are active: its
    effective limit (``max_active_runs``, else 16 with ``catchup``) decides."""
    limit = spec.workflow.effective_max_active_runs
    return limit is None or active_runs < limit


def start_run(spec: WorkflowSpec, run: Run, now: datetime) -> tuple[Run, list[str]]:
    """QUEUED -> RUNNING; returns the root tasks that become QUEUED."""
    if run.state is not RunState.QUEUED:
        raise Conflict(f"run {run.id} is {run.state}, not queued")
    return run.with_(state=RunState.RUNNING, started_at=now), list(spec.dag.roots)


def start_plan(spec: WorkflowSpec, run: Run, roots: Iterable[TaskInstance], now: datetime) -> Plan:
    """A run's start as one plan: the run RUNNING and its roots (as read) QUEUED together, so
    that no run is ever RUNNING with nothing queued to move it on."""
    started, _ = start_run(spec, run, now)
    return Plan(started, {t.task_id: t.with_(state=TaskState.QUEUED) for t in roots})


# The ends of a task that are neither success nor a failure of its own: a task stopped
# (the run was stopped, then reopened by a mark or a rerun of other tasks; a sub-workflow's
# child run was stopped) and what could not run because of it. The run's counters do not
# count them, so a run whose tasks all ended, none failed, is read for them once.
SHORT_OF_SUCCESS = frozenset({TaskState.STOPPED, TaskState.UPSTREAM_FAILED})


def run_finished_state(
    spec: WorkflowSpec, run: Run, present: Collection[TaskState] | None = None
) -> RunState | None:
    """The end state once every task is terminal, else None. ``present``: which of
    SHORT_OF_SUCCESS the run's tasks are in; None: not known yet, and the answer SUCCEEDED
    then means "read them, and ask again". A run with a failed task failed; else one with a
    stopped task was stopped (a task upstream_failed with no failed or stopped task above
    it cannot be, but would fail the run); else it succeeded."""
    if run.n_done < run.n_tasks or run.state.terminal:
        return None
    if run.n_failed:
        return RunState.FAILED
    if present and TaskState.STOPPED in present:
        return RunState.STOPPED
    return RunState.FAILED if present else RunState.SUCCEEDED


def states_present(tasks: Iterable[TaskInstance]) -> set[TaskState]:
    """Which of SHORT_OF_SUCCESS ``tasks`` are in (``run_finished_state``'s ``present``)."""
    return {t.state for t in tasks if t.state in SHORT_OF_SUCCESS}


def stops_run_on_failure(spec: WorkflowSpec, state: TaskState) -> bool:
    return state is TaskState.FAILED and spec.workflow.on_failure is OnFailure.STOP


# ---------------------------------------------------------------- operations (O(n), not hot path)
@dataclass
class Plan:
    """Changes an operation makes to a whole run: apply them together."""

    run: Run
    tasks: dict[str, TaskInstance] = field(default_factory=dict)  # task id -> new instance
    kill: list[TaskInstance] = field(default_factory=list)  # running attempts to stop
    # child -> {parent: outcome}: the upstream records of reset tasks, rewritten whole
    edges: dict[str, dict[str, TaskState]] = field(default_factory=dict)
    # running attempts (as read) whose pool slots the plan frees (engine/pools.settle_plan)
    pool_releases: list[TaskInstance] = field(default_factory=list)
    # the pools whose queues the plan takes waiting tasks out of (engine/pools.settle_plan):
    # what waited behind them (a wide task at the head blocks the rest) may start now
    queues_left: frozenset[str] = frozenset()
    # ``run.params`` replace the stored run's, in the plan's run write (``with_params``: a
    # sub-workflow child rerun whole takes its parent task's params as rendered now); else
    # a store leaves the run's params as they are
    new_params: bool = False
    # tasks as read: the plan applies only while each is still in the state, at the
    # attempt, with the end and the upstream counts it was read with (else nothing is
    # written), so that of two callers deciding it from one read (a sub-workflow task taking
    # its child's later end) one applies it, and one decided from an older read never does
    if_unchanged: tuple[TaskInstance, ...] = ()
    # (done, failed, running): the plan changes the run's counters by these deltas, added to
    # them as they are when it is written, instead of setting them whole to ``run``'s. Set
    # (``set_end``) when the run still goes on, so other tasks of it may end while the plan is
    # applied (elsewhere, between its read and its write): their counts stand. Every task the
    # plan writes is then in ``if_unchanged``, so the deltas, taken from those tasks as read,
    # are what the plan changes. None: the counters are set whole (a stop, which rewrites
    # every task not ended; a rerun or a mark of an ended run, whose tasks do not move)
    deltas: tuple[int, int, int] | None = None


def with_params(spec: WorkflowSpec, plan: Plan, overrides: Mapping[str, Any]) -> Plan:
    """``plan`` (a rerun of every task) giving its run new params: ``spec``'s defaults
    overridden by ``overrides``, as a new run's are (an unknown name: InvalidInput). Only
    params that differ are written; the reset tasks render with the new ones."""
    params = effective_params(spec, overrides)
    if params == plan.run.params:
        return plan
    return replace(plan, run=plan.run.with_(params=params), new_params=True)


def changed_params(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The names of the params that ``after`` adds, drops or gives another value."""
    names = before.keys() | after.keys()
    return sorted(k for k in names if k not in before or k not in after or before[k] != after[k])


def _counts(tasks: Iterable[TaskInstance]) -> tuple[int, int, int]:
    """What ``tasks`` add to a run's counters: (done, failed, running)."""
    done = failed = running = 0
    for t in tasks:
        done += t.state.terminal
        failed += t.state is TaskState.FAILED
        running += t.state is TaskState.RUNNING
    return done, failed, running


def _recount(run: Run, states: Mapping[str, TaskInstance]) -> Run:
    done, failed, running = _counts(states.values())
    return run.with_(n_done=done, n_failed=failed, n_running=running)


def pause(run: Run, *, by_parent: bool = False) -> Run:
    """``by_parent``: the pause cascades from the parent run of a sub-workflow's child (the
    parent's resume undoes it; an operator's own pause of the child it leaves alone)."""
    if run.state is not RunState.RUNNING:
        raise Conflict(f"run {run.id} is {run.state}; only a running run can be paused")
    return run.with_(state=RunState.PAUSED, paused_by_parent=by_parent)


def resume(run: Run) -> Run:
    if run.state is not RunState.PAUSED:
        raise Conflict(f"run {run.id} is {run.state}; only a paused run can be resumed")
    return run.with_(state=RunState.RUNNING, paused_by_parent=False)


def stopped(ti: TaskInstance, now: datetime, reason: str | None) -> TaskInstance:
    """``ti`` (not ended) as a stop leaves it: STOPPED at ``now``, keeping its own error if
    it has one. Also what a store that writes a large stop in parts applies to a task that
    moved to another unended state (a new attempt) before its part was written."""
    return ti.with_(
        state=TaskState.STOPPED,
        ended_at=now,
        deadline=None,
        ready_at=None,
        error=ti.error or reason,
    )


def stop(
    run: Run,
    tasks: Iterable[TaskInstance],
    now: datetime,
    *,
    end_state: RunState = RunState.STOPPED,
    reason: str = "stopped by request",
) -> Plan:
    """End a run: kill what runs, and every task not yet ended becomes STOPPED."""
    if run.state.terminal:
        raise Conflict(f"run {run.id} is already {run.state}")
    plan = Plan(run)
    current = {t.task_id: t for t in tasks}
    for ti in current.values():
        if ti.state.terminal:
            continue
        if ti.state is TaskState.RUNNING:
            plan.kill.append(ti)
        plan.tasks[ti.task_id] = stopped(ti, now, reason)
    current.update(plan.tasks)
    plan.run = _recount(run, current).with_(
        state=end_state,
        ended_at=now,
        n_running=0,
        error=reason if end_state is RunState.FAILED else run.error,
    )
    return plan


_RERUNNABLE = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.STOPPED})


def _rerun_child(spec: WorkflowSpec, old: TaskInstance, *, whole: bool) -> bool:
    """Whether a reset sub-workflow task's next attempt runs its child run again whole:
    ``whole`` (the rerun asked to run it again: from it or a task upstream of it, or all of
    the run), or an earlier such rerun whose attempt it has not made yet (it failed upstream
    meanwhile); never for another type of task."""
    if not isinstance(spec.workflow.tasks.get(old.task_id), WorkflowTask):
        return False
    return whole or (old.rerun_child and old.try_number == 0)


def _reset(
    spec: WorkflowSpec,
    run: Run,
    current: dict[str, TaskInstance],
    reset: set[str],
    now: datetime,
    *,
    whole: Set[str] = frozenset(),
) -> Plan:
    """Reset ``reset`` to WAITING, recount their upstream from the tasks kept, and decide
    (in topological order) which of them are ready, skipped or upstream_failed now.
    ``whole``: those of them the rerun asked to run again whole, so that a sub-workflow task
    among them runs its child again (``TaskInstance.rerun_child``); for the others, a child
    that had succeeded is kept."""
    states = dict(current)
    edges: dict[str, dict[str, TaskState]] = {}
    for task_id in spec.dag.order:
        if task_id not in reset:
            continue
        old = states[task_id]
        up = Upstream()
        seen: dict[str, TaskState] = {}
        unchosen = False
        for parent in spec.dag.parents[task_id]:
            p = states[parent]
            if p.state.terminal:
                seen[parent] = edge_outcome(spec, parent, p.state, p.outputs, task_id)
                up = up.plus(seen[parent])
                unchosen = unchosen or skipped_by_switch(spec, parent, p.state, p.outputs, task_id)
        edges[task_id] = seen
        fresh = TaskInstance(
            run.id,
            task_id,
            TaskState.WAITING,
            attempt=old.attempt,
            attempt_base=old.attempt,
            upstream=up,
            priority=old.priority,
            rerun_child=_rerun_child(spec, old, whole=task_id in whole),
        )
        nxt = child_state(spec, fresh, unchosen=unchosen)
        if nxt is not None:
            fresh = fresh.with_(state=nxt, ended_at=now if nxt.terminal else None)
        states[task_id] = fresh
    plan = Plan(run, edges=edges)
    plan.tasks = {t: states[t] for t in reset}
    new_run = _recount(run, states).with_(ended_at=None, error=None)
    finished = new_run.with_(state=RunState.RUNNING)
    end = run_finished_state(spec, finished, states_present(states.values()))
    plan.run = finished if end is None else finished.with_(state=end, ended_at=now)
    return plan


def _require_finished(run: Run, what: str) -> None:
    if not run.state.terminal:
        raise Conflict(f"run {run.id} is {run.state}; {what} needs a finished run (stop it first)")


def _require_running_or_finished(run: Run, what: str) -> None:
    if not run.state.terminal and run.state is not RunState.RUNNING:
        raise Conflict(
            f"run {run.id} is {run.state}; {what} needs a running or finished run"
            + (" (resume it first)" if run.state is RunState.PAUSED else "")
        )


def _on_a_live_run(
    spec: WorkflowSpec,
    run: Run,
    read: Mapping[str, TaskInstance],
    states: Mapping[str, TaskInstance],
    plan: Plan,
    now: datetime,
) -> Plan:
    """``plan`` (tasks given new states from outside their attempts: a mark, a rerun of some
    tasks) made for ``run`` while it goes on. What it resets that runs is killed; the run
    keeps its state unless every task has now ended (``states``: the tasks as the plan
    leaves them, but for its own). Its other tasks may end while the plan is applied, so the
    plan changes the counters by what its own tasks change, each as read (``Plan.deltas``),
    and applies only if each of them is still as read (``Plan.if_unchanged``)."""
    plan.kill = [read[t] for t in plan.tasks if read[t].state is TaskState.RUNNING]
    plan.run = plan.run.with_(state=run.state, ended_at=None)
    if (
        run.state is RunState.RUNNING
        and (
            end := run_finished_state(
                spec, plan.run, states_present({**states, **plan.tasks}.values())
            )
        )
        is not None
    ):
        plan.run = plan.run.with_(state=end, ended_at=now)
    was = [read[t] for t in plan.tasks]
    plan.if_unchanged = tuple(was)
    after, before = _counts(plan.tasks.values()), _counts(was)
    plan.deltas = (after[0] - before[0], after[1] - before[1], after[2] - before[2])
    return plan


def _downstream_of(spec: WorkflowSpec, tasks: Set[str]) -> set[str]:
    """Every task reachable from one of ``tasks`` (one of ``tasks`` only if it is reachable
    from another): one pass in topological order, O(tasks + edges) however many start."""
    reached: set[str] = set()
    for task_id in spec.dag.order:
        if any(p in tasks or p in reached for p in spec.dag.parents[task_id]):
            reached.add(task_id)
    return reached


def rerun_failed(
    spec: WorkflowSpec, run: Run, tasks: Iterable[TaskInstance], now: datetime
) -> Plan:
    """Run again every task that failed, was stopped or never ran (upstream_failed, or left
    waiting), and every task downstream of one of them, whatever its state: what ran or was
    skipped after a failure (an ``all_done`` cleanup, a ``one_failed`` alert, a branch
    skipped for it) took its outcome from that failure, so it is decided again by its
    trigger rule once the tasks upstream of it end anew, as clearing a failed Airflow task
    with its downstream does. What succeeded with no such task upstream of it is kept.

    A sub-workflow task reset because it failed, was stopped or never ran reruns its child
    run from the child's failed tasks (its params kept; a child that had succeeded stands),
    unless an earlier rerun still owes it a whole pass (``_rerun_child``). One reset only
    because it is downstream (it had succeeded or been skipped) runs its child again whole,
    with its params rendered anew, as ``rerun_from`` runs what is downstream of its start:
    its child ran on what the failure left upstream, and a child kept would hand back that
    old outcome at once, without running after the tasks rerun upstream of it.

    On a run that goes on (Airflow's *Clear* of the failed tasks of a running DAG run), only
    what failed, was stopped or is upstream_failed is rerun, with what is downstream of it
    (what of that runs is killed); the tasks still running or waiting elsewhere go on
    (``_on_a_live_run``)."""
    _require_running_or_finished(run, "rerun")
    current = {t.task_id: t for t in tasks}
    live = not run.state.terminal
    failed = {
        t
        for t, ti in current.items()
        if ti.state in _RERUNNABLE or (not live and not ti.state.terminal)
    }
    if not failed:
        raise Conflict(f"run {run.id} has no failed or stopped task to rerun")
    after = _downstream_of(spec, failed) - failed
    plan = _reset(spec, run, current, failed | after, now, whole=after)
    return _on_a_live_run(spec, run, current, current, plan, now) if live else plan


def rerun_from(
    spec: WorkflowSpec, run: Run, tasks: Iterable[TaskInstance], task_id: str, now: datetime
) -> Plan:
    """Run ``task_id`` and everything downstream of it again: a sub-workflow task among
    them runs its child run again whole, even one that had succeeded. On a run that goes on
    (Airflow's *Clear* of a task of a running DAG run, with its downstream), ``task_id``
    must have ended, run, or wait for a retry; what of them runs is killed, and the run's
    other tasks go on (``_on_a_live_run``)."""
    _require_running_or_finished(run, "rerun")
    if task_id not in spec.workflow.tasks:
        raise InvalidInput([Problem("from", f"unknown task {task_id!r} in workflow {spec.name}")])
    current = {t.task_id: t for t in tasks}
    read = dict(current)
    # the start task is queued even if its own parents failed: that is what "from here" means
    old = current[task_id]
    live = not run.state.terminal
    if live and old.state in (TaskState.WAITING, TaskState.QUEUED):
        raise Conflict(
            f"task {task_id} of run {run.id} is {old.state}: it has not run yet, so there is "
            "nothing to rerun"
        )
    current[task_id] = TaskInstance(
        run.id,
        task_id,
        TaskState.QUEUED,
        attempt=old.attempt,
        attempt_base=old.attempt,
        priority=old.priority,
        rerun_child=_rerun_child(spec, old, whole=True),
    )
    downstream = set(spec.dag.downstream(task_id)) - {task_id}
    plan = _reset(spec, run, current, downstream, now, whole=downstream)
    plan.tasks[task_id] = current[task_id]
    plan.edges[task_id] = {}
    return _on_a_live_run(spec, run, read, current, plan, now) if live else plan


# The states an operator may mark a task with (``mark``), and the error a task marked failed
# carries (it shows why the task failed where its attempt's error would).
MARKABLE = (TaskState.SUCCEEDED, TaskState.SKIPPED, TaskState.FAILED)
MARKED_FAILED = "marked failed"


def mark(
    spec: WorkflowSpec,
    run: Run,
    tasks: Iterable[TaskInstance],
    task_id: str,
    state: TaskState,
    now: datetime,
) -> Plan:
    """Mark a task succeeded, skipped or failed; what waited on it is decided again. A
    sub-workflow task marked no longer follows its child run (``TaskInstance.child_end``): a
    later end of the child does not undo the mark. A task marked failed is not retried (the
    mark is its outcome, as Airflow's *Mark Failed*); the tasks downstream follow their
    trigger rules, and the caller applies the workflow's ``on_failure`` as to any failure."""
    if state not in MARKABLE:
        raise InvalidInput(
            [Problem("state", f"can mark a task succeeded, skipped or failed, not {state}")]
        )
    if run.state is RunState.QUEUED:
        # its start sets every root task QUEUED as it reads it: a mark would not hold (the
        # marked root ran anyway, its children with it)
        raise Conflict(
            f"run {run.id} is queued (it has not started); mark its tasks once it runs, or stop it"
        )
    current = {t.task_id: t for t in tasks}
    if task_id not in current:
        raise InvalidInput([Problem("task", f"unknown task {task_id!r} in run {run.id}")])
    old = current[task_id]
    if old.state is state:
        raise Conflict(f"task {task_id} is already {state}")
    # a sub-workflow task marked no longer follows its child: the mark is its outcome
    marked = old.with_(
        state=state, ended_at=now, deadline=None, ready_at=None, child_end=None,
        error=MARKED_FAILED if state is TaskState.FAILED else None,
    )  # fmt: skip
    return set_end(spec, run, current.values(), marked, now)


def _skipped_on_its_own(
    spec: WorkflowSpec, tasks: Mapping[str, TaskInstance], task_id: str
) -> bool:
    """Whether ``task_id`` is SKIPPED though its parents' states would not skip it: a mark
    (or its own end) skipped it, not its upstream, so a new end upstream leaves it be."""
    task = tasks[task_id]
    if task.state is not TaskState.SKIPPED:
        return False
    up, unchosen = Upstream(), False
    for parent in spec.dag.parents[task_id]:
        p = tasks[parent]
        if p.state.terminal:
            up = up.plus(edge_outcome(spec, parent, p.state, p.outputs, task_id))
            unchosen = unchosen or skipped_by_switch(spec, parent, p.state, p.outputs, task_id)
    probe = TaskInstance(task.run_id, task_id, upstream=up)
    return child_state(spec, probe, unchosen=unchosen) is not TaskState.SKIPPED


def set_end(
    spec: WorkflowSpec,
    run: Run,
    tasks: Iterable[TaskInstance],
    new: TaskInstance,
    now: datetime,
) -> Plan:
    """A task given the end ``new`` from outside its attempts: a mark, or a sub-workflow
    task that takes a later end of its child run (``engine.subworkflow.take_end``). A
    running attempt of it is killed; the tasks downstream of it that ended, or wait,
    because of its old state are decided again; an ended run runs again (or ends at once,
    with its new end), a run still going keeps its state unless every task has now ended."""
    current = {t.task_id: t for t in tasks}
    read = dict(current)
    task_id = new.task_id
    old = current[task_id]
    plan_kill = [old] if old.state is TaskState.RUNNING else []
    current[task_id] = new
    # downstream tasks that ended because of the old state are decided again; a skip its
    # parents did not make (a mark's) stands, as a task marked succeeded does
    reset = {
        t for t in spec.dag.downstream(task_id)
        if t != task_id and current[t].state in (TaskState.WAITING, TaskState.UPSTREAM_FAILED, TaskState.SKIPPED, TaskState.STOPPED)
        and not _skipped_on_its_own(spec, read, t)
    }  # fmt: skip
    plan = _reset(
        spec, run.with_(state=RunState.RUNNING) if run.state.terminal else run, current, reset, now
    )
    plan.tasks[task_id] = current[task_id]
    if not run.state.terminal:
        return _on_a_live_run(spec, run, read, current, plan, now)
    plan.kill = plan_kill
    return plan
