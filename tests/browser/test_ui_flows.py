"""The web UI in a real browser (headless Chromium at 1280x800) against a real local server:
apply a workflow by pasting it, trigger it, watch the graph turn green, read a failed task's
log, fix the cause and rerun it, rerun from a task, pause, resume, stop and mark a task, see a
version diff, filter the runs list; and an invalid workflow shows the CLI's message at its line.
Screenshots are saved in artifacts/browser/."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from playwright.sync_api import expect

from stratoflow.cli import main
from tests.browser.conftest import ROOT, Shots
from tests.e2e.server_process import ServerProcess
from tests.logframe import framed, pid_of

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

RUN_TIMEOUT = 60_000  # ms for a small run to finish on a busy machine
SUCCEEDED_RGB = (74, 222, 128)  # STATE_COLORS.succeeded in ui/src/graph/GraphView.tsx
FAILED_RGB = (248, 113, 113)  # STATE_COLORS.failed


def needs_fix(marker: Path, description: str = "fails until its marker file exists") -> str:
    return f"""\
name: needs_fix
description: {description}
tasks:
  prepare:
    type: shell
    command: echo "preparing"
  check:
    type: shell
    depends_on: [prepare]
    command: |
      echo "checking for the marker"
      if [ ! -f "{marker}" ]; then echo "marker {marker.name} is missing" >&2; exit 3; fi
      echo "found=yes" >> "$STRATOFLOW_OUTPUT"
  report:
    type: shell
    depends_on: [check]
    command: echo "report {{{{ tasks.check.outputs.found }}}}"
"""


def paste_and_apply(page: Any, server: ServerProcess, source: str) -> None:
    page.goto(f"{server.url}/#/apply")
    page.get_by_label("Workflow YAML").fill(source)
    page.get_by_role("button", name="Apply", exact=True).click()


def graph(page: Any) -> Any:
    return page.get_by_test_id("graph")


def wait_graph_states(page: Any, summary: str, timeout: int = RUN_TIMEOUT) -> None:
    """The canvas's accessible name counts tasks per state, e.g. "3 succeeded"."""
    expect(graph(page)).to_have_attribute("aria-label", re.compile(summary), timeout=timeout)


def find_task(page: Any, task_id: str) -> None:
    """Search the graph: it centres the task (at scale >= 1) and selects it."""
    expect(graph(page)).to_have_attribute("data-ready", "true")
    page.get_by_label("Find a task").fill(task_id)
    page.get_by_role("button", name="Find", exact=True).click()
    expect(page.get_by_test_id("task-panel")).to_contain_text(task_id)


PIXEL_JS = """
([r, g, b]) => {
    const c = document.querySelector('[data-testid=graph]');
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(c.clientWidth * dpr)) return false;  // a resize not yet redrawn
    const x = Math.round(c.clientWidth / 2 * dpr), y = Math.round((c.clientHeight / 2 + 10) * dpr);
    const px = c.getContext('2d').getImageData(x, y, 1, 1).data;
    window.__lastPixel = [px[0], px[1], px[2]];
    return Math.abs(px[0] - r) <= 6 && Math.abs(px[1] - g) <= 6 && Math.abs(px[2] - b) <= 6;
}
"""


def assert_painted_at_center(page: Any, rgb: tuple[int, int, int]) -> None:
    """The colour drawn 10 px below the canvas centre, inside the centred task's box (28 px
    high at scale >= 1) and below its label, becomes ``rgb``: this reads what was really
    painted, once the canvas has caught up with any resize."""
    try:
        page.wait_for_function(PIXEL_JS, arg=list(rgb), timeout=5_000)
    except Exception:
        seen = page.evaluate("window.__lastPixel")
        raise AssertionError(f"painted {seen} at the centre, expected {rgb}") from None


def run_badge(page: Any) -> Any:
    return page.locator(".run-meta .badge").first


# ------------------------------------------------------------------ the main story
def test_apply_trigger_watch_fail_read_log_fix_and_rerun(
    page: Any, server: ServerProcess, shared_dir: Path
) -> None:
    shot = Shots(page, "flow")
    example = (ROOT / "examples" / "etl_chain.yaml").read_text(encoding="utf-8")

    # apply an example by pasting it; the workflow page shows its graph
    paste_and_apply(page, server, example)
    expect(page.get_by_role("status")).to_contain_text("Applied: v1")
    expect(page.locator("h1")).to_contain_text("etl_chain")
    expect(graph(page)).to_have_attribute("data-ready", "true")
    expect(graph(page)).to_have_attribute("aria-label", "Graph of 3 tasks")
    # a task found in the definition's graph shows its definition
    page.get_by_label("Find a task").fill("transform")
    page.get_by_role("button", name="Find", exact=True).click()
    definition = page.get_by_test_id("task-definition")
    expect(definition).to_contain_text('"depends_on"')
    expect(definition).to_contain_text('"extract"')
    shot("workflow-graph")

    # trigger with parameters and a logical date, then watch it finish in the graph
    page.get_by_role("button", name="Trigger run").click()
    params = page.get_by_label("Parameters")
    expect(params).to_have_value(re.compile(r'"region": "eu"'))  # the workflow's defaults
    params.fill('{"region": "apac", "min_rows": 10}')
    page.get_by_label("Logical date (optional)").fill("2026-01-15T12:00")
    shot("trigger-form")
    page.get_by_role("button", name="Start the run").click()
    expect(page).to_have_url(re.compile(r"#/runs/default\.etl_chain-"))  # <project>.<name>-
    wait_graph_states(page, r"^Graph of 3 tasks: 3 succeeded$")
    expect(run_badge(page)).to_have_text("succeeded")
    find_task(page, "load")
    assert_painted_at_center(page, SUCCEEDED_RGB)
    log = page.get_by_test_id("task-panel").get_by_test_id("log")
    expect(log).to_contain_text("for APAC")  # the parameter reached the tasks
    shot("run-succeeded")
    find_task(page, "extract")
    expect(log).to_contain_text("extracting apac for 2026-01-15")  # and the logical date

    # a workflow that fails until a marker file exists
    marker = shared_dir / "marker"
    paste_and_apply(page, server, needs_fix(marker))
    expect(page.locator("h1")).to_contain_text("needs_fix")
    page.get_by_role("button", name="Trigger run").click()
    page.get_by_role("button", name="Start the run").click()
    wait_graph_states(page, r"^Graph of 3 tasks: 1 failed, 1 succeeded, 1 upstream_failed$")
    expect(run_badge(page)).to_have_text("failed")

    # open the failed task: its attempt, exit code and log
    find_task(page, "check")
    assert_painted_at_center(page, FAILED_RGB)
    panel = page.get_by_test_id("task-panel")
    expect(panel.get_by_test_id("attempts")).to_contain_text("3")  # the exit code
    expect(panel.get_by_test_id("log")).to_contain_text("marker marker is missing")
    expect(panel.get_by_test_id("log")).to_contain_text("checking for the marker")
    shot("failed-task-log")

    # fix the cause, rerun the failed tasks: the run succeeds, "check" has a second attempt
    marker.write_text("ok", encoding="utf-8")
    page.get_by_role("button", name="Rerun failed").click()
    wait_graph_states(page, r"^Graph of 3 tasks: 3 succeeded$")
    expect(run_badge(page)).to_have_text("succeeded")
    attempts = panel.get_by_test_id("attempts").locator("tbody tr")
    expect(attempts).to_have_count(2)
    expect(panel.get_by_test_id("outputs")).to_contain_text('"found": "yes"')
    shot("rerun-succeeded")

    # rerun from a task: it and everything downstream run again
    find_task(page, "prepare")
    page.once("dialog", lambda dialog: dialog.accept())  # asked first, naming task and run
    panel.get_by_role("button", name="Rerun from here").click()
    expect(panel.get_by_test_id("attempts").locator("tbody tr")).to_have_count(
        2, timeout=RUN_TIMEOUT
    )
    wait_graph_states(page, r"^Graph of 3 tasks: 3 succeeded$")
    expect(run_badge(page)).to_have_text("succeeded")

    # the Gantt chart: one bar per attempt (prepare 2, check 3, report 2)
    page.get_by_role("tab", name="gantt").click()
    expect(page.get_by_test_id("gantt").locator(".gantt-bar")).to_have_count(7)
    shot("gantt")

    # the runs list, filtered by workflow and state
    page.goto(f"{server.url}/#/runs")
    page.get_by_label("Workflow filter").select_option("needs_fix")
    expect(page.get_by_test_id("runs").locator("tbody tr")).to_have_count(1)
    page.get_by_label("State filter").select_option("failed")
    expect(page.get_by_text("No runs match.")).to_be_visible()
    page.get_by_label("State filter").select_option("succeeded")
    expect(page.get_by_test_id("runs").locator("tbody tr")).to_have_count(1)
    shot("runs-filtered")

    # the workflows list shows each one's last run
    page.goto(f"{server.url}/#/")
    row = page.get_by_test_id("workflows").locator("tr", has_text="needs_fix")
    expect(row.locator(".badge")).to_have_text("succeeded")
    shot("workflows")


def test_a_new_version_and_its_diff(page: Any, server: ServerProcess, tmp_path: Path) -> None:
    shot = Shots(page, "diff")
    paste_and_apply(page, server, needs_fix(tmp_path / "m", "version one"))
    expect(page.locator("h1")).to_contain_text("needs_fix")
    paste_and_apply(page, server, needs_fix(tmp_path / "m", "version two"))
    expect(page.get_by_role("status")).to_contain_text("Applied: v")
    page.get_by_role("tab", name="diff").click()
    diff = page.get_by_test_id("diff")
    expect(diff.locator(".del")).to_contain_text("-description: version one")
    expect(diff.locator(".add")).to_contain_text("+description: version two")
    shot("version-diff")
    page.get_by_role("tab", name="versions").click()
    expect(page.get_by_test_id("versions").locator("tbody tr").first).to_contain_text("version two")
    page.get_by_role("tab", name="yaml").click()
    expect(page.get_by_test_id("yaml")).to_contain_text("description: version two")


@pytest.mark.parametrize(
    ("source", "line"),
    [
        (
            "name: bad\ntasks:\n  a:\n    type: shell\n    command: echo hi\n"
            "  b:\n    type: shel\n    depends_on: [a]\n",
            6,
        ),
        ("name: bad\ntasks:\n  a: {type: shell, command: echo 1}\n  b: [unclosed\n", 5),
    ],
)
def test_invalid_yaml_shows_the_cli_message_at_its_line(
    page: Any, server: ServerProcess, tmp_path: Path, source: str, line: int
) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(source, encoding="utf-8")
    cli = subprocess.run(
        [sys.executable, "-m", "stratoflow", "validate", str(file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 2
    cli_message = cli.stderr.strip().removeprefix(f"error: {file}: ")

    paste_and_apply(page, server, source)
    error = page.get_by_test_id("apply-error")
    expect(error.locator("pre")).to_have_text(cli_message)
    assert f"(line {line})" in cli_message
    marked = page.locator(".editor .gutter .bad-line")
    expect(marked).to_have_count(1)
    expect(marked).to_have_text(str(line))
    # the problem's line link selects that line in the editor
    error.get_by_role("button", name=f"line {line}").click()
    start = page.get_by_label("Workflow YAML").evaluate("el => el.selectionStart")
    assert start == len("".join(source.splitlines(keepends=True)[: line - 1]))
    Shots(page, "invalid")(f"line-{line}")
    assert page.url.endswith("#/apply")  # nothing was applied


def test_pause_resume_stop_and_mark_from_the_run_page(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    shot = Shots(page, "ops")
    source = (
        "name: slow\ntasks:\n  sleeper:\n    type: shell\n    command: sleep 60\n"
        "  after:\n    type: shell\n    depends_on: [sleeper]\n    command: echo after\n"
    )
    assert api.post("/workflows", json={"source": source}).status_code in (200, 201)
    page.goto(f"{server.url}/#/workflows/slow")
    page.get_by_role("button", name="Trigger run").click()
    page.get_by_role("button", name="Start the run").click()
    wait_graph_states(page, r"1 running")
    page.get_by_role("button", name="Pause").click()
    expect(run_badge(page)).to_have_text("paused")
    shot("paused")
    page.get_by_role("button", name="Resume").click()
    expect(run_badge(page)).to_have_text("running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop").click()
    expect(run_badge(page)).to_have_text("stopped")
    wait_graph_states(page, r"^Graph of 2 tasks: 2 stopped$")
    shot("stopped")
    # mark the stopped task succeeded: what waited on it runs, and the run succeeds
    find_task(page, "sleeper")
    page.once("dialog", lambda dialog: dialog.accept())  # asked first, as Stop is
    page.get_by_test_id("task-panel").get_by_role("button", name="Mark succeeded").click()
    wait_graph_states(page, r"^Graph of 2 tasks: 2 succeeded$")
    expect(run_badge(page)).to_have_text("succeeded")
    shot("marked")


def test_a_long_log_is_read_in_pages(page: Any, server: ServerProcess, api: httpx.Client) -> None:
    """`seq 1 100000` writes 588,895 bytes, in the wrapper's frame: the UI fetches 256 KiB at a
    time (``?limit=``)."""
    source = "name: chatty\ntasks:\n  count:\n    type: shell\n    command: seq 1 100000\n"
    assert api.post("/workflows", json={"source": source}).status_code in (200, 201)
    run_id = api.post("/workflows/chatty/runs", json={}).json()["run"]["id"]
    page.goto(f"{server.url}/#/runs/{run_id}?task=count")
    log = page.get_by_test_id("log")
    more = page.get_by_role("button", name=re.compile(r"^Load more"))
    expect(run_badge(page)).to_have_text("succeeded", timeout=RUN_TIMEOUT)
    expect(log).to_contain_text("1\n2\n3\n")
    start, end = framed("count", "", pid=pid_of(log.inner_text())).splitlines(keepends=True)
    size = len(start) + 588_895 + len(end)
    # the pages end where the reads did: the panel may have read a first piece while the
    # task ran (it follows a running attempt), then a page from there once it ended; each
    # click reads the next 256 KiB, until none is left
    expect(more).to_have_text(re.compile(r"\(([0-9,]+) bytes left\)"))
    assert "100000" not in log.inner_text()

    def left() -> int:
        return int(re.findall(r"\(([0-9,]+) bytes left", more.inner_text())[0].replace(",", ""))

    for _ in range(10):
        if more.count() == 0:
            break
        before = left()
        assert 0 < before < size
        more.click()
        if before <= 262_144:
            expect(more).to_have_count(0)
            break
        # fewer left: by a page (or more, where the panel's last follow read came in too)
        for _ in range(200):
            if more.count() == 0 or left() != before:
                break
            page.wait_for_timeout(50)
        if more.count() == 0:
            break
        assert left() <= before - 262_144
    expect(more).to_have_count(0)
    text = log.inner_text()
    assert text.startswith(start)
    assert text.rstrip("\n").endswith("99999\n100000\n" + end.rstrip("\n"))
    numbers = text[len(start) : -len(end)].split()
    assert numbers == [str(i) for i in range(1, 100_001)]  # every line, once
    Shots(page, "log")("paged")


def test_a_followed_log_shows_its_last_words_once_the_task_ends(
    page: Any, api: httpx.Client, server: ServerProcess
) -> None:
    """The task panel follows a running attempt's log every 1.5 s, and the server holds back
    its last bytes while it runs (a secret could be split there). When the attempt ended the
    panel stopped following, and what was written after its last read (the held tail with
    it) stayed behind a "Load more" button: the log seemed to end early."""
    source = (
        "name: last_words\ntasks:\n  talk:\n    type: shell\n"
        "    command: 'echo first; sleep 4; echo these are the last words'\n"
    )
    assert api.post("/workflows", json={"source": source}).status_code in (200, 201)
    run_id = api.post("/workflows/last_words/runs", json={}).json()["run"]["id"]
    page.goto(f"{server.url}/#/runs/{run_id}?task=talk")
    log = page.get_by_test_id("task-panel").get_by_test_id("log")
    expect(log).to_contain_text("first", timeout=RUN_TIMEOUT)
    expect(run_badge(page)).to_have_text("succeeded", timeout=RUN_TIMEOUT)
    expect(log).to_contain_text("these are the last words")
    expect(page.get_by_role("button", name=re.compile(r"^Load more"))).to_have_count(0)


def user_token(server: ServerProcess, name: str, project: str, role: str) -> str:
    """A real user with a real role and token, made with the CLI on the server's home."""
    runner = CliRunner()
    home = ["--home", str(server.home)]
    for args in (["users", "add", name], ["users", "grant", name, project, role]):
        result = runner.invoke(main, [*args, *home])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["tokens", "create", name, *home])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def as_user(page: Any, token: str) -> None:
    page.context.add_init_script(f"localStorage.setItem('stratoflow.token', {json.dumps(token)})")


def test_actions_the_caller_may_not_perform_are_hidden(
    signed_out_page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """A viewer sees the run but none of its actions; an operator gets the run's actions
    but still cannot apply. Real users, real roles: the server decides, the UI follows."""
    page = signed_out_page
    source = "name: viewed\ntasks:\n  nap:\n    type: shell\n    command: sleep 30\n"
    assert api.post("/workflows", json={"source": source}).status_code in (200, 201)
    run_id = api.post("/workflows/viewed/runs", json={}).json()["run"]["id"]
    as_user(page, user_token(server, "vera", "default", "viewer"))
    page.goto(f"{server.url}/#/runs/{run_id}?task=nap")
    expect(page.get_by_test_id("task-panel")).to_contain_text("nap")
    expect(run_badge(page)).to_have_text("running")
    expect(page.locator(".user")).to_have_text("vera")
    for name in ("Pause", "Stop", "Rerun failed", "Rerun from here", "Mark succeeded"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    page.goto(f"{server.url}/#/workflows/viewed")
    expect(page.locator("h1")).to_contain_text("viewed")
    expect(page.get_by_role("button", name="Trigger run")).to_have_count(0)
    expect(page.get_by_role("link", name="Apply")).to_have_count(0)
    page.goto(f"{server.url}/#/")
    expect(page.get_by_test_id("workflows")).to_contain_text("viewed")
    expect(page.get_by_role("link", name="Apply")).to_have_count(0)
    Shots(page, "viewer")("workflows")
    # the same pages for an operator: the run's buttons are back, applying is not
    page.evaluate("localStorage.clear()")
    as_user(page, user_token(server, "otto", "default", "operator"))
    page.goto(f"{server.url}/#/runs/{run_id}")
    page.reload()
    expect(page.locator(".user")).to_have_text("otto")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.get_by_role("link", name="Apply")).to_have_count(0)
    api.post(f"/runs/{run_id}/stop")


# A fetch of a run page's first requests (its states and its layout) answered at once with a
# 401, as a token cleared or revoked while the page is open is answered: the rejection lands
# before the page's effects (Preact runs them after the next frame) have taken it up.
REFUSE_FIRST_REQUESTS = """
const realFetch = window.fetch.bind(window);
window.fetch = (input, init) => /\\/runs\\/[^/?]+\\/(states|layout)/.test(String(input))
  ? Promise.resolve(new Response(
      JSON.stringify({error: "unauthorized", message: "this API needs a token", problems: []}),
      {status: 401, headers: {"Content-Type": "application/json"}}))
  : realFetch(input, init);
"""


@pytest.mark.parametrize("opened", ["at the run", "from the list"])
def test_a_run_page_whose_first_requests_are_refused_reports_no_uncaught_error(
    page: Any, server: ServerProcess, api: httpx.Client, opened: str
) -> None:
    """The first requests are made as the page renders (or as the script starts) and taken
    up by its effects a frame later; refused before then, they are still the page's errors to
    show, not uncaught rejections (the page fixture fails the test on any). The run view's
    own poll is not refused, so the run is shown, and the graph says why it cannot draw."""
    source = "name: refused\ntasks:\n  nap:\n    type: shell\n    command: sleep 30\n"
    assert api.post("/workflows", json={"source": source}).status_code in (200, 201)
    run_id = api.post("/workflows/refused/runs", json={}).json()["run"]["id"]
    page.context.add_init_script(REFUSE_FIRST_REQUESTS)
    if opened == "at the run":
        page.goto(f"{server.url}/#/runs/{run_id}")
    else:  # the same document: the page asks for them as it renders
        page.goto(f"{server.url}/#/")
        expect(page.get_by_test_id("workflows")).to_contain_text("refused")
        page.goto(f"{server.url}/#/runs/{run_id}")
    expect(run_badge(page)).to_have_text("running")
    expect(page.get_by_text("this API needs a token")).to_be_visible()
    page.evaluate("new Promise((done) => setTimeout(done, 500))")  # any rejection has landed
    api.post(f"/runs/{run_id}/stop")


def test_signing_in_with_a_token(signed_out_page: Any, server: ServerProcess) -> None:
    """Without a token the API answers 401 and the UI asks for one; a bad token is refused
    with the server's words; the first admin's token signs in, and the UI sends it as a
    Bearer token on every request until signing out."""
    page = signed_out_page
    seen: list[str | None] = []
    page.on(
        "request",
        lambda request: (
            seen.append(request.headers.get("authorization"))
            if "/workflows" in request.url
            else None
        ),
    )
    page.goto(f"{server.url}/#/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("this API needs a token")).to_be_visible()
    Shots(page, "token")("sign-in")
    page.get_by_label("API token").fill("sft_" + "0" * 16 + "_" + "x" * 43)
    page.get_by_role("button", name="Use this token").click()
    expect(page.get_by_text("invalid or revoked API token")).to_be_visible()
    page.get_by_label("API token").fill(server.token)
    # The heading renders before the list is fetched; wait for the fetch itself rather than
    # assume it has been sent by the time the page looks ready.
    with page.expect_request(lambda request: "/workflows" in request.url):
        page.get_by_role("button", name="Use this token").click()
    expect(page.get_by_role("heading", name="Workflows")).to_be_visible()
    expect(page.locator(".user")).to_have_text("admin")
    assert seen
    assert set(seen) == {f"Bearer {server.token}"}
    page.get_by_role("button", name="sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
