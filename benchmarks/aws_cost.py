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
- DynamoDB read and write request units, from the sizes of the items each request read or wrote
  (the rules below); moto's own ConsumedCapacity figures are constants, so they are not used;
- EventBridge events put, S3 requests, Lambda invocations of our functions;

and prices them at the published us-east-1 list prices below. What it does NOT count: the
tasks' own compute (the Batch/Fargate vCPU and memory seconds, the user's Lambda function, the
task's runtime inside the runner): that is the work, not its orchestration. Free tiers are
ignored (they only lower the figures).

    .venv/bin/python benchmarks/aws_cost.py            # both kinds, W3 (a few minutes)
    .venv/bin/python benchmarks/aws_cost.py --kind lambda --layers 2   # a quick look

Exit status 0 when every target holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
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

# ---------------------------------------------------------------- prices (us-east-1)
# Published list prices, us-east-1, as read from the AWS pricing pages on 2026-11-20
# (Standard workflows, x86 Lambda, DynamoDB on-demand after its November 2024 price cut).
PRICES_AS_OF = "2026-11-20"
PRICE = {
    # https://aws.amazon.com/step-functions/pricing/ : $0.025 per 1,000 state transitions
    "sfn_transition": 0.025 / 1_000,
    # https://aws.amazon.com/lambda/pricing/ : $0.20 per 1M requests, $0.0000166667 per GB-s
    "lambda_request": 0.20 / 1_000_000,
    "lambda_gb_second": 0.0000166667,
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

# Lambda duration is not measurable on moto (an in-process call is neither a cold start nor a
# network round trip). Assumed instead, and stated: each AWS request a function makes costs
# REQUEST_MS of wall time in-region, plus BASE_MS per invocation. Memory sizes are template.yaml's.
BASE_MS = 15.0
REQUEST_MS = 8.0
MEMORY_MB = {"advance": 512, "api": 512, "trigger": 512, "runner": 1024}
# the runner's own overhead around a task: starting the process (RUNNER_START_MS), plus
# REQUEST_MS per request it makes (the log upload: measured, none for an empty log); the
# task's runtime itself is the work. (Until 2026-11-21 this was a flat 60 ms that included
# the upload: 52 + 8 for one request.)
RUNNER_START_MS = 52.0

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

TARGET_TRANSITIONS = 4
TARGET_BATCH_PER_MILLION = 100.0
TARGET_LAMBDA_PER_MILLION = 10.0


# ---------------------------------------------------------------- DynamoDB request units
def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        digits = len(str(inner).lstrip("-").replace(".", "").lstrip("0")) or 1
        return 1 + math.ceil(digits / 2)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: v}) for v in inner)
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in inner.items())
    raise ValueError(kind)


def item_size(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB bills it: attribute names plus values."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def gsi_count(item: Mapping[str, Any]) -> int:
    """How many of the table's sparse GSIs (projection ALL) the item is in: each is written too."""
    return sum(1 for n in (1, 2, 3) if f"gsi{n}pk" in item and f"gsi{n}sk" in item)


def write_units(item: Mapping[str, Any] | None) -> float:
    if not item:
        return 1.0  # a write of a missing or deleted item still costs one unit
    return math.ceil(item_size(item) / 1024) * (1 + gsi_count(item))


def read_units(size: int, *, consistent: bool) -> float:
    units = max(math.ceil(size / 4096), 1)
    return float(units if consistent else units / 2)


@dataclass
class DynamoMeter:
    """Read and write request units of every DynamoDB request of our clients. Reads are
    priced from the items in the response; writes from the item as it stands at the end of
    the run (looked up by key), which is what the last write of it stored: an approximation
    for items written several times with different sizes (a run's counters, a task)."""

    rru: float = 0.0
    write_keys: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)

    def attach(self, client: Any) -> None:
        """botocore's after-call carries the response but not the API parameters: keep them
        on the request context (the same dict reaches both events)."""
        events = client.meta.events

        def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            context["stratoflow_params"] = dict(params)

        def done(model: Any, parsed: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
            self.after_call(model, context.get("stratoflow_params", {}), parsed)

        events.register("before-parameter-build.dynamodb", keep)
        events.register("after-call.dynamodb", done)

    def after_call(self, model: Any, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> None:
        op = model.name
        if "Error" in parsed and op in ("GetItem", "Query", "BatchGetItem", "TransactGetItems"):
            return
        # a failed conditional write still consumes write units: it is priced as a write
        consistent = bool(params.get("ConsistentRead"))
        if op == "GetItem":
            self.rru += read_units(item_size(parsed.get("Item") or {}), consistent=consistent)
        elif op == "Query":
            size = sum(item_size(i) for i in parsed.get("Items", []))
            self.rru += read_units(size, consistent=consistent)
        elif op == "BatchGetItem":
            for items in parsed.get("Responses", {}).values():
                for i in items:
                    self.rru += read_units(item_size(i), consistent=consistent)
        elif op == "TransactGetItems":
            for r in parsed.get("Responses", []):
                self.rru += 2 * read_units(item_size(r.get("Item") or {}), consistent=True)
        elif op in ("PutItem", "UpdateItem", "DeleteItem"):
            self._write(params["TableName"], params.get("Key") or params["Item"], 1, op)
        elif op == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for r in requests:
                    body = r.get("PutRequest", {}).get("Item") or r["DeleteRequest"]["Key"]
                    self._write(table, body, 1, "BatchWriteItem")
        elif op == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((kind, body),) = entry.items()
                if kind == "ConditionCheck":
                    self.rru += 2 * 1.0  # a condition check reads (2 units, transactional)
                    continue
                self._write(body["TableName"], body.get("Key") or body["Item"], 2, kind)

    def _write(self, table: str, item: Mapping[str, Any], factor: int, op: str) -> None:
        key = {k: item[k] for k in ("pk", "sk") if k in item}
        self.write_keys.append((table, key, factor))

    def wru(self, client: Any) -> float:
        """Price the recorded writes from the items as they are now."""
        cache: dict[str, dict[str, Any] | None] = {}
        total = 0.0
        for table, key, factor in self.write_keys:
            ident = json.dumps([table, key], sort_keys=True)
            if ident not in cache:
                cache[ident] = client.get_item(TableName=table, Key=key).get("Item")
            total += factor * write_units(cache[ident])
        return total


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
    events_put: int
    run_state: str


def _runner(stack: Stack) -> str:
    """The runner function: the real one (stratoflow.adapters.aws.runner) when present, with a
    counted S3 client; else a stand-in that makes the same requests (none: ``true`` prints
    nothing, and the runner does not upload an empty log)."""
    s3 = stack.counted_client("s3")
    try:
        from stratoflow.adapters.aws import runner  # type: ignore[attr-defined]
    except ImportError:

        def stand_in(attempt: dict[str, Any]) -> dict[str, Any]:
            # the runner does not upload an empty log: no request
            return {"status": "succeeded", "exit_code": 0, "error": None, "outputs": {}}

        stack.lambdas.handlers["RunnerFunction"] = stand_in
        return "stand-in (no request, as the runner for a silent task)"
    stack.lambdas.handlers["RunnerFunction"] = lambda attempt: runner.handle(attempt, None, s3=s3)
    return "stratoflow.adapters.aws.runner"


@contextmanager
def _stack() -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as mp:
        # the functions' own logs and metric documents would drown the figures
        mp.setenv("POWERTOOLS_LOG_LEVEL", "ERROR")
        mp.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        with aws_stack(mp, prefix="bench") as stack:
            yield stack


def measure(kind: str, layers: int, timeout: float) -> tuple[Measured, str]:
    text, n = workflow(kind, layers)
    with _stack() as stack:
        runner_used = _runner(stack)
        dynamo = DynamoMeter()
        events_put = Counter[str]()
        for module in stack.functions.values():
            clients = module.function.clients
            dynamo.attach(clients.dynamodb)
            clients.events.meta.events.register(
                "before-parameter-build.eventbridge.PutEvents",
                lambda params, **_: events_put.update(entries=len(params.get("Entries", []))),
            )
        started = time.monotonic()
        status, body = stack.api("POST", "/workflows", {"source": text})
        assert status in (200, 201), body
        status, body = stack.api("POST", f"/workflows/w3_{kind}/runs", {})
        assert status == 201, body
        run_id = body["run"]["id"]
        state = stack.run_ends(run_id, timeout=timeout)
        seconds = time.monotonic() - started
        if state != "succeeded":
            failed = [t for t in stack.observer.get_tasks(run_id) if t.error]
            for t in failed[:5]:
                print(f"  {t.task_id}: {t.state.value}: {t.error}", file=sys.stderr)
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
        wru = dynamo.wru(stack.counted_client("dynamodb", counted=False))
        return (
            Measured(
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
                wru=wru,
                events_put=events_put["entries"],
                run_state=state,
            ),
            runner_used,
        )


# ---------------------------------------------------------------- pricing
def cost_per_task(m: Measured) -> dict[str, Decimal]:
    n = m.tasks
    per: dict[str, float] = {}
    per["Step Functions transitions"] = m.standard_transitions * PRICE["sfn_transition"]
    express_ms = RUNNER_START_MS + 3 * REQUEST_MS  # the runner, its invoke, the report
    express_ms = max(math.ceil(express_ms / EXPRESS_STEP_MS), 1) * EXPRESS_STEP_MS
    per["Step Functions Express"] = m.express_executions * (
        EXPRESS_REQUEST + express_ms / 1000 * EXPRESS_GB * EXPRESS_GB_SECOND
    )
    # Lambda: our functions' invocations, the runner's (lambda tasks), by assumed duration
    lam_requests = sum(m.invocations.values()) + m.sfn_side["lambda.invoke"]
    gb_s = 0.0
    for fn, calls in m.invocations.items():
        ms = calls * BASE_MS + m.by_function[fn] * REQUEST_MS
        gb_s += ms / 1000 * MEMORY_MB.get(fn, 512) / 1024
    runner_calls = m.sfn_side["lambda.invoke"]
    runner_ms = runner_calls * RUNNER_START_MS + m.by_function["runner"] * REQUEST_MS
    gb_s += runner_ms / 1000 * MEMORY_MB["runner"] / 1024
    per["Lambda requests"] = lam_requests * PRICE["lambda_request"]
    per["Lambda GB-s"] = gb_s * PRICE["lambda_gb_second"]
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


def report(m: Measured, runner_used: str) -> list[tuple[str, bool]]:
    n = m.tasks
    print(f"\n=== W3, {m.kind} tasks: {n} tasks, run {m.run_state} in {m.seconds:.1f} s (moto)")
    print(f"runner function: {runner_used}" if m.kind == "lambda" else "")
    print("AWS requests per task, by our functions (service.operation):")
    for key, count in sorted(m.requests.items()):
        print(f"  {key:<40} {count / n:8.3f}")
    print("made by the state machine, per task:")
    for key, count in sorted(m.sfn_side.items()):
        print(f"  {key:<40} {count / n:8.3f}")
    print("function invocations per task:")
    for key, count in sorted(m.invocations.items()):
        print(f"  {key:<40} {count / n:8.3f}")
    print(f"DynamoDB units per task: {m.rru / n:.2f} RRU, {m.wru / n:.2f} WRU")
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
    for key, value in costs.items():
        print(f"  {key:<40} ${float(value) * 1e6:10.2f}")
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


def requests_per_outcome(in_flight: list[int]) -> dict[int, dict[str, int]]:
    """DynamoDB requests the advance path makes for one outcome (a task with two children)
    while N runs are in flight, each with an attempt running. Invariant 3 says the figure is
    the same for every N. The scheduler and the DynamoDB store are the advance function's
    own; the dispatcher is a recorder (Step Functions requests are counted by ``measure``)."""
    import boto3
    from moto import mock_aws
    from tests.fakes import FakeClock, RecordingDispatcher

    from stratoflow.adapters.aws.dynamodb import DynamoStore, create_table
    from stratoflow.engine import AttemptResult, AttemptStatus
    from stratoflow.service import Finished, Scheduler

    figures: dict[int, dict[str, int]] = {}
    for n in in_flight:
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
            for i in range(n):
                scheduler.trigger("default", "inflight", run_id=f"r{i:05d}")
            scheduler.step()  # every run's first task is now running
            assert len(dispatcher.dispatched) == n, len(dispatcher.dispatched)
            key = ("r00000", "first", 1)
            counted.clear()
            scheduler.advance([Finished(*key, AttemptResult(AttemptStatus.SUCCEEDED))])
            figures[n] = dict(sorted(counted.items()))
            assert ("r00000", "second", 1) in dispatcher.dispatched
        print(f"  {n:>5} runs in flight: {sum(figures[n].values())} DynamoDB requests per outcome "
              f"{figures[n]}", flush=True)  # fmt: skip
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["batch", "lambda", "both"], default="both")
    parser.add_argument("--layers", type=int, default=10, help="W3 has 10 layers of 50")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
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
    }
    if args.in_flight:
        dump["requests_per_outcome_by_runs_in_flight"] = flat
    for kind in kinds:
        m, runner_used = measure(kind, args.layers, args.timeout)
        results += report(m, runner_used)
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
