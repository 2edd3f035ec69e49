"""The alert tests' local HTTP stub, shared with tests/alerts."""

from tests.alerts.conftest import recorder

__all__ = ["recorder"]
