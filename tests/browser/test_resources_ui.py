"""The Resources page in a real browser against a real local server: a file uploaded twice
through the UI is listed with its newest version, its versions open under it, any version
downloads with its own bytes, a bad path is refused naming the problem, delete asks first;
a viewer may list and download but is offered no upload or delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Shots
from tests.browser.test_ui_flows import as_user, user_token
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]


def upload(page: Any, local: Path, path: str) -> None:
    form = page.get_by_role("form", name="Upload a resource file")
    form.get_by_label("File").set_input_files(str(local))
    form.get_by_label("Resource path").fill(path)
    form.get_by_role("button", name="Upload").click()


def test_upload_versions_download_and_delete(
    page: Any, server: ServerProcess, api: httpx.Client, tmp_path: Path
) -> None:
    page.goto(f"{server.url}/#/")
    page.get_by_role("link", name="Resources").click()
    expect(page.locator("h1")).to_contain_text("Resources")
    first = tmp_path / "load.sql"
    first.write_bytes(b"select 1;\n")
    upload(page, first, "sql/load.sql")
    expect(page.get_by_role("status")).to_contain_text("Uploaded sql/load.sql, version 1")
    second = tmp_path / "v2" / "load.sql"  # a new file (the browser will not reread a changed one)
    second.parent.mkdir()
    second.write_bytes(b"select 2;\n")
    upload(page, second, "sql/load.sql")
    expect(page.get_by_role("status")).to_contain_text("version 2")
    table = page.get_by_test_id("resources")
    row = table.locator("tr", has_text="sql/load.sql").first
    expect(row).to_contain_text("2")
    assert [
        v["version"]
        for v in api.get("/resources/versions", params={"path": "sql/load.sql"}).json()["versions"]
    ] == ["2", "1"]

    row.get_by_role("button", name="Versions").click()
    versions = page.get_by_test_id("versions-sql/load.sql")
    expect(versions.locator("tbody tr")).to_have_count(2)
    Shots(page, "resources")("versions")
    with page.expect_download() as got:
        versions.locator("tr", has_text="10 B").last.get_by_role("button", name="Download").click()
    download = got.value
    assert download.suggested_filename == "load.sql"
    assert Path(download.path()).read_bytes() == b"select 1;\n"

    upload(page, first, "../escape.sql")  # the browser's pattern check, then the API's
    form = page.get_by_role("form", name="Upload a resource file")
    assert form.get_by_label("Resource path").evaluate("(e) => !e.validity.valid")
    r = api.put("/resources/file", params={"path": "../escape.sql"}, content=b"x")
    assert r.status_code == 400
    assert "must not contain '..'" in r.json()["message"]

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("No resource files in project")).to_be_visible()
    assert api.get("/resources").json()["resources"] == []


def test_a_viewer_lists_and_downloads_but_cannot_change(
    signed_out_page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    assert api.put(
        "/resources/file", params={"path": "data.csv"}, content=b"a,b\n"
    ).status_code in (200, 201)
    page = signed_out_page
    as_user(page, user_token(server, "rita", "default", "viewer"))
    page.goto(f"{server.url}/#/resources")
    expect(page.get_by_test_id("resources")).to_contain_text("data.csv")
    expect(page.get_by_role("form", name="Upload a resource file")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    with page.expect_download() as got:
        page.get_by_test_id("resources").get_by_role("button", name="Download").click()
    assert Path(got.value.path()).read_bytes() == b"a,b\n"
