"""``stratoflow import``: files written, a report per file, and the exit codes of DESIGN.md
(0 everything mapped, 1 something left out, 2 a file unreadable)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from stratoflow.cli import main
from stratoflow.model import load_workflow_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "importers"

DAG_FACTORY = """
default:
  default_args:
    start_date: 2026-01-01
    retries: 2
    retry_delay_sec: 30
  schedule: "@daily"
etl:
  timezone: Europe/Berlin  # the zone of the DAG's own start_date, and so Airflow's schedule's
  start_date: 2026-01-01
  task_groups:
    load_group:
      dependencies: [extract]
  tasks:
    extract:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: "echo {{ ds_nodash }} {{ params.region }}"
    load:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: "echo load"
      task_group_name: load_group
      execution_timeout_secs: 600
    notify:
      operator: airflow.providers.amazon.aws.operators.lambda_function.LambdaInvokeFunctionOperator
      function_name: notify-team
      payload: '{"ok": true}'
      dependencies: [load_group]
  params:
    region: eu
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["import", *args], catch_exceptions=False)


def test_everything_mapped_exits_0(tmp_path: Path) -> None:
    # GIVEN a dag-factory file whose every part has an equivalent
    source = tmp_path / "dags.yml"
    source.write_text(DAG_FACTORY)
    out = tmp_path / "out"
    # WHEN it is imported
    result = invoke(str(source), "-o", str(out))
    # THEN exit 0, one workflow file that validates, and a report
    assert result.exit_code == 0, result.output
    spec = load_workflow_file(out / "etl.yaml")
    tasks = spec.workflow.tasks
    assert set(tasks) == {"extract", "load_group__load", "notify"}
    assert tasks["load_group__load"].depends_on == ["extract"]
    assert tasks["notify"].depends_on == ["load_group__load"]
    assert spec.workflow.retries("extract") == 2
    assert spec.workflow.timeout("load_group__load") is not None
    assert spec.workflow.schedule is not None
    assert (spec.workflow.schedule.cron, spec.workflow.schedule.timezone) == (
        "0 0 * * *",
        "Europe/Berlin",
    )
    report = json.loads((out / "dags.yml.import-report.json").read_text())
    assert report["complete"] is True
    assert report["written"] == [str(out / "etl.yaml")]


def test_something_left_out_exits_1_and_names_it(tmp_path: Path) -> None:
    result = invoke(str(FIXTURES / "ds_1.3_export.json"), "-o", str(tmp_path))
    assert result.exit_code == 1
    assert "not mapped: legacy_etl.tasks.spark_job: SPARK task" in result.output
    spec = load_workflow_file(tmp_path / "legacy_etl.yaml")
    assert spec.workflow.tasks["spark_job"].description.startswith("PLACEHOLDER")  # type: ignore[union-attr]
    report = json.loads((tmp_path / "ds_1.3_export.json.import-report.json").read_text())
    assert report["complete"] is False
    assert [n["task"] for n in report["notes"] if n["severity"] == "unmapped"] == ["spark_job"]


def test_a_mapped_sql_task_exits_0_and_says_which_connection_to_create(tmp_path: Path) -> None:
    result = invoke(str(FIXTURES / "ds_3.3_export.json"), "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    spec = load_workflow_file(tmp_path / "sales_daily.yaml")
    sql = spec.workflow.tasks["report"]
    assert (sql.type, sql.connection, sql.sql, sql.outputs) == (  # type: ignore[union-attr]
        "sql", "datasource-1", "select 1", "first_row"
    )  # fmt: skip
    report = json.loads((tmp_path / "ds_3.3_export.json.import-report.json").read_text())
    assert any(
        n["task"] == "report" and "connections add datasource-1 --type postgresql" in n["message"]
        for n in report["notes"]
    )


def test_the_pools_to_create_before_apply_are_printed(tmp_path: Path) -> None:
    source = tmp_path / "dags.yml"
    source.write_text(
        DAG_FACTORY.replace(
            "      function_name:", "      pool: Lambda.Calls\n      function_name:"
        )
    )
    result = invoke(str(source), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output  # mapped: pools are not a loss
    assert load_workflow_file(tmp_path / "out" / "etl.yaml").workflow.tasks["notify"].pool == (
        "lambda_calls"
    )
    assert (
        "before apply: etl: task notify uses pool 'lambda_calls': `stratoflow apply` refuses "
        "this workflow until the pool exists; create it first with `stratoflow pools set "
        "lambda_calls --slots N`"
    ) in result.output


def test_the_alert_groups_to_create_before_apply_are_printed(tmp_path: Path) -> None:
    # a DolphinScheduler warning group becomes an alert group, which apply refuses until it
    # exists (as a pool): the import says so with the pools
    export = json.loads((FIXTURES / "ds_3.2_export.json").read_text())
    first = export[0] if isinstance(export, list) else export
    first["schedule"] = {**(first.get("schedule") or {}), "warningType": "FAILURE",
                         "warningGroupId": 7, "crontab": "0 0 2 * * ? *", "timezoneId": "UTC"}  # fmt: skip
    source = tmp_path / "ds.json"
    source.write_text(json.dumps(export))
    result = invoke(str(source), "-o", str(tmp_path / "out"))
    assert "before apply: " in result.output, result.output
    assert (
        "warning group 7 is the alert group 'ds-7': `stratoflow apply` refuses this workflow "
        "until the group exists; create it first with `stratoflow alerts groups set ds-7 "
        "--channels ...`"
    ) in result.output


def test_report_mode_leaves_the_task_out(tmp_path: Path) -> None:
    result = invoke(
        str(FIXTURES / "ds_1.3_export.json"), "-o", str(tmp_path), "--unmapped", "report"
    )
    assert result.exit_code == 1
    spec = load_workflow_file(tmp_path / "legacy_etl.yaml")
    assert "spark_job" not in spec.workflow.tasks
    assert "transform" in spec.workflow.tasks


def test_an_unreadable_file_exits_2_and_writes_nothing_for_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed\n")
    out = tmp_path / "out"
    result = invoke(
        str(bad),
        str(tmp_path / "missing.json"),
        str(FIXTURES / "ds_1.3_export.json"),
        "-o",
        str(out),
    )
    assert result.exit_code == 2
    assert "bad.yaml: workflow (line 2): invalid YAML" in result.output
    assert "missing.json" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "ds_1.3_export.json.import-report.json",
        "legacy_etl.yaml",
    ]


def test_from_narrows_the_formats(tmp_path: Path) -> None:
    source = tmp_path / "dags.yml"
    source.write_text(DAG_FACTORY)
    result = invoke(str(source), "--from", "dolphinscheduler", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "no workflow found: expected a DolphinScheduler export" in result.output


def test_json_output(tmp_path: Path) -> None:
    result = invoke(str(FIXTURES / "ds_1.3_export.json"), "-o", str(tmp_path), "--output", "json")
    assert result.exit_code == 1
    summary = json.loads(result.output)
    assert summary[0]["format"] == "dolphinscheduler-export"
    assert summary[0]["workflows"][0]["name"] == "legacy_etl"


def test_hostile_files_are_refused_quickly(tmp_path: Path) -> None:
    # GIVEN an alias bomb and a deeply nested JSON document
    bomb = tmp_path / "bomb.yaml"
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
        for i in range(1, 12)
    ]
    bomb.write_text("\n".join(lines) + "\n")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    out = tmp_path / "out"
    # WHEN they are imported THEN both are refused with exit 2, and nothing is created
    result = invoke(str(bomb), str(deep), "-o", str(out))
    assert result.exit_code == 2
    assert "bomb.yaml" in result.output
    assert "deep.json: file: JSON nested too deeply" in result.output
    assert not out.exists()


def test_one_name_in_two_files_becomes_two_workflows(tmp_path: Path) -> None:
    # GIVEN two folders with a dags.yml each, both defining DAG "etl"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "dags.yml").write_text(DAG_FACTORY)
    out = tmp_path / "out"
    # WHEN both are imported at once
    result = invoke(
        str(tmp_path / "a" / "dags.yml"), str(tmp_path / "b" / "dags.yml"), "-o", str(out)
    )
    # THEN neither overwrites the other: etl and etl_2, and one report per input
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "dags.yml.2.import-report.json", "dags.yml.import-report.json", "etl.yaml", "etl_2.yaml",
    ]  # fmt: skip
    assert load_workflow_file(out / "etl_2.yaml").name == "etl_2"
    second = json.loads((out / "dags.yml.2.import-report.json").read_text())
    assert any("defines 'etl' too" in n["message"] for n in second["notes"])


MALFORMED = [
    '[{"processDefinition": [], "taskDefinitionList": "x"}]',
    '[{"workflowDefinition": {"name": 5}, "taskDefinitionList": [{"code": 1, "taskType": "SHELL", '
    '"taskParams": {"rawScript": 7}, "failRetryTimes": "1e999", "timeout": "inf", "timeoutFlag": "OPEN"}]}]',
    '{"processDefinitionJson": "{\\"tasks\\": [{\\"name\\": \\"a\\", \\"type\\": \\"SHELL\\", \\"preTasks\\": 3}]}"}',
    '{"processDefinitionJson": "[1, 2]", "processDefinitionName": "x"}',
]


def test_malformed_exports_are_refused_or_imported_never_a_crash(tmp_path: Path) -> None:
    for i, text in enumerate(MALFORMED):
        path = tmp_path / f"m{i}.json"
        path.write_text(text)
        result = CliRunner().invoke(main, ["import", str(path), "-o", str(tmp_path / f"o{i}")])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert result.exit_code in (0, 1, 2)
        if result.exit_code == 2:
            assert f"m{i}.json: file:" in result.output


def test_a_sub_process_finds_its_child_in_another_file(tmp_path: Path) -> None:
    parent = FIXTURES / "ds_3.2_sub_process_parent.json"
    alone = invoke(str(parent), "-o", str(tmp_path / "alone"))
    assert alone.exit_code == 1  # the child's code is unknown without its file
    assert "definition code 5001 is not a workflow of this import" in alone.output
    together = invoke(
        str(FIXTURES / "ds_3.2_sub_process_child.json"), str(parent), "-o", str(tmp_path / "both")
    )
    assert together.exit_code == 0, together.output
    spec = load_workflow_file(tmp_path / "both" / "parent_flow.yaml")
    assert spec.workflow.tasks["run_child"].workflow == "child_load"  # type: ignore[union-attr]
