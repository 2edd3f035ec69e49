"""The connection wrapper: one small interface over SQLite, psycopg 3 and the RDS Data API.

Every statement in the read model is written once, with ``:name`` placeholders (the Data
API's own style, which SQLite also reads); :class:`PostgresDatabase` rewrites them to
psycopg's ``%(name)s``. Values crossing the wrapper are only ``str``, ``int``, ``None`` (and
``bool``): timestamps and JSON are stored as text, so no driver needs a type hint.

Dialect differences, all of them:

- placeholder style (above);
- the migration lock: SQLite takes the write lock (``BEGIN IMMEDIATE``), PostgreSQL and
  Aurora take a transaction-scoped advisory lock (:meth:`Database.lock_for_migrations`);
- how a batch is sent: ``executemany`` (SQLite, psycopg pipeline) or
  ``batch_execute_statement`` (Data API); and how many rows an :class:`Insert` sends per
  statement (SQLite: up to 64, positional; psycopg and the Data API: one).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import parse_qsl

from stratoflow.errors import Unavailable

if TYPE_CHECKING:  # dev-only stubs; at run time boto3 (the Lambda runtime's) provides the client
    from mypy_boto3_rds_data import RDSDataServiceClient

Params = Mapping[str, Any]
Row = dict[str, Any]

# Advisory-lock key for migrations (any constant bigint; "stratoflow" as a number)
MIGRATION_LOCK_KEY = 5_717_816_417


@dataclass(frozen=True)
class Insert:
    """``INSERT INTO table (columns) VALUES (...) tail`` for many rows, each a sequence of
    values in the order of ``columns``. ``sql`` is the one-row statement with ``:name``
    placeholders (what :meth:`Database.execute_many` runs with a dict per row); a dialect
    may send several rows per statement instead (:meth:`Database.insert_many`), so a key
    must not appear twice among the rows of one call when ``tail`` updates on conflict
    (PostgreSQL refuses a statement that updates a row twice)."""

    table: str
    columns: tuple[str, ...]
    tail: str = ""

    @property
    def sql(self) -> str:
        return _values_sql(self, 1, "")


@lru_cache(maxsize=256)
def _values_sql(insert: Insert, rows: int, mark: str) -> str:
    """The statement for ``rows`` rows: ``mark`` is the positional placeholder (``?``);
    none: one row with ``:name`` placeholders."""
    if mark:
        one = "(" + ", ".join([mark] * len(insert.columns)) + ")"
        values = ", ".join([one] * rows)
    else:
        values = "(" + ", ".join(":" + c for c in insert.columns) + ")"
    return f"INSERT INTO {insert.table} ({', '.join(insert.columns)}) VALUES {values} {insert.tail}"


class Database(ABC):
    """A connection (or a pool of per-thread connections) to one read-model database."""

    dialect: Literal["sqlite", "postgresql"]

    @abstractmethod
    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run a statement that returns rows; each row is a dict keyed by column name."""

    @abstractmethod
    def execute(self, sql: str, params: Params | None = None) -> int:
        """Run a statement; returns the number of rows it changed."""

    @abstractmethod
    def execute_many(self, sql: str, param_sets: Sequence[Params]) -> None:
        """Run one statement once per parameter set."""

    def insert_many(self, insert: Insert, rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows (value sequences in the order of ``insert.columns``). Here: one
        statement per row, through :meth:`execute_many`."""
        if rows:
            names = insert.columns
            self.execute_many(insert.sql, [dict(zip(names, r, strict=True)) for r in rows])

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """The statements inside commit together or not at all (nested: one transaction)."""

    @abstractmethod
    def lock_for_migrations(self) -> None:
        """Inside a transaction: wait until no other process is migrating."""

    def close(self) -> None:  # noqa: B027 - optional for adapters without connections
        """Release connections."""


# ------------------------------------------------------------------ pooled local drivers
class _Pooled(Database):
    """Connections lent per call from a small pool of idle ones, so threads may come and go
    (an HTTP server's request threads) without each keeping a connection open. Inside
    ``transaction()`` the thread keeps one connection until the block ends."""

    MAX_IDLE = 4

    def __init__(self) -> None:
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._closed = False

    @abstractmethod
    def _open(self) -> Any: ...

    def _usable(self, conn: Any) -> bool:
        return not self._closed

    @abstractmethod
    def _begin(self, conn: Any) -> AbstractContextManager[None]: ...

    @contextmanager
    def _borrow(self) -> Iterator[Any]:
        held = getattr(self._local, "tx", None)
        if held is not None:
            yield held
            return
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
        try:
            yield conn
        finally:
            self._give_back(conn)

    def _give_back(self, conn: Any) -> None:
        if self._usable(conn):
            with self._lock:
                if len(self._idle) < self.MAX_IDLE:
                    self._idle.append(conn)
                    return
        conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if getattr(self._local, "tx", None) is not None:
            yield  # nested: part of the enclosing transaction
            return
        with self._borrow() as conn:
            self._local.tx = conn
            try:
                with self._begin(conn):
                    yield
            finally:
                self._local.tx = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class SqliteDatabase(_Pooled):
    """A SQLite file in WAL mode (readers never block the writer)."""

    dialect: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        _enable_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _usable(self, conn: sqlite3.Connection) -> bool:
        return not (self._closed or conn.in_transaction)

    @contextmanager
    def _begin(self, conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        with self._borrow() as conn:
            return [dict(r) for r in conn.execute(sql, params or {}).fetchall()]

    def execute(self, sql: str, params: Params | None = None) -> int:
        with self._borrow() as conn:
            return int(conn.execute(sql, params or {}).rowcount)

    def execute_many(self, sql: str, param_sets: Sequence[Params]) -> None:
        if param_sets:
            with self._borrow() as conn:
                conn.executemany(sql, param_sets)

    ROWS_PER_INSERT = 64  # an Insert's rows per statement (and 32, 16, ... for the rest)

    def insert_many(self, insert: Insert, rows: Sequence[Sequence[Any]]) -> None:
        """Several rows per statement, bound by position: per row, about 0.6x the SQLite time
        of ``executemany`` with a dict each (one statement step, not one per row, and no
        placeholder looked up by name). The row counts are powers of two, so a few statement
        texts per table stay in the connection's cache."""
        n = len(rows)
        if not n:
            return
        width = len(insert.columns)
        with self._borrow() as conn:
            done = 0
            while done < n:
                size = min(self.ROWS_PER_INSERT, 1 << ((n - done).bit_length() - 1))
                params = list(chain.from_iterable(rows[done : done + size]))
                if len(params) != size * width:  # a short row would shift the others
                    raise ValueError(f"{insert.table}: a row without {width} values")
                conn.execute(_values_sql(insert, size, "?"), params)
                done += size

    def lock_for_migrations(self) -> None:
        """``BEGIN IMMEDIATE`` already holds SQLite's single write lock."""


def _enable_wal(conn: sqlite3.Connection, tries: int = 100) -> None:
    """Switching a new file to WAL needs a moment alone, and SQLite answers "locked" at once
    (no busy wait) when another connection opens the file at the same time: retry."""
    for _ in range(tries - 1):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
        else:
            return
    conn.execute("PRAGMA journal_mode=WAL")


# ------------------------------------------------------------------------------ PostgreSQL
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """``:name`` -> ``%(name)s`` (and a literal ``%`` -> ``%%``); ``::type`` casts are kept.

    The rewrite does not parse SQL: a ``:word`` inside a string literal would be rewritten
    too, so the read model's statements keep such text in parameters, never in literals.
    """
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


PG_UNREACHABLE = "the read model's database cannot be reached: try again shortly"
# admin_shutdown, crash_shutdown, cannot_connect_now: the server restarts or stops
_PG_GONE = frozenset({"57P01", "57P02", "57P03"})
_PG_CANCELLED = "57014"  # query_canceled: here, by statement_timeout


class _Deadlines:
    """Gives up on calls whose connection outlived its deadline, by shutting its socket
    down: libpq has no read timeout, and a server that hung (or a network that swallows
    packets, the connection still up) would hold the call for ever; the server's own
    ``statement_timeout`` cannot cancel what it never received. One thread, started at the
    first call, sleeping until the nearest deadline; a call registers and unregisters
    under a lock (no thread per call)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, Any]] = {}  # token -> (deadline, connection)
        self._fired: set[int] = set()
        self._seq = 0
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, conn: Any, seconds: float) -> Iterator[int]:
        """Bound the block's wait on ``conn`` to ``seconds``; yields a token that
        :meth:`fired` recognises if the deadline cut the connection."""
        with self._cond:
            self._seq += 1
            token = self._seq
            self._due[token] = (time.monotonic() + seconds, conn)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="stratoflow-pg-deadlines", daemon=True
                )
                self._thread.start()
            elif len(self._due) == 1:  # it sleeps with nothing due: wake it
                self._cond.notify()
        try:
            yield token
        finally:
            with self._cond:
                self._due.pop(token, None)

    def fired(self, token: int) -> bool:
        """Whether ``token``'s deadline passed and its connection was cut (asked once)."""
        with self._cond:
            if token in self._fired:
                self._fired.discard(token)
                return True
            return False

    def _run(self) -> None:
        with self._cond:
            while True:
                if not self._due:
                    self._cond.wait()
                    continue
                token, (deadline, conn) = min(self._due.items(), key=lambda kv: kv[1][0])
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                del self._due[token]
                self._fired.add(token)
                _cut(conn)


def _cut(conn: Any) -> None:
    """Shut the connection's socket down (a duplicate of its descriptor, so the driver's own
    stays valid): its pending read ends at once with an error, and the connection is broken."""
    import socket

    with contextlib.suppress(Exception):
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


_STATEMENT_TIMEOUT = re.compile(
    r"(?:-c\s*|--)statement[_-]timeout\s*=\s*'?([0-9]+(?:\.[0-9]+)?)\s*(us|ms|s|min|h|d)?\b"
)
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def _statement_timeout_of(options: str) -> float | None:
    """The ``statement_timeout`` libpq ``options`` set, in seconds (0: none), or None when
    they set none (or one not read here: the server refuses a value it cannot read)."""
    found = _STATEMENT_TIMEOUT.search(options)
    if found is None:
        return None
    return float(found.group(1)) * _TIME_UNITS[found.group(2) or "ms"]


class PostgresDatabase(_Pooled):
    """psycopg 3 autocommit connections; ``transaction()`` opens a block. A connection that
    broke (the server restarted) is dropped, and the next call connects again."""

    dialect: Literal["sqlite", "postgresql"] = "postgresql"
    #: seconds a connection may take to be made, unless the URL sets ``connect_timeout``:
    #: libpq waits for ever by default, and a server that hung, or a network that drops
    #: packets, would hold an API request (or the feed's retry) for minutes
    CONNECT_TIMEOUT = 10
    #: seconds a statement may run, unless the URL's ``options`` set ``statement_timeout``:
    #: the server cancels a longer one (a request, or the feed, is not held by a slow query)
    STATEMENT_TIMEOUT = 30
    #: seconds past ``STATEMENT_TIMEOUT`` after which a call still unanswered is given up on
    #: here (a server that hung cannot cancel anything): its connection is cut
    ANSWER_GRACE = 5
    #: TCP keepalives and a send timeout, unless the URL sets them: a peer that vanished is
    #: found within about a minute instead of the OS's two hours
    TCP_SETTINGS: ClassVar[Mapping[str, str]] = {
        "keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
        "keepalives_count": "3", "tcp_user_timeout": "30000",
    }  # fmt: skip
    # insert_many: a row per statement (psycopg's executemany). Many rows per statement took
    # 2-3x the client CPU per row (2,000 task rows, 64 a statement: 32-45 us vs 13).

    def __init__(self, dsn: str) -> None:
        super().__init__()
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError(
                "a postgresql:// read model needs psycopg 3: pip install 'stratoflow[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self._dict_row = dict_row
        self.dsn = dsn
        self._deadlines = _Deadlines()
        self._own_timeout: float | None = None  # the options' statement_timeout, seconds
        self._give_back(self._open())  # fail now, with the driver's reason, if unreachable

    def _open(self) -> Any:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        dsn = self.dsn
        given = conninfo_to_dict(dsn)
        extra: dict[str, Any] = {k: v for k, v in self.TCP_SETTINGS.items() if k not in given}
        if "connect_timeout" not in given:
            extra["connect_timeout"] = self.CONNECT_TIMEOUT
        # libpq reads PGOPTIONS only when the string gives no options: setting them here
        # would drop the environment's, so they are carried over
        options = str(given["options"] if "options" in given else os.environ.get("PGOPTIONS", ""))
        self._own_timeout = _statement_timeout_of(options)
        if not re.search("statement[_-]timeout", options):
            bound = f"-c statement_timeout={int(self.STATEMENT_TIMEOUT * 1000)}"
            extra["options"] = f"{options} {bound}".strip()
        if extra:
            dsn = make_conninfo(dsn, **extra)
        return self._psycopg.connect(dsn, autocommit=True, row_factory=self._dict_row)

    def _statement_seconds(self) -> float:
        """How long a statement may run: the URL's (or PGOPTIONS') statement_timeout if it
        sets one (0: for ever), else ``STATEMENT_TIMEOUT``."""
        return self.STATEMENT_TIMEOUT if self._own_timeout is None else self._own_timeout

    def _too_slow(self) -> Unavailable:
        return Unavailable(
            f"the read model's database did not answer within {self._statement_seconds():g} s: "
            "try again shortly"
        )

    @contextmanager
    def _call(self) -> Iterator[Any]:
        """A connection for one statement, the wait for its answer bounded (not inside a
        migration: ``lock_for_migrations``)."""
        with self._reachable(), self._borrow() as conn, self._answered(conn):
            yield conn

    @contextmanager
    def _answered(self, conn: Any) -> Iterator[None]:
        """The block's wait for ``conn``'s answer bounded: cut past the statement timeout
        and its grace (not inside a migration)."""
        statement = self._statement_seconds()
        if getattr(self._local, "unbounded", False) or statement <= 0:
            yield
            return
        seconds = statement + self.ANSWER_GRACE
        token = 0  # (never a watch's)
        # asked once the watch is over (no cut can come after): whatever the call
        # raised, or as its answer came, a cut connection is closed, never lent again
        try:
            with self._deadlines.watch(conn, seconds) as token:
                yield
        except self._psycopg.OperationalError as exc:
            if self._given_up(conn, token):
                raise self._too_slow() from exc
            raise
        except BaseException:
            self._given_up(conn, token)
            raise
        self._given_up(conn, token)

    def _given_up(self, conn: Any, token: int) -> bool:
        """Whether the deadline cut ``conn`` during watch ``token`` (then it is closed)."""
        if not self._deadlines.fired(token):
            return False
        conn.close()
        return True

    def _usable(self, conn: Any) -> bool:
        """Open, whole, and in no transaction (one whose ROLLBACK never ran stays out)."""
        return not (self._closed or conn.closed or conn.broken) and (
            conn.info.transaction_status == self._psycopg.pq.TransactionStatus.IDLE
        )

    @contextmanager
    def _begin(self, conn: Any) -> Iterator[None]:
        """A block on the autocommit connection; its BEGIN, COMMIT and ROLLBACK bounded like
        any statement (a server that hung as a block ended held its caller for ever). A
        rollback that fails (the connection cut, or broken by the block's own error) leaves
        the block's error to be raised: the connection is not lent again either way."""
        with self._answered(conn):
            conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                if not conn.broken:
                    with self._answered(conn):
                        conn.execute("ROLLBACK")
            raise
        with self._answered(conn):
            conn.execute("COMMIT")

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """The server went away (refused, unreachable, restarted under a pooled connection):
        ``Unavailable``, the machine's fault (the API's 503), not a bug; the next call
        connects again. (libpq gives a failed connection no SQLSTATE.)"""
        try:
            yield
        except self._psycopg.OperationalError as exc:
            code = exc.sqlstate
            if code == _PG_CANCELLED:
                raise self._too_slow() from exc
            if code is None or code.startswith("08") or code in _PG_GONE:
                raise Unavailable(PG_UNREACHABLE) from exc
            raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self._reachable(), super().transaction():
                yield
        finally:
            if getattr(self._local, "tx", None) is None:
                self._local.unbounded = False  # a migration's lifting ends with it

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        with self._call() as conn, conn.cursor() as cur:
            cur.execute(to_pyformat(sql), params or {})
            return list(cur.fetchall())

    def execute(self, sql: str, params: Params | None = None) -> int:
        with self._call() as conn, conn.cursor() as cur:
            cur.execute(to_pyformat(sql), params or {})
            return int(cur.rowcount)

    #: parameter sets per ``executemany`` call: the deadline bounds each part's answer,
    #: not the whole write (a catch-up writes a large store's rows at once, many quick
    #: statements that together may take longer than one may)
    MANY_PER_CALL = 1000

    def execute_many(self, sql: str, param_sets: Sequence[Params]) -> None:
        if len(param_sets) <= self.MANY_PER_CALL:
            if param_sets:
                with self._call() as conn, conn.cursor() as cur:
                    cur.executemany(to_pyformat(sql), param_sets)
            return
        with self.transaction():  # in parts, still all or nothing
            for start in range(0, len(param_sets), self.MANY_PER_CALL):
                part = param_sets[start : start + self.MANY_PER_CALL]
                with self._call() as conn, conn.cursor() as cur:
                    cur.executemany(to_pyformat(sql), part)

    def lock_for_migrations(self) -> None:
        """Wait for other processes' migrations; the rest of the migration's transaction is
        not bounded (a lock held by another migrating process, an index built on a big
        table): no ``statement_timeout``, no deadline here."""
        self._local.unbounded = True
        self.execute("SET LOCAL statement_timeout = 0")
        self.query("SELECT pg_advisory_xact_lock(:key)", {"key": MIGRATION_LOCK_KEY})


# ---------------------------------------------------------------------------- RDS Data API
def data_api_parameter(name: str, value: Any) -> dict[str, Any]:
    """One named SqlParameter. Only the types the read model stores are accepted."""
    if value is None:
        field: dict[str, Any] = {"isNull": True}
    elif isinstance(value, bool):
        field = {"booleanValue": value}
    elif isinstance(value, int):
        field = {"longValue": value}
    elif isinstance(value, float):
        field = {"doubleValue": value}
    elif isinstance(value, str):
        field = {"stringValue": value}
    else:
        raise TypeError(f"parameter {name!r}: {type(value).__name__} cannot be sent")
    return {"name": name, "value": field}


def decode_field(field: Mapping[str, Any]) -> Any:
    """A typed Data API ``Field`` -> a Python value."""
    if field.get("isNull"):
        return None
    for key in ("stringValue", "longValue", "doubleValue", "booleanValue", "blobValue"):
        if key in field:
            return field[key]
    if "arrayValue" in field:
        array = field["arrayValue"]
        for key in ("stringValues", "longValues", "doubleValues", "booleanValues"):
            if key in array:
                return list(array[key])
        return [decode_field({"arrayValue": a}) for a in array.get("arrayValues", [])]
    raise ValueError(f"unknown Data API field {sorted(field)}")


def decode_records(response: Mapping[str, Any]) -> list[Row]:
    """Rows of an ExecuteStatement response, typed (records + columnMetadata) or JSON."""
    import json

    if response.get("formattedRecords") is not None:
        rows = json.loads(response["formattedRecords"])
        if not isinstance(rows, list):
            raise ValueError("formattedRecords is not a JSON array")
        return [dict(r) for r in rows]
    records = response.get("records") or []
    if not records:
        return []
    meta = response.get("columnMetadata")
    if not meta:
        raise ValueError("typed records without columnMetadata (includeResultMetadata=True)")
    names = [m.get("label") or m["name"] for m in meta]
    return [
        {name: decode_field(f) for name, f in zip(names, record, strict=True)} for record in records
    ]


class DataApiDatabase(Database):
    """Aurora PostgreSQL through the RDS Data API (HTTPS: a Lambda needs no VPC).

    ``records_as="typed"`` asks for ``records`` + ``columnMetadata``; ``"json"`` asks for
    ``formattedRecords`` (column names included, 10 MB cap instead of 1 MB of typed
    records). An auto-paused cluster (0 ACU) answers ``DatabaseResumingException`` while it
    wakes: calls are retried for up to ``resume_wait`` seconds.
    """

    dialect: Literal["sqlite", "postgresql"] = "postgresql"
    BATCH = 200  # parameter sets per BatchExecuteStatement call

    def __init__(
        self,
        client: RDSDataServiceClient,
        resource_arn: str,
        secret_arn: str,
        database: str,
        *,
        records_as: Literal["typed", "json"] = "typed",
        resume_wait: float = 60.0,
        sleep: Any = time.sleep,
    ) -> None:
        self.client = client
        self.base = {"resourceArn": resource_arn, "secretArn": secret_arn, "database": database}
        self.records_as = records_as
        self.resume_wait = resume_wait
        self._sleep = sleep
        self._local = threading.local()

    @classmethod
    def from_env(cls, client: RDSDataServiceClient | None = None) -> DataApiDatabase:
        """STRATOFLOW_DB_CLUSTER_ARN, STRATOFLOW_DB_SECRET_ARN, STRATOFLOW_DB_NAME."""
        import os

        missing = [
            k
            for k in ("STRATOFLOW_DB_CLUSTER_ARN", "STRATOFLOW_DB_SECRET_ARN", "STRATOFLOW_DB_NAME")
            if not os.environ.get(k)
        ]
        if missing:
            raise RuntimeError(f"the Data API read model needs {', '.join(missing)}")
        if client is None:  # pragma: no cover - Lambda builds it at module scope
            import boto3

            client = boto3.client("rds-data")
        return cls(
            client,
            os.environ["STRATOFLOW_DB_CLUSTER_ARN"],
            os.environ["STRATOFLOW_DB_SECRET_ARN"],
            os.environ["STRATOFLOW_DB_NAME"],
        )

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        deadline = time.monotonic() + self.resume_wait
        delay = 0.5
        while True:
            try:
                base = self.base
                if op in ("commit_transaction", "rollback_transaction"):  # no database there
                    base = {k: v for k, v in base.items() if k != "database"}
                result: dict[str, Any] = getattr(self.client, op)(**base, **kwargs)
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if code != "DatabaseResumingException" or time.monotonic() >= deadline:
                    raise
                self._sleep(delay)
                delay = min(delay * 2, 8.0)
            else:
                return result

    def _tx(self) -> dict[str, str]:
        tx: str | None = getattr(self._local, "tx", None)
        return {} if tx is None else {"transactionId": tx}

    def _statement(self, sql: str, params: Params | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"sql": sql, **self._tx()}
        if params:
            kwargs["parameters"] = [data_api_parameter(k, v) for k, v in params.items()]
        if self.records_as == "json":
            kwargs["formatRecordsAs"] = "JSON"
        else:
            kwargs["includeResultMetadata"] = True
        return self._call("execute_statement", **kwargs)

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        return decode_records(self._statement(sql, params))

    def execute(self, sql: str, params: Params | None = None) -> int:
        return int(self._statement(sql, params).get("numberOfRecordsUpdated") or 0)

    def execute_many(self, sql: str, param_sets: Sequence[Params]) -> None:
        for start in range(0, len(param_sets), self.BATCH):
            chunk = param_sets[start : start + self.BATCH]
            self._call(
                "batch_execute_statement",
                sql=sql,
                parameterSets=[[data_api_parameter(k, v) for k, v in p.items()] for p in chunk],
                **self._tx(),
            )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if getattr(self._local, "tx", None) is not None:
            yield
            return
        tx = self._call("begin_transaction")["transactionId"]
        self._local.tx = tx
        try:
            yield
        except BaseException:
            self._local.tx = None
            self._call("rollback_transaction", transactionId=tx)
            raise
        self._local.tx = None
        self._call("commit_transaction", transactionId=tx)

    def lock_for_migrations(self) -> None:
        self.query("SELECT pg_advisory_xact_lock(:key)", {"key": MIGRATION_LOCK_KEY})


def carries_password(url: str) -> bool:
    """Whether a database URL holds a password: ``scheme://user:PASSWORD@host/...`` or a
    ``password`` query parameter (libpq reads both). A plain path (SQLite) holds none.

    Read as libpq reads a URI (the user info ends at the first ``@`` before any ``/``, so it
    may hold ``?`` or ``#``) and as :mod:`urllib.parse` does (at the last ``@``): either
    finding a password is enough. ``user:@host`` (an empty one) is none."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        return False
    authority = rest.split("/", 1)[0]
    userinfo, at, _ = authority.rpartition("@")
    if at and any(part.partition(":")[2] for part in (userinfo, userinfo.split("@", 1)[0])):
        return True
    query = rest.partition("?")[2].partition("#")[0]
    return any(
        key.strip() == "password" and value
        for key, value in parse_qsl(query, keep_blank_values=True)
    )


def connect(url: str) -> Database:
    """``postgresql://...`` (or ``postgres://``) -> psycopg; ``sqlite:///path`` or a plain
    path -> SQLite."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    if url.startswith("sqlite:///"):
        return SqliteDatabase(url.removeprefix("sqlite:///"))
    if "://" in url:
        raise ValueError(
            f"unsupported read-model database URL {url.split('://', maxsplit=1)[0]}://...: "
            "use postgresql://... or sqlite:///path"
        )
    return SqliteDatabase(url)
