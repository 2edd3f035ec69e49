"""Web UI defects a second review found, and what the first review's work left, one test each
(each failed before its fix), in a real browser (headless Chromium at 1280x800) against a real
local server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.test_ui_defects import apply, switch_project, wait_run
from tests.browser.test_ui_flows import user_token
from tests.browser.test_ui_review import DRAFT_KEY, FOCUSED, HIDE, SHOWN, focused, sign_in
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]


def waits_for(marker: Path) -> str:
    return f"while [ ! -f '{marker}' ]; do sleep 0.2; done"


def test_the_focused_row_stays_on_its_task_when_a_poll_changes_the_list(
    page: Any, server: ServerProcess, api: httpx.Client, tmp_path: Path
) -> None:
    """The list's tab stop was a row number: filtered to *running*, when a task above the
    focused one finished (and left the list) the focus stayed on the row number, now another
    task (Enter opened the wrong one); when the list shrank below it the focused row was
    removed and the focus fell to the page. Now the focus stays on its task, and a task that
    leaves hands it to the row taking its place."""
    marks = {t: tmp_path / t for t in "abc"}
    tasks = "".join(
        f'  {t}: {{type: shell, command: "{waits_for(m)}"}}\n' for t, m in marks.items()
    )
    apply(api, f"name: leaving\ntasks:\n{tasks}  d: {{type: shell, command: 'sleep 300'}}\n")
    run_id = api.post("/workflows/leaving/runs", json={}).json()["run"]["id"]
    try:
        page.goto(f"{server.url}/#/runs/{run_id}?tab=tasks")
        page.get_by_label("Filter tasks").fill("running")
        rows = page.locator(".task-row")
        expect(rows).to_have_count(4, timeout=30_000)  # all four running
        page.get_by_label("Filter tasks").focus()
        page.keyboard.press("Tab")
        page.keyboard.press("ArrowDown")
        assert page.evaluate(FOCUSED)["name"] == "b"

        marks["a"].touch()  # a leaves the list, above b
        expect(rows).to_have_count(3)
        assert page.evaluate(FOCUSED)["name"] == "b", "the focus moved to another task"

        marks["b"].touch()  # b itself leaves: the row taking its place gets the focus
        expect(rows).to_have_count(2)
        assert page.evaluate(FOCUSED)["name"] == "c"

        page.keyboard.press("End")
        assert page.evaluate(FOCUSED)["name"] == "d"
        marks["c"].touch()  # d's row number (1) is gone: d keeps the focus all the same
        expect(rows).to_have_count(1)
        got = page.evaluate(FOCUSED)
        assert got["name"] == "d", got
        assert got["in_list"], got
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("task-panel").locator("h2")).to_have_text("d")
    finally:
        api.post(f"/runs/{run_id}/stop")


def test_a_sign_out_in_another_tab_forgets_this_tabs_apply_draft(
    signed_out_page: Any, server: ServerProcess
) -> None:
    """The token is kept for every tab (local storage), the Apply draft for one (session
    storage): signing out in one tab forgot that tab's draft only. Another tab kept showing
    its user's draft, with no request to bring the sign-in form, and went on showing it to
    the next user signing in anywhere (their token now sent from that tab too)."""
    mine = signed_out_page
    mine.goto(f"{server.url}/#/apply")
    sign_in(mine, user_token(server, "gus", "default", "editor"))
    editor = mine.get_by_label("Workflow YAML")
    editor.fill("name: gus_draft\ntasks:\n  t: {type: shell, command: 'echo gus'}\n")
    user = mine.locator("header .user")
    expect(user).to_have_text("gus")

    other = mine.context.new_page()
    other.goto(f"{server.url}/#/")
    expect(other.locator("header .user")).to_have_text("gus")
    other.get_by_role("button", name="sign out").click()
    expect(mine.get_by_role("heading", name="Sign in")).to_be_visible()  # this tab too
    assert mine.evaluate(f"sessionStorage.getItem('{DRAFT_KEY}')") is None
    sign_in(other, user_token(server, "hal", "default", "editor"))
    expect(user).to_have_text("hal")  # this tab follows: the next user is hal
    expect(editor).to_have_value(re.compile(r"^name: hello\n"))  # the example, not gus's
    other.close()


def test_no_page_says_the_role_cannot_act_while_the_projects_role_is_unknown(
    page: Any, server: ServerProcess
) -> None:
    """While a newly selected project's /me was on its way, no action was offered (right),
    but the Secrets page said "Your role cannot manage the secrets of project …" and the
    Apply page that the role cannot apply there: untrue for an admin, and shown to every
    user at every project switch until the answer came."""
    held: list[Any] = []
    page.route(re.compile(r"/me\?project=flick"), lambda route: held.append(route))
    page.goto(f"{server.url}/#/secrets")
    expect(page.get_by_role("button", name="Set secret")).to_be_visible()
    with page.expect_request(lambda r: "me?project=flick" in r.url):  # asked once rendered
        switch_project(page, "flick")
    expect(page.get_by_role("button", name="Set secret")).to_have_count(0)  # not known yet
    expect(page.get_by_text("cannot manage")).to_have_count(0)
    page.evaluate("location.hash = '#/apply'")  # no Apply link until the role is known
    expect(page.get_by_label("Workflow YAML")).to_be_visible()
    expect(page.get_by_test_id("apply-role-note")).to_have_count(0)
    assert len(held) == 1
    held[0].continue_()
    expect(page.locator("header .user")).to_have_attribute("title", "admin in flick")
    expect(page.get_by_test_id("apply-role-note")).to_have_count(0)
    page.get_by_role("link", name="Secrets", exact=True).click()
    expect(page.get_by_role("button", name="Set secret")).to_be_visible()


def test_a_project_switched_to_starts_on_its_first_page_of_runs_with_no_workflow_filter(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """The Runs page keeps its workflow filter and its page (``before``, ``prev``) in the URL,
    and kept them when the project changed: the new project was asked for the previous one's
    workflow from the previous one's cursor (here: "No runs match." and a "← Newer" button).
    So did a Back to a URL made in the previous project."""
    apply(api, "name: many\nproject: rpaged\ntasks:\n  t: {type: shell, command: 'true'}\n")
    for _ in range(26):  # pages of 25: a second page of one
        reply = api.post("/workflows/many/runs", params={"project": "rpaged"}, json={})
        assert reply.status_code in (200, 201), reply.text
    apply(api, "name: single\nproject: rsingle\ntasks:\n  t: {type: shell, command: 'true'}\n")
    single = api.post("/workflows/single/runs", params={"project": "rsingle"}, json={})
    single_id = single.json()["run"]["id"]
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/runs?" in r.url else None)
    page.goto(f"{server.url}/#/runs")
    switch_project(page, "rpaged")
    page.get_by_label("Workflow filter").select_option("many")
    rows = page.get_by_test_id("runs").locator("tbody tr")
    expect(rows).to_have_count(25)
    page.get_by_role("button", name="Older →").click()
    expect(rows).to_have_count(1)
    expect(page).to_have_url(re.compile(r"before="))

    def first_page_of_rsingle() -> None:
        expect(page.get_by_role("link", name=single_id)).to_be_visible()
        expect(rows).to_have_count(1)
        expect(page.get_by_role("button", name="← Newer")).to_have_count(0)
        expect(page.get_by_label("Workflow filter")).to_have_value("")
        expect(page).not_to_have_url(re.compile(r"before=|prev=|workflow="))
        mine = [parse_qs(urlparse(u).query) for u in asked if "project=rsingle" in u]
        assert mine, asked
        assert all("before" not in q and "workflow" not in q for q in mine), mine

    switch_project(page, "rsingle")
    first_page_of_rsingle()
    page.go_back()  # rpaged's first page of "many": its filter is not rsingle's
    expect(page).to_have_url(re.compile(r"#/runs"))
    first_page_of_rsingle()


def asked_while_hidden_and_once_shown(page: Any, url: str, path: str, every_ms: int) -> None:
    """Opens ``url`` under the page's fake clock (paused), hides the tab for 60 s of that
    clock and shows it again: no request for ``path`` while hidden, one at once when shown,
    and polling goes on (about every ``every_ms``) from there."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))

    def polls(since: int, until: int) -> int:
        return sum(urlparse(u).path == path for u in seen[since:until])

    def mark(name: str) -> int:
        """A request of the test's own: every request the page made before it is in
        ``seen`` once it is; its index there."""
        with page.expect_request(lambda r: f"mark={name}" in r.url):
            page.evaluate(f"fetch('health?mark={name}')")
        return next(i for i, u in enumerate(seen) if f"mark={name}" in u)

    page.clock.install()
    with page.expect_response(lambda r: urlparse(r.url).path == path):
        page.goto(url)
    page.clock.pause_at(page.evaluate("Date.now()") + 1_000)
    page.evaluate(HIDE, True)
    hidden = mark("hidden")
    page.clock.run_for(60_000)
    shown = mark("shown")
    assert polls(hidden, shown) == 0, seen[hidden:shown]
    with page.expect_response(lambda r: urlparse(r.url).path == path):
        page.evaluate(HIDE, False)
    after = mark("after")
    assert polls(shown, after) == 1, seen[shown:after]
    for _ in range(20):  # visible, the same clock's time polls again (once the answer is in)
        page.clock.run_for(every_ms)
        later = mark("later")
        if polls(after, later):
            break
    assert polls(after, later) >= 1, seen[after:later]


def test_a_hidden_tab_does_not_poll_a_backfill_and_refreshes_once_shown(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """The Backfill page asked every 2 s in a hidden tab too."""
    apply(api, "name: dozing\ntasks:\n  nap: {type: shell, command: 'sleep 300'}\n")
    made = api.post(
        "/workflows/dozing/backfills",
        json={
            "start": "2026-01-01",
            "end": "2026-01-02",
            "parallel": 1,
            "order": "asc",
            "rerun": "none",
            "params": {},
        },
    )
    assert made.status_code in (200, 201), made.text
    backfill = made.json()["id"]
    try:
        asked_while_hidden_and_once_shown(
            page, f"{server.url}/#/backfills/{backfill}", f"/backfills/{backfill}", 2_000
        )
    finally:
        api.post(f"/backfills/{backfill}/cancel")


def test_a_hidden_tab_does_not_poll_a_pool_and_refreshes_once_shown(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """A pool's page asked every 3 s in a hidden tab too."""
    assert api.put("/pools/hid", params={"project": "default"}, json={"slots": 1}).status_code in (
        200,
        201,
    )
    apply(api, "name: pooled\ntasks:\n  nap: {type: shell, command: 'sleep 300', pool: hid}\n")
    run_id = api.post("/workflows/pooled/runs", json={}).json()["run"]["id"]
    try:
        asked_while_hidden_and_once_shown(
            page, f"{server.url}/#/pools/hid?project=default", "/pools/hid", 3_000
        )
    finally:
        api.post(f"/runs/{run_id}/stop")


# the rows a page holds: those wholly in the focused row's list's view, under its header
PER_PAGE = """() => {
  const a = document.activeElement;
  const list = a.closest('.vlist');
  const head = list.querySelector('.gantt-axis');
  return Math.floor((list.clientHeight - (head ? head.offsetHeight : 0)) / a.offsetHeight);
}"""


def forty_tasks_run(api: httpx.Client, name: str) -> str:
    tasks = "".join(f"  t{i:02d}: {{type: shell, command: 'true'}}\n" for i in range(40))
    apply(api, f"name: {name}\ntasks:\n{tasks}")
    run_id = api.post(f"/workflows/{name}/runs", json={}).json()["run"]["id"]
    assert wait_run(api, run_id, ("succeeded", "failed"))["run"]["state"] == "succeeded"
    return str(run_id)


def test_task_and_gantt_rows_are_options_of_a_listbox(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """The task list and the Gantt chart were role="list" holding role="button" rows (and the
    Gantt's axis): a list whose children are no listitems, and the arrow keys of a widget a
    list is not. They are listboxes of options now: each option says its place
    (aria-posinset of aria-setsize, which counts the rows not rendered too) and whether it
    is the task open in the panel (aria-selected)."""
    run_id = forty_tasks_run(api, "optioned")
    for tab, label in (("tasks", "Tasks"), ("gantt", "Gantt chart")):
        page.goto(f"{server.url}/#/runs/{run_id}?tab={tab}&task=t03")
        box = page.get_by_role("listbox", name=label)
        expect(box.get_by_role("option", name=re.compile("t00"))).to_be_visible()
        tree = box.aria_snapshot().splitlines()
        assert tree[0].startswith(f'- listbox "{label}"'), tree
        assert len(tree) > 1, tree
        assert all(re.match(r"  - '?option ", line) for line in tree[1:]), tree
        assert page.get_by_role("list").count() == 0
        assert page.get_by_role("button", name=re.compile("^t0")).count() == 0
        first = box.get_by_role("option").first
        assert first.get_attribute("aria-setsize") == "40"
        assert first.get_attribute("aria-posinset") == "1"
        selected = box.get_by_role("option", selected=True)
        expect(selected).to_have_accessible_name(re.compile(r"^t03\b"))
        first.focus()
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"task=t00"))
        expect(selected).to_have_accessible_name(re.compile(r"^t00\b"))


def test_page_down_and_page_up_move_the_focus_by_a_page_of_rows(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """PageDown and PageUp in the task list or the Gantt chart scrolled the list and left
    the focus behind (the next arrow key jumped back); they move the focus by a page of
    rows, the row reached shown and ringed, not past either end."""
    run_id = forty_tasks_run(api, "paged_rows")
    for tab in ("tasks", "gantt"):
        page.goto(f"{server.url}/#/runs/{run_id}?tab={tab}")
        first = page.locator(".vlist [tabindex]").first
        expect(first).to_contain_text("t00")
        first.focus()
        per_page = page.evaluate(PER_PAGE)
        assert 13 <= per_page < 39, per_page  # three pages reach either end of 40 rows
        at = 0
        for key, step in (
            *[("PageDown", per_page)] * 3,  # not past the last row
            *[("PageUp", -per_page)] * 3,  # nor before the first
            ("ArrowDown", 1),  # the arrows go on from there
        ):
            at = max(0, min(39, at + step))
            page.keyboard.press(key)
            name = f"t{at:02d}"
            assert focused(page, name) == {"name": name, **SHOWN}, (tab, key)


def test_the_delivery_logs_run_filter_and_page_stay_in_their_project(
    page: Any, server: ServerProcess
) -> None:
    """The Alerts page's delivery log has the Runs page's defect: its run filter and its page
    (``cursor``) are in the URL and were kept when the project changed, so another project
    was asked for the previous one's run from the previous one's cursor."""
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/alerts?" in r.url else None)
    page.goto(f"{server.url}/#/alerts?tab=deliveries&run_id=default.some-run&cursor=7")
    expect(page.get_by_label("Run filter")).to_have_value("default.some-run")
    expect(page.get_by_text("No alerts match.")).to_be_visible()
    switch_project(page, "quiet")
    expect(page).not_to_have_url(re.compile(r"run_id=|cursor="))
    expect(page).to_have_url(re.compile(r"tab=deliveries"))
    expect(page.get_by_label("Run filter")).to_have_value("")
    expect(page.get_by_text("No alerts match.")).to_be_visible()
    mine = [parse_qs(urlparse(u).query) for u in asked if "project=quiet" in u]
    assert mine, asked
    assert all("run_id" not in q and "cursor" not in q for q in mine), mine


def test_the_runs_workflow_filter_asks_again_after_a_failed_answer(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """The Runs page asked for its filter's workflow names once per project: one failed
    answer (a busy server's 503) left the filter empty for as long as the page stayed open."""
    apply(api, "name: retried\nproject: rfilter\ntasks:\n  t: {type: shell, command: 'true'}\n")
    failed: list[str] = []

    def fail_first(route: Any) -> None:
        if "project=rfilter" in route.request.url and not failed:
            failed.append(route.request.url)
            route.fulfill(
                status=503,
                content_type="application/json",
                body='{"error": "unavailable", "message": "the server is busy"}',
            )
        else:
            route.continue_()

    page.route(re.compile(r".*/workflows\?.*"), fail_first)
    page.goto(f"{server.url}/#/runs")
    switch_project(page, "rfilter")
    page.get_by_label("Workflow filter").select_option("retried")  # waits for the option
    assert failed, "the filter's first request was never failed"
    expect(page).to_have_url(re.compile(r"workflow=retried"))
