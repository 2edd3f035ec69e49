"""Web UI defects a review found, one test each (each failed before its fix), in a real
browser (headless Chromium at 1280x800) against a real local server."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.test_ui_defects import apply, cli, switch_project, wait_run
from tests.browser.test_ui_flows import as_user, user_token
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

# what has keyboard focus: its row's name (a task list's or a Gantt chart's), whether it is in
# a list, whether it is what a user sees at its centre (not scrolled away, not under the
# Gantt's sticky axis), and whether it shows a focus ring
FOCUSED = """() => {
  const a = document.activeElement;
  const r = a.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return {
    name: a.querySelector('.mono, .gantt-name')?.textContent ?? null,
    in_list: !!a.closest('.vlist'),
    seen: !!hit && a.contains(hit),
    ring: a.matches(':focus-visible') && getComputedStyle(a).outlineStyle !== 'none',
  };
}"""


SHOWN = {"in_list": True, "seen": True, "ring": True}  # a row of a list, in view, ringed


def focused(page: Any, name: str | None = None) -> dict[str, Any]:
    """What has focus, once it is the row ``name`` (when given)."""
    if name is not None:
        expect(page.locator(":focus").locator(".mono, .gantt-name")).to_have_text(name)
    return page.evaluate(FOCUSED)  # type: ignore[no-any-return]


def test_a_long_list_of_rows_is_one_tab_stop_walked_with_the_arrow_keys(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """Every task row (and Gantt row) was a tab stop of its own: 40 tasks, 40 Tabs to get
    past the list. Now the list is one stop; the arrows, Home and End move between its rows
    (also to rows not rendered yet: the list is virtualised), each shown and ringed, and
    Enter opens the focused one."""
    tasks = "".join(f"  t{i:02d}: {{type: shell, command: 'true'}}\n" for i in range(40))
    apply(api, f"name: many_rows\ntasks:\n{tasks}")
    run_id = api.post("/workflows/many_rows/runs", json={}).json()["run"]["id"]
    assert wait_run(api, run_id, ("succeeded", "failed"))["run"]["state"] == "succeeded"
    for tab, label, before in (
        ("tasks", "Tasks", lambda: page.get_by_label("Filter tasks")),
        ("gantt", "Gantt chart", lambda: page.get_by_role("tab", name="tasks")),
    ):
        page.goto(f"{server.url}/#/runs/{run_id}?tab={tab}")
        rows = page.get_by_role("listbox", name=label)
        expect(rows.get_by_role("option", name=re.compile("t00"))).to_be_visible()
        before().focus()
        page.keyboard.press("Tab")
        assert focused(page) == {"name": "t00", **SHOWN}
        page.keyboard.press("Tab")  # one Tab leaves the list
        assert not focused(page)["in_list"], f"{label}: Tab stayed in the list"
        page.keyboard.press("Shift+Tab")  # and one comes back, to the row it left
        assert focused(page)["name"] == "t00"
        for key, name in (
            ("ArrowDown", "t01"),
            ("ArrowDown", "t02"),
            ("ArrowUp", "t01"),
            ("End", "t39"),  # not rendered until reached
            ("ArrowUp", "t38"),
            ("Home", "t00"),
            ("ArrowUp", "t00"),  # the first row stays
        ):
            page.keyboard.press(key)
            assert focused(page, name) == {"name": name, **SHOWN}, (label, key)
        page.keyboard.press("End")
        page.keyboard.press("Tab")
        page.keyboard.press("Shift+Tab")  # the list's stop is now its last row
        assert focused(page, "t39")["in_list"]
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("task-panel").locator("h2")).to_have_text("t39")
        expect(page).to_have_url(re.compile(r"task=t39"))


DRAFT_KEY = "stratoflow.apply.draft"


def sign_in(page: Any, token: str) -> None:
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Use this token").click()


def test_the_apply_draft_is_forgotten_on_sign_out_and_when_a_401_asks_for_a_token(
    signed_out_page: Any, server: ServerProcess
) -> None:
    """The Apply page's draft (kept in the tab's sessionStorage) outlived a sign-out: the
    tab's next user opened Apply and found the previous user's text."""
    page = signed_out_page
    as_user(page, user_token(server, "dora", "default", "editor"))
    eve = user_token(server, "eve", "default", "editor")
    frank = user_token(server, "frank", "default", "editor")
    page.goto(f"{server.url}/#/apply")
    editor = page.get_by_label("Workflow YAML")
    editor.fill("name: doras_draft\ntasks:\n  t: {type: shell, command: 'echo dora'}\n")
    page.get_by_role("button", name="sign out").click()
    sign_in(page, eve)  # the page asked again is still Apply
    expect(editor).to_have_value(re.compile(r"^name: hello\n"))  # the example, not dora's
    assert page.evaluate(f"sessionStorage.getItem('{DRAFT_KEY}')") is None

    # a 401 (eve's token revoked while a page is open) brings the sign-in form: forgotten too
    editor.fill("name: eves_draft\ntasks:\n  t: {type: shell, command: 'echo eve'}\n")
    listed = cli(server, "tokens", "list", "--user", "eve").strip().splitlines()
    cli(server, "tokens", "revoke", listed[0].split("\t")[0])
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{DRAFT_KEY}')") is None
    sign_in(page, frank)
    page.get_by_role("link", name="Apply", exact=True).click()
    expect(editor).to_have_value(re.compile(r"^name: hello\n"))


# counts the response bodies the page has read, by URL: once one is counted, what the app
# does with it (all in microtasks after the read) has been done
READS = """
window.__reads = [];
const text = Response.prototype.text;
Response.prototype.text = function () {
  const url = this.url;
  return text.call(this).then((t) => { window.__reads.push(url); return t; });
};
"""


def test_a_late_answer_to_me_never_overwrites_a_newer_one(page: Any, server: ServerProcess) -> None:
    """/me for a project switched away from, answering after /me for the project switched
    to, replaced it: the header (and the actions offered) said the previous project's."""
    page.add_init_script(READS)
    held: list[Any] = []

    def me(route: Any) -> None:
        if "project=slowpoke" in route.request.url:
            held.append(route)  # answered below, after the newer one
        else:
            route.continue_()

    page.route(re.compile(r"/me\?"), me)
    page.goto(f"{server.url}/#/")
    user = page.locator("header .user")
    expect(user).to_have_attribute("title", "admin in default")
    switch_project(page, "slowpoke")
    switch_project(page, "fresh")
    expect(user).to_have_attribute("title", "admin in fresh")
    assert len(held) == 1
    held[0].fulfill(json={"user": "late", "project": "slowpoke", "role": "viewer", "actions": []})
    page.wait_for_function("() => window.__reads.some((u) => u.includes('project=slowpoke'))")
    expect(user).to_have_attribute("title", "admin in fresh")
    expect(page.get_by_label("Project")).to_have_value("fresh")


def test_a_new_project_starts_on_its_first_page_of_workflows(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """The workflows list kept its cursor when the project changed: the new project was
    shown from where the previous one's pages had got to (here: nothing, and ← Previous)."""
    for i in range(51):  # pages of 50: a second page of one
        apply(
            api, f"name: w{i:02d}\nproject: paged\ntasks:\n  t: {{type: shell, command: 'true'}}\n"
        )
    apply(api, "name: a_single\nproject: unpaged\ntasks:\n  t: {type: shell, command: 'true'}\n")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/workflows?" in r.url else None)
    page.goto(f"{server.url}/#/")
    switch_project(page, "paged")
    table = page.get_by_test_id("workflows")
    expect(table).to_contain_text("w49")
    page.get_by_role("button", name="Next →").click()
    expect(table).to_contain_text("w50")
    switch_project(page, "unpaged")
    expect(page.get_by_role("link", name="a_single")).to_be_visible()
    expect(page.get_by_role("button", name="← Previous")).to_have_count(0)
    unpaged = [parse_qs(urlparse(u).query) for u in asked if "project=unpaged" in u]
    assert unpaged, asked
    assert all("after" not in q and "cursor" not in q for q in unpaged), unpaged


HIDE = """(hidden) => {
  Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
  Object.defineProperty(document, 'visibilityState', {
    configurable: true, get: () => (hidden ? 'hidden' : 'visible'),
  });
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_a_hidden_tab_does_not_poll_the_run_or_its_log_and_refreshes_once_shown(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """The run page and the followed log went on polling in a hidden tab. Time is the
    page's fake clock (paused): while hidden, 60 s of it pass without a request; shown
    again, the run and the log are each asked once, at once."""
    apply(api, "name: napping\ntasks:\n  nap: {type: shell, command: 'echo awake; sleep 300'}\n")
    run_id = api.post("/workflows/napping/runs", json={}).json()["run"]["id"]
    run_paths = {f"/runs/{run_id}", f"/runs/{run_id}/states"}
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))

    def polls(since: int, until: int) -> dict[str, int]:
        paths = [urlparse(u).path for u in seen[since:until]]
        return {
            "run": sum(p in run_paths for p in paths),
            "log": sum(p.endswith("/log") for p in paths),
        }

    def mark(name: str) -> int:
        """A request of the test's own: every request the page made before it is in
        ``seen`` once it is; its index there."""
        with page.expect_request(lambda r: f"mark={name}" in r.url):
            page.evaluate(f"fetch('health?mark={name}')")
        return next(i for i, u in enumerate(seen) if f"mark={name}" in u)

    page.clock.install()
    page.goto(f"{server.url}/#/runs/{run_id}?tab=tasks&task=nap")
    expect(page.get_by_test_id("log")).to_contain_text("awake", timeout=30_000)
    expect(page.locator(".live")).to_be_visible()
    page.clock.pause_at(page.evaluate("Date.now()") + 1_000)
    page.evaluate(HIDE, True)
    hidden = mark("hidden")
    page.clock.run_for(60_000)  # the run was polled about once a second, the log every 1.5 s
    shown = mark("shown")
    assert polls(hidden, shown) == {"run": 0, "log": 0}
    with (
        page.expect_response(lambda r: urlparse(r.url).path in run_paths),
        page.expect_response(lambda r: urlparse(r.url).path.endswith("/log")),
    ):
        page.evaluate(HIDE, False)
    after = mark("after")
    assert polls(shown, after) == {"run": 1, "log": 1}
    page.clock.run_for(5_000)  # visible, the same clock's time polls again
    later = mark("later")
    assert polls(after, later)["run"] >= 1, seen[after:later]
    assert polls(after, later)["log"] >= 1, seen[after:later]
    assert api.post(f"/runs/{run_id}/stop").status_code == 200


# the first GET /me?project=nav_view waits in the page until window.__release() sends it
HOLD_FIRST_ME_OF_NAV_VIEW = """
const realFetch = window.fetch.bind(window);
let held = false;
window.__release = () => false; // true once it has sent the one held
window.fetch = (input, init) => {
  if (held || !String(input).includes('me?project=nav_view')) return realFetch(input, init);
  held = true;
  return new Promise((resolve) => { window.__release = () => { resolve(realFetch(input, init)); return true; }; });
};
"""


def test_the_navigations_apply_entry_follows_the_role_in_the_selected_project(
    signed_out_page: Any, server: ServerProcess
) -> None:
    """The Apply entry shows exactly where the role in the selected project may apply
    (editor, admin; not viewer, operator or no role), as /me says. What was wrong: while a
    newly selected project's /me was on its way, the previous project's actions (Apply among
    them) were still offered."""
    page = signed_out_page
    token = user_token(server, "nia", "nav_edit", "editor")
    for project, role in (("nav_view", "viewer"), ("nav_op", "operator"), ("nav_admin", "admin")):
        cli(server, "users", "grant", "nia", project, role)
    as_user(page, token)
    page.add_init_script(HOLD_FIRST_ME_OF_NAV_VIEW)
    entry = page.locator("header nav").get_by_role("link", name="Apply", exact=True)
    user = page.locator("header .user")
    page.goto(f"{server.url}/#/runs")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as nia:
        for project, title, shown in (
            ("nav_edit", "editor in nav_edit", True),
            ("nav_view", "viewer in nav_view", False),
            ("nav_op", "operator in nav_op", False),
            ("nav_admin", "admin in nav_admin", True),
            ("nav_none", "no role in this project", False),
            ("nav_edit", "editor in nav_edit", True),
        ):
            switch_project(page, project)
            if project == "nav_view":  # its /me held: the editor's actions are not offered
                expect(entry).to_have_count(0)
                # the project is switched before its /me is asked (an effect, after the
                # render): release it once it is held, not before
                page.wait_for_function("window.__release()")
            expect(user).to_have_attribute("title", title)
            expect(entry).to_have_count(1 if shown else 0)
            actions = nia.get("/me", params={"project": project}).json()["actions"]
            assert ("workflow.apply" in actions) == shown, (project, actions)
