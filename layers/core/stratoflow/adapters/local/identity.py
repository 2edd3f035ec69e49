"""Users, roles and API tokens in the local runtime's SQLite file.

A token reads ``sft_<id>_<secret>``: the id finds the row, the secret is checked against its
SHA-256 in constant time. Secrets are 32 random bytes, so a plain hash is enough (there is
nothing to brute-force); only the hash is stored, and the secret is shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stratoflow.adapters.local._sqlite import SqliteFile
from stratoflow.adapters.local.sqlite_audit import AUDIT_SCHEMA
from stratoflow.audit import encode_entry
from stratoflow.auth import Principal, Role, Unauthenticated
from stratoflow.errors import Conflict, InvalidInput, NotFound, Problem
from stratoflow.faults import machine_fault
from stratoflow.ports import ApiToken, Identities, User
from stratoflow.readmodel import AuditEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, superuser INTEGER NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
    user TEXT NOT NULL REFERENCES users(name), project TEXT NOT NULL, role TEXT NOT NULL,
    PRIMARY KEY (user, project)
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name), label TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL, created_at TEXT NOT NULL, last_used_at TEXT,
    revoked INTEGER NOT NULL DEFAULT 0
);
"""

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
PROJECT_NAME = re.compile(r"[a-z0-9_-]{1,128}")
TOKEN = re.compile(r"sft_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# A token's last use is written at most this often: a page polling once a second would
# otherwise write the database the scheduler writes, on every request.
USE_RECORDED_EVERY = timedelta(minutes=1)


class SqliteIdentities(SqliteFile, Identities):
    def __init__(self, path: str | Path) -> None:
        super().__init__(path, SCHEMA + AUDIT_SCHEMA)
        self._used: dict[str, datetime] = {}  # token id -> the last use written
        self._journal: AuditEntry | None = None

    @contextmanager
    def journalled(self, entry: AuditEntry) -> Iterator[None]:
        """The first change made within is journalled as ``entry`` in its own transaction
        (the state file's audit journal, ``sqlite_audit``), whence the server's feed brings
        it to the audit log: the CLI's user administration changes this file, not the API."""
        self._journal = entry
        try:
            yield
        finally:
            self._journal = None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with super()._tx() as conn:
            yield conn
            entry, self._journal = self._journal, None
            if entry is not None:  # settled at once: the change commits with it or not at all
                conn.execute(
                    "INSERT OR IGNORE INTO audit_journal (id, entry) VALUES (?, ?)",
                    (entry.id, encode_entry(entry)),
                )

    # ------------------------------------------------------------ users
    def create_user(self, name: str, *, superuser: bool, now: datetime) -> User:
        if not USER_NAME.fullmatch(name):
            raise InvalidInput(
                [Problem("name", f"{name!r} is not a valid user name ([A-Za-z0-9_.@-], 1-128)")]
            )
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone():
                raise Conflict(f"user {name} already exists")
            conn.execute("INSERT INTO users VALUES (?, ?, ?)", (name, int(superuser), _iso(now)))
        return self.get_user(name)

    def get_user(self, name: str) -> User:
        conn = self._conn()
        row = conn.execute("SELECT * FROM users WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"user {name} not found")
        roles = {
            r["project"]: Role(r["role"])
            for r in conn.execute(
                "SELECT project, role FROM memberships WHERE user=? ORDER BY project", (name,)
            )
        }
        return User(name, bool(row["superuser"]), datetime.fromisoformat(row["created_at"]), roles)

    def list_users(self) -> list[User]:
        names = [r["name"] for r in self._conn().execute("SELECT name FROM users ORDER BY name")]
        return [self.get_user(name) for name in names]

    def set_role(self, name: str, project: str, role: Role | None) -> User:
        if not PROJECT_NAME.fullmatch(project):
            raise InvalidInput([Problem("project", f"{project!r} is not a valid project name")])
        with self._tx() as conn:
            if not conn.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone():
                raise NotFound(f"user {name} not found")
            if role is None:
                conn.execute("DELETE FROM memberships WHERE user=? AND project=?", (name, project))
            else:
                conn.execute(
                    "INSERT INTO memberships VALUES (?, ?, ?) "
                    "ON CONFLICT (user, project) DO UPDATE SET role=excluded.role",
                    (name, project, role.value),
                )
        return self.get_user(name)

    # ------------------------------------------------------------ tokens
    def create_token(self, user: str, label: str, now: datetime) -> tuple[ApiToken, str]:
        self.get_user(user)
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO api_tokens (id, user, label, secret_sha256, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (token_id, user, label, _digest(secret), _iso(now)),
            )
        return ApiToken(token_id, user, label, now), f"sft_{token_id}_{secret}"

    def _token(self, row: sqlite3.Row) -> ApiToken:
        return ApiToken(
            row["id"], row["user"], row["label"], datetime.fromisoformat(row["created_at"]),
            _dt(row["last_used_at"]), bool(row["revoked"]),
        )  # fmt: skip

    def list_tokens(self, user: str | None = None) -> list[ApiToken]:
        sql = "SELECT * FROM api_tokens"
        args: tuple[str, ...] = ()
        if user is not None:
            sql, args = sql + " WHERE user=?", (user,)
        return [self._token(r) for r in self._conn().execute(sql + " ORDER BY created_at", args)]

    def revoke_token(self, token_id: str) -> ApiToken:
        with self._tx() as conn:
            if (
                conn.execute("UPDATE api_tokens SET revoked=1 WHERE id=?", (token_id,)).rowcount
                == 0
            ):
                raise NotFound(f"token {token_id} not found")
            row = conn.execute("SELECT * FROM api_tokens WHERE id=?", (token_id,)).fetchone()
        return self._token(row)

    def authenticate(self, secret: str, now: datetime) -> Principal:
        match = TOKEN.fullmatch(secret.strip())
        if match is None:
            raise Unauthenticated("malformed API token (expected sft_<id>_<secret>)")
        token_id, given = match.groups()
        conn = self._conn()
        row = conn.execute(
            "SELECT user, secret_sha256, revoked FROM api_tokens WHERE id=?", (token_id,)
        ).fetchone()
        # compare even when the row is missing, so timing says nothing about which ids exist
        stored = row["secret_sha256"] if row is not None else _digest("")
        if not hmac.compare_digest(stored, _digest(given)) or row is None or row["revoked"]:
            raise Unauthenticated("invalid or revoked API token")
        written = self._used.get(token_id)
        if written is None or not written <= now < written + USE_RECORDED_EVERY:
            try:
                conn.execute(
                    "UPDATE api_tokens SET last_used_at=? WHERE id=?", (_iso(now), token_id)
                )
                self._used[token_id] = now
            except sqlite3.Error as exc:  # bookkeeping: a full disk must not lock everyone out
                if machine_fault(exc) is None:
                    raise
        return self.get_user(row["user"]).principal


FIRST_ADMIN = "admin"


def ensure_first_admin(identities: Identities, now: datetime) -> str | None:
    """On a fresh install (no users yet), create the superuser ``admin`` and return a token
    secret for it, to be shown once; otherwise None."""
    if identities.list_users():
        return None
    identities.create_user(FIRST_ADMIN, superuser=True, now=now)
    _, secret = identities.create_token(FIRST_ADMIN, "first admin", now)
    return secret
