"""A local HTTP server that records what alert channels send and answers as told."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Recorder:
    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    # answers, used in order (the last one repeats): (status, JSON body)
    answers: list[tuple[int, Any]] = field(default_factory=lambda: [(200, {"ok": True})])
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)

    def on(self, path_prefix: str) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            with rec.lock:
                rec.requests.append(
                    Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                         body)
                )  # fmt: skip
                status, reply = rec.answers[0] if len(rec.answers) == 1 else rec.answers.pop(0)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_PUT = do_PATCH = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def secrets_of(values: dict[str, str]) -> Any:
    """A dict-backed ``resolve_secret(project, name)``."""

    def resolve(project: str, name: str) -> str:
        return values[f"{project}/{name}"] if f"{project}/{name}" in values else values[name]

    return resolve
