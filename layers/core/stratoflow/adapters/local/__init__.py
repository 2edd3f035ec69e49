"""The local runtime: SQLite state, subprocess executors, the in-process cron loop."""
