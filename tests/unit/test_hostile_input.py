"""Hostile input (issue 9, items 1 and 2): no workflow file can stall or crash ``validate`` or
the API. Each case found by the attack is here, through the CLI (exit 2, a message, no
traceback) and the API (4xx JSON naming the limit); then a property test feeds generated YAML
with aliases, deep nesting, odd numbers and odd keys to both.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from tests.strategies import _bomb, hostile_workflows
from tests.unit.test_api_app import Api, FakeDispatcher, StepClock, assert_error

from stratoflow.adapters.local.identity import SqliteIdentities
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.api.access import token_authenticator
from stratoflow.api.app import create_app
from stratoflow.auth import Role
from stratoflow.cli import main
from stratoflow.errors import InvalidInput
from stratoflow.model import (
    MAX_ALIAS_NODES,
    MAX_DOCUMENT_BYTES,
    MAX_TASKS,
    due_firings,
    load_workflow,
    next_firing,
)
from stratoflow.service import Scheduler

LAYER = Path(__file__).resolve().parents[2] / "layers" / "core"
TASK = "  t: {type: shell, command: echo}\n"


def doc(top: str = "", task_fields: str = "") -> str:
    extra = f", {task_fields}" if task_fields else ""
    return f"name: w\n{top}tasks:\n  t: {{type: shell, command: echo{extra}}}\n"


def bomb(mapping: bool = False) -> str:
    """The attack's file: nine levels of nine aliases under ``params`` (9**9 values)."""
    return f"name: bomb\nparams:\n{_bomb(9, 9, mapping)}\ntasks:\n{TASK}"


def many_tasks_with_anchors(n: int = 50_000) -> str:
    lines = ["name: many", "tasks:", "  t0: &t {type: shell, command: echo}"]
    lines += [f"  t{i}: *t" for i in range(1, n)]
    return "\n".join(lines) + "\n"


def cron(expression: str, zone: str = "UTC") -> str:
    return doc(f"schedule: {{cron: '{expression}', timezone: {zone}}}\n")


# (case id, the file, words the error must contain)
CASES: list[tuple[str, str, tuple[str, ...]]] = [
    # item 1: bounded parsing
    ("alias bomb", bomb(), ("limit max_alias_nodes", "line 7")),
    ("mapping alias bomb", bomb(mapping=True), ("limit max_alias_nodes",)),
    ("50,000 tasks by anchors", many_tasks_with_anchors(), ("limit max_alias_nodes",)),
    (
        "10,001 tasks written out",
        "name: w\ntasks:\n"
        + "".join(f"  t{i}: {{type: shell, command: echo}}\n" for i in range(MAX_TASKS + 1)),
        (f"at most {MAX_TASKS}", "limit max_tasks", "line 2"),
    ),
    ("recursive alias", doc("params: {a: &a [1, *a]}\n"), ("recursive alias", "line 2")),
    (
        "deep block nesting",
        "name: w\nparams:\n"
        + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(80))
        + f"{'  ' * 81}v: 1\ntasks:\n{TASK}",
        ("limit max_depth",),
    ),
    ("deep flow nesting", doc(f"params: {{p: {'[' * 5000}{']' * 5000}}}\n"), ("nesting",)),
    # multibyte: under the API's character limit, over the byte limit
    (
        "over the byte limit",
        doc("description: " + "é" * (MAX_DOCUMENT_BYTES // 2 + 10) + "\n"),
        ("limit max_document_bytes",),
    ),
    ("a list as a task key", "name: w\ntasks:\n  ? [a, b]\n  : {type: shell}\n", ("a list",)),
    ("an integer as a key", "name: w\ntasks:\n  1: {type: shell, command: echo}\n", ("quote",)),
    # (``on`` is the one word-key YAML 1.1 reads as a boolean that the format takes as the
    # word: ``alerts: [{on: [failure], group: g}]``)
    ("a boolean as a key", doc("params: {off: 1}\n"), ("a boolean", "quote")),
    ("binary tag", doc("params: {a: !!binary AAAA}\n"), ("not allowed",)),
    ("year 0", doc("params: {a: 0000-01-01}\n"), ("year 0",)),
    # item 2: every number bounded, with the field named
    ("huge timeout", doc(task_fields="timeout: 99999999999999d"), ("timeout", "at most 365d")),
    ("infinite timeout", doc(task_fields="timeout: .inf"), ("timeout", "finite")),
    ("400-digit timeout", doc(task_fields="timeout: " + "9" * 400), ("timeout", "out of range")),
    ("400-digit quoted", doc(task_fields=f"timeout: '{'9' * 400}'"), ("timeout", "at most")),
    ("30-nines concurrency", doc(f"concurrency: {'9' * 30}\n"), ("concurrency", "64 bits")),
    ("concurrency over", doc("concurrency: 10001\n"), ("concurrency", "10000")),
    ("max_active_runs over", doc("max_active_runs: 10001\n"), ("max_active_runs", "10000")),
    ("retries over", doc(task_fields="retries: 101"), ("retries", "100")),
    ("nan backoff", doc(task_fields="retry_backoff: .nan"), ("retry_backoff", "finite")),
    ("backoff over", doc("defaults: {retry_backoff: 11}\n"), ("defaults.retry_backoff", "10")),
    ("retry_delay over", doc(task_fields="retry_delay: 366d"), ("retry_delay", "365d")),
    ("max_retry_delay", doc("defaults: {max_retry_delay: 1e12}\n"), ("max_retry_delay",)),
    ("negative timeout", doc(task_fields="timeout: -5"), ("timeout", "negative")),
    # ids and names without control characters
    ("task id with a newline", 'name: w\ntasks:\n  "ab\\n": {type: shell}\n', ("'ab\\n'",)),
    ("param key with escape", doc('params: {"a\\e[31m": 1}\n'), ("control character",)),
    ("env name with =", doc(task_fields="env: {'A=B': x}"), ("environment variable name",)),
    ("env value with NUL", doc(task_fields='env: {A: "x\\0"}'), ("NUL",)),
    ("NUL in a command", doc().replace("echo", '"echo \\0"'), ("'command'", "NUL")),
    ("NUL in a key", doc('params: {"a\\0": 1}\n'), ("NUL",)),
    (
        "url with CRLF",
        doc().replace(
            "{type: shell, command: echo}", '{type: http, url: "http://x/\\r\\nHost: y"}'
        ),
        ("url", "control character"),
    ),
    # crons that can never fire, and windows some time zone cannot represent
    ("Feb 30", cron("0 0 30 2 *"), ("'0 0 30 2 *' never fires",)),
    ("Feb 31", cron("0 0 31 2 *"), ("'0 0 31 2 *' never fires",)),
    ("EB Feb 31", cron("cron(0 0 31 2 ? *)"), ("'cron(0 0 31 2 ? *)' never fires",)),
    ("year passed", cron("cron(0 0 1 1 ? 1999)"), ("'cron(0 0 1 1 ? 1999)' never fires",)),
    (
        "always in a DST gap",
        cron("cron(30 2 ? 3 SUN#2 *)", "America/New_York"),
        ("never fires in America/New_York",),
    ),
    (
        "start 0001 in Tokyo",
        doc(
            "schedule: {cron: '0 0 * * *', timezone: Asia/Tokyo, start: 0001-01-01T00:00:00,"
            " catchup: true}\n"
        ),
        ("schedule.start", "1900-01-01 to 9999-12-30"),
    ),
    (
        "start 0001 with an offset",
        doc("schedule: {cron: '0 0 * * *', start: 0001-01-01T00:00:00+05:00}\n"),
        ("schedule.start", "out of range"),
    ),
    (
        "end 9999-12-30 at -14:00",
        doc("schedule: {cron: '0 0 * * *', end: 9999-12-30T23:00:00-14:00}\n"),
        ("schedule.end", "out of range"),
    ),
    (
        "end 9999-12-31 in New York",
        doc(
            "schedule: {cron: '0 0 * * *', timezone: America/New_York, end: 9999-12-31T23:59:00}\n"
        ),
        ("schedule.end", "out of range"),
    ),
    (
        "Feb 30 in a window that ended",
        doc("schedule: {cron: '0 0 30 2 *', end: 2001-01-01T00:00:00}\n"),
        ("'0 0 30 2 *' never fires",),
    ),
    (
        "batch vcpus",
        "name: w\ntasks:\n  t: {type: batch, image: x, command: echo, vcpus: 1e300}\n",
        ("vcpus", "256"),
    ),
    (
        "header injection",
        doc(task_fields="").replace(
            "{type: shell, command: echo}",
            '{type: http, url: "http://x", headers: {X-A: "v\\r\\nSet-Cookie: a=b"}}',
        ),
        ("control character",),
    ),
]
IDS = [c[0] for c in CASES]


# ------------------------------------------------------------------ CLI


def validate(tmp_path: Path, content: str | bytes, *args: str) -> Result:
    file = tmp_path / "w.yaml"
    if isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content, encoding="utf-8")
    return CliRunner().invoke(
        main, [*args, "validate", str(file)] if args else ["validate", str(file)]
    )


def assert_refused(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ")
    for needle in needles:
        assert needle in result.output, (needle, result.output)


@pytest.mark.parametrize(("text", "needles"), [c[1:] for c in CASES], ids=IDS)
def test_validate_refuses_each_case_naming_it(
    tmp_path: Path, text: str, needles: tuple[str, ...]
) -> None:
    assert_refused(validate(tmp_path, text), *needles)


def test_a_file_that_is_not_utf8_is_refused_with_its_byte_offset(tmp_path: Path) -> None:
    content = "name: w\ndescription: café\n".encode("latin-1") + TASK.encode()
    assert_refused(validate(tmp_path, content), "not UTF-8", "0xe9", "byte offset 24", "line 2")


def test_apply_and_run_refuse_before_any_server_or_state(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: w\n\xff\n")
    home = tmp_path / "home"
    # apply reads the file before it calls anyone: nothing listens on port 9
    assert_refused(
        CliRunner().invoke(main, ["apply", str(bad), "--api", "http://127.0.0.1:9"]),
        "byte offset 8",
    )
    bombed = tmp_path / "bomb.yaml"
    bombed.write_text(bomb(), encoding="utf-8")
    assert_refused(
        CliRunner().invoke(main, ["run", str(bombed), "--home", str(home)]),
        "limit max_alias_nodes",
    )
    assert not home.exists()


def test_a_fifo_or_endless_file_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    assert_refused(CliRunner().invoke(main, ["validate", "/dev/zero"]), "limit max_document_bytes")


def _limit_memory() -> None:
    two_gib = 2 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (two_gib, two_gib))


def test_the_bomb_in_a_real_process_stays_small(tmp_path: Path) -> None:
    """The attack grew ``validate`` to 6 GB over 116 s; now it is refused at once, under a
    2 GiB address-space limit, with exit 2 and no traceback."""
    file = tmp_path / "bomb.yaml"
    file.write_text(bomb(), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(LAYER)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "stratoflow", "validate", str(file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        preexec_fn=_limit_memory,  # no threads are started before the exec
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "limit max_alias_nodes" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30  # generous: the old behaviour took minutes


# ------------------------------------------------------------------ API


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    store = SqliteStore(tmp_path / "state.db")
    scheduler = Scheduler(store, store, FakeDispatcher(), StepClock())
    built = Api(None, scheduler, FakeDispatcher(), tmp_path)
    built.app = create_app(scheduler)
    yield built
    store.close()


@pytest.mark.parametrize(("text", "needles"), [c[1:] for c in CASES], ids=IDS)
def test_the_api_refuses_each_case_with_a_400_naming_it(
    api: Api, text: str, needles: tuple[str, ...]
) -> None:
    reply = api.call("POST", "/workflows", {"source": text})
    assert_error(reply, 400, "invalid_input", *needles)
    assert api.scheduler.catalog.list_workflows("default") == []


def test_text_that_is_not_unicode_is_refused(api: Api) -> None:
    """A lone surrogate (JSON "\\ud800") cannot be encoded: the API's request model says so
    (422); a caller of the model gets the loader's answer."""
    text = doc("description: \ud800\n")
    reply = api.call("POST", "/workflows", raw=json.dumps({"source": text}))
    assert_error(reply, 422, "invalid_request", "body.source")
    with pytest.raises(InvalidInput, match=r"line 2\): not valid Unicode at character 21"):
        load_workflow(text)


def test_the_bomb_costs_the_api_little_time_and_memory(api: Api) -> None:
    tracemalloc.start()
    started = time.process_time()
    try:
        reply = api.call("POST", "/workflows", {"source": bomb(mapping=True)})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_error(reply, 400, "invalid_input", "limit max_alias_nodes")
    assert peak < 20 * 1024**2, peak  # the attack took gigabytes
    assert time.process_time() - started < 5  # generous; the mapping variant took 74 s


USERS = {"nobody": None, "viewer": Role.VIEWER, "operator": Role.OPERATOR, "editor": Role.EDITOR}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Api, dict[str, str]]]:
    store = SqliteStore(tmp_path / "state.db")
    identities = SqliteIdentities(tmp_path / "state.db")
    clock = StepClock()
    scheduler = Scheduler(store, store, FakeDispatcher(), clock)
    built = Api(None, scheduler, FakeDispatcher(), tmp_path)
    built.app = create_app(scheduler, authenticate=token_authenticator(identities, clock))
    tokens: dict[str, str] = {}
    for name, role in USERS.items():
        identities.create_user(name, superuser=False, now=clock.now())
        if role is not None:
            identities.set_role(name, "a", role)
        tokens[name] = identities.create_token(name, "t", clock.now())[1]
    yield built, tokens
    identities.close()
    store.close()


def post_as(api: Api, token: str, source: str) -> Any:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return api.call("POST", "/workflows", {"source": source}, headers=headers)


@pytest.mark.parametrize("user", ["nobody", "viewer", "operator"])
def test_a_caller_who_may_edit_nothing_gets_403_before_parsing(
    secured: tuple[Api, dict[str, str]], user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, tokens = secured

    def must_not_parse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the body was parsed")

    monkeypatch.setattr("stratoflow.api.app.load_workflow", must_not_parse)
    needle = "has no role in any project" if user == "nobody" else f"is {user} in project a"
    assert_error(post_as(api, tokens[user], bomb()), 403, "forbidden", needle, "needs editor")


def test_an_editor_gets_the_bounded_loaders_answer(secured: tuple[Api, dict[str, str]]) -> None:
    api, tokens = secured
    assert_error(post_as(api, tokens["editor"], bomb()), 400, "invalid_input", "max_alias_nodes")
    ok = post_as(api, tokens["editor"], doc("project: a\n"))
    assert ok.status == 201, ok.text
    # an editor of a who writes a workflow of b still learns nothing about b
    assert post_as(api, tokens["editor"], doc("project: b\n")).status == 404


# ------------------------------------------------------------------ what still loads


def test_anchors_merges_and_lines_still_work() -> None:
    text = (
        "name: w\n"
        "defaults: &d {retries: 2}\n"
        "tasks:\n"
        "  a: &task {type: shell, command: echo, timeout: 365d, retries: 3}\n"
        "  b: {<<: *task, depends_on: [a]}\n"
        "  c: {<<: *task, retries: 1, params: {n: 9223372036854775807, f: 1.5e+300}}\n"
    )
    spec = load_workflow(text, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert spec.workflow.retries("b") == 3
    assert spec.workflow.tasks["c"].params == {"n": 2**63 - 1, "f": 1.5e300}
    with pytest.raises(InvalidInput) as caught:
        load_workflow(text.replace("retries: 1,", "retries: 1, retry_backoff: 12,"))
    assert caught.value.problems[0].line == 6


def test_an_alias_budget_just_under_the_limit_is_fine() -> None:
    values = "[" + ", ".join(["1"] * 999) + "]"
    aliases = ", ".join(["*v"] * (MAX_ALIAS_NODES // 1000))
    text = doc(f"params: {{v: &v {values}, w: [{aliases}]}}\n")
    assert load_workflow(text).workflow.params["w"][0][998] == 1


def test_sparse_crons_that_do_fire_are_accepted() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    for expression in ("cron(0 0 ? 2 MON#5 *)", "0 0 29 2 *", "cron(0 0 1 1 ? 2150)"):
        load_workflow(cron(expression), now=now)


def test_a_window_that_has_ended_is_over_not_a_mistake() -> None:
    """Re-applying a file after its schedule's window ended keeps working."""
    text = doc(
        "schedule: {cron: '0 0 * * *', start: 2000-01-01T00:00:00, end: 2001-01-01T00:00:00}\n"
    )
    schedule = load_workflow(text, now=datetime(2026, 12, 2, tzinfo=UTC)).workflow.schedule
    assert schedule is not None
    assert next_firing(schedule, datetime(2026, 12, 2, tzinfo=UTC)) is None


def test_schedule_windows_at_the_edges_of_time_run_without_overflow() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    early = load_workflow(
        doc(
            # a rate: a cron catch-up from before 1970 is refused (test_catchup_backlog.py)
            "schedule: {cron: 'rate(1 day)', timezone: Pacific/Kiritimati, "
            "start: 1900-01-01T00:00:00, catchup: true}\n"
        ),
        now=now,
    ).workflow.schedule
    assert early is not None
    firings, cursor = due_firings(early, None, now)
    assert len(firings) == 500
    assert cursor == firings[-1]
    late = load_workflow(
        doc("schedule: {cron: '0 0 * * *', timezone: Etc/GMT+12, end: 9999-12-30T23:59:59}\n"),
        now=now,
    ).workflow.schedule
    assert late is not None
    assert next_firing(late, now) is not None
    assert next_firing(late, datetime(9999, 12, 31, 23, 0, tzinfo=UTC)) is None


# ------------------------------------------------------------------ property


def test_generated_hostile_files_get_exit_2_or_4xx_never_a_crash(tmp_path: Path) -> None:
    """Generated files (aliases, bombs, deep nesting, odd numbers and keys) through
    ``validate`` and ``POST /workflows``: exit 0 or 2 and 2xx or 4xx, never a traceback or a
    5xx, in small memory and bounded time."""
    store = SqliteStore(tmp_path / "state.db")
    scheduler = Scheduler(store, store, FakeDispatcher(), StepClock())
    api = Api(create_app(scheduler), scheduler, FakeDispatcher(), tmp_path)

    @settings(
        max_examples=int(os.environ.get("STRATOFLOW_HOSTILE_EXAMPLES", "60")),  # more: a hunt
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(hostile_workflows())
    def check(text: str) -> None:
        tracemalloc.start()
        started = time.process_time()
        try:
            result = validate(tmp_path, text)
            reply = api.call("POST", "/workflows", {"source": text})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.exit_code in (0, 2), result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output
        assert reply.status in (200, 201, 400), reply.text
        assert set(reply.body) >= ({"error", "message"} if reply.status == 400 else {"name"})
        assert (result.exit_code == 0) == (reply.status < 300), (result.output, reply.text)
        assert peak < 64 * 1024**2, peak
        assert time.process_time() - started < 20  # generous: the attack took minutes

    try:
        check()
    finally:
        store.close()
