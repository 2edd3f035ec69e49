"""Wires the AWS adapters to the scheduler service: what every function builds at cold start.

boto3 clients are made once per Lambda container (``AwsClients.create`` at module scope in
``functions/*/app.py``) and passed in; nothing here makes a request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import boto3

from stratoflow.adapters.aws.alerts import DynamoAlertStore
from stratoflow.adapters.aws.connections import DynamoConnectionStore
from stratoflow.adapters.aws.dispatch import StepFunctionsDispatcher
from stratoflow.adapters.aws.dynamodb import DynamoStore
from stratoflow.adapters.aws.handlers import DeadLetters, kill_stopped
from stratoflow.adapters.aws.lifecycle import StreamPublished
from stratoflow.adapters.aws.metrics import MeteredDispatcher, Metrics
from stratoflow.adapters.aws.projects import Identities, ProjectIdentities, ProjectPlaces
from stratoflow.adapters.aws.resources import S3Resources
from stratoflow.adapters.aws.results import S3Objects, send_kicks, send_retry_wakes
from stratoflow.adapters.aws.schedules import EventBridgeSchedules
from stratoflow.adapters.aws.secrets import PREFIX_VARIABLE, secrets_prefix
from stratoflow.adapters.aws.settings import AwsSettings
from stratoflow.ports import Clock, Dispatcher, EventSink
from stratoflow.service import Scheduler

log = logging.getLogger("stratoflow.aws.runtime")

# Every retry is dispatched at once with ``not_before`` = when its delay ends: the state
# machine's Wait state waits it out, so nothing has to poll for due retries. Not one that would
# hold a slot while it waits (a pooled task's, or one of a run with ``concurrency``): it waits
# UP_FOR_RETRY, as locally, and a delayed kick wakes its run (``AwsFunction.send_retry_wakes``).
RETRY_LEAD = timedelta(days=366)
# The state machine enforces the task timeout and reports first; ``step`` only times out an
# attempt whose report was lost, this long after its deadline.
TIMEOUT_GRACE = timedelta(minutes=2)


class UtcClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class AwsClients:
    """The boto3 clients the functions use, made once per container."""

    dynamodb: Any
    stepfunctions: Any
    events: Any
    scheduler: Any
    s3: Any
    batch: Any
    sqs: Any = None  # kicks to the results queue; the reconciler's dead-letter queue
    iam: Any = None  # the project identities' (roles, runner functions, their log groups)
    lambda_: Any = None
    logs: Any = None
    eks: Any = None  # the pod identity associations of project roles

    @classmethod
    def create(cls, session: boto3.Session | None = None) -> AwsClients:
        """From ``session``, or boto3's default session (one per process: a Lambda container
        makes its clients once, and loads botocore's service models once)."""
        if session is None:
            if boto3.DEFAULT_SESSION is None:
                boto3.setup_default_session()
            session = boto3.DEFAULT_SESSION
        assert session is not None
        return cls(
            dynamodb=session.client("dynamodb"),
            stepfunctions=session.client("stepfunctions"),
            events=session.client("events"),
            scheduler=session.client("scheduler"),
            s3=session.client("s3"),
            batch=session.client("batch"),
            sqs=session.client("sqs"),
            iam=session.client("iam"),
            lambda_=session.client("lambda"),
            logs=session.client("logs"),
            eks=session.client("eks"),
        )


def _arns(joined: str) -> tuple[str, ...]:
    """A template's CommaDelimitedList parameter, joined by commas: its non-empty items."""
    return tuple(arn.strip() for arn in joined.split(",") if arn.strip())


def project_identities(settings: AwsSettings, clients: AwsClients) -> ProjectIdentities:
    """Each project's role, runner function and pod identity (docs/aws.md, "Isolation").
    The partition and account come from the boundary's ARN, the region from the clients."""
    parts = settings.project_boundary_arn.split(":")
    if len(parts) < 6 or parts[2] != "iam":
        raise ValueError(
            f"STRATOFLOW_PROJECT_BOUNDARY_ARN is not an IAM policy ARN: "
            f"{settings.project_boundary_arn!r}"
        )
    places = ProjectPlaces(
        stack=settings.stack,
        partition=parts[1],
        region=clients.dynamodb.meta.region_name,
        account=parts[4],
        bucket=settings.bucket,
        table=settings.table,
        secrets_prefix=secrets_prefix({PREFIX_VARIABLE: settings.secrets_prefix}),
        oidc_issuer=settings.eks_oidc_issuer,
        eks_namespace=settings.eks_namespace,
        lambda_task_functions=_arns(settings.lambda_task_functions),
        athena_workgroups=_arns(settings.athena_workgroups),
        redshift_resources=_arns(settings.redshift_resources),
        aurora_clusters=_arns(settings.aurora_clusters),
    )
    retention = settings.runner_log_retention_days
    return ProjectIdentities(
        places,
        boundary_arn=settings.project_boundary_arn,
        layers=[layer.strip() for layer in settings.runner_layers.split(",")],
        iam=clients.iam,
        lambda_client=clients.lambda_,
        logs=clients.logs,
        eks=clients.eks,
        eks_cluster=settings.eks_cluster,
        environment={
            "STRATOFLOW_TABLE": settings.table,
            "POWERTOOLS_METRICS_NAMESPACE": "Stratoflow",
            # the runner reads <prefix><project>/<name> (its role may read nothing else)
            PREFIX_VARIABLE: places.secrets_prefix,
        },
        log_retention_days=int(retention) if retention else None,
    )


def build_scheduler(
    settings: AwsSettings,
    clients: AwsClients | None = None,
    *,
    metrics: Metrics | None = None,
    clock: Clock | None = None,
) -> Scheduler:
    """The scheduler over DynamoDB (state and catalog), Step Functions (dispatch) and
    EventBridge Scheduler (schedules). Its lifecycle events are not sent from here: the
    lifecycle function publishes them from the state table's stream, once their change is
    committed (``stratoflow.adapters.aws.lifecycle``). With ``metrics``, the dispatcher is
    wrapped to emit the functions' metrics."""
    clients = clients or AwsClients.create()
    clock = clock or UtcClock()
    store = DynamoStore(settings.table, client=clients.dynamodb)
    # resource files and the versions runs pin: the artifacts bucket (versioned)
    resources = S3Resources(clients.s3, settings.bucket) if settings.bucket else None
    dispatcher: Dispatcher = StepFunctionsDispatcher(
        settings.state_machine_arn,
        identities=project_identities(settings, clients),
        job_definition_prefix=f"stratoflow-{settings.stack}-",
        client=clients.stepfunctions,
        batch_client=clients.batch,
        s3_client=clients.s3,
        # a timed-out lambda task's function timeout (timed_out_grace)
        lambda_client=clients.lambda_,
        bucket=settings.bucket,
        job_queue=settings.batch_job_queue,
        runner_job_definition=settings.runner_job_definition,
        express_state_machine_arn=settings.express_state_machine_arn,
        read_json=S3Objects(clients.s3).read_json,
        resources=resources,
        # an sql task's named connection, read from the alert table (references, never values)
        connections=(
            DynamoConnectionStore(settings.alert_table, clients.dynamodb).get
            if settings.alert_table
            else None
        ),
    )
    events: EventSink = StreamPublished()
    if metrics is not None:
        dispatcher = MeteredDispatcher(dispatcher, metrics, clock)
    # a stop (or rerun) whose writer died half way is completed by whoever reads the run
    # next, the reconciler at the latest: the kills the writer never sent go out then
    store.plan_recovered = partial(kill_stopped, dispatcher)
    schedules = EventBridgeSchedules(
        settings.schedule_group,
        role_arn=settings.scheduler_role_arn,
        target_arn=settings.trigger_function_arn,
        client=clients.scheduler,
        clock=clock,
    )
    return Scheduler(
        store,
        store,
        dispatcher,
        clock,
        events,
        schedules=schedules,
        retry_lead=RETRY_LEAD,
        timeout_grace=TIMEOUT_GRACE,
        # the runner's log exists only once the attempt ends, so the start row would say
        # nothing the task row does not; skipping it saves a DynamoDB write per attempt
        record_attempt_starts=False,
        resources=resources,
        # apply refuses an alert group the alert table does not have (no table: no alerts)
        alert_groups=(
            DynamoAlertStore(settings.alert_table, clients.dynamodb).has_group
            if settings.alert_table
            else None
        ),
    )


@dataclass
class AwsFunction:
    """What one Lambda container keeps between invocations: settings, clients, the scheduler
    (with metered dispatcher and events) and the artifacts-bucket reader."""

    settings: AwsSettings
    clients: AwsClients
    scheduler: Scheduler
    objects: S3Objects
    metered: MeteredDispatcher | None

    @classmethod
    def create(
        cls,
        *,
        metrics: Metrics | None = None,
        settings: AwsSettings | None = None,
        clients: AwsClients | None = None,
        clock: Clock | None = None,
    ) -> AwsFunction:
        settings = settings or AwsSettings.from_env()
        clients = clients or AwsClients.create()
        scheduler = build_scheduler(settings, clients, metrics=metrics, clock=clock)
        metered = scheduler.dispatcher
        return cls(
            settings=settings,
            clients=clients,
            scheduler=scheduler,
            objects=S3Objects(clients.s3),
            metered=metered if isinstance(metered, MeteredDispatcher) else None,
        )

    def dead_letters(self) -> DeadLetters | None:
        """The results queue's dead-letter queue for the reconciler, if the stack has one."""
        if not self.settings.results_dlq_url or self.clients.sqs is None:
            return None
        return DeadLetters(self.clients.sqs, self.settings.results_dlq_url, self.objects.read_json)

    def hand_over(self, *run_ids: str) -> int:
        """Leave the dispatch of what is ready to ``advance``: one kick on the results queue
        per run this invocation made tasks ready in (``Scheduler.take_runs_to_dispatch``: a
        trigger's run, a resumed or rerun one) or named in ``run_ids``. The api and trigger
        functions record runs and never claim, render or start a task themselves: a template,
        however slow, is rendered in ``advance``, not in a request. Raises if a kick was not
        sent (the reconciler's pass dispatches what it would have). Returns how many kicks
        were sent."""
        runs = [*self.scheduler.take_runs_to_dispatch(), *run_ids]
        if not runs:
            return 0
        return send_kicks(self.clients.sqs, self.settings.results_queue_url, runs)

    def kick_left_over(self) -> int:
        """Kick ``advance`` once for each run whose ready tasks this invocation's turns left
        queued when their render budget ran out (``Scheduler.take_left_over``): slow
        templates go on in another invocation, with a budget of its own, behind the messages
        already queued. A kick that is not sent is logged, not raised (the outcomes were
        applied): the reconciler's pass claims what it would have. Returns how many were
        sent."""
        runs = self.scheduler.take_left_over()
        if not runs:
            return 0
        try:
            return send_kicks(self.clients.sqs, self.settings.results_queue_url, runs)
        except Exception:
            log.exception("kicks of %d runs left over by the render budget not sent", len(runs))
            return 0

    def send_retry_wakes(self) -> int:
        """A delayed kick for each run whose slot-bound retry this invocation left waiting
        out its delay UP_FOR_RETRY, holding no pool or ``concurrency`` slot
        (``Scheduler.take_retry_wakes``): ``advance`` queues and claims it when it is due.
        One not sent is logged, not raised (the outcomes were applied): the reconciler's
        pass queues a due retry itself, up to a pass late. Returns how many were sent."""
        wakes = self.scheduler.take_retry_wakes()
        if not wakes:
            return 0
        try:
            return send_retry_wakes(
                self.clients.sqs, self.settings.results_queue_url, wakes,
                self.scheduler.clock.now(),
            )  # fmt: skip
        except Exception:
            log.exception("retry wakes of %d runs not sent", len(wakes))
            return 0

    def identities(self) -> Identities | None:
        """The dispatcher's project identities (None: a dispatcher without them)."""
        dispatcher = getattr(self.scheduler.dispatcher, "inner", self.scheduler.dispatcher)
        found = getattr(dispatcher, "identities", None)
        return found if isinstance(found, ProjectIdentities) else None

    def invocation_started(self) -> None:
        """Tasks dispatched from here on became ready during this invocation."""
        if self.metered is not None:
            self.metered.mark()
