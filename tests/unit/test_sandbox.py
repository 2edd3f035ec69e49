"""The choice of task isolation, the environment allow-list and the uids per project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stratoflow.adapters.local import sandbox
from stratoflow.adapters.local.sandbox import IsolationError, choose_isolation


@pytest.mark.parametrize(
    ("requested", "euid", "abi", "reachable", "mode"),
    [
        ("auto", 0, 7, True, "user"),  # root: per-project uids
        ("auto", 0, 0, True, "user"),
        ("auto", 0, 7, False, "landlock"),  # root, but its Python sits under /root
        ("auto", 1000, 7, True, "landlock"),  # an ordinary user with Landlock
        ("auto", 1000, 0, True, "none"),  # neither
        ("auto", 0, 0, False, "none"),
        ("none", 0, 7, True, "none"),
        ("landlock", 0, 3, True, "landlock"),
        ("user", 0, 0, True, "user"),
    ],
)
def test_the_strongest_isolation_available_is_chosen(
    requested: str, euid: int, abi: int, reachable: bool, mode: str
) -> None:
    chosen = choose_isolation(requested, euid=euid, landlock_abi=abi, runtime_reachable=reachable)
    assert chosen.mode == mode
    assert chosen.reason


@pytest.mark.parametrize(
    ("requested", "euid", "abi", "reachable", "says"),
    [
        ("user", 1000, 7, True, "needs the server to run as root"),
        ("user", 0, 7, False, "not reachable by another uid"),
        ("landlock", 1000, 0, True, "does not offer Landlock"),
        ("chroot", 0, 7, True, "is not one of"),
    ],
)
def test_an_isolation_that_cannot_work_is_refused_not_downgraded(
    requested: str, euid: int, abi: int, reachable: bool, says: str
) -> None:
    with pytest.raises(IsolationError, match=says):
        choose_isolation(requested, euid=euid, landlock_abi=abi, runtime_reachable=reachable)


def test_the_environment_is_an_allow_list() -> None:
    server = {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_TIME": "C", "TZ": "UTC", "HOME": "/root",
        "AWS_SECRET_ACCESS_KEY": "x", "AWS_ACCESS_KEY_ID": "y", "STRATOFLOW_TOKEN": "t",
        "STRATOFLOW_SECRET_DB": "s", "PGPASSWORD": "p", "HTTP_PROXY": "http://proxy",
        "STRATOFLOW_DB": "postgresql://sf:db-password@db/sf",  # `server`'s read model
    }  # fmt: skip
    allowed = sandbox.allowed_env_names("HTTP_PROXY, ")
    env = sandbox.task_environment(
        server, allowed, work_dir=Path("/w/1"), task_env={"MINE": "1"},
        stratoflow={"STRATOFLOW_RUN_ID": "r"},
    )  # fmt: skip
    assert env == {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_TIME": "C", "TZ": "UTC",
        "HTTP_PROXY": "http://proxy", "HOME": "/w/1", "TMPDIR": "/w/1", "MINE": "1",
        "STRATOFLOW_RUN_ID": "r",
    }  # fmt: skip


@pytest.mark.parametrize(
    "name", ["AWS_SECRET_ACCESS_KEY", "STRATOFLOW_TOKEN", "STRATOFLOW_DB", "1BAD", "A-B"]
)
def test_the_server_credentials_cannot_be_allowed(name: str) -> None:
    with pytest.raises(IsolationError, match="STRATOFLOW_TASK_ENV_ALLOW"):
        sandbox.allowed_env_names(f"PATH,{name}")


def test_each_project_keeps_its_uid_across_restarts(tmp_path: Path) -> None:
    uids = sandbox.ProjectUids(tmp_path / "task-uids", base=5000)
    assert [uids.uid("a"), uids.uid("b"), uids.uid("a")] == [5000, 5001, 5000]
    again = sandbox.ProjectUids(tmp_path / "task-uids", base=5000)
    assert [again.uid("b"), again.uid("c")] == [5001, 5002]
    assert (tmp_path / "task-uids").stat().st_mode & 0o777 == 0o600
    with pytest.raises(IsolationError, match="out of range"):
        sandbox.ProjectUids(tmp_path / "x", base=0)


def test_landlock_allows_all_of_a_directory_but_the_home(tmp_path: Path) -> None:
    project = tmp_path / "repo"
    (project / ".stratoflow").mkdir(parents=True)
    (project / "src").mkdir()
    (project / "setup.py").write_text("")
    paths = sandbox.readable_paths([project, "/usr", tmp_path / "missing"], project / ".stratoflow")
    assert sorted(paths) == sorted([project / "src", project / "setup.py", Path("/usr").resolve()])


def _secret_and_work(tmp_path: Path) -> tuple[Path, Path]:
    """A file in a "home" a task must not read, and a work dir it may write."""
    secret = tmp_path / "home" / "secret"
    secret.parent.mkdir()
    secret.write_text("s")
    work = tmp_path / "work"
    work.mkdir()
    return secret, work


@pytest.mark.skipif(sandbox.landlock_abi() < 1, reason="this kernel has no Landlock")
def test_a_landlocked_process_reads_the_allowed_and_nothing_else(tmp_path: Path) -> None:
    secret, work = _secret_and_work(tmp_path)
    ruleset = sandbox.Landlock(
        sandbox.landlock_abi(),
        sandbox.readable_paths([*sandbox.SYSTEM_READ_PATHS, sys.prefix, sys.base_prefix], secret),
        [],
    ).ruleset(work, work / "log")
    code = (
        f"import pathlib; pathlib.Path({str(work / 'ok')!r}).write_text('w')\n"
        f"try: open({str(secret)!r}).read(); print('READ')\nexcept PermissionError: print('denied')"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            preexec_fn=lambda: sandbox.restrict_self(ruleset),
        )  # fmt: skip
    finally:
        import os

        os.close(ruleset)
    assert out.stdout.strip() == "denied"
    assert (work / "ok").read_text() == "w"


@pytest.mark.skipif(sandbox.landlock_abi() < 1, reason="this kernel has no Landlock")
def test_a_task_started_in_a_confined_thread_is_confined_and_the_scheduler_is_not(
    tmp_path: Path,
) -> None:
    import functools
    import os

    from stratoflow.adapters.local.executor import _confined

    secret, work = _secret_and_work(tmp_path)
    landlock = sandbox.Landlock(
        sandbox.landlock_abi(),
        sandbox.readable_paths(["/usr", "/bin", "/lib", "/lib64", "/etc"], secret),
        [],
    )
    ruleset = landlock.ruleset(work, work / "log")
    popen = functools.partial(subprocess.Popen, stdout=subprocess.PIPE, text=True)
    try:
        # the same ruleset's shared rules serve a second attempt
        proc = _confined(
            popen, ["bash", "-c", f"cat {secret} || echo denied"], ruleset, os.geteuid() == 0
        )
        out, _ = proc.communicate()
    finally:
        os.close(ruleset)
        landlock.close()
    assert out.strip() == "denied"
    assert secret.read_text() == "s"  # this process (and its threads) still reads it
    with open(secret, "a") as fh:  # and writes it
        fh.write("t")


def _caps(status: str) -> dict[str, str]:
    return {
        line.split(":")[0]: line.split()[1]
        for line in status.splitlines()
        if line.startswith("Cap")
    }


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
@pytest.mark.skipif(sandbox.landlock_abi() < 1, reason="this kernel has no Landlock")
def test_a_confined_task_has_no_capability_whether_its_starter_emptied_its_bounding_set_or_not(
    tmp_path: Path,
) -> None:
    """The executor's start threads empty their bounding set once (``_spawn_thread``), and the
    confining threads they create skip the drops; a confining thread made elsewhere (a lone
    start on the loop thread) drops them itself. Either way the task has none, in any set;
    the scheduler's other threads keep theirs."""
    import functools
    import threading

    from stratoflow.adapters.local.executor import _confined, _spawn_thread

    _, work = _secret_and_work(tmp_path)
    landlock = sandbox.Landlock(
        sandbox.landlock_abi(),
        sandbox.readable_paths(["/usr", "/bin", "/lib", "/lib64", "/proc"], work),
        [],
    )
    popen = functools.partial(subprocess.Popen, stdout=subprocess.PIPE, text=True)
    got: dict[str, str] = {}

    def start(label: str, empty_first: bool) -> None:
        if empty_first:
            _spawn_thread()
        got[f"{label} starter"] = str(sandbox.bounding_set_empty())
        ruleset = landlock.ruleset(work, work / "log")
        try:
            proc = _confined(popen, ["cat", "/proc/self/status"], ruleset, True)
            got[label] = proc.communicate()[0]
        finally:
            os.close(ruleset)

    try:
        for label, empty_first in (("start thread", True), ("other thread", False)):
            thread = threading.Thread(target=start, args=(label, empty_first))
            thread.start()
            thread.join()
    finally:
        landlock.close()
    assert got["start thread starter"] == "True"
    assert got["other thread starter"] == "False"
    for label in ("start thread", "other thread"):
        caps = _caps(got[label])
        assert set(caps) >= {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}
        assert set(caps.values()) == {"0000000000000000"}, (label, caps)
    assert _caps(Path("/proc/thread-self/status").read_text())["CapBnd"] != "0000000000000000"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_a_task_started_through_setpriv_has_the_projects_uid_and_no_groups() -> None:
    import shutil

    from stratoflow.adapters.local.executor import _as_user

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("no setpriv here")
    out = subprocess.run(
        [*_as_user(setpriv, 70123), "bash", "-c", "id -u; id -g; id -G; grep CapEff /proc/self/status"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    assert out[:3] == ["70123", "70123", "70123"]
    assert out[3].split()[1] == "0000000000000000"


@pytest.mark.skipif(sandbox.landlock_abi() < 1, reason="this kernel has no Landlock")
def test_a_landlocked_task_imports_from_a_directory_that_holds_the_home(tmp_path: Path) -> None:
    """``make run``: the server's cwd (the repository) holds the home (.stratoflow). Its
    entries are readable but it is not, so Python cannot list it and imports nothing from
    it; through the mirror of links the task imports the project's modules, and the home
    stays out of reach."""
    project = tmp_path / "repo"
    home = project / ".stratoflow"
    home.mkdir(parents=True)
    (home / "secret").write_text("s")
    (project / "mylib").mkdir()
    (project / "mylib" / "__init__.py").write_text("ANSWER = 42\n")
    work = tmp_path / "work"
    work.mkdir()
    tree = sandbox.import_tree(project, home, tmp_path / "imports")
    mirror = tree.mirror
    assert sorted(p.name for p in mirror.iterdir()) == ["mylib"]
    read = [*sandbox.SYSTEM_READ_PATHS, sys.prefix, sys.base_prefix, project, mirror]
    code = (
        "import mylib; print(mylib.ANSWER)\n"
        f"try: open({str(home / 'secret')!r}).read(); print('READ')\n"
        "except PermissionError: print('denied')"
    )

    def run(pythonpath: Path) -> str:
        ruleset = sandbox.Landlock(
            sandbox.landlock_abi(), sandbox.readable_paths(read, home), []
        ).ruleset(work, work / "log")
        try:
            return subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, cwd=work,
                env={**os.environ, "PYTHONPATH": str(pythonpath)},
                preexec_fn=lambda: sandbox.restrict_self(ruleset),
            ).stdout.strip()  # fmt: skip
        finally:
            os.close(ruleset)

    assert run(project) == ""  # the directory itself: "No module named 'mylib'"
    assert run(mirror).splitlines() == ["42", "denied"]
