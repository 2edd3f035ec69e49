"""The loader's one-walk construction (``_Loader._build``) gives exactly what the general path
(``_index`` then PyYAML's SafeConstructor) gives: the same data, down to the types, the order of
keys and which values are one shared object (an alias), the same key lines, and the same error
for a file either refuses. Compared over every YAML file of the repository and of the shared
corpora, targeted cases, and generated hostile workflows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from tests.strategies import hostile_values, hostile_workflows

from stratoflow.errors import InvalidInput
from stratoflow.model import _loader
from stratoflow.model._loader import load_yaml

ROOT = Path(__file__).resolve().parents[2]


def _shape(value: Any, seen: dict[int, int]) -> Any:
    """A comparable picture of ``value``: each scalar's exact type and repr, each container's
    type, items in order, and which containers are the same object."""
    if isinstance(value, dict | list):
        if id(value) in seen:
            return ("same as", seen[id(value)])
        seen[id(value)] = len(seen)
        items = (
            [(_shape(k, seen), _shape(v, seen)) for k, v in value.items()]
            if isinstance(value, dict)
            else [_shape(item, seen) for item in value]
        )
        return (type(value).__name__, items)
    return (type(value).__name__, repr(value))


def _outcome(text: str, *, fast: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(_loader._Loader, "fast", fast)
    try:
        data, lines = load_yaml(text, source="f.yaml")
    except InvalidInput as exc:
        return ("refused", exc.source, [(p.path, p.message, p.line) for p in exc.problems])
    return ("loaded", _shape(data, {}), list(lines.items()))


def assert_same(text: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    general = _outcome(text, fast=False, monkeypatch=monkeypatch)
    fast = _outcome(text, fast=True, monkeypatch=monkeypatch)
    assert fast == general
    return fast


def _yaml_files() -> Iterator[Path]:
    roots = [ROOT / "examples", ROOT / "tests", ROOT / "benchmarks"]
    roots += [ROOT.parent / "shared" / "corpora", Path("/work/shared/corpora")]
    seen: set[Path] = set()
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix in (".yaml", ".yml") and path.is_file():
                real = path.resolve()
                if real not in seen:
                    seen.add(real)
                    yield path


FILES = list(_yaml_files())


@pytest.mark.parametrize("path", FILES, ids=[str(p) for p in FILES])
def test_every_yaml_file_loads_the_same_both_ways(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    assert_same(text, monkeypatch)


def test_the_repository_has_yaml_files_to_compare() -> None:
    assert len([p for p in FILES if ROOT in p.parents]) >= 10


CASES = {
    "plain": "name: w\ntasks:\n  a: {type: shell, command: 'true'}\n",
    "empty document": "",
    "only a comment": "# nothing\n",
    "explicit empty document": "---\n...\n",
    "scalar document": "42\n",
    "string document": "hello\n",
    "list document": "- 1\n- two\n- [3, {four: 4}]\n",
    "nulls": "a:\nb: ~\nc: null\nd: Null\ne: NULL\nf: [~, null, ]\n",
    "booleans": "a: yes\nb: no\nc: on\nd: off\ne: true\nf: False\ng: Y\nh: n\ni: [on, off]\n",
    "the on key": "alerts: [{on: [failure], group: g}]\non: 1\n",
    "quoted on": "'on': 1\n",
    "yes key refused": "yes: 1\n",
    "ints": "a: 0x1F\nb: 0o17\nc: 017\nd: 0b101\ne: 1_000\nf: -42\ng: +7\nh: 190:20:30\n",
    "big int": f"a: {2**63 - 1}\nb: {-(2**63)}\n",
    "int out of range": f"a: {2**63}\n",
    "int out of range in a list": f"a: [1, {2**64}]\n",
    "floats": "a: 1.5\nb: -.5e3\nc: 6.8523015e+5\nd: 685_230.15\ne: 190:20:30.15\nf: 1e300\n",
    "float not finite": "a: .inf\n",
    "nan": "a: [.NaN]\n",
    "timestamps": (
        "a: 2026-01-02\nb: 2026-01-02T03:04:05Z\nc: 2026-01-02 03:04:05.5 +05:30\n"
        "d: 2001-12-14t21:59:43.10-05:00\n"
    ),
    "year 0": "a: 0000-01-01\n",
    "bad date": "a: 2026-02-30\n",
    "explicit str": "a: !!str 123\nb: !!str yes\nc: !!int '5'\nd: !!float '1'\n",
    "explicit bad int": "a: !!int abc\n",
    "explicit bad bool": "a: !!bool maybe\n",
    "explicit bad date": "a: !!timestamp soon\n",
    "explicit bool on a map": "a: !!bool {b: 1}\n",
    "explicit null and bool": "a: !!null ''\nb: !!bool 'true'\n",
    "binary refused": "a: !!binary AAAA\n",
    "set refused": "a: !!set {x, y}\n",
    "omap refused": "a: !!omap [{x: 1}]\n",
    "pairs refused": "a: !!pairs [{x: 1}]\n",
    "local tag": "a: !thing 1\n",
    "local tag on a map": "a: !thing {b: 1}\n",
    "explicit map and seq": "a: !!map {b: !!seq [1, 2]}\n",
    "python tag": "a: !!python/object:os.system x\n",
    "value key": "=: 1\n",
    "value scalar": "a: =\nb: [=]\n",
    "merge scalar as a value": "a: <<\n",
    "many aliases of a task": "tasks:\n  t0: &t {type: shell, command: echo}\n"
    + "".join(f"  t{i}: *t\n" for i in range(1, 200)),
    "quoted and block strings": "a: 'x'\nb: \"y\\n\"\nc: |\n  z\n  w\nd: >\n  folded\n  text\n",
    "unicode": 'a: é\nb: "\\u00e9"\nc: 日本\n',
    "anchor on a scalar": "a: &x 5\nb: *x\nc: [*x, *x]\n",
    "anchor on a map": "a: &m {k: 1, l: [1, 2]}\nb: *m\nc: [*m, {d: *m}]\n",
    "anchor on a seq": "a: &s [1, [2, 3]]\nb: [*s, *s]\nc: {d: *s}\n",
    "anchors in a seq": "- &a {x: 1}\n- *a\n- &b [*a]\n- *b\n",
    "alias keys lines": "tasks:\n  t: &t {type: shell, command: echo}\n  u: *t\nx: [*t]\n",
    "merge": "a: &a {x: 1, y: 2}\nb: {<<: *a, y: 3}\n",
    "merge of a list": "a: &a {x: 1}\nb: &b {y: 2}\nc: {<<: [*a, *b], z: 3}\n",
    "merge nested": "a: &a {x: 1}\nb: {c: {<<: *a}}\nd: [{<<: *a, e: 1}]\n",
    "merge of a scalar": "a: {<<: 1}\n",
    "duplicate key": "a: 1\nb: 2\na: 3\n",
    "duplicate nested key": "a: {x: 1, y: {z: 1, z: 2}}\n",
    "duplicate key after a refused tag": "a: !!binary AAAA\nb: 1\nb: 2\n",
    "duplicate key before a refused tag": "b: 1\nb: 2\na: !!binary AAAA\n",
    "duplicate key under an alias": "a: &a {x: 1}\nb: [*a, {y: 1, y: 2}]\n",
    "duplicate key after a merge": "a: &a {x: 1}\nb: {<<: *a, x: 2, c: 1, c: 2}\n",
    "int key": "1: a\n",
    "null key": "~: a\n",
    "list key": "? [a]\n: b\n",
    "NUL in a value": 'a: "x\\0"\n',
    "recursive alias": "a: &a [1, *a]\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "syntax error": "a: [1, 2\n",
    "tab indentation": "a:\n\t- 1\n",
    "deep": "a: " + "[" * 60 + "]" * 60 + "\n",
    "too deep": "a: " + "[" * 70 + "]" * 70 + "\n",
    "nested": (
        "name: w\nparams: {p: [1, {q: [x, y, {r: 2026-01-01}]}], s: ''}\n"
        "tasks:\n  a:\n    type: shell\n    command: echo\n    env: {A: '1', B: 2}\n"
        "    depends_on: [b]\n  b: {type: python, script: 'print(1)'}\n"
    ),
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_each_case_loads_the_same_both_ways(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_same(text, monkeypatch)


def test_the_cases_exercise_both_outcomes(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = [assert_same(text, monkeypatch)[0] for text in CASES.values()]
    assert outcomes.count("loaded") >= 20
    assert outcomes.count("refused") >= 15


def test_an_alias_is_one_object_and_its_lines_are_indexed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_loader._Loader, "fast", True)
    data, lines = load_yaml(CASES["alias keys lines"])
    assert data["tasks"]["t"] is data["tasks"]["u"] is data["x"][0]
    assert lines[("tasks", "u", "type")] == 2
    assert lines[("x", "0", "command")] == 2


def test_a_merge_takes_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    general = _loader.SafeConstructor.construct_document

    def counted(self: Any, node: Any) -> Any:
        calls.append(1)
        return general(self, node)

    monkeypatch.setattr(_loader.SafeConstructor, "construct_document", counted)
    assert load_yaml(CASES["plain"])[0]["name"] == "w"
    assert calls == []
    assert load_yaml(CASES["merge"])[0]["b"] == {"x": 1, "y": 3}
    assert calls == [1]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=hostile_workflows())
def test_generated_hostile_workflows_load_the_same_both_ways(text: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert_same(text, monkeypatch)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=hostile_values())
def test_generated_values_load_the_same_both_ways(value: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert_same(f"a: {value}\nb: [{value}, {{c: {value}}}]\n", monkeypatch)


def _tags(node: Any, seen: dict[int, int]) -> Any:
    """Each node's class and tag, scalars' text, and which collections are one node."""
    if node is None or isinstance(node.value, str):
        return node and (type(node).__name__, node.tag, node.value)
    if id(node) in seen:
        return ("same as", seen[id(node)])
    seen[id(node)] = len(seen)
    items = [
        (_tags(item[0], seen), _tags(item[1], seen))
        if isinstance(item, tuple)
        else _tags(item, seen)
        for item in node.value
    ]
    return (type(node).__name__, node.tag, items)


@pytest.mark.parametrize(
    "text",
    [*CASES.values(), *(p.read_text(encoding="utf-8", errors="replace") for p in FILES)],
)
def test_the_remembered_tags_are_the_resolvers(text: str) -> None:
    """``_Loader.resolve`` remembers plain scalars' tags: each node gets the tag SafeLoader's
    own resolver gives it."""

    def compose(loader_class: Any) -> Any:
        loader = loader_class(text)
        try:
            return ("node", _tags(loader.get_single_node(), {}))
        except yaml.YAMLError as exc:
            return ("error", str(exc))
        finally:
            loader.dispose()

    assert compose(_loader._Loader) == compose(_loader._BaseLoader)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nb: !!bool maybe\n", "'maybe' is not a boolean"),
        ("a: 1\nb: !!timestamp soon\n", "'soon' is not a date"),
        ("a: 1\nb: !!timestamp {c: 1}\n", "expected a scalar node, but found mapping"),
        # of a date's shape but no date: a ValueError, reported without its line before
        ("a: 1\nb: 2026-13-01\n", "'2026-13-01' is not a date (month must be in 1..12)"),
        ("a: 1\nb: 0000-01-01\n", "'0000-01-01' is not a date (year 0 is out of range)"),
    ],
)
def test_a_value_not_of_its_explicit_tags_type_is_refused_with_its_line(
    text: str, message: str
) -> None:
    """PyYAML's constructors raised KeyError / AttributeError here: a crash, not an error."""
    with pytest.raises(InvalidInput) as caught:
        _loader.load_yaml(text)
    (problem,) = caught.value.problems
    assert message in problem.message
    assert problem.line == 2
