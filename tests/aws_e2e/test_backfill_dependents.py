"""Backfill's dependent mode on the AWS runtime, in moto: the api function creates a backfill
of A with its dependents B and C (on A) and D (on B and C); the real state machine runs the
attempts, the advance function moves every lane on as runs end and wakes each dependency
task with its upstream run's end. One run of each workflow per date — D, the diamond's
bottom, never twice — and D's work starts only after B's and C's run of that date ended."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aws_e2e.harness import Stack, aws_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]
TERMINAL = {"succeeded", "failed", "cancelled"}


def wf(name: str, *upstreams: str) -> str:
    text = f"name: {name}\nschedule: {{cron: '0 2 * * *', timezone: UTC}}\ntasks:\n"
    text += "  work: {type: shell, command: 'echo {{ ds }}'}\n"
    if upstreams:
        items = ", ".join(f"{{workflow: {u}, date: today}}" for u in upstreams)
        text += f"  wait: {{type: dependency, all: [{items}], check_interval: 1h}}\n"
        text = text.replace("command: 'echo", "depends_on: [wait], command: 'echo")
    return text


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        for source in (wf("a"), wf("b", "a"), wf("c", "a"), wf("d", "b", "c")):
            built.apply_with_runner(source)
        yield built


def test_a_diamond_backfill_makes_one_run_per_workflow_and_date(stack: Stack) -> None:
    status, made = stack.api(
        "POST", "/workflows/a/backfills",
        {"start": "2026-01-01", "end": "2026-01-02", "parallel": 2, "dependents": True},
    )  # fmt: skip
    assert status == 201, made
    assert [c["workflow"] for c in made["dependents"]] == ["b", "c", "d"]
    stack.deliver_kicks()

    def shown() -> dict[str, object]:
        status, body = stack.api("GET", f"/backfills/{made['id']}")
        assert status == 200, body
        return body

    def all_ended() -> bool:
        body = shown()
        children = body["dependents"]
        assert isinstance(children, list)
        return body["state"] in TERMINAL and all(c["state"] in TERMINAL for c in children)

    stack.pump(all_ended)
    body = shown()
    assert body["state"] == "succeeded"
    children = body["dependents"]
    assert isinstance(children, list)
    for child in children:
        assert child["state"] == "succeeded", child
        assert [d["state"] for d in child["dates"]] == ["succeeded", "succeeded"]
    for name in "abcd":
        status, page = stack.api("GET", "/runs", query={"workflow": name, "limit": "100"})
        assert status == 200, page
        assert len(page["runs"]) == 2, (name, page["runs"])  # one per date, never two
    # every attempt started the real state machine once; d's work ran after its dependency
    # task saw b's and c's run of its date succeed (work depends on wait)
    assert set(stack.starts.values()) == {1}
    for day in ("20260101", "20260102"):
        d_run = f"default.d-scheduled-{day}T020000Z"
        wait = stack.observer.get_task(d_run, "wait")
        assert wait.state.value == "succeeded"
        assert wait.outputs["upstream"] == "b (today) succeeded; c (today) succeeded"
        assert stack.observer.get_task(d_run, "work").state.value == "succeeded"
