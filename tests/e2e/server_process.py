"""Start ``stratoflow server`` as a real child process on 127.0.0.1, for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_admin_token(log: Path) -> str:
    """The token a server printed on its first start (it keeps it nowhere on disk)."""
    found = re.search(r"sft_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", log.read_text(encoding="utf-8"))
    assert found, f"no admin token in {log}"
    return found.group(0)


class ServerProcess:
    def __init__(self, home: Path, port: int | None = None, *, log: Path | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or home.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # a readiness wait, not a timed test: at load ~19 on 2 cores a start took over 30 s
    def start(self, timeout: float = 90.0) -> None:
        self.starts += 1
        out = self.log.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stratoflow",
                "server",
                "--home",
                str(self.home),
                "--port",
                str(self.port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not answer within {timeout}s; see {self.log}")

    @property
    def token(self) -> str:
        """The first admin's API token, which the server printed once on its first start."""
        return first_admin_token(self.log)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
