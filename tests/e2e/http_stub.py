"""A JSON HTTP stub on 127.0.0.1 for tests of tasks that call HTTP services."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (method, path, JSON body or None, headers) -> (status, JSON payload[, response headers])
Respond = Callable[
    [str, str, Any, dict[str, str]], tuple[int, Any] | tuple[int, Any, dict[str, str]]
]


@contextmanager
def json_stub(respond: Respond, port: int = 0) -> Iterator[str]:
    """Serve ``respond`` until the block ends; yields the base URL. ``port``: a given one
    (a service that comes up later at an address already configured), else any free one."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length) if length else b""
            answer = respond(
                self.command, self.path, json.loads(raw) if raw else None, dict(self.headers)
            )
            status, payload = answer[0], answer[1]
            body = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in (answer[2] if len(answer) == 3 else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
