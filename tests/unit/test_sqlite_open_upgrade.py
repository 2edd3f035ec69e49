"""Two processes opening one state file made by an older version, at once: each adds the
columns the file lacks. Both read the runs table's columns before either adds one, so the
second's ``ALTER TABLE ... ADD COLUMN`` finds the column there and fails ("duplicate column
name"): that open is refused with an error instead of opening the upgraded file.

The interleaving is forced: the first opener reads the columns, then the other opens the
file (in a thread, as another process would) and is given a second to add them, then the
first goes on."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.local import sqlite_store
from stratoflow.adapters.local.sqlite_store import SqliteStore


def _as_an_older_version_left_it(path: Path) -> None:
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE runs DROP COLUMN plan_gen")  # before plans were serialized
    conn.commit()
    conn.close()


def test_two_opens_of_an_older_state_file_at_once_both_open_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "stratoflow.db"
    _as_an_older_version_left_it(path)
    real_connect = sqlite3.connect
    other: list[SqliteStore | BaseException] = []
    threads: list[threading.Thread] = []

    def open_other() -> None:
        try:
            other.append(SqliteStore(path))
        except BaseException as exc:  # reported by the test below
            other.append(exc)

    class FirstOpener(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> Any:
            if sql != "PRAGMA table_info(runs)" or threads:
                return super().execute(sql, *args)
            rows = list(super().execute(sql, *args))  # the columns, as the first read them
            threads.append(threading.Thread(target=open_other))
            threads[0].start()  # the other process opens the file meanwhile
            threads[0].join(1.0)  # done by then, unless it waits for this one
            return rows

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        if threads:  # the other opener, and anything after: as they are
            return real_connect(*args, **kwargs)
        return real_connect(*args, factory=FirstOpener, **kwargs)

    monkeypatch.setattr(sqlite_store.sqlite3, "connect", connect)
    first = SqliteStore(path)
    try:
        assert threads, "the other open did not happen in between"
        threads[0].join(30)
        assert len(other) == 1
        assert isinstance(other[0], SqliteStore), other
        for store in (first, other[0]):
            names = {r["name"] for r in store._conn().execute("PRAGMA table_info(runs)")}
            assert "plan_gen" in names
    finally:
        first.close()
        for opened in other:
            if isinstance(opened, SqliteStore):
                opened.close()
