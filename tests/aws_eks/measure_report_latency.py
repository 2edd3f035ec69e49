"""How long after a task's exit the reporter calls send-task-success (not a test; run it).

    .venv/bin/python -m tests.aws_eks.measure_report_latency

The pod's two scripts run under /bin/sh with a fake ``aws`` that stamps the time it starts,
so the figure is the scripts' share (the 1 s poll plus building the document); a real
AWS CLI v2 adds its start-up and one Step Functions API call.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stratoflow.adapters.aws.eks import reporter_script, task_script

FAKE_AWS = (
    f"#!{sys.executable}\nimport os, sys, time\n"
    "open(os.environ['LOG'], 'a').write(repr(time.time()) + ' ' + sys.argv[2] + '\\n')\n"
)


def once(delay: float) -> float:
    root = Path(tempfile.mkdtemp())
    (root / "bin").mkdir()
    (root / "shared").mkdir()
    (root / "bin" / "aws").write_text(FAKE_AWS)
    (root / "bin" / "aws").chmod(0o755)
    (root / "token").write_text("t")
    env = {
        "PATH": f"{root}/bin:/usr/bin:/bin",
        "LOG": str(root / "log"),
        "STRATOFLOW_DIR": str(root / "shared"),
        "STRATOFLOW_TOKEN_FILE": str(root / "token"),
        "STRATOFLOW_HEARTBEAT_SECONDS": "0",
    }
    reporter = subprocess.Popen(["/bin/sh", "-c", reporter_script(), "reporter"], env=env)
    time.sleep(delay)  # spread the task's end over the reporter's 1 s poll
    subprocess.run(["/bin/sh", "-c", task_script(), "task", "true"], env=env, check=True)
    ended = time.time()
    reporter.wait(timeout=30)
    return float((root / "log").read_text().split()[0]) - ended


def main() -> None:
    samples = [once(0.3 + i * 0.07) for i in range(10)]
    print("seconds from task exit to send-task-success:", " ".join(f"{s:.2f}" for s in samples))
    print(f"mean {sum(samples) / len(samples):.2f}  max {max(samples):.2f}")


if __name__ == "__main__":
    main()
