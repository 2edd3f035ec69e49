"""The ``js_value`` and ``js_op`` template filters: JavaScript's values and operators, which
the DolphinScheduler importer writes switch conditions with (DolphinScheduler pastes the
parameters into the condition as text and evaluates it as JavaScript)."""

from __future__ import annotations

from typing import Any

import pytest

from stratoflow.templating import TemplateError, check_syntax, render, render_condition


def _eval(expr: str, **values: Any) -> Any:
    """The expression's value (rendered through the sandbox, read back with tojson)."""
    import json

    return json.loads(render("{{ (" + expr + ") | tojson }}", {"params": values}))


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("42", "text", 42),
        ("-4.5", "text", -4.5),
        ("1e3", "text", 1000.0),
        ("0x1F", "text", 31),
        ("eu", "text", "eu"),
        (" 5", "text", " 5"),  # pasted bare it is no number literal: DolphinScheduler quotes it
        ("", "text", ""),
        (7, "text", 7),
        (2.0, "text", 2),
        (True, "text", "true"),
        ("42", "number", 42),
        ("4.5", "number", 4.5),
        ("true", "boolean", True),
        ("TRUE", "boolean", True),
        ("yes", "boolean", False),
        (5, "string", "5"),
        (2.5, "string", "2.5"),
        ("eu", "string", "eu"),
    ],
)
def test_js_value(value: Any, kind: str, expected: Any) -> None:
    got = _eval(f"params.v | js_value({kind!r})", v=value)
    assert got == expected
    assert type(got) is type(expected)


def test_js_value_refuses_a_number_that_is_not_one_and_an_unknown_kind() -> None:
    with pytest.raises(TemplateError, match="'eu' is not a number"):
        _eval("params.v | js_value('number')", v="eu")
    with pytest.raises(TemplateError, match="kind 'float'"):
        _eval("params.v | js_value('float')", v="1")
    with pytest.raises(TemplateError, match="not list"):
        _eval("params.v | js_value", v=[1])


@pytest.mark.parametrize(
    ("left", "op", "right", "expected"),
    [
        ("1", "==", 1, True),  # loose equality converts the text
        ("1.0", "==", 1, True),
        ("", "==", 0, True),
        ("eu", "==", 0, False),
        (True, "==", 1, True),
        (True, "==", "1", True),
        (None, "==", 0, False),
        (None, "==", None, True),
        ("1", "!=", 1, False),
        ("1", "===", 1, False),  # strict: the types differ
        (1, "===", 1.0, True),
        ("1", "!==", 1, True),
        ("10", "<", "9", True),  # two strings: by UTF-16 units
        ("10", "<", 9, False),  # else as numbers
        ("eu", ">", 0, False),  # NaN: false
        ("eu", "<=", 0, False),
        (3, ">=", "3", True),
        ("\U0001f600", "<", "\uffff", True),  # a surrogate pair sorts before U+FFFF
        ("1", "+", 1, "11"),
        (1, "+", 1, 2),
        (True, "+", 1, 2),
        ("5", "-", 2, 3),
        ("6", "*", "7", 42),
        (1, "/", 0, "Infinity"),
        (-1, "/", 0, "-Infinity"),
        (7, "%", 3, 1),
        (-7, "%", 3, -1),  # the dividend's sign, as JavaScript (Python's % gives 2)
    ],
)
def test_js_op(left: Any, op: str, right: Any, expected: Any) -> None:
    expr = f"params.l | js_op({op!r}, params.r)"
    if isinstance(expected, str) and expected.endswith("Infinity"):
        text = render("{{ " + expr + " }}", {"params": {"l": left, "r": right}})
        assert text == ("inf" if expected == "Infinity" else "-inf")
        return
    assert _eval(expr, l=left, r=right) == expected


@pytest.mark.parametrize(
    ("value", "op", "expected"),
    [("", "!", True), ("0", "!", False), (0, "!", True), ("3", "-", -3), (" 3 ", "+", 3)],
)
def test_js_op_unary(value: Any, op: str, expected: Any) -> None:
    assert _eval(f"params.v | js_op({op!r})", v=value) == expected


def test_nan_is_falsy_and_unequal() -> None:
    nan = "params.v | js_op('+')"
    assert render("{{ " + nan + " }}", {"params": {"v": "x"}}) == "nan"
    assert _eval(f"{nan} | js_op('!')", v="x") is True
    assert _eval(f"{nan} | js_op('==', {nan})", v="x") is False


def test_js_op_refuses_unknown_operators_and_bounds_what_it_joins() -> None:
    with pytest.raises(TemplateError, match="'\\*\\*'"):
        _eval("params.v | js_op('**', 2)", v=1)
    with pytest.raises(TemplateError, match="max_chars"):
        render("{{ params.v | js_op('+', params.v) }}", {"params": {"v": "x" * 600_000}})


def test_a_switch_condition_in_these_filters() -> None:
    """What the importer writes for ``${rows} > 0 && ${status} == 1``."""
    condition = (
        "{{ (params.rows | js_value('number')) > 0 and "
        "(params.status | js_value | js_op('==', 1)) }}"
    )
    check_syntax(condition)
    assert render_condition(condition, {"params": {"rows": "42", "status": "1"}}) is True
    assert render_condition(condition, {"params": {"rows": "42", "status": "2"}}) is False


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.000001, "0.000001"),  # JavaScript writes exponents from 1e-7 down, Python 1e-5
        (0.0000015, "0.0000015"),
        (1e-7, "1e-7"),
        (1.5e-10, "1.5e-10"),
        (-2.5e-8, "-2.5e-8"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (123.456, "123.456"),
        (-0.5, "-0.5"),
        (1e20, "100000000000000000000"),
    ],
)
def test_js_numbers_read_as_text_as_javascript_writes_them(value: float, text: str) -> None:
    assert _eval("params.x | js_value('string')", x=value) == text
    assert _eval("params.x | js_op('+', '')", x=value) == text


@pytest.mark.parametrize(
    ("value", "expected"), [(" 5", 5), ("5\n", 5), ("+5", 5), ("\t-2.5 ", -2.5)]
)
def test_js_value_reads_a_declared_number_as_javascript_reads_it_pasted_bare(
    value: str, expected: float
) -> None:
    """An INTEGER / DOUBLE parameter is pasted bare: JavaScript skips the spaces around it
    and reads a leading + as the unary plus."""
    assert _eval("params.v | js_value('number')", v=value) == expected


def test_js_op_reads_a_radix_text_too_large_for_a_double_as_infinity() -> None:
    """'0x' and 300 f's is over 1e308: JavaScript reads Infinity (Python's float() of the
    integer raises OverflowError)."""
    huge = "0x" + "f" * 300
    assert _eval("params.v | js_op('>', 1)", v=huge) is True
    assert _eval("params.v | js_op('+') | js_op('+', '')", v=huge) == "Infinity"
    assert _eval("params.v | js_op('<', 1)", v="0b" + "1" * 2000) is False
