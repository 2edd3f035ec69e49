"""Walking a nested value (lists, tuples and mappings, as JSON and YAML make them) without
recursion: what a user or a task sends may nest far deeper than Python's stack. Imports
nothing of Stratoflow: the engine checks a run's params with it, and the task runner (the AWS
runner's cold start loads no engine) a task's outputs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping


def walk(value: object) -> Iterator[tuple[object, int]]:
    """``value`` (at depth 1) and every value inside its lists, tuples and mappings, each with
    its depth, depth first. A caller that stops at the first problem walks no further."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        yield item, depth
        if isinstance(item, Mapping):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)


def is_nest(value: object) -> bool:
    """Whether ``value`` holds others (a list, a tuple or a mapping)."""
    return isinstance(value, Mapping | list | tuple)
