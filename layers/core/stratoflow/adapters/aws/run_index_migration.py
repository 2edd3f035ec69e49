"""Moving the run items a version before 2026-12-06 wrote to gsi3's per-project partitions.

Those versions filed a run in gsi3 under ``RUNW#<workflow>``: every project's runs of a
workflow of that name in one partition, the project a filter. A project's listing of its
workflow read (and paid for) the other projects' runs of a same-named workflow. Runs are now
filed under ``RUNW#<project>#<workflow>`` (``_dynamo_items.runs_of_workflow_pk``); this
module rewrites the older items' ``gsi3pk`` in place. Until it is done, ``DynamoStore``'s
listing also reads the old partition (filtered by project, as before), so no run written
before the upgrade goes missing from a listing meanwhile.

How it goes (the reconciler calls ``step`` on every pass, within a time budget):

- A *pass* visits every run through gsi2's state partitions (``RUNS#<state>``, the six of them,
  oldest first; a Query, never a Scan) and, for each run still keyed the old way, makes one
  UpdateItem: ``SET gsi3pk = <new>`` on the condition ``gsi3pk = <old>``. It changes nothing
  else, so it cannot overwrite a newer state a scheduler wrote meanwhile; the condition keeps
  it from rewriting a run a writer re-keyed meanwhile or from making an item of a run deleted
  meanwhile (an UpdateItem would create one). A condition that fails is a run already moved.
- A run that leaves its state partition while a pass reads them (it ran, it ended) was moved
  by the write that changed its state: every run-state write of this version sets the new key
  too (``DynamoStore._run_write``, ``_plan_run_writes``). So a pass misses no old-keyed run
  that a function of this version could have changed.
- The pass's position (the state partition and the Query's ``LastEvaluatedKey``) is saved in
  the migration's item after each page, so a step interrupted anywhere (a throttle, the
  function's timeout) resumes at the page it was on; redoing a page is harmless (each write
  is conditional on the old key).
- It is done after a pass that began at least ``SETTLE`` after the first one: by then every
  function of the older version, whose invocations were still running during the deploy and
  could still create old-keyed runs, has ended (no invocation outlives 15 minutes), and that
  last pass saw whatever they wrote. Then ``done`` is set and the readers stop reading the old
  partitions.

The migration's own item, ``MIGRATION#run-index`` / ``M``, is in no index and ignored by the
projector (it projects ``RUN#`` and ``WF#`` items only). A stack rolled back to an older
version after the migration ended, and then forward again, may hold runs keyed the old way
that no later state write moved: deleting that item runs the migration again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from stratoflow.adapters.aws import _dynamo_items as it
from stratoflow.adapters.aws._dynamo_items import Item, key, n, s
from stratoflow.engine import RunState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

MIGRATION_KEY: Final = key("MIGRATION#run-index", "M")
# the longest a Lambda invocation of the older version can still run after the deploy
SETTLE: Final = 15 * 60.0
PAGE: Final = 100  # runs read per Query page (one save of the position per page)
_STATES: Final = tuple(RunState)


@dataclass(frozen=True)
class Progress:
    """What one ``step`` did: ``moved`` runs re-keyed; ``done``: nothing is left to move."""

    done: bool
    moved: int


def is_done(client: DynamoDBClient, table: str) -> bool:
    """Whether the migration has finished (one GetItem; a reader caches a True). Eventually
    consistent: a stale answer can only be "not yet", which costs a read of the old partition."""
    out = client.get_item(TableName=table, Key=MIGRATION_KEY, ProjectionExpression="done")
    return bool(out.get("Item", {}).get("done", {}).get("BOOL", False))


def needs_move(item: Item) -> bool:
    """Whether a run item is still in the old gsi3 partition of its workflow."""
    old = it.legacy_runs_of_workflow_pk(str(item["workflow"]["S"]))
    return bool(item.get("gsi3pk", {}).get("S") == old)


class RunIndexMigration:
    """``step`` moves old-keyed runs until ``seconds`` have passed (or ``pages`` pages); call
    it again to go on. Safe to run twice, concurrently, or with the scheduler writing runs.
    ``clock``: epoch seconds (the settle time); ``monotonic``: the step's budget."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.table = table
        self._clock = clock
        self._monotonic = monotonic

    def step(self, *, seconds: float = 60.0, pages: int | None = None) -> Progress:
        deadline = self._monotonic() + seconds
        state = self.client.get_item(
            TableName=self.table, Key=MIGRATION_KEY, ConsistentRead=True
        ).get("Item")
        if state is not None and state.get("done", {}).get("BOOL", False):
            return Progress(done=True, moved=0)
        if state is None or "pos" not in state:
            state = self._begin_pass(state)
            if state is None:  # another migrator began it meanwhile: it goes on
                return Progress(done=False, moved=0)
        began, pass_began = it.get_n(state, "began"), it.get_n(state, "pass_began")
        index, after = _position(str(state["pos"]["S"]))
        moved, read = 0, 0
        while index < len(_STATES):
            if self._monotonic() >= deadline or (pages is not None and read >= pages):
                return Progress(done=False, moved=moved)
            out = self.client.query(**self._page(_STATES[index], after))
            read += 1
            moved += sum(self._move(item) for item in out.get("Items", []) if needs_move(item))
            after = out.get("LastEvaluatedKey")
            if after is None:
                index += 1
            if not self._save(pass_began, index, after):
                return Progress(done=False, moved=moved)  # another migrator is further on
        if pass_began - began >= SETTLE:
            self._finish(pass_began)
            return Progress(done=True, moved=moved)
        if self._clock() - began >= SETTLE:  # the final pass, from the start
            self._restart(pass_began)
        return Progress(done=False, moved=moved)

    # ------------------------------------------------------------ a pass
    def _page(self, state: RunState, after: Item | None) -> dict[str, Any]:
        args: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "gsi2",
            "KeyConditionExpression": "gsi2pk = :pk",
            "ExpressionAttributeValues": {":pk": s(f"RUNS#{state.value}")},
            # the keys and what the new key is made of; "project" is a reserved word
            "ProjectionExpression": "pk, sk, #p, workflow, gsi3pk",
            "ExpressionAttributeNames": {"#p": "project"},
            "Limit": PAGE,
        }
        if after is not None:
            args["ExclusiveStartKey"] = after
        return args

    def _move(self, item: Item) -> bool:
        """Re-key one run; False if it no longer has the old key (moved, or deleted)."""
        project, workflow = str(item["project"]["S"]), str(item["workflow"]["S"])
        try:
            self.client.update_item(
                TableName=self.table,
                Key=key(str(item["pk"]["S"]), str(item["sk"]["S"])),
                UpdateExpression="SET gsi3pk = :new",
                # still keyed the old way: not re-keyed by a writer, not deleted (an update
                # of a missing key would create an item)
                ConditionExpression="gsi3pk = :old",
                ExpressionAttributeValues={
                    ":new": s(it.runs_of_workflow_pk(project, workflow)),
                    ":old": s(it.legacy_runs_of_workflow_pk(workflow)),
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # ------------------------------------------------------------ the migration's item
    def _begin_pass(self, state: Item | None) -> Item | None:
        """The first pass: ``began`` and ``pass_began`` now, at the first state partition."""
        now = n(int(self._clock()))
        item: Item = {**MIGRATION_KEY, "began": now, "pass_began": now, "pos": s(_pos(0, None))}
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                # nobody began it meanwhile
                ConditionExpression="attribute_not_exists(pk)"
                if state is None
                else "attribute_not_exists(pos) AND attribute_not_exists(done)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise
        return item

    def _save(self, pass_began: int, index: int, after: Item | None) -> bool:
        """The position after a page, if the pass is still this one and not done."""
        return self._update(
            "SET pos = :pos",
            {":pos": s(_pos(index, after))},
            pass_began,
        )

    def _restart(self, pass_began: int) -> None:
        """A new pass from the first partition, beginning now."""
        self._update(
            "SET pos = :pos, pass_began = :now",
            {":pos": s(_pos(0, None)), ":now": n(int(self._clock()))},
            pass_began,
        )

    def _finish(self, pass_began: int) -> None:
        self._update("SET done = :done REMOVE pos", {":done": {"BOOL": True}}, pass_began)
        log.info("run index migration done: every run is in its project's gsi3 partition")

    def _update(self, expression: str, values: Item, pass_began: int) -> bool:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=MIGRATION_KEY,
                UpdateExpression=expression,
                # the pass this migrator is in is still the current one (another may have
                # finished it and begun the next, or set done): never step back
                ConditionExpression="pass_began = :pass AND attribute_not_exists(done)",
                ExpressionAttributeValues={**values, ":pass": n(pass_began)},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _pos(index: int, after: Item | None) -> str:
    return json.dumps({"state": index, "after": after}, sort_keys=True, separators=(",", ":"))


def _position(pos: str) -> tuple[int, Item | None]:
    doc = json.loads(pos)
    after: Item | None = doc["after"]
    return int(doc["state"]), after
