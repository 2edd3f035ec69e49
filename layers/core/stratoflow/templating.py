"""Template rendering in a Jinja2 sandbox, and the static analysis validation needs.

Pure: no clock, no I/O. The comment delimiters are moved off ``{#`` so that shell text such as
``${#array[@]}`` passes through untouched, as does every other ``${...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined,
    comment_start_string="{#:",  # never written by bash; `{#` is (${#var})
    comment_end_string=":#}",
    keep_trailing_newline=True,
    autoescape=False,
)


class TemplateError(ValueError):
    """A template that does not parse or does not render; the message names the problem."""


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


@lru_cache(maxsize=4096)
def _parse(text: str) -> nodes.Template:
    try:
        return _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"template syntax error on its line {exc.lineno}: {exc.message}"
        ) from None


def check_syntax(text: str) -> None:
    if is_template(text):
        _parse(text)


def referenced_tasks(text: str) -> set[str]:
    """Task ids a template reads through ``tasks.<id>`` or ``tasks['<id>']``."""
    if not is_template(text):
        return set()
    found: set[str] = set()
    tree = _parse(text)
    for attr in tree.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name == "tasks":
            found.add(attr.attr)
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "tasks"
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            found.add(item.arg.value)
    return found


@lru_cache(maxsize=4096)
def _compile(text: str) -> Any:
    return _ENV.from_string(_parse(text))


def render(text: str, context: Mapping[str, Any]) -> str:
    """Render ``text``; an undefined name raises ``TemplateError`` naming it."""
    if not is_template(text):
        return text
    try:
        return str(_compile(text).render(context))
    except UndefinedError as exc:
        raise TemplateError(f"undefined in template {text.strip()!r}: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"template {text.strip()!r} is not allowed: {exc}") from None
    except Exception as exc:  # a filter raising on bad data (int('x')) is the user's error too
        raise TemplateError(f"template {text.strip()!r} failed: {exc}") from None


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside a JSON-like value."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    return value


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", "none", ""}


def render_condition(text: str, context: Mapping[str, Any]) -> bool:
    """Render a switch condition and read it as a boolean."""
    rendered = render(text, context).strip()
    lowered = rendered.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise TemplateError(f"condition {text.strip()!r} rendered {rendered!r}, not true or false")
