"""Fault injection at every store write: a workflow is driven to its end once without a fault
(the baseline), then once per write k with the k-th write of the whole drive failing, and
what would happen next is let happen: the failed delivery comes again (SQS redelivers an
outcome; locally the loop puts its reports back), the process that failed is replaced by a
fresh one (a new Lambda container, a restarted server), and the reconciler passes. Every run
must end as the baseline did, and no (run, task, attempt) may be dispatched twice (the
recording dispatcher fails on a second dispatch of a key).

On DynamoDB the fault is raised at the boto3 client, so no store shortcut hides it; on SQLite
at the statement. Two kinds of fault: ``before`` (the write did not happen: a throttle) and
``after`` (it happened, but the caller saw an error: a timeout after the request).

The tests run small workflows for every k; ``python -m tests.faultinject`` sweeps the large
ones (a 1 -> 200 -> 1 fan, a stop while 150 tasks run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import re
import signal
import sqlite3
import sys
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from botocore.exceptions import ClientError

from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.engine import (
    AttemptResult,
    AttemptStatus,
    RunState,
    TaskInstance,
    TaskState,
    subworkflow,
)
from stratoflow.errors import Conflict, NotFound
from stratoflow.ports import Recovery, StateStore
from stratoflow.service import Finished, Scheduler
from tests.fakes import FakeClock, Key, RecordingDispatcher

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
WRITE_CALLS = frozenset(
    {"put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"}
)
WRITE_SQL = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class InjectedFault(Exception):
    """Marks the injected failure (the store raises its own error type around it)."""


@dataclass
class Faults:
    """Counts writes; fails the ``at``-th (1-based), once. ``after``: perform it, then fail."""

    at: int | None = None
    after: bool = False
    count: int = 0
    fired: bool = False
    fired_on: str = ""  # what the failed write was (on DynamoDB: its call and the keys it names)
    armed: bool = False  # the workflow's definition is stored before the writes count
    # a drive without a fault whose store lives in this process (moto): before each write it
    # is to check, it forks a child that fails that write (``Branches``)
    branches: Branches | None = None
    trail: list[str] | None = None  # when a list: each counted write's ``what``, in order

    def write(
        self, perform: Callable[[], Any], error: Callable[[], Exception], what: str = ""
    ) -> Any:
        if not self.armed:
            return perform()
        if self.branches is not None:
            self.branches.before(self.count + 1, self)
        self.count += 1
        if self.trail is not None:
            self.trail.append(what)
        if self.count != self.at:
            return perform()
        self.fired, self.fired_on = True, what
        if self.after:
            perform()
        raise error()


# a child that has not reported its outcome within this is killed (a drive ends in seconds)
BRANCH_LIMIT_S = 300


@dataclass
class Branches:
    """One drive without a fault stands for every drive with one: before write k (each of
    ``points``; all when None), the process forks once per kind in ``kinds`` (False: the write
    fails before it applies; True: after), and the child fails write k and drives on to the
    end, sending its ``Outcome`` (or what it raised) back through a pipe, while the parent waits
    for it and goes on without a fault. Every child has exactly the past a fresh drive failing
    write k would have had (the drive is deterministic), so a sweep costs the drives' halves
    after their faults, not whole drives (``test_a_forked_sweep_sees_what_fresh_drives_see``).
    Only for a store whose whole state is in this process's memory (moto): a child of a SQLite
    drive would write the parent's database file."""

    points: Collection[int] | None
    kinds: Sequence[bool]
    seen: Callable[[int, bool, Outcome | str], None]  # each outcome as it comes (may raise)
    outcomes: dict[tuple[int, bool], Outcome | str] = field(default_factory=dict)
    report_to: int | None = None  # in a child: the pipe its outcome goes to
    failed: AssertionError | None = None  # what ``seen`` raised: no more children after it

    def before(self, k: int, faults: Faults) -> None:
        if self.report_to is not None or self.failed is not None:
            return
        if self.points is not None and k not in self.points:
            return
        for late in self.kinds:
            got = self._branch(k, late, faults)
            if got is None:  # the child: fail write k, drive on, report (``drives``)
                return
            self.outcomes[(k, late)] = got
            try:
                self.seen(k, late, got)
            except AssertionError as failed:  # raised after the drive: the store could catch it
                self.failed = failed
                return

    def _branch(self, k: int, late: bool, faults: Faults) -> Outcome | str | None:
        """Fork; in the child, arm the fault at write k and return None; in the parent, return
        what the child reported, once it has ended."""
        parent = os.getpid()
        read, write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            raise
        if pid == 0:
            os.close(read)
            self.report_to = write
            faults.at, faults.after = k, late
            signal.signal(signal.SIGALRM, signal.SIG_DFL)  # not the test runner's handler
            signal.alarm(BRANCH_LIMIT_S)
            _die_with_parent(parent)
            return None
        os.close(write)
        try:
            with os.fdopen(read, "rb") as pipe:
                data = pipe.read()
            _, status = os.waitpid(pid, 0)
        except BaseException:  # interrupted (a test's timeout): no child left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            raise
        if not data:
            return f"the drive's process ended without an outcome ({_wait_status(status)})"
        got: Outcome | str = pickle.loads(data)
        return got

    def report(self, got: Outcome | BaseException) -> NoReturn:
        """In a child: send the outcome (or the traceback of what the drive raised), exit."""
        assert self.report_to is not None
        try:
            sent: Outcome | str = (
                got
                if isinstance(got, Outcome)
                else "".join(traceback.format_exception(got)).rstrip()
            )
            with os.fdopen(self.report_to, "wb") as pipe:
                pipe.write(pickle.dumps(sent))
        finally:
            os._exit(0)  # nothing of the parent's (atexit, buffers, the test runner) runs twice


def _die_with_parent(parent: int) -> None:
    """A child ends with the process that forked it (killed, say, by a test's timeout), not
    up to ``BRANCH_LIMIT_S`` later holding the test runner's descriptors."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _wait_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class FaultyClient:
    """A boto3 DynamoDB client whose writes go through ``Faults``."""

    def __init__(self, client: Any, faults: Faults) -> None:
        self._client = client
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name not in WRITE_CALLS:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._faults.write(
                lambda: attr(*args, **kwargs),
                lambda: ClientError(
                    {"Error": {"Code": "ProvisionedThroughputExceededException",
                               "Message": "injected fault"}},
                    name,
                ),
                _written(name, kwargs),
            )  # fmt: skip

        return call


_PLAN_ID = re.compile(r"P#\d{8}T\d{6}-[0-9a-f]{12}")


def _written(call: str, request: dict[str, Any]) -> str:
    """A DynamoDB write by its call and the keys of the items it writes, in order."""

    def key(of: dict[str, Any]) -> str:
        # a journaled plan's id (its items' keys) is the time and a random part: named alike
        # in every drive, so that drives without a fault write alike
        return _PLAN_ID.sub("P#<plan>", "/".join(of[a]["S"] for a in ("pk", "sk") if a in of))

    items = [request] if "TableName" in request else []
    items += [next(iter(t.values())) for t in request.get("TransactItems", ())]
    items += [r for rs in request.get("RequestItems", {}).values() for r in rs]
    forms = [f for i in items for f in (i, i.get("PutRequest", {}), i.get("DeleteRequest", {}))]
    keys = [key(f.get("Key") or f["Item"]) for f in forms if "Key" in f or "Item" in f]
    return f"{call} {' '.join(keys)}"


class FaultySqliteStore(SqliteStore):
    """SQLite with its write statements going through ``Faults``."""

    faults: Faults

    def _x(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        if sql.lstrip().upper().startswith(WRITE_SQL):
            return self.faults.write(  # type: ignore[no-any-return]
                lambda: super(FaultySqliteStore, self)._x(sql, args),
                lambda: sqlite3.OperationalError("disk I/O error (injected fault)"),
                " ".join(sql.split()[:3]),
            )
        return super()._x(sql, args)


class Executor(RecordingDispatcher):
    """Remembers what is executing; on recovery (the reconciler, a restart) it reports what
    was claimed but never started, and kills what executes for a task no longer running it
    (as the real dispatchers do)."""

    def recover(self, running: Sequence[TaskInstance]) -> Recovery:
        live = {(t.run_id, t.task_id, t.attempt) for t in running}
        for key in list(self.pending):
            if key not in live and key not in self.killed:
                self.killed.append(key)
        return Recovery(
            not_started=[
                t for t in running if (t.run_id, t.task_id, t.attempt) not in self.dispatched
            ]
        )


# ------------------------------------------------------------------ scenarios
@dataclass(frozen=True)
class Scenario:
    name: str
    yaml: str
    # task id -> how many of its first attempts fail
    fails: dict[str, int] = field(default_factory=dict)
    # an operation to run once the predicate on the tasks holds: "stop", "mark:<task>" (mark
    # it succeeded), "rerun" (rerun the failed tasks of the run that goes on; the tasks in
    # ``hang`` end once it applied), or "pause" (pause the run, then resume it; the tasks in
    # ``hang`` end once it is resumed)
    operation: tuple[Callable[[dict[str, TaskInstance]], bool], str] | None = None
    # tasks whose attempts never end by themselves (stopped by the operation)
    hang: frozenset[str] = frozenset()
    # a task whose attempt's end another process applies while the operation runs: after
    # the operation read the run, before its plan is written
    meanwhile: str | None = None
    # after the run ends as failed, rerun from this task with its failures cleared
    rerun_from: str | None = None
    # after the run ends as failed, repair the child run of sub-workflow task ``[0]`` on its
    # own: "rerun" (its failed tasks, which pass this time) or "mark:<task>" (marked
    # succeeded); the parent's task takes the child's new end
    child_repair: tuple[str, str] | None = None
    # workflows applied first (the children of its sub-workflow tasks)
    children: tuple[str, ...] = ()
    # global pools (name, slots) made before the workflows (children too) are applied
    pools: tuple[tuple[str, int], ...] = ()
    # global pools deleted once the workflow is applied (its tasks in them can never start)
    deleted_pools: tuple[str, ...] = ()
    # tasks that can never start ("t", or "sub>t" for the child run of sub-workflow task
    # ``sub``), each with what its error must say: whatever fails when, each ends FAILED
    # with one failed attempt recorded, and no attempt of it is ever dispatched
    unstartable: tuple[tuple[str, str], ...] = ()


def _tasks(lines: Sequence[str]) -> str:
    return "\n".join(f"  {line}" for line in lines)


def diamond() -> Scenario:
    return Scenario(
        "diamond",
        "name: diamond\ntasks:\n" + _tasks([
            'a: {type: shell, command: "true"}',
            'b: {type: shell, command: "true", depends_on: [a]}',
            'c: {type: shell, command: "true", depends_on: [a]}',
            'd: {type: shell, command: "true", depends_on: [b, c]}',
        ]),
    )  # fmt: skip


def serial() -> Scenario:
    """A workflow that allows one active run: its start also writes the workflow's admission
    (on DynamoDB, in the start's transaction)."""
    return Scenario(
        "serial",
        "name: serial\nmax_active_runs: 1\ntasks:\n" + _tasks([
            'a: {type: shell, command: "true"}',
            'b: {type: shell, command: "true", depends_on: [a]}',
        ]),
    )  # fmt: skip


def join_late() -> Scenario:
    """A join whose parents end in separate turns (a, then b after it): a's count in c is
    made alone (c is not ready), b's, the last, in the write that claims c (on DynamoDB:
    ``Scheduler._counts_along``)."""
    return Scenario(
        "join_late",
        "name: join_late\ntasks:\n" + _tasks([
            'a: {type: shell, command: "true"}',
            'b: {type: shell, command: "true", depends_on: [a]}',
            'c: {type: shell, command: "true", depends_on: [a, b]}',
        ]),
    )  # fmt: skip


def fan(width: int) -> Scenario:
    middle = [f'm{i}: {{type: shell, command: "true", depends_on: [root]}}' for i in range(width)]
    sink = f'sink: {{type: shell, command: "true", depends_on: [{", ".join(f"m{i}" for i in range(width))}]}}'
    return Scenario(
        f"fan{width}",
        f"name: fan{width}\ntasks:\n"
        + _tasks(['root: {type: shell, command: "true"}', *middle, sink]),
    )


def switch() -> Scenario:
    return Scenario(
        "switch",
        "name: switch\nparams: {n: 7}\ntasks:\n" + _tasks([
            'a: {type: shell, command: "true"}',
            'route: {type: switch, depends_on: [a], cases: [{when: "{{ params.n | int > 5 }}", next: [big]}], default: [small]}',
            'big: {type: shell, command: "true", depends_on: [route]}',
            'small: {type: shell, command: "true", depends_on: [route]}',
            'after_small: {type: shell, command: "true", depends_on: [small]}',
            'done: {type: shell, command: "true", depends_on: [big, after_small], trigger_rule: none_failed}',
        ]),
    )  # fmt: skip


def retried() -> Scenario:
    return Scenario(
        "retried",
        "name: retried\ndefaults: {retries: 2, retry_delay: 10s}\ntasks:\n" + _tasks([
            'a: {type: shell, command: "true"}',
            'flaky: {type: shell, command: "true", depends_on: [a]}',
            'b: {type: shell, command: "true", depends_on: [flaky]}',
        ]),
        fails={"flaky": 2},
    )  # fmt: skip


def stop_while_running(width: int) -> Scenario:
    def all_running(tasks: dict[str, TaskInstance]) -> bool:
        return all(tasks[f"w{i}"].state is TaskState.RUNNING for i in range(width))

    return Scenario(
        f"stop{width}",
        f"name: stop{width}\ntasks:\n"
        + _tasks(
            ['root: {type: shell, command: "true"}']
            + [
                f'w{i}: {{type: shell, command: "sleep 1000", depends_on: [root]}}'
                for i in range(width)
            ]
            + ['tail: {type: shell, command: "true", depends_on: [w0]}']
        ),
        operation=(all_running, "stop"),
        hang=frozenset(f"w{i}" for i in range(width)),
    )


def mark_running() -> Scenario:
    """While a hangs and b runs, a is marked succeeded (its attempt is killed), and b's end
    is applied by another process between the mark's read and its write: c, which waited on
    a, runs, and the run succeeds once c ends. The mark's plan changes the counters of a run
    that goes on by deltas (``Plan.deltas``), so b's count stands."""

    def a_running(tasks: dict[str, TaskInstance]) -> bool:
        # (b runs too the first time: both are roots) a mark that failed is made again, as
        # its user would, once b's end was applied meanwhile
        return tasks["a"].state is TaskState.RUNNING

    return Scenario(
        "mark_running",
        "name: mark_running\ntasks:\n" + _tasks([
            'a: {type: shell, command: "sleep 1000"}',
            'b: {type: shell, command: "true"}',
            'c: {type: shell, command: "true", depends_on: [a]}',
        ]),
        operation=(a_running, "mark:a"),
        hang=frozenset({"a"}),
        meanwhile="b",
    )  # fmt: skip


def rerun_running() -> Scenario:
    """While the run goes on, its failed branch is rerun (Airflow's *Clear* of a failed task
    of a running DAG run): a failed at its first attempt and h (all_done after it) hangs;
    the rerun resets a and kills h, while b's end (on a branch of its own) is applied by
    another process between the rerun's read and its write. a passes the second time, h
    runs again and ends, and the run succeeds. The rerun changes the counters of a run that
    goes on by deltas (``Plan.deltas``), so b's count stands."""

    def h_running(tasks: dict[str, TaskInstance]) -> bool:
        return tasks["h"].state is TaskState.RUNNING

    return Scenario(
        "rerun_running",
        "name: rerun_running\ntasks:\n" + _tasks([
            'a: {type: shell, command: "true"}',
            'x: {type: shell, command: "true"}',
            'h: {type: shell, command: "sleep 1000", depends_on: [a], trigger_rule: all_done}',
            'b: {type: shell, command: "true", depends_on: [x]}',
        ]),
        fails={"a": 1},
        operation=(h_running, "rerun"),
        hang=frozenset({"h"}),
        meanwhile="b",
    )  # fmt: skip


def pooled() -> Scenario:
    """Tasks sharing a global pool of 2 slots: a retry, a wide task, a task outside it."""
    return Scenario(
        "pooled",
        "name: pooled\ndefaults: {retries: 1, retry_delay: 10s}\ntasks:\n" + _tasks([
            'a: {type: shell, command: "true", pool: p}',
            'b: {type: shell, command: "true", pool: p, depends_on: [a], priority: 2}',
            'c: {type: shell, command: "true", pool: p, depends_on: [a]}',
            'free: {type: shell, command: "true", depends_on: [a]}',
            'wide: {type: shell, command: "true", pool: p, pool_slots: 2, depends_on: [b, c]}',
        ]),
        fails={"b": 1},
        pools=(("p", 2),),
    )  # fmt: skip


def pooled_stop() -> Scenario:
    """A stop while two pooled tasks hold the pool's slots and two wait for them."""

    def holding(tasks: dict[str, TaskInstance]) -> bool:
        return sum(t.state is TaskState.RUNNING for t in tasks.values()) == 2

    return Scenario(
        "pooled_stop",
        "name: pooled_stop\ntasks:\n"
        + _tasks([f'w{i}: {{type: shell, command: "sleep 1000", pool: p}}' for i in range(4)]),
        operation=(holding, "stop"),
        hang=frozenset(f"w{i}" for i in range(4)),
        pools=(("p", 2),),
    )


def pool_deleted() -> Scenario:
    """b's pool is deleted after the workflow was applied: once a ends, b fails naming it
    and never starts; c is upstream_failed, side goes on."""
    return Scenario(
        "pool_deleted",
        "name: pool_deleted\ntasks:\n" + _tasks([
            'a: {type: shell, command: "true"}',
            'b: {type: shell, command: "true", pool: gone, depends_on: [a]}',
            'c: {type: shell, command: "true", depends_on: [b]}',
            'side: {type: shell, command: "true", depends_on: [a]}',
        ]),
        pools=(("gone", 1),),
        deleted_pools=("gone",),
        unstartable=(("b", "pool 'gone' does not exist"),),
    )  # fmt: skip


POOLED_CHILD = "name: pchild\ntasks:\n" + _tasks([
    'x: {type: shell, command: "true", pool: p}',
    'y: {type: shell, command: "true", depends_on: [x]}',
])  # fmt: skip


def pooled_child_starved() -> Scenario:
    """The parent's sub-workflow task holds the one slot of pool p, which its child's x
    needs too (``engine.pools.starved_by_ancestors``): x fails naming the pool and never
    starts, y is upstream_failed, the child run fails, so do sub and the parent's run."""
    return Scenario(
        "pooled_child",
        "name: pooled_child\ntasks:\n" + _tasks([
            "sub: {type: workflow, workflow: pchild, pool: p}",
            'b: {type: shell, command: "true", depends_on: [sub]}',
        ]),
        children=(POOLED_CHILD,),
        pools=(("p", 1),),
        unstartable=(("sub>x", "pool 'p' can never start task x"),),
    )  # fmt: skip


def rerun_from_task() -> Scenario:
    return Scenario(
        "rerun",
        "name: rerun\ntasks:\n" + _tasks([
            'a: {type: shell, command: "true"}',
            'b: {type: shell, command: "true", depends_on: [a]}',
            'c: {type: shell, command: "true", depends_on: [b]}',
            'side: {type: shell, command: "true", depends_on: [a]}',
        ]),
        fails={"b": 1},
        rerun_from="b",
    )  # fmt: skip


CHILD = "name: child\ntasks:\n" + _tasks([
    'x: {type: shell, command: "true"}',
    'y: {type: shell, command: "true", depends_on: [x]}',
])  # fmt: skip
SUB_PARENT = "tasks:\n" + _tasks([
    'a: {type: shell, command: "true"}',
    'sub: {type: workflow, workflow: child, depends_on: [a]}',
    'b: {type: shell, command: "true", depends_on: [sub]}',
])  # fmt: skip


def subworkflow_rerun() -> Scenario:
    """The child's y fails once: the child run fails, so does the parent's task; the rerun of
    the parent from its sub-workflow task reruns the same child run from y."""
    return Scenario(
        "subworkflow", "name: subworkflow\n" + SUB_PARENT, fails={"y": 1},
        rerun_from="sub", children=(CHILD,),
    )  # fmt: skip


CHILD_N = "name: child_n\nparams: {n: 0}\ntasks:\n" + _tasks([
    'x: {type: shell, command: "echo {{ params.n }}"}',
    'y: {type: shell, command: "true", depends_on: [x]}',
])  # fmt: skip


def subworkflow_params() -> Scenario:
    """The child's params come from an upstream output (``a``'s ``n``: its attempt number).
    The child's y fails once, so both runs fail; the rerun from ``a`` gives ``n`` a new value
    and reruns the child whole with the params rendered now, written in the rerun's one write
    (the outcome holds the child's params, so a write that lost them is seen)."""
    parent = "tasks:\n" + _tasks([
        'a: {type: shell, command: "true"}',
        'sub: {type: workflow, workflow: child_n, depends_on: [a], params: {n: "{{ tasks.a.outputs.n }}"}}',
        'b: {type: shell, command: "true", depends_on: [sub]}',
    ])  # fmt: skip
    return Scenario(
        "subworkflow_params", "name: subworkflow_params\n" + parent, fails={"y": 1},
        rerun_from="a", children=(CHILD_N,),
    )  # fmt: skip


def subworkflow_repair() -> Scenario:
    """The child's y fails once: the child run fails, so do the parent's task and run. The
    child is then rerun on its own (its failed tasks): y passes, the child succeeds, and the
    parent's task takes that end, before the child's end is written: the parent run reopens,
    b runs, and the parent succeeds."""
    return Scenario(
        "subworkflow_repair", "name: subworkflow_repair\n" + SUB_PARENT, fails={"y": 1},
        child_repair=("sub", "rerun"), children=(CHILD,),
    )  # fmt: skip


def subworkflow_repair_mark() -> Scenario:
    """As ``subworkflow_repair``, but the child's failed y is marked succeeded: the mark's
    plan leaves the child running with every task ended, its end is written once the
    parent's task took it (the plan's write, the parent's take and the child's end are
    three writes: a crash between two is the reconciler's to finish)."""
    return Scenario(
        "subworkflow_repair_mark", "name: subworkflow_repair_mark\n" + SUB_PARENT,
        fails={"y": 1}, child_repair=("sub", "mark:y"), children=(CHILD,),
    )  # fmt: skip


def subworkflow_stop() -> Scenario:
    """A stop of the parent while its child's x runs stops (and kills) the child."""

    def child_started(tasks: dict[str, TaskInstance]) -> bool:
        return tasks["sub"].state is TaskState.RUNNING

    return Scenario(
        "subworkflow_stop", "name: subworkflow_stop\n" + SUB_PARENT,
        operation=(child_started, "stop"), hang=frozenset({"x"}), children=(CHILD,),
    )  # fmt: skip


def subworkflow_pause() -> Scenario:
    """A pause of the parent while its child's x runs pauses the child (a crash between the
    two writes is repaired by the reconciler); the resume resumes it, and both end."""

    def child_started(tasks: dict[str, TaskInstance]) -> bool:
        return tasks["sub"].state is TaskState.RUNNING

    return Scenario(
        "subworkflow_pause",
        "name: subworkflow_pause\ntasks:\n" + _tasks(["sub: {type: workflow, workflow: child}"]),
        operation=(child_started, "pause"), hang=frozenset({"x"}), children=(CHILD,),
    )  # fmt: skip


def repair_child(
    repair: tuple[str, str],
    scheduler: Scheduler,
    store: StateStore,
    run_id: str,
    operate: Callable[[Callable[[], Any]], bool],
) -> bool:
    """``Scenario.child_repair``: the operation on the child run, through ``operate`` (an API
    request); whether it is done (applied, or applied before the fault hit: the child is no
    longer failed)."""
    task_id, how = repair
    child_id = subworkflow.child_run_id(run_id, task_id, ("default", "child"))
    if how == "rerun":
        done = operate(lambda: scheduler.rerun(child_id))
    else:
        marked = how.removeprefix("mark:")
        done = operate(lambda: scheduler.mark(child_id, marked, TaskState.SUCCEEDED))
    return done or store.get_run(child_id).state is not RunState.FAILED


def _child_state(store: StateStore, run_id: str, task_id: str = "sub") -> str:
    child_id = subworkflow.child_run_id(run_id, task_id, ("default", "child"))
    try:
        return store.get_run(child_id).state.value
    except NotFound:
        return "none"


# the scenarios the test suite sweeps, by the name its tests give them
SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "diamond": diamond,
    "join_late": join_late,
    "serial": serial,
    "fan": lambda: fan(4),
    "switch": switch,
    "retried": retried,
    "stop": lambda: stop_while_running(6),
    "mark_running": mark_running,
    "rerun": rerun_from_task,
    "rerun_running": rerun_running,
    "subworkflow": subworkflow_rerun,
    "subworkflow_params": subworkflow_params,
    "subworkflow_stop": subworkflow_stop,
    "subworkflow_repair": subworkflow_repair,
    "subworkflow_repair_mark": subworkflow_repair_mark,
    "pooled": pooled,
    "pooled_stop": pooled_stop,
}


# ------------------------------------------------------------------ stores
StoreFactory = Callable[[Faults], Any]  # a context manager yielding a StateStore


@contextmanager
def sqlite_store(tmp: Path, faults: Faults) -> Iterator[StateStore]:
    store = FaultySqliteStore(tmp / f"state-{time.monotonic_ns()}.db")
    store.faults = faults
    try:
        yield store
    finally:
        store.close()


@contextmanager
def dynamodb_tables() -> Iterator[Callable[[Faults], Any]]:
    """Within one moto session (starting one costs seconds), a factory of stores, each on a
    table of its own."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client(
            "dynamodb", region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        made = 0

        @contextmanager
        def open_store(faults: Faults) -> Iterator[StateStore]:
            nonlocal made
            made += 1
            table = f"stratoflow-state-{made}"
            # without the stream: moto copies each stream record at a cost
            create_table(client, table, stream=False)
            try:
                # a lease of 0: a plan whose writer died is taken over by whoever comes next
                yield DynamoStore(table, client=FaultyClient(client, faults), lease=timedelta(0))
            finally:
                client.delete_table(TableName=table)

        yield open_store


# ------------------------------------------------------------------ the drive
@dataclass
class Outcome:
    run: RunState
    tasks: dict[str, str]
    dispatched: int
    writes: int
    fired: bool
    unkilled: list[Key]
    fired_on: str = ""


def _scheduler(store: StateStore, executor: Executor, clock: FakeClock, aws: bool) -> Scheduler:
    return Scheduler(
        store, store, executor, clock,  # type: ignore[arg-type]
        # AWS: every retry is dispatched at once (the state machine waits), as AwsFunction does
        retry_lead=timedelta(days=366) if aws else timedelta(0),
    )  # fmt: skip


def drive(scenario: Scenario, store: StateStore, faults: Faults, *, aws: bool) -> Outcome:
    clock = FakeClock(T0)
    executor = Executor()
    scheduler = _scheduler(store, executor, clock, aws)

    def operate(call: Callable[[], Any]) -> bool:
        """An API request: the operation, then the api function's dispatch after a change."""
        done = attempt(call)
        if aws:
            attempt(scheduler.step)
        return done

    def attempt(call: Callable[[], Any]) -> bool:
        """Run ``call``; on the injected fault, replace the process and let the reconciler
        pass (which may itself meet the fault: then it passes again)."""
        nonlocal scheduler
        try:
            call()
        except (ClientError, sqlite3.OperationalError, RuntimeError, Conflict):
            if not faults.fired:
                raise
            scheduler = _scheduler(store, executor, clock, aws)  # a fresh process
            for _ in range(3):
                try:
                    reconcile()
                    break
                except (ClientError, sqlite3.OperationalError, RuntimeError):
                    scheduler = _scheduler(store, executor, clock, aws)
            return False
        return True

    def reconcile() -> None:
        complete = getattr(store, "complete_pending_plans", None)
        if complete is not None:
            complete()
        scheduler.recover()
        scheduler.step()

    for pool, slots in scenario.pools:  # first: a child's task may name one
        scheduler.set_pool(pool, slots)
    for child in scenario.children:
        scheduler.apply(child)
    scheduler.apply(scenario.yaml)
    for pool in scenario.deleted_pools:
        scheduler.delete_pool(pool)
    faults.armed = True
    run_id = "run-1"
    name = scenario.yaml.split("\n", 1)[0].removeprefix("name: ")
    while not operate(lambda: scheduler.trigger("default", name, run_id=run_id)):
        pass
    operated = False
    reran = False
    repaired = False
    seen: dict[str, str] = {}  # "pause>"/"resume>": the child's state once that op is done
    hang = scenario.hang
    inbox: list[Finished] = []  # outcomes not yet acknowledged (SQS keeps them until then)
    # runs the advance function kicked for what its render budget left queued (its kicks are
    # SQS messages too: the next batch carries them, and a batch that fails keeps them)
    kicks: list[str] = []
    # runs whose slot-bound retries wait out their delay, by when (the advance function sends
    # each a delayed kick after its turn, ``AwsFunction.send_retry_wakes``; SQS keeps it)
    wakes: dict[str, datetime] = {}

    def elsewhere(task_id: str | None) -> None:
        """The attempt of ``task_id`` ends, applied by another process (on AWS another
        Lambda's advance); a delivery that fails is delivered again."""
        key = next((k for k in executor.pending if k[1] == task_id), None)
        if key is None:
            return
        executor.pending.pop(key)
        report = Finished(*key, AttemptResult(AttemptStatus.SUCCEEDED, {"n": key[2]}, exit_code=0))
        other = _scheduler(store, executor, clock, aws)
        try:
            if aws:
                other.advance([report])
            else:
                other.step([report])
        except BaseException:
            inbox.append(report)
            raise

    for _ in range(400):
        run = store.get_run(run_id)
        tasks = {t.task_id: t for t in store.get_tasks(run_id)}
        if run.state.terminal and not inbox:
            if scenario.rerun_from and not reran and run.state is RunState.FAILED:
                if operate(lambda: scheduler.rerun(run_id, from_task=scenario.rerun_from)):
                    reran = True
                elif store.get_run(run_id).state is RunState.RUNNING:
                    reran = True  # applied before the fault hit
                continue
            if scenario.child_repair and not repaired and run.state is RunState.FAILED:
                repaired = repair_child(scenario.child_repair, scheduler, store, run_id, operate)
                continue
            # a repaired child still running is the parent's next end (its attempts are
            # dispatched by the next turn)
            repairing = scenario.child_repair is not None and _child_state(
                store, run_id, scenario.child_repair[0]
            ) in ("queued", "running", "paused")
            if not repairing and (
                not executor.pending or all(k in executor.killed for k in executor.pending)
            ):
                break
        if scenario.operation and scenario.operation[1] == "pause":
            if "pause>" not in seen and scenario.operation[0](tasks):
                # applied, or applied before the fault hit (then the reconciler finished it)
                if operate(lambda: scheduler.pause(run_id)) or (
                    store.get_run(run_id).state is RunState.PAUSED
                ):
                    seen["pause>"] = _child_state(store, run_id)
                continue
            if "pause>" in seen and "resume>" not in seen:
                if operate(lambda: scheduler.resume(run_id)) or (
                    store.get_run(run_id).state is RunState.RUNNING
                ):
                    seen["resume>"] = _child_state(store, run_id)
                    hang = frozenset()
                continue
        elif scenario.operation and not operated and scenario.operation[0](tasks):
            if not store.get_run(run_id).state.terminal:
                how = scenario.operation[1]
                marked = how.removeprefix("mark:")
                with _meanwhile(store, partial(elsewhere, scenario.meanwhile)):
                    if operate(
                        (lambda: scheduler.stop(run_id))
                        if how == "stop"
                        else (lambda: scheduler.rerun(run_id))
                        if how == "rerun"
                        else partial(scheduler.mark, run_id, marked, TaskState.SUCCEEDED)
                    ):
                        operated = True
                    elif how == "rerun" and any(t.attempt_base for t in store.get_tasks(run_id)):
                        operated = True  # applied before the fault hit: not made twice
                if operated and how == "rerun":
                    hang = frozenset()  # what it killed runs again, and ends
                continue
            operated = True
        # the executor: every started attempt that is not meant to hang reports its end
        for key in list(executor.pending):
            if key in executor.killed:
                executor.pending.pop(key)
                inbox.append(Finished(*key, AttemptResult(AttemptStatus.STOPPED, error="killed")))
                continue
            _, task_id, number = key
            if task_id in hang:
                continue
            executor.pending.pop(key)
            failing = number <= scenario.fails.get(task_id, 0) and not (
                reran and task_id == scenario.rerun_from
            )
            result = (
                AttemptResult(AttemptStatus.FAILED, error="exit 1", exit_code=1)
                if failing
                else AttemptResult(AttemptStatus.SUCCEEDED, {"n": number}, exit_code=0)
            )
            inbox.append(Finished(*key, result))
        delivery, inbox = inbox, []
        if aws:
            # the delivery is an SQS batch, applied as one turn as the advance function does
            # (its ends of one run as one decision); the process dies at the fault, so the
            # whole batch is redelivered
            kicked, kicks = kicks, []
            due = {r: w for r, w in wakes.items() if w <= clock.now()}
            if attempt(lambda d=delivery, k=kicked, w=due: scheduler.advance(d, runs=k, wakes=w)):  # type: ignore[misc]
                kicks = scheduler.take_left_over()  # AwsFunction.kick_left_over
                for woken in due:
                    del wakes[woken]
                wakes.update(scheduler.take_retry_wakes())  # AwsFunction.send_retry_wakes
            else:
                inbox += delivery
                kicks = kicked
            if not (inbox or kicks or wakes or executor.pending or run.state.terminal):
                # a wake lost with a process that died before sending it: the reconciler's
                # periodic pass queues the retry once it is due
                attempt(reconcile)
        elif not attempt(lambda d=delivery: scheduler.step(d)):  # type: ignore[misc]
            inbox += delivery  # the local loop puts its reports back
        clock.advance(11)
    else:
        raise AssertionError(
            f"{scenario.name}: the run did not settle (fault at write {faults.at})"
        )
    # a last reconciler pass changes nothing any more
    reconcile()
    run = store.get_run(run_id)
    tasks = {t.task_id: t for t in store.get_tasks(run_id)}
    leftover = [t.task_id for t in tasks.values() if t.propagating]
    assert not leftover, f"propagation intents left behind: {leftover}"
    held = [(p.key, p.used) for p in getattr(store, "list_pools", list)() if p.used]
    assert not held, f"pool slots still held after the run ended: {held}"
    unkilled = [k for k in executor.pending if k not in executor.killed]
    states = {t: ti.state.value for t, ti in sorted(tasks.items())} | seen
    check_counters(store, run_id)
    targets = subworkflow.targets(scheduler.spec("default", name, 1))
    for path, says in scenario.unstartable:
        check_unstarted(store, executor, run_id, targets, path, says, faults)
    for task_id, target in sorted(targets.items()):
        try:  # a child run's end is part of the outcome: its state and its tasks'
            child = store.get_run(subworkflow.child_run_id(run_id, task_id, target))
        except NotFound:
            continue
        check_counters(store, child.id)
        states[f"{task_id}>"] = child.state.value
        states[f"{task_id}>params"] = json.dumps(child.params, sort_keys=True)
        for t in store.get_tasks(child.id):
            states[f"{task_id}>{t.task_id}"] = t.state.value
    return Outcome(
        run.state, states,
        len(executor.dispatched), faults.count, faults.fired, unkilled, faults.fired_on,
    )  # fmt: skip


@contextmanager
def _meanwhile(store: StateStore, action: Callable[[], None]) -> Iterator[None]:
    """Within: ``action`` runs once, when the first plan is about to be written (after its
    operation read the run and its tasks)."""
    original = store.apply_plan
    left = [action]

    def apply_plan(plan: Any, expect: RunState, **options: Any) -> bool:
        if left:
            left.pop()()
        return original(plan, expect, **options)

    store.apply_plan = apply_plan  # type: ignore[method-assign]
    try:
        yield
    finally:
        store.apply_plan = original  # type: ignore[method-assign]


def check_unstarted(
    store: StateStore,
    executor: Executor,
    run_id: str,
    targets: dict[str, tuple[str, str]],
    path: str,
    says: str,
    faults: Faults,
) -> None:
    """A task that can never start (``Scenario.unstartable``) ended FAILED saying ``says``,
    with its one attempt recorded as failed, and no attempt of it was ever dispatched."""
    sub, _, task_id = path.rpartition(">")
    if sub:
        run_id = subworkflow.child_run_id(run_id, sub, targets[sub])
    where = f"{path} (fault at write {faults.at})"
    started = [k for k in executor.dispatched if k[:2] == (run_id, task_id)]
    assert not started, f"{where}: dispatched although it can never start: {started}"
    task = store.get_task(run_id, task_id)
    assert task.state is TaskState.FAILED, f"{where}: {task.state}, expected failed"
    assert says in (task.error or ""), f"{where}: error {task.error!r} does not say {says!r}"
    attempts = [(a.attempt, a.state) for a in store.list_attempts(run_id, task_id)]
    assert attempts == [(task.attempt, "failed")], f"{where}: attempts {attempts}"


def check_counters(store: StateStore, run_id: str) -> None:
    """The run's counters match its tasks, and (DynamoDB) no reservation of ``apply_each``
    is left open on them."""
    run = store.get_run(run_id)
    tasks = store.get_tasks(run_id)
    expected = (
        sum(t.state.terminal for t in tasks),
        sum(t.state is TaskState.FAILED for t in tasks),
        sum(t.state is TaskState.RUNNING for t in tasks),
    )
    got = (run.n_done, run.n_failed, run.n_running)
    assert got == expected, f"run {run_id}: counters (done, failed, running) {got} != {expected}"
    if isinstance(store, DynamoStore):
        item = store.client.get_item(
            TableName=store.table, Key={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RC"}},
            ConsistentRead=True,
        )["Item"]  # fmt: skip
        open_ = sorted(a for a in item if a.startswith("r_"))
        nres = int(item.get("nres", {"N": "0"})["N"])
        assert not open_, f"run {run_id}: reservations left open: {open_}"
        assert nres == 0, f"run {run_id}: {nres} reservations counted open"


def sweep(scenario: Scenario, open_store: Callable[[Faults], Any], **options: Any) -> int:
    """Drive ``scenario`` without a fault, then with a fault at each write (``drives``, whose
    options it takes: ``aws``, ``after``, ``points``, ``within``, ``fork``); returns how many
    fault points were checked. Raises AssertionError naming the first that went wrong."""

    def check(baseline: Outcome, k: int, late: bool, got: Outcome | str) -> None:
        total = baseline.writes
        where = f"{scenario.name}: fault {'after' if late else 'at'} write {k} of {total}"
        assert not isinstance(got, str), f"{where}: {got}"
        assert got.run is baseline.run, f"{where}: run {got.run}, expected {baseline.run}"
        assert got.tasks == baseline.tasks, f"{where}: tasks {got.tasks} != {baseline.tasks}"
        assert not got.unkilled, f"{where}: attempts left running: {got.unkilled}"

    return len(drives(scenario, open_store, check=check, **options)[1])


Check = Callable[["Outcome", int, bool, "Outcome | str"], None]


def drives(
    scenario: Scenario,
    open_store: Callable[[Faults], Any],
    *,
    aws: bool,
    after: bool | Sequence[bool] = False,
    points: Sequence[int] | None = None,
    within: tuple[str, Sequence[str]] | None = None,
    fork: bool | None = None,
    check: Check | None = None,
) -> tuple[Outcome, dict[tuple[int, bool], Outcome | str]]:
    """``sweep``'s drives: the one without a fault, and one per (write, kind) to check, each
    the outcome of a drive failing that write, or (forked) the traceback of what it raised;
    ``check`` (the baseline, k, kind, outcome) sees each as it comes, so the first to fail it
    ends the sweep. ``aws``: drive as the AWS functions do (``drive``). ``after``: each
    fault after its write applied, or before, or (a sequence) each in turn. ``points``: the
    writes to fail (all by default). ``within``: (method, but_not) of ``writes_in``: fail only
    the writes the drive without a fault made there. ``fork``: by default, where the store's
    state is all in this process (``Branches``)."""
    faults = Faults(trail=[])
    traced: AbstractContextManager[list[int]]
    traced = nullcontext([]) if within is None else writes_in(faults, *within)
    with open_store(faults) as store, traced as inside:
        baseline = drive(scenario, store, faults, aws=aws)
        forkable = isinstance(store, DynamoStore) and hasattr(os, "fork")
    trail = faults.trail
    assert baseline.run.terminal, baseline
    assert not baseline.unkilled, baseline
    if within is not None:
        assert inside, f"{scenario.name}: no write in {within[0]}"
        points = inside
    kinds = [after] if isinstance(after, bool) else list(after)
    seen: Callable[[int, bool, Outcome | str], None] = (
        (lambda k, late, got: None) if check is None else partial(check, baseline)
    )
    if forkable if fork is None else fork:
        branches = Branches(None if points is None else frozenset(points), kinds, seen)
        faults = Faults(branches=branches, trail=[])
        with open_store(faults) as store:
            try:
                again = drive(scenario, store, faults, aws=aws)
            except BaseException as error:
                if branches.report_to is not None:
                    branches.report(error)
                raise
            if branches.report_to is not None:
                branches.report(again)
        if branches.failed is not None:
            raise branches.failed
        # the children failed the writes the points name: the second drive wrote as the first
        assert faults.trail == trail, f"{scenario.name}: the drive without a fault wrote otherwise"
        assert (again.run, again.tasks) == (baseline.run, baseline.tasks), (
            f"{scenario.name}: the drive without a fault ended otherwise the second time: {again}"
        )
        wanted = range(1, baseline.writes + 1) if points is None else points
        assert set(branches.outcomes) == {(k, late) for k in wanted for late in kinds}, (
            f"{scenario.name}: not every write was failed"
        )
        return baseline, branches.outcomes
    outcomes: dict[tuple[int, bool], Outcome | str] = {}
    for k in points if points is not None else range(1, baseline.writes + 1):
        for late in kinds:
            faults = Faults(at=k, after=late)
            with open_store(faults) as store:
                outcomes[(k, late)] = got = drive(scenario, store, faults, aws=aws)
            seen(k, late, got)
    return baseline, outcomes


@contextmanager
def writes_in(faults: Faults, method: str, but_not: Sequence[str] = ()) -> Iterator[list[int]]:
    """Within: the numbers of the writes (counted by ``faults``) made inside
    ``Scheduler.<method>``, except those inside the methods ``but_not`` it calls, filled in
    on leaving (``sweep``'s ``within``)."""
    found: dict[str, set[int]] = {name: set() for name in (method, *but_not)}
    originals = {name: getattr(Scheduler, name) for name in found}

    def traced(name: str) -> Callable[..., Any]:
        def call(self: Scheduler, *args: Any, **kwargs: Any) -> Any:
            first = faults.count
            try:
                return originals[name](self, *args, **kwargs)
            finally:
                found[name].update(range(first + 1, faults.count + 1))

        return call

    points: list[int] = []
    for name in found:
        setattr(Scheduler, name, traced(name))
    try:
        yield points
    finally:
        for name, original in originals.items():
            setattr(Scheduler, name, original)
    points += sorted(found[method].difference(*(found[name] for name in but_not)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--store", choices=["sqlite", "dynamodb", "both"], default="both")
    parser.add_argument("--fan", type=int, default=200)
    parser.add_argument("--stop", type=int, default=150)
    parser.add_argument("--every", type=int, default=1, help="check every N-th write only")
    args = parser.parse_args(argv)
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="faults-"))
    scenarios = [diamond(), switch(), retried(), rerun_from_task(), fan(args.fan),
                 stop_while_running(args.stop)]  # fmt: skip
    stores: list[tuple[str, Callable[[Faults], Any], bool]] = []
    if args.store in ("sqlite", "both"):
        stores.append(("sqlite", lambda f: sqlite_store(tmp, f), False))
    tables = dynamodb_tables()
    if args.store in ("dynamodb", "both"):
        stores.append(("dynamodb", tables.__enter__(), True))
    for label, factory, aws in stores:
        for scenario in scenarios:
            started = time.monotonic()
            faults = Faults()
            with factory(faults) as store:
                drive(scenario, store, faults, aws=aws)
            points = range(1, faults.count + 1, args.every)
            n = sweep(scenario, factory, aws=aws, points=points)
            print(f"{label:8} {scenario.name:8} {n:5} fault points ok "
                  f"({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
