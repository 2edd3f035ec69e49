"""The CPU the local executor's bash wrapper costs a task, with and without its signal traps.

The wrapper (adapters/local/executor.py, WRAPPER) records an attempt's exit status in its log
for a scheduler that was not alive; since session 17 it also traps the catchable terminating
signals (a task killed by one was recorded as exit 0). This runs the wrapper with the body
`true` 400 times per sample, alternating: as it is ("new"), without the signal traps
("old"), and with only HUP, INT and TERM trapped ("three"); medians of 5 samples of the
children's user + system CPU per task.

    .venv/bin/python benchmarks/wrapper_cost.py
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "core"))
from stratoflow.adapters.local import executor as ex

new = ex.WRAPPER
old = re.sub(r"__stratoflow_died\(\) \{[^\n]*\}\n(trap '__stratoflow_died[^\n]*\n)+", "", new)
three = re.sub(r"trap '__stratoflow_died (USR1|USR2|PIPE|ALRM|XCPU|XFSZ) \d+' \w+\n", "", new)
assert new not in (old, three), "the traps were not found to take out"
env = {
    **os.environ,
    "__STRATOFLOW_BODY": "true",
    "STRATOFLOW_TASK_ID": "t",
    "STRATOFLOW_ATTEMPT": "1",
}
TOKEN = "0" * 32  # only in the argv, as the executor's token (wrapper_tokens): nothing reads it


def run(w: str, n: int = 400) -> float:
    u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(n):
        subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", w, "stratoflow-task", TOKEN],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime) / n * 1000


res: dict[str, list[float]] = {"old": [], "new": [], "three": []}
for _ in range(5):
    for k, w in (("old", old), ("new", new), ("three", three)):
        res[k].append(run(w))
for k, v in res.items():
    print(k, f"{statistics.median(v):.3f} ms/task of bash CPU", [round(x, 3) for x in v])
