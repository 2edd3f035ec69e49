"""Cold starts of the Lambda functions from the layer `sam build` makes: with its bytecode, and
without (what the python3.12 builder used to ship).

On Lambda the layer lies on a read-only /opt: a module without bytecode is compiled at every
cold start and the result thrown away. This script imports each function's handler module
the way Lambda's INIT phase does, in a fresh python3.12 per sample, from

- ``bytecode``: the built layer as it is (``.aws-sam/<build>/CoreLayer/python``), and
- ``source only``: a copy of it without any ``__pycache__``, run with
  ``PYTHONDONTWRITEBYTECODE=1`` so that every sample compiles again, as on /opt,

alternating the two, and prints the medians and their ratio. boto3 is the runtime's (Lambda
provides it, compiled): it is installed once into a scratch directory and compiled there, so
both variants import it the same way. No AWS request is made: the clients connect on first use.

    make sam-venv && .ci/check_aws.sh .venv-sam/bin     # builds .aws-sam/ci-build
    PYENV_VERSION=3.11.7:3.12.1 .venv/bin/python benchmarks/layer_cold_start.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "core"))

from stratoflow.adapters.aws.settings import AwsSettings  # noqa: E402

FUNCTIONS = {
    "api": ROOT / "functions/api/app.py",
    "advance": ROOT / "functions/advance/app.py",
    "trigger": ROOT / "functions/trigger/app.py",
    "lifecycle": ROOT / "functions/lifecycle/app.py",
    "runner": Path("stratoflow/adapters/aws/runner_lambda.py"),  # inside the layer
}

# a handler module imported as Lambda's INIT phase does (aws_cost.py uses it too)
HANDLER_IMPORT_CODE = """
import importlib.util, json, sys, time
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps({"import": time.perf_counter() - t0}))
"""


def fake_settings() -> dict[str, str]:
    """Every variable template.yaml gives a function, shaped as a deployed stack's (the handlers
    read and check them at import). Nothing is called: the clients connect on first use."""
    arn = "arn:aws:{}:us-east-1:123456789012:{}"
    values = dict.fromkeys(AwsSettings.ENV, "")
    values.update(
        table="sf-state", state_machine_arn=arn.format("states", "stateMachine:sf-task-attempt"),
        express_state_machine_arn=arn.format("states", "stateMachine:sf-task-attempt-express"),
        results_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/sf-results",
        results_dlq_url="https://sqs.us-east-1.amazonaws.com/123456789012/sf-results-dlq",
        event_bus="sf-events", bucket="sf-artifacts", schedule_group="sf",
        scheduler_role_arn="arn:aws:iam::123456789012:role/sf-scheduler",
        trigger_function_arn=arn.format("lambda", "function:sf-trigger"),
        batch_job_queue=arn.format("batch", "job-queue/sf"),
        runner_job_definition=arn.format("batch", "job-definition/sf-runner:1"),
        eks_cluster="sf", eks_namespace="stratoflow", stack="sf",
        project_boundary_arn="arn:aws:iam::123456789012:policy/sf-project-boundary",
        runner_layers=arn.format("lambda", "layer:sf-core:1"), secrets_prefix="stratoflow/",
        runner_log_retention_days="7", alert_table="sf-alerts",
    )  # fmt: skip
    return {
        **AwsSettings(**values).as_env(),
        # the api function's own (template.yaml sets them on ApiFunction only)
        "STRATOFLOW_ALERT_FUNCTION_ARN": arn.format("lambda", "function:sf-alert"),
        "STRATOFLOW_ADVANCE_FUNCTION_ARN": arn.format("lambda", "function:sf-advance"),
        "STRATOFLOW_AUTH_MODE": "IAM",
        "STRATOFLOW_IAM_ROLE_MAP": "{}",
    }


def python312() -> str:
    """The interpreter itself, not a pyenv shim (the samples run with a bare environment)."""
    found = shutil.which("python3.12")
    if found is None:
        sys.exit("python3.12 not found: run with PYENV_VERSION=3.11.7:3.12.1 (or put it on PATH)")
    out = subprocess.run([found, "-c", "import sys; print(sys.executable)"], check=True,
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip()


def sample(py: str, env: dict[str, str], module: Path) -> float:
    """Seconds of one cold start: the interpreter's start and the handler module's import."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [py, "-c", HANDLER_IMPORT_CODE, str(module)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    total = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"importing {module} failed:\n{out.stderr}")
    json.loads(out.stdout.strip().splitlines()[-1])  # the import did finish
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", type=Path, default=ROOT / ".aws-sam/ci-build/CoreLayer/python")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not (args.layer / "stratoflow").is_dir():
        sys.exit(f"{args.layer}/stratoflow not found: build the layer first (.ci/check_aws.sh)")
    py = python312()
    with tempfile.TemporaryDirectory(prefix="cold-") as tmp:
        runtime = Path(tmp) / "runtime"  # what Lambda's python3.12 runtime provides
        subprocess.run(
            [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(runtime), "boto3"],
            check=True,
        )  # fmt: skip
        subprocess.run([py, "-m", "compileall", "-q", "-j", "0", str(runtime)], check=True)
        source_only = Path(tmp) / "source-only"
        shutil.copytree(args.layer, source_only, ignore=shutil.ignore_patterns("__pycache__"))
        base = {
            "PATH": os.environ["PATH"], "LANG": "C.UTF-8", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "POWERTOOLS_LOG_LEVEL": "ERROR",
            "POWERTOOLS_METRICS_DISABLED": "true", **fake_settings(),
        }  # fmt: skip
        variants = {
            "bytecode": ({**base, "PYTHONPATH": f"{runtime}:{args.layer}"}, args.layer),
            "source only": (
                {**base, "PYTHONPATH": f"{runtime}:{source_only}", "PYTHONDONTWRITEBYTECODE": "1"},
                source_only,
            ),
        }
        print(f"python3.12: {py}; layer: {args.layer}; {args.repeat} alternated samples each")
        print(f"{'function':<10} {'bytecode s':>11} {'source only s':>14} {'ratio':>6}")
        for name, module in FUNCTIONS.items():
            times: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(args.repeat):
                for variant, (env, layer) in variants.items():
                    path = module if module.is_absolute() else layer / module
                    times[variant].append(sample(py, env, path))
            with_pyc, without = median(times["bytecode"]), median(times["source only"])
            print(f"{name:<10} {with_pyc:>11.3f} {without:>14.3f} {without / with_pyc:>5.2f}x")


if __name__ == "__main__":
    main()
