"""Serve the API resolver over plain HTTP on this machine (``stratoflow server``, the tests).

Each HTTP request becomes an API Gateway REST (v1) proxy event, exactly what the resolver gets
from API Gateway on AWS, and the resolver's proxy response becomes the HTTP response. So the
local server exercises the same code path as the deployed API.

A resolver keeps per-request state on itself, so every request is resolved on one worker
thread; the HTTP threads only read requests and write responses. (That worker is also the
only thread that opens a SQLite connection for the API.)
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

log = logging.getLogger("stratoflow.api.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8321
STAGE = "local"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's own limit
_INTERNAL_ERROR = b'{"error":"internal","message":"internal error; the server log has the details"}'


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


def to_event(
    method: str, target: str, headers: Message, body: bytes, client: str
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event for one HTTP request."""
    url = urlsplit(target)
    path = unquote(url.path) or "/"
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers.items():
        multi_headers.setdefault(name, []).append(str(value))
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(url.query, keep_blank_values=True):
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


class ApiServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that resolves every request with ``app`` on one worker thread."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: APIGatewayRestResolver) -> None:
        self.app = app
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stratoflow-api")
        super().__init__(address, _Handler)

    def resolve(self, event: dict[str, Any]) -> dict[str, Any]:
        context = LocalContext(event["requestContext"]["requestId"])
        result: dict[str, Any] = self.worker.submit(self.app.resolve, event, context).result()
        return result

    def shutdown(self) -> None:
        """Stop ``serve_forever`` (call it from another thread) and release the port."""
        super().shutdown()
        self.server_close()

    def server_close(self) -> None:
        super().server_close()
        self.worker.shutdown(wait=True)


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "stratoflow"

    def _handle(self) -> None:
        length = self.headers.get("Content-Length")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length")
            return
        try:
            size = int(length) if length else 0
        except ValueError:
            self._refuse(HTTPStatus.BAD_REQUEST, "the Content-Length header is not a number")
            return
        if size < 0 or size > MAX_BODY_BYTES:
            self._refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body exceeds {MAX_BODY_BYTES} bytes"
            )
            return
        body = self.rfile.read(size) if size else b""
        event = to_event(self.command, self.path, self.headers, body, self.client_address[0])
        try:
            response = self.server.resolve(event)
        except Exception:
            log.exception("resolving %s %s failed", self.command, event["path"])
            self._send(500, {"Content-Type": ["application/json"]}, _INTERNAL_ERROR)
            return
        self._send(*_from_proxy(response))

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer without reading the body, and close the connection (the body is unread)."""
        self.close_connection = True
        error = status.phrase.lower().replace(" ", "_")
        payload = json.dumps({"error": error, "message": message, "problems": []}).encode()
        self._send(
            status.value, {"Content-Type": ["application/json"], "Connection": ["close"]}, payload
        )

    def _send(self, status: int, headers: Mapping[str, list[str]], payload: bytes) -> None:
        self.send_response(status)
        for name, values in headers.items():
            if name.lower() in ("content-length", "transfer-encoding"):
                continue
            for value in values:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

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
    app: APIGatewayRestResolver, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> ApiServer:
    """Bind (port 0 picks a free port) and return the server; call ``serve_forever()``."""
    return ApiServer((host, port), app)


def start_in_thread(
    app: APIGatewayRestResolver, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> tuple[ApiServer, str]:
    """Serve in a daemon thread; returns the server (``shutdown()`` stops it) and its URL."""
    server = serve(app, host, port)
    thread = threading.Thread(target=server.serve_forever, name="stratoflow-http", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    shown = bound_host if isinstance(bound_host, str) else bound_host.decode()
    if ":" in shown:
        shown = f"[{shown}]"
    return server, f"http://{shown}:{bound_port}"
