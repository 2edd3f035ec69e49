"""The domain errors' messages."""

from __future__ import annotations

from stratoflow.errors import LISTED_PROBLEMS, InvalidInput, Problem


def test_invalid_input_lists_the_first_problems_and_counts_the_rest() -> None:
    problems = [Problem(f"params.p{i}", "unknown parameter") for i in range(250)]
    message = str(InvalidInput(problems, source="etl.yaml"))
    lines = message.splitlines()
    assert lines[0] == "etl.yaml: 250 problems:"
    assert lines[1] == "  - params.p0: unknown parameter"
    assert lines[LISTED_PROBLEMS] == f"  - params.p{LISTED_PROBLEMS - 1}: unknown parameter"
    assert lines[-1] == "  - and 150 more"
    assert len(lines) == LISTED_PROBLEMS + 2


def test_invalid_input_lists_up_to_the_limit_whole() -> None:
    problems = [Problem(f"p{i}", "bad") for i in range(LISTED_PROBLEMS)]
    assert "more" not in str(InvalidInput(problems))
    assert str(InvalidInput(problems)).count("\n  - ") == LISTED_PROBLEMS
