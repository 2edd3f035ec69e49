-- A sub-workflow's child run links back to the task that started it:
-- "<parent run id>/<task id>" (NULL for a top-level run).
ALTER TABLE runs ADD COLUMN parent TEXT;
