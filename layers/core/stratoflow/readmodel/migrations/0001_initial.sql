-- Stratoflow read model, schema 1. One file for SQLite, PostgreSQL and Aurora (Data API).
--
-- Portable on purpose (see docs/readmodel.md):
--   * timestamps are TEXT in one fixed UTC form, 'YYYY-MM-DDTHH:MM:SS.ffffffZ', so they sort
--     and compare as text in every dialect and cross the Data API without type hints;
--   * JSON documents (params, outputs, details) are TEXT;
--   * `rev` is the change's revision as 40 zero-padded digits (a DynamoDB stream sequence
--     number has up to 40), so `excluded.rev > t.rev` orders revisions in every dialect;
--   * statements end with ';' at the end of a line: the runner splits on that (the Data API
--     takes one statement per call).
-- `project` is on every row that a user reaches directly; task instances and attempts are
-- reached only through their run, whose project is checked (issue 4 item 2 adds roles).

CREATE TABLE workflows (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    latest_version INTEGER NOT NULL,
    description TEXT,
    paused INTEGER NOT NULL DEFAULT 0,
    rev TEXT NOT NULL,
    PRIMARY KEY (project, name)
);

CREATE TABLE workflow_versions (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    document TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (project, name, version)
);

CREATE TABLE runs (
    id TEXT NOT NULL PRIMARY KEY,
    project TEXT NOT NULL,
    workflow TEXT NOT NULL,
    workflow_version INTEGER NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    logical_date TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    run_trigger TEXT NOT NULL,
    n_tasks INTEGER NOT NULL,
    n_done INTEGER NOT NULL,
    n_failed INTEGER NOT NULL,
    n_running INTEGER NOT NULL,
    error TEXT,
    rev TEXT NOT NULL
);

-- The last runs of a workflow (and of a project), newest first; keyset (created_at, id).
CREATE INDEX runs_workflow_created ON runs (project, workflow, created_at, id);
CREATE INDEX runs_project_created ON runs (project, created_at, id);
-- The same lists filtered by state: a rare state (running, failed) is found without a scan.
CREATE INDEX runs_workflow_state_created ON runs (project, workflow, state, created_at, id);
CREATE INDEX runs_project_state_created ON runs (project, state, created_at, id);
-- Logical-date windows (backfills, "runs of last week"), in logical-date order.
CREATE INDEX runs_workflow_logical ON runs (project, workflow, logical_date, id);

CREATE TABLE task_instances (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    attempt_base INTEGER NOT NULL,
    ready_at TEXT,
    deadline TEXT,
    started_at TEXT,
    ended_at TEXT,
    outputs TEXT NOT NULL,
    error TEXT,
    priority INTEGER NOT NULL,
    rev TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id)
);

CREATE TABLE attempts (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    exit_code INTEGER,
    error TEXT,
    log TEXT,
    outputs TEXT NOT NULL,
    rev TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id, attempt)
);

CREATE TABLE audit_log (
    id TEXT NOT NULL PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    project TEXT,
    target TEXT NOT NULL,
    details TEXT NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_project_at ON audit_log (project, at, id);
