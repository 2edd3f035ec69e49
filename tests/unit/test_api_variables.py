"""``/variables`` over the REST API, and templates reading them when a task is rendered
(SQLite store, the fake dispatcher: what a task would run is its rendered AttemptSpec)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.test_api_app import Api, _build, assert_error

from stratoflow.engine import TaskState

READS = """
name: reads
tasks:
  copy:
    type: shell
    command: "aws s3 cp x {{ var.value.bucket }}/{{ ds }}"
    env: {LIMIT: "{{ var.json.cfg.limit }}"}
  route:
    type: switch
    depends_on: [copy]
    cases: [{when: "{{ var.json.cfg.big }}", next: [big]}]
    default: [small]
  big: {type: shell, depends_on: [route], command: "echo big"}
  small: {type: shell, depends_on: [route], command: "echo small"}
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = _build(tmp_path)
    yield built
    built.scheduler.store.close()  # type: ignore[attr-defined]


def test_variables_are_set_read_listed_replaced_and_deleted(api: Api) -> None:
    q = {"project": "default"}
    assert api.call("GET", "/variables", query=q).body == {"project": "default", "variables": []}
    assert_error(api.call("GET", "/variables/bucket", query=q), 404, "not_found", "'bucket'")
    reply = api.call("PUT", "/variables/bucket", {"value": "s3://one"}, query=q)
    assert reply.status == 201, reply.text
    assert (reply.body["name"], reply.body["value"]) == ("bucket", "s3://one")
    reply = api.call("PUT", "/variables/bucket", {"value": "s3://two"}, query=q)
    assert reply.status == 200, reply.text
    got = api.call("GET", "/variables/bucket", query=q).body
    assert (got["project"], got["name"], got["value"]) == ("default", "bucket", "s3://two")
    assert got["updated_by"] == "local"
    assert got["updated_at"]
    listed = api.call("GET", "/variables", query=q).body["variables"]
    assert [(v["name"], v["value"]) for v in listed] == [("bucket", "s3://two")]
    # another project has its own
    assert api.call("GET", "/variables", query={"project": "other"}).body["variables"] == []
    assert api.call("DELETE", "/variables/bucket", query=q).status == 200
    assert_error(api.call("DELETE", "/variables/bucket", query=q), 404, "not_found", "'bucket'")
    assert "/variables/{name}" in api.call("GET", "/openapi.json").body["paths"]


def test_bad_names_and_values_are_refused_and_change_nothing(api: Api) -> None:
    q = {"project": "default"}
    for bad in ("9lives", "my-var", "a" * 129):
        reply = api.call("PUT", f"/variables/{bad}", {"value": "x"}, query=q)
        assert reply.status in (400, 422), (bad, reply.text)
        assert "name" in reply.text
    reply = api.call("PUT", "/variables/big", {"value": "x" * (64 * 1024 + 1)}, query=q)
    assert reply.status in (400, 422), reply.text
    assert "value" in reply.text
    reply = api.call("PUT", "/variables/wide", {"value": "é" * (32 * 1024 + 1)}, query=q)
    assert_error(reply, 400, "invalid_input", "65,538 bytes", "at most 65,536")
    assert_error(api.call("PUT", "/variables/nul", {"value": "a\0b"}, query=q), 400,
                 "invalid_input", "NUL")  # fmt: skip
    assert api.call("PUT", "/variables/x", {"nope": "x"}, query=q).status in (400, 422)
    assert api.call("GET", "/variables", query=q).body["variables"] == []


@pytest.mark.parametrize("project", ["../../x", "Bad Project/..", "a\nb", "a\x1b[2Jb", "x" * 129])
def test_a_bad_project_name_is_refused_as_secrets_refuse_it(api: Api, project: str) -> None:
    """PUT /variables/n9?project=../../x was a 201: the project is checked as secrets',
    resources' and pools' are, and nothing changes."""
    q = {"project": project}
    words = "a project name is 1-128 of a-z, 0-9, '_' and '-'"
    for method, path, body in (
        ("PUT", "/variables/n9", {"value": "1"}),
        ("GET", "/variables/n9", None),
        ("GET", "/variables", None),
        ("DELETE", "/variables/n9", None),
    ):
        reply = api.call(method, path, body, query=q)
        problems = assert_error(reply, 400, "invalid_input", words)["problems"]
        assert problems[0]["path"] == "project", (method, path)
    assert api.scheduler.store.list_variables(project) == []  # type: ignore[attr-defined]


def _dispatched_command(api: Api, run_id: str, task_id: str) -> str:
    specs = [s for s in api.dispatcher.dispatched if (s.run_id, s.task_id) == (run_id, task_id)]
    return str(specs[-1].task.fields["command"])


def test_templates_read_the_variables_when_the_task_is_rendered(api: Api) -> None:
    q = {"project": "default"}
    api.apply(READS)
    api.call("PUT", "/variables/bucket", {"value": "s3://one"}, query=q)
    api.call("PUT", "/variables/cfg", {"value": '{"limit": 5, "big": true}'}, query=q)
    first = api.trigger("reads")
    api.scheduler.dispatch_ready()
    assert _dispatched_command(api, first, "copy").startswith("aws s3 cp x s3://one/")
    assert api.dispatcher.dispatched[-1].task.env["LIMIT"] == "5"
    # changed between the runs: the next render reads the new value, no apply needed
    api.call("PUT", "/variables/bucket", {"value": "s3://two"}, query=q)
    api.call("PUT", "/variables/cfg", {"value": '{"limit": 7, "big": false}'}, query=q)
    api.finish(first, "copy")
    api.scheduler.dispatch_ready()  # the switch decides now, with the new cfg
    assert api.task(first, "small").state is not TaskState.SKIPPED
    assert api.task(first, "big").state is TaskState.SKIPPED
    second = api.trigger("reads")
    api.scheduler.dispatch_ready()
    assert _dispatched_command(api, second, "copy").startswith("aws s3 cp x s3://two/")
    assert api.dispatcher.dispatched[-1].task.env["LIMIT"] == "7"


def test_a_variable_that_is_not_set_fails_the_task_naming_it(api: Api) -> None:
    api.apply(READS)
    api.call("PUT", "/variables/cfg", {"value": "{}"}, query={"project": "default"})
    run_id = api.trigger("reads")
    api.scheduler.dispatch_ready()
    task = api.task(run_id, "copy")
    assert task.state is TaskState.FAILED
    assert task.error is not None
    assert "variable 'bucket' is not set in project 'default'" in task.error
    assert task.attempt == 1  # not retried, as any template error


def test_var_json_of_a_value_that_is_not_json_fails_naming_it(api: Api) -> None:
    q = {"project": "default"}
    api.apply(READS)
    api.call("PUT", "/variables/bucket", {"value": "s3://one"}, query=q)
    api.call("PUT", "/variables/cfg", {"value": "limit=5"}, query=q)
    run_id = api.trigger("reads")
    api.scheduler.dispatch_ready()
    task = api.task(run_id, "copy")
    assert task.state is TaskState.FAILED
    assert task.error is not None
    assert "variable 'cfg' of project 'default' is not JSON" in task.error


def test_validation_refuses_var_read_other_than_by_a_written_name(api: Api) -> None:
    flow = "name: dyn\nparams: {n: bucket}\ntasks:\n  a: {type: shell, command: 'echo {{ var.value[params.n] }}'}\n"
    reply = api.call("POST", "/workflows", {"source": flow})
    assert_error(reply, 400, "invalid_input", "var.value.NAME")
    flow = "name: dyn\ntasks:\n  a: {type: shell, command: 'echo {{ vars.value.x }}'}\n"
    assert_error(api.call("POST", "/workflows", {"source": flow}), 400, "invalid_input", "'vars'")


def test_a_sub_workflow_task_passes_a_variable_to_its_child_run(api: Api) -> None:
    api.apply("name: child\nparams: {where: none}\ntasks:\n  a: {type: shell, command: 'true'}\n")
    api.apply(
        "name: parent\ntasks:\n  sub:\n    type: workflow\n    workflow: child\n"
        "    params: {where: '{{ var.value.region }}'}\n"
    )
    api.call("PUT", "/variables/region", {"value": "eu-west-1"}, query={"project": "default"})
    run_id = api.trigger("parent")
    api.scheduler.dispatch_ready()
    child = api.call("GET", "/runs", query={"workflow": "child"}).body["runs"]
    assert len(child) == 1, api.task(run_id, "sub")
    assert api.call("GET", f"/runs/{child[0]['id']}").body["run"]["params"] == {
        "where": "eu-west-1"
    }


def test_a_list_shows_each_value_s_beginning_and_its_size(api: Api) -> None:
    """1,000 values of 64 KiB listed whole were a 64 MB reply, past the 6 MB Lambda answers:
    a list shows each value's first 1,024 characters; GET of one gives it whole."""
    q = {"project": "default"}
    big = "é" * (32 * 1024)  # 64 KiB of UTF-8
    assert api.call("PUT", "/variables/big", {"value": big}, query=q).status == 201
    assert api.call("PUT", "/variables/small", {"value": "s3://x"}, query=q).status == 201
    listed = {v["name"]: v for v in api.call("GET", "/variables", query=q).body["variables"]}
    assert listed["big"]["value"] == "é" * 1024
    assert (listed["big"]["size"], listed["big"]["truncated"]) == (64 * 1024, True)
    assert (listed["small"]["value"], listed["small"]["truncated"]) == ("s3://x", False)
    assert api.call("GET", "/variables/big", query=q).body["value"] == big


def test_a_template_binding_var_and_reading_the_project_s_is_refused(api: Api) -> None:
    """Bound in a loop before it (another scope), ``var`` was taken for the template's own
    everywhere: its read of var.value.bucket was neither recorded nor refused, and the task
    failed 'variable bucket is not set' with bucket set."""
    for command in (
        "{% for var in [1] %}{% endfor %}echo {{ var.value.bucket }}",
        "{% macro m(var) %}{{ var }}{% endmacro %}echo {{ var.value[params.n] }}",
    ):
        flow = (
            "name: scoped\nparams: {n: bucket}\ntasks:\n"
            f"  a: {{type: shell, command: '{command}'}}\n"
        )
        reply = api.call("POST", "/workflows", {"source": flow})
        assert_error(reply, 400, "invalid_input", "binds the name var")
    own = "name: own\ntasks:\n  a: {type: shell, command: '{% set var = 1 %}echo {{ var }}'}\n"
    assert api.call("POST", "/workflows", {"source": own}).status == 201


def test_a_task_reads_at_most_100_variables(api: Api) -> None:
    names = " ".join(f"{{{{ var.value.v{i} }}}}" for i in range(101))
    flow = f"name: many\ntasks:\n  a: {{type: shell, command: 'echo {names}'}}\n"
    assert_error(
        api.call("POST", "/workflows", {"source": flow}), 400, "invalid_input", "101 variables"
    )
