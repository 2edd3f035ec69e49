"""Rendering a task with no template: ``render_task`` puts it together from what was worked
out once for its spec, and what it hands out is what the full path (``_render_task``, context
and Jinja) makes of it, down to the last copied dict."""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from stratoflow import engine
from stratoflow.engine import RenderedTask, Run, _engine
from stratoflow.errors import InvalidInput
from stratoflow.model import WorkflowSpec, spec_from_document
from stratoflow.templating import TemplateError, bounded, is_plain

LOGICAL = datetime(2026, 3, 7, 2, 0, tzinfo=UTC)
UPSTREAM = {"up": {"rows": "42", "path": "/data/x"}}


def spec_of(task: dict[str, Any], params: Mapping[str, Any] | None = None) -> WorkflowSpec:
    return spec_from_document(
        {
            "name": "w",
            "project": "p",
            "params": dict(params or {"region": "eu", "day": "?", "n": 3}),
            "tasks": {
                "up": {"type": "shell", "command": "true"},
                "t": {"depends_on": ["up"], **task},
            },
        }
    )


def run_of(spec: WorkflowSpec, **params: Any) -> Run:
    """A run with ``params`` over the defaults, set as stored: a NUL, which a trigger now
    refuses, may be in a run an older version stored, and both paths must still agree."""
    run, _ = engine.new_run(
        spec, run_id="w-1", version=4, params={}, logical_date=LOGICAL, now=LOGICAL
    )
    return run.with_(params={**run.params, **params})


def full(spec: WorkflowSpec, run: Run, upstream: Mapping[str, Any] = UPSTREAM) -> RenderedTask:
    """The path every task took before: a context, every field through Jinja, ``finish``."""
    with bounded():
        return _engine._render_task(spec, run, "t", upstream)


def outcome(render: Any) -> str:
    """What a render gives, as text (so that 1, 1.0 and True differ, and so does the order of
    a dict): the task, or the error (the same message either way). A secret token that a
    template turned into text keeps its render's nonce, which is random: left out."""
    try:
        result = repr(render())
    except TemplateError as exc:
        result = f"TemplateError: {exc}"
    return _NONCE.sub("<nonce>", result)


_NONCE = re.compile(r"stratoflow-secret:[0-9a-f]{32}")


@pytest.fixture
def no_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """A render that builds a template context fails the test."""

    def refuse(*args: Any) -> dict[str, Any]:
        raise AssertionError("the template context was built")

    monkeypatch.setattr(_engine, "template_context", refuse)


SECRET = "{{ secrets.db_pw }}"

# (what the task is, run params, whether it has no template: the path that skips Jinja)
SHAPES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("shell", {"type": "shell", "command": "true"}, {}, True),
    (
        "shell with plain env and nested params",
        {
            "type": "shell",
            "command": 'echo "${#files[@]}" ${HOME} ${path%/*} {a,b} {#x} %d',
            "env": {"A": "1", "B": "two words"},
            "params": {"day": "fixed", "list": [1, "x", {"k": ["v"]}], "none": None},
            "resources": ["lib/a.py"],
            "retries": 2,
            "pool": "cpu",
        },
        {"region": "us"},
        True,
    ),
    ("run params override defaults", {"type": "shell", "command": "x"}, {"region": "us"}, True),
    (
        "task params override run params",
        {"type": "shell", "command": "x", "params": {"region": "task", "extra": 1.5}},
        {"region": "us", "day": "2026"},
        True,
    ),
    (
        "nested run params",
        {"type": "shell", "command": "x"},
        {"region": {"a": [1, {"b": "c"}]}, "day": [True, False]},
        True,
    ),
    ("template in command", {"type": "shell", "command": "echo {{ ds }}"}, {}, False),
    ("block in command", {"type": "shell", "command": "{% if true %}y{% endif %}"}, {}, False),
    # a comment alone is not rendered (no {{ or {%): its text passes through either way
    ("comment in command", {"type": "shell", "command": "a {#: note :#} b"}, {}, False),
    (
        "template in env",
        {"type": "shell", "command": "x", "env": {"D": "{{ ds_nodash }}-{{ params.region }}"}},
        {"region": "us"},
        False,
    ),
    (
        "template in params",
        {"type": "shell", "command": "x", "params": {"day": "{{ ds }}", "n": "{{ params.n }}"}},
        {"n": 9},
        False,
    ),
    (
        "templates reading params set by the task",
        {"type": "shell", "command": "{{ params.day }}", "params": {"day": "{{ ds }}"}},
        {},
        False,
    ),
    (
        "upstream outputs",
        {"type": "shell", "command": "load {{ tasks.up.outputs.rows }}", "env": {"P": "p"}},
        {},
        False,
    ),
    ("secret in command", {"type": "shell", "command": f"psql -p {SECRET}"}, {}, False),
    ("secret in env", {"type": "shell", "command": "x", "env": {"PW": SECRET}}, {}, False),
    ("secret in params", {"type": "shell", "command": "x", "params": {"pw": SECRET}}, {}, False),
    # data is refused as a secret reference, on either path
    ("secret reference in run params", {"type": "shell", "command": "x"}, {"day": SECRET}, True),
    ("NUL in run params", {"type": "shell", "command": "x"}, {"day": "a\x00b"}, True),
    ("template text in run params", {"type": "shell", "command": "x"}, {"day": "{{ ds }}"}, True),
    (
        "http, nested plain fields",
        {
            "type": "http",
            "url": "https://example.com/x",
            "method": "POST",
            "headers": {"Accept": "application/json"},
            "body": {"a": [1, 2, {"b": None}], "c": "d"},
            "expected_status": [200, 201],
        },
        {},
        True,
    ),
    (
        "http, template in a header",
        {"type": "http", "url": "https://example.com/", "headers": {"X": "{{ run.id }}"}},
        {},
        False,
    ),
    (
        "batch, list command",
        {"type": "batch", "image": "img:1", "command": ["a", "b c"], "vcpus": 2},
        {},
        True,
    ),
    (
        "batch, template in the list",
        {"type": "batch", "image": "img:1", "command": ["a", "{{ ds }}"]},
        {},
        False,
    ),
    (
        "kubernetes",
        {"type": "kubernetes", "image": "img:1", "command": "run", "cpu": "2"},
        {},
        True,
    ),
    (
        "lambda, nested payload",
        {"type": "lambda", "function": "f", "payload": {"a": {"b": [1, "2"]}}},
        {},
        True,
    ),
    (
        "lambda, template deep in payload",
        {"type": "lambda", "function": "f", "payload": {"a": {"b": ["{{ task.id }}"]}}},
        {},
        False,
    ),
    ("python code", {"type": "python", "code": "print(1)\n"}, {}, True),
    ("python callable", {"type": "python", "callable": "pkg.mod:fn"}, {}, True),
    (
        "sql with parameters",
        {"type": "sql", "connection": "db", "sql": "select %(a)s", "parameters": {"a": 1}},
        {},
        True,
    ),
    (
        "sql, template in a parameter",
        {"type": "sql", "connection": "db", "sql": "select 1", "parameters": {"a": "{{ ds }}"}},
        {},
        False,
    ),
]


@pytest.mark.parametrize(
    ("task", "run_params", "plain"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES]
)
def test_render_task_gives_what_the_full_path_gives(
    task: dict[str, Any], run_params: dict[str, Any], plain: bool
) -> None:
    spec = spec_of(task)
    run = run_of(spec, **run_params)
    assert (_engine._plain_task(spec, "t") is not None) is plain
    assert_same(spec, run)


def test_the_refusal_of_data_posing_as_a_secret_reference_still_holds() -> None:
    spec = spec_of({"type": "shell", "command": "x"})
    with pytest.raises(TemplateError, match=r"params\.day: .*not written in the workflow"):
        engine.render_task(spec, run_of(spec, day=SECRET), "t", {})


def test_a_task_without_templates_builds_no_context(no_context: None) -> None:
    spec = spec_of({"type": "shell", "command": "true", "params": {"a": [1]}, "env": {"E": "e"}})
    rendered = engine.render_task(spec, run_of(spec, region="us"), "t", UPSTREAM)
    assert rendered == RenderedTask(
        "shell",
        {"resources": [], "runner": None, "command": "true"},
        {"region": "us", "day": "?", "n": 3, "a": [1]},
        {"E": "e"},
    )


@pytest.mark.parametrize(
    ("task", "run_params"),
    [
        ({"type": "shell", "command": "echo {{ ds }}"}, {}),
        ({"type": "shell", "command": "x", "env": {"A": "{{ ds }}"}}, {}),
        ({"type": "shell", "command": "x", "params": {"a": "{{ ds }}"}}, {}),
        ({"type": "shell", "command": "x"}, {"day": "{{ ds }}"}),  # data: finish reads it
    ],
)
def test_anything_templated_takes_the_full_path(
    no_context: None, task: dict[str, Any], run_params: dict[str, Any]
) -> None:
    spec = spec_of(task)
    with pytest.raises(AssertionError, match="template context was built"):
        engine.render_task(spec, run_of(spec, **run_params), "t", UPSTREAM)


def test_what_a_render_hands_out_is_its_own() -> None:
    spec = spec_of(
        {
            "type": "http",
            "url": "https://example.com/",
            "headers": {"A": "a"},
            "body": {"list": [1, {"k": "v"}]},
            "params": {"p": {"q": [1]}},
            "env": {"E": "e"},
        }
    )
    run = run_of(spec, region={"nested": ["run"]})
    first = engine.render_task(spec, run, "t", {})
    expected = full(spec, run, {})
    assert first == expected
    first.fields["headers"]["A"] = "changed"
    first.fields["body"]["list"][1]["k"] = "changed"
    first.fields["url"] = "changed"
    first.fields["new"] = 1
    first.params["p"]["q"].append(2)
    first.params["region"]["nested"].append("x")
    first.params["new"] = 1
    first.env["E"] = "changed"
    first.env["NEW"] = "1"
    assert engine.render_task(spec, run, "t", {}) == expected
    assert run.params == {"region": {"nested": ["run"]}, "day": "?", "n": 3}
    assert spec.workflow.tasks["t"].params == {"p": {"q": [1]}}


def test_what_was_worked_out_for_a_spec_goes_with_it() -> None:
    spec = spec_of({"type": "shell", "command": "true"})
    engine.render_task(spec, run_of(spec), "t", {})
    key = id(spec)
    assert key in _engine._PLAIN_TASKS
    del spec
    gc.collect()
    assert key not in _engine._PLAIN_TASKS


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ("true", True),
        ('echo "${#files[@]}" ${x%/*} {a,b} {#not a comment here} %s %(x)s', True),
        ("{{ x }}", False),
        ("{% if x %}{% endif %}", False),
        ("{#: a comment :#}", False),
        ("a\x00b", False),
        ({"k": ["a", {"b": "{{ x }}"}]}, False),
        ({"{{ key }}": "a"}, True),  # keys are never rendered
        ([1, None, 2.5, True, {"a": "b"}], True),
    ],
)
def test_is_plain(value: Any, plain: bool) -> None:
    assert is_plain(value) is plain


# ------------------------------------------------------------------ property
# text built from what template syntax and shell text are made of
TEXT = st.text(alphabet="{}%#:$ ax\x00.", max_size=12) | st.sampled_from(
    ["{{ ds }}", "{{ params.region }}", SECRET, "{% if true %}y{% endif %}", "${#a[@]}"]
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner),
    max_leaves=6,
)
NAMES = st.sampled_from(["region", "day", "n", "own"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    command=TEXT,
    params=st.dictionaries(NAMES, JSONISH, max_size=3),
    env=st.dictionaries(st.sampled_from(["A", "B"]), TEXT, max_size=2),
    body=JSONISH,
    run_params=st.dictionaries(st.sampled_from(["region", "day", "n"]), JSONISH, max_size=3),
)
def test_render_task_is_the_full_path_for_any_task(
    command: str,
    params: dict[str, Any],
    env: dict[str, str],
    body: Any,
    run_params: dict[str, Any],
) -> None:
    shell = {"type": "shell", "command": command, "params": params, "env": env}
    for task in (shell, {"type": "lambda", "function": "f", "payload": {"body": body}}):
        try:
            spec = spec_of(json.loads(json.dumps(task)))
        except InvalidInput:
            assume(False)  # not a valid workflow (a template that does not parse, a NUL)
            return
        event("plain" if _engine._plain_task(spec, "t") is not None else "templated")
        try:
            run = run_of(spec, **run_params)
        except InvalidInput:
            assume(False)  # text for the integer param n that is not one: refused, as a run
            return
        assert_same(spec, run)


def assert_same(spec: WorkflowSpec, run: Run) -> None:
    expected = outcome(lambda: full(spec, run))
    assert outcome(lambda: engine.render_task(spec, run, "t", UPSTREAM)) == expected
