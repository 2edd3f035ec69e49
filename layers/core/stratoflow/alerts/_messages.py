"""What an alert says, and how each channel type carries it (pure: no I/O).

:class:`AlertFacts` holds what a message names — workflow, run, task, attempt, logical date,
error, a link to the run page — and never a secret (it is stored in the outbox and shown by
the API). Each ``*_payload`` function builds the request body a provider documents.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MAX_ERROR_CHARS = 2000

# PagerDuty severities (Events API v2: critical, error, warning, info)
_SEVERITY = {
    "failure": "error", "timeout": "warning", "sla_miss": "warning", "retry": "warning",
    "start": "info", "success": "info", "recovered": "info", "test": "info",
}  # fmt: skip
_VERB = {
    "start": "started", "success": "succeeded", "failure": "failed", "retry": "is retrying",
    "timeout": "timed out", "sla_miss": "missed its SLA", "recovered": "recovered",
    "test": "test alert",
}  # fmt: skip
_EMOJI = {
    "failure": "🔴", "timeout": "⏱️", "sla_miss": "⏰", "retry": "🔁", "start": "▶️",
    "success": "✅", "recovered": "✅", "test": "🔔",
}  # fmt: skip


@dataclass(frozen=True)
class AlertFacts:
    event: str  # start | success | failure | retry | timeout | sla_miss | recovered | test
    project: str
    workflow: str
    run_id: str | None = None
    task_id: str | None = None
    attempt: int | None = None
    logical_date: str | None = None
    state: str | None = None
    error: str | None = None
    link: str | None = None
    at: str | None = None
    detail: str | None = None  # e.g. "SLA 2h, started 2026-...", "previous run R failed"
    # PagerDuty: the incident this alert opens (trigger) or closes (resolve)
    dedup_key: str | None = None
    action: str = "trigger"  # trigger | resolve (PagerDuty only; others ignore a resolve)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertFacts:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def subject(self) -> str:
        what = f"{self.project}/{self.workflow}"
        if self.task_id:
            what += f" task {self.task_id}"
            if self.attempt:
                what += f" (attempt {self.attempt})"
        if self.event == "test":
            return f"Stratoflow test alert for {what}"
        return f"[{self.event.upper()}] {what} {_VERB.get(self.event, self.event)}"

    @property
    def severity(self) -> str:
        return _SEVERITY.get(self.event, "error")

    def facts(self) -> list[tuple[str, str]]:
        rows = [("Workflow", f"{self.project}/{self.workflow}")]
        for label, value in (
            ("Run", self.run_id), ("Task", self.task_id),
            ("Attempt", str(self.attempt) if self.attempt else None),
            ("Logical date", self.logical_date), ("State", self.state),
            ("Event", self.event), ("Detail", self.detail), ("At", self.at),
        ):  # fmt: skip
            if value:
                rows.append((label, value))
        return rows

    @property
    def short_error(self) -> str | None:
        if not self.error:
            return None
        return self.error[:MAX_ERROR_CHARS] + ("…" if len(self.error) > MAX_ERROR_CHARS else "")

    def plain(self) -> str:
        lines = [self.subject, ""] + [f"{k}: {v}" for k, v in self.facts()]
        if self.short_error:
            lines += ["", "Error:", self.short_error]
        if self.link:
            lines += ["", f"Run page: {self.link}"]
        return "\n".join(lines)

    def markdown(self) -> str:
        """Markdown as Webex, DingTalk and WeCom render it."""
        lines = [f"**{_EMOJI.get(self.event, '')} {self.subject}**", ""]
        lines += [f"- **{k}**: {v}" for k, v in self.facts()]
        if self.short_error:
            lines += ["", "```", self.short_error.replace("```", "'''"), "```"]
        if self.link:
            lines += ["", f"[Open the run]({self.link})"]
        return "\n".join(lines)


def pagerduty_payload(facts: AlertFacts, routing_key: str) -> dict[str, Any]:
    """Events API v2 (``POST /v2/enqueue``)."""
    if facts.action == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": facts.dedup_key}
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "payload": {
            "summary": facts.subject[:1024],
            "source": f"stratoflow/{facts.project}/{facts.workflow}",
            "severity": facts.severity,
            "component": facts.task_id or facts.workflow,
            "group": facts.project,
            "class": facts.event,
            "custom_details": dict(facts.facts())
            | ({"error": facts.short_error} if facts.short_error else {}),
        },
        "client": "Stratoflow",
    }
    if facts.at:
        body["payload"]["timestamp"] = facts.at
    if facts.dedup_key:
        body["dedup_key"] = facts.dedup_key
    if facts.link:
        body["client_url"] = facts.link
        body["links"] = [{"href": facts.link, "text": "Open the run in Stratoflow"}]
    return body


def webex_payload(facts: AlertFacts, room_id: str) -> dict[str, Any]:
    """``POST /v1/messages``: ``markdown``, with ``text`` for clients that cannot show it."""
    return {"roomId": room_id, "markdown": facts.markdown()[:7000], "text": facts.plain()[:7000]}


def _mrkdwn_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(facts: AlertFacts) -> dict[str, Any]:
    """An incoming-webhook message: Block Kit blocks, ``text`` as the notification fallback."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": facts.subject[:150]}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{k}*\n{_mrkdwn_escape(v)}"[:2000]}
                for k, v in facts.facts()[:10]  # a section holds at most 10 fields
            ],
        },
    ]
    if facts.short_error:
        text = _mrkdwn_escape(facts.short_error).replace("```", "'''")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{text}```"}})
    if facts.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the run"},
                        "url": facts.link,
                    }
                ],
            }
        )
    return {"text": facts.subject, "blocks": blocks}


def teams_payload(facts: AlertFacts) -> dict[str, Any]:
    """A message with one Adaptive Card, as Teams webhooks (Workflows) accept it."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": facts.subject, "weight": "Bolder", "size": "Medium",
         "wrap": True, "color": "Attention" if facts.severity in ("error", "critical") else "Default"},
        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts.facts()]},
    ]  # fmt: skip
    if facts.short_error:
        body.append(
            {"type": "TextBlock", "text": facts.short_error, "wrap": True, "fontType": "Monospace"}
        )
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if facts.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the run", "url": facts.link}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
             "content": card}
        ],
    }  # fmt: skip


def telegram_payload(facts: AlertFacts, chat_id: str) -> dict[str, Any]:
    """``sendMessage`` with ``parse_mode: HTML`` (at most 4096 characters)."""
    import html  # here, as in email_html: its entity table costs every process ~2 ms to load

    lines = [f"<b>{html.escape(facts.subject)}</b>", ""]
    lines += [f"<b>{html.escape(k)}</b>: {html.escape(v)}" for k, v in facts.facts()]
    if facts.short_error:
        lines += ["", f"<pre>{html.escape(facts.short_error[:1500])}</pre>"]
    if facts.link:
        lines += ["", f'<a href="{html.escape(facts.link, quote=True)}">Open the run</a>']
    return {
        "chat_id": chat_id,
        "text": "\n".join(lines)[:4096],
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }


def feishu_payload(facts: AlertFacts) -> dict[str, Any]:
    """A rich-text (``post``) message of a Feishu/Lark custom bot."""
    content: list[list[dict[str, Any]]] = [
        [{"tag": "text", "text": f"{k}: {v}"}] for k, v in facts.facts()
    ]
    if facts.short_error:
        content.append([{"tag": "text", "text": f"Error: {facts.short_error}"}])
    if facts.link:
        content.append([{"tag": "a", "text": "Open the run", "href": facts.link}])
    return {
        "msg_type": "post",
        "content": {"post": {"en_us": {"title": facts.subject, "content": content}}},
    }


def dingtalk_payload(facts: AlertFacts) -> dict[str, Any]:
    return {"msgtype": "markdown", "markdown": {"title": facts.subject, "text": facts.markdown()}}


def wecom_payload(facts: AlertFacts) -> dict[str, Any]:
    # a WeCom markdown message holds at most 4096 bytes
    text = facts.markdown().encode()[:4096].decode(errors="ignore")
    return {"msgtype": "markdown", "markdown": {"content": text}}


def email_html(facts: AlertFacts) -> str:
    import html  # on the first email, not by every process that loads the alerts

    rows = "".join(
        f"<tr><th align='left' style='padding:2px 12px 2px 0'>{html.escape(k)}</th>"
        f"<td>{html.escape(v)}</td></tr>"
        for k, v in facts.facts()
    )
    error = (
        f"<h3>Error</h3><pre style='background:#f6f8fa;padding:8px'>"
        f"{html.escape(facts.short_error)}</pre>"
        if facts.short_error
        else ""
    )
    link = (
        f"<p><a href='{html.escape(facts.link, quote=True)}'>Open the run</a></p>"
        if facts.link
        else ""
    )
    return (
        "<!DOCTYPE html><html><body style='font-family:sans-serif'>"
        f"<h2>{html.escape(facts.subject)}</h2><table>{rows}</table>{error}{link}"
        "</body></html>"
    )
