"""The authorization matrix: every operation of the API, for every role, in the caller's own
project and in a project where the caller has no role.

Two projects, ``a`` and ``b``, each with the same workflow and a run. Users: one per role in
``a`` (none in ``b``), and a superuser. For each operation the expectation is derived from
one table (``OPERATIONS``: the action each operation needs) and the role order, and the reply
is checked:

- allowed: a success status;
- a role too low in ``a``: 403, and nothing changed;
- no role in ``b``: 404 with the same words as a thing that does not exist — a user of ``a``
  learns nothing about ``b`` — and nothing changed;
- no token, or a bad one: 401.

A test also checks the table against the API's own OpenAPI document, so a new route that is
not in the matrix fails the suite.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import text_logs
from tests.unit.test_api_app import Api, FakeDispatcher, Reply, StepClock

from stratoflow.adapters.local.connections import ConnectionStore, LocalConnections
from stratoflow.adapters.local.identity import SqliteIdentities
from stratoflow.adapters.local.resources import LocalResources
from stratoflow.adapters.local.secrets import LocalSecrets
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.api.access import token_authenticator
from stratoflow.api.app import PUBLIC_PATHS, create_app
from stratoflow.api.stored_layouts import layout_digest
from stratoflow.auth import REQUIRED_ROLE, Action, Role
from stratoflow.connections import validate_connection
from stratoflow.engine import AttemptResult, AttemptStatus, RunState
from stratoflow.readmodel import ReadModel
from stratoflow.service import Finished, Scheduler

FLOW = """\
name: flow
project: {project}
tasks:
  first: {{type: shell, command: "echo {marker}"}}
  second: {{type: shell, command: "true", depends_on: [first]}}
"""


@dataclass
class World:
    api: Api
    tokens: dict[str, str]  # user -> token secret
    runs: dict[str, str]  # project -> the id of its run (first task failed, second waiting)
    store: SqliteStore
    secrets: LocalSecrets
    resources: LocalResources
    connections: ConnectionStore
    backfills: dict[str, str] = field(default_factory=dict)  # project -> a backfill's id
    pooled: dict[str, str] = field(default_factory=dict)  # project -> a run waiting in a pool
    readmodel: ReadModel | None = None

    def call(
        self, user: str | None, method: str, path: str, body: Any = None, /, **query: str
    ) -> Reply:  # positional-only: a query may have a `path` (the resource routes)
        headers = {"Content-Type": "application/json"}
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return self.api.call(method, path, body, query=query or None, headers=headers)

    def snapshot(self) -> Any:
        """Everything an operation could change, to prove a refused one changed nothing."""
        runs = {
            p: (self.store.get_run(rid).state, [t.state for t in self.store.get_tasks(rid)])
            for p, rid in self.runs.items()
        }
        versions = {p: len(self.store.list_versions(p, "flow")) for p in self.runs}
        paused = {p: self.store.get_version(p, "flow").paused for p in self.runs}
        secrets = {p: self.secrets.known(p) for p in self.runs}
        backfills = [(b.id, b.state) for p in self.runs for b in self.store.list_backfills(p)]
        files = {p: [(f.path, f.version) for f in self.resources.files(p)] for p in self.runs}
        connections = {p: self.connections.list(p) for p in self.runs}
        total_runs = len(self.store.list_runs(_all_runs()))
        pools = self.store.list_pools()
        variables = {p: self.store.list_variables(p) for p in self.runs}
        assert self.readmodel is not None
        layouts = self.readmodel.db.query("SELECT project, name, version FROM version_layouts")
        return (
            runs, versions, paused, total_runs, secrets, backfills, files, connections, pools,
            layouts, variables,
        )  # fmt: skip


def _all_runs() -> Any:
    from stratoflow.ports import RunQuery

    return RunQuery(limit=1000)


USERS = {
    "viewer": Role.VIEWER,
    "operator": Role.OPERATOR,
    "editor": Role.EDITOR,
    "admin": Role.ADMIN,
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = SqliteStore(tmp_path / "state.db")
    identities = SqliteIdentities(tmp_path / "state.db")
    readmodel = ReadModel.open(str(tmp_path / "readmodel.db"))
    clock = StepClock()
    dispatcher = FakeDispatcher()
    resources = LocalResources(tmp_path)
    scheduler = Scheduler(store, store, dispatcher, clock, resources=resources)
    logs = tmp_path / "logs"
    logs.mkdir()
    api = Api(None, scheduler, dispatcher, logs)
    connections = ConnectionStore(tmp_path / "state.db")
    api.app = create_app(
        scheduler,
        read_log=text_logs(lambda attempt: f"log of {attempt.task_id}"),
        authenticate=token_authenticator(identities, clock),
        readmodel=readmodel,
        secrets=LocalSecrets(tmp_path),
        connections=LocalConnections(connections, LocalSecrets(tmp_path), clock),
    )
    tokens: dict[str, str] = {}
    for name, role in USERS.items():
        identities.create_user(name, superuser=False, now=clock.now())
        identities.set_role(name, "a", role)
        tokens[name] = identities.create_token(name, "t", clock.now())[1]
    identities.create_user("root", superuser=True, now=clock.now())
    tokens["root"] = identities.create_token("root", "t", clock.now())[1]
    runs: dict[str, str] = {}
    for project in ("a", "b"):
        scheduler.apply(FLOW.format(project=project, marker=1))
        scheduler.apply(FLOW.format(project=project, marker=2))  # two versions, for the diff
        run, _ = scheduler.trigger(project, "flow")
        scheduler.dispatch_ready()
        first = store.get_task(run.id, "first")
        failed = AttemptResult(AttemptStatus.FAILED, {"note": f"of {project}"})
        scheduler.on_finished([Finished(run.id, "first", first.attempt, failed)])
        runs[project] = run.id
    assert store.get_run(runs["a"]).state is RunState.FAILED
    yield World(
        api, tokens, runs, store, LocalSecrets(tmp_path), resources, connections,
        readmodel=readmodel,
    )  # fmt: skip
    connections.close()
    readmodel.close()
    identities.close()
    store.close()


@dataclass(frozen=True)
class Operation:
    method: str
    template: str  # the route as the OpenAPI document writes it
    action: Action
    # (world, project) -> (path, body, query)
    request: Callable[[World, str], tuple[str, Any, dict[str, str]]]
    changes: bool  # whether a success changes state (a refusal must not)
    prepare: Callable[[World, str], None] | None = None  # put the run in the state it needs


_VALUES = iter(range(1_000_000))


def _secret_put(w: World, p: str) -> tuple[str, Any, dict[str, str]]:
    return "/secrets/pw", {"value": f"value-{next(_VALUES)}"}, {"project": p}


def _secret_there(w: World, project: str) -> None:
    w.secrets.put(project, "gone", "to be deleted")


def _variable_put(w: World, p: str) -> tuple[str, Any, dict[str, str]]:
    return "/variables/bucket", {"value": f"s3://b-{next(_VALUES)}"}, {"project": p}


def _variable_there(w: World, project: str) -> None:
    from stratoflow.variables import Variable

    now = w.api.scheduler.clock.now()
    w.store.put_variable(Variable(project, "there", f"of {project}", now, "test"))


def _resource_put(w: World, p: str) -> tuple[str, Any, dict[str, str]]:
    return "/resources/file", f"bytes-{next(_VALUES)}", {"project": p, "path": "sql/new.sql"}


def _resource_there(w: World, project: str) -> None:
    w.resources.put(project, "there.txt", b"to be read or deleted")


def _on_there(path: str) -> Callable[[World, str], tuple[str, Any, dict[str, str]]]:
    return lambda w, p: (path, None, {"project": p, "path": "there.txt"})


def _connection_put(w: World, p: str) -> tuple[str, Any, dict[str, str]]:
    url = f"postgresql://u{next(_VALUES)}@db.example:5432/dw"
    return "/connections/wh", {"type": "postgresql", "settings": {"url": url}}, {"project": p}


def _connection_there(w: World, project: str) -> None:
    # athena: the local runtime's test answers without reaching out anywhere
    made = validate_connection(project, "lake", "athena", {"database": "sales"})
    w.connections.put(made, w.api.scheduler.clock.now())


def _running(w: World, project: str) -> None:
    w.api.scheduler.rerun(w.runs[project])


def _paused(w: World, project: str) -> None:
    _running(w, project)
    w.api.scheduler.pause(w.runs[project])


def _backfill(w: World, project: str) -> None:
    made = w.api.scheduler.backfills.create(project, "flow", start="2026-01-01", end="2026-01-01")
    w.backfills[project] = made.id


def _paused_backfill(w: World, project: str) -> None:
    _backfill(w, project)
    w.api.scheduler.backfills.pause(w.backfills[project])


def _bf(suffix: str = "") -> Callable[[World, str], Any]:
    def request(w: World, p: str) -> Any:
        if p not in w.backfills:  # an operation with no preparation (the 401 test)
            _backfill(w, p)
        return f"/backfills/{w.backfills[p]}{suffix}", None, {}

    return request


POOLED = """\
name: pooled
project: {project}
tasks:
  a: {{type: shell, command: "true", pool: wh, priority: 1}}
  b: {{type: shell, command: "true", pool: wh}}
"""


def _pool_there(w: World, project: str) -> None:
    w.api.scheduler.set_pool("wh", 1, project)


def _waiting_in_pool(w: World, project: str) -> None:
    """A run of ``pooled`` whose task b waits for the slot a holds."""
    _pool_there(w, project)
    w.api.scheduler.apply(POOLED.format(project=project))
    run, _ = w.api.scheduler.trigger(project, "pooled")
    w.api.scheduler.dispatch_ready()
    w.pooled[project] = run.id


def _force(w: World, p: str) -> tuple[str, Any, dict[str, str]]:
    if p not in w.pooled:  # an operation with no preparation (the 401 test)
        _waiting_in_pool(w, p)
    return f"/runs/{w.pooled[p]}/tasks/b/force-start", None, {}


def _wf(suffix: str = "", body: Any = None) -> Callable[[World, str], Any]:
    return lambda w, p: (f"/workflows/flow{suffix}", body, {"project": p})


def _layout_query(w: World, p: str) -> dict[str, str]:
    return {"project": p, "h": layout_digest(w.api.scheduler.spec(p, "flow", 1).dag)}


def _layout_body(w: World, p: str) -> dict[str, Any]:
    """A layout of version 1 of ``flow`` as the UI sends it: first -> second."""
    return {
        "format": 1, "tasks": ["first", "second"], "x": [0, 112], "y": [0, 0], "w": [64, 64],
        "h": 28, "edges": [0, 1], "points": [[64, 14, 112, 14]], "width": 176, "height": 28,
    }  # fmt: skip


def _layout_put(w: World, p: str) -> tuple[str, Any, dict[str, str]]:
    return "/workflows/flow/versions/1/layout", _layout_body(w, p), _layout_query(w, p)


def _layout_get(w: World, p: str) -> tuple[str, Any, dict[str, str]]:
    return "/workflows/flow/versions/1/layout", None, _layout_query(w, p)


def _layout_there(w: World, p: str) -> None:
    assert w.readmodel is not None
    h = _layout_query(w, p)["h"]
    text = json.dumps(_layout_body(w, p))
    w.readmodel.store_version_layout(p, "flow", 1, h, text, w.api.scheduler.clock.now())


def _run(suffix: str = "", body: Any = None) -> Callable[[World, str], Any]:
    return lambda w, p: (f"/runs/{w.runs[p]}{suffix}", body, {})


OPERATIONS = [
    Operation("GET", "/workflows", Action.READ, lambda w, p: ("/workflows", None, {"project": p}), False),
    Operation(
        "POST", "/workflows", Action.EDIT,
        lambda w, p: ("/workflows", {"source": FLOW.format(project=p, marker=3)}, {}), True,
    ),
    Operation("GET", "/workflows/{name}", Action.READ, _wf(), False),
    Operation("GET", "/workflows/{name}/versions", Action.READ, _wf("/versions"), False),
    Operation("GET", "/workflows/{name}/versions/{version}", Action.READ, _wf("/versions/1"), False),
    Operation(
        "GET", "/workflows/{name}/versions/{version}/layout", Action.READ, _wf("/versions/1/layout"), False
    ),
    # with h: the layout the UI stored (the prepared one); PUT: the first one stored
    Operation(
        "GET", "/workflows/{name}/versions/{version}/layout", Action.READ, _layout_get, False,
        _layout_there,
    ),
    # an editor's: the first stays for good, and every viewer of the version sees it
    Operation("PUT", "/workflows/{name}/versions/{version}/layout", Action.EDIT, _layout_put, True),
    Operation("GET", "/workflows/{name}/diff", Action.READ, _wf("/diff"), False),
    Operation("POST", "/workflows/{name}/pause", Action.OPERATE, _wf("/pause"), True),
    Operation("POST", "/workflows/{name}/unpause", Action.OPERATE, _wf("/unpause"), False),
    Operation("POST", "/workflows/{name}/runs", Action.OPERATE, _wf("/runs", {}), True),
    Operation("GET", "/runs", Action.READ, lambda w, p: ("/runs", None, {"project": p}), False),
    Operation("GET", "/runs/{run_id}", Action.READ, _run(), False),
    Operation("GET", "/runs/{run_id}/timeline", Action.READ, _run("/timeline"), False),
    Operation("GET", "/runs/{run_id}/layout", Action.READ, _run("/layout"), False),
    Operation("GET", "/runs/{run_id}/states", Action.READ, _run("/states"), False),
    Operation("GET", "/runs/{run_id}/tasks/{task_id}", Action.READ, _run("/tasks/first"), False),
    Operation(
        "GET", "/runs/{run_id}/tasks/{task_id}/attempts/{attempt}/log", Action.READ,
        _run("/tasks/first/attempts/1/log"), False,
    ),
    Operation(
        "GET", "/runs/{run_id}/tasks/{task_id}/outputs/{key}", Action.READ,
        lambda w, p: (f"/runs/{w.runs[p]}/tasks/first/outputs/note", None, {"attempt": "1"}),
        False,
    ),
    Operation("POST", "/runs/{run_id}/pause", Action.OPERATE, _run("/pause"), True, _running),
    Operation("POST", "/runs/{run_id}/resume", Action.OPERATE, _run("/resume"), True, _paused),
    Operation("POST", "/runs/{run_id}/stop", Action.OPERATE, _run("/stop"), True, _running),
    Operation("POST", "/runs/{run_id}/rerun", Action.OPERATE, _run("/rerun", {}), True),
    Operation(
        "POST", "/runs/{run_id}/tasks/{task_id}/mark", Action.OPERATE,
        _run("/tasks/first/mark", {"state": "succeeded"}), True,
    ),
    Operation(
        "POST", "/workflows/{name}/backfills", Action.OPERATE,
        _wf("/backfills", {"start": "2026-01-01", "end": "2026-01-02"}), True,
    ),
    Operation(
        "GET", "/backfills", Action.READ, lambda w, p: ("/backfills", None, {"project": p}), False
    ),
    Operation("GET", "/backfills/{backfill_id}", Action.READ, _bf(), False, _backfill),
    Operation("POST", "/backfills/{backfill_id}/pause", Action.OPERATE, _bf("/pause"), True, _backfill),
    Operation(
        "POST", "/backfills/{backfill_id}/resume", Action.OPERATE, _bf("/resume"), True,
        _paused_backfill,
    ),
    Operation("POST", "/backfills/{backfill_id}/cancel", Action.OPERATE, _bf("/cancel"), True, _backfill),
    Operation("GET", "/audit", Action.ADMINISTER, lambda w, p: ("/audit", None, {"project": p}), False),
    Operation("PUT", "/secrets/{name}", Action.EDIT, _secret_put, True),
    Operation("GET", "/secrets", Action.EDIT, lambda w, p: ("/secrets", None, {"project": p}), False),
    Operation(
        "DELETE", "/secrets/{name}", Action.EDIT,
        lambda w, p: ("/secrets/gone", None, {"project": p}), True, _secret_there,
    ),
    Operation("PUT", "/resources/file", Action.EDIT, _resource_put, True),
    Operation("GET", "/resources", Action.READ, lambda w, p: ("/resources", None, {"project": p}), False),
    Operation("GET", "/resources/versions", Action.READ, _on_there("/resources/versions"), False, _resource_there),
    Operation("GET", "/resources/file", Action.READ, _on_there("/resources/file"), False, _resource_there),
    Operation("DELETE", "/resources/file", Action.EDIT, _on_there("/resources/file"), True, _resource_there),
    Operation(
        "GET", "/connections", Action.READ, lambda w, p: ("/connections", None, {"project": p}),
        False,
    ),
    Operation(
        "GET", "/connections/{name}", Action.READ,
        lambda w, p: ("/connections/lake", None, {"project": p}), False, _connection_there,
    ),
    Operation("PUT", "/connections/{name}", Action.ADMINISTER, _connection_put, True),
    Operation(
        "DELETE", "/connections/{name}", Action.ADMINISTER,
        lambda w, p: ("/connections/lake", None, {"project": p}), True, _connection_there,
    ),
    Operation(
        "POST", "/connections/{name}/test", Action.OPERATE,
        lambda w, p: ("/connections/lake/test", None, {"project": p}), False, _connection_there,
    ),
    Operation("PUT", "/variables/{name}", Action.EDIT, _variable_put, True),
    Operation(
        "GET", "/variables", Action.READ, lambda w, p: ("/variables", None, {"project": p}),
        False, _variable_there,
    ),
    Operation(
        "GET", "/variables/{name}", Action.READ,
        lambda w, p: ("/variables/there", None, {"project": p}), False, _variable_there,
    ),
    Operation(
        "DELETE", "/variables/{name}", Action.EDIT,
        lambda w, p: ("/variables/there", None, {"project": p}), True, _variable_there,
    ),
    Operation(
        "PUT", "/pools/{name}", Action.EDIT,
        lambda w, p: ("/pools/wh", {"slots": 3}, {"project": p}), True,
    ),
    Operation("GET", "/pools", Action.READ, lambda w, p: ("/pools", None, {"project": p}), False),
    Operation(
        "GET", "/pools/{name}", Action.READ, lambda w, p: ("/pools/wh", None, {"project": p}),
        False, _pool_there,
    ),
    Operation(
        "DELETE", "/pools/{name}", Action.EDIT,
        lambda w, p: ("/pools/wh", None, {"project": p}), True, _pool_there,
    ),
    Operation(
        "POST", "/runs/{run_id}/tasks/{task_id}/force-start", Action.OPERATE, _force, True,
        _waiting_in_pool,
    ),
]  # fmt: skip
# routes every authenticated caller may call: they describe the caller, not a project's data
NOT_PROJECT_SCOPED = {("GET", "/me")}


def _id(op: Operation) -> str:
    return f"{op.method} {op.template}"


def _expected(user: str, project: str, op: Operation) -> int | None:
    """None for a success; else the refusal's status."""
    if user == "root":
        return None
    if op.template == "/workflows" and op.method == "POST" and USERS[user].rank < Role.EDITOR.rank:
        return 403  # refused before the body is parsed, whatever project it names
    if project != "a":
        return 404
    return None if USERS[user].rank >= REQUIRED_ROLE[op.action].rank else 403


@pytest.mark.parametrize("op", OPERATIONS, ids=_id)
@pytest.mark.parametrize("user", [*USERS, "root"])
@pytest.mark.parametrize("project", ["a", "b"])
def test_the_matrix(world: World, op: Operation, user: str, project: str) -> None:
    if op.prepare is not None:
        op.prepare(world, project)
    path, body, query = op.request(world, project)
    before = world.snapshot()
    reply = world.call(user, op.method, path, body, **query)
    expected = _expected(user, project, op)
    if expected is None:
        assert 200 <= reply.status < 300, (user, project, reply.status, reply.text)
        if op.changes:
            assert world.snapshot() != before, "a successful change changed nothing"
        return
    assert reply.status == expected, (user, project, reply.status, reply.text)
    assert world.snapshot() == before, "a refused operation changed something"
    message = reply.body["message"]
    if expected == 404:
        # the same words as for something that does not exist: nothing about b leaks
        assert "not found" in message
        assert world.runs["b"] not in message or message == f"run {world.runs['b']!r} not found"
        assert "admin" not in message
    else:
        assert f"{user} is {USERS[user].value} in project a" in message


def test_a_missing_run_and_a_foreign_run_read_the_same(world: World) -> None:
    foreign = world.call("admin", "GET", f"/runs/{world.runs['b']}")
    missing = world.call("admin", "GET", "/runs/no-such-run")
    assert foreign.status == missing.status == 404
    assert foreign.body["message"].replace(world.runs["b"], "X") == missing.body["message"].replace(
        "no-such-run", "X"
    )


@pytest.mark.parametrize("op", OPERATIONS, ids=_id)
def test_without_a_valid_token_every_operation_is_401(world: World, op: Operation) -> None:
    path, body, query = op.request(world, "a")
    before = world.snapshot()
    anonymous = world.call(None, op.method, path, body, **query)
    assert anonymous.status == 401, anonymous.text
    world.tokens["forger"] = "sft_" + "0" * 16 + "_" + "A" * 43
    forged = world.call("forger", op.method, path, body, **query)
    assert forged.status == 401, forged.text
    assert world.snapshot() == before


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: f"{op.method} {op.template}")
def test_without_a_valid_token_a_request_is_401_before_its_body_or_query_is_read(
    world: World, op: Operation
) -> None:
    """Powertools checks a request against its route's schema before any middleware of
    ours: a caller with no token was answered 422 describing the route's body and query,
    and had its body parsed first (a 10 MB body: 1.5 s of the local server's one API
    worker, for anyone who can reach the port). Identity is asked first."""
    path, _, query = op.request(world, "a")
    parsed: list[str] = []
    resolver = world.api.app
    real = resolver._json_body_deserializer

    def parse(text: str) -> Any:
        parsed.append(text)
        return real(text)

    bad_query = {**query, "limit": "x", "project": "", "offset": "-1", "attempt": "0"}
    for raw in ("{", '{"params": 5, "value": [], "source": 1}', "[" * 10_000):
        for headers in (
            {"Content-Type": "application/json"},
            {"Content-Type": "application/json", "Authorization": "Bearer sft_forged"},
        ):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(resolver, "_json_body_deserializer", parse)
                reply = world.api.call(op.method, path, raw=raw, query=bad_query, headers=headers)
            assert reply.status == 401, reply.text
    assert parsed == []


def test_public_routes_need_no_token(world: World) -> None:
    assert world.call(None, "GET", "/health").status == 200
    assert world.call(None, "GET", "/openapi.json").status == 200
    assert world.call(None, "GET", "/schema/workflow.json").status == 200


def test_me_tells_each_caller_its_role_and_actions(world: World) -> None:
    op = world.call("operator", "GET", "/me", project="a").body
    assert (op["user"], op["role"]) == ("operator", "operator")
    assert "run.stop" in op["actions"]
    assert "workflow.apply" not in op["actions"]
    assert world.call("operator", "GET", "/me", project="b").body["actions"] == []


def test_every_route_is_in_the_matrix(world: World) -> None:
    document = world.call(None, "GET", "/openapi.json").body
    routes = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if path not in PUBLIC_PATHS
    }
    covered = {(op.method, op.template) for op in OPERATIONS} | NOT_PROJECT_SCOPED
    assert routes == covered, {"untested": routes - covered, "gone": covered - routes}


def test_changes_are_audited_with_their_actor(world: World) -> None:
    run_id = world.runs["a"]
    assert world.call("operator", "POST", f"/runs/{run_id}/rerun", {}).status == 200
    assert (
        world.call(
            "editor", "POST", "/workflows", {"source": FLOW.format(project="a", marker=9)}
        ).status
        == 201
    )
    refused = world.call("viewer", "POST", f"/runs/{run_id}/stop")
    assert refused.status == 403
    entries = world.call("admin", "GET", "/audit", project="a").body["entries"]
    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        ("editor", "workflow.apply", "workflow/a/flow"),
        ("operator", "run.rerun", f"run/{run_id}"),
    ]
    assert world.call("admin", "GET", "/audit", project="b").status == 404


def test_only_superusers_change_global_pools_and_foreign_tasks_stay_hidden(world: World) -> None:
    before = world.snapshot()
    reply = world.call("admin", "PUT", "/pools/shared", {"slots": 2})
    assert reply.status == 403, reply.text
    assert "superusers only" in reply.body["message"]
    assert world.snapshot() == before
    assert world.call("root", "PUT", "/pools/shared", {"slots": 1}).status == 200
    assert world.call("viewer", "GET", "/pools", project="a").body["pools"][0]["name"] == "shared"
    # a run of b waits in the global pool: a's admin sees that it is there, not whose it is
    world.api.scheduler.apply(POOLED.format(project="b").replace("pool: wh", "pool: shared"))
    world.api.scheduler.trigger("b", "pooled")
    world.api.scheduler.dispatch_ready()
    view = world.call("admin", "GET", "/pools/shared").body
    assert (view["used"], view["waiting"], view["hidden"]) == (1, 1, 2)
    assert view["running_tasks"] == view["waiting_tasks"] == []
    assert len(world.call("root", "GET", "/pools/shared").body["waiting_tasks"]) == 1
    assert world.call("admin", "DELETE", "/pools/shared").status == 403


def test_viewers_read_variables_editors_set_them_and_other_projects_see_none(world: World) -> None:
    assert (
        world.call("editor", "PUT", "/variables/bucket", {"value": "s3://a"}, project="a").status
        == 201
    )
    assert (
        world.call("root", "PUT", "/variables/bucket", {"value": "s3://b"}, project="b").status
        == 201
    )
    seen = world.call("viewer", "GET", "/variables/bucket", project="a")
    assert (seen.status, seen.body["value"], seen.body["updated_by"]) == (200, "s3://a", "editor")
    listed = world.call("viewer", "GET", "/variables", project="a").body["variables"]
    assert [(v["name"], v["value"]) for v in listed] == [("bucket", "s3://a")]
    before = world.snapshot()
    refused = world.call("operator", "PUT", "/variables/bucket", {"value": "x"}, project="a")
    assert refused.status == 403, refused.text
    assert "needs editor" in refused.body["message"]
    assert world.call("viewer", "DELETE", "/variables/bucket", project="a").status == 403
    # project b's variable: a user of a only is told it does not exist, as a missing one
    for user in ("viewer", "admin"):
        hidden = world.call(user, "GET", "/variables/bucket", project="b")
        assert hidden.status == 404, hidden.text
        assert "s3://b" not in hidden.text
        assert world.call(user, "GET", "/variables", project="b").status == 404
    assert world.snapshot() == before
    entries = world.call("admin", "GET", "/audit", project="a").body["entries"]
    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        ("editor", "variable.set", "variable/a/bucket")
    ]
