"""Hypothesis strategies: histories of change records, as a store would emit them.

A history is a list of :class:`Change` with increasing revisions. Each step changes one
entity (a run, a task, an attempt, a workflow's versions or paused flag) and emits that
entity's full snapshot after the step, as the local feed and the DynamoDB stream do. An
audit step appends an entry.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta
from typing import Any

from hypothesis import strategies as st

from stratoflow.engine import Run, RunState, TaskInstance, TaskState
from stratoflow.ports import Attempt, WorkflowVersion
from stratoflow.readmodel import AuditEntry, Change
from tests.readmodel import factories as f

RUN_IDS = ["r1", "r2"]
TASK_IDS = ["a", "b"]

texts = st.text(alphabet="abcxyz é'\";%:", max_size=6)
outputs = st.dictionaries(st.sampled_from(["rows", "path"]), st.integers(0, 99) | texts, max_size=2)
seconds = st.integers(0, 10_000).map(lambda s: f.T0 + timedelta(seconds=s, microseconds=s * 7))


@st.composite
def histories(draw: st.DrawFn, max_steps: int = 25) -> list[Change]:
    runs: dict[str, Run] = {}
    tasks: dict[tuple[str, str], TaskInstance] = {}
    attempts: dict[tuple[str, str, int], Attempt] = {}
    versions: list[WorkflowVersion] = []
    paused = False
    out: list[Change] = []
    for rev in range(1, draw(st.integers(1, max_steps)) + 1):
        kind = draw(st.sampled_from(["run", "task", "attempt", "workflow", "audit"]))
        record: Any
        if kind == "run":
            rid = draw(st.sampled_from(RUN_IDS))
            old = runs.get(rid) or f.run(rid, minute=RUN_IDS.index(rid))
            record = runs[rid] = replace(
                old,
                state=draw(st.sampled_from(list(RunState))),
                n_done=draw(st.integers(0, 5)),
                n_running=draw(st.integers(0, 3)),
                started_at=draw(st.none() | seconds),
                error=draw(st.none() | texts),
            )
        elif kind == "task":
            key = (draw(st.sampled_from(RUN_IDS)), draw(st.sampled_from(TASK_IDS)))
            old_t = tasks.get(key) or f.task(*key)
            record = tasks[key] = replace(
                old_t,
                state=draw(st.sampled_from(list(TaskState))),
                attempt=old_t.attempt + draw(st.integers(0, 1)),
                outputs=draw(outputs),
                ended_at=draw(st.none() | seconds),
            )
        elif kind == "attempt":
            key3 = (
                draw(st.sampled_from(RUN_IDS)),
                draw(st.sampled_from(TASK_IDS)),
                draw(st.integers(1, 2)),
            )
            old_a = attempts.get(key3) or f.attempt(*key3)
            record = attempts[key3] = replace(
                old_a,
                state=draw(st.sampled_from(["running", "succeeded", "failed", "timed_out"])),
                exit_code=draw(st.none() | st.integers(-9, 2)),
                log=draw(st.none() | st.just("/tmp/x.log")),
                outputs=draw(outputs),
            )
        elif kind == "workflow":
            if not versions or draw(st.booleans()):
                versions.append(f.version(number=len(versions) + 1, paused=paused))
            else:
                paused = not paused
            record = replace(versions[-1], paused=paused)
        else:
            record = AuditEntry(
                id=f"e{rev}", at=draw(seconds), actor=draw(st.sampled_from(["ann", "bob"])),
                action="run.stop", target=f"run/{draw(st.sampled_from(RUN_IDS))}",
                project=draw(st.none() | st.just("default")), details={"why": draw(texts)},
            )  # fmt: skip
        out.append(Change(rev, record))
    return out


@st.composite
def deliveries(draw: st.DrawFn, history: list[Change]) -> list[list[Change]]:
    """The same changes as a stream delivers them: duplicated, reordered, in batches."""
    copies = [c for c in history for _ in range(draw(st.integers(1, 3)))]
    shuffled = draw(st.permutations(copies))
    cuts = sorted(draw(st.lists(st.integers(0, len(shuffled)), max_size=4)))
    bounds = [0, *cuts, len(shuffled)]
    return [shuffled[a:b] for a, b in itertools.pairwise(bounds) if a < b]
