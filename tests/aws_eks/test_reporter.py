"""The pod's two scripts run for real: eks_task.sh (what the user's container runs) and
eks_reporter.sh (the reporter container), sharing a directory as the pod's emptyDir, under
each POSIX shell found here (dash is Debian's /bin/sh; the AWS CLI image's /bin/sh is bash).

What cannot be exercised here: a kubelet, the AWS CLI image and Step Functions. The nearest
real boundary is the ``aws`` command line: a fake ``aws`` on PATH records each call's
arguments, the token it was given and the JSON documents passed as ``file://`` — exactly what
``aws stepfunctions send-task-*`` would send — and can refuse a stale token as Step Functions
does (TaskTimedOut), so the retry that picks up a replaced token is exercised too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.aws.eks import reporter_script, task_script
from stratoflow.taskexec import empty_key_message

SHELLS = [s for s in ("/bin/sh", "/bin/bash", shutil.which("busybox")) if s and os.path.exists(s)]

FAKE_AWS = """#!{python}
import json, os, sys
args = sys.argv[1:]
token = args[args.index("--task-token") + 1] if "--task-token" in args else None
files = {{a: open(a[len("file://"):], encoding="utf-8").read() for a in args if a.startswith("file://")}}
with open(os.environ["FAKE_AWS_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps({{"args": args, "token": token, "files": files}}) + "\\n")
if args[:2] == ["secretsmanager", "get-secret-value"]:
    # as the AWS CLI answers with --query SecretString --output text (the value, a newline)
    wanted = args[args.index("--secret-id") + 1]
    stored = json.loads(os.environ.get("FAKE_AWS_SECRETS", "{{}}"))
    if wanted not in stored:
        sys.stderr.write("An error occurred (ResourceNotFoundException) when calling the "
                         "GetSecretValue operation: Secrets Manager can't find the specified secret.\\n")
        sys.exit(254)
    sys.stdout.write(stored[wanted] + "\\n")
    sys.exit(0)
if args[:2] == ["s3api", "get-object"]:
    # as the AWS CLI does: the object's bytes into the last argument, its metadata on stdout
    wanted = "{{}}/{{}}@{{}}".format(args[args.index("--bucket") + 1], args[args.index("--key") + 1],
                                  args[args.index("--version-id") + 1])
    stored = json.loads(os.environ.get("FAKE_AWS_OBJECTS", "{{}}"))
    if wanted not in stored:
        sys.stderr.write("An error occurred (NoSuchVersion) when calling the GetObject "
                         "operation: The specified version does not exist.\\n")
        sys.exit(254)
    with open(args[-1], "w", encoding="utf-8") as out:
        out.write(stored[wanted])
    sys.stdout.write("{{}}\\n")
    sys.exit(0)
if token == os.environ.get("FAKE_AWS_STALE_TOKEN"):
    sys.stderr.write("An error occurred (TaskTimedOut) when calling the operation: Task Timed Out\\n")
    sys.exit(254)
"""


@dataclass
class Pod:
    shell: str
    root: Path
    shared: Path
    token: Path
    env: dict[str, str]

    def calls(self) -> list[dict[str, Any]]:
        log = self.root / "aws.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def run(self, *argv: str, task_path: str | None = None, timeout: float = 30) -> tuple[int, str]:
        """Start the reporter, run the task to its end, wait for the reporter to finish."""
        reporter = subprocess.Popen(
            [self.shell, "-c", reporter_script(), "stratoflow-reporter"],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        task_env = {**self.env, "PATH": task_path or self.env["PATH"]}
        task = subprocess.run(
            [self.shell, "-c", task_script(), "stratoflow-task", *argv],
            env=task_env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        out, _ = reporter.communicate(timeout=timeout)
        assert reporter.returncode == 0, out  # the reporter always lets the pod complete
        return task.returncode, task.stdout + task.stderr


@pytest.fixture(params=SHELLS)
def pod(request: pytest.FixtureRequest, tmp_path: Path) -> Pod:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "aws"
    fake.write_text(FAKE_AWS.format(python=sys.executable))
    fake.chmod(0o755)
    shared = tmp_path / "stratoflow"
    shared.mkdir()
    token = tmp_path / "task-token"
    token.write_text("token-1")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_AWS_LOG": str(tmp_path / "aws.log"),
        "STRATOFLOW_DIR": str(shared),
        "STRATOFLOW_TOKEN_FILE": str(token),
        "STRATOFLOW_POLL_SECONDS": "1",
        "STRATOFLOW_HEARTBEAT_SECONDS": "1",
        "STRATOFLOW_REPORT_PAUSE_SECONDS": "1",
        "STRATOFLOW_REPORT_TRIES": "4",
        "LC_ALL": "C.UTF-8",
    }
    return Pod(request.param, tmp_path, shared, token, env)


def test_success_reports_outputs_after_heartbeats(pod: Pod) -> None:
    code, output = pod.run(
        "sh",
        "-c",
        'printf "%s\\n" "rows=41" "# a comment" "  name = Zoë \\"quoted\\" back\\\\slash " '
        '"tab=a\tb" "junk line" "" "rows=42" "empty=" >> "$STRATOFLOW_OUTPUT"; echo working; sleep 2',
    )
    assert code == 0
    assert "working" in output  # the task's output still reaches the container's stdout
    calls = pod.calls()
    actions = [c["args"][1] for c in calls]
    assert actions[0] == "send-task-heartbeat"  # at once: the pod is up
    assert actions.count("send-task-heartbeat") >= 2  # and again while the task runs
    assert actions[-1] == "send-task-success"
    assert all(c["token"] == "token-1" for c in calls)
    success = calls[-1]
    assert success["args"][:2] == ["stepfunctions", "send-task-success"]
    document = json.loads(next(iter(success["files"].values())))
    assert document == {
        "status": "succeeded",
        "exit_code": 0,
        # last write wins, keys and values trimmed, like the local runner's key=value parsing
        "outputs": {"rows": "42", "name": 'Zoë "quoted" back\\slash', "tab": "a\tb", "empty": ""},
    }


def test_failure_reports_exit_code_and_last_lines(pod: Pod) -> None:
    code, _ = pod.run(
        "sh", "-c", 'for i in $(seq 1 30); do echo "line $i \\"é\\""; done; echo oops >&2; exit 3'
    )
    assert code == 3
    failure = pod.calls()[-1]
    args = failure["args"]
    assert args[:2] == ["stepfunctions", "send-task-failure"]
    assert args[args.index("--error") + 1] == "Stratoflow.TaskFailed"
    cause = json.loads(next(iter(failure["files"].values())))
    assert cause["exit_code"] == 3
    assert cause["error"] == "exited with code 3"
    lines = cause["log_tail"].splitlines()
    assert len(lines) == 20  # the last 20 lines, stdout and stderr merged
    assert lines[0] == 'line 12 ""'  # non-ASCII dropped so the document is always valid
    assert lines[-1] == "oops"


def test_a_command_that_does_not_exist_fails_with_127(pod: Pod) -> None:
    code, _ = pod.run("no-such-command-here")
    assert code == 127
    cause = json.loads(next(iter(pod.calls()[-1]["files"].values())))
    assert cause["exit_code"] == 127
    assert "no-such-command-here" in cause["log_tail"]


def test_a_replaced_token_is_picked_up(pod: Pod) -> None:
    """Step Functions refuses the old token (the state was retried and waits on a new one);
    the reporter keeps trying and reads the token again, as a re-mounted Secret would be."""
    pod.env["FAKE_AWS_STALE_TOKEN"] = "token-1"
    pod.env["STRATOFLOW_HEARTBEAT_SECONDS"] = "0"
    reporter = subprocess.Popen(
        [pod.shell, "-c", reporter_script(), "r"], env=pod.env, stdout=subprocess.DEVNULL
    )
    subprocess.run([pod.shell, "-c", task_script(), "t", "true"], env=pod.env, check=True)
    deadline = time.monotonic() + 20
    while not pod.calls() and time.monotonic() < deadline:
        time.sleep(0.1)
    pod.token.write_text("token-2")
    assert reporter.wait(timeout=30) == 0
    calls = pod.calls()
    assert calls[0]["token"] == "token-1"
    assert calls[-1]["token"] == "token-2"
    assert calls[-1]["args"][1] == "send-task-success"
    assert all(c["args"][1] == "send-task-success" for c in calls)


def test_a_token_never_accepted_gives_up_and_lets_the_pod_end(pod: Pod) -> None:
    pod.env["FAKE_AWS_STALE_TOKEN"] = "token-1"
    pod.env["STRATOFLOW_HEARTBEAT_SECONDS"] = "0"
    pod.env["STRATOFLOW_REPORT_TRIES"] = "2"
    code, _ = pod.run("true")
    assert code == 0
    actions = [c["args"][1] for c in pod.calls()]
    # success refused twice; then the failure fallback, refused twice too; then it exits 0
    assert actions == ["send-task-success"] * 2 + ["send-task-failure"] * 2


def test_outputs_too_large_fail_the_attempt(pod: Pod) -> None:
    pod.env["STRATOFLOW_MAX_OUTPUT_BYTES"] = "100"
    code, _ = pod.run(
        "sh",
        "-c",
        'i=0; while [ $i -lt 20 ]; do echo "k$i=0123456789" >> "$STRATOFLOW_OUTPUT"; i=$((i+1)); done',
    )
    assert code == 0
    failure = pod.calls()[-1]
    assert failure["args"][1] == "send-task-failure"
    cause = json.loads(next(iter(failure["files"].values())))
    assert cause["error"] == "the outputs file is larger than 100 bytes"


@pytest.mark.parametrize("line", ["=v", "  = v", "\t=", "=a=b"])
def test_an_output_line_with_an_empty_key_fails_the_attempt_naming_it(pod: Pod, line: str) -> None:
    # "=v" was reported as the output "", which no template can read, and the attempt succeeded
    code, _ = pod.run(
        "sh", "-c", f'printf "%s\\n" "rows=42" "# c" "" "junk" {shlex.quote(line)} "z=1" >> "$STRATOFLOW_OUTPUT"'
    )  # fmt: skip
    assert code == 0
    failure = pod.calls()[-1]
    assert failure["args"][1] == "send-task-failure"
    cause = json.loads(next(iter(failure["files"].values())))
    assert cause["exit_code"] == 0
    # the local runner's words for it (taskexec), line 5 of the file
    assert cause["error"] == empty_key_message(5)


def test_an_image_without_tee_still_reports(pod: Pod, tmp_path: Path) -> None:
    """Only the shell is required: without mkfifo/tee the exit status still arrives (there is
    just no log tail to quote)."""
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "false").symlink_to(shutil.which("false") or "/bin/false")
    code, _ = pod.run("false", task_path=str(bare))
    assert code == 1
    assert not (pod.shared / "log").exists()
    cause = json.loads(next(iter(pod.calls()[-1]["files"].values())))
    assert cause == {"exit_code": 1, "error": "exited with code 1", "log_tail": ""}


# A value with what a shell would expand or match, a newline inside, and a reference-like tail
SECRET = 'p@ss "w0rd" $HOME `id` * ? [a] \\ & end\nline two'
SECRET_DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()


def with_secrets(pod: Pod, stored: dict[str, str]) -> Path:
    """The pod as build_job makes it for a task referencing ``pw`` in its env and argv."""
    secrets_dir = pod.root / "secrets"  # the in-memory emptyDir of the pod
    secrets_dir.mkdir()
    pod.env.update(
        FAKE_AWS_SECRETS=json.dumps(stored),
        STRATOFLOW_SECRET_NAMES="pw",
        STRATOFLOW_SECRETS_DIR=str(secrets_dir),
        STRATOFLOW_SECRETS_PATH="stratoflow/analytics/",
        STRATOFLOW_PROJECT="analytics",
        STRATOFLOW_SECRET_ENV="PW URL",
        PW="{{ secrets.pw }}",
        URL="db://u:{{ secrets.pw }}@h/{{ secrets.pw }}",
        PLAIN="{{ secrets.pw }} stays: not named in STRATOFLOW_SECRET_ENV",
    )
    return secrets_dir


SHOW = (
    'printf %s "$PW" | sha256sum | cut -c1-64 | sed "s/^/from_env=/" >> "$STRATOFLOW_OUTPUT"; '
    'printf %s "$1" | sha256sum | cut -c1-64 | sed "s/^/from_arg=/" >> "$STRATOFLOW_OUTPUT"; '
    'test "$URL" = "db://u:$PW@h/$PW" && echo url=ok >> "$STRATOFLOW_OUTPUT"; '
    'echo "plain=$PLAIN" >> "$STRATOFLOW_OUTPUT"; '
    'echo "echoed=$PW" >> "$STRATOFLOW_OUTPUT"; echo "printed $PW"; '
)


def test_secret_references_are_resolved_in_the_pod_and_masked_in_the_outputs(pod: Pod) -> None:
    with_secrets(pod, {"stratoflow/analytics/pw": SECRET})
    code, output = pod.run("sh", "-c", SHOW, "task", "{{ secrets.pw }}")
    assert code == 0, output
    calls = pod.calls()
    fetched = [c["args"] for c in calls if c["args"][0] == "secretsmanager"]
    assert fetched == [["secretsmanager", "get-secret-value", "--secret-id",
                        "stratoflow/analytics/pw", "--query", "SecretString", "--output",
                        "text"]]  # fmt: skip
    success = calls[-1]
    assert success["args"][1] == "send-task-success"
    document = json.loads(next(iter(success["files"].values())))
    assert document["outputs"] == {
        "from_env": SECRET_DIGEST,  # the exact value: its inner newline and characters kept
        "from_arg": SECRET_DIGEST,
        "url": "ok",
        "plain": "{{ secrets.pw }} stays: not named in STRATOFLOW_SECRET_ENV",
        "echoed": "***",  # the whole value, its second line too, masked in the file
    }
    assert "w0rd" not in json.dumps(calls)


def test_the_log_tail_of_a_failure_is_masked(pod: Pod) -> None:
    with_secrets(pod, {"stratoflow/analytics/pw": SECRET})
    code, _ = pod.run("sh", "-c", 'echo "before"; echo "the password is $PW"; exit 4')
    assert code == 4
    failure = pod.calls()[-1]
    assert failure["args"][1] == "send-task-failure"
    cause = json.loads(next(iter(failure["files"].values())))
    assert cause["log_tail"] == "before\nthe password is ***"
    assert "w0rd" not in json.dumps(pod.calls())


def test_a_missing_secret_fails_the_attempt_naming_it_and_the_command_never_runs(
    pod: Pod,
) -> None:
    with_secrets(pod, {"stratoflow/other/pw": "another project's"})
    ran = pod.root / "ran"
    code, _ = pod.run("sh", "-c", f"touch {ran}")
    assert code == 1
    assert not ran.exists()
    failure = pod.calls()[-1]
    assert failure["args"][1] == "send-task-failure"
    cause = json.loads(next(iter(failure["files"].values())))
    assert cause["exit_code"] is None
    assert cause["error"] == (
        "secret 'pw' is not set in project 'analytics' "
        "(set it with `stratoflow secrets set pw --project analytics`)"
    )
    assert not any(c["args"][1] == "send-task-success" for c in pod.calls())


def test_a_value_inside_another_is_masked_longest_first(pod: Pod) -> None:
    """As ``Masker``: were "pass" masked first, "password-42" would show as "***word-42"."""
    with_secrets(
        pod, {"stratoflow/analytics/pw": "password-42", "stratoflow/analytics/short": "pass"}
    )
    pod.env["STRATOFLOW_SECRET_NAMES"] = "short pw"  # the shorter first: order by length
    code, _ = pod.run("sh", "-c", 'echo "out=$PW and pass" >> "$STRATOFLOW_OUTPUT"')
    assert code == 0
    document = json.loads(next(iter(pod.calls()[-1]["files"].values())))
    assert document["outputs"] == {"out": "*** and ***"}


def test_a_secret_too_short_to_mask_fails_the_attempt_and_the_command_never_runs(
    pod: Pod,
) -> None:
    """As ``secrets.lookup``: a value set straight in Secrets Manager that ``***`` could not
    stand for without masking ordinary text is refused, not used unmasked."""
    with_secrets(pod, {"stratoflow/analytics/pw": "abc"})
    ran = pod.root / "ran"
    code, _ = pod.run("sh", "-c", f"touch {ran}")
    assert code == 1
    assert not ran.exists()
    cause = json.loads(next(iter(pod.calls()[-1]["files"].values())))
    assert pod.calls()[-1]["args"][1] == "send-task-failure"
    assert cause["error"].startswith("secret 'pw' of project 'analytics': ")
    assert "at least 4 characters" in cause["error"]
    assert "abc" not in json.dumps(pod.calls()[-1])
