"""The ``type: sql`` task's fields as validation reads them, and what its PostgreSQL driver
makes of its SQL's start."""

from __future__ import annotations

import time

import pytest

from stratoflow.errors import InvalidInput
from stratoflow.model import load_workflow
from stratoflow.taskexec.sql import _QUERY_START

TEXT = """
name: p
tasks:
  q:
    type: sql
    connection: wh
    sql: "SELECT * FROM t WHERE id = %(ids)s"
    parameters: {{ok: 1, ids: {value}}}
"""


@pytest.mark.parametrize(
    ("value", "what"), [("[1, 2, 3]", "a list"), ("{a: 1}", "a mapping"), ("[]", "a list")]
)
def test_a_parameter_that_is_not_one_value_is_refused_in_one_message(value: str, what: str) -> None:
    with pytest.raises(InvalidInput) as err:
        load_workflow(TEXT.format(value=value))
    message = str(err.value)
    assert f"parameter 'ids' is {what}: a parameter is bound as one value, a string, " in message
    assert "string_to_array(%(ids)s, ',')" in message
    assert "valid integer" not in message
    assert "valid string" not in message
    assert message.count("parameter 'ids'") == 1


@pytest.mark.parametrize("value", ["'a'", "1", "1.5", "true", "null", "'{{ params.x }}'"])
def test_one_value_is_a_parameter(value: str) -> None:
    workflow = load_workflow(TEXT.format(value=value).replace("name: p", "name: p\nparams: {x: 1}"))
    task = workflow.workflow.tasks["q"]
    assert "ids" in task.parameters  # type: ignore[union-attr]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("sql", "query"),
    [
        ("-- note\n/* a */ ( SELECT 1 )", True),
        ("/* a * / still a comment */ with x AS (SELECT 1) TABLE x", True),
        ("Values (1)", True),
        ("INSERT INTO t SELECT 1", False),
        ("WITHOUT", False),
        ("-- select", False),
        ("( /* a */ " * 100_000 + "x", False),  # took exponential time with a lazy comment
        ("/* " * 300_000, False),
    ],
)
def test_what_may_run_through_a_cursor_is_told_at_once(sql: str, query: bool) -> None:
    """The PostgreSQL driver sends SQL that starts with SELECT, WITH, VALUES or TABLE (after
    blanks, comments and parentheses) through a server-side cursor; telling so of any text,
    up to the 1,000,000 characters an sql task may have, takes no backtracking."""
    started = time.monotonic()
    assert bool(_QUERY_START.match(sql)) is query
    assert time.monotonic() - started < 2
