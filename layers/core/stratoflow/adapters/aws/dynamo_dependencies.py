"""Dependency tasks' reads and wake-up index in the DynamoDB state table (a mixin of
``DynamoStore``).

- Runs by logical date: no run index is keyed by logical date (the three GSIs of a run item
  order by creation), so ``create_run`` commits, in the transaction that makes the run
  visible, one small marker item per run in the partition ``RUNL#<project>#<workflow>``, sort
  key ``<logical date>#<created>#<run id>``. A window is then one strongly consistent Query of
  that partition's key range, and the runs that decide it one BatchGetItem of their run items.
- Waits: ``DEPWAIT#<project>#<workflow>`` / ``<run id>#<task id>``, one item per upstream a
  waiting dependency task names, written when it starts waiting and deleted when it is decided
  (a stale one is dropped by the run end that finds it). The run end that wakes waiters reads
  this one partition: empty unless someone waits on the workflow.
The projector ignores both (their keys are neither ``RUN#`` nor ``WF#``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws._dynamo_items import Item, key, s
from stratoflow.engine import Run
from stratoflow.ports import DependencyStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

RUNS_BY_DATE_PREFIX: Final = "RUNL#"
WAIT_PREFIX: Final = "DEPWAIT#"


def logical_date_marker(run: Run) -> Item:
    """The item that files ``run`` under its workflow's logical dates (immutable: a run's
    logical date and creation never change)."""
    return {
        **key(
            f"{RUNS_BY_DATE_PREFIX}{run.project}#{run.workflow}",
            f"{it.ts(run.logical_date)}#{it.order_key(run.created_at, run.id)}",
        ),
        "id": s(run.id),
    }


class DynamoDependencies(DependencyStore):
    table: str
    client: DynamoDBClient

    def _query(self, *, limit: int | None = None, **kwargs: Any) -> Iterator[Item]:
        raise NotImplementedError  # pragma: no cover - DynamoStore's

    def _batch_get(self, keys: Sequence[Item]) -> list[Item]:
        raise NotImplementedError  # pragma: no cover - DynamoStore's

    def _batch_write(self, requests: Sequence[Item]) -> None:
        raise NotImplementedError  # pragma: no cover - DynamoStore's

    def runs_by_logical_date(
        self, project: str, workflow: str, start: datetime, end: datetime, limit: int
    ) -> list[Run]:
        # a marker's key is "<logical>#...": every one of [start, end) sorts in
        # [ts(start), ts(end)], and one for ``end`` itself sorts after ts(end)
        markers = list(
            self._query(
                KeyConditionExpression="pk = :pk AND sk BETWEEN :a AND :b",
                ExpressionAttributeValues={
                    ":pk": s(f"{RUNS_BY_DATE_PREFIX}{project}#{workflow}"),
                    ":a": s(it.ts(start)),
                    ":b": s(it.ts(end)),
                },
                ConsistentRead=True,
            )
        )
        # latest created first: the created part of the key, then the id
        markers.sort(key=lambda m: str(m["sk"]["S"]).split("#", 1)[1], reverse=True)
        ids = [str(m["id"]["S"]) for m in markers[:limit]]
        keys = [key(it.run_pk(run_id), it.RUN_SK) for run_id in ids]
        items = {str(i["id"]["S"]): i for i in self._batch_get(keys) if "lock" not in i}
        return [it.to_run(items[run_id], None) for run_id in ids if run_id in items]

    def add_dependency_waits(
        self, run_id: str, task_id: str, upstreams: Sequence[tuple[str, str]]
    ) -> None:
        self._batch_write(
            [
                {"PutRequest": {"Item": key(f"{WAIT_PREFIX}{p}#{w}", f"{run_id}#{task_id}")}}
                for p, w in upstreams
            ]
        )

    def dependency_waiters(self, project: str, workflow: str, limit: int) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for item in self._query(
            limit=limit,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": s(f"{WAIT_PREFIX}{project}#{workflow}")},
            ConsistentRead=True,
        ):
            run_id, task_id = str(item["sk"]["S"]).rsplit("#", 1)
            found.append((run_id, task_id))
            if len(found) >= limit:
                break
        return found

    def remove_dependency_waits(
        self, run_id: str, task_id: str, upstreams: Sequence[tuple[str, str]]
    ) -> None:
        self._batch_write(
            [
                {"DeleteRequest": {"Key": key(f"{WAIT_PREFIX}{p}#{w}", f"{run_id}#{task_id}")}}
                for p, w in upstreams
            ]
        )
