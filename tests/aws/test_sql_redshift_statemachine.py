"""sql tasks on a redshift-data connection run in the state machine's loop, not in a Lambda
that waits: ``StartRedshiftStatement`` (the project's runner calls ``ExecuteStatement`` and
returns), then ``WaitForRedshiftStatement`` / ``PollRedshiftStatement`` (one
``DescribeStatement`` each) / ``RedshiftStatementEnded`` until the statement ends, the
deadline passes (``CancelStatement``) or the attempt is no longer wanted (``CancelStatement``).

moto's ASL executor cannot call ``aws-sdk:redshiftdata:*`` (its aws-sdk integration asks
boto3 for a client named ``redshiftdata``, which boto3 does not have), and on AWS only the
statement's owner may describe, read or cancel it (the project role's policy), so every step
is the project's runner function: the whole path runs here, on moto's executor, end to end,
with moto's Redshift Data API. moto's statements never end by themselves: the tests move
them on between polls, as Redshift would."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.redshiftdata.models import Statement, redshiftdata_backends

from stratoflow.adapters.aws import runner
from stratoflow.adapters.aws.dispatch import SQL_STATE_MACHINE_MAX_SECONDS
from stratoflow.connections import validate_connection
from stratoflow.taskexec.sql_aws import (
    MAX_POLL_SECONDS_STATE_MACHINE,
    poll_wait,
    polls_for,
    redshift_transitions,
)
from tests.aws.conftest import ASL, Stack, attempt_spec, dispatcher_for
from tests.aws.test_sql_on_aws import lookup

EVIL = "'; DROP TABLE x; --"
WH = validate_connection(
    "default", "wh", "redshift-data", {"database": "dev", "cluster_identifier": "etl"}
)
SQL = {"connection": "wh", "sql": "SELECT city FROM t WHERE name = %(name)s AND d = %(d)s",
       "parameters": {"name": EVIL, "d": "2026-01-01"}, "outputs": "first_row"}  # fmt: skip


def _dispatcher(stack: Stack, **kwargs: Any) -> Any:
    return dispatcher_for(stack, connections=lookup({"wh": WH}), **kwargs)


def _statements(stack: Stack) -> dict[str, Statement]:
    return redshiftdata_backends[DEFAULT_ACCOUNT_ID][stack.sfn.meta.region_name].statements


def _serve(
    stack: Stack,
    on_poll: Callable[[int, Statement], None] = lambda n, s: None,
    still_wanted: Callable[[], bool] | None = None,
) -> list[dict[str, Any]]:
    """The runner function, doing the loop's steps with moto's Redshift Data API; before
    poll ``n`` (1, 2, ...) ``on_poll(n, statement)`` moves the statement on. Returns the
    outcomes each step returned."""
    api = boto3.client("redshift-data", region_name=stack.sfn.meta.region_name)
    returned: list[dict[str, Any]] = []

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        previous = ((event.get("result") or {}).get("outcome") or {}).get("statement")
        if previous is not None:
            on_poll(previous["polls"] + 1, _statements(stack)[previous["id"]])
        if still_wanted is None:
            out = runner.handle(event, lambda: 60.0, s3=stack.s3, redshift_client=api)
        else:
            out = runner.redshift_step(event, api, still_wanted)
        returned.append(out)
        return out

    stack.lambdas["stratoflow-runner"] = handler
    return returned


def _entered(stack: Stack) -> list[str]:
    [run] = stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    stack.wait_execution(run["executionArn"])
    return stack.states_entered(run["executionArn"])


def _loop(polls: int) -> list[str]:
    one = ["WaitForRedshiftStatement", "PollRedshiftStatement", "RedshiftStatementEnded"]
    return ["Route", "StartRedshiftStatement", "RedshiftStatementEnded", *one * polls,
            "ReportOutcome"]  # fmt: skip


def test_the_loop_is_route_start_then_wait_poll_choice_until_the_statement_ends() -> None:
    states = json.loads(ASL.read_text())["States"]
    start, poll = states["StartRedshiftStatement"], states["PollRedshiftStatement"]
    for step in (start, poll):
        assert step["Resource"] == "arn:aws:states:::lambda:invoke"
        assert step["Parameters"] == {"FunctionName.$": "$.runner_function", "Payload.$": "$"}
        assert step["ResultSelector"] == {"outcome.$": "$.Payload"}
        assert step["ResultPath"] == "$.result"
        assert "Credentials" not in step  # the runner is the project's role already
        assert step["TimeoutSeconds"] <= 60  # a short step: nothing in it waits
        assert step["Next"] == "RedshiftStatementEnded"
        assert [c["Next"] for c in step["Catch"]] == ["ReportFailed"]
    ended = states["RedshiftStatementEnded"]
    assert ended["Choices"] == [{"Variable": "$.result.outcome.status",
                                 "StringEquals": "running", "Next": "WaitForRedshiftStatement"}]  # fmt: skip
    assert ended["Default"] == "ReportOutcome"
    wait = states["WaitForRedshiftStatement"]
    assert (wait["SecondsPath"], wait["Next"]) == (
        "$.result.outcome.statement.wait_seconds", "PollRedshiftStatement")  # fmt: skip
    route = states["Route"]["Choices"]
    redshift = [i for i, c in enumerate(route) if "Redshift" in str(c.get("Next"))]
    runner_first = [i for i, c in enumerate(route) if c.get("Next") == "RunOnLambdaRunner"]
    assert len(redshift) == 2  # with and without a retry delay
    assert route[redshift[0]]["Next"] == "Wait_StartRedshiftStatement"
    assert max(redshift) < runner_first[0]  # an sql task also carries runner: lambda
    assert states["Wait_StartRedshiftStatement"]["Next"] == "StartRedshiftStatement"


def test_the_polls_and_transitions_of_a_statement_are_bounded_by_its_duration() -> None:
    assert [poll_wait(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert MAX_POLL_SECONDS_STATE_MACHINE == 30
    for seconds, polls in ((0, 1), (1, 1), (3, 2), (10, 4), (31, 5), (60, 6), (600, 24),
                           (900, 34), (3600, 124)):  # fmt: skip
        assert polls_for(seconds) == polls, seconds
        assert redshift_transitions(seconds) == 4 + 3 * polls
    # the closed form the docs state: at most 5 + ceil((D - 31) / 30) polls past 31 s
    for seconds in range(32, 5000, 7):
        assert polls_for(seconds) == 5 + -(-(seconds - 31) // 30), seconds


def test_the_dispatcher_marks_the_loop_with_its_bound_and_leaves_the_rest_to_the_runner(
    stack: Stack,
) -> None:
    dispatcher = _dispatcher(stack)
    doc = dispatcher.build_input(attempt_spec("sql", SQL, timeout=timedelta(seconds=600)))
    assert doc["redshift"] == {"max_polls": polls_for(600) + 1}
    assert "athena" not in doc
    assert doc["runner_function"] == stack.runner_function_arn
    # no Lambda waits: the timeout is not capped at Lambda's 15 minutes
    hours = dispatcher.build_input(attempt_spec("sql", SQL, timeout=timedelta(hours=2)))
    assert hours["timeout_seconds"] == 7200
    assert hours["redshift"] == {"max_polls": polls_for(7200) + 1}
    untimed = dispatcher.build_input(attempt_spec("sql", SQL))
    assert untimed["timeout_seconds"] == SQL_STATE_MACHINE_MAX_SECONDS == 6 * 3600
    assert untimed["redshift"]["max_polls"] == 725  # 5 + ceil((21600 - 31) / 30), + 1
    off = _dispatcher(stack, redshift_on_state_machine=False)
    assert "redshift" not in off.build_input(attempt_spec("sql", SQL))
    # left to the runner (it waits): sql_file, and a secret reference (only it resolves them)
    for fields in ({"connection": "wh", "sql_file": "q.sql"},
                   {**SQL, "parameters": {"name": "{{ secrets.pw_name }}", "d": "x"}}):  # fmt: skip
        on_runner = dispatcher.build_input(attempt_spec("sql", fields))
        assert "redshift" not in on_runner
        assert on_runner["timeout_seconds"] == 900  # the runner function's limit


def test_a_statement_that_finishes_is_read_and_reported_in_4_plus_3_per_poll(stack: Stack) -> None:
    def on_poll(n: int, statement: Statement) -> None:
        if n == 2:  # running at the first poll, finished at the second
            statement.status, statement.has_result_set = "FINISHED", True

    steps = _serve(stack, on_poll)
    _dispatcher(stack).dispatch(attempt_spec("sql", SQL))
    outcome = stack.receive()
    assert outcome["status"] == "succeeded", outcome["error"]
    [statement] = _statements(stack).values()
    # moto's fixed result: its first row, and the statement id
    assert outcome["outputs"] == {"Number": "10", "Street": "Alpha st", "City": "Vancouver",
                                  "row_count": 3, "query_id": statement.id}  # fmt: skip
    assert statement.query_string == "SELECT city FROM t WHERE name = :name AND d = :d"
    assert statement.query_parameters == [{"name": "name", "value": EVIL},
                                          {"name": "d", "value": "2026-01-01"}]  # fmt: skip
    assert EVIL not in statement.query_string  # bound, never pasted
    assert statement.cluster_identifier == "etl"
    assert _entered(stack) == _loop(2)
    assert len(_loop(2)) == redshift_transitions(3) == 10  # waited 1 + 2 s
    assert [s["statement"]["wait_seconds"] for s in steps if s["status"] == "running"] == [1, 2]
    # the attempt's log, as the runner path writes one: the statement id and the row count
    spec = attempt_spec("sql", SQL)
    assert outcome["log"] == f"s3://{stack.bucket}/logs/default/{spec.run_id}/{spec.task_id}/1.log"
    text = stack.read_s3(outcome["log"])
    assert f"query_id={statement.id}\n" in text
    assert "state=FINISHED\n" in text
    assert "row_count=3\n" in text


def test_a_statement_that_fails_fails_the_attempt(stack: Stack) -> None:
    def on_poll(n: int, statement: Statement) -> None:
        statement.status = "FAILED"

    _serve(stack, on_poll)
    _dispatcher(stack).dispatch(attempt_spec("sql", SQL))
    outcome = stack.receive()
    [statement] = _statements(stack).values()
    assert outcome["status"] == "failed"
    assert outcome["error"].startswith(f"Redshift statement {statement.id} failed")
    assert outcome["outputs"] == {"query_id": statement.id}
    text = stack.read_s3(outcome["log"])
    assert f"query_id={statement.id}\nstate=FAILED\nstatus=failed\nerror: " in text
    assert _entered(stack) == _loop(1)


def test_a_statement_past_the_timeout_is_cancelled_and_the_attempt_timed_out(
    stack: Stack,
) -> None:
    _serve(stack)  # it never ends by itself
    _dispatcher(stack).dispatch(attempt_spec("sql", SQL, timeout=timedelta(seconds=2)))
    outcome = stack.receive()
    [statement] = _statements(stack).values()
    assert outcome["status"] == "timed_out"
    assert outcome["error"].startswith(f"timed out after 2 s (Redshift statement {statement.id}")
    assert "cancelled" in outcome["error"]
    assert statement.status == "ABORTED"  # cancelled on the service, nothing left running
    entered = _entered(stack)
    assert entered[-1] == "ReportOutcome"
    assert entered.count("PollRedshiftStatement") <= 3  # 1 s, then the 1 s left


def test_a_stop_reaches_the_loop_which_cancels_the_statement(stack: Stack) -> None:
    """``kill`` leaves a running loop alone (stopping its execution would leave the statement
    running on Redshift): its next poll finds the attempt no longer wanted (the store, read as
    the project's role), cancels the statement and reports ``stopped``."""
    wanted = threading.Event()
    wanted.set()
    polled = threading.Event()

    def on_poll(n: int, statement: Statement) -> None:
        polled.set()

    _serve(stack, on_poll, still_wanted=wanted.is_set)
    dispatcher = _dispatcher(stack)
    spec = attempt_spec("sql", SQL)
    dispatcher.dispatch(spec)
    assert polled.wait(30)
    arn = dispatcher.execution_arn(spec.run_id, spec.task_id, spec.attempt)
    wanted.clear()  # the run was stopped: the store no longer holds this attempt running
    dispatcher.kill(spec.run_id, spec.task_id, spec.attempt)
    assert stack.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    outcome = stack.receive()
    [statement] = _statements(stack).values()
    assert outcome["status"] == "stopped"
    assert f"Redshift statement {statement.id} cancelled" in outcome["error"]
    assert statement.status == "ABORTED"
    assert stack.wait_execution(arn)["status"] == "SUCCEEDED"


def test_a_stop_during_the_retry_delay_starts_no_statement(stack: Stack) -> None:
    api = boto3.client("redshift-data", region_name=stack.sfn.meta.region_name)
    doc = _dispatcher(stack).build_input(attempt_spec("sql", SQL))
    assert runner.redshift_step(doc, api, lambda: False)["status"] == "stopped"
    assert _statements(stack) == {}
    with pytest.raises(runner.AttemptInputError, match="max_polls"):
        runner.redshift_step({**doc, "redshift": {}}, api)
    # the poll bound holds even if the clock never reaches the deadline
    started = runner.redshift_step(doc, api, now=lambda: 0.0)
    last = {**doc, "redshift": {"max_polls": 1}, "result": {"outcome": started}}
    assert runner.redshift_step(last, api, now=lambda: 0.0)["status"] == "timed_out"
