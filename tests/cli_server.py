"""A local runtime's API served in a thread, and the ``stratoflow`` CLI pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.api.app import create_app
from stratoflow.api.local_server import start_in_thread
from stratoflow.cli import main


@dataclass
class Server:
    url: str
    runtime: LocalRuntime
    cli: CliRunner

    def run(self, *args: str) -> tuple[int, str]:
        """Run ``stratoflow ARGS --api URL``: its exit code and output."""
        result = self.cli.invoke(main, [*args, "--api", self.url])
        return result.exit_code, result.output


@contextmanager
def serving(rt: LocalRuntime, *, start: bool = False, **app_options: Any) -> Iterator[Server]:
    """Serve ``rt``'s API (``create_app`` with ``rt``'s read model and ``app_options`` too;
    ``readmodel=None``: without one) on a free port, then with ``start`` start ``rt``'s loop;
    at the end stop the server and close ``rt``. Unset $STRATOFLOW_TOKEN first (monkeypatch)."""
    options: dict[str, Any] = {"readmodel": rt.readmodel, **app_options}
    app = create_app(rt.scheduler, on_change=rt.wake, **options)
    httpd, url = start_in_thread(app, "127.0.0.1", 0)
    try:
        if start:
            rt.start()
        yield Server(url, rt, CliRunner())
    finally:
        httpd.shutdown()
        rt.close()


@contextmanager
def running_api(home: Path) -> Iterator[Server]:
    """A fresh local runtime in ``home`` with its loop running, behind its bare API (no read
    model, no sign-in): the server the e2e CLI tests drive."""
    with serving(LocalRuntime(home), start=True, readmodel=None) as server:
        yield server
