"""UI defects a tester reproduced, each shown fixed in a real browser (headless Chromium at
1280x800) against a real local server: a variable over 64 KiB is refused, not cut; apply opens
the workflow in the project it names, whatever project is selected; a project the caller
cannot read shows none of the previous project's data; long descriptions and run ids keep
every column on screen; the runs and workflows lists refresh; an older version's page triggers
and diffs against the latest, saying so; durations and the retry state read right; a revoked
token brings the sign-in form; task, Gantt and attempt rows work by keyboard; and smaller ones
(plurals, an empty runs tab, the apply draft, name format hints)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from click.testing import CliRunner
from playwright.sync_api import expect

from stratoflow.cli import main
from tests.browser.conftest import DESKTOP, _open
from tests.browser.test_ui_flows import as_user, paste_and_apply, user_token
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]


def cli(server: ServerProcess, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--home", str(server.home)])
    assert result.exit_code == 0, result.output
    return result.output


def wait_run(api: httpx.Client, run_id: str, states: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (run := api.get(f"/runs/{run_id}").json())["run"]["state"] not in states:
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    return run


def apply(api: httpx.Client, source: str) -> None:
    reply = api.post("/workflows", json={"source": source})
    assert reply.status_code in (200, 201), reply.text


def switch_project(page: Any, project: str) -> None:
    box = page.get_by_label("Project")
    box.fill(project)
    box.press("Enter")


# ------------------------------------------------------------------ 1. variables
def test_a_variable_over_64_kib_is_refused_with_the_limit_and_nothing_typed_is_lost(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    page.goto(f"{server.url}/#/variables")
    form = page.get_by_role("form", name="Set a variable")
    name, value = page.get_by_label("Variable name"), page.get_by_label("Variable value")
    for text, size in (("a" * 70_000, "70,000"), ("é" * 40_000, "80,000")):  # chars; bytes
        name.fill("too_big")
        value.fill(text)
        form.get_by_role("button", name="Set variable").click()
        alert = form.get_by_role("alert")
        expect(alert).to_contain_text(f"{size} bytes")
        expect(alert).to_contain_text("at most 65,536 bytes")
        assert value.input_value() == text  # nothing cut
        expect(form.get_by_role("status")).to_have_count(0)
        assert api.get("/variables/too_big").status_code == 404
    value.fill("a" * 65_536)  # exactly the limit: saved whole
    form.get_by_role("button", name="Set variable").click()
    expect(form.get_by_role("status")).to_contain_text("Set too_big")
    assert len(api.get("/variables/too_big").json()["value"]) == 65_536
    # the name's format is said, not only "Please match the requested format"
    expect(name).to_have_attribute("title", re.compile("a letter, then letters, digits or _"))


# ------------------------------------------------------------------ 2. apply and projects
def test_apply_opens_the_workflow_in_the_project_it_names(page: Any, server: ServerProcess) -> None:
    page.goto(f"{server.url}/#/")
    expect(page.get_by_label("Project")).to_have_value("default")
    paste_and_apply(
        page,
        server,
        "name: elsewhere\nproject: teamc\ntasks:\n  t: {type: shell, command: 'true'}\n",
    )
    expect(page.get_by_role("status")).to_contain_text("Applied: v1")
    expect(page.locator("h1")).to_contain_text("elsewhere")
    expect(page.get_by_label("Project")).to_have_value("teamc")
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(page.get_by_test_id("graph")).to_have_attribute("data-ready", "true")


def test_the_selected_projects_role_does_not_decide_what_can_be_applied(
    signed_out_page: Any, server: ServerProcess
) -> None:
    page = signed_out_page
    as_user(page, user_token(server, "ada", "teamb", "editor"))
    cli(server, "users", "grant", "ada", "default", "viewer")
    page.goto(f"{server.url}/#/apply")  # default selected, where ada only views
    expect(page.get_by_test_id("apply-role-note")).to_contain_text("default")
    page.get_by_label("Workflow YAML").fill(
        "name: bees\nproject: teamb\ntasks:\n  t: {type: shell, command: 'true'}\n"
    )
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Applied: v1")
    expect(page.get_by_label("Project")).to_have_value("teamb")
    # one naming a project where ada is no editor: the server's refusal, shown
    page.goto(f"{server.url}/#/apply")
    page.get_by_label("Workflow YAML").fill(
        "name: wasps\ntasks:\n  t: {type: shell, command: 'true'}\n"
    )
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(page.get_by_test_id("apply-error")).to_contain_text("editor")


def test_a_project_the_caller_cannot_read_shows_none_of_the_previous_ones_data(
    signed_out_page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    page = signed_out_page
    apply(api, "name: mine_only\ntasks:\n  t: {type: shell, command: 'true'}\n")
    wait_run(
        api, api.post("/workflows/mine_only/runs", json={}).json()["run"]["id"], ("succeeded",)
    )
    assert api.put("/variables/mine_var", json={"value": "v"}).status_code in (200, 201)
    as_user(page, user_token(server, "bob", "default", "editor"))
    for where, testid, text in (
        ("", "workflows", "mine_only"),
        ("runs", "runs", "mine_only"),
        ("variables", "variables", "mine_var"),
    ):
        page.goto(f"{server.url}/#/{where}")
        switch_project(page, "default")
        expect(page.get_by_test_id(testid)).to_contain_text(text)
        switch_project(page, "closed")
        expect(page.locator(".error[role=alert]").first).to_be_visible()
        expect(page.get_by_test_id(testid)).to_have_count(0)
        expect(page.get_by_text(text)).to_have_count(0)


def test_what_is_typed_in_the_project_box_survives_the_page_redrawing_before_enter(
    page: Any, server: ServerProcess
) -> None:
    """The header redraws when the selected project's /me answers. The box was bound to the
    selected project, so an answer arriving while the user typed the next name put the old one
    back, and Enter then changed nothing (CI saw it as a switch that never happened)."""
    held: list[Any] = []
    page.route(re.compile(r"/me\?project=second$"), lambda route: held.append(route))  # held
    page.goto(f"{server.url}/#/runs")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    switch_project(page, "second")
    deadline = time.monotonic() + 20
    while not held:
        assert time.monotonic() < deadline, "the UI never asked /me for the project switched to"
        page.wait_for_timeout(20)
    box = page.get_by_label("Project")
    box.fill("third")  # typed, not yet committed
    with page.expect_response(re.compile(r"/me\?project=second$")):
        held[0].continue_()
    page.locator("header").evaluate("h => new Promise(r => requestAnimationFrame(() => r(null)))")
    expect(box).to_have_value("third")
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"project=third"))
    assert page.evaluate("localStorage.getItem('stratoflow.project')") == "third"


# ------------------------------------------------------------------ 4. long text
def test_long_descriptions_and_run_ids_keep_every_column_on_screen(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    name = "a_workflow_with_a_rather_long_name_that_makes_long_run_ids_x"
    words = " ".join(["description"] * 60) + " " + "x" * 300
    apply(
        api, f"name: {name}\ndescription: {words}\ntasks:\n  t: {{type: shell, command: 'true'}}\n"
    )
    wait_run(api, api.post(f"/workflows/{name}/runs", json={}).json()["run"]["id"], ("succeeded",))
    fits = "() => [...document.querySelectorAll('.table-wrap')].every((w) => w.scrollWidth <= w.clientWidth + 1 && w.getBoundingClientRect().right <= window.innerWidth)"
    for where, last in (("", "Version"), ("runs", "Trigger")):
        page.goto(f"{server.url}/#/{where}")
        expect(page.locator("table").first).to_contain_text(name)
        assert page.evaluate(fits), f"#{where}: a table scrolls sideways"
        header = page.get_by_role("columnheader", name=last).bounding_box()
        assert header is not None
        assert header["x"] + header["width"] <= 1280, header


# ------------------------------------------------------------------ 5. lists refresh
def test_the_runs_and_workflows_lists_refresh_keeping_their_filters(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    apply(api, "name: polled\ntasks:\n  t: {type: shell, command: 'true'}\n")
    page.goto(f"{server.url}/#/runs?workflow=polled")
    expect(page.get_by_text("No runs match.")).to_be_visible()
    run_id = api.post("/workflows/polled/runs", json={}).json()["run"]["id"]
    expect(page.get_by_test_id("runs")).to_contain_text(run_id, timeout=15_000)
    expect(page.get_by_label("Workflow filter")).to_have_value("polled")
    page.goto(f"{server.url}/#/")
    expect(page.get_by_test_id("workflows")).to_contain_text("polled")
    apply(api, "name: polled_later\ntasks:\n  t: {type: shell, command: 'true'}\n")
    expect(page.get_by_test_id("workflows")).to_contain_text("polled_later", timeout=15_000)


# ------------------------------------------------------------------ 6. older versions
def test_an_older_versions_page_triggers_and_diffs_against_the_latest_and_says_so(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    apply(
        api,
        "name: versioned\nparams: {level: 1}\ntasks:\n  t: {type: shell, command: 'echo one'}\n",
    )
    apply(
        api,
        "name: versioned\nparams: {level: 2}\ntasks:\n  t: {type: shell, command: 'echo two'}\n",
    )
    page.goto(f"{server.url}/#/workflows/versioned?version=1&tab=yaml")
    expect(page.locator("h1")).to_contain_text("v1")
    page.get_by_role("button", name="Trigger run of v2 (latest)").click()
    expect(page.get_by_test_id("trigger-version")).to_contain_text(
        "latest version, v2 (this page shows v1"
    )
    expect(page.get_by_label("Parameters")).to_have_value(re.compile(r'"level": 2'))
    page.get_by_role("button", name="Start the run").click()
    expect(page.locator(".run-meta")).to_contain_text("versioned v2")
    page.goto(f"{server.url}/#/workflows/versioned?version=1&tab=diff")
    expect(page.get_by_label("From version")).to_have_value("1")
    expect(page.get_by_label("To version")).to_have_value("2")
    expect(page.get_by_test_id("diff")).to_contain_text("echo two")
    # the latest's own page: the button as before, the form says which version it runs
    page.goto(f"{server.url}/#/workflows/versioned")
    page.get_by_role("button", name="Trigger run", exact=True).click()
    expect(page.get_by_test_id("trigger-version")).to_have_text(
        "Starts a run of the latest version, v2."
    )


@pytest.fixture
def los_angeles_page(
    browser: Any, request: pytest.FixtureRequest, server: ServerProcess
) -> Iterator[Any]:
    """A signed-in page whose browser is in America/Los_Angeles (UTC-8 in January)."""
    yield from _open(browser, request, DESKTOP, server.token, timezone_id="America/Los_Angeles")


def test_the_trigger_forms_logical_date_is_read_in_the_schedules_zone_not_the_browsers(
    los_angeles_page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """12:00 typed for a workflow scheduled in Asia/Tokyo is 12:00 in Tokyo (03:00 UTC), as
    ``trigger --logical-date 2026-01-15T12:00`` reads it; the form converted it in the
    browser's zone instead (20:00 UTC from Los Angeles), a date no one asked for."""
    page = los_angeles_page
    apply(
        api,
        "name: tokyo_daily\nschedule: {cron: '0 0 1 1 *', timezone: Asia/Tokyo, catchup: false}\n"
        "tasks:\n  t: {type: shell, command: 'echo {{ ds }}'}\n",
    )
    page.goto(f"{server.url}/#/workflows/tokyo_daily")
    page.get_by_role("button", name="Trigger run", exact=True).click()
    expect(page.get_by_test_id("trigger-zone")).to_contain_text("Asia/Tokyo")
    page.get_by_label("Logical date (optional)").fill("2026-01-15T12:00")
    page.get_by_role("button", name="Start the run").click()
    expect(page).to_have_url(re.compile(r"#/runs/default\.tokyo_daily-"))
    run_id = unquote(page.url.split("#/runs/", 1)[1].split("?", 1)[0])
    run = api.get(f"/runs/{quote(run_id, safe='')}").json()["run"]
    assert run["logical_date"].startswith("2026-01-15T03:00:00"), run["logical_date"]


# ------------------------------------------------------------------ 7. durations and states
def fake_run(i: int, seconds: float) -> dict:
    return {
        "id": f"default.fake-{i}",
        "workflow": "fake",
        "project": "default",
        "version": 1,
        "state": "succeeded",
        "trigger": "manual",
        "params": {},
        "logical_date": None,
        "created_at": "2026-01-01T00:00:00+00:00",
        "started_at": "2026-01-01T00:00:00+00:00",
        "ended_at": "2026-01-01T01:00:00+00:00",
        "duration_seconds": seconds,
        "tasks_total": 1,
        "tasks_done": 1,
        "tasks_failed": 0,
        "tasks_running": 0,
        "error": None,
    }


def test_durations_carry_into_the_larger_unit_and_up_for_retry_reads_whole(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    seconds = {
        0.4: "400 ms",
        0.9996: "1.0 s",
        59.96: "1m 0s",
        119.6: "2m 0s",
        3599.7: "1h 0m",
        3725: "1h 2m",
    }
    runs = [fake_run(i, s) for i, s in enumerate(seconds)]
    page.route(
        re.compile(r"/runs\?"), lambda route: route.fulfill(json={"runs": runs, "next": None})
    )
    page.goto(f"{server.url}/#/runs")
    table = page.get_by_test_id("runs")
    for i, shown in enumerate(seconds.values()):
        expect(table.locator("tr", has_text=f"fake-{i}").locator("td").nth(5)).to_have_text(shown)
    page.unroute(re.compile(r"/runs\?"))

    apply(
        api,
        "name: retrying\ntasks:\n  t: {type: shell, command: 'exit 1', retries: 2, retry_delay: 120s}\n",
    )
    run_id = api.post("/workflows/retrying/runs", json={}).json()["run"]["id"]
    deadline = time.monotonic() + 60
    while api.get(f"/runs/{run_id}").json()["tasks"]["t"]["state"] != "up_for_retry":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    page.goto(f"{server.url}/#/runs/{run_id}?tab=tasks")
    expect(page.get_by_role("listbox", name="Tasks").locator(".badge")).to_have_text("up for retry")
    page.goto(f"{server.url}/#/runs/{run_id}")
    expect(page.locator(".legend")).to_contain_text("up for retry")
    assert api.post(f"/runs/{run_id}/stop").status_code == 200


# ------------------------------------------------------------------ 8. a revoked token
def test_a_token_revoked_while_a_page_is_open_brings_the_sign_in_form(
    signed_out_page: Any, server: ServerProcess
) -> None:
    page = signed_out_page
    as_user(page, user_token(server, "tom", "default", "viewer"))
    page.goto(f"{server.url}/#/")
    expect(page.locator("h1")).to_have_text("Workflows")
    token_id = cli(server, "tokens", "list", "--user", "tom").strip().splitlines()[0].split("\t")[0]
    cli(server, "tokens", "revoke", token_id)
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


# ------------------------------------------------------------------ 9. keyboard
def test_task_gantt_and_attempt_rows_work_by_keyboard(
    page: Any, server: ServerProcess, api: httpx.Client, shared_dir: Path
) -> None:
    marker = shared_dir / "tried"
    apply(
        api,
        f"""\
name: wobbly
tasks:
  wobble:
    type: shell
    retries: 1
    retry_delay: 1s
    command: 'if [ ! -f "{marker}" ]; then touch "{marker}"; echo "first try fails"; exit 1; fi; echo "second try works"'
  after: {{type: shell, depends_on: [wobble], command: 'echo after'}}
""",
    )
    run_id = api.post("/workflows/wobbly/runs", json={}).json()["run"]["id"]
    assert wait_run(api, run_id, ("succeeded", "failed"))["run"]["state"] == "succeeded"
    page.goto(f"{server.url}/#/runs/{run_id}?tab=tasks")
    row = page.get_by_role("listbox", name="Tasks").get_by_role("option", name=re.compile("wobble"))
    row.focus()
    page.keyboard.press("Enter")
    panel = page.get_by_test_id("task-panel")
    expect(panel.locator("h2")).to_have_text("wobble")
    expect(panel.get_by_test_id("log")).to_contain_text("second try works")
    panel.get_by_role("button", name="Show attempt 1").focus()
    page.keyboard.press("Enter")
    expect(panel.get_by_role("heading", name="Log of attempt 1")).to_be_visible()
    expect(panel.get_by_test_id("log")).to_contain_text("first try fails")
    page.get_by_role("tab", name="gantt").click()
    gantt = page.get_by_role("listbox", name="Gantt chart").get_by_role(
        "option", name=re.compile("after")
    )
    gantt.focus()
    page.keyboard.press(" ")
    expect(panel.locator("h2")).to_have_text("after")
    expect(page).to_have_url(re.compile(r"task=after"))


# ------------------------------------------------------------------ 10. smaller ones
def test_plurals_an_empty_runs_tab_and_the_apply_draft(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    apply(api, "name: single\ntasks:\n  only: {type: shell, command: 'true'}\n")
    page.goto(f"{server.url}/#/workflows/single?tab=runs")
    expect(page.locator("p.muted").first).to_have_text(re.compile(r"^1 task · applied"))
    expect(page.get_by_text("No runs of single yet.")).to_be_visible()
    draft = "name: drafty\ntasks:\n  t: {type: shell, command: 'echo not applied yet'}\n"
    page.goto(f"{server.url}/#/apply")
    page.get_by_label("Workflow YAML").fill(draft)
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.locator("h1")).to_have_text("Runs")
    page.get_by_role("link", name="Apply", exact=True).click()
    expect(page.get_by_label("Workflow YAML")).to_have_value(draft)


# ------------------------------------------------------------------ review of the fixes
def slow_fetch(page: Any, part: str, ms: int) -> None:
    """Every fetch whose URL holds ``part`` answers ``ms`` later than the server did."""
    page.add_init_script(
        "const real = window.fetch; window.fetch = async (...a) => { const r = await real(...a);"
        f" if (String(a[0]).includes({part!r})) await new Promise(s => setTimeout(s, {ms}));"
        " return r; };"
    )


def test_a_list_slower_than_its_refresh_still_shows(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """The workflows list refreshed every 5 s whether or not its last request had answered,
    and showed only the newest request's answer: an API slower than 5 s (a cold start) left
    the page empty, with no error, for good."""
    apply(api, "name: slowlisted\ntasks:\n  t: {type: shell, command: 'true'}\n")
    slow_fetch(page, "/workflows?", 5_500)
    page.goto(f"{server.url}/#/")
    expect(page.get_by_role("link", name="slowlisted")).to_be_visible(timeout=20_000)


def test_a_followed_log_read_slower_than_it_is_followed_shows_each_line_once(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """The panel read a followed log every 1.5 s, each read from the offset the last
    answered one ended at: reads slower than that started from the same offset and each
    appended its text (a 14-line log shown as 31 lines)."""
    source = (
        "name: slowlog\ntasks:\n  talk:\n    type: shell\n"
        "    command: 'for i in $(seq 1 12); do echo line-$i; sleep 0.5; done'\n"
    )
    apply(api, source)
    slow_fetch(page, "/log?", 2_000)
    run_id = api.post("/workflows/slowlog/runs", json={}).json()["run"]["id"]
    page.goto(f"{server.url}/#/runs/{run_id}?task=talk")
    log = page.get_by_test_id("task-panel").get_by_test_id("log")
    wait_run(api, run_id, ("succeeded",))
    expect(log).to_contain_text("line-12", timeout=30_000)
    page.wait_for_timeout(3_000)  # any read still on its way has answered
    lines = [x for x in log.inner_text().splitlines() if x.startswith("line-")]
    assert lines == [f"line-{i}" for i in range(1, 13)]
