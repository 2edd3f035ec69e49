"""Alerts end to end on the local runtime: what fires, the outbox (at least once, never
twice for one key, retried with backoff), PagerDuty incidents resolved by the next success,
SLA deadlines as durable timers, and a crash between the event and the send."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from stratoflow.adapters.local.alerts import AlertStore, Backoff
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.alerts import validate_channel
from stratoflow.engine import Run, RunState, TaskState
from stratoflow.errors import InvalidInput
from tests.alerts.conftest import Recorder, secrets_of

FLAKY = """
name: nightly
sla: 2h
params: {ok: "no"}
alerts:
  - on: [failure, recovered, sla_miss]
    group: oncall
  - on: [retry]
    group: chat
tasks:
  load:
    type: shell
    command: "test '{{ params.ok }}' = yes"
    retries: %(retries)s
    retry_delay: 0s
    sla: 1h
"""
MARKED = """
name: al2
alerts:
  - on: [failure, success, recovered]
    group: chat
  - on: [failure]
    group: pager
tasks:
  f: {type: shell, command: "exit 1"}
"""


def runtime_with_alerts(home: Path, recorder: Recorder) -> LocalRuntime:
    rt = LocalRuntime(
        home, resolve_secret=secrets_of({"pd": "PDKEY", "slack": f"{recorder.url}/slack"})
    )
    now = rt.clock.now()
    store = rt.alerts.store
    store.put_channel(validate_channel("default", "pd", "pagerduty",
                      {"routing_key": "{{ secrets.pd }}", "base_url": recorder.url}), now)  # fmt: skip
    store.put_channel(
        validate_channel("default", "slack", "slack", {"url": "{{ secrets.slack }}"}), now
    )
    store.set_group("default", "oncall", ["pd", "slack"], now)
    store.set_group("default", "chat", ["slack"], now)
    return rt


@pytest.fixture
def rt(tmp_path: Path, recorder: Recorder) -> Iterator[LocalRuntime]:
    runtime = runtime_with_alerts(tmp_path / "home", recorder)
    try:
        yield runtime
    finally:
        runtime.close()


def run(rt: LocalRuntime, ok: bool, retries: int = 0, name: str = "nightly") -> Run:
    rt.scheduler.apply(textwrap.dedent(FLAKY % {"retries": retries}).replace("nightly", name))
    started, _ = rt.scheduler.trigger("default", name, params={"ok": "yes" if ok else "no"})
    rt.run_until(lambda: rt.store.get_run(started.id).state.terminal)  # then sends what is due
    return rt.store.get_run(started.id)


def test_a_failing_run_alerts_each_channel_once_and_the_next_success_resolves_it(
    rt: LocalRuntime, recorder: Recorder
) -> None:
    failed = run(rt, ok=False)
    assert failed.state.value == "failed"
    (trigger,) = recorder.on("/v2/enqueue")
    (slack,) = recorder.on("/slack")
    assert trigger.body["event_action"] == "trigger"
    assert trigger.body["dedup_key"] == f"stratoflow/default/nightly/{failed.id}"
    assert trigger.body["payload"]["summary"] == "[FAILURE] default/nightly failed"
    assert slack.body["text"] == "[FAILURE] default/nightly failed"
    # the same events again (a redelivery) add nothing
    for kind in ("run.failed", "run.started"):
        rt.alerts.emit(kind, {"run_id": failed.id})
    assert rt.alerts.deliver_due() == 0

    recovered = run(rt, ok=True)
    assert recovered.state.value == "succeeded"
    pd = recorder.on("/v2/enqueue")
    assert [r.body["event_action"] for r in pd] == ["trigger", "trigger", "resolve"]
    # the recovered notice is a trigger-free event for PagerDuty ... and its resolve closes
    # the failed run's incident with the very dedup_key that opened it
    assert pd[1].body["payload"]["summary"] == "[RECOVERED] default/nightly recovered"
    assert pd[2].body == {"routing_key": "PDKEY", "event_action": "resolve",
                          "dedup_key": trigger.body["dedup_key"]}  # fmt: skip
    assert [r.body["text"] for r in recorder.on("/slack")][1:] == [
        "[RECOVERED] default/nightly recovered"
    ]
    statuses = {
        (d.event, d.channel, d.status) for d in rt.alerts.store.list_deliveries("default")[0]
    }
    assert statuses == {
        ("failure", "pd", "sent"), ("failure", "slack", "sent"), ("recovered", "pd", "sent"),
        ("recovered", "slack", "sent"), ("success", "pd", "sent"),
    }  # fmt: skip
    # a further success has nothing left to resolve
    run(rt, ok=True)
    assert len(recorder.on("/v2/enqueue")) == 3


def test_retries_alert_the_task_group_once_per_attempt(
    rt: LocalRuntime, recorder: Recorder
) -> None:
    failed = run(rt, ok=False, retries=2)
    retries = [r.body["text"] for r in recorder.on("/slack") if "RETRY" in r.body["text"]]
    assert retries == [
        "[RETRY] default/nightly task load (attempt 1) is retrying",
        "[RETRY] default/nightly task load (attempt 2) is retrying",
    ]
    assert failed.state.value == "failed"


def test_a_crash_between_the_event_and_the_send_delivers_exactly_once(
    tmp_path: Path, recorder: Recorder
) -> None:
    home = tmp_path / "home"
    first = runtime_with_alerts(home, recorder)
    first.scheduler.apply(textwrap.dedent(FLAKY % {"retries": 0}))
    started, _ = first.scheduler.trigger("default", "nightly", params={"ok": "no"})
    # drive the scheduler only: the events are recorded in the outbox, nothing is sent
    while not first.store.get_run(started.id).state.terminal:
        first.run_once(timeout=0.2)
    pending = first.alerts.store.list_deliveries("default", status="pending")[0]
    assert {(d.event, d.channel) for d in pending} == {("failure", "pd"), ("failure", "slack")}
    assert recorder.requests == []
    first.close()  # the process "dies" here, before any send

    second = runtime_with_alerts(home, recorder)
    try:
        second.alerts.emit("run.failed", {"run_id": started.id})  # and the event comes again
        assert second.alerts.deliver_due() == 2
        assert second.alerts.deliver_due() == 0
    finally:
        second.close()
    assert (len(recorder.on("/v2/enqueue")), len(recorder.on("/slack"))) == (1, 1)


def test_a_failed_send_is_retried_with_backoff_and_pages_once(
    tmp_path: Path, recorder: Recorder
) -> None:
    rt = runtime_with_alerts(tmp_path / "home", recorder)
    try:
        rt.alerts.backoff = Backoff(first=timedelta(seconds=30), max_attempts=3)
        recorder.answer((503, {"status": "busy"}), (202, {"status": "success"}))
        failed = run(rt, ok=False)
        store = rt.alerts.store
        (pd,) = [d for d in store.list_deliveries("default")[0] if d.channel == "pd"]
        assert (pd.status, pd.attempts) == ("retrying", 1)
        assert "HTTP 503" in (pd.last_error or "")
        assert pd.next_at is not None
        assert timedelta(seconds=29) < pd.next_at - pd.created_at < timedelta(seconds=40)
        assert rt.alerts.deliver_due() == 0  # not due yet
        assert rt.alerts.deliver_due(pd.next_at) == 1
        pd = store.get(pd.key, "default", "pd")
        assert (pd.status, pd.attempts, pd.last_error) == ("sent", 2, None)
        sent = recorder.on("/v2/enqueue")
        assert len(sent) == 2
        assert {r.body["dedup_key"] for r in sent} == {
            f"stratoflow/default/nightly/{failed.id}"
        }  # the retry names the same incident: PagerDuty keeps one
    finally:
        rt.close()


def test_a_send_that_keeps_failing_ends_failed(tmp_path: Path, recorder: Recorder) -> None:
    rt = runtime_with_alerts(tmp_path / "home", recorder)
    try:
        rt.alerts.backoff = Backoff(first=timedelta(seconds=1), max_attempts=2)
        recorder.answer((500, {}))
        run(rt, ok=False)
        later = rt.clock.now() + timedelta(minutes=5)
        rt.alerts.deliver_due(later)
        failed = rt.alerts.store.list_deliveries("default", status="failed")[0]
        assert {(d.channel, d.attempts) for d in failed} == {("pd", 2), ("slack", 2)}
        assert rt.alerts.deliver_due(later + timedelta(hours=1)) == 0
    finally:
        rt.close()


def test_a_group_deleted_after_apply_is_recorded_as_failed(
    rt: LocalRuntime, recorder: Recorder
) -> None:
    # GIVEN a workflow applied while its groups existed, then one of them deleted
    rt.scheduler.apply(textwrap.dedent(FLAKY % {"retries": 0}))
    rt.alerts.store.delete_group("default", "oncall")
    # WHEN its run fails
    started, _ = rt.scheduler.trigger("default", "nightly")
    rt.run_until(lambda: rt.store.get_run(started.id).state.terminal)
    # THEN the run is not held up, and the alert is a failed delivery naming the group
    assert rt.store.get_run(started.id).state.value == "failed"
    (row,) = rt.alerts.store.list_deliveries("default", status="failed")[0]
    assert row.channel == "-"
    assert row.last_error == "alert group 'oncall' does not exist in project 'default'"
    assert recorder.requests == []


def test_apply_refuses_an_unknown_alert_group_as_an_unknown_pool(rt: LocalRuntime) -> None:
    # GIVEN a workflow whose alerts (its own and a task's) name groups the project lacks
    source = textwrap.dedent(FLAKY % {"retries": 0}).replace("group: chat", "group: nobody")
    source += "    alerts: [{on: [retry], group: oncall}, {on: [timeout], group: ghosts}]\n"
    # WHEN it is applied, THEN it is refused naming each field and group, and nothing is stored
    with pytest.raises(InvalidInput) as refused:
        rt.scheduler.apply(source)
    assert [(p.path, p.message) for p in refused.value.problems] == [
        ("alerts.1.group", "unknown alert group 'nobody' in project 'default' (create it first: "
         "stratoflow alerts groups set nobody --channels NAME[,NAME...] [--project default])"),
        ("tasks.load.alerts.1.group", "unknown alert group 'ghosts' in project 'default' "
         "(create it first: stratoflow alerts groups set ghosts --channels NAME[,NAME...] "
         "[--project default])"),
    ]  # fmt: skip
    assert rt.store.list_workflows() == []
    # and once the groups exist it applies
    now = rt.clock.now()
    for group in ("nobody", "ghosts"):
        rt.alerts.store.set_group("default", group, ["slack"], now)
    version, created = rt.scheduler.apply(source)
    assert (version.version, created) == (1, True)


SLOW = """
name: slow
sla: 1h
alerts: [{on: [sla_miss, timeout], group: chat}]
tasks:
  wait: {type: shell, command: sleep 30, sla: 10m}
  quick: {type: shell, command: "true", sla: 10m}
"""


def test_sla_deadlines_are_durable_timers_that_fire_once(
    rt: LocalRuntime, recorder: Recorder
) -> None:
    rt.scheduler.apply(textwrap.dedent(SLOW))
    started, _ = rt.scheduler.trigger("default", "slow")
    while rt.store.get_task(started.id, "quick").state.value != "succeeded":
        rt.run_once(timeout=0.2)
    store = rt.alerts.store
    assert store.next_timer() is not None
    t0 = rt.store.get_run(started.id).started_at
    assert t0 is not None
    # before the task deadlines nothing fires; after them only the unfinished task missed
    assert rt.alerts.fire_timers(t0 + timedelta(minutes=9)) == 0
    assert rt.alerts.fire_timers(t0 + timedelta(minutes=11)) == 1
    assert rt.alerts.fire_timers(t0 + timedelta(minutes=12)) == 0  # each timer fires once
    assert rt.alerts.fire_timers(t0 + timedelta(hours=2)) == 1  # the run's own SLA
    rt.alerts.deliver_due(t0 + timedelta(hours=2))
    texts = [r.body["text"] for r in recorder.on("/slack")]
    assert texts == ["[SLA_MISS] default/slow task wait missed its SLA",
                     "[SLA_MISS] default/slow missed its SLA"]  # fmt: skip
    assert store.next_timer() is None
    rt.scheduler.stop(started.id)
    rt.run_until(lambda: rt.store.get_run(started.id).state.terminal)


WARN = """
name: warned
alerts: [{on: [timeout, failure], group: chat}]
tasks:
  long: {type: shell, command: sleep 2, timeout: 1s, on_timeout: %s}
"""


TIMED_OUT = "[TIMEOUT] default/warned task long (attempt 1) timed out"


@pytest.mark.parametrize(
    ("mode", "state", "alerts"),
    [
        ("warn", "succeeded", [TIMED_OUT]),  # it kept running, and warned once
        ("warn_fail", "failed", [TIMED_OUT, "[FAILURE] default/warned failed"]),
        ("fail", "failed", ["[FAILURE] default/warned failed"]),
    ],
)
def test_on_timeout_warns_as_told(
    rt: LocalRuntime, recorder: Recorder, mode: str, state: str, alerts: list[str]
) -> None:
    rt.scheduler.apply(textwrap.dedent(WARN % mode))
    started, _ = rt.scheduler.trigger("default", "warned")
    rt.run_until(lambda: rt.store.get_run(started.id).state.terminal)
    assert rt.store.get_task(started.id, "long").state.value == state
    assert [r.body["text"] for r in recorder.on("/slack")] == alerts


def test_the_store_refuses_unknown_channels_and_deleting_a_used_channel(
    rt: LocalRuntime,
) -> None:
    from stratoflow.errors import Conflict, InvalidInput

    store = rt.alerts.store
    with pytest.raises(InvalidInput, match="no channel 'nope'"):
        store.set_group("default", "g", ["slack", "nope"], rt.clock.now())
    with pytest.raises(Conflict, match="chat, oncall"):
        store.delete_channel("default", "slack")
    assert "g" not in store.list_groups("default")


def test_a_test_alert_reaches_every_channel_of_the_group(
    tmp_path: Path, recorder: Recorder
) -> None:
    rt = runtime_with_alerts(tmp_path / "home", recorder)
    rt.alerts.start()
    try:
        rows = rt.alerts.test("default", "oncall")
        rt.alerts.wait_settled(rows, "default", 10)
        assert {rt.alerts.store.get(k, "default", c).status for k, c in rows} == {"sent"}
    finally:
        rt.close()
    assert [r.body["payload"]["summary"] for r in recorder.on("/v2/enqueue")] == [
        "Stratoflow test alert for default/(test)"
    ]
    assert len(recorder.on("/slack")) == 1


def test_a_store_on_an_existing_home_adds_its_tables_once(tmp_path: Path) -> None:
    path = tmp_path / "stratoflow.db"
    AlertStore(path).close()
    again = AlertStore(path)  # CREATE ... IF NOT EXISTS: opening twice changes nothing
    assert again.list_channels("default") == []
    again.close()


def test_a_crash_between_the_state_and_the_outbox_is_caught_up_on_start(
    tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    first = runtime_with_alerts(home, recorder)

    def died(kind: str, detail: object) -> None:
        raise RuntimeError("the process died before the outbox write")

    monkeypatch.setattr(first.alerts, "_plan", died)
    failed = run(first, ok=False)
    assert first.alerts.store.list_deliveries("default")[0] == []
    first.close()
    monkeypatch.undo()

    second = runtime_with_alerts(home, recorder)
    try:
        assert second.alerts.catch_up() == 1
        second.alerts.catch_up()  # again: nothing new
        assert second.alerts.deliver_due() == 2
    finally:
        second.close()
    (trigger,) = recorder.on("/v2/enqueue")
    assert trigger.body["dedup_key"] == f"stratoflow/default/nightly/{failed.id}"
    assert len(recorder.on("/slack")) == 1


def test_a_success_planned_again_does_not_close_a_newer_failures_incident(
    rt: LocalRuntime, recorder: Recorder
) -> None:
    run(rt, ok=False)
    ok = run(rt, ok=True)
    newer = run(rt, ok=False)
    assert [r.body["event_action"] for r in recorder.on("/v2/enqueue")] == [
        "trigger", "trigger", "resolve", "trigger",
    ]  # fmt: skip
    rt.alerts.emit("run.succeeded", {"run_id": ok.id})  # e.g. the catch-up after a restart
    rt.alerts.deliver_due()
    assert len(recorder.on("/v2/enqueue")) == 4
    assert recorder.on("/v2/enqueue")[3].body["dedup_key"].endswith(newer.id)


def test_the_alerting_example_pages_once_and_resolves(tmp_path: Path, recorder: Recorder) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "alerting.yaml"
    rt = runtime_with_alerts(tmp_path / "home", recorder)
    store, now = rt.alerts.store, rt.clock.now()
    store.set_group("default", "data-oncall", ["pd", "slack"], now)
    store.set_group("default", "data-team", ["slack"], now)
    try:
        rt.scheduler.apply(example.read_text())
        for fail in ("yes", "no"):
            started, _ = rt.scheduler.trigger("default", "nightly_load", params={"fail": fail})
            rt.run_until(lambda: rt.store.get_run(started.id).state.terminal)  # noqa: B023
    finally:
        rt.close()
    assert [r.body["event_action"] for r in recorder.on("/v2/enqueue")] == [
        "trigger", "trigger", "resolve",
    ]  # fmt: skip
    assert [r.body["text"] for r in recorder.on("/slack")] == [
        "[FAILURE] default/nightly_load failed",
        "[RECOVERED] default/nightly_load recovered",
    ]


def test_two_senders_at_once_send_each_row_once(tmp_path: Path, recorder: Recorder) -> None:
    import threading
    import time

    rt = runtime_with_alerts(tmp_path / "home", recorder)
    real_send = rt.alerts.sender.send

    def slow_send(*args: object) -> None:
        time.sleep(0.2)  # long enough for the other thread to read the same due rows
        real_send(*args)  # type: ignore[arg-type]

    try:
        rt.alerts.sender.send = slow_send  # type: ignore[method-assign]
        rt.alerts.test("default", "oncall")
        threads = [threading.Thread(target=rt.alerts.deliver_due) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        rt.close()
    assert (len(recorder.on("/v2/enqueue")), len(recorder.on("/slack"))) == (1, 1)


def test_a_channel_resolves_a_secret_set_for_its_project(
    tmp_path: Path, recorder: Recorder
) -> None:
    """With no resolver given, a channel's reference resolves from the project's secrets (what
    `stratoflow secrets set` writes), the same place a task's references resolve from."""
    rt = LocalRuntime(tmp_path / "home")
    try:
        rt.secrets.put("default", "hook", f"{recorder.url}/from-the-secrets-file")
        now = rt.clock.now()
        rt.alerts.store.put_channel(
            validate_channel("default", "hook", "webhook", {"url": "{{ secrets.hook }}"}), now
        )
        rt.alerts.store.set_group("default", "oncall", ["hook"], now)
        rt.alerts.store.set_group("default", "chat", ["hook"], now)  # FLAKY's retry group
        rt.scheduler.apply(textwrap.dedent(FLAKY % {"retries": 0}))
        started, _ = rt.scheduler.trigger("default", "nightly")
        rt.run_until(lambda: rt.store.get_run(started.id).state.terminal)
        (sent,) = recorder.on("/from-the-secrets-file")
        assert sent.body is not None
    finally:
        rt.close()


EVERY = """
name: watched
params: {ok: "no"}
alerts: [{on: [start, success], group: chat}]
tasks:
  load:
    type: shell
    command: "test '{{ params.ok }}' = yes"
    alerts: [{on: [failure], group: oncall}]
"""


def test_start_success_and_a_tasks_own_failure_alert_their_groups(
    rt: LocalRuntime, recorder: Recorder
) -> None:
    rt.scheduler.apply(textwrap.dedent(EVERY))
    ran = []
    for ok in ("yes", "no"):
        started, _ = rt.scheduler.trigger("default", "watched", params={"ok": ok})
        rt.run_until(lambda: rt.store.get_run(started.id).state.terminal)  # noqa: B023
        ran.append(rt.store.get_run(started.id))
    assert [r.state.value for r in ran] == ["succeeded", "failed"]
    assert [r.body["text"] for r in recorder.on("/slack")] == [
        "[START] default/watched started",
        "[SUCCESS] default/watched succeeded",
        "[START] default/watched started",
        "[FAILURE] default/watched task load (attempt 1) failed",  # the task's group has slack
    ]
    (page,) = recorder.on("/v2/enqueue")  # the run's failure: no workflow rule asked for it
    assert page.body["dedup_key"] == f"stratoflow/default/watched/{ran[1].id}/load"
    assert page.body["payload"]["custom_details"]["Logical date"] == (
        ran[1].logical_date.isoformat()
    )


def test_a_group_made_by_the_servers_flag_has_no_channels_and_keeps_an_existing_one(
    rt: LocalRuntime, recorder: Recorder
) -> None:
    # `stratoflow server --alert-group NAME` (as `make run` does for examples/alerting.yaml)
    store, now = rt.alerts.store, rt.clock.now()
    assert store.ensure_group("default", "fresh", now) is True
    assert store.ensure_group("default", "oncall", now) is False  # kept as it was
    assert store.list_groups("default")["fresh"] == []
    assert store.list_groups("default")["oncall"] == ["pd", "slack"]
    with pytest.raises(InvalidInput, match="group"):
        store.ensure_group("default", "Bad Name", now)
    # a workflow naming it applies; its alerts are failed deliveries saying it has no channels
    rt.scheduler.apply(textwrap.dedent(FLAKY % {"retries": 0}).replace("oncall", "fresh"))
    started, _ = rt.scheduler.trigger("default", "nightly")
    rt.run_until(lambda: rt.store.get_run(started.id).state.terminal)
    (row,) = store.list_deliveries("default", status="failed")[0]
    assert row.last_error == "alert group 'fresh' has no channels in project 'default'"
    assert recorder.requests == []


def test_a_failed_run_marked_succeeded_alerts_success_and_resolves_its_incident_once(
    rt: LocalRuntime, recorder: Recorder
) -> None:
    """The tester's repro: the run's last failed task marked succeeded ends the run at once;
    its success alert goes out and PagerDuty's incident is resolved, each once."""
    rt.alerts.store.set_group("default", "pager", ["pd"], rt.clock.now())
    rt.scheduler.apply(textwrap.dedent(MARKED))
    started, _ = rt.scheduler.trigger("default", "al2")
    rt.run_until(lambda: rt.store.get_run(started.id).state.terminal)
    (trigger,) = recorder.on("/v2/enqueue")
    assert trigger.body["dedup_key"] == f"stratoflow/default/al2/{started.id}"

    marked = rt.scheduler.mark(started.id, "f", TaskState.SUCCEEDED)
    assert marked.state is RunState.SUCCEEDED
    rt.alerts.deliver_due()

    assert [r.body["text"] for r in recorder.on("/slack")] == [
        "[FAILURE] default/al2 failed",
        "[SUCCESS] default/al2 succeeded",
    ]
    pd = recorder.on("/v2/enqueue")
    assert [r.body["event_action"] for r in pd] == ["trigger", "resolve"]
    assert pd[1].body["dedup_key"] == trigger.body["dedup_key"]
    # the event again (a restart's catch-up, a second emit) plans nothing new
    rt.alerts.emit("run.succeeded", {"run_id": started.id})
    assert rt.alerts.catch_up() == 1
    assert rt.alerts.deliver_due() == 0


WATCHED = """
name: watched
sla: 1s
alerts: [{on: [start, retry, sla_miss], group: chat}]
tasks:
  flaky: {type: shell, command: "exit 1", retries: 1, retry_delay: 0s}
  gate:
    type: shell
    # ends once the test saw the alerts it waits for (or fails after 8 s)
    command: "for i in $(seq 80); do [ -e %(flag)s ] && exit 0; sleep 0.1; done; exit 1"
"""


def test_a_run_driven_in_the_foreground_alerts_while_it_runs(
    rt: LocalRuntime, recorder: Recorder, shared_dir: Path
) -> None:
    """`stratoflow run` drives the run with ``run_until``: its start, its retries and an SLA
    it misses while it still runs are sent then, not all at once when the run has ended."""
    flag = shared_dir / "seen"
    rt.scheduler.apply(textwrap.dedent(WATCHED % {"flag": flag}))
    started, _ = rt.scheduler.trigger("default", "watched")
    wanted = {"[START]", "[RETRY]", "[SLA_MISS]"}
    states: list[str] = []

    def seen() -> None:
        texts = {r.body["text"].split(" ")[0] for r in recorder.on("/slack")}
        if wanted <= texts and not states:
            states.append(rt.store.get_run(started.id).state.value)
            flag.touch()

    rt.run_until(lambda: rt.store.get_run(started.id).state.terminal, on_turn=seen)
    assert states == ["running"]  # every one of them was sent while the run ran
    assert rt.store.get_task(started.id, "gate").state.value == "succeeded"
    texts = sorted(r.body["text"] for r in recorder.on("/slack"))
    assert texts == [
        "[RETRY] default/watched task flaky (attempt 1) is retrying",
        "[SLA_MISS] default/watched missed its SLA",
        "[START] default/watched started",
    ]  # each once: the worker's sends and the flush at the end are the same rows


TASK_ALERTS = """
name: taskalerts
alerts:
  - on: [retry]
    group: chat
tasks:
  flaky:
    type: shell
    command: "exit 3"
    retries: 1
    retry_delay: 0s
    alerts: [{on: [failure], group: oncall}]
  slow:
    type: shell
    command: "sleep 5"
    timeout: 1s
    on_timeout: warn_fail
    alerts: [{on: [timeout], group: chat}]
"""


def _task_alerts(home: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch | None) -> str:
    """A run of TASK_ALERTS on a runtime at ``home``, its events not planned if ``monkeypatch``
    (the process died after each commit, before the outbox write); returns the run's id."""
    rt = runtime_with_alerts(home, recorder)
    if monkeypatch is not None:

        def died(kind: str, detail: object) -> None:
            raise RuntimeError("the process died before the outbox write")

        monkeypatch.setattr(rt.alerts, "_plan", died)
    try:
        rt.scheduler.apply(textwrap.dedent(TASK_ALERTS))
        started, _ = rt.scheduler.trigger("default", "taskalerts")
        rt.run_until(lambda: rt.store.get_run(started.id).state.terminal)
        if monkeypatch is not None:
            assert rt.alerts.store.list_deliveries("default")[0] == []
    finally:
        rt.close()
    if monkeypatch is not None:
        monkeypatch.undo()
    return started.id


def _sent(recorder: Recorder, run_id: str) -> list[str]:
    """What went out, in words (Slack's text; PagerDuty's action, incident and summary)."""
    said = [f"slack {r.body['text']}" for r in recorder.on("/slack")]
    said += [
        f"pd {r.body['event_action']} {r.body['dedup_key']} {r.body['payload']['summary']}"
        for r in recorder.on("/v2/enqueue")
    ]
    return sorted(s.replace(run_id, "<run>") for s in said)


def _keys(rt: LocalRuntime, run_id: str) -> set[str]:
    return {d.key.replace(run_id, "<run>") for d in rt.alerts.store.list_deliveries("default")[0]}


def test_task_alerts_lost_in_a_crash_before_the_outbox_are_caught_up_on_start(
    tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler emits a task's retry, failure and timeout after its state is committed:
    a process that died in between left them out of the outbox. The next start plans them
    again from the attempts' history, each once, with the keys and words the events would
    have made (compared with a run of the same workflow that did not die)."""
    # GIVEN what a run that does not die sends
    unharmed = _task_alerts(tmp_path / "unharmed", recorder, None)
    rt = runtime_with_alerts(tmp_path / "unharmed", recorder)
    try:
        rt.alerts.deliver_due()
        wanted_keys = _keys(rt, unharmed)
    finally:
        rt.close()
    wanted = _sent(recorder, unharmed)
    recorder.requests.clear()
    # WHEN a run dies after each commit, before the outbox write, and the next start catches up
    run_id = _task_alerts(tmp_path / "home", recorder, monkeypatch)
    second = runtime_with_alerts(tmp_path / "home", recorder)
    try:
        second.alerts.catch_up()
        second.alerts.catch_up()  # again: nothing new
        second.alerts.deliver_due()
        keys = _keys(second, run_id)
    finally:
        second.close()
    # THEN the same alerts go out, once each: the retry, the task's failure, the timeout
    assert keys == wanted_keys == {
        "failure:<run>:flaky:2", "retry:<run>:flaky:1", "timeout:<run>:slow:1",
    }  # fmt: skip
    assert _sent(recorder, run_id) == wanted


RERUN_ALERTS = """
name: rerunalerts
alerts:
  - on: [retry]
    group: chat
tasks:
  bad:
    type: shell
    command: "exit 3"
    alerts: [{on: [failure], group: oncall}]
"""


def test_a_catch_up_plans_no_retry_for_an_attempt_a_rerun_followed(
    tmp_path: Path, recorder: Recorder
) -> None:
    """A task that failed for good (no retries left: ``task.failed``, never ``task.retrying``)
    and was rerun has a later attempt, made by the rerun, not by a retry: a restart's
    catch-up must not plan a retry alert the scheduler never sent for the first attempt."""
    # GIVEN a run whose task failed without retries, rerun, failed again; every event planned
    rt = runtime_with_alerts(tmp_path / "home", recorder)
    try:
        rt.scheduler.apply(textwrap.dedent(RERUN_ALERTS))
        started, _ = rt.scheduler.trigger("default", "rerunalerts")
        rt.run_until(lambda: rt.store.get_run(started.id).state.terminal)
        rt.scheduler.rerun(started.id)
        rt.run_until(lambda: rt.store.get_task(started.id, "bad").attempt == 2
                     and rt.store.get_run(started.id).state.terminal)  # fmt: skip
        live = _keys(rt, started.id)
    finally:
        rt.close()
    assert live == {"failure:<run>:bad:1", "failure:<run>:bad:2"}
    # WHEN the next start catches up
    second = runtime_with_alerts(tmp_path / "home", recorder)
    try:
        second.alerts.catch_up()
        caught_up = _keys(second, started.id)
    finally:
        second.close()
    # THEN it plans nothing the live events did not
    assert caught_up == live
