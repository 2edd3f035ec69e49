"""The graph's layout served per workflow version (``GET /runs/{id}/layout`` and
``GET /workflows/{name}/versions/{v}/layout``): what it draws, that it is computed once per
version and sent again only when the caller's copy is not current (ETag / 304)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from tests.unit.test_api_app import ETL, Api, _build, assert_error

from stratoflow.api import app as app_module
from stratoflow.api.app import create_app
from stratoflow.api.graph_layout import LayoutCache, node_width
from stratoflow.api.stored_layouts import MAX_LAYOUT_CHARS, layout_digest
from stratoflow.readmodel import ReadModel

# a: root; b, c: children of a; d: child of b and c; e: child of a and d (longest path 3);
# z: a second root
SHAPE = """\
name: shape
tasks:
  a: {type: shell, command: 'true'}
  z: {type: shell, command: 'true'}
  c: {type: shell, command: 'true', depends_on: [a]}
  b: {type: shell, command: 'true', depends_on: [a, z]}
  d: {type: shell, command: 'true', depends_on: [c, b]}
  a_long_task_name_that_needs_a_wide_box_to_be_read: {type: shell, command: 'true', depends_on: [d, a]}
"""
LONG = "a_long_task_name_that_needs_a_wide_box_to_be_read"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    built = _build(tmp_path)
    yield built
    built.scheduler.store.close()  # type: ignore[attr-defined]


def layout(api: Api, path: str, **headers: str) -> tuple[int, dict[str, str], Any]:
    reply = api.call("GET", path, headers=headers or {}, query={"project": "default"})
    return reply.status, reply.headers, reply.body if reply.status == 200 else None


def boxes(body: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
    n = len(body["tasks"])
    assert len(body["x"]) == len(body["y"]) == len(body["w"]) == n
    return {
        t: (body["x"][i], body["y"][i], body["w"][i], body["h"])
        for i, t in enumerate(body["tasks"])
    }


def test_each_task_in_the_column_of_its_longest_path_with_every_edge(api: Api) -> None:
    api.apply(SHAPE)
    status, _, body = layout(api, "/workflows/shape/versions/1/layout")
    assert status == 200
    assert body["format"] == 1
    at = boxes(body)
    assert set(at) == {"a", "z", "b", "c", "d", LONG}
    # columns: {a, z}, {b, c}, {d}, {long}: by the longest path from a root
    assert at["a"][0] == at["z"][0] < at["b"][0] == at["c"][0] < at["d"][0] < at[LONG][0]
    # c's parent (a, row 0) is above b's (a and z, mean row 0.5): c comes first in its column
    assert at["c"][1] < at["b"][1]
    # every box as wide as its label, within bounds; columns do not overlap
    assert at[LONG][2] == node_width(LONG) == 220
    assert at["a"][2] == node_width("a") == 64
    for t, (x, y, w, h) in at.items():
        assert min(x, y) >= 0, t
        assert x + w <= body["width"], t
        assert y + h <= body["height"], t
    assert at["a"][0] + max(at["a"][2], at["z"][2]) < at["b"][0]
    # the edges are exactly the dependencies
    pairs = body["edges"]
    edges = {
        (body["tasks"][pairs[i]], body["tasks"][pairs[i + 1]]) for i in range(0, len(pairs), 2)
    }
    assert len(pairs) == 2 * len(edges)
    assert edges == {
        ("a", "c"), ("a", "b"), ("z", "b"), ("c", "d"), ("b", "d"), ("d", LONG), ("a", LONG),
    }  # fmt: skip


def test_a_run_is_drawn_with_its_own_version_and_revalidated_with_its_tag(api: Api) -> None:
    api.apply(ETL)
    run_id = api.trigger("etl")
    api.apply(SHAPE.replace("name: shape", "name: etl"))  # version 2 of etl, another graph
    status, headers, by_run = layout(api, f"/runs/{run_id}/layout")
    assert status == 200
    assert by_run["tasks"] == ["extract", "transform", "load"]  # version 1, the run's
    tag = headers["ETag"]
    assert headers["Cache-Control"] == "no-cache"
    status, again, by_version = layout(api, "/workflows/etl/versions/1/layout")
    assert (status, again["ETag"], by_version) == (200, tag, by_run)

    status, not_modified, body = layout(api, f"/runs/{run_id}/layout", **{"If-None-Match": tag})
    assert (status, not_modified["ETag"], body) == (304, tag, None)
    status, _, _ = layout(api, "/workflows/etl/versions/1/layout", **{"If-None-Match": tag})
    assert status == 304
    # another version: another layout, another tag, so the copy held is not reused for it
    status, other, body = layout(api, "/workflows/etl/versions/2/layout", **{"If-None-Match": tag})
    assert status == 200
    assert other["ETag"] != tag
    assert len(body["tasks"]) == 6


def test_the_layout_is_computed_once_per_version(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    computed: list[tuple[str, ...]] = []
    real = app_module.quick_layout

    def counting(dag: Any) -> dict[str, Any]:
        computed.append(dag.order)
        return real(dag)

    monkeypatch.setattr(app_module, "quick_layout", counting)
    api.apply(ETL)
    first = api.trigger("etl")
    second = api.trigger("etl")
    for path in (
        f"/runs/{first}/layout",
        f"/runs/{second}/layout",
        "/workflows/etl/versions/1/layout",
    ):
        assert layout(api, path)[0] == 200
    assert computed == [("extract", "transform", "load")]


def test_a_missing_run_or_version_is_a_404_and_a_bad_version_a_422(api: Api) -> None:
    api.apply(ETL)
    reply = api.call("GET", "/runs/default.etl.nope/layout")
    assert reply.status == 404, reply.text
    assert "default.etl.nope" in reply.body["message"]
    assert api.call("GET", "/workflows/etl/versions/9/layout").status == 404
    assert api.call("GET", "/workflows/nope/versions/1/layout").status == 404
    reply = api.call("GET", "/workflows/etl/versions/0/layout")
    assert reply.status == 422, reply.text
    assert "version" in reply.text


def test_the_cache_keeps_the_most_recently_used_layouts() -> None:
    cache = LayoutCache(size=2)
    made: list[str] = []

    def make(key: str) -> Any:
        return lambda: made.append(key) or key

    cache.get("a", make("a"))
    cache.get("b", make("b"))
    cache.get("a", make("a"))  # kept; now the most recent
    cache.get("c", make("c"))  # b goes
    cache.get("a", make("a"))
    cache.get("b", make("b"))  # computed again
    assert made == ["a", "b", "c", "b"]


# ------------------------------------------------------------------ the stored (ELK) layout
# ``?h=<digest>``: the layout the UI computed, stored once per version and graph, immutable.


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[tuple[Api, ReadModel]]:
    """An API with a read model, so layouts are kept."""
    built = _build(tmp_path)
    readmodel = ReadModel.open(str(tmp_path / "readmodel.db"))
    built.app = create_app(built.scheduler, readmodel=readmodel)
    yield built, readmodel
    readmodel.close()
    built.scheduler.store.close()  # type: ignore[attr-defined]


def drawn(api: Api, name: str = "shape", version: int = 1) -> dict[str, Any]:
    """A layout of the version's graph as the UI sends it (from the quick one)."""
    quick = api.call("GET", f"/workflows/{name}/versions/{version}/layout").body
    pairs = quick["edges"]
    points = []
    for k in range(0, len(pairs), 2):
        p, c = pairs[k], pairs[k + 1]
        points.append([quick["x"][p] + quick["w"][p], quick["y"][p] + 14.5, quick["x"][c], 3.25])
    return {
        "format": 1, "tasks": quick["tasks"], "x": [x + 0.5 for x in quick["x"]],
        "y": quick["y"], "w": quick["w"], "h": 28, "edges": pairs, "points": points,
        "width": quick["width"], "height": quick["height"],
    }  # fmt: skip


def url_of(api: Api, run_id: str) -> str:
    found = api.call("GET", f"/runs/{run_id}/states").body["layout"]
    assert isinstance(found, str)
    return found


def split(url: str) -> tuple[str, dict[str, str]]:
    parsed = urlsplit(url)
    return "/" + parsed.path, dict(parse_qsl(parsed.query))


def test_the_states_view_names_the_layout_url_of_its_version_and_graph(
    kept: tuple[Api, ReadModel],
) -> None:
    api, _ = kept
    api.apply(SHAPE)
    run = api.trigger("shape")
    url = url_of(api, run)
    path, query = split(url)
    assert path == "/workflows/shape/versions/1/layout"
    assert query["project"] == "default"
    dag = api.scheduler.spec("default", "shape", 1).dag
    assert query["h"] == layout_digest(dag)
    assert len(query["h"]) == 32
    # another run of the same version: the same URL; a changed graph: another digest
    assert url_of(api, api.trigger("shape")) == url
    api.apply(SHAPE + "  f: {type: shell, command: 'true', depends_on: [a]}\n")
    assert split(url_of(api, api.trigger("shape")))[1]["h"] != query["h"]


def test_the_version_views_name_the_same_url(kept: tuple[Api, ReadModel]) -> None:
    api, _ = kept
    api.apply(SHAPE)
    url = url_of(api, api.trigger("shape"))
    assert api.call("GET", "/workflows/shape/versions/1").body["layout"] == url
    assert api.call("GET", "/workflows/shape").body["layout"] == url


def test_a_version_whose_graph_cannot_be_read_still_answers_without_a_url(
    kept: tuple[Api, ReadModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = kept
    api.apply(SHAPE)

    def unreadable(*_: Any) -> Any:
        raise ValueError("the stored document no longer parses")

    monkeypatch.setattr(api.scheduler, "spec", unreadable)
    reply = api.call("GET", "/workflows/shape/versions/1")
    assert reply.status == 200
    assert reply.body["layout"] is None


def test_no_read_model_no_url(api: Api) -> None:
    api.apply(SHAPE)
    assert api.call("GET", f"/runs/{api.trigger('shape')}/states").body["layout"] is None
    assert api.call("GET", "/workflows/shape").body["layout"] is None


def test_a_layout_put_once_is_served_immutable_to_every_reader(
    kept: tuple[Api, ReadModel],
) -> None:
    api, readmodel = kept
    api.apply(SHAPE)
    path, query = split(url_of(api, api.trigger("shape")))
    # nothing stored yet: a 404 (the UI lays out and sends it)
    missing = api.call("GET", path, query=query)
    assert_error(missing, 404, "not_found", "stored yet")
    assert "immutable" not in missing.headers.get("Cache-Control", "")
    body = drawn(api)
    put = api.call("PUT", path, body, query=query)
    assert put.status == 201, put.text
    assert put.body == {"created": True, "layout": path.lstrip("/") + "?" + urlencode(query)}
    got = api.call("GET", path, query=query)
    assert got.status == 200
    assert got.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    assert got.headers["Vary"] == "Authorization"
    assert got.body == body
    # a second PUT (another browser laid it out too) keeps the first
    other = {**body, "x": [x + 100 for x in body["x"]]}
    again = api.call("PUT", path, other, query=query)
    assert again.status == 200
    assert again.body["created"] is False
    assert api.call("GET", path, query=query).body == body
    assert readmodel.version_layout("default", "shape", 1, query["h"]) is not None


def test_a_wrong_digest_reads_nothing_and_stores_nothing(kept: tuple[Api, ReadModel]) -> None:
    api, readmodel = kept
    api.apply(SHAPE)
    path, query = split(url_of(api, api.trigger("shape")))
    api.call("PUT", path, drawn(api), query=query)
    wrong = {**query, "h": "f" * 32}
    assert_error(api.call("GET", path, query=wrong), 404, "not_found", "not the digest")
    refused = api.call("PUT", path, drawn(api), query=wrong)
    assert_error(refused, 409, "conflict", "not the digest")
    assert readmodel.version_layout("default", "shape", 1, "f" * 32) is None
    # version 1's digest does not open version 2, whose graph differs
    api.apply(SHAPE + "  f: {type: shell, command: 'true', depends_on: [a]}\n")
    other = path.replace("/versions/1/", "/versions/2/")
    assert api.call("GET", other, query=query).status == 404
    assert api.call("PUT", other, drawn(api), query=query).status == 409


@pytest.mark.parametrize("h", ["abc", "F" * 32, "g" * 32, "0" * 33, ""])
def test_a_malformed_digest_is_a_422_naming_h(kept: tuple[Api, ReadModel], h: str) -> None:
    api, _ = kept
    api.apply(SHAPE)
    path = "/workflows/shape/versions/1/layout"
    for method, body in (("GET", None), ("PUT", drawn(api))):
        reply = api.call(method, path, body, query={"project": "default", "h": h})
        problems = assert_error(reply, 422, "invalid_request")["problems"]
        assert [p["path"] for p in problems] == ["query.h"], (method, problems)


def _broken(api: Api, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = drawn(api)
    change(body)
    return body


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "status", "named"),
    [
        (_set("x", "not a list"), 422, "body.x"),
        (lambda b: b["y"].__setitem__(0, 1e12), 422, "body.y.0"),  # out of bounds
        (lambda b: b["w"].__setitem__(0, -1), 422, "body.w.0"),
        (_set("format", 2), 422, "body.format"),
        (_set("extra", 1), 422, "body.extra"),
        (lambda b: b["points"].__setitem__(0, [1, 2]), 422, "body.points.0"),
        (lambda b: b["tasks"].__setitem__(0, "not_a_task"), 400, "tasks"),
        (lambda b: b["tasks"].__setitem__(1, b["tasks"][0]), 400, "tasks"),
        (lambda b: b["x"].pop(), 400, "x"),
        (lambda b: b.update(edges=b["edges"][:-2], points=b["points"][:-1]), 400, "edges"),
        (lambda b: b["edges"].reverse(), 400, "edges"),  # child -> parent: not its edges
        (lambda b: b["points"].pop(), 400, "edges"),
        (lambda b: b["points"][0].append(5), 400, "points"),
    ],
)
def test_a_layout_that_does_not_draw_the_version_is_refused_and_not_kept(
    kept: tuple[Api, ReadModel],
    change: Callable[[dict[str, Any]], None],
    status: int,
    named: str,
) -> None:
    api, readmodel = kept
    api.apply(SHAPE)
    path, query = split(url_of(api, api.trigger("shape")))
    reply = api.call("PUT", path, _broken(api, change), query=query)
    assert reply.status == status, reply.text
    assert named in [p["path"] for p in reply.body["problems"]], reply.text
    assert readmodel.version_layout("default", "shape", 1, query["h"]) is None


def test_non_json_and_nan_are_refused(kept: tuple[Api, ReadModel]) -> None:
    api, readmodel = kept
    api.apply(SHAPE)
    path, query = split(url_of(api, api.trigger("shape")))
    text = json.dumps(drawn(api)).replace('"width": ', '"width": NaN, "w_": ', 1)
    for raw in ("{not json", text):
        reply = api.call("PUT", path, raw=raw, query=query)
        assert reply.status == 422, reply.text
    assert readmodel.version_layout("default", "shape", 1, query["h"]) is None


def test_a_layout_over_the_cap_is_a_413_and_not_kept(kept: tuple[Api, ReadModel]) -> None:
    api, readmodel = kept
    api.apply(SHAPE)
    path, query = split(url_of(api, api.trigger("shape")))
    body = json.dumps(drawn(api))
    padded = body[:-1] + " " * (MAX_LAYOUT_CHARS + 1 - len(body)) + "}"
    assert len(padded) == MAX_LAYOUT_CHARS + 1
    reply = api.call("PUT", path, raw=padded, query=query)
    assert_error(reply, 413, "request_entity_too_large", "1,000,000")
    assert readmodel.version_layout("default", "shape", 1, query["h"]) is None
    # at the cap exactly: accepted (whitespace is JSON's)
    assert api.call("PUT", path, raw=padded.replace(" ", "", 1), query=query).status == 201


def test_without_a_read_model_nothing_is_kept_and_says_so(api: Api) -> None:
    api.apply(SHAPE)
    dag = api.scheduler.spec("default", "shape", 1).dag
    query = {"project": "default", "h": layout_digest(dag)}
    path = "/workflows/shape/versions/1/layout"
    assert api.call("GET", path, query=query).status == 404
    assert_error(api.call("PUT", path, drawn(api), query=query), 409, "conflict", "read model")


def test_the_put_route_is_documented_with_its_body(kept: tuple[Api, ReadModel]) -> None:
    api, _ = kept
    doc = api.call("GET", "/openapi.json").body
    route = doc["paths"]["/workflows/{name}/versions/{version}/layout"]
    schema = route["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"tasks", "x", "y", "w", "h", "edges", "points"} <= set(schema["properties"])
    assert "413" in route["put"]["responses"]
    assert any(p["name"] == "h" for p in route["get"]["parameters"])
    # the GET's 200: the quick layout (without h) or the stored one (with h)
    ok = route["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert len(ok["anyOf"]) == 2
    assert "points" in ok["anyOf"][1]["properties"]
