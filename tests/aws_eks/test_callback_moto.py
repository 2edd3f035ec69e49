"""The reporter's callback completes a real waiting Step Functions task, end to end on moto.

The reporter script runs with the real AWS CLI (the one installed here; the pod's image runs
CLI v2 with the same arguments). The CLI talks to a small forwarder on 127.0.0.1 that hands
each JSON-protocol call to moto's Step Functions in this process, where an execution waits
on ``.waitForTaskToken``. That covers the CLI parsing ``--task-token`` and ``file://``
documents, the wire request, and Step Functions accepting the token and resuming with the
reporter's document as the task's output. moto cannot run the launcher's Lambda code, so the
waiting state uses ``sqs:sendMessage.waitForTaskToken`` to get a token out. Not covered here:
the AWS CLI image itself and a kubelet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stratoflow.adapters.aws.eks import reporter_script, task_script

AWS_CLI = shutil.which("aws")
# The machine image has the AWS CLI (v1, in the system Python). A developer without it skips;
# CI must not: there a missing CLI fails these tests instead of hiding them.
pytestmark = pytest.mark.skipif(
    AWS_CLI is None and os.environ.get("CI") != "true", reason="the AWS CLI is not installed here"
)
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/sfn"


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _key(name: str) -> str:
    return name[0].lower() + name[1:]


@pytest.fixture
def forwarder(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any, list[dict[str, Any]]]]:
    """Step Functions' JSON protocol on 127.0.0.1, answered by moto in this process."""
    assert AWS_CLI is not None, "the AWS CLI (aws on PATH) is needed for these tests in CI"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": REGION,
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name=REGION)
        received: list[dict[str, Any]] = []  # what went over the wire, action and body

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                action = self.headers["X-Amz-Target"].split(".")[-1]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append({"action": action, **body})
                try:
                    getattr(sfn, _snake(action))(
                        **{k[0].lower() + k[1:]: v for k, v in body.items()}
                    )
                    status, payload = 200, b"{}"
                except sfn.exceptions.ClientError as exc:
                    status = 400
                    error = exc.response["Error"]
                    payload = json.dumps(
                        {"__type": error["Code"], "message": error["Message"]}
                    ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", sfn, received
        finally:
            server.shutdown()
            server.server_close()


def waiting_execution(sfn: Any) -> tuple[str, str]:
    """Start an execution that waits on a task token; return (execution ARN, token)."""
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="tokens")["QueueUrl"]
    definition = {
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name="attempt", definition=json.dumps(definition), roleArn=ROLE
    )
    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input="{}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue).get("Messages", [])
        if messages:
            return execution["executionArn"], json.loads(messages[0]["Body"])["token"]
        time.sleep(0.1)
    raise AssertionError("the execution never reached its waiting state")


def run_pod(tmp_path: Path, endpoint: str, token: str, *argv: str) -> None:
    shared = tmp_path / "stratoflow"
    shared.mkdir()
    (tmp_path / "task-token").write_text(token)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "STRATOFLOW_DIR": str(shared),
        "STRATOFLOW_TOKEN_FILE": str(tmp_path / "task-token"),
        "STRATOFLOW_HEARTBEAT_SECONDS": "1",
        "STRATOFLOW_REPORT_TRIES": "2",
        "STRATOFLOW_REPORT_PAUSE_SECONDS": "1",
    }
    reporter = subprocess.Popen(["/bin/sh", "-c", reporter_script(), "reporter"], env=env)
    subprocess.run(["/bin/sh", "-c", task_script(), "task", *argv], env=env, check=False)
    assert reporter.wait(timeout=90) == 0


def finished(sfn: Any, execution_arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.1)
    raise AssertionError("the execution is still waiting")


@pytest.mark.e2e
def test_success_resumes_the_execution_with_the_outputs(
    forwarder: tuple[str, Any, list[dict[str, Any]]], tmp_path: Path
) -> None:
    endpoint, sfn, received = forwarder
    execution_arn, token = waiting_execution(sfn)
    run_pod(
        tmp_path, endpoint, token, "sh", "-c", 'echo "rows=42" >> "$STRATOFLOW_OUTPUT"; sleep 1'
    )
    described = finished(sfn, execution_arn)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {
        "status": "succeeded",
        "exit_code": 0,
        "outputs": {"rows": "42"},
    }
    actions = [r["action"] for r in received]
    assert actions[0] == "SendTaskHeartbeat"  # accepted by the waiting task, too
    assert actions[-1] == "SendTaskSuccess"


@pytest.mark.e2e
def test_failure_fails_the_execution_with_the_cause(
    forwarder: tuple[str, Any, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """moto drops a SendTaskFailure's cause (its response handler passes only the error), so
    the cause is checked on the wire, as the CLI sent it, and the error on the execution."""
    endpoint, sfn, received = forwarder
    execution_arn, token = waiting_execution(sfn)
    run_pod(tmp_path, endpoint, token, "sh", "-c", "echo broken; exit 4")
    described = finished(sfn, execution_arn)
    assert described["status"] == "FAILED"
    assert described["error"] == "Stratoflow.TaskFailed"
    failure = received[-1]
    assert failure["action"] == "SendTaskFailure"
    assert failure["taskToken"] == token
    assert json.loads(failure["cause"]) == {
        "exit_code": 4,
        "error": "exited with code 4",
        "log_tail": "broken",
    }
