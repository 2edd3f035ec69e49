"""Finding the workflows of a Python module (what ``stratoflow validate|apply module.py`` do).

Importing a module runs its code, so only the CLI does it, on the user's machine, for a file
the user named; the API never imports Python (it takes the YAML the CLI renders).

The discovery rule: if the module has a top-level ``workflows`` list (or tuple), its
:class:`Workflow` objects, in that order; otherwise every :class:`Workflow` bound to a
top-level name (``@workflow`` functions are, as are ``with Workflow(...) as wf`` blocks), in
the order the names were bound. Two workflows with one project and name are refused, and so is
a module without any.

The module is imported under its package name (``examples/python/etl_chain.py`` in packages
``examples`` and ``examples.python`` is ``examples.python.etl_chain``), with the directory
above its top package first on ``sys.path`` while it loads: its own imports work as they do
when the package is installed, and ``@task(callable=True)`` writes a ``module:function`` that
the task runner can import with that directory on its ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from stratoflow.errors import InvalidInput, Problem
from stratoflow.sdk._builder import Workflow


def module_name(path: Path) -> tuple[str, Path]:
    """The dotted name of the module at ``path`` and the directory its top package is in."""
    parts = [path.stem]
    root = path.parent
    while (root / "__init__.py").is_file() and root.name.isidentifier():
        parts.insert(0, root.name)
        root = root.parent
    return ".".join(parts), root


def _line_in(exc: BaseException, file: Path) -> int | None:
    """The line of ``file`` that was running when ``exc`` was raised (the innermost)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == file:
            line = frame.lineno
    return line


def _module_problem(exc: BaseException, file: Path) -> Problem:
    if isinstance(exc, SyntaxError):
        if exc.filename and Path(exc.filename).resolve() == file:
            return Problem("module", f"invalid Python: {exc.msg}", exc.lineno)
        return Problem(
            "module", f"invalid Python in {exc.filename} line {exc.lineno}: {exc.msg}", None
        )
    where = _line_in(exc, file)
    text = str(exc) or type(exc).__name__
    return Problem("module", f"{type(exc).__name__}: {text}", where)


def load_module_workflows(path: str | Path, *, required: bool = True) -> list[Workflow]:
    """Import the module at ``path`` and return its workflows (see the module doc). Anything
    wrong, from a syntax error to an exception in the module's code or an invalid task, is an
    :class:`InvalidInput` naming ``path`` and, where known, its line. ``required``: a module
    without workflows is refused (else: none are returned)."""
    shown = str(path)
    file = Path(path).resolve()
    if not file.is_file():
        raise InvalidInput([Problem("module", f"cannot read {shown}: no such file")])
    name, root = module_name(file)
    if not all(part.isidentifier() for part in name.split(".")):
        raise _module_error(
            f"{file.name!r} cannot be imported: a module's file name is a Python identifier "
            "(letters, digits and '_') ending in .py",
            shown,
        )
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise _module_error("not a Python module", shown)
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:
        spec.loader.exec_module(module)
    except InvalidInput as exc:
        _forget(name, previous)
        raise InvalidInput(exc.problems, source=shown) from None
    except (Exception, SystemExit) as exc:
        _forget(name, previous)
        raise InvalidInput([_module_problem(exc, file)], source=shown) from None
    finally:
        if added:
            sys.path.remove(str(root))
    return module_workflows(module, source=shown, required=required)


def _module_error(message: str, source: str | None) -> InvalidInput:
    return InvalidInput([Problem("module", message)], source=source)


def _forget(name: str, previous: ModuleType | None) -> None:
    if previous is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = previous


def module_workflows(
    module: ModuleType, *, source: str | None = None, required: bool = True
) -> list[Workflow]:
    """The workflows an imported module defines, by the discovery rule (the module doc)."""
    listed = getattr(module, "workflows", None)
    if listed is not None:
        if not isinstance(listed, list | tuple) or not all(
            isinstance(item, Workflow) for item in listed
        ):
            raise _module_error(
                "the module's `workflows` must be a list of stratoflow.sdk.Workflow objects",
                source,
            )
        candidates = list(listed)
    else:
        candidates = [value for value in vars(module).values() if isinstance(value, Workflow)]
    found: list[Workflow] = []
    names: dict[tuple[str, str], Workflow] = {}
    for item in candidates:
        if any(item is seen for seen in found):
            continue
        key = (item.project, item.name)
        first = names.get(key)
        if first is not None:
            raise InvalidInput(
                [
                    Problem(
                        "module",
                        f"two workflows named {key[0]}/{key[1]} (the first at line {first.line})",
                        item.line,
                    )
                ],
                source=source,
            )
        names[key] = item
        found.append(item)
    if not found and required:
        raise _module_error(
            "it defines no workflow: bind a stratoflow.sdk.Workflow (or a @workflow "
            "function) to a top-level name, or list them in `workflows`",
            source,
        )
    return found
