"""How big an imported workflow's file will be, known before the work of writing it."""

from __future__ import annotations

from typing import Any


def least_text(value: Any) -> int:
    """A lower bound of the bytes of ``value`` written as YAML: the UTF-8 bytes of its
    strings, keys included, each of which the text holds at least once. It takes a fraction
    of the time the YAML takes to write (or its templates to be parsed)."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return total
