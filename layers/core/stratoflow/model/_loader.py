"""YAML loading with bounds, that rejects duplicate keys and remembers where every key was written.

PyYAML silently keeps the last of two equal keys; in a workflow file that hides a mistake
(two tasks with one id), so the loader refuses it. Line numbers let every validation error
point at the line a person has to fix.

A workflow file is untrusted input (the API takes it from any editor), so it is loaded in
bounded time and memory. Every limit below is checked before the work it bounds, and a file
over one gets an :class:`InvalidInput` naming the limit:

1. the document's size in bytes, before anything is parsed;
2. libyaml composes the node graph (C, linear in the text; libyaml itself refuses nesting
   deeper than 1000 levels);
3. one walk over the graph, memoised per node, so an alias costs nothing to look at: how many
   nodes the aliases add once expanded, how deep the expanded tree is, how many nodes it has in
   all, whether an alias refers to itself, that every key is a string, how many tasks there are;
4. only then is the graph expanded into Python data (and walked again for key lines).

An alias bomb (a few hundred bytes that expand to billions of nodes) is refused in step 3 after
looking at its few dozen nodes. Scalars are bounded too: integers fit in 64 bits, floats are
finite, and tags that make neither JSON nor a date (``!!binary``, ``!!set``, ...) are refused.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from stratoflow.errors import InvalidInput, Problem
from stratoflow.workflow_text import MAX_DOCUMENT_BYTES, too_big

Path = tuple[str | int, ...]

MAX_ALIAS_NODES = 100_000
"""How many nodes the aliases of one document may add once expanded."""
MAX_NODES = 500_000
"""Nodes of the expanded document, aliases included."""
MAX_DEPTH = 64
"""Nesting of mappings and sequences, aliases expanded (a workflow needs about 8)."""
MAX_TASKS = 10_000
"""Tasks in one workflow."""
_MAX_INT_DIGITS = 100  # a 64-bit integer in any YAML spelling (0b..., 1_000) is shorter
_INT_RANGE = (-(2**63), 2**63 - 1)

_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_KINDS = {
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a date",
}
# Tags whose values are neither JSON nor a date: a workflow has no use for them, and they make
# values that the canonical JSON form cannot hold.
_REFUSED_TAGS = (
    "tag:yaml.org,2002:binary",
    "tag:yaml.org,2002:set",
    "tag:yaml.org,2002:omap",
    "tag:yaml.org,2002:pairs",
)


try:  # libyaml's parser is several times faster (10,000 tasks: ~7 s -> ~2 s), same nodes/marks
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


def _limit(node: Node, message: str) -> InvalidInput:
    return InvalidInput([Problem("", message, node.start_mark.line + 1)])


def _key_problem(node: Node) -> str | None:
    """Why a mapping key is refused, or None: keys are strings (or the merge key ``<<``)."""
    if isinstance(node, ScalarNode):
        if node.tag in (_STR_TAG, _MERGE_TAG):
            return None
        kind = _KINDS.get(node.tag, f"tagged {node.tag}")
        return f"key {node.value!r} is {kind}, not a string; quote it ('{node.value}')"
    kind = "a mapping" if isinstance(node, MappingNode) else "a list"
    return f"a key must be a string, not {kind}"


def _is_plain_on(node: Node) -> bool:
    """An unquoted key ``on``: YAML 1.1 reads a boolean, the format means the word (as in
    ``alerts: [{on: [failure], group: g}]``). Only that key: ``yes``/``off`` keys stay refused."""
    return (
        node.__class__ is ScalarNode
        and node.tag == "tag:yaml.org,2002:bool"
        and node.value == "on"
        and not getattr(node, "style", None)  # plain: None (SafeLoader) or "" (libyaml)
    )


def check_bounds(root: Node) -> None:
    """Measure the document as it would be once its aliases are expanded, without expanding
    them; raise :class:`InvalidInput` naming the first limit it passes (see the module doc)."""
    _Bounds().document(root)


_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_KEY_TAGS = frozenset((_STR_TAG, _MERGE_TAG))


class _Bounds:
    """One walk over the node graph. An alias is the very node object of its anchor, so the
    expanded size and height of every collection are memoised by identity: the walk visits
    each written node once, and an alias costs a lookup. Recursion stops at ``MAX_DEPTH``."""

    def __init__(self) -> None:
        self.memo: dict[int, tuple[int, int]] = {}  # id -> (expanded size, height)
        self.open: set[int] = set()
        self.alias_nodes = 0

    def document(self, root: Node) -> None:
        if isinstance(root, ScalarNode):
            self.scalar(root, "")
            return
        self.collection(root, 1, "")
        tasks = None
        if isinstance(root, MappingNode):
            for key_node, value_node in root.value:
                if key_node.value == "tasks" and isinstance(value_node, MappingNode):
                    tasks = key_node, len(value_node.value)
        if tasks is not None and tasks[1] > MAX_TASKS:
            raise _limit(tasks[0], f"{tasks[1]} tasks; at most {MAX_TASKS} (limit max_tasks)")

    def collection(self, node: Node, depth: int, key: str) -> tuple[int, int]:
        """(expanded size, height) of a mapping or sequence met at ``depth``."""
        ident = id(node)
        known = self.memo.get(ident)
        if known is not None:  # an alias
            self.alias_nodes += known[0]
            if self.alias_nodes > MAX_ALIAS_NODES:
                raise _limit(
                    node,
                    f"aliases expand to more than {MAX_ALIAS_NODES} values "
                    "(limit max_alias_nodes); write the values out or use fewer aliases",
                )
            if depth + known[1] - 1 > MAX_DEPTH:
                raise _too_deep(node)
            return known
        if ident in self.open:
            raise _limit(node, "an alias refers to a value that contains it (a recursive alias)")
        if depth > MAX_DEPTH:
            raise _too_deep(node)
        self.open.add(ident)
        size, height = 1, 0
        if isinstance(node, MappingNode):
            pairs = node.value
            for key_node, value_node in pairs:
                if _is_plain_on(key_node):  # an ``alerts`` entry's ``on:``, as YAML 1.2 reads it
                    key_node.tag = _STR_TAG
                if key_node.__class__ is not ScalarNode or key_node.tag not in _KEY_TAGS:
                    raise _limit(key_node, _key_problem(key_node) or "invalid key")
                if "\x00" in key_node.value:
                    raise _limit(key_node, "a key holds a NUL character (\\0)")
                if value_node.__class__ is ScalarNode:
                    self.scalar(value_node, key_node.value)
                    size += 2
                else:
                    sub, high = self.collection(value_node, depth + 1, key_node.value)
                    size += 1 + sub
                    height = max(height, high)
        else:
            for item in node.value:
                if item.__class__ is ScalarNode:
                    self.scalar(item, key)
                    size += 1
                else:
                    sub, high = self.collection(item, depth + 1, key)
                    size += sub
                    height = max(height, high)
        if size > MAX_NODES:
            raise _limit(node, f"more than {MAX_NODES} values (limit max_nodes)")
        self.open.discard(ident)
        result = self.memo[ident] = (size, height + 1)
        return result

    def scalar(self, node: ScalarNode, key: str) -> None:
        """Numbers must fit: integers in 64 bits, floats finite (only the rare spellings that
        could break a bound are converted here; the constructor checks them again); no text
        holds a NUL."""
        tag, text = node.tag, node.value
        if "\x00" in text:  # no file name, argument or variable can hold one
            raise _number(node, key, "a NUL character (\\0) is not allowed")
        if tag == _INT_TAG and len(text) > 15 and not _int_fits(node):
            raise _number(node, key, f"integer {_shown(text)} is out of range (64 bits)")
        if tag == _FLOAT_TAG and _maybe_infinite(text) and not _finite(node):
            raise _number(node, key, f"{_shown(text)} is not a finite number")


def _int_fits(node: ScalarNode) -> bool:
    if len(node.value) > _MAX_INT_DIGITS:
        return False
    value: int = SafeConstructor.construct_yaml_int(_PROBE, node)
    return _INT_RANGE[0] <= value <= _INT_RANGE[1]


def _finite(node: ScalarNode) -> bool:
    return math.isfinite(SafeConstructor.construct_yaml_float(_PROBE, node))


def _maybe_infinite(text: str) -> bool:
    lowered = text.lower()
    return lowered.endswith(("inf", "nan")) or "e" in lowered


_PROBE = SafeConstructor()


def _shown(text: str) -> str:
    return text if len(text) <= 30 else text[:20] + "..."


def _number(node: Node, key: str, message: str) -> InvalidInput:
    where = f"the value of {key!r}: " if key else ""
    return _limit(node, where + message)


def _too_deep(node: Node) -> InvalidInput:
    return _limit(node, f"nested deeper than {MAX_DEPTH} levels (limit max_depth)")


class _Loader(_BaseLoader):
    """SafeLoader (no arbitrary objects) that checks bounds, records key lines and refuses
    duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[Path, int] = {}
        self._plain_tags: dict[str, str] = {}

    if not _BaseLoader.yaml_path_resolvers:  # SafeLoader has none: a tag depends on the node

        def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> Any:
            """The tag SafeLoader's resolver gives, remembered per text for plain scalars,
            whose tag depends on the text alone (a workflow repeats ``shell``, ``true``,
            ``type``, ... thousands of times, and each lookup tries regular expressions)."""
            if kind is ScalarNode and implicit[0]:
                tag = self._plain_tags.get(value)
                if tag is None:
                    tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                    self._plain_tags[value] = tag
                return tag
            return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]

        def descend_resolver(self, current_node: Any, current_index: Any) -> None:
            pass  # only path resolvers use the stacks these keep

        def ascend_resolver(self) -> None:
            pass

    fast = True
    """Build the data with :meth:`_build` (False: only the general path, for the test that
    compares the two)."""

    def construct_document(self, node: Node) -> Any:
        check_bounds(node)
        if self.fast:
            try:
                return self._build(node, (), {})
            except InvalidInput:  # a duplicate key, found in the order ``_index`` finds them
                raise
            except Exception:  # the general path decides what anything else means
                self.lines = {}
        self._index(node, ())
        return super().construct_document(node)

    def _build(self, node: Node, path: Path, built: dict[int, Any]) -> Any:
        """The data of a bounded node graph and its key lines in one walk, the same as
        ``_index`` then SafeConstructor give (~3x faster on a large workflow): plain strings
        are the node's text, other scalars go through the constructors the loader registered,
        an alias is the very object of its anchor. A merge key (``<<``), a tag without a
        constructor here (``!!set``, ``!thing``) or a value a constructor refuses raises, and
        the caller starts again on the general path, which gives the same data or error it
        always gave."""
        lines = self.lines
        cls = node.__class__
        if cls is ScalarNode:
            lines.setdefault(path, node.start_mark.line + 1)
            return self._scalar(node)
        known = built.get(id(node))
        if known is not None:  # an alias: its keys' lines under this path too
            self._index(node, path)
            return known
        lines.setdefault(path, node.start_mark.line + 1)
        if cls is MappingNode and node.tag == _MAP_TAG:
            mapping: dict[str, Any] = {}
            built[id(node)] = mapping
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag != _STR_TAG:
                    raise _GeneralPath
                key = key_node.value
                line = _first_time(seen, path, key, key_node.start_mark.line + 1)
                child = (*path, key)
                lines[child] = line
                if value_node.__class__ is ScalarNode:
                    mapping[key] = (
                        value_node.value if value_node.tag == _STR_TAG else self._scalar(value_node)
                    )
                else:
                    mapping[key] = self._build(value_node, child, built)
            return mapping
        if cls is SequenceNode and node.tag == _SEQ_TAG:
            sequence: list[Any] = []
            built[id(node)] = sequence
            for i, item in enumerate(node.value):
                sequence.append(self._build(item, (*path, str(i)), built))
            return sequence
        raise _GeneralPath

    def _scalar(self, node: Node) -> Any:
        tag = node.tag
        if tag == _STR_TAG:
            return node.value
        construct = _SCALAR_CONSTRUCTORS.get(tag)
        if construct is None:
            raise _GeneralPath
        return construct(self, node)

    def _index(self, node: Node, path: Path) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value
                line = _first_time(seen, path, key, key_node.start_mark.line + 1)
                child = (*path, str(key))
                self.lines[child] = line
                self._index(value_node, child)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, (*path, str(i)))

    def construct_bounded_int(self, node: ScalarNode) -> int:
        if len(node.value) > _MAX_INT_DIGITS:
            raise _out_of_range(node)
        value: int = self.construct_yaml_int(node)
        if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            raise _out_of_range(node)
        return value

    def construct_finite_float(self, node: ScalarNode) -> float:
        value: float = self.construct_yaml_float(node)
        if not math.isfinite(value):
            raise ConstructorError(
                None, None, f"{node.value!r} is not a finite number", node.start_mark
            )
        return value

    # PyYAML's own constructors fail on a value not of an explicit tag's type with a KeyError
    # (``!!bool maybe``) or an AttributeError (``!!timestamp soon``): refused here instead,
    # with the value's line, as ``!!int x`` and ``!!float x`` are.
    def construct_checked_bool(self, node: Node) -> bool:
        scalar = _scalar_node(node)
        if scalar.value.lower() not in self.bool_values:
            raise ConstructorError(
                None, None, f"{_shown(scalar.value)!r} is not a boolean", node.start_mark
            )
        value: bool = self.construct_yaml_bool(scalar)
        return value

    def construct_checked_timestamp(self, node: Node) -> Any:
        scalar = _scalar_node(node)
        if not self.timestamp_regexp.match(scalar.value):
            raise ConstructorError(
                None, None, f"{_shown(scalar.value)!r} is not a date", node.start_mark
            )
        try:  # of a date's shape but no date (2026-13-01, year 0): its line, as the rest
            return self.construct_yaml_timestamp(scalar)
        except (ValueError, OverflowError) as exc:
            raise ConstructorError(
                None, None, f"{_shown(scalar.value)!r} is not a date ({exc})", node.start_mark
            ) from None

    def construct_refused(self, node: Node) -> Any:
        raise ConstructorError(
            None, None, f"the tag {node.tag} is not allowed in a workflow", node.start_mark
        )


def _first_time(seen: dict[Any, int], path: Path, key: Any, line: int) -> int:
    """Note that ``key`` of the mapping at ``path`` is written at ``line`` (returned), or
    refuse it as a duplicate naming where the first one is."""
    if key in seen:
        where = ".".join(str(p) for p in (*path, key))
        raise InvalidInput(
            [Problem(where, f"duplicate key {key!r} (first at line {seen[key]})", line)]
        )
    seen[key] = line
    return line


def _scalar_node(node: Node) -> ScalarNode:
    """``node``, refused as PyYAML's constructors refuse one when it is not a scalar."""
    if not isinstance(node, ScalarNode):
        raise ConstructorError(
            None,
            None,
            f"expected a scalar node, but found {getattr(node, 'id', 'a collection')}",
            node.start_mark,
        )
    return node


def _out_of_range(node: ScalarNode) -> ConstructorError:
    return ConstructorError(
        None, None, f"integer {_shown(node.value)} is out of range (64 bits)", node.start_mark
    )


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_bounded_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_finite_float)
_Loader.add_constructor("tag:yaml.org,2002:bool", _Loader.construct_checked_bool)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_checked_timestamp)
for _tag in _REFUSED_TAGS:
    _Loader.add_constructor(_tag, _Loader.construct_refused)

_SCALAR_CONSTRUCTORS: dict[str, Any] = {
    tag: _Loader.yaml_constructors[tag] for tag in (_INT_TAG, _FLOAT_TAG, *_KINDS, *_REFUSED_TAGS)
}
"""The scalar tags ``_Loader._build`` constructs itself (strings aside), each by the constructor
the general path would call for it."""


class _GeneralPath(Exception):
    """Raised by ``_Loader._build`` for what it leaves to the general path (a merge key, ...)."""


def check_size(text: str, *, source: str | None = None) -> None:
    """Refuse a document over :data:`MAX_DOCUMENT_BYTES`, or one that is not valid Unicode
    (a lone surrogate from JSON ``"\\ud800"``), before any parsing."""
    size = len(text)  # no character is less than one byte
    if size <= MAX_DOCUMENT_BYTES and not text.isascii():
        size = _utf8_size(text, source)
    if size > MAX_DOCUMENT_BYTES:
        raise too_big(source)


def _utf8_size(text: str, source: str | None) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        raise InvalidInput(
            [Problem("", f"not valid Unicode at character {exc.start} ({exc.reason})", line)],
            source=source,
        ) from None


def load_yaml(text: str, *, source: str | None = None) -> tuple[Any, dict[Path, int]]:
    """Parse one YAML document within the limits above. Returns the data and a map from key
    path to line number."""
    check_size(text, source=source)
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except InvalidInput as exc:
        raise InvalidInput(exc.problems, source=source) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise InvalidInput(
            [Problem("", f"invalid YAML: {exc.problem or exc.context}", line)], source=source
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidInput([Problem("", f"invalid YAML: {exc}")], source=source) from None
    except (ValueError, OverflowError) as exc:  # a scalar Python cannot hold (year 0, ...)
        raise InvalidInput([Problem("", f"invalid YAML value: {exc}")], source=source) from None
    finally:
        loader.dispose()
    return data, loader.lines


def line_for(lines: dict[Path, int], path: Path) -> int | None:
    """The line of the deepest prefix of ``path`` that was written in the file. Keys and
    list indices are compared as text, so a dotted path ("cases.1.next") finds them too."""
    text = tuple(str(part) for part in path)
    for end in range(len(text), -1, -1):
        line = lines.get(text[:end])
        if line is not None:
            return line
    return None
