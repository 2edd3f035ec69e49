"""Kill the local runtime at random moments, from outside, and check it kept its promise.

"Nothing is lost when a process dies, a task never runs twice" (README, section 5), tried as
a user would: ``stratoflow server --home H --port P`` with runs triggered by ``stratoflow
trigger`` (some with ``--wait``), and ``stratoflow run FILE``, each killed with SIGKILL (and
now and then stopped with SIGTERM) at random moments, then started again. Workflows: a fan
out and in, retries, a timeout, a pool, a sub-workflow, a python task. Every task's first act
appends ``<run> <task> <attempt>`` to a ledger, so executions are counted.

Checked after each round, once every run has ended (or not, within a bound: a failure):

- every run ends, as the same workflow ends without a crash (a control round first);
- no (run, task, attempt) started twice, and every attempt the store recorded as run by a
  process started once (an attempt that never started is only for an exit the server did
  not see);
- each run's counters agree with its tasks; pools hold no slot; nothing is left running;
- the read model (``GET /runs``) agrees with the store (``GET /runs/{id}``).

Usage: ``.venv/bin/python scripts/crash_chaos.py [--kills 40] [--seed 7] [--port 8560]``.
Exit 0 when nothing broke; 1 with the problems listed. Everything happens in a temporary
directory, removed at the end unless ``--keep``; every process it starts is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

STRATOFLOW = [sys.executable, "-m", "stratoflow"]
TERMINAL = {"succeeded", "failed", "stopped"}


def mark(ledger: Path) -> str:
    return f'echo "$STRATOFLOW_RUN_ID $STRATOFLOW_TASK_ID $STRATOFLOW_ATTEMPT" >> {ledger}; '


def workflows(ledger: Path) -> dict[str, str]:
    """name -> YAML. Each task's first act is a ledger line."""
    m = mark(ledger)
    nap = 'sleep "0.$(( RANDOM % 6 ))"'
    fan = ["name: chaos_fan", "tasks:", f"  start: {{type: shell, command: '{m}{nap}'}}"]
    fan += [
        f"  mid_{i}: {{type: shell, depends_on: [start], command: '{m}{nap}'}}" for i in range(8)
    ]
    mids = ", ".join(f"mid_{i}" for i in range(8))
    fan += [
        "  pyjoin:",
        "    type: python",
        f"    depends_on: [{mids}]",
        "    code: |",
        "      import os, time",
        f"      with open({str(ledger)!r}, 'a') as fh:",
        "          fh.write(' '.join(os.environ[k] for k in ('STRATOFLOW_RUN_ID', "
        "'STRATOFLOW_TASK_ID', 'STRATOFLOW_ATTEMPT')) + '\\n')",
        "      time.sleep(0.3)",
        f"  end: {{type: shell, depends_on: [pyjoin], command: '{m}{nap}'}}",
    ]
    retry = f"""\
name: chaos_retry
defaults: {{retries: 3, retry_delay: 1s, retry_backoff: 1.0}}
tasks:
  flaky:
    type: shell
    command: '{m}{nap}; test "$STRATOFLOW_ATTEMPT" -ge 3 || exit 3'
  after: {{type: shell, depends_on: [flaky], command: '{m}{nap}'}}
"""
    timeout = f"""\
name: chaos_timeout
on_failure: continue
tasks:
  slow: {{type: shell, timeout: 2s, retries: 1, retry_delay: 0s, command: '{m}sleep 30'}}
  cleanup:
    type: shell
    depends_on: [slow]
    trigger_rule: all_done
    command: '{m}{nap}'
"""
    pool = ["name: chaos_pool", "tasks:"]
    pool += [f"  p{i}: {{type: shell, pool: chaos, command: '{m}sleep 0.5'}}" for i in range(6)]
    child = f"""\
name: chaos_child
tasks:
  c1: {{type: shell, command: '{m}{nap}'}}
  c2: {{type: shell, depends_on: [c1], command: '{m}{nap}'}}
  c3: {{type: shell, depends_on: [c1], command: '{m}{nap}'}}
"""
    parent = f"""\
name: chaos_parent
tasks:
  before: {{type: shell, command: '{m}{nap}'}}
  sub: {{type: workflow, workflow: chaos_child, depends_on: [before]}}
  after: {{type: shell, depends_on: [sub], command: '{m}{nap}'}}
"""
    storm = ["name: chaos_storm", "concurrency: 12", "tasks:"]
    storm += [f"  s{i}: {{type: shell, command: '{m}true'}}" for i in range(40)]
    storm.append(
        f"  last: {{type: shell, depends_on: [{', '.join(f's{i}' for i in range(40))}], command: '{m}true'}}"
    )
    return {
        "chaos_storm": "\n".join(storm) + "\n",
        "chaos_fan": "\n".join(fan) + "\n",
        "chaos_retry": retry,
        "chaos_timeout": timeout,
        "chaos_pool": "\n".join(pool) + "\n",
        "chaos_child": child,
        "chaos_parent": parent,
    }


TRIGGERED = [
    "chaos_fan",
    "chaos_retry",
    "chaos_timeout",
    "chaos_pool",
    "chaos_parent",
    "chaos_storm",
]


class Server:
    def __init__(self, home: Path, port: int, log: Path, env: dict[str, str]) -> None:
        self.home, self.port, self.log, self.env = home, port, log, env
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*STRATOFLOW, "server", "--home", str(self.home), "--port", str(self.port),
                 "--pool", "chaos=2"],
                stdout=out, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"server did not answer; see {self.log}")
        if not self.token:
            found = re.search(r"sft_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", self.log.read_text())
            assert found, "no admin token printed"
            self.token = found.group(0)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("the server did not stop within 30 s of SIGTERM") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(
            f"{self.url}{path}", params=params, timeout=20,
            headers={"Authorization": f"Bearer {self.token}"},
        )  # fmt: skip
        r.raise_for_status()
        return r.json()


class Chaos:
    def __init__(self, root: Path, port: int, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)  # noqa: S311 - timings, not secrets
        self.shared = root / "shared"
        self.shared.mkdir(mode=0o1777)
        self.shared.chmod(0o1777)
        self.ledger = self.shared / "ledger.txt"
        self.ledger.touch()
        self.ledger.chmod(0o666)
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "STRATOFLOW_TASK_WRITE_PATHS": str(self.shared),
        }
        self.files: dict[str, Path] = {}
        for name, text in workflows(self.ledger).items():
            path = root / f"{name}.yaml"
            path.write_text(text)
            self.files[name] = path
        self.server = Server(root / "home", port, root / "server.log", self.env)
        self.port = port
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.checked: set[str] = set()
        self.may_stop = 0  # runs a SIGTERM stopped
        self.figures: Counter[str] = Counter()
        self.expected: dict[str, Any] = {}  # workflow -> signature of a crash-free run

    # ------------------------------------------------------------------ client
    def cli(self, *args: str, server: Server | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
        s = server or self.server
        env = {**self.env, "STRATOFLOW_API": s.url, "STRATOFLOW_TOKEN": s.token}
        return subprocess.run(
            [*STRATOFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip

    def trigger(self, name: str) -> str:
        for _ in range(50):  # the server may be down: a user tries again
            done = self.cli("trigger", name, "--output", "json")
            if done.returncode == 0:
                return str(json.loads(done.stdout)["run"]["id"])
            time.sleep(0.2)
        raise RuntimeError(f"trigger {name}: {done.returncode} {done.stderr}")

    def wait_trigger(self, name: str) -> subprocess.Popen[str]:
        env = {**self.env, "STRATOFLOW_API": self.server.url, "STRATOFLOW_TOKEN": self.server.token}  # fmt: skip
        return subprocess.Popen(
            [*STRATOFLOW, "trigger", name, "--wait", "--output", "json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    # ------------------------------------------------------------------ rounds
    def setup(self) -> None:
        self.server.start()
        for name in ("chaos_child", *TRIGGERED):
            done = self.cli("apply", str(self.files[name]))
            assert done.returncode == 0, done.stderr

    def control(self) -> None:
        """A round without a crash: what each workflow's run ends as."""
        runs = {self.trigger(name): name for name in TRIGGERED}
        self.settle(self.server, list(runs), 120)
        for run_id, name in runs.items():
            self.expected[name] = signature(self.server.get(f"/runs/{run_id}"))
        self.check(self.server, list(runs), "control")

    def server_round(self, kills: int, label: str) -> int:
        runs = [self.trigger(name) for name in TRIGGERED]
        waiter = self.wait_trigger("chaos_fan")
        time.sleep(1.5)  # its trigger made (a kill before it is the trigger's to report)
        done = 0
        for _ in range(kills):
            # now and then at once after the start: in the recovery of the last kill
            time.sleep(
                self.rng.uniform(0.0, 0.15)
                if self.rng.random() < 0.3
                else self.rng.uniform(0.05, 1.5)
            )
            how = signal.SIGTERM if self.rng.random() < 0.2 else signal.SIGKILL
            started = time.monotonic()
            self.server.signal(how)
            self.figures["SIGTERM" if how == signal.SIGTERM else "SIGKILL"] += 1
            if how == signal.SIGTERM:
                self.figures["sigterm seconds max"] = max(
                    self.figures["sigterm seconds max"], round(time.monotonic() - started)
                )
            done += 1
            time.sleep(self.rng.uniform(0, 0.6))  # tasks run on meanwhile
            self.server.start()
            if self.rng.random() < 0.3:
                runs.append(self.trigger(self.rng.choice(TRIGGERED)))
        try:
            _, err = waiter.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            waiter.kill()
            _, err = waiter.communicate()
            self.problems.append(f"{label}: trigger --wait did not return within 150 s")
        self.figures[f"trigger --wait exit {waiter.returncode}"] += 1
        if waiter.returncode != 0:  # it rides out restarts (up to 2 minutes without a reply)
            self.problems.append(
                f"{label}: trigger --wait exited {waiter.returncode}: {err[-300:]}"
            )
        elif "trying again" in err:
            self.figures["trigger --wait rode out a restart"] += 1
        # every run of the home (the waiter's, the child runs) not checked yet
        listed = [r["id"] for r in self.server.get("/runs", limit=500)["runs"]]
        runs = [r for r in dict.fromkeys([*runs, *listed]) if r not in self.checked]
        self.settle(self.server, runs, 150)
        self.check(self.server, runs, label)
        return done

    def run_round(self, kills: int, port: int) -> int:
        """``stratoflow run FILE`` killed: its runs are finished by the next process."""
        home = self.root / "run-home"
        done = 0
        for _ in range(kills):
            name = self.rng.choice(["chaos_fan", "chaos_retry", "chaos_pool", "chaos_storm"])
            proc = subprocess.Popen(
                [*STRATOFLOW, "run", str(self.files[name]), "--home", str(home),
                 "--pool", "chaos=2"],
                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(self.rng.uniform(0.3, 3.0))
            how = signal.SIGTERM if self.rng.random() < 0.2 else signal.SIGKILL
            proc.send_signal(how)
            proc.wait(timeout=60)
            self.figures[f"run {'SIGTERM' if how == signal.SIGTERM else 'SIGKILL'}"] += 1
            self.may_stop += how == signal.SIGTERM
            done += 1
        # a server on that home finishes what the killed processes left
        server = Server(home, port, self.root / "run-server.log", self.env)
        try:
            server.start()
            runs = [r["id"] for r in server.get("/runs", limit=200)["runs"]]
            self.settle(server, runs, 150)
            self.check(server, runs, "stratoflow run")
        finally:
            server.stop()
        return done

    # ------------------------------------------------------------------ checks
    def settle(self, server: Server, runs: list[str], bound: float) -> None:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            states = {r: server.get(f"/runs/{r}")["run"]["state"] for r in runs}
            if all(s in TERMINAL for s in states.values()):
                return
            time.sleep(0.5)
        stuck = {r: s for r, s in states.items() if s not in TERMINAL}
        self.problems.append(f"runs not ended within {bound:.0f} s: {stuck}")

    def check(self, server: Server, runs: list[str], label: str) -> None:
        ledger = Counter(
            tuple(line.split()) for line in self.ledger.read_text().splitlines() if line.strip()
        )
        all_runs = set(runs)
        for run_id in runs:  # and their child runs
            for task in server.get(f"/runs/{run_id}")["tasks"].values():
                if task.get("child_run"):
                    all_runs.add(task["child_run"])
        for run_id in sorted(all_runs):
            self.checked.add(run_id)
            view = server.get(f"/runs/{run_id}")
            run, tasks = view["run"], view["tasks"]
            self.figures["runs checked"] += 1
            name = run["workflow"]
            if name in self.expected and run["trigger"] != "workflow":
                got = signature(view)
                if got[0] == "stopped" and self.may_stop > 0:
                    self.may_stop -= 1  # `stratoflow run` stops its run on SIGTERM
                elif got != self.expected[name]:
                    self.problems.append(
                        f"{label}: {run_id} ended unlike a crash-free run: {got} != "
                        f"{self.expected[name]}"
                    )
            # counters against the tasks
            states = Counter(t["state"] for t in tasks.values())
            if run["state"] in TERMINAL and states.get("running", 0) + states.get("queued", 0):
                self.problems.append(f"{label}: {run_id} ended with tasks {dict(states)}")
            n_running = run.get("tasks_running")
            if run["state"] in TERMINAL and n_running:
                self.problems.append(f"{label}: {run_id} ended with n_running={n_running}")
            for task_id, task in tasks.items():
                for attempt in task["history"]:
                    key = (run_id, task_id, str(attempt["attempt"]))
                    starts = ledger.get(key, 0)
                    self.figures["attempts checked"] += 1
                    if run["state"] in TERMINAL and attempt["state"] == "running":
                        self.problems.append(f"{label}: {key} still running in an ended run")
                    if task_id == "sub":  # a sub-workflow task runs no process
                        continue
                    if starts > 1:
                        self.problems.append(f"{label}: {key} started {starts} times")
                    elif starts == 0 and attempt.get("exit_code") is not None:
                        self.problems.append(
                            f"{label}: {key} has exit code {attempt['exit_code']} but never started"
                        )
                    elif starts == 0:
                        self.figures["attempts never started"] += 1
                        self.problems.append(
                            f"{label}: {key} never started: {attempt['state']} "
                            f"{attempt.get('error')!r}"
                        )
        for entry, n in ledger.items():
            if n > 1:
                msg = f"{entry} started {n} times (ledger)"
                if msg not in self.problems:
                    self.problems.append(msg)
        # the read model against the store
        self.compare_read_model(server, sorted(all_runs), label)
        # pools
        pools = server.get("/pools")
        for pool in pools.get("pools", pools if isinstance(pools, list) else []):
            if pool.get("used"):
                self.problems.append(f"{label}: pool {pool.get('name')} used {pool['used']}")

    def compare_read_model(self, server: Server, runs: list[str], label: str) -> None:
        fields = (
            "state",
            "tasks_total",
            "tasks_done",
            "tasks_failed",
            "tasks_running",
            "ended_at",
            "started_at",
            "error",
        )
        differ: dict[str, Any] = {}
        for _ in range(20):  # the read model trails the store by a linger (0.2 s)
            listed = {r["id"]: r for r in server.get("/runs", limit=500)["runs"]}
            differ = {}
            for run_id in runs:
                stored = server.get(f"/runs/{run_id}")["run"]
                seen = listed.get(run_id)
                if seen is None:
                    differ[run_id] = "missing from GET /runs"
                    continue
                a = {k: stored.get(k) for k in fields if k in seen}
                b = {k: seen.get(k) for k in fields if k in seen}
                if a != b:
                    differ[run_id] = (a, b)
            if not differ:
                return
            time.sleep(0.5)
        self.problems.append(f"{label}: GET /runs differs from GET /runs/{{id}}: {differ}")

    def check_store(self, db: Path, label: str) -> None:
        """The state db (after the last stop): counters and pools against the rows."""
        conn = sqlite3.connect(db)
        try:
            bad = conn.execute(
                "SELECT r.id, r.n_done, r.n_failed, r.n_running, "
                "(SELECT count(*) FROM tasks t WHERE t.run_id=r.id AND t.state IN "
                "('succeeded','failed','skipped','upstream_failed','stopped')), "
                "(SELECT count(*) FROM tasks t WHERE t.run_id=r.id AND t.state='running') "
                "FROM runs r"
            ).fetchall()
            for run_id, n_done, _n_failed, n_running, done, running in bad:
                if n_done != done or n_running != running:
                    self.problems.append(
                        f"{label}: {run_id} counters n_done={n_done} n_running={n_running}, "
                        f"tasks done={done} running={running}"
                    )
            for name, used in conn.execute("SELECT name, used FROM pools WHERE used != 0"):
                self.problems.append(f"{label}: pool {name} used={used} in the store")
            left = conn.execute(
                "SELECT run_id, task_id, state FROM tasks WHERE state IN ('running','queued')"
            ).fetchall()
            left += conn.execute(
                "SELECT run_id, task_id, attempt FROM attempts WHERE state = 'running'"
            ).fetchall()
            if left:
                self.problems.append(f"{label}: tasks left {left}")
        finally:
            conn.close()


def signature(view: dict[str, Any]) -> Any:
    """What a run ends as: its state and each task's state and attempt count."""
    return (
        view["run"]["state"],
        tuple(sorted((k, t["state"], t["attempts"]) for k, t in view["tasks"].items())),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40, help="kills in all (server and run)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=8560)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="stratoflow-chaos-"))
    chaos = Chaos(root, args.port, args.seed)
    started = time.monotonic()
    try:
        chaos.setup()
        chaos.control()
        server_kills = args.kills * 3 // 4
        done, round_ = 0, 0
        while done < server_kills:
            round_ += 1
            done += chaos.server_round(min(6, server_kills - done), f"round {round_}")
        chaos.server.stop()
        chaos.check_store(root / "home" / "stratoflow.db", "server home")
        done += chaos.run_round(args.kills - server_kills, args.port + 1)
        chaos.check_store(root / "run-home" / "stratoflow.db", "run home")
    finally:
        chaos.server.stop()
        print(f"{time.monotonic() - started:.0f} s; figures: {dict(chaos.figures)}")
        if args.keep or chaos.problems:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    for note in chaos.notes:
        print("note:", note)
    for problem in chaos.problems:
        print("PROBLEM:", problem)
    return 1 if chaos.problems else 0


if __name__ == "__main__":
    sys.exit(main())
