"""The api function's edge on AWS: that an event came through this stack's API Gateway, and
who its authorizer says the caller is. The local server authenticates with API tokens
(``access.token_authenticator``) instead."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from stratoflow.adapters.aws.settings import SettingsError
from stratoflow.api.access import (
    Authenticator,
    cognito_authenticator,
    iam_authenticator,
    parse_role_map,
)
from stratoflow.auth import Principal, Unauthenticated

AUTH_MODES = ("IAM", "COGNITO")
# What a Lambda function may answer a synchronous invocation with: the proxy response as the
# runtime serialises it (python3.12: JSON, text as UTF-8). API Gateway answers 502 for more.
LAMBDA_RESPONSE_MAX = 6 * 1024 * 1024
_HEADROOM = 64 * 1024  # headers and the envelope, at most (a body's bound below)
_WIDEST = 6  # bytes a character of the body may take in the envelope (a control: \u00XX)

log = logging.getLogger("stratoflow.api.gateway")

GatewayCheck = Callable[[Mapping[str, Any]], "str | None"]


def api_gateway_check(environ: Mapping[str, str]) -> GatewayCheck:
    """A check that an api event came through this stack's API Gateway (and so through its
    IAM or Cognito authorizer): ``requestContext.apiId`` is ``STRATOFLOW_API_ID``, the stage is
    ``STRATOFLOW_API_STAGE`` (when set) and the identity has the shape the auth mode's
    authorizer leaves (a caller ARN and account for IAM, token claims for COGNITO). It returns
    what is wrong, or None. Someone who may invoke the function can still forge all of it (the
    API id is no secret); the template keeps every role that runs user work from invoking the
    stack's functions, and this refuses the events that do not even look right.

    Without ``STRATOFLOW_API_ID`` nothing is checked, except inside Lambda
    (``AWS_LAMBDA_FUNCTION_NAME`` set), where a missing id is an error at cold start."""
    api_id = environ.get("STRATOFLOW_API_ID", "").strip()
    stage = environ.get("STRATOFLOW_API_STAGE", "").strip()
    mode = environ.get("STRATOFLOW_AUTH_MODE", "").strip().upper()
    if not api_id:
        if environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            raise SettingsError(
                "STRATOFLOW_API_ID is not set: the api function refuses events it cannot "
                "tell came through its API Gateway"
            )
        return lambda event: None

    def check(event: Mapping[str, Any]) -> str | None:
        context = event.get("requestContext")
        if not isinstance(context, Mapping):
            return "the event has no requestContext: it did not come through API Gateway"
        if context.get("apiId") != api_id:
            return "the event's requestContext.apiId is not this stack's API"
        if stage and context.get("stage") != stage:
            return f"the event's requestContext.stage is not {stage!r}"
        if mode == "COGNITO":
            authorizer = context.get("authorizer")
            claims = authorizer.get("claims") if isinstance(authorizer, Mapping) else None
            if not isinstance(claims, Mapping) or not claims:
                return "the event carries no Cognito claims from the API's authorizer"
        else:
            identity = context.get("identity")
            if not isinstance(identity, Mapping):
                return "the event's requestContext has no identity"
            arn, account = identity.get("userArn"), identity.get("accountId")
            if not isinstance(arn, str) or not isinstance(account, str):
                return "the event's identity has no IAM caller (userArn and accountId)"
            if f":{account}:" not in arn:
                return "the event's identity.userArn is not in identity.accountId"
        return None

    return check


def api_authenticator(environ: Mapping[str, str]) -> Authenticator:
    """Who the API caller is, as the stack says (``STRATOFLOW_AUTH_MODE``: IAM with the role
    map in ``STRATOFLOW_IAM_ROLE_MAP``, or COGNITO). Fails closed: a missing or unknown mode is
    an error at cold start, never an API where everyone is an administrator. An event that
    fails ``api_gateway_check`` is unauthenticated whatever identity it names."""
    mode = environ.get("STRATOFLOW_AUTH_MODE", "").strip().upper()
    if mode == "COGNITO":
        inner = cognito_authenticator()
    elif mode == "IAM":
        inner = iam_authenticator(parse_role_map(environ.get("STRATOFLOW_IAM_ROLE_MAP", "{}")))
    else:
        raise SettingsError(
            f"STRATOFLOW_AUTH_MODE must be one of {', '.join(AUTH_MODES)}, not {mode or 'unset'!r}"
        )
    from_gateway = api_gateway_check(environ)

    def authenticate(event: APIGatewayProxyEvent) -> Principal:
        problem = from_gateway(event.raw_event)
        if problem is not None:
            raise Unauthenticated(problem)
        return inner(event)

    return authenticate


def within_lambda_limit(response: Mapping[str, Any], method: str, path: str) -> dict[str, Any]:
    """``response`` if Lambda can return it (``LAMBDA_RESPONSE_MAX``); else a 500 saying how
    large it was and how to ask for less, instead of the 502 API Gateway would give. The API
    keeps its answers within the limit (pages of logs and outputs, workflows refused when
    applied); this is the last guard, for what no route bounds (a run view of very many
    tasks, say). The local server has no such limit and answers whole."""
    body = response.get("body")
    if not isinstance(body, str) or len(body) * _WIDEST <= LAMBDA_RESPONSE_MAX - _HEADROOM:
        return dict(response)
    size = len(json.dumps(response, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size <= LAMBDA_RESPONSE_MAX:
        return dict(response)
    log.warning("an answer of %d bytes to %s %s is over Lambda's limit", size, method, path)
    message = (
        f"the answer to {method} {path[:200]} would be {size:,} bytes; a Lambda function "
        f"answers at most {LAMBDA_RESPONSE_MAX:,}: ask for less (a smaller `limit`; a log or "
        "output value by `offset` and `limit`; a run's `/states`, or `since`, rather than its "
        "whole view)"
    )
    return {
        "statusCode": 500,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"error": "response_too_large", "message": message, "problems": []}),
        "isBase64Encoded": False,
    }
