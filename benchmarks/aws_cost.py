"""Orchestration cost of the AWS runtime, measured on the moto stack (no AWS account).

Runs W3 (10 layers x 50 tasks, each depending on 3 tasks of the layer above; the shape of
benchmarks/bench_local.py) through the whole stack of tests/aws_e2e/harness.py: the API
function applies and triggers, the real task-attempt state machine runs every attempt in moto's
Step Functions interpreter, the advance function applies the outcomes from the results queue in
batches of 10 (as the SQS event source delivers them). Twice: once with every task a ``batch``
task (AWS Batch through ``submitJob.sync``, Standard state machine), once with every task a
``shell`` task on the Lambda runner with ``timeout: 60s`` (short enough for the Express state
machine; a task without a timeout of its own runs on Standard, as batch tasks do).

It counts, per task:
- every AWS request our functions make, by service and operation (a botocore ``before-call``
  hook on each client the handlers built);
- the requests the state machine makes on our behalf and that are billed (the runner's Lambda
  invoke, the outcome's SQS SendMessage), from each execution's history;
- Step Functions state transitions per attempt (the ``*StateEntered`` events of each history:
  Step Functions bills one transition per state entered);
- DynamoDB read and write request units, from the items each request read, and the images
  before and after of each item it wrote (benchmarks/dynamo_units.py: the larger image, every
  GSI entry that appears, moves or changes, transactions at 2x); moto's own ConsumedCapacity
  figures are constants, so they are not used;
- EventBridge events put, S3 requests, Lambda invocations of our functions (the lifecycle
  function's too: it is handed the stream records its filters pass, one per invocation);
- each invocation's own CPU time (moto's share subtracted), the runner's and the trigger's
  wall time timed alone after the run, and each function's cold start (interpreter start plus
  the handler module's import, in fresh interpreters); the request round trip, Lambda's CPU
  share and the share of cold invocations are assumed and printed next to the figures;

and prices them at the published us-east-1 list prices below, Lambda's GB-s at the price of
each function's architecture as template.yaml deploys it (arm64); the durations are measured on
this x86_64 machine and applied to arm64 unchanged, an assumption printed next to the figure. What it does NOT count: the
tasks' own compute (the Batch/Fargate vCPU and memory seconds, the user's Lambda function, the
task's runtime inside the runner): that is the work, not its orchestration. Free tiers are
ignored (they only lower the figures).

    .venv/bin/python benchmarks/aws_cost.py            # both kinds, W3 (a few minutes)
    .venv/bin/python benchmarks/aws_cost.py --kind lambda --layers 2   # a quick look

Exit status 0 when every target holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import statistics
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from tests.aws_e2e.harness import Stack, aws_stack  # noqa: E402

from bench_local import layered  # noqa: E402
from dynamo_units import DynamoMeter, WriteCost, moto_images  # noqa: E402
from layer_cold_start import HANDLER_IMPORT_CODE  # noqa: E402

# ---------------------------------------------------------------- prices (us-east-1)
# Published list prices, us-east-1, as read from the AWS pricing pages on 2026-11-20
# (Standard workflows, Lambda by architecture, DynamoDB on-demand after its November 2024 price
# cut).
PRICES_AS_OF = "2026-11-20"
PRICE = {
    # https://aws.amazon.com/step-functions/pricing/ : $0.025 per 1,000 state transitions
    "sfn_transition": 0.025 / 1_000,
    # https://aws.amazon.com/lambda/pricing/ : $0.20 per 1M requests on either architecture;
    # GB-s by architecture: LAMBDA_GB_SECOND
    "lambda_request": 0.20 / 1_000_000,
    # https://aws.amazon.com/dynamodb/pricing/on-demand/ : $0.625 per 1M write request units,
    # $0.125 per 1M read request units
    "ddb_wru": 0.625 / 1_000_000,
    "ddb_rru": 0.125 / 1_000_000,
    # https://aws.amazon.com/sqs/pricing/ : standard queue, $0.40 per 1M requests (64 KB chunks)
    "sqs_request": 0.40 / 1_000_000,
    # https://aws.amazon.com/eventbridge/pricing/ : custom events, $1.00 per 1M (64 KB chunks)
    "events_put": 1.00 / 1_000_000,
    # https://aws.amazon.com/s3/pricing/ : S3 Standard, PUT $0.005 per 1,000, GET $0.0004 per 1,000
    "s3_put": 0.005 / 1_000,
    "s3_get": 0.0004 / 1_000,
    # https://aws.amazon.com/batch/pricing/ : no charge for Batch itself (compute is billed as
    # Fargate/EC2, which is the task's work, not orchestration)
    "batch_request": 0.0,
}

# https://aws.amazon.com/lambda/pricing/ (first 6 billion GB-s of a month): per GB-s, by the
# function's architecture, which is read from template.yaml (``function_architectures``).
LAMBDA_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
# ASSUMED: the handlers' durations are measured on this x86_64 machine and priced unchanged on
# arm64 (Graviton); how fast our Python runs there was not measured.
ARCHITECTURE_ASSUMPTION = (
    "durations measured on this x86_64 machine, applied to arm64 unchanged (assumed)"
)
TEMPLATE = ROOT / "template.yaml"


def function_architectures(template: Path | None = None) -> dict[str, str]:
    """Each function's architecture as template.yaml deploys it, by the name the meter uses:
    the directory of its CodeUri (functions/<name>/), from its Architectures or the Globals'
    (Lambda's default, x86_64, when neither names one); and ``runner`` (each project's
    runner function, made at run time on the core layer) from the CoreLayer's
    CompatibleArchitectures, which must be the one projects.py makes it on."""
    from samtranslator.yaml_helper import yaml_parse

    from stratoflow.adapters.aws.projects import RUNNER_ARCHITECTURE

    template = template or TEMPLATE
    doc = yaml_parse(template.read_text(encoding="utf-8"))
    default = (doc.get("Globals", {}).get("Function", {}) or {}).get("Architectures", ["x86_64"])
    found: dict[str, str] = {}
    for name, resource in doc["Resources"].items():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function":
            code = str(props.get("CodeUri", "")).strip("/")
            if not code.startswith("functions/"):
                raise ValueError(f"{template}: {name} has CodeUri {code!r}, not functions/<name>/")
            (arch,) = props.get("Architectures", default)
            found[code.removeprefix("functions/")] = arch
        elif name == "CoreLayer":
            (arch,) = props.get("CompatibleArchitectures", ["x86_64"])
            if arch != RUNNER_ARCHITECTURE:
                raise ValueError(
                    f"{template}: CoreLayer is built for {arch}, but projects.py makes the runners "
                    f"on {RUNNER_ARCHITECTURE}"
                )
            found["runner"] = arch
    unknown = {fn: arch for fn, arch in found.items() if arch not in LAMBDA_GB_SECOND}
    if unknown:
        raise ValueError(f"{template}: no GB-s price for the architectures of {unknown}")
    return found


def gb_second_price(function: str, architectures: Mapping[str, str]) -> float:
    """The GB-s price of ``function`` on the architecture the template gives it."""
    if function not in architectures:
        raise ValueError(f"{function}: not a function of template.yaml ({sorted(architectures)})")
    return LAMBDA_GB_SECOND[architectures[function]]


# Lambda duration, measured here where it can be (``HandlerClock``): each invocation's CPU time
# on its own thread, minus the CPU time spent inside moto answering its AWS requests (from
# botocore's before-send to its needs-retry: moto's work plus botocore's parsing of the
# response, which AWS would leave to us: a small flattering of the figure, stated). What
# cannot be measured here is assumed, and stated:
# - REQUEST_MS: the in-region round trip of one AWS request (DynamoDB, Step Functions, SQS,
#   EventBridge, S3), for which the handler waits;
# - Lambda's CPU share: a function gets one vCPU at 1,769 MB and a share proportional to its
#   memory below that (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html),
#   so CPU time measured on one core of this machine is scaled by 1769 / MB (3.46x at 512 MB),
#   taking this machine's core as fast as a Lambda vCPU;
# - cold starts: their init time is measured (the handler module imported in a fresh
#   interpreter, plus the interpreter's start) and billed (the INIT phase is billed since
#   2025-08-01), at COLD_START_SHARE of the invocations: a steady load reuses containers.
REQUEST_MS = 8.0
LAMBDA_FULL_VCPU_MB = 1769
COLD_START_SHARE = 0.01
MEMORY_MB = {
    "advance": 512, "api": 512, "trigger": 512, "reconciler": 512, "runner": 1024,
    "lifecycle": 256,
}  # fmt: skip


def cpu_scale(memory_mb: int) -> float:
    return max(LAMBDA_FULL_VCPU_MB / memory_mb, 1.0)


# Step Functions Express (short Lambda attempts run there): $1.00 per 1M requests and
# $0.00001667 per GB-s, billed in 64 MB memory steps and 100 ms steps with a 100 ms minimum
# (https://aws.amazon.com/step-functions/pricing/, read 2026-11-21). An attempt's execution
# uses far less than 64 MB of state. Its duration is not measurable on moto either: assumed,
# as for the functions, to be the runner's overhead plus the two requests the state machine
# makes (invoke the runner, send the outcome); the task's own runtime inside the runner adds
# 64 MB x its seconds ($1.04 per million tasks per second of task runtime), the work again.
EXPRESS_PRICES_AS_OF = "2026-11-21"
EXPRESS_REQUEST = 1.00 / 1_000_000
EXPRESS_GB_SECOND = 0.00001667
EXPRESS_GB = 64 / 1024
EXPRESS_STEP_MS = 100.0

TARGET_TRANSITIONS = 3
TARGET_BATCH_PER_MILLION = 90.0
TARGET_LAMBDA_PER_MILLION = 10.0


# ---------------------------------------------------------------- Lambda durations
@dataclass
class Sample:
    """One invocation: wall and thread CPU seconds, those spent inside moto, requests made."""

    wall: float = 0.0
    cpu: float = 0.0
    moto_wall: float = 0.0
    moto_cpu: float = 0.0
    requests: int = 0

    @property
    def own_cpu(self) -> float:
        return max(self.cpu - self.moto_cpu, 0.0)

    @property
    def own_wall(self) -> float:
        return max(self.wall - self.moto_wall, 0.0)


class HandlerClock:
    """Times every invocation of a function (``invocation``) and, on the clients it is attached
    to, the part of it spent inside moto: from the first before-send handler (moto answers
    there) to the first needs-retry handler (after the response is parsed). Per thread: the
    functions run on the main thread, the runner on each execution's thread."""

    def __init__(self) -> None:
        self.samples: dict[str, list[Sample]] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    @contextmanager
    def invocation(self, function: str) -> Iterator[Sample]:
        sample = Sample()
        self._local.sample = sample
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield sample
        finally:
            sample.wall = time.perf_counter() - wall
            sample.cpu = time.thread_time() - cpu
            self._local.sample = None
            with self._lock:
                self.samples.setdefault(function, []).append(sample)

    def attach(self, client: Any) -> None:
        def sent(**_: Any) -> None:
            if getattr(self._local, "sample", None) is not None:
                self._local.started = (time.perf_counter(), time.thread_time())

        def answered(**_: Any) -> None:
            sample: Sample | None = getattr(self._local, "sample", None)
            started = getattr(self._local, "started", None)
            if sample is None or started is None:
                return
            sample.moto_wall += time.perf_counter() - started[0]
            sample.moto_cpu += time.thread_time() - started[1]
            sample.requests += 1
            self._local.started = None

        client.meta.events.register_first("before-send", sent)
        client.meta.events.register_first("needs-retry", answered)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def modelled_ms(sample: Sample, memory_mb: int, *, own: float | None = None) -> float:
    """What the invocation would last on Lambda: its own CPU at Lambda's CPU share, plus one
    assumed round trip per AWS request; billed by the started millisecond."""
    own_s = sample.own_cpu if own is None else own
    return float(math.ceil(own_s * 1000 * cpu_scale(memory_mb) + sample.requests * REQUEST_MS))


def handler_module(name: str) -> Path:
    """The file Lambda imports for ``name``: functions/<name>/app.py, or for the runner (a
    function per project, made from the core layer) its handler module in the layer."""
    if name == "runner":
        return ROOT / "layers/core/stratoflow/adapters/aws/runner_lambda.py"
    return ROOT / "functions" / name / "app.py"


def cold_starts(env: Mapping[str, str], functions: list[str], repeat: int = 5) -> dict[str, float]:
    """Median seconds of a cold start per function on this machine: a fresh interpreter's start
    (``python -c pass``, the runtime's part) plus the import of the handler module
    (``handler_module``: its imports, boto3 clients, the scheduler), as Lambda's INIT phase runs it.
    No request is made at import (the clients connect on first use)."""
    import os
    import subprocess

    base = {**os.environ, **env, "PYTHONPATH": str(ROOT / "layers" / "core"),
            "POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"}  # fmt: skip
    interpreter = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=base)
        interpreter.append(time.perf_counter() - t0)
    start = median(interpreter)
    found = {"interpreter": start}
    for name in functions:
        times = []
        for _ in range(repeat):
            out = subprocess.run(
                [sys.executable, "-c", HANDLER_IMPORT_CODE, str(handler_module(name))],
                check=True, env=base, capture_output=True, text=True,
            )  # fmt: skip
            times.append(json.loads(out.stdout.strip().splitlines()[-1])["import"])
        found[name] = start + median(times)
    return found


# ---------------------------------------------------------------- the run
def workflow(kind: str, layers: int) -> tuple[str, int]:
    deps = layered(layers, 50)
    tasks: dict[str, dict[str, Any]] = {}
    for task_id, parents in deps.items():
        if kind == "batch":
            task: dict[str, Any] = {"type": "batch", "image": "busybox:latest", "command": ["true"]}
        else:
            # a short task with a timeout of its own: the dispatcher runs it on Express
            task = {"type": "shell", "command": "true", "timeout": "60s"}
        if parents:
            task["depends_on"] = parents
        tasks[task_id] = task
    name = f"w3_{kind}"
    return yaml.safe_dump({"name": name, "tasks": tasks}, sort_keys=False), len(deps)


@dataclass
class Measured:
    kind: str
    tasks: int
    seconds: float
    requests: Counter[str]
    invocations: Counter[str]
    by_function: Counter[str]
    sfn_side: Counter[str]
    transitions: list[int]  # every attempt, on either state machine
    standard_transitions: int  # the billed ones: Express bills requests and duration instead
    express_executions: int
    rru: float
    wru: float
    writes: WriteCost
    events_put: int
    run_state: str
    samples: dict[str, list[Sample]]  # per function, every invocation of the run
    quiet: dict[str, list[Sample]]  # runner and trigger, timed one at a time after the run
    cold: dict[str, float]  # seconds of a cold start per function


def _runner(
    stack: Stack, clock: HandlerClock, dynamo: DynamoMeter
) -> Callable[[dict[str, Any]], Any]:
    """The runner function's code (stratoflow.adapters.aws.runner) as runner_lambda
    calls it, with its own counted S3 and DynamoDB clients (the stop watch reads the task),
    timed by ``clock``. Returns the handler without the stop watch, for the quiet timing after
    the run (the watch would find the run over and not start the task; its one GetItem per
    invocation is counted in the run and priced as a round trip)."""
    from stratoflow.adapters.aws import runner

    s3 = stack.counted_client("s3")
    ddb = stack.counted_client("dynamodb")
    for client in (s3, ddb):
        clock.attach(client)
    dynamo.attach(ddb)
    table = stack.settings.table

    def timed(attempt: dict[str, Any]) -> Any:
        with clock.invocation("runner"):
            return runner.handle(attempt, None, s3=s3, dynamodb=ddb, table=table)

    stack.lambdas.handlers["RunnerFunction"] = timed
    return lambda attempt: runner.handle(attempt, None, s3=s3)


def cheap_moto_transactions(mp: pytest.MonkeyPatch) -> None:
    """moto's TransactWriteItems deep-copies the whole table once per item of the transaction,
    to roll back a cancelled one: with the 500-task run's table that is most of the benchmark's
    time (a run took over 15 minutes). Back up only the items the transaction touches instead,
    and put them back if it is cancelled. The semantics stay moto's (all or nothing); only the
    copy is smaller. Stream records of a cancelled transaction's partial writes are not taken
    back (the projector does not run here)."""
    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    class _Copy:
        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    mp.setattr(models, "copy", _Copy)
    original = DynamoDBBackend.transact_write_items

    def transact(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            keys = op.get("Key") or op.get("Item")
            if table is None or not keys:
                continue
            try:
                hash_key, range_key = self.get_keys_value(table, keys)
            except Exception:
                continue  # moto itself rejects it, before writing anything
            found = table.get_item(hash_key, range_key)
            saved.append((table, hash_key, range_key, copy.deepcopy(found)))
        try:
            original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in saved:
                partition = table.items[hash_key]
                if item is None:
                    partition.pop(range_key, None)
                else:
                    partition[range_key] = item
            raise

    mp.setattr(DynamoDBBackend, "transact_write_items", transact)


@contextmanager
def _stack() -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as mp:
        # the functions' own logs and metric documents would drown the figures
        mp.setenv("POWERTOOLS_LOG_LEVEL", "ERROR")
        mp.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        cheap_moto_transactions(mp)
        with aws_stack(mp, prefix="bench") as stack:
            yield stack


SCHEDULED = """
name: nightly_bench
schedule: {cron: "0 2 * * *"}
tasks:
  only: {type: shell, command: "true", timeout: 60s}
"""


def _quiet_timings(
    stack: Stack, clock: HandlerClock, runner: Callable[[dict[str, Any]], Any], repeat: int
) -> dict[str, list[Sample]]:
    """After the run, with nothing else running: the runner on a recorded attempt, then the
    trigger firing a one-task schedule (a new run each time, its first task dispatched), one
    invocation at a time, so that wall time means something (the runner waits for its process:
    wall, not CPU, is what it is billed)."""
    attempts = [p for name, p in stack.lambdas.calls if name == "RunnerFunction"]
    quiet: dict[str, list[Sample]] = {"runner": [], "trigger": []}
    for _ in range(repeat if attempts else 0):
        attempt = attempts[0]
        with clock.invocation("quiet-runner") as sample:
            outcome = runner(attempt)
        assert outcome["status"] == "succeeded", outcome
        quiet["runner"].append(sample)
    stack.lambdas.handlers["RunnerFunction"] = runner  # the fired runs' attempts: not timed
    status, body = stack.api("POST", "/workflows", {"source": SCHEDULED})
    assert status in (200, 201), body
    for day in range(repeat):
        firing = {"project": "default", "workflow": "nightly_bench",
                  "scheduled_time": f"2026-10-{day + 1:02d}T02:00:00Z"}  # fmt: skip
        before = len(clock.samples.get("trigger", []))
        assert stack.call("trigger", firing)["created"] is True
        quiet["trigger"].append(clock.samples["trigger"][before])
        stack.wait_executions(timeout=60)
    return quiet


def measure(kind: str, layers: int, timeout: float, *, repeat: int = 20) -> Measured:
    text, n = workflow(kind, layers)
    with _stack() as stack:
        clock = HandlerClock()
        dynamo = DynamoMeter(moto_images())
        runner = _runner(stack, clock, dynamo)
        events_put = Counter[str]()
        for module in stack.functions.values():
            clients = module.function.clients
            dynamo.attach(clients.dynamodb)
            for client in vars(clients).values():
                clock.attach(client)
            clients.events.meta.events.register(
                "before-parameter-build.eventbridge.PutEvents",
                lambda params, **_: events_put.update(entries=len(params.get("Entries", []))),
            )
        # the lifecycle function (fed by the stream) publishes the events
        lifecycle = stack.lifecycle.publisher
        dynamo.attach(lifecycle.store.client)
        clock.attach(lifecycle.store.client)
        clock.attach(lifecycle.events.client)
        lifecycle.events.client.meta.events.register(
            "before-parameter-build.eventbridge.PutEvents",
            lambda params, **_: events_put.update(entries=len(params.get("Entries", []))),
        )
        call = stack.call

        def timed(function: str, event: dict[str, Any]) -> Any:
            with clock.invocation(function):
                return call(function, event)

        stack.call = timed  # type: ignore[method-assign]
        started = time.monotonic()
        status, body = stack.api("POST", "/workflows", {"source": text})
        assert status in (200, 201), body
        status, body = stack.api("POST", f"/workflows/w3_{kind}/runs", {})
        assert status == 201, body
        run_id = body["run"]["id"]
        state = stack.run_ends(run_id, timeout=timeout)
        seconds = time.monotonic() - started
        # the stream's changes that pass the lifecycle function's filters, one invocation
        # each (conservative: Lambda batches what arrives within a second)
        stack.publish_lifecycle(batch=1)
        if state != "succeeded":
            failed = [t for t in stack.observer.get_tasks(run_id) if t.error]
            for t in failed[:5]:
                print(f"  {t.task_id}: {t.state.value}: {t.error}", file=sys.stderr)
        stack.wait_executions(timeout=60)
        histories = stack.histories()
        transitions = [sum(1 for e in h if e["type"].endswith("StateEntered")) for h in histories]
        express = stack.histories(stack.settings.express_state_machine_arn)
        standard = stack.histories(stack.settings.state_machine_arn)
        billed = sum(sum(1 for e in h if e["type"].endswith("StateEntered")) for h in standard)
        sfn_side = Counter[str]()
        for h in histories:
            for e in h:
                if e["type"] == "TaskScheduled":
                    d = e["taskScheduledEventDetails"]
                    sfn_side[f"{d['resourceType']}.{d['resource']}"] += 1
        # the figures of the run, taken before the quiet timings add requests of their own
        measured = Measured(
            kind=kind,
            tasks=n,
            seconds=seconds,
            requests=Counter(stack.requests),
            invocations=Counter(stack.invocations),
            by_function=Counter(stack.by_function),
            sfn_side=sfn_side,
            transitions=transitions,
            standard_transitions=billed,
            express_executions=len(express),
            rru=dynamo.rru,
            wru=dynamo.wru,
            writes=copy.deepcopy(dynamo.writes),
            events_put=events_put["entries"],
            run_state=state,
            samples={k: list(v) for k, v in clock.samples.items()},
            quiet={},
            cold={},
        )
        measured.quiet = _quiet_timings(stack, clock, runner, repeat)
        measured.cold = cold_starts(stack.env, ["advance", "api", "trigger", "runner", "lifecycle"])
        return measured


# ---------------------------------------------------------------- pricing
def runner_ms(m: Measured) -> float:
    """One runner invocation on Lambda: the quiet median of its wall time outside moto (it
    waits for the task's process, so wall, not CPU), all of it scaled to the runner's CPU share
    (conservative: the process's start is not all CPU), plus one round trip per request it made
    in the run (the log upload, the stop watch's reads)."""
    calls = len(m.samples.get("runner", []))
    requests = sum(x.requests for x in m.samples.get("runner", [])) / max(calls, 1)
    own = median([x.own_wall for x in m.quiet.get("runner", [])])
    return math.ceil(own * 1000 * cpu_scale(MEMORY_MB["runner"]) + requests * REQUEST_MS)


def lambda_ms(m: Measured) -> dict[str, float]:
    """Billed milliseconds per function over the whole run: each invocation modelled from its
    own measurement (``modelled_ms``); the runner from ``runner_ms``; plus the cold starts'
    init time at COLD_START_SHARE of the invocations."""
    total: dict[str, float] = {}
    for fn, samples in m.samples.items():
        memory = MEMORY_MB.get(fn, 512)
        if fn == "runner":
            ms = len(samples) * runner_ms(m)
        else:
            ms = sum(modelled_ms(x, memory) for x in samples)
        cold = m.cold.get(fn, 0.0) * 1000 * cpu_scale(memory)
        total[fn] = ms + COLD_START_SHARE * len(samples) * cold
    return total


def advance_memory_what_if(
    m: Measured, sizes: Sequence[int] = (256, 512, 1024)
) -> list[dict[str, float]]:
    """The advance function priced at other memory sizes from the same measurement: a smaller
    one bills the requests' round trips (waiting, not CPU) at fewer GB, but gives the function
    a smaller CPU share, so each invocation (the path from an outcome to its children's
    dispatch) takes longer. Per million tasks, and the median modelled invocation in ms."""
    samples = m.samples.get("advance", [])
    price = gb_second_price("advance", function_architectures())
    rows = []
    for mb in sizes:
        ms = sum(modelled_ms(x, mb) for x in samples)
        ms += COLD_START_SHARE * len(samples) * m.cold.get("advance", 0.0) * 1000 * cpu_scale(mb)
        gb_s = ms / 1000 * mb / 1024
        rows.append({
            "memory_mb": mb,
            "gb_s_cost_per_million": gb_s * price / m.tasks * 1e6,
            "median_invocation_ms": median([modelled_ms(x, mb) for x in samples]) if samples else 0.0,
        })  # fmt: skip
    return rows


def cost_per_task(m: Measured) -> dict[str, Decimal]:
    n = m.tasks
    per: dict[str, float] = {}
    per["Step Functions transitions"] = m.standard_transitions * PRICE["sfn_transition"]
    # an Express attempt lasts the runner's invocation plus its two requests (the invoke, the
    # outcome's SendMessage), billed in 100 ms steps
    express_ms = runner_ms(m) + 2 * REQUEST_MS if m.express_executions else 0.0
    express_ms = max(math.ceil(express_ms / EXPRESS_STEP_MS), 1) * EXPRESS_STEP_MS
    per["Step Functions Express"] = m.express_executions * (
        EXPRESS_REQUEST + express_ms / 1000 * EXPRESS_GB * EXPRESS_GB_SECOND
    )
    lam_requests = sum(m.invocations.values()) + m.sfn_side["lambda.invoke"]
    architectures = function_architectures()
    gb_s_cost = sum(
        ms / 1000 * MEMORY_MB.get(fn, 512) / 1024 * gb_second_price(fn, architectures)
        for fn, ms in lambda_ms(m).items()
    )
    per["Lambda requests"] = lam_requests * PRICE["lambda_request"]
    per["Lambda GB-s"] = gb_s_cost
    per["DynamoDB writes"] = m.wru * PRICE["ddb_wru"]
    per["DynamoDB reads"] = m.rru * PRICE["ddb_rru"]
    # SQS: the state machine's SendMessage per attempt; the event source mapping's receive and
    # delete-batch per advance invocation (its idle long polling is a fixed cost, not per task)
    sqs = m.sfn_side["sqs.sendMessage"] + 2 * m.invocations["advance"]
    sqs += sum(v for k, v in m.requests.items() if k.startswith("sqs."))
    per["SQS requests"] = sqs * PRICE["sqs_request"]
    per["EventBridge events"] = m.events_put * PRICE["events_put"]
    s3_put = sum(v for k, v in m.requests.items() if k in ("s3.PutObject",))
    s3_get = sum(v for k, v in m.requests.items() if k in ("s3.GetObject",))
    per["S3 requests"] = s3_put * PRICE["s3_put"] + s3_get * PRICE["s3_get"]
    return {k: Decimal(v / n) for k, v in per.items()}


def durations(m: Measured) -> list[dict[str, Any]]:
    """Per function: what was measured, what moto took of it, and the modelled Lambda time."""
    rows = []
    for fn, samples in [*m.samples.items(), *(("quiet " + k, v) for k, v in m.quiet.items())]:
        if not samples:
            continue
        name = fn.removeprefix("quiet ")
        memory = MEMORY_MB.get(name, 512)
        modelled = runner_ms(m) if name == "runner" else median(
            [modelled_ms(x, memory) for x in samples])  # fmt: skip
        rows.append({
            "function": fn, "invocations": len(samples),
            "wall_ms": 1000 * median([x.wall for x in samples]),
            "cpu_ms": 1000 * median([x.cpu for x in samples]),
            "moto_cpu_ms": 1000 * median([x.moto_cpu for x in samples]),
            "moto_wall_ms": 1000 * median([x.moto_wall for x in samples]),
            "own_cpu_ms": 1000 * median([x.own_cpu for x in samples]),
            "own_wall_ms": 1000 * median([x.own_wall for x in samples]),
            "requests": median([float(x.requests) for x in samples]),
            "modelled_ms": modelled,
            "cold_start_ms": 1000 * m.cold.get(name, 0.0),
        })  # fmt: skip
    return rows


def print_writes(w: WriteCost, n: int, *, limit: int = 25) -> None:
    """Where the write units go, write by write: per kind of write (request, item kind, the
    item's state before -> after, the attributes it added/removed/changed and the index
    entries it put (+), moved (~) or removed (-)), per task: how many, table and index units,
    the mean item size before and after and the largest image (bytes)."""
    print("  WRU per task by write (count, table + index units per task; mean bytes before -> "
          "after, largest):")  # fmt: skip
    rows = sorted(w.by_write.items(), key=lambda kv: -(kv[1].table + kv[1].index))
    for what, t in rows[:limit]:
        print(f"    {(t.table + t.index) / n:5.2f} = {t.table / n:4.2f} + {t.index / n:4.2f} "
              f"x{t.count / n:5.2f}  {t.old_size // t.count:>4} -> {t.new_size // t.count:>4} "
              f"(max {t.max_size:>4})  {what}")  # fmt: skip
    rest = rows[limit:]
    if rest:
        units = sum(t.table + t.index for _, t in rest)
        print(f"    {units / n:5.2f} in {len(rest)} other kinds of write")


def report(m: Measured) -> list[tuple[str, bool]]:
    n = m.tasks
    print(f"\n=== W3, {m.kind} tasks: {n} tasks, run {m.run_state} in {m.seconds:.1f} s (moto)")
    print("AWS requests per task, by our functions (service.operation):")
    for key, count in sorted(m.requests.items()):
        print(f"  {key:<40} {count / n:8.3f}")
    print("made by the state machine, per task:")
    for key, count in sorted(m.sfn_side.items()):
        print(f"  {key:<40} {count / n:8.3f}")
    print("function invocations per task:")
    for key, count in sorted(m.invocations.items()):
        print(f"  {key:<40} {count / n:8.3f}")
    w = m.writes
    print(f"DynamoDB units per task: {m.rru / n:.2f} RRU, {m.wru / n:.2f} WRU "
          f"({w.table / n:.2f} table, {w.index / n:.2f} index; billing the index writes of "
          f"transactions twice too would add {w.index_in_transactions / n:.2f})")  # fmt: skip
    print(
        "  WRU per task by request and item kind (sk prefix: R run, RC counters, T# task, A# attempt):"
    )
    for what, units in w.by_item.most_common(12):
        print(f"    {what:<36} {units / n:6.2f}")
    print_writes(w, n)
    print(
        "Lambda durations, medians per invocation (ms; CPU = the invocation's thread; moto = "
        "inside moto's answers; own = CPU - moto, or wall - moto for the runner):"
    )
    architectures = function_architectures()
    print(f"  {'function':<15} {'calls':>6} {'wall':>7} {'CPU':>7} {'moto':>7} {'own':>7} "
          f"{'reqs':>5} {'Lambda':>7} {'cold':>6}  arch")  # fmt: skip
    for r in durations(m):
        own = r["own_wall_ms"] if r["function"] == "quiet runner" else r["own_cpu_ms"]
        arch = architectures.get(r["function"].removeprefix("quiet "), "?")
        print(f"  {r['function']:<15} {r['invocations']:>6} {r['wall_ms']:>7.2f} "
              f"{r['cpu_ms']:>7.2f} {r['moto_cpu_ms']:>7.2f} {own:>7.2f} {r['requests']:>5.0f} "
              f"{r['modelled_ms']:>7.0f} {r['cold_start_ms']:>6.0f}  {arch}")  # fmt: skip
    print(
        f"  (Lambda = own x 1769/MB (CPU share) + {REQUEST_MS:g} ms per request, assumed; "
        f"cold = interpreter start + handler import here, billed at {COLD_START_SHARE:.0%} "
        f"of invocations, x 1769/MB; interpreter start {1000 * m.cold.get('interpreter', 0):.0f} ms;"
        f" arch = template.yaml's, per GB-s "
        f"{', '.join(f'{a} ${p:.10f}' for a, p in LAMBDA_GB_SECOND.items())}; "
        f"{ARCHITECTURE_ASSUMPTION})"
    )
    print("advance at other memory sizes (same measurement; GB-s $ per million tasks, median "
          "modelled invocation ms):")  # fmt: skip
    for row in advance_memory_what_if(m):
        print(f"  {row['memory_mb']:>5.0f} MB  ${row['gb_s_cost_per_million']:.2f}  "
              f"{row['median_invocation_ms']:.0f} ms")  # fmt: skip
    print(f"EventBridge events per task: {m.events_put / n:.4f}")
    per_attempt = max(m.transitions)
    mean = sum(m.transitions) / len(m.transitions)
    print(f"Step Functions transitions per attempt: mean {mean:.2f}, max {per_attempt}")
    print(
        f"attempts on the Express state machine: {m.express_executions} of "
        f"{len(m.transitions)} (Standard transitions billed per task: "
        f"{m.standard_transitions / n:.2f})"
    )
    costs = cost_per_task(m)
    total = sum(costs.values())
    print(
        f"orchestration cost per million tasks (prices of {PRICES_AS_OF}; "
        f"Express {EXPRESS_PRICES_AS_OF}):"
    )
    architectures = function_architectures()
    for key, value in costs.items():
        line = f"  {key:<40} ${float(value) * 1e6:10.2f}"
        if key == "Lambda GB-s":
            used = sorted({architectures[fn] for fn in lambda_ms(m)})
            line += f"  ({', '.join(used)}, template.yaml; {ARCHITECTURE_ASSUMPTION})"
        print(line)
    print(f"  {'total':<40} ${float(total) * 1e6:10.2f}")
    target = TARGET_BATCH_PER_MILLION if m.kind == "batch" else TARGET_LAMBDA_PER_MILLION
    return [
        (f"{m.kind}: <= {TARGET_TRANSITIONS} transitions per attempt (max {per_attempt})",
         per_attempt <= TARGET_TRANSITIONS and m.run_state == "succeeded"),
        (f"{m.kind}: < ${target:g} per million tasks (${float(total) * 1e6:.2f})",
         float(total) * 1e6 < target and m.run_state == "succeeded"),
    ]  # fmt: skip


IN_FLIGHT_WORKFLOW = """
name: inflight
tasks:
  first: {type: shell, command: "true"}
  second: {type: shell, command: "true", depends_on: [first]}
  third: {type: shell, command: "true", depends_on: [first]}
"""


def _renamed(value: Any, old: str, new: str) -> Any:
    """An attribute value (wire form) with ``old`` replaced by ``new`` in every string in it."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return {"S": inner.replace(old, new)}
    if kind == "M":
        return {"M": {k: _renamed(v, old, new) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_renamed(v, old, new) for v in inner]}
    return value


def clone_runs(client: Any, table: str, template: str, run_ids: list[str]) -> int:
    """Copy every item of run ``template``'s partition to each of ``run_ids``, its run id
    renamed in every string (keys, index keys, attributes), with BatchWriteItem (25 items a
    request). A run's items are all in its partition (no global counter refers to it), so a
    clone is a run in the same state as the template. Returns the requests made."""
    items: list[dict[str, Any]] = []
    pages = client.get_paginator("query").paginate(
        TableName=table, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"RUN#{template}"}},
    )  # fmt: skip
    for page in pages:
        items += page["Items"]
    puts = [
        {"PutRequest": {"Item": {k: _renamed(v, template, run_id) for k, v in item.items()}}}
        for run_id in run_ids
        for item in items
    ]
    requests = 0
    for start in range(0, len(puts), 25):
        pending: dict[str, Any] = {table: puts[start : start + 25]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            requests += 1
    return requests


def requests_per_outcome(in_flight: list[int]) -> dict[int, dict[str, int]]:
    """DynamoDB requests the advance path makes for one outcome (a task with two children)
    while N runs are in flight, each with an attempt running. Invariant 3 says the figure is
    the same for every N. The scheduler and the DynamoDB store are the advance function's
    own; the dispatcher is a recorder (Step Functions requests are counted by ``measure``).

    Two runs are created through the scheduler (trigger, then a step that dispatches their
    first tasks): the measured one and a template; the other N - 2 are copies of the
    template written with BatchWriteItem (``clone_runs``), since creating 1,000 runs through
    the scheduler on moto takes over half an hour. Only the outcome's requests are counted."""
    import boto3
    from moto import mock_aws
    from tests.fakes import FakeClock, RecordingDispatcher

    from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
    from stratoflow.engine import AttemptResult, AttemptStatus
    from stratoflow.service import Finished, Scheduler

    figures: dict[int, dict[str, int]] = {}
    for n in in_flight:
        if n < 1:
            raise ValueError(f"runs in flight must be at least 1, not {n}")
        with mock_aws():
            client = boto3.client(
                "dynamodb", region_name="us-east-1",
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )  # fmt: skip
            create_table(client, "state", stream=False)
            counted: Counter[str] = Counter()
            client.meta.events.register(
                "before-call", lambda model, c=counted, **_: c.update([model.name])
            )
            store = DynamoStore("state", client=client)
            clock = FakeClock(datetime(2026, 6, 1, tzinfo=UTC))
            dispatcher = RecordingDispatcher()
            scheduler = Scheduler(store, store, dispatcher, clock, retry_lead=timedelta(days=366))
            scheduler.apply(IN_FLIGHT_WORKFLOW)
            made = min(n, 2)
            for i in range(made):
                scheduler.trigger("default", "inflight", run_id=f"r{i:05d}")
            scheduler.step()  # the runs' first tasks are now running
            assert len(dispatcher.dispatched) == made, len(dispatcher.dispatched)
            started = time.monotonic()
            clone_runs(client, "state", "r00001", [f"r{i:05d}" for i in range(made, n)])
            running = sum(
                page["Count"]
                for page in client.get_paginator("query").paginate(
                    TableName="state",
                    IndexName="gsi2",
                    Select="COUNT",
                    KeyConditionExpression="gsi2pk = :p",
                    ExpressionAttributeValues={":p": {"S": "RUNS#running"}},
                )
            )
            assert running == n, (n, running)
            key = ("r00000", "first", 1)
            counted.clear()
            scheduler.advance([Finished(*key, AttemptResult(AttemptStatus.SUCCEEDED))])
            figures[n] = dict(sorted(counted.items()))
            assert ("r00000", "second", 1) in dispatcher.dispatched
            assert ("r00000", "third", 1) in dispatcher.dispatched
            assert len(dispatcher.dispatched) == made + 2, dispatcher.dispatched
        print(f"  {n:>5} runs in flight: {sum(figures[n].values())} DynamoDB requests per outcome "
              f"{figures[n]} ({time.monotonic() - started:.1f} s)", flush=True)  # fmt: skip
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["batch", "lambda", "both"], default="both")
    parser.add_argument("--layers", type=int, default=10, help="W3 has 10 layers of 50")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--repeat", type=int, default=20, help="quiet runner/trigger timings")
    parser.add_argument(
        "--in-flight",
        default="1,10,100,1000",
        help="DynamoDB requests per outcome with these many runs in flight ('' to skip)",
    )
    args = parser.parse_args(argv)
    kinds = ["batch", "lambda"] if args.kind == "both" else [args.kind]
    results: list[tuple[str, bool]] = []
    if args.in_flight:
        print("DynamoDB requests per outcome (advance), by runs in flight:")
        flat = requests_per_outcome([int(x) for x in args.in_flight.split(",")])
        totals = {n: sum(f.values()) for n, f in flat.items()}
        results.append(
            (f"requests per outcome flat in the runs in flight ({totals})",
             len(set(totals.values())) == 1),
        )  # fmt: skip
    dump: dict[str, Any] = {
        "prices_as_of": PRICES_AS_OF,
        "prices": PRICE,
        "express_prices_as_of": EXPRESS_PRICES_AS_OF,
        "express": {"request": EXPRESS_REQUEST, "gb_second": EXPRESS_GB_SECOND},
        "lambda_gb_second": LAMBDA_GB_SECOND,
        "architectures": function_architectures(),
        "architecture_assumption": ARCHITECTURE_ASSUMPTION,
    }
    if args.in_flight:
        dump["requests_per_outcome_by_runs_in_flight"] = flat
    for kind in kinds:
        m = measure(kind, args.layers, args.timeout, repeat=args.repeat)
        results += report(m)
        dump[kind] = {
            "tasks": m.tasks,
            "seconds": m.seconds,
            "requests": dict(m.requests),
            "sfn_side": dict(m.sfn_side),
            "invocations": dict(m.invocations),
            "transitions_max": max(m.transitions),
            "transitions_mean": sum(m.transitions) / len(m.transitions),
            "standard_transitions_per_task": m.standard_transitions / m.tasks,
            "express_executions": m.express_executions,
            "rru": m.rru,
            "wru": m.wru,
            "wru_table": m.writes.table,
            "wru_index": m.writes.index,
            "wru_index_in_transactions": m.writes.index_in_transactions,
            "wru_by_item": dict(m.writes.by_item),
            "wru_by_write": {k: vars(v) for k, v in m.writes.by_write.items()},
            "durations": durations(m),
            "lambda_ms": lambda_ms(m),
            "advance_memory_what_if": advance_memory_what_if(m),
            "cold_start_seconds": m.cold,
            "events_put": m.events_put,
            "cost_per_million": {k: float(v) * 1e6 for k, v in cost_per_task(m).items()},
        }
    print("\ntargets:")
    for label, ok in results:
        print(f"  [{'PASS' if ok else 'FAIL'}] {label}")
    if args.json:
        args.json.write_text(json.dumps(dump, indent=2), encoding="utf-8")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
