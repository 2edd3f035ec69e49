"""Templating: what a template can read, how an undefined name fails, what shell text passes
through untouched, and what the sandbox refuses."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stratoflow import engine
from stratoflow.cli import main
from stratoflow.engine import Run
from stratoflow.errors import InvalidInput
from stratoflow.model import WorkflowSpec, load_workflow, parse_workflow
from stratoflow.templating import (
    CONTEXT_NAMES,
    TemplateError,
    check_syntax,
    reads_tasks_dynamically,
    referenced_tasks,
    render,
    render_condition,
    render_value,
    undefined_names,
)

LOGICAL = datetime(2026, 3, 7, 2, 0, tzinfo=UTC)

SPEC = load_workflow(
    textwrap.dedent(
        """
        name: sales
        project: analytics
        params: {region: eu, day: "?"}
        tasks:
          extract: {type: shell, command: x}
          load:
            type: shell
            depends_on: [extract]
            params:
              rows: "{{ tasks.extract.outputs.rows }}"
              day: "{{ ds }}"
            env:
              TARGET: "{{ params.region }}-{{ ds_nodash }}"
            command: >-
              load --rows {{ params.rows }} --region {{ params.region }}
              --run {{ run.id }} --day {{ params.day }} --at {{ logical_date }}
              --n "${#files[@]}" --home "${HOME}" --base "${path%/*}"
        """
    )
)


def make_run(spec: WorkflowSpec = SPEC, **params: Any) -> Run:
    run, _ = engine.new_run(
        spec, run_id="sales-1", version=2, params=params, logical_date=LOGICAL, now=LOGICAL
    )
    return run


def context(**params: Any) -> dict[str, Any]:
    return engine.template_context(SPEC, make_run(**params), "load", {"extract": {"rows": "42"}})


# ------------------------------------------------------------------------------------------
# What a template can read
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ params.region }}", "eu"),
        ("{{ tasks.extract.outputs.rows }}", "42"),
        ("{{ tasks['extract'].outputs['rows'] | int * 2 }}", "84"),
        ("{{ ds }}", "2026-03-07"),
        ("{{ ds_nodash }}", "20260307"),
        ("{{ logical_date }}", "2026-03-07T02:00:00+00:00"),
        (
            "{{ run.id }}/{{ run.workflow }}/{{ run.project }}/v{{ run.version }}",
            "sales-1/sales/analytics/v2",
        ),
        ("{{ task.id }}", "load"),
        # the task's own params are rendered first, and override the run's
        ("{{ params.rows }} {{ params.day }}", "42 2026-03-07"),
    ],
)
def test_a_template_reads_params_outputs_dates_and_the_run(template: str, expected: str) -> None:
    assert render(template, context()) == expected


def test_a_run_param_overrides_the_workflow_default() -> None:
    assert render("{{ params.region }}", context(region="us")) == "us"


def test_render_task_renders_every_templated_field_and_nothing_else() -> None:
    rendered = engine.render_task(SPEC, make_run(), "load", {"extract": {"rows": "42"}})
    assert rendered.task_type == "shell"
    assert rendered.fields["command"] == (
        "load --rows 42 --region eu --run sales-1 --day 2026-03-07 "
        '--at 2026-03-07T02:00:00+00:00 --n "${#files[@]}" --home "${HOME}" --base "${path%/*}"'
    )
    assert rendered.params == {"region": "eu", "day": "2026-03-07", "rows": "42"}
    assert rendered.env == {"TARGET": "eu-20260307"}
    # scheduling settings are not part of what an executor receives
    assert "depends_on" not in rendered.fields
    assert "retries" not in rendered.fields


def test_render_value_renders_strings_inside_lists_and_dicts() -> None:
    value = {"a": ["{{ params.region }}", 3, None], "b": {"c": "{{ ds }}"}, "d": True}
    assert render_value(value, context()) == {
        "a": ["eu", 3, None],
        "b": {"c": "2026-03-07"},
        "d": True,
    }


# A key named like a dict method (items, keys, values, get, update, pop, ...) is read by
# ``.name`` as the key, not the method: Jinja tries the attribute first.
METHOD_NAMED = load_workflow(
    textwrap.dedent(
        """
        name: methods
        params: {items: x, keys: k, values: v, get: g, update: u, pop: p, copy: c}
        tasks:
          items: {type: shell, command: x}
          show:
            type: shell
            depends_on: [items]
            command: >-
              echo items={{ params.items }} keys={{ params.keys }} values={{ params.values }}
              get={{ params.get }} update={{ params.update }} pop={{ params.pop }}
              copy={{ params.copy }} out={{ tasks.items.outputs.items }}
              nested={{ tasks.items.outputs.get.pop }}
        """
    )
)


def test_a_key_named_like_a_dict_method_is_read_as_the_key() -> None:
    outputs = {"items": {"items": "o", "get": {"pop": "n"}}}
    run, _ = engine.new_run(METHOD_NAMED, run_id="m-1", version=1, params={},
                            logical_date=LOGICAL, now=LOGICAL)  # fmt: skip
    rendered = engine.render_task(METHOD_NAMED, run, "show", outputs)
    assert rendered.fields["command"] == (
        "echo items=x keys=k values=v get=g update=u pop=p copy=c out=o nested=n"
    )
    assert referenced_tasks(METHOD_NAMED.workflow.tasks["show"].command) == {"items"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # not a key: the method, as before
        ("{{ params.items() | list }}", '[["region", "eu"]]'),  # a list written out: JSON
        ("{{ params.get('region') }}", "eu"),
        ("{{ params.keys() | join(',') }}", "region"),
        # a key: the item, whatever its name; by subscript as before
        ("{{ params.values }}", "v"),
        ("{{ params['values'] }}", "v"),
        ("{{ [params] | map(attribute='values') | join }}", "v"),
        ("{{ params.__class__ }}", "c"),  # the item, never the attribute
    ],
)
def test_dot_reads_a_key_first_and_a_method_only_when_no_key(template: str, expected: str) -> None:
    params = {"region": "eu"}
    if "values" in template or "__class__" in template:
        params = {"values": "v", "__class__": "c"}
    assert render(template, {"params": params}) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{{ params.update(x=1) }}",
        "{{ params.pop('region') }}",
        "{{ params.setdefault('y', 1) }}",
        "{{ params.__class__.__init__ }}",
    ],
)
def test_a_method_name_that_is_not_a_key_is_refused_as_before(template: str) -> None:
    with pytest.raises(TemplateError, match="not allowed"):
        render(template, {"params": {"region": "eu"}})


# ------------------------------------------------------------------------------------------
# An undefined name fails, naming it
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("{{ nope }}", "'nope' is undefined"),
        ("{{ params.missing }}", "no attribute 'missing'"),
        ("{{ tasks.extract.outputs.count }}", "task 'extract' has no output 'count'"),
        ("{{ tasks.other.outputs.x }}", "no attribute 'other'"),
        ("{% if params.flag %}x{% endif %}", "no attribute 'flag'"),
        ("{{ params.missing | default('d') }}x{{ also_missing }}", "'also_missing' is undefined"),
    ],
)
def test_an_undefined_name_fails_naming_it(template: str, named: str) -> None:
    with pytest.raises(TemplateError, match="undefined in template") as exc:
        render(template, context())
    assert named in str(exc.value)
    assert template.strip() in str(exc.value)


@pytest.mark.parametrize(
    "template",
    ["{{ tasks.extract.outputs.rowz }}", "{{ tasks.extract.outputs['rowz'] }}"],
)
def test_a_missing_output_names_its_task_and_the_outputs_it_has(template: str) -> None:
    """A typo in an output's key said `'dict object' has no attribute 'rowz'`: Jinja's words,
    naming neither the task nor what it did output."""
    with pytest.raises(TemplateError, match="undefined in template") as exc:
        render(template, context())
    assert "task 'extract' has no output 'rowz' (its outputs: rows)" in str(exc.value)
    # a default, or a test, still reads it as undefined
    assert render("{{ tasks.extract.outputs.rowz | default('d') }}", context()) == "d"
    assert render("{{ tasks.extract.outputs.rowz is defined }}", context()) == "False"


def test_default_filter_still_works_under_strict_undefined() -> None:
    assert render("{{ params.missing | default('d') }}", context()) == "d"


def test_render_task_names_the_field_that_failed() -> None:
    with pytest.raises(TemplateError) as exc:
        engine.render_task(SPEC, make_run(), "load", {"extract": {}})  # no `rows` output
    assert "task 'extract' has no output 'rows' (it has no outputs)" in str(exc.value)


# ------------------------------------------------------------------------------------------
# Shell text passes through untouched
# ------------------------------------------------------------------------------------------

SHELL = [
    "${HOME}",
    "${#arr[@]}",
    "${x%y}",
    "${x%%.*}",
    "${x#*/}",
    "${x##*/}",
    "${x:-default}",
    "${!name}",
    "$((1 + 2))",
    'arr=(a b c); echo "n=${#arr[@]} ${HOME:-x}"',
    "awk '{ print $1 }'",
    "echo '{#' ok '#}'",
]


@pytest.mark.parametrize("text", SHELL)
def test_shell_text_without_templates_is_untouched(text: str) -> None:
    assert render(text, context()) == text


@pytest.mark.parametrize("text", SHELL)
def test_shell_text_next_to_a_template_is_untouched(text: str) -> None:
    assert render(f"{text} {{{{ params.region }}}} {text}", context()) == f"{text} eu {text}"


def test_trailing_newline_of_a_script_is_kept() -> None:
    assert render("echo {{ params.region }}\n", context()) == "echo eu\n"


# ------------------------------------------------------------------------------------------
# The sandbox
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ params.__class__.__init__.__globals__ }}",
        "{{ run.update(id='x') }}",  # the context is immutable
        "{{ params.pop('region') }}",
    ],
)
def test_the_sandbox_refuses_unsafe_access(template: str) -> None:
    with pytest.raises(TemplateError, match="not allowed"):
        render(template, context())


def test_a_filter_that_raises_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="failed"):
        render("{{ params.region / 2 }}", context())


# ------------------------------------------------------------------------------------------
# Static analysis
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tasks"),
    [
        ("{{ tasks.a.outputs.x }}", {"a"}),
        ("{{ tasks['b-c'].outputs.y }} {{ tasks.d.outputs.z }}", {"b-c", "d"}),
        ("{% if tasks.e.outputs.ok %}{{ tasks.f.outputs.v }}{% endif %}", {"e", "f"}),
        ("{{ params.tasks }} {{ run.id }}", set()),
        ("no template here: tasks.a.outputs.x", set()),
        ("${#arr[@]}", set()),
    ],
)
def test_referenced_tasks(text: str, tasks: set[str]) -> None:
    assert referenced_tasks(text) == tasks


def test_check_syntax_reports_the_line() -> None:
    check_syntax("plain ${x} text")
    check_syntax("{{ ok }}")
    with pytest.raises(TemplateError, match="syntax error on its line 2"):
        check_syntax("line one\n{{ broken\n")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{{ run.id | ds_nodash }}", "the filter 'ds_nodash' on its line 1"),
        ("{{ x | ds_nodash }}", "the filter 'ds_nodash' on its line 1"),  # and a free name
        ("a\n{% filter nope %}x{% endfilter %}", "the filter 'nope' on its line 2"),
        ("{{ run.id is nosuchtest }}", "the test 'nosuchtest' on its line 1"),
        ("{% if run.id | nope %}x{% endif %}", "the filter 'nope'"),  # a condition's test
        # in a branch (Jinja checks it when the branch runs), with a name its scoping pass
        # compiles to look at: no crash, the name is said
        ("{{ (x | nope) if run.id else 1 }}", "template reads 'x', which is not defined"),
        # a block with a frame of its own inside a branch: Jinja refuses it when compiling,
        # so every render fails, the branch taken or not
        ("{% if params.c %}{% filter nope %}x{% endfilter %}{% endif %}", "the filter 'nope'"),
        ("{% if 1 %}{% for x in [1] %}{{ x | nope }}{% endfor %}{% endif %}", "the filter 'nope'"),
        # binding var sends validation through Jinja's scoping: a clean error, no traceback
        ("{% for var in params.l %}{{ var | nope }}{% endfor %}", "the filter 'nope'"),
    ],
)
def test_a_filter_or_test_that_does_not_exist_is_said_by_validation(text: str, said: str) -> None:
    """Jinja finds an unknown filter only when it compiles: validation's scoping pass raised
    a bare Jinja error (a traceback from ``stratoflow validate``, a 500 from the API) and an
    unknown filter alone passed validation to fail every render."""
    try:
        why = undefined_names(text, None)
    except TemplateError as exc:
        why = [str(exc)]
    assert len(why) == 1
    assert said in why[0]


@pytest.mark.parametrize(
    "text",
    [
        "{{ logical_date | shift_date('%Y', 'UTC') }} {{ x is defined }} {{ 1 is none }}",
        "{% filter upper %}x{% endfilter %} {{ 'a' in 'abc' }}",
        # used only in a branch the render may not take, as Jinja allows
        "{% if 'nope' is filter %}{{ run.id | nope }}{% else %}{{ run.id }}{% endif %}",
        "{{ (run.id | nope) if false else 'ok' }}",
        "{% for x in [1] %}{% if x > 1 %}{{ x | nope }}{% endif %}{% endfor %}",
    ],
)
def test_known_filters_and_ones_in_a_branch_only_are_not_refused(text: str) -> None:
    check_syntax(text)
    assert undefined_names(text, None) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("{{ 1 > 0 }}", True),
        ("{{ params.region == 'eu' }}", True),
        (" Yes ", True),
        ("on", True),
        ("{{ 1 > 2 }}", False),
        ("0", False),
        ("none", False),
        ("", False),
    ],
)
def test_conditions_read_as_booleans(text: str, value: bool) -> None:
    assert render_condition(text, context()) is value


def test_a_condition_that_is_not_a_boolean_says_what_it_rendered() -> None:
    with pytest.raises(TemplateError, match="rendered 'eu', not true or false"):
        render_condition("{{ params.region }}", context())


@pytest.mark.parametrize(
    ("text", "dynamic"),
    [
        ("{% set t = 'my-task' %}{{ tasks[t].outputs.k }}", True),
        ("{{ tasks['a' ~ params.n].outputs.k }}", True),
        ("{{ tasks | list }}", True),
        ("{% for id in tasks %}{{ id }}{% endfor %}", True),
        ("{{ tasks.a.outputs.x }} {{ tasks['b'].outputs.y }}", False),
        ("{{ params.tasks }} {{ params[tasks_key] }}", False),
        ("no template: tasks[t]", False),
    ],
)
def test_reads_tasks_dynamically(text: str, dynamic: bool) -> None:
    assert reads_tasks_dynamically(text) is dynamic


# A name computed at render time reads a direct upstream; only those outputs are read.
DYNAMIC = load_workflow(
    textwrap.dedent(
        """
        name: dynamic
        params: {which: my-task}
        tasks:
          root: {type: shell, command: x}
          my-task: {type: shell, command: x, depends_on: [root]}
          other: {type: shell, command: x, depends_on: [root]}
          unrelated: {type: shell, command: x}
          literal:
            type: shell
            depends_on: [my-task, other]
            command: "echo {{ tasks['my-task'].outputs.k }}"
          dynamic:
            type: shell
            depends_on: [my-task, other]
            command: "{% set t = 'my-task' %}echo {{ tasks[t].outputs.k }}"
          by_param:
            type: shell
            depends_on: [my-task]
            command: "echo {{ tasks[params.which].outputs.k }}"
        """
    )
)


def test_a_dynamic_lookup_reads_every_direct_upstream_and_a_literal_one_only_its_name() -> None:
    reads = DYNAMIC.dag.reads
    assert reads["literal"] == {"my-task"}  # named literally: only it is read
    assert reads["dynamic"] == {"my-task", "other"}  # its depends_on, not root nor unrelated
    assert reads["by_param"] == {"my-task"}
    run, _ = engine.new_run(DYNAMIC, run_id="d-1", version=1, params={},
                            logical_date=LOGICAL, now=LOGICAL)  # fmt: skip
    outputs = {"my-task": {"k": "v"}, "other": {"k": "o"}}
    rendered = engine.render_task(DYNAMIC, run, "dynamic", outputs)
    assert rendered.fields["command"] == "echo v"


@pytest.mark.parametrize("which", ["root", "unrelated"])
def test_a_dynamic_lookup_of_a_task_not_directly_upstream_fails_naming_it(which: str) -> None:
    run, _ = engine.new_run(DYNAMIC, run_id="d-2", version=1, params={"which": which},
                            logical_date=LOGICAL, now=LOGICAL)  # fmt: skip
    upstream = {t: {"k": t} for t in DYNAMIC.dag.reads["by_param"]}
    with pytest.raises(TemplateError, match=f"no attribute '{which}'"):
        engine.render_task(DYNAMIC, run, "by_param", upstream)


# ------------------------------------------------------------------------------------------
# Names a template reads that its render context never has: refused when it is validated
# ------------------------------------------------------------------------------------------


def test_context_names_are_what_a_task_render_has() -> None:
    assert set(context()) == CONTEXT_NAMES


@pytest.mark.parametrize(
    "template",
    [
        "{{ params.region }} {{ tasks.extract.outputs.rows }} {{ run.id }} {{ task.id }}",
        "{{ logical_date }} {{ ds }} {{ ds_nodash }} {{ ts }} {{ secrets.DB }}",
        "{% set n = 2 %}{{ n }}",
        "{% for x in range(3) %}{{ loop.index }}{{ x }}{% endfor %}",
        # the globals, in templates that define nothing themselves (review: refused so)
        "{% for _ in range(3) %}echo hi; {% endfor %}",
        "{{ range(3) | join(',') }} {{ namespace(x=1).x }} {{ dict(a=1) }}",
        "{{ cycler('a', 'b').next() }} {{ joiner(',')() }} {{ lipsum(1) | length }}",
        "{% macro m(y) %}{{ y }}{% endmacro %}{{ m(1) }}",
        "{% set ns = namespace(k=1) %}{% set ns.k = 2 %}{{ ns.k }}{{ dict(a=1) }}",
        "{% with z = 1 %}{{ z }}{% endwith %}",
        "{{ maybe | default('x') }}",
        "{% if maybe is defined %}{{ maybe }}{% endif %}",
        "{{ params.missing | default(1) }} {{ params.get('region') }} {{ params['region'] }}",
        "{% if params.missing is defined %}{{ params.missing }}{% endif %}",
        "{{ params[name_of] if name_of is defined else '' }}",
        "{% set params = {'b': 1} %}{{ params.b }}",
        "plain text, {not: a template}",
    ],
)
def test_names_the_context_or_the_template_defines_are_accepted(template: str) -> None:
    assert undefined_names(template, {"region"}) == []


@pytest.mark.parametrize(
    ("template", "name", "hint"),
    [
        ("{{ ti.xcom_pull(task_ids='a', key='k') }}", "'ti'", "tasks.<task>.outputs.<key>"),
        ("{{ task_instance.xcom_pull('a') }}", "'task_instance'", "tasks.<task>.outputs"),
        ("{{ execution_date }}", "'execution_date'", "{{ logical_date }}"),
        ("{{ macros.ds_add(ds, 1) }}", "'macros'", "shift_date("),
        ("{{ dag_run.conf['x'] }}", "'dag_run'", "{{ params.<name> }}"),
        ("{{ conn.x.host }}", "'conn'", "connection"),
        ("{{ run_id }}", "'run_id'", "{{ run.id }}"),
        ("{{ prev_ds }}", "'prev_ds'", "shift_date("),
        ("{{ nope }}", "'nope'", "a template can read ds, ds_nodash, logical_date, params"),
        ("{% for x in [1] %}{% endfor %}{{ x }}", "'x'", "not defined"),
    ],
)
def test_a_name_no_render_has_is_refused_with_what_to_use(
    template: str, name: str, hint: str
) -> None:
    (why,) = undefined_names(template, {"region"})
    assert f"reads {name}" in why
    assert hint in why
    with pytest.raises(TemplateError, match="undefined"):
        render(template, context())  # it would have failed the task


_SHIFTED = re.compile(r"\{\{ logical_date \| shift_date\([^}]*\) \}\}")


@pytest.mark.parametrize("name", ["data_interval_start", "execution_date"])
def test_the_start_of_an_airflow_interval_is_hinted_as_the_previous_fire_time(name: str) -> None:
    # Stratoflow's logical date is the fire time (Airflow's data_interval_end): the start of
    # Airflow's interval, and Airflow 2's execution_date, are one interval before it
    (why,) = undefined_names(f"{{{{ {name} }}}}", None)
    assert "use {{ logical_date }}" not in why
    assert "previous fire time" in why
    assert "for a daily schedule" in why
    # the forms it gives render the previous daily fire time and its date (2026-03-07T02:00Z
    # fires for the day from 2026-03-06T02:00Z), the date as the importer writes Airflow 2's ds
    shown = _SHIFTED.findall(why)
    assert [render(form, context()) for form in shown] == [
        "2026-03-06T02:00:00+00:00",
        "2026-03-06",
    ]
    assert "{{ logical_date | shift_date('%Y-%m-%d', 'UTC', days=-1) }}" in shown


@pytest.mark.parametrize("name", ["data_interval_end", "next_execution_date"])
def test_the_end_of_an_airflow_interval_is_hinted_as_the_logical_date(name: str) -> None:
    (why,) = undefined_names(f"{{{{ {name} }}}}", None)
    assert "use {{ logical_date }} or {{ ts }}" in why
    assert "shift_date" not in why
    assert render("{{ ts }}", context()) == render("{{ logical_date }}", context())


def test_validate_hints_airflow_interval_names_by_what_they_map_to(tmp_path: Path) -> None:
    path = tmp_path / "airflow.yaml"
    path.write_text(
        "name: airflow\nschedule: {cron: '0 2 * * *'}\ntasks:\n"
        "  a: {type: shell, command: 'echo {{ data_interval_start }} {{ data_interval_end }}'}\n"
    )
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert (
        "'data_interval_start', an Airflow name Stratoflow does not have: the start of the "
        "interval is the previous fire time"
    ) in out
    assert (
        "'data_interval_end', an Airflow name Stratoflow does not have: Stratoflow's logical date is the fire time"
        in out
    )


def test_an_undeclared_param_is_refused_naming_it_and_the_declared_ones() -> None:
    (why,) = undefined_names("{{ params.region }}{{ params['b'] }}{{ params.b.c }}", {"region"})
    assert "params.b" in why
    assert "(region)" in why
    (own,) = undefined_names("{{ params.rows }}", {"region"}, own_params=True)
    assert "not the task's own" in own
    assert undefined_names("{{ params.b }}", None) == []  # params not checked


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ tasks.q.outputs.rows }}", '[{"id": 1, "note": null, "ok": true, "name": "O\'Neil"}]'),
        ("{{ tasks.q.outputs.body }}", '{"city": "Zürich", "tags": ["a", "b"]}'),
        ("{{ tasks.q.outputs.rows[0] }}", '{"id": 1, "note": null, "ok": true, "name": "O\'Neil"}'),
        ("{{ tasks.q.outputs.rows[0].note }}", "None"),  # a value alone: as before
        ("{{ (1, 'a') }}", '[1, "a"]'),
        ("{{ {1: 'a'} }}", '{"1": "a"}'),
    ],
)
def test_a_list_or_mapping_written_out_is_json(template: str, expected: str) -> None:
    """Structured outputs (an sql task's ``rows``, an http ``body``, a python task's dicts)
    are JSON values, and a template writes one out as JSON, not as Python's text of it."""
    outputs = {
        "rows": [{"id": 1, "note": None, "ok": True, "name": "O'Neil"}],
        "body": {"city": "Zürich", "tags": ["a", "b"]},
    }
    assert render(template, {"tasks": {"q": {"outputs": outputs}}}) == expected


def test_a_stored_version_using_a_filter_that_does_not_exist_still_loads() -> None:
    """A version applied before unknown filters were refused loads as it was applied (its
    runs go on, and the scheduler on its home starts); a new one is refused."""
    doc = {"name": "old", "tasks": {"a": {"type": "shell", "command": "echo {{ run.id | nope }}"}}}
    assert parse_workflow(doc, stored=True).name == "old"
    with pytest.raises(InvalidInput, match="the filter 'nope'"):
        parse_workflow(doc)
