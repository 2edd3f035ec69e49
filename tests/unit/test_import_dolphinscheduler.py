"""What a DolphinScheduler task becomes, setting by setting, and that whatever has no
equivalent is named in the report (never dropped silently)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from stratoflow import engine
from stratoflow.engine import SWITCH_BRANCH_KEY, TaskState
from stratoflow.importers import import_file
from stratoflow.importers._build import Unmapped
from stratoflow.importers._dolphinscheduler import _split_sql, code_table, convert, read_export
from stratoflow.importers._report import ImportedWorkflow
from stratoflow.model import parse_workflow
from stratoflow.templating import render, render_condition


def _task(code: int, name: str, kind: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"code": code, "name": name, "taskType": kind, "taskParams": params, **extra}


def _import(
    *tasks: dict[str, Any],
    edges: list[tuple[int, int]] = (),  # type: ignore[assignment]
    mode: Unmapped = "placeholder",
    **definition: Any,
) -> ImportedWorkflow:
    export = {
        "workflowDefinition": {"name": "wf", "globalParams": "[]", **definition},
        "workflowTaskRelationList": [{"preTaskCode": a, "postTaskCode": b} for a, b in edges]
        + [{"preTaskCode": 0, "postTaskCode": t["code"]} for t in tasks],
        "taskDefinitionList": list(tasks),
    }
    result = convert(read_export([export])[0], mode)
    assert result.document is not None
    parse_workflow(result.document)  # what is written validates
    return result


def _unmapped(result: ImportedWorkflow, task: str | None = None) -> list[str]:
    return [n.message for n in result.notes if n.severity == "unmapped" and n.task == task]


def test_retries_intervals_and_timeouts() -> None:
    result = _import(
        _task(1, "a", "SHELL", {"rawScript": "true"}, failRetryTimes=3, failRetryInterval=2,
              timeoutFlag="OPEN", timeout=15, timeoutNotifyStrategy="FAILED"),
        _task(2, "b", "SHELL", {"rawScript": "true"}, timeoutFlag="OPEN", timeout=5,
              timeoutNotifyStrategy="WARN"),
        _task(3, "c", "SHELL", {"rawScript": "true"}, timeoutFlag="OPEN", timeout=5,
              timeoutNotifyStrategy="WARNFAILED"),
        _task(4, "d", "SHELL", {"rawScript": "true"}, timeoutFlag="CLOSE", timeout=5),
    )  # fmt: skip
    tasks = result.document["tasks"]  # type: ignore[index]
    assert (tasks["a"]["retries"], tasks["a"]["retry_delay"], tasks["a"]["timeout"]) == (
        3,
        "120s",
        "900s",
    )
    assert tasks["a"]["on_timeout"] == "fail"
    assert (tasks["b"]["timeout"], tasks["b"]["on_timeout"]) == ("300s", "warn")  # alert only
    assert (tasks["c"]["timeout"], tasks["c"]["on_timeout"]) == ("300s", "warn_fail")
    assert not _unmapped(result, "b")
    assert not _unmapped(result, "c")
    assert "timeout" not in tasks["d"]
    assert "on_timeout" not in tasks["d"]
    parse_workflow(result.document)  # valid format v1


def test_a_timeout_without_a_strategy_neither_fails_nor_alerts(tmp_path: Path) -> None:
    """DolphinScheduler kills a task at its timeout only under FAILED or WARNFAILED, and
    alerts only under WARN or WARNFAILED (TaskExecutionContextBuilder, the timeout event
    handler): an open timeout with no strategy, as pydolphinscheduler submits ``timeout``
    without ``timeout_notify_strategy``, does nothing. The pydolphinscheduler import made
    it fail the task (a long task, fine in DolphinScheduler, was killed), an export's
    import alerted on it."""
    workflow = _pydolphin(
        tmp_path,
        """
workflow: {name: slow}
tasks:
  - {name: a, task_type: Shell, command: "sleep 7200", timeout: 60}
  - {name: b, task_type: Shell, command: "true", timeout: 5, timeout_notify_strategy: FAILED}
""",
    )
    tasks = workflow.document["tasks"]  # type: ignore[index]
    assert "timeout" not in tasks["a"]
    assert "on_timeout" not in tasks["a"]
    (note,) = [n.message for n in workflow.notes if n.task == "a" and "timeout" in n.message]
    assert "neither fails nor alerts" in note
    assert (tasks["b"]["timeout"], tasks["b"]["on_timeout"]) == ("300s", "fail")
    export = _import(
        _task(1, "a", "SHELL", {"rawScript": "true"}, timeoutFlag="OPEN", timeout=5,
              timeoutNotifyStrategy=None),
    )  # fmt: skip
    assert "timeout" not in export.document["tasks"]["a"]  # type: ignore[index]


def test_settings_without_an_equivalent_are_reported() -> None:
    result = _import(
        _task(1, "a", "SHELL", {"rawScript": "true", "resourceList": [{"id": 3}]},
              delayTime=2, workerGroup="gpu", environmentCode=77, isCache="YES"),
        warningGroupId=2, timeout=30, executionType="SERIAL_DISCARD",
    )  # fmt: skip
    messages = " | ".join(_unmapped(result, "a"))
    for word in (
        "delay time",
        "'gpu'",
        "environmentCode",
        "isCache",
        "resources",
    ):
        assert word in messages
    workflow = " | ".join(_unmapped(result))
    assert "SERIAL_DISCARD" in workflow
    assert result.document["max_active_runs"] == 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("level", "priority"),
    [("HIGHEST", 20), ("HIGH", 10), ("MEDIUM", None), ("LOW", -10), ("LOWEST", -20)],
)
def test_task_and_run_priorities_map_to_priorities(level: str, priority: int | None) -> None:
    export = {
        "workflowDefinition": {"name": "wf", "globalParams": "[]"},
        "workflowTaskRelationList": [{"preTaskCode": 0, "postTaskCode": 1}],
        "taskDefinitionList": [_task(1, "a", "SHELL", {"rawScript": "true"}, taskPriority=level)],
        "schedule": {"crontab": "0 0 2 * * ? *", "timezoneId": "UTC",
                     "workflowInstancePriority": level},
    }  # fmt: skip
    result = convert(read_export([export])[0], "placeholder")
    doc: dict[str, Any] = result.document  # type: ignore[assignment]
    assert doc["tasks"]["a"].get("priority") == priority
    assert doc.get("priority") == priority
    spec = parse_workflow(doc)
    assert (spec.workflow.priority, spec.workflow.tasks["a"].priority) == (
        priority or 0,
        priority or 0,
    )
    assert result.notes == ()  # mapped word for word


def test_an_unknown_priority_level_is_reported() -> None:
    result = _import(_task(1, "a", "SHELL", {"rawScript": "true"}, taskPriority="URGENT"))
    assert "priority" not in result.document["tasks"]["a"]  # type: ignore[index]
    assert any("'URGENT'" in m for m in _unmapped(result, "a"))


def test_task_group_becomes_a_pool_with_its_priority() -> None:
    result = _import(
        _task(1, "a", "SHELL", {"rawScript": "true"}, taskGroupId=4, taskGroupPriority=7),
        _task(2, "b", "SHELL", {"rawScript": "true"}, taskGroupId=4, taskGroupPriority=500,
              taskPriority="HIGH"),
        _task(3, "c", "SHELL", {"rawScript": "true"}, taskGroupId=9, taskPriority="LOW"),
        projectName="Sales",
    )  # fmt: skip
    tasks = result.document["tasks"]  # type: ignore[index]
    assert (tasks["a"]["pool"], tasks["a"]["priority"]) == ("taskgroup-4", 7)
    # clamped into -100..100 (said so); the task group priority orders it, not taskPriority
    assert (tasks["b"]["pool"], tasks["b"]["priority"]) == ("taskgroup-4", 100)
    b_notes = " | ".join(n.message for n in result.notes if n.task == "b")
    for word in ("500", "priority 100", "HIGH"):
        assert word in b_notes
    # no task group priority: the task's own priority level
    assert (tasks["c"]["pool"], tasks["c"]["priority"]) == ("taskgroup-9", -10)
    # one note per pool, naming its tasks and the command that creates it before `apply`
    pool_notes = [n.message for n in result.notes if n.field == "pool"]
    assert len(pool_notes) == 2
    assert "tasks a, b use pool 'taskgroup-4'" in pool_notes[0]
    assert "refuses this workflow until the pool exists" in pool_notes[0]
    assert "stratoflow pools set taskgroup-4 --slots N --project sales" in pool_notes[0]
    assert "task group's size" in pool_notes[0]
    assert "stratoflow pools set taskgroup-9" in pool_notes[1]


@pytest.mark.parametrize(
    ("warning_type", "events"),
    [("FAILURE", ["failure"]), ("SUCCESS", ["success"]), ("ALL", ["success", "failure"]),
     ("NONE", [])],
)  # fmt: skip
def test_warning_group_and_timeout_become_alerts_and_sla(
    warning_type: str, events: list[str]
) -> None:
    export = {
        "workflowDefinition": {"name": "wf", "globalParams": "[]", "timeout": 30},
        "workflowTaskRelationList": [{"preTaskCode": 0, "postTaskCode": 1}],
        "taskDefinitionList": [_task(1, "a", "SHELL", {"rawScript": "true"})],
        "schedule": {"crontab": "0 0 2 * * ? *", "timezoneId": "UTC",
                     "warningType": warning_type, "warningGroupId": 2},
    }  # fmt: skip
    result = convert(read_export([export])[0], "placeholder")
    doc: dict[str, Any] = result.document  # type: ignore[assignment]
    assert doc["sla"] == "1800s"  # a run outlasting the workflow timeout: sla_miss
    assert doc["alerts"] == [{"on": [*events, "timeout", "sla_miss"], "group": "ds-2"}]
    assert any("stratoflow alerts groups set ds-2" in n.message for n in result.notes)
    spec = parse_workflow(doc)
    assert spec.workflow.alerts[0].group == "ds-2"


def test_a_warning_type_without_a_group_is_reported() -> None:
    export = {
        "workflowDefinition": {"name": "wf", "globalParams": "[]"},
        "workflowTaskRelationList": [{"preTaskCode": 0, "postTaskCode": 1}],
        "taskDefinitionList": [_task(1, "a", "SHELL", {"rawScript": "true"})],
        "schedule": {"crontab": "0 0 2 * * ? *", "timezoneId": "UTC", "warningType": "FAILURE"},
    }
    result = convert(read_export([export])[0], "placeholder")
    assert "alerts" not in result.document  # type: ignore[operator]
    assert any("FAILURE names no warning group" in m for m in _unmapped(result))


def test_disabled_task_does_nothing() -> None:
    result = _import(_task(1, "a", "SHELL", {"rawScript": "rm -rf /data"}, flag="NO"))
    assert result.document["tasks"]["a"]["command"].startswith(": 'disabled")  # type: ignore[index]


def test_python_with_parameters_or_python2_runs_through_python3_as_text() -> None:
    result = _import(
        _task(1, "plain", "PYTHON", {"rawScript": "print(1)"}),
        _task(2, "templated", "PYTHON", {"rawScript": "print('$[yyyyMMdd]')", "localParams": []}),
        _task(3, "old", "PYTHON", {"rawScript": "print 'hi'"}),
    )
    tasks = result.document["tasks"]  # type: ignore[index]
    assert tasks["plain"] == {"type": "python", "code": "print(1)"}
    assert tasks["templated"]["type"] == "shell"
    assert "shift_date('%Y%m%d'" in tasks["templated"]["command"]
    assert tasks["old"]["command"].startswith("python3 - <<'STRATOFLOW_PYTHON_EOF'\nprint 'hi'")


def test_http_and_kubernetes() -> None:
    result = _import(
        _task(1, "get", "HTTP", {"url": "https://api.example.com/x", "httpMethod": "POST",
              "httpParams": [{"prop": "q", "httpParametersType": "PARAMETER", "value": "${system.biz.date}"},
                             {"prop": "X-Key", "httpParametersType": "HEADERS", "value": "k"},
                             {"prop": "n", "httpParametersType": "BODY", "value": "1"}],
              "httpCheckCondition": "BODY_CONTAINS", "condition": "ok", "connectTimeout": 60000}),
        _task(2, "pod", "K8S", {"image": "busybox", "namespace": '{"name": "etl", "cluster": "c1"}',
              "command": '["sh", "-c"]', "args": '["echo hi"]', "minCpuCores": 0.5, "minMemorySpace": 256}),
    )  # fmt: skip
    tasks = result.document["tasks"]  # type: ignore[index]
    http = tasks["get"]
    assert http["url"].startswith("https://api.example.com/x?q={{ logical_date | shift_date(")
    assert (http["method"], http["headers"], http["body"]) == ("POST", {"X-Key": "k"}, {"n": "1"})
    assert any("BODY_CONTAINS" in m for m in _unmapped(result, "get"))
    assert any("connectTimeout 60000 ms" in m for m in _unmapped(result, "get"))
    pod = tasks["pod"]
    assert (pod["image"], pod["namespace"], pod["command"]) == (
        "busybox",
        "etl",
        ["sh", "-c", "echo hi"],
    )
    assert (pod["cpu"], pod["memory"]) == ("0.5", "256Mi")
    assert any("cluster 'c1'" in m for m in _unmapped(result, "pod"))


@pytest.mark.parametrize("params", [{"args": '["--date", "${system.biz.date}"]'}, {}])
def test_a_kubernetes_task_without_a_command_is_not_its_arguments_run_as_one(
    params: dict[str, Any],
) -> None:
    """Without ``command`` DolphinScheduler leaves the container's command unset: the
    image's entrypoint runs, with ``args`` if any. A kubernetes task's command replaces the
    entrypoint, which the import cannot know: the arguments were run as the command (its
    first argument as the program), and with none an empty command, which does nothing
    locally and is refused at dispatch on AWS, where the note said the entrypoint ran."""
    result = _import(_task(1, "pod", "K8S", {"image": "etl:1", **params}))
    pod = result.document["tasks"]["pod"]  # type: ignore[index]
    assert pod["type"] == "shell"
    assert "exit 1" in pod["command"]
    (note,) = _unmapped(result, "pod")
    assert "the entrypoint of image 'etl:1'" in note


def _conditions(
    dependence: dict[str, Any], *extra: dict[str, Any], edges: list[tuple[int, int]]
) -> ImportedWorkflow:
    """Tasks a and b, then Conditions task cond (``dependence``) choosing yes or no."""
    return _import(
        _task(1, "a", "SHELL", {"rawScript": "true"}),
        _task(2, "b", "SHELL", {"rawScript": "true"}),
        _task(3, "cond", "CONDITIONS", {"dependence": dependence,
              "conditionResult": {"successNode": [4], "failedNode": [5]}}),
        _task(4, "yes", "SHELL", {"rawScript": "true"}),
        _task(5, "no", "SHELL", {"rawScript": "true"}),
        *extra,
        edges=[(3, 4), (3, 5), *edges],
    )  # fmt: skip


def _decides(result: ImportedWorkflow, **ran: bool) -> list[str]:
    """The branches cond chooses when the witness tasks named in ``ran`` ran (or not)."""
    body = result.document["tasks"]["cond"]  # type: ignore[index]
    outputs = {f"cond__{k}": {"outputs": {"met": "true"} if v else {}} for k, v in ran.items()}
    for case in body["cases"]:
        if render_condition(case["when"], {"tasks": outputs}):
            return list(case["next"])
    return list(body.get("default", []))


@pytest.mark.parametrize(
    ("relation", "status", "truth"),
    [
        ("AND", "SUCCESS", lambda a, b: a and b),
        ("OR", "SUCCESS", lambda a, b: a or b),
        ("AND", "FAILURE", lambda a, b: a and b),
        ("OR", "FAILURE", lambda a, b: a or b),
    ],
)
def test_a_conditions_task_is_a_switch_over_what_its_items_saw(
    relation: str, status: str, truth: Any
) -> None:
    """The Conditions task runs once its upstream tasks all ended (whatever their states),
    checks each item's task's state and chooses its success or its failed branch; the other
    branch is skipped. Each item becomes a task that runs only when its task ended so
    (all_success, or all_failed, over it), the Conditions task a switch reading them."""
    items = [{"depTaskCode": c, "status": status} for c in (1, 2)]
    dependence = {"relation": relation,
                  "dependTaskList": [{"relation": relation, "dependItemList": items}]}  # fmt: skip
    result = _conditions(dependence, edges=[(1, 3), (2, 3)])
    tasks = result.document["tasks"]  # type: ignore[index]
    word = "succeeded" if status == "SUCCESS" else "failed"
    witnesses = [f"cond__a_{word}", f"cond__b_{word}"]
    rule = "all_success" if status == "SUCCESS" else "all_failed"
    for witness, upstream in zip(witnesses, ("a", "b"), strict=True):
        assert tasks[witness]["depends_on"] == [upstream]
        assert tasks[witness]["trigger_rule"] == rule
    assert tasks["cond"]["type"] == "switch"
    assert (tasks["cond"]["depends_on"], tasks["cond"]["trigger_rule"]) == (
        ["a", "b", *witnesses], "all_done"
    )  # fmt: skip
    assert (tasks["yes"]["depends_on"], tasks["no"]["depends_on"]) == (["cond"], ["cond"])
    assert "trigger_rule" not in tasks["yes"]
    for a in (True, False):
        for b in (True, False):
            expected = ["yes"] if truth(a, b) else ["no"]
            assert _decides(result, **{f"a_{word}": a, f"b_{word}": b}) == expected


def test_the_branches_still_wait_for_the_conditions_task_s_other_upstream_tasks() -> None:
    """a and b feed cond, which checks a only: DolphinScheduler runs cond (and then a
    branch) once b ended too; the branches lost b and ran before it ended."""
    dependence = {"relation": "AND", "dependTaskList": [
        {"relation": "AND", "dependItemList": [{"depTaskCode": 1, "status": "SUCCESS"}]}]}  # fmt: skip
    result = _conditions(dependence, edges=[(1, 3), (2, 3)])
    tasks = result.document["tasks"]  # type: ignore[index]
    assert tasks["cond"]["depends_on"] == ["a", "b", "cond__a_succeeded"]
    assert tasks["yes"]["depends_on"] == ["cond"]  # after b, through cond
    assert _decides(result, a_succeeded=True) == ["yes"]
    assert _decides(result, a_succeeded=False) == ["no"]


def test_mixed_conditions_map_too() -> None:
    """pydolphinscheduler's example: a and b succeeded, and c failed; or, between groups."""
    dependence = {"relation": "OR", "dependTaskList": [
        {"relation": "AND", "dependItemList": [{"depTaskCode": 1, "status": "SUCCESS"},
                                               {"depTaskCode": 2, "status": "FAILURE"}]},
        {"relation": "AND", "dependItemList": [{"depTaskCode": 6, "status": "SUCCESS"}]},
    ]}  # fmt: skip
    result = _conditions(
        dependence, _task(6, "c", "SHELL", {"rawScript": "true"}), edges=[(1, 3), (2, 3), (6, 3)]
    )
    assert not _unmapped(result, "cond")
    assert _decides(result, a_succeeded=True, b_failed=True, c_succeeded=False) == ["yes"]
    assert _decides(result, a_succeeded=True, b_failed=False, c_succeeded=False) == ["no"]
    assert _decides(result, a_succeeded=False, b_failed=False, c_succeeded=True) == ["yes"]


def test_names_are_made_valid_and_unique() -> None:
    result = _import(
        _task(1, "load data", "SHELL", {"rawScript": "true"}),
        _task(2, "load/data", "SHELL", {"rawScript": "true"}),
        _task(3, "数据", "SHELL", {"rawScript": "true"}),
        edges=[(1, 2)],
    )
    tasks = result.document["tasks"]  # type: ignore[index]
    assert set(tasks) >= {"load_data", "load_data_2"}
    assert tasks["load_data_2"]["depends_on"] == ["load_data"]
    assert len(tasks) == 3


def test_an_offline_schedule_is_left_out_and_said() -> None:
    export = {
        "processDefinition": {"name": "wf"},
        "processTaskRelationList": [{"preTaskCode": 0, "postTaskCode": 1}],
        "taskDefinitionList": [_task(1, "a", "SHELL", {"rawScript": "true"})],
        "schedule": {
            "crontab": "0 0 3 * * ? *",
            "timezoneId": "Europe/Paris",
            "releaseState": "OFFLINE",
        },
    }
    result = convert(read_export(export)[0], "placeholder")
    assert "schedule" not in (result.document or {})
    assert any("offline" in n.message and "cron(0 3 * * ? *)" in n.message for n in result.notes)


def test_switch_with_3_0_list_branches_and_an_unknown_code() -> None:
    switch = {"switchResult": {"dependTaskList": [{"condition": "${n} > 2", "nextNode": [2, 3]},
                                                  {"condition": "${n} > 9", "nextNode": 99}],
                               "nextNode": [3]}}  # fmt: skip
    result = _import(
        _task(1, "s", "SWITCH", switch),
        _task(2, "a", "SHELL", {"rawScript": "true"}),
        _task(3, "b", "SHELL", {"rawScript": "true"}),
        edges=[(1, 2), (1, 3)],
        globalParams='[{"prop": "n", "direct": "IN", "type": "VARCHAR", "value": "1"}]',
    )
    body = result.document["tasks"]["s"]  # type: ignore[index]
    assert body["cases"] == [
        {"when": "{{ ((params.n | js_value) | js_op('>', 2)) }}", "next": ["a", "b"]}
    ]
    assert body["default"] == ["b"]
    assert any("unknown task code 99" in m for m in _unmapped(result, "s"))


# ----------------------------------------------------------------------------- by code
def _export(
    name: str, code: int, *tasks: dict[str, Any], project: str = "Analytics"
) -> dict[str, Any]:
    return {
        "workflowDefinition": {"name": name, "code": code, "projectName": project},
        "workflowTaskRelationList": [{"preTaskCode": 0, "postTaskCode": t["code"]} for t in tasks],
        "taskDefinitionList": list(tasks),
    }


def _import_all(*exports: dict[str, Any]) -> list[ImportedWorkflow]:
    flows = read_export(list(exports))
    table = code_table(flows)
    results = [convert(flow, "placeholder", table) for flow in flows]
    for result in results:
        assert result.document is not None
        parse_workflow(result.document)
    return results


CHILD = _export("Child Flow", 500, _task(51, "load it", "SHELL", {"rawScript": "true"}))


@pytest.mark.parametrize("key", ["processDefinitionCode", "workflowDefinitionCode"])
def test_sub_process_names_the_child_by_its_code(key: str) -> None:
    parent = _export("parent", 600, _task(61, "child", "SUB_PROCESS", {key: 500}))
    _, result = _import_all(CHILD, parent)
    assert result.document["tasks"]["child"] == {"type": "workflow", "workflow": "child_flow"}  # type: ignore[index]
    assert not _unmapped(result, "child")


def test_a_sub_workflow_in_another_project_is_named_project_slash_name() -> None:
    other = _export(
        "Child Flow", 500, _task(51, "a", "SHELL", {"rawScript": "true"}), project="Ops"
    )
    parent = _export(
        "parent", 600, _task(61, "child", "SUB_WORKFLOW", {"workflowDefinitionCode": 500})
    )
    _, result = _import_all(other, parent)
    assert result.document["tasks"]["child"]["workflow"] == "ops/child_flow"  # type: ignore[index]


def test_a_sub_process_outside_the_import_is_reported_by_code() -> None:
    (result,) = _import_all(
        _export("parent", 600, _task(61, "child", "SUB_PROCESS", {"processDefinitionCode": 999}))
    )
    assert result.document["tasks"]["child"]["description"].startswith("PLACEHOLDER")  # type: ignore[index]
    assert any(
        "definition code 999 is not a workflow of this import" in m
        for m in _unmapped(result, "child")
    )


def _dependent(
    relation: str, *groups: tuple[str, list[dict[str, Any]]], **extra: Any
) -> dict[str, Any]:
    return _task(71, "wait", "DEPENDENT", {"dependence": {
        "relation": relation,
        "dependTaskList": [{"relation": r, "dependItemList": items} for r, items in groups],
        **extra,
    }})  # fmt: skip


def _item(code: int, task: int | str = 0, date: str = "today") -> dict[str, Any]:
    return {
        "projectCode": 1,
        "definitionCode": code,
        "depTaskCode": task,
        "cycle": "day",
        "dateValue": date,
    }


def test_dependent_items_map_to_all_or_any() -> None:
    wait = _dependent(
        "AND", ("AND", [_item(500), _item(500, 51, "last1Hour")]), ("OR", [_item(500, date="lastMonthEnd")]),
        checkInterval=30, failurePolicy="DEPENDENT_FAILURE_FAILURE",
    )  # fmt: skip
    _, result = _import_all(CHILD, _export("dep", 700, wait))
    assert result.document["tasks"]["wait"] == {  # type: ignore[index]
        "type": "dependency",
        "all": [
            {"workflow": "child_flow", "date": "today"},
            {"workflow": "child_flow", "date": "last1Hours", "task": "load_it"},
            {"workflow": "child_flow", "date": "lastMonthEnd"},
        ],
        "check_interval": "30s",
    }
    assert not _unmapped(result, "wait")
    anyof = _dependent("OR", ("AND", [_item(500)]), ("OR", [_item(500, date="last7Days")]))
    _, result = _import_all(CHILD, _export("dep", 700, anyof))
    assert list(result.document["tasks"]["wait"]) == ["type", "any"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("wait", "why"),
    [
        (
            _dependent("AND", ("OR", [_item(500), _item(500)]), ("AND", [_item(500)])),
            "mix AND and OR",
        ),
        (_dependent("AND", ("AND", [_item(404)])), "definition code 404"),
        (_dependent("AND", ("AND", [_item(500, 77)])), "task code 77"),
        (_dependent("AND", ("AND", [_item(500, date="nextDay")])), "'nextDay'"),
    ],
)
def test_a_dependent_task_that_does_not_map_is_reported(wait: dict[str, Any], why: str) -> None:
    _, result = _import_all(CHILD, _export("dep", 700, wait))
    assert result.document["tasks"]["wait"]["description"].startswith("PLACEHOLDER")  # type: ignore[index]
    assert any(why in m for m in _unmapped(result, "wait")), _unmapped(result, "wait")


def test_dependent_waiting_policy_is_reported() -> None:
    wait = _dependent("AND", ("AND", [_item(500)]), failurePolicy="DEPENDENT_FAILURE_WAITING")
    _, result = _import_all(CHILD, _export("dep", 700, wait))
    assert result.document["tasks"]["wait"]["type"] == "dependency"  # type: ignore[index]
    assert any("DEPENDENT_FAILURE_WAITING" in m for m in _unmapped(result, "wait"))


def test_sql_tasks() -> None:
    result = _import(
        _task(1, "q", "SQL", {"type": "MYSQL", "datasource": 3, "sql": "select * from t where d = '${dt}'",
                              "sqlType": "0", "localParams": [{"prop": "dt", "direct": "IN", "value": "x"}]}),
        _task(2, "w", "SQL", {"type": "POSTGRESQL", "datasource": 4, "sql": "insert into t values (1);",
                              "sqlType": "1", "preStatements": ["set role etl"],
                              "postStatements": ["analyze t"]}),
        _task(3, "h", "SQL", {"type": "HIVE", "datasource": 5, "sql": "select 1", "sqlType": "0",
                              "postStatements": ["drop table x"]}),
    )  # fmt: skip
    tasks = result.document["tasks"]  # type: ignore[index]
    # '${dt}' is bound, quotes and all, as DolphinScheduler binds it (never pasted)
    assert tasks["q"]["sql"] == "select * from t where d = %(dt)s"
    assert tasks["q"]["parameters"] == {"dt": "{{ params.dt }}"}
    assert (tasks["q"]["connection"], tasks["q"]["outputs"]) == ("datasource-3", "first_row")
    assert tasks["w"]["sql"] == "set role etl;\ninsert into t values (1);\nanalyze t\n"
    assert "parameters" not in tasks["w"]
    assert tasks["w"]["outputs"] == "none"
    assert not _unmapped(result, "w")
    changed = [n.message for n in result.notes if n.task == "q"]
    assert any("--type mysql" in m for m in changed)
    # Hive: no connection type; the post statement runs after the query, in a task of its
    # own (the outputs are the query's)
    assert any("HIVE has no Stratoflow connection type" in m for m in _unmapped(result, "h"))
    assert tasks["h"]["sql"] == "select 1"
    assert tasks["h__post_1"]["sql"] == "drop table x"
    assert tasks["h__post_1"]["depends_on"] == ["h"]


def test_pydolphinscheduler_priorities_and_task_groups(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        """
workflow:
  name: pd
  project: etl
  process_instance_priority: low
tasks:
  - {name: a, task_type: Shell, command: "true", task_priority: HIGHEST}
  - {name: b, task_type: Shell, command: "true", task_group_id: 3, task_group_priority: -150,
     deps: [a]}
"""
    )
    result = import_file(path, "dolphinscheduler")
    workflow = result.workflows[0]
    doc: dict[str, Any] = workflow.document  # type: ignore[assignment]
    parse_workflow(doc)
    assert doc["priority"] == -10
    assert doc["tasks"]["a"]["priority"] == 20
    assert (doc["tasks"]["b"]["pool"], doc["tasks"]["b"]["priority"]) == ("taskgroup-3", -100)
    messages = " | ".join(n.message for n in workflow.notes)
    assert "task group priority -150" in messages
    assert "stratoflow pools set taskgroup-3 --slots N --project etl" in messages
    assert result.complete


def test_out_parameters_the_import_cannot_carry_are_reported(tmp_path: Path) -> None:
    """A shell task's OUT parameter set by ``${setValue(...)}`` becomes an output; one the
    script never sets, and a FILE one (DolphinScheduler passes the file downstream;
    Stratoflow passes no files between tasks), were dropped without a word."""
    path = tmp_path / "wf.yaml"
    path.write_text(
        """
workflow: {name: outs}
tasks:
  - name: a
    task_type: Shell
    command: |
      echo '${setValue(rows=42)}'
      echo 123 >> text.txt
    output_params: {rows: "", never: VARCHAR(), data: FILE(text.txt)}
"""
    )
    (workflow,) = import_file(path, "dolphinscheduler").workflows
    doc: dict[str, Any] = workflow.document  # type: ignore[assignment]
    parse_workflow(doc)
    assert 'rows=42\' >> "$STRATOFLOW_OUTPUT"' in doc["tasks"]["a"]["command"]
    unmapped = [n.message for n in workflow.notes if n.severity == "unmapped" and n.task == "a"]
    assert not [m for m in unmapped if "'rows'" in m]
    (never,) = [m for m in unmapped if "'never'" in m]
    assert "never set by the script" in never
    assert "never=VALUE" in never
    (data,) = [m for m in unmapped if "'data'" in m]
    assert "FILE(text.txt)" in data
    assert "files are not passed between tasks" in data


def test_an_out_param_set_on_parallel_branches_is_reported_where_it_is_read() -> None:
    """Two upstream tasks on parallel branches set ``k``: DolphinScheduler passes down the
    one that ended last, which an import cannot know; it reads the global and says so, in
    the task that reads ``${k}`` only."""

    def setter(code: int, name: str) -> dict[str, Any]:
        return _task(code, name, "SHELL", {
            "rawScript": "echo '${setValue(k=" + name + ")}'\n",
            "localParams": [{"prop": "k", "direct": "OUT", "type": "VARCHAR", "value": ""}]})  # fmt: skip

    reader = _task(3, "e", "SHELL", {"rawScript": "echo ${k}\n", "localParams": []})
    other = _task(4, "f", "SHELL", {"rawScript": "echo f\n", "localParams": []})
    result = _import(
        setter(1, "p1"), setter(2, "p2"), reader, other, edges=[(1, 3), (2, 3), (1, 4), (2, 4)],
        globalParams='[{"prop": "k", "direct": "IN", "type": "VARCHAR", "value": "g"}]',
    )  # fmt: skip
    doc: dict[str, Any] = result.document  # type: ignore[assignment]
    assert doc["tasks"]["e"]["command"] == "echo {{ params.k }}\n"
    (note,) = [m for m in _unmapped(result, "e") if "${k}" in m]
    assert "different paths (p1, p2)" in note
    assert "read here as the global param 'k'" in note
    assert not [m for m in _unmapped(result, "f") if "${k}" in m]  # f does not read it


def _sub_pair(*sub_params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A child (global ``region``; task ``extract`` sets OUT ``rows``) and a parent whose
    SUB_PROCESS task has ``sub_params`` and whose task ``after`` reads ``${rows}``."""
    out = [{"prop": "rows", "direct": "OUT", "type": "VARCHAR", "value": ""}]
    child = _export("child", 5001, _task(51, "extract", "SHELL", {
        "rawScript": "echo '${setValue(rows=42)}'\n", "localParams": out}))  # fmt: skip
    child["workflowDefinition"]["globalParams"] = (
        '[{"prop": "region", "direct": "IN", "type": "VARCHAR", "value": "us"}]'
    )
    parent = _export(
        "parent", 5002,
        _task(61, "run", "SUB_PROCESS", {"processDefinitionCode": 5001,
                                          "localParams": list(sub_params)}),
        _task(62, "after", "SHELL", {"rawScript": "echo ${rows}\n", "localParams": []}),
    )  # fmt: skip
    parent["workflowTaskRelationList"] = [
        {"preTaskCode": 0, "postTaskCode": 61},
        {"preTaskCode": 61, "postTaskCode": 62},
    ]
    return child, parent


def test_a_sub_process_passes_only_what_its_child_declares_and_returns_what_it_declares() -> None:
    """A local param the child does not declare made the child's trigger fail ("unknown
    parameter"); an OUT param comes back only if the SUB_PROCESS task declares it, as in
    DolphinScheduler, and reads as empty when the child's task did not write it."""
    child, parent = _sub_pair(
        {"prop": "region", "direct": "IN", "type": "VARCHAR", "value": "eu"},
        {"prop": "batch", "direct": "IN", "type": "VARCHAR", "value": "7"},
        {"prop": "rows", "direct": "OUT", "type": "VARCHAR", "value": ""},
    )
    _, converted = _import_all(child, parent)
    doc: dict[str, Any] = converted.document  # type: ignore[assignment]
    assert doc["tasks"]["run"]["params"] == {"region": "eu"}
    assert any("local params batch are not passed" in m for m in _unmapped(converted, "run"))
    command = doc["tasks"]["after"]["command"]
    assert (
        command == "echo {{ ((tasks.run.outputs.extract | default({}))['rows'] | default('')) }}\n"
    )
    assert (
        render(command, {"tasks": {"run": {"outputs": {"extract": {"rows": "42"}}}}}) == "echo 42\n"
    )
    assert render(command, {"tasks": {"run": {"outputs": {}}}}) == "echo \n"  # it did not run
    _, undeclared = _import_all(*_sub_pair())
    assert undeclared.document["tasks"]["after"]["command"] == "echo ${rows}\n"  # type: ignore[index]


def test_a_child_passes_back_its_workflow_s_out_params() -> None:
    """DolphinScheduler 3.2+: a SUB_PROCESS task needs no OUT param of its own; the child's
    workflow declares what it passes back (a global param with direction OUT)."""
    child, parent = _sub_pair()
    child["workflowDefinition"]["globalParams"] = (
        '[{"prop": "rows", "direct": "OUT", "type": "VARCHAR", "value": ""}]'
    )
    _, converted = _import_all(child, parent)
    command = converted.document["tasks"]["after"]["command"]  # type: ignore[index]
    assert (
        render(command, {"tasks": {"run": {"outputs": {"extract": {"rows": "42"}}}}}) == "echo 42\n"
    )


def test_an_upstream_that_did_not_write_its_param_gives_its_declared_value_or_the_global() -> None:
    def setter(code: int, declared: str) -> dict[str, Any]:
        return _task(code, f"s{code}", "SHELL", {"rawScript": "true\n", "localParams": [
            {"prop": "k", "direct": "OUT", "type": "VARCHAR", "value": declared}]})  # fmt: skip

    for declared, expected in (("5", "echo 5\n"), ("", "echo g\n")):
        result = _import(
            setter(1, declared), _task(2, "r", "SHELL", {"rawScript": "echo ${k}\n"}),
            edges=[(1, 2)],
            globalParams='[{"prop": "k", "direct": "IN", "type": "VARCHAR", "value": "g"}]',
        )  # fmt: skip
        command = result.document["tasks"]["r"]["command"]  # type: ignore[index]
        assert render(command, {"tasks": {"s1": {"outputs": {}}}, "params": {"k": "g"}}) == expected
        assert (
            render(command, {"tasks": {"s1": {"outputs": {"k": "1"}}}, "params": {}}) == "echo 1\n"
        )


def test_what_no_task_of_the_child_sets_is_not_read_from_the_sub_workflow_s_outputs() -> None:
    """Its outputs are keyed by the child's tasks: ``tasks.run.outputs.rows`` read a child
    task named rows, or nothing, silently. A name no child task sets reads the fallback."""
    child, parent = _sub_pair({"prop": "rows", "direct": "OUT", "type": "VARCHAR", "value": "9"})
    child["taskDefinitionList"][0]["taskParams"]["localParams"] = []  # extract sets nothing
    child["workflowDefinition"]["globalParams"] = (
        '[{"prop": "rows", "direct": "OUT", "type": "VARCHAR", "value": ""}]'
    )
    _, converted = _import_all(child, parent)
    doc: dict[str, Any] = converted.document  # type: ignore[assignment]
    assert doc["tasks"]["after"]["command"] == "echo {{ '9' }}\n"  # the declared value
    assert any(
        "the sub-workflow sets no OUT param 'rows'" in m for m in _unmapped(converted, "run")
    )


def test_a_value_set_on_paths_that_do_not_meet_and_passed_to_a_child_is_reported() -> None:
    child, parent = _sub_pair()
    out = [{"prop": "region", "direct": "OUT", "type": "VARCHAR", "value": ""}]
    parent["taskDefinitionList"] += [
        _task(71, "p1", "SHELL", {"rawScript": "true\n", "localParams": out}),
        _task(72, "p2", "SHELL", {"rawScript": "true\n", "localParams": out}),
    ]
    parent["workflowTaskRelationList"] = [
        {"preTaskCode": 0, "postTaskCode": 71}, {"preTaskCode": 0, "postTaskCode": 72},
        {"preTaskCode": 71, "postTaskCode": 61}, {"preTaskCode": 72, "postTaskCode": 61},
        {"preTaskCode": 61, "postTaskCode": 62},
    ]  # fmt: skip
    _, converted = _import_all(child, parent)
    assert any("${region} is set by upstream tasks on different paths (p1, p2)" in m
               for m in _unmapped(converted, "run"))  # fmt: skip


# ------------------------------------------------------------------- pydolphinscheduler's rules
def _pydolphin(tmp_path: Path, text: str) -> ImportedWorkflow:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    (workflow,) = import_file(path, "dolphinscheduler").workflows
    assert workflow.document is not None
    parse_workflow(workflow.document)
    return workflow


def test_pydolphinscheduler_sql_type_is_detected_as_the_sdk_does(tmp_path: Path) -> None:
    """Sql.sql_type: a query unless the first line holds insert/delete/drop/update/truncate/
    alter/create (at its start or after a space); a SQL starting with a /* comment */ was
    read as a statement, so its first row was not the task's outputs."""
    workflow = _pydolphin(
        tmp_path,
        """
workflow: {name: q}
tasks:
  - {name: commented, task_type: Sql, datasource_name: wh, sql: "/* nightly */ select 1 AS n"}
  - {name: call, task_type: Sql, datasource_name: wh, sql: "call refresh()"}
  - {name: ins, task_type: Sql, datasource_name: wh, sql: "/* load */ INSERT INTO t VALUES (1)"}
  - {name: upd, task_type: Sql, datasource_name: wh, sql: "with x as (select 1) update t set a = 1"}
  - {name: forced, task_type: Sql, datasource_name: wh, sql: "select 1", sql_type: "1"}
""",
    )
    tasks = workflow.document["tasks"]  # type: ignore[index]
    outputs = {name: body["outputs"] for name, body in tasks.items()}
    assert outputs == {
        "commented": "first_row", "call": "first_row", "ins": "none", "upd": "none",
        "forced": "none",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "live"),
    [
        ("release_state: offline", False),
        ("release_state: OFFLINE", False),
        ('release_state: "${CONFIG.WORKFLOW_RELEASE_STATE}"', True),  # the SDK's default: online
        ("release_state: online", True),
        ("online_schedule: false", False),
    ],
)
def test_a_pydolphinscheduler_workflow_released_offline_gets_no_live_schedule(
    tmp_path: Path, settings: str, live: bool
) -> None:
    """An offline workflow's schedule does not fire in DolphinScheduler; imported, it went
    live with the first apply. Left out as an offline schedule of an export is, and said."""
    workflow = _pydolphin(
        tmp_path,
        f"""
workflow:
  name: nightly
  schedule: "0 0 2 * * ? *"
  {settings}
tasks:
  - {{name: a, task_type: Shell, command: "true"}}
""",
    )
    assert ("schedule" in workflow.document) is live  # type: ignore[operator]
    if not live:
        (note,) = [n.message for n in workflow.notes if n.field == "schedule"]
        assert "offline" in note
        assert "cron(0 2 * * ? *)" in note


def test_an_export_of_an_offline_workflow_gets_no_live_schedule() -> None:
    """A 3.x definition's own releaseState OFFLINE: DolphinScheduler fires none of its
    schedules (it takes a workflow offline with its schedule)."""
    export = {
        "workflowDefinition": {"name": "wf", "releaseState": "OFFLINE"},
        "workflowTaskRelationList": [{"preTaskCode": 0, "postTaskCode": 1}],
        "taskDefinitionList": [_task(1, "a", "SHELL", {"rawScript": "true"})],
        "schedule": {"crontab": "0 0 3 * * ? *", "timezoneId": "UTC", "releaseState": "ONLINE"},
    }
    result = convert(read_export(export)[0], "placeholder")
    assert "schedule" not in (result.document or {})
    (note,) = [n.message for n in result.notes if n.field == "schedule"]
    assert "the workflow was offline" in note
    assert "cron(0 3 * * ? *)" in note
    export["workflowDefinition"]["releaseState"] = "ONLINE"  # type: ignore[index]
    assert "schedule" in (convert(read_export(export)[0], "placeholder").document or {})


def test_a_released_pydolphinscheduler_schedule_keeps_its_zone_and_start(tmp_path: Path) -> None:
    workflow = _pydolphin(
        tmp_path,
        """
workflow: {name: tutorial, schedule: "0 0 0 * * ? *", start_time: "2021-01-01",
           release_state: online}
tasks:
  - {name: a, task_type: Shell, command: "true"}
""",
    )
    assert workflow.document["schedule"] == {  # type: ignore[index]
        "cron": "cron(0 0 * * ? *)", "timezone": "Asia/Shanghai", "start": "2021-01-01T00:00:00"
    }  # fmt: skip


def test_pydolphinscheduler_tasks_of_one_name_are_all_kept(tmp_path: Path) -> None:
    """pydolphinscheduler keys tasks by code, so two tasks may share a name and both run;
    a name in ``deps`` (and a branch's or condition's) means the last task of that name,
    as its parser's name -> task map keeps the last. The import kept only the last one and
    called the workflow complete."""
    workflow = _pydolphin(
        tmp_path,
        """
workflow: {name: dup}
tasks:
  - {name: load, task_type: Shell, command: echo first}
  - {name: extract, task_type: Shell, command: echo extract}
  - {name: load, task_type: Shell, command: echo second, deps: [extract]}
  - {name: report, task_type: Shell, command: echo report, deps: [load]}
""",
    )
    tasks = workflow.document["tasks"]  # type: ignore[index]
    assert {t: (b["command"], b.get("depends_on")) for t, b in tasks.items()} == {
        "load": ("echo first", None),
        "extract": ("echo extract", None),
        "load_2": ("echo second", ["extract"]),
        "report": ("echo report", ["load_2"]),
    }
    (note,) = [n.message for n in workflow.notes if "2 tasks are named 'load'" in n.message]
    assert "the last" in note


def test_pydolphinscheduler_global_params_are_text_as_dolphinscheduler_reads_them(
    tmp_path: Path,
) -> None:
    """A workflow ``param`` is a VARCHAR global parameter: the SDK sends its value as JSON,
    so ``true`` is the text 'true' in ``${debug}`` and ``1`` the text '1' (a run may pass
    '007' or 'abc'). The import kept YAML's types: {{ params.debug }} rendered 'True', and a
    run's -p n=007 became 7 (or was refused for 'abc')."""
    workflow = _pydolphin(
        tmp_path,
        """
workflow:
  name: typed
  param: {debug: true, n: 1, ratio: 1.5, name: x, empty: null}
tasks:
  - {name: a, task_type: Shell, command: "echo ${debug} ${n} ${ratio} ${name} ${empty}"}
""",
    )
    assert workflow.document["params"] == {  # type: ignore[index]
        "debug": "true", "n": "1", "ratio": "1.5", "name": "x", "empty": "",
    }  # fmt: skip


def test_pydolphinscheduler_dependent_dates_are_read_whatever_their_case(tmp_path: Path) -> None:
    """The SDK reads dependent_date by its DependentDate constant's name in any case
    (``this_month``, ``Last_Wednesday``: it upper-cases the text first), else as the value
    itself (``last24Hours``); the import knew only the upper-case names and made such a
    task a failing placeholder."""
    workflow = _pydolphin(
        tmp_path,
        """
workflow: {name: dep}
tasks:
  - name: d
    task_type: Dependent
    op: and
    groups:
      - op: and
        groups:
          - {project_name: p, workflow_name: up, dependent_date: this_month}
          - {project_name: p, workflow_name: up, dependent_date: Last_Wednesday}
          - {project_name: p, workflow_name: up, dependent_date: last_twenty_four_hours}
          - {project_name: p, workflow_name: up, dependent_date: last24Hours}
          - {project_name: p, workflow_name: up, dependent_date: TODAY}
""",
    )
    task = workflow.document["tasks"]["d"]  # type: ignore[index]
    assert [item["date"] for item in task["all"]] == [
        "thisMonth", "lastWednesday", "last24Hours", "last24Hours", "today"
    ]  # fmt: skip


# ----------------------------------------------------------------------------- DS 1.x
def _v1(name: str, definition_id: int, *tasks: dict[str, Any]) -> dict[str, Any]:
    """A DolphinScheduler 1.x export item (``processDefinitionJson`` as text)."""
    body = {"globalParams": [], "tasks": list(tasks), "timeout": 0}
    return {
        "projectName": "legacy",
        "processDefinitionName": name,
        "processDefinitionId": definition_id,
        "processDefinitionJson": json.dumps(body),
    }


def _v1_task(
    name: str, kind: str, params: dict[str, Any], *pre: str, **extra: Any
) -> dict[str, Any]:
    return {"type": kind, "id": f"tasks-{name}", "name": name, "params": params,
            "runFlag": "NORMAL", "preTasks": list(pre), "dependence": {}, **extra}  # fmt: skip


DEPENDENCE_1X = {
    "relation": "AND",
    "dependTaskList": [{"relation": "OR", "dependItemList": [
        {"projectId": 1, "definitionId": 12, "depTasks": "ALL", "cycle": "day",
         "dateValue": "today"},
        {"projectId": 1, "definitionId": 12, "depTasks": "load", "cycle": "day",
         "dateValue": "last1Days"},
    ]}],
}  # fmt: skip


def test_a_1x_dependent_task_waits_as_a_3x_one_does() -> None:
    """DolphinScheduler 1.x keeps a DEPENDENT task's ``dependence`` beside its (empty)
    ``params``, as it does a CONDITIONS task's: only the latter was read, so every 1.x
    DEPENDENT task became a failing placeholder."""
    upstream = _v1("upstream", 12, _v1_task("load", "SHELL", {"rawScript": "true"}))
    dependent = _v1(
        "report",
        13,
        _v1_task("wait", "DEPENDENT", {}, dependence=DEPENDENCE_1X),
        _v1_task("publish", "SHELL", {"rawScript": "true"}, "wait"),
    )
    _, result = _import_all(upstream, dependent)
    tasks = result.document["tasks"]  # type: ignore[index]
    assert tasks["wait"] == {
        "type": "dependency",
        "any": [
            {"workflow": "upstream", "date": "today"},
            {"workflow": "upstream", "date": "last1Days", "task": "load"},
        ],
    }
    assert not _unmapped(result, "wait")


# ----------------------------------------------------------------------------- left out
def _routed(*extra: dict[str, Any], edges: list[tuple[int, int]]) -> ImportedWorkflow:
    """Switch ``route`` (``${n} > 3`` -> big, a Spark task Stratoflow has no equivalent
    for, else small) imported with ``--unmapped report``."""
    switch = {"switchResult": {"dependTaskList": [{"condition": "${n} > 3", "nextNode": 2}],
                               "nextNode": 3}}  # fmt: skip
    return _import(
        _task(1, "route", "SWITCH", switch),
        _task(2, "big", "SPARK", {"mainClass": "Big"}),
        _task(3, "small", "SHELL", {"rawScript": "echo small"}),
        *extra,
        edges=[(1, 2), (1, 3), *edges],
        mode="report",
        globalParams='[{"prop": "n", "direct": "IN", "type": "INTEGER", "value": "5"}]',
    )


def test_a_branch_left_out_hands_its_case_to_its_children() -> None:
    """A switch branch left out (--unmapped report) deleted its case, so the switch took its
    default where DolphinScheduler takes that branch; its only child is the branch now."""
    result = _routed(_task(4, "after_big", "SHELL", {"rawScript": "true"}), edges=[(2, 4)])
    tasks = result.document["tasks"]  # type: ignore[index]
    assert "big" not in tasks
    (case,) = tasks["route"]["cases"]
    assert case["next"] == ["after_big"]
    assert tasks["route"]["default"] == ["small"]
    assert tasks["after_big"]["depends_on"] == ["route"]
    (note,) = _unmapped(result, "big")
    assert "left out" in note
    assert "after_big" in note


@pytest.mark.parametrize(
    ("extra", "edges"),
    [
        ((), []),  # no child to take its place: the case would be gone
        # a child with another parent: as a branch the switch would skip it whatever that
        # parent did, where DolphinScheduler runs it when the parent ran
        (
            (
                _task(4, "after_big", "SHELL", {"rawScript": "true"}),
                _task(5, "other", "SHELL", {"rawScript": "true"}),
            ),
            [(2, 4), (5, 4)],
        ),
    ],
)
def test_a_branch_whose_children_cannot_take_its_place_stays_as_a_task_that_does_nothing(
    extra: tuple[dict[str, Any], ...], edges: list[tuple[int, int]]
) -> None:
    result = _routed(*extra, edges=edges)
    tasks = result.document["tasks"]  # type: ignore[index]
    assert tasks["big"]["type"] == "shell"
    assert tasks["big"]["depends_on"] == ["route"]
    assert "exit" not in tasks["big"]["command"]  # not a failing placeholder
    assert tasks["route"]["cases"][0]["next"] == ["big"]
    (note,) = _unmapped(result, "big")
    assert "switch branch" in note
    assert "does nothing" in note


# ----------------------------------------------------------------------------- SQL binding
SQL_GLOBALS = json.dumps([
    {"prop": "region", "direct": "IN", "type": "VARCHAR", "value": "eu"},
    {"prop": "tbl", "direct": "IN", "type": "VARCHAR", "value": "sales"},
    {"prop": "ids", "direct": "IN", "type": "LIST", "value": "[1, 2]"},
])  # fmt: skip


def _sql_task(code: int, name: str, sql: str, sql_type: str = "0", **extra: Any) -> dict[str, Any]:
    params = {"type": "POSTGRESQL", "datasource": 1, "sql": sql, "sqlType": sql_type, **extra}
    return _task(code, name, "SQL", params)


def test_sql_parameters_are_bound_and_bang_parameters_pasted() -> None:
    """DolphinScheduler's SqlTask binds each ``${x}`` (a quote each side going with it) as a
    prepared statement's parameter and pastes ``!{x}`` (the quotes around it too) as text;
    the import pasted ``${x}`` into the SQL, where a value could rewrite the statement."""
    sql = ("select count(*) as n from !{tbl} where region = ${region} and code = '${region}' "
           "and name like 'a%' and day = '$[yyyyMMdd]' and t = '!{tbl}' and ${unknown} = 1")  # fmt: skip
    result = _import(_sql_task(1, "q", sql), globalParams=SQL_GLOBALS)
    body = result.document["tasks"]["q"]  # type: ignore[index]
    text = "{{ params.tbl | replace('%', '%%') }}"
    day = "{{ logical_date | shift_date('%Y%m%d', 'UTC') | replace('%', '%%') }}"
    assert body["sql"] == (
        f"select count(*) as n from {text} where region = %(region)s and code = %(region)s "
        f"and name like 'a%%' and day = '{day}' and t = {text} and ${{unknown}} = 1"
    )
    assert body["parameters"] == {"region": "{{ params.region }}"}
    (unknown,) = _unmapped(result, "q")
    assert "${unknown}" in unknown


def test_a_list_parameter_and_built_in_parameters_in_sql() -> None:
    result = _import(
        _sql_task(1, "q", "select 1 where id in (${ids}) and d = ${system.biz.date}"),
        globalParams=SQL_GLOBALS,
    )
    body = result.document["tasks"]["q"]  # type: ignore[index]
    assert body["sql"] == "select 1 where id in (%(ids)s) and d = %(system_biz_date)s"
    assert body["parameters"] == {
        "ids": "{{ params.ids }}",
        "system_biz_date": "{{ logical_date | shift_date('%Y%m%d', 'UTC', days=-1) }}",
    }
    (listed,) = _unmapped(result, "q")
    assert "LIST" in listed
    assert "one value" in listed


def test_statements_around_a_bound_sql_run_as_a_chain_of_sql_tasks() -> None:
    """A script of several statements takes no parameters in Stratoflow: where one binds
    a value, each statement is an sql task of its own, in DolphinScheduler's order."""
    switch = {"switchResult": {"dependTaskList": [{"condition": "true", "nextNode": 2}],
                               "nextNode": 3}}  # fmt: skip
    result = _import(
        _task(1, "route", "SWITCH", switch),
        _sql_task(2, "load", "insert into t select * from s where r = '${region}'; analyze s",
                  "1", preStatements=["delete from t where r = '${region}'", "set x = 1"],
                  postStatements=["analyze t"]),
        _task(3, "other", "SHELL", {"rawScript": "true"}),
        _task(4, "after", "SHELL", {"rawScript": "true"}),
        edges=[(1, 2), (1, 3), (2, 4)],
        globalParams=SQL_GLOBALS,
    )  # fmt: skip
    tasks = result.document["tasks"]  # type: ignore[index]
    chain = ["load__pre_1", "load__pre_2", "load__sql_1", "load", "load__post_1"]
    assert [t for t in tasks if t.startswith("load")] == chain
    sqls = {t: (tasks[t]["sql"], tasks[t].get("parameters")) for t in chain}
    bound = {"region": "{{ params.region }}"}
    assert sqls == {
        "load__pre_1": ("delete from t where r = %(region)s", bound),
        "load__pre_2": ("set x = 1", None),
        "load__sql_1": ("insert into t select * from s where r = %(region)s", bound),
        "load": ("analyze s", None),
        "load__post_1": ("analyze t", None),
    }
    # the chain stands where the task stood: the switch chooses its first statement
    assert tasks["route"]["cases"][0]["next"] == ["load__pre_1"]
    assert tasks["load__pre_1"]["depends_on"] == ["route"]
    for before, after in itertools.pairwise(chain):
        assert tasks[after]["depends_on"] == [before]
    assert tasks["after"]["depends_on"] == ["load__post_1"]
    assert all(tasks[t]["outputs"] == "none" for t in chain)
    changed = " | ".join(n.message for n in result.notes if n.task == "load")
    assert "load__pre_1 -> load__pre_2 -> load__sql_1 -> load -> load__post_1" in changed


@pytest.mark.parametrize(
    ("sql", "backslash", "statements"),
    [
        ("a; b;", False, ["a", "b"]),
        ("select ';' ; select \"x;y\"", False, ["select ';'", 'select "x;y"']),
        ("select 'it''s; fine'; b", False, ["select 'it''s; fine'", "b"]),
        ("select 'a\\'; b'; c", True, ["select 'a\\'; b'", "c"]),
        ("select 'a\\'; b", False, ["select 'a\\'", "b"]),  # PostgreSQL: no backslash escape
        ("do $f$ begin; end $f$; b", False, ["do $f$ begin; end $f$", "b"]),
        ("a -- x; y\n; /* c; */ ; b", False, ["a -- x; y", "b"]),
        ("select ${x}; select $[yyyy]", False, ["select ${x}", "select $[yyyy]"]),
    ],
)
def test_sql_is_split_into_statements_outside_quotes_and_comments(
    sql: str, backslash: bool, statements: list[str]
) -> None:
    assert _split_sql(sql, backslash) == statements


# ----------------------------------------------------------------------------- switch
def _switch_on(condition: str, *setter: dict[str, Any], **definition: Any) -> ImportedWorkflow:
    """Switch ``route`` (``condition`` -> yes, else no) after the tasks ``setter``."""
    switch = {"switchResult": {"dependTaskList": [{"condition": condition, "nextNode": 2}],
                               "nextNode": 3}}  # fmt: skip
    return _import(
        *setter,
        _task(1, "route", "SWITCH", switch),
        _task(2, "yes", "SHELL", {"rawScript": "true"}),
        _task(3, "no", "SHELL", {"rawScript": "true"}),
        edges=[(1, 2), (1, 3), *((t["code"], 1) for t in setter)],
        **definition,
    )


def _setter(name: str, value: str, kind: str) -> dict[str, Any]:
    """A shell task setting OUT param ``name`` (declared ``kind``) to ``value``."""
    out = [{"prop": name, "direct": "OUT", "type": kind, "value": ""}]
    script = f"echo '${{setValue({name}={value})}}'"
    return _task(9, "setter", "SHELL", {"rawScript": script, "localParams": out})


def _chooses(result: ImportedWorkflow, **context: Any) -> bool:
    (case,) = result.document["tasks"]["route"]["cases"]  # type: ignore[index]
    return render_condition(case["when"], context)


def test_an_integer_out_param_compares_as_a_number() -> None:
    """DolphinScheduler pastes rows=42 into ``${rows} > 0``: 42 > 0. The import compared the
    output's text with 0: "'>' not supported between 'str' and 'int'", the run failed."""
    result = _switch_on("${rows} > 0", _setter("rows", "42", "INTEGER"))
    assert _chooses(result, tasks={"setter": {"outputs": {"rows": "42"}}}) is True
    assert _chooses(result, tasks={"setter": {"outputs": {"rows": "0"}}}) is False


def test_a_varchar_out_param_equal_to_a_number_as_in_javascript() -> None:
    """VARCHAR status=1 with ``${status} == 1`` is true in DolphinScheduler (1 == 1, or
    "1" == 1 in 3.1 and later); the import compared "1" with 1: false."""
    result = _switch_on("${status} == 1", _setter("status", "1", "VARCHAR"))
    assert _chooses(result, tasks={"setter": {"outputs": {"status": "1"}}}) is True
    assert _chooses(result, tasks={"setter": {"outputs": {"status": "2"}}}) is False


def test_a_parameter_inside_a_string_literal_is_its_text() -> None:
    """``'${n}' == '5'`` with n=5 is true in DolphinScheduler; the import wrote the reference
    inside the string literal, so it compared the text ``${n}``: always false."""
    result = _switch_on(
        "'${n}' == '5'",
        globalParams='[{"prop": "n", "direct": "IN", "type": "VARCHAR", "value": "5"}]',
    )
    assert _chooses(result, params={"n": "5"}) is True
    assert _chooses(result, params={"n": "6"}) is False


# ----------------------------------------------------------------------------- joins
def _join_of(
    *extra: dict[str, Any], edges: list[tuple[int, int]], **definition: Any
) -> ImportedWorkflow:
    """Switch ``route`` (``${n} > 3`` -> big, else small), then ``extra`` tasks."""
    switch = {"switchResult": {"dependTaskList": [{"condition": "${n} > 3", "nextNode": 2}],
                               "nextNode": 3}}  # fmt: skip
    return _import(
        _task(1, "route", "SWITCH", switch),
        _task(2, "big", "SHELL", {"rawScript": "true"}),
        _task(3, "small", "SHELL", {"rawScript": "true"}),
        *extra,
        edges=[(1, 2), (1, 3), *edges],
        globalParams='[{"prop": "n", "direct": "IN", "type": "INTEGER", "value": "5"}]',
        **definition,
    )


def _join_rule(result: ImportedWorkflow, task: str) -> tuple[list[str], str | None]:
    body = result.document["tasks"][task]  # type: ignore[index]
    return body["depends_on"], body.get("trigger_rule")


def test_a_task_joining_a_switch_s_branches_runs_unless_all_were_skipped() -> None:
    """DolphinScheduler skips a task only when all its upstream tasks were skipped
    (DagHelper.isTaskNodeNeedSkip); the join of big and small kept all_success and was
    skipped with the branch the switch did not choose. One of its upstream tasks always
    runs here (the switch always takes a branch), so none_failed says it exactly."""
    result = _join_of(_task(4, "join", "SHELL", {"rawScript": "true"}), edges=[(2, 4), (3, 4)])
    assert _join_rule(result, "join") == (["big", "small"], "none_failed")
    assert any("none_failed" in n.message for n in result.notes if n.task == "join")


def test_a_join_behind_a_branch_s_own_tasks_and_a_plain_upstream_task() -> None:
    result = _join_of(
        _task(4, "after_big", "SHELL", {"rawScript": "true"}),
        _task(5, "plain", "SHELL", {"rawScript": "true"}),
        _task(6, "join", "SHELL", {"rawScript": "true"}),
        _task(7, "join2", "SHELL", {"rawScript": "true"}),
        _task(8, "single", "SHELL", {"rawScript": "true"}),
        edges=[(2, 4), (4, 6), (3, 6), (5, 7), (2, 7), (2, 8)],
    )
    assert _join_rule(result, "join") == (["after_big", "small"], "none_failed")
    assert _join_rule(result, "join2") == (["plain", "big"], "none_failed")
    assert _join_rule(result, "single") == (["big"], None)  # one upstream: skipped with it


def test_a_join_whose_upstream_tasks_may_all_be_skipped_is_none_failed_min_one_success() -> None:
    """Behind a switch that is itself a branch, big and small may both be skipped: then
    DolphinScheduler skips the join, and none_failed would run it. Airflow's
    none_failed_min_one_success says 'none failed and one succeeded' (it was written as two
    gate tasks before Stratoflow had the rule)."""
    outer = {"switchResult": {"dependTaskList": [{"condition": "${n} > 1", "nextNode": 1}],
                              "nextNode": 11}}  # fmt: skip
    result = _join_of(
        _task(10, "outer", "SWITCH", outer),
        _task(11, "elsewhere", "SHELL", {"rawScript": "true"}),
        _task(4, "join", "SHELL", {"rawScript": "echo ${n}"}),
        edges=[(10, 1), (10, 11), (2, 4), (3, 4)],
    )
    tasks = result.document["tasks"]  # type: ignore[index]
    assert _join_rule(result, "join") == (["big", "small"], "none_failed_min_one_success")
    assert not [t for t in tasks if "__" in t]  # no gate tasks
    note = " | ".join(n.message for n in result.notes if n.task == "join")
    assert "none_failed_min_one_success" in note


def test_a_branch_with_another_upstream_task_that_may_all_be_skipped_is_reported() -> None:
    """Branch big of route also waits for a branch of another switch: when neither switch
    chooses its way DolphinScheduler skips big, where none_failed runs it (a switch branch
    cannot wait on gates: it must depend on its switch)."""

    def switch(yes: int, no: int) -> dict[str, Any]:
        return {"switchResult": {"dependTaskList": [{"condition": "${n} > 1", "nextNode": yes}],
                                 "nextNode": no}}  # fmt: skip

    result = _join_of(
        _task(10, "outer", "SWITCH", switch(1, 11)),
        _task(11, "away", "SHELL", {"rawScript": "true"}),
        _task(20, "side", "SWITCH", switch(21, 22)),
        _task(21, "elsewhere", "SHELL", {"rawScript": "true"}),
        _task(22, "away2", "SHELL", {"rawScript": "true"}),
        edges=[(10, 1), (10, 11), (20, 21), (20, 22), (21, 2)],
    )
    assert _join_rule(result, "big") == (["route", "elsewhere"], "none_failed")
    (note,) = _unmapped(result, "big")
    assert "switch branch" in note
    assert "none_failed_min_one_success" in note


# ----------------------------------------------------------------------------- switch children
def test_a_post_node_the_switch_never_selects_is_skipped_whatever_it_chooses() -> None:
    """DolphinScheduler goes on after a switch only to the branch it selected: audit, after
    route but named by no condition nor the default, never runs after it. It was written
    depending on route and in no branch, which Stratoflow ran whatever route chose (and now
    refuses): it is the branch of a case that never holds."""
    result = _join_of(_task(4, "audit", "SHELL", {"rawScript": "true"}), edges=[(1, 4)])
    tasks = result.document["tasks"]  # type: ignore[index]
    assert tasks["route"]["cases"][-1] == {"when": "{{ false }}", "next": ["audit"]}
    assert tasks["audit"]["depends_on"] == ["route"]
    spec = parse_workflow(result.document)
    for chosen in (["big"], ["small"]):
        outputs = {SWITCH_BRANCH_KEY: chosen}
        assert engine.edge_outcome(spec, "route", TaskState.SUCCEEDED, outputs, "audit") is (
            TaskState.SKIPPED
        )
    (note,) = [n.message for n in result.notes if n.task == "audit"]
    assert "never runs after route" in note


def test_a_post_node_named_only_by_a_condition_that_did_not_convert_is_never_chosen() -> None:
    """The report says such a branch is never chosen; with no default the switch was written
    choosing itself (refused: a branch must depend on its switch), and the branch ran."""
    switch = {"switchResult": {"dependTaskList": [{"condition": "foo(${n})", "nextNode": 2}]}}
    result = _import(
        _task(1, "route", "SWITCH", switch),
        _task(2, "big", "SHELL", {"rawScript": "true"}),
        edges=[(1, 2)],
        globalParams='[{"prop": "n", "direct": "IN", "type": "INTEGER", "value": "5"}]',
    )
    route = result.document["tasks"]["route"]  # type: ignore[index]
    assert route["cases"] == [{"when": "{{ false }}", "next": ["big"]}]
    assert "default" not in route


def test_a_conditions_check_of_a_switch_runs_whatever_the_switch_chose() -> None:
    """cond checks that route succeeded: the task made for that check runs after route
    whichever branch route chose, so it is in each of route's cases and its default."""
    dependence = {
        "relation": "AND",
        "dependTaskList": [
            {"relation": "AND", "dependItemList": [{"depTaskCode": 1, "status": "SUCCESS"}]}
        ],
    }
    result = _join_of(
        _task(6, "cond", "CONDITIONS", {"dependence": dependence,
              "conditionResult": {"successNode": [7], "failedNode": [8]}}),
        _task(7, "yes", "SHELL", {"rawScript": "true"}),
        _task(8, "no", "SHELL", {"rawScript": "true"}),
        edges=[(3, 6), (6, 7), (6, 8)],
    )  # fmt: skip
    route = result.document["tasks"]["route"]  # type: ignore[index]
    assert [case["next"] for case in route["cases"]] == [["big", "cond__route_succeeded"]]
    assert route["default"] == ["small", "cond__route_succeeded"]


def test_a_pydolphinscheduler_switch_s_dependant_in_no_condition_is_never_chosen(
    tmp_path: Path,
) -> None:
    workflow = _pydolphin(
        tmp_path,
        """
workflow: {name: routed, param: {var: 1}}
tasks:
  - {name: big, task_type: Shell, command: echo big}
  - {name: small, task_type: Shell, command: echo small}
  - name: route
    task_type: Switch
    condition:
      - {task: big, condition: "${var} > 1"}
      - {task: small}
  - {name: audit, task_type: Shell, command: echo audit, deps: [route]}
""",
    )
    route = workflow.document["tasks"]["route"]  # type: ignore[index]
    assert route["cases"][-1] == {"when": "{{ false }}", "next": ["audit"]}
    assert route["default"] == ["small"]


def test_a_query_keeps_its_pre_statements_and_hands_its_post_statements_on() -> None:
    """Nothing bound: the pre statements stay in the query's script (a SET still holds for
    the query), the post statements run after it, the outputs being the query's."""
    result = _import(
        _sql_task(1, "q", "select count(*) AS n from t", preStatements=["set search_path to s"],
                  postStatements=["truncate t"]),
    )  # fmt: skip
    tasks = result.document["tasks"]  # type: ignore[index]
    assert tasks["q"]["sql"] == "set search_path to s;\nselect count(*) AS n from t\n"
    assert tasks["q"]["outputs"] == "first_row"
    assert (tasks["q__post_1"]["sql"], tasks["q__post_1"]["depends_on"]) == ("truncate t", ["q"])
    assert list(tasks) == ["q", "q__post_1"]


def test_a_python_task_s_set_value_lines_are_its_outputs(tmp_path: Path) -> None:
    """DolphinScheduler reads every ``${setValue(k=v)}`` line a Python task prints as its
    OUT parameter ``k``, as it does a shell task's. The import reported the OUT parameter as
    not mapped and the downstream task read nothing: the lines now go to the task's outputs
    too, and the script's exit status is still the task's."""
    import subprocess

    path = tmp_path / "wf.yaml"
    path.write_text(
        """
workflow: {name: outs}
tasks:
  - name: count
    task_type: Python
    definition: |
      rows = 6 * 7
      print("hello")
      print("${setValue(rows=%s)}" % rows)
    output_params: {rows: ""}
  - name: use
    task_type: Shell
    deps: [count]
    command: echo "${rows}"
"""
    )
    (workflow,) = import_file(path, "dolphinscheduler").workflows
    doc: dict[str, Any] = workflow.document  # type: ignore[assignment]
    parse_workflow(doc)
    assert not [n.message for n in workflow.notes if n.severity == "unmapped"]
    assert "tasks.count.outputs.rows" in doc["tasks"]["use"]["command"]
    command = render(doc["tasks"]["count"]["command"], {})
    out = tmp_path / "outputs"
    ran = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False,
                         env={"PATH": "/usr/bin:/bin", "STRATOFLOW_OUTPUT": str(out)})  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "hello\n${setValue(rows=42)}\n"  # the log shows what it printed
    assert out.read_text() == "rows=42\n"
    failing = command.replace('print("hello")', "raise SystemExit(3)")
    ran = subprocess.run(["bash", "-c", failing], capture_output=True, check=False,
                         env={"PATH": "/usr/bin:/bin", "STRATOFLOW_OUTPUT": str(out)})  # fmt: skip
    assert ran.returncode == 3


def test_a_pydolphinscheduler_setting_that_is_no_number_is_reported(tmp_path: Path) -> None:
    """pydolphinscheduler refuses a negative timeout, and DolphinScheduler a retry count
    that is no number; the import dropped such a setting and said the file mapped fully."""
    path = tmp_path / "wf.yaml"
    path.write_text(
        """
workflow: {name: typos}
tasks:
  - {name: a, task_type: Shell, command: echo, fail_retry_times: three, fail_retry_interval: "2"}
  - {name: b, task_type: Shell, command: echo, timeout: -5, timeout_notify_strategy: FAILED}
"""
    )
    result = import_file(path, "dolphinscheduler")
    (workflow,) = result.workflows
    unmapped = [n for n in workflow.notes if n.severity == "unmapped"]
    assert [(n.field, "left out" in n.message) for n in unmapped] == [
        ("tasks.a.fail_retry_times", True),
        ("tasks.b.timeout", True),
    ]
    assert "'three'" in unmapped[0].message
    assert not result.complete
