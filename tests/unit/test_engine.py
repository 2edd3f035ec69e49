"""The pure engine: trigger rules, retries, switches, slots and run operations.

No clock and no store: every function takes ``now`` (the ``now`` fixture, a fixed instant).
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Mapping
from datetime import datetime, timedelta

import pytest
import yaml

from stratoflow import engine
from stratoflow.engine import (
    SWITCH_BRANCH_KEY,
    AttemptResult,
    AttemptStatus,
    Readiness,
    Run,
    RunState,
    TaskInstance,
    TaskState,
    Upstream,
)
from stratoflow.errors import Conflict, InvalidInput
from stratoflow.model import TriggerRule, WorkflowSpec, load_workflow, spec_from_document

WAIT, RUN, SKIP, UF = (
    Readiness.WAIT,
    Readiness.RUN,
    Readiness.SKIP,
    Readiness.UPSTREAM_FAILED,
)
W, Q, R, RETRY = TaskState.WAITING, TaskState.QUEUED, TaskState.RUNNING, TaskState.UP_FOR_RETRY
OK, FAIL, SKIPPED = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.SKIPPED
UPF, STOPPED = TaskState.UPSTREAM_FAILED, TaskState.STOPPED


def spec_of(text: str) -> WorkflowSpec:
    return load_workflow(textwrap.dedent(text))


# ------------------------------------------------------------------------------------------
# Trigger rules
# ------------------------------------------------------------------------------------------

# (rule, parents, succeeded, failed, skipped) -> readiness. "failed" counts failed,
# upstream_failed and stopped parents.
TRIGGER_TABLE = [
    # all_success: every parent succeeded
    ("all_success", 1, 0, 0, 0, WAIT),
    ("all_success", 1, 1, 0, 0, RUN),
    ("all_success", 2, 1, 0, 0, WAIT),
    ("all_success", 2, 2, 0, 0, RUN),
    ("all_success", 3, 0, 1, 0, UF),  # decided early: it can never run
    ("all_success", 2, 1, 1, 0, UF),
    ("all_success", 2, 1, 0, 1, SKIP),  # skips propagate
    ("all_success", 3, 0, 0, 1, SKIP),
    ("all_success", 2, 0, 1, 1, UF),  # failure outranks a skip
    # all_failed: every parent failed
    ("all_failed", 2, 0, 1, 0, WAIT),
    ("all_failed", 2, 0, 2, 0, RUN),
    ("all_failed", 2, 1, 0, 0, SKIP),
    ("all_failed", 2, 0, 1, 1, SKIP),
    ("all_failed", 1, 0, 0, 1, SKIP),
    # all_done: every parent finished, however
    ("all_done", 2, 1, 0, 0, WAIT),
    ("all_done", 2, 0, 1, 1, RUN),
    ("all_done", 3, 1, 1, 1, RUN),
    ("all_done", 1, 0, 0, 1, RUN),
    # one_success: as soon as one succeeded, without waiting for the rest
    ("one_success", 3, 1, 0, 0, RUN),
    ("one_success", 2, 1, 1, 0, RUN),
    ("one_success", 3, 0, 1, 1, WAIT),
    ("one_success", 3, 0, 2, 1, UF),
    ("one_success", 2, 0, 2, 0, UF),
    ("one_success", 3, 0, 0, 3, SKIP),  # all skipped -> skipped
    # one_failed: as soon as one failed, without waiting for the rest
    ("one_failed", 3, 0, 1, 0, RUN),
    ("one_failed", 3, 2, 0, 0, WAIT),
    ("one_failed", 3, 2, 0, 1, SKIP),
    ("one_failed", 2, 0, 0, 2, SKIP),
    # none_failed: every parent succeeded or was skipped
    ("none_failed", 2, 1, 0, 1, RUN),
    ("none_failed", 2, 0, 0, 2, RUN),  # all skipped still runs (unlike *_min_one_success)
    ("none_failed", 2, 1, 0, 0, WAIT),
    ("none_failed", 3, 0, 1, 0, UF),
    # none_failed_min_one_success: as none_failed, and one parent succeeded
    ("none_failed_min_one_success", 2, 1, 0, 1, RUN),
    ("none_failed_min_one_success", 2, 0, 0, 2, SKIP),  # all skipped: skipped
    ("none_failed_min_one_success", 3, 1, 0, 1, WAIT),
    ("none_failed_min_one_success", 3, 0, 1, 0, UF),  # a failure: at once
]


@pytest.mark.parametrize(("rule", "n", "s", "f", "k", "expected"), TRIGGER_TABLE)
def test_trigger_rule_table(rule: str, n: int, s: int, f: int, k: int, expected: Readiness) -> None:
    assert engine.readiness(TriggerRule(rule), Upstream(s, f, k), n) is expected


def airflow(rule: str, n: int, s: int, f: int, k: int) -> Readiness:
    """Airflow's documented trigger rules ("Trigger Rules" in its concepts docs), with its
    scheduler's early decisions (TriggerRuleDep with flag_upstream_failed):

    all_success  all upstream succeeded; a failed one -> upstream_failed, else a skipped one
                 -> skipped
    all_failed   all upstream failed or upstream_failed; a success or skip -> skipped
    all_done     all upstream done with their execution
    one_success  at least one succeeded, not waiting for all; all done with none succeeded
                 -> skipped if all were skipped, else upstream_failed
    one_failed   at least one failed, not waiting for all; all done with none failed -> skipped
    none_failed  no upstream failed or upstream_failed (all succeeded or skipped); a failure
                 -> upstream_failed
    none_failed_min_one_success
                 as none_failed, and at least one succeeded; a failure -> upstream_failed,
                 all skipped -> skipped
    """
    done = s + f + k == n
    if n == 0:
        return RUN
    if rule == "all_success":
        if f:
            return UF
        if k:
            return SKIP
        return RUN if done else WAIT
    if rule == "all_failed":
        if s or k:
            return SKIP
        return RUN if done else WAIT
    if rule == "all_done":
        return RUN if done else WAIT
    if rule == "one_success":
        if s:
            return RUN
        if not done:
            return WAIT
        return SKIP if k == n else UF
    if rule == "one_failed":
        if f:
            return RUN
        return SKIP if done else WAIT
    if f:
        return UF
    if rule == "none_failed_min_one_success":
        if k == n:
            return SKIP
        return RUN if done else WAIT
    assert rule == "none_failed"
    return RUN if done else WAIT


def test_every_trigger_rule_matches_airflow_on_every_count_up_to_four_parents() -> None:
    mismatches = []
    for rule, n in itertools.product(TriggerRule, range(5)):
        for s, f, k in itertools.product(range(n + 1), repeat=3):
            if s + f + k > n:
                continue
            got = engine.readiness(rule, Upstream(s, f, k), n)
            if got is not airflow(rule.value, n, s, f, k):
                mismatches.append((rule.value, n, s, f, k, got.value))
    assert mismatches == []


def test_a_task_without_parents_is_always_ready() -> None:
    for rule in TriggerRule:
        assert engine.readiness(rule, Upstream(), 0) is RUN


def test_child_state_maps_readiness_and_ignores_a_child_that_already_moved() -> None:
    spec = spec_of(
        """
        name: w
        tasks:
          a: {type: shell, command: x}
          b: {type: shell, command: x}
          c: {type: shell, command: x, depends_on: [a, b]}
        """
    )
    c = TaskInstance("r", "c")
    assert engine.child_state(spec, c.with_(upstream=Upstream(1, 0, 0))) is None  # waits
    assert engine.child_state(spec, c.with_(upstream=Upstream(2, 0, 0))) is Q
    assert engine.child_state(spec, c.with_(upstream=Upstream(1, 0, 1))) is SKIPPED
    assert engine.child_state(spec, c.with_(upstream=Upstream(0, 1, 0))) is UPF
    # a child that is not WAITING is never decided again (duplicate or late parent event)
    assert engine.child_state(spec, c.with_(state=R, upstream=Upstream(0, 2, 0))) is None


# ------------------------------------------------------------------------------------------
# Attempts: retries, backoff, stale results
# ------------------------------------------------------------------------------------------

RETRYING = spec_of(
    """
    name: retrying
    defaults: {retries: 5, retry_delay: 10s, retry_backoff: 2.0, max_retry_delay: 1m}
    tasks:
      a: {type: shell, command: x}
      fixed: {type: shell, command: x, retry_backoff: 1.0, retries: 2}
      none: {type: shell, command: x, retries: 0}
    """
)


def running(task_id: str, attempt: int, now: datetime, **changes: object) -> TaskInstance:
    return TaskInstance("r", task_id, R, attempt=attempt, started_at=now).with_(**changes)


def failed() -> AttemptResult:
    return AttemptResult(AttemptStatus.FAILED, error="exit code 1", exit_code=1)


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [(1, 10), (2, 20), (3, 40), (4, 60), (5, 60)],  # 10 * 2^(n-1), capped at 1m
)
def test_retry_delay_grows_by_backoff_and_is_capped(attempt: int, seconds: int) -> None:
    assert engine.retry_delay(RETRYING, "a", attempt) == timedelta(seconds=seconds)


def test_retry_delay_with_backoff_one_is_fixed() -> None:
    assert [engine.retry_delay(RETRYING, "fixed", n).total_seconds() for n in (1, 2)] == [10, 10]


def test_a_fixed_retry_delay_longer_than_the_default_cap_is_waited_whole() -> None:
    # GIVEN a task retried every 2 h (DolphinScheduler's failRetryInterval: 120), no backoff,
    # and a backed-off one whose first delay (90 m) is over the default cap (1 h)
    spec = spec_of(
        """
        name: slow_retries
        tasks:
          fixed: {type: shell, command: x, retries: 2, retry_delay: 2h}
          grows: {type: shell, command: x, retries: 3, retry_delay: 90m, retry_backoff: 2.0}
        """
    )
    # THEN the fixed delay is 2 h each time: "1.0 = fixed delay", and the cap (1 h by default)
    # bounds what a backoff adds, never the delay written
    assert [engine.retry_delay(spec, "fixed", n) for n in (1, 2)] == [timedelta(hours=2)] * 2
    # AND a backoff does not grow past the cap, nor shrink below the delay written
    assert [engine.retry_delay(spec, "grows", n) for n in (1, 2, 3)] == [timedelta(minutes=90)] * 3


def test_a_failed_attempt_is_retried_after_its_delay_until_retries_run_out(
    now: datetime,
) -> None:
    # GIVEN task `a` (retries 5): attempts 1..5 fail and are retried with growing delays
    for attempt, delay in [(1, 10), (2, 20), (3, 40), (4, 60), (5, 60)]:
        decision = engine.on_attempt_finished(
            RETRYING, running("a", attempt, now), attempt, failed(), now
        )
        assert decision is not None
        assert decision.retrying
        assert decision.task.state is RETRY
        assert decision.task.ready_at == now + timedelta(seconds=delay)
        assert decision.task.error == "exit code 1"
    # WHEN the 6th attempt (the last of 1 + 5 retries) fails THEN the task fails
    last = engine.on_attempt_finished(RETRYING, running("a", 6, now), 6, failed(), now)
    assert last is not None
    assert (last.task.state, last.retrying, last.task.ended_at) == (FAIL, False, now)


def test_a_timed_out_attempt_is_retried_like_a_failure(now: datetime) -> None:
    result = AttemptResult(AttemptStatus.TIMED_OUT, error="timed out after 0:10:00")
    decision = engine.on_attempt_finished(RETRYING, running("a", 1, now), 1, result, now)
    assert decision is not None
    assert decision.task.state is RETRY


def test_a_killed_attempt_s_retry_waits_until_its_processes_are_gone(now: datetime) -> None:
    # GIVEN a timed-out attempt whose processes may live 15 s more (the kill's grace), and a
    # retry delay of 10 s
    gone_by = now + timedelta(seconds=15)
    result = AttemptResult(AttemptStatus.TIMED_OUT, error="timed out", retry_not_before=gone_by)
    # WHEN it ends, THEN its retry is due when they are gone, not at the delay's end
    decision = engine.on_attempt_finished(RETRYING, running("fixed", 1, now), 1, result, now)
    assert decision is not None
    assert (decision.task.state, decision.task.ready_at) == (RETRY, gone_by)
    # a delay longer than the grace is kept as it is
    early = AttemptResult(AttemptStatus.TIMED_OUT, retry_not_before=now + timedelta(seconds=5))
    decision = engine.on_attempt_finished(RETRYING, running("fixed", 1, now), 1, early, now)
    assert decision is not None
    assert decision.task.ready_at == now + timedelta(seconds=10)


def test_a_non_retryable_failure_fails_at_once(now: datetime) -> None:
    result = AttemptResult(AttemptStatus.FAILED, error="undefined: x", retryable=False)
    decision = engine.on_attempt_finished(RETRYING, running("a", 1, now), 1, result, now)
    assert decision is not None
    assert (decision.task.state, decision.retrying) == (FAIL, False)


def test_a_task_without_retries_fails_on_its_first_failure(now: datetime) -> None:
    decision = engine.on_attempt_finished(RETRYING, running("none", 1, now), 1, failed(), now)
    assert decision is not None
    assert decision.task.state is FAIL


def test_success_keeps_outputs_and_clears_the_deadline(now: datetime) -> None:
    ti = running("a", 2, now, deadline=now + timedelta(minutes=5), error="old error")
    result = AttemptResult(AttemptStatus.SUCCEEDED, outputs={"rows": "42"})
    decision = engine.on_attempt_finished(RETRYING, ti, 2, result, now)
    assert decision is not None
    task = decision.task
    assert (task.state, task.outputs, task.deadline, task.error, task.ended_at) == (
        OK,
        {"rows": "42"},
        None,
        None,
        now,
    )


def test_an_end_found_after_a_restart_is_when_the_attempt_ended(now: datetime) -> None:
    """An executor that finds, on restart, an attempt that ended while the scheduler was
    down says when (``ended_at``): the task ends then, and a retry waits its delay from
    then; an end reported as it happens (None) or "later than now" ends now; one before the
    attempt's start (a clock set back) ends at the start."""
    started = now - timedelta(minutes=10)
    ended = now - timedelta(minutes=8)
    ok = AttemptResult(AttemptStatus.SUCCEEDED, ended_at=ended)
    decision = engine.on_attempt_finished(RETRYING, running("a", 1, started), 1, ok, now)
    assert decision is not None
    assert decision.task.ended_at == ended
    failing = AttemptResult(AttemptStatus.FAILED, error="exit code 1", ended_at=ended)
    retry = engine.on_attempt_finished(RETRYING, running("fixed", 1, started), 1, failing, now)
    assert retry is not None
    assert (retry.task.state, retry.task.ready_at) == (RETRY, ended + timedelta(seconds=10))
    ti = running("a", 1, started)
    assert engine.attempt_end(ti, AttemptResult(AttemptStatus.SUCCEEDED), now) == now
    future = AttemptResult(AttemptStatus.SUCCEEDED, ended_at=now + timedelta(seconds=1))
    assert engine.attempt_end(ti, future, now) == now
    early = AttemptResult(AttemptStatus.SUCCEEDED, ended_at=started - timedelta(seconds=1))
    assert engine.attempt_end(ti, early, now) == started


def test_a_stopped_attempt_stops_the_task(now: datetime) -> None:
    result = AttemptResult(AttemptStatus.STOPPED, error="killed")
    decision = engine.on_attempt_finished(RETRYING, running("a", 1, now), 1, result, now)
    assert decision is not None
    assert decision.task.state is STOPPED


@pytest.mark.parametrize(
    "ti",
    [
        pytest.param(TaskInstance("r", "a", R, attempt=3), id="an older attempt (late)"),
        pytest.param(TaskInstance("r", "a", R, attempt=1), id="a future attempt"),
        pytest.param(TaskInstance("r", "a", OK, attempt=2), id="already succeeded (duplicate)"),
        pytest.param(TaskInstance("r", "a", RETRY, attempt=2), id="already up for retry"),
        pytest.param(TaskInstance("r", "a", STOPPED, attempt=2), id="stopped meanwhile"),
        pytest.param(TaskInstance("r", "a", Q, attempt=2), id="queued for attempt 3"),
    ],
)
def test_a_stale_or_duplicate_result_is_ignored(ti: TaskInstance, now: datetime) -> None:
    # the report is for attempt 2
    ok = AttemptResult(AttemptStatus.SUCCEEDED)
    assert engine.on_attempt_finished(RETRYING, ti, 2, ok, now) is None


def test_applying_the_same_result_twice_changes_nothing_the_second_time(now: datetime) -> None:
    first = engine.on_attempt_finished(RETRYING, running("a", 1, now), 1, failed(), now)
    assert first is not None
    assert engine.on_attempt_finished(RETRYING, first.task, 1, failed(), now) is None


def test_claim_starts_the_next_attempt_with_a_deadline(now: datetime) -> None:
    spec = spec_of(
        """
        name: w
        defaults: {timeout: 10m}
        tasks:
          a: {type: shell, command: x}
          b: {type: shell, command: x, timeout: 30s}
        """
    )
    claimed = engine.claim(spec, TaskInstance("r", "a", Q, attempt=2, error="old"), now)
    assert (claimed.state, claimed.attempt, claimed.started_at, claimed.error) == (R, 3, now, None)
    assert claimed.deadline == now + timedelta(minutes=10)
    assert engine.claim(spec, TaskInstance("r", "b", Q), now).deadline == now + timedelta(
        seconds=30
    )
    assert engine.timed_out(claimed, now + timedelta(minutes=10))
    assert not engine.timed_out(claimed, now + timedelta(minutes=9))


@pytest.mark.parametrize("state", [W, R, RETRY, OK, FAIL])
def test_only_a_queued_task_can_be_claimed(state: TaskState, now: datetime) -> None:
    spec = spec_of("name: w\ntasks: {a: {type: shell, command: x}}")
    with pytest.raises(Conflict, match="not queued"):
        engine.claim(spec, TaskInstance("r", "a", state), now)


def test_retry_due_only_once_ready_at_has_passed(now: datetime) -> None:
    ti = TaskInstance("r", "a", RETRY, attempt=1, ready_at=now + timedelta(seconds=10))
    assert not engine.retry_due(ti, now)
    assert engine.retry_due(ti, now + timedelta(seconds=10))
    assert not engine.retry_due(ti.with_(state=Q), now + timedelta(hours=1))


# ------------------------------------------------------------------------------------------
# Switches
# ------------------------------------------------------------------------------------------

# `audit` depends on the switch but is none of its branches: refused since (a switch's child
# must be a branch), so only a version stored before can have it; it still loads and runs
SWITCH = spec_from_document(
    yaml.safe_load(
        textwrap.dedent(
            """
    name: switching
    params: {size: 10}
    tasks:
      route:
        type: switch
        cases:
          - when: "{{ params.size | int > 50 }}"
            next: [big]
          - when: "{{ params.size | int > 5 }}"
            next: [medium, extra]
        default: [small]
      big: {type: shell, command: x, depends_on: [route]}
      medium: {type: shell, command: x, depends_on: [route]}
      extra: {type: shell, command: x, depends_on: [route]}
      small: {type: shell, command: x, depends_on: [route]}
      audit: {type: shell, command: x, depends_on: [route]}
      after_big: {type: shell, command: x, depends_on: [big]}
      join: {type: shell, command: x, depends_on: [big, small], trigger_rule: none_failed}
    """
        )
    )
)


def make_run(
    spec: WorkflowSpec,
    states: Mapping[str, TaskState],
    now: datetime,
    *,
    state: RunState = RunState.RUNNING,
    params: Mapping[str, object] | None = None,
) -> tuple[Run, list[TaskInstance]]:
    """A run whose tasks are in ``states`` (others WAITING), counters to match."""
    run, fresh = engine.new_run(
        spec, run_id="r", version=1, params=params or {}, logical_date=now, now=now
    )
    tasks = []
    for ti in fresh:
        s = states.get(ti.task_id, W)
        ran = s in (R, RETRY, OK, FAIL) or (s is STOPPED)
        tasks.append(ti.with_(state=s, attempt=1 if ran else 0))
    run = run.with_(
        state=state,
        started_at=now,
        n_done=sum(t.state.terminal for t in tasks),
        n_failed=sum(t.state is FAIL for t in tasks),
        n_running=sum(t.state is R for t in tasks),
    )
    return run, tasks


@pytest.mark.parametrize(
    ("size", "chosen", "case"),
    [(80, ["big"], 0), (10, ["medium", "extra"], 1), (1, ["small"], None)],
)
def test_choose_branches_takes_the_first_true_case_else_the_default(
    size: int, chosen: list[str], case: int | None, now: datetime
) -> None:
    run, _ = make_run(SWITCH, {}, now, params={"size": size})
    result = engine.choose_branches(SWITCH, run, "route", {})
    assert result.status is AttemptStatus.SUCCEEDED
    assert result.outputs == {SWITCH_BRANCH_KEY: chosen, "case": case}


def test_a_switch_whose_condition_is_not_a_boolean_fails_without_retry(now: datetime) -> None:
    spec = spec_of(
        """
        name: w
        params: {mode: maybe}
        tasks:
          route: {type: switch, cases: [{when: "{{ params.mode }}", next: [a]}]}
          a: {type: shell, command: x, depends_on: [route]}
        """
    )
    run, _ = make_run(spec, {}, now)
    result = engine.choose_branches(spec, run, "route", {})
    assert (result.status, result.retryable) == (AttemptStatus.FAILED, False)
    assert result.error is not None
    assert "rendered 'maybe', not true or false" in result.error


def test_switch_skips_the_branches_it_did_not_choose(now: datetime) -> None:
    outputs = {SWITCH_BRANCH_KEY: ["medium", "extra"]}

    def outcome(child: str) -> TaskState:
        return engine.edge_outcome(SWITCH, "route", OK, outputs, child)

    assert [outcome(c) for c in ("big", "medium", "extra", "small")] == [SKIPPED, OK, OK, SKIPPED]
    # a child that is not a branch at all (only a version stored before the check can have
    # one) just sees the switch succeed
    assert outcome("audit") is OK


def test_a_failed_switch_fails_every_child_branch_or_not(now: datetime) -> None:
    for child in ("big", "small", "audit"):
        assert engine.edge_outcome(SWITCH, "route", FAIL, {}, child) is FAIL
        assert engine.edge_outcome(SWITCH, "route", UPF, {}, child) is FAIL
        assert engine.edge_outcome(SWITCH, "route", STOPPED, {}, child) is FAIL


def test_a_skip_propagates_until_a_trigger_rule_accepts_it() -> None:
    # GIVEN the switch chose `small`, so `big` sees a skipped parent
    big = TaskInstance("r", "big", upstream=Upstream().plus(SKIPPED))
    assert engine.child_state(SWITCH, big) is SKIPPED
    # WHEN big is skipped THEN after_big (all_success) is skipped too
    after_big = TaskInstance("r", "after_big", upstream=Upstream().plus(SKIPPED))
    assert engine.child_state(SWITCH, after_big) is SKIPPED
    # AND join (none_failed) runs once small succeeded: it accepts the skip
    join = TaskInstance("r", "join", upstream=Upstream().plus(SKIPPED))
    assert engine.child_state(SWITCH, join) is None  # still waits for small
    assert engine.child_state(SWITCH, join.with_(upstream=join.upstream.plus(OK))) is Q


# ------------------------------------------------------------------------------------------
# Runs: start, finish, slots, on_failure
# ------------------------------------------------------------------------------------------

OPS_SOURCE = """
    name: ops
    params: {region: eu, limit: 10}
    concurrency: 2
    max_active_runs: 1
    on_failure: stop
    defaults: {retries: 1}
    tasks:
      extract: {type: shell, command: x}
      transform: {type: shell, command: x, depends_on: [extract]}
      load: {type: shell, command: x, depends_on: [transform]}
      report: {type: shell, command: x, depends_on: [extract]}
      notify: {type: shell, command: x, depends_on: [load, report], trigger_rule: all_done}
    """
OPS = spec_of(OPS_SOURCE)


def by_id(tasks: Mapping[str, TaskInstance] | list[TaskInstance]) -> dict[str, TaskState]:
    items = tasks.values() if isinstance(tasks, Mapping) else tasks
    return {t.task_id: t.state for t in items}


def test_new_run_is_queued_with_waiting_tasks_in_topological_order(now: datetime) -> None:
    run, tasks = engine.new_run(
        OPS, run_id="r", version=3, params={"region": "us"}, logical_date=now, now=now
    )
    assert (run.state, run.version, run.n_tasks, run.params) == (
        RunState.QUEUED,
        3,
        5,
        {"region": "us", "limit": 10},
    )
    assert [t.task_id for t in tasks] == ["extract", "transform", "report", "load", "notify"]
    assert {t.state for t in tasks} == {W}


def test_unknown_run_params_are_rejected_by_name() -> None:
    with pytest.raises(InvalidInput) as exc:
        engine.effective_params(OPS, {"regoin": "us"})
    assert [p.path for p in exc.value.problems] == ["params.regoin"]
    assert "limit, region" in str(exc.value)


TYPED = spec_of(
    """
    name: typed
    params: {n: 3, ratio: 0.5, flag: false, tags: [a], opts: {k: 1}, region: eu, anything: null}
    tasks:
      a: {type: shell, command: x}
    """
)


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ({"n": "5"}, {"n": 5}),
        ({"n": " -12 "}, {"n": -12}),
        ({"n": "+7"}, {"n": 7}),
        ({"ratio": ".5"}, {"ratio": 0.5}),
        ({"ratio": "2"}, {"ratio": 2.0}),
        ({"ratio": "1e-3"}, {"ratio": 0.001}),
        ({"flag": "false"}, {"flag": False}),
        ({"flag": "TRUE"}, {"flag": True}),
        ({"flag": "0"}, {"flag": False}),
        ({"tags": '["x", "y"]'}, {"tags": ["x", "y"]}),
        ({"opts": '{"k": 2}'}, {"opts": {"k": 2}}),
        ({"region": "5"}, {"region": "5"}),  # a text param stays text
        ({"anything": "5"}, {"anything": "5"}),  # no type to read it as
        ({"n": 7, "flag": 1}, {"n": 7, "flag": 1}),  # typed values (the API's JSON) as given
    ],
)
def test_text_given_for_a_typed_param_is_read_as_its_default_s_type(
    given: dict[str, object], read: dict[str, object]
) -> None:
    """``-p n=5`` is text; left so, ``{{ params.n * 2 }}`` gave 55 and ``{% if params.flag
    %}`` took ``"false"`` as true."""
    params = engine.effective_params(TYPED, given)
    assert {k: params[k] for k in read} == read
    assert all(type(params[k]) is type(v) for k, v in read.items())


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"n": "five"}, "params.n: expected an integer (its default is 3), got 'five'"),
        ({"n": "2.5"}, "params.n: expected an integer"),
        ({"n": "9" * 65}, "params.n: expected an integer"),
        ({"ratio": "nan"}, "params.ratio: expected a number (its default is 0.5), got 'nan'"),
        ({"ratio": "1e999"}, "params.ratio: 1e999 is not a finite number"),
        ({"n": "1_000"}, "params.n: expected an integer"),
        ({"n": "\u0661\u0662"}, "params.n: expected an integer"),  # Arabic-Indic digits
        ({"ratio": "x"}, "params.ratio: expected a number (its default is 0.5)"),
        ({"flag": "maybe"}, "params.flag: expected true or false (its default is false)"),
        ({"tags": '{"a": 1}'}, "params.tags: expected a JSON list"),
        ({"opts": "[1"}, "params.opts: expected a JSON object"),
        ({"opts": "[" * 100_000}, "params.opts: expected a JSON object"),
    ],
)
def test_text_that_is_not_of_the_param_s_type_is_refused_naming_it(
    given: dict[str, object], said: str
) -> None:
    with pytest.raises(InvalidInput) as exc:
        engine.effective_params(TYPED, given)
    assert said in str(exc.value)


def test_start_run_queues_the_roots_once(now: datetime) -> None:
    run, _ = engine.new_run(OPS, run_id="r", version=1, params={}, logical_date=now, now=now)
    started, roots = engine.start_run(OPS, run, now)
    assert (started.state, started.started_at, roots) == (RunState.RUNNING, now, ["extract"])
    with pytest.raises(Conflict, match="not queued"):
        engine.start_run(OPS, started, now)


def test_max_active_runs_limits_starts() -> None:
    assert engine.may_start(OPS, 0)
    assert not engine.may_start(OPS, 1)
    assert engine.may_start(SWITCH, 1000)  # no limit


def test_concurrency_slots(now: datetime) -> None:
    run, _ = make_run(OPS, {}, now)
    assert engine.dispatch_slots(OPS, run) == 2
    assert engine.dispatch_slots(OPS, run.with_(n_running=1)) == 1
    assert engine.dispatch_slots(OPS, run.with_(n_running=2)) == 0
    assert engine.dispatch_slots(OPS, run.with_(n_running=3)) == 0  # never negative
    assert engine.dispatch_slots(OPS, run.with_(state=RunState.PAUSED)) == 0
    unlimited, _ = make_run(SWITCH, {}, now)
    assert engine.dispatch_slots(SWITCH, unlimited.with_(n_running=500)) > 10_000


def test_run_finishes_when_every_task_ended(now: datetime) -> None:
    run, _ = make_run(OPS, {}, now)
    assert engine.run_finished_state(OPS, run.with_(n_done=4)) is None
    assert engine.run_finished_state(OPS, run.with_(n_done=5)) is RunState.SUCCEEDED
    assert engine.run_finished_state(OPS, run.with_(n_done=5, n_failed=1)) is RunState.FAILED
    done = run.with_(n_done=5, state=RunState.STOPPED)
    assert engine.run_finished_state(OPS, done) is None  # already ended
    # every task ended, none failed: what else they ended in decides
    ended = run.with_(n_done=5)
    stopped, upstream = TaskState.STOPPED, TaskState.UPSTREAM_FAILED
    assert engine.run_finished_state(OPS, ended, set()) is RunState.SUCCEEDED
    assert engine.run_finished_state(OPS, ended, {stopped, upstream}) is RunState.STOPPED
    assert engine.run_finished_state(OPS, ended, {stopped}) is RunState.STOPPED
    assert engine.run_finished_state(OPS, ended, {upstream}) is RunState.FAILED
    assert engine.run_finished_state(OPS, ended.with_(n_failed=1), {stopped}) is RunState.FAILED
    tasks = [TaskInstance(run.id, "a", stopped), TaskInstance(run.id, "b", TaskState.SKIPPED)]
    assert engine.states_present(tasks) == {stopped}


def test_on_failure_stop_stops_the_run_only_for_a_real_failure() -> None:
    assert engine.stops_run_on_failure(OPS, FAIL)
    assert not engine.stops_run_on_failure(OPS, UPF)
    assert not engine.stops_run_on_failure(OPS, OK)
    assert not engine.stops_run_on_failure(SWITCH, FAIL)  # on_failure: continue (default)


def test_on_failure_stop_plan_fails_the_run_and_kills_what_runs(now: datetime) -> None:
    # GIVEN transform just failed while report is running
    run, tasks = make_run(OPS, {"extract": OK, "transform": FAIL, "load": UPF, "report": R}, now)
    # WHEN the run is stopped because of it
    plan = engine.stop(run, tasks, now, end_state=RunState.FAILED, reason="transform failed")
    # THEN report is killed, everything unfinished is stopped, and the run failed with a reason
    assert [t.task_id for t in plan.kill] == ["report"]
    assert by_id(plan.tasks) == {"report": STOPPED, "notify": STOPPED}
    assert (plan.run.state, plan.run.error, plan.run.ended_at) == (
        RunState.FAILED,
        "transform failed",
        now,
    )
    assert (plan.run.n_done, plan.run.n_failed, plan.run.n_running) == (5, 1, 0)


# ------------------------------------------------------------------------------------------
# Run operations
# ------------------------------------------------------------------------------------------


def test_pause_and_resume(now: datetime) -> None:
    run, _ = make_run(OPS, {"extract": R}, now)
    paused = engine.pause(run)
    assert paused.state is RunState.PAUSED
    assert engine.resume(paused).state is RunState.RUNNING


@pytest.mark.parametrize(
    "state", [RunState.QUEUED, RunState.PAUSED, RunState.SUCCEEDED, RunState.STOPPED]
)
def test_only_a_running_run_can_be_paused(state: RunState, now: datetime) -> None:
    run, _ = make_run(OPS, {}, now, state=state)
    with pytest.raises(Conflict, match="only a running run can be paused"):
        engine.pause(run)


@pytest.mark.parametrize(
    "state", [RunState.QUEUED, RunState.RUNNING, RunState.FAILED, RunState.STOPPED]
)
def test_only_a_paused_run_can_be_resumed(state: RunState, now: datetime) -> None:
    run, _ = make_run(OPS, {}, now, state=state)
    with pytest.raises(Conflict, match="only a paused run can be resumed"):
        engine.resume(run)


def test_stop_kills_running_attempts_and_stops_every_unfinished_task(now: datetime) -> None:
    # GIVEN extract succeeded, transform runs, report waits for its retry
    run, tasks = make_run(OPS, {"extract": OK, "transform": R, "report": RETRY}, now)
    # WHEN the run is stopped
    plan = engine.stop(run, tasks, now)
    # THEN the running attempt is killed and nothing unfinished is left
    assert [(t.task_id, t.attempt) for t in plan.kill] == [("transform", 1)]
    assert by_id(plan.tasks) == {
        "transform": STOPPED,
        "report": STOPPED,
        "load": STOPPED,
        "notify": STOPPED,
    }
    assert all(t.error == "stopped by request" for t in plan.tasks.values())
    assert (plan.run.state, plan.run.n_done, plan.run.n_running, plan.run.n_failed) == (
        RunState.STOPPED,
        5,
        0,
        0,
    )


@pytest.mark.parametrize("state", [RunState.SUCCEEDED, RunState.FAILED, RunState.STOPPED])
def test_a_finished_run_cannot_be_stopped(state: RunState, now: datetime) -> None:
    run, tasks = make_run(OPS, {}, now, state=state)
    with pytest.raises(Conflict, match="already"):
        engine.stop(run, tasks, now)


FAILED_RUN = {"extract": OK, "transform": FAIL, "load": UPF, "report": OK, "notify": OK}


def test_rerun_failed_resets_the_failed_tasks_and_what_is_downstream_of_them(
    now: datetime,
) -> None:
    # GIVEN a failed run: transform failed, load never ran, notify (all_done after load)
    # ran on that failure, extract and report succeeded upstream of or beside it
    run, tasks = make_run(OPS, FAILED_RUN, now, state=RunState.FAILED)
    # WHEN the failed tasks are rerun
    plan = engine.rerun_failed(OPS, run, tasks, now)
    # THEN transform is ready again (its parent succeeded), load and notify wait for it,
    # and the tasks not downstream of the failure are not touched
    assert by_id(plan.tasks) == {"transform": Q, "load": W, "notify": W}
    assert plan.edges == {"transform": {"extract": OK}, "load": {}, "notify": {"report": OK}}
    assert plan.tasks["notify"].upstream == Upstream(succeeded=1)  # report's, kept
    assert (plan.run.state, plan.run.n_done, plan.run.n_failed, plan.run.ended_at) == (
        RunState.RUNNING,
        2,
        0,
        None,
    )
    # AND attempt numbers keep growing, so the new attempt has a new dispatch key
    assert plan.tasks["transform"].attempt == 1
    assert plan.tasks["notify"].attempt_base == 1  # notify's next attempt is its 2nd


# extract fails; what is downstream of it ends because of that: load (upstream_failed),
# cleanup (all_done: it runs whatever extract did), alert (one_failed: it runs because
# extract failed), route (a switch after the failure, all_done) whose unchosen branch
# publish is skipped and whose default gap runs; side -> side_report is a branch of its own
AFTER_FAILURE = spec_of(
    """
    name: after_failure
    tasks:
      extract: {type: shell, command: x}
      load: {type: shell, command: x, depends_on: [extract]}
      cleanup: {type: shell, command: x, depends_on: [extract], trigger_rule: all_done}
      alert: {type: shell, command: x, depends_on: [extract], trigger_rule: one_failed}
      route:
        type: switch
        depends_on: [extract]
        trigger_rule: all_done
        cases: [{when: "{{ tasks.extract.outputs.rows | default('') != '' }}", next: [publish]}]
        default: [gap]
      publish: {type: shell, command: x, depends_on: [route]}
      gap: {type: shell, command: x, depends_on: [route]}
      side: {type: shell, command: x}
      side_report: {type: shell, command: x, depends_on: [side]}
    """
)
FAILED_EXTRACT = {
    "extract": FAIL, "load": UPF, "cleanup": OK, "alert": OK, "route": OK,
    "publish": SKIPPED, "gap": OK, "side": OK, "side_report": OK,
}  # fmt: skip


def after_failure(now: datetime) -> tuple[Run, list[TaskInstance]]:
    run, tasks = make_run(AFTER_FAILURE, FAILED_EXTRACT, now, state=RunState.FAILED)
    chose_gap = {SWITCH_BRANCH_KEY: ["gap"], "case": None}
    return run, [t.with_(outputs=chose_gap) if t.task_id == "route" else t for t in tasks]


def ended_upstream(
    spec: WorkflowSpec, child: TaskInstance, parent: str, state: TaskState
) -> TaskState | None:
    """What ``child`` (WAITING) becomes when ``parent`` ends in ``state``, as the turn of
    that end decides it (the parent's outcome added to its counts)."""
    up = child.upstream.plus(engine.edge_outcome(spec, parent, state, {}, child.task_id))
    return engine.child_state(spec, child.with_(upstream=up))


def test_rerun_failed_runs_an_all_done_cleanup_again_after_its_failed_parent(
    now: datetime,
) -> None:
    # GIVEN extract failed and cleanup (all_done) succeeded after it
    run, tasks = after_failure(now)
    # WHEN the failed tasks are rerun
    plan = engine.rerun_failed(AFTER_FAILURE, run, tasks, now)
    # THEN extract is queued, and cleanup waits for it with nothing counted of the old end
    assert plan.tasks["extract"].state is Q
    cleanup = plan.tasks["cleanup"]
    assert (cleanup.state, cleanup.upstream, plan.edges["cleanup"]) == (W, Upstream(), {})
    assert (cleanup.attempt, cleanup.ended_at) == (1, None)
    # AND once extract ends again, cleanup runs after it (its new attempt: attempt 2)
    assert ended_upstream(AFTER_FAILURE, cleanup, "extract", OK) is Q
    assert engine.claim(AFTER_FAILURE, cleanup.with_(state=Q), now).attempt == 2
    # AND the one_failed alert that ran on the failure waits too: it skips if extract
    # succeeds this time, runs if it fails again
    alert = plan.tasks["alert"]
    assert alert.state is W
    assert ended_upstream(AFTER_FAILURE, alert, "extract", OK) is SKIPPED
    assert ended_upstream(AFTER_FAILURE, alert, "extract", FAIL) is Q
    # AND the run runs again, counting only what is kept as done
    assert (plan.run.state, plan.run.n_done, plan.run.n_failed) == (RunState.RUNNING, 2, 0)


def test_rerun_failed_keeps_a_branch_that_succeeded_apart_from_the_failure(
    now: datetime,
) -> None:
    run, tasks = after_failure(now)
    plan = engine.rerun_failed(AFTER_FAILURE, run, tasks, now)
    # side and side_report are downstream of no reset task: kept as they ended
    assert not {"side", "side_report"} & set(plan.tasks)
    assert not {"side", "side_report"} & set(plan.edges)
    assert set(plan.tasks) == set(FAILED_EXTRACT) - {"side", "side_report"}


def test_rerun_failed_resets_a_task_skipped_because_of_the_failure(now: datetime) -> None:
    # GIVEN route, a switch that ran after extract failed, chose gap and skipped publish
    run, tasks = after_failure(now)
    # WHEN the failed tasks are rerun
    plan = engine.rerun_failed(AFTER_FAILURE, run, tasks, now)
    # THEN route, the branch it skipped and the one it chose all wait to be decided again
    assert by_id({t: plan.tasks[t] for t in ("route", "publish", "gap")}) == {
        "route": W, "publish": W, "gap": W,
    }  # fmt: skip
    assert (plan.edges["publish"], plan.edges["gap"]) == ({}, {})
    assert plan.tasks["publish"].upstream == Upstream()
    # AND a switch choosing publish this time runs it (the old skip is not kept)
    chose = {SWITCH_BRANCH_KEY: ["publish"], "case": 0}
    assert engine.edge_outcome(AFTER_FAILURE, "route", OK, chose, "publish") is OK
    assert engine.edge_outcome(AFTER_FAILURE, "route", OK, chose, "gap") is SKIPPED


def test_a_rerun_task_gets_its_retries_again(now: datetime) -> None:
    # GIVEN transform (retries: 1) failed on both its attempts
    run, tasks = make_run(OPS, FAILED_RUN, now, state=RunState.FAILED)
    tasks = [t.with_(attempt=2) if t.task_id == "transform" else t for t in tasks]
    plan = engine.rerun_failed(OPS, run, tasks, now)
    # WHEN its first attempt after the rerun (attempt 3) fails
    attempt = engine.claim(OPS, plan.tasks["transform"], now)
    assert attempt.attempt == 3
    decision = engine.on_attempt_finished(OPS, attempt, 3, failed(), now)
    # THEN it is retried, after the first retry's delay (30s default), as on its first run
    assert decision is not None
    assert decision.task.state is RETRY
    assert decision.task.ready_at == now + timedelta(seconds=30)


def test_rerun_needs_a_running_or_finished_run_with_something_to_rerun(now: datetime) -> None:
    running_run, tasks = make_run(OPS, {"extract": R}, now)
    with pytest.raises(Conflict, match="no failed or stopped task"):
        engine.rerun_failed(OPS, running_run, tasks, now)
    with pytest.raises(Conflict, match="task transform of run r is waiting: it has not run yet"):
        engine.rerun_from(OPS, running_run, tasks, "transform", now)
    for state in (RunState.PAUSED, RunState.QUEUED):
        held, held_tasks = make_run(OPS, FAILED_RUN, now, state=state)
        with pytest.raises(Conflict, match=f"is {state}; rerun needs a running or finished run"):
            engine.rerun_failed(OPS, held, held_tasks, now)
        with pytest.raises(Conflict, match="needs a running or finished run"):
            engine.rerun_from(OPS, held, held_tasks, "transform", now)
    all_ok = dict.fromkeys(FAILED_RUN, OK)
    done, tasks = make_run(OPS, all_ok, now, state=RunState.SUCCEEDED)
    with pytest.raises(Conflict, match="no failed or stopped task"):
        engine.rerun_failed(OPS, done, tasks, now)


# OPS going on after a failure (no ``on_failure: stop``)
GOES_ON = spec_of(OPS_SOURCE.replace("name: ops", "name: goes_on").replace("on_failure: stop", ""))


def test_rerun_failed_on_a_running_run_reruns_that_branch_while_the_rest_goes_on(
    now: datetime,
) -> None:
    """Airflow's *Clear* of a failed task in a running DAG run: the failed branch runs again
    now, not once the whole run has ended; report, still running, goes on."""
    # GIVEN transform failed (load never ran) while report still runs
    states = {"extract": OK, "transform": FAIL, "load": UPF, "report": R}
    run, tasks = make_run(GOES_ON, states, now)
    # WHEN its failed tasks are rerun
    plan = engine.rerun_failed(GOES_ON, run, tasks, now)
    # THEN transform is queued, load and notify wait (notify for report too), nothing is
    # killed, and the run goes on: the counters move by what the plan changed, only if the
    # tasks it resets are still as read
    assert by_id(plan.tasks) == {"transform": Q, "load": W, "notify": W}
    assert plan.kill == []
    assert plan.run.state is RunState.RUNNING
    assert plan.deltas == (-2, -1, 0)
    assert {t.task_id: t.state for t in plan.if_unchanged} == {
        "transform": FAIL, "load": UPF, "notify": W,
    }  # fmt: skip


def test_rerun_from_a_task_of_a_running_run_kills_what_runs_downstream(now: datetime) -> None:
    # GIVEN transform succeeded and load, downstream of it, runs
    states = {"extract": OK, "transform": OK, "load": R, "report": OK}
    run, tasks = make_run(GOES_ON, states, now)
    # WHEN the run is rerun from transform
    plan = engine.rerun_from(GOES_ON, run, tasks, "transform", now)
    # THEN transform is queued, load's attempt is killed and it waits again with notify
    assert by_id(plan.tasks) == {"transform": Q, "load": W, "notify": W}
    assert [(t.task_id, t.attempt) for t in plan.kill] == [("load", 1)]
    assert plan.tasks["notify"].upstream == Upstream(succeeded=1)  # report's, kept
    assert (plan.run.state, plan.deltas) == (RunState.RUNNING, (-1, 0, -1))
    # a task that runs may itself be rerun from: its attempt is killed, it is queued again
    restarted = engine.rerun_from(GOES_ON, run, tasks, "load", now)
    assert by_id(restarted.tasks) == {"load": Q, "notify": W}
    assert [t.task_id for t in restarted.kill] == ["load"]


def test_rerun_from_resets_the_task_and_everything_downstream(now: datetime) -> None:
    # GIVEN a run where everything succeeded
    run, tasks = make_run(OPS, dict.fromkeys(FAILED_RUN, OK), now, state=RunState.SUCCEEDED)
    # WHEN it is rerun from transform
    plan = engine.rerun_from(OPS, run, tasks, "transform", now)
    # THEN transform is queued, load and notify wait again, extract and report are kept
    assert by_id(plan.tasks) == {"transform": Q, "load": W, "notify": W}
    # notify's upstream counts only what is kept: report succeeded, load will report later
    assert plan.tasks["notify"].upstream == Upstream(succeeded=1)
    assert plan.edges["notify"] == {"report": OK}
    assert (plan.run.state, plan.run.n_done) == (RunState.RUNNING, 2)


def test_rerun_from_a_task_whose_parent_failed_still_runs_it(now: datetime) -> None:
    run, tasks = make_run(OPS, FAILED_RUN, now, state=RunState.FAILED)
    plan = engine.rerun_from(OPS, run, tasks, "load", now)
    assert by_id(plan.tasks) == {"load": Q, "notify": W}


def test_rerun_from_an_unknown_task_names_it(now: datetime) -> None:
    run, tasks = make_run(OPS, FAILED_RUN, now, state=RunState.FAILED)
    with pytest.raises(InvalidInput, match="unknown task 'nope'"):
        engine.rerun_from(OPS, run, tasks, "nope", now)


def test_mark_succeeded_decides_downstream_again(now: datetime) -> None:
    # GIVEN a failed run: transform failed, so load is upstream_failed
    run, tasks = make_run(OPS, FAILED_RUN, now, state=RunState.FAILED)
    # WHEN transform is marked succeeded
    plan = engine.mark(OPS, run, tasks, "transform", OK, now)
    # THEN load is ready to run, and the run runs again with no failure counted
    assert by_id(plan.tasks) == {"transform": OK, "load": Q}
    assert plan.kill == []
    assert (plan.run.state, plan.run.n_done, plan.run.n_failed) == (RunState.RUNNING, 4, 0)


def test_mark_skipped_on_a_running_task_kills_it_and_skips_what_waits(now: datetime) -> None:
    # GIVEN transform runs, load waits for it
    run, tasks = make_run(OPS, {"extract": OK, "transform": R, "report": R}, now)
    # WHEN transform is marked skipped
    plan = engine.mark(OPS, run, tasks, "transform", SKIPPED, now)
    # THEN its attempt is killed and load (all_success) is skipped; notify still waits
    assert [(t.task_id, t.attempt) for t in plan.kill] == [("transform", 1)]
    assert by_id(plan.tasks) == {"transform": SKIPPED, "load": SKIPPED, "notify": W}
    assert (plan.run.state, plan.run.n_running, plan.run.n_done) == (RunState.RUNNING, 1, 3)


def test_a_task_marked_skipped_stays_skipped_when_its_upstream_is_marked_later(
    now: datetime,
) -> None:
    """A mark is the user's decision, as one of succeeded is: marking a task upstream of a
    task marked skipped decides again only what ended because of the upstream's old state,
    not the skip (it was: `runs mark R load --state skipped`, then `runs mark R transform
    --state succeeded` ran load)."""
    # GIVEN transform runs and load, waiting for it, was marked skipped
    run, tasks = make_run(OPS, {"extract": OK, "transform": R, "report": R}, now)
    first = engine.mark(OPS, run, tasks, "load", SKIPPED, now)
    assert by_id(first.tasks) == {"load": SKIPPED, "notify": W}
    tasks = [first.tasks.get(t.task_id, t) for t in tasks]
    # WHEN transform is marked succeeded
    plan = engine.mark(OPS, first.run, tasks, "transform", OK, now)
    # THEN load is still skipped (nothing queues it), and notify still waits for report
    assert by_id(plan.tasks).get("load", SKIPPED) is SKIPPED
    assert by_id(plan.tasks).get("notify", W) is W
    # a skip its upstream made is decided again: load skipped because transform was
    skipped_run, skipped = make_run(
        OPS, {"extract": OK, "transform": SKIPPED, "load": SKIPPED, "report": R}, now
    )
    again = engine.mark(OPS, skipped_run, skipped, "transform", OK, now)
    assert by_id(again.tasks)["load"] is Q


def test_mark_the_last_task_finishes_a_running_run(now: datetime) -> None:
    run, tasks = make_run(OPS, {**FAILED_RUN, "transform": OK, "load": OK, "notify": R}, now)
    plan = engine.mark(OPS, run, tasks, "notify", OK, now)
    assert (plan.run.state, plan.run.ended_at) == (RunState.SUCCEEDED, now)


def test_mark_failed_on_a_running_task_kills_it_without_a_retry_or_a_stop(now: datetime) -> None:
    """Airflow's *Mark Failed*: the mark is the task's outcome. OPS retries each task once,
    which a mark does not do; what waits on the task follows its trigger rule (the run's
    ``on_failure: stop`` is the scheduler's, as for any failure)."""
    # GIVEN transform and report run
    run, tasks = make_run(OPS, {"extract": OK, "transform": R, "report": R}, now)
    # WHEN transform is marked failed
    plan = engine.mark(OPS, run, tasks, "transform", FAIL, now)
    # THEN its attempt is killed, it is failed (not up for retry) with the mark as its error,
    # load (all_success) is upstream_failed, and notify (all_done) still waits for report
    assert [(t.task_id, t.attempt) for t in plan.kill] == [("transform", 1)]
    assert by_id(plan.tasks) == {"transform": FAIL, "load": UPF, "notify": W}
    marked = plan.tasks["transform"]
    assert (marked.error, marked.ended_at, marked.attempt) == ("marked failed", now, 1)
    assert (plan.run.state, plan.run.n_running, plan.run.n_done, plan.run.n_failed) == (
        RunState.RUNNING, 1, 3, 1,
    )  # fmt: skip


def test_mark_failed_after_the_run_succeeded_ends_it_failed_and_keeps_what_ran(
    now: datetime,
) -> None:
    # GIVEN a run that succeeded
    done = {"extract": OK, "transform": OK, "load": OK, "report": OK, "notify": OK}
    run, tasks = make_run(OPS, done, now, state=RunState.SUCCEEDED)
    # WHEN report, upstream of notify, is marked failed
    plan = engine.mark(OPS, run, tasks, "report", FAIL, now)
    # THEN the run ends again, failed; notify, which ran, is kept (as Airflow keeps it)
    assert by_id(plan.tasks) == {"report": FAIL}
    assert (plan.run.state, plan.run.ended_at, plan.run.n_failed) == (RunState.FAILED, now, 1)


def test_mark_failed_decides_again_a_one_failed_task_that_was_skipped(now: datetime) -> None:
    spec = spec_of(
        """
        name: alerting
        tasks:
          work: {type: shell, command: x}
          alert: {type: shell, command: x, depends_on: [work], trigger_rule: one_failed}
        """
    )
    run, tasks = make_run(spec, {"work": OK, "alert": SKIPPED}, now, state=RunState.SUCCEEDED)
    plan = engine.mark(spec, run, tasks, "work", FAIL, now)
    assert by_id(plan.tasks) == {"work": FAIL, "alert": Q}  # the alert runs
    assert plan.run.state is RunState.RUNNING


def test_mark_refuses_other_states_unknown_tasks_and_no_ops(now: datetime) -> None:
    run, tasks = make_run(OPS, FAILED_RUN, now, state=RunState.FAILED)
    with pytest.raises(InvalidInput, match="succeeded, skipped or failed, not running"):
        engine.mark(OPS, run, tasks, "extract", R, now)
    with pytest.raises(Conflict, match="already failed"):
        engine.mark(OPS, run, tasks, "transform", FAIL, now)
    with pytest.raises(InvalidInput, match="unknown task 'nope'"):
        engine.mark(OPS, run, tasks, "nope", OK, now)
    with pytest.raises(Conflict, match="already succeeded"):
        engine.mark(OPS, run, tasks, "extract", OK, now)
    queued, waiting = make_run(OPS, {}, now, state=RunState.QUEUED)
    with pytest.raises(Conflict, match="is queued"):  # its start would undo the mark
        engine.mark(OPS, queued, waiting, "extract", OK, now)


# ------------------------------------------------------------------------------------------
# Decisions: a turn's writes as one value
# ------------------------------------------------------------------------------------------

CHAIN3 = spec_of(
    """
    name: c
    concurrency: 2
    tasks:
      a: {type: shell, command: x}
      b: {type: shell, command: x, depends_on: [a]}
      c: {type: shell, command: x, depends_on: [a]}
      d: {type: shell, command: x}
      e: {type: shell, command: x}
    """
)


@pytest.mark.parametrize("intent", [False, True])
def test_an_attempts_end_is_one_decision_with_its_counters(intent: bool, now: datetime) -> None:
    """GIVEN a running task with children WHEN it fails THEN one decision holds its
    transition (expecting RUNNING at that attempt) and the counter deltas; the propagation
    intent is carried only where the store needs one."""
    ti = TaskInstance("r", "a", R, attempt=1)
    made = engine.attempt_finished(CHAIN3, ti, 1, failed(), now, intent=intent)
    assert made is not None
    decision, outcome = made
    (write,) = decision.tasks
    assert (write.expect, write.expect_attempt) == (R, 1)
    assert write.task.state is FAIL
    assert outcome.task is write.task
    assert write.task.propagating is intent
    assert (decision.done, decision.failed, decision.running) == (1, 1, -1)
    assert engine.attempt_finished(CHAIN3, ti, 2, failed(), now, intent=intent) is None
    leaf = TaskInstance("r", "d", R, attempt=1)
    leaf_made = engine.attempt_finished(CHAIN3, leaf, 1, failed(), now, intent=True)
    assert leaf_made is not None
    assert not leaf_made[0].tasks[0].task.propagating  # no child to tell


def test_a_child_that_heard_moves_with_the_counters_once_its_rule_decides(now: datetime) -> None:
    parent = TaskInstance("r", "a", FAIL, attempt=1)
    child = TaskInstance("r", "b", W, upstream=Upstream(failed=1))
    decision = engine.parent_heard(CHAIN3, parent, child, now, intent=False)
    assert decision is not None
    (write,) = decision.tasks
    assert (write.task.state, write.expect, decision.done) == (UPF, W, 1)
    waiting = TaskInstance("r", "b", W)
    assert engine.parent_heard(CHAIN3, parent, waiting, now, intent=False) is None
    moved = TaskInstance("r", "b", Q, upstream=Upstream(succeeded=1))
    assert engine.parent_heard(CHAIN3, parent, moved, now, intent=False) is None


def test_claims_take_the_free_slots_and_the_running_counter(now: datetime) -> None:
    run = Run("r", "c", "default", 1, RunState.RUNNING, {}, now, now, n_running=1)
    queued = [TaskInstance("r", t, Q) for t in ("d", "e", "a")]
    (decision,) = engine.claims(CHAIN3, run, queued, now)
    assert [w.task.task_id for w in decision.tasks] == ["d"]  # concurrency 2, one running
    assert decision.tasks[0].task.state is R
    assert decision.tasks[0].expect is Q
    assert decision.running == 1
    paused = run.with_(state=RunState.PAUSED)
    assert engine.claims(CHAIN3, paused, queued, now) == []


def test_claims_take_children_made_ready_straight_from_waiting(now: datetime) -> None:
    """A child this turn made ready is claimed from WAITING, after the queued tasks: its
    write expects WAITING, so no QUEUED write comes first; one that is not ready is refused."""
    run = Run("r", "c", "default", 1, RunState.RUNNING, {}, now, now)
    ready = TaskInstance("r", "b", W, upstream=Upstream(succeeded=1))
    (decision,) = engine.claims(CHAIN3, run, [TaskInstance("r", "d", Q)], now, ready=[ready])
    assert [(w.task.task_id, w.task.state, w.task.attempt, w.expect) for w in decision.tasks] == [
        ("d", R, 1, Q),
        ("b", R, 1, W),
    ]
    assert decision.running == 2
    with pytest.raises(Conflict, match="not ready to claim"):
        engine.claims(CHAIN3, run, [], now, ready=[TaskInstance("r", "b", W)])


def test_claims_come_in_decisions_that_fit_one_transaction(now: datetime) -> None:
    wide = spec_of(
        "name: w\ntasks:\n" + "".join(f"  t{i}: {{type: shell, command: x}}\n" for i in range(150))
    )
    run = Run("r", "w", "default", 1, RunState.RUNNING, {}, now, now)
    decisions = engine.claims(wide, run, [TaskInstance("r", f"t{i}", Q) for i in range(150)], now)
    assert [len(d.tasks) for d in decisions] == [64, 64, 22]
    assert sum(d.running for d in decisions) == 150


def test_a_run_starts_with_its_roots_in_one_plan(now: datetime) -> None:
    run = Run("r", "c", "default", 1, RunState.QUEUED, {}, now, now)
    roots = [TaskInstance("r", t) for t in CHAIN3.dag.roots]
    plan = engine.start_plan(CHAIN3, run, roots, now)
    assert plan.run.state is RunState.RUNNING
    assert plan.run.started_at == now
    assert sorted(plan.tasks) == ["a", "d", "e"]
    assert all(t.state is Q for t in plan.tasks.values())


# ------------------------------------------------------------------ decisions merged per run
def _end(run_id: str, task_id: str, *, failed: int = 0) -> engine.Decision:
    ti = TaskInstance(run_id, task_id, OK, attempt=1)
    write = engine.TaskWrite(ti, R, 1)
    return engine.Decision(run_id, (write,), done=1, failed=failed, running=-1)


def test_the_ends_of_one_run_merge_into_one_decision_with_summed_counters() -> None:
    decisions = [_end("r1", "a"), _end("r2", "x"), _end("r1", "b", failed=1), _end("r1", "c")]

    merged = engine.together(decisions)

    assert [parts for _, parts in merged] == [(0, 2, 3), (1,)]
    r1 = merged[0][0]
    assert [w.task.task_id for w in r1.tasks] == ["a", "b", "c"]
    assert (r1.done, r1.failed, r1.running) == (3, 1, -3)
    assert merged[1][0] is decisions[1]  # alone: the decision itself


def test_a_duplicate_or_a_run_write_is_not_merged() -> None:
    run = Run("r1", "p", "w", 1, RunState.SUCCEEDED, {}, datetime(2026, 1, 1), datetime(2026, 1, 1))
    with_run = engine.Decision("r1", (), run=run, run_expect=RunState.RUNNING)
    decisions = [_end("r1", "a"), _end("r1", "a"), with_run, _end("r1", "b")]

    merged = engine.together(decisions)

    # the duplicate of "a" and the run write stand alone, after the merged ones
    assert [parts for _, parts in merged] == [(0, 3), (1,), (2,)]


def test_merged_decisions_stay_within_one_transaction() -> None:
    decisions = [_end("r", f"t{i}") for i in range(engine.MAX_DECISION_TASKS + 5)]

    merged = engine.together(decisions)

    assert [len(d.tasks) for d, _ in merged] == [engine.MAX_DECISION_TASKS, 5]
    assert sorted(i for _, parts in merged for i in parts) == list(range(len(decisions)))
    assert sum(d.done for d, _ in merged) == len(decisions)
