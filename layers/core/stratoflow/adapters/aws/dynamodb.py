"""StateStore and Catalog on one DynamoDB table (single-table design).

Every write a race could lose is a conditional write; the item layout, the requests each
operation makes, and the limits at 10,000 tasks are in docs/aws-dynamodb.md. In short:

- a run is three kinds of item in the partition ``RUN#<id>``: the run (``R``, its state fields,
  in the three run indexes), its counters (``RC``, in no index, so the counter updates of the
  hot path write one item and no index), and one item per task (``T#<task>``) and per attempt
  (``A#<task>#<n>``);
- a task's gsi1 entry follows its state: its run's queue while QUEUED, a timer partition while
  UP_FOR_RETRY or RUNNING, nothing otherwise;
- ``transaction()`` is a no-op (the port allows it): every method is individually atomic and
  idempotent; ``create_run`` and ``apply_plan`` of any size commit at one conditional write and
  complete what follows it idempotently (see their docstrings).
"""

from __future__ import annotations

import heapq
import json
import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import ClientError

from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws import run_index_migration
from stratoflow.adapters.aws._dynamo_items import Item, Update, key, n, s
from stratoflow.adapters.aws.dynamo_audit import DynamoAudit
from stratoflow.adapters.aws.dynamo_backfills import DynamoBackfills
from stratoflow.adapters.aws.dynamo_dependencies import DynamoDependencies, logical_date_marker
from stratoflow.adapters.aws.dynamo_variables import DynamoVariables
from stratoflow.engine import (
    AttemptStatus,
    CountAlong,
    Decision,
    Plan,
    PoolDelta,
    Run,
    RunState,
    TaskInstance,
    TaskState,
    stopped,
)
from stratoflow.engine.pools import Pool, cleared, split_key
from stratoflow.errors import Conflict, NotFound
from stratoflow.model import WorkflowSpec
from stratoflow.ports import Attempt, Catalog, PoolStore, RunQuery, StateStore, WorkflowVersion

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

TTL_ATTRIBUTE: Final = "expires_at"

# The table, as ``client.create_table(**TABLE_SCHEMA, TableName=...)`` takes it. template.yaml's
# StateTable must match it (a test checks). TTL (``TTL_ATTRIBUTE``) and point-in-time recovery
# are separate API calls (``create_table`` below makes the TTL one).
TABLE_SCHEMA: Final[dict[str, Any]] = {
    "AttributeDefinitions": [
        {"AttributeName": name, "AttributeType": "S"}
        for name in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk")
    ],
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": f"gsi{n}",
            "KeySchema": [
                {"AttributeName": f"gsi{n}pk", "KeyType": "HASH"},
                {"AttributeName": f"gsi{n}sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
        for n in (1, 2, 3)
    ],
    "BillingMode": "PAY_PER_REQUEST",
    "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
}

DEFAULT_RETENTION: Final = timedelta(days=90)
BATCH_WRITE_MAX: Final = 25  # BatchWriteItem
BATCH_GET_MAX: Final = 100  # BatchGetItem
TRANSACTION_MAX: Final = 100  # TransactWriteItems
# a pool item's epoch second when a task last entered its retry wait (in the release's write),
# and how long after it a deletion is refused: the retry index (a GSI) may not show it yet
# (DynamoDB propagates index writes in well under a second, usually)
RETRY_GEN: Final = "rgen"  # on a pool item: how many tasks entered their retry wait
RETRY_ENTERED: Final = "rat"
RETRY_INDEX_SETTLE_SECONDS: Final = 10
# a workflow's admission item lists at most this many run ids (at most ~290 bytes each: a
# project and a workflow name of up to 128 in them; an item holds 400 KB): a max_active_runs
# above it is counted on the state index alone
ADMISSION_RUNS_MAX: Final = 1_000
_BACKOFF_MAX: Final = 2.0


def create_table(client: DynamoDBClient, table_name: str, *, stream: bool = True) -> None:
    """Create the table as the template does (schema, then TTL) and wait until it is active.
    For tests and local tooling; on AWS the template owns the table. ``stream=False`` leaves
    the stream out: moto copies every stream record at a cost that grows with the table, which
    makes 10,000-task tests crawl (nothing in the store reads the stream)."""
    schema = dict(TABLE_SCHEMA)
    if not stream:
        del schema["StreamSpecification"]
    client.create_table(**schema, TableName=table_name)
    client.get_waiter("table_exists").wait(TableName=table_name)
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _item_that_failed_the_condition(exc: ClientError) -> Item:
    """The item as it stood when a write's condition failed (``ReturnValuesOnCondition
    CheckFailure=ALL_OLD``; empty if there was none); any other error is raised again."""
    if _code(exc) != "ConditionalCheckFailedException":
        raise exc
    old: Item = dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
    return old


def _upstream_column(outcome: TaskState) -> str:
    """The child's count that a parent's ``outcome`` adds to."""
    return {TaskState.SUCCEEDED: "up_ok", TaskState.SKIPPED: "up_skipped"}.get(outcome, "up_failed")


# claims and ends without a transaction (``DynamoStore.apply_each``)
RESERVATION_PREFIX: Final = "r_"  # on the counters item: an open reservation, by its token
FENCE: Final = "fx"  # on a task item: tokens of reservations whose write may no longer apply
TOKEN_LENGTH: Final = 10
# on the counters item: when a plan began to wait for the open reservations to close; while it
# is fresh (younger than PLAN_WAIT) no reservation opens, so the wait ends (no starvation)
PLAN_WAITING: Final = "pw"
# on the run item: its plan generation (``Run.plan_gen``), written by every plan's commit and
# by a journaled plan's completion; absent (0) on a run no plan has written
PLAN_GEN: Final = "pgen"
# a journaled plan's task writes are conditional on each task as the plan read it
# (``DynamoStore._journal_mode``): the task whole (a plan of a run that goes on), or its
# attempt and whether it ran (a stop)
JOURNAL_READ: Final = "read"
JOURNAL_STOP: Final = "stop"
# on a task a journaled plan could not reset (it moved): the tasks the plan ended or marked
# that get a propagation intent before the plan is retired (taken up again by a completion
# that finds the task already carrying the plan)
PLAN_INTENTS: Final = "pli"


def _counts_of(state: TaskState) -> tuple[int, int, int]:
    """What a task in ``state`` adds to its run's counters: (done, failed, running)."""
    return int(state.terminal), int(state is TaskState.FAILED), int(state is TaskState.RUNNING)


def _minus(a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple[int, int, int]:
    return a[0] - b[0], a[1] - b[1], a[2] - b[2]


def _total(counts: Iterable[tuple[int, int, int]]) -> tuple[int, int, int]:
    done = failed = running = 0
    for d, f, r in counts:
        done, failed, running = done + d, failed + f, running + r
    return done, failed, running


def _with_slots(plan: Plan, expect: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``expect`` (what a journaled plan read of each task), with the pool (``p``) and slots
    (``s``) of each task whose slots the plan's commit frees as read (``Plan.pool_releases``):
    if such a task is found to have left that attempt before its chunk, its own turn freed
    them too (``DynamoStore._reconsider`` takes the second release back)."""
    for held in plan.pool_releases:
        if held.task_id in expect and held.pool is not None and held.pool_slots > 0:
            expect[held.task_id].update(p=held.pool, s=held.pool_slots)
    return expect


def _returning_old(request: Item) -> Item:
    """A transaction's Update that returns the item as it was when its condition failed."""
    return {"Update": {**request, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}


@dataclass
class _Entry:
    """One task write of a journaled plan's completion: the task (None: a rewrite of a
    child's counted parents alone), the write, what it adds to the run's counters besides
    what the plan's commit added, the attempt it stops that the plan did not list to kill,
    and the slots it frees."""

    task: str | None
    write: Item
    correction: tuple[int, int, int] = (0, 0, 0)
    kill: TaskInstance | None = None
    pools: tuple[PoolDelta, ...] = ()


@dataclass(frozen=True)
class _Journal:
    """A journaled plan as read back: its tasks and edges, how its writes are conditional
    (``mode``, None for a journal written before they were), what it read of each task,
    and the tasks its commit wrote."""

    plan: Plan
    mode: str | None
    expect: dict[str, dict[str, Any]]
    committed: frozenset[str]


@dataclass(frozen=True)
class _Reserved:
    """One task write of a reservation as it lists it: the task, the tag the write sets,
    and the counter deltas of its decision."""

    task: str
    tag: str
    done: int
    failed: int
    running: int

    @classmethod
    def of(cls, decision: Decision) -> _Reserved:
        (write,) = decision.tasks
        tag = (
            f"z{write.expect_attempt}"  # an end of that attempt
            if write.expect is TaskState.RUNNING
            else f"k{write.task.attempt}"  # a claim of that attempt
        )
        return cls(write.task.task_id, tag, decision.done, decision.failed, decision.running)

    def listed(self) -> list[Any]:
        return [self.task, self.tag, self.done, self.failed, self.running]

    @classmethod
    def from_listed(cls, data: Sequence[Any]) -> _Reserved:
        task, tag, done, failed, running = data
        return cls(str(task), str(tag), int(done), int(failed), int(running))


def _cancel_reasons(exc: ClientError) -> list[str]:
    reasons = exc.response.get("CancellationReasons") or []
    return [str(r.get("Code", "None")) for r in reasons]


def _unique_runs(items: Iterator[Item]) -> Iterator[Item]:
    """Each run once (a run being moved between index partitions may be read in both)."""
    seen: set[str] = set()
    for item in items:
        pk = str(item["pk"]["S"])
        if pk not in seen:
            seen.add(pk)
            yield item


class DynamoStore(
    DynamoAudit,
    StateStore,
    Catalog,
    DynamoBackfills,
    DynamoDependencies,
    PoolStore,
    DynamoVariables,
):
    """``table_name``: the StateTable. ``client``: a boto3 DynamoDB client (created once per
    Lambda container and passed in); by default one is made from the environment.
    ``retention``: how long attempt history lives (``expires_at`` TTL). ``lease``: how long a
    half-done ``create_run`` or ``apply_plan`` belongs to its writer before another caller
    may complete it."""

    atomic = False  # no multi-item transactions across a step: each write stands alone
    counts_parents_together = True  # record_upstream_group: one UpdateItem for several parents
    # Called with a committed plan that this store completes for a writer that died (from
    # ``get_run``, a later ``apply_plan`` or ``complete_pending_plans``), after its task
    # writes and before the plan is retired: the writer's own actions after the plan (its
    # kills) were lost with it. The AWS runtime sends the plan's kills here. False leaves the
    # plan pending, to be completed (and this called) again.
    plan_recovered: Callable[[Plan], bool] | None = None

    #: how long a plan waits for a run's open reservations (``apply_each``) to close before it
    #: is refused; they normally close within the milliseconds of a batch's writes
    plan_wait: timedelta = timedelta(seconds=5)

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        retention: timedelta = DEFAULT_RETENTION,
        lease: timedelta = timedelta(minutes=2),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.table = table_name
        self.client = client
        self.retention = retention
        self.lease = lease
        self._clock = clock
        self._seq = it.Sequencer()
        self._runs_rekeyed = False  # run_index_migration is done (cached once it is)

    # ------------------------------------------------------------ plumbing
    def transaction(self) -> AbstractContextManager[None]:
        return nullcontext()

    def _get(self, pk: str, sk: str) -> Item | None:
        out = self.client.get_item(TableName=self.table, Key=key(pk, sk), ConsistentRead=True)
        item: Item | None = out.get("Item")
        return item

    def _query(self, *, limit: int | None = None, **kwargs: Any) -> Iterator[Item]:
        """Items of a Query, page after page (``limit`` caps the items read per page)."""
        args: dict[str, Any] = {"TableName": self.table, **kwargs}
        if limit is not None:
            args["Limit"] = limit
        while True:
            out = self.client.query(**args)
            yield from out.get("Items", [])
            last = out.get("LastEvaluatedKey")
            if not last:
                return
            args["ExclusiveStartKey"] = last

    def _partition(self, pk: str, prefix: str, **kwargs: Any) -> Iterator[Item]:
        return self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": s(pk), ":prefix": s(prefix)},
            ConsistentRead=True,
            **kwargs,
        )

    def _index(
        self,
        index: str,
        pk: str,
        *,
        below: str | None = None,
        upto: str | None = None,
        newest_first: bool = False,
        limit: int | None = None,
        filters: dict[str, str] | None = None,
    ) -> Iterator[Item]:
        cond = f"{index}pk = :pk"
        values: Item = {":pk": s(pk)}
        if below is not None:
            cond += f" AND {index}sk < :bound"
            values[":bound"] = s(below)
        elif upto is not None:
            cond += f" AND {index}sk <= :bound"
            values[":bound"] = s(upto)
        args: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": cond,
            "ScanIndexForward": not newest_first,
        }
        if filters:
            names = {f"#f{i}": name for i, name in enumerate(filters)}
            args["FilterExpression"] = " AND ".join(f"#f{i} = :f{i}" for i in range(len(filters)))
            args["ExpressionAttributeNames"] = names
            values.update({f":f{i}": s(v) for i, v in enumerate(filters.values())})
        args["ExpressionAttributeValues"] = values
        return self._query(limit=limit, **args)

    def _batch_write(self, requests: Sequence[Item]) -> None:
        """BatchWriteItem in groups of 25, retrying unprocessed items with backoff."""
        for start in range(0, len(requests), BATCH_WRITE_MAX):
            pending: list[Item] = list(requests[start : start + BATCH_WRITE_MAX])
            delay = 0.05
            while pending:
                out = self.client.batch_write_item(RequestItems={self.table: cast("Any", pending)})
                pending = cast("list[Item]", out.get("UnprocessedItems", {}).get(self.table, []))
                if pending:
                    time.sleep(delay)
                    delay = min(delay * 2, _BACKOFF_MAX)

    def _batch_get(self, keys: Sequence[Item]) -> list[Item]:
        """BatchGetItem (strongly consistent) in groups of 100, retrying unprocessed keys."""
        found: list[Item] = []
        for start in range(0, len(keys), BATCH_GET_MAX):
            pending: list[Item] = list(keys[start : start + BATCH_GET_MAX])
            delay = 0.05
            while pending:
                out = self.client.batch_get_item(
                    RequestItems={self.table: {"Keys": pending, "ConsistentRead": True}}
                )
                found += out.get("Responses", {}).get(self.table, [])
                unprocessed: Any = out.get("UnprocessedKeys", {}).get(self.table, {})
                pending = list(unprocessed.get("Keys", []))
                if pending:
                    time.sleep(delay)
                    delay = min(delay * 2, _BACKOFF_MAX)
        return found

    def _update(self, update: Update, item_key: Item, condition: str | None = None) -> bool:
        """One conditional UpdateItem; False if its condition failed."""
        return self._updated(update.request(self.table, item_key, condition))

    def _transact(self, items: Sequence[Item]) -> list[str] | None:
        """TransactWriteItems (<= 100 items); None when applied, else the cancellation reason
        codes. A conflict with another transaction on the same items is retried."""
        out = self._transact_returning(items)
        return None if out is None else out[0]

    def _transact_returning(self, items: Sequence[Item]) -> tuple[list[str], list[Item]] | None:
        """``_transact``, with the cancellation reasons the items as they were (those whose
        write asked for them, ``ReturnValuesOnConditionCheckFailure``; else empty)."""
        assert len(items) <= TRANSACTION_MAX
        delay = 0.05
        while True:
            try:
                self.client.transact_write_items(TransactItems=cast("Any", list(items)))
            except ClientError as exc:
                if _code(exc) != "TransactionCanceledException":
                    raise
                reasons = _cancel_reasons(exc)
                if "TransactionConflict" in reasons and "ConditionalCheckFailed" not in reasons:
                    time.sleep(delay)
                    delay = min(delay * 2, _BACKOFF_MAX)
                    continue
                found = exc.response.get("CancellationReasons") or []
                olds: list[Item] = [dict(r.get("Item") or {}) for r in found]
                return reasons, olds + [{}] * (len(reasons) - len(olds))
            return None

    def _expires(self, when: datetime) -> dict[str, str]:
        return n(int((when + self.retention).timestamp()))

    # ------------------------------------------------------------ catalog
    def put_version(
        self, spec: WorkflowSpec, source: str, now: datetime
    ) -> tuple[WorkflowVersion, bool]:
        pk = it.workflow_pk(spec.project, spec.name)
        body = it.pack({"document": spec.document, "source": source})
        while True:
            head = self._get(pk, it.HEAD_SK)
            if head is not None and it.get_s(head, "digest") == spec.digest:
                return self._version(head, it.get_n(head, "latest")), False
            version = 1 if head is None else it.get_n(head, "latest") + 1
            token = uuid.uuid4().hex
            item: Item = {
                **key(pk, it.version_sk(version)),
                "version": n(version),
                "digest": s(spec.digest),
                "created_at": s(it.ts(now)),
            }
            chunks = it.split(body) if len(body) > it.INLINE_MAX else []
            if chunks:
                # A document too large for one item: its chunks first (under a token of this
                # writer, so a writer that loses the race below overwrites nobody's chunks),
                # then the version item that names them, in the transaction that commits it.
                item["chunks"], item["token"] = n(len(chunks)), s(token)
                self._batch_write(
                    [
                        {"PutRequest": {"Item": self._chunk(pk, version, token, i, part)}}
                        for i, part in enumerate(chunks)
                    ]
                )
            else:
                item["body"] = {"B": body}
            if head is None:
                head_write: Item = {
                    "Put": {
                        "TableName": self.table,
                        "Item": {
                            **key(pk, it.HEAD_SK),
                            "project": s(spec.project),
                            "name": s(spec.name),
                            "latest": n(version),
                            "digest": s(spec.digest),
                            "paused": {"BOOL": False},
                            "gsi3pk": s("WORKFLOWS"),
                            "gsi3sk": s(f"{spec.project}#{spec.name}"),
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            else:
                upd = Update().set("latest", n(version)).set("digest", s(spec.digest))
                # the head still names the version this writer read: two concurrent applies
                # of different content cannot both become version N
                cond = upd.condition("{latest} = :prev", prev=n(version - 1))
                head_write = {"Update": upd.request(self.table, key(pk, it.HEAD_SK), cond)}
            put = {
                "Put": {
                    "TableName": self.table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            if self._transact([put, head_write]) is None:
                paused = head is not None and bool(head.get("paused", {}).get("BOOL"))
                return self._to_version(spec.project, spec.name, item, body, paused), True
            if chunks:  # lost the race: remove this writer's chunks, then read again
                self._batch_write(
                    [
                        {"DeleteRequest": {"Key": key(pk, self._chunk_sk(version, token, i))}}
                        for i in range(len(chunks))
                    ]
                )

    @staticmethod
    def _chunk_sk(version: int, token: str, index: int) -> str:
        return f"{it.version_sk(version)}{it.CHUNK_MARK}{token}#{index:05d}"

    def _chunk(self, pk: str, version: int, token: str, index: int, part: bytes) -> Item:
        return {**key(pk, self._chunk_sk(version, token, index)), "body": {"B": part}}

    @staticmethod
    def _to_version(
        project: str, name: str, item: Item, body: bytes, paused: bool
    ) -> WorkflowVersion:
        data = it.unpack(body)
        return WorkflowVersion(
            project=project,
            name=name,
            version=it.get_n(item, "version"),
            digest=str(item["digest"]["S"]),
            document=data["document"],
            source=data["source"],
            created_at=it.dt(item["created_at"]["S"]),
            paused=paused,
        )

    def _assemble(
        self, project: str, name: str, items: list[Item], paused: bool
    ) -> WorkflowVersion:
        """A version from its item and (for a large document) its chunk items."""
        head = next(i for i in items if it.CHUNK_MARK not in i["sk"]["S"])
        if "body" in head:
            body = bytes(head["body"]["B"])
        else:
            prefix = f"{head['sk']['S']}{it.CHUNK_MARK}{head['token']['S']}#"
            parts = sorted(
                (i["sk"]["S"], bytes(i["body"]["B"]))
                for i in items
                if i["sk"]["S"].startswith(prefix)
            )
            if len(parts) != it.get_n(head, "chunks"):
                raise RuntimeError(
                    f"workflow {project}/{name} version {head['version']['N']} is missing chunks"
                )
            body = b"".join(part for _, part in parts)
        return self._to_version(project, name, head, body, paused)

    def _version(self, head: Item, version: int) -> WorkflowVersion:
        project, name = str(head["project"]["S"]), str(head["name"]["S"])
        sk = it.version_sk(version)
        items = list(
            self._query(
                KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={
                    ":pk": s(it.workflow_pk(project, name)),
                    ":lo": s(sk),
                    ":hi": s(sk + it.CHUNK_MARK + it.HIGH),
                },
                ConsistentRead=True,
            )
        )
        if not any(i["sk"]["S"] == sk for i in items):
            raise NotFound(f"workflow {name!r} has no version {version}")
        found = self._assemble(project, name, items, bool(head.get("paused", {}).get("BOOL")))
        if "schedule_error" in head:
            found = replace(found, schedule_error=str(head["schedule_error"]["S"]))
        return found

    def _head(self, project: str, name: str) -> Item:
        head = self._get(it.workflow_pk(project, name), it.HEAD_SK)
        if head is None:
            raise NotFound(f"workflow {name!r} not found in project {project!r}")
        return head

    def get_version(self, project: str, name: str, version: int | None = None) -> WorkflowVersion:
        head = self._head(project, name)
        return self._version(head, it.get_n(head, "latest") if version is None else version)

    def latest_version(self, project: str, name: str) -> int:
        return it.get_n(self._head(project, name), "latest")  # the head item alone

    def list_workflows(
        self, project: str | None = None, *, after: str | None = None, limit: int | None = None
    ) -> list[WorkflowVersion]:
        if limit is not None and limit <= 0:
            return []
        if project is None:
            heads: Iterable[Item] = self._index("gsi3", "WORKFLOWS")
        else:
            # gsi3sk is "<project>#<name>" and no name holds a '#': the project's heads, from
            # the one named `after` (left out below), read only as far as the page goes
            heads = self._query(
                IndexName="gsi3",
                KeyConditionExpression="gsi3pk = :pk AND gsi3sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={
                    ":pk": s("WORKFLOWS"),
                    ":lo": s(f"{project}#{after or ''}"),
                    ":hi": s(f"{project}#{it.HIGH}"),
                },
                limit=None if limit is None else limit + 1,
            )
        if after is not None:
            heads = (h for h in heads if str(h["name"]["S"]) > after)
        if limit is not None:
            heads = islice(heads, limit)
        return [self._version(h, it.get_n(h, "latest")) for h in heads]

    def list_versions(
        self, project: str, name: str, *, before: int | None = None, limit: int | None = None
    ) -> list[WorkflowVersion]:
        head = self._head(project, name)
        paused = bool(head.get("paused", {}).get("BOOL"))
        # versions are numbered 1..latest without a gap (the head's `latest` moves only once
        # a version's items are all written): the page is a range of them, read alone
        latest = it.get_n(head, "latest")
        newest = latest if before is None else min(latest, before - 1)
        oldest = 1 if limit is None else max(1, newest - limit + 1)
        if newest < oldest:
            return []
        items = self._query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":pk": s(it.workflow_pk(project, name)),
                ":lo": s(it.version_sk(oldest)),
                ":hi": s(it.version_sk(newest) + it.CHUNK_MARK + it.HIGH),
            },
            ConsistentRead=True,
        )
        groups: dict[str, list[Item]] = {}
        for item in items:
            groups.setdefault(item["sk"]["S"][: len(it.version_sk(0))], []).append(item)
        return [
            self._assemble(project, name, group, paused)
            for _, group in sorted(groups.items(), reverse=True)
        ]

    def set_paused(self, project: str, name: str, paused: bool) -> None:
        upd = Update().set("paused", {"BOOL": paused})
        if not self._update(
            upd, key(it.workflow_pk(project, name), it.HEAD_SK), "attribute_exists(pk)"
        ):
            raise NotFound(f"workflow {name!r} not found in project {project!r}")

    def get_cursor(self, project: str, name: str) -> datetime | None:
        head = self._get(it.workflow_pk(project, name), it.HEAD_SK)
        return None if head is None else it.get_dt(head, "cursor")

    def set_cursor(self, project: str, name: str, logical_date: datetime) -> None:
        # forward only (``Catalog.set_cursor``): the stored times sort as the instants do;
        # a failed condition (no workflow, or a cursor as late) changes nothing
        upd = Update().set("cursor", s(it.ts(logical_date)))
        cond = upd.condition(
            "attribute_exists(pk) AND (attribute_not_exists({cursor}) OR {cursor} < :at)",
            at=s(it.ts(logical_date)),
        )
        self._update(upd, key(it.workflow_pk(project, name), it.HEAD_SK), cond)

    def set_schedule_error(self, project: str, name: str, error: str | None) -> None:
        # on the head item, which every listing already reads
        upd = (
            Update().remove("schedule_error")
            if error is None
            else Update().set("schedule_error", s(error))
        )
        self._update(upd, key(it.workflow_pk(project, name), it.HEAD_SK), "attribute_exists(pk)")

    # ------------------------------------------------------------ runs
    def create_run(self, run: Run, tasks: Sequence[TaskInstance], concurrency: int | None) -> bool:
        """Three steps; the run item is the commit point, so a crash leaves nothing visible:

        1. claim the id: a conditional PutItem of a *pending* run item (a lock token and a
           lease, in no index). It fails if the id is committed (-> False) or another
           creator's lease is live (-> wait for it, then False); an expired lease is taken over.
        2. write the tasks with BatchWriteItem (25 per request, unprocessed items retried).
           Nothing reads them yet: get_run treats a pending run as absent, and a queue is only
           read for a committed RUNNING run.
        3. commit: one transaction puts the run item (condition: still our lock) and its
           counters item. Only now does the run appear anywhere.
        """
        pk = it.run_pk(run.id)
        token = uuid.uuid4().hex
        while True:
            now = self._clock()
            lock: Item = {
                **key(pk, it.RUN_SK),
                "lock": s(token),
                "lease": n(int(now + self.lease.total_seconds())),
            }
            try:
                out = self.client.put_item(
                    TableName=self.table,
                    Item=lock,
                    # a fresh id, or a creation whose writer died (its lease ran out)
                    ConditionExpression="attribute_not_exists(pk) OR "
                    "(attribute_exists(#lock) AND #lease < :now)",
                    ExpressionAttributeNames={"#lock": "lock", "#lease": "lease"},
                    ExpressionAttributeValues={":now": n(int(now))},
                    ReturnValues="ALL_OLD",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                old = _item_that_failed_the_condition(exc)
                if "lock" not in old:
                    return False  # committed: the id exists
                # another creator is writing this run: wait until it commits (or dies)
                time.sleep(min(1.0, max(0.05, it.get_n(old, "lease") - now)))
                continue
            break
        stale: list[str] = []
        if out.get("Attributes"):
            # we took over a dead creation: remove the tasks it wrote that this one lacks
            mine = {it.task_sk(t.task_id) for t in tasks}
            stale = [
                str(i["sk"]["S"])
                for i in self._partition(pk, it.TASK_PREFIX, ProjectionExpression="sk")
                if i["sk"]["S"] not in mine
            ]
        writes: list[Item] = [{"DeleteRequest": {"Key": key(pk, sk)}} for sk in stale]
        writes += [
            {
                "PutRequest": {
                    "Item": it.task_item(
                        t, self._seq.next() if t.state is TaskState.QUEUED else None
                    )
                }
            }
            for t in tasks
        ]
        self._batch_write(writes)
        reasons = self._transact(
            [
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": it.run_attributes(run, concurrency),
                        "ConditionExpression": "#lock = :token",
                        "ExpressionAttributeNames": {"#lock": "lock"},
                        "ExpressionAttributeValues": {":token": s(token)},
                    }
                },
                {"Put": {"TableName": self.table, "Item": it.counters_item(run)}},
                # files the run under its logical date (dependency tasks' windows)
                {"Put": {"TableName": self.table, "Item": logical_date_marker(run)}},
            ]
        )
        if reasons is not None:
            # our lease ran out and another creator took the id over: it commits, not us
            log.warning("create_run %s: lease lost before commit (%s)", run.id, reasons)
            return False
        return True

    def _run_items(self, run_id: str) -> tuple[Item, Item | None]:
        items = {
            i["sk"]["S"]: i for i in self._partition(it.run_pk(run_id), it.RUN_SK)
        }  # R and RC, one Query
        run = items.get(it.RUN_SK)
        if run is None or "lock" in run:
            raise NotFound(f"run {run_id!r} not found")
        return run, items.get(it.COUNTERS_SK)

    def get_run(self, run_id: str) -> Run:
        item, counters = self._run_items(run_id)
        if "plan" in item and self._expired(item, "plan_at"):
            self._complete_plan(run_id, str(item["plan"]["S"]))
            item, counters = self._run_items(run_id)
        if self._finish_reservations(run_id, counters):
            item, counters = self._run_items(run_id)
        return it.to_run(item, counters)

    def _expired(self, item: Item, name: str) -> bool:
        return it.get_n(item, name) + self.lease.total_seconds() < self._clock()

    def _with_counters(self, items: Sequence[Item]) -> list[Run]:
        """Runs from run items (an index page), with their counters (one BatchGetItem)."""
        counters = {
            it.run_id_of(c): c
            for c in self._batch_get([key(i["pk"]["S"], it.COUNTERS_SK) for i in items])
        }
        return [it.to_run(i, counters.get(it.run_id_of(i))) for i in items]

    def list_runs(self, query: RunQuery) -> list[Run]:
        below: str | None = None
        if query.before is not None:
            cursor = self._get(it.run_pk(query.before), it.RUN_SK)
            if cursor is None or "lock" in cursor:
                return []
            below = str(cursor["gsi1sk"]["S"])
        if query.workflow is not None and query.project is not None:
            own = self._runs_of_workflow(query.project, query.workflow, query, below)
            return self._with_counters(self._take(own, query.limit))
        if query.workflow is not None:
            # every project's runs of a workflow of that name: an operator's listing (the API
            # always names a project), read from the state partitions, none of which is any
            # project's; newest first, merged as below
            states = list(RunState) if query.state is None else [query.state]
            return self._newest_of_states(states, below, query.limit, {"workflow": query.workflow})
        if query.project is not None:
            filters = {} if query.state is None else {"st": query.state.value}
            page = self._index(
                "gsi1",
                f"RUNP#{query.project}",
                below=below,
                newest_first=True,
                limit=query.limit if not filters else max(query.limit, 100),
                filters=filters,
            )
            return self._with_counters(self._take(page, query.limit))
        if query.state is not None:
            page = self._index(
                "gsi2", f"RUNS#{query.state.value}", below=below, newest_first=True,
                limit=query.limit,
            )  # fmt: skip
            return self._with_counters(self._take(page, query.limit))
        # every run, newest first: merge the newest of each state's partition
        return self._newest_of_states(list(RunState), below, query.limit, {})

    def _newest_of_states(
        self, states: Sequence[RunState], below: str | None, limit: int, filters: dict[str, str]
    ) -> list[Run]:
        """The newest ``limit`` runs of the state partitions of gsi2 that match ``filters``."""
        merged: list[Item] = []
        for state in states:
            merged += self._take(
                self._index("gsi2", f"RUNS#{state.value}", below=below, newest_first=True,
                            limit=limit if not filters else max(limit, 100), filters=filters),
                limit,
            )  # fmt: skip
        merged.sort(key=lambda i: str(i["gsi2sk"]["S"]), reverse=True)
        return self._with_counters(merged[:limit])

    def _runs_of_workflow(
        self, project: str, workflow: str, query: RunQuery, below: str | None
    ) -> Iterator[Item]:
        """One project's runs of one workflow, newest first: its own gsi3 partition, so none
        of another project's runs is read. Until ``run_index_migration`` is done, merged with
        the workflow's partition of the older layout (every project's runs, filtered by the
        project as before), so that no run written before the upgrade is missing."""
        filters = {} if query.state is None else {"st": query.state.value}
        page = query.limit if not filters else max(query.limit, 100)
        own = self._index(
            "gsi3", it.runs_of_workflow_pk(project, workflow),
            below=below, newest_first=True, limit=page, filters=filters,
        )  # fmt: skip
        if self._run_index_migrated():
            return own
        legacy = self._index(
            "gsi3", it.legacy_runs_of_workflow_pk(workflow),
            below=below, newest_first=True, limit=max(query.limit, 100),
            filters={"project": project, **filters},
        )  # fmt: skip
        return _unique_runs(
            heapq.merge(own, legacy, key=lambda i: str(i["gsi3sk"]["S"]), reverse=True)
        )

    def _run_index_migrated(self) -> bool:
        """Whether no run is left in the older gsi3 layout (one GetItem until it is; then
        never again in this container)."""
        if not self._runs_rekeyed:
            self._runs_rekeyed = run_index_migration.is_done(self.client, self.table)
        return self._runs_rekeyed

    def migrate_run_index(self, seconds: float = 60.0) -> run_index_migration.Progress:
        """One step of ``run_index_migration`` (the reconciler's pass calls it)."""
        if self._runs_rekeyed:
            return run_index_migration.Progress(done=True, moved=0)
        progress = run_index_migration.RunIndexMigration(
            self.client, self.table, clock=self._clock
        ).step(seconds=seconds)
        self._runs_rekeyed = progress.done
        return progress

    @staticmethod
    def _take(items: Iterator[Item], limit: int) -> list[Item]:
        taken: list[Item] = []
        if limit <= 0:
            return taken
        for item in items:
            taken.append(item)
            if len(taken) >= limit:
                break
        return taken

    def _run_write(self, run: Run, expect: RunState) -> Item:
        upd = Update().set("st", s(run.state.value)).set("gsi2pk", s(f"RUNS#{run.state.value}"))
        # the run's project-scoped gsi3 key: a run a version before 2026-12-06 filed under
        # its workflow alone moves with its state (run_index_migration relies on it)
        upd.set("gsi3pk", s(it.runs_of_workflow_pk(run.project, run.workflow)))
        for name, value in (("started_at", run.started_at), ("ended_at", run.ended_at)):
            upd.set_or_remove(name, None if value is None else s(it.ts(value)))
        upd.set_or_remove("error", None if run.error is None else s(run.error))
        upd.set_or_remove("pbp", {"BOOL": True} if run.paused_by_parent else None)
        # the state is still what the writer read (and the run is committed)
        cond = upd.condition(
            "attribute_exists(pk) AND attribute_not_exists({lock}) AND {st} = :expect",
            expect=s(expect.value),
        )
        return upd.request(self.table, key(it.run_pk(run.id), it.RUN_SK), cond)

    def add_counters(self, run_id: str, *, done: int = 0, failed: int = 0, running: int = 0) -> Run:
        """ADD on the counters item (atomic; in no index), then read the run item."""
        upd = (
            Update().add("n_done", n(done)).add("n_failed", n(failed)).add("n_running", n(running))
        )
        try:
            out = self.client.update_item(
                **upd.request(
                    self.table, key(it.run_pk(run_id), it.COUNTERS_SK), "attribute_exists(pk)"
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                raise NotFound(f"run {run_id!r} not found") from exc
            raise
        item = self._get(it.run_pk(run_id), it.RUN_SK)
        if item is None or "lock" in item:
            raise NotFound(f"run {run_id!r} not found")
        return it.to_run(item, out["Attributes"])

    def count_active_runs(self, project: str, workflow: str) -> int:
        return len(self._active_run_ids(project, workflow))

    def _active_run_ids(self, project: str, workflow: str) -> set[str]:
        """The workflow's active runs by the state index (eventually consistent: a run that
        just started may be missing). Every active run of every workflow is read (there are
        few: max_active_runs bounds them), filtered to this one; the terminal runs
        (unbounded history) are never read."""
        found: set[str] = set()
        for state in (state for state in RunState if state.active):
            for item in self._index(
                "gsi2", f"RUNS#{state.value}", filters={"project": project, "workflow": workflow}
            ):
                found.add(it.run_id_of(item))
        return found

    def start_queued_run(self, plan: Plan, max_active: int | None) -> bool:
        """The run's start and its workflow's admission in one transaction. Advance
        invocations run concurrently, and the state index they count active runs on lags
        the writes: two could each count a free slot and start a run in it. So each start
        also rewrites the workflow's admission item (``ADMIT`` in its partition: the runs
        it admitted that are still active, and a version), conditional on the version read:
        of two starts that read the same admission, one applies and the other is refused
        (its run stays QUEUED for the next advance). The active runs are those the item
        lists whose run items (read strongly) are still active, with those the index shows
        (runs made active otherwise: a rerun of an ended run). A limit above
        ``ADMISSION_RUNS_MAX`` is counted on the index alone, as before (the item would
        outgrow DynamoDB's 400 KB)."""
        run = plan.run
        if max_active is None or max_active > ADMISSION_RUNS_MAX:
            return self.apply_plan(plan, RunState.QUEUED)
        pk = it.workflow_pk(run.project, run.workflow)
        held = self._get(pk, it.ADMISSION_SK)
        listed = sorted(held["runs"]["SS"]) if held is not None and "runs" in held else []
        active = {
            it.run_id_of(item)
            for item in self._batch_get([key(it.run_pk(r), it.RUN_SK) for r in listed])
            if "st" in item and RunState(item["st"]["S"]).active
        }
        active |= self._active_run_ids(run.project, run.workflow)
        active.discard(run.id)
        if len(active) >= max_active:
            return False
        upd = Update().set("runs", {"SS": sorted(active | {run.id})})
        if held is None:
            upd.set("v", n(1))
            cond = upd.condition("attribute_not_exists(pk)")
        else:
            version = it.get_n(held, "v")
            upd.set("v", n(version + 1))
            cond = upd.condition("{v} = :held", held=n(version))
        admission = {"Update": upd.request(self.table, key(pk, it.ADMISSION_SK), cond)}
        return self._apply_plan(plan, RunState.QUEUED, None, admission)

    def count_queued_runs(self, project: str, workflow: str) -> int:
        """By the state index, as ``count_active_runs`` (eventually consistent): the queued
        runs of every workflow are read, filtered to this one. A catch-up keeps its own
        within its workflow's ``max_active_runs``."""
        queued = f"RUNS#{RunState.QUEUED.value}"
        filters = {"project": project, "workflow": workflow}
        return sum(1 for _ in self._index("gsi2", queued, filters=filters))

    def queued_runs(self, limit: int, skip: Collection[tuple[str, str]] = ()) -> list[Run]:
        queued = f"RUNS#{RunState.QUEUED.value}"
        if not skip:
            return self._with_counters(self._take(self._index("gsi2", queued, limit=limit), limit))
        pairs = set(skip)
        found = (
            item
            for item in self._index("gsi2", queued, limit=max(limit, 100))
            if (item["project"]["S"], item["workflow"]["S"]) not in pairs
        )
        return self._with_counters(self._take(found, limit))

    def queued_runs_of(self, project: str, workflow: str, trigger: str) -> list[Run]:
        """By the state index, as ``count_queued_runs``: the queued runs of every workflow
        are read, filtered to this one's made by ``trigger``."""
        queued = f"RUNS#{RunState.QUEUED.value}"
        filters = {"project": project, "workflow": workflow, "trigger": trigger}
        return self._with_counters(list(self._index("gsi2", queued, filters=filters)))

    def runs_in_states(self, states: Sequence[RunState]) -> Iterator[Run]:
        for state in states:
            page: list[Item] = []
            for item in self._index("gsi2", f"RUNS#{state.value}"):
                page.append(item)
                if len(page) == BATCH_GET_MAX:
                    yield from self._with_counters(page)
                    page = []
            if page:
                yield from self._with_counters(page)

    # ------------------------------------------------------------ tasks
    def get_task(self, run_id: str, task_id: str) -> TaskInstance:
        item = self._get(it.run_pk(run_id), it.task_sk(task_id))
        if item is None:
            raise NotFound(f"task {task_id!r} not found in run {run_id!r}")
        return it.to_task(run_id, item)

    def get_tasks(self, run_id: str, task_ids: Sequence[str] | None = None) -> list[TaskInstance]:
        pk = it.run_pk(run_id)
        if task_ids is None:
            # one Query from the run item (R, RC) through the tasks (T#...): a run not (yet)
            # committed has no tasks to show
            items = list(
                self._query(
                    KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                    ExpressionAttributeValues={
                        ":pk": s(pk),
                        ":lo": s(it.RUN_SK),
                        ":hi": s(it.TASK_PREFIX + it.HIGH),
                    },
                    ConsistentRead=True,
                )
            )
            run = next((i for i in items if i["sk"]["S"] == it.RUN_SK), None)
            if run is None or "lock" in run:
                return []
            items = [i for i in items if i["sk"]["S"].startswith(it.TASK_PREFIX)]
        else:
            items = self._batch_get([key(pk, it.task_sk(t)) for t in dict.fromkeys(task_ids)])
        return [it.to_task(run_id, i) for i in items]

    def states_present(self, run_id: str, states: Collection[TaskState]) -> set[TaskState]:
        # the run's task items, their state alone sent back, and only those in ``states``
        # (the Query still reads, and is billed for, every task item of the run: once a run)
        if not states:
            return set()
        names = {f":st{i}": s(state.value) for i, state in enumerate(states)}
        found: set[TaskState] = set()
        for item in self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            FilterExpression=f"st IN ({', '.join(names)})",
            ProjectionExpression="st",
            ExpressionAttributeValues={
                ":pk": s(it.run_pk(run_id)), ":prefix": s(it.TASK_PREFIX), **names,
            },
            ConsistentRead=True,
        ):  # fmt: skip
            found.add(TaskState(item["st"]["S"]))
            if len(found) == len(states):
                break
        return found

    def _task_write(
        self,
        task: TaskInstance,
        expect: TaskState,
        expect_attempt: int,
        history: Item | None = None,
        tag: tuple[str, str] | None = None,
        count: CountAlong | None = None,
    ) -> Item:
        """The Update of one conditional task transition (see ``put_task``); ``history``:
        the ended attempt's record (``it.history_entry``), set on the task item with it.
        ``tag``: (attribute, token) of a reservation's write (``apply_each``): the write
        sets it, and applies only if the reservation has not fenced it off. ``count``: a
        parent's end counted in the same write (``_count_along``)."""
        # A task entering the queue takes the next FIFO position (one already QUEUED that is
        # written again goes to the back: the service never does that).
        qseq = self._seq.next() if task.state is TaskState.QUEUED else None
        # An attempt that ends carrying the propagation intent keeps the gsi1 entry it had
        # while it ran (a RUNNING partition, where the intents are found): one index write
        # instead of a delete and a put. The condition below makes sure it is that entry.
        keep = task.propagating and expect is TaskState.RUNNING and task.state.terminal
        upd = it.task_fields(Update(), task, qseq, keep_index=keep)
        if qseq is None:
            upd.remove("qseq")
        if history is not None:
            # the attempt it ends (``TaskWrite.ended_attempt``): the one it ran, or one never
            # started
            ended = expect_attempt if expect is TaskState.RUNNING else task.attempt
            upd.set(it.history_attribute(ended), history)
        # The (state, attempt) condition is the exactly-once guard: of the writers racing to
        # claim or finish one attempt, exactly one wins. The upstream counts are not written
        # (record_upstream owns them), so a stale copy cannot erase a count.
        cond = upd.condition(
            "attribute_exists(pk) AND {st} = :expect AND {att} = :attempt",
            expect=s(expect.value),
            attempt=n(expect_attempt),
        )
        if tag is not None:
            # a recovery that found this write missing added the token to the fence: too late
            upd.set(tag[0], s(tag[1]))
            cond += upd.condition(
                f" AND (attribute_not_exists({{{FENCE}}}) OR NOT contains({{{FENCE}}}, :tok))",
                tok=s(tag[1]),
            )
        if count is not None:
            cond += self._count_along(upd, count)
        return upd.request(self.table, key(it.run_pk(task.run_id), it.task_sk(task.task_id)), cond)

    @staticmethod
    def _count_along(upd: Update, count: CountAlong) -> str:
        """Add ``count`` (a parent's end) to a task write, as ``record_upstream`` counts it:
        ADD the outcome's count and the parent's digest to ``ups``. The condition it returns
        (to AND with the write's) holds only while the child has not counted the parent and
        still has the counts and the upstream generation the count was decided from (a rerun
        resets the counts and moves ``ugen``: a decision made before it must not apply after
        it, even where the counts it set back are equal to those read). The child's set needs
        no size check: the service counts this way only in a child of at most
        ``MERGE_MAX_PARENTS`` parents (a set far below ``UPS_MAX``)."""
        digest = it.parent_digest(count.parent)
        upd.add(_upstream_column(count.outcome), n(1)).add("ups", {"BS": [digest]})
        gen = count.generation
        return upd.condition(
            " AND NOT contains({ups}, :c_digest) AND {up_ok} = :c_ok AND {up_failed} = :c_failed"
            " AND {up_skipped} = :c_skipped AND "
            + ("attribute_not_exists({ugen})" if gen == 0 else "{ugen} = :c_gen"),
            c_digest={"B": digest},
            c_ok=n(count.seen.succeeded),
            c_failed=n(count.seen.failed),
            c_skipped=n(count.seen.skipped),
            **({} if gen == 0 else {"c_gen": n(gen)}),
        )

    def _updated(self, request: Item) -> bool:
        """UpdateItem ``request``; False if its condition failed."""
        try:
            self.client.update_item(**request)
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def apply(self, decision: Decision) -> bool:
        """One TransactWriteItems: the task transitions (each conditional on its expected
        state and attempt), the run's state (conditional on its expected state) and the
        counter deltas (ADD), all or nothing. A decision of one write is one UpdateItem."""
        return self._apply(decision, {})

    history_on_tasks = True

    def apply_end(self, decision: Decision, history: Sequence[Attempt]) -> bool:
        """``apply``, each ended attempt recorded on its task item in the write of its
        transition (``it.history_entry``: no attempt item, no write of its own). An end that
        cannot be (a timed-out one, whose attempt item the lifecycle function watches; one
        over the size or number limits; one with no transition of its own here) is written as
        an attempt item first, as ``finish_attempt`` does; but the end of an attempt that
        never started (``TaskWrite.starts_and_ends``) exists only if its write applies, so its
        attempt item, when it cannot go on the task item, is written in the same transaction."""
        entries, alongside = self._history_entries([decision], history)
        return self._apply(decision, entries, alongside)

    def _history_entries(
        self, decisions: Sequence[Decision], history: Sequence[Attempt]
    ) -> tuple[dict[tuple[str, int], Item], list[Attempt]]:
        """The ends of ``history`` that go on their task items in ``decisions``' writes, and
        those of never-started attempts that do not fit there (their attempt items go in the
        writes' transaction); the others are written as attempt items here."""
        entries: dict[tuple[str, int], Item] = {}
        alongside: list[Attempt] = []
        ending: dict[tuple[str, str, int], bool] = {}  # -> whether it never started
        for d in decisions:
            for w in d.tasks:
                if (number := w.ended_attempt) is not None:
                    ending[(d.run_id, w.task.task_id, number)] = w.starts_and_ends
        for attempt in history:
            entry = None
            place = (attempt.run_id, attempt.task_id, attempt.attempt)
            if attempt.state != AttemptStatus.TIMED_OUT.value and place in ending:
                entry = it.history_entry(attempt)
            if entry is not None:
                entries[(attempt.task_id, attempt.attempt)] = entry
            elif ending.get(place):
                alongside.append(attempt)
            else:
                self.finish_attempt(attempt)
        return entries, alongside

    # ------------------------------------------------------------ claims and ends, each alone
    applies_each = True

    def apply_each(
        self, decisions: Sequence[Decision], history: Sequence[Attempt] = ()
    ) -> list[bool]:
        """The task writes of a batch of one run's claims or ends, without a transaction (a
        transaction bills each item twice): (a) one write to the run's counters item opens a
        *reservation* ``r_<token>`` that lists the task writes to come (and counts it in
        ``nres``), and adds their running-counter increases up front; (b) each task write
        alone, under the condition it has in a transaction, setting a tag (``k<attempt>`` on
        a claim, ``z<attempt>`` on an end) to the token; (c) the settlement, one write to
        the counters item while the reservation exists: it adds the other deltas of the
        writes that applied, takes back the increases of those that did not, and removes
        the reservation. A writer that dies in between leaves the reservation open; once a
        lease old, whoever reads the run (``get_run``: the reconciler's pass reads every
        active run) finishes it (``_finish_reservation``). Plans refuse to commit while a
        run has one open (``nres`` > 0). docs/aws-dynamodb.md, "Claims and ends without a
        transaction"."""
        if (
            len(decisions) < 2
            or not all(self._alone(d, decisions[0].run_id) for d in decisions)
            or any(w.starts_and_ends for d in decisions for w in d.tasks)
        ):  # a never-started end is recorded in its write's transaction (``apply_end``)
            return super().apply_each(decisions, history)
        entries, _ = self._history_entries(decisions, history)
        run_id = decisions[0].run_id
        token = uuid.uuid4().hex[:TOKEN_LENGTH]
        listed = [_Reserved.of(d) for d in decisions]
        if not self._reserve(run_id, token, listed):
            return [False] * len(decisions)  # each is applied alone by the caller
        applied = []
        for d, w in zip(decisions, listed, strict=True):
            (write,) = d.tasks
            ended = write.expect is TaskState.RUNNING
            entry = entries.get((write.task.task_id, write.expect_attempt)) if ended else None
            request = self._task_write(
                write.task,
                write.expect,
                write.expect_attempt,
                entry,
                tag=(w.tag, token),
                count=write.count,
            )
            applied.append(self._tagged(request, w.tag, token))
        self._settle(run_id, token, listed, applied)
        return applied

    def _tagged(self, request: Item, tag: str, token: str) -> bool:
        """UpdateItem ``request`` (one of ``apply_each``'s writes, which sets ``tag`` to
        ``token``); False if its condition failed. A condition that failed on an item whose
        ``tag`` already holds ``token`` was an SDK retry of this very write, which had
        applied (its response was lost): applied, as ``_fence`` reads it. Taken as refused,
        the claim it made would go unstarted and its running slot be given back."""
        try:
            self.client.update_item(**request, ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as exc:
            old = _item_that_failed_the_condition(exc)
            return it.get_s(old, tag) == token
        return True

    def _reserve(self, run_id: str, token: str, listed: Sequence[_Reserved]) -> bool:
        """Open the reservation on the run's counters item, with the running-counter
        increases of its writes (a claim's slot is taken before the claim is written, so no
        other claimer can count it free). False: the run has no counters item, or this write
        was applied already (an SDK retry of a request that had applied: its ADDs are not
        applied twice, and the reservation, with none of its writes made, is finished after
        the lease like any other; the caller writes each task alone)."""
        name = f"{RESERVATION_PREFIX}{token}"
        body = {"at": int(self._clock()), "w": [w.listed() for w in listed]}
        upd = Update().set(name, s(json.dumps(body, separators=(",", ":")))).add("nres", n(1))
        up = sum(max(w.running, 0) for w in listed)
        if up:
            upd.add("n_running", n(up))
        # not while a plan waits for the open ones to close (its mark younger than plan_wait)
        cond = upd.condition(
            f"attribute_exists(pk) AND attribute_not_exists({{{name}}}) AND "
            f"(attribute_not_exists({{{PLAN_WAITING}}}) OR {{{PLAN_WAITING}}} < :stale)",
            stale=n(int(self._clock() - self.plan_wait.total_seconds())),
        )
        return self._update(upd, key(it.run_pk(run_id), it.COUNTERS_SK), cond)

    def _settle(
        self, run_id: str, token: str, listed: Sequence[_Reserved], applied: Sequence[bool]
    ) -> bool:
        """Close the reservation: the deltas of the writes that applied (but the increases
        added up front), the increases of those that did not taken back, in one write while
        the reservation exists (of its writer and a recovery, one settles). False: it was
        settled already."""
        done = sum(w.done for w, ok in zip(listed, applied, strict=True) if ok)
        failed = sum(w.failed for w, ok in zip(listed, applied, strict=True) if ok)
        running = sum(
            min(w.running, 0) if ok else -max(w.running, 0)
            for w, ok in zip(listed, applied, strict=True)
        )
        name = f"{RESERVATION_PREFIX}{token}"
        upd = Update().remove(name).add("nres", n(-1))
        for column, delta in (("n_done", done), ("n_failed", failed), ("n_running", running)):
            if delta:
                upd.add(column, n(delta))
        cond = upd.condition(f"attribute_exists({{{name}}})")
        return self._update(upd, key(it.run_pk(run_id), it.COUNTERS_SK), cond)

    def _finish_reservations(self, run_id: str, counters: Item | None) -> bool:
        """Finish the reservations of ``counters`` (the run's counters item as read) that
        are older than the lease: their writers died or hang. Each listed task write is
        *fenced*: the token is added to the task's fence on condition that its tag does not
        hold the token, which makes the write, should it still come, fail its condition; a
        fence refused means the write happened. Then it is settled as its writer would
        have. True if one was finished."""
        if not counters or not it.get_n(counters, "nres"):
            return False
        finished = False
        for name, value in counters.items():
            if not name.startswith(RESERVATION_PREFIX):
                continue
            body = json.loads(str(value["S"]))
            if int(body["at"]) + self.lease.total_seconds() >= self._clock():
                continue
            token = name.removeprefix(RESERVATION_PREFIX)
            listed = [_Reserved.from_listed(w) for w in body["w"]]
            applied = [self._fence(run_id, w, token) for w in listed]
            if self._settle(run_id, token, listed, applied):
                log.warning(
                    "run %s: reservation %s finished for its writer (%d of %d writes applied)",
                    run_id, token, sum(applied), len(applied),
                )  # fmt: skip
            finished = True
        return finished

    def _fence(self, run_id: str, write: _Reserved, token: str) -> bool:
        """Whether a reservation's task write applied; if it has not, it never will."""
        upd = Update().add(FENCE, {"SS": [token]})
        cond = upd.condition(
            f"attribute_exists(pk) AND (attribute_not_exists({{{write.tag}}}) "
            f"OR {{{write.tag}}} <> :tok)",
            tok=s(token),
        )
        try:
            self.client.update_item(
                **upd.request(self.table, key(it.run_pk(run_id), it.task_sk(write.task)), cond),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            old = _item_that_failed_the_condition(exc)
            return it.get_s(old, write.tag) == token  # no item: nothing was written
        return False

    @staticmethod
    def _alone(decision: Decision, run_id: str) -> bool:
        """Whether ``decision`` can be one of ``apply_each``'s writes: one task write of
        ``run_id`` with its counters, no run write, no pool."""
        return (
            decision.run_id == run_id
            and len(decision.tasks) == 1
            and decision.run is None
            and not decision.pools
        )

    def _apply(
        self,
        decision: Decision,
        history: dict[tuple[str, int], Item],
        alongside: Sequence[Attempt] = (),
    ) -> bool:
        """``decision``'s writes in one transaction, with ``history``'s entries on the task
        items whose ends they record and ``alongside``'s attempt items."""
        requests = [
            self._task_write(
                w.task,
                w.expect,
                w.expect_attempt,
                None
                if (number := w.ended_attempt) is None
                else history.get((w.task.task_id, number)),
                count=w.count,
            )
            for w in decision.tasks
        ]
        requests += [self._finish_request(attempt) for attempt in alongside]
        if decision.run is not None:
            assert decision.run_expect is not None
            requests.append(self._run_write(decision.run, decision.run_expect))
        if decision.counters:
            upd = Update().add("n_done", n(decision.done)).add("n_failed", n(decision.failed))
            upd.add("n_running", n(decision.running))
            requests.append(
                upd.request(
                    self.table,
                    key(it.run_pk(decision.run_id), it.COUNTERS_SK),
                    "attribute_exists(pk)",
                )
            )
        # the pool counters, in the same transaction as the claims and ends that move them
        requests += self._pool_updates(decision.pools)
        if not requests:
            return True
        if len(requests) == 1:
            return self._updated(requests[0])
        reasons = self._transact([{"Update": r} for r in requests])
        if reasons is None:
            return True
        if "ConditionalCheckFailed" in reasons:
            return False
        raise RuntimeError(f"decision for run {decision.run_id}: transaction cancelled: {reasons}")

    def _pool_updates(self, deltas: Sequence[PoolDelta]) -> list[Item]:
        """One conditional counter update per pool (an item appears once per transaction):
        ADD the deltas to ``used``; with a limit, only if ``used + delta <= limit`` (written
        ``used <= limit - delta``: conditions have no arithmetic), and only if ``slots`` is
        still ``limit`` (the size the claim was decided on: a resize written meanwhile to the
        same item fails the claim, which the next pass decides again on the new size, so a
        shrunk pool is never over-filled). A release has no
        condition: no task can hold slots of a pool that is gone (a pool is deleted only
        when ``used`` is 0), and a task's end must never wait on its pool. A release of a
        task that enters its retry wait (``PoolDelta.retries``) also ADDs to ``rgen``, which
        ``delete_pool``'s delete is conditional on, and sets when (``RETRY_ENTERED``): no
        write of its own."""
        by_pool: dict[str, tuple[int, int | None, int]] = {}
        for d in deltas:
            total, limit, retries = by_pool.get(d.key, (0, None, 0))
            if d.limit is not None:
                limit = d.limit if limit is None else min(limit, d.limit)
            by_pool[d.key] = (total + d.slots, limit, retries + d.retries)
        out = []
        for pool, (total, limit, retries) in by_pool.items():
            upd = Update().add("used", n(total))
            if retries:
                upd.add(RETRY_GEN, n(retries)).set(RETRY_ENTERED, n(int(self._clock())))
            cond = None
            if limit is not None:
                cond = upd.condition(
                    "attribute_exists(pk) AND {slots} = :slots AND {used} <= :most",
                    slots=n(limit),
                    most=n(limit - total),
                )
                upd.names["#slots"] = "slots"
            out.append(upd.request(self.table, it.pool_item_key(pool), cond))
        return out

    # ------------------------------------------------------------ pools
    def set_pool(self, scope: str, name: str, slots: int) -> Pool:
        key_ = f"{scope}/{name}"
        upd = Update().set("slots", n(slots)).set_if_absent("used", n(0))
        upd.set("gsi2pk", s("POOLS")).set("gsi2sk", s(key_))
        upd.set("scope", s(scope)).set("name", s(name))
        self._update(upd, it.pool_item_key(key_))
        pool = self.get_pool(key_)
        assert pool is not None
        return pool

    @staticmethod
    def _to_pool(item: Item) -> Pool | None:
        if "slots" not in item:  # not a pool (a release that outlived it: see _pool_updates)
            return None
        return Pool(
            str(item["scope"]["S"]),
            str(item["name"]["S"]),
            it.get_n(item, "slots"),
            it.get_n(item, "used"),
        )

    def _pool_item(self, key_: str) -> Item | None:
        item: Item | None = self.client.get_item(
            TableName=self.table, Key=it.pool_item_key(key_), ConsistentRead=True
        ).get("Item")
        return item

    def get_pool(self, key_: str) -> Pool | None:
        item = self._pool_item(key_)
        return None if item is None else self._to_pool(item)

    def list_pools(self, project: str | None = None) -> list[Pool]:
        pools = [p for i in self._index("gsi2", "POOLS") if (p := self._to_pool(i)) is not None]
        if project is not None:
            pools = [p for p in pools if p.scope in ("", project)]
        return sorted(pools, key=lambda p: (p.scope, p.name))

    def delete_pool(self, key_: str, check: Callable[[], None] | None = None) -> bool:
        """The pool's item is read before ``check`` looks (an index read: the retries
        waiting out their delay) and deleted only if it is still as read: a task entering its
        retry wait meanwhile (in another function) ADDs to its ``rgen`` in the write that
        frees its slot (``_pool_updates``), and the delete is refused. So is a delete within
        ``RETRY_INDEX_SETTLE_SECONDS`` of a retry entering its wait (the item says when): the
        index ``check`` reads may not show that retry yet."""
        item = self._pool_item(key_)
        if item is None or self._to_pool(item) is None:
            raise NotFound(f"pool {split_key(key_)[1]!r} not found")
        if check is not None:
            check()
        entered = it.get_n(item, RETRY_ENTERED) if RETRY_ENTERED in item else None
        if entered is not None and (age := self._clock() - entered) < RETRY_INDEX_SETTLE_SECONDS:
            # a retry entered its wait so lately that ``check``'s index read (a GSI, eventually
            # consistent) may not show it yet, while ``rgen`` as read already counts it
            raise Conflict(
                f"pool {split_key(key_)[1]!r} may be in use: a task entered its retry wait "
                f"{max(int(age), 0)} s ago (its next attempt joins the pool's queue); try "
                f"again in {RETRY_INDEX_SETTLE_SECONDS} s"
            )
        if self.pool_waiting(key_, 1):
            return False
        # a claim between the check and the delete makes used > 0: the condition catches it;
        # a task that joins the queue meanwhile finds no pool and fails, saying so
        if RETRY_GEN in item:
            cond, values = "#used = :zero AND #rgen = :rgen", {":rgen": item[RETRY_GEN]}
        else:
            cond, values = "#used = :zero AND attribute_not_exists(#rgen)", {}
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=it.pool_item_key(key_),
                ConditionExpression=cond,
                ExpressionAttributeNames={"#used": "used", "#rgen": RETRY_GEN},
                ExpressionAttributeValues={":zero": n(0), **values},
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def pool_waiting(self, key_: str, limit: int) -> list[TaskInstance]:
        """The head of the pool's queue: one Query of its gsi1 partition (eventually
        consistent, as every index: the claim's conditions are what guard)."""
        items = self._take(self._index("gsi1", it.pool_queue_pk(key_), limit=limit), limit)
        return [it.to_task(it.run_id_of(i), i) for i in items]

    def pool_running(self, key_: str, limit: int) -> list[TaskInstance]:
        """Running tasks holding its slots (read from the RUNNING timer partitions: for the
        pool's view, not the hot path)."""
        return [t for t in self.running_tasks() if t.pool == key_][:limit]

    def pools_with_waiting(self, limit: int) -> list[str]:
        return [p.key for p in self.list_pools() if self.pool_waiting(p.key, 1)][:limit]

    def pending_propagations(self, limit: int) -> list[TaskInstance]:
        """Tasks whose end is not yet counted by all their children: the ones flagged in the
        RUNNING partitions of gsi1 (by the deadline their attempt had, those that never ran
        last), then any left in gsi2's PROP#n partitions by an earlier version."""
        found = self._timers("RUNNING", limit=limit, propagating=True)
        legacy: list[Item] = []
        for shard in range(it.TIMER_SHARDS):
            legacy += self._take(self._index("gsi2", f"{it.PROPAGATE_PREFIX}{shard}"), limit)
        legacy.sort(key=lambda i: str(i["gsi2sk"]["S"]))
        return [it.to_task(it.run_id_of(i), i) for i in (found + legacy)[:limit]]

    def record_upstream(
        self, run_id: str, child: str, parent: str, outcome: TaskState
    ) -> TaskInstance | None:
        """Count ``parent``'s end in ``child``, once.

        The child item keeps the set of parents it counted (``ups``, 8 bytes each). While that
        set has fewer than ``UPS_MAX`` members, one UpdateItem adds the parent to it and counts
        it, on condition it is not there yet: a duplicate counts nothing, and the child
        returned is exactly the one this count made (ALL_NEW). A child with more parents (a
        fan-in of thousands) does not grow its item or its responses further: a parent past
        the set is recorded as a marker item, created in one transaction with the count
        (condition: no marker yet, and the child's upstream generation unchanged), and the
        child is then read back - with this count in it, and possibly a concurrent one too,
        which the caller's conditional write of the child tolerates.
        """
        column = _upstream_column(outcome)
        digest = it.parent_digest(parent)
        item_key = key(it.run_pk(run_id), it.task_sk(child))
        while True:
            upd = Update().add(column, n(1)).add("ups", {"BS": [digest]})
            cond = upd.condition(
                "attribute_exists(pk) AND NOT contains({ups}, :digest) "
                "AND (attribute_not_exists({ups}) OR size({ups}) < :max)",
                digest={"B": digest},
                max=n(it.UPS_MAX),
            )
            try:
                out = self.client.update_item(
                    **upd.request(self.table, item_key, cond),
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                old = _item_that_failed_the_condition(exc)
            else:
                return it.to_task(run_id, out["Attributes"])
            if not old:
                raise NotFound(f"task {child!r} not found in run {run_id!r}")
            if digest in {bytes(d) for d in old.get("ups", {}).get("BS", [])}:
                return None  # counted before
            counted = self._count_past_the_set(run_id, child, parent, column, old)
            if counted is not None:
                return None if counted is False else self.get_task(run_id, child)

    counts_with_claims = True  # a claim or queue write may carry a count (_count_along)

    def children_to_count(
        self, run_id: str, parent: str, children: Sequence[str]
    ) -> dict[str, tuple[TaskInstance, int]]:
        """One strongly consistent BatchGetItem of ``children``: those that have not counted
        ``parent`` (not in their ``ups`` set; a child whose set is full is left out too: its
        later parents are counted as marker items), each with its ``ugen``."""
        if not children:
            return {}
        digest = it.parent_digest(parent)
        pk = it.run_pk(run_id)
        out: dict[str, tuple[TaskInstance, int]] = {}
        for item in self._batch_get([key(pk, it.task_sk(c)) for c in dict.fromkeys(children)]):
            ups = {bytes(d) for d in item.get("ups", {}).get("BS", [])}
            if digest in ups or len(ups) >= it.UPS_MAX:
                continue
            task = it.to_task(run_id, item)
            out[task.task_id] = (task, it.get_n(item, "ugen"))
        return out

    def record_upstream_group(
        self, run_id: str, child: str, parents: Sequence[tuple[str, TaskState]]
    ) -> TaskInstance | None:
        """Count several parents' ends in ``child`` in one UpdateItem: ADD each outcome's
        count and every parent's digest to ``ups``, on condition that none of them is in the
        set yet and that they all fit in it (the set stays at most ``UPS_MAX``). All or none:
        the child after the count (ALL_NEW), or None when the condition failed (one was
        counted before, the set is nearly full, the child is gone), and nothing was counted:
        the caller counts each alone (``record_upstream``). Saves a write per parent but one
        for a child whose parents end in the same batch of outcomes."""
        digests = [it.parent_digest(p) for p, _ in parents]
        if len(set(digests)) != len(digests) or len(digests) > it.UPS_MAX:
            return None
        counts: dict[str, int] = {}
        for _, outcome in parents:
            column = _upstream_column(outcome)
            counts[column] = counts.get(column, 0) + 1
        upd = Update()
        for column, count in sorted(counts.items()):
            upd.add(column, n(count))
        upd.add("ups", {"BS": digests})
        fresh = " AND ".join(f"NOT contains({{ups}}, :d{i})" for i in range(len(digests)))
        cond = upd.condition(
            "attribute_exists(pk) AND "
            + fresh
            + " AND (attribute_not_exists({ups}) OR size({ups}) <= :max)",
            max=n(it.UPS_MAX - len(digests)),
            **{f"d{i}": {"B": d} for i, d in enumerate(digests)},
        )
        try:
            out = self.client.update_item(
                **upd.request(self.table, key(it.run_pk(run_id), it.task_sk(child)), cond),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            return None
        return it.to_task(run_id, out["Attributes"])

    def _count_past_the_set(
        self, run_id: str, child: str, parent: str, column: str, old: Item
    ) -> bool | None:
        """The marker-item way of counting (the child's set is full). True: counted; False:
        a duplicate; None: the child's upstream was rewritten meanwhile (start again)."""
        pk = it.run_pk(run_id)
        gen = it.get_n(old, "ugen")
        marker: Item = {
            **key(pk, it.edge_sk(child, gen, parent)),
            "outcome": s(column),
        }
        upd = Update().add(column, n(1))
        cond = upd.condition(
            "attribute_exists(pk) AND "
            + ("attribute_not_exists({ugen})" if gen == 0 else "{ugen} = :gen"),
            **({} if gen == 0 else {"gen": n(gen)}),
        )
        reasons = self._transact(
            [
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": marker,
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {"Update": upd.request(self.table, key(pk, it.task_sk(child)), cond)},
            ]
        )
        if reasons is None:
            return True
        if reasons[0] == "ConditionalCheckFailed":
            return False
        return None

    # ------------------------------------------------------------ plans
    def apply_plan(
        self, plan: Plan, expect: RunState, *, if_ended_at: datetime | None = None
    ) -> bool:
        """A plan of up to 98 tasks is one TransactWriteItems: the run (condition: state is
        ``expect``, plan generation ``plan.run.plan_gen``, which it moves on), its counters
        and the tasks, all or nothing.

        With ``if_ended_at`` the run's write is also conditional on ``ended_at`` being that
        instant still (a backfill's decided rerun: applied to the end it saw, once).

        A larger plan (a stop or rerun of a 10,000-task run) cannot be one transaction, so it
        is journaled: (1) the plan is written, compressed, to plan items in the run's
        partition; (2) one transaction commits it: the run's new state with a reference to the
        plan (condition: state is ``expect``, no other plan is pending, and the plan
        generation is still the one the plan was decided from) and the counters;
        (3) the task writes follow in transactions of 100, each task write conditional on
        not carrying this plan's id yet (so a chunk applies once, however often it is
        replayed) and, for a stop or a plan of a run that goes on, on the task as the plan
        read it (``_reconsider`` handles one that moved meanwhile, its counter correction
        in the same transaction as the write that marks it handled; a running attempt it
        stops that the plan did not list is added to ``plan.kill``), the writes that leave
        a task QUEUED last, so nothing is dispatched before every reset is in place; (4) the plan reference and items are removed, and the plan
        generation moves on again (a plan decided from the half-written tasks is refused,
        not only one decided before (2)). A crash after
        (2) is completed by the next ``get_run`` after the lease, or by
        ``complete_pending_plans`` (the reconciler); before (2) it changed nothing visible.
        """
        return self._apply_plan(plan, expect, if_ended_at, None)

    def _apply_plan(
        self, plan: Plan, expect: RunState, if_ended_at: datetime | None, extra: Item | None
    ) -> bool:
        """``apply_plan``, with ``extra`` (a conditional write: ``start_queued_run``'s
        admission) last in the transaction that commits the plan; refused if it is."""
        pending = self._get(it.run_pk(plan.run.id), it.RUN_SK)
        if pending is not None and "plan" in pending:
            self._complete_plan(plan.run.id, str(pending["plan"]["S"]))
        writes = self._plan_writes(plan, plan_id=None, held=self._held(plan))
        run_write, counters_write = self._plan_run_writes(plan, expect, None, if_ended_at)
        releases = [{"Update": u} for u in self._plan_releases(plan)]
        extras = [] if extra is None else [extra]
        unchanged = self._unchanged_checks(plan, writes)
        if len(writes) + 2 + len(releases) + len(unchanged) + len(extras) <= TRANSACTION_MAX:
            items = [run_write, counters_write, *writes, *releases, *unchanged, *extras]
            reasons = self._commit_plan(plan.run.id, items)
            if reasons is None:
                return True
            if self._plan_refused(reasons, extras) or self._unchanged_refused(plan, items, reasons):
                return False
            raise RuntimeError(f"apply_plan {plan.run.id}: transaction cancelled: {reasons}")
        return self._apply_journaled(plan, expect, if_ended_at, extras)

    def _unchanged_condition(self, upd: Update, read: TaskInstance) -> str:
        """The condition that a task is still as ``read`` (``Plan.if_unchanged``): its
        state, attempt, end and upstream counts (a parent's end counted in it meanwhile,
        which a plan that decides it again from its parents as read would erase)."""
        cond = upd.condition(
            "attribute_exists(pk) AND {st} = :read_st AND {att} = :read_att "
            "AND {up_ok} = :read_ok AND {up_failed} = :read_failed "
            "AND {up_skipped} = :read_skipped",
            read_st=s(read.state.value),
            read_att=n(read.attempt),
            read_ok=n(read.upstream.succeeded),
            read_failed=n(read.upstream.failed),
            read_skipped=n(read.upstream.skipped),
        )
        if read.ended_at is None:
            return cond + upd.condition(" AND attribute_not_exists({ended_at})")
        return cond + upd.condition(" AND {ended_at} = :read_end", read_end=s(it.ts(read.ended_at)))

    def _unchanged_checks(
        self, plan: Plan, writes: list[Item], reads: Sequence[TaskInstance] | None = None
    ) -> list[Item]:
        """``Plan.if_unchanged`` (or ``reads`` of it) in a plan's one transaction: a task the
        plan writes carries the condition on its own write (one item of a transaction takes
        one operation); any other is a ConditionCheck, returned to go in the transaction."""
        pk = it.run_pk(plan.run.id)
        by_sk = {w["Update"]["Key"]["sk"]["S"]: w["Update"] for w in writes if "Update" in w}
        checks: list[Item] = []
        for read in plan.if_unchanged if reads is None else reads:
            sk = it.task_sk(read.task_id)
            upd = Update()
            cond = self._unchanged_condition(upd, read)
            write = by_sk.get(sk)
            if write is not None:  # AND-ed to the write's own condition
                write["ConditionExpression"] = f"({write['ConditionExpression']}) AND ({cond})"
                write["ExpressionAttributeNames"] = {
                    **write["ExpressionAttributeNames"],
                    **upd.names,
                }
                write["ExpressionAttributeValues"] = {
                    **write.get("ExpressionAttributeValues", {}),
                    **upd.values,
                }
                continue
            checks.append(self._condition_check(pk, sk, upd, cond))
        return checks

    def _condition_check(self, pk: str, sk: str, upd: Update, cond: str) -> Item:
        check: Item = {
            "TableName": self.table,
            "Key": key(pk, sk),
            "ConditionExpression": cond,
            "ExpressionAttributeNames": upd.names,
        }
        if upd.values:
            check["ExpressionAttributeValues"] = upd.values
        return {"ConditionCheck": check}

    @staticmethod
    def _unchanged_refused(plan: Plan, items: Sequence[Item], reasons: Sequence[str]) -> bool:
        """Whether a plan's transaction was refused by a task of ``Plan.if_unchanged`` that
        moved since it was read (its write's or its check's condition)."""
        sks = {it.task_sk(read.task_id) for read in plan.if_unchanged}
        for item, reason in zip(items, reasons, strict=False):
            op = item.get("Update") or item.get("ConditionCheck") or {}
            if (
                reason == "ConditionalCheckFailed"
                and op.get("Key", {}).get("sk", {}).get("S") in sks
            ):
                return True
        return False

    def _commit_plan(self, run_id: str, items: Sequence[Item]) -> list[str] | None:
        """The transaction that commits a plan (its run write first, its counters second);
        its cancellation reasons, or None when it applied. Refused only because the run has
        open reservations (``apply_each``: the plan sets the counters whole, which a later
        settlement would then correct wrongly), it marks the counters item (``pw``: no new
        reservation opens while the mark is fresh), waits for the open ones to close, and
        tries again, for up to ``plan_wait``: a busy run's stop is not refused for ever by
        the batches that keep ending its tasks. Reservations past their lease are finished
        while it waits, so a writer that died does not hold the plan off beyond its lease."""
        reasons = self._transact(items)
        deadline = None
        while (
            reasons is not None
            and reasons[0] != "ConditionalCheckFailed"
            and reasons[1] == "ConditionalCheckFailed"
        ):
            if deadline is None:
                marked = self._update(
                    Update().set(PLAN_WAITING, n(int(self._clock()))),
                    key(it.run_pk(run_id), it.COUNTERS_SK),
                    "attribute_exists(pk)",
                )
                if not marked:
                    return reasons
                deadline = time.monotonic() + self.plan_wait.total_seconds()
            elif time.monotonic() > deadline:
                return reasons
            counters = self._get(it.run_pk(run_id), it.COUNTERS_SK)
            finished = self._finish_reservations(run_id, counters)
            if not finished and counters is not None and it.get_n(counters, "nres"):
                time.sleep(0.02)
                continue
            reasons = self._transact(items)
        return reasons

    @staticmethod
    def _plan_refused(reasons: Sequence[str], extras: Sequence[Item] = ()) -> bool:
        """Whether a plan's commit was refused by its run (another state, another plan), its
        counters (a reservation still open after ``_commit_plan``'s wait) or one of the
        ``extras`` that close its transaction (an admission another start changed)."""
        tail = reasons[len(reasons) - len(extras) :] if extras else []
        return "ConditionalCheckFailed" in [*reasons[:2], *tail]

    def _plan_run_writes(
        self,
        plan: Plan,
        expect: RunState,
        plan_id: str | None,
        if_ended_at: datetime | None,
        deltas: tuple[int, int, int] | None = None,
    ) -> tuple[Item, Item]:
        """The run's write and its counters' of a plan's commit. ``deltas``: the counters
        get them ADDed (a journaled plan whose tasks may move while it is written), else
        ``Plan.deltas`` when set, else they are set whole from ``plan.run``."""
        run = plan.run
        deltas = plan.deltas if deltas is None else deltas
        upd = Update().set("st", s(run.state.value)).set("gsi2pk", s(f"RUNS#{run.state.value}"))
        # the run's project-scoped gsi3 key: a run a version before 2026-12-06 filed under
        # its workflow alone moves with its state (run_index_migration relies on it)
        upd.set("gsi3pk", s(it.runs_of_workflow_pk(run.project, run.workflow)))
        for name, value in (("started_at", run.started_at), ("ended_at", run.ended_at)):
            upd.set_or_remove(name, None if value is None else s(it.ts(value)))
        upd.set_or_remove("error", None if run.error is None else s(run.error))
        upd.set_or_remove("pbp", {"BOOL": True} if run.paused_by_parent else None)
        if plan.new_params:  # with the state that resets the tasks that read them
            upd.set("params", it.js(run.params))
        if plan_id is not None:
            upd.set("plan", s(plan_id)).set("plan_at", n(int(self._clock())))
        # the run's plan generation (``Run.plan_gen``): still the one the plan was decided
        # from, so of two plans decided from one read only one commits (a journaled plan's
        # commit checks only some of the tasks it was decided from: the other's writes to
        # the rest would go unseen); its completion counts once more (``_complete_plan``)
        upd.set(PLAN_GEN, n(run.plan_gen + 1))
        cond = upd.condition(
            "attribute_exists(pk) AND attribute_not_exists({lock}) "
            "AND attribute_not_exists({plan}) AND {st} = :expect",
            expect=s(expect.value),
        )
        if run.plan_gen:
            cond += upd.condition(" AND {pgen} = :read_gen", read_gen=n(run.plan_gen))
        else:  # absent on a run no plan has written yet
            cond += upd.condition(" AND attribute_not_exists({pgen})")
        if if_ended_at is not None:  # {ended_at} is named: the update sets or removes it
            cond += upd.condition(" AND {ended_at} = :seen_end", seen_end=s(it.ts(if_ended_at)))
        counters = Update()
        if deltas is not None:
            # a run that goes on (``Plan.deltas``): the plan ADDs what its own tasks change
            # (each written only while it is as read), so the counts of the other tasks'
            # ends, written meanwhile by other turns, stand; an open reservation adds its
            # own deltas when it settles, so the plan need not wait for it
            for column, delta in zip(("n_done", "n_failed", "n_running"), deltas, strict=True):
                counters.add(column, n(delta))
            counters_cond = "attribute_exists(pk)"
        else:
            counters.set("n_done", n(run.n_done)).set("n_failed", n(run.n_failed))
            counters.set("n_running", n(run.n_running))
            # the counters are set whole, from the tasks as read: not while a reservation
            # (apply_each) is open, whose settlement would then correct counters it never saw
            counters_cond = counters.condition(
                "attribute_exists(pk) AND (attribute_not_exists({nres}) OR {nres} = :zero)",
                zero=n(0),
            )
        counters.remove(PLAN_WAITING)
        pk = it.run_pk(run.id)
        return (
            {"Update": upd.request(self.table, key(pk, it.RUN_SK), cond)},
            {"Update": counters.request(self.table, key(pk, it.COUNTERS_SK), counters_cond)},
        )

    @staticmethod
    def _held(plan: Plan) -> dict[str, int]:
        """Task -> attempt of the running tasks whose pool slots the plan frees."""
        return {t.task_id: t.attempt for t in plan.pool_releases}

    def _plan_releases(self, plan: Plan) -> list[Item]:
        return self._pool_updates(
            [PoolDelta(t.pool, -t.pool_slots) for t in plan.pool_releases if t.pool is not None]
        )

    def _held_checks(self, plan: Plan, held: dict[str, int] | None = None) -> list[Item]:
        """ConditionChecks that the tasks whose slots a journaled plan frees (or those of
        ``held``) are still running the attempt it read (else their end has freed the slots
        already)."""
        pk = it.run_pk(plan.run.id)
        checks = []
        for task_id, attempt in (self._held(plan) if held is None else held).items():
            upd = Update()
            cond = upd.condition(
                "{st} = :running AND {att} = :attempt",
                running=s(TaskState.RUNNING.value),
                attempt=n(attempt),
            )
            checks.append(
                {
                    "ConditionCheck": {
                        "TableName": self.table,
                        "Key": key(pk, it.task_sk(task_id)),
                        "ConditionExpression": cond,
                        "ExpressionAttributeNames": upd.names,
                        "ExpressionAttributeValues": upd.values,
                    }
                }
            )
        return checks

    def _plan_writes(
        self, plan: Plan, plan_id: str | None, held: dict[str, int] | None = None
    ) -> list[Item]:
        """The task writes of a plan, those that leave a task QUEUED last. ``held``: task ->
        attempt whose write applies only while the task still runs that attempt (its pool
        slots are freed in the same transaction)."""
        return [w for _, w in self._keyed_plan_writes(plan, plan_id, held)]

    def _keyed_plan_writes(
        self,
        plan: Plan,
        plan_id: str | None,
        held: dict[str, int] | None = None,
        expected: Callable[[Update, str], str] | None = None,
        only: Collection[str] | None = None,
    ) -> list[tuple[str | None, Item]]:
        """``_plan_writes``, each with the task it writes (None: a rewrite of a child's
        counted parents alone). ``expected``: the condition (over the write's Update) that
        the task is as the plan read it, AND-ed to a journaled write's; ``only``: the tasks
        to write (of ``plan.tasks``), else all."""
        pk = it.run_pk(plan.run.id)
        writes: list[tuple[bool, tuple[str | None, Item]]] = []
        for task_id, task in plan.tasks.items():
            if only is not None and task_id not in only:
                continue
            qseq = self._seq.next() if task.state is TaskState.QUEUED else None
            upd = it.task_fields(Update(), task, qseq)
            if qseq is None:
                upd.remove("qseq")
            # only a plan changes it (a transition carries it as it was)
            upd.set_or_remove(it.RERUN_CHILD, {"BOOL": True} if task.rerun_child else None)
            parents = plan.edges.get(task_id)
            it.upstream_fields(upd, task, None if parents is None else list(parents))
            attempt = None if held is None else held.get(task_id)
            as_read = None if expected is None else expected(upd, task_id)
            write = self._plan_update(
                upd, pk, task_id, plan_id, running_attempt=attempt, as_read=as_read
            )
            writes.append((task.state is TaskState.QUEUED, (task_id, write)))
        for child, parents in plan.edges.items():
            if child not in plan.tasks and only is None:
                upd = Update()
                digests = sorted({it.parent_digest(p) for p in parents})
                upd.set_or_remove("ups", {"BS": digests} if digests else None).add("ugen", n(1))
                writes.append((False, (None, self._plan_update(upd, pk, child, plan_id))))
        writes.sort(key=lambda w: w[0])
        return [w for _, w in writes]

    def _plan_update(
        self,
        upd: Update,
        pk: str,
        task_id: str,
        plan_id: str | None,
        *,
        running_attempt: int | None = None,
        as_read: str | None = None,
    ) -> Item:
        """A plan's write of a task: one transaction's (``plan_id`` None), conditional on
        the task running ``running_attempt`` when given; or a journaled plan's, conditional
        on not carrying the plan yet and, with ``as_read`` (built over ``upd``), on the
        task being as the plan read it; a failed condition returns the item as it is."""
        if plan_id is None and running_attempt is not None:
            cond = upd.condition(
                "attribute_exists(pk) AND {st} = :was AND {att} = :was_attempt",
                was=s(TaskState.RUNNING.value),
                was_attempt=n(running_attempt),
            )
        elif plan_id is None:
            cond = "attribute_exists(pk)"
        else:
            upd.set("pl", s(plan_id))
            cond = upd.condition(
                "attribute_exists(pk) AND (attribute_not_exists({pl}) OR {pl} <> :plan)",
                plan=s(plan_id),
            )
            if as_read is not None:
                cond = f"{cond} AND ({as_read})"
            request = upd.request(self.table, key(pk, it.task_sk(task_id)), cond)
            return {"Update": {**request, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}
        return {"Update": upd.request(self.table, key(pk, it.task_sk(task_id)), cond)}

    def _apply_journaled(
        self,
        plan: Plan,
        expect: RunState,
        if_ended_at: datetime | None = None,
        extras: Sequence[Item] = (),
    ) -> bool:
        run_id = plan.run.id
        pk = it.run_pk(run_id)
        plan_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
        # each task write is conditional on the task as the plan read it (``_journal_mode``)
        mode = self._journal_mode(plan, expect)
        expected = self._expectations(plan, mode)
        # the slots the plan frees, in its commit (with checks that their tasks still run,
        # when they fit in the transaction; else released as read)
        releases = [{"Update": u} for u in self._plan_releases(plan)]
        # ``Plan.if_unchanged``: checked in the commit
        checked = self._checked_reads(plan, TRANSACTION_MAX - 2 - len(releases) - len(extras))
        held = self._held(plan)
        committed: list[str] = []
        if mode == JOURNAL_READ:
            # a checked task the plan ends or resets (not one it queues: nothing is queued
            # before every reset is in place) is written in the commit, not checked there:
            # from the commit on it cannot move by itself (the marked task's attempt ends
            # late), so the chunks never find it moved
            committed = [
                r.task_id
                for r in checked
                if r.task_id in plan.tasks and plan.tasks[r.task_id].state is not TaskState.QUEUED
            ]
            held = {t: a for t, a in held.items() if t not in {r.task_id for r in checked}}
        elif (
            mode == JOURNAL_STOP and 2 + len(releases) + len(held) + len(extras) <= TRANSACTION_MAX
        ):
            # the tasks whose slots the stop frees are stopped in the commit (conditional on
            # running the attempt read): none of them ends later and frees its slots again
            committed, held = list(held), {}
        unchanged = self._unchanged_checks(
            plan, [], [r for r in checked if r.task_id not in committed]
        )
        checks = self._held_checks(plan, held)
        room = TRANSACTION_MAX - 2 - len(releases) - len(committed) - len(unchanged) - len(extras)
        if len(checks) > room:
            checks = []
        body = it.pack(
            {
                "tasks": [it.task_to_json(t) for t in plan.tasks.values()],
                "edges": {c: sorted(p) for c, p in plan.edges.items()},
                "mode": mode,
                "expect": expected,
                "committed": committed,
            }
        )
        parts = it.split(body)
        head: Item = {
            **key(pk, f"{it.PLAN_PREFIX}{plan_id}"),
            "run": s(run_id),
            "chunks": n(len(parts)),
            "at": n(int(self._clock())),
            "gsi2pk": s("PLANS"),
            "gsi2sk": s(f"{plan_id}#{run_id}"),
        }
        self._batch_write(
            [
                {
                    "PutRequest": {
                        "Item": {**key(pk, f"{it.PLAN_PREFIX}{plan_id}#{i:05d}"), "body": {"B": p}}
                    }
                }
                for i, p in enumerate(parts)
            ]
            + [{"PutRequest": {"Item": head}}]
        )
        # a stop's counters are ADDed, not set whole: a task written later only as read
        # takes back its part if it moved meanwhile (``_reconsider``)
        deltas = None
        if mode == JOURNAL_STOP:
            deltas = _total(self._planned(plan.tasks[t], e) for t, e in expected.items())
        run_write, counters_write = self._plan_run_writes(
            plan, expect, plan_id, if_ended_at, deltas
        )
        writes = [
            w
            for _, w in self._keyed_plan_writes(
                plan, plan_id, expected=self._as_read(run_id, expected), only=committed
            )
        ]
        items = [run_write, counters_write, *releases, *checks, *writes, *unchanged, *extras]
        reasons = self._commit_plan(run_id, items)
        if reasons is not None:
            self._delete_plan(pk, plan_id, len(parts))
            if self._plan_refused(reasons, extras) or "ConditionalCheckFailed" in reasons:
                return False  # the run, its counters, a task it checks or writes moved
            raise RuntimeError(f"apply_plan {run_id}: transaction cancelled: {reasons}")
        plan.kill.extend(self._complete_plan(run_id, plan_id, recovered=False))
        return True

    @staticmethod
    def _journal_mode(plan: Plan, expect: RunState) -> str | None:
        """How a journaled plan's task writes are conditional on the tasks as it read them:
        ``JOURNAL_READ`` (a plan of a run that goes on: every task it writes is in
        ``Plan.if_unchanged``), ``JOURNAL_STOP`` (a stop of a run not ended: each task is as
        read if it still runs the attempt read, or is still unended and not running at the
        attempt read), or None: a plan of an ended (or queued) run, whose tasks do not move
        by themselves (a rerun, a mark of an ended run, a start): conditional on not
        carrying the plan alone."""
        if plan.deltas is not None and plan.tasks.keys() <= {t.task_id for t in plan.if_unchanged}:
            return JOURNAL_READ
        if (
            plan.deltas is None
            and not RunState(expect).terminal
            and RunState(expect) is not RunState.QUEUED
            and plan.tasks
            and not plan.edges
            and all(t.state is TaskState.STOPPED for t in plan.tasks.values())
        ):
            return JOURNAL_STOP
        return None

    @staticmethod
    def _expectations(plan: Plan, mode: str | None) -> dict[str, dict[str, Any]]:
        """Task -> what the plan read of it, as the journal keeps it: the task as read
        (``r``), or for a stop its attempt (``a``) and whether it ran (``run``)."""
        if mode == JOURNAL_READ:
            reads = {t.task_id: t for t in plan.if_unchanged}
            return _with_slots(plan, {t: {"r": it.task_to_json(reads[t])} for t in plan.tasks})
        if mode == JOURNAL_STOP:
            running = {t.task_id: t.attempt for t in plan.kill}
            out: dict[str, dict[str, Any]] = {
                t: {"a": running.get(t, task.attempt), "run": t in running}
                for t, task in plan.tasks.items()
            }
            return _with_slots(plan, out)
        return {}

    @staticmethod
    def _planned(new: TaskInstance, expected: dict[str, Any]) -> tuple[int, int, int]:
        """What the plan's write of a task adds to the run's counters (done, failed,
        running): its new state's counts less those of the state it was read in."""
        if "r" in expected:
            was = _counts_of(TaskState(expected["r"]["state"]))
        else:
            was = (0, 0, int(bool(expected["run"])))
        return _minus(_counts_of(new.state), was)

    def _as_read(
        self, run_id: str, expected: dict[str, dict[str, Any]]
    ) -> Callable[[Update, str], str] | None:
        """The condition (over a write's Update) that a task is as the plan read it."""
        if not expected:
            return None

        def condition(upd: Update, task_id: str) -> str:
            exp = expected.get(task_id)
            if exp is None:
                return "attribute_exists(pk)"
            if "r" in exp:
                return self._unchanged_condition(upd, it.task_from_json(run_id, exp["r"]))
            if exp["run"]:
                return upd.condition(
                    "{st} = :x_st AND {att} = :x_att",
                    x_st=s(TaskState.RUNNING.value),
                    x_att=n(int(exp["a"])),
                )
            return upd.condition(
                "{st} IN (:x_w, :x_q, :x_r) AND {att} = :x_att",
                x_w=s(TaskState.WAITING.value),
                x_q=s(TaskState.QUEUED.value),
                x_r=s(TaskState.UP_FOR_RETRY.value),
                x_att=n(int(exp["a"])),
            )

        return condition

    @staticmethod
    def _checked_reads(plan: Plan, room: int) -> list[TaskInstance]:
        """The tasks of ``Plan.if_unchanged`` a journaled plan's commit checks: all of them
        when they fit in it (a sub-workflow task's take of its child's end has one). A plan of
        a run that goes on (``Plan.deltas``: it lists every task it writes) that does not fit
        checks those not ended as read, which can move by themselves, and first the task it
        was decided on (``engine.set_end`` lists it last); an ended task moves only by
        another plan."""
        reads = list(plan.if_unchanged)
        if len(reads) <= room:
            return reads
        moving = [t for t in reads if not t.state.terminal or t is reads[-1]]
        return [moving[-1], *moving[:-1]][:room]

    def _load_journal(self, run_id: str, plan_id: str) -> _Journal | None:
        pk = it.run_pk(run_id)
        items = list(self._partition(pk, f"{it.PLAN_PREFIX}{plan_id}"))
        head = next((i for i in items if i["sk"]["S"] == f"{it.PLAN_PREFIX}{plan_id}"), None)
        if head is None:
            return None
        parts = sorted((i["sk"]["S"], bytes(i["body"]["B"])) for i in items if "body" in i)
        if len(parts) != it.get_n(head, "chunks"):
            return None
        data = it.unpack(b"".join(p for _, p in parts))
        tasks = {t["task_id"]: it.task_from_json(run_id, t) for t in data["tasks"]}
        edges = {c: dict.fromkeys(p, TaskState.SUCCEEDED) for c, p in data["edges"].items()}
        # the run part of the plan was applied at commit; only the tasks are replayed
        dummy = Run(run_id, "", "", 0, RunState.RUNNING, {}, datetime.now(UTC), datetime.now(UTC))
        # a journal written before the writes were conditional on the tasks as read has
        # no mode: replayed as it was written
        return _Journal(
            Plan(dummy, tasks, edges=edges),
            data.get("mode"),
            dict(data.get("expect", {})),
            frozenset(data.get("committed", [])),
        )

    def _complete_plan(
        self, run_id: str, plan_id: str, *, recovered: bool = True
    ) -> list[TaskInstance]:
        """Apply (again) the task writes of a committed plan, then retire it. Idempotent:
        each write is conditional on the task not carrying the plan id yet (and on the task
        as the plan read it: ``_reconsider`` decides what becomes of one that moved).
        ``recovered``: the plan's writer is gone (see ``plan_recovered``). Returns the
        running attempts it stopped that the plan did not list to kill (tasks that started
        a new attempt while it was written)."""
        pk = it.run_pk(run_id)
        journal = self._load_journal(run_id, plan_id)
        kills: list[TaskInstance] = []
        if journal is not None:
            writes = self._keyed_plan_writes(
                journal.plan, plan_id, expected=self._as_read(run_id, journal.expect)
            )
            entries = [_Entry(t, w) for t, w in writes if t is None or t not in journal.committed]
            intents: set[str] = set()
            for start in range(0, len(entries), TRANSACTION_MAX):
                part = entries[start : start + TRANSACTION_MAX]
                self._write_part(journal, plan_id, part, kills, intents)
            for parent in sorted(intents):
                self._set_intent(journal, plan_id, parent)
            if recovered and self.plan_recovered is not None:
                plan = journal.plan
                if kills:  # kill_stopped kills the attempts of the STOPPED tasks it is given
                    restopped = {k.task_id: k.with_(state=TaskState.STOPPED) for k in kills}
                    plan = replace(plan, tasks={**plan.tasks, **restopped})
                if not self.plan_recovered(plan):
                    return kills  # left pending: the next completion tries its follow-up again
        # the completion is a plan generation of its own: a plan decided from a read of
        # the run while this one was pending (its tasks half written) is refused
        upd = Update().remove("plan").remove("plan_at").add(PLAN_GEN, n(1))
        self._update(upd, key(pk, it.RUN_SK), upd.condition("{plan} = :p", p=s(plan_id)))
        count = self._partition(pk, f"{it.PLAN_PREFIX}{plan_id}", ProjectionExpression="sk")
        self._batch_write([{"DeleteRequest": {"Key": key(pk, i["sk"]["S"])}} for i in count])
        return kills

    def _write_part(
        self,
        journal: _Journal,
        plan_id: str,
        entries: Sequence[_Entry],
        kills: list[TaskInstance],
        intents: set[str],
    ) -> None:
        """One chunk of a journaled plan's task writes, in transactions of up to 100 items:
        a write whose condition fails is reconsidered from the task as it is then (the
        cancellation returns it) and the rest written again, with the counter corrections
        of the reconsidered ones in the same transaction as their writes (so each is
        applied once, whoever completes the plan)."""
        pk = it.run_pk(journal.plan.run.id)
        pending = list(entries)
        while pending:
            size = min(len(pending), TRANSACTION_MAX)
            batch, extra = pending[:size], self._part_extras(pk, pending[:size])
            while size + len(extra) > TRANSACTION_MAX:
                size -= 1
                batch, extra = pending[:size], self._part_extras(pk, pending[:size])
            out = self._transact_returning([e.write for e in batch] + extra)
            if out is None:
                kills.extend(e.kill for e in batch if e.kill is not None)
                pending = pending[size:]
                continue
            reasons, olds = out
            if (
                any(
                    r not in ("None", "ConditionalCheckFailed", "TransactionConflict")
                    for r in reasons
                )
                or "ConditionalCheckFailed" in reasons[size:]
            ):
                raise RuntimeError(f"plan {plan_id}: chunk cancelled: {reasons}")
            again: list[_Entry] = []
            for entry, reason, old in zip(batch, reasons, olds, strict=False):
                if reason == "ConditionalCheckFailed":
                    again += self._reconsider(journal, plan_id, entry, old, kills, intents)
                else:
                    again.append(entry)
            pending = again + pending[size:]

    def _part_extras(self, pk: str, batch: Sequence[_Entry]) -> list[Item]:
        """The counters' correction and the pool releases of reconsidered writes."""
        out: list[Item] = []
        fix = _total(e.correction for e in batch)
        if fix != (0, 0, 0):
            upd = Update()
            for column, delta in zip(("n_done", "n_failed", "n_running"), fix, strict=True):
                if delta:
                    upd.add(column, n(delta))
            counters = upd.request(self.table, key(pk, it.COUNTERS_SK), "attribute_exists(pk)")
            out.append({"Update": counters})
        releases = [d for e in batch for d in e.pools]
        if releases:
            out += [{"Update": u} for u in self._pool_updates(releases)]
        return out

    def _reconsider(
        self,
        journal: _Journal,
        plan_id: str,
        entry: _Entry,
        old: Item,
        kills: list[TaskInstance],
        intents: set[str],
    ) -> list[_Entry]:
        """What becomes of a journaled write whose condition failed, from the task as it
        is (``old``): nothing, if the task carries the plan already (written before: its
        follow-ups are taken up again); else the task moved since the plan read it, and
        the plan's counts for it are taken back: a task that ended keeps its end (counted
        by its own turn); one a stop read unended and finds unended at another attempt or
        state is stopped again as it is now (killed if it runs, its slots freed); one a
        plan of a running run would have reset, and finds still unended, keeps what its
        other parents' ends made of it, and the parents the plan ended or marked get a
        propagation intent (the reconciler counts them in it and decides it again)."""
        run_id = journal.plan.run.id
        if not old:
            return []  # the task is gone (the run deleted)
        expected = journal.expect.get(entry.task) if entry.task is not None else None
        if it.get_s(old, "pl") == plan_id:
            intents.update(str(p) for p in old.get(PLAN_INTENTS, {}).get("SS", []))
            if (
                expected is not None
                and "a" in expected
                and it.get_s(old, "st") == TaskState.STOPPED.value
                and it.get_n(old, "att") != int(expected["a"])
            ):  # stopped again at a newer attempt by an earlier pass: its kill again
                kills.append(it.to_task(run_id, old))
            return []
        if entry.task is None or expected is None:
            return []  # a write conditional on the plan id alone: applied before
        cur = it.to_task(run_id, old)
        new = journal.plan.tasks[entry.task]
        taken_back = _minus((0, 0, 0), self._planned(new, expected))
        # a task whose slots the commit freed as read left that attempt by its own turn,
        # which freed them too: taken back, with the write that marks it handled
        restore = (
            (PoolDelta(str(expected["p"]), int(expected["s"])),)
            if expected.get("p") and int(expected.get("s", 0)) > 0
            else ()
        )
        upd = Update().set("pl", s(plan_id))
        item_key = key(it.run_pk(run_id), it.task_sk(entry.task))
        if journal.mode == JOURNAL_STOP and not cur.state.terminal:
            now = new.ended_at or datetime.now(UTC)
            again = cleared(stopped(cur, now, new.error))
            it.task_fields(upd, again, None).remove("qseq")
            cond = upd.condition(
                "attribute_exists(pk) AND (attribute_not_exists({pl}) OR {pl} <> :plan) "
                "AND {st} = :now_st AND {att} = :now_att",
                plan=s(plan_id),
                now_st=s(cur.state.value),
                now_att=n(cur.attempt),
            )
            running = cur.state is TaskState.RUNNING
            fix = _total([taken_back, _minus(_counts_of(again.state), _counts_of(cur.state))])
            holds = running and cur.pool is not None and cur.pool_slots > 0
            return [
                _Entry(
                    entry.task,
                    _returning_old(upd.request(self.table, item_key, cond)),
                    fix,
                    kill=cur if running else None,
                    pools=restore + ((PoolDelta(str(cur.pool), -cur.pool_slots),) if holds else ()),
                )
            ]
        parents: list[str] = []
        if journal.mode == JOURNAL_READ and not cur.state.terminal:
            parents = sorted(
                p
                for p in journal.plan.edges.get(entry.task, {})
                if p in journal.plan.tasks and journal.plan.tasks[p].state.terminal
            )
        if taken_back == (0, 0, 0) and not parents and not restore:
            return []  # nothing to take back or to follow up: left as it is
        if parents:
            upd.set(PLAN_INTENTS, {"SS": parents})
            intents.update(parents)
        cond = upd.condition(
            "attribute_exists(pk) AND (attribute_not_exists({pl}) OR {pl} <> :plan)",
            plan=s(plan_id),
        )
        return [
            _Entry(
                entry.task,
                _returning_old(upd.request(self.table, item_key, cond)),
                taken_back,
                pools=restore,
            )
        ]

    def _set_intent(self, journal: _Journal, plan_id: str, parent: str) -> None:
        """Give a task a plan ended or marked a propagation intent (as a task's own end
        carries one), if it stands as the plan wrote it: ``pending_propagations`` finds it,
        and the reconciler counts it in its children that the plan could not reset (a
        child counted before is decided again from its counts)."""
        new = journal.plan.tasks[parent].with_(propagating=True)
        gsi1pk, gsi1sk = it.intent_index(new)
        upd = Update().set(it.PROPAGATING, {"BOOL": True})
        upd.set("gsi1pk", s(gsi1pk)).set("gsi1sk", s(gsi1sk))
        cond = upd.condition(
            "{pl} = :plan AND {st} = :planned", plan=s(plan_id), planned=s(new.state.value)
        )
        self._update(upd, key(it.run_pk(journal.plan.run.id), it.task_sk(parent)), cond)

    def _delete_plan(self, pk: str, plan_id: str, chunks: int) -> None:
        sks = [f"{it.PLAN_PREFIX}{plan_id}"] + [
            f"{it.PLAN_PREFIX}{plan_id}#{i:05d}" for i in range(chunks)
        ]
        self._batch_write([{"DeleteRequest": {"Key": key(pk, sk)}} for sk in sks])

    def complete_pending_plans(self, limit: int = 100) -> int:
        """For the reconciler: finish every plan whose writer died after committing it (its
        lease ran out), and delete plan items no run refers to. Returns how many it handled."""
        handled = 0
        for head in self._take(self._index("gsi2", "PLANS"), limit):
            if not self._expired(head, "at"):
                continue
            run_id = str(head["run"]["S"])
            plan_id = str(head["sk"]["S"]).removeprefix(it.PLAN_PREFIX)
            run = self._get(it.run_pk(run_id), it.RUN_SK)
            if run is not None and it.get_s(run, "plan") == plan_id:
                self._complete_plan(run_id, plan_id)
            else:
                self._delete_plan(it.run_pk(run_id), plan_id, it.get_n(head, "chunks"))
            handled += 1
        return handled

    # ------------------------------------------------------------ global task queries
    def queued_tasks(self, limit: int) -> list[TaskInstance]:
        """The RUNNING runs (one index query), the counters of those with a limit (one
        BatchGetItem per 100), then the head of each free run's queue (one query each),
        merged by priority then FIFO position."""
        runs = list(self._index("gsi2", f"RUNS#{RunState.RUNNING.value}"))
        limited = [r for r in runs if "concurrency" in r]
        counters = {
            it.run_id_of(c): c
            for c in self._batch_get([key(r["pk"]["S"], it.COUNTERS_SK) for r in limited])
        }
        heads: list[Item] = []
        for r in runs:
            run_id = it.run_id_of(r)
            if "concurrency" in r and it.get_n(counters.get(run_id, {}), "n_running") >= it.get_n(
                r, "concurrency"
            ):
                continue  # no free slot
            heads += self._take(self._index("gsi1", f"Q#{run_id}", limit=limit), limit)
        heads.sort(key=lambda i: str(i["gsi1sk"]["S"]))
        return [it.to_task(it.run_id_of(i), i) for i in heads[:limit]]

    def run_queue(self, run_id: str, limit: int) -> list[TaskInstance]:
        """The head of the run's queue: one Query of its gsi1 partition."""
        items = self._take(self._index("gsi1", f"Q#{run_id}", limit=limit), limit)
        return [it.to_task(run_id, i) for i in items]

    def _timers(
        self,
        kind: str,
        *,
        upto: str | None = None,
        limit: int | None = None,
        propagating: bool = False,
    ) -> list[Item]:
        """The items of the ``kind`` timer partitions (4 shards, merged in key order). The
        RUNNING partitions also hold the tasks that carry a propagation intent: they are
        left out, or (``propagating``) they are the ones returned."""
        found: list[Item] = []
        for shard in range(it.TIMER_SHARDS):
            cond = "gsi1pk = :pk"
            values: Item = {":pk": s(f"{kind}#{shard}")}
            if upto is not None:
                cond += " AND gsi1sk <= :bound"
                values[":bound"] = s(upto)
            args: dict[str, Any] = {"IndexName": "gsi1", "KeyConditionExpression": cond}
            if kind == "RUNNING":
                args["ExpressionAttributeNames"] = {"#prop": it.PROPAGATING}
                if propagating:
                    args["FilterExpression"] = "attribute_exists(#prop)"
                else:
                    args["FilterExpression"] = "attribute_not_exists(#prop)"
            args["ExpressionAttributeValues"] = values
            items = self._query(limit=limit, **args)
            found += items if limit is None else self._take(items, limit)
        found.sort(key=lambda i: str(i["gsi1sk"]["S"]))
        return found if limit is None else found[:limit]

    def due_retries(self, now: datetime, limit: int) -> list[TaskInstance]:
        items = self._timers("RETRY", upto=f"{it.ts(now)}#{it.HIGH}", limit=limit)
        return [it.to_task(it.run_id_of(i), i) for i in items]

    def expired_tasks(self, now: datetime, limit: int) -> list[TaskInstance]:
        items = self._timers("RUNNING", upto=f"{it.ts(now)}#{it.HIGH}", limit=limit)
        return [it.to_task(it.run_id_of(i), i) for i in items]

    def running_tasks(self) -> list[TaskInstance]:
        return [it.to_task(it.run_id_of(i), i) for i in self._timers("RUNNING")]

    def next_wakeup(self) -> datetime | None:
        firsts = [
            str(i["gsi1sk"]["S"]).split("#", 1)[0]
            for kind in ("RETRY", "RUNNING")
            for i in self._timers(kind, limit=1)
        ]
        times = [t for t in firsts if t != it.NO_TIME]
        return it.dt(min(times)) if times else None

    # ------------------------------------------------------------ attempts
    def start_attempt(self, attempt: Attempt) -> None:
        upd = Update()
        upd.set_if_absent("run", s(attempt.run_id)).set_if_absent("task", s(attempt.task_id))
        upd.set_if_absent("attempt", n(attempt.attempt)).set_if_absent("st", s(attempt.state))
        upd.set_if_absent("started_at", s(it.ts(attempt.started_at)))
        upd.set_if_absent("outputs", it.js({}))
        upd.set_if_absent(TTL_ATTRIBUTE, self._expires(attempt.started_at))
        if attempt.log is not None:
            upd.set("log", s(attempt.log))
        self._update(
            upd, key(it.run_pk(attempt.run_id), it.attempt_sk(attempt.task_id, attempt.attempt))
        )

    def finish_attempt(self, attempt: Attempt) -> None:
        self._updated(self._finish_request(attempt))

    def finish_late_attempt(self, attempt: Attempt) -> None:
        """``finish_attempt``, and for an attempt that ``apply_end`` may have recorded on its
        task item (number 1..HISTORY_ON_TASK) only if that item does not hold it: one
        TransactWriteItems of the attempt item's write and a ConditionCheck of the task item
        (``attribute_not_exists(h<n>)``), so an attempt is recorded in one place whatever the
        order of its ends. Late ends are rare: the transaction's double price is paid only
        there."""
        if not 1 <= attempt.attempt <= it.HISTORY_ON_TASK:
            self.finish_attempt(attempt)
            return
        check = {
            "TableName": self.table,
            "Key": key(it.run_pk(attempt.run_id), it.task_sk(attempt.task_id)),
            "ConditionExpression": "attribute_not_exists(#h)",
            "ExpressionAttributeNames": {"#h": it.history_attribute(attempt.attempt)},
        }
        reasons = self._transact(
            [{"ConditionCheck": check}, {"Update": self._finish_request(attempt)}]
        )
        if reasons is not None and "ConditionalCheckFailed" not in reasons:
            raise RuntimeError(f"late end of {attempt.run_id}/{attempt.task_id}: {reasons}")

    def _finish_request(self, attempt: Attempt) -> Item:
        """The UpdateItem of ``finish_attempt``: the attempt item, if it has not ended."""
        upd = Update()
        upd.set("run", s(attempt.run_id)).set("task", s(attempt.task_id))
        upd.set("attempt", n(attempt.attempt)).set("st", s(attempt.state))
        upd.set_if_absent("started_at", s(it.ts(attempt.started_at)))
        ended = attempt.ended_at
        upd.set_or_remove("ended_at", None if ended is None else s(it.ts(ended)))
        upd.set_or_remove("exit_code", None if attempt.exit_code is None else n(attempt.exit_code))
        upd.set_or_remove("error", None if attempt.error is None else s(attempt.error))
        upd.set("outputs", it.js(attempt.outputs))
        upd.set(TTL_ATTRIBUTE, self._expires(ended or attempt.started_at))
        if attempt.log is not None:
            upd.set("log", s(attempt.log))
        # the first end wins: a timed-out attempt's later exit report changes nothing
        cond = upd.condition("attribute_not_exists(pk) OR {st} = :running", running=s("running"))
        return upd.request(
            self.table,
            key(it.run_pk(attempt.run_id), it.attempt_sk(attempt.task_id, attempt.attempt)),
            cond,
        )

    def list_attempts(self, run_id: str, task_id: str | None = None) -> list[Attempt]:
        """The attempt items and the attempts recorded on their task items (``apply_end``),
        in the attempt items' order (task, then number). An attempt recorded in both (a
        stale report of an attempt that another end had already recorded on its task) is
        the one on the task item: the end whose transition the task took."""
        pk = it.run_pk(run_id)
        prefix = it.ATTEMPT_PREFIX if task_id is None else f"{it.ATTEMPT_PREFIX}{task_id}#"
        found = {(a.task_id, a.attempt): a for a in map(it.to_attempt, self._partition(pk, prefix))}
        names = ", ".join(f"#h{i}" for i in range(1, it.HISTORY_ON_TASK + 1))
        projection: dict[str, Any] = {
            "ProjectionExpression": f"#task, {names}",
            "ExpressionAttributeNames": {
                "#task": "task",
                **{f"#h{i}": it.history_attribute(i) for i in range(1, it.HISTORY_ON_TASK + 1)},
            },
        }
        if task_id is None:
            tasks: Iterator[Item] | list[Item] = self._partition(pk, it.TASK_PREFIX, **projection)
        else:
            one = self.client.get_item(
                TableName=self.table,
                Key=key(pk, it.task_sk(task_id)),
                ConsistentRead=True,
                **projection,
            ).get("Item")
            tasks = [] if one is None else [one]
        for item in tasks:
            if "task" in item:
                for attempt in it.attempts_on_task(run_id, item):
                    found[(attempt.task_id, attempt.attempt)] = attempt
        return [found[k] for k in sorted(found, key=lambda k: f"{k[0]}#{k[1]:06d}")]
