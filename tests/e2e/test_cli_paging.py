"""``stratoflow logs`` and ``runs output`` print a large log or output whole, page by page,
and say so (exit 1) when the server stops short; ``runs show`` says which outputs its view
cut. Against a real local runtime behind the HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.api.app import MAX_LOG_CHUNK, create_app
from stratoflow.api.local_server import start_in_thread
from stratoflow.cli import main
from stratoflow.ports import Attempt, LogRange
from tests.cli_server import running_api
from tests.e2e.test_api import wait_for
from tests.logframe import framed, pid_of, unpid

pytestmark = pytest.mark.e2e

LOG_BYTES = 2 * MAX_LOG_CHUNK + 12_345  # three pages
OUTPUT_BYTES = 300_000
LOUD = f"""\
name: loud
tasks:
  talk:
    type: shell
    command: |
      head -c {LOG_BYTES - 4} /dev/zero | tr '\\0' 'a'
      echo end
      printf 'big=%s\\n' "$(head -c {OUTPUT_BYTES} /dev/zero | tr '\\0' 'b')" >> "$STRATOFLOW_OUTPUT"
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[str]:
    with running_api(tmp_path / "home") as served:
        yield served.url


def test_logs_and_outputs_are_printed_whole(tmp_path: Path, api: str) -> None:
    cli = CliRunner()
    source = tmp_path / "loud.yaml"
    source.write_text(LOUD, encoding="utf-8")
    assert cli.invoke(main, ["apply", str(source), "--api", api]).exit_code == 0
    run_id = cli.invoke(main, ["trigger", "loud", "--api", api]).output.strip()

    def done() -> bool:
        shown = cli.invoke(main, ["runs", "show", run_id, "--output", "json", "--api", api])
        return bool(json.loads(shown.output)["run"]["state"] == "succeeded")

    wait_for(done, "the loud run", timeout=60)
    logs = cli.invoke(main, ["logs", run_id, "talk", "--api", api])
    assert logs.exit_code == 0, logs.output[-500:]
    frame = framed("talk", "", pid=pid_of(logs.output))
    assert len(logs.output) == LOG_BYTES + len(frame)  # the frame's two lines
    assert logs.output.endswith("aaaend\n" + frame.splitlines(keepends=True)[1])
    shown = cli.invoke(main, ["runs", "show", run_id, "--api", api])
    assert f"output 'big' is {OUTPUT_BYTES} bytes, cut in this view" in shown.output
    assert f"stratoflow runs output {run_id} talk big" in shown.output
    whole = cli.invoke(main, ["runs", "output", run_id, "talk", "big", "--api", api])
    assert whole.exit_code == 0
    # the value whole, then a newline as every command's text ends (no prompt glued to it)
    assert whole.output == "b" * OUTPUT_BYTES + "\n"


def test_logs_that_stop_short_say_so_and_exit_1(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path / "home")

    def stuck(attempt: Attempt, offset: int, length: int) -> LogRange:
        data = b"x" * min(length, max(0, 1000 - offset))  # a log that claims 5000 bytes
        return LogRange(data, offset, 5000)

    httpd, url = start_in_thread(create_app(runtime.scheduler, read_log=stuck), "127.0.0.1", 0)
    try:
        runtime.scheduler.apply("name: w\ntasks:\n  t: {type: shell, command: 'true'}\n")
        run, _ = runtime.scheduler.trigger("default", "w")
        runtime.start()
        wait_for(lambda: runtime.store.get_run(run.id).state.terminal, "the run")
        result = CliRunner().invoke(main, ["logs", run.id, "t", "--api", url])
        assert result.exit_code == 1
        assert result.stdout == "x" * 1000
        assert "stopped at byte 1000 of 5000" in result.stderr
        assert f"/runs/{run.id}/tasks/t/attempts/1/log?offset=1000" in result.stderr
    finally:
        httpd.shutdown()
        runtime.close()


def test_logs_of_a_task_with_no_attempt_or_of_attempt_0_say_why(tmp_path: Path, api: str) -> None:
    cli = CliRunner()
    source = tmp_path / "al2.yaml"
    source.write_text(
        "name: al2\ntasks:\n  f: {type: shell, command: 'exit 1'}\n"
        "  g: {type: shell, command: 'true', depends_on: [f]}\n",
        encoding="utf-8",
    )
    assert cli.invoke(main, ["apply", str(source), "--api", api]).exit_code == 0
    run_id = cli.invoke(main, ["trigger", "al2", "--api", api]).output.strip()

    def failed() -> bool:
        shown = cli.invoke(main, ["runs", "show", run_id, "--output", "json", "--api", api])
        return bool(json.loads(shown.output)["run"]["state"] == "failed")

    wait_for(failed, "the al2 run", timeout=60)

    never = cli.invoke(main, ["logs", run_id, "g", "--api", api])
    assert never.exit_code == 2
    assert never.stderr == (
        f"error: task g of run {run_id} has no attempt yet (state: upstream_failed), "
        "so it has no log\n"
    )
    marked = cli.invoke(main, ["runs", "mark", run_id, "f", "--state", "skipped", "--api", api])
    assert marked.exit_code == 0, marked.output
    skipped = cli.invoke(main, ["logs", run_id, "g", "--api", api])
    assert skipped.exit_code == 2
    assert "has no attempt yet (state: skipped)" in skipped.stderr

    for command in (["logs", run_id, "f"], ["runs", "output", run_id, "f", "k"]):
        zero = cli.invoke(main, [*command, "--attempt", "0", "--api", api])
        assert zero.exit_code == 2
        assert "Invalid value for '--attempt': 0 is not in the range x>=1." in zero.stderr
        assert "path.attempt" not in zero.stderr  # refused before any request
    beyond = cli.invoke(main, ["logs", run_id, "f", "--attempt", "2", "--api", api])
    assert beyond.exit_code == 2
    assert f"task 'f' of run '{run_id}' has no attempt 2 (its latest is attempt 1)" in (
        beyond.stderr
    )
    ran = cli.invoke(main, ["logs", run_id, "f", "--api", api])
    assert ran.exit_code == 0
    assert unpid(ran.output) == framed("f", "", code=1)
