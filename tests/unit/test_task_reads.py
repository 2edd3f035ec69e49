"""What a Landlock-confined task may read of the server's working directory (its Python files,
to import the project's callables, and nothing else), and where the server refuses to keep
its state (nowhere every task may write)."""

from __future__ import annotations

import errno
import os
import queue
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.local import executor, sandbox
from stratoflow.adapters.local.executor import LocalExecutor
from stratoflow.engine import AttemptStatus, RenderedTask
from stratoflow.ports import AttemptSpec

landlock = pytest.mark.skipif(sandbox.landlock_abi() < 1, reason="this kernel has no Landlock")

# what must stay out of a task's reach: name -> path under the server's cwd
SECRETS = {
    "log": "server.log",  # the first admin token is printed there
    "env": ".env",
    "hidden": ".aws/credentials",
    "pkg_env": "mypkg/.env",  # a secrets file inside a package
    "pkg_data": "mypkg/data.json",
    "notes": "notes/todo.txt",  # a directory with no Python in it
    "home": "home/stratoflow.db",
    "linked": "linked/secret.txt",
}

READER = """
import os
for name, path in {paths!r}.items():
    try:
        with open(path) as f:
            f.read()
        outputs[name] = "READ"
    except PermissionError:
        outputs[name] = "denied"
try:
    os.listdir({cwd!r})
    outputs["listed"] = "READ"
except PermissionError:
    outputs["listed"] = "denied"
"""


def _project(cwd: Path) -> None:
    """The server's cwd as in the report: the home in it, a log with a token, secrets beside a
    package, a top-level module, a namespace package."""
    for name, rel in SECRETS.items():
        if name == "linked":
            continue  # through the link, below
        (cwd / rel).parent.mkdir(parents=True, exist_ok=True)
        (cwd / rel).write_text(f"sft_{name}")
    (cwd / "mypkg" / "__init__.py").write_text("")
    (cwd / "mypkg" / "mod.py").write_text("def fn():\n    return {'from': 'mypkg'}\n")
    (cwd / "reports.py").write_text("def daily():\n    return {'from': 'reports'}\n")
    (cwd / "nspkg" / "sub").mkdir(parents=True)
    (cwd / "nspkg" / "sub" / "part.py").write_text("def fn():\n    return {'from': 'nspkg'}\n")
    # a package linked in from elsewhere (a checkout beside), and a link back up (no loop)
    linked = cwd.parent / "src" / "linked"
    linked.mkdir(parents=True)
    (linked / "__init__.py").write_text("def fn():\n    return {'from': 'linked'}\n")
    (linked / "secret.txt").write_text("sft_linked")
    (cwd / "linked").symlink_to(linked)
    (cwd / "nspkg" / "up").symlink_to(cwd)


def _no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """As where the mirror is on another file system than the cwd."""

    def refuse(*_: Any, **__: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)


@pytest.fixture(params=["hard links", "symbolic links"])
def confined(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Runs one python task (fields) under a Landlock executor started from the cwd, its
    mirror made of hard links (the cwd and the work root on one file system) or, where
    those cannot be made, of symbolic links (each file then a rule of its own)."""
    cwd = tmp_path / "explore"
    cwd.mkdir()
    _project(cwd)
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    done: queue.SimpleQueue[Any] = queue.SimpleQueue()
    with monkeypatch.context() as links:
        if request.param == "symbolic links":
            _no_hard_links(links)
        ex = LocalExecutor(
            cwd / "home" / "attempts",
            lambda run, task, attempt, result, log: done.put((result, log)),
            isolation="landlock",
            work_root=tmp_path / "work",
            protect=cwd / "home",
        )
    assert ex._landlock is not None
    # a second domain only for the files reached by symbolic links
    assert (ex._landlock.narrowing is None) == (request.param == "hard links")
    count = iter(range(1, 100))

    def run(fields: dict[str, Any], ok: bool = True) -> Any:
        task = RenderedTask("python", fields, {}, {})
        ex.dispatch(
            AttemptSpec(
                "p.wf.1", f"t{next(count)}", 1, task, datetime(2026, 1, 1, tzinfo=UTC), "wf", "p"
            )
        )
        result, log = done.get(timeout=60)
        assert result.status == (AttemptStatus.SUCCEEDED if ok else AttemptStatus.FAILED), (
            result,
            Path(log).read_text(),
        )
        return result.outputs if ok else Path(log).read_text()

    yield run, cwd
    ex.close()


@landlock
def test_a_task_reads_nothing_of_the_servers_cwd_but_its_python_files(
    confined: Any, request: pytest.FixtureRequest
) -> None:
    """The Python files through the mirror on PYTHONPATH; at their own path only where the
    mirror links them symbolically (each then a rule of its own)."""
    run, cwd = confined
    paths = {name: str(cwd / rel) for name, rel in SECRETS.items()}
    paths["source"] = str(cwd / "mypkg" / "mod.py")
    code = READER.format(paths=paths, cwd=str(cwd)) + (
        "mirror = os.environ['PYTHONPATH'].split(os.pathsep)[0]\n"
        "outputs['mirrored'] = open(mirror + '/mypkg/mod.py').read()[:7]\n"
    )
    outputs = run({"code": code})
    assert outputs.pop("mirrored") == "def fn("
    hard = request.node.callspec.params["confined"] == "hard links"
    assert outputs.pop("source") == ("denied" if hard else "READ")
    assert outputs == dict.fromkeys([*SECRETS, "listed"], "denied")


@landlock
def test_a_task_still_imports_a_package_a_module_and_a_namespace_package_of_the_cwd(
    confined: Any,
) -> None:
    run, _ = confined
    assert run({"callable": "mypkg.mod:fn"}) == {"from": "mypkg"}
    assert run({"callable": "reports:daily"}) == {"from": "reports"}
    assert run({"callable": "nspkg.sub.part:fn"}) == {"from": "nspkg"}
    assert run({"callable": "linked:fn"}) == {"from": "linked"}


@landlock
def test_a_module_replaced_while_the_server_runs_is_imported_in_its_new_version(
    confined: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An editor's save or a ``git checkout`` puts a new file in place of the old: tasks
    started after it import the new one (never the version the server started with). Only
    through hard links: a file reached by a symbolic link is readable by its own rule, which
    the new file has not (it is importable after a restart, as the README says)."""
    run, cwd = confined
    monkeypatch.setattr(executor, "IMPORTS_CHECK_SECONDS", 0.0)
    assert run({"callable": "mypkg.mod:fn"}) == {"from": "mypkg"}
    (cwd / "mypkg" / "mod.py").write_text("def fn():\n    return {'from': 'edited'}\n")
    assert run({"callable": "mypkg.mod:fn"}) == {"from": "edited"}  # in place: one file
    _replace(cwd / "mypkg" / "mod.py", "def fn():\n    return {'from': 'replaced'}\n")
    if request.node.callspec.params["confined"] == "hard links":
        assert run({"callable": "mypkg.mod:fn"}) == {"from": "replaced"}
    else:  # the new file has no rule of its own
        assert "PermissionError" in run({"callable": "mypkg.mod:fn"}, ok=False)


def _explore(tmp_path: Path) -> Path:
    cwd = tmp_path / "explore"
    cwd.mkdir()
    _project(cwd)
    (cwd / "mypkg" / "__pycache__").mkdir()
    (cwd / "mypkg" / "__pycache__" / "mod.cpython-312.pyc").write_bytes(b"")
    (cwd / "trap.py").symlink_to(cwd / "server.log")  # a .py name leading to another file
    (cwd / ".venv" / "lib").mkdir(parents=True)
    (cwd / ".venv" / "lib" / "site.py").write_text("")
    (cwd / "venv" / "lib").mkdir(parents=True)  # a virtualenv tasks may read anyway
    (cwd / "venv" / "lib" / "six.py").write_text("")
    return cwd


MIRRORED = {  # in the mirror -> the file it stands for, under tmp_path
    "linked/__init__.py": "src/linked/__init__.py",
    "mypkg/__init__.py": "explore/mypkg/__init__.py",
    "mypkg/__pycache__/mod.cpython-312.pyc": "explore/mypkg/__pycache__/mod.cpython-312.pyc",
    "mypkg/mod.py": "explore/mypkg/mod.py",
    "nspkg/sub/part.py": "explore/nspkg/sub/part.py",
    "reports.py": "explore/reports.py",
}


def _mirrored(tree: sandbox.ImportTree) -> list[str]:
    return sorted(str(p.relative_to(tree.mirror)) for p in tree.mirror.rglob("*"))


def test_the_mirror_hard_links_python_files_only(tmp_path: Path) -> None:
    cwd = _explore(tmp_path)
    tree = sandbox.import_tree(cwd, cwd / "home", tmp_path / "imports", [cwd / "venv"])
    assert (tree.mirror / "venv").resolve() == cwd / "venv"  # linked whole, not walked
    assert _mirrored(tree) == [
        "linked", "linked/__init__.py",
        "mypkg", "mypkg/__init__.py", "mypkg/__pycache__",
        "mypkg/__pycache__/mod.cpython-312.pyc", "mypkg/mod.py",
        "nspkg", "nspkg/sub", "nspkg/sub/part.py", "reports.py", "venv",
    ]  # fmt: skip
    for link, real in MIRRORED.items():  # the files themselves: the mirror's rule covers them
        assert not (tree.mirror / link).is_symlink()
        assert (tree.mirror / link).samefile(tmp_path / real)
    assert tree.symlinked == []
    assert tree.hard_links == len(MIRRORED)
    # by the mirror's path no other user reaches a file of a directory they cannot enter
    assert tree.mirror.stat().st_mode & 0o777 == 0o700


def test_a_cwd_of_many_directories_is_linked_whole_and_leaves_no_descriptor_open(
    tmp_path: Path,
) -> None:
    """The build keeps a directory open while it links its files, one at a time: every
    directory's files are hard-linked, and none stays open."""
    cwd = tmp_path / "many"
    dirs = [cwd / f"pkg{i:03d}" / "sub" for i in range(84)]
    for d in dirs:
        d.mkdir(parents=True)
        (d / "mod.py").write_text("")
        (d.parent / "__init__.py").write_text("")
    fds = set(os.listdir("/proc/self/fd"))
    tree = sandbox.import_tree(cwd, tmp_path / "home", tmp_path / "imports")
    assert set(os.listdir("/proc/self/fd")) <= fds
    assert tree.symlinked == []
    assert tree.hard_links == 2 * len(dirs)
    for d in dirs:
        assert (tree.mirror / d.relative_to(cwd) / "mod.py").samefile(d / "mod.py")


def test_a_package_replaced_during_the_build_is_linked_from_where_it_is_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package made anew while the server starts (a build tool's ``mv pkg.new pkg``, the
    old one moved out of the cwd) between the links of its own files and those of its
    subpackage, a level later: the subpackage's files are linked from the cwd as it is now,
    never from the old directory outside it, which the mirror would otherwise keep (the
    subpackage's directory, looked up by its path, is the new one: a refresh sees nothing
    to link anew)."""
    cwd = tmp_path / "cwd"
    (cwd / "pkg" / "sub").mkdir(parents=True)
    (cwd / "pkg" / "__init__.py").write_text("")
    (cwd / "pkg" / "sub" / "mod.py").write_text("OLD = 1\n")
    moved = tmp_path / "outside" / "pkg"
    moved.parent.mkdir()
    add = sandbox.ImportTree.add

    def replacing(tree: sandbox.ImportTree, link: Path, real: str, *rest: Any) -> None:
        if real.endswith("/sub/mod.py") and not moved.exists():
            made = tmp_path / "pkg.new"  # made a while ago, put in place now
            (made / "sub").mkdir(parents=True)
            (made / "__init__.py").write_text("")
            (made / "sub" / "mod.py").write_text("NEW = 2\n")
            for directory in (made / "sub", made):
                os.utime(directory, (time.time() - 60,) * 2)
            os.rename(cwd / "pkg", moved)
            os.rename(made, cwd / "pkg")
        add(tree, link, real, *rest)

    monkeypatch.setattr(sandbox.ImportTree, "add", replacing)
    tree = sandbox.import_tree(cwd, tmp_path / "home", tmp_path / "imports")
    assert moved.exists()
    mirrored = tree.mirror / "pkg" / "sub" / "mod.py"
    assert not mirrored.samefile(moved / "sub" / "mod.py")
    assert mirrored.samefile(cwd / "pkg" / "sub" / "mod.py")
    tree.refresh()  # the package's own file, linked before it was replaced: linked anew
    assert (tree.mirror / "pkg" / "__init__.py").samefile(cwd / "pkg" / "__init__.py")
    assert mirrored.samefile(cwd / "pkg" / "sub" / "mod.py")
    assert mirrored.read_text() == "NEW = 2\n"


def test_a_directory_too_big_for_the_walk_is_left_out_and_the_server_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cwd = tmp_path / "cwd"
    for package, files in (("a_data", 40), ("pkg", 5)):
        (cwd / package).mkdir(parents=True)
        for i in range(files):
            (cwd / package / f"m{i:02d}.py").write_text("")
    (cwd / "z_mod.py").write_text("")
    # within the limit: every Python file, no warning
    monkeypatch.setattr(sandbox, "IMPORT_WALK_LIMIT", 48)  # 3 entries, then 40 and 5
    with caplog.at_level("WARNING", logger=sandbox.__name__):
        whole = sandbox.import_tree(cwd, tmp_path / "home", tmp_path / "imports")
    assert whole.hard_links == 46
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    # less: the directory that does not fit what is left is not walked, the walk goes on
    # with the others, and the cwd's own modules are linked whatever their names (level by
    # level, not depth first)
    monkeypatch.setattr(sandbox, "IMPORT_WALK_LIMIT", 30)
    with caplog.at_level("WARNING", logger=sandbox.__name__):
        cut = sandbox.import_tree(cwd, tmp_path / "home", tmp_path / "imports")
    assert [m for m in _mirrored(cut) if m.endswith(".py")] == [
        *(f"pkg/m{i:02d}.py" for i in range(5)),
        "z_mod.py",
    ]
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert str(cwd) in warning
    assert f"left out 1 directory, the first {cwd / 'a_data'}" in warning
    assert "6 files linked" in warning


def test_where_no_hard_link_can_be_made_the_mirror_links_symbolically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = _explore(tmp_path)
    _no_hard_links(monkeypatch)
    tree = sandbox.import_tree(cwd, cwd / "home", tmp_path / "imports", [cwd / "venv"])
    for link, real in MIRRORED.items():
        assert (tree.mirror / link).is_symlink()
        assert (tree.mirror / link).resolve() == tmp_path / real
    # each such file is readable only by a rule of its own
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tree.symlinked) == sorted(
        MIRRORED.values()
    )
    assert tree.hard_links == 0


def _replace(path: Path, text: str) -> None:
    """As an editor or git does: a new file renamed over the old one."""
    new = path.with_name(path.name + ".tmp")
    new.write_text(text)
    os.replace(new, path)


def test_a_refresh_links_a_replaced_file_anew_and_drops_one_gone(tmp_path: Path) -> None:
    cwd = _explore(tmp_path)
    tree = sandbox.import_tree(cwd, cwd / "home", tmp_path / "imports", [cwd / "venv"])
    assert tree.refresh() == 0  # nothing changed: nothing done
    (cwd / "mypkg" / "__init__.py").write_text("edited = 1\n")  # in place: seen at once
    assert (tree.mirror / "mypkg" / "__init__.py").read_text() == "edited = 1\n"
    assert tree.refresh() == 0
    _replace(cwd / "mypkg" / "mod.py", "NEW = 2\n")
    (cwd / "reports.py").unlink()
    (cwd / "nspkg" / "sub" / "part.py").unlink()
    (cwd / "nspkg" / "sub" / "part.py").symlink_to(cwd / "server.log")  # not a file now
    assert (tree.mirror / "mypkg" / "mod.py").read_text() != "NEW = 2\n"  # stale until...
    assert tree.refresh() == 3
    assert (tree.mirror / "mypkg" / "mod.py").read_text() == "NEW = 2\n"
    assert (tree.mirror / "mypkg" / "mod.py").samefile(cwd / "mypkg" / "mod.py")
    assert not (tree.mirror / "reports.py").exists()
    assert not os.path.lexists(tree.mirror / "nspkg" / "sub" / "part.py")  # never the log
    assert tree.refresh() == 0
    assert tree.hard_links == len(MIRRORED) - 2
    assert not list(tree.mirror.rglob("*.new"))  # no leftover of the relinking


def test_a_directory_swapped_for_a_link_gets_no_other_file_into_the_mirror(
    tmp_path: Path,
) -> None:
    """Whoever can write the cwd (a task granted it, a co-user of a shared checkout) puts a
    link to a directory of secrets where a package was: the refresh, done by the server
    outside any sandbox, must not follow it to a file of the same name there."""
    cwd = _explore(tmp_path)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "mod.py").write_text("PASSWORD = 'hunter2'\n")
    tree = sandbox.import_tree(cwd, cwd / "home", tmp_path / "imports", [cwd / "venv"])
    os.rename(cwd / "mypkg", cwd / "mypkg_old")
    (cwd / "mypkg").symlink_to(secrets)
    tree.refresh()
    assert not os.path.lexists(tree.mirror / "mypkg" / "mod.py")
    assert "hunter2" not in "".join(p.read_text() for p in tree.mirror.rglob("*.py") if p.is_file())


def test_a_file_gone_for_a_moment_is_linked_again_when_it_is_back(tmp_path: Path) -> None:
    """``git checkout`` of another branch and back: the file is removed, then made anew."""
    cwd = _explore(tmp_path)
    tree = sandbox.import_tree(cwd, cwd / "home", tmp_path / "imports", [cwd / "venv"])
    (cwd / "reports.py").unlink()
    assert tree.refresh() == 1
    assert not (tree.mirror / "reports.py").exists()
    (cwd / "reports.py").write_text("BACK = 1\n")
    assert tree.refresh() == 1
    assert (tree.mirror / "reports.py").read_text() == "BACK = 1\n"
    assert tree.hard_links == len(MIRRORED)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")
def test_a_root_server_hard_links_no_file_its_confined_tasks_could_not_reach(
    tmp_path: Path,
) -> None:
    """A root server's tasks run as root without capabilities: another user's file, or a
    file under another user's 0700 directory, is linked symbolically (so reading it takes
    what reading it at its own path takes), never hard-linked past those permissions."""
    cwd = _explore(tmp_path)
    for path in (tmp_path, cwd):  # pytest's directories: root's, 0700
        path.chmod(0o755)
    (cwd / "bob").mkdir(mode=0o700)
    (cwd / "bob" / "tool.py").write_text("BOB = 'private'\n")
    os.chown(cwd / "bob", 65534, 65534)
    os.chown(cwd / "bob" / "tool.py", 65534, 65534)
    (cwd / "theirs.py").write_text("THEIRS = 1\n")
    os.chown(cwd / "theirs.py", 65534, 65534)
    tree = sandbox.import_tree(cwd, cwd / "home", tmp_path / "imports", [cwd / "venv"])
    assert (tree.mirror / "bob" / "tool.py").is_symlink()
    assert (tree.mirror / "theirs.py").is_symlink()
    assert sorted(p.name for p in tree.symlinked) == ["theirs.py", "tool.py"]
    assert not (tree.mirror / "reports.py").is_symlink()  # root's own: hard-linked


@pytest.mark.parametrize("where", ["home", "work root"])
def test_a_home_or_work_root_every_task_may_write_is_refused(
    tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under Landlock every task may write /dev/shm (and STRATOFLOW_TASK_WRITE_PATHS): the
    database and tokens of a home there, or the other tasks' work dirs, would be theirs."""
    shared = tmp_path / "shared"  # stands for /dev/shm: a grant every task has
    monkeypatch.setenv("STRATOFLOW_TASK_WRITE_PATHS", str(shared))
    monkeypatch.setattr(sandbox, "landlock_abi", lambda: 6)
    home = (shared if where == "home" else tmp_path) / "home"
    work = (shared if where == "work root" else tmp_path) / "work"
    with pytest.raises(sandbox.IsolationError) as raised:
        LocalExecutor(
            home / "attempts", lambda *_: None, isolation="landlock", work_root=work, protect=home
        )
    place = home if where == "home" else work
    assert f"the {where} {place}" in str(raised.value)
    assert f"under {shared}, which every task may write" in str(raised.value)
    assert not home.exists()  # refused before anything was made
    assert not work.exists()


def test_dev_shm_is_refused_for_the_home_and_named_as_shared() -> None:
    with pytest.raises(sandbox.IsolationError, match="shared by all tasks of all projects"):
        sandbox.refuse_under_writable({"the home": Path("/dev/shm/sf/home")}, [])
    sandbox.refuse_under_writable({"the home": Path("/var/tmp/sf/home")}, [])  # elsewhere: fine


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm")
def test_a_server_refuses_a_home_under_dev_shm_under_landlock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="sf-shm-test-", dir="/dev/shm"))
    try:
        out = subprocess.run(
            [sys.executable, "-m", "stratoflow", "server", "--home", str(base / "home"),
             "--port", "0"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={**os.environ, "STRATOFLOW_TASK_ISOLATION": "landlock",
                 "STRATOFLOW_WORK_ROOT": str(tmp_path / "work")},
        )  # fmt: skip
        made = (base / "home").exists()
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(
        f"error: the home {base / 'home'} is under /dev/shm, which every task may write"
    )
    assert "Traceback" not in out.stderr
    assert not made  # refused before it was made


@landlock
def test_a_task_reads_no_other_work_dir_when_the_cwd_holds_the_work_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cd /tmp && stratoflow server``: the default work root is in the cwd. The cwd is
    granted less the home and the work root, whose attempts' work dirs stay each its own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    home = tmp_path / "home"
    done: queue.SimpleQueue[Any] = queue.SimpleQueue()
    ex = LocalExecutor(
        home / "attempts",
        lambda run, task, attempt, result, log: done.put((result, log)),
        isolation="landlock",
        work_root=tmp_path / "work",
        protect=home,
    )
    try:
        other = tmp_path / "work" / "q.wf.1.t.1"  # another project's attempt
        other.mkdir()
        (other / "out").write_text("theirs")
        code = READER.format(paths={"other": str(other / "out")}, cwd=str(other))
        task = RenderedTask("python", {"code": code}, {}, {})
        ex.dispatch(
            AttemptSpec("p.wf.1", "t", 1, task, datetime(2026, 1, 1, tzinfo=UTC), "wf", "p")
        )
        result, log = done.get(timeout=60)
        assert result.status == AttemptStatus.SUCCEEDED, Path(log).read_text()
        assert result.outputs == {"other": "denied", "listed": "denied"}
    finally:
        ex.close()


def test_no_mirror_of_the_whole_machine_when_the_cwd_is_the_root(tmp_path: Path) -> None:
    """A service started without a working directory runs in /: its Python files are every
    user's (settings.py with passwords), none of them the project's."""
    tree = sandbox.import_tree(Path("/"), tmp_path / "home", tmp_path / "imports")
    assert tree.symlinked == []
    assert tree.hard_links == 0
    assert list(tree.mirror.iterdir()) == []


def test_the_mirror_is_checked_less_often_the_longer_a_check_takes(tmp_path: Path) -> None:
    """A directory of thousands of files: its checks take at most ~2% of a core."""
    ex = LocalExecutor(tmp_path / "home" / "logs", lambda *_: None, isolation="none")
    checks: list[float] = []

    class Tree:  # stands for a mirror of many files: each check takes 20 ms
        hard_links = 1

        def refresh(self) -> int:
            checks.append(time.monotonic())
            time.sleep(0.02)
            return 0

    try:
        ex._imports = Tree()  # type: ignore[assignment]
        ex._imports_checked = time.monotonic() - executor.IMPORTS_CHECK_SECONDS
        ex.dispatch_many([])
        assert len(checks) == 1
        every = max(executor.IMPORTS_CHECK_SECONDS, 50 * ex._imports_cost)
        assert every >= 1.0  # 50 x 20 ms
        ex._imports_checked = time.monotonic() - 0.9 * every
        ex.dispatch_many([])
        assert len(checks) == 1  # not yet
        ex._imports_checked = time.monotonic() - 1.1 * every
        ex.dispatch_many([])
        assert len(checks) == 2
    finally:
        ex._imports = None
        ex.close()
