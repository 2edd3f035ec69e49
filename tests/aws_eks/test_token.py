"""The EKS bearer token, decoded and its signature recomputed here from the SigV4 rules.

What cannot be exercised here: EKS (or STS) accepting it. The nearest boundary is the token's
content: a presigned GET to STS GetCallerIdentity whose signature covers the ``x-k8s-aws-id``
header (the cluster name), which is what the EKS authenticator checks; the signature is
recomputed below independently of botocore, so a header listed but not signed would fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit

from botocore.credentials import Credentials

from stratoflow.adapters.aws.eks import TOKEN_PREFIX, eks_token

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def decode(token: str) -> str:
    assert token.startswith(TOKEN_PREFIX)
    body = token.removeprefix(TOKEN_PREFIX)
    assert "=" not in body  # base64url without padding, as the authenticator expects
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def sigv4_query_signature(url: str, headers: dict[str, str], secret: str) -> str:
    """The signature a SigV4 presigned GET with these signed headers must carry."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "X-Amz-Signature"
    ]
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query)
    )
    params = dict(query)
    signed = params["X-Amz-SignedHeaders"].split(";")
    all_headers = {"host": parts.netloc, **{k.lower(): v for k, v in headers.items()}}
    canonical_headers = "".join(f"{name}:{all_headers[name].strip()}\n" for name in signed)
    canonical_request = "\n".join(
        ["GET", parts.path or "/", canonical_query, canonical_headers, ";".join(signed),
         hashlib.sha256(b"").hexdigest()]
    )  # fmt: skip
    date, region, service, _ = params["X-Amz-Credential"].split("/")[1:]
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope,
         hashlib.sha256(canonical_request.encode()).hexdigest()]
    )  # fmt: skip
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_token_is_a_presigned_sts_url_with_the_cluster_header_signed() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    token = eks_token("prod-cluster", "eu-west-1", Credentials(KEY_ID, SECRET))
    url = decode(token)
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    assert parts.scheme == "https"
    assert parts.netloc == "sts.eu-west-1.amazonaws.com"
    assert params["Action"] == "GetCallerIdentity"
    assert params["Version"] == "2011-06-15"
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert params["X-Amz-Expires"] == "60"
    assert params["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id"
    assert params["X-Amz-Credential"].startswith(f"{KEY_ID}/")
    assert params["X-Amz-Credential"].endswith("/eu-west-1/sts/aws4_request")
    signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed_at <= datetime.now(UTC)
    assert "prod-cluster" not in url  # the cluster travels in the header, not the URL
    assert params["X-Amz-Signature"] == sigv4_query_signature(
        url, {"x-k8s-aws-id": "prod-cluster"}, SECRET
    )
    # signed for this cluster only: another cluster name does not verify
    assert params["X-Amz-Signature"] != sigv4_query_signature(
        url, {"x-k8s-aws-id": "other-cluster"}, SECRET
    )


def test_session_token_is_carried() -> None:
    url = decode(eks_token("c", "us-east-1", Credentials(KEY_ID, SECRET, token="SESSION/TOKEN+1")))
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["X-Amz-Security-Token"] == "SESSION/TOKEN+1"
    assert params["X-Amz-Signature"] == sigv4_query_signature(url, {"x-k8s-aws-id": "c"}, SECRET)
