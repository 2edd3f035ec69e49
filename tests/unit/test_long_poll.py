"""The long poll's pieces alone: which requests may be held, which answers say nothing new,
and RunWatch's tickets (the HTTP side is tested in tests/e2e/test_long_poll.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_api_app import ETL, _build

from stratoflow.adapters.local.sqlite_store import StoreChanges
from stratoflow.api.long_poll import RunWatch, resolve_held, unchanged, wanted


def event(path: str = "/runs/r1", method: str = "GET", **query: str) -> dict[str, Any]:
    return {"httpMethod": method, "path": path, "queryStringParameters": query or None}


def test_only_a_run_view_with_a_valid_wait_is_held() -> None:
    assert wanted(event(wait="20")) == ("r1", 20.0)
    assert wanted(event(wait="0.5", since="3")) == ("r1", 0.5)
    assert wanted(event()) is None
    for bad in ("0", "-1", "30.5", "x", "nan"):
        assert wanted(event(wait=bad)) is None, bad  # the route refuses it, at once
    assert wanted(event("/runs/r1/states", wait="5")) is None
    assert wanted(event(method="POST", wait="5")) is None


def test_a_304_or_an_empty_delta_at_the_same_revision_is_unchanged() -> None:
    assert unchanged(event(wait="5"), {"statusCode": 304})
    delta = {"full": False, "tasks": {}, "revision": 7, "run": {}}
    answer = {"statusCode": 200, "body": json.dumps(delta)}
    assert unchanged(event(wait="5", since="7"), answer)
    assert not unchanged(event(wait="5", since="6"), answer)
    assert not unchanged(event(wait="5"), answer)  # no since: a view, not a delta
    moved = {**delta, "tasks": {"a": {"state": "running"}}}
    assert not unchanged(event(since="7"), {"statusCode": 200, "body": json.dumps(moved)})
    assert not unchanged(event(since="7"), {"statusCode": 404, "body": "{}"})


def test_a_commit_wakes_the_tickets_of_the_runs_it_wrote_only() -> None:
    watch = RunWatch(max_held=2)
    one, two = watch.ticket("r1"), watch.ticket("r2")
    assert one is not None
    assert two is not None
    assert watch.ticket("r3") is None  # two held already
    watch.on_commit(StoreChanges(tasks={("r1", "t")}))
    assert one.changed.is_set()
    assert not two.changed.is_set()
    watch.on_commit(StoreChanges(attempts={("r2", "t", 1)}))
    assert two.changed.is_set()
    watch.release(one)
    watch.release(one)  # twice: counted once
    assert watch.held == 1
    assert watch.ticket("r3") is not None


def test_a_held_request_is_asked_again_when_woken_and_returns_what_changed() -> None:
    watch = RunWatch()
    answers = [{"statusCode": 304}, {"statusCode": 200, "body": "{}"}]
    asked: list[int] = []

    def resolve(_: dict[str, Any]) -> dict[str, Any]:
        asked.append(watch.held)
        if len(asked) == 1:  # a commit while the first answer is made: not missed
            watch.on_commit(StoreChanges(runs={"r1"}))
        return answers[len(asked) - 1]

    assert resolve_held(watch, event(wait="30"), resolve)["statusCode"] == 200
    assert asked == [1, 1]
    assert watch.held == 0


def test_closing_the_watch_answers_held_requests() -> None:
    watch = RunWatch()
    got: list[dict[str, Any]] = []
    thread = threading.Thread(
        target=lambda: got.append(
            resolve_held(watch, event(wait="30"), lambda _: {"statusCode": 304})
        )
    )
    thread.start()
    while watch.held == 0:
        thread.join(0.01)
    watch.close()
    thread.join(10)
    assert not thread.is_alive()
    assert got == [{"statusCode": 304}]
    assert watch.ticket("r1") is None  # closed: nothing is held any more


@pytest.mark.parametrize("wait", ["30", "0.01"])
def test_an_unchanged_run_gets_its_304_when_the_wait_ends(wait: str) -> None:
    watch = RunWatch()
    if wait == "30":
        watch.close()  # the wait is cut short by the close, not slept out
    assert resolve_held(watch, event(wait=wait), lambda _: {"statusCode": 304}) == {
        "statusCode": 304
    }


def test_the_resolver_alone_answers_a_wait_at_once_as_on_aws(tmp_path: Path) -> None:
    # On AWS the resolver is all there is (API Gateway and Lambda hold nothing): `wait` is
    # validated and the answer is the usual one, a 304 for an unchanged run
    api = _build(tmp_path)
    try:
        api.apply(ETL)
        run_id = api.trigger("etl")
        tag = api.call("GET", f"/runs/{run_id}").headers["ETag"]
        again = api.call(
            "GET", f"/runs/{run_id}", query={"wait": "30"}, headers={"If-None-Match": tag}
        )
        assert (again.status, again.text) == (304, "")
        refused = api.call("GET", f"/runs/{run_id}", query={"wait": "31"})
        assert refused.status == 422
        assert "wait" in refused.body["message"]
    finally:
        api.scheduler.store.close()  # type: ignore[attr-defined]


def test_until_ended_holds_through_changes_and_renders_the_view_only_at_the_end() -> None:
    # ``until=ended``: a commit that leaves the run running wakes the request to read the
    # run's state (``ended``), not to render the view again; the view is rendered twice (the
    # first answer, checked for access, and the one at the end)
    state = {"ended": False}
    watch = RunWatch(ended=lambda run_id: run_id == "r1" and state["ended"])
    rendered: list[bool] = []

    def resolve(_: dict[str, Any]) -> dict[str, Any]:
        rendered.append(state["ended"])
        return {"statusCode": 200, "body": json.dumps({"ended": state["ended"]})}

    got: list[dict[str, Any]] = []
    thread = threading.Thread(
        target=lambda: got.append(resolve_held(watch, event(wait="30", until="ended"), resolve))
    )
    thread.start()
    while watch.held == 0 or not rendered:
        thread.join(0.01)
    for _ in range(5):  # the run moves on, not ended: still held
        watch.on_commit(StoreChanges(tasks={("r1", "t")}))
    thread.join(0.2)
    assert thread.is_alive()
    state["ended"] = True
    watch.on_commit(StoreChanges(runs={"r1"}, run_states={"r1"}))
    thread.join(10)
    assert not thread.is_alive()
    assert got == [{"statusCode": 200, "body": json.dumps({"ended": True})}]
    assert rendered == [False, True]
    assert watch.held == 0


def test_until_ended_answers_at_once_what_may_not_be_read_or_has_ended() -> None:
    # a refused request is not held (who may not read the run learns nothing from when it
    # ends); a run that has ended gets the one answer, not a second rendering
    watch = RunWatch(ended=lambda _: False)
    refused = {"statusCode": 404, "body": "{}"}
    assert resolve_held(watch, event(wait="30", until="ended"), lambda _: refused) is refused
    done = RunWatch(ended=lambda _: True)
    calls: list[int] = []

    def resolve(_: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        return {"statusCode": 200, "body": "{}"}

    assert resolve_held(done, event(wait="30", until="ended"), resolve)["statusCode"] == 200
    assert calls == [1]
    assert watch.held == done.held == 0


def test_until_ended_asks_again_when_the_run_ended_while_its_first_answer_was_made() -> None:
    state = {"ended": False}
    watch = RunWatch(ended=lambda _: state["ended"])
    rendered: list[bool] = []

    def resolve(_: dict[str, Any]) -> dict[str, Any]:
        rendered.append(state["ended"])
        if len(rendered) == 1:  # the run ends just after the first answer read it
            state["ended"] = True
            watch.on_commit(StoreChanges(runs={"r1"}, run_states={"r1"}))
        return {"statusCode": 200, "body": json.dumps(rendered[-1])}

    assert resolve_held(watch, event(wait="30", until="ended"), resolve)["body"] == "true"
    assert rendered == [False, True]


def test_until_ended_is_woken_by_a_write_of_the_runs_state_alone() -> None:
    # a run's tasks, attempts and counters commit hundreds of times; a request held until the
    # run's end reads the run's state again only when a commit wrote that state
    asked: list[str] = []
    state = {"ended": False}

    def ended(run_id: str) -> bool:
        asked.append(run_id)
        return state["ended"]

    watch = RunWatch(ended=ended)
    got: list[dict[str, Any]] = []
    thread = threading.Thread(
        target=lambda: got.append(
            resolve_held(
                watch, event(wait="30", until="ended"), lambda _: {"statusCode": 200, "body": "{}"}
            )
        )
    )
    thread.start()
    while watch.held == 0 or len(asked) < 2:
        thread.join(0.01)
    for i in range(20):  # a task moves, an attempt ends, the counters move
        watch.on_commit(
            StoreChanges(runs={"r1"}, tasks={("r1", f"t{i}")}, attempts={("r1", f"t{i}", 1)})
        )
    watch.on_commit(StoreChanges(runs={"r2"}, run_states={"r2"}))  # another run's state
    thread.join(0.2)
    assert asked == ["r1", "r1"]  # before the first answer, and after it: nothing since
    state["ended"] = True
    watch.on_commit(StoreChanges(runs={"r1"}, run_states={"r1"}))
    thread.join(10)
    assert not thread.is_alive()
    assert asked == ["r1", "r1", "r1"]
    assert got == [{"statusCode": 200, "body": "{}"}]


def test_until_ended_renders_again_at_the_wait_s_end_when_the_run_moved_meanwhile() -> None:
    # not woken by a task's commit, but not answered with the view from before it either
    rendered: list[int] = []

    def resolve(_: dict[str, Any]) -> dict[str, Any]:
        rendered.append(len(rendered))
        if len(rendered) == 1:  # a task of the run moves while the first answer is made
            watch.on_commit(StoreChanges(runs={"r1"}, tasks={("r1", "t")}))
        return {"statusCode": 200, "body": str(rendered[-1])}

    watch = RunWatch(ended=lambda _: False)
    assert resolve_held(watch, event(wait="0.05", until="ended"), resolve)["body"] == "1"
    assert rendered == [0, 1]
    quiet: list[int] = []
    assert resolve_held(
        watch, event(wait="0.05", until="ended"), lambda _: quiet.append(1) or {"statusCode": 304}
    ) == {"statusCode": 304}
    assert quiet == [1]  # nothing moved: the first answer stands


def test_the_store_names_a_run_in_run_states_only_when_it_writes_the_run_s_state(
    tmp_path: Path,
) -> None:
    api = _build(tmp_path)
    store = api.scheduler.store
    seen: list[StoreChanges] = []
    store.on_commit.append(seen.append)  # type: ignore[attr-defined]
    try:
        api.apply(ETL)
        run_id = api.trigger("etl")
        created = [c for c in seen if run_id in c.runs]
        assert created
        assert run_id in created[0].run_states  # created: its state written
        seen.clear()
        store.add_counters(run_id, running=0)  # type: ignore[attr-defined]
        assert [c.runs for c in seen] == [{run_id}]
        assert [c.run_states for c in seen] == [set()]  # counters alone: not its state
    finally:
        store.close()  # type: ignore[attr-defined]


def test_until_ended_renders_again_a_run_that_ended_before_its_ticket_heard_of_it() -> None:
    # the store runs its other commit hooks (the read model's feed) before the watch's: the
    # run's end can be read before the ticket is woken by it, and the first answer, made
    # while it ran, must not be the one returned
    reads = iter([False, True])  # running before the first answer; ended after it
    watch = RunWatch(ended=lambda _: next(reads))
    rendered: list[str] = []

    def resolve(_: dict[str, Any]) -> dict[str, Any]:
        rendered.append("running" if not rendered else "ended")
        return {"statusCode": 200, "body": rendered[-1]}

    assert resolve_held(watch, event(wait="30", until="ended"), resolve)["body"] == "ended"
    assert rendered == ["running", "ended"]
