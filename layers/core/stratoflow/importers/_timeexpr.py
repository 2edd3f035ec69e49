"""DolphinScheduler parameters and time expressions, and Airflow macros, as Stratoflow templates.

DolphinScheduler replaces ``${name}`` with a parameter's value and ``$[yyyyMMdd-1]``-style
expressions with the schedule time shifted and formatted. Each becomes a Jinja expression over
the run's ``logical_date`` through the ``shift_date`` filter, in the schedule's time zone.
Day offsets are calendar days on that zone's wall clock (``$[yyyyMMdd-1]`` is the day before,
whatever a daylight-saving change in between); ``N/24`` and ``N/24/60`` offsets are hours and
minutes of elapsed time. Date patterns are Java's: ``yyyy yy MM dd HH mm ss`` and literals.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import NamedTuple

from stratoflow.importers._names import output_ref

Piece = tuple[bool, str]
"""(is_expression, text): a literal, or a Jinja expression."""


class Unsupported(ValueError):
    """An expression with no exact equivalent; the message says which and why."""


_JAVA_TOKENS = (
    ("yyyy", "%Y"),
    ("yy", "%y"),
    ("MM", "%m"),
    ("dd", "%d"),
    ("HH", "%H"),
    ("mm", "%M"),
    ("ss", "%S"),
)


def java_date_format(pattern: str) -> str:
    """A Java ``SimpleDateFormat`` pattern as a ``strftime`` format (the common letters)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        for java, code in _JAVA_TOKENS:
            if pattern.startswith(java, i):
                out.append(code)
                i += len(java)
                break
        else:
            char = pattern[i]
            if char.isalpha():
                raise Unsupported(f"date pattern {pattern!r}: the letter {char!r} is not supported")
            out.append("%%" if char == "%" else char)
            i += 1
    return "".join(out)


_ARITH = (ast.Add, ast.Sub, ast.Mult, ast.Div)


def _arith(text: str) -> Fraction:
    """``1``, ``7*2``, ``1/24``, ``-(1+2)``: exact, integers and + - * / only."""
    if len(text) > 64:
        raise Unsupported(f"offset {text!r} is too long")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise Unsupported(f"offset {text!r} is not arithmetic") from None

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value < 10**6:
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITH):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if right == 0:
                raise Unsupported(f"offset {text!r} divides by zero")
            return left / right
        raise Unsupported(f"offset {text!r} is not arithmetic on whole numbers")

    return value(tree)


def _shift(fmt: str, tz: str, *, months: Fraction = Fraction(0), to: str | None = None,
           days: Fraction = Fraction(0)) -> str:  # fmt: skip
    args = [repr(java_date_format(fmt.strip())), repr(tz)]
    if months:
        if months.denominator != 1:
            raise Unsupported(f"a shift of {months} months is not whole")
        args.append(f"months={int(months)}")
    if to:
        args.append(f"to={to!r}")
    if days:
        if days.denominator == 1:
            args.append(f"days={int(days)}")
        else:
            minutes = days * 1440
            if minutes.denominator != 1:
                raise Unsupported(f"a shift of {days} days is not a whole number of minutes")
            args.append(f"minutes={int(minutes)}")
    return f"logical_date | shift_date({', '.join(args)})"


_FUNCTION = re.compile(r"([a-z_]+)\((.*)\)", re.S)
# name -> (anchor, what the second argument counts, whether it may be left out)
_ANCHORED = {
    "add_months": (None, "months", False),
    "month_begin": ("month_start", "days", False),
    "month_end": ("month_end", "days", False),
    "week_begin": ("week_start", "days", False),
    "week_end": ("week_end", "days", False),
    "month_first_day": ("month_start", "months", True),
    "month_last_day": ("month_end", "months", True),
    "week_first_day": ("week_start", "weeks", True),
    "week_last_day": ("week_end", "weeks", True),
    "this_day": (None, "none", True),
    "last_day": (None, "yesterday", True),
}


def time_expression(expr: str, tz: str) -> str:
    """The Jinja expression for the inside of one ``$[...]``."""
    expr = expr.strip()
    call = _FUNCTION.fullmatch(expr)
    if call:
        name, inner = call.group(1), call.group(2)
        if name not in _ANCHORED:
            raise Unsupported(f"$[{expr}]: {name}() has no equivalent")
        anchor, unit, optional = _ANCHORED[name]
        fmt, sep, amount_text = inner.partition(",")
        if not sep and not optional:
            raise Unsupported(f"$[{expr}]: {name}() takes a format and an offset")
        amount = _arith(amount_text) if sep else Fraction(0)
        if unit == "months":
            return _shift(fmt, tz, months=amount, to=anchor)
        if unit == "weeks":
            return _shift(fmt, tz, to=anchor, days=amount * 7)
        if unit == "yesterday":
            return _shift(fmt, tz, days=Fraction(-1))
        return _shift(fmt, tz, to=anchor, days=amount)
    for sign in ("+", "-"):
        index = expr.rfind(sign)
        if index > 0 and index + 1 < len(expr) and expr[index + 1].isdigit():
            offset = _arith(expr[index + 1 :])
            return _shift(expr[:index], tz, days=offset if sign == "+" else -offset)
        if sign == "+" and index >= 0:
            break  # DolphinScheduler reads a '+' without a number after it as a literal
    return _shift(expr, tz)


# DolphinScheduler's built-in parameters
def builtin(name: str, tz: str) -> str | None:
    known: dict[str, Callable[[], str]] = {
        "system.biz.date": lambda: _shift("yyyyMMdd", tz, days=Fraction(-1)),
        "system.biz.curdate": lambda: _shift("yyyyMMdd", tz),
        "system.datetime": lambda: _shift("yyyyMMddHHmmss", tz),
        "system.workflow.instance.id": lambda: "run.id",
        "system.process.instance.id": lambda: "run.id",
        "system.workflow.definition.name": lambda: "run.workflow",
        "system.process.definition.name": lambda: "run.workflow",
        "system.project.name": lambda: "run.project",
        "system.task.definition.name": lambda: "task.id",
    }
    make = known.get(name)
    return None if make is None else make()


_TOKEN = re.compile(r"\$\[(?P<time>[^\]\n]{1,200})\]|\$\{(?P<name>[^{}\s]{1,200})\}")
_JINJA_OPEN = re.compile(r"\{\{|\{%|\{#:")


@dataclass
class DsContext:
    """What ``${name}`` may stand for in one task: a parameter, or an upstream task's output."""

    tz: str
    params: Mapping[str, str]  # name -> Jinja expression
    problems: list[str]  # collects what could not be rewritten
    # name -> why what it reads is not certain (said once, where the name is read)
    doubts: Mapping[str, str] = field(default_factory=dict)
    # name -> the DolphinScheduler type declared for it (VARCHAR, INTEGER, LIST, ...) where
    # the value it reads was declared with one
    types: Mapping[str, str] = field(default_factory=dict)

    def name(self, name: str) -> str | None:
        doubt = self.doubts.get(name)
        if doubt is not None and doubt not in self.problems:
            self.problems.append(doubt)
        return self.params.get(name) or builtin(name, self.tz)


def ds_pieces(text: str, ctx: DsContext) -> list[Piece]:
    """``text`` split into literals and Jinja expressions."""
    pieces: list[Piece] = []
    at = 0
    for match in _TOKEN.finditer(text):
        replacement: str | None = None
        if match.group("time") is not None:
            try:
                replacement = time_expression(match.group("time"), ctx.tz)
            except Unsupported as exc:
                ctx.problems.append(str(exc))
        else:
            name = match.group("name")
            replacement = ctx.name(name)
            if replacement is None and name.startswith("system."):
                ctx.problems.append(f"built-in parameter ${{{name}}} has no equivalent")
        if replacement is None:
            continue  # left as written: DolphinScheduler leaves unknown ${...} to the shell too
        if match.start() > at:
            pieces.append((False, text[at : match.start()]))
        pieces.append((True, replacement))
        at = match.end()
    if at < len(text):
        pieces.append((False, text[at:]))
    return pieces


def escape_literal(text: str) -> str:
    """Literal text safe inside a Stratoflow template (``{{`` and ``{%`` printed, not read)."""
    return _JINJA_OPEN.sub(lambda m: "{{ " + repr(m.group()) + " }}", text)


def as_template(pieces: list[Piece]) -> str:
    return "".join(("{{ " + t + " }}") if is_expr else escape_literal(t) for is_expr, t in pieces)


def as_expression(pieces: list[Piece]) -> str:
    """The same value as one Jinja expression (joined with ``~``)."""
    if not pieces:
        return "''"
    parts = [f"({t})" if is_expr else repr(t) for is_expr, t in pieces]
    return parts[0] if len(parts) == 1 else " ~ ".join(parts)


def rewrite_ds(text: str, ctx: DsContext) -> str:
    return as_template(ds_pieces(text, ctx))


# ------------------------------------------------------------------ switch conditions
# DolphinScheduler pastes each parameter's value into a switch condition as text and
# evaluates it as JavaScript (SwitchTaskUtils). The condition is read here as a small
# JavaScript expression and written as a Jinja one over the js_value / js_op filters, which
# keep JavaScript's values and operators where Python's differ.
_JS_TOKEN = re.compile(
    r"\s*(?:(?P<ref>\$\{[^{}\s]{1,200}\})|(?P<time>\$\[[^\]\n]{1,200}\])"
    r"|(?P<string>'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\")"
    r"|(?P<number>0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_$][A-Za-z0-9_$]*)"
    r"|(?P<op>===|!==|==|!=|<=|>=|&&|\|\||[<>!+\-*/%()]))"
)
_JS_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}
# \xHH, \uHHHH and \u{H...}: the character of that code
_JS_CODE_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|u\{([0-9a-fA-F]{1,8})\})")
_JS_SAFE_INTEGER = 2**53
_NUMERIC_TYPES = frozenset({"INTEGER", "LONG", "FLOAT", "DOUBLE"})
_JS_LITERALS = {"true": ("true", "boolean"), "false": ("false", "boolean"),
                "null": ("none", "null"), "undefined": ("none", "null")}  # fmt: skip
_COMPARISONS = ("==", "!=", "===", "!==", "<", "<=", ">", ">=")
_MAX_JS_DEPTH = 50

# JavaScript's StringToNumber reads these as numbers (any other text is NaN)
_JS_NUMERIC_TEXT = re.compile(
    r"\s*(?:[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|Infinity)"
    r"|0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+)?\s*"
)


class _Js(NamedTuple):
    """A converted JavaScript value: its Jinja expression and JavaScript type (number,
    string, boolean, null, any, or ``text:NAME`` for a VARCHAR parameter: a number or a
    string by its text); for such a parameter its plain reference, for a string literal
    without parameters its text."""

    expr: str
    kind: str
    raw: str = ""
    text: str | None = None


class _JsCondition:
    """A recursive-descent reader of the JavaScript a switch condition is (literals,
    parameters, parentheses, ! - +, arithmetic, comparisons, && ||), writing Jinja."""

    def __init__(self, text: str, ctx: DsContext) -> None:
        self.text = text
        self.ctx = ctx
        self.tokens: list[tuple[str, str]] = []
        self.caveats: list[str] = []
        at = 0
        while at < len(text):
            if not text[at:].strip():
                break
            match = _JS_TOKEN.match(text, at)
            if match is None or match.end() == at:
                raise Unsupported(
                    f"{text[at:].strip()[:20]!r} is JavaScript the importer does not convert "
                    "(method calls, properties, arrays, ?:)"
                )
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            at = match.end()
        self.at = 0
        self.depth = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.at += 1
        return token

    def parse(self) -> str:
        if not self.tokens:
            raise Unsupported("the condition is empty")
        value = self.binary(0)
        if self.peek()[0] != "end":
            raise Unsupported(f"{self.peek()[1]!r} does not continue the expression")
        # DolphinScheduler takes a branch when the condition is the boolean true, nothing else
        return value.expr if value.kind == "boolean" else f"(({value.expr}) is true)"

    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",), ("&&",), ("==", "!=", "===", "!=="), ("<", "<=", ">", ">="), ("+", "-"),
        ("*", "/", "%"),
    )  # fmt: skip

    def binary(self, level: int) -> _Js:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in [("op", o) for o in self._LEVELS[level]]:
            op = self.take()[1]
            left = self.operator(op, left, self.binary(level + 1))
        return left

    def unary(self) -> _Js:
        kind, value = self.peek()
        if (kind, value) in (("op", "!"), ("op", "-"), ("op", "+")):
            self.take()
            self.depth += 1
            if self.depth > _MAX_JS_DEPTH:
                raise Unsupported("the condition nests too deep")
            operand = self.unary()
            self.depth -= 1
            expr = operand.expr
            if value == "!":
                negated = f"(not {expr})" if operand.kind == "boolean" else f"({expr} | js_op('!'))"
                return _Js(negated, "boolean")
            if value == "-" and operand.kind == "number":
                return _Js(f"(-{expr})", "number")
            return _Js(f"({expr} | js_op({value!r}))", "number")
        return self.primary()

    def primary(self) -> _Js:
        kind, value = self.take()
        if kind == "number":
            return _Js(_number_literal(value), "number")
        if kind == "string":
            return self.string(value[1:-1])
        if kind == "ref":
            return self.reference(value[2:-1])
        if kind == "time":
            return _Js(f"({time_expression(value[2:-1], self.ctx.tz)} | js_value)", "any")
        if kind == "name" and value in _JS_LITERALS:
            return _Js(*_JS_LITERALS[value])
        if kind == "name" and value in ("NaN", "Infinity"):
            return _Js(f"({value!r} | js_op('+'))", "number")
        if (kind, value) == ("op", "("):
            self.depth += 1
            if self.depth > _MAX_JS_DEPTH:
                raise Unsupported("the condition nests too deep")
            inner = self.binary(0)
            self.depth -= 1
            if self.take() != ("op", ")"):
                raise Unsupported("a parenthesis is not closed")
            return _Js(f"({inner.expr})", inner.kind, inner.raw, inner.text)
        if kind == "name":
            raise Unsupported(f"it reads the JavaScript name {value!r}, which is not converted")
        raise Unsupported(f"{value or 'its end'!r} is not where a value is expected")

    def reference(self, name: str) -> _Js:
        ref = self.ctx.name(name)
        if ref is None:
            raise Unsupported(f"it reads ${{{name}}}, which is not a parameter")
        declared = self.ctx.types.get(name, "VARCHAR")
        if declared in _NUMERIC_TYPES:
            return _Js(f"({ref} | js_value('number'))", "number")
        if declared == "BOOLEAN":
            return _Js(f"({ref} | js_value('boolean'))", "boolean")
        return _Js(f"({ref} | js_value)", f"text:{name}", raw=ref)

    def string(self, body: str) -> _Js:
        """A string literal: its text, with each ``${name}`` in it pasted as text."""
        parts: list[str] = []
        literal: list[str] = []
        i = 0
        while i < len(body):
            match = _TOKEN.match(body, i)
            if match is not None:
                if literal:
                    parts.append(repr("".join(literal)))
                    literal = []
                if match.group("time") is not None:
                    parts.append(f"({time_expression(match.group('time'), self.ctx.tz)})")
                else:
                    name = match.group("name")
                    ref = self.ctx.name(name)
                    if ref is None:
                        raise Unsupported(f"it reads ${{{name}}}, which is not a parameter")
                    parts.append(f"({ref} | js_value('string'))")
                i = match.end()
            elif body[i] == "\\" and i + 1 < len(body):
                escape = _JS_CODE_ESCAPE.match(body, i)
                if escape is not None:
                    code = int(escape.group(1) or escape.group(2) or escape.group(3), 16)
                    if code > 0x10FFFF:
                        raise Unsupported(f"{escape.group()!r} is no character")
                    literal.append(chr(code))
                    i = escape.end()
                    continue
                literal.append(_JS_ESCAPES.get(body[i + 1], body[i + 1]))
                i += 2
            else:
                literal.append(body[i])
                i += 1
        if literal or not parts:
            parts.append(repr(_utf16_pairs("".join(literal))))
        if len(parts) == 1 and not parts[0].startswith("("):
            return _Js(parts[0], "string", text=_utf16_pairs("".join(literal)))
        return _Js(parts[0] if len(parts) == 1 else "(" + " ~ ".join(parts) + ")", "string")

    def operator(self, op: str, left: _Js, right: _Js) -> _Js:
        a, b, ta, tb = left.expr, right.expr, left.kind, right.kind
        for side, other in ((left, right), (right, left)):
            if side.kind.startswith("text:") and self._differs_in_3_1(op, other):
                self.caveat(side.kind[5:], op)
        if op in ("&&", "||"):
            kind = "boolean" if ta == tb == "boolean" else "any"
            if ta in ("boolean", "string", "null"):  # truthy in Python as in JavaScript
                word = "and" if op == "&&" else "or"
                return _Js(f"({a} {word} {b})", kind)
            # a number may be NaN, falsy in JavaScript (truthy in Python)
            return _Js(f"({a} | js_op({op!r}, {b}))", kind)
        known = {ta, tb} <= {"number", "string", "boolean"}
        if op in _COMPARISONS:
            python = {"===": "==", "!==": "!="}.get(op, op)
            # (strings order by UTF-16 units in JavaScript, by code points in Python)
            if known and ta == tb and (op in _COMPARISONS[:4] or ta == "number"):
                return _Js(f"({a} {python} {b})", "boolean")
            if op in ("===", "!==") and known:  # two known types that differ
                return _Js("false" if op == "===" else "true", "boolean")
            if op in _COMPARISONS[:4]:
                # a parameter and text JavaScript reads as NaN: equal only as the same text
                # (a number is never equal to NaN), as Python's == says of the plain value
                for side, other in ((left, right), (right, left)):
                    if side.raw and other.text is not None and not _numeric_text(other.text):
                        return _Js(f"({side.raw} {python} {other.expr})", "boolean")
            return _Js(f"({a} | js_op({op!r}, {b}))", "boolean")
        if op == "+" and "string" in (ta, tb):
            return _Js(f"({a} | js_op('+', {b}))", "string")
        # (two numbers too: js_op computes in doubles, where Python's integers are exact)
        kind = "number" if op != "+" or ta == tb == "number" else "any"
        return _Js(f"({a} | js_op({op!r}, {b}))", kind)

    @staticmethod
    def _differs_in_3_1(op: str, other: _Js) -> bool:
        """Whether a VARCHAR parameter read as a number when its text is one (2.x, 3.0)
        may give another result than read as a string (3.1 and later) under ``op``."""
        if op in ("===", "!=="):
            return other.text is None or _numeric_text(other.text)
        if op in _COMPARISONS[4:]:
            return other.kind != "number"
        return op == "+"

    def caveat(self, name: str, op: str) -> None:
        text = (
            f"${{{name}}} is read as a number when its text is one (DolphinScheduler 2.x and "
            "3.0 paste it so; 3.1 and later paste a VARCHAR parameter as a quoted string): "
            f"with {op} the result may differ from 3.1+ (declare it INTEGER, or compare "
            "with ==, to make it the same)"
        )
        if text not in self.caveats:
            self.caveats.append(text)


def _number_literal(value: str) -> str:
    """A JavaScript number literal as a Jinja one of the same double: an integer past 2**53
    rounds as JavaScript's does, one too large is Infinity (Python's float reads any length;
    int() stops at 4,300 digits), which Jinja has no literal for."""
    if value[:2].lower() == "0x":
        try:
            number = float(int(value, 16))
        except OverflowError:
            number = math.inf
    else:
        number = float(value)
    if math.isinf(number):
        return "('Infinity' | js_op('+'))"
    if number.is_integer() and number <= _JS_SAFE_INTEGER:
        return str(int(number))
    return repr(number)


def _utf16_pairs(text: str) -> str:
    """``text`` with each pair of UTF-16 surrogates (``\\ud83d\\ude00``) as the one
    character JavaScript reads them as."""
    if not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _numeric_text(text: str) -> bool:
    return _JS_NUMERIC_TEXT.fullmatch(text) is not None


def js_condition(text: str, ctx: DsContext) -> tuple[str, list[str]]:
    """A DolphinScheduler switch condition as a Jinja expression that is true where
    DolphinScheduler's JavaScript is: a ``${name}`` inside a string literal becomes that
    literal's text; outside, its value as the JavaScript DolphinScheduler pastes it in
    (``js_value``: a number when its declared type is numeric or its text is a number, a
    boolean when it is declared BOOLEAN, else a string), with JavaScript's operators
    (``js_op``) where Python's differ. Also the caveats the report should carry."""
    reader = _JsCondition(text, ctx)
    return reader.parse(), reader.caveats


# ------------------------------------------------------------------------- Airflow macros
# one piece of an Airflow template: a {% raw %} block (kept as it is), a comment (Airflow
# renders it as nothing; Stratoflow's comments are written {#: ... :#}), an expression or a
# statement
_TEMPLATE_PART = re.compile(
    r"(?P<raw>\{%[-+]?\s*raw\s*[-+]?%\}.*?\{%[-+]?\s*endraw\s*[-+]?%\})"
    r"|(?P<comment>\{#.*?#\})"
    r"|\{\{(?P<expr>.*?)\}\}"
    r"|\{%(?P<stmt>.*?)%\}",
    re.S,
)
_STATEMENT_HEAD = re.compile(r"\s*[-+]?\s*(\w*)")
# statements whose words are not names read from the context (a filter's name, a template
# to load): left as written, for validation to judge
_OPAQUE_STATEMENTS = frozenset({"filter", "import", "from", "include", "extends", "block"})
# the names a template defines itself: {% set a = ... %} / {% set a %}, {% for k, v in ...
# %}, {% macro m(a, b=1) %}, {% call(a) ... %}, {% with a = ..., b = ... %}
_SET_OR_FOR = re.compile(r"\{%[-+]?\s*(?:set|for)\s+([\w\s,()]+?)\s*(?:=|\bin\b|[-+]?%\})")
_SIGNATURE = re.compile(r"\{%[-+]?\s*(?:macro\s+(\w+)\s*|call\s*)\(([^)]*)\)")
_WITH = re.compile(r"\{%[-+]?\s*with\s+(.*?)[-+]?%\}", re.S)
_ASSIGNED = re.compile(r"(\w+)\s*=(?!=)")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
# Airflow's date texts: which run's date (this, the next interval's, the previous one's),
# the UTC days added, and the text's format (what macros.ds_add and ds_format parse)
_DATE_TEXTS: dict[str, tuple[str, int, str]] = {
    "ds": ("this", 0, "%Y-%m-%d"), "ds_nodash": ("this", 0, "%Y%m%d"),
    "yesterday_ds": ("this", -1, "%Y-%m-%d"), "yesterday_ds_nodash": ("this", -1, "%Y%m%d"),
    "tomorrow_ds": ("this", 1, "%Y-%m-%d"), "tomorrow_ds_nodash": ("this", 1, "%Y%m%d"),
    "next_ds": ("next", 0, "%Y-%m-%d"), "next_ds_nodash": ("next", 0, "%Y%m%d"),
    "prev_ds": ("prev", 0, "%Y-%m-%d"), "prev_ds_nodash": ("prev", 0, "%Y%m%d"),
}  # fmt: skip
# Airflow 2's names of the next and previous intervals (Airflow 3 has none of them)
NEIGHBOUR_NAMES = frozenset(
    {"next_ds", "next_ds_nodash", "prev_ds", "prev_ds_nodash", "next_execution_date",
     "prev_execution_date"}
)  # fmt: skip
_DATE_NAME = "|".join(sorted(_DATE_TEXTS, key=len, reverse=True))
_DS_ADD = re.compile(rf"macros\.ds_add\(\s*({_DATE_NAME})\s*,\s*(-?[0-9]{{1,6}})\s*\)")
_QUOTED = r"('[^'\\\n]*'|\"[^\"\\\n]*\")"
# macros.ds_format(<a date text, or ds_add of one>, 'input format', 'output format')
_DS_FORMAT = re.compile(
    rf"macros\.ds_format\(\s*(macros\.ds_add\(\s*(?:{_DATE_NAME})\s*,\s*-?[0-9]{{1,6}}\s*\)"
    rf"|{_DATE_NAME})\s*,\s*{_QUOTED}\s*,\s*{_QUOTED}\s*\)"
)
# Airflow names that are datetimes (their methods and attributes: .strftime(), .year, ...),
# where Stratoflow's are text
_DATE_OBJECTS = frozenset(
    {"logical_date", "execution_date", "data_interval_start", "data_interval_end",
     "next_execution_date", "prev_execution_date"}
)  # (ts is text in Airflow too)  # fmt: skip
_HELD = re.compile("\x00([0-9]+)\x00")  # an expression held out of the renaming
_NAME = re.compile(r"(?<![\w.\]'\"])([A-Za-z_]\w*)((?:\.\w+)*)")
_JINJA_WORDS = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False",
     "None", "loop", "range", "caller", "varargs", "kwargs", "namespace", "dict", "lipsum",
     "cycler", "joiner"}
)  # fmt: skip
# words of a statement that are no names (``for a in b recursive``, ``with context``)
_STATEMENT_WORDS = frozenset({"recursive", "ignore", "missing", "with", "without", "context", "as"})


def _defined_names(text: str) -> set[str]:
    """The names ``text`` defines for itself (set, for, macro and call arguments, with)."""
    found: set[str] = set()
    for match in _SET_OR_FOR.finditer(text):
        found.update(_IDENTIFIER.findall(match.group(1)))
    for match in _SIGNATURE.finditer(text):
        if match.group(1):
            found.add(match.group(1))
        found.update(p.split("=")[0].strip() for p in match.group(2).split(",") if p.strip())
    for match in _WITH.finditer(text):
        found.update(_ASSIGNED.findall(match.group(1)))
    return found - _STATEMENT_WORDS


@dataclass(frozen=True)
class AirflowDates:
    """How Airflow's date macros read for one DAG: the logical date's shift from the fire
    time (Airflow 2's data intervals start one interval before it). ``days`` step on the
    wall clock of ``tz``, the schedule's zone, as cron intervals do across a DST change;
    ``minutes`` are elapsed time. The dates are written in UTC, as Airflow's are."""

    tz: str = "UTC"
    days: int = 0
    minutes: int = 0
    # how Airflow 2's next_ds / prev_ds (and the rest of NEIGHBOUR_NAMES) read: "interval"
    # (the schedule's intervals are of one length: the interval after this one, and the one
    # before), "same" (a DAG without a schedule: every run is triggered by hand, and Airflow
    # 2 gives it its own date as both), or None: no equivalent, ``no_neighbours`` says why
    # ({name} is the name read)
    neighbours: str | None = None
    no_neighbours: str = "{name} has no equivalent for this DAG's schedule"

    def of(self, which: str) -> AirflowDates | None:
        """The dates of this run (``this``), or of the interval after (``next``) or before
        (``prev``) it, as Airflow reads them; None when they have no equivalent."""
        if which == "this" or self.neighbours == "same":
            return self
        if self.neighbours != "interval":
            return None
        times = 0 if which == "next" else 2  # the fire time is the next interval's start
        return replace(self, days=self.days * times, minutes=self.minutes * times)

    def date(self, fmt: str, extra_days: int = 0) -> str:
        """``fmt`` of the interval's start, moved ``extra_days`` calendar days in UTC (as
        Airflow's ``yesterday_ds`` and ``macros.ds_add(ds, n)`` move its UTC date)."""
        if self.tz != "UTC" and self.days:
            start = _shift_call(_ISO_UTC, self.tz, self.days, self.minutes, out_tz="UTC")
            if not extra_days:
                return _shift_call(fmt, self.tz, self.days, self.minutes, out_tz="UTC")
            return f"{start} | shift_date({fmt!r}, 'UTC', days={extra_days})"
        call = _shift_call(fmt, "UTC", self.days + extra_days, self.minutes)
        return {_PLAIN_DS: "ds", _PLAIN_DS_NODASH: "ds_nodash"}.get(call, call)


# the text of Airflow's ts and logical_date (an isoformat, "+00:00"), the dates being in UTC
_ISO_UTC = "%Y-%m-%dT%H:%M:%S+00:00"


def _shift_call(fmt: str, tz: str, days: int, minutes: int, out_tz: str | None = None) -> str:
    args = [repr(fmt), repr(tz)]
    if days:
        args.append(f"days={days}")
    if minutes:
        args.append(f"minutes={minutes}")
    if out_tz is not None:
        args.append(f"out_tz={out_tz!r}")
    return f"logical_date | shift_date({', '.join(args)})"


_PLAIN_DS = _shift_call("%Y-%m-%d", "UTC", 0, 0)
_PLAIN_DS_NODASH = _shift_call("%Y%m%d", "UTC", 0, 0)


def _logical(dates: AirflowDates) -> str:
    return "logical_date" if not (dates.days or dates.minutes) else dates.date(_ISO_UTC)


def _airflow_names(dates: AirflowDates) -> dict[str, str]:
    logical = _logical(dates)
    neighbours: dict[str, str] = {}
    for name, (which, extra, fmt) in _DATE_TEXTS.items():
        other = dates.of(which)
        if which != "this" and other is not None:
            neighbours[name] = other.date(fmt, extra)
    for which in ("next", "prev"):
        other = dates.of(which)
        if other is not None:
            neighbours[f"{which}_execution_date"] = (
                "logical_date" if other.neighbours == "same" else _logical(other)
            )
    return neighbours | {
        "ds": dates.date("%Y-%m-%d"),
        "ds_nodash": dates.date("%Y%m%d"),
        "ts": logical,
        "ts_nodash": dates.date("%Y%m%dT%H%M%S"),
        "ts_nodash_with_tz": dates.date("%Y%m%dT%H%M%S+0000"),  # ts without - and :
        "logical_date": logical,
        "execution_date": logical,
        # the run's data interval: Airflow 2's from its logical date to its fire time,
        # Airflow 3's (a cron's, a timedelta's) empty at its fire time
        "data_interval_start": logical,
        "data_interval_end": "logical_date",
        "yesterday_ds": dates.date("%Y-%m-%d", -1),
        "yesterday_ds_nodash": dates.date("%Y%m%d", -1),
        "tomorrow_ds": dates.date("%Y-%m-%d", 1),
        "tomorrow_ds_nodash": dates.date("%Y%m%d", 1),
        "run_id": "run.id",
        "dag.dag_id": "run.workflow",
        "dag_run.run_id": "run.id",
        "task.task_id": "task.id",
        "ti.task_id": "task.id",
        "task_instance.task_id": "task.id",
    }


# ti.xcom_pull(...) with literal arguments only: task_ids (first, or by name) and key
_XCOM = re.compile(r"\b(?:ti|task_instance)\.xcom_pull\(([^()]*)\)")
_XCOM_ARG = re.compile(r"\s*(?:(\w+)\s*=\s*)?('[^'\\,]*'|\"[^\"\\,]*\")\s*")


def _xcom_ref(args: str, outputs: Mapping[str, str]) -> str | None:
    """``tasks.<id>.outputs.<key>`` for ``xcom_pull(task_ids='a', key='k')``: one literal
    task id of the import (``outputs``: Airflow id -> Stratoflow id) and a literal key.
    None for anything else (no key: Airflow's return_value is the whole return, which
    Stratoflow's outputs are not; a list of tasks; an expression)."""
    found: dict[str, str] = {}
    for i, part in enumerate(args.split(",")):
        arg = _XCOM_ARG.fullmatch(part)
        if arg is None:
            return None
        name = arg.group(1) or ("task_ids" if i == 0 else "")
        if name not in ("task_ids", "key") or name in found:
            return None
        found[name] = arg.group(2)[1:-1]
    task, key = found.get("task_ids"), found.get("key")
    if task is None or task not in outputs or not key:
        return None
    return output_ref(outputs[task], key)


def held(match: re.Match[str], made: list[str]) -> str:
    """What a ``_HELD`` marker stands for (anything else that looks like one, as written)."""
    index = int(match.group(1))
    return made[index] if index < len(made) else match.group(0)


def rewrite_airflow(
    text: str,
    dates: AirflowDates,
    problems: list[str],
    outputs: Mapping[str, str] | None = None,
    changes: list[str] | None = None,
) -> str:
    """Airflow's template variables as Stratoflow's, in expressions and statements alike;
    anything else it reads is a problem (not the names the template sets itself). An Airflow
    comment (``{# ... #}``) is dropped, as Airflow renders it. ``outputs`` (Airflow task id ->
    Stratoflow id) lets ``ti.xcom_pull(task_ids='a', key='k')`` read ``tasks.a.outputs.k``;
    each such rewrite is said in ``changes``."""
    names = _airflow_names(dates)
    defined = _defined_names(text)

    def xcom(match: re.Match[str]) -> str:
        ref = _xcom_ref(match.group(1), outputs or {})
        if ref is None:
            return match.group(0)
        if changes is not None:
            changes.append(
                f"{match.group(0)} reads {{{{ {ref} }}}}: that task must write the output "
                "and be upstream of this one"
            )
        return ref

    def rename(inner: str, statement: bool) -> str:
        # ds_add(ds, n) becomes an expression already in Stratoflow's names (the logical
        # date, shifted as this DAG's dates are, plus n days): held out of the renaming
        # below, which would shift its logical_date a second time
        made: list[str] = []

        def hold(expression: str) -> str:
            made.append("(" + expression + ")")
            return f"\x00{len(made) - 1}\x00"

        def neighbour(name: str) -> None:
            if dates.neighbours == "interval" and changes is not None:
                changes.append(
                    f"{name} reads the scheduled interval after or before the run's, as Airflow "
                    "2 gives it a scheduled run (Airflow 2 gives a run triggered by hand its "
                    "own date)"
                )

        def date_text(name: str, fmt: str, days: int, written: str) -> str | None:
            """Airflow's date text ``name`` moved ``days`` UTC days and written with
            ``fmt``, or None (said in problems) when it has no equivalent."""
            which, extra, _ = _DATE_TEXTS[name]
            other = dates.of(which)
            if other is not None and name in NEIGHBOUR_NAMES:
                neighbour(name)
            if name in defined or other is None:
                if other is None:
                    problems.append(
                        f"the template reads {written!r}: " + dates.no_neighbours.format(name=name)
                    )
                return None
            return other.date(fmt, extra + days)

        def ds_format(m: re.Match[str]) -> str:
            arg, given, wanted = m.group(1), m.group(2)[1:-1], m.group(3)[1:-1]
            add = _DS_ADD.fullmatch(arg)
            name, days = (add.group(1), int(add.group(2))) if add else (arg, 0)
            parsed = "%Y-%m-%d" if add else _DATE_TEXTS[name][2]
            if given != parsed:  # strptime would fail (or read other fields): Airflow's error
                problems.append(
                    f"the template reads {m.group(0)!r}: macros.ds_format parses {arg} as "
                    f"{given!r}, but it is written {parsed!r} (Airflow fails the task)"
                )
                return m.group(0)
            expression = date_text(name, wanted, days, m.group(0))
            return m.group(0) if expression is None else hold(expression)

        def ds_add(m: re.Match[str]) -> str:
            name, days = m.group(1), int(m.group(2))
            if _DATE_TEXTS[name][2] != "%Y-%m-%d":  # ds_add parses %Y-%m-%d: Airflow fails
                problems.append(
                    f"the template reads {m.group(0)!r}: macros.ds_add parses a date written "
                    f"%Y-%m-%d, which {name} is not (Airflow fails the task)"
                )
                return m.group(0)
            expression = date_text(name, "%Y-%m-%d", days, m.group(0))
            return m.group(0) if expression is None else hold(expression)

        inner = _DS_FORMAT.sub(ds_format, inner)
        inner = _DS_ADD.sub(ds_add, inner)
        inner = _XCOM.sub(xcom, inner)

        def name(m: re.Match[str]) -> str:
            head, tail = m.group(1), m.group(2)
            before = m.string[: m.start()].rstrip()
            after = m.string[m.end() :].lstrip()
            keyword = after[:1] == "=" and after[:2] != "=="
            if before.endswith("|") or before.endswith(" is") or keyword:
                return head + tail  # a filter or test name, or a keyword argument
            dotted = head + tail
            if head in defined or (statement and head in _STATEMENT_WORDS):
                return dotted  # the template's own name (it may shadow Airflow's)
            for length in range(len(dotted.split("."))):
                candidate = ".".join(dotted.split(".")[: len(dotted.split(".")) - length])
                if candidate in names:
                    if candidate in NEIGHBOUR_NAMES:
                        neighbour(candidate)
                    rest = dotted[len(candidate) :]
                    if rest and candidate in _DATE_OBJECTS:
                        problems.append(
                            f"the template reads {dotted!r}: Airflow's {candidate} is a "
                            "datetime, Stratoflow's logical_date is ISO-8601 text, so rendering "
                            "it fails the task; use {{ logical_date | shift_date(fmt, tz) }}"
                        )
                    return (
                        f"({names[candidate]}){rest}"
                        if "|" in names[candidate]
                        else names[candidate] + rest
                    )
            if head in NEIGHBOUR_NAMES:
                problems.append(
                    f"the template reads {dotted!r}: " + dates.no_neighbours.format(name=head)
                )
                return dotted
            if head in ("params", "tasks", "shift_date") or head in _JINJA_WORDS:
                return dotted
            if head == "var":  # Airflow's Variables are Stratoflow's project variables
                parts = dotted.split(".")
                if len(parts) >= 3 and parts[1] in ("value", "json") and parts[2] != "get":
                    # (var.value.get(...) is left to validation, which refuses it saying why)
                    if changes is not None:
                        changes.append(
                            f"{{{{ {'.'.join(parts[:3])} }}}} reads the project's variable "
                            f"{parts[2]!r}: set it before a run "
                            f"(stratoflow variables set {parts[2]} VALUE --project P)"
                        )
                    return dotted
            if head == "task":  # Stratoflow has a task too: {"id": <task id>}, not the operator
                if tail:
                    problems.append(
                        f"the template reads {dotted!r}: Stratoflow's task has only task.id, "
                        "so rendering it fails the task"
                    )
                else:
                    (changes if changes is not None else problems).append(
                        "{{ task }} is kept: in Stratoflow it renders the mapping "
                        '{"id": "<task id>"} as JSON (its quotes end a shell\'s double quotes '
                        "around it), where Airflow's renders the operator as "
                        "<Task(<Operator>): <task id>>; {{ task.id }} is the id alone"
                    )
                return dotted
            problems.append(f"the template reads {dotted!r}, which Stratoflow does not provide")
            return dotted

        # names inside string literals are not names: rewrite only outside quotes
        parts = re.split(r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")", inner)
        for i in range(0, len(parts), 2):
            parts[i] = _NAME.sub(name, parts[i])
        return _HELD.sub(lambda m: held(m, made), "".join(parts))

    def part(match: re.Match[str]) -> str:
        if match.group("raw") is not None:
            return match.group(0)
        if match.group("comment") is not None:
            return ""
        if match.group("expr") is not None:
            return "{{" + rename(match.group("expr"), statement=False) + "}}"
        inner = match.group("stmt")
        head = _STATEMENT_HEAD.match(inner)
        if head is None or head.group(1) in _OPAQUE_STATEMENTS:
            return match.group(0)
        return "{%" + inner[: head.end()] + rename(inner[head.end() :], statement=True) + "%}"

    return _TEMPLATE_PART.sub(part, text)
