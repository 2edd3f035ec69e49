"""The AWS projector: a DynamoDB stream batch (NEW_AND_OLD_IMAGES) -> the read model.

Which revision each row gets (docs/readmodel.md, "AWS: the stream projector"):

- **One item, one row** (a task ``T#``, an attempt ``A#``): the row is the record's
  ``NewImage``, decoded with the store's own codec, at revision = the record's
  ``SequenceNumber``. DynamoDB streams order the records of one item, so a later image has a
  higher number and the projection's ``rev`` guard makes a duplicate or late image a no-op.
- **Two items, one row** (a run = ``R`` + its counters ``RC``; a workflow = ``HEAD`` + ``V#``):
  sequence numbers of two items are not comparable (they may sit in different shards after a
  partition split, and one transaction's items may come in either order), so such a row is
  re-read from the table (strongly consistent) and gets a revision from this container's
  hybrid clock (microseconds, strictly increasing), taken *before* the read. A snapshot read
  later is at least as new; a duplicate or late record re-reads the current items, so it can
  never bring back an older state.

REMOVE records (TTL expiry of attempts, the store's own clean-ups) change nothing: the read
model keeps history. Audit journal items (``AUDIT#<id>``, ``dynamo_audit``): a settled entry
is inserted by its id (a duplicate is kept once), and once the read model has it the item
is given its TTL (``DynamoAudit.audit_projected``: the journal keeps it ``SETTLED_KEEP``
longer, then DynamoDB removes it; the record of that mark, and of that removal, are
skipped); a pending intent shows once the reconciler settles it as it stands, or when TTL
deletes it unsettled (its old image, "outcome unknown"). Records whose change the read model cannot see (an upstream count, a
queue position, a schedule cursor) are skipped. A batch is applied in one transaction; if
that fails it is applied entity by entity and only the records of the entities that failed
are reported (``batchItemFailures``), so Lambda retries just those.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws._dynamo_items import Item
from stratoflow.adapters.aws.dynamo_audit import audit_entry_of, is_audit_item, is_pending
from stratoflow.adapters.aws.dynamodb import BATCH_GET_MAX, DynamoStore
from stratoflow.errors import NotFound
from stratoflow.readmodel import (
    FINAL_REV,
    AuditEntry,
    Change,
    Database,
    ReadModel,
    attempt_row,
    migrate,
    run_row,
    task_row,
)

log = logging.getLogger(__name__)

# userIdentity of a deletion made by DynamoDB's TTL process
TTL_PRINCIPAL: Final = "dynamodb.amazonaws.com"
# how far before a failed batch's oldest record an audit replay starts (an entry's ``at`` is
# taken just before its item is written)
REPLAY_MARGIN: Final = timedelta(minutes=5)
# in the entity-by-entity fallback, this many failures in a row mean the database itself is
# unwell: the rest of the batch is reported failed without trying it
MAX_FAILURES_IN_A_ROW: Final = 2

Key = tuple[
    Any, ...
]  # ("run", id) | ("task", run, task) | ("attempt", run, task, n) | ("workflow", p, n, v)
# | ("audit", entry id)


@dataclass(frozen=True)
class StreamRecord:
    """One DynamoDB stream record as Lambda delivers it."""

    seq: str  # SequenceNumber as given: a batch item failure names the record by it
    event: str  # INSERT | MODIFY | REMOVE
    pk: str
    sk: str
    new: Item | None
    old: Item | None
    expired: bool  # a TTL deletion
    created: float | None  # ApproximateCreationDateTime, epoch seconds

    @property
    def rev(self) -> int:
        return int(self.seq)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> StreamRecord:
        body = raw.get("dynamodb")
        if not isinstance(body, Mapping):
            raise ValueError("not a DynamoDB stream record: no 'dynamodb' part")
        seq = str(body.get("SequenceNumber", ""))
        if not seq.isdigit():
            raise ValueError(f"stream record has no SequenceNumber (got {seq!r})")
        event = raw.get("eventName")
        if event not in ("INSERT", "MODIFY", "REMOVE"):
            raise ValueError(f"stream record {seq}: unknown eventName {event!r}")
        keys = body.get("Keys") or {}
        try:
            pk, sk = str(keys["pk"]["S"]), str(keys["sk"]["S"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"stream record {seq}: Keys lack pk/sk strings") from exc
        new, old = body.get("NewImage"), body.get("OldImage")
        if event != "REMOVE" and new is None:
            raise ValueError(
                f"stream record {seq} has no NewImage: the stream must be NEW_AND_OLD_IMAGES"
            )
        identity = raw.get("userIdentity") or {}
        created = body.get("ApproximateCreationDateTime")
        return cls(
            seq=seq,
            event=str(event),
            pk=pk,
            sk=sk,
            new=new,
            old=old,
            expired=identity.get("type") == "Service"
            and identity.get("principalId") == TTL_PRINCIPAL,
            created=None if created is None else _epoch(created),
        )


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


@dataclass
class BatchResult:
    """What one batch did; ``response()`` is the handler's answer to Lambda."""

    records: int = 0
    projected: int = 0  # records whose change reached the read model
    skipped: int = 0  # records with nothing to project
    rows: int = 0  # rows offered to the read model
    failed: list[str] = field(default_factory=list)  # sequence numbers
    lag_seconds: float | None = None  # now - the oldest record's creation time

    def response(self) -> dict[str, Any]:
        """ReportBatchItemFailures: Lambda retries from the lowest failed sequence number."""
        ordered = sorted(set(self.failed), key=int)
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in ordered]}


@dataclass
class _Group:
    """The records of one entity in a batch and the changes they project to."""

    seqs: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    failed: bool = False


class StreamProjector:
    """Projects DynamoDB stream batches into the read model on ``db``.

    ``store``: the DynamoStore of the StateTable (read only: runs and workflows are re-read
    from it). ``migrate_schema``: apply the read model's migrations (under the advisory lock)
    before the first batch this instance handles - on AWS, the first batch of each Lambda
    container. ``clock_ns``: wall clock for snapshot revisions (tests pass their own).
    """

    def __init__(
        self,
        store: DynamoStore,
        db: Database,
        *,
        migrate_schema: bool = True,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.store = store
        self.readmodel = ReadModel(db, apply_migrations=False)
        self._schema_ready = not migrate_schema
        self._clock_ns = clock_ns
        self._rev = 0
        # since when (epoch seconds) this container's batches failed: the audit entries
        # recorded since are delivered again from the table once one succeeds
        self._failed_since: float | None = None

    # ------------------------------------------------------------------ schema
    def migrate(self) -> list[int]:
        """Apply missing migrations (idempotent; concurrent containers serialise on the
        migration lock); returns the versions applied now."""
        applied = migrate(self.readmodel.db)
        self._schema_ready = True
        return applied

    # ------------------------------------------------------------------ batches
    def handle(self, event: Mapping[str, Any]) -> BatchResult:
        raw_records = event.get("Records")
        if not isinstance(raw_records, list):
            raise ValueError("not a DynamoDB stream event: no 'Records' list")
        result = BatchResult(records=len(raw_records))
        seqs = [_sequence_number(raw) for raw in raw_records]
        if not self._schema_ready:
            try:
                self.migrate()
            except Exception:
                log.exception("read-model migration failed; the whole batch will be retried")
                result.failed = seqs
                self._after_batch(result, None)
                return result

        groups: dict[Key, _Group] = {}
        oldest: float | None = None
        for raw, seq in zip(raw_records, seqs, strict=True):
            try:
                record = StreamRecord.parse(raw)
                targets = self._targets(record)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("stream record %s cannot be decoded: %s", seq, exc)
                result.failed.append(seq)
                continue
            if record.created is not None:
                oldest = record.created if oldest is None else min(oldest, record.created)
            if not targets:
                result.skipped += 1
                continue
            for key, change in targets:
                group = groups.setdefault(key, _Group())
                group.seqs.append(seq)  # a record of two targets fails if either does
                if change is not None:
                    group.changes.append(change)
        if oldest is not None:
            result.lag_seconds = max(0.0, self._clock_ns() / 1e9 - oldest)

        self._read_snapshots(groups, self._next_rev())
        self._apply(groups, result)
        # a record in two groups (a task item's change and an attempt it records) is
        # counted once, and retried whole if either group failed
        result.failed = list(dict.fromkeys(result.failed))
        grouped = {q for g in groups.values() for q in g.seqs}
        result.projected = len(grouped - set(result.failed))
        self._after_batch(result, oldest)
        return result

    def _after_batch(self, result: BatchResult, oldest: float | None) -> None:
        """After a failed batch, note since when; after the next one that succeeds, deliver
        again every audit entry recorded since then (less ``REPLAY_MARGIN``): records of them
        that ran out of retries meanwhile (on to the DLQ) are caught up from the table."""
        now = self._clock_ns() / 1e9
        if result.failed:
            start = min(now, oldest if oldest is not None else now)
            if self._failed_since is None or start < self._failed_since:
                self._failed_since = start
            return
        if self._failed_since is None:
            return
        since = datetime.fromtimestamp(self._failed_since - REPLAY_MARGIN.total_seconds(), UTC)
        try:
            replayed = self.replay_audit(since)
        except Exception:
            log.exception("delivering the audit entries since %s again failed", since)
            return  # tried again after the next batch
        self._failed_since = None
        log.info("delivered %d audit entries since %s again", replayed, since)

    def replay_audit(self, since: datetime) -> int:
        """Write the settled audit entries recorded since ``since`` (from the state table) to
        the read model, 100 a transaction; entries it has are kept as they are (by id).
        Returns how many were offered."""
        done, batch = 0, []
        for entry in self.store.audit_entries(since):
            batch.append(entry)
            if len(batch) == 100:
                done += self._replay(batch)
                batch = []
        if batch:
            done += self._replay(batch)
        return done

    def _replay(self, entries: list[AuditEntry]) -> int:
        done = self.readmodel.apply([Change(0, entry) for entry in entries])
        now = datetime.fromtimestamp(self._clock_ns() / 1e9, UTC)
        for entry in entries:  # in the read model now: their journal items may go
            self.store.audit_projected(entry.id, now)
        return done

    def _next_rev(self) -> int:
        """Hybrid clock: wall-clock microseconds, strictly increasing in this container."""
        self._rev = max(self._rev + 1, self._clock_ns() // 1000)
        return self._rev

    # ------------------------------------------------------------------ records -> targets
    def _targets(self, record: StreamRecord) -> list[tuple[Key, Change | None]]:
        """``_classify``'s target, then the attempts a task item's change records on it (an
        attempt whose end went with its task's transition: ``DynamoStore.apply_end``).

        Such an attempt is final (``h<n>`` is written once, by the transition the task took)
        and wins over an attempt item of the same number (a start row, or an end whose
        transition did not apply), as in ``DynamoStore.list_attempts``: it is projected at
        ``FINAL_REV``, which no attempt item's sequence number reaches, whatever the order
        the two items' records come in."""
        first = self._classify(record)
        targets = [] if first is None else [first]
        item, old = record.new, record.old
        if (
            record.event != "REMOVE"
            and item is not None
            and "task" in item
            and record.pk.startswith("RUN#")
            and record.sk.startswith(it.TASK_PREFIX)
        ):
            run_id = it.run_id_of(item)
            before = {} if old is None or "task" not in old else {
                a.attempt: a for a in it.attempts_on_task(run_id, old)
            }  # fmt: skip
            for attempt in it.attempts_on_task(run_id, item):
                if before.get(attempt.attempt) != attempt:
                    key = ("attempt", run_id, attempt.task_id, attempt.attempt)
                    targets.append((key, Change(FINAL_REV, attempt)))
        return targets

    def _classify(self, record: StreamRecord) -> tuple[Key, Change | None] | None:
        """The entity a record touches and, for a one-item row, its change; None when the
        read model has nothing to do with it."""
        if is_audit_item(record.pk, record.sk):
            return _audit_target(record)
        if record.event == "REMOVE":
            # TTL expiry of an attempt (record.expired), or the store removing its own plan
            # journals, markers and a dead creation's leftovers: history stays
            return None
        item = record.new
        assert item is not None
        if item.keys() <= {"pk", "sk"}:
            # an image with nothing but the key (moto records one for an UpdateItem that
            # creates an item, then a MODIFY with the attributes): nothing to project yet
            return None
        old = record.old
        if record.pk.startswith("RUN#"):
            run_id = it.run_id_of(item)
            if record.sk == it.RUN_SK:
                if "lock" in item:
                    return None  # create_run in progress: nothing is visible yet
                if _same(old, item, _run_fields):
                    return None  # a plan reference, an index attribute
                return ("run", run_id), None
            if record.sk == it.COUNTERS_SK:
                if _same(old, item, _counter_fields):
                    return None
                return ("run", run_id), None
            if record.sk.startswith(it.TASK_PREFIX):
                task = it.to_task(run_id, item)
                if _same(old, item, lambda i: task_row(it.to_task(run_id, i), 0)):
                    return None  # an upstream count, a queue position
                return ("task", run_id, task.task_id), Change(record.rev, task)
            if record.sk.startswith(it.ATTEMPT_PREFIX):
                attempt = it.to_attempt(item)
                if _same(old, item, lambda i: attempt_row(it.to_attempt(i), 0)):
                    return None  # the TTL attribute
                key = ("attempt", run_id, attempt.task_id, attempt.attempt)
                return key, Change(record.rev, attempt)
            return None  # plan journals (P#), counted-parent markers (E#)
        if record.pk.startswith("WF#"):
            project, name = it.workflow_of(item)
            if record.sk == it.HEAD_SK:
                if _same(old, item, _head_fields):
                    return None  # the schedule cursor
                return ("workflow", project, name, None), None
            if record.sk.startswith(it.VERSION_PREFIX) and it.CHUNK_MARK not in record.sk:
                return ("workflow", project, name, it.get_n(item, "version")), None
            return None  # chunks of a large document: read with their version
        return None

    # ------------------------------------------------------------------ snapshots
    def _read_snapshots(self, groups: dict[Key, _Group], rev: int) -> None:
        """Re-read the two-item rows (runs, workflows) at revision ``rev``, taken before."""
        run_ids = [key[1] for key in groups if key[0] == "run"]
        if run_ids:
            try:
                runs = self._read_runs(run_ids)
            except Exception:
                log.exception("reading %d runs from the state table failed", len(run_ids))
                for run_id in run_ids:
                    groups[("run", run_id)].failed = True
            else:
                for run_id in run_ids:
                    item, counters = runs.get(run_id, (None, None))
                    if item is not None and "lock" not in item:
                        groups[("run", run_id)].changes.append(
                            Change(rev, it.to_run(item, counters))
                        )
        for key, group in groups.items():
            if key[0] != "workflow":
                continue
            _, project, name, version = key
            try:
                group.changes.append(Change(rev, self.store.get_version(project, name, version)))
            except NotFound:
                log.warning("workflow %s/%s version %s is gone; nothing to project", *key[1:])
            except Exception:
                log.exception("reading workflow %s/%s from the state table failed", project, name)
                group.failed = True

    def _read_runs(self, run_ids: Sequence[str]) -> dict[str, tuple[Item | None, Item | None]]:
        """The run items and counters items, strongly consistent, BatchGetItem by 100 keys."""
        keys = [
            it.key(it.run_pk(run_id), sk)
            for run_id in run_ids
            for sk in (it.RUN_SK, it.COUNTERS_SK)
        ]
        found: dict[str, tuple[Item | None, Item | None]] = {}
        table, client = self.store.table, self.store.client
        for start in range(0, len(keys), BATCH_GET_MAX):
            pending: list[Item] = keys[start : start + BATCH_GET_MAX]
            delay = 0.05
            while pending:
                out = client.batch_get_item(
                    RequestItems={table: {"Keys": pending, "ConsistentRead": True}}
                )
                for item in out.get("Responses", {}).get(table, []):
                    run_id = it.run_id_of(item)
                    run, counters = found.get(run_id, (None, None))
                    if item["sk"]["S"] == it.RUN_SK:
                        found[run_id] = (item, counters)
                    else:
                        found[run_id] = (run, item)
                unprocessed: Any = out.get("UnprocessedKeys", {}).get(table, {})
                pending = list(unprocessed.get("Keys", []))
                if pending:
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
        return found

    # ------------------------------------------------------------------ apply
    def _apply(self, groups: dict[Key, _Group], result: BatchResult) -> None:
        live = sorted(
            (g for g in groups.values() if not g.failed), key=lambda g: min(int(s) for s in g.seqs)
        )
        for group in groups.values():
            if group.failed:
                result.failed += group.seqs
        changes = [c for g in live for c in g.changes]
        try:
            result.rows += self.readmodel.apply(changes) if changes else 0
        except Exception:
            log.warning("the batch failed as one transaction; applying it entity by entity")
        else:
            result.projected += sum(len(g.seqs) for g in live)
            self._mark_projected(live, result)
            return
        in_a_row = 0
        written: list[_Group] = []
        for group in live:
            if in_a_row >= MAX_FAILURES_IN_A_ROW:
                result.failed += group.seqs
                continue
            try:
                result.rows += self.readmodel.apply(group.changes) if group.changes else 0
            except Exception:
                log.exception("projecting records %s failed", ", ".join(group.seqs))
                result.failed += group.seqs
                in_a_row += 1
            else:
                result.projected += len(group.seqs)
                written.append(group)
                in_a_row = 0
        self._mark_projected(written, result)

    def _mark_projected(self, written: Sequence[_Group], result: BatchResult) -> None:
        """The audit entries of ``written`` are in the read model (committed): their journal
        items may go (``audit_projected``). A mark that fails fails its records: retried,
        they are projected again (kept once by id) and marked then."""
        now = datetime.fromtimestamp(self._clock_ns() / 1e9, UTC)
        for group in written:
            for change in group.changes:
                if not isinstance(change.record, AuditEntry):
                    continue
                try:
                    self.store.audit_projected(change.record.id, now)
                except Exception:
                    log.exception("marking audit entry %s projected failed", change.record.id)
                    result.failed += group.seqs
                    break


def _audit_target(record: StreamRecord) -> tuple[Key, Change | None] | None:
    """An audit journal item's record (``dynamo_audit``): a settled entry written, or an
    intent its request never settled, deleted by TTL (its old image: "outcome unknown").
    A pending intent written, or one withdrawn (a user's delete), a projected entry marked
    with its TTL or removed by it, show nothing. Keyed by
    the entry's id (kept once however often it is delivered)."""
    if record.event == "REMOVE":
        item = record.old
        if not record.expired or item is None or not is_pending(item):
            return None  # a withdrawal, or the TTL's removal of a projected entry
    else:
        item = record.new
        if item is None or is_pending(item) or "entry" not in item:
            return None
        if record.old is not None and not is_pending(record.old):
            return None  # a settled entry changes once: its projection's mark (its TTL)
    entry = audit_entry_of(item)
    return ("audit", entry.id), Change(0, entry)


def _sequence_number(raw: Any) -> str:
    try:
        return str(raw["dynamodb"]["SequenceNumber"])
    except (KeyError, TypeError) as exc:
        raise ValueError("not a DynamoDB stream record: no dynamodb.SequenceNumber") from exc


def _same(old: Item | None, new: Item, view: Callable[[Item], Any]) -> bool:
    """True when the old image exists and looks the same as the new one through ``view``
    (what the read model keeps of the item)."""
    if old is None:
        return False
    try:
        return bool(view(old) == view(new))
    except (ValueError, KeyError, TypeError):
        return False  # an old image the codec cannot read (e.g. a lock): treat as changed


def _run_fields(item: Item) -> Any:
    if "lock" in item:
        raise ValueError("a lock item")
    return run_row(it.to_run(item, None), 0)


def _counter_fields(item: Item) -> tuple[int, int, int]:
    return (it.get_n(item, "n_done"), it.get_n(item, "n_failed"), it.get_n(item, "n_running"))


def _head_fields(item: Item) -> tuple[int, bool]:
    return it.get_n(item, "latest"), bool(item.get("paused", {}).get("BOOL"))
