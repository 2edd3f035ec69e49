"""A local runtime's API served in a thread, and the ``stratoflow`` CLI pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
def serving(rt: LocalRuntime, **app_options: Any) -> Iterator[Server]:
    """Serve ``rt``'s API (``create_app`` with ``app_options`` too) on a free port; at the
    end stop the server and close ``rt``. Unset $STRATOFLOW_TOKEN first (monkeypatch)."""
    app = create_app(rt.scheduler, on_change=rt.wake, readmodel=rt.readmodel, **app_options)
    httpd, url = start_in_thread(app, "127.0.0.1", 0)
    try:
        yield Server(url, rt, CliRunner())
    finally:
        httpd.shutdown()
        rt.close()
