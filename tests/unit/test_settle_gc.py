"""``settle_gc``: the collector settings of a process that keeps a scheduler (why: the
docstring and docs/benchmarks.md, "The run view's CPU")."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stratoflow.adapters.local import runtime
from stratoflow.adapters.local.collector import GC_THRESHOLDS
from stratoflow.adapters.local.runtime import settle_gc


# tests/conftest.py puts the collector back after each test (``_gc_restored``)
def test_what_is_loaded_is_frozen_and_young_collections_are_rarer() -> None:
    gc.unfreeze()
    kept = [{"a": [i]} for i in range(1000)]  # container objects the collector tracks
    settle_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # Python's default, which the big views paid for
    assert gc.get_freeze_count() >= len(kept)
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1  # cycles made later are still collected


def test_stratoflow_run_settles_the_collector_once_its_workflow_is_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stratoflow.cli import main

    calls: list[bool] = []
    monkeypatch.setattr(runtime, "settle_gc", lambda *, whole=True: calls.append(whole))
    flow = tmp_path / "one.yaml"
    flow.write_text('name: one\ntasks:\n  a: {type: shell, command: "true"}\n')
    result = CliRunner().invoke(main, ["run", str(flow), "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    assert calls == [False]  # its process ends with the run: only a young collection


def test_stratoflow_run_collects_less_before_it_loads_the_workflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The young-collection threshold is raised before the model and the workflow are
    loaded (in a fresh process, before the runtime and the model are imported), not only once
    the run is applied."""
    from stratoflow import model
    from stratoflow.adapters.local import collector
    from stratoflow.cli import main

    calls: list[str] = []
    load = model.load_workflow

    def loading(*args: Any, **kwargs: Any) -> model.WorkflowSpec:
        calls.append("load")
        return load(*args, **kwargs)

    monkeypatch.setattr(collector, "collect_less", lambda: calls.append("collect_less"))
    monkeypatch.setattr(model, "load_workflow", loading)
    flow = tmp_path / "one.yaml"
    flow.write_text('name: one\ntasks:\n  a: {type: shell, command: "true"}\n')
    result = CliRunner().invoke(main, ["run", str(flow), "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    assert calls[:2] == ["collect_less", "load"]


def test_a_young_settle_freezes_what_is_loaded_too() -> None:
    gc.unfreeze()
    kept = [{"a": [i]} for i in range(1000)]
    settle_gc(whole=False)
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() >= len(kept)
