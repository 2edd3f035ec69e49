"""Template rendering in a bounded Jinja2 sandbox, and the static analysis validation needs.
Imported by :mod:`stratoflow.templating` on the first template (use that module).

Pure: no I/O. The comment delimiters are moved off ``{#`` so that shell text such as
``${#array[@]}`` passes through untouched, as does every other ``${...}``.

Templates come from workflow authors and are rendered on the scheduler's loop, so a template
must not be able to stall or exhaust the process: ``{{ 7**(7**9) }}`` is one C-level operation
that holds the GIL for minutes, ``{{ 'A' * 2000000000 }}`` allocates gigabytes. Rendering is
therefore bounded (:class:`Limits`), using the sandbox's own hooks:

* every operation that can build something large is checked *before* it runs: ``**`` and
  ``*`` on integers (result bits), ``*`` and ``+`` on strings and lists, ``%`` formatting and
  ``str.format`` (widths, precisions, the size of what they format), ``~`` concatenation,
  list/tuple/dict literals, ``range``, the string methods and filters that take a width or a
  count (``center``, ``indent``, ``wordwrap``, ``replace``, ``join``, ``batch``, ``tojson``'s
  indent, ...), and the buffers of ``{% set %}`` blocks and macros;
* sizes are "tree sizes" (characters of strings plus one per item, shared parts counted each
  time they occur), so a small template cannot build a structure that prints, hashes or
  compares in exponential time;
* a deadline of CPU time is checked in every intercepted operation, every loop iteration and
  every chunk of output, so a loop that writes nothing still stops;
* the rendered text of one template is at most ``max_chars`` characters.

A template over a bound raises :class:`TemplateError` naming the bound (``max_chars``, ...);
the scheduler fails the task with that message and does not retry it. The deadline counts
the rendering thread's CPU time, never the scheduler's "now" nor the wall clock: a render is
pure computation, and a process paused or descheduled mid-render (a busy machine, a laptop
put to sleep) has not rendered for that long, so it must not fail a task that would pass on a
quiet machine (it did: a fault sweep failed once under the suite's load). The monotonic clock
stays the cheap check; the thread's CPU time is read only once it has passed.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import time
import types
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache, wraps
from itertools import islice
from typing import Any, NoReturn

from jinja2 import (
    StrictUndefined,
    TemplateAssertionError,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
)
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from jinja2.utils import Namespace, generate_lorem_ipsum
from markupsafe import Markup

from stratoflow.templating import (
    _SECRET_NAME,
    CONTEXT_NAMES,
    LIMITS,
    Limits,
    TaskOutputs,
    TemplateError,
    TemplateVariables,
    is_template,
)
from stratoflow.variables import NAME_PATTERN as VARIABLE_NAME_PATTERN


class _OverBound(Exception):
    """A bound was hit inside the sandbox. Not a ``ValueError``: a filter that catches those
    (``int``) must not swallow it; and the budget remembers it in case anything else does."""


class _Budget:
    """The bounds and deadline of the render in progress. ``timed=False``: no deadline."""

    __slots__ = ("cpu_started", "deadline", "exceeded", "limits", "sizes")

    def __init__(self, limits: Limits, *, timed: bool = True) -> None:
        self.limits = limits
        # the deadline on the monotonic clock: a thread's CPU time never runs faster than it,
        # so until then the CPU budget cannot be spent (and reading it costs a system call)
        self.deadline = time.monotonic() + limits.seconds if timed else math.inf
        self.cpu_started = time.thread_time() if timed else 0.0
        self.exceeded: str | None = None
        # sizes of the large lists, tuples and dicts already measured (the sandbox cannot
        # change them), so [x, x] costs one step per x, not a walk: id -> (object, size)
        self.sizes: dict[int, tuple[Any, int]] = {}

    def over(self, message: str) -> NoReturn:
        if self.exceeded is None:
            self.exceeded = message
        raise _OverBound(message)

    def tick(self) -> None:
        if self.exceeded is not None:
            raise _OverBound(self.exceeded)
        if time.monotonic() > self.deadline:
            self._past_deadline()

    def _past_deadline(self) -> None:
        """The monotonic deadline passed: fail if the render's CPU time reached its budget,
        else move the deadline to the earliest moment it could."""
        left = self.limits.seconds - (time.thread_time() - self.cpu_started)
        if left <= 0:
            self.over(
                f"rendering took longer than its deadline of {self.limits.seconds:g} s of CPU time"
            )
        self.deadline = time.monotonic() + left

    def chars(self, n: int, what: str) -> None:
        if n > self.limits.max_chars:
            self.over(
                f"{what} would be {n:,} characters, over max_chars ({self.limits.max_chars:,})"
            )

    def width(self, n: Any, what: str) -> None:
        if isinstance(n, int) and abs(n) > self.limits.max_width:
            self.over(f"{what} {n:,} is over max_width ({self.limits.max_width:,})")

    def int_bits(self, bits: float, what: str) -> None:
        if bits > self.limits.max_int_bits:
            self.over(
                f"{what} would have about {bits:,.0f} bits, "
                f"over max_int_bits ({self.limits.max_int_bits:,})"
            )

    def size(self, value: Any, what: str) -> int:
        """The tree size of ``value``, refused past ``max_chars``."""
        cap = self.limits.max_chars
        n = _size(value, self, cap)
        if n > cap:
            self.over(f"{what} is over max_chars ({cap:,}) in size (characters plus items)")
        if n >= _REMEMBERED and type(value) in (list, tuple, dict):
            self.sizes[id(value)] = (value, n)
        return n

    def checked(self, value: Any, what: str) -> Any:
        """``value``, once it is known to be within bounds (generators get the deadline)."""
        if isinstance(value, str):
            self.chars(len(value), what)
        elif isinstance(value, types.GeneratorType):
            return _guarded(value, self)
        elif not isinstance(value, (int, float)) and value is not None:
            self.size(value, what)
        return value


_BUDGET: ContextVar[_Budget | None] = ContextVar("stratoflow_template_budget", default=None)


def _current() -> _Budget:
    """The active render's budget; outside a render (compile-time constant folding) the
    size bounds still hold, with no deadline."""
    budget = _BUDGET.get()
    return budget if budget is not None else _Budget(LIMITS, timed=False)


@contextmanager
def bounded(limits: Limits | None = None) -> Iterator[None]:
    """Render everything inside under one budget: one deadline for all of a task's templates
    (its params, fields, env and switch conditions). Nested uses join the outer budget."""
    if _BUDGET.get() is not None:
        yield  # the outer budget's limits and deadline apply
        return
    chosen = limits or LIMITS
    token = _BUDGET.set(_Budget(chosen))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _size(value: Any, budget: _Budget, cap: int) -> int:
    """Characters of strings plus one per item, counting shared parts each time they occur
    (what printing, hashing or comparing would walk); stops once past ``cap``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (int, float)) or value is None:
        return 1
    total = 0
    steps = 0
    stack = [value]
    known = budget.sizes
    while stack:
        item = stack.pop()
        seen = known.get(id(item)) if known else None
        if seen is not None and seen[0] is item:
            total += seen[1]
        elif isinstance(item, (str, bytes, bytearray)):
            total += 1 + len(item)
        elif isinstance(item, int):
            total += 1 + item.bit_length() // 3  # about its digits
        elif isinstance(item, Mapping):
            total += 1
            room = cap - total + 1  # each item pushed counts at least one: never push more
            stack.extend(islice(item.keys(), room))
            stack.extend(islice(item.values(), room))
        elif isinstance(item, (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)):
            total += 1
            stack.extend(islice(item, cap - total + 1))
        elif isinstance(item, Namespace):  # mutable: walked each time, never remembered
            total += 1
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        else:
            total += 1
        if total > cap:
            return total
        steps += 1
        if not steps & 0x3FF:
            budget.tick()
    return total


_REMEMBERED = 1_000  # sizes from which a measured list/tuple/dict is remembered


def _guarded(iterable: Iterable[Any], budget: _Budget | None = None) -> Iterator[Any]:
    """Iterate under the deadline (a loop that writes nothing still stops)."""
    if budget is None:
        budget = _current()
    for item in iterable:
        budget.tick()
        yield item


# ---------------------------------------------------------------- operators
def _check_power(budget: _Budget, left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        budget.int_bits(right * math.log2(abs(left)), f"{left} ** {right}")


def _check_multiply(budget: _Budget, left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        budget.int_bits(left.bit_length() + right.bit_length(), "an integer product")
        return
    seq, times = (left, right) if isinstance(right, int) else (right, left)
    if not isinstance(times, int) or times <= 0:
        return
    if isinstance(seq, (str, bytes)):
        budget.chars(len(seq) * times, f"a string repeated {times:,} times")
    elif isinstance(seq, (list, tuple)):
        n = _size(seq, budget, budget.limits.max_chars)
        budget.chars(n * times, f"a list repeated {times:,} times")


def _check_add(budget: _Budget, left: Any, right: Any) -> None:
    if isinstance(left, (str, bytes)) and isinstance(right, (str, bytes)):
        budget.chars(len(left) + len(right), "a string concatenation")
    elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        cap = budget.limits.max_chars
        budget.chars(_size(left, budget, cap) + _size(right, budget, cap), "a list concatenation")


_PERCENT_SPEC = re.compile(r"%(\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")
_DIGITS = re.compile(r"\d+")


def _check_number_text(budget: _Budget, digits: str, what: str) -> int:
    if len(digits) > len(str(budget.limits.max_width)):
        budget.over(f"{what} {digits[:20]}... is over max_width ({budget.limits.max_width:,})")
    n = int(digits)
    budget.width(n, what)
    return n


def _check_percent(budget: _Budget, fmt: str, args: Any) -> None:
    """``fmt % args``: widths and precisions bounded, the result's size estimated before."""
    widths = 0
    fields = 0
    star = False
    growth = 1
    for spec in _PERCENT_SPEC.finditer(fmt):
        fields += 1
        for part in (spec.group(2), spec.group(3)):
            if part == "*":
                star = True
            elif part:
                widths += _check_number_text(budget, part, "a % format width or precision")
        if spec.group(4) in "ra":
            growth = 10  # repr of a string: an escape is up to ten characters per character
    if star:
        for arg in args if isinstance(args, tuple) else (args,):
            budget.width(arg, "a * width or precision")
    cap = budget.limits.max_chars
    size = _size(args, budget, cap)
    if isinstance(args, Mapping):
        size *= max(fields, 1)  # every %(name)s may print the whole of one value
    budget.chars(len(fmt) + widths + size * growth, "the result of % formatting")


def _check_modulo(budget: _Budget, left: Any, right: Any) -> None:
    if isinstance(left, str):
        _check_percent(budget, left, right)


_BINOP_CHECKS: dict[str, Callable[[_Budget, Any, Any], None]] = {
    "**": _check_power,
    "*": _check_multiply,
    "+": _check_add,
    "%": _check_modulo,
}


# ---------------------------------------------------------------- str methods
def _method_width(
    budget: _Budget, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    if args:
        budget.width(args[0], "a width")
    return args


def _method_expandtabs(
    budget: _Budget, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    size = args[0] if args else kwargs.get("tabsize", 8)
    budget.width(size, "a tab size")
    if isinstance(size, int):
        budget.chars(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * size,
                     "the result of expandtabs")  # fmt: skip
    return args


def _method_join(
    budget: _Budget, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    if not args:
        return args
    items = _join_items(budget, owner, args[0])
    return (items, *args[1:])


def _join_items(budget: _Budget, separator: Any, items: Any) -> Any:
    """The items of a join, materialized, once their joined size is known to be bounded."""
    if not isinstance(items, (list, tuple)):
        if not isinstance(items, Iterable) or isinstance(items, (str, bytes, Mapping)):
            return items
        items = list(_guarded(items, budget))
    cap = budget.limits.max_chars
    total = len(separator) * max(len(items) - 1, 0) if isinstance(separator, (str, bytes)) else 0
    for item in items:
        total += _size(item, budget, cap)
        if total > cap:
            break
    budget.chars(total, "the result of a join")
    return items


def _method_replace(
    budget: _Budget, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    if len(args) >= 2:
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        _check_replace(budget, owner, args[0], args[1], count)
    return args


def _check_replace(budget: _Budget, text: Any, old: Any, new: Any, count: Any) -> None:
    kind = str if isinstance(text, str) else bytes if isinstance(text, bytes) else None
    if kind is None:
        return
    if kind is str:  # what the filter does with other values (Markup is a str too)
        old, new = str(old), str(new)
    if not (isinstance(old, kind) and isinstance(new, kind)):
        return
    hits: int = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    budget.chars(len(text) + hits * max(len(new) - len(old), 0), "the result of replace")


def _method_translate(
    budget: _Budget, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    table = args[0] if args else None
    if isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if isinstance(v, (str, bytes))), default=1)
        budget.chars(len(owner) * max(longest, 1), "the result of translate")
    return args


_StrCheck = Callable[[_Budget, Any, tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]
_STR_METHOD_CHECKS: dict[str, _StrCheck] = {
    "center": _method_width,
    "ljust": _method_width,
    "rjust": _method_width,
    "zfill": _method_width,
    "expandtabs": _method_expandtabs,
    "join": _method_join,
    "replace": _method_replace,
    "translate": _method_translate,
}


# ---------------------------------------------------------------- str.format
class _BoundedFormatter(SandboxedFormatter):
    """``str.format`` in the sandbox, with each field's width and the total size bounded
    (``string.Formatter`` is Python, so each field passes here before it is joined)."""

    def __init__(self, env: ImmutableSandboxedEnvironment, budget: _Budget, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._budget = budget
        self._total = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = self._budget
        budget.tick()
        for digits in _DIGITS.findall(format_spec):
            _check_number_text(budget, digits, "a format width or precision")
        if not isinstance(value, str):
            budget.size(value, "a value formatted by str.format")
        out = super().format_field(value, format_spec)
        self._total += len(out)
        budget.chars(self._total, "the result of str.format")
        return out


class _BoundedEscapeFormatter(_BoundedFormatter, SandboxedEscapeFormatter):
    pass


# ---------------------------------------------------------------- filters
def _filter_width(name: str) -> Callable[[_Budget, dict[str, Any]], None]:
    def check(budget: _Budget, arguments: dict[str, Any]) -> None:
        budget.width(arguments.get(name), f"the {name}")

    return check


def _text_argument(arguments: dict[str, Any], name: str) -> Any:
    """The filter's text as the filter will see it (a list is printed first: its text, not
    its size, is what a replace or an indent multiplies)."""
    text = arguments.get(name)
    if text is not None and not isinstance(text, str):
        text = arguments[name] = str(text)
    return text


def _filter_indent(budget: _Budget, arguments: dict[str, Any]) -> None:
    width = arguments.get("width")
    text = _text_argument(arguments, "s")
    budget.width(width, "the indent width")
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if isinstance(text, str):
        budget.chars(len(text) + (text.count("\n") + 1) * max(pad, 0), "the result of indent")


def _filter_wordwrap(budget: _Budget, arguments: dict[str, Any]) -> None:
    width = arguments.get("width")
    budget.width(width, "the wordwrap width")
    text = _text_argument(arguments, "s")
    wrap = arguments.get("wrapstring") or "\n"
    if isinstance(text, str) and isinstance(width, int) and isinstance(wrap, str):
        lines = len(text) // max(width, 1) + text.count("\n") + 1
        budget.chars(len(text) + lines * len(wrap), "the result of wordwrap")


def _filter_round(budget: _Budget, arguments: dict[str, Any]) -> None:
    precision = arguments.get("precision")
    if isinstance(precision, int):  # ceil/floor compute 10 ** precision
        budget.int_bits(abs(precision) * math.log2(10), f"10 ** {precision} (round's precision)")


def _filter_replace(budget: _Budget, arguments: dict[str, Any]) -> None:
    text = _text_argument(arguments, "s")
    count = arguments.get("count")
    _check_replace(
        budget, text, arguments.get("old"), arguments.get("new"), -1 if count is None else count
    )


def _filter_join(budget: _Budget, arguments: dict[str, Any]) -> None:
    arguments["value"] = _join_items(budget, arguments.get("d", ""), arguments.get("value"))


def _filter_format(budget: _Budget, arguments: dict[str, Any]) -> None:
    value = arguments.get("value")
    if isinstance(value, str):
        _check_percent(budget, value, arguments.get("kwargs") or arguments.get("args", ()))


def _filter_sum(budget: _Budget, arguments: dict[str, Any]) -> None:
    start = arguments.get("start", 0)
    if isinstance(start, (int, float)):
        return
    # summing lists or tuples copies the running total at every step: quadratic
    items = arguments.get("iterable")
    if isinstance(items, Iterable) and not isinstance(items, (list, tuple)):
        items = arguments["iterable"] = list(_guarded(items, budget))
    if isinstance(items, (list, tuple)):
        total = budget.size(items, "the items of sum")
        budget.chars(total * len(items) // 10, "the copying done by sum over sequences")


def _filter_tojson(budget: _Budget, arguments: dict[str, Any]) -> None:
    """``tojson(indent=N)`` writes every item on a line of its own, indented N (or the text
    N) per level it is nested at: a small list with a large indent is gigabytes. The indent
    is a width; what it adds is counted before anything is written."""
    indent = arguments.get("indent")
    if isinstance(indent, str):
        pad = len(indent)
        budget.width(pad, "the tojson indent's length")
    elif isinstance(indent, int):
        budget.width(indent, "the tojson indent")
        pad = max(indent, 0)  # json writes no indent for 0 or less, but the newlines still
    else:
        return  # None: compact; anything else json refuses itself
    cap = budget.limits.max_chars
    value = arguments.get("value")
    total = _size(value, budget, cap)
    if total <= cap:
        total += _indented_layout(value, pad, budget, cap - total)
    budget.chars(total, f"the result of tojson with an indent of {pad:,}")


def _indented_layout(value: Any, pad: int, budget: _Budget, cap: int) -> int:
    """What indenting adds to the JSON of ``value``: a newline and ``pad`` characters per
    level for each item (a list's item, a mapping's pair) and each non-empty container's
    closing bracket; stops once past ``cap``. (Key order, separators and escapes are the
    compact text's, which the value's size and the result's check bound.)"""
    total = 0
    steps = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Iterable[Any] = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        count = 0
        for child in islice(children, cap - total + 1):  # each child adds one at least
            stack.append((child, depth + 1))
            count += 1
        if count:
            total += count * ((depth + 1) * pad + 1) + depth * pad + 1
        if total > cap:
            return total
        steps += 1
        if not steps & 0x3FF:
            budget.tick()
    return total


_FILTER_CHECKS: dict[str, Callable[[_Budget, dict[str, Any]], None]] = {
    "center": _filter_width("width"),
    "indent": _filter_indent,
    "wordwrap": _filter_wordwrap,
    "batch": _filter_width("linecount"),
    "slice": _filter_width("slices"),
    "round": _filter_round,
    "replace": _filter_replace,
    "join": _filter_join,
    "format": _filter_format,
    "sum": _filter_sum,
    "tojson": _filter_tojson,
}
# filters that neither print, copy nor walk their value
_CHEAP_FILTERS = frozenset(
    {"length", "count", "first", "last", "default", "d", "attr", "random", "abs", "int", "float"}
)


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS.get(name)
    signature = inspect.signature(func) if check is not None else None
    value_at = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    walks_value = name not in _CHEAP_FILTERS
    # the async-capable filters take the eval context their signature (the sync variant's,
    # through __wrapped__) may not show: bind what follows it
    lead = 0
    if value_at and signature is not None:
        first = next(iter(signature.parameters), "")
        lead = 0 if first in ("context", "eval_ctx", "environment", "env") else 1

    @wraps(func)  # keeps jinja_pass_arg: the filter still gets its context/environment
    def bounded_filter(*args: Any, **kwargs: Any) -> Any:
        budget = _current()
        budget.tick()
        if walks_value and len(args) > value_at:
            budget.checked(args[value_at], f"the value given to the {name} filter")
        if check is not None and signature is not None:
            try:
                call = signature.bind(*args[lead:], **kwargs)
            except TypeError:
                pass  # the filter itself says what is wrong with its arguments
            else:
                call.apply_defaults()
                check(budget, call.arguments)
                args, kwargs = (*args[:lead], *call.args), call.kwargs
        return budget.checked(func(*args, **kwargs), f"the result of the {name} filter")

    return bounded_filter


# ---------------------------------------------------------------- globals
def _range(*args: int) -> range:
    budget = _current()
    budget.tick()
    numbers = range(*args)
    try:
        n = len(numbers)
    except OverflowError:  # more than fits in a machine word
        budget.over(f"{numbers} has too many items, over max_range ({budget.limits.max_range:,})")
    if n > budget.limits.max_range:
        budget.over(f"a range of {n:,} items is over max_range ({budget.limits.max_range:,})")
    return numbers


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    budget = _current()
    if isinstance(n, int) and isinstance(max, int):
        budget.chars(n * max * 8, "lipsum's text")
    return generate_lorem_ipsum(n, html, min, max)


# ---------------------------------------------------------------- date arithmetic
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*")
_SHIFT_ANCHORS = ("month_start", "month_end", "week_start", "week_end")
_MAX_SHIFT_DAYS = 366 * 200  # two centuries either way, in any unit
_MAX_DATE_FORMAT = 64


def _shift_amount(value: Any, name: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TemplateError(f"shift_date: {name} must be a whole number, not {value!r}")
    if abs(value) > limit:
        raise TemplateError(f"shift_date: {name}={value} is out of range (at most {limit:,})")
    return value


def shift_date(
    value: Any,
    fmt: str = "%Y-%m-%d",
    tz: str = "UTC",
    months: int = 0,
    to: str | None = None,
    days: int = 0,
    minutes: int = 0,
    out_tz: str | None = None,
) -> str:
    """A date-time (an ISO-8601 text such as ``logical_date``, or a datetime) read on the wall
    clock of ``tz``, shifted, and formatted with ``fmt`` (strftime codes) on the wall clock of
    ``out_tz`` (default ``tz``): Airflow's ``ds`` of a schedule in another zone steps in
    that zone's calendar days and is written in UTC.

    In this order: ``months`` calendar months (the day clamped to the month's last), then
    ``to`` an anchor (``month_start``, ``month_end``, ``week_start`` = Monday, ``week_end`` =
    Sunday), then ``days`` calendar days (the same wall-clock time, whatever a daylight-saving
    change in between), then ``minutes`` of elapsed time. ``{{ logical_date |
    shift_date('%Y%m%d', 'Asia/Shanghai', days=-1) }}`` is the day before the run's date there.
    """
    import calendar
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise TemplateError(f"shift_date: {_quoted(value)} is not an ISO-8601 date") from None
    elif isinstance(value, datetime):
        moment = value
    else:
        raise TemplateError(f"shift_date needs a date-time text, not {type(value).__name__}")
    if not isinstance(fmt, str) or len(fmt) > _MAX_DATE_FORMAT:
        raise TemplateError(f"shift_date: the format must be text of at most {_MAX_DATE_FORMAT}")

    def zone_of(name: Any) -> ZoneInfo:
        if not isinstance(name, str) or ".." in name or not _ZONE_NAME.fullmatch(name):
            raise TemplateError(f"shift_date: {name!r} is not a time zone name")
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise TemplateError(f"shift_date: unknown time zone {name!r}") from None

    zone = zone_of(tz)
    shown = zone if out_tz is None else zone_of(out_tz)
    months = _shift_amount(months, "months", _MAX_SHIFT_DAYS // 28)
    days = _shift_amount(days, "days", _MAX_SHIFT_DAYS)
    minutes = _shift_amount(minutes, "minutes", _MAX_SHIFT_DAYS * 1440)
    if to is not None and to not in _SHIFT_ANCHORS:
        raise TemplateError(f"shift_date: to={to!r} is not one of {', '.join(_SHIFT_ANCHORS)}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    wall = moment.astimezone(zone).replace(tzinfo=None)
    try:
        if months:
            index = wall.year * 12 + wall.month - 1 + months
            year, month = divmod(index, 12)
            last = calendar.monthrange(year, month + 1)[1]
            wall = wall.replace(year=year, month=month + 1, day=min(wall.day, last))
        if to == "month_start":
            wall = wall.replace(day=1)
        elif to == "month_end":
            wall = wall.replace(day=calendar.monthrange(wall.year, wall.month)[1])
        elif to == "week_start":
            wall -= timedelta(days=wall.weekday())
        elif to == "week_end":
            wall += timedelta(days=6 - wall.weekday())
        wall += timedelta(days=days)
        # back to an instant (a wall time in a spring-forward gap moves past it), and elapsed
        # minutes added in UTC: aware arithmetic in one zone would add wall-clock minutes
        instant = wall.replace(tzinfo=zone).astimezone(UTC) + timedelta(minutes=minutes)
        return instant.astimezone(shown).strftime(fmt)
    except (ValueError, OverflowError) as exc:
        raise TemplateError(f"shift_date: the shifted date is out of range ({exc})") from None


# ---------------------------------------------------------------- JavaScript's values
# DolphinScheduler's switch conditions are JavaScript over parameters pasted in as text: the
# importer writes them as Jinja expressions whose values (js_value) and operators (js_op)
# keep JavaScript's meaning, where Python's differ ("1" == 1 is true there, "10" < 9 false)
_JS_NUMBER_TEXT = re.compile(
    r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|0[xX][0-9a-fA-F]+"
)
# JavaScript's StringToNumber: decimal (signed) or Infinity, 0x / 0o / 0b (unsigned)
_JS_DECIMAL = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|Infinity)")
_JS_RADIX = re.compile(r"0([xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")
_JS_SPACE = " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_JS_MAX_TEXT = 10_000  # characters of a number's text (int() of more is slow)
_NOTHING = object()


def _js_check(value: Any, what: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TemplateError(f"{what}: a JavaScript value is text, a number, a boolean or null, "
                        f"not {type(value).__name__}")  # fmt: skip


def _js_string(value: Any) -> str:
    """JavaScript's ToString."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return _js_float_text(value)
    return str(value)


def _js_float_text(value: float) -> str:
    """JavaScript's Number::toString of a finite number that is no integer below 1e21:
    the shortest digits that read back (Python's repr finds the same), written as plain
    decimals from 1e-6 up to 1e21, else as d.ddde±n (Python's repr switches at 1e-5 and
    writes e-07)."""
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction.rstrip("0")).lstrip("0") or "0"
    # the decimal point after ``point`` of the digits (value = 0.digits * 10**point)
    point = (
        len(whole.lstrip("0")) if whole.strip("0") else -(len(fraction) - len(fraction.lstrip("0")))
    )
    point += int(exponent or 0)
    k = len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    e = point - 1
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{head}e{'+' if e >= 0 else '-'}{abs(e)}"


def _js_number(value: Any) -> float:
    """JavaScript's ToNumber (NaN for text that is no number)."""
    if value is None:
        return 0.0
    if isinstance(value, (bool, int, float)):
        return float(value)
    text = str(value).strip(_JS_SPACE)
    if not text:
        return 0.0
    if len(text) > _JS_MAX_TEXT:
        return math.nan
    if _JS_DECIMAL.fullmatch(text):
        return float(text.replace("Infinity", "inf"))
    radix = _JS_RADIX.fullmatch(text)
    if radix:
        digits, base = radix.group(1)[1:], {"x": 16, "o": 8, "b": 2}[radix.group(1)[0].lower()]
        try:
            return float(int(digits, base))
        except OverflowError:  # over a double's range: JavaScript reads Infinity
            return math.inf
    return math.nan


def _js_truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value)


def _js_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, (int, float)) else "string"


def _js_equal(left: Any, right: Any) -> bool:
    """JavaScript's ``==`` on primitives."""
    kinds = (_js_kind(left), _js_kind(right))
    if kinds[0] == kinds[1]:
        return bool(left == right)
    if "null" in kinds:
        return False
    if "boolean" in kinds:
        return _js_equal(*(_js_number(v) if isinstance(v, bool) else v for v in (left, right)))
    return _js_number(left) == _js_number(right)  # a number and a string


_JS_SAFE_INTEGER = 2**53


def js_double(text: str) -> int | float:
    """A JavaScript number literal's value (decimal or ``0x``), a double as JavaScript's
    numbers are: ``9007199254740993`` is ``9007199254740992``, a literal too large is
    Infinity (not Python's exact integer, nor an error past its 4,300 digits). An integer
    literal within the safe range (but ``-0``) is given as an ``int``."""
    if text[:2].lower() == "0x":
        try:
            number = float(int(text, 16))  # (base 16 has no digit limit)
        except OverflowError:
            number = math.inf
    elif any(c in text for c in ".eE"):
        return float(text)  # (float() has no digit limit; too large is inf)
    else:
        number = float(text)
    if number == 0 and math.copysign(1, number) < 0:
        return number  # -0 (1 / -0 is -Infinity)
    return int(number) if number.is_integer() and abs(number) <= _JS_SAFE_INTEGER else number


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def js_value(value: Any, kind: str = "text") -> Any:
    """A parameter's value as DolphinScheduler pastes it into a switch condition, as the
    JavaScript value it then is. ``kind``: ``text`` (a number when its text is one, else a
    string), ``number`` (INTEGER, LONG, FLOAT, DOUBLE parameters), ``boolean`` (BOOLEAN: true
    when its text is true), ``string`` (pasted inside a string literal: its text)."""
    value = _js_check(value, "js_value")
    text = _js_string(value) if value is not None else ""
    if kind == "string":
        return text
    if kind == "boolean":
        return text.strip().lower() == "true"
    if kind not in ("text", "number"):
        raise TemplateError(f"js_value: kind {kind!r} is not text, number, boolean or string")
    if kind == "number":  # pasted bare: the spaces around it are JavaScript's, + its unary plus
        text = text.strip(_JS_SPACE)
        text = text[1:] if text[:1] == "+" and text[1:2] not in ("+", "-") else text
    if len(text) <= _JS_MAX_TEXT and _JS_NUMBER_TEXT.fullmatch(text):
        return js_double(text)
    if kind == "number":
        raise TemplateError(f"js_value: {_quoted(text[:100])} is not a number")
    return text


def js_op(left: Any, op: str, right: Any = _NOTHING) -> Any:
    """JavaScript's operator ``op`` on JavaScript values: ``==`` ``!=`` ``===`` ``!==`` (loose
    and strict equality), ``&&`` ``||`` (by JavaScript's truthiness: NaN is falsy), ``<``
    ``<=`` ``>`` ``>=`` (strings by UTF-16 units, else as numbers, false with NaN), ``+`` (joins when either side is text), ``-`` ``*`` ``/``
    ``%`` (as numbers); with no ``right``: ``!``, ``-``, ``+``."""
    left = _js_check(left, "js_op")
    if right is _NOTHING:
        if op == "!":
            return not _js_truthy(left)
        if op in ("-", "+"):
            number = _js_number(left)
            return -number if op == "-" else number
        raise TemplateError(f"js_op: {op!r} is no unary operator (!, -, +)")
    right = _js_check(right, "js_op")
    if op == "&&":  # the left value when it is falsy (NaN is), else the right
        return right if _js_truthy(left) else left
    if op == "||":
        return left if _js_truthy(left) else right
    if op in ("==", "!="):
        return _js_equal(left, right) is (op == "==")
    if op in ("===", "!=="):
        same = _js_kind(left) == _js_kind(right) and bool(left == right)
        return same is (op == "===")
    if op in ("<", "<=", ">", ">="):
        if isinstance(left, str) and isinstance(right, str):
            order = (_utf16(left) > _utf16(right)) - (_utf16(left) < _utf16(right))
            return {"<": order < 0, "<=": order <= 0, ">": order > 0, ">=": order >= 0}[op]
        x, y = _js_number(left), _js_number(right)  # (a comparison with NaN is false)
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
    if op == "+" and (isinstance(left, str) or isinstance(right, str)):
        budget = _current()
        budget.chars(len(_js_string(left)) + len(_js_string(right)), "the result of js_op '+'")
        return _js_string(left) + _js_string(right)
    if op in ("+", "-", "*", "/", "%"):
        a, b = _js_number(left), _js_number(right)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if b == 0:
                return (
                    math.nan
                    if a == 0 or math.isnan(a)
                    else math.copysign(math.inf, a) * math.copysign(1, b)
                )
            return a / b
        if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
            return math.nan
        return a if math.isinf(b) else math.fmod(a, b)
    raise TemplateError(f"js_op: {op!r} is not a JavaScript operator this filter knows")


# ---------------------------------------------------------------- the environment
class _CodeGenerator(CodeGenerator):
    """Routes what the sandbox has no hook for through the environment's checks: ``~``,
    list/tuple/dict literals (for loops: see ``_compile``)."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_values((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def _built(self, visit: Callable[[Any, Frame], None], node: nodes.Expr, frame: Frame) -> None:
        self.write("environment.built(")
        visit(node, frame)
        self.write(")")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._built(super().visit_List, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._built(super().visit_Dict, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx == "load":
            self._built(super().visit_Tuple, node, frame)
        else:  # an assignment target: for a, b in ...
            super().visit_Tuple(node, frame)


def _as_json(value: list[Any] | tuple[Any, ...] | dict[Any, Any]) -> Any:
    """A list or mapping written out, as JSON: what a task's structured outputs (an sql task's
    ``rows``, an http ``body``, a python task's dicts) and params are; Python's text of it
    (``None``, single quotes) is no format a command or a request reads. One JSON cannot
    write (a key that is not text or a number) stays Python's text."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return value


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(_BINOP_CHECKS)
    code_generator_class = _CodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._finalize, **options)
        self.globals["range"] = _range
        self.globals["lipsum"] = _lipsum
        self.filters["shift_date"] = shift_date
        self.filters["js_value"] = js_value
        self.filters["js_op"] = js_op
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    # what compiled templates call (see _CodeGenerator)
    @staticmethod
    def concat(parts: Iterable[str]) -> str:
        """Joins every buffer: ``{% set %}`` blocks, macros, ``{% filter %}`` blocks."""
        budget = _current()
        budget.tick()
        pieces = parts if isinstance(parts, list) else list(parts)
        budget.chars(sum(map(len, pieces)), "a block's output")
        return "".join(pieces)

    @staticmethod
    def join_values(values: tuple[Any, ...]) -> str:
        """``a ~ b``: every operand within bounds before it is turned into text."""
        budget = _current()
        budget.tick()
        total = 0
        for value in values:
            total += budget.size(value, "an operand of ~")
        budget.chars(total, "the result of ~")
        return "".join(map(str, values))

    @staticmethod
    def built(value: Any) -> Any:
        budget = _current()
        budget.tick()
        budget.size(value, "a list, tuple or dict")
        return value

    @staticmethod
    def guarded_iter(iterable: Any) -> Iterator[Any]:
        """A for loop's iterable (``_compile`` routes every loop here)."""
        return _guarded(iterable)

    @staticmethod
    def _finalize(value: Any) -> Any:
        """Every ``{{ expression }}``, before it becomes text."""
        if type(value) is str:  # the usual case; its chunk is then checked as it streams
            if len(value) > LIMITS.max_chars:
                _current().chars(len(value), "a value written out")
        elif not isinstance(value, (int, float)) and value is not None:
            _current().size(value, "a value written out")
            if isinstance(value, (list, tuple, dict)):
                return _as_json(value)
        return value

    # the sandbox's hooks
    def getattr(self, obj: Any, attribute: str) -> Any:
        """``obj.name``: on a dict holding the key ``name``, its item. Jinja tries the
        attribute first, so ``{{ params.items }}`` gave the dict's ``items`` method; a
        workflow's data (params, outputs, JSON) is read by key, as Airflow's ``params.NAME``
        is. The item is what ``obj['name']`` gives already: no new access. A name that is
        not a key goes on as before (a safe method, or refused)."""
        if isinstance(obj, dict) and dict.__contains__(obj, attribute):
            return obj[attribute]
        if isinstance(obj, (TemplateVariables, TaskOutputs)):  # a key it lacks: say which
            return self.undefined(hint=obj.missing(attribute), obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, (TemplateVariables, TaskOutputs)) and not dict.__contains__(
            obj, argument
        ):
            return self.undefined(hint=obj.missing(argument), obj=obj, name=argument)
        return super().getitem(obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _current()
        budget.tick()
        _BINOP_CHECKS[operator](budget, left, right)
        return self.binop_table[operator](left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if obj is _guarded_iter:
            return obj(*args)
        budget = _current()
        budget.tick()
        owner = getattr(obj, "__self__", None)  # a bound method of str, bytes or Markup
        if isinstance(owner, (str, bytes, bytearray)):
            check = _STR_METHOD_CHECKS.get(getattr(obj, "__name__", ""))
            if check is not None:
                args = check(budget, owner, args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        return budget.checked(result, f"the result of {getattr(obj, '__name__', 'a call')}()")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``str.format_map`` through a bounded formatter."""
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)):
            return None
        method = value.__name__
        owner = getattr(value, "__self__", None)
        if method not in ("format", "format_map") or not isinstance(owner, str):
            return None
        fmt: str = owner
        env = self

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            if method == "format_map":
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one positional argument")
                kwargs = args[0]
                args = ()
            budget = _current()
            formatter: _BoundedFormatter
            if isinstance(fmt, Markup):
                formatter = _BoundedEscapeFormatter(env, budget, escape=fmt.escape)
            else:
                formatter = _BoundedFormatter(env, budget)
            return type(fmt)(formatter.vformat(fmt, args, kwargs))

        return bounded_format


_guarded_iter = _BoundedEnvironment.guarded_iter

_ENV = _BoundedEnvironment(
    undefined=StrictUndefined,
    comment_start_string="{#:",  # never written by bash; `{#` is (${#var})
    comment_end_string=":#}",
    keep_trailing_newline=True,
    autoescape=False,
)


# Anything the environment could read as syntax (its start strings, and its line prefixes
# if it had any: then anywhere in the text), taken from it; and NUL, which starts the tokens
# templating.finish_references looks for. ``templating.is_plain`` tests a copy of these (it runs with
# no Jinja2 loaded), and a test holds the two equal.
_NOT_PLAIN = tuple(
    marker
    for marker in (
        _ENV.variable_start_string,
        _ENV.block_start_string,
        _ENV.comment_start_string,
        _ENV.line_statement_prefix,
        _ENV.line_comment_prefix,
        "\x00",
    )
    if marker
)


@lru_cache(maxsize=4096)
def _parse(text: str) -> nodes.Template:
    try:
        return _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"template syntax error on its line {exc.lineno}: {exc.message}"
        ) from None


def _undeclared(tree: nodes.Template) -> set[str]:
    """Jinja's own scoping of ``tree`` (a code generation pass). Generating code is where
    Jinja refuses a filter or test it does not have outside a condition's frame: that is a
    TemplateError here, as a syntax error is (it was a bare Jinja error: a traceback from
    validation, or a home whose stored versions would not load)."""
    try:
        found: set[str] = meta.find_undeclared_variables(tree)
    except TemplateAssertionError as exc:
        raise TemplateError(f"template error on its line {exc.lineno}: {exc.message}") from None
    return found


def unknown_filters(text: str) -> list[str]:
    """Why a template uses a filter or test Stratoflow's templates do not have where Jinja
    refuses it: anywhere but in a condition's own frame (``{% if %}`` branches, ``x if c
    else y``), where it fails only the renders that take it. Jinja finds one only when it
    generates code: every render failed, and validation said nothing. The walk looks for
    names the environment lacks; only a template that uses one is compiled to learn whether
    Jinja defers it."""
    if not is_template(text):
        return []
    tree = _parse(text)
    unknown = [
        node
        for node in tree.find_all((nodes.Filter, nodes.Test))
        if node.name not in (_ENV.filters if isinstance(node, nodes.Filter) else _ENV.tests)
    ]
    if not unknown:
        return []
    try:
        _ENV.compile(tree, raw=True)  # deferred uses compile; the others raise
    except TemplateAssertionError as exc:
        named = _NO_SUCH.fullmatch(exc.message or "")
        what = f"the {named[1]} {named[2]!r}" if named else f"what it says ({exc.message})"
        return [_lacking(what, exc.lineno)]
    # deferred, yet in a condition every render evaluates (an {% if %}'s own test outside
    # any branch): it fails every render all the same
    stack: list[nodes.Node] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (nodes.If, nodes.CondExpr)):
            stack.append(node.test)  # its branches run only when taken
            continue
        if isinstance(node, (nodes.Filter, nodes.Test)) and node in unknown:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            return [_lacking(f"the {kind} {node.name!r}", node.lineno)]
        stack.extend(node.iter_child_nodes())
    return []


_NO_SUCH = re.compile(r"No (filter|test) named '(.*)'\.")


def _lacking(what: str, line: int | None) -> str:
    return f"template uses {what} on its line {line}, which Stratoflow's templates do not have"


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


def _literal_key(node: nodes.Node) -> str | None:
    """``b`` of ``a.b`` or ``a['b']``; None for any other subscript."""
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return node.arg.value if isinstance(node.arg.value, str) else None
    return None


_VARIABLE_NAME = re.compile(VARIABLE_NAME_PATTERN)
_VARIABLE_FORMS = "{{ var.value.NAME }} (the text) or {{ var.json.NAME }} (the text as JSON)"


def variable_references(text: str) -> tuple[set[str], list[str]]:
    """The variables a template reads by a literal name (``var.value.NAME``,
    ``var.json['NAME']``), and one message per other read of ``var`` (``var.value[name]``,
    ``var``, ``var.other``): a render reads only the variables its task names. A template
    that binds ``var`` itself (``{% set var = ... %}``) and reads only that binding reads no
    variable; one that binds it somewhere (a loop, a macro, a branch) and also reads the
    project's ``var`` elsewhere is refused: which reads are whose only Jinja's scoping knows."""
    tree = _parse(text)
    if any(n.name == "var" and n.ctx != "load" for n in tree.find_all(nodes.Name)):
        if "var" in _undeclared(tree):
            return set(), [
                "template binds the name var (a loop, a macro argument, a set) and also reads "
                f"the project's variables, {_VARIABLE_FORMS}: give its own value another name"
            ]
        return set(), []
    names: set[str] = set()
    why: list[str] = []
    literal: set[int] = set()
    called = {id(call.node) for call in tree.find_all(nodes.Call)}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, (nodes.Getattr, nodes.Getitem))
        inner = node.node
        if not (
            isinstance(inner, (nodes.Getattr, nodes.Getitem))
            and isinstance(inner.node, nodes.Name)
            and inner.node.name == "var"
        ):
            continue
        kind, name = _literal_key(inner), _literal_key(node)
        if kind not in ("value", "json") or name is None:
            continue
        literal.add(id(inner.node))
        if id(node) in called:  # var.value.get('x', 'd'): Airflow's, a method call here
            why.append(
                f"template calls var.{kind}.{name}(...): write the variable's name out, with "
                f"a default if it may be unset: {{{{ var.{kind}.NAME | default('...') }}}}"
            )
        elif _VARIABLE_NAME.fullmatch(name):
            names.add(name)
        else:
            why.append(
                f"template reads variable {name!r}: a variable name is a letter followed by "
                "up to 127 letters, digits or underscores"
            )
    if any(n.name == "var" and id(n) not in literal for n in tree.find_all(nodes.Name)):
        why.append(
            f"template reads var other than as {_VARIABLE_FORMS}, with the name written out "
            "(which variables a task reads is known before it renders)"
        )
    return names, why


def reads_tasks_dynamically(text: str) -> bool:
    """Whether a template reads ``tasks`` other than by a literal name (``tasks[t]``,
    ``tasks | list``, ...): which tasks it reads is then known only when it renders.
    (``templating.reads_tasks_dynamically`` has sent only templates naming ``tasks``.)"""
    tree = _parse(text)
    literal: set[int] = set()
    for attr in tree.find_all(nodes.Getattr):
        literal.add(id(attr.node))
    for item in tree.find_all(nodes.Getitem):
        if isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str):
            literal.add(id(item.node))
    return any(
        name.name == "tasks" and name.ctx == "load" and id(name) not in literal
        for name in tree.find_all(nodes.Name)
    )


# a name under one of these may be undefined without failing the render
_GUARD_FILTERS = frozenset({"default", "d"})
# what a template reads without defining it: the render context, and the globals
_GLOBALS = frozenset(_ENV.globals)
_KNOWN_NAMES = CONTEXT_NAMES | _GLOBALS


def _root(node: nodes.Node) -> tuple[str | None, str | None]:
    """The name an expression such as ``a.b[0].c`` starts from, and, when that name is
    ``params``, the param it reads first (``params.b``, ``params['b']``)."""
    key: str | None = None
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            key = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            key = node.arg.value
        else:
            key = None
        node = node.node
    if isinstance(node, nodes.Name):
        return node.name, key if node.name == "params" else None
    return None, None


def _guards(node: nodes.Node) -> bool:
    """Whether ``node`` is a test (``x is defined``) or a ``default`` filter on an expression
    (not a ``{% filter %}`` block): what it reads may be undefined."""
    if isinstance(node, nodes.Test):
        return True
    return isinstance(node, nodes.Filter) and node.node is not None and node.name in _GUARD_FILTERS


@lru_cache(maxsize=4096)
def names_read(text: str) -> tuple[frozenset[str], frozenset[str] | None]:
    """What a template reads that must come from its render context: the top-level names it
    does not define itself ({% set %}, loop variables, macros and their arguments, and the
    environment's globals such as ``range`` are left out), and the params it reads by a
    literal name (``params.b``, ``params['b']``; None when the template binds ``params``
    itself). A name that is the subject of a test (``x is defined``) or of the ``default``
    filter anywhere in the template is left out of both: the template expects it may be
    undefined. Uses the parse that validation made already (``_parse`` is cached).

    One walk of the tree; Jinja's own scoping (``meta.find_undeclared_variables``, a code
    generation pass: ~0.1 ms a template) runs only when a name is read that the context and
    the globals do not have, which is what the template may define itself."""
    if not is_template(text):
        return frozenset(), frozenset()
    tree = _parse(text)
    loads: set[str] = set()
    bound: set[str] = set()
    guarded_names: set[str] = set()
    guarded_params: set[str] = set()
    params: set[str] = set()
    stack: list[nodes.Node] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.Name):
            (loads if node.ctx == "load" else bound).add(node.name)
        elif isinstance(node, (nodes.Getattr, nodes.Getitem)):
            inner = node.node
            if isinstance(inner, nodes.Name) and inner.name == "params":
                _, key = _root(node)
                if key is not None:
                    params.add(key)
        elif _guards(node):
            name, key = _root(node.node)  # type: ignore[attr-defined]
            if key is not None:
                guarded_params.add(key)
            elif name is not None:
                guarded_names.add(name)
        stack.extend(node.iter_child_nodes())
    free = loads - guarded_names
    if not free <= _KNOWN_NAMES:  # some name may be the template's own
        free &= _undeclared(tree)
    # the environment's globals (range, namespace, dict, cycler, joiner, lipsum) are there in
    # every render: Jinja's scoping leaves them in what it finds undeclared, and so did the walk
    free -= _GLOBALS
    if "params" not in free or "params" in bound:
        return frozenset(free), None
    return frozenset(free), frozenset(params - guarded_params)


@lru_cache(maxsize=4096)
def _compile(text: str) -> Any:
    _parse(text)  # the syntax error, worded as validation words it
    tree = _ENV.parse(text)  # a tree of its own: the cached one is read by referenced_tasks
    for loop in tree.find_all(nodes.For):  # every loop iterates under the deadline
        guard = nodes.EnvironmentAttribute("guarded_iter", lineno=loop.iter.lineno)
        loop.iter = nodes.Call(guard, [loop.iter], [], None, None, lineno=loop.iter.lineno)
    # no budget while compiling: constant folding runs the filters, and a bound it hits in a
    # branch never taken must not fail the render (it would fail it only until cached)
    token = _BUDGET.set(None)
    try:
        return _ENV.from_string(tree)
    finally:
        _BUDGET.reset(token)


def _quoted(text: str) -> str:
    text = text.strip()
    return repr(text) if len(text) <= 200 else repr(text[:200]) + "..."


def render(text: str, context: Mapping[str, Any]) -> str:
    """Render ``text`` within the bounds (:data:`LIMITS`); an undefined name, or a bound
    exceeded, raises ``TemplateError`` naming it."""
    if not is_template(text):
        return text
    budget = _BUDGET.get()
    token = None
    if budget is None:  # (not ``bounded()``: this is the hot path, and a plain set is cheaper)
        budget = _Budget(LIMITS)
        token = _BUDGET.set(budget)
    try:
        template = _compile(text)
        cap = budget.limits.max_chars
        out: list[str] = []
        total = 0
        # the root function rather than generate(): its traceback rewriting is not needed
        for chunk in template.root_render_func(template.new_context(dict(context))):
            total += len(chunk)
            if total > cap:
                budget.over(f"the rendered text is over max_chars ({cap:,} characters)")
            budget.tick()
            out.append(chunk)
        budget.tick()  # a bound hit and swallowed by something in between still fails
        return "".join(out)
    except TemplateError:
        raise
    except _OverBound as exc:
        raise TemplateError(f"template {_quoted(text)} is over a rendering bound: {exc}") from None
    except UndefinedError as exc:
        raise TemplateError(f"undefined in template {_quoted(text)}: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"template {_quoted(text)} is not allowed: {exc}") from None
    except Exception as exc:  # a filter raising on bad data (int('x')) is the user's error too
        raise TemplateError(f"template {_quoted(text)} failed: {exc}") from None
    finally:
        if token is not None:
            _BUDGET.reset(token)


# a reference's own output node may sit in these, and no other (a filter block, a macro, a
# {% set %} block or a call would transform the text it makes)
_PLAIN_CONTAINERS = (nodes.Template, nodes.Output, nodes.If, nodes.For)


def secret_references(text: str) -> tuple[set[str], list[str]]:
    """The secret names a template references, and what is wrong with how it does: a
    reference is ``{{ secrets.NAME }}`` written out as it is, never read by an expression."""
    if not is_template(text) or "secrets" not in text:
        return set(), []
    tree = _parse(text)
    names: set[str] = set()
    problems: list[str] = []

    def visit(node: nodes.Node, ancestors: tuple[nodes.Node, ...]) -> None:
        if isinstance(node, nodes.Name) and node.name == "secrets":
            parent = ancestors[-1] if ancestors else None
            holder = ancestors[-2] if len(ancestors) > 1 else None
            if (
                isinstance(parent, nodes.Getattr)
                and isinstance(holder, nodes.Output)
                and all(isinstance(a, _PLAIN_CONTAINERS) for a in ancestors[:-1])
            ):
                names.add(parent.attr)
                if not _SECRET_NAME.fullmatch(parent.attr):
                    problems.append(f"{parent.attr!r} is not a secret name")
            else:
                problems.append(
                    "a secret is referenced only as {{ secrets.NAME }} written out whole: "
                    "not in a condition, a filter, a macro, a {% set %} or an expression"
                )
        for child in node.iter_child_nodes():
            visit(child, (*ancestors, node))

    visit(tree, ())
    return names, sorted(set(problems))
