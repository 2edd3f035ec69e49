"""Task attempts as Step Functions executions (statemachines/task_attempt.asl.json).

One Standard execution per (run, task, attempt), named by ``execution_name``: Step Functions
refuses a second StartExecution with the same name, so a repeated dispatch starts nothing.
The execution waits out the retry delay, runs the attempt on its target and sends the outcome
to the results queue; ``advance`` applies it. The input is documented in
docs/aws-statemachine.md and AWS-CONTRACT.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from stratoflow.adapters.aws import batch_resources, batch_secrets
from stratoflow.adapters.aws.eks import POD_TERMINATION_GRACE_SECONDS
from stratoflow.adapters.aws.projects import (
    ATHENA_RESULTS,
    Identities,
    ProjectPlaces,
    TaskIdentity,
)
from stratoflow.adapters.aws.resources import S3Resources
from stratoflow.adapters.aws.results import MalformedOutcome, ReadJson, S3Objects, parse_outcome
from stratoflow.adapters.aws.runner import KILL_GRACE_SECONDS, STOP_POLL_SECONDS
from stratoflow.adapters.aws.secrets import secret_id, secrets_prefix
from stratoflow.connections import Connection, MissingConnection
from stratoflow.engine import AttemptResult, AttemptStatus, TaskInstance
from stratoflow.model import Task, WorkflowSpec
from stratoflow.ports import AttemptSpec, Dispatcher, Recovery
from stratoflow.resources import task_resources
from stratoflow.secrets import references
from stratoflow.taskexec.sql import SqlFailed
from stratoflow.taskexec.sql_aws import athena_request, polls_for

log = logging.getLogger("stratoflow.aws.dispatch")

MAX_NAME = 80  # Step Functions execution names: 1-80 characters
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_HASH_CHARS = 20  # 80 bits of sha256: a collision between two keys is not a practical concern

# The longest an attempt may run when its task sets no timeout (or a longer one than the
# target allows). The runner function stops its task before the function's own 15 minutes.
LAMBDA_MAX_SECONDS = 900
CONTAINER_MAX_SECONDS = 30 * 24 * 3600  # batch / kubernetes: 30 days
# an Athena query or a Redshift statement the state machine waits on (no Lambda waits): 6
# hours. The Redshift loop then makes at most polls_for(6 h) + 1 = 725 polls, about 6,500
# history events, well under a Standard execution's 25,000
SQL_STATE_MACHINE_MAX_SECONDS = 6 * 3600
# kubernetes: no heartbeat from the pod's reporter for this long (it sends one a minute from
# the pod's start) means the pod never started or was lost; below the timeout, always
HEARTBEAT_SECONDS = 600
# Express executions end after 5 minutes. An attempt goes to the Express state machine only
# when its timeout plus its retry wait fit in EXPRESS_MAX_SECONDS: the other two minutes are
# room for the Task state's own Retry backoff on Lambda service errors and the report.
EXPRESS_MAX_SECONDS = 180
DISPATCH_THREADS = 8  # StartExecution is one HTTPS call each: overlap them
# An execution that SUCCEEDED sent its outcome; while its task is still RUNNING in the store
# that long after it ended, the outcome was lost on the way (dead-lettered, or the message
# expired) and recovery applies it from the execution's history instead. Below this the
# report is most likely still in the results queue (applying it twice would be harmless).
REPORT_GRACE = timedelta(minutes=2)
INLINE_INPUT_LIMIT = 6 * 1024  # a Batch runner's attempt larger than this goes through S3
RUNNER_COMMAND = ["python", "-m", "stratoflow.adapters.aws.runner"]
_DIRECT_TYPES = ("batch", "kubernetes", "lambda")  # no runner of ours between (see refusal)

# How long a timed-out attempt's work may still run once its timeout is recorded (its retry
# is held that long: docs/aws-statemachine.md, "A timeout and the retry"), from the bounds
# AWS or the runner enforce, plus this margin (clocks, a slow call, a best-effort kill late)
GONE_MARGIN_SECONDS = 10
# Batch ends a job attemptDurationSeconds (at least this) after it started
BATCH_MIN_TIMEOUT_SECONDS = 60
# ... with SIGTERM, then SIGKILL this long after (docs.aws.amazon.com/batch, "Job timeouts")
BATCH_KILL_GRACE_SECONDS = 30
# a cold start's init (at most 10 s), which comes before the function's own timeout counts
LAMBDA_INIT_SECONDS = 10

KillHook = Callable[[str, str, int], None]  # (run, task, attempt): EksJobs.kill
Now = Callable[[], datetime]


def execution_name(run_id: str, task_id: str, attempt: int) -> str:
    """The execution's name: deterministic, unique per (run, task, attempt), at most 80
    characters of ``[A-Za-z0-9_-]``. A readable prefix (the ids, clipped, unsafe characters
    replaced) plus a hash of the exact key: the prefix alone would be ambiguous (``a-b``/``c``
    and ``a``/``b-c`` read alike; clipping merges long ids), the hash never is."""
    exact = json.dumps([run_id, task_id, attempt])  # unambiguous, whatever the ids contain
    digest = hashlib.sha256(exact.encode()).hexdigest()[:_HASH_CHARS]
    tail = f"-{attempt}-{digest}"
    room = MAX_NAME - len(tail) - 1  # the "-" between run and task
    if room < 2:  # an absurd attempt number: the hash alone still identifies it
        return digest
    run = _UNSAFE.sub("_", run_id)
    task = _UNSAFE.sub("_", task_id)
    task_room = min(len(task), max(room // 3, room - len(run)))
    run = run[: room - task_room]
    return f"{run}-{task[:task_room]}{tail}"


def _iso(value: datetime) -> str:
    """Whole seconds, rounded up: the Wait state must never start an attempt early."""
    value = value.astimezone(UTC)
    if value.microsecond:
        value = value.replace(microsecond=0) + timedelta(seconds=1)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class StepFunctionsDispatcher(Dispatcher):
    """Starts, stops and recovers task attempts on the task-attempt state machine.

    ``bucket`` (logs and Batch outputs), ``job_queue`` (the default Batch queue for ``batch``
    tasks) and ``runner_job_definition`` (the template for per-image job definitions) default
    to the contract's environment variables. ``on_kill(run_id, task_id, attempt)`` is called
    when a kubernetes attempt is stopped (``EksJobs.kill``): stopping an execution does not
    reach the Job behind a task token (Batch ``.sync`` jobs are terminated by Step Functions
    itself).

    ``identities`` gives each project's runner function and role (``ProjectIdentities``): a
    project's shell and python attempts run on its own runner function, its Batch jobs and
    kubernetes pods with its own role, and its objects live under ``<kind>/<project>/`` in
    the bucket."""

    def __init__(
        self,
        state_machine_arn: str,
        *,
        client: Any = None,
        batch_client: Any = None,
        s3_client: Any = None,
        bucket: str | None = None,
        job_queue: str | None = None,
        runner_job_definition: str | None = None,
        on_kill: KillHook | None = None,
        now: Now = _utcnow,
        threads: int = DISPATCH_THREADS,
        heartbeat_seconds: int = HEARTBEAT_SECONDS,
        express_state_machine_arn: str | None = None,
        read_json: ReadJson | None = None,
        report_grace: timedelta = REPORT_GRACE,
        identities: Identities | None = None,
        job_definition_prefix: str = "stratoflow-",
        resources: S3Resources | None = None,
        connections: Callable[[str, str], Connection] | None = None,
        athena_on_state_machine: bool | None = None,
        redshift_on_state_machine: bool | None = None,
        lambda_client: Any = None,
    ) -> None:
        # sql tasks on an athena connection: the state machine runs the query (StartAthenaQuery,
        # as the project's role, which trusts the state machine's role by name) instead of
        # the runner polling it. On unless STRATOFLOW_SQL_ATHENA_STATE_MACHINE=0 (the stack
        # sets nothing: on)
        self.athena_on_state_machine = (
            athena_on_state_machine
            if athena_on_state_machine is not None
            else os.environ.get("STRATOFLOW_SQL_ATHENA_STATE_MACHINE") != "0"
        )
        # sql tasks on a redshift-data connection: the state machine's loop (short runner
        # steps between Wait states) instead of a runner waiting on the statement. On unless
        # STRATOFLOW_SQL_REDSHIFT_STATE_MACHINE=0
        self.redshift_on_state_machine = (
            redshift_on_state_machine
            if redshift_on_state_machine is not None
            else os.environ.get("STRATOFLOW_SQL_REDSHIFT_STATE_MACHINE") != "0"
        )
        # where the versions a run pinned are read, for the runner to fetch (issue 13)
        self.resources = resources
        self._pins: dict[str, dict[str, str]] = {}  # run -> pins (never change once written)
        self.identities = identities
        # (project, name) -> the named connection of an sql task (references, never values);
        # None: this stack gives the dispatcher no connections, and sql tasks are refused
        self.connections = connections
        # the stack's: its state machines may submit only job definitions named so
        self.job_definition_prefix = job_definition_prefix
        self.state_machine_arn = state_machine_arn
        self._read_json = read_json
        self.report_grace = report_grace
        self.express_state_machine_arn = (
            express_state_machine_arn
            if express_state_machine_arn is not None
            else os.environ.get("STRATOFLOW_EXPRESS_STATE_MACHINE_ARN") or None
        ) or None
        self._sfn = client if client is not None else boto3.client("stepfunctions")
        self._batch_client = batch_client
        self._lambda_client = lambda_client
        self._s3_client = s3_client
        self.bucket = bucket or os.environ.get("STRATOFLOW_BUCKET") or None
        self.job_queue = job_queue or os.environ.get("STRATOFLOW_BATCH_JOB_QUEUE") or None
        self.runner_job_definition = (
            runner_job_definition or os.environ.get("STRATOFLOW_RUNNER_JOB_DEFINITION") or None
        )
        self.on_kill = on_kill
        self._now = now
        self._threads = threads
        self.heartbeat_seconds = heartbeat_seconds
        # the AWS CLI image of a batch job's fetch container (batch_resources)
        self.fetch_image = (
            os.environ.get("STRATOFLOW_BATCH_FETCH_IMAGE") or batch_resources.DEFAULT_FETCH_IMAGE
        )
        # (image, role, secrets, with files) -> job definition ARN
        self._job_definitions: dict[
            tuple[str | None, str | None, tuple[tuple[str, str], ...], bool], str
        ] = {}

    # ------------------------------------------------------------ names and places
    def execution_arn(self, run_id: str, task_id: str, attempt: int) -> str:
        prefix = self.state_machine_arn.replace(":stateMachine:", ":execution:", 1)
        return f"{prefix}:{execution_name(run_id, task_id, attempt)}"

    def _uri(self, kind: str, spec: AttemptSpec, suffix: str) -> str | None:
        if not self.bucket:
            return None
        key = ProjectPlaces.key(kind, spec.project, spec.run_id, spec.task_id, spec.attempt, suffix)
        return f"s3://{self.bucket}/{key}"

    def log_uri(self, spec: AttemptSpec) -> str | None:
        return self._uri("logs", spec, ".log")

    def outputs_uri(self, spec: AttemptSpec) -> str | None:
        return self._uri("outputs", spec, ".json")

    def identity(self, project: str) -> TaskIdentity:
        if self.identities is None:
            raise ValueError("no project identities: runner and batch tasks need them")
        return self.identities.ensure(project)

    @property
    def _batch(self) -> Any:
        if self._batch_client is None:
            self._batch_client = boto3.client("batch")
        return self._batch_client

    @property
    def _lambda(self) -> Any:
        if self._lambda_client is None:
            self._lambda_client = boto3.client("lambda")
        return self._lambda_client

    @property
    def _s3(self) -> Any:
        if self._s3_client is None:
            self._s3_client = boto3.client("s3")
        return self._s3_client

    # ------------------------------------------------------------ the input
    def looks_before_start(self, task: Task) -> bool:
        """Only the project's runner function looks at a retry's run before it starts it
        (``runner.run_paused``): shell and python on the Lambda runner, http. Not a Batch
        job (``type: batch``, ``runner: batch``: no table to read), a Kubernetes job, a
        ``lambda`` task the state machine invokes, an Athena query: their retries wait
        UP_FOR_RETRY and are dispatched when due (``sql`` too, whose route, runner or state
        machine, depends on its connection)."""
        return task.type == "http" or (task.type in ("shell", "python") and task.runner != "batch")

    def refusal(self, spec: AttemptSpec) -> str | None:
        """A ``batch`` or ``kubernetes`` task runs the user's image directly: no Stratoflow
        runner is there to resolve a secret reference, and the state machine must never carry
        a value. The exceptions: a ``batch`` task's command and env, which ECS injects from
        Secrets Manager as the container starts (a whole env value directly, any other
        reference through the wrapper: ``batch_secrets``); a ``kubernetes`` task's command
        and env, resolved in the pod by its reporter and wrapper as the project's role
        (``eks.build_job``); and a ``lambda`` task, which goes through the project's runner
        function when it holds a reference (``_lambda_via_runner``). Anything else (a
        reference in a batch image or job queue, in a kubernetes image or namespace)
        fails, saying what to do instead, as does what the batch wrapper cannot carry."""
        task = spec.task
        if task_resources(task.fields) and (why := self._resources_refusal(spec)) is not None:
            return why
        if task.task_type == "sql":
            if self.connections is None:
                return (
                    "sql tasks do not run on this stack yet (its dispatcher is given no "
                    "connections); run the query from a python task meanwhile"
                )
            try:
                self.connections(spec.project, str(task.fields.get("connection") or ""))
            except MissingConnection as exc:
                return str(exc)
            return None
        if task.task_type not in _DIRECT_TYPES or self._lambda_via_runner(spec):
            return None
        where = dict(task.fields, params=task.params)
        if task.task_type == "kubernetes":
            # command and env are resolved in the pod (eks_task.sh); params reach the pod
            # only through them (rendered into them here), so they need nothing more
            where.pop("command", None)
            where.pop("params", None)
        elif task.task_type == "batch":
            argv = batch_secrets.command_argv(task.fields.get("command"))
            if (why := batch_secrets.refusal(argv, task.env)) is not None:
                return f"a batch task on AWS cannot have its secret references resolved: {why}"
            # command and env are resolved as the container starts; params reach the
            # container only through them (rendered there), so they need nothing more
            where.pop("command", None)
            where.pop("params", None)
        else:
            where["env"] = task.env
        names = references(where)
        if not names:
            return None
        listed = ", ".join(sorted(names))
        place = f"{secrets_prefix()}{spec.project}/<name>"
        batch = {
            "batch": "; a batch task may have them in its command and env",
            "kubernetes": "; a kubernetes task may have them in its command and env",
        }.get(task.task_type, "")
        return (
            f"a {task.task_type} task on AWS runs your image or function directly, where "
            f"Stratoflow cannot resolve secret references ({listed}){batch}: use a shell or "
            f"python task (the runner resolves them; runner: batch for long work), or read "
            f"Secrets Manager {place} from the task itself (its role may)"
        )

    def _resources_refusal(self, spec: AttemptSpec) -> str | None:
        """Why the task's resource files cannot be put in its working directory (None: the
        runner fetches them, the versions the run pinned). Task types that cannot list any
        (http, switch, lambda) are refused by the model already."""
        if self.resources is None:
            return "resources: this stack keeps no resource files (STRATOFLOW_BUCKET is not set)"
        pins = self._pinned(spec.run_id)
        missing = [p for p in task_resources(spec.task.fields) if p not in pins]
        if missing:
            return (
                f"resource {missing[0]!r} was not pinned when the run was created (the run "
                "predates the task's resources list): trigger a new run"
            )
        if spec.task.task_type == "batch":
            # fetched by the job's fetch container into its shared volume (batch_resources)
            argv = batch_secrets.command_argv(spec.task.fields.get("command"))
            return batch_resources.refusal(argv, self._resources_input(spec), spec.project)
        return None

    def _pinned(self, run_id: str) -> dict[str, str]:
        found = self._pins.get(run_id)
        if found is None:
            assert self.resources is not None
            found = self.resources.pins(run_id) or {}
            if len(self._pins) >= 1024:
                self._pins.clear()
            self._pins[run_id] = found
        return found

    def _resources_input(self, spec: AttemptSpec) -> list[dict[str, str]]:
        """What the runner fetches: each listed file at the version the run pinned."""
        paths = task_resources(spec.task.fields)
        if not paths or self.resources is None:
            return []
        pins = self._pinned(spec.run_id)
        return [
            {"path": p, "version": pins[p], "uri": self.resources.uri(spec.project, p)}
            for p in paths
            if p in pins
        ]

    def _lambda_via_runner(self, spec: AttemptSpec) -> bool:
        """A ``lambda`` task whose function or payload references a secret goes through the
        project's runner function: it resolves them as the project's role and invokes the
        user's function itself (``runner.invoke_user_function``). Without references it
        keeps the direct path (the state machine invokes the function)."""
        task = spec.task
        return task.task_type == "lambda" and bool(
            references(dict(task.fields, params=task.params, env=task.env))
        )

    def build_input(self, spec: AttemptSpec) -> dict[str, Any]:
        """The execution input (AWS-CONTRACT.md). Env values go as the workflow wrote them:
        secrets are referenced there, never resolved here."""
        task = spec.task
        kind = task.task_type
        if kind in ("shell", "python", "http"):
            runner: str | None = "batch" if task.fields.get("runner") == "batch" else "lambda"
            if kind == "http":
                runner = "lambda"
        elif kind == "lambda" and self._lambda_via_runner(spec):
            runner = "lambda"  # resolved in the project's runner, which invokes the function
        elif kind == "sql" and self.connections is not None:
            runner = "lambda"  # the project's runner connects, as the project's role
        elif kind in ("batch", "kubernetes", "lambda"):
            runner = None
        else:
            raise ValueError(f"task {spec.task_id!r}: type {kind!r} cannot be dispatched on AWS")
        limit = (
            LAMBDA_MAX_SECONDS if runner == "lambda" or kind == "lambda" else CONTAINER_MAX_SECONDS
        )
        timeout = int(spec.timeout.total_seconds()) if spec.timeout is not None else limit
        timeout = max(2 if kind == "kubernetes" else 1, min(timeout, limit))
        uses_runner = runner is not None and kind != "lambda"  # a lambda task writes no log
        log_uri = self.log_uri(spec) if uses_runner else None
        outputs_uri = self.outputs_uri(spec) if runner == "batch" else None
        if uses_runner and not self.bucket:
            raise ValueError("STRATOFLOW_BUCKET is not set: runner tasks write their logs there")
        doc: dict[str, Any] = {
            "run_id": spec.run_id,
            "task_id": spec.task_id,
            "attempt": spec.attempt,
            "key": spec.key,
            "type": kind,
            "runner": runner,
            "not_before": _iso(spec.not_before) if spec.not_before else None,
            "timeout_seconds": timeout,
            "task": {
                **task.fields,
                "params": task.params,
                "env": dict(task.env),
                **self._connection_of(spec),
            },
            "context": {
                "workflow": spec.workflow,
                "project": spec.project,
                "logical_date": spec.logical_date.isoformat(),
            },
            "log": log_uri,
            "outputs_uri": outputs_uri,
        }
        if (uses_runner or kind in ("kubernetes", "batch")) and (
            fetch := self._resources_input(spec)
        ):
            doc["resources"] = fetch
        if spec.not_before is not None and spec.not_before > self._now():
            # only a retry that must wait carries start_at: the Route state sends it through a
            # Wait state; without it the attempt starts at once (one transition fewer)
            doc["start_at"] = _iso(spec.not_before)
        if runner == "lambda":
            doc["runner_function"] = self.identity(spec.project).runner_function
        if kind == "kubernetes":
            doc["heartbeat_seconds"] = min(self.heartbeat_seconds, timeout - 1)
            if self.identities is not None:
                # the project's pods run as its role (its service account; docs/aws-eks.md)
                namespace = task.fields.get("namespace")
                pods = self.identities.ensure_pods(
                    spec.project, namespace if isinstance(namespace, str) and namespace else None
                )
                doc["service_account"] = pods.service_account
                if pods.role_arn is not None:
                    doc["role_arn"] = pods.role_arn
        elif kind == "batch":
            doc["batch"] = self._batch_job(spec, doc)
        elif kind == "sql" and (athena := self._athena_query(spec, doc["task"])) is not None:
            doc["athena"] = athena
            doc["timeout_seconds"] = self._sql_timeout(spec)
        elif kind == "sql" and self._redshift_loop(doc["task"]):
            doc["timeout_seconds"] = self._sql_timeout(spec)
            # the bound of the loop's polls, from the timeout (docs/aws-statemachine.md)
            doc["redshift"] = {"max_polls": polls_for(doc["timeout_seconds"]) + 1}
        elif runner == "batch":
            doc["batch"] = self._runner_job(spec, doc)
        return doc

    def _athena_query(self, spec: AttemptSpec, task: Mapping[str, Any]) -> dict[str, Any] | None:
        """The state machine's Athena query for an sql task (None: the runner runs it):
        ``request``, the ``StartQueryExecution`` call (``athena_request``: the SQL with ``?``
        placeholders and ``ExecutionParameters`` in order, never pasted; the connection's
        workgroup, database and catalog; results under ``athena/<project>/``), and
        ``role_arn``, the role it runs as: the project's, computed here from the run's
        project, never read from the workflow. Left to the runner: ``sql_file`` (a file in
        the working directory), a connection whose settings hold a secret reference (only
        the runner resolves them) or name another region than the stack's."""
        connection = task.get("__connection") or {}
        if not self.athena_on_state_machine or connection.get("type") != "athena":
            return None
        settings = connection.get("settings") or {}
        if not isinstance(task.get("sql"), str) or task.get("sql_file"):
            return None
        if references(task) or self.identities is None:  # only the runner resolves them
            return None
        region = settings.get("region")
        if region and region != self._sfn.meta.region_name:
            return None
        try:
            request = athena_request(task["sql"], task.get("parameters") or None, settings)
        except SqlFailed:
            return None  # a name the parameters lack: the runner fails it, naming it
        return {"request": request, "role_arn": self.identity(spec.project).role_arn}

    @staticmethod
    def _sql_timeout(spec: AttemptSpec) -> int:
        """A query the state machine waits on is not bound by Lambda's 15 minutes: the
        task's timeout, at most (and without one) ``SQL_STATE_MACHINE_MAX_SECONDS``."""
        if spec.timeout is None:
            return SQL_STATE_MACHINE_MAX_SECONDS
        return max(1, min(int(spec.timeout.total_seconds()), SQL_STATE_MACHINE_MAX_SECONDS))

    def _redshift_loop(self, task: Mapping[str, Any]) -> bool:
        """Whether an sql task runs in the state machine's Redshift loop: a redshift-data
        connection, the SQL inline (``sql_file`` lives in the runner's working directory)
        and no secret reference in the task or its connection (the loop's steps do not
        resolve them): else the runner runs and waits on it, as before."""
        connection = task.get("__connection") or {}
        if not self.redshift_on_state_machine or connection.get("type") != "redshift-data":
            return False
        if not isinstance(task.get("sql"), str) or task.get("sql_file"):
            return False
        return not references(task)

    def _connection_of(self, spec: AttemptSpec) -> dict[str, Any]:
        """An sql task's connection, as the runner reads it: its type and its settings, with
        credentials as references (the runner resolves them as the project's role)."""
        if spec.task.task_type != "sql" or self.connections is None:
            return {}
        found = self.connections(spec.project, str(spec.task.fields.get("connection") or ""))
        settings = dict(found.settings)
        if found.type == "athena" and not settings.get("output_location") and self.bucket:
            # the project's role may write Athena results under athena/<project>/ only
            settings["output_location"] = f"s3://{self.bucket}/{ATHENA_RESULTS}/{spec.project}/"
        return {"__connection": {"type": found.type, "settings": settings}}

    def _env(self, spec: AttemptSpec, env: Mapping[str, str]) -> list[dict[str, str]]:
        everything = {
            **env,
            "STRATOFLOW_RUN_ID": spec.run_id,
            "STRATOFLOW_TASK_ID": spec.task_id,
            "STRATOFLOW_ATTEMPT": str(spec.attempt),
            "STRATOFLOW_WORKFLOW": spec.workflow,
            "STRATOFLOW_LOGICAL_DATE": spec.logical_date.isoformat(),
        }
        return [{"Name": k, "Value": v} for k, v in sorted(everything.items())]

    def _batch_job(self, spec: AttemptSpec, doc: Mapping[str, Any]) -> dict[str, Any]:
        """A ``batch`` task: the user's image needs a job definition of its own (Batch cannot
        override an image); command, environment and resources go in as overrides. Secret
        references (``batch_secrets.launch``) become the job definition's ``secrets``, which
        ECS resolves with the stack's Batch execution role (it may read under
        TaskSecretsPrefix) as the container starts: an env variable that is one reference
        directly, any other through the ``/bin/sh`` wrapper that becomes the command. Only
        names go in; each is built from the attempt's own project, so a workflow cannot name
        another project's secret."""
        fields = spec.task.fields
        queue = fields.get("job_queue") or self.job_queue
        if not queue:
            raise ValueError(
                "STRATOFLOW_BATCH_JOB_QUEUE is not set and the task names no job_queue"
            )
        start = batch_secrets.launch(
            batch_secrets.command_argv(fields.get("command")), spec.task.env
        )
        prefix = secrets_prefix()
        secrets = tuple(
            (variable, secret_id(prefix, spec.project, name)) for variable, name in start.secrets
        )
        overrides = {
            "Command": start.command,
            "Environment": self._env(spec, start.environment),
            "ResourceRequirements": [
                {"Type": "VCPU", "Value": f"{float(fields.get('vcpus', 1.0)):g}"},
                {"Type": "MEMORY", "Value": str(int(fields.get("memory", 2048)))},
            ],
        }
        files = doc.get("resources") or []
        # Batch itself ends the job at the attempt's timeout (at least 60 s) after it started:
        # a timed-out attempt's retry counts on it (timed_out_grace)
        duration = batch_timeout_seconds(int(doc["timeout_seconds"]))
        job_definition = self.job_definition_for(
            str(fields["image"]), self._role(spec), secrets, with_files=bool(files)
        )
        if files:
            # a multi-container job: the fetch container places the pinned versions in the
            # task volume, where the user's command then runs (batch_resources)
            return {
                "job_definition": job_definition,
                "job_queue": queue,
                "ecs_properties_override": batch_resources.override(overrides, files, spec.project),
                "attempt_duration_seconds": duration,
            }
        return {
            "job_definition": job_definition,
            "job_queue": queue,
            "container_overrides": overrides,
            "attempt_duration_seconds": duration,
        }

    def _runner_job(self, spec: AttemptSpec, doc: Mapping[str, Any]) -> dict[str, Any]:
        """shell/python with ``runner: batch``: the default runner image, the attempt in its
        environment (or, when large, in S3: container overrides are size-limited)."""
        attempt = json.dumps(doc, separators=(",", ":"), default=str)
        env = [
            {"Name": "STRATOFLOW_BUCKET", "Value": str(self.bucket)},
            # the runner resolves the task's secret references under it, as the project's role
            {"Name": "STRATOFLOW_SECRETS_PREFIX", "Value": secrets_prefix()},
        ]
        if len(attempt) <= INLINE_INPUT_LIMIT:
            env.append({"Name": "STRATOFLOW_ATTEMPT_INPUT", "Value": attempt})
        else:
            key = ProjectPlaces.key(
                "inputs", spec.project, spec.run_id, spec.task_id, spec.attempt, ".json"
            )
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=attempt.encode())
            env.append({"Name": "STRATOFLOW_ATTEMPT_URI", "Value": f"s3://{self.bucket}/{key}"})
        return {
            "job_definition": self.job_definition_for(None, self._role(spec)),
            "container_overrides": {"Command": list(RUNNER_COMMAND), "Environment": env},
            # Batch ends the job if its runner does not end the task (timed_out_grace)
            "attempt_duration_seconds": batch_timeout_seconds(int(doc["timeout_seconds"])),
        }

    def _role(self, spec: AttemptSpec) -> str | None:
        return self.identity(spec.project).role_arn if self.identities is not None else None

    def job_definition_for(
        self,
        image: str | None,
        role_arn: str | None = None,
        secrets: tuple[tuple[str, str], ...] = (),
        *,
        with_files: bool = False,
    ) -> str:
        """The job definition for ``image`` (None: the runner's own image) run as
        ``role_arn`` (a project's role), with ``secrets`` ((variable, Secrets Manager name)
        that ECS puts in the environment): the runner's job definition (network, logging,
        execution role) with the image and the job role replaced, registered once per
        (image, role, secrets) under a name derived from them and reused from then on (found
        again by name after a cold start). ``with_files``: the multi-container definition of a
        batch task with resource files (``batch_resources.ecs_properties``), the fetch
        container before the user's image; the same name otherwise never changes."""
        key = (image, role_arn, secrets, with_files)
        if key in self._job_definitions:
            return self._job_definitions[key]
        exact = json.dumps(
            [
                image,
                role_arn,
                *([list(secrets)] if secrets else []),
                *(["files", self.fetch_image] if with_files else []),
            ]
        )
        name = self.job_definition_prefix + hashlib.sha256(exact.encode()).hexdigest()[:24]
        found = self._batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")
        defs = sorted(found.get("jobDefinitions", []), key=lambda d: int(d["revision"]))
        if defs:
            arn = str(defs[-1]["jobDefinitionArn"])
        else:
            if not self.runner_job_definition:
                raise ValueError("STRATOFLOW_RUNNER_JOB_DEFINITION is not set: batch tasks need it")
            template = self._batch.describe_job_definitions(
                jobDefinitions=[self.runner_job_definition]
            )["jobDefinitions"]
            if not template:
                raise ValueError(f"job definition {self.runner_job_definition!r} not found")
            base = template[0]
            container = dict(base["containerProperties"])
            if image is not None:
                container["image"] = image
                container.pop("command", None)
            container.pop("jobRoleArn", None)
            if role_arn is not None:
                container["jobRoleArn"] = role_arn
            if secrets:
                container["secrets"] = [{"name": n, "valueFrom": v} for n, v in secrets]
            extra = {
                k: base[k]
                for k in ("platformCapabilities", "retryStrategy", "timeout", "propagateTags")
                if k in base
            }
            if with_files and image is not None:
                extra["ecsProperties"] = batch_resources.ecs_properties(
                    container, image, role_arn, self.fetch_image
                )
            else:
                extra["containerProperties"] = container
            arn = str(
                self._batch.register_job_definition(
                    jobDefinitionName=name,
                    type="container",
                    tags={"stratoflow:image": (image or "runner")[:256]},
                    **extra,
                )["jobDefinitionArn"]
            )
        self._job_definitions[key] = arn
        return arn

    # ------------------------------------------------------------ dispatch
    def fits_express(self, doc: Mapping[str, Any]) -> bool:
        """Whether the attempt (its input, ``build_input``) runs on the Express state machine:
        one is configured, the target is a Lambda (``lambda``, or the Lambda runner) and its
        timeout plus its retry wait fit in ``EXPRESS_MAX_SECONDS``. Anything else, and any
        attempt without a timeout of its own, runs on the Standard state machine."""
        if not self.express_state_machine_arn:
            return False
        if doc["type"] != "lambda" and doc["runner"] != "lambda":
            return False
        if "athena" in doc:  # StartAthenaQuery needs .sync: Standard only
            return False
        wait = 0.0
        if doc.get("start_at"):
            start = datetime.strptime(doc["start_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            wait = max((start - self._now()).total_seconds(), 0.0)
        return int(doc["timeout_seconds"]) + wait <= EXPRESS_MAX_SECONDS

    def dispatch(self, spec: AttemptSpec) -> str | None:
        doc = self.build_input(spec)
        name = execution_name(spec.run_id, spec.task_id, spec.attempt)
        machine = self.state_machine_arn
        if self.express_state_machine_arn and self.fits_express(doc):
            machine = self.express_state_machine_arn
        try:
            # Express does not refuse a second execution of the same name: the store's
            # conditional claim (only its winner dispatches) is what keeps it single; a
            # StartExecution retried after a lost response may start a second copy, whose
            # report advance ignores (the attempt is no longer running when it arrives)
            self._sfn.start_execution(
                stateMachineArn=machine,
                name=name,
                input=json.dumps(doc, separators=(",", ":"), default=str),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise
            # already started (a repeated dispatch): the first execution is the attempt
            log.info("execution %s already exists: not started again", name)
        return doc["log"]  # type: ignore[no-any-return]

    def dispatch_many(self, specs: Sequence[AttemptSpec]) -> list[str | None]:
        if len(specs) <= 1:
            return [self.dispatch(spec) for spec in specs]
        with ThreadPoolExecutor(min(self._threads, len(specs))) as pool:
            return list(pool.map(self.dispatch, specs))

    # ------------------------------------------------------------ kill
    def kill(self, run_id: str, task_id: str, attempt: int) -> None:
        """Stop the execution (idempotent: a missing or ended execution is left alone). A
        Batch job behind ``submitJob.sync`` is terminated by Step Functions when its execution
        stops; a kubernetes Job is deleted through ``on_kill``. An execution in the Redshift
        loop is not stopped: its next poll (at most ``MAX_POLL_SECONDS_STATE_MACHINE`` later)
        finds the attempt no longer wanted, cancels the statement as its owner (the project's
        role: nothing else may) and ends, reporting it stopped; stopping the execution would
        leave the statement running."""
        arn = self.execution_arn(run_id, task_id, attempt)
        described = self._describe(arn)
        sent = json.loads(described.get("input") or "{}") if described else {}
        if described and described.get("status") == "RUNNING" and "redshift" in sent:
            log.info("execution %s: its Redshift loop cancels the statement and ends", arn)
            return
        try:
            self._sfn.stop_execution(
                executionArn=arn, error="stratoflow.Stopped", cause="stopped by Stratoflow"
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in (
                "ExecutionDoesNotExist",
                "ValidationException",
            ):
                raise
        if sent.get("type") == "kubernetes" and self.on_kill is not None:
            self.on_kill(run_id, task_id, attempt)

    def _describe(self, arn: str) -> Mapping[str, Any] | None:
        try:
            return self._sfn.describe_execution(executionArn=arn)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ExecutionDoesNotExist":
                return None
            raise

    # ------------------------------------------------------------ after a timeout
    def timed_out_grace(self, spec: WorkflowSpec, ti: TaskInstance, *, killed: bool) -> timedelta:
        """How long after its timeout is recorded (now) the attempt's work may still run,
        per target, from the bounds AWS or the runner enforce (docs/aws-statemachine.md, "A
        timeout and the retry"), each plus ``GONE_MARGIN_SECONDS``. The same whether its
        state timed out (``killed`` False) or the scheduler ended it at its deadline and
        stops its execution: neither stops what the execution started.

        - the Lambda runner's task (shell, python, http, sql): the runner asks every
          ``STOP_POLL_SECONDS`` whether its task is still running this attempt; once the
          timeout is recorded it is not, and the runner sends SIGTERM, then SIGKILL after
          ``KILL_GRACE_SECONDS``;
        - a Batch job (``batch``, ``runner: batch``): Batch ends it its own timeout
          (``attemptDurationSeconds``: the attempt's, at least 60 s) after it started, which
          was before now if it runs at all, then SIGKILL 30 s after SIGTERM;
        - a kubernetes Job: its ``activeDeadlineSeconds`` (the attempt's timeout, from the
          Job's start, which its launcher made when the state started) has passed when the
          state times out; its pods then have their termination grace;
        - a user's ``lambda`` function: its configured timeout (GetFunctionConfiguration; the
          15-minute maximum when it cannot be read), from its invocation, which started
          before now, plus a cold start's init."""
        task = spec.workflow.tasks.get(ti.task_id)
        if task is None:
            return timedelta(0)
        kind = task.type
        margin = GONE_MARGIN_SECONDS
        if kind == "lambda":
            return self._function_grace(ti, getattr(task, "function", None))
        on_batch = kind == "batch" or (
            kind in ("shell", "python") and str(getattr(task, "runner", None) or "") == "batch"
        )
        if on_batch:
            timeout = spec.workflow.timeout(ti.task_id)
            seconds = CONTAINER_MAX_SECONDS if timeout is None else timeout.total_seconds()
            return timedelta(
                seconds=batch_timeout_seconds(seconds) + BATCH_KILL_GRACE_SECONDS + margin
            )
        if kind == "kubernetes":
            return timedelta(seconds=POD_TERMINATION_GRACE_SECONDS + margin)
        if kind in ("shell", "python", "http", "sql"):
            return timedelta(seconds=STOP_POLL_SECONDS + KILL_GRACE_SECONDS + margin)
        return timedelta(0)  # nothing of it runs on AWS (switch, workflow, dependency)

    def _function_grace(self, ti: TaskInstance, written: object) -> timedelta:
        """How long a timed-out ``lambda`` attempt's invocation may still run: until its
        function's configured timeout (the function as dispatched, in its execution's input,
        or as the workflow ``written`` it when that is no template: an Express execution
        cannot be described; the Lambda maximum when it cannot be read: a secret reference
        for a name, a missing permission, a throttle) plus a cold start's init and the
        margin, counted from the invocation's start where the execution's history shows it
        (the state invoked the function itself), from now otherwise (it started before)."""
        arn = self.execution_arn(ti.run_id, ti.task_id, ti.attempt)
        timeout, sent = float(LAMBDA_MAX_SECONDS), {}
        try:
            described = self._describe(arn)
            sent = json.loads((described or {}).get("input") or "{}")
            function = (sent.get("task") or {}).get("function") if described else written
            if isinstance(function, str) and function and "{{" not in function:
                config = self._lambda.get_function_configuration(FunctionName=function)
                timeout = float(config["Timeout"])
        except (ClientError, BotoCoreError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("attempt %s: its function's timeout unread (%s): 15 minutes", arn, exc)
        grace = timedelta(seconds=timeout + LAMBDA_INIT_SECONDS + GONE_MARGIN_SECONDS)
        if isinstance(sent, dict) and sent.get("runner") is None:
            # the state invoked it (not the runner, which invokes it later than its own
            # start): the invocation began when the state's last Lambda call started
            invoked = self._invoked_at(arn)
            if invoked is not None:
                left = invoked + grace - self._now()
                return min(grace, max(left, timedelta(0)))
        return grace

    def _invoked_at(self, arn: str) -> datetime | None:
        """When the execution's last Lambda call started (its last ``TaskStarted`` of a
        Lambda resource: a throttled call that was retried never ran), None when the
        history cannot be read or shows none."""
        try:
            pages = self._sfn.get_paginator("get_execution_history").paginate(
                executionArn=arn, reverseOrder=True, PaginationConfig={"PageSize": 50}
            )
            for page in pages:
                for event in page.get("events", []):
                    details = event.get("taskStartedEventDetails") or {}
                    stamp = event.get("timestamp")
                    if (
                        event.get("type") == "TaskStarted"
                        and details.get("resourceType") == "lambda"
                        and isinstance(stamp, datetime)
                    ):
                        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        except (ClientError, BotoCoreError) as exc:
            log.warning("history of execution %s unreadable: %s", arn, exc)
        return None

    # ------------------------------------------------------------ recovery
    def recover(self, running: Sequence[TaskInstance]) -> Recovery:
        """What became of attempts the store thinks are running: a running execution needs
        nothing (its report will come); one that ended without sending its report (the
        Report state is last, so only FAILED / TIMED_OUT / ABORTED executions can have missed
        it) gets a result here; so does one that SUCCEEDED more than ``report_grace`` ago,
        whose report was sent but never applied (dead-lettered, expired): its outcome is read
        back from the execution's history. A missing one was claimed but never started. One
        DescribeExecution per attempt, several at a time (plus one GetExecutionHistory per
        lost report)."""
        report = Recovery()

        def describe(ti: TaskInstance) -> Mapping[str, Any] | None:
            return self._describe(self.execution_arn(ti.run_id, ti.task_id, ti.attempt))

        if len(running) > 1:
            with ThreadPoolExecutor(min(self._threads, len(running))) as pool:
                found = list(pool.map(describe, running))
        else:
            found = [describe(ti) for ti in running]
        for ti, described in zip(running, found, strict=True):
            key = (ti.run_id, ti.task_id, ti.attempt)
            if described is None:
                if self._maybe_express(ti):
                    # DescribeExecution does not see Express executions: this attempt may be
                    # running there. Leave it to its deadline: the reconciler times it out
                    # (deadline + timeout grace) and the engine retries it; starting it again
                    # here could run it twice (Express does not deduplicate names)
                    continue
                report.not_started.append(ti)
                continue
            result = _ended_unreported(described)
            if result is None and self._report_lost(described):
                result = self._outcome_sent(described["executionArn"])
            if result is not None:
                report.results[key] = result
        return report

    def _report_lost(self, described: Mapping[str, Any]) -> bool:
        """A SUCCEEDED execution whose task the store still holds RUNNING (the caller asks
        about running tasks only) well after it ended: its report never got applied."""
        stopped = described.get("stopDate")
        if described.get("status") != "SUCCEEDED" or not isinstance(stopped, datetime):
            return False
        return stopped + self.report_grace <= self._now()

    def _outcome_sent(self, arn: str) -> AttemptResult | None:
        """The outcome a SUCCEEDED execution sent, read back from its history (the parameters
        of its last ``sqs:sendMessage``: the exact message ``advance`` would have received),
        with a Batch runner's outputs read from S3 as ``advance`` reads them. None when the
        history holds no readable outcome (then the attempt's deadline still ends it)."""
        try:
            body = self._sent_message(arn)
        except ClientError as exc:  # a throttle, a missing permission: the next pass retries
            log.warning("history of execution %s unreadable: %s", arn, exc)
            return None
        if body is None:
            log.warning("execution %s succeeded but its history holds no outcome", arn)
            return None
        read_json = self._read_json or S3Objects(self._s3).read_json
        try:
            return parse_outcome(body, read_json).result
        except MalformedOutcome as exc:
            log.warning("execution %s sent no valid outcome: %s", arn, exc)
            return None

    def _sent_message(self, arn: str) -> str | None:
        pages = self._sfn.get_paginator("get_execution_history").paginate(
            executionArn=arn, reverseOrder=True, PaginationConfig={"PageSize": 20}
        )
        for page in pages:
            sent = [
                (int(event["id"]), event["taskScheduledEventDetails"].get("parameters") or "{}")
                for event in page.get("events", [])
                if event.get("type") == "TaskScheduled"
                and event["taskScheduledEventDetails"].get("resourceType") == "sqs"
                and event["taskScheduledEventDetails"].get("resource") == "sendMessage"
            ]
            if sent:  # the report is the last state: the newest page has it
                try:
                    body = json.loads(max(sent)[1]).get("MessageBody")
                except (ValueError, AttributeError):
                    return None
                if body is None:
                    return None
                return body if isinstance(body, str) else json.dumps(body)
        return None

    def _maybe_express(self, ti: TaskInstance) -> bool:
        """Whether a running attempt with no Standard execution may be on the Express state
        machine: one is configured and the attempt's deadline is within the Express window
        of its start (only such attempts are ever sent there)."""
        if not self.express_state_machine_arn or ti.deadline is None or ti.started_at is None:
            return False
        return (ti.deadline - ti.started_at).total_seconds() <= EXPRESS_MAX_SECONDS


def batch_timeout_seconds(timeout_seconds: float) -> int:
    """The Batch job's own timeout (SubmitJob ``Timeout.AttemptDurationSeconds``) for an
    attempt's timeout: the same, but at least the 60 s Batch accepts."""
    return max(math.ceil(timeout_seconds), BATCH_MIN_TIMEOUT_SECONDS)


def _ended_unreported(described: Mapping[str, Any]) -> AttemptResult | None:
    status = described.get("status")
    detail = "; ".join(str(described[k]) for k in ("error", "cause") if described.get(k))
    if status == "FAILED":
        return AttemptResult(
            AttemptStatus.LOST,
            error="the attempt's execution failed before reporting"
            + (f": {detail}" if detail else ""),
        )
    if status == "TIMED_OUT":
        return AttemptResult(AttemptStatus.TIMED_OUT, error="the attempt's execution timed out")
    if status == "ABORTED":
        return AttemptResult(AttemptStatus.STOPPED, error="the attempt's execution was stopped")
    # RUNNING, PENDING_REDRIVE: a report may still come; SUCCEEDED: it was sent (whether it
    # arrived is ``recover``'s question: see REPORT_GRACE)
    return None
