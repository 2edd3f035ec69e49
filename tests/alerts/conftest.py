"""A local HTTP server that records what alert channels send and answers as told."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.http_stub import json_stub


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

    def respond(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        with rec.lock:
            rec.requests.append(
                Seen(method, path, {k.lower(): v for k, v in headers.items()}, body)
            )
            return rec.answers[0] if len(rec.answers) == 1 else rec.answers.pop(0)

    with json_stub(respond) as url:
        rec.url = url
        yield rec


def secrets_of(values: dict[str, str]) -> Any:
    """A dict-backed ``resolve_secret(project, name)``."""

    def resolve(project: str, name: str) -> str:
        return values[f"{project}/{name}"] if f"{project}/{name}" in values else values[name]

    return resolve
