"""Runs one shell, python or http attempt on AWS: in the project's runner function (Lambda) or, for
``runner: batch``, in a Batch job on the runner image (``python -m stratoflow.adapters.aws.runner``).

The task runs exactly as it does locally: shell through ``bash`` with ``$STRATOFLOW_OUTPUT``,
python and http through the ``stratoflow.taskexec.taskrunner`` (the same module, the same
semantics), each in a process group of its own that is killed whole when the attempt runs out
of time. Its output goes to ``s3://$STRATOFLOW_BUCKET/logs/<project>/<run>/<task>/<attempt>.log``.

The Lambda handler returns the outcome (AWS-CONTRACT.md); the state machine forwards it. A
Batch job cannot return anything: ``main`` writes the outputs to
``outputs/<project>/<run>/<task>/<attempt>.json`` (``advance`` reads them) and exits non-zero when the
task failed, which fails the job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import stratoflow
from stratoflow.adapters.aws._dynamo_keys import RUN_SK, run_pk, task_sk
from stratoflow.resources import ResourceUnavailable, materialize, reserved_name
from stratoflow.secrets import (
    Masker,
    MissingSecret,
    SecretSource,
    SecretUnavailable,
    mask_outputs,
    references,
    resolve,
)
from stratoflow.taskexec import outcome_from_files

log = logging.getLogger("stratoflow.aws.runner")

LAMBDA_SAFETY_SECONDS = 10.0  # stop the task this long before the function's own time is up
KILL_GRACE_SECONDS = 2.0  # SIGTERM, then this long, then SIGKILL
TIMED_OUT_EXIT = 124  # the Batch job's exit code when the task timed out (as timeout(1))
# Step Functions fails an execution whose state data passes 256 KiB (States.DataLimitExceeded,
# which no Catch sees): outputs above this fail the attempt with a message instead
MAX_OUTPUTS_BYTES = 200_000
_RUNNER_VARS = ("STRATOFLOW_ATTEMPT_INPUT", "STRATOFLOW_ATTEMPT_URI")

# How often a running attempt asks whether it is still wanted (STRATOFLOW_STOP_POLL_SECONDS):
# a stop reaches the task within this, where nothing else can (an Express execution cannot
# be stopped, and stopping a Standard one does not stop the Lambda it invoked)
STOP_POLL_SECONDS = 5.0

TimeLeft = Callable[[], float]  # seconds left before the host (Lambda) stops us
StillWanted = Callable[[], bool]  # False once the attempt was stopped (its task moved on)


class AttemptInputError(ValueError):
    """The attempt input is not what the dispatcher sends."""


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise AttemptInputError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def _kill_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _argv(kind: str, task: Mapping[str, Any], spec_file: Path) -> list[str]:
    if kind == "shell":
        return ["bash", "--noprofile", "--norc", "-c", str(task.get("command", ""))]
    if kind in ("python", "http", "sql"):
        fields = {k: v for k, v in task.items() if k not in ("params", "env")}
        spec = {"type": kind, "fields": fields, "params": task.get("params") or {}}
        spec_file.write_text(json.dumps(spec, default=str), encoding="utf-8")
        return [sys.executable, "-m", "stratoflow.taskexec.taskrunner", str(spec_file)]
    raise AttemptInputError(f"the runner runs shell, python, http and sql tasks, not {kind!r}")


def _environment(attempt: Mapping[str, Any], output_file: Path) -> dict[str, str]:
    task = attempt["task"]
    context = attempt.get("context") or {}
    package_root = str(Path(stratoflow.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k not in _RUNNER_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update({str(k): str(v) for k, v in (task.get("env") or {}).items()})
    env.update(
        {
            "STRATOFLOW_OUTPUT": str(output_file),
            "STRATOFLOW_RUN_ID": str(attempt["run_id"]),
            "STRATOFLOW_TASK_ID": str(attempt["task_id"]),
            "STRATOFLOW_ATTEMPT": str(attempt["attempt"]),
            "STRATOFLOW_WORKFLOW": str(context.get("workflow", "")),
            "STRATOFLOW_LOGICAL_DATE": str(context.get("logical_date", "")),
        }
    )
    return env


def task_watch(client: Any, table: str | None, attempt: Mapping[str, Any]) -> StillWanted | None:
    """Whether the store still holds the attempt's task RUNNING at this attempt: one
    strongly consistent GetItem of two attributes (the runner's role may read no more). A
    stop, a mark or a timeout moved the task on: the attempt is no longer wanted. A failed
    read (a throttle) keeps the attempt running: a stop is then noticed at the next poll.
    None without a table (the Batch runner: Batch jobs are terminated by Step Functions)."""
    if not table or client is None:
        return None
    try:
        key = {"pk": {"S": run_pk(str(attempt["run_id"]))},
               "sk": {"S": task_sk(str(attempt["task_id"]))}}  # fmt: skip
        number = int(attempt["attempt"])
    except (KeyError, TypeError, ValueError):
        return None

    def still_wanted() -> bool:
        try:
            item = client.get_item(
                TableName=table,
                Key=key,
                ConsistentRead=True,
                ProjectionExpression="#st, #att",
                ExpressionAttributeNames={"#st": "st", "#att": "att"},
            ).get("Item")
        except Exception as exc:
            log.warning("could not read the task's state (the attempt goes on): %s", exc)
            return True
        if item is None:
            return False  # the run is gone
        state = item.get("st", {}).get("S")
        current = item.get("att", {}).get("N")
        return bool(state == "running" and current == str(number))

    return still_wanted


PAUSED = "paused"  # RunState.PAUSED (the runner's cold start does not load the engine)


def run_paused(client: Any, table: str | None, attempt: Mapping[str, Any]) -> StillWanted | None:
    """For a retry that waited out its delay in its execution (its input carries
    ``start_at``): whether its run is paused now. A pause takes such a retry back itself
    (``Scheduler._hold_early_retries``), but a pause whose process died after writing the run
    paused, or whose write of the hold failed, leaves its task RUNNING at this attempt: this
    look is what holds it then (the attempt reports ``held`` and starts nothing; ``advance``
    takes the claim back, or sends the retry again if the run was resumed meanwhile). One
    strongly consistent GetItem of the run item's state (``st``, which the role may read).
    A failed read says not paused: the retry starts, as it would without the look. None
    for an attempt that did not wait, or without a table."""
    if not table or client is None or not attempt.get("start_at"):
        return None
    try:
        key = {"pk": {"S": run_pk(str(attempt["run_id"]))}, "sk": {"S": RUN_SK}}
    except KeyError:
        return None

    def paused() -> bool:
        try:
            item = client.get_item(
                TableName=table,
                Key=key,
                ConsistentRead=True,
                ProjectionExpression="#st",
                ExpressionAttributeNames={"#st": "st"},
            ).get("Item")
        except Exception as exc:
            log.warning("could not read the run's state (the retry starts): %s", exc)
            return False
        return bool(item is not None and item.get("st", {}).get("S") == PAUSED)

    return paused


def _held() -> dict[str, Any]:
    return {
        "status": "held",
        "exit_code": None,
        "error": "not started: its run was paused during the retry's delay; the retry waits "
        "for the resume",
        "outputs": {},
        "log": None,
    }


def _stopped(log_uri: str | None = None) -> dict[str, Any]:
    return {
        "status": "stopped",
        "exit_code": None,
        "error": "stopped: the task no longer runs this attempt (stopped, marked or timed out)",
        "outputs": {},
        "log": log_uri,
    }


def run_attempt(
    attempt: Mapping[str, Any],
    *,
    s3: Any,
    time_left: TimeLeft | None = None,
    still_wanted: StillWanted | None = None,
    poll_seconds: float = STOP_POLL_SECONDS,
    secrets: SecretSource | None = None,
    lambda_client: Any = None,
    paused: StillWanted | None = None,
) -> dict[str, Any]:
    """Run the attempt; upload its log; return the outcome
    ``{status, exit_code, error, outputs, log}``. A task's own failure is an outcome, never
    an exception: only a malformed input raises (``AttemptInputError``). With
    ``still_wanted`` the attempt is not started when it is no longer wanted (a stop during
    its retry wait), and is asked every ``poll_seconds`` while it runs: when it says no, the
    task's process group is killed and the outcome is ``stopped``. The task's
    ``{{ secrets.NAME }}`` references are resolved from ``secrets`` here, just before it
    starts (a missing one fails the attempt, naming it); its outputs, error and log are
    masked with the values it was given. With ``paused`` (``run_paused``: a retry that
    waited out its delay) it is not started while its run is paused: the outcome is
    ``held``."""
    try:
        kind = str(attempt["type"])
        task = attempt["task"]
        name = f"{attempt['task_id']}.{attempt['attempt']}"
        timeout = float(attempt["timeout_seconds"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AttemptInputError(f"attempt input lacks a valid {exc}") from None
    log_uri: str | None = attempt.get("log")
    if still_wanted is not None and not still_wanted():
        return _stopped()
    if paused is not None and paused():
        return _held()
    try:
        task, used = _resolved(attempt, secrets)
    except (MissingSecret, SecretUnavailable) as exc:
        return {"status": "failed", "exit_code": None, "error": str(exc), "outputs": {},
                "log": None, "retryable": False}  # fmt: skip
    masker = Masker(used.values())
    if kind == "lambda":
        return invoke_user_function(lambda_client, task, masker)
    attempt = {**attempt, "task": task}
    with tempfile.TemporaryDirectory(prefix="stratoflow-") as tmp:
        workdir = Path(tmp)
        log_file, out_file = workdir / f"{name}.log", workdir / f"{name}.out"
        result_file, error_file = workdir / f"{name}.result", workdir / f"{name}.error"
        try:
            place_resources(attempt, workdir, s3, name)
        except (ResourceUnavailable, AttemptInputError) as exc:
            return {"status": "failed", "exit_code": None, "error": str(exc), "outputs": {},
                    "log": None, "retryable": False}  # fmt: skip
        argv = _argv(kind, task, workdir / f"{name}.json")
        budget, by_host = timeout, False
        if time_left is not None and time_left() - LAMBDA_SAFETY_SECONDS < budget:
            budget, by_host = max(time_left() - LAMBDA_SAFETY_SECONDS, 0.0), True
        timed_out = stopped = False
        started = time.monotonic()
        with log_file.open("wb") as log_fh:
            proc = subprocess.Popen(
                argv, cwd=workdir, env=_environment(attempt, out_file), stdin=subprocess.DEVNULL,
                stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            code: int | None = None
            while code is None:
                left = budget - (time.monotonic() - started)
                if left <= 0:
                    timed_out = True
                    break
                try:
                    code = proc.wait(timeout=min(left, poll_seconds) if still_wanted else left)
                except subprocess.TimeoutExpired:
                    if still_wanted is not None and not still_wanted():
                        stopped = True
                        break
            if code is None:
                _kill_group(proc.pid, signal.SIGTERM)
                try:
                    code = proc.wait(timeout=KILL_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    _kill_group(proc.pid, signal.SIGKILL)
                    code = proc.wait()
            _kill_group(proc.pid, signal.SIGKILL)  # whatever it left running in the background
        elapsed = time.monotonic() - started
        outcome = _outcome(code, out_file, result_file, error_file, log_file)
        if masker:  # a task that printed or returned its own secret
            outputs, note = mask_outputs(masker, outcome["outputs"])
            outcome.update(outputs=outputs)
            if outcome["error"]:
                outcome["error"] = masker.text(outcome["error"])
            if note is not None:  # downstream tasks read them masked: the log says so
                with log_file.open("a", encoding="utf-8") as fh:
                    fh.write(note)
        size = len(json.dumps(outcome["outputs"], default=str).encode())
        if size > MAX_OUTPUTS_BYTES:
            outcome.update(
                status="failed",
                outputs={},
                error=f"outputs too large: {size} bytes as JSON (at most {MAX_OUTPUTS_BYTES});"
                " write large results to S3 and output their location",
            )
        if timed_out:
            why = (
                "the runner function's time ran out"
                if by_host
                else f"timed out after {timeout:g} s"
            )
            outcome.update(status="timed_out", exit_code=None, error=f"{why} (ran {elapsed:.1f} s)")
        if stopped:
            outcome.update(_stopped())
            outcome["error"] += f" (ran {elapsed:.1f} s)"
        outcome["log"] = _upload_log(s3, log_uri, log_file, masker)
    return outcome


def place_resources(attempt: Mapping[str, Any], workdir: Path, s3: Any, name: str) -> list[str]:
    """Fetch the task's resource files, each at the version its run pinned (the dispatcher
    put them in the input), into ``workdir`` under their paths, as the project's role: its
    policy reads ``resources/<its project>/`` only, so an input naming another project's key
    is refused by IAM as well as here. Returns the paths placed."""
    wanted = attempt.get("resources") or []
    if not wanted:
        return []
    project = str((attempt.get("context") or {}).get("project") or "")
    own = os.environ.get("STRATOFLOW_PROJECT") or project
    pins: dict[str, str] = {}
    keys: dict[str, tuple[str, str]] = {}
    for entry in wanted:
        try:
            path, version, uri = str(entry["path"]), str(entry["version"]), str(entry["uri"])
        except (KeyError, TypeError) as exc:
            raise AttemptInputError(f"a resource of the attempt input lacks {exc}") from None
        bucket, key = _split_s3(uri)
        if key != f"resources/{own}/{path}":
            raise AttemptInputError(f"resource {path!r}: {uri} is not project {own!r}'s file")
        pins[path] = version
        keys[path] = (bucket, key)

    def fetch(path: str, version: str) -> bytes:
        bucket, key = keys[path]
        try:
            found = s3.get_object(Bucket=bucket, Key=key, VersionId=version)
            data: bytes = found["Body"].read()
        except Exception as exc:  # gone (deleted since the run started), refused, throttled
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            raise ResourceUnavailable(
                f"resource {path!r} version {version} (pinned when the run was created) could "
                f"not be fetched: {code}"
            ) from None
        return data

    paths = list(pins)
    for path in paths:
        if reserved_name(path, str(attempt["task_id"]), int(attempt["attempt"])):
            raise ResourceUnavailable(
                f"resource {path!r} would overwrite the task's own file of that name in its "
                "working directory: put it in a directory, or rename it"
            )
    return materialize(workdir, pins, paths, fetch)


def invoke_user_function(client: Any, task: Mapping[str, Any], masker: Masker) -> dict[str, Any]:
    """A ``lambda`` task whose payload references a secret: the dispatcher sends it here (the
    state machine must not carry the value). Its references are resolved already; invoke the
    user's function with that payload, as the project's role (its policy allows the user
    functions the stack allows, never the stack's own), and return its result as the task's
    outputs, masked, as the state machine's direct path reports it. A function error fails
    the attempt with its message, masked."""
    if client is None:
        raise AttemptInputError("a lambda task reached a runner without a Lambda client")
    function = task.get("function")
    if not isinstance(function, str) or not function:
        raise AttemptInputError("a lambda task's attempt lacks its function")
    payload = json.dumps(task.get("payload") or {}, default=str).encode()
    failed: dict[str, Any] = {"status": "failed", "exit_code": None, "outputs": {}, "log": None}
    try:
        answer = client.invoke(FunctionName=function, Payload=payload)
        body = answer["Payload"].read().decode("utf-8", errors="replace")
    except Exception as exc:  # AccessDenied, not found, throttled past the SDK's retries
        return {**failed, "error": masker.text(f"invoking {function!r} failed: {exc}")}
    if answer.get("FunctionError"):
        return {**failed, "error": masker.text(f"{function!r} failed: {body[:4000]}")}
    try:
        result = json.loads(body) if body else None
    except ValueError:
        result = body
    outputs = masker.value(result)
    size = len(json.dumps(outputs, default=str).encode())
    if size > MAX_OUTPUTS_BYTES:
        return {**failed, "error": f"the function's result is too large: {size} bytes as JSON "
                f"(at most {MAX_OUTPUTS_BYTES})"}  # fmt: skip
    return {"status": "succeeded", "exit_code": 0, "error": None, "outputs": outputs, "log": None}


def _resolved(
    attempt: Mapping[str, Any], secrets: SecretSource | None
) -> tuple[Any, dict[str, str]]:
    """The attempt's task with its secret references resolved, as the project's role
    (the runner function's own project when it has one), and the values used."""
    context = attempt.get("context") or {}
    project = str(context.get("project") or "")
    own = os.environ.get("STRATOFLOW_PROJECT")
    if own and project and own != project:
        raise AttemptInputError(f"an attempt of project {project!r} sent to {own!r}'s runner")
    return resolve(attempt["task"], own or project, secrets or _NO_SECRETS)


class _NoSource(SecretSource):
    def get(self, project: str, name: str) -> str | None:
        return None


_NO_SECRETS = _NoSource()


def _outcome(
    code: int, out_file: Path, result_file: Path, error_file: Path, log_file: Path
) -> dict[str, Any]:
    """As the local executor reads an attempt's files (the same function)."""
    result = outcome_from_files(
        code, outputs=out_file, structured=result_file, error=error_file, log=log_file
    )
    return {
        "status": result.status,
        "exit_code": result.exit_code,
        "error": result.error,
        "outputs": result.outputs,
    }


def _upload_log(
    s3: Any, log_uri: str | None, log_file: Path, masker: Masker | None = None
) -> str | None:
    """Upload the log (unless it is empty); a failed upload loses the log, not the attempt's
    result."""
    if not log_uri:
        return None
    if log_file.stat().st_size == 0:
        # nothing to keep: no PUT (the API answers an empty log for an attempt that ended
        # with an exit code and has no log object)
        return log_uri
    body = log_file.read_bytes()
    return _put_log(s3, log_uri, masker.data(body) if masker else body)


def _put_log(s3: Any, log_uri: str, body: bytes) -> str | None:
    try:
        bucket, key = _split_s3(log_uri)
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/plain")
    except Exception:
        log.exception("could not upload the log to %s", log_uri)
        return None
    return log_uri


def _sql_log(
    s3: Any, attempt: Mapping[str, Any], outcome: dict[str, Any], engine: str, *details: str
) -> dict[str, Any]:
    """The attempt's log for an sql task whose query ran in Athena or Redshift, not here: a
    few lines (the query id, the engine's state, the row count, ``details``, the error) put
    where the runner puts every log (``attempt["log"]``, as the project's role), its
    location in the outcome. Without a query id, a bucket client or a log place: none."""
    query_id = (outcome.get("outputs") or {}).get("query_id")
    log_uri = attempt.get("log")
    if s3 is None or not query_id or not isinstance(log_uri, str) or not log_uri:
        return outcome
    lines = [f"{engine} query_id={query_id}", *details, f"status={outcome['status']}"]
    if "row_count" in outcome["outputs"]:
        lines.append(f"row_count={outcome['outputs']['row_count']}")
    if outcome.get("error"):
        lines.append(f"error: {outcome['error']}")
    outcome["log"] = _put_log(s3, log_uri, ("\n".join(lines) + "\n").encode())
    return outcome


def handle(
    event: Mapping[str, Any],
    time_left: TimeLeft | None,
    *,
    s3: Any,
    dynamodb: Any = None,
    table: str | None = None,
    secrets: SecretSource | None = None,
    lambda_client: Any = None,
    athena_client: Any = None,
    redshift_client: Any = None,
) -> dict[str, Any]:
    """The runner function: the state machine's attempt input in, the outcome out. With the
    state table (``dynamodb``, ``table``) a stop reaches the running task (``task_watch``);
    ``secrets`` resolves its references (Secrets Manager, as the project's role). An input
    with ``athena`` and ``query`` comes from ``ReadSqlResult``: the query already ran in
    Athena (``StartAthenaQuery``); only its result is read (``read_sql_result``). An input
    with ``redshift`` is one short step of the state machine's Redshift loop
    (``redshift_step``): start the statement, or look at it once. An input with ``action:
    test_connection`` is a connection test the advance function sends for the API
    (``check_connection``): the answer is ``{ok, message}``, not an outcome."""
    if event.get("action") == "test_connection":
        clients = {"athena": athena_client, "redshift-data": redshift_client}
        return check_connection(event, secrets, clients=clients)
    if "athena" in event and "query" in event:
        return read_sql_result(event, athena_client, s3=s3)
    if "redshift" in event:
        return redshift_step(
            event,
            redshift_client,
            task_watch(dynamodb, table, event),
            s3=s3,
            paused=run_paused(dynamodb, table, event),
        )
    poll = float(os.environ.get("STRATOFLOW_STOP_POLL_SECONDS") or STOP_POLL_SECONDS)
    return run_attempt(
        event,
        s3=s3,
        time_left=time_left,
        still_wanted=task_watch(dynamodb, table, event),
        poll_seconds=max(poll, 0.1),
        secrets=secrets,
        lambda_client=lambda_client,
        paused=run_paused(dynamodb, table, event),
    )


def check_connection(
    event: Mapping[str, Any],
    secrets: SecretSource | None,
    *,
    clients: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``connections test`` on AWS (the advance function asks, for the API): the
    connection's secret references resolved as the project's role (this function's: it
    reads its own project's secrets only, and refuses another project's connection), then a
    cheap real call as that role (``sql.check``'s SELECT 1; ``sql_aws.check_aws`` for
    Athena, Redshift Data and RDS Data), waited on for at most ``TEST_SECONDS``. Returns
    ``{ok, message}``, the message masked with the secret values used."""
    from stratoflow.connection_types import CONNECTION_TYPES
    from stratoflow.connections import Connection
    from stratoflow.taskexec import sql
    from stratoflow.taskexec.sql_aws import TEST_SECONDS, check_aws

    try:
        project = str(event["project"])
        found = event["connection"]
        connection = Connection(project, str(found["name"]), str(found["type"]),
                                dict(found["settings"]))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise AttemptInputError(f"a connection test lacks a valid {exc}") from None
    own = os.environ.get("STRATOFLOW_PROJECT")
    if own and own != project:
        return {"ok": False, "message": f"a connection of project {project!r} cannot be "
                f"tested by project {own!r}'s runner"}  # fmt: skip
    if connection.type not in CONNECTION_TYPES:
        return {"ok": False, "message": f"unknown connection type {connection.type!r}"}
    try:
        settings = connection.resolved(secrets or _NO_SECRETS)
    except (MissingSecret, SecretUnavailable) as exc:
        return {"ok": False, "message": str(exc)}
    masker = Masker(settings[k] for k, v in connection.settings.items()
                    if references(v) and settings.get(k))  # fmt: skip
    try:
        if connection.type in ("postgresql", "mysql"):
            # within the API's request (API Gateway's 29 s), whatever the connection says
            timeout = min(int(settings.get("connect_timeout") or 10), int(TEST_SECONDS))
            settings = {**settings, "connect_timeout": str(timeout)}
            message = sql.check(connection.type, settings)
        else:
            client = (clients or {}).get(connection.type)
            message = check_aws(connection.type, settings, client=client)
    except Exception as exc:  # what the driver or the service says is the answer
        text = " ".join(str(exc).split())[:2000] or type(exc).__name__
        return {"ok": False, "message": masker.text(f"cannot connect: {text}")}
    return {"ok": True, "message": masker.text(message)}


def read_sql_result(
    attempt: Mapping[str, Any], athena: Any = None, *, s3: Any = None
) -> dict[str, Any]:
    """The outcome of an sql task whose Athena query the state machine ran: its outputs
    (``athena_read``: first_row / rows, bounded, row_count, query_id) read as the project's
    role (this function's), or its failure. Its log (``_sql_log``, with ``s3``): the query
    id, its state, the row count and the data it scanned."""
    from stratoflow.taskexec.sql import SqlFailed
    from stratoflow.taskexec.sql_aws import athena_query_id, athena_read

    task = attempt.get("task") or {}
    query = attempt["query"]
    try:
        if athena is None:
            import boto3

            settings = (task.get("__connection") or {}).get("settings") or {}
            athena = boto3.client("athena", region_name=settings.get("region") or None)
        outputs, execution = athena_read(athena, query, str(task.get("outputs") or "none"))
    except SqlFailed as exc:
        return _sql_log(s3, attempt, _sql_failed(str(exc), athena_query_id(query) or None),
                        "Athena")  # fmt: skip
    details = [f"state={(execution.get('Status') or {}).get('State')}"]
    scanned = (execution.get("Statistics") or {}).get("DataScannedInBytes")
    if scanned is not None:
        details.append(f"data_scanned_bytes={scanned}")
    outcome = {"status": "succeeded", "exit_code": 0, "error": None, "outputs": outputs,
               "log": None}  # fmt: skip
    return _sql_log(s3, attempt, outcome, "Athena", *details)


def _sql_failed(error: str, query_id: str | None = None) -> dict[str, Any]:
    outputs = {"query_id": query_id} if query_id else {}
    return {"status": "failed", "exit_code": None, "error": error, "outputs": outputs,
            "log": None}  # fmt: skip


def redshift_step(
    attempt: Mapping[str, Any],
    api: Any = None,
    still_wanted: StillWanted | None = None,
    now: Callable[[], float] = time.time,
    *,
    s3: Any = None,
    paused: StillWanted | None = None,
) -> dict[str, Any]:
    """One step of the state machine's Redshift loop (docs/aws-statemachine.md), as the
    project's role: the statement's owner, the only one its policy lets describe, read or
    cancel it. Nothing here waits: the state machine's Wait state does, between steps. The
    final step writes the attempt's log (``_sql_log``, with ``s3``): the statement id, its
    state, the row count.

    - ``StartRedshiftStatement`` (no ``result`` yet): ``ExecuteStatement`` (the SQL with
      ``:name`` placeholders and ``Parameters``, never pasted), unless the attempt is no
      longer wanted (a stop during its retry delay), or its run is paused (``paused``, a
      retry that waited: ``held``, as ``run_attempt``).
    - ``PollRedshiftStatement`` (``result.outcome.statement``, what the previous step
      returned): one ``DescribeStatement``. Finished: the outcome (first_row / rows bounded /
      row_count and query_id, read with ``GetStatementResult``). Failed or aborted: failed.
      Not wanted any more (a stop, a mark, the engine's timeout), past the attempt's
      deadline (``timeout_seconds`` from the start) or past ``redshift.max_polls``:
      ``CancelStatement``, and stopped / timed_out.

    While the statement runs the outcome's status is ``running`` with ``statement``: its id,
    the deadline, the polls so far and ``wait_seconds``, the next Wait (``poll_wait``, never
    past the deadline)."""
    from stratoflow.taskexec.sql import MAX_ROWS, OUTPUT_KINDS, SqlFailed, outputs_of
    from stratoflow.taskexec.sql_aws import (
        REDSHIFT_ENDED,
        poll_wait,
        redshift_failure,
        redshift_request,
        redshift_results,
    )

    task = attempt.get("task") or {}
    settings = (task.get("__connection") or {}).get("settings") or {}
    outputs = str(task.get("outputs") or "none")
    if api is None:
        import boto3

        api = boto3.client("redshift-data", region_name=settings.get("region") or None)
    previous = ((attempt.get("result") or {}).get("outcome") or {}).get("statement")
    try:
        timeout = float(attempt["timeout_seconds"])
        max_polls = int((attempt.get("redshift") or {})["max_polls"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AttemptInputError(f"a Redshift step's input lacks a valid {exc}") from None

    def running(statement: dict[str, Any]) -> dict[str, Any]:
        left = max(statement["deadline"] - now(), 0.0)
        wait = max(min(poll_wait(statement["polls"]), math.ceil(left)), 1)
        statement["wait_seconds"] = wait
        return {"status": "running", "exit_code": None, "error": None, "outputs": {},
                "log": None, "statement": statement}  # fmt: skip

    if previous is None:
        if still_wanted is not None and not still_wanted():
            return _stopped()
        if paused is not None and paused():
            return _held()
        if outputs not in OUTPUT_KINDS:
            return _sql_failed(f"outputs must be one of {', '.join(OUTPUT_KINDS)}, not {outputs!r}")
        try:
            request = redshift_request(str(task.get("sql") or ""), task.get("parameters") or None,
                                       settings)  # fmt: skip
            started = api.execute_statement(**request)
        except SqlFailed as exc:
            return _sql_failed(str(exc))
        except Exception as exc:  # refused, throttled past the SDK's retries, invalid
            return _sql_failed(f"the statement could not be started: {exc}")
        statement_id = str(started["Id"])
        log.info("Redshift statement %s started", statement_id)
        return running({"id": statement_id, "deadline": now() + timeout, "polls": 0})

    statement_id = str(previous["id"])
    statement = {**previous, "polls": int(previous.get("polls") or 0) + 1}

    def cancel() -> str:
        try:
            api.cancel_statement(Id=statement_id)
        except Exception as exc:  # it ended meanwhile (ValidationException), or a throttle
            return f"; cancelling it failed: {exc}"
        return ""

    def ended(outcome: dict[str, Any], *details: str) -> dict[str, Any]:
        return _sql_log(s3, attempt, outcome, "Redshift", *details)

    if still_wanted is not None and not still_wanted():
        gone = _stopped()
        gone["error"] += f" (Redshift statement {statement_id} cancelled{cancel()})"
        gone["outputs"] = {"query_id": statement_id}
        return ended(gone)
    try:
        described = api.describe_statement(Id=statement_id)
    except Exception as exc:
        return ended(
            _sql_failed(f"Redshift statement {statement_id}: {exc}{cancel()}", statement_id)
        )
    status = str(described.get("Status"))
    state = f"state={status}"
    if status in REDSHIFT_ENDED:
        failure = redshift_failure(statement_id, described)
        if failure is not None:
            return ended(_sql_failed(str(failure), statement_id), state)
        keep = {"first_row": 1, "rows": MAX_ROWS + 1, "none": 0}[outputs]
        try:
            found = outputs_of(redshift_results(api, statement_id, described, keep), outputs)
        except SqlFailed as exc:
            return ended(_sql_failed(str(exc), statement_id), state)
        found["query_id"] = statement_id
        size = len(json.dumps(found, default=str).encode())
        if size > MAX_OUTPUTS_BYTES:
            return ended(_sql_failed(f"outputs too large: {size} bytes as JSON (at most "
                                     f"{MAX_OUTPUTS_BYTES})", statement_id), state)  # fmt: skip
        details = [state]
        result_size = described.get("ResultSize")
        if isinstance(result_size, int) and result_size >= 0:  # -1: not known
            details.append(f"result_size_bytes={result_size}")
        return ended({"status": "succeeded", "exit_code": 0, "error": None, "outputs": found,
                      "log": None}, *details)  # fmt: skip
    if now() >= statement["deadline"] or statement["polls"] >= max_polls:
        return ended({"status": "timed_out", "exit_code": None,
                      "outputs": {"query_id": statement_id},
                      "error": f"timed out after {timeout:g} s (Redshift statement "
                               f"{statement_id} {status.lower()}, cancelled{cancel()})",
                      "log": None}, state)  # fmt: skip
    return running(statement)


def load_attempt(environ: Mapping[str, str], argv: list[str], s3: Any) -> dict[str, Any]:
    """The Batch job's attempt: ``STRATOFLOW_ATTEMPT_INPUT`` (JSON), ``STRATOFLOW_ATTEMPT_URI``
    (an s3:// object the dispatcher wrote for a large input), or a path / URI argument."""
    if environ.get("STRATOFLOW_ATTEMPT_INPUT"):
        raw = environ["STRATOFLOW_ATTEMPT_INPUT"]
    else:
        where = environ.get("STRATOFLOW_ATTEMPT_URI") or (argv[0] if argv else "")
        if not where:
            raise AttemptInputError(
                "no attempt: set STRATOFLOW_ATTEMPT_INPUT or STRATOFLOW_ATTEMPT_URI, or pass a path"
            )
        if where.startswith("s3:"):
            bucket, key = _split_s3(where)
            raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        else:
            try:
                raw = Path(where).read_text(encoding="utf-8")
            except OSError as exc:
                raise AttemptInputError(f"cannot read the attempt from {where!r}: {exc}") from None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise AttemptInputError(f"the attempt input is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AttemptInputError("the attempt input must be a JSON object")
    return doc


def run_batch(
    environ: Mapping[str, str], argv: list[str], s3: Any, secrets: SecretSource | None = None
) -> int:
    """The Batch job: run the attempt, write its outputs where ``advance`` reads them, exit
    0 when it succeeded (the job succeeds) and non-zero otherwise (the job fails)."""
    attempt = load_attempt(environ, argv, s3)
    outcome = run_attempt(attempt, s3=s3, secrets=secrets)
    if attempt.get("outputs_uri"):
        bucket, key = _split_s3(str(attempt["outputs_uri"]))
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(outcome["outputs"], default=str).encode(),
            ContentType="application/json",
        )
    print(json.dumps({k: outcome[k] for k in ("status", "exit_code", "error", "log")}))
    if outcome["status"] == "succeeded":
        return 0
    if outcome["status"] == "timed_out":
        return TIMED_OUT_EXIT
    code = outcome.get("exit_code")
    return code if isinstance(code, int) and 0 < code < 256 else 1


def main(argv: list[str] | None = None) -> int:
    import boto3

    from stratoflow.adapters.aws.secrets import SecretsManagerSource, secrets_prefix

    logging.basicConfig(level=logging.INFO)
    secrets = SecretsManagerSource(boto3.client("secretsmanager"), secrets_prefix())
    try:
        return run_batch(
            os.environ, list(sys.argv[1:] if argv is None else argv), boto3.client("s3"), secrets
        )
    except AttemptInputError as exc:
        print(f"stratoflow runner: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
