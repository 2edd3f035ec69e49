"""Runs one python, http, lambda (local) or sql task in its own process.

Invoked by the executor's wrapper as ``python -m stratoflow.taskexec.taskrunner DIR``;
reads ``DIR/task.json``, writes outputs to ``DIR/outputs.json`` and a one-line reason to
``DIR/error`` on failure. Exit code 0 means success.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any


class TaskFailed(Exception):
    """A failure whose message is the whole story (no traceback needed)."""


def _load_callable(ref: str) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskFailed(f"cannot import {module_name!r} for callable {ref!r}: {exc}") from None
    fn = getattr(module, attr, None)
    # a function decorated with the SDK's @task(callable=True): the module's name is bound to
    # the decorator's TaskFunction (calling it adds a task to a workflow), the function is
    # its .function. (The SDK is imported already if the module used it.)
    taskflow = sys.modules.get("stratoflow.sdk._taskflow")
    if taskflow is not None and isinstance(fn, taskflow.TaskFunction):
        fn = fn.function
    if not callable(fn):
        raise TaskFailed(f"{ref!r}: module {module_name!r} has no callable {attr!r}")
    return fn  # type: ignore[no-any-return]


def _call(fn: Callable[..., Any], available: dict[str, Any], params: dict[str, Any]) -> Any:
    """Pass the keyword arguments the function names (all of ``available`` and every param
    if it takes **kwargs, as Airflow passes op_kwargs with the context to
    ``def load(table, **context)``): ``params``, ``outputs``, ``context``, and any other name
    one of the task's params, as Airflow's ``op_kwargs`` and TaskFlow arguments are
    (``def double(number)`` with ``params: {number: ...}``); the three names win over params
    of the same name."""
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return fn(**{**params, **available})
    named = {k: v for k, v in available.items() if k in sig.parameters}
    for name, parameter in sig.parameters.items():
        if name not in named and name in params and parameter.kind is not parameter.POSITIONAL_ONLY:
            named[name] = params[name]
    return fn(**named)


def run_python(
    fields: dict[str, Any], params: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    if fields.get("code") is not None:
        scope: dict[str, Any] = {
            "params": params,
            "outputs": outputs,
            "context": context,
            "__name__": "__stratoflow_task__",
        }
        exec(compile(fields["code"], "<task code>", "exec"), scope)  # noqa: S102 - the task body is the user's code
        result = None
    else:
        result = _call(
            _load_callable(fields["callable"]),
            {"params": params, "outputs": outputs, "context": context},
            params,
        )
    if isinstance(result, dict):
        outputs.update(result)
    elif result is not None:
        outputs["return_value"] = result
    return outputs


def run_lambda(
    fields: dict[str, Any], params: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    ref = fields.get("local_callable")
    if not ref:
        raise TaskFailed(
            f"lambda task calls {fields.get('function')!r}, which needs AWS; "
            "set local_callable: module:function to run it locally"
        )
    payload = fields.get("payload") or {}
    result = _call(
        _load_callable(ref),
        {"event": payload, "payload": payload, "params": params, "context": context},
        {},  # a Lambda handler's stand-in: its arguments are the event's, not params by name
    )
    if isinstance(result, dict):
        return result
    return {} if result is None else {"return_value": result}


MAX_REDIRECTS = 20  # an http task follows at most this many (httpx's default)
# headers a redirect to another site keeps though the task set them: they describe the
# request (httpx sets Host to the new site, and the length of the body a 307 forwards)
_KEPT_ACROSS_SITES = frozenset({"host", "content-length", "transfer-encoding", "content-type"})


def _origin(url: Any) -> tuple[str, str, int | None]:
    """Scheme, host and port (the scheme's default when unset) of an ``httpx.URL``."""
    port = url.port if url.port is not None else {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, port)


def _same_site(task_url: Any, url: Any) -> bool:
    """``url`` has the task's origin, or is its https upgrade (same host, default ports: what
    the task's headers were sent to in clear is not told more by sending them over TLS)."""
    first, other = _origin(task_url), _origin(url)
    upgrade = first == ("http", other[1], 80) and other == ("https", first[1], 443)
    return first == other or upgrade


def _carries_body(request: Any) -> bool:
    """Whether ``request`` (a redirect's next) sends a body: httpx keeps it wherever the
    redirect keeps the method."""
    length = request.headers.get("content-length")
    return bool(request.headers.get("transfer-encoding")) or (
        length is not None and length.strip() not in ("", "0")
    )


def _follow(response: Any, task_url: Any, task_headers: list[str]) -> Any:
    """The request a redirect leads to, logged as a hop. httpx strips only Authorization and
    Cookie on the way to another origin: a task's ``X-Api-Key: "{{ secrets.key }}"`` was sent
    to whatever site the redirect named. The headers the task set are dropped on the way to
    another origin (scheme, host or port), and a redirect from https to http is refused. A
    redirect that keeps the method keeps the body (httpx: a 307 or 308, and a 301 or 302 of
    a request other than POST): one that would take the task's body to another origin is
    refused (the body may hold a secret as a header does, and without it the request would
    not be the one the redirect asks for)."""
    request, nxt = response.request, response.next_request
    hop = f"{request.method} {request.url} -> {response.status_code} {response.headers.get('location', '')}"
    print(hop)
    if request.url.scheme == "https" and nxt.url.scheme == "http":
        raise TaskFailed(
            f"{hop}: refused to follow a redirect from https to http (the request would travel "
            "unencrypted); set url to the address wanted, or follow_redirects: false"
        )
    if _carries_body(nxt) and not _same_site(task_url, nxt.url):
        raise TaskFailed(
            f"{hop}: refused to follow a {response.status_code} redirect to another site with "
            "the task's body (it would be sent there as it is); set url to the address "
            "wanted, or follow_redirects: false"
        )
    # those the last request carried (httpx may have dropped Authorization from the next)
    dropped = [
        name
        for name in task_headers
        if name in request.headers and name.lower() not in _KEPT_ACROSS_SITES
    ]
    if dropped and not _same_site(task_url, nxt.url):
        for name in dropped:
            nxt.headers.pop(name, None)
        scheme, host, port = _origin(nxt.url)
        print(
            f"  {scheme}://{host}:{port} is another site than the task's url: its headers "
            f"{', '.join(dropped)} are not sent there"
        )
    return nxt


def run_http(
    fields: dict[str, Any], params: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    import httpx  # imported here: python tasks should not pay for it

    from stratoflow import taskexec

    body = fields.get("body")
    headers: dict[str, Any] = fields.get("headers") or {}
    kwargs: dict[str, Any] = {"headers": headers}
    if isinstance(body, dict | list):
        kwargs["json"] = body
    elif body is not None:
        kwargs["content"] = str(body)
    timeout = float(context.get("timeout_seconds") or 300)
    follow = fields.get("follow_redirects") is not False  # unset: follow
    method = fields.get("method", "GET")
    try:
        # redirects followed here, not by httpx, to choose the headers each hop carries
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            request = client.build_request(method, fields["url"], **kwargs)
            task_url = request.url
            for _ in range(MAX_REDIRECTS + 1):
                response = client.send(request, stream=True)
                if not (follow and response.next_request is not None):
                    break
                response.close()
                request = _follow(response, task_url, list(headers))
            else:
                raise TaskFailed(
                    f"{method} {fields['url']} failed: more than {MAX_REDIRECTS} redirects"
                )
            try:
                # the body becomes an output: read no more of it than an output may hold (a
                # 300 MB download was read whole, written out, and only then refused)
                limit = taskexec.MAX_RESULT_BYTES
                kept = bytearray()
                for chunk in response.iter_bytes():
                    kept += chunk
                    if len(kept) > limit:
                        raise TaskFailed(
                            f"{method} {fields['url']} -> {response.status_code}: the response "
                            f"body is more than {limit:,} bytes, more than a task's outputs may "
                            "hold; fetch it into a file from a shell or python task"
                        )
            finally:
                response.close()
            text = bytes(kept).decode(response.charset_encoding or "utf-8", errors="replace")
    except httpx.HTTPError as exc:
        raise TaskFailed(f"{method} {fields['url']} failed: {exc}") from None
    print(f"{response.request.method} {response.request.url} -> {response.status_code}")
    print(text[:10000])
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    expected = fields.get("expected_status") or []
    ok = response.status_code in expected if expected else 200 <= response.status_code < 300
    outputs = {"status_code": response.status_code, "body": parsed}
    if not ok:
        want = ", ".join(map(str, expected)) if expected else "2xx"
        raise TaskFailed(
            f"HTTP {response.status_code} from {fields['url']} (expected {want})", outputs
        )
    return outputs


def run_sql(
    fields: dict[str, Any], params: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    from stratoflow.taskexec import sql  # imported here: other tasks should not pay for it

    try:
        return sql.run_sql(fields, params, context)
    except sql.SqlFailed as exc:
        raise TaskFailed(str(exc)) from None


RUNNERS = {"python": run_python, "http": run_http, "lambda": run_lambda, "sql": run_sql}


def task_context(work_dir: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``context`` a python task (its code, or a callable naming it) and a local lambda
    callable get: the attempt's identity from the variables every executor sets for the task
    process (README, "Workflow format"), and its working directory (also the current one).
    ``run_dir`` is ``work_dir``'s older name, kept for code written against it."""
    attempt = environ.get("STRATOFLOW_ATTEMPT", "")
    return {
        "run_id": environ.get("STRATOFLOW_RUN_ID", ""),
        "task_id": environ.get("STRATOFLOW_TASK_ID", ""),
        "attempt": int(attempt) if attempt.isdecimal() else None,
        "workflow": environ.get("STRATOFLOW_WORKFLOW", ""),
        "logical_date": environ.get("STRATOFLOW_LOGICAL_DATE", ""),
        "work_dir": str(work_dir),
        "run_dir": str(work_dir),
    }


def main(spec_file: str) -> int:
    """``<run dir>/<task>.<attempt>.json`` in; ``.result`` (outputs) and ``.error`` out."""
    # the task's prints reach its log line by line, as on a terminal: block-buffered to the
    # log file they were lost when the task was stopped or timed out, and came after a
    # traceback printed later (stderr is line-buffered already)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    spec = Path(spec_file)
    stem = spec.with_suffix("")
    task = json.loads(spec.read_text(encoding="utf-8"))
    context = task_context(spec.parent, os.environ)
    result_file, error_file = (
        stem.with_suffix(stem.suffix + ".result"),
        stem.with_suffix(stem.suffix + ".error"),
    )
    try:
        outputs = RUNNERS[task["type"]](task["fields"], task["params"], context)
    except TaskFailed as exc:
        if len(exc.args) > 1 and isinstance(exc.args[1], dict):
            result_file.write_text(json.dumps(exc.args[1], default=str), encoding="utf-8")
        error_file.write_text(str(exc.args[0]), encoding="utf-8")
        print(exc.args[0], file=sys.stderr)
        return 1
    except BaseException as exc:
        traceback.print_exc()
        error_file.write_text(f"{type(exc).__name__}: {exc}", encoding="utf-8")
        return 1
    result_file.write_text(json.dumps(outputs, default=str), encoding="utf-8")
    return 0


SPEC_VARIABLE = "__STRATOFLOW_SPEC"


def spec_file_given(argv: list[str], environ: MutableMapping[str, str]) -> str:
    """The spec file the runner is given: its argument, or (the local executor's way: a
    command line is public, and the file's path names the run and the task) the variable
    ``__STRATOFLOW_SPEC``, taken out of the environment the task's code sees."""
    if len(argv) > 1:
        return argv[1]
    spec_file = environ.pop(SPEC_VARIABLE, "")
    if not spec_file:
        raise SystemExit(f"usage: taskrunner SPEC_FILE (or ${SPEC_VARIABLE} set to it)")
    return spec_file


if __name__ == "__main__":
    sys.exit(main(spec_file_given(sys.argv, os.environ)))
