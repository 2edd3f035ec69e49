"""Browser tests: Debian's Chromium (``/usr/bin/chromium``) driven headless by Playwright,
against ``stratoflow server`` started as a real child process on 127.0.0.1.

No browser is ever downloaded: Playwright launches the system Chromium by path. When Chromium,
Playwright or the built UI is missing, the tests skip on a developer machine and FAIL in CI
(``CI=true``), where ``make test`` installs all three first.

Screenshots go to ``artifacts/browser/`` (git-ignored): CI keeps them as test artifacts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratoflow.api.app import STATIC_DIR
from tests.e2e.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = os.environ.get("STRATOFLOW_CHROMIUM", "/usr/bin/chromium")
# Headless as root on a closed network: no sandbox (root), no GPU, and nothing that phones
# home (background networking, component updates, sync, QUIC) - those connections are refused
# here and only slow the browser down.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _missing(what: str) -> None:
    message = f"{what}; `make install` builds the UI and `make chromium` installs Chromium"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run in CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        _missing(f"no Chromium at {CHROMIUM}")
    if not (STATIC_DIR / "index.html").is_file():
        _missing(f"the web UI is not built ({STATIC_DIR / 'index.html'} is missing)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("browser") / "home"
    proc = ServerProcess(home)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as client:
        yield client


class Shots:
    """Saves named screenshots of a page under artifacts/browser/."""

    def __init__(self, page: Any, prefix: str) -> None:
        self.page = page
        self.prefix = prefix

    def __call__(self, name: str, *, full_page: bool = False) -> Path:
        path = ARTIFACTS / f"{self.prefix}-{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


def _open(
    browser: Any,
    request: pytest.FixtureRequest,
    viewport: dict[str, int],
    token: str | None,
    **options: Any,
) -> Iterator[Any]:
    """A page in a context of its own; ``options`` go to ``new_context`` (``timezone_id``)."""
    context = browser.new_context(viewport=viewport, **options)
    if token is not None:  # signed in, as the UI's sign-in form leaves it
        context.add_init_script(f"localStorage.setItem('stratoflow.token', {json.dumps(token)})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(20_000)
    # the same bound for expect(...) as for actions: its default of 5 s was too short for a
    # graph's layout at load ~15 (a CI run on two workers beside other work)
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[Any]:
    yield from _open(browser, request, DESKTOP, server.token)


@pytest.fixture
def signed_out_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _open(browser, request, DESKTOP, None)


@pytest.fixture
def phone(browser: Any, request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[Any]:
    yield from _open(browser, request, PHONE, server.token)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def fill_settings_form(
    page: Any, noun: str, name: str, type_: str, settings: dict[str, str]
) -> Any:
    """Add a ``noun`` ("channel", "connection") with the page's settings form
    (ui/src/SettingsForm.tsx): name, type and ``settings``, then save. The form, for what it
    says next."""
    page.get_by_role("button", name=f"Add a {noun}").click()
    form = page.get_by_role("form", name=f"Add a {noun}")
    form.get_by_label(f"{noun.capitalize()} name").fill(name)
    form.get_by_label(f"{noun.capitalize()} type").select_option(type_)
    for key, value in settings.items():
        form.get_by_label(key, exact=True).fill(value)
    form.get_by_role("button", name=f"Save {noun}").click()
    return form
