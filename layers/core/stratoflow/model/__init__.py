"""Workflow format v1: pydantic models, YAML loading and DAG validation."""

from stratoflow.model._dag import Dag
from stratoflow.model._durations import format_duration, parse_duration
from stratoflow.model._schedule import (
    MAX_FIRINGS_PER_TICK,
    ScheduleError,
    ScheduleExpression,
    due_firings,
    next_firing,
    parse_schedule,
    schedule_window,
)
from stratoflow.model._spec import (
    WorkflowSpec,
    load_workflow,
    load_workflow_file,
    parse_workflow,
    spec_from_document,
)
from stratoflow.model._workflow import (
    BatchTask,
    HttpTask,
    KubernetesTask,
    LambdaTask,
    OnFailure,
    PythonTask,
    Schedule,
    ShellTask,
    SwitchTask,
    Task,
    TaskDefaults,
    TriggerRule,
    Workflow,
)

__all__ = [
    "MAX_FIRINGS_PER_TICK",
    "BatchTask",
    "Dag",
    "HttpTask",
    "KubernetesTask",
    "LambdaTask",
    "OnFailure",
    "PythonTask",
    "Schedule",
    "ScheduleError",
    "ScheduleExpression",
    "ShellTask",
    "SwitchTask",
    "Task",
    "TaskDefaults",
    "TriggerRule",
    "Workflow",
    "WorkflowSpec",
    "due_firings",
    "format_duration",
    "load_workflow",
    "load_workflow_file",
    "next_firing",
    "parse_duration",
    "parse_schedule",
    "parse_workflow",
    "schedule_window",
    "spec_from_document",
]
