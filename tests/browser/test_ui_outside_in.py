"""Defects an outside-in tester found driving the UI as an operator would, each failing before
its fix (headless Chromium at 1280x800 against a real local server): a run of another project
opened by its link is shown with the selected project's role and links (buttons that 403, the
wrong project's workflow); a run's logical date is shown nowhere; a log's ANSI colour codes
show as raw escape sequences."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.test_ui_defects import apply, cli, switch_project, wait_run
from tests.browser.test_ui_flows import as_user, user_token
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]


def test_a_run_of_another_project_is_shown_with_that_projects_role_and_workflow(
    signed_out_page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """Run ids name their project, so a link to a run opens it whatever project is selected.
    Its page offered the SELECTED project's actions (an operator there, a viewer in the run's
    project, got **Rerun failed**, which the API refuses with 403) and linked to the selected
    project's workflow of the same name (its YAML, its Trigger button)."""
    page = signed_out_page
    apply(
        api,
        "name: twin\ndescription: the default twin\ntasks:\n  t: {type: shell, command: 'true'}\n",
    )
    apply(
        api,
        "name: twin\nproject: teamx\ndescription: the teamx twin\n"
        "tasks:\n  t: {type: shell, command: 'exit 1'}\n",
    )
    made = api.post("/workflows/twin/runs", params={"project": "teamx"}, json={})
    assert made.status_code == 201, made.text
    run_id = made.json()["run"]["id"]
    wait_run(api, run_id, ("failed",))
    as_user(page, user_token(server, "olga", "default", "operator"))
    cli(server, "users", "grant", "olga", "teamx", "viewer")
    page.goto(f"{server.url}/#/")
    expect(page.get_by_label("Project")).to_have_value("default")
    page.goto(f"{server.url}/#/runs/{run_id}")
    expect(page.locator(".run-meta")).to_contain_text("twin v1")
    # olga only views teamx: no action the API would refuse her
    expect(page.get_by_role("button", name="Rerun failed")).to_have_count(0)
    # the run's project is selected, and with it olga's role there
    expect(page.get_by_label("Project")).to_have_value("teamx")
    expect(page.locator(".user")).to_have_attribute("title", "viewer in teamx")
    expect(page.get_by_role("button", name="Rerun failed")).to_have_count(0)
    page.locator(".run-meta").get_by_role("link", name="twin v1").click()
    expect(page.locator("main")).to_contain_text("the teamx twin")
    expect(page.get_by_role("button", name="Trigger run")).to_have_count(0)
    # another project picked on the run's page leaves the run for that project's runs
    page.go_back()
    expect(page.locator(".run-meta")).to_contain_text("twin v1")
    switch_project(page, "default")
    expect(page).to_have_url(re.compile(r"#/runs\?project=default$"))
    expect(page.get_by_label("Project")).to_have_value("default")


def test_the_run_page_shows_the_logical_date(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """A run triggered for 2026-11-01 10:30 (a rerun of a past day's data) said only when it
    started: the logical date it works on, which its templates read, was shown nowhere."""
    apply(api, "name: dated\ntasks:\n  t: {type: shell, command: 'echo {{ ds }}'}\n")
    made = api.post("/workflows/dated/runs", json={"logical_date": "2026-11-01T10:30:00"})
    assert made.status_code == 201, made.text
    run_id = made.json()["run"]["id"]
    page.goto(f"{server.url}/#/runs/{run_id}")
    logical = page.get_by_test_id("logical-date")
    expect(logical).to_contain_text("logical date")
    expect(logical).to_contain_text(re.compile(r"11/01/2026.*10:30:00"))
    expect(logical).to_have_attribute("title", "2026-11-01T10:30:00+00:00")


def test_ansi_colour_codes_in_a_log_are_not_shown_as_raw_escapes(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """A task whose tool colours its output (pytest, ls --color, a logger) showed
    ``[31mRED[0m`` in its log (the ESC itself invisible). The colours show, the codes do not,
    and text that looks like HTML stays text."""
    apply(
        api,
        "name: colours\ntasks:\n  t:\n    type: shell\n    command: |\n"
        "      printf '\\033[1;31mRED\\033[0m plain \\033[32mgreen\\033[0m <b>x</b>\\n'\n"
        "      printf 'bad \\377\\376 bytes \\033]0;title\\007end\\n'\n",
    )
    run_id = api.post("/workflows/colours/runs", json={}).json()["run"]["id"]
    wait_run(api, run_id, ("succeeded",))
    page.goto(f"{server.url}/#/runs/{run_id}?tab=tasks&task=t")
    log = page.get_by_test_id("log")
    expect(log).to_contain_text("RED plain green <b>x</b>")
    expect(log).to_contain_text("bad \ufffd\ufffd bytes end")
    shown = log.inner_text()
    assert "\x1b" not in shown
    assert "[0m" not in shown
    expect(log.locator(".ansi-red.ansi-bold")).to_have_text("RED")
    expect(log.locator(".ansi-green")).to_have_text("green")
    expect(log.locator("b")).to_have_count(0)


def test_a_malformed_address_shows_an_error_not_a_blank_page(
    page: Any, server: ServerProcess
) -> None:
    """A mangled link (``#/runs/%zz``: a ``%`` not followed by two hex digits, as a chat
    client's cut or a hand-edited URL leaves it) threw "URI malformed" while the script
    started, so the page stayed blank, whatever the address was changed to next (the
    fixture also fails on the page's JavaScript error)."""
    page.goto(f"{server.url}/#/runs/%zz")
    expect(page.get_by_role("alert")).to_contain_text("run '%zz' not found")
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.locator("h1")).to_have_text("Runs")
    page.goto(f"{server.url}/#/workflows/a%zz")
    expect(page.get_by_role("alert")).to_contain_text("not found")


def test_a_viewer_or_operator_does_not_send_a_layout_the_api_refuses(
    signed_out_page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """The server keeps ELK's layout of a version when an editor sends it (README: "PUT:
    editor; a browser of a viewer or operator computes it for itself"), but every browser
    sent it: each visit of a viewer or operator to a new version's graph PUT up to 1 MB for a
    403. An editor's browser still sends it, and it is kept."""
    page = signed_out_page
    apply(
        api,
        "name: laid\ntasks:\n  a: {type: shell, command: 'true'}\n  b: {type: shell, depends_on: [a], command: 'true'}\n",
    )
    puts: list[int] = []
    page.on(
        "response",
        lambda r: (
            puts.append(r.status) if r.request.method == "PUT" and "/layout" in r.url else None
        ),
    )
    as_user(page, user_token(server, "lou", "default", "operator"))
    page.goto(f"{server.url}/#/workflows/laid")
    canvas = page.get_by_test_id("graph")
    expect(canvas).to_have_attribute("data-layout-source", "elk")
    page.wait_for_timeout(500)  # the PUT, had it been sent, is answered by now
    assert puts == []
    cli(server, "users", "grant", "lou", "default", "editor")
    page.evaluate("indexedDB.deleteDatabase('stratoflow-layouts')")
    page.reload()
    expect(canvas).to_have_attribute("data-layout-source", "elk")
    deadline = 50
    while not puts and deadline:
        page.wait_for_timeout(100)
        deadline -= 1
    assert puts == [201]


def test_a_global_pools_force_start_is_offered_by_the_role_in_the_tasks_project(
    signed_out_page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """A global pool's page lists the waiting tasks of every project the caller reads, and
    offered **Force start** on each by the role in the SELECTED project: an operator there
    who only views the task's project got a button the API refuses with 403. It follows the
    role in the task's own project now (so an operator of both still gets it)."""
    page = signed_out_page
    assert api.put("/pools/shared_gp", json={"slots": 1}).status_code in (200, 201)
    apply(
        api,
        "name: queued_q\nproject: teamq\ntasks:\n"
        "  first: {type: shell, pool: shared_gp, command: 'sleep 30'}\n"
        "  second: {type: shell, pool: shared_gp, command: 'true'}\n",
    )
    run_id = api.post("/workflows/queued_q/runs", params={"project": "teamq"}, json={}).json()[
        "run"
    ]["id"]
    try:
        as_user(page, user_token(server, "pam", "default", "operator"))
        cli(server, "users", "grant", "pam", "teamq", "viewer")
        page.goto(f"{server.url}/#/pools/shared_gp")
        waiting = page.get_by_test_id("pool-waiting")
        expect(waiting).to_contain_text(run_id)
        expect(page.get_by_label("Project")).to_have_value("default")
        page.wait_for_timeout(300)  # the roles' answers are in
        expect(waiting.get_by_role("button", name="Force start")).to_have_count(0)
        cli(server, "users", "grant", "pam", "teamq", "operator")
        page.reload()
        expect(waiting.get_by_role("button", name="Force start")).to_have_count(1)
    finally:
        api.post(f"/runs/{run_id}/stop")


def test_a_backfill_of_another_project_is_shown_with_that_projects_role(
    signed_out_page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """Backfill ids, like run ids, open from a link whatever project is selected, and its
    page offered Pause and Cancel by the selected project's role (403 for a viewer of the
    backfill's project) and linked to the selected project's workflow of that name."""
    page = signed_out_page
    apply(
        api,
        "name: filled\nproject: teamz\nschedule: {cron: '0 1 * * *'}\n"
        "tasks:\n  t: {type: shell, command: 'sleep 30'}\n",
    )
    made = api.post(
        "/workflows/filled/backfills",
        params={"project": "teamz"},
        json={"start": "2026-01-01", "end": "2026-01-02", "parallel": 1},
    )
    assert made.status_code == 201, made.text
    backfill_id = made.json()["id"]
    try:
        as_user(page, user_token(server, "bea", "default", "operator"))
        cli(server, "users", "grant", "bea", "teamz", "viewer")
        page.goto(f"{server.url}/#/")
        expect(page.get_by_label("Project")).to_have_value("default")
        page.goto(f"{server.url}/#/backfills/{backfill_id}")
        expect(page.locator("h1")).to_contain_text("filled")
        expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
        expect(page.get_by_label("Project")).to_have_value("teamz")
        expect(page.locator(".user")).to_have_attribute("title", "viewer in teamz")
        expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    finally:
        api.post(f"/backfills/{backfill_id}/cancel")


def test_a_link_to_a_missing_tab_or_task_says_so_instead_of_a_blank_pane(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """``?tab=`` a page does not have (a mistyped or older link) showed no tab selected and
    nothing under the tabs; ``?task=`` a task the run does not have split the page and left
    its half blank."""
    apply(api, "name: linked\ntasks:\n  only: {type: shell, command: 'true'}\n")
    run_id = api.post("/workflows/linked/runs", json={}).json()["run"]["id"]
    wait_run(api, run_id, ("succeeded",))
    page.goto(f"{server.url}/#/runs/{run_id}?tab=bogus")
    expect(page.get_by_role("tab", name="graph")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_test_id("graph")).to_be_visible()
    page.goto(f"{server.url}/#/workflows/linked?tab=bogus")
    expect(page.get_by_role("tab", name="graph")).to_have_attribute("aria-selected", "true")
    page.goto(f"{server.url}/#/alerts?tab=bogus")
    expect(page.get_by_role("tab", name="channels")).to_have_attribute("aria-selected", "true")
    page.goto(f"{server.url}/#/runs/{run_id}?tab=tasks&task=gone")
    expect(page.get_by_test_id("task-panel").get_by_role("alert")).to_contain_text(
        f"Run {run_id} has no task gone"
    )


def test_a_running_run_and_task_show_how_long_they_have_run(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """A running run showed "—" for its duration on its page, its task and the runs list
    (the API has none until it ends): how long it has been running is what an operator looks
    for first. It counts up, and once the run ends the API's duration is shown."""
    apply(api, "name: slow\ntasks:\n  t: {type: shell, command: 'sleep 4'}\n")
    run_id = api.post("/workflows/slow/runs", json={}).json()["run"]["id"]
    wait_run(api, run_id, ("running",))
    page.goto(f"{server.url}/#/runs/{run_id}?tab=tasks&task=t")
    elapsed = page.get_by_test_id("run-meta").get_by_test_id("elapsed")
    expect(elapsed).to_have_text(re.compile(r"^\d+\.\d s$"))
    first = elapsed.inner_text()
    expect(elapsed).not_to_have_text(first)  # it counts up
    expect(page.get_by_test_id("task-panel").get_by_test_id("elapsed")).to_have_text(
        re.compile(r"^\d+\.\d s$")
    )
    page.goto(f"{server.url}/#/runs")
    expect(page.get_by_test_id("runs").get_by_test_id("elapsed").first).to_have_text(
        re.compile(r"^\d+\.\d s$")
    )
    ended = wait_run(api, run_id, ("succeeded",))["run"]
    page.goto(f"{server.url}/#/runs/{run_id}")
    shown = page.get_by_test_id("run-meta").get_by_test_id("elapsed")
    expect(shown).to_have_text(re.compile(r"^\d+\.\d s$"))
    final = shown.inner_text()
    assert abs(float(final.split()[0]) - ended["duration_seconds"]) <= 0.1
    page.wait_for_timeout(1500)
    assert shown.inner_text() == final  # ended: it no longer counts


def test_a_server_that_does_not_answer_is_named_not_failed_to_fetch(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """With the server stopped or restarting, every page said only "Failed to fetch" (the
    browser's words for a request with no answer): not what had failed, nor what to check."""
    apply(api, "name: quiet\ntasks:\n  t: {type: shell, command: 'true'}\n")
    page.route(re.compile(r".*/runs(\?.*)?$"), lambda route: route.abort())
    page.goto(f"{server.url}/#/runs")
    error = page.locator(".error").first
    expect(error).to_contain_text(f"cannot reach the Stratoflow API at {server.url}")
    expect(error).to_contain_text("is the server running?")
