"""Workflows defined in Python, producing exactly the format-v1 document a YAML file holds.

Two styles, freely mixed:

- the builder (as pydolphinscheduler): ``with Workflow("etl") as wf:`` then tasks made with
  :func:`shell`, :func:`python`, :func:`http`, :func:`switch`, :func:`batch`,
  :func:`kubernetes`, :func:`lambda_`, :func:`dependency` (items made with :func:`upstream`),
  :func:`sql`, :func:`subworkflow` (or ``Task(id, type, **fields)``), wired with
  ``a >> b`` (b waits for a) or ``depends_on=[...]``;
- decorators (as Airflow's TaskFlow): ``@workflow`` on a function that makes the tasks, and
  ``@task`` on a function whose body becomes a python task.

``Workflow.to_dict()`` is the document ``yaml.safe_load`` gives for the equivalent file, and
``Workflow.spec()`` validates it with the model, with the model's messages. The CLI
(``stratoflow validate|apply module.py``) finds a module's workflows with
:func:`load_module_workflows`. Nothing here talks to a server or AWS.
"""

from stratoflow.sdk._builder import (
    Output,
    Outputs,
    Task,
    Workflow,
    batch,
    case,
    dependency,
    http,
    kubernetes,
    lambda_,
    python,
    shell,
    sql,
    subworkflow,
    switch,
    upstream,
)
from stratoflow.sdk._module import load_module_workflows, module_workflows
from stratoflow.sdk._taskflow import TaskFunction, task, workflow

__all__ = [
    "Output",
    "Outputs",
    "Task",
    "TaskFunction",
    "Workflow",
    "batch",
    "case",
    "dependency",
    "http",
    "kubernetes",
    "lambda_",
    "load_module_workflows",
    "module_workflows",
    "python",
    "shell",
    "sql",
    "subworkflow",
    "switch",
    "task",
    "upstream",
    "workflow",
]
