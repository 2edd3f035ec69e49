"""The metadata read model: history, search and the UI's lists, in SQL.

One schema and one set of statements for SQLite (local), PostgreSQL (``--db
postgresql://...``, psycopg 3) and Aurora Serverless v2 PostgreSQL through the RDS Data API.
See docs/readmodel.md.

- :class:`ReadModel` — the queries the API calls (lists with keyset cursors, run detail,
  tasks, attempts, audit log) and ``apply`` for change records.
- :class:`Projection` — change records -> idempotent upserts (duplicates and reordering
  change nothing); :class:`Rows` — rows already encoded, for a projector that reads text.
- :func:`connect`, :class:`SqliteDatabase`, :class:`PostgresDatabase`,
  :class:`DataApiDatabase` — the connection wrapper; :func:`migrate` — the migrations.
- ``stratoflow.adapters.local.feed.LocalFeed`` — the local runtime's inline projector.
"""

from stratoflow.readmodel._db import (
    DataApiDatabase,
    Database,
    Insert,
    PostgresDatabase,
    SqliteDatabase,
    carries_password,
    connect,
)
from stratoflow.readmodel._migrations import Migration, MigrationError, load_migrations, migrate
from stratoflow.readmodel._projection import (
    ATTEMPT_COLUMNS,
    AUDIT_COLUMNS,
    RUN_COLUMNS,
    TASK_COLUMNS,
    Projection,
    Rows,
)
from stratoflow.readmodel._queries import MAX_LIMIT, ReadModel
from stratoflow.readmodel._records import (
    FINAL_REV,
    AuditEntry,
    Change,
    Page,
    RunFilter,
    WorkflowSummary,
    attempt_row,
    json_text,
    rev_text,
    run_row,
    task_row,
    to_json,
    ts_text,
)

__all__ = [
    "ATTEMPT_COLUMNS",
    "AUDIT_COLUMNS",
    "FINAL_REV",
    "MAX_LIMIT",
    "RUN_COLUMNS",
    "TASK_COLUMNS",
    "AuditEntry",
    "Change",
    "DataApiDatabase",
    "Database",
    "Insert",
    "Migration",
    "MigrationError",
    "Page",
    "PostgresDatabase",
    "Projection",
    "ReadModel",
    "Rows",
    "RunFilter",
    "SqliteDatabase",
    "WorkflowSummary",
    "attempt_row",
    "carries_password",
    "connect",
    "json_text",
    "load_migrations",
    "migrate",
    "rev_text",
    "run_row",
    "task_row",
    "to_json",
    "ts_text",
]
