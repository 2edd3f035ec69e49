"""Who is calling: turning an API request into a :class:`~stratoflow.auth.Principal`.

The resolver sees the same API Gateway (REST, v1) proxy event locally and on AWS, so the
identity source is the only thing that differs:

- local: ``Authorization: Bearer sft_...``, an API token checked against the home's
  identity store (``stratoflow tokens create``);
- AWS, ``AuthMode=COGNITO``: API Gateway's Cognito authorizer has already verified the JWT;
  its claims are in ``requestContext.authorizer.claims`` and ``cognito:groups`` carry roles
  (``<project>.<role>``, and the superuser group);
- AWS, ``AuthMode=IAM``: API Gateway has verified the SigV4 signature; the caller's ARN is in
  ``requestContext.identity.userArn`` and a role map (JSON, from the stack) gives its roles.

An authenticator raises :class:`~stratoflow.auth.Unauthenticated` (401) when it cannot vouch
for the caller. Nothing here trusts a header an outsider could set on AWS: API Gateway
overwrites ``requestContext``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from stratoflow.auth import Principal, Role, Unauthenticated, principal_from_groups
from stratoflow.errors import InvalidInput, Problem
from stratoflow.ports import Clock, Identities

Authenticator = Callable[[APIGatewayProxyEvent], Principal]

log = logging.getLogger("stratoflow.api.access")

_BEARER = re.compile(r"Bearer\s+(\S+)", re.IGNORECASE)


def token_authenticator(identities: Identities, clock: Clock) -> Authenticator:
    def authenticate(event: APIGatewayProxyEvent) -> Principal:
        sent = [
            value
            for name, values in (event.multi_value_headers or {}).items()
            if name.lower() == "authorization"
            for value in values or ()
        ]
        if len(sent) > 1:  # which one counts would be the proxy's choice, not the caller's
            raise Unauthenticated(
                f"the request has {len(sent)} Authorization headers; send exactly one"
            )
        header = event.headers.get("authorization") or event.headers.get("Authorization")
        if not header:
            raise Unauthenticated(
                "this API needs a token: send 'Authorization: Bearer <token>' "
                "(create one with 'stratoflow tokens create USER')"
            )
        match = _BEARER.fullmatch(header.strip())
        if match is None:
            raise Unauthenticated("the Authorization header must read 'Bearer <token>'")
        return identities.authenticate(match.group(1), clock.now())

    return authenticate


def cognito_authenticator(*, superuser_group: str = "stratoflow-admins") -> Authenticator:
    def authenticate(event: APIGatewayProxyEvent) -> Principal:
        claims = (event.request_context.authorizer.raw_event or {}).get("claims")
        if not isinstance(claims, Mapping) or not claims:
            raise Unauthenticated("no verified identity on the request (Cognito claims missing)")
        name = claims.get("cognito:username") or claims.get("username") or claims.get("sub")
        if not isinstance(name, str) or not name:
            raise Unauthenticated("the verified identity has no user name")
        groups, unsure = _groups(claims, _token_claims(event))
        if unsure:
            # a piece of a name is no grant: "x,analytics.admin" may be one group, and
            # neither the superuser group nor a project role is honoured from it
            log.warning(
                "cognito:groups of %s arrived comma-joined (%r) with no token that says where "
                "each name ends; a group name may hold a comma, so %r are not honoured",
                name, claims.get("cognito:groups"), unsure,
            )  # fmt: skip
        return principal_from_groups(name, groups, superuser_group=superuser_group)

    return authenticate


def _groups(
    claims: Mapping[str, Any], token: Mapping[str, Any] | None
) -> tuple[list[str], list[str]]:
    """The caller's groups from the verified claims, and the pieces left out because where
    each name ends is a guess. ``cognito:groups`` arrives as a list (a JWT's own) or, through the REST API's
    authorizer, as one string: the list joined with commas (``"a.viewer,b.admin"``), or
    ``"[a.viewer b.admin]"``. A Cognito group name may hold a comma but no whitespace, so a
    comma in the string may be inside a name: a group named ``x,stratoflow-admins`` reads
    like two groups. The token in the Authorization header (the one the authorizer
    verified, so the claims' own) has the list: when it is the same subject's and its groups,
    joined as the authorizer joins them, give the string exactly, its list is used.
    Otherwise the string is split on whitespace: a word with no comma is a whole name; the
    pieces of a word with one are left out (none of them is surely a group)."""
    value = claims.get("cognito:groups")
    if value is None:
        return [], []
    if isinstance(value, list):
        return [str(v) for v in value], []
    text = str(value).strip()
    listed = token.get("cognito:groups") if token is not None else None
    if (
        token is not None
        and isinstance(listed, list)
        and all(isinstance(g, str) for g in listed)
        and token.get("sub") == claims.get("sub")
        and text in (",".join(listed), f"[{','.join(listed)}]", f"[{' '.join(listed)}]")
    ):
        return list(listed), []
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    words = inner.split()
    unsure = [g for w in words if "," in w for g in w.split(",") if g]
    return [w for w in words if "," not in w], unsure


def _token_claims(event: APIGatewayProxyEvent) -> Mapping[str, Any] | None:
    """The payload of the JWT in the request's one Authorization header (``Bearer`` or not),
    its signature not checked here: API Gateway's Cognito authorizer checked that header's
    token before the request got here. None when there is not exactly one, or it is no JWT."""
    sent = [
        value
        for name, values in (event.multi_value_headers or {}).items()
        if name.lower() == "authorization"
        for value in values or ()
    ]
    header = event.headers.get("authorization") or event.headers.get("Authorization")
    if len(sent) > 1 or not header:
        return None
    token = header.strip()
    match = _BEARER.fullmatch(token)
    parts = (match.group(1) if match else token).split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def parse_role_map(text: str) -> dict[str, Principal]:
    """The IAM role map: ``{"<principal ARN>": "superuser" | {"<project>": "<role>"}}``.
    Bad input names the entry."""
    try:
        raw = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidInput([Problem("role_map", f"not JSON: {exc.msg}")]) from None
    if not isinstance(raw, dict):
        raise InvalidInput([Problem("role_map", "must be an object of ARN -> roles")])
    principals: dict[str, Principal] = {}
    for arn, grant in raw.items():
        if grant == "superuser":
            principals[arn] = Principal(arn, superuser=True)
            continue
        if not isinstance(grant, dict):
            raise InvalidInput(
                [Problem(f"role_map.{arn}", "must be 'superuser' or {project: role}")]
            )
        roles: dict[str, Role] = {}
        for project, role in grant.items():
            try:
                roles[project] = Role(role)
            except ValueError:
                raise InvalidInput(
                    [Problem(f"role_map.{arn}.{project}", f"unknown role {role!r}")]
                ) from None
        principals[arn] = Principal(arn, roles)
    return principals


def iam_authenticator(role_map: Mapping[str, Principal]) -> Authenticator:
    """IAM callers: an assumed-role ARN (``arn:aws:sts::1:assumed-role/Ops/session``) is
    looked up as its role (``arn:aws:iam::1:role/Ops``), so sessions need no entry each."""

    def authenticate(event: APIGatewayProxyEvent) -> Principal:
        arn = event.request_context.identity.user_arn
        if not arn:
            raise Unauthenticated("no verified identity on the request (IAM caller ARN missing)")
        for key in (arn, _role_of_session(arn)):
            if key and key in role_map:
                return role_map[key]
        raise Unauthenticated(f"{arn} has no roles in Stratoflow (add it to the role map)")

    return authenticate


def _role_of_session(arn: str) -> str | None:
    match = re.fullmatch(r"arn:(aws[\w-]*):sts::(\d{12}):assumed-role/([^/]+)/[^/]+", arn)
    if match is None:
        return None
    partition, account, role = match.groups()
    return f"arn:{partition}:iam::{account}:role/{role}"
