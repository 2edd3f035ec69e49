"""The JSON Schema of workflow files: generated from the models, published in the package up
to date, accepting every valid workflow of the examples and the tests, refusing invalid ones,
describing every field, and served by the API without a token, with an ETag."""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from tests.strategies import DagDef, dags
from tests.unit import test_import_corpus as corpus
from tests.unit.test_api_app import Api, _build
from tests.unit.test_model import DESIGN_EXAMPLE

from stratoflow.errors import InvalidInput
from stratoflow.importers import import_file, to_yaml
from stratoflow.model import (
    SCHEMA_ID,
    load_workflow,
    schema_text,
    workflow_json_schema,
    workflow_schema_document,
)

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "layers" / "core" / "stratoflow" / "schema" / "workflow.json"
SCHEMA = workflow_json_schema()
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def as_editor_sees(value: Any) -> Any:
    """YAML data as a JSON-schema editor checks it: dates are the text written."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: as_editor_sees(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_editor_sees(v) for v in value]
    return value


def _messages(errors: Any) -> list[str]:
    """Each error's message, and those of the alternatives of a oneOf/anyOf it stands for."""
    return [m for e in errors for m in (e.message, *_messages(e.context or ()))]


def schema_problems(text: str) -> list[str]:
    return _messages(VALIDATOR.iter_errors(as_editor_sees(yaml.safe_load(text))))


def test_the_published_file_is_the_generated_schema() -> None:
    assert PUBLISHED.read_text(encoding="utf-8") == schema_text(SCHEMA), (
        "the schema is out of date: run `stratoflow schema -o "
        "layers/core/stratoflow/schema/workflow.json`"
    )
    packaged = resources.files("stratoflow").joinpath("schema/workflow.json")
    assert json.loads(packaged.read_text(encoding="utf-8")) == SCHEMA


def test_it_is_a_valid_draft_07_schema_with_an_id() -> None:
    """Draft-07: VS Code's YAML extension supports it fully (later drafts only in part)."""
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert jsonschema.validators.validator_for(SCHEMA) is jsonschema.Draft7Validator
    assert "$defs" not in json.dumps(SCHEMA)  # draft-07 names them "definitions"
    assert SCHEMA["$id"] == SCHEMA_ID
    assert SCHEMA["title"]


def test_every_field_has_a_description() -> None:
    objects = [("Workflow", SCHEMA), *SCHEMA["definitions"].items()]
    missing = [
        f"{name}.{field}"
        for name, definition in objects
        for field, prop in definition.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert not missing, f"add them to stratoflow/model/_jsonschema.py: {missing}"


VALID = {
    "design example": DESIGN_EXAMPLE,
    "every type": """
name: every_type
schedule: {cron: "rate(5 minutes)", start: 2026-01-01, end: "2027-01-01T00:00:00+02:00"}
defaults: {retry_delay: 90, timeout: 1.5h}
tasks:
  a: {type: shell, command: echo, runner: batch, env: {X: "1"}}
  b: {type: python, callable: "pkg.mod:fn", depends_on: [a]}
  c: {type: http, url: "http://x", expected_status: [200, 204], body: [1, 2], depends_on: [a]}
  d: {type: batch, image: i, command: [a, b], vcpus: 0.5, depends_on: [a]}
  e: {type: kubernetes, image: i, command: run, cpu: 250m, depends_on: [a]}
  f: {type: lambda, function: fn, payload: {k: v}, local_callable: "m:f", depends_on: [a]}
""",
}


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    assert schema_problems(path.read_text()) == []


@pytest.mark.parametrize("text", VALID.values(), ids=list(VALID))
def test_valid_workflows_of_the_tests_validate(text: str) -> None:
    load_workflow(text)  # the model agrees
    assert schema_problems(text) == []


INVALID = {
    "unknown field": ("name: x\ntasks:\n  a: {type: shell, command: c, comand: d}\n", "comand"),
    "unknown type": ("name: x\ntasks:\n  a: {type: spark, command: c}\n", "spark"),
    "missing command": ("name: x\ntasks:\n  a: {type: shell}\n", "'command' is a required"),
    "bad name": ("name: Bad Name\ntasks:\n  a: {type: shell, command: c}\n", "does not match"),
    "retries": ("name: x\ntasks:\n  a: {type: shell, command: c, retries: 101}\n", "101"),
    "duration": ("name: x\ntasks:\n  a: {type: shell, command: c, timeout: soon}\n", "soon"),
    "task id": ("name: x\ntasks:\n  'a b': {type: shell, command: c}\n", "a b"),
    "both bodies": ("name: x\ntasks:\n  a: {type: python, code: x, callable: 'm:f'}\n", ""),
    "no tasks": ("name: x\ntasks: {}\n", "should be non-empty"),
    "status": ("name: x\ntasks:\n  a: {type: http, url: u, expected_status: 700}\n", ""),
}


@pytest.mark.parametrize(("text", "words"), INVALID.values(), ids=list(INVALID))
def test_invalid_workflows_fail_it_as_they_fail_the_model(text: str, words: str) -> None:
    with pytest.raises(InvalidInput):
        load_workflow(text)
    problems = schema_problems(text)
    assert problems
    assert any(words in p for p in problems), problems


def test_the_api_serves_it_without_a_token_with_an_etag(tmp_path: Path) -> None:
    api: Api = _build(tmp_path)
    try:
        reply = api.call("GET", "/schema/workflow.json", headers={})
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "application/schema+json"
        assert json.loads(reply.text) == SCHEMA
        tag = reply.headers["ETag"]
        assert tag == workflow_schema_document()[1]
        again = api.call("GET", "/schema/workflow.json", headers={"If-None-Match": tag})
        assert again.status == 304
        assert again.text == ""
    finally:
        api.scheduler.store.close()  # type: ignore[attr-defined]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_the_property_tests_random_workflows_validate(dag: DagDef) -> None:
    load_workflow(dag.text())
    assert schema_problems(dag.text()) == []


def test_a_task_is_checked_against_the_schema_of_its_own_type_only() -> None:
    """What an editor shows: the mistakes of the type written, not of the six others."""
    assert sorted(schema_problems("name: x\ntasks:\n  a: {type: shell, url: u}\n")) == [
        "'command' is a required property",
        "Additional properties are not allowed ('url' was unexpected)",
    ]
    assert schema_problems("name: x\ntasks:\n  a: {command: c}\n") == [
        "'type' is a required property"
    ]


def test_every_workflow_imported_from_the_corpora_validates() -> None:
    """What `stratoflow import` writes for the public DolphinScheduler and dag-factory corpora
    (about a hundred real workflows) is valid for the schema as it is for the loader."""
    if corpus.CORPORA is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shared/corpora is not beside the checkout (CI=true: must not skip)")
        pytest.skip("shared/corpora is not beside the checkout")
    checked = 0
    for name in corpus._files():
        if name in corpus.NOT_WORKFLOWS or corpus._is_fragment(name):
            continue
        for workflow in import_file(corpus.CORPORA / name).workflows:
            if workflow.document is not None:
                text = to_yaml(workflow, name)
                assert schema_problems(text) == [], (name, workflow.source_name)
                checked += 1
    assert checked >= 50
