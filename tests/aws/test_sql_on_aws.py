"""sql tasks on AWS: the dispatcher sends them to the project's runner with the named
connection (its credentials as references), refuses one whose connection is missing (naming
it) or when the stack gives it no connections; the runner (called directly, S3 on moto)
resolves the password as the project's role and runs the query on the real PostgreSQL, also
through the state machine on moto's executor; its timeout cancels the query on the server."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from stratoflow.adapters.aws import runner
from stratoflow.adapters.aws.dispatch import StepFunctionsDispatcher
from stratoflow.connections import Connection, MissingConnection, validate_connection
from stratoflow.secrets import SecretSource
from tests.aws.conftest import Stack, attempt_spec, dispatcher_for
from tests.aws.test_runner import BUCKET, attempt, log_text, s3  # noqa: F401 - s3: a fixture
from tests.sql.conftest import pg_db  # noqa: F401 - a fixture, used through request

PASSWORD = "pw-7f3a-CANARY"


class Source(SecretSource):
    def get(self, project: str, name: str) -> str | None:
        return PASSWORD if (project, name) == ("default", "wh_pw") else None


def lookup(connections: dict[str, Connection]) -> Any:
    def find(project: str, name: str) -> Connection:
        if name not in connections:
            raise MissingConnection(project, name)
        return connections[name]

    return find


SQL = {"connection": "wh", "sql": "SELECT %(n)s::int * 2 AS doubled", "parameters": {"n": 21},
       "outputs": "first_row"}  # fmt: skip


def test_the_dispatcher_sends_sql_tasks_to_the_runner_with_the_connection(stack: Stack) -> None:
    none = StepFunctionsDispatcher(stack.state_machine_arn, client=stack.sfn)
    assert "do not run on this stack yet" in (none.refusal(attempt_spec("sql", SQL)) or "")
    wh = validate_connection("default", "wh", "postgresql", {
        "url": "postgresql://etl@db.example:5432/dw", "password": "{{ secrets.wh_pw }}"})  # fmt: skip
    dispatcher = dispatcher_for(stack, connections=lookup({"wh": wh}))
    missing = dispatcher.refusal(attempt_spec("sql", {**SQL, "connection": "gone"}))
    assert missing is not None
    assert "connection 'gone' is not defined in project 'default'" in missing
    spec = attempt_spec("sql", SQL)
    assert dispatcher.refusal(spec) is None
    doc = dispatcher.build_input(spec)
    assert doc["runner"] == "lambda"
    assert doc["task"]["__connection"] == {"type": "postgresql", "settings": dict(wh.settings)}
    assert doc["runner_function"] == stack.runner_function_arn
    assert PASSWORD not in repr(doc)  # a reference travels, never the value
    dispatcher.dispatch(spec)  # the state machine takes it (its runner path, as python's)
    [execution] = stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    assert execution["name"].startswith("wf-20260101T000000-abc123")


def test_the_runner_runs_the_query_with_the_resolved_password(
    s3: Any,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    url = request.getfixturevalue("pg_db")
    settings = {"url": url, "password": "{{ secrets.wh_pw }}"}  # trust auth takes any
    task = {**SQL, "__connection": {"type": "postgresql", "settings": settings}}
    outcome = runner.handle(attempt("sql", task), lambda: 900.0, s3=s3, secrets=Source())
    assert outcome["status"] == "succeeded", outcome
    assert outcome["outputs"] == {"doubled": "42", "row_count": 1}
    text = log_text(s3)
    assert "row_count=1" in text
    assert PASSWORD not in text
    # a secret that is not set fails the attempt naming it, before anything runs
    unset = {**task, "__connection": {"type": "postgresql",
                                      "settings": {"url": url, "password": "{{ secrets.nope }}"}}}  # fmt: skip
    failed = runner.handle(attempt("sql", unset), lambda: 900.0, s3=s3, secrets=Source())
    assert failed["status"] == "failed"
    assert "secret 'nope' is not set" in failed["error"]


def test_the_runners_timeout_cancels_the_query_on_the_server(
    s3: Any,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    url = request.getfixturevalue("pg_db")
    task = {"connection": "wh", "sql": "SELECT pg_sleep(60) /* sf-aws-marker */",
            "outputs": "none", "__connection": {"type": "postgresql", "settings": {"url": url}}}  # fmt: skip
    started = time.monotonic()
    outcome = runner.handle(attempt("sql", task, timeout=6), None, s3=s3)
    assert outcome["status"] == "timed_out"
    assert time.monotonic() - started < 15
    with psycopg.connect(url, autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%sf-aws-marker%' "
            "AND pid <> pg_backend_pid()"
        ).fetchone()
    assert left == (0,)
    assert "cancelling the query on the server" in log_text(s3)


def test_athena_results_go_under_the_projects_prefix_unless_the_connection_names_one(
    stack: Stack,
) -> None:
    """A project's role may write Athena results under athena/<project>/ of the stack's bucket
    only (tests/infra/test_escalation.py): an Athena connection that names no output
    location gets that one; one that names its own keeps it."""
    lake = validate_connection("default", "lake", "athena", {"workgroup": "etl", "database": "raw"})
    own = validate_connection("default", "own", "athena", {
        "workgroup": "etl", "database": "raw", "output_location": "s3://mine/q/"})  # fmt: skip
    dispatcher = dispatcher_for(stack, connections=lookup({"lake": lake, "own": own}))
    assert dispatcher.bucket
    doc = dispatcher.build_input(attempt_spec("sql", {**SQL, "connection": "lake"}))
    settings = doc["task"]["__connection"]["settings"]
    assert settings["output_location"] == f"s3://{dispatcher.bucket}/athena/default/"
    assert settings["workgroup"] == "etl"
    doc = dispatcher.build_input(attempt_spec("sql", {**SQL, "connection": "own"}))
    assert doc["task"]["__connection"]["settings"]["output_location"] == "s3://mine/q/"


def test_a_postgresql_query_runs_through_the_state_machine_on_the_runner(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    """The runner path end to end on moto's executor: the dispatcher sends the task with its
    connection to the runner state, the runner (its task process) runs the statement on the
    real PostgreSQL with the parameter bound, and the outcome comes back as the attempt's
    result. (The RDS Data API takes this path too; its driver is on moto in
    tests/sql/test_sql_aws.py: the runner's task process is out of reach of moto's in-process
    mock.)"""
    url = request.getfixturevalue("pg_db")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE victims (name text); INSERT INTO victims VALUES ('alice')")
    stack.lambdas["stratoflow-runner"] = lambda event: runner.handle(
        event, lambda: 60.0, s3=stack.s3
    )
    wh = validate_connection("default", "wh", "postgresql", {"url": url})
    evil = "'; DROP TABLE victims; --"
    spec = attempt_spec("sql", {"connection": "wh", "outputs": "first_row",
                                "sql": "SELECT count(*) AS n FROM victims WHERE name <> %(who)s",
                                "parameters": {"who": evil}})  # fmt: skip
    dispatcher_for(stack, connections=lookup({"wh": wh})).dispatch(spec)
    outcome = stack.receive()
    assert outcome["status"] == "succeeded", outcome["error"]
    assert outcome["outputs"] == {"n": "1", "row_count": 1}
    with psycopg.connect(url, autocommit=True) as conn:  # bound: the table is still there
        assert conn.execute("SELECT count(*) FROM victims").fetchone() == (1,)
    [run] = stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    assert stack.states_entered(run["executionArn"]) == [
        "Route", "RunOnLambdaRunner", "ReportOutcome"]  # fmt: skip
