"""The keys of a task item and its run's item in the state table, importing nothing: the
runner reads its task (its stop watch) and its run (a retry's look at a pause) with them, and its cold start does not load the engine (``_dynamo_items``,
which holds the rest of the item layout, re-exports them)."""

from __future__ import annotations

from typing import Final

TASK_PREFIX: Final = "T#"
RUN_SK: Final = "R"  # the run: its state fields; the commit point of create_run


def run_pk(run_id: str) -> str:
    return f"RUN#{run_id}"


def task_sk(task_id: str) -> str:
    return f"{TASK_PREFIX}{task_id}"
