"""Identity from a request, for each place an identity can come from."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from tests.fakes import FakeClock

from stratoflow.adapters.local.identity import SqliteIdentities
from stratoflow.api.access import (
    cognito_authenticator,
    iam_authenticator,
    parse_role_map,
    token_authenticator,
)
from stratoflow.auth import Role, Unauthenticated
from stratoflow.errors import InvalidInput

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def event(headers: dict[str, str] | None = None, **context: Any) -> APIGatewayProxyEvent:
    return APIGatewayProxyEvent(
        {"httpMethod": "GET", "path": "/runs", "headers": headers or {}, "requestContext": context}
    )


@pytest.fixture
def ids(tmp_path: Path) -> Iterator[SqliteIdentities]:
    store = SqliteIdentities(tmp_path / "db")
    yield store
    store.close()


def test_a_bearer_token_names_its_user(ids: SqliteIdentities) -> None:
    ids.create_user("alice", superuser=False, now=T0)
    ids.set_role("alice", "a", Role.VIEWER)
    _, secret = ids.create_token("alice", "t", T0)
    auth = token_authenticator(ids, FakeClock(T0))
    assert auth(event({"Authorization": f"Bearer {secret}"})).roles == {"a": Role.VIEWER}
    assert auth(event({"authorization": f"bearer  {secret} "})).name == "alice"


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({}, "this API needs a token"),
        ({"Authorization": "Basic abc"}, "must read 'Bearer <token>'"),
        ({"Authorization": "Bearer sft_nope"}, "malformed API token"),
    ],
)
def test_requests_without_a_valid_token_are_refused(
    ids: SqliteIdentities, headers: dict[str, str], words: str
) -> None:
    with pytest.raises(Unauthenticated, match=words):
        token_authenticator(ids, FakeClock(T0))(event(headers))


def test_two_authorization_headers_are_refused_whichever_is_valid(
    ids: SqliteIdentities,
) -> None:
    """The last of two headers won: 'Bearer bogus' then a valid one authenticated; which one
    a proxy or a log keeps is not the caller's to leave open."""
    ids.create_user("alice", superuser=False, now=T0)
    _, secret = ids.create_token("alice", "t", T0)
    auth = token_authenticator(ids, FakeClock(T0))
    for sent in (["Bearer bogus", f"Bearer {secret}"], [f"Bearer {secret}", f"Bearer {secret}"]):
        two = APIGatewayProxyEvent(
            {"httpMethod": "GET", "path": "/runs", "requestContext": {},
             "headers": {"Authorization": sent[-1]},
             "multiValueHeaders": {"Authorization": sent}}
        )  # fmt: skip
        with pytest.raises(Unauthenticated, match="2 Authorization headers"):
            auth(two)
    one = APIGatewayProxyEvent(
        {"httpMethod": "GET", "path": "/runs", "requestContext": {},
         "headers": {"authorization": f"Bearer {secret}"},
         "multiValueHeaders": {"authorization": [f"Bearer {secret}"]}}
    )  # fmt: skip
    assert auth(one).name == "alice"


def id_token(payload: dict[str, Any]) -> str:
    """An ID token as the client sends it (API Gateway checked its signature; none here)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(payload)}.c2lnbmF0dXJl"


def cognito_event(groups: Any, token_groups: list[str] | None = None) -> APIGatewayProxyEvent:
    """A request as the REST API's Cognito authorizer hands it over: the verified claims
    (``cognito:groups`` as the authorizer serialised it) and the token in Authorization."""
    claims = {"sub": "u-1", "cognito:username": "carol", "cognito:groups": groups}
    headers = {}
    if token_groups is not None:
        headers["Authorization"] = id_token({**claims, "cognito:groups": token_groups})
    return event(headers, authorizer={"claims": claims})


@pytest.mark.parametrize(
    ("groups", "token_groups"),
    [
        (["a.operator", "stratoflow-admins"], None),  # a JWT list, as it is
        ("[a.operator stratoflow-admins]", None),  # names hold no whitespace: unambiguous
        # the REST authorizer joins the list with commas; the token says where names end
        ("a.operator,stratoflow-admins", ["a.operator", "stratoflow-admins"]),
        ("[a.operator,stratoflow-admins]", ["a.operator", "stratoflow-admins"]),
    ],
)
def test_cognito_claims_in_every_shape_the_authorizer_passes(
    groups: Any, token_groups: list[str] | None
) -> None:
    principal = cognito_authenticator()(cognito_event(groups, token_groups))
    assert (principal.name, principal.roles, principal.superuser) == (
        "carol", {"a": Role.OPERATOR}, True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("groups", "token_groups"),
    [
        (["x,stratoflow-admins"], None),
        ("x,stratoflow-admins", ["x,stratoflow-admins"]),
        ("[x,stratoflow-admins]", ["x,stratoflow-admins"]),
        ("[analysts,stratoflow-admins]", ["analysts,stratoflow-admins"]),
        # no token to say where names end: a comma may be inside one, so the superuser
        # group is not honoured from that form
        ("x,stratoflow-admins", None),
        ("[analysts,stratoflow-admins]", None),
        # a token whose groups do not give the verified string is not the verified token
        ("x,stratoflow-admins", ["x", "stratoflow-admins", "y"]),
        ("a.viewer x,stratoflow-admins", None),
    ],
)
def test_a_group_named_with_a_comma_grants_no_superuser(
    groups: Any, token_groups: list[str] | None
) -> None:
    principal = cognito_authenticator()(cognito_event(groups, token_groups))
    assert not principal.superuser


@pytest.mark.parametrize(
    "groups",
    ["x,analytics.admin", "[x,analytics.admin]", "[a.viewer x,analytics.admin]"],
)
def test_a_group_named_with_a_comma_grants_no_project_role(groups: str) -> None:
    # one group named "x,analytics.admin" (no token says where names end) is not the
    # analytics.admin group: a piece of a name is no grant, superuser or project role
    principal = cognito_authenticator()(cognito_event(groups))
    assert "analytics" not in principal.roles
    if groups.startswith("[a.viewer "):
        assert principal.roles == {"a": Role.VIEWER}  # a name between spaces is whole


def test_a_token_of_another_subject_does_not_split_the_groups() -> None:
    claims = {"sub": "u-1", "cognito:username": "carol", "cognito:groups": "x,stratoflow-admins"}
    forged = id_token({"sub": "u-2", "cognito:groups": ["x", "stratoflow-admins"]})
    principal = cognito_authenticator()(
        event({"Authorization": forged}, authorizer={"claims": claims})
    )
    assert not principal.superuser


def test_cognito_without_claims_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="Cognito claims missing"):
        cognito_authenticator()(event(authorizer={}))
    with pytest.raises(Unauthenticated, match="no user name"):
        cognito_authenticator()(event(authorizer={"claims": {"cognito:groups": "a.viewer"}}))


ROLE_MAP = """{
  "arn:aws:iam::123456789012:role/Ops": {"analytics": "operator"},
  "arn:aws:iam::123456789012:user/root-ish": "superuser"
}"""


def test_iam_callers_get_the_roles_of_their_role_or_user() -> None:
    auth = iam_authenticator(parse_role_map(ROLE_MAP))
    session = "arn:aws:sts::123456789012:assumed-role/Ops/alice-session"
    assert auth(event(identity={"userArn": session})).roles == {"analytics": Role.OPERATOR}
    user = "arn:aws:iam::123456789012:user/root-ish"
    assert auth(event(identity={"userArn": user})).superuser
    with pytest.raises(Unauthenticated, match="has no roles in Stratoflow"):
        auth(event(identity={"userArn": "arn:aws:iam::123456789012:role/Other"}))
    with pytest.raises(Unauthenticated, match="IAM caller ARN missing"):
        auth(event(identity={}))


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("[1]", "role_map"),
        ("{not json", "role_map"),
        ('{"arn:x": 3}', "role_map.arn:x"),
        ('{"arn:x": {"p": "owner"}}', "role_map.arn:x.p"),
    ],
)
def test_a_bad_role_map_names_the_entry(text: str, path: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_role_map(text)
    assert info.value.problems[0].path == path
