"""A ``project`` query no project can have (the model's rule: 1-128 of a-z, 0-9, '_', '-') is
a 400 naming ``project`` and the rule, on every route that reads one, as the variables and
secrets routes answered it; it was an empty list (``GET /workflows?project=Sales``) or a 404,
as if the project existed and held nothing. A valid project that has nothing is answered as
before. The routes are taken from the API's own OpenAPI document, so a new one is covered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.unit.test_api_app import Api, FakeDispatcher

from stratoflow.adapters.local.connections import LocalConnections
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.api.app import create_app

NOT_PROJECTS = ["Sales", "a b", "../x", "x" * 129, "é", ""]
RULE = "a project name is 1-128 of a-z, 0-9, '_' and '-'"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("project-query")
    rt = LocalRuntime(home / "home")
    connections = LocalConnections(rt.connections, rt.secret_source, rt.clock)
    built = create_app(
        rt.scheduler, readmodel=rt.readmodel, alerts=rt.alerts, secrets=rt.secrets,
        secret_source=rt.secret_source, connections=connections,
    )  # fmt: skip
    yield Api(built, rt.scheduler, FakeDispatcher(), home)
    rt.close()


def _call(api: Api, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
    reply = api.call(method, path, query=query)
    return reply.status, reply.body


def _operations(app: Api) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path with its parameters filled, the other required queries) of every
    operation whose query takes ``project``."""
    status, document = _call(app, "GET", "/openapi.json", {})
    assert status == 200
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            params = operation.get("parameters") or []
            if not any(p["in"] == "query" and p["name"] == "project" for p in params):
                continue
            filled = path
            for p in params:
                if p["in"] == "path":
                    value = "1" if p["schema"].get("type") == "integer" else "x"
                    filled = filled.replace("{" + p["name"] + "}", value)
            required = {p["name"]: "x" for p in params if p["in"] == "query" and p.get("required")}
            found.append((method.upper(), filled, required))
    return found


def test_the_document_lists_the_routes_that_read_a_project(app: Api) -> None:
    paths = {path for _, path, _ in _operations(app)}
    for path in ("/workflows", "/runs", "/backfills", "/audit", "/pools", "/variables",
                 "/secrets", "/connections", "/alerts/channels", "/resources"):  # fmt: skip
        assert path in paths, sorted(paths)


@pytest.mark.parametrize("project", NOT_PROJECTS)
def test_a_project_no_project_can_have_is_a_400_naming_it_on_every_route(
    app: Api, project: str
) -> None:
    for method, path, required in _operations(app):
        status, body = _call(app, method, path, {**required, "project": project})
        assert status == 400, (method, path, status, body)
        assert body["error"] == "invalid_input"
        assert body["problems"] == [{"path": "project", "message": RULE, "line": None}]


def test_the_400_is_in_the_document_of_every_such_route(app: Api) -> None:
    _, document = _call(app, "GET", "/openapi.json", {})
    for method, path, _ in _operations(app):
        template = next(
            p for p, ops in document["paths"].items()
            if method.lower() in ops and _matches(p, path)
        )  # fmt: skip
        assert "400" in document["paths"][template][method.lower()]["responses"], (method, path)


def _matches(template: str, path: str) -> bool:
    parts, given = template.split("/"), path.split("/")
    return len(parts) == len(given) and all(
        t == g or t.startswith("{") for t, g in zip(parts, given, strict=True)
    )


@pytest.mark.parametrize(
    ("path", "field"),
    [("/workflows", "workflows"), ("/runs", "runs"), ("/backfills", "backfills"),
     ("/variables", "variables"), ("/alerts/channels", "channels")],
)  # fmt: skip
def test_a_valid_project_with_nothing_in_it_is_answered_as_before(
    app: Api, path: str, field: str
) -> None:
    status, body = _call(app, "GET", path, {"project": "-nobody_here"})
    assert status == 200, body
    assert body[field] == []
    status, body = _call(app, "GET", "/workflows/w", {"project": "-nobody_here"})
    assert status == 404, body


def test_every_project_query_documents_the_rule_the_check_applies(app: Api) -> None:
    """The document's schema for each ``project`` query accepts exactly what the 400 check
    does: a client or a fuzzer reading it sees the real rule (it said 1-200 of anything)."""
    import re

    from stratoflow.errors import InvalidInput
    from stratoflow.secrets import check_project

    _, document = _call(app, "GET", "/openapi.json", {})
    schemas = [
        p["schema"]
        for operations in document["paths"].values()
        for operation in operations.values()
        for p in operation.get("parameters") or []
        if p["in"] == "query" and p["name"] == "project"
    ]
    assert len(schemas) >= 10
    names = [*NOT_PROJECTS, "default", "a", "x" * 128, "-lead", "sales_2", "-", "_"]
    for schema in schemas:
        for name in names:
            documented = (
                schema.get("minLength", 0) <= len(name) <= schema.get("maxLength", 10**9)
                and re.search(schema.get("pattern", ""), name) is not None
            )
            try:
                check_project(name)
                accepted = True
            except InvalidInput:
                accepted = False
            assert documented == accepted, (schema, name)
