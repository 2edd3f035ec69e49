"""Each channel type's request, checked against the provider's documented API on a local
HTTP server; channel validation (credentials only as secret references); failures classified
for the outbox's retry policy, with no secret in any error."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stratoflow.alerts import AlertFacts, DeliveryError, Sender, Skipped, validate_channel
from stratoflow.errors import InvalidInput
from tests.alerts.conftest import Recorder, secrets_of

FAIL = AlertFacts(
    "failure", "analytics", "sales_daily", run_id="r-1", task_id="load", attempt=2,
    logical_date="2026-12-01T02:00:00+00:00", state="failed", error="exit code 1: boom <b>",
    link="http://127.0.0.1:8080/#/runs/r-1", at="2026-12-01T02:03:00+00:00",
    dedup_key="stratoflow/analytics/sales_daily/r-1/load",
)  # fmt: skip
SECRETS = {
    "pd_key": "R0UTINGKEY0000000000000000000000", "webex_token": "WEBEX-TOKEN-123",
    "tg_token": "123456:TELEGRAM-TOKEN", "sign_secret": "SEC-signing-secret",
}  # fmt: skip
NOW = 1_780_000_000.25


def sender(recorder: Recorder | None = None, extra: dict[str, str] | None = None) -> Sender:
    values = dict(SECRETS)
    if recorder is not None:
        values.update(
            hook=f"{recorder.url}/hook", hook_q=f"{recorder.url}/robot/send?access_token=t0"
        )
    values.update(extra or {})
    return Sender(secrets_of(values), wall_clock=lambda: NOW, timeout=5)


def channel(type_: str, **settings: str) -> Any:
    return validate_channel("analytics", "ch", type_, settings)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("type_", "settings", "field", "words"),
    [
        ("pagerduty", {"routing_key": "R0UTINGKEY"}, "settings.routing_key", "secret reference"),
        ("slack", {"url": "https://hooks.slack.com/services/T/B/X"}, "settings.url", "credential"),
        ("email", {"host": "h", "from": "a@b", "to": "c@d", "username": "u", "password": "pw"},
         "settings.password", "credential"),
        ("webhook", {"url": "{{ secrets.hook }}", "header.Authorization": "Bearer x"},
         "settings.header.Authorization", "credential"),
        ("webex", {"token": "{{ secrets.t }}", "room_id": "{{ secrets.r }}"}, "settings.room_id",
         "not a credential"),
        ("pagerduty", {}, "settings.routing_key", "required"),
        ("slack", {"url": "{{ secrets.s }}", "colour": "red"}, "settings.colour", "unknown setting"),
        ("email", {"host": "h", "from": "a@b", "to": "c@d", "security": "tls9"},
         "settings.security", "starttls, ssl, none"),
        ("email", {"host": "h", "from": "a@b", "to": "c@d", "port": "99999"}, "settings.port", "port"),
        ("webhook", {"url": "{{ secrets.hook }}", "body": "{{ alert.subject"}, "settings.body",
         "template"),
        ("webhook", {"url": "{{ secrets.hook }}", "method": "DELETE"}, "settings.method", "POST"),
        ("pagerduty", {"routing_key": "{{ secrets.k }}", "base_url": "ftp://x"}, "settings.base_url",
         "http(s) URL"),
        ("carrier-pigeon", {}, "type", "unknown channel type"),
    ],
)  # fmt: skip
def test_a_bad_channel_is_refused_naming_the_setting(
    type_: str, settings: dict[str, str], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_channel("analytics", "ch", type_, settings)
    problems = {p.path: p.message for p in caught.value.problems}
    assert field in problems, problems
    assert words in problems[field]


def test_url_goes_to_the_types_url_setting_and_references_may_sit_inside_it() -> None:
    ch = validate_channel(
        "p",
        "dt",
        "dingtalk",
        {},
        url="https://oapi.dingtalk.com/robot/send?access_token={{ secrets.dt }}",
    )
    assert ch.settings == {
        "url": "https://oapi.dingtalk.com/robot/send?access_token={{ secrets.dt }}"
    }
    with pytest.raises(InvalidInput, match="an email channel takes no URL"):
        validate_channel(
            "p", "m", "email", {"host": "h", "from": "a@b", "to": "c@d"}, url="http://x"
        )
    with pytest.raises(InvalidInput, match="required for an email channel"):
        validate_channel("p", "m", "email", {"from": "a@b", "to": "c@d"})


# ------------------------------------------------------------------ each provider
def test_pagerduty_trigger_and_resolve_follow_events_api_v2(recorder: Recorder) -> None:
    ch = channel("pagerduty", routing_key="{{ secrets.pd_key }}", base_url=recorder.url)
    recorder.answer((202, {"status": "success", "dedup_key": FAIL.dedup_key}))
    sender().send(ch, FAIL, "failure:r-1:load:2")
    resolve = AlertFacts("success", "analytics", "sales_daily", dedup_key=FAIL.dedup_key,
                         action="resolve")  # fmt: skip
    sender().send(ch, resolve, "resolve:x")
    trigger, resolved = recorder.on("/v2/enqueue")
    assert trigger.method == "POST"
    assert trigger.headers["content-type"] == "application/json"
    body = trigger.body
    assert body["routing_key"] == SECRETS["pd_key"]
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == "stratoflow/analytics/sales_daily/r-1/load"
    payload = body["payload"]
    assert payload["summary"] == "[FAILURE] analytics/sales_daily task load (attempt 2) failed"
    assert len(payload["summary"]) <= 1024
    assert payload["source"] == "stratoflow/analytics/sales_daily"
    assert payload["severity"] in ("critical", "error", "warning", "info")
    assert payload["severity"] == "error"
    assert payload["timestamp"] == FAIL.at
    assert payload["custom_details"]["Run"] == "r-1"
    assert payload["custom_details"]["error"] == FAIL.error
    assert body["links"] == [{"href": FAIL.link, "text": "Open the run in Stratoflow"}]
    assert resolved.body == {
        "routing_key": SECRETS["pd_key"], "event_action": "resolve", "dedup_key": FAIL.dedup_key,
    }  # fmt: skip


def test_webex_posts_markdown_to_v1_messages_with_a_bearer_token(recorder: Recorder) -> None:
    ch = channel("webex", token="{{ secrets.webex_token }}", room_id="Y2lzY29zcGFyazovL3Vz",
                 base_url=recorder.url)  # fmt: skip
    sender().send(ch, FAIL, "k")
    (seen,) = recorder.on("/v1/messages")
    assert seen.headers["authorization"] == "Bearer WEBEX-TOKEN-123"
    assert seen.body["roomId"] == "Y2lzY29zcGFyazovL3Vz"
    assert seen.body["markdown"].startswith("**🔴 [FAILURE] analytics/sales_daily task load")
    assert "- **Run**: r-1" in seen.body["markdown"]
    assert f"[Open the run]({FAIL.link})" in seen.body["markdown"]
    assert "exit code 1: boom <b>" in seen.body["markdown"]
    assert seen.body["text"].startswith("[FAILURE]")


def test_slack_incoming_webhook_gets_blocks_and_a_fallback_text(recorder: Recorder) -> None:
    ch = channel("slack", url="{{ secrets.hook }}")
    sender(recorder).send(ch, FAIL, "k")
    (seen,) = recorder.on("/hook")
    assert seen.body["text"] == FAIL.subject
    kinds = [b["type"] for b in seen.body["blocks"]]
    assert kinds == ["header", "section", "section", "actions"]
    assert seen.body["blocks"][0]["text"] == {"type": "plain_text", "text": FAIL.subject}
    fields = seen.body["blocks"][1]["fields"]
    assert len(fields) <= 10
    assert all(f["type"] == "mrkdwn" for f in fields)
    assert "exit code 1: boom &lt;b&gt;" in seen.body["blocks"][2]["text"]["text"]  # escaped
    assert seen.body["blocks"][3]["elements"][0]["url"] == FAIL.link


def test_teams_gets_one_adaptive_card(recorder: Recorder) -> None:
    ch = channel("teams", url="{{ secrets.hook }}")
    sender(recorder).send(ch, FAIL, "k")
    (seen,) = recorder.on("/hook")
    assert seen.body["type"] == "message"
    (attachment,) = seen.body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["text"] == FAIL.subject
    assert {"title": "Run", "value": "r-1"} in card["body"][1]["facts"]
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open the run", "url": FAIL.link}
    ]


def test_telegram_send_message_with_html(recorder: Recorder) -> None:
    ch = channel(
        "telegram", token="{{ secrets.tg_token }}", chat_id="-100123", base_url=recorder.url
    )
    sender().send(ch, FAIL, "k")
    (seen,) = recorder.requests
    assert seen.path == "/bot123456:TELEGRAM-TOKEN/sendMessage"
    assert (seen.body["chat_id"], seen.body["parse_mode"]) == ("-100123", "HTML")
    assert "<b>[FAILURE] analytics/sales_daily" in seen.body["text"]
    assert "boom &lt;b&gt;" in seen.body["text"]  # the error is escaped, not markup
    assert len(seen.body["text"]) <= 4096


def test_feishu_signs_with_timestamp_and_secret(recorder: Recorder) -> None:
    ch = channel("feishu", url="{{ secrets.hook }}", secret="{{ secrets.sign_secret }}")
    recorder.answer((200, {"code": 0, "msg": "success"}))
    sender(recorder).send(ch, FAIL, "k")
    (seen,) = recorder.requests
    stamp = str(int(NOW))
    expected = base64.b64encode(
        hmac.new(f"{stamp}\n{SECRETS['sign_secret']}".encode(), b"", hashlib.sha256).digest()
    ).decode()
    assert (seen.body["timestamp"], seen.body["sign"]) == (stamp, expected)
    assert seen.body["msg_type"] == "post"
    assert seen.body["content"]["post"]["en_us"]["title"] == FAIL.subject


def test_dingtalk_signs_in_the_query_and_sends_markdown(recorder: Recorder) -> None:
    ch = channel("dingtalk", url="{{ secrets.hook_q }}", secret="{{ secrets.sign_secret }}")
    recorder.answer((200, {"errcode": 0, "errmsg": "ok"}))
    sender(recorder).send(ch, FAIL, "k")
    (seen,) = recorder.requests
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(seen.path).query)
    stamp = str(int(NOW * 1000))
    secret = SECRETS["sign_secret"]
    digest = hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256).digest()
    assert (query["access_token"], query["timestamp"]) == (["t0"], [stamp])
    assert query["sign"] == [base64.b64encode(digest).decode()]
    assert seen.body["msgtype"] == "markdown"
    assert seen.body["markdown"]["title"] == FAIL.subject


def test_wecom_markdown_and_its_errcode(recorder: Recorder) -> None:
    ch = channel("wecom", url="{{ secrets.hook }}")
    recorder.answer((200, {"errcode": 93000, "errmsg": "invalid webhook url"}))
    with pytest.raises(DeliveryError, match="errcode=93000"):
        sender(recorder).send(ch, FAIL, "k")
    (seen,) = recorder.requests
    assert seen.body["msgtype"] == "markdown"
    assert len(seen.body["markdown"]["content"].encode()) <= 4096


def test_webhook_method_headers_and_templated_body(recorder: Recorder) -> None:
    ch = channel(
        "webhook", url="{{ secrets.hook }}", method="PUT",
        body='{"title": {{ alert.subject | tojson }}, "run": {{ alert.run_id | tojson }}, "n": 1}',
        **{"header.X-Team": "data", "header.Authorization": "Bearer {{ secrets.webex_token }}"},
    )  # fmt: skip
    sender(recorder).send(ch, FAIL, "failure:r-1")
    (seen,) = recorder.requests
    assert seen.method == "PUT"
    assert seen.body == {"title": FAIL.subject, "run": "r-1", "n": 1}
    assert seen.headers["x-team"] == "data"
    assert seen.headers["authorization"] == "Bearer WEBEX-TOKEN-123"
    assert seen.headers["idempotency-key"] == "failure:r-1"


def test_a_webhook_body_that_is_not_json_fails_for_good(recorder: Recorder) -> None:
    ch = channel("webhook", url="{{ secrets.hook }}", body="not {{ alert.event }}")
    with pytest.raises(DeliveryError, match="did not render JSON") as caught:
        sender(recorder).send(ch, FAIL, "k")
    assert caught.value.permanent
    assert recorder.requests == []


# ------------------------------------------------------------------ failures
@pytest.mark.parametrize(
    ("status", "permanent"), [(500, False), (503, False), (429, False), (400, True), (404, True)]
)
def test_http_failures_are_classified_for_retry(
    recorder: Recorder, status: int, permanent: bool
) -> None:
    recorder.answer((status, {"error": "nope"}))
    with pytest.raises(DeliveryError, match=f"HTTP {status}") as caught:
        sender(recorder).send(channel("slack", url="{{ secrets.hook }}"), FAIL, "k")
    assert caught.value.permanent is permanent


def test_telegram_ok_false_is_a_failure(recorder: Recorder) -> None:
    recorder.answer((200, {"ok": False, "description": "chat not found"}))
    ch = channel("telegram", token="{{ secrets.tg_token }}", chat_id="1", base_url=recorder.url)
    with pytest.raises(DeliveryError, match="chat not found"):
        sender().send(ch, FAIL, "k")


def test_an_unknown_secret_fails_for_good_naming_it() -> None:
    ch = channel("pagerduty", routing_key="{{ secrets.missing_key }}")
    with pytest.raises(DeliveryError, match="'missing_key' is not set") as caught:
        sender().send(ch, FAIL, "k")
    assert caught.value.permanent
    assert "settings.routing_key" in str(caught.value)


def test_no_error_carries_a_resolved_secret() -> None:
    # nothing listens there: the connection error must not show the token in the URL
    ch = channel(
        "telegram", token="{{ secrets.tg_token }}", chat_id="1", base_url="http://127.0.0.1:9"
    )
    with pytest.raises(DeliveryError) as caught:
        sender().send(ch, FAIL, "k")
    assert not caught.value.permanent
    assert SECRETS["tg_token"] not in str(caught.value)


def test_a_receiver_echoing_a_webhook_url_s_path_shows_none_of_its_secret_parts(
    recorder: Recorder,
) -> None:
    """A webhook URL is a secret as a whole, and its path and query are the credential: a
    receiver that answers 400 quoting the path (or its last segment, or the query) must not
    put them in last_error, cut at 200 characters or not."""
    url = f"{recorder.url}/hook/T0K3N-SECRETPATH-abc?sig=QUERYSIG-xyz"
    for echoed in (
        "no route for /hook/T0K3N-SECRETPATH-abc?sig=QUERYSIG-xyz",
        "unknown webhook T0K3N-SECRETPATH-abc (signature QUERYSIG-xyz)",
        "x" * 170 + "/hook/T0K3N-SECRETPATH-abc",  # cut at 200 inside the secret part
        "signature QUERYSIG-xyz does not match",
    ):
        recorder.answer((400, {"error": echoed}))
        with pytest.raises(DeliveryError, match="HTTP 400") as caught:
            sender(recorder, {"hookurl": url}).send(
                channel("slack", url="{{ secrets.hookurl }}"), FAIL, "k"
            )
        error = str(caught.value)
        for part in ("T0K3N", "SECRETPATH", "QUERYSIG"):
            assert part not in error, (echoed, error)
        assert "***" in error


def test_only_pagerduty_resolves() -> None:
    resolve = AlertFacts("success", "p", "w", dedup_key="d", action="resolve")
    with pytest.raises(Skipped):
        sender().send(channel("slack", url="{{ secrets.hook }}"), resolve, "k")


# ------------------------------------------------------------------ email, SNS
def test_email_reaches_a_real_smtp_server_as_html_and_text() -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received: list[Any] = []

    class Keep(Message):  # type: ignore[misc]
        def handle_message(self, message: Any) -> None:
            received.append(message)

    with socket.socket() as probe:  # a free port (aiosmtpd checks its server by connecting)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        ch = channel("email", host="127.0.0.1", port=str(port), security="none",
                     **{"from": "stratoflow@example.com", "to": "oncall@example.com, b@example.com"})  # fmt: skip
        sender().send(ch, FAIL, "failure:r-1")
    finally:
        controller.stop()
    (message,) = received
    assert message["Subject"] == FAIL.subject
    assert message["From"] == "stratoflow@example.com"
    assert message["X-RcptTo"] == "oncall@example.com, b@example.com"  # the envelope
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in message.walk()
             if not p.is_multipart()}  # fmt: skip
    assert "<h2>[FAILURE] analytics/sales_daily" in parts["text/html"]
    assert "exit code 1: boom &lt;b&gt;" in parts["text/html"]
    assert f"Run page: {FAIL.link}" in parts["text/plain"]


def test_email_to_a_closed_port_is_retried() -> None:
    ch = channel("email", host="127.0.0.1", port="9", security="none",
                 **{"from": "a@example.com", "to": "b@example.com"})  # fmt: skip
    with pytest.raises(DeliveryError, match="SMTP") as caught:
        sender().send(ch, FAIL, "k")
    assert not caught.value.permanent


def test_sns_publishes_to_the_topic_on_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "eu-west-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    with mock_aws():
        sns = boto3.client("sns", region_name="eu-west-1")
        sqs = boto3.client("sqs", region_name="eu-west-1")
        topic = sns.create_topic(Name="oncall")["TopicArn"]
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"])
        sender().send(channel("sns", topic_arn=topic, region="eu-west-1"), FAIL, "k")
        (msg,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    note = json.loads(msg["Body"])
    assert note["TopicArn"] == topic
    assert note["Subject"] == FAIL.subject
    assert "Error:\nexit code 1: boom <b>" in note["Message"]
    assert note["MessageAttributes"]["event"]["Value"] == "failure"


def test_httpx_logs_no_url_of_an_alert(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    ch = channel("telegram", token="{{ secrets.tg_token }}", chat_id="1", base_url=recorder.url)
    sender().send(ch, FAIL, "k")
    assert len(recorder.requests) == 1
    assert SECRETS["tg_token"] not in caplog.text
    # httpx's own logging is untouched elsewhere
    import httpx

    with httpx.Client() as client:
        client.post(f"{recorder.url}/elsewhere", json={})
    assert "/elsewhere" in caplog.text


# ------------------------------------------------------------------ Retry-After
WALL = datetime(2026, 11, 30, 9, 33, 50, tzinfo=UTC).timestamp()


def _answering(status: int, headers: dict[str, str]) -> Sender:
    import httpx

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, json={"ok": False})

    return Sender(
        secrets_of({**SECRETS, "hook": "http://receiver.invalid/hook"}),
        wall_clock=lambda: WALL,
        transport=httpx.MockTransport(handle),
    )


@pytest.mark.parametrize(
    ("status", "header", "seconds"),
    [
        (429, "120", 120.0),
        (503, "7", 7.0),
        # an HTTP date, read against the sender's wall clock: 90 s after it
        (429, "Mon, 30 Nov 2026 09:35:20 GMT", 90.0),
        (429, "86400", 3600.0),  # a day: held to the hour a delivery waits at most
        (429, "Mon, 30 Nov 2026 09:30:00 GMT", 0.0),  # a date gone by: no wait of its own
        (429, "soon", None),  # not a number nor a date: the backoff decides
        (429, "-5", None),
        (500, "120", None),  # only 429 and 503 say when to come back
    ],
)
def test_a_receiver_s_retry_after_is_read(status: int, header: str, seconds: float | None) -> None:
    with pytest.raises(DeliveryError, match=f"HTTP {status}") as caught:
        _answering(status, {"Retry-After": header}).send(
            channel("slack", url="{{ secrets.hook }}"), FAIL, "k"
        )
    assert not caught.value.permanent
    assert caught.value.retry_after == seconds


def test_retry_after_longer_than_the_backoff_delays_the_next_try() -> None:
    from stratoflow.alerts._outbox import Backoff, Delivery, try_send

    ch = channel("slack", url="{{ secrets.hook }}")
    first = Delivery(
        key="k", project="analytics", channel="ch", group="g", event="failure",
        workflow="sales_daily", run_id="r-1", facts=FAIL, status="pending", attempts=0,
        next_at=None, last_error=None, created_at=datetime(2026, 11, 30, tzinfo=UTC),
        sent_at=None,
    )  # fmt: skip
    backoff = Backoff(first=timedelta(seconds=5))
    waited = try_send(_answering(429, {"Retry-After": "120"}), ch, first, backoff)
    assert (waited.status, waited.retry_in) == ("retrying", timedelta(seconds=120))
    # shorter than the backoff: the backoff stands
    brief = try_send(_answering(429, {"Retry-After": "1"}), ch, first, backoff)
    assert brief.retry_in == timedelta(seconds=5)
    plain = try_send(_answering(500, {}), ch, first, backoff)
    assert plain.retry_in == timedelta(seconds=5)
