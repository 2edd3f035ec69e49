-- The drawing of a workflow version's graph as the web UI laid it out (ELK), stored once per
-- version and input digest (a blake2b of the graph it draws: api/graph_layout.py), so a
-- second visit downloads it instead of laying the graph out again. A version never changes,
-- so neither does its row: written once (first writer wins), never updated.
-- `layout` is the JSON zlib-compressed then base64-encoded: TEXT crosses the Data API
-- without type hints and compares alike in every dialect (a 2,000-task layout: ~60 KB).
CREATE TABLE version_layouts (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    layout TEXT NOT NULL,
    chars INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (project, name, version, digest)
);
