"""A request target whose path starts with '//' (``GET //x/runs``) is refused with a 400
naming it, by the local server on any Python: urlsplit read ``//x`` as a host, so the path
routed was another one (``/runs``), and http.server (3.11.4 on) rewrites the target to
``/x/runs`` first, earlier versions do not. Raw sockets: an HTTP client would fix the path."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.api.local_server import to_event
from tests.cli_server import serving

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    home = tmp_path_factory.mktemp("target") / "home"
    with serving(LocalRuntime(home), readmodel=None) as server:
        yield int(server.url.rsplit(":", 1)[1])


def _ask(port: int, target: str) -> tuple[int, Any]:
    request = f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode("latin-1"))
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    "target", ["//health", "//runs", "//127.0.0.1/runs?project=a", "///runs", "http://t//runs"]
)
def test_a_path_starting_with_two_slashes_is_a_400_naming_it(port: int, target: str) -> None:
    status, body = _ask(port, target)
    assert status == 400, body
    assert body["error"] == "bad_request"
    assert "starts with '//'" in body["message"]
    assert repr(target)[1:9] in body["message"]


@pytest.mark.parametrize(
    ("target", "status"),
    [("/health", 200), ("/runs?project=a", 200), ("http://t/runs", 200), ("/runs//x", 404)],
)
def test_other_targets_are_routed_as_before(port: int, target: str, status: int) -> None:
    assert _ask(port, target)[0] == status


def test_the_event_of_a_target_starting_with_two_slashes_keeps_its_path() -> None:
    event = to_event("GET", "//x/runs?project=a", Message(), b"", "127.0.0.1")
    assert event["path"] == "//x/runs"
    assert event["queryStringParameters"] == {"project": "a"}
    event = to_event("GET", "http://host//x/runs?project=a", Message(), b"", "127.0.0.1")
    assert (event["path"], event["queryStringParameters"]) == ("//x/runs", {"project": "a"})
