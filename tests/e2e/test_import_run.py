"""An imported DolphinScheduler export runs on the local runtime to the states and outputs it
had in DolphinScheduler: shell and python tasks, OUT parameters (setValue), global and built-in
parameters with time expressions in the schedule's time zone, a switch, and a Conditions task
(a switch over tasks that ran when its items held); task groups as pools (created before `apply`, which refuses an unknown
pool) with their priorities."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.connections import validate_connection
from stratoflow.engine import RunState
from stratoflow.engine import subworkflow as rules
from stratoflow.engine.pools import pool_key
from stratoflow.errors import InvalidInput
from stratoflow.importers import import_codes, import_file, to_yaml
from tests.e2e import test_runtime
from tests.e2e.test_runtime import finish, states
from tests.readmodel.conftest import ADMIN_URL, admin_connection

pytestmark = pytest.mark.e2e
runtime = test_runtime.runtime  # the local runtime fixture, in a fresh home per test
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "importers"
# 16:30 UTC on 1 March is already 2 March in Shanghai, the export's schedule zone
LOGICAL = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)


def _run(rt: LocalRuntime, export: str | Path, **params: object) -> str:
    path = export if isinstance(export, Path) else FIXTURES / export
    result = import_file(path, unmapped="report")  # the Spark task left out
    workflow = result.workflows[0]
    document: dict[str, Any] = workflow.document  # type: ignore[assignment]
    # the pools its tasks name, as the report says: `stratoflow pools set NAME --slots N`
    for pool in {t["pool"] for t in document["tasks"].values() if t.get("pool")}:
        rt.scheduler.set_pool(pool, 1, document.get("project"))
    version, _ = rt.scheduler.apply(to_yaml(workflow, path.name))
    if "datasource-1" in str(workflow.document):  # the SQL task's, on the real PostgreSQL
        admin_connection().close()  # type: ignore[attr-defined]  # unreachable: skip (CI: fail)
        connection = validate_connection(
            version.project, "datasource-1", "postgresql", {"url": ADMIN_URL}
        )
        rt.connections.put(connection, rt.clock.now())
    run, _ = rt.scheduler.trigger(
        version.project, version.name, params=params, logical_date=LOGICAL
    )
    return run.id


def _outputs(rt: LocalRuntime, run_id: str) -> dict[str, dict[str, object]]:
    return {t.task_id: dict(t.outputs) for t in rt.store.get_tasks(run_id)}


@pytest.mark.parametrize("export", ["ds_3.2_export.json", "ds_3.3_export.json"])
def test_imported_3x_export_runs_as_in_dolphinscheduler(runtime: LocalRuntime, export: str) -> None:
    # WHEN the imported workflow runs for a date, with the export's default region (eu)
    run_id = _run(runtime, export)
    # THEN it succeeds, the switch took the eu branch and the Conditions task's success branch ran
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    assert states(runtime, run_id) == {
        "extract": "succeeded", "check": "succeeded", "transform": "succeeded",
        "route": "succeeded", "load_eu": "succeeded", "load_other": "skipped",
        "verify__transform_succeeded": "succeeded", "verify": "succeeded",
        "notify_ok": "succeeded", "notify_failure": "skipped", "report": "succeeded",
    }  # fmt: skip
    outputs = _outputs(runtime, run_id)
    # the SQL task ran its query on the connection named after the datasource: first row
    assert outputs["report"]["row_count"] in (1, "1")
    # setValue lines became outputs; $[yyyyMMdd-1] is the day before in Shanghai, not in UTC
    assert outputs["extract"] == {"rows": "42", "day": "20260301"}
    # ${rows} read the upstream OUT parameter, ${dt} = $[yyyy-MM-dd] computed in Shanghai
    assert outputs["transform"] == {"seen": "42-2026-03-02"}


def test_parameters_given_to_the_run_win(runtime: LocalRuntime) -> None:
    run_id = _run(runtime, "ds_3.3_export.json", region="us", dt="2000-01-01")
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    got = states(runtime, run_id)
    assert (got["load_eu"], got["load_other"]) == ("skipped", "succeeded")
    assert _outputs(runtime, run_id)["transform"] == {"seen": "42-2000-01-01"}


def test_imported_1x_export_runs(runtime: LocalRuntime) -> None:
    run_id = _run(runtime, "ds_1.3_export.json")
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    assert states(runtime, run_id) == {
        "extract": "succeeded", "check": "succeeded", "transform": "succeeded",
        "verify__transform_succeeded": "succeeded", "verify": "succeeded",
        "notify_ok": "succeeded", "notify_failure": "skipped",
    }  # fmt: skip
    assert _outputs(runtime, run_id)["extract"] == {"day": "20260228"}  # 1.x names no zone: UTC


def test_imported_sub_process_runs_its_child(runtime: LocalRuntime) -> None:
    # GIVEN a parent and its SUB_PROCESS child exported to two files, imported together
    files = [FIXTURES / f"ds_3.2_sub_process_{part}.json" for part in ("child", "parent")]
    codes = import_codes(list(files))
    child, parent = (import_file(f, codes=codes).workflows[0] for f in files)
    assert parent.document is not None
    assert parent.document["tasks"]["run_child"]["workflow"] == "child_load"
    for workflow, file in ((child, files[0]), (parent, files[1])):
        runtime.scheduler.apply(to_yaml(workflow, file.name))
    # WHEN the parent runs
    run, _ = runtime.scheduler.trigger("analytics", "parent_flow", logical_date=LOGICAL)
    # THEN the child ran with the parent's parameter, and both succeeded as in DolphinScheduler
    assert finish(runtime, run.id) is RunState.SUCCEEDED
    assert states(runtime, run.id) == {
        "prepare": "succeeded", "run_child": "succeeded", "after": "succeeded"
    }  # fmt: skip
    child_run = rules.child_run_id(run.id, "run_child", ("analytics", "child_load"))
    assert states(runtime, child_run) == {"extract": "succeeded"}
    assert _outputs(runtime, child_run)["extract"] == {"rows": "42", "seen": "eu"}
    assert _outputs(runtime, run.id)["run_child"]["extract"] == {"rows": "42", "seen": "eu"}  # type: ignore[index]


def test_imported_dependent_waits_for_its_upstream(runtime: LocalRuntime) -> None:
    # GIVEN an export with an upstream workflow and one whose DEPENDENT task waits for it
    result = import_file(FIXTURES / "ds_3.3_dependent.json")
    assert result.complete
    upstream, dependent = result.workflows
    assert dependent.document is not None
    assert dependent.document["tasks"]["wait"]["all"] == [
        {"workflow": "upstream_load", "date": "today", "task": "load"},
        {"workflow": "upstream_load", "date": "today"},
    ]
    for workflow in (upstream, dependent):
        runtime.scheduler.apply(to_yaml(workflow, "ds_3.3_dependent.json"))
    # WHEN the upstream ran for the day, then the dependent runs for the same day
    up, _ = runtime.scheduler.trigger("analytics", "upstream_load", logical_date=LOGICAL)
    assert finish(runtime, up.id) is RunState.SUCCEEDED
    run, _ = runtime.scheduler.trigger("analytics", "report_flow", logical_date=LOGICAL)
    # THEN its dependency is met and it runs on, as in DolphinScheduler
    assert finish(runtime, run.id) is RunState.SUCCEEDED
    assert states(runtime, run.id) == {"wait": "succeeded", "report": "succeeded"}


def _with_task_group(tmp_path: Path) -> Path:
    """The 3.3 export with its tasks in DolphinScheduler task group 5 (priorities set)."""
    export = json.loads((FIXTURES / "ds_3.3_export.json").read_text())
    for task in export[0]["taskDefinitionList"]:
        task["taskGroupId"] = 5
        task["taskGroupPriority"] = 3 if task["name"] == "transform" else 0
        task["taskPriority"] = "HIGH"
    export[0]["schedule"]["workflowInstancePriority"] = "LOW"
    path = tmp_path / "ds_3.3_task_group.json"
    path.write_text(json.dumps(export))
    return path


def test_imported_task_group_runs_in_its_pool(runtime: LocalRuntime, tmp_path: Path) -> None:
    path = _with_task_group(tmp_path)
    workflow = import_file(path, unmapped="report").workflows[0]
    document: dict[str, Any] = workflow.document  # type: ignore[assignment]
    # (the tasks the import made for the Conditions task's items are in no pool)
    pools = {t.get("pool") for name, t in document["tasks"].items() if "__" not in name}
    assert pools == {"taskgroup-5"}
    assert document["priority"] == -10
    assert document["tasks"]["transform"]["priority"] == 3
    assert document["tasks"]["extract"]["priority"] == 10
    # GIVEN no pool yet: apply refuses it, as the report warns
    assert any("refuses this workflow until the pool exists" in n.message for n in workflow.notes)
    with pytest.raises(InvalidInput, match="taskgroup-5"):
        runtime.scheduler.apply(to_yaml(workflow, path.name))
    # WHEN the pool exists (one slot: the task group's size) and the workflow runs
    run_id = _run(runtime, path)
    # THEN it runs to the same states and outputs as without the task group
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    assert states(runtime, run_id) == {
        "extract": "succeeded", "check": "succeeded", "transform": "succeeded",
        "route": "succeeded", "load_eu": "succeeded", "load_other": "skipped",
        "verify__transform_succeeded": "succeeded", "verify": "succeeded",
        "notify_ok": "succeeded", "notify_failure": "skipped", "report": "succeeded",
    }  # fmt: skip
    assert _outputs(runtime, run_id)["transform"] == {"seen": "42-2026-03-02"}
    # every task went through the pool, which is free again
    pool, running, waiting = runtime.scheduler.pool_view(pool_key("analytics", "taskgroup-5"))
    assert (pool.slots, pool.used, running, waiting) == (1, 0, [], [])


def _shell(code: int, name: str, script: str, *params: tuple[str, str, str]) -> dict[str, Any]:
    """A DolphinScheduler 3.x SHELL task; ``params``: (name, IN or OUT, value)."""
    local = [{"prop": p, "direct": d, "type": "VARCHAR", "value": v} for p, d, v in params]
    return {"code": code, "name": name, "taskType": "SHELL", "flag": "YES",
            "taskParams": {"localParams": local, "rawScript": script, "resourceList": []}}  # fmt: skip


def test_a_parameter_reads_the_nearest_upstream_that_sets_it_over_the_global(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    """DolphinScheduler's precedence (startup > local > upstream > global): ``${rows}`` read
    the global param wherever one was named so, never what an upstream task set; with two
    setters in a chain the reference was left to the shell (empty); a local param reading
    a global computed per run (``${system.biz.date}``) rendered it empty."""
    set_rows = "echo '${setValue(rows=%s)}'\n"
    tasks = [
        _shell(1, "a", set_rows % 42, ("rows", "OUT", "")),
        _shell(
            2,
            "b",
            'echo "seen=${rows}|${mine}" >> $STRATOFLOW_OUTPUT\n' + set_rows % 99,
            ("mine", "IN", "${dt}-x"),
            ("rows", "OUT", ""),
        ),
        _shell(3, "c", 'echo "seen=${rows}" >> $STRATOFLOW_OUTPUT\n'),
        _shell(4, "d", 'echo "seen=${rows}" >> $STRATOFLOW_OUTPUT\n'),  # beside b: a's
        _shell(5, "quiet", "true\n", ("rows", "OUT", "5")),  # never sets it: its declared 5
        _shell(6, "e", 'echo "seen=${rows}" >> $STRATOFLOW_OUTPUT\n'),
    ]
    edges = [(0, 1), (1, 2), (2, 3), (1, 4), (0, 5), (5, 6)]
    export = {
        "processDefinition": {
            "code": 8001, "name": "precedence", "projectName": "Analytics",
            "globalParams": json.dumps([
                {"prop": "dt", "direct": "IN", "type": "VARCHAR", "value": "${system.biz.date}"},
                {"prop": "rows", "direct": "IN", "type": "VARCHAR", "value": "0"},
            ]),
        },
        "processTaskRelationList": [{"preTaskCode": a, "postTaskCode": b, "conditionType": "NONE",
                                     "conditionParams": "{}"} for a, b in edges],
        "taskDefinitionList": tasks,
        "schedule": None,
    }  # fmt: skip
    path = tmp_path / "precedence.json"
    path.write_text(json.dumps([export]))
    run_id = _run(runtime, path)
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    seen = {t: o.get("seen") for t, o in _outputs(runtime, run_id).items() if "seen" in o}
    # the biz date: the day before the logical date; 1.x names no zone, 3.x without a
    # schedule neither: UTC
    assert seen == {"b": "42|20260228-x", "c": "99", "d": "42", "e": "5"}


def _export(code: int, name: str, tasks: list[dict[str, Any]], edges: list[tuple[int, int]],
            **globals_: str) -> dict[str, Any]:  # fmt: skip
    """A DolphinScheduler 3.x export of one workflow (``globals_``: its global IN params)."""
    params = [
        {"prop": k, "direct": "IN", "type": "VARCHAR", "value": v} for k, v in globals_.items()
    ]
    return {
        "processDefinition": {"code": code, "name": name, "projectName": "Analytics",
                              "globalParams": json.dumps(params)},
        "processTaskRelationList": [{"preTaskCode": a, "postTaskCode": b, "conditionType": "NONE",
                                     "conditionParams": "{}"} for a, b in edges],
        "taskDefinitionList": tasks,
        "schedule": None,
    }  # fmt: skip


def test_a_sub_process_takes_the_parent_s_params_and_gives_back_its_outputs(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    """Across a SUB_PROCESS DolphinScheduler passes the parent's global params (and its
    upstream OUT params) over the child's own, and the child's OUT params to the parent's
    downstream tasks. The import passed neither: the child ran with its own ``owner`` and
    the parent's ``${rows}`` was left to the shell (empty)."""
    child = _export(9001, "child", [
        _shell(91, "extract", "echo \"seen=${owner}|${region}\" >> $STRATOFLOW_OUTPUT\n"
               "echo '${setValue(rows=42)}'\n", ("rows", "OUT", "")),
    ], [(0, 91)], owner="child", region="us", step="0")  # fmt: skip
    sub = {"code": 82, "name": "run child", "taskType": "SUB_PROCESS", "flag": "YES",
           "taskParams": {"processDefinitionCode": 9001, "resourceList": [], "localParams": [
               {"prop": "region", "direct": "IN", "type": "VARCHAR", "value": "eu"},
               # passed back: DolphinScheduler returns the OUT params the task declares
               {"prop": "rows", "direct": "OUT", "type": "VARCHAR", "value": ""}]}}  # fmt: skip
    parent = _export(9002, "parent", [
        _shell(81, "prepare", "echo '${setValue(step=7)}'\n", ("step", "OUT", "")),
        sub,
        _shell(83, "after", "echo \"res=${rows}\" >> $STRATOFLOW_OUTPUT\n"),
    ], [(0, 81), (81, 82), (82, 83)], owner="parent")  # fmt: skip
    files = []
    for export in (child, parent):
        path = tmp_path / f"{export['processDefinition']['name']}.json"
        path.write_text(json.dumps([export]))
        files.append(path)
    codes = import_codes(files)
    for path in files:
        (workflow,) = import_file(path, codes=codes).workflows
        runtime.scheduler.apply(to_yaml(workflow, path.name))
    run, _ = runtime.scheduler.trigger("analytics", "parent", logical_date=LOGICAL)
    assert finish(runtime, run.id) is RunState.SUCCEEDED
    child_run = rules.child_run_id(run.id, "run_child", ("analytics", "child"))
    # owner: the parent's global; region: the task's own local param; step: the upstream's
    assert _outputs(runtime, child_run)["extract"] == {"seen": "parent|eu", "rows": "42"}
    assert runtime.store.get_run(child_run).params["step"] == "7"
    assert _outputs(runtime, run.id)["after"] == {"res": "42"}


def test_a_disabled_task_runs_as_one_that_does_nothing(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    """Its command ``: disabled in DolphinScheduler (SHELL task)`` was a bash syntax error:
    every disabled task failed. And a disabled setter of an OUT param sets nothing: the
    task after it reads the setter above it."""
    path = tmp_path / "disabled.json"
    tasks = [
        _shell(1, "a", "echo '${setValue(rows=1)}'\n", ("rows", "OUT", "")),
        {**_shell(2, "b", "echo '${setValue(rows=2)}'\n", ("rows", "OUT", "")), "flag": "NO"},
        _shell(3, "c", 'echo "seen=${rows}" >> $STRATOFLOW_OUTPUT\n'),
    ]
    path.write_text(json.dumps([_export(8101, "disabled", tasks, [(0, 1), (1, 2), (2, 3)])]))
    run_id = _run(runtime, path)
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    assert _outputs(runtime, run_id)["c"] == {"seen": "1"}


def test_imported_one_done_and_none_skipped_end_as_in_airflow(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    """A dag-factory DAG's one_done and none_skipped tasks (gate tasks of the format's
    rules) run on the local runtime to the states Airflow gives them: one_done runs after a
    failure and is skipped when every upstream task was; none_skipped runs after a failure
    and is skipped when one upstream task was."""
    import yaml

    bash = "airflow.operators.bash.BashOperator"

    def task(
        command: str, deps: list[str] | None = None, rule: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"operator": bash, "bash_command": command}
        if deps:
            body["dependencies"] = deps
        if rule:
            body["trigger_rule"] = rule
        return body

    path = tmp_path / "dags.yml"
    path.write_text(yaml.safe_dump({"rules": {"tasks": {
        "ok": task("true"),
        "bad": task("exit 1"),
        "sk": task("true", ["ok"], "all_failed"),  # ok succeeded: skipped
        "done_after_failure": task("true", ["bad", "sk"], "one_done"),
        "done_all_skipped": task("true", ["sk"], "one_done"),
        "ran_after_failure": task("true", ["ok", "bad"], "none_skipped"),
        "one_skipped": task("true", ["ok", "sk"], "none_skipped"),
    }}}))  # fmt: skip
    run_id = _run(runtime, path)
    assert finish(runtime, run_id) is RunState.FAILED  # bad failed
    ended = states(runtime, run_id)
    assert {t: ended[t] for t in ("ok", "bad", "sk")} == {
        "ok": "succeeded", "bad": "failed", "sk": "skipped"
    }  # fmt: skip
    assert ended["done_after_failure"] == "succeeded"
    assert ended["done_all_skipped"] == "skipped"
    assert ended["ran_after_failure"] == "succeeded"
    assert ended["one_skipped"] == "skipped"
