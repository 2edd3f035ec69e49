"""Every workflow file of the public corpora (shared/corpora: pydolphinscheduler's
examples/yaml_define and dag-factory's dev/dags) imports: each workflow is written as YAML that
Stratoflow's own loader accepts, and what did not map is in the report, task by task. The
hand-written DolphinScheduler exports (1.x, 3.0-3.2, 3.3 key names) import too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from stratoflow.errors import InvalidInput
from stratoflow.importers import FileImport, import_file, to_yaml
from stratoflow.model import load_workflow, parse_workflow

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "importers"


def _corpora() -> Path | None:
    for candidate in (ROOT.parent / "shared" / "corpora", Path("/work/shared/corpora")):
        if candidate.is_dir():
            return candidate
    return None


CORPORA = _corpora()
# files of the corpora that are not workflows, and why
NOT_WORKFLOWS = {
    "dag-factory/defaults.yml": "defaults for the DAGs beside it",
    "dag-factory/invalid.yaml": "deliberately invalid YAML",
    "dag-factory/datasets/example_config_datasets.yml": "a list of datasets",
    "pydolphinscheduler-yaml/example_datax.json": "a DataX job, read by $FILE{}",
    "pydolphinscheduler-yaml/example_sagemaker_params.json": "a SageMaker request, read by $FILE{}",
}


def _files() -> list[str]:
    if CORPORA is None:
        return []
    return sorted(
        str(p.relative_to(CORPORA))
        for p in CORPORA.rglob("*")
        if p.suffix in (".yml", ".yaml", ".json") and "_docs" not in p.parts
    )


@pytest.fixture(autouse=True)
def _corpora_present() -> None:
    if CORPORA is None:
        message = "shared/corpora is not beside the checkout"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the corpus tests must run, not skip)")
        pytest.skip(message)


def _is_fragment(name: str) -> bool:
    return name.startswith(
        "dag-factory/_tests_schedule/"
    )  # schedule: snippets of dag-factory's tests


def _sources(data: object) -> set[str]:
    """The task names a source file defines (pydolphinscheduler or dag-factory)."""
    names: set[str] = set()
    if isinstance(data, dict) and isinstance(data.get("workflow"), dict):
        return {str(t["name"]) for t in data.get("tasks") or [] if isinstance(t, dict)}
    for dag_id, config in (data or {}).items() if isinstance(data, dict) else []:
        if dag_id == "default" or not isinstance(config, dict):
            continue
        tasks = config.get("tasks") or []
        names |= (
            {str(k) for k in tasks}
            if isinstance(tasks, dict)
            else {str(t.get("task_id")) for t in tasks}
        )
    return names


def _check(result: FileImport, mode: str = "placeholder") -> None:
    assert result.workflows
    for workflow in result.workflows:
        if workflow.document is None:
            # only when every task was left out (report mode), and the report says so
            assert mode == "report", [n.message for n in workflow.notes]
            assert "the workflow is not written" in workflow.notes[-1].message
            continue
        spec = load_workflow(to_yaml(workflow, "test"))  # the written text, through the loader
        assert spec.document == parse_workflow(workflow.document).document  # nothing lost
    unmapped = [n for n in result.all_notes() if n.severity == "unmapped"]
    assert result.complete == (not unmapped)


@pytest.mark.parametrize("name", _files() or ["(none)"])
def test_every_corpus_workflow_imports(name: str) -> None:
    path = (CORPORA or Path()) / name
    if name in NOT_WORKFLOWS or _is_fragment(name):
        # GIVEN a file that holds no workflow: it is refused (exit 2 in the CLI), not guessed at
        with pytest.raises(InvalidInput):
            import_file(path)
        return
    # WHEN a workflow file is imported, in both modes
    for mode in ("placeholder", "report"):
        result = import_file(path, unmapped=mode)  # type: ignore[arg-type]
        # THEN every workflow is written and validates, and the report is consistent
        _check(result, mode)
        # AND every task of the source is in a workflow, or a report line names it
        data = yaml.safe_load(path.read_text()) if path.suffix != ".json" else None
        written = {t for w in result.workflows for t in (w.document or {}).get("tasks", {})}
        noted = {n.task for n in result.all_notes() if n.task}
        for task in _sources(data):
            flat = task.replace(" ", "_").rstrip(":")
            assert any(flat in t for t in written | noted), f"{task} dropped silently"


def test_corpus_has_the_files_the_issue_names() -> None:
    files = _files()
    assert len([f for f in files if f.startswith("pydolphinscheduler-yaml/")]) >= 20
    assert len([f for f in files if f.startswith("dag-factory/airflow3/")]) >= 10
    assert set(NOT_WORKFLOWS) <= set(files)


def test_what_maps_in_the_corpus() -> None:
    assert CORPORA is not None
    ds = CORPORA / "pydolphinscheduler-yaml"
    switch = import_file(ds / "Switch.yaml").workflows[0].document or {}
    assert switch["tasks"]["switch"]["type"] == "switch"
    assert switch["tasks"]["switch"]["default"] == ["switch_child_2"]
    # mixed statuses (pre_task_3 failed, the others succeeded): a switch over what they did
    condition = import_file(ds / "Condition.yaml", unmapped="report")
    cond = (condition.workflows[0].document or {})["tasks"]["condition"]
    assert (cond["type"], cond["default"]) == ("switch", ["fail_branch"])
    assert cond["cases"][0]["next"] == ["success_branch"]
    assert "condition__pre_task_3_failed" in cond["depends_on"]
    assert condition.complete
    sub = import_file(ds / "SubWorkflow.yaml")  # $WORKFLOW{} resolved to the child's name
    assert (sub.workflows[0].document or {})["tasks"]["example_workflow"] == {
        "type": "workflow", "workflow": "example_workflow_for_sub_workflow"
    }  # fmt: skip
    assert sub.complete
    sql = import_file(ds / "Sql.yaml")  # $FILE{} read into the sql task
    sql_tasks = (sql.workflows[0].document or {})["tasks"]
    assert "where id=5" in sql_tasks["task_file"]["sql"]
    assert (sql_tasks["task_base"]["connection"], sql_tasks["task_base"]["outputs"]) == (
        "db", "first_row"
    )  # fmt: skip
    assert sql.complete  # the connection to create is a note, not something left out
    dependent = import_file(ds / "Dependent.yaml")  # AND of ORs: no one level of all/any
    assert not dependent.complete
    assert any(
        "mix AND and OR" in n.message for n in dependent.all_notes() if n.task == "dependent"
    )
    more = import_file(ds / "MoreConfiguration.yaml").workflows[0].document or {}
    shell = more["tasks"]["shell_0"]
    assert (shell["retries"], shell["retry_delay"]) == (30, "300s")
    # timeout 60 with no timeout_notify_strategy: DolphinScheduler neither kills nor alerts
    assert "timeout" not in shell
    assert "{{ params.n }}" in shell["command"]
    assert "${HOME}" in shell["command"]
    # released offline: its schedule does not fire in DolphinScheduler, so it is left out
    tutorial = import_file(ds / "tutorial.yaml").workflows[0]
    assert "schedule" not in (tutorial.document or {})
    assert any("offline" in n.message and "cron(0 0 * * ? *)" in n.message for n in tutorial.notes)

    df = CORPORA / "dag-factory"
    group = import_file(df / "airflow3" / "example_task_group.yml").workflows[0].document or {}
    assert group["tasks"]["task_group_1__task_group_2__task_4"]["depends_on"] == ["task_1"]
    assert group["schedule"]["cron"] == "0 1 * * *"
    defaults = import_file(df / "airflow3" / "example_dag_factory_default_config.yml")
    names = {w.name for w in defaults.workflows}
    assert names == {"machine_learning", "data_science", "artificial_intelligence"}
    ml = next(w for w in defaults.workflows if w.name == "machine_learning").document or {}
    assert ml["tasks"]["load"] == {
        "type": "shell",
        "command": "echo machine_larning",
        "depends_on": ["transform"],
    }
    sensors = {
        w.name: w.document or {} for w in import_file(df / "external_task_sensor.yml").workflows
    }
    consumer = sensors["example_external_task_sensor_dag_factory_consumer"]["tasks"]
    assert consumer["wait_for_producer_task"] == {
        "type": "dependency",
        "all": [{"workflow": "example_external_task_sensor_dag_factory_producer", "date": "today",
                 "task": "producer_task"}],
        "check_interval": "30s", "timeout": "300s",
    }  # fmt: skip
    other_day = sensors["example_external_task_sensor_dag_factory_consumer2"]["tasks"]
    assert other_day["wait_for_producer_task"]["description"].startswith("PLACEHOLDER")
    airflow2 = import_file(df / "airflow2" / "example_params.yml")
    assert any("Airflow 2 dates" in n.message for n in airflow2.all_notes())
    kpo = import_file(df / "kpo.yml").workflows[0].document or {}
    pod = kpo["tasks"]["hello-world-pod"]
    assert (pod["type"], pod["image"], pod["cpu"], pod["memory"]) == (
        "kubernetes",
        "python:3.12-slim",
        "0.5",
        "512Mi",
    )


def test_the_three_export_generations_give_one_workflow() -> None:
    # GIVEN the same workflow exported with 3.0-3.2 and 3.3 key names, and task params as text
    docs = [
        import_file(FIXTURES / name).workflows[0].document
        for name in (
            "ds_3.2_export.json",
            "ds_3.3_export.json",
            "ds_3.1_export_params_as_text.json",
        )
    ]
    # THEN they import to the same document
    assert docs[0] == docs[1] == docs[2]
    doc = docs[0] or {}
    assert doc["schedule"]["cron"] == "cron(30 0 * * ? *)"
    assert doc["tasks"]["verify"]["default"] == ["notify_failure"]  # the Conditions task
    assert doc["tasks"]["report"] == {  # the SQL task, on a connection named after its datasource
        "type": "sql", "connection": "datasource-1", "sql": "select 1", "outputs": "first_row"
    }  # fmt: skip
    legacy = import_file(FIXTURES / "ds_1.3_export.json")
    _check(legacy)
    doc1 = legacy.workflows[0].document or {}
    assert doc1["schedule"]["cron"] == "cron(0 2 ? * 2#1 *)"
    assert doc1["on_failure"] == "stop"
    assert doc1["tasks"]["verify"]["cases"][0]["next"] == ["notify_ok"]
    assert "spark_job" in doc1["tasks"]
    assert not legacy.complete


def test_pydolphinscheduler_dependent_and_sub_workflow_by_name(tmp_path: Path) -> None:
    source = tmp_path / "dep.yaml"
    source.write_text(
        """
workflow:
  name: waits
  project: Analytics
tasks:
  - name: wait
    task_type: Dependent
    denpendence:
      op: or
      groups:
        - op: and
          groups:
            - {project_name: Analytics, workflow_name: Daily Load, dependent_task_name: load}
            - {project_name: Ops, workflow_name: nightly, dependent_date: LAST_WEDNESDAY}
  - {name: child, task_type: SubWorkflow, workflow_name: Daily Load, deps: [wait]}
"""
    )
    result = import_file(source)
    _check(result)
    tasks = (result.workflows[0].document or {})["tasks"]
    assert tasks["wait"] == {
        "type": "dependency",
        "all": [
            {"workflow": "daily_load", "date": "today", "task": "load"},
            {"workflow": "ops/nightly", "date": "lastWednesday"},
        ],
    }
    assert tasks["child"] == {"type": "workflow", "workflow": "daily_load", "depends_on": ["wait"]}
    assert result.complete
