"""Replies the route modules share."""

from __future__ import annotations

from http import HTTPStatus
from typing import TypeVar

from aws_lambda_powertools.event_handler import Response, content_types

T = TypeVar("T")


def saved(created: bool, body: T) -> Response[T]:
    """A create-or-replace's reply: 201 when it created, 200 when it replaced, ``body`` as JSON."""
    return Response(
        status_code=HTTPStatus.CREATED.value if created else HTTPStatus.OK.value,
        content_type=content_types.APPLICATION_JSON,
        body=body,
    )
