"""The runner (Lambda handler and Batch entry point), called directly with S3 on moto.

Tasks really run here (bash, python subprocesses, an HTTP stub on 127.0.0.1); only S3 is moto.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from stratoflow.adapters.aws import runner
from tests.e2e.http_stub import json_stub

BUCKET = "stratoflow-artifacts"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def s3(aws: None) -> Iterator[Any]:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def attempt(
    kind: str, task: dict[str, Any], *, timeout: float = 30, **extra: Any
) -> dict[str, Any]:
    return {
        "run_id": "r1", "task_id": "t1", "attempt": 1, "key": "r1/t1/1", "type": kind,
        "runner": "lambda", "timeout_seconds": timeout,
        "task": {"params": {}, "env": {}, **task},
        "context": {"workflow": "wf", "project": "default", "logical_date": "2026-01-01T00:00:00+00:00"},
        "log": f"s3://{BUCKET}/logs/r1/t1/1.log", "outputs_uri": None, **extra,
    }  # fmt: skip


def log_text(s3: Any, key: str = "logs/r1/t1/1.log") -> str:
    return str(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())


def test_shell_success_with_outputs_env_and_log(s3: Any) -> None:
    outcome = runner.handle(
        attempt("shell", {
            "command": 'echo "day=$STRATOFLOW_LOGICAL_DATE $MODE"; echo "rows=42" >> "$STRATOFLOW_OUTPUT"',
            "env": {"MODE": "full"},
        }),
        lambda: 900.0, s3=s3,
    )  # fmt: skip
    assert outcome == {
        "status": "succeeded", "exit_code": 0, "error": None, "outputs": {"rows": "42"},
        "log": f"s3://{BUCKET}/logs/r1/t1/1.log",
    }  # fmt: skip
    assert log_text(s3) == "day=2026-01-01T00:00:00+00:00 full\n"


def test_shell_failure_reports_exit_code_and_the_logs_tail(s3: Any) -> None:
    outcome = runner.handle(attempt("shell", {"command": "echo partial; exit 7"}), None, s3=s3)
    assert outcome["status"] == "failed"
    assert outcome["exit_code"] == 7
    assert outcome["error"] == "exit code 7; last output:\npartial"


def test_shell_timeout_kills_the_whole_process_group(s3: Any, tmp_path: Path) -> None:
    marker = tmp_path / "survivor"
    command = f"(sleep 3; touch {marker}) & sleep 30"
    started = time.monotonic()
    outcome = runner.handle(attempt("shell", {"command": command}, timeout=1), None, s3=s3)
    assert time.monotonic() - started < 5
    assert outcome["status"] == "timed_out"
    assert outcome["error"].startswith("timed out after 1 s")
    time.sleep(3.5)
    assert not marker.exists(), "a background child outlived the attempt"
    assert outcome["log"] is not None


def test_the_lambda_time_left_bounds_the_task(s3: Any) -> None:
    outcome = runner.handle(
        attempt("shell", {"command": "sleep 30"}, timeout=600),
        lambda: runner.LAMBDA_SAFETY_SECONDS + 1.0,
        s3=s3,
    )
    assert outcome["status"] == "timed_out"
    assert outcome["error"].startswith("the runner function's time ran out")


def test_python_code_and_callable(s3: Any) -> None:
    code = attempt(
        "python", {"code": "print('hi'); outputs['n'] = params['x'] + 1", "params": {"x": 1}}
    )
    assert runner.handle(code, None, s3=s3)["outputs"] == {"n": 2}
    assert log_text(s3) == "hi\n"
    failing = attempt("python", {"callable": "no_such_module_here:run"})
    outcome = runner.handle(failing, None, s3=s3)
    assert outcome["status"] == "failed"
    assert "cannot import 'no_such_module_here'" in outcome["error"]


def test_python_code_gets_the_attempts_identity_in_context_on_the_runner(s3: Any) -> None:
    code = "outputs.update({k: v for k, v in context.items() if k not in ('work_dir', 'run_dir')})"
    outcome = runner.handle(attempt("python", {"code": code}), None, s3=s3)
    assert outcome["outputs"] == {
        "run_id": "r1", "task_id": "t1", "attempt": 1, "workflow": "wf",
        "logical_date": "2026-01-01T00:00:00+00:00",
    }  # fmt: skip


def test_python_exception_is_a_failed_outcome(s3: Any) -> None:
    outcome = runner.handle(
        attempt("python", {"code": "raise RuntimeError('bad rows')"}), None, s3=s3
    )
    assert outcome["status"] == "failed"
    assert outcome["error"] == "RuntimeError: bad rows"
    assert "Traceback" in log_text(s3)


def test_http_success_and_unexpected_status(s3: Any) -> None:
    def respond(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if path == "/ok":
            return 200, {"echo": body}
        return 503, {"error": "down"}

    with json_stub(respond) as base:
        ok = runner.handle(
            attempt("http", {"url": f"{base}/ok", "method": "POST", "body": {"a": 1}}), None, s3=s3
        )
        down = runner.handle(attempt("http", {"url": f"{base}/down"}), None, s3=s3)
    assert ok["status"] == "succeeded"
    assert ok["outputs"] == {"status_code": 200, "body": {"echo": {"a": 1}}}
    assert down["status"] == "failed"
    assert down["error"] == f"HTTP 503 from {base}/down (expected 2xx)"
    assert down["outputs"]["status_code"] == 503


def test_outputs_too_large_for_the_state_machine_fail_the_attempt(s3: Any) -> None:
    code = f"outputs['blob'] = 'x' * {runner.MAX_OUTPUTS_BYTES}"
    outcome = runner.handle(attempt("python", {"code": code}), None, s3=s3)
    assert outcome["status"] == "failed"
    assert outcome["outputs"] == {}
    assert outcome["error"].startswith("outputs too large: ")


def test_outputs_over_the_read_limit_fail_the_attempt_not_vanish(s3: Any) -> None:
    # the runner reads an attempt's files as the local executor does (taskexec): a python
    # task's outputs JSON over MAX_RESULT_BYTES was cut, no longer parsed and was dropped
    # without a word, so the attempt succeeded with no outputs
    code = "outputs['blob'] = 'x' * 5_000_000"
    outcome = runner.handle(attempt("python", {"code": code}), None, s3=s3)
    assert outcome["status"] == "failed"
    assert outcome["outputs"] == {}
    assert outcome["error"] == (
        "outputs: 5,000,012 bytes written, more than the 4 MiB a task may pass on; "
        "write large data to a file or object store and pass its path"
    )


def test_an_output_line_with_an_empty_key_fails_the_attempt_naming_the_line(s3: Any) -> None:
    # the runner reads key=value outputs with the local executor's parser (taskexec): "=v"
    # was kept under the key "", which no template can read, and the attempt succeeded
    command = 'echo "rows=42" >> "$STRATOFLOW_OUTPUT"; echo "=v" >> "$STRATOFLOW_OUTPUT"'
    outcome = runner.handle(attempt("shell", {"command": command}), None, s3=s3)
    assert (outcome["status"], outcome["exit_code"], outcome["outputs"]) == ("failed", 0, {})
    assert outcome["error"] == (
        "outputs: line 2 of the outputs file ($STRATOFLOW_OUTPUT) has an empty key (=value); "
        "write key=value lines with a key"
    )


def test_a_type_the_runner_does_not_run_is_refused(s3: Any) -> None:
    with pytest.raises(runner.AttemptInputError, match="not 'batch'"):
        runner.handle(attempt("batch", {"image": "x"}), None, s3=s3)
    with pytest.raises(runner.AttemptInputError, match="timeout_seconds"):
        runner.handle({"type": "shell", "task": {}, "task_id": "t", "attempt": 1}, None, s3=s3)


def test_an_empty_log_is_not_uploaded(s3: Any) -> None:
    """An S3 PUT per silent task is orchestration cost for nothing: the runner skips it (and
    the API answers an empty log for the attempt, tests/aws_unit/test_handlers.py)."""
    outcome = runner.handle(attempt("shell", {"command": "true"}), None, s3=s3)
    assert (outcome["status"], outcome["log"]) == ("succeeded", f"s3://{BUCKET}/logs/r1/t1/1.log")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="logs/").get("KeyCount") == 0
    runner.handle(attempt("shell", {"command": "echo x"}), None, s3=s3)
    assert log_text(s3) == "x\n"


def test_a_failed_log_upload_loses_the_log_not_the_result(s3: Any) -> None:
    doc = attempt("shell", {"command": "echo x"}, log="s3://no-such-bucket/logs/r1/t1/1.log")
    outcome = runner.handle(doc, None, s3=s3)
    assert (outcome["status"], outcome["log"]) == ("succeeded", None)


# ------------------------------------------------------------------ the Batch entry point
def test_batch_main_writes_outputs_and_exits_with_the_task(s3: Any) -> None:
    uri = f"s3://{BUCKET}/outputs/r1/t1/1.json"
    doc = attempt("shell", {"command": 'echo "k=v" >> "$STRATOFLOW_OUTPUT"'}, outputs_uri=uri)
    assert runner.run_batch({"STRATOFLOW_ATTEMPT_INPUT": json.dumps(doc)}, [], s3) == 0
    stored = s3.get_object(Bucket=BUCKET, Key="outputs/r1/t1/1.json")["Body"].read()
    assert json.loads(stored) == {"k": "v"}

    failing = attempt("shell", {"command": "exit 4"}, outputs_uri=uri)
    assert runner.run_batch({"STRATOFLOW_ATTEMPT_INPUT": json.dumps(failing)}, [], s3) == 4
    slow = attempt("shell", {"command": "sleep 10"}, timeout=0.5)
    assert (
        runner.run_batch({"STRATOFLOW_ATTEMPT_INPUT": json.dumps(slow)}, [], s3)
        == runner.TIMED_OUT_EXIT
    )


def test_batch_attempt_from_s3_or_a_file(s3: Any, tmp_path: Path) -> None:
    doc = attempt("shell", {"command": "true"})
    s3.put_object(Bucket=BUCKET, Key="inputs/r1/t1/1.json", Body=json.dumps(doc).encode())
    from_s3 = runner.load_attempt(
        {"STRATOFLOW_ATTEMPT_URI": f"s3://{BUCKET}/inputs/r1/t1/1.json"}, [], s3
    )
    path = tmp_path / "attempt.json"
    path.write_text(json.dumps(doc))
    assert from_s3 == runner.load_attempt({}, [str(path)], s3) == doc


@pytest.mark.parametrize(
    ("environ", "argv", "message"),
    [
        ({}, [], "no attempt"),
        ({"STRATOFLOW_ATTEMPT_INPUT": "{not json"}, [], "not JSON"),
        ({"STRATOFLOW_ATTEMPT_INPUT": "[1]"}, [], "JSON object"),
        ({"STRATOFLOW_ATTEMPT_URI": "s3:/x"}, [], "not an s3://bucket/key URI"),
        ({}, ["/nonexistent/attempt.json"], "cannot read the attempt"),
    ],
)
def test_batch_main_refuses_a_bad_attempt(
    s3: Any, environ: dict[str, str], argv: list[str], message: str
) -> None:
    with pytest.raises(runner.AttemptInputError, match=message):
        runner.load_attempt(environ, argv, s3)


def test_main_exits_2_with_the_reason(
    s3: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("STRATOFLOW_ATTEMPT_INPUT", raising=False)
    monkeypatch.delenv("STRATOFLOW_ATTEMPT_URI", raising=False)
    assert runner.main([]) == 2
    assert "no attempt" in capsys.readouterr().err


# ------------------------------------------------------------------ the Lambda handler (runner_lambda)
class FakeContext:
    function_name = "stratoflow-runner"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:stratoflow-runner"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


def test_the_lambda_handler_wraps_the_runner_with_powertools(
    s3: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "stratoflow")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Stratoflow")
    # imported afresh: its clients are made at import, under this test's moto
    monkeypatch.delitem(sys.modules, "stratoflow.adapters.aws.runner_lambda", raising=False)
    app = importlib.import_module("stratoflow.adapters.aws.runner_lambda")

    outcome = app.handler(attempt("shell", {"command": "echo from-lambda"}), FakeContext())
    assert outcome["status"] == "succeeded"
    assert log_text(s3) == "from-lambda\n"
    printed = capsys.readouterr().out
    assert '"correlation_id":"r1"' in printed.replace(" ", "")  # the run id
    assert "Tasks_succeeded" in printed  # the EMF metric
    assert os.environ.get("STRATOFLOW_ATTEMPT_INPUT") is None
    # a connection test (advance asks for the API): its answer, not an attempt's outcome
    monkeypatch.setenv("STRATOFLOW_PROJECT", "default")
    request = {"action": "test_connection", "project": "default",
               "connection": {"name": "pg", "type": "postgresql", "settings": {
                   "url": "postgresql://etl@127.0.0.1:5432/dw",
                   "password": "{{ secrets.nope }}"}}}  # fmt: skip
    answer = app.handler(request, FakeContext())
    assert answer["ok"] is False
    assert "nope" in answer["message"]


def test_the_runner_function_starts_without_the_engine() -> None:
    """The runner's cold start (billed, once per new container) loads neither the engine nor
    the workflow model: it reads its task's keys and its task's files without them."""
    import subprocess

    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('app', sys.argv[1])\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in sys.modules if m.startswith('stratoflow')))\n"
    )
    handler = REPO / "layers/core/stratoflow/adapters/aws/runner_lambda.py"
    env = {**os.environ, "PYTHONPATH": str(REPO / "layers/core"), "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(handler)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    loaded = json.loads(out.strip().splitlines()[-1].replace("'", '"'))
    assert "stratoflow.adapters.aws.runner" in loaded
    assert not [m for m in loaded if m.startswith(("stratoflow.engine", "stratoflow.model"))]
