"""The request path the resolver routes on, the same on AWS and locally.

API Gateway REST (v1) hands a Lambda proxy ``event.path`` as the client sent it, still
percent-encoded (``/runs/a.b.2026-01-01T00%3A00%3A00``); the local server decodes the request
target before it builds the event. Both go through ``request_path`` exactly once, so a run id
with ':' or an output key with a space (sent encoded by the web UI's encodeURIComponent and
by the CLI) names the same thing in both, and a double-encoded ``%253A`` stays ``%3A``. An
encoded '/' (``%2F``) becomes a '/' in both, so it splits a segment alike: no name holds a
'/', and no route is reached on AWS that is not reached locally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote


def request_path(encoded: str) -> str:
    """The decoded path of a request (decoded once; an empty path is ``/``)."""
    return unquote(encoded) or "/"


def with_decoded_path(event: Mapping[str, Any]) -> dict[str, Any]:
    """An API Gateway REST proxy event with its ``path`` decoded (``request_path``), as the
    local server's events have it; the rest is unchanged."""
    return {**event, "path": request_path(str(event.get("path") or ""))}
