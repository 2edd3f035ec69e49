"""Decorators in the spirit of Airflow's TaskFlow: ``@workflow`` and ``@task``.

``@task`` turns a function into a python task. By default the task's ``code`` is the
function's body (its source, dedented; the docstring becomes the description): the body runs
on its own with ``params``, ``outputs`` and ``context`` in scope, so it may name only those,
builtins and what it imports or assigns itself; this is checked when the function is
decorated. ``@task(callable=True)`` writes ``callable: module:function`` instead: the function
is imported and called where the task runs, and a returned dict becomes its outputs.

Calling the decorated function inside a workflow adds the task: keyword arguments become its
params, and an ``Output`` among them (``extract.outputs.rows``) makes it wait for that task.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import io
import symtable
import textwrap
import tokenize
from collections.abc import Callable
from typing import Any, overload

from stratoflow.errors import InvalidInput, Problem
from stratoflow.sdk._builder import Task, Workflow, _callable_ref, python

INLINE_NAMES = frozenset({"params", "outputs", "context"})
"""What inline task code finds in scope (stratoflow.taskexec.taskrunner)."""
_BUILTINS = frozenset(dir(builtins))


def _refuse(fn: Callable[..., Any], message: str, line: int | None = None) -> InvalidInput:
    code = fn.__code__
    return InvalidInput(
        [Problem("module", f"@task {fn.__name__}: {message}", line or code.co_firstlineno)],
        source=code.co_filename,
    )


def _header_end(lines: list[str]) -> int:
    """Index (0-based) of the line holding the ``:`` that ends the ``def`` header."""
    depth, seen_def = 0, False
    tokens = tokenize.generate_tokens(io.StringIO("".join(lines)).readline)
    for token in tokens:
        if token.type == tokenize.NAME and token.string == "def" and depth == 0:
            seen_def = True
        elif token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
        elif seen_def and depth == 0 and token.type == tokenize.OP and token.string == ":":
            return token.start[0] - 1
    raise ValueError("no def header")  # pragma: no cover - the source compiled


def _global_names(table: symtable.SymbolTable) -> set[str]:
    """Names a code body (compiled as a module) or its nested scopes read from the module
    level without the module body binding them."""
    names: set[str] = set()
    module = table.get_type() == "module"
    for symbol in table.get_symbols():
        if not symbol.is_referenced():
            continue
        if (module and not symbol.is_assigned() and not symbol.is_imported()) or (
            not module and symbol.is_global()
        ):
            names.add(symbol.get_name())
    for child in table.get_children():
        names |= _global_names(child)
    return names


def _bound_names(table: symtable.SymbolTable) -> set[str]:
    return {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}


def function_body(fn: Callable[..., Any]) -> tuple[str, str | None]:
    """The body of ``fn`` as inline task code, and its docstring; refuses a body that could
    not run on its own (a return, or a name from the module or an enclosing function)."""
    try:
        source_lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError) as exc:
        raise _refuse(fn, f"its source is not available ({exc})") from None
    source = textwrap.dedent("".join(source_lines))
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a lambda in the middle of an expression
        tree = ast.Module(body=[], type_ignores=[])
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not defs:
        raise _refuse(fn, "an inline task is a function made with def (its body is the code)")
    node = defs[0]
    if isinstance(node, ast.AsyncFunctionDef):
        raise _refuse(fn, "an async function cannot be a task")
    extra = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
    extra = [a for a in extra if a not in INLINE_NAMES]
    if extra or node.args.vararg or node.args.kwarg:
        raise _refuse(
            fn,
            "the function of an inline task takes only params, outputs or context (what its "
            "code sees); pass values as params, or use @task(callable=True)",
        )
    lines = source.splitlines(keepends=True)
    start = _header_end(lines) + 1
    body = node.body
    docstring = ast.get_docstring(node)
    if docstring is not None and isinstance(body[0], ast.Expr):
        start = body[0].end_lineno or start
        body = body[1:]
    if not body:
        raise _refuse(fn, "the function has no body to run")
    if body[0].lineno <= start:  # `def f(): x = 1`: the body shares the header's line
        raise _refuse(fn, "write the body on lines of its own, below the def line")
    for child in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(child, ast.Return | ast.Yield | ast.YieldFrom) and _at_top(child, body):
            raise _refuse(
                fn,
                "inline task code cannot return: set outputs[...] instead "
                "(or use @task(callable=True), whose returned dict becomes the outputs)",
                first + child.lineno - 1,
            )
    code = textwrap.dedent("".join(lines[start : node.end_lineno])).strip("\n") + "\n"
    table = symtable.symtable(code, fn.__code__.co_filename, "exec")
    unknown = sorted(_global_names(table) - _bound_names(table) - INLINE_NAMES - _BUILTINS)
    if unknown:
        raise _refuse(
            fn,
            f"the body uses {', '.join(map(repr, unknown))} from outside it; inline task code "
            "runs on its own: import or assign it inside the function, or pass it as a param",
        )
    return code, docstring


def _at_top(target: ast.AST, body: list[ast.stmt]) -> bool:
    """Whether ``target`` is in ``body`` itself, not in a function or class nested in it."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if node is target:
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return False


class TaskFunction:
    """What ``@task`` returns: call it inside a workflow to add the task (keyword arguments
    are its params; positional ones, tasks it waits for). The function itself is kept as
    ``.function`` (call it in a unit test)."""

    def __init__(
        self, fn: Callable[..., Any], task_id: str | None, by_reference: bool, options: Any
    ) -> None:
        self.function = fn
        self.task_id = task_id or fn.__name__
        self.options: dict[str, Any] = dict(options)
        if by_reference:
            try:
                self.body: dict[str, Any] = {"callable": _callable_ref(fn)}
            except InvalidInput as exc:
                raise _refuse(fn, exc.problems[0].message) from None
            docstring = inspect.getdoc(fn)
        else:
            code, docstring = function_body(fn)
            self.body = {"code": code}
        if docstring is not None and "description" not in self.options:
            self.options["description"] = docstring

    def override(self, *, task_id: str | None = None, **options: Any) -> TaskFunction:
        """The same function with another task id or other task fields, e.g. to add it twice
        to one workflow: ``load.override(task_id="load_eu")(region="eu")``."""
        copy = object.__new__(TaskFunction)
        copy.function, copy.body = self.function, self.body
        copy.task_id = task_id or self.task_id
        copy.options = {**self.options, **options}
        return copy

    def __call__(self, *upstream: Task, **params: Any) -> Task:
        options = dict(self.options)
        merged = {**options.pop("params", {}), **params}
        depends = [*(options.pop("depends_on", None) or ()), *upstream]
        return python(
            self.task_id,
            **self.body,
            params=merged or None,
            depends_on=depends or None,
            **options,
        )

    def __repr__(self) -> str:
        return f"<@task {self.task_id}>"


@overload
def task(fn: Callable[..., Any], /) -> TaskFunction: ...
@overload
def task(
    *, task_id: str | None = None, callable: bool = False, **options: Any
) -> Callable[[Callable[..., Any]], TaskFunction]: ...
def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    task_id: str | None = None,
    callable: bool = False,
    **options: Any,
) -> TaskFunction | Callable[[Callable[..., Any]], TaskFunction]:
    """A python task from a function: ``@task`` or ``@task(task_id=..., callable=True,
    retries=2, ...)`` (any task field). The task id is the function's name by default."""

    def decorate(function: Callable[..., Any]) -> TaskFunction:
        return TaskFunction(function, task_id, callable, options)

    return decorate if fn is None else decorate(fn)


@overload
def workflow(fn: Callable[[], Any], /) -> Workflow: ...
@overload
def workflow(
    *, name: str | None = None, **fields: Any
) -> Callable[[Callable[[], Any]], Workflow]: ...
def workflow(
    fn: Callable[[], Any] | None = None, /, *, name: str | None = None, **fields: Any
) -> Workflow | Callable[[Callable[[], Any]], Workflow]:
    """A workflow from a function that makes its tasks: ``@workflow`` or
    ``@workflow(name=..., schedule=..., params=...)`` (any workflow field). The function runs
    once, at once, and the name it is bound to holds the :class:`Workflow` (so the CLI finds
    it). The name is the function's by default, the docstring the description."""

    def decorate(function: Callable[[], Any]) -> Workflow:
        options = dict(fields)
        docstring = inspect.getdoc(function)
        if docstring is not None and "description" not in options:
            options["description"] = docstring
        built = Workflow(name or function.__name__, **options)
        built.file = function.__code__.co_filename
        built.line = function.__code__.co_firstlineno
        with built:
            function()
        return built

    return decorate if fn is None else decorate(fn)
