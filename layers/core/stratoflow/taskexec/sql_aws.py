"""The AWS connection types of ``type: sql``: Amazon Athena, Amazon Redshift through the
Redshift Data API, Amazon Aurora through the RDS Data API. Each is a :class:`~.sql.Driver`
over boto3 with the credentials of where it runs (on AWS, the project's role).

- **Parameters** stay apart from the SQL: ``%(name)s`` becomes the service's own placeholder
  (Athena's ``?`` with ``ExecutionParameters``, each a quoted literal the service parses as one
  value; ``:name`` with ``Parameters`` for the Redshift Data and RDS Data APIs) and ``%%`` a
  ``%``. A script of several statements goes to the Redshift Data API as a batch; Athena and
  the RDS Data API take one statement.
- **Waiting** (Athena, Redshift Data) is a bounded loop: it polls with a growing pause (at
  most ``MAX_POLL_SECONDS``) until the query ends or ``cancel`` is called, which stops it on
  the service (``StopQueryExecution``, ``CancelStatement``). The RDS Data API answers in the
  call itself (at most 45 s): nothing to wait for, and nothing to cancel.
- **The query id** (Athena's execution id, the Redshift statement id) is ``query_id``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from stratoflow.taskexec.sql import Driver, Result, SqlFailed

MAX_POLL_SECONDS = 2.0
_PLACEHOLDER = re.compile(r"%\((?P<name>[A-Za-z_][A-Za-z0-9_]*)\)s|%%")


def placeholders(
    sql: str, parameters: Mapping[str, Any] | None, style: str
) -> tuple[str, list[str]]:
    """``sql`` with ``%(name)s`` written in ``style`` (``qmark``: ``?``; ``named``: ``:name``)
    and the parameter names in the order they appear. Without parameters the SQL is as
    written (``%`` included). A name not given fails, naming it."""
    if not parameters:
        return sql, []
    order: list[str] = []

    def one(match: re.Match[str]) -> str:
        name = match.group("name")
        if name is None:
            return "%"
        if name not in parameters:
            raise SqlFailed(f"the SQL uses %({name})s but parameters has no {name!r}")
        order.append(name)
        return "?" if style == "qmark" else f":{name}"

    return _PLACEHOLDER.sub(one, sql), order


def _client(service: str, settings: Mapping[str, str]) -> Any:
    import boto3  # imported here: only the AWS connection types need it

    region = settings.get("region") or None
    return boto3.client(service, region_name=region)  # type: ignore[call-overload]


class _Polling(Driver):
    """A driver that starts a query and polls until it ends; ``cancel`` stops it."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self.query_id: str | None = None

    def _wait(self, state: Any) -> str:
        pause = 0.1
        while True:
            status = state()
            if status in ("SUCCEEDED", "FINISHED", "FAILED", "CANCELLED", "ABORTED"):
                return str(status)
            if self._cancelled.wait(pause):
                return "CANCELLED"
            pause = min(pause * 2, MAX_POLL_SECONDS)

    def close(self) -> None:
        pass


def _literal(value: Any) -> str:
    """A parameter as the Athena literal it stands for (parsed by Athena as one value)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def athena_request(
    sql: str, parameters: Mapping[str, Any] | None, settings: Mapping[str, str]
) -> dict[str, Any]:
    """The ``StartQueryExecution`` request of ``sql`` on an athena connection: ``%(name)s``
    as ``?`` with ``ExecutionParameters`` in the order they appear (each a literal Athena
    parses as one value: never pasted into the SQL). The same for the runner's driver and for
    the state machine's ``StartAthenaQuery`` (built by the dispatcher)."""
    text, order = placeholders(sql, parameters, "qmark")
    request: dict[str, Any] = {
        "QueryString": text,
        "WorkGroup": settings.get("workgroup") or "primary",
        "QueryExecutionContext": {
            "Database": settings["database"],
            "Catalog": settings.get("catalog") or "AwsDataCatalog",
        },
    }
    if settings.get("output_location"):
        request["ResultConfiguration"] = {"OutputLocation": settings["output_location"]}
    if order:
        request["ExecutionParameters"] = [_literal(parameters[n]) for n in order]  # type: ignore[index]
    return request


def athena_results(athena: Any, query_id: str, keep: int) -> Result:
    """The result of the ended query ``query_id``: its columns, at most ``keep`` rows (pages
    read only while more are wanted: a query that returned millions of rows costs one page
    for first_row) and its row count."""
    columns: list[str] = []
    rows: list[tuple[Any, ...]] = []
    count = 0
    first = True
    kwargs: dict[str, Any] = {"QueryExecutionId": query_id, "MaxResults": 1000}
    while True:
        page = athena.get_query_results(**kwargs)
        if not columns:
            columns = [c["Name"] for c in page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]]
        for raw in page["ResultSet"].get("Rows", []):
            values = tuple(d.get("VarCharValue") for d in raw.get("Data", []))
            if first and columns and list(values) == columns:
                first = False  # a SELECT's first row repeats the header
                continue
            first = False
            count += 1
            if len(rows) < keep:
                rows.append(values)
        if page.get("UpdateCount"):
            count = int(page["UpdateCount"])
        token = page.get("NextToken")
        if not token or (len(rows) >= keep and keep <= 1):
            break
        kwargs["NextToken"] = token
    return Result(columns, rows, count, 1)


class AthenaDriver(_Polling):
    def __init__(self, settings: Mapping[str, str]) -> None:
        super().__init__()
        self._settings = settings
        self._athena = _client("athena", settings)

    def run(self, sql: str, parameters: Mapping[str, Any] | None, keep: int) -> Result:
        request = athena_request(sql, parameters, self._settings)
        self.query_id = self._athena.start_query_execution(**request)["QueryExecutionId"]
        final: dict[str, Any] = {}

        def state() -> str:
            found = self._athena.get_query_execution(QueryExecutionId=self.query_id)
            final.update(found["QueryExecution"]["Status"])
            return str(final["State"])

        status = self._wait(state)
        if status != "SUCCEEDED":
            reason = final.get("StateChangeReason") or status.lower()
            raise SqlFailed(f"Athena query {self.query_id} {status.lower()}: {reason}")
        return athena_results(self._athena, str(self.query_id), keep)

    def cancel(self) -> None:
        self._cancelled.set()
        if self.query_id is not None:
            self._athena.stop_query_execution(QueryExecutionId=self.query_id)


def _field(cell: Mapping[str, Any]) -> Any:
    if cell.get("isNull"):
        return None
    for key in ("stringValue", "longValue", "doubleValue", "booleanValue"):
        if key in cell:
            return cell[key]
    if "blobValue" in cell:
        return bytes(cell["blobValue"])
    if "arrayValue" in cell:
        return str(cell["arrayValue"])
    return None


def redshift_request(
    sql: str, parameters: Mapping[str, Any] | None, settings: Mapping[str, str]
) -> dict[str, Any]:
    """The ``ExecuteStatement`` request of ``sql`` on a redshift-data connection: ``%(name)s``
    as ``:name`` with ``Parameters`` (never pasted into the SQL), the connection's database,
    cluster or serverless workgroup, user and secret. The same for the runner's driver and
    for the state machine's Redshift loop (``StartRedshiftStatement``)."""
    text, order = placeholders(sql, parameters, "named")
    request: dict[str, Any] = {"Sql": text, "Database": settings["database"]}
    for setting, field in (
        ("cluster_identifier", "ClusterIdentifier"),
        ("workgroup_name", "WorkgroupName"),
        ("db_user", "DbUser"),
        ("secret_arn", "SecretArn"),
    ):
        if settings.get(setting):
            request[field] = settings[setting]
    if order:
        request["Parameters"] = [
            {"name": n, "value": "" if parameters[n] is None else str(parameters[n])}  # type: ignore[index]
            for n in dict.fromkeys(order)
        ]
    return request


REDSHIFT_ENDED = ("FINISHED", "FAILED", "ABORTED")


def redshift_failure(statement_id: str, described: Mapping[str, Any]) -> SqlFailed | None:
    """None when the ended statement ``described`` (``DescribeStatement``) finished, else
    the failure to report."""
    status = str(described.get("Status"))
    if status in ("FINISHED", "SUCCEEDED"):
        return None
    reason = described.get("Error") or status.lower()
    return SqlFailed(f"Redshift statement {statement_id} {status.lower()}: {reason}")


def redshift_results(
    api: Any, statement_id: str, described: Mapping[str, Any], keep: int
) -> Result:
    """The result of the finished statement ``statement_id`` (``described``: its
    ``DescribeStatement``): its columns, at most ``keep`` rows and its row count."""
    if not described.get("HasResultSet"):
        return Result([], [], max(int(described.get("ResultRows") or 0), 0), 1)
    columns: list[str] = []
    rows: list[tuple[Any, ...]] = []
    count = 0
    kwargs: dict[str, Any] = {"Id": statement_id}
    while True:
        page = api.get_statement_result(**kwargs)
        if not columns:
            columns = [c.get("name") or c.get("label") or "" for c in page["ColumnMetadata"]]
        for record in page.get("Records", []):
            count += 1
            if len(rows) < keep:
                rows.append(tuple(_field(c) for c in record))
        token = page.get("NextToken")
        if not token or (len(rows) >= keep and keep <= 1):
            break
        kwargs["NextToken"] = token
    return Result(columns, rows, int(page.get("TotalNumRows") or count), 1)


class RedshiftDataDriver(_Polling):
    def __init__(self, settings: Mapping[str, str]) -> None:
        super().__init__()
        self._settings = settings
        self._api = _client("redshift-data", settings)

    def run(self, sql: str, parameters: Mapping[str, Any] | None, keep: int) -> Result:
        started = self._api.execute_statement(**redshift_request(sql, parameters, self._settings))
        self.query_id = str(started["Id"])
        final: dict[str, Any] = {}

        def state() -> str:
            final.update(self._api.describe_statement(Id=self.query_id))
            return str(final["Status"])

        status = self._wait(state)
        if status == "CANCELLED":  # cancel() was called
            final["Status"] = status
        failure = redshift_failure(self.query_id, final)
        if failure is not None:
            raise failure
        return redshift_results(self._api, self.query_id, final, keep)

    def cancel(self) -> None:
        self._cancelled.set()
        if self.query_id is not None:
            self._api.cancel_statement(Id=self.query_id)


def _typed(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {"name": name, "value": {"isNull": True}}
    if isinstance(value, bool):
        return {"name": name, "value": {"booleanValue": value}}
    if isinstance(value, int):
        return {"name": name, "value": {"longValue": value}}
    if isinstance(value, float):
        return {"name": name, "value": {"doubleValue": value}}
    return {"name": name, "value": {"stringValue": str(value)}}


class AuroraDataApiDriver(Driver):
    query_id = None

    def __init__(self, settings: Mapping[str, str]) -> None:
        self._settings = settings
        self._api = _client("rds-data", settings)

    def run(self, sql: str, parameters: Mapping[str, Any] | None, keep: int) -> Result:
        text, order = placeholders(sql, parameters, "named")
        request: dict[str, Any] = {
            "resourceArn": self._settings["resource_arn"],
            "secretArn": self._settings["secret_arn"],
            "sql": text,
            "includeResultMetadata": True,
        }
        if self._settings.get("database"):
            request["database"] = self._settings["database"]
        if order:
            request["parameters"] = [_typed(n, parameters[n]) for n in dict.fromkeys(order)]  # type: ignore[index]
        answer = self._api.execute_statement(**request)
        records = answer.get("records")
        if records is None:
            return Result([], [], int(answer.get("numberOfRecordsUpdated") or 0), 1)
        columns = [c.get("label") or c.get("name") or "" for c in answer.get("columnMetadata", [])]
        rows = [tuple(_field(c) for c in r) for r in records[:keep]]
        return Result(columns, rows, len(records), 1)

    def cancel(self) -> None:
        """The Data API has no cancel: the call ends within its own 45 s limit."""

    def close(self) -> None:
        pass


DRIVERS: Mapping[str, type[Driver]] = {
    "athena": AthenaDriver,
    "redshift-data": RedshiftDataDriver,
    "aurora-data-api": AuroraDataApiDriver,
}


def open_aws_driver(kind: str, settings: Mapping[str, str]) -> Driver:
    driver = DRIVERS.get(kind)
    if driver is None:
        raise SqlFailed(f"unknown connection type {kind!r}")
    return driver(settings)  # type: ignore[call-arg]


ENDED = ("SUCCEEDED", "FAILED", "CANCELLED")

# The state machine's Redshift loop (statemachines/task_attempt.asl.json): between two polls
# it waits 1, 2, 4, 8, 16 s, then 30 s each (never past the attempt's deadline)
FIRST_POLL_SECONDS = 1
MAX_POLL_SECONDS_STATE_MACHINE = 30


def poll_wait(polls: int) -> int:
    """The wait before poll number ``polls + 1`` (``polls`` done so far): 2**polls s, at
    most ``MAX_POLL_SECONDS_STATE_MACHINE``."""
    if polls >= 5:
        return MAX_POLL_SECONDS_STATE_MACHINE
    return min(FIRST_POLL_SECONDS << max(polls, 0), MAX_POLL_SECONDS_STATE_MACHINE)


def polls_for(seconds: float) -> int:
    """How many polls the loop makes for a statement that runs ``seconds``: the first poll
    whose waits so far add up to at least ``seconds`` sees it ended (at least one)."""
    polls, waited = 0, 0
    while True:
        waited += poll_wait(polls)
        polls += 1
        if waited >= seconds:
            return polls


def redshift_transitions(seconds: float) -> int:
    """State transitions of an attempt whose statement runs ``seconds`` (no retry delay):
    Route, StartRedshiftStatement, RedshiftStatementEnded, then per poll
    WaitForRedshiftStatement, PollRedshiftStatement, RedshiftStatementEnded, and ReportOutcome:
    ``4 + 3 * polls_for(seconds)``."""
    return 4 + 3 * polls_for(seconds)


def athena_outcome(athena: Any, query: Mapping[str, Any], outputs: str) -> dict[str, Any]:
    """``athena_read``'s outputs."""
    return athena_read(athena, query, outputs)[0]


def athena_query_id(query: Mapping[str, Any]) -> str:
    """The query id in ``StartAthenaQuery``'s result (``.sync`` or the plain call), or ""."""
    found = query.get("QueryExecution") or {}
    return str(found.get("QueryExecutionId") or query.get("QueryExecutionId") or "")


def athena_read(
    athena: Any, query: Mapping[str, Any], outputs: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the state machine's ``ReadSqlResult`` step reports for an Athena query that
    ``StartAthenaQuery`` ran: ``query`` is that state's result (``.sync``: the final
    ``GetQueryExecution`` answer; the plain call: ``{"QueryExecutionId"}``). The outputs are
    the runner's (``outputs_of``: first_row / rows bounded / row_count) plus ``query_id``. A
    query that has not ended fails, saying so, and is stopped: nothing here waits. Also
    returns the query's ``GetQueryExecution`` (its state and statistics, for the log)."""
    from stratoflow.taskexec.sql import MAX_ROWS, OUTPUT_KINDS, outputs_of

    if outputs not in OUTPUT_KINDS:
        raise SqlFailed(f"outputs must be one of {', '.join(OUTPUT_KINDS)}, not {outputs!r}")
    query_id = athena_query_id(query)
    if not query_id:
        raise SqlFailed("the state machine's StartAthenaQuery returned no query id")
    execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
    status = execution["Status"]
    state = str(status.get("State"))
    if state not in ENDED:
        athena.stop_query_execution(QueryExecutionId=query_id)
        raise SqlFailed(f"Athena query {query_id} had not ended ({state}) when its result was read")
    if state != "SUCCEEDED":
        reason = status.get("StateChangeReason") or state.lower()
        raise SqlFailed(f"Athena query {query_id} {state.lower()}: {reason}")
    keep = {"first_row": 1, "rows": MAX_ROWS + 1, "none": 0}[outputs]
    found = {**outputs_of(athena_results(athena, query_id, keep), outputs), "query_id": query_id}
    return found, dict(execution)


# ------------------------------------------------------------------ connections test
TEST_SECONDS = 15.0  # a test's whole wait: the API's request ends within API Gateway's 29 s


def check_aws(
    kind: str,
    settings: Mapping[str, str],
    *,
    seconds: float = TEST_SECONDS,
    client: Any = None,
    pause: Callable[[float], None] = time.sleep,
) -> str:
    """``connections test`` of an AWS connection, with the credentials of where it runs (on
    AWS, the project's role): a cheap real call, waited on for at most ``seconds``; what the
    service says. Athena: ``GetWorkGroup``, then ``SELECT 1`` in it; Redshift Data:
    ``ExecuteStatement`` of ``SELECT 1``; RDS Data: ``ExecuteStatement`` of ``SELECT 1``. A
    query still running at the end is stopped and fails the test. Raises ``SqlFailed`` (or
    the SDK's error) when the check fails."""
    service = {"athena": "athena", "redshift-data": "redshift-data", "aurora-data-api": "rds-data"}
    if kind not in service:
        raise SqlFailed(f"unknown connection type {kind!r}")
    api = client if client is not None else _client(service[kind], settings)
    deadline = time.monotonic() + seconds

    def wait(state: Callable[[], str], ended: tuple[str, ...], stop: Callable[[], None]) -> str:
        wait_for = 0.1
        while True:
            status = state()
            if status in ended:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                with contextlib.suppress(Exception):
                    stop()
                raise SqlFailed(f"SELECT 1 had not ended after {seconds:g} s ({status}); stopped")
            pause(min(wait_for, left))
            wait_for = min(wait_for * 2, MAX_POLL_SECONDS)

    if kind == "athena":
        group = settings.get("workgroup") or "primary"
        found = api.get_work_group(WorkGroup=group)["WorkGroup"]
        request = athena_request("SELECT 1", None, settings)
        query_id = str(api.start_query_execution(**request)["QueryExecutionId"])
        final: dict[str, Any] = {}

        def athena_state() -> str:
            final.update(api.get_query_execution(QueryExecutionId=query_id)["QueryExecution"])
            return str(final["Status"]["State"])

        state = wait(athena_state, ENDED,
                     lambda: api.stop_query_execution(QueryExecutionId=query_id))  # fmt: skip
        if state != "SUCCEEDED":
            reason = final["Status"].get("StateChangeReason") or state.lower()
            raise SqlFailed(f"Athena query {query_id} {state.lower()}: {reason}")
        return (f"workgroup {group} ({found.get('State', 'ENABLED')}) ran SELECT 1 in database "
                f"{settings.get('database')} (query {query_id})")  # fmt: skip
    if kind == "redshift-data":
        statement_id = str(
            api.execute_statement(**redshift_request("SELECT 1", None, settings))["Id"]
        )
        described: dict[str, Any] = {}

        def redshift_state() -> str:
            described.update(api.describe_statement(Id=statement_id))
            return str(described["Status"])

        wait(redshift_state, REDSHIFT_ENDED, lambda: api.cancel_statement(Id=statement_id))
        failure = redshift_failure(statement_id, described)
        if failure is not None:
            raise failure
        where = settings.get("cluster_identifier") or settings.get("workgroup_name")
        return f"ran SELECT 1 on {where}, database {settings.get('database')} ({statement_id})"
    request = {"resourceArn": settings["resource_arn"], "secretArn": settings["secret_arn"],
               "sql": "SELECT 1"}  # fmt: skip
    if settings.get("database"):
        request["database"] = settings["database"]
    api.execute_statement(**request)
    return f"ran SELECT 1 on {settings['resource_arn']} through the Data API"
