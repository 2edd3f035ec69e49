-- How far a projector has read its source's change log: the local feed's is the highest
-- `task_changes.seq` of the SQLite store whose changes are all in the read model (written in
-- the same transaction as the rows it projected), so a restart, or the batch after a failed
-- one, re-reads every task changed after it, whatever its run's state and counters: a
-- finished run's late attempt end, a rerun that ends as the run had ended.
CREATE TABLE feed_positions (
    source TEXT NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL
);
