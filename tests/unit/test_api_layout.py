"""The graph's layout served per workflow version (``GET /runs/{id}/layout`` and
``GET /workflows/{name}/versions/{v}/layout``): what it draws, that it is computed once per
version and sent again only when the caller's copy is not current (ETag / 304)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_api_app import ETL, Api, _build

from stratoflow.api import app as app_module
from stratoflow.api.graph_layout import LayoutCache, node_width

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
