"""sql tasks on an athena connection run in the state machine, not in a Lambda that polls:
``StartAthenaQuery`` (``athena:startQueryExecution.sync`` in the template) runs the request
the dispatcher built, as the project's role (``Credentials.RoleArn`` from the input, which
the dispatcher computes from the run's project); ``ReadSqlResult`` (the project's runner)
reads the ended query's result; ``ReportOutcome`` sends it.

moto's executor cannot run ``.sync`` ("Unsupported sync callback procedure"): the e2e test
here runs the template's definition with the plain ``startQueryExecution`` substituted
(conftest), which moto ends at once; ``ReadSqlResult`` checks the query ended, so this
variant is honest about what it reads. moto ignores ``Credentials`` (it runs every state
with the test's credentials): that the state runs as the project's role is shown by the
input (below) and the IAM tests, not by moto."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
from moto.athena.models import QueryResults, athena_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api import state_manager

from stratoflow.adapters.aws import runner
from stratoflow.connections import validate_connection
from stratoflow.taskexec.sql_aws import athena_outcome
from tests.aws.conftest import ASL, Stack, attempt_spec, dispatcher_for
from tests.aws.test_sql_on_aws import lookup

ROLE = "arn:aws:iam::123456789012:role/stratoflow/stack/p-default"
EVIL = "'; DROP TABLE x; --"
LAKE = validate_connection("default", "lake", "athena", {"workgroup": "etl", "database": "raw"})
SQL = {"connection": "lake", "sql": "SELECT n FROM t WHERE r = %(r)s AND d = %(d)s AND r <> %(r)s",
       "parameters": {"r": EVIL, "d": "2026-01-01"}, "outputs": "first_row"}  # fmt: skip


def _dispatcher(stack: Stack, **kwargs: Any) -> Any:
    from tests.aws.conftest import SharedIdentity

    identity = SharedIdentity(stack.runner_function_arn, role_arn=ROLE)
    return dispatcher_for(stack, connections=lookup({"lake": LAKE}), identities=identity, **kwargs)


def test_the_branch_runs_the_query_then_reads_it_then_reports() -> None:
    states = json.loads(ASL.read_text())["States"]
    start, read = states["StartAthenaQuery"], states["ReadSqlResult"]
    with_parameters = states["StartAthenaQueryWithParameters"]
    request = {
        field + ".$": f"$.athena.request.{field}"
        for field in ("QueryString", "WorkGroup", "QueryExecutionContext", "ResultConfiguration")
    }
    assert start["Parameters"] == request  # exactly what the dispatcher built, nothing more
    assert with_parameters["Parameters"] == {
        **request, "ExecutionParameters.$": "$.athena.request.ExecutionParameters"}  # fmt: skip
    assert {k: v for k, v in with_parameters.items() if k not in ("Parameters", "Comment")} == {
        k: v for k, v in start.items() if k not in ("Parameters", "Comment")}  # fmt: skip
    assert start["Resource"] == "arn:aws:states:::athena:${AthenaStartQuery}"
    assert start["Credentials"] == {"RoleArn.$": "$$.Execution.Input.athena.role_arn"}
    assert (start["ResultPath"], start["Next"]) == ("$.query", "ReadSqlResult")
    catches = {c["ErrorEquals"][0]: c["Next"] for c in start["Catch"]}
    assert catches == {"States.Timeout": "ReportTimedOut", "States.ALL": "ReportFailed"}
    assert read["Parameters"] == {"FunctionName.$": "$.runner_function", "Payload.$": "$"}
    assert read["Next"] == "ReportOutcome"
    route = states["Route"]["Choices"]
    athena = [i for i, c in enumerate(route) if str(c.get("Next")).startswith("StartAthena")]
    runner_first = [i for i, c in enumerate(route) if c.get("Next") == "RunOnLambdaRunner"]
    assert athena
    assert athena[0] < runner_first[0]  # an sql task also carries runner: lambda


def test_the_dispatcher_builds_the_query_with_positional_parameters_and_the_projects_role(
    stack: Stack,
) -> None:
    off = _dispatcher(stack, athena_on_state_machine=False)
    assert "athena" not in off.build_input(attempt_spec("sql", SQL))
    dispatcher = _dispatcher(stack, athena_on_state_machine=True)
    doc = dispatcher.build_input(attempt_spec("sql", SQL))
    request = doc["athena"]["request"]
    assert request["QueryString"] == "SELECT n FROM t WHERE r = ? AND d = ? AND r <> ?"
    assert request["ExecutionParameters"] == ["'''; DROP TABLE x; --'", "'2026-01-01'", "'''; DROP TABLE x; --'"]  # fmt: skip
    assert EVIL not in request["QueryString"]
    assert request["WorkGroup"] == "etl"
    assert request["QueryExecutionContext"] == {"Database": "raw", "Catalog": "AwsDataCatalog"}
    out = request["ResultConfiguration"]["OutputLocation"]
    assert out == f"s3://{stack.bucket}/athena/default/"
    assert doc["athena"]["role_arn"] == ROLE
    assert not dispatcher.fits_express(doc)  # .sync: Standard only
    # no Lambda waits on the query: up to SQL_STATE_MACHINE_MAX_SECONDS, not 15 minutes
    assert doc["timeout_seconds"] == 6 * 3600
    long = dispatcher.build_input(attempt_spec("sql", SQL, timeout=timedelta(hours=2)))
    assert long["timeout_seconds"] == 7200
    # the role comes from the run's project: a task field naming another role changes nothing
    forged = {**SQL, "role_arn": "arn:aws:iam::123456789012:role/stratoflow/stack/p-other",
              "athena": {"role_arn": "x"}}  # fmt: skip
    assert _dispatcher(stack, athena_on_state_machine=True).build_input(
        attempt_spec("sql", forged))["athena"]["role_arn"] == ROLE  # fmt: skip
    # left to the runner: sql_file (an athena connection cannot hold a secret reference)
    assert "athena" not in dispatcher.build_input(
        attempt_spec("sql", {"connection": "lake", "sql_file": "q.sql"}))  # fmt: skip
    plain = dispatcher.build_input(attempt_spec("sql", {"connection": "lake", "sql": "SELECT 1"}))
    assert "ExecutionParameters" not in plain["athena"]["request"]


def _queue(region: str, values: list[str]) -> None:
    header = {"Data": [{"VarCharValue": "n"}]}
    rows = [{"Data": [{"VarCharValue": v}]} for v in values]
    athena_backends[DEFAULT_ACCOUNT_ID][region].query_results_queue.append(
        QueryResults([header, *rows], [{"Name": "n", "Type": "bigint"}])
    )


def test_the_athena_attempt_runs_in_four_transitions_and_reports_the_first_row(
    stack: Stack,
) -> None:
    athena = boto3.client("athena", region_name=stack.sfn.meta.region_name)
    stack.lambdas["stratoflow-runner"] = lambda event: runner.handle(
        event, lambda: 60.0, s3=stack.s3, athena_client=athena
    )
    athena.create_work_group(Name="etl")
    _queue(stack.sfn.meta.region_name, ["42", "43"])
    spec = attempt_spec("sql", SQL)
    _dispatcher(stack, athena_on_state_machine=True).dispatch(spec)
    outcome = stack.receive()
    assert outcome["status"] == "succeeded", outcome["error"]
    [execution] = athena_backends[DEFAULT_ACCOUNT_ID][
        stack.sfn.meta.region_name
    ].executions.values()
    assert outcome["outputs"] == {"n": "42", "row_count": 2, "query_id": execution.id}
    assert execution.query == "SELECT n FROM t WHERE r = ? AND d = ? AND r <> ?"
    assert execution.workgroup.name == "etl"
    [run] = stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    assert stack.states_entered(run["executionArn"]) == [
        "Route", "StartAthenaQueryWithParameters", "ReadSqlResult", "ReportOutcome"]  # fmt: skip
    # the attempt's log, as the runner path writes one: the query id and the row count
    assert outcome["log"] == f"s3://{stack.bucket}/logs/default/{spec.run_id}/{spec.task_id}/1.log"
    text = stack.read_s3(outcome["log"])
    assert f"query_id={execution.id}\n" in text
    assert "state=SUCCEEDED\n" in text
    assert "row_count=2\n" in text
    assert EVIL not in text  # the parameters are not logged


def test_the_result_reader_fails_and_stops_a_query_that_has_not_ended(stack: Stack) -> None:
    region = stack.sfn.meta.region_name
    athena = boto3.client("athena", region_name=region)
    _queue(region, ["1"])
    qid = athena.start_query_execution(QueryString="SELECT 1", WorkGroup="primary")[
        "QueryExecutionId"
    ]
    execution = athena_backends[DEFAULT_ACCOUNT_ID][region].executions[qid]
    attempt = {"task": {"outputs": "rows"}, "athena": {}, "query": {"QueryExecutionId": qid}}
    # the query never ends by itself: moto moves it on only when asked 1,000 times
    state_manager.set_transition("athena::execution", {"progression": "manual", "times": 1000})
    try:
        execution.status = "RUNNING"
        got = runner.handle(attempt, lambda: 60.0, s3=stack.s3, athena_client=athena)
    finally:
        state_manager.unset_transition("athena::execution")
    assert got["status"] == "failed"
    assert f"Athena query {qid} had not ended (RUNNING)" in got["error"]
    assert execution.status == "CANCELLED"  # stopped on the service, nothing left running
    execution.status = "FAILED"
    got = runner.handle(attempt, lambda: 60.0, s3=stack.s3, athena_client=athena)
    assert got["status"] == "failed"
    assert got["error"].startswith(f"Athena query {qid} failed")
    execution.status = "SUCCEEDED"  # .sync's result shape: the final GetQueryExecution
    rows = athena_outcome(athena, {"QueryExecution": {"QueryExecutionId": qid}}, "rows")
    assert rows == {"rows": [{"n": "1"}], "row_count": 1, "query_id": qid}
