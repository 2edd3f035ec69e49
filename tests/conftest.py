"""Shared pytest setup.

Its presence (with ``tests/__init__.py``) puts the repository root on ``sys.path``, so test
modules can ``from tests.strategies import ...``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

FIXED_NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    """A fixed, timezone-aware instant: engine tests never read a clock."""
    return FIXED_NOW
