"""The rule that keeps the PostgreSQL tests honest: unreachable means skip locally, fail in CI."""

from __future__ import annotations

import pytest

from tests.readmodel.conftest import admin_connection

NOWHERE = "postgresql://postgres@127.0.0.1:1/postgres"  # nothing listens on port 1


def test_an_unreachable_server_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: the PostgreSQL tests must run"):
        admin_connection(NOWHERE)


def test_an_unreachable_server_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="unreachable"):
        admin_connection(NOWHERE)
