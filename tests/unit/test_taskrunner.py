"""The task runner that executes python, http and lambda task bodies in their own process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.http_stub import json_stub

from stratoflow.taskexec import taskrunner as runner


def spec_file(
    tmp_path: Path, task_type: str, fields: dict[str, Any], params: dict[str, Any] | None = None
) -> Path:
    path = tmp_path / "t.1.json"
    path.write_text(json.dumps({"type": task_type, "fields": fields, "params": params or {}}))
    return path


def outcome(tmp_path: Path) -> tuple[dict[str, Any] | None, str | None]:
    result = tmp_path / "t.1.result"
    error = tmp_path / "t.1.error"
    return (
        json.loads(result.read_text()) if result.exists() else None,
        error.read_text() if error.exists() else None,
    )


def test_inline_code_sets_outputs_from_params(tmp_path: Path) -> None:
    spec = spec_file(
        tmp_path, "python", {"code": "outputs['n'] = int(params['x']) + 1"}, {"x": "41"}
    )
    assert runner.main(str(spec)) == 0
    assert outcome(tmp_path) == ({"n": 42}, None)


def test_an_exception_fails_the_task_with_its_type_and_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = spec_file(tmp_path, "python", {"code": "raise KeyError('region')"})
    assert runner.main(str(spec)) == 1
    assert outcome(tmp_path) == (None, "KeyError: 'region'")
    assert "Traceback" in capsys.readouterr().err  # the log keeps the traceback


def test_callable_gets_the_arguments_it_names_and_returns_outputs(tmp_path: Path) -> None:
    spec = spec_file(
        tmp_path,
        "python",
        {"callable": "examples.lib.reports:daily_report"},
        {"day": "2026-11-20", "status": "ok"},
    )
    assert runner.main(str(spec)) == 0
    assert outcome(tmp_path) == ({"day": "2026-11-20", "api_status": "ok"}, None)


def test_a_non_dict_return_value_is_kept_as_return_value(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, "python", {"callable": "tests.unit.task_callables:answer"})
    assert runner.main(str(spec)) == 0
    assert outcome(tmp_path) == ({"return_value": 42}, None)


def test_a_callable_taking_kwargs_gets_every_argument(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, "python", {"callable": "tests.unit.task_callables:everything"})
    assert runner.main(str(spec)) == 0
    assert outcome(tmp_path) == ({"names": ["context", "outputs", "params"]}, None)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("json:nothing_here", "has no callable 'nothing_here'"),
    ],
)
def test_a_bad_callable_reference_names_the_problem(tmp_path: Path, ref: str, message: str) -> None:
    assert runner.main(str(spec_file(tmp_path, "python", {"callable": ref}))) == 1
    assert message in (outcome(tmp_path)[1] or "")


def test_lambda_without_a_local_callable_says_it_needs_aws(tmp_path: Path) -> None:
    assert (
        runner.main(str(spec_file(tmp_path, "lambda", {"function": "etl-fn", "payload": {}}))) == 1
    )
    error = outcome(tmp_path)[1] or ""
    assert "'etl-fn', which needs AWS" in error
    assert "local_callable" in error


def test_lambda_with_a_local_callable_gets_the_payload_as_event(tmp_path: Path) -> None:
    fields = {
        "function": "f",
        "payload": {"k": "v"},
        "local_callable": "tests.unit.task_callables:echo_event",
    }
    assert runner.main(str(spec_file(tmp_path, "lambda", fields))) == 0
    assert outcome(tmp_path) == ({"received": {"k": "v"}}, None)


def test_http_task_returns_status_and_decoded_body(tmp_path: Path) -> None:
    with json_stub(
        lambda method, path, body, headers: (200, {"method": method, "path": path, "got": body})
    ) as url:
        spec = spec_file(
            tmp_path, "http", {"url": f"{url}/x", "method": "PUT", "body": {"a": 1}, "headers": {}}
        )
        assert runner.main(str(spec)) == 0
    assert outcome(tmp_path) == (
        {"status_code": 200, "body": {"method": "PUT", "path": "/x", "got": {"a": 1}}},
        None,
    )


def test_http_task_fails_on_an_unexpected_status_and_keeps_the_response(tmp_path: Path) -> None:
    with json_stub(lambda method, path, body, headers: (503, {"retry": True})) as url:
        spec = spec_file(tmp_path, "http", {"url": url, "expected_status": [200, 204]})
        assert runner.main(str(spec)) == 1
    outputs, error = outcome(tmp_path)
    assert outputs == {"status_code": 503, "body": {"retry": True}}
    assert error == f"HTTP 503 from {url} (expected 200, 204)"


def test_http_task_follows_redirects_and_logs_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As Airflow's HttpOperator and DolphinScheduler's HTTP task do: a 301/302/307 is
    followed (a 307 keeps the method and body), and each hop is in the log."""

    def respond(method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        if path == "/old":
            return 301, {}, {"Location": "/moved"}
        if path == "/moved":
            return 307, {}, {"Location": "/new"}
        return 201, {"method": method, "path": path, "got": body}

    with json_stub(respond) as url:
        spec = spec_file(tmp_path, "http", {"url": f"{url}/old", "method": "POST", "body": [1]})
        assert runner.main(str(spec)) == 0
    # a 301 turns a POST into a GET (as browsers, requests and httpx do); the 307 keeps it
    assert outcome(tmp_path) == (
        {"status_code": 201, "body": {"method": "GET", "path": "/new", "got": None}},
        None,
    )
    log = capsys.readouterr().out
    assert f"POST {url}/old -> 301 /moved" in log
    assert f"GET {url}/moved -> 307 /new" in log
    assert f"GET {url}/new -> 201" in log


def test_http_task_sends_its_headers_to_no_other_site_a_redirect_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """httpx strips only Authorization and Cookie on the way to another origin: a task's
    ``X-Api-Key: "{{ secrets.apikey }}"`` reached the redirect target on another port. The
    task's headers reach its own origin (redirects within it too), and no other."""
    seen: dict[str, dict[str, str]] = {}

    def elsewhere(method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        seen["elsewhere"] = {k.lower(): v for k, v in headers.items()}
        return 200, {"ok": True}

    with json_stub(elsewhere) as other:

        def home(method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
            seen[path] = {k.lower(): v for k, v in headers.items()}
            if path == "/start":
                return 302, {}, {"Location": "/same"}
            return 302, {}, {"Location": f"{other}/landing"}

        with json_stub(home) as url:
            task_headers = {
                "X-Api-Key": "s3cret",
                "Authorization": "Bearer t0ken",
                "Content-Type": "application/json",
                "Host": "api.example.test",  # httpx sets the new site's
            }
            fields = {"url": f"{url}/start", "headers": task_headers}
            assert runner.main(str(spec_file(tmp_path, "http", fields))) == 0
    assert seen["/start"]["x-api-key"] == seen["/same"]["x-api-key"] == "s3cret"
    assert "x-api-key" not in seen["elsewhere"]
    assert "authorization" not in seen["elsewhere"]
    assert seen["elsewhere"]["content-type"] == "application/json"  # it describes the request
    assert seen["elsewhere"]["host"] == other.removeprefix("http://")
    log = capsys.readouterr().out
    assert f"GET {url}/same -> 302 {other}/landing" in log
    assert (
        f"  {other} is another site than the task's url: its headers X-Api-Key, "
        "Authorization are not sent there" in log
    )
    assert "s3cret" not in log


@pytest.mark.parametrize(("status", "method"), [(307, "POST"), (308, "POST"), (301, "PUT")])
def test_http_task_takes_its_body_to_no_other_site_a_method_keeping_redirect_names(
    tmp_path: Path, status: int, method: str
) -> None:
    """A redirect that keeps the method keeps the body (a 307 or 308; a 301 of a PUT): the
    task's body (``{"token": "{{ secrets.t }}"}``) reached the site the redirect named. To another site it is now refused before
    anything is sent there (within its own site: the next test)."""
    elsewhere: list[Any] = []

    def other_site(method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        elsewhere.append(body)
        return 200, {"ok": True}

    with json_stub(other_site) as other:

        def home(method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
            if path == "/start":
                return status, {}, {"Location": "/same"}
            if path == "/same":
                return status, {}, {"Location": f"{other}/landing"}
            return 201, {"got": body}

        with json_stub(home) as url:
            fields = {"url": f"{url}/start", "method": method, "body": {"token": "s3cret"}}
            assert runner.main(str(spec_file(tmp_path, "http", fields))) == 1
            assert elsewhere == []
            assert outcome(tmp_path)[1] == (
                f"{method} {url}/same -> {status} {other}/landing: refused to follow a {status} "
                "redirect to another site with the task's body (it would be sent there as it "
                "is); set url to the address wanted, or follow_redirects: false"
            )
            # the same redirects without a body (a GET) are followed there, as before
            assert runner.main(str(spec_file(tmp_path, "http", {"url": f"{url}/start"}))) == 0
    assert elsewhere == [None]


def test_http_task_follows_a_307_with_its_body_within_its_own_site(tmp_path: Path) -> None:
    def respond(method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        if path == "/start":
            return 308, {}, {"Location": "/kept"}
        return 201, {"method": method, "got": body}

    with json_stub(respond) as url:
        fields = {"url": f"{url}/start", "method": "PUT", "body": {"token": "s3cret"}}
        assert runner.main(str(spec_file(tmp_path, "http", fields))) == 0
    assert outcome(tmp_path) == (
        {"status_code": 201, "body": {"method": "PUT", "got": {"token": "s3cret"}}},
        None,
    )


def test_http_task_refuses_a_redirect_from_https_to_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools

    import httpx

    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(301, headers={"Location": "http://example.test/plain"})

    client = functools.partial(httpx.Client, transport=httpx.MockTransport(handler))
    monkeypatch.setattr(httpx, "Client", client)
    fields = {"url": "https://example.test/secure", "headers": {"X-Api-Key": "k"}}
    assert runner.main(str(spec_file(tmp_path, "http", fields))) == 1
    assert sent == ["https://example.test/secure"]
    assert outcome(tmp_path)[1] == (
        "GET https://example.test/secure -> 301 http://example.test/plain: refused to follow a "
        "redirect from https to http (the request would travel unencrypted); set url to the "
        "address wanted, or follow_redirects: false"
    )


def test_http_task_keeps_its_headers_on_an_upgrade_to_https_of_the_same_host() -> None:
    import httpx

    task_url = httpx.URL("http://api.test/x")
    assert runner._same_site(task_url, httpx.URL("https://api.test/y"))
    assert runner._same_site(task_url, httpx.URL("http://api.test:80/z"))
    assert not runner._same_site(task_url, httpx.URL("https://api.test:8443/y"))
    assert not runner._same_site(task_url, httpx.URL("http://api.test:8080/y"))
    assert not runner._same_site(task_url, httpx.URL("http://other.test/x"))
    assert not runner._same_site(httpx.URL("https://api.test/x"), httpx.URL("http://api.test/"))


def test_http_task_with_follow_redirects_false_takes_the_3xx_as_its_response(
    tmp_path: Path,
) -> None:
    def respond(method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        return (302, {"see": "/elsewhere"}, {"Location": "/elsewhere"})

    with json_stub(respond) as url:
        fields: dict[str, Any] = {"url": url, "follow_redirects": False}
        assert runner.main(str(spec_file(tmp_path, "http", fields))) == 1
        assert outcome(tmp_path)[1] == f"HTTP 302 from {url} (expected 2xx)"
        fields["expected_status"] = [302]
        assert runner.main(str(spec_file(tmp_path, "http", fields))) == 0
    assert outcome(tmp_path)[0] == {"status_code": 302, "body": {"see": "/elsewhere"}}


def test_http_task_fails_on_a_redirect_loop_naming_the_limit(tmp_path: Path) -> None:
    def respond(method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        return 302, {}, {"Location": "/again"}

    with json_stub(respond) as url:
        assert runner.main(str(spec_file(tmp_path, "http", {"url": url}))) == 1
    assert outcome(tmp_path)[1] == f"GET {url} failed: more than {runner.MAX_REDIRECTS} redirects"


def test_http_task_stops_reading_a_body_larger_than_outputs_may_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 300 MB response was read whole and written out (1.9 GB on disk) before the outputs'
    4 MiB limit refused it: the body is read up to the limit, and the task fails there."""
    from stratoflow import taskexec

    monkeypatch.setattr(taskexec, "MAX_RESULT_BYTES", 1000)
    with json_stub(lambda method, path, body, headers: (200, {"blob": "x" * 5000})) as url:
        assert runner.main(str(spec_file(tmp_path, "http", {"url": url}))) == 1
        assert outcome(tmp_path)[1] == (
            f"GET {url} -> 200: the response body is more than 1,000 bytes, more than a "
            "task's outputs may hold; fetch it into a file from a shell or python task"
        )
    with json_stub(lambda method, path, body, headers: (200, {"blob": "x" * 900})) as url:
        assert runner.main(str(spec_file(tmp_path, "http", {"url": url}))) == 0
    assert outcome(tmp_path)[0] == {"status_code": 200, "body": {"blob": "x" * 900}}


def test_http_task_reports_an_unreachable_host(tmp_path: Path) -> None:
    assert runner.main(str(spec_file(tmp_path, "http", {"url": "http://127.0.0.1:9/"}))) == 1
    assert "GET http://127.0.0.1:9/ failed" in (outcome(tmp_path)[1] or "")


def test_a_callable_gets_each_param_it_names_as_an_argument(tmp_path: Path) -> None:
    """Airflow's TaskFlow callables (and dag-factory's imports of them) take their inputs as
    named arguments (``def double(number)``): a callable naming a param gets its value; it
    failed with 'missing 1 required positional argument'. ``params``, ``outputs`` and
    ``context`` stay the runner's own."""
    spec = spec_file(
        tmp_path, "python", {"callable": "tests.unit.task_callables:double"}, {"number": "21"}
    )
    assert runner.main(str(spec)) == 0
    assert outcome(tmp_path) == ({"seen": ["number"], "doubled": 42}, None)
    spec = spec_file(
        tmp_path, "python", {"callable": "tests.unit.task_callables:shadowed"}, {"params": "x"}
    )
    assert runner.main(str(spec)) == 0
    assert outcome(tmp_path) == ({"keys": ["params"]}, None)


def test_a_callable_taking_kwargs_gets_each_param_it_names_too(tmp_path: Path) -> None:
    """Airflow passes a PythonOperator's op_kwargs to a callable that takes **kwargs along
    with the context (``def load(table, **context)``, the usual form): the import makes them
    the task's params, and such a callable got only params, outputs and context, so it
    failed with 'missing 1 required positional argument'."""
    spec = spec_file(
        tmp_path, "python", {"callable": "tests.unit.task_callables:with_context"},
        {"number": "21", "extra": "x"},
    )  # fmt: skip
    assert runner.main(str(spec)) == 0
    assert outcome(tmp_path) == (
        {"number": "21", "names": ["context", "extra", "outputs", "params"]},
        None,
    )


def test_a_callable_decorated_with_the_sdk_s_task_runs_the_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``@task(callable=True)`` writes ``callable: module:name``, and the module's ``name``
    is the decorator's TaskFunction: calling that made a Task and the task 'succeeded' with
    ``return_value: "Task('decorated', 'python')"``. The runner calls the function."""
    (tmp_path / "sdkflows.py").write_text(
        "from stratoflow.sdk import task\n"
        "@task(callable=True)\n"
        "def decorated(n):\n"
        "    return {'sq': int(n) ** 2}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    spec = spec_file(work, "python", {"callable": "sdkflows:decorated"}, {"n": "3"})
    assert runner.main(str(spec)) == 0
    assert outcome(work) == ({"sq": 9}, None)


def test_the_spec_file_comes_from_the_argument_or_the_environment_kept_from_the_task() -> None:
    """The local executor names it in the environment (a command line is public and the
    path names the run and the task); the task's code does not find it there."""
    environ = {runner.SPEC_VARIABLE: "/w/t.1.json", "KEEP": "1"}
    assert runner.spec_file_given(["runner", "/a/t.1.json"], dict(environ)) == "/a/t.1.json"
    assert runner.spec_file_given(["runner"], environ) == "/w/t.1.json"
    assert environ == {"KEEP": "1"}
    with pytest.raises(SystemExit, match=r"usage: taskrunner SPEC_FILE \(or \$__STRATOFLOW_SPEC"):
        runner.spec_file_given(["runner"], environ)
