"""The long poll of a run, ``GET /runs/{id}?wait=S``: a real LocalRuntime behind the local
HTTP server, its store's commits waking the held requests (api/long_poll.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from stratoflow import cli
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.api import create_app, start_in_thread
from stratoflow.api.long_poll import MAX_HELD, RunWatch, run_ended
from stratoflow.cli import Client, HeldRun, _wait
from tests.e2e.test_api import apply, finished, trigger
from tests.e2e.test_incremental import gated

pytestmark = pytest.mark.e2e

BOUND = 60.0  # seconds any wait here may take before the test fails (a loaded machine)


@dataclass
class Served:
    http: httpx.Client
    url: str
    tmp: Path
    watch: RunWatch


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    runtime = LocalRuntime(tmp_path / "home", cron=False)
    app = create_app(runtime.scheduler, on_change=runtime.wake)
    watch = RunWatch(ended=run_ended(runtime.store))
    runtime.store.on_commit.append(watch.on_commit)
    server, url = start_in_thread(app, "127.0.0.1", 0, watch=watch)
    runtime.start()
    try:
        with httpx.Client(base_url=url, timeout=BOUND) as http:
            yield Served(http, url, tmp_path, watch)
    finally:
        server.shutdown()
        runtime.close()


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not check():
        assert time.monotonic() < deadline, f"not within {BOUND} s: {what}"
        time.sleep(0.05)


def quiet_gated_run(s: Served) -> tuple[str, str, int]:
    """A run of ``gated`` held at its gate, once nothing in it changes any more: its id, the
    ETag and revision of its view (the gate opens when ``s.tmp / "go"`` exists)."""
    apply(s.http, gated(s.tmp / "go", 3))
    run_id = trigger(s.http, "gated")
    view = s.http.get(f"/runs/{run_id}")

    def settled() -> bool:
        nonlocal view
        again = s.http.get(f"/runs/{run_id}", headers={"If-None-Match": view.headers["etag"]})
        if again.status_code == 304:
            states = {t: v["state"] for t, v in view.json()["tasks"].items()}
            early = [state for t, state in states.items() if t.startswith("early")]
            return states["gate"] == "running" and set(early) == {"succeeded"}
        view = again
        return False

    until(settled, "the run waits at its gate, unchanged")
    return run_id, view.headers["etag"], view.json()["revision"]


class Held(threading.Thread):
    """A request made in a thread: its response (or error) and when it came."""

    def __init__(self, url: str, path: str, **kwargs: object) -> None:
        super().__init__(daemon=True)
        self.url, self.path, self.kwargs = url, path, kwargs
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.answered_at = 0.0

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=BOUND) as http:
                self.response = http.get(self.path, **self.kwargs)  # type: ignore[arg-type]
        except BaseException as exc:  # reported by the test
            self.error = exc
        self.answered_at = time.monotonic()

    def result(self) -> httpx.Response:
        self.join(BOUND)
        assert not self.is_alive(), "the held request was never answered"
        assert self.error is None, self.error
        assert self.response is not None
        return self.response


@pytest.mark.parametrize("bad", ["0", "-1", "30.5", "x", "inf"])
def test_a_bad_wait_is_refused_naming_wait(served: Served, bad: str) -> None:
    run_id, _, _ = quiet_gated_run(served)
    reply = served.http.get(f"/runs/{run_id}", params={"wait": bad})
    assert reply.status_code == 422
    body = reply.json()
    assert body["error"] == "invalid_request"
    assert "wait" in body["message"]
    assert served.watch.held == 0
    (served.tmp / "go").touch()
    finished(served.http, run_id)


def test_a_held_request_is_answered_when_the_run_changes(served: Served) -> None:
    run_id, tag, revision = quiet_gated_run(served)
    held = Held(served.url, f"/runs/{run_id}", params={"wait": 30}, headers={"If-None-Match": tag})
    held.start()
    until(lambda: served.watch.held == 1, "the request is held")
    assert held.is_alive()  # nothing changed: no answer yet
    opened = time.monotonic()
    (served.tmp / "go").touch()  # the gate ends: the run changes
    reply = held.result()
    assert reply.status_code == 200
    assert reply.headers["etag"] != tag
    assert reply.json()["revision"] > revision
    assert held.answered_at - opened < 25  # after the change, well before the 30 s wait
    assert served.watch.held == 0
    finished(served.http, run_id)


def test_a_delta_with_nothing_new_is_held_too(served: Served) -> None:
    run_id, _, revision = quiet_gated_run(served)
    held = Held(served.url, f"/runs/{run_id}", params={"wait": 30, "since": revision})
    held.start()
    until(lambda: served.watch.held == 1, "the delta request is held")
    (served.tmp / "go").touch()
    delta = held.result().json()
    assert delta["full"] is False
    assert delta["revision"] > revision
    assert delta["tasks"]  # what changed: the gate at least
    finished(served.http, run_id)


def test_an_unchanged_run_answers_304_when_the_wait_elapses(served: Served) -> None:
    run_id, tag, _ = quiet_gated_run(served)
    reply = served.http.get(f"/runs/{run_id}", params={"wait": 0.3}, headers={"If-None-Match": tag})
    assert reply.status_code == 304
    assert served.watch.held == 0
    # a changed view is answered at once, wait or not
    whole = served.http.get(f"/runs/{run_id}", params={"wait": 30})
    assert whole.status_code == 200
    assert whole.headers["etag"] == tag
    (served.tmp / "go").touch()
    finished(served.http, run_id)


def test_at_most_8_requests_are_held_the_next_is_answered_at_once(served: Served) -> None:
    assert MAX_HELD == 8
    run_id, tag, _ = quiet_gated_run(served)
    asks = [
        Held(served.url, f"/runs/{run_id}", params={"wait": 30}, headers={"If-None-Match": tag})
        for _ in range(MAX_HELD)
    ]
    for ask in asks:
        ask.start()
    until(lambda: served.watch.held == MAX_HELD, "8 requests held")
    ninth = served.http.get(f"/runs/{run_id}", params={"wait": 30}, headers={"If-None-Match": tag})
    assert ninth.status_code == 304  # answered at once: nothing was held for it
    assert all(ask.is_alive() for ask in asks)  # the 8 still held meanwhile
    (served.tmp / "go").touch()
    assert all(ask.result().status_code == 200 for ask in asks)
    assert served.watch.held == 0
    finished(served.http, run_id)


def test_the_cli_wait_long_polls_with_its_etag(served: Served) -> None:
    run_id, _, revision = quiet_gated_run(served)
    sent: list[httpx.Request] = []
    client = Client(served.url)
    client._http.event_hooks["request"].append(sent.append)
    run = HeldRun(client, run_id)
    run.refresh()
    opener = threading.Timer(0.5, (served.tmp / "go").touch)
    opener.start()
    try:
        changed = run.refresh(wait=20)  # held until the gate opens
    finally:
        opener.join()
    assert run.changed
    assert changed["revision"] > revision
    asked = sent[-1]
    assert asked.url.params["wait"] == "20"
    assert asked.headers["if-none-match"]
    end = finished(served.http, run_id)
    assert run.refresh() == end  # the deltas put together are the full view


@pytest.mark.parametrize("query", [{"until": "ended"}, {"wait": "5", "until": "done"}])
def test_a_bad_until_is_refused_naming_until(served: Served, query: dict[str, str]) -> None:
    run_id, _, _ = quiet_gated_run(served)
    reply = served.http.get(f"/runs/{run_id}", params=query)
    assert reply.status_code == 422
    assert "until" in reply.json()["message"]
    assert served.watch.held == 0
    (served.tmp / "go").touch()
    finished(served.http, run_id)


def test_until_ended_is_answered_when_the_run_has_ended_not_at_its_first_change(
    served: Served,
) -> None:
    run_id, tag, revision = quiet_gated_run(served)
    params = {"wait": 30, "until": "ended", "since": revision}
    held = Held(served.url, f"/runs/{run_id}", params=params, headers={"If-None-Match": tag})
    held.start()
    until(lambda: served.watch.held == 1, "the request is held")
    (served.tmp / "go").touch()  # the gate ends: three more tasks run, then the run ends
    reply = held.result()
    assert reply.status_code == 200
    view = reply.json()
    assert view["run"]["state"] == "succeeded"  # a plain wait answers at the gate's end
    assert view["full"] is False
    assert {f"late{i}" for i in range(3)} <= set(view["tasks"])
    assert served.watch.held == 0


def test_trigger_wait_without_a_terminal_asks_for_the_end_only(served: Served) -> None:
    run_id, _, _ = quiet_gated_run(served)
    sent: list[httpx.Request] = []
    client = Client(served.url)
    client._http.event_hooks["request"].append(sent.append)
    opener = threading.Timer(0.5, (served.tmp / "go").touch)
    opener.start()
    try:
        end = _wait(client, run_id, live=False)
    finally:
        opener.join()
    assert end["run"]["state"] == "succeeded"
    assert end == finished(served.http, run_id)  # the deltas put together are the full view
    polls = sent[1:]  # after the first, whole view
    assert polls
    assert all(p.url.params["until"] == "ended" and p.url.params["wait"] == "20" for p in polls)
    assert len(polls) == 1  # held from the gate's wait to the run's end: one request


def test_a_trigger_answers_the_run_s_revision_to_go_on_from(served: Served) -> None:
    apply(served.http, gated(served.tmp / "go", 3))
    answer = served.http.post("/workflows/gated/runs", json={}).json()
    assert answer["full"] is True
    assert isinstance(answer["revision"], int)  # was None: a reader had to ask for it again
    run_id = answer["run"]["id"]
    (served.tmp / "go").touch()
    end = finished(served.http, run_id)
    since = served.http.get(f"/runs/{run_id}", params={"since": answer["revision"]}).json()
    assert since["full"] is False
    # the tasks changed after the answer's revision, put over it, are the run's whole view
    assert {**answer["tasks"], **since["tasks"]} == end["tasks"]


def test_trigger_wait_goes_on_from_the_trigger_s_answer_not_a_whole_view_again(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # at 2,000 tasks a whole view cost the server ~0.1 s at the run's start, and the CLI as
    # much to parse it: both taken from the run on the same cores (issue 10, item 3)
    apply(served.http, gated(served.tmp / "go", 3))
    sent: list[httpx.Request] = []
    made = cli.Client.__init__

    def hooked(self: Client, api: str) -> None:
        made(self, api)
        self._http.event_hooks["request"].append(sent.append)

    monkeypatch.setattr(cli.Client, "__init__", hooked)
    opener = threading.Timer(0.5, (served.tmp / "go").touch)
    opener.start()
    try:
        args = ["trigger", "gated", "--wait", "--output", "json", "--api", served.url]
        result = CliRunner().invoke(cli.main, args)
    finally:
        opener.join()
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    end = finished(served.http, shown["run"]["id"])
    assert shown["tasks"] == end["tasks"]  # the trigger's view and the deltas put together
    gets = [r for r in sent if r.method == "GET"]
    assert gets
    assert all("since" in r.url.params for r in gets), [str(r.url) for r in gets]


def gated_chain(marker: Path, length: int) -> str:
    """A gate that waits for ``marker``, then a chain of ``length`` tasks: each starts and
    ends in a commit of its own, after the one before it."""
    lines = ["name: chain", "tasks:", "  gate:", "    type: shell"]
    lines.append(
        f"    command: i=0; while [ ! -f '{marker}' ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done"
    )
    for i in range(length):
        lines += [
            f"  c{i}:",
            "    type: shell",
            f"    depends_on: [{'gate' if i == 0 else f'c{i - 1}'}]",
        ]
        lines.append("    command: 'true'")
    return "\n".join(lines) + "\n"


def test_until_ended_reads_the_run_s_state_when_it_was_written_not_at_each_commit(
    tmp_path: Path,
) -> None:
    # the real store's commits: a chain of tasks after a gate, each starting and ending in
    # commits that touch the run; the held request checks the run's state only when one of
    # them wrote it (the run's end), not at each (api/long_poll.py)
    runtime = LocalRuntime(tmp_path / "home", cron=False)
    checks: list[str] = []
    state_of = run_ended(runtime.store)

    def ended(run_id: str) -> bool:
        checks.append(run_id)
        return state_of(run_id)

    watch = RunWatch(ended=ended)
    runtime.store.on_commit.append(watch.on_commit)
    touching: list[int] = []
    server, url = start_in_thread(
        create_app(runtime.scheduler, on_change=runtime.wake), "127.0.0.1", 0, watch=watch
    )
    runtime.start()
    try:
        with httpx.Client(base_url=url, timeout=BOUND) as http:
            apply(http, gated_chain(tmp_path / "go", 6))
            run_id = trigger(http, "chain")
            until(
                lambda: http.get(f"/runs/{run_id}").json()["tasks"]["gate"]["state"] == "running",
                "the gate runs",
            )
            runtime.store.on_commit.append(
                lambda c: touching.append(1) if run_id in c.runs or c.tasks else None
            )
            held = Held(url, f"/runs/{run_id}", params={"wait": 30, "until": "ended"})
            held.start()
            until(lambda: watch.held == 1 and len(checks) == 2, "the request is held")
            (tmp_path / "go").touch()
            reply = held.result()
    finally:
        server.shutdown()
        runtime.close()
    assert reply.json()["run"]["state"] == "succeeded"
    assert len(touching) >= 6  # six tasks ended one after another (a turn starts the next)
    assert len(checks) == 3  # before the first answer, once held, and at the run's end
