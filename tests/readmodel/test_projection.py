"""The projection: idempotent, order-independent upserts (SQLite and the real PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratoflow.engine import Run, RunState, TaskState
from stratoflow.readmodel import AuditEntry, Change, Database, ReadModel
from tests.readmodel import factories as f
from tests.readmodel.strategies import deliveries, histories

TABLES = ["workflows", "workflow_versions", "runs", "task_instances", "attempts", "audit_log"]
ORDER = {
    "workflows": "project, name",
    "workflow_versions": "project, name, version",
    "runs": "id",
    "task_instances": "run_id, task_id",
    "attempts": "run_id, task_id, attempt",
    "audit_log": "id",
}


def dump(db: Database) -> dict[str, list[dict[str, object]]]:
    return {t: db.query(f"SELECT * FROM {t} ORDER BY {ORDER[t]}") for t in TABLES}


def clear(db: Database) -> None:
    for t in TABLES:
        db.execute(f"DELETE FROM {t}")


def test_a_run_is_stored_and_read_back_whole(rm: ReadModel) -> None:
    run = f.run(
        "r1",
        state=RunState.FAILED,
        started_at=f.T0,
        ended_at=f.T0.replace(minute=5),
        n_tasks=3,
        n_done=3,
        n_failed=1,
        error="task b failed",
        trigger="schedule",
    )
    rm.apply([Change(1, run)])
    assert rm.run("r1") == run


def test_an_older_or_repeated_change_changes_nothing(rm: ReadModel) -> None:
    # GIVEN a run projected at revision 5
    newer = f.run("r1", state=RunState.SUCCEEDED, n_done=2)
    rm.apply([Change(5, newer)])
    # WHEN an older snapshot arrives late, and the same revision arrives again with other data
    rm.apply([Change(3, f.run("r1", state=RunState.RUNNING))])
    rm.apply([Change(5, replace(newer, error="should not land"))])
    # THEN the stored run is still the revision-5 snapshot
    assert rm.run("r1") == newer
    # AND a newer revision does land
    rm.apply([Change(6, replace(newer, error="late note"))])
    assert rm.run("r1").error == "late note"


def test_within_one_batch_the_highest_revision_wins(rm: ReadModel) -> None:
    rm.apply(
        [
            Change(9, f.task(state=TaskState.SUCCEEDED, attempt=1)),
            Change(2, f.task(state=TaskState.RUNNING, attempt=1)),
            Change(9, f.task(state=TaskState.SUCCEEDED, attempt=1)),
        ]
    )
    (stored,) = rm.tasks("r1")
    assert stored.state is TaskState.SUCCEEDED


def test_workflow_latest_version_is_the_highest_seen_and_paused_follows_revisions(
    rm: ReadModel,
) -> None:
    v1, v2 = f.version(number=1), f.version(number=2)
    # v2 arrives first (rev 4, paused), v1 late (rev 1, unpaused)
    rm.apply([Change(4, replace(v2, paused=True))])
    rm.apply([Change(1, v1)])
    summary = rm.workflow("default", "etl")
    assert (summary.latest_version, summary.paused, summary.description) == (2, True, "etl v2")
    assert [v.version for v in rm.versions("default", "etl")] == [2, 1]
    assert rm.version("default", "etl", 1).source == v1.source
    # an unpause (rev 5) of the latest version lands
    rm.apply([Change(5, v2)])
    assert rm.workflow("default", "etl").paused is False


def test_the_same_audit_entry_recorded_twice_is_kept_once(rm: ReadModel) -> None:
    entry = AuditEntry("req-1", f.T0, "ann", "run.trigger", "run/r1", "default", {"n": 1})
    rm.record_audit(entry)
    rm.record_audit(replace(entry, actor="mallory"))
    assert rm.list_audit().items == [entry]


def test_an_unknown_record_type_is_refused(rm: ReadModel) -> None:
    with pytest.raises(TypeError, match="no projection for str"):
        rm.apply([Change(1, "run r1")])  # type: ignore[arg-type]
    assert rm.list_runs().items == []


def test_a_revision_outside_forty_digits_is_refused(rm: ReadModel) -> None:
    with pytest.raises(ValueError, match="outside"):
        rm.apply([Change(10**40, f.run())])
    with pytest.raises(ValueError, match="outside"):
        rm.apply([Change(-1, f.run())])


def test_stream_sequence_numbers_beyond_64_bits_order_correctly(rm: ReadModel) -> None:
    # DynamoDB stream sequence numbers are up to 40 digits: compared as numbers, not text
    small, big = 9 * 10**20, 10**21 + 1
    rm.apply([Change(big, f.run(state=RunState.SUCCEEDED))])
    rm.apply([Change(small, f.run(state=RunState.RUNNING))])
    assert rm.run("r1").state is RunState.SUCCEEDED


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_duplicated_and_shuffled_delivery_equals_in_order_delivery(
    rm: ReadModel, data: st.DataObject
) -> None:
    """The property behind invariant 2 for the read model: whatever the stream's order,
    batching and duplication, the tables end as if each change was applied once, in order,
    and each row holds its entity's last snapshot."""
    history = data.draw(histories())
    batches = data.draw(deliveries(history))
    clear(rm.db)
    for change in history:
        rm.apply([change])
    in_order = dump(rm.db)
    # the in-order result is the last snapshot of every entity
    last: dict[object, object] = {}
    for change in history:
        if isinstance(change.record, Run):
            last[change.record.id] = change.record
    for rid, run in last.items():
        assert rm.run(str(rid)) == run
    clear(rm.db)
    for batch in batches:
        rm.apply(batch)
    assert dump(rm.db) == in_order
