"""moto's DynamoDB update expressions, checked in linear time rather than quadratic.

moto (5.2) represents ``SET a = :a, b = :b, ...`` as a chain of nested ``UpdateExpression``
nodes, and two of the processors its validator runs over every update check each node of the
chain against everything beneath it: the action counts (one SET, one ADD, ...) and the
overlapping paths. A state write of Stratoflow's sets 20-30 attributes, so that check was
most of what the largest DynamoDB tests spent. Each node's clauses are a subset of the
root's, so whatever fails at a node fails at the root: ``install`` makes both processors
check the root alone, which raises exactly when moto would
(``tests/aws_unit/test_moto_speed.py`` shows it on valid and invalid expressions alike).

It also parses each distinct update expression once (``UpdateExpressionParser.make``): moto
parses it twice per item written, and the validator works on a deep copy of the tree, so a
tree shared between writes is never changed. And each processor builds its map of node types
to handlers once, not once for every node it visits (``nodes_to_be_processed``, ``process``):
no processor's map changes after it is made.

Together (one machine, each against moto alone in the same minutes): the stop of 1,000
running tasks in ``test_dynamodb.py`` 24 s -> 12 s; ``test_dynamodb.py``,
``test_plan_race.py`` and ``test_run_index.py`` under ``-n 2`` 158 s -> 122 s. The fault
sweeps, whose workflows are small, barely change (the ``switch`` sweep 25.4 s -> 24.7 s)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from moto.dynamodb.parsing import expressions, validators
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, UpdateExpression


def _root_only(original: Any) -> Any:
    def traverse(self: Any, node: Any) -> Any:
        if not isinstance(node, UpdateExpression):
            return original(self, node)
        return self.process(node)  # every clause under the root, each checked once

    return traverse


_HANDLERS = "_stratoflow_handlers"


def _handlers(self: Any) -> tuple[dict[type, Any], tuple[type, ...]]:
    made: tuple[dict[type, Any], tuple[type, ...]] | None = self.__dict__.get(_HANDLERS)
    if made is None:
        handlers = self._processing_map()
        made = self.__dict__[_HANDLERS] = (handlers, tuple(handlers))
    return made


def _nodes_to_be_processed(self: Any) -> tuple[type, ...]:
    return _handlers(self)[1]


def _process(self: Any, node: Any) -> Any:
    for kind, handler in _handlers(self)[0].items():  # in order, as moto's own
        if isinstance(node, kind):
            return handler(node)
    return None


def _cached(make: Any) -> Any:
    parse = functools.lru_cache(maxsize=4096)(make.__func__)

    def cached(cls: Any, expression: str) -> Any:
        return parse(cls, expression)

    return classmethod(cached)


# (class, attribute) -> (moto's own, held in the class itself or None: inherited; ours)
_REPLACED: dict[tuple[type, str], tuple[Any, Any]] = {}


def install() -> None:
    if _REPLACED:
        return
    count, paths = validators.ActionCountValidator, validators.OverlappingPathsValidator
    parser = expressions.UpdateExpressionParser
    ours = {
        (DepthFirstTraverser, "nodes_to_be_processed"): _nodes_to_be_processed,
        (DepthFirstTraverser, "process"): _process,
        (count, "traverse"): _root_only(count.traverse),
        (paths, "traverse"): _root_only(paths.traverse),
        (parser, "make"): _cached(parser.make),
    }
    for (cls, name), replacement in ours.items():
        _REPLACED[cls, name] = (cls.__dict__.get(name), replacement)
        setattr(cls, name, replacement)


@contextlib.contextmanager
def uninstalled() -> Iterator[None]:
    """moto as it is without ``install``, within the block (for the test that compares)."""
    assert _REPLACED, "install() first"
    for (cls, name), (own, _) in _REPLACED.items():
        if own is None:
            delattr(cls, name)
        else:
            setattr(cls, name, own)
    try:
        yield
    finally:
        for (cls, name), (_, replacement) in _REPLACED.items():
            setattr(cls, name, replacement)
