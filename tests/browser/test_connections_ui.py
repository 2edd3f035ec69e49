"""The Connections page in a real browser against a real local server: a literal password is
refused with the setting named and is nowhere in the page afterwards; a connection whose
password is a secret reference is saved, listed and tested (the test reaches the real
PostgreSQL server); a viewer sees the connections but is offered no change and no test."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Shots, fill_settings_form
from tests.browser.test_alerts_secrets import DOM_TEXT_JS
from tests.browser.test_ui_flows import as_user, user_token
from tests.e2e.server_process import ServerProcess
from tests.readmodel.conftest import ADMIN_URL, admin_connection

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

LITERAL = "literal-Pw-7731"


def test_add_refuse_a_literal_password_save_a_reference_and_test(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    admin_connection().close()  # type: ignore[attr-defined]  # PostgreSQL is there (CI: must be)
    page.goto(f"{server.url}/#/")
    page.get_by_role("link", name="Connections").click()
    expect(page.locator("h1")).to_contain_text("Connections")
    form = fill_settings_form(page, "connection", "warehouse", "postgresql",
                              {"url": ADMIN_URL, "password": LITERAL})  # fmt: skip
    expect(form.get_by_test_id("problem-password")).to_contain_text("secret reference")
    assert api.get("/connections").json() == {"connections": []}
    form.get_by_label("password", exact=True).fill("{{ secrets.wh_pw }}")
    form.get_by_role("button", name="Save connection").click()
    table = page.get_by_test_id("connections")
    expect(table).to_contain_text("warehouse")
    expect(table).to_contain_text("password={{ secrets.wh_pw }}")
    assert LITERAL not in page.evaluate(DOM_TEXT_JS)
    row = table.locator("tr", has_text="warehouse")
    row.get_by_role("button", name="Test").click()
    expect(page.get_by_test_id("connection-test")).to_contain_text("secret 'wh_pw' is not set")
    assert api.put("/secrets/wh_pw", json={"value": "anything-trust-auth"}).status_code == 201
    row.get_by_role("button", name="Test").click()
    expect(page.get_by_test_id("connection-test")).to_contain_text("warehouse: ok")
    Shots(page, "connections")("tested")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("No connections in project")).to_be_visible()
    assert api.get("/connections").json() == {"connections": []}


def test_a_viewer_sees_connections_but_no_changes_or_tests(
    signed_out_page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    made = api.put("/connections/lake", json={"type": "athena", "settings": {"database": "s"}})
    assert made.status_code in (200, 201), made.text
    page = signed_out_page
    as_user(page, user_token(server, "connie", "default", "viewer"))
    page.goto(f"{server.url}/#/connections")
    table = page.get_by_test_id("connections")
    expect(table).to_contain_text("lake")
    expect(page.get_by_role("button", name="Add a connection")).to_have_count(0)
    expect(table.get_by_role("button")).to_have_count(0)
    assert api.delete("/connections/lake").status_code == 200
