"""The local server under load, on 127.0.0.1: a thousand concurrent connections, idle
connections, keep-alive, pipelining and the HTTP layer's own refusals.

The load test drives a real ``stratoflow server`` child process with an asyncio client (one
thread, a thousand sockets); each client waits on a deadline, so the module stops by itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from stratoflow.api.local_server import WORKERS, ApiServer, start_in_thread
from tests.e2e.server_process import ServerProcess

pytestmark = pytest.mark.e2e

CONNECTIONS = 1000
REQUESTS_PER_CONNECTION = 2
TRIGGERS = 200  # of the connections, these also trigger a run (idempotency key per client)
DEADLINE = 45.0  # seconds for the whole burst: the test stops by itself

QUIET = """\
name: quiet
max_active_runs: 1
tasks:
  nothing: {type: shell, command: "true"}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("load")
    (root / "quiet.yaml").write_text(QUIET, encoding="utf-8")
    proc = ServerProcess(root / "home")
    proc.start()
    try:
        reply = httpx.post(
            f"{proc.url}/workflows", json={"source": QUIET}, headers=proc.headers, timeout=10
        )
        assert reply.status_code in (200, 201), reply.text
        yield proc
    finally:
        proc.stop()


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def _client(n: int, port: int, token: str, start: asyncio.Event) -> list[int]:
    """One connection: a few keep-alive requests; the statuses it got."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await start.wait()  # every connection is open before any request is sent
    statuses = []
    try:
        for _ in range(REQUESTS_PER_CONNECTION):
            writer.write(b"GET /health HTTP/1.1\r\nHost: load\r\n\r\n")
            statuses.append((await _read_response(reader))[0])
        if n < TRIGGERS:
            body = json.dumps({"run_id": f"load-{n}"}).encode()
            writer.write(
                b"POST /workflows/quiet/runs HTTP/1.1\r\nHost: load\r\n"
                + f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n".encode()
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            statuses.append((await _read_response(reader))[0])
    finally:
        writer.close()
        await writer.wait_closed()
    return statuses


async def _burst(port: int, token: str) -> tuple[Counter[int], list[BaseException]]:
    start = asyncio.Event()
    tasks = [asyncio.create_task(_client(n, port, token, start)) for n in range(CONNECTIONS)]
    await asyncio.sleep(0)  # let every task begin connecting
    await asyncio.sleep(0.5)
    start.set()
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=DEADLINE)
    statuses: Counter[int] = Counter()
    errors: list[BaseException] = []
    for result in done:
        if isinstance(result, BaseException):
            errors.append(result)
        else:
            statuses.update(result)
    return statuses, errors


def test_a_thousand_concurrent_connections_are_all_answered_without_a_reset(
    server: ServerProcess,
) -> None:
    assert server.proc is not None
    started = time.monotonic()
    # a loop of its own in a thread of its own: an earlier test (Playwright's sync API) may
    # have left an event loop set on this thread
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        statuses, errors = pool.submit(asyncio.run, _burst(server.port, server.token)).result()
    elapsed = time.monotonic() - started
    assert errors == [], f"{len(errors)} connections failed, e.g. {errors[:3]!r}"
    assert statuses == Counter({200: CONNECTIONS * REQUESTS_PER_CONNECTION, 201: TRIGGERS})
    assert elapsed < DEADLINE
    # every trigger made one run, and the server still answers at once
    # (the run list is the read model's, which the store's commits reach a moment later)
    settled = time.monotonic() + 20
    while True:
        runs = httpx.get(
            f"{server.url}/runs", params={"workflow": "quiet", "limit": 500},
            headers=server.headers, timeout=10,
        ).json()["runs"]  # fmt: skip
        if len({r["id"] for r in runs}) == TRIGGERS or time.monotonic() > settled:
            break
        time.sleep(0.2)
    assert len({r["id"] for r in runs}) == TRIGGERS
    assert _threads(server.proc.pid) < 2 * WORKERS + 30  # a pool, not a thread per connection


def test_idle_connections_hold_no_threads_and_do_not_block_requests(
    server: ServerProcess,
) -> None:
    assert server.proc is not None
    before = _threads(server.proc.pid)
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(600)]
    try:
        half = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(WORKERS * 2)]
        for sock in half:  # slow clients that started a request and stalled
            sock.sendall(b"GET /health HTTP/1.1\r\n")
        time.sleep(1.0)
        # a new client is answered while 600 idle and 64 stalled connections are open
        reply = httpx.get(f"{server.url}/health", timeout=15)
        assert reply.status_code == 200
        assert _threads(server.proc.pid) <= before + WORKERS + 2
        for sock in half:
            sock.close()
    finally:
        for sock in idle:
            sock.close()


# ------------------------------------------------------------------ the HTTP layer
@pytest.fixture
def tiny() -> Iterator[ApiServer]:
    """An in-process server with short timeouts, over a one-route resolver."""
    app = APIGatewayRestResolver()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    server, _ = start_in_thread(app, port=0, idle_timeout=0.5, request_timeout=1.0)
    try:
        yield server
    finally:
        server.shutdown()


def _exchange(port: int, data: bytes, *, wait: float = 0.3) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        time.sleep(wait)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_an_idle_keep_alive_connection_is_closed(tiny: ApiServer) -> None:
    port = tiny.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):  # headers and body may come apart
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert sock.recv(65536) == b""  # the server closed it
        assert 0.3 < time.monotonic() - started < 4
    deadline = time.monotonic() + 3
    while tiny.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tiny.open_connections == 0


def test_pipelined_requests_are_all_answered(tiny: ApiServer) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
    reply = _exchange(tiny.server_address[1], request * 3 + b"GET /health HTTP/1.1\r\n"
                      b"Host: t\r\nConnection: close\r\n\r\n")  # fmt: skip
    assert reply.count(b"HTTP/1.1 200 OK") == 4


def _json_error(reply: bytes, status: int) -> dict[str, Any]:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head[:100]
    assert b"content-type: application/json" in head.lower()
    parsed: dict[str, Any] = json.loads(body)
    assert set(parsed) == {"error", "message", "problems"}
    assert parsed["message"]
    assert b"<html" not in reply.lower()
    return parsed


def test_headers_too_large_is_a_json_431(tiny: ApiServer) -> None:
    big = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    body = _json_error(_exchange(tiny.server_address[1], big), 431)
    assert body["error"] == "request_header_fields_too_large"


def test_too_many_headers_and_a_bad_request_line_are_json(tiny: ApiServer) -> None:
    port = tiny.server_address[1]
    many = b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
    assert _json_error(_exchange(port, many + b"\r\n"), 431)["error"]
    long_uri = b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n"
    assert _json_error(_exchange(port, long_uri), 414)["error"] == "request_uri_too_long"
    bad = _json_error(_exchange(port, b"GET /health HTTP/9.9\r\n\r\n"), 505)
    assert "version" in bad["message"].lower()
    garbage = _json_error(_exchange(port, b"garbage\r\n\r\n"), 400)
    assert garbage["error"] == "bad_request"


@pytest.mark.parametrize(
    ("lengths", "words"),
    [
        ([b"0", b"40"], "2 Content-Length headers; send one"),
        ([b"40", b"40"], "2 Content-Length headers; send one"),
        ([b"-1"], "not a number of bytes"),
        ([b"+5"], "not a number of bytes"),
        ([b"1_0"], "not a number of bytes"),
        ([b"ten"], "not a number of bytes"),
        ([b"0, 40"], "not a number of bytes"),
    ],
)
def test_a_content_length_that_is_not_one_number_is_a_json_400(
    tiny: ApiServer, lengths: list[bytes], words: str
) -> None:
    """RFC 9112 6.3. `Content-Length: 0` then `40` was taken as no body and the 40 bytes
    as a next, pipelined request; `-1` was a 413. The connection is closed: the next
    request is never served."""
    hidden = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"  # 35 bytes: the smuggled one
    head = b"POST /health HTTP/1.1\r\nHost: t\r\n" + b"".join(
        b"Content-Length: %s\r\n" % n for n in lengths
    )
    reply = _exchange(tiny.server_address[1], head + b"\r\n" + hidden.ljust(40))
    body = _json_error(reply, 400)
    assert words in body["message"]
    assert b"200 OK" not in reply
    assert reply.count(b"HTTP/1.1 ") == 1


@pytest.mark.parametrize(
    ("codings", "status", "words"),
    [
        ([b"chunked"], 411, "send the body with a Content-Length"),
        ([b"gzip, chunked"], 411, "send the body with a Content-Length"),
        ([b"gzip"], 501, "transfer coding 'gzip' is not supported"),
        ([b"identity", b"x-custom"], 501, "transfer coding 'identity,x-custom' is not supp"),
        ([b""], 501, "transfer coding '' is not supported"),
        ([b"x" * 5000], 501, f"transfer coding '{'x' * 40}...' is not supported"),
    ],
)
def test_a_transfer_coding_is_refused_before_the_body_is_read(
    tiny: ApiServer, codings: list[bytes], status: int, words: str
) -> None:
    """RFC 9112 6.1: a transfer coding overrides Content-Length. Only chunked was refused;
    `Transfer-Encoding: gzip` with a Content-Length was read by its length, the framing a
    proxy in front may read otherwise (a smuggled request). Refused, connection closed."""
    hidden = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
    head = b"POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n" + b"".join(
        b"Transfer-Encoding: %s\r\n" % c for c in codings
    )
    reply = _exchange(tiny.server_address[1], head + b"\r\n" + hidden.ljust(40))
    body = _json_error(reply, status)
    assert words in body["message"]
    assert reply.count(b"HTTP/1.1 ") == 1


def test_unknown_paths_and_methods_are_json(server: ServerProcess) -> None:
    reply = httpx.get(f"{server.url}/no/such/thing", headers=server.headers, timeout=10)
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json()["error"] == "not_found"
    trace = httpx.request("TRACE", f"{server.url}/health", timeout=10)
    assert trace.status_code == 405
    assert trace.json()["error"] == "method_not_allowed"


def test_connections_beyond_the_limit_get_a_json_503_not_a_hang() -> None:
    app = APIGatewayRestResolver()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    server, _ = start_in_thread(app, port=0, max_connections=3)
    port = server.server_address[1]
    try:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        deadline = time.monotonic() + 5
        while server.open_connections < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        body = _json_error(_exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"), 503)
        assert body["error"] == "unavailable"
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 5
        while server.open_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        ok = _exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200")
    finally:
        server.shutdown()


def _dribble(port: int, head: bytes, until: float) -> tuple[bytes, float]:
    """Send ``head``, then a byte every 0.1 s (never the whole request) until the server
    closes the connection or ``until`` passes: what it answered and when (from the start)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        sock.settimeout(0.1)
        answer = b""
        while time.monotonic() < until:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                with contextlib.suppress(OSError):
                    sock.sendall(b"a")
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        return answer, time.monotonic() - started


@pytest.mark.parametrize(
    "head",
    [
        # a body larger than the poller receives before a thread takes the request
        b"POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
        # a head longer than the poller waits for
        b"GET /health HTTP/1.1\r\nHost: t\r\nX-Long: "
        + b"a" * 60_000
        + b"\r\nX-More: "
        + b"b" * 20_000,
    ],
)
def test_a_request_dribbled_in_is_dropped_at_the_request_timeout_and_holds_no_thread(
    head: bytes,
) -> None:
    """The request timeout bounded each read, not the request: a client sending a byte
    every 0.1 s held an HTTP thread as long as it liked, and as many such clients as there
    are threads stopped the server answering anyone."""
    app = APIGatewayRestResolver()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    server, url = start_in_thread(app, port=0, request_timeout=1.0, workers=2)
    port = server.server_address[1]
    try:
        until = time.monotonic() + 8
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            slow = [pool.submit(_dribble, port, head, until) for _ in range(2)]
            time.sleep(0.5)  # both threads of the server now read a dribbling request
            started = time.monotonic()
            reply = httpx.get(f"{url}/health", timeout=6)
            assert reply.status_code == 200
            assert time.monotonic() - started < 3
            for future in slow:
                answer, took = future.result()
                assert took < 4, "the connection was held past the request timeout"
                if head.startswith(b"POST"):  # the head was read: the answer says why
                    body = _json_error(answer, 408)
                    assert "did not arrive whole within 1 s" in body["message"]
    finally:
        server.shutdown()
