"""What a dag-factory task becomes, operator by operator, and what is reported instead."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from stratoflow.cli import main
from stratoflow.errors import InvalidInput
from stratoflow.importers import import_file
from stratoflow.importers._report import FileImport
from stratoflow.model import parse_workflow
from stratoflow.model._schedule import parse_schedule, schedule_window
from stratoflow.templating import render, render_value


def _import(tmp_path: Path, text: str, defaults: str | None = None) -> FileImport:
    if defaults is not None:
        (tmp_path / "defaults.yml").write_text(defaults)
    path = tmp_path / "dags.yml"
    path.write_text(text)
    result = import_file(path, "dag-factory")
    for workflow in result.workflows:
        assert workflow.document is not None
        parse_workflow(workflow.document)
    return result


def _tasks(result: FileImport, index: int = 0) -> dict[str, Any]:
    return result.workflows[index].document["tasks"]  # type: ignore[index]


def _unmapped(result: FileImport) -> str:
    return " | ".join(n.message for n in result.all_notes() if n.severity == "unmapped")


def test_aws_operators(tmp_path: Path) -> None:
    result = _import(
        tmp_path,
        yaml.safe_dump({"aws": {"tasks": [
            {"task_id": "invoke", "operator": "airflow.providers.amazon.aws.operators.lambda_function.LambdaInvokeFunctionOperator",
             "function_name": "fn", "payload": '{"day": "{{ ds }}"}'},
            {"task_id": "job", "operator": "airflow.providers.amazon.aws.operators.batch.BatchOperator",
             "job_name": "j", "job_queue": "q", "job_definition": "d",
             "container_overrides": {"image": "repo/img:1", "command": ["run", "{{ ds_nodash }}"]}},
            {"task_id": "job_def_only", "operator": "airflow.providers.amazon.aws.operators.batch.BatchOperator",
             "job_name": "j", "job_queue": "q", "job_definition": "d"},
            {"task_id": "query", "operator": "airflow.providers.amazon.aws.operators.athena.AthenaOperator", "query": "select 1"},
        ]}}),
    )  # fmt: skip
    tasks = _tasks(result)
    assert tasks["invoke"] == {"type": "lambda", "function": "fn", "payload": {"day": "{{ ds }}"}}
    assert tasks["job"] == {
        "type": "batch",
        "image": "repo/img:1",
        "command": ["run", "{{ ds_nodash }}"],
        "job_queue": "q",
    }
    assert tasks["job_def_only"]["description"].startswith("PLACEHOLDER")
    assert tasks["query"] == {  # no database named: the connection says which
        "type": "sql", "connection": "athena-default", "sql": "select 1", "outputs": "first_row"
    }  # fmt: skip
    assert "('d') without an image override" in _unmapped(result)


def test_a_pod_without_cmds_is_not_its_arguments_run_as_the_command(tmp_path: Path) -> None:
    """KubernetesPodOperator's ``cmds`` is the container's command and ``arguments`` its
    args: without ``cmds`` the image's entrypoint runs them. A kubernetes task's command
    replaces the entrypoint, which the import cannot know: the arguments were written as
    the command, the first one run as the program, and nothing said so."""
    kpo = "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"pods": {"tasks": [
            {"task_id": "etl", "operator": kpo, "image": "repo/etl:1",
             "arguments": ["--date", "{{ ds }}"]},
            {"task_id": "hello", "operator": kpo, "image": "python:3.12-slim",
             "cmds": ["python", "-c"], "arguments": ["print(1)"]},
        ]}}),
    )  # fmt: skip
    tasks = _tasks(result)
    assert tasks["etl"]["description"].startswith("PLACEHOLDER")
    assert "entrypoint of image 'repo/etl:1'" in _unmapped(result)
    assert tasks["hello"]["command"] == ["python", "-c", "print(1)"]  # cmds: exact


def test_a_placeholder_quoting_a_template_is_written_and_says_it(tmp_path: Path) -> None:
    """A placeholder's reason may quote the source's templates (a computed trigger_dag_id);
    pasted into the placeholder's command, which is rendered, they were read as templates:
    the workflow did not validate, and none of its tasks was written."""
    result = _import(
        tmp_path,
        yaml.safe_dump({"trig": {"tasks": [
            {"task_id": "a", "operator": "airflow.operators.bash.BashOperator",
             "bash_command": "echo a"},
            {"task_id": "go", "operator": "airflow.operators.trigger_dagrun.TriggerDagRunOperator",
             "trigger_dag_id": "child_{{ dag_run.conf.region }}{% if x %}", "dependencies": ["a"]},
        ]}}),
    )  # fmt: skip
    go = _tasks(result)["go"]
    assert go["depends_on"] == ["a"]
    assert "child_{{ dag_run.conf.region }}{% if x %}" in render(go["command"], {})
    assert "exit 1" in go["command"]


def test_defaults_precedence_and_task_merge(tmp_path: Path) -> None:
    result = _import(
        tmp_path,
        """
default:
  default_args: {retries: 1, retry_delay_sec: 10}
  schedule: "@hourly"
  tasks:
    - {task_id: a, operator: airflow.operators.bash.BashOperator, bash_command: "echo {{ ds }}"}
one:
  default_args: {retries: 4}
  tasks:
    - {task_id: a, bash_command: "echo one"}
two:
  schedule: {__type__: datetime.timedelta, minutes: 30}
  tasks:
    - {task_id: b, operator: airflow.operators.empty.EmptyOperator}
""",
        defaults="default_args: {retry_delay_sec: 99, retry_exponential_backoff: true}\nschedule: '@daily'\n",
    )
    one, two = (w.document or {} for w in result.workflows)
    # (a backed-off delay is capped at Airflow's max_task_retry_delay, 24 h, not at 1 h)
    assert one["defaults"] == {
        "retries": 4, "retry_delay": "10s", "retry_backoff": 2.0, "max_retry_delay": "86400s"
    }  # fmt: skip
    assert one["tasks"]["a"] == {"type": "shell", "command": "echo one"}
    assert one["schedule"]["cron"] == "0 * * * *"
    assert two["schedule"]["cron"] == "rate(30 minutes)"
    assert set(two["tasks"]) == {"a", "b"}  # the default block's task too


def test_airflow2_hourly_dates_read_one_hour_back(tmp_path: Path) -> None:
    result = _import(
        tmp_path,
        """
old:
  schedule_interval: "@hourly"
  tasks:
    t: {operator: airflow.operators.bash.BashOperator, bash_command: "echo {{ ts }} {{ ds }}"}
""",
    )
    command = _tasks(result)["t"]["command"]
    assert command.count("minutes=-60") == 2


def test_task_params_win_over_dag_params(tmp_path: Path) -> None:
    result = _import(
        tmp_path,
        """
p:
  params: {region: eu, size: {default: 3, type: integer}}
  tasks:
    t:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: "echo {{ params.region }} {{ params.size }}"
      params: {region: us}
""",
    )
    document = result.workflows[0].document or {}
    assert document["params"] == {"region": "eu", "size": 3}
    assert document["tasks"]["t"]["params"] == {"region": "us"}
    assert result.complete


def test_unknown_arguments_and_templates_are_reported(tmp_path: Path) -> None:
    result = _import(
        tmp_path,
        """
x:
  tasks:
    t:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: "echo {{ conn.secret.host }}"
      executor_config: {pod_override: 1}
      weight_rule: absolute
      trigger_rule: none_failed_min_one_success
""",
    )
    text = _unmapped(result)
    for word in (
        "executor_config",
        "conn.secret.host",
        "weight_rule",
        "none_failed_min_one_success",
    ):
        assert word in text
    assert not result.complete
    # the template would be refused by validation: a failing placeholder stands in for it
    assert "validation refuses this: template reads 'conn'" in text
    assert "exit 1" in _tasks(result)["t"]["command"]


@pytest.mark.parametrize("rule", ["none_failed_min_one_success", "none_failed_or_skipped"])
def test_none_failed_min_one_success_is_kept(tmp_path: Path, rule: str) -> None:
    """Airflow's join after a branch (none_failed_min_one_success; Airflow 2's older name
    none_failed_or_skipped) runs when its upstream tasks all ended, none failed and one
    succeeded: Stratoflow's rule of that name (before it had one, the import wrote two gate
    tasks, and before that fell back to all_success, which skipped the join whenever a
    branch was skipped)."""
    bash = "airflow.operators.bash.BashOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            "a": {"operator": bash, "bash_command": "true"},
            "b": {"operator": bash, "bash_command": "true"},
            "join": {"operator": bash, "bash_command": "true", "dependencies": ["a", "b"],
                     "trigger_rule": rule},
            "one": {"operator": bash, "bash_command": "true", "dependencies": ["a"],
                    "trigger_rule": rule},
        }}}, sort_keys=False),
    )  # fmt: skip
    tasks = _tasks(result)
    assert set(tasks) == {"a", "b", "join", "one"}  # no gate tasks
    assert (tasks["join"]["depends_on"], tasks["join"]["trigger_rule"]) == (
        ["a", "b"],
        "none_failed_min_one_success",
    )
    assert tasks["one"]["trigger_rule"] == "none_failed_min_one_success"
    assert rule not in _unmapped(result)
    assert result.complete


def test_trigger_rule_always_runs_whatever_its_upstream_tasks_did(tmp_path: Path) -> None:
    """Airflow's ``always`` runs a task whatever its upstream tasks did (a cleanup, an alert):
    the import fell back to all_success, so it never ran after a failure. all_done runs it
    whatever they did too (once they ended, where ``always`` does not wait: reported)."""
    bash = "airflow.operators.bash.BashOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            "a": {"operator": bash, "bash_command": "false"},
            "cleanup": {"operator": bash, "bash_command": "true", "dependencies": ["a"],
                        "trigger_rule": "always"},
        }}}, sort_keys=False),
    )  # fmt: skip
    assert _tasks(result)["cleanup"]["trigger_rule"] == "all_done"
    (note,) = _notes(result, "cleanup")
    assert "all_done" in note
    assert "does not wait" in note


def test_http_operator_data_is_sent_as_requests_sends_it(tmp_path: Path) -> None:
    """HttpOperator hands ``data`` to requests: a mapping is form-encoded in the body
    (Content-Type application/x-www-form-urlencoded unless a header says otherwise), and a
    GET's goes in the query string. The import wrote the mapping as the http task's body,
    which Stratoflow sends as JSON: the server got another body, and a GET a body at all."""
    op = "airflow.providers.http.operators.http.HttpOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            "post": {"operator": op, "http_conn_id": "api", "endpoint": "/run", "method": "POST",
                     "data": {"data": "fake data", "day": "{{ ds }}", "skip": None, "n": 1}},
            "typed": {"operator": op, "http_conn_id": "api", "endpoint": "/run",
                      "headers": {"Content-Type": "application/json"}, "data": {"a": "b/c"}},
            "get": {"operator": op, "http_conn_id": "api", "endpoint": "/q?x=1", "method": "GET",
                    "data": {"q": "a b", "tags": ["t1", "t2"]}},
            "raw": {"operator": op, "http_conn_id": "api", "endpoint": "/run",
                    "data": '{"a": 1}'},
        }}}, sort_keys=False),
    )  # fmt: skip
    tasks = _tasks(result)
    post = tasks["post"]
    assert render(post["body"], {"ds": "2026-01-02"}) == "data=fake+data&day=2026-01-02&n=1"
    assert post["headers"] == {"Content-Type": "application/x-www-form-urlencoded"}
    # a Content-Type of the task's own is sent as it is (requests keeps it): the body is a form
    assert tasks["typed"]["headers"] == {"Content-Type": "application/json"}
    assert tasks["typed"]["body"] == "a=b%2Fc"
    get = tasks["get"]
    assert "body" not in get
    assert get["url"].endswith("/q?x=1&q=a+b&tags=t1&tags=t2")
    assert tasks["raw"]["body"] == '{"a": 1}'  # text is sent as it is


def test_airflow_variables_map_as_they_are_to_project_variables(tmp_path: Path) -> None:
    bash = "airflow.providers.standard.operators.bash.BashOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": [
            {"task_id": "copy", "operator": bash,
             "bash_command": "aws s3 cp f {{ var.value.bucket }}/{{ var.json.cfg.prefix }}"},
        ]}}),
    )  # fmt: skip
    assert result.complete, _unmapped(result)
    assert _tasks(result)["copy"]["command"] == (
        "aws s3 cp f {{ var.value.bucket }}/{{ var.json.cfg.prefix }}"
    )
    changed = " | ".join(n.message for n in result.all_notes() if n.severity != "unmapped")
    assert "reads the project's variable 'bucket'" in changed
    assert "stratoflow variables set cfg VALUE" in changed


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        ("echo {{ var.value.get('bucket', 'b') }}", "var.value.NAME | default("),
        ("echo {{ var.value['my-bucket'] }}", "a variable name is a letter"),
    ],
)
def test_airflow_variable_reads_stratoflow_cannot_render_are_reported(
    tmp_path: Path, command: str, needle: str
) -> None:
    bash = "airflow.providers.standard.operators.bash.BashOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump(
            {"x": {"tasks": [{"task_id": "t", "operator": bash, "bash_command": command}]}}
        ),
    )
    assert not result.complete
    assert needle in _unmapped(result)
    assert "exit 1" in _tasks(result)["t"]["command"]  # a placeholder stands in


def test_xcom_pull_of_a_literal_task_and_key_reads_its_output(tmp_path: Path) -> None:
    bash = "airflow.providers.standard.operators.bash.BashOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": [
            {"task_id": "a", "operator": bash, "bash_command": "echo"},
            {"task_id": "b-c", "operator": bash, "bash_command": "echo", "dependencies": ["a"]},
            {"task_id": "use", "operator": bash, "dependencies": ["b-c"],
             "bash_command": "echo {{ ti.xcom_pull(task_ids='a', key='rows') }} "
                             "{{ task_instance.xcom_pull('b-c', key=\"n\") | int }}"},
            {"task_id": "whole", "operator": bash, "dependencies": ["a"],
             "bash_command": "echo {{ ti.xcom_pull(task_ids='a') }}"},
        ]}}),
    )  # fmt: skip
    tasks = _tasks(result)
    assert tasks["use"]["command"] == (
        "echo {{ tasks.a.outputs.rows }} {{ tasks['b-c'].outputs.n | int }}"
    )
    changed = [n.message for n in result.all_notes() if n.severity == "changed"]
    assert any("reads {{ tasks.a.outputs.rows }}" in m for m in changed)
    # no key: Airflow's return_value is the whole return, which no output is
    assert "exit 1" in tasks["whole"]["command"]
    assert "validation refuses this: template reads 'ti'" in _unmapped(result)


def test_trigger_dag_run_sensor_and_sql_operators(tmp_path: Path) -> None:
    ops = "airflow.providers"
    result = _import(
        tmp_path,
        yaml.safe_dump({"etl": {"schedule": "@daily", "tasks": [
            {"task_id": "wait", "operator": f"{ops}.standard.sensors.external_task.ExternalTaskSensor",
             "external_dag_id": "Upstream", "external_task_id": "load", "poke_interval": 60,
             "timeout": 3600},
            {"task_id": "count", "operator": f"{ops}.common.sql.operators.sql.SQLExecuteQueryOperator",
             "conn_id": "warehouse", "sql": "select count(*) from t where d = %(day)s",
             "parameters": {"day": "x"}, "dependencies": ["wait"]},
            {"task_id": "pg", "operator": f"{ops}.postgres.operators.postgres.PostgresOperator",
             "postgres_conn_id": "pg", "sql": ["delete from t where d = '{{ ds }}'", "vacuum t"],
             "dependencies": ["wait"]},
            {"task_id": "athena", "operator": f"{ops}.amazon.aws.operators.athena.AthenaOperator",
             "query": "select 1", "database": "logs", "output_location": "s3://b/out/"},
            {"task_id": "redshift", "operator": f"{ops}.amazon.aws.operators.redshift_data.RedshiftDataOperator",
             "sql": "insert into t select 1", "database": "dev", "cluster_identifier": "c1"},
            {"task_id": "next", "operator": f"{ops}.standard.operators.trigger_dagrun.TriggerDagRunOperator",
             "trigger_dag_id": "downstream", "conf": {"day": "{{ ds }}", "n": 2},
             "wait_for_completion": True, "dependencies": ["count", "pg"]},
        ]}}),
    )  # fmt: skip
    tasks = _tasks(result)
    assert tasks["wait"] == {
        "type": "dependency", "all": [{"workflow": "upstream", "date": "today", "task": "load"}],
        "check_interval": "60s", "timeout": "3600s",
    }  # fmt: skip
    assert "same calendar day" in _unmapped(result)  # not exactly Airflow's: said
    assert tasks["count"] == {
        "type": "sql", "connection": "warehouse", "sql": "select count(*) from t where d = %(day)s",
        "outputs": "first_row", "parameters": {"day": "x"}, "depends_on": ["wait"],
    }  # fmt: skip
    assert tasks["pg"]["sql"] == "delete from t where d = '{{ ds }}';\nvacuum t"
    assert tasks["pg"]["outputs"] == "none"
    assert (tasks["athena"]["connection"], tasks["redshift"]["connection"]) == (
        "athena-logs", "redshift-c1"
    )  # fmt: skip
    notes = " | ".join(n.message for n in result.all_notes())
    assert "--type athena --setting database=logs --setting output_location=s3://b/out/" in notes
    assert tasks["next"]["type"] == "workflow"
    assert tasks["next"]["workflow"] == "downstream"
    assert tasks["next"]["params"]["n"] == 2
    assert "{{" in tasks["next"]["params"]["day"]


def test_a_sensor_without_a_timeout_gives_up_after_airflow_s_seven_days(tmp_path: Path) -> None:
    """BaseSensorOperator's timeout defaults to 7 days, after which the sensor fails; a
    dependency task without one waits until its outcome is certain: the import left it out,
    so a sensor on a DAG that never ran waited where Airflow's failed."""
    result = _import(
        tmp_path,
        yaml.safe_dump({"etl": {"schedule": "@daily", "tasks": [
            {"task_id": "wait", "operator": "airflow.sensors.external_task.ExternalTaskSensor",
             "external_dag_id": "up"},
        ]}}),
    )  # fmt: skip
    assert _tasks(result)["wait"]["timeout"] == "604800s"


def test_a_sensor_on_other_dates_is_reported(tmp_path: Path) -> None:
    result = _import(
        tmp_path,
        yaml.safe_dump({"etl": {"tasks": [
            {"task_id": "wait", "operator": "ExternalTaskSensor", "external_dag_id": "up",
             "execution_delta": "1:00:00"},
            {"task_id": "go", "operator": "BashOperator", "bash_command": "true",
             "dependencies": ["wait"]},
        ]}}),
    )  # fmt: skip
    assert _tasks(result)["wait"]["description"].startswith("PLACEHOLDER")
    assert "execution_delta" in _unmapped(result)


def test_pools_slots_and_priority_weights(tmp_path: Path) -> None:
    result = _import(
        tmp_path,
        """
x:
  default_args: {pool: Warehouse.Loads, priority_weight: 5}
  task_groups:
    g: {default_args: {priority_weight: 250}}
  tasks:
    a: {operator: airflow.operators.bash.BashOperator, bash_command: "true", pool_slots: 2}
    b: {operator: airflow.operators.bash.BashOperator, bash_command: "true", task_group_name: g}
    c: {operator: airflow.operators.bash.BashOperator, bash_command: "true", pool: api,
        priority_weight: -3, pool_slots: 20000}
    d: {operator: airflow.operators.bash.BashOperator, bash_command: "true",
        pool: default_pool, priority_weight: 1}
""",
    )
    tasks = _tasks(result)
    # default_args apply to every task; the pool name made a Stratoflow name (reported once)
    assert (tasks["a"]["pool"], tasks["a"]["pool_slots"], tasks["a"]["priority"]) == (
        "warehouse_loads",
        2,
        5,
    )
    # the group's default_args win over the DAG's; 250 clamped into -100..100
    assert (tasks["g__b"]["pool"], tasks["g__b"]["priority"]) == ("warehouse_loads", 100)
    assert (tasks["c"]["pool"], tasks["c"]["pool_slots"], tasks["c"]["priority"]) == (
        "api",
        10000,
        -3,
    )
    assert "pool" not in tasks["d"]  # Airflow's implicit pool is no pool
    assert tasks["d"]["priority"] == 1
    messages = [n.message for n in result.all_notes()]
    assert sum("'Warehouse.Loads' is named 'warehouse_loads'" in m for m in messages) == 1
    assert any("priority_weight 250" in m and "priority 100" in m for m in messages)
    assert any("pool_slots 20000" in m for m in messages)
    assert any("default_pool" in m for m in messages)
    creates = [m for m in messages if "refuses this workflow until the pool exists" in m]
    assert len(creates) == 2
    assert "tasks a, g__b use pool 'warehouse_loads'" in creates[0]
    assert "stratoflow pools set warehouse_loads --slots N" in creates[0]
    assert "stratoflow pools set api --slots N" in creates[1]
    assert result.complete  # all of it mapped


def test_weight_rule_is_reported_as_not_mapped(tmp_path: Path) -> None:
    result = _import(
        tmp_path,
        """
x:
  default_args: {weight_rule: upstream}
  tasks:
    a: {operator: airflow.operators.bash.BashOperator, bash_command: "true", priority_weight: 3}
""",
    )
    assert _tasks(result)["a"]["priority"] == 3
    assert "weight_rule" in _unmapped(result)
    assert "never summed" in _unmapped(result)


def test_max_active_runs_defaults_to_airflows_cap_and_says_so(tmp_path: Path) -> None:
    result = _import(
        tmp_path,
        """
unset:
  schedule_interval: "@daily"
  start_date: 2024-01-01
  tasks:
    t: {operator: airflow.operators.bash.BashOperator, bash_command: "echo"}
set:
  schedule_interval: "@daily"
  start_date: 2024-01-01
  max_active_runs: 3
  tasks:
    t: {operator: airflow.operators.bash.BashOperator, bash_command: "echo"}
manual:
  schedule: null
  max_active_runs: "many"
  tasks:
    t: {operator: airflow.operators.bash.BashOperator, bash_command: "echo"}
""",
    )
    unset, set_, manual = (w.document or {} for w in result.workflows)
    # Airflow 2 catches up from 2024 by default: uncapped, every missed day ran at once
    assert unset["schedule"]["catchup"] is True
    assert unset["max_active_runs"] == 16
    assert set_["max_active_runs"] == 3
    assert manual["max_active_runs"] == 16
    notes = {(n.workflow, n.field): n for n in result.all_notes() if n.field == "max_active_runs"}
    assert set(notes) == {("unset", "max_active_runs"), ("manual", "max_active_runs")}
    assert notes["unset", "max_active_runs"].severity == "changed"
    assert "16, Airflow's default" in notes["unset", "max_active_runs"].message
    assert notes["manual", "max_active_runs"].severity == "unmapped"
    assert "'many' is not a positive integer" in notes["manual", "max_active_runs"].message


TASK = "airflow.decorators.task"


def _notes(result: FileImport, task: str, severity: str = "unmapped") -> list[str]:
    return [n.message for n in result.all_notes() if n.task == task and n.severity == severity]


def test_a_plus_task_read_anywhere_in_the_arguments_is_a_dependency(tmp_path: Path) -> None:
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": [
            {"task_id": "first", "decorator": TASK, "python_callable": "sample.some_number"},
            {"task_id": "numbers", "decorator": TASK, "python_callable": "sample.numbers"},
            {"task_id": "arg", "decorator": TASK, "python_callable": "sample.double",
             "number": "+first"},
            {"task_id": "mapped", "decorator": TASK, "python_callable": "sample.multiply",
             "expand": {"a": "+numbers", "b": [1, 2]}, "partial": {"c": "+first"}},
            {"task_id": "params", "decorator": TASK, "python_callable": "sample.read",
             "params": "+first"},
            {"task_id": "nested", "operator": "airflow.operators.python.PythonOperator",
             "python_callable": "sample.read",
             "op_kwargs": {"n": {"deep": ["+numbers"]}, "text": "+nosuchtask"},
             "dependencies": ["first"]},
            {"task_id": "plain", "decorator": TASK, "python_callable": "sample.echo",
             "value": "+ not a task read", "other": "+nosuchtask"},
        ]}}),
    )  # fmt: skip
    tasks = _tasks(result)
    # GIVEN reads of a task's return value in arguments, expand/partial, params, op_kwargs
    # THEN each reading task runs after the task it reads (and after its dependencies)
    assert tasks["arg"]["depends_on"] == ["first"]
    assert tasks["mapped"]["depends_on"] == ["numbers", "first"]
    assert tasks["params"]["depends_on"] == ["first"]
    assert tasks["nested"]["depends_on"] == ["first", "numbers"]
    assert "depends_on" not in tasks["plain"]
    # AND a @task's own argument reading a whole return value gets the output a python task
    # keeps it in ('return_value', unless it returned a dict); elsewhere it is reported,
    # naming the dependency it still adds
    assert tasks["arg"]["params"] == {"number": "{{ tasks.first.outputs.return_value }}"}
    (arg,) = _notes(result, "arg", "changed")
    assert "'+first' reads the whole return value of task 'first'" in arg
    assert "the task depends on 'first'" in arg
    mapped = " | ".join(_notes(result, "mapped"))
    assert "expand.a: '+numbers' reads the whole return value of task 'numbers'" in mapped
    assert "partial.c: '+first'" in mapped
    (params,) = _notes(result, "params")
    assert "'+first' reads the whole return value of task 'first'" in params
    (nested,) = _notes(result, "nested")  # where dag-factory reads no task, text is text
    assert "op_kwargs.n.deep.0: '+numbers': dag-factory passes this text as it is" in nested
    assert tasks["nested"]["params"]["text"] == "+nosuchtask"
    # AND a text that is no read is a param as before; a read of no task is reported
    assert tasks["plain"]["params"]["value"] == "+ not a task read"
    assert "'+nosuchtask' names no other task of this DAG" in " | ".join(_notes(result, "plain"))
    assert not result.complete


def test_a_read_of_one_key_maps_to_that_output(tmp_path: Path) -> None:
    # GIVEN dag-factory's example_multiple_outputs_taskflow
    result = _import(
        tmp_path,
        """
example_multiple_outputs_taskflow:
  tasks:
    - task_id: collect
      multiple_outputs: true
      decorator: airflow.decorators.task
      python_callable: sample.collect
    - task_id: echo1
      decorator: airflow.decorators.task
      python_callable: sample.echo
      value: "+collect['key1']"
    - task_id: echo2
      decorator: airflow.decorators.task
      python_callable: sample.echo
      value: '+collect["key 2"]'
""",
    )
    tasks = _tasks(result)
    # THEN the reads are outputs of collect (its returned dict's keys), after it
    assert tasks["echo1"]["params"] == {"value": "{{ tasks.collect.outputs.key1 }}"}
    assert tasks["echo2"]["params"] == {"value": "{{ tasks.collect.outputs['key 2'] }}"}
    assert tasks["echo1"]["depends_on"] == tasks["echo2"]["depends_on"] == ["collect"]
    (note,) = _notes(result, "echo1", "changed")
    assert "reads output 'key1' of task 'collect'" in note
    # AND multiple_outputs, the operator's option, is no param of the callable's
    assert tasks["collect"] == {"type": "python", "callable": "sample:collect"}
    assert not [n for n in result.all_notes() if "multiple_outputs" in n.message]
    assert result.complete


def test_a_task_reading_a_task_left_out_is_left_out_too(tmp_path: Path) -> None:
    path = tmp_path / "dags.yml"
    path.write_text(
        """
x:
  tasks:
    collect: {operator: some.Unknown}
    echo: {decorator: airflow.decorators.task, python_callable: s.echo, value: "+collect['k']"}
    after: {operator: airflow.operators.bash.BashOperator, bash_command: "true",
            dependencies: [echo]}
"""
    )
    # WHEN a task with no equivalent is left out (--unmapped report)
    result = import_file(path, "dag-factory", unmapped="report")
    document = result.workflows[0].document
    # THEN the task reading its output is left out too (its read could not validate)
    assert document is not None
    assert set(document["tasks"]) == {"after"}
    parse_workflow(document)
    assert "it reads outputs of 'collect', left out" in " | ".join(_notes(result, "echo"))


def test_a_relative_start_date_is_reported_as_written(tmp_path: Path) -> None:
    result = _import(
        tmp_path,
        """
x:
  default_args: {start_date: 2 days, end_date: 3 days}
  schedule: "0 3 * * *"
  tasks:
    t: {operator: airflow.operators.bash.BashOperator, bash_command: "true"}
""",
    )
    text = _unmapped(result)
    assert "start_date '2 days' (relative) has no equivalent" in text
    assert "end_date '3 days' (relative)" in text


def test_a_start_date_written_as_a_datetime_object_is_the_schedule_s_start(
    tmp_path: Path,
) -> None:
    """dag-factory's ``__type__: datetime.datetime`` (keyword or ``__args__`` form, its
    documented way to write a start_date) is a date like any other: the import read it as a
    relative date, reported it so, and left the schedule without its start and end."""
    result = _import(
        tmp_path,
        """
x:
  default_args:
    start_date: {__type__: datetime.datetime, year: 2025, month: 2, day: 3, hour: 5}
    end_date: {__type__: datetime.date, __args__: [2025, 12, 31]}
  schedule: "0 */6 * * *"
  tasks:
    t: {operator: airflow.providers.standard.operators.bash.BashOperator, bash_command: "true"}
""",
    )
    schedule = (result.workflows[0].document or {})["schedule"]
    assert schedule["start"] == "2025-02-03T05:00:00"
    assert schedule["end"] == "2025-12-31T00:00:00"
    assert "relative" not in _unmapped(result)


def test_task_in_a_template_is_kept_and_its_rendering_is_said(tmp_path: Path) -> None:
    bash = "airflow.operators.bash.BashOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": [
            {"task_id": "whole", "operator": bash, "bash_command": "echo 'The task is {{ task }}'"},
            {"task_id": "id", "operator": bash, "bash_command": "echo {{ task.task_id }}"},
            {"task_id": "owner", "operator": bash, "bash_command": "echo {{ task.owner }}"},
        ]}}),
    )  # fmt: skip
    tasks = _tasks(result)
    # GIVEN {{ task }}, which Stratoflow has too (as {"id": ...}, not Airflow's operator)
    # THEN it is kept, and the report says how its rendering differs, not that it is missing
    assert tasks["whole"]["command"] == "echo 'The task is {{ task }}'"
    assert not _notes(result, "whole")
    (note,) = _notes(result, "whole", "changed")
    assert 'renders the mapping {"id": "<task id>"} as JSON' in note
    assert "<Task(<Operator>): <task id>>" in note
    assert tasks["id"]["command"] == "echo {{ task.id }}"
    # AND an attribute Stratoflow's task lacks is reported as failing the render
    (owner,) = _notes(result, "owner")
    assert "'task.owner': Stratoflow's task has only task.id" in owner


@pytest.mark.parametrize(
    ("interval", "cron_step", "first_logical"),
    [
        ("@daily", timedelta(days=1), datetime(2026, 12, 4, tzinfo=UTC)),
        ("@hourly", timedelta(hours=1), datetime(2026, 12, 4, tzinfo=UTC)),
        # weekly: Sunday midnight; the first interval starts at the first after start_date
        ("@weekly", timedelta(days=7), datetime(2026, 12, 6, tzinfo=UTC)),
    ],
)
def test_airflow2_runs_read_the_dates_airflow2_gives_them(
    tmp_path: Path, interval: str, cron_step: timedelta, first_logical: datetime
) -> None:
    """An Airflow 2 DAG runs the interval that starts at start_date (or at its schedule's
    first time after it) when the interval ends, and its macros read that start: the first
    run's ds is never a date before start_date, and ``macros.ds_add(ds, n)`` is that ds plus
    n days. The imported workflow's fire times, rendered as a task renders them, give the
    dates Airflow 2 would."""
    result = _import(
        tmp_path,
        f"""
dated:
  default_args: {{start_date: 2026-12-04, end_date: 2026-12-31}}
  schedule_interval: "{interval}"
  catchup: true
  tasks:
    t:
      operator: airflow.operators.bash.BashOperator
      bash_command: "{{{{ ds }}}} {{{{ macros.ds_add(ds, 0) }}}} {{{{ macros.ds_add(ds, 3) }}}} {{{{ macros.ds_add(ds, -1) }}}}"
""",
    )
    document = result.workflows[0].document or {}
    spec = parse_workflow(document)
    schedule = spec.workflow.schedule
    assert schedule is not None
    start, end = schedule_window(schedule)
    assert start is not None
    assert end is not None
    fires = parse_schedule(schedule.cron).fire_times(
        start - timedelta(seconds=1), start + 3 * cron_step, schedule.timezone, schedule.start
    )
    command = _tasks(result)["t"]["command"]
    for n, fire in enumerate(fires[:3]):
        logical = first_logical + n * cron_step  # the interval this fire time closes
        assert fire == logical + cron_step
        context = {"logical_date": fire.isoformat(), "ds": fire.strftime("%Y-%m-%d"),
                   "ds_nodash": fire.strftime("%Y%m%d"), "ts": fire.isoformat()}  # fmt: skip
        day = logical.date()
        expected = [day, day, day + timedelta(days=3), day - timedelta(days=1)]
        assert render(command, context).split() == [d.isoformat() for d in expected]
    # the last interval Airflow 2 runs starts at end_date: it closes one interval later
    assert end == datetime(2026, 12, 31, tzinfo=UTC) + cron_step


def test_an_airflow2_timedelta_schedule_runs_each_interval_when_it_ends(tmp_path: Path) -> None:
    """A timedelta schedule is Airflow 2's DeltaDataIntervalTimetable: intervals of that
    length from start_date, each run when it ends, its ds the interval's start. The import
    started the rate at start_date (one run too early, whose interval Airflow never runs)
    and said the interval was not of a fixed length, its macros reading the fire time."""
    result = _import(
        tmp_path,
        """
six_hourly:
  default_args: {start_date: 2026-12-04, end_date: 2026-12-05}
  schedule: {__type__: datetime.timedelta, hours: 6}
  catchup: true
  tasks:
    t: {operator: airflow.operators.bash.BashOperator, bash_command: "{{ ds }} {{ ts }}"}
""",
    )
    spec = parse_workflow(result.workflows[0].document or {})
    schedule = spec.workflow.schedule
    assert schedule is not None
    start, end = schedule_window(schedule)
    assert start is not None
    fires = parse_schedule(schedule.cron).fire_times(
        start - timedelta(days=1), start + timedelta(days=1), schedule.timezone, schedule.start
    )
    assert fires[0] == datetime(2026, 12, 4, 6, tzinfo=UTC)  # the first interval's end
    command = _tasks(result)["t"]["command"]
    for fire in fires[:5]:
        logical = fire - timedelta(hours=6)
        assert render(command, {"logical_date": fire.isoformat()}).split() == [
            logical.strftime("%Y-%m-%d"),
            logical.isoformat(),
        ]
    assert end == datetime(2026, 12, 5, 6, tzinfo=UTC)  # the interval starting at end_date
    assert not [n for n in result.all_notes() if "not a fixed length" in n.message]


@pytest.mark.parametrize(
    ("cron", "step"),
    [("*/15 * * * *", timedelta(minutes=15)), ("0 */6 * * *", timedelta(hours=6))],
)
def test_an_airflow2_cron_of_even_steps_reads_its_interval_start(
    tmp_path: Path, cron: str, step: timedelta
) -> None:
    """Every 15 minutes, or every 6 hours in UTC, are intervals of one length: an Airflow 2
    run's ds and ts are its interval's start, one step before its fire time. The import
    said their length varied and let the macros read the fire time: every ts was one step
    late, and the run at midnight got the new day's ds."""
    result = _import(
        tmp_path,
        f"""
stepped:
  default_args: {{start_date: 2026-12-04, end_date: 2026-12-06}}
  schedule_interval: "{cron}"
  catchup: true
  tasks:
    t: {{operator: airflow.operators.bash.BashOperator, bash_command: "{{{{ ds }}}} {{{{ ts }}}}"}}
""",
    )
    spec = parse_workflow(result.workflows[0].document or {})
    schedule = spec.workflow.schedule
    assert schedule is not None
    start, _ = schedule_window(schedule)
    assert start is not None
    fires = parse_schedule(schedule.cron).fire_times(
        start - timedelta(seconds=1), start + timedelta(days=1), schedule.timezone, schedule.start
    )
    assert fires[0] == datetime(2026, 12, 4, tzinfo=UTC) + step  # the first interval's end
    assert datetime(2026, 12, 5, tzinfo=UTC) in fires
    command = _tasks(result)["t"]["command"]
    for fire in fires:
        logical = fire - step
        assert render(command, {"logical_date": fire.isoformat()}).split() == [
            logical.strftime("%Y-%m-%d"),
            logical.isoformat(),
        ], fire
    assert "not a fixed length" not in _unmapped(result)


def test_an_airflow2_cron_of_uneven_intervals_fires_first_when_its_first_interval_ends(
    tmp_path: Path,
) -> None:
    """Airflow 2 runs the interval from the schedule's first time at or after start_date
    to the next one, when it ends, and the last one starting at or before end_date. For a
    cron whose intervals differ in length (monthly, every 5 minutes) the import kept
    start_date as the schedule's start: a run at the first time, whose interval Airflow
    never runs, and none for the interval starting at end_date."""
    result = _import(
        tmp_path,
        """
monthly:
  default_args: {start_date: 2024-11-11, end_date: 2025-03-15}
  schedule: "@monthly"
  catchup: true
  tasks:
    t: {operator: airflow.operators.bash.BashOperator, bash_command: "true"}
""",
    )
    schedule = (result.workflows[0].document or {})["schedule"]
    assert (schedule["start"], schedule["end"]) == ("2025-01-01T00:00:00", "2025-04-01T00:00:00")


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "UTC"])
def test_airflow2_dates_of_a_zoned_daily_dag_hold_across_dst_changes(
    tmp_path: Path, zone: str
) -> None:
    """Airflow 2's interval of a daily cron in a zone runs from the previous fire time, on
    that zone's clock, to this one: 23 or 25 hours long on a DST change. Its ds is that
    start's date in UTC. The import shifted the fire time by 24 hours in UTC, so a fire
    time within an hour of UTC midnight got a ds one day off on both change days."""
    result = _import(
        tmp_path,
        f"""
zoned:
  start_date: 2026-03-01
  end_date: 2026-11-10
  timezone: {zone}
  schedule_interval: "0 1 * * *"
  default_args: {{owner: me}}
  tasks:
    t:
      operator: airflow.operators.bash.BashOperator
      bash_command: "{{{{ ds }}}} {{{{ ds_nodash }}}} {{{{ yesterday_ds }}}} {{{{ macros.ds_add(ds, 3) }}}} {{{{ ts }}}}"
""",
    )
    document = result.workflows[0].document or {}
    spec = parse_workflow(document)
    schedule = spec.workflow.schedule
    assert schedule is not None
    assert schedule.timezone == zone
    command = _tasks(result)["t"]["command"]
    cron = parse_schedule(schedule.cron)
    for change in (
        datetime(2026, m, d, tzinfo=UTC) for m, d in ((3, 8), (3, 29), (10, 25), (11, 1))
    ):
        fires = cron.fire_times(
            change - timedelta(days=3), change + timedelta(days=3), schedule.timezone
        )
        assert len(fires) >= 5
        for before, fire in itertools.pairwise(fires):
            context = {"logical_date": fire.isoformat(), "ds": fire.strftime("%Y-%m-%d"),
                       "ds_nodash": fire.strftime("%Y%m%d"), "ts": fire.isoformat()}  # fmt: skip
            start = before.astimezone(UTC)  # the interval this fire time closes
            day = start.date()
            expected = [
                day.isoformat(),
                day.strftime("%Y%m%d"),
                (day - timedelta(days=1)).isoformat(),
                (day + timedelta(days=3)).isoformat(),
                start.isoformat(),
            ]
            assert render(command, context).split() == expected, fire


def test_default_args_timezone_is_the_schedule_s_and_a_start_offset_is_its_wall_time(
    tmp_path: Path,
) -> None:
    """dag-factory reads start_date in default_args.timezone (replacing any offset), and
    Airflow schedules the DAG in that zone: the import ran it in UTC, 8 hours off."""
    result = _import(
        tmp_path,
        """
zoned:
  default_args: {start_date: "2026-01-01T00:00:00+02:00", timezone: Asia/Shanghai}
  schedule: "0 1 * * *"
  tasks:
    t: {operator: airflow.providers.standard.operators.bash.BashOperator, bash_command: "true"}
""",
    )
    schedule = (result.workflows[0].document or {})["schedule"]
    assert schedule["timezone"] == "Asia/Shanghai"
    assert schedule["start"] == "2026-01-01T00:00:00"  # Airflow 3: no interval shift
    changed = [n.message for n in result.all_notes() if n.severity == "changed"]
    assert any("offset +0200 is dropped" in m and "Asia/Shanghai" in m for m in changed)


def test_a_dag_level_start_date_is_read_in_the_dag_s_zone_not_default_args(
    tmp_path: Path,
) -> None:
    result = _import(
        tmp_path,
        """
dag_level:
  start_date: 2026-01-01
  default_args: {timezone: Asia/Shanghai}
  schedule: "0 1 * * *"
  tasks:
    t: {operator: airflow.providers.standard.operators.bash.BashOperator, bash_command: "true"}
""",
    )
    assert (result.workflows[0].document or {})["schedule"]["timezone"] == "UTC"


def test_a_dag_level_zone_is_not_default_args_start_date_s(tmp_path: Path) -> None:
    """dag-factory reads the DAG-level ``timezone`` only for the DAG's own start_date and
    end_date; a start_date in default_args is read in default_args.timezone (UTC when it
    has none), and Airflow schedules the DAG in that start_date's zone. The import took the
    DAG-level zone, so the cron fired an hour or two off."""
    result = _import(
        tmp_path,
        """
zoned:
  timezone: Europe/Berlin
  default_args: {start_date: 2026-01-01}
  schedule: "30 6 * * 1-5"
  tasks:
    t: {operator: airflow.providers.standard.operators.bash.BashOperator, bash_command: "true"}
""",
    )
    schedule = (result.workflows[0].document or {})["schedule"]
    assert schedule["timezone"] == "UTC"
    assert schedule["start"] == "2026-01-01T00:00:00"
    assert "timezone Europe/Berlin" in _messages(result, "changed")


BASH = "airflow.providers.standard.operators.bash.BashOperator"


def _messages(result: FileImport, severity: str | None = None) -> str:
    return " | ".join(
        n.message for n in result.all_notes() if severity is None or n.severity == severity
    )


def test_task_group_default_args_and_trigger_rules_merge_as_airflow_merges_them(
    tmp_path: Path,
) -> None:
    """Airflow merges a task's arguments over its task group's default_args (an inner
    group's over its parent's) over the DAG's default_args; trigger_rule is one of them."""
    result = _import(
        tmp_path,
        yaml.safe_dump({"etl": {
            "default_args": {"trigger_rule": "all_done", "retries": 1, "retry_delay_sec": 10},
            "task_groups": {
                "loads": {"default_args": {"retries": 4, "retry_delay_sec": 120,
                                           "execution_timeout_secs": 600,
                                           "trigger_rule": "one_success"}},
                "inner": {"parent_group_name": "loads", "default_args": {"retries": 5}},
            },
            "tasks": {
                "a": {"operator": BASH, "bash_command": "exit 1"},
                "b": {"operator": BASH, "bash_command": "true", "dependencies": ["a"]},
                "c": {"operator": BASH, "bash_command": "true", "dependencies": ["a"],
                      "task_group_name": "loads"},
                "d": {"operator": BASH, "bash_command": "true", "task_group_name": "inner",
                      "retries": 2, "trigger_rule": "none_failed",
                      "retry_delay": {"__type__": "datetime.timedelta", "seconds": 7}},
                "e": {"operator": BASH, "bash_command": "true", "task_group_name": "inner"},
            },
        }}),
    )  # fmt: skip
    document = result.workflows[0].document or {}
    spec = parse_workflow(document).workflow
    effective = {
        tid: (spec.retries(tid), spec.retry_delay(tid).total_seconds(),
              (spec.timeout(tid) or timedelta()).total_seconds(), spec.tasks[tid].trigger_rule.value)
        for tid in spec.tasks
    }  # fmt: skip
    assert effective == {
        "a": (1, 10, 0, "all_done"),
        "b": (1, 10, 0, "all_done"),  # the DAG's default_args: b runs after a failed
        "loads__c": (4, 120, 600, "one_success"),  # the group's default_args win
        "loads__inner__d": (2, 7, 600, "none_failed"),  # the task's own win
        "loads__inner__e": (5, 120, 600, "one_success"),  # the inner group's over its parent's
    }
    assert result.complete, _unmapped(result)


def test_airflow_s_default_retry_delay_and_backoff_cap_are_written_out(tmp_path: Path) -> None:
    """Airflow's retry_delay defaults to 300 s (Stratoflow's to 30 s), and a backed-off delay
    is capped at max_task_retry_delay, 24 h by default (Stratoflow's default cap is 1 h)."""
    result = _import(
        tmp_path,
        yaml.safe_dump({
            "plain": {"default_args": {"retries": 3},
                      "tasks": {"t": {"operator": BASH, "bash_command": "true"}}},
            "backoff": {"default_args": {"retries": 3, "retry_exponential_backoff": True},
                        "tasks": {"t": {"operator": BASH, "bash_command": "true"},
                                  "capped": {"operator": BASH, "bash_command": "true",
                                             "max_retry_delay": 600}}},
            "long": {"tasks": {"t": {"operator": BASH, "bash_command": "true", "retries": 1,
                                     "retry_delay": 7200}}},
        }),
    )  # fmt: skip
    specs = {w.name: parse_workflow(w.document or {}).workflow for w in result.workflows}
    plain, backoff, long = specs["plain"], specs["backoff"], specs["long"]
    assert plain.retry_delay("t") == timedelta(seconds=300)
    assert (backoff.retry_delay("t"), backoff.retry_backoff("t")) == (timedelta(seconds=300), 2.0)
    assert backoff.max_retry_delay("t") == timedelta(hours=24)
    assert backoff.max_retry_delay("capped") == timedelta(seconds=600)
    # without backoff Airflow does not cap the delay: Stratoflow's 1 h cap must not either
    assert long.retry_delay("t") == timedelta(hours=2)
    assert long.max_retry_delay("t") >= timedelta(hours=2)
    changed = _messages(result, "changed")
    assert "300s, Airflow's default" in changed
    assert "86400s" in changed


def test_a_backoff_cap_below_the_retry_delay_waits_the_cap_as_airflow_does(
    tmp_path: Path,
) -> None:
    """With retry_exponential_backoff, Airflow's max_retry_delay caps every retry's delay,
    below retry_delay too (next_retry_datetime: min(max_retry_delay, backed-off delay)).
    The engine's cap no longer goes below retry_delay (a fixed retry_delay is what a user
    wrote): the import writes the delay Airflow waits, not one the cap no longer meets."""
    from stratoflow.engine._engine import retry_delay

    result = _import(
        tmp_path,
        yaml.safe_dump({
            "dag": {"default_args": {"retries": 3, "retry_exponential_backoff": True,
                                     "retry_delay": 600, "max_retry_delay": 300},
                    "tasks": {"t": {"operator": BASH, "bash_command": "true"},
                              "own": {"operator": BASH, "bash_command": "true",
                                      "retry_delay": 900, "max_retry_delay": 120},
                              "fixed": {"operator": BASH, "bash_command": "true",
                                        "retry_exponential_backoff": False}}},
        }),
    )  # fmt: skip
    (workflow,) = result.workflows
    spec = parse_workflow(workflow.document or {})
    waits = {
        tid: [retry_delay(spec, tid, n).total_seconds() for n in (1, 2, 3)]
        for tid in ("t", "own", "fixed")
    }
    # Airflow: min(300, 600 x 2^(n-1) and its jitter) = 300; min(120, 900 ...) = 120; and
    # without backoff no cap: 600 each time
    assert waits == {"t": [300] * 3, "own": [120] * 3, "fixed": [600] * 3}
    changed = _messages(result, "changed")
    assert (
        "retry_delay: 300s, the max_retry_delay Airflow caps every backed-off retry at, "
        "below its retry_delay (600s)" in changed
    )
    assert "retry_delay: 120s, the max_retry_delay Airflow caps" in changed


def _context(fire: datetime) -> dict[str, Any]:
    return {"logical_date": fire.isoformat(), "ds": fire.strftime("%Y-%m-%d"),
            "ds_nodash": fire.strftime("%Y%m%d"), "ts": fire.isoformat()}  # fmt: skip


def test_every_templated_field_reads_airflow_2_dates_statements_included(tmp_path: Path) -> None:
    """An Airflow 2 DAG's ds is the start of the interval: every field Airflow renders reads
    it so, in statements too ({% set day = ds %}); params, which Airflow does not render,
    stay text."""
    ops = "airflow.providers"
    result = _import(
        tmp_path,
        yaml.safe_dump({"old": {"schedule_interval": "@daily", "start_date": "2026-01-01",
                                "tasks": [
            {"task_id": "bash", "operator": "airflow.operators.bash.BashOperator",
             "bash_command": "{% set day = ds %}{% if ds_nodash > '2000' %}{{ day }}{% endif %} "
                             "{{ ds }}{# an Airflow comment #}",
             "params": {"literal": "{{ ds }}"}},
            {"task_id": "py", "operator": "airflow.operators.python.PythonOperator",
             "python_callable": "sample.record",
             "op_kwargs": {"day": "{{ ds }}", "nested": {"days": ["{{ ds_nodash }}"]}}},
            {"task_id": "flow", "decorator": "airflow.decorators.task",
             "python_callable": "sample.record", "day": "{{ ds }}",
             "nested": {"days": ["{{ ds_nodash }}"]}},
            {"task_id": "sql", "operator": f"{ops}.common.sql.operators.sql.SQLExecuteQueryOperator",
             "conn_id": "w", "sql": "select %(day)s", "parameters": {"day": "{{ ds }}"}},
            {"task_id": "http", "operator": f"{ops}.http.operators.http.HttpOperator",
             "endpoint": "https://example.com/{{ ds }}", "method": "POST",
             "data": {"day": "{{ ds }}", "nested": {"days": ["{{ ds_nodash }}"]}}},
            {"task_id": "fn", "operator": f"{ops}.amazon.aws.operators.lambda_function.LambdaInvokeFunctionOperator",
             "function_name": "f", "payload": {"day": "{{ ds }}", "nested": ["{{ ds_nodash }}"]}},
            {"task_id": "fn_text", "operator": f"{ops}.amazon.aws.operators.lambda_function.LambdaInvokeFunctionOperator",
             "function_name": "f", "payload": '{"day": "{{ ds }}"}'},
            {"task_id": "next", "operator": f"{ops}.standard.operators.trigger_dagrun.TriggerDagRunOperator",
             "trigger_dag_id": "child", "wait_for_completion": True,
             "conf": {"day": "{{ ds }}", "nested": {"days": ["{{ ds_nodash }}"]}}},
        ]}}),
    )  # fmt: skip
    tasks = _tasks(result)
    context = _context(datetime(2026, 3, 2, tzinfo=UTC))  # the run for 1 March's interval

    def rendered(value: Any) -> Any:
        return render_value(value, context)

    assert rendered(tasks["bash"]["command"]) == "2026-03-01 2026-03-01"
    assert rendered(tasks["bash"]["params"]) == {"literal": "{{ ds }}"}  # as Airflow passes it
    for tid in ("py", "flow"):
        params = rendered(tasks[tid]["params"])
        assert params["day"] == "2026-03-01", tid
        assert json.loads(params["nested"]) == {"days": ["20260301"]}, tid
    assert rendered(tasks["sql"]["parameters"]) == {"day": "2026-03-01"}
    assert rendered(tasks["http"]["url"]) == "https://example.com/2026-03-01"
    # requests form-encodes the mapping HttpOperator hands it: a nested mapping gives its keys
    assert rendered(tasks["http"]["body"]) == "day=2026-03-01&nested=days"
    assert rendered(tasks["fn"]["payload"]) == {"day": "2026-03-01", "nested": ["20260301"]}
    assert rendered(tasks["fn_text"]["payload"]) == {"day": "2026-03-01"}
    next_params = rendered(tasks["next"]["params"])
    assert next_params["day"] == "2026-03-01"
    assert json.loads(next_params["nested"]) == {"days": ["20260301"]}
    assert not any("PLACEHOLDER" in str(t.get("description")) for t in tasks.values())


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% for d in [ds, yesterday_ds] %}{{ d }} {% endfor %}", "2026-03-01 2026-02-28 "),
        ("{%- macro day(fmt=ds) -%}{{ fmt }}{%- endmacro %}{{ day() }}", "2026-03-01"),
        ("{% with d = ds_nodash %}{{ d }}{% endwith %}", "20260301"),
        ("{% raw %}{{ ds }}{% endraw %} {{ ds }}", "{{ ds }} 2026-03-01"),
        ("{# Airflow drops a comment: {{ ds }} #}{{ ds }}", "2026-03-01"),
        ("{% if macros.ds_add(ds, 1) == '2026-03-02' %}next{% endif %}", "next"),
    ],
)
def test_airflow_2_statements_read_airflow_2_dates(
    tmp_path: Path, template: str, expected: str
) -> None:
    result = _import(
        tmp_path,
        yaml.safe_dump({"old": {"schedule_interval": "@daily", "tasks": {
            "t": {"operator": "airflow.operators.bash.BashOperator", "bash_command": template},
        }}}),
    )  # fmt: skip
    assert result.complete, _unmapped(result)
    command = _tasks(result)["t"]["command"]
    assert render(command, _context(datetime(2026, 3, 2, tzinfo=UTC))) == expected


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        # Airflow 2: the run at 2026-03-02 03:00 is the interval from 2026-03-01 03:00
        ("airflow.operators.bash.BashOperator",
         "20260301T030000|20260301T030000+0000|2026-03-01T03:00:00+00:00|2026-03-02T03:00:00+00:00"),
        # Airflow 3: a cron's run is its fire time, its data interval empty
        ("airflow.providers.standard.operators.bash.BashOperator",
         "20260302T030000|20260302T030000+0000|2026-03-02T03:00:00+00:00|2026-03-02T03:00:00+00:00"),
    ],
)  # fmt: skip
def test_ts_nodash_and_the_data_interval_read_as_airflow_gives_them(
    tmp_path: Path, operator: str, expected: str
) -> None:
    """{{ ts_nodash }}, {{ data_interval_start }} and {{ data_interval_end }} are among the
    most used of Airflow's names; the import left them to validation, which refused them, so
    such a task was a failing placeholder."""
    result = _import(
        tmp_path,
        yaml.safe_dump({"d": {"schedule": "0 3 * * *", "start_date": "2026-01-01", "tasks": {
            "t": {"operator": operator, "bash_command": "{{ ts_nodash }}|{{ ts_nodash_with_tz }}"
                  "|{{ data_interval_start }}|{{ data_interval_end }}"},
        }}}),
    )  # fmt: skip
    assert result.complete, _unmapped(result)
    command = _tasks(result)["t"]["command"]
    assert render(command, _context(datetime(2026, 3, 2, 3, tzinfo=UTC))) == expected


@pytest.mark.parametrize(
    ("decorator", "major"),
    [("airflow.decorators.task", 2), ("airflow.sdk.definitions.decorators.task", 3),
     ("airflow.sdk.task", 3)],
)  # fmt: skip
def test_a_taskflow_only_dag_s_airflow_version_comes_from_its_decorators(
    tmp_path: Path, decorator: str, major: int
) -> None:
    result = _import(
        tmp_path,
        yaml.safe_dump({"flow": {"schedule": "@daily", "start_date": "2026-01-01", "tasks": {
            "t": {"decorator": decorator, "python_callable": "sample.record", "day": "{{ ds }}"},
        }}}),
    )  # fmt: skip
    document = result.workflows[0].document or {}
    schedule = document["schedule"]
    day = render(
        document["tasks"]["t"]["params"]["day"], _context(datetime(2026, 3, 2, tzinfo=UTC))
    )
    if major == 2:  # catchup by default, the first run at the end of start_date's interval
        assert (schedule.get("catchup"), schedule["start"], day) == (
            True, "2026-01-02T00:00:00", "2026-03-01"
        )  # fmt: skip
    else:
        assert (schedule.get("catchup"), schedule["start"], day) == (
            None, "2026-01-01T00:00:00", "2026-03-02"
        )  # fmt: skip
    (said,) = [n.message for n in result.all_notes() if "assumed" in n.message]
    assert f"Airflow {major} assumed" in said
    assert decorator in said


def test_the_corpus_taskflow_pair_reads_as_airflow_2_and_3() -> None:
    corpora = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "dag-factory"
    if not corpora.is_dir():
        corpora = Path("/work/shared/corpora/dag-factory")
    if not corpora.is_dir():
        pytest.skip("the corpora are not beside the checkout")
    old = import_file(corpora / "airflow2" / "example_taskflow.yml")
    new = import_file(corpora / "airflow3" / "example_taskflow.yml")
    assert "Airflow 2 assumed" in _messages(old)
    assert "Airflow 2 dates" in _messages(old)
    # the Airflow 3 twin uses airflow.sdk (and airflow.decorators for two tasks): Airflow 3
    assert "Airflow 3 assumed" in _messages(new)
    assert "Airflow 2 dates" not in _messages(new)


def test_a_dependency_on_a_group_is_on_its_leaves_when_dag_factory_sets_it(
    tmp_path: Path,
) -> None:
    """dag-factory sets dependencies in the order of its tasks, then of its groups, and
    Airflow makes a dependency on a group one on its leaves at that moment (the group's
    tasks with no downstream task in it). A group's cleanup task (all_done) is then its
    only leaf, and the task after the group runs when the work failed; the import made it
    wait for every task of the group, so it was upstream_failed."""
    bash = "airflow.operators.bash.BashOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"grp": {
            "task_groups": {"g": {}, "h": {"dependencies": ["g"]}},
            "tasks": {
                "early": {"operator": bash, "bash_command": "true", "dependencies": ["g"]},
                "work": {"operator": bash, "bash_command": "exit 1", "task_group_name": "g"},
                "cleanup": {"operator": bash, "bash_command": "true", "task_group_name": "g",
                            "dependencies": ["work"], "trigger_rule": "all_done"},
                "next": {"operator": bash, "bash_command": "true", "dependencies": ["g"]},
                "after": {"operator": bash, "bash_command": "true", "task_group_name": "h"},
            },
        }}, sort_keys=False),
    )  # fmt: skip
    tasks = _tasks(result)
    assert tasks["next"]["depends_on"] == ["g__cleanup"]
    assert tasks["h__after"]["depends_on"] == ["g__cleanup"]  # a group on a group: the same
    # set before the group's own dependency was: both of its tasks were leaves then
    assert tasks["early"]["depends_on"] == ["g__work", "g__cleanup"]


@pytest.mark.parametrize(
    ("dag", "where"),
    [
        ({"tasks": {"extract": {"operator": BASH, "bash_command": "true"},
                    "load": {"operator": BASH, "bash_command": "true",
                             "dependencies": ["extarct"]}}}, "task 'load'"),
        ({"task_groups": {"g": {"dependencies": ["nogroup"]}},
          "tasks": {"load": {"operator": BASH, "bash_command": "true",
                             "task_group_name": "g"}}}, "task group 'g'"),
    ],
)  # fmt: skip
def test_a_dependency_on_an_unknown_task_or_group_is_refused(
    tmp_path: Path, dag: dict[str, Any], where: str
) -> None:
    path = tmp_path / "dags.yml"
    path.write_text(yaml.safe_dump({"etl_daily": dag}))
    with pytest.raises(InvalidInput) as caught:
        import_file(path, "dag-factory")
    message = str(caught.value)
    assert "etl_daily" in message
    assert where in message
    assert ("'extarct'" if "load'" in where else "'nogroup'") in message


@pytest.mark.parametrize(
    ("dag", "name"),
    [
        ({"task_groups": {"g": {}},
          "tasks": {"load": {"operator": BASH, "bash_command": "true",
                             "task_group_name": "loads"}}}, "'loads'"),
        ({"task_groups": {"g": {"parent_group_name": "outer"}},
          "tasks": {"load": {"operator": BASH, "bash_command": "true",
                             "task_group_name": "g"}}}, "'outer'"),
        ({"task_groups": {"g": {"parent_group_name": "h"}, "h": {"parent_group_name": "g"}},
          "tasks": {"load": {"operator": BASH, "bash_command": "true",
                             "task_group_name": "g"}}}, "g -> h -> g"),
    ],
)  # fmt: skip
def test_a_task_or_group_in_an_unknown_group_is_refused(
    tmp_path: Path, dag: dict[str, Any], name: str
) -> None:
    """dag-factory looks a task's task_group_name (once the DAG has task groups) and a
    group's parent_group_name up among the DAG's groups, and refuses the DAG when it is not
    there; the import made the task (or group) a top-level one, and said nothing."""
    path = tmp_path / "dags.yml"
    path.write_text(yaml.safe_dump({"etl_daily": dag}))
    with pytest.raises(InvalidInput) as caught:
        import_file(path, "dag-factory")
    message = str(caught.value)
    assert "etl_daily" in message
    assert name in message
    assert "dag-factory refuses the DAG" in message


def test_a_group_name_in_a_dag_without_groups_is_ignored_as_dag_factory_ignores_it(
    tmp_path: Path,
) -> None:
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {"a": {"operator": BASH, "bash_command": "true",
                                              "task_group_name": "g"}}}}),
    )  # fmt: skip
    assert list(_tasks(result)) == ["a"]


def test_the_cli_refuses_a_dag_file_dag_factory_refuses_and_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dags.yml"
    path.write_text(yaml.safe_dump({"etl_daily": {"tasks": {
        "extract": {"operator": BASH, "bash_command": "true"},
        "load": {"operator": BASH, "bash_command": "true", "dependencies": ["extarct"]},
    }}}))  # fmt: skip
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["import", str(path), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "etl_daily" in result.output
    assert "'extarct'" in result.output
    assert not out.exists()


def test_a_defaults_file_that_does_not_parse_is_refused(tmp_path: Path) -> None:
    (tmp_path / "defaults.yml").write_text("default_args:\n  retries: [1\n")
    path = tmp_path / "dags.yml"
    path.write_text(
        yaml.safe_dump({"x": {"tasks": {"t": {"operator": BASH, "bash_command": "true"}}}})
    )
    with pytest.raises(InvalidInput) as caught:
        import_file(path, "dag-factory")
    assert "defaults.yml" in str(caught.value)
    assert "line" in str(caught.value)  # the parser's problem, where it is
    (tmp_path / "defaults.yml").write_text("- a list\n")
    with pytest.raises(InvalidInput, match=r"defaults\.yml.*not a mapping"):
        import_file(path, "dag-factory")


def test_dag_and_default_args_keys_left_out_are_noted_and_dagrun_timeout_is_the_sla(
    tmp_path: Path,
) -> None:
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {
            "dagrun_timeout_sec": 3600,
            "on_failure_callback_name": "notify", "on_failure_callback_file": "/dags/cb.py",
            "template_searchpath": ["/dags/sql"],
            "jinja_environment_kwargs": {"trim_blocks": True},
            "default_args": {"owner": "me", "on_retry_callback": "cb.retried",
                             "executor_config": {"k": 1}, "depends_on_past": True},
            "tasks": {"t": {"operator": BASH, "bash_command": "true"}},
        }, "y": {
            "dagrun_timeout": {"__type__": "datetime.timedelta", "hours": 2},
            "tasks": {"t": {"operator": BASH, "bash_command": "true"}},
        }}),
    )  # fmt: skip
    x, y = (w.document or {} for w in result.workflows)
    assert (x["sla"], y["sla"]) == ("3600s", "7200s")
    notes = [n for n in result.all_notes() if n.severity == "unmapped" and n.workflow == "x"]
    fields = {n.field for n in notes}
    for key in ("on_failure_callback_name", "on_failure_callback_file", "template_searchpath",
                "jinja_environment_kwargs", "default_args.owner", "default_args.on_retry_callback",
                "default_args.executor_config", "default_args.depends_on_past"):  # fmt: skip
        assert key in fields, key
    (sla,) = [n.message for n in notes if n.field == "dagrun_timeout_sec"]
    assert "sla" in sla
    assert "does not fail the run" in sla
    assert not [n for n in notes if n.task]  # default_args are noted once, at the DAG


def test_default_args_are_no_taskflow_arguments_and_fail_stop_stops_the_run(
    tmp_path: Path,
) -> None:
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {
            "fail_stop": True,
            "params": {"region": "eu", "size": 1},
            "default_args": {"executor_config": {"k": 1}, "params": {"size": 2}},
            "task_groups": {"g": {"default_args": {"queue": "fast"}}},
            "tasks": {
                "t": {"decorator": "airflow.decorators.task", "python_callable": "s.f", "n": 1},
                "u": {"operator": BASH, "bash_command": "true", "task_group_name": "g"},
                "v": {"operator": BASH, "bash_command": "true", "task_group_name": "g"},
            },
        }}),
    )  # fmt: skip
    document = result.workflows[0].document or {}
    assert document["on_failure"] == "stop"
    assert document["params"] == {"region": "eu", "size": 2}  # default_args' params win
    assert document["tasks"]["t"]["params"] == {"n": 1}  # not executor_config
    unmapped = [n for n in result.all_notes() if n.severity == "unmapped"]
    assert [n.field for n in unmapped if "queue" in n.message] == [
        "task_groups.g.default_args.queue"
    ]
    assert [n.field for n in unmapped if "executor_config" in n.message] == [
        "default_args.executor_config"
    ]


@pytest.mark.parametrize(
    ("retries", "expected", "severity"),
    [("3", 3, "changed"), (" 2 ", 2, "changed"), (2.0, 2, "changed"), ("three", 0, "unmapped")],
)
def test_retries_written_as_text_read_as_airflow_reads_them(
    tmp_path: Path, retries: Any, expected: int, severity: str
) -> None:
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"default_args": {"retries": retries},
                              "tasks": {"t": {"operator": BASH, "bash_command": "true",
                                              "retries": retries}}}}),
    )  # fmt: skip
    spec = parse_workflow(result.workflows[0].document or {}).workflow
    assert spec.retries("t") == expected
    assert repr(retries) in _messages(result, severity)


def test_every_renamed_task_is_noted(tmp_path: Path) -> None:
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {
            "task_groups": {"g": {}},
            "tasks": {
                "wait_for_producer_task:": {"operator": BASH, "bash_command": "true"},
                "a b": {"operator": BASH, "bash_command": "true"},
                "a_b": {"operator": BASH, "bash_command": "true"},
                "kept": {"operator": BASH, "bash_command": "true"},
                "inside": {"operator": BASH, "bash_command": "true", "task_group_name": "g"},
            },
        }}),
    )  # fmt: skip
    assert set(_tasks(result)) == {"wait_for_producer_task", "a_b", "a_b_2", "kept", "g__inside"}
    renames = {n.task: n.message for n in result.all_notes() if "is named" in n.message and n.task}
    assert set(renames) == {"wait_for_producer_task", "a_b", "a_b_2", "g__inside"}
    assert "'wait_for_producer_task:'" in renames["wait_for_producer_task"]
    assert "'g.inside'" in renames["g__inside"]  # Airflow's id of a task in a group


_AIRFLOW_OUTCOMES = ("succeeded", "failed", "skipped")


def _ended(tasks: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    """How each task of an imported workflow ends under the engine's trigger rules, given
    how its root tasks ended (a gate task that runs succeeds)."""
    from stratoflow.engine._engine import Readiness, readiness
    from stratoflow.engine._states import TaskState, Upstream
    from stratoflow.model import TriggerRule

    ended = dict(given)
    while len(ended) < len(tasks):
        for tid, body in tasks.items():
            deps = body.get("depends_on", [])
            if tid in ended or not all(d in ended for d in deps):
                continue
            up = Upstream()
            for d in deps:
                up = up.plus(TaskState(ended[d]))
            rule = TriggerRule(body.get("trigger_rule", "all_success"))
            decided = readiness(rule, up, len(deps))
            assert decided is not Readiness.WAIT, tid
            ended[tid] = {Readiness.RUN: "succeeded", Readiness.SKIP: "skipped",
                          Readiness.UPSTREAM_FAILED: "upstream_failed"}[decided]  # fmt: skip
    return ended


@pytest.mark.parametrize("width", [1, 2, 3])
@pytest.mark.parametrize("rule", ["one_done", "none_skipped"])
def test_one_done_and_none_skipped_end_as_in_airflow(tmp_path: Path, rule: str, width: int) -> None:
    """Airflow's one_done runs a task once one upstream task succeeded or failed (skipped
    when none did); none_skipped once they all ended and none was skipped (failed ones
    too), skipped as soon as one was. The import fell back to all_success (reported): a
    cleanup after failures never ran. Gate tasks built of Stratoflow's rules say them: for
    every way the upstream tasks can end, the task ends as Airflow ends it."""
    bash = "airflow.operators.bash.BashOperator"
    ups = [f"u{i}" for i in range(width)]
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            **{u: {"operator": bash, "bash_command": "true"} for u in ups},
            "j": {"operator": bash, "bash_command": "true", "dependencies": ups,
                  "trigger_rule": rule},
        }}}, sort_keys=False),
    )  # fmt: skip
    assert result.complete, _unmapped(result)
    tasks = _tasks(result)
    # (an upstream_failed one is no skip for none_skipped; one_done's is said below)
    ways = (*_AIRFLOW_OUTCOMES, "upstream_failed") if rule == "none_skipped" else _AIRFLOW_OUTCOMES
    for outcomes in itertools.product(ways, repeat=width):
        if rule == "one_done":
            airflow = "succeeded" if {"succeeded", "failed"} & set(outcomes) else "skipped"
        else:
            airflow = "skipped" if "skipped" in outcomes else "succeeded"
        assert _ended(tasks, dict(zip(ups, outcomes, strict=True)))["j"] == airflow, outcomes
    assert any(rule in n for n in _notes(result, "j", "changed"))


def test_one_done_after_a_task_that_can_end_upstream_failed_says_where_it_differs(
    tmp_path: Path,
) -> None:
    """Stratoflow's rules count upstream_failed as failed; Airflow's one_done does not count
    it: where an upstream task can end so, the difference is reported, naming it."""
    bash = "airflow.operators.bash.BashOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            "a": {"operator": bash, "bash_command": "true"},
            "b": {"operator": bash, "bash_command": "true", "dependencies": ["a"]},
            "c": {"operator": bash, "bash_command": "true"},
            "j": {"operator": bash, "bash_command": "true", "dependencies": ["b", "c"],
                  "trigger_rule": "one_done"},
        }}}, sort_keys=False),
    )  # fmt: skip
    (note,) = _notes(result, "j")
    assert "task b can end upstream_failed" in note
    assert "one_done" in note


def test_all_skipped_is_reported_as_needing_an_engine_rule(tmp_path: Path) -> None:
    bash = "airflow.operators.bash.BashOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            "a": {"operator": bash, "bash_command": "true"},
            "j": {"operator": bash, "bash_command": "true", "dependencies": ["a"],
                  "trigger_rule": "all_skipped"},
        }}}, sort_keys=False),
    )  # fmt: skip
    (note,) = _notes(result, "j")
    assert "all_skipped" in note
    assert "runs it when its upstream tasks all succeeded" in note
    assert "trigger rule of the engine's" in note


_NEIGHBOURS = (
    "{{ next_ds }} {{ next_ds_nodash }} {{ prev_ds }} {{ prev_ds_nodash }} "
    "{{ macros.ds_format(ds, '%Y-%m-%d', '%d/%m/%Y') }} "
    "{{ macros.ds_format(next_ds_nodash, '%Y%m%d', '%Y.%m.%d') }} "
    "{{ macros.ds_format(macros.ds_add(ds, 2), '%Y-%m-%d', '%m/%d') }} "
    "{{ macros.ds_add(prev_ds, -1) }} {{ next_execution_date }} {{ prev_execution_date }}"
)


@pytest.mark.parametrize(
    ("schedule", "zone"),
    [("@daily", "UTC"), ("@hourly", "UTC"), ("@weekly", "UTC"), ("0 1 * * *", "Europe/Berlin"),
     ("30 23 * * *", "America/New_York")],
)  # fmt: skip
def test_airflow2_next_and_prev_dates_and_ds_format_read_as_airflow_2_gives_them(
    tmp_path: Path, schedule: str, zone: str
) -> None:
    """Airflow 2's next_ds / prev_ds (and _nodash, next_/prev_execution_date) are the dates
    of the intervals after and before the run's, and macros.ds_format(d, in, out) rewrites a
    date text: the import reported them, so such a task was a failing placeholder. On a
    schedule of fixed intervals each has an exact equivalent (shift_date of the fire time),
    across DST changes too."""
    result = _import(
        tmp_path,
        yaml.safe_dump({"d": {
            "schedule_interval": schedule, "timezone": zone, "start_date": "2026-03-01",
            "tasks": {"t": {"operator": "airflow.operators.bash.BashOperator",
                            "bash_command": _NEIGHBOURS}},
        }}),
    )  # fmt: skip
    assert result.complete, _unmapped(result)
    spec = parse_workflow(result.workflows[0].document or {})
    assert spec.workflow.schedule is not None
    command = _tasks(result)["t"]["command"]
    cron = parse_schedule(spec.workflow.schedule.cron)
    for change in (datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)):
        fires = cron.fire_times(
            change - timedelta(days=15),
            change + timedelta(days=15),
            spec.workflow.schedule.timezone,
        )
        for before, start, fire in zip(fires, fires[1:], fires[2:], strict=False):
            prev, logical, nxt = (t.astimezone(UTC) for t in (before, start, fire))
            expected = [
                nxt.strftime("%Y-%m-%d"), nxt.strftime("%Y%m%d"),
                prev.strftime("%Y-%m-%d"), prev.strftime("%Y%m%d"),
                logical.strftime("%d/%m/%Y"), nxt.strftime("%Y.%m.%d"),
                (logical + timedelta(days=2)).strftime("%m/%d"),
                (prev - timedelta(days=1)).strftime("%Y-%m-%d"),
                nxt.isoformat(), prev.isoformat(),
            ]  # fmt: skip
            assert render(command, _context(fire.astimezone(UTC))).split() == expected, fire


def test_airflow2_next_and_prev_ds_of_a_dag_without_a_schedule_are_its_ds(
    tmp_path: Path,
) -> None:
    """Airflow 2 gives a run triggered by hand (every run of a DAG without a schedule) its
    own ds as next_ds and prev_ds."""
    result = _import(
        tmp_path,
        yaml.safe_dump({"d": {"schedule_interval": None, "tasks": {"t": {
            "operator": "airflow.operators.bash.BashOperator",
            "bash_command": "{{ next_ds }} {{ prev_ds_nodash }} {{ next_execution_date }}"}}}}),
    )  # fmt: skip
    assert result.complete, _unmapped(result)
    fire = datetime(2026, 3, 2, 15, 4, 5, tzinfo=UTC)
    rendered = render(_tasks(result)["t"]["command"], _context(fire))
    assert rendered == f"2026-03-02 20260302 {fire.isoformat()}"


_BASH2 = "airflow.operators.bash.BashOperator"
_BASH3 = "airflow.providers.standard.operators.bash.BashOperator"


@pytest.mark.parametrize(
    ("dag", "operator", "template", "said"),
    [
        # Airflow 3 removed next_ds and prev_ds: the task fails there too
        ({"schedule": "@daily"}, _BASH3, "{{ next_ds }}", "Airflow 3 has no next_ds"),
        ({"schedule": "@daily"}, _BASH3, "{{ macros.ds_add(prev_ds, 1) }}",
         "Airflow 3 has no prev_ds"),
        # Airflow 2, intervals of different lengths: no fixed shift to the next one
        ({"schedule_interval": "0 0 1 * *"}, _BASH2, "{{ prev_ds }}", "not of one length"),
        ({"schedule_interval": "@once"}, _BASH2, "{{ next_ds }}", "renders next_ds as None"),
        # ds_format with an input format the date is not in: Airflow fails the task
        ({"schedule_interval": "@daily"}, _BASH2, "{{ macros.ds_format(ds, '%Y%m%d', '%d') }}",
         "macros.ds_format parses ds as '%Y%m%d'"),
    ],
)  # fmt: skip
def test_next_and_prev_dates_without_an_exact_equivalent_are_reported(
    tmp_path: Path, dag: dict[str, Any], operator: str, template: str, said: str
) -> None:
    result = _import(
        tmp_path,
        yaml.safe_dump({"d": {**dag, "tasks": {"t": {
            "operator": operator, "bash_command": template}}}}),
    )  # fmt: skip
    assert said in _unmapped(result)
    assert "PLACEHOLDER" in str(_tasks(result)["t"].get("description"))
    if "Airflow 3" in said:  # the hint is a template as it is written
        assert "{{ logical_date | shift_date(fmt, tz, days=N) }}" in _unmapped(result)


def test_bash_env_without_append_env_says_airflow_runs_with_only_that_env(
    tmp_path: Path,
) -> None:
    """BashOperator's ``env`` without ``append_env: true`` is the whole environment of the
    command in Airflow (no PATH, HOME, ... of the worker); a task's ``env`` adds to what
    the task inherits, and the format has no way not to inherit: said, per task; with
    ``append_env: true`` it is what Airflow does."""
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            "only": {"operator": _BASH2, "bash_command": "echo $A", "env": {"A": "1"}},
            "added": {"operator": _BASH2, "bash_command": "echo $A", "env": {"A": "1"},
                      "append_env": True},
        }}}),
    )  # fmt: skip
    assert _tasks(result)["only"]["env"] == {"A": "1"}
    (note,) = [n for n in _notes(result, "only", "changed") if "env" in n]
    assert "only the variables of env" in note
    assert "no way not to inherit" in note
    assert not [n for n in _notes(result, "added", "changed") if "env" in n]


@pytest.mark.parametrize(
    ("args", "command", "said"),
    [
        ({}, "test -s in.csv || exit 99", "skip_on_exit_code's default 99"),
        ({"skip_on_exit_code": [3, 4]}, "./load", "skip_on_exit_code [3, 4]"),
        ({"skip_exit_code": 7}, "./load", "skip_exit_code 7"),
    ],
)
def test_a_bash_exit_code_airflow_reads_as_skip_is_reported(
    tmp_path: Path, args: dict[str, Any], command: str, said: str
) -> None:
    """Airflow skips a BashOperator task whose command exits 99 (skip_on_exit_code's
    default, or the codes it names); the format has no skip on an exit code, so the task
    fails there: a command that exits 99 itself, or codes named, are reported per task."""
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            "t": {"operator": _BASH2, "bash_command": command, **args},
        }}}),
    )  # fmt: skip
    (note,) = _notes(result, "t")
    assert said in note
    assert "fails the task" in note


def test_skip_on_exit_code_none_is_mapped_and_the_default_is_said_once(tmp_path: Path) -> None:
    """skip_on_exit_code: null makes 99 fail the task in Airflow too; the default 99 of
    commands that do not exit 99 themselves is said once for the workflow."""
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            "none": {"operator": _BASH2, "bash_command": "./load", "skip_on_exit_code": None},
            "a": {"operator": _BASH2, "bash_command": "./load"},
            "b": {"operator": _BASH2, "bash_command": "./load"},
        }}}),
    )  # fmt: skip
    assert result.complete, _unmapped(result)
    (note,) = [n.message for n in result.all_notes() if "exit" in n.message]
    assert "a, b" in note
    assert "99" in note


_CALLABLES = """
def with_context(ds, ti, run_id, logical_date, table="t"):
    return ds


def with_kwargs(table, **kwargs):
    return kwargs["ds"]


def plain(table):
    return table
"""


def test_context_arguments_a_callable_names_are_passed_as_airflow_passes_them(
    tmp_path: Path,
) -> None:
    """Airflow passes its context to a PythonOperator callable by parameter name (all of
    it to **kwargs). The import passed only op_kwargs: ``def f(ds, ti)`` failed with a
    missing argument. The callable's parameters are read from its source under the DAG
    file's folder: what Stratoflow has (ds, run_id, logical_date as text) becomes a task
    param, rendered as Airflow 2 dates; what it has not (ti) is reported, naming it."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "etl.py").write_text(_CALLABLES)
    (tmp_path / "etl_file.py").write_text(_CALLABLES)
    py = "airflow.operators.python.PythonOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"schedule_interval": "@daily", "tasks": {
            "named": {"operator": py, "python_callable": "jobs.etl.with_context"},
            "kwargs": {"operator": py, "python_callable_name": "with_kwargs",
                       "python_callable_file": "$CONFIG_ROOT_DIR/etl_file.py",
                       "op_kwargs": {"table": "sales", "ds": "mine"}},
            "plain": {"operator": py, "python_callable": "jobs.etl.plain",
                      "op_kwargs": {"table": "sales"}},
        }}}),
    )  # fmt: skip
    tasks = _tasks(result)
    fire = datetime(2026, 3, 2, tzinfo=UTC)
    context = {**_context(fire), "run": {"id": "r1"}}
    named = render_value(tasks["named"]["params"], context)
    assert named == {"ds": "2026-03-01", "run_id": "r1",
                     "logical_date": "2026-03-01T00:00:00+00:00"}  # fmt: skip
    kwargs = render_value(tasks["kwargs"]["params"], context)
    assert kwargs["table"] == "sales"
    assert kwargs["ds"] == "mine"  # op_kwargs win over the context, as in Airflow
    assert kwargs["run_id"] == "r1"
    assert tasks["plain"]["params"] == {"table": "sales"}
    (missing,) = _notes(result, "named")
    assert "'ti'" in missing
    assert any("datetime" in n for n in _notes(result, "named", "changed"))
    assert any("ti" in n and "**kwargs" in n for n in _notes(result, "kwargs", "changed"))


def test_a_callable_whose_source_is_not_found_is_said_once(tmp_path: Path) -> None:
    py = "airflow.operators.python.PythonOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            "a": {"operator": py, "python_callable": "elsewhere.f"},
            "b": {"operator": py, "python_callable": "elsewhere.g"},
        }}}),
    )  # fmt: skip
    (note,) = [n.message for n in result.all_notes() if "context" in n.message]
    assert "a, b" in note


@pytest.mark.parametrize("rule", ["none_failed_min_one_success", "none_skipped", "one_done"])
def test_gates_of_a_task_with_the_longest_id_are_task_ids(tmp_path: Path, rule: str) -> None:
    """A gate is named after its task: for a task id of 128 characters (the most), the
    gate's name was longer than a task id may be, and the whole workflow was not written."""
    long = "j" * 128
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            "a": {"operator": _BASH2, "bash_command": "true"},
            "b": {"operator": _BASH2, "bash_command": "true"},
            long: {"operator": _BASH2, "bash_command": "true", "dependencies": ["a", "b"],
                   "trigger_rule": rule},
        }}}),
    )  # fmt: skip
    tasks = _tasks(result)
    assert long in tasks
    assert all(len(t) <= 128 for t in tasks)
    assert len(tasks[long]["depends_on"]) >= 2


def test_a_bash_env_that_is_not_a_mapping_is_reported_not_dropped(tmp_path: Path) -> None:
    """BashOperator's ``env`` is a template field: a DAG may give it as one template (a
    Variable's JSON, rendered to a dict with ``render_template_as_native_obj``). The task
    has no such env here: its command would run without those variables, so it is said,
    not dropped without a word."""
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"render_template_as_native_obj": True, "tasks": {
            "t": {"operator": _BASH2, "bash_command": "echo $A", "env": "{{ var.json.t_env }}"},
        }}}),
    )  # fmt: skip
    assert "env" not in _tasks(result)["t"]
    (note,) = [n for n in _notes(result, "t") if "env" in n]
    assert "{{ var.json.t_env }}" in note


def test_op_kwargs_that_are_not_a_mapping_are_reported_not_dropped(tmp_path: Path) -> None:
    """``op_kwargs`` is a template field too: given as one template (or anything but a
    mapping) it has no task params here, and the callable would be called without them:
    said, not dropped without a word."""
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            "t": {"operator": "airflow.operators.python.PythonOperator",
                  "python_callable": "mymod.run", "op_kwargs": "{{ var.json.t_args }}"},
        }}}),
    )  # fmt: skip
    assert "params" not in _tasks(result)["t"]
    (note,) = [n for n in _notes(result, "t") if "op_kwargs" in n]
    assert "{{ var.json.t_args }}" in note


def test_a_run_that_airflow_ends_by_its_leaves_is_said_to_fail_on_any_failure(
    tmp_path: Path,
) -> None:
    """Airflow sets a run's state from its leaf tasks: a failed task followed by a cleanup
    (all_done) or an alert (one_failed) that are the leaves, and succeed, leaves the run a
    success there. Stratoflow fails a run in which any task failed, so its failure alerts
    fire and a backfill lane stops where Airflow's did not: the import said nothing."""
    result = _import(
        tmp_path,
        """
handled:
  tasks:
    work: {operator: airflow.operators.bash.BashOperator, bash_command: "exit 3"}
    cleanup:
      operator: airflow.operators.bash.BashOperator
      bash_command: "true"
      trigger_rule: all_done
      dependencies: [work]
    alert:
      operator: airflow.operators.bash.BashOperator
      bash_command: "true"
      trigger_rule: one_failed
      dependencies: [work]
plain:
  tasks:
    a: {operator: airflow.operators.bash.BashOperator, bash_command: "true"}
    b: {operator: airflow.operators.bash.BashOperator, bash_command: "true", dependencies: [a]}
""",
    )
    handled = [n.message for n in result.workflows[0].notes if "leaf tasks" in n.message]
    assert len(handled) == 1
    assert "cleanup (all_done), alert (one_failed)" in handled[0]
    assert "leaf tasks cleanup, alert" in handled[0]
    # a DAG where every failure reaches a leaf ends failed in both: nothing to say
    assert not [n for n in result.workflows[1].notes if "leaf tasks" in n.message]


def test_a_bash_command_naming_a_script_file_runs_the_file_s_content(tmp_path: Path) -> None:
    """Airflow reads a bash_command ending in .sh or .bash as a template file (under the
    DAG's folder) and runs its rendered content. The import wrote the path as the command,
    which the task ran from its own empty work directory: not found, the task failed."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "load.sh").write_text('echo "loading {{ ds }}"\nexit 0\n')
    result = _import(
        tmp_path,
        f"""
scripted:
  schedule: "@daily"
  default_args: {{start_date: 2026-01-01}}
  tasks:
    load: {{operator: {BASH}, bash_command: scripts/load.sh}}
    gone: {{operator: {BASH}, bash_command: /opt/scripts/gone.bash}}
    spaced: {{operator: {BASH}, bash_command: "scripts/load.sh "}}
""",
    )
    tasks = _tasks(result)
    assert tasks["load"]["command"] == 'echo "loading {{ ds }}"\nexit 0\n'
    assert tasks["spaced"]["command"] == "scripts/load.sh "  # a path Airflow runs as it is
    assert tasks["gone"]["command"] == "/opt/scripts/gone.bash"
    unmapped = _unmapped(result)
    assert "'/opt/scripts/gone.bash'" in unmapped
    assert "template file" in unmapped
    assert "load.sh" not in unmapped


def test_a_script_file_is_read_only_under_the_dag_s_folder(tmp_path: Path) -> None:
    """A hostile DAG file must not make the import copy another file into a workflow: '..',
    a symlink out of the folder and a FIFO are reported, never read."""
    import os

    (tmp_path / "outside.sh").write_text("echo secret\n")
    dags = tmp_path / "dags"
    (dags / "sub").mkdir(parents=True)
    (dags / "link.sh").symlink_to(tmp_path / "outside.sh")
    os.mkfifo(dags / "pipe.sh")
    tasks = "".join(
        f"    {name}: {{operator: {BASH}, bash_command: {path}}}\n"
        for name, path in [("up", "../outside.sh"), ("subup", "sub/../../outside.sh"),
                           ("link", "link.sh"), ("pipe", "pipe.sh")]
    )  # fmt: skip
    result = _import(dags, f"d:\n  schedule: '@daily'\n  tasks:\n{tasks}")
    assert "secret" not in json.dumps(_tasks(result))
    unmapped = _unmapped(result)
    for path in ("../outside.sh", "link.sh", "pipe.sh"):
        assert f"{path!r}" in unmapped


def test_a_script_file_is_read_whole_or_not_at_all(tmp_path: Path) -> None:
    """A script over the 1 MiB the import reads of one was cut there and its head made the
    command: the task would have run part of the script. It is reported instead."""
    line = "echo 0123456789abcdef0123456789abcdef\n"
    (tmp_path / "big.sh").write_text(line * ((1 << 20) // len(line) + 1))
    result = _import(
        tmp_path,
        f"d:\n  schedule: '@daily'\n  tasks:\n    t: {{operator: {BASH}, bash_command: big.sh}}\n",
    )
    assert _tasks(result)["t"]["command"] == "big.sh"
    assert "'big.sh'" in _unmapped(result)
    assert "1,048,576 bytes" in _unmapped(result)


def test_the_script_files_a_dag_factory_file_reads_are_bounded_in_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each task naming the same 1 MiB script read it again and kept its text: a file of
    thousands of such tasks (or DAGs) read and held gigabytes. What one file's DAGs read in
    all is bounded; past it a script is reported, not read."""
    from stratoflow.importers import _dagfactory

    read: list[int] = []
    real = _dagfactory.read_include

    def counted(path: Path, limit: int, *, follow: bool = True) -> bytes:
        data = real(path, limit, follow=follow)
        read.append(len(data))
        return data

    monkeypatch.setattr(_dagfactory, "read_include", counted)
    line = "echo 0123456789abcdef0123456789abcdef\n"
    (tmp_path / "big.sh").write_text(line * ((1 << 20) // len(line) - 1))
    dags = "".join(
        f"d{i}:\n  schedule: '@daily'\n  tasks:\n"
        f"    a: {{operator: {BASH}, bash_command: big.sh}}\n"
        f"    b: {{operator: {BASH}, bash_command: big.sh}}\n"
        for i in range(12)
    )
    (tmp_path / "dags.yml").write_text(dags)
    result = import_file(tmp_path / "dags.yml", "dag-factory")
    # of the 24 MiB its 24 tasks name: 16 MiB, and the head of the one that did not fit
    assert sum(read) <= (16 << 20) + (1 << 20) + 1
    assert len(read) <= 17
    assert "scripts" in _unmapped(result)


def test_op_args_fill_the_callable_s_parameters_in_order(tmp_path: Path) -> None:
    """Airflow calls a PythonOperator callable with op_args as its first positional
    arguments. The import reported op_args as not mapped, and ``def plain(table)`` was
    called without its argument. Where the callable's source is under the DAG file's
    folder, each of op_args is the task param of the parameter it fills (rendered as
    Airflow renders it); without the source, or past the named parameters, it stays
    reported."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "etl.py").write_text(_CALLABLES)
    py = "airflow.operators.python.PythonOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"schedule_interval": "@daily", "tasks": {
            "plain": {"operator": py, "python_callable": "jobs.etl.plain",
                      "op_args": ["sales_{{ ds_nodash }}"]},
            "too_many": {"operator": py, "python_callable": "jobs.etl.plain",
                         "op_args": ["a", "b"]},
            "unknown": {"operator": py, "python_callable": "elsewhere.mod.f", "op_args": [1]},
        }}}),
    )  # fmt: skip
    tasks = _tasks(result)
    fire = datetime(2026, 3, 2, tzinfo=UTC)
    assert render_value(tasks["plain"]["params"], _context(fire)) == {"table": "sales_20260301"}
    assert not [n for n in _notes(result, "plain") if "op_args" in n]
    assert any("op_args" in n for n in _notes(result, "too_many"))
    assert "params" not in tasks["too_many"]
    assert any("op_args" in n for n in _notes(result, "unknown"))


def test_a_callable_defined_twice_is_called_as_its_last_definition(tmp_path: Path) -> None:
    """A module that defines a function twice is imported with the last definition (the
    name is bound again); the import read the first one's parameters, so op_args that fill
    the last one's were reported as more than the callable takes, and left out."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "etl.py").write_text(
        "def load(table):\n    return table\n\n\ndef load(table, day):\n    return day\n"
    )
    py = "airflow.operators.python.PythonOperator"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"schedule_interval": "@daily", "tasks": {
            "t": {"operator": py, "python_callable": "jobs.etl.load", "op_args": ["a", "b"]},
        }}}),
    )  # fmt: skip
    assert _tasks(result)["t"]["params"] == {"table": "a", "day": "b"}
    assert not [n for n in _notes(result, "t") if "op_args" in n]


def test_an_external_task_sensor_s_states_are_each_said_once(tmp_path: Path) -> None:
    """allowed_states and failed_states were reported twice (what the dependency task does
    instead, then 'argument ... is not mapped'); Airflow's default, allowed_states
    [success], is what the dependency task waits for, and needs no word."""
    sensor = "airflow.providers.standard.sensors.external_task.ExternalTaskSensor"
    result = _import(
        tmp_path,
        yaml.safe_dump({"x": {"tasks": {
            "wait": {"operator": sensor, "external_dag_id": "up", "allowed_states": ["success", "skipped"],
                     "failed_states": ["failed"]},
            "plain": {"operator": sensor, "external_dag_id": "up", "allowed_states": ["success"]},
        }}}),
    )  # fmt: skip
    wait = _notes(result, "wait")
    assert len([n for n in wait if "allowed_states" in n]) == 1
    (failed,) = [n for n in wait if "failed_states" in n]
    assert "timeout" in failed
    assert not [n for n in _notes(result, "plain") if "states" in n]
