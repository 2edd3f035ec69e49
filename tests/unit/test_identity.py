"""Local users, roles and API tokens (SQLite), and the CLI that manages them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from stratoflow.adapters.local.identity import SqliteIdentities, ensure_first_admin
from stratoflow.auth import Role, Unauthenticated
from stratoflow.cli import main
from stratoflow.errors import Conflict, InvalidInput, NotFound

T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def ids(tmp_path: Path) -> Iterator[SqliteIdentities]:
    store = SqliteIdentities(tmp_path / "stratoflow.db")
    yield store
    store.close()


def test_users_roles_and_their_principal(ids: SqliteIdentities) -> None:
    ids.create_user("alice", superuser=False, now=T0)
    ids.set_role("alice", "analytics", Role.VIEWER)
    ids.set_role("alice", "analytics", Role.EDITOR)  # replaces, not adds
    ids.set_role("alice", "ops", Role.OPERATOR)
    alice = ids.get_user("alice")
    assert alice.roles == {"analytics": Role.EDITOR, "ops": Role.OPERATOR}
    assert alice.principal.role_in("ops") is Role.OPERATOR
    ids.set_role("alice", "ops", None)
    assert ids.get_user("alice").roles == {"analytics": Role.EDITOR}


def test_bad_user_input_is_refused_and_changes_nothing(ids: SqliteIdentities) -> None:
    ids.create_user("alice", superuser=False, now=T0)
    with pytest.raises(Conflict, match="user alice already exists"):
        ids.create_user("alice", superuser=True, now=T0)
    assert not ids.get_user("alice").superuser
    with pytest.raises(InvalidInput, match="not a valid user name"):
        ids.create_user("al ice", superuser=False, now=T0)
    with pytest.raises(InvalidInput, match="not a valid project name"):
        ids.set_role("alice", "Bad Project", Role.VIEWER)
    with pytest.raises(NotFound, match="user bob not found"):
        ids.set_role("bob", "a", Role.VIEWER)
    assert [u.name for u in ids.list_users()] == ["alice"]


def test_a_token_authenticates_until_revoked(ids: SqliteIdentities) -> None:
    ids.create_user("alice", superuser=False, now=T0)
    ids.set_role("alice", "a", Role.OPERATOR)
    token, secret = ids.create_token("alice", "laptop", T0)
    assert secret.startswith(f"sft_{token.id}_")
    later = T0 + timedelta(hours=1)
    principal = ids.authenticate(secret, later)
    assert (principal.name, principal.roles) == ("alice", {"a": Role.OPERATOR})
    assert ids.list_tokens("alice")[0].last_used_at == later
    # the secret is not stored: nothing in the database file contains it
    raw = Path(ids.path).read_bytes() + Path(ids.path + "-wal").read_bytes()
    assert secret.split("_", 2)[2].encode() not in raw
    ids.revoke_token(token.id)
    with pytest.raises(Unauthenticated, match="invalid or revoked"):
        ids.authenticate(secret, later)


@pytest.mark.parametrize(
    "given",
    ["", "Bearer x", "sft_0123456789abcdef_short", "sft_zz23456789abcdef_" + "a" * 43],
)
def test_malformed_tokens_are_refused(ids: SqliteIdentities, given: str) -> None:
    with pytest.raises(Unauthenticated, match="malformed"):
        ids.authenticate(given, T0)


def test_a_wrong_secret_or_unknown_id_is_refused(ids: SqliteIdentities) -> None:
    ids.create_user("alice", superuser=False, now=T0)
    _, secret = ids.create_token("alice", "x", T0)
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    with pytest.raises(Unauthenticated):
        ids.authenticate(forged, T0)
    with pytest.raises(Unauthenticated):
        ids.authenticate(f"sft_{'0' * 16}_{secret.split('_', 2)[2]}", T0)
    with pytest.raises(NotFound):
        ids.revoke_token("0" * 16)


def test_the_first_admin_is_created_once(ids: SqliteIdentities) -> None:
    secret = ensure_first_admin(ids, T0)
    assert secret is not None
    assert ids.authenticate(secret, T0).superuser
    assert ensure_first_admin(ids, T0) is None
    assert [u.name for u in ids.list_users()] == ["admin"]


def test_the_cli_manages_users_and_tokens(tmp_path: Path) -> None:
    runner = CliRunner()
    home = ["--home", str(tmp_path)]

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, [*args, *home])
        assert result.exit_code == code, result.output
        return result.output

    cli("users", "add", "alice")
    cli("users", "grant", "alice", "analytics", "operator")
    assert "alice\tanalytics:operator" in cli("users", "list")
    secret = cli("tokens", "create", "alice", "--label", "ci").strip().splitlines()[-1]
    ids = SqliteIdentities(tmp_path / "stratoflow.db")
    try:
        assert ids.authenticate(secret, T0).role_in("analytics") is Role.OPERATOR
        token_id = ids.list_tokens()[0].id
    finally:
        ids.close()
    assert f"{token_id}\talice\tci\tactive" in cli("tokens", "list")
    cli("tokens", "revoke", token_id)
    assert "revoked" in cli("tokens", "list", "--user", "alice")
    cli("users", "revoke", "alice", "analytics")
    assert "alice\t-" in cli("users", "list")
    assert "already exists" in cli("users", "add", "alice", code=2)
    assert "user nobody not found" in cli("users", "grant", "nobody", "a", "viewer", code=2)


def test_a_tokens_use_is_written_at_most_once_a_minute(ids: SqliteIdentities) -> None:
    ids.create_user("alice", superuser=False, now=T0)
    _, secret = ids.create_token("alice", "poller", T0)
    ids.authenticate(secret, T0)
    for second in range(1, 60):  # a page polling every second: no write
        ids.authenticate(secret, T0 + timedelta(seconds=second))
    assert ids.list_tokens("alice")[0].last_used_at == T0
    ids.authenticate(secret, T0 + timedelta(seconds=61))
    assert ids.list_tokens("alice")[0].last_used_at == T0 + timedelta(seconds=61)


def test_the_clis_user_administration_is_in_the_audit_log(tmp_path: Path) -> None:
    """`users` and `tokens` change who may do what without the API: each change is
    journalled with it (same transaction), and the server's feed brings it to the log."""
    from stratoflow.adapters.local.feed import LocalFeed
    from stratoflow.adapters.local.sqlite_store import SqliteStore
    from stratoflow.readmodel import ReadModel

    runner = CliRunner()
    home = ["--home", str(tmp_path)]

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, [*args, *home])
        assert result.exit_code == code, result.output
        return result.output

    cli("users", "add", "alice")
    cli("users", "grant", "alice", "analytics", "operator")
    cli("tokens", "create", "alice", "--label", "ci")
    cli("users", "grant", "nobody", "analytics", "viewer", code=2)  # refused: no line
    cli("users", "revoke", "alice", "analytics")
    store = SqliteStore(tmp_path / "stratoflow.db")
    readmodel = ReadModel.open(str(tmp_path / "readmodel.db"))
    feed = LocalFeed(store, readmodel, linger=0)
    feed.start()
    try:
        assert feed.flush()
        in_project = readmodel.list_audit(project="analytics", limit=10).items
        everywhere = readmodel.list_audit(limit=10).items
    finally:
        feed.close()
        readmodel.close()
        store.close()
    assert [(e.action, e.target, e.details) for e in in_project] == [
        ("user.revoke", "user/alice", {}),
        ("user.grant", "user/alice", {"role": "operator"}),
    ]
    assert all(e.actor.startswith("cli:") for e in everywhere)
    assert sorted((e.action, e.project) for e in everywhere) == [
        ("token.create", ""),
        ("user.add", ""),
        ("user.grant", "analytics"),
        ("user.revoke", "analytics"),
    ]
