"""DolphinScheduler's run-time rules, kept by an import: each workflow here is imported with
`stratoflow import`, run with `stratoflow run` on the local runtime, and ends in the states and
outputs DolphinScheduler gives it (its rule named in each test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.cli import main
from stratoflow.connections import validate_connection
from tests.readmodel.conftest import pg_url  # noqa: F401  # a scratch PostgreSQL database

pytestmark = pytest.mark.e2e


def _write(tmp_path: Path, name: str, content: Any) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def import_files(tmp_path: Path, source: Path, unmapped: str = "placeholder") -> dict[str, Path]:
    """`stratoflow import SOURCE -o OUT`: the files it wrote, by workflow name."""
    out = tmp_path / "out"
    imported = CliRunner().invoke(
        main, ["import", str(source), "-o", str(out), "--unmapped", unmapped]
    )
    assert imported.exit_code in (0, 1), imported.output
    return {path.stem: path for path in out.glob("*.yaml")}


def run(
    tmp_path: Path,
    path: Path,
    *params: str,
    logical_date: str | None = None,
    connections: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`stratoflow run PATH` (in one home per test): the run's JSON (``run``, ``tasks``).
    ``connections``: name -> PostgreSQL URL, added to the home first."""
    home = tmp_path / "home"
    if connections:
        project = _project_of(path)
        runtime = LocalRuntime(home, project=False)
        try:
            for name, url in connections.items():
                connection = validate_connection(project, name, "postgresql", {"url": url})
                runtime.connections.put(connection, runtime.clock.now())
        finally:
            runtime.close()
    args = ["run", str(path), "--home", str(home), "--output", "json"]
    args += [f"--param={p}" for p in params]
    if logical_date:
        args += ["--logical-date", logical_date]
    ran = CliRunner().invoke(main, args)
    assert ran.exit_code in (0, 1), ran.output
    return json.loads(ran.output)  # type: ignore[no-any-return]


def import_and_run(
    tmp_path: Path,
    source: Path,
    *params: str,
    unmapped: str = "placeholder",
    connections: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`stratoflow import SOURCE`, then `stratoflow run` of the one workflow it wrote."""
    (written,) = import_files(tmp_path, source, unmapped).values()
    return run(tmp_path, written, *params, connections=connections)


def _project_of(path: Path) -> str:
    from stratoflow.model import load_workflow_file

    return load_workflow_file(path).workflow.project


def task_states(result: dict[str, Any]) -> dict[str, str]:
    return {t: body["state"] for t, body in result["tasks"].items()}


def outputs(result: dict[str, Any], task: str) -> dict[str, Any]:
    return dict(result["tasks"][task]["outputs"])


# ----------------------------------------------------------------------------- SQL
def test_a_pydolphinscheduler_query_after_a_comment_gives_its_first_row(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    """pydolphinscheduler submits ``/* nightly */ select ...`` as a query (Sql.sql_type), so
    DolphinScheduler hands its first row on; the import read it as a statement: no outputs."""
    source = _write(
        tmp_path,
        "wf.yaml",
        """
workflow: {name: commented_query}
tasks:
  - {name: count, task_type: Sql, datasource_name: wh, sql: "/* nightly */ select 7 AS n"}
""",
    )
    result = import_and_run(tmp_path, source, connections={"wh": pg_url})
    assert result["run"]["state"] == "succeeded"
    assert outputs(result, "count")["n"] == "7"


def _sql(code: int, name: str, sql: str, sql_type: str = "0", **extra: Any) -> dict[str, Any]:
    params = {"type": "POSTGRESQL", "datasource": 1, "sql": sql, "sqlType": sql_type, **extra}
    return {"code": code, "name": name, "taskType": "SQL", "taskParams": params}


QUOTED = "select count(*) AS n from pg_class where relname = '${region}' and relname like 'pg%'"


def test_sql_parameters_are_bound_not_pasted(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    """DolphinScheduler's SqlTask binds ``${region}`` (``'${region}'`` too, quotes and all)
    as a prepared statement's parameter and pastes ``!{table}`` as text. The import pasted
    ``${region}`` into the SQL: ``relname = ${region}`` read a column named eu (the task
    failed) and a value could rewrite the statement."""
    globals_ = [
        {"prop": "region", "direct": "IN", "type": "VARCHAR", "value": "pg_class"},
        {"prop": "table", "direct": "IN", "type": "VARCHAR", "value": "pg_class"},
    ]
    tasks = [
        _sql(1, "bare", "select count(*) AS n from !{table} where relname = ${region}"),
        _sql(2, "quoted", QUOTED),
    ]
    export = {
        "workflowDefinition": {"name": "bound", "globalParams": json.dumps(globals_)},
        "workflowTaskRelationList": [{"preTaskCode": 0, "postTaskCode": t["code"]} for t in tasks],
        "taskDefinitionList": tasks,
    }
    files = import_files(tmp_path, _write(tmp_path, "sql.json", export))
    result = run(tmp_path, files["bound"], connections={"datasource-1": pg_url})
    assert result["run"]["state"] == "succeeded", result
    assert (outputs(result, "bare")["n"], outputs(result, "quoted")["n"]) == ("1", "1")
    # a value that would rewrite pasted SQL is data: it names no table
    hostile = "x' or '1'='1"
    result = run(tmp_path, files["bound"], f"region={hostile}")
    assert result["run"]["state"] == "succeeded", result
    assert (outputs(result, "bare")["n"], outputs(result, "quoted")["n"]) == ("0", "0")


def test_pre_and_post_statements_with_parameters_run_in_order(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    """Pre statements, the SQL and post statements each bind ``${region}``: they ran as one
    script, which takes no parameters (the task failed)."""
    globals_ = [{"prop": "region", "direct": "IN", "type": "VARCHAR", "value": "eu"}]
    tasks = [
        _sql(1, "load", "insert into loads values (${region}, 1); insert into loads values "
                        "('${region}', 2)", "1",
             preStatements=["create table if not exists loads (region text, n int)",
                            "delete from loads where region = '${region}'"],
             postStatements=["update loads set n = n * 10 where region = ${region}"]),
        _sql(2, "check", "select sum(n) AS total, count(*) AS rows from loads "
                         "where region = ${region}",
             postStatements=["delete from loads where region <> ${region}"]),
    ]  # fmt: skip
    export = {
        "workflowDefinition": {"name": "loading", "globalParams": json.dumps(globals_)},
        "workflowTaskRelationList": [
            {"preTaskCode": 0, "postTaskCode": 1},
            {"preTaskCode": 1, "postTaskCode": 2},
        ],
        "taskDefinitionList": tasks,
    }
    files = import_files(tmp_path, _write(tmp_path, "sql.json", export))
    for _ in range(2):  # the pre statements make it repeatable
        result = run(tmp_path, files["loading"], connections={"datasource-1": pg_url})
        assert result["run"]["state"] == "succeeded", result
        assert outputs(result, "check") == {"total": "30", "rows": "2", "row_count": 1}


# ----------------------------------------------------------------------------- DEPENDENT
def test_a_1x_dependent_task_waits_for_its_upstream_run(tmp_path: Path) -> None:
    """A DolphinScheduler 1.x DEPENDENT task (its ``dependence`` beside empty ``params``)
    waits for the upstream workflow's run of the day; imported, it was a failing
    placeholder, so the run failed whatever the upstream did."""

    def task(name: str, kind: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"type": kind, "id": f"tasks-{name}", "name": name, "params": params,
                "runFlag": "NORMAL", "preTasks": [], "dependence": {}, **extra}  # fmt: skip

    def item(name: str, definition_id: int, *tasks: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"globalParams": [], "tasks": list(tasks), "timeout": 0})
        return {"projectName": "legacy", "processDefinitionName": name,
                "processDefinitionId": definition_id, "processDefinitionJson": body}  # fmt: skip

    wait = {"relation": "AND", "dependTaskList": [{"relation": "AND", "dependItemList": [
        {"projectId": 1, "definitionId": 12, "depTasks": "load", "cycle": "day",
         "dateValue": "today"}]}]}  # fmt: skip
    export = [
        item("upstream", 12, task("load", "SHELL", {"rawScript": "echo loaded"})),
        item("report", 13, task("wait", "DEPENDENT", {}, dependence=wait)),
    ]
    files = import_files(tmp_path, _write(tmp_path, "export.json", export))
    day = "2026-03-01T06:00:00+00:00"
    assert run(tmp_path, files["upstream"], logical_date=day)["run"]["state"] == "succeeded"
    result = run(tmp_path, files["report"], logical_date=day)
    assert task_states(result) == {"wait": "succeeded"}
    assert result["run"]["state"] == "succeeded"


# ----------------------------------------------------------------------------- left out
def _ds_export(
    name: str, tasks: list[dict[str, Any]], edges: list[tuple[int, int]], **definition: Any
) -> dict[str, Any]:
    """A DolphinScheduler 3.3 export of one workflow."""
    return {
        "workflowDefinition": {"name": name, "code": 7000, **definition},
        "workflowTaskRelationList": [{"preTaskCode": a, "postTaskCode": b} for a, b in edges]
        + [{"preTaskCode": 0, "postTaskCode": t["code"]} for t in tasks],
        "taskDefinitionList": tasks,
    }


def _ds_task(code: int, name: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"code": code, "name": name, "taskType": kind, "taskParams": params}


def _shell(code: int, name: str, script: str = "true") -> dict[str, Any]:
    return _ds_task(code, name, "SHELL", {"rawScript": script})


def _global(name: str, value: str, kind: str = "VARCHAR") -> str:
    return json.dumps([{"prop": name, "direct": "IN", "type": kind, "value": value}])


@pytest.mark.parametrize("with_child", [True, False])
def test_a_switch_branch_left_out_is_still_the_branch_taken(
    tmp_path: Path, with_child: bool
) -> None:
    """`--unmapped report` left the Spark branch out and deleted its case: with n=5 the switch
    took the next case (mid), where DolphinScheduler takes the big branch."""
    switch = {"switchResult": {"dependTaskList": [{"condition": "${n} > 3", "nextNode": 2},
                                                  {"condition": "${n} > 1", "nextNode": 5}],
                               "nextNode": 3}}  # fmt: skip
    tasks = [
        _ds_task(1, "route", "SWITCH", switch),
        _ds_task(2, "big", "SPARK", {"mainClass": "Big"}),
        _shell(3, "small"),
        _shell(5, "mid"),
    ]
    edges = [(1, 2), (1, 3), (1, 5)]
    if with_child:
        tasks.append(_shell(4, "after_big"))
        edges.append((2, 4))
    export = _ds_export("routed", tasks, edges, globalParams=_global("n", "5", "INTEGER"))
    result = import_and_run(tmp_path, _write(tmp_path, "x.json", export), unmapped="report")
    assert result["run"]["state"] == "succeeded"
    got = task_states(result)
    assert (got["small"], got["mid"]) == ("skipped", "skipped")
    assert got["after_big" if with_child else "big"] == "succeeded"


# ----------------------------------------------------------------------------- switch
def _switch(code: int, name: str, condition: str, yes: int, no: int) -> dict[str, Any]:
    result = {"dependTaskList": [{"condition": condition, "nextNode": yes}], "nextNode": no}
    return _ds_task(code, name, "SWITCH", {"switchResult": result})


def _setter(code: int, name: str, param: str, value: str, kind: str) -> dict[str, Any]:
    out = [{"prop": param, "direct": "OUT", "type": kind, "value": ""}]
    script = f"echo '${{setValue({param}={value})}}'"
    return _ds_task(code, name, "SHELL", {"rawScript": script, "localParams": out})


def test_switch_conditions_decide_as_dolphinscheduler_s_javascript(tmp_path: Path) -> None:
    """DolphinScheduler pastes each value into the condition as text and evaluates it as
    JavaScript: ``${rows} > 0`` with INTEGER rows=42 (the run failed: str > int),
    ``${status} == 1`` with VARCHAR status=1 (false: "1" == 1 in Python) and
    ``'${n}' == '5'`` with n=5 (false: the reference was written inside the literal) all
    take their first branch."""
    tasks = [
        _setter(1, "count", "rows", "42", "INTEGER"),
        _switch(2, "route_rows", "${rows} > 0", 3, 4),
        _shell(3, "has_rows"),
        _shell(4, "no_rows"),
        _setter(5, "check", "status", "1", "VARCHAR"),
        _switch(6, "route_status", "${status} == 1", 7, 8),
        _shell(7, "ok"),
        _shell(8, "not_ok"),
        _switch(9, "route_n", "'${n}' == '5'", 10, 11),
        _shell(10, "five"),
        _shell(11, "other"),
    ]
    edges = [(1, 2), (2, 3), (2, 4), (5, 6), (6, 7), (6, 8), (9, 10), (9, 11)]
    export = _ds_export("switches", tasks, edges, globalParams=_global("n", "5"))
    result = import_and_run(tmp_path, _write(tmp_path, "x.json", export))
    assert result["run"]["state"] == "succeeded", result
    got = task_states(result)
    assert {t: got[t] for t in ("has_rows", "ok", "five")} == dict.fromkeys(
        ("has_rows", "ok", "five"), "succeeded"
    )
    assert {t: got[t] for t in ("no_rows", "not_ok", "other")} == dict.fromkeys(
        ("no_rows", "not_ok", "other"), "skipped"
    )


# ----------------------------------------------------------------------------- joins
def _params(**values: str) -> str:
    return json.dumps(
        [{"prop": k, "direct": "IN", "type": "INTEGER", "value": v} for k, v in values.items()]
    )


@pytest.mark.parametrize(
    ("n", "taken", "not_taken"), [("5", "big", "small"), ("1", "small", "big")]
)
def test_the_join_of_a_switch_s_branches_runs(
    tmp_path: Path, n: str, taken: str, not_taken: str
) -> None:
    """DolphinScheduler skips a task only when all its upstream tasks were skipped: the join
    of big and small runs whichever the switch chose. Imported, it kept all_success and was
    skipped with the branch not chosen."""
    tasks = [
        _switch(1, "route", "${n} > 3", 2, 3),
        _shell(2, "big"),
        _shell(3, "small"),
        _shell(4, "join", 'echo "joined=yes" >> "$STRATOFLOW_OUTPUT"'),
    ]
    export = _ds_export(
        "joined", tasks, [(1, 2), (1, 3), (2, 4), (3, 4)], globalParams=_params(n="5")
    )
    result = import_and_run(tmp_path, _write(tmp_path, "x.json", export), f"n={n}")
    assert result["run"]["state"] == "succeeded", result
    got = task_states(result)
    assert (got[taken], got[not_taken], got["join"]) == ("succeeded", "skipped", "succeeded")
    assert outputs(result, "join")["joined"] == "yes"


@pytest.mark.parametrize(("m", "join"), [("5", "succeeded"), ("0", "skipped")])
def test_a_join_whose_upstream_tasks_may_all_be_skipped(tmp_path: Path, m: str, join: str) -> None:
    """Behind a switch that is itself a branch: when the outer switch takes the route, big
    runs and the join runs (reading big's OUT param); when it does not, big and small are
    both skipped, and so is the join (none_failed_min_one_success), as in DolphinScheduler."""
    out = [{"prop": "rows", "direct": "OUT", "type": "VARCHAR", "value": ""}]
    big = _ds_task(
        2, "big", "SHELL", {"rawScript": "echo '${setValue(rows=42)}'", "localParams": out}
    )
    tasks = [
        _switch(10, "outer", "${m} > 1", 1, 11),
        _shell(11, "elsewhere"),
        _switch(1, "route", "${n} > 3", 2, 3),
        big,
        _shell(3, "small"),
        _shell(4, "join", 'echo "seen=${rows}" >> "$STRATOFLOW_OUTPUT"'),
    ]
    edges = [(10, 1), (10, 11), (1, 2), (1, 3), (2, 4), (3, 4)]
    export = _ds_export("nested", tasks, edges, globalParams=_params(n="5", m="5"))
    result = import_and_run(tmp_path, _write(tmp_path, "x.json", export), f"m={m}")
    assert result["run"]["state"] == "succeeded", result
    assert task_states(result)["join"] == join
    if join == "succeeded":
        assert outputs(result, "join") == {"seen": "42"}


# ----------------------------------------------------------------------------- CONDITIONS
@pytest.mark.parametrize("fail", ["0", "1"])
def test_a_conditions_task_waits_for_all_its_upstream_and_its_branches_join(
    tmp_path: Path, fail: str
) -> None:
    """a and b feed the Conditions task cond, which checks a only: DolphinScheduler runs it
    once b ended too, then one branch, skipping the other, and runs the task joining them.
    Imported, the branches followed a alone (the success branch ran while b still ran), and
    the unchosen one ended upstream_failed, failing the join."""
    dependence = {"relation": "AND", "dependTaskList": [
        {"relation": "AND", "dependItemList": [{"depTaskCode": 1, "status": "SUCCESS"}]}]}  # fmt: skip
    tasks = [
        _shell(1, "a", "exit ${fail}"),
        _shell(2, "b", "sleep 1"),
        _ds_task(
            3,
            "cond",
            "CONDITIONS",
            {"dependence": dependence, "conditionResult": {"successNode": [4], "failedNode": [5]}},
        ),
        _shell(4, "yes"),
        _shell(5, "no"),
        _shell(6, "join"),
    ]
    edges = [(1, 3), (2, 3), (3, 4), (3, 5), (4, 6), (5, 6)]
    export = _ds_export("conditioned", tasks, edges, globalParams=_params(fail="0"))
    result = import_and_run(tmp_path, _write(tmp_path, "x.json", export), f"fail={fail}")
    got = task_states(result)
    taken, skipped = ("yes", "no") if fail == "0" else ("no", "yes")
    assert (got[taken], got[skipped], got["join"]) == ("succeeded", "skipped", "succeeded")
    # the branch started once b had ended
    assert result["tasks"][taken]["started_at"] >= result["tasks"]["b"]["ended_at"]
    # (a failed task fails the Stratoflow run: the report says DolphinScheduler's goes on)
    assert result["run"]["state"] == ("succeeded" if fail == "0" else "failed")
