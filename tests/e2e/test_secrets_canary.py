"""The canary (issue 12): a secret set through the CLI and used in a task's env, a param, its
command and an alert channel's header reaches the task and the channel's endpoint, and nothing
Stratoflow keeps or shows holds it: API responses, the state, outbox and read-model rows
(SQLite, and the PostgreSQL read model), events, the audit log, the server's log. Also the
CLI's exit codes for secrets."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from stratoflow.cli import main
from stratoflow.secrets import Masker, mask_outputs
from tests.e2e.http_stub import json_stub
from tests.e2e.server_process import first_admin_token, free_port
from tests.logframe import framed, pid_of
from tests.readmodel.conftest import ADMIN_URL, admin_connection, scratch_url
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

CANARY = f"canary-{uuid.uuid4().hex}-Zq9"
DIGEST = hashlib.sha256(CANARY.encode()).hexdigest()

WORKFLOW = """
name: canary
alerts: [{on: [failure], group: oncall}]
tasks:
  use:
    type: shell
    env: {CANARY_ENV: "{{ secrets.canary }}"}
    params: {p: "{{ secrets.canary }}"}
    command: |
      printf %s "$CANARY_ENV" | sha256sum | cut -c1-64 | sed 's/^/from_env=/' >> "$STRATOFLOW_OUTPUT"
      printf %s '{{ secrets.canary }}' | sha256sum | cut -c1-64 | sed 's/^/from_command=/' >> "$STRATOFLOW_OUTPUT"
      printf %s '{{ params.p }}' | sha256sum | cut -c1-64 | sed 's/^/from_param=/' >> "$STRATOFLOW_OUTPUT"
      echo "echoed={{ secrets.canary }}" >> "$STRATOFLOW_OUTPUT"
      echo "the task prints its own secret: {{ secrets.canary }}"
  py:
    type: python
    params: {p: "{{ secrets.canary }}"}
    code: |
      import hashlib
      outputs["from_param"] = hashlib.sha256(params["p"].encode()).hexdigest()
      outputs["returned"] = params["p"]
  fails:
    type: python
    params: {p: "{{ secrets.canary }}"}
    code: raise RuntimeError("wrong password " + params["p"])
  unset:
    type: shell
    command: echo {{ secrets.never_set }}
"""


class Server:
    def __init__(self, home: Path, db: str | None) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / "server.log"
        argv = [sys.executable, "-m", "stratoflow", "server", "--home", str(home),
                "--port", str(self.port)]  # fmt: skip
        if db:
            argv += ["--db", db]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        self.token = first_admin_token(self.log)
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )
        self.seen: list[str] = []  # every response body

    def get(self, path: str, **params: Any) -> httpx.Response:
        response = self.http.get(path, params=params)
        self.seen.append(f"GET {path}: {response.status_code} {response.headers} {response.text}")
        return response

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=15)


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    db = None
    admin = None
    if request.param == "postgresql":
        admin = admin_connection()
        name = f"sf_test_{uuid.uuid4().hex[:12]}"
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
        db = scratch_url(ADMIN_URL, name)
    srv = Server(tmp_path / "home", db)
    srv.db = db  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.stop()
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
            admin.close()  # type: ignore[attr-defined]


def cli(server: Server, *args: str, stdin: str | None = None) -> Any:
    result = CliRunner().invoke(
        main, [*args, "--api", server.url], input=stdin, env={"STRATOFLOW_TOKEN": server.token}
    )
    server.seen.append(f"cli {args}: {result.output}")
    return result


def sqlite_rows(path: Path) -> str:
    """Every row of every table, as text."""
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(repr(row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"'))
    finally:
        db.close()


def postgres_rows(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as db:
        tables = [
            r[0]
            for r in db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        return "\n".join(
            repr(row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"').fetchall()
        )


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An alert channel's endpoint: the headers of each request it got."""
    got: list[dict[str, str]] = []

    def respond(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        got.append({k.lower(): v for k, v in headers.items()})
        return 200, {"ok": True}

    with json_stub(respond) as url:
        yield url, got


def test_the_canary_reaches_the_task_and_nothing_else(
    server: Server, endpoint: tuple[str, list[dict[str, str]]]
) -> None:
    # GIVEN the canary set through the CLI, the value on stdin
    made = cli(server, "secrets", "set", "canary", "--output", "json", stdin=CANARY + "\n")
    assert made.exit_code == 0, made.output
    assert json.loads(made.output) == {"project": "default", "name": "canary", "created": True}
    listed = cli(server, "secrets", "list", "--output", "json")
    assert json.loads(listed.output)["secrets"] == [{"project": "default", "name": "canary"}]
    assert cli(server, "secrets", "list").output == "canary\n"
    # AND a channel whose credential is the canary, in the group the workflow's failure alerts
    url, received = endpoint
    assert cli(server, "secrets", "set", "hook", stdin=f"{url}/hook").exit_code == 0
    for args in (
        ["channels", "add", "hook", "--type", "webhook", "--url", "{{ secrets.hook }}",
         "--setting", "header.Authorization=Bearer {{ secrets.canary }}"],
        ["groups", "set", "oncall", "--channels", "hook"],
    ):  # fmt: skip
        added = cli(server, "alerts", *args)
        assert added.exit_code == 0, added.output

    # WHEN a workflow uses it in env, params and commands, and runs
    source = Path(server.home.parent / "canary.yaml")
    source.write_text(WORKFLOW)
    assert cli(server, "apply", str(source)).exit_code == 0
    waited = cli(server, "trigger", "canary", "--wait", "--output", "json")
    assert waited.exit_code == 1, waited.output  # `fails` and `unset` fail, as they should
    run_id = json.loads(waited.output)["run"]["id"]

    # THEN the task received the value: it hashed what it got
    run = server.get(f"/runs/{run_id}").json()
    tasks = run["tasks"]
    assert tasks["use"]["state"] == "succeeded"
    assert tasks["use"]["outputs"] == {
        "from_env": DIGEST, "from_command": DIGEST, "from_param": DIGEST, "echoed": "***",
    }  # fmt: skip
    assert tasks["py"]["outputs"] == {"from_param": DIGEST, "returned": "***"}
    assert tasks["fails"]["state"] == "failed"
    assert "wrong password ***" in tasks["fails"]["error"]
    assert tasks["unset"]["state"] == "failed"
    assert "secret 'never_set' is not set in project 'default'" in tasks["unset"]["error"]
    # the run's failure alert reached the channel with the canary in its header
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = cli(server, "alerts", "list", "--run", run_id, "--output", "json")
        deliveries = json.loads(listed.output)["deliveries"]
        if [d["status"] for d in deliveries] == ["sent"]:
            break
        time.sleep(0.2)
    assert [(d["event"], d["channel"], d["status"]) for d in deliveries] == [
        ("failure", "hook", "sent")
    ]
    assert [h["authorization"] for h in received] == [f"Bearer {CANARY}"]

    # the log view masks what the task printed (the file is the task's own writing), and
    # soon after its end the executor writes '*' over each value the task was given, in
    # place (so that rotating the secret later never shows it): once that is done the view
    # shows the file's stars
    stars = "*" * len(CANARY)
    url = f"/runs/{run_id}/tasks/use/attempts/1/log"
    assert wait_for(lambda: stars in server.get(url).text, timeout=10)
    log = server.get(url)
    # ... and after it the executor's note on the output it masked (`echoed`)
    _, note = mask_outputs(Masker([CANARY]), {"echoed": CANARY})
    whole = framed("use", f"the task prints its own secret: {stars}\n", pid=pid_of(log.text))
    whole += str(note)
    assert log.text == whole
    for limit in (7, 20, 33):  # paged: a value split across pages is still masked
        text, offset = "", 0
        while True:
            page = server.get(
                f"/runs/{run_id}/tasks/use/attempts/1/log", offset=offset, limit=limit
            )
            text += page.text
            offset = int(page.headers["X-Next-Offset"])
            if offset >= int(page.headers["X-Log-Size"]):
                break
        assert text == whole
    assert cli(server, "logs", run_id, "use").output == whole

    # every other view of it
    for path in (
        "/runs", f"/runs/{run_id}/timeline", "/workflows", "/workflows/canary",
        "/secrets", "/audit", "/me", f"/runs/{run_id}/tasks/use", "/alerts",
        "/alerts/channels", "/alerts/groups",
        f"/runs/{run_id}/tasks/py/outputs/returned", f"/runs/{run_id}/tasks/fails",
    ):  # fmt: skip
        assert server.get(path).status_code == 200, path
    audit = server.get("/audit").json()
    assert any(e["action"] == "secret.set" and e["target"] == "secret/default/canary"
               for e in audit["entries"])  # fmt: skip
    assert cli(server, "secrets", "delete", "canary").output == "deleted: secret default/canary\n"
    server.get("/audit")

    # AND the canary is in none of: responses, CLI output, state and read-model rows, events,
    # the audit log, the server's log; only in the secrets file of the home
    server.stop()
    home = server.home
    assert CANARY not in "\n".join(server.seen)
    assert CANARY not in sqlite_rows(home / "stratoflow.db")
    db = getattr(server, "db", None)
    assert CANARY not in (postgres_rows(db) if db else sqlite_rows(home / "readmodel.db"))
    assert "secret.delete" in (postgres_rows(db) if db else sqlite_rows(home / "readmodel.db"))
    assert CANARY not in (home / "events.jsonl").read_text()
    assert CANARY not in server.log.read_text()
    for path in home.rglob("*"):  # raw bytes too: WAL files, anything else kept
        if path.is_file() and "attempts" not in path.parts:
            assert CANARY.encode() not in path.read_bytes(), path


def test_cli_exit_codes(tmp_path: Path) -> None:
    server = Server(tmp_path / "home", None)
    try:
        # bad name or value: exit 2 before anything is sent
        bad = cli(server, "secrets", "set", "bad-name", stdin="v-value")
        assert (bad.exit_code, "a secret name is a letter" in bad.output) == (2, True)
        empty = cli(server, "secrets", "set", "pw", stdin="\n")
        assert (empty.exit_code, "non-empty" in empty.output) == (2, True)
        big = cli(server, "secrets", "set", "pw", stdin="x" * (64 * 1024 + 1))
        assert (big.exit_code, "at most" in big.output) == (2, True)
        short = cli(server, "secrets", "set", "pw", stdin="abc")  # too short to mask
        assert (short.exit_code, "at least 4 characters" in short.output) == (2, True)
        assert json.loads(cli(server, "secrets", "list", "--output", "json").output) == {
            "project": "default", "secrets": [],
        }  # fmt: skip
        # created, then updated; a name that is not there: exit 2 with the server's words
        assert cli(server, "secrets", "set", "pw", stdin="one-1").output == (
            "created: secret default/pw\n"
        )
        assert cli(server, "secrets", "set", "pw", stdin="two-2").output == (
            "updated: secret default/pw\n"
        )
        missing = cli(server, "secrets", "delete", "nope")
        assert (missing.exit_code, "'nope' not found" in missing.output) == (2, True)
        # a project name that cannot be one: 4xx naming the field, exit 2
        odd = cli(server, "secrets", "set", "pw", "--project", "Bad/Project", stdin="v-value")
        assert (odd.exit_code, "project" in odd.output) == (2, True)
        # a viewer may not set, list or delete: 403, exit 2
        users = CliRunner()
        home = ["--home", str(server.home)]
        assert users.invoke(main, ["users", "add", "vic", *home]).exit_code == 0
        assert (
            users.invoke(main, ["users", "grant", "vic", "default", "viewer", *home]).exit_code == 0
        )
        made = CliRunner().invoke(main, ["tokens", "create", "vic", *home])
        token = made.stdout.strip()
        as_viewer = CliRunner().invoke(
            main, ["secrets", "set", "pw", "--api", server.url], input="three",
            env={"STRATOFLOW_TOKEN": token},
        )  # fmt: skip
        assert as_viewer.exit_code == 2
        assert "editor" in as_viewer.output
        assert cli(server, "secrets", "list").output == "pw\n"
        assert json.loads((server.home / "secrets" / "default.json").read_text()) == {"pw": "two-2"}
    finally:
        server.stop()
    # no server: exit 3
    gone = CliRunner().invoke(main, ["secrets", "list", "--api", server.url])
    assert gone.exit_code == 3
