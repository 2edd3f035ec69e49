"""A sub-workflow's child run keeps its link to its parent in the read model (SQLite and the
real PostgreSQL): the run, the run lists and the workflows' last runs name the parent, and
a database migrated before the column existed gains it without losing a row."""

from __future__ import annotations

from stratoflow.readmodel import Change, Database, ReadModel
from stratoflow.readmodel._migrations import load_migrations, migrate
from stratoflow.readmodel._records import rev_text
from tests.readmodel import factories as f


def test_a_child_run_keeps_its_parent_and_a_top_level_run_has_none(rm: ReadModel) -> None:
    child = f.run("child", workflow="leaf", parent="top-run/sub")
    top = f.run("top-run", workflow="top", minute=1)
    rm.apply([Change(1, child), Change(2, top)])
    assert rm.run("child").parent == "top-run/sub"
    assert rm.run("top-run").parent is None
    listed = {r.id: r.parent for r in rm.list_runs(limit=10).items}
    assert listed == {"child": "top-run/sub", "top-run": None}


def test_the_migration_adds_the_column_to_a_database_that_has_runs(db: Database) -> None:
    # GIVEN a database migrated to 0001 only, holding a run
    migrate(db, load_migrations()[:1])
    db.execute(
        "INSERT INTO runs (id, project, workflow, workflow_version, state, params, logical_date, "
        "created_at, run_trigger, n_tasks, n_done, n_failed, n_running, rev) VALUES ('old', "
        "'default', 'etl', 1, 'succeeded', '{}', '2026-01-01T00:00:00.000000Z', "
        "'2026-01-01T00:00:00.000000Z', 'manual', 1, 1, 0, 0, :rev)",
        {"rev": rev_text(1)},
    )
    # WHEN the rest is applied
    assert 2 in migrate(db)
    # THEN the run is still there, with no parent, and a child run stores its link
    rm = ReadModel(db)
    assert rm.run("old").parent is None
    rm.apply([Change(3, f.run("new", parent="old/sub"))])
    assert rm.run("new").parent == "old/sub"
