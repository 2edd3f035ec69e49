"""`stratoflow server` on a port it cannot listen on says why, as the CLI means to (`cannot
listen on HOST:PORT: ...`), instead of a traceback from the API server's cleanup."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from click.testing import CliRunner

from stratoflow.api.local_server import ApiServer
from stratoflow.cli import main


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        yield taken.getsockname()[1]


def test_a_port_in_use_raises_the_bind_error_and_starts_no_thread(busy_port: int) -> None:
    before = set(threading.enumerate())
    with pytest.raises(OSError) as raised:  # it was an AttributeError from server_close
        ApiServer(("127.0.0.1", busy_port), APIGatewayRestResolver())
    assert raised.value.errno == errno.EADDRINUSE
    assert not [t for t in set(threading.enumerate()) - before if t.name == "stratoflow-idle"]


def test_server_on_a_port_in_use_names_it_without_a_traceback(
    busy_port: int, tmp_path: Path
) -> None:
    env = {**os.environ, "STRATOFLOW_TASK_ISOLATION": "none"}
    env.pop("STRATOFLOW_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "stratoflow", "server", "--home", str(tmp_path / "home"),
         "--port", str(busy_port)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"error: cannot listen on 127.0.0.1:{busy_port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
    # no admin was made whose token, printed above the error, the next start would not show
    assert "First start" not in done.stdout


def test_a_port_out_of_range_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = CliRunner().invoke(main, ["server", "--home", str(home), "--port", "99999"])
    assert result.exit_code == 2, result.output
    assert "--port" in result.output
    assert "0<=x<=65535" in result.output
    assert not home.exists()
