"""Fixtures the unit tests of more than one module share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.faultinject import dynamodb_tables


@pytest.fixture(scope="module")
def dynamodb_store() -> Iterator[Callable[..., Any]]:
    """The fault sweeps' DynamoDB stores (``tests.faultinject.dynamodb_tables``): one moto
    session a module (starting one costs seconds), a table a store."""
    with dynamodb_tables() as open_store:
        yield open_store


@pytest.fixture
def no_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's API client fails the test if it sends anything: for refusals that must come
    before any request (``pytestmark = pytest.mark.usefixtures("no_request")``)."""
    from stratoflow import cli

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a request was sent")

    monkeypatch.setattr(cli.Client, "call", refuse)
    monkeypatch.setattr(cli.Client, "follow", refuse)
