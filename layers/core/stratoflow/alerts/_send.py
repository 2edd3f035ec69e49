"""Sending one alert to one channel: the provider's request, and whether a failure is worth
retrying. Secrets are resolved here, at send time, through the injected ``resolve_secret``;
an error message never carries a resolved value."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import TYPE_CHECKING, Any

from stratoflow.alerts._channels import Channel, MissingSecret, ResolveSecret, resolve_refs
from stratoflow.alerts._messages import (
    AlertFacts,
    dingtalk_payload,
    email_html,
    feishu_payload,
    pagerduty_payload,
    slack_payload,
    teams_payload,
    telegram_payload,
    webex_payload,
    wecom_payload,
)
from stratoflow.templating import TemplateError, render

if TYPE_CHECKING:  # imported where an alert is sent: a scheduler without alerts never loads it
    import httpx

MAX_ERROR_CHARS = 500
MAX_BODY_CHARS = 4096  # of a receiver's answer read for an error (then scrubbed, then cut)
# the longest a receiver's Retry-After holds a delivery back (a longer one is read as this)
MAX_RETRY_AFTER = 3600.0

_sending = threading.local()


class _NotWhileSending(logging.Filter):
    """httpx logs each request's URL at INFO; a Telegram token or a webhook URL is a secret,
    so nothing httpx logs on a thread that is sending an alert is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_sending, "active", False)


_HTTPX_FILTER = _NotWhileSending()
logging.getLogger("httpx").addFilter(_HTTPX_FILTER)


class DeliveryError(Exception):
    """A send that did not go through. ``permanent``: trying again cannot help (a 4xx, an
    unknown secret, a bad template); otherwise the outbox retries with backoff, waiting at
    least ``retry_after`` seconds when the receiver said so (a 429 or 503's Retry-After)."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message[:MAX_ERROR_CHARS])
        self.permanent = permanent
        self.retry_after = retry_after


def retry_after(header: str | None, now: float) -> float | None:
    """Seconds a receiver asks to wait (RFC 9110 Retry-After: delay-seconds or an HTTP date,
    read against ``now``), at most ``MAX_RETRY_AFTER``; None when absent or unreadable."""
    if header is None:
        return None
    text = header.strip()
    if text.isascii() and text.isdigit():
        seconds = float(int(text[:12]))
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT; a zone-less form is read as such
            when = when.replace(tzinfo=UTC)
        seconds = max(when.timestamp() - now, 0.0)
    return min(seconds, MAX_RETRY_AFTER)


class Skipped(Exception):
    """Nothing to send on this channel type (a resolve on a channel without incidents)."""


class Sender:
    def __init__(
        self,
        resolve_secret: ResolveSecret,
        *,
        timeout: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._resolve = resolve_secret
        self._timeout = timeout
        self._wall = wall_clock
        self._transport = transport

    def send(self, channel: Channel, facts: AlertFacts, key: str) -> None:
        """Deliver or raise :class:`DeliveryError` / :class:`Skipped`."""
        if facts.action == "resolve" and channel.type != "pagerduty":
            raise Skipped("only PagerDuty keeps incidents to resolve")
        secrets: list[str] = []

        def value(setting: str) -> str:
            raw = channel.setting(setting)
            try:
                resolved = resolve_refs(raw, channel.project, self._resolve)
            except MissingSecret as exc:
                raise DeliveryError(
                    f"settings.{setting}: {exc} (stratoflow secrets set {exc.name} "
                    f"--project {channel.project})",
                    permanent=True,
                ) from None
            if resolved != raw:
                secrets.append(resolved)
            return resolved

        _sending.secrets = secrets  # _post scrubs a receiver's answer before cutting it
        try:
            getattr(self, f"_{channel.type}")(channel, facts, key, value)
        except DeliveryError as exc:
            raise DeliveryError(
                _scrub(str(exc), secrets), permanent=exc.permanent, retry_after=exc.retry_after
            ) from None
        finally:
            _sending.secrets = []

    # ------------------------------------------------------------ HTTP providers
    @contextmanager
    def _client(self) -> Iterator[httpx.Client]:
        import httpx  # here: ~0.2 s of CPU at the start of every `stratoflow run` otherwise

        with httpx.Client(
            timeout=self._timeout, transport=self._transport, follow_redirects=False
        ) as client:
            yield client

    def _post(
        self,
        url: str,
        body: Any,
        *,
        method: str = "POST",
        headers: dict[str, str] | None = None,
        ok: Callable[[httpx.Response], str | None] = lambda r: None,
    ) -> None:
        import httpx

        _sending.active = True
        try:
            with self._client() as client:
                response = client.request(method, url, json=body, headers=headers)
        except httpx.InvalidURL as exc:
            raise DeliveryError(f"invalid URL: {exc}", permanent=True) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(_scrub(f"{type(exc).__name__}: {exc}", _given())) from None
        finally:
            _sending.active = False
        status = response.status_code
        if status >= 300:
            # scrubbed whole, then cut: a cut first could leave the start of a secret
            text = _scrub(response.text[:MAX_BODY_CHARS], _given())[:200]
            retry = status in (408, 425, 429) or status >= 500
            wait = (
                retry_after(response.headers.get("retry-after"), self._wall())
                if status in (429, 503)
                else None
            )
            raise DeliveryError(f"HTTP {status}: {text}", permanent=not retry, retry_after=wait)
        problem = ok(response)
        if problem is not None:
            raise DeliveryError(problem)

    def _pagerduty(self, ch: Channel, facts: AlertFacts, key: str, value: Any) -> None:
        base = value("base_url").rstrip("/")
        self._post(f"{base}/v2/enqueue", pagerduty_payload(facts, value("routing_key")))

    def _webex(self, ch: Channel, facts: AlertFacts, key: str, value: Any) -> None:
        base = value("base_url").rstrip("/")
        self._post(
            f"{base}/v1/messages",
            webex_payload(facts, value("room_id")),
            headers={"Authorization": f"Bearer {value('token')}"},
        )

    def _slack(self, ch: Channel, facts: AlertFacts, key: str, value: Any) -> None:
        self._post(value("url"), slack_payload(facts))

    def _teams(self, ch: Channel, facts: AlertFacts, key: str, value: Any) -> None:
        self._post(value("url"), teams_payload(facts))

    def _telegram(self, ch: Channel, facts: AlertFacts, key: str, value: Any) -> None:
        base = value("base_url").rstrip("/")
        self._post(
            f"{base}/bot{value('token')}/sendMessage",
            telegram_payload(facts, value("chat_id")),
            ok=lambda r: _json_says(r, "ok", True, "description"),
        )

    def _feishu(self, ch: Channel, facts: AlertFacts, key: str, value: Any) -> None:
        body = feishu_payload(facts)
        secret = value("secret")
        if secret:  # signed bot: HMAC-SHA256 keyed by "timestamp\nsecret" over nothing
            stamp = str(int(self._wall()))
            digest = hmac.new(f"{stamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
            body = {"timestamp": stamp, "sign": base64.b64encode(digest).decode(), **body}
        self._post(value("url"), body, ok=lambda r: _json_says(r, "code", 0, "msg"))

    def _dingtalk(self, ch: Channel, facts: AlertFacts, key: str, value: Any) -> None:
        url = value("url")
        secret = value("secret")
        if secret:  # signed robot: HMAC-SHA256 of "timestamp\nsecret", in the query
            stamp = str(int(self._wall() * 1000))
            digest = hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256)
            sign = urllib.parse.quote_plus(base64.b64encode(digest.digest()).decode())
            url += f"{'&' if '?' in url else '?'}timestamp={stamp}&sign={sign}"
        self._post(url, dingtalk_payload(facts), ok=lambda r: _json_says(r, "errcode", 0, "errmsg"))

    def _wecom(self, ch: Channel, facts: AlertFacts, key: str, value: Any) -> None:
        self._post(
            value("url"), wecom_payload(facts), ok=lambda r: _json_says(r, "errcode", 0, "errmsg")
        )

    def _webhook(self, ch: Channel, facts: AlertFacts, key: str, value: Any) -> None:
        context = {"alert": {**facts.to_json(), "subject": facts.subject, "text": facts.plain(),
                             "key": key}}  # fmt: skip
        template = ch.setting("body")
        if template:
            try:
                body = json.loads(render(template, context))
            except TemplateError as exc:
                raise DeliveryError(f"settings.body: {exc}", permanent=True) from None
            except ValueError as exc:
                raise DeliveryError(
                    f"settings.body did not render JSON: {exc}", permanent=True
                ) from None
        else:
            body = context["alert"]
        headers = {name: value(f"header.{name}") for name in ch.headers()}
        headers.setdefault("Idempotency-Key", key)
        self._post(value("url"), body, method=ch.setting("method"), headers=headers)

    # ------------------------------------------------------------ email, SNS
    def _email(self, ch: Channel, facts: AlertFacts, key: str, value: Any) -> None:
        # imported here: only an email channel's delivery needs them, and they cost every
        # process that loads the alerts (`stratoflow run`, the server) ~15 ms of start-up
        import smtplib
        import ssl
        from email.message import EmailMessage
        from email.utils import make_msgid

        message = EmailMessage()
        message["Subject"] = facts.subject
        message["From"] = value("from")
        message["To"] = ", ".join(a.strip() for a in value("to").split(",") if a.strip())
        message["Message-ID"] = make_msgid(idstring=hashlib.sha256(key.encode()).hexdigest()[:16])
        message.set_content(facts.plain())
        message.add_alternative(email_html(facts), subtype="html")
        security = ch.setting("security")
        port = int(value("port") or {"ssl": 465, "starttls": 587}.get(security, 25))
        host = value("host")
        try:
            smtp: smtplib.SMTP
            if security == "ssl":
                smtp = smtplib.SMTP_SSL(host, port, timeout=self._timeout,
                                        context=ssl.create_default_context())  # fmt: skip
            else:
                smtp = smtplib.SMTP(host, port, timeout=self._timeout)
            with smtp:
                if security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if ch.setting("username"):
                    smtp.login(value("username"), value("password"))
                smtp.send_message(message)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused,
                smtplib.SMTPSenderRefused, smtplib.SMTPNotSupportedError) as exc:  # fmt: skip
            raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}") from None

    def _sns(self, ch: Channel, facts: AlertFacts, key: str, value: Any) -> None:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        client = boto3.client(
            "sns",
            region_name=value("region") or None,
            endpoint_url=value("endpoint_url") or None,
        )
        subject = "".join(c for c in facts.subject if 32 <= ord(c) < 127)[:100]
        try:
            client.publish(
                TopicArn=value("topic_arn"),
                Subject=subject,
                Message=facts.plain(),
                MessageAttributes={
                    "event": {"DataType": "String", "StringValue": facts.event},
                    "workflow": {
                        "DataType": "String",
                        "StringValue": f"{facts.project}/{facts.workflow}",
                    },
                },
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            retry = code in ("Throttling", "ThrottlingException", "InternalError",
                             "InternalFailure", "ServiceUnavailable")  # fmt: skip
            raise DeliveryError(f"SNS: {code}: {exc}", permanent=not retry) from None
        except BotoCoreError as exc:
            raise DeliveryError(f"SNS: {type(exc).__name__}: {exc}") from None


def _json_says(response: httpx.Response, field: str, expected: Any, why: str) -> str | None:
    """Providers that answer 200 with an error inside (Telegram, Feishu, DingTalk, WeCom)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and field in body and body[field] != expected:
        return f"{field}={body[field]!r}: {str(body.get(why, ''))[:200]}"
    return None


def _given() -> list[str]:
    return getattr(_sending, "secrets", [])


def _pieces(secret: str) -> set[str]:
    """What of a secret's value may show in a receiver's answer or an HTTP error: the value,
    and when it is a URL (a webhook's), its credential-bearing parts too: the user and
    password, the path, the query, each path segment and query value, as written and
    percent-decoded. A receiver that answers 400 echoing the path it was sent (``/hook/
    SECRETPATH``) shows those, not the whole URL. Parts shorter than 4 characters are
    not masked (a ``/``, ``v2``): they would mask ordinary text and protect nothing."""
    found = {secret}
    parts = urllib.parse.urlsplit(secret) if "://" in secret else None
    if parts is not None and parts.netloc:
        found.update(p for p in (parts.username, parts.password) if p)
        if parts.username and parts.password:
            found.add(f"{parts.username}:{parts.password}")
        found.update((parts.path, parts.query, f"{parts.path}?{parts.query}"))
        found.update(parts.path.split("/"))
        for pair in parts.query.split("&"):
            found.update((pair, pair.partition("=")[2]))
        found |= {urllib.parse.unquote(p) for p in found}
    return {p for p in found if len(p) >= 4}


def _scrub(text: str, secrets: list[str]) -> str:
    pieces = {p for secret in secrets if secret for p in _pieces(secret)}
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text
