"""The Alerts and Secrets pages in a real browser against a real local server: a secret set
through the UI is listed by name only and its value is nowhere in the page afterwards; a
channel with a literal credential is refused with the setting named; a channel whose URL is a
secret reference, a group, and a test alert delivered to a local HTTP stub; a failed run's
alert in the delivery log, filtered by run and status, with a link to the run page; a viewer
is offered none of the changes. Screenshots are saved in artifacts/browser/."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

# the local HTTP endpoint that records what alert channels send (a fixture, used by name)
from tests.alerts.conftest import Recorder, recorder  # noqa: F401
from tests.browser.conftest import Shots, fill_settings_form
from tests.browser.test_narrow import assert_fits, assert_on_screen
from tests.browser.test_ui_flows import as_user, user_token
from tests.e2e.http_stub import json_stub
from tests.e2e.server_process import ServerProcess
from tests.e2e.test_api import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

# what the page would hold if a value leaked: the markup and every form control's value
DOM_TEXT_JS = """() => document.documentElement.outerHTML + '\\n' +
    [...document.querySelectorAll('input, textarea, select')].map((e) => e.value).join('\\n')"""


def set_secret_in_ui(page: Any, name: str, value: str) -> None:
    page.get_by_label("Secret name").fill(name)
    page.get_by_label("Secret value").fill(value)
    page.get_by_role("button", name="Set secret").click()
    expect(page.get_by_role("status")).to_contain_text(f"{name}. Its value is not shown again")


def test_a_secret_is_listed_by_name_and_its_value_is_never_in_the_page(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    value = f"canary-{secrets.token_hex(12)}"
    page.goto(f"{server.url}/#/")
    page.get_by_role("link", name="Secrets").click()
    expect(page.locator("h1")).to_contain_text("Secrets")
    set_secret_in_ui(page, "db_password", value)
    table = page.get_by_test_id("secrets")
    expect(table).to_contain_text("db_password")
    expect(table).to_contain_text("{{ secrets.db_password }}")
    assert page.get_by_label("Secret value").input_value() == ""
    assert value not in page.evaluate(DOM_TEXT_JS)
    page.reload()
    expect(page.get_by_test_id("secrets")).to_contain_text("db_password")
    assert value not in page.evaluate(DOM_TEXT_JS)
    listed = api.get("/secrets").json()["secrets"]
    assert {"project": "default", "name": "db_password"} in listed
    Shots(page, "secrets")("listed")

    # deleting asks first: dismissed, nothing happens; accepted, the secret is gone
    row = table.locator("tr", has_text="db_password")
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Delete").click()
    expect(table).to_contain_text("db_password")
    assert "db_password" in [s["name"] for s in api.get("/secrets").json()["secrets"]]
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("db_password", exact=True)).to_have_count(0)
    assert "db_password" not in [s["name"] for s in api.get("/secrets").json()["secrets"]]


def test_channels_groups_a_test_alert_and_the_delivery_log(
    page: Any,
    server: ServerProcess,
    api: httpx.Client,
    recorder: Recorder,  # noqa: F811
) -> None:
    shots = Shots(page, "alerts")
    hook_value = f"{recorder.url}/hook/{secrets.token_hex(8)}"
    page.goto(f"{server.url}/#/secrets")
    set_secret_in_ui(page, "chat_hook", hook_value)

    page.get_by_role("link", name="Alerts").click()
    expect(page.locator("h1")).to_contain_text("Alerts")
    # a literal credential: refused, the setting named next to its field, nothing stored
    fill_settings_form(page, "channel", "chat", "webhook", {"url": "http://127.0.0.1:9/literal"})
    problem = page.get_by_test_id("problem-url")
    expect(problem).to_contain_text("settings.url")
    expect(problem).to_contain_text("secret reference")
    expect(
        page.get_by_role("form", name="Add a channel").get_by_label("url", exact=True)
    ).to_have_attribute("aria-invalid", "true")
    shots("literal-refused")
    assert api.get("/alerts/channels").json() == {"channels": []}

    form = page.get_by_role("form", name="Add a channel")
    form.get_by_label("url", exact=True).fill("{{ secrets.chat_hook }}")
    form.get_by_label("Headers").fill("X-Team: data")
    form.get_by_role("button", name="Save channel").click()
    channels = page.get_by_test_id("channels")
    row = channels.locator("tr", has_text="chat")
    expect(row).to_contain_text("webhook")
    expect(row).to_contain_text("url")
    expect(row).to_contain_text("header.X-Team")
    assert hook_value not in page.evaluate(DOM_TEXT_JS)
    assert api.get("/alerts/channels").json()["channels"][0]["settings"] == {
        "url": "{{ secrets.chat_hook }}",
        "header.X-Team": "data",
    }

    page.get_by_role("tab", name="groups").click()
    page.get_by_role("button", name="Add a group").click()
    group_form = page.get_by_role("form", name="Add a group")
    group_form.get_by_label("Group name").fill("oncall")
    group_form.get_by_role("checkbox").check()
    group_form.get_by_role("button", name="Save group").click()
    groups = page.get_by_test_id("groups")
    expect(groups.locator("tr", has_text="oncall")).to_contain_text("chat")

    groups.get_by_role("button", name="Send a test alert").click()
    result = page.get_by_test_id("test-result")
    expect(result.locator("tr[data-channel=chat]")).to_contain_text("sent", timeout=30_000)
    shots("test-sent")
    hook_path = hook_value.removeprefix(recorder.url)
    assert [(r.method, r.path) for r in recorder.requests] == [("POST", hook_path)]

    # a failed run alerts the group; the log shows it, filtered by run, linked to the run
    source = (
        "name: breaks\nalerts:\n  - on: [failure]\n    group: oncall\n"
        "tasks:\n  boom:\n    type: shell\n    command: exit 3\n"
    )
    assert api.post("/workflows", json={"source": source}).status_code in (200, 201)
    run_id = api.post("/workflows/breaks/runs", json={}).json()["run"]["id"]

    def run_alerts_sent() -> set[str]:
        if api.get(f"/runs/{run_id}").json()["run"]["state"] != "failed":
            return set()
        rows = api.get("/alerts", params={"run_id": run_id}).json()["deliveries"]
        if not rows or any(d["status"] != "sent" for d in rows):
            return set()
        return {d["key"] for d in rows}

    keys = wait_for(
        run_alerts_sent, "the run's alerts", timeout=60
    )  # the run's failure (and its task's, if alerted apart)
    page.get_by_role("tab", name="deliveries").click()
    log = page.get_by_test_id("deliveries")
    expect(log.locator("tr", has_text="oncall")).to_have_count(len(keys) + 1)  # and the test
    page.get_by_label("Run filter").fill(run_id)
    page.get_by_role("button", name="Filter").click()
    rows = log.locator("tbody tr")
    expect(rows).to_have_count(len(keys))
    for i in range(len(keys)):
        expect(rows.nth(i)).to_contain_text("breaks")
        expect(rows.nth(i).locator(".delivery[data-channel=chat]")).to_contain_text("sent")
    assert len(recorder.requests) == 1 + len(keys)  # one request an alert: nothing sent twice
    shots("deliveries")
    page.get_by_label("Status filter").select_option("failed")
    expect(page.get_by_text("No alerts match.")).to_be_visible()
    page.get_by_label("Status filter").select_option("sent")
    expect(rows).to_have_count(len(keys))
    rows.first.get_by_role("link", name=run_id).click()
    expect(page).to_have_url(f"{server.url}/#/runs/{run_id}")


def slack_channel_in_group(api: httpx.Client, channel: str, secret: str, group: str) -> None:
    """A slack channel whose URL is ``{{ secrets.<secret> }}``, alone in ``group`` (via the API)."""
    settings = {"url": f"{{{{ secrets.{secret} }}}}"}
    made = api.put(f"/alerts/channels/{channel}", json={"type": "slack", "settings": settings})
    assert made.status_code in (200, 201), made.text
    made = api.put(f"/alerts/groups/{group}", json={"channels": [channel]})
    assert made.status_code in (200, 201), made.text


def test_a_viewer_sees_alerts_but_is_offered_no_changes_and_no_secrets(
    signed_out_page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    page = signed_out_page
    made = api.put("/secrets/viewer_hook", json={"value": "https://hooks.example/v"})
    assert made.status_code in (200, 201), made.text
    slack_channel_in_group(api, "seen", "viewer_hook", "watchers")
    as_user(page, user_token(server, "vic", "default", "viewer"))
    page.goto(f"{server.url}/#/alerts")
    expect(page.get_by_test_id("channels")).to_contain_text("seen")
    expect(page.locator(".user")).to_have_text("vic")
    for name in ("Add a channel", "Edit", "Delete"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    page.get_by_role("tab", name="groups").click()
    expect(page.get_by_test_id("groups")).to_contain_text("watchers")
    for name in ("Add a group", "Send a test alert", "Edit", "Delete"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    expect(page.get_by_role("link", name="Secrets")).to_have_count(0)
    page.goto(f"{server.url}/#/secrets")
    expect(page.get_by_text("Your role cannot manage the secrets")).to_be_visible()


def test_the_alerts_and_secrets_pages_fit_a_phone(phone: Any, server: ServerProcess) -> None:
    """At 390x844 neither page scrolls sideways, and their forms' buttons are on screen."""
    shot = Shots(phone, "narrow")
    phone.goto(f"{server.url}/#/alerts")
    phone.get_by_role("button", name="Add a channel").click()
    phone.get_by_label("Channel type").select_option("email")
    assert_fits(phone)
    save = phone.get_by_role("button", name="Save channel")
    save.scroll_into_view_if_needed()
    assert_on_screen(save)
    shot("alerts-channel-form")
    loaded = {
        "groups": phone.get_by_test_id("groups").or_(phone.get_by_text("No alert groups")),
        "deliveries": phone.get_by_test_id("deliveries").or_(phone.get_by_text("No alerts match")),
    }
    for tab, shown in loaded.items():
        phone.get_by_role("tab", name=tab).click()
        expect(shown).to_be_visible()
        assert_fits(phone)
    shot("alerts-deliveries")
    phone.goto(f"{server.url}/#/secrets")
    expect(phone.get_by_test_id("secrets").or_(phone.get_by_text("No secrets"))).to_be_visible()
    assert_on_screen(phone.get_by_role("button", name="Set secret"))
    assert_fits(phone)
    shot("secrets")


def test_an_operator_tests_a_group_and_sees_a_channel_fail_with_its_reason(
    signed_out_page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    page = signed_out_page
    slack_channel_in_group(api, "broken", "never_set", "lost")  # the secret is not set
    as_user(page, user_token(server, "olga", "default", "operator"))
    page.goto(f"{server.url}/#/alerts?tab=groups")
    row = page.get_by_test_id("groups").locator("tr", has_text="lost")
    expect(row.get_by_role("button", name="Edit")).to_have_count(0)
    expect(page.get_by_role("button", name="Add a group")).to_have_count(0)
    row.get_by_role("button", name="Send a test alert").click()
    result = page.get_by_test_id("test-result").locator("tr[data-channel=broken]")
    expect(result).to_contain_text("failed", timeout=30_000)
    expect(result).to_contain_text("never_set")
    Shots(page, "alerts")("test-failed")
    page.get_by_role("tab", name="deliveries").click()
    page.get_by_label("Status filter").select_option("failed")
    failed = page.get_by_test_id("deliveries").locator(".delivery[data-channel=broken]")
    expect(failed.first).to_contain_text("failed")


# the outbox's backoff doubles from 5 s: a slow machine that sees `retrying` late waits longer
@pytest.mark.timeout(420)
def test_a_delivery_that_retries_is_shown_retrying_with_its_next_try_then_sent(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """The delivery log's third status: a channel whose endpoint answers 503 is `retrying`
    (its error and the time of its next try shown), and once the endpoint answers it is
    `sent` on a later try, with no second alert made."""
    answers = {"status": 503}
    seen: list[str] = []

    def respond(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        seen.append(path)
        return answers["status"], {"ok": answers["status"] == 200}

    with json_stub(respond) as url:
        made = api.put("/secrets/flaky_hook", json={"value": f"{url}/hook"})
        assert made.status_code in (200, 201), made.text
        settings = {"url": "{{ secrets.flaky_hook }}"}
        made = api.put("/alerts/channels/flaky", json={"type": "webhook", "settings": settings})
        assert made.status_code in (200, 201), made.text
        made = api.put("/alerts/groups/flaky_group", json={"channels": ["flaky"]})
        assert made.status_code in (200, 201), made.text
        source = (
            "name: breaks_flaky\nalerts:\n  - on: [failure]\n    group: flaky_group\n"
            "tasks:\n  boom:\n    type: shell\n    command: exit 3\n"
        )
        assert api.post("/workflows", json={"source": source}).status_code in (200, 201)
        run_id = api.post("/workflows/breaks_flaky/runs", json={}).json()["run"]["id"]

        def deliveries(status: str) -> list[dict[str, Any]]:
            rows = api.get("/alerts", params={"run_id": run_id}).json()["deliveries"]
            return rows if rows and all(d["status"] == status for d in rows) else []

        retrying = wait_for(lambda: deliveries("retrying"), "a retrying delivery", timeout=60)
        assert all(d["next_at"] and "503" in (d["last_error"] or "") for d in retrying)

        page.goto(f"{server.url}/#/alerts?tab=deliveries&status=retrying&run_id={run_id}")
        entry = page.get_by_test_id("deliveries").locator(".delivery[data-channel=flaky]")
        expect(entry.first).to_contain_text("retrying")
        expect(entry.first).to_contain_text("503")
        expect(entry.first).to_have_attribute("title", re.compile(r"next try"))
        Shots(page, "alerts")("retrying")

        answers["status"] = 200
        sent = wait_for(lambda: deliveries("sent"), "the retried delivery sent", timeout=300)
        assert {d["key"] for d in sent} == {d["key"] for d in retrying}  # the same alerts
        assert all(d["attempts"] >= 2 for d in sent)
        page.get_by_role("button", name="refresh").click()
        expect(page.get_by_text("No alerts match.")).to_be_visible()  # none retrying now
        page.get_by_label("Status filter").select_option("sent")
        expect(entry.first).to_contain_text("sent")
