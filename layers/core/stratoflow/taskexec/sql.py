"""Runs a ``type: sql`` task's statement (or script) on a PostgreSQL or MySQL connection.

The executor hands the task runner the rendered fields and, under ``__connection``, the named
connection's type and settings with its secret references resolved (they are resolved there and
nowhere before). Parameters go to the driver as query parameters (``%(name)s``): psycopg sends
them apart from the statement, PyMySQL escapes them as literals; neither pastes them as
written. What the task reports:

- ``outputs: first_row``: the first row's columns, each as a string (NULL as ""), and
  ``row_count``;
- ``outputs: rows``: ``rows``, a JSON list of objects (at most ``MAX_ROWS`` rows and
  ``MAX_ROWS_BYTES`` bytes; more fails the task naming the cap), and ``row_count``;
- ``outputs: none``: ``row_count`` only.

``row_count`` is the last statement's: the rows it returned, or those it changed.

Only the rows kept reach the task's memory (one for ``first_row``, ``MAX_ROWS + 1`` for
``rows``, none for ``none``), however many the query returns. On PostgreSQL a single query
(SELECT, WITH, VALUES, TABLE) runs through a server-side cursor: ``FETCH`` the rows kept,
then ``MOVE FORWARD ALL`` runs the rest on the server and counts it without sending it. A
script (or a statement a cursor cannot hold: INSERT ... RETURNING, a data-modifying WITH)
runs as written, and libpq then receives each of its result sets whole. On MySQL the rows are
read unbuffered (PyMySQL's ``SSCursor``): the rest is read, counted and dropped a chunk at a
time. The AWS drivers read results a page at a time (sql_aws).

A stop of the run or its timeout reaches the task runner as SIGTERM: the query is then
cancelled on the server (PostgreSQL's cancel request, what ``pg_cancel_backend`` does; MySQL's
``KILL QUERY``), and the task fails saying so. The statement runs on a thread; the main thread
waits for it and for the signal.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import re
import signal
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

MAX_ROWS = 1_000
MAX_ROWS_BYTES = 128 * 1024  # the `rows` output, as JSON: it travels with the task's outputs
MAX_SQL_FILE_BYTES = 1 << 20
CANCEL_WAIT_SECONDS = 3.0  # after a cancel, how long to wait for the driver to give up
OUTPUT_KINDS = ("first_row", "rows", "none")
_SKIP_CHUNK = 1_000  # rows past those kept are read (to count them) this many at a time


class SqlFailed(Exception):
    """A failure whose message is the whole story."""


@dataclass
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]  # at most the rows asked for
    row_count: int
    statements: int


class Driver(ABC):
    """One open connection to a database."""

    query_id: str | None = None

    @abstractmethod
    def run(self, sql: str, parameters: Mapping[str, Any] | None, keep: int) -> Result:
        """Run ``sql`` in one transaction (committed when it succeeds); keep at most ``keep``
        rows of the last result set."""

    @abstractmethod
    def cancel(self) -> None:
        """Cancel what runs now, on the server (from another thread)."""

    @abstractmethod
    def close(self) -> None: ...


def _address(url: str, default_port: int) -> tuple[str, int, str, str]:
    parts = urlsplit(url)
    return (
        parts.hostname or "",
        parts.port or default_port,
        unquote(parts.username or ""),
        unquote(parts.path.lstrip("/")),
    )


# A statement that may be one query a server-side cursor can hold (after blanks, comments and
# opening parentheses): SELECT, WITH, VALUES, TABLE. Anything else is run as a script.
# (possessive, and a comment that ends at its first */: no backtracking, whatever the text)
_QUERY_START = re.compile(
    r"(?:\s|--[^\n]*+|/\*(?:[^*]|\*(?!/))*+\*/|\()*+(?:select|with|values|table)\b",
    re.IGNORECASE,
)
# SQLSTATE classes of a DECLARE that is not one query a cursor holds (syntax error or access
# rule violation: a script, INSERT ... RETURNING, an unknown table; feature not supported: a
# data-modifying WITH): the transaction is rolled back and the SQL run as a script
_NOT_A_CURSOR = ("42", "0A")


def _comment(sql: str) -> str:
    """``sql``'s start as the text of a ``/* */`` comment (PostgreSQL nests them: no ``/*``
    or ``*/`` in it), as much as pg_stat_activity shows by default (1,024 bytes)."""
    return " ".join(sql[:900].replace("/*", "/ *").replace("*/", "* /").split())


# a password file that cannot exist (a path under a device): libpq finds none and says nothing
_NO_PASSFILE = "/dev/null/stratoflow-no-passfile"


class PostgresDriver(Driver):
    def __init__(self, settings: Mapping[str, str], *, in_server: bool = False) -> None:
        """``in_server``: opened in the server's own process (``connections test``), whose
        environment and home may hold its read model's password (``PGPASSWORD``, ~/.pgpass,
        ``PGPASSFILE``, a service file). libpq would send that to whatever host a project's
        connection names when the connection has no password (one the host can ask for in
        clear): so only the connection's own password is given, and no password file read."""
        import psycopg  # imported here: only sql tasks pay for it

        host, port, user, dbname = _address(settings["url"], 5432)
        password = settings.get("password") or None
        if in_server:  # an empty password given is one libpq takes as given (not PGPASSWORD,
            password = password or ""  # nor a service file's); then a password file: none
        self._conn = psycopg.connect(
            host=host,
            port=port,
            user=user,
            dbname=dbname or user,
            password=password,
            sslmode=settings.get("sslmode") or "prefer",
            connect_timeout=int(settings.get("connect_timeout") or 10),
            application_name="stratoflow",
            passfile=_NO_PASSFILE if in_server else None,  # None: not passed to libpq
        )
        self.backend_pid = self._conn.info.backend_pid
        self._cancelled = False

    def run(self, sql: str, parameters: Mapping[str, Any] | None, keep: int) -> Result:
        if _QUERY_START.match(sql):
            found = self._run_cursor(sql, parameters, keep)
            if found is not None:
                return found
        statements = 0
        columns: list[str] = []
        rows: list[tuple[Any, ...]] = []
        count = 0
        with self._conn.cursor() as cur:
            # a script: libpq receives each statement's whole result (the last one's rows
            # are then cut to ``keep``); a single query went through _run_cursor
            cur.execute(sql.encode("utf-8"), parameters)  # bytes: psycopg takes any SQL text
            while True:
                statements += 1
                if cur.description is not None:
                    columns = [c.name for c in cur.description]
                    rows = cur.fetchmany(keep) if keep else []
                    count = cur.rowcount
                else:
                    columns, rows, count = [], [], max(cur.rowcount, 0)
                if not cur.nextset():
                    break
        self._conn.commit()
        return Result(columns, rows, count, statements)

    def _run_cursor(
        self, sql: str, parameters: Mapping[str, Any] | None, keep: int
    ) -> Result | None:
        """``sql`` as one query through a server-side cursor: only the ``keep`` rows kept
        reach this process; the rest is run to its end on the server (``MOVE FORWARD ALL``,
        which also counts it), so the memory a task takes does not grow with its result.
        None (the transaction rolled back, nothing run) when ``sql`` is not one query a
        cursor can hold: a script, an INSERT ... RETURNING, a data-modifying WITH, or an
        error the plain run then reports in the user's own words and positions."""
        import psycopg

        with self._conn.cursor() as cur:
            # the plan of a cursor is made for its first rows (cursor_tuple_fraction 0.1):
            # all of them are read here, as a plain query would be
            cur.execute("SET LOCAL cursor_tuple_fraction = 1.0")
            try:
                # binary=True (the DECLARE returns no rows to read in binary): psycopg sends it
                # with the extended protocol, unnamed (no prepared statement a pooler such as
                # PgBouncer must keep), which refuses a script: the simple protocol would run
                # the statements after the DECLARE
                cur.execute(
                    b'DECLARE "stratoflow_result" NO SCROLL CURSOR FOR ' + sql.encode("utf-8"),
                    parameters,
                    binary=True,
                )
            except psycopg.Error as exc:
                if self._cancelled or (exc.sqlstate or "")[:2] not in _NOT_A_CURSOR:
                    raise
                self._conn.rollback()
                return None
            columns: list[str] = []
            rows: list[tuple[Any, ...]] = []
            # the query's text as a comment: what pg_stat_activity shows of the FETCH and
            # the MOVE, which run it, still says which query it is
            label = f" /* {_comment(sql)} */"
            if keep:
                cur.execute(f'FETCH FORWARD {int(keep)} FROM "stratoflow_result"{label}')
                columns = [c.name for c in cur.description or []]
                rows = cur.fetchall()
            cur.execute(f'MOVE FORWARD ALL FROM "stratoflow_result"{label}')
            count = len(rows) + max(cur.rowcount, 0)
            cur.execute('CLOSE "stratoflow_result"')
        self._conn.commit()
        return Result(columns, rows, count, 1)

    def cancel(self) -> None:
        self._cancelled = True  # a DECLARE cancelled is not retried as a plain run
        self._conn.cancel_safe(timeout=CANCEL_WAIT_SECONDS)

    def close(self) -> None:
        self._conn.close()


class MysqlDriver(Driver):
    def __init__(self, settings: Mapping[str, str], multi: bool) -> None:
        import pymysql  # imported here: only sql tasks pay for it
        from pymysql.constants import CLIENT

        host, port, user, database = _address(settings["url"], 3306)
        self._kwargs: dict[str, Any] = {
            "host": host,
            "port": port,
            "user": user,
            "password": settings.get("password") or "",
            "database": database or None,
            "connect_timeout": int(settings.get("connect_timeout") or 10),
            "charset": "utf8mb4",
        }
        ssl = settings.get("ssl") or "prefer"
        if ssl == "require":
            self._kwargs["ssl"] = {"check_hostname": True}
        # a script of several statements needs MULTI_STATEMENTS; it is asked for only when
        # no parameter is given (parameters are escaped into one statement, never a script)
        flags = CLIENT.MULTI_STATEMENTS if multi else 0
        self._conn = pymysql.connect(client_flag=flags, autocommit=False, **self._kwargs)
        self.thread_id: int = self._conn.thread_id()  # type: ignore[no-untyped-call]

    def run(self, sql: str, parameters: Mapping[str, Any] | None, keep: int) -> Result:
        from pymysql.cursors import SSCursor

        statements = 0
        columns: list[str] = []
        rows: list[tuple[Any, ...]] = []
        count = 0
        # unbuffered: rows are read from the socket as fetched, so the rows past ``keep`` are
        # counted and dropped a chunk at a time, never held (MySQL has no server-side count)
        with self._conn.cursor(SSCursor) as cur:
            cur.execute(sql, dict(parameters) if parameters else None)
            while True:
                statements += 1
                if cur.description is not None:
                    columns = [c[0] for c in cur.description]
                    rows = list(cur.fetchmany(keep)) if keep else []
                    count = len(rows)
                    while chunk := cur.fetchmany(_SKIP_CHUNK):
                        count += len(chunk)
                else:
                    columns, rows = [], []
                    count = max(cur.rowcount, 0)
                if not cur.nextset():
                    break
        self._conn.commit()
        return Result(columns, rows, count, statements)

    def cancel(self) -> None:
        import pymysql

        other = pymysql.connect(**self._kwargs)
        try:
            with other.cursor() as cur:
                cur.execute("KILL QUERY %s", (self.thread_id,))
        finally:
            other.close()

    def close(self) -> None:
        self._conn.close()


def open_driver(
    kind: str, settings: Mapping[str, str], *, multi: bool = True, in_server: bool = False
) -> Driver:
    if kind == "postgresql":
        return PostgresDriver(settings, in_server=in_server)
    if kind == "mysql":
        return MysqlDriver(settings, multi)
    from stratoflow.taskexec.sql_aws import open_aws_driver  # boto3: only for these

    return open_aws_driver(kind, settings)


def _cell(value: Any) -> Any:
    """A database value as JSON."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)  # a float would lose digits
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (list, tuple)):
        return [_cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _cell(v) for k, v in value.items()}
    return str(value)


def _text(value: Any) -> str:
    cell = _cell(value)
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell
    return json.dumps(cell) if isinstance(cell, (list, dict, bool)) else str(cell)


def outputs_of(result: Result, kind: str) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    if kind == "first_row" and result.rows:
        outputs.update(
            {col: _text(v) for col, v in zip(result.columns, result.rows[0], strict=False)}
        )
    elif kind == "rows":
        if len(result.rows) > MAX_ROWS:
            raise SqlFailed(
                f"the query returned {result.row_count:,} rows; outputs: rows holds at most "
                f"{MAX_ROWS:,} (select fewer, or use outputs: first_row or none)"
            )
        rows = [
            {col: _cell(v) for col, v in zip(result.columns, row, strict=False)}
            for row in result.rows
        ]
        size = len(json.dumps(rows, separators=(",", ":")).encode("utf-8"))
        if size > MAX_ROWS_BYTES:
            raise SqlFailed(
                f"the rows are {size:,} bytes as JSON; outputs: rows holds at most "
                f"{MAX_ROWS_BYTES:,} bytes (select fewer rows or columns, or use outputs: none)"
            )
        outputs["rows"] = rows
    outputs["row_count"] = result.row_count
    return outputs


def statement(fields: Mapping[str, Any], work_dir: Path) -> str:
    """The SQL: ``sql``, or ``sql_file`` read from the task's working directory."""
    sql = fields.get("sql")
    if sql is not None:
        return str(sql)
    name = str(fields.get("sql_file") or "")
    path = (work_dir / name).resolve()
    if not path.is_relative_to(work_dir.resolve()):
        raise SqlFailed(f"sql_file {name!r} is outside the task's working directory")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SqlFailed(
            f"sql_file {name!r} is not in the task's working directory (list it in the "
            "task's resources)"
        ) from None
    except OSError as exc:
        raise SqlFailed(f"sql_file {name!r}: {exc.strerror}") from None
    if len(data) > MAX_SQL_FILE_BYTES:
        raise SqlFailed(f"sql_file {name!r} is {len(data):,} bytes; at most {MAX_SQL_FILE_BYTES:,}")
    return data.decode("utf-8", errors="replace")


def execute(
    kind: str,
    settings: Mapping[str, str],
    sql: str,
    parameters: Mapping[str, Any] | None,
    outputs: str,
    *,
    stop: threading.Event | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Run ``sql``; its outputs. ``stop`` set (by a signal handler) cancels the query on the
    server and fails with what stopped it."""
    if outputs not in OUTPUT_KINDS:
        raise SqlFailed(f"outputs must be one of {', '.join(OUTPUT_KINDS)}, not {outputs!r}")
    keep = {"first_row": 1, "rows": MAX_ROWS + 1, "none": 0}[outputs]
    started = time.monotonic()
    try:
        driver = open_driver(kind, settings, multi=not parameters)
    except SqlFailed:
        raise
    except Exception as exc:
        raise SqlFailed(f"cannot connect: {_reason(exc)}{_hint(kind, exc)}") from None
    where = getattr(driver, "backend_pid", None) or getattr(driver, "thread_id", None)
    log(f"connected ({kind}" + (f", server session {where})" if where else ")"))
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = driver.run(sql, parameters, keep)
        except BaseException as exc:  # handed to the main thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="sql", daemon=True)
    worker.start()
    cancelled = False
    try:
        while worker.is_alive():
            worker.join(0.1)
            if stop is not None and stop.is_set() and not cancelled:
                cancelled = True
                log("stop or timeout: cancelling the query on the server")
                try:
                    driver.cancel()
                except Exception as exc:
                    log(f"cancel failed: {_reason(exc)}")
                worker.join(CANCEL_WAIT_SECONDS)
                break
    finally:
        if not worker.is_alive():
            driver.close()
    if cancelled:
        raise SqlFailed("the query was cancelled on the server (the run was stopped or the "
                        "task timed out)")  # fmt: skip
    if driver.query_id:
        log(f"query_id={driver.query_id}")
    if "error" in box:
        error = box["error"]
        if isinstance(error, SqlFailed):
            raise error
        raise SqlFailed(f"the query failed: {_reason(error)}{_hint(kind, error)}")
    result: Result = box["result"]
    found = outputs_of(result, outputs)
    if driver.query_id:
        found["query_id"] = driver.query_id
    log(
        f"{result.statements} statement(s) in {time.monotonic() - started:.3f}s; "
        f"row_count={result.row_count}"
    )
    return found


def _hint(kind: str, exc: BaseException) -> str:
    if kind in ("postgresql", "mysql") or "credentials" not in str(exc).lower():
        return ""
    return (
        " (an AWS connection uses the AWS credentials where the task runs; on the local "
        "runtime give them in the task's env as secret references, e.g. AWS_ACCESS_KEY_ID: "
        "'{{ secrets.aws_key_id }}')"
    )


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:2000]


def run_sql(
    fields: dict[str, Any], params: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """The task runner's entry: SIGTERM (a stop or the timeout) cancels the query."""
    target = fields.get("__connection") or {}
    kind = str(target.get("type") or "")
    settings: Mapping[str, str] = target.get("settings") or {}
    sql = statement(fields, Path(context.get("work_dir") or "."))
    parameters = fields.get("parameters") or None
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(f"connection {fields.get('connection')!r} ({kind})", flush=True)
        return execute(kind, settings, sql, parameters, str(fields.get("outputs") or "none"),
                       stop=stop, log=lambda line: print(line, flush=True))  # fmt: skip
    finally:
        signal.signal(signal.SIGTERM, previous)


def check(kind: str, settings: Mapping[str, str], *, in_server: bool = False) -> str:
    """``stratoflow connections test``: connect and run ``SELECT 1``; what the server says.
    ``in_server``: run by the server itself (see :class:`PostgresDriver`)."""
    driver = open_driver(kind, settings, multi=False, in_server=in_server)
    try:
        driver.run("SELECT 1", None, 1)
        where = getattr(driver, "backend_pid", None) or getattr(driver, "thread_id", None)
        return f"connected and ran SELECT 1 (server session {where})"
    finally:
        driver.close()


__all__: Sequence[str] = ["MAX_ROWS", "MAX_ROWS_BYTES", "SqlFailed", "check", "execute", "run_sql"]
