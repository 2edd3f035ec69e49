"""Alert channel types, their settings, and the rule that credentials are secret references.

A channel is a named destination in a project (a PagerDuty service, a Slack channel's
incoming webhook, a mailbox, ...). Its settings are plain strings. The settings that are
credentials (routing keys, tokens, webhook URLs, SMTP passwords) must hold a secret reference
``{{ secrets.NAME }}`` — alone, or inside a longer value such as a URL — so a channel never
holds a credential in clear; the reference is resolved only when an alert is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from stratoflow.errors import InvalidInput, Problem
from stratoflow.templating import TemplateError, check_syntax

NAME = re.compile(r"[a-z0-9_-]{1,128}")
SECRET_REF = re.compile(r"\{\{\s*secrets\.([A-Za-z][A-Za-z0-9_]{0,127})\s*\}\}")
_SETTING_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
HEADER_PREFIX = "header."
MAX_SETTINGS = 32
MAX_VALUE_CHARS = 4096
MAX_BODY_CHARS = 16_384
MAX_CHANNELS_PER_GROUP = 20
# header names whose values are credentials in practice
_SENSITIVE_HEADER = re.compile(r"authorization|cookie|token|secret|key|signature", re.IGNORECASE)

ResolveSecret = Callable[[str, str], str]
"""``resolve_secret(project, name) -> value``; raises ``KeyError`` for an unknown name."""


@dataclass(frozen=True)
class ChannelType:
    name: str
    summary: str
    required: tuple[str, ...]
    optional: Mapping[str, str] = field(default_factory=dict)  # setting -> default ("" = none)
    credentials: frozenset[str] = frozenset()
    url_setting: str | None = None  # where ``--url`` goes
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def settings(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)


def _a(word: str) -> str:
    """``word`` with its article: "an email", "a webhook"."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _t(
    name: str,
    summary: str,
    required: tuple[str, ...],
    optional: Mapping[str, str] | None = None,
    credentials: tuple[str, ...] = (),
    url: str | None = None,
    choices: Mapping[str, tuple[str, ...]] | None = None,
) -> ChannelType:
    return ChannelType(
        name, summary, required, optional or {}, frozenset(credentials), url, choices or {}
    )


CHANNEL_TYPES: Mapping[str, ChannelType] = {
    t.name: t
    for t in (
        _t("pagerduty", "PagerDuty Events API v2 (trigger, and resolve on success)",
           ("routing_key",), {"base_url": "https://events.pagerduty.com"},
           ("routing_key",), url="base_url"),
        _t("webex", "Webex Teams message (POST /v1/messages, markdown)",
           ("token", "room_id"), {"base_url": "https://webexapis.com"}, ("token",), url="base_url"),
        _t("slack", "Slack incoming webhook (blocks)", ("url",), credentials=("url",), url="url"),
        _t("teams", "Microsoft Teams webhook (an Adaptive Card)", ("url",),
           credentials=("url",), url="url"),
        _t("email", "email over SMTP (HTML and plain text)", ("host", "from", "to"),
           {"port": "", "security": "starttls", "username": "", "password": ""},
           ("password",), choices={"security": ("starttls", "ssl", "none")}),
        _t("telegram", "Telegram bot (sendMessage)", ("token", "chat_id"),
           {"base_url": "https://api.telegram.org"}, ("token",), url="base_url"),
        _t("feishu", "Feishu (Lark) custom bot webhook", ("url",), {"secret": ""},
           ("url", "secret"), url="url"),
        _t("dingtalk", "DingTalk custom robot webhook (markdown)", ("url",), {"secret": ""},
           ("url", "secret"), url="url"),
        _t("wecom", "WeCom (WeChat Work) group robot webhook (markdown)", ("url",),
           credentials=("url",), url="url"),
        _t("sns", "Amazon SNS topic", ("topic_arn",), {"region": "", "endpoint_url": ""},
           url="endpoint_url"),
        _t("webhook", "any HTTP endpoint: method, headers and a templated JSON body", ("url",),
           {"method": "POST", "body": ""}, ("url",), url="url",
           choices={"method": ("POST", "PUT", "PATCH")}),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Channel:
    project: str
    name: str
    type: str
    settings: Mapping[str, str]

    def setting(self, key: str) -> str:
        """The setting, or its type's default."""
        value = self.settings.get(key)
        if value:
            return value
        return CHANNEL_TYPES[self.type].optional.get(key, "")

    def headers(self) -> dict[str, str]:
        return {
            k[len(HEADER_PREFIX) :]: v
            for k, v in self.settings.items()
            if k.startswith(HEADER_PREFIX)
        }


def secret_names(value: str) -> list[str]:
    return SECRET_REF.findall(value)


def resolve_refs(value: str, project: str, resolve: ResolveSecret) -> str:
    """``value`` with each ``{{ secrets.NAME }}`` replaced by the secret's value."""

    def one(match: re.Match[str]) -> str:
        try:
            return resolve(project, match.group(1))
        except KeyError:
            raise MissingSecret(match.group(1)) from None

    return SECRET_REF.sub(one, value)


class MissingSecret(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"secret {name!r} is not set")
        self.name = name


def _is_credential(kind: ChannelType, key: str) -> bool:
    if key in kind.credentials:
        return True
    return key.startswith(HEADER_PREFIX) and bool(_SENSITIVE_HEADER.search(key))


def validate_channel(
    project: str, name: str, type_: str, settings: Mapping[str, str], url: str | None = None
) -> Channel:
    """The channel, or ``InvalidInput`` naming every bad field (nothing is changed)."""
    problems: list[Problem] = []
    if not NAME.fullmatch(project):
        problems.append(Problem("project", "use a-z, 0-9, '_' and '-' (at most 128)"))
    if not NAME.fullmatch(name):
        problems.append(Problem("name", "use a-z, 0-9, '_' and '-' (at most 128)"))
    kind = CHANNEL_TYPES.get(type_)
    if kind is None:
        problems.append(
            Problem("type", f"unknown channel type {type_!r}; one of {', '.join(CHANNEL_TYPES)}")
        )
        raise InvalidInput(problems)
    merged = dict(settings)
    if url is not None:
        if kind.url_setting is None:
            problems.append(Problem("url", f"{_a(type_)} channel takes no URL; use --setting"))
        elif kind.url_setting in merged and merged[kind.url_setting] != url:
            problems.append(Problem("url", f"given twice: as --url and as {kind.url_setting}"))
        else:
            merged[kind.url_setting] = url
    if len(merged) > MAX_SETTINGS:
        problems.append(Problem("settings", f"{len(merged)} settings; at most {MAX_SETTINGS}"))
    for key, value in merged.items():
        where = f"settings.{key}"
        if not isinstance(value, str):
            problems.append(Problem(where, "must be a string"))
            continue
        known = key in kind.settings or (type_ == "webhook" and key.startswith(HEADER_PREFIX))
        if not _SETTING_KEY.fullmatch(key) or not known:
            problems.append(
                Problem(where, f"unknown setting for {_a(type_)} channel; known: "
                        f"{', '.join(kind.settings)}{', header.NAME' if type_ == 'webhook' else ''}")
            )  # fmt: skip
            continue
        cap = MAX_BODY_CHARS if key == "body" else MAX_VALUE_CHARS
        if len(value) > cap:
            problems.append(Problem(where, f"{len(value)} characters; at most {cap}"))
            continue
        if any(ord(c) < 32 for c in value) and key != "body":
            problems.append(Problem(where, "contains a control character"))
            continue
        if _is_credential(kind, key):
            if value and not secret_names(value):
                problems.append(
                    Problem(where, "is a credential: give it as a secret reference "
                            "'{{ secrets.NAME }}' (set the value with `stratoflow secrets set NAME`)")
                )  # fmt: skip
        elif secret_names(value):
            problems.append(Problem(where, "is not a credential; write it in clear"))
        allowed = kind.choices.get(key)
        if allowed and value not in allowed:
            problems.append(Problem(where, f"must be one of {', '.join(allowed)}"))
    problems.extend(
        Problem(f"settings.{key}", f"required for {_a(type_)} channel")
        for key in kind.required
        if not merged.get(key)
    )
    port = merged.get("port")
    if type_ == "email" and port and not (port.isdigit() and 0 < int(port) < 65536):
        problems.append(Problem("settings.port", "must be a port number (1-65535)"))
    if type_ == "email" and merged.get("password") and not merged.get("username"):
        problems.append(Problem("settings.username", "required with a password"))
    for key in ("base_url", "endpoint_url") + (
        () if kind.url_setting in kind.credentials else ("url",)
    ):
        address = merged.get(key)
        if address and not re.match(r"https?://[^\s/]+", address):
            problems.append(Problem(f"settings.{key}", "must be an http(s) URL"))
    body = merged.get("body")
    if body:
        try:
            check_syntax(body)
        except TemplateError as exc:
            problems.append(Problem("settings.body", f"template: {exc}"))
    if problems:
        raise InvalidInput(problems)
    return Channel(project, name, type_, dict(sorted(merged.items())))
