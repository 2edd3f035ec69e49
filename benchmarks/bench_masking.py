"""What masking a project's secrets costs: building the masker, finding it again, and masking
a page of log, for a project whose secrets are large (the review's case: 25 values of 64 KiB)
and one at the bound on their total (``MAX_TOTAL_BYTES``, when the code has one).

- ``build``: ``masker_for`` the first time after the file changed (seconds, and the growth of
  the process's peak RSS, MB);
- ``again``: ``masker_for`` while nothing changed (microseconds: what every log view and
  every task result pays);
- ``page``: masking a 4 MiB log page (``MAX_LOG_CHUNK``) that holds none of the values
  (milliseconds), through ``Masker.window`` as the log view does.

    PYTHONPATH=layers/core python benchmarks/bench_masking.py
"""

from __future__ import annotations

import os
import resource
import secrets as random
import sys
import tempfile
import time
from pathlib import Path

from stratoflow import secrets as mod
from stratoflow.adapters.local.secrets import LocalSecrets
from stratoflow.secrets import masker_for


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(store: LocalSecrets, project: str, count: int, size: int) -> None:
    # written straight to the file: the store's bound on the total may refuse them (the case
    # of a file written before the bound, or by hand)
    values = {f"s{i}": random.token_hex(size // 2) for i in range(count)}
    store._write(project, values)


def case(home: Path, project: str, count: int, size: int) -> None:
    store = LocalSecrets(home)
    fill(store, project, count, size)
    before = peak_mb()
    t0 = time.perf_counter()
    masker = masker_for(store, project)
    build = time.perf_counter() - t0
    grown = peak_mb() - before
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        masker_for(store, project)
    again = (time.perf_counter() - t0) / n * 1e6
    page = (b"2026-03-01 12:00:00 INFO loading rows from the warehouse, batch 17\n" * 70_000)[
        : 4 * 1024 * 1024
    ]
    hold = getattr(masker, "hold", max(masker.longest - 1, 0))
    data = page + b"x" * hold
    t0 = time.perf_counter()
    try:
        masker.window(data, len(page), final=True)  # type: ignore[call-arg]
    except TypeError:  # the code before the fix
        masker.window(data, len(page))
    masked = (time.perf_counter() - t0) * 1e3
    print(
        f"{count:>5} x {size // 1024:>3} KiB  build {build:7.3f} s  (+{grown:6.1f} MB peak)  "
        f"again {again:8.1f} us  page {masked:8.1f} ms"
    )


def main() -> None:
    total = getattr(mod, "MAX_TOTAL_BYTES", None)
    print(f"python {sys.version.split()[0]}; MAX_TOTAL_BYTES = {total}")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.chmod(home, 0o700)
        case(home, "small", 10, 1024)
        case(home, "review", 25, 64 * 1024)
        case(home, "bound", 16, 64 * 1024)  # 1 MiB: the bound's worth of values
        case(home, "many", 1000, 1024)  # 1,000 secrets of 1 KiB: the same bound, many values


if __name__ == "__main__":
    main()
