"""Item layout of the DynamoDB store: keys, attribute encoding, and the domain <-> item mapping.

Everything here is pure (no client). Attribute values are written in DynamoDB's wire form
(``{"S": ...}``) by a few small helpers rather than boto3's TypeSerializer: the store only needs
strings, numbers, booleans, binaries and binary sets, and JSON documents (params, outputs) go in
as compact JSON strings so that they read back exactly (no float -> Decimal round trip).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from stratoflow.adapters.aws import _dynamo_keys
from stratoflow.engine import Run, RunState, TaskInstance, TaskState, Upstream
from stratoflow.ports import Attempt

Item = dict[str, Any]  # an item (or key) in DynamoDB's wire form

# ------------------------------------------------------------------ keys
RUN_SK: Final = _dynamo_keys.RUN_SK  # the run: its state fields; the commit point of create_run
COUNTERS_SK: Final = "RC"  # the run's counters, kept apart so counter updates touch no index
# a task's keys live in _dynamo_keys (the runner reads its task without the rest of this)
TASK_PREFIX: Final = _dynamo_keys.TASK_PREFIX
run_pk = _dynamo_keys.run_pk
task_sk = _dynamo_keys.task_sk
ATTEMPT_PREFIX: Final = "A#"
PLAN_PREFIX: Final = "P#"
EDGE_PREFIX: Final = "E#"
# A child counts up to this many parents in a set on its own item (8 bytes each: 2 KB); the
# parents past it are marker items, so the child item and its responses stay small.
UPS_MAX: Final = 256
HEAD_SK: Final = "HEAD"  # a workflow's head: latest version, paused, cursor
VERSION_PREFIX: Final = "V#"
CHUNK_MARK: Final = "#C#"
HIGH: Final = "\uffff"  # sorts after every character an id or a timestamp can contain
NO_TIME: Final = "~"
# gsi2 partitions of the propagation intents written before they moved to gsi1's RUNNING
# partitions (read by ``pending_propagations`` until no such item is left)
PROPAGATE_PREFIX: Final = "PROP#"
PROPAGATING: Final = "prop"  # attribute: the task carries a propagation intent
# attribute: a sub-workflow task's next attempt reruns its child whole
# (``TaskInstance.rerun_child``); written by plans only, which alone change it
RERUN_CHILD: Final = "rchild"

# Timer partitions (RETRY#n / RUNNING#n on gsi1) are spread over this many keys, so that a
# burst of claims and finishes is not limited by one index partition's write rate.
TIMER_SHARDS: Final = 4
# priority sorts descending inside an ascending index: store (OFFSET - priority), fixed width
_PRIORITY_OFFSET: Final = 10**12


def attempt_sk(task_id: str, attempt: int) -> str:
    return f"{ATTEMPT_PREFIX}{task_id}#{attempt:06d}"


def edge_sk(child: str, generation: int, parent: str) -> str:
    """A counted parent past the child's set (see ``UPS_MAX``), per upstream generation."""
    return f"{EDGE_PREFIX}{child}#{generation}#{parent}"


def workflow_pk(project: str, name: str) -> str:
    return f"WF#{project}#{name}"


ADMISSION_SK: Final = "ADMIT"  # in a workflow's partition: the runs its starts admitted


def version_sk(version: int) -> str:
    return f"{VERSION_PREFIX}{version:010d}"


def key(pk: str, sk: str) -> Item:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


# ------------------------------------------------------------------ values
def ts(value: datetime) -> str:
    """Fixed width (isoformat zero-pads the year, strftime does not), so the strings sort as
    the instants do."""
    if value.tzinfo is None:
        raise ValueError("naive datetime reached the store")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def js(value: Any) -> dict[str, str]:
    return {"S": json.dumps(value, separators=(",", ":"), default=str)}


def get_s(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value["S"])


def get_n(item: Item, name: str, default: int = 0) -> int:
    value = item.get(name)
    return default if value is None else int(value["N"])


def get_dt(item: Item, name: str) -> datetime | None:
    value = get_s(item, name)
    return None if value is None else dt(value)


def order_key(created_at: datetime, run_id: str) -> str:
    """Sort key of a run in the run indexes: creation time, then id for a tie."""
    return f"{ts(created_at)}#{run_id}"


def parent_digest(parent: str) -> bytes:
    """8 bytes naming a counted parent in a child's ``ups`` set (a binary set stays small: a
    child with 10,000 parents carries 80 KB). 64 bits make a collision between two parents of
    one child negligible (about 1e-12 at 10,000 parents)."""
    return hashlib.blake2b(parent.encode(), digest_size=8).digest()


def priority_key(priority: int) -> str:
    if not -_PRIORITY_OFFSET < priority < _PRIORITY_OFFSET:
        raise ValueError(f"task priority {priority} is out of range (|priority| < 10**12)")
    return f"{_PRIORITY_OFFSET - priority:013d}"


_RANK_OFFSET = 10**15


def rank_key(rank: int) -> str:
    """A pool rank (milliseconds, see engine/pools.rank) as a sortable string."""
    if not -_RANK_OFFSET < rank < _RANK_OFFSET:
        raise ValueError(f"pool rank {rank} is out of range")
    return f"{rank + _RANK_OFFSET:016d}"


def pool_queue_pk(pool: str) -> str:
    return f"PQ#{pool}"


def pool_item_key(pool: str) -> Item:
    """The pool item of key ``scope/name``: ``POOL#<scope>`` / ``P#<name>``."""
    scope, _, name = pool.partition("/")
    return key(f"POOL#{scope}", f"P#{name}")


def timer_shard(run_id: str, task_id: str) -> int:
    return zlib.crc32(f"{run_id}/{task_id}".encode()) % TIMER_SHARDS


class Sequencer:
    """FIFO positions for the queue: wall-clock nanoseconds, strictly increasing within this
    process (a hybrid clock). Across processes the order is as good as the hosts' clocks
    (Lambda hosts are NTP-synchronised to well under a millisecond)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return f"{self._last:020d}"


# ------------------------------------------------------------------ runs
RUNW_PREFIX: Final = "RUNW#"


def runs_of_workflow_pk(project: str, workflow: str) -> str:
    """The gsi3 partition of one project's runs of one workflow: ``RUNW#<project>#<workflow>``.
    One pair, one key: neither name can contain ``#`` (both are ``[a-z0-9_-]+``, the model's
    ``NAME_PATTERN``), so the first ``#`` after the prefix ends the project. A project's listing
    of its workflow reads its own runs only, never another project's of a same-named workflow."""
    return f"{RUNW_PREFIX}{project}#{workflow}"


def legacy_runs_of_workflow_pk(workflow: str) -> str:
    """The gsi3 partition versions before 2026-12-06 filed a run in: the workflow's runs of
    every project (``RUNW#<workflow>``; no ``#`` after the prefix, so it is never a key of
    ``runs_of_workflow_pk``). Read only until ``run_index_migration`` has moved them all."""
    return f"{RUNW_PREFIX}{workflow}"


def run_attributes(run: Run, concurrency: int | None) -> Item:
    """The run item, committed: every field but the counters, and its three index entries."""
    order = order_key(run.created_at, run.id)
    item: Item = {
        **key(run_pk(run.id), RUN_SK),
        "id": s(run.id),
        "project": s(run.project),
        "workflow": s(run.workflow),
        "version": n(run.version),
        "st": s(run.state.value),
        "params": js(run.params),
        "logical_date": s(ts(run.logical_date)),
        "created_at": s(ts(run.created_at)),
        "trigger": s(run.trigger),
        "n_tasks": n(run.n_tasks),
        "gsi1pk": s(f"RUNP#{run.project}"),
        "gsi1sk": s(order),
        "gsi2pk": s(f"RUNS#{run.state.value}"),
        "gsi2sk": s(order),
        "gsi3pk": s(runs_of_workflow_pk(run.project, run.workflow)),
        "gsi3sk": s(order),
    }
    if concurrency is not None:
        item["concurrency"] = n(concurrency)
    for name, value in (("started_at", run.started_at), ("ended_at", run.ended_at)):
        if value is not None:
            item[name] = s(ts(value))
    if run.error is not None:
        item["error"] = s(run.error)
    if run.parent is not None:
        item["parent"] = s(run.parent)
    if run.paused_by_parent:
        item["pbp"] = {"BOOL": True}
    return item


def counters_item(run: Run) -> Item:
    return {
        **key(run_pk(run.id), COUNTERS_SK),
        "n_done": n(run.n_done),
        "n_failed": n(run.n_failed),
        "n_running": n(run.n_running),
    }


def to_run(item: Item, counters: Item | None) -> Run:
    c = counters or {}
    return Run(
        id=str(item["id"]["S"]),
        project=str(item["project"]["S"]),
        workflow=str(item["workflow"]["S"]),
        version=get_n(item, "version"),
        state=RunState(item["st"]["S"]),
        params=json.loads(item["params"]["S"]),
        logical_date=dt(item["logical_date"]["S"]),
        created_at=dt(item["created_at"]["S"]),
        trigger=str(item["trigger"]["S"]),
        started_at=get_dt(item, "started_at"),
        ended_at=get_dt(item, "ended_at"),
        n_tasks=get_n(item, "n_tasks"),
        n_done=get_n(c, "n_done"),
        n_failed=get_n(c, "n_failed"),
        n_running=get_n(c, "n_running"),
        error=get_s(item, "error"),
        parent=get_s(item, "parent"),
        paused_by_parent=bool(item.get("pbp", {}).get("BOOL", False)),
        plan_gen=get_n(item, "pgen"),
    )


class Update:
    """An UpdateExpression built from named parts (SET / REMOVE / ADD)."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.adds: list[str] = []
        self.names: dict[str, str] = {}
        self.values: Item = {}

    def _name(self, name: str) -> str:
        alias = f"#{name}"
        self.names[alias] = name
        return alias

    def value(self, value: Any) -> str:
        alias = f":v{len(self.values)}"
        self.values[alias] = value
        return alias

    def set(self, name: str, value: Any) -> Update:
        self.sets.append(f"{self._name(name)} = {self.value(value)}")
        return self

    def set_if_absent(self, name: str, value: Any) -> Update:
        alias = self._name(name)
        self.sets.append(f"{alias} = if_not_exists({alias}, {self.value(value)})")
        return self

    def set_or_remove(self, name: str, value: Any | None) -> Update:
        if value is None:
            self.remove(name)
        else:
            self.set(name, value)
        return self

    def remove(self, name: str) -> Update:
        self.removes.append(self._name(name))
        return self

    def add(self, name: str, value: Any) -> Update:
        self.adds.append(f"{self._name(name)} {self.value(value)}")
        return self

    def condition(self, text: str, **values: Any) -> str:
        """A condition over the same names: ``{name}`` placeholders become aliases and
        ``:value`` keywords become bound values."""
        for alias_value, value in values.items():
            self.values[f":{alias_value}"] = value
        return text.format_map(_Names(self))

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        if self.adds:
            parts.append("ADD " + ", ".join(self.adds))
        return " ".join(parts)

    def request(self, table: str, item_key: Item, condition: str | None = None) -> Item:
        """The arguments of an UpdateItem (or a TransactWriteItems ``Update``)."""
        req: Item = {
            "TableName": table,
            "Key": item_key,
            "UpdateExpression": self.expression(),
            "ExpressionAttributeNames": self.names,
        }
        if self.values:
            req["ExpressionAttributeValues"] = self.values
        if condition is not None:
            req["ConditionExpression"] = condition
        return req


class _Names(dict[str, str]):
    def __init__(self, update: Update) -> None:
        super().__init__()
        self._update = update

    def __missing__(self, name: str) -> str:
        return self._update._name(name)


# ------------------------------------------------------------------ tasks
# the task's times, written whole by every write of a task (``child_end``: the end of its
# sub-workflow child that it took, ``TaskInstance.child_end``)
_TIMES = ("ready_at", "deadline", "started_at", "ended_at", "child_end")


def task_index(task: TaskInstance, qseq: str | None) -> tuple[str, str] | None:
    """The task's gsi1 entry: its run's queue while QUEUED, a timer partition while
    UP_FOR_RETRY or RUNNING, a RUNNING partition (with no time) while it carries a
    propagation intent, none otherwise (the index is sparse)."""
    if task.propagating:
        # the intent lives in the RUNNING partitions: an attempt that ends keeps the entry it
        # had while it ran (see ``task_fields``), so ending costs one index write, not a
        # delete here and a put in another index; the reconciler reads these partitions
        # anyway (``running_tasks``)
        return intent_index(task)
    if task.state is TaskState.QUEUED:
        assert qseq is not None
        if task.pool_rank is not None and task.pool is not None:
            # waiting in a pool: that pool's queue (engine/pools.py), across runs
            return pool_queue_pk(task.pool), f"{rank_key(task.pool_rank)}#{qseq}"
        return f"Q#{task.run_id}", f"{priority_key(task.priority)}#{qseq}"
    if task.state in (TaskState.UP_FOR_RETRY, TaskState.RUNNING):
        when = task.ready_at if task.state is TaskState.UP_FOR_RETRY else task.deadline
        kind = "RETRY" if task.state is TaskState.UP_FOR_RETRY else "RUNNING"
        shard = timer_shard(task.run_id, task.task_id)
        return (
            f"{kind}#{shard}",
            f"{NO_TIME if when is None else ts(when)}#{task.run_id}#{task.task_id}",
        )
    return None


def intent_index(task: TaskInstance) -> tuple[str, str]:
    """The gsi1 entry of a task that carries a propagation intent and did not come to it
    from RUNNING (a child skipped or failed upstream, a plan): a RUNNING partition, with no
    time (after every deadline, so the timer queries never reach it)."""
    shard = timer_shard(task.run_id, task.task_id)
    return f"RUNNING#{shard}", f"{NO_TIME}#{task.run_id}#{task.task_id}"


def task_fields(
    update: Update, task: TaskInstance, qseq: str | None, *, keep_index: bool = False
) -> Update:
    """SET/REMOVE the task's own fields and its index entry (never its upstream counts).
    ``keep_index``: leave the gsi1 entry as it is (an attempt that ends carrying the
    propagation intent keeps its RUNNING entry: the key does not move, so DynamoDB bills one
    index write instead of a delete and a put)."""
    update.set("st", s(task.state.value)).set("att", n(task.attempt))
    update.set("base", n(task.attempt_base)).set("prio", n(task.priority))
    for name in _TIMES:
        value = getattr(task, name)
        update.set_or_remove(name, None if value is None else s(ts(value)))
    update.set("outputs", js(task.outputs)).set_or_remove(
        "error", None if task.error is None else s(task.error)
    )
    if qseq is not None:
        update.set("qseq", s(qseq))
    if not keep_index:
        index = task_index(task, qseq)
        if index is None:
            update.remove("gsi1pk").remove("gsi1sk")
        else:
            update.set("gsi1pk", s(index[0])).set("gsi1sk", s(index[1]))
    # the propagation intent (``TaskInstance.propagating``): a flag, found through gsi1
    update.set_or_remove(PROPAGATING, {"BOOL": True} if task.propagating else None)
    # pools (engine/pools.py): the pool it waits in or holds slots of
    update.set_or_remove("pool", None if task.pool is None else s(task.pool))
    update.set_or_remove("prank", None if task.pool_rank is None else n(task.pool_rank))
    update.set_or_remove("pslots", n(task.pool_slots) if task.pool_slots else None)
    # a task written before the intent moved to gsi1 may still have a gsi2 entry (PROP#n):
    # removing an absent attribute changes nothing and costs no index write
    update.remove("gsi2pk").remove("gsi2sk")
    return update


def upstream_fields(update: Update, task: TaskInstance, parents: Iterable[str] | None) -> Update:
    """SET the upstream counts; with ``parents``, replace the set of counted parents too."""
    update.set("up_ok", n(task.upstream.succeeded)).set("up_failed", n(task.upstream.failed))
    update.set("up_skipped", n(task.upstream.skipped))
    if parents is not None:
        digests = sorted({parent_digest(p) for p in parents})
        update.set_or_remove("ups", {"BS": digests} if digests else None)
        # a new upstream generation: marker items of the old one no longer count
        update.add("ugen", n(1))
    return update


def task_item(task: TaskInstance, qseq: str | None) -> Item:
    item: Item = {
        **key(run_pk(task.run_id), task_sk(task.task_id)),
        "task": s(task.task_id),
        "st": s(task.state.value),
        "att": n(task.attempt),
        "base": n(task.attempt_base),
        "prio": n(task.priority),
        "up_ok": n(task.upstream.succeeded),
        "up_failed": n(task.upstream.failed),
        "up_skipped": n(task.upstream.skipped),
        "outputs": js(task.outputs),
    }
    for name in _TIMES:
        value = getattr(task, name)
        if value is not None:
            item[name] = s(ts(value))
    if task.error is not None:
        item["error"] = s(task.error)
    if qseq is not None:
        item["qseq"] = s(qseq)
    index = task_index(task, qseq)
    if index is not None:
        item["gsi1pk"], item["gsi1sk"] = s(index[0]), s(index[1])
    if task.propagating:
        item[PROPAGATING] = {"BOOL": True}
    if task.rerun_child:
        item[RERUN_CHILD] = {"BOOL": True}
    if task.pool is not None:
        item["pool"] = s(task.pool)
    if task.pool_rank is not None:
        item["prank"] = n(task.pool_rank)
    if task.pool_slots:
        item["pslots"] = n(task.pool_slots)
    return item


def to_task(run_id: str, item: Item) -> TaskInstance:
    return TaskInstance(
        run_id=run_id,
        task_id=str(item["task"]["S"]),
        state=TaskState(item["st"]["S"]),
        attempt=get_n(item, "att"),
        attempt_base=get_n(item, "base"),
        upstream=Upstream(
            get_n(item, "up_ok"), get_n(item, "up_failed"), get_n(item, "up_skipped")
        ),
        ready_at=get_dt(item, "ready_at"),
        deadline=get_dt(item, "deadline"),
        started_at=get_dt(item, "started_at"),
        ended_at=get_dt(item, "ended_at"),
        outputs=json.loads(item["outputs"]["S"]),
        error=get_s(item, "error"),
        priority=get_n(item, "prio"),
        child_end=get_dt(item, "child_end"),
        # "gsi2pk": an intent written before it moved to gsi1 (PROP#n partitions of gsi2)
        propagating=PROPAGATING in item or "gsi2pk" in item,
        rerun_child=RERUN_CHILD in item,
        pool=get_s(item, "pool"),
        pool_rank=get_n(item, "prank") if "prank" in item else None,
        pool_slots=get_n(item, "pslots"),
    )


def run_id_of(item: Item) -> str:
    return str(item["pk"]["S"]).removeprefix("RUN#")


def workflow_of(item: Item) -> tuple[str, str]:
    """(project, name) of a workflow head or version item, from its key ``WF#<p>#<n>``
    (neither part can contain ``#``: names are ``[a-z0-9_-]+``)."""
    project, _, name = str(item["pk"]["S"]).removeprefix("WF#").partition("#")
    return project, name


# ------------------------------------------------------------------ attempts
def to_attempt(item: Item) -> Attempt:
    """An attempt item (``A#<task>#<n>``), as ``start_attempt`` / ``finish_attempt`` write it."""
    return Attempt(
        run_id=run_id_of(item),
        task_id=str(item["task"]["S"]),
        attempt=get_n(item, "attempt"),
        state=str(item["st"]["S"]),
        started_at=dt(item["started_at"]["S"]),
        ended_at=get_dt(item, "ended_at"),
        exit_code=None if "exit_code" not in item else get_n(item, "exit_code"),
        error=get_s(item, "error"),
        log=get_s(item, "log"),
        outputs=json.loads(item["outputs"]["S"]),
    )


# ------------------------------------------------------------------ attempts on their task item
# An attempt whose end is the task's transition is recorded on the task item, in that same
# write (``h<n>``, a map), instead of an attempt item of its own: one write per attempt fewer.
# Only attempts 1..HISTORY_ON_TASK and records of at most HISTORY_ENTRY_MAX bytes, so the task
# item grows by at most HISTORY_ON_TASK x HISTORY_ENTRY_MAX bytes; every other attempt (a
# later retry or rerun, a large record, a timed-out end) is an attempt item (``A#``) as before.
HISTORY_ON_TASK: Final = 2
HISTORY_ENTRY_MAX: Final = 400
_HISTORY_ATTR: Final = "h"


def history_attribute(attempt: int) -> str:
    return f"{_HISTORY_ATTR}{attempt}"


def history_entry(attempt: Attempt) -> Item | None:
    """The map recorded on the task item for ``attempt``'s end; None when it goes to an
    attempt item instead (its number over HISTORY_ON_TASK, or its record over
    HISTORY_ENTRY_MAX bytes)."""
    if not 1 <= attempt.attempt <= HISTORY_ON_TASK:
        return None
    entry: Item = {
        "st": s(attempt.state),
        "s": s(ts(attempt.started_at)),
        "o": js(attempt.outputs),
    }
    if attempt.ended_at is not None:
        entry["e"] = s(ts(attempt.ended_at))
    if attempt.exit_code is not None:
        entry["x"] = n(attempt.exit_code)
    if attempt.error is not None:
        entry["err"] = s(attempt.error)
    if attempt.log is not None:
        entry["log"] = s(attempt.log)
    size = sum(len(k) + len(str(next(iter(v.values())))) for k, v in entry.items())
    if size > HISTORY_ENTRY_MAX:
        return None
    return {"M": entry}


def attempts_on_task(run_id: str, item: Item) -> list[Attempt]:
    """The attempts recorded on a task item (``h1`` .. ``h<HISTORY_ON_TASK>``)."""
    task_id = str(item["task"]["S"])
    found = []
    for number in range(1, HISTORY_ON_TASK + 1):
        raw = item.get(history_attribute(number))
        if raw is None:
            continue
        entry = raw["M"]
        found.append(
            Attempt(
                run_id=run_id,
                task_id=task_id,
                attempt=number,
                state=str(entry["st"]["S"]),
                started_at=dt(entry["s"]["S"]),
                ended_at=get_dt(entry, "e"),
                exit_code=None if "x" not in entry else get_n(entry, "x"),
                error=get_s(entry, "err"),
                log=get_s(entry, "log"),
                outputs=json.loads(entry["o"]["S"]),
            )
        )
    return found


# ------------------------------------------------------------------ task (de)serialisation for plans
def task_to_json(task: TaskInstance) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "state": task.state.value,
        "attempt": task.attempt,
        "attempt_base": task.attempt_base,
        "upstream": [task.upstream.succeeded, task.upstream.failed, task.upstream.skipped],
        **{
            name: None if getattr(task, name) is None else ts(getattr(task, name))
            for name in _TIMES
        },
        "outputs": task.outputs,
        "error": task.error,
        "priority": task.priority,
        "propagating": task.propagating,
        "rerun_child": task.rerun_child,
        "pool": task.pool,
        "pool_rank": task.pool_rank,
        "pool_slots": task.pool_slots,
    }


def task_from_json(run_id: str, data: Mapping[str, Any]) -> TaskInstance:
    # a plan journaled before a time was added has none of it
    times: dict[str, Any] = {
        name: None if data.get(name) is None else dt(data[name]) for name in _TIMES
    }
    return TaskInstance(
        run_id=run_id,
        task_id=data["task_id"],
        state=TaskState(data["state"]),
        attempt=data["attempt"],
        attempt_base=data["attempt_base"],
        upstream=Upstream(*data["upstream"]),
        **times,
        outputs=data["outputs"],
        error=data["error"],
        priority=data["priority"],
        propagating=bool(data.get("propagating", False)),
        rerun_child=bool(data.get("rerun_child", False)),
        pool=data.get("pool"),
        pool_rank=data.get("pool_rank"),
        pool_slots=int(data.get("pool_slots", 0)),
    )


# ------------------------------------------------------------------ large documents
# An item holds at most 400 KB (names and values). A compressed body up to INLINE_MAX stays in
# its item; a larger one is split into chunk items of CHUNK_SIZE bytes each.
INLINE_MAX: Final = 300_000
CHUNK_SIZE: Final = 350_000


def pack(document: Any) -> bytes:
    return zlib.compress(json.dumps(document, separators=(",", ":"), default=str).encode(), 6)


def unpack(body: bytes) -> Any:
    return json.loads(zlib.decompress(body))


def split(body: bytes) -> list[bytes]:
    return [body[i : i + CHUNK_SIZE] for i in range(0, len(body), CHUNK_SIZE)]
