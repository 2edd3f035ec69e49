"""Templates: what every process needs without Jinja2, and the rest on first use.

Rendering and parsing live in :mod:`stratoflow._jinja_templating` (a bounded Jinja2 sandbox;
its docstring says how it is bounded). Importing Jinja2 and building that sandbox costs
~30 ms, and a workflow without a template never needs them: every function here answers text
with no template syntax itself (as the sandbox's functions do), and imports the sandbox only
for a template. Any other name (``shift_date``, ...) is the sandbox module's, looked up there.

Pure: no I/O.
"""

from __future__ import annotations

import re
import secrets as _random
from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

from stratoflow.secrets import NAME_PATTERN as SECRET_NAME_PATTERN
from stratoflow.secrets import REFERENCE as SECRET_REFERENCE


@dataclass(frozen=True)
class Limits:
    """What one render may cost. The names appear in the errors of a template over them."""

    seconds: float = 0.5  # CPU time of one render (of a whole task's templates)
    max_chars: int = 1_000_000  # characters of the rendered text, or size of any value built
    max_width: int = 10_000  # a width, precision, fill count or tab size given to a format
    max_range: int = 10_000  # items of one range()
    max_int_bits: int = 10_000  # bits of an integer made by * or ** (about 3,000 digits)


LIMITS = Limits()


class TemplateError(ValueError):
    """A template that does not parse or does not render; the message names the problem."""


@cache
def _jinja() -> ModuleType:
    """The sandbox module (imported on the first template)."""
    from stratoflow import _jinja_templating

    return _jinja_templating


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_jinja(), name)


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


# What the sandbox reads as syntax (its start strings; it has no line prefixes), and NUL, which
# starts the tokens finish_references looks for: the sandbox module derives the same tuple
# from its environment, and a test holds the two equal.
_NOT_PLAIN = ("{{", "{%", "{#:", "\x00")


def is_plain(value: Any) -> bool:
    """Whether rendering (:func:`render_value`) and :func:`finish_references` both leave
    ``value`` as it is, whatever the context: no string in it (walking lists and dict values,
    as they do) holds template syntax or a NUL. A stricter test than :func:`is_template`.
    Such a value holds no secret reference either: a reference is ``{{ secrets.NAME }}``."""
    if isinstance(value, str):
        return not any(marker in value for marker in _NOT_PLAIN)
    if isinstance(value, list):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(is_plain(v) for v in value.values())
    return True


def bounded(limits: Limits | None = None) -> AbstractContextManager[None]:
    """Render everything inside under one budget (see the sandbox module's ``bounded``)."""
    bounded_: Any = _jinja().bounded
    return bounded_(limits)  # type: ignore[no-any-return]


def check_syntax(text: str) -> None:
    if is_template(text):
        _jinja().check_syntax(text)


def referenced_tasks(text: str) -> set[str]:
    """Task ids a template reads through ``tasks.<id>`` or ``tasks['<id>']``."""
    if not is_template(text):
        return set()
    found: set[str] = _jinja().referenced_tasks(text)
    return found


def reads_tasks_dynamically(text: str) -> bool:
    """Whether a template reads ``tasks`` other than by a literal name (``tasks[t]``)."""
    if not is_template(text) or "tasks" not in text:
        return False
    dynamic: bool = _jinja().reads_tasks_dynamically(text)
    return dynamic


def variable_references(text: str) -> tuple[set[str], list[str]]:
    """The variables a template reads (``var.value.NAME``, ``var.json.NAME``, or with
    ``['NAME']``), and what is wrong with how it reads ``var`` (any other form: which
    variables it reads must be known before it renders, so that a render reads only those)."""
    if not is_template(text) or "var" not in text:
        return set(), []
    found: tuple[set[str], list[str]] = _jinja().variable_references(text)
    return found


def secret_references(text: str) -> tuple[set[str], list[str]]:
    """The secret names a template references, and what is wrong with how it does (see the
    sandbox module's ``secret_references``)."""
    if not is_template(text) or "secrets" not in text:
        return set(), []
    found: tuple[set[str], list[str]] = _jinja().secret_references(text)
    return found


class TaskOutputs(dict[str, Any]):
    """``tasks.<id>.outputs`` of a render context: an upstream task's outputs. The sandbox
    reads a key it does not hold as undefined with :meth:`missing`'s words (``| default``
    and ``is defined`` work as before), naming the task and the outputs it has."""

    def __init__(self, task_id: str, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.task_id = task_id

    def missing(self, name: object) -> str:
        have = ", ".join(sorted(map(str, self))[:20]) + (", ..." if len(self) > 20 else "")
        told = f"its outputs: {have}" if self else "it has no outputs"
        return f"task {self.task_id!r} has no output {str(name)!r} ({told})"


class TemplateVariables(dict[str, Any]):
    """``var.value`` (the text) or ``var.json`` (the text parsed as JSON) of a render context:
    the project's variables that the task's templates read and that are set. The sandbox
    reads one that is not set as undefined with :meth:`missing`'s words (so ``| default``
    and ``is defined`` work, and otherwise the task fails naming it and the project)."""

    def __init__(self, project: str, values: Mapping[str, str], *, as_json: bool) -> None:
        super().__init__(values)
        self.project = project
        self.as_json = as_json

    def missing(self, name: str) -> str:
        from stratoflow.variables import missing_message

        return missing_message(self.project, str(name))

    def __getitem__(self, name: str) -> Any:
        text = dict.__getitem__(self, name)
        if not self.as_json:
            return text
        import json

        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise TemplateError(
                f"variable {name!r} of project {self.project!r} is not JSON ({exc}): "
                f"var.json.{name} reads JSON; var.value.{name} reads the text"
            ) from None


# The top-level names of a task's render context (``engine.template_context``; a test holds
# the two equal). Validation refuses a template reading any other name it does not define.
CONTEXT_NAMES = frozenset(
    {"params", "tasks", "run", "task", "logical_date", "ds", "ds_nodash", "ts", "secrets", "var"}
)

_DATE_SHIFT = "{{ logical_date | shift_date('%Y-%m-%d', 'UTC', days=N) }} (shift_date also "
_DATE_SHIFT += "takes months=, minutes=, to='month_start' and any strftime format)"
# Stratoflow's logical date is the fire time: Airflow 2's data_interval_end. Airflow 2's
# logical date (execution_date, ds) is the start of the interval, the previous fire time, which
# a run's context does not have: shifted back one interval, as the importer writes Airflow 2's
# {{ ds }} (a daily schedule's interval is a day; in another zone it steps in that zone's days)
_FIRE_TIME = (
    "Stratoflow's logical date is the fire time, Airflow's data_interval_end: "
    "use {{ logical_date }} or {{ ts }} (ISO-8601 text); {{ ds }} and {{ ds_nodash }} are its date"
)
_PREVIOUS_FIRE = (
    "the previous fire time, one interval before Stratoflow's {{ logical_date }} (the fire "
    "time, Airflow's data_interval_end); for a daily schedule write "
    "{{ logical_date | shift_date('%Y-%m-%dT%H:%M:%S+00:00', 'UTC', days=-1) }}, or its date "
    "{{ logical_date | shift_date('%Y-%m-%d', 'UTC', days=-1) }} (a daily schedule in another "
    "time zone: shift_date(fmt, '<zone>', days=-1, out_tz='UTC'); another interval: shift by it)"
)
# Airflow's template names, and what reads the same in Stratoflow
AIRFLOW_NAMES: Mapping[str, str] = {
    "ti": "an upstream task's output is {{ tasks.<task>.outputs.<key> }} (not "
    "ti.xcom_pull(task_ids=..., key=...); the task must be upstream), the task's id {{ task.id }}",
    "task_instance": "an upstream task's output is {{ tasks.<task>.outputs.<key> }}, "
    "the task's id {{ task.id }}",
    "execution_date": "Airflow 2's execution_date (as its {{ ds }}) is the start of the "
    f"interval: {_PREVIOUS_FIRE}",
    "data_interval_start": f"the start of the interval is {_PREVIOUS_FIRE}",
    "data_interval_end": _FIRE_TIME,
    "next_execution_date": f"Airflow 2's next_execution_date is data_interval_end: {_FIRE_TIME}",
    "prev_execution_date": f"use {_DATE_SHIFT}",
    "next_ds": "Airflow 2's next_ds is data_interval_end's date, Stratoflow's {{ ds }} (the "
    "fire time's)",
    "prev_ds": f"use {_DATE_SHIFT}",
    "yesterday_ds": f"use {_DATE_SHIFT}",
    "tomorrow_ds": f"use {_DATE_SHIFT}",
    "yesterday_ds_nodash": f"use {_DATE_SHIFT}",
    "tomorrow_ds_nodash": f"use {_DATE_SHIFT}",
    "ts_nodash": "use {{ logical_date | shift_date('%Y%m%dT%H%M%S') }}",
    "macros": f"Stratoflow has no macros; for macros.ds_add(ds, N) use {_DATE_SHIFT}",
    "dag_run": "dag_run.conf is {{ params.<name> }} (a run passes only the params the "
    "workflow declares), dag_run.run_id is {{ run.id }}",
    "conf": "a run's values are {{ params.<name> }}, declared in the workflow's params",
    "run_id": "use {{ run.id }}",
    "dag": "the workflow's name is {{ run.workflow }}",
    "conn": "Stratoflow has no connections in templates: an sql task names its connection "
    "(connection: <name>); other credentials are secrets ({{ secrets.<NAME> }})",
}


def undefined_names(
    text: str, params: Collection[str] | None, *, own_params: bool = False
) -> list[str]:
    """Why a template reads a name its render context never has, one message per name:
    a top-level name that is not in :data:`CONTEXT_NAMES` and that the template does not
    define itself, or a param by a literal name (``params.b``) not in ``params``, the names
    the render's params can have (a run passes only declared params; None: not checked).
    ``own_params``: the template is one of a task's params, which read the run's params only.
    Names guarded by a test (``is defined``) or the ``default`` filter are not refused.
    A filter or test Stratoflow's templates do not have, used outside a condition's
    branches, is said instead (``unknown_filters``): the names are not looked at then.
    Validation asks this of new workflows only: a stored version loads as it was applied."""
    if not is_template(text):
        return []
    missing: list[str] = _jinja().unknown_filters(text)
    if missing:
        return missing
    found: tuple[frozenset[str], frozenset[str] | None] = _jinja().names_read(text)
    free, read = found
    why: list[str] = []
    for name in sorted(free - CONTEXT_NAMES):
        hint = AIRFLOW_NAMES.get(name)
        if hint is not None:
            why.append(f"template reads {name!r}, an Airflow name Stratoflow does not have: {hint}")
        else:
            why.append(
                f"template reads {name!r}, which is not defined: a template can read "
                + ", ".join(sorted(CONTEXT_NAMES))
                + " and the names it sets itself"
            )
    if params is None or read is None:
        return why
    for key in sorted(read - set(params)):
        if hasattr(dict, key):  # params.items, params.get(...): the dict's methods
            continue
        declared = ", ".join(sorted(params)) or "none"
        where = " (a task's params read the run's params, not the task's own)" if own_params else ""
        why.append(
            f"template reads params.{key}, which is never defined: {key!r} is not a param it "
            f"can read ({declared}){where}; a run passes only the params the workflow declares"
        )
    return why


_CODE_EXAMPLES = 3  # template expressions a problem of python code quotes
_CODE_PARSES = 1_000  # braces in one code parsed as Jinja at most (~50 us each)
_TEMPLATE_NAME = re.compile(
    r"\b(?:" + "|".join(sorted(CONTEXT_NAMES | AIRFLOW_NAMES.keys())) + r")\b"
)


def code_templates(code: str) -> str | None:
    """Why a python task's ``code`` misleads, or None: code is not rendered (Jinja over Python
    source would let data write code), so a ``{{ ... }}`` in it that reads what a workflow's
    templates read (:data:`CONTEXT_NAMES`, an Airflow name) would reach Python as written.
    A canonical secret reference (``{{ secrets.NAME }}``) is fine: the executor replaces
    it. Braces that are not such an expression (an f-string's ``{{``, a Jinja template the
    code renders itself with its own names) are Python's business and left alone. Bounded:
    each ``{{`` is paired with the next ``}}`` (as Jinja's lexer would), only a pair that
    names such a name is parsed, at most ``_CODE_PARSES`` of them."""
    if "{{" not in code:
        return None
    wrong: dict[str, None] = {}  # in the code's order
    secret_form = False
    at = parses = 0
    while (start := code.find("{{", at)) >= 0 and (end := code.find("}}", start + 2)) >= 0:
        at = end + 2
        text = code[start:at]
        if text in wrong or SECRET_REFERENCE.fullmatch(text) or not _TEMPLATE_NAME.search(text):
            continue
        parses += 1
        if parses > _CODE_PARSES or len(wrong) > _CODE_EXAMPLES:
            break
        try:
            free, _ = _jinja().names_read(text)
        except TemplateError:  # not a template expression: Python's own braces
            continue
        if free & (CONTEXT_NAMES | AIRFLOW_NAMES.keys()):
            wrong[text] = None
            secret_form = secret_form or "secrets" in free
    if not wrong:
        return None
    quoted = ", ".join(repr(t) for t in list(wrong)[:_CODE_EXAMPLES])
    if len(wrong) > _CODE_EXAMPLES:
        quoted += " and more"
    why = (
        f"code is not templated: {quoted} would reach Python as written; pass the value "
        "through the task's params, which are templated (params: {rows: \"{{ tasks.a.outputs"
        '.rows }}"}), and read params["rows"] in the code'
    )
    if secret_form:
        why += "; a secret reference in code is replaced only when written {{ secrets.NAME }}"
    return why


def render(text: str, context: Mapping[str, Any]) -> str:
    """Render ``text`` within the bounds (:data:`LIMITS`); an undefined name, or a bound
    exceeded, raises ``TemplateError`` naming it."""
    if not is_template(text):
        return text
    rendered: str = _jinja().render(text, context)
    return rendered


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


# ---------------------------------------------------------------- secret references
# ``{{ secrets.NAME }}`` is not rendered in the scheduler: the secret's value is not there to
# render. While a task renders, ``secrets.NAME`` gives a token that holds a nonce of that
# render; ``finish_references`` then turns each token into the canonical reference the
# executor resolves (``stratoflow.secrets.REFERENCE``). Text that came from data (a run's
# params, an upstream task's outputs, an HTTP response) cannot know the nonce, so a reference
# written there is refused rather than resolved: data never reaches a secret.
_SECRET_NAME = re.compile(SECRET_NAME_PATTERN)
_TOKEN_MARK = "\x00stratoflow-secret:"  # noqa: S105 - a marker, not a password
_MARK_TEXT = _TOKEN_MARK[1:]  # what is left of it when a container's text escapes the NUL
_ESCAPED_NUL = ("\\x00", "\\u0000")  # the NUL as a repr and as JSON write it (lower-cased)


class SecretTokens:
    """What ``secrets`` is while a task renders: ``secrets.NAME`` -> a token of this render."""

    __slots__ = ("_nonce", "_pattern")

    def __init__(self) -> None:
        self._nonce = _random.token_hex(16)
        self._pattern: re.Pattern[str] | None = None  # compiled once a token is seen

    def _tokens(self) -> re.Pattern[str]:
        if self._pattern is None:
            self._pattern = re.compile(
                re.escape(f"{_TOKEN_MARK}{self._nonce}:") + f"({SECRET_NAME_PATTERN})\x00"
            )
        return self._pattern

    def __getattr__(self, name: str) -> str:
        if not _SECRET_NAME.fullmatch(name):
            raise AttributeError(name)
        return f"{_TOKEN_MARK}{self._nonce}:{name}\x00"

    # Every name but ``__getattr__``'s starts with "_": a secret's name starts with a letter,
    # so ``secrets.NAME`` never finds a method (``secrets.finish`` gave the bound method's
    # text), and the sandbox refuses "_" names to templates.
    def _finish(self, value: Any, where: str) -> Any:
        if isinstance(value, str):
            return self._finish_text(value, where)
        if isinstance(value, list):
            return [self._finish(v, f"{where}.{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self._finish(v, f"{where}.{k}") for k, v in value.items()}
        return value

    def _finish_text(self, text: str, where: str) -> str:
        if "{{" not in text and "\x00" not in text and _MARK_TEXT not in text.lower():
            return text
        parts = self._tokens().split(text)  # text, name, text, name, ..., text
        for plain in parts[::2]:
            if SECRET_REFERENCE.search(plain):
                raise TemplateError(
                    f"{where}: the rendered text holds a secret reference that is not written "
                    "in the workflow (it came from a parameter or an upstream output); "
                    "secrets are referenced only by the definition"
                )
            if _TOKEN_MARK in plain:
                raise TemplateError(
                    f"{where}: a secret is referenced only as {{{{ secrets.NAME }}}}, "
                    "with no filter, slice or operation on it"
                )
            lowered = plain.lower()
            if self._nonce in lowered:
                # A container's text writes the token's NUL escaped before its marker (a
                # repr's four characters, JSON's six). A token a filter or slice changed
                # (upper-cased, replaced, cut) lost the marker or that NUL: the reference
                # itself was operated on.
                if any(escaped + _MARK_TEXT in lowered for escaped in _ESCAPED_NUL):
                    raise TemplateError(
                        f"{where}: a list or mapping holding a secret reference was rendered "
                        "as text (or the reference went through a filter such as tojson), "
                        "which cannot carry the reference; render the item that holds it, as "
                        "it is (e.g. {{ params.NAME[0] }} or {{ params.NAME.key }})"
                    )
                raise TemplateError(
                    f"{where}: a secret reference passed on in a parameter or output was "
                    "changed by a filter, slice or operation; a secret is referenced only as "
                    "{{ secrets.NAME }}, passed on as it is"
                )
            if "\x00" in plain:  # from data: no command, argument or variable can hold it
                raise TemplateError(f"{where}: the rendered text holds a NUL character (\\0)")
        return "".join(
            part if i % 2 == 0 else "{{ secrets." + part + " }}" for i, part in enumerate(parts)
        )


def finish_references(tokens: SecretTokens, value: Any, where: str) -> Any:
    """``value`` (a rendered field, JSON-like) with the render's tokens turned into
    canonical references; ``TemplateError`` naming ``where`` for a reference that came from
    data, a token a filter or slice has changed, or a NUL the text got from data."""
    return tokens._finish(value, where)


def mentions_secret(text: str) -> bool:
    """Whether plain text (a value, not a template) holds what reads as a secret reference."""
    return "secrets" in text and bool(re.search(r"\{\{-?\s*secrets\s*[.\[]", text))
