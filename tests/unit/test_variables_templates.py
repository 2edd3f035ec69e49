"""``{{ var.value.NAME }}`` and ``{{ var.json.NAME }}``: what validation accepts and refuses,
which variables a task's render reads (``Dag.variables``), and how the render uses the values
the service passes in (the engine reads no store)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stratoflow import engine
from stratoflow.engine import Run, RunState
from stratoflow.errors import InvalidInput
from stratoflow.model import load_workflow
from stratoflow.templating import TemplateError, undefined_names, variable_references

FLOW = """
name: w
project: analytics
tasks:
  a:
    type: shell
    command: "cp {{ var.value.bucket }}/{{ ds }} {{ var.json['cfg'].dest }}"
    env: {N: "{{ var.value.n | default('1') }}"}
  b: {type: shell, depends_on: [a], command: "echo {{ params.x | default('') }}"}
  c:
    type: workflow
    workflow: child
    params: {where: "{{ var.value.region }}"}
"""


def run_of(project: str = "analytics") -> Run:
    return Run(
        id="r-1", workflow="w", project=project, version=1, state=RunState.RUNNING,
        logical_date=datetime(2026, 3, 1, tzinfo=UTC), params={},
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
    )  # fmt: skip


def test_the_dag_knows_which_variables_each_task_reads() -> None:
    spec = load_workflow(FLOW)
    assert spec.dag.variables == {
        "a": frozenset({"bucket", "cfg", "n"}),
        "c": frozenset({"region"}),
    }


@pytest.mark.parametrize(
    ("template", "names"),
    [
        ("{{ var.value.bucket }}", {"bucket"}),
        ("{{ var.json.cfg.a[0] }}{{ var.value['x'] }}", {"cfg", "x"}),
        ("{% if var.value.flag is defined %}{{ var.value.flag }}{% endif %}", {"flag"}),
        ("{% set var = {'value': {'x': 1}} %}{{ var.value.x }}", set()),  # its own
        ("{{ params.var }}", set()),
    ],
)
def test_variables_read_by_a_written_name(template: str, names: set[str]) -> None:
    assert variable_references(template) == (names, [])
    assert undefined_names(template, {"var"}) == []


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("{{ var.value[params.n] }}", "with the name written out"),
        ("{{ var }}", "var.value.NAME"),
        ("{{ var.other.x }}", "var.json.NAME"),
        ("{{ var.value | list }}", "var.value.NAME"),
        ("{{ var.value['my-var'] }}", "a variable name is a letter"),
        ("{{ var.value.get('x', 'd') }}", "var.value.NAME | default("),
    ],
)
def test_other_reads_of_var_are_refused_at_validation(template: str, needle: str) -> None:
    _, why = variable_references(template)
    assert why
    assert needle in " ".join(why)
    flow = f"name: w\ntasks:\n  a: {{type: shell, command: {template!r}}}\n"
    with pytest.raises(InvalidInput, match=r"tasks\.a\.command"):
        load_workflow(flow)


def test_the_render_reads_the_values_it_is_given() -> None:
    spec = load_workflow(FLOW)
    values = {"bucket": "s3://b", "cfg": '{"dest": "/tmp/x"}'}
    rendered = engine.render_task(spec, run_of(), "a", {}, values)
    assert rendered.fields["command"] == "cp s3://b/2026-03-01 /tmp/x"
    assert rendered.env["N"] == "1"  # not set, under default()
    rendered = engine.render_task(spec, run_of(), "a", {}, {**values, "n": "9"})
    assert rendered.env["N"] == "9"


def test_a_variable_not_given_fails_the_render_naming_it_and_the_project() -> None:
    spec = load_workflow(FLOW)
    with pytest.raises(TemplateError, match="variable 'bucket' is not set in project 'analytics'"):
        engine.render_task(spec, run_of(), "a", {}, {"cfg": "{}"})


def test_var_json_of_text_that_is_not_json_fails_naming_it() -> None:
    spec = load_workflow(FLOW)
    with pytest.raises(TemplateError, match="variable 'cfg' of project 'analytics' is not JSON"):
        engine.render_task(spec, run_of(), "a", {}, {"bucket": "b", "cfg": "dest=/tmp"})
