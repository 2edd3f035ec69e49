"""The ``type: sql`` task's fields as validation reads them."""

from __future__ import annotations

import pytest

from stratoflow.errors import InvalidInput
from stratoflow.model import load_workflow

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
