"""Waiting in tests for what another thread or process does."""

from __future__ import annotations

import time
from typing import Any


def wait_for(check: Any, timeout: float = 10) -> bool:
    """Whether ``check()`` is true within ``timeout`` seconds (looked at every 20 ms, and once
    more at the end)."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(check())
