"""Workflow format v1: what loads, what is refused, and how a refusal reads (DESIGN.md,
invariant 6: the field and the reason; a cycle names its tasks; lines point at the mistake)."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta

import pytest

from stratoflow.errors import InvalidInput, Problem
from stratoflow.model import (
    OnFailure,
    PythonTask,
    ShellTask,
    SwitchTask,
    TriggerRule,
    WorkflowSpec,
    format_duration,
    load_workflow,
    parse_duration,
    parse_workflow,
    spec_from_document,
)

# The example from DESIGN.md, verbatim.
DESIGN_EXAMPLE = """\
name: sales_daily                  # [a-z0-9_-]+, unique within its project
project: analytics                 # optional, default "default"
description: Daily sales ETL
schedule:                          # optional
  cron: "0 2 * * *"                # 5-field cron, or EventBridge "cron(0 2 * * ? *)" / "rate(1 hour)"
  timezone: Asia/Shanghai          # IANA name, default UTC; DST handled as EventBridge does
  start: 2026-01-01T00:00:00       # optional window
  catchup: false                   # when true, missed intervals since start run (oldest first)
params:                            # defaults; a run may override any of them
  region: eu
max_active_runs: 1                 # optional
concurrency: 16                    # optional: max tasks running at once in one run
on_failure: continue               # continue (independent branches go on) | stop (stop the run)
defaults:                          # applied to every task unless the task says otherwise
  retries: 2
  retry_delay: 30s                 # durations: 30s, 5m, 1h or integer seconds
  retry_backoff: 2.0               # multiplier per attempt; 1.0 = fixed delay
  timeout: 10m
tasks:
  extract:                         # task id = key, [A-Za-z0-9_-]+
    type: shell
    command: |
      echo "rows=42" >> "$STRATOFLOW_OUTPUT"
  transform:
    type: python
    depends_on: [extract]
    code: |
      rows = int(params["rows"])   # or `callable: package.module:function`
      outputs["doubled"] = rows * 2
    params: {rows: "{{ tasks.extract.outputs.rows }}"}
  route:
    type: switch
    depends_on: [transform]
    cases:
      - when: "{{ tasks.transform.outputs.doubled | int > 50 }}"
        next: [big_load]
    default: [small_load]
  big_load:   {type: shell, depends_on: [route], command: "echo big {{ params.region }}"}
  small_load: {type: shell, depends_on: [route], command: "echo small"}
  cleanup:
    type: shell
    depends_on: [big_load, small_load]
    trigger_rule: none_failed      # all_success (default) | all_done | all_failed |
                                   # one_success | one_failed | none_failed
    command: echo done
"""


def load(text: str) -> WorkflowSpec:
    return load_workflow(textwrap.dedent(text))


def refusal(text: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as exc:
        load(text)
    return exc.value


# ------------------------------------------------------------------------------------------
# What loads
# ------------------------------------------------------------------------------------------


def test_the_design_example_loads() -> None:
    spec = load_workflow(DESIGN_EXAMPLE)
    wf = spec.workflow
    assert (spec.name, spec.project, wf.description) == (
        "sales_daily",
        "analytics",
        "Daily sales ETL",
    )
    assert wf.schedule is not None
    assert (wf.schedule.cron, wf.schedule.timezone, wf.schedule.catchup) == (
        "0 2 * * *",
        "Asia/Shanghai",
        False,
    )
    assert wf.schedule.start == datetime(2026, 1, 1)
    assert (wf.params, wf.max_active_runs, wf.concurrency, wf.on_failure) == (
        {"region": "eu"},
        1,
        16,
        OnFailure.CONTINUE,
    )
    assert isinstance(wf.tasks["extract"], ShellTask)
    assert isinstance(wf.tasks["transform"], PythonTask)
    route = wf.tasks["route"]
    assert isinstance(route, SwitchTask)
    assert route.branches() == {"big_load", "small_load"}
    assert wf.tasks["cleanup"].trigger_rule is TriggerRule.NONE_FAILED
    assert wf.tasks["big_load"].trigger_rule is TriggerRule.ALL_SUCCESS

    dag = spec.dag
    assert dag.order == ("extract", "transform", "route", "big_load", "small_load", "cleanup")
    assert dag.roots == ("extract",)
    assert dag.parents["cleanup"] == ("big_load", "small_load")
    assert dag.children["route"] == ("big_load", "small_load")
    assert dag.downstream("route") == ["route", "big_load", "small_load", "cleanup"]
    assert dag.ancestors("cleanup") == {"extract", "transform", "route", "big_load", "small_load"}
    # templates read outputs only of the tasks they name
    assert dag.reads["transform"] == {"extract"}
    assert dag.reads["route"] == {"transform"}
    assert dag.reads["big_load"] == frozenset()


def test_the_design_example_is_deterministic_and_round_trips() -> None:
    first, second = load_workflow(DESIGN_EXAMPLE), load_workflow(DESIGN_EXAMPLE)
    assert first.digest == second.digest
    assert first.document["defaults"]["retry_delay"] == "30s"
    assert first.document["defaults"]["timeout"] == "10m"


def test_json_is_accepted_too() -> None:
    spec = load_workflow('{"name": "j", "tasks": {"a": {"type": "shell", "command": "true"}}}')
    assert spec.dag.order == ("a",)


# ------------------------------------------------------------------------------------------
# Per-task settings fall back to `defaults`
# ------------------------------------------------------------------------------------------


def test_per_task_settings_fall_back_to_defaults() -> None:
    wf = load(
        """
        name: w
        defaults:
          retries: 3
          retry_delay: 1m
          retry_backoff: 1.5
          max_retry_delay: 10m
          timeout: 1h
        tasks:
          own:
            type: shell
            command: x
            retries: 0
            retry_delay: 5s
            retry_backoff: 3
            max_retry_delay: 20s
            timeout: 45
          inherits: {type: shell, command: x}
        """
    ).workflow
    assert (
        wf.retries("own"),
        wf.retry_delay("own"),
        wf.retry_backoff("own"),
        wf.max_retry_delay("own"),
        wf.timeout("own"),
    ) == (0, timedelta(seconds=5), 3.0, timedelta(seconds=20), timedelta(seconds=45))
    assert (
        wf.retries("inherits"),
        wf.retry_delay("inherits"),
        wf.retry_backoff("inherits"),
        wf.max_retry_delay("inherits"),
        wf.timeout("inherits"),
    ) == (3, timedelta(minutes=1), 1.5, timedelta(minutes=10), timedelta(hours=1))


def test_without_defaults_a_task_gets_the_documented_ones() -> None:
    wf = load("name: w\ntasks: {a: {type: shell, command: x}}").workflow
    assert (
        wf.retries("a"),
        wf.retry_delay("a"),
        wf.retry_backoff("a"),
        wf.max_retry_delay("a"),
        wf.timeout("a"),
        wf.project,
        wf.on_failure,
    ) == (0, timedelta(seconds=30), 1.0, timedelta(hours=1), None, "default", OnFailure.CONTINUE)


# ------------------------------------------------------------------------------------------
# Durations
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("2d", 172800),
        ("1.5m", 90),
        (" 10s ", 10),
        (45, 45),
        ("45", 45),
        (0, 0),
        (timedelta(minutes=2), 120),
    ],
)
def test_durations(value: object, seconds: int) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "value", ["5x", "ten minutes", "1 hour", "", "-5s", -1, True, None, "1h30m"]
)
def test_bad_durations_name_the_value(value: object) -> None:
    with pytest.raises(ValueError, match="invalid duration") as exc:
        parse_duration(value)
    assert repr(value) in str(exc.value)


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "30s"), (90, "90s"), (300, "5m"), (3600, "1h"), (86400, "1d")]
)
def test_durations_format_back_to_the_shortest_exact_spelling(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
    assert parse_duration(text) == timedelta(seconds=seconds)


# ------------------------------------------------------------------------------------------
# What is refused, and what the refusal says
# ------------------------------------------------------------------------------------------

# (id, yaml, problem path, words the message must contain)
REFUSALS = [
    (
        "cycle",
        """
        name: w
        tasks:
          a: {type: shell, command: x, depends_on: [c]}
          b: {type: shell, command: x, depends_on: [a]}
          c: {type: shell, command: x, depends_on: [b]}
        """,
        "tasks.a.depends_on",
        "cycle: a -> b -> c -> a",
    ),
    (
        "cycle between tasks that run and tasks below it",
        """
        name: w
        tasks:
          a: {type: shell, command: x}
          b: {type: shell, command: x, depends_on: [a]}
          c: {type: shell, command: x, depends_on: [b, d]}
          d: {type: shell, command: x, depends_on: [c]}
          e: {type: shell, command: x, depends_on: [d]}
        """,
        "tasks.c.depends_on",
        "cycle: c -> d -> c",
    ),
    (
        "self-dependency",
        """
        name: w
        tasks:
          a: {type: shell, command: x, depends_on: [a]}
        """,
        "tasks.a.depends_on.0",
        "a task cannot depend on itself",
    ),
    (
        "unknown dependency",
        """
        name: w
        tasks:
          a: {type: shell, command: x}
          b: {type: shell, command: x, depends_on: [a, nope]}
        """,
        "tasks.b.depends_on.1",
        "unknown task 'nope'",
    ),
    (
        "dependency listed twice",
        """
        name: w
        tasks:
          a: {type: shell, command: x}
          b: {type: shell, command: x, depends_on: [a, a]}
        """,
        "tasks.b.depends_on",
        "'a' is listed twice",
    ),
    (
        "unknown task type",
        """
        name: w
        tasks:
          a: {type: bash, command: x}
        """,
        "tasks.a",
        "unknown task type 'bash' (expected one of: shell, python, http, switch",
    ),
    (
        "missing task type",
        """
        name: w
        tasks:
          a: {command: x}
        """,
        "tasks.a",
        "missing 'type'",
    ),
    (
        "missing required field",
        """
        name: w
        tasks:
          a: {type: shell}
        """,
        "tasks.a.command",
        "required field 'command' is missing",
    ),
    (
        "unknown field",
        """
        name: w
        tasks:
          a: {type: shell, command: x, comand: y}
        """,
        "tasks.a.comand",
        "unknown field 'comand'",
    ),
    (
        "schedule written as its cron text",
        """
        name: w
        schedule: "0 2 * * *"
        tasks:
          a: {type: shell, command: x}
        """,
        "schedule",
        "a mapping with 'cron', not a text: write schedule: {cron: '0 2 * * *'}",
    ),
    (
        "Airflow's schedule_interval",
        """
        name: w
        schedule_interval: "@daily"
        tasks:
          a: {type: shell, command: x}
        """,
        "schedule_interval",
        "unknown field 'schedule_interval': Airflow's; write schedule: {cron: ...}",
    ),
    (
        "Airflow's start_date in the schedule",
        """
        name: w
        schedule: {cron: "0 2 * * *", start_date: 2026-01-01}
        tasks:
          a: {type: shell, command: x}
        """,
        "schedule.start_date",
        "unknown field 'start_date': write start",
    ),
    (
        "Airflow's catchup beside the schedule",
        """
        name: w
        schedule: {cron: "0 2 * * *"}
        catchup: true
        tasks:
          a: {type: shell, command: x}
        """,
        "catchup",
        "unknown field 'catchup': write it in the schedule: schedule: {cron: ..., catchup: ...}",
    ),
    (
        "DolphinScheduler's crontab and timezoneId",
        """
        name: w
        schedule: {cron: "0 2 * * *", crontab: "0 0 2 * * ? *", timezoneId: Asia/Shanghai}
        tasks:
          a: {type: shell, command: x}
        """,
        "schedule.crontab",
        "unknown field 'crontab': write cron",
    ),
    (
        "bad duration",
        """
        name: w
        defaults: {retry_delay: 5x}
        tasks:
          a: {type: shell, command: x}
        """,
        "defaults.retry_delay",
        "invalid duration '5x'",
    ),
    (
        "bad task timeout",
        """
        name: w
        tasks:
          a: {type: shell, command: x, timeout: ten minutes}
        """,
        "tasks.a.timeout",
        "invalid duration 'ten minutes'",
    ),
    (
        "bad cron",
        """
        name: w
        schedule: {cron: "61 * * * *"}
        tasks:
          a: {type: shell, command: x}
        """,
        "schedule.cron",
        "'61 * * * *'",
    ),
    (
        "bad time zone",
        """
        name: w
        schedule: {cron: "0 2 * * *", timezone: Mars/Olympus_Mons}
        tasks:
          a: {type: shell, command: x}
        """,
        "schedule.timezone",
        "unknown time zone 'Mars/Olympus_Mons'",
    ),
    (
        "schedule window backwards",
        """
        name: w
        schedule: {cron: "0 2 * * *", start: 2026-02-01T00:00:00, end: 2026-01-01T00:00:00}
        tasks:
          a: {type: shell, command: x}
        """,
        "schedule",
        "end must be after start",
    ),
    (
        "invalid workflow name",
        """
        name: Sales Daily
        tasks:
          a: {type: shell, command: x}
        """,
        "name",
        "^[a-z0-9_-]+$",
    ),
    (
        "invalid task id",
        """
        name: w
        tasks:
          "load data": {type: shell, command: x}
        """,
        "tasks",
        "invalid task id 'load data'",
    ),
    (
        "switch branch that does not depend on the switch",
        """
        name: w
        tasks:
          route: {type: switch, cases: [{when: "true", next: [a]}]}
          a: {type: shell, command: x}
        """,
        "tasks.route.cases.0.next.0",
        "switch branch 'a' must depend on 'route'",
    ),
    (
        "switch default that does not depend on the switch",
        """
        name: w
        tasks:
          route: {type: switch, cases: [{when: "true", next: [a]}], default: [b]}
          a: {type: shell, command: x, depends_on: [route]}
          b: {type: shell, command: x}
        """,
        "tasks.route.default.0",
        "switch branch 'b' must depend on 'route'",
    ),
    (
        "switch child in none of its cases nor its default",
        """
        name: w
        tasks:
          route: {type: switch, cases: [{when: "true", next: [a]}], default: [b]}
          a: {type: shell, command: x, depends_on: [route]}
          b: {type: shell, command: x, depends_on: [route]}
          audit: {type: shell, command: x, depends_on: [a, route]}
        """,
        "tasks.audit.depends_on.1",
        "depends on switch 'route' but is in none of its cases or its default: a switch runs "
        "only the branches it chooses; list 'audit' in a case's next or in default, or make it "
        "depend on the branches (trigger_rule: none_failed runs it after whichever ran)",
    ),
    (
        "switch branch that does not exist",
        """
        name: w
        tasks:
          route: {type: switch, cases: [{when: "true", next: [ghost]}]}
        """,
        "tasks.route.cases.0.next.0",
        "unknown task 'ghost'",
    ),
    (
        "template referencing an unknown task",
        """
        name: w
        tasks:
          a: {type: shell, command: "echo {{ tasks.ghost.outputs.x }}"}
        """,
        "tasks.a.command",
        "template references unknown task 'ghost'",
    ),
    (
        "template reading a task that is not upstream",
        """
        name: w
        tasks:
          a: {type: shell, command: x}
          b: {type: shell, command: x}
          c: {type: shell, command: x, depends_on: [b], params: {v: "{{ tasks.a.outputs.v }}"}}
        """,
        "tasks.c.params.v",
        "template reads task 'a', which is not upstream of 'c' (add it to depends_on)",
    ),
    (
        "template syntax error",
        """
        name: w
        tasks:
          a: {type: shell, command: "echo {{ params.x"}
        """,
        "tasks.a.command",
        "template syntax error",
    ),
    (
        "duplicate task id",
        """
        name: w
        tasks:
          a: {type: shell, command: x}
          a: {type: shell, command: y}
        """,
        "tasks.a",
        "duplicate key 'a' (first at line 4)",
    ),
    (
        "duplicate field",
        """
        name: w
        name: v
        tasks:
          a: {type: shell, command: x}
        """,
        "name",
        "duplicate key 'name' (first at line 2)",
    ),
    (
        "python task with both code and callable",
        """
        name: w
        tasks:
          a: {type: python, code: "x = 1", callable: "pkg.mod:fn"}
        """,
        "tasks.a",
        "a python task needs exactly one of 'code' or 'callable'",
    ),
    (
        "python task with neither code nor callable",
        """
        name: w
        tasks:
          a: {type: python}
        """,
        "tasks.a",
        "a python task needs exactly one of 'code' or 'callable'",
    ),
    (
        "python task with a malformed callable",
        """
        name: w
        tasks:
          a: {type: python, callable: "pkg.mod.fn"}
        """,
        "tasks.a",
        "callable 'pkg.mod.fn' must look like 'package.module:function'",
    ),
    (
        "unknown runner",
        """
        name: w
        tasks:
          a: {type: shell, command: x, runner: fargate}
        """,
        "tasks.a.runner",
        "Input should be 'lambda' or 'batch'",
    ),
    (
        "python code that does not compile",
        """
        name: w
        tasks:
          a: {type: python, code: "def f(:"}
        """,
        "tasks.a",
        "code line 1",
    ),
    (
        "no tasks",
        """
        name: w
        tasks: {}
        """,
        "tasks",
        "at least 1 item",
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [pytest.param(text, path, words, id=case) for case, text, path, words in REFUSALS],
)
def test_a_refusal_names_the_field_and_the_reason(text: str, path: str, words: str) -> None:
    exc = refusal(text)
    assert any(p.path == path and words in p.message for p in exc.problems), exc.problems
    # the exception's text (what the CLI prints, exit code 2) says the same
    assert path in str(exc)
    assert words in str(exc)


def test_every_problem_is_reported_at_once() -> None:
    exc = refusal(
        """
        name: W
        schedule: {cron: "0 2 * * *", timezone: Nowhere/City}
        tasks:
          a: {type: python}
          b: {type: shell, command: x, retries: -1}
        """
    )
    assert sorted(p.path for p in exc.problems) == [
        "name",
        "schedule.timezone",
        "tasks.a",
        "tasks.b.retries",
    ]
    assert str(exc).startswith("4 problems:")


def test_every_switch_child_in_no_branch_is_reported_at_once() -> None:
    """A task after a switch that is none of its branches would run whatever the switch
    chose, where Airflow's branch operators and DolphinScheduler's switch skip it unless
    chosen: each such task is refused, with the other problems of the file."""
    exc = refusal(
        """
        name: w
        tasks:
          route: {type: switch, cases: [{when: "true", next: [a]}]}
          other: {type: switch, cases: [{when: "true", next: [c]}], default: [d]}
          a: {type: shell, command: x, depends_on: [route]}
          b: {type: shell, command: x, depends_on: [route]}
          c: {type: shell, command: x, depends_on: [other]}
          d: {type: shell, command: x, depends_on: [other]}
          e: {type: shell, command: x, depends_on: [route, other]}
          f: {type: shell, command: "echo {{ tasks.ghost.outputs.x }}"}
        """
    )
    assert sorted(p.path for p in exc.problems) == [
        "tasks.b.depends_on.0",
        "tasks.e.depends_on.0",
        "tasks.e.depends_on.1",
        "tasks.f.command",
    ]
    assert "depends on switch 'other' but is in none of its cases" in str(exc)


def test_switch_children_that_are_all_branches_or_follow_them_load() -> None:
    """The ways to say what was meant: the task a branch (in a case or the default), or
    after the branches (none_failed: after whichever ran)."""
    spec = load(
        """
        name: w
        tasks:
          route:
            type: switch
            cases: [{when: "true", next: [a, audit]}]
            default: [b, audit]
          a: {type: shell, command: x, depends_on: [route]}
          b: {type: shell, command: x, depends_on: [route]}
          audit: {type: shell, command: x, depends_on: [route]}
          join: {type: shell, command: x, depends_on: [a, b], trigger_rule: none_failed}
        """
    )
    assert spec.dag.children["route"] == ("a", "b", "audit")


def test_a_stored_version_with_a_switch_child_in_no_branch_still_loads() -> None:
    """A version applied before the check loads as it was applied (its runs go on, and it
    runs as it did: the child after whatever the switch chose); a new one is refused."""
    doc = {
        "name": "old",
        "tasks": {
            "route": {"type": "switch", "cases": [{"when": "true", "next": ["a"]}]},
            "a": {"type": "shell", "command": "x", "depends_on": ["route"]},
            "audit": {"type": "shell", "command": "x", "depends_on": ["route"]},
        },
    }
    assert spec_from_document(doc).dag.children["route"] == ("a", "audit")
    with pytest.raises(InvalidInput, match="depends on switch 'route' but is in none"):
        parse_workflow(doc)


def test_the_source_prefixes_the_message() -> None:
    with pytest.raises(InvalidInput) as exc:
        load_workflow("name: w\ntasks: {a: {type: nope}}", source="flows/w.yaml")
    assert str(exc.value).startswith("flows/w.yaml: tasks.a (line 2): unknown task type 'nope'")


@pytest.mark.parametrize(
    "text",
    [
        "name: w\ntasks: [a, b]\n",
        "- just\n- a list\n",
        "name: w\ntasks:\n  a: {type: shell, command: x\n",  # unclosed flow mapping
        "name: w\n\ttasks: {}\n",  # a tab
    ],
)
def test_malformed_documents_are_refused_with_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        load_workflow(text)


def test_invalid_yaml_names_its_line() -> None:
    with pytest.raises(InvalidInput) as exc:
        load_workflow("name: w\ntasks:\n  a: {type: shell, command: x\n  b: 1\n")
    (problem,) = exc.value.problems
    assert problem.message.startswith("invalid YAML")
    assert problem.line is not None


# ------------------------------------------------------------------------------------------
# Line numbers point at the line to fix
# ------------------------------------------------------------------------------------------

# Each document marks the line a person has to fix with `# <-`.
LINES = [
    (
        "unknown dependency (flow list)",
        """
        name: w
        tasks:
          a: {type: shell, command: x}
          b: {type: shell, command: x, depends_on: [a, nope]}  # <-
        """,
    ),
    (
        "unknown dependency (block list)",
        """
        name: w
        tasks:
          a: {type: shell, command: x}
          b:
            type: shell
            command: x
            depends_on:
              - a
              - nope  # <-
        """,
    ),
    (
        "switch branch that does not depend on the switch",
        """
        name: w
        tasks:
          route:
            type: switch
            cases:
              - when: "true"
                next: [a]
              - when: "false"
                next:
                  - b  # <-
          a: {type: shell, command: x, depends_on: [route]}
          b: {type: shell, command: x}
        """,
    ),
    (
        "cycle",
        """
        name: w
        tasks:
          a:
            type: shell
            command: x
            depends_on: [b]  # <-
          b:
            type: shell
            command: x
            depends_on: [a]
        """,
    ),
    (
        "duplicate task id",
        """
        name: w
        tasks:
          a: {type: shell, command: x}
          b: {type: shell, command: x}
          a: {type: shell, command: y}  # <-
        """,
    ),
    (
        "bad duration in a task",
        """
        name: w
        tasks:
          a:
            type: shell
            command: x
            retry_delay: soon  # <-
        """,
    ),
    (
        "template error",
        """
        name: w
        params: {x: 1}
        tasks:
          a: {type: shell, command: x}
          b:
            type: shell
            params:
              one: "{{ params.x }}"
              two: "{{ tasks.ghost.outputs.y }}"  # <-
            command: x
        """,
    ),
    (
        "unknown task type",
        """
        name: w
        tasks:
          a: {type: shell, command: x}
          b: {type: sh, command: x}  # <-
        """,
    ),
    (
        "bad time zone",
        """
        name: w
        schedule:
          cron: "0 2 * * *"
          timezone: Mars/Base  # <-
        tasks:
          a: {type: shell, command: x}
        """,
    ),
]


@pytest.mark.parametrize(
    "text", [pytest.param(textwrap.dedent(text), id=case) for case, text in LINES]
)
def test_line_numbers_point_at_the_line_to_fix(text: str) -> None:
    marked = next(i for i, line in enumerate(text.splitlines(), 1) if line.endswith("# <-"))
    with pytest.raises(InvalidInput) as exc:
        load_workflow(text)
    (problem,) = exc.value.problems
    assert problem.line == marked, f"{problem} (expected line {marked})"
    assert f"(line {marked})" in str(exc.value)


def test_problem_reads_path_line_and_message() -> None:
    assert str(Problem("tasks.a", "bad", 3)) == "tasks.a (line 3): bad"
    assert str(Problem("", "bad")) == "workflow: bad"


def test_validation_refuses_a_name_the_render_never_has_naming_the_field() -> None:
    text = textwrap.dedent(
        """
        name: w
        params: {region: eu}
        tasks:
          a: {type: shell, command: "echo {{ ti.xcom_pull(task_ids='b') }}"}
          b:
            type: shell
            params: {rows: "{{ params.region }}", bad: "{{ params.rows }}"}
            env: {R: "{{ params.rows }} {{ params.region }}"}
            command: "echo {{ params.b }} {{ dag_run.conf }}"
        """
    )
    with pytest.raises(InvalidInput) as exc:
        load_workflow(text)
    found = {(p.path, p.message.split(",")[0]) for p in exc.value.problems}
    assert found == {
        ("tasks.a.command", "template reads 'ti'"),
        ("tasks.b.params.bad", "template reads params.rows"),  # the run's params only
        ("tasks.b.command", "template reads 'dag_run'"),
        ("tasks.b.command", "template reads params.b"),
    }
    assert all(p.line is not None for p in exc.value.problems)


CODE_WITH_TEMPLATES = """\
name: w
tasks:
  a: {type: shell, command: echo k=1 >> "$STRATOFLOW_OUTPUT"}
  b:
    type: python
    depends_on: [a]
    code: |
      rows = "{{ tasks.zzz.outputs.k }}"
      day = "{{ ds }}"
      pulled = "{{ ti.xcom_pull(task_ids='a') }}"
  c:
    type: python
    code: |
      password = "{{secrets.pw}}"
"""


def test_validation_refuses_a_template_in_python_code_saying_code_is_not_templated() -> None:
    """Python code is never rendered: a template in it would reach Python as its braces, so
    it is refused (as the same in a shell command is), pointing at params instead."""
    with pytest.raises(InvalidInput) as exc:
        load_workflow(CODE_WITH_TEMPLATES)
    b, c = exc.value.problems
    assert (b.path, b.line, c.path, c.line) == ("tasks.b.code", 7, "tasks.c.code", 13)
    for text in ("{{ tasks.zzz.outputs.k }}", "{{ ds }}", "{{ ti.xcom_pull(task_ids='a') }}"):
        assert repr(text) in b.message
    assert b.message.startswith("code is not templated: ")
    assert 'read params["rows"] in the code' in b.message
    assert "'{{secrets.pw}}'" in c.message  # only the canonical form is replaced in code
    assert "written {{ secrets.NAME }}" in c.message


def test_python_code_may_hold_a_secret_reference_and_braces_of_its_own() -> None:
    """A canonical secret reference is replaced by the executor; braces that read no name a
    workflow template reads (an f-string's, a template the code renders itself) are Python's."""
    spec = load_workflow(
        textwrap.dedent(
            """
            name: w
            tasks:
              a:
                type: python
                code: |
                  password = "{{ secrets.pw }}"
                  body = f'{{"n": {len(password)}}}'
                  greeting = f"{{x}}"
                  import string
                  hello = "Hello {{ name }}, {{ user.first | upper }}"
            """
        )
    )
    assert isinstance(spec.workflow.tasks["a"], PythonTask)


def test_a_stored_version_with_a_template_in_python_code_still_loads() -> None:
    """Versions applied before the check load as they were (their runs print the braces)."""
    document = {
        "name": "old",
        "tasks": {"a": {"type": "python", "code": "print('{{ ds }}')"}},
    }
    with pytest.raises(InvalidInput, match="code is not templated"):
        parse_workflow(document)
    assert spec_from_document(document).name == "old"


def test_a_stored_version_applied_before_the_name_check_still_loads() -> None:
    document = {
        "name": "old",
        "tasks": {"a": {"type": "shell", "command": "echo {{ execution_date }} {{ params.b }}"}},
    }
    with pytest.raises(InvalidInput, match="execution_date"):
        parse_workflow(document)
    assert spec_from_document(document).name == "old"  # its runs fail the task, as before


def test_an_http_task_follows_redirects_unless_told_not_and_unset_stays_out_of_the_digest() -> None:
    base = "name: h\ntasks:\n  call: {type: http, url: 'http://example.invalid/'"
    unset, told = load(base + "}\n"), load(base + ", follow_redirects: false}\n")
    assert "follow_redirects" not in unset.document["tasks"]["call"]
    assert told.document["tasks"]["call"]["follow_redirects"] is False
    assert unset.digest != told.digest
    problem = refusal(base + ", follow_redirects: sometimes}\n").problems[0]
    assert problem.path == "tasks.call.follow_redirects"


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("max_active_runs", "max_active_runs: true\n"),
        ("concurrency", "concurrency: false\n"),
        ("priority", "priority: true\n"),
        ("defaults.retries", "defaults: {retries: true}\n"),
        ("defaults.retry_backoff", "defaults: {retry_backoff: true}\n"),
        ("tasks.a.retries", "tasks:\n  a: {type: shell, command: x, retries: yes}\n"),
        ("tasks.a.pool_slots", "tasks:\n  a: {type: shell, command: x, pool_slots: true}\n"),
        ("tasks.a.priority", "tasks:\n  a: {type: shell, command: x, priority: true}\n"),
        ("tasks.a.memory", "tasks:\n  a: {type: batch, image: i, command: x, memory: true}\n"),
        ("tasks.a.vcpus", "tasks:\n  a: {type: batch, image: i, command: x, vcpus: true}\n"),
        ("tasks.a.expected_status", "tasks:\n  a: {type: http, url: u, expected_status: true}\n"),
    ],
)
def test_a_boolean_where_a_number_is_expected_is_refused(field: str, text: str) -> None:
    """bool is an int subclass and pydantic read `max_active_runs: true` as a limit of 1."""
    if "tasks:" not in text:
        text += "tasks:\n  a: {type: shell, command: x}\n"
    problems = refusal("name: w\n" + text).problems
    assert [(p.path, p.message) for p in problems] == [
        (field, f"expected a number, not {'false' if 'false' in text else 'true'}")
    ]
    assert problems[0].line is not None


def test_numbers_still_load_where_numbers_are_expected() -> None:
    spec = load(
        "name: w\nmax_active_runs: 2\nconcurrency: 3\npriority: -1\n"
        "defaults: {retries: 1, retry_backoff: 2}\n"
        "tasks:\n  a: {type: batch, image: i, command: x, memory: 512, vcpus: 0.5, priority: 4}\n"
        "  h: {type: http, url: u, expected_status: 201}\n"
    )
    assert (spec.workflow.max_active_runs, spec.workflow.concurrency) == (2, 3)
    assert spec.document["tasks"]["a"]["memory"] == 512
    assert spec.document["tasks"]["h"]["expected_status"] == [201]
