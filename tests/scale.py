"""How many tasks the tests "at scale" give a run.

Invariant 3 (a task's cost does not grow with its run) and the store's limits (25 items a
batch, 100 a transaction) are shown on a run of ``RUN_TASKS`` tasks: 1,000 by default, which
is 40 batches and 10 chunks of a transaction, enough for every limit to bind. On moto a run of
10,000 tasks takes minutes per test, so the suite does not make one on every run; the same
tests at 10,000 tasks are ``make test-scale`` (``STRATOFLOW_TEST_TASKS=10000 pytest -m scale``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_TASKS = 1_000


def run_tasks(environ: Mapping[str, str] = os.environ) -> int:
    """The size asked for in ``STRATOFLOW_TEST_TASKS``: a multiple of 100 (the tests divide
    it into batches of 25 and transactions of 100) from 1,000 to 100,000."""
    raw = environ.get("STRATOFLOW_TEST_TASKS", str(DEFAULT_TASKS))
    try:
        tasks = int(raw)
    except ValueError:
        raise ValueError(f"STRATOFLOW_TEST_TASKS must be a whole number, not {raw!r}") from None
    if not 1_000 <= tasks <= 100_000 or tasks % 100:
        raise ValueError(
            f"STRATOFLOW_TEST_TASKS must be a multiple of 100 from 1000 to 100000, not {tasks}"
        )
    return tasks


RUN_TASKS = run_tasks()
