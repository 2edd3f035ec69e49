"""Resource files end to end on the local runtime (issue 13, item 4): ``stratoflow resources``
through the API of a local server (upload, list, versions, download, delete, exit codes and
errors), a shell task that cats a resource in its working directory (and batch and kubernetes
tasks, whose commands run as local processes), a run that keeps the version it pinned when a
new one is uploaded while it runs and when it is rerun, and a trigger refused naming a missing
file. sql_file from a resource: tests/sql/test_sql_local.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.cli import main
from stratoflow.engine import RunState
from stratoflow.errors import InvalidInput
from stratoflow.resources import MAX_RESOURCE_BYTES
from tests.cli_server import Server, serving

pytestmark = pytest.mark.e2e

WORKFLOW = """
name: uses_files
project: etl
tasks:
  first:
    type: shell
    resources: [data/rows.txt]
    command: |
      echo "seen=$(cat data/rows.txt)" >> "$STRATOFLOW_OUTPUT"
  pause:
    type: shell
    depends_on: [first]
    command: sleep 1
  second:
    type: python
    depends_on: [pause]
    resources: [data/rows.txt, query.sql]
    code: |
      outputs["seen"] = open("data/rows.txt").read() + "|" + open("query.sql").read()
"""


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.delenv("STRATOFLOW_TOKEN", raising=False)
    rt = LocalRuntime(tmp_path / "home")
    with serving(rt) as server:
        yield server


def upload(server: Server, tmp_path: Path, path: str, data: bytes, project: str = "etl") -> dict:
    local = tmp_path / "upload.bin"
    local.write_bytes(data)
    code, out = server.run("resources", "upload", str(local), path, "--project", project,
                           "--output", "json")  # fmt: skip
    assert code == 0, out
    return json.loads(out)


def test_cli_upload_list_versions_download_delete(server: Server, tmp_path: Path) -> None:
    binary = bytes(range(256)) * 3
    first = upload(server, tmp_path, "bin/blob.dat", binary)
    assert (first["path"], first["version"], first["size"]) == ("bin/blob.dat", "1", 768)
    assert upload(server, tmp_path, "bin/blob.dat", b"v2")["version"] == "2"
    upload(server, tmp_path, "query.sql", b"select 1")

    code, out = server.run("resources", "list", "--project", "etl", "--output", "json")
    assert code == 0, out
    assert [(r["path"], r["version"]) for r in json.loads(out)["resources"]] == [
        ("bin/blob.dat", "2"), ("query.sql", "1"),
    ]  # fmt: skip
    code, out = server.run("resources", "list", "bin/", "--project", "etl")
    assert code == 0, out
    assert out.startswith("bin/blob.dat\tv2\t2 B\t"), out
    code, out = server.run("resources", "list", "--project", "other", "--output", "json")
    assert json.loads(out)["resources"] == []  # no project sees another's files

    code, out = server.run(
        "resources", "versions", "bin/blob.dat", "--project", "etl", "--output", "json"
    )
    assert [v["version"] for v in json.loads(out)["versions"]] == ["2", "1"]

    target = tmp_path / "got.dat"
    code, out = server.run("resources", "download", "bin/blob.dat", "-o", str(target),
                           "--version", "1", "--project", "etl")  # fmt: skip
    assert code == 0, out
    assert target.read_bytes() == binary
    code, out = server.run(
        "resources", "download", "bin/blob.dat", "-o", str(target), "--project", "etl"
    )
    assert code == 2
    assert "exists; pass --force" in out
    code, out = server.run("resources", "download", "bin/blob.dat", "-o", str(target), "--force",
                           "--project", "etl")  # fmt: skip
    assert code == 0
    assert target.read_bytes() == b"v2"
    code, out = server.run("resources", "download", "query.sql", "--project", "etl")
    assert (code, out) == (0, "select 1")

    code, out = server.run("resources", "delete", "bin/blob.dat", "--project", "etl")
    assert (code, out.strip()) == (0, "deleted: etl/bin/blob.dat")
    code, out = server.run("resources", "versions", "bin/blob.dat", "--project", "etl")
    assert code == 2


def test_bad_input_exits_2_naming_the_problem_and_changes_nothing(
    server: Server, tmp_path: Path
) -> None:
    local = tmp_path / "f.txt"
    local.write_text("x")
    result = server.cli.invoke(
        main, ["resources", "upload", str(local), "../etc/x", "--api", server.url]
    )
    assert result.exit_code == 2
    assert "path: must not contain '..'" in result.stderr
    result = server.cli.invoke(
        main, ["resources", "upload", str(local), "/abs", "--api", server.url]
    )
    assert result.exit_code == 2
    assert "must be relative" in result.stderr
    big = tmp_path / "big"
    big.write_bytes(b"\0" * (MAX_RESOURCE_BYTES + 1))
    result = server.cli.invoke(main, ["resources", "upload", str(big), "--api", server.url])
    assert result.exit_code == 2
    assert f"larger than {MAX_RESOURCE_BYTES:,} bytes" in result.stderr
    result = server.cli.invoke(main, ["resources", "download", "nope.txt", "--api", server.url])
    assert result.exit_code == 2
    assert "resource 'nope.txt' not found in project 'default'" in result.stderr
    assert server.runtime.resources.files("default") == []

    # the API checks the same, whatever the client
    r = httpx.put(f"{server.url}/resources/file", params={"path": "a/../b"}, content=b"x")
    assert r.status_code == 400
    assert r.json()["problems"][0]["path"] == "path"
    r = httpx.put(f"{server.url}/resources/file", params={"path": "big"},
                  content=b"x" * (MAX_RESOURCE_BYTES + 1))  # fmt: skip
    assert r.status_code == 400
    assert "at most 8,388,608 bytes (8 MiB)" in r.json()["message"]
    r = httpx.get(f"{server.url}/resources", params={"prefix": "../"})
    assert r.status_code == 400
    assert server.runtime.resources.files("default") == []


def test_the_api_and_its_openapi_document(server: Server) -> None:
    r = httpx.put(f"{server.url}/resources/file", params={"path": "a.txt", "project": "p"},
                  content=b"\xff\xfe binary", headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 201, r.text
    r = httpx.put(
        f"{server.url}/resources/file", params={"path": "a.txt", "project": "p"}, content=b"2"
    )
    assert r.status_code == 200
    assert r.json()["version"] == "2"
    r = httpx.get(
        f"{server.url}/resources/file", params={"path": "a.txt", "project": "p", "version": "1"}
    )
    assert r.content == b"\xff\xfe binary"
    assert r.headers["X-Resource-Version"] == "1"
    # the document is built on its first request: 1-3 s on an idle machine, past httpx's
    # default 5 s read timeout on a loaded one (seen: a ReadTimeout at load 11 on 2 cores)
    doc = httpx.get(f"{server.url}/openapi.json", timeout=60).json()
    for route in ("/resources", "/resources/file", "/resources/versions"):
        assert route in doc["paths"], route
    assert set(doc["paths"]["/resources/file"]) == {"get", "put", "delete"}
    body = doc["paths"]["/resources/file"]["put"]["requestBody"]["content"]
    assert body == {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def test_a_run_keeps_the_versions_it_pinned(server: Server, tmp_path: Path) -> None:
    rt = server.runtime
    upload(server, tmp_path, "data/rows.txt", b"old")
    upload(server, tmp_path, "query.sql", b"select 1")
    rt.scheduler.apply(WORKFLOW)
    run, _ = rt.scheduler.trigger("etl", "uses_files")
    uploaded: list[dict] = []

    def mid_run() -> None:  # once `first` has run, and before `second` starts (`pause`)
        first = rt.store.get_task(run.id, "first")
        if first.state.value == "succeeded" and not uploaded:
            uploaded.append(upload(server, tmp_path, "data/rows.txt", b"new"))

    rt.run_until(lambda: rt.store.get_run(run.id).state.terminal, on_turn=mid_run)
    assert uploaded
    assert uploaded[0]["version"] == "2"
    tasks = {t.task_id: t for t in rt.store.get_tasks(run.id)}
    assert rt.store.get_run(run.id).state.value == "succeeded", tasks
    assert tasks["second"].started_at > tasks["first"].ended_at
    assert tasks["first"].outputs == {"seen": "old"}
    assert tasks["second"].outputs == {"seen": "old|select 1"}

    rt.scheduler.rerun(run.id, from_task="first")  # a rerun reads what the run pinned
    rt.run_until(lambda: rt.store.get_run(run.id).state.terminal)
    assert rt.store.get_task(run.id, "first").outputs == {"seen": "old"}

    again, _ = rt.scheduler.trigger("etl", "uses_files")  # a new run: the newest versions
    rt.run_until(lambda: rt.store.get_run(again.id).state.terminal)
    assert rt.store.get_task(again.id, "first").outputs == {"seen": "new"}


def test_a_missing_file_refuses_the_trigger_and_a_deleted_one_fails_the_task(
    server: Server, tmp_path: Path
) -> None:
    rt = server.runtime
    rt.scheduler.apply(WORKFLOW)
    with pytest.raises(
        InvalidInput, match=r"resource 'data/rows.txt', 'query.sql' not found in project 'etl'"
    ):
        rt.scheduler.trigger("etl", "uses_files")
    r = httpx.post(f"{server.url}/workflows/uses_files/runs", params={"project": "etl"}, json={})
    assert r.status_code == 400, r.text
    assert "not found in project 'etl'" in r.json()["message"]
    assert list(rt.store.runs_in_states(list(RunState))) == []  # nothing was created

    upload(server, tmp_path, "data/rows.txt", b"x")
    upload(server, tmp_path, "query.sql", b"y")
    run, _ = rt.scheduler.trigger("etl", "uses_files")
    code, out = server.run("resources", "delete", "query.sql", "--project", "etl")
    assert code == 0, out
    rt.run_until(lambda: rt.store.get_run(run.id).state.terminal)
    second = rt.store.get_task(run.id, "second")
    assert second.state.value == "failed"
    assert second.attempt == 1  # not retried
    assert "resource 'query.sql' version 1 (pinned when the run was created) is gone" in (
        second.error or ""
    )


def test_a_pin_that_cannot_be_written_creates_no_run(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pins are written before the run: a failed write (a full disk) fails the trigger
    and leaves nothing; the same trigger once the disk has room creates the run."""
    rt = server.runtime
    upload(server, tmp_path, "data/rows.txt", b"x")
    upload(server, tmp_path, "query.sql", b"y")
    rt.scheduler.apply(WORKFLOW)

    def full(*_: object, **__: object) -> dict[str, str]:
        raise OSError(28, "No space left on device")

    original = rt.resources._record_pins
    monkeypatch.setattr(rt.resources, "_record_pins", full)
    r = httpx.post(f"{server.url}/workflows/uses_files/runs", params={"project": "etl"}, json={})
    assert r.status_code == 503, r.text
    assert list(rt.store.runs_in_states(list(RunState))) == []
    monkeypatch.setattr(rt.resources, "_record_pins", original)  # the disk has room again
    r = httpx.post(f"{server.url}/workflows/uses_files/runs", params={"project": "etl"}, json={})
    assert r.status_code == 201, r.text
    assert rt.resources.pins(r.json()["run"]["id"]) == {"data/rows.txt": "1", "query.sql": "1"}


def test_batch_and_kubernetes_tasks_find_them_too(server: Server, tmp_path: Path) -> None:
    """Locally a batch or kubernetes task's command runs as a process in its working
    directory (no image, no cluster): the files it lists are there, as for shell and python."""
    rt = server.runtime
    upload(server, tmp_path, "data/rows.txt", b"pinned")
    rt.scheduler.apply("""
name: containers
project: etl
tasks:
  job:
    type: batch
    image: alpine
    resources: [data/rows.txt]
    command: [sh, -c, 'echo "seen=$(cat data/rows.txt)" >> "$STRATOFLOW_OUTPUT"']
  pod:
    type: kubernetes
    image: alpine
    resources: [data/rows.txt]
    command: [sh, -c, 'echo "seen=$(cat data/rows.txt)" >> "$STRATOFLOW_OUTPUT"']
""")  # fmt: skip
    run, _ = rt.scheduler.trigger("etl", "containers")
    upload(server, tmp_path, "data/rows.txt", b"newer")  # after the run pinned version 1
    rt.run_until(lambda: rt.store.get_run(run.id).state.terminal)
    tasks = {t.task_id: t for t in rt.store.get_tasks(run.id)}
    assert rt.store.get_run(run.id).state.value == "succeeded", tasks
    assert tasks["job"].outputs == {"seen": "pinned"}
    assert tasks["pod"].outputs == {"seen": "pinned"}
