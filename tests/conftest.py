"""Shared pytest setup.

Its presence (with ``tests/__init__.py``) puts the repository root on ``sys.path``, so test
modules can ``from tests.strategies import ...``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

FIXED_NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    """A fixed, timezone-aware instant: engine tests never read a clock."""
    return FIXED_NOW


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
