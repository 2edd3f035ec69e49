"""Faults of the machine, not of the request: the one place provider and OS errors become a
domain exception (``Unavailable``), by error *code*, never by message text.

A full disk, a failing disk, a quota, a locked or read-only database, a throttled AWS API:
the request did nothing wrong and may succeed later, so the API answers 503 (not 500) and the
CLI says what happened. Nothing here keeps state: once the disk has room again the next
request simply succeeds.
"""

from __future__ import annotations

import errno
import sqlite3

from stratoflow.errors import Unavailable

NO_SPACE = "the server's disk is full: nothing was changed; try again once space is freed"
IO_ERROR = "the server's storage failed (I/O error): nothing was changed; try again later"
READ_ONLY = "the server's storage is read-only: nothing was changed; try again later"
BUSY = "the server is busy: nothing was changed; try again shortly"
NO_RESOURCES = "the server is out of resources (memory or files): try again shortly"

_OS_ERRORS = {
    errno.ENOSPC: NO_SPACE,
    errno.EDQUOT: NO_SPACE,
    errno.EIO: IO_ERROR,
    errno.EROFS: READ_ONLY,
    errno.ENOMEM: NO_RESOURCES,
    errno.EMFILE: NO_RESOURCES,
    errno.ENFILE: NO_RESOURCES,
}
# primary result codes (the low byte of an extended code): https://sqlite.org/rescode.html
_SQLITE_ERRORS = {
    5: BUSY,  # SQLITE_BUSY: another writer held the lock past the timeout
    6: BUSY,  # SQLITE_LOCKED
    7: NO_RESOURCES,  # SQLITE_NOMEM
    8: READ_ONLY,  # SQLITE_READONLY
    10: IO_ERROR,  # SQLITE_IOERR
    13: NO_SPACE,  # SQLITE_FULL: "database or disk is full"
    14: IO_ERROR,  # SQLITE_CANTOPEN
}
# PostgreSQL SQLSTATE classes and codes (psycopg errors carry ``sqlstate``)
_SQLSTATES = {
    "53100": NO_SPACE,  # disk_full
    "53": NO_RESOURCES,  # insufficient resources
    "08": "the database cannot be reached: try again shortly",  # connection exception
    "57P01": "the database is restarting: try again shortly",  # admin_shutdown
    "57P02": "the database is restarting: try again shortly",  # crash_shutdown
    "57P03": "the database is starting up: try again shortly",  # cannot_connect_now
    "40001": BUSY,  # serialization_failure
    "40P01": BUSY,  # deadlock_detected
}
# AWS error codes (botocore ClientError: response["Error"]["Code"])
_AWS_CODES = {
    "ProvisionedThroughputExceededException": BUSY,
    "RequestLimitExceeded": BUSY,
    "ThrottlingException": BUSY,
    "Throttling": BUSY,
    "TooManyRequestsException": BUSY,
    "ServiceUnavailable": "an AWS service is unavailable: try again shortly",
    "InternalServerError": "an AWS service failed: try again shortly",
    "InternalFailure": "an AWS service failed: try again shortly",
    # the RDS Data API (the read model on Aurora): a cluster waking from 0 ACU past the wait,
    # or one that cannot answer now
    "DatabaseResumingException": "the database is resuming from a pause: try again shortly",
    "DatabaseUnavailableException": "the database cannot be reached: try again shortly",
    "ServiceUnavailableError": "an AWS service is unavailable: try again shortly",
    "InternalServerErrorException": "an AWS service failed: try again shortly",
}
_MAX_CHAIN = 16


def machine_fault(exc: BaseException) -> Unavailable | None:
    """The ``Unavailable`` that ``exc`` (or an exception it was raised from or while handling)
    amounts to, or None when it is not a fault of the machine (a bug: a 500)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        if isinstance(current, Unavailable):
            return current
        message = _message(current)
        if message is not None:
            fault = Unavailable(message)
            fault.__cause__ = current
            return fault
        current = current.__cause__ or current.__context__
    return None


def _message(exc: BaseException) -> str | None:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return None if code is None else _SQLITE_ERRORS.get(code & 0xFF)
    if isinstance(exc, OSError):
        return None if exc.errno is None else _OS_ERRORS.get(exc.errno)
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        return _SQLSTATES.get(sqlstate) or _SQLSTATES.get(sqlstate[:2])
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error")
        if isinstance(error, dict):
            return _AWS_CODES.get(str(error.get("Code", "")))
    return None
