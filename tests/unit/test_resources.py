"""Resource files (issue 13, item 4): path rules, the local store (versions, privacy, crash
safety of a version, deletion that never reuses a number), pins, materialising into a work
dir, and the ``resources`` task field."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stratoflow.adapters.local.resources import LocalResources
from stratoflow.errors import InvalidInput, NotFound
from stratoflow.model import load_workflow, spec_from_document
from stratoflow.resources import (
    MAX_PATH_CHARS,
    MAX_RESOURCE_BYTES,
    ResourceUnavailable,
    check_path,
    check_prefix,
    materialize,
    reserved_name,
)


@pytest.mark.parametrize("path", ["a.sql", "sql/load.sql", "a/b/c/d/e/f/g/h", "x-1_2.tar.gz"])
def test_good_paths(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("", "non-empty"),
        ("/etc/passwd", "relative"),
        ("../x", "'..'"),
        ("a/../b", "'..'"),
        ("a/./b", "'.'"),
        ("a//b", "empty part"),
        ("a/", "empty part"),
        (".env", "starts with '.'"),
        ("a b", "characters outside"),
        ("a\\b", "characters outside"),
        ("é.sql", "characters outside"),
        ("a/b/c/d/e/f/g/h/i", "9 parts"),
        ("x" * (MAX_PATH_CHARS + 1), f"more than {MAX_PATH_CHARS}"),
    ],
)
def test_bad_paths_name_the_problem(path: str, says: str) -> None:
    with pytest.raises(InvalidInput) as err:
        check_path(path)
    assert str(err.value).startswith("path: ")
    assert says in str(err.value)


def test_prefixes() -> None:
    assert check_prefix("") == ""
    assert check_prefix("sql/") == "sql/"
    with pytest.raises(InvalidInput, match=r"prefix: .*'..'"):
        check_prefix("../")


def test_versions_are_kept_private_and_numbered(tmp_path: Path) -> None:
    store = LocalResources(tmp_path)
    v1 = store.put("p", "sql/a.sql", b"select 1")
    v2 = store.put("p", "sql/a.sql", b"select 2")
    store.put("p", "b.txt", b"b")
    assert (v1.version, v2.version) == ("1", "2")
    assert [v.version for v in store.versions("p", "sql/a.sql")] == ["2", "1"]
    assert store.get("p", "sql/a.sql")[1] == b"select 2"
    assert store.get("p", "sql/a.sql", "1")[1] == b"select 1"
    assert [(r.path, r.version) for r in store.files("p")] == [("b.txt", "1"), ("sql/a.sql", "2")]
    assert [r.path for r in store.files("p", "sql/")] == ["sql/a.sql"]
    assert store.files("other") == []
    for dirpath, _dirnames, filenames in os.walk(tmp_path / "resources"):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o700, dirpath
        for name in filenames:
            assert stat.S_IMODE(os.stat(Path(dirpath) / name).st_mode) == 0o600, name
    with pytest.raises(NotFound, match=r"no version '3'"):
        store.get("p", "sql/a.sql", "3")
    with pytest.raises(NotFound, match=r"'nope' not found in project 'p'"):
        store.versions("p", "nope")


def test_a_version_half_written_does_not_exist(tmp_path: Path) -> None:
    store = LocalResources(tmp_path)
    store.put("p", "a", b"one")
    # a crash after the description of version 2 and before its bytes were renamed in
    directory = next((tmp_path / "resources" / "p").iterdir())
    (directory / "2.json").write_text(
        '{"size": 3, "sha256": "x", "created_at": "2026-01-01T00:00:00+00:00"}'
    )
    assert [v.version for v in store.versions("p", "a")] == ["1"]
    assert store.put("p", "a", b"two").version == "2"
    assert store.get("p", "a")[1] == b"two"


def test_delete_removes_every_version_and_numbers_are_never_reused(tmp_path: Path) -> None:
    store = LocalResources(tmp_path)
    store.put("p", "a", b"1")
    store.put("p", "a", b"2")
    store.delete("p", "a")
    assert store.files("p") == []
    with pytest.raises(NotFound):
        store.get("p", "a", "2")
    with pytest.raises(NotFound):
        store.delete("p", "a")
    assert store.put("p", "a", b"3").version == "3"


def test_bad_input_changes_nothing(tmp_path: Path) -> None:
    store = LocalResources(tmp_path)
    with pytest.raises(InvalidInput, match=f"at most {MAX_RESOURCE_BYTES:,} bytes"):
        store.put("p", "big", b"x" * (MAX_RESOURCE_BYTES + 1))
    with pytest.raises(InvalidInput, match=r"'..'"):
        store.put("p", "../escape", b"x")
    with pytest.raises(InvalidInput, match=r"project"):
        store.put("../p", "a", b"x")
    assert store.files("p") == []
    assert not (tmp_path / "escape").exists()


def test_pins_are_recorded_once_and_missing_files_are_named(tmp_path: Path) -> None:
    store = LocalResources(tmp_path)
    store.put("p", "a", b"1")
    with pytest.raises(
        InvalidInput, match=r"resources: resource 'b', 'c' not found in project 'p'"
    ):
        store.pin("run-1", "p", ["a", "b", "c"])
    assert store.pins("run-1") is None
    assert store.pin("run-1", "p", ["a"]) == {"a": "1"}
    store.put("p", "a", b"2")
    assert store.pin("run-1", "p", ["a"]) == {"a": "1"}  # a repeated trigger keeps its pins
    assert store.pins("run-1") == {"a": "1"}
    assert store.pin("run-2", "p", ["a"]) == {"a": "2"}


def test_materialize_writes_the_pinned_versions(tmp_path: Path) -> None:
    store = LocalResources(tmp_path / "home")
    store.put("p", "sql/a.sql", b"old")
    pins = store.pin("r", "p", ["sql/a.sql"])
    store.put("p", "sql/a.sql", b"new")
    work = tmp_path / "work"
    work.mkdir()
    materialize(work, pins, ["sql/a.sql"], lambda path, v: store.fetch("p", path, v))
    assert (work / "sql" / "a.sql").read_bytes() == b"old"
    assert stat.S_IMODE(os.stat(work / "sql" / "a.sql").st_mode) == 0o600
    with pytest.raises(ResourceUnavailable, match=r"'x' was not pinned"):
        materialize(work, pins, ["x"], lambda path, v: b"")
    store.delete("p", "sql/a.sql")
    with pytest.raises(ResourceUnavailable, match=r"version 1 .* is gone .* deleted"):
        store.fetch("p", "sql/a.sql", "1")


def test_materialize_never_follows_a_link(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "d").symlink_to(outside)
    with pytest.raises(ResourceUnavailable, match=r"not a directory"):
        materialize(work, {"d/f": "1"}, ["d/f"], lambda p, v: b"x")
    (work / "f").symlink_to(outside / "g")
    with pytest.raises(ResourceUnavailable, match=r"clashes"):
        materialize(work, {"f": "1"}, ["f"], lambda p, v: b"x")
    assert list(outside.iterdir()) == []


def test_a_file_named_like_the_tasks_own_is_reserved() -> None:
    assert reserved_name("load.1.out", "load", 1)
    assert not reserved_name("d/load.1.out", "load", 1)
    assert not reserved_name("load.sql", "load", 1)


def test_the_task_field() -> None:
    spec = load_workflow(
        "name: w\ntasks:\n  t: {type: shell, command: cat a.sql, resources: [a.sql, sql/b.sql]}\n"
    )
    assert spec.workflow.tasks["t"].resources == ["a.sql", "sql/b.sql"]
    for bad, says in [
        ("[../a]", "resource '../a': must not contain '..'"),
        ("[a, a]", "resource 'a' is listed twice"),
        ("[/a]", "must be relative"),
    ]:
        with pytest.raises(InvalidInput, match=r"tasks.t.resources") as err:
            load_workflow(f"name: w\ntasks:\n  t: {{type: shell, command: x, resources: {bad}}}\n")
        assert says in str(err.value)
    with pytest.raises(InvalidInput, match=r"a http task runs no process"):
        load_workflow('name: w\ntasks:\n  t: {type: http, url: "http://x", resources: [a]}\n')


def test_a_resource_inside_another_the_task_lists_is_refused_at_apply(tmp_path: Path) -> None:
    """``[a, a/b]`` cannot be placed ('a' a file and a directory): refused when applied,
    naming both, not at every start; a version stored before the check still loads."""
    work = tmp_path / "work"
    work.mkdir()
    text = "name: w\ntasks:\n  t: {type: shell, command: x, resources: [sql/a, b, sql/a/c/d]}\n"
    with pytest.raises(InvalidInput) as err:
        load_workflow(text)
    (problem,) = err.value.problems
    assert problem.path == "tasks.t.resources.2"
    assert "resource 'sql/a/c/d' is inside 'sql/a', which the task lists too" in problem.message
    document = {"name": "w", "tasks": {"t": {"type": "shell", "command": "x",
                                             "resources": ["a", "a/b"]}}}  # fmt: skip
    assert spec_from_document(document).workflow.tasks["t"].resources == ["a", "a/b"]
    with pytest.raises(ResourceUnavailable) as failed:  # its runs fail the task, as before
        materialize(work, {"a": "1", "a/b": "1"}, ["a", "a/b"], lambda p, v: b"")
    assert str(failed.value).startswith("resource 'a/b': 'a' in the task's working directory")
    assert str(tmp_path) not in str(failed.value)  # not the server's place of it
    # other tasks may list them: each task has a work dir of its own
    load_workflow("name: w\ntasks:\n  t: {type: shell, command: x, resources: [a]}\n"
                  "  u: {type: shell, command: x, resources: [a/b]}\n")  # fmt: skip


def test_a_write_that_fails_at_any_step_leaves_the_versions_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each write of an upload (path, description, bytes) failing in turn, as a full disk
    would: the upload fails, the file keeps its versions, no temporary file is left, and the
    next upload succeeds with the next number."""
    store = LocalResources(tmp_path)
    store.put("p", "a.txt", b"one")
    real = os.replace
    for step in range(2):  # the description's rename, then the bytes' rename
        calls = {"n": 0}

        def failing(src: object, dst: object, _step: int = step, _calls: dict = calls) -> None:
            _calls["n"] += 1
            if _calls["n"] == _step + 1:
                raise OSError(28, "No space left on device")
            real(src, dst)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "replace", failing)
        with pytest.raises(OSError, match="No space"):
            store.put("p", "a.txt", b"two")
        monkeypatch.setattr(os, "replace", real)
        assert [v.version for v in store.versions("p", "a.txt")] == ["1"]
        assert store.get("p", "a.txt")[1] == b"one"
        leftovers = [p.name for p in (tmp_path / "resources").rglob(".*.tmp")]
        assert leftovers == []
    assert store.put("p", "a.txt", b"two").version == "2"
    assert store.get("p", "a.txt", "2")[1] == b"two"


def _swapping_mkdir(
    monkeypatch: pytest.MonkeyPatch, work: Path, swap: str, outside: Path
) -> list[str]:
    """``os.mkdir`` as ``materialize`` sees it, with a racer's move right after the mkdir of
    ``work/swap``: that directory renamed away and a link to ``outside`` put in its place
    (what a process an earlier attempt left running in a reused work dir can do between
    two of the server's calls). Returns the names mkdir was called with."""
    real = os.mkdir
    calls: list[str] = []
    target = work / swap

    def mkdir(path: str | Path, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real(path, mode, dir_fd=dir_fd)
        calls.append(str(path))
        made = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
        if not target.is_symlink() and target.exists() and os.path.samestat(made, target.stat()):
            os.rename(target, f"{target}.moved")
            target.symlink_to(outside)

    monkeypatch.setattr(os, "mkdir", mkdir)
    return calls


@pytest.mark.parametrize("swap", ["d", "d/e"])
def test_materialize_cannot_be_led_out_by_a_swap_after_a_mkdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    calls = _swapping_mkdir(monkeypatch, work, swap, outside)
    with pytest.raises(ResourceUnavailable) as caught:
        materialize(work, {"d/e/x": "1"}, ["d/e/x"], lambda p, v: b"evil")
    monkeypatch.undo()
    assert calls  # the swap did happen
    assert (work / swap).is_symlink()
    assert list(outside.iterdir()) == []  # nothing made, nothing written through the link
    message = str(caught.value)
    assert f"resource 'd/e/x': {swap!r} in the task's working directory is not a directory" in (
        message
    )
    assert str(tmp_path) not in message  # the work dir's place is not shown


def test_materialize_never_chowns_through_a_swapped_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the server does for a project with a uid of its own: each directory it makes is
    chowned, by the descriptor it opened, never by a path a racer could have redirected."""
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    _swapping_mkdir(monkeypatch, work, "d", outside)
    chowned: list[object] = []
    monkeypatch.setattr(os, "chown", lambda p, *a, **k: chowned.append(p))
    monkeypatch.setattr(os, "fchown", lambda fd, *a, **k: chowned.append(os.fstat(fd)))
    with pytest.raises(ResourceUnavailable, match=r"'d' in the task's working directory"):
        materialize(work, {"d/x": "1"}, ["d/x"], lambda p, v: b"x", owner=os.getuid())
    monkeypatch.undo()
    assert chowned == []
    assert list(outside.iterdir()) == []


def test_materialize_refuses_a_link_planted_below_a_directory(tmp_path: Path) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    (work / "d").mkdir(parents=True)
    outside.mkdir()
    (work / "d" / "e").symlink_to(outside)
    with pytest.raises(ResourceUnavailable, match=r"'d/e' in the task's working directory is"):
        materialize(work, {"d/e/x": "1"}, ["d/e/x"], lambda p, v: b"x")
    assert list(outside.iterdir()) == []
    (work / "f").write_bytes(b"")
    with pytest.raises(ResourceUnavailable, match=r"'f' in the task's working directory is not"):
        materialize(work, {"f/x": "1"}, ["f/x"], lambda p, v: b"x")


def test_materialize_into_a_descriptor_chowns_what_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    chowned: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "fchown", lambda fd, u, g: chowned.append((os.fstat(fd).st_ino, u)))
    fd = os.open(work, os.O_PATH | os.O_DIRECTORY)
    try:
        written = materialize(
            fd, {"a/b/c": "1", "a/d": "1"}, ["a/b/c", "a/d"], lambda p, v: p.encode(), owner=7
        )
        os.fstat(fd)  # still open: the caller's
    finally:
        os.close(fd)
    assert written == ["a/b/c", "a/d"]
    assert (work / "a" / "b" / "c").read_bytes() == b"a/b/c"
    assert stat.S_IMODE(os.stat(work / "a" / "b").st_mode) == 0o700
    inodes = {os.stat(work / p).st_ino for p in ("a", "a/b", "a/b/c", "a/d")}
    assert {ino for ino, _ in chowned} == inodes  # 'a' once, when it was made
    assert len(chowned) == 4
    assert {u for _, u in chowned} == {7}


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory of another uid is made by root")
def test_materialize_chowns_no_directory_swapped_in_after_its_mkdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The racer puts a directory of its own (another uid: the project's) where the server
    just made one: the server refuses it rather than chown what it did not make."""
    work = tmp_path / "work"
    work.mkdir()
    real = os.mkdir

    def mkdir(path: str | Path, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real(path, mode, dir_fd=dir_fd)
        if (work / "d").is_dir() and not (work / "d.moved").exists():
            os.rename(work / "d", work / "d.moved")
            real(work / "d", 0o755)
            os.chown(work / "d", 12345, 12345)

    monkeypatch.setattr(os, "mkdir", mkdir)
    with pytest.raises(ResourceUnavailable, match=r"'d/x': directory 'd' .* was replaced"):
        materialize(work, {"d/x": "1"}, ["d/x"], lambda p, v: b"x", owner=54321)
    monkeypatch.undo()
    assert os.stat(work / "d").st_uid == 12345
    assert list((work / "d").iterdir()) == []
