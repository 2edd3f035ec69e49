"""The garbage collector's settings for a process that keeps a scheduler (``stratoflow run``,
``stratoflow server``). Apart from the runtime so that a command sets them before it imports
the runtime and the model: that import allocates tens of thousands of objects that live as
long as the process, and with Python's default thresholds it set off collections that walked
them again and again (docs/benchmarks.md, "the CLI's start-up")."""

from __future__ import annotations

import gc

GC_THRESHOLDS = (50_000, 20, 100)  # Python's defaults: (700, 10, 10)


def collect_less() -> None:
    """A young collection every 50,000 allocations instead of 700, from now on."""
    gc.set_threshold(*GC_THRESHOLDS)
