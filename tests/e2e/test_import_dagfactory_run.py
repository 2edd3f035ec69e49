"""Imported dag-factory DAGs run on the local runtime as they ran in Airflow: `stratoflow
import` then `stratoflow run` of the file it wrote (retries, timeouts and trigger rules from
task groups' default_args, Airflow 2's dates in every templated field, TaskFlow DAGs read as
the Airflow version their decorators name), or, where the run would take minutes, the same
engine driven step by step (Airflow's 300 s retry delay)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.cli import main
from stratoflow.engine import TaskState

pytestmark = pytest.mark.e2e
BASH = "airflow.providers.standard.operators.bash.BashOperator"
# the interval of 1 March, which an Airflow 2 daily DAG runs once it ends, on 2 March
FIRE = "2026-03-02T00:00:00+00:00"
SAMPLE = """
def record(day, nested):
    return {"day": day, "nested": nested}
"""


def _import(tmp_path: Path, dags: dict[str, Any]) -> Path:
    source = tmp_path / "dags.yml"
    source.write_text(yaml.safe_dump(dags))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["import", str(source), "-o", str(out)])
    assert result.exit_code in (0, 1), result.output
    (name,) = dags
    return out / f"{name}.yaml"


def _run(tmp_path: Path, workflow: Path, *args: str) -> dict[str, Any]:
    argv = ["run", str(workflow), "--home", str(tmp_path / "home"), "--output", "json", *args]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code in (0, 1), result.output
    body: dict[str, Any] = json.loads(result.output)
    return body


def test_group_default_args_give_retries_timeouts_and_trigger_rules(tmp_path: Path) -> None:
    # GIVEN the DAG's default_args say all_done, its group `loads` one_success with retries
    # and a timeout
    workflow = _import(tmp_path, {"etl": {
        "default_args": {"trigger_rule": "all_done"},
        "task_groups": {"loads": {"default_args": {
            "retries": 1, "retry_delay_sec": 1, "execution_timeout_secs": 1,
            "trigger_rule": "one_success"}}},
        "tasks": {
            "a": {"operator": BASH, "bash_command": "exit 1"},
            "b": {"operator": BASH, "bash_command": "echo ran", "dependencies": ["a"]},
            "slow": {"operator": BASH, "bash_command": "sleep 20", "task_group_name": "loads",
                     "dependencies": ["b"]},
            "after": {"operator": BASH, "bash_command": "echo ran", "task_group_name": "loads",
                      "dependencies": ["b", "slow"]},
        },
    }})  # fmt: skip
    # WHEN it runs
    body = _run(tmp_path, workflow)
    tasks = body["tasks"]
    # THEN b ran after a failed (all_done), slow timed out twice (1 retry, 1 s timeout), and
    # after ran on b's success alone (one_success)
    assert {t: tasks[t]["state"] for t in tasks} == {
        "a": "failed", "b": "succeeded", "loads__slow": "failed", "loads__after": "succeeded"
    }  # fmt: skip
    assert tasks["loads__slow"]["attempts"] == 2
    assert tasks["loads__slow"]["error"] == "timed out after 0:00:01"


def test_retries_written_as_text_retry(tmp_path: Path) -> None:
    workflow = _import(tmp_path, {"x": {"tasks": {"t": {
        "operator": BASH, "bash_command": "exit 1", "retries": "2", "retry_delay_sec": 0,
    }}}})  # fmt: skip
    body = _run(tmp_path, workflow)
    assert (body["tasks"]["t"]["state"], body["tasks"]["t"]["attempts"]) == ("failed", 3)


def test_a_retry_waits_airflow_s_default_300_seconds(tmp_path: Path) -> None:
    workflow = _import(tmp_path, {"x": {"default_args": {"retries": 3}, "tasks": {
        "t": {"operator": BASH, "bash_command": "exit 1"},
    }}})  # fmt: skip
    runtime = LocalRuntime(tmp_path / "home")
    try:
        version, _ = runtime.scheduler.apply(workflow.read_text())
        run, _ = runtime.scheduler.trigger(version.project, version.name)
        deadline = time.monotonic() + 30

        def waiting() -> bool:
            (task,) = runtime.store.get_tasks(run.id)
            return task.state is TaskState.UP_FOR_RETRY or time.monotonic() > deadline

        runtime.run_until(waiting)
        (task,) = runtime.store.get_tasks(run.id)
        assert task.state is TaskState.UP_FOR_RETRY
        (attempt,) = runtime.store.list_attempts(run.id, "t")
        assert task.ready_at is not None
        assert attempt.ended_at is not None
        assert (task.ready_at - attempt.ended_at).total_seconds() == pytest.approx(300, abs=1)
        runtime.scheduler.stop(run.id)
    finally:
        runtime.close()


def test_airflow_2_dates_in_statements_and_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where python tasks import dfsample from
    (tmp_path / "dfsample.py").write_text(SAMPLE)
    workflow = _import(tmp_path, {"old": {
        "schedule_interval": "@daily", "start_date": "2026-01-01", "catchup": False,
        "tasks": {
            "bash": {"operator": "airflow.operators.bash.BashOperator",
                     "bash_command": '{% set day = ds %}echo "set={{ day }}" >> "$STRATOFLOW_OUTPUT"; '
                                     'echo "ds={{ ds }}" >> "$STRATOFLOW_OUTPUT"'},
            "py": {"operator": "airflow.operators.python.PythonOperator",
                   "python_callable": "dfsample.record",
                   "op_kwargs": {"day": "{{ ds }}", "nested": ["{{ ds_nodash }}"]}},
        },
    }})  # fmt: skip
    body = _run(tmp_path, workflow, "--logical-date", FIRE)
    assert body["run"]["state"] == "succeeded", body
    assert body["tasks"]["bash"]["outputs"] == {"set": "2026-03-01", "ds": "2026-03-01"}
    assert body["tasks"]["py"]["outputs"] == {"day": "2026-03-01", "nested": '["20260301"]'}


def test_a_taskflow_dag_of_airflow_2_reads_airflow_2_dates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dfsample.py").write_text(SAMPLE)
    workflow = _import(tmp_path, {"flow": {
        "schedule": "@daily", "start_date": "2026-01-01", "catchup": False,
        "tasks": {"t": {"decorator": "airflow.decorators.task",
                        "python_callable": "dfsample.record", "day": "{{ ds }}",
                        "nested": "{{ ds_nodash }}"}},
    }})  # fmt: skip
    body = _run(tmp_path, workflow, "--logical-date", FIRE)
    assert body["tasks"]["t"]["outputs"] == {"day": "2026-03-01", "nested": "20260301"}
