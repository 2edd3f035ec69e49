"""The JSON Schema of workflow format v1, generated from the pydantic models.

Editors use it (VS Code's YAML extension, IntelliJ) to complete and check a workflow file as
it is typed. The pydantic models stay the one definition: the schema is generated from them,
then adjusted where a field accepts more spellings than its Python type says (a duration is
``30s`` or whole seconds; ``expected_status`` is one code or a list) and given a description
for every field that has none in the model. The schema says what a file may contain; the
models still check what a schema cannot (a cycle, an unknown dependency, a cron expression).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from stratoflow.model._durations import _PATTERN as _DURATION_PATTERN
from stratoflow.model._durations import MAX_DURATION
from stratoflow.model._loader import MAX_TASKS
from stratoflow.model._workflow import _CALLABLE, TASK_ID_PATTERN, Workflow

SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"
"""Draft-07: what VS Code's YAML extension (yaml-language-server) fully supports; it only
warns that later drafts are "not yet fully supported". Every keyword used here is draft-07."""
SCHEMA_ID = "urn:stratoflow:schema:workflow:v1"
SCHEMA_URL_PATH = "/schema/workflow.json"
"""Where the API serves it (no authentication)."""

_DURATION = {
    "description": (
        f"A duration: 30s, 5m, 1h, 2d or whole seconds; at most {MAX_DURATION.days} days."
    ),
    "anyOf": [
        {"type": "string", "pattern": f"^{_DURATION_PATTERN.pattern}$"},
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION.total_seconds()},
    ],
}
_DATE_TIME = {
    "type": "string",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
    r"\s*(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?$",
    "description": "ISO 8601 date or date-time, e.g. 2026-01-01 or 2026-01-01T02:00:00+08:00; "
    "without an offset it is read in the schedule's time zone.",
}
_COMMON = {
    "description": "What the task does, for people reading the workflow.",
    "depends_on": "Ids of the tasks that must finish first (the trigger rule decides how).",
    "trigger_rule": "When the task may run, given how its upstream tasks ended. "
    "Default all_success.",
    "retries": "Attempts after the first failure (0-100); default: defaults.retries.",
    "retry_delay": "Wait before the first retry; default: defaults.retry_delay.",
    "retry_backoff": "Multiplier of the delay per attempt (1-10; 1 = fixed delay).",
    "max_retry_delay": "Upper bound of a retry delay after backoff (never below retry_delay).",
    "timeout": "An attempt running longer than this is killed and fails; 0: no timeout "
    "(also over defaults.timeout).",
    "on_timeout": "What a timeout does: fail (default), warn (a timeout alert; the attempt keeps "
    "running) or warn_fail (a timeout alert, and the attempt fails).",
    "alerts": "Alert groups to tell of this task's retry, timeout, failure or sla_miss.",
    "params": "Parameters of this task (templated at dispatch time), on top of the workflow's.",
    "env": "Environment variables of the task's process (templated at dispatch time).",
    "type": "The task type.",
    "runner": "Where the task runs on AWS: lambda (default, at most 15 minutes) or batch.",
    "command": "The command: a shell script (string) or an argument list.",
    "image": "The container image the job runs.",
}
_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "Workflow": {
        "name": "The workflow's name: lowercase letters, digits, '_' and '-'; unique in its "
        "project.",
        "project": "The project it belongs to (roles are per project). Default 'default'.",
        "description": "What the workflow does.",
        "schedule": "When runs start by themselves; absent: only when triggered.",
        "params": "Parameter defaults; a run may override any of them ({{ params.NAME }}).",
        "max_active_runs": "At most this many runs of the workflow at once (more wait, queued). "
        "Unset: no limit, except with a schedule that has catchup: true, where it is 16 "
        "(Airflow's max_active_runs_per_dag default).",
        "concurrency": "At most this many tasks of one run at once.",
        "on_failure": "continue: independent branches go on after a failure; stop: the run stops.",
        "defaults": "Task settings applied to every task that does not set its own.",
        "tasks": "The tasks, by id (letters, digits, '_' and '-').",
        "alerts": "Which events reach which alert group (groups are configured with "
        "`stratoflow alerts groups set`, not here).",
    },
    "AlertRule": {
        "on": "The events: start, success, failure, retry, timeout, sla_miss, recovered.",
        "group": "The alert group (of the workflow's project) that hears of them.",
    },
    "Schedule": {
        "cron": "5-field cron (minute hour day month weekday), EventBridge cron(...) or rate(...).",
        "timezone": "IANA time zone of the cron expression, e.g. Europe/Paris. Default UTC.",
        "start": "No run is scheduled before this date.",
        "end": "No run is scheduled after this date.",
        "catchup": "true: missed intervals since start (or the last firing) run, oldest first; "
        "at most 16 at once unless the workflow sets max_active_runs.",
    },
    "TaskDefaults": {
        "retries": "Attempts after the first failure (0-100). Default 0.",
        "retry_delay": "Wait before the first retry. Default 30s.",
        "retry_backoff": "Multiplier of the delay per attempt (1-10). Default 1.0.",
        "max_retry_delay": "Upper bound of a retry delay after backoff (never below retry_delay). Default 1h.",
        "timeout": "An attempt running longer than this is killed and fails; 0 or absent: "
        "no timeout.",
    },
    "ShellTask": {"command": "A bash script; write key=value lines to $STRATOFLOW_OUTPUT."},
    "PythonTask": {
        "code": "Python run with params, outputs and context in scope; set outputs[...] . "
        "Not templated (only {{ secrets.NAME }} is replaced): template values go in the "
        "task's params, read as params[...] .",
        "callable": "package.module:function, called with the arguments it names (params, "
        "outputs, context); a returned dict becomes outputs.",
    },
    "HttpTask": {
        "url": "The URL (templated).",
        "method": "The HTTP method. Default GET.",
        "headers": "Request headers (templated).",
        "body": "Request body: text, or JSON (a mapping or a list).",
        "expected_status": "Status codes that count as success (one or a list); empty: any 2xx.",
        "follow_redirects": "Follow redirects (3xx with a Location, at most 20). Default true; "
        "a redirect to another origin (scheme, host or port; http to https on the same host "
        "excepted) gets none of the task's headers but Content-Type, and one from https to "
        "http fails the task. "
        "false: a 3xx is the response (a failure unless expected_status lists it).",
    },
    "SwitchCase": {
        "when": "A template that renders true or false.",
        "next": "The tasks this case runs; the branches not chosen are skipped.",
    },
    "SwitchTask": {
        "cases": "Tried in order; the first whose condition is true is taken. Every task that "
        "depends on the switch must be in a case's next or in default (one in neither is "
        "refused: a switch runs only the branches it chooses); a task after all the branches "
        "depends on them instead (trigger_rule: none_failed runs it after whichever ran).",
        "default": "The tasks run when no case is true.",
    },
    "BatchTask": {
        "vcpus": "vCPUs of the Batch job (up to 256).",
        "memory": "Memory of the Batch job in MiB.",
        "job_queue": "The Batch job queue; default: the stack's.",
    },
    "KubernetesTask": {
        "namespace": "Kubernetes namespace; default: the stack's (EksNamespace parameter).",
        "cpu": "CPU request and limit, in Kubernetes quantity syntax (1, 500m).",
        "memory": "Memory request and limit, in Kubernetes quantity syntax (2Gi).",
    },
    "LambdaTask": {
        "function": "The Lambda function's name or ARN.",
        "payload": "The event sent to the function (templated).",
        "local_callable": "module:function called with the payload by the local runtime.",
    },
    "DependencyTask": {
        "all": "Every item must have succeeded for its whole window (one failure fails at once).",
        "any": "One item that succeeded for its whole window is enough.",
        "timeout": "How long to wait for an outcome; then the task fails naming what is missing."
        " Absent or 0: wait until the outcome is certain.",
        "check_interval": "How often to look again while waiting (5s to 1d; default 1m); an"
        " upstream run's end also wakes it.",
    },
    "SqlTask": {
        "sql": "The statement, or a script of several (templated; a script takes no "
        "parameters); write %(name)s where a parameter goes.",
    },
}


def _walk(node: Any, visit: Any) -> Any:
    node = visit(node)
    if isinstance(node, dict):
        return {key: _walk(value, visit) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(item, visit) for item in node]
    return node


def _adjust(node: Any) -> Any:
    """Spellings the models accept beyond their Python types."""
    if isinstance(node, dict):
        if node.get("format") == "duration" and node.get("type") == "string":
            return {"$ref": "#/definitions/Duration"}
        if node.get("format") == "date-time" and node.get("type") == "string":
            return dict(_DATE_TIME)
    return node


def _describe(definition: dict[str, Any], name: str) -> None:
    table = {**_COMMON, **_DESCRIPTIONS.get(name, {})}
    for field, prop in definition.get("properties", {}).items():
        if "description" not in prop and field in table:
            prop["description"] = table[field]


def _by_type(union: dict[str, Any]) -> dict[str, Any]:
    """The tagged union of task types as ``type`` (an enum an editor completes) and one
    ``if type is X then X's schema`` per type, instead of a ``oneOf``: an editor then reports
    the mistakes of the type written, not why each of the other types does not match."""
    mapping: dict[str, str] = union["discriminator"]["mapping"]
    return {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"enum": list(mapping), "description": "The task type: " + ", ".join(mapping)}
        },
        "allOf": [
            {
                "if": {"required": ["type"], "properties": {"type": {"const": name}}},
                "then": {"$ref": ref},
            }
            for name, ref in mapping.items()
        ],
    }


def workflow_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft-07) of a workflow file, generated from the models."""
    raw = Workflow.model_json_schema(mode="validation", ref_template="#/definitions/{model}")
    raw["definitions"] = raw.pop("$defs", {})
    schema: dict[str, Any] = _walk(raw, _adjust)
    definitions: dict[str, Any] = schema["definitions"]
    definitions["Duration"] = _DURATION
    for name, definition in definitions.items():
        _describe(definition, name)
    _describe(schema, "Workflow")
    http = definitions["HttpTask"]["properties"]["expected_status"]
    item = dict(http["items"]) | {"minimum": 100, "maximum": 599}
    http.pop("items")
    http.pop("type")
    http["anyOf"] = [item, {"type": "array", "items": item}]
    definitions["HttpTask"]["properties"]["expected_status"] = http
    python = definitions["PythonTask"]
    python["properties"]["callable"]["anyOf"][0]["pattern"] = f"^{_CALLABLE.pattern}$"
    python["oneOf"] = [{"required": ["code"]}, {"required": ["callable"]}]
    tasks = schema["properties"]["tasks"]
    tasks["additionalProperties"] = _by_type(tasks["additionalProperties"])
    tasks["propertyNames"] = {"pattern": TASK_ID_PATTERN, "maxLength": 128}
    tasks["maxProperties"] = MAX_TASKS
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        **{key: value for key, value in schema.items() if key not in ("title", "description")},
        "title": "Stratoflow workflow (format v1)",
        "description": "A DAG of tasks with parameters, a schedule and retry settings. "
        "See the README's 'Workflow format, version 1'.",
    }


def schema_text(schema: Mapping[str, Any]) -> str:
    """The published form: indented, keys in generation order, one trailing newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


@cache
def workflow_schema_document() -> tuple[str, str]:
    """The published text of the schema and its (strong) ETag, computed once per process."""
    text = schema_text(workflow_json_schema())
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    return text, f'"{digest}"'
