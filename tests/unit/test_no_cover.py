"""The suite's ``no_cover`` marker (tests/conftest.py): under ``make test`` (coverage, two xdist
workers) a test marked so runs with no tracer at all; the moto sweeps ran 2-3x slower traced."""

from __future__ import annotations

import sys
import threading

import pytest


@pytest.mark.no_cover
def test_a_no_cover_test_runs_untraced() -> None:
    assert sys.gettrace() is None
    assert threading.gettrace() is None


def test_the_next_test_is_traced_again() -> None:
    """The tracer the untraced test took off is put back (coverage's, under ``make test``)."""
    import coverage

    assert (sys.gettrace() is not None) is (coverage.Coverage.current() is not None)
