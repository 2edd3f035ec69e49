"""The VariableStore contract (``stratoflow.ports.VariableStore``), for every store adapter in
conftest (SQLite, DynamoDB on moto)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stratoflow.errors import InvalidInput
from stratoflow.ports import StateStore, VariableStore
from stratoflow.variables import MAX_VALUE_BYTES, Variable

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


def variables_of(store: StateStore) -> VariableStore:
    assert isinstance(store, VariableStore)
    return store


def test_set_get_list_replace_delete(store: StateStore) -> None:
    vs = variables_of(store)
    assert vs.list_variables("analytics") == []
    assert vs.get_variable("analytics", "bucket") is None
    assert vs.put_variable(Variable("analytics", "bucket", "s3://a", T0, "alice")) is True
    assert vs.put_variable(Variable("analytics", "cfg", '{"n": 1}', T0, "alice")) is True
    assert vs.put_variable(Variable("other", "bucket", "s3://other", T0, "bob")) is True
    assert vs.get_variable("analytics", "bucket") == Variable(
        "analytics", "bucket", "s3://a", T0, "alice"
    )
    # replaced: not new, the new value, time and author
    assert vs.put_variable(Variable("analytics", "bucket", "s3://b", T1, "carol")) is False
    assert vs.get_variable("analytics", "bucket") == Variable(
        "analytics", "bucket", "s3://b", T1, "carol"
    )
    assert [v.name for v in vs.list_variables("analytics")] == ["bucket", "cfg"]
    assert [(v.name, v.value) for v in vs.list_variables("other")] == [("bucket", "s3://other")]
    assert vs.delete_variable("analytics", "bucket") is True
    assert vs.delete_variable("analytics", "bucket") is False
    assert vs.get_variable("analytics", "bucket") is None
    assert vs.get_variable("other", "bucket") is not None  # another project's is its own


def test_values_of_the_names_asked_that_are_set(store: StateStore) -> None:
    vs = variables_of(store)
    vs.put_variable(Variable("p", "a", "1", T0, "u"))
    vs.put_variable(Variable("p", "b", "", T0, "u"))  # an empty value is a value
    vs.put_variable(Variable("p", "c", "3", T0, "u"))
    vs.put_variable(Variable("q", "d", "4", T0, "u"))
    assert vs.variable_values("p", ["a", "b", "d", "zz"]) == {"a": "1", "b": ""}
    assert vs.variable_values("p", []) == {}


def test_a_value_of_the_largest_size_and_any_text_round_trips(store: StateStore) -> None:
    vs = variables_of(store)
    big = "é" * (MAX_VALUE_BYTES // 2)
    vs.put_variable(Variable("p", "big", big, T0, "u"))
    vs.put_variable(Variable("p", "lines", "a\nb\t'\"{{ x }}", T0, "u"))
    assert vs.variable_values("p", ["big", "lines"]) == {"big": big, "lines": "a\nb\t'\"{{ x }}"}


def test_a_project_holds_a_bounded_number(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stratoflow.variables as variables

    vs = variables_of(store)
    module = type(vs).__mro__  # the mixin modules read MAX_VARIABLES from their own import
    for cls in module:
        mod = __import__(cls.__module__, fromlist=["_"])
        if hasattr(mod, "MAX_VARIABLES"):
            monkeypatch.setattr(mod, "MAX_VARIABLES", 2)
    monkeypatch.setattr(variables, "MAX_VARIABLES", 2)
    vs.put_variable(Variable("p", "a", "1", T0, "u"))
    vs.put_variable(Variable("p", "b", "2", T0, "u"))
    with pytest.raises(InvalidInput, match="variables, the most"):
        vs.put_variable(Variable("p", "c", "3", T0, "u"))
    assert vs.put_variable(Variable("p", "a", "new", T0, "u")) is False  # replacing is fine
    assert vs.put_variable(Variable("q", "c", "3", T0, "u")) is True  # another project
    assert [v.name for v in vs.list_variables("p")] == ["a", "b"]
