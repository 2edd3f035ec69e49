"""Serve the API resolver over plain HTTP on this machine (``stratoflow server``, the tests).

Each HTTP request becomes an API Gateway REST (v1) proxy event, exactly what the resolver gets
from API Gateway on AWS, and the resolver's proxy response becomes the HTTP response. So the
local server exercises the same code path as the deployed API.

A resolver keeps per-request state on itself, so every request is resolved on one worker
thread; the HTTP threads only read requests and write responses. (That worker is also the
only thread that opens a SQLite connection for the API.) ``ApiServer`` says how it holds a
thousand connections with a few threads; every answer it gives itself (a malformed request,
headers too large, a body too big) is JSON in the API's error shape, like the resolver's.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import logging
import re
import resource
import selectors
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratoflow.api.long_poll import RunWatch, resolve_held
from stratoflow.api.paths import request_path
from stratoflow.faults import machine_fault

log = logging.getLogger("stratoflow.api.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8321
STAGE = "local"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's own limit
_INTERNAL_ERROR = b'{"error":"internal","message":"internal error; the server log has the details"}'
BACKLOG = 1024  # listen backlog: a burst of connections waits instead of being reset
WORKERS = 32  # HTTP threads; a connection holds one only while a request is read or answered
IDLE_TIMEOUT = 15.0  # seconds a keep-alive connection may sit idle before it is closed
REQUEST_TIMEOUT = 10.0  # seconds a request may take to arrive once it has started
MAX_CONNECTIONS = 4096  # open connections at once (fewer if the file limit is lower)
SWEEP_SECONDS = 0.5  # how often idle connections are looked for
MAX_REFUSING = 1024  # connections over the limit whose request is read before the 503
REFUSE_SECONDS = 1.0  # how long such a connection may take to send its request
RECEIVE_BYTES = 65536
MAX_HEAD_BYTES = 70 * 1024  # more without a blank line: too long, let the handler refuse it
PREREAD_BODY_BYTES = 1024 * 1024  # bodies up to this are received before a thread is used
GZIP_MIN_BYTES = 1024  # smaller answers are sent as they are: gzip would save too little
GZIP_LEVEL = 6
# compressed bodies kept (static assets, their names hold a hash; views with an ETag): past
# either limit, the cache starts again
GZIP_CACHE_ENTRIES = 64
GZIP_CACHE_BYTES = 16 * 1024 * 1024
_COMPRESSIBLE = ("application/json", "text/", "image/svg+xml")
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d{1,12})[ \t]*\r?$", re.I | re.M)


class LocalContext(LambdaContext):
    """The Lambda context a handler sees when served locally."""

    def __init__(self, request_id: str) -> None:
        self._function_name = "stratoflow-local"
        self._function_version = "$LATEST"
        self._invoked_function_arn = "arn:aws:lambda:local:000000000000:function:stratoflow-local"
        self._memory_limit_in_mb = 0
        self._aws_request_id = request_id
        self._log_group_name = "local"
        self._log_stream_name = "local"


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target, both still encoded. The usual form
    (``/runs?project=a``) is split as it is: urlsplit reads one starting with '//' as a host
    and a path (``//x/runs``: host ``x``, path ``/runs``, another route than the one sent).
    A target with a scheme (``http://host/runs``) goes through urlsplit."""
    if target.startswith("/"):
        path, _, query = target.partition("#")[0].partition("?")
        return path, query
    url = urlsplit(target)
    return url.path, url.query


def to_event(
    method: str, target: str, headers: Message, body: bytes, client: str
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event for one HTTP request."""
    raw_path, query = split_target(target)
    path = request_path(raw_path)  # as the api function decodes API Gateway's (api/paths.py)
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers.items():
        multi_headers.setdefault(name, []).append(str(value))
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        multi_query.setdefault(name, []).append(value)
    try:
        text: str | None = body.decode("utf-8") if body else None
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    request_id = str(uuid.uuid4())
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "body": text,
        "isBase64Encoded": encoded,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "requestId": request_id,
            "identity": {"sourceIp": client},
        },
    }


class ApiServer(socketserver.TCPServer):
    """An HTTP/1.1 server that holds many connections with a fixed number of threads.

    - The listen backlog is ``BACKLOG`` (the kernel caps it at ``net.core.somaxconn``), so a
      burst of connections waits to be accepted instead of being reset.
    - A connection between requests costs no thread: it is parked in a selector (one poller
      thread) and handed to the bounded pool of ``workers`` HTTP threads only when it has
      bytes to read. A keep-alive connection idle for ``idle_timeout`` seconds is closed; a
      request that stalls half-sent for ``request_timeout`` seconds is dropped.
    - Beyond ``max_connections`` open connections a new one gets a 503 and is closed.
    - Every request is resolved by ``app`` on one worker thread (a resolver keeps per-request
      state on itself); the HTTP threads only read requests and write responses.
    - With a ``watch`` (its ``on_commit`` hooked to the store), ``GET /runs/{id}?wait=S`` is
      a long poll: its HTTP thread holds it until the run changes (api/long_poll.py).
    """

    allow_reuse_address = True
    request_queue_size = BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        app: APIGatewayRestResolver,
        *,
        workers: int = WORKERS,
        idle_timeout: float = IDLE_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int | None = None,
        watch: RunWatch | None = None,
    ) -> None:
        self.app = app
        self.watch = watch
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.max_connections = max_connections or _connection_limit()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stratoflow-api")
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stratoflow-http")
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._to_park: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._refusing = 0  # connections over the limit, waiting to be told so
        self._closing = False
        self._poller = threading.Thread(target=self._poll, name="stratoflow-idle", daemon=True)
        # a bind that fails (port in use) calls server_close, then raises its OSError
        super().__init__(address, _Handler)
        self._poller.start()

    # ---------------------------------------------------------- connections
    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A new connection (in the accepting thread): park it until it sends a request."""
        with self._lock:
            full = len(self._open) >= self.max_connections or self._closing
            linger = full and not self._closing and self._refusing < MAX_REFUSING
            if linger:
                self._refusing += 1
        if full and not linger:
            _turn_away(request)  # a flood: no time to read its request first
            return
        try:
            conn = _Connection(_Handler(request, client_address, self))
        except OSError:
            self.shutdown_request(request)
            if linger:
                with self._lock:
                    self._refusing -= 1
            return
        if linger:
            # Too many open connections: read its request (closing a socket with unread
            # bytes makes the kernel reset it, and the client never sees the answer), then
            # answer 503 and close. It is not counted as open and gets REFUSE_SECONDS.
            conn.refused = True
            self._park(conn, REFUSE_SECONDS)
            return
        with self._lock:
            self._open.add(conn)
        self._park(conn)

    def _park(self, conn: _Connection, wait: float | None = None) -> None:
        conn.deadline = time.monotonic() + (self.idle_timeout if wait is None else wait)
        with self._lock:
            if self._closing:
                closing = True
            else:
                closing = False
                self._to_park.append(conn)
        if closing:
            self._close(conn)
            return
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _poll(self) -> None:
        """The poller thread: hand readable connections to the pool, close idle ones."""
        parked: dict[int, _Connection] = {}
        next_sweep = time.monotonic() + SWEEP_SECONDS
        while True:
            with self._lock:
                if self._closing:
                    break
                fresh, self._to_park = self._to_park, []
            for conn in fresh:
                try:
                    self._selector.register(conn.sock, selectors.EVENT_READ, conn)
                    parked[conn.sock.fileno()] = conn
                except (OSError, ValueError, KeyError):
                    self._close(conn)
            for key, _ in self._selector.select(timeout=SWEEP_SECONDS):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                conn = key.data
                ready = self._receive(conn)
                if ready is None:
                    continue  # part of a request: wait for the rest
                self._selector.unregister(conn.sock)
                parked.pop(key.fd, None)
                if not ready or conn.refused:
                    self._close(conn)
                    continue
                try:
                    self.pool.submit(self._serve, conn)
                except RuntimeError:  # the pool was shut down: the server is closing
                    self._close(conn)
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + SWEEP_SECONDS
                for fd, conn in list(parked.items()):
                    if conn.deadline <= now:
                        self._selector.unregister(conn.sock)
                        del parked[fd]
                        self._close(conn)
        for conn in parked.values():
            self._close(conn)

    def _receive(self, conn: _Connection) -> bool | None:
        """Read what a parked connection sent (it is readable: this does not block). True:
        a whole request is here (its head, and its body unless that is large), serve it;
        None: wait for more; False: the client closed or failed, close it. A slow client
        thus never holds an HTTP thread while it dribbles its request in."""
        inbox = conn.handler.inbox
        try:
            chunk = conn.sock.recv(RECEIVE_BYTES)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return None
        except OSError:
            return False
        if not chunk:
            return bool(inbox.pending)  # answer what came before the close, if anything
        if not inbox.pending:  # a request started: it has request_timeout to arrive whole
            conn.deadline = time.monotonic() + self.request_timeout
        inbox.pending += chunk
        return True if _complete(inbox.pending) else None

    def _serve(self, conn: _Connection) -> None:
        """A pool thread: serve the request(s) the connection sent, then park it again."""
        try:
            keep = conn.handler.serve_one()
        except Exception:
            log.debug("connection from %s failed", conn.handler.client_address, exc_info=True)
            keep = False
        if keep:
            self._park(conn)
        else:
            self._close(conn)

    def _close(self, conn: _Connection) -> None:
        with self._lock:
            self._open.discard(conn)
            if conn.refused:
                self._refusing -= 1
        with contextlib.suppress(Exception):
            conn.handler.finish()
        if conn.refused:
            _turn_away(conn.sock)
        else:
            self.shutdown_request(conn.sock)

    # ---------------------------------------------------------- the resolver
    def resolve(self, event: dict[str, Any]) -> dict[str, Any]:
        """The resolver's answer to ``event``; a long poll is held here, in the HTTP thread."""
        if self.watch is not None:
            return resolve_held(self.watch, event, self._resolve)
        return self._resolve(event)

    def _resolve(self, event: dict[str, Any]) -> dict[str, Any]:
        context = LocalContext(event["requestContext"]["requestId"])
        result: dict[str, Any] = self.worker.submit(self.app.resolve, event, context).result()
        return result

    # ---------------------------------------------------------- lifecycle
    def shutdown(self) -> None:
        """Stop ``serve_forever`` (call it from another thread) and release the port."""
        super().shutdown()
        self.server_close()

    def server_close(self) -> None:
        super().server_close()
        with self._lock:
            if self._closing:
                return
            self._closing = True
            serving = list(self._open)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._poller.ident is not None:  # not when the bind failed: it never started
            self._poller.join(timeout=5)
        if self.watch is not None:
            self.watch.close()  # held long polls answer now
        for conn in serving:  # wake threads blocked reading a slow client
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.worker.shutdown(wait=True)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


def _complete(data: bytearray) -> bool:
    """Whether ``data`` holds a whole request head, and its body unless that is large (the
    HTTP thread reads a large body itself). A head too long to be valid counts as whole: the
    handler answers 414/431 at once."""
    heads = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) >= 0]
    if not heads:
        return len(data) > MAX_HEAD_BYTES
    end, separator = min(heads)
    length = _CONTENT_LENGTH.search(bytes(data[:end]))
    if length is None:
        return True
    size = int(length.group(1))
    return size > PREREAD_BODY_BYTES or len(data) >= end + separator + size


class _Inbox(io.RawIOBase):
    """A connection's bytes as the handler reads them: first what the poller received while
    the connection was parked, then the socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()
        # while an HTTP thread reads a request: when it must have arrived whole (monotonic).
        # The socket's timeout bounds one recv, so a client sending a byte now and then
        # would hold the thread for as long as it likes (a large body, a long head)
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        if self.pending:
            n = min(len(buffer), len(self.pending))
            buffer[:n] = self.pending[:n]
            del self.pending[:n]
            return n
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request did not arrive whole in time")
            self.sock.settimeout(left)
        try:
            return self.sock.recv_into(buffer)
        except (BlockingIOError, InterruptedError):
            return None  # non-blocking and nothing there (``_pipelined``)


class _Connection:
    """An open client connection and the handler (with its buffered reader) that serves it."""

    __slots__ = ("deadline", "handler", "refused")

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler
        self.deadline = 0.0
        self.refused = False  # over the connection limit: answered 503 once its request is in

    @property
    def sock(self) -> socket.socket:
        sock: socket.socket = self.handler.connection
        return sock


def _turn_away(sock: socket.socket) -> None:
    """Too many open connections: a 503 (best effort, never blocking) and close."""
    payload = json.dumps(
        {
            "error": "unavailable",
            "message": "the server has too many open connections; try again shortly",
            "problems": [],
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Retry-After: 1\r\nConnection: close\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        sock.send(head + payload)
    with contextlib.suppress(OSError):
        sock.close()


def _connection_limit() -> int:
    """Open connections allowed: half the process's file descriptors (raised to the hard
    limit first), the rest left for the database, logs and task pipes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_CONNECTIONS * 2 + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, (soft - 256) // 2))


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "stratoflow"
    # headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm holds
    # the body until the client's delayed ACK, 40 ms on Linux, on every keep-alive request
    disable_nagle_algorithm = True

    def __init__(self, request: Any, client_address: Any, server: ApiServer) -> None:
        # Unlike socketserver's handlers, one handler lives as long as its connection and
        # serves a request each time the connection is readable (``serve_one``).
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()
        self.connection.settimeout(server.request_timeout)
        self.rfile.close()
        self.inbox = _Inbox(self.connection)
        self.rfile = io.BufferedReader(self.inbox)

    def serve_one(self) -> bool:
        """Serve the request waiting on the connection, and any the client pipelined after
        it; whether to keep the connection open."""
        self._one_request()
        while not self.close_connection and self._pipelined():
            self._one_request()
        return not self.close_connection

    def _one_request(self) -> None:
        """Serve one request, which must arrive whole (what the poller has not received of
        it: a large body, a head too long for it) within ``request_timeout`` of this thread
        taking it: a client dribbling it in is answered 408 then, and the thread freed."""
        self.inbox.deadline = time.monotonic() + self.server.request_timeout
        try:
            self.handle_one_request()
        finally:
            self._received()

    def _received(self) -> None:
        """The request has been read: the answer is written with the usual timeout."""
        if self.inbox.deadline is not None:
            self.inbox.deadline = None
            with contextlib.suppress(OSError):
                self.connection.settimeout(self.server.request_timeout)

    def _pipelined(self) -> bool:
        """Whether a next request is already buffered or readable, without blocking."""
        sock = self.connection
        try:
            sock.setblocking(False)
            try:
                rfile = self.rfile
                return isinstance(rfile, io.BufferedReader) and bool(rfile.peek(1))
            except (BlockingIOError, InterruptedError):
                return False
            finally:
                sock.settimeout(self.server.request_timeout)
        except OSError:
            self.close_connection = True
            return False

    def _handle(self) -> None:
        # the target as sent: http.server (3.11.4 on) rewrites one starting with '//' to a
        # single '/', earlier versions do not, and urlsplit read '//x' as a host
        words = self.requestline.split()
        target = words[1] if len(words) > 1 else self.path
        if split_target(target)[0].startswith("//"):
            shown = target if len(target) <= 60 else f"{target[:60]}..."
            self._refuse(
                HTTPStatus.BAD_REQUEST,
                f"the request's path {shown!r} starts with '//': a path starts with one '/' "
                "(what follows '//' would be read as a host)",
            )
            return
        lengths = self.headers.get_all("Content-Length") or []
        transfer = self.headers.get_all("Transfer-Encoding")
        codings = ",".join(transfer or []).lower()
        if "chunked" in codings:
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length")
            return
        if transfer:
            # RFC 9112 6.1: a transfer coding overrides Content-Length, and a server that
            # does not know one answers 501. Read by Content-Length (what was done), a body
            # in "gzip" or "identity, x" framing (or an empty one) was taken for what it is
            # not. The value is echoed cut: a header may hold 64 KiB
            shown = codings.strip()
            shown = f"{shown[:40]}..." if len(shown) > 40 else shown
            self._refuse(
                HTTPStatus.NOT_IMPLEMENTED,
                f"transfer coding {shown!r} is not supported: send the body as it is, with a "
                "Content-Length",
            )
            return
        # RFC 9112 6.3: a length that is not one number is a 400 (Content-Length: 0 then 40
        # was read as no body, and the 40 bytes as a next, pipelined request); int() took
        # "-1", "+5" and "1_0" too
        if len(lengths) > 1:
            self._refuse(
                HTTPStatus.BAD_REQUEST,
                f"the request has {len(lengths)} Content-Length headers; send one",
            )
            return
        length = lengths[0].strip(" \t") if lengths else ""
        if lengths and not (length.isascii() and length.isdecimal()):
            self._refuse(
                HTTPStatus.BAD_REQUEST,
                "the Content-Length header is not a number of bytes (one, of digits 0-9)",
            )
            return
        size = int(length) if length else 0
        if size > MAX_BODY_BYTES:
            self._refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body exceeds {MAX_BODY_BYTES} bytes"
            )
            return
        try:
            body = self.rfile.read(size) if size else b""
        except TimeoutError:
            self._received()
            self._refuse(
                HTTPStatus.REQUEST_TIMEOUT,
                f"the request did not arrive whole within {self.server.request_timeout:g} s "
                "(its body is incomplete)",
            )
            return
        self._received()
        event = to_event(self.command, target, self.headers, body, self.client_address[0])
        try:
            response = self.server.resolve(event)
        except Exception as exc:
            fault = machine_fault(exc)
            if fault is None:
                log.exception("resolving %s %s failed", self.command, event["path"])
                self._send(500, {"Content-Type": ["application/json"]}, _INTERNAL_ERROR)
                return
            payload = json.dumps({"error": "unavailable", "message": str(fault), "problems": []})
            headers = {
                "Content-Type": ["application/json"],
                "Retry-After": [str(fault.retry_after)],
            }
            self._send(503, headers, payload.encode())
            return
        self._send(*_from_proxy(response))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, a URI too long, headers too
        large, an unsupported HTTP version) in the API's JSON error shape, not HTML."""
        try:
            status = HTTPStatus(code)
        except ValueError:
            status = HTTPStatus.BAD_REQUEST
        words = message or status.phrase
        if explain and explain != words:
            words = f"{words}: {explain}"
        self.log_error("code %d, message %s", code, words)
        if getattr(self, "request_version", "HTTP/0.9") not in ("HTTP/1.0", "HTTP/1.1"):
            self.request_version = "HTTP/1.0"  # a status line and headers, never HTTP/0.9
        self._refuse(status, words[:300])

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer without reading the body, and close the connection (the body is unread)."""
        self.close_connection = True
        error = re.sub(r"[^a-z0-9]+", "_", status.phrase.lower())
        payload = json.dumps({"error": error, "message": message, "problems": []}).encode()
        self._send(
            status.value, {"Content-Type": ["application/json"], "Connection": ["close"]}, payload
        )

    def _send(self, status: int, headers: Mapping[str, list[str]], payload: bytes) -> None:
        if status in (HTTPStatus.NOT_MODIFIED, HTTPStatus.NO_CONTENT):
            payload = b""  # never a body, nor a Content-Length that would describe one
        encoding = self._compress(headers, payload) if payload else None
        self.send_response(status)
        for name, values in headers.items():
            if name.lower() in ("content-length", "transfer-encoding"):
                continue
            for value in values:
                self.send_header(name, value)
        if encoding is not None:
            payload, gzipped = encoding
            self.send_header("Vary", "Accept-Encoding")
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
        if payload or status not in (HTTPStatus.NOT_MODIFIED, HTTPStatus.NO_CONTENT):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _compress(
        self, headers: Mapping[str, list[str]], payload: bytes
    ) -> tuple[bytes, bool] | None:
        """(body, whether gzipped): gzipped if the client accepts it and it is worth it;
        None: a kind of body never compressed (the answer does not vary by encoding)."""
        names = {name.lower(): values for name, values in headers.items()}
        kind = (names.get("content-type") or [""])[-1].lower()
        if "content-encoding" in names or not kind.startswith(_COMPRESSIBLE):
            return None
        if len(payload) < GZIP_MIN_BYTES or not accepts_gzip(self.headers.get("Accept-Encoding")):
            return payload, False
        # Kept compressed: an immutable asset, and a view with an ETag (the API's tags name
        # what a view was built from, so one path under one tag is one body: a cached layout
        # is gzipped once, not on every visit; 70 ms at 10,000 tasks)
        immutable = "immutable" in ",".join(names.get("cache-control", []))
        tags = names.get("etag")
        tag = tags[-1] if tags else None
        keep = immutable or tag is not None
        key = (self.path, tag, len(payload))
        packed = _GZIPPED.get(key) if keep else None
        if packed is None:
            packed = gzip.compress(payload, GZIP_LEVEL, mtime=0)
            if keep:
                full = sum(map(len, list(_GZIPPED.values()))) > GZIP_CACHE_BYTES
                if full or len(_GZIPPED) >= GZIP_CACHE_ENTRIES:
                    _GZIPPED.clear()
                _GZIPPED[key] = packed
        return packed, True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _not_allowed(self) -> None:
        # API Gateway does not pass these on either; answer as it would, not with a 501
        self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not supported")

    def __getattr__(self, name: str) -> Any:
        # any other method (TRACE, CONNECT, QUERY, ...): 405, as API Gateway answers, not 501
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


_GZIPPED: dict[tuple[str, str | None, int], bytes] = {}


def accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (by name or ``*``, q above 0)."""
    if not header:
        return False
    quality: dict[str, float] = {}
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[name.strip().lower()] = q
    for name in ("gzip", "x-gzip", "*"):
        if name in quality:
            return quality[name] > 0
    return False


def _from_proxy(response: Mapping[str, Any]) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, headers and body bytes of an API Gateway proxy response."""
    headers: dict[str, list[str]] = {}
    for name, value in (response.get("headers") or {}).items():
        headers.setdefault(name, []).append(str(value))
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name] = [str(v) for v in values]
    raw = response.get("body") or ""
    payload = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
    return int(response.get("statusCode", 500)), headers, payload


def serve(
    app: APIGatewayRestResolver,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    **options: Any,
) -> ApiServer:
    """Bind (port 0 picks a free port) and return the server; call ``serve_forever()``.
    ``options``: ``ApiServer``'s (workers, idle_timeout, request_timeout, max_connections,
    watch)."""
    return ApiServer((host, port), app, **options)


def start_in_thread(
    app: APIGatewayRestResolver,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    bound: Callable[[], None] | None = None,
    **options: Any,
) -> tuple[ApiServer, str]:
    """Serve in a daemon thread; returns the server (``shutdown()`` stops it) and its URL.
    ``bound``: called once the port is bound (a bind that fails raises its OSError first),
    before any request is answered."""
    server = serve(app, host, port, **options)
    if bound is not None:
        try:
            bound()
        except BaseException:
            server.server_close()
            raise
    thread = threading.Thread(target=server.serve_forever, name="stratoflow-http", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    shown = bound_host if isinstance(bound_host, str) else bound_host.decode()
    if ":" in shown:
        shown = f"[{shown}]"
    return server, f"http://{shown}:{bound_port}"
