"""Lifecycle events on AWS, published from the state table's DynamoDB stream.

The functions that decide turns (``advance``, ``api``, ``trigger``, the reconciler) publish
nothing themselves (their ``EventSink`` is :class:`StreamPublished`): a function that died
between its commit and ``PutEvents`` would lose the event, and every alert and subscriber
of it. Instead the lifecycle function reads the stream (NEW_AND_OLD_IMAGES) and derives each
event from the committed change that makes it, so whatever dies after a commit, the event
goes out once the stream delivers the change, at least once. A redelivered batch publishes
its events again: subscribers dedupe (the alert function by its alert key, which is built
from the run and task read at handling time, not from the event). What is derived, from the
item's old and new image (``derive``):

- run item ``R``: ``run.started`` when its state becomes ``running`` from anything but
  ``running`` or ``paused`` (a start, a rerun; a resume is not a start); ``run.<state>`` when
  it becomes ``succeeded``, ``failed`` or ``stopped`` from a state that had not ended, or
  from another end (a failed run a mark ends succeeded at once: ``Scheduler._apply``);
- task item ``T#``: ``task.failed`` / ``task.retrying`` when its state becomes ``failed`` /
  ``up_for_retry`` (an attempt's end does that, or a sub-workflow task taking a later failed
  end of its child run: a task is never marked failed); not when a pause takes back a
  retry's claim (``engine.was_held``: the pause's own hold, or the runner's ``held`` report
  at the retry's wake), which no failed attempt made: the local runtime, whose retries wait
  ``up_for_retry`` through a pause, emits nothing there either (its resume neither);
  ``task.timeout`` when a running attempt loses its deadline (``on_timeout: warn`` keeps
  it running once warned), or, a dependency task's, gets an error (its ``on_timeout:
  warn``: it keeps its deadline, its next check, and says it timed out in its error);
- attempt item ``A#``: ``task.timeout`` when an attempt is recorded ``timed_out`` and its
  task says ``on_timeout: warn_fail`` (the failure it causes follows as ``task.failed`` or
  ``task.retrying``);
- backfill item ``B``: ``backfill.started`` when it is created; ``paused``, ``resumed``,
  ``cancelled``, ``succeeded``, ``failed`` on those state changes.

Task events carry the run's fields: the run is read (strongly consistent) once per batch.
Events are published in the records' order; if a record cannot be handled (it does not
decode, its run cannot be read, ``PutEvents`` refuses), nothing from it on is published and
it and every later record are reported (``batchItemFailures``): Lambda retries from it, so a
record is never skipped and the records before it are not published again. Records that can
never be handled reach the function's failure destination after its retries (bisected).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws.dynamo_backfills import BACKFILL_SK
from stratoflow.adapters.aws.dynamodb import DynamoStore
from stratoflow.adapters.aws.events import MAX_BATCH, EventBridgeEvents
from stratoflow.adapters.aws.metrics import RUN_METRICS, Metrics
from stratoflow.adapters.aws.projector import StreamRecord
from stratoflow.backfills import backfill_event
from stratoflow.engine import AttemptStatus, Run, RunState, TaskState, was_held
from stratoflow.engine.backfill import BackfillState, backfill_from_document
from stratoflow.errors import NotFound
from stratoflow.model import OnTimeout, WorkflowSpec
from stratoflow.ports import EventSink

__all__ = [
    "STREAM_FILTERS",
    "Derived",
    "LifecyclePublisher",
    "PublishResult",
    "StreamPublished",
    "derive",
]

log = logging.getLogger("stratoflow.lifecycle")

TIMED_OUT: Final = AttemptStatus.TIMED_OUT.value  # an attempt item's state then
_ENDED_RUN: Final = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.STOPPED})
_BACKFILL_KINDS: Final[Mapping[tuple[str | None, str], str]] = {
    (None, BackfillState.RUNNING.value): "backfill.started",
    (BackfillState.RUNNING.value, BackfillState.PAUSED.value): "backfill.paused",
    (BackfillState.PAUSED.value, BackfillState.RUNNING.value): "backfill.resumed",
}

# The event source mapping's filters (template.yaml ``LifecycleFunction`` must hold these, a
# test checks): only records that can make an event invoke the function, so the task writes
# of the hot path (claims, successes, upstream counts, attempts) cost no invocation. The
# code decides from the images either way; a filter only saves invocations.
STREAM_FILTERS: Final[list[dict[str, Any]]] = [
    {"dynamodb": {"Keys": {"sk": {"S": [it.RUN_SK, BACKFILL_SK]}}}},
    {
        "dynamodb": {
            "Keys": {"sk": {"S": [{"prefix": it.TASK_PREFIX}]}},
            "NewImage": {"st": {"S": [TaskState.FAILED.value, TaskState.UP_FOR_RETRY.value]}},
        }
    },
    {
        "dynamodb": {
            "Keys": {"sk": {"S": [{"prefix": it.TASK_PREFIX}]}},
            "OldImage": {"deadline": {"S": [{"exists": True}]}},
            "NewImage": {
                "st": {"S": [TaskState.RUNNING.value]},
                "deadline": {"S": [{"exists": False}]},
            },
        }
    },
    {
        "dynamodb": {
            "Keys": {"sk": {"S": [{"prefix": it.TASK_PREFIX}]}},
            "OldImage": {"error": {"S": [{"exists": False}]}},
            "NewImage": {
                "st": {"S": [TaskState.RUNNING.value]},
                "error": {"S": [{"exists": True}]},
            },
        }
    },
    {
        "dynamodb": {
            "Keys": {"sk": {"S": [{"prefix": it.ATTEMPT_PREFIX}]}},
            "NewImage": {"st": {"S": [TIMED_OUT]}},
        }
    },
]


class StreamPublished(EventSink):
    """The sink of the functions that decide turns on AWS: it sends nothing, because the
    lifecycle function publishes every event from the change that commits it (see the module
    docstring). Publishing here too would send each event twice."""

    def emit(self, kind: str, detail: Mapping[str, Any]) -> None:
        log.debug("%s of %s is published from the state table's stream", kind, detail)


@dataclass(frozen=True)
class Derived:
    """An event a stream record makes. ``detail`` has the scheduler's detail keys; a task
    event's run fields are added from the run (``run_id`` names it)."""

    kind: str
    detail: dict[str, Any]
    run_id: str | None = None  # a task event: the run whose fields it needs
    spec_check: tuple[str, str] | None = None  # (run id, task id): warn_fail must be checked


def _run_state(item: Mapping[str, Any] | None) -> RunState | None:
    if item is None or "lock" in item or "st" not in item:
        return None  # absent, or a creation not committed yet: no state before
    return RunState(item["st"]["S"])


def _run_detail(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.id, "workflow": run.workflow, "project": run.project,
        "version": run.version, "state": run.state.value,
        "logical_date": run.logical_date.isoformat(),
    }  # fmt: skip


def derive(record: StreamRecord) -> Derived | None:
    """The lifecycle event ``record``'s change makes, if any (pure: no reads)."""
    new, old = record.new, record.old
    if record.event == "REMOVE" or new is None or new.keys() <= {"pk", "sk"}:
        return None
    if record.pk.startswith("RUN#"):
        if record.sk == it.RUN_SK:
            return _derive_run(new, old)
        if record.sk.startswith(it.TASK_PREFIX):
            return _derive_task(new, old)
        if record.sk.startswith(it.ATTEMPT_PREFIX):
            return _derive_attempt(new, old)
        return None
    if record.pk.startswith("BACKFILL#") and record.sk == BACKFILL_SK:
        return _derive_backfill(new, old)
    return None


def _derive_run(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> Derived | None:
    after, before = _run_state(new), _run_state(old)
    if after is None or after == before:
        return None
    if after is RunState.RUNNING and before not in (RunState.RUNNING, RunState.PAUSED):
        kind = "run.started"
    elif after in _ENDED_RUN:  # an end, or an ended run's new end (after != before)
        kind = f"run.{after.value}"
    else:
        return None
    return Derived(kind, _run_detail(it.to_run(dict(new), None)))


def _derive_task(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> Derived | None:
    run_id = it.run_id_of(dict(new))
    task = it.to_task(run_id, dict(new))
    before = None if old is None else it.to_task(run_id, dict(old))
    if task.state is TaskState.FAILED and (before is None or before.state is not task.state):
        kind = "task.failed"
    elif task.state is TaskState.UP_FOR_RETRY and (
        before is None or before.state is not task.state or before.attempt != task.attempt
    ):
        if before is not None and was_held(before, task):
            return None  # a pause took back its retry's claim: no attempt failed here
        kind = "task.retrying"
    elif (
        task.state is TaskState.RUNNING
        and task.deadline is None
        and before is not None
        and before.state is TaskState.RUNNING
        and before.attempt == task.attempt
        and before.deadline is not None
    ):
        kind = "task.timeout"  # on_timeout: warn, once per attempt
    elif (
        task.state is TaskState.RUNNING
        and task.error is not None
        and before is not None
        and before.state is TaskState.RUNNING
        and before.attempt == task.attempt
        and before.error is None
    ):
        kind = "task.timeout"  # a dependency task's on_timeout: warn (it keeps its deadline)
    else:
        return None
    detail = {
        "task_id": task.task_id, "attempt": task.attempt,
        "task_state": task.state.value, "error": task.error,
    }  # fmt: skip
    return Derived(kind, detail, run_id=run_id)


def _derive_attempt(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> Derived | None:
    if new.get("st", {}).get("S") != TIMED_OUT:
        return None
    if old is not None and old.get("st", {}).get("S") == TIMED_OUT:
        return None
    attempt = it.to_attempt(dict(new))
    run_id = it.run_id_of(dict(new))
    detail = {
        "task_id": attempt.task_id, "attempt": attempt.attempt,
        "task_state": TaskState.RUNNING.value, "error": None,
    }  # fmt: skip
    return Derived("task.timeout", detail, run_id=run_id, spec_check=(run_id, attempt.task_id))


def _derive_backfill(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> Derived | None:
    after = new.get("st", {}).get("S")
    before = None if old is None else old.get("st", {}).get("S")
    if after is None or after == before:
        return None
    kind = _BACKFILL_KINDS.get((before, after))
    states = {state.value for state in BackfillState}
    if (
        kind is None
        and before in states
        and after in states
        and BackfillState(after).terminal
        and not BackfillState(str(before)).terminal
    ):
        kind = f"backfill.{after}"
    if kind is None:
        return None
    backfill = backfill_from_document(it.unpack(new["doc"]["B"]))
    return Derived(kind, backfill_event(backfill))


@dataclass
class PublishResult:
    """What one batch did; ``response()`` is the handler's answer to Lambda."""

    records: int = 0
    published: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # sequence numbers

    def response(self) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in self.failed]}


class LifecyclePublisher:
    """Publishes the lifecycle events of DynamoDB stream batches to the bus (``events``).

    ``spec``: a run's pinned workflow (to tell ``warn_fail`` timeouts); ``metrics``: the run
    counters (``RunsStarted``, ...) are counted here, where the run events are published."""

    def __init__(
        self,
        store: DynamoStore,
        events: EventBridgeEvents,
        spec: Callable[[str, str, int], WorkflowSpec],
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.spec = spec
        self.metrics = metrics

    def handle(self, event: Mapping[str, Any]) -> PublishResult:
        raw_records = event.get("Records")
        if not isinstance(raw_records, list):
            raise ValueError("not a DynamoDB stream event: no 'Records' list")
        result = PublishResult(records=len(raw_records))
        seqs = [_seq(raw, i) for i, raw in enumerate(raw_records)]
        ready: list[tuple[int, str, Mapping[str, Any]]] = []  # (record index, kind, detail)
        runs: dict[str, Run | None] = {}
        stop = len(raw_records)
        for index, raw in enumerate(raw_records):
            try:
                made = self._event_of(StreamRecord.parse(raw), runs)
            except Exception:
                log.exception("stream record %s: its lifecycle event cannot be made", seqs[index])
                stop = index
                break
            if made is not None:
                ready.append((index, *made))
        for start in range(0, len(ready), MAX_BATCH):
            chunk = ready[start : start + MAX_BATCH]
            try:
                self.events.publish([self.events.entry(kind, d) for _, kind, d in chunk])
            except Exception:
                log.exception("publishing %d lifecycle events failed", len(chunk))
                stop = min(stop, chunk[0][0])
                break
            for _, kind, _ in chunk:
                self._count(result, kind)
        result.failed = seqs[stop:]
        return result

    def _event_of(
        self, record: StreamRecord, runs: dict[str, Run | None]
    ) -> tuple[str, Mapping[str, Any]] | None:
        made = derive(record)
        if made is None:
            return None
        if made.run_id is None:
            return made.kind, made.detail
        if made.run_id not in runs:
            try:
                runs[made.run_id] = self.store.get_run(made.run_id)
            except NotFound:
                runs[made.run_id] = None
        run = runs[made.run_id]
        if run is None:  # deleted since (its retention ran out): nobody is left to tell
            log.warning("%s of run %s: the run is gone; not published", made.kind, made.run_id)
            return None
        if made.spec_check is not None:
            task = self.spec(run.project, run.workflow, run.version).workflow.tasks.get(
                made.spec_check[1]
            )
            if task is None or task.on_timeout is not OnTimeout.WARN_FAIL:
                return None  # a plain timeout fails the attempt; only warn_fail says so first
        return made.kind, {**_run_detail(run), **made.detail}

    def _count(self, result: PublishResult, kind: str) -> None:
        result.published += 1
        result.kinds[kind] = result.kinds.get(kind, 0) + 1
        name = RUN_METRICS.get(kind)
        if name is not None and self.metrics is not None:
            self.metrics.add_metric(name=name, unit="Count", value=1)


def _seq(raw: Any, index: int) -> str:
    try:
        return str(raw["dynamodb"]["SequenceNumber"])
    except (KeyError, TypeError):
        return str(index)


def spec_reader(store: DynamoStore) -> Callable[[str, str, int], WorkflowSpec]:
    """A run's pinned workflow, read once per container (a version never changes)."""
    from stratoflow.model import spec_from_document

    cache: dict[tuple[str, str, int], WorkflowSpec] = {}

    def spec(project: str, name: str, version: int) -> WorkflowSpec:
        key = (project, name, version)
        if key not in cache:
            cache[key] = spec_from_document(store.get_version(project, name, version).document)
        return cache[key]

    return spec
