"""The alert tests' local HTTP stub (shared with tests/alerts) and the moto stack."""

from tests.alerts.conftest import recorder
from tests.aws_alerts.test_alert_function import stack

__all__ = ["recorder", "stack"]
