"""Tasks are kept from the server and from each other; timeouts always kill; a full disk fails
the task that cannot write and everything recovers when space returns (issue 9, items 5-7)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.engine import RunState
from tests.e2e.test_runtime import finish, pid_alive, start
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

SECRET = "server-secret-7f3a"


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRuntime]:
    # the server holds credentials and a token in its environment; tasks must not see them
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("STRATOFLOW_TOKEN", SECRET)
    monkeypatch.setenv("STRATOFLOW_SECRET_DB", SECRET)
    monkeypatch.setenv("STRATOFLOW_DB", f"postgresql://sf:{SECRET}@db/sf")  # `server --db`'s
    rt = LocalRuntime(tmp_path / "home")
    yield rt
    rt.close()


def log_of(rt: LocalRuntime, run_id: str, task: str) -> str:
    (attempt,) = rt.store.list_attempts(run_id, task)
    return Path(attempt.log or "").read_text(encoding="utf-8")


def test_a_task_finds_nothing_of_the_home_the_tokens_other_runs_or_the_server_env(
    runtime: LocalRuntime,
) -> None:
    home = runtime.home
    # GIVEN a run of project B whose log and work dir hold B's data
    b_run = start(
        runtime,
        "name: bee\nproject: projb\ntasks:\n  t: {type: shell, command: 'echo b-private-data'}\n",
    )
    assert finish(runtime, b_run) is RunState.SUCCEEDED
    b_log = Path(runtime.store.list_attempts(b_run, "t")[0].log or "")
    assert "b-private-data" in b_log.read_text()
    # WHEN a task of project A tries every way in that the issue found
    probes = {
        "home": f"ls {home}",
        "db": f"cat {home}/stratoflow.db",
        "parent": "cat ../../stratoflow.db ../../admin-token",
        "b_log": f"cat {b_log}",
        "b_work": f"ls {runtime.executor.work_root}",
        "uids": f"cat {home}/task-uids",
        "server_env": "cat /proc/$PPID/environ",
    }
    command = "; ".join(
        f'{cmd} >/dev/null 2>&1 && echo "{name}=READ"' for name, cmd in probes.items()
    )
    command += '; env > "$HOME/env.txt"; cp "$HOME/env.txt" "$STRATOFLOW_OUTPUT"; pwd; true'
    a_run = start(
        runtime,
        f"name: ay\nproject: proja\ntasks:\n  t:\n    type: shell\n    command: '{command}'\n",
    )
    assert finish(runtime, a_run) is RunState.SUCCEEDED
    out = log_of(runtime, a_run, "t")
    # THEN it read none of them
    assert "=READ" not in out, out
    # its environment is the allow-list: no credential, no server setting, HOME its work dir
    (attempt,) = runtime.store.list_attempts(a_run, "t")
    (task,) = runtime.store.get_tasks(a_run, ["t"])
    env = task.outputs
    assert SECRET not in repr(env)
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "STRATOFLOW_TOKEN" not in env
    assert "STRATOFLOW_DB" not in env
    assert env["HOME"] == env["TMPDIR"] == out.strip().splitlines()[-2]  # then the frame
    assert not Path(env["HOME"]).is_relative_to(home)
    assert env["STRATOFLOW_PROJECT"] == "proja"
    # and its work dir goes once its result was recorded (the reaper thread removes it; the
    # log stays in the home)
    deadline = time.monotonic() + 10
    while Path(env["HOME"]).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(env["HOME"]).exists()
    assert Path(attempt.log or "").is_relative_to(home)


def test_a_python_task_runs_when_the_server_runs_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an editable install (`make install`): stratoflow's source is outside sys.prefix; the
    # task's Landlock domain could read it only when the server's cwd was above it
    elsewhere = tmp_path / "workflows"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rt = LocalRuntime(tmp_path / "home")
    try:
        run_id = start(rt, "name: p\ntasks:\n  t: {type: python, code: 'outputs[\"k\"] = 1'}\n")
        assert finish(rt, run_id) is RunState.SUCCEEDED, log_of(rt, run_id, "t")
        assert rt.store.get_task(run_id, "t").outputs == {"k": 1}
    finally:
        rt.close()


def test_a_python_task_s_prints_are_in_its_log_when_it_times_out(runtime: LocalRuntime) -> None:
    # block-buffered to the log file, they were lost with the killed process
    code = "import sys, time\nprint('step 1: connecting')\nprint('to stderr', file=sys.stderr)\ntime.sleep(30)\n"
    text = f"name: p\ntasks:\n  t: {{type: python, timeout: 2s, retries: 0, code: {json.dumps(code)}}}\n"
    run_id = start(runtime, text)
    assert finish(runtime, run_id) is RunState.FAILED
    log = log_of(runtime, run_id, "t")
    assert log.index("step 1: connecting") < log.index("to stderr"), log  # in order, too


def test_the_home_and_its_files_are_private(runtime: LocalRuntime) -> None:
    run_id = start(runtime, "name: p\ntasks:\n  t: {type: python, code: 'outputs[\"k\"] = 1'}\n")
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    home = runtime.home
    assert home.stat().st_mode & 0o777 == 0o700
    for name in ("stratoflow.db", "readmodel.db", "events.jsonl"):
        assert (home / name).stat().st_mode & 0o777 == 0o600, name
    log = Path(runtime.store.list_attempts(run_id, "t")[0].log or "")
    assert log.stat().st_mode & 0o777 == 0o600
    assert log.parent.stat().st_mode & 0o777 == 0o700


def test_a_child_that_ignores_sigterm_dies_after_the_timeout_and_grace(
    runtime: LocalRuntime, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stratoflow.adapters.local import executor

    monkeypatch.setattr(executor, "KILL_GRACE_SECONDS", 1.0)
    pids = shared_dir / "pids"
    # GIVEN a task whose child ignores SIGTERM and whose shell dies on it, with a 1s timeout
    run_id = start(
        runtime,
        f"""
name: stubborn
tasks:
  t:
    type: shell
    timeout: 1s
    command: |
      bash -c 'trap "" TERM; echo $$ >> {pids}; exec sleep 60' &
      wait
""",
    )
    # WHEN it times out
    assert finish(runtime, run_id) is RunState.FAILED
    assert [a.state for a in runtime.store.list_attempts(run_id, "t")] == ["timed_out"]
    (child,) = [int(p) for p in pids.read_text().split()]
    # THEN after the grace period nothing of its process group lives, the wrapper being gone
    deadline = time.monotonic() + 10
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(child)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (root only). In CI, as root, this runs: it never skips there."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the disk-full test needs root to mount a tmpfs")
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)], check=True
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_fails_the_task_that_filled_it_and_recovery_needs_no_restart(
    small_disk: Path,
) -> None:
    rt = LocalRuntime(small_disk / "home")
    try:
        # GIVEN a home on a small disk, most of it taken by a ballast file
        ballast = small_disk / "ballast"
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        ballast.write_bytes(b"\0" * (free - (512 << 10)))
        # WHEN a task writes more to its log than is left
        run_id = start(
            rt, "name: filler\ntasks:\n  t: {type: shell, command: 'head -c 8M /dev/zero'}\n"
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not rt.store.get_run(run_id).state.terminal:
            try:
                rt.run_once(0.2)
            except Exception:  # the disk is full: that turn failed; its reports are kept
                break
        # THEN once space returns, with the same runtime, the task is failed with the reason
        ballast.unlink()
        assert finish(rt, run_id, timeout=30) is RunState.FAILED
        (attempt,) = rt.store.list_attempts(run_id, "t")
        assert attempt.state == "failed"
        assert "no space left on device" in (attempt.error or "")
        # and the next run works
        ok = start(rt, "name: after\ntasks:\n  t: {type: shell, command: 'echo fine'}\n")
        assert finish(rt, ok) is RunState.SUCCEEDED
    finally:
        rt.close()


def test_the_admin_token_is_shown_once_kept_nowhere_and_can_be_reset(tmp_path: Path) -> None:
    import httpx
    from click.testing import CliRunner

    from stratoflow.cli import main
    from tests.e2e.server_process import ServerProcess

    server = ServerProcess(tmp_path / "home")
    server.start()
    try:
        first = server.token  # printed on its first start
        home_files = b"".join(p.read_bytes() for p in server.home.rglob("*") if p.is_file())
        assert first.encode() not in home_files  # only its hash is stored
        assert not (server.home / "admin-token").exists()
        # WHEN the local owner resets it, by direct access to the home
        result = CliRunner().invoke(main, ["admin", "token", "--reset", "--home", str(server.home)])
        assert result.exit_code == 0, result.output
        new = result.output.strip()
        # THEN the new one works as admin and the old one no longer does
        ok = httpx.get(f"{server.url}/me", headers={"Authorization": f"Bearer {new}"})
        assert ok.status_code == 200
        old = httpx.get(f"{server.url}/me", headers={"Authorization": f"Bearer {first}"})
        assert old.status_code == 401
    finally:
        server.stop()


def test_an_output_masked_for_a_secret_is_named_in_the_log_downstream_reads_it_masked(
    tmp_path: Path,
) -> None:
    """A project secret whose value is an ordinary word (``postgres``) masks it inside an
    unrelated output (``postgresql://...``): outputs never hold secrets, so the downstream task
    reads ``***ql://...``; that was silent (found by an exploratory tester), the producing
    attempt's log now names the outputs masked and why."""
    rt = LocalRuntime(tmp_path / "home")
    try:
        rt.secrets.put("default", "pgpw", "postgres")
        text = (
            "name: maskedout\ntasks:\n"
            "  make: {type: shell, command: 'echo dsn=postgresql://db/x >> \"$STRATOFLOW_OUTPUT\"'}\n"
            "  use: {type: shell, depends_on: [make], command: 'echo got {{ tasks.make.outputs.dsn }}'}\n"
        )
        run_id = start(rt, text)
        assert finish(rt, run_id) is RunState.SUCCEEDED
        assert rt.store.get_task(run_id, "make").outputs == {"dsn": "***ql://db/x"}
        made = rt.executor.log_path(run_id, "make", 1).read_text()
        assert "outputs 'dsn' held the value of a secret" in made
        assert "got ***ql://db/x" in rt.executor.log_path(run_id, "use", 1).read_text()
    finally:
        rt.close()


def test_a_secret_rotated_or_deleted_stays_masked_in_the_logs_of_tasks_given_it(
    tmp_path: Path,
) -> None:
    """The log view masks with the values a project's secrets have now; a task's log is
    masked in place with the values it was given once it ends (by the reaper, soon after),
    so a secret rotated or deleted since does not show its old value there."""
    rt = LocalRuntime(tmp_path / "home")
    try:
        rt.secrets.put("default", "pw", "old-value-of-pw-1234")
        rt.secrets.put("default", "gone", "old-value-of-gone-99")
        text = (
            "name: rotated\ntasks:\n"
            "  given:\n    type: shell\n"
            '    env: {PW: "{{ secrets.pw }}", GONE: "{{ secrets.gone }}"}\n'
            "    command: 'echo \"pw=$PW gone=$GONE\"'\n"
            "  plain: {type: shell, command: 'echo nothing secret here'}\n"
        )
        run_id = start(rt, text)
        assert finish(rt, run_id) is RunState.SUCCEEDED
        rt.secrets.put("default", "pw", "new-value-of-pw-5678")
        rt.secrets.delete("default", "gone")
        log = rt.executor.log_path(run_id, "given", 1)
        assert wait_for(lambda: "old-value" not in log.read_text(), timeout=10), log.read_text()
        stars = ("*" * len("old-value-of-pw-1234"), "*" * len("old-value-of-gone-99"))
        assert f"pw={stars[0]} gone={stars[1]}" in log.read_text()
        assert "nothing secret here" in rt.executor.log_path(run_id, "plain", 1).read_text()
    finally:
        rt.close()


def test_what_a_stopped_attempt_s_leftover_writes_after_its_end_is_masked_too(
    tmp_path: Path,
) -> None:
    """A stopped attempt's group lives on through its grace period: a process of it that
    ignores SIGTERM writes on. Its log was masked as the wrapper's end was reported, so
    what that process wrote after kept the value it was given, shown after a rotation. The
    log is masked once the group is gone."""
    rt = LocalRuntime(tmp_path / "home")
    try:
        rt.secrets.put("default", "pw", "old-value-of-pw-1234")
        text = (
            "name: leftover\ntasks:\n  t:\n    type: shell\n"
            '    env: {PW: "{{ secrets.pw }}"}\n'
            "    command: |\n"
            '      echo "pw=$PW"\n'
            '      (trap "" TERM; echo armed; sleep 1.5; echo "late $PW") &\n'
            "      sleep 30\n"
        )
        run_id = start(rt, text)
        log = rt.executor.log_path(run_id, "t", 1)
        # stopped once the leftover ignores TERM: a stop before its trap would end it
        assert wait_for(lambda: (rt.run_once(0.05), log.exists() and "armed" in log.read_text())[1])
        rt.scheduler.stop(run_id)
        rt.run_once(timeout=0)
        assert rt.store.get_run(run_id).state is RunState.STOPPED
        rt.secrets.put("default", "pw", "new-value-of-pw-5678")
        assert wait_for(lambda: "late" in log.read_text(), timeout=10), log.read_text()
        assert wait_for(lambda: "old-value" not in log.read_text(), timeout=10), log.read_text()
        assert f"late {'*' * len('old-value-of-pw-1234')}" in log.read_text()
    finally:
        rt.close()
