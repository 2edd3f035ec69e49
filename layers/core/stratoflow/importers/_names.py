"""Names other schedulers allow (spaces, dots, any script) as Stratoflow names."""

from __future__ import annotations

import hashlib
import re

_NOT_TASK_CHAR = re.compile(r"[^A-Za-z0-9_-]+")
_NOT_NAME_CHAR = re.compile(r"[^a-z0-9_-]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_NAME = 128


def _fallback(text: str) -> str:
    return "t" + hashlib.sha256(text.encode()).hexdigest()[:10]


def task_id(name: str) -> str:
    """``[A-Za-z0-9_-]{1,128}``: other characters become ``_`` (a name with none left is
    named by a hash of it)."""
    clean = _NOT_TASK_CHAR.sub("_", name).strip("_")[:MAX_NAME]
    return clean or _fallback(name)


def workflow_name(name: str) -> str:
    """``[a-z0-9_-]{1,128}``, lower case."""
    clean = _NOT_NAME_CHAR.sub("_", name.lower()).strip("_")[:MAX_NAME]
    return clean or _fallback(name)


def unique(candidate: str, taken: set[str]) -> str:
    """``candidate``, or ``candidate_2``, ``_3``, ... whichever is not taken yet (then taken)."""
    name, n = candidate, 1
    while name in taken:
        n += 1
        suffix = f"_{n}"
        name = candidate[: MAX_NAME - len(suffix)] + suffix
    taken.add(name)
    return name


def param_ref(name: str) -> str:
    """A Jinja expression reading run/task parameter ``name``."""
    return f"params.{name}" if _IDENTIFIER.fullmatch(name) else f"params[{name!r}]"


def output_ref(task: str, key: str) -> str:
    """A Jinja expression reading output ``key`` of upstream task ``task``."""
    head = f"tasks.{task}" if _IDENTIFIER.fullmatch(task) else f"tasks[{task!r}]"
    return f"{head}.outputs.{key}" if _IDENTIFIER.fullmatch(key) else f"{head}.outputs[{key!r}]"
