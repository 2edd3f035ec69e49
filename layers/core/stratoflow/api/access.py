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

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from stratoflow.auth import Principal, Role, Unauthenticated, principal_from_groups
from stratoflow.errors import InvalidInput, Problem
from stratoflow.ports import Clock, Identities

Authenticator = Callable[[APIGatewayProxyEvent], Principal]

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
        return principal_from_groups(
            name, _groups(claims.get("cognito:groups")), superuser_group=superuser_group
        )

    return authenticate


def _groups(value: Any) -> list[str]:
    """``cognito:groups`` arrives as a list (JWT) or, through the REST authorizer, as a
    string such as ``"[a.viewer b.admin]"`` or ``"a.viewer,b.admin"``."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value).strip().strip("[]")
    return [g for g in re.split(r"[,\s]+", text) if g]


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
