"""Shared pytest setup.

Its presence (with ``tests/__init__.py``) puts the repository root on ``sys.path``, so test
modules can ``from tests.strategies import ...``.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from tests.moto_speed import install as install_moto_speedups
from tests.moto_streams import install as install_moto_stream_fix

# In CI the property tests and storms draw the same examples on every run (``derandomize``):
# a red run is then a bug that reproduces from the commit alone, not a draw of the dice. A
# developer's run draws new examples each time (the "dev" profile), and a hunt for rare
# cases runs them again and again with fresh seeds (README, "Development").
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("dev", print_blob=True)
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "dev")
)

# moto's rollback of a cancelled transaction loses a table's stream records (tests/moto_streams)
install_moto_stream_fix()
install_moto_speedups()

FIXED_NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.hookimpl(wrapper=True, trylast=True)  # inside pytest-cov's own pause
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """A test marked ``no_cover`` runs untraced. pytest-cov's pause stops its collector, but in
    an xdist worker the collector underneath resumes at once (coverage stacks them), so the
    tracer stayed on: the moto sweeps ran 2-3x slower under ``make test`` for no coverage."""
    if item.get_closest_marker("no_cover") is None:
        return (yield)
    tracer, thread_tracer = sys.gettrace(), threading.gettrace()
    sys.settrace(None)
    threading.settrace(None)  # type: ignore[arg-type]
    try:
        return (yield)
    finally:
        sys.settrace(tracer)
        threading.settrace(thread_tracer)  # type: ignore[arg-type]


@pytest.fixture
def now() -> datetime:
    """A fixed, timezone-aware instant: engine tests never read a clock."""
    return FIXED_NOW


@pytest.fixture(autouse=True)
def _gc_restored() -> Iterator[None]:
    """``stratoflow run`` and ``server`` invoked in process (CliRunner) settle the collector
    for a long-lived process (``settle_gc``): put it back, so no later test runs with it."""
    threshold = gc.get_threshold()
    yield
    if gc.get_threshold() != threshold or gc.get_freeze_count():
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.fixture(autouse=True)
def _stratoflow_logger_restored() -> Iterator[None]:
    """A function loaded by a test configures Powertools' ``Logger(service="stratoflow")``:
    a handler on the "stratoflow" logger, bound to the stdout of that moment (the test's
    capture), and marks on the logger (``init``, ``powertools_handler``). Put all of it back
    after every test, so later tests neither log into a closed stream nor find a mark
    without its handler (which makes a new ``Logger()`` fail)."""
    logger = logging.getLogger("stratoflow")
    saved, handlers, filters = dict(vars(logger)), list(logger.handlers), list(logger.filters)
    yield
    vars(logger).clear()
    vars(logger).update(saved)
    logger.handlers = handlers
    logger.filters = filters
    logging.getLogger().manager._clear_cache()


# Tasks run under their project's own uid when the tests run as root, or inside Landlock with
# their work dir as the only place they may write: they cannot reach ``tmp_path``. A test that
# shares files with its tasks uses ``shared_dir``: under one world-writable (sticky) root that
# every task may write, as an operator would grant with STRATOFLOW_TASK_WRITE_PATHS.
SHARED_ROOT = Path(tempfile.mkdtemp(prefix="stratoflow-shared-"))
SHARED_ROOT.chmod(0o1777)
os.environ["STRATOFLOW_TASK_WRITE_PATHS"] = str(SHARED_ROOT)


@pytest.fixture(scope="session", autouse=True)
def _shared_root_removed() -> Iterator[None]:
    yield
    shutil.rmtree(SHARED_ROOT, ignore_errors=True)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the test and its tasks share (world-writable, sticky, removed after)."""
    path = Path(tempfile.mkdtemp(dir=SHARED_ROOT))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)
