"""The task panel's actions in a real browser: **Rerun from here** is offered only as the API
takes it (on a running run, a task that has not run yet is shown disabled, the API's reason as
its tooltip), and **Mark succeeded**, **Mark skipped**, **Mark failed** and **Rerun from here**
ask first, naming the task and the run and saying what follows, as **Stop** does."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Shots
from tests.browser.test_ui_flows import RUN_TIMEOUT, run_badge, wait_graph_states
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]


def start(api: httpx.Client, name: str, source: str) -> str:
    assert api.post("/workflows", json={"source": source}).status_code in (200, 201)
    response = api.post(f"/workflows/{name}/runs", json={})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run"]["id"]
    return run_id


def panel_state(page: Any) -> Any:
    return page.get_by_test_id("task-panel").locator(".run-meta .badge").first


def posts(page: Any) -> list[str]:
    """The POST requests the page sends from now on, by path."""
    sent: list[str] = []

    def seen(request: Any) -> None:
        if request.method == "POST":
            sent.append(unquote(urlsplit(request.url).path))

    page.on("request", seen)
    return sent


def test_rerun_from_here_follows_the_api_on_a_running_run(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    """On a running run (Airflow's *Clear* of a task of a running DAG run): a task that has
    not run yet cannot be rerun, and the button, disabled, says why; a task that ended is
    rerun at once, asked first, while the run goes on."""
    source = (
        "name: live_rerun\ntasks:\n"
        "  quick:\n    type: shell\n    command: echo quick\n"
        "  sleeper:\n    type: shell\n    command: sleep 60\n"
        "  later:\n    type: shell\n    depends_on: [sleeper]\n    command: echo later\n"
    )
    run_id = start(api, "live_rerun", source)
    sent = posts(page)
    page.goto(f"{server.url}/#/runs/{run_id}?task=later")
    expect(panel_state(page)).to_have_text("waiting", timeout=RUN_TIMEOUT)
    expect(run_badge(page)).to_have_text("running")

    # a task that has not run: the API would answer 409, so the button says why
    rerun = page.get_by_test_id("task-panel").get_by_role("button", name="Rerun from here")
    expect(rerun).to_be_disabled()
    expect(rerun).to_have_attribute(
        "title",
        f"task later of run {run_id} is waiting: it has not run yet, so there is nothing to rerun",
    )
    Shots(page, "task-actions")("rerun-disabled")
    assert api.post(f"/runs/{run_id}/rerun", json={"from": "later"}).status_code == 409

    # a task of the same running run that ended: offered, and it does what it says
    page.goto(f"{server.url}/#/runs/{run_id}?task=quick")
    expect(panel_state(page)).to_have_text("succeeded", timeout=RUN_TIMEOUT)
    expect(rerun).to_be_enabled()
    expect(rerun).not_to_have_attribute("title", re.compile("."))  # no reason shown
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    rerun.click()
    attempts = page.get_by_test_id("task-panel").get_by_test_id("attempts").locator("tbody tr")
    expect(attempts).to_have_count(2, timeout=RUN_TIMEOUT)
    assert asked == [
        f"Rerun task quick of run {run_id} and every task downstream of it? They run again "
        "(their earlier attempts and logs are kept). What of them runs is killed first; the "
        "run's other tasks go on."
    ]
    assert sent == [f"/runs/{run_id}/rerun"], sent
    expect(run_badge(page)).to_have_text("running")  # sleeper goes on
    assert api.post(f"/runs/{run_id}/stop").status_code == 200


def test_mark_and_rerun_from_here_ask_first_naming_the_task_and_the_run(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    source = (
        "name: asked\ntasks:\n"
        "  sleeper:\n    type: shell\n    command: sleep 60\n"
        "  after:\n    type: shell\n    depends_on: [sleeper]\n    command: echo after\n"
    )
    run_id = start(api, "asked", source)
    page.goto(f"{server.url}/#/runs/{run_id}?task=sleeper")
    expect(panel_state(page)).to_have_text("running", timeout=RUN_TIMEOUT)
    assert api.post(f"/runs/{run_id}/stop").status_code == 200
    expect(run_badge(page)).to_have_text("stopped")
    expect(panel_state(page)).to_have_text("stopped")

    asked: list[str] = []

    def refuse(dialog: Any) -> None:
        asked.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", refuse)
    sent = posts(page)
    panel = page.get_by_test_id("task-panel")
    for label in ("Mark succeeded", "Mark skipped", "Mark failed", "Rerun from here"):
        panel.get_by_role("button", name=label).click()
    downstream = (
        "The tasks downstream of it are decided again, and may start. "
        "The run is finished: it runs again if anything is left to run."
    )
    assert asked == [
        f"confirm: Mark task sleeper of run {run_id} succeeded? {downstream}",
        f"confirm: Mark task sleeper of run {run_id} skipped? {downstream}",
        f"confirm: Mark task sleeper of run {run_id} failed? It is not retried. {downstream}",
        f"confirm: Rerun task sleeper of run {run_id} and every task downstream of it? "
        "They run again (their earlier attempts and logs are kept).",
    ]
    # refused: nothing was sent, nothing changed
    expect(panel_state(page)).to_have_text("stopped")
    assert sent == []

    # accepted: the mark is made, what waited on the task runs, and the run succeeds
    page.remove_listener("dialog", refuse)
    page.once("dialog", lambda dialog: dialog.accept())
    panel.get_by_role("button", name="Mark succeeded").click()
    wait_graph_states(page, r"^Graph of 2 tasks: 2 succeeded$")
    expect(run_badge(page)).to_have_text("succeeded")
    assert sent == [f"/runs/{run_id}/tasks/sleeper/mark"], sent
