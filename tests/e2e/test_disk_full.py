"""A full disk under a real ``stratoflow server``: the API answers 503 with a message (not
500), keeps serving what needs no space, and serves writes again as soon as space returns,
without a restart.

The server's home is a small tmpfs the test mounts (it needs root, as on the development
machines and in CI); it is unmounted afterwards. Without root it is skipped, except in CI
(``CI=true``), where it must run.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server_process import ServerProcess

pytestmark = pytest.mark.e2e

SIZE = "24m"
WORKFLOW = "name: small\ntasks:\n  t: {type: shell, command: 'echo hi'}\n"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the disk-full test must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "mnt"
    mount.mkdir()
    if os.geteuid() != 0:
        _unavailable("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        _unavailable(f"mount -t tmpfs failed: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _write_until_full(path: Path, block: int) -> None:
    with path.open("ab", buffering=0) as out, pytest.raises(OSError) as full:  # noqa: PT012
        while True:
            out.write(b"\0" * block)
    assert full.value.errno == errno.ENOSPC


def _fill(path: Path) -> Path:
    """Write until the filesystem refuses: no space is left."""
    filler = path / "filler"
    _write_until_full(filler, 65536)
    _write_until_full(filler, 512)  # the last partial block
    return filler


def test_a_full_disk_is_a_503_and_the_api_recovers_when_space_returns(
    tmpfs: Path, tmp_path: Path
) -> None:
    server = ServerProcess(tmpfs / "home", log=tmp_path / "server.log")
    server.start()
    try:
        http = httpx.Client(base_url=server.url, headers=server.headers, timeout=30)
        assert http.post("/workflows", json={"source": WORKFLOW}).status_code == 201
        first = http.post("/workflows/small/runs", json={})
        assert first.status_code == 201, first.text

        # GIVEN a full disk
        filler = _fill(tmpfs)
        # WHEN runs are triggered THEN each is refused with a 503 that says why, never a 500
        statuses = []
        for n in range(40):
            reply = http.post("/workflows/small/runs", json={"params": {}, "run_id": f"k{n}"})
            statuses.append(reply.status_code)
            assert reply.status_code in (201, 503), reply.text
            if reply.status_code == 503:
                body = reply.json()
                assert body["error"] == "unavailable"
                assert "disk is full" in body["message"]
                assert reply.headers["Retry-After"].isdigit()
                assert "Traceback" not in reply.text
        assert 503 in statuses, "the disk never filled up"
        # reads need no space: still answered
        assert http.get("/health").status_code == 200
        assert http.get(f"/runs/{first.json()['run']['id']}").status_code == 200

        # WHEN space returns THEN writes succeed again, no restart
        filler.unlink()
        deadline = time.monotonic() + 30
        while True:
            again = http.post("/workflows/small/runs", json={"run_id": "after"})
            if again.status_code in (200, 201) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert again.status_code in (200, 201), again.text
        run_id = again.json()["run"]["id"]
        deadline = time.monotonic() + 30
        while http.get(f"/runs/{run_id}").json()["run"]["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the run after the disk was freed never ended"
            time.sleep(0.2)
        assert server.proc is not None
        assert server.proc.poll() is None
        assert server.starts == 1
        http.close()
    finally:
        server.stop()
