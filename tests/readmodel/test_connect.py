"""The connection wrapper: URL dispatch, the placeholder rewrite, pooling, many-row inserts."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stratoflow.errors import Unavailable
from stratoflow.faults import machine_fault
from stratoflow.readmodel import Database, PostgresDatabase, SqliteDatabase, connect, migrate
from stratoflow.readmodel._db import to_pyformat
from stratoflow.readmodel._projection import TASK_INSERT
from stratoflow.readmodel._records import rev_text


def test_placeholders_become_pyformat_and_casts_and_percent_survive() -> None:
    assert to_pyformat("SELECT :a::text, x % 2 FROM t WHERE b = :b_2 AND c = ':lit'") == (
        "SELECT %(a)s::text, x %% 2 FROM t WHERE b = %(b_2)s AND c = '%(lit)s'"
    )  # the last one is the documented limit: no ':word' inside literals


@pytest.mark.parametrize("prefix", ["", "sqlite:///"])
def test_sqlite_urls_and_plain_paths_open_sqlite(tmp_path: Path, prefix: str) -> None:
    path = tmp_path / "rm.db"
    db = connect(prefix + str(path))
    try:
        assert isinstance(db, SqliteDatabase)
        assert db.query("SELECT 1 AS one") == [{"one": 1}]
        assert path.exists()
    finally:
        db.close()


def test_postgresql_urls_open_psycopg(pg_url: str) -> None:
    db = connect(pg_url)
    try:
        assert isinstance(db, PostgresDatabase)
        assert db.query("SELECT :x::int + 1 AS y", {"x": 41}) == [{"y": 42}]
    finally:
        db.close()


def test_other_schemes_are_refused_with_the_supported_ones_named() -> None:
    with pytest.raises(
        ValueError, match=r"mysql://\.\.\.: use postgresql://\.\.\. or sqlite:///path"
    ):
        connect("mysql://user@host/db")


def test_threads_that_come_and_go_share_a_few_connections(db_url: str) -> None:
    """An HTTP server may answer each request on a new thread: connections are pooled, not
    kept per thread."""
    import threading

    db = connect(db_url)
    opened = []
    real_open = db._open  # type: ignore[attr-defined]

    def counting_open() -> object:
        opened.append(1)
        return real_open()

    db._open = counting_open  # type: ignore[attr-defined]
    try:
        for _ in range(20):
            t = threading.Thread(target=lambda: db.query("SELECT 1 AS one"))
            t.start()
            t.join()
        assert len(opened) <= 1  # the connection opened up front (or the first) is reused
    finally:
        db.close()


def test_a_broken_postgresql_connection_is_replaced(pg_url: str) -> None:
    import psycopg

    db = connect(pg_url)
    try:
        pid = db.query("SELECT pg_backend_pid() AS pid")[0]["pid"]
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(Unavailable) as killed:
            db.query("SELECT 1 AS one")  # the pooled connection was killed under it
        assert isinstance(killed.value.__cause__, psycopg.OperationalError)
        assert db.query("SELECT 1 AS one") == [{"one": 1}]  # and is not lent again
        assert db.query("SELECT pg_backend_pid() AS pid")[0]["pid"] != pid
    finally:
        db.close()


def test_an_unreachable_postgresql_server_is_unavailable_not_a_bug(pg_url: str) -> None:
    """A server that went away (restarted, unreachable for a while) is the machine's fault:
    ``Unavailable`` (the API's 503 with Retry-After), and the next call after it came back
    simply works; an error of the SQL itself stays what it is (a bug: a 500)."""
    import psycopg

    db = connect(pg_url)
    assert isinstance(db, PostgresDatabase)
    reachable = db.dsn
    try:
        pid = db.query("SELECT pg_backend_pid() AS pid")[0]["pid"]
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        db.dsn = "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2"  # now down
        for attempt in (db.query, db.execute):
            with pytest.raises(Unavailable) as down:
                attempt("SELECT 1 AS one")
            assert machine_fault(down.value) is down.value
            assert "cannot be reached" in str(down.value)
        with pytest.raises(Unavailable), db.transaction():
            db.execute("SELECT 1")
        db.dsn = reachable  # back
        assert db.query("SELECT 1 AS one") == [{"one": 1}]
        with pytest.raises(psycopg.errors.UndefinedTable):
            db.query("SELECT * FROM no_such_table")
    finally:
        db.close()


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 200])
def test_insert_many_writes_every_row_under_each_rows_guard(db: Database, n: int) -> None:
    """Several rows per statement (64, then 32, 16, ... for the rest), each row still under
    its own conflict clause: of rows already stored, the ones with a higher revision land."""
    migrate(db)
    insert = TASK_INSERT
    row = dict(zip(insert.columns, [None] * len(insert.columns), strict=True))
    row |= {"state": "queued", "attempt": 0, "attempt_base": 0, "outputs": "{}", "priority": 0}

    def rows(state: str, rev: Callable[[int], int]) -> list[tuple[object, ...]]:
        return [
            tuple({**row, "run_id": "r", "task_id": f"t{i:03d}", "state": state,
                   "rev": rev_text(rev(i))}.values())
            for i in range(n)
        ]  # fmt: skip

    db.insert_many(insert, rows("queued", lambda i: 10))
    # odd tasks come with a newer revision, even ones with an older one
    db.insert_many(insert, rows("running", lambda i: 11 if i % 2 else 9))
    stored = db.query("SELECT task_id, state, rev FROM task_instances ORDER BY task_id")
    assert [(r["task_id"], r["state"]) for r in stored] == [
        (f"t{i:03d}", "running" if i % 2 else "queued") for i in range(n)
    ]


def test_insert_many_refuses_a_row_of_the_wrong_width(db: Database) -> None:
    migrate(db)
    good = ("r", "a", "queued", 0, 0, None, None, None, None, "{}", None, 0, rev_text(1))
    with pytest.raises((ValueError, TypeError)):
        db.insert_many(TASK_INSERT, [good, good[:-1]])
    assert db.query("SELECT task_id FROM task_instances") == []


def test_a_postgresql_server_that_does_not_answer_is_given_up_on(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that accepts the connection and then says nothing (hung, or a network that
    drops its packets) would hold a request, or the feed, for as long as the OS lets a
    connection wait: a connection is given up after ``CONNECT_TIMEOUT`` seconds, unless
    the URL says otherwise."""
    import socket
    import time

    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setattr(PostgresDatabase, "CONNECT_TIMEOUT", 2)
    db = connect(pg_url)
    assert isinstance(db, PostgresDatabase)
    try:
        import psycopg

        pid = db.query("SELECT pg_backend_pid() AS pid")[0]["pid"]
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        db.dsn = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/hung"
        with pytest.raises(Unavailable):
            db.query("SELECT 1 AS one")  # the pooled connection, killed: dropped
        started = time.monotonic()
        with pytest.raises(Unavailable):
            db.query("SELECT 1 AS one")
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        thread.join()
        for s in held:
            s.close()
        silent.close()
        db.close()


def test_a_statement_that_runs_too_long_is_cancelled_with_a_clear_error(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every statement is bounded (``STATEMENT_TIMEOUT``, unless the URL's options set
    ``statement_timeout``): one that runs longer is cancelled by the server and the caller
    is told so (the API's 503), not held for as long as the query takes."""
    import time

    monkeypatch.setattr(PostgresDatabase, "STATEMENT_TIMEOUT", 1, raising=False)
    db = connect(pg_url)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="did not answer within 1 s"):
            db.query("SELECT pg_sleep(5) AS slept")
        assert time.monotonic() - started < 4
        assert db.query("SELECT 1 AS one") == [{"one": 1}]  # and the next call works
    finally:
        db.close()


def test_migrations_are_not_bounded_by_the_statement_timeout(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration may wait for another process's (its lock) and build indexes for longer
    than a request may take: inside it neither bound applies."""
    monkeypatch.setattr(PostgresDatabase, "STATEMENT_TIMEOUT", 1, raising=False)
    monkeypatch.setattr(PostgresDatabase, "ANSWER_GRACE", 0.5, raising=False)
    db = connect(pg_url)
    try:
        with db.transaction():
            db.lock_for_migrations()
            assert db.query("SELECT 1 AS slept FROM pg_sleep(2.2)") == [{"slept": 1}]
        with pytest.raises(Unavailable):  # outside it, bounded again
            db.query("SELECT pg_sleep(3) AS slept")
    finally:
        db.close()


class _FreezingProxy:
    """A TCP proxy to PostgreSQL that stops passing bytes on when ``frozen`` is set: a
    server that hung, or a network that swallows packets, with the connection still up."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket

        self.target = target
        self.frozen = threading.Event()
        self.stop = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.sockets: list[Any] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        import socket

        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                t.start()
                self.threads.append(t)

    def _pipe(self, src: Any, dst: Any) -> None:
        src.settimeout(0.2)
        while not self.stop.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            while self.frozen.is_set() and not self.stop.is_set():
                time.sleep(0.05)  # held, never passed on
            with contextlib.suppress(OSError):
                dst.sendall(data)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=2)
        for s in [self.server, *self.sockets]:
            s.close()


def test_a_server_that_stops_answering_mid_query_is_given_up_on(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection already made to a server that then hangs (or a network that swallows
    its packets) answers nothing, and the server cannot cancel what it never received:
    libpq would wait for ever. The call is given up after the statement timeout and a
    grace, the connection dropped, and the caller told the database did not answer."""
    from urllib.parse import urlsplit, urlunsplit

    monkeypatch.setattr(PostgresDatabase, "STATEMENT_TIMEOUT", 1, raising=False)
    monkeypatch.setattr(PostgresDatabase, "ANSWER_GRACE", 0.5, raising=False)
    url = urlsplit(pg_url)
    proxy = _FreezingProxy((url.hostname or "127.0.0.1", url.port or 5432))
    user = f"{url.username}@" if url.username else ""
    db = connect(urlunsplit(url._replace(netloc=f"{user}127.0.0.1:{proxy.port}")))
    try:
        assert db.query("SELECT 1 AS one") == [{"one": 1}]
        proxy.frozen.set()
        started = time.monotonic()
        outcome: list[BaseException | None] = []

        def call() -> None:
            try:
                db.query("SELECT 2 AS two")
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(timeout=8)
        assert outcome, "the call was still waiting after 8 s"
        assert isinstance(outcome[0], Unavailable), outcome
        assert "did not answer within 1 s" in str(outcome[0])
        assert time.monotonic() - started < 5
        proxy.frozen.clear()
        assert db.query("SELECT 3 AS three") == [{"three": 3}]  # a new connection
    finally:
        db.close()
        proxy.close()


@pytest.mark.parametrize("frozen_at", ["BEGIN", "COMMIT", "ROLLBACK"])
def test_a_server_that_stops_answering_at_a_transaction_s_edge_is_given_up_on(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, frozen_at: str
) -> None:
    """The transaction's own statements are calls too: a server that hangs as a block
    begins, commits or rolls back held the caller (an API request, the feed) for ever. Each
    is given up on like a statement; the connection is dropped, never lent again."""
    from urllib.parse import urlsplit, urlunsplit

    monkeypatch.setattr(PostgresDatabase, "STATEMENT_TIMEOUT", 1, raising=False)
    monkeypatch.setattr(PostgresDatabase, "ANSWER_GRACE", 0.5, raising=False)
    url = urlsplit(pg_url)
    proxy = _FreezingProxy((url.hostname or "127.0.0.1", url.port or 5432))
    user = f"{url.username}@" if url.username else ""
    db = connect(urlunsplit(url._replace(netloc=f"{user}127.0.0.1:{proxy.port}")))
    outcome: list[BaseException | None] = []

    def block() -> None:
        try:
            if frozen_at == "BEGIN":
                proxy.frozen.set()
            with db.transaction():
                db.query("SELECT 1 AS one")
                if frozen_at != "BEGIN":
                    proxy.frozen.set()
                if frozen_at == "ROLLBACK":
                    raise LookupError("the block failed")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    try:
        started = time.monotonic()
        caller = threading.Thread(target=block, daemon=True)
        caller.start()
        caller.join(timeout=8)
        assert outcome, f"the block was still waiting on its {frozen_at} after 8 s"
        if frozen_at == "ROLLBACK":  # the block's own error, not the rollback's
            assert isinstance(outcome[0], LookupError), outcome
        else:
            assert isinstance(outcome[0], Unavailable), outcome
            assert "did not answer within 1 s" in str(outcome[0])
        assert time.monotonic() - started < 5
        proxy.frozen.clear()
        assert db.query("SELECT 3 AS three") == [{"three": 3}]  # a new connection
    finally:
        proxy.frozen.clear()
        db.close()
        proxy.close()


def test_a_connection_left_inside_a_transaction_is_not_lent_again(pg_url: str) -> None:
    """A block that ended without its ROLLBACK (interrupted as it rolled back) leaves its
    connection inside the transaction: lent again, the next caller's statements would join
    it and never commit."""
    db = connect(pg_url)
    assert isinstance(db, PostgresDatabase)
    try:
        with db._borrow() as conn:
            conn.execute("BEGIN")
            left = conn
        with db._borrow() as conn:
            assert conn is not left
        assert left.closed
        assert db.query("SELECT 1 AS one") == [{"one": 1}]
    finally:
        db.close()


def test_the_environment_s_pgoptions_are_kept_beside_the_statement_bound(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libpq reads ``PGOPTIONS`` only when the connection string gives no ``options``: the
    statement bound added to the URL must not silently drop what a deployment set there."""
    monkeypatch.setenv("PGOPTIONS", "-c application_name=from-pgoptions")
    db = connect(pg_url)
    try:
        rows = db.query("SELECT current_setting('application_name') AS a, "
                        "current_setting('statement_timeout') AS t")  # fmt: skip
    finally:
        db.close()
    assert rows == [{"a": "from-pgoptions", "t": "30s"}]


def test_a_bulk_write_of_many_quick_statements_is_not_cut_as_one_slow_call(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline bounds the wait for an answer, not the length of a bulk write: a
    catch-up writes a large store's rows in one ``execute_many`` (many quick statements,
    each far within the bound), which must not be cut as if it were one slow statement
    (cut, the feed would retry the same batch for ever). Here the bound is 0.3 s and the
    write of 20,000 rows takes longer as a whole; each part of it answers at once."""
    monkeypatch.setattr(PostgresDatabase, "STATEMENT_TIMEOUT", 0.2, raising=False)
    monkeypatch.setattr(PostgresDatabase, "ANSWER_GRACE", 0.1, raising=False)
    monkeypatch.setattr(PostgresDatabase, "MANY_PER_CALL", 200, raising=False)
    db = connect(pg_url)
    try:
        db.execute("DROP TABLE IF EXISTS bulk_bound")
        db.execute("CREATE TABLE bulk_bound (n INTEGER PRIMARY KEY)")
        with db.transaction():
            db.execute_many("INSERT INTO bulk_bound (n) VALUES (:n)",
                            [{"n": n} for n in range(20_000)])  # fmt: skip
        assert db.query("SELECT count(*) AS c FROM bulk_bound") == [{"c": 20_000}]
        db.execute("DROP TABLE bulk_bound")
    finally:
        db.close()


def test_a_connection_cut_while_a_call_failed_otherwise_is_not_lent_again(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline may cut a connection as its call fails for another reason (an error
    the server answered just then, the caller's own): whatever the call raised, a cut
    connection is closed, never lent to the next call, and its deadline forgotten."""
    monkeypatch.setattr(PostgresDatabase, "STATEMENT_TIMEOUT", 0.05, raising=False)
    monkeypatch.setattr(PostgresDatabase, "ANSWER_GRACE", 0.05, raising=False)
    db = connect(pg_url)
    assert isinstance(db, PostgresDatabase)

    def fail_once_cut() -> None:
        with db._call():
            limit = time.monotonic() + 5
            while not db._deadlines._fired and time.monotonic() < limit:  # the cut came
                time.sleep(0.01)
            assert db._deadlines._fired
            raise LookupError("failed for another reason as the cut came")

    try:
        with pytest.raises(LookupError):
            fail_once_cut()
        assert not db._deadlines._fired
        assert db.query("SELECT 1 AS one") == [{"one": 1}]  # a fresh connection
    finally:
        db.close()


@pytest.mark.parametrize("given", ["5000", "5s", "0"])
def test_a_statement_timeout_the_url_sets_bounds_the_wait_too(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """A URL whose options set ``statement_timeout`` (longer statements allowed, or none
    bounded: 0) keeps it, on the server and here: a statement within it is not cut by
    the deadline of the default bound (here 0.3 s, the statement 1 s)."""
    from urllib.parse import quote

    monkeypatch.setattr(PostgresDatabase, "STATEMENT_TIMEOUT", 0.2, raising=False)
    monkeypatch.setattr(PostgresDatabase, "ANSWER_GRACE", 0.1, raising=False)
    sep = "&" if "?" in pg_url else "?"
    db = connect(f"{pg_url}{sep}options={quote(f'-c statement_timeout={given}')}")
    try:
        assert db.query("SELECT 1 AS slept FROM pg_sleep(1)") == [{"slept": 1}]
    finally:
        db.close()
